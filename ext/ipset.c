/*
 * ipset.c — the kernel set of the iptables backend's set mode (ipset.h),
 * through libipset's session API: every command is built from data fields
 * (the set's name, the address as bytes, its prefix, its timeout), never
 * parsed from text.
 *
 * A ban of n addresses: one TEST per address finds which are banned (a
 * netlink round trip of a few microseconds, whatever the set's size), then
 * one aggregated batch adds the new ones (with "exist" semantics, so an
 * address a concurrent writer added meanwhile is no error) and, with
 * refresh, re-adds the banned ones with their new timeout.  An unban is the
 * same with deletes.  Unlike an iptables commit, an ipset batch is not one
 * atomic change: the addresses are checked before anything is sent, and the
 * kernel refuses an element only when the set is missing or full.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libipset/data.h>
#include <libipset/session.h>
#include <libipset/types.h>

#include "ipset.h"

struct smban_ipset {
    struct ipset_session *session;
    char name[SMBAN_IPSET_NAME_MAX + 1];
    int family, min_prefix;
    char *out;                 /* what libipset printed (a listing) */
    size_t out_n, out_cap;
    int out_oom;
};

/* Every call into libipset holds this lock (see ipset.h). */
static pthread_mutex_t ipset_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t types_once = PTHREAD_ONCE_INIT;

static void load_types(void)
{
    ipset_load_types();
}

/* libipset's printer: listings are collected in s->out. */
static int collect(struct ipset_session *session, void *p, const char *fmt, ...)
{
    smban_ipset *s = p;
    va_list ap;
    (void)session;
    for (;;) {
        size_t room = s->out_cap - s->out_n;
        va_start(ap, fmt);
        int k = vsnprintf(s->out ? s->out + s->out_n : NULL, s->out ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            return -1;
        if (s->out && (size_t)k < room) {
            s->out_n += (size_t)k;
            return k;
        }
        size_t cap = s->out_cap ? s->out_cap : 4096;
        while (cap - s->out_n <= (size_t)k)
            cap *= 2;
        char *p2 = realloc(s->out, cap);
        if (!p2) {
            s->out_oom = 1;
            return -1;
        }
        s->out = p2;
        s->out_cap = cap;
    }
}

int smban_ipset_new(const char *name, int family, int min_prefix, smban_ipset **out,
                    char err[SMBAN_ERR_LEN])
{
    smban_ipset *s;
    *out = NULL;
    if (!name || !*name || strlen(name) > SMBAN_IPSET_NAME_MAX
        || (family != 4 && family != 6)) {
        snprintf(err, SMBAN_ERR_LEN, "set name of 1 to %d characters and family 4 or 6 needed",
                 SMBAN_IPSET_NAME_MAX);
        return SMBAN_EINVAL;
    }
    pthread_once(&types_once, load_types);
    if (!(s = calloc(1, sizeof *s))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->family = family;
    s->min_prefix = min_prefix;
    pthread_mutex_lock(&ipset_lock);
    s->session = ipset_session_init(collect, s);
    pthread_mutex_unlock(&ipset_lock);
    if (!s->session) {
        free(s);
        snprintf(err, SMBAN_ERR_LEN, "ipset: cannot open a session (out of memory?)");
        return SMBAN_EIPSET;
    }
    *out = s;
    return 0;
}

void smban_ipset_free(smban_ipset *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&ipset_lock);
    ipset_session_fini(s->session);
    pthread_mutex_unlock(&ipset_lock);
    free(s->out);
    free(s);
}

const char *smban_ipset_name(const smban_ipset *s)
{
    return s->name;
}

/* ---- the calls, under ipset_lock ---- */

/* The session's report as the error, prefixed by what was being done. */
static int fail(smban_ipset *s, const char *what, char err[SMBAN_ERR_LEN])
{
    const char *m = ipset_session_report_msg(s->session);
    size_t k = m ? strcspn(m, "\n") : 0;
    snprintf(err, SMBAN_ERR_LEN, "ipset %s: %s: %.*s", s->name, what, (int)k,
             k ? m : "refused");
    ipset_session_report_reset(s->session);
    return SMBAN_EIPSET;
}

/* Start a command on our set: fresh data, the set's name, exist or not. */
static void begin(smban_ipset *s, int exist)
{
    ipset_session_report_reset(s->session);
    ipset_data_reset(ipset_session_data(s->session));
    if (exist)
        ipset_envopt_set(s->session, IPSET_ENV_EXIST);
    else
        ipset_envopt_unset(s->session, IPSET_ENV_EXIST);
    ipset_session_data_set(s->session, IPSET_SETNAME, s->name);
}

/* The set's index by the getsockopt iptables uses; IPSET_INVALID_ID when
 * there is no such set. */
static int lookup(smban_ipset *s, uint16_t *index, char err[SMBAN_ERR_LEN])
{
    struct ip_set_req_version v = {IP_SET_OP_VERSION, 0};
    struct ip_set_req_get_set g;
    socklen_t len = sizeof v;
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW), rc = 0;
    if (fd < 0) {
        snprintf(err, SMBAN_ERR_LEN, "ipset %s: socket: %s", s->name, strerror(errno));
        return SMBAN_EIPSET;
    }
    if (getsockopt(fd, SOL_IP, SO_IP_SET, &v, &len) < 0) {
        snprintf(err, SMBAN_ERR_LEN, "ipset %s: the kernel has no ipset support (%s)", s->name,
                 strerror(errno));
        rc = SMBAN_EIPSET;
        goto out;
    }
    memset(&g, 0, sizeof g);
    g.op = IP_SET_OP_GET_BYNAME;
    g.version = v.version;
    snprintf(g.set.name, sizeof g.set.name, "%s", s->name);
    len = sizeof g;
    if (getsockopt(fd, SOL_IP, SO_IP_SET, &g, &len) < 0) {
        snprintf(err, SMBAN_ERR_LEN, "ipset %s: cannot look the set up (%s)", s->name,
                 strerror(errno));
        rc = SMBAN_EIPSET;
        goto out;
    }
    *index = g.set.index;
out:
    close(fd);
    return rc;
}

int smban_ipset_index(smban_ipset *s, uint16_t *index, char err[SMBAN_ERR_LEN])
{
    int rc = lookup(s, index, err);
    if (rc == 0 && *index == IPSET_INVALID_ID) {
        snprintf(err, SMBAN_ERR_LEN, "ipset %s: no such set", s->name);
        return SMBAN_EIPSET;
    }
    return rc;
}

int smban_ipset_create(smban_ipset *s, int *created, char err[SMBAN_ERR_LEN])
{
    uint16_t index;
    uint8_t family = s->family == 4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
    uint32_t timeout = 0, maxelem = SMBAN_IPSET_MAXELEM;
    int rc;
    if (created)
        *created = 0;
    if ((rc = lookup(s, &index, err)) < 0)
        return rc;
    pthread_mutex_lock(&ipset_lock);
    /* "exist": a set with exactly these options is no error; one with
     * another type, family, size or without timeouts is refused. */
    begin(s, 1);
    ipset_session_data_set(s->session, IPSET_OPT_TYPENAME, s->min_prefix ? "hash:net" : "hash:ip");
    if (!ipset_type_get(s->session, IPSET_CMD_CREATE)) {
        rc = fail(s, "no such set type", err);
        goto out;
    }
    ipset_session_data_set(s->session, IPSET_OPT_FAMILY, &family);
    ipset_session_data_set(s->session, IPSET_OPT_TIMEOUT, &timeout);
    ipset_session_data_set(s->session, IPSET_OPT_MAXELEM, &maxelem);
    if (ipset_cmd(s->session, IPSET_CMD_CREATE, 0) < 0) {
        rc = index == IPSET_INVALID_ID
             ? fail(s, "cannot create the set", err)
             : fail(s, "a set of this name exists with another type or options", err);
        goto out;
    }
    if (created)
        *created = index == IPSET_INVALID_ID;
out:
    pthread_mutex_unlock(&ipset_lock);
    return rc;
}

/* A listing of our set into s->out: the header only, or (save) every
 * element as "add NAME ADDR [timeout T]". */
static int listing(smban_ipset *s, int save, char err[SMBAN_ERR_LEN])
{
    int rc = 0;
    s->out_n = 0;
    s->out_oom = 0;
    begin(s, 0);
    ipset_session_output(s->session, save ? IPSET_LIST_SAVE : IPSET_LIST_PLAIN);
    if (save)
        ipset_envopt_unset(s->session, IPSET_ENV_LIST_HEADER);
    else
        ipset_envopt_set(s->session, IPSET_ENV_LIST_HEADER);
    if (ipset_cmd(s->session, save ? IPSET_CMD_SAVE : IPSET_CMD_LIST, 0) < 0)
        rc = fail(s, "cannot list the set", err);
    else if (s->out_oom) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        rc = SMBAN_ENOMEM;
    }
    ipset_envopt_unset(s->session, IPSET_ENV_LIST_HEADER);
    if (rc == 0 && s->out) {
        if (s->out_n == s->out_cap && collect(s->session, s, "%s", "") < 0) {
            snprintf(err, SMBAN_ERR_LEN, "out of memory");
            return SMBAN_ENOMEM;
        }
        s->out[s->out_n] = 0;
    }
    return rc;
}

/* The number after "key: " on a line of the header listing. */
static unsigned long long header_field(const char *text, const char *key)
{
    const char *p = text;
    size_t k = strlen(key);
    while (p && *p) {
        if (!strncmp(p, key, k))
            return strtoull(p + k, NULL, 10);
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return 0;
}

int smban_ipset_header(smban_ipset *s, int *exists, size_t *elements,
                       unsigned *references, char err[SMBAN_ERR_LEN])
{
    uint16_t index;
    int rc;
    *exists = 0;
    *elements = 0;
    *references = 0;
    if ((rc = lookup(s, &index, err)) < 0 || index == IPSET_INVALID_ID)
        return rc;
    pthread_mutex_lock(&ipset_lock);
    if ((rc = listing(s, 0, err)) == 0 && s->out) {
        *exists = 1;
        *elements = (size_t)header_field(s->out, "Number of entries: ");
        *references = (unsigned)header_field(s->out, "References: ");
    }
    pthread_mutex_unlock(&ipset_lock);
    return rc;
}

/* ---- elements ---- */

/* Fill the session's data with element a of our set, for cmd. */
static int element(smban_ipset *s, enum ipset_cmd cmd, const smban_addr *a, uint32_t timeout,
                   int exist)
{
    union nf_inet_addr ip;
    uint8_t family = s->family == 4 ? NFPROTO_IPV4 : NFPROTO_IPV6, cidr = a->prefix;
    begin(s, exist);
    if (!ipset_type_get(s->session, cmd))
        return -1;
    memset(&ip, 0, sizeof ip);
    memcpy(&ip, a->addr, s->family == 4 ? 4 : 16);
    ipset_session_data_set(s->session, IPSET_OPT_FAMILY, &family);
    ipset_session_data_set(s->session, IPSET_OPT_IP, &ip);
    ipset_session_data_set(s->session, IPSET_OPT_CIDR, &cidr);
    if (timeout)
        ipset_session_data_set(s->session, IPSET_OPT_TIMEOUT, &timeout);
    return 0;
}

/* Whether a is an element: 1, 0, or a negative code. */
static int test(smban_ipset *s, const smban_addr *a, char err[SMBAN_ERR_LEN])
{
    if (element(s, IPSET_CMD_TEST, a, 0, 0) < 0)
        return fail(s, "cannot read the set", err);
    if (ipset_cmd(s->session, IPSET_CMD_TEST, 0) == 0) {
        ipset_session_report_reset(s->session);
        return 1;
    }
    /* "is NOT in set" is reported as a notice; anything else failed */
    if (ipset_session_report_type(s->session) == IPSET_NOTICE) {
        ipset_session_report_reset(s->session);
        return 0;
    }
    return fail(s, "cannot read the set", err);
}

/* The kernel's timeout for t seconds: whole seconds, at least 1; 0 (the
 * set's default: none) for none or more than the kernel keeps. */
static uint32_t kernel_timeout(double t)
{
    if (!(t > 0) || t > SMBAN_IPSET_TIMEOUT_MAX)
        return 0;
    return (uint32_t)ceil(t);
}

static int addr_cmp(const smban_addr *a, const smban_addr *b)
{
    int c = memcmp(a->addr, b->addr, 16);
    return c ? c : (int)a->prefix - (int)b->prefix;
}

/* Marks in first[] the first occurrence of each address (sorting the
 * indices: n log n, no table sized by the input). */
static const smban_addr *sort_base;
static int by_addr(const void *x, const void *y)
{
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    int c = addr_cmp(&sort_base[i], &sort_base[j]);
    return c ? c : (i > j) - (i < j);
}

static int first_occurrences(const smban_addr *addrs, size_t n, uint8_t *first)
{
    size_t *ix = malloc((n ? n : 1) * sizeof *ix);
    if (!ix)
        return SMBAN_ENOMEM;
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    sort_base = addrs;          /* under ipset_lock: qsort has no context argument */
    qsort(ix, n, sizeof *ix, by_addr);
    for (size_t k = 0; k < n; k++)
        first[ix[k]] = k == 0 || addr_cmp(&addrs[ix[k - 1]], &addrs[ix[k]]) != 0;
    free(ix);
    return 0;
}

int smban_ipset_apply(smban_ipset *s, int op, const smban_addr *addrs, size_t n,
                      const double *timeouts, int refresh, uint8_t *results,
                      int *missing, char err[SMBAN_ERR_LEN])
{
    enum ipset_cmd cmd = op == SMBAN_OP_BAN ? IPSET_CMD_ADD : IPSET_CMD_DEL;
    uint8_t *first = NULL, *present = NULL;
    uint32_t line = 0;
    uint16_t index;
    int rc, changes = 0;

    *missing = 0;
    if (results)
        memset(results, 0, n);
    if ((rc = lookup(s, &index, err)) < 0)
        return rc;
    if (index == IPSET_INVALID_ID) {
        *missing = 1;
        snprintf(err, SMBAN_ERR_LEN, "ipset %s: no such set", s->name);
        return SMBAN_EIPSET;
    }
    if (!n)
        return 0;
    if (!(first = malloc(n)) || !(present = malloc(n))) {
        free(first);
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    pthread_mutex_lock(&ipset_lock);
    if ((rc = first_occurrences(addrs, n, first)) < 0) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        goto out;
    }
    /* what is there now */
    for (size_t i = 0; i < n; i++) {
        if (!first[i])
            continue;
        if ((rc = test(s, &addrs[i], err)) < 0)
            goto out;
        present[i] = (uint8_t)rc;
    }
    /* one aggregated batch: the changes, and with refresh the re-adds */
    for (size_t i = 0; i < n; i++) {
        int change = first[i] && (op == SMBAN_OP_BAN ? !present[i] : present[i]);
        int again = first[i] && op == SMBAN_OP_BAN && refresh && present[i];
        if (!change && !again)
            continue;
        if (element(s, cmd, &addrs[i], op == SMBAN_OP_BAN
                    ? kernel_timeout(timeouts ? timeouts[i] : 0) : 0, 1) < 0
            || ipset_cmd(s->session, cmd, ++line) < 0) {
            rc = fail(s, op == SMBAN_OP_BAN ? "cannot add" : "cannot delete", err);
            goto out;
        }
        if (change) {
            changes++;
            if (results)
                results[i] = 1;
        }
    }
    if (line && ipset_commit(s->session) < 0) {
        rc = fail(s, op == SMBAN_OP_BAN ? "cannot add" : "cannot delete", err);
        goto out;
    }
    rc = changes;
out:
    if (rc < 0 && results)
        memset(results, 0, n);
    pthread_mutex_unlock(&ipset_lock);
    free(first);
    free(present);
    return rc;
}

int smban_ipset_list(smban_ipset *s, smban_addr **out, size_t *n, char err[SMBAN_ERR_LEN])
{
    smban_addr *v = NULL;
    size_t cnt = 0, cap = 0;
    uint16_t index;
    int rc;
    *out = NULL;
    *n = 0;
    if ((rc = lookup(s, &index, err)) < 0 || index == IPSET_INVALID_ID)
        return rc;
    pthread_mutex_lock(&ipset_lock);
    if ((rc = listing(s, 1, err)) < 0 || !s->out)
        goto out;
    /* "add NAME ADDR[/P] [timeout T]": ADDR is libipset's printing of the
     * kernel's bytes; anything else is not an element */
    for (char *p = s->out; p && *p;) {
        char *eol = strchr(p, '\n'), *w;
        size_t k = strlen(s->name);
        if (eol)
            *eol = 0;
        if (!strncmp(p, "add ", 4) && !strncmp(p + 4, s->name, k) && p[4 + k] == ' ') {
            char e2[SMBAN_ERR_LEN];
            w = p + 5 + k;
            w[strcspn(w, " ")] = 0;
            if (cnt == cap) {
                size_t nc = cap ? 2 * cap : 64;
                smban_addr *nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    snprintf(err, SMBAN_ERR_LEN, "out of memory");
                    rc = SMBAN_ENOMEM;
                    goto out;
                }
                v = nv;
                cap = nc;
            }
            if (smban_addr_parse(w, s->family, s->min_prefix ? 1 : 0, &v[cnt], e2) == 0)
                cnt++;
        }
        p = eol ? eol + 1 : NULL;
    }
out:
    pthread_mutex_unlock(&ipset_lock);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int smban_ipset_flush(smban_ipset *s, char err[SMBAN_ERR_LEN])
{
    size_t elements;
    unsigned refs;
    int exists, rc;
    if ((rc = smban_ipset_header(s, &exists, &elements, &refs, err)) < 0 || !exists)
        return rc;
    pthread_mutex_lock(&ipset_lock);
    begin(s, 0);
    if (ipset_cmd(s->session, IPSET_CMD_FLUSH, 0) < 0)
        rc = fail(s, "cannot flush the set", err);
    pthread_mutex_unlock(&ipset_lock);
    if (rc < 0)
        return rc;
    return elements > 0x7fffffff ? 0x7fffffff : (int)elements;
}

int smban_ipset_destroy(smban_ipset *s, char err[SMBAN_ERR_LEN])
{
    uint16_t index;
    int rc;
    if ((rc = lookup(s, &index, err)) < 0 || index == IPSET_INVALID_ID)
        return rc;
    pthread_mutex_lock(&ipset_lock);
    begin(s, 0);
    rc = ipset_cmd(s->session, IPSET_CMD_DESTROY, 0) < 0
         ? fail(s, "cannot destroy the set", err) : 1;
    pthread_mutex_unlock(&ipset_lock);
    return rc;
}
