/*
 * iptc.c — the ban backend: fail2ban's iptables layout, edited in process
 * through libiptc (see iptc.h for the contract).
 *
 * Why in process: fail2ban's stock action forks a shell and an iptables
 * binary per ban, and each of those reads and rewrites the whole table.
 * Here one transaction reads the table once, applies every ban and unban
 * waiting at that moment, and commits once.
 *
 * Concurrency: requests queue on their chain object; the first waiting
 * thread becomes the leader, takes the whole queue and runs one transaction
 * while the others sleep; requests arriving meanwhile form the next batch.
 * Transactions of all objects are serialised by one process-wide mutex
 * (libiptc keeps per-process state: its last failing function), and the
 * xtables flock serialises us with iptables binaries.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <libiptc/libiptc.h>
#include <libiptc/libip6tc.h>
#include <linux/netfilter/xt_multiport.h>
#include <linux/netfilter_ipv4/ipt_REJECT.h>
#include <linux/netfilter_ipv6/ip6t_REJECT.h>

#include "iptc.h"

#define DEFAULT_LOCKFILE "/run/xtables.lock"
#define ENTRY_MAX 512

typedef struct xtc_handle xh;

/* ---- one table of function pointers per family ---- */

typedef struct {
    const char *tool;          /* for messages */
    size_t entry_size;         /* XT_ALIGN(sizeof entry) */
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

/* Typed wrappers: libiptc's two libraries have the same shape with
 * different entry types; calling through cast function pointers would be
 * undefined behaviour. */
#define DEFINE_OPS(P, ENT, TOOL)                                                 \
    static xh *P##_w_init(const char *t) { return P##_init(t); }                 \
    static void P##_w_free(xh *h) { P##_free(h); }                               \
    static int P##_w_commit(xh *h) { return P##_commit(h); }                     \
    static const char *P##_w_strerror(int e) { return P##_strerror(e); }         \
    static int P##_w_is_chain(const char *c, xh *h) { return P##_is_chain(c, h); } \
    static int P##_w_create_chain(const char *c, xh *h) { return P##_create_chain(c, h); } \
    static int P##_w_delete_chain(const char *c, xh *h) { return P##_delete_chain(c, h); } \
    static int P##_w_flush_entries(const char *c, xh *h) { return P##_flush_entries(c, h); } \
    static const void *P##_w_first_rule(const char *c, xh *h) { return P##_first_rule(c, h); } \
    static const void *P##_w_next_rule(const void *e, xh *h)                     \
    { return P##_next_rule((const struct ENT *)e, h); }                          \
    static const char *P##_w_get_target(const void *e, xh *h)                    \
    { return P##_get_target((const struct ENT *)e, h); }                         \
    static int P##_w_insert_entry(const char *c, const void *e, unsigned n, xh *h) \
    { return P##_insert_entry(c, (const struct ENT *)e, n, h); }                 \
    static int P##_w_append_entry(const char *c, const void *e, xh *h)           \
    { return P##_append_entry(c, (const struct ENT *)e, h); }                    \
    static int P##_w_delete_num_entry(const char *c, unsigned n, xh *h)          \
    { return P##_delete_num_entry(c, n, h); }                                    \
    static int P##_w_check_entry(const char *c, const void *e, unsigned char *m, xh *h) \
    { return P##_check_entry(c, (const struct ENT *)e, m, h); }                  \
    static int P##_w_get_references(unsigned *r, const char *c, xh *h)           \
    { return P##_get_references(r, c, h); }                                      \
    static const table_ops P##_table = {                                         \
        TOOL, XT_ALIGN(sizeof(struct ENT)),                                      \
        P##_w_init, P##_w_free, P##_w_commit, P##_w_strerror, P##_w_is_chain,    \
        P##_w_create_chain, P##_w_delete_chain, P##_w_flush_entries,             \
        P##_w_first_rule, P##_w_next_rule, P##_w_get_target,                     \
        P##_w_insert_entry, P##_w_append_entry, P##_w_delete_num_entry,          \
        P##_w_check_entry, P##_w_get_references,                                 \
    };

DEFINE_OPS(iptc, ipt_entry, "iptables")
DEFINE_OPS(ip6tc, ip6t_entry, "ip6tables")

/* ---- the object ---- */

typedef union {
    struct ipt_entry e4;
    struct ip6t_entry e6;
    uint64_t align;
    unsigned char b[ENTRY_MAX];
} entry_buf;

struct request {
    int op;
    const smban_addr *addrs;
    size_t n;
    uint8_t *res;              /* per address: changed; OR-ed over attempts */
    int rc;
    char *err;                 /* the caller's err[] */
    int done;
    struct request *next;
};

struct smban_iptc {
    int family;
    const table_ops *ops;
    char chain[SMBAN_CHAIN_MAX + 1];
    char parent[XT_TABLE_MAXNAMELEN];
    char *lockfile;            /* owned */
    double lock_wait;
    int min_prefix, retries;
    int race;                  /* test hook: commits still to be raced */
    uint16_t proto;            /* of the jump rule; 0: all */
    int block;                 /* enum smban_block */
    entry_buf jump, ret, ban;  /* prebuilt rules; ban's source is patched */
    size_t jump_len, ret_len, ban_len;
    pthread_mutex_t mu;        /* the queue below */
    pthread_cond_t cv;
    struct request *head, *tail;
    int committing;
    smban_iptc_stats stats;    /* updated with __atomic builtins */
};

/* libiptc is not thread-safe; neither is the process-wide flock on one
 * lock file from several descriptors of one process. */
static pthread_mutex_t iptc_mu = PTHREAD_MUTEX_INITIALIZER;

/* Counters are bumped by leaders and read by anyone: relaxed atomics. */
static void stat_add(uint64_t *v, uint64_t n)
{
    __atomic_fetch_add(v, n, __ATOMIC_RELAXED);
}

/* ---- addresses ---- */

/* Printable copy of untrusted text for an error message. */
static void quote(const char *s, char out[72])
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

/* The netmask of a prefix length, in network byte order (16 bytes; IPv4
 * uses the first 4). */
static void prefix_mask(int family, int prefix, uint8_t mask[16])
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
    char buf[72], q[72];
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
    quote(text, q);
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
        prefix_mask(family, prefix, mask);
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

/* The prefix length of a (contiguous) netmask. */
static int popcount_prefix(const uint8_t *m, int bytes)
{
    int n = 0;
    for (int i = 0; i < bytes; i++)
        n += __builtin_popcount(m[i]);
    return n;
}

/* The source of a rule, when it has one (a ban). */
static int rule_src(const smban_iptc *c, const void *e, smban_addr *a)
{
    memset(a, 0, sizeof *a);
    a->family = (uint8_t)c->family;
    if (c->family == 4) {
        const struct ipt_entry *r = e;
        if (!r->ip.smsk.s_addr)
            return 0;
        memcpy(a->addr, &r->ip.src, 4);
        a->prefix = (uint8_t)popcount_prefix((const uint8_t *)&r->ip.smsk, 4);
    } else {
        const struct ip6t_entry *r = e;
        static const uint8_t zero[16];
        if (!memcmp(&r->ipv6.smsk, zero, 16))
            return 0;
        memcpy(a->addr, &r->ipv6.src, 16);
        a->prefix = (uint8_t)popcount_prefix((const uint8_t *)&r->ipv6.smsk, 16);
    }
    return 1;
}

/* A rule with no address, protocol, interface or match: our RETURN. */
static int rule_is_plain(const smban_iptc *c, const void *e)
{
    if (c->family == 4) {
        const struct ipt_entry *r = e;
        return !r->ip.smsk.s_addr && !r->ip.dmsk.s_addr && !r->ip.proto
            && !r->ip.iniface[0] && !r->ip.outiface[0] && !r->ip.invflags
            && r->target_offset == c->ops->entry_size;
    } else {
        const struct ip6t_entry *r = e;
        static const uint8_t zero[16];
        return !memcmp(&r->ipv6.smsk, zero, 16) && !memcmp(&r->ipv6.dmsk, zero, 16)
            && !(r->ipv6.flags & IP6T_F_PROTO) && !r->ipv6.iniface[0]
            && !r->ipv6.outiface[0] && !r->ipv6.invflags
            && r->target_offset == c->ops->entry_size;
    }
}

/* ---- building rules ---- */

/* Lay out an entry: header, optional multiport match, then a target of
 * tsize data bytes named tname.  Returns the entry size; *tdata gets the
 * target's data area. */
static size_t build(const smban_iptc *c, entry_buf *b, uint16_t proto,
                    const struct xt_multiport_v1 *mp, const char *tname,
                    size_t tsize, void **tdata)
{
    size_t off = c->ops->entry_size, toff;
    struct xt_entry_target *t;

    memset(b, 0, sizeof *b);
    if (mp) {
        struct xt_entry_match *m = (struct xt_entry_match *)(b->b + off);
        size_t msize = XT_ALIGN(sizeof *m) + XT_ALIGN(sizeof *mp);
        m->u.match_size = (uint16_t)msize;
        strcpy(m->u.user.name, "multiport");
        m->u.user.revision = 1;
        memcpy(m->data, mp, sizeof *mp);
        off += msize;
    }
    toff = off;
    t = (struct xt_entry_target *)(b->b + off);
    t->u.target_size = (uint16_t)(XT_ALIGN(sizeof *t) + XT_ALIGN(tsize));
    snprintf(t->u.user.name, sizeof t->u.user.name, "%s", tname);
    off += t->u.target_size;
    *tdata = t->data;
    if (c->family == 4) {
        b->e4.ip.proto = proto;
        b->e4.target_offset = (uint16_t)toff;
        b->e4.next_offset = (uint16_t)off;
    } else {
        b->e6.ipv6.proto = proto;
        if (proto)
            b->e6.ipv6.flags |= IP6T_F_PROTO;
        b->e6.target_offset = (uint16_t)toff;
        b->e6.next_offset = (uint16_t)off;
    }
    return off;
}

/* Point the prebuilt ban rule b at address a. */
static void set_src(const smban_iptc *c, entry_buf *b, const smban_addr *a)
{
    uint8_t mask[16];
    prefix_mask(c->family, a->prefix, mask);
    if (c->family == 4) {
        memcpy(&b->e4.ip.src, a->addr, 4);
        memcpy(&b->e4.ip.smsk, mask, 4);
    } else {
        memcpy(&b->e6.ipv6.src, a->addr, 16);
        memcpy(&b->e6.ipv6.smsk, mask, 16);
    }
}

/* ---- options ---- */

/* A chain name iptables would accept and that cannot be read as an
 * option: 1..max of [A-Za-z0-9_.+-], not starting with '-' or '!'. */
static int valid_name(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > max || s[0] == '-' || s[0] == '!')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.+-", s[i]))
            return 0;
    return 1;
}

static const struct { const char *name; uint16_t num; } protocols[] = {
    {"tcp", IPPROTO_TCP}, {"udp", IPPROTO_UDP}, {"sctp", IPPROTO_SCTP},
    {"dccp", IPPROTO_DCCP}, {"udplite", IPPROTO_UDPLITE}, {"all", 0},
};

/* One port of a list: a number or a service name of /etc/services for
 * proto (getservbyname_r: thread-safe, no DNS).  Surrounding blanks are
 * ignored. */
static int parse_port(const char *s, size_t n, const char *proto, uint16_t *out,
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
            char q[72];
            quote(name, q);
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

/* "smtp,465,1000:2000" into a multiport v1 match (at most 15 slots, a
 * range taking two). */
static int parse_ports(const char *ports, const char *proto,
                       struct xt_multiport_v1 *mp, char err[SMBAN_ERR_LEN])
{
    const char *p = ports;
    memset(mp, 0, sizeof *mp);
    mp->flags = XT_MULTIPORT_DESTINATION;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        uint16_t lo, hi;
        int rc;
        if ((rc = parse_port(p, colon ? (size_t)(colon - p) : n, proto, &lo, err)) < 0)
            return rc;
        if (colon) {
            if ((rc = parse_port(colon + 1, n - (size_t)(colon - p) - 1, proto, &hi, err)) < 0)
                return rc;
            if (hi < lo) {
                snprintf(err, SMBAN_ERR_LEN, "port range %u:%u is reversed", lo, hi);
                return SMBAN_EINVAL;
            }
        }
        if (mp->count + (colon ? 2 : 1) > XT_MULTI_PORTS) {
            snprintf(err, SMBAN_ERR_LEN,
                     "too many ports: at most %d (a range counts twice)", XT_MULTI_PORTS);
            return SMBAN_EINVAL;
        }
        if (colon) {
            mp->pflags[mp->count] = 1;
            mp->ports[mp->count++] = lo;
            mp->ports[mp->count++] = hi;
        } else {
            mp->ports[mp->count++] = lo;
        }
        p = end ? end + 1 : p + n;
        if (end && !*p) {
            snprintf(err, SMBAN_ERR_LEN, "empty port at the end of the port list");
            return SMBAN_EINVAL;
        }
    }
    if (!mp->count) {
        snprintf(err, SMBAN_ERR_LEN, "empty port list (use \"all\" for every port)");
        return SMBAN_EINVAL;
    }
    return 0;
}

/* "REJECT", "DROP", "REJECT --reject-with X". */
static int parse_blocktype(const char *s, int *block, char err[SMBAN_ERR_LEN])
{
    char w[3][48];
    int n = 0;
    const char *p = s ? s : "";
    while (*p && n < 3) {
        size_t k;
        while (isspace((unsigned char)*p))
            p++;
        k = strcspn(p, " \t");
        if (!k)
            break;
        if (k >= sizeof w[0])
            goto bad;
        memcpy(w[n], p, k);
        w[n++][k] = 0;
        p += k;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p)
        goto bad;
    if (n == 1 && !strcasecmp(w[0], "DROP")) {
        *block = SMBAN_BLOCK_DROP;
        return 0;
    }
    if (n == 1 && !strcasecmp(w[0], "REJECT")) {
        *block = SMBAN_BLOCK_REJECT;
        return 0;
    }
    if (n == 3 && !strcasecmp(w[0], "REJECT") && !strcmp(w[1], "--reject-with")) {
        if (!strcmp(w[2], "icmp-port-unreachable") || !strcmp(w[2], "icmp6-port-unreachable")
            || !strcmp(w[2], "port-unreach")) {
            *block = SMBAN_BLOCK_REJECT;
            return 0;
        }
        if (!strcmp(w[2], "tcp-reset") || !strcmp(w[2], "tcp-rst")) {
            *block = SMBAN_BLOCK_TCP_RESET;
            return 0;
        }
    }
bad:;
    char q[72];
    quote(s ? s : "", q);
    snprintf(err, SMBAN_ERR_LEN,
             "blocktype '%s' not supported: use REJECT, DROP, "
             "'REJECT --reject-with icmp-port-unreachable' or "
             "'REJECT --reject-with tcp-reset'", q);
    return SMBAN_EINVAL;
}

void smban_iptc_options_default(smban_iptc_options *o)
{
    memset(o, 0, sizeof *o);
    o->family = 4;
    o->parent = "INPUT";
    o->protocol = "tcp";
    o->ports = "all";
    o->blocktype = "REJECT";
    o->lock_wait = 10.0;
    o->retries = 8;
}

int smban_iptc_new(const smban_iptc_options *o, smban_iptc **out,
                   char err[SMBAN_ERR_LEN])
{
    static const char *const reserved[] = {"ACCEPT", "DROP", "QUEUE", "RETURN", "REJECT",
                                           "INPUT", "OUTPUT", "FORWARD", "PREROUTING",
                                           "POSTROUTING", NULL};
    const char *parent = o->parent ? o->parent : "INPUT";
    const char *lockfile = o->lockfile;
    struct xt_multiport_v1 mp;
    int all_ports, rc;
    size_t i;
    void *td;
    smban_iptc *c;

    *out = NULL;
    if (o->family != 4 && o->family != 6) {
        snprintf(err, SMBAN_ERR_LEN, "family must be 4 or 6, not %d", o->family);
        return SMBAN_EINVAL;
    }
    if (!valid_name(o->chain, SMBAN_CHAIN_MAX)) {
        char q[72];
        quote(o->chain ? o->chain : "", q);
        snprintf(err, SMBAN_ERR_LEN,
                 "chain name '%s' invalid: 1 to %d letters, digits, '_', '.', '+' or '-', "
                 "not starting with '-'", q, SMBAN_CHAIN_MAX);
        return SMBAN_EINVAL;
    }
    for (i = 0; reserved[i]; i++) {
        if (!strcmp(o->chain, reserved[i])) {
            snprintf(err, SMBAN_ERR_LEN, "chain name '%s' is reserved", o->chain);
            return SMBAN_EINVAL;
        }
    }
    if (!valid_name(parent, XT_TABLE_MAXNAMELEN - 1) || !strcmp(parent, o->chain)) {
        char q[72];
        quote(parent, q);
        snprintf(err, SMBAN_ERR_LEN, "parent chain '%s' invalid", q);
        return SMBAN_EINVAL;
    }
    for (i = 0; i < sizeof protocols / sizeof *protocols; i++)
        if (o->protocol && !strcmp(o->protocol, protocols[i].name))
            break;
    if (i == sizeof protocols / sizeof *protocols) {
        char q[72];
        quote(o->protocol ? o->protocol : "", q);
        snprintf(err, SMBAN_ERR_LEN,
                 "protocol '%s' not supported: tcp, udp, sctp, dccp, udplite or all", q);
        return SMBAN_EINVAL;
    }
    all_ports = o->ports && !strcmp(o->ports, "all");
    if (!all_ports) {
        if (!protocols[i].num) {
            snprintf(err, SMBAN_ERR_LEN, "protocol 'all' needs port 'all'");
            return SMBAN_EINVAL;
        }
        if ((rc = parse_ports(o->ports ? o->ports : "", o->protocol, &mp, err)) < 0)
            return rc;
    }
    if (o->min_prefix < 0 || o->min_prefix > (o->family == 4 ? 32 : 128)) {
        snprintf(err, SMBAN_ERR_LEN, "min_prefix %d out of range", o->min_prefix);
        return SMBAN_EINVAL;
    }
    if (!(o->lock_wait >= 0 && o->lock_wait <= 86400) || o->retries < 0) {
        snprintf(err, SMBAN_ERR_LEN, "lock_wait must be 0..86400 s and retries >= 0");
        return SMBAN_EINVAL;
    }
    if (!(c = calloc(1, sizeof *c))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    if ((rc = parse_blocktype(o->blocktype, &c->block, err)) < 0) {
        free(c);
        return rc;
    }
    if (c->block == SMBAN_BLOCK_TCP_RESET && protocols[i].num != IPPROTO_TCP) {
        snprintf(err, SMBAN_ERR_LEN, "blocktype tcp-reset needs protocol tcp");
        free(c);
        return SMBAN_EINVAL;
    }
    if (!lockfile || !*lockfile)
        lockfile = getenv("XTABLES_LOCKFILE");
    if (!lockfile || !*lockfile)
        lockfile = DEFAULT_LOCKFILE;
    if (!(c->lockfile = strdup(lockfile))) {
        free(c);
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    c->family = o->family;
    c->ops = o->family == 4 ? &iptc_table : &ip6tc_table;
    snprintf(c->chain, sizeof c->chain, "%s", o->chain);
    snprintf(c->parent, sizeof c->parent, "%s", parent);
    c->lock_wait = o->lock_wait;
    c->min_prefix = o->min_prefix;
    c->retries = o->retries;
    c->proto = protocols[i].num;

    /* -A PARENT -p PROTO [-m multiport --dports P] -j CHAIN */
    c->jump_len = build(c, &c->jump, c->proto, all_ports ? NULL : &mp, c->chain,
                        sizeof(int), &td);
    /* -A CHAIN -j RETURN */
    c->ret_len = build(c, &c->ret, 0, NULL, "RETURN", sizeof(int), &td);
    /* -I CHAIN -s ADDR [-p tcp] -j DROP|REJECT [--reject-with X] */
    if (c->block == SMBAN_BLOCK_DROP) {
        c->ban_len = build(c, &c->ban, 0, NULL, "DROP", sizeof(int), &td);
    } else if (c->family == 4) {
        struct ipt_reject_info ri = {c->block == SMBAN_BLOCK_TCP_RESET
                                     ? IPT_TCP_RESET : IPT_ICMP_PORT_UNREACHABLE};
        c->ban_len = build(c, &c->ban, c->block == SMBAN_BLOCK_TCP_RESET ? IPPROTO_TCP : 0,
                           NULL, "REJECT", sizeof ri, &td);
        memcpy(td, &ri, sizeof ri);
    } else {
        struct ip6t_reject_info ri = {c->block == SMBAN_BLOCK_TCP_RESET
                                      ? IP6T_TCP_RESET : IP6T_ICMP6_PORT_UNREACH};
        c->ban_len = build(c, &c->ban, c->block == SMBAN_BLOCK_TCP_RESET ? IPPROTO_TCP : 0,
                           NULL, "REJECT", sizeof ri, &td);
        memcpy(td, &ri, sizeof ri);
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->lockfile);
        free(c);
        snprintf(err, SMBAN_ERR_LEN, "pthread_mutex_init failed");
        return SMBAN_ESYS;
    }
    if (pthread_cond_init(&c->cv, NULL) != 0) {
        pthread_mutex_destroy(&c->mu);
        free(c->lockfile);
        free(c);
        snprintf(err, SMBAN_ERR_LEN, "pthread_cond_init failed");
        return SMBAN_ESYS;
    }
    *out = c;
    return 0;
}

void smban_iptc_free(smban_iptc *c)
{
    if (!c)
        return;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->lockfile);
    free(c);
}

const char *smban_iptc_chain(const smban_iptc *c) { return c->chain; }
const char *smban_iptc_lockfile(const smban_iptc *c) { return c->lockfile; }
int smban_iptc_family(const smban_iptc *c) { return c->family; }
int smban_iptc_min_prefix(const smban_iptc *c) { return c->min_prefix; }

void smban_iptc_race_next(smban_iptc *c, int n)
{
    __atomic_store_n(&c->race, n > 0 ? n : 0, __ATOMIC_RELAXED);
}

void smban_iptc_get_stats(smban_iptc *c, smban_iptc_stats *st)
{
    st->transactions = __atomic_load_n(&c->stats.transactions, __ATOMIC_RELAXED);
    st->commits = __atomic_load_n(&c->stats.commits, __ATOMIC_RELAXED);
    st->retries = __atomic_load_n(&c->stats.retries, __ATOMIC_RELAXED);
    st->requests = __atomic_load_n(&c->stats.requests, __ATOMIC_RELAXED);
    st->grouped = __atomic_load_n(&c->stats.grouped, __ATOMIC_RELAXED);
}

/* ---- transactions ---- */

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Take the xtables lock, waiting at most lock_wait seconds.  Returns the
 * descriptor holding it (the caller closes it to unlock) or a negative
 * code.  iptables -w takes the same flock, so we and the binaries never
 * commit over each other. */
static int lock_take(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    char eb[128];
    int fd = open(c->lockfile, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    double deadline;
    long wait = 100;

    if (fd < 0) {
        snprintf(err, SMBAN_ERR_LEN, "cannot open the xtables lock %s: %s", c->lockfile,
                 strerror_r(errno, eb, sizeof eb));
        return SMBAN_ESYS;
    }
    deadline = now_mono() + c->lock_wait;
    for (;;) {
        double left;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(err, SMBAN_ERR_LEN, "cannot lock %s: %s", c->lockfile,
                     strerror_r(errno, eb, sizeof eb));
            close(fd);
            return SMBAN_ESYS;
        }
        left = deadline - now_mono();
        if (left <= 0) {
            close(fd);
            snprintf(err, SMBAN_ERR_LEN,
                     "%s: another process held the xtables lock %s for more than "
                     "%.1f s; nothing was changed", c->chain, c->lockfile, c->lock_wait);
            return SMBAN_ELOCK;
        }
        sleep_us(wait < left * 1e6 ? wait : (long)(left * 1e6) + 1);
        if (wait < 20000)
            wait *= 2;
    }
}

/* Message for a failed libiptc call: call it right after the failure,
 * before any other libiptc call (iptc_strerror reads a global). */
static int iptc_fail(smban_iptc *c, const char *what, int e, char err[SMBAN_ERR_LEN])
{
    snprintf(err, SMBAN_ERR_LEN, "%s %s: %s: %s", c->ops->tool, c->chain, what,
             c->ops->strerror(e));
    return SMBAN_EIPTC;
}

/* The test hook behind smban_iptc_race_next: commit a change of the rule
 * count from a second handle, between our snapshot and our commit, as a
 * writer that ignores the xtables lock would.  The change toggles a chain
 * of the hook's own (created when absent, deleted when present), so two
 * races leave the table as it was.  Nothing is reported: a failed race
 * shows as a missing retry. */
static void race_commit(smban_iptc *c)
{
    static const char name[] = "smban-race";
    xh *h;
    int ok;
    if (__atomic_load_n(&c->race, __ATOMIC_RELAXED) <= 0)
        return;
    __atomic_sub_fetch(&c->race, 1, __ATOMIC_RELAXED);
    if (!(h = c->ops->init("filter")))
        return;
    ok = c->ops->is_chain(name, h) ? c->ops->delete_chain(name, h)
                                   : c->ops->create_chain(name, h);
    if (ok)
        c->ops->commit(h);
    c->ops->free(h);
}

/* Modify the table: return <0 on error (err set), 0 when there is nothing
 * to commit, 1 to commit.  Called again from scratch on EAGAIN. */
typedef int (*modify_fn)(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN]);

static int transaction(smban_iptc *c, modify_fn fn, void *ctx, char err[SMBAN_ERR_LEN])
{
    int rc;
    pthread_mutex_lock(&iptc_mu);
    for (int attempt = 0;; attempt++) {
        int fd = lock_take(c, err);
        xh *h;
        if (fd < 0) {
            rc = fd;
            break;
        }
        stat_add(&c->stats.transactions, 1);
        if (!(h = c->ops->init("filter"))) {
            rc = iptc_fail(c, "cannot read the filter table", errno, err);
            close(fd);
            break;
        }
        rc = fn(c, h, ctx, err);
        if (rc > 0) {
            race_commit(c);
            if (!c->ops->commit(h)) {
                int e = errno;
                rc = iptc_fail(c, "commit failed", e, err);
                c->ops->free(h);
                close(fd);
                /* EAGAIN: the table changed since our snapshot (a writer
                 * that ignores the lock); nothing was replaced.  EINVAL:
                 * also what the kernel answers when the table changed
                 * between libiptc's replace and its counter update, i.e.
                 * after our rules landed.  Both: redo the transaction on a
                 * fresh snapshot; the modifications are idempotent, so a
                 * landed commit is found done.  A rule the kernel really
                 * rejects fails every attempt and is reported. */
                if ((e == EAGAIN || e == EINVAL) && attempt < c->retries) {
                    stat_add(&c->stats.retries, 1);
                    sleep_us(1000L << (attempt < 6 ? attempt : 6));
                    continue;
                }
                break;
            }
            stat_add(&c->stats.commits, 1);
            rc = 0;
        }
        c->ops->free(h);
        close(fd);
        break;
    }
    pthread_mutex_unlock(&iptc_mu);
    return rc;
}

/* Positions (0-based) of the rules of chain in parent whose target is name,
 * deleted from the last.  Returns the number deleted or a negative code. */
static int delete_jumps(smban_iptc *c, xh *h, char err[SMBAN_ERR_LEN])
{
    unsigned pos[64];
    int n = 0, total = 0;
    /* Restart after each round: a parent with more than 64 stale jumps is
     * not expected, but must not overflow. */
    do {
        unsigned i = 0;
        n = 0;
        for (const void *e = c->ops->first_rule(c->parent, h); e && n < 64;
             e = c->ops->next_rule(e, h), i++) {
            const char *t = c->ops->get_target(e, h);
            if (t && !strcmp(t, c->chain))
                pos[n++] = i;
        }
        for (int k = n - 1; k >= 0; k--) {
            if (!c->ops->delete_num_entry(c->parent, pos[k], h))
                return iptc_fail(c, "cannot delete a stale jump rule", errno, err);
        }
        total += n;
    } while (n == 64);
    return total;
}

/* Walk our chain: whether it exists and whether its last rule is the
 * plain RETURN. */
static void chain_tail(smban_iptc *c, xh *h, int *exists, int *has_return, size_t *bans)
{
    const void *last = NULL;
    smban_addr a;
    *exists = c->ops->is_chain(c->chain, h);
    *has_return = 0;
    if (bans)
        *bans = 0;
    if (!*exists)
        return;
    for (const void *e = c->ops->first_rule(c->chain, h); e; e = c->ops->next_rule(e, h)) {
        last = e;
        if (bans && rule_src(c, e, &a))
            (*bans)++;
    }
    if (last && rule_is_plain(c, last)) {
        const char *t = c->ops->get_target(last, h);
        *has_return = t && !strcmp(t, "RETURN");
    }
}

/* Make the layout whole inside handle h.  The SMBAN_LAYOUT_* bits of what
 * was missing are OR-ed into *rep. */
static int ensure_layout(smban_iptc *c, xh *h, int exists, int has_return, unsigned *rep,
                         char err[SMBAN_ERR_LEN])
{
    unsigned char mask[ENTRY_MAX];
    int rc;
    if (!c->ops->is_chain(c->parent, h)) {
        snprintf(err, SMBAN_ERR_LEN, "%s %s: parent chain %s does not exist", c->ops->tool,
                 c->chain, c->parent);
        return SMBAN_EIPTC;
    }
    if (!exists) {
        if (!c->ops->create_chain(c->chain, h))
            return iptc_fail(c, "cannot create the chain", errno, err);
        *rep |= SMBAN_LAYOUT_CHAIN;
        has_return = 0;
    }
    if (!has_return) {
        if (!c->ops->append_entry(c->chain, &c->ret, h))
            return iptc_fail(c, "cannot append RETURN", errno, err);
        *rep |= SMBAN_LAYOUT_RETURN;
    }
    memset(mask, 0xff, sizeof mask);
    if (!c->ops->check_entry(c->parent, &c->jump, mask, h)) {
        /* a jump with other ports or protocol is ours and outdated */
        if ((rc = delete_jumps(c, h, err)) < 0)
            return rc;
        if (!c->ops->insert_entry(c->parent, &c->jump, 0, h))
            return iptc_fail(c, "cannot insert the jump rule", errno, err);
        *rep |= SMBAN_LAYOUT_JUMP;
    }
    return 0;
}

/* ---- apply: bans and unbans, batched ---- */

typedef struct {
    struct request *batch;
} apply_ctx;

/* FNV-1a over prefix and address: keys of one batch, not attacker-sized
 * tables (a batch is what the caller asked for). */
static uint32_t addr_hash(const smban_addr *a)
{
    uint32_t h = 2166136261u;
    h = (h ^ a->prefix) * 16777619u;
    for (int i = 0; i < 16; i++)
        h = (h ^ a->addr[i]) * 16777619u;
    return h;
}

static int addr_eq(const smban_addr *a, const smban_addr *b)
{
    return a->prefix == b->prefix && !memcmp(a->addr, b->addr, 16);
}

/* The distinct addresses of one batch, with their state before (init) and
 * after (cur) the batch's operations are applied in order. */
typedef struct {
    size_t nkeys, cap;         /* cap: power of two */
    const smban_addr **key;    /* borrowed from the requests */
    uint8_t *init, *cur;
    uint32_t *slot;            /* key index + 1; 0 empty */
} keyset;

static void keyset_free(keyset *k)
{
    free(k->key);
    free(k->init);
    free(k->cur);
    free(k->slot);
}

static int keyset_init(keyset *k, size_t total)
{
    memset(k, 0, sizeof *k);
    k->cap = 16;
    while (k->cap < 2 * total)
        k->cap *= 2;
    k->key = malloc((total ? total : 1) * sizeof *k->key);
    k->init = calloc(total ? total : 1, 1);
    k->cur = calloc(total ? total : 1, 1);
    k->slot = calloc(k->cap, sizeof *k->slot);
    if (!k->key || !k->init || !k->cur || !k->slot) {
        keyset_free(k);
        return SMBAN_ENOMEM;
    }
    return 0;
}

/* Index of a, inserting it when add; -1 when absent. */
static long keyset_find(keyset *k, const smban_addr *a, int add)
{
    size_t m = k->cap - 1, i = addr_hash(a) & m;
    for (;; i = (i + 1) & m) {
        uint32_t s = k->slot[i];
        if (!s) {
            if (!add)
                return -1;
            k->key[k->nkeys] = a;
            k->slot[i] = (uint32_t)++k->nkeys;
            return (long)k->nkeys - 1;
        }
        if (addr_eq(k->key[s - 1], a))
            return (long)s - 1;
    }
}

/* The batch's modification: one pass over the chain finds which of the
 * batch's addresses are banned and where; the operations are then applied
 * in arrival order to that state; finally the rules of addresses that end
 * up unbanned are deleted (from the bottom, so positions stay valid), the
 * layout is repaired when the batch bans, and new bans are inserted at the
 * head.  Cost: O(rules + addresses) plus libiptc's deletes. */
static int apply_modify(smban_iptc *c, xh *h, void *vctx, char err[SMBAN_ERR_LEN])
{
    apply_ctx *ctx = vctx;
    size_t total = 0, npos = 0, cappos = 0;
    struct { unsigned pos; size_t key; } *pos = NULL;
    int exists, has_return = 0, has_ban = 0, changes = 0, rc = 0;
    const void *last = NULL;
    unsigned rep = 0;
    keyset ks;
    struct request *r;

    for (r = ctx->batch; r; r = r->next) {
        total += r->n;
        has_ban |= r->op == SMBAN_OP_BAN;
    }
    if (keyset_init(&ks, total) < 0) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    for (r = ctx->batch; r; r = r->next)
        for (size_t i = 0; i < r->n; i++)
            keyset_find(&ks, &r->addrs[i], 1);

    /* one pass over the chain: which keys are banned, and where */
    exists = c->ops->is_chain(c->chain, h);
    if (exists) {
        unsigned i = 0;
        smban_addr a;
        for (const void *e = c->ops->first_rule(c->chain, h); e;
             e = c->ops->next_rule(e, h), i++) {
            long k;
            last = e;
            if (!rule_src(c, e, &a) || (k = keyset_find(&ks, &a, 0)) < 0)
                continue;
            ks.init[k] = 1;
            if (npos == cappos) {
                size_t nc = cappos ? 2 * cappos : 16;
                void *p = realloc(pos, nc * sizeof *pos);
                if (!p) {
                    snprintf(err, SMBAN_ERR_LEN, "out of memory");
                    rc = SMBAN_ENOMEM;
                    goto done;
                }
                pos = p;
                cappos = nc;
            }
            pos[npos].pos = i;
            pos[npos++].key = (size_t)k;
        }
        if (last && rule_is_plain(c, last)) {
            const char *t = c->ops->get_target(last, h);
            has_return = t && !strcmp(t, "RETURN");
        }
    }
    memcpy(ks.cur, ks.init, ks.nkeys);

    /* the requests in arrival order, each address in order */
    for (r = ctx->batch; r; r = r->next) {
        for (size_t i = 0; i < r->n; i++) {
            long k = keyset_find(&ks, &r->addrs[i], 0);
            int changed;
            if (r->op == SMBAN_OP_BAN) {
                changed = !ks.cur[k];
                ks.cur[k] = 1;
            } else {
                changed = ks.cur[k];
                ks.cur[k] = 0;
            }
            r->res[i] |= (uint8_t)changed;
        }
    }

    /* unbans: from the bottom, so earlier positions stay valid */
    for (size_t j = npos; j-- > 0;) {
        if (ks.cur[pos[j].key])
            continue;
        if (!c->ops->delete_num_entry(c->chain, pos[j].pos, h)) {
            rc = iptc_fail(c, "cannot delete a ban", errno, err);
            goto done;
        }
        changes++;
    }
    if (has_ban) {
        if ((rc = ensure_layout(c, h, exists, has_return, &rep, err)) < 0)
            goto done;
        changes += rep != 0;
    }
    /* bans: each at the head of the chain */
    for (size_t k = 0; k < ks.nkeys; k++) {
        if (!ks.cur[k] || ks.init[k])
            continue;
        set_src(c, &c->ban, ks.key[k]);
        if (!c->ops->insert_entry(c->chain, &c->ban, 0, h)) {
            rc = iptc_fail(c, "cannot insert a ban", errno, err);
            goto done;
        }
        changes++;
    }
    rc = changes > 0;
done:
    free(pos);
    keyset_free(&ks);
    return rc;
}

/* Run one batch of requests as one transaction and record the outcome in
 * each request.  Called by the leader without c->mu held. */
static void run_batch(smban_iptc *c, struct request *batch)
{
    char err[SMBAN_ERR_LEN] = "";
    apply_ctx ctx = {batch};
    size_t n = 0;
    int rc = transaction(c, apply_modify, &ctx, err);
    for (struct request *r = batch; r; r = r->next) {
        n++;
        if (rc < 0) {
            r->rc = rc;
            memcpy(r->err, err, SMBAN_ERR_LEN);
            memset(r->res, 0, r->n);
        } else {
            r->rc = 0;
            for (size_t i = 0; i < r->n; i++)
                r->rc += r->res[i];
        }
    }
    stat_add(&c->stats.requests, n);
    if (n > 1)
        stat_add(&c->stats.grouped, n);
}

int smban_iptc_apply(smban_iptc *c, int op, const smban_addr *addrs, size_t n,
                     uint8_t *results, char err[SMBAN_ERR_LEN])
{
    uint8_t one = 0;
    struct request req = {op, addrs, n, results ? results : &one, 0, err, 0, NULL};

    if (op != SMBAN_OP_BAN && op != SMBAN_OP_UNBAN) {
        snprintf(err, SMBAN_ERR_LEN, "unknown operation %d", op);
        return SMBAN_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (addrs[i].family != c->family) {
            snprintf(err, SMBAN_ERR_LEN, "address %zu is not IPv%d", i, c->family);
            return SMBAN_EINVAL;
        }
    }
    if (!results && n > 1 && !(req.res = calloc(n, 1))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    memset(req.res, 0, n);
    pthread_mutex_lock(&c->mu);
    if (c->tail)
        c->tail->next = &req;
    else
        c->head = &req;
    c->tail = &req;
    while (!req.done) {
        if (!c->committing) {
            struct request *batch = c->head, *r, *next;
            c->head = c->tail = NULL;
            c->committing = 1;
            pthread_mutex_unlock(&c->mu);
            run_batch(c, batch);
            pthread_mutex_lock(&c->mu);
            for (r = batch; r; r = next) {
                next = r->next;
                r->done = 1;
            }
            c->committing = 0;
            pthread_cond_broadcast(&c->cv);
        } else {
            pthread_cond_wait(&c->cv, &c->mu);
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (req.res != results && req.res != &one)
        free(req.res);
    return req.rc;
}

/* ---- start, stop, flush, check, list ---- */

static int start_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    unsigned *rep = ctx, now = 0;
    int exists, has_return, rc;
    chain_tail(c, h, &exists, &has_return, NULL);
    if ((rc = ensure_layout(c, h, exists, has_return, &now, err)) < 0)
        return rc;
    *rep |= now;            /* sticky over attempts: see transaction() */
    return now != 0;
}

int smban_iptc_start(smban_iptc *c, unsigned *repaired, char err[SMBAN_ERR_LEN])
{
    unsigned rep = 0;
    int rc = transaction(c, start_modify, &rep, err);
    if (repaired)
        *repaired = rc < 0 ? 0 : rep;
    return rc;
}

static int stop_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    int *removed = ctx, rc, now = 0;
    if (c->ops->is_chain(c->parent, h)) {
        if ((rc = delete_jumps(c, h, err)) < 0)
            return rc;
        now += rc;
    }
    if (c->ops->is_chain(c->chain, h)) {
        if (!c->ops->flush_entries(c->chain, h))
            return iptc_fail(c, "cannot flush the chain", errno, err);
        if (!c->ops->delete_chain(c->chain, h)) {
            int e = errno;
            if (e == EMLINK || e == ENOTEMPTY || e == EBUSY) {
                snprintf(err, SMBAN_ERR_LEN,
                         "%s %s: cannot delete the chain: rules outside %s still jump "
                         "to it (%s)", c->ops->tool, c->chain, c->parent,
                         c->ops->strerror(e));
                return SMBAN_EIPTC;
            }
            return iptc_fail(c, "cannot delete the chain", e, err);
        }
        now++;
    }
    *removed += now;        /* sticky over attempts: see transaction() */
    return now > 0;
}

int smban_iptc_stop(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    int removed = 0;
    int rc = transaction(c, stop_modify, &removed, err);
    return rc < 0 ? rc : removed > 0;
}

static int unjump_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    int *removed = ctx, rc;
    if (!c->ops->is_chain(c->parent, h))
        return 0;
    if ((rc = delete_jumps(c, h, err)) < 0)
        return rc;
    *removed += rc;         /* sticky over attempts: see transaction() */
    return rc > 0;
}

int smban_iptc_unjump(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    int removed = 0;
    int rc = transaction(c, unjump_modify, &removed, err);
    return rc < 0 ? rc : removed;
}

static int flush_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    size_t *bans = ctx, now;
    int exists, has_return;
    chain_tail(c, h, &exists, &has_return, &now);
    if (now > *bans)
        *bans = now;        /* sticky over attempts: see transaction() */
    if (!exists || (!now && has_return))
        return 0;
    if (!c->ops->flush_entries(c->chain, h))
        return iptc_fail(c, "cannot flush the chain", errno, err);
    if (!c->ops->append_entry(c->chain, &c->ret, h))
        return iptc_fail(c, "cannot append RETURN", errno, err);
    return 1;
}

int smban_iptc_flush(smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    size_t bans = 0;
    int rc = transaction(c, flush_modify, &bans, err);
    if (rc < 0)
        return rc;
    return bans > INT_MAX ? INT_MAX : (int)bans;
}

static int check_modify(smban_iptc *c, xh *h, void *ctx, char err[SMBAN_ERR_LEN])
{
    smban_iptc_status *st = ctx;
    unsigned char mask[ENTRY_MAX];
    (void)err;
    memset(st, 0, sizeof *st);
    chain_tail(c, h, &st->chain, &st->ret, &st->bans);
    if (st->chain) {
        if (!c->ops->get_references(&st->references, c->chain, h))
            st->references = 0;
        memset(mask, 0xff, sizeof mask);
        st->jump = c->ops->is_chain(c->parent, h)
                   && c->ops->check_entry(c->parent, &c->jump, mask, h);
    }
    return 0;
}

int smban_iptc_check(smban_iptc *c, smban_iptc_status *st, char err[SMBAN_ERR_LEN])
{
    return transaction(c, check_modify, st, err);
}

typedef struct {
    smban_addr *v;
    size_t n, cap;
} list_ctx;

static int list_modify(smban_iptc *c, xh *h, void *vctx, char err[SMBAN_ERR_LEN])
{
    list_ctx *l = vctx;
    smban_addr a;
    l->n = 0;
    if (!c->ops->is_chain(c->chain, h))
        return 0;
    for (const void *e = c->ops->first_rule(c->chain, h); e; e = c->ops->next_rule(e, h)) {
        if (!rule_src(c, e, &a))
            continue;
        if (l->n == l->cap) {
            size_t nc = l->cap ? 2 * l->cap : 64;
            smban_addr *p = realloc(l->v, nc * sizeof *p);
            if (!p) {
                snprintf(err, SMBAN_ERR_LEN, "out of memory");
                return SMBAN_ENOMEM;
            }
            l->v = p;
            l->cap = nc;
        }
        l->v[l->n++] = a;
    }
    return 0;
}

int smban_iptc_list(smban_iptc *c, smban_addr **out, size_t *n, char err[SMBAN_ERR_LEN])
{
    list_ctx l = {NULL, 0, 0};
    int rc = transaction(c, list_modify, &l, err);
    if (rc < 0) {
        free(l.v);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}
