"""make mutants: deliberate bugs the test suite must catch.

    PY tools/mutants.py [-j N] [--only NN] [--list] [-v]

Each mutants/NN-name.patch is one small bug (a unified diff against the
tree, applied with patch -p1), opened by two header lines:

    Breaks: what an operator would see go wrong
    Tests: pytest node ids or arguments (-k ...), after NAME=value words
           for the environment if need be; or "ctest" (the C unit tests)

The tracked files of the repository, as they are on disk (uncommitted edits
included), are copied once at the start; each mutant gets its own copy of
that, where its patch must apply exactly (patch -p1 --fuzz=0; one that does
not is a failure of the run, never a skip); what the mutant needs is built
(the extension with make build when it changes the C, or the C unit tests
for "ctest"); then its tests run from the copy (pytest -x), with the copy
first on PYTHONPATH (checked before the tests run).  Verdicts:

    CAUGHT    a test failed or hung (the first failing test is shown)
    SURVIVED  every test passed: the suite does not notice this bug
    ERROR     the patch did not apply, the build failed, or no test ran

Before any mutant, the unmutated tree runs the union of the selected tests
once and must pass: a mutant "caught" by a test that fails anyway proves
nothing.  The exit status is non-zero when the unmutated tree fails, or
when any mutant survived or errored.
"""
import argparse
import concurrent.futures
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import fail2ban_trees   # tools/, beside this file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTANTS = os.path.join(ROOT, "mutants")
NAME = re.compile(r"^(\d\d)-[a-z0-9][a-z0-9-]*\.patch$")
CTEST = "ctest"
ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")

#: Seconds one mutant's (or the unmutated tree's) tests may take: a hang
#: is a failure the suite noticed (CI would time out), reported as such.
TEST_TIMEOUT = 600
BUILD_TIMEOUT = 600

#: Files whose change needs the extension rebuilt.
C_SOURCES = ("ext/", "setup.py")


class Mutant:
    """One mutants/NN-name.patch: its header and the files it touches."""

    def __init__(self, path):
        self.path = path
        self.file = os.path.basename(path)
        self.num = self.file[:2]
        self.name = self.file[:-len(".patch")]
        self.breaks = self.tests = None
        self.files = []
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("--- "):
                break
            key, _, value = line.partition(":")
            if key in ("Breaks", "Tests") and value.strip():
                setattr(self, key.lower(), value.strip())
        for m in re.finditer(r"^\+\+\+ b/(\S+)", text, re.M):
            self.files.append(m.group(1))
        if not self.breaks or not self.tests:
            raise ValueError("%s: the header must hold a 'Breaks:' and a 'Tests:' line "
                             "before the diff" % self.file)
        if not self.files:
            raise ValueError("%s: no '+++ b/path' line: not a unified diff for patch -p1"
                             % self.file)

    @property
    def ctest(self):
        return self.tests == CTEST

    def pytest_args(self):
        """(environment, arguments) of the mutant's pytest run: leading
        NAME=value words set the environment (SMBAN_ADV_LINES=20000 ...)."""
        env, words = {}, shlex.split(self.tests)
        while words and ENV_WORD.match(words[0]):
            k, _, v = words.pop(0).partition("=")
            env[k] = v
        return env, words

    def needs_build(self):
        return any(f.startswith(C_SOURCES) for f in self.files)


class Result:
    def __init__(self, verdict, detail="", seconds=0.0, output=""):
        self.verdict, self.detail, self.seconds, self.output = verdict, detail, seconds, output


def load_mutants():
    if not os.path.isdir(MUTANTS):
        raise SystemExit("mutants: no %s directory" % MUTANTS)
    out = []
    for name in sorted(os.listdir(MUTANTS)):
        if name.endswith(".patch"):
            if not NAME.match(name):
                raise SystemExit("mutants: %s: name it NN-short-name.patch" % name)
            out.append(Mutant(os.path.join(MUTANTS, name)))
    nums = [m.num for m in out]
    dup = sorted({n for n in nums if nums.count(n) > 1})
    if dup:
        raise SystemExit("mutants: two patches numbered %s" % ", ".join(dup))
    return out


#: Process groups of the commands running now (ended on an interrupt).
_running = set()
_running_lock = threading.Lock()
_stopping = threading.Event()


def run(cmd, cwd, timeout, env=None):
    """(returncode or None on timeout, stdout+stderr).  The command runs in a
    session of its own, so a timeout ends it with everything it started."""
    with _running_lock:
        if _stopping.is_set():
            raise RuntimeError("interrupted")
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace",
                             start_new_session=True)
        _running.add(p.pid)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return None, out
    finally:
        with _running_lock:
            _running.discard(p.pid)


def end_running():
    """End the commands still running (and what they started); start no more."""
    with _running_lock:
        _stopping.set()
        pids = list(_running)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def snapshot(dest):
    """Copy the tracked files, as they are on disk, into dest."""
    r = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, check=True)
    for rel in r.stdout.decode().split("\0"):
        src = os.path.join(ROOT, rel)
        if not rel or not os.path.lexists(src):
            continue                # deleted in the working tree
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def environment(tree):
    """The tests' environment: the copy's smban first on PYTHONPATH, and the
    fail2ban source trees the repository's own tests find beside it (a copy
    has nothing beside it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([tree] + [p for p in
                                                  env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["SMBAN_FAIL2BAN_TREES"] = fail2ban_trees.trees_dir()
    return env


def make(tree, *targets):
    return run(["make", "-s", "--no-print-directory", "PY=" + sys.executable, *targets],
               tree, BUILD_TIMEOUT)


def imports_from(tree, env):
    """None when the copy's smban (and its extension) is what Python imports
    there, else why not."""
    code = ("import smban, smban._core; "
            "print(smban.__file__); print(smban._core.__file__)")
    rc, out = run([sys.executable, "-c", code], tree, 120, env)
    if rc != 0:
        return "smban does not import from the copy: " + tail(out)
    for path in out.split():
        if not os.path.realpath(path).startswith(os.path.realpath(tree) + os.sep):
            return "smban imports from %s, not from the copy %s" % (path, tree)
    return None


def tail(out, n=15):
    return "\n".join(out.rstrip().splitlines()[-n:])


def first_failure(out):
    """The first failing test of a pytest or test_core output."""
    for line in out.splitlines():
        m = re.match(r"^(?:FAILED|ERROR) (\S+)", line)
        if m:
            return m.group(1)
    for line in out.splitlines():
        m = re.match(r"^(\S+:\d+): CHECK\((.*)\) failed$", line)
        if m:
            check = m.group(2)
            return "%s CHECK(%s)" % (m.group(1), check if len(check) < 50 else check[:47] + "...")
    m = re.search(r"^(\S+): killed by signal (\d+)$", out, re.M)
    return "%s crashed (signal %s)" % m.groups() if m else ""


def run_pytest(tree, args, extra_env=None):
    """Run the tests of args in tree: (returncode or None, output)."""
    env = environment(tree)
    env.update(extra_env or {})
    why = imports_from(tree, env)
    if why:
        return "precheck", why
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args]
    return run(cmd, tree, TEST_TIMEOUT, env)


def judge_pytest(rc, out):
    """The verdict of a pytest run on a mutant."""
    if rc == "precheck":
        return Result("ERROR", out)
    if rc is None:
        return Result("CAUGHT", "timeout after %d s" % TEST_TIMEOUT, output=out)
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|error|errors)", out))
    if rc == 0:
        if not counts.get("passed"):
            return Result("ERROR", "no test ran (all skipped?)", output=out)
        return Result("SURVIVED", "%d passed" % counts["passed"], output=out)
    if rc in (1, 2) and (first_failure(out) or rc == 2):
        return Result("CAUGHT", first_failure(out) or "collection failed", output=out)
    return Result("ERROR", "pytest exit status %s" % rc, output=out)


def try_mutant(m, pristine, workdir):
    """Copy the pristine tree, apply m, build, run its tests."""
    t0 = time.monotonic()
    tree = tempfile.mkdtemp(prefix="%s-" % m.num, dir=workdir)
    try:
        shutil.copytree(pristine, tree, symlinks=True, dirs_exist_ok=True)
        for dry in (True, False):
            cmd = ["patch", "-p1", "--batch", "--forward", "--fuzz=0", "--no-backup-if-mismatch",
                   "-i", m.path] + (["--dry-run"] if dry else [])
            rc, out = run(cmd, tree, 60)
            if rc != 0:
                return Result("ERROR", "the patch does not apply to the current tree "
                              "(patch -p1 --fuzz=0): make it again from the current files",
                              time.monotonic() - t0, out)
        if m.ctest:
            rc, out = ctest(tree)
            if rc == "build":
                return Result("ERROR", "the C unit tests do not build", time.monotonic() - t0, out)
            if rc == 0:
                res = Result("SURVIVED", tail(out, 1), output=out)
            elif rc is None:
                res = Result("CAUGHT", "timeout after %d s" % TEST_TIMEOUT, output=out)
            else:
                res = Result("CAUGHT", first_failure(out) or "exit status %s" % rc, output=out)
        else:
            if m.needs_build():
                rc, out = make(tree, "build")
                if rc != 0:
                    return Result("ERROR", "make build fails", time.monotonic() - t0, out)
            env, args = m.pytest_args()
            res = judge_pytest(*run_pytest(tree, args, env))
        res.seconds = time.monotonic() - t0
        return res
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def ctest(tree):
    """Build and run the C unit tests (make ctest's programs) in tree:
    (returncode, None on a timeout or "build" when they do not build, output)."""
    rc, out = make(tree, "build/test_core", "build/test_iptc")
    if rc != 0:
        return "build", out
    out = ""
    for prog in ("build/test_core", "build/test_iptc"):
        rc, o = run([prog], tree, TEST_TIMEOUT, dict(os.environ, TZ="UTC"))
        out += o
        if rc is not None and rc < 0:
            out += "\n%s: killed by signal %d\n" % (prog, -rc)
        if rc != 0:
            break
    return rc, out


def selections(mutants):
    """The pytest runs that cover every mutant's tests: per environment, the
    node ids of all its mutants in one run, and each selection that holds
    options (-k ...) in a run of its own (such options cannot be joined)."""
    plain, other = {}, []
    for m in mutants:
        if m.ctest:
            continue
        env, a = m.pytest_args()
        if any(x.startswith("-") for x in a):
            if (env, a) not in other:
                other.append((env, a))
        else:
            ids = plain.setdefault(tuple(sorted(env.items())), [])
            ids += [x for x in a if x not in ids]
    return [(dict(k), ids) for k, ids in plain.items()] + other


def baseline(mutants, pristine, workdir):
    """The unmutated tree with the union of the mutants' tests: (ok, what ran
    or why it failed)."""
    tree = tempfile.mkdtemp(prefix="unmutated-", dir=workdir)
    done = []
    try:
        shutil.copytree(pristine, tree, symlinks=True, dirs_exist_ok=True)
        if any(m.ctest for m in mutants):
            rc, out = ctest(tree)
            if rc != 0:
                return False, "the C unit tests %s on the unmutated tree:\n%s" % (
                    "do not build" if rc == "build" else "fail", tail(out))
            done.append("C unit tests pass")
        for env, args in selections(mutants):
            rc, out = run_pytest(tree, args, env)
            if rc == "precheck":
                return False, out
            if rc != 0:
                return False, ("the unmutated tree fails its selected tests (%s):\n%s"
                               % ("timeout" if rc is None else "exit status %s" % rc,
                                  tail(out, 30)))
            done.append(tail(out, 1).strip("= "))
        return True, "; ".join(done)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def interrupted(signum, frame):
    """SIGTERM (a CI timeout) ends the run as Ctrl-C does: the commands
    running are ended and the temporary trees removed."""
    raise KeyboardInterrupt


def table(rows):
    """rows: (mutant, verdict, caught by, breaks)."""
    head = ("mutant", "verdict", "caught by", "breaks")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(3)]
    lines = ["  ".join(h.ljust(w[i]) if i < 3 else h for i, h in enumerate(head))]
    lines.append("  ".join("-" * w[i] if i < 3 else "-" * 6 for i in range(4)))
    for r in rows:
        lines.append("  ".join(c.ljust(w[i]) if i < 3 else c for i, c in enumerate(r)))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-j", type=int, default=1, metavar="N",
                    help="mutants run in parallel (default 1)")
    ap.add_argument("--only", action="append", metavar="NN",
                    help="run only mutant NN (a number or a name; may be repeated)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their tests")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print the output of every mutant that was not caught")
    args = ap.parse_args(argv)
    if args.j < 1:
        ap.error("-j must be at least 1")
    try:
        mutants = load_mutants()
    except ValueError as e:
        raise SystemExit("mutants: %s" % e)
    if args.only:
        want = set(args.only)
        mutants = [m for m in mutants if m.num in want or m.name in want]
        missing = want - {m.num for m in mutants} - {m.name for m in mutants}
        if missing:
            raise SystemExit("mutants: no mutant %s" % ", ".join(sorted(missing)))
    if args.list:
        for m in mutants:
            print("%s\n    breaks: %s\n    tests:  %s" % (m.name, m.breaks, m.tests))
        return 0
    if not mutants:
        raise SystemExit("mutants: none in %s" % MUTANTS)

    signal.signal(signal.SIGTERM, interrupted)
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="smban-mutants-")
    try:
        pristine = os.path.join(workdir, "pristine")
        os.mkdir(pristine)
        snapshot(pristine)
        if any(not m.ctest for m in mutants):
            rc, out = make(pristine, "build")
            if rc != 0:
                print("mutants: the unmutated tree does not build:\n" + tail(out), file=sys.stderr)
                return 1
        print("mutants: %d mutant(s), the unmutated tree first" % len(mutants), flush=True)
        ok, why = baseline(mutants, pristine, workdir)
        if not ok:
            print("mutants: FAILED: " + why, file=sys.stderr)
            return 1
        print("mutants: unmutated tree passes (%s, %.0f s)" % (why, time.monotonic() - t0),
              flush=True)

        results = {}
        with concurrent.futures.ThreadPoolExecutor(args.j) as ex:
            futs = {ex.submit(try_mutant, m, pristine, workdir): m for m in mutants}
            try:
                for fut in concurrent.futures.as_completed(futs):
                    m = futs[fut]
                    try:
                        res = fut.result()
                    except Exception as e:      # a bug of this runner: said, not hidden
                        res = Result("ERROR", "%s: %s" % (type(e).__name__, e))
                    results[m.num] = res
                    print("  %-44s %-8s %5.0f s  %s" % (m.name, res.verdict, res.seconds,
                                                         res.detail), flush=True)
                    if res.verdict == "ERROR" or (args.verbose and res.verdict != "CAUGHT"):
                        print("\n".join("      | " + l
                                        for l in tail(res.output, 25).splitlines()), flush=True)
            except KeyboardInterrupt:
                end_running()           # before the pool waits for its threads
                ex.shutdown(wait=False, cancel_futures=True)
                raise
    except KeyboardInterrupt:
        end_running()
        print("mutants: interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = []
    for m in mutants:
        r = results[m.num]
        rows.append((m.name, r.verdict, r.detail if r.verdict != "SURVIVED" else "-", m.breaks))
    print()
    print(table(rows))
    bad = [m.name for m in mutants if results[m.num].verdict != "CAUGHT"]
    caught = len(mutants) - len(bad)
    print("\n%d of %d caught in %.0f s (-j %d)" % (caught, len(mutants), time.monotonic() - t0,
                                                  args.j))
    for verdict in ("SURVIVED", "ERROR"):
        names = [m.name for m in mutants if results[m.num].verdict == verdict]
        if names:
            print("%s: %s" % (verdict, ", ".join(names)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
