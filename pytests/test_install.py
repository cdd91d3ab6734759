"""make install / make uninstall (tools/install.py), staged with DESTDIR
into a temporary directory: what lands where, that the installed package
imports from there, that jail files are never touched, that uninstall
removes exactly what install added, and the messages for missing
prerequisites."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import smban
from smban.filter import export_filter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "install.py")
# the smban under test (the source tree's, or the sanitizer build)
PKG_DIR = os.path.dirname(os.path.abspath(smban.__file__))
SITE = "usr/local/lib/python%d.%d/dist-packages" % sys.version_info[:2]


def tool(*args, **kw):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          timeout=120, **kw)


def files_under(d):
    return sorted(os.path.relpath(os.path.join(p, f), d)
                  for p, _, fs in os.walk(d) for f in fs)


@pytest.fixture
def stage(tmp_path):
    """A DESTDIR holding an operator's jail files, which must survive."""
    d = tmp_path / "stage"
    (d / "etc/fail2ban/jail.d").mkdir(parents=True)
    (d / "etc/fail2ban/jail.local").write_text("[sshd]\nenabled = true\n")
    (d / "etc/fail2ban/jail.d/mine.conf").write_text("[x]\n")
    (d / "etc/fail2ban/jail.conf").write_text("# stock\n")
    return d


def test_install_then_uninstall_leaves_only_what_was_there(stage):
    before = files_under(stage)
    r = tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR)
    assert r.returncode == 0, r.stderr
    assert "[smban]" in r.stdout and "smban-engine.py" in r.stdout   # the jail.local snippet
    after = files_under(stage)
    for f in ("etc/fail2ban/filter.d/smban.conf", "etc/fail2ban/action.d/smban-engine.py",
              "etc/fail2ban/action.d/smban-iptables.py",
              "etc/fail2ban/action.d/smban-nftables.py",
              "etc/fail2ban/action.d/smban-crowdsec.py", SITE + "/smban/__init__.py",
              SITE + "/smban/engine.py", "usr/local/share/smban/manifest"):
        assert f in after, f
    for ext in ("_core", "_iptc", "_nft"):     # the classifier and the ban backends
        assert any(f.startswith(SITE + "/smban/%s." % ext) and f.endswith(".so")
                   for f in after), ext
    assert (stage / "etc/fail2ban/filter.d/smban.conf").read_text() == export_filter()
    assert (stage / "etc/fail2ban/jail.local").read_text() == "[sshd]\nenabled = true\n"
    assert set(before) <= set(after)
    assert not [f for f in after if f.startswith("etc/fail2ban/jail")
                and f not in before]

    # the installed package imports from the stage, outside the source tree
    env = dict(os.environ, PYTHONPATH=str(stage / SITE))
    r2 = subprocess.run([sys.executable, "-c", "import smban, smban.engine; "
                         "print(smban.__file__); print(smban.Classifier().classify("
                         "'Nov 17 00:33:33 h sendmail[1]: [192.0.2.9] did not issue "
                         "MAIL/EXPN/VRFY/ETRN during connection to MTA').name)"],
                        env=env, cwd="/", capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.splitlines() == [str(stage / SITE / "smban" / "__init__.py"),
                                      "null-session"]

    # installing again is fine (the manifest says these files are ours)
    assert tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR).returncode == 0

    # byte code Python and fail2ban write beside the files goes too
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(stage / SITE / "smban"),
                    str(stage / "etc/fail2ban/action.d")], check=True)
    r = tool("uninstall", "--destdir", str(stage))
    assert r.returncode == 0, r.stderr
    assert files_under(stage) == before
    assert not (stage / "usr").exists()
    assert sorted(os.listdir(stage / "etc/fail2ban")) == ["jail.conf", "jail.d", "jail.local"]


def test_install_refuses_to_overwrite_a_file_it_did_not_install(stage):
    own = stage / "etc/fail2ban/filter.d/smban.conf"
    own.parent.mkdir()
    own.write_text("# the operator's own\n")
    r = tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR)
    assert r.returncode == 1
    assert "exists and was not installed by smban" in r.stderr
    assert own.read_text() == "# the operator's own\n"
    assert not (stage / "usr").exists()


def test_uninstall_keeps_a_file_changed_since(stage):
    assert tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR).returncode == 0
    conf = stage / "etc/fail2ban/filter.d/smban.conf"
    conf.write_text(conf.read_text() + "# local change\n")
    r = tool("uninstall", "--destdir", str(stage))
    assert r.returncode == 0
    assert "kept" in r.stdout and "changed since it was installed" in r.stdout
    assert conf.exists()
    assert not (stage / "etc/fail2ban/action.d").exists()
    assert not (stage / SITE / "smban").exists()


def test_uninstall_without_an_install_says_so(tmp_path):
    r = tool("uninstall", "--destdir", str(tmp_path))
    assert r.returncode == 1 and "nothing to uninstall: no manifest" in r.stderr


def test_missing_prerequisites_are_named(tmp_path):
    if os.geteuid() == 0:
        r = tool("check", "--fail2ban-server", str(tmp_path / "none"))
        assert r.returncode == 1
        assert "fail2ban is not installed" in r.stderr and "apt-get install fail2ban" in r.stderr
        r = tool("check", "--fail2ban-dir", str(tmp_path / "nowhere"))
        assert r.returncode == 1 and "Set FAIL2BAN_DIR=" in r.stderr
        r = tool("check", "--prefix", str(tmp_path / "opt"))
        assert r.returncode == 1 and "would not import smban" in r.stderr
        # as an unprivileged user (the tool copied where it can read it)
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o755)
            copy = os.path.join(d, "install.py")
            shutil.copy(TOOL, copy)
            os.chmod(copy, 0o644)
            r = subprocess.run([sys.executable, copy, "check"], capture_output=True,
                               text=True, user=65534, group=65534, cwd="/")
    else:
        r = tool("check")
    assert r.returncode == 1
    assert "needs root" in r.stderr and "sudo make install" in r.stderr


def test_install_sets_modes_whatever_the_umask(stage):
    old = os.umask(0o077)
    try:
        r = tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    for f in ("etc/fail2ban/filter.d/smban.conf", "etc/fail2ban/action.d/smban-engine.py",
              SITE + "/smban/engine.py", "usr/local/share/smban/manifest"):
        assert os.stat(stage / f).st_mode & 0o777 == 0o644, f
    for d in (SITE + "/smban", "usr/local/share/smban"):
        assert os.stat(stage / d).st_mode & 0o777 == 0o755, d
    so = [f for f in files_under(stage) if f.endswith(".so")]
    assert so and all(os.stat(stage / f).st_mode & 0o777 == 0o755 for f in so)
    assert not [f for f in files_under(stage) if f.endswith(".smban-tmp")]


def test_install_never_writes_through_a_planted_link(stage, tmp_path):
    """A link left where install puts its temporary file is removed, never
    followed: its target is untouched."""
    assert tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR).returncode == 0
    target = tmp_path / "victim"
    target.write_text("precious\n")
    os.symlink(target, stage / "etc/fail2ban/filter.d/smban.conf.smban-tmp")
    r = tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR)
    assert r.returncode == 0, r.stderr
    assert target.read_text() == "precious\n"
    assert (stage / "etc/fail2ban/filter.d/smban.conf").read_text() == export_filter()
    assert not os.path.lexists(stage / "etc/fail2ban/filter.d/smban.conf.smban-tmp")


def test_reinstall_keeps_an_edited_filter_and_puts_the_new_one_beside_it(stage):
    assert tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR).returncode == 0
    conf = stage / "etc/fail2ban/filter.d/smban.conf"
    edited = conf.read_text() + "# the administrator's own line\n"
    conf.write_text(edited)
    r = tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR)
    assert r.returncode == 0, r.stderr
    assert "kept" in r.stdout and "smban.conf.smban-new" in r.stdout
    assert conf.read_text() == edited
    assert (stage / "etc/fail2ban/filter.d/smban.conf.smban-new").read_text() == export_filter()
    # an unedited action is replaced as usual, and a third install says the same
    r = tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR)
    assert r.returncode == 0 and conf.read_text() == edited
    # uninstall keeps the edited file and removes the new one
    r = tool("uninstall", "--destdir", str(stage))
    assert r.returncode == 0, r.stderr
    assert conf.read_text() == edited and "kept" in r.stdout
    assert not os.path.exists(stage / "etc/fail2ban/filter.d/smban.conf.smban-new")
    assert not os.path.exists(stage / "etc/fail2ban/action.d/smban-engine.py")


def test_every_command_the_cli_offers_runs():
    """python3 -m smban --help lists only commands that exist."""
    from smban.cli import COMMANDS
    r = subprocess.run([sys.executable, "-m", "smban", "--help"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in COMMANDS:
        assert name in r.stdout
        h = subprocess.run([sys.executable, "-m", "smban", name, "--help"], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
        assert h.returncode == 0, (name, h.stderr)
    assert "install" not in COMMANDS


@pytest.mark.parametrize("conf, want", [
    ("[DEFAULT]\nbanaction = nftables\nbanaction_allports = nftables[type=allports]\n",
     "smban-nftables.py"),
    ("[DEFAULT]\nbanaction = nftables-multiport\n", "smban-nftables.py"),
    ("[DEFAULT]\nbanaction = iptables-multiport\n", "smban-iptables.py"),
    ("[DEFAULT]\n#banaction = nftables\n", "smban-iptables.py"),
])
def test_the_printed_jail_bans_the_way_fail2ban_is_set_to(stage, conf, want):
    """Where fail2ban bans with nftables (Debian 13's jail.d/defaults-debian.conf),
    the jail.local snippet offers smban-nftables; elsewhere smban-iptables
    (this machine has the legacy iptables tools)."""
    if not shutil.which("iptables-legacy"):
        pytest.skip("iptables-legacy not installed: the snippet offers nftables anyway")
    (stage / "etc/fail2ban/jail.d/defaults-debian.conf").write_text(conf)
    r = tool("install", "--destdir", str(stage), "--pkg-dir", PKG_DIR)
    assert r.returncode == 0, r.stderr
    action = [l.strip() for l in r.stdout.splitlines() if l.strip().endswith(
        '[port="smtp,465,submission"]')]
    assert action == [want + '[port="smtp,465,submission"]'], r.stdout
