/*
 * addr.h — the addresses a ban backend accepts: IPv4 and IPv6 literals,
 * hosts or (when a backend allows them) networks, parsed from untrusted
 * text and formatted back; the ports of a rule.
 *
 * Pure code: libc only (inet_pton/inet_ntop, getservbyname_r), no global
 * state, no table, no libiptc or libnftables; fuzzed on its own (ext/fuzz/fuzz_addr.c).  Invariant of a
 * parsed smban_addr: family 4 or 6, prefix at most 32 or 128, the host
 * bits after the prefix zero, the unused bytes of an IPv4 address zero;
 * formatting one and parsing the text back gives the same address.
 */
#ifndef SMBAN_ADDR_H
#define SMBAN_ADDR_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

/* Room for any smban_addr_format() result: IPv6 text plus "/128". */
#define SMBAN_ADDR_LEN 52

/* Room for smban_quote(): 64 characters, "..." and the NUL. */
#define SMBAN_QUOTE_LEN 72

/* An address or network, in network byte order, host bits zero. */
typedef struct {
    uint8_t family;            /* 4 or 6 */
    uint8_t prefix;            /* 32 or 128 for a host */
    uint8_t addr[16];          /* IPv4 uses the first 4 bytes */
} smban_addr;

/* Parse one address for a chain of the given family.  Accepts an IPv4 or
 * IPv6 literal (inet_pton; no names, no leading zeros, no scope), with an
 * optional "/prefix": the full length always, a shorter one only when
 * min_prefix > 0 and prefix >= min_prefix and the host bits are zero.
 * IPv4-mapped IPv6 addresses are refused (the packets are IPv4).  Returns 0
 * or SMBAN_EINVAL with the reason in err. */
int smban_addr_parse(const char *text, int family, int min_prefix,
                     smban_addr *out, char err[SMBAN_ERR_LEN]);

/* Text of a: "192.0.2.1" for a host, "192.0.2.0/24" for a network. */
void smban_addr_format(const smban_addr *a, char buf[SMBAN_ADDR_LEN]);

/* The netmask of a prefix length, in network byte order (16 bytes; IPv4
 * uses the first 4, the others are zero). */
void smban_prefix_mask(int family, int prefix, uint8_t mask[16]);

/* The prefix length of a contiguous netmask of `bytes` bytes. */
int smban_mask_prefix(const uint8_t *mask, int bytes);

/* A printable copy of untrusted text for an error message: at most 64
 * characters, each outside printable ASCII (or a blank) shown as '?',
 * "..." when cut. */
void smban_quote(const char *s, char out[SMBAN_QUOTE_LEN]);

/* One port of a list: a number, or a service name of /etc/services for
 * proto (getservbyname_r: thread-safe, no DNS), at s (n bytes, surrounding
 * blanks ignored).  Returns 0 or SMBAN_EINVAL with the reason in err. */
int smban_port_parse(const char *s, size_t n, const char *proto, uint16_t *out,
                     char err[SMBAN_ERR_LEN]);

#endif
