"""The smban command line: python3 -m smban COMMAND ...

Each command lives in its own module and registers itself here through a
`register(subparsers)` function that adds its parser and sets `func`.
"""
import importlib
import os
import sys

# command -> the module that registers it, in the order of --help.  Only
# the module of the command given is imported (a command's start-up time
# counts when it runs on every log rotation); --help imports them all.  A
# module may also offer quick_args(argv) for its usual arguments: a
# namespace as its parser would make, or None to let argparse parse them.
COMMANDS = {
    "classify": "smban.classify_cli",
    "audit": "smban.audit",
    "export-filter": "smban.filter_cli",
    "bans": "smban.bans",
    "demo": "smban.demo",
}


class UsageError(Exception):
    """A user error: printed as 'smban: message', exit status 2."""


def command_module(name):
    """The module that registers a command, or None when it is not there."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def build_parser(argv=None):
    import argparse
    # the name it was run by: the smban command, or python3 -m smban
    prog = "smban" if os.path.basename(sys.argv[0]) == "smban" else "python3 -m smban"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="smban: a fail2ban plug-in library for sendmail servers")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    args = sys.argv[1:] if argv is None else argv
    given = next((a for a in args if not a.startswith("-")), None)
    names = [COMMANDS[given]] if given in COMMANDS else list(COMMANDS.values())
    for name in names:
        mod = command_module(name)
        if mod:
            mod.register(sub)
    return parser


def quick_args(argv):
    """The arguments parsed by the command's quick_args, or None."""
    if not argv or argv[0] not in COMMANDS:
        return None
    quick = getattr(command_module(COMMANDS[argv[0]]), "quick_args", None)
    return quick(argv[1:]) if quick else None


def main(argv=None):
    args = quick_args(sys.argv[1:] if argv is None else argv)
    if args is None:
        args = build_parser(argv).parse_args(argv)
    try:
        return args.func(args) or 0
    except UsageError as exc:
        print("smban: %s" % exc, file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
