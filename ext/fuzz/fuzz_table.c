/*
 * fuzz_table.c — libFuzzer harness: the bounded LRU table (ext/session.c)
 * against a model written the obvious way (an array in use order, searched
 * linearly).
 *
 * Input: a program of 4-byte operations on a table of at most 5 entries
 * with 10 s idle expiry, over a key space of 32 keys so that keys collide,
 * come back after eviction, and fill the open-addressing index's probe
 * chains:
 *     op & 3 == 0: get(key, now, create=0)   1: get(key, now, create=1)
 *             2: peek(key)                     3: del(key) if present, or clear
 * The time moves by a signed step (it may go backwards, as merged logs
 * do).  After every operation the table must agree with the model: the
 * same entry found or not, the same counts of entries, evictions and
 * expiries, and each entry's payload (a tag written when it was made)
 * intact.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../smban.h"

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define MAX 5
#define IDLE 10.0

typedef struct {
    uint64_t k0, k1;
    double last;
    uint8_t tag;
} model_entry;

static model_entry model[MAX];    /* model[0]: most recently used */
static size_t model_n;
static uint64_t model_evicted, model_expired;

static long model_find(uint64_t k0, uint64_t k1)
{
    for (size_t i = 0; i < model_n; i++)
        if (model[i].k0 == k0 && model[i].k1 == k1)
            return (long)i;
    return -1;
}

static void model_remove(size_t i)
{
    memmove(&model[i], &model[i + 1], (model_n - i - 1) * sizeof model[0]);
    model_n--;
}

static void model_to_front(size_t i)
{
    model_entry e = model[i];
    memmove(&model[1], &model[0], i * sizeof model[0]);
    model[0] = e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smban_table *t;
    char err[SMBAN_ERR_LEN];
    double now = 1000;
    uint8_t next_tag = 1;

    if (smban_table_new(MAX, IDLE, &t, err) != 0)
        __builtin_trap();
    model_n = 0;
    model_evicted = model_expired = 0;
    for (size_t pc = 0; pc + 4 <= size; pc += 4) {
        int op = data[pc] & 3;
        /* 32 keys; k1 alone differs for some, as pids of one host do */
        uint64_t k0 = (data[pc + 1] >> 2) & 3, k1 = data[pc + 1] & 7;
        now += (double)(int8_t)data[pc + 2] / 4;
        int create = op == 1;
        if (op <= 1) {
            /* the table expires from its least recently used end only */
            while (model_n && model[model_n - 1].last < now - IDLE) {
                model_n--;
                model_expired++;
            }
            long i = model_find(k0, k1);
            smban_session *s = smban_table_get(t, k0, k1, now, create);
            if (i < 0 && !create) {
                REQUIRE(s == NULL);
            } else {
                REQUIRE(s && s->k0 == k0 && s->k1 == k1);
                if (i >= 0) {
                    REQUIRE(s->addr[0] == model[i].tag);
                    model_to_front((size_t)i);
                } else {
                    REQUIRE(s->addr[0] == 0 && s->flags == 0 && s->pending_cls == -1);
                    if (model_n == MAX) {
                        model_n--;
                        model_evicted++;
                    }
                    memmove(&model[1], &model[0], model_n * sizeof model[0]);
                    model_n++;
                    model[0].k0 = k0;
                    model[0].k1 = k1;
                    model[0].last = 0;
                    model[0].tag = next_tag;
                    s->addr[0] = next_tag;
                    next_tag = next_tag == 255 ? 1 : next_tag + 1;
                }
                if (now > model[0].last)
                    model[0].last = now;
            }
        } else if (op == 2) {
            long i = model_find(k0, k1);
            smban_session *s = smban_table_peek(t, k0, k1);
            REQUIRE((s != NULL) == (i >= 0));
            REQUIRE(!s || (s->k0 == k0 && s->k1 == k1 && s->addr[0] == model[i].tag));
        } else if (data[pc + 3] == 0xff) {
            smban_table_clear(t);
            model_n = 0;
        } else {
            long i = model_find(k0, k1);
            smban_session *s = smban_table_peek(t, k0, k1);
            REQUIRE((s != NULL) == (i >= 0));
            if (s) {
                smban_table_del(t, s);
                model_remove((size_t)i);
            }
        }
        smban_table_stats st;
        smban_table_get_stats(t, &st);
        REQUIRE(st.count == model_n && st.max == MAX);
        REQUIRE(st.evicted == model_evicted && st.expired == model_expired);
    }
    /* every entry the model holds is still found, with its payload */
    for (size_t i = 0; i < model_n; i++) {
        smban_session *s = smban_table_peek(t, model[i].k0, model[i].k1);
        REQUIRE(s && s->addr[0] == model[i].tag);
    }
    smban_table_free(t);
    return 0;
}
