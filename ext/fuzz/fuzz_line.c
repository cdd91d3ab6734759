/*
 * fuzz_line.c — libFuzzer harness: one input is one log line through the
 * classifier (ext/classify.c with frame.c and session.c), on fresh session
 * tables.
 *
 * The line goes through two classifiers: the normal one, and one with
 * regex_only set (the rule table's PCRE2 patterns instead of the
 * hand-written parsers of envelope and TLS-session lines).  Both must give
 * the same event, field for field.  Each event must also keep the core's
 * contract: its spans borrow from the line, its kind is its class's kind,
 * a failure has an address, and one line alone adds at most one failure.
 * A broken contract traps, so the fuzzer keeps the input as a crash.
 */
#include <stdint.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    const uint8_t *nl = memchr(data, '\n', size);
    smban_event a, b;

    /* a line holds no newline (smban_classify's contract; the batch path
     * splits at them): the input's first line is the line */
    if (nl)
        size = (size_t)(nl - data);

    smban_classifier_reset(fast);
    smban_classifier_reset(slow);
    int ra = smban_classify(fast, line, size, &a);
    int rb = smban_classify(slow, line, size, &b);
    REQUIRE(ra == rb);
    if (!ra)
        return 0;
    fuzz_check_event(&a, line, size, 1);
    fuzz_same_event(&a, &b);
    return 0;
}
