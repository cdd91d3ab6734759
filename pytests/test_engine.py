"""smban.engine.Engine on fail2ban's own Filter, loaded with the twin as a
jail loads it (no server, no root): what the jail sees from processLine
once the engine is attached, and when the engine refuses to attach.
"""
import logging
import os
import re
import shutil
import time

import pytest

import smban
import smban.engine
from conftest import REF_TIME, all_samples, f2b_dist_params, f2b_failures, \
    load_f2b_filter, modified_twin
from smban.filter import failregex_by_rule, twin_rules

AUTH_NO_RELAY = ("{t} old sendmail[{pid}]: 32E5lOxs{pid:06d}: AUTH failure (LOGIN): "
                 "authentication failure (-13) SASL(-13): authentication failure: "
                 "checkpass failed")
DID_NOT_ISSUE = ("{t} old sendmail[{pid}]: 32E5lOxs{pid:06d}: [{ip}] did not issue "
                 "MAIL/EXPN/VRFY/ETRN during connection to MTA")
AUTH = ("{t} mx sendmail[{pid}]: 32E5m0xs{pid:06d}: AUTH failure (LOGIN): authentication "
        "failure (-13) SASL(-13): authentication failure: checkpass failed, user=admin, "
        "relay=[{ip}]")
TLS_FAIL = ("{t} mx sendmail[{pid}]: STARTTLS=server, error: accept failed=-1, "
            "reason=no shared cipher, SSL_error=1, errno=0, retry=-1, "
            "relay=esa12.hc6077-55.iphmx.com [{ip}]")
FALLBACK = ("{t} mx sendmail[{pid}]: 4AH5XXPf{pid:06d}: esa12.hc6077-55.iphmx.com [{ip}] "
            "did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA")


def stamp(t=None):
    return time.strftime("%b %d %H:%M:%S", time.localtime(time.time() if t is None else t))


@pytest.fixture
def flt(f2b_confdir):
    """A fresh fail2ban Filter holding the twin, with a jail's date checks."""
    f = load_f2b_filter(f2b_confdir, "smban")
    f.checkAllRegex = False
    f.checkFindTime = True
    f.setFindTime(600)
    f.inOperation = True
    return f


def fails(results):
    return [(idx, str(fid), fail["smban"]) for idx, fid, _, fail in results]


def test_attaches_to_the_twin_and_detaches(flt):
    e = smban.engine.Engine(flt)
    assert e.why_not() is None
    assert e.attach() is None and e.attached()
    assert flt.processLine == e.process
    e.detach()
    assert not e.attached()
    assert "processLine" not in flt.__dict__
    # fail2ban's own path is back: it finds the twin's failure on its own
    line = AUTH.format(t=stamp(), pid=1, ip="203.0.113.9")
    assert [str(r[1]) for r in flt.processLine(line)] == ["203.0.113.9"]


def test_attaching_twice_replaces_instead_of_wrapping(flt):
    first = smban.engine.Engine(flt)
    first.attach()
    second = smban.engine.Engine(flt)
    second.attach()
    assert flt.processLine == second.process
    first.detach()                    # not first's any more: left alone
    assert flt.processLine == second.process
    second.attach()                   # again: still one wrapper
    line = AUTH.format(t=stamp(), pid=2, ip="203.0.113.10")
    assert len(flt.processLine(line)) == 1
    second.detach()
    assert "processLine" not in flt.__dict__


@pytest.mark.parametrize("how", ["added", "edited", "reordered"])
def test_stands_down_on_a_modified_filter(f2b_confdir, tmp_path, how):
    d = tmp_path / "conf"
    shutil.copytree(f2b_confdir, d)
    conf = d / "filter.d" / "smban.conf"
    text, reason = modified_twin(conf.read_text(), how)
    conf.write_text(text)
    f = load_f2b_filter(str(d), "smban")
    assert len(f.getFailRegex()) == len(twin_rules()) + (how == "added")
    e = smban.engine.Engine(f)
    why = e.attach()
    assert why == "the jail's filter is not smban's unmodified regex twin: " + reason
    assert not e.attached() and "processLine" not in f.__dict__
    # the administrator's filter is what runs: fail2ban's own path
    if how == "edited":
        line = ("Dec  1 10:00:00 mx sendmail[7]: ruleset=check_rcpt, arg1=<a@b.example>, "
                "relay=[203.0.113.5], reject=550 5.7.1 <a@b.example>... Relaying refused")
        assert [str(r[1]) for r in f.processLine(line)] == ["203.0.113.5"]


def test_stands_down_on_a_modified_filter_maxlines(f2b_confdir):

    f2 = load_f2b_filter(f2b_confdir, "smban")
    f2.setMaxLines(2)
    assert "maxlines" in smban.engine.Engine(f2).attach()


@pytest.mark.parametrize("version", ["0.11.2", "1.0.1", "1.0.3", "1.1.1", "1.1.2", "1.2.0"])
def test_stands_down_on_an_untested_fail2ban(flt, monkeypatch, version):
    """Only the versions of the table: not their neighbours either."""
    monkeypatch.setattr(smban.engine, "fail2ban_version", lambda: version)
    e = smban.engine.Engine(flt)
    why = e.attach()
    assert "fail2ban %s is not a version smban-engine was tested with" % version in why
    assert "processLine" not in flt.__dict__ and "findFailure" not in flt.__dict__


@pytest.mark.parametrize("mode", ["normal", "aggressive"])
def test_the_story_never_fails_and_brute_force_does(flt, mode):
    smban.engine.Engine(flt, mode).attach()
    out = []
    for i in range(10):
        out += flt.processLine(TLS_FAIL.format(t=stamp(), pid=1000 + i, ip="192.0.2.99"))
        out += flt.processLine(FALLBACK.format(t=stamp(), pid=1000 + i, ip="192.0.2.99"))
    assert out == []
    auth_idx = [n for n, _ in twin_rules()].index("auth-failure")
    got = flt.processLine(AUTH.format(t=stamp(), pid=2000, ip="198.51.100.7"))
    assert fails(got) == [(auth_idx, "198.51.100.7", "auth-failure")]
    assert got[0][3]["user"] == "admin"
    # a session without a TLS failure: suspect, counted in aggressive mode only
    got = flt.processLine(DID_NOT_ISSUE.format(t=stamp(), pid=3000, ip="198.51.100.8"))
    assert fails(got) == ([(0, "198.51.100.8", "null-session")] if mode == "aggressive" else [])


def test_resolved_pending_failures_count_each(flt, f2b_confdir):
    smban.engine.Engine(flt).attach()
    twin = load_f2b_filter(f2b_confdir, "smban")
    t = stamp()
    lines = [AUTH_NO_RELAY.format(t=t, pid=29205)] * 3 + \
        [DID_NOT_ISSUE.format(t=t, pid=29205, ip="46.148.40.163")]
    got = [flt.processLine(line) for line in lines]
    assert got[:3] == [[], [], []]
    auth_idx = [n for n, _ in twin_rules()].index("auth-failure")
    assert fails(got[3]) == [(auth_idx, "46.148.40.163", "auth-failure")] * 3
    # the matched line is reported once
    assert [len(r[3]["matches"]) for r in got[3]] == [1, 0, 0]
    # the twin alone cannot see these at all
    assert [f2b_failures(twin, line) for line in lines] == [[]] * 4


def test_same_failregex_index_as_the_twin_on_every_fixture(f2b_confdir):
    """Where the twin matches a fixture line and the engine counts it, both
    report the same failregex index (fail2ban-regex's hit counts agree)."""
    twin = load_f2b_filter(f2b_confdir, "smban")
    eng = load_f2b_filter(f2b_confdir, "smban")
    eng.checkAllRegex = False
    smban.engine.Engine(eng).attach()
    compared = 0
    for s in all_samples():
        want = {ip: idx for ip, idx in f2b_failures(twin, s.line)}
        got = {str(r[1]): r[0] for r in eng.processLine(s.line)}
        for ip, idx in got.items():
            if ip in want:
                assert idx == want[ip], s.id
                compared += 1
    assert compared >= 10


def test_a_failure_names_the_failregex_of_its_rule(twin):
    """Event.rule indexes the rule table, and through it the twin's
    failregex list: on every fixture line the C engine counts by a rule of
    the twin, fail2ban's own Filter matches that very failregex."""
    by_rule = failregex_by_rule()
    assert [name for name, idx in by_rule if idx is not None] == [n for n, _ in twin_rules()]
    assert [idx for _, idx in by_rule if idx is not None] == list(range(len(twin_rules())))
    checked = set()
    for s in all_samples():
        if s.spec and s.spec.get("twin") is False:    # a framing the twin cannot read
            continue
        ev = smban.Classifier("normal", ref_time=REF_TIME).classify(s.line)
        if ev is None or not ev.failures:
            continue
        name, idx = by_rule[ev.rule]
        assert name == ev.name, s.id
        if idx is not None:
            assert [i for _, i in f2b_failures(twin, s.line)] == [idx], s.id
            checked.add(idx)
    # every failregex but one of two AUTH failure shapes' is met
    assert len(checked) >= len(twin_rules()) - 1, sorted(checked)


def test_lines_older_than_findtime_are_ignored_while_catching_up(flt):
    smban.engine.Engine(flt).attach()
    flt.inOperation = False
    old = AUTH.format(t=stamp(time.time() - 3600), pid=4000, ip="198.51.100.20")
    assert flt.processLine(old) == []
    recent = AUTH.format(t=stamp(time.time() - 60), pid=4001, ip="198.51.100.20")
    got = flt.processLine(recent)
    assert len(got) == 1 and abs(got[0][2] - (time.time() - 60)) < 3


def test_an_odd_date_in_operation_counts_as_now(flt):
    smban.engine.Engine(flt).attach()
    old = AUTH.format(t=stamp(time.time() - 3600), pid=4100, ip="198.51.100.21")
    got = flt.processLine(old)
    assert len(got) == 1 and abs(got[0][2] - time.time()) < 3


def test_ignoreregex_is_honoured(flt):
    flt.addIgnoreRegex(r"user=admin")
    smban.engine.Engine(flt).attach()
    assert flt.processLine(AUTH.format(t=stamp(), pid=4200, ip="198.51.100.22")) == []
    other = AUTH.format(t=stamp(), pid=4201, ip="198.51.100.23").replace("user=admin", "user=x")
    assert len(flt.processLine(other)) == 1


def test_systemd_lines_tuple_and_date(flt):
    """The systemd backend's shape (fail2ban 1.0.2 filtersystemd.py,
    formatJournalEntry): ('', isodate + ' ', 'host ident[pid]: message')
    plus the journal's epoch, which is the failure's date."""
    smban.engine.Engine(flt).attach()
    when = time.time() - 5
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)) + ".123456"
    msg = AUTH.format(t="", pid=4300, ip="2001:db8::7").lstrip()
    got = flt.processLine(("", iso + " ", msg), when)
    assert fails(got) == [(0, "2001:db8::7", "auth-failure")]
    assert got[0][2] == when and "ip6" in got[0][3]
    # no failure on a benign tuple
    tls = TLS_FAIL.format(t="", pid=4301, ip="192.0.2.99").lstrip()
    assert flt.processLine(("", iso + " ", tls), when) == []


def test_an_error_in_the_engine_sends_the_line_to_the_regex_path(flt, caplog):
    e = smban.engine.Engine(flt)
    e.attach()

    class Broken:
        def failure(self, line):
            raise RuntimeError("boom")
    e.classifier = Broken()
    with caplog.at_level(logging.ERROR, logger="fail2ban"):
        got = flt.processLine(AUTH.format(t=stamp(), pid=4400, ip="198.51.100.30"))
    # the twin found it: fail2ban's own result shape, with the twin's groups
    assert [str(r[1]) for r in got] == ["198.51.100.30"] and "smban" not in got[0][3]
    assert "boom" in caplog.text and "regex filter" in caplog.text
    assert e.errors == 1 and e.attached()


def load_action():
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "actions", "smban-engine.py")
    spec = importlib.util.spec_from_file_location("smban_engine_action", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_action_reload_keeps_it_and_rechecks_the_filter(flt, f2b_confdir, caplog):
    """As fail2ban drives the action: construction attaches, reload (after
    clearAllParams, which is what makes fail2ban keep this instance) keeps
    it attached or stands it down if the filter changed, stop detaches."""
    mod = load_action()

    class Jail:
        name = "smban"
        filter = flt

    with caplog.at_level(logging.INFO, logger="fail2ban"):
        act = mod.Action(Jail(), "smban-engine", mode="aggressive")
    assert "smban-engine attached" in caplog.text and "mode=aggressive" in caplog.text
    assert hasattr(act, "reload") and hasattr(act, "clearAllParams")
    engine = act._engine
    act.clearAllParams()
    act.reload(mode="aggressive")
    assert act._engine is engine and engine.attached()
    assert flt.processLine(DID_NOT_ISSUE.format(t=stamp(), pid=5000, ip="198.51.100.40"))
    act.reload(mode="normal")
    assert engine.mode == "normal" and engine.attached()
    assert flt.processLine(DID_NOT_ISSUE.format(t=stamp(), pid=5001, ip="198.51.100.40")) == []
    # the filter changed on reload: the engine stands down
    flt.addFailRegex(r"^local <ADDR>$")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fail2ban"):
        act.reload(mode="normal")
    assert "stands down" in caplog.text and "13 failregex" in caplog.text
    assert "processLine" not in flt.__dict__
    flt.delFailRegex(len(flt.getFailRegex()) - 1)
    act.reload(mode="normal")
    assert engine.attached()
    act.stop()
    assert "processLine" not in flt.__dict__
    with pytest.raises(ValueError, match="mode must be normal or aggressive"):
        mod.Action(Jail(), "smban-engine", mode="paranoid")
    # the names it checks without smban are smban's
    assert mod.FALLBACK_MODES == mod.MODES == smban.MODES
    with pytest.raises(ValueError, match="max_sessions='many' is not a number"):
        mod.Action(Jail(), "smban-engine", max_sessions="many")


@pytest.mark.parametrize("engine", [True, False], ids=["engine", "twin-alone"])
def test_findtime_edge_while_catching_up(f2b_confdir, engine):
    """Reading a log's backlog (not in operation), fail2ban drops lines
    older than findtime.  On a clock held still: a line findtime - 5 s old
    counts, one findtime + 5 s old does not, with the engine attached as
    with fail2ban's own regex filter, and the failure keeps the line's date."""
    from fail2ban.server.mytime import MyTime
    f = load_f2b_filter(f2b_confdir, "smban")
    f.checkAllRegex = False
    f.checkFindTime = True
    f.setFindTime(600)
    f.inOperation = False
    if engine:
        smban.engine.Engine(f).attach()
    now = int(time.time())
    MyTime.setTime(now)
    try:
        inside = AUTH.format(t=stamp(now - 595), pid=6000, ip="198.51.100.50")
        outside = AUTH.format(t=stamp(now - 605), pid=6001, ip="198.51.100.51")
        got_in, got_out = f.processLine(inside), f.processLine(outside)
    finally:
        MyTime.setTime(None)
    assert [(str(r[1]), r[2]) for r in got_in] == [("198.51.100.50", now - 595)]
    assert got_out == []


@pytest.mark.skipif(bool(os.environ.get("SMBAN_ENGINE_TREE")),
                    reason="already running on a fail2ban tree")
@pytest.mark.parametrize("dist", [p for p in f2b_dist_params() if p.values[0].pythonpath])
def test_this_file_on_each_fail2ban_tree(dist):
    """Every test above, on fail2ban's upstream trees (Debian's 1.0.2 is
    the one this run imports): a fresh interpreter with the tree first on
    its path."""
    import subprocess
    import sys
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__)))
    env = dist.env(pkg, SMBAN_ENGINE_TREE=dist.version)
    r = subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.abspath(__file__), "-k", "not test_this_file_on_each"],
                       env=env, capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert re.search(r"^\d+ passed", r.stdout.splitlines()[-1]), r.stdout[-500:]


def test_fail2ban_version_under_test():
    """The fail2ban this run imports is the one SMBAN_ENGINE_TREE names."""
    want = os.environ.get("SMBAN_ENGINE_TREE")
    if want:
        assert smban.engine.fail2ban_version() == want
    assert smban.engine.fail2ban_version() in smban.engine.VERSIONS
