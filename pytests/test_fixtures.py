"""The C engine and the regex twin against the annotated fixture logs.

Every fixture line's "smban" expectation is checked in both modes; every
"match"/"host" expectation against the twin loaded by fail2ban's own Filter;
and, line by line, the two engines must agree on "failure or not" and on
the IP wherever both apply.
"""
import ipaddress
import os

import pytest

import smban
from conftest import (REF_TIME, ROOT, all_samples, event_matches, f2b_failures,
                      fixture_files, iso_to_epoch, read_samples)
from smban.filter import export_filter


def norm_ip(ip):
    return str(ipaddress.ip_address(ip)) if ip else ip


def run_engine(path, mode):
    """Classify one fixture file in order; list of (sample, event, problems)."""
    c = smban.Classifier(mode, ref_time=REF_TIME)
    out = []
    for s in read_samples(path):
        exp = s.smban(mode)
        if exp and "ref_time" in exp:
            ev = smban.Classifier(mode, ref_time=iso_to_epoch(exp["ref_time"])).classify(s.line)
        else:
            ev = c.classify(s.line)
        problems = []
        if exp is None and ev is not None:
            problems.append("expected no event, got %s" % (tuple(ev),))
        elif exp:
            if ev is None:
                problems.append("expected %s, got no event" % exp)
            else:
                problems += event_matches(ev, exp)
                if s.spec.get("time") and "time" not in exp:
                    problems += event_matches(ev, {"time": s.spec["time"]})
        out.append((s, ev, problems))
    return out


@pytest.mark.parametrize("mode", ["normal", "aggressive"])
@pytest.mark.parametrize("path", fixture_files(), ids=os.path.basename)
def test_engine_fixture(path, mode):
    bad = ["%s: %s\n    %s" % (s.id, "; ".join(p), s.line[:160])
           for s, ev, p in run_engine(path, mode) if p]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", fixture_files(), ids=os.path.basename)
def test_twin_fixture(path, twin):
    bad = []
    for s in read_samples(path):
        if not s.spec or "match" not in s.spec or s.spec.get("twin") is False:
            continue
        found = f2b_failures(twin, s.line)
        if s.spec["match"]:
            ips = [norm_ip(ip) for ip, _ in found]
            if ips != [norm_ip(s.spec["host"])]:
                bad.append("%s: twin found %r, want [%r]" % (s.id, ips, s.spec["host"]))
        elif found:
            bad.append("%s: twin matched %r, want no match" % (s.id, found))
    assert not bad, "\n".join(bad)


def test_two_engines_agree_on_every_single_line(twin):
    """For every fixture line alone: the C engine (normal mode) reports a
    failure exactly where the twin does, for the same IP."""
    checked = 0
    bad = []
    for s in all_samples():
        if s.spec and s.spec.get("twin") is False:
            continue
        ev = smban.Classifier("normal", ref_time=REF_TIME).classify(s.line)
        c_ip = norm_ip(ev.ip) if ev is not None and ev.failures and ev.ip else None
        found = f2b_failures(twin, s.line)
        t_ip = norm_ip(found[0][0]) if found else None
        if len(found) > 1 or c_ip != t_ip:
            bad.append("%s: C engine %r, twin %r\n    %s" % (s.id, c_ip, found, s.line[:160]))
        checked += 1
    assert checked > 100
    assert not bad, "\n".join(bad)


def test_committed_filter_is_generated_from_the_table():
    with open(os.path.join(ROOT, "filters", "smban.conf"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == export_filter(), \
        "filters/smban.conf is stale: run 'python3 -m smban export-filter > filters/smban.conf'"


def test_every_class_has_a_fixture():
    names = set()
    for s in all_samples():
        for mode in ("normal", "aggressive"):
            exp = s.smban(mode)
            if exp and "name" in exp:
                names.add(exp["name"])
    missing = [name for name, kind, why in smban.classes() if name not in names]
    assert not missing, "classes without a fixture line: %s" % missing


def test_twin_holds_ban_rules_only_and_all_of_them():
    rules = smban.rules()
    assert all(r["kind"] == "ban" for r in rules if r["twin"])
    ban_classes = {r["name"] for r in rules if r["kind"] == "ban"}
    twin_classes = {r["name"] for r in rules if r["twin"]}
    assert twin_classes == ban_classes
    text = export_filter()
    for banned_never in ("did not issue", "STARTTLS", "lost input", "timeout waiting"):
        assert banned_never not in text.split("[Definition]")[1].split("ignoreregex")[0]


def test_public_fixture_names_a_source_and_a_reason_for_every_line():
    """fixtures/public.log: real lines from public sources, at least 100,
    each under the '# source:' it was published in, each with a verdict and
    its reason in words; a line changed from the published text says how."""
    path = os.path.join(os.path.dirname(fixture_files()[0]), "public.log")
    source = repaired = None
    lines = 0
    bad = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if line.startswith("# source: "):
                source = line
            elif line.startswith("# repaired: "):
                repaired = line
            elif line.strip() and not line.startswith("#"):
                lines += 1
                if source is None:
                    bad.append("%d: no source above it" % lineno)
                repaired = None
    samples = read_samples(path)
    for s in samples:
        if not s.spec or "smban" not in s.spec or not s.spec.get("why"):
            bad.append("%s: no verdict with a reason" % s.id)
    assert lines == len(samples) and lines >= 100
    assert not bad, "\n".join(bad)
    assert repaired is None
