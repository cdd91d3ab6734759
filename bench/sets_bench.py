"""Bans at scale: smban's nftables set and the set mode of its iptables
backend (one rule matching an ipset) against smban's iptables chain
(libiptc) and fail2ban's stock nftables-multiport and iptables-ipset-proto6
actions, measured in the same run.

    python3 bench/sets_bench.py [--bans 100000] [--connects 2000]
        (root; prints the tables, also written to bench/out/sets.md)

- restore N bans (smban: one ban_many; the stock actions, a shell and an
  nft or ipset process per ban, are run for 200 and their per-ban cost
  stated; fail2ban's ipset holds at most 65,536 bans, ipset's default
  maxelem, so its "present" figure is taken at 65,000);
- one more ban with N present (median of 31);
- new TCP connections per second from an unbanned address through a veth
  pair with 0, N/10 and N bans present: the client sends SYNs to a port
  of the jail where nothing listens and counts the RSTs (connection
  refused), so every packet meets the ban rule.

Everything runs in private network namespaces (the script re-executes
itself under `unshare -n` for the ban timings; the connection test makes
two namespaces joined by a veth pair): the machine's firewall is never
touched.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ban_bench_common import median_ms as _median_ms, stock_action  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PORTS = "25,465,587"


def _ips(n, first=10):
    return ["%d.%d.%d.%d" % (first + (i >> 24), (i >> 16) & 255, (i >> 8) & 255, i & 255)
            for i in range(n)]


def _stock_nftables():
    """fail2ban's nftables-multiport action (a shell and nft per operation)."""
    return stock_action("nftables-multiport", {"port": PORTS})


#: The most bans fail2ban's iptables-ipset action's set takes (ipset's
#: default maxelem, which its actionstart keeps), less a margin.
STOCK_IPSET_MAX = 65000


def _stock_per_ban(stock, present, first):
    """(ms for 200 bans one after the other, median ms of one more ban
    with `present` (a callable filling the stock set) bans present)."""
    from fail2ban.server.ipdns import IPAddr
    small = 200
    t = time.perf_counter()
    for ip in _ips(small, first=first):
        stock.ban({"ip": IPAddr(ip), "family": "inet4"})
    took = (time.perf_counter() - t) * 1000
    present()
    one = _median_ms(lambda ip: stock.ban({"ip": IPAddr(ip), "family": "inet4"}),
                     ["198.51.101.%d" % i for i in range(1, 32)])
    return took, one


def _bans(n):
    """The ban timings; runs inside a private namespace."""
    sys.path.insert(0, ROOT)
    from smban.iptables import Chain
    from smban.nftables import Set
    from fail2ban.server.ipdns import IPAddr

    lock = os.path.join(tempfile.mkdtemp(prefix="smban-bench-"), "xtables.lock")
    os.environ["XTABLES_LOCKFILE"] = lock
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ips = _ips(n)
    probe = ["198.51.100.%d" % i for i in range(1, 32)]
    rows = []

    s = Set("bench", PORTS, timeout=3600)
    s.start()
    t = time.perf_counter()
    assert s.ban_many(ips) == n
    nft_restore = (time.perf_counter() - t) * 1000
    nft_one = _median_ms(s.ban, probe)
    s.unban_many(probe)
    nft_unban = _median_ms(s.unban, ips[:31])

    c = Chain("bench", PORTS, lockfile=lock)
    c.start()
    t = time.perf_counter()
    assert c.ban_many(ips) == n
    ipt_restore = (time.perf_counter() - t) * 1000
    ipt_one = _median_ms(c.ban, probe)
    c.unban_many(probe)
    ipt_unban = _median_ms(c.unban, ips[:31])
    c.stop()

    c = Chain("bench", PORTS, lockfile=lock, set=True)
    c.start()
    t = time.perf_counter()
    assert c.ban_many(ips, timeout=3600) == n
    set_restore = (time.perf_counter() - t) * 1000
    set_one = _median_ms(lambda ip: c.ban_many([ip], timeout=3600), probe)
    c.unban_many(probe)
    set_unban = _median_ms(c.unban, ips[:31])
    c.stop()

    stock = _stock_nftables()

    def fill_nft():
        text = "add element inet f2b-table addr-set-bench { %s }\n" % ", ".join(ips)
        subprocess.run(["nft", "-f", "-"], input=text, text=True, check=True)
    nft_small, nft_stock_one = _stock_per_ban(stock, fill_nft, 11)
    stock.stop()

    stock = stock_action("iptables-ipset-proto6", {"port": PORTS, "bantime": "3600"})

    def fill_ipset():
        text = "".join("add f2b-bench %s timeout 3600 -exist\n" % ip
                       for ip in ips[:STOCK_IPSET_MAX - 300])
        subprocess.run(["ipset", "restore"], input=text, text=True, check=True)
    ipset_small, ipset_stock_one = _stock_per_ban(stock, fill_ipset, 12)
    stock.stop()

    N = format(n, ",")
    rows.append({"what": "restore %s bans" % N, "nft": nft_restore, "set": set_restore,
                 "iptc": ipt_restore, "stock": None, "stock_ipset": None,
                 "note": "stock, 200 bans one after the other: nftables-multiport %.1f s "
                         "(%.1f ms per ban), iptables-ipset-proto6 %.1f s (%.1f ms per ban)"
                 % (nft_small / 1000, nft_small / 200, ipset_small / 1000, ipset_small / 200)})
    rows.append({"what": "one more ban, %s present (median of 31)" % N, "nft": nft_one,
                 "set": set_one, "iptc": ipt_one, "stock": nft_stock_one,
                 "stock_ipset": ipset_stock_one,
                 "note": "iptables-ipset-proto6 with %s present: its set holds at most 65,536"
                         % format(STOCK_IPSET_MAX, ",")})
    rows.append({"what": "one unban, %s present (median of 31)" % N, "nft": nft_unban,
                 "set": set_unban, "iptc": ipt_unban, "stock": None, "stock_ipset": None,
                 "note": ""})
    return rows


def _connects(n, count):
    """Connections per second from an unbanned client through a veth pair,
    with 0, n/10 and n bans in the nftables set, in the ipset of the
    iptables set mode and in the iptables chain."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "lab"))
    from lab import netns
    from smban.iptables import Chain
    from smban.nftables import Set

    def rate(cli):
        """The best of three runs: the machine's noise only ever slows one."""
        return max(cli.call(go) for _ in range(3))

    def go():
        t = time.perf_counter()
        refused = 0
        for _ in range(count):
            sk = socket.socket()
            sk.settimeout(2)
            try:
                sk.connect(("192.0.2.1", 25))
            except ConnectionRefusedError:
                refused += 1
            finally:
                sk.close()
        assert refused == count, refused
        return count / (time.perf_counter() - t)

    os.environ["XTABLES_LOCKFILE"] = os.path.join(
        tempfile.mkdtemp(prefix="smban-bench-"), "xtables.lock")
    rows = []
    with netns.two_hosts() as (srv, cli):
        for size in (0, n // 10, n):
            row = {"bans": size}
            ips = _ips(size)
            with srv.entered():
                s = Set("bench", PORTS)
                s.start()
                if ips:
                    s.ban_many(ips)
            rate(cli)                       # warm-up
            row["nft"] = rate(cli)
            with srv.entered():
                s.stop()
                c = Chain("bench", PORTS, set=True)
                c.start()
                if ips:
                    c.ban_many(ips)
            row["set"] = rate(cli)
            with srv.entered():
                c.stop()
                c = Chain("bench", PORTS)
                c.start()
                if ips:
                    c.ban_many(ips)
            row["iptc"] = rate(cli)
            with srv.entered():
                c.stop()
            row["none"] = rate(cli)
            rows.append(row)
    return rows


def _fmt(ms):
    if ms is None:
        return "not run"
    return "%.2f ms" % ms if ms < 10 else "%.0f ms" % ms


def tables(ban_rows, conn_rows, count):
    out = ["| operation | smban nftables set | smban iptables + ipset (set = yes) | "
           "smban iptables chain (libiptc) | fail2ban nftables-multiport | "
           "fail2ban iptables-ipset-proto6 | |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in ban_rows:
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r["what"], _fmt(r["nft"]), _fmt(r["set"]), _fmt(r["iptc"]), _fmt(r["stock"]),
            _fmt(r["stock_ipset"]), r["note"]))
    out += ["", "| bans present | no ban rule: connections/s | nftables set: connections/s "
                "(of 0 bans) | iptables + ipset: connections/s (of 0 bans) | "
                "iptables chain: connections/s (of 0 bans) |",
            "|---:|---:|---:|---:|---:|"]
    base = conn_rows[0]
    for r in conn_rows:
        out.append("| %s | %.0f | %.0f (%.0f %%) | %.0f (%.0f %%) | %.0f (%.0f %%) |" % (
            format(r["bans"], ","), r["none"], r["nft"], 100 * r["nft"] / base["nft"],
            r["set"], 100 * r["set"] / base["set"],
            r["iptc"], 100 * r["iptc"] / base["iptc"]))
    out.append("")
    out.append("(each figure the best of 3 runs of %d connection attempts from an unbanned "
               "address, each a SYN answered by a RST, through a veth pair between two "
               "namespaces.)" % count)
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bans", type=int, default=100000)
    ap.add_argument("--connects", type=int, default=5000)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        outer = os.environ.get("SMBAN_BENCH_OUTER_NETNS")
        if not outer or str(os.stat("/proc/self/ns/net").st_ino) == outer:
            sys.exit("refusing to run outside a private network namespace")
        print(json.dumps(_bans(args.bans)))
        return None
    if os.geteuid() != 0:
        print("sets benchmark skipped: needs root (network namespaces)")
        return None
    r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__), "--inner",
                        "--bans", str(args.bans)], capture_output=True, text=True,
                       env=dict(os.environ, SMBAN_BENCH_OUTER_NETNS=str(
                           os.stat("/proc/self/ns/net").st_ino)))
    if r.returncode:
        sys.stderr.write(r.stderr)
        raise RuntimeError("sets benchmark failed")
    ban_rows = json.loads(r.stdout.strip().splitlines()[-1])
    conn_rows = _connects(args.bans, args.connects)
    text = tables(ban_rows, conn_rows, args.connects)
    print(text)
    out = os.path.join(HERE, "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "sets.md"), "w") as f:
        f.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
