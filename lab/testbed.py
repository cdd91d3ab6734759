"""The lab as a whole: whether it can run here, and the Lab that sets up
its parts, plays the scenario and tears everything down whatever happens
(try/finally, atexit, SIGTERM/SIGHUP)."""
import atexit
import glob
import os
import shutil
import signal
import tempfile
import time

from lab import netns
from lab.clients import SmtpClients
from lab.common import ACTIONS, F2B_CONFIG, SENDMAIL_CF_DIR, Processes
from lab.fail2ban_server import Fail2banServer
from lab.network import Network, ReverseDNS
from lab.scenario import Scenario
from lab.sendmail import Sendmail, sendmail_binary
from lab.timeline import Timeline


def why_unavailable():
    """None when the lab can run here, else the reason it cannot."""
    why = netns.why_unavailable()
    if why:
        return why
    if not os.path.isfile(os.path.join(F2B_CONFIG, "filter.d", "common.conf")):
        return "fail2ban not installed (make deps)"
    if sendmail_binary() is None:
        return "sendmail-bin not installed (make lab-deps)"
    for tool, pkg in (("m4", "m4"), ("saslpasswd2", "sasl2-bin"), ("openssl", "openssl")):
        if not shutil.which(tool):
            return "%s not installed (make lab-deps installs %s)" % (tool, pkg)
    if not os.path.isfile(os.path.join(SENDMAIL_CF_DIR, "m4", "cf.m4")):
        return "sendmail-cf not installed (make lab-deps)"
    # the LOGIN and PLAIN mechanisms (libsasl2-modules), the sasldb (-db)
    for plugin in ("liblogin.so", "libplain.so", "libsasldb.so"):
        if not glob.glob("/usr/lib/*/sasl2/%s*" % plugin) + glob.glob("/usr/lib/sasl2/%s*" % plugin):
            return "Cyrus SASL plugin %s not installed (make lab-deps)" % plugin
    return None


class Lab:
    """One run of the scenario: set up, play, tear down.  Composes the
    parts and owns only the lab's private directory and its lifetime:

    network    the two namespaces (network.Network)
    dns        the server namespace's name server (network.ReverseDNS)
    sendmail   sendmail, its files and its log (sendmail.Sendmail)
    fail2ban   fail2ban-server and its jails (fail2ban_server.Fail2banServer)
    clients    the SMTP clients (clients.SmtpClients)
    timeline   what is printed as it happens (timeline.Timeline)

    mode "smban": the smban jail (filter smban, the smban-engine action when
    actions/smban-engine.py exists, the ban action `ban`: smban-iptables
    ("iptables", the default), its set mode ("ipset") or smban-nftables
    ("nftables")).  mode "stock":
    fail2ban's sendmail-auth and sendmail-reject[mode=extra] jails with
    iptables-multiport (Debian 12's `iptables`, iptables-nft: inside the
    private namespace its rules are private too)."""

    def __init__(self, mode="smban", out=print, engine=None, ban="iptables"):
        self.mode = mode
        self.ban = ban
        self.out = out
        self.engine = (os.path.isfile(os.path.join(ACTIONS, "smban-engine.py"))
                       if engine is None else engine)
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.dir = None
        self.processes = Processes()
        self.network = Network()
        self.dns = self.sendmail = self.fail2ban = self.clients = self.timeline = None
        self._torn = False

    @property
    def nets(self):
        """The lab's network namespaces (netns.Netns)."""
        return self.network.nets

    @property
    def procs(self):
        """The lab's long-running processes (subprocess.Popen)."""
        return self.processes.procs

    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()

    def setup(self):
        """The parts, in the order each needs the others: the network,
        sendmail's files and log, the name server, sendmail, fail2ban."""
        _register(self)
        # sendmail refuses files below a world-writable directory (/tmp):
        # /run is root's own (tmpfs) where the lab can run at all
        base = "/run" if os.access("/run", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="smban-lab-", dir=base)
        os.chmod(self.dir, 0o700)
        self.network.build()
        self.sendmail = Sendmail(self.dir, self.network.server, self.processes)
        self.sendmail.write_files()
        self.sendmail.open_log()
        self.dns = ReverseDNS(self.network.server)
        self.sendmail.start()
        self.fail2ban = Fail2banServer(self.dir, self.network.server, self.processes,
                                       self.mode, self.engine, self.t0_wall, self.ban)
        self.fail2ban.start()
        self.clients = SmtpClients(self.network.internet)
        self.timeline = Timeline(self.out, self.mode, self.t0, self.sendmail.syslog,
                                 self.fail2ban)

    def scenario(self):
        """Play the scenario; its result (scenario.Scenario.result)."""
        return Scenario(self).play()

    def teardown(self):
        """Everything the lab started or made goes, once, whatever state the
        set-up reached: fail2ban asked to stop, the process groups killed,
        then whatever still runs in the namespaces, the namespaces, the
        lab's own threads, the directory."""
        if self._torn:
            return
        self._torn = True
        if self.fail2ban:
            self.fail2ban.stop()
        self.processes.kill_all()
        self.network.kill_inside()
        self.network.close()
        if self.dns:
            self.dns.close()
        if self.sendmail:
            self.sendmail.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        _unregister(self)


# The labs set up and not yet torn down, so that atexit and the signals
# that end the program tear them down too.
LIVE = []
_SAVED = {}                     # signal -> the handler before the first lab
_ATEXIT = []


def _register(lab):
    if not _ATEXIT:
        atexit.register(_teardown_all)
        _ATEXIT.append(True)
    if not LIVE:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                _SAVED[sig] = signal.signal(sig, on_signal)
            except ValueError:      # not the main thread
                pass
    LIVE.append(lab)


def _unregister(lab):
    if lab in LIVE:
        LIVE.remove(lab)
    if not LIVE:
        for sig, handler in list(_SAVED.items()):
            try:
                signal.signal(sig, handler)
            except ValueError:
                pass
            del _SAVED[sig]


def on_signal(signum, frame):
    """SIGTERM, SIGHUP while a lab is up: exit, so that finally blocks and
    atexit run."""
    raise SystemExit(128 + signum)


def _teardown_all():
    for lab in list(LIVE):
        lab.teardown()
