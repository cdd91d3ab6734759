"""The lab's world, shared by its parts: where things are, the server's
addresses and names, the jail's thresholds, the cast of clients, and how
the lab runs its programs (the environment they get, the process groups
they live in)."""
import ipaddress
import os
import signal
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
F2B_CONFIG = "/etc/fail2ban"
SENDMAIL_CF_DIR = "/usr/share/sendmail/cf"
ACTIONS = os.path.join(ROOT, "actions")

SERVER4, SERVER6 = "192.0.2.1", "2001:db8:1::1"
DOMAIN = "lab.example"
MX = "mx." + DOMAIN
USER, PASSWORD = "alice", "correct horse battery staple"
MAXRETRY, FINDTIME, BANTIME = 3, 600, 600


class Client:
    """One SMTP client of the scenario: its name, its own address in the
    internet namespace, the name its address resolves to (None: none) and
    the part it plays."""

    def __init__(self, name, addr, ptr, role):
        self.name, self.addr, self.ptr, self.role = name, addr, ptr, role

    @property
    def family(self):
        return 6 if ":" in self.addr else 4


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
#: the address the injector's AUTH user name quotes (the partner MTA's)
INJECTED = "198.51.100.10"


def norm_ip(ip):
    """An address in its canonical text form (the IPv6 fail2ban logs and
    the one the lab writes compare equal); anything else as it is."""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


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


def tail(path, n=3000):
    """The last n characters of a file, or "" when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


class Processes:
    """The lab's long-running programs (sendmail, fail2ban-server): each
    started as the leader of a process group of its own, so that the
    children it forks go with it, its output appended to a file."""

    def __init__(self):
        self.procs = []

    def spawn(self, argv, log_path, env):
        """argv started in a session of its own; its Popen."""
        with open(log_path, "ab") as f:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.procs.append(p)
        return p

    def kill_all(self):
        """Each group, the last started first: SIGTERM, then SIGKILL."""
        for p in reversed(self.procs):
            _killpg(p)


def _killpg(p):
    """p's whole process group: SIGTERM, SIGKILL after 3 s."""
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
