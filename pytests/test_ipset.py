"""The set mode of the iptables backend (smban.iptables.Chain(set=True),
over libiptc and libipset), in private network namespaces; and
actions/smban-iptables.py with set = yes under a real fail2ban-server.

Root only; every test runs in a namespace of its own, whose tables and
ipsets start empty.  What smban wrote is read back with iptables-legacy and
ipset, the tools an operator would use.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from lab import netns
from conftest import f2b_dist_params

iptables = pytest.importorskip("smban.iptables", reason="smban._iptc not built")
Chain = iptables.Chain

pytestmark = pytest.mark.skipif(
    netns.why_unavailable() is not None or not shutil.which("ipset"),
    reason=str(netns.why_unavailable() or "the ipset command is not installed"))

PORTS = "smtp,465,submission"
RULE4 = ("-A INPUT -p tcp -m multiport --dports 25,465,587 -m set --match-set f2b-t-v4 src "
         "-j REJECT --reject-with tcp-reset")


def run(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def rules(family=4):
    """The rules of the filter table that mention an ipset, as -S prints them."""
    return [l for l in netns.save(family) if "--match-set" in l]


def elements(name="f2b-t-v4"):
    """{address: timeout seconds (0: none)} of a set, from ipset save;
    None when the set does not exist."""
    r = run("ipset", "save", name, check=False)
    if r.returncode:
        return None
    got = {}
    for line in r.stdout.splitlines():
        w = line.split()
        if w[:2] == ["add", name]:
            got[w[2]] = int(w[w.index("timeout") + 1]) if "timeout" in w else None
    return got


def sets():
    return run("ipset", "list", "-n").stdout.split()


def tcp_reset(ports=PORTS, **kw):
    return Chain("t", ports, blocktype="REJECT --reject-with tcp-reset", set=True, **kw)


# ---- layout ----

def test_start_ban_unban_flush_stop_as_iptables_and_ipset_show_them(ns):
    c = tcp_reset()
    assert c.set == "f2b-t-v4" and c.chain == "f2b-t"
    assert rules() == [] and sets() == []
    assert c.start() == ("set", "rule")
    assert c.start() == ()
    assert rules() == [RULE4]
    assert not [l for l in netns.save(4) if "f2b-t " in l or l.endswith("f2b-t")]  # no chain
    header = run("ipset", "list", "-t", "f2b-t-v4").stdout
    assert "Type: hash:ip" in header and "family inet " in header and "timeout 0" in header
    assert c.ban("192.0.2.7") is True and c.ban("192.0.2.7") is False
    assert c.ban_many(["192.0.2.8", "192.0.2.9", "192.0.2.8"]) == 2
    assert elements() == {"192.0.2.7": 0, "192.0.2.8": 0, "192.0.2.9": 0}
    assert sorted(c.banned()) == ["192.0.2.7", "192.0.2.8", "192.0.2.9"]
    st = c.check()
    assert st == {"set": True, "return": True, "rule": True, "references": 1, "bans": 3,
                  "ok": True}
    assert c.unban("192.0.2.7") is True and c.unban("192.0.2.7") is False
    assert c.unban_many(["192.0.2.8", "192.0.2.100"]) == 1
    assert c.flush() == 1 and elements() == {} and rules() == [RULE4]
    assert c.stop() is True and c.stop() is False
    assert rules() == [] and sets() == []
    assert c.unban("192.0.2.7") is False          # no set: nothing was banned


def test_ipv6_networks_udp_and_drop(ns):
    c = Chain("t", "5060", protocol="udp", blocktype="DROP", family=6, min_prefix=48, set=True)
    assert c.ban_many(["2001:db8::/48", "2001:db8:1::1"], timeout=[0, 600]) == 2
    assert rules(6) == ["-A INPUT -p udp -m multiport --dports 5060 -m set --match-set "
                        "f2b-t-v6 src -j DROP"]
    assert "Type: hash:net" in run("ipset", "list", "-t", "f2b-t-v6").stdout
    got = elements("f2b-t-v6")
    assert got["2001:db8::/48"] == 0 and 590 <= got["2001:db8:1::1"] <= 600
    assert sorted(c.banned()) == ["2001:db8:1::1", "2001:db8::/48"]
    with pytest.raises(ValueError):
        c.ban("2001:db8::/32")                    # shorter than min_prefix
    with pytest.raises(ValueError):
        c.ban("192.0.2.1")                        # another family
    c.stop()
    assert rules(6) == [] and sets() == []


def test_nothing_else_is_touched(ns):
    run("iptables-legacy", "-A", "INPUT", "-s", "203.0.113.1", "-j", "ACCEPT")
    run("ipset", "create", "other", "hash:ip")
    run("ipset", "add", "other", "203.0.113.2")
    run("iptables-legacy", "-A", "INPUT", "-m", "set", "--match-set", "other", "src", "-j", "DROP")
    before = netns.save(4)
    c = tcp_reset()
    c.ban_many(["192.0.2.1", "192.0.2.2"])
    c.stop()
    assert netns.save(4) == before
    assert sets() == ["other"] and elements("other") == {"203.0.113.2": None}


def test_a_ban_repairs_a_deleted_or_outdated_rule(ns):
    c = tcp_reset()
    c.ban("192.0.2.1")
    run("iptables-legacy", "-D", "INPUT", "1")
    assert c.check()["rule"] is False and c.check()["ok"] is False
    assert c.ban("192.0.2.2") is True
    assert rules() == [RULE4]
    # a rule of our set with other ports is ours and outdated: start replaces it
    tcp_reset(ports="smtp").start()
    assert rules() == [RULE4.replace("25,465,587", "25")]
    assert c.start() == ("rule",)
    assert rules() == [RULE4] and len(c.banned()) == 2


def test_a_ban_recreates_a_destroyed_set(ns):
    c = tcp_reset()
    c.ban("192.0.2.1")
    run("iptables-legacy", "-F", "INPUT")
    run("ipset", "destroy", "f2b-t-v4")
    assert c.check()["set"] is False
    assert c.ban("192.0.2.2") is True
    assert elements() == {"192.0.2.2": 0} and rules() == [RULE4]


def test_a_set_someone_else_made_with_another_type_is_a_clear_error(ns):
    run("ipset", "create", "f2b-t-v4", "hash:net")
    c = tcp_reset()
    with pytest.raises(OSError, match="f2b-t-v4.*exists with another type or options"):
        c.start()
    with pytest.raises(OSError, match="another type or options"):
        c.ban("192.0.2.1")
    assert rules() == []                          # nothing half applied
    assert run("ipset", "list", "-t", "f2b-t-v4").stdout.count("hash:net") == 1


def test_stop_says_why_when_another_rule_holds_the_set(ns):
    c = tcp_reset()
    c.ban("192.0.2.1")
    run("iptables-legacy", "-A", "FORWARD", "-m", "set", "--match-set", "f2b-t-v4", "src",
        "-j", "DROP")
    with pytest.raises(OSError, match="f2b-t-v4: cannot destroy the set"):
        c.stop()
    assert rules() == ["-A FORWARD -m set --match-set f2b-t-v4 src -j DROP"]


# ---- timeouts ----

def test_a_ban_expires_in_the_kernel(ns):
    c = tcp_reset()
    c.ban_many(["192.0.2.1"], timeout=1)
    c.ban("192.0.2.2")                            # no timeout: until unbanned
    assert set(elements()) == {"192.0.2.1", "192.0.2.2"}
    end = time.monotonic() + 5
    while time.monotonic() < end and "192.0.2.1" in elements():
        time.sleep(0.2)
    assert elements() == {"192.0.2.2": 0}
    assert c.ban_many(["192.0.2.1"], timeout=60) == 1   # gone: a ban again


def test_each_ban_its_own_timeout_refresh_and_the_kernels_limit(ns):
    c = tcp_reset()
    assert c.ban_many(["192.0.2.1", "192.0.2.2", "192.0.2.3"], timeout=[100, 0, 10 ** 9]) == 3
    got = elements()
    assert 95 <= got["192.0.2.1"] <= 100 and got["192.0.2.2"] == 0
    assert got["192.0.2.3"] == 0                  # longer than the kernel keeps: until unbanned
    # an address banned already keeps its timeout, unless refreshed
    assert c.ban_many(["192.0.2.1"], timeout=5000) == 0
    assert elements()["192.0.2.1"] <= 100
    assert c.ban_many(["192.0.2.1"], timeout=5000, refresh=True) == 0
    assert 4990 <= elements()["192.0.2.1"] <= 5000
    with pytest.raises(ValueError, match="2 timeouts for 1 addresses"):
        c.ban_many(["192.0.2.9"], timeout=[1, 2])
    with pytest.raises(ValueError):
        c.ban_many(["192.0.2.9"], timeout=-1)
    assert "192.0.2.9" not in elements()


def test_timeouts_need_set_mode(ns):
    with pytest.raises(ValueError, match="need set mode"):
        Chain("t", PORTS).ban_many(["192.0.2.1"], timeout=60)
    assert not [l for l in netns.save(4) if "f2b-t" in l] and sets() == []   # nothing made


def test_a_large_restore_is_one_batch(ns):
    c = tcp_reset()
    ips = ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(20000)]
    t0 = time.monotonic()
    assert c.ban_many(ips, timeout=3600) == 20000
    took = time.monotonic() - t0
    assert len(elements()) == 20000 and len(c.banned()) == 20000
    assert c.ban_many(ips[:100] + ["192.0.2.1"], timeout=3600) == 1
    assert c.check()["bans"] == 20001
    # (not a timing test: the benchmark measures; this only guards against
    # an element-per-transaction regression of minutes)
    assert took < 60


@pytest.mark.parametrize("bad", ["192.0.2.300", "192.0.2.0/24", "2001:db8::1", "x", ""])
def test_bad_addresses_change_nothing(ns, bad):
    c = tcp_reset()
    c.start()
    with pytest.raises(ValueError):
        c.ban_many(["192.0.2.1", bad])
    assert elements() == {}


# ---- concurrency ----

def test_a_concurrent_writer_loses_nothing(ns):
    """The ipset and iptables commands add to a set and a chain of their own
    in a loop while smban bans from two threads: every ban lands, every
    element and rule of the other writer too."""
    run("ipset", "create", "other", "hash:ip")
    c = tcp_reset()
    c.start()

    def write(i):
        run("ipset", "add", "other", "203.0.113.%d" % (i % 250), "-exist")
        run("iptables-legacy", "-w", "-A", "OUTPUT", "-d", "203.0.113.%d" % (i % 250),
            "-j", "ACCEPT")

    writes = netns.bans_beside_a_writer(c.ban, write)
    assert len(c.banned()) == 200 and rules()[0] == RULE4
    assert len([l for l in netns.save(4) if l.startswith("-A OUTPUT")]) == writes


# ---- packets ----

@pytest.mark.parametrize("family", [4, 6])
def test_packets_refused_after_ban_and_allowed_after_unban(hosts, family):
    srv, cli = hosts
    with srv.entered(), netns.serving(family, (2525, 2526)):
        c = Chain("t", "2525", blocktype="REJECT --reject-with tcp-reset", family=family,
                  set=True)
        netns.refusal_story(cli, family, c, expire=lambda ip: c.ban_many([ip], timeout=1))


# ---- the command line ----

def _cli(*args):
    import smban
    env = dict(os.environ,
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__))))
    return subprocess.run([sys.executable, "-m", "smban", "bans", "--backend", "ipset", *args],
                          capture_output=True, text=True, env=env)


def test_bans_cli(ns):
    c = tcp_reset()
    c.ban_many(["192.0.2.7", "192.0.2.8"])
    tcp_reset(family=6).ban("2001:db8::7")
    r = _cli("list", "--chain", "t")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["192.0.2.7", "192.0.2.8", "2001:db8::7"]
    r = _cli("list", "--chain", "f2b-t", "--family", "6", "--json")
    assert json.loads(r.stdout) == [{"family": 6, "name": "f2b-t-v6", "banned": ["2001:db8::7"]}]
    r = _cli("check", "--chain", "t", "--family", "4", "--port", PORTS)
    assert r.returncode == 1 and "BROKEN" in r.stdout          # the rule rejects otherwise
    r = _cli("check", "--chain", "t", "--family", "4", "--port", PORTS,
             "--blocktype", "REJECT --reject-with tcp-reset")
    assert r.returncode == 0 and "f2b-t-v4 (IPv4): ok; 2 ban(s)" in r.stdout, r.stdout
    r = _cli("check", "--chain", "t", "--family", "4")         # any rule naming the set
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout
    run("iptables-legacy", "-F", "INPUT")
    r = _cli("check", "--chain", "t", "--family", "4")
    assert r.returncode == 1 and "BROKEN" in r.stdout and "rule matching the set" in r.stdout
    r = _cli("flush", "--chain", "t")
    assert r.returncode == 0 and "2 ban(s) removed" in r.stdout
    assert c.banned() == []
    r = _cli("check", "--chain", "absent")
    assert r.returncode == 1 and "absent" in r.stdout


# ---- the fail2ban action, set = yes ----

def set_bans(family=4):
    return sorted(elements("f2b-smbantest-v%d" % family) or {})


@pytest.fixture(params=f2b_dist_params())
def f2b(tmp_path, request):
    from test_iptables_action import fail2ban_in_netns
    with fail2ban_in_netns(tmp_path, extra=', set="yes"', dist=request.param) as server:
        server.start()
        yield server


def test_fail2ban_bans_with_kernel_timeouts_reloads_and_restores(f2b):
    from test_iptables_action import wait_until
    rule = ("-A INPUT -p tcp -m multiport --dports 25,465 -m set --match-set "
            "f2b-smbantest-v%d src -j REJECT --reject-with %s")
    assert rules() == [] and sets() == []              # nothing before the first ban
    with open(os.path.join(f2b.dir, "mail.log"), "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S") + " fail 203.0.113.5\n")
    assert f2b.wait_log("Ban 203.0.113.5"), f2b.log()[-2000:]
    v4 = ["198.51.100.%d" % i for i in range(1, 41)]
    f2b.client("set", "smbantest", "banip", *v4, "2001:db8::10", "2001:db8::11")
    assert f2b.wait_log("Ban 2001:db8::11")
    assert wait_until(lambda: len(set_bans(4)) == 41 and len(set_bans(6)) == 2)
    # each element lives what is left of its ban (bantime 3600) in the kernel
    got = elements("f2b-smbantest-v4")
    assert all(3500 <= t <= 3600 for t in got.values()), got
    assert rules(4) == [rule % (4, "icmp-port-unreachable")]
    assert rules(6) == [rule % (6, "icmp6-port-unreachable")]
    assert "repaired" not in f2b.log()           # a layout made from nothing is no repair

    f2b.client("set", "smbantest", "unbanip", "198.51.100.1", "2001:db8::11")
    assert "198.51.100.1" not in set_bans(4) and set_bans(6) == ["2001:db8::10"]

    before = netns.save(4)
    f2b.client("reload")
    assert f2b.wait_log("Jail 'smbantest' reloaded")
    time.sleep(0.5)
    assert netns.save(4) == before and len(set_bans(4)) == 40

    # the rule deleted behind fail2ban's back: the next ban brings it back
    run("iptables-legacy", "-w", "-F", "INPUT")
    f2b.client("set", "smbantest", "banip", "198.51.100.200")
    assert f2b.wait_log("Ban 198.51.100.200")
    assert wait_until(lambda: rules(4) == [rule % (4, "icmp-port-unreachable")])

    expected4 = set_bans(4)
    f2b.client("stop")
    time.sleep(0.5)
    assert rules(4) == [] and rules(6) == [] and sets() == []

    # restart: fail2ban restores its bans, each with what is left of it
    f2b.start()
    assert wait_until(lambda: set_bans(4) == expected4 and set_bans(6) == ["2001:db8::10"])
    got = elements("f2b-smbantest-v4")
    assert all(3000 <= t <= 3600 for t in got.values()), got
    restored = [l for l in f2b.log().splitlines() if "restored ban(s) applied in one commit" in l]
    assert restored and len(restored) < len(expected4)


def test_a_bad_set_option_fails_the_jail_loudly(tmp_path):
    from test_iptables_action import fail2ban_in_netns
    with fail2ban_in_netns(tmp_path, extra=', set="maybe"') as server:
        r = server.client("start", check=False)
        assert "set='maybe': use yes or no" in server.log() + r.stderr
        assert sets() == []
