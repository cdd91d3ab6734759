"""actions/smban-nftables.py: driven by a real fail2ban-server (each
fail2ban the tests know), and its methods called as fail2ban calls them.

Everything runs inside private network namespaces; the sets are read back
with the nft command.
"""
import contextlib
import json
import os
import shutil
import subprocess
import time

import pytest

from lab import netns
from conftest import f2b_dist_params, load_action_file
from test_iptables_action import Fail2ban, PKG_PATH, wait_until

pytest.importorskip("smban.nftables", reason="smban._nft not built (libnftables-dev)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTION = os.path.join(ROOT, "actions", "smban-nftables.py")

pytestmark = [
    pytest.mark.skipif(netns.why_unavailable() is not None or not shutil.which("nft"),
                       reason=str(netns.why_unavailable() or "nft not installed")),
    pytest.mark.skipif(not shutil.which("fail2ban-client"), reason="fail2ban not installed"),
]

RULE4 = "ip saddr @f2b-smbantest-v4 tcp dport { 25, 465 } reject with tcp reset"


def nft(*args, check=True):
    return subprocess.run(["nft", *args], check=check, capture_output=True, text=True)


def elements(family=4, table="smban", name="smbantest"):
    """{address: timeout seconds or None} of the jail's set ({} when none)."""
    r = nft("-j", "list", "set", "inet", table, "f2b-%s-v%d" % (name, family), check=False)
    if r.returncode:
        return {}
    got = {}
    for o in json.loads(r.stdout)["nftables"]:
        for e in o.get("set", {}).get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                got[e["elem"]["val"]] = e["elem"].get("timeout")
            else:
                got[e] = None
    return got


def rules(family=4, name="smbantest"):
    r = nft("list", "chain", "inet", "smban", "f2b-%s-v%d" % (name, family), check=False)
    if r.returncode:
        return None
    body = [l.strip() for l in r.stdout.splitlines()]
    start = next(i for i, l in enumerate(body) if l.startswith("chain "))
    return [l for l in body[start + 1:] if l and l != "}" and not l.startswith("type ")]


def write_config(d, extra=""):
    os.makedirs(os.path.join(d, "action.d"), exist_ok=True)
    os.makedirs(os.path.join(d, "filter.d"), exist_ok=True)
    shutil.copy(ACTION, os.path.join(d, "action.d", "smban-nftables.py"))
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
                'action = smban-nftables.py[port="25,465"%s]\n' % (d, extra))
    open(os.path.join(d, "mail.log"), "w").close()


@contextlib.contextmanager
def fail2ban_in_netns(tmp_path, extra="", dist=None):
    d = str(tmp_path / "f2b")
    write_config(d, extra=extra)
    if dist is None:
        server = Fail2ban(d, dict(os.environ, PYTHONPATH=PKG_PATH))
    else:
        server = Fail2ban(d, dist.env(PKG_PATH), dist.client)
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
    with fail2ban_in_netns(tmp_path, dist=request.param) as server:
        server.start()
        yield server


def test_fail2ban_bans_with_kernel_timeouts_reloads_and_restores(f2b):
    assert rules() is None                        # nothing before the first ban
    with open(os.path.join(f2b.dir, "mail.log"), "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S") + " fail 203.0.113.5\n")
    assert f2b.wait_log("Ban 203.0.113.5"), f2b.log()[-2000:]
    v4 = ["198.51.100.%d" % i for i in range(1, 41)]
    f2b.client("set", "smbantest", "banip", *v4, "2001:db8::10", "2001:db8::11")
    assert f2b.wait_log("Ban 2001:db8::11")
    assert wait_until(lambda: len(elements(4)) == 41 and len(elements(6)) == 2)
    # each element lives what is left of its ban (bantime 3600) in the kernel
    assert all(t is not None and 3500 <= t <= 3600 for t in elements(4).values()), elements(4)
    assert rules(4) == [RULE4]
    assert rules(6) == [RULE4.replace("ip saddr", "ip6 saddr").replace("-v4", "-v6")]

    f2b.client("set", "smbantest", "unbanip", "198.51.100.1", "2001:db8::11")
    assert "198.51.100.1" not in elements(4) and list(elements(6)) == ["2001:db8::10"]

    before = nft("list", "ruleset").stdout
    f2b.client("reload")
    assert f2b.wait_log("Jail 'smbantest' reloaded")
    time.sleep(0.5)
    assert set(elements(4)) == set(v4[1:] + ["203.0.113.5"])
    assert rules(4) == [RULE4]
    assert nft("list", "ruleset").stdout.count("chain f2b-") == before.count("chain f2b-")

    # the rule deleted behind fail2ban's back: the next ban brings it back
    nft("flush", "chain", "inet", "smban", "f2b-smbantest-v4")
    f2b.client("set", "smbantest", "banip", "198.51.100.200")
    assert f2b.wait_log("Ban 198.51.100.200")
    assert wait_until(lambda: rules(4) == [RULE4])

    expected4 = set(elements(4))
    f2b.client("stop")
    time.sleep(0.5)
    assert rules(4) is None and rules(6) is None and elements(4) == {}

    # restart: fail2ban restores its bans, each with what is left of it
    f2b.start()
    assert wait_until(lambda: set(elements(4)) == expected4
                      and list(elements(6)) == ["2001:db8::10"])
    assert all(t is not None and 3000 <= t <= 3600 for t in elements(4).values()), elements(4)
    restored = [l for l in f2b.log().splitlines() if "restored ban(s) applied in one commit" in l]
    assert restored and len(restored) < len(expected4)


def test_bad_option_fails_the_jail_loudly(tmp_path):
    with fail2ban_in_netns(tmp_path, extra=', blocktype="accept"') as server:
        r = server.client("start", check=False)
        assert "blocktype 'accept' is not reject or drop" in server.log() + r.stderr
        assert rules() is None


def load_action():
    return load_action_file("smban-nftables")


class Jail:
    name = "smbantest"


def test_action_methods_as_fail2ban_calls_them():
    """Restored bans in batches with their remaining time, a prolonged ban,
    consistencyCheck after a flushed ruleset, flush, reload, stop."""
    mod = load_action()
    n = netns.Netns("act")
    try:
        with n.entered():
            a = mod.Action(Jail(), "smban-nftables", port="25", name="other")
            a.start()
            assert rules(name="other") is None
            now = time.time()
            ips = ["10.0.%d.%d" % (i // 250, i % 250 + 1) for i in range(2000)]
            for i, ip in enumerate(ips):
                # banned 10 minutes ago for an hour; one of them for ever
                a.ban({"ip": ip, "restored": 1, "time": now - 600,
                       "bantime": -1 if i == 0 else 3600})
            a.ban({"ip": "2001:db8::1", "restored": 0, "time": now, "bantime": 600})
            a._wait_restored()
            got = elements(name="other")
            assert len(got) == 2000 and got[ips[0]] is None
            assert all(got[ip] is not None and 2900 <= got[ip] <= 3000 for ip in ips[1:]), \
                "restored bans without what is left of them: %r" % sorted(set(got.values()))[:5]
            assert elements(6, name="other") == {"2001:db8::1": 600}
            assert a._chains[4].stats()["commits"] < 100   # 2,000 restored bans, few commits

            # fail2ban prolongs a ban: the element gets its new end
            a.prolong({"ip": ips[5], "time": now, "bantime": 86400})
            assert 86000 <= elements(name="other")[ips[5]] <= 86400

            a.unban({"ip": ips[1]})
            assert ips[1] not in elements(name="other")
            a.clearAllParams()
            a.reload(port="25,587", name="other")
            assert rules(name="other") == \
                ["ip saddr @f2b-other-v4 tcp dport { 25, 587 } reject with tcp reset"]
            assert len(elements(name="other")) == 1999

            nft("flush", "ruleset")                  # someone reloads the firewall
            # (the stand-in jail's ban list: three of the bans)
            a._jail_bans = lambda family: ips[:3] if family == 4 else []
            assert a.consistencyCheck() is False     # found and repaired
            assert a.consistencyCheck() is True
            assert a._chains[4].check()["ok"]
            assert set(elements(name="other")) == set(ips[:3])

            # a new name moves the bans, each keeping its end (read from
            # fail2ban's ban list: a stand-in of it here)
            class Ticket:
                def __init__(self, ip):
                    self.ip = ip

                def getID(self):
                    return self.ip

                def getTime(self):
                    return now

                def getBanTime(self, default=None):
                    return 600 if self.ip == ips[0] else -1

            class BanManager:
                def getBanTime(self):
                    return 600

                def __iter__(self):
                    return iter([Ticket(ip) for ip in ips[:3]])

            class Actions:
                banManager = BanManager()

            a._jail.actions = Actions()
            a.reload(port="25,587", name="renamed")
            assert elements(name="other") == {} and rules(name="other") is None
            got = elements(name="renamed")
            assert set(got) == set(ips[:3]) and got[ips[0]] is not None and 500 <= got[ips[0]] <= 600, got
            assert got[ips[1]] is None and got[ips[2]] is None    # permanent bans

            assert a.flush() is True
            assert elements(name="renamed") == {}
            a.stop()
            assert rules(name="renamed") is None and rules(6, name="renamed") is None
            with pytest.raises(ValueError):
                mod.Action(Jail(), "x", port="25;flush ruleset")
    finally:
        n.close()
