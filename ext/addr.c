/*
 * addr.c — the addresses a ban backend accepts (see addr.h): parsing
 * untrusted text into smban_addr, formatting it back, prefix masks, ports.
 *
 * libc only: this file is linked into every backend and fuzzed without
 * libiptc or libnftables.  Every refusal is SMBAN_EINVAL with the reason in err; the text
 * quoted in a message goes through smban_quote, so a log line never
 * carries the attacker's control characters.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

void smban_quote(const char *s, char out[SMBAN_QUOTE_LEN])
{
    size_t i = 0;
    for (; s[i] && i < 64; i++)
        out[i] = (s[i] > 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = 0;
}

void smban_prefix_mask(int family, int prefix, uint8_t mask[16])
{
    int bytes = family == 4 ? 4 : 16;
    memset(mask, 0, 16);
    for (int i = 0; i < bytes; i++) {
        int bits = prefix - 8 * i;
        mask[i] = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
    }
}

int smban_addr_parse(const char *text, int family, int min_prefix,
                     smban_addr *out, char err[SMBAN_ERR_LEN])
{
    char buf[72], q[SMBAN_QUOTE_LEN];
    const char *slash;
    size_t len;
    int max = family == 6 ? 128 : 32, prefix = max;
    uint8_t a[16] = {0}, mask[16];

    if (family != 4 && family != 6) {
        snprintf(err, SMBAN_ERR_LEN, "family must be 4 or 6, not %d", family);
        return SMBAN_EINVAL;
    }
    if (!text || !*text) {
        snprintf(err, SMBAN_ERR_LEN, "empty address");
        return SMBAN_EINVAL;
    }
    smban_quote(text, q);
    len = strlen(text);
    if (len > 60) {
        snprintf(err, SMBAN_ERR_LEN, "'%s' is not an IP address (too long)", q);
        return SMBAN_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char)text[i]) && !strchr(".:/", text[i])) {
            snprintf(err, SMBAN_ERR_LEN,
                     "'%s' is not an IP address (only IPv4 or IPv6 literals "
                     "are banned, never host names)", q);
            return SMBAN_EINVAL;
        }
    }
    slash = strchr(text, '/');
    memcpy(buf, text, slash ? (size_t)(slash - text) : len);
    buf[slash ? (size_t)(slash - text) : len] = 0;
    if (slash) {
        const char *p = slash + 1;
        size_t nd = strlen(p);
        if (nd < 1 || nd > 3 || strspn(p, "0123456789") != nd) {
            snprintf(err, SMBAN_ERR_LEN, "'%s': bad prefix length", q);
            return SMBAN_EINVAL;
        }
        prefix = atoi(p);
        if (prefix > max) {
            snprintf(err, SMBAN_ERR_LEN, "'%s': prefix /%d out of range (at most /%d)",
                     q, prefix, max);
            return SMBAN_EINVAL;
        }
    }
    if (inet_pton(family == 4 ? AF_INET : AF_INET6, buf, a) != 1) {
        uint8_t other[16];
        if (inet_pton(family == 4 ? AF_INET6 : AF_INET, buf, other) == 1)
            snprintf(err, SMBAN_ERR_LEN, "'%s' is an IPv%d address; this chain is IPv%d",
                     q, family == 4 ? 6 : 4, family);
        else
            snprintf(err, SMBAN_ERR_LEN, "'%s' is not an IPv%d address", q, family);
        return SMBAN_EINVAL;
    }
    if (family == 6) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            snprintf(err, SMBAN_ERR_LEN,
                     "'%s' is an IPv4-mapped address: ban %u.%u.%u.%u on the IPv4 chain",
                     q, a[12], a[13], a[14], a[15]);
            return SMBAN_EINVAL;
        }
    }
    if (prefix != max) {
        if (min_prefix <= 0) {
            snprintf(err, SMBAN_ERR_LEN,
                     "'%s': only single addresses (/%d) can be banned here", q, max);
            return SMBAN_EINVAL;
        }
        if (prefix < min_prefix) {
            snprintf(err, SMBAN_ERR_LEN,
                     "'%s': prefix /%d is wider than the allowed /%d", q, prefix,
                     min_prefix);
            return SMBAN_EINVAL;
        }
        smban_prefix_mask(family, prefix, mask);
        for (int i = 0; i < 16; i++) {
            if (a[i] & ~mask[i]) {
                snprintf(err, SMBAN_ERR_LEN, "'%s': host bits set after /%d", q, prefix);
                return SMBAN_EINVAL;
            }
        }
    }
    out->family = (uint8_t)family;
    out->prefix = (uint8_t)prefix;
    memcpy(out->addr, a, 16);
    return 0;
}

void smban_addr_format(const smban_addr *a, char buf[SMBAN_ADDR_LEN])
{
    int max = a->family == 6 ? 128 : 32;
    if (!inet_ntop(a->family == 6 ? AF_INET6 : AF_INET, a->addr, buf, INET6_ADDRSTRLEN))
        snprintf(buf, SMBAN_ADDR_LEN, "?");
    if (a->prefix != max) {
        size_t n = strlen(buf);
        snprintf(buf + n, SMBAN_ADDR_LEN - n, "/%d", a->prefix);
    }
}

int smban_mask_prefix(const uint8_t *mask, int bytes)
{
    int n = 0;
    for (int i = 0; i < bytes; i++)
        n += __builtin_popcount(mask[i]);
    return n;
}

/* One port of a list: a number or a service name of /etc/services for
 * proto (getservbyname_r: thread-safe, no DNS).  Surrounding blanks are
 * ignored. */
int smban_port_parse(const char *s, size_t n, const char *proto, uint16_t *out,
                     char err[SMBAN_ERR_LEN])
{
    char name[64];
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0 || n >= sizeof name) {
        snprintf(err, SMBAN_ERR_LEN, "empty or overlong port in the port list");
        return SMBAN_EINVAL;
    }
    memcpy(name, s, n);
    name[n] = 0;
    if (strspn(name, "0123456789") == n) {
        long v = n <= 5 ? strtol(name, NULL, 10) : 70000;
        if (v > 65535) {
            snprintf(err, SMBAN_ERR_LEN, "port %s out of range", name);
            return SMBAN_EINVAL;
        }
        *out = (uint16_t)v;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i])) {
            char q[SMBAN_QUOTE_LEN];
            smban_quote(name, q);
            snprintf(err, SMBAN_ERR_LEN, "'%s' is not a port number or service name", q);
            return SMBAN_EINVAL;
        }
    }
    struct servent se, *res = NULL;
    char buf[2048];
    if (getservbyname_r(name, proto, &se, buf, sizeof buf, &res) != 0 || !res) {
        snprintf(err, SMBAN_ERR_LEN, "unknown %s service '%s' (not in /etc/services)",
                 proto, name);
        return SMBAN_EINVAL;
    }
    *out = ntohs((uint16_t)res->s_port);
    return 0;
}
