/*
 * fuzz_event.h — what the classifier harnesses check on every event.
 * Header-only: each harness is one program.
 */
#ifndef SMBAN_FUZZ_EVENT_H
#define SMBAN_FUZZ_EVENT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../smban.h"

/* A broken contract traps: libFuzzer keeps the input as a crash. */
#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* A classifier with regex_only off and one with it on; small tables when
 * small (so that eviction and expiry happen within one input).  Year
 * inference uses a fixed reference, so a run is reproducible. */
static void fuzz_classifiers(smban_classifier **fast, smban_classifier **slow,
                             int small)
{
    smban_options o;
    char err[SMBAN_ERR_LEN];
    smban_options_default(&o);
    o.ref_time = 1735646400.0;          /* 2024-12-31T12:00:00Z */
    if (small) {
        o.max_sessions = 3;
        o.session_idle = 60;
        o.max_trusted = 2;
        o.trust_seconds = 120;
    }
    if (smban_classifier_new(&o, fast, err) != 0)
        __builtin_trap();
    o.regex_only = 1;
    if (smban_classifier_new(&o, slow, err) != 0)
        __builtin_trap();
}

static void fuzz_check_span(smban_span s, const char *line, size_t len)
{
    if (!s.p)
        return;
    REQUIRE(s.p >= line && s.n <= len && (size_t)(s.p - line) <= len - s.n);
}

/* The one span that may not borrow from the line: an envelope of size 0
 * accepted nothing, and classify.c reports its detail (the recipients
 * accepted) as a static "0". */
static void fuzz_check_detail(const smban_event *ev, const char *line, size_t len)
{
    smban_span d = ev->detail;
    if ((ev->cls == SMBAN_C_ENVELOPE || ev->via == SMBAN_C_ENVELOPE) && d.p
        && !(d.p >= line && d.p < line + len)) {
        REQUIRE(d.n == 1 && d.p[0] == '0');
        return;
    }
    fuzz_check_span(d, line, len);
}

/* The contract of one event of [line, line+len).  max_failures: what the
 * line may add (1 alone; more only when earlier lines left failures
 * pending for its session). */
static void fuzz_check_event(const smban_event *ev, const char *line, size_t len,
                             int max_failures)
{
    char ip[48];
    REQUIRE(ev->cls >= 0 && ev->cls < SMBAN_NCLASSES);
    REQUIRE(ev->kind == smban_class_kind(ev->cls));
    REQUIRE(ev->via == -1 || (ev->via >= 0 && ev->via < SMBAN_NCLASSES && ev->via != ev->cls));
    REQUIRE(ev->failures >= 0 && ev->failures <= max_failures);
    REQUIRE(ev->family == 0 || ev->family == 4 || ev->family == 6);
    REQUIRE(!ev->failures || ev->family);
    /* a failure is of a class that can count: ban, or suspect */
    REQUIRE(!ev->failures || ev->kind == SMBAN_BAN || ev->kind == SMBAN_SUSPECT);
    REQUIRE((smban_event_ip(ev, ip) != NULL) == (ev->family != 0));
    REQUIRE(!ev->has_time || isfinite(ev->time));
    fuzz_check_span(ev->qid, line, len);
    fuzz_check_span(ev->user, line, len);
    fuzz_check_span(ev->host, line, len);
    fuzz_check_span(ev->mech, line, len);
    fuzz_check_detail(ev, line, len);
    fuzz_check_span(ev->prog, line, len);
    /* the rule matched is of the line's own class: the reported one, or
     * via (a TLS fallback, resolved pending failures), or the closing line
     * of a TLS fallback that resolved pending failures */
    REQUIRE(ev->rule >= 0 && (size_t)ev->rule < smban_nrules);
    int rc = smban_rules[ev->rule].cls;
    REQUIRE(rc == ev->cls || rc == ev->via
            || (ev->via == SMBAN_C_TLS_FALLBACK
                && (rc == SMBAN_C_NULL_SESSION || rc == SMBAN_C_LOST_INPUT)));
    /* only an envelope delivers, and only one of accepted recipients */
    REQUIRE(!ev->delivered || (rc == SMBAN_C_ENVELOPE && ev->detail.p && ev->detail.n));
    /* the reason agrees with the failures */
    REQUIRE(ev->reason >= 0 && ev->reason < SMBAN_NREASONS);
    REQUIRE((ev->failures > 0) == (ev->reason == SMBAN_R_COUNTED
                                   || ev->reason == SMBAN_R_RESOLVED));
    REQUIRE(ev->reason != SMBAN_R_PENDING || !ev->family);
    REQUIRE(ev->reason != SMBAN_R_RESOLVED || ev->via >= 0);
    REQUIRE(ev->reason != SMBAN_R_TLS_FALLBACK || ev->cls == SMBAN_C_TLS_FALLBACK);
}

static int same_span(smban_span a, smban_span b)
{
    return a.p == b.p && (!a.p || a.n == b.n);
}

/* The hand-written parsers and the patterns must agree field for field
 * (spans borrow from the same line, so their pointers compare). */
static void fuzz_same_event(const smban_event *a, const smban_event *b)
{
    REQUIRE(a->cls == b->cls && a->kind == b->kind && a->via == b->via);
    REQUIRE(a->failures == b->failures && a->family == b->family);
    REQUIRE(!a->family || memcmp(a->addr, b->addr, 16) == 0);
    REQUIRE(a->has_time == b->has_time && (!a->has_time || a->time == b->time));
    REQUIRE(a->pid == b->pid && a->has_code == b->has_code);
    REQUIRE(!a->has_code || a->code == b->code);
    REQUIRE(same_span(a->qid, b->qid) && same_span(a->user, b->user));
    REQUIRE(same_span(a->host, b->host) && same_span(a->mech, b->mech));
    REQUIRE(same_span(a->detail, b->detail) && same_span(a->prog, b->prog));
    REQUIRE(a->rule == b->rule && a->delivered == b->delivered && a->reason == b->reason);
}

#endif
