"""Sharing bans through CrowdSec's Local API (LAPI): the client and the
queue behind actions/smban-crowdsec.py.

    from smban.crowdsec import Credentials, Lapi, Sharer
    creds = Credentials.read("/etc/crowdsec/local_api_credentials.yaml")
    s = Sharer(Lapi(creds), "/var/lib/smban/crowdsec-smban.queue", log=logger)
    s.start()                                  # replays what an earlier run left
    s.ban("203.0.113.5", 3600, "smban/auth-failure", "auth-failure x3")
    s.unban("203.0.113.5")
    s.stop()

The LAPI is spoken as cscli speaks it: a machine logs in with its
credentials (POST /v1/watchers/login) for a token; a ban is an alert
carrying one decision (POST /v1/alerts, many alerts per request); an unban
reads the address's alerts (GET /v1/alerts) and deletes, one by one, the
active decisions that this machine made with origin "smban" (DELETE
/v1/decisions/<id>): a decision of anyone else (another host, cscli, a
CrowdSec scenario) is never deleted.

The Sharer never blocks its caller on the network: ban() and unban() put
the operation in a queue (one entry per address: a later operation
replaces an earlier one) and a thread pushes everything queued in one go,
retrying with a growing pause (1 s to 60 s) while the LAPI is down or
refuses.  The queue is a file: each operation is appended to it before
ban() returns, and it is rewritten with what is left after each push, so
a restart (of fail2ban, of the machine) loses nothing.  It holds at most
max_queue addresses; beyond, the oldest is dropped and said so.

Standard library only (urllib, json, ssl).  Nothing of a log line reaches
the LAPI but the address (validated) and the class names smban derived.
"""
import ipaddress
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["Credentials", "Lapi", "LapiError", "Sharer", "ORIGIN", "duration_text"]

#: The origin of every decision smban makes (and the only one it deletes).
ORIGIN = "smban"

#: The LAPI accepts a machine whose user agent names crowdsec and a version.
USER_AGENT = "crowdsec/v1.4.6-smban"

#: The longest decision smban asks for (a permanent ban: ten years).
FOREVER = 10 * 365 * 86400


def duration_text(seconds):
    """A decision's duration as the LAPI takes it ("3600s"); a permanent
    ban (None or negative) is FOREVER."""
    if seconds is None or seconds < 0:
        seconds = FOREVER
    return "%ds" % max(1, int(round(seconds)))


class LapiError(Exception):
    """The LAPI could not be reached, refused, or answered nonsense."""


class Credentials:
    """url, login and password, from a file in the format of CrowdSec's
    local_api_credentials.yaml (flat "key: value" lines)."""

    def __init__(self, url, login, password, path=None):
        self.url, self.login, self.password, self.path = url, login, password, path

    @classmethod
    def read(cls, path):
        """Parse the file; ValueError naming the file and what is wrong."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError("cannot read the LAPI credentials %s: %s" % (path, e.strerror))
        fields = {}
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            key, sep, value = s.partition(":")
            if not sep:
                raise ValueError("%s line %d: not 'key: value'" % (path, n))
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            fields[key.strip()] = value
        missing = [k for k in ("url", "login", "password") if not fields.get(k)]
        if missing:
            raise ValueError("%s: no %s" % (path, ", ".join(missing)))
        url = urllib.parse.urlsplit(fields["url"])
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("%s: url %r is not http:// or https://" % (path, fields["url"]))
        return cls(fields["url"].rstrip("/") + "/", fields["login"], fields["password"], path)


class Lapi:
    """The LAPI calls smban makes, as one machine."""

    def __init__(self, creds, timeout=5.0, context=None):
        self.creds = creds
        self.timeout = float(timeout)
        self.context = context          # an ssl.SSLContext for https (default: the system's)
        self._token = None
        self._token_until = 0.0
        self.requests = 0               # HTTP requests made, for tests and benchmarks

    def _call(self, method, path, body=None, auth=True):
        try:
            return self._request(method, path, body, auth)
        except LapiError as e:
            # a token the LAPI no longer knows (it restarted: its signing
            # key is new): log in again, once
            if not (auth and e.args[0].startswith("HTTP 401")):
                raise
            self._token = None
            return self._request(method, path, body, auth)

    def _request(self, method, path, body, auth):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = "Bearer " + self.token()
        req = urllib.request.Request(urllib.parse.urljoin(self.creds.url, path), data=data,
                                     headers=headers, method=method)
        self.requests += 1
        try:
            ctx = self.context if self.creds.url.startswith("https:") else None
            if ctx is None and self.creds.url.startswith("https:"):
                ctx = ssl.create_default_context()
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            if e.code == 401 and auth:
                self._token = None      # expired or revoked: log in again next time
            detail = e.read()[:300].decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("message", detail)
            except (ValueError, AttributeError):
                pass
            raise LapiError("HTTP %d %s (%s %s)" % (e.code, detail, method,
                                                   path.split("?")[0])) from None
        except ssl.SSLError as e:
            raise LapiError("TLS with %s failed: %s" % (self.creds.url, e)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLError):
                raise LapiError("TLS with %s failed: %s" % (self.creds.url, reason)) from None
            raise LapiError("cannot reach the LAPI at %s: %s" % (self.creds.url, reason)) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise LapiError("%s %s: not JSON" % (method, path.split("?")[0])) from None

    def token(self):
        """A valid token, logging in when there is none or it is old."""
        if self._token is None or time.time() > self._token_until:
            r = self._call("POST", "v1/watchers/login",
                           {"machine_id": self.creds.login, "password": self.creds.password,
                            "scenarios": []}, auth=False)
            if not isinstance(r, dict) or not r.get("token"):
                raise LapiError("login: no token in the answer")
            self._token = r["token"]
            self._token_until = time.time() + 30 * 60     # tokens live an hour
        return self._token

    def push(self, bans):
        """One alert per ban (ip, seconds, scenario, reason), in one request;
        returns the alerts' ids."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        alerts = []
        for ip, seconds, scenario, reason in bans:
            scope_ip = {"scope": "Ip", "value": ip, "ip": ip}
            alerts.append({
                "scenario": scenario, "scenario_hash": "", "scenario_version": "",
                "message": reason, "events_count": 1, "events": [],
                "start_at": now, "stop_at": now, "capacity": 0, "leakspeed": "0",
                "simulated": False, "remediation": True, "source": scope_ip,
                "decisions": [{"duration": duration_text(seconds), "origin": ORIGIN,
                               "scenario": scenario, "scope": "Ip", "type": "ban",
                               "value": ip}]})
        r = self._call("POST", "v1/alerts", alerts)
        if not isinstance(r, list) or len(r) != len(alerts):
            raise LapiError("push: %d alerts sent, answer %r" % (len(alerts), r))
        return r

    def own_decisions(self, ip):
        """The ids of the active decisions on ip that this machine made."""
        q = urllib.parse.urlencode({"ip": ip, "has_active_decision": "true"})
        alerts = self._call("GET", "v1/alerts?" + q) or []
        ids = []
        for a in alerts:
            if a.get("machine_id") != self.creds.login:
                continue
            for d in a.get("decisions") or []:
                if d.get("origin") == ORIGIN and d.get("value") == ip and "id" in d:
                    ids.append(int(d["id"]))
        return ids

    def unban(self, ip):
        """Delete this machine's decisions on ip; how many there were."""
        ids = self.own_decisions(ip)
        for i in ids:
            self._call("DELETE", "v1/decisions/%d" % i)
        return len(ids)


class Sharer:
    """The queue of bans and unbans for the LAPI, its file and its pusher
    thread (see the module's docstring).  log: a logging.Logger."""

    BATCH = 500                          # alerts per request
    RETRY_FIRST, RETRY_LAST = 1.0, 60.0

    def __init__(self, lapi, path, log, max_queue=100000):
        self.lapi, self.path, self.log = lapi, path, log
        self.max_queue = int(max_queue)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._queue = {}                 # ip -> ("ban", seconds, scenario, reason) | ("unban",)
        self._file = None
        self._thread = None
        self._stopping = False
        self._busy = False
        self._down = None                # why the last push failed, while it does
        self.pushed = self.deleted = self.dropped = 0

    # -- the file --

    def _load(self):
        """The queue an earlier run left: its lines replayed in order (a
        line cut by a crash is skipped)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                e = json.loads(line)
                ip = str(ipaddress.ip_address(e["ip"]))
                if e["op"] == "ban":
                    self._queue[ip] = ("ban", e["seconds"], str(e["scenario"]),
                                       str(e["reason"]))
                else:
                    self._queue[ip] = ("unban",)
            except (ValueError, KeyError, TypeError):
                continue

    @staticmethod
    def _line(ip, op):
        if op[0] == "ban":
            return json.dumps({"op": "ban", "ip": ip, "seconds": op[1], "scenario": op[2],
                               "reason": op[3]}) + "\n"
        return json.dumps({"op": "unban", "ip": ip}) + "\n"

    def _rewrite(self):
        """The file holds exactly the queue (written beside, then renamed)."""
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for ip, op in self._queue.items():
                f.write(self._line(ip, op))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self._file is not None:
            self._file.close()
        self._file = open(self.path, "a", encoding="utf-8")

    # -- the caller's side --

    def start(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with self._lock:
            self._load()
            self._rewrite()
            if self._queue:
                self.log.info("smban-crowdsec: %d decision(s) left by the last run, queued "
                              "for the LAPI", len(self._queue))
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="smban-crowdsec", daemon=True)
        self._thread.start()

    def _put(self, ip, op):
        ip = str(ipaddress.ip_address(ip))
        with self._cv:
            self._queue.pop(ip, None)     # the latest operation, at the end
            self._queue[ip] = op
            while len(self._queue) > self.max_queue:
                old = next(iter(self._queue))
                del self._queue[old]
                self.dropped += 1
                self.log.warning("smban-crowdsec: queue full (%d): the decision on %s is "
                                 "dropped", self.max_queue, old)
            if self._file is not None:
                self._file.write(self._line(ip, op))
                self._file.flush()
            self._cv.notify_all()

    def ban(self, ip, seconds, scenario, reason):
        """Queue a decision: ip banned for seconds (None: for ever)."""
        self._put(ip, ("ban", seconds, scenario, reason))

    def unban(self, ip):
        """Queue the removal of this machine's decisions on ip."""
        self._put(ip, ("unban",))

    def queued(self):
        with self._lock:
            return dict(self._queue)

    def wait_idle(self, timeout=10.0):
        """Until the queue is empty (pushed) or timeout; True when empty."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
            return True

    def stop(self, timeout=2.0):
        """One last push (at most timeout seconds), then the thread ends;
        what is left stays in the file for the next run."""
        self.wait_idle(timeout)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + self.lapi.timeout + 1)
            self._thread = None
        with self._lock:
            if self._file is not None:
                self._rewrite()
                self._file.close()
                self._file = None
            if self._queue:
                self.log.warning("smban-crowdsec: %d decision(s) not pushed yet, kept in %s "
                                 "for the next start", len(self._queue), self.path)

    # -- the pusher --

    def _run(self):
        pause = self.RETRY_FIRST
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                batch = dict(self._queue)
                self._busy = True
            try:
                done = self._push(batch)
                error = None
            except LapiError as e:
                done, error = e.args[1] if len(e.args) > 1 else {}, e.args[0]
            except Exception as e:       # a bug must not end the thread silently
                done, error = {}, "unexpected error: %r" % (e,)
            with self._cv:
                for ip, op in done.items():
                    if self._queue.get(ip) == op:     # not replaced meanwhile
                        del self._queue[ip]
                if done:
                    self._rewrite()
                self._busy = False
                self._cv.notify_all()
                if error is None:
                    if self._down:
                        self.log.warning("smban-crowdsec: the LAPI answers again; the queue "
                                         "is pushed")
                    self._down = None
                    pause = self.RETRY_FIRST
                    continue
                if self._down != error:
                    self.log.error("smban-crowdsec: %s; %d decision(s) queued in %s, retried "
                                   "until the LAPI takes them", error, len(self._queue),
                                   self.path)
                self._down = error
                self._cv.wait_for(lambda: self._stopping, timeout=pause)
                pause = min(pause * 2, self.RETRY_LAST)

    def _push(self, batch):
        """Push batch (ip -> op); returns what was done.  A LapiError's
        second argument is what was done before it."""
        done = {}
        try:
            bans = [(ip, op) for ip, op in batch.items() if op[0] == "ban"]
            for i in range(0, len(bans), self.BATCH):
                part = bans[i:i + self.BATCH]
                self.lapi.push([(ip, op[1], op[2], op[3]) for ip, op in part])
                done.update(part)
                self.pushed += len(part)
            for ip, op in batch.items():
                if op[0] == "unban":
                    self.deleted += self.lapi.unban(ip)
                    done[ip] = op
        except LapiError as e:
            raise LapiError(str(e), done) from None
        return done
