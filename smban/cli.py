"""The smban command line: python3 -m smban COMMAND ...

Each command lives in its own module and registers itself here through a
`register(subparsers)` function that adds its parser and sets `func`.
"""
import argparse
import importlib
import sys

# (module, ...) in the order they appear in --help
COMMANDS = ("smban.classify_cli", "smban.audit", "smban.filter_cli", "smban.bans",
            "smban.demo", "smban.install_cli")


class UsageError(Exception):
    """A user error: printed as 'smban: message', exit status 2."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m smban",
        description="smban: a fail2ban plug-in library for sendmail servers")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UsageError as exc:
        print("smban: %s" % exc, file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
