/*
 * iptc_impl.h — what the files of the iptables backend share, and nothing
 * outside them includes: the chain object and the functions of
 * iptc_rule.c (options and rules) that iptc.c (transactions, group commit,
 * chain operations) calls.
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

struct table_ops;              /* libiptc of one family (iptc.c) */
struct request;                /* one caller's bans or unbans (iptc.c) */

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
    pthread_mutex_t mu;        /* the queue below */
    pthread_cond_t cv;
    struct request *head, *tail;
    int committing;
    smban_backend_stats stats; /* updated with __atomic builtins */
};

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

#endif
