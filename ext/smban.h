/*
 * smban.h — the interface of smban's C core.
 *
 * The classifier core: syslog framing, the session table, the classifier
 * and the log reader (the ban backend has its own headers: backend.h,
 * iptc.h, addr.h).  It includes only libc and PCRE2; it never includes
 * Python.h, never prints, exits or aborts: it lives inside
 * fail2ban-server.  Functions return 0 (or a count) on success and a negative
 * SMBAN_E* code on failure, filling a caller-owned err[SMBAN_ERR_LEN] where a
 * message helps.  Every object has a _new/_free pair; _free(NULL) is a no-op.
 */
#ifndef SMBAN_H
#define SMBAN_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

/* Lines longer than this are skipped and counted: sendmail never writes
 * one (syslog messages are split at SYSLOG_BUFSIZE). */
#define SMBAN_MAX_LINE 65536

/* ---- the rule table (rules.def) ---- */

enum smban_kind {
#define SMBAN_KIND(id, name) SMBAN_##id,
#include "rules.def"
    SMBAN_NKINDS
};

enum smban_class {
#define SMBAN_CLASS(id, name, kind, client, why) SMBAN_C_##id,
#include "rules.def"
    SMBAN_NCLASSES
};

/* Why a recognised line counted or did not (smban_event.reason). */
enum smban_reason {
#define SMBAN_REASON(id, name, why) SMBAN_R_##id,
#include "rules.def"
    SMBAN_NREASONS
};

enum smban_where { SMBAN_START, SMBAN_INSIDE, SMBAN_END };

/* How a rule finds its client's address among text the client chose
 * (rules.def explains each). */
enum smban_anchor { SMBAN_A_FIRST, SMBAN_A_LAST, SMBAN_A_AFTER, SMBAN_A_ONLY, SMBAN_A_NONE };

typedef struct {
    int cls;                /* enum smban_class */
    int where;              /* enum smban_where */
    const char *literal;
    size_t literal_len;
    int twin;               /* 1: part of the fail2ban filter */
    const char *fields;     /* client-chosen text the line holds, "" none */
    int anchor;             /* enum smban_anchor */
    const char *pattern;    /* with placeholders; NULL: the literal decides */
} smban_rule;

typedef struct {
    const char *name;
    const char *c;          /* PCRE2 expansion */
    const char *twin;       /* fail2ban expansion */
} smban_macro;

/* Borrowed, static tables. */
extern const smban_rule smban_rules[];
extern const size_t smban_nrules;
extern const smban_macro smban_macros[];
extern const size_t smban_nmacros;

const char *smban_kind_name(int kind);
const char *smban_class_name(int cls);
int smban_class_kind(int cls);
int smban_class_by_name(const char *name, size_t n);
int smban_class_has_client(int cls);
const char *smban_class_why(int cls);
const char *smban_reason_name(int reason);
const char *smban_reason_why(int reason);

/* Expand the placeholders of a pattern for the C engine (twin = 0) or for
 * the fail2ban filter (twin = 1).  Returns a malloc'ed string the caller
 * frees, or NULL on allocation failure or a malformed placeholder. */
char *smban_expand(const char *pattern, int twin);

/* ---- syslog framing (frame.c) ---- */

/* Local-time conversion cache and reference time for year inference.
 * One per classifier: not shared between threads. */
typedef struct {
    double ref;             /* reference time; 0: the wall clock */
    int ref_year;           /* local year of the reference time */
    double ref_year_lo, ref_year_hi; /* [lo, hi) range of ref_year's cache */
    /* two cached local hours (key: y*1000000+mon*10000+mday*100+hour,
     * base: its epoch at hh:00:00): a line of last year read this year
     * converts each stamp in both years, and one entry would thrash */
    int key[2];
    double base[2];
    unsigned victim;        /* the entry the next miss replaces */
    double wall;            /* the wall clock, when ref is 0 */
    unsigned calls;
    /* the last "Mmm dd hh:mm:ss" stamp without a fraction and its time in
     * stamp_year (a busy log logs many lines a second) */
    char stamp[15];
    int stamp_year;         /* 0: none yet */
    double stamp_t;
} smban_clock;

void smban_clock_init(smban_clock *clk, double ref);

typedef struct {
    double time;            /* epoch seconds; valid when has_time */
    int has_time;
    const char *host; size_t host_len;    /* host_len 0: no host */
    const char *prog; size_t prog_len;
    long pid;               /* -1: no pid */
    const char *msg; size_t msg_len;      /* after the tag and any [ID n f.p] */
} smban_frame;

/* Split one syslog line (no trailing newline) into its frame.  Accepts
 * RFC 3164 (space- or zero-padded day, BSD <fac.pri> before the host),
 * RFC 3339 / ISO 8601 (T or space, 0-9 fraction digits, Z, +hh:mm, +hhmm or
 * no zone), RFC 5424, journalctl short, short-precise, short-iso,
 * short-iso-precise and short-unix, a missing timestamp, host or pid, and
 * Solaris "[ID n fac.pri]" after the tag.  Returns 0, or SMBAN_EINVAL when
 * no "tag[pid]: " or "tag: " can be found.  Pointers borrow from line. */
int smban_frame_parse(const char *line, size_t len, smban_clock *clk,
                      smban_frame *f);

/* Epoch seconds of a civil UTC date and time. */
double smban_utc(int year, int mon, int mday, int hour, int min, double sec);

/* ---- bounded LRU tables (session.c) ---- */

#define SMBAN_NRCPT 8
#define SMBAN_S_TLS_FAILED 1   /* a TLS handshake failed in this session */
#define SMBAN_S_COUNTED 2      /* a failure was counted for this session */
#define SMBAN_S_ADDR_NOQID 4   /* the address came from a line without a queue id */
#define SMBAN_S_TRUST_NEW 8    /* this transaction's envelope made its address trusted */

/* One session (key: syslog host, program, pid) or one trusted IP.
 * The payload fields are the classifier's; the table only keys, links and
 * expires entries. */
typedef struct {
    uint64_t k0, k1;
    double last;
    uint32_t prev, next;    /* LRU list, pool indices */
    uint32_t hash;
    /* payload */
    uint8_t family;         /* 0: no address known */
    uint8_t flags;          /* SMBAN_S_* */
    uint8_t nrcpt;
    uint8_t addr[16];
    uint16_t pending_ban, pending_suspect;
    int16_t pending_cls;
    uint32_t rcpt[SMBAN_NRCPT];
    uint32_t qid;           /* hash of the last queue id seen, 0: none */
    uint32_t pending_qid;   /* the queue id (hash) of the pending failures */
} smban_session;

typedef struct smban_table smban_table;

typedef struct {
    size_t count, max;
    uint64_t evicted, expired;
} smban_table_stats;

/* A table holding at most max entries, each dropped once idle for more
 * than idle seconds (of log time).  On success *out is a new table the
 * caller frees with smban_table_free. */
int smban_table_new(size_t max, double idle, smban_table **out,
                    char err[SMBAN_ERR_LEN]);
void smban_table_free(smban_table *t);

/* Find the entry for (k0, k1), expiring idle entries first.  With create,
 * a missing entry is made (zeroed payload), evicting the least recently used
 * one when the table is full.  The entry found or made is marked used at
 * time now.  Returns a borrowed pointer valid until the next call, or NULL
 * when absent and not created. */
smban_session *smban_table_get(smban_table *t, uint64_t k0, uint64_t k1,
                               double now, int create);
/* Find without touching or expiring.  Borrowed, or NULL. */
smban_session *smban_table_peek(smban_table *t, uint64_t k0, uint64_t k1);
void smban_table_del(smban_table *t, smban_session *s);
void smban_table_clear(smban_table *t);
void smban_table_get_stats(const smban_table *t, smban_table_stats *st);

uint64_t smban_hash_bytes(const void *p, size_t n, uint64_t seed);

/* ---- the classifier (classify.c) ---- */

typedef struct {
    int aggressive;          /* suspects count toward bans */
    size_t max_sessions;     /* bound of the session table */
    double session_idle;     /* seconds of log time a quiet session is kept */
    size_t max_trusted;      /* IPs remembered as legitimate */
    double trust_seconds;    /* how long delivered mail vouches */
    double tls_grace;        /* how long an RFC 3207 fallback excuses a peer */
    double ref_time;         /* year inference; 0: the wall clock */
    const char *programs;    /* comma-separated syslog tags; NULL: default */
    /* the operator's policy: class names (comma- or space-separated; NULL
     * or "": none) moved to ban, to suspect, or never counted; only ban
     * and suspect classes move */
    const char *ban, *suspect, *ignore;
    int regex_only;          /* tests: no hand-written parser, patterns only */
} smban_options;

/* The defaults (smban_options_default; Python: smban.DEFAULTS). */
#define SMBAN_DEFAULT_MAX_SESSIONS 100000
#define SMBAN_DEFAULT_SESSION_IDLE 3600.0
#define SMBAN_DEFAULT_MAX_TRUSTED 100000
#define SMBAN_DEFAULT_TRUST_SECONDS 86400.0
#define SMBAN_DEFAULT_TLS_GRACE 3600.0
#define SMBAN_DEFAULT_PROGRAMS "sendmail,sm-mta,sm-acceptingconnections"

void smban_options_default(smban_options *o);

typedef struct { const char *p; size_t n; } smban_span;   /* p NULL: absent */

typedef struct {
    int cls;                /* reported class */
    int kind;
    int via;                /* the line's own class when cls differs, else -1 */
    int failures;           /* failures this line adds for ip (mode-aware) */
    int family;             /* 0: no ip, 4 or 6 */
    uint8_t addr[16];       /* the client address; see smban_event_ip */
    double time;
    int has_time;
    long pid;
    long code;              /* SASL code; valid when has_code */
    int has_code;
    smban_span qid, user, host, mech, detail, prog;
    int rule;               /* index in smban_rules of the rule the line matched */
    int delivered;          /* 1: an envelope whose message was accepted */
    int reason;             /* enum smban_reason: why failures is what it is */
} smban_event;

typedef struct {
    uint64_t lines, recognised, skipped_long, skipped_nul, not_utf8;
    uint64_t continuation, unframed, other_program, match_limit;
    uint64_t pending, resolved;
    uint64_t dropped;       /* pending failures whose session ended first */
} smban_counters;

typedef struct smban_classifier smban_classifier;

int smban_classifier_new(const smban_options *o, smban_classifier **out,
                         char err[SMBAN_ERR_LEN]);
void smban_classifier_free(smban_classifier *c);

/* Classify one line (no newline).  Returns 1 and fills ev when the line is
 * recognised, 0 when it is not (ev untouched).  Spans in ev borrow from
 * line, except an envelope's detail when its message size is 0: a static
 * "0" (nothing was accepted; ev->delivered says so too).  Updates the session table: lines must come
 * in log order. */
int smban_classify(smban_classifier *c, const char *line, size_t len,
                   smban_event *ev);

/* Called for each recognised line of a buffer; a negative return stops
 * the loop and is returned by smban_classify_buffer. */
typedef int (*smban_event_fn)(void *ctx, uint64_t lineno, const char *line,
                              size_t len, const smban_event *ev);

/* Classify every line of buf (lines end with \n; a trailing \r is
 * dropped; the last line may lack its \n), numbering them from
 * first_line, and count those that are not UTF-8.  Returns the number of
 * lines, or fn's negative return. */
int64_t smban_classify_buffer(smban_classifier *c, const char *buf, size_t len,
                              uint64_t first_line, smban_event_fn fn, void *ctx);

/* ---- reading a log from a file descriptor (reader.c) ---- */

/* Reads fd from its current offset through one buffer, handing out pieces
 * of whole lines that smban_classify_buffer classifies as it would the
 * whole file: a line longer than the buffer comes as its first
 * SMBAN_MAX_LINE + 2 bytes (one over-long line), the rest dropped. */
typedef struct smban_reader smban_reader;

int smban_reader_new(int fd, smban_reader **out, char err[SMBAN_ERR_LEN]);
void smban_reader_free(smban_reader *r);

/* The next piece in *piece (borrowed until the next call): returns its
 * length, 0 at the end, or SMBAN_EIO (errno set, err filled). */
int64_t smban_reader_next(smban_reader *r, const char **piece,
                          char err[SMBAN_ERR_LEN]);

/* smban_classify_buffer over the pieces of fd: the same lines, counters
 * and events as for a buffer holding the whole file, numbered from
 * first_line (the spans of an event passed to fn borrow from the reused
 * buffer).  Returns the number of lines, fn's negative return, or
 * SMBAN_ENOMEM or SMBAN_EIO (errno set) with err filled. */
int64_t smban_classify_fd(smban_classifier *c, int fd, uint64_t first_line,
                          smban_event_fn fn, void *ctx, char err[SMBAN_ERR_LEN]);

/* Forget all sessions and trusted IPs (not the counters). */
void smban_classifier_reset(smban_classifier *c);

const smban_counters *smban_classifier_counters(const smban_classifier *c);
void smban_classifier_table_stats(const smban_classifier *c,
                                  smban_table_stats *sessions,
                                  smban_table_stats *trusted);
const smban_options *smban_classifier_options(const smban_classifier *c);

/* The event's address as text (normalised, without "IPv6:") in buf, or
 * NULL when it has none.  Returns buf (borrowed). */
const char *smban_event_ip(const smban_event *ev, char buf[48]);

/* 1 when [p, p+n) is valid UTF-8. */
int smban_utf8_valid(const unsigned char *p, size_t n);

#endif
