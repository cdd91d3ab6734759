"""The lab's timeline: what each client did, the lines sendmail wrote with
smban's verdict on each, and fail2ban's bans, in the order they happened."""
import re
import time

import smban
from lab.common import CLIENTS


class Timeline:
    """Prints (through `out`) and keeps the timeline of one run.  Owns
    smban's classifier for the verdicts and every (line, Event or None)
    pair.  t0: the monotonic time the lab started; lines are read from
    `syslog` (a SyslogReceiver), bans from `fail2ban` (a Fail2banServer)."""

    def __init__(self, out, mode, t0, syslog, fail2ban):
        self.out, self.mode, self.t0 = out, mode, t0
        self.syslog, self.fail2ban = syslog, fail2ban
        self.mark = time.monotonic()     # when the output last ended
        self.lines = []                  # printed lines
        self.classifier = smban.Classifier(mode="normal")
        self.verdicts = []               # (line, Event or None)
        self._shown_lines = 0
        self._shown_bans = 0

    def _print(self, line):
        self.lines.append(line)
        self.out(line)

    def say(self, text):
        """A client's action, stamped with the time it began: the end of the
        previous output (the scenario is sequential)."""
        self._print("%6.1fs  %s" % (self.mark - self.t0, text))
        self.mark = time.monotonic()

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
            self._print("           " + msg)
            if ev is not None:
                self._print(self._verdict(ev))
        self._emit_same(same)
        self.mark = time.monotonic()
        self._show_bans()

    def _verdict(self, ev):
        """smban's verdict on a line, as printed under it."""
        v = "%s %s%s" % (ev.kind, ev.name, ": counts for %s" % ev.ip if ev.failures else "")
        label = "smban:" if self.mode == "smban" else "(smban would say:"
        return "               %s %s%s" % (label, v, "" if self.mode == "smban" else ")")

    def _show_bans(self):
        """fail2ban's bans logged since last time, one line each."""
        bans = self.fail2ban.bans(times=True)
        for jail, ip, t in bans[self._shown_bans:]:
            who = [c.name for c in CLIENTS if c.addr == ip]
            self._print("%6.1fs  fail2ban [%s]: Ban %s%s" % (
                t, jail, ip, " (%s)" % who[0] if who else ""))
        self._shown_bans = len(bans)

    def _emit_same(self, n):
        """How many lines like the last one shown were left out."""
        if n:
            self._print("           (and %d more line%s like it, from as many sessions)" % (
                n, "s" if n > 1 else ""))
