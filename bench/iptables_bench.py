"""Ban backend benchmark: smban (libiptc, in process) against one
`iptables-legacy -w` process per ban and against fail2ban's stock
iptables-multiport action, on the legacy tables smban writes and as Debian
12 runs it by default (`iptables` is iptables-nft), measured in the same run.

    python3 bench/iptables_bench.py   (root; prints the table, also written
                                       to bench/out/iptables.md)

Everything runs in a private network namespace (the script re-executes
itself under `unshare -n`) with its own xtables lock file: the machine's
firewall is never touched.

fail2ban's stock action is read from fail2ban's own action.d with fail2ban's
ActionReader and run by fail2ban's CommandAction (a shell per operation),
twice: with `iptables = iptables-legacy -w` (the same tables as smban) and
with its default `iptables -w`, which on Debian 12 is iptables-nft (what a
Debian user starts from).  Every figure is measured at the size it names;
the 20,000-ban restore is run by smban alone (the per-process tools would
take minutes: their per-ban cost at 10,000 bans is in the table).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ban_bench_common import median_ms as _median_ms, stock_action  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES = (0, 1000, 10000)
RESTORE = 20000
PORTS = "25,465,587"


def _ips(prefix, n, start=0):
    return ["%s.%d.%d" % (prefix, (i >> 8) & 255, i & 255) for i in range(start, start + n)]


def _stock_action(legacy):
    """fail2ban's iptables-multiport action: on the legacy tables, or with
    its default iptables (iptables-nft)."""
    opts = {"port": PORTS}
    if legacy:
        opts["iptables"] = "iptables-legacy <lockingopt>"
    return stock_action("iptables-multiport", opts)


def _inner():
    """The measurements; runs inside the private namespace."""
    sys.path.insert(0, ROOT)
    from smban.iptables import Chain
    from fail2ban.server.ipdns import IPAddr

    lock = os.path.join(tempfile.mkdtemp(prefix="smban-bench-"), "xtables.lock")
    os.environ["XTABLES_LOCKFILE"] = lock
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    stock = _stock_action(True)       # starts on demand, at its first ban
    stock_nft = _stock_action(False)
    c = Chain("bench", PORTS, lockfile=lock)
    c.start()

    def stock_ban(ip):
        stock.ban({"ip": IPAddr(ip), "family": "inet4"})   # raises on failure

    def nft_ban(ip):
        stock_nft.ban({"ip": IPAddr(ip), "family": "inet4"})

    def ipt_ban(ip):
        subprocess.run(["iptables-legacy", "-w", "-I", "f2b-bench", "1", "-s", ip,
                        "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
                       check=True)

    def nft_rules():
        out = subprocess.run(["iptables-nft", "-w", "-S", "f2b-bench"], check=True,
                             capture_output=True, text=True).stdout
        return [l for l in out.splitlines() if " -s " in l]

    def nft_fill(ips):
        """The nft chain holding exactly ips (one iptables-nft-restore)."""
        subprocess.run(["iptables-nft", "-w", "-F", "f2b-bench"], check=True)
        text = "*filter\n" + "".join(
            "-A f2b-bench -s %s/32 -j REJECT --reject-with icmp-port-unreachable\n" % ip
            for ip in ips) + "-A f2b-bench -j RETURN\nCOMMIT\n"
        subprocess.run(["iptables-nft-restore", "-w", "--noflush"], input=text, text=True,
                       check=True)

    nft_ban("192.0.2.250")            # the stock action's actionstart (nft)
    rows = []
    for n in SIZES:
        c.flush()
        c.ban_many(_ips("10.1", n))
        nft_fill(_ips("10.1", n))
        k = 31
        row = {"what": "one more ban, %s present (median)" % format(n, ",")}
        probe = _ips("198.51", k)
        row["smban"] = _median_ms(c.ban, probe)
        c.unban_many(probe)
        probe = _ips("198.52", k)
        row["iptables"] = _median_ms(ipt_ban, probe)
        c.unban_many(probe)
        probe = _ips("198.53", k)
        row["fail2ban"] = _median_ms(stock_ban, probe)
        c.unban_many(probe)
        probe = _ips("198.54", k)
        row["fail2ban_nft"] = _median_ms(nft_ban, probe)
        assert len(c.banned()) == n
        assert len(nft_rules()) == n + k
        # the stock action adopted smban's layout (the same one): one jump
        assert c.check()["references"] == 1
        rows.append(row)

    # a restore small enough to measure for all: 1,000 bans into an empty
    # chain, one after the other for the per-process tools
    small = 1000
    row = {"what": "restore %s bans, all measured (smban: ban_many)" % format(small, ",")}
    for key, prefix, fn in (("iptables", "10.3", ipt_ban), ("fail2ban", "10.4", stock_ban)):
        c.flush()
        t = time.perf_counter()
        for ip in _ips(prefix, small):
            fn(ip)
        row[key] = (time.perf_counter() - t) * 1000
        assert len(c.banned()) == small
    nft_fill([])
    t = time.perf_counter()
    for ip in _ips("10.6", small):
        nft_ban(ip)
    row["fail2ban_nft"] = (time.perf_counter() - t) * 1000
    assert len(nft_rules()) == small
    c.flush()
    t = time.perf_counter()
    c.ban_many(_ips("10.5", small))
    row["smban"] = (time.perf_counter() - t) * 1000
    assert len(c.banned()) == small
    rows.append(row)

    # 20,000 bans restored after a restart
    c.flush()
    ips = _ips("10.2", RESTORE)
    t = time.perf_counter()
    c.ban_many(ips)
    batch_ms = (time.perf_counter() - t) * 1000
    assert len(c.banned()) == RESTORE
    c.flush()

    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "smban_iptables_action", os.path.join(ROOT, "actions", "smban-iptables.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Jail:
        name = "bench"
    act = mod.Action(Jail(), "smban-iptables", port=PORTS, lockfile=lock)
    act.start()
    t = time.perf_counter()
    for ip in ips:
        act.ban({"ip": IPAddr(ip), "family": "inet4", "restored": 1})
    act._wait_restored()
    action_ms = (time.perf_counter() - t) * 1000
    assert len(c.banned()) == RESTORE
    commits = act._chains[4].stats()["commits"]
    act.stop()

    # the per-process tools are not run at this size (minutes); their
    # per-ban cost at 10,000 bans is measured above
    rows.append({"what": "restore %s bans: smban ban_many (one commit)" % format(RESTORE, ","),
                 "smban": batch_ms})
    rows.append({"what": "restore %s bans: smban-iptables action, restored path (%d commits)"
                 % (format(RESTORE, ","), commits), "smban": action_ms})
    return rows


def _fmt(ms):
    if ms is None:
        return "not run"
    return "%.2f ms" % ms if ms < 10 else "%.0f ms" % ms if ms < 10000 else "%.0f s" % (ms / 1000)


def _ratio(x, y):
    if x is None:
        return "—"
    r = x / y
    return "%.1fx" % r if r < 10 else "%.0fx" % r


def table(rows):
    """The rows as a Markdown table, with ratios."""
    out = ["| operation | smban | `iptables-legacy -w` per ban | fail2ban iptables-multiport, "
           "legacy tables | fail2ban iptables-multiport, Debian's default (iptables-nft) "
           "| speed-up vs iptables-legacy / vs fail2ban legacy / vs fail2ban nft |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append("| %s | %s | %s | %s | %s | %s / %s / %s |" % (
            r["what"], _fmt(r["smban"]), _fmt(r.get("iptables")), _fmt(r.get("fail2ban")),
            _fmt(r.get("fail2ban_nft")), _ratio(r.get("iptables"), r["smban"]),
            _ratio(r.get("fail2ban"), r["smban"]), _ratio(r.get("fail2ban_nft"), r["smban"])))
    return "\n".join(out)


def main(argv=None):
    """Run the benchmark in a private namespace, print the table and return
    the rows (list of dicts; times in milliseconds)."""
    if os.geteuid() != 0:
        print("iptables benchmark skipped: needs root (network namespaces)")
        return []
    r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__), "--inner"],
                       capture_output=True, text=True,
                       env=dict(os.environ, SMBAN_BENCH_OUTER_NETNS=str(
                           os.stat("/proc/self/ns/net").st_ino)))
    if r.returncode:
        sys.stderr.write(r.stderr)
        raise RuntimeError("iptables benchmark failed")
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    print(table(rows))
    out = os.path.join(HERE, "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "iptables.md"), "w") as f:
        f.write(table(rows) + "\n")
    return rows


if __name__ == "__main__":
    if sys.argv[1:] == ["--inner"]:
        outer = os.environ.get("SMBAN_BENCH_OUTER_NETNS")
        if not outer or str(os.stat("/proc/self/ns/net").st_ino) == outer:
            sys.exit("refusing to run outside a private network namespace")
        print(json.dumps(_inner()))
    else:
        main()
