"""A session-table flood: millions of SMTP sessions, each with its own pid,
within one minute of log time, through one classifier.

    python3 bench/flood.py [--pids N] [--max-sessions M] [--json]

Three sessions of the story's MTA (a TLS handshake failure, later its "did
not issue" line) run through the flood:
  kept     logs a line every 1,000 flood lines, so it stays recently used;
  quiet    logs nothing during the flood, which holds fewer sessions than
           the table: nothing is evicted before its end;
  evicted  logs nothing during a flood larger than the table.
The report: lines per second, the table's count, evictions and expiries,
the peak RSS growth of the process during the flood against the table's
bound (max_sessions x (96 B entry + 8 B x 2 index slots, rounded up to a
power of two)), and what each story session's closing line became.
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import smban  # noqa: E402

REF_TIME = 1735646400.0           # 2024-12-31T12:00:00Z: RFC 3164 dates fall in 2024
TLS_FAIL = (b"Nov 17 00:33:%02d mx sm-mta[%d]: STARTTLS=server, error: accept failed=-1, "
            b"reason=no shared cipher, SSL_error=1, errno=0, retry=-1, "
            b"relay=esa12.hc6077-55.iphmx.com [139.138.46.199]\n")
DID_NOT_ISSUE = (b"Nov 17 00:33:%02d mx sm-mta[%d]: 4AH5XXPf%06d: esa12.hc6077-55.iphmx.com "
                 b"[139.138.46.199] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA\n")
FLOOD = (b"Nov 17 00:33:%02d mx sm-mta[%d]: STARTTLS=server, relay=[198.51.100.%d], "
         b"version=TLSv1.3, verify=NO, cipher=TLS_AES_256_GCM_SHA384, bits=256/256\n")
KEPT, QUIET, EVICTED = 1, 2, 3
FIRST_PID = 100000


def peak_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def table_bound(max_sessions):
    cap = 16
    while cap < 2 * max_sessions:
        cap *= 2
    return max_sessions * 96 + cap * 8


def flood(pids, max_sessions, chunk=10000):
    c = smban.Classifier(max_sessions=max_sessions, ref_time=REF_TIME)
    # QUIET closes once the table is full but before anything is evicted
    quiet_end = max(0, min(pids, max_sessions - 3))
    results = {}

    def sec(i):
        return 1 + i * 57 // max(pids, 1)

    def closing(pid, second):
        ev = c.classify(DID_NOT_ISSUE % (second, pid, pid))
        return {"name": ev.name, "kind": ev.kind, "failures": ev.failures}

    def run(lo, hi):
        n = 0
        for start in range(lo, hi, chunk):
            parts = []
            for i in range(start, min(start + chunk, hi)):
                if i % 1000 == 0:
                    parts.append(TLS_FAIL % (sec(i), KEPT))
                parts.append(FLOOD % (sec(i), FIRST_PID + i, 1 + i % 254))
            n += c.classify_buffer(b"".join(parts))["lines"]
        return n

    for pid in (KEPT, QUIET, EVICTED):
        c.classify(TLS_FAIL % (0, pid))
    base = peak_rss_kib()
    t0 = time.perf_counter()
    lines = run(0, quiet_end)
    results["quiet"] = closing(QUIET, sec(quiet_end))
    lines += run(quiet_end, pids)
    elapsed = time.perf_counter() - t0
    grown = max(0, peak_rss_kib() - base) * 1024
    results["kept"] = closing(KEPT, 59)
    results["evicted"] = closing(EVICTED, 59)
    st = c.stats()
    return {
        "pids": pids, "lines": lines, "seconds": round(elapsed, 3),
        "lines_per_second": int(lines / elapsed) if elapsed else None,
        "max_sessions": max_sessions, "sessions": st["sessions"],
        "sessions_evicted": st["sessions_evicted"], "sessions_expired": st["sessions_expired"],
        "peak_rss_growth_bytes": grown, "table_bound_bytes": table_bound(max_sessions),
        "story": results,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pids", type=int, default=2000000)
    p.add_argument("--max-sessions", type=int, default=smban.DEFAULTS["max_sessions"])
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    r = flood(a.pids, a.max_sessions)
    if a.json:
        print(json.dumps(r, sort_keys=True))
        return
    mib = 1024 * 1024
    print("session flood: %(pids)d distinct pids in one minute of log, %(lines)d lines" % r)
    print("  %.2f s, %d lines/s" % (r["seconds"], r["lines_per_second"]))
    print("  table: %d of max %d sessions, %d evicted, %d expired"
          % (r["sessions"], r["max_sessions"], r["sessions_evicted"], r["sessions_expired"]))
    print("  peak RSS growth during the flood: %.1f MiB (table bound %.1f MiB)"
          % (r["peak_rss_growth_bytes"] / mib, r["table_bound_bytes"] / mib))
    for who in ("kept", "quiet", "evicted"):
        s = r["story"].get(who)
        if s:
            print("  story MTA, %-8s session: did not issue -> %s (%s, %d failures)"
                  % (who, s["name"], s["kind"], s["failures"]))


if __name__ == "__main__":
    main()
