"""smban's C classifier inside a running fail2ban jail.

fail2ban has no plug-in point for filters; it loads Python code only through
actions, and hands every action its jail.  `Engine` uses that: it replaces
the jail filter's processLine (on the instance, never the class) with one
that asks smban's session-aware C classifier, and returns failures in the
shape fail2ban's own findFailure returns them:

    [failregex index, IPAddr, date, {"ip4"|"ip6": ip, "matches": [...], ...}]

so that fail2ban's counting (maxretry, findtime), ignoreip, bantime.increment,
its database and `fail2ban-client status` work unchanged.

It attaches only when it is safe to (see `Engine.why_not`): the running
fail2ban is a version this code was tested with, and the jail's filter is
smban's unmodified regex twin (filters/smban.conf, generated from the same
rule table).  Otherwise it logs why and leaves the regex twin in charge.

This is not a supported fail2ban API: it reads a few of the Filter's private
attributes (the last date seen, for dateless lines), which is why the
version is checked.
"""
import logging
import time

import smban
from smban.filter import twin_rules

log = logging.getLogger("fail2ban.smban-engine")

#: fail2ban versions the engine was tested with: Debian 12 (bookworm) ships
#: 1.0.2 (package 1.0.2-2).  processLine's date and findtime handling below
#: replicates that version's Filter.processLine.
TESTED_VERSIONS = ("1.0.2",)

MODES = ("normal", "aggressive")

#: Lines whose processing raised are logged at most this often (seconds).
ERROR_LOG_INTERVAL = 60.0


def fail2ban_version():
    from fail2ban.version import version
    return version


def class_index():
    """{class name: [indexes of its failregexes in the twin]}.

    Classes the twin has no failregex for (the suspects that count in
    aggressive mode: null-session, user-unknown, ...) report index 0; the
    class itself is in the failure's data under "smban" (aInfo["F-*"]).
    fail2ban 1.0.2's jail does not use the index; fail2ban-regex and tools
    that count hits per failregex do, and an index inside the list is what
    they can cope with.
    """
    out = {}
    for i, (name, _) in enumerate(twin_rules()):
        out.setdefault(name, []).append(i)
    return out


def expected_failregex(flt):
    """The failregex list fail2ban holds for the generated twin, resolved the
    way this filter resolves them (tags expanded with its usedns)."""
    from fail2ban.server.failregex import FailRegex
    return [FailRegex(r, prefRegex=flt.prefRegex, useDns=flt.getUseDns()).getRegex()
            for _, r in twin_rules()]


class Engine:
    """smban's classifier in charge of one fail2ban Filter's lines.

    Engine(flt, mode="normal", **classifier_options): nothing is changed
    until attach().  The classifier options are smban.Classifier's
    (max_sessions, session_idle, max_trusted, trust_seconds).
    """

    def __init__(self, flt, mode="normal", **classifier_options):
        if mode not in MODES:
            raise ValueError("mode must be normal or aggressive, not %r" % (mode,))
        self.filter = flt
        self.mode = mode
        self.options = classifier_options
        self.classifier = smban.Classifier(mode=mode, **classifier_options)
        self.index = class_index()
        self.lines = 0              # lines classified
        self.errors = 0             # lines that raised and went to the regex path
        self._next_error_log = 0.0
        self._wrapper = None

    # -- attaching --

    def why_not(self):
        """None when the engine may take over the filter, else why not (a
        sentence for fail2ban's log)."""
        try:
            version = fail2ban_version()
        except Exception as e:
            return "fail2ban's version is unknown (%s)" % e
        if version not in TESTED_VERSIONS:
            return ("fail2ban %s is not a version smban-engine was tested with (%s)"
                    % (version, ", ".join(TESTED_VERSIONS)))
        flt = self.filter
        if flt is None or not callable(getattr(flt, "processLine", None)):
            return "the jail has no filter"
        try:
            have = flt.getFailRegex()
            want = expected_failregex(flt)
        except Exception as e:
            return "the jail's failregex cannot be compared with smban's (%s)" % e
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
        """Take over the filter's processLine if why_not() is None; returns
        the reason it did not (None: attached).  Idempotent: attaching again,
        or attaching a new Engine to a filter another one holds, replaces the
        previous wrapper instead of wrapping it."""
        why = self.why_not()
        if why is not None:
            self.detach()
            return why
        flt = self.filter
        cls_process = type(flt).processLine
        self._orig = cls_process.__get__(flt, type(flt))
        self._wrapper = self.process
        flt.processLine = self._wrapper
        return None

    def attached(self):
        return self._wrapper is not None and \
            self.filter.__dict__.get("processLine") is self._wrapper

    def detach(self):
        """Give the filter its own processLine back, if this engine holds it
        (another Engine's wrapper is left alone)."""
        if self.attached():
            del self.filter.__dict__["processLine"]
        self._wrapper = None

    def set_mode(self, mode, **classifier_options):
        """A new mode or classifier options: a new classifier (sessions are
        forgotten).  The same ones: nothing happens."""
        if mode not in MODES:
            raise ValueError("mode must be normal or aggressive, not %r" % (mode,))
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
            text = "".join(line) if date else line
            ev = self.classifier.classify(text)
            self.lines += 1
            if ev is None or not ev.failures or ev.ip is None:
                return []
            return self._failures(ev, line, text, date)
        except Exception as e:
            self.errors += 1
            now = time.monotonic()
            if now >= self._next_error_log:
                self._next_error_log = now + ERROR_LOG_INTERVAL
                log.error("[%s] smban-engine: %r on line %r; this line goes through "
                          "the regex filter (%d such line(s) so far)",
                          getattr(self.filter, "jailName", "?"), e, line, self.errors)
            return self._orig(line, date)

    def _failures(self, ev, line, text, date):
        """fail2ban's failure list for an event that counts: the date and
        findtime handling of fail2ban 1.0.2's processLine, the ignoreregex
        check of its findFailure, then ev.failures entries (fail2ban adds
        one failure per entry)."""
        from fail2ban.server.ipdns import IPAddr
        from fail2ban.server.mytime import MyTime

        flt = self.filter
        no_date = False
        if date:
            tuple_line = line
            flt._Filter__lastTimeText = line[1]
            flt._Filter__lastDate = date
        else:
            tuple_line, date, no_date = self._file_date(text)

        if flt.checkFindTime and date is not None:
            if flt.inOperation:
                # a date far from now in operation: taken as now
                delta = int(date - MyTime.time())
                if abs(delta) > 60:
                    flt._logWarnOnce(
                        "_next_simByTimeWarn",
                        ("Detected a log entry %s %s the current time in operation mode. "
                         "This looks like a %s problem. Treating such entries as if they "
                         "just happened.", MyTime.seconds2str(abs(delta)),
                         "before" if delta < 0 else "after",
                         "latency" if -3300 <= delta < 0 else "timezone"),
                        ("Please check a jail for a timing issue. Line with odd timestamp: %s",
                         text))
                    date = MyTime.time()
                    flt._Filter__lastDate = date
            elif date < MyTime.time() - flt.getFindTime():
                # catching up after a start: older than findtime is ignored
                flt._logWarnOnce(
                    "_next_ignByTimeWarn",
                    ("Ignoring all log entries older than %ss; these are probably"
                     " messages generated while fail2ban was not running.", flt.getFindTime()),
                    ("Please check a jail for a timing issue. Line with odd timestamp: %s",
                     text))
                return []

        flt.processedLine = lambda: "".join(tuple_line[::2])
        if flt.getIgnoreRegex() and self._ignored(tuple_line):
            return []
        if no_date:
            flt._logWarnOnce(
                "_next_noTimeWarn",
                ("Found a match but no valid date/time found for %r.", tuple_line[1]),
                ("Match without a timestamp: %s", text),
                ("Please try setting a custom date pattern (see man page jail.conf(5)).",))
            if date is None and flt.checkFindTime:
                return []

        ip = ev.ip
        if ":" in ip:
            key, fid = "ip6", IPAddr(ip, IPAddr.FAM_IPv6)
        else:
            key, fid = "ip4", IPAddr(ip, IPAddr.FAM_IPv4)
        idx = self._regex_index(ev.name, tuple_line)
        out = []
        for i in range(ev.failures):
            fail = {key: ip, "smban": ev.name,
                    "matches": [tuple_line] if i == 0 else []}
            if ev.user is not None:
                fail["user"] = ev.user
            out.append([idx, fid, date, fail])
        return out

    def _regex_index(self, name, tuple_line):
        """The twin's failregex index for a failure of class name: its only
        one, or (a class with several, like pregreeting) the first that
        matches the line, as fail2ban's own filter would report."""
        idx = self.index.get(name)
        if not idx:
            return 0
        if len(idx) == 1:
            return idx[0]
        flt = self.filter
        buf = "".join(tuple_line[::2])
        pref = flt.prefRegex
        if pref is not None:
            pref.search(buf, [tuple_line])
            if not pref.hasMatched():
                return idx[0]
            buf = pref.getGroups().get("content") or buf
        regexes = flt._Filter__failRegex
        for i in idx:
            r = regexes[i]
            r.search(buf, [("", "", buf)])
            if r.hasMatched():
                return i
        return idx[0]

    def _file_date(self, line):
        """(tuple line, date or None, no date) of a file backend's line, as
        fail2ban 1.0.2's processLine finds them (the jail's datepattern and
        logtimezone apply)."""
        from fail2ban.server.mytime import MyTime

        flt = self.filter
        date = None
        dd = flt.dateDetector
        m = None
        if dd is not None:
            time_match = dd.matchTime(line)
            m = time_match[0]
        if m:
            s, e = m.start(1), m.end(1)
            m = line[s:e]
            tuple_line = (line[:s], m, line[e:])
            if m:
                date = dd.getTime(m, time_match)
                if date is not None:
                    date = date[0]
                    flt._Filter__lastTimeText = m
                    flt._Filter__lastDate = date
            elif flt._Filter__lastDate and flt._Filter__lastDate > MyTime.time() - 60:
                tuple_line = ("", flt._Filter__lastTimeText, line)
                date = flt._Filter__lastDate
            else:
                date = MyTime.time()
        else:
            tuple_line = ("", "", line)
        no_date = False
        if date is None:
            no_date = True
            if flt._Filter__lastDate and flt._Filter__lastDate > MyTime.time() - 60:
                tuple_line = ("", flt._Filter__lastTimeText, line)
                date = flt._Filter__lastDate
            elif flt.checkFindTime and flt.inOperation:
                date = MyTime.time()
        return tuple_line, date, no_date

    def _ignored(self, tuple_line):
        """True if an ignoreregex of the jail matches the line (without its
        date) or its message (what the twin's prefregex leaves): fail2ban
        1.0.2 tries the first before the failregex and the second after."""
        flt = self.filter
        buf = "".join(tuple_line[::2])
        if flt._ignoreLine(buf, [tuple_line]) is not None:
            return True
        pref = flt.prefRegex
        if pref is not None:
            pref.search(buf, [tuple_line])
            if pref.hasMatched():
                content = pref.getGroups().get("content")
                if content and flt._ignoreLine(content, [("", "", content)]) is not None:
                    return True
        return False
