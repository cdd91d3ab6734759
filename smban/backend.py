"""What smban's ban backends (smban.iptables, smban.nftables) share on the
Python side: how their common options are spelt before they reach C."""

__all__ = ["family_number", "ports_text"]


def family_number(family):
    """4 or 6, from 4/6, "inet4"/"ipv4" (and "inet", fail2ban's word for
    IPv4) or "inet6"/"ipv6"; ValueError otherwise."""
    f = str(family).lower()
    if f in ("4", "inet4", "ipv4", "inet"):
        return 4
    if f in ("6", "inet6", "ipv6"):
        return 6
    raise ValueError("family must be 4 or 6, not %r" % (family,))


def ports_text(ports):
    """A port list as C takes it: "smtp,465,1000:2000" or "all", from a
    str, an int or an iterable of them."""
    if isinstance(ports, (int, str)):
        return str(ports).strip()
    return ",".join(str(p).strip() for p in ports)
