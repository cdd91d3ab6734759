/*
 * ipset.h — the kernel set of the iptables backend's set mode, through
 * libipset: one set per jail and family (hash:ip, or hash:net when networks
 * are banned), every element with a timeout of its own, read and written
 * over netlink without a process or a shell.
 *
 * The iptables side of set mode (the one rule matching the set) is in
 * iptc_set.c; this file knows nothing of iptables.  Addresses reach the
 * kernel as bytes (never as text); names are checked by the caller.
 * libipset keeps process-wide state (its cache of set types), so every call
 * into it holds one process-wide mutex.  Core conventions: negative
 * SMBAN_E* codes, the reason in the caller's err[SMBAN_ERR_LEN].
 */
#ifndef SMBAN_IPSET_H
#define SMBAN_IPSET_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "backend.h"

/* The longest set name the kernel takes, without its NUL. */
#define SMBAN_IPSET_NAME_MAX 31

/* The longest timeout the kernel keeps (it counts milliseconds in 31 bits);
 * a longer ban gets no kernel timeout and lives until it is unbanned. */
#define SMBAN_IPSET_TIMEOUT_MAX 2147483

/* Elements a set holds at most (the kernel's maxelem). */
#define SMBAN_IPSET_MAXELEM 1048576

typedef struct smban_ipset smban_ipset;

/* A handle on the set `name` of family 4 or 6; hash:net when min_prefix >
 * 0.  Nothing is read or written in the kernel yet. */
int smban_ipset_new(const char *name, int family, int min_prefix, smban_ipset **out,
                    char err[SMBAN_ERR_LEN]);
void smban_ipset_free(smban_ipset *s);

/* Create the set unless it is there: *created (may be NULL) is 1 when it
 * was made.  A set of that name with another type, family or options is a
 * clear SMBAN_EIPSET error and is left as it is. */
int smban_ipset_create(smban_ipset *s, int *created, char err[SMBAN_ERR_LEN]);

/* Whether the set exists, its elements, and the rules that reference it. */
int smban_ipset_header(smban_ipset *s, int *exists, size_t *elements,
                       unsigned *references, char err[SMBAN_ERR_LEN]);

/* The kernel's index of the set, which an iptables rule names it by. */
int smban_ipset_index(smban_ipset *s, uint16_t *index, char err[SMBAN_ERR_LEN]);

/* Ban (add) or unban (delete) n addresses, exactly as given (a host inside
 * a banned network is an element of its own).  timeouts[i] seconds for
 * addrs[i] (0: none; NULL: none for all).  refresh: an address already
 * banned gets its new timeout.  results (may be NULL) as backend.h's
 * apply.  The elements go to the kernel in one netlink batch; -ENOENT as
 * SMBAN_EIPSET when the set is missing, with nothing changed.  Returns the
 * number of changes. */
int smban_ipset_apply(smban_ipset *s, int op, const smban_addr *addrs, size_t n,
                      const double *timeouts, int refresh, uint8_t *results,
                      int *missing, char err[SMBAN_ERR_LEN]);

/* The elements, as addresses; *out malloc'ed (NULL when empty). */
int smban_ipset_list(smban_ipset *s, smban_addr **out, size_t *n, char err[SMBAN_ERR_LEN]);

/* Remove every element; returns how many there were. */
int smban_ipset_flush(smban_ipset *s, char err[SMBAN_ERR_LEN]);

/* Destroy the set: 1 when it was there, 0 when not.  Refused by the
 * kernel while a rule still references it. */
int smban_ipset_destroy(smban_ipset *s, char err[SMBAN_ERR_LEN]);

const char *smban_ipset_name(const smban_ipset *s);

#endif
