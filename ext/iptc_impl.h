/*
 * iptc_impl.h — what the files of the iptables backend share, and nothing
 * outside them includes: the chain object, the functions of iptc_rule.c
 * (options and rules), and the transactions of iptc.c that the chain
 * operations (iptc.c) and the set mode's operations (iptc_set.c) run in.
 *
 * Invariant of a smban_iptc once smban_iptc_new has returned it: every
 * field above the queue is constant (options checked, rules prebuilt), so
 * any thread may read them without a lock; the queue fields are guarded by
 * mu, the counters are atomics, and the prebuilt ban rule is patched only
 * inside a transaction (under the process-wide libiptc mutex).
 */
#ifndef SMBAN_IPTC_IMPL_H
#define SMBAN_IPTC_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include "iptc.h"

/* Room for one rule smban writes: entry, a multiport match, a target. */
#define ENTRY_MAX 512

enum smban_block {
    SMBAN_BLOCK_REJECT,        /* icmp(6)-port-unreachable */
    SMBAN_BLOCK_DROP,
    SMBAN_BLOCK_TCP_RESET,     /* REJECT --reject-with tcp-reset (-p tcp) */
};

typedef union {
    struct ipt_entry e4;
    struct ip6t_entry e6;
    uint64_t align;
    unsigned char b[ENTRY_MAX];
} entry_buf;

typedef struct xtc_handle xh; /* a snapshot of the filter table (libiptc) */

/* libiptc of one family, through typed wrappers (iptc.c). */
typedef struct table_ops {
    const char *tool;          /* for messages */
    xh *(*init)(const char *);
    void (*free)(xh *);
    int (*commit)(xh *);
    const char *(*strerror)(int);
    int (*is_chain)(const char *, xh *);
    int (*create_chain)(const char *, xh *);
    int (*delete_chain)(const char *, xh *);
    int (*flush_entries)(const char *, xh *);
    const void *(*first_rule)(const char *, xh *);
    const void *(*next_rule)(const void *, xh *);
    const char *(*get_target)(const void *, xh *);
    int (*insert_entry)(const char *, const void *, unsigned, xh *);
    int (*append_entry)(const char *, const void *, xh *);
    int (*delete_num_entry)(const char *, unsigned, xh *);
    int (*check_entry)(const char *, const void *, unsigned char *, xh *);
    int (*get_references)(unsigned *, const char *, xh *);
} table_ops;

struct request;                /* one caller's bans or unbans (iptc.c) */
struct smban_ipset;            /* set mode: the kernel set (ipset.h) */

struct smban_iptc {
    int family;
    const struct table_ops *ops;
    char chain[SMBAN_CHAIN_MAX + 1];
    char parent[XT_TABLE_MAXNAMELEN];
    char *lockfile;            /* owned */
    double lock_wait;
    int min_prefix, retries;
    int race;                  /* test hook: commits still to be raced */
    uint16_t proto;            /* of the jump rule; 0: all */
    int block;                 /* enum smban_block */
    entry_buf jump, ret, ban;  /* prebuilt rules; ban's source is patched */
    /* set mode: the bans are the elements of an ipset, and the one rule
     * in the parent (jump) matches the set by the kernel's index, patched
     * in a transaction; the chain, ret and ban are not used */
    int set;
    char setname[32];          /* <chain>-v4 or <chain>-v6 */
    struct smban_ipset *ipset; /* owned */
    pthread_mutex_t mu;        /* the queue below */
    pthread_cond_t cv;
    struct request *head, *tail;
    int committing;
    smban_backend_stats stats; /* updated with __atomic builtins */
};

/* ---- iptc.c ---- */

/* Modify the table h: return <0 on error (err set), 0 when there is
 * nothing to commit, 1 to commit.  Called again from scratch on EAGAIN, so
 * it must be idempotent and keep what it reports sticky over attempts. */
typedef int (*smban_modify_fn)(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN]);

/* One transaction: both locks, a snapshot, fn, the commit, retried on
 * EAGAIN.  Returns fn's error, a lock or commit error, or 0. */
int smban_iptc_transaction(smban_iptc *c, smban_modify_fn fn, void *ctx,
                           char err[SMBAN_ERR_LEN]);

/* The error of a failed libiptc call (right after it: libiptc keeps its
 * reason in a global). */
int smban_iptc_fail(smban_iptc *c, const char *what, int e, char err[SMBAN_ERR_LEN]);

/* An apply request's operation, and its addresses of c's family; 0 or
 * SMBAN_EINVAL. */
int smban_iptc_check_request(const smban_iptc *c, int op, const smban_addr *addrs, size_t n,
                             char err[SMBAN_ERR_LEN]);

/* A counter of c->stats, bumped from any thread. */
void smban_stat_add(uint64_t *v, uint64_t n);

/* ---- iptc_set.c: the operations of set mode ---- */

extern const smban_backend_ops smban_iptc_set_ops;

/* smban_iptc_unjump in set mode: the rules matching our set, removed. */
int smban_iptc_set_unjump(smban_iptc *c, char err[SMBAN_ERR_LEN]);

/* ---- iptc_rule.c ---- */

/* Check the options and fill c with them: family, names, protocol, ports,
 * block type, limits, and the three prebuilt rules (jump, RETURN, ban).
 * Everything but the lock file, the ops table and the queue.  0 or
 * SMBAN_EINVAL with the reason in err; nothing is allocated. */
int smban_rule_options(const smban_iptc_options *o, smban_iptc *c, char err[SMBAN_ERR_LEN]);

/* Point the prebuilt ban rule b at address a. */
void smban_rule_set_src(const smban_iptc *c, entry_buf *b, const smban_addr *a);

/* The source of rule e, when it has one (a ban): 1 and *a, else 0. */
int smban_rule_src(const smban_iptc *c, const void *e, smban_addr *a);

/* Rule e has no address, protocol, interface or match: our RETURN's shape. */
int smban_rule_is_plain(const smban_iptc *c, const void *e);

/* Set mode: point the prebuilt rule b's set match at the set's index. */
void smban_rule_set_index(const smban_iptc *c, entry_buf *b, uint16_t index);

/* Whether rule e matches an ipset (-m set): 1 and its index, else 0. */
int smban_rule_set_of(const smban_iptc *c, const void *e, uint16_t *index);

#endif
