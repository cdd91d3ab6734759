"""Glue to the installed fail2ban: load a filter the way fail2ban does, and
run lines through fail2ban's own Filter (for comparisons and tests)."""
import logging
import os
import shutil
import tempfile

F2B_CONFIG = "/etc/fail2ban"
#: The generated twin in the source tree (installed copies live in filter.d).
TWIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "filters", "smban.conf")


class FilterError(Exception):
    """A filter that cannot be loaded: the message says which and why."""


def _import_fail2ban():
    # fail2ban reports through its "fail2ban" logger; with no handler set up,
    # Python's last-resort handler would print its warnings to stderr beside
    # our own message.  A program that sets up logging still sees them.
    log = logging.getLogger("fail2ban")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    try:
        from fail2ban.client.filterreader import FilterReader
        from fail2ban.helpers import extractOptions
        from fail2ban.server.filter import Filter
    except ImportError as exc:
        raise FilterError("fail2ban is not importable by this Python (%s); "
                          "install Debian's fail2ban package" % exc) from None
    return FilterReader, Filter, extractOptions


def _first_line(exc):
    """An exception's message on one line (configparser's span several and
    name a temporary file)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class F2BFilter:
    """fail2ban's own Filter, loaded with one filter.d configuration.

    spec: "name", "name[opt=value, ...]" (from filter.d of the installed
    fail2ban) or a path to a .conf file.
    """

    def __init__(self, spec, basedir=F2B_CONFIG):
        extractOptions = _import_fail2ban()[2]
        self.spec = spec
        self._tmp = None
        try:
            name, opts = extractOptions(spec)
        except Exception:
            name, opts = None, None
        if os.sep in spec or spec.endswith(".conf"):
            path = os.path.abspath(spec)
            if not os.path.isfile(path):
                raise FilterError("%s: no such filter file" % spec)
            basedir = self._private_basedir(basedir, path)
            name, opts = os.path.splitext(os.path.basename(path))[0], {}
        elif not name:
            raise FilterError("%r: not a filter name like sendmail-reject[mode=extra]" % spec)
        self.filter = load_filter(name, opts, basedir, spec)

    def _private_basedir(self, basedir, path):
        """A configuration directory holding common.conf and the filter."""
        self._tmp = tempfile.TemporaryDirectory(prefix="smban-f2b-")
        fd = os.path.join(self._tmp.name, "filter.d")
        os.mkdir(fd)
        for inc in ("common.conf",):
            src = os.path.join(os.path.dirname(path), inc)
            if not os.path.isfile(src):
                src = os.path.join(basedir, "filter.d", inc)
            if os.path.isfile(src):
                shutil.copy(src, os.path.join(fd, inc))
        # fail2ban reads filter.d/NAME.conf: a path not ending in .conf is
        # copied to that name
        name = os.path.splitext(os.path.basename(path))[0]
        shutil.copy(path, os.path.join(fd, name + ".conf"))
        return self._tmp.name

    def failures(self, line):
        """[(ip, failregex index, time)] fail2ban finds on one line."""
        return failures(self.filter, line)


def load_filter(name, opts, basedir, label=None):
    """fail2ban's own Filter for filter.d/NAME.conf under basedir, with
    options, set up as fail2ban's sample tests set one up (every failregex
    tried, no findtime cut).  FilterError names label (or name) and why."""
    FilterReader, Filter, _ = _import_fail2ban()
    label = label or name
    flt = Filter(None)
    flt.returnRawHost = True
    flt.checkAllRegex = True
    flt.checkFindTime = False
    flt.active = True
    reader = FilterReader(name, "smban", dict(opts or {}), basedir=basedir, share_config={})
    try:
        ok = reader.read()
    except Exception as exc:
        raise FilterError("%s: %s" % (label, _first_line(exc))) from None
    if not ok:
        raise FilterError("%s: no filter.d/%s.conf in %s" % (label, name, basedir))
    setters = {"prefregex": lambda v: setattr(flt, "prefRegex", v),
               "addfailregex": flt.addFailRegex, "addignoreregex": flt.addIgnoreRegex,
               "maxlines": flt.setMaxLines, "datepattern": flt.setDatePattern}
    try:
        reader.getOptions({})
        for opt in reader.convert():
            for v in (opt[3] if opt[0] == "multi-set" else [opt[3]]):
                if opt[2] in setters:
                    setters[opt[2]](v)
    except Exception as exc:
        raise FilterError("%s: %s" % (label, _first_line(exc))) from None
    if not flt.getFailRegex():
        raise FilterError("%s: the filter has no failregex" % label)
    return flt


def failures(flt, line):
    """[(ip, failregex index, time)] a fail2ban Filter finds on one line,
    skipping pending and no-failure results as fail2ban's sample tests do."""
    out = []
    for res in flt.processLine(line) or ():
        fid, fail = res[1], res[3]
        if fail.get("mlfpending") or fail.get("nofail") or fid is None:
            continue
        out.append((str(fid), res[0], res[2]))
    return out
