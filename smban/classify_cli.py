"""python3 -m smban classify [--mode M] [--json | --count] FILE..."""
import io
import sys
import types

import smban
from smban.cli import UsageError
from smban.logs import LogError, check_readable, open_log, pieces_of

MODES = smban.MODES


def register(sub):
    p = sub.add_parser(
        "classify", help="classify sendmail log lines",
        description="Classify the lines of sendmail logs (plain or gzip) in order. "
                    "Without --json or --count, print one line per recognised "
                    "log line: FILE:LINE KIND NAME IP FAILURES.")
    p.add_argument("--mode", choices=MODES, default=MODES[0],
                   help="aggressive also counts suspect lines (default: normal)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="one JSON object per recognised line")
    out.add_argument("--count", action="store_true",
                     help="one JSON object: lines per class and per kind")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run)


def quick_args(argv):
    """The arguments of the usual `classify --count [--mode M] FILE...` (the
    options before the files), as argparse would give them, without
    argparse: its import and set-up cost more than a small log takes to
    classify.  None for anything else, which argparse parses."""
    mode, count, i = "normal", False, 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a == "--count":
            count = True
        elif a == "--mode" and i + 1 < len(argv) and argv[i + 1] in MODES:
            i += 1
            mode = argv[i]
        elif a.startswith("--mode=") and a[len("--mode="):] in MODES:
            mode = a[len("--mode="):]
        else:
            return None
        i += 1
    files = argv[i:]
    if not count or not files or any(f.startswith("-") for f in files):
        return None
    return types.SimpleNamespace(command="classify", mode=mode, json=False, count=True,
                                 files=files, func=run)


def results(c, path, events):
    """The classify_buffer results for the log at path, in order, its lines
    numbered from 1.  A plain log is read by the classifier itself, without
    the GIL (one result); a gzip log is decompressed here, a piece at a time
    (and so is a plain one when events are wanted, for the output to start
    before the end of a large log)."""
    f = open_log(path, buffering=0)
    if not events and isinstance(f, io.FileIO):
        with f:
            try:
                yield c.classify_file(f)
            except OSError as exc:
                raise LogError("%s: %s" % (path, exc)) from None
        return
    first = 1
    for data in pieces_of(f, path):
        res = c.classify_buffer(data, first, events=events)
        first += res["lines"]
        yield res


def run(args):
    try:
        check_readable(args.files)
    except LogError as exc:
        raise UsageError(str(exc)) from None
    c = smban.Classifier(args.mode)
    write = sys.stdout.write
    if not args.count:
        import json
    totals = {"lines": 0, "classes": {}, "kinds": {}, "failures": 0}
    for path in args.files:
        try:
            for res in results(c, path, events=not args.count):
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
        write(counts_json(totals) + "\n")
    return 0


def counts_json(d):
    """json.dumps(d, sort_keys=True) for the counts: str keys, int, str or
    dict values.  Without the json module when every string is plain
    printable ASCII (the names of classes, kinds and modes): importing it
    costs more than a small log takes to classify."""
    def plain(s):
        return s.isascii() and s.isprintable() and '"' not in s and "\\" not in s

    def enc(v):
        if type(v) is int:
            return str(v)
        if type(v) is str and plain(v):
            return '"%s"' % v
        if type(v) is dict and all(type(k) is str and plain(k) for k in v):
            return "{%s}" % ", ".join('"%s": %s' % (k, enc(v[k])) for k in sorted(v))
        raise ValueError
    try:
        return enc(d)
    except ValueError:
        import json
        return json.dumps(d, sort_keys=True)
