"""The audit command's benchmark: python3 -m smban audit on the benchmark log.

    python3 bench/audit_bench.py LOG [--repeat N] [--no-compare]

Times the whole command (process start to exit, one core) in both modes,
best of N, and once with --compare sendmail-reject[mode=extra], whose
filter time the audit reports on its own.  Prints a table and writes it to
bench/out/audit.md.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
PY = sys.executable


def audit(log, *args):
    """(wall seconds of the whole process, the --json report)."""
    cmd = [PY, "-m", "smban", "audit", "--json", *args, log]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0"] + cmd
    env = dict(os.environ, PYTHONPATH=ROOT)
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                       cwd=ROOT)
    elapsed = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit("audit_bench: %s failed (%d)" % (" ".join(cmd), p.returncode))
    return elapsed, json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-compare", action="store_true")
    args = ap.parse_args()

    rows = []
    for mode in ("normal", "aggressive"):
        print("audit_bench: --mode %s ..." % mode, file=sys.stderr)
        runs = [audit(args.log, "--mode", mode) for _ in range(args.repeat)]
        t, r = min(runs, key=lambda x: x[0])
        rows.append(("`audit --mode %s`" % mode, r["lines"], t, r["seconds"],
                     len(r["banned"]), len(r["spared"]), len(r["tls"])))
    if not args.no_compare:
        spec = "sendmail-reject[mode=extra]"
        print("audit_bench: --compare %s ..." % spec, file=sys.stderr)
        t, r = audit(args.log, "--compare", spec)
        c = r["compare"][spec]
        rows.append(("`audit --compare %s`: smban's part" % spec, r["lines"], t,
                      r["seconds"], len(r["banned"]), len(r["spared"]), len(r["tls"])))
        rows.append(("`audit --compare %s`: fail2ban's filter" % spec, r["lines"],
                     None, r["compare_seconds"][spec], len(c["banned"]), None, None))

    lines = ["| audit (one core) | lines | whole command s | audit's own s | lines/s "
             "| banned | spared | TLS peers |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, n, wall, own, b, s, tls in rows:
        lines.append("| %s | %s | %s | %.2f | %s | %d | %s | %s |" % (
            name, format(n, ","), "%.2f" % wall if wall is not None else "",
            own, format(int(n / own), ",") if own else "-", b,
            "" if s is None else s, "" if tls is None else tls))
    table = "\n".join(lines)
    print(table)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "audit.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
