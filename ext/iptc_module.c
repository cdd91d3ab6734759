/*
 * iptc_module.c — smban._iptc: the Python binding of the ban backend, the
 * Chain type (one iptables chain of one family, edited through libiptc).
 * Built only where libiptc is (setup.py), so the type exists only where it
 * can work; smban.iptables wraps it.
 *
 * Multi-phase init (PEP 489), a heap type, no module state: Chain raises
 * built-in exceptions only, mapped from the core's codes in one place
 * (raise_core).  The methods parse arguments, call the backend through its
 * operations table (backend.h) and build the result; every call that reads
 * or writes the table releases the GIL for the whole transaction (lock
 * wait included) and touches no Python object meanwhile.  The backend
 * object is thread-safe and groups the bans of concurrent threads into one
 * commit.  Only the constructor and the iptables extras (unjump, lockfile,
 * the race hook) name the iptables backend itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "iptc.h"

typedef struct {
    PyObject_HEAD
    const smban_backend_ops *ops;   /* &smban_iptc_backend */
    void *h;                        /* owned; NULL only during construction */
} ChainObject;

/* Set the exception for a negative core return; returns NULL.  The one
 * mapping of core codes: bad input ValueError, out of memory MemoryError,
 * the xtables lock taken TimeoutError, libiptc, the kernel or a system
 * call OSError. */
static PyObject *raise_core(int rc, const char *err)
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
    default:                        /* SMBAN_EIPTC, SMBAN_ESYS */
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
}

/* The iptables object behind self, for the operations only it has. */
static smban_iptc *iptc_of(ChainObject *self)
{
    return self->h;
}

static PyObject *Chain_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"chain", "family", "parent", "protocol", "ports",
                             "blocktype", "lockfile", "lock_wait", "min_prefix",
                             "retries", NULL};
    smban_iptc_options o;
    char err[SMBAN_ERR_LEN] = "";
    smban_iptc *c;
    ChainObject *self;
    int rc;

    smban_iptc_options_default(&o);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$isssszdii:Chain", kwlist,
                                     &o.chain, &o.family, &o.parent, &o.protocol,
                                     &o.ports, &o.blocktype, &o.lockfile,
                                     &o.lock_wait, &o.min_prefix, &o.retries))
        return NULL;
    if (!(self = (ChainObject *)type->tp_alloc(type, 0)))
        return NULL;
    /* no table access here: only option parsing (getservbyname_r) */
    if ((rc = smban_iptc_new(&o, &c, err)) < 0) {
        Py_DECREF(self);
        return raise_core(rc, err);
    }
    self->ops = &smban_iptc_backend;
    self->h = c;
    return (PyObject *)self;
}

static int Chain_traverse(ChainObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void Chain_dealloc(ChainObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->ops)
        self->ops->free(self->h);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Parse one str into *a for self's family; -1 with ValueError/TypeError. */
static int chain_addr(ChainObject *self, PyObject *ip, smban_addr *a)
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

/* ban(ip) / unban(ip) -> bool: True when the table changed. */
static PyObject *chain_one(ChainObject *self, PyObject *ip, int op)
{
    char err[SMBAN_ERR_LEN] = "";
    smban_addr a;
    int rc;
    if (chain_addr(self, ip, &a) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->apply(self->h, op, &a, 1, NULL, err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_core(rc, err);
    return PyBool_FromLong(rc);
}

static PyObject *Chain_ban(ChainObject *self, PyObject *ip)
{
    return chain_one(self, ip, SMBAN_OP_BAN);
}

static PyObject *Chain_unban(ChainObject *self, PyObject *ip)
{
    return chain_one(self, ip, SMBAN_OP_UNBAN);
}

/* ban_many(ips) / unban_many(ips) -> int: the number of changes.  Every
 * address is validated before the table is touched. */
static PyObject *chain_many(ChainObject *self, PyObject *ips, int op)
{
    char err[SMBAN_ERR_LEN] = "";
    PyObject *seq = PySequence_Fast(ips, "ban_many()/unban_many() takes an iterable of str");
    smban_addr *v = NULL;
    Py_ssize_t n;
    int rc;
    if (!seq)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    if (n && !(v = PyMem_RawMalloc((size_t)n * sizeof *v))) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (chain_addr(self, PySequence_Fast_GET_ITEM(seq, i), &v[i]) < 0) {
            PyMem_RawFree(v);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    if (!n) {
        PyMem_RawFree(v);
        return PyLong_FromLong(0);
    }
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->apply(self->h, op, v, (size_t)n, NULL, err);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(v);
    if (rc < 0)
        return raise_core(rc, err);
    return PyLong_FromLong(rc);
}

static PyObject *Chain_ban_many(ChainObject *self, PyObject *ips)
{
    return chain_many(self, ips, SMBAN_OP_BAN);
}

static PyObject *Chain_unban_many(ChainObject *self, PyObject *ips)
{
    return chain_many(self, ips, SMBAN_OP_UNBAN);
}

/* start() -> tuple of what was repaired: "chain", "return", "jump". */
static PyObject *Chain_start(ChainObject *self, PyObject *Py_UNUSED(ignored))
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
    static const struct { unsigned bit; const char *name; } parts[] = {
        {SMBAN_LAYOUT_CHAIN, "chain"}, {SMBAN_LAYOUT_RETURN, "return"},
        {SMBAN_LAYOUT_JUMP, "jump"}};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        if (!(rep & parts[i].bit))
            continue;
        PyObject *s = PyUnicode_FromString(parts[i].name);
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

/* One transaction of stop, unjump or flush, run without the GIL: its
 * non-negative result, or -1 with an exception set. */
static long chain_transaction(ChainObject *self, int (*op)(void *, char[SMBAN_ERR_LEN]))
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

/* stop() -> bool: True when a jump rule or the chain was removed. */
static PyObject *Chain_stop(ChainObject *self, PyObject *Py_UNUSED(ignored))
{
    long r = chain_transaction(self, self->ops->stop);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static int unjump(void *h, char err[SMBAN_ERR_LEN])
{
    return smban_iptc_unjump(h, err);
}

/* unjump() -> int: jump rules removed from the parent (chain and bans kept). */
static PyObject *Chain_unjump(ChainObject *self, PyObject *Py_UNUSED(ignored))
{
    long r = chain_transaction(self, unjump);
    return r < 0 ? NULL : PyLong_FromLong(r);
}

/* flush() -> int: the number of bans removed. */
static PyObject *Chain_flush(ChainObject *self, PyObject *Py_UNUSED(ignored))
{
    long r = chain_transaction(self, self->ops->flush);
    return r < 0 ? NULL : PyLong_FromLong(r);
}

/* check() -> dict: chain, return, jump (bools), references, bans (ints). */
static PyObject *Chain_check(ChainObject *self, PyObject *Py_UNUSED(ignored))
{
    char err[SMBAN_ERR_LEN] = "";
    smban_backend_status st;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = self->ops->check(self->h, &st, err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_core(rc, err);
    return Py_BuildValue("{sNsNsNsIsn}", "chain", PyBool_FromLong(st.chain),
                         "return", PyBool_FromLong(st.ret),
                         "jump", PyBool_FromLong(st.jump),
                         "references", st.references,
                         "bans", (Py_ssize_t)st.bans);
}

/* banned() -> list of str, head of the chain first. */
static PyObject *Chain_banned(ChainObject *self, PyObject *Py_UNUSED(ignored))
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

static PyObject *Chain_stats(ChainObject *self, PyObject *Py_UNUSED(ignored))
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

static PyObject *Chain_race_next(ChainObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    smban_iptc_race_next(iptc_of(self), n > INT_MAX ? INT_MAX : (int)n);
    Py_RETURN_NONE;
}

static PyObject *Chain_get_chain(ChainObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(self->ops->name(self->h));
}

static PyObject *Chain_get_family(ChainObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->ops->family(self->h));
}

static PyObject *Chain_get_min_prefix(ChainObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->ops->min_prefix(self->h));
}

static PyObject *Chain_get_lockfile(ChainObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_DecodeFSDefault(smban_iptc_lockfile(iptc_of(self)));
}

static PyMethodDef Chain_methods[] = {
    {"start", (PyCFunction)Chain_start, METH_NOARGS,
     "start() -> tuple\n\nCreate or repair the chain, its RETURN and the jump rule;\n"
     "returns the parts that were missing ('chain', 'return', 'jump')."},
    {"stop", (PyCFunction)Chain_stop, METH_NOARGS,
     "stop() -> bool\n\nRemove the jump rule and the chain with its bans."},
    {"ban", (PyCFunction)Chain_ban, METH_O,
     "ban(ip) -> bool\n\nBan one address (False: it was already banned).\n"
     "Concurrent calls share one commit; a ban also repairs the layout."},
    {"unban", (PyCFunction)Chain_unban, METH_O,
     "unban(ip) -> bool\n\nUnban one address (False: it was not banned)."},
    {"ban_many", (PyCFunction)Chain_ban_many, METH_O,
     "ban_many(ips) -> int\n\nBan every address in one commit; all are validated first.\n"
     "Returns the number newly banned."},
    {"unban_many", (PyCFunction)Chain_unban_many, METH_O,
     "unban_many(ips) -> int\n\nUnban every address in one commit."},
    {"banned", (PyCFunction)Chain_banned, METH_NOARGS,
     "banned() -> list of str\n\nThe banned addresses, newest first."},
    {"unjump", (PyCFunction)Chain_unjump, METH_NOARGS,
     "unjump() -> int\n\nRemove the jump rules from the parent; keep the chain and bans."},
    {"flush", (PyCFunction)Chain_flush, METH_NOARGS,
     "flush() -> int\n\nRemove every ban, keep the chain and the jump rule."},
    {"check", (PyCFunction)Chain_check, METH_NOARGS,
     "check() -> dict\n\nRead the layout: chain, return, jump, references, bans."},
    {"stats", (PyCFunction)Chain_stats, METH_NOARGS,
     "stats() -> dict of counters: transactions, commits, retries, requests, grouped."},
    {"_race_next", (PyCFunction)Chain_race_next, METH_O,
     "_race_next(n)\n\nTest hook: another handle commits a change before each of our next\n"
     "n changing commits, so the kernel refuses them (EAGAIN) and they are retried."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Chain_getset[] = {
    {"chain", (getter)Chain_get_chain, NULL, "the chain name", NULL},
    {"family", (getter)Chain_get_family, NULL, "4 or 6", NULL},
    {"min_prefix", (getter)Chain_get_min_prefix, NULL,
     "the shortest network prefix banned; 0: single addresses only", NULL},
    {"lockfile", (getter)Chain_get_lockfile, NULL, "the xtables lock file used", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Chain_slots[] = {
    {Py_tp_doc, "Chain(chain, *, family=4, parent='INPUT', protocol='tcp', ports='all',\n"
                "      blocktype='REJECT', lockfile=None, lock_wait=10.0, min_prefix=0,\n"
                "      retries=8)\n\n"
                "One iptables chain (legacy tables, through libiptc) holding bans."},
    {Py_tp_new, Chain_new},
    {Py_tp_dealloc, Chain_dealloc},
    {Py_tp_traverse, Chain_traverse},
    {Py_tp_methods, Chain_methods},
    {Py_tp_getset, Chain_getset},
    {0, NULL},
};

static PyType_Spec Chain_spec = {
    "smban._iptc.Chain",
    sizeof(ChainObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    Chain_slots,
};

/* The module dict holds the type; instances hold their type. */
static int module_exec(PyObject *module)
{
    PyObject *tp = PyType_FromModuleAndSpec(module, &Chain_spec, NULL);
    int rc;
    if (!tp)
        return -1;
    rc = PyModule_AddType(module, (PyTypeObject *)tp);
    Py_DECREF(tp);
    if (rc < 0)
        return -1;
    /* the limits the Python layer checks before it calls in */
    if (PyModule_AddIntConstant(module, "CHAIN_MAX", SMBAN_CHAIN_MAX) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef iptc_module = {
    PyModuleDef_HEAD_INIT,
    "smban._iptc",
    "smban's ban backend: iptables chains edited in process through libiptc.",
    0,
    NULL,
    module_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__iptc(void)
{
    return PyModuleDef_Init(&iptc_module);
}
