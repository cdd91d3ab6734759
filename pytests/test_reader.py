"""Classifier.classify_file (ext/reader.c): the lines read from a descriptor
through one reused buffer give exactly what classify_buffer gives for the
same bytes, wherever the reads cut the lines; and the classify --count
command that uses it."""
import errno
import gzip
import json
import os
import random
import subprocess
import sys
import threading

import pytest

import smban
from conftest import FIXTURES, REF_TIME, ROOT, fixture_files
from smban.classify_cli import counts_json

sys.path.insert(0, os.path.join(ROOT, "bench"))
import genlog  # noqa: E402

M = smban.MAX_LINE
BRUTE = (b"Nov 17 00:40:%02d jik4 sendmail[4000%02d]: 4AH5e1Aa4000%02d: AUTH failure (LOGIN): "
         b"authentication failure (-13) SASL(-13): authentication failure: checkpass failed, "
         b"user=postmaster, relay=[109.172.142.229]")


def classifier(mode="normal"):
    return smban.Classifier(mode, ref_time=REF_TIME)


def by_buffer(data, mode="normal", events=True, first_line=1):
    c = classifier(mode)
    return c.classify_buffer(data, first_line, events=events), c.stats()


def by_file(path, mode="normal", events=True, first_line=1):
    c = classifier(mode)
    with open(path, "rb") as f:
        return c.classify_file(f, first_line, events=events), c.stats()


def same(tmp_path, data, **kw):
    """classify_file on a file holding data == classify_buffer on data."""
    p = tmp_path / "log"
    p.write_bytes(data)
    want = by_buffer(data, **kw)
    assert by_file(str(p), **kw) == want
    return want


def generated(profile, lines):
    out = []

    class Sink:
        write = out.append
    genlog.generate(lines, Sink, profile=profile)
    return "".join(out).encode()


def test_fixture_logs():
    for path in fixture_files():
        with open(path, "rb") as f:
            data = f.read()
        for mode in ("normal", "aggressive"):
            assert by_file(path, mode) == by_buffer(data, mode), path


@pytest.mark.parametrize("profile", ["mail", "attack"])
def test_generated_logs_over_many_buffers(tmp_path, profile):
    data = generated(profile, 30000)
    assert len(data) > 4 << 20          # many reads, lines cut at every one
    res, st = same(tmp_path, data, mode="aggressive")
    assert res["lines"] == data.count(b"\n") and res["events"] and st["recognised"]
    same(tmp_path, data, events=False)


def awkward_lines(rnd, n):
    """Lines of every shape the reader must keep whole or skip as the
    classifier does: CRLF, NUL bytes, non-UTF-8, empty, and lines around
    SMBAN_MAX_LINE and longer than any buffer, with or without '\\r'."""
    base = [BRUTE % (i % 60, i % 100, i % 100) for i in range(40)]
    odd = [b"", b"\r", b"junk", b"\xff\xfe not utf-8", b"a\x00b",
           base[0] + b"\r", base[1][:40] + b"\x00" + base[1][40:],
           b"x" * M, b"x" * (M - 1) + b"\r", b"x" * M + b"\r", b"x" * (M + 1),
           b"x" * (M + 1) + b"\r", b"x" * (M + 2), b"x" * (M + 1) + b"\r\r",
           b"\x00" * (M + 5), b"y" * (300 << 10), b"z" * (1 << 20) + b"\r",
           b"\xff" * (M + 1), b"w" * (256 << 10), b"w" * ((256 << 10) - 1),
           b"v" * ((256 << 10) + 1)]
    out = []
    for _ in range(n):
        r = rnd.random()
        out.append(rnd.choice(odd) if r < 0.08 else rnd.choice(base)
                   + b" " * rnd.randrange(0, 3000 if r < 0.5 else 30))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_awkward_lines(tmp_path, seed):
    rnd = random.Random(seed)
    lines = awkward_lines(rnd, 3000)
    data = b"\n".join(lines)            # no newline at the end
    res, st = same(tmp_path, data)
    assert st["skipped_long"] and st["skipped_nul"] and st["not_utf8"]
    same(tmp_path, data + b"\n")
    same(tmp_path, data + b"\r\n", events=False)


@pytest.mark.parametrize("last", [b"y" * (300 << 10), b"x" * (M + 1), b"x" * (M + 1) + b"\r",
                                  b"x" * M + b"\r", b"x" * ((256 << 10) - 1) + b"\r"])
def test_long_last_line(tmp_path, last):
    for end in (b"", b"\n", b"\r\n"):
        res, st = same(tmp_path, BRUTE % (1, 1, 1) + b"\n" + last + end)
        assert res["lines"] == 2 and res["events"][0][0] == 1
    for end in (b"\n", b"\r\n"):
        res, st = same(tmp_path, last + end + BRUTE % (1, 1, 1))
        assert res["lines"] == 2 and res["events"][0][0] == 2


def test_empty_and_newlines_only(tmp_path):
    for data in (b"", b"\n", b"\n\n\r\n", b"\r"):
        assert same(tmp_path, data)[0]["lines"] == data.count(b"\n") + (not data.endswith(b"\n")
                                                                        and data != b"")


def test_short_reads_from_a_pipe():
    """A pipe gives what was written so far: lines are cut at any byte."""
    rnd = random.Random(7)
    data = b"\n".join(awkward_lines(rnd, 1500)) + b"\n" + generated("attack", 3000)
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb", buffering=0) as f:
            i = 0
            while i < len(data):
                n = rnd.choice([1, 2, 7, 100, 4096, 70000, 300000])
                f.write(data[i:i + n])
                i += n
    t = threading.Thread(target=feed)
    t.start()
    try:
        c = classifier("aggressive")
        got = c.classify_file(r, 5, events=True), c.stats()
    finally:
        t.join()
        os.close(r)
    assert got == by_buffer(data, "aggressive", first_line=5)


def test_from_the_descriptor_offset(tmp_path):
    data = generated("attack", 2000)
    p = tmp_path / "log"
    p.write_bytes(data)
    cut = data.index(b"\n", len(data) // 2) + 1
    fd = os.open(str(p), os.O_RDONLY)
    try:
        os.lseek(fd, cut, os.SEEK_SET)
        c = classifier()
        assert c.classify_file(fd, first_line=1000, events=True) == \
            by_buffer(data[cut:], first_line=1000)[0]
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(data)
    finally:
        os.close(fd)


def test_counts_only_without_events(tmp_path):
    data = generated("attack", 2000)
    res, _ = same(tmp_path, data, events=False)
    assert "events" not in res and set(res) == {"lines", "classes", "kinds", "failures"}


def test_read_errors(tmp_path):
    c = classifier()
    fd = os.open(str(tmp_path), os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            c.classify_file(fd)
        assert e.value.errno == errno.EISDIR
    finally:
        os.close(fd)
    p = tmp_path / "log"
    p.write_bytes(b"x\n")
    fd = os.open(str(p), os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            c.classify_file(fd, events=True)
        assert e.value.errno == errno.EBADF
    finally:
        os.close(fd)
    with pytest.raises(ValueError):
        c.classify_file(-1)
    with pytest.raises(TypeError):
        c.classify_file("log")
    f = open(str(p), "rb")
    f.close()
    with pytest.raises(ValueError):
        c.classify_file(f)
    # the classifier is still usable
    with open(str(p), "rb") as f:
        assert c.classify_file(f)["lines"] == 1


# ---- the command: classify --count reads plain logs with classify_file ----

def smban_cmd(*args, py_args=()):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(smban.__file__)))
    return subprocess.run([sys.executable, *py_args, "-m", "smban", *args],
                          capture_output=True, text=True, env=env, cwd="/", timeout=120)


def expected_counts(mode, *datas):
    """What classify --count prints, from classify_buffer on each whole log."""
    c = smban.Classifier(mode)
    totals = {"lines": 0, "classes": {}, "kinds": {}, "failures": 0}
    for data in datas:
        res = c.classify_buffer(data)
        totals["lines"] += res["lines"]
        totals["failures"] += res["failures"]
        for key in ("classes", "kinds"):
            for name, n in res[key].items():
                totals[key][name] = totals[key].get(name, 0) + n
    st = c.stats()
    totals.update(mode=mode, recognised=st["recognised"], not_utf8=st["not_utf8"],
                  sessions_evicted=st["sessions_evicted"],
                  skipped={k: st[k] for k in ("skipped_long", "skipped_nul")})
    return json.dumps(totals, sort_keys=True) + "\n"


def test_cli_count_plain_and_gzip(tmp_path):
    rnd = random.Random(3)
    a = generated("attack", 5000) + b"\n".join(awkward_lines(rnd, 300))
    b = generated("mail", 5000)
    pa, pb = tmp_path / "maillog.1.gz", tmp_path / "maillog"
    pa.write_bytes(gzip.compress(a))
    pb.write_bytes(b)
    for mode in ("normal", "aggressive"):
        want = expected_counts(mode, a, b)
        # the quick parse and argparse (options after the files) agree
        for args in (["--count", "--mode", mode], ["--mode=%s" % mode, "--count"]):
            r = smban_cmd("classify", *args, str(pa), str(pb))
            assert (r.returncode, r.stderr, r.stdout) == (0, "", want)
        r = smban_cmd("classify", str(pa), str(pb), "--count", "--mode", mode)
        assert (r.returncode, r.stderr, r.stdout) == (0, "", want)


def test_cli_count_errors_as_before(tmp_path):
    good = tmp_path / "maillog"
    good.write_bytes(BRUTE % (1, 1, 1) + b"\n")
    r = smban_cmd("classify", "--count", str(good), str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "smban: %s: No such file or directory\n" % (tmp_path / "nope")
    r = smban_cmd("classify", "--count", str(tmp_path))
    assert (r.returncode, r.stderr) == (2, "smban: %s: is a directory\n" % tmp_path)
    r = smban_cmd("classify", "--count", "--mode", "fierce", str(good))
    assert r.returncode == 2 and "invalid choice: 'fierce'" in r.stderr
    r = smban_cmd("classify", "--count", "--json", str(good))
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


def test_cli_count_imports_only_what_it_needs(tmp_path):
    """No argparse, json (nor the re it imports), gzip for a plain log, nor
    other commands' modules: start-up time counts for a command run on
    every log rotation."""
    p = tmp_path / "maillog"
    p.write_bytes(BRUTE % (1, 1, 1) + b"\n")

    def imported(*args):
        r = smban_cmd(*args, py_args=("-X", "importtime"))
        assert r.returncode == 0, r.stderr
        return {line.split("|")[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    bare = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                          capture_output=True, text=True, cwd="/").stderr
    bare = {line.split("|")[-1].strip() for line in bare.splitlines()}
    extra = imported("classify", "--count", str(p)) - bare
    heavy = {"argparse", "json", "re", "gzip", "zlib", "ipaddress", "smban.audit",
             "smban.engine", "smban.iptables", "smban.bans", "smban.demo"}
    assert not extra & heavy, extra & heavy


def test_counts_json_is_json_dumps():
    for d in ({"lines": 3, "classes": {"b-x": 1, "a": 2}, "kinds": {}, "mode": "normal",
               "skipped": {"skipped_long": 0}},
              {"mode": 'a"b', "n": 1}, {"caf\u00e9": 1}, {"k": "tab\there"}, {},
              {"x": {"y": {"z": 0}}}):
        assert counts_json(d) == json.dumps(d, sort_keys=True)


def test_cli_count_fixture():
    """A fixture log through the command: the counts of the in-process path."""
    path = os.path.join(FIXTURES, "sessions.log")
    with open(path, "rb") as f:
        want = expected_counts("normal", f.read())
    r = smban_cmd("classify", "--count", path)
    assert (r.returncode, r.stdout) == (0, want)
