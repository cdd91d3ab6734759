"""The lab's sendmail: its configuration, the private mount namespace it
runs in, the daemon, and its log."""
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

from lab import netns
from lab.common import (CLIENTS, HERE, MX, PASSWORD, SENDMAIL_CF_DIR, SERVER4, SERVER6, USER,
                        plain_env, run, tail)


def sendmail_binary():
    """The sendmail daemon of the sendmail-bin package, or None."""
    for p in ("/usr/libexec/sendmail/sendmail", "/usr/lib/sm.bin/sendmail"):
        if os.access(p, os.X_OK):
            return p
    p = shutil.which("sendmail-mta")
    return os.path.realpath(p) if p else None


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


class Sendmail:
    """sendmail in the server namespace.  Owns its files in the lab
    directory (hosts, name service and resolver configuration, aliases, a
    throw-away certificate and sasldb, sendmail.cf generated from
    lab/sendmail.mc), the argv that runs a program in its private mount
    namespace (lab/mountns.py), the daemon, and its log: the lab's /dev/log
    (a SyslogReceiver) written to the maillog fail2ban watches."""

    def __init__(self, lab_dir, server, processes, addr4=SERVER4, addr6=SERVER6):
        self.dir, self.server, self.processes = lab_dir, server, processes
        self.addr4, self.addr6 = addr4, addr6       # where it listens
        self.syslog = None
        self.proc = None

    def _write(self, rel, text, mode=0o644):
        """A file of the lab directory; its path."""
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def write_files(self):
        """Everything sendmail reads, in the lab directory."""
        d = self.dir
        # the lab's /dev: the log socket comes later, device files are
        # bind-mounted over these empty files by mountns.py
        os.makedirs(os.path.join(d, "dev"))
        for dev in ("null", "zero", "random", "urandom"):
            open(os.path.join(d, "dev", dev), "w").close()
        os.makedirs(os.path.join(d, "queue"), mode=0o700)
        self._write_name_service()
        self._write("trusted-users", "")
        self._write("relay-domains", "")
        self._write("aliases", "postmaster: root\n%s: root\n" % USER)
        self._write("statistics", "", 0o600)
        self._write_tls()
        self._write_sasl()
        # sendmail.cf from the repository's .mc
        cf = run("m4", "-D", "LAB_DIR=" + d, "-D", "LAB_ADDR4=" + self.addr4,
                 "-D", "LAB_ADDR6=" + self.addr6, "-D", "_CF_DIR_=%s/" % SENDMAIL_CF_DIR,
                 os.path.join(SENDMAIL_CF_DIR, "m4", "cf.m4"), os.path.join(HERE, "sendmail.mc"))
        self._write("sendmail.cf", cf)

    def _write_name_service(self):
        """hosts, service.switch, nsswitch.conf and resolv.conf: what sendmail
        and the C library resolve names with."""
        hosts = ["127.0.0.1 localhost", "::1 localhost",
                 "%s %s mx" % (self.addr4, MX), "%s %s" % (self.addr6, MX)]
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

    def _write_tls(self):
        """A throw-away certificate."""
        tls = os.path.join(self.dir, "tls")
        os.makedirs(tls, mode=0o700)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=" + MX, "-keyout", os.path.join(tls, "key.pem"),
            "-out", os.path.join(tls, "cert.pem"))
        os.chmod(os.path.join(tls, "key.pem"), 0o600)

    def _write_sasl(self):
        """A throw-away sasldb and the SASL configuration sendmail will find
        at /usr/lib/sasl2/Sendmail.conf inside its mount namespace."""
        sasl = os.path.join(self.dir, "sasl")
        os.makedirs(sasl, mode=0o755)
        subprocess.run(["saslpasswd2", "-f", os.path.join(sasl, "sasldb2"), "-c", "-p",
                        "-u", MX, USER], input=PASSWORD, text=True, check=True,
                       capture_output=True, timeout=30, env=plain_env())
        os.chmod(os.path.join(sasl, "sasldb2"), 0o600)
        self._write("sasl/Sendmail.conf", "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    "sasldb_path: %s\nmech_list: LOGIN PLAIN\n"
                    % os.path.join(sasl, "sasldb2"))

    def open_log(self):
        """The lab's /dev/log, before sendmail starts logging to it."""
        self.syslog = SyslogReceiver(os.path.join(self.dir, "dev", "log"),
                                     os.path.join(self.dir, "maillog"))

    def in_server(self, argv):
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

    def start(self):
        """newaliases, then the daemon; returns once it listens on both
        addresses."""
        sm = sendmail_binary()
        cf = os.path.join(self.dir, "sendmail.cf")
        r = subprocess.run(self.in_server([sm, "-C", cf, "-bi"]), capture_output=True,
                           text=True, timeout=60, start_new_session=True, env=plain_env())
        if r.returncode:
            raise RuntimeError("newaliases failed: %s%s" % (r.stdout, r.stderr))
        self.proc = self.processes.spawn(self.in_server([sm, "-bD", "-C", cf]),
                                         os.path.join(self.dir, "sendmail.out"), plain_env())
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            out = self.server.call(lambda: netns.run("ss", "-Hltn", env=plain_env()).stdout)
            if "%s:25 " % self.addr4 in out and "[%s]:25 " % self.addr6 in out:
                return
            time.sleep(0.1)
        raise RuntimeError("sendmail did not start listening: %s\n%s" % (
            tail(os.path.join(self.dir, "sendmail.out")),
            "\n".join(l for _, l in self.syslog.lines[-10:])))

    def queued(self):
        """How many messages sendmail holds in its queue."""
        return len([f for f in os.listdir(os.path.join(self.dir, "queue"))
                    if f.startswith("qf")])

    def close(self):
        if self.syslog:
            self.syslog.close()
