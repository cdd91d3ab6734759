"""The lab's fail2ban: a real fail2ban-server watching the lab's maillog
and banning in the server namespace's firewall."""
import os
import re
import shutil
import subprocess
import time

import smban
from lab.common import ACTIONS, BANTIME, F2B_CONFIG, FINDTIME, MAXRETRY, ROOT, tail

#: where fail2ban-server imports smban from: the package the lab itself runs
#: (the source tree's, or the sanitizer build's under make asan)
PKG_PATH = os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__)))


#: The smban jail's ban action, by the name `python3 -m lab --ban` takes.
BAN_ACTIONS = {
    "iptables": 'smban-iptables.py[port="smtp", lockwait=5]',
    "ipset": 'smban-iptables.py[port="smtp", lockwait=5, set="yes"]',
    "nftables": 'smban-nftables.py[port="smtp"]',
}


class Fail2banServer:
    """fail2ban-server in the server namespace.  Owns its private
    configuration (fail2ban.conf with its own socket, pid file, database and
    log; the jails of the mode), the server's start and stop,
    fail2ban-client, and the bans its log records.

    mode "smban": the smban jail (filter smban, the smban-engine action when
    `engine`, and the ban action BAN_ACTIONS[ban]: smban-iptables, its set
    mode, or smban-nftables).  mode "stock": fail2ban's sendmail-auth and
    sendmail-reject[mode=extra] jails with iptables-multiport.  t0_wall:
    the wall-clock time the lab started, which ban times count from."""

    def __init__(self, lab_dir, server, processes, mode, engine, t0_wall, ban="iptables",
                 extra_actions=()):
        self.lab_dir, self.server, self.processes = lab_dir, server, processes
        self.extra_actions = list(extra_actions)    # more action lines of the smban jail
        self.mode, self.engine, self.t0_wall = mode, engine, t0_wall
        if ban not in BAN_ACTIONS:
            raise ValueError("ban action %r: one of %s" % (ban, ", ".join(BAN_ACTIONS)))
        self.ban = ban
        self.dir = os.path.join(lab_dir, "f2b")
        self.env = dict(os.environ, PYTHONPATH=PKG_PATH,
                        XTABLES_LOCKFILE=os.path.join(lab_dir, "xtables.lock"))
        self.proc = None

    def jails(self):
        """The names of the jails the mode runs."""
        return ["smban"] if self.mode == "smban" else ["sendmail-auth", "sendmail-reject"]

    def write_config(self):
        """fail2ban.conf, jail.conf and the filters and actions they name,
        in the lab's f2b/ directory."""
        d = self.dir
        for sub in ("action.d", "filter.d"):
            os.makedirs(os.path.join(d, sub))
        shutil.copy(os.path.join(F2B_CONFIG, "filter.d", "common.conf"),
                    os.path.join(d, "filter.d"))
        with open(os.path.join(d, "fail2ban.conf"), "w") as f:
            f.write("[Definition]\nloglevel = INFO\nlogtarget = %(d)s/f2b.log\n"
                    "socket = %(d)s/f2b.sock\npidfile = %(d)s/f2b.pid\n"
                    "dbfile = %(d)s/f2b.sqlite3\ndbpurgeage = 1d\n"
                    "syslogsocket = auto\nallowipv6 = auto\n" % {"d": d})
        common = ("enabled = true\nbackend = polling\nlogpath = %s/maillog\nmaxretry = %d\n"
                  "findtime = %d\nbantime = %d\nusedns = no\n"
                  % (self.lab_dir, MAXRETRY, FINDTIME, BANTIME))
        jail = self._smban_jail(common) if self.mode == "smban" else self._stock_jails(common)
        with open(os.path.join(d, "jail.conf"), "w") as f:
            f.write(jail)

    def _smban_jail(self, common):
        """jail.conf's text for the smban jail; its filter and actions copied."""
        d = self.dir
        for a in ("smban-engine.py", "smban-iptables.py", "smban-nftables.py",
                  "smban-crowdsec.py"):
            if os.path.isfile(os.path.join(ACTIONS, a)):
                shutil.copy(os.path.join(ACTIONS, a), os.path.join(d, "action.d"))
        shutil.copy(os.path.join(ROOT, "filters", "smban.conf"), os.path.join(d, "filter.d"))
        actions = [BAN_ACTIONS[self.ban]] + self.extra_actions
        if self.engine:
            actions.insert(0, 'smban-engine.py[mode="normal"]')
        return ("[smban]\n%sfilter = smban[mode=normal]\naction = %s\n"
                % (common, "\n         ".join(actions)))

    def _stock_jails(self, common):
        """jail.conf's text for fail2ban's stock sendmail jails (Debian 12's
        `iptables` is iptables-nft: inside the private namespace its rules
        are private too); their filters and actions copied."""
        d = self.dir
        for flt in ("sendmail-auth.conf", "sendmail-reject.conf"):
            shutil.copy(os.path.join(F2B_CONFIG, "filter.d", flt), os.path.join(d, "filter.d"))
        for act in ("iptables.conf", "iptables-multiport.conf"):
            shutil.copy(os.path.join(F2B_CONFIG, "action.d", act), os.path.join(d, "action.d"))
        jail = ""
        for name, flt in (("sendmail-auth", "sendmail-auth"),
                          ("sendmail-reject", "sendmail-reject[mode=extra]")):
            jail += ("[%s]\n%sfilter = %s\naction = iptables-multiport[name=%s, "
                     'port="smtp", protocol=tcp]\n\n' % (name, common, flt, name))
        return jail

    def client(self, *args, check=True):
        """fail2ban-client on the lab's server socket."""
        r = subprocess.run(["fail2ban-client", "-c", self.dir, *args], capture_output=True,
                           text=True, timeout=30, env=self.env)
        if check and r.returncode:
            raise RuntimeError("fail2ban-client %s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def start(self):
        """The configuration, then the server; returns once every jail
        answers its status."""
        self.write_config()
        self.proc = self.processes.spawn(["ip", "netns", "exec", self.server.name,
                                          "fail2ban-server", "-f", "-x", "-c", self.dir],
                                         os.path.join(self.lab_dir, "f2b.out"), env=self.env)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            if all(self.client("status", j, check=False).returncode == 0
                   for j in self.jails()):
                return
            time.sleep(0.2)
        raise RuntimeError("fail2ban did not start: %s\n%s" % (
            tail(os.path.join(self.lab_dir, "f2b.out")),
            tail(os.path.join(self.dir, "f2b.log"))))

    def stop(self):
        """Ask a running server to stop (its actions remove their rules);
        the process group is killed by the lab in any case."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.client("stop", check=False)
            except Exception:
                pass

    def bans(self, times=False):
        """[(jail, ip)] in the order fail2ban logged them; with times,
        [(jail, ip, seconds since the lab started)]."""
        out = []
        rx = (r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*?"
              r"\[([\w-]+)\] (?:Ban|Restore Ban) (\S+)$")
        for m in re.finditer(rx, tail(os.path.join(self.dir, "f2b.log"), 10**7), re.M):
            if times:
                t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                t += int(m.group(2)) / 1000.0
                out.append((m.group(3), m.group(4), t - self.t0_wall))
            else:
                out.append((m.group(3), m.group(4)))
        return out
