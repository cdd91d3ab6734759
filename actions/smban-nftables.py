"""smban-nftables: a fail2ban ban action over smban's in-process nftables
backend (libnftables).  Copy or link this file into fail2ban's action.d/
and use

    action = smban-nftables.py[port="smtp,465,submission"]

Options (strings, as fail2ban passes them):
    name       jail name for the sets and chains f2b-<name>-v4/-v6 (default:
               the jail's name)
    port       "smtp,465,submission" (default), ranges "a:b", or "all"
    protocol   tcp (default), udp, sctp, dccp, udplite; all with port "all"
    blocktype  reject (default: a TCP reset for tcp, else ICMP port
               unreachable) or drop (REJECT and DROP are taken too)
    table      the inet table smban owns (default smban)
    cidr       0 (default): single addresses only; n: also networks of /n or longer

Per family, a set of banned addresses and a base chain hooked at input
whose one rule refuses them, in table inet <table>: ``nft list ruleset``
shows them.  A packet costs one set lookup whatever the number of bans.
Every ban carries its end into the kernel (an element timeout: the
ticket's remaining ban time), so bans expire there even while fail2ban is
down; a ban fail2ban prolongs gets its new end.  Bans restored after a
restart are applied in batches (one transaction for everything queued),
each with what is left of it.  ``fail2ban-client reload`` keeps the bans.
No shell is ever run.

A ban that fails (the kernel refusing, a set of the same name made by
someone else with another type) is logged and queued: a thread retries
the queue with a growing pause (1 s to 60 s) until every ban is in the
set; an unban takes its address out of the queue.  When fail2ban checks
the action's consistency (it does when a banned address fails again), a
missing table, set, chain or rule is made again (after ``nft -f`` of a
file that starts with ``flush ruleset``, say) and every address fail2ban
lists as banned but the set lacks is banned again.

When smban cannot be imported (its C extension built for another Python
minor version, a shared library it needs gone, a damaged file), the action
still loads, so that fail2ban starts the jail and the jails after it: it
logs an error at load and at start, and refuses every ban with an
exception naming the address and the reason; unban, flush and stop do
nothing.

This file must not be named smban.py: fail2ban 1.0 registers an action
module in sys.modules under its file name, which would shadow the package.
"""
import sys

from fail2ban.server.actions import ActionBase

try:
    from smban.f2b_action import BanAction
    from smban.nftables import Set
except (ImportError, OSError) as e:   # what an unloadable extension raises
    BanAction = Set = None
    #: why smban is not available ("ModuleNotFoundError: No module named ...")
    IMPORT_ERROR = "%s: %s" % (type(e).__name__, e)
else:
    IMPORT_ERROR = None


if IMPORT_ERROR is None:
    class SmbanNftables(BanAction):
        """fail2ban action: ban with smban's libnftables backend (the logic
        every smban action shares is smban.f2b_action.BanAction's)."""

        ACTION = "smban-nftables"
        DEFAULTS = {
            "port": "smtp,465,submission",
            "protocol": "tcp",
            "blocktype": "reject",
            "table": "smban",
            "cidr": "0",
        }
        PARTS = ("set", "chain", "rule")
        TIMED = True                 # elements expire in the kernel

        def _make(self, family):
            o = self._opts
            return Set(o["name"], o["port"], protocol=o["protocol"],
                       blocktype=o["blocktype"], family=family, table=o["table"],
                       min_prefix=int(o["cidr"]))

        @staticmethod
        def _label(s):
            return "inet %s %s" % (s.table, s.set)


class SmbanNftablesUnavailable(ActionBase):
    """smban-nftables when smban cannot be imported: loads, says so at load
    and at start, refuses every ban; nothing else fails."""

    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        self._error("loaded")

    @staticmethod
    def _why():
        return "cannot import smban (%s)" % IMPORT_ERROR

    def _error(self, when):
        self._logSys.error("[%s] smban-nftables %s but %s: every ban of this jail fails "
                           "until smban is rebuilt for Python %d.%d (%s)",
                           getattr(self._jail, "name", "?"), when, self._why(),
                           sys.version_info[0], sys.version_info[1], sys.executable)

    def start(self):
        self._error("started")

    def ban(self, aInfo):
        raise RuntimeError("smban-nftables cannot ban %s: %s" % (aInfo["ip"], self._why()))

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


Action = SmbanNftables if IMPORT_ERROR is None else SmbanNftablesUnavailable
