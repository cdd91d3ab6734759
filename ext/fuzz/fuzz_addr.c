/*
 * fuzz_addr.c — libFuzzer harness: the ban backend's address validation
 * (smban_addr_parse / smban_addr_format in ext/addr.c).  Built from addr.c
 * alone: no libiptc, no table, no root.
 *
 * Input: byte 0 picks the family and byte 1 the smallest network prefix
 * allowed (0: hosts only); the rest is the address text (cut at a NUL, as
 * a C string would be).  An accepted address must format to text that
 * parses back to the same address, within SMBAN_ADDR_LEN, with host bits
 * zero: what is banned is exactly what was validated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../addr.h"

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[SMBAN_ERR_LEN], buf[SMBAN_ADDR_LEN], *text;
    smban_addr a, b;

    if (size < 2)
        return 0;
    int family = data[0] & 1 ? 6 : 4;
    int min_prefix = data[1] % 130;
    if (!(text = malloc(size - 1)))
        return 0;
    memcpy(text, data + 2, size - 2);
    text[size - 2] = '\0';
    err[0] = '\0';
    int rc = smban_addr_parse(text, family, min_prefix, &a, err);
    if (rc != 0) {
        REQUIRE(rc == SMBAN_EINVAL && err[0] && memchr(err, 0, sizeof err));
    } else {
        int max = family == 6 ? 128 : 32;
        REQUIRE(a.family == family && a.prefix <= max);
        REQUIRE(a.prefix == max || (min_prefix > 0 && a.prefix >= min_prefix));
        if (family == 4)
            for (int i = 4; i < 16; i++)
                REQUIRE(a.addr[i] == 0);
        smban_addr_format(&a, buf);
        REQUIRE(memchr(buf, 0, sizeof buf));
        REQUIRE(smban_addr_parse(buf, family, min_prefix, &b, err) == 0);
        REQUIRE(memcmp(&a, &b, sizeof a) == 0);
    }
    free(text);
    return 0;
}
