"""smban-engine inside a real fail2ban-server: draining a log backlog, on
every fail2ban smban supports.

    python3 bench/engine_bench.py [--lines N] [--repeat R]

A fail2ban-server (private configuration directory, socket, pid file and
database; no firewall is touched: the jail's only ban action is a no-op)
reads a pre-written backlog of N sendmail lines (bench/genlog.py, default
500,000) in one jail with filter = smban, once with the regex twin alone and
once with the smban-engine action attached, R times each (default 3,
alternating), on Debian's fail2ban 1.0.2 and on each upstream tree found
(tools/fail2ban_trees.py).  The log ends with maxretry AUTH failures of a
sentinel address stamped now; the time is from `fail2ban-client start` to
fail2ban's "Ban <sentinel>" in its log, i.e. start-up plus draining the
backlog.  Start-up alone is measured the same way on a log of only the
sentinel's lines (the median of R+2 runs) and subtracted in the "draining"
columns.  (The time between the bans of a sentinel before the backlog and
one after it is no measure: fail2ban 1.0.2's ban thread can wait until the
regex filter's thread has drained the whole backlog.)  findtime is long enough for
every backlog line to be examined (fail2ban skips lines older than findtime
while catching up).  Both jails must count the same failures, or the run
fails.  Prints a Markdown table (medians, with min-max over the runs), also
written to bench/out/engine.md.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import fail2ban_trees  # noqa: E402
OUT = os.path.join(HERE, "out")
PY = sys.executable
SENTINEL = "198.18.0.1"
MAXRETRY = 5

NOOP_ACTION = '''\
from fail2ban.server.actions import ActionBase


class Noop(ActionBase):
    """The benchmark's ban action: bans nothing."""
    def start(self): pass
    def stop(self): pass
    def ban(self, aInfo): return True
    def unban(self, aInfo): return True


Action = Noop
'''


def backlog(lines):
    """bench/out/maillog-N (generated once), N lines."""
    os.makedirs(OUT, exist_ok=True)
    log = os.path.join(OUT, "maillog-%d" % lines)
    if not os.path.exists(log):
        print("bench: generating %s ..." % log, file=sys.stderr)
        sys.path.insert(0, HERE)
        import genlog
        with open(log + ".tmp", "w") as f:
            genlog.generate(lines, f)
        os.replace(log + ".tmp", log)
    return log


def sentinel_lines(ip, pid):
    """maxretry AUTH failures of ip, stamped now."""
    now = time.strftime("%b %d %H:%M:%S")
    return "".join(
        "%s mx sm-mta[%d]: 4ASB%08d: AUTH failure (LOGIN): authentication failure (-13) "
        "SASL(-13): authentication failure: checkpass failed, user=bench, relay=[%s]\n"
        % (now, pid + i, pid + i, ip) for i in range(MAXRETRY))


def configure(d, log, engine, dist):
    for sub in ("action.d", "filter.d"):
        os.makedirs(os.path.join(d, sub))
    shutil.copy(os.path.join(dist.config, "filter.d", "common.conf"), os.path.join(d, "filter.d"))
    shutil.copy(os.path.join(ROOT, "filters", "smban.conf"), os.path.join(d, "filter.d"))
    shutil.copy(os.path.join(ROOT, "actions", "smban-engine.py"), os.path.join(d, "action.d"))
    with open(os.path.join(d, "action.d", "smban-noop.py"), "w") as f:
        f.write(NOOP_ACTION)
    with open(os.path.join(d, "fail2ban.conf"), "w") as f:
        f.write("[Definition]\nloglevel = NOTICE\nlogtarget = %(d)s/f2b.log\n"
                "socket = %(d)s/f2b.sock\npidfile = %(d)s/f2b.pid\n"
                "dbfile = %(d)s/f2b.sqlite3\ndbpurgeage = 1d\n" % {"d": d})
    actions = ('smban-engine.py[mode="%(known/mode)s"]\n         ' if engine else "") \
        + "smban-noop.py"
    with open(os.path.join(d, "jail.conf"), "w") as f:
        f.write("[smban]\nenabled = true\nfilter = smban\nbackend = polling\n"
                "logpath = %s\nmaxretry = %d\nfindtime = 400d\nbantime = 600\n"
                "usedns = no\naction = %s\n" % (log, MAXRETRY, actions))


def client(d, dist, env, *args, check=True):
    r = subprocess.run(dist.client + ["-c", d, *args], env=env, capture_output=True,
                       text=True, timeout=60)
    if check and r.returncode:
        raise SystemExit("bench: fail2ban-client %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r


def drain(log, engine, dist, env, timeout=900):
    """(seconds from start to the sentinel's ban, total failed, log text)."""
    d = tempfile.mkdtemp(prefix="smban-eb-")
    try:
        configure(d, log, engine, dist)
        flog = os.path.join(d, "f2b.log")
        t0 = time.perf_counter()
        client(d, dist, env, "start")
        needle = "Ban %s" % SENTINEL
        seconds = None
        while time.perf_counter() - t0 < timeout:
            try:
                with open(flog) as f:
                    if needle in f.read():
                        seconds = time.perf_counter() - t0
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        with open(flog) as f:
            text = f.read()
        if seconds is None:
            raise SystemExit("bench: no '%s' after %d s:\n%s" % (needle, timeout, text[-2000:]))
        out = client(d, dist, env, "status", "smban").stdout
        failed = int(re.search(r"Total failed:\s+(\d+)", out).group(1))
        return seconds, failed, text
    finally:
        client(d, dist, env, "stop", check=False)
        try:
            with open(os.path.join(d, "f2b.pid")) as f:
                os.kill(int(f.read().strip()), 9)
        except (OSError, ValueError):
            pass
        shutil.rmtree(d, ignore_errors=True)


def spread(values):
    return "%.2f (%.2f–%.2f)" % (statistics.median(values), min(values), max(values))


def bench_dist(dist, log, empty, args):
    """The two table rows of one fail2ban, and its start-up time."""
    env = dist.env(ROOT)
    print("bench: fail2ban %s: start-up alone ..." % dist.version, file=sys.stderr)
    startup = statistics.median(drain(empty, False, dist, env)[0]
                                for _ in range(args.repeat + 2))
    runs = {False: [], True: []}
    for _ in range(args.repeat):
        for engine in (False, True):
            print("bench: fail2ban %s draining %s lines, %s ..." % (
                dist.version, format(args.lines, ","),
                "with smban-engine" if engine else "the regex twin alone"), file=sys.stderr)
            t, failed, text = drain(log, engine, dist, env)
            if engine and "smban-engine attached" not in text:
                raise SystemExit("bench: the engine did not attach on fail2ban %s:\n%s"
                                 % (dist.version, text[-2000:]))
            if not engine and "smban-engine" in text:
                raise SystemExit("bench: the twin's run loaded the engine")
            runs[engine].append((t, max(t - startup, 1e-3), failed))
    counted = {r[2] for rs in runs.values() for r in rs}
    if len(counted) != 1:
        raise SystemExit("bench: fail2ban %s: the runs counted different failures: %s"
                         % (dist.version, runs))
    failed = counted.pop()
    base = statistics.median(r[1] for r in runs[False])
    rows = []
    for engine in (False, True):
        name = "smban-engine.py (C classifier)" if engine else "the regex twin alone"
        d = statistics.median(r[1] for r in runs[engine])
        rows.append("| %s | %s | %s | %s | %s | %.1f | %s |" % (
            dist.version, name, spread([r[0] for r in runs[engine]]),
            spread([r[1] for r in runs[engine]]), format(int(args.lines / d), ","),
            base / d, format(failed, ",")))
    return rows, startup


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=500000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (median, min-max)")
    args = ap.parse_args(argv)
    if args.lines < 1 or args.repeat < 1:
        raise SystemExit("bench: --lines and --repeat must be positive")
    dists = [d for d in fail2ban_trees.dists() if not d.missing]
    for d in fail2ban_trees.dists():
        if d.missing:
            print("bench: skipped: %s" % d.missing, file=sys.stderr)
    if not shutil.which("fail2ban-client"):
        raise SystemExit("bench: fail2ban is not installed (make deps installs it)")

    src = backlog(args.lines)
    lines = ["| fail2ban | jail: filter = smban, and | seconds, start to last ban | "
             "draining, s | lines/s | × the twin | failures counted |",
             "|---|---|---:|---:|---:|---:|---:|"]
    notes = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="smban-eb-log-") as tmp:
        log = os.path.join(tmp, "maillog")
        shutil.copyfile(src, log)
        with open(log, "a") as f:
            f.write(sentinel_lines(SENTINEL, 990000))
        empty = os.path.join(tmp, "empty")
        with open(empty, "w") as f:
            f.write(sentinel_lines(SENTINEL, 990000))
        for dist in dists:
            rows, startup = bench_dist(dist, log, empty, args)
            lines += rows
            notes.append("%s %.2f s" % (dist.version, startup))
    lines.append("")
    lines.append("%s backlog lines; median (min–max) of %d runs each; start-up subtracted "
                 "(median of %d runs): %s" % (format(args.lines, ","), args.repeat,
                                              args.repeat + 2, ", ".join(notes)))
    table = "\n".join(lines)
    print(table)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "engine.md"), "w") as f:
        f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
