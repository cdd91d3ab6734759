"""The ban backend (smban.iptables over libiptc), in private network namespaces.

Root only; every test that touches iptables runs in its own namespace (see
lab/netns.py) with its own xtables lock file.  The rules are read back with
iptables-legacy-save, the tool an operator would use.
"""
import concurrent.futures
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab import netns
from smban.iptables import MAX_CHAIN, Chain, chain_name

pytestmark = pytest.mark.skipif(netns.why_unavailable() is not None,
                                reason=str(netns.why_unavailable()))

PORTS = "smtp,465,submission"
JUMP4 = "-A INPUT -p tcp -m multiport --dports 25,465,587 -j f2b-t"
REJ4 = "-j REJECT --reject-with icmp-port-unreachable"
REJ6 = "-j REJECT --reject-with icmp6-port-unreachable"


@pytest.fixture
def ns(tmp_path, monkeypatch):
    """The test runs inside a fresh namespace with a private xtables lock."""
    lock = str(tmp_path / "xtables.lock")
    monkeypatch.setenv("XTABLES_LOCKFILE", lock)
    n = netns.Netns()
    try:
        with n.entered():
            netns.link_up_lo()
            n.lockfile = lock
            yield n
    finally:
        n.close()


def mk(family=4, **kw):
    kw.setdefault("ports", PORTS)
    return Chain("t", family=family, **kw)


# ---- layout ----

def test_start_ban_unban_flush_stop_as_iptables_save_shows_them(ns):
    c = mk()
    assert c.chain == "f2b-t"
    assert netns.save() == [
        "*filter", ":INPUT ACCEPT", ":FORWARD ACCEPT", ":OUTPUT ACCEPT", "COMMIT"]
    assert c.start() == ("chain", "return", "jump")
    assert ":f2b-t -" in netns.save()
    assert [l for l in netns.save() if l.startswith("-A")] == [JUMP4, "-A f2b-t -j RETURN"]
    assert c.start() == ()                       # idempotent

    assert c.ban("192.0.2.7") is True
    assert c.ban("192.0.2.8") is True
    assert c.ban("192.0.2.7") is False           # already banned: reported no-op
    assert netns.chain_rules("f2b-t") == [
        "-A f2b-t -s 192.0.2.8/32 " + REJ4,
        "-A f2b-t -s 192.0.2.7/32 " + REJ4,
        "-A f2b-t -j RETURN"]
    assert c.banned() == ["192.0.2.8", "192.0.2.7"]

    assert c.unban("192.0.2.7") is True
    assert c.unban("192.0.2.7") is False         # absent: reported no-op
    assert netns.chain_rules("f2b-t") == ["-A f2b-t -s 192.0.2.8/32 " + REJ4,
                                          "-A f2b-t -j RETURN"]

    assert c.ban_many(["198.51.100.%d" % i for i in range(1, 51)] + ["192.0.2.8"]) == 50
    assert len(c.banned()) == 51
    assert c.unban_many(["198.51.100.%d" % i for i in range(1, 51, 2)] + ["203.0.113.9"]) == 25
    assert sorted(c.banned()) == sorted(["192.0.2.8"] + ["198.51.100.%d" % i
                                                         for i in range(2, 51, 2)])
    assert c.flush() == 26
    assert netns.chain_rules("f2b-t") == ["-A f2b-t -j RETURN"]
    assert JUMP4 in netns.save()

    assert c.stop() is True
    assert netns.save() == [
        "*filter", ":INPUT ACCEPT", ":FORWARD ACCEPT", ":OUTPUT ACCEPT", "COMMIT"]
    assert c.stop() is False


def test_ipv6_layout_and_options(ns):
    c = mk(family=6, ports="25", blocktype="DROP", parent="FORWARD")
    c.ban("2001:db8::5")
    lines = netns.save(6)
    assert "-A FORWARD -p tcp -m multiport --dports 25 -j f2b-t" in lines
    assert netns.chain_rules("f2b-t", 6) == ["-A f2b-t -s 2001:db8::5/128 -j DROP",
                                             "-A f2b-t -j RETURN"]
    assert not [l for l in netns.save(4) if l.startswith("-A")]   # IPv4 untouched
    r = mk(family=6, blocktype="REJECT --reject-with tcp-reset")
    r.ban("2001:db8::6")
    assert "-A f2b-t -s 2001:db8::6/128 -p tcp -j REJECT --reject-with tcp-reset" \
        in netns.chain_rules("f2b-t", 6)


def test_all_ports_and_ranges(ns):
    Chain("a", "all", protocol="udp").start()
    Chain("b", "1000:2000,53").start()
    lines = netns.save()
    assert "-A INPUT -p udp -j f2b-a" in lines
    assert "-A INPUT -p tcp -m multiport --dports 1000:2000,53 -j f2b-b" in lines


def test_changed_ports_replace_the_jump_rule(ns):
    mk(ports="25").start()
    assert mk(ports="25,587").start() == ("jump",)
    jumps = [l for l in netns.save() if l.endswith("-j f2b-t")]
    assert jumps == ["-A INPUT -p tcp -m multiport --dports 25,587 -j f2b-t"]


def test_unjump_keeps_chain_and_bans(ns):
    c = mk()
    c.ban("192.0.2.7")
    assert c.unjump() == 1
    assert c.unjump() == 0
    assert not [l for l in netns.save() if l.endswith("-j f2b-t")]
    assert c.banned() == ["192.0.2.7"]
    st = c.check()
    assert st["chain"] and not st["jump"]


def test_nothing_else_is_touched(ns):
    netns.run("iptables-legacy", "-w", "-N", "other")
    netns.run("iptables-legacy", "-w", "-A", "other", "-s", "203.0.113.1", "-j", "ACCEPT")
    netns.run("iptables-legacy", "-w", "-A", "INPUT", "-p", "udp", "-j", "other")
    netns.run("iptables-legacy", "-w", "-A", "INPUT", "-s", "192.0.2.7", "-j", "ACCEPT")
    before = [l for l in netns.save() if "f2b-t" not in l]
    c = mk()
    c.start()
    c.ban("192.0.2.7")
    c.unban("192.0.2.7")
    c.ban_many(["192.0.2.%d" % i for i in range(1, 20)])
    c.flush()
    c.stop()
    assert netns.save() == before


@pytest.mark.parametrize("bad,why", [
    ("", "empty"),
    ("mail.example.com", "host names"),
    ("localhost", "host names"),
    ("192.0.2.1; iptables -F", "not an IP"),
    ("$(reboot)", "not an IP"),
    ("`id`", "not an IP"),
    ("192.0.2.1 -j ACCEPT", "not an IP"),
    ("-s 0.0.0.0/0", "not an IP"),
    ("192.0.2.1\n", "not an IP"),
    ("192.0.2.256", "not an IPv4"),
    ("192.0.2", "not an IPv4"),
    ("0x7f.1", "not an IP"),
    ("010.0.0.1", "not an IPv4"),
    ("192.0.2.1/24", "single addresses"),
    ("192.0.2.1/0", "single addresses"),
    ("192.0.2.1/33", "out of range"),
    ("192.0.2.1/-1", "not an IP"),
    ("192.0.2.1/", "prefix"),
    ("2001:db8::1", "IPv6 address; this chain is IPv4"),
    ("x" * 300, "not an IP"),
])
def test_bad_input_is_refused_and_nothing_changes(ns, bad, why):
    c = mk()
    c.start()
    c.ban("192.0.2.99")
    before = netns.save()
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace("$", r"\$")):
        c.ban(bad)
    with pytest.raises(ValueError):
        c.ban_many(["198.51.100.1", bad, "198.51.100.2"])   # all or nothing
    with pytest.raises(ValueError):
        c.unban(bad)
    assert netns.save() == before


def test_bad_input_ipv6(ns):
    c = mk(family=6)
    for bad in ("192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1/64", "2001:db8::1%eth0",
                "2001:db8:::1", "fe80::1/129"):
        with pytest.raises(ValueError):
            c.ban(bad)
    assert not [l for l in netns.save(6) if l.startswith("-A")]


def test_non_str_and_nul(ns):
    c = mk()
    with pytest.raises(ValueError, match="NUL"):
        c._c.ban("192.0.2.1\0")
    with pytest.raises(TypeError):
        c._c.ban(b"192.0.2.1")
    assert not [l for l in netns.save() if l.startswith("-A")]


def test_cidr_option(ns):
    c = mk(min_prefix=24)
    assert c.ban("198.51.100.0/24")
    assert c.ban("203.0.113.128/25")
    with pytest.raises(ValueError, match="wider than"):
        c.ban("10.0.0.0/8")
    with pytest.raises(ValueError, match="host bits"):
        c.ban("192.0.2.1/24")
    assert "-A f2b-t -s 198.51.100.0/24 " + REJ4 in netns.chain_rules("f2b-t")
    assert c.banned() == ["203.0.113.128/25", "198.51.100.0/24"]
    assert c.unban("198.51.100.0/24")


@pytest.mark.parametrize("kw,why", [
    (dict(ports=""), "empty port list"),
    (dict(ports="smtp,nosuchservice"), "unknown tcp service"),
    (dict(ports="25;reboot"), "not a port"),
    (dict(ports="70000"), "out of range"),
    (dict(ports=",".join(str(p) for p in range(1, 17))), "too many ports"),
    (dict(protocol="icmp"), "protocol"),
    (dict(blocktype="ACCEPT"), "blocktype"),
    (dict(blocktype="REJECT --reject-with tcp-reset", protocol="udp", ports="25"),
     "tcp-reset needs"),
    (dict(parent="-F"), "parent chain"),
])
def test_bad_options(kw, why):
    with pytest.raises(ValueError, match=why):
        mk(**kw)


def test_older_keywords_are_aliases():
    """chain= (the parent) and cidr= (min_prefix) still work; giving both
    names of one option is an error."""
    c = mk(chain="FORWARD", cidr=24)
    assert (c.chain, c.parent, c.min_prefix) == ("f2b-t", "FORWARD", 24)
    assert mk().parent == "INPUT" and mk().min_prefix == 0
    with pytest.raises(TypeError, match="alias"):
        mk(parent="INPUT", chain="FORWARD")
    with pytest.raises(TypeError, match="alias"):
        mk(min_prefix=24, cidr=24)


def test_chain_name_limits():
    assert MAX_CHAIN == 28
    assert chain_name("smban") == "f2b-smban"
    assert chain_name("f2b-x") == "f2b-x"
    Chain("x" * 24, "25")
    with pytest.raises(ValueError, match="28"):
        Chain("x" * 25, "25")
    with pytest.raises(ValueError, match="invalid"):
        Chain("a b", "25")


# ---- packets ----

@pytest.fixture
def hosts(monkeypatch, tmp_path):
    monkeypatch.setenv("XTABLES_LOCKFILE", str(tmp_path / "xtables.lock"))
    with netns.two_hosts() as hosts:
        yield hosts


_listen = netns.listen
_connect = netns.connect


@pytest.mark.parametrize("family", [4, 6])
def test_packets_refused_after_ban_and_allowed_after_unban(hosts, family):
    srv, cli = hosts
    server_ip = "192.0.2.1" if family == 4 else "2001:db8::1"
    client_ip = "192.0.2.2" if family == 4 else "2001:db8::2"
    with srv.entered():
        listeners = [_listen(family, p) for p in (2525, 2526)]
        try:
            c = Chain("t", "2525", family=family)
            c.start()
            assert cli.call(_connect, server_ip, 2525) == "ok"
            c.ban(client_ip)
            assert cli.call(_connect, server_ip, 2525) == "refused"
            # the jump matches the jail's ports only
            assert cli.call(_connect, server_ip, 2526) == "ok"
            c.unban(client_ip)
            assert cli.call(_connect, server_ip, 2525) == "ok"
            # another client address is never caught
            c.ban("192.0.2.200" if family == 4 else "2001:db8::200")
            assert cli.call(_connect, server_ip, 2525) == "ok"
            c.stop()
        finally:
            for s, stop, t in listeners:
                stop.set()
                t.join()
                s.close()


def test_drop_blocktype_times_out(hosts):
    srv, cli = hosts
    with srv.entered():
        s, stop, t = _listen(4, 2525)
        try:
            c = Chain("t", "2525", blocktype="DROP")
            c.ban("192.0.2.2")
            assert cli.call(_connect, "192.0.2.1", 2525) == "timeout"
        finally:
            stop.set()
            t.join()
            s.close()


# ---- concurrency ----

def test_threads_and_an_iptables_writer_lose_nothing(ns):
    """2,000 single bans from 8 threads while iptables-legacy -w appends to
    another chain: afterwards every rule of both writers is there."""
    netns.run("iptables-legacy", "-w", "-N", "other")
    ips = ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(1, 2001)]
    c = mk()
    c.start()
    n_other = 150

    def writer():
        for i in range(n_other):
            subprocess.run(["iptables-legacy", "-w", "-A", "other", "-s",
                            "203.0.113.%d" % (i % 250 + 1), "-p", "udp", "--dport",
                            str(10000 + i), "-j", "ACCEPT"], check=True)
    w = threading.Thread(target=writer)
    w.start()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(c.ban, ips))
    w.join()
    assert all(results)
    lines = netns.save()
    bans = {l.split()[3] for l in lines if l.startswith("-A f2b-t -s")}
    assert bans == {ip + "/32" for ip in ips}
    others = [l for l in lines if l.startswith("-A other")]
    assert len(others) == n_other
    assert {l.split("--dport ")[1].split()[0] for l in others} == \
        {str(10000 + i) for i in range(n_other)}
    assert [l for l in lines if l.startswith("-A f2b-t")][-1] == "-A f2b-t -j RETURN"
    st = c.stats()
    # group commit: far fewer commits than bans
    assert st["requests"] == 2000 and st["commits"] < 2000
    assert st["grouped"] > 0


def test_two_objects_same_chain_in_threads(ns):
    a, b = mk(), mk()
    ips = ["198.51.100.%d" % i for i in range(1, 201)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda ip: (a if ip.endswith(("1", "3", "5")) else b).ban(ip), ips))
    assert sorted(a.banned()) == sorted(ips)
    assert len(netns.chain_rules("f2b-t")) == 201


# ---- faults ----

def test_chain_deleted_behind_our_back(ns):
    c = mk()
    c.ban("192.0.2.7")
    netns.run("iptables-legacy", "-w", "-D", "INPUT", "-p", "tcp", "-m", "multiport",
              "--dports", "25,465,587", "-j", "f2b-t")
    netns.run("iptables-legacy", "-w", "-F", "f2b-t")
    netns.run("iptables-legacy", "-w", "-X", "f2b-t")
    st = c.check()
    assert not st["ok"] and not st["chain"]
    assert c.ban("192.0.2.8") is True            # repairs as it bans
    assert c.check()["ok"]
    assert netns.chain_rules("f2b-t") == ["-A f2b-t -s 192.0.2.8/32 " + REJ4,
                                          "-A f2b-t -j RETURN"]
    assert JUMP4 in netns.save()


def test_jump_or_return_removed_behind_our_back(ns):
    c = mk()
    c.ban("192.0.2.7")
    netns.run("iptables-legacy", "-w", "-D", "INPUT", "1")
    st = c.check()
    assert st["chain"] and st["return"] and not st["jump"] and st["bans"] == 1
    c.ban("192.0.2.8")
    assert [l for l in netns.save() if l.endswith("-j f2b-t")] == [JUMP4]
    netns.run("iptables-legacy", "-w", "-D", "f2b-t", "-j", "RETURN")
    assert not c.check()["return"]
    assert c.start() == ("return",)
    assert netns.chain_rules("f2b-t")[-1] == "-A f2b-t -j RETURN"
    # the chain without anything: start rebuilds the jump too
    netns.run("iptables-legacy", "-w", "-D", "INPUT", "1")
    assert c.start() == ("jump",)
    assert c.banned() == ["192.0.2.8", "192.0.2.7"]


def test_emptied_chain_gets_its_return_back(ns):
    c = mk()
    c.start()
    netns.run("iptables-legacy", "-w", "-F", "f2b-t")
    assert c.start() == ("return",)
    assert c.check()["ok"]


def test_lock_held_by_another_process(ns):
    c = mk(lock_wait=0.6)
    c.start()
    before = netns.save()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,sys,time;f=open(sys.argv[1],'a');fcntl.flock(f,fcntl.LOCK_EX);"
         "print('held',flush=True);time.sleep(30)", ns.lockfile],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        with pytest.raises(TimeoutError, match="held the xtables lock"):
            c.ban("192.0.2.7")
        waited = time.monotonic() - t
        assert 0.5 < waited < 3
        assert netns.save() == before
    finally:
        holder.kill()
        holder.wait()
    assert c.ban("192.0.2.7") is True            # nothing lost once free
    assert c.banned() == ["192.0.2.7"]


def test_missing_parent_chain_is_a_clear_error(ns):
    c = mk(parent="NOPE")
    with pytest.raises(OSError, match="parent chain NOPE does not exist"):
        c.ban("192.0.2.7")
    assert not [l for l in netns.save() if l.startswith(("-A", ":f2b"))]


def test_stop_refuses_when_someone_else_jumps_to_the_chain(ns):
    c = mk()
    c.start()
    netns.run("iptables-legacy", "-w", "-A", "FORWARD", "-j", "f2b-t")
    with pytest.raises(OSError, match="still jump"):
        c.stop()
    assert "-A FORWARD -j f2b-t" in netns.save()


# ---- the bans CLI ----

def _cli(*args):
    import smban
    env = dict(os.environ,
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__))))
    return subprocess.run([sys.executable, "-m", "smban", "bans", *args],
                          capture_output=True, text=True, env=env)


def test_bans_cli(ns):
    c = mk()
    c.ban_many(["192.0.2.7", "192.0.2.8"])
    c6 = mk(family=6)
    c6.ban("2001:db8::7")
    r = _cli("list", "--chain", "t")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["192.0.2.8", "192.0.2.7", "2001:db8::7"]
    r = _cli("list", "--chain", "f2b-t", "--family", "6")
    assert r.stdout.split() == ["2001:db8::7"]
    r = _cli("check", "--chain", "t", "--family", "4", "--port", PORTS)
    assert r.returncode == 0 and "ok; 2 ban(s)" in r.stdout
    netns.run("iptables-legacy", "-w", "-D", "INPUT", "1")
    r = _cli("check", "--chain", "t", "--family", "4")
    assert r.returncode == 1 and "BROKEN" in r.stdout and "jump rule" in r.stdout
    r = _cli("flush", "--chain", "t")
    assert r.returncode == 0 and "2 ban(s) removed" in r.stdout
    assert c.banned() == [] and c6.banned() == []
    r = _cli("list", "--chain", "bad name!")
    assert r.returncode == 2 and "smban:" in r.stderr
    r = _cli("check", "--chain", "absent")
    assert r.returncode == 1 and "absent" in r.stdout



def test_kernel_eagain_is_retried_and_nothing_is_lost(ns):
    """A writer that does not share our lock commits between our snapshot
    and our commit: the kernel refuses the stale commit (EAGAIN) and the
    whole transaction is redone on a fresh snapshot; every ban ends up in
    the table.  The concurrent writer is the backend's test hook (a second
    libiptc handle that commits right before ours), so the race happens on
    every run instead of when the scheduler allows it."""
    c = mk(ports="25")
    c.start()
    c.ban_many(["192.0.2.%d" % i for i in range(1, 201)])
    before = c.stats()
    c._c._race_next(3)
    assert c.ban("198.51.100.1") is True         # raced three times, then lands
    assert c.ban("198.51.100.2") is True         # no race left: no retry
    after = c.stats()
    assert after["retries"] - before["retries"] == 3
    assert after["commits"] - before["commits"] == 2
    # the hook's own commits really landed: its chain was toggled three times
    assert ":smban-race -" in netns.save()
    assert {"198.51.100.1", "198.51.100.2"} <= set(c.banned())
    assert len(c.banned()) == 202
    assert netns.chain_rules("f2b-t")[-1] == "-A f2b-t -j RETURN"


def test_a_commit_refused_every_time_fails_after_the_retries_and_changes_nothing(ns):
    """More races than retries: the ban is reported as failed (OSError with
    libiptc's reason), the chain is as it was, and the next ban works."""
    c = mk(ports="25")
    c.start()
    c.ban("192.0.2.1")
    c._c._race_next(100)
    with pytest.raises(OSError, match="commit failed"):
        c.ban("198.51.100.1")
    assert c.stats()["retries"] == 8             # the default retry budget
    c._c._race_next(0)
    assert c.banned() == ["192.0.2.1"]
    assert c.ban("198.51.100.1") is True
    assert c.banned() == ["198.51.100.1", "192.0.2.1"]
