/*
 * iptc_module.c — smban._iptc: the Python binding of the ban backend, the
 * Chain type (one iptables chain of one family, edited through libiptc).
 * Built only where libiptc is (setup.py), so the type exists only where it
 * can work; smban.iptables wraps it.
 *
 * Multi-phase init (PEP 489), a heap type, no module state: Chain raises
 * built-in exceptions only, mapped from the core's codes in one place
 * (raise_core, backend_py.h).  The methods every backend has are the
 * shared ones of backend_py.h (they call the operations table, backend.h,
 * without the GIL, lock wait included); this file adds the constructor and
 * what only iptables has.  The backend
 * object is thread-safe and groups the bans of concurrent threads into one
 * commit.  Only the constructor and the iptables extras (unjump, lockfile,
 * the race hook) name the iptables backend itself.
 */
#include "backend_py.h"
#include "iptc.h"
#include "ipset.h"

/* ops is smban_iptc_ops(h): the chain's, or set mode's */
typedef BackendObject ChainObject;

/* What the generic start() and check() call the three parts: the chain,
 * its RETURN and the jump to it; in set mode the set, (no end to keep,
 * always present) and the rule matching it. */
static const char *const parts[3] = {"chain", "return", "jump"};
static const char *const set_parts[3] = {"set", "return", "rule"};

static const char *const *parts_of(ChainObject *self)
{
    return smban_iptc_set_name(self->h) ? set_parts : parts;
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
                             "retries", "set", NULL};
    smban_iptc_options o;
    char err[SMBAN_ERR_LEN] = "";
    smban_iptc *c;
    ChainObject *self;
    int rc;

    smban_iptc_options_default(&o);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$isssszdiip:Chain", kwlist,
                                     &o.chain, &o.family, &o.parent, &o.protocol,
                                     &o.ports, &o.blocktype, &o.lockfile,
                                     &o.lock_wait, &o.min_prefix, &o.retries, &o.set))
        return NULL;
    if (!(self = (ChainObject *)type->tp_alloc(type, 0)))
        return NULL;
    /* no table access here: only option parsing (getservbyname_r) */
    if ((rc = smban_iptc_new(&o, &c, err)) < 0) {
        Py_DECREF(self);
        return raise_core(rc, err);
    }
    self->ops = smban_iptc_ops(c);
    self->h = c;
    return (PyObject *)self;
}

/* start() -> tuple of what was repaired: "chain", "return", "jump" (set
 * mode: "set", "rule"). */
static PyObject *Chain_start(ChainObject *self, PyObject *Py_UNUSED(ignored))
{
    return backend_start(self, parts_of(self));
}

static int unjump(void *h, char err[SMBAN_ERR_LEN])
{
    return smban_iptc_unjump(h, err);
}

/* unjump() -> int: jump rules removed from the parent (chain and bans kept). */
static PyObject *Chain_unjump(ChainObject *self, PyObject *Py_UNUSED(ignored))
{
    long r = backend_transaction(self, unjump);
    return r < 0 ? NULL : PyLong_FromLong(r);
}

/* check() -> dict: chain, return, jump (set mode: set, return, rule)
 * (bools), references, bans (ints). */
static PyObject *Chain_check(ChainObject *self, PyObject *Py_UNUSED(ignored))
{
    return backend_check(self, parts_of(self));
}

static PyObject *Chain_race_next(ChainObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    smban_iptc_race_next(iptc_of(self), n > INT_MAX ? INT_MAX : (int)n);
    Py_RETURN_NONE;
}

static int iptc_apply(void *h, int op, const smban_addr *addrs, size_t n,
                      const double *timeouts, int refresh, uint8_t *results,
                      char err[SMBAN_ERR_LEN])
{
    return smban_iptc_apply(h, op, addrs, n, timeouts, refresh, results, err);
}

static PyObject *Chain_ban_many(ChainObject *self, PyObject *args, PyObject *kwargs)
{
    return backend_ban_many_timed(self, args, kwargs, iptc_apply);
}

static PyObject *Chain_get_chain(ChainObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(smban_iptc_backend.name(self->h));
}

static PyObject *Chain_get_set(ChainObject *self, void *Py_UNUSED(closure))
{
    const char *name = smban_iptc_set_name(iptc_of(self));
    if (!name)
        Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

static PyObject *Chain_get_lockfile(ChainObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_DecodeFSDefault(smban_iptc_lockfile(iptc_of(self)));
}

static PyMethodDef Chain_methods[] = {
    {"start", (PyCFunction)Chain_start, METH_NOARGS,
     "start() -> tuple\n\nCreate or repair the chain, its RETURN and the jump rule;\n"
     "returns the parts that were missing ('chain', 'return', 'jump').  Set mode: the\n"
     "set, then the rule matching it ('set', 'rule')."},
    {"stop", (PyCFunction)backend_stop, METH_NOARGS,
     "stop() -> bool\n\nRemove the jump rule and the chain with its bans (set mode: the\n"
     "rules matching the set, then the set)."},
    {"ban", (PyCFunction)backend_ban, METH_O,
     "ban(ip) -> bool\n\nBan one address (False: it was already banned).\n"
     "Concurrent calls share one commit; a ban also repairs the layout."},
    {"unban", (PyCFunction)backend_unban, METH_O,
     "unban(ip) -> bool\n\nUnban one address (False: it was not banned)."},
    {"ban_many", (PyCFunction)(void (*)(void))Chain_ban_many, METH_VARARGS | METH_KEYWORDS,
     "ban_many(ips, timeout=None, refresh=False) -> int\n\nBan every address in one commit;\n"
     "all are validated first.  Set mode only: timeout, seconds each lives in the kernel\n"
     "(one number or one per address; 0 or None: until unbanned), and refresh, an\n"
     "address already banned gets its new timeout.  Returns the number newly banned."},
    {"unban_many", (PyCFunction)backend_unban_many, METH_O,
     "unban_many(ips) -> int\n\nUnban every address in one commit."},
    {"banned", (PyCFunction)backend_banned, METH_NOARGS,
     "banned() -> list of str\n\nThe banned addresses, newest first."},
    {"unjump", (PyCFunction)Chain_unjump, METH_NOARGS,
     "unjump() -> int\n\nRemove the jump rules from the parent; keep the chain and bans."},
    {"flush", (PyCFunction)backend_flush, METH_NOARGS,
     "flush() -> int\n\nRemove every ban, keep the chain and the jump rule."},
    {"check", (PyCFunction)Chain_check, METH_NOARGS,
     "check() -> dict\n\nRead the layout: chain, return, jump, references, bans (set mode:\n"
     "set, return, rule, references to the set, bans)."},
    {"stats", (PyCFunction)backend_stats, METH_NOARGS,
     "stats() -> dict of counters: transactions, commits, retries, requests, grouped."},
    {"_race_next", (PyCFunction)Chain_race_next, METH_O,
     "_race_next(n)\n\nTest hook: another handle commits a change before each of our next\n"
     "n changing commits, so the kernel refuses them (EAGAIN) and they are retried."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Chain_getset[] = {
    {"chain", (getter)Chain_get_chain, NULL, "the chain name", NULL},
    {"set", (getter)Chain_get_set, NULL, "set mode: the ipset's name; else None", NULL},
    {"family", (getter)backend_get_family, NULL, "4 or 6", NULL},
    {"min_prefix", (getter)backend_get_min_prefix, NULL,
     "the shortest network prefix banned; 0: single addresses only", NULL},
    {"lockfile", (getter)Chain_get_lockfile, NULL, "the xtables lock file used", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Chain_slots[] = {
    {Py_tp_doc, "Chain(chain, *, family=4, parent='INPUT', protocol='tcp', ports='all',\n"
                "      blocktype='REJECT', lockfile=None, lock_wait=10.0, min_prefix=0,\n"
                "      retries=8, set=False)\n\n"
                "One iptables chain (legacy tables, through libiptc) holding bans; with\n"
                "set=True, one rule matching an ipset (<chain>-v4/-v6) holding them."},
    {Py_tp_new, Chain_new},
    {Py_tp_dealloc, backend_dealloc},
    {Py_tp_traverse, backend_traverse},
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
    if (PyModule_AddIntConstant(module, "CHAIN_MAX", SMBAN_CHAIN_MAX) < 0
        || PyModule_AddIntConstant(module, "SET_TIMEOUT_MAX", SMBAN_IPSET_TIMEOUT_MAX) < 0)
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
