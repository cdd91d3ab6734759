"""python3 -m smban export-filter"""
import sys

from smban.filter import export_filter


def register(sub):
    p = sub.add_parser("export-filter",
                       help="print the fail2ban filter generated from the rule table",
                       description="Print filters/smban.conf, the fail2ban filter "
                                   "generated from smban's rule table; with a policy, "
                                   "the twin of that policy.")
    for opt in ("ban", "suspect", "ignore"):
        p.add_argument("--" + opt, action="append", default=[], metavar="CLASSES",
                       help="the policy of smban-engine's %s= option (comma- or "
                            "space-separated; repeatable)" % opt)
    p.set_defaults(func=run)


def run(args):
    from smban.cli import UsageError
    policy = {opt: ",".join(getattr(args, opt)) for opt in ("ban", "suspect", "ignore")
              if getattr(args, opt)}
    try:
        text = export_filter(policy)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(text)
    return 0
