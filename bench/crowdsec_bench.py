"""Bans shared through CrowdSec's Local API: smban-crowdsec's queue against
one cscli process per ban, and the propagation from one MX host to another.

    python3 bench/crowdsec_bench.py [--bans 10000]
        (root; prints the table, also written to bench/out/crowdsec.md)

- pushes: N bans queued with smban.crowdsec.Sharer (what the action's
  ban() does) until the LAPI holds every decision; the time fail2ban's
  ban thread spends per ban (queueing only); and, for comparison, 100
  decisions added with `cscli decisions add` (a process per ban, what a
  command action calling cscli would do), its per-ban cost;
- propagation: make cluster's network (lab/cluster.py) with 20 password
  guessers at once on mx1: the seconds from mx1 refusing a guesser to mx2
  refusing it (smban-crowdsec's push, then CrowdSec's bouncer on mx2 asking
  the LAPI every second), p50 and p95.

Everything runs in private network namespaces with a LAPI of its own
(lab/crowdsec.py); the machine's crowdsec and firewall are not touched.
"""
import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def pushes(n):
    from lab import crowdsec, netns
    from smban.crowdsec import Credentials, Lapi, Sharer
    d = tempfile.mkdtemp(prefix="smban-bench-cs-")
    ns = netns.Netns("csb")
    try:
        with ns.entered():
            netns.link_up_lo()
            lapi = crowdsec.LapiServer(os.path.join(d, "lapi"), "127.0.0.1:8080")
            lapi.setup()
            lapi.start()
            try:
                creds = Credentials.read(lapi.credentials(os.path.join(d, "mx1.yaml"), "mx1"))
                api = Lapi(creds, timeout=30)
                s = Sharer(api, os.path.join(d, "queue"), logging.getLogger("bench"))
                s.start()
                ips = ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(n)]
                t0 = time.perf_counter()
                for ip in ips:
                    s.ban(ip, 3600, "smban/auth-failure", "auth-failure x3")
                queued = time.perf_counter() - t0
                assert s.wait_idle(600), "the LAPI did not take every decision"
                total = time.perf_counter() - t0
                s.stop()
                held = len(lapi.decisions())
                assert held == n, held
                requests = api.requests
                t1 = time.perf_counter()
                k = 100
                for i in range(k):
                    lapi.add_decision("11.0.%d.%d" % (i >> 8, i & 255), duration="1h")
                cscli = (time.perf_counter() - t1) / k
            finally:
                lapi.stop()
    finally:
        ns.close()
        subprocess.run(["rm", "-rf", d])
    return {"n": n, "total": total, "queued_us": queued / n * 1e6, "requests": requests,
            "cscli_ms": cscli * 1000}


def propagation():
    from lab import cluster
    why = cluster.why_unavailable()
    if why:
        return None, why
    with cluster.Cluster(out=lambda s: None) as cl:
        lat = cl.propagation()
    return lat, None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bans", type=int, default=10000)
    args = ap.parse_args(argv)
    from lab import crowdsec
    why = crowdsec.why_unavailable()
    if why:
        print("crowdsec benchmark skipped: %s" % why)
        return None
    p = pushes(args.bans)
    lat, why = propagation()
    N = format(p["n"], ",")
    out = ["| sharing bans through CrowdSec's LAPI | smban-crowdsec | cscli decisions add "
           "(a process per ban) |", "|---|---:|---:|",
           "| %s bans pushed until the LAPI holds them all | %.1f s (%.0f bans/s, %d HTTP "
           "requests) | %.0f s at its per-ban cost |" % (
               N, p["total"], p["n"] / p["total"], p["requests"],
               p["cscli_ms"] * p["n"] / 1000),
           "| fail2ban's ban thread, per ban | %.0f µs (queued and written to the queue file) "
           "| %.0f ms (100 bans timed) |" % (p["queued_us"], p["cscli_ms"])]
    if lat is None:
        out.append("")
        out.append("propagation: not measured (%s)" % why)
    else:
        got = sorted(x for x in lat if x is not None)
        from lab.cluster import BOUNCER_EVERY, percentile
        out += ["", "| propagation mx1 -> mx2 (20 guessers at once) | p50 | p95 | max | "
                    "reached mx2 |", "|---|---:|---:|---:|---:|",
                "| mx1 refuses a guesser -> mx2 refuses it (bouncer polling every %s) | "
                "%.2f s | %.2f s | %.2f s | %d of %d |" % (
                    BOUNCER_EVERY, percentile(got, 50), percentile(got, 95), max(got),
                    len(got), len(lat))]
    text = "\n".join(out)
    print(text)
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "crowdsec.md"), "w") as f:
        f.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
