"""smban end to end: a real fail2ban-server with smban's filter and both
actions, as jail.local would set them up, in a private network namespace.

Two namespaces joined by a veth pair stand for the mail server (192.0.2.1,
where fail2ban runs and a listener takes port 25) and an attacker
(192.0.2.2).  Each test starts its own fail2ban-server with a private
configuration directory, socket, pid file, database and xtables lock,
writes sendmail lines to the jail's log, and looks at what an operator
would: fail2ban-client status, fail2ban's log, iptables-legacy-save, and
whether the attacker can still connect.

The systemd backend reads a journal file written by systemd-journal-remote
from export-format entries (no journald is needed, none is touched):
fail2ban's own systemd backend, with journalfiles= pointing at it.
"""
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

try:
    import systemd.journal  # noqa: F401  (fail2ban's systemd backend needs it)
    HAVE_SYSTEMD_PY = True
except ImportError:
    HAVE_SYSTEMD_PY = False
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"

from lab import netns
import smban
from conftest import f2b_dist_params, modified_twin, read_samples
from smban.filter import export_filter
from test_iptables_action import Fail2ban

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F2B_CONFIG = "/etc/fail2ban"
#: SMBAN_INSTALLED=1 (make deb-test): the scenarios run on the smban
#: installed on this machine (the Debian package): the filter and actions
#: from fail2ban's directories, and fail2ban imports smban from its own
#: sys.path, with no source tree on it.
INSTALLED = os.environ.get("SMBAN_INSTALLED") == "1"
if INSTALLED:
    ACTIONS, PKG_PATH = os.path.join(F2B_CONFIG, "action.d"), None
else:
    ACTIONS = os.path.join(ROOT, "actions")
    PKG_PATH = os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__)))
SERVER, ATTACKER = "192.0.2.1", "192.0.2.2"
JAIL = "smban"

pytestmark = [
    pytest.mark.skipif(netns.why_unavailable() is not None,
                       reason=str(netns.why_unavailable())),
    pytest.mark.skipif(not shutil.which("fail2ban-client"), reason="fail2ban not installed"),
    pytest.mark.skipif(not os.path.isfile(os.path.join(F2B_CONFIG, "filter.d", "common.conf")),
                       reason="fail2ban's filter.d/common.conf not installed"),
]


# ---- sendmail lines, stamped now ----

def stamp():
    return time.strftime("%b %d %H:%M:%S")


_pid = [40000]


def newpid():
    _pid[0] += 1
    return _pid[0]


def auth(ip, pid=None):
    pid = pid or newpid()
    return ("%s mx sendmail[%d]: 4ASB%08d: AUTH failure (LOGIN): authentication failure "
            "(-13) SASL(-13): authentication failure: checkpass failed, user=info, "
            "relay=[%s]" % (stamp(), pid, pid, ip))


def old_auth(pid):
    """sendmail before 8.14.4: no relay= on the AUTH failure."""
    return ("%s mx sendmail[%d]: 4ASB%08d: AUTH failure (PLAIN): authentication failure "
            "(-13) SASL(-13): authentication failure: checkpass failed" % (stamp(), pid, pid))


def did_not_issue(ip, pid, host=""):
    return ("%s mx sendmail[%d]: 4ASB%08d: %s[%s] did not issue MAIL/EXPN/VRFY/ETRN during "
            "connection to MTA" % (stamp(), pid, pid, host + " " if host else "", ip))


def story(ip, sessions):
    """An IronPort-like MTA: STARTTLS fails (no shared cipher), it
    disconnects, retries; then it delivers in clear text."""
    host = "esa12.hc6077-55.iphmx.com"
    lines = []
    for _ in range(sessions):
        pid = newpid()
        lines.append("%s mx sendmail[%d]: STARTTLS=server, error: accept failed=-1, reason=no "
                     "shared cipher, SSL_error=1, errno=0, retry=-1, relay=%s [%s]"
                     % (stamp(), pid, host, ip))
        lines.append(did_not_issue(ip, pid, host))
    pid = newpid()
    lines.append("%s mx sendmail[%d]: 4ASB%08d: from=<alerts@bank.example>, size=5120, "
                 "class=0, nrcpts=1, msgid=<%d@bank.example>, proto=ESMTP, daemon=MTA, "
                 "relay=%s [%s]" % (stamp(), pid, pid, pid, host, ip))
    return lines


# ---- the server ----

class Server(Fail2ban):
    def start(self, cmd="start"):
        self.client(cmd)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.client("status", JAIL, check=False).returncode == 0:
                self.check_interpreter()
                return
            time.sleep(0.2)
        raise AssertionError("fail2ban did not start:\n" + self.log()[-3000:])

    def smban_extension(self):
        """The path of the classifier's extension the server has loaded."""
        with open(os.path.join(self.dir, "f2b.pid")) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/maps" % pid) as f:
            found = {line.split(None, 5)[5].strip() for line in f
                     if "/smban/_core." in line and len(line.split(None, 5)) == 6}
        assert len(found) == 1, found
        return found.pop()

    def write(self, *lines):
        with open(os.path.join(self.dir, "mail.log"), "a") as f:
            for line in lines:
                f.write(line + "\n")

    def status(self):
        out = self.client("status", JAIL).stdout
        total = int(re.search(r"Total failed:\s+(\d+)", out).group(1))
        banned = re.search(r"Banned IP list:\s*(.*)", out).group(1).split()
        return total, banned


def write_config(d, mode="normal", bantime=600, filter_text=None, backend="polling",
                 config=F2B_CONFIG):
    for sub in ("action.d", "filter.d"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for a in ("smban-engine.py", "smban-iptables.py"):
        shutil.copy(os.path.join(ACTIONS, a), os.path.join(d, "action.d", a))
    shutil.copy(os.path.join(config, "filter.d", "common.conf"),
                os.path.join(d, "filter.d", "common.conf"))
    with open(os.path.join(d, "filter.d", "smban.conf"), "w") as f:
        if filter_text is None and INSTALLED:
            with open(os.path.join(F2B_CONFIG, "filter.d", "smban.conf")) as installed:
                filter_text = installed.read()
        f.write(filter_text if filter_text is not None else export_filter())
    with open(os.path.join(d, "fail2ban.conf"), "w") as f:
        f.write("[Definition]\nloglevel = INFO\nlogtarget = %(d)s/f2b.log\n"
                "socket = %(d)s/f2b.sock\npidfile = %(d)s/f2b.pid\n"
                "dbfile = %(d)s/f2b.sqlite3\ndbpurgeage = 1d\n"
                "syslogsocket = auto\nallowipv6 = auto\n" % {"d": d})
    with open(os.path.join(d, "jail.conf"), "w") as f:
        f.write("[%s]\nenabled = true\nfilter = smban[mode=%s]\nbackend = %s\n"
                "logpath = %s/mail.log\nmaxretry = 3\nfindtime = 600\nbantime = %d\n"
                "usedns = no\n"
                'action = smban-engine.py[mode="%%(known/mode)s"]\n'
                '         smban-iptables.py[port="25,465,587", lockwait=5]\n'
                % (JAIL, mode, backend, d, bantime))
    open(os.path.join(d, "mail.log"), "w").close()


@pytest.fixture(params=f2b_dist_params())
def dist(request):
    """The fail2ban every scenario runs on: Debian's package and each
    upstream source tree (see conftest.Fail2banDist)."""
    return request.param


def attached_line(dist, mode="normal"):
    """What the engine logs when it attached to this fail2ban."""
    return "lines (mode=%s, fail2ban %s)" % (mode, dist.version)


@pytest.fixture
def hosts():
    with netns.two_hosts() as hosts:
        yield hosts


@pytest.fixture
def f2b(tmp_path, hosts, dist):
    """start(mode=..., bantime=..., filter_text=...) -> a running Server in
    the server namespace (the test's thread is moved there until the end)."""
    srv, _ = hosts
    d = str(tmp_path / "f2b")
    env = dist.env(PKG_PATH, XTABLES_LOCKFILE=str(tmp_path / "xtables.lock"))
    started = []

    def start(**kw):
        write_config(d, config=dist.config, **kw)
        s = Server(d, env, dist.client)
        started.append(s)
        s.start()
        return s

    with srv.entered():
        try:
            yield start
        finally:
            for s in started:
                s.client("stop", check=False)
                s.kill()


@pytest.fixture
def listener(hosts):
    """A TCP listener on the server's port 25 (accepts and closes).  Ask
    for it before f2b: it enters the server namespace from a new thread."""
    srv, _ = hosts

    def make():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((SERVER, 25))
        s.listen(16)
        s.settimeout(0.2)
        return s
    sock = srv.call(make)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                c, _ = sock.accept()
                c.close()
            except OSError:
                continue
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield
    done.set()
    t.join(2)
    sock.close()


def connect_from_attacker(hosts):
    """'open', 'refused' or 'timeout': a TCP connection from the attacker's
    namespace to the server's port 25."""
    _, cli = hosts

    def attempt():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((SERVER, 25))
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "timeout"
        finally:
            s.close()
    return cli.call(attempt)


def banned_in_iptables(ip):
    return any(" -s %s/32 " % ip in l or " -s %s/128 " % ip in l
               for l in netns.chain_rules("f2b-" + JAIL))


def wait_banned(ip, timeout=5.0):
    """Seconds until ip's rule appears in the jail's chain, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if banned_in_iptables(ip):
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


# ---- the scenarios ----

@pytest.mark.parametrize("mode", ["normal", "aggressive"])
def test_story_never_banned_brute_force_banned(listener, f2b, hosts, dist, mode):
    server = f2b(mode=mode)
    assert "smban-engine attached" in server.log()
    assert attached_line(dist, mode) in server.log()
    # the smban under test: the installed package's, or the one this run built
    expected = "/usr/lib/python3/dist-packages/smban/" if INSTALLED else PKG_PATH + "/smban/"
    assert server.smban_extension().startswith(expected), server.smban_extension()
    assert connect_from_attacker(hosts) == "open"

    # the story, far beyond maxretry, then a clear-text delivery
    server.write(*story("192.0.2.99", sessions=8))
    # sessions without a TLS failure: suspect, counted in aggressive mode only
    server.write(*[did_not_issue("198.51.100.50", newpid()) for _ in range(4)])
    # brute force from the attacker host
    server.write(*[auth(ATTACKER) for _ in range(4)])
    took = wait_banned(ATTACKER, timeout=5.0)
    assert took is not None, server.log()[-3000:]
    assert took <= 2.0, "banned %.2f s after the last line" % took
    print("banned %.2f s after the last line" % took)

    rule = "-A f2b-smban -s %s/32 -j REJECT --reject-with icmp-port-unreachable" % ATTACKER
    assert rule in netns.save()
    assert connect_from_attacker(hosts) == "refused"

    if mode == "aggressive":
        assert server.wait_log("Ban 198.51.100.50", timeout=5), server.log()[-3000:]
    time.sleep(0.5)
    total, banned = server.status()
    assert "192.0.2.99" not in banned and not banned_in_iptables("192.0.2.99")
    assert "Found 192.0.2.99" not in server.log()
    if mode == "normal":
        assert banned == [ATTACKER] and total == 4
    else:
        assert sorted(banned) == sorted([ATTACKER, "198.51.100.50"]) and total == 8
    assert " ERROR " not in server.log(), server.log()[-3000:]


def test_old_sendmail_auth_failures_banned_only_by_the_engine(f2b, dist):
    """sendmail before 8.14.4 logs AUTH failures without relay=: only the
    session's later "did not issue" line names the client."""
    server = f2b()
    assert attached_line(dist) in server.log()
    lines = []
    for _ in range(2):
        pid = newpid()
        lines += [old_auth(pid), old_auth(pid), did_not_issue(ATTACKER, pid)]
    server.write(*lines)
    assert wait_banned(ATTACKER, timeout=5.0) is not None, server.log()[-3000:]
    total, banned = server.status()
    # each resolved session counts both of its AUTH failures
    assert banned == [ATTACKER] and total == 4


@pytest.mark.parametrize("how", ["added", "edited", "reordered"])
def test_modified_filter_engine_stands_down_twin_still_bans(f2b, how):
    text, reason = modified_twin(export_filter(), how)
    server = f2b(filter_text=text)
    log = server.log()
    assert "smban-engine stands down" in log
    assert "not smban's unmodified regex twin: " + reason in log
    assert "smban-engine attached" not in log

    pid = newpid()
    server.write(old_auth(pid), old_auth(pid), old_auth(pid), did_not_issue("192.0.2.77", pid))
    server.write(*[auth(ATTACKER) for _ in range(3)])
    assert wait_banned(ATTACKER, timeout=5.0) is not None, server.log()[-3000:]
    time.sleep(0.5)
    total, banned = server.status()
    # the twin banned the brute forcer; the old sendmail's client is out of its reach
    assert banned == [ATTACKER] and total == 3


def test_unban_after_bantime_reload_keeps_restart_restores(f2b, dist):
    server = f2b(bantime=20)
    server.write(*[auth(ATTACKER) for _ in range(3)])
    assert wait_banned(ATTACKER) is not None, server.log()[-3000:]
    banned_at = time.monotonic()

    # reload: the ban stays, the engine stays attached (once)
    server.client("reload")
    assert server.wait_log("Jail 'smban' reloaded")
    assert "smban-engine still attached" in server.log()
    assert server.log().count(attached_line(dist)) == 2
    assert banned_in_iptables(ATTACKER) and server.status()[1] == [ATTACKER]
    pid = newpid()
    server.write(old_auth(pid), old_auth(pid), old_auth(pid), did_not_issue("198.51.100.60", pid))
    assert wait_banned("198.51.100.60") is not None, server.log()[-3000:]
    assert server.status()[0] == 6            # 3 + 3: one engine, one count per failure

    # restart: fail2ban restores its bans from the database; the iptables
    # action applies them in one commit
    server.client("restart")
    server.start(cmd="ping")
    end = time.monotonic() + 10
    while time.monotonic() < end and not (banned_in_iptables(ATTACKER)
                                          and banned_in_iptables("198.51.100.60")):
        time.sleep(0.1)
    assert banned_in_iptables(ATTACKER) and banned_in_iptables("198.51.100.60")
    assert "restored ban(s) applied in one commit" in server.log()
    assert server.log().count("smban-engine attached") == 2
    assert server.log().count(attached_line(dist)) == 3

    # unban once bantime is over
    left = banned_at + 20 - time.monotonic()
    assert left > 0, "the restart took longer than the bantime"
    end = time.monotonic() + left + 5
    while time.monotonic() < end and banned_in_iptables(ATTACKER):
        time.sleep(0.2)
    assert not banned_in_iptables(ATTACKER)
    assert "Unban %s" % ATTACKER in server.log()
    assert ATTACKER not in server.status()[1]


def journal_entry(message, pid, usec):
    """One entry in journald's export format, as sendmail logs through syslog."""
    fields = (("__REALTIME_TIMESTAMP", usec), ("__MONOTONIC_TIMESTAMP", usec % 10**9),
              ("_BOOT_ID", "5b3d0f6c2e8a4f7d9c1b0a2e3f4d5c6b"), ("_HOSTNAME", "mx"),
              ("_SYSTEMD_UNIT", "sendmail.service"), ("SYSLOG_IDENTIFIER", "sm-mta"),
              ("SYSLOG_PID", pid), ("_PID", pid), ("PRIORITY", 6), ("MESSAGE", message))
    return "".join("%s=%s\n" % f for f in fields) + "\n"


@pytest.mark.skipif(not HAVE_SYSTEMD_PY, reason="python3-systemd not installed")
@pytest.mark.skipif(not os.access(JOURNAL_REMOTE, os.X_OK),
                    reason="systemd-journal-remote not installed (writes the test journal)")
def test_systemd_backend(f2b, dist, tmp_path):
    """backend = systemd: the engine gets fail2ban's (prefix, date, message)
    tuples; the old-sendmail sessions ban, the story does not."""
    journal = str(tmp_path / "sendmail.journal")
    usec = int(time.time() * 1e6)
    entries = []

    def add(message, pid):
        entries.append(journal_entry(message, pid, usec + len(entries)))
    for _ in range(6):
        pid = newpid()
        add("STARTTLS=server, error: accept failed=-1, reason=no shared cipher, SSL_error=1, "
            "errno=0, retry=-1, relay=esa12.hc6077-55.iphmx.com [192.0.2.99]", pid)
        add("4ASB%08d: esa12.hc6077-55.iphmx.com [192.0.2.99] did not issue "
            "MAIL/EXPN/VRFY/ETRN during connection to MTA" % pid, pid)
    for _ in range(2):
        pid = newpid()
        for _ in range(2):
            add("4ASB%08d: AUTH failure (PLAIN): authentication failure (-13) SASL(-13): "
                "authentication failure: checkpass failed" % pid, pid)
        add("4ASB%08d: [%s] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA"
            % (pid, ATTACKER), pid)
    r = subprocess.run([JOURNAL_REMOTE, "--output=" + journal, "-"], input="".join(entries),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and os.path.getsize(journal) > 0, r.stderr

    server = f2b(backend='systemd[journalfiles="%s"]' % journal)
    assert "smban-engine attached" in server.log() and attached_line(dist) in server.log()
    assert wait_banned(ATTACKER, timeout=10.0) is not None, server.log()[-3000:]
    time.sleep(0.5)
    total, banned = server.status()
    assert banned == [ATTACKER] and total == 4
    assert not banned_in_iptables("192.0.2.99")


# ---- the lab's red team, replayed ----

REDTEAM_LOG = os.path.join(ROOT, "pytests", "fixtures", "redteam.log")
REDTEAM = ("203.0.113.88", "2001:db8:2::88")
REDTEAM_VICTIMS = ("198.51.100.10", "198.51.100.25", "2001:db8:1::1")


def redteam_lines():
    """The real sendmail lines of the lab's red team (pytests/fixtures/
    redteam.log), stamped now: fail2ban drops lines older than findtime."""
    now = stamp()
    return [re.sub(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d", now, s.line)
            for s in read_samples(REDTEAM_LOG)]


def jail_bans(family):
    """The addresses in the jail's chain of one family, normalised."""
    out = []
    for rule in netns.chain_rules("f2b-" + JAIL, family=family):
        m = re.search(r" -s (\S+)/(?:32|128) ", rule)
        if m:
            out.append(str(ipaddress.ip_address(m.group(1))))
    return out


@pytest.fixture
def f2b_jail(tmp_path, hosts, dist):
    """start(engine) -> a running Server with the smban jail as write_config
    sets it up (engine=True), or without the smban-engine action: the regex
    twin alone (engine=False)."""
    srv, _ = hosts
    d = str(tmp_path / "f2b")
    env = dist.env(PKG_PATH, XTABLES_LOCKFILE=str(tmp_path / "xtables.lock"))
    started = []

    def start(engine):
        write_config(d, config=dist.config)
        if not engine:
            path = os.path.join(d, "jail.conf")
            with open(path) as f:
                text = f.read()
            text, n = re.subn(r"action = smban-engine\.py\[[^\n]*\]\n\s+", "action = ", text)
            assert n == 1, text
            with open(path, "w") as f:
                f.write(text)
        s = Server(d, env, dist.client)
        started.append(s)
        s.start()
        return s

    with srv.entered():
        try:
            yield start
        finally:
            for s in started:
                s.client("stop", check=False)
                s.kill()


@pytest.mark.parametrize("engine", [True, False], ids=["engine", "twin-alone"])
def test_redteam_bans_the_red_team_and_nobody_else(f2b_jail, dist, engine):
    """The lab's red team framed a partner MTA, a bank's MTA and the server
    itself with addresses imitating sendmail's fields: fed to a real
    fail2ban-server, its lines ban the two attackers, in both families, and
    every failure fail2ban found was theirs."""
    server = f2b_jail(engine)
    log = server.log()
    if engine:
        assert "smban-engine attached" in log and attached_line(dist) in log
    else:
        assert "smban-engine" not in log
    server.write(*redteam_lines())
    for ip in REDTEAM:
        assert server.wait_log("Ban %s" % ip, timeout=10), server.log()[-3000:]
    time.sleep(1.0)         # any line still unread would be counted by now
    total, banned = server.status()
    log = server.log()
    assert sorted(str(ipaddress.ip_address(ip)) for ip in banned) == sorted(REDTEAM), banned
    found = [str(ipaddress.ip_address(ip)) for ip in re.findall(r"\] Found (\S+)", log)]
    assert set(found) == set(REDTEAM), sorted(set(found))
    assert len(found) == total
    # the annotated ban lines at least (a line whose class the fixture leaves
    # open may count too, for the attacker)
    assert total >= sum(1 for s in read_samples(REDTEAM_LOG) if s.spec and s.spec.get("match"))
    end = time.monotonic() + 5
    while time.monotonic() < end and (jail_bans(4) != [REDTEAM[0]] or jail_bans(6) != [REDTEAM[1]]):
        time.sleep(0.1)
    assert jail_bans(4) == [REDTEAM[0]] and jail_bans(6) == [REDTEAM[1]]
    for ip in REDTEAM_VICTIMS:
        assert "Ban %s" % ip not in log
    assert " ERROR " not in log, log[-3000:]
