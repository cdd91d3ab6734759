"""The Debian package (make deb-test, after make deb): installed with apt
as an administrator would, on a machine without a make install copy.
What it installs, that fail2ban runs the installed smban with no source
tree on sys.path (the end-to-end scenarios), that a reinstall keeps an edited
conffile, that it and make install refuse each other, and that purge
leaves no file of it and fail2ban still starts.

The tests change the machine (they install and purge a package), so they
run only when SMBAN_DEB names the package file; in file order, the last
one purges it."""
import fnmatch
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEB = os.environ.get("SMBAN_DEB", "")
SITE = "/usr/lib/python3/dist-packages/smban"
EDIT = "\n# edited by the administrator\n"
CONFFILES = ["/etc/fail2ban/filter.d/smban.conf", "/etc/fail2ban/action.d/smban-engine.py",
             "/etc/fail2ban/action.d/smban-iptables.py",
             "/etc/fail2ban/action.d/smban-nftables.py",
             "/etc/fail2ban/action.d/smban-crowdsec.py"]
MAKE_INSTALL_MANIFEST = "/usr/local/share/smban/manifest"

pytestmark = [
    pytest.mark.skipif(not DEB, reason="SMBAN_DEB names no package (make deb-test sets it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: needs root"),
]


def run(*cmd, check=True, **kw):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    env.pop("PYTHONPATH", None)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                       cwd=kw.pop("cwd", "/"), **kw)
    if check:
        assert r.returncode == 0, (cmd, r.stdout[-3000:], r.stderr[-3000:])
    return r


def apt_install(path, *extra, check=True):
    return run("apt-get", "install", "-y", "-q", "--no-install-recommends", *extra,
               os.path.abspath(path), check=check)


def package_status():
    r = run("dpkg-query", "-W", "-f=${db:Status-Status}", "smban", check=False)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def test_the_machine_starts_without_smban():
    assert os.path.isfile(DEB), DEB
    assert package_status() in ("unknown", "not-installed"), \
        "the package is already installed: 'apt-get purge smban' first"
    assert not os.path.exists(MAKE_INSTALL_MANIFEST), \
        "a make install copy is here: 'make uninstall' first"


def test_refused_over_a_make_install_copy():
    os.makedirs(os.path.dirname(MAKE_INSTALL_MANIFEST), exist_ok=True)
    with open(MAKE_INSTALL_MANIFEST, "w") as f:
        f.write("")
    try:
        r = apt_install(DEB, check=False)
        assert r.returncode != 0
        assert "make uninstall" in r.stdout + r.stderr, r.stdout + r.stderr
        assert package_status() in ("unknown", "not-installed", "config-files")
        assert not os.path.exists(SITE)
    finally:
        os.remove(MAKE_INSTALL_MANIFEST)
        os.rmdir(os.path.dirname(MAKE_INSTALL_MANIFEST))
    # dpkg may remember the refused unpack's conffiles: forget it all
    run("dpkg", "--purge", "smban", check=False)


def test_install_puts_each_file_in_its_place():
    apt_install(DEB)
    assert package_status() == "installed"
    files = run("dpkg", "-L", "smban").stdout.split()
    for f in CONFFILES + ["/usr/bin/smban", "/usr/share/man/man1/smban.1.gz",
                          "/usr/share/doc/smban/copyright",
                          "/usr/share/doc/smban/examples/jail.local",
                          SITE + "/__init__.py", SITE + "/data/demo-maillog"]:
        assert f in files, f
    assert any(fnmatch.fnmatch(f, SITE + "/_core.cpython-*.so") for f in files)
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "smban").stdout
    for f in CONFFILES:
        assert f in conffiles, (f, conffiles)
    # no jail enabled by the package: jail.local and jail.d are untouched
    assert not [f for f in files if "/jail." in f and f.startswith("/etc/")]


def test_installed_command_runs_without_the_source_tree():
    r = run(sys.executable, "-I", "-c", "import smban; print(smban.__file__)")
    assert r.stdout.strip() == SITE + "/__init__.py"
    r = run("smban", "--help")
    assert r.stdout.startswith("usage: smban ")
    for command in ("classify", "audit", "export-filter", "bans", "demo"):
        assert command in r.stdout
    r = run("smban", "demo")
    assert "109.172.142.229" in r.stdout
    r = run("smban", "export-filter")
    with open("/etc/fail2ban/filter.d/smban.conf") as f:
        assert r.stdout == f.read()


def test_make_install_refuses_over_the_package():
    r = run(sys.executable, os.path.join(ROOT, "tools", "install.py"), "check", check=False)
    assert r.returncode != 0
    assert "Debian package smban is installed" in r.stderr + r.stdout, r.stderr


def test_fail2ban_runs_the_installed_smban():
    """Every end-to-end scenario on Debian's fail2ban (the story in both
    modes, old sendmail, a modified filter, unban/reload/restart, the
    systemd backend, the red team), with the filter and actions the
    package installed and smban imported from the package (the story
    checks the extension the server loaded); none may skip."""
    env = dict(os.environ, SMBAN_INSTALLED="1")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "pytests/test_fail2ban_e2e.py", "-k", "f2b-1.0.2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:]
    summary = r.stdout.strip().splitlines()[-1]
    m = re.match(r"(\d+) passed, \d+ deselected in ", summary)
    assert m and int(m.group(1)) >= 10, summary


def test_a_reinstall_keeps_an_edited_conffile():
    path = "/etc/fail2ban/action.d/smban-iptables.py"
    with open(path, "a") as f:
        f.write(EDIT)
    apt_install(DEB, "--reinstall")
    with open(path) as f:
        assert f.read().endswith(EDIT)
    assert package_status() == "installed"


def test_purge_leaves_nothing_and_fail2ban_still_starts(tmp_path):
    files = run("dpkg", "-L", "smban").stdout.split()
    run("apt-get", "purge", "-y", "-q", "smban")
    assert package_status() in ("unknown", "not-installed")
    left = [f for f in files if os.path.isfile(f) or os.path.islink(f)]
    assert not left, left
    # directories of its own, byte code included
    for d in (SITE, "/usr/share/doc/smban"):
        assert not os.path.exists(d), d
    for f in CONFFILES:        # the edited one too: purge removes conffiles
        assert not os.path.exists(f), f
    fail2ban_starts(tmp_path)


def fail2ban_starts(tmp_path):
    """fail2ban starts, stops and bans nothing with the configuration left
    in /etc/fail2ban: a copy of it, with its own socket, log and database,
    the distribution's default jails off (this machine may have no sshd
    log) and one stock sendmail jail on an empty log, in a network
    namespace of its own."""
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    (conf / "fail2ban.local").write_text(
        "[Definition]\nlogtarget = %(d)s/f2b.log\nsocket = %(d)s/f2b.sock\n"
        "pidfile = %(d)s/f2b.pid\ndbfile = %(d)s/f2b.sqlite3\n" % {"d": tmp_path})
    shutil.rmtree(conf / "jail.d", ignore_errors=True)
    (conf / "jail.d").mkdir()
    (tmp_path / "mail.log").write_text("")
    (conf / "jail.local").write_text(
        "[sshd]\nenabled = false\n[sendmail-auth]\nenabled = true\nbackend = polling\n"
        "logpath = %s\n" % (tmp_path / "mail.log"))
    client = "fail2ban-client -c %s" % conf
    r = run("unshare", "-n", "sh", "-c", "%s start && %s status && %s stop" % (client, client, client),
            check=False)
    assert r.returncode == 0, r.stdout + r.stderr + (tmp_path / "f2b.log").read_text()
    assert "sendmail-auth" in r.stdout, r.stdout
