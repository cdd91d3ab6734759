/*
 * frame.c — parse syslog framing: timestamp, host, tag and pid.
 *
 * sendmail logs through syslog(3); what reaches a file depends on the
 * syslog daemon, its template, or journalctl's output mode.  This file
 * accepts the shapes operators actually have (see smban.h) and finds the
 * message that sendmail wrote.  It never allocates.
 */
#define _DEFAULT_SOURCE
#include <string.h>
#include <time.h>

#include "smban.h"

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Parse exactly n digits at p; -1 when they are not all digits. */
static int digits(const char *p, const char *end, int n)
{
    int v = 0;
    if (end - p < n)
        return -1;
    for (int i = 0; i < n; i++) {
        if (!is_digit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int month_of(const char *p)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int guess;
    switch (p[0]) {     /* one memcmp instead of up to twelve */
    case 'J': guess = p[1] == 'a' ? 0 : p[2] == 'n' ? 5 : 6; break;
    case 'F': guess = 1; break;
    case 'M': guess = p[2] == 'r' ? 2 : 4; break;
    case 'A': guess = p[1] == 'p' ? 3 : 7; break;
    case 'S': guess = 8; break;
    case 'O': guess = 9; break;
    case 'N': guess = 10; break;
    case 'D': guess = 11; break;
    default: return -1;
    }
    return memcmp(p, names + 3 * guess, 3) == 0 ? guess : -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil algorithm). */
static long days_from_civil(long y, int m, int d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

double smban_utc(int year, int mon, int mday, int hour, int min, double sec)
{
    return (double)days_from_civil(year, mon, mday) * 86400.0
         + hour * 3600.0 + min * 60.0 + sec;
}

void smban_clock_init(smban_clock *clk, double ref)
{
    memset(clk, 0, sizeof *clk);
    clk->ref = ref;
    clk->key[0] = clk->key[1] = -1;
    clk->ref_year_hi = -1;   /* empty range: computed on first use */
}

/* Local time of y-m-d h:min:sec, mon 1-12.  mktime is slow (it may consult
 * the zone file), so the epochs of the last two local hours are cached. */
static double local_time(smban_clock *clk, int y, int mon, int mday, int hour,
                         int min, double sec)
{
    /* the key fits an int for years 0-2147 only; a later year (a corrupt
     * or forged stamp) is not cached: its key would overflow */
    int cached = y >= 0 && y <= 2147;
    int key = cached ? y * 1000000 + mon * 10000 + mday * 100 + hour : -1;
    if (cached && key == clk->key[0])
        return clk->base[0] + min * 60.0 + sec;
    if (cached && key == clk->key[1])
        return clk->base[1] + min * 60.0 + sec;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = mday;
    tm.tm_hour = hour;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t == (time_t)-1)
        return smban_utc(y, mon, mday, hour, min, sec);
    if (!cached)
        return (double)t + min * 60.0 + sec;
    unsigned v = clk->victim;
    clk->victim = v ^ 1;
    clk->key[v] = key;
    clk->base[v] = (double)t;
    return (double)t + min * 60.0 + sec;
}

/* The local year of the reference time (the wall clock when ref is 0). */
static int ref_year(smban_clock *clk, double *ref_out)
{
    double ref = clk->ref;
    if (ref <= 0) {
        /* the wall clock, read once per 4096 lines: a day's precision is all
         * year inference needs */
        if ((clk->calls++ & 4095) == 0)
            clk->wall = (double)time(NULL);
        ref = clk->wall;
    }
    *ref_out = ref;
    if (ref < clk->ref_year_lo || ref >= clk->ref_year_hi) {
        time_t t = (time_t)ref;
        struct tm tm;
        localtime_r(&t, &tm);
        clk->ref_year = tm.tm_year + 1900;
        /* valid until the next local day starts, to stay simple */
        clk->ref_year_lo = ref - (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
        clk->ref_year_hi = clk->ref_year_lo + 86400 - 3600; /* DST-safe */
    }
    return clk->ref_year;
}

/* Two digits at p (the caller checked there are two bytes), or -1. */
static int two(const char *p)
{
    unsigned a = (unsigned)(p[0] - '0'), b = (unsigned)(p[1] - '0');
    return a < 10 && b < 10 ? (int)(a * 10 + b) : -1;
}

/* "hh:mm:ss" at p; fills h, m, s. */
static const char *clock_hms(const char *p, const char *end, int *h, int *m,
                             int *s)
{
    if (end - p < 8 || p[2] != ':' || p[5] != ':')
        return NULL;
    *h = two(p);
    *m = two(p + 3);
    *s = two(p + 6);
    if (*h < 0 || *m < 0 || *s < 0 || *h > 23 || *m > 59 || *s > 60)
        return NULL;
    return p + 8;
}

/* Optional ".ffff" fraction (0-9 digits). */
static const char *fraction(const char *p, const char *end, double *frac)
{
    *frac = 0;
    if (p < end && *p == '.') {
        double scale = 0.1;
        p++;
        for (int i = 0; p < end && is_digit((unsigned char)*p); i++, p++) {
            if (i < 9) {
                *frac += (*p - '0') * scale;
                scale /= 10;
            }
        }
    }
    return p;
}

/* "Mmm dd hh:mm:ss[.ffffff] " (RFC 3164, journalctl short/short-precise). */
static const char *ts_bsd(const char *p, const char *end, smban_clock *clk,
                          double *out)
{
    int mon, mday, h, m, s;
    double frac, ref;
    if (end - p < 15 || p[3] != ' ')
        return NULL;
    /* the previous line's stamp again, in the same year of the reference:
     * the same time (a stamp that belongs to the year before, below, is
     * rare and parsed again) */
    if (end - p > 15 && p[15] == ' ' && clk->stamp_year
        && memcmp(p, clk->stamp, 15) == 0) {
        if (ref_year(clk, &ref) == clk->stamp_year && clk->stamp_t <= ref + 86400) {
            *out = clk->stamp_t;
            return p + 15;
        }
    }
    const char *start = p;
    if ((mon = month_of(p)) < 0)
        return NULL;
    p += 4;
    if (*p == ' ')
        p++;
    if (p < end && is_digit((unsigned char)*p) && p + 1 < end
        && is_digit((unsigned char)p[1])) {
        mday = (p[0] - '0') * 10 + (p[1] - '0');
        p += 2;
    } else if (p < end && is_digit((unsigned char)*p)) {
        mday = *p - '0';
        p++;
    } else
        return NULL;
    if (mday < 1 || mday > 31 || p >= end || *p++ != ' ')
        return NULL;
    if (!(p = clock_hms(p, end, &h, &m, &s)))
        return NULL;
    p = fraction(p, end, &frac);
    int y = ref_year(clk, &ref);
    double t = local_time(clk, y, mon + 1, mday, h, m, s + frac);
    if (p - start == 15 && p < end && *p == ' ') {
        memcpy(clk->stamp, start, 15);
        clk->stamp_year = y;
        clk->stamp_t = t;
    }
    /* No year in the line: a date more than a day ahead of the reference
     * belongs to the previous year (a December line read in January). */
    if (t > ref + 86400)
        t = local_time(clk, y - 1, mon + 1, mday, h, m, s + frac);
    *out = t;
    return p;
}

/* "YYYY-MM-DD[T ]hh:mm:ss[.f{0,9}][Z|+hh:mm|+hhmm]" */
static const char *ts_iso(const char *p, const char *end, smban_clock *clk,
                          double *out)
{
    int y, mon, mday, h, m, s;
    double frac;
    if (end - p < 19 || p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != ' '))
        return NULL;
    y = digits(p, end, 4);
    mon = digits(p + 5, end, 2);
    mday = digits(p + 8, end, 2);
    if (y < 0 || mon < 1 || mon > 12 || mday < 1 || mday > 31)
        return NULL;
    if (!(p = clock_hms(p + 11, end, &h, &m, &s)))
        return NULL;
    p = fraction(p, end, &frac);
    if (p < end && (*p == 'Z' || *p == 'z')) {
        *out = smban_utc(y, mon, mday, h, m, s + frac);
        return p + 1;
    }
    if (p < end && (*p == '+' || *p == '-')) {
        int sign = *p == '-' ? -1 : 1, oh, om;
        const char *q = p + 1;
        oh = digits(q, end, 2);
        if (oh < 0)
            return NULL;
        q += 2;
        if (q < end && *q == ':')
            q++;
        om = digits(q, end, 2);
        if (om < 0)
            return NULL;
        q += 2;
        *out = smban_utc(y, mon, mday, h, m, s + frac) - sign * (oh * 3600 + om * 60);
        return q;
    }
    *out = local_time(clk, y, mon, mday, h, m, s + frac);
    return p;
}

/* "1731821613.123456" (journalctl short-unix) */
static const char *ts_unix(const char *p, const char *end, double *out)
{
    const char *q = p;
    double v = 0, frac;
    while (q < end && is_digit((unsigned char)*q))
        v = v * 10 + (*q++ - '0');
    if (q - p < 9 || q - p > 11 || q >= end || *q != '.')
        return NULL;
    q = fraction(q, end, &frac);
    *out = v + frac;
    return q;
}

static const char *skip_spaces(const char *p, const char *end)
{
    while (p < end && *p == ' ')
        p++;
    return p;
}

static const char *token_end(const char *p, const char *end)
{
    /* a host name is short: a loop, not a call */
    while (p < end && *p != ' ')
        p++;
    return p;
}

/* "tag[pid]: " or "tag: " at p.  Returns the message start or NULL. */
static const char *tag(const char *p, const char *end, smban_frame *f)
{
    /* bytes that end a program name: '[', ':', ' ' */
    static const uint8_t stop[256] = {['['] = 1, [':'] = 1, [' '] = 1};
    const char *q = p;
    while (q < end && !stop[(unsigned char)*q])
        q++;
    if (q == p || q >= end)
        return NULL;
    f->prog = p;
    f->prog_len = (size_t)(q - p);
    f->pid = -1;
    if (*q == '[') {
        long pid = 0;
        const char *d = ++q, *lim = end - d > 10 ? d + 10 : end;
        unsigned v;
        while (q < lim && (v = (unsigned)(*q - '0')) < 10) {
            pid = pid * 10 + v;
            q++;
        }
        if (q == d || q >= end || *q != ']')
            return NULL;
        f->pid = pid;
        q++;
    }
    if (q >= end || *q != ':')
        return NULL;
    q++;
    if (q < end && *q == ' ')
        q++;
    return q;
}

/* Solaris "[ID 702911 mail.notice] " after the tag. */
static const char *solaris_id(const char *p, const char *end)
{
    if (end - p > 4 && memcmp(p, "[ID ", 4) == 0) {
        const char *q = memchr(p, ']', (size_t)(end - p));
        if (q && q + 1 < end && q[1] == ' ')
            return q + 2;
    }
    return p;
}

/* RFC 5424: "<PRI>1 TS HOST APP PROCID MSGID SD MSG", after "<PRI>1 ". */
static int rfc5424(const char *p, const char *end, smban_clock *clk,
                   smban_frame *f)
{
    const char *q;
    /* TIMESTAMP */
    if (p < end && *p == '-') {
        p++;
    } else {
        double t;
        if (!(q = ts_iso(p, end, clk, &t)))
            return SMBAN_EINVAL;
        f->time = t;
        f->has_time = 1;
        p = q;
    }
    if (p >= end || *p++ != ' ')
        return SMBAN_EINVAL;
    /* HOSTNAME, APP-NAME, PROCID, MSGID */
    const char *fields[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++) {
        q = token_end(p, end);
        if (q >= end)
            return SMBAN_EINVAL;
        fields[i] = p;
        lens[i] = (size_t)(q - p);
        p = q + 1;
    }
    if (!(lens[0] == 1 && fields[0][0] == '-')) {
        f->host = fields[0];
        f->host_len = lens[0];
    }
    /* no APP-NAME ("-", or empty between two spaces) is no tag, not a tag
     * of length 0 */
    if (lens[1] == 0 || (lens[1] == 1 && fields[1][0] == '-'))
        return SMBAN_EINVAL;
    f->prog = fields[1];
    f->prog_len = lens[1];
    f->pid = -1;
    if (!(lens[2] == 1 && fields[2][0] == '-')) {
        long pid = 0;
        for (size_t i = 0; i < lens[2] && i < 10; i++) {
            if (!is_digit((unsigned char)fields[2][i])) {
                pid = -1;
                break;
            }
            pid = pid * 10 + (fields[2][i] - '0');
        }
        f->pid = pid;
    }
    /* STRUCTURED-DATA: "-" or one or more "[...]" (values may escape ']') */
    if (p < end && *p == '-') {
        p++;
    } else {
        while (p < end && *p == '[') {
            int quoted = 0;
            for (p++; p < end; p++) {
                if (*p == '\\' && p + 1 < end)
                    p++;
                else if (*p == '"')
                    quoted = !quoted;
                else if (*p == ']' && !quoted)
                    break;
            }
            if (p >= end)
                return SMBAN_EINVAL;
            p++;
        }
    }
    if (p < end && *p == ' ')
        p++;
    if (end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    p = solaris_id(p, end);
    f->msg = p;
    f->msg_len = (size_t)(end - p);
    return 0;
}

int smban_frame_parse(const char *line, size_t len, smban_clock *clk,
                      smban_frame *f)
{
    const char *p = line, *end = line + len, *q;
    double t;

    f->time = 0;
    f->has_time = 0;
    f->host = f->prog = f->msg = NULL;
    f->host_len = f->prog_len = f->msg_len = 0;
    f->pid = -1;

    /* "<PRI>": RFC 5424 when "1 " follows, else a raw BSD packet */
    if (p < end && *p == '<' && end - p > 3 && is_digit((unsigned char)p[1])) {
        q = p + 1;
        while (q < end && is_digit((unsigned char)*q) && q - p < 5)
            q++;
        if (q < end && *q == '>') {
            if (end - q > 2 && q[1] == '1' && q[2] == ' ')
                return rfc5424(q + 3, end, clk, f);
            p = q + 1;
        }
    }

    /* timestamp, if any */
    if ((q = ts_bsd(p, end, clk, &t)) || (q = ts_iso(p, end, clk, &t))
        || (q = ts_unix(p, end, &t))) {
        if (q < end && *q != ' ')
            return SMBAN_EINVAL;
        f->time = t;
        f->has_time = 1;
        p = skip_spaces(q, end);
        /* BSD syslogd -v: "<mail.info> " or "<4.3> " before the host */
        if (p < end && *p == '<') {
            const char *gt = memchr(p, '>', (size_t)(end - p));
            if (gt && gt + 1 < end && gt[1] == ' ' && memchr(p, '.', (size_t)(gt - p)))
                p = skip_spaces(gt + 1, end);
        }
    }

    /* host, unless the next token is already the tag */
    q = token_end(p, end);
    if (q < end && p < q && q[-1] != ':') {
        if (*p == '[' && q[-1] != ']') {
            /* a bracketed host that holds spaces: "[my server IP]" */
            const char *rb = memchr(p, ']', (size_t)(end - p));
            if (!rb || rb + 1 >= end || rb[1] != ' ')
                return SMBAN_EINVAL;
            q = rb + 1;
        }
        f->host = p;
        f->host_len = (size_t)(q - p);
        p = skip_spaces(q, end);
    }

    if (!(q = tag(p, end, f)))
        return SMBAN_EINVAL;
    q = solaris_id(q, end);
    f->msg = q;
    f->msg_len = (size_t)(end - q);
    return 0;
}
