/*
 * nft.h — the nftables ban backend: the bans of one jail and one family in
 * a kernel set, matched by one rule, through libnftables.
 *
 * Layout, in a table of smban's own (family inet, "smban" by default; no
 * other table is ever read or written):
 *   set   f2b-<name>-v4  { type ipv4_addr; flags timeout[, interval]; }
 *   chain f2b-<name>-v4  { type filter hook input priority -1; policy accept; }
 *         ip saddr @f2b-<name>-v4 [tcp dport { ports }] reject|drop
 * (-v6, ip6 and ipv6_addr for IPv6).  A packet is looked up in the set
 * (a hash, or an interval tree when networks are banned): the cost per
 * packet and per ban does not grow with the number of bans.  An element
 * carries its own timeout, so a ban expires in the kernel even while
 * fail2ban is down.
 *
 * In the words of backend.h: the container (SMBAN_LAYOUT_CHAIN) is the
 * set, its end (SMBAN_LAYOUT_RETURN) the base chain hooked at input, and
 * what makes traffic reach it (SMBAN_LAYOUT_JUMP) the chain's one rule.
 * start() and every ban rewrite the chain's rule in the same transaction
 * as the rest (flush chain, add rule): nothing is half applied, and an
 * edited or deleted rule is repaired by the next ban.
 *
 * Commands are text built only from what this file validated: the names
 * (letters, digits, '_', '-', '.'), port numbers and addresses formatted
 * from parsed bytes (addr.h).  No text of a log line reaches them.
 */
#ifndef SMBAN_NFT_H
#define SMBAN_NFT_H

#include "backend.h"

/* The longest jail name: the set is f2b-<name>-v4 (nftables takes 255
 * bytes; this keeps the names readable in a listing and in messages). */
#define SMBAN_NFT_NAME_MAX 64

typedef struct {
    const char *name;          /* the jail: set and chain f2b-<name>-v4/-v6 */
    int family;                /* 4 or 6 */
    const char *table;         /* the inet table smban owns */
    const char *protocol;      /* tcp, udp, sctp, dccp, udplite or all */
    const char *ports;         /* "all", or "smtp,465,1000:2000" */
    const char *blocktype;     /* reject (a TCP reset for tcp, else ICMP unreachable) or drop */
    int min_prefix;            /* 0: hosts only; n: networks of prefix >= n too (interval set) */
    double timeout;            /* seconds a ban lives in the kernel; 0: until unbanned */
} smban_nft_options;

typedef struct smban_nft smban_nft;

/* The backend's operations (backend.h); the handle is a smban_nft. */
extern const smban_backend_ops smban_nft_backend;

void smban_nft_options_default(smban_nft_options *o);

/* Validate the options and make a handle; nothing is read or written in
 * the kernel yet.  SMBAN_EINVAL for a bad option, SMBAN_ENFT when
 * libnftables cannot make a context. */
int smban_nft_new(const smban_nft_options *o, smban_nft **out, char err[SMBAN_ERR_LEN]);

/* apply() of the operations with the timeouts of the bans' own, as a
 * restore needs for what is left of each ban: timeouts[i] seconds for
 * addrs[i] (0: none; NULL: the handle's timeout for all).  refresh: an
 * address already banned is added again with its new timeout (deleted and
 * added in the same transaction), as a ban that fail2ban prolongs; it
 * does not count as a change. */
int smban_nft_apply(smban_nft *h, int op, const smban_addr *addrs, size_t n,
                    const double *timeouts, int refresh, uint8_t *results,
                    char err[SMBAN_ERR_LEN]);

/* The table's name. */
const char *smban_nft_table(const smban_nft *h);

#endif
