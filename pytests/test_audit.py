"""python3 -m smban audit on a fixture log with known truth (see the header of
fixtures/audit/maillog): every list in both modes, fail2ban's own filters
compared, the JSON shape, rotated and damaged input, and the error paths."""
import gzip
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

import smban
import smban.audit
from conftest import F2B_CONFIG, FIXTURES
from smban.cli import main

LOG = os.path.join(FIXTURES, "audit", "maillog")
IRONPORT = "139.138.46.199"

# The truth of the fixture, per mode.
BANNED = {
    "normal": {"109.172.142.229": {"auth-failure": 6},
               "203.0.113.66": {"relay-denied": 5},
               "203.0.113.99": {"pregreeting": 5},
               "203.0.113.50": {"open-proxy": 5}},
}
BANNED["aggressive"] = dict(BANNED["normal"], **{
    "198.51.100.77": {"null-session": 6},
    "198.51.100.88": {"rate-control": 5}})
SPARED = {
    "normal": {"192.0.2.50": "below-threshold",
               IRONPORT: "tls-fallback",
               "148.163.129.50": "tls-fallback",
               "203.0.113.30": "tls-fallback",
               "209.85.128.41": "trusted",
               "198.51.100.20": "auth-server-error",
               "198.51.100.77": "suspect",
               "198.51.100.88": "suspect",
               "198.51.100.30": "benign"},
}
SPARED["aggressive"] = {ip: r for ip, r in SPARED["normal"].items() if r != "suspect"}
TLS = {  # ip: (host, reasons, failures, fallbacks, delivered_after, clear_text)
    IRONPORT: ("esa12.hc6077-55.iphmx.com", {"no shared cipher": 6}, 6, 6, 1, 1),
    "148.163.129.50": ("mx0a-00123456.pphosted.com", {"unsupported protocol": 3}, 3, 3, 1, 1),
    "203.0.113.30": (None, {"wrong version number": 2}, 2, 2, 0, 0),
}
# Lines per class, counted from the fixture's story (its header), not from
# smban's output: what sendmail logs for each client.
CLASSES = {
    # STARTTLS=server, error: the IronPort 6 x, the Proofpoint 3 x, the prober 2 x
    "tls-failure": 6 + 3 + 2,
    # each of those sessions then ends with "did not issue": a TLS fallback
    "tls-fallback": 6 + 3 + 2,
    # the other "did not issue" lines: the fast guesser's 4 sessions, the
    # slow guesser's 6, the port scanner's 6, the open-proxy scanner's 5
    "null-session": 4 + 6 + 6 + 5,
    # AUTH failure (-13/-20): the fast guesser 6 (4 x -13, 2 x -20), the slow one 6
    "auth-failure": 6 + 6,
    # AUTH failure (-1, generic failure): the user during the outage
    "auth-server-error": 6,
    # check_relay 421 rate limits: the big sender 6 x, the bulk sender 5 x
    "rate-control": 6 + 5,
    # accepted messages: the legitimate MTA 2, the big sender 2, the
    # IronPort 1, the Proofpoint 1; one from= and one to=...stat=Sent each
    "envelope": 2 + 2 + 1 + 1,
    "delivery": 2 + 2 + 1 + 1,
    "open-proxy": 5, "pregreeting": 5, "relay-denied": 5,
    # STARTTLS sessions that worked: the legitimate MTA 2, the big sender 2
    "tls-session": 2 + 2,
    "auth-success": 1,          # the user once the outage is over
    "lost-input": 1,            # the last relay probe
    "timeout": 1,               # the slow link
}


def audit(capsys, *args):
    """Run the command in this process; (exit status, stdout, stderr)."""
    rc = main(["audit", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def audit_json(capsys, *args):
    rc, out, err = audit(capsys, "--json", *args)
    assert rc == 0, err
    return json.loads(out)


def smban_cmd(*args):
    """python3 -m smban in a subprocess, from outside the source tree."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(smban.__file__)))
    return subprocess.run([sys.executable, "-m", "smban", *args], capture_output=True,
                          text=True, env=env, cwd="/", timeout=120)


def needs_fail2ban():
    if not os.path.isfile(os.path.join(F2B_CONFIG, "filter.d", "sendmail-reject.conf")):
        pytest.skip("fail2ban is not installed (make deps installs it)")


def lists(r):
    return ({b["ip"]: b["classes"] for b in r["banned"]},
            {s["ip"]: s["reason"] for s in r["spared"]})


@pytest.mark.parametrize("mode", ["normal", "aggressive"])
def test_every_list_in_both_modes(capsys, mode):
    r = audit_json(capsys, "--mode", mode, LOG)
    banned, spared = lists(r)
    assert banned == BANNED[mode]
    assert spared == SPARED[mode]
    assert r["lines"] == 122 and r["mode"] == mode
    assert r["classes"] == CLASSES
    assert r["clients"] == 14        # the 14th, 198.51.100.10, only delivered mail
    got_tls = {t["ip"]: (t["host"], t["reasons"], t["failures"], t["fallbacks"],
                         t["delivered_after"], t["clear_text"]) for t in r["tls"]}
    assert got_tls == TLS
    assert not any(t["banned"] for t in r["tls"])
    assert [t["ip"] for t in r["tls"]] == [IRONPORT, "148.163.129.50", "203.0.113.30"]


def test_banned_times_and_counts(capsys):
    r = audit_json(capsys, LOG)
    guesser = next(b for b in r["banned"] if b["ip"] == "109.172.142.229")
    assert guesser["failures"] == 6
    assert guesser["first"][4:] == "-11-17T01:04:10+00:00"
    assert guesser["last"][4:] == "-11-17T01:10:10+00:00"
    # the 5th failure within 10 minutes: the second guess of the third session
    assert guesser["banned_at"][4:] == "-11-17T01:08:12+00:00"
    # the most failures first
    assert r["banned"][0]["ip"] == "109.172.142.229"


def test_spared_details(capsys):
    r = audit_json(capsys, "--mode", "aggressive", LOG)
    sp = {s["ip"]: s for s in r["spared"]}
    slow = sp["192.0.2.50"]
    assert slow["failures"] == 6
    # its "did not issue" lines close sessions that already counted
    assert slow["reasons"] == {"below-threshold": 6, "once-per-session": 6}
    assert sp[IRONPORT]["reasons"] == {"tls-fallback": 6, "tls-failure": 6}
    assert sp[IRONPORT]["delivered"] == 1 and sp[IRONPORT]["failures"] == 0
    assert sp["209.85.128.41"]["reasons"] == {"trusted": 6}
    assert sp["209.85.128.41"]["delivered"] == 2
    assert sp["198.51.100.20"]["authenticated"] == 1
    assert sp["198.51.100.20"]["classes"] == {"auth-server-error": 6}


def test_maxretry_and_findtime(capsys):
    r = audit_json(capsys, "--maxretry", "6", LOG)
    banned, spared = lists(r)
    assert set(banned) == {"109.172.142.229"}
    assert spared["203.0.113.66"] == "below-threshold"
    r = audit_json(capsys, "--findtime", "1200", LOG)
    banned, _ = lists(r)
    # 6 guesses 4 minutes apart: 5 of them within 16 minutes
    assert banned["192.0.2.50"] == {"auth-failure": 6}


def test_compare_sendmail_reject_extra_bans_the_ironport(capsys):
    needs_fail2ban()
    spec = "sendmail-reject[mode=extra]"
    for mode in ("normal", "aggressive"):
        r = audit_json(capsys, "--mode", mode, "--compare", spec, LOG)
        c = r["compare"][spec]
        assert {b["ip"] for b in c["banned"]} == {
            IRONPORT, "209.85.128.41", "198.51.100.77", "198.51.100.88",
            "203.0.113.66", "203.0.113.99", "203.0.113.50"}
        theirs = {x["ip"]: x for x in c["only_theirs"]}
        iron = theirs[IRONPORT]
        assert iron["likely_false_positive"] is True
        assert iron["failures"] == 6
        assert "delivered 1 accepted message" in iron["why"]
        assert "STARTTLS failed 6 times" in iron["why"]
        assert iron["smban"]["reason"] == "tls-fallback"
        assert theirs["209.85.128.41"]["likely_false_positive"] is True
        if mode == "normal":
            assert set(theirs) == {IRONPORT, "209.85.128.41", "198.51.100.77", "198.51.100.88"}
            # a scanner that delivered nothing and whose TLS never failed: not flagged
            assert theirs["198.51.100.77"]["likely_false_positive"] is False
        else:
            assert set(theirs) == {IRONPORT, "209.85.128.41"}
        # the flagged ones come first
        assert [x["likely_false_positive"] for x in c["only_theirs"]][:2] == [True, True]
        assert [x["ip"] for x in c["only_ours"]] == ["109.172.142.229"]
        assert r["compare_seconds"][spec] >= 0


def test_compare_several_filters_and_a_path(capsys, tmp_path):
    needs_fail2ban()
    # a filter file given by path, not named .conf
    mine = tmp_path / "my-auth-filter"
    shutil.copy(os.path.join(F2B_CONFIG, "filter.d", "sendmail-auth.conf"), mine)
    r = audit_json(capsys, "--compare", "sendmail-auth", "--compare", str(mine), LOG)
    assert list(r["compare"]) == ["sendmail-auth", str(mine)]
    for c in r["compare"].values():
        assert [b["ip"] for b in c["banned"]] == ["109.172.142.229"]
        assert c["only_theirs"] == []
        assert {x["ip"] for x in c["only_ours"]} == {"203.0.113.66", "203.0.113.99",
                                                     "203.0.113.50"}


def test_json_schema(capsys):
    needs_fail2ban()
    r = audit_json(capsys, "--compare", "sendmail-reject[mode=extra]", LOG)
    for key, typ in (("lines", int), ("seconds", float), ("classes", dict),
                     ("banned", list), ("spared", list), ("tls", list), ("compare", dict)):
        assert isinstance(r[key], typ), key
    assert all(isinstance(v, int) for v in r["classes"].values())
    for b in r["banned"]:
        assert {"ip", "failures", "classes", "first", "last"} <= set(b)
        assert isinstance(b["failures"], int) and b["first"] <= b["last"]
    for s in r["spared"]:
        assert {"ip", "reason"} <= set(s) and s["reason"] in dict(smban.audit.REASONS)
    for t in r["tls"]:
        assert {"ip", "host", "reasons", "failures", "delivered_after"} <= set(t)
    for spec, c in r["compare"].items():
        assert set(c) == {"banned", "only_theirs", "only_ours"}
        for lst in c.values():
            assert all(isinstance(x, dict) and "ip" in x for x in lst)


def test_rotated_gzip_and_plain_in_order(capsys, tmp_path):
    """maillog.1.gz then maillog gives the audit of the whole log: sessions
    and counts go on across the files."""
    with open(LOG, "rb") as f:
        lines = f.readlines()
    cut = 70          # inside the sequences of several clients
    old = tmp_path / "maillog.1.gz"
    old.write_bytes(gzip.compress(b"".join(lines[:cut])))
    new = tmp_path / "maillog"
    new.write_bytes(b"".join(lines[cut:]))
    whole = audit_json(capsys, LOG)
    split = audit_json(capsys, str(old), str(new))
    for key in ("lines", "classes", "banned", "spared", "tls"):
        assert split[key] == whole[key], key
    assert split["warnings"] == []
    # newest first, as a shell glob gives them: the report says so
    r = audit_json(capsys, str(new), str(old))
    assert len(r["warnings"]) == 1
    assert "maillog.1.gz starts" in r["warnings"][0] and "oldest first" in r["warnings"][0]
    rc, out, _ = audit(capsys, str(new), str(old))
    assert rc == 0 and out.splitlines()[2].startswith("warning: ") and "oldest first" in out


def test_undecodable_and_skipped_lines_are_counted(capsys, tmp_path):
    needs_fail2ban()
    with open(LOG, "rb") as f:
        data = f.read()
    bad = (b"Nov 17 01:40:00 mx1 sm-mta[1]: 4AH6e0Aa000001: AUTH failure (LOGIN): "
           b"authentication failure (-13) SASL(-13): x, user=\xff\xfe, relay=[192.0.2.9]\n"
           b"Nov 17 01:40:01 mx1 sm-mta[2]: \x00 nul\n"
           b"Nov 17 01:40:02 mx1 sm-mta[3]: " + b"x" * 70000 + b"\n"
           b"\xc3\x28 not a log line at all\n")
    p = tmp_path / "maillog"
    p.write_bytes(data + bad)
    r = audit_json(capsys, "--compare", "sendmail-auth", str(p))
    assert r["lines"] == 126
    assert r["not_utf8"] == 2
    assert r["skipped"] == {"long": 1, "nul": 1}
    # the not-UTF-8 line was classified all the same
    assert r["classes"]["auth-failure"] == CLASSES["auth-failure"] + 1
    assert lists(r)[0] == BANNED["normal"]
    assert [b["ip"] for b in r["compare"]["sendmail-auth"]["banned"]] == ["109.172.142.229"]
    rc, out, _ = audit(capsys, str(p))
    assert rc == 0 and "2 not UTF-8" in out and "1 skipped" not in out and "2 skipped" in out


def test_human_report(capsys):
    needs_fail2ban()
    rc, out, err = audit(capsys, "--compare", "sendmail-reject[mode=extra]", LOG)
    assert rc == 0 and err == ""
    assert out.startswith("smban audit: 122 lines in 1 file, mode normal")
    sections = out.split("\n\n")
    banned = next(s for s in sections if s.startswith("Would be banned (4)"))
    rows = banned.splitlines()[1:]
    # aligned: every row's failures end where the header's "failures" ends
    end = rows[0].index("failures") + len("failures")
    assert all(r[end - 1].isdigit() and r[end] == " " for r in rows[1:])
    assert len(rows) == 5 and rows[1].split()[0] == "109.172.142.229"
    assert "auth-failure x6" in rows[1]
    tls = next(s for s in sections if s.startswith("STARTTLS failures (3 peers)"))
    iron = next(r for r in tls.splitlines() if r.split()[0] == IRONPORT)
    assert "no shared cipher x6" in iron and "1 (1 in clear text)" in iron
    theirs = next(s for s in sections if "sendmail-reject[mode=extra] bans, smban does not (4)" in s)
    iron = next(r for r in theirs.splitlines() if r.split()[0] == IRONPORT)
    assert "spared: tls-fallback" in iron and "LIKELY FALSE POSITIVE" in iron
    scanner = next(r for r in theirs.splitlines() if r.split()[0] == "198.51.100.77")
    assert "FALSE POSITIVE" not in scanner


def test_rows_limit(capsys):
    rc, out, _ = audit(capsys, "--rows", "2", LOG)
    assert rc == 0
    banned = out.split("Would be banned (4)\n")[1].split("\n\n")[0].splitlines()
    assert len(banned) == 4 and "... and 2 more" in banned[3]


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(smban.audit, "PROGRESS_MIN", 0)
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    rc = main(["audit", "--json", LOG])
    out = capsys.readouterr().out
    assert rc == 0 and json.loads(out)["lines"] == 122     # the report is untouched
    shown = tty.getvalue()
    assert "100%" in shown and shown.endswith("\r\033[K")  # reached the end, then cleared
    p = smban.audit.Progress(1 << 40, Tty())
    assert p.on
    p = smban.audit.Progress(1 << 40, io.StringIO())       # not a terminal
    p.show(5, "x", force=True)
    p.clear()
    assert not p.on and p.stream.getvalue() == ""
    monkeypatch.setattr(smban.audit, "PROGRESS_MIN", 1 << 20)
    assert not smban.audit.Progress(100, Tty()).on         # small input


def audit_unreadable_log():
    """smban audit on a log its user may not read.  Root reads any file,
    so under root the command runs as nobody, on a copy of the package in
    a directory nobody can read."""
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="smban-audit-")
    try:
        os.chmod(top, 0o755)
        pkg = os.path.join(top, "pkg")
        shutil.copytree(os.path.dirname(os.path.abspath(smban.__file__)),
                        os.path.join(pkg, "smban"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        log = os.path.join(top, "maillog")
        with open(log, "w") as f:
            f.write("x\n")
        os.chmod(log, 0)
        for d, dirs, files in os.walk(pkg):
            os.chmod(d, 0o755)
            for name in files:
                os.chmod(os.path.join(d, name), 0o644)

        def drop():
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
        env = dict(os.environ, PYTHONPATH=pkg)
        return subprocess.run([sys.executable, "-m", "smban", "audit", log],
                              capture_output=True, text=True, env=env, cwd="/",
                              timeout=120, preexec_fn=drop)
    finally:
        shutil.rmtree(top)


def test_errors_are_clear_and_print_nothing_else(tmp_path):
    missing = tmp_path / "nope"
    r = smban_cmd("audit", LOG, str(missing))
    assert r.returncode == 2 and r.stdout == ""
    assert "nope" in r.stderr and "No such file" in r.stderr
    r = smban_cmd("audit", str(tmp_path))
    assert r.returncode == 2 and r.stdout == "" and "directory" in r.stderr
    r = audit_unreadable_log()
    assert r.returncode == 2 and r.stdout == "" and "Permission denied" in r.stderr
    assert "maillog" in r.stderr
    # a gzip log cut short: found while reading, after other files were read
    whole = gzip.compress(open(LOG, "rb").read())
    cut = tmp_path / "maillog.2.gz"
    cut.write_bytes(whole[:len(whole) // 2])
    r = smban_cmd("audit", LOG, str(cut))
    assert r.returncode == 2 and r.stdout == "" and "maillog.2.gz" in r.stderr
    r = smban_cmd("audit", "--maxretry", "0", LOG)
    assert r.returncode == 2 and r.stdout == "" and "--maxretry" in r.stderr
    r = smban_cmd("audit", "--findtime", "0", LOG)
    assert r.returncode == 2 and r.stdout == "" and "--findtime" in r.stderr
    r = smban_cmd("audit", "--rows", "-1", LOG)
    assert r.returncode == 2 and r.stdout == "" and "--rows" in r.stderr
    r = smban_cmd("audit", "--tls-grace", "-1", LOG)
    assert r.returncode == 2 and r.stdout == "" and "--tls-grace" in r.stderr


def test_a_filter_that_cannot_be_loaded_is_an_error(tmp_path):
    needs_fail2ban()
    notconf = tmp_path / "notafilter.conf"
    notconf.write_text("just some text\n")
    for spec, why in (("no-such-filter", "no filter.d/no-such-filter.conf"),
                      (str(tmp_path / "missing.conf"), "no such filter file"),
                      (str(notconf), "notafilter.conf: "),
                      ("sendmail-reject[mode=extra", "not a filter name")):
        r = smban_cmd("audit", "--compare", "sendmail-auth", "--compare", spec, LOG)
        assert r.returncode == 2, spec
        assert r.stdout == "", spec
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("smban: --compare: "), r.stderr
        assert why in lines[0], r.stderr


def test_delivery_after_a_tls_failure_over_tls_is_not_clear_text(capsys, tmp_path):
    """A peer whose handshake failed once and which later delivered over TLS:
    delivered after, but not in clear text; its fallback and delivery from
    another pid than the failed session."""
    peer = "mx.partner.example [192.0.2.77]"
    p = tmp_path / "maillog"
    p.write_text("\n".join([
        "Nov 17 02:00:00 mx1 sm-mta[500]: STARTTLS=server, error: accept failed=-1, "
        "reason=sslv3 alert handshake failure, SSL_error=1, errno=0, retry=-1, relay=" + peer,
        "Nov 17 02:00:00 mx1 sm-mta[500]: 4AH6a0Aa000500: %s did not issue "
        "MAIL/EXPN/VRFY/ETRN during connection to MTA" % peer,
        "Nov 17 02:01:00 mx1 sm-mta[510]: STARTTLS=server, relay=%s, version=TLSv1.2, "
        "verify=NO, cipher=ECDHE-RSA-AES256-GCM-SHA384, bits=256/256" % peer,
        "Nov 17 02:01:01 mx1 sm-mta[510]: 4AH6b1Aa000510: from=<a@partner.example>, size=10, "
        "class=0, nrcpts=1, msgid=<1@partner.example>, proto=ESMTPS, daemon=MTA, relay=" + peer,
        "Nov 17 02:02:00 mx1 sm-mta[520]: 4AH6c0Aa000520: from=<b@partner.example>, size=10, "
        "class=0, nrcpts=1, msgid=<2@partner.example>, proto=ESMTP, daemon=MTA, relay=" + peer,
        "Nov 17 02:03:00 mx1 sm-mta[530]: 4AH6d0Aa000530: from=<c@partner.example>, size=10, "
        "class=0, nrcpts=0, msgid=<3@partner.example>, proto=ESMTP, daemon=MTA, relay=" + peer,
    ]) + "\n")
    r = audit_json(capsys, str(p))
    (t,) = r["tls"]
    assert t["ip"] == "192.0.2.77" and t["host"] == "mx.partner.example"
    assert t["reasons"] == {"sslv3 alert handshake failure": 1}
    # nrcpts=0 accepted nothing
    assert (t["failures"], t["fallbacks"], t["delivered_after"], t["clear_text"]) == (1, 1, 2, 1)
    assert r["banned"] == [] and [s["ip"] for s in r["spared"]] == ["192.0.2.77"]


STORY = os.path.join(FIXTURES, "story.log")


def test_the_story_in_aggressive_mode_bans_only_the_brute_forcer(capsys):
    """The story's eight lines with one failure enough to ban: the IronPort
    falls back from a failed STARTTLS, then a network hiccup cuts it off
    after RCPT (a timeout, "lost input channel"); only the password guesser
    is banned.  Without the grace (--tls-grace 0), its lost input would ban
    it: the control."""
    r = audit_json(capsys, "--mode", "aggressive", "--maxretry", "1", STORY)
    banned, spared = lists(r)
    assert banned == {"109.172.142.229": {"auth-failure": 2}}
    assert IRONPORT in spared
    sp = next(x for x in r["spared"] if x["ip"] == IRONPORT)
    # (the timeout names the host only: it is nobody's)
    assert sp["reasons"] == {"tls-fallback": 1, "tls-grace": 1, "tls-failure": 1}
    tls = {t["ip"]: t for t in r["tls"]}
    assert tls[IRONPORT]["graced"] == 1 and not tls[IRONPORT]["banned"]
    assert r["tls_grace"] == smban.DEFAULTS["tls_grace"]

    r = audit_json(capsys, "--mode", "aggressive", "--maxretry", "1", "--tls-grace", "0", STORY)
    banned, _ = lists(r)
    assert banned == {"109.172.142.229": {"auth-failure": 2}, IRONPORT: {"lost-input": 1}}
    assert {t["ip"]: t["graced"] for t in r["tls"]} == {IRONPORT: 0}

    rc, out, _ = audit(capsys, "--mode", "aggressive", "--maxretry", "1", STORY)
    assert rc == 0 and "graced" in out and "within 3600 s of a" in out


def test_server_problems_are_reported_and_never_count(capsys, tmp_path):
    """A broken access map makes sendmail answer every client 451 4.3.0, a
    failing DNSBL lookup 451 Temporary lookup failure: the server's fault,
    listed as such, and nobody banned for it in any mode."""
    lines = []
    for i in range(6):
        ip = "198.51.100.%d" % (120 + i)
        lines.append("Nov 17 01:0%d:00 mx sm-mta[%d]: ruleset=check_relay, arg1=[%s], arg2=%s, "
                     "relay=[%s], reject=451 4.3.0 Temporary system failure. Please try again "
                     "later." % (i, 5000 + i, ip, ip, ip))
        lines.append("Nov 17 01:0%d:30 mx sm-mta[%d]: ruleset=check_relay, arg1=[%s], arg2=%s, "
                     "relay=[%s], reject=451 4.7.1 Temporary lookup failure of %s at "
                     "zen.spamhaus.org" % (i, 6000 + i, ip, ip, ip, ip))
    log = tmp_path / "maillog"
    log.write_text("\n".join(lines) + "\n")
    r = audit_json(capsys, "--mode", "aggressive", "--maxretry", "1", str(log))
    assert r["banned"] == []
    assert r["classes"] == {"server-tempfail": 12}
    assert r["server_problems"] == [
        {"reject": "451 4.3.0 Temporary system failure. Please try again later.", "lines": 6}] + [
        {"reject": "451 4.7.1 Temporary lookup failure of 198.51.100.%d at zen.spamhaus.org"
                   % (120 + i), "lines": 1} for i in range(6)]
    assert {s["reason"] for s in r["spared"]} == {"server-tempfail"}
    rc, out, _ = audit(capsys, str(log))
    assert rc == 0 and "Server problems (12 lines)" in out and "makemap" in out
