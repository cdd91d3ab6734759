"""A private CrowdSec Local API (LAPI) for tests and the cluster: Debian's
crowdsec binary run with a configuration of its own (sqlite in a
temporary directory, the Central API off, no log acquisition), in the
network namespace of whoever starts it.  Nothing of the machine's own
crowdsec (/etc/crowdsec, its service, its database) is read or changed.

    lapi = LapiServer(directory, "127.0.0.1:8080")
    lapi.setup()            # config, database, machine "smban-<host>", bouncer key
    lapi.start()            # crowdsec -no-cs, returns once it answers
    lapi.credentials(path, login)   # a machine's local_api_credentials.yaml
    lapi.decisions()        # what a bouncer is told: [{value, scenario, origin...}]
    lapi.stop()
"""
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request

PROFILES = "/etc/crowdsec/profiles.yaml"


def why_unavailable():
    """None when a LAPI can run here, else why not."""
    for tool in ("crowdsec", "cscli"):
        if not shutil.which(tool):
            return "%s is not installed (Debian: apt-get install crowdsec)" % tool
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    return None


class LapiServer:
    """One LAPI process and its private configuration under directory."""

    def __init__(self, directory, listen="127.0.0.1:8080"):
        self.dir = os.path.abspath(directory)
        self.listen = listen
        self.url = "http://%s/" % listen
        self.bouncer_key = secrets.token_hex(16)
        self.proc = None

    def _config(self):
        d = self.dir
        return ("common:\n  daemonize: false\n  log_media: file\n  log_dir: %(d)s/\n"
                "  log_level: info\n"
                "config_paths:\n  config_dir: %(d)s/\n  data_dir: %(d)s/data/\n"
                "  simulation_path: %(d)s/simulation.yaml\n  hub_dir: %(d)s/hub/\n"
                "  index_path: %(d)s/hub/.index.json\n  notification_dir: %(d)s/notifications/\n"
                "  plugin_dir: /usr/lib/crowdsec/plugins/\n"
                "db_config:\n  type: sqlite\n  db_path: %(d)s/data/crowdsec.db\n"
                "  use_wal: false\n"
                "api:\n  client:\n    credentials_path: %(d)s/local_api_credentials.yaml\n"
                "  server:\n    listen_uri: %(listen)s\n    profiles_path: %(d)s/profiles.yaml\n"
                "    trusted_ips: [127.0.0.1]\n"
                "prometheus:\n  enabled: false\n" % {"d": d, "listen": self.listen})

    def cscli(self, *args, check=True):
        return subprocess.run(["cscli", "-c", os.path.join(self.dir, "config.yaml"), *args],
                              capture_output=True, text=True, check=check, timeout=60)

    def setup(self):
        """The configuration, an empty database, and a bouncer key."""
        d = self.dir
        for sub in ("data", "hub", "notifications"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write(self._config())
        shutil.copy(PROFILES, os.path.join(d, "profiles.yaml"))
        with open(os.path.join(d, "simulation.yaml"), "w") as f:
            f.write("simulation: false\n")
        with open(os.path.join(d, "hub", ".index.json"), "w") as f:
            f.write("{}")
        # cscli's own machine (decisions made by hand go through the LAPI)
        self.cscli("machines", "add", "cscli-local", "--auto", "--force", "-f",
                   os.path.join(d, "local_api_credentials.yaml"))
        self.cscli("bouncers", "add", "smban-test-bouncer", "-k", self.bouncer_key)

    def credentials(self, path, login, password=None):
        """Register machine `login` and write its credentials file."""
        password = password or secrets.token_hex(16)
        self.cscli("machines", "add", login, "--password", password, "--force", "-f", path)
        with open(path, "w") as f:
            f.write("url: %s\nlogin: %s\npassword: %s\n" % (self.url, login, password))
        return path

    def start(self, timeout=20):
        """Start the LAPI (in the caller's namespace); returns once it answers."""
        log = open(os.path.join(self.dir, "lapi.out"), "ab")
        self.proc = subprocess.Popen(["crowdsec", "-c", os.path.join(self.dir, "config.yaml"),
                                      "-no-cs"], stdout=log, stderr=log)
        log.close()
        host, port = self.listen.rsplit(":", 1)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("crowdsec exited: %s" % self.log()[-1500:])
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the LAPI did not answer in %d s: %s" % (timeout, self.log()[-1500:]))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self):
        try:
            with open(os.path.join(self.dir, "crowdsec_api.log"), errors="replace") as f:
                api = f.read()
        except OSError:
            api = ""
        try:
            with open(os.path.join(self.dir, "lapi.out"), errors="replace") as f:
                return f.read() + api
        except OSError:
            return api

    def decisions(self):
        """The active decisions, as a bouncer gets them (GET /v1/decisions)."""
        req = urllib.request.Request(self.url + "v1/decisions",
                                     headers={"X-Api-Key": self.bouncer_key,
                                              "User-Agent": "crowdsec-firewall-bouncer/smban"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null") or []

    def add_decision(self, ip, duration="1h", reason="by hand"):
        """A decision made with cscli (origin cscli), as an operator would."""
        self.cscli("decisions", "add", "--ip", ip, "--duration", duration, "--reason", reason)
