"""smban's nftables ban backend: a kernel set per jail and family.

    from smban.nftables import Set
    s = Set("smban", "smtp,465,submission", timeout=3600)   # IPv4
    s.start()                  # table inet smban, set + chain + rule
    s.ban("192.0.2.7")         # True; False when already banned
    s.ban_many(ips, timeout=[1200, 90])  # one transaction; each ban's remaining time
    s.unban("192.0.2.7")
    s.stop()                   # chain and set removed (the table stays)

The layout, in the table ``inet smban`` that smban alone writes (nothing
else is read or changed):

    set   f2b-<name>-v4 { type ipv4_addr; flags timeout; }   (interval too with min_prefix)
    chain f2b-<name>-v4 { type filter hook input priority filter - 1; policy accept; }
          ip saddr @f2b-<name>-v4 tcp dport { 25, 465, 587 } reject with tcp reset

A packet costs one set lookup whatever the number of bans, and a ban one
insert.  Each ban carries its timeout into the kernel, so bans expire there
even while fail2ban is down.  ``nft list ruleset`` shows everything.

Every change is one nftables transaction; a ban also rewrites the chain's
rule in that transaction, so a rule that someone deleted comes back with
the next ban.  The table survives a firewall manager that reloads only its
own table (firewalld); ``nft -f`` of a file that starts with ``flush
ruleset`` removes it: ``check()`` then reports it, and ``start()`` (or the
next ban) makes it again.

Errors: ValueError for a bad address or option (nothing is changed),
OSError when libnftables or the kernel refuses (a set of the same name
made by someone else with another type, no CAP_NET_ADMIN...): the message
carries nftables' reason.

The C side is smban._nft, built only where libnftables is (Debian:
libnftables-dev); without it this module does not import and says so.
"""
try:
    import smban._nft as _nft
except ModuleNotFoundError as e:
    if e.name != "smban._nft":
        raise
    raise ModuleNotFoundError(
        "smban._nft is not built: smban's nftables backend needs libnftables when smban "
        "is built (Debian: apt-get install libnftables-dev, then make build)",
        name=e.name) from e

from smban.backend import family_number, ports_text

__all__ = ["Set", "NAME_MAX"]

#: The longest jail name.
NAME_MAX = _nft.NAME_MAX


class Set:
    """One jail's set of bans in one address family, and the rule using it.

    Set(name, ports="all", protocol="tcp", blocktype="reject", family=4,
        *, table="smban", timeout=0, min_prefix=0)

    name       the jail name; set and chain are f2b-<name>-v4 (or -v6)
    ports      "smtp,465,submission", "1000:2000", a list, or "all"
    protocol   tcp, udp, sctp, dccp, udplite, or all (only with ports "all")
    blocktype  reject (a TCP reset for tcp, else ICMP port unreachable) or drop;
               fail2ban's iptables spellings REJECT and DROP are taken too
    family     4 or 6 (also "inet4"/"inet6")
    table      the inet table smban owns
    timeout    seconds a ban lives in the kernel (0: until unbanned)
    min_prefix 0: single addresses only; n: networks of prefix /n or longer too
    """

    __slots__ = ("_s", "name", "ports", "protocol", "blocktype")

    def __init__(self, name, ports="all", protocol="tcp", blocktype="reject", family=4,
                 *, table="smban", timeout=0, min_prefix=0):
        self.name = str(name)
        self.ports = ports_text(ports)
        self.protocol = str(protocol).strip().lower()
        self.blocktype = str(blocktype).strip().lower()
        self._s = _nft.Set(self.name, family=family_number(family), table=str(table),
                           protocol=self.protocol, ports=self.ports,
                           blocktype=self.blocktype, min_prefix=int(min_prefix),
                           timeout=float(timeout))

    def __repr__(self):
        return "<smban.nftables.Set inet %s %s ports=%s>" % (self.table, self.set, self.ports)

    @property
    def set(self):
        """The set's name (f2b-<name>-v4), also the chain's."""
        return self._s.set

    @property
    def table(self):
        return self._s.table

    @property
    def family(self):
        return self._s.family

    @property
    def min_prefix(self):
        """The shortest network prefix banned; 0: single addresses only."""
        return self._s.min_prefix

    def start(self):
        """Create the table, the set, the chain and its rule, or repair
        whichever is missing, in one transaction.  Returns the parts that
        were missing: a tuple of "set", "chain", "rule"."""
        return self._s.start()

    def ban(self, ip):
        """Ban one address.  True when banned now, False when it already was."""
        return self._s.ban(str(ip))

    def ban_many(self, ips, timeout=None, refresh=False):
        """Ban every address of ips in one transaction (all are validated
        first).  timeout: seconds each lives in the kernel, one number or a
        list of one per address, for a restore that re-adds what is left of
        each ban (0: no timeout; None: the set's own).  refresh: an address
        already banned gets its new timeout too (a ban fail2ban prolonged).
        Returns how many were new."""
        if timeout is not None and not isinstance(timeout, (int, float)):
            timeout = [float(t) for t in timeout]
        return self._s.ban_many([str(ip) for ip in ips], timeout, bool(refresh))

    def unban(self, ip):
        """Unban one address.  True when it was banned, False otherwise."""
        return self._s.unban(str(ip))

    def unban_many(self, ips):
        """Unban every address of ips in one transaction.  Returns how many
        were banned."""
        return self._s.unban_many([str(ip) for ip in ips])

    def banned(self):
        """The banned addresses (str), in the set's order."""
        return self._s.banned()

    def flush(self):
        """Remove every ban; the set, chain and rule stay.  Returns the
        number removed."""
        return self._s.flush()

    def stop(self):
        """Remove the chain and the set with its bans.  True when there was
        something to remove."""
        return self._s.stop()

    def check(self):
        """Read the layout without changing it: a dict with "set", "chain"
        (hooked at input), "rule" (ours, and alone in the chain; bools),
        "references" (rules of the chain naming the set), "bans" (count)
        and "ok" (all three present)."""
        st = self._s.check()
        st["ok"] = st["set"] and st["chain"] and st["rule"]
        return st

    def stats(self):
        """Counters: transactions, commits, retries, requests, grouped."""
        return self._s.stats()
