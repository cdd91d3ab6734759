"""smban's ban backend: fail2ban's iptables layout, edited in process.

    from smban.iptables import Chain
    c = Chain("smban", "smtp,465,submission")     # chain f2b-smban, IPv4
    c.start()                  # chain + RETURN + jump rule from INPUT
    c.ban("192.0.2.7")         # True; False when already banned
    c.ban_many(ips)            # one commit for any number of addresses
    c.unban("192.0.2.7")
    c.stop()                   # jump rule and chain removed

    s = Chain("smban", "smtp,465", set=True)      # set mode: ipset f2b-smban-v4
    s.start()                  # the set + one rule "-m set --match-set ... src"
    s.ban_many(ips, timeout=600)                  # elements expire in the kernel

The rules live in the *legacy* iptables tables (libiptc): list them with
``iptables-legacy-save`` or ``python3 -m smban bans list``; iptables-nft
(Debian's ``iptables``) does not show them.

Every change is one transaction under the xtables lock (the lock
``iptables -w`` takes), retried when the kernel reports a concurrent change.
All methods are thread-safe and release the GIL while the table is read or
written; bans arriving from several threads while a commit runs share the
next commit.

Errors: ValueError for a bad address or option (nothing is changed),
TimeoutError when another process holds the xtables lock longer than
lock_wait seconds, OSError when libiptc or the kernel refuses (the message
carries libiptc's reason).

Set mode (``set=True``): the bans are the elements of an ipset
(f2b-<name>-v4 or -v6; hash:ip, hash:net with min_prefix), matched by one
rule in the parent chain, so a packet costs one hash lookup and a ban one
netlink message whatever the number of bans; each element can carry its
own timeout.  ``ipset list`` shows the set.

The C side is smban._iptc, built only where libiptc and libipset are;
without it this module does not import (ImportError saying so) and smban
still classifies.

One name per option from here down to C: ``name`` the jail, ``chain`` the
chain smban owns (f2b-<name>), ``parent`` the chain holding the jump rule,
``ports``, ``protocol``, ``blocktype``, ``family``, ``lockfile``,
``lock_wait``, ``min_prefix``.  The fail2ban action keeps the operators'
option names (port, chain, lockwait, cidr) and maps them onto these.
"""
try:
    import smban._iptc as _iptc
except ModuleNotFoundError as e:
    if e.name != "smban._iptc":
        raise
    raise ModuleNotFoundError(
        "smban._iptc is not built: smban's ban backend needs libiptc and libipset when "
        "smban is built (Debian: apt-get install libiptc-dev libipset-dev, then make build)",
        name=e.name) from e

from smban.backend import family_number, ports_text

__all__ = ["Chain", "chain_name", "MAX_CHAIN", "SET_TIMEOUT_MAX"]

#: The longest chain name the kernel accepts as a jump target.
MAX_CHAIN = _iptc.CHAIN_MAX

#: The longest timeout (seconds) an ipset element keeps; a longer ban gets
#: none in the kernel and lives until it is unbanned.
SET_TIMEOUT_MAX = _iptc.SET_TIMEOUT_MAX


def chain_name(name):
    """The chain of a jail: ``f2b-<name>``, like fail2ban's own actions.
    A name that already starts with ``f2b-`` is taken as the chain itself."""
    name = str(name)
    chain = name if name.startswith("f2b-") else "f2b-" + name
    if len(chain) > MAX_CHAIN:
        raise ValueError("chain name %r is longer than %d characters" % (chain, MAX_CHAIN))
    return chain


def _alias(name, value, alias, alias_value, default):
    """The value of an option that also has an older keyword."""
    if alias_value is None:
        return default if value is None else value
    if value is not None:
        raise TypeError("Chain() got both %s= and its alias %s=" % (name, alias))
    return alias_value


class Chain:
    """One jail's chain in one address family.

    Chain(name, ports, protocol="tcp", blocktype="REJECT", family=4,
          parent="INPUT", *, lockfile=None, lock_wait=10.0, min_prefix=0,
          set=False)

    name       the jail name; the chain is f2b-<name> (at most MAX_CHAIN,
               28, characters)
    ports      "smtp,465,submission", "1000:2000", a list, or "all"
    protocol   tcp, udp, sctp, dccp or udplite ("all" only with ports "all")
    blocktype  REJECT (icmp/icmp6 port unreachable), DROP,
               "REJECT --reject-with tcp-reset" (needs protocol tcp)
    family     4 or 6 (also "inet4"/"inet6")
    parent     the chain holding the jump rule
    lockfile   the xtables lock; default $XTABLES_LOCKFILE or /run/xtables.lock
    lock_wait  seconds to wait for that lock before TimeoutError
    min_prefix 0: single addresses only; n: networks of prefix /n or longer too
    set        set mode: the bans in the ipset f2b-<name>-v4/-v6, one rule in
               the parent matching it (no chain of its own)

    Aliases kept for callers of earlier versions: ``chain=`` for parent
    (the ``chain`` attribute is the chain smban owns, f2b-<name>) and
    ``cidr=`` for min_prefix (the action's option name).
    """

    __slots__ = ("_c", "name", "ports", "protocol", "blocktype", "parent")

    def __init__(self, name, ports, protocol="tcp", blocktype="REJECT", family=4,
                 parent=None, *, lockfile=None, lock_wait=10.0, min_prefix=None,
                 set=False, chain=None, cidr=None):
        self.name = str(name)
        self.ports = ports_text(ports)
        self.protocol = str(protocol).strip().lower()
        self.blocktype = " ".join(str(blocktype).split())
        self.parent = str(_alias("parent", parent, "chain", chain, "INPUT")).strip()
        self._c = _iptc.Chain(chain_name(self.name), family=family_number(family),
                              parent=self.parent, protocol=self.protocol,
                              ports=self.ports, blocktype=self.blocktype,
                              lockfile=lockfile or None, lock_wait=float(lock_wait),
                              min_prefix=int(_alias("min_prefix", min_prefix, "cidr", cidr, 0)),
                              set=bool(set))

    def __repr__(self):
        return "<smban.iptables.Chain %s IPv%d ports=%s>" % (self.set or self.chain,
                                                              self.family, self.ports)

    @property
    def chain(self):
        """The iptables chain name (f2b-<name>)."""
        return self._c.chain

    @property
    def set(self):
        """Set mode: the ipset holding the bans (f2b-<name>-v4/-v6); else None."""
        return self._c.set

    @property
    def family(self):
        return self._c.family

    @property
    def min_prefix(self):
        """The shortest network prefix banned; 0: single addresses only."""
        return self._c.min_prefix

    @property
    def lockfile(self):
        return self._c.lockfile

    @property
    def parts(self):
        """What start() and check() call the three parts of the layout:
        ("chain", "return", "jump"); set mode ("set", "return", "rule")."""
        return ("set", "return", "rule") if self.set else ("chain", "return", "jump")

    def start(self):
        """Create the chain, its final RETURN and the jump rule, or repair
        whichever is missing.  Returns the parts that were missing, a tuple
        of "chain", "return", "jump" (empty when the layout was whole).
        Set mode: the set, then the rule matching it ("set", "rule")."""
        return self._c.start()

    def ban(self, ip):
        """Ban one address.  True when banned now, False when it already was.
        Also repairs the layout in the same commit."""
        return self._c.ban(str(ip))

    def ban_many(self, ips, timeout=None, refresh=False):
        """Ban every address of ips in one commit (all are validated first:
        one bad address and nothing is banned).  Returns how many were new.
        Set mode only: timeout, seconds each ban lives in the kernel (one
        number or one per address; 0 or None: until unbanned; beyond
        SET_TIMEOUT_MAX: until unbanned), and refresh, an address already
        banned gets its new timeout."""
        ips = [str(ip) for ip in ips]
        if timeout is None and not refresh:
            return self._c.ban_many(ips)
        return self._c.ban_many(ips, timeout=timeout, refresh=bool(refresh))

    def unban(self, ip):
        """Unban one address.  True when it was banned, False otherwise."""
        return self._c.unban(str(ip))

    def unban_many(self, ips):
        """Unban every address of ips in one commit.  Returns how many were
        banned."""
        return self._c.unban_many([str(ip) for ip in ips])

    def banned(self):
        """The banned addresses (str), most recent first."""
        return self._c.banned()

    def flush(self):
        """Remove every ban; the chain and the jump rule stay.  Returns the
        number removed."""
        return self._c.flush()

    def stop(self):
        """Remove the jump rule and the chain with its bans (set mode: the
        rules of the parent matching the set, then the set).  True when
        there was something to remove."""
        return self._c.stop()

    def unjump(self):
        """Remove the jump rules to the chain from the parent chain only; the
        chain and its bans stay (for moving the jump to another parent).
        Returns the number of rules removed."""
        return self._c.unjump()

    def check(self):
        """Read the layout without changing it: a dict with "chain",
        "return", "jump" (bools: present), "references" (rules jumping to the
        chain), "bans" (count) and "ok" (chain, return and jump present).
        Set mode: "set", "return" (as "set"), "rule", "references" (rules
        naming the set, anywhere)."""
        st = self._c.check()
        st["ok"] = all(st[p] for p in self.parts)
        return st

    def stats(self):
        """Counters: transactions, commits, retries, requests, grouped."""
        return self._c.stats()
