"""smban-crowdsec: a fail2ban action that shares a jail's bans with other
hosts through CrowdSec's Local API (LAPI).  Copy or link this file into
fail2ban's action.d/ and add it beside the jail's ban action:

    action = smban-iptables.py[port="smtp,465,submission"]
             smban-crowdsec.py

Each ban becomes a decision in the LAPI (an alert carrying it, made by this
host's CrowdSec machine): the address, for the ban's time, scenario
smban/<class> and a reason naming the classes smban found in the lines
that caused it and their counts ("smban jail smban on mx1: auth-failure x3").
CrowdSec's firewall bouncer on every other host enforces it.  An unban
deletes this machine's smban decisions on the address, and nobody else's.

Options:
    credentials  the machine's LAPI credentials, in the format of CrowdSec's
                 local_api_credentials.yaml (url, login, password; default
                 /etc/crowdsec/local_api_credentials.yaml)
    queue        the file of decisions not pushed yet (default
                 /var/lib/smban/crowdsec-<name>.queue)
    name         the jail name, for the queue file (default: the jail's)
    timeout      seconds an HTTP request to the LAPI may take (default 5)
    maxqueue     addresses the queue holds at most (default 100000)

Nothing here blocks fail2ban's ban thread: a decision is queued (and
written to the queue file) and a thread pushes the queue in batches.
While the LAPI is down or refuses (wrong URL, bad credentials, TLS), the
reason is logged once, the decisions wait in the queue file (a restart of
fail2ban loses none) and are pushed when it answers; the jail's own ban
action bans locally whatever the LAPI does.  Bad credentials or a wrong
URL are logged as an error when the jail starts.

Stopping fail2ban leaves the decisions in the LAPI until they end (the
other hosts keep refusing the addresses); the bans fail2ban restores at
its next start are not pushed again.  No shell is ever run.
"""
import socket
import sys
import threading
import time
from collections import Counter

from fail2ban.server.actions import ActionBase

try:
    from smban import Classifier
    from smban.crowdsec import Credentials, Lapi, LapiError, Sharer
    from smban.f2b_action import ban_end
except (ImportError, OSError) as e:   # what an unloadable extension raises
    Classifier = Credentials = Lapi = LapiError = Sharer = ban_end = None
    IMPORT_ERROR = "%s: %s" % (type(e).__name__, e)
else:
    IMPORT_ERROR = None

DEFAULTS = {
    "credentials": "/etc/crowdsec/local_api_credentials.yaml",
    "queue": "",
    "name": "",
    "timeout": "5",
    "maxqueue": "100000",
}


def classes_of(classifier, lines, ip):
    """Counter of the smban classes of the lines (fail2ban's matches of the
    ban) that name ip."""
    found = Counter()
    for line in lines:
        ev = classifier.classify(line)
        if ev is not None and ev.ip == ip and ev.name:
            found[ev.name] += 1
    return found


class SmbanCrowdsec(ActionBase):
    """fail2ban action: push this jail's bans to a CrowdSec LAPI."""

    # the bans fail2ban restores at start were pushed by the run that made them
    norestored = True

    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        o = dict(DEFAULTS)
        for k, v in opts.items():
            if k not in o:
                self._logSys.warning("smban-crowdsec: unknown option %s=%r ignored", k, v)
                continue
            o[k] = str(v).strip()
        o["name"] = o["name"] or getattr(jail, "name", None) or actname
        try:
            timeout, maxqueue = float(o["timeout"]), int(o["maxqueue"])
            if not (0 < timeout <= 300) or maxqueue < 1:
                raise ValueError
        except ValueError:
            raise ValueError("smban-crowdsec: timeout must be 0..300 s and maxqueue a "
                             "positive number (%r, %r)" % (o["timeout"], o["maxqueue"]))
        self._opts = o
        self._host = socket.gethostname()
        # one classifier for the action's life: making one compiles the rule
        # table (milliseconds), classifying a ban's few lines takes microseconds
        self._classifier = Classifier(mode="aggressive")
        self._classify_lock = threading.Lock()
        self._creds_error = None
        try:
            creds = Credentials.read(o["credentials"])
        except ValueError as e:
            # no local ban is lost: the jail's ban action does not depend on us
            self._creds_error = str(e)
            creds = Credentials("http://credentials.invalid/", "", "", o["credentials"])
        queue = o["queue"] or "/var/lib/smban/crowdsec-%s.queue" % o["name"]
        self.sharer = Sharer(Lapi(creds, timeout=timeout), queue, self._logSys,
                             max_queue=maxqueue)

    def start(self):
        if self._creds_error:
            self._logSys.error("[%s] smban-crowdsec: %s: no decision is shared until it is "
                               "fixed (the jail still bans locally)", self._jail.name,
                               self._creds_error)
        self.sharer.start()
        if self._creds_error:
            return
        try:
            self.sharer.lapi.token()       # says now whether the LAPI takes this machine
            self._logSys.info("[%s] smban-crowdsec: logged in to the LAPI at %s as %s",
                              self._jail.name, self.sharer.lapi.creds.url,
                              self.sharer.lapi.creds.login)
        except LapiError as e:
            self._logSys.error("[%s] smban-crowdsec: %s: decisions are queued in %s until the "
                               "LAPI takes them (the jail still bans locally)",
                               self._jail.name, e, self.sharer.path)

    def ban(self, aInfo):
        ip = str(aInfo["ip"])
        end = ban_end(aInfo)
        seconds = None if end is None else max(1, end - time.time())
        try:
            lines = str(aInfo["matches"] or "").splitlines()
        except Exception:
            lines = []
        with self._classify_lock:
            found = classes_of(self._classifier, lines, ip)
        top = found.most_common(1)[0][0] if found else "ban"
        what = ", ".join("%s x%d" % kv for kv in found.most_common()) \
            or "%d failure(s)" % int(aInfo.get("failures") or 0)
        reason = "smban jail %s on %s: %s" % (self._jail.name, self._host, what)
        self.sharer.ban(ip, seconds, "smban/" + top, reason)

    def reban(self, aInfo):
        return self.ban(aInfo)

    def unban(self, aInfo):
        self.sharer.unban(str(aInfo["ip"]))

    def flush(self):
        # the LAPI keeps the decisions until they end: other hosts keep
        # refusing the addresses while this fail2ban is down
        return True

    def stop(self):
        self.sharer.stop()


class SmbanCrowdsecUnavailable(ActionBase):
    """smban-crowdsec when smban cannot be imported: says so; the jail's
    own ban action is not affected."""

    norestored = True

    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        self._error("loaded")

    def _error(self, when):
        self._logSys.error("[%s] smban-crowdsec %s but cannot import smban (%s): no ban is "
                           "shared until smban is rebuilt for Python %d.%d (%s)",
                           getattr(self._jail, "name", "?"), when, IMPORT_ERROR,
                           sys.version_info[0], sys.version_info[1], sys.executable)

    def start(self):
        self._error("started")

    def ban(self, aInfo):
        pass

    def unban(self, aInfo):
        pass

    def flush(self):
        return True

    def stop(self):
        pass


Action = SmbanCrowdsec if IMPORT_ERROR is None else SmbanCrowdsecUnavailable
