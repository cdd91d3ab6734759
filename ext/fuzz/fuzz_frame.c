/*
 * fuzz_frame.c — libFuzzer harness: one input is one syslog line through
 * smban_frame_parse (ext/frame.c).
 *
 * Beyond "no crash, no sanitizer report", it checks the frame's contract:
 * every span borrows from the line, the message ends where the line ends,
 * and a parsed time is a finite number.  A broken contract traps, so the
 * fuzzer keeps the input as a crash.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../smban.h"

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static int inside(const char *p, size_t n, const char *line, size_t len)
{
    return n == 0 || (p && p >= line && n <= len && p - line <= (ptrdiff_t)(len - n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    smban_clock clk;
    smban_frame f;

    /* a fixed reference (2024-12-31T12:00:00Z) keeps runs reproducible */
    smban_clock_init(&clk, 1735646400.0);
    if (smban_frame_parse(line, size, &clk, &f) != 0)
        return 0;
    REQUIRE(inside(f.host, f.host_len, line, size));
    REQUIRE(f.prog && f.prog_len > 0 && inside(f.prog, f.prog_len, line, size));
    REQUIRE(f.msg && inside(f.msg, f.msg_len, line, size));
    REQUIRE(f.msg + f.msg_len == line + size);
    REQUIRE(f.pid >= -1);
    REQUIRE(!f.has_time || isfinite(f.time));
    return 0;
}
