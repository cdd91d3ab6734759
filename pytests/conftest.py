"""Shared fixtures of smban's test suite.

Tests run with TZ=UTC so that local-time syslog stamps have one meaning,
and with a fixed reference time for the year of RFC 3164 dates.
"""
import calendar
import json
import os
import re
import shutil
import sys
import time

import pytest

os.environ["TZ"] = "UTC"
time.tzset()

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")
# fail2ban's configuration and test logs, from the installed package
F2B_CONFIG = "/etc/fail2ban"

#: The reference "now" of the fixtures: RFC 3164 dates fall in 2024.
REF_TIME = calendar.timegm((2024, 12, 31, 12, 0, 0))

import smban  # noqa: E402  (after TZ is set)
import smban.f2b  # noqa: E402


def iso_to_epoch(text):
    """An ISO 8601 time of a fixture ("2024-11-17T00:33:33[.fff][Z]"), read
    as UTC (the tests' local zone)."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d+)?Z?$", text)
    if not m:
        raise ValueError("bad fixture time %r" % text)
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    return calendar.timegm((y, mo, d, h, mi, s)) + frac


class Sample:
    """One annotated line of a fixture file."""

    def __init__(self, path, lineno, line, spec):
        self.path = path
        self.lineno = lineno
        self.line = line
        self.spec = spec            # the failJSON dict, or None

    @property
    def id(self):
        return "%s:%d" % (os.path.basename(self.path), self.lineno)

    def smban(self, mode):
        """The expected C-engine event for mode: a dict, None (no event), or
        False (nothing said)."""
        if self.spec is None or "smban" not in self.spec:
            return False
        exp = self.spec["smban"]
        if exp is None:
            return None
        exp = dict(exp)
        over = exp.pop("aggressive", {})
        if mode == "aggressive":
            exp.update(over)
        return exp


def read_samples(path):
    """Parse a fixture: every log line, with the failJSON before it if any."""
    samples = []
    spec = None
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if line.startswith("#"):
                m = re.match(r"^#+ ?failJSON:(.+)$", line)
                if m:
                    spec = json.loads(m.group(1))
                continue
            if not line.strip():
                continue
            samples.append(Sample(path, lineno, line, spec))
            spec = None
    return samples


def fixture_files():
    return sorted(os.path.join(FIXTURES, f) for f in os.listdir(FIXTURES)
                  if f.endswith(".log"))


def all_samples():
    return [s for p in fixture_files() for s in read_samples(p)]


@pytest.fixture(scope="session")
def f2b_confdir(tmp_path_factory):
    """A fail2ban configuration directory holding common.conf and smban's twin."""
    if not os.path.isfile(os.path.join(F2B_CONFIG, "filter.d", "common.conf")):
        pytest.skip("fail2ban is not installed (make deps installs it)")
    d = tmp_path_factory.mktemp("f2bconf")
    os.mkdir(d / "filter.d")
    for name in ("common.conf",):
        shutil.copy(os.path.join(F2B_CONFIG, "filter.d", name), d / "filter.d" / name)
    shutil.copy(os.path.join(ROOT, "filters", "smban.conf"), d / "filter.d" / "smban.conf")
    return str(d)


sys.path.insert(0, os.path.join(ROOT, "tools"))
import fail2ban_trees  # noqa: E402  (tools/: shared with the benchmarks)
# the lab package (lab/: the network-namespace helpers and the live lab);
# appended, so that a smban named on PYTHONPATH (make asan's build) stays first
if ROOT not in sys.path:
    sys.path.append(ROOT)


def f2b_dist_params():
    """pytest parameters, one per fail2ban (tools/fail2ban_trees.py):
    Debian's package, then each upstream tree (skipped, with the reason,
    when it is absent)."""
    return [pytest.param(d, id="f2b-" + d.version,
                         marks=[pytest.mark.skip(reason=d.missing)] if d.missing else [])
            for d in fail2ban_trees.dists()]


#: The property tests' budget.  make test: derandomized (the same examples
#: every run, no example database).  make properties (CI): random examples
#: from SMBAN_PROPERTY_SEED (pytest --hypothesis-seed), SMBAN_PROPERTY_SCALE
#: times as many; the seed is printed, so a failure can be replayed.
PROPERTY_SEED = os.environ.get("SMBAN_PROPERTY_SEED")
PROPERTY_SCALE = int(os.environ.get("SMBAN_PROPERTY_SCALE", "1"))


def property_settings(examples):
    """hypothesis settings for a property with this many examples in make test."""
    from hypothesis import HealthCheck, settings
    return settings(max_examples=examples * PROPERTY_SCALE, deadline=None,
                    derandomize=PROPERTY_SEED is None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def modified_twin(text, how):
    """smban's generated filter text changed the way an administrator might,
    and the reason the engine must give for standing down:
    "added" a failregex, "edited" one in place (the same count), or
    "reordered" two (the same regexes)."""
    head, sep, rest = text.partition("failregex = ")
    body, sep2, tail = rest.partition("\n\nignoreregex")
    regs = [r.strip() for r in body.split("\n")]
    if how == "added":
        regs.insert(0, "^local rule <ADDR>$")
        why = "%d failregex, the twin has %d" % (len(regs), len(regs) - 1)
    elif how == "edited":
        i = next(i for i, r in enumerate(regs) if "Relaying denied" in r)
        regs[i] = regs[i].replace("Relaying denied", "Relaying (?:denied|refused)")
        why = "failregex %d differs" % i
    elif how == "reordered":
        regs[1], regs[2] = regs[2], regs[1]
        why = "failregex 1 differs"
    else:
        raise ValueError(how)
    return head + sep + "\n            ".join(regs) + sep2 + tail, why


def load_f2b_filter(basedir, name, opts=None):
    """fail2ban's own Filter loaded with filter.d/NAME.conf from basedir."""
    return smban.f2b.load_filter(name, opts, basedir)


def f2b_failures(flt, line):
    """The (ip, failregex index) failures fail2ban's Filter finds on one line."""
    return [(ip, idx) for ip, idx, _ in smban.f2b.failures(flt, line)]


@pytest.fixture(scope="session")
def twin(f2b_confdir):
    return load_f2b_filter(f2b_confdir, "smban")


def event_matches(ev, exp):
    """Mismatches between an Event and the expected dict (empty: it matches)."""
    bad = []
    for key, want in exp.items():
        if key == "ref_time":
            continue
        got = getattr(ev, key)
        if key == "time" and want is not None:
            want = iso_to_epoch(want)
            if got is None or abs(got - want) > 1e-5:
                bad.append("time: got %r want %r" % (got, want))
            continue
        if got != want:
            bad.append("%s: got %r want %r" % (key, got, want))
    return bad


def pytest_report_header(config):
    return "smban._core: %s" % smban._core.__file__


@pytest.fixture(scope="session", autouse=True)
def _sanitized_build_in_use():
    """Under `make asan` the sanitized extension must be the one imported."""
    if os.environ.get("SMBAN_SANITIZED"):
        assert os.sep + os.path.join("build", "asan") + os.sep in smban._core.__file__, \
            smban._core.__file__


# ---- namespaces for the ban backends' tests (test_iptables.py and
# test_fail2ban_e2e.py have their own, with an xtables lock of the test's) ----

@pytest.fixture
def ns():
    """A private network namespace with lo up, entered for the test."""
    from lab import netns
    n = netns.Netns()
    try:
        with n.entered():
            netns.link_up_lo()
            yield n
    finally:
        n.close()


@pytest.fixture
def hosts():
    """Two namespaces joined by a veth pair: (server, client) (lab/netns.py)."""
    from lab import netns
    with netns.two_hosts() as pair:
        yield pair


def load_action_file(name):
    """actions/<name>.py as fail2ban loads it: a module from a file path."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "actions", name + ".py")
    spec = importlib.util.spec_from_file_location(name.replace("-", "_") + "_action", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
