/*
 * check.h — the one assertion of smban's plain-C unit tests.  CHECK counts
 * passes and failures (a failure prints where and what) and never stops the
 * run; each test program prints "N passed, N failed" at the end.
 */
#ifndef SMBAN_CHECK_H
#define SMBAN_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (cond)                                                          \
            passed++;                                                      \
        else {                                                             \
            failed++;                                                      \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                  \
    } while (0)

#endif
