/*
 * module.c — smban._core, the classifier's binding (the ban backend has its
 * own, iptc_module.c: smban._iptc).  These two are the only files of smban
 * that include Python.h.
 *
 * Multi-phase init (PEP 489), state in the module, heap types with GC.
 * Binding functions are thin wrappers: parse arguments, call the core, turn
 * a negative core return into an exception (raise_core, the one place).  The GIL is released around
 * batch classification; inside, no Python object is touched.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "smban.h"

typedef struct {
    PyTypeObject *event_type;       /* structseq Event */
    PyTypeObject *classifier_type;
    PyObject *class_names;          /* tuple of str, by class id */
    PyObject *kind_names;           /* tuple of str, by kind */
    PyObject *reason_names;         /* tuple of str, by reason */
} smban_state;

/* The modes, by smban_options.aggressive (Python: smban.MODES). */
static const char *const mode_names[] = {"normal", "aggressive"};

static struct PyModuleDef smban_module;

/* The one place a core error code becomes a Python exception: out of
 * memory is MemoryError, a failed read OSError (errno as the core left it),
 * anything else (a bad option, a pattern that does not compile) ValueError
 * with the core's message. */
static void *raise_core(int64_t rc, const char *err, int saved_errno)
{
    if (rc == SMBAN_ENOMEM)
        return PyErr_NoMemory();
    if (rc == SMBAN_EIO) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyErr_SetString(PyExc_ValueError, err && *err ? err : "invalid argument");
    return NULL;
}

static smban_state *state_of(PyObject *module)
{
    return (smban_state *)PyModule_GetState(module);
}

/* ---- Event ---- */

static PyStructSequence_Field event_fields[] = {
    {"kind", "ban, suspect, benign or info"},
    {"name", "the class, kebab-case (auth-failure, tls-fallback, ...)"},
    {"ip", "the client address (str), or None"},
    {"time", "epoch seconds (float) from the syslog frame, or None"},
    {"pid", "the syslog pid, or None"},
    {"qid", "the sendmail queue id, or None"},
    {"user", "the user= of an AUTH line, or None"},
    {"host", "the client's host name as logged, or None"},
    {"mech", "the SASL mechanism, or None"},
    {"code", "the SASL code, or None"},
    {"detail", "the class's detail: TLS reason, command, reject text, ..."},
    {"failures", "failures this line adds for ip in this mode (0, 1, or more when a session's pending failures resolve)"},
    {"via", "the line's own class when name reports pending failures or a TLS fallback, else None"},
    {"program", "the syslog tag"},
    {"rule", "the index in rules() of the rule the line matched"},
    {"delivered", "True for an envelope whose message was accepted (recipients, a size)"},
    {"reason", "why failures is what it is: counted, resolved, pending, trusted, ... (REASONS)"},
    {NULL, NULL},
};

static PyStructSequence_Desc event_desc = {
    "smban.Event",
    "A recognised sendmail log line.",
    event_fields,
    sizeof event_fields / sizeof event_fields[0] - 1,
};

static PyObject *span_str(smban_span s)
{
    if (!s.p)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s.p, (Py_ssize_t)s.n, "backslashreplace");
}

/* New reference: an Event for ev, or NULL with an exception set. */
static PyObject *make_event(smban_state *st, const smban_event *ev)
{
    PyObject *o = PyStructSequence_New(st->event_type);
    PyObject *v;
    if (!o)
        return NULL;
#define SET(i, expr)                         \
    do {                                     \
        if (!(v = (expr)))                   \
            goto error;                      \
        PyStructSequence_SET_ITEM(o, i, v);  \
    } while (0)
    SET(0, Py_NewRef(PyTuple_GET_ITEM(st->kind_names, ev->kind)));
    SET(1, Py_NewRef(PyTuple_GET_ITEM(st->class_names, ev->cls)));
    char ip[48];
    SET(2, smban_event_ip(ev, ip) ? PyUnicode_FromString(ip) : Py_NewRef(Py_None));
    SET(3, ev->has_time ? PyFloat_FromDouble(ev->time) : Py_NewRef(Py_None));
    SET(4, ev->pid >= 0 ? PyLong_FromLong(ev->pid) : Py_NewRef(Py_None));
    SET(5, span_str(ev->qid));
    SET(6, span_str(ev->user));
    SET(7, span_str(ev->host));
    SET(8, span_str(ev->mech));
    SET(9, ev->has_code ? PyLong_FromLong(ev->code) : Py_NewRef(Py_None));
    SET(10, span_str(ev->detail));
    SET(11, PyLong_FromLong(ev->failures));
    SET(12, ev->via >= 0 ? Py_NewRef(PyTuple_GET_ITEM(st->class_names, ev->via))
                         : Py_NewRef(Py_None));
    SET(13, span_str(ev->prog));
    SET(14, PyLong_FromLong(ev->rule));
    SET(15, PyBool_FromLong(ev->delivered));
    SET(16, Py_NewRef(PyTuple_GET_ITEM(st->reason_names, ev->reason)));
#undef SET
    return o;
error:
    Py_DECREF(o);
    return NULL;
}

/* ---- Classifier ---- */

typedef struct {
    PyObject_HEAD
    smban_classifier *c;
    PyObject *module;        /* strong: keeps the state alive */
    int busy;                /* a batch runs without the GIL */
} ClassifierObject;

static int check_idle(ClassifierObject *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this Classifier is busy in another thread");
        return -1;
    }
    return 0;
}

/* A list option (programs, ban, suspect, ignore): None leaves *out alone;
 * a str, or an iterable of str joined with commas, is kept in *keep (a new
 * reference the caller releases) and *out points into it.  -1 on error. */
static int list_option(PyObject *v, PyObject **keep, const char **out)
{
    if (v == Py_None)
        return 0;
    if (PyUnicode_Check(v)) {
        *keep = Py_NewRef(v);
    } else {
        PyObject *sep = PyUnicode_FromString(",");
        if (!sep)
            return -1;
        *keep = PyUnicode_Join(sep, v);
        Py_DECREF(sep);
        if (!*keep)
            return -1;
    }
    *out = PyUnicode_AsUTF8(*keep);
    return *out ? 0 : -1;
}

static PyObject *
Classifier_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"mode", "max_sessions", "session_idle",
                             "max_trusted", "trust_seconds", "tls_grace", "ref_time",
                             "programs", "regex_only", "ban", "suspect", "ignore", NULL};
    const char *mode = mode_names[0];
    smban_options opt;
    smban_options_default(&opt);
    Py_ssize_t max_sessions = (Py_ssize_t)opt.max_sessions;
    Py_ssize_t max_trusted = (Py_ssize_t)opt.max_trusted;
    double session_idle = opt.session_idle, trust_seconds = opt.trust_seconds;
    double tls_grace = opt.tls_grace;
    PyObject *ref_time = Py_None, *programs = Py_None;
    PyObject *ban = Py_None, *suspect = Py_None, *ignore = Py_None;
    PyObject *keep[4] = {NULL, NULL, NULL, NULL};
    int regex_only = 0;
    char err[SMBAN_ERR_LEN] = "";
    ClassifierObject *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|s$ndnddOOpOOO:Classifier", kwlist,
                                     &mode, &max_sessions, &session_idle,
                                     &max_trusted, &trust_seconds, &tls_grace, &ref_time,
                                     &programs, &regex_only, &ban, &suspect, &ignore))
        return NULL;
    opt.regex_only = regex_only;
    if (strcmp(mode, mode_names[0]) == 0)
        opt.aggressive = 0;
    else if (strcmp(mode, mode_names[1]) == 0)
        opt.aggressive = 1;
    else {
        PyErr_Format(PyExc_ValueError,
                     "mode must be '%s' or '%s', not %R", mode_names[0], mode_names[1],
                     PyTuple_Size(args) ? PyTuple_GET_ITEM(args, 0)
                                        : PyDict_GetItemString(kwargs, "mode"));
        return NULL;
    }
    if (max_sessions < 1 || max_trusted < 1) {
        PyErr_SetString(PyExc_ValueError, "max_sessions and max_trusted must be >= 1");
        return NULL;
    }
    opt.max_sessions = (size_t)max_sessions;
    opt.max_trusted = (size_t)max_trusted;
    opt.session_idle = session_idle;
    opt.trust_seconds = trust_seconds;
    opt.tls_grace = tls_grace;
    if (ref_time != Py_None) {
        opt.ref_time = PyFloat_AsDouble(ref_time);
        if (opt.ref_time == -1 && PyErr_Occurred())
            return NULL;
    }
    if (list_option(programs, &keep[0], &opt.programs) < 0
        || list_option(ban, &keep[1], &opt.ban) < 0
        || list_option(suspect, &keep[2], &opt.suspect) < 0
        || list_option(ignore, &keep[3], &opt.ignore) < 0)
        goto error;
    self = (ClassifierObject *)type->tp_alloc(type, 0);
    if (!self)
        goto error;
    self->module = PyType_GetModuleByDef(type, &smban_module);
    if (!self->module)
        goto error;
    Py_INCREF(self->module);
    int rc = smban_classifier_new(&opt, &self->c, err);
    if (rc < 0) {
        raise_core(rc, err, 0);
        goto error;
    }
    for (int i = 0; i < 4; i++)
        Py_XDECREF(keep[i]);
    return (PyObject *)self;
error:
    for (int i = 0; i < 4; i++)
        Py_XDECREF(keep[i]);
    Py_XDECREF(self);
    return NULL;
}

static int Classifier_traverse(ClassifierObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    return 0;
}

static int Classifier_clear(ClassifierObject *self)
{
    Py_CLEAR(self->module);
    return 0;
}

static void Classifier_dealloc(ClassifierObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Classifier_clear(self);
    smban_classifier_free(self->c);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The bytes of a line given as str or bytes, without its line terminator
 * (fail2ban and file iteration leave one).  *tmp holds a new reference when
 * the str had to be re-encoded; the caller releases it.  0, or -1 with an
 * exception set. */
static int line_bytes(PyObject *line, const char *what, const char **pp, Py_ssize_t *np,
                      PyObject **tmp)
{
    const char *p;
    Py_ssize_t n;

    *tmp = NULL;
    if (PyUnicode_Check(line)) {
        p = PyUnicode_AsUTF8AndSize(line, &n);
        if (!p) {
            /* lone surrogates (undecodable bytes read with surrogateescape) */
            PyErr_Clear();
            *tmp = PyUnicode_AsEncodedString(line, "utf-8", "surrogateescape");
            if (!*tmp)
                return -1;
            p = PyBytes_AS_STRING(*tmp);
            n = PyBytes_GET_SIZE(*tmp);
        }
    } else if (PyBytes_Check(line)) {
        p = PyBytes_AS_STRING(line);
        n = PyBytes_GET_SIZE(line);
    } else {
        PyErr_Format(PyExc_TypeError, "%s() takes str or bytes, not %.100s", what,
                     Py_TYPE(line)->tp_name);
        return -1;
    }
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    *pp = p;
    *np = n;
    return 0;
}

/* classify() and failure(): the same classification (every line updates
 * the sessions); failure() builds an Event only for a line that counts
 * failures against a known client, the only lines fail2ban's jail wants. */
static PyObject *classify_one(ClassifierObject *self, PyObject *line, const char *what,
                              int failures_only)
{
    const char *p;
    Py_ssize_t n;
    PyObject *tmp, *res;
    smban_event ev;

    if (check_idle(self) < 0)
        return NULL;
    if (line_bytes(line, what, &p, &n, &tmp) < 0)
        return NULL;
    if (smban_classify(self->c, p, (size_t)n, &ev) &&
        (!failures_only || (ev.failures > 0 && ev.family != 0)))
        res = make_event(state_of(self->module), &ev);
    else
        res = Py_NewRef(Py_None);
    Py_XDECREF(tmp);
    return res;
}

static PyObject *Classifier_classify(ClassifierObject *self, PyObject *line)
{
    return classify_one(self, line, "classify", 0);
}

static PyObject *Classifier_failure(ClassifierObject *self, PyObject *line)
{
    return classify_one(self, line, "failure", 1);
}

/* What a batch collects while the GIL is released. */
typedef struct {
    int want_events;
    uint64_t by_class[SMBAN_NCLASSES];
    uint64_t by_kind[SMBAN_NKINDS];
    uint64_t failures;
    uint64_t *lineno;        /* want_events: growable arrays */
    smban_event *events;
    size_t n, cap;
    int oom;
} batch;

static int batch_add(void *ctx, uint64_t lineno, const char *line, size_t len,
                     const smban_event *ev)
{
    batch *b = ctx;
    (void)line;
    (void)len;
    b->by_class[ev->cls]++;
    b->by_kind[ev->kind]++;
    b->failures += (uint64_t)ev->failures;
    if (!b->want_events)
        return 0;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1024;
        uint64_t *ln = realloc(b->lineno, cap * sizeof *ln);
        if (ln)
            b->lineno = ln;
        smban_event *evs = ln ? realloc(b->events, cap * sizeof *evs) : NULL;
        if (!ln || !evs) {
            b->oom = 1;
            return -1;
        }
        b->events = evs;
        b->cap = cap;
    }
    b->lineno[b->n] = lineno;
    b->events[b->n++] = *ev;
    return 0;
}

static PyObject *count_dict(const uint64_t *v, PyObject *names, Py_ssize_t n)
{
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!v[i])
            continue;
        PyObject *x = PyLong_FromUnsignedLongLong(v[i]);
        if (!x || PyDict_SetItem(d, PyTuple_GET_ITEM(names, i), x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(x);
    }
    return d;
}

/* The counts of a batch: {"lines", "classes", "kinds", "failures"}. */
static PyObject *batch_result(smban_state *st, const batch *b, int64_t nlines)
{
    PyObject *res = PyDict_New(), *x = NULL;
    if (!res)
        return NULL;
#define PUT(key, expr)                                                  \
    do {                                                                \
        if (!(x = (expr)) || PyDict_SetItemString(res, key, x) < 0)     \
            goto error;                                                 \
        Py_CLEAR(x);                                                    \
    } while (0)
    PUT("lines", PyLong_FromLongLong(nlines));
    PUT("classes", count_dict(b->by_class, st->class_names, SMBAN_NCLASSES));
    PUT("kinds", count_dict(b->by_kind, st->kind_names, SMBAN_NKINDS));
    PUT("failures", PyLong_FromUnsignedLongLong(b->failures));
#undef PUT
    return res;
error:
    Py_XDECREF(x);
    Py_DECREF(res);
    return NULL;
}

/* Append the events a batch collected to list as (line number, Event). */
static int append_events(smban_state *st, const batch *b, PyObject *list)
{
    for (size_t i = 0; i < b->n; i++) {
        PyObject *ev = make_event(st, &b->events[i]);
        PyObject *t = ev ? Py_BuildValue("(KN)", (unsigned long long)b->lineno[i], ev)
                         : NULL;
        int rc = t ? PyList_Append(list, t) : -1;
        Py_XDECREF(t);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* classify_buffer(data, first_line=1, events=False)
 *   events=False -> {"lines": n, "classes": {...}, "kinds": {...}, "failures": n}
 *   events=True  -> the same dict with "events": [(lineno, Event), ...]
 * The lines are classified with the GIL released. */
static PyObject *Classifier_classify_buffer(ClassifierObject *self, PyObject *args,
                                            PyObject *kwargs)
{
    static char *kwlist[] = {"data", "first_line", "events", NULL};
    Py_buffer view;
    unsigned long long first_line = 1;
    int want_events = 0;
    batch *b;
    int64_t nlines;
    PyObject *res = NULL, *x = NULL;
    smban_state *st = state_of(self->module);

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|Kp:classify_buffer", kwlist,
                                     &view, &first_line, &want_events))
        return NULL;
    if (check_idle(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (!(b = calloc(1, sizeof *b))) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    b->want_events = want_events;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    nlines = smban_classify_buffer(self->c, view.buf, (size_t)view.len,
                                   first_line, batch_add, b);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (nlines < 0 || b->oom) {
        PyErr_NoMemory();
        goto done;
    }
    if (!(res = batch_result(st, b, nlines)))
        goto done;
    if (want_events) {
        if (!(x = PyList_New(0)) || append_events(st, b, x) < 0
            || PyDict_SetItemString(res, "events", x) < 0)
            goto error;
        Py_CLEAR(x);
    }
    goto done;
error:
    Py_XDECREF(x);
    Py_CLEAR(res);
done:
    free(b->lineno);
    free(b->events);
    free(b);
    PyBuffer_Release(&view);
    return res;
}

/* classify_file(file, first_line=1, events=False): what classify_buffer
 * returns for the lines read from a descriptor (or an object's fileno()),
 * from its offset to its end, through one reused buffer.  Each piece of
 * lines is read and classified with the GIL released; with events, its
 * Events are made before the next read reuses the buffer they borrow from. */
static PyObject *Classifier_classify_file(ClassifierObject *self, PyObject *args,
                                          PyObject *kwargs)
{
    static char *kwlist[] = {"file", "first_line", "events", NULL};
    PyObject *file, *list = NULL, *res = NULL;
    unsigned long long lineno = 1;
    int want_events = 0, fd, saved_errno = 0;
    int64_t n = 0, nlines = 0, rc = 0;
    char err[SMBAN_ERR_LEN] = "";
    smban_reader *r = NULL;
    const char *piece;
    batch *b;
    smban_state *st = state_of(self->module);

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Kp:classify_file", kwlist,
                                     &file, &lineno, &want_events))
        return NULL;
    if ((fd = PyObject_AsFileDescriptor(file)) < 0 || check_idle(self) < 0)
        return NULL;
    if (!(b = calloc(1, sizeof *b)))
        return PyErr_NoMemory();
    int made = smban_reader_new(fd, &r, err);
    if (made < 0) {
        free(b);
        return raise_core(made, err, errno);
    }
    b->want_events = want_events;
    if (want_events && !(list = PyList_New(0)))
        goto done;
    self->busy = 1;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        n = smban_reader_next(r, &piece, err);
        saved_errno = errno;
        if (n > 0)
            rc = smban_classify_buffer(self->c, piece, (size_t)n, lineno, batch_add, b);
        Py_END_ALLOW_THREADS
        if (n <= 0 || rc < 0 || b->oom)
            break;
        lineno += (unsigned long long)rc;
        nlines += rc;
        if (want_events) {
            int ok = append_events(st, b, list);
            b->n = 0;
            if (ok < 0)
                break;
        }
    }
    if (PyErr_Occurred())
        goto done;
    if (n < 0) {
        raise_core(n, err, saved_errno);
        goto done;
    }
    if (rc < 0 || b->oom) {
        PyErr_NoMemory();
        goto done;
    }
    if ((res = batch_result(st, b, nlines)) && want_events
        && PyDict_SetItemString(res, "events", list) < 0)
        Py_CLEAR(res);
done:
    self->busy = 0;
    Py_XDECREF(list);
    smban_reader_free(r);
    free(b->lineno);
    free(b->events);
    free(b);
    return res;
}

static PyObject *Classifier_stats(ClassifierObject *self, PyObject *Py_UNUSED(ignored))
{
    const smban_counters *k = smban_classifier_counters(self->c);
    smban_table_stats s, t;
    smban_classifier_table_stats(self->c, &s, &t);
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsnsnsKsKsnsK}",
        "lines", (unsigned long long)k->lines,
        "recognised", (unsigned long long)k->recognised,
        "skipped_long", (unsigned long long)k->skipped_long,
        "skipped_nul", (unsigned long long)k->skipped_nul,
        "not_utf8", (unsigned long long)k->not_utf8,
        "continuation", (unsigned long long)k->continuation,
        "unframed", (unsigned long long)k->unframed,
        "other_program", (unsigned long long)k->other_program,
        "match_limit", (unsigned long long)k->match_limit,
        "pending", (unsigned long long)k->pending,
        "resolved", (unsigned long long)k->resolved,
        "dropped", (unsigned long long)k->dropped,
        "sessions", (Py_ssize_t)s.count,
        "max_sessions", (Py_ssize_t)s.max,
        "sessions_evicted", (unsigned long long)s.evicted,
        "sessions_expired", (unsigned long long)s.expired,
        "trusted", (Py_ssize_t)t.count,
        "trusted_evicted", (unsigned long long)t.evicted);
}

static PyObject *Classifier_reset(ClassifierObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_idle(self) < 0)
        return NULL;
    smban_classifier_reset(self->c);
    Py_RETURN_NONE;
}

static PyObject *Classifier_get_mode(ClassifierObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(mode_names[smban_classifier_options(self->c)->aggressive != 0]);
}

static PyObject *Classifier_get_programs(ClassifierObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(smban_classifier_options(self->c)->programs);
}

static PyMethodDef Classifier_methods[] = {
    {"classify", (PyCFunction)Classifier_classify, METH_O,
     "classify(line) -> Event or None\n\nClassify one log line (str or bytes), in log order."},
    {"failure", (PyCFunction)Classifier_failure, METH_O,
     "failure(line) -> Event or None\n\nClassify one log line as classify() does; the Event\n"
     "only when the line counts failures against a known client address."},
    {"classify_buffer", (PyCFunction)(void (*)(void))Classifier_classify_buffer,
     METH_VARARGS | METH_KEYWORDS,
     "classify_buffer(data, first_line=1, events=False) -> dict\n\n"
     "Classify every line of a bytes-like buffer in C with the GIL released.\n"
     "Returns {'lines', 'classes', 'kinds', 'failures'} and, with events=True,\n"
     "'events': a list of (line number, Event)."},
    {"classify_file", (PyCFunction)(void (*)(void))Classifier_classify_file,
     METH_VARARGS | METH_KEYWORDS,
     "classify_file(file, first_line=1, events=False) -> dict\n\n"
     "classify_buffer() on the lines read from a file descriptor (or an object's\n"
     "fileno()), from its current offset to its end, through one reused buffer,\n"
     "read and classified with the GIL released."},
    {"stats", (PyCFunction)Classifier_stats, METH_NOARGS,
     "stats() -> dict of counters: lines seen, skipped, sessions, evictions, ..."},
    {"reset", (PyCFunction)Classifier_reset, METH_NOARGS,
     "reset(): forget every session and trusted address."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Classifier_getset[] = {
    {"mode", (getter)Classifier_get_mode, NULL, "normal or aggressive", NULL},
    {"programs", (getter)Classifier_get_programs, NULL,
     "the syslog tags taken as sendmail, comma-separated", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Classifier_slots[] = {
    {Py_tp_doc, "Classifier(mode='normal', *, max_sessions, session_idle, max_trusted,\n"
                "           trust_seconds, tls_grace, ref_time=None, programs=None,\n"
                "           regex_only=False, ban=None, suspect=None, ignore=None)\n\n"
                "A session-aware classifier of sendmail log lines; the options\n"
                "default to DEFAULTS."},
    {Py_tp_new, Classifier_new},
    {Py_tp_dealloc, Classifier_dealloc},
    {Py_tp_traverse, Classifier_traverse},
    {Py_tp_clear, Classifier_clear},
    {Py_tp_methods, Classifier_methods},
    {Py_tp_getset, Classifier_getset},
    {0, NULL},
};

static PyType_Spec Classifier_spec = {
    "smban._core.Classifier",
    sizeof(ClassifierObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    Classifier_slots,
};

/* ---- module functions ---- */

static const char *const where_names[] = {"start", "inside", "end"};
static const char *const anchor_names[] = {"first", "last", "after", "only", "none"};

/* rules() -> list of dicts, in table order. */
static PyObject *smban_rules_py(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    if (!list)
        return NULL;
    for (size_t i = 0; i < smban_nrules; i++) {
        const smban_rule *r = &smban_rules[i];
        char *c = r->pattern ? smban_expand(r->pattern, 0) : NULL;
        char *t = r->pattern ? smban_expand(r->pattern, 1) : NULL;
        PyObject *d = NULL;
        if (r->pattern && (!c || !t)) {
            PyErr_NoMemory();
        } else {
            d = Py_BuildValue("{sssssssssOssssszszsz}",
                              "name", smban_class_name(r->cls),
                              "kind", smban_kind_name(smban_class_kind(r->cls)),
                              "where", where_names[r->where],
                              "literal", r->literal,
                              "twin", r->twin ? Py_True : Py_False,
                              "fields", r->fields,
                              "anchor", anchor_names[r->anchor],
                              "pattern", r->pattern,
                              "c_pattern", c,
                              "twin_pattern", t);
        }
        free(c);
        free(t);
        if (!d || PyList_Append(list, d) < 0) {
            Py_XDECREF(d);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(d);
    }
    (void)module;
    return list;
}

/* A list of item(i) for i in [0, n); NULL with an exception set. */
static PyObject *list_of(int n, PyObject *(*item)(int))
{
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *t = item(i);
        if (!t) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

static PyObject *class_item(int i)
{
    return Py_BuildValue("(sss)", smban_class_name(i), smban_kind_name(smban_class_kind(i)),
                         smban_class_why(i));
}

static PyObject *reason_item(int i)
{
    return Py_BuildValue("(ss)", smban_reason_name(i), smban_reason_why(i));
}

/* classes() -> list of (name, kind, why), in table order. */
static PyObject *smban_classes_py(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return list_of(SMBAN_NCLASSES, class_item);
}

/* reasons() -> list of (name, why), in the order of REASONS. */
static PyObject *smban_reasons_py(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return list_of(SMBAN_NREASONS, reason_item);
}

/* A tuple of n interned names; NULL with an exception set. */
static PyObject *name_tuple(int n, const char *(*name)(int))
{
    PyObject *t = PyTuple_New(n);
    if (!t)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *s = PyUnicode_InternFromString(name(i));
        if (!s) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static const char *mode_name(int i)
{
    return mode_names[i];
}

/* The classifier's defaults, as Classifier takes them. */
static PyObject *defaults_dict(void)
{
    smban_options o;
    smban_options_default(&o);
    return Py_BuildValue("{sssnsdsnsdsdss}",
                         "mode", mode_names[o.aggressive != 0],
                         "max_sessions", (Py_ssize_t)o.max_sessions,
                         "session_idle", o.session_idle,
                         "max_trusted", (Py_ssize_t)o.max_trusted,
                         "trust_seconds", o.trust_seconds,
                         "tls_grace", o.tls_grace,
                         "programs", SMBAN_DEFAULT_PROGRAMS);
}

/* Add value (a new reference, or NULL on error) to module as name. */
static int add_constant(PyObject *module, const char *name, PyObject *value)
{
    if (!value)
        return -1;
    int rc = PyModule_AddObjectRef(module, name, value);
    Py_DECREF(value);
    return rc;
}

static PyMethodDef module_methods[] = {
    {"rules", smban_rules_py, METH_NOARGS,
     "rules() -> list of dicts: the rule table with both engines' patterns."},
    {"classes", smban_classes_py, METH_NOARGS,
     "classes() -> list of (name, kind, why)."},
    {"reasons", smban_reasons_py, METH_NOARGS,
     "reasons() -> list of (name, why): why a line counted or did not (Event.reason)."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module)
{
    smban_state *st = state_of(module);

    st->event_type = PyStructSequence_NewType(&event_desc);
    if (!st->event_type || PyModule_AddType(module, st->event_type) < 0)
        return -1;
    st->classifier_type = (PyTypeObject *)PyType_FromModuleAndSpec(module,
                                                                   &Classifier_spec, NULL);
    if (!st->classifier_type || PyModule_AddType(module, st->classifier_type) < 0)
        return -1;
    if (!(st->class_names = name_tuple(SMBAN_NCLASSES, smban_class_name))
        || !(st->kind_names = name_tuple(SMBAN_NKINDS, smban_kind_name))
        || !(st->reason_names = name_tuple(SMBAN_NREASONS, smban_reason_name)))
        return -1;
    /* the names and defaults the Python side uses, from their one source */
    if (PyModule_AddObjectRef(module, "CLASSES", st->class_names) < 0
        || PyModule_AddObjectRef(module, "KINDS", st->kind_names) < 0
        || PyModule_AddObjectRef(module, "REASONS", st->reason_names) < 0
        || add_constant(module, "MODES", name_tuple((int)(sizeof mode_names
                                                          / sizeof mode_names[0]),
                                                    mode_name)) < 0
        || add_constant(module, "DEFAULTS", defaults_dict()) < 0
        || PyModule_AddIntConstant(module, "MAX_LINE", SMBAN_MAX_LINE) < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    smban_state *st = state_of(module);
    Py_VISIT(st->event_type);
    Py_VISIT(st->classifier_type);
    Py_VISIT(st->class_names);
    Py_VISIT(st->kind_names);
    Py_VISIT(st->reason_names);
    return 0;
}

static int module_clear(PyObject *module)
{
    smban_state *st = state_of(module);
    Py_CLEAR(st->event_type);
    Py_CLEAR(st->classifier_type);
    Py_CLEAR(st->class_names);
    Py_CLEAR(st->kind_names);
    Py_CLEAR(st->reason_names);
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef smban_module = {
    PyModuleDef_HEAD_INIT,
    "smban._core",
    "smban's C core: the sendmail log classifier.",
    sizeof(smban_state),
    module_methods,
    module_slots,
    module_traverse,
    module_clear,
    module_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&smban_module);
}
