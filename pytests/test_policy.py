"""The operator's policy per class (ban=, suspect=, ignore=): in the C
classifier, in the regex twin exported for it, in smban-engine on fail2ban's
own Filter, and in smban audit."""
import json
import os

import pytest

import smban
import smban.engine
from conftest import REF_TIME, all_samples, f2b_failures, load_f2b_filter
from test_fixtures import norm_ip
from smban.cli import main
from smban.filter import engine_only, export_filter, failregex_by_rule, twin_rules

RELAY = (b"Nov 17 00:44:00 mx1 sm-mta[400040]: 4AH5i0Aa400040: ruleset=check_rcpt, "
         b"arg1=<victim@example.org>, relay=dsl-60.example.net [192.0.2.60], reject=550 5.7.1 "
         b"<victim@example.org>... Relaying denied. Proper authentication required.")
DNSBL = (b"Nov 17 00:50:16 mx1 sm-mta[400076]: ruleset=check_relay, arg1=[198.51.100.101], "
         b"arg2=198.51.100.101, relay=[198.51.100.101], reject=550 5.7.1 Rejected: "
         b"198.51.100.101 listed at zen.spamhaus.org")
POLICY = {"ban": "dnsbl-reject, access-reject", "suspect": "relay-denied",
          "ignore": "vrfy-expn-rejected pipelining"}


def test_classes_move_between_kinds():
    c = smban.Classifier("normal", ref_time=REF_TIME, ban="dnsbl-reject", ignore=["relay-denied"])
    ev = c.classify(DNSBL)
    assert (ev.name, ev.kind, ev.failures, ev.reason) == ("dnsbl-reject", "ban", 1, "counted")
    ev = c.classify(RELAY)
    assert (ev.name, ev.kind, ev.failures, ev.reason) == ("relay-denied", "benign", 0, "ignored")
    c = smban.Classifier("aggressive", ref_time=REF_TIME, suspect="relay-denied")
    ev = c.classify(RELAY)
    assert (ev.kind, ev.failures, ev.reason) == ("suspect", 1, "counted")
    c = smban.Classifier("normal", ref_time=REF_TIME, suspect="relay-denied")
    ev = c.classify(RELAY)
    assert (ev.kind, ev.failures, ev.reason) == ("suspect", 0, "suspect-normal-mode")
    # the default: unchanged
    ev = smban.Classifier("normal", ref_time=REF_TIME).classify(RELAY)
    assert (ev.kind, ev.failures) == ("ban", 1)


@pytest.mark.parametrize("kw, message", [
    (dict(ban="relay-denid"), "ban: 'relay-denid' is not a class"),
    (dict(ban="tls-failure"), "ban: 'tls-failure' is benign by nature"),
    (dict(suspect="tls-fallback"), "suspect: 'tls-fallback' is benign by nature"),
    (dict(ban="server-tempfail"), "'server-tempfail' is benign by nature"),
    (dict(ignore="envelope"), "ignore: 'envelope' is info by nature"),
    (dict(ban="relay-denied", ignore="relay-denied"), "'relay-denied' is named twice"),
])
def test_a_wrong_policy_is_a_clear_error(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        smban.Classifier(**kw)


def test_a_pending_failure_keeps_the_kind_the_policy_gives_it():
    """An old AUTH failure (no relay=) waits for its address; moved to
    suspect, it resolves as a suspect: not counted in normal mode."""
    lines = [b"Nov 17 00:40:01 h sendmail[29205]: 32E5lOxs029205: AUTH failure (LOGIN): "
             b"authentication failure (-13) SASL(-13): authentication failure: checkpass failed",
             b"Nov 17 00:40:02 h sendmail[29205]: 32E5lOxs029205: [46.148.40.163] did not issue "
             b"MAIL/EXPN/VRFY/ETRN during connection to MTA"]
    for kw, want in ((dict(), 1), (dict(suspect="auth-failure"), 0),
                     (dict(ignore="auth-failure"), 0)):
        c = smban.Classifier("normal", ref_time=REF_TIME, **kw)
        evs = [c.classify(x) for x in lines]
        assert sum(e.failures for e in evs) == want, kw
    # aggressive mode, an address that delivered mail an hour before: a
    # suspect waiting for it is spared when it resolves, a ban is not
    delivered = (b"Nov 17 00:00:01 h sendmail[29100]: 32E4lOxs029100: from=<a@b.example>, "
                 b"size=100, class=0, nrcpts=1, msgid=<1@b.example>, proto=ESMTP, daemon=MTA, "
                 b"relay=[46.148.40.163]")
    for kw, want, reason in ((dict(), 1, "resolved"), (dict(suspect="auth-failure"), 0, "trusted")):
        c = smban.Classifier("aggressive", ref_time=REF_TIME, **kw)
        assert c.classify(delivered).delivered
        evs = [c.classify(x) for x in lines]
        assert evs[0].reason == "pending" and evs[1].reason == reason, kw
        assert sum(e.failures for e in evs) == want, kw


def test_the_twin_of_a_policy():
    """Ban classes moved away leave the twin; classes moved to ban stay the
    engine's alone, and the exported filter says so."""
    names = [n for n, _ in twin_rules(POLICY)]
    assert "relay-denied" not in names and "vrfy-expn-rejected" not in names
    assert "dnsbl-reject" not in names and "auth-failure" in names
    assert engine_only(POLICY) == ["dnsbl-reject", "access-reject"]
    text = export_filter(POLICY)
    assert 'Exported for the policy ban="dnsbl-reject, access-reject"' in text
    assert "banned by smban-engine only: dnsbl-reject, access-reject" in text
    assert export_filter({}) == export_filter()
    by_rule = failregex_by_rule(POLICY)
    assert [n for n, i in by_rule if i is not None] == names
    with pytest.raises(ValueError, match="not a class"):
        twin_rules({"ignore": "relay-denid"})


@pytest.fixture(scope="module")
def policy_twin(f2b_confdir, tmp_path_factory):
    d = tmp_path_factory.mktemp("policy")
    os.mkdir(d / "filter.d")
    for name in ("common.conf",):
        src = os.path.join(f2b_confdir, "filter.d", name)
        (d / "filter.d" / name).write_bytes(open(src, "rb").read())
    (d / "filter.d" / "smban.conf").write_text(export_filter(POLICY))
    return str(d)


def test_two_engines_agree_under_a_policy(policy_twin):
    """Every fixture line alone, C engine (normal mode, the policy) against
    the twin exported for that policy: the same failures for the same
    address, except the classes the policy moves to ban (the engine's
    alone)."""
    twin = load_f2b_filter(policy_twin, "smban")
    only = set(engine_only(POLICY))
    checked = counted = 0
    bad = []
    for s in all_samples():
        if s.spec and s.spec.get("twin") is False:
            continue
        ev = smban.Classifier("normal", ref_time=REF_TIME, **POLICY).classify(s.line)
        if ev is not None and ev.name in only:
            continue
        c_ip = norm_ip(ev.ip) if ev is not None and ev.failures and ev.ip else None
        t_ips = [norm_ip(ip) for ip, _ in f2b_failures(twin, s.line)]
        if (c_ip is None and t_ips) or (c_ip is not None and t_ips != [c_ip]):
            bad.append("%s: C %s, twin %s" % (s.id, c_ip, t_ips))
        checked += 1
        counted += c_ip is not None
    assert not bad, "\n".join(bad)
    assert checked > 300 and counted > 50


def test_the_engine_applies_the_policy_with_either_twin(f2b_confdir, policy_twin):
    """smban-engine attaches to the stock twin and to the twin exported for
    its policy (and reports each failure with that filter's failregex
    index); not to the twin of another policy."""
    for confdir in (f2b_confdir, policy_twin):
        flt = load_f2b_filter(confdir, "smban")
        flt.checkAllRegex = False
        e = smban.engine.Engine(flt, "normal", **POLICY)
        assert e.attach() is None, confdir
        got = [(str(fid), fail["smban"]) for _, fid, _, fail in flt.processLine(
            DNSBL.decode().replace("Nov 17 00:50:16", _now()))]
        assert got == [("198.51.100.101", "dnsbl-reject")]
        assert flt.processLine(RELAY.decode().replace("Nov 17 00:44:00", _now())) == []
        e.detach()
    flt = load_f2b_filter(policy_twin, "smban")
    e = smban.engine.Engine(flt, "normal", ignore="relay-denied")
    why = e.attach()
    assert why is not None and "not smban's unmodified regex twin" in why


def _now():
    import time
    return time.strftime("%b %d %H:%M:%S")


def test_the_action_refuses_a_wrong_class_at_start():
    from test_engine import load_action

    class Jail:
        name = "smban"
        filter = None
    mod = load_action()
    with pytest.raises(ValueError, match="'relay-denid' is not a class"):
        mod.Action(Jail(), "smban-engine", ignore="relay-denid")


def test_audit_previews_a_policy_against_the_default(capsys):
    log = os.path.join(os.path.dirname(__file__), "fixtures", "audit", "maillog")
    rc = main(["audit", "--json", "--ban", "rate-control", "--ignore", "auth-failure", log])
    out, err = capsys.readouterr()
    assert rc == 0, err
    r = json.loads(out)
    assert r["policy"] == {"ban": "rate-control", "ignore": "auth-failure"}
    d = r["policy_difference"]
    assert [x["ip"] for x in d["banned_only_with_policy"]] == ["209.85.128.41", "198.51.100.88"]
    assert [x["ip"] for x in d["banned_only_without"]] == ["109.172.142.229"]
    spared = {s["ip"]: s["reason"] for s in r["spared"]}
    assert spared["109.172.142.229"] == "ignored"
    rc = main(["audit", "--ban", "rate-control", "--ignore", "auth-failure", log])
    out, _ = capsys.readouterr()
    assert "The policy ban=rate-control, ignore=auth-failure against the default one" in out
    assert "bans 2 more, 1 fewer" in out
    # no policy, no second pass
    rc = main(["audit", "--json", log])
    r = json.loads(capsys.readouterr()[0])
    assert r["policy"] == {} and "policy_difference" not in r
    rc = main(["audit", "--ban", "tls-failure", log])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "'tls-failure' is benign by nature" in err
