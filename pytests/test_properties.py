"""Property tests: generated sendmail lines through both engines.

Every line has sendmail's structure (a syslog frame, the format of one
message) and hostile contents wherever sendmail prints text the client
chose: user=, arg1=, the HELO name, the VRFY argument, the milter sender,
the envelope sender, the command of an open-proxy line, the PTR name.
That text holds decoy addresses ("[203.0.113.x]", "relay=[...]",
"[IPv6:2001:db8:bad::x]"), brackets, "(may be forged)", commas, quotes,
backslashes, very long names and bytes that are not UTF-8.  The real client
is always in 198.51.100.0/24 or 2001:db8:1::/48, decoys never are.

Checked on each line:
- the C engine never reports a decoy as the client;
- wherever the regex twin (filters/smban.conf in fail2ban's own Filter)
  matches, the C engine reports a failure for the same IP, and the twin
  never reports a decoy either;
- where the C engine reports a failure the twin does not, the failure is
  one that a named session rule (README, "Session rules") allows;
- a line adds at most one failure, except when it reveals the address of
  its session's pending failures (session rule 2 of the README);
- a session's lines are classified the same whether or not other
  sessions' lines are interleaved, except for the trust an IP earns by
  delivering mail (aggressive mode only).

Hypothesis runs derandomized (the same examples on every run, no example
database), a few hundred examples per test.
"""
import ipaddress
import re

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import event, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import smban  # noqa: E402
from conftest import REF_TIME, f2b_failures, load_f2b_filter, property_settings  # noqa: E402

SETTINGS = property_settings(300)

TRUE4 = ipaddress.ip_network("198.51.100.0/24")
TRUE6 = ipaddress.ip_network("2001:db8:1::/48")
BAN_CLASSES = {name for name, kind, _ in smban.classes() if kind == "ban"}


def norm(ip):
    return str(ipaddress.ip_address(ip)) if ip else None


def is_true_client(ip):
    a = ipaddress.ip_address(ip)
    return a in (TRUE4 if a.version == 4 else TRUE6)


# ---- the pieces of a line -------------------------------------------------

true_v4 = st.integers(1, 254).map(lambda i: "198.51.100.%d" % i)
true_v6 = st.integers(1, 0xffff).map(lambda i: "2001:db8:1::%x" % i)
decoy_v4 = st.integers(1, 254).map(lambda i: "203.0.113.%d" % i)
decoy_v6 = st.integers(1, 0xffff).map(lambda i: "2001:db8:bad::%x" % i)


@st.composite
def decoy(draw):
    """An address as an attacker would plant it in text it controls."""
    if draw(st.booleans()):
        ip = draw(decoy_v4)
    else:
        ip = "IPv6:" + draw(decoy_v6)
    return draw(st.sampled_from([
        "[%s]", "%s", " [%s]", ", relay=[%s]", "relay=[%s]", "h [%s]", "[%s] (may be forged)",
        "x [%s]: possible SMTP attack: command=AUTH, count=5", ", relay=h [%s]",
        "[%s] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA",
    ])) % ip


PIECES = [b"relay=", b"[", b"]", b"IPv6:", b"(may be forged)", b",", b", ", b'"', b"'",
          b"\\", b"\\]", b"\\,", b" ", b"=", b"<", b">", b"...", b"user=", b"reject=",
          b": ", b")", b"(", b"\\r\\n", b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80",
          b"\x7f", b"\t", b"@", b"-13", b"[rejected]", b"did not issue"]


@st.composite
def hostile(draw, max_pieces=10, allow_space=True):
    """Text an attacker controls: pieces of sendmail's own syntax, decoys,
    random bytes (never a newline or NUL: syslog lines hold neither)."""
    parts = draw(st.lists(st.one_of(
        st.sampled_from(PIECES),
        decoy().map(str.encode),
        st.binary(max_size=6),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", max_size=12).map(str.encode),
    ), max_size=max_pieces))
    out = b"".join(parts).replace(b"\n", b"").replace(b"\0", b"")
    if not allow_space:
        out = out.replace(b" ", b"").replace(b"\t", b"").replace(b",", b"")
    return out


@st.composite
def ptr_name(draw):
    """A PTR name: the attacker's own DNS.  Resolvers let no space or comma
    through (rules.def relies on it); anything else may be there, brackets
    and decoys included, and it may be very long."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        labels = draw(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-",
                                       min_size=1, max_size=63), min_size=1, max_size=6))
        name = ".".join(labels).encode()
    elif kind == 1:
        name = b"a" * draw(st.integers(90, 300)) + b".example"
    else:
        name = draw(hostile(allow_space=False))
    return name or b"h.example"


@st.composite
def client(draw, ip):
    """sendmail's client field ($_): [ident@]host [addr][ (may be forged)],
    or [addr] alone."""
    addr = b"[" + (b"IPv6:" if ":" in ip else b"") + ip.encode() + b"]"
    form = draw(st.integers(0, 4))
    if form == 0:
        return addr
    host = draw(ptr_name())
    if form == 1:
        return host + b" " + addr
    if form == 2:
        return host + b" " + addr + b" (may be forged)"
    if form == 3:
        ident = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-./^_`{|}~",
                             min_size=1, max_size=16)).encode()
        return ident + b"@" + host + b" " + addr
    return addr + b" " + addr


def cut100(field):
    """relay=%.100s"""
    return field[:100]


# ---- whole lines ----------------------------------------------------------

FRAME = b"Nov 17 00:33:%02d mx sm-mta[%d]: "


@st.composite
def message(draw, ip):
    """One message of a client-facing format, with ip as the client.
    Returns (rule, body); rule names the format (for failure reports)."""
    c = draw(client(ip))
    h = hostile()
    code = draw(st.sampled_from([b"-13", b"-14", b"-20", b"-1", b"-5", b"-24", b"-26"]))
    mech = draw(st.sampled_from([b"LOGIN", b"PLAIN", b"CRAM-MD5", b"DIGEST-MD5", b"unknown"]))
    forms = {
        "auth-failure": lambda: b"AUTH failure (" + mech + b"): authentication failure (" + code
        + b") SASL(" + code + b"): " + draw(h) + b", user=" + draw(h) + b", relay=" + cut100(c),
        "auth-failure-old": lambda: b"AUTH failure (" + mech + b"): authentication failure ("
        + code + b") SASL(" + code + b"): " + draw(h),
        "smtp-attack": lambda: c + b": possible SMTP attack: command="
        + draw(st.sampled_from([b"AUTH", b"HELO/EHLO", b"VRFY", b"EXPN", b"NOOP", b"ETRN"]))
        + b", count=" + str(draw(st.integers(1, 99))).encode(),
        "open-proxy": lambda: c + b": probable open proxy: command=" + draw(h)[:40],
        "input-too-long": lambda: c + b": SMTP violation, input too long: 4096",
        "rcpt-flood": lambda: c + b": Possible SMTP RCPT flood, throttling.",
        "vrfy": lambda: c + b": " + draw(st.sampled_from([b"VRFY ", b"EXPN ", b"ETRN ", b"vrfy "]))
        + draw(h) + b" [rejected]",
        "bogus-command": lambda: b'"' + draw(st.sampled_from([b"wiz", b"debug", b"showq"]))
        + b'" command from ' + c + b" (" + ip.encode() + b")",
        "pregreeting": lambda: b"rejecting commands from " + c
        + b" due to pre-greeting traffic after 3 seconds",
        "relay-denied": lambda: b"ruleset=check_rcpt, arg1=" + draw(h) + b", relay=" + c
        + b", reject=550 5.7.1 <" + draw(h) + b">... Relaying denied",
        "bogus-helo": lambda: b"ruleset=check_rcpt, arg1=<postmaster@example.org>, relay=" + c
        + b", reject=550 5.7.1 <postmaster@example.org>... bogus HELO name used: " + draw(h),
        "sender-domain": lambda: b"ruleset=check_mail, arg1=<" + draw(h) + b">, relay=" + c
        + b", reject=553 5.1.8 <a@x.invalid>... Domain of sender address a@x.invalid does not exist",
        "user-unknown": lambda: b"ruleset=check_rcpt, arg1=<" + draw(h) + b">, relay=" + c
        + b", reject=550 5.1.1 <" + draw(h) + b">... User unknown",
        "did-not-issue": lambda: c + b" did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA",
        "lost-input": lambda: b"lost input channel from " + c + b" to MTA after rcpt",
        "tls-failure": lambda: b"STARTTLS=server, error: accept failed=-1, reason=no shared cipher, "
        b"SSL_error=1, errno=0, retry=-1, relay=" + cut100(c),
        "tls-session": lambda: b"STARTTLS=server, relay=" + cut100(c)
        + b", version=TLSv1.3, verify=NO, cipher=TLS_AES_256_GCM_SHA384, bits=256/256",
        "envelope": lambda: b"from=<" + draw(h) + b">, size=1, class=0, nrcpts="
        + draw(st.sampled_from([b"0", b"1"])) + b", msgid=<" + draw(h)
        + b">, proto=ESMTP, daemon=MTA, relay=" + c,
        "auth-success": lambda: b"AUTH=server, relay=" + c + b", authid=" + draw(h)
        + b", mech=PLAIN, bits=0",
        "milter": lambda: b"Milter: from=<" + draw(h) + b">, reject=550 5.7.1 Command rejected",
        "helo-invalid": lambda: b"invalid domain name (" + draw(h) + b") from " + c,
        "timeout": lambda: b"timeout waiting for input from " + c + b" during server cmd read",
        "connect": lambda: b"connect from " + c,
    }
    rule = draw(st.sampled_from(sorted(forms)))
    return rule, forms[rule]()


@st.composite
def line(draw, pid=None, second=None, ip=None):
    ip = draw(st.one_of(true_v4, true_v6)) if ip is None else ip
    rule, body = draw(message(ip))
    qid = draw(st.sampled_from([b"", b"4AH5XXPf%06d: ", b"NOQUEUE: "]))
    pid = draw(st.integers(1000, 999999)) if pid is None else pid
    second = draw(st.integers(0, 59)) if second is None else second
    if b"%" in qid:
        qid = qid % pid
    return rule, ip, FRAME % (second, pid) + qid + body


#: What the twin's Python \s matches beyond PCRE2's [ \t\n\v\f\r]
#: (control characters \x1c-\x1f, NEL, Unicode spaces).
EXTRA_SPACE = re.compile(r"[^\S \t\n\v\f\r]")


def not_sendmail_text(text):
    r"""The documented way the engines part on a single line: bytes that
    sendmail never writes (its str2prt() escapes every non-printable and
    non-ASCII byte) but that Python's Unicode \s takes for a space, so a
    client field holding one is a client to the C engine only."""
    if EXTRA_SPACE.search(text.decode("utf-8", "replace")):
        return "not sendmail's text: the twin's \\s also matches \\x1c-\\x1f and Unicode spaces"
    return None


PLANTED_RELAY = re.compile(
    rb", relay=(?:[0-9A-Za-z!#$%&'*+./^_`{|}~:@-]* |\[[0-9A-Za-z:.]*\] )?"
    rb"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\](?: \([a-z ]*\)?)?$")


def planted_relay(rule, text):
    """The one known limit: an AUTH failure line of sendmail before 8.14.4
    has no relay= (the client comes from the session), so a SASL error
    detail that ends in ", relay=host [addr]" cannot be told from a line
    of a later sendmail, which prints the real relay= last: both engines
    read that address.  Returns it, or None."""
    m = PLANTED_RELAY.search(text) if rule == "auth-failure-old" else None
    return norm(m.group(1).decode()) if m else None


def classify_alone(text, mode="normal"):
    return smban.Classifier(mode, ref_time=REF_TIME).classify(text)


def twin_failures(twin, text):
    # fail2ban decodes a log line with 'replace' when it is not UTF-8
    return f2b_failures(twin, text.decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def new_twin(f2b_confdir):
    """A fresh regex twin for each example: fail2ban's Filter keeps state
    between lines (the last date; a multi-line cache when a filter marks an
    F-MLFID, as the twin once did), and an example must not see the
    previous one's lines."""
    return lambda: load_f2b_filter(f2b_confdir, "smban")


# ---- single lines --------------------------------------------------------

@SETTINGS
@given(line())
def test_no_decoy_is_ever_the_client_and_the_engines_agree(new_twin, sample):
    rule, ip, text = sample
    twin = new_twin()
    ev = classify_alone(text)
    where = "%s line: %r" % (rule, text)
    planted = planted_relay(rule, text)
    if ev is not None and ev.ip is not None:
        assert is_true_client(ev.ip) or norm(ev.ip) == planted, \
            "C engine took a planted address: " + where
        assert norm(ev.ip) in (norm(ip), planted), where
    assert ev is None or ev.failures <= 1, where
    found = twin_failures(twin, text)
    assert len(found) <= 1, where
    # (pytest --hypothesis-show-statistics shows how often each case came up)
    event("C engine: %s" % ("failure" if ev is not None and ev.failures else
                            "event" if ev is not None else "nothing"))
    event("twin: %s" % ("match" if found else "no match"))
    for fip, _ in found:
        assert is_true_client(fip) or norm(fip) == planted, "the twin took a planted address: " + where
        # wherever the twin matches, the C engine counts a failure for that IP
        assert ev is not None and ev.failures == 1 and norm(ev.ip) == norm(fip), \
            "twin %r, C engine %r: %s" % (found, ev, where)
    if ev is not None and ev.failures and not found:
        # a single line on a fresh classifier has no session to lean on:
        # the twin, built from the same table, must see every such failure
        assert not_sendmail_text(text), \
            "C failure the twin cannot express, no rule allows it: %r, %s" % (ev, where)


@SETTINGS
@given(line(), st.sampled_from(["normal", "aggressive"]))
def test_bytes_and_text_give_the_same_event(sample, mode):
    """A line as bytes, as str decoded with surrogateescape (the API gives
    the bytes back) and as str decoded the way fail2ban decodes a line that
    is not UTF-8 ('replace'): the same verdict for the same client."""
    rule, ip, text = sample
    a = classify_alone(text, mode)
    b = classify_alone(text.decode("utf-8", "surrogateescape"), mode)
    assert (a and tuple(a)) == (b and tuple(b)), text
    c = classify_alone(text.decode("utf-8", "replace"), mode)
    verdict = lambda e: e and (e.kind, e.name, e.ip, e.failures, e.via)  # noqa: E731
    assert verdict(a) == verdict(c), text


# ---- sequences: one session, and sessions interleaved ---------------------

def explain(ev, alone, text):
    """The session rule (README, "Session rules") that lets the C engine count a failure
    on a line where the stateless twin counts none, or None."""
    if ev.via is not None and ev.name in BAN_CLASSES and ev.name != ev.via:
        return "session rule 2: the session's pending failures counted once its IP is known"
    if alone is not None and alone.ip is None and alone.name == ev.name and ev.ip:
        return "session rules 2 and 3: a line without a client address takes the session's"
    return not_sendmail_text(text)


@st.composite
def session(draw, pid):
    """The lines of one SMTP session, in order: one client, one pid."""
    n = draw(st.integers(1, 6))
    second = draw(st.integers(0, 50))
    ip = draw(st.one_of(true_v4, true_v6))
    return [draw(line(pid=pid, second=second + i, ip=ip)) for i in range(n)]


@SETTINGS
@given(session(pid=4242))
def test_a_session_never_counts_more_than_its_lines_allow(new_twin, lines):
    twin = new_twin()
    c = smban.Classifier("normal", ref_time=REF_TIME)
    outstanding = 0         # failures waiting for the session's address
    planted = set()         # the known limit's addresses, taken for the session's
    for rule, ip, text in lines:
        before = c.stats()
        ev = c.classify(text)
        after = c.stats()
        outstanding += after["pending"] - before["pending"]
        resolved = after["resolved"] - before["resolved"]
        if ev is None:
            continue
        where = "%s line: %r\n  session: %r" % (rule, text, [t for _, _, t in lines])
        if ev.ip is not None:
            # the session's IP may come from an earlier line: still a true
            # client, or the address the known limit read on an earlier line
            # of this session (it became the session's address)
            if norm(ev.ip) == planted_relay(rule, text):
                planted.add(norm(ev.ip))
            assert is_true_client(ev.ip) or norm(ev.ip) in planted, \
                "planted address reported: " + where
        if ev.failures > 1:
            # only a line that reveals the address of pending failures
            assert resolved and ev.failures <= 1 + outstanding, where
        outstanding -= resolved
        found = twin_failures(twin, text)
        for fip, _ in found:
            assert ev.failures >= 1 and norm(ev.ip) == norm(fip), where
        if ev.failures and not found:
            reason = explain(ev, classify_alone(text), text)
            assert reason, "C failure the twin cannot express, no rule allows it: %r, %s" % (ev, where)


def events(c, texts):
    return [(t, c.classify(t)) for t in texts]


@st.composite
def interleaved(draw):
    """One session (pid 4242) and its lines merged with those of 1 to 3
    other sessions at drawn places, each session's order kept (all within
    one minute: nothing expires)."""
    own = [t for _, _, t in draw(session(pid=4242))]
    merged = [("mine", t) for t in own]
    for i in range(draw(st.integers(1, 3))):
        for _, _, t in draw(session(pid=5000 + i)):
            merged.insert(draw(st.integers(0, len(merged))), ("other", t))
    return own, merged


@property_settings(150)
@given(interleaved(), st.sampled_from(["normal", "aggressive"]))
def test_other_sessions_change_nothing_but_trust(sample, mode):
    mine, merged = sample
    alone = events(smban.Classifier(mode, ref_time=REF_TIME), mine)
    c = smban.Classifier(mode, ref_time=REF_TIME)
    mixed = []
    trusted_ips = set()
    for who, t in merged:
        ev = c.classify(t)
        if who == "mine":
            mixed.append((t, ev))
        elif ev is not None and ev.ip and (ev.name == "auth-success" or ev.delivered
                                           or ev.via == "auth-success"):
            # an AUTH=server line that resolves its session's pending
            # failure answers with that failure (via auth-success): the
            # address authenticated all the same
            trusted_ips.add(norm(ev.ip))
    for (t, a), (_, b) in zip(alone, mixed):
        if (a and tuple(a)) == (b and tuple(b)):
            continue
        # the one documented way: an IP that delivered mail (or
        # authenticated) in another session is trusted, and its suspect
        # lines add no failure; where the line added none alone either (a
        # suspect in normal mode, a session's failures already counted),
        # only the reason given for it changes
        assert a is not None and b is not None, (t, a, b)
        assert norm(a.ip) in trusted_ips and b.reason == "trusted", (t, a, b)
        same = [f for f in smban.EVENT_FIELDS if f not in ("failures", "reason")]
        assert [getattr(a, f) for f in same] == [getattr(b, f) for f in same], (t, a, b)
        assert b.failures == 0, (t, a, b)
        if a.failures == 0:
            assert a.reason in ("suspect-normal-mode", "already-counted"), (t, a, b)
        else:
            assert mode == "aggressive", (t, a, b)


def test_twin_never_blames_the_previous_client_of_a_reused_pid(new_twin):
    twin = new_twin()
    fmt = (b"Nov 17 00:33:0%d mx sm-mta[1000]: AUTH failure (LOGIN): authentication "
           b"failure (-13) SASL(-13): , user=, relay=%s")
    assert twin_failures(twin, fmt % (1, b"[198.51.100.1]")) == [("198.51.100.1", 0)]
    # another connection, served by a process with the same pid
    found = twin_failures(twin, fmt % (2, b"[IPv6:2001:db8:1::1]"))
    assert [norm(ip) for ip, _ in found] == ["2001:db8:1::1"]


# ---- detection: a well-formed ban line is caught, for its true client -------

#: Text a client chooses that every grammar of the table reads one way: no
#: quote, backslash, angle bracket or parenthesis; planted addresses only as
#: whole bracketed literals (balanced), sendmail's own words included.
SAFE = st.lists(st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_+=:;", min_size=1, max_size=10),
    st.sampled_from([" ", ", ", ", relay=", "relay=h ", ", user=", ", reject=550 5.7.1 ",
                     "Relaying denied", "did not issue", "[rejected]", "(may be forged)"[1:-1]]),
    st.sampled_from(["[203.0.113.%d]" % i for i in (1, 9, 77)]
                    + ["[IPv6:2001:db8:bad::%x]" % i for i in (1, 9)]),
), max_size=8).map("".join)


@st.composite
def tidy_client(draw, ip):
    """A client field whose host and ident are what DNS and identd give
    (no space, comma or bracket), short enough that relay=%.100s keeps it."""
    addr = "[" + ("IPv6:" if ":" in ip else "") + ip + "]"
    label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15)
    host = ".".join(draw(st.lists(label, min_size=1, max_size=2))) + ".example"
    form = draw(st.integers(0, 3))
    if form == 0:
        return addr
    if form == 1:
        return host + " " + addr
    if form == 2:
        return host + " " + addr + " (may be forged)"
    ident = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1,
                         max_size=12))
    return ident + "@" + host + " " + addr


@st.composite
def ban_line(draw):
    """(class, true client, line): a line of a ban class, well formed."""
    ip = draw(st.one_of(true_v4, true_v6))
    c = draw(tidy_client(ip))
    t = draw(SAFE)
    local = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_+=", min_size=1,
                         max_size=12)) + draw(st.sampled_from(["", " x", ", relay=h", "[203.0.113.9]"]))
    rcpt = "<%s@elsewhere.example>" % local
    forms = {
        "auth-failure": "AUTH failure (LOGIN): authentication failure (-13) SASL(-13): "
                        "authentication failure: %s, user=%s, relay=%s" % (t, draw(SAFE), c),
        "smtp-attack": "%s: possible SMTP attack: command=AUTH, count=%d" % (c, draw(st.integers(2, 99))),
        "open-proxy": "%s: probable open proxy: command=%s" % (c, t[:40]),
        "input-too-long": "%s: SMTP violation, input too long: 4096" % c,
        "rcpt-flood": "%s: Possible SMTP RCPT flood, throttling." % c,
        "vrfy-expn-rejected": "%s: VRFY %s [rejected]" % (c, t),
        "bogus-command": '"wiz" command from %s (%s)' % (c, ip),
        "pregreeting": "rejecting commands from %s due to pre-greeting traffic after 3 seconds" % c,
        "relay-denied": "ruleset=check_rcpt, arg1=%s, relay=%s, reject=550 5.7.1 %s... "
                        "Relaying denied. Proper authentication required." % (rcpt, c, rcpt),
        "bogus-helo": "ruleset=check_rcpt, arg1=%s, relay=%s, reject=550 5.7.1 %s... "
                      "bogus HELO name used: %s" % (rcpt, c, rcpt, t),
        "sender-domain": "ruleset=check_mail, arg1=<%s@nx.invalid>, relay=%s, reject=553 5.1.8 "
                         "<%s@nx.invalid>... Domain of sender address %s@nx.invalid does not "
                         "exist" % (local, c, local, local),
    }
    cls = draw(st.sampled_from(sorted(forms)))
    qid = draw(st.sampled_from(["", "4AH5XXPf%06d: ", "NOQUEUE: "]))
    pid = draw(st.integers(1000, 999999))
    if "%" in qid:
        qid = qid % pid
    return cls, ip, (FRAME % (draw(st.integers(0, 59)), pid)).decode() + qid + forms[cls]


@SETTINGS
@given(ban_line(), st.sampled_from(["normal", "aggressive"]))
def test_every_well_formed_ban_line_is_detected_in_both_engines(new_twin, sample, mode):
    """Not only "no decoy": a ban line whose client-chosen text the grammar
    reads one way counts one failure for its true client, in the C engine
    and in the twin."""
    cls, ip, text = sample
    ev = classify_alone(text.encode(), mode)
    assert ev is not None and ev.name == cls and ev.failures == 1 and norm(ev.ip) == norm(ip), \
        "C engine: %r on %s line %r" % (ev, cls, text)
    found = twin_failures(new_twin(), text.encode())
    assert [norm(f) for f, _ in found] == [norm(ip)], "twin: %r on %s line %r" % (found, cls, text)
    event(cls)
