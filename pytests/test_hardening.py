"""Hardening: bounded resources, hostile input that is not a sendmail line,
and the inputs the fuzzers found (ext/fuzz/regress), run through the
extension as fail2ban runs it (under `make asan`: sanitized).

The fuzzers themselves run with `make fuzz`; the flood and worst-line
figures of the README come from bench/flood.py and `make worst-line`.
"""
import json
import os
import subprocess
import sys
import time

import pytest

import smban
from conftest import REF_TIME, ROOT

SANITIZED = bool(os.environ.get("SMBAN_SANITIZED"))
REGRESS = os.path.join(ROOT, "ext", "fuzz", "regress")
FRAME = b"Nov 17 00:33:33 mx sm-mta[4242]: "
AUTH = FRAME + (b"4AH5XXPf004242: AUTH failure (LOGIN): authentication failure (-13) "
                b"SASL(-13): authentication failure: checkpass failed, user=a, "
                b"relay=[198.51.100.1]")


def run_py(*args, **kw):
    """python3 (fail2ban's, with this smban on its path) in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), ROOT) if p)
    return subprocess.run([sys.executable, *args], capture_output=True, env=env,
                          timeout=300, **kw)


# ---- what the fuzzers found ---------------------------------------------

def regress_inputs():
    out = []
    for harness in ("frame", "line", "session"):
        d = os.path.join(REGRESS, harness)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
            out.append(pytest.param(os.path.join(d, name), id="%s/%s" % (harness, name)))
    return out


@pytest.mark.parametrize("path", regress_inputs())
def test_fuzz_regressions_classify_alike_on_both_paths(path):
    """Every line of every input the fuzzers kept: the hand-written parsers
    and the rule table's patterns give the same events, line by line and as
    one buffer."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for mode in ("normal", "aggressive"):
        fast = smban.Classifier(mode, ref_time=REF_TIME, max_sessions=3, session_idle=60)
        slow = smban.Classifier(mode, ref_time=REF_TIME, max_sessions=3, session_idle=60,
                                regex_only=True)
        for line in lines:
            a, b = fast.classify(line), slow.classify(line)
            assert (a and tuple(a)) == (b and tuple(b)), line
        a = smban.Classifier(mode, ref_time=REF_TIME).classify_buffer(data, events=True)
        b = smban.Classifier(mode, ref_time=REF_TIME, regex_only=True).classify_buffer(
            data, events=True)
        assert [(n, tuple(e)) for n, e in a["events"]] == [(n, tuple(e)) for n, e in b["events"]]


def test_fuzz_findings_behave():
    """What each core fix changed, as a user sees it."""
    c = smban.Classifier(ref_time=REF_TIME)
    # an empty RFC 5424 APP-NAME is no sendmail tag
    assert c.classify(b"<22>1 2024-11-17T05:33:34Z mx  4242 - - [198.51.100.1]: possible "
                      b"SMTP attack: command=AUTH, count=5") is None
    assert c.stats()["unframed"] == 1
    # a year past 2147 has a time (no overflow), and the line still classifies
    ev = c.classify(b"2924-11-17T05:33:34 mx sm-mta[4242]: [198.51.100.1]: possible SMTP "
                    b"attack: command=AUTH, count=5")
    assert ev.name == "smtp-attack" and ev.time > 0
    # a SASL code too long for a long: no code, still an AUTH failure class
    ev = c.classify(FRAME + b"AUTH failure (LOGIN): x (-" + b"3" * 40 + b") y, relay=[198.51.100.2]")
    assert ev.name == "auth-protocol" and ev.code is None
    # an envelope's size and recipients are those right after the complete
    # from=: text after the sender that is not sendmail's format is no
    # envelope, and the sender's own text is never read as them
    line = (FRAME + b"from=<a>, size=0, class=0, nrcpts=0: x, size=12, class=0, nrcpts=3, "
            b"proto=SMTP, relay=[198.51.100.3]")
    assert smban.Classifier(ref_time=REF_TIME).classify(line) is None
    line = (FRAME + b'from=<"a, size=12, class=0, nrcpts=3, x"@b>, size=0, class=0, nrcpts=0, '
            b"proto=SMTP, relay=[198.51.100.3]")
    ev = smban.Classifier(ref_time=REF_TIME).classify(line)
    assert ev.name == "envelope" and ev.detail == "0" and ev.ip == "198.51.100.3"


def test_fuzz_dictionary_holds_every_rule_literal():
    with open(os.path.join(ROOT, "ext", "fuzz", "sendmail.dict"), encoding="utf-8") as f:
        entries = {line.strip()[1:-1].replace('\\"', '"') for line in f
                   if line.strip().startswith('"')}
    missing = sorted({r["literal"] for r in smban.rules()} - entries)
    assert not missing, "add to ext/fuzz/sendmail.dict: %r" % missing


# ---- the session table under a flood --------------------------------------

def test_session_flood_stays_within_the_table_bound():
    """300,000 sessions, each with its own pid, within one minute, on a
    table of 20,000: the table never holds more, every session beyond it is
    an eviction, peak memory grows by the table's bound (plus the flood
    generator's 10,000-line chunks), and the story's MTA whose session was
    not evicted is still spared by the TLS-fallback rule."""
    r = run_py(os.path.join(ROOT, "bench", "flood.py"), "--pids", "300000",
               "--max-sessions", "20000", "--json")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = json.loads(r.stdout)
    assert res["lines"] == 300000 + 300
    assert res["sessions"] <= 20000
    assert res["sessions_evicted"] >= 300000 - 20000
    assert res["story"]["kept"]["name"] == "tls-fallback"
    assert res["story"]["quiet"]["name"] == "tls-fallback"
    # evicted: the TLS failure is forgotten, yet "did not issue" alone never
    # counts in normal mode
    assert res["story"]["evicted"] == {"name": "null-session", "kind": "suspect", "failures": 0}
    if not SANITIZED:     # ASan's shadow memory and quarantine are not the table's
        assert res["peak_rss_growth_bytes"] < res["table_bound_bytes"] + (8 << 20), res


# ---- lines that are not sendmail's ----------------------------------------

def test_long_nul_and_truncated_lines_are_counted_not_classified():
    big = FRAME + b"AUTH failure (LOGIN): x (-13) " + b"A" * (1 << 20) + b", relay=[198.51.100.9]"
    cut = AUTH[:len(AUTH) // 2]
    data = b"\n".join([big, AUTH.replace(b"user=a", b"user=\0a"), cut, AUTH]) + b"\n" + cut
    c = smban.Classifier(ref_time=REF_TIME)
    res = c.classify_buffer(data, events=True)
    st = c.stats()
    assert res["lines"] == 5
    assert st["skipped_long"] == 1 and st["skipped_nul"] == 1
    # the whole AUTH line counts once; its truncated copies are no failure
    assert res["failures"] == 1
    assert [(n, e.name) for n, e in res["events"]] == [(4, "auth-failure")]
    # the same through classify(), as fail2ban calls it
    c = smban.Classifier(ref_time=REF_TIME)
    assert c.classify(big) is None and c.classify(big.decode()) is None
    assert c.classify(b"x\0" + AUTH) is None
    assert c.stats()["skipped_long"] == 2 and c.stats()["skipped_nul"] == 1


def test_one_mib_lines_allocate_nothing_per_line():
    """200 lines of 1 MiB each through classify_buffer: memory does not
    grow with them (the core allocates nothing per line)."""
    code = r"""
import resource, sys, smban
line = b"Nov 17 00:33:33 mx sm-mta[1]: AUTH failure (LOGIN): x (-13) " + b"\x80" * (1 << 20)
c = smban.Classifier()
c.classify_buffer(line)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for i in range(200):
    c.classify_buffer(line)
    c.classify(line)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, c.stats()["skipped_long"])
"""
    r = run_py("-c", code)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    grown_kib, skipped = (int(x) for x in r.stdout.split())
    assert skipped == 401
    if not SANITIZED:
        assert grown_kib < 4096


def fill(start, unit):
    """start, then unit repeated up to the longest line classified."""
    return FRAME + start + unit * ((smban.MAX_LINE - len(FRAME) - len(start)) // len(unit))


PATHOLOGICAL = [
    fill(b"ruleset=check_rcpt, arg1=<a>, relay=", b"h [1.2.3.4], reject=550 5.7.1 "),
    fill(b"AUTH failure (LOGIN): x (-1) ", b", user=, relay=[1.2.3.4] ("),
    fill(b"AUTH failure (LOGIN): x (-13) ", b", user=, relay=a,"),
    fill(b"STARTTLS=server, error: ", b"reason=x, relay=h [1.2.3.4] "),
]


@pytest.mark.parametrize("line", PATHOLOGICAL, ids=lambda b: b[33:60].decode())
def test_a_pathological_line_costs_bounded_time(line):
    """64 KiB of the separators the patterns backtrack over: PCRE2's match
    limit stops the search (counted), and a line costs milliseconds, not
    the seconds an unbounded backtrack would take."""
    assert smban.MAX_LINE - 40 < len(line) <= smban.MAX_LINE
    c = smban.Classifier(ref_time=REF_TIME)
    t = time.perf_counter()
    for _ in range(5):
        c.classify(line)
    per_line = (time.perf_counter() - t) / 5
    assert per_line < (0.5 if SANITIZED else 0.1), per_line


def test_the_match_limit_is_hit_and_counted():
    c = smban.Classifier(ref_time=REF_TIME)
    for line in PATHOLOGICAL:
        c.classify(line)
    assert c.stats()["match_limit"] >= 1


# ---- a log that changes under the reader ----------------------------------

LINE = (b"Nov 17 00:33:33 mx sm-mta[1234]: STARTTLS=server, relay=[198.51.100.1], "
        b"version=TLSv1.3, verify=NO, cipher=x, bits=256/256\n")

READER = r"""
import os, sys
from smban.logs import chunks
import smban
path, what = sys.argv[1], sys.argv[2]
c = smban.Classifier()
lines = 0
for i, part in enumerate(chunks(path, size=1 << 16)):
    if i == 0:
        if what == "truncate":
            os.truncate(path, 0)          # logrotate's copytruncate
        else:
            os.rename(path, path + ".1")  # logrotate's default: rename, new file
            open(path, "wb").close()
    lines += c.classify_buffer(part)["lines"]
print(lines)
"""


def test_a_log_rotated_under_the_reader_is_read_to_its_end(tmp_path):
    path = tmp_path / "maillog"
    path.write_bytes(LINE * 200000)
    r = run_py("-c", READER, str(path), "rotate")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert int(r.stdout) == 200000


def test_a_log_truncated_under_the_reader_does_not_crash(tmp_path):
    path = tmp_path / "maillog"
    path.write_bytes(LINE * 200000)
    r = run_py("-c", READER, str(path), "truncate")
    assert r.returncode >= 0, "killed by signal %d" % -r.returncode
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    # what was read before the truncation, and nothing after it
    assert 0 < int(r.stdout) < 200000
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    # what was read before the truncation is classified; the reading stops
    assert 0 < int(r.stdout) < 200000
