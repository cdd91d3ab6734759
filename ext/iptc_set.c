/*
 * iptc_set.c — the set mode of the iptables backend (iptc.h): the bans are
 * the elements of an ipset (ipset.c), and the layout is one rule in the
 * parent chain matching the set, written in the transactions of iptc.c.
 *
 * The rule names the set by the kernel's index, which exists only once the
 * set does: start() and every ban create the set when it is missing, read
 * its index, and repair the rule in one transaction (the index patched
 * into the prebuilt rule inside it, under libiptc's process-wide mutex).
 * The kernel keeps a set that a rule references, so the index a rule holds
 * stays valid; stop() removes the rules before it destroys the set.
 * A ban is one netlink batch and a table read to repair the rule; nothing
 * here grows with the number of bans but the set's own listing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "iptc_impl.h"
#include "ipset.h"

/* ---- the rule ---- */

/* Delete every rule of the parent that matches our set, from the last.
 * Returns the number deleted. */
static int delete_set_rules(smban_iptc *c, xh *h, uint16_t index, char err[SMBAN_ERR_LEN])
{
    int total = 0, found;
    if (!c->ops->is_chain(c->parent, h))
        return 0;
    do {
        unsigned i = 0, pos = 0;
        uint16_t k;
        found = 0;
        for (const void *e = c->ops->first_rule(c->parent, h); e;
             e = c->ops->next_rule(e, h), i++) {
            if (smban_rule_set_of(c, e, &k) && k == index) {
                pos = i;
                found = 1;
            }
        }
        if (found) {
            if (!c->ops->delete_num_entry(c->parent, pos, h))
                return smban_iptc_fail(c, "cannot delete a rule of the set", errno, err);
            total++;
        }
    } while (found);
    return total;
}

typedef struct {
    uint16_t index;
    unsigned rep;              /* SMBAN_LAYOUT_JUMP when the rule was (re)made */
    int present;               /* check: the rule is there as configured */
    int removed;
} rule_ctx;

static int has_rule(smban_iptc *c, xh *h)
{
    unsigned char mask[ENTRY_MAX];
    memset(mask, 0xff, sizeof mask);
    return c->ops->is_chain(c->parent, h) && c->ops->check_entry(c->parent, &c->jump, mask, h);
}

/* The rule as configured, at the head of the parent: a rule of our set
 * with other ports or protocol is ours and outdated. */
static int ensure_modify(smban_iptc *c, xh *h, void *vctx, char err[SMBAN_ERR_LEN])
{
    rule_ctx *r = vctx;
    int rc;
    smban_rule_set_index(c, &c->jump, r->index);
    if (!c->ops->is_chain(c->parent, h)) {
        snprintf(err, SMBAN_ERR_LEN, "%s %s: parent chain %s does not exist", c->ops->tool,
                 c->setname, c->parent);
        return SMBAN_EIPTC;
    }
    if (has_rule(c, h))
        return 0;
    if ((rc = delete_set_rules(c, h, r->index, err)) < 0)
        return rc;
    if (!c->ops->insert_entry(c->parent, &c->jump, 0, h))
        return smban_iptc_fail(c, "cannot insert the rule of the set", errno, err);
    r->rep |= SMBAN_LAYOUT_JUMP;   /* sticky over attempts: see transaction() */
    return 1;
}

/* The set (unless only the rule is to be checked), then the rule: the
 * layout whole.  *rep gets what was missing. */
static int ensure_layout(smban_iptc *c, int rule_only, unsigned *rep, char err[SMBAN_ERR_LEN])
{
    rule_ctx r = {0, 0, 0, 0};
    int created = 0, rc;
    *rep = 0;
    if ((!rule_only && (rc = smban_ipset_create(c->ipset, &created, err)) < 0)
        || (rc = smban_ipset_index(c->ipset, &r.index, err)) < 0)
        return rc;
    rc = smban_iptc_transaction(c, ensure_modify, &r, err);
    if (rc < 0)
        return rc;
    *rep = r.rep | (created ? SMBAN_LAYOUT_CHAIN : 0);
    return 0;
}

/* ---- the operations ---- */

static int set_start(void *h, unsigned *repaired, char err[SMBAN_ERR_LEN])
{
    unsigned rep = 0;
    int rc = ensure_layout(h, 0, &rep, err);
    if (repaired)
        *repaired = rc < 0 ? 0 : rep;
    return rc;
}

int smban_iptc_apply(smban_iptc *c, int op, const smban_addr *addrs, size_t n,
                     const double *timeouts, int refresh, uint8_t *results,
                     char err[SMBAN_ERR_LEN])
{
    unsigned rep;
    int missing, rc;
    if (!c->set) {
        if (timeouts || refresh) {
            snprintf(err, SMBAN_ERR_LEN,
                     "%s: timeouts and refresh need set mode (set=True)", c->chain);
            return SMBAN_EINVAL;
        }
        return smban_iptc_backend.apply(c, op, addrs, n, results, err);
    }
    if ((rc = smban_iptc_check_request(c, op, addrs, n, err)) < 0)
        return rc;
    smban_stat_add(&c->stats.requests, 1);
    smban_stat_add(&c->stats.transactions, 1);
    /* a ban repairs the layout: the set made, or checked to be ours (a
     * set of that name with another type is an error, never written to),
     * before the elements; the rule after them */
    if (op == SMBAN_OP_BAN && (rc = smban_ipset_create(c->ipset, NULL, err)) < 0)
        return rc;
    rc = smban_ipset_apply(c->ipset, op, addrs, n, timeouts, refresh, results, &missing, err);
    if (rc < 0) {
        if (missing && op == SMBAN_OP_UNBAN) {  /* no set: nothing was banned */
            if (results)
                memset(results, 0, n);
            return 0;
        }
        return rc;
    }
    if (rc > 0)
        smban_stat_add(&c->stats.commits, 1);
    if (op == SMBAN_OP_BAN) {
        int bans = rc;
        if ((rc = ensure_layout(c, 1, &rep, err)) < 0)
            return rc;
        return bans;
    }
    return rc;
}

static int set_apply(void *h, int op, const smban_addr *addrs, size_t n, uint8_t *results,
                     char err[SMBAN_ERR_LEN])
{
    return smban_iptc_apply(h, op, addrs, n, NULL, 0, results, err);
}

static int set_list(void *h, smban_addr **out, size_t *n, char err[SMBAN_ERR_LEN])
{
    return smban_ipset_list(((smban_iptc *)h)->ipset, out, n, err);
}

static int set_flush(void *h, char err[SMBAN_ERR_LEN])
{
    return smban_ipset_flush(((smban_iptc *)h)->ipset, err);
}

static int unrule_modify(smban_iptc *c, xh *h, void *vctx, char err[SMBAN_ERR_LEN])
{
    rule_ctx *r = vctx;
    int rc = delete_set_rules(c, h, r->index, err);
    if (rc < 0)
        return rc;
    r->removed += rc;          /* sticky over attempts: see transaction() */
    return rc > 0;
}

int smban_iptc_set_unjump(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    rule_ctx r = {0, 0, 0, 0};
    int rc = smban_ipset_index(c->ipset, &r.index, err);
    if (rc < 0)                /* no set: no rule can match it */
        return 0;
    rc = smban_iptc_transaction(c, unrule_modify, &r, err);
    return rc < 0 ? rc : r.removed;
}

static int set_stop(void *h, char err[SMBAN_ERR_LEN])
{
    smban_iptc *c = h;
    int removed = smban_iptc_set_unjump(c, err), rc;
    if (removed < 0)
        return removed;
    if ((rc = smban_ipset_destroy(c->ipset, err)) < 0)
        return rc;
    return removed > 0 || rc > 0;
}

static int check_modify(smban_iptc *c, xh *h, void *vctx, char err[SMBAN_ERR_LEN])
{
    rule_ctx *r = vctx;
    (void)err;
    smban_rule_set_index(c, &c->jump, r->index);
    r->present = has_rule(c, h);
    return 0;
}

static int set_check(void *h, smban_backend_status *st, char err[SMBAN_ERR_LEN])
{
    smban_iptc *c = h;
    rule_ctx r = {0, 0, 0, 0};
    int exists, rc;
    memset(st, 0, sizeof *st);
    if ((rc = smban_ipset_header(c->ipset, &exists, &st->bans, &st->references, err)) < 0)
        return rc;
    if (!exists)
        return 0;
    st->chain = st->ret = 1;   /* a set has no end to keep */
    if ((rc = smban_ipset_index(c->ipset, &r.index, err)) < 0
        || (rc = smban_iptc_transaction(c, check_modify, &r, err)) < 0)
        return rc;
    st->jump = r.present;
    return 0;
}

static const char *set_name(const void *h)
{
    return ((const smban_iptc *)h)->setname;
}

static void set_free(void *h)
{
    smban_iptc_backend.free(h);
}

static void set_stats(void *h, smban_backend_stats *st)
{
    smban_iptc_backend.stats(h, st);
}

static int set_family(const void *h)
{
    return smban_iptc_backend.family(h);
}

static int set_min_prefix(const void *h)
{
    return smban_iptc_backend.min_prefix(h);
}

const smban_backend_ops smban_iptc_set_ops = {
    .start = set_start,
    .apply = set_apply,
    .list = set_list,
    .flush = set_flush,
    .stop = set_stop,
    .check = set_check,
    .stats = set_stats,
    .name = set_name,
    .family = set_family,
    .min_prefix = set_min_prefix,
    .free = set_free,
};
