"""smban: a fail2ban plug-in library for sendmail servers.

    import smban
    c = smban.Classifier(mode="normal")
    ev = c.classify(line)        # an Event, or None for a line of no interest
    if ev and ev.failures:
        ...                      # ev.ip counts ev.failures toward a ban

The classification policy (classes, session rules, threat model) is in
README.md, "How it works" and "Threat model".
"""
from smban._core import (CLASSES, DEFAULTS, KINDS, MAX_LINE, MODES, REASONS,
                         Classifier as _Classifier, Event, classes, reasons, rules)

__all__ = ["Classifier", "Event", "EVENT_FIELDS", "MAX_LINE", "classes", "rules",
           "reasons", "KINDS", "CLASSES", "REASONS", "MODES", "DEFAULTS"]

__version__ = "0.1.0"

#: The fields of an Event, in order.
EVENT_FIELDS = Event.__match_args__

# From the C core, their one source (ext/rules.def, ext/smban.h):
#   KINDS     the kinds, from the strongest to the weakest;
#   CLASSES   the class names (Event.name), in table order;
#   REASONS   why a line counted or did not (Event.reason; reasons() says each);
#   MODES     the Classifier's modes, the default first;
#   DEFAULTS  the Classifier's defaults.


class Classifier(_Classifier):
    """A session-aware classifier of sendmail log lines.

    Classifier(mode="{mode}", *, max_sessions={max_sessions}, session_idle={session_idle},
               max_trusted={max_trusted}, trust_seconds={trust_seconds},
               tls_grace={tls_grace}, ref_time=None, programs=None, regex_only=False,
               ban=None, suspect=None, ignore=None)

    mode          "normal" counts ban classes only; "aggressive" also counts
                  suspects, except for addresses that delivered accepted mail
                  (or authenticated) within trust_seconds.
    ban, suspect, ignore
                  the operator's policy: class names (a str, comma- or
                  space-separated, or an iterable) moved to ban, to suspect,
                  or never counted (reason "ignored"); only ban and suspect
                  classes move; anything else is a ValueError.
    tls_grace     seconds for which a peer that fell back from a failed
                  STARTTLS (tls-fallback) is excused its disconnects, rate
                  limits and DNS failures (0: never).
    max_sessions  bound of the session table (least recently used evicted).
    session_idle  seconds of log time after which a session is forgotten.
    ref_time      epoch used to infer the year of RFC 3164 dates (default:
                  the wall clock).
    programs      syslog tags taken as sendmail (default {programs}).
    regex_only    use the rule table's patterns even for the lines that have
                  an equivalent hand-written parser (for tests).

    classify(line) takes lines in log order and returns an Event or None;
    classify_buffer(data) classifies a whole buffer in C without the GIL.
    """

    __slots__ = ()

    if __doc__:       # None under python -OO
        __doc__ = __doc__.format(**DEFAULTS)
