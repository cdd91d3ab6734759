"""Private network namespaces, for the lab and for the tests that touch
iptables or run fail2ban (imported as lab.netns; it needs nothing else of
the lab).

Nothing here touches the machine's own firewall: the calling thread is
moved into a fresh namespace (setns(2) moves only that thread; threads and
processes it starts inherit the namespace), it is checked to be there before
anything runs, and it is moved back and the namespace deleted afterwards.
"""
import contextlib
import ctypes
import itertools
import os
import re
import shutil
import socket
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_seq = itertools.count()


def why_unavailable():
    """None when the tests can run, else the reason to skip."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "iptables-legacy", "iptables-legacy-save", "ip6tables-legacy-save"):
        if not shutil.which(tool):
            return "%s not installed" % tool
    if not hasattr(_libc, "setns"):
        return "no setns(2) in libc"
    return None


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


def _ino():
    return os.stat("/proc/thread-self/ns/net").st_ino


def run(*argv, check=True, **kw):
    """Run a command (no shell) in the calling thread's namespace."""
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


class Netns:
    """A named namespace (ip netns add) deleted by close()."""

    def __init__(self, tag="t"):
        self.name = "smban-%s-%d-%d" % (tag, os.getpid(), next(_seq))
        run("ip", "netns", "add", self.name)
        self.path = "/run/netns/" + self.name
        self.ino = os.stat(self.path).st_ino

    @contextlib.contextmanager
    def entered(self):
        """Move the calling thread in for the duration of the block."""
        orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            orig_ino = os.fstat(orig).st_ino
            _setns(target)
            try:
                if _ino() != self.ino or self.ino == orig_ino:
                    raise RuntimeError("not inside the private namespace; refusing to go on")
                yield self
            finally:
                _setns(orig)
        finally:
            os.close(orig)
            os.close(target)

    def call(self, fn, *args):
        """fn(*args) in a new thread inside this namespace; its result or
        its exception."""
        box = {}

        def body():
            try:
                with self.entered():
                    box["r"] = fn(*args)
            except BaseException as e:  # handed to the caller
                box["e"] = e
        t = threading.Thread(target=body)
        t.start()
        t.join()
        if "e" in box:
            raise box["e"]
        return box["r"]

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def link_up_lo():
    run("ip", "link", "set", "lo", "up")


@contextlib.contextmanager
def two_hosts():
    """Namespaces (server, client) joined by a veth pair: server 192.0.2.1
    and 2001:db8::1, client 192.0.2.2 and 2001:db8::2; both deleted when the
    block ends."""
    srv, cli = Netns("srv"), Netns("cli")
    try:
        veth = "smb%d" % (os.getpid() % 100000)
        run("ip", "-n", srv.name, "link", "add", veth + "a", "type", "veth",
            "peer", "name", veth + "b", "netns", cli.name)
        for ns, dev, v4, v6 in ((srv, veth + "a", "192.0.2.1/24", "2001:db8::1/64"),
                                (cli, veth + "b", "192.0.2.2/24", "2001:db8::2/64")):
            run("ip", "-n", ns.name, "link", "set", "lo", "up")
            run("ip", "-n", ns.name, "addr", "add", v4, "dev", dev)
            run("ip", "-n", ns.name, "-6", "addr", "add", v6, "dev", dev, "nodad")
            run("ip", "-n", ns.name, "link", "set", dev, "up")
        yield srv, cli
    finally:
        srv.close()
        cli.close()


def save(family=4):
    """The legacy filter table as iptables-legacy-save prints it, without
    comments and counters: a list of lines."""
    tool = "iptables-legacy-save" if family == 4 else "ip6tables-legacy-save"
    out = run(tool, "-t", "filter").stdout
    return [re.sub(r" \[\d+:\d+\]$", "", line) for line in out.splitlines()
            if line and not line.startswith("#")]


def chain_rules(chain, family=4):
    """The -A lines of one chain, in order."""
    return [line for line in save(family) if line.startswith("-A %s " % chain)]


def listen(family, port):
    """A server on the two_hosts() server address (IPv4 or IPv6) that
    greets each client with 220 and closes: (socket, stop event, thread)."""
    s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("192.0.2.1" if family == 4 else "2001:db8::1", port))
    s.listen(64)
    stop = threading.Event()

    def loop():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = s.accept()
                conn.sendall(b"220 ok\r\n")
                conn.close()
            except OSError:
                pass
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return s, stop, t


def connect(host, port):
    """What a client sees: 'ok', 'refused' or 'timeout'."""
    try:
        with socket.create_connection((host, port), timeout=1.5) as s:
            return "ok" if s.recv(10).startswith(b"220") else "garbled"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"


@contextlib.contextmanager
def serving(family, ports):
    """listen() on each port of the two_hosts() server address for the
    block (entered in the server's namespace), closed at its end."""
    listeners = [listen(family, p) for p in ports]
    try:
        yield
    finally:
        for sock, stop, t in listeners:
            stop.set()
            t.join()
            sock.close()


def refusal_story(cli, family, backend, expire=None):
    """The packets a ban backend object must refuse and let through, seen
    from the two_hosts() client: the jail's port (2525) open, refused once
    the client is banned while another port (2526) stays open, open after
    the unban and with someone else banned, and open once the backend is
    stopped.  expire(ip), when given, bans ip for one second: the ban must
    end in the kernel.  Run in the server's namespace, serving() both
    ports."""
    server_ip = "192.0.2.1" if family == 4 else "2001:db8::1"
    client_ip = "192.0.2.2" if family == 4 else "2001:db8::2"
    backend.start()
    assert cli.call(connect, server_ip, 2525) == "ok"
    backend.ban(client_ip)
    assert cli.call(connect, server_ip, 2525) == "refused"
    assert cli.call(connect, server_ip, 2526) == "ok"      # the jail's ports only
    backend.unban(client_ip)
    assert cli.call(connect, server_ip, 2525) == "ok"
    backend.ban("192.0.2.200" if family == 4 else "2001:db8::200")
    assert cli.call(connect, server_ip, 2525) == "ok"
    if expire is not None:
        expire(client_ip)
        assert cli.call(connect, server_ip, 2525) == "refused"
        end = time.monotonic() + 5
        while time.monotonic() < end and cli.call(connect, server_ip, 2525) != "ok":
            time.sleep(0.2)
        assert cli.call(connect, server_ip, 2525) == "ok"
    backend.ban(client_ip)
    backend.stop()
    assert cli.call(connect, server_ip, 2525) == "ok"      # stop lets all in


def bans_beside_a_writer(ban, write, writes=300):
    """ban() 100 addresses from each of two threads while write(i) runs in
    a third, at most `writes` times, until the bans are done: another tool
    changing the kernel's tables at the same moment.  Returns how many
    writes were made."""
    stop = threading.Event()
    done = []

    def writer():
        while not stop.is_set() and len(done) < writes:
            write(len(done))
            done.append(1)

    def banner(base):
        for i in range(100):
            ban("198.51.%d.%d" % (base, i))

    t = threading.Thread(target=writer)
    t.start()
    bs = [threading.Thread(target=banner, args=(b,)) for b in (100, 101)]
    for b in bs:
        b.start()
    for b in bs:
        b.join()
    stop.set()
    t.join()
    return len(done)
