"""doc/smban.1, the man page of the smban command, against the command
line itself: every command and every long option of each is documented,
and nothing documented is gone."""
import argparse
import os
import re

from smban import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def page():
    with open(os.path.join(ROOT, "doc", "smban.1")) as f:
        # roff's \- is a plain minus sign
        return f.read().replace("\\-", "-")


def commands():
    """{command: set of its long options} from the argparse parsers."""
    parser = cli.build_parser([])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in p._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help"}
            for name, p in sub.choices.items()}


def test_every_command_and_option_is_documented():
    text = page()
    found = commands()
    assert set(found) == set(cli.COMMANDS)
    for name, options in found.items():
        assert re.search(r"^\.B %s$" % re.escape(name), text, re.M), name
        # the command's section: from its .B line to the next command's
        section = text.split("\n.TP\n.B %s\n" % name, 1)[1]
        for other in found:
            section = section.split("\n.TP\n.B %s\n" % other, 1)[0]
        for o in options:
            assert o in section, (name, o)


def test_nothing_documented_is_gone():
    every = set().union(*commands().values()) | {"--help"}
    documented = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", page()))
    assert documented <= every, documented - every
