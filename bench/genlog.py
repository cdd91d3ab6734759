"""Generate a realistic sendmail log for the benchmark.

Two workloads, deterministic (seeded):
- "mail" (the default): mostly TLS sessions and deliveries; a few percent
  brute forcers, relay probers, pre-greeters, scanners, and MTAs whose TLS
  handshake fails and that retry in clear text.  RFC 3164 framing.
- "attack": a server under attack: nine lines in ten are attackers' (AUTH
  failures with and without relay=, relay probes and sender rejects with
  quoted local parts, access-map rejects, pre-greeting, SMTP attack
  counters, VRFY probes, scanners), in three framings: RFC 3164, ISO 8601
  (rsyslog's high-precision stamps) and RFC 5424.

    python3 bench/genlog.py LINES OUT [mail|attack]
"""
import random
import sys
import time


def generate(nlines, out, seed=1, profile="mail"):
    if profile == "attack":
        return generate_attack(nlines, out, seed)
    if profile != "mail":
        raise ValueError("profile must be mail or attack, not %r" % (profile,))
    rnd = random.Random(seed)
    t = time.mktime((2024, 11, 1, 0, 0, 0, 0, 0, -1))
    pid = 100000
    host = "mx1"
    n = 0
    buf = []

    def stamp():
        return time.strftime("%b %d %H:%M:%S", time.localtime(t))

    def emit(p, body):
        nonlocal n
        buf.append("%s %s sm-mta[%d]: %s\n" % (stamp(), host, p, body))
        n += 1

    def qid(p):
        return "4AH%05X%s%06d" % (rnd.randrange(1 << 20), "Pf", p % 1000000)

    legit = ["mail%d.example.com [198.51.100.%d]" % (i, i) for i in range(1, 200)]
    bad = ["[203.0.113.%d]" % i for i in range(1, 250)]
    ironport = ["esa%d.hc6077-55.iphmx.com [192.0.2.%d]" % (i, i) for i in range(1, 20)]
    while n < nlines:
        t += rnd.random() * 2
        pid += 1
        r = rnd.random()
        if r < 0.90:                       # a TLS session delivering mail
            c = rnd.choice(legit)
            q = qid(pid)
            emit(pid, "STARTTLS=server, relay=%s, version=TLSv1.3, verify=NO, "
                      "cipher=TLS_AES_256_GCM_SHA384, bits=256/256" % c)
            emit(pid, "%s: from=<list-%d@example.com>, size=%d, class=0, nrcpts=1, "
                      "msgid=<%d@example.com>, bodytype=8BITMIME, proto=ESMTPS, daemon=MTA, "
                      "relay=%s" % (q, rnd.randrange(99), rnd.randrange(1000, 90000), pid, c))
            emit(pid + 1, "%s: to=<user%d@example.org>, delay=00:00:01, xdelay=00:00:00, "
                          "mailer=local, pri=%d, dsn=2.0.0, stat=Sent" % (q, rnd.randrange(500),
                                                                            rnd.randrange(30000, 90000)))
            pid += 1
        elif r < 0.93:                     # TLS failure, fallback, clear-text delivery
            c = rnd.choice(ironport)
            emit(pid, "STARTTLS=server, error: accept failed=-1, reason=no shared cipher, "
                      "SSL_error=1, errno=0, retry=-1, relay=%s" % c)
            emit(pid, "%s: %s did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA" % (qid(pid), c))
            pid += 1
            emit(pid, "%s: from=<alerts@bank.example>, size=5120, class=0, nrcpts=1, "
                      "msgid=<%d@bank.example>, proto=ESMTP, daemon=MTA, relay=%s" % (qid(pid), pid, c))
        elif r < 0.96:                     # password guessing
            c = rnd.choice(bad)
            for _ in range(rnd.randrange(1, 4)):
                emit(pid, "%s: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): "
                          "authentication failure: checkpass failed, user=%s, relay=%s"
                     % (qid(pid), rnd.choice(["admin", "info", "test", "postmaster"]), c))
            emit(pid, "%s: %s did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA" % (qid(pid), c))
        elif r < 0.975:                    # relay probing
            c = rnd.choice(bad)
            emit(pid, "%s: ruleset=check_rcpt, arg1=<x%d@example.net>, relay=%s, reject=550 5.7.1 "
                      "<x%d@example.net>... Relaying denied. Proper authentication required."
                 % (qid(pid), pid, c, pid))
            emit(pid, "%s: lost input channel from %s to MTA after rcpt" % (qid(pid), c))
        elif r < 0.985:                    # pre-greeting bots
            c = rnd.choice(bad)
            emit(pid, "%s: rejecting commands from %s %s due to pre-greeting traffic after 0 seconds"
                 % (qid(pid), c, c))
        else:                              # scanners: connect and quit
            c = rnd.choice(bad + legit)
            emit(pid, "%s: %s did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA" % (qid(pid), c))
        if len(buf) >= 10000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf[: max(0, len(buf) - (n - nlines))]))


def generate_attack(nlines, out, seed=1):
    rnd = random.Random(seed)
    t = time.mktime((2024, 11, 1, 0, 0, 0, 0, 0, -1))
    pid = 200000
    n = 0
    buf = []

    def emit(p, body):
        nonlocal n
        f = rnd.random()
        if f < 0.6:
            frame = "%s mx1 sm-mta[%d]: " % (time.strftime("%b %d %H:%M:%S", time.localtime(t)), p)
        elif f < 0.8:
            frame = "%s.%06d+00:00 mx1 sm-mta[%d]: " % (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)), int(t % 1 * 1e6), p)
        else:
            frame = "<22>1 %s.%03dZ mx1 sm-mta %d - - " % (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)), int(t % 1 * 1e3), p)
        buf.append(frame + body + "\n")
        n += 1

    def qid(p):
        return "4AH%05X%s%06d" % (rnd.randrange(1 << 20), "Pf", p % 1000000)

    legit = ["mail%d.example.com [198.51.100.%d]" % (i, i) for i in range(1, 200)]
    bad = ["[203.0.113.%d]" % i for i in range(1, 250)] + \
        ["dyn-%d.isp.example [192.0.2.%d]" % (i, i) for i in range(1, 250)] + \
        ["[IPv6:2001:db8:6::%x]" % i for i in range(1, 250)]
    locals_ = ["x%d", '"a b%d"', '"x, relay=[198.51.100.7] %d"', '"q\\\\"%d"', "info%d"]
    users = ["admin", "info", "test", "postmaster", "a b", "x, relay=[198.51.100.9]"]
    while n < nlines:
        t += rnd.random() * 0.2
        pid += 1
        c = rnd.choice(bad)
        r = rnd.random()
        if r < 0.10:                       # the server's own mail goes on
            c = rnd.choice(legit)
            q = qid(pid)
            emit(pid, "STARTTLS=server, relay=%s, version=TLSv1.3, verify=NO, "
                      "cipher=TLS_AES_256_GCM_SHA384, bits=256/256" % c)
            emit(pid, "%s: from=<list@example.com>, size=%d, class=0, nrcpts=1, "
                      "msgid=<%d@example.com>, proto=ESMTPS, daemon=MTA, relay=%s"
                 % (q, rnd.randrange(1000, 90000), pid, c))
        elif r < 0.35:                     # password guessing, sendmail 8.14.4+
            for _ in range(rnd.randrange(1, 4)):
                emit(pid, "%s: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): "
                          "authentication failure: checkpass failed, user=%s, relay=%s"
                     % (qid(pid), rnd.choice(users), c))
        elif r < 0.42:                     # password guessing, older sendmail: no relay=
            q = qid(pid)
            for _ in range(rnd.randrange(1, 4)):
                emit(pid, "%s: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): "
                          "authentication failure: checkpass failed" % q)
            emit(pid, "%s: %s did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA" % (q, c))
        elif r < 0.60:                     # relay probes, quoted local parts
            a = "<%s@example.net>" % (rnd.choice(locals_) % pid)
            emit(pid, "%s: ruleset=check_rcpt, arg1=%s, relay=%s, reject=550 5.7.1 %s... "
                      "Relaying denied. Proper authentication required." % (qid(pid), a, c, a))
        elif r < 0.68:                     # senders in domains that do not exist
            a = "<%s@nx%d.invalid>" % (rnd.choice(locals_) % pid, pid % 97)
            emit(pid, "%s: ruleset=check_mail, arg1=%s, relay=%s, reject=553 5.1.8 %s... "
                      "Domain of sender address %s does not exist" % (qid(pid), a, c, a, a[1:-1]))
        elif r < 0.73:                     # the access map refuses the client
            ip = c[c.index("[") + 1:-1].replace("IPv6:", "")
            emit(pid, "ruleset=check_relay, arg1=%s, arg2=%s, relay=%s, reject=550 5.7.1 "
                      "Access denied" % (c.split(" ")[0] if " " in c else c, ip, c))
        elif r < 0.83:                     # pre-greeting bots
            emit(pid, "%s: rejecting commands from %s due to pre-greeting traffic after 0 "
                      "seconds" % (qid(pid), c))
        elif r < 0.88:                     # SMTP attack counters
            emit(pid, "%s: %s: possible SMTP attack: command=%s, count=%d"
                 % (qid(pid), c, rnd.choice(["AUTH", "HELO/EHLO", "VRFY"]), rnd.randrange(3, 9)))
        elif r < 0.93:                     # address harvesting
            emit(pid, "%s: %s: VRFY %s [rejected]" % (qid(pid), c, rnd.choice(["root", "admin"])))
        else:                              # scanners: connect and quit
            emit(pid, "%s: %s did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA"
                 % (qid(pid), c))
        if len(buf) >= 10000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf[: max(0, len(buf) - (n - nlines))]))


if __name__ == "__main__":
    with open(sys.argv[2], "w") as f:
        generate(int(sys.argv[1]), f, profile=sys.argv[3] if len(sys.argv) > 3 else "mail")
