/*
 * fuzz_reader.c — libFuzzer harness: a log read from a file descriptor
 * (ext/reader.c) classifies exactly as the same bytes in one buffer.
 *
 * The input is a log in which a byte 0x01 followed by a byte k stands for
 * k * 2048 + 1 bytes 'x': a short input can then hold lines longer than
 * SMBAN_MAX_LINE and than the reader's buffer, and lines cut by its reads.
 * The expanded log goes through smban_classify_buffer on one classifier
 * and, from a memfd, through smban_classify_fd on another with the same
 * options: both must see the same events, in order, on the same line
 * numbers, and end with the same counters.  A difference traps, so the
 * fuzzer keeps the input as a crash.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* its other helpers compare two classifiers' events by pointer: the two
 * passes here read different buffers */
#pragma clang diagnostic ignored "-Wunused-function"
#include "fuzz_event.h"

#define MAX_EVENTS 8192

typedef struct {
    uint64_t lineno;
    smban_event ev;
    const char *line;        /* in the expanded log, alive until both passes end */
    size_t len;
} seen;

static smban_classifier *by_buffer, *by_fd;
static seen *events;
static size_t nevents, checked;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    smban_options o;
    char err[SMBAN_ERR_LEN];
    (void)argc;
    (void)argv;
    smban_options_default(&o);
    o.ref_time = 1735646400.0;          /* 2024-12-31T12:00:00Z */
    if (smban_classifier_new(&o, &by_buffer, err) != 0
        || smban_classifier_new(&o, &by_fd, err) != 0
        || !(events = malloc(MAX_EVENTS * sizeof *events)))
        __builtin_trap();
    return 0;
}

static int record(void *ctx, uint64_t lineno, const char *line, size_t len,
                  const smban_event *ev)
{
    (void)ctx;
    REQUIRE(nevents < MAX_EVENTS);
    seen *s = &events[nevents++];
    s->lineno = lineno;
    s->ev = *ev;
    s->line = line;
    s->len = len;
    return 0;
}

/* The same span: absent in both, or at the same place of its line with the
 * same length (or, outside the line, the same static text: the "0" of an
 * empty envelope). */
static void same_place(smban_span a, const char *la, smban_span b, const char *lb,
                       size_t len)
{
    REQUIRE(!a.p == !b.p);
    if (!a.p)
        return;
    REQUIRE(a.n == b.n);
    uintptr_t pa = (uintptr_t)a.p, pb = (uintptr_t)b.p;
    int in_a = pa >= (uintptr_t)la && pa <= (uintptr_t)la + len;
    int in_b = pb >= (uintptr_t)lb && pb <= (uintptr_t)lb + len;
    REQUIRE(in_a == in_b);
    REQUIRE(in_a ? pa - (uintptr_t)la == pb - (uintptr_t)lb : pa == pb);
}

static int compare(void *ctx, uint64_t lineno, const char *line, size_t len,
                   const smban_event *ev)
{
    (void)ctx;
    REQUIRE(checked < nevents);
    const seen *s = &events[checked++];
    const smban_event *a = &s->ev;
    fuzz_check_event(ev, line, len, 65535);
    REQUIRE(s->lineno == lineno && s->len == len && memcmp(s->line, line, len) == 0);
    REQUIRE(a->cls == ev->cls && a->kind == ev->kind && a->via == ev->via);
    REQUIRE(a->failures == ev->failures && a->family == ev->family);
    REQUIRE(!a->family || memcmp(a->addr, ev->addr, 16) == 0);
    REQUIRE(a->has_time == ev->has_time && (!a->has_time || a->time == ev->time));
    REQUIRE(a->pid == ev->pid && a->has_code == ev->has_code);
    REQUIRE(!a->has_code || a->code == ev->code);
    same_place(a->qid, s->line, ev->qid, line, len);
    same_place(a->user, s->line, ev->user, line, len);
    same_place(a->host, s->line, ev->host, line, len);
    same_place(a->mech, s->line, ev->mech, line, len);
    same_place(a->detail, s->line, ev->detail, line, len);
    same_place(a->prog, s->line, ev->prog, line, len);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[SMBAN_ERR_LEN];
    size_t n = 0;

    /* the expanded size first, then the log */
    for (size_t i = 0; i < size; i++)
        n += data[i] == 0x01 && i + 1 < size ? (size_t)data[++i] * 2048 + 1 : 1;
    char *log = malloc(n + 1);
    REQUIRE(log != NULL);
    n = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == 0x01 && i + 1 < size) {
            size_t run = (size_t)data[++i] * 2048 + 1;
            memset(log + n, 'x', run);
            n += run;
        } else {
            log[n++] = (char)data[i];
        }
    }

    smban_classifier_reset(by_buffer);
    smban_classifier_reset(by_fd);
    nevents = checked = 0;
    int64_t want = smban_classify_buffer(by_buffer, log, n, 1, record, NULL);

    int fd = memfd_create("fuzz_reader", 0);
    REQUIRE(fd >= 0);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, log + off, n - off);
        REQUIRE(w > 0);
        off += (size_t)w;
    }
    REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
    int64_t got = smban_classify_fd(by_fd, fd, 1, compare, NULL, err);
    close(fd);
    free(log);

    REQUIRE(got == want && checked == nevents);
    REQUIRE(memcmp(smban_classifier_counters(by_buffer), smban_classifier_counters(by_fd),
                   sizeof(smban_counters)) == 0);
    return 0;
}
