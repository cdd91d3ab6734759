"""make cluster: two MX hosts sharing one ban list through CrowdSec's Local
API, in network namespaces, torn down at the end.

    python3 -m lab.cluster [--quiet]        (root; make cluster-deps lab-deps)

Four hosts on one link (a bridge in a namespace of its own):
    mx1   192.0.2.1   a real sendmail, fail2ban with the smban jail banning
                      through smban-iptables and sharing through smban-crowdsec
    mx2   192.0.2.2   a real sendmail and CrowdSec's firewall bouncer
                      (nftables), which enforces the LAPI's decisions
    lapi  192.0.2.10  CrowdSec's Local API (sqlite, no Central API)
    net   192.0.2.254 the internet: 20 password guessers (203.0.113.101-120)
                      and the bank's MTA (198.51.100.25)
The guessers try passwords on mx1 only.  The table shows each refused on
mx1 and, soon after, on mx2, which never saw it; the LAPI stopped in the
middle of the attack and started again loses no ban; an unban on mx1
reaches mx2; the bank delivers to both before and after.  Nothing of the
machine (its firewall, its crowdsec, its mail system) is touched.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

from lab import netns
from lab.clients import SmtpClients
from lab.common import ACTIONS, BY_NAME, Client, Processes, USER, plain_env, run
from lab.crowdsec import LapiServer, why_unavailable as crowdsec_unavailable
from lab.fail2ban_server import Fail2banServer
from lab.network import Network, ReverseDNS
from lab.sendmail import Sendmail

MX1, MX2, LAPI, GATEWAY = "192.0.2.1", "192.0.2.2", "192.0.2.10", "192.0.2.254"
MX1_6, MX2_6, GATEWAY_6 = "2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::fe"
BOTS = [Client("bot%02d" % i, "203.0.113.%d" % (100 + i), None, "password guesser")
        for i in range(1, 21)]
BANK = BY_NAME["bank-mta"]
#: how often mx2's bouncer asks the LAPI for new decisions (its default is 10 s)
BOUNCER_EVERY = "1s"


def why_unavailable():
    from lab.testbed import why_unavailable as lab_unavailable
    return lab_unavailable() or crowdsec_unavailable() or (
        None if shutil.which("crowdsec-firewall-bouncer")
        else "crowdsec-firewall-bouncer is not installed (make cluster-deps)")


class ClusterNetwork(Network):
    """The four namespaces and the bridge joining them (in a fifth)."""

    def build(self):
        hub = netns.Netns("clhub")
        self.nets.append(hub)
        run("ip", "-n", hub.name, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", hub.name, "link", "set", "br0", "up")
        self.hosts = {}
        plan = [("mx1", [MX1 + "/24"], [MX1_6 + "/64"]),
                ("mx2", [MX2 + "/24"], [MX2_6 + "/64"]),
                ("lapi", [LAPI + "/24"], []),
                ("net", [GATEWAY + "/24"] + [c.addr + "/32" for c in BOTS + [BANK]],
                 [GATEWAY_6 + "/64"])]
        for k, (name, v4, v6) in enumerate(plan):
            ns = netns.Netns("cl" + name)
            self.nets.append(ns)
            self.hosts[name] = ns
            outer, inner = "c%dh" % k, "c%d" % k
            run("ip", "-n", hub.name, "link", "add", outer, "type", "veth", "peer", "name", inner,
                "netns", ns.name)
            run("ip", "-n", hub.name, "link", "set", outer, "master", "br0", "up")
            run("ip", "-n", ns.name, "link", "set", "lo", "up")
            run("ip", "-n", ns.name, "link", "set", inner, "up")
            for a in v4:
                run("ip", "-n", ns.name, "addr", "add", a, "dev", inner)
            for a in v6:
                run("ip", "-n", ns.name, "-6", "addr", "add", a, "dev", inner, "nodad")
            if name != "net":
                for net in ("198.51.100.0/24", "203.0.113.0/24"):
                    run("ip", "-n", ns.name, "route", "add", net, "via", GATEWAY)
        self.server = self.hosts["mx1"]
        self.internet = self.hosts["net"]


class Mx:
    """One MX host: its directory, sendmail, name server, and what guards it."""

    def __init__(self, base, name, ns, addr4, addr6, processes):
        self.name, self.ns, self.addr4 = name, ns, addr4
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir, mode=0o700)
        self.sendmail = Sendmail(self.dir, ns, processes, addr4=addr4, addr6=addr6)
        self.sendmail.write_files()
        self.sendmail.open_log()
        self.dns = ReverseDNS(ns)
        self.sendmail.start()

    def close(self):
        self.dns.close()
        self.sendmail.close()


def percentile(values, q):
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]


class Cluster:
    """Set up, play, tear down (a context manager, like testbed.Lab)."""

    def __init__(self, out=print):
        self.out = out
        self.t0 = time.monotonic()
        self.processes = Processes()
        self.network = ClusterNetwork()
        self.dir = None
        self.mx1 = self.mx2 = self.lapi = self.fail2ban = None
        self._torn = False

    def say(self, text):
        self.out("%6.1fs  %s" % (time.monotonic() - self.t0, text))

    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()

    @property
    def nets(self):
        return self.network.nets

    def setup(self):
        base = "/run" if os.access("/run", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="smban-cluster-", dir=base)
        os.chmod(self.dir, 0o700)
        self.network.build()
        hosts = self.network.hosts
        self.lapi = LapiServer(os.path.join(self.dir, "lapi"), LAPI + ":8080")
        self.lapi.setup()
        with hosts["lapi"].entered():
            self.lapi.start()
        creds = self.lapi.credentials(os.path.join(self.dir, "mx1-lapi.yaml"), "mx1")
        self.mx1 = Mx(self.dir, "mx1", hosts["mx1"], MX1, MX1_6, self.processes)
        self.mx2 = Mx(self.dir, "mx2", hosts["mx2"], MX2, MX2_6, self.processes)
        engine = os.path.isfile(os.path.join(ACTIONS, "smban-engine.py"))
        self.fail2ban = Fail2banServer(
            self.mx1.dir, hosts["mx1"], self.processes, "smban", engine, time.time(), "iptables",
            extra_actions=['smban-crowdsec.py[credentials="%s", queue="%s/crowdsec.queue", '
                           'timeout=2]' % (creds, self.mx1.dir)])
        self.fail2ban.start()
        self._start_bouncer(hosts["mx2"])
        self.clients = {mx.name: SmtpClients(self.network.internet, mx.addr4, None, BOTS + [BANK])
                        for mx in (self.mx1, self.mx2)}
        self.say("cluster up in %s: mx1 %s (sendmail, fail2ban: smban-iptables + "
                 "smban-crowdsec), mx2 %s (sendmail, crowdsec-firewall-bouncer), LAPI %s"
                 % (self.dir, MX1, MX2, LAPI))

    def _start_bouncer(self, ns):
        d = os.path.join(self.dir, "bouncer")
        os.makedirs(d)
        cfg = os.path.join(d, "bouncer.yaml")
        with open(cfg, "w") as f:
            f.write("mode: nftables\npid_dir: %(d)s/\nupdate_frequency: %(every)s\n"
                    "daemonize: false\nlog_mode: file\nlog_dir: %(d)s/\nlog_level: info\n"
                    "api_url: http://%(lapi)s:8080/\napi_key: %(key)s\n"
                    "insecure_skip_verify: false\ndisable_ipv6: false\ndeny_action: REJECT\n"
                    "deny_log: false\nsupported_decisions_types:\n  - ban\n"
                    "nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n"
                    "    table: crowdsec\n    chain: crowdsec-chain\n  ipv6:\n    enabled: true\n"
                    "    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n"
                    "prometheus:\n  enabled: false\n"
                    % {"d": d, "every": BOUNCER_EVERY, "lapi": LAPI, "key": self.lapi.bouncer_key})
        self.bouncer = self.processes.spawn(
            ["ip", "netns", "exec", ns.name, "crowdsec-firewall-bouncer", "-c", cfg],
            os.path.join(d, "bouncer.out"), plain_env())
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.bouncer.poll() is not None:
                break
            if ns.call(lambda: netns.run("nft", "list", "tables", check=False).stdout).count(
                    "crowdsec"):
                return
            time.sleep(0.2)
        raise RuntimeError("the bouncer did not start: %s" % open(
            os.path.join(d, "bouncer.out"), errors="replace").read()[-1500:])

    def teardown(self):
        if self._torn:
            return
        self._torn = True
        if self.fail2ban:
            self.fail2ban.stop()
        if self.lapi:
            self.lapi.stop()
        self.processes.kill_all()
        self.network.kill_inside()
        self.network.close()
        for mx in (self.mx1, self.mx2):
            if mx:
                mx.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- the scenario ----

    def refused(self, mx, c):
        """Whether mx refuses a connection from c now.  A connection that
        times out is not refused: sendmail's listen queue (10) overflows
        under the guessers' probes and the kernel drops the SYN."""
        try:
            s = self.clients[mx].connect(c, timeout=2)
        except OSError:
            return False
        if s is None:
            return True
        s.close()
        return False

    def wait(self, mx, c, refused=True, limit=30.0):
        """Poll every 100 ms until c is refused (or accepted) by mx: the
        monotonic time it was, or None."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.refused(mx, c) == refused:
                return time.monotonic()
            time.sleep(0.1)
        return None

    def attack(self, bots, row, follow=True):
        """Each bot guesses passwords on mx1 (three AUTH LOGIN failures),
        concurrently; row[bot] gets when mx1 refused it and, with follow,
        when mx2 did and the seconds between."""
        def one(c):
            tries = [("LOGIN", USER, "guess-%s-%d" % (c.name, i)) for i in range(3)]
            last, what = self.clients["mx1"].auth_tries(c, tries)
            r = row[c.name] = {"tries": what, "mx1": self.wait("mx1", c) if last else None}
            if follow and r["mx1"]:
                r["mx2"] = self.wait("mx2", c)
                r["latency"] = r["mx2"] - r["mx1"] if r["mx2"] else None
        ts = [threading.Thread(target=one, args=(c,)) for c in bots]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def reach_mx2(self, bots, row, since_key):
        """When mx2 refused each bot, and the seconds since since_key."""
        def one(c):
            t = self.wait("mx2", c)
            r = row[c.name]
            r["mx2"] = t
            r["latency"] = (t - r[since_key]) if t is not None and r.get(since_key) else None
        ts = [threading.Thread(target=one, args=(c,)) for c in bots]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def play(self):
        row = {}
        bank = {mx: self.clients[mx].deliver(BANK, 1) for mx in ("mx1", "mx2")}
        self.say("bank-mta delivers to both: mx1 %s, mx2 %s" % (bank["mx1"], bank["mx2"]))

        first, outage, last = BOTS[:10], BOTS[10:15], BOTS[15:]
        self.attack(first, row)
        lat = [row[c.name]["latency"] for c in first if row[c.name].get("latency")]
        self.say("bot01-bot10 guessed passwords on mx1: %d refused there, %d on mx2 after "
                 "%s s (median)" % (sum(1 for c in first if row[c.name]["mx1"]), len(lat),
                                    _fmt(statistics.median(lat) if lat else None)))

        self.lapi.stop()
        self.say("the LAPI stops")
        self.attack(outage, row, follow=False)
        time.sleep(2)
        during = {c.name: self.refused("mx2", c) for c in outage}
        self.say("bot11-bot15 during the outage: refused on mx1 %d, on mx2 %d" % (
            sum(1 for c in outage if row[c.name].get("mx1")), sum(during.values())))
        with self.network.hosts["lapi"].entered():
            self.lapi.start()
        restart = time.monotonic()
        self.say("the LAPI starts again")
        for c in outage:
            row[c.name]["restart"] = restart
        self.reach_mx2(outage, row, since_key="restart")

        self.attack(last, row)

        self.fail2ban.client("set", "smban", "unbanip", BOTS[0].addr)
        t = time.monotonic()
        back = self.wait("mx2", BOTS[0], refused=False)
        unban = (back - t) if back else None
        self.say("bot01 unbanned on mx1: mx2 lets it in again after %s s" % _fmt(unban))
        bank2 = {mx: self.clients[mx].deliver(BANK, 2) for mx in ("mx1", "mx2")}
        lat = [row[c.name]["latency"] for c in first + last if row[c.name].get("latency")]
        return {"bots": row, "during_outage_refused_mx2": during, "bank": [bank, bank2],
                "unban_latency": unban, "latencies": lat,
                "p50": percentile(lat, 50), "p95": percentile(lat, 95),
                "decisions": self.lapi_decisions()}

    def propagation(self):
        """The benchmark's run: all 20 guessers at once, each followed from
        mx1's refusal to mx2's; the latencies in seconds (None: never)."""
        row = {}
        self.attack(BOTS, row)
        return [row[c.name].get("latency") for c in BOTS]

    def lapi_decisions(self):
        with self.network.hosts["lapi"].entered():
            return self.lapi.decisions()


def _fmt(v):
    return "%.2f" % v if v is not None else "never"


def table(res):
    lines = ["%-8s %-15s | %-24s | %-8s | %s" % ("client", "address", "mx1 (smban)",
                                                  "mx2", "refused on mx2 after")]
    for c in BOTS:
        r = res["bots"][c.name]
        since = "the LAPI restart" if "restart" in r else "mx1's refusal"
        lines.append("%-8s %-15s | %-24s | %-8s | %s" % (
            c.name, c.addr, "refused" if r.get("mx1") else "NOT refused",
            "refused" if r.get("mx2") else "accepted",
            ("%s s after %s" % (_fmt(r["latency"]), since)) if r.get("latency") is not None
            else "-"))
    b1, b2 = res["bank"]
    lines.append("%-8s %-15s | %-24s | %-8s | %s" % ("bank", BANK.addr, "delivered x%d" % (
        [b1["mx1"], b2["mx1"]].count("delivered")), "delivered x%d" % (
        [b1["mx2"], b2["mx2"]].count("delivered")), "-"))
    lines.append("")
    lines.append("propagation mx1 -> LAPI -> mx2 over %d guessers: p50 %s s, p95 %s s "
                 "(the bouncer polls every %s); unban reached mx2 in %s s" % (
                     len(res["latencies"]), _fmt(res["p50"]), _fmt(res["p95"]), BOUNCER_EVERY,
                     _fmt(res["unban_latency"])))
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m lab.cluster",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quiet", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    why = why_unavailable()
    if why:
        print("make cluster: cannot run: %s" % why, file=sys.stderr)
        return 2
    out = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    with Cluster(out=out) as cl:
        res = cl.play()
    print()
    print("\n".join(table(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
