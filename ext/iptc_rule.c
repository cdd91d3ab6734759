/*
 * iptc_rule.c — what the iptables backend writes and reads back: the
 * options of a chain checked (names, protocol, ports, block type, limits),
 * the rules made from them (the parent's jump, the chain's RETURN, the
 * ban; in set mode the parent's one rule matching the set), and the
 * reading of a rule found in the table.
 *
 * No libiptc function is called here and no table is touched: rules are
 * laid out and read as the kernel's structures (ip_tables.h, ip6_tables.h).
 * Invariants: every rule smban writes is built here, once, when the chain
 * object is made, and fits ENTRY_MAX; a ban differs from the prebuilt ban
 * rule only in its source address and mask (smban_rule_set_src); a rule
 * read back is a ban exactly when it has a source mask.  Text from the
 * options reaches an error message only through smban_quote.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <linux/netfilter/xt_multiport.h>
#include <linux/netfilter/xt_set.h>
#include <linux/netfilter_ipv4/ipt_REJECT.h>
#include <linux/netfilter_ipv6/ip6t_REJECT.h>

#include "iptc_impl.h"

/* The size of a rule's header, where its first match or target starts. */
static size_t entry_size(int family)
{
    return family == 4 ? XT_ALIGN(sizeof(struct ipt_entry))
                       : XT_ALIGN(sizeof(struct ip6t_entry));
}

/* ---- reading rules ---- */

int smban_rule_src(const smban_iptc *c, const void *e, smban_addr *a)
{
    memset(a, 0, sizeof *a);
    a->family = (uint8_t)c->family;
    if (c->family == 4) {
        const struct ipt_entry *r = e;
        if (!r->ip.smsk.s_addr)
            return 0;
        memcpy(a->addr, &r->ip.src, 4);
        a->prefix = (uint8_t)smban_mask_prefix((const uint8_t *)&r->ip.smsk, 4);
    } else {
        const struct ip6t_entry *r = e;
        static const uint8_t zero[16];
        if (!memcmp(&r->ipv6.smsk, zero, 16))
            return 0;
        memcpy(a->addr, &r->ipv6.src, 16);
        a->prefix = (uint8_t)smban_mask_prefix((const uint8_t *)&r->ipv6.smsk, 16);
    }
    return 1;
}

int smban_rule_is_plain(const smban_iptc *c, const void *e)
{
    if (c->family == 4) {
        const struct ipt_entry *r = e;
        return !r->ip.smsk.s_addr && !r->ip.dmsk.s_addr && !r->ip.proto
            && !r->ip.iniface[0] && !r->ip.outiface[0] && !r->ip.invflags
            && r->target_offset == entry_size(c->family);
    } else {
        const struct ip6t_entry *r = e;
        static const uint8_t zero[16];
        return !memcmp(&r->ipv6.smsk, zero, 16) && !memcmp(&r->ipv6.dmsk, zero, 16)
            && !(r->ipv6.flags & IP6T_F_PROTO) && !r->ipv6.iniface[0]
            && !r->ipv6.outiface[0] && !r->ipv6.invflags
            && r->target_offset == entry_size(c->family);
    }
}

/* ---- building rules ---- */

/* The match named name of rule e (a kernel entry), or NULL. */
static const struct xt_entry_match *find_match(const smban_iptc *c, const void *e,
                                               const char *name)
{
    const unsigned char *b = e;
    size_t off = entry_size(c->family), end = c->family == 4
        ? ((const struct ipt_entry *)e)->target_offset
        : ((const struct ip6t_entry *)e)->target_offset;
    while (off + sizeof(struct xt_entry_match) <= end) {
        const struct xt_entry_match *m = (const struct xt_entry_match *)(b + off);
        if (m->u.match_size < sizeof *m)
            break;
        if (!strncmp(m->u.user.name, name, sizeof m->u.user.name))
            return m;
        off += m->u.match_size;
    }
    return NULL;
}

int smban_rule_set_of(const smban_iptc *c, const void *e, uint16_t *index)
{
    const struct xt_entry_match *m = find_match(c, e, "set");
    struct xt_set_info si;
    /* every revision of the set match starts with the set's info */
    if (!m || m->u.match_size < XT_ALIGN(sizeof *m) + sizeof si)
        return 0;
    memcpy(&si, m->data, sizeof si);
    *index = si.index;
    return 1;
}

void smban_rule_set_index(const smban_iptc *c, entry_buf *b, uint16_t index)
{
    struct xt_entry_match *m = (struct xt_entry_match *)find_match(c, b->b, "set");
    struct xt_set_info si;
    if (!m)
        return;
    memcpy(&si, m->data, sizeof si);
    si.index = index;
    memcpy(m->data, &si, sizeof si);
}

/* Append a match of data size dsize named name at *off of b. */
static void *add_match(entry_buf *b, size_t *off, const char *name, uint8_t revision,
                       const void *data, size_t dsize)
{
    struct xt_entry_match *m = (struct xt_entry_match *)(b->b + *off);
    size_t msize = XT_ALIGN(sizeof *m) + XT_ALIGN(dsize);
    m->u.match_size = (uint16_t)msize;
    snprintf(m->u.user.name, sizeof m->u.user.name, "%s", name);
    m->u.user.revision = revision;
    memcpy(m->data, data, dsize);
    *off += msize;
    return m->data;
}

/* Lay out an entry: header, optional multiport match, optional set match
 * (set mode: the source in our set, the index patched later), then a
 * target of tsize data bytes named tname.  *tdata gets the target's data
 * area. */
static void build(const smban_iptc *c, entry_buf *b, uint16_t proto,
                  const struct xt_multiport_v1 *mp, int set, const char *tname,
                  size_t tsize, void **tdata)
{
    size_t off = entry_size(c->family), toff;
    struct xt_entry_target *t;

    memset(b, 0, sizeof *b);
    if (mp)
        add_match(b, &off, "multiport", 1, mp, sizeof *mp);
    if (set) {
        /* revision 4, the one iptables (-S) reads back on current kernels:
         * no counter conditions, no flags */
        struct xt_set_info_match_v4 si;
        memset(&si, 0, sizeof si);
        si.match_set.index = IPSET_INVALID_ID;
        si.match_set.dim = 1;
        si.match_set.flags = IPSET_DIM_ONE_SRC;
        add_match(b, &off, "set", 4, &si, sizeof si);
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
}

void smban_rule_set_src(const smban_iptc *c, entry_buf *b, const smban_addr *a)
{
    uint8_t mask[16];
    smban_prefix_mask(c->family, a->prefix, mask);
    if (c->family == 4) {
        memcpy(&b->e4.ip.src, a->addr, 4);
        memcpy(&b->e4.ip.smsk, mask, 4);
    } else {
        memcpy(&b->e6.ipv6.src, a->addr, 16);
        memcpy(&b->e6.ipv6.smsk, mask, 16);
    }
}

/* ---- parsing options ---- */

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
        if ((rc = smban_port_parse(p, colon ? (size_t)(colon - p) : n, proto, &lo, err)) < 0)
            return rc;
        if (colon) {
            if ((rc = smban_port_parse(colon + 1, n - (size_t)(colon - p) - 1, proto, &hi, err)) < 0)
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
    char q[SMBAN_QUOTE_LEN];
    smban_quote(s ? s : "", q);
    snprintf(err, SMBAN_ERR_LEN,
             "blocktype '%s' not supported: use REJECT, DROP, "
             "'REJECT --reject-with icmp-port-unreachable' or "
             "'REJECT --reject-with tcp-reset'", q);
    return SMBAN_EINVAL;
}

/* ---- the options, step by step ---- */

/* Family, our chain's name, the parent's name. */
static int check_names(const smban_iptc_options *o, smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    static const char *const reserved[] = {"ACCEPT", "DROP", "QUEUE", "RETURN", "REJECT",
                                           "INPUT", "OUTPUT", "FORWARD", "PREROUTING",
                                           "POSTROUTING", NULL};
    const char *parent = o->parent ? o->parent : "INPUT";
    char q[SMBAN_QUOTE_LEN];

    if (o->family != 4 && o->family != 6) {
        snprintf(err, SMBAN_ERR_LEN, "family must be 4 or 6, not %d", o->family);
        return SMBAN_EINVAL;
    }
    if (!valid_name(o->chain, SMBAN_CHAIN_MAX)) {
        smban_quote(o->chain ? o->chain : "", q);
        snprintf(err, SMBAN_ERR_LEN,
                 "chain name '%s' invalid: 1 to %d letters, digits, '_', '.', '+' or '-', "
                 "not starting with '-'", q, SMBAN_CHAIN_MAX);
        return SMBAN_EINVAL;
    }
    for (size_t i = 0; reserved[i]; i++) {
        if (!strcmp(o->chain, reserved[i])) {
            snprintf(err, SMBAN_ERR_LEN, "chain name '%s' is reserved", o->chain);
            return SMBAN_EINVAL;
        }
    }
    if (!valid_name(parent, XT_TABLE_MAXNAMELEN - 1) || !strcmp(parent, o->chain)) {
        smban_quote(parent, q);
        snprintf(err, SMBAN_ERR_LEN, "parent chain '%s' invalid", q);
        return SMBAN_EINVAL;
    }
    c->family = o->family;
    snprintf(c->chain, sizeof c->chain, "%s", o->chain);
    snprintf(c->parent, sizeof c->parent, "%s", parent);
    return 0;
}

/* What the jump rule matches: the protocol into c->proto, the ports into
 * *mp (*all_ports when every port). */
static int check_match(const smban_iptc_options *o, smban_iptc *c, int *all_ports,
                       struct xt_multiport_v1 *mp, char err[SMBAN_ERR_LEN])
{
    size_t i;
    int rc;
    for (i = 0; i < sizeof protocols / sizeof *protocols; i++)
        if (o->protocol && !strcmp(o->protocol, protocols[i].name))
            break;
    if (i == sizeof protocols / sizeof *protocols) {
        char q[SMBAN_QUOTE_LEN];
        smban_quote(o->protocol ? o->protocol : "", q);
        snprintf(err, SMBAN_ERR_LEN,
                 "protocol '%s' not supported: tcp, udp, sctp, dccp, udplite or all", q);
        return SMBAN_EINVAL;
    }
    c->proto = protocols[i].num;
    *all_ports = o->ports && !strcmp(o->ports, "all");
    if (!*all_ports) {
        if (!c->proto) {
            snprintf(err, SMBAN_ERR_LEN, "protocol 'all' needs port 'all'");
            return SMBAN_EINVAL;
        }
        if ((rc = parse_ports(o->ports ? o->ports : "", o->protocol, mp, err)) < 0)
            return rc;
    }
    return 0;
}

/* The numbers: smallest prefix, lock wait, retries. */
static int check_limits(const smban_iptc_options *o, smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    if (o->min_prefix < 0 || o->min_prefix > (o->family == 4 ? 32 : 128)) {
        snprintf(err, SMBAN_ERR_LEN, "min_prefix %d out of range", o->min_prefix);
        return SMBAN_EINVAL;
    }
    if (!(o->lock_wait >= 0 && o->lock_wait <= 86400) || o->retries < 0) {
        snprintf(err, SMBAN_ERR_LEN, "lock_wait must be 0..86400 s and retries >= 0");
        return SMBAN_EINVAL;
    }
    c->min_prefix = o->min_prefix;
    c->lock_wait = o->lock_wait;
    c->retries = o->retries;
    return 0;
}

/* The block type into c->block; tcp-reset only for tcp. */
static int check_block(const smban_iptc_options *o, smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    int rc;
    if ((rc = parse_blocktype(o->blocktype, &c->block, err)) < 0)
        return rc;
    if (c->block == SMBAN_BLOCK_TCP_RESET && c->proto != IPPROTO_TCP) {
        snprintf(err, SMBAN_ERR_LEN, "blocktype tcp-reset needs protocol tcp");
        return SMBAN_EINVAL;
    }
    return 0;
}

/* A rule refusing what it matches: -j DROP or REJECT [--reject-with X]. */
static void build_block(smban_iptc *c, entry_buf *b, uint16_t proto,
                        const struct xt_multiport_v1 *mp, int set)
{
    void *td;
    if (c->block == SMBAN_BLOCK_DROP) {
        build(c, b, proto, mp, set, "DROP", sizeof(int), &td);
    } else if (c->family == 4) {
        struct ipt_reject_info ri = {c->block == SMBAN_BLOCK_TCP_RESET
                                     ? IPT_TCP_RESET : IPT_ICMP_PORT_UNREACHABLE};
        build(c, b, proto, mp, set, "REJECT", sizeof ri, &td);
        memcpy(td, &ri, sizeof ri);
    } else {
        struct ip6t_reject_info ri = {c->block == SMBAN_BLOCK_TCP_RESET
                                      ? IP6T_TCP_RESET : IP6T_ICMP6_PORT_UNREACH};
        build(c, b, proto, mp, set, "REJECT", sizeof ri, &td);
        memcpy(td, &ri, sizeof ri);
    }
}

/* The prebuilt rules, from c's checked options. */
static void build_rules(smban_iptc *c, const struct xt_multiport_v1 *mp)
{
    void *td;
    if (c->set) {
        /* -I PARENT -p PROTO [-m multiport --dports P] -m set --match-set
         * SET src -j DROP|REJECT [--reject-with X] */
        build_block(c, &c->jump, c->proto, mp, 1);
        return;
    }
    /* -A PARENT -p PROTO [-m multiport --dports P] -j CHAIN */
    build(c, &c->jump, c->proto, mp, 0, c->chain, sizeof(int), &td);
    /* -A CHAIN -j RETURN */
    build(c, &c->ret, 0, NULL, 0, "RETURN", sizeof(int), &td);
    /* -I CHAIN -s ADDR [-p tcp] -j DROP|REJECT [--reject-with X] */
    build_block(c, &c->ban, c->block == SMBAN_BLOCK_TCP_RESET ? IPPROTO_TCP : 0, NULL, 0);
}

int smban_rule_options(const smban_iptc_options *o, smban_iptc *c, char err[SMBAN_ERR_LEN])
{
    struct xt_multiport_v1 mp;
    int all_ports = 1, rc;
    if ((rc = check_names(o, c, err)) < 0 || (rc = check_match(o, c, &all_ports, &mp, err)) < 0
        || (rc = check_limits(o, c, err)) < 0 || (rc = check_block(o, c, err)) < 0)
        return rc;
    c->set = o->set != 0;
    if (c->set)                 /* a chain name leaves room for the suffix */
        snprintf(c->setname, sizeof c->setname, "%s%s", c->chain, c->family == 4 ? "-v4" : "-v6");
    build_rules(c, all_ports ? NULL : &mp);
    return 0;
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
