/*
 * iptc.h — smban's ban backend: one iptables chain per jail, edited in
 * process through libiptc (legacy iptables tables, IPv4 and IPv6).
 *
 * The layout is fail2ban's: a chain (f2b-<name>) ending in RETURN, one jump
 * rule from a parent chain (INPUT) matching the protocol and the destination
 * ports, and one "-s ADDR/32 -j REJECT|DROP" rule per ban at the head of the
 * chain.  Nothing else in the table is ever touched.
 *
 * Every change is one transaction: flock on the xtables lock (the lock
 * "iptables -w" takes), iptc_init, modify, iptc_commit, iptc_free, unlock;
 * the whole transaction is retried when the kernel answers EAGAIN.  Bans and
 * unbans from several threads that arrive while a transaction runs are
 * applied together by the next one (group commit).
 *
 * Like the rest of the core: no Python.h, errors as negative SMBAN_E* codes
 * with a message in a caller-owned err[SMBAN_ERR_LEN], _free(NULL) no-op.
 * All functions are thread-safe; libiptc itself is serialised by a
 * process-wide mutex (it keeps its last error in a global).
 */
#ifndef SMBAN_IPTC_H
#define SMBAN_IPTC_H

#include <stddef.h>
#include <stdint.h>

#include "smban.h"

#define SMBAN_ELOCK   (-20)    /* the xtables lock was not free in time */
#define SMBAN_EIPTC   (-21)    /* libiptc or the kernel refused; err says why */
#define SMBAN_ESYS    (-22)    /* a system call failed (lock file, threads) */

/* Longest chain name: a jump target's name must fit the kernel's
 * XT_EXTENSION_MAXNAMELEN (29) with its NUL. */
#define SMBAN_CHAIN_MAX 28

/* Room for any smban_addr_format() result: IPv6 text plus "/128". */
#define SMBAN_ADDR_LEN 52

enum smban_block {
    SMBAN_BLOCK_REJECT,        /* icmp(6)-port-unreachable */
    SMBAN_BLOCK_DROP,
    SMBAN_BLOCK_TCP_RESET,     /* REJECT --reject-with tcp-reset (-p tcp) */
};

/* An address or network, in network byte order, host bits zero. */
typedef struct {
    uint8_t family;            /* 4 or 6 */
    uint8_t prefix;            /* 32 or 128 for a host */
    uint8_t addr[16];          /* IPv4 uses the first 4 bytes */
} smban_addr;

typedef struct {
    int family;                /* 4 or 6 */
    const char *chain;         /* our chain, e.g. "f2b-smban" */
    const char *parent;        /* chain holding the jump rule; NULL: INPUT */
    const char *protocol;      /* tcp, udp, sctp, dccp, udplite; "all" only with ports "all" */
    const char *ports;         /* "smtp,465,submission", "1000:2000", or "all" */
    const char *blocktype;     /* "REJECT", "DROP", "REJECT --reject-with X" */
    const char *lockfile;      /* NULL: $XTABLES_LOCKFILE, else /run/xtables.lock */
    double lock_wait;          /* seconds to wait for the lock */
    int min_prefix;            /* 0: hosts only; n: networks of prefix >= n too */
    int retries;               /* whole-transaction retries on EAGAIN */
} smban_iptc_options;

/* What start() repaired, and what check() found missing. */
#define SMBAN_LAYOUT_CHAIN  1
#define SMBAN_LAYOUT_RETURN 2
#define SMBAN_LAYOUT_JUMP   4

typedef struct {
    int chain;                 /* our chain exists */
    int ret;                   /* it ends in a plain RETURN */
    int jump;                  /* the parent holds our exact jump rule */
    unsigned references;       /* rules jumping to our chain, anywhere */
    size_t bans;               /* rules with a source address in our chain */
} smban_iptc_status;

typedef struct {
    uint64_t transactions;     /* transactions run (including read-only ones) */
    uint64_t commits;          /* iptc_commit calls that succeeded */
    uint64_t retries;          /* transactions retried after EAGAIN */
    uint64_t requests;         /* ban/unban requests served */
    uint64_t grouped;          /* requests that shared a commit with another */
} smban_iptc_stats;

typedef struct smban_iptc smban_iptc;

/* Fill o with the defaults: family 4, parent INPUT, protocol tcp, ports
 * "all", REJECT, lock wait 10 s, hosts only, 8 retries.  chain stays NULL
 * and must be set. */
void smban_iptc_options_default(smban_iptc_options *o);

/* Parse one address for a chain of the given family.  Accepts an IPv4 or
 * IPv6 literal (inet_pton; no names, no leading zeros, no scope), with an
 * optional "/prefix": the full length always, a shorter one only when
 * min_prefix > 0 and prefix >= min_prefix and the host bits are zero.
 * IPv4-mapped IPv6 addresses are refused (the packets are IPv4).  Returns 0
 * or SMBAN_EINVAL with the reason in err.  Touches no global state. */
int smban_addr_parse(const char *text, int family, int min_prefix,
                     smban_addr *out, char err[SMBAN_ERR_LEN]);

/* Text of a: "192.0.2.1" for a host, "192.0.2.0/24" for a network. */
void smban_addr_format(const smban_addr *a, char buf[SMBAN_ADDR_LEN]);

/* Check the options (chain name, ports, protocol, blocktype) and make a
 * chain handle.  No table is read or written.  On success *out is a new
 * object the caller frees with smban_iptc_free. */
int smban_iptc_new(const smban_iptc_options *o, smban_iptc **out,
                   char err[SMBAN_ERR_LEN]);

/* Free c.  No call on c may be running. */
void smban_iptc_free(smban_iptc *c);

enum smban_iptc_op { SMBAN_OP_BAN = 1, SMBAN_OP_UNBAN = 2 };

/* Ban (add a rule at the head of the chain) or unban (remove the rules of)
 * n validated addresses of c's family, in one transaction shared with
 * whatever other requests are waiting (group commit).  A ban also repairs
 * the layout (chain, RETURN, jump rule) in the same commit.  results, when
 * not NULL, gets 1 for each address that changed the table and 0 for a
 * no-op (already banned, not banned, or a duplicate earlier in the list).
 * Returns the number of changes, or a negative code: then nothing of this
 * request was committed. */
int smban_iptc_apply(smban_iptc *c, int op, const smban_addr *addrs, size_t n,
                     uint8_t *results, char err[SMBAN_ERR_LEN]);

/* Create or repair the layout.  *repaired (may be NULL) gets the
 * SMBAN_LAYOUT_* bits of what was missing; 0 when the layout was whole. */
int smban_iptc_start(smban_iptc *c, unsigned *repaired, char err[SMBAN_ERR_LEN]);

/* Remove every jump to our chain from the parent, then the chain with its
 * bans.  Returns 1 when something was removed, 0 when nothing was there. */
int smban_iptc_stop(smban_iptc *c, char err[SMBAN_ERR_LEN]);

/* Remove the jump rules to our chain from the parent only, keeping the
 * chain and its bans (used when the parent chain changes).  Returns the
 * number of rules removed. */
int smban_iptc_unjump(smban_iptc *c, char err[SMBAN_ERR_LEN]);

/* Remove every ban, keeping the chain, its RETURN and the jump.  Returns
 * the number of bans removed. */
int smban_iptc_flush(smban_iptc *c, char err[SMBAN_ERR_LEN]);

/* Read the layout without changing anything. */
int smban_iptc_check(smban_iptc *c, smban_iptc_status *st,
                     char err[SMBAN_ERR_LEN]);

/* The banned addresses, head of the chain first.  On success *out is a
 * malloc'ed array of *n entries the caller frees (NULL when empty). */
int smban_iptc_list(smban_iptc *c, smban_addr **out, size_t *n,
                    char err[SMBAN_ERR_LEN]);

void smban_iptc_get_stats(smban_iptc *c, smban_iptc_stats *st);

/* Test hook: before each of the next n commits that change the table, a
 * second handle commits a change of its own (it creates or deletes the
 * chain "smban-race"), so the kernel refuses our stale commit with EAGAIN
 * and the retry path runs on demand instead of by chance.  n <= 0 ends it. */
void smban_iptc_race_next(smban_iptc *c, int n);

/* Borrowed: the chain name and the resolved lock file path. */
const char *smban_iptc_chain(const smban_iptc *c);
const char *smban_iptc_lockfile(const smban_iptc *c);
int smban_iptc_family(const smban_iptc *c);
int smban_iptc_min_prefix(const smban_iptc *c);

#endif
