"""The fail2bans smban is tested and benchmarked on: Debian's package, and
unmodified upstream source trees beside the repository.

A tree is a release's bin/, config/ and fail2ban/ as published upstream;
the folder holding them is SMBAN_FAIL2BAN_TREES, by default
../shared/fail2ban next to the repository.  A tree runs on the interpreter
of the caller: its bin/fail2ban-client starts bin/fail2ban-server through
"#!/usr/bin/env python3", so that interpreter's directory goes first on
PATH.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN_CONFIG = "/etc/fail2ban"

#: (folder, version) of the upstream trees, oldest first.
TREES = (("1.1.0", "1.1.0"), ("master", "1.1.2.dev1"))


def trees_dir():
    return os.environ.get("SMBAN_FAIL2BAN_TREES",
                          os.path.join(ROOT, os.pardir, "shared", "fail2ban"))


class Fail2banDist:
    """One fail2ban to run a server of: its client command, what goes on
    the server's PYTHONPATH ahead of smban, its own config/ (filter.d,
    action.d), and why it cannot run here (None: it can)."""

    def __init__(self, version, client, pythonpath, config, missing=None):
        self.version, self.client, self.pythonpath, self.config = \
            version, client, pythonpath, config
        self.missing = missing

    def env(self, pkg_path, **extra):
        """The environment of a client and its server, smban at pkg_path
        (None: the smban installed where the interpreter finds it)."""
        path = os.pathsep.join(self.pythonpath + ([pkg_path] if pkg_path else []))
        bindir = os.path.dirname(sys.executable)
        env = dict(os.environ, PYTHONPATH=path,
                   PATH=os.pathsep.join([bindir, os.environ.get("PATH", "")]), **extra)
        if not path:
            del env["PYTHONPATH"]
        return env


def dists():
    """Every fail2ban: Debian's, then each upstream tree (with .missing set
    when the tree is not there)."""
    out = [Fail2banDist("1.0.2", ["fail2ban-client"], [], DEBIAN_CONFIG)]
    for folder, version in TREES:
        tree = os.path.join(trees_dir(), folder)
        client = os.path.join(tree, "bin", "fail2ban-client")
        missing = None if os.path.isfile(client) else \
            "fail2ban %s: no source tree at %s (set SMBAN_FAIL2BAN_TREES)" % (version, tree)
        out.append(Fail2banDist(version, [sys.executable, client], [tree],
                                os.path.join(tree, "config"), missing))
    return out
