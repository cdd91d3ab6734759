/*
 * iptc.h — smban's iptables ban backend: one iptables chain per jail and
 * family, edited in process through libiptc (legacy iptables tables, IPv4
 * and IPv6).  It implements the ban-backend interface of backend.h as
 * smban_iptc_backend; this header adds its options, its constructor and
 * the operations only an iptables chain has.
 *
 * The layout is fail2ban's: a chain (f2b-<name>) ending in RETURN, one jump
 * rule from a parent chain (INPUT) matching the protocol and the destination
 * ports, and one "-s ADDR/32 -j REJECT|DROP" rule per ban at the head of the
 * chain.  Nothing else in the table is ever touched.
 *
 * Set mode (options.set): the bans are the elements of an ipset named
 * <chain>-v4 or <chain>-v6 (hash:ip, or hash:net with min_prefix; every
 * element with a timeout of its own, ipset.h), and the layout is one rule
 * in the parent: "-p PROTO -m multiport --dports P -m set --match-set SET
 * src -j REJECT|DROP".  A packet costs one hash lookup and a ban one
 * netlink message, whatever the number of bans.  In backend.h's words the
 * container is the set, it always ends as it must, and the jump is the
 * rule; start() creates the set before the rule (the rule names it by the
 * kernel's index), stop() removes the rule before the set.
 *
 * Every change is one transaction: flock on the xtables lock (the lock
 * "iptables -w" takes), iptc_init, modify, iptc_commit, iptc_free, unlock;
 * the whole transaction is retried when the kernel answers EAGAIN.  Bans and
 * unbans from several threads that arrive while a transaction runs are
 * applied together by the next one (group commit).
 *
 * Like the rest of the core: no Python.h, errors as negative SMBAN_E* codes
 * with a message in a caller-owned err[SMBAN_ERR_LEN].  All functions are
 * thread-safe; libiptc itself is serialised by a process-wide mutex (it
 * keeps its last error in a global).
 */
#ifndef SMBAN_IPTC_H
#define SMBAN_IPTC_H

#include "addr.h"
#include "backend.h"
#include "errors.h"

/* Longest chain name: a jump target's name must fit the kernel's
 * XT_EXTENSION_MAXNAMELEN (29) with its NUL. */
#define SMBAN_CHAIN_MAX 28

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
    int set;                   /* set mode: the bans in an ipset (see below) */
} smban_iptc_options;

typedef struct smban_iptc smban_iptc;

/* The backend.h operations on a smban_iptc handle: start creates or
 * repairs the chain, its RETURN and the jump rule; stop removes every jump
 * to our chain from the parent, then the chain with its bans (it refuses
 * while rules elsewhere still jump to it); name is the chain's name. */
extern const smban_backend_ops smban_iptc_backend;

/* Fill o with the defaults: family 4, parent INPUT, protocol tcp, ports
 * "all", REJECT, lock wait 10 s, hosts only, 8 retries.  chain stays NULL
 * and must be set. */
void smban_iptc_options_default(smban_iptc_options *o);

/* Check the options (chain name, ports, protocol, blocktype) and make a
 * chain handle.  No table is read or written.  On success *out is a new
 * object the caller frees with smban_iptc_backend.free. */
int smban_iptc_new(const smban_iptc_options *o, smban_iptc **out,
                   char err[SMBAN_ERR_LEN]);

/* The operations of c: smban_iptc_backend, or in set mode those of the
 * set mode (the same shapes). */
const smban_backend_ops *smban_iptc_ops(const smban_iptc *c);

/* apply() with timeouts and refresh, for set mode (as smban_nft_apply,
 * nft.h): timeouts[i] seconds for addrs[i] in the kernel (0 or NULL: none;
 * longer than SMBAN_IPSET_TIMEOUT_MAX: none), refresh re-adds a banned
 * address with its new timeout.  In chain mode timeouts and refresh are
 * SMBAN_EINVAL. */
int smban_iptc_apply(smban_iptc *c, int op, const smban_addr *addrs, size_t n,
                     const double *timeouts, int refresh, uint8_t *results,
                     char err[SMBAN_ERR_LEN]);

/* The ipset's name in set mode, else NULL. */
const char *smban_iptc_set_name(const smban_iptc *c);

/* Remove the jump rules to our chain (set mode: the rules matching our
 * set) from the parent only, keeping the chain or set and its bans (used
 * when the parent chain changes).  Returns the
 * number of rules removed. */
int smban_iptc_unjump(smban_iptc *c, char err[SMBAN_ERR_LEN]);

/* Borrowed: the resolved lock file path. */
const char *smban_iptc_lockfile(const smban_iptc *c);

/* Test hook: before each of the next n commits that change the table, a
 * second handle commits a change of its own (it creates or deletes the
 * chain "smban-race"), so the kernel refuses our stale commit with EAGAIN
 * and the retry path runs on demand instead of by chance.  n <= 0 ends it. */
void smban_iptc_race_next(smban_iptc *c, int n);

#endif
