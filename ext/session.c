/*
 * session.c — a bounded table of sessions with LRU eviction and idle expiry.
 *
 * The classifier keeps one entry per SMTP session (syslog host, program,
 * pid) and one per IP that proved itself legitimate.  Attackers choose how
 * many sessions they open, so the table is fixed-size: entries live in a
 * pool allocated once, an open-addressing index (linear probing, deletion by
 * backward shift) finds them, and a doubly linked list in use order gives
 * the entry to expire (idle for longer than `idle`, in log time) or to
 * evict (the table is full).  Every operation is O(1) amortised.
 *
 * Most lookups of a mail log are for keys that are absent (the pid of a
 * delivery process, which has no session), and a probe of the index at a
 * random slot is a cache miss.  A small array of counters, indexed by the
 * low bits of k0 ^ k1 (for a session: its pid, in a log's one host and
 * program), answers most of them first: consecutive pids use neighbouring
 * counters, so the few lines of it in use stay in cache.  A counter
 * counts the entries of its bucket; one that reached its maximum stays
 * there (it no longer proves absence).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "smban.h"

#define NIL UINT32_MAX

/* An index slot keeps the hash beside the pool position, so that probing
 * and deletion read the pool only for the entry they want. */
typedef struct {
    uint32_t pos;           /* pool index, or NIL for an empty slot */
    uint32_t hash;
} slot;

struct smban_table {
    smban_session *pool;
    slot *index;
    size_t max, mask, count;
    size_t max_cap;         /* the index grows up to this (2 * max, rounded up) */
    uint32_t head, tail;    /* most / least recently used */
    uint32_t free_head;     /* free list through .next (deleted entries) */
    size_t fresh;           /* pool[fresh..max) never used yet */
    double idle;
    uint64_t evicted, expired;
    uint8_t present[1 << 16];   /* entries per bucket of k0 ^ k1; 255: many */
};

static uint8_t *presence(smban_table *t, uint64_t k0, uint64_t k1)
{
    return &t->present[(uint16_t)(k0 ^ k1)];
}

/* 64-bit hash of bytes: eight at a time (a multiply and a shift each),
 * the last one to seven byte by byte, then a final avalanche.  Keys are
 * short (a queue id, a host name), so the per-byte loop of a classic hash
 * cost more than the lookup it serves. */
uint64_t smban_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    uint64_t h = (0x9E3779B97F4A7C15ULL ^ seed) + n * 0xff51afd7ed558ccdULL;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
    }
    if (n) {
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++)
            w |= (uint64_t)b[i] << (8 * i);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static uint32_t key_hash(uint64_t k0, uint64_t k1)
{
    uint64_t h = k0 ^ (k1 * 0x9E3779B97F4A7C15ULL);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return (uint32_t)h;
}

int smban_table_new(size_t max, double idle, smban_table **out,
                    char err[SMBAN_ERR_LEN])
{
    smban_table *t;
    size_t cap = 16, max_cap;

    *out = NULL;
    if (max < 1 || max > (size_t)1 << 28) {
        snprintf(err, SMBAN_ERR_LEN, "table size %zu out of range 1..%zu",
                 max, (size_t)1 << 28);
        return SMBAN_EINVAL;
    }
    while (cap < 2 * max)
        cap <<= 1;
    /* start small: the live sessions of a log are usually few, and a small
     * index stays in cache; it doubles as the table fills */
    max_cap = cap;
    if (cap > 1024)
        cap = 1024;
    if (!(t = calloc(1, sizeof *t)))
        goto nomem;
    t->pool = calloc(max, sizeof *t->pool);
    t->index = malloc(cap * sizeof *t->index);
    if (!t->pool || !t->index)
        goto nomem;
    t->max = max;
    t->max_cap = max_cap;
    t->mask = cap - 1;
    t->idle = idle;
    /* the pool comes zeroed from calloc and is touched only as it fills,
     * so a large bound costs memory only when sessions need it */
    memset(t->index, 0xff, cap * sizeof *t->index);   /* every pos NIL */
    t->free_head = NIL;
    t->head = t->tail = NIL;
    *out = t;
    return 0;
nomem:
    smban_table_free(t);
    snprintf(err, SMBAN_ERR_LEN, "out of memory for a table of %zu entries", max);
    return SMBAN_ENOMEM;
}

void smban_table_free(smban_table *t)
{
    if (!t)
        return;
    free(t->pool);
    free(t->index);
    free(t);
}

void smban_table_clear(smban_table *t)
{
    memset(t->index, 0xff, (t->mask + 1) * sizeof *t->index);
    memset(t->pool, 0, t->fresh * sizeof *t->pool);
    memset(t->present, 0, sizeof t->present);
    t->fresh = 0;
    t->free_head = NIL;
    t->head = t->tail = NIL;
    t->count = 0;
}

static void lru_unlink(smban_table *t, smban_session *s)
{
    if (s->prev != NIL)
        t->pool[s->prev].next = s->next;
    else
        t->head = s->next;
    if (s->next != NIL)
        t->pool[s->next].prev = s->prev;
    else
        t->tail = s->prev;
}

static void lru_push_head(smban_table *t, smban_session *s)
{
    uint32_t i = (uint32_t)(s - t->pool);
    s->prev = NIL;
    s->next = t->head;
    if (t->head != NIL)
        t->pool[t->head].prev = i;
    t->head = i;
    if (t->tail == NIL)
        t->tail = i;
}

static size_t slot_of(const smban_table *t, const smban_session *s)
{
    uint32_t i = (uint32_t)(s - t->pool);
    size_t j = s->hash & t->mask;
    while (t->index[j].pos != i)
        j = (j + 1) & t->mask;
    return j;
}

void smban_table_del(smban_table *t, smban_session *s)
{
    size_t i = slot_of(t, s), j = i;

    /* backward-shift deletion keeps every probe chain unbroken */
    t->index[i].pos = NIL;
    for (;;) {
        j = (j + 1) & t->mask;
        if (t->index[j].pos == NIL)
            break;
        size_t home = t->index[j].hash & t->mask;
        /* move the entry at j to the hole at i unless its home is in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->index[i] = t->index[j];
            t->index[j].pos = NIL;
            i = j;
        }
    }
    lru_unlink(t, s);
    uint8_t *n = presence(t, s->k0, s->k1);
    if (*n != UINT8_MAX)
        (*n)--;
    /* no need to zero it: smban_table_get zeroes an entry it reuses */
    s->next = t->free_head;
    t->free_head = (uint32_t)(s - t->pool);
    t->count--;
}

smban_session *smban_table_peek(smban_table *t, uint64_t k0, uint64_t k1)
{
    if (!*presence(t, k0, k1))
        return NULL;
    uint32_t h = key_hash(k0, k1);
    for (size_t j = h & t->mask;; j = (j + 1) & t->mask) {
        uint32_t e = t->index[j].pos;
        if (e == NIL)
            return NULL;
        if (t->index[j].hash != h)
            continue;
        smban_session *s = &t->pool[e];
        if (s->k0 == k0 && s->k1 == k1)
            return s;
    }
}

/* Double the index (rehashing every slot); -1 when out of memory. */
static int grow(smban_table *t)
{
    size_t cap = (t->mask + 1) * 2;
    slot *index = malloc(cap * sizeof *index);
    if (!index)
        return -1;
    memset(index, 0xff, cap * sizeof *index);
    for (size_t j = 0; j <= t->mask; j++) {
        if (t->index[j].pos == NIL)
            continue;
        size_t k = t->index[j].hash & (cap - 1);
        while (index[k].pos != NIL)
            k = (k + 1) & (cap - 1);
        index[k] = t->index[j];
    }
    free(t->index);
    t->index = index;
    t->mask = cap - 1;
    return 0;
}

smban_session *smban_table_get(smban_table *t, uint64_t k0, uint64_t k1,
                               double now, int create)
{
    smban_session *s;

    /* expire from the least recently used end */
    while (t->tail != NIL && t->pool[t->tail].last < now - t->idle) {
        smban_table_del(t, &t->pool[t->tail]);
        t->expired++;
    }
    if ((s = smban_table_peek(t, k0, k1))) {
        if (now > s->last)
            s->last = now;
        /* already the most recently used: a session's lines one after
         * the other */
        if (t->head == (uint32_t)(s - t->pool))
            return s;
        lru_unlink(t, s);
    } else {
        if (!create)
            return NULL;
        /* keep the index at most half full: grow it, or, out of memory,
         * treat the table as full */
        int full = t->count == t->max;
        if (!full && (t->count + 1) * 2 > t->mask + 1)
            full = t->mask + 1 >= t->max_cap || grow(t) < 0;
        if (full && t->count) {
            smban_table_del(t, &t->pool[t->tail]);
            t->evicted++;
        }
        uint32_t i;
        if (t->free_head != NIL) {
            i = t->free_head;
            t->free_head = t->pool[i].next;
        } else {
            i = (uint32_t)t->fresh++;
        }
        s = &t->pool[i];
        /* a constant's copy: vector stores, where a memset of this size
         * became a slow string instruction */
        static const smban_session zero;
        *s = zero;
        s->k0 = k0;
        s->k1 = k1;
        s->hash = key_hash(k0, k1);
        s->pending_cls = -1;
        size_t j = s->hash & t->mask;
        while (t->index[j].pos != NIL)
            j = (j + 1) & t->mask;
        t->index[j].pos = i;
        t->index[j].hash = s->hash;
        uint8_t *n = presence(t, k0, k1);
        if (*n != UINT8_MAX)
            (*n)++;
        t->count++;
    }
    if (now > s->last)
        s->last = now;
    lru_push_head(t, s);
    return s;
}

void smban_table_get_stats(const smban_table *t, smban_table_stats *st)
{
    st->count = t->count;
    st->max = t->max;
    st->evicted = t->evicted;
    st->expired = t->expired;
}
