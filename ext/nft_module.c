/*
 * nft_module.c — smban._nft: the Python binding of the nftables ban
 * backend, the Set type (one kernel set of one family and the rule that
 * matches it, written through libnftables; see nft.h).  Built only where
 * libnftables is (setup.py); smban.nftables wraps it.
 *
 * Multi-phase init (PEP 489), a heap type, no module state.  The methods
 * every backend has are the shared ones of backend_py.h; this file adds
 * the constructor, ban_many with timeouts of its own (a restore, a
 * prolonged ban), and
 * the table's name.
 */
#include "backend_py.h"
#include "nft.h"

/* ops is &smban_nft_backend */
typedef BackendObject SetObject;

/* What the generic start() and check() call the three parts. */
static const char *const parts[3] = {"set", "chain", "rule"};

static PyObject *Set_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", "family", "table", "protocol", "ports", "blocktype",
                             "min_prefix", "timeout", NULL};
    smban_nft_options o;
    char err[SMBAN_ERR_LEN] = "";
    smban_nft *h;
    SetObject *self;
    int rc;

    smban_nft_options_default(&o);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$issssid:Set", kwlist, &o.name,
                                     &o.family, &o.table, &o.protocol, &o.ports,
                                     &o.blocktype, &o.min_prefix, &o.timeout))
        return NULL;
    if (!(self = (SetObject *)type->tp_alloc(type, 0)))
        return NULL;
    /* no kernel access here: option parsing only (getservbyname_r) */
    if ((rc = smban_nft_new(&o, &h, err)) < 0) {
        Py_DECREF(self);
        return raise_core(rc, err);
    }
    self->ops = &smban_nft_backend;
    self->h = h;
    return (PyObject *)self;
}

static PyObject *Set_start(SetObject *self, PyObject *Py_UNUSED(ignored))
{
    return backend_start(self, parts);
}

static PyObject *Set_check(SetObject *self, PyObject *Py_UNUSED(ignored))
{
    return backend_check(self, parts);
}

static int nft_apply(void *h, int op, const smban_addr *addrs, size_t n,
                     const double *timeouts, int refresh, uint8_t *results,
                     char err[SMBAN_ERR_LEN])
{
    return smban_nft_apply(h, op, addrs, n, timeouts, refresh, results, err);
}

static PyObject *Set_ban_many(SetObject *self, PyObject *args, PyObject *kwargs)
{
    return backend_ban_many_timed(self, args, kwargs, nft_apply);
}

static PyObject *Set_get_set(SetObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(self->ops->name(self->h));
}

static PyObject *Set_get_table(SetObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(smban_nft_table(self->h));
}

static PyMethodDef Set_methods[] = {
    {"start", (PyCFunction)Set_start, METH_NOARGS,
     "start() -> tuple\n\nCreate or repair the table, the set, the chain and its rule, in one\n"
     "transaction; returns the parts that were missing ('set', 'chain', 'rule')."},
    {"stop", (PyCFunction)backend_stop, METH_NOARGS,
     "stop() -> bool\n\nRemove the chain and the set with its bans (the table stays)."},
    {"ban", (PyCFunction)backend_ban, METH_O,
     "ban(ip) -> bool\n\nBan one address (False: it was already banned).  A ban also\n"
     "repairs the layout, in the same transaction."},
    {"unban", (PyCFunction)backend_unban, METH_O,
     "unban(ip) -> bool\n\nUnban one address (False: it was not banned)."},
    {"ban_many", (PyCFunction)(void (*)(void))Set_ban_many, METH_VARARGS | METH_KEYWORDS,
     "ban_many(ips, timeout=None, refresh=False) -> int\n\nBan every address in one transaction;\n"
     "all are validated first.  timeout: seconds each lives in the kernel, one number or\n"
     "one per address (0: no timeout; None: the set's own).  refresh: an address already\n"
     "banned gets its new timeout too.  Returns the number newly banned."},
    {"unban_many", (PyCFunction)backend_unban_many, METH_O,
     "unban_many(ips) -> int\n\nUnban every address in one transaction."},
    {"banned", (PyCFunction)backend_banned, METH_NOARGS,
     "banned() -> list of str\n\nThe banned addresses, in the set's order."},
    {"flush", (PyCFunction)backend_flush, METH_NOARGS,
     "flush() -> int\n\nRemove every ban, keep the set, the chain and the rule."},
    {"check", (PyCFunction)Set_check, METH_NOARGS,
     "check() -> dict\n\nRead the layout: set, chain (hooked at input), rule (ours, alone),\n"
     "references (rules of the chain naming the set), bans."},
    {"stats", (PyCFunction)backend_stats, METH_NOARGS,
     "stats() -> dict of counters: transactions, commits, retries, requests, grouped."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Set_getset[] = {
    {"set", (getter)Set_get_set, NULL, "the set's name (also the chain's)", NULL},
    {"table", (getter)Set_get_table, NULL, "the inet table smban owns", NULL},
    {"family", (getter)backend_get_family, NULL, "4 or 6", NULL},
    {"min_prefix", (getter)backend_get_min_prefix, NULL,
     "the shortest network prefix banned; 0: single addresses only", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Set_slots[] = {
    {Py_tp_doc, "Set(name, *, family=4, table='smban', protocol='tcp', ports='all',\n"
                "    blocktype='reject', min_prefix=0, timeout=0)\n\n"
                "One nftables set of bans (f2b-<name>-v4 or -v6 in table inet <table>)\n"
                "and the chain whose one rule refuses its addresses."},
    {Py_tp_new, Set_new},
    {Py_tp_dealloc, backend_dealloc},
    {Py_tp_traverse, backend_traverse},
    {Py_tp_methods, Set_methods},
    {Py_tp_getset, Set_getset},
    {0, NULL},
};

static PyType_Spec Set_spec = {
    "smban._nft.Set",
    sizeof(SetObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    Set_slots,
};

static int module_exec(PyObject *module)
{
    PyObject *tp = PyType_FromModuleAndSpec(module, &Set_spec, NULL);
    int rc;
    if (!tp)
        return -1;
    rc = PyModule_AddType(module, (PyTypeObject *)tp);
    Py_DECREF(tp);
    if (rc < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "NAME_MAX", SMBAN_NFT_NAME_MAX) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef nft_module = {
    PyModuleDef_HEAD_INIT,
    "smban._nft",
    "smban's nftables ban backend: a kernel set per jail and family, through libnftables.",
    0,
    NULL,
    module_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__nft(void)
{
    return PyModuleDef_Init(&nft_module);
}
