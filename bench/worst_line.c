/*
 * worst_line.c — what one line can cost the classifier, and a plain-C
 * classification run (the one `make valgrind` checks).
 *
 *     worst_line [-r REPS] [-t TOP] [-p] PATH...
 *
 * A PATH that is a directory gives one input per file (a fuzzer corpus:
 * each file is one line, as the line harness reads it); a file gives one
 * input per line ('#' lines skipped: the fixtures' annotations).  Each
 * file is first classified as a whole through smban_classify_buffer (the
 * batch path, sessions and all); then every input is timed alone, REPS
 * times on a classifier whose tables were just reset, and the TOP slowest
 * are printed with the fastest of their REPS times.  -p adds lines built
 * to make the patterns backtrack: 64 KiB (the longest line classified) of
 * repeated separators after each rule's constant text; they show the PCRE2
 * match limit at work (match_limit counts the matches it stopped).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../ext/smban.h"

typedef struct {
    char *text;
    size_t len;
    char origin[160];
    double best;            /* seconds, fastest of the repetitions */
} input;

static input *inputs;
static size_t ninputs, cap;
static smban_classifier *cls;
static uint64_t batch_lines, batch_events, batch_failures;

static void add(const char *p, size_t n, const char *origin)
{
    if (ninputs == cap) {
        cap = cap ? 2 * cap : 1024;
        if (!(inputs = realloc(inputs, cap * sizeof *inputs))) {
            perror("realloc");
            exit(2);
        }
    }
    input *in = &inputs[ninputs++];
    /* zero padding after the line: PCRE2's JIT reads the aligned 16 bytes
     * that hold the subject's end and masks what lies past it; memcheck
     * takes the masked bytes of a line malloc'ed to its exact length for
     * a use of undefined memory.  The batch path's lines are slices of a
     * larger buffer, as here. */
    if (!(in->text = calloc(1, n + 32))) {
        perror("calloc");
        exit(2);
    }
    memcpy(in->text, p, n);
    in->len = n;
    snprintf(in->origin, sizeof in->origin, "%s", origin);
    in->best = 0;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, got;
    if (!f) {
        perror(path);
        exit(2);
    }
    do {
        if (!(buf = realloc(buf, len + 65536))) {
            perror("realloc");
            exit(2);
        }
        got = fread(buf + len, 1, 65536, f);
        len += got;
    } while (got);
    fclose(f);
    *n = len;
    return buf;
}

static int count_event(void *ctx, uint64_t lineno, const char *line, size_t len,
                       const smban_event *ev)
{
    (void)ctx, (void)lineno, (void)line, (void)len;
    batch_events++;
    batch_failures += (uint64_t)ev->failures;
    return 0;
}

static void add_file(const char *path)
{
    size_t n;
    char *buf = slurp(path, &n), origin[160];
    int64_t lines = smban_classify_buffer(cls, buf, n, 1, count_event, NULL);
    if (lines > 0)
        batch_lines += (uint64_t)lines;
    size_t lineno = 1;
    for (char *p = buf, *end = buf + n; p < end; lineno++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        if (e > p && *p != '#') {
            snprintf(origin, sizeof origin, "%s:%zu", path, lineno);
            add(p, (size_t)(e - p), origin);
        }
        p = nl ? nl + 1 : end;
    }
    free(buf);
}

static void add_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    char full[4096];
    if (!d) {
        perror(path);
        exit(2);
    }
    while ((de = readdir(d))) {
        struct stat st;
        size_t n;
        snprintf(full, sizeof full, "%s/%s", path, de->d_name);
        if (de->d_name[0] == '.' || stat(full, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        char *buf = slurp(full, &n);
        add(buf, n, full);
        free(buf);
    }
    closedir(d);
}

/* Lines made to backtrack: a valid frame, a rule's constant text, then
 * repeated separators up to the longest line classified. */
static void add_pathological(void)
{
    static const struct { const char *start, *unit; } kinds[] = {
        {"AUTH failure (LOGIN): x (-13) ", ", user=, relay=a,"},
        {"AUTH failure (LOGIN): x (-1) ", ", user=, relay=[1.2.3.4] ("},
        {"from=<a>", ", size=1, class=0, nrcpts=1, relay=[1"},
        {"ruleset=check_rcpt, arg1=<a>, relay=", "h [1.2.3.4], reject=550 5.7.1 "},
        {"ruleset=check_rcpt, arg1=<a>, relay=[1.2.3.4], reject=550 5.7.1 ", "listed at RBL "},
        {"STARTTLS=server, error: ", "reason=x, relay=h [1.2.3.4] "},
        {"[1.2.3.4]", ": possible SMTP attack: command=AUTH, count=1"},
        {"h [1.2.3.4]", " did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA"},
        {"[1.2.3.4]: ", "VRFY x [rejected] "},
        {"\"", "wiz\" command from [1.2.3.4] ("},
    };
    const char *frame = "Nov 17 00:33:33 mx sm-mta[4242]: ";
    size_t max = SMBAN_MAX_LINE;
    char *buf = malloc(max + 1), origin[160];
    if (!buf) {
        perror("malloc");
        exit(2);
    }
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t n = (size_t)snprintf(buf, max, "%s%s", frame, kinds[k].start);
        size_t u = strlen(kinds[k].unit);
        while (n + u <= max) {
            memcpy(buf + n, kinds[k].unit, u);
            n += u;
        }
        snprintf(origin, sizeof origin, "pathological: %s(%s)*", kinds[k].start, kinds[k].unit);
        add(buf, n, origin);
    }
    free(buf);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int slower(const void *a, const void *b)
{
    double x = ((const input *)a)->best, y = ((const input *)b)->best;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void preview(const input *in, char out[100])
{
    size_t o = 0;
    for (size_t i = 0; i < in->len && o < 96; i++) {
        unsigned char ch = (unsigned char)in->text[i];
        out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
    }
    if (in->len > 96)
        memcpy(out + 93, "...", 3);
    out[o] = 0;
}

int main(int argc, char **argv)
{
    int reps = 5, top = 5, patho = 0, opt;
    char err[SMBAN_ERR_LEN];
    smban_options o;

    while ((opt = getopt(argc, argv, "r:t:p")) != -1) {
        if (opt == 'r')
            reps = atoi(optarg);
        else if (opt == 't')
            top = atoi(optarg);
        else if (opt == 'p')
            patho = 1;
        else {
            fprintf(stderr, "usage: %s [-r REPS] [-t TOP] [-p] PATH...\n", argv[0]);
            return 2;
        }
    }
    smban_options_default(&o);
    o.ref_time = 1735646400.0;      /* 2024-12-31T12:00:00Z: reproducible years */
    if (smban_classifier_new(&o, &cls, err) != 0) {
        fprintf(stderr, "worst_line: %s\n", err);
        return 2;
    }
    for (int i = optind; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 2;
        }
        if (S_ISDIR(st.st_mode))
            add_dir(argv[i]);
        else
            add_file(argv[i]);
    }
    if (patho)
        add_pathological();
    uint64_t limited_before = smban_classifier_counters(cls)->match_limit;
    double total = 0;
    size_t recognised = 0;
    for (size_t i = 0; i < ninputs; i++) {
        input *in = &inputs[i];
        smban_event ev;
        for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
            smban_classifier_reset(cls);
            double t0 = now();
            int hit = smban_classify(cls, in->text, in->len, &ev);
            double dt = now() - t0;
            if (r == 0 || dt < in->best)
                in->best = dt;
            if (r == 0)
                recognised += (size_t)hit;
        }
        total += in->best;
    }
    const smban_counters *k = smban_classifier_counters(cls);
    printf("batch: %llu lines, %llu events, %llu failures\n",
           (unsigned long long)batch_lines, (unsigned long long)batch_events,
           (unsigned long long)batch_failures);
    printf("alone: %zu inputs, %zu recognised, %.3f us mean, match limit hit %llu times "
           "(counted once per repetition)\n",
           ninputs, recognised, ninputs ? total / (double)ninputs * 1e6 : 0.0,
           (unsigned long long)(k->match_limit - limited_before));
    qsort(inputs, ninputs, sizeof *inputs, slower);
    for (size_t i = 0; i < ninputs && (int)i < top; i++) {
        char pv[100];
        preview(&inputs[i], pv);
        printf("  %10.1f us  %7zu bytes  %s\n               %s\n", inputs[i].best * 1e6,
               inputs[i].len, inputs[i].origin, pv);
    }
    for (size_t i = 0; i < ninputs; i++)
        free(inputs[i].text);
    free(inputs);
    smban_classifier_free(cls);
    return 0;
}
