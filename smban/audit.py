"""python3 -m smban audit: who would be banned, who would be spared, and why.

Replays sendmail logs (plain or gzip, in the order given) through smban's
classifier and fail2ban's counting (maxretry failures within findtime, per
IP), and reports: the addresses smban would ban and what did it; those it
would spare and why; every peer whose STARTTLS failed, with the reasons and
whether it then delivered; the server's own failures that sendmail
blamed on clients; and, with --compare, what fail2ban's own filters would
do on the same lines.

The whole report is built before anything is written, so an error (a file
that cannot be read, a filter that cannot be loaded) leaves no half report.
"""
import gc
import gzip
import json
import sys
import time

import smban
from smban import logs
from smban.cli import UsageError
from smban.logs import LogError, check_readable, open_log, size_of
from smban.replay import FINDTIME, MAXRETRY, BanCounter

#: Below this many bytes of input, no progress bar.
PROGRESS_MIN = 16 << 20

# Why a line of a client that was not banned did not count, from the
# strongest explanation to the weakest.  The first that applies to a client
# is its "reason".
REASONS = (
    ("below-threshold", "its failures never reached maxretry within findtime"),
    ("ignored", "classes the policy never counts (--ignore, smban-engine's ignore=)"),
    ("tls-fallback", "disconnected after a failed STARTTLS: an RFC 3207 sender "
                     "retries without TLS"),
    ("tls-grace", "disconnects, rate limits or DNS failures soon after an RFC 3207 "
                  "fallback (--tls-grace): an MTA retrying in clear text"),
    ("trusted", "suspect lines of an address that delivered accepted mail or "
                "authenticated: never counted"),
    ("server-tempfail", "the server's own temporary failure (a broken access map, a "
                        "DNSBL lookup failing): never counted, fix the server"),
    ("auth-server-error", "AUTH failed with a server-side code (-1 -2 -8 -24): "
                          "an auth-server outage, not a password guess"),
    ("suspect", "suspect lines: counted only with --mode aggressive"),
    ("once-per-session", "suspect lines its session had already counted"),
    ("tls-failure", "STARTTLS failures: never counted"),
    ("benign", "timeouts, dropped connections and TLS diagnostics: never counted"),
)
_RANK = {name: i for i, (name, _) in enumerate(REASONS)}
# What the classifier's reason for a line that did not count (Event.reason)
# says of its client; a benign line says it by its class when one of these.
_UNCOUNTED = {"trusted": "trusted", "already-counted": "once-per-session",
              "suspect-normal-mode": "suspect", "tls-fallback": "tls-fallback",
              "tls-grace": "tls-grace", "ignored": "ignored"}
_BENIGN = {"tls-failure": "tls-failure", "auth-server-error": "auth-server-error",
           "server-tempfail": "server-tempfail"}


def register(sub):
    p = sub.add_parser(
        "audit", help="who smban would ban and spare on your logs, and why",
        description=__doc__.split("\n\n")[1])
    p.add_argument("--mode", choices=smban.MODES, default=smban.MODES[0],
                   help="aggressive also counts suspect lines (default: %(default)s)")
    p.add_argument("--maxretry", type=int, default=MAXRETRY, metavar="N",
                   help="failures that ban (default: %d, as fail2ban)" % MAXRETRY)
    p.add_argument("--findtime", type=float, default=FINDTIME, metavar="S",
                   help="within this many seconds (default: %d, as fail2ban)" % FINDTIME)
    p.add_argument("--tls-grace", type=float, default=smban.DEFAULTS["tls_grace"],
                   metavar="S",
                   help="seconds for which a peer that fell back from a failed STARTTLS "
                        "is excused its disconnects, rate limits and DNS failures, as "
                        "smban-engine's tls_grace (default: %(default)g; 0: never)")
    for opt, what in (("ban", "ban"), ("suspect", "count only in aggressive mode"),
                      ("ignore", "never count")):
        p.add_argument("--" + opt, action="append", default=[], metavar="CLASSES",
                       help="a policy to preview: these classes (comma- or space-"
                            "separated; repeatable) %s, as smban-engine's %s= option; "
                            "the report shows what changes against the default policy"
                            % (what, opt))
    p.add_argument("--compare", action="append", default=[], metavar="FILTER",
                   help="also run this fail2ban filter over the same lines through "
                        "fail2ban's own Filter: a name such as "
                        "'sendmail-reject[mode=extra]' or a path (repeatable)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object instead of the report")
    p.add_argument("--rows", type=int, default=25, metavar="N",
                   help="rows per table of the report (default 25; 0: all)")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="sendmail logs, plain or gzip, oldest first "
                        "(e.g. $(ls -tr /var/log/mail.log*))")
    p.set_defaults(func=run)


# ---- reading, with a progress bar -----------------------------------------

class Progress:
    """A one-line progress bar on stderr, only on a terminal and only for
    large input; cleared when done so that the report starts clean."""

    def __init__(self, total, stream=None):
        self.stream = stream or sys.stderr
        self.total = total
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.on = tty and total >= PROGRESS_MIN
        self.label = ""
        self._shown = 0.0

    def show(self, done, label=None, force=False):
        if not self.on:
            return
        if label is not None:
            self.label = label
        now = time.monotonic()
        if not force and now - self._shown < 0.2:
            return
        self._shown = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(frac * 30)
        self.stream.write("\r%-34.34s [%-30s] %3d%%" % (self.label, bar, frac * 100))
        self.stream.flush()

    def clear(self):
        if self.on:
            self.stream.write("\r\033[K")
            self.stream.flush()


def pieces(paths, progress, size=logs.CHUNK):
    """Yield (path, data) over paths in order: data holds whole lines (see
    logs.chunks).  Moves progress by the bytes read from disk (for gzip, the
    compressed position)."""
    before = 0
    for path in paths:
        total = size_of(path)
        f = open_log(path)
        if isinstance(f, gzip.GzipFile):
            raw = f.fileobj
            # for the position in the compressed file, read it here
            gen = logs.pieces_of(f, path, size)
        else:
            f.close()
            raw = None
            gen = logs.chunks(path, size)
        pos = 0
        for data in gen:
            if raw is None:
                pos += len(data)
            else:
                try:
                    pos = raw.tell()
                except (ValueError, OSError):
                    pos = total
            yield path, data
            progress.show(before + min(pos, total))
        before += total
        progress.show(before, force=True)


# ---- smban's replay -------------------------------------------------------

class Client:
    """What the log says about one address."""

    __slots__ = ("ip", "host", "classes", "failures", "fail_classes", "first_fail",
                 "last_fail", "first", "last", "delivered", "authenticated",
                 "uncounted", "tls", "tls_first", "tls_last",
                 "tls_host", "fallbacks", "graced", "delivered_after", "clear_after")

    def __init__(self, ip):
        self.ip = ip
        self.host = None
        self.classes = {}          # class -> lines
        self.failures = 0          # failures counted toward a ban
        self.fail_classes = {}     # class -> failures
        self.first_fail = self.last_fail = None
        self.first = self.last = None     # lines that were not info
        self.delivered = 0         # accepted envelopes (nrcpts > 0)
        self.authenticated = 0
        self.uncounted = {}        # reason -> lines that did not count
        self.tls = None            # TLS failure reason -> count
        self.tls_first = self.tls_last = None
        self.tls_host = None
        self.fallbacks = 0
        self.graced = 0            # suspect lines the TLS grace spared
        self.delivered_after = 0   # accepted envelopes after its first TLS failure
        self.clear_after = 0       # ... of which in a session without TLS


class Audit:
    """smban's classifier and fail2ban's counting over a stream of buffers."""

    def __init__(self, mode, maxretry, findtime, tls_grace=None, policy=None):
        self.mode = mode
        if tls_grace is None:
            tls_grace = smban.DEFAULTS["tls_grace"]
        self.classifier = smban.Classifier(mode, tls_grace=tls_grace, **(policy or {}))
        self.server = {}           # server-tempfail reject text -> lines
        self.counter = BanCounter(maxretry, findtime)
        self.clients = {}
        self.classes = {}
        self.lines = 0
        self.tls_unattributed = 0
        self.ban_at = {}
        self._tls_pids = {}        # pid -> ip: a TLS session of a peer whose TLS once failed
        self._t = None
        self.first_time = None     # of the first event with a time since reset

    def feed(self, data, first_line):
        """Classify one buffer of whole lines; return its number of lines."""
        res = self.classifier.classify_buffer(data, first_line, events=True)
        if self.first_time is None:
            self.first_time = next((ev.time for _, ev in res["events"]
                                    if ev.time is not None), None)
        for name, n in res["classes"].items():
            self.classes[name] = self.classes.get(name, 0) + n
        self.lines += res["lines"]
        self._events(res["events"])
        return res["lines"]

    def _events(self, events):
        clients = self.clients
        counter = self.counter
        tls_pids = self._tls_pids
        last_t = self._t
        for _lineno, ev in events:
            kind, name, ip, t = ev.kind, ev.name, ev.ip, ev.time
            if t is None:
                t = last_t
            else:
                last_t = t
            if name == "server-tempfail":
                why = ev.detail or "-"
                self.server[why] = self.server.get(why, 0) + 1
            if ip is None:
                if name == "tls-failure":
                    self.tls_unattributed += 1
                continue
            c = clients.get(ip)
            if c is None:
                c = clients[ip] = Client(ip)
            cls = c.classes
            cls[name] = cls.get(name, 0) + 1
            if kind == "info":
                if name == "envelope":
                    if ev.delivered:
                        c.delivered += 1
                        if c.tls is not None:
                            c.delivered_after += 1
                            if tls_pids.get(ev.pid) != ip:
                                c.clear_after += 1
                elif name == "tls-session":
                    if c.tls is not None:
                        tls_pids[ev.pid] = ip
                elif name == "auth-success":
                    c.authenticated += 1
                if c.host is None and ev.host and ev.host[0] != "[" and ev.host != ip:
                    c.host = ev.host
                continue
            if ev.host and ev.host[0] != "[" and ev.host != ip:
                c.host = ev.host
            if c.first is None:
                c.first = t
            c.last = t
            n = ev.failures
            if n:
                c.failures += n
                fc = c.fail_classes
                fc[name] = fc.get(name, 0) + n
                if c.first_fail is None:
                    c.first_fail = t
                c.last_fail = t
                if counter.add(ip, t if t is not None else 0.0, n) and ip not in self.ban_at:
                    self.ban_at[ip] = t
            else:
                why = _UNCOUNTED.get(ev.reason) or _BENIGN.get(name, "benign")
                u = c.uncounted
                u[why] = u.get(why, 0) + 1
                if why == "tls-grace":
                    c.graced += 1
            if name == "tls-failure":
                if c.tls is None:
                    c.tls = {}
                    c.tls_first = t
                reason = ev.detail or "unknown"
                c.tls[reason] = c.tls.get(reason, 0) + 1
                c.tls_last = t
                c.tls_host = c.host or c.tls_host
            elif name == "tls-fallback":
                c.fallbacks += 1
        self._t = last_t

    # -- the lists --

    def banned(self):
        out = []
        for ip in self.counter.banned:
            c = self.clients[ip]
            out.append({"ip": ip, "host": c.host, "failures": c.failures,
                        "classes": dict(sorted(c.fail_classes.items(), key=_by_count)),
                        "first": iso(c.first_fail), "last": iso(c.last_fail),
                        "banned_at": iso(self.ban_at.get(ip))})
        out.sort(key=lambda d: (-d["failures"], d["ip"]))
        return out

    def spared(self):
        out = []
        for ip, c in self.clients.items():
            if ip in self.counter.banned:
                continue
            reasons = dict(c.uncounted)
            if c.failures:
                reasons["below-threshold"] = c.failures
            if not reasons:
                continue
            reason = min(reasons, key=_RANK.__getitem__)
            out.append({"ip": ip, "host": c.host, "reason": reason,
                        "reasons": dict(sorted(reasons.items(), key=lambda kv: _RANK[kv[0]])),
                        "failures": c.failures,
                        "classes": dict(sorted(((k, v) for k, v in c.classes.items()
                                                if smban_kind(k) != "info"), key=_by_count)),
                        "delivered": c.delivered, "authenticated": c.authenticated,
                        "first": iso(c.first), "last": iso(c.last)})
        out.sort(key=lambda d: (_RANK[d["reason"]], -sum(d["classes"].values()), d["ip"]))
        return out

    def tls(self):
        out = []
        for ip, c in self.clients.items():
            if c.tls is None:
                continue
            out.append({"ip": ip, "host": c.tls_host,
                        "reasons": dict(sorted(c.tls.items(), key=_by_count)),
                        "failures": sum(c.tls.values()), "fallbacks": c.fallbacks,
                        "graced": c.graced,
                        "delivered_after": c.delivered_after,
                        "clear_text": c.clear_after,
                        "banned": ip in self.counter.banned,
                        "first": iso(c.tls_first), "last": iso(c.tls_last)})
        out.sort(key=lambda d: (-d["failures"], d["ip"]))
        return out


_KINDS = {name: kind for name, kind, _why in smban.classes()}


def smban_kind(name):
    return _KINDS.get(name)


def _by_count(kv):
    return (-kv[1], kv[0])


def iso(t):
    """An epoch as local ISO 8601 with its offset (the log's own clock), or None."""
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + _offset(t)


def _offset(t):
    off = time.strftime("%z", time.localtime(t))
    return off[:3] + ":" + off[3:] if len(off) == 5 else off


def order_warnings(span):
    """Files whose lines start well before the previous file's end: given
    newest first (a shell glob puts maillog before maillog.1), the counting
    sees time run backwards."""
    out = []
    for (prev, _, prev_last), (path, first, _) in zip(span, span[1:]):
        if first is not None and prev_last is not None and first < prev_last - 3600:
            out.append("%s starts %s, before %s ends (%s): give the files oldest first, "
                       "e.g. $(ls -tr /var/log/mail.log*)"
                       % (path, _when(iso(first)), prev, _when(iso(prev_last))))
    return out


# ---- fail2ban's own filters -----------------------------------------------

def load_filters(specs):
    """The F2BFilters for --compare, all loaded before any line is read."""
    from smban.f2b import F2BFilter, FilterError
    out = []
    for spec in specs:
        try:
            out.append(F2BFilter(spec))
        except FilterError as exc:
            raise UsageError("--compare: %s" % exc) from None
    return out


def run_filter(flt, paths, maxretry, findtime, progress):
    """fail2ban's filter over every line, with the same counting: (counter,
    {ip: [first, last]}, lines fail2ban raised on, seconds)."""
    counter = BanCounter(maxretry, findtime)
    seen = {}
    errors = 0
    t0 = time.perf_counter()
    for _path, data in pieces(paths, progress):
        for raw in bytes(data).split(b"\n"):
            if not raw:
                continue
            line = raw.decode("utf-8", "replace")
            try:
                found = flt.failures(line)
            except Exception:        # fail2ban's own loop logs and goes on
                errors += 1
                continue
            for ip, _idx, when in found:
                counter.add(ip, when)
                span = seen.get(ip)
                if span is None:
                    seen[ip] = [when, when]
                else:
                    span[1] = when
    return counter, seen, errors, time.perf_counter() - t0


def compare(audit, counter, seen):
    ours = audit.counter.banned
    theirs = counter.banned
    clients = audit.clients
    banned, only_theirs, only_ours = [], [], []
    for ip in theirs:
        first, last = seen[ip]
        banned.append({"ip": ip, "failures": counter.failures[ip],
                       "first": iso(first), "last": iso(last)})
        if ip in ours:
            continue
        c = clients.get(ip)
        why = []
        if c is not None and c.delivered:
            why.append("delivered %d accepted message%s" % (c.delivered, _s(c.delivered)))
        if c is not None and c.tls is not None:
            n = sum(c.tls.values())
            why.append("STARTTLS failed %d time%s" % (n, _s(n)))
        if c is not None and c.authenticated:
            why.append("authenticated %d time%s" % (c.authenticated, _s(c.authenticated)))
        sp = None
        if c is not None:
            sp = "below-threshold" if c.failures else None
            if sp is None and c.uncounted:
                sp = min(c.uncounted, key=_RANK.__getitem__)
        only_theirs.append({"ip": ip, "host": c.host if c else None,
                            "failures": counter.failures[ip],
                            "likely_false_positive": bool(why), "why": why,
                            "smban": {"failures": c.failures if c else 0, "reason": sp,
                                      "classes": dict(sorted(c.classes.items(), key=_by_count))
                                      if c else {}}})
    for ip in ours:
        if ip in theirs:
            continue
        c = clients[ip]
        only_ours.append({"ip": ip, "host": c.host, "failures": c.failures,
                          "classes": dict(sorted(c.fail_classes.items(), key=_by_count))})
    banned.sort(key=lambda d: (-d["failures"], d["ip"]))
    only_theirs.sort(key=lambda d: (not d["likely_false_positive"], -d["failures"], d["ip"]))
    only_ours.sort(key=lambda d: (-d["failures"], d["ip"]))
    return {"banned": banned, "only_theirs": only_theirs, "only_ours": only_ours}


def _s(n):
    return "" if n == 1 else "s"


# ---- the command ----------------------------------------------------------

def run(args):
    if args.maxretry < 1:
        raise UsageError("--maxretry must be at least 1")
    if not args.findtime > 0:
        raise UsageError("--findtime must be more than 0 seconds")
    if not args.tls_grace >= 0:
        raise UsageError("--tls-grace must be 0 (never) or more seconds")
    args.policy = policy_of(args)
    if args.rows < 0:
        raise UsageError("--rows must be 0 (all) or more")
    try:
        check_readable(args.files)
    except LogError as exc:
        raise UsageError(str(exc)) from None
    filters = load_filters(args.compare)

    total = sum(size_of(p) for p in args.files)
    progress = Progress(total)
    try:
        report = audit(args, filters, progress)
    except LogError as exc:
        raise UsageError(str(exc)) from None
    finally:
        progress.clear()
    if args.json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        sys.stdout.write(render(report, args.rows))
    return 0


def audit(args, filters, progress):
    """The report as a dict (the --json object)."""
    t0 = time.perf_counter()
    a = Audit(args.mode, args.maxretry, args.findtime, args.tls_grace, args.policy)
    progress.show(0, "smban audit", force=True)
    was = gc.isenabled()
    gc.disable()      # a buffer's events are many small objects, none cyclic
    try:
        line = {}
        span = []              # [path, first time, last time] per file, in order
        for path, data in pieces(args.files, progress):
            if not span or span[-1][0] != path:
                span.append([path, None, None])
            line[path] = line.get(path, 1) + a.feed(data, line.get(path, 1))
            if span[-1][1] is None:
                span[-1][1] = a.first_time
            span[-1][2] = a._t
            a.first_time = None
    finally:
        if was:
            gc.enable()
    st = a.classifier.stats()
    report = {
        "files": list(args.files),
        "mode": args.mode, "maxretry": args.maxretry, "findtime": args.findtime,
        "tls_grace": args.tls_grace,
        "policy": args.policy,
        "lines": a.lines,
        "seconds": None,
        "not_utf8": st["not_utf8"],
        "skipped": {"long": st["skipped_long"], "nul": st["skipped_nul"]},
        "classes": dict(sorted(a.classes.items(), key=_by_count)),
        "clients": len(a.clients),
        "banned": a.banned(),
        "spared": a.spared(),
        "tls": a.tls(),
        "tls_unattributed": a.tls_unattributed,
        "server_problems": [{"reject": k, "lines": v}
                            for k, v in sorted(a.server.items(), key=_by_count)],
        "compare": {},
        "compare_seconds": {},
        "warnings": order_warnings(span),
    }
    if args.policy:
        report["policy_difference"] = policy_difference(args, a, progress)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    for flt in filters:
        progress.show(0, "fail2ban " + flt.spec, force=True)
        counter, seen, errors, secs = run_filter(flt, args.files, args.maxretry,
                                                 args.findtime, progress)
        report["compare"][flt.spec] = compare(a, counter, seen)
        report["compare_seconds"][flt.spec] = round(secs, 3)
        if errors:
            report.setdefault("compare_errors", {})[flt.spec] = errors
    return report


def policy_of(args):
    """{"ban": "a,b", ...} of the --ban/--suspect/--ignore given; checked
    here by the classifier itself, so that a wrong name is an error before
    any line is read."""
    policy = {}
    for opt in ("ban", "suspect", "ignore"):
        names = [n for v in getattr(args, opt) for n in v.replace(",", " ").split()]
        if names:
            policy[opt] = ",".join(names)
    try:
        smban.Classifier(args.mode, **policy)
    except ValueError as exc:
        raise UsageError("--%s" % exc) from None
    return policy


def policy_difference(args, a, progress):
    """The same logs under the default policy: who the given policy bans
    that the default would not, and the other way round."""
    base = Audit(args.mode, args.maxretry, args.findtime, args.tls_grace)
    progress.show(0, "smban audit, default policy", force=True)
    line = {}
    for path, data in pieces(args.files, progress):
        line[path] = line.get(path, 1) + base.feed(data, line.get(path, 1))
    ours, theirs = set(a.counter.banned), set(base.counter.banned)
    more = [{"ip": ip, "failures": a.clients[ip].failures,
             "classes": dict(sorted(a.clients[ip].fail_classes.items(), key=_by_count))}
            for ip in ours - theirs]
    fewer = [{"ip": ip, "failures": base.clients[ip].failures,
              "classes": dict(sorted(base.clients[ip].fail_classes.items(), key=_by_count))}
             for ip in theirs - ours]
    for lst in (more, fewer):
        lst.sort(key=lambda d: (-d["failures"], d["ip"]))
    return {"banned_only_with_policy": more, "banned_only_without": fewer}


# ---- the human report -----------------------------------------------------

def _clean(text):
    """Log text made safe for a terminal: no control characters."""
    if text is None:
        return "-"
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


def _short(host, width=40):
    """A host name for a table column: long PTR names cut in the middle."""
    if not host:
        return "-"
    return host if len(host) <= width else host[:width // 2 - 2] + "..." + host[-(width // 2 - 1):]


def _when(stamp):
    return stamp[:19].replace("T", " ") if stamp else "-"


def _counts(d):
    return ", ".join("%s x%d" % (_clean(k), v) for k, v in d.items())


def table(headers, rows, right=(), indent=2, limit=0):
    """Aligned columns, two spaces apart; columns in right are right-aligned.
    With limit, only the first limit rows, and a line saying how many more."""
    more = 0
    if limit and len(rows) > limit:
        more, rows = len(rows) - limit, rows[:limit]
    rows = [[_clean(x) if not isinstance(x, int) else str(x) for x in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    out = []
    for r in [list(headers)] + rows:
        cells = []
        for i, x in enumerate(r):
            last = i == len(r) - 1
            if i in right:
                cells.append(x.rjust(widths[i]))
            else:
                cells.append(x if last else x.ljust(widths[i]))
        out.append(" " * indent + "  ".join(cells).rstrip())
    if more:
        out.append(" " * indent + "... and %d more (--rows 0 or --json lists them all)" % more)
    return "\n".join(out) + "\n"


def render(r, limit=0):
    """The human report of the dict audit() returns; limit: rows per table."""
    w = []
    nfiles = len(r["files"])
    w.append("smban audit: %s lines in %d file%s, mode %s, %.2f s; a ban is %d failures "
             "within %g s\n" % (format(r["lines"], ","), nfiles, _s(nfiles), r["mode"],
                                r["seconds"], r["maxretry"], r["findtime"]))
    clean = r["clients"] - len(r["banned"]) - len(r["spared"])
    w.append("%d client address%s: %d would be banned, %d spared, %d with nothing "
             "against them\n" % (r["clients"], "" if r["clients"] == 1 else "es",
                                 len(r["banned"]), len(r["spared"]), clean))
    notes = []
    if r["not_utf8"]:
        notes.append("%d not UTF-8 (classified all the same)" % r["not_utf8"])
    if r["skipped"]["long"] or r["skipped"]["nul"]:
        notes.append("%d skipped (longer than 64 KiB or holding a NUL byte)"
                     % (r["skipped"]["long"] + r["skipped"]["nul"]))
    if notes:
        w.append("lines: " + "; ".join(notes) + "\n")
    for text in r["warnings"]:
        w.append("warning: %s\n" % _clean(text))

    w.append("\nWould be banned (%d)\n" % len(r["banned"]))
    if r["banned"]:
        w.append(table(("client", "failures", "first", "last", "what did it"),
                       [(b["ip"], b["failures"], _when(b["first"]), _when(b["last"]),
                         _counts(b["classes"])) for b in r["banned"]], right=(1,), limit=limit))
    else:
        w.append("  nobody\n")

    w.append("\nSpared (%d), and why\n" % len(r["spared"]))
    if r["spared"]:
        rows = []
        for s in r["spared"]:
            note = _counts(s["classes"])
            if s["failures"]:
                note += "; %d counted" % s["failures"]
            if s["delivered"]:
                note += "; delivered %d message%s" % (s["delivered"], _s(s["delivered"]))
            if s["authenticated"]:
                note += "; authenticated"
            rows.append((s["ip"], s["reason"], note))
        w.append(table(("client", "reason", "its lines"), rows, limit=limit))
        used = {s["reason"] for s in r["spared"]}
        for name, text in REASONS:
            if name in used:
                w.append("    %-18s %s\n" % (name, text))
    else:
        w.append("  nobody\n")

    w.append("\nSTARTTLS failures (%d peer%s)\n" % (len(r["tls"]), _s(len(r["tls"]))))
    if r["tls"]:
        rows = []
        for t in r["tls"]:
            after = str(t["delivered_after"])
            if t["delivered_after"]:
                after += " (%d in clear text)" % t["clear_text"]
            rows.append((t["ip"], _short(t["host"]), t["failures"], _counts(t["reasons"]),
                         t["fallbacks"], t["graced"], after,
                         "BANNED" if t["banned"] else "spared"))
        w.append(table(("client", "host", "failures", "reasons", "fallbacks", "graced",
                        "delivered after", "smban"), rows, right=(2, 4, 5), limit=limit))
        if any(t["graced"] for t in r["tls"]):
            w.append("  graced: disconnects, rate limits and DNS failures within %g s of a\n"
                     "  fallback, not counted (--tls-grace).\n" % r["tls_grace"])
        if any(t["clear_text"] for t in r["tls"]):
            w.append("  A peer whose handshake fails and which then delivers in clear text is a\n"
                     "  legitimate MTA with an old TLS stack (RFC 3207 fallback): never ban it.\n")
    else:
        w.append("  none\n")
    if r["tls_unattributed"]:
        w.append("  (%d STARTTLS failure%s without a client address)\n"
                 % (r["tls_unattributed"], _s(r["tls_unattributed"])))

    if r.get("policy_difference") is not None:
        d = r["policy_difference"]
        w.append("\nThe policy %s against the default one\n"
                 % ", ".join("%s=%s" % kv for kv in r["policy"].items()))
        w.append("  bans %d more, %d fewer\n" % (len(d["banned_only_with_policy"]),
                                                 len(d["banned_only_without"])))
        for title, key in (("banned only with it", "banned_only_with_policy"),
                           ("banned only without it", "banned_only_without")):
            if d[key]:
                w.append("  %s:\n" % title)
                w.append(table(("client", "failures", "what did it"),
                               [(x["ip"], x["failures"], _counts(x["classes"]))
                                for x in d[key]], right=(1,), indent=4, limit=limit))

    if r["server_problems"]:
        n = sum(p["lines"] for p in r["server_problems"])
        w.append("\nServer problems (%d line%s): temporary failures of this server that\n"
                 "sendmail reported against its clients; never counted, but mail is "
                 "refused\n" % (n, _s(n)))
        w.append(table(("lines", "reject"), [(p["lines"], p["reject"])
                                             for p in r["server_problems"]],
                       right=(0,), limit=limit))
        w.append("  4.3.0 Temporary system failure: an access map (or another map) sendmail\n"
                 "  cannot read -- rebuild it with makemap; a DNSBL lookup failure: check\n"
                 "  the resolver.\n")

    if r["compare"]:
        w.append("\nfail2ban's own filters on the same lines, with the same counting\n")
        w.append(table(("filter", "bans", "only theirs", "likely false positives",
                        "only smban", "seconds"),
                       [(spec, len(c["banned"]), len(c["only_theirs"]),
                         sum(1 for x in c["only_theirs"] if x["likely_false_positive"]),
                         len(c["only_ours"]), "%.2f" % r["compare_seconds"][spec])
                        for spec, c in r["compare"].items()], right=(1, 2, 3, 4, 5)))
        for spec, c in r["compare"].items():
            n = r.get("compare_errors", {}).get(spec)
            if n:
                w.append("  (fail2ban raised on %d line%s with %s)\n" % (n, _s(n), spec))
            if c["only_theirs"]:
                w.append("\n  %s bans, smban does not (%d)\n" % (spec, len(c["only_theirs"])))
                rows = []
                for x in c["only_theirs"]:
                    sm = x["smban"]
                    verdict = "spared: %s" % sm["reason"] if sm["reason"] else "nothing against it"
                    note = ("LIKELY FALSE POSITIVE: " + ", ".join(x["why"])
                            if x["likely_false_positive"] else "")
                    rows.append((x["ip"], x["failures"], verdict, note))
                w.append(table(("client", "failures", "smban", "note"), rows, right=(1,),
                               indent=4, limit=limit))
            if c["only_ours"]:
                w.append("\n  smban bans, %s does not (%d)\n" % (spec, len(c["only_ours"])))
                w.append(table(("client", "failures", "what did it"),
                               [(x["ip"], x["failures"], _counts(x["classes"]))
                                for x in c["only_ours"]], right=(1,), indent=4, limit=limit))

    w.append("\nLines by class\n")
    if r["classes"]:
        w.append(table(("class", "kind", "lines"),
                       [(k, smban_kind(k) or "-", v) for k, v in r["classes"].items()],
                       right=(2,)))
    else:
        w.append("  no sendmail line recognised\n")
    return "".join(w)
