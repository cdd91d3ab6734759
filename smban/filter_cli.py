"""python3 -m smban export-filter"""
import sys

from smban.filter import export_filter


def register(sub):
    p = sub.add_parser("export-filter",
                       help="print the fail2ban filter generated from the rule table",
                       description="Print filters/smban.conf, the fail2ban filter "
                                   "generated from smban's rule table.")
    p.set_defaults(func=run)


def run(args):
    sys.stdout.write(export_filter())
    return 0
