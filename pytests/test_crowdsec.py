"""smban.crowdsec and actions/smban-crowdsec.py against a real CrowdSec
Local API (Debian's crowdsec, run with a private configuration in a
private network namespace: lab/crowdsec.py).  Root and crowdsec needed;
skips naming what is missing."""
import json
import logging
import os
import time

import pytest

from conftest import load_action_file
from lab import crowdsec, netns

pytestmark = pytest.mark.skipif(crowdsec.why_unavailable() is not None
                                or netns.why_unavailable() is not None,
                                reason=str(crowdsec.why_unavailable()
                                           or netns.why_unavailable()))

from smban.crowdsec import Credentials, Lapi, LapiError, Sharer, duration_text  # noqa: E402
from test_iptables_action import wait_until  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTION = os.path.join(ROOT, "actions", "smban-crowdsec.py")

AUTH = ("Dec  4 08:00:0%d mx1 sendmail[12%d]: 6AS1E2Hu0090%02d: AUTH failure (LOGIN): "
        "authentication failure (-13) SASL(-13): authentication failure: checkpass failed, "
        "user=admin, relay=[%s]")


@pytest.fixture
def lapi(tmp_path):
    n = netns.Netns("cs")
    try:
        with n.entered():
            netns.link_up_lo()
            server = crowdsec.LapiServer(str(tmp_path / "lapi"), "127.0.0.1:8080")
            server.setup()
            server.start()
            try:
                yield server
            finally:
                server.stop()
    finally:
        n.close()


def creds(lapi, tmp_path, login="mx1"):
    return Credentials.read(lapi.credentials(str(tmp_path / ("%s.yaml" % login)), login))


def values(lapi):
    return sorted(d["value"] for d in lapi.decisions())


class Log(logging.Logger):
    def __init__(self):
        super().__init__("test")
        self.lines = []

    def _log(self, level, msg, args, **kw):
        self.lines.append(logging.getLevelName(level) + " " + (msg % args if args else msg))


# ---- the client ----

def test_credentials_file_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("url: 'http://192.0.2.1:8080'\nlogin: mx1\n# a comment\npassword: \"s3cret\"\n")
    c = Credentials.read(str(p))
    assert (c.url, c.login, c.password) == ("http://192.0.2.1:8080/", "mx1", "s3cret")
    p.write_text("url: http://192.0.2.1:8080\nlogin: mx1\n")
    with pytest.raises(ValueError, match="no password"):
        Credentials.read(str(p))
    p.write_text("url: ftp://x\nlogin: a\npassword: b\n")
    with pytest.raises(ValueError, match="not http"):
        Credentials.read(str(p))
    with pytest.raises(ValueError, match="cannot read"):
        Credentials.read(str(tmp_path / "absent.yaml"))
    assert duration_text(3600) == "3600s" and duration_text(None) == duration_text(-1)


def test_push_and_delete_round_trip_deletes_only_our_own(lapi, tmp_path):
    api = Lapi(creds(lapi, tmp_path))
    api.push([("203.0.113.5", 3600, "smban/auth-failure", "smban jail smban on mx1: "
               "auth-failure x3"), ("2001:db8::5", 600, "smban/relay-denied", "r")])
    got = {d["value"]: d for d in lapi.decisions()}
    assert set(got) == {"203.0.113.5", "2001:db8::5"}
    d = got["203.0.113.5"]
    assert d["origin"] == "smban" and d["scenario"] == "smban/auth-failure" and d["type"] == "ban"
    assert d["duration"].startswith("59m")             # the jail's bantime
    # someone else's decisions on the same address: an operator's, another host's
    lapi.add_decision("203.0.113.5")
    other = Lapi(creds(lapi, tmp_path, "mx2"))
    other.push([("203.0.113.5", 3600, "smban/auth-failure", "mx2's own")])
    assert len([d for d in lapi.decisions() if d["value"] == "203.0.113.5"]) == 3
    assert api.unban("203.0.113.5") == 1
    left = [d for d in lapi.decisions() if d["value"] == "203.0.113.5"]
    assert sorted(d["origin"] for d in left) == ["cscli", "smban"] and len(left) == 2
    assert api.unban("203.0.113.5") == 0                # nothing of ours left
    assert api.unban("198.51.100.99") == 0


def test_bad_credentials_and_wrong_url_are_clear_errors(lapi, tmp_path):
    good = creds(lapi, tmp_path)
    with pytest.raises(LapiError, match="HTTP 401"):
        Lapi(Credentials(good.url, good.login, "wrong")).token()
    with pytest.raises(LapiError, match="cannot reach the LAPI at http://127.0.0.1:9/"):
        Lapi(Credentials("http://127.0.0.1:9/", "mx1", "x"), timeout=2).token()
    with pytest.raises(LapiError, match="TLS"):
        Lapi(Credentials("https://127.0.0.1:8080/", "mx1", "x"), timeout=2).token()


# ---- the queue ----

def test_batches_never_block_and_survive_an_outage_and_a_restart(lapi, tmp_path):
    log = Log()
    api = Lapi(creds(lapi, tmp_path), timeout=2)
    qfile = str(tmp_path / "q" / "mx1.queue")
    s = Sharer(api, qfile, log)
    s.start()
    ips = ["198.51.100.%d" % i for i in range(1, 201)]
    t0 = time.monotonic()
    for ip in ips:
        s.ban(ip, 3600, "smban/auth-failure", "auth-failure x1")
    assert time.monotonic() - t0 < 2                      # queued, not pushed inline
    assert s.wait_idle(20)
    assert values(lapi) == sorted(ips)
    assert api.requests < 20                              # batches, not one per ban

    # the LAPI goes down: bans and unbans wait in the queue and its file
    lapi.stop()
    s.unban(ips[0])
    s.ban("203.0.113.7", 600, "smban/relay-denied", "relay-denied x1")
    assert wait_until(lambda: any("queued in %s" % qfile in l for l in log.lines))
    assert set(s.queued()) == {ips[0], "203.0.113.7"}
    # already in the file, before any stop: a killed fail2ban loses nothing
    with open(qfile) as f:
        assert {json.loads(l)["ip"] for l in f} == {ips[0], "203.0.113.7"}
    s.stop(timeout=1)
    assert any("kept in %s" % qfile in l for l in log.lines)
    with open(qfile) as f:
        assert len(f.read().splitlines()) == 2

    # fail2ban restarts (a new Sharer on the same file), the LAPI comes back
    lapi.start()
    s2 = Sharer(Lapi(api.creds, timeout=2), qfile, Log())
    s2.start()
    assert s2.wait_idle(30)
    s2.stop()
    assert values(lapi) == sorted(ips[1:] + ["203.0.113.7"])
    with open(qfile) as f:
        assert f.read() == ""


def test_the_queue_is_bounded_and_the_latest_operation_wins(tmp_path):
    log = Log()
    # a LAPI nobody answers at: everything stays queued
    s = Sharer(Lapi(Credentials("http://127.0.0.1:9/", "mx1", "x"), timeout=1),
               str(tmp_path / "q"), log, max_queue=3)
    s.start()
    for i in range(5):
        s.ban("192.0.2.%d" % i, 60, "smban/x", "x")
    s.unban("192.0.2.3")
    s.ban("192.0.2.4", 120, "smban/y", "y")
    q = s.queued()
    assert list(q) == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
    assert q["192.0.2.3"] == ("unban",) and q["192.0.2.4"][1:3] == (120, "smban/y")
    assert s.dropped == 2 and any("queue full" in l for l in log.lines)
    with pytest.raises(ValueError):
        s.ban("not an address", 60, "smban/x", "x")
    s.stop(timeout=0.5)


# ---- the fail2ban action ----

def load_action():
    return load_action_file("smban-crowdsec")


class Jail:
    name = "smban"


def test_action_reason_names_the_classes_and_bad_credentials_keep_it_quiet(lapi, tmp_path):
    mod = load_action()
    path = lapi.credentials(str(tmp_path / "mx1.yaml"), "mx1")
    a = mod.Action(Jail(), "smban-crowdsec", credentials=path,
                   queue=str(tmp_path / "q" / "smban.queue"))
    a.start()
    now = time.time()
    lines = "\n".join(AUTH % (i, i, i, "203.0.113.9") for i in range(3))
    a.ban({"ip": "203.0.113.9", "time": now, "bantime": 600, "matches": lines, "failures": 3})
    assert a.sharer.wait_idle(15)
    (d,) = lapi.decisions()
    assert d["scenario"] == "smban/auth-failure" and d["duration"].startswith("9m")
    api = a.sharer.lapi
    alerts = api._call("GET", "v1/alerts?ip=203.0.113.9")
    assert "auth-failure x3" in alerts[0]["message"] and "jail smban" in alerts[0]["message"]
    assert a.flush() is True and len(lapi.decisions()) == 1   # stopping keeps the decisions
    a.unban({"ip": "203.0.113.9"})
    assert a.sharer.wait_idle(15) and lapi.decisions() == []
    a.stop()

    # bad credentials: an error at start, no exception, bans queued
    bad = tmp_path / "bad.yaml"
    bad.write_text("url: %s\nlogin: mx1\npassword: wrong\n" % lapi.url)
    b = mod.Action(Jail(), "smban-crowdsec", credentials=str(bad),
                   queue=str(tmp_path / "q" / "bad.queue"))
    logged = []
    b._logSys = type("L", (), {k: (lambda self, m, *a: logged.append(m % a))
                               for k in ("error", "warning", "info", "debug")})()
    b.sharer.log = b._logSys
    b.start()
    assert any("HTTP 401" in l and "still bans locally" in l for l in logged), logged
    b.ban({"ip": "203.0.113.10", "time": now, "bantime": 600, "matches": "", "failures": 1})
    assert "203.0.113.10" in b.sharer.queued()
    b.stop()
    missing = mod.Action(Jail(), "smban-crowdsec", credentials=str(tmp_path / "none.yaml"),
                         queue=str(tmp_path / "q" / "none.queue"))
    missing._logSys = b._logSys
    missing.start()
    assert any("cannot read the LAPI credentials" in l for l in logged)
    missing.stop()


# ---- under a real fail2ban-server ----

@pytest.fixture(params=__import__("conftest").f2b_dist_params())
def f2b_lapi(tmp_path, request, lapi):
    """fail2ban (each version) with a jail banning through smban-iptables
    and sharing through smban-crowdsec, in the LAPI's namespace."""
    import shutil
    from test_iptables_action import Fail2ban, PKG_PATH, write_config
    d = str(tmp_path / "f2b")
    creds_path = lapi.credentials(str(tmp_path / "mx1.yaml"), "mx1")
    write_config(d, extra="")
    shutil.copy(ACTION, os.path.join(d, "action.d", "smban-crowdsec.py"))
    jail = os.path.join(d, "jail.conf")
    with open(jail) as f:
        text = f.read()
    text = text.replace('lockwait=5]\n', 'lockwait=5]\n         smban-crowdsec.py[credentials="%s", '
                        'queue="%s/crowdsec.queue"]\n' % (creds_path, d))
    with open(jail, "w") as f:
        f.write(text)
    env = dict(os.environ, XTABLES_LOCKFILE=str(tmp_path / "xtables.lock"), PYTHONPATH=PKG_PATH)
    dist = request.param
    server = Fail2ban(d, env) if dist is None else \
        Fail2ban(d, dist.env(PKG_PATH, XTABLES_LOCKFILE=str(tmp_path / "xtables.lock")),
                 dist.client)
    try:
        server.start()
        yield server
    finally:
        server.client("stop", check=False)
        server.kill()


def test_fail2ban_shares_its_bans_and_keeps_them_over_a_restart(f2b_lapi, lapi):
    f2b = f2b_lapi
    with open(os.path.join(f2b.dir, "mail.log"), "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S") + " fail 203.0.113.5\n")
    assert f2b.wait_log("Ban 203.0.113.5"), f2b.log()[-2000:]
    f2b.client("set", "smbantest", "banip", "198.51.100.7", "2001:db8::7")
    assert wait_until(lambda: values(lapi) == ["198.51.100.7", "2001:db8::7", "203.0.113.5"]), \
        f2b.log()[-3000:]
    assert {d["origin"] for d in lapi.decisions()} == {"smban"}
    assert "logged in to the LAPI" in f2b.log()
    f2b.client("set", "smbantest", "unbanip", "198.51.100.7")
    assert wait_until(lambda: values(lapi) == ["2001:db8::7", "203.0.113.5"])
    # fail2ban stops: the shared decisions stay (other hosts keep refusing);
    # it starts again: its restored bans are not pushed twice
    f2b.client("stop")
    time.sleep(0.5)
    assert values(lapi) == ["2001:db8::7", "203.0.113.5"]
    f2b.start()
    assert f2b.wait_log("Jail 'smbantest' started")
    time.sleep(2)
    assert len(lapi.decisions()) == 2

    # the LAPI down: a ban waits in the queue file through a restart of
    # fail2ban, and reaches the LAPI when it is back
    lapi.stop()
    f2b.client("set", "smbantest", "banip", "198.51.100.9")
    assert wait_until(lambda: "198.51.100.9" in open(os.path.join(f2b.dir,
                                                                  "crowdsec.queue")).read())
    f2b.client("stop")
    time.sleep(0.5)
    lapi.start()
    f2b.start()
    assert wait_until(lambda: "198.51.100.9" in values(lapi)), f2b.log()[-3000:]
    assert len(lapi.decisions()) == 3
