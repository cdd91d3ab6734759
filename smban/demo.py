"""python3 -m smban demo: smban on a bundled sample log.

The log holds the story (an IronPort MTA whose STARTTLS fails with "no
shared cipher", which disconnects and retries in clear text), a password
guesser, a relay prober and a pre-greeting bot.  The demo classifies it,
replays fail2ban's counting (maxretry 5 in 10 minutes), and runs fail2ban's
stock sendmail filters over the same lines for comparison.
"""
import collections
import os
import sys

import smban
from smban.replay import FINDTIME, MAXRETRY, BanCounter

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "demo-maillog")


def register(sub):
    p = sub.add_parser("demo", help="classify a bundled sample log and show who would be banned",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--mode", choices=smban.MODES, default=smban.MODES[0])
    p.add_argument("file", nargs="?", default=SAMPLE, help="a log (default: the bundled sample)")
    p.set_defaults(func=run)


def stock_bans(lines, spec):
    """IPs fail2ban's own filter `spec` would ban on lines, or None if
    fail2ban cannot be loaded here."""
    try:
        from smban.f2b import F2BFilter, FilterError
        flt = F2BFilter(spec)
    except Exception as exc:      # fail2ban missing or different: say so, go on
        print("  (fail2ban's %s could not be loaded: %s)" % (spec, exc))
        return None
    counter = BanCounter()
    for line in lines:
        for ip, _idx, when in flt.failures(line):
            counter.add(ip, when)
    return counter


def run(args):
    with open(args.file, "rb") as f:
        data = f.read()
    lines = data.decode("utf-8", "replace").splitlines()
    c = smban.Classifier(args.mode)
    res = c.classify_buffer(data, events=True)
    counter = BanCounter()
    seen = collections.defaultdict(collections.Counter)   # ip -> class -> lines
    delivered = set()
    for _lineno, ev in res["events"]:
        if not ev.ip:
            continue
        seen[ev.ip][ev.name] += 1
        if ev.delivered:
            delivered.add(ev.ip)
        if ev.failures:
            counter.add(ev.ip, ev.time or 0.0, ev.failures)

    print("smban demo: %d lines of %s, mode %s; a ban is %d failures within %d s "
          "(fail2ban's defaults)\n" % (res["lines"], os.path.basename(args.file), args.mode,
                                      MAXRETRY, FINDTIME))
    print("%-17s %-9s %s" % ("client", "smban", "what its lines were"))
    for ip in sorted(seen, key=lambda i: (i not in counter.banned, i)):
        what = ", ".join("%s x%d" % (k, n) for k, n in sorted(seen[ip].items()))
        if ip in counter.banned:
            verdict = "BANNED"
        elif counter.failures[ip]:
            verdict = "counted"
        else:
            verdict = "spared"
        print("%-17s %-9s %s%s" % (ip, verdict, what,
                                   "; delivered mail" if ip in delivered else ""))

    print("\nfail2ban's stock filters on the same lines:")
    for spec in ("sendmail-auth", "sendmail-reject[mode=extra]"):
        theirs = stock_bans(lines, spec)
        if theirs is None:
            continue
        banned = sorted(theirs.banned)
        print("  %-28s bans %s" % (spec, ", ".join(banned) or "nobody"))
        for ip in banned:
            if ip not in counter.banned and ("tls-failure" in seen[ip] or ip in delivered):
                print("  %-28s   %s: its TLS handshake failed and it delivered in clear text: "
                      "a legitimate MTA, banned - smban spares it" % ("", ip))
    return 0
