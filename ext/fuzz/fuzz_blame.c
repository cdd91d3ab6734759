/*
 * fuzz_blame.c — libFuzzer harness: the input is text a client chose, set
 * in one client-chosen field of a sendmail line whose true client is fixed
 * (198.51.100.7 or 2001:db8:1::7).  No event may carry another address
 * (README.md, "Threat model"): whatever the text, the engine blames the
 * true client or nobody.
 *
 * Input:
 *   byte 0   the format: which field of which line the text goes in
 *            (FORMATS below: arg1 and the reject echo, arg2, from=, msgid=,
 *            user=, the SASL detail, a VRFY/EXPN/ETRN argument, an open
 *            proxy's command, a HELO name, authid=, the PTR name, ...);
 *   byte 1   the true client: bit 2 IPv6; bits 0-1 its form ([addr],
 *            name [addr], name [addr] (may be forged), ident@name [addr]);
 *            bit 3: a connection line of the true client comes first, so
 *            the session knows its address;
 *   the rest the client's text.  A 0x01 byte splits it in two (the first
 *            part goes in the first field, the second in the other: arg1
 *            and the echo, from= and msgid=, user= and the detail); without
 *            one both fields hold the whole text.  Newlines and NULs, which
 *            a syslog line never holds, become spaces.  In an envelope
 *            address field the text ends where sendmail's parser ends an
 *            address, and a text it would refuse (unbalanced quotes,
 *            comments, angle brackets) gives no line (addr_len); free
 *            text (a VRFY argument, user=, ...) is taken whole.
 * Known limit left out: an AUTH failure of sendmail before 8.14.4 (no
 * relay=) whose SASL detail ends in a client field reads like a later
 * sendmail's line (pytests/test_properties.py, planted_relay).
 *
 * Both classifiers (hand-written parsers and regex_only) see the lines;
 * each event keeps the core's contract (fuzz_event.h), both agree, and an
 * address other than the true client's traps.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_event.h"

static smban_classifier *fast, *slow;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_classifiers(&fast, &slow, 0);
    return 0;
}

/* ---- building a line ---- */

#define LINE_MAX_BYTES 20000

typedef struct {
    char buf[LINE_MAX_BYTES];
    size_t n;
} line_buf;

static void put(line_buf *b, const char *p, size_t n)
{
    if (n > sizeof b->buf - b->n)
        n = sizeof b->buf - b->n;
    memcpy(b->buf + b->n, p, n);
    b->n += n;
}

static void puts_(line_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* at most max bytes of p (sendmail's %.<max>s) */
static void putcut(line_buf *b, const char *p, size_t n, size_t max)
{
    put(b, p, n < max ? n : max);
}

typedef struct {
    const char *a, *b;      /* the client's text: first and second field */
    size_t an, bn;
    const char *client;     /* sendmail's $_ for the true client */
    const char *addr;       /* "[198.51.100.7]" or "[IPv6:2001:db8:1::7]" */
    const char *ip;         /* the address as smban_event_ip prints it */
    long a_bare, b_bare;    /* addr_len of the texts as bare addresses */
    long a_angle, b_angle;  /* ... and inside "<...>" */
} parts;

/* A PTR name made of the text: resolvers let no space, comma or bracket
 * through (rules.def relies on it). */
static void put_ptr(line_buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n && b->n < sizeof b->buf; i++) {
        char c = p[i];
        b->buf[b->n++] = (c == ' ' || c == '\t' || c == ',' || c == '[' || c == ']') ? '-' : c;
    }
}

/* What sendmail takes as the address of "MAIL FROM:text" or "RCPT TO:text"
 * (and logs as arg1=, arg2=, from=, to=, and echoes): prescan() with the
 * delimiter ' ' ends it at the first space outside a quoted string, a
 * comment and angle brackets (the rest would be ESMTP parameters).  An
 * address whose quotes, comments or angle brackets do not balance is
 * refused there ("553 Unbalanced ..."): no ruleset runs, nothing of it is
 * logged.  angle: the depth the text starts at (1 inside "<...>", closed
 * by sendmail's own '>' when the text is not cut).  Returns its length,
 * or -1 when sendmail would refuse it. */
static long addr_len(const char *p, size_t n, int angle)
{
    int quoted = 0, esc = 0, comment = 0, open = angle;
    size_t i;
    for (i = 0; i < n; i++) {
        char c = p[i];
        if (esc)
            esc = 0;
        else if (c == '\\')
            esc = 1;
        else if (quoted)
            quoted = c != '"';
        else if (c == '"')
            quoted = 1;
        else if (c == '(')
            comment++;
        else if (c == ')') {
            if (!comment)
                return -1;
            comment--;
        } else if (comment)
            continue;
        else if (c == '<')
            angle++;
        else if (c == '>') {
            if (angle <= 0)
                return -1;
            angle--;
        } else if ((c == ' ' || c == '\t') && angle <= 0)
            break;
    }
    if (quoted || comment || angle != (i == n ? open : 0))
        return -1;
    return (long)i;
}

/* the text as free text (A, B), or as an address (AD, BD: bare; AA, BA:
 * inside "<...>", the closing bracket included) */
#define A(x) put(x, f->a, f->an)
#define B(x) put(x, f->b, f->bn)
#define AD(x) put(x, f->a, (size_t)f->a_bare)
#define BD(x) put(x, f->b, (size_t)f->b_bare)
static void put_angle(line_buf *m, const char *p, size_t n, long k)
{
    puts_(m, "<");
    put(m, p, (size_t)k);
    if ((size_t)k == n) /* not cut: the address closes where the text ends */
        puts_(m, ">");
}
#define AA(x) put_angle(x, f->a, f->an, f->a_angle)
#define BA(x) put_angle(x, f->b, f->bn, f->b_angle)

/* One format per case: the message (after "QID: "), and whether it
 * carries a queue id. */
static int build(int fmt, const parts *f, line_buf *m)
{
    switch (fmt) {
    case 0:     /* check_rcpt: arg1 and the echo, as logged */
        puts_(m, "ruleset=check_rcpt, arg1="); AD(m);
        puts_(m, ", relay="); puts_(m, f->client);
        puts_(m, ", reject=550 5.7.1 "); BD(m);
        puts_(m, "... Relaying denied. Proper authentication required.");
        return 1;
    case 1:     /* check_rcpt: the text inside <...> */
        puts_(m, "ruleset=check_rcpt, arg1="); AA(m);
        puts_(m, ", relay="); puts_(m, f->client);
        puts_(m, ", reject=550 5.7.1 "); BA(m);
        puts_(m, "... Relaying denied. IP name lookup failed "); puts_(m, f->addr);
        return 1;
    case 2:     /* check_rcpt: an unknown user */
        puts_(m, "ruleset=check_rcpt, arg1="); AA(m);
        puts_(m, ", relay="); puts_(m, f->client);
        puts_(m, ", reject=550 5.1.1 "); BA(m); puts_(m, "... User unknown");
        return 1;
    case 3:     /* check_mail: the sender's domain, echoed twice */
        puts_(m, "ruleset=check_mail, arg1="); AA(m);
        puts_(m, ", relay="); puts_(m, f->client);
        puts_(m, ", reject=553 5.1.8 "); BA(m);
        puts_(m, "... Domain of sender address "); BD(m); puts_(m, " does not exist");
        return 1;
    case 4:     /* check_compat: arg1 and arg2 */
        puts_(m, "ruleset=check_compat, arg1="); AD(m);
        puts_(m, ", arg2="); BD(m);
        puts_(m, ", relay="); puts_(m, f->client);
        puts_(m, ", reject=550 5.7.1 "); BD(m); puts_(m, "... Relaying denied");
        return 1;
    case 5:     /* the HELO name of a bogus HELO reject */
        puts_(m, "ruleset=check_mail, arg1=<a@example.org>, relay="); puts_(m, f->client);
        puts_(m, ", reject=553 5.7.1 <a@example.org>... bogus HELO name used: "); A(m);
        return 1;
    case 6:     /* check_vrfy/check_expn/check_etrn: arg1 is the command's argument */
        puts_(m, "ruleset=check_vrfy, arg1="); A(m);
        puts_(m, ", relay="); puts_(m, f->client);
        puts_(m, ", reject=550 5.7.1 "); B(m); puts_(m, "... Access denied");
        return 0;
    case 7:     /* the envelope: from=%.200s and msgid=%.100s */
        puts_(m, "from="); putcut(m, f->a, (size_t)f->a_bare, 200);
        puts_(m, ", size=17, class=0, nrcpts=1, msgid="); putcut(m, f->b, f->bn, 100);
        puts_(m, ", bodytype=8BITMIME, proto=ESMTP, daemon=MTA, relay="); puts_(m, f->client);
        return 1;
    case 8:     /* AUTH failure: user= and the SASL detail (8.16.1 and later) */
        puts_(m, "AUTH failure (LOGIN): authentication failure (-13) SASL(-13): "); B(m);
        puts_(m, ", user="); putcut(m, f->a, f->an, 64);
        puts_(m, ", relay="); putcut(m, f->client, strlen(f->client), 100);
        return 1;
    case 9:     /* AUTH failure: the SASL detail (8.14.4 to 8.16.0) */
        puts_(m, "AUTH failure (PLAIN): user not found (-20) SASL(-20): "); A(m);
        puts_(m, ", relay="); putcut(m, f->client, strlen(f->client), 100);
        return 1;
    case 10:    /* VRFY/EXPN refused */
        puts_(m, f->client); puts_(m, ": VRFY "); A(m); puts_(m, " [rejected]");
        return 1;
    case 11:
        puts_(m, f->client); puts_(m, ": EXPN "); A(m); puts_(m, " [rejected]");
        return 1;
    case 12:
        puts_(m, f->client); puts_(m, ": ETRN "); A(m); puts_(m, " [rejected]");
        return 1;
    case 13:    /* an open proxy's command, %.40s */
        puts_(m, f->client); puts_(m, ": probable open proxy: command="); putcut(m, f->a, f->an, 40);
        return 1;
    case 14:    /* authid= of a successful AUTH */
        puts_(m, "AUTH=server, relay="); puts_(m, f->client);
        puts_(m, ", authid="); putcut(m, f->a, f->an, 128); puts_(m, ", mech=PLAIN, bits=0");
        return 0;
    case 15:    /* the PTR name, in a client field printed whole */
        put_ptr(m, f->a, f->an); puts_(m, " "); puts_(m, f->addr);
        puts_(m, ": possible SMTP attack: command=AUTH, count=5");
        return 1;
    case 16: {  /* the PTR name, in relay=%.100s (a long one loses the address) */
        line_buf c;
        c.n = 0;
        put_ptr(&c, f->a, f->an); puts_(&c, " "); puts_(&c, f->addr);
        puts_(m, "AUTH failure (LOGIN): authentication failure (-13) SASL(-13): "); B(m);
        puts_(m, ", user=x, relay="); putcut(m, c.buf, c.n, 100);
        return 1;
    }
    case 17:    /* the PTR name as RealHostName (pre-greeting, timeouts) */
        puts_(m, "rejecting commands from "); put_ptr(m, f->a, f->an); puts_(m, " ");
        puts_(m, f->addr); puts_(m, " due to pre-greeting traffic after 0 seconds");
        return 1;
    case 18: {
        line_buf c;
        c.n = 0;
        put_ptr(&c, f->a, f->an);
        puts_(m, "timeout waiting for input from ");
        putcut(m, c.buf, c.n, 100); puts_(m, " during server cmd read");
        return 1;
    }
    case 19:    /* a bare usrerr line: the address comes from the session */
        AA(m); puts_(m, "... User unknown");
        return 1;
    case 20:    /* the sender of a lost DATA */
        puts_(m, "collect: unexpected close on connection from mx.partner.example, sender="); AD(m);
        return 1;
    case 21:    /* lines no rule reads, holding client text */
        puts_(m, "invalid domain name ("); A(m); puts_(m, ") from "); puts_(m, f->client);
        return 1;
    case 22:
        puts_(m, "Milter: from="); AA(m); puts_(m, ", reject=550 5.7.1 Command rejected");
        return 1;
    case 23:    /* a delivery: its relay= is the next hop, never a client */
        puts_(m, "to="); AA(m);
        puts_(m, ", delay=00:00:01, mailer=esmtp, pri=120000, relay=mx.example. [203.0.113.9], "
                 "dsn=2.0.0, stat=Sent ("); B(m); puts_(m, ")");
        return 1;
    case 24:    /* an AUTH command's argument, tempfailed */
        puts_(m, "SMTP AUTH command ("); putcut(m, f->a, f->an, 100);
        puts_(m, ") from "); puts_(m, f->client); puts_(m, " tempfailed (due to previous checks)");
        return 1;
    default:    /* the check_etrn/check_expn twin of case 6, arg1 in <...> */
        puts_(m, fmt & 1 ? "ruleset=check_expn, arg1=<" : "ruleset=check_etrn, arg1=<"); A(m);
        puts_(m, ">, relay="); puts_(m, f->client);
        puts_(m, ", reject=550 5.7.1 <"); B(m); puts_(m, ">... Access denied");
        return 0;
    }
}

#define NFORMATS 27

/* The address fields a format fills, so that a text sendmail would refuse
 * as an address gives no line: 1 a bare, 2 b bare, 4 a in <>, 8 b in <>. */
static int address_fields(int fmt)
{
    switch (fmt) {
    case 0: return 1 | 2;
    case 1: case 2: return 4 | 8;
    case 3: return 2 | 4 | 8;
    case 4: return 1 | 2;
    case 7: return 1;
    case 19: case 22: case 23: return 4;
    case 20: return 1;
    default: return 0;
    }
}

/* ---- checking ---- */

static void check_blame(const smban_event *ev, const parts *f)
{
    char ip[48];
    if (!ev->family)
        return;
    REQUIRE(smban_event_ip(ev, ip) != NULL);
    REQUIRE(strcmp(ip, f->ip) == 0);
}

static int classify_both(const char *line, size_t len, const parts *f)
{
    smban_event a, b;
    int ra = smban_classify(fast, line, len, &a);
    int rb = smban_classify(slow, line, len, &b);
    REQUIRE(ra == rb);
    if (!ra)
        return 0;
    fuzz_check_event(&a, line, len, 1);
    fuzz_same_event(&a, &b);
    check_blame(&a, f);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char text[LINE_MAX_BYTES];
    static line_buf msg, line;
    static const char *const names[] = {
        "%s", "mx.partner.example %s", "mx.partner.example %s (may be forged)",
        "IDENT:x@mx.partner.example %s",
    };
    char client[128], addr[48];
    parts f;

    if (size < 2)
        return 0;
    int fmt = data[0] % NFORMATS;
    int who = data[1];
    size_t n = size - 2;
    if (n > sizeof text / 2)
        n = sizeof text / 2;
    for (size_t i = 0; i < n; i++) {
        char c = (char)data[2 + i];
        text[i] = c == '\n' || c == '\0' ? ' ' : c;
    }
    const char *split = memchr(text, '\x01', n);
    f.a = text;
    f.an = split ? (size_t)(split - text) : n;
    f.b = split ? split + 1 : text;
    f.bn = split ? n - f.an - 1 : n;
    f.ip = who & 4 ? "2001:db8:1::7" : "198.51.100.7";
    snprintf(addr, sizeof addr, "[%s%s]", who & 4 ? "IPv6:" : "", f.ip);
    snprintf(client, sizeof client, names[who & 3], addr);
    f.addr = addr;
    f.client = client;

    f.a_bare = addr_len(f.a, f.an, 0);
    f.b_bare = addr_len(f.b, f.bn, 0);
    f.a_angle = addr_len(f.a, f.an, 1);
    f.b_angle = addr_len(f.b, f.bn, 1);
    int need = address_fields(fmt);
    if (((need & 1) && f.a_bare < 0) || ((need & 2) && f.b_bare < 0)
        || ((need & 4) && f.a_angle < 0) || ((need & 8) && f.b_angle < 0))
        return 0;

    msg.n = 0;
    int has_qid = build(fmt, &f, &msg);
    line.n = 0;
    puts_(&line, "Nov 17 00:33:34 mx sm-mta[4242]: ");
    if (has_qid)
        puts_(&line, "4AH5XXPf004242: ");
    put(&line, msg.buf, msg.n);

    smban_classifier_reset(fast);
    smban_classifier_reset(slow);
    if (who & 8) {
        char open[256];
        int k = snprintf(open, sizeof open,
                         "Nov 17 00:33:33 mx sm-mta[4242]: NOQUEUE: connect from %s", client);
        REQUIRE(classify_both(open, (size_t)k, &f));
    }
    classify_both(line.buf, line.n, &f);
    return 0;
}
