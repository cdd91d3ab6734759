/*
 * backend_py.h — what the Python bindings of the ban backends share: the
 * mapping of core codes to exceptions and the methods that only call the
 * operations table (backend.h).  Each binding (iptc_module.c,
 * nft_module.c) includes it once and adds its own type: the constructor,
 * the options, what only its backend has.
 *
 * Every call that reads or writes the kernel's state releases the GIL for
 * the whole transaction and touches no Python object meanwhile.  The
 * functions are static inline: a binding uses the ones it needs.
 */
#ifndef SMBAN_BACKEND_PY_H
#define SMBAN_BACKEND_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "backend.h"

/* An object of a backend type: its operations and its handle. */
typedef struct {
    PyObject_HEAD
    const smban_backend_ops *ops;
    void *h;                        /* owned; NULL only during construction */
} BackendObject;

/* Set the exception for a negative core return; returns NULL.  The one
 * mapping of core codes: bad input ValueError, out of memory MemoryError,
 * the xtables lock taken TimeoutError, the library, the kernel or a system
 * call OSError. */
static inline PyObject *raise_core(int rc, const char *err)
{
    switch (rc) {
    case SMBAN_ENOMEM:
        return PyErr_NoMemory();
    case SMBAN_EINVAL:
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    case SMBAN_ELOCK:
        PyErr_SetString(PyExc_TimeoutError, err);
        return NULL;
    default:                        /* SMBAN_EIPTC, SMBAN_EIPSET, SMBAN_ENFT, SMBAN_ESYS */
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
}

static inline int backend_traverse(BackendObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static inline void backend_dealloc(BackendObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->ops)
        self->ops->free(self->h);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Parse one str into *a for self's family; -1 with ValueError/TypeError. */
static inline int backend_addr(BackendObject *self, PyObject *ip, smban_addr *a)
{
    char err[SMBAN_ERR_LEN];
    const char *s;
    Py_ssize_t n;
    int rc;
    if (!PyUnicode_Check(ip)) {
        PyErr_Format(PyExc_TypeError, "an address must be a str, not %.100s",
                     Py_TYPE(ip)->tp_name);
        return -1;
    }
    if (!(s = PyUnicode_AsUTF8AndSize(ip, &n)))
        return -1;
    if ((size_t)n != strlen(s)) {
        PyErr_SetString(PyExc_ValueError, "an address must not contain NUL characters");
        return -1;
    }
    if ((rc = smban_addr_parse(s, self->ops->family(self->h), self->ops->min_prefix(self->h),
                               a, err)) < 0) {
        raise_core(rc, err);
        return -1;
    }
    return 0;
}

/* Every address of an iterable, validated before anything is touched:
 * *out (PyMem_RawMalloc'ed, NULL when empty) and *n; -1 with an exception. */
static inline int backend_addrs(BackendObject *self, PyObject *ips, smban_addr **out, size_t *n)
{
    PyObject *seq = PySequence_Fast(ips, "ban_many()/unban_many() takes an iterable of str");
    smban_addr *v = NULL;
    *out = NULL;
    *n = 0;
    if (!seq)
        return -1;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    if (k && !(v = PyMem_RawMalloc((size_t)k * sizeof *v))) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        if (backend_addr(self, PySequence_Fast_GET_ITEM(seq, i), &v[i]) < 0) {
            PyMem_RawFree(v);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    *out = v;
    *n = (size_t)k;
    return 0;
}

/* ban(ip) / unban(ip) -> bool: True when the kernel's state changed. */
static inline PyObject *backend_one(BackendObject *self, PyObject *ip, int op)
{
    char err[SMBAN_ERR_LEN] = "";
    smban_addr a;
    int rc;
    if (backend_addr(self, ip, &a) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->apply(self->h, op, &a, 1, NULL, err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_core(rc, err);
    return PyBool_FromLong(rc);
}

/* ban_many(ips) / unban_many(ips) -> int: the number of changes. */
static inline PyObject *backend_many(BackendObject *self, PyObject *ips, int op)
{
    char err[SMBAN_ERR_LEN] = "";
    smban_addr *v;
    size_t n;
    int rc;
    if (backend_addrs(self, ips, &v, &n) < 0)
        return NULL;
    if (!n)
        return PyLong_FromLong(0);
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->apply(self->h, op, v, n, NULL, err);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(v);
    if (rc < 0)
        return raise_core(rc, err);
    return PyLong_FromLong(rc);
}

static inline PyObject *backend_ban(BackendObject *self, PyObject *ip)
{
    return backend_one(self, ip, SMBAN_OP_BAN);
}

static inline PyObject *backend_unban(BackendObject *self, PyObject *ip)
{
    return backend_one(self, ip, SMBAN_OP_UNBAN);
}

static inline PyObject *backend_ban_many(BackendObject *self, PyObject *ips)
{
    return backend_many(self, ips, SMBAN_OP_BAN);
}

static inline PyObject *backend_unban_many(BackendObject *self, PyObject *ips)
{
    return backend_many(self, ips, SMBAN_OP_UNBAN);
}

/* start() -> tuple of the parts that were repaired, by the backend's
 * names for them (names[0] the container, [1] its end, [2] the way in). */
static inline PyObject *backend_start(BackendObject *self, const char *const names[3])
{
    char err[SMBAN_ERR_LEN] = "";
    unsigned rep = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->start(self->h, &rep, err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_core(rc, err);
    PyObject *t = PyList_New(0), *res;
    if (!t)
        return NULL;
    static const unsigned bits[3] = {SMBAN_LAYOUT_CHAIN, SMBAN_LAYOUT_RETURN, SMBAN_LAYOUT_JUMP};
    for (size_t i = 0; i < 3; i++) {
        if (!(rep & bits[i]))
            continue;
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s || PyList_Append(t, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(t);
            return NULL;
        }
        Py_DECREF(s);
    }
    res = PyList_AsTuple(t);
    Py_DECREF(t);
    return res;
}

/* One transaction (stop, flush, or a backend's own), run without the GIL:
 * its non-negative result, or -1 with an exception set. */
static inline long backend_transaction(BackendObject *self, int (*op)(void *, char[SMBAN_ERR_LEN]))
{
    char err[SMBAN_ERR_LEN] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = op(self->h, err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        raise_core(rc, err);
        return -1;
    }
    return rc;
}

/* stop() -> bool: True when something of the layout was removed. */
static inline PyObject *backend_stop(BackendObject *self, PyObject *Py_UNUSED(ignored))
{
    long r = backend_transaction(self, self->ops->stop);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* flush() -> int: the number of bans removed. */
static inline PyObject *backend_flush(BackendObject *self, PyObject *Py_UNUSED(ignored))
{
    long r = backend_transaction(self, self->ops->flush);
    return r < 0 ? NULL : PyLong_FromLong(r);
}

/* check() -> dict: the three parts by the backend's names (bools),
 * references and bans (ints). */
static inline PyObject *backend_check(BackendObject *self, const char *const names[3])
{
    char err[SMBAN_ERR_LEN] = "";
    smban_backend_status st;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->check(self->h, &st, err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_core(rc, err);
    return Py_BuildValue("{sNsNsNsIsn}", names[0], PyBool_FromLong(st.chain),
                         names[1], PyBool_FromLong(st.ret),
                         names[2], PyBool_FromLong(st.jump),
                         "references", st.references,
                         "bans", (Py_ssize_t)st.bans);
}

/* banned() -> list of str, in the backend's order. */
static inline PyObject *backend_banned(BackendObject *self, PyObject *Py_UNUSED(ignored))
{
    char err[SMBAN_ERR_LEN] = "", buf[SMBAN_ADDR_LEN];
    smban_addr *v = NULL;
    size_t n = 0;
    PyObject *list;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->list(self->h, &v, &n, err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_core(rc, err);
    if (!(list = PyList_New((Py_ssize_t)n)))
        goto done;
    for (size_t i = 0; i < n; i++) {
        smban_addr_format(&v[i], buf);
        PyObject *s = PyUnicode_FromString(buf);
        if (!s) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
done:
    free(v);
    return list;
}

static inline PyObject *backend_stats(BackendObject *self, PyObject *Py_UNUSED(ignored))
{
    smban_backend_stats s;
    self->ops->stats(self->h, &s);
    return Py_BuildValue("{sKsKsKsKsK}",
                         "transactions", (unsigned long long)s.transactions,
                         "commits", (unsigned long long)s.commits,
                         "retries", (unsigned long long)s.retries,
                         "requests", (unsigned long long)s.requests,
                         "grouped", (unsigned long long)s.grouped);
}

/* The timeouts of ban_many: None (NULL: the set's own), one number for
 * all, or one per address; -1 with an exception. */
static inline int backend_timeouts(PyObject *arg, size_t n, double **out)
{
    *out = NULL;
    if (arg == Py_None)
        return 0;
    double *v = PyMem_RawMalloc((n ? n : 1) * sizeof *v);
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *seq = NULL;
    if (PyNumber_Check(arg)) {
        double t = PyFloat_AsDouble(arg);
        if (t == -1 && PyErr_Occurred())
            goto fail;
        for (size_t i = 0; i < n; i++)
            v[i] = t;
    } else {
        if (!(seq = PySequence_Fast(arg, "timeout must be None, a number or one per address")))
            goto fail;
        if ((size_t)PySequence_Fast_GET_SIZE(seq) != n) {
            PyErr_Format(PyExc_ValueError, "%zd timeouts for %zu addresses",
                         PySequence_Fast_GET_SIZE(seq), n);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            v[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i));
            if (v[i] == -1 && PyErr_Occurred())
                goto fail;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!(v[i] >= 0 && v[i] <= 365.0 * 86400 * 100)) {
            PyErr_Format(PyExc_ValueError, "timeout %g out of range (0: none)", v[i]);
            goto fail;
        }
    Py_XDECREF(seq);
    *out = v;
    return 0;
fail:
    Py_XDECREF(seq);
    PyMem_RawFree(v);
    return -1;
}

/* A backend's apply with timeouts and refresh (nft.h, iptc.h set mode). */
typedef int (*backend_timed_apply)(void *h, int op, const smban_addr *addrs, size_t n,
                                   const double *timeouts, int refresh, uint8_t *results,
                                   char err[SMBAN_ERR_LEN]);

/* ban_many(ips, timeout=None, refresh=False) -> int: as backend_ban_many,
 * each element living its timeout in the kernel; refresh: one already
 * banned gets its new timeout too. */
static inline PyObject *backend_ban_many_timed(BackendObject *self, PyObject *args,
                                               PyObject *kwargs, backend_timed_apply apply)
{
    static char *kwlist[] = {"ips", "timeout", "refresh", NULL};
    char err[SMBAN_ERR_LEN] = "";
    PyObject *ips, *targ = Py_None;
    int refresh = 0;
    smban_addr *v;
    double *t;
    size_t n;
    int rc;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Op:ban_many", kwlist, &ips, &targ,
                                     &refresh))
        return NULL;
    if (backend_addrs(self, ips, &v, &n) < 0)
        return NULL;
    if (backend_timeouts(targ, n, &t) < 0) {
        PyMem_RawFree(v);
        return NULL;
    }
    if (!n) {
        PyMem_RawFree(t);
        return PyLong_FromLong(0);
    }
    Py_BEGIN_ALLOW_THREADS
    rc = apply(self->h, SMBAN_OP_BAN, v, n, t, refresh, NULL, err);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(v);
    PyMem_RawFree(t);
    if (rc < 0)
        return raise_core(rc, err);
    return PyLong_FromLong(rc);
}

static inline PyObject *backend_get_family(BackendObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->ops->family(self->h));
}

static inline PyObject *backend_get_min_prefix(BackendObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->ops->min_prefix(self->h));
}

#endif
