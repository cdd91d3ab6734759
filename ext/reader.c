/*
 * reader.c — read a log from a file descriptor in pieces of whole lines.
 *
 * The file is read into one buffer, reused from read to read, and handed
 * out in pieces of whole lines for smban_classify_buffer: the command line
 * then never copies the log into Python objects, and needs no GIL while it
 * reads.  The file is read, not mapped, so a log truncated under the reader
 * ends the data early instead of killing the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smban.h"

/* A piece read at once: large enough that a read costs little per line,
 * small enough to be still in cache when it is classified; it holds a
 * longest line (SMBAN_MAX_LINE bytes and "\r\n") whole. */
#ifndef SMBAN_READ_BUF
#define SMBAN_READ_BUF (256 * 1024)
#endif
_Static_assert(SMBAN_READ_BUF > SMBAN_MAX_LINE + 2, "the buffer holds a longest line");

struct smban_reader {
    int fd;
    size_t have;            /* bytes held in buf, from the start of a line */
    size_t given;           /* bytes of buf handed out by the last call */
    int skipping;           /* inside a line longer than buf, already handed out */
    int eof;
    char buf[SMBAN_READ_BUF];
};

int smban_reader_new(int fd, smban_reader **out, char err[SMBAN_ERR_LEN])
{
    smban_reader *r = malloc(sizeof *r);
    *out = NULL;
    if (!r) {
        snprintf(err, SMBAN_ERR_LEN, "out of memory");
        return SMBAN_ENOMEM;
    }
    r->fd = fd;
    r->have = r->given = 0;
    r->skipping = r->eof = 0;
    *out = r;
    return 0;
}

void smban_reader_free(smban_reader *r)
{
    free(r);
}

int64_t smban_reader_next(smban_reader *r, const char **piece, char err[SMBAN_ERR_LEN])
{
    char *buf = r->buf;

    /* what the last call handed out is done with */
    r->have -= r->given;
    memmove(buf, buf + r->given, r->have);
    r->given = 0;
    while (!r->eof) {
        ssize_t got;
        do
            got = read(r->fd, buf + r->have, SMBAN_READ_BUF - r->have);
        while (got < 0 && errno == EINTR);
        if (got < 0) {
            int e = errno;
            snprintf(err, SMBAN_ERR_LEN, "%s", strerror(e));
            errno = e;
            return SMBAN_EIO;
        }
        if (got == 0) {
            r->eof = 1;
            break;
        }
        r->have += (size_t)got;
        if (r->skipping) {
            /* the rest of an over-long line: dropped up to its newline */
            const char *nl = memchr(buf, '\n', r->have);
            if (!nl) {
                r->have = 0;
                continue;
            }
            r->have -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, r->have);
            r->skipping = 0;
        }
        const char *cut = memrchr(buf, '\n', r->have);
        if (cut) {
            r->given = (size_t)(cut + 1 - buf);
            *piece = buf;
            return (int64_t)r->given;
        }
        if (r->have == SMBAN_READ_BUF) {
            /* a line longer than the buffer: its first SMBAN_MAX_LINE + 2
             * bytes are too long even without a trailing '\r', so the
             * classifier counts them as one over-long line */
            r->given = r->have;
            r->skipping = 1;
            *piece = buf;
            return SMBAN_MAX_LINE + 2;
        }
    }
    /* the last line, without its newline */
    if (r->have && !r->skipping) {
        r->given = r->have;
        *piece = buf;
        return (int64_t)r->given;
    }
    return 0;
}

int64_t smban_classify_fd(smban_classifier *c, int fd, uint64_t first_line,
                          smban_event_fn fn, void *ctx, char err[SMBAN_ERR_LEN])
{
    smban_reader *r;
    const char *piece;
    int64_t n, rc = smban_reader_new(fd, &r, err);
    uint64_t lineno = first_line;

    if (rc < 0)
        return rc;
    while ((n = smban_reader_next(r, &piece, err)) > 0) {
        if ((rc = smban_classify_buffer(c, piece, (size_t)n, lineno, fn, ctx)) < 0)
            break;
        lineno += (uint64_t)rc;
    }
    if (n < 0) {
        int e = errno;
        smban_reader_free(r);
        errno = e;
        return n;
    }
    smban_reader_free(r);
    return rc < 0 ? rc : (int64_t)(lineno - first_line);
}
