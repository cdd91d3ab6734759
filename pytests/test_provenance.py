"""The rule table records, next to every rule, which text of its line the
client chooses and how the client's address is anchored despite that text
(ext/rules.def: fields and anchor).  These tests walk the table and check
each record against the pattern itself, so a rule that lets client text
reach its address cannot be added without the table saying so -- and the
check is shown to catch the patterns that had that bug.
"""
import re

import pytest

from smban import _core
from smban.filter import twin_regex

RULES = _core.rules()
MACROS = {}   # name -> C expansion text, read from rules.def
FIELDS = {"addr", "user", "sasl", "helo", "cmd", "msgid", "ptr"}
CLIENT_TEXT = FIELDS - {"ptr"}          # text outside the client field itself
PLACEHOLDER = re.compile(r"<(CLIENT|RELAY|PEER|RULESET)>")
# a repeat that can run over sendmail's separators (", ", " "): any
# character, any non-space, or a negated class that admits a comma or space
_REPEAT = re.compile(r"(\.|\\S|\[\^((?:\\.|[^\]\\])*)\])[*+]")
NEG_CLASS = re.compile(r"\[\^((?:\\.|[^\]\\])*)\]")


def spans(text):
    """The repeats in text that can run over a separator."""
    out = []
    for m in _REPEAT.finditer(text):
        cls = m.group(2)
        if cls is not None and "," in cls and ("\\s" in cls or " " in cls):
            continue
        out.append(m.group(0))
    return out


def _read_macros():
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    text = open(os.path.join(here, "..", "ext", "rules.def"), encoding="utf-8").read()
    for m in re.finditer(r'SMBAN_MACRO\((\w+),\s*("(?:[^"\\]|\\.)*")', text):
        MACROS[m.group(1)] = eval(m.group(2))   # a C string literal: Python reads it alike


_read_macros()


def spans_before_client(pattern):
    """The spanning constructs of pattern before its first client placeholder."""
    m = PLACEHOLDER.search(pattern)
    head = pattern[:m.start()] if m else pattern
    return spans(head)


def anchor_problems(rule):
    """Why a rule's recorded anchor does not hold for its pattern ([] when it does)."""
    p, a = rule["pattern"], rule["anchor"]
    fields = set(rule["fields"].split())
    bad = []
    if not fields <= FIELDS:
        bad.append("unknown fields %s" % sorted(fields - FIELDS))
    if p is None:
        return bad + ([] if a == "none" else ["no pattern but anchor %s" % a])
    yields_ip = "(?<ip>" in rule["c_pattern"]
    if a == "none":
        if yields_ip:
            bad.append("gives an address but records no anchor")
    elif a == "first":
        if fields & CLIENT_TEXT and spans_before_client(p):
            bad.append("client text %s may come before the client field" % sorted(fields & CLIENT_TEXT))
        if not PLACEHOLDER.search(p):
            bad.append("anchor first without a client field")
    elif a == "last":
        if not re.search(r", relay=<RELAY>\)?\??\$$", p):
            bad.append("anchor last, but the line does not end with ', relay=<RELAY>'")
        # the client field may hold no comma, so no earlier ', relay=' fits
        client = MACROS["CLIENT"] + MACROS["RELAY"]
        if re.search(r"(?<!\\)\.[*+]", client) or any("," not in c for c in NEG_CLASS.findall(client)):
            bad.append("the client field admits a comma")
    elif a == "after":
        if not p.startswith("<RULESET>"):
            bad.append("anchor after, but not a ruleset line")
        head = MACROS["RULESET"].split("relay=")[0]
        if spans(head.replace("<FIELD>", "")):
            bad.append("a field before relay= is skipped, not parsed: %s" % spans(head))
        if "<FIELD>" not in head:
            bad.append("no grammar for the fields before relay=")
    elif a == "only":
        # no grammar for the client text: the line must hold one ", relay="
        if not p.startswith("<RULESET_TEXT>"):
            bad.append("anchor only, but not the free-text ruleset opening")
        elif "(?!.*, relay=)" not in MACROS["RULESET_TEXT"] or \
                "(?:(?!, relay=).)*" not in MACROS["RULESET_TEXT"]:
            bad.append("anchor only, but a second ', relay=' is not ruled out")
    else:
        bad.append("unknown anchor %r" % a)
    return bad


@pytest.mark.parametrize("i", range(len(RULES)), ids=lambda i: "%d-%s" % (i, RULES[i]["name"]))
def test_every_rule_records_a_provenance_that_its_pattern_keeps(i):
    assert anchor_problems(RULES[i]) == []


def test_every_rule_that_holds_client_text_says_so():
    """Rules whose formats carry client text (addresses, user=, commands)
    record it; the rules known to carry it must not say otherwise."""
    carry = {"relay-denied": "addr", "auth-failure": "user", "envelope": "addr",
             "vrfy-expn-rejected": "cmd", "open-proxy": "cmd", "sender-domain": "addr",
             "user-unknown": "addr", "bogus-helo": "helo"}
    for r in RULES:
        want = carry.get(r["name"])
        if want and r["pattern"] and "(?<ip>" in r["c_pattern"]:
            assert want in r["fields"].split(), r


def test_the_check_catches_the_patterns_that_let_a_client_choose_the_address():
    """The ruleset opening of the first version skipped arg1 with \\S* and
    the envelope skipped the sender with .*?: both fail the check."""
    old_ruleset = "^ruleset=(?<ruleset>[^,\\s]++), arg1=\\S*(?:, arg2=\\S*)?, relay=<RELAY>, reject="
    saved = MACROS["RULESET"]
    MACROS["RULESET"] = old_ruleset
    try:
        r = dict(next(r for r in RULES if r["name"] == "relay-denied"))
        assert anchor_problems(r)
    finally:
        MACROS["RULESET"] = saved
    first = {"name": "x", "anchor": "first", "fields": "addr ptr",
             "pattern": "^from=.*?: <CLIENT> said$", "c_pattern": "(?<ip>"}
    assert anchor_problems(first)
    unanchored = {"name": "x", "anchor": "none", "fields": "addr",
                  "pattern": "^x <CLIENT>$", "c_pattern": "(?<ip>"}
    assert anchor_problems(unanchored)


def test_the_twin_parses_the_same_grammar():
    """Every twin rule anchored after parsed fields carries the address
    grammar in its fail2ban regex, not a skip over the field."""
    field = twin_regex(MACROS["QSTR"])
    for r in RULES:
        if r["twin"] and r["anchor"] == "after":
            regex = twin_regex(r["twin_pattern"])
            assert field in regex, r["name"]
            assert "arg1=\\S*" not in regex
