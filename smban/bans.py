"""python3 -m smban bans list|flush|check --chain NAME [--family 4|6]

smban's bans live in the legacy iptables tables, which Debian's default
iptables (iptables-nft) does not show; this command reads them through the
same libiptc backend the fail2ban action uses.
"""
import json
import sys

from smban import cli


def register(subparsers):
    p = subparsers.add_parser(
        "bans", help="list, flush or check a smban ban chain (legacy iptables tables)",
        description="List, flush or check the ban chain of a jail.  NAME is the jail "
                    "name (chain f2b-NAME) or the chain itself (f2b-...).")
    p.add_argument("action", choices=("list", "flush", "check"))
    p.add_argument("--chain", required=True, metavar="NAME",
                   help="jail name or chain name, e.g. smban or f2b-smban")
    p.add_argument("--family", choices=("4", "6"),
                   help="address family (default: both)")
    p.add_argument("--parent", default="INPUT", metavar="CHAIN",
                   help="chain holding the jump rule (default INPUT)")
    p.add_argument("--port", default=None, metavar="PORTS",
                   help="check: also verify the jump rule matches these ports")
    p.add_argument("--protocol", default="tcp", help="with --port (default tcp)")
    p.add_argument("--lockfile", default=None,
                   help="xtables lock (default $XTABLES_LOCKFILE or /run/xtables.lock)")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the xtables lock (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=handler)


def _chains(args):
    # imported here: without the backend (smban._iptc, built only where
    # libiptc is) the other commands and --help still work
    try:
        from smban.iptables import Chain, chain_name
    except ImportError as exc:
        raise cli.UsageError(str(exc))
    try:
        name = chain_name(args.chain)
        families = (int(args.family),) if args.family else (4, 6)
        return [Chain(name, args.port or "all", protocol=args.protocol if args.port else "all",
                      family=f, parent=args.parent, lockfile=args.lockfile,
                      lock_wait=args.wait)
                for f in families]
    except ValueError as exc:
        raise cli.UsageError(str(exc))


def handler(args):
    chains = _chains(args)
    out, rc = [], 0
    for c in chains:
        try:
            if args.action == "list":
                res = {"family": c.family, "chain": c.chain, "banned": c.banned()}
            elif args.action == "flush":
                res = {"family": c.family, "chain": c.chain, "removed": c.flush()}
            else:
                st = c.check()
                res = {"family": c.family, "chain": c.chain}
                res.update(st)
                if not args.port:
                    # without the ports the exact jump rule is unknown: any
                    # rule jumping to the chain counts
                    res["jump"] = st["references"] > 0
                res["ok"] = res["chain"] and res["return"] and res["jump"]
                if st["chain"] and not res["ok"]:
                    rc = 1
        except (OSError, TimeoutError) as exc:
            print("smban: IPv%d: %s" % (c.family, exc), file=sys.stderr)
            rc = 1
            continue
        out.append(res)
    if args.action == "check" and not any(r["chain"] for r in out) and out:
        rc = 1
    if args.json:
        print(json.dumps(out))
        return rc
    for r in out:
        if args.action == "list":
            for ip in r["banned"]:
                print(ip)
        elif args.action == "flush":
            print("%s (IPv%d): %d ban(s) removed" % (r["chain"], r["family"], r["removed"]))
        else:
            if not r["chain"]:
                print("%s (IPv%d): absent" % (r["chain"], r["family"]))
                continue
            missing = [k for k in ("return", "jump") if not r[k]]
            print("%s (IPv%d): %s; %d ban(s), %d jump rule(s)%s" % (
                r["chain"], r["family"], "ok" if r["ok"] else "BROKEN",
                r["bans"], r["references"],
                "; missing: " + ", ".join(
                    {"return": "final RETURN",
                     "jump": "jump rule from %s" % args.parent}[k] for k in missing)
                if missing else ""))
    return rc
