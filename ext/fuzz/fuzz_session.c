/*
 * fuzz_session.c — libFuzzer harness: one input is a sequence of log lines
 * (split at newlines) through classifiers with tiny tables: 3 sessions,
 * 60 s idle, 2 trusted IPs for 120 s.  Sessions are evicted and expired
 * within a single input, so the session rules run against a table that
 * keeps losing entries.
 *
 * As in fuzz_line.c, the normal classifier and a regex_only one must agree
 * event for event (smban_classify_buffer, the batch path), every event
 * keeps its contract, and a line adds at most the failures of the lines
 * before it (pending failures resolve at most once each).  The tables never
 * hold more than their bound, and the line counter counts every line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_event.h"

#define MAX_EVENTS 512

typedef struct {
    const char *buf;
    size_t len;
    size_t n;
    uint64_t lineno[MAX_EVENTS];
    smban_event ev[MAX_EVENTS];
} collected;

static smban_classifier *fast, *slow;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_classifiers(&fast, &slow, 1);
    return 0;
}

static int collect(void *ctx, uint64_t lineno, const char *line, size_t len,
                   const smban_event *ev)
{
    collected *c = ctx;
    REQUIRE(line >= c->buf && line + len <= c->buf + c->len);
    /* line numbers start at 1: line k may resolve at most k-1 earlier
     * pending failures besides its own */
    fuzz_check_event(ev, line, len, (int)lineno);
    if (c->n < MAX_EVENTS) {
        c->lineno[c->n] = lineno;
        c->ev[c->n++] = *ev;
    }
    return 0;
}

static void check_tables(const smban_classifier *c)
{
    smban_table_stats s, t;
    smban_classifier_table_stats(c, &s, &t);
    REQUIRE(s.count <= s.max && s.max == 3);
    REQUIRE(t.count <= t.max && t.max == 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static collected a, b;
    const char *buf = (const char *)data;

    smban_classifier_reset(fast);
    smban_classifier_reset(slow);
    a.buf = b.buf = buf;
    a.len = b.len = size;
    a.n = b.n = 0;
    uint64_t before = smban_classifier_counters(fast)->lines;
    int64_t na = smban_classify_buffer(fast, buf, size, 1, collect, &a);
    int64_t nb = smban_classify_buffer(slow, buf, size, 1, collect, &b);
    REQUIRE(na == nb && na >= 0);
    REQUIRE(smban_classifier_counters(fast)->lines - before == (uint64_t)na);
    REQUIRE(a.n == b.n);
    for (size_t i = 0; i < a.n; i++) {
        REQUIRE(a.lineno[i] == b.lineno[i] && a.lineno[i] <= (uint64_t)na);
        fuzz_same_event(&a.ev[i], &b.ev[i]);
    }
    check_tables(fast);
    check_tables(slow);
    return 0;
}
