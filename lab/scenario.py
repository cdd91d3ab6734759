"""The lab's scenario: the story every run plays (deliveries, password
guessers, probes, a red team framing others), the result it reports, and
the final table."""
import ssl
import time

from lab.common import (BY_NAME, CLIENTS, DOMAIN, INJECTED, MAXRETRY, SERVER4, SERVER6, USER,
                        norm_ip)

#: messages the bank's MTA has to send (one TLS attempt each, then clear text)
BANK_MESSAGES = 4

#: the addresses the red team tries to get banned: (who, address)
VICTIMS = [("partner-mta", "198.51.100.10"), ("bank-mta", "198.51.100.25"),
           ("the server", SERVER6)]

# The red team's SMTP commands, sent word for word.  RFC 5321 lets a quoted
# local part hold spaces, commas, "<", ">" and "\"-escapes; sendmail logs the
# address in arg1= and again in the reject= echo, so the text can imitate
# sendmail's own fields.  The client is the relay= right after the complete
# address; a backslash before '"' or '>' reads two ways in the log (8.17
# doubles it), so such a line blames nobody.
_FRAME = 'reject=550 5.7.1 <x>... Relaying denied. '
#: first connection, while its reverse zone fails (SERVFAIL: {client_resolve}
#: TEMP, "450 Relaying temporarily denied"): a transaction whose sender fakes
#: a delivered message's size= and nrcpts= in the from= line sendmail logs at
#: RSET (to earn the trust of a sender of accepted mail), then three relay
#: attempts
REDTEAM_TEMP = [
    'MAIL FROM:<"a, size=900, class=0, nrcpts=3, x"@example.net>',
    'RCPT TO:<%s@%s>' % (USER, DOMAIN),
    'RSET',
    # a client field planted where the message opens: in from= (its escaped
    # quote, logged as a backslash run that reads two ways, makes the
    # address unparsable) and in the echo of an unknown local user
    'MAIL FROM:<"h.example [198.51.100.10]: probable open proxy: command=GET \\" x"@example.net>',
    'RCPT TO:<"h.example [198.51.100.25]: probable open proxy: command=GET"@%s>' % DOMAIN,
    'RSET',
    'MAIL FROM:<redteam@example.net>',
    'RCPT TO:<"a, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<"b, relay=[198.51.100.25], reject=450 4.4.0 <x>... Relaying temporarily denied. '
    'Cannot resolve PTR record for 198.51.100.25 "@elsewhere.example>',
    'RCPT TO:"c, relay=[IPv6:2001:db8:1::1]"@elsewhere.example',
]
#: second connection, reverse lookups failing for good ({client_resolve}
#: FAIL, "550 Relaying denied"): first what blames nobody (backslashes
#: that read two ways once sendmail 8.17 has doubled them, an address
#: sendmail refuses), then relay probes that parse, each framing a victim
REDTEAM_550 = [
    'MAIL FROM:<redteam@example.net>',
    'RCPT TO:<"a\\"b, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<a\\>b(c, relay=[198.51.100.25])@elsewhere.example>',
    'RCPT TO:<"a\\\\\\", relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<a\\>b, relay=[198.51.100.25]@elsewhere.example>',
    'RCPT TO:<"a\\\\", relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    # a backslash inside quotes before ">": one reading
    'RCPT TO:<"a\\>b, relay=[198.51.100.25]"@elsewhere.example>',
    'RCPT TO:<"a, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    # fail2ban's stock sendmail-reject reads arg1 as <\S+@\S+> and accepts
    # anything after "550 5.7.1 <arg1>... Rejected: ": a quote opened in the
    # first copy of <"q(@x> is closed by the second, whose "(" opens a
    # comment that hides the rest
    'RCPT TO:<"q(@x>, relay=[198.51.100.10], reject=550 5.7.1 <"q(@x>... Rejected: )'
    '@elsewhere.example>',
    'RCPT TO:<"r(@x>, relay=[198.51.100.10], reject=550 5.7.1 <"r(@x>... Rejected: )'
    '@elsewhere.example>',
    'RCPT TO:<"s(@x>, relay=[198.51.100.10], reject=550 5.7.1 <"s(@x>... Rejected: )'
    '@elsewhere.example>',
    'RCPT TO:<"a>b, relay=[198.51.100.25]"@elsewhere.example>',
    'RCPT TO:<"c, relay=[IPv6:2001:db8:1::1], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:"d, relay=[198.51.100.10]"@elsewhere.example',
    'RCPT TO:<@route.example,@r2:"q, relay=[198.51.100.10]"@elsewhere.example>',
    'RCPT TO:<"a b c, relay=mail.partner.example [198.51.100.10] (may be forged), '
    'reject=550"@elsewhere.example>',
]
REDTEAM6_TEMP = [
    'MAIL FROM:<redteam6@example.net>',
    'RCPT TO:<"a, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
]
#: a sender in a domain that does not exist, a relay probe, then the
#: VRFY/EXPN/ETRN arguments (logged after the client field)
REDTEAM6_550 = [
    'MAIL FROM:<"x, relay=[198.51.100.10]"@nx.example>',
    'MAIL FROM:<redteam6@example.net>',
    'RCPT TO:<"a, relay=[IPv6:2001:db8:1::1], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<"e, relay=[IPv6:2001:db8:1:0:0:0:0:1], reject=550 5.7.1 <x>... Relaying denied. '
    'IP name lookup failed [IPv6:2001:db8:1:0:0:0:0:1]"@elsewhere.example>',
    'VRFY a, relay=[198.51.100.10], reject=x',
    'EXPN b, relay=[IPv6:2001:db8:1::1]',
    'ETRN c, relay=[198.51.100.25]',
    'VRFY <"a, relay=[198.51.100.25]"@lab.example>',
]



def _old_cipher_tls():
    """What the bank's MTA offers: AES128-SHA over TLS 1.2 at most."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-SHA")
    return ctx


def _modern_tls():
    """What the partner MTA speaks: TLS 1.3."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


class Scenario:
    """One play of the story against a lab that is up (a testbed.Lab): the
    clients act one after the other, the timeline shows what followed each
    action.  Owns what the result reports besides the clients' deliveries:
    how fast the guessers were refused and banned, when the red team began,
    who was banned, what stayed queued, the final probes."""

    def __init__(self, lab):
        self.lab = lab
        self.clients, self.fail2ban = lab.clients, lab.fail2ban
        self.say, self.flush = lab.timeline.say, lab.timeline.flush
        self.modern = _modern_tls()
        self.refused = {}                # final probe: name -> bool
        self.latency = {}                # guesser -> seconds to its refused connection
        self.ban_latency = {}            # guesser -> seconds to fail2ban's "Ban"
        self.redteam_t = None            # when the red team began (s since the start)
        self.banned_ips = set()
        self.queued = None

    def play(self):
        """The whole story; the result."""
        self.introduce()
        partner = BY_NAME["partner-mta"]
        self.say("%s %s: delivers over TLS 1.3 -> %s" % (
            partner.name, partner.addr, self.clients.deliver(partner, 1, self.modern)))
        self.flush(0.3)
        self.bank()
        self.scanner_and_dropper()
        for c, tries in (
                (BY_NAME["guesser"], [("LOGIN", "admin", "123456"), ("PLAIN", USER, "password"),
                                      ("LOGIN", "postmaster", "qwerty")]),
                (BY_NAME["guesser6"], [("PLAIN", "admin", "admin"), ("PLAIN", "test", "test"),
                                       ("PLAIN", "sales", "sales123")])):
            self.guesser(c, tries)
        self.injector_pregreeter_prober()
        self.red_team()
        self.say("%s %s: delivers over TLS 1.3 again -> %s" % (
            partner.name, partner.addr, self.clients.deliver(partner, 2, self.modern)))
        self.flush(1.5)
        self.final_probe()
        return self.result()

    def introduce(self):
        """The timeline's first line: what runs where."""
        lab = self.lab
        engine = "smban-engine + " if lab.engine else ""
        self.say("lab up in %s: sendmail on %s and %s in namespace %s, fail2ban jails %s (%s)" % (
            lab.dir, SERVER4, SERVER6, lab.network.server.name, ", ".join(self.fail2ban.jails()),
            (engine + {"iptables": "smban-iptables", "ipset": "smban-iptables set = yes",
                       "nftables": "smban-nftables"}[lab.ban]) if lab.mode == "smban"
            else "stock filters + iptables-multiport"))
        self.flush()

    def bank(self):
        """The bank's MTA: each message first over STARTTLS with an old
        cipher the server refuses, then in clear text (RFC 3207)."""
        bank, old = BY_NAME["bank-mta"], _old_cipher_tls()
        for n in range(1, BANK_MESSAGES + 1):
            r = self.clients.deliver(bank, n, old)
            self.say("%s %s: message %d, STARTTLS offering only AES128-SHA -> %s" % (
                bank.name, bank.addr, n, r))
            if r.startswith("tls-failed"):
                self.flush(0.1)
                r = self.clients.deliver(bank, n, None)
                self.say("%s %s: message %d again in clear text (RFC 3207) -> %s" % (
                    bank.name, bank.addr, n, r))
            if r != "delivered":
                self.say("%s %s: message %d stays in the bank's queue" % (bank.name, bank.addr, n))
            self.flush(2.0)   # the bank sends its next message a little later

    def scanner_and_dropper(self):
        """A scanner that reads the greeting and quits; a client that drops
        the connection after RCPT."""
        scanner, dropper = BY_NAME["scanner"], BY_NAME["dropper"]
        self.clients.probe(scanner)
        self.say("%s %s: connected, read the greeting, quit" % (scanner.name, scanner.addr))
        self.flush(0.3)
        self.say("%s %s: EHLO, MAIL, RCPT, then drops the connection -> %s" % (
            dropper.name, dropper.addr, self.clients.drop_after_rcpt(dropper)))
        self.flush(0.3)

    def guesser(self, c, tries):
        """A password guesser: one AUTH per connection, then how long until
        its next connection is refused and until fail2ban logs its ban."""
        last, what = self.clients.auth_tries(c, tries)
        self.say("%s %s: %d connections, one AUTH with a guessed password each -> %s" % (
            c.name, c.addr, len(tries), what))
        lat = self.clients.wait_refused(c, last) if last is not None else None
        self.latency[c.name] = lat
        self.flush()
        if last is not None:
            # fail2ban's log is in wall-clock time
            last_wall = time.time() - (time.monotonic() - last)
            bans = [t for _, ip, t in self.fail2ban.bans(times=True) if ip == c.addr]
            self.ban_latency[c.name] = (min(bans) + self.lab.t0_wall - last_wall
                                        if bans else None)
        self.say("%s %s: next connection %s" % (
            c.name, c.addr, "refused %.2f s after its last failed AUTH" % lat
            if lat is not None else "NOT refused"))

    def injector_pregreeter_prober(self):
        """An AUTH user name quoting the partner's address, EHLO before the
        greeting, VRFY/EXPN probes."""
        inj = BY_NAME["injector"]
        user = "x, relay=[%s]" % INJECTED
        _, what = self.clients.auth_tries(inj, [("LOGIN", user, "guess1"),
                                                ("PLAIN", user, "guess2"),
                                                ("LOGIN", user, "guess3")])
        self.say("%s %s: 3 AUTH attempts as user %r -> %s" % (inj.name, inj.addr, user, what))
        self.flush(1.5)

        pre = BY_NAME["pregreeter"]
        got = [self.clients.pregreet(pre) for _ in range(MAXRETRY)]
        self.say("%s %s: sent EHLO before the greeting, %d times -> %s" % (
            pre.name, pre.addr, MAXRETRY, ", ".join(got)))
        self.flush(0.3)

        prober = BY_NAME["prober"]
        self.say("%s %s: VRFY/EXPN -> %s" % (
            prober.name, prober.addr, self.clients.vrfy_expn(prober)))
        self.flush(1.5)

    def red_team(self):
        """Two attackers that try to get the partner MTA, the bank's MTA and
        the server itself banned with envelope addresses and VRFY/EXPN/ETRN
        arguments imitating sendmail's fields; each must be banned itself,
        on its own 550 relay probes, and none of its victims."""
        rt, rt6 = BY_NAME["redteam"], BY_NAME["redteam6"]
        self.redteam_t = self.lab.timeline.mark - self.lab.t0
        self.lab.dns.set_tempfail([rt.addr, rt6.addr])
        codes = self.clients.dialogue(rt, REDTEAM_TEMP)
        self.say("%s %s: its reverse zone fails (SERVFAIL); MAIL FROM faking size=900, "
                 "nrcpts=3, RCPT TO a local user, RSET, MAIL FROM and RCPT TO opening with "
                 "[victim]: probable open proxy, RSET, MAIL FROM, 3 RCPT TO quoting "
                 "relay=[victim] -> %s" % (rt.name, rt.addr, " ".join(codes)))
        self.flush(0.3)
        codes = self.clients.dialogue(rt6, REDTEAM6_TEMP)
        self.say("%s %s: its reverse zone fails too; RCPT TO quoting relay=[victim] -> %s"
                 % (rt6.name, rt6.addr, " ".join(codes)))
        self.flush(0.3)
        self.lab.dns.set_tempfail([])
        codes = self.clients.dialogue(rt, REDTEAM_550)
        self.say("%s %s: its reverse lookup fails for good; %d RCPT TO quoting relay=[victim] "
                 "(5 that read two ways or do not parse, 3 aimed at the stock filter) -> %s"
                 % (rt.name, rt.addr, len(REDTEAM_550) - 1, " ".join(codes)))
        self.flush(0.3)
        codes = self.clients.dialogue(rt6, REDTEAM6_550)
        self.say("%s %s: MAIL FROM in a domain that does not exist, 2 RCPT TO, VRFY/EXPN/ETRN "
                 "quoting relay=[victim] -> %s" % (rt6.name, rt6.addr, " ".join(codes)))
        self.flush(1.5)

    def final_probe(self):
        """Who the scenario got banned, what stayed queued, then one more
        connection from every client."""
        # who was banned by the scenario (the probes below may add lines of
        # their own: a connection that gets through and quits is a "did not
        # issue MAIL" to sendmail)
        self.banned_ips = {ip for _, ip in self.fail2ban.bans()}
        self.queued = self.lab.sendmail.queued()
        for c in CLIENTS:
            self.refused[c.name] = self.clients.probe(c)
        self.say("final probe: one more connection from every client: refused from %s" % (
            ", ".join(c.name for c in CLIENTS if self.refused[c.name]) or "nobody"))
        self.flush(0.5)

    def victims(self):
        """{address: {"who", "banned", "framed"}} for the red team's victims:
        framed when its first ban came after the red team started."""
        first = {}
        for jail, ip, t in self.fail2ban.bans(times=True):
            first.setdefault(norm_ip(ip), (t, jail))
        out = {}
        for who, addr in VICTIMS:
            ban = first.get(norm_ip(addr))
            out[addr] = {"who": who, "banned": ban is not None,
                         "framed": ban is not None and self.redteam_t is not None
                         and ban[0] >= self.redteam_t,
                         "jail": ban[1] if ban else None}
        return out

    def result(self):
        """What the run showed, for the table and the tests."""
        return {
            "mode": self.lab.mode,
            "engine": self.lab.engine,
            "clients": {c.name: {"addr": c.addr, "delivered": self.clients.delivered[c.name],
                                 "banned": c.addr in self.banned_ips,
                                 "refused": self.refused.get(c.name)}
                        for c in CLIENTS},
            "bank_messages": BANK_MESSAGES,
            "injected_banned": INJECTED in self.banned_ips,
            "victims": self.victims(),
            "queued": self.queued,
            "latency": dict(self.latency),
            "ban_latency": dict(self.ban_latency),
            "verdicts": list(self.lab.timeline.verdicts),
            "bans": self.fail2ban.bans(),
        }


def table(results):
    """The final table, one column group per run: a list of lines."""
    head1 = "%-12s %-15s" % ("", "")
    head2 = "%-12s %-15s" % ("client", "address")
    for r in results:
        title = "smban" if r["mode"] == "smban" else "fail2ban stock filters"
        head1 += " | %-30s" % title
        head2 += " | %-9s %-7s %-12s" % ("delivered", "banned", "next conn.")
    rows = [head1.rstrip(), head2.rstrip()]
    for c in CLIENTS:
        row = "%-12s %-15s" % (c.name, c.addr)
        for r in results:
            cr = r["clients"][c.name]
            dl = str(cr["delivered"])
            if c.name == "bank-mta":
                dl = "%d of %d" % (cr["delivered"], r["bank_messages"])
            row += " | %-9s %-7s %-12s" % (dl, "BANNED" if cr["banned"] else "no",
                                            "refused" if cr["refused"] else "accepted")
        rows.append(row.rstrip())
    # the red team's victims, clients or not
    rows.append("")
    head = "%-28s" % "framed by the red team"
    for r in results:
        head += " | %-30s" % "banned"
    rows.append(head.rstrip())
    for who, addr in VICTIMS:
        row = "%-12s %-15s" % (who, addr)
        for r in results:
            v = r["victims"][addr]
            row += " | %-30s" % ("BANNED (framed)" if v["framed"] else
                                 "BANNED before the red team" if v["banned"] else "no")
        rows.append(row.rstrip())
    return rows
