"""Actions that fail safe (issue 11): smban not importable.

The next Python minor upgrade leaves an extension built for the previous
one unloadable (its file name carries the old ABI tag); a libpcre2 soname
change, a damaged or empty file do the same.  Then both actions must still
load, so that fail2ban starts the smban jail (on the regex twin, which
needs no C) and every jail defined after it:

- smban-engine logs one error saying why and does nothing else;
- smban-iptables and smban-nftables log an error at load and at start and
  refuse each ban with an exception naming the address and the reason
  (fail2ban logs it, the jail keeps running); unban, flush and stop never
  raise.

The broken install is a temporary copy of the smban package whose _core
extension is broken, first on the PYTHONPATH of the interpreter (a
subprocess loading the action files the way fail2ban does, or a real
fail2ban-server).  Whatever can reach iptables runs in a private network
namespace.
"""
import json
import os
import re
import shutil
import subprocess
import textwrap
import time

import pytest

from lab import netns
import smban
from conftest import f2b_dist_params
from test_fail2ban_e2e import Server, auth, did_not_issue, newpid, old_auth, stamp, \
    write_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTIONS = os.path.join(ROOT, "actions")
# where the smban under test lives (the source tree, or the sanitizer build)
PKG_PATH = os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__)))
F2B_CONFIG = "/etc/fail2ban"
PYTHON = "/usr/bin/python3"      # the interpreter Debian's fail2ban runs on

HAVE_F2B = shutil.which("fail2ban-client") is not None and \
    os.path.isfile(os.path.join(F2B_CONFIG, "filter.d", "common.conf"))
NETNS_WHY = netns.why_unavailable()
needs_f2b = pytest.mark.skipif(not HAVE_F2B, reason="fail2ban not installed")
needs_netns = pytest.mark.skipif(NETNS_WHY is not None, reason=str(NETNS_WHY))


# ---- broken installs ----

def _core_file():
    return os.path.basename(smban._core.__file__)


def _other_abi_name(name):
    """_core.cpython-311-....so -> _core.cpython-312-....so: what an
    interpreter one minor version up looks for, and does not find."""
    m = re.search(r"\.cpython-3(\d+)", name)
    assert m, name
    return name[:m.start(1)] + str(int(m.group(1)) + 1) + name[m.end(1):]


def _missing_soname(data):
    """The extension needing a libpcre2 that is not installed (the soname
    changed under it): one DT_NEEDED string altered, its length kept."""
    new, n = re.subn(rb"libpcre2-8(\.so\.\d+\0)", rb"libpcre2-X\1", data)
    assert n == 1, "libpcre2-8.so.N found %d times in the extension" % n
    return new


#: kind -> (what a broken _core is, the ImportError text fail2ban's log must show)
BREAKAGES = {
    "other-abi": ("built for another Python minor version", "No module named 'smban._core'"),
    "soname": ("needs a libpcre2 soname that is not installed",
               "libpcre2-X.so"),
    "garbage": ("not an ELF file", "invalid ELF header"),
    "empty": ("an empty file", "file too short"),
}


def broken_install(dest, kind):
    """A copy of the smban package under dest/ whose _core is broken the
    KIND way; returns dest (to put first on a PYTHONPATH)."""
    src = os.path.dirname(os.path.abspath(smban.__file__))
    so = _core_file()
    shutil.copytree(src, os.path.join(dest, "smban"),
                    ignore=shutil.ignore_patterns("__pycache__", "_core.*"))
    with open(smban._core.__file__, "rb") as f:
        data = f.read()
    if kind == "other-abi":
        name = _other_abi_name(so)
    elif kind == "soname":
        name, data = so, _missing_soname(data)
    elif kind == "garbage":
        name, data = so, b"this is not a shared object\n" * 200
    elif kind == "empty":
        name, data = so, b""
    else:
        raise ValueError(kind)
    with open(os.path.join(dest, "smban", name), "wb") as f:
        f.write(data)
    return str(dest)


def broken_env(tmp_path, kind):
    """The environment of a process that finds the broken copy first and the
    working package after it (which must not be reached)."""
    path = broken_install(tmp_path / ("broken-" + kind), kind)
    return dict(os.environ, PYTHONPATH=path + os.pathsep + PKG_PATH,
                XTABLES_LOCKFILE=str(tmp_path / "xtables.lock"))


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_broken_install_really_is_broken(tmp_path, kind):
    env = broken_env(tmp_path, kind)
    r = subprocess.run([PYTHON, "-c", "import smban"], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "ImportError" in r.stderr or "ModuleNotFoundError" in r.stderr, r.stderr
    assert BREAKAGES[kind][1] in r.stderr, r.stderr


# ---- the action files loaded the way fail2ban loads them ----

# Runs in a fresh interpreter on the broken PYTHONPATH: loads an action file
# with fail2ban's own loader, drives it with a stand-in jail and prints what
# happened (fail2ban's log records, results, exceptions) as JSON.
DRIVER = textwrap.dedent(r'''
    import json, logging, sys
    from fail2ban.server.actions import Actions

    records = []
    class Keep(logging.Handler):
        def emit(self, r):
            records.append([r.levelname, r.getMessage()])
    root = logging.getLogger("fail2ban")
    root.addHandler(Keep())
    root.setLevel(logging.DEBUG)

    class Filter:
        pass

    class Jail:
        name = "smban"
        filter = Filter()

    path, actname, opts, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), \
        json.loads(sys.argv[4])
    out = {"calls": []}
    mod = Actions._load_python_module(path)
    jail = Jail()
    before = dict(vars(jail.filter))
    action = mod.Action(jail, actname, **opts)
    out["init"] = [list(r) for r in records]
    out["smban_imported"] = "smban" in sys.modules or "smban._core" in sys.modules
    for call in calls:
        name, args, kw = (call + [{}])[:3]
        n = len(records)
        try:
            res = getattr(action, name)(*args, **kw)
            out["calls"].append([name, "ok", repr(res), records[n:]])
        except Exception as e:
            out["calls"].append([name, "raised", "%s: %s" % (type(e).__name__, e),
                                 records[n:]])
    out["filter_touched"] = dict(vars(jail.filter)) != before
    print(json.dumps(out))
''')


def drive(env, cwd, action_file, actname, opts, calls):
    # cwd: not the source tree, whose smban `python -c` would find first
    r = subprocess.run([PYTHON, "-c", DRIVER, action_file, actname, json.dumps(opts),
                        json.dumps(calls)], env=env, cwd=str(cwd),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def errors(records):
    return [msg for level, msg in records if level == "ERROR"]


@needs_f2b
@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_engine_action_loads_and_does_nothing(tmp_path, kind):
    env = broken_env(tmp_path, kind)
    info = {"ip": "192.0.2.5", "restored": 0}
    out = drive(env, tmp_path, os.path.join(ACTIONS, "smban-engine.py"), "smban-engine",
                {"mode": "normal"},
                [["start", []], ["ban", [info]], ["unban", [info]], ["clearAllParams", []],
                 ["reload", [], {"mode": "aggressive"}], ["stop", []]])
    assert not out["smban_imported"]
    # one clear error line: the reason, and that the regex twin carries on
    assert len(out["init"]) == 1, out["init"]
    level, msg = out["init"][0]
    assert level == "ERROR"
    assert BREAKAGES[kind][1] in msg
    assert "cannot import smban" in msg and "regex twin" in msg, msg
    # and nothing else: every call a silent no-op, the filter left alone
    for name, how, res, recs in out["calls"]:
        assert how == "ok" and recs == [], (name, how, res, recs)
    assert not out["filter_touched"]


#: the ban actions and options of theirs
BAN_ACTIONS = {
    "smban-iptables": {"port": "25,465", "lockwait": "5"},
    "smban-nftables": {"port": "25,465", "table": "smban"},
}


@needs_f2b
@needs_netns
@pytest.mark.parametrize("action", sorted(BAN_ACTIONS))
@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_ban_action_loads_and_refuses_bans(tmp_path, kind, action):
    env = broken_env(tmp_path, kind)
    reason = BREAKAGES[kind][1]
    info = {"ip": "192.0.2.5", "restored": 0}
    restored = {"ip": "2001:db8::5", "restored": 1}
    calls = [["start", []], ["ban", [info]], ["ban", [restored]], ["reban", [info]],
             ["unban", [info]], ["flush", []], ["consistencyCheck", []],
             ["clearAllParams", []], ["reload", [], {"port": "25"}], ["stop", []]]
    n = netns.Netns("failsafe")
    try:
        with n.entered():
            out = drive(env, tmp_path, os.path.join(ACTIONS, action + ".py"),
                        action, BAN_ACTIONS[action], calls)
            assert not [l for l in netns.save(4) + netns.save(6) if "f2b-" in l]
            if shutil.which("nft"):
                r = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
                assert r.returncode == 0 and r.stdout.strip() == "", r.stdout
    finally:
        n.close()
    assert not out["smban_imported"]
    init = errors(out["init"])
    assert len(init) == 1 and reason in init[0] and "cannot import smban" in init[0], out
    res = {}
    for name, how, r, recs in out["calls"]:
        res.setdefault(name, []).append((how, r, recs))
    # start: the error again
    (how, r, recs), = res["start"]
    assert how == "ok" and len(errors(recs)) == 1 and reason in errors(recs)[0], res["start"]
    # each ban refused, naming the address and the reason
    for (how, r, recs), ip in zip(res["ban"] + res["reban"],
                                  ("192.0.2.5", "2001:db8::5", "192.0.2.5")):
        assert how == "raised", (how, r)
        assert "cannot ban %s" % ip in r and reason in r, r
    # unban, flush, stop (and the rest) do not raise
    for name in ("unban", "flush", "consistencyCheck", "clearAllParams", "reload", "stop"):
        (how, r, recs), = res[name]
        assert how == "ok", (name, r)


def without_backend(dest):
    """A copy of the smban package without smban._iptc (what setup.py builds
    where libiptc is missing); returns dest (for a PYTHONPATH)."""
    src = os.path.dirname(os.path.abspath(smban.__file__))
    shutil.copytree(src, os.path.join(dest, "smban"),
                    ignore=shutil.ignore_patterns("__pycache__", "_iptc.*"))
    return str(dest)


NO_BACKEND = "smban._iptc is not built"


@needs_f2b
def test_without_the_ban_backend_the_classifier_works_and_bans_are_refused(tmp_path):
    """Built without libiptc: smban imports and classifies, smban.iptables
    says what is missing, the bans command fails with that (exit 2) while
    the other commands and --help work, and smban-iptables loads and refuses
    each ban with the reason."""
    env = dict(os.environ, PYTHONPATH=without_backend(tmp_path / "nobackend"))
    code = ("import smban, smban._core\n"
            "assert smban._core.__file__.startswith(%r)\n"
            "try:\n    import smban.iptables\n"
            "except ModuleNotFoundError as e:\n    print(e)\n" % str(tmp_path))
    r = subprocess.run([PYTHON, "-c", code], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and NO_BACKEND in r.stdout and "libiptc" in r.stdout, \
        r.stdout + r.stderr
    for args, rc, where in ((["--help"], 0, "stdout"),
                            (["bans", "list", "--chain", "smban"], 2, "stderr")):
        r = subprocess.run([PYTHON, "-m", "smban", *args], env=env, cwd=str(tmp_path),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == rc, (args, r.stdout, r.stderr)
        assert ("bans" if rc == 0 else NO_BACKEND) in getattr(r, where), (args, r)
    out = drive(env, tmp_path, os.path.join(ACTIONS, "smban-iptables.py"), "smban-iptables",
                {"port": "25"}, [["ban", [{"ip": "192.0.2.5", "restored": 0}]], ["stop", []]])
    assert any(NO_BACKEND in m for m in errors(out["init"])), out["init"]
    (_, how, r, _), (_, stop_how, _, _) = out["calls"]
    assert how == "raised" and "cannot ban 192.0.2.5" in r and NO_BACKEND in r, r
    assert stop_how == "ok"


@needs_f2b
def test_working_install_loads_normally_in_the_driver(tmp_path):
    """The driver itself, on the working package: the action imports smban
    (so the tests above see the broken install, not a driver problem)."""
    env = dict(os.environ, PYTHONPATH=PKG_PATH)
    out = drive(env, tmp_path, os.path.join(ACTIONS, "smban-engine.py"), "smban-engine",
                {"mode": "normal"}, [["stop", []]])
    assert out["smban_imported"]
    assert not errors(out["init"])
    # the stand-in filter is no twin: the engine stands down with a warning
    assert any("stands down" in m for _, m in out["init"]), out["init"]


# ---- a real fail2ban-server: the smban jail first, then an ordinary one ----

SSHD_LOG = "auth.log"


def sshd_failure(ip, pid):
    return ("%s mx sshd[%d]: Failed password for root from %s port %d ssh2"
            % (stamp(), pid, ip, 40000 + pid % 20000))


def write_two_jails(d, config=F2B_CONFIG):
    """smban's jail (filter smban, both actions) as the e2e tests write it,
    then an sshd jail on a log of its own, defined after it."""
    write_config(d, config=config)
    shutil.copy(os.path.join(config, "filter.d", "sshd.conf"),
                os.path.join(d, "filter.d", "sshd.conf"))
    with open(os.path.join(d, "jail.conf"), "a") as f:
        f.write("\n[sshd]\nenabled = true\nfilter = sshd\nbackend = polling\n"
                "logpath = %s/%s\nmaxretry = 2\nfindtime = 600\nbantime = 600\n"
                "usedns = no\naction =\n" % (d, SSHD_LOG))
    open(os.path.join(d, SSHD_LOG), "w").close()
    with open(os.path.join(d, "jail.conf")) as f:
        text = f.read()
    assert text.index("[smban]") < text.index("[sshd]")


def jail_status(server, jail):
    out = server.client("status", jail).stdout
    return (int(re.search(r"Total failed:\s+(\d+)", out).group(1)),
            re.search(r"Banned IP list:\s*(.*)", out).group(1).split())


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


@needs_f2b
@needs_netns
@pytest.mark.skipif(not os.path.isfile(os.path.join(F2B_CONFIG, "filter.d", "sshd.conf")),
                    reason="fail2ban's filter.d/sshd.conf not installed")
@pytest.mark.parametrize("dist", f2b_dist_params())
@pytest.mark.parametrize("kind", ["other-abi", "garbage"])
def test_fail2ban_starts_every_jail_with_smban_broken(tmp_path, kind, dist):
    path = broken_install(tmp_path / ("broken-" + kind), kind)
    env = dist.env(path + os.pathsep + PKG_PATH,
                   XTABLES_LOCKFILE=str(tmp_path / "xtables.lock"))
    reason = BREAKAGES[kind][1]
    d = str(tmp_path / "f2b")
    write_two_jails(d, config=dist.config)
    server = Server(d, env, dist.client)
    n = netns.Netns("failsafe")
    try:
        with n.entered():
            try:
                _run_two_jails(server, d, reason)
            finally:
                server.client("stop", check=False)
                server.kill()
    finally:
        n.close()


def _run_two_jails(server, d, reason):
    server.start()
    # both jails run, the one after smban's included
    out = server.client("status").stdout
    assert re.search(r"Jail list:\s*smban, sshd\s*$", out, re.M), out
    assert wait_for(lambda: "Jail 'sshd' started" in server.log(), 10), server.log()[-3000:]
    log = server.log()
    assert "Jail 'smban' started" in log

    # the clear error lines: the engine's once, the iptables action's at
    # load and at start; the engine is not attached
    lines = log.splitlines()
    eng = [l for l in lines if " ERROR " in l and "smban-engine" in l]
    assert len(eng) == 1, eng
    assert reason in eng[0] and "regex twin" in eng[0], eng[0]
    ipt = [l for l in lines if " ERROR " in l and "smban-iptables" in l
           and "cannot import smban" in l]
    assert len(ipt) == 2 and all(reason in l for l in ipt), ipt
    assert "smban-engine attached" not in log and "stands down" not in log

    # the ordinary jail bans on its own lines
    with open(os.path.join(d, SSHD_LOG), "a") as f:
        for i in range(2):
            f.write(sshd_failure("203.0.113.7", 700 + i) + "\n")
    assert server.wait_log("[sshd] Ban 203.0.113.7", timeout=10), server.log()[-3000:]
    assert jail_status(server, "sshd") == (2, ["203.0.113.7"])

    # the smban jail finds failures through the twin: AUTH failures with
    # relay= (the twin's), not the old sendmail's (the engine's only)
    pid = newpid()
    server.write(old_auth(pid), old_auth(pid), did_not_issue("198.51.100.60", pid))
    server.write(auth("192.0.2.2"), auth("192.0.2.2"))
    assert server.wait_log("[smban] Found 192.0.2.2", timeout=10), server.log()[-3000:]
    assert wait_for(lambda: jail_status(server, "smban")[0] == 2, 10), \
        server.client("status", "smban").stdout
    assert "Found 198.51.100.60" not in server.log()

    # a ban: fail2ban logs the action's refusal, naming address and reason
    server.client("set", "smban", "banip", "192.0.2.9")
    assert server.wait_log("cannot ban 192.0.2.9", timeout=10), server.log()[-3000:]
    refusal = [l for l in server.log().splitlines() if "cannot ban 192.0.2.9" in l]
    assert len(refusal) == 1 and " ERROR " in refusal[0], refusal
    assert "Failed to execute ban jail 'smban' action 'smban-iptables'" in refusal[0]
    assert reason in refusal[0], refusal[0]
    # maxretry reached on the twin's failures: refused the same way
    server.write(auth("192.0.2.2"))
    assert server.wait_log("cannot ban 192.0.2.2", timeout=10), server.log()[-3000:]
    # nothing reached the namespace's firewall
    assert not [l for l in netns.save(4) + netns.save(6) if "f2b-" in l]

    # the jail keeps running after the refusals, and so does the other one
    server.write(auth("192.0.2.3"))
    assert server.wait_log("[smban] Found 192.0.2.3", timeout=10), server.log()[-3000:]
    with open(os.path.join(d, SSHD_LOG), "a") as f:
        for i in range(2):
            f.write(sshd_failure("203.0.113.8", 800 + i) + "\n")
    assert server.wait_log("[sshd] Ban 203.0.113.8", timeout=10), server.log()[-3000:]

    # reload keeps both jails (and the actions, without new errors)
    mark = len(server.log())
    server.client("reload")
    assert server.wait_log("Jail 'sshd' reloaded", timeout=10), server.log()[-3000:]
    assert "Jail 'smban' reloaded" in server.log()[mark:]
    assert " ERROR " not in server.log()[mark:], server.log()[mark:]
    assert re.search(r"Jail list:\s*smban, sshd\s*$", server.client("status").stdout, re.M)

    # unban and stop raise nothing
    server.client("set", "smban", "unbanip", "192.0.2.9")
    assert server.wait_log("[smban] Unban 192.0.2.9", timeout=10)
    server.client("stop")
    assert wait_for(lambda: "Exiting Fail2ban" in server.log(), 10), server.log()[-3000:]
    after = server.log().split("[smban] Unban 192.0.2.9", 1)[1]
    assert "Failed to" not in after and "Traceback" not in after, after[-3000:]
