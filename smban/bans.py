"""python3 -m smban bans list|flush|check --chain NAME [--family 4|6]
                                        [--backend iptables|ipset|nftables]

With the iptables backend (smban-iptables) smban's bans live in the legacy
iptables tables, which Debian's default iptables (iptables-nft) does not
show; in its set mode (smban-iptables with set=yes) in the ipsets
f2b-NAME-v4/-v6 that one legacy iptables rule matches; with the nftables
backend (smban-nftables) in the sets of table inet smban.  This command reads them through the same backend the fail2ban
action uses.
"""
import json
import sys

from smban import cli


def register(subparsers):
    p = subparsers.add_parser(
        "bans", help="list, flush or check a jail's bans (legacy iptables tables or nftables)",
        description="List, flush or check the bans of a jail.  NAME is the jail "
                    "name (chain f2b-NAME, set f2b-NAME-v4) or the chain itself (f2b-...).")
    p.add_argument("action", choices=("list", "flush", "check"))
    p.add_argument("--chain", required=True, metavar="NAME",
                   help="jail name or chain name, e.g. smban or f2b-smban")
    p.add_argument("--family", choices=("4", "6"),
                   help="address family (default: both)")
    p.add_argument("--backend", choices=("iptables", "ipset", "nftables"), default="iptables",
                   help="where the action bans: iptables (smban-iptables, the default), "
                        "ipset (smban-iptables with set=yes) or nftables (smban-nftables)")
    p.add_argument("--table", default="smban", metavar="TABLE",
                   help="nftables: the inet table (default smban)")
    p.add_argument("--parent", default="INPUT", metavar="CHAIN",
                   help="chain holding the jump rule (default INPUT)")
    p.add_argument("--port", default=None, metavar="PORTS",
                   help="check: also verify the jump rule matches these ports")
    p.add_argument("--protocol", default="tcp", help="with --port (default tcp)")
    p.add_argument("--blocktype", default="REJECT",
                   help="ipset, with --port: the rule's blocktype, as the action's option "
                        "(default REJECT)")
    p.add_argument("--lockfile", default=None,
                   help="xtables lock (default $XTABLES_LOCKFILE or /run/xtables.lock)")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the xtables lock (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=handler)


def _sets(args):
    """The nftables sets of the jail, one per family."""
    try:
        from smban.nftables import Set
    except ImportError as exc:
        raise cli.UsageError(str(exc))
    name = args.chain[4:] if args.chain.startswith("f2b-") else args.chain
    try:
        families = (int(args.family),) if args.family else (4, 6)
        return [Set(name, args.port or "all", protocol=args.protocol if args.port else "all",
                    family=f, table=args.table)
                for f in families]
    except ValueError as exc:
        raise cli.UsageError(str(exc))


def _chains(args):
    # imported here: without the backend (smban._iptc, built only where
    # libiptc is) the other commands and --help still work
    if args.backend == "nftables":
        return _sets(args)
    try:
        from smban.iptables import Chain, chain_name
    except ImportError as exc:
        raise cli.UsageError(str(exc))
    try:
        name = chain_name(args.chain)
        families = (int(args.family),) if args.family else (4, 6)
        return [Chain(name, args.port or "all", protocol=args.protocol if args.port else "all",
                      blocktype=args.blocktype if args.port else "REJECT", family=f,
                      parent=args.parent, lockfile=args.lockfile, lock_wait=args.wait,
                      set=args.backend == "ipset")
                for f in families]
    except ValueError as exc:
        raise cli.UsageError(str(exc))


#: The parts of each backend's layout, as check() names them: the
#: container of the bans, its end or hook, and what makes traffic reach it.
PARTS = {"iptables": ("chain", "return", "jump"), "ipset": ("set", "return", "rule"),
         "nftables": ("set", "chain", "rule")}


def _name(c):
    return c.set or c.chain if hasattr(c, "chain") else "inet %s %s" % (c.table, c.set)


def handler(args):
    chains = _chains(args)
    box, end, way = PARTS[args.backend]
    out, rc = [], 0
    for c in chains:
        try:
            if args.action == "list":
                res = {"family": c.family, "name": _name(c), "banned": c.banned()}
            elif args.action == "flush":
                res = {"family": c.family, "name": _name(c), "removed": c.flush()}
            else:
                st = c.check()
                res = {"family": c.family, "name": _name(c)}
                res.update(st)
                if not args.port:
                    # without the ports the exact rule is unknown: any rule
                    # leading to the bans counts
                    res[way] = st["references"] > 0
                res["ok"] = res[box] and res[end] and res[way]
                if st[box] and not res["ok"]:
                    rc = 1
            if args.backend == "iptables":
                res["chain"] = res["name"] if "chain" not in res or args.action != "check" \
                    else res["chain"]
        except (OSError, TimeoutError) as exc:
            print("smban: IPv%d: %s" % (c.family, exc), file=sys.stderr)
            rc = 1
            continue
        out.append(res)
    if args.action == "check" and not any(r[box] for r in out) and out:
        rc = 1
    if args.json:
        print(json.dumps(out))
        return rc
    what = {"return": "final RETURN", "jump": "jump rule from %s" % args.parent,
            "chain": "chain hooked at input", "rule": "the chain's rule"}
    if args.backend == "ipset":
        what["rule"] = "rule matching the set in %s" % args.parent
    for r in out:
        if args.action == "list":
            for ip in r["banned"]:
                print(ip)
        elif args.action == "flush":
            print("%s (IPv%d): %d ban(s) removed" % (r["name"], r["family"], r["removed"]))
        else:
            if not r[box]:
                print("%s (IPv%d): absent" % (r["name"], r["family"]))
                continue
            missing = [k for k in (end, way) if not r[k]]
            print("%s (IPv%d): %s; %d ban(s), %d %s(s)%s" % (
                r["name"], r["family"], "ok" if r["ok"] else "BROKEN",
                r["bans"], r["references"],
                {"iptables": "jump rule"}.get(args.backend, "rule naming the set"),
                "; missing: " + ", ".join(what[k] for k in missing) if missing else ""))
    return rc
