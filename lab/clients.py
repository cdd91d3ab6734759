"""The lab's SMTP clients: connections from each client's own address in
the internet namespace, and the few things each kind of client does."""
import base64
import smtplib
import socket
import ssl
import time

from lab.common import CLIENTS, DOMAIN, SERVER4, SERVER6, USER


class SmtpClients:
    """Every client's side of the conversation, played on threads inside
    the internet namespace.  Owns the count of messages each client got
    accepted."""

    def __init__(self, internet, server4=SERVER4, server6=SERVER6, clients=CLIENTS):
        self.internet = internet
        self.server4, self.server6 = server4, server6     # the MX they talk to
        self.delivered = {c.name: 0 for c in clients}

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
                s.connect((self.server6 if c.family == 6 else self.server4, 25))
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
            srv = self.server6 if c.family == 6 else self.server4
            try:
                return smtplib.SMTP(srv, 25, local_hostname=c.ptr or "client.example",
                                    timeout=timeout, source_address=(c.addr, 0))
            except ConnectionRefusedError:
                return None
        return self.inside(body)

    def message(self, c, n):
        """The text of c's message number n."""
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

    def drop_after_rcpt(self, c):
        """EHLO, MAIL, RCPT, then a reset (SO_LINGER 0) instead of QUIT."""
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
        """EHLO sent before the greeting; the reply code, "closed" or
        "refused"."""
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
        """Address probes: VRFY and EXPN of likely names; the reply codes."""
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
