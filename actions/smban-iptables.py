"""smban-iptables: a fail2ban ban action over smban's in-process iptables
backend (libiptc).  Copy or link this file into fail2ban's action.d/ and use

    action = smban-iptables.py[port="smtp,465,submission"]

Options (strings, as fail2ban passes them):
    name       jail name for the chain f2b-<name> (default: the jail's name)
    port       "smtp,465,submission" (default), ranges "a:b", or "all"
    protocol   tcp (default), udp, sctp, dccp, udplite
    blocktype  REJECT (default; icmp/icmp6 port unreachable), DROP,
               "REJECT --reject-with tcp-reset"
    chain      the chain holding the jump rule (default INPUT)
    lockfile   xtables lock (default $XTABLES_LOCKFILE or /run/xtables.lock)
    lockwait   seconds to wait for that lock (default 10)
    cidr       0 (default): single addresses only; n: also networks of /n or longer
    set        no (default): one rule per ban in the chain f2b-<name>;
               yes: the bans in an ipset (f2b-<name>-v4, f2b-<name>-v6) that one
               rule in the parent chain matches: a packet costs one hash
               lookup and a ban one netlink message, whatever the number
               of bans, and each ban expires in the kernel at its end (what
               is left of it after a restart; the new end when fail2ban
               prolongs it), even while fail2ban is down

The rules go to the legacy iptables tables; see them with iptables-legacy-save
or ``python3 -m smban bans list --chain NAME`` (set mode: ``ipset list`` or
``python3 -m smban bans list --backend ipset --chain NAME``).  One action serves IPv4 and
IPv6: each family's chain is created on its first ban.  Bans fail2ban
restores from its database after a restart are applied in batches (one
commit for everything queued), and ``fail2ban-client reload`` keeps the bans
(this action implements reload and clearAllParams).  No shell is ever run.

A ban that fails (the xtables lock held longer than lockwait, the parent
chain missing, the kernel refusing) is logged and queued: a thread retries
the queue with a growing pause (1 s to 60 s) until every ban is in the table;
an unban takes its address out of the queue.  The queue holds at most
smban.f2b_action.RETRY_MAX addresses (the oldest is dropped, and said so).  When fail2ban
checks the action's consistency (it does when a banned address fails
again), the chain's layout is repaired and every address fail2ban lists as
banned but the chain lacks is banned again.

When smban cannot be imported (its C extension built for another Python
minor version, a shared library it needs gone, a damaged file), the action
still loads, so that fail2ban starts the jail and the jails after it: it
logs an error at load and at start, and refuses every ban with an
exception naming the address and the reason (fail2ban logs it as "Failed
to execute ban ..." and the jail keeps running); unban, flush and stop do
nothing.

This file must not be named smban.py: fail2ban 1.0 registers an action
module in sys.modules under its file name, which would shadow the package.
"""
import sys

from fail2ban.server.actions import ActionBase

try:
    from smban.f2b_action import BanAction
    from smban.iptables import Chain, chain_name
except (ImportError, OSError) as e:   # what an unloadable extension raises
    BanAction = Chain = chain_name = None
    #: why smban is not available ("ModuleNotFoundError: No module named ...")
    IMPORT_ERROR = "%s: %s" % (type(e).__name__, e)
else:
    IMPORT_ERROR = None

#: The spellings of a yes/no option.
_BOOL = {"yes": True, "true": True, "on": True, "1": True,
         "no": False, "false": False, "off": False, "0": False}


if IMPORT_ERROR is None:
    class SmbanIptables(BanAction):
        """fail2ban action: ban with smban's libiptc backend (the logic
        every smban action shares is smban.f2b_action.BanAction's)."""

        ACTION = "smban-iptables"
        DEFAULTS = {
            "port": "smtp,465,submission",
            "protocol": "tcp",
            "blocktype": "REJECT",
            "chain": "INPUT",
            "lockfile": "",
            "lockwait": "10",
            "cidr": "0",
            "set": "no",
        }

        def _check_options(self, o):
            chain_name(o["name"])        # validates the length
            v = o["set"].lower()
            if v not in _BOOL:
                raise ValueError("smban-iptables: set=%r: use yes or no" % o["set"])
            o["set"] = _BOOL[v]

        @property
        def PARTS(self):
            return ("set", "return", "rule") if self._opts["set"] else ("chain", "return", "jump")

        @property
        def FRESH(self):
            # a set has no end to add: a layout made from nothing is set and rule
            return ("set", "rule") if self._opts["set"] else self.PARTS

        @property
        def TIMED(self):
            return self._opts["set"]  # set mode: elements expire in the kernel

        def _make(self, family):
            o = self._opts
            # the operators' option names (fail2ban's) onto smban.iptables'
            return Chain(o["name"], o["port"], protocol=o["protocol"],
                         blocktype=o["blocktype"], family=family, parent=o["chain"],
                         lockfile=o["lockfile"] or None, lock_wait=float(o["lockwait"]),
                         min_prefix=int(o["cidr"]), set=o["set"])

        @staticmethod
        def _label(c):
            return c.set or c.chain

        def _replace(self, family, old, new):
            """A new port, protocol or parent chain replaces the jump rule (a
            new parent: the old one's jump is removed first, leaving a moment
            where the chain is not reached); a new blocktype applies to bans
            made from now on."""
            if new.parent != old.parent:
                old.unjump()         # leave the old parent chain as it was
            new.start()              # (re)places the jump rule


class SmbanIptablesUnavailable(ActionBase):
    """smban-iptables when smban cannot be imported: loads, says so at load
    and at start, refuses every ban; nothing else fails."""

    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        self._error("loaded")

    @staticmethod
    def _why():
        return "cannot import smban (%s)" % IMPORT_ERROR

    def _error(self, when):
        self._logSys.error("[%s] smban-iptables %s but %s: every ban of this jail fails "
                           "until smban is rebuilt for Python %d.%d (%s)",
                           getattr(self._jail, "name", "?"), when, self._why(),
                           sys.version_info[0], sys.version_info[1], sys.executable)

    def start(self):
        self._error("started")

    def ban(self, aInfo):
        raise RuntimeError("smban-iptables cannot ban %s: %s" % (aInfo["ip"], self._why()))

    def reban(self, aInfo):
        return self.ban(aInfo)

    def unban(self, aInfo):
        return True

    def flush(self):
        # nothing was banned by this action: tell fail2ban not to unban one by one
        return True

    def stop(self):
        pass

    def clearAllParams(self):
        pass

    def reload(self, **opts):
        pass

    def consistencyCheck(self, beforeRepair=None):
        return True


Action = SmbanIptables if IMPORT_ERROR is None else SmbanIptablesUnavailable
