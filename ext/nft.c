/*
 * nft.c — the nftables ban backend (nft.h): a kernel set per jail and
 * family, one rule matching it, written through libnftables.
 *
 * Every change is one nftables transaction (a batch of commands that the
 * kernel applies whole or not at all).  libnftables keeps state of its own
 * behind a context, so every call into it holds one process-wide mutex:
 * bans of concurrent threads wait for each other instead of sharing a
 * commit (a set insert costs the same at any size, so there is little to
 * group).  Addresses reach the commands only as smban_addr_format() prints
 * them; names and ports are checked when the handle is made.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "nft.h"

struct smban_nft {
    struct nft_ctx *ctx;
    char table[SMBAN_NFT_NAME_MAX + 1];
    char set[SMBAN_NFT_NAME_MAX + 8];      /* f2b-<name>-v4: the set and the chain */
    char rule[640];                        /* the chain's rule, as written */
    char printed[640];                     /* as nftables prints it ("" until read) */
    int family, min_prefix;
    double timeout;
    smban_backend_stats st;
};

/* libnftables is called under this lock only (see the top of the file). */
static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- a growing command buffer ---- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->n + (size_t)k)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* ---- options ---- */

void smban_nft_options_default(smban_nft_options *o)
{
    memset(o, 0, sizeof *o);
    o->family = 4;
    o->table = "smban";
    o->protocol = "tcp";
    o->ports = "all";
    o->blocktype = "reject";
}

/* A name nftables takes unquoted and no command can be hidden in. */
static int good_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !isalpha((unsigned char)s[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_-.", s[i]))
            return 0;
    return 1;
}

/* "smtp,465,1000:2000" as nftables' "{ 25, 465, 1000-2000 }" (or a lone
 * "25"), sorted; "all" as "". */
static int ports_text(const char *ports, const char *proto, char *out, size_t cap,
                      char err[SMBAN_ERR_LEN])
{
    struct { unsigned lo, hi; } v[64];
    size_t nv = 0;
    if (strcmp(ports, "all") == 0 || strcmp(ports, "") == 0) {
        out[0] = '\0';
        return 0;
    }
    if (strcmp(proto, "all") == 0) {
        snprintf(err, SMBAN_ERR_LEN, "ports need a protocol (tcp, udp, ...), not 'all'");
        return SMBAN_EINVAL;
    }
    for (const char *p = ports; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        uint16_t lo, hi;
        int rc;
        if (nv == sizeof v / sizeof *v) {
            snprintf(err, SMBAN_ERR_LEN, "more than %zu ports", sizeof v / sizeof *v);
            return SMBAN_EINVAL;
        }
        if ((rc = smban_port_parse(p, colon ? (size_t)(colon - p) : n, proto, &lo, err)) < 0)
            return rc;
        hi = lo;
        if (colon && (rc = smban_port_parse(colon + 1, n - (size_t)(colon - p) - 1, proto,
                                            &hi, err)) < 0)
            return rc;
        if (hi < lo) {
            snprintf(err, SMBAN_ERR_LEN, "port range %u:%u is reversed", lo, hi);
            return SMBAN_EINVAL;
        }
        v[nv].lo = lo;
        v[nv++].hi = hi;
        p += n;
        if (*p == ',')
            p++;
    }
    /* sorted, overlaps merged: as nftables prints an anonymous set */
    for (size_t i = 1; i < nv; i++)
        for (size_t j = i; j > 0 && v[j].lo < v[j - 1].lo; j--) {
            unsigned lo = v[j].lo, hi = v[j].hi;
            v[j] = v[j - 1];
            v[j - 1].lo = lo;
            v[j - 1].hi = hi;
        }
    size_t m = 0;
    for (size_t i = 0; i < nv; i++) {
        if (m && v[i].lo <= v[m - 1].hi + 1) {
            if (v[i].hi > v[m - 1].hi)
                v[m - 1].hi = v[i].hi;
        } else
            v[m++] = v[i];
    }
    size_t k = 0;
    int single = m == 1 && v[0].lo == v[0].hi;
    k += (size_t)snprintf(out + k, cap - k, "%s", single ? "" : "{ ");
    for (size_t i = 0; i < m && k < cap; i++) {
        if (v[i].lo == v[i].hi)
            k += (size_t)snprintf(out + k, cap - k, "%s%u", i ? ", " : "", v[i].lo);
        else
            k += (size_t)snprintf(out + k, cap - k, "%s%u-%u", i ? ", " : "", v[i].lo, v[i].hi);
    }
    if (k < cap && !single)
        k += (size_t)snprintf(out + k, cap - k, " }");
    if (k >= cap) {
        snprintf(err, SMBAN_ERR_LEN, "port list too long");
        return SMBAN_EINVAL;
    }
    return 0;
}

/* The rule of the chain: "ip saddr @S tcp dport { 25, 465 } reject with tcp reset". */
static int make_rule(smban_nft *h, const smban_nft_options *o, char err[SMBAN_ERR_LEN])
{
    static const char *protocols[] = {"tcp", "udp", "sctp", "dccp", "udplite", "all"};
    char ports[400];
    int known = 0, rc;
    for (size_t i = 0; i < sizeof protocols / sizeof *protocols; i++)
        known |= strcmp(o->protocol, protocols[i]) == 0;
    if (!known) {
        char q[SMBAN_QUOTE_LEN];
        smban_quote(o->protocol, q);
        snprintf(err, SMBAN_ERR_LEN, "unknown protocol '%s' (tcp, udp, sctp, dccp, udplite, all)", q);
        return SMBAN_EINVAL;
    }
    if ((rc = ports_text(o->ports, o->protocol, ports, sizeof ports, err)) < 0)
        return rc;
    const char *verdict;
    if (strcasecmp(o->blocktype, "drop") == 0)
        verdict = "drop";
    else if (strcasecmp(o->blocktype, "reject") == 0)
        verdict = strcmp(o->protocol, "tcp") == 0 ? "reject with tcp reset"
                  : h->family == 4 ? "reject with icmp port-unreachable"
                  : "reject with icmpv6 port-unreachable";
    else {
        char q[SMBAN_QUOTE_LEN];
        smban_quote(o->blocktype, q);
        snprintf(err, SMBAN_ERR_LEN, "blocktype '%s' is not reject or drop", q);
        return SMBAN_EINVAL;
    }
    const char *match = "";
    char proto[64] = "";
    if (ports[0])
        snprintf(proto, sizeof proto, "%s dport ", o->protocol);
    else if (strcmp(o->protocol, "all") != 0)
        snprintf(proto, sizeof proto, "meta l4proto %s ", o->protocol);
    match = proto;
    snprintf(h->rule, sizeof h->rule, "%s saddr @%s %s%s%s%s", h->family == 4 ? "ip" : "ip6",
             h->set, match, ports, ports[0] ? " " : "", verdict);
    return 0;
}

int smban_nft_new(const smban_nft_options *o, smban_nft **out, char err[SMBAN_ERR_LEN])
{
    smban_nft *h;
    int rc;
    *out = NULL;
    if (o->family != 4 && o->family != 6) {
        snprintf(err, SMBAN_ERR_LEN, "family must be 4 or 6, not %d", o->family);
        return SMBAN_EINVAL;
    }
    if (!o->name || !good_name(o->name, SMBAN_NFT_NAME_MAX)) {
        char q[SMBAN_QUOTE_LEN];
        smban_quote(o->name ? o->name : "", q);
        snprintf(err, SMBAN_ERR_LEN, "jail name '%s': 1 to %d letters, digits, '_', '-' or "
                 "'.', starting with a letter", q, SMBAN_NFT_NAME_MAX);
        return SMBAN_EINVAL;
    }
    if (!o->table || !good_name(o->table, SMBAN_NFT_NAME_MAX)) {
        char q[SMBAN_QUOTE_LEN];
        smban_quote(o->table ? o->table : "", q);
        snprintf(err, SMBAN_ERR_LEN, "table name '%s': 1 to %d letters, digits, '_', '-' or "
                 "'.', starting with a letter", q, SMBAN_NFT_NAME_MAX);
        return SMBAN_EINVAL;
    }
    int full = o->family == 4 ? 32 : 128;
    if (o->min_prefix < 0 || o->min_prefix > full) {
        snprintf(err, SMBAN_ERR_LEN, "min_prefix %d out of range 0..%d", o->min_prefix, full);
        return SMBAN_EINVAL;
    }
    if (!(o->timeout >= 0 && o->timeout <= 365.0 * 86400 * 100)) {
        snprintf(err, SMBAN_ERR_LEN, "timeout %g out of range (0: none, at most a century)",
                 o->timeout);
        return SMBAN_EINVAL;
    }
    if (!(h = calloc(1, sizeof *h))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    h->family = o->family;
    h->min_prefix = o->min_prefix;
    h->timeout = o->timeout;
    snprintf(h->table, sizeof h->table, "%s", o->table);
    snprintf(h->set, sizeof h->set, "f2b-%s-v%d", o->name, o->family);
    if ((rc = make_rule(h, o, err)) < 0) {
        free(h);
        return rc;
    }
    pthread_mutex_lock(&nft_lock);
    h->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (h->ctx) {
        nft_ctx_buffer_output(h->ctx);
        nft_ctx_buffer_error(h->ctx);
    }
    pthread_mutex_unlock(&nft_lock);
    if (!h->ctx) {
        free(h);
        snprintf(err, SMBAN_ERR_LEN, "libnftables: cannot make a context");
        return SMBAN_ENFT;
    }
    *out = h;
    return 0;
}

static void nft_free(void *p)
{
    smban_nft *h = p;
    if (!h)
        return;
    pthread_mutex_lock(&nft_lock);
    nft_ctx_free(h->ctx);
    pthread_mutex_unlock(&nft_lock);
    free(h);
}

/* ---- running commands (nft_lock held) ---- */

/* The first line of libnftables' error message, printable. */
static void error_line(smban_nft *h, const char *what, char err[SMBAN_ERR_LEN])
{
    const char *e = nft_ctx_get_error_buffer(h->ctx);
    const char *start = e ? strstr(e, "Error: ") : NULL;
    char line[160];
    size_t n = 0;
    if (start)
        start += 7;
    else
        start = e && *e ? e : "no reason given";
    while (start[n] && start[n] != '\n' && n + 1 < sizeof line) {
        line[n] = isprint((unsigned char)start[n]) ? start[n] : '?';
        n++;
    }
    line[n] = '\0';
    snprintf(err, SMBAN_ERR_LEN, "nftables refused to %.32s (table inet %.32s, %.40s): %.100s",
             what, h->table, h->set, line);
}

/* What a refusal was about (run's *why). */
enum { NFT_OTHER = 0, NFT_MISSING = 1, NFT_EXISTS = 2 };

/* Run cmd as one transaction; 0, or SMBAN_ENFT with the reason in err
 * (err may be NULL: a probe).  *why (may be NULL) tells whether the
 * refusal was for an object or element that does not exist (NFT_MISSING)
 * or one that does (NFT_EXISTS, "create"). */
static int run(smban_nft *h, const char *cmd, const char *what, int *why,
               char err[SMBAN_ERR_LEN])
{
    if (why)
        *why = NFT_OTHER;
    for (int attempt = 0;; attempt++) {
        /* reading a buffer rewinds it: what an earlier command printed
         * ("get element" prints what it found) must not be read as this
         * one's */
        nft_ctx_get_output_buffer(h->ctx);
        nft_ctx_get_error_buffer(h->ctx);
        h->st.transactions++;
        if (nft_run_cmd_from_buffer(h->ctx, cmd) == 0)
            return 0;
        const char *e = nft_ctx_get_error_buffer(h->ctx);
        /* a concurrent writer or a signal: the transaction was not applied */
        if (attempt < 3 && e && (strstr(e, "Interrupted system call")
                                 || strstr(e, "Resource temporarily unavailable")
                                 || strstr(e, "Device or resource busy"))) {
            h->st.retries++;
            continue;
        }
        if (why && e && strstr(e, "No such file or directory"))
            *why = NFT_MISSING;
        else if (why && e && (strstr(e, "File exists") || strstr(e, "overlaps")))
            *why = NFT_EXISTS;      /* there, or inside a banned network */
        if (err)
            error_line(h, what, err);
        return SMBAN_ENFT;
    }
}

/* The layout, whole: the table, the set, the chain and its one rule,
 * rewritten (flush + add in the same transaction). */
static void layout(smban_nft *h, buf *b)
{
    put(b, "add table inet %s\n", h->table);
    put(b, "add set inet %s %s { type %s; flags timeout%s; }\n", h->table, h->set,
        h->family == 4 ? "ipv4_addr" : "ipv6_addr", h->min_prefix ? ", interval" : "");
    put(b, "add chain inet %s %s { type filter hook input priority -1; policy accept; }\n",
        h->table, h->set);
    put(b, "flush chain inet %s %s\n", h->table, h->set);
    put(b, "add rule inet %s %s %s\n", h->table, h->set, h->rule);
}

/* ---- reading what is there (nft_lock held) ---- */

/* The listing of the set (1), of the chain (0 and *out NULL: missing), or
 * an error. */
static int listing(smban_nft *h, const char *kind, char **out, char err[SMBAN_ERR_LEN])
{
    char cmd[256];
    int missing, rc;
    *out = NULL;
    snprintf(cmd, sizeof cmd, "list %s inet %s %s", kind, h->table, h->set);
    if ((rc = run(h, cmd, "list", &missing, err)) < 0) {
        /* a table that does not exist is "No such file or directory" too */
        return missing == NFT_MISSING ? 0 : rc;
    }
    const char *o = nft_ctx_get_output_buffer(h->ctx);
    if (!(*out = strdup(o ? o : ""))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    return 1;
}

/* The elements of a set listing, parsed back (the set's own family and
 * prefixes); *out malloc'ed, NULL when empty. */
static int elements(smban_nft *h, const char *text, smban_addr **out, size_t *n,
                    char err[SMBAN_ERR_LEN])
{
    smban_addr *v = NULL;
    size_t nv = 0, cap = 0;
    *out = NULL;
    *n = 0;
    const char *p = strstr(text, "elements = {");
    if (!p)
        return 0;
    p += strlen("elements = {");
    int skip = 0;
    while (*p && *p != '}') {
        while (*p && (isspace((unsigned char)*p) || *p == ','))
            p++;
        if (!*p || *p == '}')
            break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p) && *p != ',' && *p != '}')
            p++;
        size_t k = (size_t)(p - s);
        char tok[SMBAN_ADDR_LEN + 8];
        if (skip) {             /* the value of "timeout" or "expires" */
            skip = 0;
            continue;
        }
        if ((k == 7 && memcmp(s, "timeout", 7) == 0) || (k == 7 && memcmp(s, "expires", 7) == 0)) {
            skip = 1;
            continue;
        }
        if (k >= sizeof tok)
            continue;
        memcpy(tok, s, k);
        tok[k] = '\0';
        smban_addr a;
        char e2[SMBAN_ERR_LEN];
        /* any prefix the set holds: an interval set prints networks */
        if (smban_addr_parse(tok, h->family, h->min_prefix ? 1 : 0, &a, e2) < 0)
            continue;
        if (nv == cap) {
            size_t c2 = cap ? cap * 2 : 64;
            smban_addr *w = realloc(v, c2 * sizeof *v);
            if (!w) {
                free(v);
                snprintf(err, SMBAN_ERR_LEN, "out of memory");
                return SMBAN_ENOMEM;
            }
            v = w;
            cap = c2;
        }
        v[nv++] = a;
    }
    *out = v;
    *n = nv;
    return 0;
}

/* The rules of a chain listing: the lines between its "type" line and its
 * closing brace.  *rules counts them, *ours says one is ours (as printed
 * when known, else as written), *refs counts those naming the set. */
static void chain_rules(smban_nft *h, const char *text, int *hooked, unsigned *rules,
                        int *ours, unsigned *refs, char *first, size_t first_cap)
{
    char ref[SMBAN_NFT_NAME_MAX + 16];
    const char *want = h->printed[0] ? h->printed : h->rule;
    *hooked = 0;
    *rules = 0;
    *ours = 0;
    *refs = 0;
    if (first_cap)
        first[0] = '\0';
    snprintf(ref, sizeof ref, "@%s", h->set);
    const char *p = strstr(text, "chain ");
    if (!p || !(p = strchr(p, '\n')))
        return;
    p++;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && isspace((unsigned char)*p)) {
            p++;
            n--;
        }
        while (n && isspace((unsigned char)p[n - 1]))
            n--;
        if (n == 1 && *p == '}')
            break;
        if (n >= 5 && memcmp(p, "type ", 5) == 0) {
            char line[256];
            snprintf(line, sizeof line, "%.*s", (int)n, p);
            *hooked = strstr(line, "hook input") != NULL;
        } else if (n) {
            (*rules)++;
            if (first_cap && *rules == 1)
                snprintf(first, first_cap, "%.*s", (int)n, p);
            if (n == strlen(want) && memcmp(p, want, n) == 0)
                *ours = 1;
            if (memmem(p, n, ref, strlen(ref)))
                (*refs)++;
        }
        if (!e)
            break;
        p = e + 1;
    }
}

/* After a write of the layout: learn how nftables prints the rule. */
static void learn_printed(smban_nft *h)
{
    char *text = NULL, e[SMBAN_ERR_LEN];
    int hooked, ours;
    unsigned rules, refs;
    if (listing(h, "chain", &text, e) > 0) {
        chain_rules(h, text, &hooked, &rules, &ours, &refs, h->printed, sizeof h->printed);
        if (rules != 1)
            h->printed[0] = '\0';
    }
    free(text);
}

/* ---- the operations ---- */

static int nft_check_locked(smban_nft *h, smban_backend_status *st, char err[SMBAN_ERR_LEN])
{
    char *set = NULL, *chain = NULL;
    int rc;
    memset(st, 0, sizeof *st);
    if ((rc = listing(h, "set", &set, err)) < 0)
        return rc;
    st->chain = rc > 0;
    if (set) {
        smban_addr *v;
        size_t n;
        if ((rc = elements(h, set, &v, &n, err)) < 0) {
            free(set);
            return rc;
        }
        free(v);
        st->bans = n;
        free(set);
    }
    if ((rc = listing(h, "chain", &chain, err)) < 0)
        return rc;
    if (chain) {
        int hooked, ours;
        unsigned rules, refs;
        chain_rules(h, chain, &hooked, &rules, &ours, &refs, NULL, 0);
        st->ret = hooked;
        st->jump = ours && rules == 1;
        st->references = refs;
        free(chain);
    }
    return 0;
}

static int nft_check(void *p, smban_backend_status *st, char err[SMBAN_ERR_LEN])
{
    smban_nft *h = p;
    pthread_mutex_lock(&nft_lock);
    int rc = nft_check_locked(h, st, err);
    pthread_mutex_unlock(&nft_lock);
    return rc;
}

static int nft_start(void *p, unsigned *repaired, char err[SMBAN_ERR_LEN])
{
    smban_nft *h = p;
    smban_backend_status st;
    buf b = {0};
    int rc;
    pthread_mutex_lock(&nft_lock);
    if ((rc = nft_check_locked(h, &st, err)) < 0)
        goto out;
    layout(h, &b);
    if (b.oom) {
        rc = SMBAN_ENOMEM;
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        goto out;
    }
    if ((rc = run(h, b.p, "create the set, chain and rule", NULL, err)) < 0)
        goto out;
    h->st.commits++;
    learn_printed(h);
    if (repaired)
        *repaired = (st.chain ? 0 : SMBAN_LAYOUT_CHAIN) | (st.ret ? 0 : SMBAN_LAYOUT_RETURN)
                  | (st.jump ? 0 : SMBAN_LAYOUT_JUMP);
out:
    pthread_mutex_unlock(&nft_lock);
    free(b.p);
    return rc;
}

static int addr_cmp(const void *x, const void *y)
{
    const smban_addr *a = x, *b = y;
    if (a->prefix != b->prefix)
        return a->prefix < b->prefix ? -1 : 1;
    return memcmp(a->addr, b->addr, sizeof a->addr);
}

/* Which of addrs the set holds now (held[i] 1/0): one listing, sorted
 * and searched, so that a restore of many costs n log n, not n times the
 * set.  (nftables' own "get element" reads the whole set too.) */
static int held_now(smban_nft *h, const smban_addr *addrs, size_t n, uint8_t *held,
                    char err[SMBAN_ERR_LEN])
{
    char *text = NULL;
    smban_addr *v = NULL;
    size_t nv = 0;
    int rc;
    if ((rc = listing(h, "set", &text, err)) < 0)
        return rc;
    if (text && (rc = elements(h, text, &v, &nv, err)) < 0) {
        free(text);
        return rc;
    }
    free(text);
    if (nv)
        qsort(v, nv, sizeof *v, addr_cmp);
    for (size_t i = 0; i < n; i++)
        held[i] = nv && bsearch(&addrs[i], v, nv, sizeof *v, addr_cmp) != NULL;
    free(v);
    return 0;
}

/* dup[i] = 1 for an address given earlier in the list too. */
static int duplicates(const smban_addr *addrs, size_t n, uint8_t *dup)
{
    size_t *ix = malloc((n ? n : 1) * sizeof *ix);
    if (!ix)
        return SMBAN_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        ix[i] = i;
        dup[i] = 0;
    }
    /* sort the positions by address, ties by position: the first of equal
     * ones keeps its place */
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap; j -= gap) {
                int c = addr_cmp(&addrs[ix[j - gap]], &addrs[ix[j]]);
                if (c < 0 || (c == 0 && ix[j - gap] < ix[j]))
                    break;
                size_t t = ix[j];
                ix[j] = ix[j - gap];
                ix[j - gap] = t;
            }
    for (size_t i = 1; i < n; i++)
        if (addr_cmp(&addrs[ix[i - 1]], &addrs[ix[i]]) == 0)
            dup[ix[i]] = 1;
    free(ix);
    return 0;
}

static void element(buf *b, const smban_addr *a, double timeout, int first)
{
    char t[SMBAN_ADDR_LEN];
    smban_addr_format(a, t);
    if (timeout > 0)
        put(b, "%s%s timeout %.0fs", first ? "" : ", ", t, timeout < 1 ? 1 : timeout);
    else
        put(b, "%s%s", first ? "" : ", ", t);
}

/* batch()'s ban that fails, whole, when an element is there already. */
#define OP_CREATE 3

/* The timeout of addrs[i]'s element: timeouts[i], or the handle's. */
static double timeout_of(const smban_nft *h, const double *timeouts, size_t i)
{
    return timeouts ? timeouts[i] : h->timeout;
}

/* One list command ("add element ... { a, b }") of the addresses with
 * sel[i], each with its timeout for an add. */
static void element_list(smban_nft *h, buf *b, const char *verb, const smban_addr *addrs,
                         size_t n, const uint8_t *sel, const double *timeouts)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sel[i])
            continue;
        if (k == 0)
            put(b, "%s element inet %s %s { ", verb, h->table, h->set);
        element(b, &addrs[i], strcmp(verb, "delete") ? timeout_of(h, timeouts, i) : 0, k == 0);
        k++;
    }
    if (k)
        put(b, " }\n");
}

/* One transaction: for a ban the layout, the deletion of the elements to
 * refresh (refresh[i]: banned already, to be added again with its new
 * timeout) and "add element"; for an unban "delete element".  Only the
 * addresses with want[i]. */
static int batch(smban_nft *h, int op, const smban_addr *addrs, size_t n, const uint8_t *want,
                 const uint8_t *refresh, const double *timeouts, int *why,
                 char err[SMBAN_ERR_LEN])
{
    buf b = {0};
    if (op == SMBAN_OP_BAN || op == OP_CREATE) {
        layout(h, &b);
        if (refresh)
            element_list(h, &b, "delete", addrs, n, refresh, NULL);
        element_list(h, &b, op == OP_CREATE ? "create" : "add", addrs, n, want, timeouts);
    } else
        element_list(h, &b, "delete", addrs, n, want, NULL);
    int rc;
    if (b.oom) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        rc = SMBAN_ENOMEM;
    } else if (!b.n)
        rc = 0;
    else
        rc = run(h, b.p, op == SMBAN_OP_UNBAN ? "unban" : "ban", why, err);
    free(b.p);
    return rc;
}

/* The optimistic transaction: every address new (a ban: "create", which
 * fails whole when one is there), every address there (an unban), or the
 * one address there (a refresh).  Cheap whatever the set's size: no
 * listing.  Returns 1 when it settled the request (*changes set), 0 when
 * the slow path must read the set, or a negative code. */
static int fast_path(smban_nft *h, int op, const smban_addr *addrs, size_t n, uint8_t *want,
                     const double *timeouts, int refresh, int *changes,
                     char err[SMBAN_ERR_LEN])
{
    int why, rc;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += want[i];
    if (op == SMBAN_OP_BAN && refresh) {
        if (k != 1)
            return 0;
        /* the one address, deleted and added again with its new end */
        rc = batch(h, SMBAN_OP_BAN, addrs, n, want, want, timeouts, &why, err);
        if (rc == 0) {
            *changes = 0;
            memset(want, 0, n);         /* it was there: no change */
            return 1;
        }
        if (why != NFT_MISSING)
            return rc;
        refresh = 0;                    /* it was not there: a plain ban */
    }
    if (op == SMBAN_OP_BAN) {
        rc = batch(h, OP_CREATE, addrs, n, want, NULL, timeouts, &why, err);
        if (rc == 0) {
            *changes = (int)k;
            return 1;
        }
        if (why != NFT_EXISTS)
            return rc;
        if (k > 1)
            return 0;
        /* the one address is there: a no-op, the layout repaired all the same */
        memset(want, 0, n);
        if ((rc = batch(h, SMBAN_OP_BAN, addrs, n, want, NULL, timeouts, NULL, err)) < 0)
            return rc;
        *changes = 0;
        return 1;
    }
    rc = batch(h, SMBAN_OP_UNBAN, addrs, n, want, NULL, NULL, &why, err);
    if (rc == 0) {
        *changes = (int)k;
        return 1;
    }
    if (why != NFT_MISSING)
        return rc;
    if (k > 1)
        return 0;
    memset(want, 0, n);                 /* the one address was not there */
    *changes = 0;
    return 1;
}

int smban_nft_apply(smban_nft *h, int op, const smban_addr *addrs, size_t n,
                    const double *timeouts, int refresh, uint8_t *results,
                    char err[SMBAN_ERR_LEN])
{
    uint8_t *held = malloc(n ? n : 1), *want = malloc(n ? n : 1), *again = NULL;
    int rc, why, changes = 0;
    if (!held || !want || (refresh && !(again = calloc(n ? n : 1, 1)))) {
        free(held);
        free(want);
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    pthread_mutex_lock(&nft_lock);
    h->st.requests++;
    /* each address once */
    if ((rc = duplicates(addrs, n, want)) < 0) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        want[i] = !want[i];
    if ((rc = fast_path(h, op, addrs, n, want, timeouts, refresh, &changes, err)) < 0)
        goto out;
    if (rc == 0) {
        /* some of them are there and some not: read the set.  A ban adds
         * only the missing ones (refresh: and adds the others again, with
         * their new timeout), an unban deletes only the present ones
         * (nftables refuses to delete what is not there) */
        if ((rc = held_now(h, addrs, n, held, err)) < 0)
            goto out;
        changes = 0;
        for (size_t i = 0; i < n; i++) {
            int first = want[i];
            want[i] = first && (op == SMBAN_OP_BAN ? !held[i] : held[i]);
            changes += want[i];
            if (again && op == SMBAN_OP_BAN && first && held[i])
                again[i] = want[i] = 1;
        }
        if (op == SMBAN_OP_UNBAN && !changes)
            rc = 0;
        else
            rc = batch(h, op, addrs, n, want, again, timeouts, &why, err);
        if (rc < 0 && why == NFT_EXISTS && op == SMBAN_OP_BAN && !again) {
            /* an address inside a banned network (an interval set refuses
             * the overlap) or added by another writer in between: each on
             * its own, those refused as there being no change */
            changes = 0;
            for (size_t i = 0; i < n; i++) {
                if (!want[i])
                    continue;
                uint8_t *one = held;
                memset(one, 0, n);
                one[i] = 1;
                rc = batch(h, OP_CREATE, addrs, n, one, NULL, timeouts, &why, err);
                if (rc < 0 && why != NFT_EXISTS)
                    goto out;
                want[i] = rc == 0;
                changes += want[i];
            }
            rc = 0;
        }
        if (rc < 0 && why == NFT_MISSING) {
            /* an element expired (or another writer removed it) in
             * between: read again and redo with what is there now */
            if ((rc = held_now(h, addrs, n, held, err)) < 0)
                goto out;
            changes = 0;
            for (size_t i = 0; i < n; i++) {
                if (op == SMBAN_OP_UNBAN)
                    want[i] = want[i] && held[i];
                else if (again && again[i] && !held[i])
                    again[i] = 0;       /* expired: a plain add, and new */
                changes += op == SMBAN_OP_UNBAN ? want[i] : want[i] && !(again && again[i]);
            }
            h->st.retries++;
            rc = op == SMBAN_OP_BAN || changes
                 ? batch(h, op, addrs, n, want, again, timeouts, NULL, err) : 0;
        }
        if (rc < 0)
            goto out;
    }
    h->st.commits++;
    if (op == SMBAN_OP_BAN && !h->printed[0])
        learn_printed(h);
    if (results)
        for (size_t i = 0; i < n; i++)
            results[i] = want[i] && !(again && again[i]);
    rc = changes;
out:
    pthread_mutex_unlock(&nft_lock);
    free(held);
    free(want);
    free(again);
    return rc;
}

static int nft_apply(void *p, int op, const smban_addr *addrs, size_t n, uint8_t *results,
                     char err[SMBAN_ERR_LEN])
{
    return smban_nft_apply(p, op, addrs, n, NULL, 0, results, err);
}

static int nft_list(void *p, smban_addr **out, size_t *n, char err[SMBAN_ERR_LEN])
{
    smban_nft *h = p;
    char *text = NULL;
    int rc;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&nft_lock);
    rc = listing(h, "set", &text, err);
    if (rc > 0)
        rc = elements(h, text, out, n, err);
    pthread_mutex_unlock(&nft_lock);
    free(text);
    return rc < 0 ? rc : 0;
}

static int nft_flush(void *p, char err[SMBAN_ERR_LEN])
{
    smban_nft *h = p;
    char *text = NULL, cmd[256];
    smban_addr *v = NULL;
    size_t n = 0;
    int rc;
    pthread_mutex_lock(&nft_lock);
    if ((rc = listing(h, "set", &text, err)) <= 0)
        goto out;
    if ((rc = elements(h, text, &v, &n, err)) < 0)
        goto out;
    snprintf(cmd, sizeof cmd, "flush set inet %s %s", h->table, h->set);
    if ((rc = run(h, cmd, "flush the set", NULL, err)) < 0)
        goto out;
    h->st.commits++;
    rc = (int)n;
out:
    pthread_mutex_unlock(&nft_lock);
    free(text);
    free(v);
    return rc;
}

static int nft_stop(void *p, char err[SMBAN_ERR_LEN])
{
    smban_nft *h = p;
    static const char *kinds[] = {"chain", "set"};  /* the chain first: its rule names the set */
    buf b = {0};
    int rc = 0;
    pthread_mutex_lock(&nft_lock);
    /* the table stays: other jails may have theirs in it, and an empty
     * table filters nothing */
    for (size_t i = 0; i < 2; i++) {
        char *text = NULL;
        if ((rc = listing(h, kinds[i], &text, err)) < 0)
            goto out;
        if (text)
            put(&b, "delete %s inet %s %s\n", kinds[i], h->table, h->set);
        free(text);
    }
    if (b.oom) {
        rc = SMBAN_ENOMEM;
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        goto out;
    }
    rc = 0;
    if (b.n) {
        if ((rc = run(h, b.p, "remove the chain and set", NULL, err)) < 0)
            goto out;
        h->st.commits++;
        rc = 1;
    }
out:
    pthread_mutex_unlock(&nft_lock);
    free(b.p);
    return rc;
}

static void nft_stats(void *p, smban_backend_stats *st)
{
    smban_nft *h = p;
    pthread_mutex_lock(&nft_lock);
    *st = h->st;
    pthread_mutex_unlock(&nft_lock);
}

static const char *nft_name(const void *p)
{
    return ((const smban_nft *)p)->set;
}

const char *smban_nft_table(const smban_nft *h)
{
    return h->table;
}

static int nft_family(const void *p)
{
    return ((const smban_nft *)p)->family;
}

static int nft_min_prefix(const void *p)
{
    return ((const smban_nft *)p)->min_prefix;
}

const smban_backend_ops smban_nft_backend = {
    .start = nft_start,
    .apply = nft_apply,
    .list = nft_list,
    .flush = nft_flush,
    .stop = nft_stop,
    .check = nft_check,
    .stats = nft_stats,
    .name = nft_name,
    .family = nft_family,
    .min_prefix = nft_min_prefix,
    .free = nft_free,
};
