/*
 * iptc.c — the iptables ban backend (iptc.h): transactions on the legacy
 * filter table through libiptc, the group-commit queue, and the chain
 * operations (start, apply, flush, stop, unjump, check, list) exported as
 * the backend.h table smban_iptc_backend.  The rules themselves are made
 * and read in iptc_rule.c; addresses are parsed in addr.c.
 *
 * Why in process: fail2ban's stock action forks a shell and an iptables
 * binary per ban, and each of those reads and rewrites the whole table.
 * Here one transaction reads the table once, applies every ban and unban
 * waiting at that moment, and commits once.
 *
 * Concurrency: requests queue on their chain object; the first waiting
 * thread becomes the leader, takes the whole queue and runs one transaction
 * while the others sleep; requests arriving meanwhile form the next batch.
 * Transactions of all objects are serialised by one process-wide mutex
 * (libiptc keeps per-process state: its last failing function), and the
 * xtables flock serialises us with iptables binaries.
 *
 * Invariants: the table is only read or written inside transaction(), with
 * both locks held; a modification (the *_modify functions) is idempotent
 * and may run again from scratch on a fresh snapshot (after EAGAIN), so
 * what it reports is kept sticky over attempts; only our chain, the jump
 * rules to it in the parent, and (test hook) the chain "smban-race" are
 * ever changed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <libiptc/libiptc.h>
#include <libiptc/libip6tc.h>

#include "iptc_impl.h"
#include "ipset.h"

#define DEFAULT_LOCKFILE "/run/xtables.lock"


/* ---- one table of function pointers per family ---- */


/* Typed wrappers: libiptc's two libraries have the same shape with
 * different entry types; calling through cast function pointers would be
 * undefined behaviour. */
#define DEFINE_OPS(P, ENT, TOOL)                                                 \
    static xh *P##_w_init(const char *t) { return P##_init(t); }                 \
    static void P##_w_free(xh *h) { P##_free(h); }                               \
    static int P##_w_commit(xh *h) { return P##_commit(h); }                     \
    static const char *P##_w_strerror(int e) { return P##_strerror(e); }         \
    static int P##_w_is_chain(const char *c, xh *h) { return P##_is_chain(c, h); } \
    static int P##_w_create_chain(const char *c, xh *h) { return P##_create_chain(c, h); } \
    static int P##_w_delete_chain(const char *c, xh *h) { return P##_delete_chain(c, h); } \
    static int P##_w_flush_entries(const char *c, xh *h) { return P##_flush_entries(c, h); } \
    static const void *P##_w_first_rule(const char *c, xh *h) { return P##_first_rule(c, h); } \
    static const void *P##_w_next_rule(const void *e, xh *h)                     \
    { return P##_next_rule((const struct ENT *)e, h); }                          \
    static const char *P##_w_get_target(const void *e, xh *h)                    \
    { return P##_get_target((const struct ENT *)e, h); }                         \
    static int P##_w_insert_entry(const char *c, const void *e, unsigned n, xh *h) \
    { return P##_insert_entry(c, (const struct ENT *)e, n, h); }                 \
    static int P##_w_append_entry(const char *c, const void *e, xh *h)           \
    { return P##_append_entry(c, (const struct ENT *)e, h); }                    \
    static int P##_w_delete_num_entry(const char *c, unsigned n, xh *h)          \
    { return P##_delete_num_entry(c, n, h); }                                    \
    static int P##_w_check_entry(const char *c, const void *e, unsigned char *m, xh *h) \
    { return P##_check_entry(c, (const struct ENT *)e, m, h); }                  \
    static int P##_w_get_references(unsigned *r, const char *c, xh *h)           \
    { return P##_get_references(r, c, h); }                                      \
    static const table_ops P##_table = {                                         \
        TOOL,                                                                    \
        P##_w_init, P##_w_free, P##_w_commit, P##_w_strerror, P##_w_is_chain,    \
        P##_w_create_chain, P##_w_delete_chain, P##_w_flush_entries,             \
        P##_w_first_rule, P##_w_next_rule, P##_w_get_target,                     \
        P##_w_insert_entry, P##_w_append_entry, P##_w_delete_num_entry,          \
        P##_w_check_entry, P##_w_get_references,                                 \
    };

DEFINE_OPS(iptc, ipt_entry, "iptables")
DEFINE_OPS(ip6tc, ip6t_entry, "ip6tables")

/* libiptc is not thread-safe; neither is the process-wide flock on one
 * lock file from several descriptors of one process. */
static pthread_mutex_t iptc_mu = PTHREAD_MUTEX_INITIALIZER;

/* Counters are bumped by leaders and read by anyone: relaxed atomics. */
void smban_stat_add(uint64_t *v, uint64_t n)
{
    __atomic_fetch_add(v, n, __ATOMIC_RELAXED);
}

/* ---- the object ---- */

/* The lock file: the option, else $XTABLES_LOCKFILE, else the default. */
static int set_lockfile(const smban_iptc_options *o, smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    const char *lockfile = o->lockfile;
    if (!lockfile || !*lockfile)
        lockfile = getenv("XTABLES_LOCKFILE");
    if (!lockfile || !*lockfile)
        lockfile = DEFAULT_LOCKFILE;
    if (!(c->lockfile = strdup(lockfile))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    return 0;
}

/* The queue's mutex and condition variable: both, or neither. */
static int init_queue(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        snprintf(err, SMBAN_ERR_LEN, "pthread_mutex_init failed");
        return SMBAN_ESYS;
    }
    if (pthread_cond_init(&c->cv, NULL) != 0) {
        pthread_mutex_destroy(&c->mu);
        snprintf(err, SMBAN_ERR_LEN, "pthread_cond_init failed");
        return SMBAN_ESYS;
    }
    return 0;
}

int smban_iptc_new(const smban_iptc_options *o, smban_iptc **out,
                   char err[SMBAN_ERR_LEN])
{
    smban_iptc *c;
    int rc;

    *out = NULL;
    if (!(c = calloc(1, sizeof *c))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    /* options and rules (iptc_rule.c), then what needs resources */
    if ((rc = smban_rule_options(o, c, err)) < 0 || (rc = set_lockfile(o, c, err)) < 0)
        goto fail;
    if (c->set && (rc = smban_ipset_new(c->setname, c->family, c->min_prefix, &c->ipset,
                                        err)) < 0)
        goto fail;
    if ((rc = init_queue(c, err)) < 0)
        goto fail;
    c->ops = c->family == 4 ? &iptc_table : &ip6tc_table;
    *out = c;
    return 0;
fail:
    smban_ipset_free(c->ipset);
    free(c->lockfile);
    free(c);
    return rc;
}

const smban_backend_ops *smban_iptc_ops(const smban_iptc *c)
{
    return c->set ? &smban_iptc_set_ops : &smban_iptc_backend;
}

const char *smban_iptc_set_name(const smban_iptc *c)
{
    return c->set ? c->setname : NULL;
}

static void op_free(void *h)
{
    smban_iptc *c = h;
    if (!c)
        return;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    smban_ipset_free(c->ipset);
    free(c->lockfile);
    free(c);
}

static const char *op_name(const void *h) { return ((const smban_iptc *)h)->chain; }
static int op_family(const void *h) { return ((const smban_iptc *)h)->family; }
static int op_min_prefix(const void *h) { return ((const smban_iptc *)h)->min_prefix; }
const char *smban_iptc_lockfile(const smban_iptc *c) { return c->lockfile; }

void smban_iptc_race_next(smban_iptc *c, int n)
{
    __atomic_store_n(&c->race, n > 0 ? n : 0, __ATOMIC_RELAXED);
}

static void op_stats(void *h, smban_backend_stats *st)
{
    smban_iptc *c = h;
    st->transactions = __atomic_load_n(&c->stats.transactions, __ATOMIC_RELAXED);
    st->commits = __atomic_load_n(&c->stats.commits, __ATOMIC_RELAXED);
    st->retries = __atomic_load_n(&c->stats.retries, __ATOMIC_RELAXED);
    st->requests = __atomic_load_n(&c->stats.requests, __ATOMIC_RELAXED);
    st->grouped = __atomic_load_n(&c->stats.grouped, __ATOMIC_RELAXED);
}

/* ---- transactions ---- */

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Take the xtables lock, waiting at most lock_wait seconds.  Returns the
 * descriptor holding it (the caller closes it to unlock) or a negative
 * code.  iptables -w takes the same flock, so we and the binaries never
 * commit over each other. */
static int lock_take(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    char eb[128];
    int fd = open(c->lockfile, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    double deadline;
    long wait = 100;

    if (fd < 0) {
        snprintf(err, SMBAN_ERR_LEN, "cannot open the xtables lock %s: %s", c->lockfile,
                 strerror_r(errno, eb, sizeof eb));
        return SMBAN_ESYS;
    }
    deadline = now_mono() + c->lock_wait;
    for (;;) {
        double left;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(err, SMBAN_ERR_LEN, "cannot lock %s: %s", c->lockfile,
                     strerror_r(errno, eb, sizeof eb));
            close(fd);
            return SMBAN_ESYS;
        }
        left = deadline - now_mono();
        if (left <= 0) {
            close(fd);
            snprintf(err, SMBAN_ERR_LEN,
                     "%s: another process held the xtables lock %s for more than "
                     "%.1f s; nothing was changed", c->chain, c->lockfile, c->lock_wait);
            return SMBAN_ELOCK;
        }
        sleep_us(wait < left * 1e6 ? wait : (long)(left * 1e6) + 1);
        if (wait < 20000)
            wait *= 2;
    }
}

/* Message for a failed libiptc call: call it right after the failure,
 * before any other libiptc call (iptc_strerror reads a global). */
int smban_iptc_fail(smban_iptc *c, const char *what, int e, char err[SMBAN_ERR_LEN])
{
    snprintf(err, SMBAN_ERR_LEN, "%s %s: %s: %s", c->ops->tool, c->chain, what,
             c->ops->strerror(e));
    return SMBAN_EIPTC;
}

/* The test hook behind smban_iptc_race_next: commit a change of the rule
 * count from a second handle, between our snapshot and our commit, as a
 * writer that ignores the xtables lock would.  The change toggles a chain
 * of the hook's own (created when absent, deleted when present), so two
 * races leave the table as it was.  Nothing is reported: a failed race
 * shows as a missing retry. */
static void race_commit(smban_iptc *c)
{
    static const char name[] = "smban-race";
    xh *h;
    int ok;
    if (__atomic_load_n(&c->race, __ATOMIC_RELAXED) <= 0)
        return;
    __atomic_sub_fetch(&c->race, 1, __ATOMIC_RELAXED);
    if (!(h = c->ops->init("filter")))
        return;
    ok = c->ops->is_chain(name, h) ? c->ops->delete_chain(name, h)
                                   : c->ops->create_chain(name, h);
    if (ok)
        c->ops->commit(h);
    c->ops->free(h);
}

/* Modify the table: return <0 on error (err set), 0 when there is nothing
 * to commit, 1 to commit.  Called again from scratch on EAGAIN. */

int smban_iptc_transaction(smban_iptc *c, smban_modify_fn fn, void *ctx,
                           char err[SMBAN_ERR_LEN])
{
    int rc;
    pthread_mutex_lock(&iptc_mu);
    for (int attempt = 0;; attempt++) {
        int fd = lock_take(c, err);
        xh *h;
        if (fd < 0) {
            rc = fd;
            break;
        }
        smban_stat_add(&c->stats.transactions, 1);
        if (!(h = c->ops->init("filter"))) {
            rc = smban_iptc_fail(c, "cannot read the filter table", errno, err);
            close(fd);
            break;
        }
        rc = fn(c, h, ctx, err);
        if (rc > 0) {
            race_commit(c);
            if (!c->ops->commit(h)) {
                int e = errno;
                rc = smban_iptc_fail(c, "commit failed", e, err);
                c->ops->free(h);
                close(fd);
                /* EAGAIN: the table changed since our snapshot (a writer
                 * that ignores the lock); nothing was replaced.  EINVAL:
                 * also what the kernel answers when the table changed
                 * between libiptc's replace and its counter update, i.e.
                 * after our rules landed.  Both: redo the transaction on a
                 * fresh snapshot; the modifications are idempotent, so a
                 * landed commit is found done.  A rule the kernel really
                 * rejects fails every attempt and is reported. */
                if ((e == EAGAIN || e == EINVAL) && attempt < c->retries) {
                    smban_stat_add(&c->stats.retries, 1);
                    sleep_us(1000L << (attempt < 6 ? attempt : 6));
                    continue;
                }
                break;
            }
            smban_stat_add(&c->stats.commits, 1);
            rc = 0;
        }
        c->ops->free(h);
        close(fd);
        break;
    }
    pthread_mutex_unlock(&iptc_mu);
    return rc;
}

/* Positions (0-based) of the rules of chain in parent whose target is name,
 * deleted from the last.  Returns the number deleted or a negative code. */
static int delete_jumps(smban_iptc *c, xh *h, char err[SMBAN_ERR_LEN])
{
    unsigned pos[64];
    int n = 0, total = 0;
    /* Restart after each round: a parent with more than 64 stale jumps is
     * not expected, but must not overflow. */
    do {
        unsigned i = 0;
        n = 0;
        for (const void *e = c->ops->first_rule(c->parent, h); e && n < 64;
             e = c->ops->next_rule(e, h), i++) {
            const char *t = c->ops->get_target(e, h);
            if (t && !strcmp(t, c->chain))
                pos[n++] = i;
        }
        for (int k = n - 1; k >= 0; k--) {
            if (!c->ops->delete_num_entry(c->parent, pos[k], h))
                return smban_iptc_fail(c, "cannot delete a stale jump rule", errno, err);
        }
        total += n;
    } while (n == 64);
    return total;
}

/* Called by chain_walk for each ban of our chain, with its position
 * (0-based); a negative return stops the walk and is returned. */
typedef int (*ban_fn)(void *ctx, unsigned pos, const smban_addr *a);

/* Walk our chain: whether it exists, whether its last rule is the plain
 * RETURN, and each ban handed to fn (may be NULL).  The one reading of our
 * chain that every operation shares. */
static int chain_walk(smban_iptc *c, xh *h, int *exists, int *has_return, ban_fn fn,
                      void *ctx)
{
    const void *last = NULL;
    unsigned pos = 0;
    smban_addr a;
    int rc;
    *exists = c->ops->is_chain(c->chain, h);
    *has_return = 0;
    if (!*exists)
        return 0;
    for (const void *e = c->ops->first_rule(c->chain, h); e;
         e = c->ops->next_rule(e, h), pos++) {
        last = e;
        if (fn && smban_rule_src(c, e, &a) && (rc = fn(ctx, pos, &a)) < 0)
            return rc;
    }
    if (last && smban_rule_is_plain(c, last)) {
        const char *t = c->ops->get_target(last, h);
        *has_return = t && !strcmp(t, "RETURN");
    }
    return 0;
}

static int count_ban(void *ctx, unsigned pos, const smban_addr *a)
{
    (void)pos;
    (void)a;
    (*(size_t *)ctx)++;
    return 0;
}

/* chain_walk with the number of bans. */
static void chain_tail(smban_iptc *c, xh *h, int *exists, int *has_return, size_t *bans)
{
    *bans = 0;
    chain_walk(c, h, exists, has_return, count_ban, bans);
}

/* Make the layout whole inside handle h.  The SMBAN_LAYOUT_* bits of what
 * was missing are OR-ed into *rep. */
static int ensure_layout(smban_iptc *c, xh *h, int exists, int has_return, unsigned *rep,
                         char err[SMBAN_ERR_LEN])
{
    unsigned char mask[ENTRY_MAX];
    int rc;
    if (!c->ops->is_chain(c->parent, h)) {
        snprintf(err, SMBAN_ERR_LEN, "%s %s: parent chain %s does not exist", c->ops->tool,
                 c->chain, c->parent);
        return SMBAN_EIPTC;
    }
    if (!exists) {
        if (!c->ops->create_chain(c->chain, h))
            return smban_iptc_fail(c, "cannot create the chain", errno, err);
        *rep |= SMBAN_LAYOUT_CHAIN;
        has_return = 0;
    }
    if (!has_return) {
        if (!c->ops->append_entry(c->chain, &c->ret, h))
            return smban_iptc_fail(c, "cannot append RETURN", errno, err);
        *rep |= SMBAN_LAYOUT_RETURN;
    }
    memset(mask, 0xff, sizeof mask);
    if (!c->ops->check_entry(c->parent, &c->jump, mask, h)) {
        /* a jump with other ports or protocol is ours and outdated */
        if ((rc = delete_jumps(c, h, err)) < 0)
            return rc;
        if (!c->ops->insert_entry(c->parent, &c->jump, 0, h))
            return smban_iptc_fail(c, "cannot insert the jump rule", errno, err);
        *rep |= SMBAN_LAYOUT_JUMP;
    }
    return 0;
}

/* ---- apply: bans and unbans, batched ---- */

/* One caller's request, queued on the object until a leader's transaction
 * has served it (it lives on the caller's stack). */
struct request {
    int op;
    const smban_addr *addrs;
    size_t n;
    uint8_t *res;              /* per address: changed; OR-ed over attempts */
    int rc;
    char *err;                 /* the caller's err[] */
    int done;
    struct request *next;
};

typedef struct {
    struct request *batch;
} apply_ctx;

/* FNV-1a over prefix and address: keys of one batch, not attacker-sized
 * tables (a batch is what the caller asked for). */
static uint32_t addr_hash(const smban_addr *a)
{
    uint32_t h = 2166136261u;
    h = (h ^ a->prefix) * 16777619u;
    for (int i = 0; i < 16; i++)
        h = (h ^ a->addr[i]) * 16777619u;
    return h;
}

static int addr_eq(const smban_addr *a, const smban_addr *b)
{
    return a->prefix == b->prefix && !memcmp(a->addr, b->addr, 16);
}

/* The distinct addresses of one batch, with their state before (init) and
 * after (cur) the batch's operations are applied in order. */
typedef struct {
    size_t nkeys, cap;         /* cap: power of two */
    const smban_addr **key;    /* borrowed from the requests */
    uint8_t *init, *cur;
    uint32_t *slot;            /* key index + 1; 0 empty */
} keyset;

static void keyset_free(keyset *k)
{
    free(k->key);
    free(k->init);
    free(k->cur);
    free(k->slot);
}

static int keyset_init(keyset *k, size_t total)
{
    memset(k, 0, sizeof *k);
    k->cap = 16;
    while (k->cap < 2 * total)
        k->cap *= 2;
    k->key = malloc((total ? total : 1) * sizeof *k->key);
    k->init = calloc(total ? total : 1, 1);
    k->cur = calloc(total ? total : 1, 1);
    k->slot = calloc(k->cap, sizeof *k->slot);
    if (!k->key || !k->init || !k->cur || !k->slot) {
        keyset_free(k);
        return SMBAN_ENOMEM;
    }
    return 0;
}

/* Index of a, inserting it when add; -1 when absent. */
static long keyset_find(keyset *k, const smban_addr *a, int add)
{
    size_t m = k->cap - 1, i = addr_hash(a) & m;
    for (;; i = (i + 1) & m) {
        uint32_t s = k->slot[i];
        if (!s) {
            if (!add)
                return -1;
            k->key[k->nkeys] = a;
            k->slot[i] = (uint32_t)++k->nkeys;
            return (long)k->nkeys - 1;
        }
        if (addr_eq(k->key[s - 1], a))
            return (long)s - 1;
    }
}

/* Where the batch's addresses are banned now: for each rule of our chain
 * whose source is a key of the batch, its position and key. */
typedef struct {
    keyset *ks;
    struct ban_pos { unsigned pos; size_t key; } *v;
    size_t n, cap;
} ban_positions;

static int note_ban(void *vctx, unsigned pos, const smban_addr *a)
{
    ban_positions *p = vctx;
    long k = keyset_find(p->ks, a, 0);
    if (k < 0)
        return 0;
    p->ks->init[k] = 1;
    if (p->n == p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 16;
        struct ban_pos *v = realloc(p->v, nc * sizeof *v);
        if (!v)
            return SMBAN_ENOMEM;
        p->v = v;
        p->cap = nc;
    }
    p->v[p->n].pos = pos;
    p->v[p->n++].key = (size_t)k;
    return 0;
}

/* The batch's modification: one pass over the chain finds which of the
 * batch's addresses are banned and where; the operations are then applied
 * in arrival order to that state; finally the rules of addresses that end
 * up unbanned are deleted (from the bottom, so positions stay valid), the
 * layout is repaired when the batch bans, and new bans are inserted at the
 * head.  Cost: O(rules + addresses) plus libiptc's deletes. */
static int apply_modify(smban_iptc *c, xh *h, void *vctx, char err[SMBAN_ERR_LEN])
{
    apply_ctx *ctx = vctx;
    size_t total = 0;
    int exists, has_return, has_ban = 0, changes = 0, rc;
    unsigned rep = 0;
    keyset ks;
    ban_positions bp = {&ks, NULL, 0, 0};
    struct request *r;

    for (r = ctx->batch; r; r = r->next) {
        total += r->n;
        has_ban |= r->op == SMBAN_OP_BAN;
    }
    if (keyset_init(&ks, total) < 0) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    for (r = ctx->batch; r; r = r->next)
        for (size_t i = 0; i < r->n; i++)
            keyset_find(&ks, &r->addrs[i], 1);

    /* one pass over the chain: which keys are banned, and where */
    if ((rc = chain_walk(c, h, &exists, &has_return, note_ban, &bp)) < 0) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        goto done;
    }
    memcpy(ks.cur, ks.init, ks.nkeys);

    /* the requests in arrival order, each address in order */
    for (r = ctx->batch; r; r = r->next) {
        for (size_t i = 0; i < r->n; i++) {
            long k = keyset_find(&ks, &r->addrs[i], 0);
            int changed;
            if (r->op == SMBAN_OP_BAN) {
                changed = !ks.cur[k];
                ks.cur[k] = 1;
            } else {
                changed = ks.cur[k];
                ks.cur[k] = 0;
            }
            r->res[i] |= (uint8_t)changed;
        }
    }

    /* unbans: from the bottom, so earlier positions stay valid */
    for (size_t j = bp.n; j-- > 0;) {
        if (ks.cur[bp.v[j].key])
            continue;
        if (!c->ops->delete_num_entry(c->chain, bp.v[j].pos, h)) {
            rc = smban_iptc_fail(c, "cannot delete a ban", errno, err);
            goto done;
        }
        changes++;
    }
    if (has_ban) {
        if ((rc = ensure_layout(c, h, exists, has_return, &rep, err)) < 0)
            goto done;
        changes += rep != 0;
    }
    /* bans: each at the head of the chain */
    for (size_t k = 0; k < ks.nkeys; k++) {
        if (!ks.cur[k] || ks.init[k])
            continue;
        smban_rule_set_src(c, &c->ban, ks.key[k]);
        if (!c->ops->insert_entry(c->chain, &c->ban, 0, h)) {
            rc = smban_iptc_fail(c, "cannot insert a ban", errno, err);
            goto done;
        }
        changes++;
    }
    rc = changes > 0;
done:
    free(bp.v);
    keyset_free(&ks);
    return rc;
}

/* Run one batch of requests as one transaction and record the outcome in
 * each request.  Called by the leader without c->mu held. */
static void run_batch(smban_iptc *c, struct request *batch)
{
    char err[SMBAN_ERR_LEN] = "";
    apply_ctx ctx = {batch};
    size_t n = 0;
    int rc = smban_iptc_transaction(c, apply_modify, &ctx, err);
    for (struct request *r = batch; r; r = r->next) {
        n++;
        if (rc < 0) {
            r->rc = rc;
            memcpy(r->err, err, SMBAN_ERR_LEN);
            memset(r->res, 0, r->n);
        } else {
            r->rc = 0;
            for (size_t i = 0; i < r->n; i++)
                r->rc += r->res[i];
        }
    }
    smban_stat_add(&c->stats.requests, n);
    if (n > 1)
        smban_stat_add(&c->stats.grouped, n);
}

int smban_iptc_check_request(const smban_iptc *c, int op, const smban_addr *addrs, size_t n,
                             char err[SMBAN_ERR_LEN])
{
    if (op != SMBAN_OP_BAN && op != SMBAN_OP_UNBAN) {
        snprintf(err, SMBAN_ERR_LEN, "unknown operation %d", op);
        return SMBAN_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (addrs[i].family != c->family) {
            snprintf(err, SMBAN_ERR_LEN, "address %zu is not IPv%d", i, c->family);
            return SMBAN_EINVAL;
        }
    }
    return 0;
}

static int op_apply(void *h, int op, const smban_addr *addrs, size_t n,
                    uint8_t *results, char err[SMBAN_ERR_LEN])
{
    smban_iptc *c = h;
    uint8_t one = 0;
    struct request req = {op, addrs, n, results ? results : &one, 0, err, 0, NULL};
    int rc;

    if ((rc = smban_iptc_check_request(c, op, addrs, n, err)) < 0)
        return rc;
    if (!results && n > 1 && !(req.res = calloc(n, 1))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    memset(req.res, 0, n);
    pthread_mutex_lock(&c->mu);
    if (c->tail)
        c->tail->next = &req;
    else
        c->head = &req;
    c->tail = &req;
    while (!req.done) {
        if (!c->committing) {
            struct request *batch = c->head, *r, *next;
            c->head = c->tail = NULL;
            c->committing = 1;
            pthread_mutex_unlock(&c->mu);
            run_batch(c, batch);
            pthread_mutex_lock(&c->mu);
            for (r = batch; r; r = next) {
                next = r->next;
                r->done = 1;
            }
            c->committing = 0;
            pthread_cond_broadcast(&c->cv);
        } else {
            pthread_cond_wait(&c->cv, &c->mu);
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (req.res != results && req.res != &one)
        free(req.res);
    return req.rc;
}

/* ---- start, stop, flush, check, list ---- */

static int start_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    unsigned *rep = ctx, now = 0;
    int exists, has_return, rc;
    chain_walk(c, h, &exists, &has_return, NULL, NULL);
    if ((rc = ensure_layout(c, h, exists, has_return, &now, err)) < 0)
        return rc;
    *rep |= now;            /* sticky over attempts: see transaction() */
    return now != 0;
}

static int op_start(void *c, unsigned *repaired, char err[SMBAN_ERR_LEN])
{
    unsigned rep = 0;
    int rc = smban_iptc_transaction(c, start_modify, &rep, err);
    if (repaired)
        *repaired = rc < 0 ? 0 : rep;
    return rc;
}

static int stop_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    int *removed = ctx, rc, now = 0;
    if (c->ops->is_chain(c->parent, h)) {
        if ((rc = delete_jumps(c, h, err)) < 0)
            return rc;
        now += rc;
    }
    if (c->ops->is_chain(c->chain, h)) {
        if (!c->ops->flush_entries(c->chain, h))
            return smban_iptc_fail(c, "cannot flush the chain", errno, err);
        if (!c->ops->delete_chain(c->chain, h)) {
            int e = errno;
            if (e == EMLINK || e == ENOTEMPTY || e == EBUSY) {
                snprintf(err, SMBAN_ERR_LEN,
                         "%s %s: cannot delete the chain: rules outside %s still jump "
                         "to it (%s)", c->ops->tool, c->chain, c->parent,
                         c->ops->strerror(e));
                return SMBAN_EIPTC;
            }
            return smban_iptc_fail(c, "cannot delete the chain", e, err);
        }
        now++;
    }
    *removed += now;        /* sticky over attempts: see transaction() */
    return now > 0;
}

static int op_stop(void *c, char err[SMBAN_ERR_LEN])
{
    int removed = 0;
    int rc = smban_iptc_transaction(c, stop_modify, &removed, err);
    return rc < 0 ? rc : removed > 0;
}

static int unjump_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    int *removed = ctx, rc;
    if (!c->ops->is_chain(c->parent, h))
        return 0;
    if ((rc = delete_jumps(c, h, err)) < 0)
        return rc;
    *removed += rc;         /* sticky over attempts: see transaction() */
    return rc > 0;
}

int smban_iptc_unjump(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    int removed = 0, rc;
    if (c->set)
        return smban_iptc_set_unjump(c, err);
    rc = smban_iptc_transaction(c, unjump_modify, &removed, err);
    return rc < 0 ? rc : removed;
}

static int flush_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    size_t *bans = ctx, now;
    int exists, has_return;
    chain_tail(c, h, &exists, &has_return, &now);
    if (now > *bans)
        *bans = now;        /* sticky over attempts: see transaction() */
    if (!exists || (!now && has_return))
        return 0;
    if (!c->ops->flush_entries(c->chain, h))
        return smban_iptc_fail(c, "cannot flush the chain", errno, err);
    if (!c->ops->append_entry(c->chain, &c->ret, h))
        return smban_iptc_fail(c, "cannot append RETURN", errno, err);
    return 1;
}

static int op_flush(void *c, char err[SMBAN_ERR_LEN])
{
    size_t bans = 0;
    int rc = smban_iptc_transaction(c, flush_modify, &bans, err);
    if (rc < 0)
        return rc;
    return bans > INT_MAX ? INT_MAX : (int)bans;
}

static int check_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    smban_backend_status *st = ctx;
    unsigned char mask[ENTRY_MAX];
    (void)err;
    memset(st, 0, sizeof *st);
    chain_tail(c, h, &st->chain, &st->ret, &st->bans);
    if (st->chain) {
        if (!c->ops->get_references(&st->references, c->chain, h))
            st->references = 0;
        memset(mask, 0xff, sizeof mask);
        st->jump = c->ops->is_chain(c->parent, h)
                   && c->ops->check_entry(c->parent, &c->jump, mask, h);
    }
    return 0;
}

static int op_check(void *c, smban_backend_status *st, char err[SMBAN_ERR_LEN])
{
    return smban_iptc_transaction(c, check_modify, st, err);
}

typedef struct {
    smban_addr *v;
    size_t n, cap;
} list_ctx;

static int list_ban(void *vctx, unsigned pos, const smban_addr *a)
{
    list_ctx *l = vctx;
    (void)pos;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        smban_addr *p = realloc(l->v, nc * sizeof *p);
        if (!p)
            return SMBAN_ENOMEM;
        l->v = p;
        l->cap = nc;
    }
    l->v[l->n++] = *a;
    return 0;
}

static int list_modify(smban_iptc *c, xh *h, void *vctx, char err[SMBAN_ERR_LEN])
{
    list_ctx *l = vctx;
    int exists, has_return, rc;
    l->n = 0;
    if ((rc = chain_walk(c, h, &exists, &has_return, list_ban, l)) < 0)
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
    return rc;
}

static int op_list(void *c, smban_addr **out, size_t *n, char err[SMBAN_ERR_LEN])
{
    list_ctx l = {NULL, 0, 0};
    int rc = smban_iptc_transaction(c, list_modify, &l, err);
    if (rc < 0) {
        free(l.v);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

const smban_backend_ops smban_iptc_backend = {
    .start = op_start,
    .apply = op_apply,
    .list = op_list,
    .flush = op_flush,
    .stop = op_stop,
    .check = op_check,
    .stats = op_stats,
    .name = op_name,
    .family = op_family,
    .min_prefix = op_min_prefix,
    .free = op_free,
};
