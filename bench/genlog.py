"""Generate a realistic sendmail log for the benchmark.

Mostly TLS sessions and deliveries; a few percent brute forcers, relay
probers, pre-greeters, scanners, and MTAs whose TLS handshake fails and
that retry in clear text.  Deterministic (seeded), RFC 3164 framing.

    python3 bench/genlog.py LINES OUT
"""
import random
import sys
import time


def generate(nlines, out, seed=1):
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


if __name__ == "__main__":
    with open(sys.argv[2], "w") as f:
        generate(int(sys.argv[1]), f)
