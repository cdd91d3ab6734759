"""smban's C classifier inside a running fail2ban jail.

fail2ban has no plug-in point for filters; it loads Python code only through
actions, and hands every action its jail.  `Engine` uses that to put the C
classifier in front of the jail filter's regexes, on the instance, never the
class:

- processLine asks the session-aware classifier first; a line that is no
  failure ends there (most lines: no date parsing, no regex);
- a failure goes through the filter's own processLine, so fail2ban keeps
  its date detection, findtime and operation-mode logic, and that calls
  findFailure, which the engine answers with the classifier's verdict in
  the shape fail2ban's own findFailure returns:

    [failregex index, IPAddr, date, {"ip4"|"ip6": ip, "matches": [...], ...}]

so that fail2ban's counting (maxretry, findtime), ignoreip, ignoreregex,
bantime.increment, its database and `fail2ban-client status` work unchanged.

It attaches only when it is safe to (see `Engine.why_not`): the running
fail2ban is one of VERSIONS, and the jail's filter is smban's unmodified
regex twin (filters/smban.conf, generated from the same rule table).
Otherwise it logs why and leaves the regex twin in charge.

What it relies on beyond fail2ban's configuration API: the Filter's
processLine(line, date) calling self.findFailure(tupleLine, date,
noDate=...) and the failure shape above; the filter's prefRegex; the
protected helpers _ignoreLine and _logWarnOnce.  The same in every version
of the table.  A line that is no failure does not update the filter's "last
date seen" (used for a dateless line within 60 s of a dated one).
"""
import logging
import time

import smban
from smban.filter import failregex_by_rule, twin_rules

log = logging.getLogger("fail2ban.smban-engine")

#: fail2ban versions the engine was tested with, and who ships them.  Their
#: Filter.processLine and findFailure hold what the engine relies on (see
#: above); a version not listed here keeps the regex twin.
VERSIONS = {
    "1.0.2": "Debian 12, Ubuntu 24.04",
    "1.1.0": "Debian 13, Fedora, EPEL 9, Arch",
    "1.1.2.dev1": "the next release (upstream master)",
}
TESTED_VERSIONS = tuple(VERSIONS)

MODES = smban.MODES

#: Client addresses whose fail2ban IPAddr is kept for the next failure.
ADDR_CACHE = 1024

#: Lines whose processing raised are logged at most this often (seconds).
ERROR_LOG_INTERVAL = 60.0


def _bad_mode(mode):
    return "mode must be %s, not %r" % (" or ".join(MODES), mode)


def fail2ban_version():
    from fail2ban.version import version
    return version


def class_index(policy=None):
    """{class name: [indexes of its failregexes in the twin]}.

    A failure's index is its rule's failregex (see Engine._regex_index);
    classes the twin has no failregex for (the suspects that count in
    aggressive mode: null-session, user-unknown, ...) report index 0; the
    class itself is in the failure's data under "smban" (aInfo["F-*"]).
    fail2ban 1.0.2's jail does not use the index; fail2ban-regex and tools
    that count hits per failregex do, and an index inside the list is what
    they can cope with.
    """
    out = {}
    for i, (name, _) in enumerate(twin_rules(policy)):
        out.setdefault(name, []).append(i)
    return out


def expected_failregex(flt, policy=None):
    """The failregex list fail2ban holds for the generated twin (of the
    policy), resolved the way this filter resolves them (tags expanded with
    its usedns)."""
    from fail2ban.server.failregex import FailRegex
    return [FailRegex(r, prefRegex=flt.prefRegex, useDns=flt.getUseDns()).getRegex()
            for _, r in twin_rules(policy)]


def policy_of(options):
    """The policy part of the classifier options (ban, suspect, ignore)."""
    return {k: options[k] for k in ("ban", "suspect", "ignore") if options.get(k)}


class Engine:
    """smban's classifier in charge of one fail2ban Filter's lines.

    Engine(flt, mode=MODES[0], **classifier_options): nothing is changed
    until attach().  The classifier options are smban.Classifier's
    (max_sessions, session_idle, max_trusted, trust_seconds, tls_grace, and
    the policy: ban, suspect, ignore).  The jail's filter must be smban's
    twin, as installed or as exported for the same policy
    (python3 -m smban export-filter --ban ...).
    """

    def __init__(self, flt, mode=MODES[0], **classifier_options):
        if mode not in MODES:
            raise ValueError(_bad_mode(mode))
        self.filter = flt
        self.mode = mode
        self.options = classifier_options
        self.classifier = smban.Classifier(mode=mode, **classifier_options)
        self.index = class_index()
        self.by_rule = failregex_by_rule()
        self.errors = 0             # lines that raised and went to the regex path
        self._next_error_log = 0.0
        self._wrapper = self._finder = self._event = None
        self._addrs = {}

    @property
    def lines(self):
        """Lines the classifier has seen."""
        return self.classifier.stats()["lines"]

    # -- attaching --

    def why_not(self):
        """None when the engine may take over the filter, else why not (a
        sentence for fail2ban's log)."""
        try:
            version = fail2ban_version()
        except Exception as e:
            return "fail2ban's version is unknown (%s)" % e
        if version not in VERSIONS:
            return ("fail2ban %s is not a version smban-engine was tested with (%s)"
                    % (version, ", ".join(VERSIONS)))
        flt = self.filter
        if flt is None or not callable(getattr(flt, "processLine", None)):
            return "the jail has no filter"
        policy = policy_of(self.options)
        try:
            have = flt.getFailRegex()
            want = expected_failregex(flt)
            if have != want and policy:
                # the twin exported for the engine's own policy
                mine = expected_failregex(flt, policy)
                if have == mine:
                    want = mine
                else:
                    policy = None
            else:
                policy = None
        except Exception as e:
            return "the jail's failregex cannot be compared with smban's (%s)" % e
        self.index = class_index(policy)
        self.by_rule = failregex_by_rule(policy)
        if have != want:
            if len(have) != len(want):
                return ("the jail's filter is not smban's unmodified regex twin: %d "
                        "failregex, the twin has %d" % (len(have), len(want)))
            bad = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
            return ("the jail's filter is not smban's unmodified regex twin: "
                    "failregex %d differs" % bad)
        try:
            maxlines = flt.getMaxLines()
        except Exception:
            maxlines = 1
        if maxlines != 1:
            return "the jail's filter sets maxlines=%s; the engine reads one line at a time" % maxlines
        return None

    def attach(self):
        """Take over the filter's processLine and findFailure if why_not()
        is None; returns the reason it did not (None: attached).
        Idempotent: attaching again, or attaching a new Engine to a filter
        another one holds, replaces the previous hooks instead of wrapping
        them."""
        why = self.why_not()
        if why is not None:
            self.detach()
            return why
        flt = self.filter
        self._orig_process = type(flt).processLine.__get__(flt, type(flt))
        self._orig_find = type(flt).findFailure.__get__(flt, type(flt))
        self._wrapper = self.process
        self._finder = self._find_failure
        flt.processLine = self._wrapper
        flt.findFailure = self._finder
        return None

    def attached(self):
        return self._wrapper is not None and \
            self.filter.__dict__.get("processLine") is self._wrapper

    def detach(self):
        """Give the filter its own processLine and findFailure back, if this
        engine holds them (another Engine's hooks are left alone)."""
        if self.attached():
            del self.filter.__dict__["processLine"]
            if self.filter.__dict__.get("findFailure") is self._finder:
                del self.filter.__dict__["findFailure"]
        self._wrapper = None

    def set_mode(self, mode, **classifier_options):
        """A new mode or classifier options: a new classifier (sessions are
        forgotten).  The same ones: nothing happens."""
        if mode not in MODES:
            raise ValueError(_bad_mode(mode))
        if mode == self.mode and classifier_options == self.options:
            return
        self.classifier = smban.Classifier(mode=mode, **classifier_options)
        self.mode, self.options = mode, classifier_options

    # -- the line path --

    def process(self, line, date=None):
        """Filter.processLine's replacement: same arguments (a str from file
        backends; a (prefix, date text, message) tuple and an epoch from the
        systemd backend), same result (a list of failures)."""
        try:
            # the Event only of a line that counts against a known client
            ev = self.classifier.failure(line if date is None else "".join(line))
        except Exception as e:
            self._failed(e, line)
            return self._orig_process(line, date)
        if ev is None:
            return []
        # fail2ban's own date and findtime handling, then _find_failure
        self._event = ev
        try:
            return self._orig_process(line, date)
        finally:
            self._event = None

    def _failed(self, e, line):
        self.errors += 1
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + ERROR_LOG_INTERVAL
            log.error("[%s] smban-engine: %r on line %r; this line goes through "
                      "the regex filter (%d such line(s) so far)",
                      getattr(self.filter, "jailName", "?"), e, line, self.errors)

    def _find_failure(self, tuple_line, date, noDate=False):
        """Filter.findFailure's replacement, called by the filter's own
        processLine: the failures of the event being processed (the
        ignoreregex and no-date checks of fail2ban's findFailure, then
        ev.failures entries: fail2ban adds one failure per entry).  Outside
        process() (fail2ban-regex, tests), the filter's own findFailure."""
        ev = getattr(self, "_event", None)
        if ev is None:
            return self._orig_find(tuple_line, date, noDate=noDate)
        flt = self.filter
        if flt.getIgnoreRegex() and self._ignored(tuple_line):
            return []
        if noDate:
            flt._logWarnOnce(
                "_next_noTimeWarn",
                ("Found a match but no valid date/time found for %r.", tuple_line[1]),
                ("Match without a timestamp: %s", "".join(tuple_line)),
                ("Please try setting a custom date pattern (see man page jail.conf(5)).",))
            if date is None and flt.checkFindTime:
                return []
        ip = ev.ip
        key, fid = self._ipaddr(ip)
        idx = self._regex_index(ev)
        out = []
        for i in range(ev.failures):
            fail = {key: ip, "smban": ev.name,
                    "matches": [tuple_line] if i == 0 else []}
            if ev.user is not None:
                fail["user"] = ev.user
            out.append([idx, fid, date, fail])
        return out

    def _ipaddr(self, ip):
        """("ip4" or "ip6", fail2ban's IPAddr) of an address the classifier
        reported (a few recent ones kept: a brute forcer repeats itself)."""
        hit = self._addrs.get(ip)
        if hit is None:
            from fail2ban.server.ipdns import IPAddr
            if ":" in ip:
                hit = "ip6", IPAddr(ip, IPAddr.FAM_IPv6)
            else:
                hit = "ip4", IPAddr(ip, IPAddr.FAM_IPv4)
            if len(self._addrs) >= ADDR_CACHE:
                self._addrs.clear()
            self._addrs[ip] = hit
        return hit

    def _content(self, tuple_line):
        """The message the twin's prefregex leaves of a line (None: it does
        not match)."""
        buf = "".join(tuple_line[::2])
        pref = self.filter.prefRegex
        if pref is None:
            return buf
        pref.search(buf, [tuple_line])
        if not pref.hasMatched():
            return None
        return pref.getGroups().get("content") or buf

    def _regex_index(self, ev):
        """The twin's failregex index for a failure, as fail2ban's own filter
        would report it: the failregex of the rule the line matched (the
        jail's failregex list is the twin's: why_not checked it, so the
        index names the same regex).  A failure of another class than its
        line's rule (pending failures the line resolved) or of a rule the
        twin lacks (a suspect counted in aggressive mode) takes the first
        failregex of its class, or 0."""
        name, idx = self.by_rule[ev.rule]
        if idx is not None and name == ev.name:
            return idx
        idx = self.index.get(ev.name)
        return idx[0] if idx else 0

    def _ignored(self, tuple_line):
        """True if an ignoreregex of the jail matches the line (without its
        date) or its message (what the twin's prefregex leaves): fail2ban
        tries the first before the failregex and the second after."""
        flt = self.filter
        buf = "".join(tuple_line[::2])
        if flt._ignoreLine(buf, [tuple_line]) is not None:
            return True
        content = self._content(tuple_line)
        return bool(content) and flt._ignoreLine(content, [("", "", content)]) is not None
