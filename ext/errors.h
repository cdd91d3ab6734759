/*
 * errors.h — the error codes of smban's C code, shared by the classifier
 * core (smban.h) and the ban backends (backend.h, iptc.h, ipset.h, nft.h, addr.h).
 *
 * A function of the core returns 0 (or a count) on success and one of these
 * negative codes on failure, with a message in a caller-owned
 * err[SMBAN_ERR_LEN] where one helps.  The codes are distinct across both
 * halves, so a binding maps each to an exception in one place.
 */
#ifndef SMBAN_ERRORS_H
#define SMBAN_ERRORS_H

#define SMBAN_ERR_LEN 256

#define SMBAN_ENOMEM  (-1)     /* out of memory */
#define SMBAN_EINVAL  (-2)     /* bad input: an option, an address; nothing was changed */
#define SMBAN_EREGEX  (-3)     /* a pattern of the rule table does not compile */
#define SMBAN_EIO     (-4)     /* a read failed: errno tells why */
#define SMBAN_ELOCK   (-20)    /* the xtables lock was not free in time */
#define SMBAN_EIPTC   (-21)    /* libiptc or the kernel refused; err says why */
#define SMBAN_ESYS    (-22)    /* a system call failed (lock file, threads) */
#define SMBAN_ENFT    (-23)    /* libnftables or the kernel refused; err says why */
#define SMBAN_EIPSET  (-24)    /* libipset or the kernel refused a set operation */

#endif
