"""The nftables ban backend (smban.nftables over libnftables), in private
network namespaces.

Root only; every test runs in a namespace of its own (lab/netns.py), whose
ruleset starts empty.  What smban wrote is read back with the nft command,
the tool an operator would use.
"""
import json
import shutil
import subprocess
import time

import pytest

from lab import netns

nftables = pytest.importorskip("smban.nftables", reason="smban._nft not built (libnftables-dev)")
Set = nftables.Set

pytestmark = pytest.mark.skipif(
    netns.why_unavailable() is not None or not shutil.which("nft"),
    reason=str(netns.why_unavailable() or "the nft command is not installed"))

PORTS = "smtp,465,submission"
RULE4 = "ip saddr @f2b-t-v4 tcp dport { 25, 465, 587 } reject with tcp reset"


def nft(*args, check=True):
    return subprocess.run(["nft", *args], check=check, capture_output=True, text=True)


def ruleset():
    """The ruleset as JSON objects (without the metainfo), for exact checks."""
    out = json.loads(nft("-j", "list", "ruleset").stdout)["nftables"]
    return [o for o in out if "metainfo" not in o]


def chain_rules(chain, table="smban"):
    """The rules of a chain as nft prints them, in order."""
    out = nft("list", "chain", "inet", table, chain).stdout.splitlines()
    body = [l.strip() for l in out]
    start = next(i for i, l in enumerate(body) if l.startswith("chain "))
    return [l for l in body[start + 1:] if l and l != "}" and not l.startswith("type ")]


def elements(set_name, table="smban"):
    """{address: timeout seconds or None} of a set, read with nft -j."""
    out = json.loads(nft("-j", "list", "set", "inet", table, set_name).stdout)["nftables"]
    got = {}
    for o in out:
        for e in o.get("set", {}).get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                v = e["elem"]["val"]
                got[_text(v)] = e["elem"].get("timeout")
            else:
                got[_text(e)] = None
    return got


def _text(v):
    if isinstance(v, dict) and "prefix" in v:
        return "%s/%d" % (v["prefix"]["addr"], v["prefix"]["len"])
    return v


# ---- layout ----

def test_start_ban_unban_flush_stop_as_nft_shows_them(ns):
    s = Set("t", PORTS)
    assert (s.set, s.table, s.family) == ("f2b-t-v4", "smban", 4)
    assert ruleset() == []
    assert s.check() == {"set": False, "chain": False, "rule": False, "references": 0,
                         "bans": 0, "ok": False}
    assert s.start() == ("set", "chain", "rule")
    assert chain_rules("f2b-t-v4") == [RULE4]
    hook = nft("list", "chain", "inet", "smban", "f2b-t-v4").stdout
    assert "type filter hook input priority filter - 1; policy accept;" in hook
    assert s.start() == ()                       # idempotent
    assert s.check()["ok"]

    assert s.ban("192.0.2.7") is True
    assert s.ban("192.0.2.8") is True
    assert s.ban("192.0.2.7") is False           # already banned: a no-op
    assert elements("f2b-t-v4") == {"192.0.2.7": None, "192.0.2.8": None}
    assert sorted(s.banned()) == ["192.0.2.7", "192.0.2.8"]
    assert s.unban("192.0.2.7") is True
    assert s.unban("192.0.2.7") is False         # absent: a no-op
    assert s.banned() == ["192.0.2.8"]

    many = ["198.51.100.%d" % i for i in range(1, 51)]
    assert s.ban_many(many + ["192.0.2.8", many[0]]) == 50   # duplicates and old ones once
    assert len(s.banned()) == 51
    assert s.unban_many(many[::2] + ["203.0.113.9", many[0]]) == 25
    assert sorted(s.banned()) == sorted(["192.0.2.8"] + many[1::2])
    assert s.check()["bans"] == 26
    assert s.flush() == 26
    assert s.banned() == [] and chain_rules("f2b-t-v4") == [RULE4]
    assert s.stop() is True
    assert s.stop() is False
    # what stays is the empty table (other jails may share it)
    assert ruleset() == [{"table": {"family": "inet", "name": "smban", "handle": 1}}]


def test_ipv6_networks_udp_and_drop(ns):
    s = Set("t", "53,1000:2000", protocol="udp", blocktype="DROP", family=6, min_prefix=48)
    s.start()
    assert chain_rules("f2b-t-v6") == ["ip6 saddr @f2b-t-v6 udp dport { 53, 1000-2000 } drop"]
    assert "flags interval,timeout" in nft("list", "set", "inet", "smban", "f2b-t-v6").stdout
    assert s.ban_many(["2001:db8:5::/48", "2001:db8::7"]) == 2
    assert sorted(s.banned()) == ["2001:db8:5::/48", "2001:db8::7"]
    # a v4 set of the same jail is its own
    s4 = Set("t", protocol="all")
    s4.start()
    assert chain_rules("f2b-t-v4") == ["ip saddr @f2b-t-v4 reject with icmp port-unreachable"]
    assert s4.banned() == []
    s.stop()
    assert s4.check()["ok"]


def test_nothing_else_is_touched(ns):
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input="""
table inet filter {
    set f2b-t-v4 { type ipv4_addr; elements = { 203.0.113.1 } }
    chain input { type filter hook input priority 0; policy accept;
                  ip saddr 192.0.2.7 accept; }
}
table ip other {
    set s { type ipv4_addr; }
    chain c { ip saddr @s drop; }
}
""")
    before = ruleset()
    s = Set("t", PORTS)
    s.start()
    s.ban_many(["192.0.2.7", "192.0.2.9"])
    s.unban("192.0.2.9")
    s.flush()
    s.stop()
    after = [o for o in ruleset() if not ("table" in o and o["table"]["name"] == "smban")]
    assert after == before


def test_a_ban_repairs_a_deleted_or_edited_rule(ns):
    s = Set("t", PORTS)
    s.start()
    nft("flush", "chain", "inet", "smban", "f2b-t-v4")
    st = s.check()
    assert st["set"] and st["chain"] and not st["rule"] and not st["ok"]
    assert s.ban("192.0.2.7") is True
    assert chain_rules("f2b-t-v4") == [RULE4]
    # a rule added beside ours: ours is no longer alone, start makes it so
    nft("add", "rule", "inet", "smban", "f2b-t-v4", "ip", "saddr", "203.0.113.5", "accept")
    assert not s.check()["rule"]
    assert s.start() == ("rule",)
    assert chain_rules("f2b-t-v4") == [RULE4]
    assert s.banned() == ["192.0.2.7"]


def test_flush_ruleset_is_reported_and_repaired(ns):
    s = Set("t", PORTS)
    s.start()
    s.ban("192.0.2.7")
    nft("flush", "ruleset")                       # nft -f of a distribution's nftables.conf
    assert s.check() == {"set": False, "chain": False, "rule": False, "references": 0,
                         "bans": 0, "ok": False}
    assert s.start() == ("set", "chain", "rule")
    assert s.ban("192.0.2.7") is True


def test_a_set_someone_else_made_with_another_type_is_a_clear_error(ns):
    nft("add", "table", "inet", "smban")
    nft("add", "set", "inet", "smban", "f2b-t-v4", "{ type ipv4_addr; }")   # no timeout flag
    s = Set("t", PORTS, timeout=600)
    with pytest.raises(OSError, match="nftables refused to create the set, chain and rule"):
        s.start()
    with pytest.raises(OSError, match="nftables refused to ban"):
        s.ban("192.0.2.7")
    # nothing half applied: no chain, the other set untouched
    assert nft("list", "chain", "inet", "smban", "f2b-t-v4", check=False).returncode != 0
    assert elements("f2b-t-v4") == {}


# ---- timeouts ----

def test_a_ban_expires_in_the_kernel(ns):
    s = Set("t", PORTS, timeout=1)
    s.start()
    s.ban("192.0.2.7")
    assert elements("f2b-t-v4") == {"192.0.2.7": 1}
    deadline = time.monotonic() + 10
    while s.banned() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s.banned() == []
    assert s.ban("192.0.2.7") is True            # banned again after expiry


def test_a_restore_gives_each_ban_what_is_left(ns):
    s = Set("t", PORTS, timeout=3600)
    s.start()
    assert s.ban_many(["192.0.2.7", "192.0.2.8"], timeout=120) == 2
    assert s.ban_many(["192.0.2.10", "192.0.2.11", "192.0.2.12"], timeout=[60, 0, 90]) == 3
    s.ban("192.0.2.9")
    assert elements("f2b-t-v4") == {"192.0.2.7": 120, "192.0.2.8": 120, "192.0.2.9": 3600,
                                    "192.0.2.10": 60, "192.0.2.11": None, "192.0.2.12": 90}
    with pytest.raises(ValueError):
        s.ban_many(["192.0.2.13", "192.0.2.14"], timeout=[60])
    with pytest.raises(ValueError):
        s.ban_many(["192.0.2.13"], timeout=-5)
    assert "192.0.2.13" not in s.banned()


def test_a_prolonged_ban_gets_its_new_timeout(ns):
    s = Set("t", PORTS, timeout=60)
    s.start()
    s.ban("192.0.2.7")
    assert s.ban_many(["192.0.2.7"], timeout=7200) == 0          # no refresh: kept as it was
    assert elements("f2b-t-v4") == {"192.0.2.7": 60}
    assert s.ban_many(["192.0.2.7", "192.0.2.8"], timeout=7200, refresh=True) == 1
    assert elements("f2b-t-v4") == {"192.0.2.7": 7200, "192.0.2.8": 7200}


def test_a_large_restore_is_one_transaction(ns):
    s = Set("t", PORTS, timeout=3600)
    s.start()
    ips = ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(20000)]
    before = s.stats()["transactions"]
    assert s.ban_many(ips) == 20000
    # all new: one transaction ("create", which would fail whole otherwise)
    assert s.stats()["transactions"] - before == 1
    assert s.check()["bans"] == 20000
    # some there: the create refused, one listing, the batch of the others
    before = s.stats()["transactions"]
    assert s.ban_many(ips[:10] + ["192.0.2.1"]) == 1
    assert s.stats()["transactions"] - before == 3
    # one address: no listing whatever the set's size
    before = s.stats()["transactions"]
    assert s.ban("192.0.2.2") is True and s.ban("192.0.2.2") is False
    assert s.unban("192.0.2.2") is True and s.unban("192.0.2.2") is False
    assert s.stats()["transactions"] - before == 1 + 2 + 1 + 1


# ---- bad input ----

@pytest.mark.parametrize("kw, why", [
    (dict(name="a b"), "jail name"),
    (dict(name="t;flush ruleset"), "jail name"),
    (dict(name="x" * 65), "jail name"),
    (dict(name="t", ports="smtp;drop"), "not a port number or service name"),
    (dict(name="t", ports="2000:1000"), "reversed"),
    (dict(name="t", ports="nosuchservice"), "not in /etc/services"),
    (dict(name="t", blocktype="accept"), "not reject or drop"),
    (dict(name="t", protocol="icmp"), "unknown protocol"),
    (dict(name="t", protocol="all", ports="25"), "need a protocol"),
    (dict(name="t", family=5), "family must be 4 or 6"),
    (dict(name="t", table="t x"), "table name"),
    (dict(name="t", timeout=-1), "timeout"),
    (dict(name="t", min_prefix=33), "min_prefix"),
])
def test_bad_options_are_refused_before_anything_is_written(ns, kw, why):
    with pytest.raises(ValueError, match=why):
        Set(**kw)
    assert ruleset() == []


@pytest.mark.parametrize("bad", ["192.0.2.0/24", "192.0.2.1/33", "2001:db8::1", "::ffff:192.0.2.1",
                                 "192.0.2.01", "example.com", "192.0.2.1 ", "", "192.0.2.1\x00"])
def test_bad_addresses_change_nothing(ns, bad):
    s = Set("t", PORTS)
    s.start()
    s.ban("192.0.2.7")
    before = ruleset()
    with pytest.raises(ValueError):
        s.ban(bad)
    with pytest.raises(ValueError):
        s.ban_many(["192.0.2.8", bad])           # one bad address: nothing of the list
    with pytest.raises(ValueError):
        s.ban_many(["192.0.2.8", 7])             # not an address either
    assert ruleset() == before


def test_networks_need_min_prefix_and_clear_host_bits(ns):
    s = Set("t", PORTS, min_prefix=16)
    s.start()
    assert s.ban("192.0.2.0/24") is True
    for bad in ("192.0.2.1/24", "10.0.0.0/8"):
        with pytest.raises(ValueError):
            s.ban(bad)
    assert s.banned() == ["192.0.2.0/24"]


# ---- concurrency ----

def test_a_concurrent_writer_loses_nothing(ns):
    """The nft command adds rules to another table in a loop while smban
    bans from two threads: every ban lands, every rule of the other table
    too."""
    nft("add", "table", "inet", "other")
    nft("add", "chain", "inet", "other", "c")
    s = Set("t", PORTS)
    s.start()
    writes = netns.bans_beside_a_writer(
        s.ban, lambda i: nft("add", "rule", "inet", "other", "c", "ip", "saddr",
                             "203.0.113.%d" % (i % 250), "counter"), writes=400)
    assert len(s.banned()) == 200
    assert len(chain_rules("c", "other")) == writes


# ---- packets ----

@pytest.mark.parametrize("family", [4, 6])
def test_packets_refused_after_ban_and_allowed_after_unban(hosts, family):
    srv, cli = hosts
    with srv.entered(), netns.serving(family, (2525, 2526)):
        s = Set("t", "2525", family=family)
        netns.refusal_story(cli, family, s, expire=lambda ip: s.ban_many([ip], timeout=1))


def test_drop_times_out(hosts):
    srv, cli = hosts
    with srv.entered():
        sock, stop, t = netns.listen(4, 2525)
        try:
            s = Set("t", "2525", blocktype="drop")
            s.ban("192.0.2.2")
            assert cli.call(netns.connect, "192.0.2.1", 2525) == "timeout"
        finally:
            stop.set()
            t.join()
            sock.close()


# ---- the command line ----

def _cli(*args):
    import os
    import sys
    import smban
    env = dict(os.environ,
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__))))
    return subprocess.run([sys.executable, "-m", "smban", "bans", "--backend", "nftables",
                           *args], capture_output=True, text=True, env=env)


def test_bans_cli(ns):
    s = Set("t", PORTS)
    s.ban_many(["192.0.2.7", "192.0.2.8"])
    Set("t", PORTS, family=6).ban("2001:db8::7")
    r = _cli("list", "--chain", "t")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["192.0.2.7", "192.0.2.8", "2001:db8::7"]
    r = _cli("list", "--chain", "f2b-t", "--family", "6", "--json")
    assert json.loads(r.stdout) == [{"family": 6, "name": "inet smban f2b-t-v6",
                                     "banned": ["2001:db8::7"]}]
    r = _cli("check", "--chain", "t", "--family", "4", "--port", PORTS)
    assert r.returncode == 0 and "inet smban f2b-t-v4 (IPv4): ok; 2 ban(s)" in r.stdout, r.stdout
    nft("flush", "chain", "inet", "smban", "f2b-t-v4")
    r = _cli("check", "--chain", "t", "--family", "4")
    assert r.returncode == 1 and "BROKEN" in r.stdout and "the chain's rule" in r.stdout
    r = _cli("flush", "--chain", "t")
    assert r.returncode == 0 and "2 ban(s) removed" in r.stdout
    assert s.banned() == []
    r = _cli("list", "--chain", "bad name!")
    assert r.returncode == 2 and "smban:" in r.stderr
    r = _cli("check", "--chain", "absent")
    assert r.returncode == 1 and "absent" in r.stdout


def test_an_address_inside_a_banned_network_is_no_change(ns):
    """An interval set refuses an element that overlaps one it holds: the
    address is covered already, so its ban changes nothing (and never
    fails, which would queue it for retries for ever)."""
    s = Set("t", PORTS, min_prefix=16)
    s.start()
    assert s.ban("192.0.2.0/24") is True
    assert s.ban("192.0.2.7") is False
    assert s.ban_many(["192.0.2.8", "198.51.100.1", "192.0.2.0/24"]) == 1
    assert sorted(s.banned()) == ["192.0.2.0/24", "198.51.100.1"]
