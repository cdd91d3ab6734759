"""make lab: a throw-away sendmail under attack, watched by a real fail2ban.

    python3 lab/lab.py [--compare stock] [--quiet]

Two network namespaces joined by a veth pair stand for a mail server and
"the internet".  In the server namespace a real sendmail runs with a
configuration generated from lab/sendmail.mc (STARTTLS with a throw-away
certificate and a cipher list an old-cipher client cannot meet, SMTP AUTH
against a throw-away sasldb, greet_pause, novrfy/noexpn), logging through
syslog(3) to the lab's own /dev/log (a private mount namespace; see
lab/mountns.py), which this program receives and writes to a private
maillog.  A real fail2ban-server with a private configuration, socket, pid
file and database watches that maillog with smban's jail and bans in the
server namespace's firewall.  Scripted SMTP clients, each from its own
address in the internet namespace, play a bank's old-cipher MTA, a partner
MTA, password guessers, a pre-greeting talker, a VRFY/EXPN prober, a
scanner, a client that drops after RCPT, and a red team (IPv4 and IPv6)
whose MAIL FROM/RCPT TO addresses and VRFY/EXPN/ETRN arguments imitate
sendmail's own fields to get the partner, the bank and the server itself
banned.  The lab's stub name server (ReverseDNS) answers the reverse
lookup of the red team's first connections SERVFAIL, so sendmail logs both
the 450 "Relaying temporarily denied" and the 550 "Relaying denied" shapes.

It prints a timeline (each client's action, the lines sendmail wrote,
smban's verdict on each, each ban) and a final table.  With --compare
stock it runs the same scenario a second time with fail2ban's stock
sendmail-auth + sendmail-reject[mode=extra] and iptables-multiport, and
prints both tables side by side.

Everything lives in a private temporary directory and the two namespaces;
everything is torn down at the end whatever happened (try/finally, atexit,
SIGINT/SIGTERM/SIGHUP): processes are killed by process group and by
namespace membership, the namespaces deleted, the directory removed.
Nothing of the machine's own mail system, syslog or firewall is touched.
"""
import argparse
import atexit
import base64
import glob
import ipaddress
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# the smban of this source tree, unless PYTHONPATH names another (make asan's
# sanitizer build); the test suite's namespace helpers
_at = 1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
for _p in (ROOT, os.path.join(ROOT, "pytests")):
    if _p not in sys.path:
        sys.path.insert(_at, _p)

import netns  # noqa: E402  (the test suite's namespace helpers)
import smban  # noqa: E402

F2B_CONFIG = "/etc/fail2ban"
SENDMAIL_CF_DIR = "/usr/share/sendmail/cf"
ACTIONS = os.path.join(ROOT, "actions")
PKG_PATH = os.path.dirname(os.path.dirname(os.path.abspath(smban.__file__)))

SERVER4, SERVER6 = "192.0.2.1", "2001:db8:1::1"
DOMAIN = "lab.example"
MX = "mx." + DOMAIN
USER, PASSWORD = "alice", "correct horse battery staple"
MAXRETRY, FINDTIME, BANTIME = 3, 600, 600
#: messages the bank's MTA has to send (one TLS attempt each, then clear text)
BANK_MESSAGES = 4


class Client:
    def __init__(self, name, addr, ptr, role):
        self.name, self.addr, self.ptr, self.role = name, addr, ptr, role

    @property
    def family(self):
        return 6 if ":" in self.addr else 4


CLIENTS = [
    Client("bank-mta", "198.51.100.25", "esa12.bank-gw.example",
           "a bank's Proofpoint-like MTA: offers only an old cipher (AES128-SHA, TLS 1.2)"),
    Client("partner-mta", "198.51.100.10", "mail.partner.example",
           "a modern MTA: delivers over TLS 1.3"),
    Client("guesser", "203.0.113.66", None, "password guesser, AUTH LOGIN/PLAIN, IPv4"),
    Client("guesser6", "2001:db8:2::66", None, "password guesser, AUTH PLAIN, IPv6"),
    Client("injector", "203.0.113.77", None,
           "AUTH user name 'x, relay=[198.51.100.10]': tries to get the partner banned"),
    Client("pregreeter", "203.0.113.53", None, "talks before the greeting"),
    Client("prober", "203.0.113.70", None, "VRFY/EXPN address prober"),
    Client("scanner", "198.51.100.80", None, "connects, reads the greeting, quits"),
    Client("dropper", "198.51.100.81", None, "drops the connection after RCPT"),
    Client("redteam", "203.0.113.88", None,
           "RCPT TO/MAIL FROM addresses quoting relay=[victim]: tries to get others banned"),
    Client("redteam6", "2001:db8:2::88", None,
           "the same over IPv6, with VRFY/EXPN/ETRN arguments quoting relay=[victim]"),
]
BY_NAME = {c.name: c for c in CLIENTS}
INJECTED = "198.51.100.10"

#: the addresses the red team tries to get banned: (who, address)
VICTIMS = [("partner-mta", "198.51.100.10"), ("bank-mta", "198.51.100.25"),
           ("the server", SERVER6)]

# The red team's SMTP commands, sent word for word.  RFC 5321 lets a quoted
# local part hold spaces, commas, "<", ">" and "\"-escapes; sendmail logs the
# address in arg1= and again in the reject= echo, so the text can imitate
# sendmail's own fields.  The client is the relay= right after the complete
# address; a backslash before '"' or '>' reads two ways in the log (8.17
# doubles it), so such a line blames nobody.
_FRAME = 'reject=550 5.7.1 <x>... Relaying denied. '
#: first connection, while its reverse zone fails (SERVFAIL: {client_resolve}
#: TEMP, "450 Relaying temporarily denied"): a transaction whose sender fakes
#: a delivered message's size= and nrcpts= in the from= line sendmail logs at
#: RSET (to earn the trust of a sender of accepted mail), then three relay
#: attempts
REDTEAM_TEMP = [
    'MAIL FROM:<"a, size=900, class=0, nrcpts=3, x"@example.net>',
    'RCPT TO:<%s@%s>' % (USER, DOMAIN),
    'RSET',
    'MAIL FROM:<redteam@example.net>',
    'RCPT TO:<"a, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<"b, relay=[198.51.100.25], reject=450 4.4.0 <x>... Relaying temporarily denied. '
    'Cannot resolve PTR record for 198.51.100.25 "@elsewhere.example>',
    'RCPT TO:"c, relay=[IPv6:2001:db8:1::1]"@elsewhere.example',
]
#: second connection, reverse lookups failing for good ({client_resolve}
#: FAIL, "550 Relaying denied"): first what blames nobody (backslashes
#: that read two ways once sendmail 8.17 has doubled them, an address
#: sendmail refuses), then relay probes that parse, each framing a victim
REDTEAM_550 = [
    'MAIL FROM:<redteam@example.net>',
    'RCPT TO:<"a\\"b, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<a\\>b(c, relay=[198.51.100.25])@elsewhere.example>',
    'RCPT TO:<"a\\\\\\", relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<a\\>b, relay=[198.51.100.25]@elsewhere.example>',
    'RCPT TO:<"a\\\\", relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    # a backslash inside quotes before ">": one reading
    'RCPT TO:<"a\\>b, relay=[198.51.100.25]"@elsewhere.example>',
    'RCPT TO:<"a, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
    # fail2ban's stock sendmail-reject reads arg1 as <\S+@\S+> and accepts
    # anything after "550 5.7.1 <arg1>... Rejected: ": a quote opened in the
    # first copy of <"q(@x> is closed by the second, whose "(" opens a
    # comment that hides the rest
    'RCPT TO:<"q(@x>, relay=[198.51.100.10], reject=550 5.7.1 <"q(@x>... Rejected: )'
    '@elsewhere.example>',
    'RCPT TO:<"r(@x>, relay=[198.51.100.10], reject=550 5.7.1 <"r(@x>... Rejected: )'
    '@elsewhere.example>',
    'RCPT TO:<"s(@x>, relay=[198.51.100.10], reject=550 5.7.1 <"s(@x>... Rejected: )'
    '@elsewhere.example>',
    'RCPT TO:<"a>b, relay=[198.51.100.25]"@elsewhere.example>',
    'RCPT TO:<"c, relay=[IPv6:2001:db8:1::1], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:"d, relay=[198.51.100.10]"@elsewhere.example',
    'RCPT TO:<@route.example,@r2:"q, relay=[198.51.100.10]"@elsewhere.example>',
    'RCPT TO:<"a b c, relay=mail.partner.example [198.51.100.10] (may be forged), '
    'reject=550"@elsewhere.example>',
]
REDTEAM6_TEMP = [
    'MAIL FROM:<redteam6@example.net>',
    'RCPT TO:<"a, relay=[198.51.100.10], %s"@elsewhere.example>' % _FRAME,
]
#: a sender in a domain that does not exist, a relay probe, then the
#: VRFY/EXPN/ETRN arguments (logged after the client field)
REDTEAM6_550 = [
    'MAIL FROM:<"x, relay=[198.51.100.10]"@nx.example>',
    'MAIL FROM:<redteam6@example.net>',
    'RCPT TO:<"a, relay=[IPv6:2001:db8:1::1], %s"@elsewhere.example>' % _FRAME,
    'RCPT TO:<"e, relay=[IPv6:2001:db8:1:0:0:0:0:1], reject=550 5.7.1 <x>... Relaying denied. '
    'IP name lookup failed [IPv6:2001:db8:1:0:0:0:0:1]"@elsewhere.example>',
    'VRFY a, relay=[198.51.100.10], reject=x',
    'EXPN b, relay=[IPv6:2001:db8:1::1]',
    'ETRN c, relay=[198.51.100.25]',
    'VRFY <"a, relay=[198.51.100.25]"@lab.example>',
]


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


def sendmail_binary():
    for p in ("/usr/libexec/sendmail/sendmail", "/usr/lib/sm.bin/sendmail"):
        if os.access(p, os.X_OK):
            return p
    p = shutil.which("sendmail-mta")
    return os.path.realpath(p) if p else None


def plain_env():
    """The environment for the lab's non-Python programs (sendmail, ip, m4,
    openssl, saslpasswd2): without a sanitizer runtime that `make asan`
    preloads for the Python extension."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}


def run(*argv, **kw):
    """A command without a shell; its output, or an error naming it."""
    kw.setdefault("env", plain_env())
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)
    if r.returncode:
        raise RuntimeError("%s failed (%d): %s%s" % (argv[0], r.returncode, r.stdout, r.stderr))
    return r.stdout


# ---------------------------------------------------------------- syslog --

class SyslogReceiver:
    """The lab's /dev/log: a unix datagram socket whose messages are written
    to the private maillog as a syslog daemon would ("Mmm dd hh:mm:ss mx
    sendmail[pid]: ...").  Received text is only ever written to a file."""

    _RE = re.compile(rb"^<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (.*)$", re.S)

    def __init__(self, sock_path, log_path):
        self.log_path = log_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(sock_path)
        os.chmod(sock_path, 0o666)
        self.sock.settimeout(0.2)
        self.lines = []                 # (monotonic time, line)
        self.cv = threading.Condition()
        self._stop = False
        self._f = open(log_path, "a", encoding="utf-8")
        self.thread = threading.Thread(target=self._run, name="lab-syslog", daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            m = self._RE.match(data.rstrip(b"\0\n"))
            if not m:
                continue
            text = (m.group(2) + b" mx " + m.group(3)).decode("utf-8", "backslashreplace")
            text = text.replace("\n", " ")
            self._f.write(text + "\n")
            self._f.flush()
            with self.cv:
                self.lines.append((time.monotonic(), text))
                self.cv.notify_all()

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        self._f.close()


class ReverseDNS:
    """The lab's name server, on 127.0.0.1:53 in the server namespace (the
    resolv.conf sendmail sees).  It answers every query NXDOMAIN (what the
    lab's hosts file does not know does not exist), except a PTR query for
    an address in `tempfail`: SERVFAIL, as from a reverse zone whose
    servers are lame.  sendmail then sets {client_resolve} to TEMP for that
    connection (h_errno TRY_AGAIN) instead of FAIL, and check_rcpt answers a
    relay attempt "450 Relaying temporarily denied. Cannot resolve PTR
    record for ..." instead of "550 Relaying denied. IP name lookup failed".
    Queries are parsed only as far as the question; nothing else is sent
    anywhere."""

    def __init__(self, ns):
        self.tempfail = set()           # addresses (str) whose PTR fails
        self.answered = []              # (qname, qtype, rcode)
        self._lock = threading.Lock()
        self._stop = False

        def make():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 53))
            s.settimeout(0.2)
            return s
        self.sock = ns.call(make)
        self.thread = threading.Thread(target=self._run, name="lab-dns", daemon=True)
        self.thread.start()

    def set_tempfail(self, addrs):
        with self._lock:
            self.tempfail = {ipaddress.ip_address(a).reverse_pointer for a in addrs}

    @staticmethod
    def _question(data):
        """(qname, qtype, end of the question) of a query, or None."""
        if len(data) < 12 or data[2] & 0x80 or int.from_bytes(data[4:6], "big") != 1:
            return None
        i, labels = 12, []
        while i < len(data) and data[i] and len(labels) < 128:
            n = data[i]
            if n & 0xC0 or i + 1 + n > len(data):
                return None
            labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        if i + 5 > len(data) or data[i]:
            return None
        qtype = int.from_bytes(data[i + 1:i + 3], "big")
        return ".".join(labels).lower(), qtype, i + 5

    def _run(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            q = self._question(data)
            if q is None:
                continue
            qname, qtype, end = q
            with self._lock:
                fail = qtype == 12 and qname in self.tempfail
            rcode = 2 if fail else 3                    # SERVFAIL, NXDOMAIN
            flags = 0x8000 | (data[2] & 0x79) << 8 | 0x0400 | 0x0080 | rcode  # QR AA RA
            reply = data[:2] + flags.to_bytes(2, "big") + b"\0\1\0\0\0\0\0\0" + data[12:end]
            self.answered.append((qname, qtype, rcode))
            try:
                self.sock.sendto(reply, peer)
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


# ------------------------------------------------------------------- lab --

class Lab:
    """One run of the scenario: set up, play, tear down.

    mode "smban": the smban jail (filter smban, the smban-engine action when
    actions/smban-engine.py exists, smban-iptables).  mode "stock":
    fail2ban's sendmail-auth and sendmail-reject[mode=extra] jails with
    iptables-multiport (Debian 12's `iptables`, iptables-nft: inside the
    private namespace its rules are private too)."""

    def __init__(self, mode="smban", out=print, engine=None):
        self.mode = mode
        self.out = out
        self.engine = (os.path.isfile(os.path.join(ACTIONS, "smban-engine.py"))
                       if engine is None else engine)
        self.dir = None
        self.nets = []
        self.procs = []
        self.syslog = None
        self.dns = None
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self._mark = self.t0
        self.timeline = []               # printed lines
        self.classifier = smban.Classifier(mode="normal")
        self.verdicts = []               # (line, Event or None)
        self._shown_lines = 0
        self._shown_bans = 0
        self.delivered = {c.name: 0 for c in CLIENTS}
        self.refused = {}                # final probe: name -> bool
        self.latency = {}                # guesser -> seconds to its refused connection
        self.redteam_t = None            # when the red team began (s since the start)
        self.ban_latency = {}            # guesser -> seconds to fail2ban's "Ban"
        self._torn = False

    # ---- set up ----

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
        _register(self)
        # sendmail refuses files below a world-writable directory (/tmp):
        # /run is root's own (tmpfs) where the lab can run at all
        base = "/run" if os.access("/run", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="smban-lab-", dir=base)
        os.chmod(self.dir, 0o700)
        self._network()
        self._files()
        self.syslog = SyslogReceiver(os.path.join(self.dir, "dev", "log"),
                                     os.path.join(self.dir, "maillog"))
        self.dns = ReverseDNS(self.server)
        self._start_sendmail()
        self._start_fail2ban()
        self._mark = time.monotonic()

    def _network(self):
        self.server, self.internet = netns.Netns("labsrv"), netns.Netns("labnet")
        self.nets = [self.server, self.internet]
        veth = "lab%d" % (os.getpid() % 100000)
        s, i = self.server.name, self.internet.name
        run("ip", "-n", s, "link", "add", veth + "s", "type", "veth",
            "peer", "name", veth + "i", "netns", i)
        for ns, dev in ((s, veth + "s"), (i, veth + "i")):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", s, "addr", "add", SERVER4 + "/24", "dev", veth + "s")
        run("ip", "-n", s, "-6", "addr", "add", SERVER6 + "/64", "dev", veth + "s", "nodad")
        for net in ("198.51.100.0/24", "203.0.113.0/24"):
            run("ip", "-n", s, "route", "add", net, "dev", veth + "s")
        run("ip", "-n", s, "-6", "route", "add", "2001:db8:2::/64", "dev", veth + "s")
        for c in CLIENTS:
            if c.family == 4:
                run("ip", "-n", i, "addr", "add", c.addr + "/32", "dev", veth + "i")
            else:
                run("ip", "-n", i, "-6", "addr", "add", c.addr + "/128", "dev", veth + "i",
                    "nodad")
        run("ip", "-n", i, "route", "add", "192.0.2.0/24", "dev", veth + "i")
        run("ip", "-n", i, "-6", "route", "add", "2001:db8:1::/64", "dev", veth + "i")

    def _write(self, rel, text, mode=0o644):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def _files(self):
        d = self.dir
        # the lab's /dev: the log socket comes later, device files are
        # bind-mounted over these empty files by mountns.py
        os.makedirs(os.path.join(d, "dev"))
        for dev in ("null", "zero", "random", "urandom"):
            open(os.path.join(d, "dev", dev), "w").close()
        os.makedirs(os.path.join(d, "queue"), mode=0o700)
        hosts = ["127.0.0.1 localhost", "::1 localhost",
                 "%s %s mx" % (SERVER4, MX), "%s %s" % (SERVER6, MX)]
        hosts += ["%s %s" % (c.addr, c.ptr) for c in CLIENTS if c.ptr]
        # the other clients' sender domain: it must resolve (a 553 for a
        # sender domain that does not exist is a ban class of its own)
        hosts.append("198.51.100.200 example.net")
        self._write("hosts", "\n".join(hosts) + "\n")
        self._write("service.switch", "hosts files\naliases files\n")
        # the C library's lookups (a client's reverse lookup) go on to the
        # lab's own name server (ReverseDNS); sendmail's own host lookups
        # follow service.switch: files only
        self._write("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\n"
                    "hosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n")
        self._write("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        self._write("trusted-users", "")
        self._write("relay-domains", "")
        self._write("aliases", "postmaster: root\n%s: root\n" % USER)
        self._write("statistics", "", 0o600)
        # throw-away certificate
        os.makedirs(os.path.join(d, "tls"), mode=0o700)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=" + MX, "-keyout", os.path.join(d, "tls", "key.pem"),
            "-out", os.path.join(d, "tls", "cert.pem"))
        os.chmod(os.path.join(d, "tls", "key.pem"), 0o600)
        # throw-away sasldb and the SASL configuration sendmail will find
        # at /usr/lib/sasl2/Sendmail.conf inside its mount namespace
        sasl = os.path.join(d, "sasl")
        os.makedirs(sasl, mode=0o755)
        subprocess.run(["saslpasswd2", "-f", os.path.join(sasl, "sasldb2"), "-c", "-p",
                        "-u", MX, USER], input=PASSWORD, text=True, check=True,
                       capture_output=True, timeout=30, env=plain_env())
        os.chmod(os.path.join(sasl, "sasldb2"), 0o600)
        self._write("sasl/Sendmail.conf", "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    "sasldb_path: %s\nmech_list: LOGIN PLAIN\n"
                    % os.path.join(sasl, "sasldb2"))
        # sendmail.cf from the repository's .mc
        cf = run("m4", "-D", "LAB_DIR=" + d, "-D", "LAB_ADDR4=" + SERVER4,
                 "-D", "LAB_ADDR6=" + SERVER6, "-D", "_CF_DIR_=%s/" % SENDMAIL_CF_DIR,
                 os.path.join(SENDMAIL_CF_DIR, "m4", "cf.m4"), os.path.join(HERE, "sendmail.mc"))
        self._write("sendmail.cf", cf)

    def _in_server(self, argv):
        """argv for a program run in the server namespace, in a private
        mount namespace with the lab's /dev/log, hosts and SASL config."""
        binds = []
        # Cyrus SASL looks for Sendmail.conf in the first of these that has
        # one (Debian's libsasl2 path, less the plugin directory): ours hides
        # each of them
        sasl_dirs = [d for d in ("/etc/sasl2", "/etc/sasl", "/usr/lib/sasl2") if os.path.isdir(d)]
        if not sasl_dirs:
            raise RuntimeError("no SASL configuration directory to cover (/usr/lib/sasl2 "
                               "comes with sendmail-bin): refusing to run")
        for src, dst in ([("hosts", "/etc/hosts"), ("nsswitch.conf", "/etc/nsswitch.conf"),
                          ("resolv.conf", "/etc/resolv.conf")] +
                         [("sasl", d) for d in sasl_dirs]):
            if os.path.exists(dst):
                binds.append("%s=%s" % (os.path.join(self.dir, src), dst))
        return (["ip", "netns", "exec", self.server.name, sys.executable,
                 os.path.join(HERE, "mountns.py"), os.path.join(self.dir, "dev")] + binds +
                ["--"] + argv)

    def _spawn(self, argv, logname, env):
        f = open(os.path.join(self.dir, logname), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
        f.close()
        self.procs.append(p)
        return p

    def _start_sendmail(self):
        sm = sendmail_binary()
        cf = os.path.join(self.dir, "sendmail.cf")
        r = subprocess.run(self._in_server([sm, "-C", cf, "-bi"]), capture_output=True,
                           text=True, timeout=60, start_new_session=True, env=plain_env())
        if r.returncode:
            raise RuntimeError("newaliases failed: %s%s" % (r.stdout, r.stderr))
        self.sendmail = self._spawn(self._in_server([sm, "-bD", "-C", cf]), "sendmail.out",
                                    plain_env())
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.sendmail.poll() is not None:
                break
            out = self.server.call(lambda: netns.run("ss", "-Hltn", env=plain_env()).stdout)
            if "%s:25 " % SERVER4 in out and "[%s]:25 " % SERVER6 in out:
                return
            time.sleep(0.1)
        raise RuntimeError("sendmail did not start listening: %s\n%s" % (
            self._tail("sendmail.out"), "\n".join(l for _, l in self.syslog.lines[-10:])))

    def _tail(self, name, n=3000):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def jails(self):
        return ["smban"] if self.mode == "smban" else ["sendmail-auth", "sendmail-reject"]

    def _f2b_config(self):
        d = os.path.join(self.dir, "f2b")
        for sub in ("action.d", "filter.d"):
            os.makedirs(os.path.join(d, sub))
        self.f2b_dir = d
        shutil.copy(os.path.join(F2B_CONFIG, "filter.d", "common.conf"),
                    os.path.join(d, "filter.d"))
        with open(os.path.join(d, "fail2ban.conf"), "w") as f:
            f.write("[Definition]\nloglevel = INFO\nlogtarget = %(d)s/f2b.log\n"
                    "socket = %(d)s/f2b.sock\npidfile = %(d)s/f2b.pid\n"
                    "dbfile = %(d)s/f2b.sqlite3\ndbpurgeage = 1d\n"
                    "syslogsocket = auto\nallowipv6 = auto\n" % {"d": d})
        common = ("enabled = true\nbackend = polling\nlogpath = %s/maillog\nmaxretry = %d\n"
                  "findtime = %d\nbantime = %d\nusedns = no\n"
                  % (self.dir, MAXRETRY, FINDTIME, BANTIME))
        if self.mode == "smban":
            for a in ("smban-engine.py", "smban-iptables.py"):
                if os.path.isfile(os.path.join(ACTIONS, a)):
                    shutil.copy(os.path.join(ACTIONS, a), os.path.join(d, "action.d"))
            shutil.copy(os.path.join(ROOT, "filters", "smban.conf"), os.path.join(d, "filter.d"))
            actions = ['smban-iptables.py[port="smtp", lockwait=5]']
            if self.engine:
                actions.insert(0, 'smban-engine.py[mode="normal"]')
            jail = ("[smban]\n%sfilter = smban[mode=normal]\naction = %s\n"
                    % (common, "\n         ".join(actions)))
        else:
            for flt in ("sendmail-auth.conf", "sendmail-reject.conf"):
                shutil.copy(os.path.join(F2B_CONFIG, "filter.d", flt), os.path.join(d, "filter.d"))
            for act in ("iptables.conf", "iptables-multiport.conf"):
                shutil.copy(os.path.join(F2B_CONFIG, "action.d", act), os.path.join(d, "action.d"))
            jail = ""
            for name, flt in (("sendmail-auth", "sendmail-auth"),
                              ("sendmail-reject", "sendmail-reject[mode=extra]")):
                jail += ("[%s]\n%sfilter = %s\naction = iptables-multiport[name=%s, "
                         'port="smtp", protocol=tcp]\n\n' % (name, common, flt, name))
        with open(os.path.join(d, "jail.conf"), "w") as f:
            f.write(jail)

    def f2b_client(self, *args, check=True):
        r = subprocess.run(["fail2ban-client", "-c", self.f2b_dir, *args], capture_output=True,
                           text=True, timeout=30, env=self.f2b_env)
        if check and r.returncode:
            raise RuntimeError("fail2ban-client %s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def _start_fail2ban(self):
        self._f2b_config()
        self.f2b_env = dict(os.environ, PYTHONPATH=PKG_PATH,
                            XTABLES_LOCKFILE=os.path.join(self.dir, "xtables.lock"))
        self.f2b = self._spawn(["ip", "netns", "exec", self.server.name,
                                "fail2ban-server", "-f", "-x", "-c", self.f2b_dir],
                               "f2b.out", env=self.f2b_env)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.f2b.poll() is not None:
                break
            if all(self.f2b_client("status", j, check=False).returncode == 0
                   for j in self.jails()):
                return
            time.sleep(0.2)
        raise RuntimeError("fail2ban did not start: %s\n%s" % (
            self._tail("f2b.out"), self._tail("f2b/f2b.log")))

    # ---- tear down ----

    def teardown(self):
        if self._torn:
            return
        self._torn = True
        if getattr(self, "f2b_dir", None) and getattr(self, "f2b", None) \
                and self.f2b.poll() is None:
            try:
                self.f2b_client("stop", check=False)
            except Exception:
                pass
        for p in reversed(self.procs):
            _killpg(p)
        # anything else still inside our namespaces (sendmail's children)
        inos = set()
        for n in self.nets:
            try:
                inos.add(os.stat(n.path).st_ino)
            except OSError:
                pass
        for _ in range(3):
            if not _kill_in_namespaces(inos):
                break
            time.sleep(0.1)
        for n in self.nets:
            n.close()
        if self.dns:
            self.dns.close()
        if self.syslog:
            self.syslog.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        _unregister(self)

    # ---- timeline ----

    def say(self, text):
        """A client's action, stamped with the time it began: the end of the
        previous output (the scenario is sequential)."""
        line = "%6.1fs  %s" % (self._mark - self.t0, text)
        self.timeline.append(line)
        self.out(line)
        self._mark = time.monotonic()

    def bans(self, times=False):
        """[(jail, ip)] in the order fail2ban logged them; with times,
        [(jail, ip, seconds since the lab started)]."""
        out = []
        rx = (r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*?"
              r"\[([\w-]+)\] (?:Ban|Restore Ban) (\S+)$")
        for m in re.finditer(rx, self._tail("f2b/f2b.log", 10**7), re.M):
            if times:
                t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                t += int(m.group(2)) / 1000.0
                out.append((m.group(3), m.group(4), t - self.t0_wall))
            else:
                out.append((m.group(3), m.group(4)))
        return out

    def flush(self, settle=0.0):
        """Print the sendmail lines and bans that arrived since last time,
        each line with smban's verdict."""
        if settle:
            time.sleep(settle)
        with self.syslog.cv:
            new = [l for _, l in self.syslog.lines[self._shown_lines:]]
            self._shown_lines += len(new)
        same, last_key = 0, None
        for line in new:
            ev = self.classifier.classify(line)
            self.verdicts.append((line, ev))
            msg = line.split(" mx ", 1)[-1]
            # runs of the same line from new sessions (the latency probes)
            # are shown once, then counted
            key = re.sub(r"^(\w+)\[\d+\]: (?:[0-9A-Za-z]{14,20}: )?", r"\1: ", msg)
            if key == last_key:
                same += 1
                continue
            self._emit_same(same)
            same, last_key = 0, key
            self.timeline.append("           " + msg)
            self.out("           " + msg)
            if ev is not None:
                v = "%s %s%s" % (ev.kind, ev.name, ": counts for %s" % ev.ip if ev.failures else "")
                label = "smban:" if self.mode == "smban" else "(smban would say:"
                v = "               %s %s%s" % (label, v, "" if self.mode == "smban" else ")")
                self.timeline.append(v)
                self.out(v)
        self._emit_same(same)
        self._mark = time.monotonic()
        bans = self.bans(times=True)
        for jail, ip, t in bans[self._shown_bans:]:
            who = [c.name for c in CLIENTS if c.addr == ip]
            line = "%6.1fs  fail2ban [%s]: Ban %s%s" % (t, jail, ip, " (%s)" % who[0] if who else "")
            self.timeline.append(line)
            self.out(line)
        self._shown_bans = len(bans)

    def _emit_same(self, n):
        if n:
            line = "           (and %d more line%s like it, from as many sessions)" % (
                n, "s" if n > 1 else "")
            self.timeline.append(line)
            self.out(line)

    # ---- the clients ----

    def inside(self, fn, *args):
        """fn(*args) on a thread in the internet namespace."""
        return self.internet.call(fn, *args)

    def connect(self, c, timeout=5):
        """A TCP connection from client c's address to the server, made in
        the internet namespace; None when refused (banned)."""
        def body():
            fam = socket.AF_INET6 if c.family == 6 else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.bind((c.addr, 0))
            try:
                s.connect((SERVER6 if c.family == 6 else SERVER4, 25))
            except (ConnectionRefusedError, OSError) as e:
                s.close()
                if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", 0) in (111, 113):
                    return None
                raise
            return s
        return self.inside(body)

    def smtp(self, c, timeout=10):
        """An smtplib.SMTP session from c, or None when refused."""
        def body():
            srv = SERVER6 if c.family == 6 else SERVER4
            try:
                return smtplib.SMTP(srv, 25, local_hostname=c.ptr or "client.example",
                                    timeout=timeout, source_address=(c.addr, 0))
            except ConnectionRefusedError:
                return None
        return self.inside(body)

    def message(self, c, n):
        return ("From: <%s@%s>\r\nTo: <%s@%s>\r\nSubject: lab message %d from %s\r\n\r\n"
                "hello from the lab\r\n" % (c.name, c.ptr or "example.net", USER, DOMAIN, n, c.name))

    def deliver(self, c, n, tls_ctx=None):
        """One message from c: with tls_ctx, STARTTLS first.  Returns
        "delivered", "refused" or "tls-failed: <reason>"."""
        s = self.smtp(c, timeout=4)
        if s is None:
            return "refused"
        try:
            s.ehlo()
            if tls_ctx is not None:
                try:
                    s.starttls(context=tls_ctx)
                except ssl.SSLError as e:
                    s.close()
                    return "tls-failed: %s" % (e.reason or e)
                s.ehlo()
            s.sendmail("%s@%s" % (c.name, c.ptr), ["%s@%s" % (USER, DOMAIN)], self.message(c, n))
            s.quit()
        except (smtplib.SMTPException, OSError) as e:
            s.close()
            return "failed: %s" % e
        self.delivered[c.name] += 1
        return "delivered"

    def auth_tries(self, c, tries):
        """tries: [(mech, user, password)], one connection each, as most
        guessers do (a second AUTH in one session is slowed down by sendmail,
        which logs "possible SMTP attack: command=AUTH" at the mechanism
        count + 1).  Returns (the monotonic time of the last 535 reply or
        None, what happened)."""
        last, what = None, []
        for mech, user, pw in tries:
            s = self.smtp(c, timeout=5)
            if s is None:
                what.append("refused")
                break
            try:
                s.ehlo()
                if mech == "PLAIN":
                    tok = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
                    code, _ = s.docmd("AUTH PLAIN", tok)
                else:
                    code, _ = s.docmd("AUTH LOGIN")
                    if code == 334:
                        code, _ = s.docmd(base64.b64encode(user.encode()).decode())
                    if code == 334:
                        code, _ = s.docmd(base64.b64encode(pw.encode()).decode())
                what.append("%s %d" % (mech, code))
                if code == 535:
                    last = time.monotonic()
                s.quit()
            except (smtplib.SMTPException, OSError):
                what.append("%s cut off" % mech)
                s.close()
        return last, ", ".join(what)

    def wait_refused(self, c, since, limit=10.0):
        """Probe c's port-25 reachability every 100 ms (each connection that
        still gets through is closed before the greeting) until refused;
        seconds from `since` to the first refusal, or None."""
        end = since + limit
        while time.monotonic() < end:
            s = self.connect(c, timeout=2)
            if s is None:
                return time.monotonic() - since
            s.close()
            time.sleep(0.1)
        return None

    def probe(self, c):
        """Is c's next connection refused?  A connection that gets through
        reads the greeting and quits."""
        s = self.connect(c)
        if s is None:
            return True
        try:
            s.recv(512)
            s.sendall(b"QUIT\r\n")
            s.recv(512)
        except OSError:
            pass
        s.close()
        return False

    # ---- the scenario ----

    def scenario(self):
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        old.set_ciphers("AES128-SHA")
        modern = ssl.create_default_context()
        modern.check_hostname = False
        modern.verify_mode = ssl.CERT_NONE
        modern.minimum_version = ssl.TLSVersion.TLSv1_3
        engine = "smban-engine + " if self.engine else ""
        self.say("lab up in %s: sendmail on %s and %s in namespace %s, fail2ban jails %s (%s)" % (
            self.dir, SERVER4, SERVER6, self.server.name, ", ".join(self.jails()),
            (engine + "smban-iptables") if self.mode == "smban"
            else "stock filters + iptables-multiport"))
        self.flush()

        partner, bank = BY_NAME["partner-mta"], BY_NAME["bank-mta"]
        self.say("%s %s: delivers over TLS 1.3 -> %s" % (
            partner.name, partner.addr, self.deliver(partner, 1, modern)))
        self.flush(0.3)

        for n in range(1, BANK_MESSAGES + 1):
            r = self.deliver(bank, n, old)
            self.say("%s %s: message %d, STARTTLS offering only AES128-SHA -> %s" % (
                bank.name, bank.addr, n, r))
            if r.startswith("tls-failed"):
                self.flush(0.1)
                r = self.deliver(bank, n, None)
                self.say("%s %s: message %d again in clear text (RFC 3207) -> %s" % (
                    bank.name, bank.addr, n, r))
            if r != "delivered":
                self.say("%s %s: message %d stays in the bank's queue" % (bank.name, bank.addr, n))
            self.flush(2.0)   # the bank sends its next message a little later

        scanner, dropper = BY_NAME["scanner"], BY_NAME["dropper"]
        self.probe(scanner)
        self.say("%s %s: connected, read the greeting, quit" % (scanner.name, scanner.addr))
        self.flush(0.3)
        self.say("%s %s: EHLO, MAIL, RCPT, then drops the connection -> %s" % (
            dropper.name, dropper.addr, self.drop_after_rcpt(dropper)))
        self.flush(0.3)

        for c, tries in (
                (BY_NAME["guesser"], [("LOGIN", "admin", "123456"), ("PLAIN", USER, "password"),
                                      ("LOGIN", "postmaster", "qwerty")]),
                (BY_NAME["guesser6"], [("PLAIN", "admin", "admin"), ("PLAIN", "test", "test"),
                                       ("PLAIN", "sales", "sales123")])):
            last, what = self.auth_tries(c, tries)
            self.say("%s %s: %d connections, one AUTH with a guessed password each -> %s" % (
                c.name, c.addr, len(tries), what))
            lat = self.wait_refused(c, last) if last is not None else None
            self.latency[c.name] = lat
            self.flush()
            if last is not None:
                # fail2ban's log is in wall-clock time
                last_wall = time.time() - (time.monotonic() - last)
                bans = [t for _, ip, t in self.bans(times=True) if ip == c.addr]
                self.ban_latency[c.name] = (min(bans) + self.t0_wall - last_wall
                                            if bans else None)
            self.say("%s %s: next connection %s" % (
                c.name, c.addr, "refused %.2f s after its last failed AUTH" % lat
                if lat is not None else "NOT refused"))

        inj = BY_NAME["injector"]
        user = "x, relay=[%s]" % INJECTED
        _, what = self.auth_tries(inj, [("LOGIN", user, "guess1"), ("PLAIN", user, "guess2"),
                                        ("LOGIN", user, "guess3")])
        self.say("%s %s: 3 AUTH attempts as user %r -> %s" % (inj.name, inj.addr, user, what))
        self.flush(1.5)

        pre = BY_NAME["pregreeter"]
        got = [self.pregreet(pre) for _ in range(MAXRETRY)]
        self.say("%s %s: sent EHLO before the greeting, %d times -> %s" % (
            pre.name, pre.addr, MAXRETRY, ", ".join(got)))
        self.flush(0.3)

        prober = BY_NAME["prober"]
        self.say("%s %s: VRFY/EXPN -> %s" % (prober.name, prober.addr, self.vrfy_expn(prober)))
        self.flush(1.5)

        self.red_team()

        self.say("%s %s: delivers over TLS 1.3 again -> %s" % (
            partner.name, partner.addr, self.deliver(partner, 2, modern)))
        self.flush(1.5)

        # who was banned by the scenario (the probes below may add lines of
        # their own: a connection that gets through and quits is a "did not
        # issue MAIL" to sendmail)
        self.banned_ips = {ip for _, ip in self.bans()}
        self.queued = len([f for f in os.listdir(os.path.join(self.dir, "queue"))
                           if f.startswith("qf")])
        for c in CLIENTS:
            self.refused[c.name] = self.probe(c)
        self.say("final probe: one more connection from every client: refused from %s" % (
            ", ".join(c.name for c in CLIENTS if self.refused[c.name]) or "nobody"))
        self.flush(0.5)
        return self.result()

    def dialogue(self, c, cmds):
        """One SMTP session from c: EHLO, then each command sent word for
        word (smtplib's docmd), then QUIT.  The reply codes, ending in "cut
        off" when the connection broke (a ban lands), or ["refused"]."""
        s = self.smtp(c)
        if s is None:
            return ["refused"]
        codes = []
        try:
            s.ehlo()
            for cmd in cmds:
                codes.append(str(s.docmd(cmd)[0]))
            s.quit()
        except (smtplib.SMTPException, OSError):
            codes.append("cut off")
            s.close()
        return codes

    def red_team(self):
        """Two attackers that try to get the partner MTA, the bank's MTA and
        the server itself banned with envelope addresses and VRFY/EXPN/ETRN
        arguments imitating sendmail's fields; each must be banned itself,
        on its own 550 relay probes, and none of its victims."""
        rt, rt6 = BY_NAME["redteam"], BY_NAME["redteam6"]
        self.redteam_t = self._mark - self.t0
        self.dns.set_tempfail([rt.addr, rt6.addr])
        codes = self.dialogue(rt, REDTEAM_TEMP)
        self.say("%s %s: its reverse zone fails (SERVFAIL); MAIL FROM faking size=900, "
                 "nrcpts=3, RCPT TO a local user, RSET, MAIL FROM, 3 RCPT TO quoting "
                 "relay=[victim] -> %s" % (rt.name, rt.addr, " ".join(codes)))
        self.flush(0.3)
        codes = self.dialogue(rt6, REDTEAM6_TEMP)
        self.say("%s %s: its reverse zone fails too; RCPT TO quoting relay=[victim] -> %s"
                 % (rt6.name, rt6.addr, " ".join(codes)))
        self.flush(0.3)
        self.dns.set_tempfail([])
        codes = self.dialogue(rt, REDTEAM_550)
        self.say("%s %s: its reverse lookup fails for good; %d RCPT TO quoting relay=[victim] "
                 "(5 that read two ways or do not parse, 3 aimed at the stock filter) -> %s"
                 % (rt.name, rt.addr, len(REDTEAM_550) - 1, " ".join(codes)))
        self.flush(0.3)
        codes = self.dialogue(rt6, REDTEAM6_550)
        self.say("%s %s: MAIL FROM in a domain that does not exist, 2 RCPT TO, VRFY/EXPN/ETRN "
                 "quoting relay=[victim] -> %s" % (rt6.name, rt6.addr, " ".join(codes)))
        self.flush(1.5)

    def drop_after_rcpt(self, c):
        s = self.smtp(c)
        if s is None:
            return "refused"
        s.ehlo()
        s.mail("%s@example.net" % c.name)
        code, _ = s.rcpt("%s@%s" % (USER, DOMAIN))
        s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        s.close()
        return "RCPT answered %d, then reset" % code

    def pregreet(self, c):
        s = self.connect(c)
        if s is None:
            return "refused"
        try:
            s.sendall(b"EHLO pregreet.example\r\n")
            reply = s.recv(512).decode("ascii", "replace")
            return reply[:3] or "closed"
        except OSError as e:
            return "error %s" % e
        finally:
            s.close()

    def vrfy_expn(self, c):
        s = self.smtp(c)
        if s is None:
            return "refused"
        codes = []
        s.ehlo()
        for cmd in ("VRFY root", "VRFY admin", "EXPN staff", "VRFY postmaster"):
            codes.append(str(s.docmd(cmd)[0]))
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()
        return " ".join(codes)

    def victims(self):
        """{address: {"who", "banned", "framed"}} for the red team's victims:
        framed when its first ban came after the red team started."""
        first = {}
        for jail, ip, t in self.bans(times=True):
            first.setdefault(_norm(ip), (t, jail))
        out = {}
        for who, addr in VICTIMS:
            ban = first.get(_norm(addr))
            out[addr] = {"who": who, "banned": ban is not None,
                         "framed": ban is not None and self.redteam_t is not None
                         and ban[0] >= self.redteam_t,
                         "jail": ban[1] if ban else None}
        return out

    def result(self):
        return {
            "mode": self.mode,
            "engine": self.engine,
            "clients": {c.name: {"addr": c.addr, "delivered": self.delivered[c.name],
                                 "banned": c.addr in self.banned_ips,
                                 "refused": self.refused.get(c.name)}
                        for c in CLIENTS},
            "bank_messages": BANK_MESSAGES,
            "injected_banned": INJECTED in self.banned_ips,
            "victims": self.victims(),
            "queued": self.queued,
            "latency": dict(self.latency),
            "ban_latency": dict(self.ban_latency),
            "verdicts": list(self.verdicts),
            "bans": self.bans(),
        }


def _norm(ip):
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


# ------------------------------------------------------------- teardown --

_LABS = []
_SAVED = {}                     # signal -> the handler before the first lab
_ATEXIT = []


def _register(lab):
    if not _ATEXIT:
        atexit.register(_teardown_all)
        _ATEXIT.append(True)
    if not _LABS:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                _SAVED[sig] = signal.signal(sig, _on_signal)
            except ValueError:      # not the main thread
                pass
    _LABS.append(lab)


def _unregister(lab):
    if lab in _LABS:
        _LABS.remove(lab)
    if not _LABS:
        for sig, handler in list(_SAVED.items()):
            try:
                signal.signal(sig, handler)
            except ValueError:
                pass
            del _SAVED[sig]


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)      # finally blocks and atexit run


def _teardown_all():
    for lab in list(_LABS):
        lab.teardown()


def _killpg(p):
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 3)):
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # the group may outlive its leader
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_in_namespaces(inos):
    """SIGKILL every process whose network namespace is one of ours; the
    number found."""
    found = 0
    if not inos:
        return 0
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            if os.stat("/proc/%s/ns/net" % pid).st_ino in inos:
                os.kill(int(pid), signal.SIGKILL)
                found += 1
        except OSError:
            pass
    return found


# ---------------------------------------------------------------- report --

def table(results):
    """The final table, one column group per run: a list of lines."""
    head1 = "%-12s %-15s" % ("", "")
    head2 = "%-12s %-15s" % ("client", "address")
    for r in results:
        title = "smban" if r["mode"] == "smban" else "fail2ban stock filters"
        head1 += " | %-30s" % title
        head2 += " | %-9s %-7s %-12s" % ("delivered", "banned", "next conn.")
    rows = [head1.rstrip(), head2.rstrip()]
    for c in CLIENTS:
        row = "%-12s %-15s" % (c.name, c.addr)
        for r in results:
            cr = r["clients"][c.name]
            dl = str(cr["delivered"])
            if c.name == "bank-mta":
                dl = "%d of %d" % (cr["delivered"], r["bank_messages"])
            row += " | %-9s %-7s %-12s" % (dl, "BANNED" if cr["banned"] else "no",
                                            "refused" if cr["refused"] else "accepted")
        rows.append(row.rstrip())
    # the red team's victims, clients or not
    rows.append("")
    head = "%-28s" % "framed by the red team"
    for r in results:
        head += " | %-30s" % "banned"
    rows.append(head.rstrip())
    for who, addr in VICTIMS:
        row = "%-12s %-15s" % (who, addr)
        for r in results:
            v = r["victims"][addr]
            row += " | %-30s" % ("BANNED (framed)" if v["framed"] else
                                 "BANNED before the red team" if v["banned"] else "no")
        rows.append(row.rstrip())
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", choices=["stock"], help="also run fail2ban's stock jails")
    ap.add_argument("--quiet", action="store_true", help="print the tables only")
    args = ap.parse_args(argv)
    why = why_unavailable()
    if why:
        print("make lab: cannot run: %s" % why, file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    results = []
    for mode in ["smban"] + (["stock"] if args.compare else []):
        if not args.quiet:
            print("\n==== %s ====" % ("smban jail" if mode == "smban" else
                                      "fail2ban's stock sendmail-auth + sendmail-reject[mode=extra]"),
                  flush=True)
        with Lab(mode, out=out) as lab:
            results.append(lab.scenario())
    print()
    print("\n".join(table(results)))
    print()
    for r in results:
        for name, lat in sorted(r["latency"].items()):
            ban = r["ban_latency"].get(name)
            print("%s: %s's last failed AUTH -> fail2ban's Ban %s, its next connection refused %s"
                  % (r["mode"], name, "%.2f s" % ban if ban is not None else "never",
                     "%.2f s" % lat if lat is not None else "never"))
    if len(results) > 1:
        print("\nbank-mta: every TLS handshake failed (no shared cipher) and it retried in clear\n"
              "text, as RFC 3207 says.  The stock sendmail-reject[mode=extra] bans it on the\n"
              "\"did not issue MAIL\" lines that follow the failed handshakes, and its mail\n"
              "stays queued at the bank; smban classifies those lines tls-fallback (benign).")
        stock = results[-1]
        framed = stock["victims"][INJECTED]["framed"]
        if framed and not results[0]["victims"][INJECTED]["banned"]:
            print("\nredteam: RCPT TO:<\"q(@x>, relay=[%s], reject=550 5.7.1 <\"q(@x>... "
                  "Rejected: )@elsewhere.example>\nis a valid address; the stock sendmail-reject reads "
                  "<\"q(@x> as the whole arg1 and\nthe relay= after it as the client, and bans "
                  "the partner MTA.  smban parses the\naddress to its end and bans the red team."
                  % INJECTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
