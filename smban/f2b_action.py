"""What smban's fail2ban ban actions share: the logic of
actions/smban-iptables.py and actions/smban-nftables.py, whatever holds the
bans in the kernel.

fail2ban loads an action file by path; the file imports the class it
subclasses from here (BanAction) and says, in a few methods, how to make
its backend object for a family (a smban.iptables.Chain, a
smban.nftables.Set) and what only that backend does.  The rest is here,
once:

- one backend object per family, made and started on the family's first
  ban (start() re-adopts what a previous run left, so stop removes it);
- bans fail2ban restores from its database after a restart, applied in
  batches (one transaction for everything queued);
- a ban that fails (the lock held, the kernel refusing) is logged and
  queued, and a thread retries the queue with a growing pause (1 s to
  60 s) until every ban is in; an unban takes its address out of the
  queue; the queue holds at most RETRY_MAX addresses;
- consistencyCheck (fail2ban calls it when a banned address fails again)
  repairs the layout and bans again what fail2ban lists but the kernel
  lacks;
- reload takes new options without lifting bans.

Each ban carries its end (the ticket's time plus its ban time, None for a
permanent ban) through the queues, for a backend that hands the kernel a
timeout (nftables, iptables in set mode): there each element lives what
is left of its ban, and a ban fail2ban prolongs gets its new end.  No
shell is ever run.
"""
import threading
import time

from fail2ban.server.actions import ActionBase

__all__ = ["BanAction", "RETRY_MAX", "RETRY_FIRST", "RETRY_LAST", "ban_end",
           "kernel_timeouts"]


def ban_end(aInfo):
    """The epoch at which fail2ban lifts this ban (the ticket's time plus
    its ban time), or None: a permanent ban, or one fail2ban did not say."""
    try:
        start, length = float(aInfo["time"]), float(aInfo["bantime"])
    except (KeyError, TypeError, ValueError):
        return None
    return None if length < 0 else start + length


def kernel_timeouts(ends, now=None):
    """Element timeouts for bans ending at ends (0: never); a ban already
    past its end lives one second (fail2ban is about to lift it)."""
    now = time.time() if now is None else now
    return [0 if end is None else max(1, round(end - now)) for end in ends]


#: Failed bans waiting for a retry, at most.
RETRY_MAX = 10000
#: The pause between retries grows from the first to the last, in seconds.
RETRY_FIRST, RETRY_LAST = 1.0, 60.0


class BanAction(ActionBase):
    """A fail2ban ban action over one of smban's ban backends.

    A subclass sets ACTION (its name, in log lines), DEFAULTS (its options
    and their defaults; "name" is the jail's), PARTS (what its backend's
    start() and check() call the three parts of the layout), FRESH (what
    start() reports of a layout made from nothing; PARTS by default),
    TIMED (its backend takes kernel timeouts: ban_many(ips, timeout=,
    refresh=)), and defines _make(family) (the backend object of a family,
    not started; a bad option raises ValueError), _label(obj) (its name,
    for log lines) and, where its backend needs them, _check_options(o),
    _replace(family, old, new) and _moved(old, new)."""

    ACTION = "smban"
    DEFAULTS = {}
    PARTS = ("chain", "return", "jump")
    TIMED = False

    @property
    def FRESH(self):
        return self.PARTS

    # The second positional parameter is the action name; fail2ban passes it
    # positionally, so an option called "name" does not collide with it.
    def __init__(self, jail, actname, **opts):
        super().__init__(jail, actname)
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._chains = {}            # family -> the backend object in use
        self._pending = []           # restored (family, ip, end) waiting for a batch
        self._draining = False
        self._retry = {}             # (family, ip) -> end: failed bans, oldest first
        self._retrying = False
        self._stopping = False
        self._banEpoch = 0
        self._opts = self._parse(opts)
        # fail the jail start now on a bad option, not at the first ban
        self._make(4)

    # -- options --

    def _parse(self, opts):
        o = dict(self.DEFAULTS)
        o["name"] = getattr(self._jail, "name", None) or self._name
        for k, v in opts.items():
            if k not in o:
                self._logSys.warning("%s: unknown option %s=%r ignored", self.ACTION, k, v)
                continue
            o[k] = str(v).strip()
        self._check_options(o)
        return o

    # -- what a subclass says of its backend --

    def _check_options(self, o):
        """Refuse (ValueError) options that _make cannot show wrong."""

    def _make(self, family):
        raise NotImplementedError

    @staticmethod
    def _label(obj):
        raise NotImplementedError

    def _ban_many(self, obj, ips, ends):
        """Ban ips (ends: when each ban ends, None: never) in one
        transaction; the number newly banned."""
        if self.TIMED:
            return obj.ban_many(ips, timeout=kernel_timeouts(ends))
        return obj.ban_many(ips)

    @property
    def _prolongable(self):
        # fail2ban calls prolong() only on an action that says it can
        return self.TIMED

    def prolong(self, aInfo):
        """fail2ban made a ban longer: its element gets the new end."""
        if not self.TIMED:
            return
        ip = str(aInfo["ip"])
        family = self._family(ip)
        end = ban_end(aInfo)
        try:
            self._chain(family).ban_many([ip], timeout=kernel_timeouts([end]), refresh=True)
        except ValueError:
            raise
        except Exception as e:
            self._failed(family, [ip], [end], e)

    def _replace(self, family, old, new):
        """reload() with new options that keep the backend's name: new
        takes over from old (which stays started); start new."""
        new.start()

    # -- the backend objects --

    def _chain(self, family):
        """The started backend object of a family, made on first use."""
        with self._lock:
            c = self._chains.get(family)
            if c is None:
                c = self._make(family)
                repaired = c.start()
                if repaired and tuple(repaired) != tuple(self.FRESH):
                    self._logSys.warning("[%s] %s (IPv%d): repaired %s", self._jail.name,
                                         self._label(c), family, ", ".join(repaired))
                self._chains[family] = c
            return c

    @staticmethod
    def _family(ip):
        return 6 if ":" in ip else 4

    # -- restored bans: one batch per drain --

    def _queue_restored(self, family, ip, end):
        with self._cv:
            self._pending.append((family, ip, end))
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
                bans = [(ip, end) for f, ip, end in batch if f == family]
                if bans:
                    self._ban_batch(family, bans)

    def _ban_batch(self, family, bans):
        ips, ends = [ip for ip, _ in bans], [end for _, end in bans]
        try:
            c = self._chain(family)
            n = self._ban_many(c, ips, ends)
            self._logSys.info("[%s] %s: %d restored ban(s) applied in one commit (%d new)",
                              self._jail.name, self._label(c), len(ips), n)
        except ValueError:
            # one unacceptable address: apply the others one by one
            for ip, end in bans:
                try:
                    self._ban_many(self._chain(family), [ip], [end])
                except ValueError as e:
                    self._logSys.error("[%s] cannot ban %s: %s", self._jail.name, ip, e)
                except Exception as e:
                    self._failed(family, [ip], [end], e)
        except Exception as e:
            self._failed(family, ips, ends, e)

    # -- failed bans: retried until they are in the table --

    def _failed(self, family, ips, ends, e):
        """Log a failed ban and queue its addresses for the retry thread."""
        self._logSys.error("[%s] ban of %s failed (%s): queued, retried until it is "
                           "in the table", self._jail.name,
                           ips[0] if len(ips) == 1 else "%d addresses" % len(ips), e)
        with self._cv:
            for ip, end in zip(ips, ends):
                self._retry.pop((family, ip), None)
                self._retry[(family, ip)] = end
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
                batch = list(self._retry.items())
            done, error = 0, None
            for family in (4, 6):
                ips = [ip for (f, ip), _ in batch if f == family]
                ends = [end for (f, _), end in batch if f == family]
                if not ips:
                    continue
                try:
                    self._ban_many(self._chain(family), ips, ends)
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
        """Re-adopt what a previous run left (so stop removes it); other
        families' layouts are made on their first ban."""
        for family in (4, 6):
            try:
                st = self._make(family).check()
            except Exception as e:
                self._logSys.debug("%s IPv%d: %s", self.ACTION, family, e)
                continue
            if st[self.PARTS[0]]:
                self._chain(family)

    def ban(self, aInfo):
        ip = str(aInfo["ip"])
        family = self._family(ip)
        try:
            restored = aInfo["restored"]
        except KeyError:
            restored = False
        if restored:
            self._queue_restored(family, ip, ban_end(aInfo))
            return True
        return self._ban_now(family, ip, ban_end(aInfo))

    def _ban_now(self, family, ip, end):
        try:
            self._ban_many(self._chain(family), [ip], [end])
        except ValueError:
            raise                    # an address the backend refuses: fail2ban logs it
        except Exception as e:       # lock, kernel, parent chain: retried
            self._failed(family, [ip], [end], e)
        return True

    def reban(self, aInfo):
        ip = str(aInfo["ip"])
        return self._ban_now(self._family(ip), ip, ban_end(aInfo))

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
        whole by reload, and the layouts (with their bans) are kept."""

    def reload(self, **opts):
        """Take new options without lifting bans: a new name moves the bans
        to the new layout; otherwise the backend's _replace applies the
        rest (new ports, protocol...)."""
        self._wait_restored()
        new = self._parse(opts)
        with self._lock:
            old, self._opts = self._opts, new
            if old == new:
                return
            for family, c in list(self._chains.items()):
                nc = self._make(family)
                if self._label(nc) != self._label(c):
                    nc.start()
                    moved = c.banned()
                    # each with its end, as fail2ban's ban list gives it
                    self._ban_many(nc, moved, self._jail_ends(moved))
                    c.stop()
                else:
                    self._replace(family, c, nc)
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
                           and ip not in set(c.banned())] if st[self.PARTS[0]] else want
            except Exception as e:
                self._logSys.error("[%s] cannot check IPv%d bans: %s", self._jail.name, family, e)
                ok = False
                continue
            if st["ok"] and not missing:
                continue
            ok = False
            if beforeRepair is not None and not beforeRepair():
                continue
            self._logSys.error("[%s] %s (IPv%d) out of step with fail2ban (%s, %d of %d ban(s) "
                               "missing): repairing", self._jail.name, self._label(c), family,
                               ", ".join("%s %s" % (p, st[p]) for p in self.PARTS),
                               len(missing), len(want))
            self._invalidateBanEpoch()
            ends = self._jail_ends(missing)
            try:
                c = self._chain(family)
                c.start()
                if missing:
                    self._ban_many(c, missing, ends)
            except ValueError:
                raise
            except Exception as e:
                self._failed(family, missing, ends, e)
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

    def _jail_ends(self, ips):
        """When fail2ban lifts each of these bans (None: unknown or never),
        from its ban list (iterated: a snapshot of the tickets, nothing
        taken out of it)."""
        if not ips:
            return []
        try:
            bm = self._jail.actions.banManager
            default = bm.getBanTime()
            tickets = {str(t.getID()): t for t in bm}
        except Exception:
            return [None] * len(ips)
        ends = []
        for ip in ips:
            t = tickets.get(ip)
            try:
                length = t.getBanTime(default)
                ends.append(None if length is None or length < 0 else t.getTime() + length)
            except Exception:
                ends.append(None)
        return ends

    def _jail_bans(self, family):
        try:
            ips = [str(ip) for ip in self._jail.actions.getBanList()]
        except Exception:
            return []
        return [ip for ip in ips if self._family(ip) == family]
