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
 *   4. the session rules (README.md, "Session rules"), on a bounded
 *      table keyed by (syslog host, program, pid):
 *      - a TLS failure marks its session; that session's "did not issue" or
 *        "lost input" line is tls-fallback (benign), never a suspect;
 *      - a line without an IP (AUTH failure before 8.14.4, a bare "User
 *        unknown", a client field cut by %.100s) takes the session's IP; with
 *        none yet it is pending, and counts when its transaction (the same
 *        queue id) reveals its IP; without a queue id it counts for nobody;
 *      - an IP that delivered accepted mail (or authenticated) recently is
 *        trusted: its suspect lines never count, even in aggressive mode;
 *      - a peer that fell back from a failed STARTTLS is excused its
 *        disconnects, rate limits and DNS failures for tls_grace;
 *      - a session that already counted a failure does not count its
 *        closing "did not issue" again.
 *    Each event says which rule matched (rule), whether its client
 *    delivered mail (delivered) and why it counted or did not (reason: the
 *    SMBAN_REASON list of rules.def), so that no caller re-derives them.
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

static const struct {
    const char *name;
    const char *why;
} reasons[] = {
#define SMBAN_REASON(id, name, why) {name, why},
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
#define SMBAN_RULE(cls, where, literal, twin, fields, anchor, pattern) \
    {SMBAN_C_##cls, SMBAN_##where, literal, sizeof(literal) - 1, twin, fields, \
     SMBAN_##anchor, pattern},
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

int smban_class_by_name(const char *name, size_t n)
{
    for (int i = 0; i < SMBAN_NCLASSES; i++)
        if (strlen(classes[i].name) == n && memcmp(classes[i].name, name, n) == 0)
            return i;
    return -1;
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

const char *smban_reason_name(int reason)
{
    return reason >= 0 && reason < SMBAN_NREASONS ? reasons[reason].name : NULL;
}

const char *smban_reason_why(int reason)
{
    return reason >= 0 && reason < SMBAN_NREASONS ? reasons[reason].why : NULL;
}

/* Expand <NAME> placeholders (recursively, bounded) for one engine. */
char *smban_expand(const char *pattern, int twin)
{
    size_t cap = strlen(pattern) + 1;
    char *cur = malloc(cap);
    if (!cur)
        return NULL;
    memcpy(cur, pattern, cap);
    for (int pass = 0; pass < 16; pass++) {
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

/* The longest envelope sender sendmail logs whole (from=%.200s). */
#define SMBAN_FROM_MAX 200

/* The named groups a rule yields, as spans of the message. */
typedef struct {
    smban_span ip, host, hostonly, user, mech, code, detail, size;
} groups;

typedef int (*fast_parser)(const char *s, size_t n, groups *g);

typedef struct {
    pcre2_code *code;       /* NULL: the literal decides */
    fast_parser fast;       /* a hand-written equivalent of code, or NULL */
    int jit;                /* 1: JIT-compiled, 0: not yet tried, -1: failed */
    int g_ip, g_host, g_hostonly, g_user, g_mech, g_code, g_detail, g_size;
    int same_literal_as_prev;
} compiled_rule;

struct smban_classifier {
    smban_options opt;
    char programs[512];
    const char *prog[16];
    size_t prog_len[16];
    size_t nprog;
    compiled_rule rules[NRULES];
    uint8_t start_n[256];               /* START rules by first byte, in order */
    uint8_t start_idx[256][NRULES];
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    pcre2_match_data *md;
    smban_clock clk;
    smban_table *sessions;
    smban_table *trusted;
    smban_table *graced;        /* peers that fell back from STARTTLS (rule 6) */
    uint8_t kind[SMBAN_NCLASSES];     /* each class's kind under the policy */
    uint8_t ignored[SMBAN_NCLASSES];  /* never counted by the policy */
    double now;             /* the latest log time seen */
    char last_hp[128];      /* host and program of the last session key */
    size_t last_host_len, last_prog_len;
    uint64_t last_k0;
    smban_counters cnt;
};

void smban_options_default(smban_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_sessions = SMBAN_DEFAULT_MAX_SESSIONS;
    o->session_idle = SMBAN_DEFAULT_SESSION_IDLE;
    o->max_trusted = SMBAN_DEFAULT_MAX_TRUSTED;
    o->trust_seconds = SMBAN_DEFAULT_TRUST_SECONDS;
    o->tls_grace = SMBAN_DEFAULT_TLS_GRACE;
}

/* Character classes of the hot loops, as one table. */
/* CH_HOST: the punctuation a client field's host may hold besides letters
 * and digits: what cleanstrcpy leaves of an ident user, '@' after it, ':'
 * of "IDENT:", and '-' '.' '_' of a PTR name (rules.def, CLIENT) */
enum { CH_ALNUM = 1, CH_IP = 2, CH_HOST = 4 };
static const uint8_t chclass[256] = {
    [':'] = CH_IP | CH_HOST, ['.'] = CH_IP | CH_HOST,
    ['!'] = CH_HOST, ['#'] = CH_HOST, ['$'] = CH_HOST, ['%'] = CH_HOST, ['&'] = CH_HOST,
    ['\''] = CH_HOST, ['*'] = CH_HOST, ['+'] = CH_HOST, ['/'] = CH_HOST, ['^'] = CH_HOST,
    ['_'] = CH_HOST, ['`'] = CH_HOST, ['{'] = CH_HOST, ['|'] = CH_HOST, ['}'] = CH_HOST,
    ['~'] = CH_HOST, ['@'] = CH_HOST, ['-'] = CH_HOST,
    ['0'] = CH_ALNUM | CH_IP, ['1'] = CH_ALNUM | CH_IP, ['2'] = CH_ALNUM | CH_IP,
    ['3'] = CH_ALNUM | CH_IP, ['4'] = CH_ALNUM | CH_IP, ['5'] = CH_ALNUM | CH_IP,
    ['6'] = CH_ALNUM | CH_IP, ['7'] = CH_ALNUM | CH_IP, ['8'] = CH_ALNUM | CH_IP,
    ['9'] = CH_ALNUM | CH_IP,
    ['A'] = CH_ALNUM | CH_IP, ['B'] = CH_ALNUM | CH_IP, ['C'] = CH_ALNUM | CH_IP,
    ['D'] = CH_ALNUM | CH_IP, ['E'] = CH_ALNUM | CH_IP, ['F'] = CH_ALNUM | CH_IP,
    ['a'] = CH_ALNUM | CH_IP, ['b'] = CH_ALNUM | CH_IP, ['c'] = CH_ALNUM | CH_IP,
    ['d'] = CH_ALNUM | CH_IP, ['e'] = CH_ALNUM | CH_IP, ['f'] = CH_ALNUM | CH_IP,
    ['G'] = CH_ALNUM, ['H'] = CH_ALNUM, ['I'] = CH_ALNUM, ['J'] = CH_ALNUM, ['K'] = CH_ALNUM,
    ['L'] = CH_ALNUM, ['M'] = CH_ALNUM, ['N'] = CH_ALNUM, ['O'] = CH_ALNUM, ['P'] = CH_ALNUM,
    ['Q'] = CH_ALNUM, ['R'] = CH_ALNUM, ['S'] = CH_ALNUM, ['T'] = CH_ALNUM, ['U'] = CH_ALNUM,
    ['V'] = CH_ALNUM, ['W'] = CH_ALNUM, ['X'] = CH_ALNUM, ['Y'] = CH_ALNUM, ['Z'] = CH_ALNUM,
    ['g'] = CH_ALNUM, ['h'] = CH_ALNUM, ['i'] = CH_ALNUM, ['j'] = CH_ALNUM, ['k'] = CH_ALNUM,
    ['l'] = CH_ALNUM, ['m'] = CH_ALNUM, ['n'] = CH_ALNUM, ['o'] = CH_ALNUM, ['p'] = CH_ALNUM,
    ['q'] = CH_ALNUM, ['r'] = CH_ALNUM, ['s'] = CH_ALNUM, ['t'] = CH_ALNUM, ['u'] = CH_ALNUM,
    ['v'] = CH_ALNUM, ['w'] = CH_ALNUM, ['x'] = CH_ALNUM, ['y'] = CH_ALNUM, ['z'] = CH_ALNUM,
};

/* ---- hand-written parsers for the hottest info lines ----
 *
 * Most lines of a busy server are envelopes (from=) and TLS sessions; their
 * patterns would scan the whole line with backtracking.  These parsers give
 * the same groups as the rule table's patterns (placeholders CLIENT and
 * RELAY expanded) -- a test runs every fixture both ways -- and the
 * classifier option regex_only turns them off. */

static int is_ipchar(int ch)
{
    return chclass[(unsigned char)ch] & CH_IP;
}

/* "[" [IPv6:] ipchars "]" [" (" [a-z ]* [")"]] up to exactly e. */
static int client_bracket(const char *p, const char *e, groups *g)
{
    if (p >= e || *p != '[')
        return 0;
    p++;
    if (e - p >= 5 && memcmp(p, "IPv6:", 5) == 0)
        p += 5;
    const char *ip = p;
    while (p < e && is_ipchar((unsigned char)*p))
        p++;
    if (p >= e || *p != ']')
        return 0;
    g->ip.p = ip;
    g->ip.n = (size_t)(p - ip);
    p++;
    if (p == e)
        return 1;
    if (e - p < 2 || p[0] != ' ' || p[1] != '(')
        return 0;
    for (p += 2; p < e && ((*p >= 'a' && *p <= 'z') || *p == ' '); p++)
        ;
    if (p < e && *p == ')')
        p++;
    return p == e;
}

/* The CLIENT placeholder matching exactly [p, e). */
static int client_field(const char *p, const char *e, groups *g)
{
    const char *q = p;
    /* host: a run of the characters an ident user and a PTR name hold,
     * then a space (no quote, angle bracket, parenthesis, backslash or '=':
     * an address echoed at the start of a message cannot pass for one) */
    while (q < e && (chclass[(unsigned char)*q] & (CH_ALNUM | CH_HOST)))
        q++;
    if (q < e && *q == ' ' && client_bracket(q + 1, e, g)) {
        g->host.p = p;
        g->host.n = (size_t)(q - p);
        return 1;
    }
    /* host: "[addr]" (no PTR: sendmail prints the address twice) */
    if (p < e && *p == '[') {
        q = p + 1;
        while (q < e && (chclass[(unsigned char)*q] & (CH_ALNUM | CH_IP)))
            q++;
        if (q + 1 < e && *q == ']' && q[1] == ' ' && client_bracket(q + 2, e, g)) {
            g->host.p = p;
            g->host.n = (size_t)(q + 1 - p);
            return 1;
        }
    }
    g->ip.p = NULL;
    return client_bracket(p, e, g);
}

/* The RELAY placeholder over a comma-free field [p, e). */
static void relay_field(const char *p, const char *e, groups *g)
{
    if (!client_field(p, e, g)) {
        g->ip.p = g->host.p = NULL;
        g->hostonly.p = p;
        g->hostonly.n = (size_t)(e - p);
    }
}

static const char *digits_end(const char *p, const char *e)
{
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p;
}

/* ---- the address grammar (rules.def: QSTR, COMMENT, DLIT, ANGLE, BARE,
 * FIELD) for the envelope's parser: the same units in the same order, each
 * repeat possessive.  Each function returns the end of what it parsed, or
 * NULL when the structure at p does not parse.  The pattern is the
 * reference: a test and ext/fuzz/fuzz_session.c run both on every input. */

/* What ends an ordinary character in each context. */
enum { G_QSTR, G_COMMENT, G_DLIT, G_ANGLE, G_BARE };

#define G_ALL ((1 << G_QSTR) | (1 << G_COMMENT) | (1 << G_DLIT) | (1 << G_ANGLE) | (1 << G_BARE))
#define G_PAREN ((1 << G_COMMENT) | (1 << G_ANGLE) | (1 << G_BARE))
#define G_SQUARE ((1 << G_DLIT) | (1 << G_ANGLE) | (1 << G_BARE))
#define G_POINTY ((1 << G_ANGLE) | (1 << G_BARE))
/* bit ctx of g_stops[ch]: ch ends an ordinary character in ctx (a table:
 * this runs for every byte of every envelope's sender) */
static const uint8_t g_stops[256] = {
    ['\\'] = G_ALL, ['"'] = G_ALL,
    ['('] = G_PAREN, [')'] = G_PAREN,
    ['['] = G_SQUARE, [']'] = G_SQUARE,
    ['<'] = G_POINTY, ['>'] = G_POINTY,
    [','] = 1 << G_BARE, [' '] = 1 << G_BARE, ['\t'] = 1 << G_BARE, ['\n'] = 1 << G_BARE,
    ['\v'] = 1 << G_BARE, ['\f'] = 1 << G_BARE, ['\r'] = 1 << G_BARE,
};

static int g_stop(int ctx, unsigned char ch)
{
    return (g_stops[ch] >> ctx) & 1;
}

/* A backslash unit at p (*p == '\\'): four backslashes, or a shorter run
 * and the ordinary character after it. */
static const char *g_backslash(int ctx, const char *p, const char *e)
{
    size_t k = 0;
    while (p + k < e && p[k] == '\\' && k < 4)
        k++;
    if (k == 4)
        return p + 4;
    if (p + k < e && !g_stop(ctx, (unsigned char)p[k]))
        return p + k + 1;
    return NULL;
}

/* The plain units of ctx from p on (backslashes, ordinary characters), and
 * in ANGLE and BARE the structures; returns where they stop. */
static const char *g_comment(const char *p, const char *e, int depth);
static const char *g_quoted(const char *p, const char *e, char open, char close, int ctx);

static const char *g_angle(const char *p, const char *e, int depth);

/* depth: how many more levels of comment (in COMMENT) or of angle brackets
 * (in ANGLE) may open here. */
static const char *g_units(int ctx, const char *p, const char *e, int depth)
{
    while (p < e) {
        /* a character no context stops at opens no structure either (the
         * openers and the backslash are in g_stops): ordinary everywhere */
        if (!g_stops[(unsigned char)*p]) {
            p++;
            continue;
        }
        const char *q = NULL;
        unsigned char ch = (unsigned char)*p;
        if (ctx >= G_ANGLE && ch == '"')
            q = g_quoted(p, e, '"', '"', G_QSTR);
        else if ((ctx >= G_ANGLE || (ctx == G_COMMENT && depth > 1)) && ch == '(')
            q = g_comment(p, e, ctx == G_COMMENT ? depth - 1 : 3);
        else if (ctx >= G_ANGLE && ch == '[')
            q = g_quoted(p, e, '[', ']', G_DLIT);
        else if (ctx == G_ANGLE && depth > 1 && ch == '<')
            q = g_angle(p, e, depth - 1);
        else if (ch == '\\')
            q = g_backslash(ctx, p, e);
        else if (!g_stop(ctx, ch))
            q = p + 1;
        if (!q)
            return p;
        p = q;
    }
    return p;
}

static const char *g_quoted(const char *p, const char *e, char open, char close, int ctx)
{
    if (p >= e || *p != open)
        return NULL;
    p = g_units(ctx, p + 1, e, 0);
    return p < e && *p == close ? p + 1 : NULL;
}

static const char *g_comment(const char *p, const char *e, int depth)
{
    if (p >= e || *p != '(')
        return NULL;
    p = g_units(G_COMMENT, p + 1, e, depth);
    return p < e && *p == ')' ? p + 1 : NULL;
}

static const char *g_angle(const char *p, const char *e, int depth)
{
    if (p >= e || *p != '<')
        return NULL;
    p = g_units(G_ANGLE, p + 1, e, depth);
    return p < e && *p == '>' ? p + 1 : NULL;
}

/* <FIELD>: an address in angle brackets, else a bare one (maybe empty). */
static const char *g_field(const char *p, const char *e)
{
    const char *q = g_angle(p, e, 2);
    return q ? q : g_units(G_BARE, p, e, 0);
}

/* ^from=<FIELD>, size=(?<size>\d++), class=-?\d++, nrcpts=(?<detail>\d++)(?:, .*)?, relay=<RELAY>$ */
static int fast_envelope(const char *s, size_t n, groups *g)
{
    const char *e = s + n, *d, *x, *sz, *sz_end, *nr, *nr_end;
    if (n < 5 || memcmp(s, "from=", 5) != 0)
        return 0;
    x = g_field(s + 5, e);
    if (e - x < 7 || memcmp(x, ", size=", 7) != 0)
        return 0;
    sz = x + 7;
    sz_end = x = digits_end(sz, e);
    if (x == sz || e - x < 8 || memcmp(x, ", class=", 8) != 0)
        return 0;
    d = x + 8;
    if (d < e && *d == '-')
        d++;
    x = digits_end(d, e);
    if (x == d || e - x < 9 || memcmp(x, ", nrcpts=", 9) != 0)
        return 0;
    nr = x + 9;
    nr_end = digits_end(nr, e);
    if (nr_end == nr)
        return 0;
    /* the last ", relay=": a client field holds no comma, so no earlier
     * one can be followed by a field running to the end */
    const char *rel = NULL, *q;
    for (q = e; (q = memrchr(nr_end, ',', (size_t)(q - nr_end)));) {
        if (e - q >= 8 && memcmp(q, ", relay=", 8) == 0) {
            rel = q;
            break;
        }
    }
    if (!rel || (rel != nr_end && (rel < nr_end + 2 || nr_end[0] != ',' || nr_end[1] != ' ')))
        return 0;
    if (memchr(rel + 8, ',', (size_t)(e - rel - 8)))
        return 0;
    g->size.p = sz;
    g->size.n = (size_t)(sz_end - sz);
    g->detail.p = nr;
    g->detail.n = (size_t)(nr_end - nr);
    relay_field(rel + 8, e, g);
    return 1;
}

/* ^STARTTLS=server, relay=<RELAY>, version=(?<detail>[^,]*+) */
static int fast_tls_session(const char *s, size_t n, groups *g)
{
    static const char pre[] = "STARTTLS=server, relay=";
    const char *e = s + n, *p = s + sizeof pre - 1;
    if (n < sizeof pre - 1 || memcmp(s, pre, sizeof pre - 1) != 0)
        return 0;
    const char *comma = memchr(p, ',', (size_t)(e - p));
    if (!comma || e - comma < 10 || memcmp(comma, ", version=", 10) != 0)
        return 0;
    relay_field(p, comma, g);
    const char *d = comma + 10, *x = memchr(d, ',', (size_t)(e - d));
    g->detail.p = d;
    g->detail.n = (size_t)((x ? x : e) - d);
    return 1;
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
        if (r->where == SMBAN_START) {
            unsigned char first = (unsigned char)r->literal[0];
            c->start_idx[first][c->start_n[first]++] = (uint8_t)i;
        }
        cr->g_ip = cr->g_host = cr->g_hostonly = cr->g_user = -1;
        cr->g_mech = cr->g_code = cr->g_detail = cr->g_size = -1;
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
        /* JIT-compiled on first use (see run_rule): most logs use a few rules */
        cr->g_ip = group(cr->code, "ip");
        cr->g_host = group(cr->code, "host");
        cr->g_hostonly = group(cr->code, "hostonly");
        cr->g_user = group(cr->code, "user");
        cr->g_mech = group(cr->code, "mech");
        cr->g_code = group(cr->code, "code");
        cr->g_detail = group(cr->code, "detail");
        cr->g_size = group(cr->code, "size");
        if (!c->opt.regex_only) {
            if (r->cls == SMBAN_C_ENVELOPE)
                cr->fast = fast_envelope;
            else if (r->cls == SMBAN_C_TLS_SESSION)
                cr->fast = fast_tls_session;
        }
    }
    return 0;
}

static int set_programs(smban_classifier *c, const char *list,
                        char err[SMBAN_ERR_LEN])
{
    if (!list)
        list = SMBAN_DEFAULT_PROGRAMS;
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

/* One list of the policy: each class named moves to kind (SMBAN_BAN,
 * SMBAN_SUSPECT; SMBAN_BENIGN for ignore).  A name that is no class, a
 * class whose nature is benign or info, or one named twice, is an error. */
static int set_policy(smban_classifier *c, const char *list, int kind, const char *opt,
                      uint8_t named[SMBAN_NCLASSES], char err[SMBAN_ERR_LEN])
{
    for (const char *p = list ? list : ""; *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ", \t");
        if (!n)
            break;
        int cls = smban_class_by_name(p, n);
        if (cls < 0) {
            snprintf(err, SMBAN_ERR_LEN, "%s: '%.*s' is not a class (python3 -c 'import "
                     "smban; print(smban.CLASSES)' lists them)", opt, (int)(n > 64 ? 64 : n), p);
            return SMBAN_EINVAL;
        }
        int nature = classes[cls].kind;
        if (nature != SMBAN_BAN && nature != SMBAN_SUSPECT) {
            snprintf(err, SMBAN_ERR_LEN, "%s: '%s' is %s by nature and never counts: "
                     "only ban and suspect classes can move", opt, classes[cls].name,
                     kind_names[nature]);
            return SMBAN_EINVAL;
        }
        if (named[cls]) {
            snprintf(err, SMBAN_ERR_LEN, "%s: '%s' is named twice in the policy", opt,
                     classes[cls].name);
            return SMBAN_EINVAL;
        }
        named[cls] = 1;
        c->kind[cls] = (uint8_t)kind;
        c->ignored[cls] = opt[0] == 'i';
        p += n;
    }
    return 0;
}

static int set_policies(smban_classifier *c, const smban_options *o,
                        char err[SMBAN_ERR_LEN])
{
    uint8_t named[SMBAN_NCLASSES] = {0};
    int rc;
    for (int i = 0; i < SMBAN_NCLASSES; i++)
        c->kind[i] = (uint8_t)classes[i].kind;
    if ((rc = set_policy(c, o->ban, SMBAN_BAN, "ban", named, err)) < 0
        || (rc = set_policy(c, o->suspect, SMBAN_SUSPECT, "suspect", named, err)) < 0
        || (rc = set_policy(c, o->ignore, SMBAN_BENIGN, "ignore", named, err)) < 0)
        return rc;
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
    if (!(o->session_idle > 0) || !(o->trust_seconds >= 0) || !(o->tls_grace >= 0)) {
        snprintf(err, SMBAN_ERR_LEN,
                 "session_idle must be > 0, trust_seconds and tls_grace >= 0");
        rc = SMBAN_EINVAL;
        goto fail;
    }
    if ((rc = set_programs(c, o->programs, err)) < 0)
        goto fail;
    c->opt.programs = c->programs;
    if ((rc = set_policies(c, o, err)) < 0)
        goto fail;
    c->opt.ban = c->opt.suspect = c->opt.ignore = NULL;     /* borrowed: not kept */
    if ((rc = smban_table_new(o->max_sessions, o->session_idle, &c->sessions, err)) < 0)
        goto fail;
    if ((rc = smban_table_new(o->max_trusted ? o->max_trusted : 1, o->trust_seconds,
                              &c->trusted, err)) < 0)
        goto fail;
    if ((rc = smban_table_new(o->max_trusted ? o->max_trusted : 1,
                              o->tls_grace > 0 ? o->tls_grace : 1, &c->graced, err)) < 0)
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
    /* a JIT stack of our own: without one, every JIT match sets up a fresh
     * 32 KiB stack frame, which costs more than a short line's match */
    c->jstack = pcre2_jit_stack_create(32 * 1024, 512 * 1024, NULL);
    if (c->jstack)
        pcre2_jit_stack_assign(c->mctx, NULL, c->jstack);
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
    pcre2_jit_stack_free(c->jstack);
    smban_table_free(c->sessions);
    smban_table_free(c->trusted);
    smban_table_free(c->graced);
    free(c);
}

void smban_classifier_reset(smban_classifier *c)
{
    smban_table_clear(c->sessions);
    smban_table_clear(c->trusted);
    smban_table_clear(c->graced);
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
    return chclass[(unsigned char)ch] & CH_ALNUM;
}

/* "QID: ", "QID[n]: " or "NOQUEUE: " at the start of the message.  Returns
 * the length of the prefix (0: none); *cont is set for a continuation. */
static size_t queue_id(const char *p, size_t n, smban_span *qid, int *cont)
{
    size_t i = 0;
    *cont = 0;
    if (n >= 9 && memcmp(p, "NOQUEUE: ", 9) == 0)
        return 9;
    /* a part of a long message logged without a queue id: "[n]: " */
    if (n >= 4 && p[0] == '[') {
        size_t k = 1;
        while (k < n && k <= 4 && p[k] >= '0' && p[k] <= '9')
            k++;
        if (k > 1 && k + 1 < n && p[k] == ']' && p[k + 1] == ':') {
            *cont = 1;
            return 0;
        }
    }
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
            qid->p = p;         /* the part's transaction */
            qid->n = i;
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

/* Validate and normalise an address: sets ev->family and addr. */
static void set_ip(smban_event *ev, const char *p, size_t n)
{
    if (n == 0 || n >= 64)
        return;
    /* dotted quad, as inet_pton takes it: 4 parts of 1-3 digits, no
     * leading zero, each <= 255 (read in place: most addresses are) */
    const char *q = p, *e = p + n;
    int part;
    for (part = 0; part < 4; part++) {
        unsigned v, d;
        if (part && (q >= e || *q++ != '.'))
            break;
        if (q >= e || (d = (unsigned)(*q - '0')) > 9)
            break;
        v = d;
        q++;
        if (v && q < e && (d = (unsigned)(*q - '0')) <= 9) {
            v = v * 10 + d;
            q++;
            if (q < e && (d = (unsigned)(*q - '0')) <= 9) {
                v = v * 10 + d;
                q++;
            }
        }
        if (v > 255)
            break;
        ev->addr[part] = (uint8_t)v;
    }
    if (part == 4 && q == e) {
        memset(ev->addr + 4, 0, 12);
        ev->family = 4;
        return;
    }
    /* not a dotted quad: IPv6 when it holds a colon (inet_pton wants a
     * string) */
    char buf[64];
    if (!memchr(p, ':', n))
        return;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET6, buf, ev->addr) != 1)
        return;
    ev->family = 6;
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

/* s begins with the n bytes of lit (short constants: an inline loop beats
 * a call to memcmp). */
static inline int has_prefix(const char *s, const char *lit, size_t n)
{
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (s[i] != lit[i])
                return 0;
        return 1;
    }
    /* eight bytes at a time; the last (overlapping) word covers the tail */
    uint64_t a, b;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        memcpy(&a, s + i, 8);
        memcpy(&b, lit + i, 8);
        if (a != b)
            return 0;
    }
    memcpy(&a, s + n - 8, 8);
    memcpy(&b, lit + n - 8, 8);
    return a == b;
}

/* Run one rule's pattern (or its fast parser); 1 and g filled on a match. */
static int run_rule(smban_classifier *c, size_t i, const char *s, size_t n, groups *g)
{
    compiled_rule *cr = &c->rules[i];
    static const smban_span none = {NULL, 0};
    g->ip = g->host = g->hostonly = g->user = g->mech = g->code = g->detail = g->size = none;
    if (!cr->code)
        return 1;
    if (cr->fast)
        return cr->fast(s, n, g);
    /* a JIT failure is not fatal: the interpreter is used instead */
    if (!cr->jit)
        cr->jit = pcre2_jit_compile(cr->code, PCRE2_JIT_COMPLETE) == 0 ? 1 : -1;
    /* pcre2_jit_match skips pcre2_match's checks, which cost more than
     * the match itself on a short line */
    int rc = cr->jit > 0 ? pcre2_jit_match(cr->code, (PCRE2_SPTR)s, n, 0, 0, c->md, c->mctx)
                     : pcre2_match(cr->code, (PCRE2_SPTR)s, n, 0, 0, c->md, c->mctx);
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
        c->cnt.match_limit++;
    if (rc <= 0)
        return 0;
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    g->ip = grab(ov, cr->g_ip, s);
    g->host = grab(ov, cr->g_host, s);
    g->hostonly = grab(ov, cr->g_hostonly, s);
    g->user = grab(ov, cr->g_user, s);
    g->mech = grab(ov, cr->g_mech, s);
    g->code = grab(ov, cr->g_code, s);
    g->detail = grab(ov, cr->g_detail, s);
    g->size = grab(ov, cr->g_size, s);
    return 1;
}

/* Run the rules whose constant text the message holds; returns the rule
 * index that matched (g filled), or -1. */
static int dispatch(smban_classifier *c, const char *s, size_t n, groups *g)
{
    /* START rules first: their constants hold characters no host name has,
     * so a message opening with one is not a client-first message */
    if (n == 0)
        return -1;
    unsigned char first = (unsigned char)s[0];
    for (size_t k = 0; k < c->start_n[first]; k++) {
        size_t i = c->start_idx[first][k];
        const smban_rule *r = &smban_rules[i];
        if (n < r->literal_len || !has_prefix(s, r->literal, r->literal_len))
            continue;
        if (run_rule(c, i, s, n, g))
            return (int)i;
    }
    int present = 0;
    for (size_t i = 0; i < NRULES; i++) {
        const smban_rule *r = &smban_rules[i];
        if (r->where == SMBAN_START)
            continue;
        if (!c->rules[i].same_literal_as_prev) {
            if (r->where == SMBAN_INSIDE)
                present = memmem(s, n, r->literal, r->literal_len) != NULL;
            else
                present = n >= r->literal_len
                          && memcmp(s + n - r->literal_len, r->literal, r->literal_len) == 0;
        }
        if (!present)
            continue;
        if (run_rule(c, i, s, n, g))
            return (int)i;
    }
    return -1;
}

static int program_allowed(const smban_classifier *c, const char *p, size_t n)
{
    for (size_t i = 0; i < c->nprog; i++)
        if (c->prog_len[i] == n && has_prefix(p, c->prog[i], n))
            return 1;
    return 0;
}

static void ip_key(const smban_event *ev, uint64_t *k0, uint64_t *k1)
{
    memcpy(k0, ev->addr, 8);
    memcpy(k1, ev->addr + 8, 8);
    *k1 ^= (uint64_t)ev->family << 56;
}

/* An address table of the classifier (trusted, graced): whether ev's
 * address was put in it within the last secs seconds of log time, and
 * putting it there. */
static int remembered(smban_classifier *c, smban_table *t, double secs,
                      const smban_event *ev)
{
    uint64_t k0, k1;
    if (!ev->family || secs <= 0)
        return 0;
    ip_key(ev, &k0, &k1);
    smban_session *e = smban_table_peek(t, k0, k1);
    return e && e->last >= c->now - secs;
}

static void remember(smban_classifier *c, smban_table *t, double secs,
                     const smban_event *ev)
{
    uint64_t k0, k1;
    if (!ev->family || secs <= 0)
        return;
    ip_key(ev, &k0, &k1);
    smban_table_get(t, k0, k1, c->now, 1);
}

static int trusted(smban_classifier *c, const smban_event *ev)
{
    return remembered(c, c->trusted, c->opt.trust_seconds, ev);
}

static void untrust(smban_classifier *c, const smban_event *ev)
{
    uint64_t k0, k1;
    if (!ev->family)
        return;
    ip_key(ev, &k0, &k1);
    smban_session *t = smban_table_peek(c->trusted, k0, k1);
    if (t)
        smban_table_del(c->trusted, t);
}

/* Rule 6: a peer that fell back from a failed STARTTLS within tls_grace. */
static int graced(smban_classifier *c, const smban_event *ev)
{
    return remembered(c, c->graced, c->opt.tls_grace, ev);
}

/* The suspect classes the grace spares: what a connection going wrong
 * looks like (a disconnect, a timeout's aftermath, a rate limit, a DNS
 * failure).  What a client sends or is (unknown recipients, a DNSBL or a
 * milter's verdict, protocol abuse) still counts: a failed handshake costs
 * an attacker nothing, so it buys no excuse for probing. */
static int grace_spares(int cls)
{
    return cls == SMBAN_C_NULL_SESSION || cls == SMBAN_C_LOST_INPUT
           || cls == SMBAN_C_RATE_CONTROL || cls == SMBAN_C_DNS_TEMPFAIL;
}

static uint16_t sat_inc(uint16_t v, int by)
{
    return v + by > 65535 ? 65535 : (uint16_t)(v + by);
}

/* Decimal value of a span, or -1. */
static long span_long(smban_span s)
{
    long v = 0;
    /* more than 18 digits could overflow a long, and is no SASL code or
     * nrcpts sendmail writes */
    if (!s.p || !s.n || s.n > 18)
        return -1;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        v = v * 10 + (s.p[i] - '0');
    }
    return v;
}

/* A session ends where a new one starts on its key (README.md, session
 * rule 5).  h: the line's queue id hashed, 0 for none.  fresh: the line
 * opens a connection (connection_opens), which starts afresh.  A queue id
 * other than the
 * session's (the next transaction, or the same pid serving a new client)
 * starts a new transaction: the address, the recipients and the failures
 * still waiting for an address are dropped, so nothing learnt from one
 * client is charged to the next; only the TLS failure mark stays (it can
 * only spare).  The first queue id after lines without one keeps nothing
 * but that mark either: those lines may be the previous client's. */
static void new_session_check(smban_classifier *c, smban_session *s, int fresh,
                              uint32_t h)
{
    /* an address shown only by lines without a queue id (a connection
     * refused by check_relay logs nothing else) may be the previous
     * client's: the first queue id does not take it over */
    if (fresh || (h && s->qid && s->qid != h)
        || (h && !s->qid && (s->flags & SMBAN_S_ADDR_NOQID))) {
        c->cnt.dropped += (uint64_t)(s->pending_ban + s->pending_suspect);
        s->family = 0;
        s->flags &= fresh ? 0 : SMBAN_S_TLS_FAILED;    /* ADDR_NOQID goes too */
        s->nrcpt = 0;
        s->pending_ban = s->pending_suspect = 0;
        s->pending_cls = -1;
        memset(s->rcpt, 0, sizeof s->rcpt);
    } else if (h && !s->qid && (s->pending_ban || s->pending_suspect)) {
        /* the session's first queue id: failures waiting on lines without
         * one came before it, and a later line without one may be the
         * next client's (a recycled pid): none of them can tell */
        c->cnt.dropped += (uint64_t)(s->pending_ban + s->pending_suspect);
        s->pending_ban = s->pending_suspect = 0;
        s->pending_cls = -1;
    }
    if (h || fresh)
        s->qid = h;
}

/* The hash of a line's (syslog host, program): one log usually has one
 * host and one program, so the last one is kept and reused. */
static uint64_t host_prog_key(smban_classifier *c, const smban_frame *f)
{
    /* no host is a NULL span: memcmp and memcpy take no NULL, even for
     * 0 bytes */
    const char *host = f->host ? f->host : "";
    if (f->host_len == c->last_host_len && f->prog_len == c->last_prog_len
        && f->host_len + f->prog_len <= sizeof c->last_hp
        && has_prefix(host, c->last_hp, f->host_len)
        && has_prefix(f->prog, c->last_hp + f->host_len, f->prog_len))
        return c->last_k0;
    uint64_t k0 = smban_hash_bytes(host, f->host_len, 0)
                ^ smban_hash_bytes(f->prog, f->prog_len, 1) * 31;
    if (f->host_len + f->prog_len <= sizeof c->last_hp) {
        memcpy(c->last_hp, host, f->host_len);
        memcpy(c->last_hp + f->host_len, f->prog, f->prog_len);
        c->last_host_len = f->host_len;
        c->last_prog_len = f->prog_len;
        c->last_k0 = k0;
    }
    return k0;
}

/* The session of a line's (host, program, pid), created if need be; NULL
 * for a line without a pid (nor a queue id to read one from). */
static smban_session *session_of(smban_classifier *c, const smban_frame *f,
                                 const smban_span *qid, int create)
{
    long key_pid = f->pid >= 0 ? f->pid : (qid->p ? qid_pid(*qid) : -1);
    if (key_pid < 0)
        return NULL;
    return smban_table_get(c->sessions, host_prog_key(c, f), (uint64_t)key_pid, c->now,
                           create);
}

/* The transaction of a queue id: a hash, never 0 (0: a line without one). */
static uint32_t qid_hash(const smban_span *qid)
{
    return qid->p ? (uint32_t)smban_hash_bytes(qid->p, qid->n, 3) | 1 : 0;
}

/* A line that is no event but names its transaction (a continuation part
 * "QID[n]: ", a line no rule reads, a delivery): its queue id still starts
 * a new transaction of the pid's session (rule 5), or a later queue id
 * would take over what the previous client's lines showed.  Only a session
 * that exists: a pid without one has nothing to drop, and creating one
 * per delivering pid would evict the sessions of clients. */
static void session_transaction(smban_classifier *c, const smban_frame *f,
                                const smban_span *qid)
{
    smban_session *s = session_of(c, f, qid, 0);
    if (s)
        new_session_check(c, s, 0, qid_hash(qid));
}

/* 1 when a line is logged as its connection opens: "connect from", or a
 * check_relay reject (sendmail runs check_relay on the client's address
 * and name before its greeting), so that every line the pid logged before
 * it was another connection's. */
static int connection_opens(const smban_event *ev, const char *msg, size_t n)
{
    static const char relay[] = "ruleset=check_relay, ";
    return ev->cls == SMBAN_C_CONNECT
           || (n >= sizeof relay - 1 && has_prefix(msg, relay, sizeof relay - 1));
}

/* Address inheritance (rules 2 and 5): a line that shows its client's
 * address teaches it to the session, so that the session's lines without
 * one (a cut client field, an old AUTH failure) can name their client. */
static void session_address(smban_session *s, uint32_t line_qid, smban_event *ev)
{
    if (ev->family) {
        s->family = (uint8_t)ev->family;
        memcpy(s->addr, ev->addr, 16);
        if (line_qid || ev->cls == SMBAN_C_CONNECT)
            s->flags &= (uint8_t)~SMBAN_S_ADDR_NOQID;
        else
            s->flags |= SMBAN_S_ADDR_NOQID;
    } else if (s->family && (line_qid || ev->kind == SMBAN_BENIGN || ev->kind == SMBAN_INFO)) {
        /* a line that could count takes the session's address only within
         * the transaction that showed it (same queue id): without one,
         * nothing proves it is the same client */
        ev->family = s->family;
        memcpy(ev->addr, s->addr, 16);
    }
}

/* Recipient de-duplication: 1 when the session already reported this
 * unknown recipient, so that a client retrying one mistyped address is
 * not counted once per retry. */
static int repeated_recipient(smban_session *s, const smban_event *ev)
{
    uint32_t h = (uint32_t)smban_hash_bytes(ev->detail.p, ev->detail.n, 7) | 1;
    int dup = 0;
    for (int i = 0; i < SMBAN_NRCPT && i < s->nrcpt; i++)
        if (s->rcpt[i] == h)
            dup = 1;
    if (!dup)
        s->rcpt[s->nrcpt++ % SMBAN_NRCPT] = h;
    if (s->nrcpt >= 2 * SMBAN_NRCPT)
        s->nrcpt = SMBAN_NRCPT;
    return dup;
}

/* A session's closing line ("did not issue", "lost input"): after a TLS
 * failure it is the RFC 3207 fallback (rule 1: the sender retries in clear
 * text), reported as tls-fallback; returns 1 when it repeats failures the
 * session already counts (rule 4: one client, one count). */
static int session_close(const smban_session *s, smban_event *ev)
{
    if (s->flags & SMBAN_S_TLS_FAILED) {
        ev->via = ev->cls;
        ev->cls = SMBAN_C_TLS_FALLBACK;
        ev->kind = SMBAN_BENIGN;
        return 0;
    }
    return (s->flags & SMBAN_S_COUNTED) || s->pending_ban;
}

/* The line's own verdict: the failure it adds by itself (0 or 1) and why
 * (ev->reason); a suspect counts only in aggressive mode, and never for a
 * trusted address (rule 3). */
static int own_verdict(smban_classifier *c, smban_session *s, smban_event *ev)
{
    int own = ev->cls, dup = 0;
    if (s && own == SMBAN_C_USER_UNKNOWN && ev->detail.p)
        dup = repeated_recipient(s, ev);
    if (s && (own == SMBAN_C_NULL_SESSION || own == SMBAN_C_LOST_INPUT)) {
        dup = session_close(s, ev);
        if (ev->cls == SMBAN_C_TLS_FALLBACK) {
            ev->reason = SMBAN_R_TLS_FALLBACK;
            return 0;
        }
    }
    if (ev->kind == SMBAN_BENIGN || ev->kind == SMBAN_INFO) {
        ev->reason = c->ignored[ev->cls] ? SMBAN_R_IGNORED
                     : ev->kind == SMBAN_BENIGN ? SMBAN_R_BENIGN : SMBAN_R_INFO;
        return 0;
    }
    if (ev->kind == SMBAN_SUSPECT && trusted(c, ev))
        ev->reason = SMBAN_R_TRUSTED;
    else if (ev->kind == SMBAN_SUSPECT && grace_spares(ev->cls) && graced(c, ev))
        ev->reason = SMBAN_R_TLS_GRACE;
    else if (ev->kind == SMBAN_SUSPECT && !c->opt.aggressive)
        ev->reason = SMBAN_R_SUSPECT_NORMAL_MODE;
    else if (dup)
        ev->reason = SMBAN_R_ALREADY_COUNTED;
    else {
        ev->reason = SMBAN_R_COUNTED;
        return 1;
    }
    return 0;
}

/* Pending failures (rule 2): a failure without an address waits in its
 * session, since a later line of its transaction may show the address;
 * what waited for another transaction is dropped, never passed on. */
static void hold_pending(smban_classifier *c, smban_session *s, uint32_t line_qid,
                         smban_event *ev)
{
    if (!s) {
        ev->reason = SMBAN_R_NO_CLIENT;
        return;
    }
    if ((s->pending_ban || s->pending_suspect) && s->pending_qid != line_qid) {
        c->cnt.dropped += (uint64_t)(s->pending_ban + s->pending_suspect);
        s->pending_ban = s->pending_suspect = 0;
        s->pending_cls = -1;
    }
    s->pending_qid = line_qid;
    if (ev->kind == SMBAN_BAN)
        s->pending_ban = sat_inc(s->pending_ban, 1);
    else
        s->pending_suspect = sat_inc(s->pending_suspect, 1);
    if (s->pending_cls < 0)
        s->pending_cls = (int16_t)ev->cls;
    c->cnt.pending++;
    ev->reason = SMBAN_R_PENDING;
}

/* The pending failures of a line's transaction, resolved by the address
 * the line shows.  Returns the failures they add; a line adding none of
 * its own reports them (their class, the line's own as via). */
static int resolve_pending(smban_classifier *c, smban_session *s, int fails,
                           smban_event *ev)
{
    if (!(s->pending_ban || s->pending_suspect))
        return 0;
    int extra = s->pending_ban;
    if (c->opt.aggressive && !trusted(c, ev))
        extra += s->pending_suspect;
    if (extra && !fails) {
        ev->via = ev->cls;
        ev->cls = s->pending_cls;
        ev->kind = c->kind[ev->cls];
        ev->reason = SMBAN_R_RESOLVED;
    }
    c->cnt.resolved += (uint64_t)(s->pending_ban + s->pending_suspect);
    s->pending_ban = s->pending_suspect = 0;
    s->pending_cls = -1;
    return extra;
}

/* Trust (rule 3): mail accepted from an address, or its successful AUTH,
 * vouches for it for trust_seconds.  The session remembers when its
 * transaction's envelope is what made the address trusted: a milter that
 * then rejects the message took back what sendmail's from= line showed.
 * Grace (rule 6): a closing line that shows its own address after the
 * session's STARTTLS failed (tls-fallback) excuses the peer for tls_grace. */
static void earn_trust(smban_classifier *c, smban_session *s, int own, int ip_from_line,
                       const smban_event *ev)
{
    if (ev->family && (own == SMBAN_C_AUTH_SUCCESS || ev->delivered)) {
        if (s && ev->delivered && !trusted(c, ev))
            s->flags |= SMBAN_S_TRUST_NEW;
        remember(c, c->trusted, c->opt.trust_seconds, ev);
    }
    if (ip_from_line && ev->cls == SMBAN_C_TLS_FALLBACK)
        remember(c, c->graced, c->opt.tls_grace, ev);
}

/* A milter's reject of the transaction whose envelope earned the trust:
 * the message was not accepted after all, so neither is the trust. */
static void milter_takes_back(smban_classifier *c, smban_session *s, uint32_t line_qid,
                              const smban_event *ev)
{
    if (s && (s->flags & SMBAN_S_TRUST_NEW) && line_qid && line_qid == s->qid) {
        untrust(c, ev);
        s->flags &= (uint8_t)~SMBAN_S_TRUST_NEW;
    }
}

/* The session rules (see the top of this file), step by step. */
static void apply_session(smban_classifier *c, const smban_frame *f,
                          const smban_span *qid, int opens, smban_event *ev)
{
    int own = ev->cls;
    int ip_from_line = ev->family != 0;
    uint32_t line_qid = qid_hash(qid);
    smban_session *s = session_of(c, f, qid, 1);

    if (s) {
        new_session_check(c, s, opens, line_qid);
        session_address(s, line_qid, ev);
    }
    if (own == SMBAN_C_MILTER_REJECT)
        milter_takes_back(c, s, line_qid, ev);
    int fails = own_verdict(c, s, ev);
    if (fails && !ev->family) {
        /* a line without a queue id has no transaction that a later line
         * could show to be its own: the next line of its pid, whatever it
         * shows, may be the next client's (a recycled pid), so a failure
         * that names no client there counts for nobody */
        if (line_qid)
            hold_pending(c, s, line_qid, ev);
        else
            ev->reason = SMBAN_R_NO_CLIENT;
        fails = 0;
    }
    /* only a line of their own transaction (the same queue id) tells
     * whose the pending failures are */
    if (s && ip_from_line && line_qid && s->pending_qid == line_qid)
        fails += resolve_pending(c, s, fails, ev);
    ev->failures = fails;

    if (s) {
        if (own == SMBAN_C_TLS_FAILURE || own == SMBAN_C_TLS_ERROR)
            s->flags |= SMBAN_S_TLS_FAILED;
        if (fails)
            s->flags |= SMBAN_S_COUNTED;
    }
    earn_trust(c, s, own, ip_from_line, ev);
    /* "did not issue" and "lost input" end a session */
    if (s && (own == SMBAN_C_NULL_SESSION || own == SMBAN_C_LOST_INPUT))
        smban_table_del(c->sessions, s);
}

/* Classify a line already checked for length and NUL bytes. */
static int classify_line(smban_classifier *c, const char *line, size_t len,
                         smban_event *ev)
{
    smban_frame f;
    smban_span qid = {NULL, 0};
    int cont;
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
        if (qid.p)
            session_transaction(c, &f, &qid);
        return 0;
    }
    const char *s = f.msg + skip;
    size_t n = f.msg_len - skip;
    groups g;
    int ri = dispatch(c, s, n, &g);
    if (ri < 0) {
        if (qid.p)
            session_transaction(c, &f, &qid);
        return 0;
    }

    const smban_rule *r = &smban_rules[ri];
    /* field by field: a memset of the whole event costs more than the rest
     * of a typical line (addr is valid only with family) */
    ev->failures = 0;
    ev->family = 0;
    ev->code = 0;
    ev->has_code = 0;
    ev->cls = r->cls;
    ev->rule = ri;
    ev->via = -1;
    ev->time = f.time;
    ev->has_time = f.has_time;
    ev->pid = f.pid;
    ev->qid = qid;
    ev->prog.p = f.prog;
    ev->prog.n = f.prog_len;
    if (g.ip.p)
        set_ip(ev, g.ip.p, g.ip.n);
    ev->host = g.host.p && g.host.n ? g.host : g.hostonly;
    ev->user = g.user;
    ev->mech = g.mech;
    ev->detail = g.detail;
    /* the recipient of a "User unknown", without its angle brackets */
    if (r->cls == SMBAN_C_USER_UNKNOWN && ev->detail.n >= 2 && ev->detail.p[0] == '<'
        && ev->detail.p[ev->detail.n - 1] == '>') {
        ev->detail.p++;
        ev->detail.n -= 2;
    }
    /* sendmail prints from=%.200s: a sender that long may have been cut,
     * and the size and recipients read after it may be the client's own
     * text; such an envelope says nothing of what was accepted */
    if (r->cls == SMBAN_C_ENVELOPE && g.size.p
        && (size_t)(g.size.p - s) >= 5 + SMBAN_FROM_MAX + 7) {
        ev->detail.p = NULL;
        ev->detail.n = 0;
    }
    /* an envelope of size 0 carried no message (the client went away after
     * RCPT): however many recipients it had, nothing was accepted */
    else if (g.size.p && span_long(g.size) == 0) {
        static const char zero[] = "0";
        ev->detail.p = zero;
        ev->detail.n = 1;
    }
    if (g.code.p && g.code.n) {
        int neg = g.code.p[0] == '-';
        smban_span digits = {g.code.p + neg, g.code.n - (size_t)neg};
        long v = span_long(digits);
        if (v >= 0) {
            ev->code = neg ? -v : v;
            ev->has_code = 1;
        }
    }
    /* the client delivered mail: an envelope of accepted recipients, read
     * from fields sendmail wrote whole (the session rules trust it) */
    ev->delivered = r->cls == SMBAN_C_ENVELOPE && span_long(ev->detail) > 0;
    ev->kind = c->kind[ev->cls];
    if (smban_class_has_client(ev->cls)) {
        apply_session(c, &f, &qid, connection_opens(ev, s, n), ev);
    } else {
        /* a line about no remote client (a delivery, a daemon throttle):
         * its queue id still names the pid's transaction (rule 5) */
        if (qid.p)
            session_transaction(c, &f, &qid);
        static const int by_kind[SMBAN_NKINDS] = {
            [SMBAN_BAN] = SMBAN_R_NO_CLIENT, [SMBAN_SUSPECT] = SMBAN_R_NO_CLIENT,
            [SMBAN_BENIGN] = SMBAN_R_BENIGN, [SMBAN_INFO] = SMBAN_R_INFO};
        ev->reason = by_kind[ev->kind];
    }
    c->cnt.recognised++;
    return 1;
}

int smban_classify(smban_classifier *c, const char *line, size_t len,
                   smban_event *ev)
{
    c->cnt.lines++;
    if (len > SMBAN_MAX_LINE) {
        c->cnt.skipped_long++;
        return 0;
    }
    if (memchr(line, '\0', len)) {
        c->cnt.skipped_nul++;
        return 0;
    }
    return classify_line(c, line, len, ev);
}

const char *smban_event_ip(const smban_event *ev, char buf[48])
{
    if (!ev->family)
        return NULL;
    if (ev->family == 4) {
        /* inet_ntop goes through stdio; this is the hot path of a batch */
        char *o = buf;
        for (int i = 0; i < 4; i++) {
            unsigned v = ev->addr[i];
            if (v >= 100)
                *o++ = (char)('0' + v / 100);
            if (v >= 10)
                *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = i < 3 ? '.' : '\0';
        }
        return buf;
    }
    return inet_ntop(AF_INET6, ev->addr, buf, 48);
}

#ifdef __SSE2__
#include <emmintrin.h>

/* Find the end of the line at p (its newline, or end) and tell whether the
 * line holds a NUL byte or a byte >= 0x80, 16 bytes at a time: one pass
 * instead of memchr plus a scan. */
static const char *line_end(const char *p, const char *end, int *nul, int *high)
{
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    unsigned any_nul = 0, any_high = 0;
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m_nl = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl));
        unsigned m_nul = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero));
        unsigned m_high = (unsigned)_mm_movemask_epi8(v);
        if (m_nl) {
            unsigned before = (m_nl & (0u - m_nl)) - 1;   /* bytes before the newline */
            *nul = any_nul || (m_nul & before);
            *high = any_high || (m_high & before);
            return p + __builtin_ctz(m_nl);
        }
        any_nul |= m_nul;
        any_high |= m_high;
        p += 16;
    }
    for (; p < end && *p != '\n'; p++) {
        any_nul |= *p == '\0';
        any_high |= (unsigned char)*p >= 0x80;
    }
    *nul = any_nul != 0;
    *high = any_high != 0;
    return p;
}
#else
/* Scan a line once, a word at a time: does it hold a NUL byte, a byte
 * >= 0x80?  Most log lines are plain ASCII. */
static void scan_line(const char *p, size_t n, int *nul, int *high)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t any_high = 0, any_zero = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        any_high |= w;
        any_zero |= (w - ones) & ~w;
    }
    /* (w - ones) & ~w & highs is non-zero exactly when w has a zero byte */
    *nul = (any_zero & highs) != 0;
    *high = (any_high & highs) != 0;
    for (; i < n; i++) {
        *nul |= p[i] == '\0';
        *high |= (unsigned char)p[i] >= 0x80;
    }
}


static const char *line_end(const char *p, const char *end, int *nul, int *high)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    scan_line(p, (size_t)(e - p), nul, high);
    return e;
}
#endif

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
        int nul, high, hit = 0;
        const char *e = line_end(p, end, &nul, &high);
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r')
            n--;
        c->cnt.lines++;
        if (n > SMBAN_MAX_LINE) {
            c->cnt.skipped_long++;
        } else {
            if (high && !smban_utf8_valid((const unsigned char *)p, n))
                c->cnt.not_utf8++;
            if (nul)
                c->cnt.skipped_nul++;
            else
                hit = classify_line(c, p, n, &ev);
        }
        if (hit && fn) {
            int rc = fn(ctx, lineno, p, n, &ev);
            if (rc < 0)
                return rc;
        }
        lineno++;
        p = e < end ? e + 1 : end;
    }
    return (int64_t)(lineno - first_line);
}
