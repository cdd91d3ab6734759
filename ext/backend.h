/*
 * backend.h — the interface of a ban backend: what the Python binding
 * (ext/iptc_module.c) calls to ban, unban, list and repair, whatever holds
 * the bans in the kernel.
 *
 * A backend is one `const smban_backend_ops` table of functions plus an
 * opaque handle (void *) that the backend's own constructor makes: the
 * options differ between backends (an iptables chain has a parent chain
 * and a lock file; an nftables set would have a table), so the constructor
 * is not in the table.  The handle is freed by ops->free; every other
 * operation may be called from several threads at once, and none touches
 * Python.  The iptables backend is smban_iptc_backend (iptc.h); a second
 * one (nftables, ipset) implements this table and its constructor, and the
 * binding's methods stay as they are.
 *
 * Conventions of the core: a negative SMBAN_E* code (errors.h) on failure
 * with the reason in the caller's err[SMBAN_ERR_LEN]; addresses are parsed
 * and validated by the caller (addr.h), for the handle's family and with
 * prefixes no shorter than its min_prefix.
 *
 * Words of the interface: the backend holds the bans of one jail and one
 * address family in a container of its own (iptables: the chain f2b-<name>)
 * that must end as the backend requires (iptables: a plain RETURN) and that
 * traffic must reach (iptables: one jump rule from the parent chain).
 * Those three parts are its layout.
 */
#ifndef SMBAN_BACKEND_H
#define SMBAN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "errors.h"

/* The parts of the layout: what start() repaired, what check() found. */
#define SMBAN_LAYOUT_CHAIN  1  /* the container exists */
#define SMBAN_LAYOUT_RETURN 2  /* it ends as it must */
#define SMBAN_LAYOUT_JUMP   4  /* traffic reaches it */

enum smban_ban_op { SMBAN_OP_BAN = 1, SMBAN_OP_UNBAN = 2 };

typedef struct {
    int chain;                 /* the container exists */
    int ret;                   /* it ends as it must */
    int jump;                  /* traffic reaches it, exactly as configured */
    unsigned references;       /* rules leading to the container, anywhere */
    size_t bans;               /* bans it holds */
} smban_backend_status;

typedef struct {
    uint64_t transactions;     /* reads and changes of the kernel's state */
    uint64_t commits;          /* changes that landed */
    uint64_t retries;          /* transactions redone after a concurrent change */
    uint64_t requests;         /* ban/unban requests served */
    uint64_t grouped;          /* requests that shared a commit with another */
} smban_backend_stats;

typedef struct {
    /* Create or repair the layout.  *repaired (may be NULL) gets the
     * SMBAN_LAYOUT_* bits of what was missing; 0 when it was whole. */
    int (*start)(void *h, unsigned *repaired, char err[SMBAN_ERR_LEN]);

    /* Ban or unban (op) n addresses in one commit, shared with whatever
     * other requests are waiting (group commit).  A ban also repairs the
     * layout in that commit.  results, when not NULL, gets 1 for each
     * address that changed the kernel's state and 0 for a no-op (already
     * banned, not banned, a duplicate earlier in the list).  Returns the
     * number of changes, or a negative code: then nothing of this request
     * was committed. */
    int (*apply)(void *h, int op, const smban_addr *addrs, size_t n,
                 uint8_t *results, char err[SMBAN_ERR_LEN]);

    /* The banned addresses, newest first.  On success *out is a malloc'ed
     * array of *n entries the caller frees (NULL when empty). */
    int (*list)(void *h, smban_addr **out, size_t *n, char err[SMBAN_ERR_LEN]);

    /* Remove every ban, keeping the layout.  Returns the number removed. */
    int (*flush)(void *h, char err[SMBAN_ERR_LEN]);

    /* Remove the layout with its bans.  Returns 1 when something was
     * removed, 0 when nothing was there. */
    int (*stop)(void *h, char err[SMBAN_ERR_LEN]);

    /* Read the layout without changing anything. */
    int (*check)(void *h, smban_backend_status *st, char err[SMBAN_ERR_LEN]);

    /* Counters since the handle was made; never fails. */
    void (*stats)(void *h, smban_backend_stats *st);

    /* What the handle was made with (borrowed, constant). */
    const char *(*name)(const void *h);    /* the container's name */
    int (*family)(const void *h);          /* 4 or 6 */
    int (*min_prefix)(const void *h);      /* 0: hosts only */

    /* Free h; no other call on it may be running.  free(NULL) is a no-op. */
    void (*free)(void *h);
} smban_backend_ops;

#endif
