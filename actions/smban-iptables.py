"""smban-iptables: a fail2ban ban action over smban's in-process iptables
backend (libiptc).  Copy or link this file into fail2ban's action.d/ and use

    action = smban-iptables.py[port="smtp,465,submission"]

Options (strings, as fail2ban passes them):
    name       jail name for the chain f2b-<name> (default: the jail's name)
    port       "smtp,465,submission" (default), ranges "a:b", or "all"
    protocol   tcp (default), udp, sctp, dccp, udplite
    blocktype  REJECT (default; icmp/icmp6 port unreachable), DROP,
               "REJECT --reject-with tcp-reset"
    chain      the chain holding the jump rule (default INPUT)
    lockfile   xtables lock (default $XTABLES_LOCKFILE or /run/xtables.lock)
    lockwait   seconds to wait for that lock (default 10)
    cidr       0 (default): single addresses only; n: also networks of /n or longer

The rules go to the legacy iptables tables; see them with iptables-legacy-save
or ``python3 -m smban bans list --chain NAME``.  One action serves IPv4 and
IPv6: each family's chain is created on its first ban.  Bans fail2ban
restores from its database after a restart are applied in batches (one
commit for everything queued), and ``fail2ban-client reload`` keeps the bans
(this action implements reload and clearAllParams).  No shell is ever run.

A ban that fails (the xtables lock held longer than lockwait, the parent
chain missing, the kernel refusing) is logged and queued: a thread retries
the queue with a growing pause (1 s to 60 s) until every ban is in the table;
an unban takes its address out of the queue.  The queue holds at most
RETRY_MAX addresses (the oldest is dropped, and said so).  When fail2ban
checks the action's consistency (it does when a banned address fails
again), the chain's layout is repaired and every address fail2ban lists as
banned but the chain lacks is banned again.

When smban cannot be imported (its C extension built for another Python
minor version, a shared library it needs gone, a damaged file), the action
still loads, so that fail2ban starts the jail and the jails after it: it
logs an error at load and at start, and refuses every ban with an
exception naming the address and the reason (fail2ban logs it as "Failed
to execute ban ..." and the jail keeps running); unban, flush and stop do
nothing.

This file must not be named smban.py: fail2ban 1.0 registers an action
module in sys.modules under its file name, which would shadow the package.
"""
import sys
import threading

from fail2ban.server.actions import ActionBase

try:
    from smban.iptables import Chain, chain_name
except (ImportError, OSError) as e:   # what an unloadable extension raises
    Chain = chain_name = None
    #: why smban is not available ("ModuleNotFoundError: No module named ...")
    IMPORT_ERROR = "%s: %s" % (type(e).__name__, e)
else:
    IMPORT_ERROR = None

_DEFAULTS = {
    "port": "smtp,465,submission",
    "protocol": "tcp",
    "blocktype": "REJECT",
    "chain": "INPUT",
    "lockfile": "",
    "lockwait": "10",
    "cidr": "0",
}


#: Failed bans waiting for a retry, at most.
RETRY_MAX = 10000
#: The pause between retries grows from the first to the last, in seconds.
RETRY_FIRST, RETRY_LAST = 1.0, 60.0


class SmbanIptables(ActionBase):
    """fail2ban action: ban with smban's libiptc backend."""

    # The second positional parameter is the action name; fail2ban passes it
    # positionally, so an option called "name" does not collide with it.
    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._chains = {}            # family -> Chain in use
        self._pending = []           # restored (family, ip) waiting for a batch
        self._draining = False
        self._retry = {}             # (family, ip) -> None: failed bans, oldest first
        self._retrying = False
        self._stopping = False
        self._banEpoch = 0
        self._opts = self._parse(opts)
        # fail the jail start now on a bad option, not at the first ban
        self._make(4)

    # -- options --

    def _parse(self, opts):
        o = dict(_DEFAULTS)
        o["name"] = getattr(self._jail, "name", None) or self._name
        for k, v in opts.items():
            if k not in o:
                self._logSys.warning("smban-iptables: unknown option %s=%r ignored", k, v)
                continue
            o[k] = str(v).strip()
        chain_name(o["name"])        # validates the length
        return o

    def _make(self, family):
        o = self._opts
        # the operators' option names (fail2ban's) onto smban.iptables'
        return Chain(o["name"], o["port"], protocol=o["protocol"],
                     blocktype=o["blocktype"], family=family, parent=o["chain"],
                     lockfile=o["lockfile"] or None, lock_wait=float(o["lockwait"]),
                     min_prefix=int(o["cidr"]))

    def _chain(self, family):
        """The started chain of a family, created on first use."""
        with self._lock:
            c = self._chains.get(family)
            if c is None:
                c = self._make(family)
                repaired = c.start()
                if repaired and repaired != ("chain", "return", "jump"):
                    self._logSys.warning("[%s] %s (IPv%d): repaired %s", self._jail.name,
                                         c.chain, family, ", ".join(repaired))
                self._chains[family] = c
            return c

    @staticmethod
    def _family(ip):
        return 6 if ":" in ip else 4

    # -- restored bans: one batch per drain --

    def _queue_restored(self, family, ip):
        with self._cv:
            self._pending.append((family, ip))
            if not self._draining:
                self._draining = True
                threading.Thread(target=self._drain, name="smban-restore",
                                 daemon=True).start()

    def _drain(self):
        while True:
            with self._cv:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    self._cv.notify_all()
                    return
            for family in (4, 6):
                ips = [ip for f, ip in batch if f == family]
                if ips:
                    self._ban_batch(family, ips)

    def _ban_batch(self, family, ips):
        try:
            c = self._chain(family)
            n = c.ban_many(ips)
            self._logSys.info("[%s] %s: %d restored ban(s) applied in one commit (%d new)",
                              self._jail.name, c.chain, len(ips), n)
        except ValueError:
            # one unacceptable address: apply the others one by one
            for ip in ips:
                try:
                    self._chain(family).ban(ip)
                except ValueError as e:
                    self._logSys.error("[%s] cannot ban %s: %s", self._jail.name, ip, e)
                except Exception as e:
                    self._failed(family, [ip], e)
        except Exception as e:
            self._failed(family, ips, e)

    # -- failed bans: retried until they are in the table --

    def _failed(self, family, ips, e):
        """Log a failed ban and queue its addresses for the retry thread."""
        self._logSys.error("[%s] ban of %s failed (%s): queued, retried until it is "
                           "in the table", self._jail.name,
                           ips[0] if len(ips) == 1 else "%d addresses" % len(ips), e)
        with self._cv:
            for ip in ips:
                self._retry.pop((family, ip), None)
                self._retry[(family, ip)] = None
            while len(self._retry) > RETRY_MAX:
                old = next(iter(self._retry))
                del self._retry[old]
                self._logSys.error("[%s] retry queue full (%d): %s dropped, it stays unbanned "
                                   "until it fails again", self._jail.name, RETRY_MAX, old[1])
            if not self._retrying and not self._stopping:
                self._retrying = True
                threading.Thread(target=self._retrier, name="smban-retry",
                                 daemon=True).start()

    def _retrier(self):
        pause = RETRY_FIRST
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping, timeout=pause)
                if self._stopping or not self._retry:
                    self._retrying = False
                    self._cv.notify_all()
                    return
                batch = list(self._retry)
            done, error = 0, None
            for family in (4, 6):
                ips = [ip for f, ip in batch if f == family]
                if not ips:
                    continue
                try:
                    self._chain(family).ban_many(ips)
                except Exception as e:
                    error = e
                    continue
                with self._cv:
                    for ip in ips:
                        self._retry.pop((family, ip), None)
                done += len(ips)
            if done:
                self._logSys.notice("[%s] %d ban(s) that had failed are now in the table",
                                    self._jail.name, done)
            if error is None:
                pause = RETRY_FIRST
            else:
                pause = min(pause * 2, RETRY_LAST)
                self._logSys.warning("[%s] %d ban(s) still failing (%s): next try in %.0f s",
                                     self._jail.name, len(self._retry), error, pause)

    def _forget_retry(self, family=None, ip=None):
        """Take an address (or, with no arguments, everything) out of the
        retry queue."""
        with self._cv:
            if ip is None:
                self._retry.clear()
            else:
                self._retry.pop((family, ip), None)

    def retry_queue(self):
        """The addresses waiting for a retry, oldest first."""
        with self._cv:
            return [ip for _, ip in self._retry]

    def _wait_restored(self):
        with self._cv:
            while self._draining:
                self._cv.wait()

    # -- fail2ban's interface --

    def start(self):
        """Re-adopt chains left by a previous run (so stop removes them);
        other families' chains are created on their first ban."""
        for family in (4, 6):
            try:
                st = self._make(family).check()
            except Exception as e:
                self._logSys.debug("smban-iptables IPv%d: %s", family, e)
                continue
            if st["chain"]:
                self._chain(family)

    def ban(self, aInfo):
        ip = str(aInfo["ip"])
        family = self._family(ip)
        try:
            restored = aInfo["restored"]
        except KeyError:
            restored = False
        if restored:
            self._queue_restored(family, ip)
            return True
        return self._ban_now(family, ip)

    def _ban_now(self, family, ip):
        try:
            self._chain(family).ban(ip)
        except ValueError:
            raise                    # an address the backend refuses: fail2ban logs it
        except Exception as e:       # lock, kernel, parent chain: retried
            self._failed(family, [ip], e)
        return True

    def reban(self, aInfo):
        ip = str(aInfo["ip"])
        return self._ban_now(self._family(ip), ip)

    def unban(self, aInfo):
        self._wait_restored()
        ip = str(aInfo["ip"])
        family = self._family(ip)
        self._forget_retry(family, ip)
        with self._lock:
            c = self._chains.get(family)
        if c is None:
            c = self._make(family)
        c.unban(ip)
        return True

    def flush(self):
        """Remove every ban of the jail in one commit per family; a true
        return tells fail2ban not to unban the tickets one by one."""
        self._wait_restored()
        self._forget_retry()
        with self._lock:
            chains = list(self._chains.values())
        for c in chains:
            c.flush()
        return True

    def stop(self):
        self._wait_restored()
        with self._cv:
            self._stopping = True
            self._retry.clear()
            self._cv.notify_all()
            while self._retrying:
                self._cv.wait(5)
            self._stopping = False
        with self._lock:
            chains, self._chains = list(self._chains.values()), {}
        for c in chains:
            c.stop()

    def clearAllParams(self):
        """Called by fail2ban before reload(): the options are replaced as a
        whole by reload, and the chains (with their bans) are kept."""

    def reload(self, **opts):
        """Take new options without lifting bans.  A new port, protocol or
        parent chain replaces the jump rule (a new parent: the old one's jump
        is removed first, leaving a moment where the chain is not reached);
        a new name moves the bans to the new chain; a new blocktype applies
        to bans made from now on."""
        self._wait_restored()
        new = self._parse(opts)
        with self._lock:
            old, self._opts = self._opts, new
            if old == new:
                return
            for family, c in list(self._chains.items()):
                nc = self._make(family)
                if nc.chain != c.chain:
                    nc.start()
                    nc.ban_many(c.banned())
                    c.stop()
                else:
                    if nc.parent != c.parent:
                        c.unjump()   # leave the old parent chain as it was
                    nc.start()       # (re)places the jump rule
                self._chains[family] = nc

    @property
    def banEpoch(self):
        return self._banEpoch

    def consistencyCheck(self, beforeRepair=None):
        """Check each family's chain against fail2ban's ban list: repair a
        broken layout, and ban again every address fail2ban holds banned
        that the chain lacks (all of them, if the chain itself was lost).
        What cannot be applied now goes to the retry queue."""
        ok = True
        for family in (4, 6):
            with self._lock:
                c = self._chains.get(family)
            want = self._jail_bans(family)
            if c is None and not want:
                continue
            try:
                c = c or self._make(family)
                st = c.check()
                queued = set(self.retry_queue())
                missing = [ip for ip in want if ip not in queued
                           and ip not in set(c.banned())] if st["chain"] else want
            except Exception as e:
                self._logSys.error("[%s] cannot check IPv%d bans: %s", self._jail.name, family, e)
                ok = False
                continue
            if st["ok"] and not missing:
                continue
            ok = False
            if beforeRepair is not None and not beforeRepair():
                continue
            self._logSys.error("[%s] %s (IPv%d) out of step with fail2ban (chain %s, RETURN %s, "
                               "jump %s, %d of %d ban(s) missing): repairing", self._jail.name,
                               c.chain, family, st["chain"], st["return"], st["jump"],
                               len(missing), len(want))
            self._invalidateBanEpoch()
            try:
                c = self._chain(family)
                c.start()
                if missing:
                    c.ban_many(missing)
            except ValueError:
                raise
            except Exception as e:
                self._failed(family, missing, e)
        return ok

    def _invalidateBanEpoch(self):
        # what fail2ban's CommandAction does: tickets of an older epoch get
        # rebanned when they show up again
        try:
            acts = self._jail.actions
            acts.banEpoch += 1
            self._banEpoch = acts.banEpoch
        except AttributeError:
            self._banEpoch += 1

    def _jail_bans(self, family):
        try:
            ips = [str(ip) for ip in self._jail.actions.getBanList()]
        except Exception:
            return []
        return [ip for ip in ips if self._family(ip) == family]


class SmbanIptablesUnavailable(ActionBase):
    """smban-iptables when smban cannot be imported: loads, says so at load
    and at start, refuses every ban; nothing else fails."""

    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        self._error("loaded")

    @staticmethod
    def _why():
        return "cannot import smban (%s)" % IMPORT_ERROR

    def _error(self, when):
        self._logSys.error("[%s] smban-iptables %s but %s: every ban of this jail fails "
                           "until smban is rebuilt for Python %d.%d (%s)",
                           getattr(self._jail, "name", "?"), when, self._why(),
                           sys.version_info[0], sys.version_info[1], sys.executable)

    def start(self):
        self._error("started")

    def ban(self, aInfo):
        raise RuntimeError("smban-iptables cannot ban %s: %s" % (aInfo["ip"], self._why()))

    def reban(self, aInfo):
        return self.ban(aInfo)

    def unban(self, aInfo):
        return True

    def flush(self):
        # nothing was banned by this action: tell fail2ban not to unban one by one
        return True

    def stop(self):
        pass

    def clearAllParams(self):
        pass

    def reload(self, **opts):
        pass

    def consistencyCheck(self, beforeRepair=None):
        return True


Action = SmbanIptables if IMPORT_ERROR is None else SmbanIptablesUnavailable
