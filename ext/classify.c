/*
 * classify.c — the session-aware classifier of sendmail log lines.
 *
 * A line goes through four steps:
 *   1. framing (frame.c): time, host, program, pid, message;
 *   2. the message's own prefix: "QID: ", "QID[n]: " (a continuation part,
 *      never an event) or "NOQUEUE: ";
 *   3. dispatch: each rule's constant text is checked with memcmp/memmem,
 *      and only a rule whose constant is present runs its PCRE2 pattern
 *      (JIT-compiled, match-limited; hitting the limit means no match);
 *   4. the session rules of DESIGN.md, on a bounded table keyed by
 *      (syslog host, program, pid):
 *      - a TLS failure marks its session; that session's "did not issue" or
 *        "lost input" line is tls-fallback (benign), never a suspect;
 *      - a line without an IP (AUTH failure before 8.14.4, a bare "User
 *        unknown", a client field cut by %.100s) takes the session's IP; with
 *        none yet it is pending, and counts when the session reveals its IP;
 *      - an IP that delivered accepted mail (or authenticated) recently is
 *        trusted: its suspect lines never count, even in aggressive mode;
 *      - a session that already counted a failure does not count its
 *        closing "did not issue" again.
 * The core never resolves DNS and never looks for "the first IP on the
 * line": addresses come only from the client field the format defines.
 */
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smban.h"

/* ---- the table, as data ---- */

static const char *const kind_names[] = {
#define SMBAN_KIND(id, name) name,
#include "rules.def"
};

#define CLIENT 1
#define NOCLIENT 0
static const struct {
    const char *name;
    int kind;
    int client;
    const char *why;
} classes[] = {
#define SMBAN_CLASS(id, name, kind, client, why) {name, SMBAN_##kind, client, why},
#include "rules.def"
};
#undef CLIENT
#undef NOCLIENT

#define TWIN 1
#define NOTWIN 0
const smban_rule smban_rules[] = {
#define SMBAN_RULE(cls, where, literal, twin, pattern) \
    {SMBAN_C_##cls, SMBAN_##where, literal, sizeof(literal) - 1, twin, pattern},
#include "rules.def"
};
const size_t smban_nrules = sizeof smban_rules / sizeof smban_rules[0];
#undef TWIN
#undef NOTWIN

const smban_macro smban_macros[] = {
#define SMBAN_MACRO(name, c, twin) {#name, c, twin},
#include "rules.def"
};
const size_t smban_nmacros = sizeof smban_macros / sizeof smban_macros[0];

#define NRULES (sizeof smban_rules / sizeof smban_rules[0])

const char *smban_kind_name(int kind)
{
    return kind >= 0 && kind < SMBAN_NKINDS ? kind_names[kind] : "none";
}

const char *smban_class_name(int cls)
{
    return cls >= 0 && cls < SMBAN_NCLASSES ? classes[cls].name : NULL;
}

int smban_class_kind(int cls)
{
    return cls >= 0 && cls < SMBAN_NCLASSES ? classes[cls].kind : -1;
}

int smban_class_has_client(int cls)
{
    return cls >= 0 && cls < SMBAN_NCLASSES && classes[cls].client;
}

const char *smban_class_why(int cls)
{
    return cls >= 0 && cls < SMBAN_NCLASSES ? classes[cls].why : NULL;
}

/* Expand <NAME> placeholders (recursively, bounded) for one engine. */
char *smban_expand(const char *pattern, int twin)
{
    size_t cap = strlen(pattern) + 1;
    char *cur = malloc(cap);
    if (!cur)
        return NULL;
    memcpy(cur, pattern, cap);
    for (int pass = 0; pass < 8; pass++) {
        int changed = 0;
        size_t n = strlen(cur), need = n + 1;
        /* first compute the size, then build */
        for (int build = 0; build < 2; build++) {
            char *out = NULL, *o = NULL;
            if (build) {
                if (!(out = malloc(need)))
                    goto fail;
                o = out;
            }
            need = 1;
            for (size_t i = 0; i < n;) {
                const smban_macro *m = NULL;
                if (cur[i] == '<') {
                    for (size_t k = 0; k < smban_nmacros; k++) {
                        size_t l = strlen(smban_macros[k].name);
                        if (i + l + 1 < n + 1 && strncmp(cur + i + 1, smban_macros[k].name, l) == 0
                            && cur[i + 1 + l] == '>') {
                            m = &smban_macros[k];
                            break;
                        }
                    }
                }
                if (m) {
                    const char *text = twin ? m->twin : m->c;
                    size_t tl = strlen(text);
                    if (build) {
                        memcpy(o, text, tl);
                        o += tl;
                    }
                    need += tl;
                    i += strlen(m->name) + 2;
                    changed = 1;
                } else {
                    if (build)
                        *o++ = cur[i];
                    need++;
                    i++;
                }
            }
            if (build) {
                *o = '\0';
                free(cur);
                cur = out;
            }
        }
        if (!changed)
            return cur;
    }
fail:
    free(cur);
    return NULL;
}

/* ---- the classifier ---- */

typedef struct {
    pcre2_code *code;       /* NULL: the literal decides */
    int g_ip, g_host, g_hostonly, g_user, g_mech, g_code, g_detail;
    int same_literal_as_prev;
} compiled_rule;

struct smban_classifier {
    smban_options opt;
    char programs[512];
    const char *prog[16];
    size_t prog_len[16];
    size_t nprog;
    compiled_rule rules[NRULES];
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    smban_clock clk;
    smban_table *sessions;
    smban_table *trusted;
    double now;             /* the latest log time seen */
    smban_counters cnt;
};

void smban_options_default(smban_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_sessions = 100000;
    o->session_idle = 3600;
    o->max_trusted = 100000;
    o->trust_seconds = 86400;
}

static int group(pcre2_code *code, const char *name)
{
    int n = pcre2_substring_number_from_name(code, (PCRE2_SPTR)name);
    return n > 0 ? n : -1;
}

static int compile_rules(smban_classifier *c, char err[SMBAN_ERR_LEN])
{
    for (size_t i = 0; i < NRULES; i++) {
        const smban_rule *r = &smban_rules[i];
        compiled_rule *cr = &c->rules[i];
        cr->g_ip = cr->g_host = cr->g_hostonly = cr->g_user = -1;
        cr->g_mech = cr->g_code = cr->g_detail = -1;
        cr->same_literal_as_prev = i > 0 && strcmp(r->literal, smban_rules[i - 1].literal) == 0
                                   && r->where == smban_rules[i - 1].where;
        if (!r->pattern)
            continue;
        char *pat = smban_expand(r->pattern, 0);
        if (!pat) {
            snprintf(err, SMBAN_ERR_LEN, "cannot expand rule %zu", i);
            return SMBAN_ENOMEM;
        }
        int ec;
        PCRE2_SIZE off;
        /* bytes, not UTF: log text is untrusted and need not be UTF-8 */
        cr->code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                 PCRE2_DOLLAR_ENDONLY, &ec, &off, NULL);
        if (!cr->code) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(ec, msg, sizeof msg);
            snprintf(err, SMBAN_ERR_LEN, "rule %zu (%s): %s at %zu",
                     i, smban_class_name(r->cls), (char *)msg, (size_t)off);
            free(pat);
            return SMBAN_EREGEX;
        }
        free(pat);
        /* a JIT failure is not fatal: the interpreter is used instead */
        (void)pcre2_jit_compile(cr->code, PCRE2_JIT_COMPLETE);
        cr->g_ip = group(cr->code, "ip");
        cr->g_host = group(cr->code, "host");
        cr->g_hostonly = group(cr->code, "hostonly");
        cr->g_user = group(cr->code, "user");
        cr->g_mech = group(cr->code, "mech");
        cr->g_code = group(cr->code, "code");
        cr->g_detail = group(cr->code, "detail");
    }
    return 0;
}

static int set_programs(smban_classifier *c, const char *list,
                        char err[SMBAN_ERR_LEN])
{
    if (!list)
        list = "sendmail,sm-mta,sm-acceptingconnections";
    if (strlen(list) >= sizeof c->programs) {
        snprintf(err, SMBAN_ERR_LEN, "program list too long");
        return SMBAN_EINVAL;
    }
    strcpy(c->programs, list);
    c->nprog = 0;
    for (char *p = c->programs; *p;) {
        char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        while (n && p[n - 1] == ' ')
            n--;
        if (n) {
            if (c->nprog == sizeof c->prog / sizeof c->prog[0]) {
                snprintf(err, SMBAN_ERR_LEN, "too many program names (at most 16)");
                return SMBAN_EINVAL;
            }
            c->prog[c->nprog] = p;
            c->prog_len[c->nprog++] = n;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    if (!c->nprog) {
        snprintf(err, SMBAN_ERR_LEN, "no program names given");
        return SMBAN_EINVAL;
    }
    return 0;
}

int smban_classifier_new(const smban_options *o, smban_classifier **out,
                         char err[SMBAN_ERR_LEN])
{
    smban_classifier *c;
    smban_options def;
    int rc;

    *out = NULL;
    if (!o) {
        smban_options_default(&def);
        o = &def;
    }
    if (!(c = calloc(1, sizeof *c))) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    c->opt = *o;
    c->opt.programs = NULL;
    if (o->session_idle <= 0 || o->trust_seconds < 0) {
        snprintf(err, SMBAN_ERR_LEN, "session_idle must be > 0 and trust_seconds >= 0");
        rc = SMBAN_EINVAL;
        goto fail;
    }
    if ((rc = set_programs(c, o->programs, err)) < 0)
        goto fail;
    c->opt.programs = c->programs;
    if ((rc = smban_table_new(o->max_sessions, o->session_idle, &c->sessions, err)) < 0)
        goto fail;
    if ((rc = smban_table_new(o->max_trusted ? o->max_trusted : 1, o->trust_seconds,
                              &c->trusted, err)) < 0)
        goto fail;
    if ((rc = compile_rules(c, err)) < 0)
        goto fail;
    c->mctx = pcre2_match_context_create(NULL);
    c->md = pcre2_match_data_create(32, NULL);
    if (!c->mctx || !c->md) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        rc = SMBAN_ENOMEM;
        goto fail;
    }
    /* a pathological line costs bounded time; hitting a limit is no match */
    pcre2_set_match_limit(c->mctx, 200000);
    pcre2_set_depth_limit(c->mctx, 5000);
    smban_clock_init(&c->clk, o->ref_time);
    *out = c;
    return 0;
fail:
    smban_classifier_free(c);
    return rc;
}

void smban_classifier_free(smban_classifier *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NRULES; i++)
        pcre2_code_free(c->rules[i].code);
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    smban_table_free(c->sessions);
    smban_table_free(c->trusted);
    free(c);
}

void smban_classifier_reset(smban_classifier *c)
{
    smban_table_clear(c->sessions);
    smban_table_clear(c->trusted);
}

const smban_counters *smban_classifier_counters(const smban_classifier *c)
{
    return &c->cnt;
}

void smban_classifier_table_stats(const smban_classifier *c,
                                  smban_table_stats *sessions,
                                  smban_table_stats *trusted)
{
    smban_table_get_stats(c->sessions, sessions);
    smban_table_get_stats(c->trusted, trusted);
}

const smban_options *smban_classifier_options(const smban_classifier *c)
{
    return &c->opt;
}

/* ---- helpers ---- */

static int is_alnum(int ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

/* "QID: ", "QID[n]: " or "NOQUEUE: " at the start of the message.  Returns
 * the length of the prefix (0: none); *cont is set for a continuation. */
static size_t queue_id(const char *p, size_t n, smban_span *qid, int *cont)
{
    size_t i = 0;
    *cont = 0;
    if (n >= 9 && memcmp(p, "NOQUEUE: ", 9) == 0)
        return 9;
    while (i < n && i <= 20 && is_alnum((unsigned char)p[i]))
        i++;
    if (i < 12 || i > 20 || i >= n)
        return 0;
    for (size_t k = i - 5; k < i; k++)
        if (p[k] < '0' || p[k] > '9')
            return 0;
    if (p[i] == ':') {
        qid->p = p;
        qid->n = i;
        return i + 1 < n && p[i + 1] == ' ' ? i + 2 : i + 1;
    }
    if (p[i] == '[') {
        size_t k = i + 1;
        while (k < n && p[k] >= '0' && p[k] <= '9')
            k++;
        if (k > i + 1 && k + 1 < n && p[k] == ']' && p[k + 1] == ':') {
            *cont = 1;
            return 0;
        }
    }
    return 0;
}

/* The pid a queue id ends with (sendmail: 8 characters, then the pid). */
static long qid_pid(smban_span qid)
{
    size_t start = qid.n >= 14 ? 8 : 7;
    long pid = 0;
    for (size_t i = start; i < qid.n; i++) {
        if (qid.p[i] < '0' || qid.p[i] > '9')
            return -1;
        pid = pid * 10 + (qid.p[i] - '0');
    }
    return pid;
}

/* Validate and normalise an address: sets ev->family, addr and ip. */
static void set_ip(smban_event *ev, const char *p, size_t n)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return;
    memcpy(buf, p, n);
    buf[n] = '\0';
    int af = memchr(buf, ':', n) ? AF_INET6 : AF_INET;
    if (inet_pton(af, buf, ev->addr) != 1)
        return;
    if (!inet_ntop(af, ev->addr, ev->ip, sizeof ev->ip))
        return;
    ev->family = af == AF_INET ? 4 : 6;
}

static smban_span grab(const PCRE2_SIZE *ov, int g, const char *s)
{
    smban_span sp = {NULL, 0};
    if (g > 0 && ov[2 * g] != PCRE2_UNSET) {
        sp.p = s + ov[2 * g];
        sp.n = ov[2 * g + 1] - ov[2 * g];
    }
    return sp;
}

static const char *memmem_(const char *h, size_t hn, const char *n, size_t nn)
{
    return memmem(h, hn, n, nn);
}

/* Run the rules whose constant text the message holds; returns the rule
 * index that matched, or -1. */
static int dispatch(smban_classifier *c, const char *s, size_t n)
{
    /* START rules first: their constants hold characters no host name has,
     * so a message opening with one is not a client-first message */
    for (size_t i = 0; i < NRULES; i++) {
        const smban_rule *r = &smban_rules[i];
        if (r->where != SMBAN_START || n < r->literal_len || s[0] != r->literal[0]
            || memcmp(s, r->literal, r->literal_len) != 0)
            continue;
        if (!c->rules[i].code)
            return (int)i;
        int rc = pcre2_match(c->rules[i].code, (PCRE2_SPTR)s, n, 0, 0, c->md, c->mctx);
        if (rc > 0)
            return (int)i;
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
            c->cnt.match_limit++;
    }
    int present = 0;
    for (size_t i = 0; i < NRULES; i++) {
        const smban_rule *r = &smban_rules[i];
        if (r->where == SMBAN_START)
            continue;
        if (!c->rules[i].same_literal_as_prev) {
            if (r->where == SMBAN_INSIDE)
                present = memmem_(s, n, r->literal, r->literal_len) != NULL;
            else
                present = n >= r->literal_len
                          && memcmp(s + n - r->literal_len, r->literal, r->literal_len) == 0;
        }
        if (!present)
            continue;
        int rc = pcre2_match(c->rules[i].code, (PCRE2_SPTR)s, n, 0, 0, c->md, c->mctx);
        if (rc > 0)
            return (int)i;
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
            c->cnt.match_limit++;
    }
    return -1;
}

static int program_allowed(const smban_classifier *c, const char *p, size_t n)
{
    for (size_t i = 0; i < c->nprog; i++)
        if (c->prog_len[i] == n && memcmp(c->prog[i], p, n) == 0)
            return 1;
    return 0;
}

static void ip_key(const smban_event *ev, uint64_t *k0, uint64_t *k1)
{
    memcpy(k0, ev->addr, 8);
    memcpy(k1, ev->addr + 8, 8);
    *k1 ^= (uint64_t)ev->family << 56;
}

static int trusted(smban_classifier *c, const smban_event *ev)
{
    uint64_t k0, k1;
    if (!ev->family || c->opt.trust_seconds <= 0)
        return 0;
    ip_key(ev, &k0, &k1);
    smban_session *t = smban_table_peek(c->trusted, k0, k1);
    return t && t->last >= c->now - c->opt.trust_seconds;
}

static void trust(smban_classifier *c, const smban_event *ev)
{
    uint64_t k0, k1;
    if (!ev->family || c->opt.trust_seconds <= 0)
        return;
    ip_key(ev, &k0, &k1);
    smban_table_get(c->trusted, k0, k1, c->now, 1);
}

static uint16_t sat_inc(uint16_t v, int by)
{
    return v + by > 65535 ? 65535 : (uint16_t)(v + by);
}

/* Decimal value of a span, or -1. */
static long span_long(smban_span s)
{
    long v = 0;
    if (!s.p || !s.n)
        return -1;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        v = v * 10 + (s.p[i] - '0');
    }
    return v;
}

/* The session rules (see the top of this file). */
static void apply_session(smban_classifier *c, const smban_frame *f,
                          const smban_span *qid, smban_event *ev)
{
    int own = ev->cls;
    int kind = smban_class_kind(own);
    int ip_from_line = ev->family != 0;
    smban_session *s = NULL;
    long key_pid = f->pid >= 0 ? f->pid : (qid->p ? qid_pid(*qid) : -1);

    if (key_pid >= 0) {
        uint64_t k0 = smban_hash_bytes(f->host, f->host_len, 0)
                    ^ smban_hash_bytes(f->prog, f->prog_len, 1) * 31;
        s = smban_table_get(c->sessions, k0, (uint64_t)key_pid, c->now, 1);
    }

    if (s && ip_from_line) {
        s->family = (uint8_t)ev->family;
        memcpy(s->addr, ev->addr, 16);
    } else if (s && s->family) {
        ev->family = s->family;
        memcpy(ev->addr, s->addr, 16);
        inet_ntop(s->family == 4 ? AF_INET : AF_INET6, s->addr, ev->ip, sizeof ev->ip);
    }

    /* the line's own verdict */
    int fails = 0, dup = 0;
    if (own == SMBAN_C_USER_UNKNOWN && s && ev->detail.p) {
        uint32_t h = (uint32_t)smban_hash_bytes(ev->detail.p, ev->detail.n, 7) | 1;
        for (int i = 0; i < SMBAN_NRCPT && i < s->nrcpt; i++)
            if (s->rcpt[i] == h)
                dup = 1;
        if (!dup)
            s->rcpt[s->nrcpt++ % SMBAN_NRCPT] = h;
        if (s->nrcpt >= 2 * SMBAN_NRCPT)
            s->nrcpt = SMBAN_NRCPT;
    }
    if ((own == SMBAN_C_NULL_SESSION || own == SMBAN_C_LOST_INPUT) && s) {
        if (s->flags & SMBAN_S_TLS_FAILED) {
            ev->cls = SMBAN_C_TLS_FALLBACK;
            ev->via = own;
            kind = SMBAN_BENIGN;
        } else if ((s->flags & SMBAN_S_COUNTED) || s->pending_ban) {
            dup = 1;   /* the session's AUTH failures already count */
        }
    }
    if (kind == SMBAN_BAN && !dup)
        fails = 1;
    else if (kind == SMBAN_SUSPECT && !dup)
        fails = c->opt.aggressive ? 1 : 0;
    if (fails && !ev->family) {
        /* no address yet: the session may reveal it later */
        if (s) {
            if (kind == SMBAN_BAN)
                s->pending_ban = sat_inc(s->pending_ban, 1);
            else
                s->pending_suspect = sat_inc(s->pending_suspect, 1);
            if (s->pending_cls < 0)
                s->pending_cls = (int16_t)own;
            c->cnt.pending++;
        }
        fails = 0;
    }
    if (kind == SMBAN_SUSPECT && fails && trusted(c, ev))
        fails = 0;

    /* failures waiting for this session's address */
    if (s && ip_from_line && (s->pending_ban || s->pending_suspect)) {
        int extra = s->pending_ban;
        if (c->opt.aggressive && !trusted(c, ev))
            extra += s->pending_suspect;
        if (extra && !fails) {
            ev->via = ev->cls;
            ev->cls = s->pending_cls;
            kind = smban_class_kind(ev->cls);
        }
        fails += extra;
        c->cnt.resolved += (uint64_t)(s->pending_ban + s->pending_suspect);
        s->pending_ban = s->pending_suspect = 0;
        s->pending_cls = -1;
    }
    ev->kind = kind;
    ev->failures = fails;

    if (s) {
        if (own == SMBAN_C_TLS_FAILURE || own == SMBAN_C_TLS_ERROR)
            s->flags |= SMBAN_S_TLS_FAILED;
        if (fails)
            s->flags |= SMBAN_S_COUNTED;
    }
    if (ev->family && (own == SMBAN_C_AUTH_SUCCESS
                       || (own == SMBAN_C_ENVELOPE && span_long(ev->detail) > 0)))
        trust(c, ev);
    /* "did not issue" and "lost input" end a session */
    if (s && (own == SMBAN_C_NULL_SESSION || own == SMBAN_C_LOST_INPUT))
        smban_table_del(c->sessions, s);
}

int smban_classify(smban_classifier *c, const char *line, size_t len,
                   smban_event *ev)
{
    smban_frame f;
    smban_span qid = {NULL, 0};
    int cont;

    c->cnt.lines++;
    if (len > SMBAN_MAX_LINE) {
        c->cnt.skipped_long++;
        return 0;
    }
    if (memchr(line, '\0', len)) {
        c->cnt.skipped_nul++;
        return 0;
    }
    if (smban_frame_parse(line, len, &c->clk, &f) < 0) {
        c->cnt.unframed++;
        return 0;
    }
    if (!program_allowed(c, f.prog, f.prog_len)) {
        c->cnt.other_program++;
        return 0;
    }
    if (f.has_time)
        c->now = f.time;

    size_t skip = queue_id(f.msg, f.msg_len, &qid, &cont);
    if (cont) {
        c->cnt.continuation++;
        return 0;
    }
    const char *s = f.msg + skip;
    size_t n = f.msg_len - skip;
    int ri = dispatch(c, s, n);
    if (ri < 0)
        return 0;

    const smban_rule *r = &smban_rules[ri];
    const compiled_rule *cr = &c->rules[ri];
    memset(ev, 0, sizeof *ev);
    ev->cls = r->cls;
    ev->via = -1;
    ev->time = f.time;
    ev->has_time = f.has_time;
    ev->pid = f.pid;
    ev->qid = qid;
    ev->prog.p = f.prog;
    ev->prog.n = f.prog_len;
    if (cr->code) {
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        smban_span ip = grab(ov, cr->g_ip, s);
        if (ip.p)
            set_ip(ev, ip.p, ip.n);
        ev->host = grab(ov, cr->g_host, s);
        if (!ev->host.p || !ev->host.n)
            ev->host = grab(ov, cr->g_hostonly, s);
        ev->user = grab(ov, cr->g_user, s);
        ev->mech = grab(ov, cr->g_mech, s);
        ev->detail = grab(ov, cr->g_detail, s);
        smban_span code = grab(ov, cr->g_code, s);
        if (code.p && code.n) {
            int neg = code.p[0] == '-';
            smban_span digits = {code.p + neg, code.n - (size_t)neg};
            long v = span_long(digits);
            if (v >= 0) {
                ev->code = neg ? -v : v;
                ev->has_code = 1;
            }
        }
    }
    ev->kind = smban_class_kind(ev->cls);
    if (smban_class_has_client(ev->cls))
        apply_session(c, &f, &qid, ev);
    c->cnt.recognised++;
    return 1;
}

int smban_utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char ch = p[i];
        if (ch < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (ch >= 0xC2 && ch <= 0xDF) {
            need = 1;
            cp = ch & 0x1F;
        } else if (ch >= 0xE0 && ch <= 0xEF) {
            need = 2;
            cp = ch & 0x0F;
        } else if (ch >= 0xF0 && ch <= 0xF4) {
            need = 3;
            cp = ch & 0x07;
        } else {
            return 0;
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n || (p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
            || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += need + 1;
    }
    return 1;
}

int64_t smban_classify_buffer(smban_classifier *c, const char *buf, size_t len,
                              uint64_t first_line, smban_event_fn fn, void *ctx)
{
    const char *p = buf, *end = buf + len;
    uint64_t lineno = first_line;
    smban_event ev;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (!smban_utf8_valid((const unsigned char *)p, n))
            c->cnt.not_utf8++;
        if (smban_classify(c, p, n, &ev) && fn) {
            int rc = fn(ctx, lineno, p, n, &ev);
            if (rc < 0)
                return rc;
        }
        lineno++;
        p = nl ? nl + 1 : end;
    }
    return (int64_t)(lineno - first_line);
}
