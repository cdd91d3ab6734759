"""smban's benchmark: the classifier against fail2ban, measured in one run.

    make bench            (or: python3 bench/run.py [--lines N])

Generates a realistic log (bench/genlog.py; cached in bench/out/), then
times on one core (taskset) and prints one table:
  - the batch path: python3 -m smban classify --count FILE
  - Classifier.classify called per line from Python
  - fail2ban-regex with sendmail-auth, sendmail-reject and filters/smban.conf
with lines per second, peak memory, and the ratio to fail2ban-regex with
sendmail-reject.  The ban backend's benchmark (bench/iptables_bench.py)
follows when it is present and the user is root.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
PY = sys.executable


def pinned(cmd):
    """Run on one core when taskset is there."""
    return (["taskset", "-c", "0"] + cmd) if shutil.which("taskset") else cmd


def run(cmd, env=None):
    """(seconds, peak RSS in MiB, stdout) of one command."""
    t = time.perf_counter()
    p = subprocess.Popen(pinned(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env, cwd=ROOT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit("bench: %s failed (%d)" % (" ".join(cmd), p.returncode))
    return elapsed, ru.ru_maxrss / 1024.0, out


def best(cmd, repeat, env=None):
    results = [run(cmd, env) for _ in range(repeat)]
    return min(results, key=lambda r: r[0])


IN_PROCESS = r"""
import mmap, sys, time, smban
best = None
for _ in range(int(sys.argv[2])):
    with open(sys.argv[1], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        c = smban.Classifier()
        t = time.perf_counter()
        n = c.classify_buffer(m)["lines"]
        t = time.perf_counter() - t
        best = t if best is None else min(best, t)
print(n, best)
"""

PER_LINE = r"""
import sys, time, smban
c = smban.Classifier()
n = 0
t = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    for line in f:
        c.classify(line)
        n += 1
print(n, time.perf_counter() - t)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    log = os.path.join(OUT, "maillog-%d" % args.lines)
    if not os.path.exists(log):
        print("bench: generating %s ..." % log, file=sys.stderr)
        sys.path.insert(0, HERE)
        import genlog
        with open(log + ".tmp", "w") as f:
            genlog.generate(args.lines, f)
        os.replace(log + ".tmp", log)
    env = dict(os.environ, PYTHONPATH=ROOT)
    f2b_regex = shutil.which("fail2ban-regex")
    if not f2b_regex:
        raise SystemExit("bench: fail2ban-regex not found (make deps installs fail2ban)")
    rows = []

    print("bench: %d lines, %s" % (args.lines, os.path.basename(log)), file=sys.stderr)
    t, rss, _ = best([PY, "-m", "smban", "classify", "--count", log], args.repeat, env)
    rows.append(("smban batch path, the command end to end (`classify --count`)", t, rss))

    t, rss, out = run([PY, "-c", IN_PROCESS, log, str(args.repeat)], env)
    rows.append(("smban batch path, in process (`classify_buffer` on the mapped file)",
                 float(out.split()[1]), rss))

    t, rss, out = run([PY, "-c", PER_LINE, log], env)
    n, inner = out.split()
    rows.append(("smban `Classifier.classify` per line, from Python", float(inner), rss))

    with tempfile.TemporaryDirectory() as conf:
        os.mkdir(os.path.join(conf, "filter.d"))
        shutil.copy("/etc/fail2ban/filter.d/common.conf", os.path.join(conf, "filter.d"))
        shutil.copy(os.path.join(ROOT, "filters", "smban.conf"), os.path.join(conf, "filter.d"))
        for name, path in (("sendmail-auth", "/etc/fail2ban/filter.d/sendmail-auth.conf"),
                           ("sendmail-reject", "/etc/fail2ban/filter.d/sendmail-reject.conf"),
                           ("smban.conf (the regex twin)",
                            os.path.join(conf, "filter.d", "smban.conf"))):
            print("bench: fail2ban-regex %s ..." % name, file=sys.stderr)
            t, rss, _ = run([f2b_regex, log, path])
            rows.append(("fail2ban-regex with %s" % name, t, rss))

    ref = [r for r in rows if "sendmail-reject" in r[0]][0][1]
    lines = ["| what (%s lines, one core) | seconds | lines/s | peak RSS MiB | × fail2ban-regex sendmail-reject |"
             % format(args.lines, ","),
             "|---|---:|---:|---:|---:|"]
    for name, t, rss in rows:
        lines.append("| %s | %.3f | %s | %.0f | %.1f |" % (
            name, t, format(int(args.lines / t), ","), rss, ref / t))
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(OUT, "classify.md"), "w") as f:
        f.write(table + "\n")

    ipt = os.path.join(HERE, "iptables_bench.py")
    if os.path.exists(ipt):
        if os.geteuid() != 0:
            print("\nbench: the ban backend benchmark needs root (skipped)")
        else:
            print()
            sys.stdout.flush()
            subprocess.run([PY, ipt], cwd=ROOT, env=env, check=True)

    aud = os.path.join(HERE, "audit_bench.py")
    if os.path.exists(aud):
        print()
        sys.stdout.flush()
        subprocess.run([PY, aud, log, "--repeat", str(args.repeat)], cwd=ROOT, env=env,
                       check=True)

    eng = os.path.join(HERE, "engine_bench.py")
    if os.path.exists(eng):
        print()
        sys.stdout.flush()
        subprocess.run([PY, eng], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
