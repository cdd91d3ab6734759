"""smban-engine inside a real fail2ban-server: draining a log backlog.

    python3 bench/engine_bench.py [--lines N] [--repeat R]

A fail2ban-server (private configuration directory, socket, pid file and
database; no firewall is touched: the jail's only ban action is a no-op)
reads a pre-written backlog of N sendmail lines (bench/genlog.py, default
500,000) in one jail with filter = smban, once with the regex twin alone and
once with the smban-engine action attached, in the same run.  The log ends
with maxretry AUTH failures of a sentinel address stamped now; the time is
from `fail2ban-client start` to fail2ban's "Ban <sentinel>" in its log,
i.e. start-up plus draining the backlog; start-up alone is measured on a
log of only the sentinel's lines and subtracted in the "draining alone"
columns.  findtime is long enough for every
backlog line to be examined (fail2ban skips lines older than findtime while
catching up).  Prints a Markdown table, also written to bench/out/engine.md.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
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


def sentinel_lines():
    now = time.strftime("%b %d %H:%M:%S")
    return "".join(
        "%s mx sm-mta[%d]: 4ASB%08d: AUTH failure (LOGIN): authentication failure (-13) "
        "SASL(-13): authentication failure: checkpass failed, user=bench, relay=[%s]\n"
        % (now, 990000 + i, 990000 + i, SENTINEL) for i in range(MAXRETRY))


def configure(d, log, engine):
    for sub in ("action.d", "filter.d"):
        os.makedirs(os.path.join(d, sub))
    shutil.copy("/etc/fail2ban/filter.d/common.conf", os.path.join(d, "filter.d"))
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


def client(d, env, *args, check=True):
    r = subprocess.run(["fail2ban-client", "-c", d, *args], env=env, capture_output=True,
                       text=True, timeout=60)
    if check and r.returncode:
        raise SystemExit("bench: fail2ban-client %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r


def drain(log, engine, env, timeout=900):
    """(seconds to the sentinel's ban, total failed, total banned, log text)."""
    d = tempfile.mkdtemp(prefix="smban-eb-")
    try:
        configure(d, log, engine)
        flog = os.path.join(d, "f2b.log")
        t0 = time.perf_counter()
        client(d, env, "start")
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
        out = client(d, env, "status", "smban").stdout
        failed = int(re.search(r"Total failed:\s+(\d+)", out).group(1))
        banned = int(re.search(r"Total banned:\s+(\d+)", out).group(1))
        return seconds, failed, banned, text
    finally:
        client(d, env, "stop", check=False)
        try:
            with open(os.path.join(d, "f2b.pid")) as f:
                os.kill(int(f.read().strip()), 9)
        except (OSError, ValueError):
            pass
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=500000)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is kept")
    args = ap.parse_args(argv)
    if not shutil.which("fail2ban-client"):
        raise SystemExit("bench: fail2ban is not installed (make deps installs it)")
    if args.lines < 1:
        raise SystemExit("bench: --lines must be positive")

    src = backlog(args.lines)
    with tempfile.TemporaryDirectory(prefix="smban-eb-log-") as tmp:
        log = os.path.join(tmp, "maillog")
        shutil.copyfile(src, log)
        with open(log, "a") as f:
            f.write(sentinel_lines())
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
        empty = os.path.join(tmp, "empty")
        with open(empty, "w") as f:
            f.write(sentinel_lines())
        rows = {}
        print("bench: fail2ban-server start-up alone (a log of the sentinel's lines) ...",
              file=sys.stderr)
        startup = min(drain(empty, False, env)[0] for _ in range(max(args.repeat, 2)))
        for engine in (False, True):
            name = "filter = smban, action = smban-engine.py (C classifier)" if engine \
                else "filter = smban (the regex twin alone)"
            print("bench: fail2ban-server draining %s lines, %s ..."
                  % (format(args.lines, ","), name), file=sys.stderr)
            best = None
            for _ in range(args.repeat):
                r = drain(log, engine, env)
                if engine and "smban-engine attached" not in r[3]:
                    raise SystemExit("bench: the engine did not attach:\n" + r[3][-2000:])
                if best is None or r[0] < best[0]:
                    best = r
            rows[engine] = (name,) + best[:3]

    base = rows[False][1]
    base_drain = max(base - startup, 1e-3)
    lines = ["| fail2ban-server draining %s sendmail lines, one jail | seconds (start to "
             "last ban) | × the twin | draining alone, s | lines/s | × the twin "
             "| failures counted |" % format(args.lines, ","),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for engine in (False, True):
        name, t, failed, banned = rows[engine]
        dt = max(t - startup, 1e-3)
        lines.append("| %s | %.2f | %.1f | %.2f | %s | %.1f | %s |" % (
            name, t, base / t, dt, format(int(args.lines / dt), ","), base_drain / dt,
            format(failed, ",")))
    lines.append("")
    lines.append("start-up alone (fail2ban-client start to the ban of a %d-line log): %.2f s"
                 % (MAXRETRY, startup))
    table = "\n".join(lines)
    print(table)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "engine.md"), "w") as f:
        f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
