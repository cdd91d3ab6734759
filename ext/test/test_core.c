/*
 * test_core.c — unit tests of smban's C core, in plain C (no Python):
 * syslog framing, the bounded session table, the classifier's session
 * rules, and a log read by descriptor.  Prints "N passed, N failed" and exits non-zero on a failure.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include "../smban.h"
#include "check.h"

static int span_is(const char *p, size_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* ---- framing ---- */

static void frame_case(const char *line, double want_time, const char *host,
                       const char *prog, long pid, const char *msg_start)
{
    smban_clock clk;
    smban_frame f;
    /* reference: 2024-12-31T12:00:00Z (tests run with TZ=UTC) */
    smban_clock_init(&clk, smban_utc(2024, 12, 31, 12, 0, 0));
    int rc = smban_frame_parse(line, strlen(line), &clk, &f);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "  line: %s\n", line);
        return;
    }
    if (want_time >= 0) {
        CHECK(f.has_time && fabs(f.time - want_time) < 1e-5);
        if (!(f.has_time && fabs(f.time - want_time) < 1e-5))
            fprintf(stderr, "  time %.6f want %.6f: %s\n", f.time, want_time, line);
    } else {
        CHECK(!f.has_time);
    }
    if (host)
        CHECK(span_is(f.host, f.host_len, host));
    else
        CHECK(f.host_len == 0);
    CHECK(span_is(f.prog, f.prog_len, prog));
    CHECK(f.pid == pid);
    CHECK(f.msg_len >= strlen(msg_start) && memcmp(f.msg, msg_start, strlen(msg_start)) == 0);
}

/* line frames, and its time is want */
static int framed_at(smban_clock *clk, const char *line, double want)
{
    smban_frame f;
    return smban_frame_parse(line, strlen(line), clk, &f) == 0 && f.has_time
           && fabs(f.time - want) < 1e-6;
}

static void test_framing(void)
{
    double t = smban_utc(2024, 11, 17, 0, 33, 33);
    frame_case("Nov 17 00:33:33 jik4 sendmail[372431]: X: body", t, "jik4", "sendmail", 372431, "X: body");
    frame_case("Nov  3 11:35:30 mail sm-mta[1]: b", smban_utc(2024, 11, 3, 11, 35, 30), "mail", "sm-mta", 1, "b");
    frame_case("Nov 03 11:35:30 mail sm-mta[1]: b", smban_utc(2024, 11, 3, 11, 35, 30), "mail", "sm-mta", 1, "b");
    frame_case("Jan 2 19:58:51 MTA sm-mta[29534]: [ID 702911 mail.notice] ruleset=x",
               smban_utc(2024, 1, 2, 19, 58, 51), "MTA", "sm-mta", 29534, "ruleset=x");
    frame_case("Jun 17 14:37:39 <mail.info> robin sm-mta[2794]: b", smban_utc(2024, 6, 17, 14, 37, 39),
               "robin", "sm-mta", 2794, "b");
    frame_case("Nov 17 00:33:33.250000 h sendmail[5]: b", t + 0.25, "h", "sendmail", 5, "b");
    frame_case("2024-11-17T00:33:33.123456-05:00 jik4 sendmail[9]: b", t + 5 * 3600 + 0.123456,
               "jik4", "sendmail", 9, "b");
    frame_case("2024-11-17T00:33:33+0100 jik4 sendmail[9]: b", t - 3600, "jik4", "sendmail", 9, "b");
    frame_case("2024-11-17T00:33:33Z jik4 sendmail[9]: b", t, "jik4", "sendmail", 9, "b");
    frame_case("2024-11-17T00:33:33.5Z jik4 sendmail[9]: b", t + 0.5, "jik4", "sendmail", 9, "b");
    frame_case("2024-11-17T00:33:33.123456789Z h sendmail[9]: b", t + 0.123456789, "h", "sendmail", 9, "b");
    frame_case("2024-11-17 00:33:33 h sendmail[9]: b", t, "h", "sendmail", 9, "b");
    frame_case("1731803613.500000 h sendmail[9]: b", 1731803613.5, "h", "sendmail", 9, "b");
    frame_case("<22>1 2024-11-17T00:33:33Z h sendmail 9 - - b", t, "h", "sendmail", 9, "b");
    frame_case("<22>1 2024-11-17T00:33:33Z - sm-mta - ID47 [a b=\"]\"][c] b", t, NULL, "sm-mta", -1, "b");
    frame_case("<22>1 - h sendmail 9 - - b", -1, "h", "sendmail", 9, "b");
    frame_case("<22>Nov 17 00:33:33 h sendmail[9]: b", t, "h", "sendmail", 9, "b");
    frame_case("Nov 17 00:33:33 sendmail[9]: b", t, NULL, "sendmail", 9, "b");
    frame_case("Nov 17 00:33:33 h sendmail: b", t, "h", "sendmail", -1, "b");
    frame_case("sendmail[15806618]: k1SN9pkK15806618: b", -1, NULL, "sendmail", 15806618, "k1SN9pkK");
    frame_case("Feb 20 06:25:36 [my server IP] sm-mta[22765]: b", smban_utc(2024, 2, 20, 6, 25, 36),
               "[my server IP]", "sm-mta", 22765, "b");

    /* December read in January: the previous year */
    smban_clock clk;
    smban_frame f;
    smban_clock_init(&clk, smban_utc(2025, 1, 1, 0, 10, 0));
    const char *dec = "Dec 31 23:59:59 h sendmail[1]: b";
    CHECK(framed_at(&clk, dec, smban_utc(2024, 12, 31, 23, 59, 59)));
    /* the next line of that hour converts from the cache: both years of
     * the stamp are kept (the one the reference implies, then the one
     * before), so no further mktime; with one entry they would evict each
     * other on every line */
    CHECK(framed_at(&clk, "Dec 31 23:30:00 h sendmail[1]: b", smban_utc(2024, 12, 31, 23, 30, 0)));
    int k25 = 2025 * 1000000 + 12 * 10000 + 31 * 100 + 23, k24 = k25 - 1000000;
    CHECK((clk.key[0] == k25 && clk.key[1] == k24) || (clk.key[0] == k24 && clk.key[1] == k25));
    /* and a line of today stays in this year */
    const char *jan = "Jan  1 00:05:00 h sendmail[1]: b";
    CHECK(framed_at(&clk, jan, smban_utc(2025, 1, 1, 0, 5, 0)));

    /* the same stamp again: the same time, from the last stamp's cache
     * (jan) or parsed again (dec, a stamp of the year before) */
    CHECK(framed_at(&clk, jan, smban_utc(2025, 1, 1, 0, 5, 0)));
    CHECK(framed_at(&clk, dec, smban_utc(2024, 12, 31, 23, 59, 59)));
    CHECK(framed_at(&clk, dec, smban_utc(2024, 12, 31, 23, 59, 59)));
    /* a fraction after it, or a different byte anywhere in it, is parsed */
    CHECK(framed_at(&clk, "Dec 31 23:59:59.5 h sendmail[1]: b",
                    smban_utc(2024, 12, 31, 23, 59, 59.5)));
    CHECK(framed_at(&clk, "Dec 31 23:59:58 h sendmail[1]: b", smban_utc(2024, 12, 31, 23, 59, 58)));
    /* a reference that moved to another year: the stamp is converted again */
    smban_clock_init(&clk, smban_utc(2025, 1, 1, 0, 10, 0));
    CHECK(framed_at(&clk, jan, smban_utc(2025, 1, 1, 0, 5, 0)));
    clk.ref = smban_utc(2026, 1, 1, 0, 10, 0);
    CHECK(framed_at(&clk, jan, smban_utc(2026, 1, 1, 0, 5, 0)));

    /* garbage is refused, never crashes */
    const char *bad[] = {"", "Nov", "Nov 17 00:33:33", "Nov 17 00:33:33 host", "<22>1 ",
                         "<22>1 2024-11-17T00:33:33Z", "just some words here"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(smban_frame_parse(bad[i], strlen(bad[i]), &clk, &f) < 0);
}

/* ---- the session table ---- */

static void test_table(void)
{
    char err[SMBAN_ERR_LEN];
    smban_table *t;
    smban_table_stats st;

    CHECK(smban_table_new(0, 10, &t, err) < 0 && t == NULL);
    CHECK(smban_table_new(4, 10, &t, err) == 0);

    /* bound: the fifth entry evicts the least recently used */
    for (uint64_t i = 1; i <= 4; i++)
        CHECK(smban_table_get(t, i, 0, 100, 1) != NULL);
    CHECK(smban_table_get(t, 1, 0, 101, 0) != NULL);     /* 1 is now the newest */
    CHECK(smban_table_get(t, 5, 0, 102, 1) != NULL);     /* evicts 2 */
    smban_table_get_stats(t, &st);
    CHECK(st.count == 4 && st.evicted == 1);
    CHECK(smban_table_peek(t, 2, 0) == NULL);
    CHECK(smban_table_peek(t, 1, 0) && smban_table_peek(t, 3, 0) && smban_table_peek(t, 5, 0));

    /* idle expiry: entries unused for more than 10 s go */
    CHECK(smban_table_get(t, 5, 0, 111, 0) != NULL);     /* 5 used at 111 */
    CHECK(smban_table_get(t, 9, 0, 111.5, 0) == NULL);   /* 1, 3, 4 (<= 101) expire */
    smban_table_get_stats(t, &st);
    CHECK(st.count == 1 && st.expired == 3);

    /* delete keeps probe chains intact: fill, delete half, find the rest */
    smban_table_clear(t);
    smban_table_free(t);
    CHECK(smban_table_new(1000, 1e9, &t, err) == 0);
    for (uint64_t i = 0; i < 1000; i++)
        smban_table_get(t, i * 7919, i, 1, 1);
    for (uint64_t i = 0; i < 1000; i += 2)
        smban_table_del(t, smban_table_peek(t, i * 7919, i));
    int found = 0, gone = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        smban_session *s = smban_table_peek(t, i * 7919, i);
        if (i % 2)
            found += s != NULL;
        else
            gone += s == NULL;
    }
    CHECK(found == 500 && gone == 500);

    /* keys sharing the low bits of k0 ^ k1 (one counter of the presence
     * filter, more than it counts): all found, and none once deleted */
    smban_table_clear(t);
    for (uint64_t i = 1; i <= 300; i++)
        CHECK(smban_table_get(t, i << 16, 7, 1, 1) != NULL);
    for (uint64_t i = 1; i <= 300; i++)
        CHECK(smban_table_peek(t, i << 16, 7) != NULL);
    for (uint64_t i = 1; i <= 300; i += 2)
        smban_table_del(t, smban_table_peek(t, i << 16, 7));
    found = gone = 0;
    for (uint64_t i = 1; i <= 300; i++) {
        smban_session *s = smban_table_peek(t, i << 16, 7);
        found += i % 2 == 0 && s && s->k0 == i << 16;
        gone += i % 2 && !s;
    }
    CHECK(found == 150 && gone == 150);
    /* a counter that never saturated says absent once its keys are gone */
    CHECK(smban_table_get(t, 5, 1, 1, 1) != NULL);
    smban_table_del(t, smban_table_peek(t, 5, 1));
    CHECK(smban_table_peek(t, 5, 1) == NULL);
    CHECK(smban_table_get(t, 5, 1, 1, 0) == NULL);
    smban_table_clear(t);
    CHECK(smban_table_peek(t, 2 << 16, 7) == NULL);

    /* a flood of distinct keys never exceeds the bound */
    for (uint64_t i = 0; i < 100000; i++)
        smban_table_get(t, i, 99, 2, 1);
    smban_table_get_stats(t, &st);
    CHECK(st.count == 1000 && st.evicted >= 99000);
    smban_table_free(t);
    smban_table_free(NULL);
}

/* ---- classifier session rules ---- */

static smban_classifier *make(int aggressive, size_t max_sessions)
{
    smban_options o;
    smban_classifier *c;
    char err[SMBAN_ERR_LEN];
    smban_options_default(&o);
    o.aggressive = aggressive;
    o.ref_time = smban_utc(2024, 12, 31, 12, 0, 0);
    if (max_sessions)
        o.max_sessions = max_sessions;
    if (smban_classifier_new(&o, &c, err) < 0) {
        fprintf(stderr, "classifier: %s\n", err);
        exit(2);
    }
    return c;
}

static int classify(smban_classifier *c, const char *line, smban_event *ev)
{
    return smban_classify(c, line, strlen(line), ev);
}

static void test_story(void)
{
    for (int aggressive = 0; aggressive <= 1; aggressive++) {
        smban_classifier *c = make(aggressive, 0);
        smban_event ev;
        char tls[512], dni[512], other[512], ip[48];
        /* 50 interleaved story pairs and 50 plain null sessions */
        int story_failures = 0, other_failures = 0;
        for (int i = 0; i < 50; i++) {
            snprintf(tls, sizeof tls, "Nov 17 00:%02d:00 jik4 sendmail[%d]: STARTTLS=server, error: accept failed=-1, reason=no shared cipher, SSL_error=1, errno=0, retry=-1, relay=esa12.hc6077-55.iphmx.com [139.138.46.199]", i, 1000 + i);
            snprintf(other, sizeof other, "Nov 17 00:%02d:00 jik4 sendmail[%d]: 4AH5XXPf%06d: [192.0.2.%d] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA", i, 5000 + i, 5000 + i, i + 1);
            snprintf(dni, sizeof dni, "Nov 17 00:%02d:01 jik4 sendmail[%d]: 4AH5XXPf%06d: esa12.hc6077-55.iphmx.com [139.138.46.199] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA", i, 1000 + i, 1000 + i);
            CHECK(classify(c, tls, &ev) == 1 && ev.cls == SMBAN_C_TLS_FAILURE);
            story_failures += ev.failures;
            CHECK(classify(c, other, &ev) == 1 && ev.cls == SMBAN_C_NULL_SESSION);
            other_failures += ev.failures;
            CHECK(classify(c, dni, &ev) == 1 && ev.cls == SMBAN_C_TLS_FALLBACK
                  && ev.via == SMBAN_C_NULL_SESSION && strcmp(smban_event_ip(&ev, ip), "139.138.46.199") == 0
                  && ev.reason == SMBAN_R_TLS_FALLBACK);
            story_failures += ev.failures;
        }
        CHECK(story_failures == 0);
        CHECK(other_failures == (aggressive ? 50 : 0));
        smban_classifier_free(c);
    }
}

static void test_pending_auth(void)
{
    smban_classifier *c = make(0, 0);
    smban_event ev;
    char ip[48];
    CHECK(classify(c, "Mar 13 23:47:32 myserver sendmail[29205]: 32E5lOxs029205: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed", &ev) == 1);
    CHECK(ev.cls == SMBAN_C_AUTH_FAILURE && ev.family == 0 && ev.failures == 0
          && ev.reason == SMBAN_R_PENDING && smban_rules[ev.rule].cls == SMBAN_C_AUTH_FAILURE
          && !smban_rules[ev.rule].twin);
    CHECK(classify(c, "Mar 13 23:47:33 myserver sendmail[29205]: 32E5lOxs029205: [46.148.40.163] did not issue MAIL/EXPN/VRFY/ETRN during connection to 25", &ev) == 1);
    CHECK(ev.cls == SMBAN_C_AUTH_FAILURE && ev.via == SMBAN_C_NULL_SESSION
          && ev.failures == 1 && strcmp(smban_event_ip(&ev, ip), "46.148.40.163") == 0);
    CHECK(ev.reason == SMBAN_R_RESOLVED && smban_rules[ev.rule].cls == SMBAN_C_NULL_SESSION);
    CHECK(strcmp(smban_reason_name(ev.reason), "resolved") == 0 && !smban_reason_name(SMBAN_NREASONS));
    /* the session ended: the same pid again starts afresh */
    CHECK(classify(c, "Mar 13 23:48:00 myserver sendmail[29205]: 32E5lOxs029205: [46.148.40.163] did not issue MAIL/EXPN/VRFY/ETRN during connection to 25", &ev) == 1);
    CHECK(ev.cls == SMBAN_C_NULL_SESSION && ev.failures == 0);
    smban_classifier_free(c);
}

static void test_bounds(void)
{
    /* a table of 2 sessions: a third session evicts the TLS-failed one, whose
     * "did not issue" is then judged without context (suspect, never ban) */
    smban_classifier *c = make(0, 2);
    smban_event ev;
    smban_table_stats s, t;
    CHECK(classify(c, "Nov 17 00:00:00 h sendmail[1]: STARTTLS=server, error: accept failed=-1, reason=no shared cipher, SSL_error=1, errno=0, retry=-1, relay=[192.0.2.1]", &ev) == 1);
    CHECK(classify(c, "Nov 17 00:00:01 h sendmail[2]: STARTTLS=server, relay=[192.0.2.2], version=TLSv1.3, verify=NO, cipher=x, bits=256/256", &ev) == 1);
    CHECK(classify(c, "Nov 17 00:00:02 h sendmail[3]: STARTTLS=server, relay=[192.0.2.3], version=TLSv1.3, verify=NO, cipher=x, bits=256/256", &ev) == 1);
    smban_classifier_table_stats(c, &s, &t);
    CHECK(s.count == 2 && s.evicted == 1);
    CHECK(classify(c, "Nov 17 00:00:03 h sendmail[1]: 4AH5XXPf000001: [192.0.2.1] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA", &ev) == 1);
    CHECK(ev.cls == SMBAN_C_NULL_SESSION && ev.kind == SMBAN_SUSPECT && ev.failures == 0);

    /* over-long lines and NULs are skipped and counted */
    char *big = malloc(SMBAN_MAX_LINE + 10);
    memset(big, 'a', SMBAN_MAX_LINE + 10);
    CHECK(smban_classify(c, big, SMBAN_MAX_LINE + 10, &ev) == 0);
    free(big);
    const char nul[] = "Nov 17 00:00:04 h sendmail[4]: [192.0.2.4]: possible SMTP\0 attack: command=AUTH, count=5";
    CHECK(smban_classify(c, nul, sizeof nul - 1, &ev) == 0);
    const smban_counters *k = smban_classifier_counters(c);
    CHECK(k->skipped_long == 1 && k->skipped_nul == 1);
    smban_classifier_free(c);
    smban_classifier_free(NULL);
}

/* ---- reading by descriptor ---- */

static int count_event(void *ctx, uint64_t lineno, const char *line, size_t len,
                       const smban_event *ev)
{
    uint64_t *sum = ctx;
    (void)line;
    (void)len;
    *sum += lineno * 1000 + (uint64_t)ev->cls * 10 + (uint64_t)ev->failures;
    return 0;
}

/* A log read from a file (lines cut by the reader's buffer, over-long
 * lines, CRLF, no final newline) classifies as the same bytes in one
 * buffer; a read error is SMBAN_EIO with a message. */
static void test_reader(void)
{
    const char *story = "Nov 17 00:40:01 h sendmail[400001]: 4AH5e1Aa400001: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=postmaster, relay=[109.172.142.229]\r\n";
    size_t cap = 4 << 20, n = 0, sl = strlen(story);
    char *log = malloc(cap);
    const size_t longs[] = {300 << 10, SMBAN_MAX_LINE + 1, SMBAN_MAX_LINE, 600 << 10};
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 3000; i++) {
            memcpy(log + n, story, sl);
            n += sl;
        }
        memset(log + n, 'x', longs[round]);
        n += longs[round];
        log[n - 1] = round == 1 ? '\r' : 'x';    /* round 1: not over-long after all */
        log[n++] = '\n';
    }
    memcpy(log + n, story, sl - 2);           /* no newline at the end */
    n += sl - 2;

    FILE *f = tmpfile();
    CHECK(f && fwrite(log, 1, n, f) == n && fflush(f) == 0);
    rewind(f);
    smban_classifier *a = make(0, 0), *b = make(0, 0);
    uint64_t sum_a = 0, sum_b = 0;
    char err[SMBAN_ERR_LEN] = "";
    int64_t na = smban_classify_buffer(a, log, n, 7, count_event, &sum_a);
    int64_t nb = smban_classify_fd(b, fileno(f), 7, count_event, &sum_b, err);
    CHECK(na == 4 * 3001 + 1 && nb == na && sum_a == sum_b && sum_a);
    CHECK(memcmp(smban_classifier_counters(a), smban_classifier_counters(b),
                 sizeof(smban_counters)) == 0);
    CHECK(smban_classifier_counters(b)->skipped_long == 2);   /* rounds 0 and 3 */
    fclose(f);

    FILE *w = fopen("/dev/null", "w");
    CHECK(w != NULL);
    CHECK(smban_classify_fd(b, fileno(w), 1, count_event, &sum_b, err) == SMBAN_EIO
          && err[0]);
    fclose(w);
    smban_classifier_free(a);
    smban_classifier_free(b);
    free(log);
}

/* The classifier's IPv4 reader accepts exactly what inet_pton does. */
static void test_ipv4_like_inet_pton(void)
{
    static const char *cases[] = {
        "1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3", "1.2.3.4.5",
        "01.2.3.4", "1.02.3.4", "1.2.3.004", "1..2.3", ".1.2.3", "1.2.3.", "999.1.1.1",
        "1.2.3.4a", "10.0.0.1", "100.200.250.199", "1.2.3.-4", "1.2.3.+4", "", "1",
        "12.34.56.789", "0.1.2.3", "00.1.2.3", "1.2.3.04", "192.0.2.255",
    };
    smban_classifier *c = make(0, 0);
    char line[256], ip[48];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        smban_event ev;
        unsigned char want[4];
        int ok = inet_pton(AF_INET, cases[i], want) == 1;
        snprintf(line, sizeof line,
                 "Nov 17 00:00:00 h sendmail[%zu]: [%s]: possible SMTP attack: command=AUTH, count=5",
                 i + 10, cases[i]);
        int hit = classify(c, line, &ev);
        if (!ok) {
            CHECK(!hit || ev.family == 0);
            if (hit && ev.family)
                fprintf(stderr, "  accepted %s\n", cases[i]);
        } else {
            CHECK(hit && ev.family == 4 && memcmp(ev.addr, want, 4) == 0
                  && strcmp(smban_event_ip(&ev, ip), cases[i]) == 0);
        }
    }
    smban_classifier_free(c);
}

static void test_utf8(void)
{
    CHECK(smban_utf8_valid((const unsigned char *)"plain", 5));
    CHECK(smban_utf8_valid((const unsigned char *)"caf\xc3\xa9", 5));
    CHECK(!smban_utf8_valid((const unsigned char *)"caf\xe9", 4));
    CHECK(!smban_utf8_valid((const unsigned char *)"\xc3", 1));
    CHECK(!smban_utf8_valid((const unsigned char *)"\xed\xa0\x80", 3)); /* surrogate */
    CHECK(smban_utf8_valid((const unsigned char *)"\xf0\x9f\x98\x80", 4));
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    test_framing();
    test_table();
    test_story();
    test_pending_auth();
    test_bounds();
    test_reader();
    test_utf8();
    test_ipv4_like_inet_pton();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
