"""smban-engine: puts smban's C classifier in charge of a fail2ban jail's
filter.  Copy this file into fail2ban's action.d/ (make install does) and
put it in a jail whose filter is smban's regex twin:

    [smban]
    filter = smban
    action = smban-engine.py[mode="%(known/mode)s"]
             smban-iptables.py[port="smtp,465,submission"]

It bans nothing itself: when fail2ban constructs it, it replaces the jail
filter's line processing with smban's session-aware classifier, which
returns failures the way fail2ban's own filter does; the jail's other
actions ban.  It attaches only when the running fail2ban is a version it
was tested with (smban.engine.VERSIONS: 1.0.2, 1.1.0, 1.1.2.dev1) and the
jail's failregex list is exactly the generated twin's; otherwise it logs a
warning saying why and the regex twin keeps working.

Options (strings, as fail2ban passes them):
    mode           normal (default): count the ban classes only;
                   aggressive: also the suspects (did not issue with no TLS
                   failure, lost input, unknown users, ...), never for an
                   address that delivered accepted mail recently.
                   "%(known/mode)s" takes the filter's mode
                   (filter = smban[mode=aggressive]).
    max_sessions   bound of the session table
    session_idle   seconds after which a quiet session is forgotten
    max_trusted    addresses remembered as legitimate senders
    trust_seconds  how long a delivery keeps an address trusted
    tls_grace      how long a peer that fell back from a failed STARTTLS
                   is excused its disconnects, rate limits and DNS failures
    ban, suspect, ignore
                   the operator's policy: class names (comma- or
                   space-separated) moved to ban, to suspect, or never
                   counted; only ban and suspect classes move.  A name that
                   is no class, or a class benign by nature, is an error at
                   start.  (python3 -c 'import smban; print(smban.CLASSES)')
                   (the defaults: python3 -c 'import smban; print(smban.DEFAULTS)')

`fail2ban-client reload` keeps it attached (reload and clearAllParams are
implemented, so fail2ban keeps this instance); stop gives the filter its own
processing back.

When smban cannot be imported (its C extension built for another Python
minor version, a shared library it needs gone, a damaged file), the action
still loads, so that fail2ban starts this jail and the jails after it: it
logs one error saying why, and the jail runs on the regex twin (which needs
no C); start, stop, ban, unban and reload do nothing.

This file must not be named smban.py: fail2ban 1.0 registers an action
module in sys.modules under its file name, which would shadow the package.
"""
import sys

from fail2ban.server.actions import ActionBase
from fail2ban.version import version as FAIL2BAN_VERSION

#: The modes when smban cannot be imported: the options are checked all the
#: same (a test keeps this equal to smban.MODES, their source).
FALLBACK_MODES = ("normal", "aggressive")

try:
    from smban.engine import MODES, Engine
except (ImportError, OSError) as e:   # what an unloadable extension raises
    Engine = None
    MODES = FALLBACK_MODES
    #: why smban is not available ("ModuleNotFoundError: No module named ...")
    IMPORT_ERROR = "%s: %s" % (type(e).__name__, e)
else:
    IMPORT_ERROR = None

_DEFAULTS = {"mode": "", "max_sessions": "", "session_idle": "",
             "max_trusted": "", "trust_seconds": "", "tls_grace": "",
             "ban": "", "suspect": "", "ignore": ""}
_TYPES = {"max_sessions": int, "session_idle": float, "max_trusted": int,
          "trust_seconds": float, "tls_grace": float, "ban": str, "suspect": str,
          "ignore": str}


def _parse(opts, warn):
    o = dict(_DEFAULTS)
    for k, v in opts.items():
        if k not in o:
            warn("smban-engine: unknown option %s=%r ignored", k, v)
            continue
        o[k] = str(v).strip()
    mode = o.pop("mode") or MODES[0]
    if mode not in MODES:
        raise ValueError("smban-engine: mode must be %s, not %r" % (" or ".join(MODES), mode))
    classifier = {}
    for k, v in o.items():
        if v:
            try:
                classifier[k] = _TYPES[k](v)
            except ValueError:
                raise ValueError("smban-engine: %s=%r is not a number" % (k, v)) from None
    return mode, classifier


def _policy_text(options):
    """The policy options given, as jail.local spells them ("" for none)."""
    return ", ".join('%s="%s"' % (k, options[k]) for k in ("ban", "suspect", "ignore")
                     if options.get(k))


class SmbanEngine(ActionBase):
    """fail2ban action: smban's classifier replaces the jail's regexes."""

    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        mode, classifier = _parse(opts, self._logSys.warning)
        flt = getattr(jail, "filter", None)
        self._engine = Engine(flt, mode, **classifier)
        self._attach("attached")

    def _attach(self, verb):
        why = self._engine.attach()
        name = getattr(self._jail, "name", "?")
        policy = _policy_text(self._engine.options)
        if why is None:
            self._logSys.notice(
                "[%s] smban-engine %s: smban's C classifier processes the jail's "
                "lines (mode=%s%s, fail2ban %s)", name, verb, self._engine.mode,
                "; " + policy if policy else "", FAIL2BAN_VERSION)
        else:
            self._logSys.warning(
                "[%s] smban-engine stands down, the regex filter stays in charge: %s%s",
                name, why, "; the regex filter does not apply the policy " + policy
                if policy else "")

    # the engine bans nothing itself; the jail's other actions do
    def start(self):
        pass

    def ban(self, aInfo):
        return True

    def unban(self, aInfo):
        return True

    def stop(self):
        """Give the filter its own line processing back."""
        self._engine.detach()

    def clearAllParams(self):
        """Called by fail2ban before reload(); the options are replaced as a
        whole by reload."""

    def reload(self, **opts):
        """After fail2ban-client reload: take the new options and check the
        (possibly changed) filter again; attach or stand down accordingly."""
        mode, classifier = _parse(opts, self._logSys.warning)
        self._engine.set_mode(mode, **classifier)
        self._attach("still attached")


class SmbanEngineUnavailable(ActionBase):
    """smban-engine when smban cannot be imported: one error at load, then
    nothing; the jail's regex filter (smban's twin) works alone."""

    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        _parse(opts, self._logSys.warning)   # a bad option fails as it always does
        self._logSys.error(
            "[%s] smban-engine cannot import smban (%s): the jail runs on smban's regex "
            "twin (filter.d/smban.conf, no C needed), without the session-aware "
            "classifier, until smban is rebuilt for Python %d.%d (%s)",
            getattr(jail, "name", "?"), IMPORT_ERROR, sys.version_info[0],
            sys.version_info[1], sys.executable)

    def start(self):
        pass

    def ban(self, aInfo):
        return True

    def unban(self, aInfo):
        return True

    def stop(self):
        pass

    def clearAllParams(self):
        pass

    def reload(self, **opts):
        pass


Action = SmbanEngine if IMPORT_ERROR is None else SmbanEngineUnavailable
