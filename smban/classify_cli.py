"""python3 -m smban classify [--mode M] [--json | --count] FILE..."""
import json
import sys

import smban
from smban.cli import UsageError
from smban.logs import LogError, check_readable, chunks


def register(sub):
    p = sub.add_parser(
        "classify", help="classify sendmail log lines",
        description="Classify the lines of sendmail logs (plain or gzip) in order. "
                    "Without --json or --count, print one line per recognised "
                    "log line: FILE:LINE KIND NAME IP FAILURES.")
    p.add_argument("--mode", choices=smban.MODES, default=smban.MODES[0],
                   help="aggressive also counts suspect lines (default: normal)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="one JSON object per recognised line")
    out.add_argument("--count", action="store_true",
                     help="one JSON object: lines per class and per kind")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run)


def run(args):
    try:
        check_readable(args.files)
    except LogError as exc:
        raise UsageError(str(exc)) from None
    c = smban.Classifier(args.mode)
    write = sys.stdout.write
    totals = {"lines": 0, "classes": {}, "kinds": {}, "failures": 0}
    for path in args.files:
        first = 1
        try:
            for data in chunks(path):
                res = c.classify_buffer(data, first, events=not args.count)
                first += res["lines"]
                totals["lines"] += res["lines"]
                totals["failures"] += res["failures"]
                for key in ("classes", "kinds"):
                    for name, n in res[key].items():
                        totals[key][name] = totals[key].get(name, 0) + n
                if args.count:
                    continue
                for lineno, ev in res["events"]:
                    if args.json:
                        d = {"file": path, "line": lineno}
                        d.update(zip(smban.EVENT_FIELDS, ev))
                        write(json.dumps(d) + "\n")
                    else:
                        write("%s:%d %s %s %s %d\n" % (path, lineno, ev.kind, ev.name,
                                                      ev.ip or "-", ev.failures))
        except LogError as exc:
            raise UsageError(str(exc)) from None
    if args.count:
        st = c.stats()
        totals["mode"] = args.mode
        totals["recognised"] = st["recognised"]
        totals["skipped"] = {k: st[k] for k in ("skipped_long", "skipped_nul")}
        totals["not_utf8"] = st["not_utf8"]
        totals["sessions_evicted"] = st["sessions_evicted"]
        write(json.dumps(totals, sort_keys=True) + "\n")
    return 0
