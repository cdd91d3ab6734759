"""The lab's command line: python3 -m lab [--compare stock] [--quiet]
[--ban iptables|ipset|nftables]
(the package's docstring says what runs where).  Runs the scenario with the
smban jail, then with fail2ban's stock jails if asked, and prints the
tables and what they show."""
import argparse
import signal
import sys

import lab
from lab.common import INJECTED
from lab.scenario import table
from lab.testbed import Lab, why_unavailable


def main(argv=None):
    """The command line; the exit status (2: the lab cannot run here)."""
    ap = argparse.ArgumentParser(prog="python3 -m lab", description=lab.__doc__.split("\n\n")[0])
    ap.add_argument("--compare", choices=["stock"], help="also run fail2ban's stock jails")
    ap.add_argument("--quiet", action="store_true", help="print the tables only")
    ap.add_argument("--ban", choices=["iptables", "ipset", "nftables"], default="iptables",
                    help="the smban jail's ban action: smban-iptables (default), its set "
                         "mode, or smban-nftables")
    args = ap.parse_args(argv)
    why = why_unavailable()
    if why:
        print("make lab: cannot run: %s" % why, file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    results = []
    for mode in ["smban"] + (["stock"] if args.compare else []):
        if not args.quiet:
            print("\n==== %s ====" % ("smban jail" if mode == "smban" else
                                      "fail2ban's stock sendmail-auth + sendmail-reject[mode=extra]"),
                  flush=True)
        with Lab(mode, out=out, ban=args.ban) as the_lab:
            results.append(the_lab.scenario())
    print()
    print("\n".join(table(results)))
    print()
    _summary(results)
    return 0


def _summary(results):
    """What the tables show: the guessers' latencies, and with two runs,
    why the stock jails banned the bank and the partner."""
    for r in results:
        for name, lat in sorted(r["latency"].items()):
            ban = r["ban_latency"].get(name)
            print("%s: %s's last failed AUTH -> fail2ban's Ban %s, its next connection refused %s"
                  % (r["mode"], name, "%.2f s" % ban if ban is not None else "never",
                     "%.2f s" % lat if lat is not None else "never"))
    if len(results) > 1:
        print("\nbank-mta: every TLS handshake failed (no shared cipher) and it retried in clear\n"
              "text, as RFC 3207 says.  The stock sendmail-reject[mode=extra] bans it on the\n"
              "\"did not issue MAIL\" lines that follow the failed handshakes, and its mail\n"
              "stays queued at the bank; smban classifies those lines tls-fallback (benign).")
        stock = results[-1]
        framed = stock["victims"][INJECTED]["framed"]
        if framed and not results[0]["victims"][INJECTED]["banned"]:
            print("\nredteam: RCPT TO:<\"q(@x>, relay=[%s], reject=550 5.7.1 <\"q(@x>... "
                  "Rejected: )@elsewhere.example>\nis a valid address; the stock sendmail-reject reads "
                  "<\"q(@x> as the whole arg1 and\nthe relay= after it as the client, and bans "
                  "the partner MTA.  smban parses the\naddress to its end and bans the red team."
                  % INJECTED)


if __name__ == "__main__":
    sys.exit(main())
