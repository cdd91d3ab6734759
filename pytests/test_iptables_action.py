"""actions/smban-iptables.py driven by a real fail2ban-server.

The server runs inside a private network namespace with its own
configuration directory, socket, pid file, database and xtables lock; the
test talks to it with fail2ban-client, as an operator would, and reads the
rules back with iptables-legacy-save.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lab import netns
from conftest import f2b_dist_params

import smban

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTION = os.path.join(ROOT, "actions", "smban-iptables.py")
# where the smban under test lives (the source tree, or the sanitizer build)
PKG_PATH = os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__)))

pytestmark = [
    pytest.mark.skipif(netns.why_unavailable() is not None,
                       reason=str(netns.why_unavailable())),
    pytest.mark.skipif(not shutil.which("fail2ban-client"), reason="fail2ban not installed"),
]


class Fail2ban:
    def __init__(self, d, env, client=("fail2ban-client",)):
        self.dir, self.env, self.cmd = d, env, list(client)

    def client(self, *args, check=True):
        r = subprocess.run(self.cmd + ["-c", self.dir, *args], env=self.env,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode:
            raise AssertionError("fail2ban-client %s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def log(self):
        with open(os.path.join(self.dir, "f2b.log")) as f:
            return f.read()

    def wait_log(self, text, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return True
            time.sleep(0.1)
        return False

    def start(self):
        self.client("start")
        end = time.monotonic() + 20
        while time.monotonic() < end:
            r = self.client("status", "smbantest", check=False)
            if r.returncode == 0:
                self.check_interpreter()
                return
            time.sleep(0.2)
        raise AssertionError("fail2ban did not start:\n" + self.log()[-3000:])

    def check_interpreter(self):
        """The server runs on this test run's interpreter (the one smban's
        extension was built for), whichever fail2ban started it."""
        with open(os.path.join(self.dir, "f2b.pid")) as f:
            pid = int(f.read().strip())
        exe = os.path.realpath("/proc/%d/exe" % pid)
        assert exe == os.path.realpath(sys.executable), (exe, sys.executable)

    def kill(self):
        try:
            with open(os.path.join(self.dir, "f2b.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def write_config(d, extra="", lockwait=5):
    os.makedirs(os.path.join(d, "action.d"), exist_ok=True)
    os.makedirs(os.path.join(d, "filter.d"), exist_ok=True)
    shutil.copy(ACTION, os.path.join(d, "action.d", "smban-iptables.py"))
    with open(os.path.join(d, "fail2ban.conf"), "w") as f:
        f.write("[Definition]\nloglevel = INFO\nlogtarget = %(d)s/f2b.log\n"
                "socket = %(d)s/f2b.sock\npidfile = %(d)s/f2b.pid\n"
                "dbfile = %(d)s/f2b.sqlite3\ndbpurgeage = 1d\n"
                "syslogsocket = auto\nallowipv6 = auto\n" % {"d": d})
    with open(os.path.join(d, "filter.d", "smbantest.conf"), "w") as f:
        f.write("[Definition]\nfailregex = ^ fail <HOST>$\n"
                "datepattern = ^%%Y-%%m-%%d %%H:%%M:%%S\n")
    with open(os.path.join(d, "jail.conf"), "w") as f:
        f.write("[smbantest]\nenabled = true\nfilter = smbantest\nbackend = polling\n"
                "logpath = %s/mail.log\nmaxretry = 1\nfindtime = 3600\nbantime = 3600\n"
                'action = smban-iptables.py[port="25,465", lockwait=%s%s]\n' % (d, lockwait, extra))
    open(os.path.join(d, "mail.log"), "w").close()


@contextlib.contextmanager
def fail2ban_in_netns(tmp_path, extra="", lockwait=5, dist=None):
    """A configured (not yet started) fail2ban-server (Debian's, or DIST's:
    a conftest.Fail2banDist) whose calls run in a private network
    namespace; stopped, killed and the namespace deleted at the end of the
    block."""
    d = str(tmp_path / "f2b")
    write_config(d, extra=extra, lockwait=lockwait)
    xtables = str(tmp_path / "xtables.lock")
    if dist is None:
        env = dict(os.environ, XTABLES_LOCKFILE=xtables, PYTHONPATH=PKG_PATH)
        server = Fail2ban(d, env)
    else:
        server = Fail2ban(d, dist.env(PKG_PATH, XTABLES_LOCKFILE=xtables), dist.client)
    n = netns.Netns("f2b")
    try:
        with n.entered():
            try:
                yield server
            finally:
                server.client("stop", check=False)
                server.kill()
    finally:
        n.close()


@pytest.fixture(params=f2b_dist_params())
def f2b(tmp_path, request):
    """A started fail2ban-server with the smbantest jail, on each fail2ban."""
    with fail2ban_in_netns(tmp_path, dist=request.param) as server:
        server.start()
        yield server


def bans(family=4):
    return sorted(l.split()[3].split("/")[0] for l in netns.chain_rules("f2b-smbantest", family)
                  if " -s " in l)


JUMP = "-A INPUT -p tcp -m multiport --dports 25,465 -j f2b-smbantest"


def test_fail2ban_bans_unbans_reloads_and_restores(f2b):
    # nothing exists before the first ban (chains are created on first use)
    assert not [l for l in netns.save() if "f2b-" in l]

    # a log line banned by fail2ban's own filter
    with open(os.path.join(f2b.dir, "mail.log"), "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S") + " fail 203.0.113.5\n")
    assert f2b.wait_log("Ban 203.0.113.5"), f2b.log()[-2000:]
    v4 = ["198.51.100.%d" % i for i in range(1, 41)]
    f2b.client("set", "smbantest", "banip", *v4, "2001:db8::10", "2001:db8::11")
    assert f2b.wait_log("Ban 2001:db8::11")
    assert bans(4) == sorted(v4 + ["203.0.113.5"])
    assert bans(6) == ["2001:db8::10", "2001:db8::11"]
    assert JUMP in netns.save(4) and JUMP in netns.save(6)

    f2b.client("set", "smbantest", "unbanip", "198.51.100.1", "2001:db8::11")
    assert "198.51.100.1" not in bans(4) and bans(6) == ["2001:db8::10"]

    # reload keeps every ban and does not duplicate the layout
    before4, before6 = netns.save(4), netns.save(6)
    f2b.client("reload")
    assert f2b.wait_log("Jail 'smbantest' reloaded")
    time.sleep(0.5)
    assert netns.save(4) == before4 and netns.save(6) == before6

    # a jump rule removed behind fail2ban's back: fail2ban's consistency
    # check (or the next ban) repairs it
    netns.run("iptables-legacy", "-w", "-D", "INPUT", "1")
    f2b.client("set", "smbantest", "banip", "198.51.100.200")
    assert f2b.wait_log("Ban 198.51.100.200")
    assert [l for l in netns.save(4) if l.endswith("-j f2b-smbantest")] == [JUMP]

    # stop removes everything of ours
    expected4 = bans(4)
    f2b.client("stop")
    time.sleep(0.5)
    assert not [l for l in netns.save(4) + netns.save(6) if "f2b-" in l]

    # start: fail2ban restores its bans from the database; the action
    # applies them in batches
    f2b.start()
    end = time.monotonic() + 15
    while time.monotonic() < end and (bans(4) != expected4 or bans(6) != ["2001:db8::10"]):
        time.sleep(0.2)
    assert bans(4) == expected4
    assert bans(6) == ["2001:db8::10"]
    log = f2b.log()
    restored = [l for l in log.splitlines() if "restored ban(s) applied in one commit" in l]
    assert restored, log[-3000:]
    # fewer commits than restored bans: the batch path was used
    assert len(restored) < len(expected4)


def test_bad_option_fails_the_jail_loudly(tmp_path):
    with fail2ban_in_netns(tmp_path, extra=', blocktype="ACCEPT"') as server:
        r = server.client("start", check=False)
        assert r.returncode != 0 or "blocktype" in server.log()
        assert "blocktype 'ACCEPT' not supported" in server.log() + r.stderr
        assert not [l for l in netns.save() if "f2b-" in l]


def test_action_module_without_fail2ban_server(tmp_path, monkeypatch):
    """The action's methods as fail2ban calls them, with a stand-in jail: the
    restored path batches, flush/stop clean up, reload keeps bans."""
    monkeypatch.setenv("XTABLES_LOCKFILE", str(tmp_path / "xtables.lock"))
    import importlib.util
    spec = importlib.util.spec_from_file_location("smban_iptables_action", ACTION)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Jail:
        name = "smbantest"

    n = netns.Netns("act")
    try:
        with n.entered():
            a = mod.Action(Jail(), "smban-iptables", port="25", name="other")
            a.start()
            assert not [l for l in netns.save() if "f2b-" in l]
            ips = ["10.0.%d.%d" % (i // 250, i % 250 + 1) for i in range(2000)]
            for ip in ips:
                a.ban({"ip": ip, "restored": 1})
            a.ban({"ip": "2001:db8::1", "restored": 0})
            a._wait_restored()
            assert len(netns.chain_rules("f2b-other")) == 2001
            v6 = netns.chain_rules("f2b-other", family=6)
            assert [l for l in v6 if " -s " in l] == \
                ["-A f2b-other -s 2001:db8::1/128 -j REJECT --reject-with icmp6-port-unreachable"]
            st = a._chains[4].stats()
            assert st["commits"] < 100          # 2,000 restored bans, few commits
            a.unban({"ip": ips[0]})
            assert len(netns.chain_rules("f2b-other")) == 2000
            a.clearAllParams()
            a.reload(port="25,587", name="other")
            assert len(netns.chain_rules("f2b-other")) == 2000
            assert "-A INPUT -p tcp -m multiport --dports 25,587 -j f2b-other" in netns.save()
            a.reload(port="25,587", name="other", chain="FORWARD")
            assert len(netns.chain_rules("f2b-other")) == 2000
            assert netns.chain_rules("f2b-other", family=6) == v6
            assert [l for l in netns.save() if l.endswith("-j f2b-other")] == \
                ["-A FORWARD -p tcp -m multiport --dports 25,587 -j f2b-other"]
            netns.run("iptables-legacy", "-w", "-F", "f2b-other")
            assert a.consistencyCheck() is False      # found and repaired
            assert a._chains[4].check()["ok"]
            assert a.flush() is True
            assert netns.chain_rules("f2b-other") == ["-A f2b-other -j RETURN"]
            assert netns.chain_rules("f2b-other", family=6) == ["-A f2b-other -j RETURN"]
            a.stop()
            assert not [l for l in netns.save(4) + netns.save(6) if "f2b-" in l]
            with pytest.raises(ValueError):
                mod.Action(Jail(), "x", port="25;reboot")
    finally:
        n.close()


# ---- failed bans are retried; the chain is kept in step with fail2ban ----

def wait_until(cond, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_a_ban_refused_while_the_lock_is_held_lands_once_it_is_free(tmp_path):
    """Another program holds the xtables lock past lockwait: the ban fails,
    is logged and queued, and is in the table soon after the lock is free
    (it used to be lost for the whole bantime while fail2ban listed it)."""
    import fcntl
    with fail2ban_in_netns(tmp_path, lockwait=0.5) as f2b:
        f2b.start()
        f2b.client("set", "smbantest", "banip", "198.51.100.1")
        assert wait_until(lambda: bans() == ["198.51.100.1"])
        with open(f2b.env["XTABLES_LOCKFILE"], "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            f2b.client("set", "smbantest", "banip", "198.51.100.2")
            assert f2b.wait_log("ban of 198.51.100.2 failed")
            assert "queued" in f2b.log()
            time.sleep(1.5)
            assert bans() == ["198.51.100.1"]      # still locked out
            fcntl.flock(lock, fcntl.LOCK_UN)
        assert wait_until(lambda: bans() == ["198.51.100.1", "198.51.100.2"])
        assert f2b.wait_log("ban(s) that had failed are now in the table")
        # an unban while queued takes the address out of the queue
        with open(f2b.env["XTABLES_LOCKFILE"], "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            f2b.client("set", "smbantest", "banip", "198.51.100.3")
            assert f2b.wait_log("ban of 198.51.100.3 failed")
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_EX)
            f2b.client("set", "smbantest", "unbanip", "198.51.100.3", check=False)
            fcntl.flock(lock, fcntl.LOCK_UN)
        time.sleep(3)
        assert "198.51.100.3" not in bans()


def test_a_ban_with_its_parent_chain_missing_lands_when_the_chain_appears(tmp_path):
    with fail2ban_in_netns(tmp_path, extra=', chain="SMBANPARENT"') as f2b:
        f2b.start()
        f2b.client("set", "smbantest", "banip", "198.51.100.7")
        assert f2b.wait_log("ban of 198.51.100.7 failed")
        assert "SMBANPARENT does not exist" in f2b.log()
        netns.run("iptables-legacy", "-w", "-N", "SMBANPARENT")
        assert wait_until(lambda: "198.51.100.7" in bans())
        assert [l for l in netns.save() if l.startswith("-A SMBANPARENT")] == [
            "-A SMBANPARENT -p tcp -m multiport --dports 25,465 -j f2b-smbantest"]


def test_a_chain_flushed_behind_fail2bans_back_is_repaired_with_its_bans(f2b):
    """fail2ban checks the action when a banned address fails again: the
    chain, flushed by someone else, gets its RETURN and every ban back."""
    f2b.client("set", "smbantest", "banip", "198.51.100.21", "198.51.100.22")
    assert wait_until(lambda: bans() == ["198.51.100.21", "198.51.100.22"])
    netns.run("iptables-legacy", "-w", "-F", "f2b-smbantest")
    assert netns.chain_rules("f2b-smbantest") == []
    time.sleep(4)            # fail2ban checks only when the new failure is > 3 s later
    f2b.client("set", "smbantest", "banip", "198.51.100.21")
    assert f2b.wait_log("out of step with fail2ban")
    assert wait_until(lambda: bans() == ["198.51.100.21", "198.51.100.22"])
    assert netns.chain_rules("f2b-smbantest")[-1] == "-A f2b-smbantest -j RETURN"
