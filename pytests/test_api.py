"""smban's Python API and command line: what an operator or fail2ban sees."""
import gzip
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import smban
from conftest import REF_TIME, ROOT

STORY = [
    b"Nov 17 00:33:33 jik4 sendmail[372431]: STARTTLS=server, error: accept failed=-1, reason=no shared cipher, SSL_error=1, errno=0, retry=-1, relay=esa12.hc6077-55.iphmx.com [139.138.46.199]",
    b"Nov 17 00:33:33 jik4 sendmail[372431]: 4AH5XXPf372431: esa12.hc6077-55.iphmx.com [139.138.46.199] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA",
]
BRUTE = (b"Nov 17 00:40:%02d jik4 sendmail[4000%02d]: 4AH5e1Aa4000%02d: AUTH failure (LOGIN): "
         b"authentication failure (-13) SASL(-13): authentication failure: checkpass failed, "
         b"user=postmaster, relay=[109.172.142.229]")


def smban_cmd(*args, **kw):
    """Run python3 -m smban in a subprocess, from outside the source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(smban.__file__))
    return subprocess.run([sys.executable, "-m", "smban", *args], capture_output=True,
                          text=True, env=env, cwd="/", timeout=120, **kw)


def test_event_fields():
    ev = smban.Classifier(ref_time=REF_TIME).classify(BRUTE % (1, 1, 1))
    assert ev.kind == "ban" and ev.name == "auth-failure"
    assert ev.ip == "109.172.142.229" and ev.user == "postmaster" and ev.mech == "LOGIN"
    assert ev.code == -13 and ev.pid == 400001 and ev.qid == "4AH5e1Aa400001"
    assert ev.program == "sendmail" and ev.failures == 1 and ev.via is None
    assert isinstance(ev.time, float)
    assert smban.EVENT_FIELDS[:3] == ("kind", "name", "ip")
    assert dict(zip(smban.EVENT_FIELDS, ev))["user"] == "postmaster"


def test_str_bytes_and_newline_are_the_same_line():
    a = smban.Classifier(ref_time=REF_TIME).classify(BRUTE % (1, 1, 1))
    b = smban.Classifier(ref_time=REF_TIME).classify((BRUTE % (1, 1, 1)).decode() + "\n")
    assert tuple(a) == tuple(b)


def test_bad_input_is_skipped_and_counted():
    c = smban.Classifier(ref_time=REF_TIME)
    assert c.classify(b"Nov 17 00:40:01 h sendmail[1]: " + b"x" * 70000) is None
    assert c.classify(b"Nov 17 00:40:01 h sendmail[1]: [192.0.2.1]: possible\0 SMTP attack") is None
    # not UTF-8 (sendmail escapes such bytes, but a relay may not): classified
    ev = c.classify(b"Nov 17 00:40:01 h sendmail[1]: 4AH5e1Aa000001: AUTH failure (LOGIN): "
                    b"authentication failure (-13) SASL(-13): x, user=\xff\xfe, relay=[192.0.2.9]")
    assert ev.ip == "192.0.2.9" and ev.user == "\\xff\\xfe"
    # a str holding undecodable bytes (read with surrogateescape)
    ev = c.classify("Nov 17 00:40:02 h sendmail[2]: 4AH5e1Aa000002: [192.0.2.10]: VRFY \udcff [rejected]")
    assert ev.ip == "192.0.2.10"
    st = c.stats()
    assert st["skipped_long"] == 1 and st["skipped_nul"] == 1
    with pytest.raises(TypeError):
        c.classify(42)


def test_buffer_counts_bad_lines():
    c = smban.Classifier(ref_time=REF_TIME)
    data = b"\n".join([STORY[0], b"\xff\xfe garbage", b"x" * 70000, BRUTE % (1, 1, 1), b"a\0b"]) + b"\n"
    res = c.classify_buffer(data)
    assert res["lines"] == 5
    assert res["classes"] == {"tls-failure": 1, "auth-failure": 1}
    assert res["kinds"] == {"benign": 1, "ban": 1}
    assert res["failures"] == 1
    st = c.stats()
    assert st["not_utf8"] == 1 and st["skipped_long"] == 1 and st["skipped_nul"] == 1


def test_buffer_events_match_per_line_classification():
    lines = STORY + [BRUTE % (i, i, i) for i in range(1, 8)]
    data = b"\n".join(lines)          # no final newline: the last line still counts
    res = smban.Classifier(ref_time=REF_TIME).classify_buffer(data, first_line=10, events=True)
    one = smban.Classifier(ref_time=REF_TIME)
    expected = [(10 + i, tuple(ev)) for i, ev in enumerate(map(one.classify, lines)) if ev]
    assert [(n, tuple(ev)) for n, ev in res["events"]] == expected
    assert res["failures"] == 7


def test_batch_releases_the_gil():
    """While one thread is inside classify_buffer, another runs: a ticker
    thread, settled first, stamps the clock every millisecond; stamps fall
    inside the call (away from its edges, where the GIL changes hands
    anyway) only if the call released the GIL.  Holding it, there are none."""
    data = b"\n".join([BRUTE % (i % 60, i % 100, i % 100) for i in range(400000)]) + b"\n"
    stamps = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            stamps.append(time.monotonic())
            done.wait(0.001)

    t = threading.Thread(target=ticker)
    c = smban.Classifier(ref_time=REF_TIME)
    t.start()
    try:
        while len(stamps) < 20:         # the ticker runs before the call
            time.sleep(0.001)
        t0 = time.monotonic()
        res = c.classify_buffer(data)
        t1 = time.monotonic()
    finally:
        done.set()
        t.join()
    assert res["failures"] == 400000
    edge = 0.01                         # 2 switch intervals on each side
    assert t1 - t0 > 4 * edge, "the call took %.3f s: too short to tell" % (t1 - t0)
    inside = [s for s in stamps if t0 + edge < s < t1 - edge]
    # a tick per ms at best; a quarter of that on a loaded machine
    assert len(inside) >= (t1 - t0 - 2 * edge) / 0.001 / 4, (len(inside), t1 - t0)
    print("%d ticks inside a call of %.3f s" % (len(inside), t1 - t0))


def test_options_are_validated():
    with pytest.raises(ValueError, match="mode"):
        smban.Classifier("paranoid")
    with pytest.raises(ValueError):
        smban.Classifier(max_sessions=0)
    with pytest.raises(ValueError):
        smban.Classifier(session_idle=0)
    c = smban.Classifier("aggressive", programs=["sm-mta", "exim"])
    assert c.mode == "aggressive" and c.programs == "sm-mta,exim"
    assert c.classify(b"Nov 17 00:40:01 h sendmail[1]: [192.0.2.1]: VRFY x [rejected]") is None
    assert c.classify(b"Nov 17 00:40:01 h sm-mta[1]: [192.0.2.1]: VRFY x [rejected]").ip == "192.0.2.1"


def test_session_bound_and_eviction_counted():
    c = smban.Classifier(ref_time=REF_TIME, max_sessions=100)
    lines = [b"Nov 17 00:40:01 h sendmail[%d]: STARTTLS=server, relay=[192.0.2.1], version=TLSv1.3, verify=NO" % i
             for i in range(1000)]
    c.classify_buffer(b"\n".join(lines))
    st = c.stats()
    assert st["sessions"] == 100 and st["sessions_evicted"] == 900
    c.reset()
    assert c.stats()["sessions"] == 0


def test_deliveries_take_no_session():
    """A delivery names no client: its pid gets no session of its own, so a
    queue runner's lines cannot evict the sessions of clients."""
    c = smban.Classifier(ref_time=REF_TIME, max_sessions=10)
    c.classify(b"Nov 17 00:40:01 h sendmail[7]: STARTTLS=server, relay=[192.0.2.1], version=TLSv1.3, verify=NO")
    lines = [b"Nov 17 00:40:02 h sendmail[%d]: 4AH204F8Pf%06d: to=<u@example.org>, delay=00:00:01, "
             b"xdelay=00:00:00, mailer=local, pri=79870, dsn=2.0.0, stat=Sent" % (100 + i, 100 + i)
             for i in range(50)]
    assert c.classify_buffer(b"\n".join(lines))["classes"] == {"delivery": 50}
    st = c.stats()
    assert st["sessions"] == 1 and st["sessions_evicted"] == 0


def write(tmp_path, name, lines, compress=False):
    p = tmp_path / name
    data = b"\n".join(lines) + b"\n"
    p.write_bytes(gzip.compress(data) if compress else data)
    return str(p)


def test_cli_json_lines_are_numbered_per_file(tmp_path):
    a = write(tmp_path, "maillog.1.gz", [b"noise", STORY[0], STORY[1]], compress=True)
    b = write(tmp_path, "maillog", [BRUTE % (1, 1, 1), b"noise", BRUTE % (2, 2, 2)])
    r = smban_cmd("classify", "--json", a, b)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(os.path.basename(x["file"]), x["line"], x["name"]) for x in rows] == [
        ("maillog.1.gz", 2, "tls-failure"), ("maillog.1.gz", 3, "tls-fallback"),
        ("maillog", 1, "auth-failure"), ("maillog", 3, "auth-failure")]
    assert rows[1]["kind"] == "benign" and rows[1]["ip"] == "139.138.46.199"
    assert set(smban.EVENT_FIELDS) <= set(rows[0])


def test_cli_count(tmp_path):
    p = write(tmp_path, "maillog", STORY + [BRUTE % (i, i, i) for i in range(5)] + [b"\xff junk"])
    r = smban_cmd("classify", "--count", "--mode", "aggressive", p)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["lines"] == 8 and d["mode"] == "aggressive"
    assert d["classes"] == {"tls-failure": 1, "tls-fallback": 1, "auth-failure": 5}
    assert d["kinds"] == {"benign": 2, "ban": 5}
    assert d["failures"] == 5 and d["not_utf8"] == 1


def test_cli_missing_file_is_a_clear_error(tmp_path):
    good = write(tmp_path, "maillog", STORY)
    r = smban_cmd("classify", "--json", good, str(tmp_path / "nope"))
    assert r.returncode != 0
    assert "nope" in r.stderr and "No such file" in r.stderr
    assert r.stdout == ""          # nothing half-done
    r = smban_cmd("classify", str(tmp_path))
    assert r.returncode != 0 and "directory" in r.stderr


def test_cli_export_filter_matches_committed_file():
    r = smban_cmd("export-filter")
    assert r.returncode == 0
    with open(os.path.join(ROOT, "filters", "smban.conf")) as f:
        assert r.stdout == f.read()


def test_failure_is_classify_keeping_only_what_counts():
    """failure(line) classifies exactly as classify(line) (the sessions move
    the same way) and returns the Event only where failures count against a
    known client: what fail2ban's jail is handed."""
    from conftest import all_samples
    for mode in ("normal", "aggressive"):
        a = smban.Classifier(mode, ref_time=REF_TIME)
        b = smban.Classifier(mode, ref_time=REF_TIME)
        kept = 0
        for s in all_samples():
            ev, got = a.classify(s.line), b.failure(s.line)
            if ev is not None and ev.failures > 0 and ev.ip is not None:
                assert got is not None and tuple(got) == tuple(ev), s.id
                kept += 1
            else:
                assert got is None, s.id
        assert kept >= 50 and a.stats() == b.stats()
    with pytest.raises(TypeError, match=r"failure\(\) takes str or bytes"):
        smban.Classifier().failure(3)


def test_new_event_fields_come_last():
    """Fields added to the Event go at the end: code reading the first ones
    by position, and the JSON of `classify --json`, keep working."""
    assert smban.EVENT_FIELDS == (
        "kind", "name", "ip", "time", "pid", "qid", "user", "host", "mech", "code",
        "detail", "failures", "via", "program", "rule", "delivered", "reason")
    ev = smban.Classifier(ref_time=REF_TIME).classify(BRUTE % (1, 1, 1))
    assert ev[-3:] == (ev.rule, False, "counted")


def test_names_and_defaults_come_from_the_core():
    assert smban.MODES == ("normal", "aggressive")
    assert smban.KINDS == ("ban", "suspect", "benign", "info")
    assert smban.CLASSES == tuple(name for name, _kind, _why in smban.classes())
    assert smban.REASONS == tuple(name for name, _why in smban.reasons())
    assert {"counted", "resolved", "pending", "no-client", "trusted", "suspect-normal-mode",
            "already-counted", "tls-fallback", "tls-grace", "ignored", "benign", "info"} == set(smban.REASONS)
    assert smban.DEFAULTS == {"mode": "normal", "max_sessions": 100000, "session_idle": 3600.0,
                              "max_trusted": 100000, "trust_seconds": 86400.0,
                              "tls_grace": 3600.0, "programs": "sendmail,sm-mta,sm-acceptingconnections"}
    c = smban.Classifier()
    st = c.stats()
    assert c.mode == smban.DEFAULTS["mode"] and c.programs == smban.DEFAULTS["programs"]
    assert st["max_sessions"] == smban.DEFAULTS["max_sessions"]
    assert "max_sessions=100000" in smban.Classifier.__doc__
    r = smban_cmd("classify", "--mode", "paranoid", "/dev/null")
    assert r.returncode == 2 and "choose from 'normal', 'aggressive'" in r.stderr


def test_rule_is_the_index_of_the_rule_that_matched():
    rules = smban.rules()
    c = smban.Classifier(ref_time=REF_TIME)
    ev = c.classify(BRUTE % (1, 1, 1))
    # the first AUTH failure rule: the one with relay=, in the twin
    assert ev.rule == 0 and rules[0]["name"] == "auth-failure" and rules[0]["twin"]
    ev = c.classify(b"Nov 17 00:40:02 h sendmail[7]: 4AH5e1Aa000007: AUTH failure (LOGIN): "
                    b"authentication failure (-13) SASL(-13): authentication failure")
    assert ev.rule == 1 and not rules[1]["twin"] and "relay" not in rules[1]["pattern"]
    # two rules of one class: the one whose constant the line holds
    pre = [i for i, r in enumerate(rules) if r["name"] == "pregreeting"]
    assert len(pre) == 2
    ev = c.classify(b"Nov 17 00:40:03 h sendmail[8]: 4AH5e1Aa000008: rejecting commands from "
                    b"[192.0.2.7] due to pre-greeting traffic after 0 seconds")
    assert ev.rule == pre[0]
    ev = c.classify(b"Nov 17 00:40:04 h sendmail[9]: 4AH5e1Aa000009: rejecting EHLO from "
                    b"[192.0.2.7] due to traffic before response")
    assert ev.rule == pre[1]
    # every fixture line: the rule is of the line's own class
    from conftest import all_samples
    c = smban.Classifier("aggressive", ref_time=REF_TIME)
    seen = set()
    for s in all_samples():
        ev = c.classify(s.line)
        if ev is None:
            continue
        own = ev.via if ev.via is not None and ev.name != "tls-fallback" else ev.name
        if own == "tls-fallback":     # a fallback's line resolved pending failures
            own = rules[ev.rule]["name"]
            assert own in ("null-session", "lost-input"), s.id
        assert rules[ev.rule]["name"] == own, s.id
        seen.add(ev.rule)
    assert len(seen) > len(rules) * 3 // 4


ENVELOPE = (b"Nov 17 00:40:%02d h sendmail[%d]: 4AH5e1Aa%06d: from=<a@example.org>, size=%d, "
            b"class=0, nrcpts=%d, proto=ESMTP, daemon=MTA, relay=[192.0.2.%d]")


def test_delivered_is_an_envelope_that_accepted_a_message():
    c = smban.Classifier(ref_time=REF_TIME)
    ev = c.classify(ENVELOPE % (1, 1, 1, 5120, 2, 1))
    assert ev.name == "envelope" and ev.delivered is True and ev.detail == "2"
    # recipients, but the client went away before the message: nothing accepted
    ev = c.classify(ENVELOPE % (2, 2, 2, 0, 1, 2))
    assert ev.delivered is False and ev.detail == "0"
    ev = c.classify(ENVELOPE % (3, 3, 3, 900, 0, 3))
    assert ev.delivered is False and ev.detail == "0"
    # a sender long enough to have been cut by from=%.200s: its size and
    # recipients may be the client's own text
    long_from = (b"Nov 17 00:40:04 h sendmail[4]: 4AH5e1Aa000004: from=<" + b"a" * 200
                 + b"@example.org>, size=900, class=0, nrcpts=1, proto=ESMTP, relay=[192.0.2.4]")
    ev = c.classify(long_from)
    assert ev.name == "envelope" and ev.delivered is False and ev.detail is None
    assert c.classify(BRUTE % (5, 5, 5)).delivered is False
    # delivered is what earns trust: in aggressive mode the address that
    # delivered is spared its dropped connection, the other is not
    c = smban.Classifier("aggressive", ref_time=REF_TIME)
    dni = b"Nov 17 00:41:%02d h sendmail[%d]: 4AH5f1Aa%06d: [192.0.2.%d] did not issue " \
          b"MAIL/EXPN/VRFY/ETRN during connection to MTA"
    c.classify(ENVELOPE % (1, 11, 11, 5120, 1, 11))
    c.classify(ENVELOPE % (2, 12, 12, 0, 1, 12))
    a, b = c.classify(dni % (3, 13, 13, 11)), c.classify(dni % (4, 14, 14, 12))
    assert (a.failures, a.reason) == (0, "trusted")
    assert (b.failures, b.reason) == (1, "counted")


def test_reasons_of_lines_outside_the_sessions():
    c = smban.Classifier("aggressive", ref_time=REF_TIME)
    # a failure without an address, a pid or a queue id: no session to wait in
    ev = c.classify(b"Nov 17 00:40:01 h sendmail: AUTH failure (LOGIN): authentication "
                    b"failure (-13) SASL(-13): authentication failure")
    assert (ev.name, ev.ip, ev.failures, ev.reason) == ("auth-failure", None, 0, "no-client")
    assert c.stats()["pending"] == 0
    # lines about no remote client
    ev = c.classify(b"Nov 17 00:40:02 h sendmail[3]: 4AH5e1Aa000003: to=<b@example.org>, "
                    b"delay=00:00:01, mailer=esmtp, stat=Sent")
    assert (ev.name, ev.reason) == ("delivery", "info")
    ev = c.classify(b"Nov 17 00:40:03 h sendmail[4]: rejecting connections on daemon MTA: "
                    b"load average: 40")
    assert (ev.name, ev.reason) == ("resource-throttle", "benign")


def test_readme_lists_every_reason_in_order():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("| reason | the line |\n", 1)[1].split("\n\n", 1)[0]
    names = [n for row in table.splitlines()[1:]
             for n in row.split("|")[1].replace("`", "").replace(",", " ").split()]
    assert tuple(names) == smban.REASONS


TLS_FAIL = (b"Nov 17 00:33:33 h sendmail[%d]: STARTTLS=server, error: accept failed=-1, "
            b"reason=no shared cipher, SSL_error=1, errno=0, retry=-1, relay=esa12.example [%s]")
NULL = b"Nov 17 00:33:34 h sendmail[%d]: 4AH5XXPf%06d: %s did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA"
LOST = (b"Nov 17 00:34:02 h sendmail[%d]: 4AH5Y2Pf%06d: lost input channel from %s to MTA "
        b"after rcpt")


def test_tls_grace_spares_a_fallen_back_peer_its_disconnects_only():
    """Session rule 6: after a tls-fallback that shows the peer's own
    address, its disconnects do not count for tls_grace, in aggressive mode;
    an unknown recipient or a ban class still counts (a failed handshake
    costs an attacker nothing); the grace ends after tls_grace; tls_grace=0
    turns it off."""
    ip = b"198.51.100.25"
    client = b"esa12.example [" + ip + b"]"

    def fallback(c, pid):
        assert c.classify(TLS_FAIL % (pid, ip)).name == "tls-failure"
        ev = c.classify(NULL % (pid, pid, client))
        assert (ev.name, ev.reason, ev.failures) == ("tls-fallback", "tls-fallback", 0)

    c = smban.Classifier("aggressive", ref_time=REF_TIME)
    fallback(c, 10)
    ev = c.classify(LOST % (11, 11, client))
    assert (ev.name, ev.ip, ev.reason, ev.failures) == ("lost-input", "198.51.100.25", "tls-grace", 0)
    ev = c.classify(b"Nov 17 00:34:05 h sendmail[12]: 4AH5Y5Pf000012: ruleset=check_rcpt, "
                    b"arg1=<nobody@example.org>, relay=" + client + b", reject=550 5.1.1 "
                    b"<nobody@example.org>... User unknown")
    assert (ev.name, ev.reason, ev.failures) == ("user-unknown", "counted", 1)
    ev = c.classify(b"Nov 17 00:34:06 h sendmail[13]: 4AH5Y6Pf000013: AUTH failure (LOGIN): "
                    b"authentication failure (-13) SASL(-13): authentication failure: "
                    b"checkpass failed, user=admin, relay=" + client)
    assert (ev.name, ev.reason, ev.failures) == ("auth-failure", "counted", 1)
    # an hour and a bit later: no grace left
    ev = c.classify(b"Nov 17 01:40:00 h sendmail[14]: 4AH6e0Pf000014: lost input channel from "
                    + client + b" to MTA after rcpt")
    assert (ev.reason, ev.failures) == ("counted", 1)

    c = smban.Classifier("aggressive", ref_time=REF_TIME, tls_grace=0)
    fallback(c, 10)
    assert c.classify(LOST % (11, 11, client)).failures == 1
    with pytest.raises(ValueError, match="tls_grace"):
        smban.Classifier(tls_grace=-1)


def test_tls_grace_comes_from_the_peer_s_own_address_only():
    """A fallback whose closing line was cut by %.100s (a host name, no
    address) earns no grace, even where its session knows an address from
    an earlier line of the transaction: nothing on the line proves whose
    the fallback was."""
    c = smban.Classifier("aggressive", ref_time=REF_TIME)
    ip = b"198.51.100.26"
    ev = c.classify(b"Nov 17 00:33:32 h sendmail[20]: 4AH5XXPf000020: ruleset=check_mail, "
                    b"arg1=<a@slow.example>, relay=esa13.example [" + ip + b"], reject=451 4.1.8 "
                    b"<a@slow.example>... Domain of sender address a@slow.example does not resolve")
    assert (ev.name, ev.ip) == ("dns-tempfail", "198.51.100.26")
    c.classify(TLS_FAIL % (20, ip))
    ev = c.classify(NULL % (20, 20, b"esa13.example"))
    assert (ev.name, ev.ip) == ("tls-fallback", "198.51.100.26")   # the session's
    ev = c.classify(LOST % (21, 21, b"esa13.example [" + ip + b"]"))
    assert (ev.reason, ev.failures) == ("counted", 1)
