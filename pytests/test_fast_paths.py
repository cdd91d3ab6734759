"""The hand-written parsers of the hottest lines (envelopes and TLS
sessions) give exactly what the rule table's patterns give."""
import random

import smban
from conftest import REF_TIME, all_samples

PREFIX = "Nov 17 00:33:%02d mx sm-mta[%d]: "

RELAYS = [
    "mail.example.com [198.51.100.1]", "[198.51.100.2]", "[IPv6:2001:db8::3]",
    "h.example [198.51.100.4] (may be forged)", "h.example [198.51.100.5] (may be f",
    "h.example [198.51.100.6] (", "[198.51.100.7] [198.51.100.7]", "root@localhost",
    "longname.example [198.51.100.", "user@h.example [198.51.100.9]", "", " [198.51.100.10]",
    "h [1.2.3.4] x", "[999.1.1.1]", "a,b [198.51.100.11]", "h\t[198.51.100.12]",
    "[198.51.100.13] (may be forged) tail", "[[198.51.100.14]]", "h [198.51.100.15])",
]
FROMS = ["<a@example.com>", "<\"x, relay=[203.0.113.1]\"@example.com>",
         "<a@example.com>, size=1, class=0, nrcpts=9", "root", "<>"]
TAILS = [", msgid=<m@example.com>, bodytype=8BITMIME, proto=ESMTPS, daemon=MTA",
         ", proto=SMTP, daemon=MTA", "", ", msgid=<x, relay=[203.0.113.2]>, proto=ESMTP",
         ", relay=[203.0.113.3], daemon=MTA"]


def lines():
    rnd = random.Random(7)
    out = [s.line for s in all_samples()]
    for i in range(3000):
        pid = 1000 + i % 50
        relay = rnd.choice(RELAYS)
        if rnd.random() < 0.5:
            body = "from=%s, size=%d, class=%s, nrcpts=%s%s, relay=%s" % (
                rnd.choice(FROMS), rnd.randrange(9999), rnd.choice(["0", "-1", "x"]),
                rnd.choice(["0", "1", "12", ""]), rnd.choice(TAILS), relay)
        else:
            body = "STARTTLS=server, relay=%s, version=%s, verify=NO, cipher=x, bits=256/256" % (
                relay, rnd.choice(["TLSv1.3", "TLSv1.2", ""]))
            if rnd.random() < 0.1:
                body = body.replace(", version=", ",version=")
        out.append(PREFIX % (i % 60, pid) + body)
    return out


def test_fast_paths_equal_the_patterns():
    for mode in ("normal", "aggressive"):
        fast = smban.Classifier(mode, ref_time=REF_TIME)
        slow = smban.Classifier(mode, ref_time=REF_TIME, regex_only=True)
        n = 0
        for line in lines():
            a, b = fast.classify(line), slow.classify(line)
            assert (a and tuple(a)) == (b and tuple(b)), line
            n += a is not None and a.name in ("envelope", "tls-session")
        assert n > 1000


def test_batch_path_uses_the_same_engine():
    """classify_buffer gives, line for line, what classify gives on each
    line in turn, with the fast paths and with the patterns alone."""
    text = lines()
    data = "\n".join(text).encode()
    a = smban.Classifier(ref_time=REF_TIME).classify_buffer(data, events=True)
    b = smban.Classifier(ref_time=REF_TIME, regex_only=True).classify_buffer(data, events=True)
    batch = [(n, tuple(e)) for n, e in a["events"]]
    assert batch == [(n, tuple(e)) for n, e in b["events"]]
    one = smban.Classifier(ref_time=REF_TIME)
    per_line = [(n, tuple(e)) for n, e in enumerate(map(one.classify, text), 1) if e]
    assert batch == per_line
    assert a["lines"] == len(text) and len(per_line) > 1000
