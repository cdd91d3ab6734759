"""The lab's network: two network namespaces, "server" and "internet",
joined by a veth pair, and the name server sendmail's resolver asks."""
import ipaddress
import os
import signal
import socket
import threading
import time

from lab import netns
from lab.common import CLIENTS, SERVER4, SERVER6, run


class Network:
    """The namespaces, the veth pair, the server's addresses, each client's
    own address on the internet side and the routes between them; at the
    end, whatever still runs inside the namespaces, and the namespaces
    themselves."""

    def __init__(self):
        self.server = self.internet = None
        self.nets = []

    def build(self):
        """The namespaces, the link, the addresses and the routes."""
        self.server = netns.Netns("labsrv")
        self.nets.append(self.server)
        self.internet = netns.Netns("labnet")
        self.nets.append(self.internet)
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

    def kill_inside(self):
        """SIGKILL every process still inside the namespaces (sendmail's
        children outlive its process group), until none is left."""
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

    def close(self):
        for n in self.nets:
            n.close()


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
        """From now on, SERVFAIL the PTR queries for these addresses only."""
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
