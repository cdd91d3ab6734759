"""smban's benchmark: the classifier against fail2ban, measured in one run.

    make bench            (or: python3 bench/run.py [--lines N] [--attack-lines N] [--repeat R])

Generates two logs (bench/genlog.py; cached in bench/out/): a mail server's
ordinary day ("mail", --lines, default 1,000,000) and a server under attack
("attack", --attack-lines, default 300,000: nine lines in ten an
attacker's, three syslog framings).  On each, times every command R times
(default 5, in rounds: each command once a round) on one core (taskset),
and prints a table per workload (--classify-only: these tables alone):
  - the batch path: python3 -m smban classify --count FILE
  - fail2ban-regex with sendmail-auth, sendmail-reject and filters/smban.conf
  - for reference, in process: classify_file reading the file (the
    command's batch path), classify_buffer on the mapped file, and
    Classifier.classify called per line from Python
with the median and the range (min-max) of the runs, lines per second,
peak memory, and the ratio to fail2ban-regex with sendmail-reject: command
against command, median against median.  The ban backends', the sharing
through CrowdSec's, the audit's and the engine's benchmarks follow.
"""
import argparse
import os
import shutil
import statistics
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


IN_PROCESS = r"""
import mmap, sys, time, smban
times = []
for _ in range(int(sys.argv[2])):
    with open(sys.argv[1], "rb", buffering=0) as f:
        c = smban.Classifier()
        if sys.argv[3] == "file":
            t = time.perf_counter()
            n = c.classify_file(f)["lines"]
        else:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                t = time.perf_counter()
                n = c.classify_buffer(m)["lines"]
        times.append(time.perf_counter() - t)
print(n, *times)
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


def logfile(profile, lines):
    """bench/out/maillog-N (mail) or attacklog-N, generated once."""
    os.makedirs(OUT, exist_ok=True)
    log = os.path.join(OUT, "%s-%d" % ("maillog" if profile == "mail" else "attacklog", lines))
    if not os.path.exists(log):
        print("bench: generating %s ..." % log, file=sys.stderr)
        sys.path.insert(0, HERE)
        import genlog
        with open(log + ".tmp", "w") as f:
            genlog.generate(lines, f, profile=profile)
        os.replace(log + ".tmp", log)
    return log


def spread(times):
    return "%.3f (%.3f–%.3f)" % (statistics.median(times), min(times), max(times))


def classify_table(profile, nlines, repeat, env, conf, f2b_regex):
    """The table of one workload (Markdown lines)."""
    log = logfile(profile, nlines)
    rows = []           # (what, [seconds], rss, command?)
    print("bench: %s workload, %d lines, %d runs each" % (profile, nlines, repeat),
          file=sys.stderr)
    # as a user runs it: from the source tree, nothing added to the environment,
    # the package's byte code compiled as an installed smban has it (Debian's
    # py3compile at install; fail2ban-regex runs on its package's byte code):
    # with PYTHONDONTWRITEBYTECODE set, Python would compile it on every run
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "smban")], check=True)
    commands = [("smban `classify --count`, the command end to end",
                 [PY, "-m", "smban", "classify", "--count", log])]
    for name, path in (("sendmail-auth", "/etc/fail2ban/filter.d/sendmail-auth.conf"),
                       ("sendmail-reject", "/etc/fail2ban/filter.d/sendmail-reject.conf"),
                       ("smban.conf (the regex twin)",
                        os.path.join(conf, "filter.d", "smban.conf"))):
        commands.append(("`fail2ban-regex` with %s, the command end to end" % name,
                         [f2b_regex, log, path]))
    # in rounds, each command once a round: a machine that slows down for a
    # while (a busy neighbour on a shared host) slows every command alike,
    # not only the ones that happened to run then
    measured = [([], [0.0]) for _ in commands]
    for r in range(repeat):
        print("bench: round %d of %d ..." % (r + 1, repeat), file=sys.stderr)
        for (times, rss), (_, cmd) in zip(measured, commands):
            t, m, _ = run(cmd)
            times.append(t)
            rss[0] = max(rss[0], m)
    for (name, _), (times, rss) in zip(commands, measured):
        rows.append((name, times, rss[0]))
    _, rss, out = run([PY, "-c", IN_PROCESS, log, str(repeat), "file"], env)
    rows.append(("in process: `classify_file` reading the file",
                 [float(x) for x in out.split()[1:]], rss))
    _, rss, out = run([PY, "-c", IN_PROCESS, log, str(repeat), "mapped"], env)
    rows.append(("in process: `classify_buffer` on the mapped file",
                 [float(x) for x in out.split()[1:]], rss))
    _, rss, out = run([PY, "-c", PER_LINE, log], env)
    rows.append(("in process: `Classifier.classify` per line, from Python",
                 [float(out.split()[1])], rss))

    ref = statistics.median([r for r in rows if "sendmail-reject" in r[0]][0][1])
    lines = ["| %s workload, %s lines, one core | runs | seconds: median (min–max) | "
             "lines/s | peak RSS MiB | × fail2ban-regex sendmail-reject |"
             % (profile, format(nlines, ",")),
             "|---|---:|---:|---:|---:|---:|"]
    for name, times, rss in rows:
        med = statistics.median(times)
        lines.append("| %s | %d | %s | %s | %.0f | %.1f |" % (
            name, len(times), spread(times), format(int(nlines / med), ","), rss, ref / med))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--attack-lines", type=int, default=300000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--classify-only", action="store_true",
                    help="only the classifier's tables (not the ban backends, audit, engine)")
    args = ap.parse_args()
    if min(args.lines, args.attack_lines, args.repeat) < 1:
        raise SystemExit("bench: --lines, --attack-lines and --repeat must be positive")

    env = dict(os.environ, PYTHONPATH=ROOT)
    f2b_regex = shutil.which("fail2ban-regex")
    if not f2b_regex:
        raise SystemExit("bench: fail2ban-regex not found (make deps installs fail2ban)")
    out = []
    with tempfile.TemporaryDirectory() as conf:
        os.mkdir(os.path.join(conf, "filter.d"))
        shutil.copy("/etc/fail2ban/filter.d/common.conf", os.path.join(conf, "filter.d"))
        shutil.copy(os.path.join(ROOT, "filters", "smban.conf"), os.path.join(conf, "filter.d"))
        for profile, n in (("mail", args.lines), ("attack", args.attack_lines)):
            out += classify_table(profile, n, args.repeat, env, conf, f2b_regex) + [""]
    table = "\n".join(out)
    print(table)
    with open(os.path.join(OUT, "classify.md"), "w") as f:
        f.write(table)
    if args.classify_only:
        return
    log = logfile("mail", args.lines)

    ipt = os.path.join(HERE, "iptables_bench.py")
    if os.path.exists(ipt):
        if os.geteuid() != 0:
            print("\nbench: the ban backend benchmark needs root (skipped)")
        else:
            print()
            sys.stdout.flush()
            subprocess.run([PY, ipt], cwd=ROOT, env=env, check=True)
            sets = os.path.join(HERE, "sets_bench.py")
            print()
            sys.stdout.flush()
            subprocess.run([PY, sets], cwd=ROOT, env=env, check=True)
            cs = os.path.join(HERE, "crowdsec_bench.py")
            print()
            sys.stdout.flush()
            subprocess.run([PY, cs], cwd=ROOT, env=env, check=True)

    aud = os.path.join(HERE, "audit_bench.py")
    if os.path.exists(aud):
        print()
        sys.stdout.flush()
        subprocess.run([PY, aud, log, "--repeat", "3"], cwd=ROOT, env=env, check=True)

    eng = os.path.join(HERE, "engine_bench.py")
    if os.path.exists(eng):
        print()
        sys.stdout.flush()
        subprocess.run([PY, eng], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
