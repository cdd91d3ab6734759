"""Install smban into the fail2ban already on this machine (make install),
and remove exactly that again (make uninstall).

    PY tools/install.py check|install|uninstall [--destdir D] [--prefix P]
                                                [--fail2ban-dir F] [--pkg-dir S]

Run it with the interpreter of fail2ban-server (the Makefile does): the
package goes where *that* interpreter imports it.  This script imports
nothing of smban, so it runs before the extension is built.

Where the package goes (Debian's layout):
  PREFIX=/usr/local (default)  /usr/local/lib/python3.X/dist-packages: the
                               place Debian's python3 keeps for software the
                               administrator installs by hand (it comes first
                               on sys.path, and dpkg never touches it);
  PREFIX=/usr (packagers)      /usr/lib/python3/dist-packages, the place of
                               Debian's own packages;
  any other PREFIX             PREFIX/lib/python3.X/dist-packages (refused
                               without DESTDIR unless fail2ban's Python
                               imports from there).
fail2ban's files: FAIL2BAN_DIR/filter.d/smban.conf and
FAIL2BAN_DIR/action.d/smban-engine.py, smban-iptables.py, smban-nftables.py,
smban-crowdsec.py.
The printed jail.local bans with smban-nftables where fail2ban is set to
ban with nftables (a banaction = nftables... line) or where the legacy
iptables tools are missing, with smban-iptables otherwise.  jail.conf,
jail.local and jail.d/ are never touched.  The list of what was installed
(with checksums) is PREFIX/share/smban/manifest; uninstall removes those
files (a file changed since is kept, and said so), the byte-code Python
and fail2ban wrote beside them, and the directories install created.
Installing again over a filter or action the administrator edited keeps
the edited file and puts the new one beside it as NAME.smban-new.  Every
file is written through a fresh temporary file (O_EXCL, O_NOFOLLOW) with an
explicit mode (0644, 0755 for the extension and directories), whatever the
umask.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SNIPPET = """\
# %(where)s: smban for sendmail
[smban]
enabled  = true
filter   = smban
%(source)s
maxretry = 5
findtime = 10m
bantime  = 1h
action   = smban-engine.py[mode="%%(known/mode)s"]
           %(ban)s[port="smtp,465,submission"]
"""


def uses_nftables(fail2ban_dir):
    """Whether this machine's fail2ban bans with nftables: a banaction line
    of its configuration names an nftables action, or the legacy iptables
    tools that smban-iptables' tables need are not installed while nft is."""
    paths = [os.path.join(fail2ban_dir, n) for n in ("jail.conf", "jail.local")]
    jd = os.path.join(fail2ban_dir, "jail.d")
    if os.path.isdir(jd):
        paths += [os.path.join(jd, n) for n in sorted(os.listdir(jd))
                  if n.endswith((".conf", ".local"))]
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, eq, value = line.partition("=")
                    if eq and key.strip() in ("banaction", "banaction_allports") \
                            and value.strip().startswith("nftables"):
                        return True
        except OSError:
            continue
    return shutil.which("iptables-legacy") is None and shutil.which("nft") is not None


def snippet(fail2ban_dir, config_dir=None):
    """The jail.local text for this machine's mail log: /var/log/maillog
    (RHEL and friends), /var/log/mail.log (Debian's rsyslog) or journald;
    config_dir: where fail2ban_dir's files are now (under DESTDIR)."""
    for log in ("/var/log/maillog", "/var/log/mail.log"):
        if os.path.isfile(log):
            source = "logpath  = %s\nbackend  = auto" % log
            break
    else:
        # fields journald sets itself: any local user can send lines with
        # SYSLOG_IDENTIFIER=sm-mta (logger -t sm-mta), not from sendmail's unit
        source = ("# no mail log file here: read journald (only what sendmail's own\n"
                  "# unit wrote: a local user can log as any SYSLOG_IDENTIFIER)\n"
                  "backend  = systemd\njournalmatch = _SYSTEMD_UNIT=sendmail.service")
    ban = "smban-nftables.py" if uses_nftables(config_dir or fail2ban_dir) \
        else "smban-iptables.py"
    return SNIPPET % {"where": os.path.join(fail2ban_dir, "jail.local"), "source": source,
                      "ban": ban}


class Failure(Exception):
    """A prerequisite or a step that failed: the message names the fix."""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def site_dir(prefix):
    """Where fail2ban's interpreter (this one) imports smban from under prefix."""
    prefix = os.path.normpath(prefix)
    if prefix == "/usr":
        return "/usr/lib/python3/dist-packages"
    return os.path.join(prefix, "lib", "python%d.%d" % sys.version_info[:2], "dist-packages")


def paths(args):
    return {
        "site": site_dir(args.prefix),
        "manifest": os.path.join(os.path.normpath(args.prefix), "share", "smban", "manifest"),
        "filter.d": os.path.join(args.fail2ban_dir, "filter.d"),
        "action.d": os.path.join(args.fail2ban_dir, "action.d"),
    }


def staged(args, path):
    """path inside DESTDIR."""
    return os.path.join(args.destdir, path.lstrip("/")) if args.destdir else path


def ext_suffix():
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


# ---- check ----

def debian_package_installed():
    """Whether dpkg has the package smban installed (make install and the
    package would own the same files in fail2ban's directories)."""
    if not shutil.which("dpkg-query"):
        return False
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "smban"],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() not in ("", "not-installed", "config-files")


def check(args, build=True):
    """Raise Failure naming the fix for the first missing prerequisite."""
    system = not args.destdir
    if system and os.geteuid() != 0:
        raise Failure("installing into the system needs root: run 'sudo make install' "
                      "(or stage it with 'make install DESTDIR=/some/dir')")
    server = args.fail2ban_server or shutil.which("fail2ban-server")
    if system and (not server or not os.path.exists(server)):
        raise Failure("fail2ban is not installed (no fail2ban-server): install it first "
                      "('apt-get install fail2ban'), then run make install again")
    try:
        import fail2ban  # noqa: F401
    except ImportError:
        if system:
            raise Failure("%s cannot import fail2ban: run make install with the interpreter "
                          "of fail2ban-server (the Makefile finds it from its #! line)"
                          % sys.executable) from None
    if system and debian_package_installed():
        raise Failure("the Debian package smban is installed and owns smban's files in %s: "
                      "upgrade it with apt, or remove it ('apt-get remove smban') before "
                      "make install" % args.fail2ban_dir)
    if system:
        for sub in ("filter.d", "action.d"):
            d = os.path.join(args.fail2ban_dir, sub)
            if not os.path.isdir(d):
                raise Failure("%s does not exist: is fail2ban's configuration elsewhere? "
                              "Set FAIL2BAN_DIR=/path/to/fail2ban" % d)
        site = site_dir(args.prefix)
        if site not in sys.path:
            raise Failure("%s would not import smban from %s (PREFIX=%s): use PREFIX=/usr/local "
                          "(the default) or PREFIX=/usr" % (sys.executable, site, args.prefix))
    if build:
        inc = sysconfig.get_paths()["include"]
        if not os.path.isfile(os.path.join(inc, "Python.h")):
            raise Failure("no Python headers for %s (%s/Python.h): install them "
                          "('apt-get install python%d-dev' or python3-dev)"
                          % (sys.executable, inc, sys.version_info[0]))
        if not shutil.which("pkg-config"):
            raise Failure("pkg-config is missing: 'apt-get install pkg-config'")
        for pkg, deb in (("libpcre2-8", "libpcre2-dev"), ("libiptc", "libiptc-dev")):
            if subprocess.run(["pkg-config", "--exists", pkg]).returncode != 0:
                raise Failure("the %s headers are missing: 'apt-get install %s'" % (pkg, deb))
        if not (shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")):
            raise Failure("no C compiler: 'apt-get install build-essential'")


# ---- manifest ----

def read_manifest(path):
    """[(kind, sha or None, path)] of a manifest, [] when there is none."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 2)
                if len(parts) == 3 and parts[0] == "file":
                    out.append(("file", parts[1], parts[2]))
                elif len(parts) == 2 and parts[0] == "dir":
                    out.append(("dir", None, parts[1]))
    except FileNotFoundError:
        pass
    return out


# ---- writing files ----

def write_file(full, data, mode):
    """Write data to full through a temporary file beside it, created
    afresh (O_EXCL: never an existing file; O_NOFOLLOW: never through a
    link planted there) with exactly mode whatever the umask, then renamed
    over full."""
    tmp = full + ".smban-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)            # left by an interrupted install; a link is removed, not followed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, full)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# ---- install ----

def package_files(pkg_dir):
    """(source, path relative to the package dir) of the smban package: its
    modules, its data and the extensions built for this interpreter (the
    classifier and the iptables backend: check() requires libiptc; the
    nftables backend where libnftables was there to build it)."""
    exts = [os.path.join(pkg_dir, mod + ext_suffix()) for mod in ("_core", "_iptc")]
    for ext in exts:
        if not os.path.isfile(ext):
            raise Failure("%s is not built for %s: run 'make build' (make install does)"
                          % (ext, sys.executable))
    nft = os.path.join(pkg_dir, "_nft" + ext_suffix())
    if os.path.isfile(nft):
        exts.append(nft)
    out = []
    for dirpath, dirnames, filenames in os.walk(pkg_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, pkg_dir)
            if name.endswith(".py") or src in exts or os.sep + "data" + os.sep in os.sep + rel:
                out.append((src, rel))
    return out


def install(args):
    check(args, build=False)
    p = paths(args)
    old = {path: sha for kind, sha, path in read_manifest(staged(args, p["manifest"]))
           if kind == "file"}
    plan = [(src, os.path.join(p["site"], "smban", rel))
            for src, rel in package_files(args.pkg_dir)]
    plan += [(os.path.join(ROOT, "filters", "smban.conf"),
              os.path.join(p["filter.d"], "smban.conf"))]
    plan += [(os.path.join(ROOT, "actions", a), os.path.join(p["action.d"], a))
             for a in ("smban-engine.py", "smban-iptables.py", "smban-nftables.py",
                       "smban-crowdsec.py")]
    for _, dst in plan:
        if os.path.lexists(staged(args, dst)) and dst not in old:
            raise Failure("%s exists and was not installed by smban: move it away first"
                          % staged(args, dst))

    created = [path for kind, _, path in read_manifest(staged(args, p["manifest"]))
               if kind == "dir"]

    if args.destdir:
        os.makedirs(args.destdir, exist_ok=True)

    def makedirs(d):
        missing = []
        while d != "/" and not os.path.isdir(staged(args, d)):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(staged(args, d), 0o755)
            os.chmod(staged(args, d), 0o755)      # whatever the umask
            created.append(d)

    conf_dirs = (p["filter.d"] + os.sep, p["action.d"] + os.sep)
    entries = []
    for src, dst in plan:
        makedirs(os.path.dirname(dst))
        full = staged(args, dst)
        data = read_bytes(src)
        mode = 0o755 if dst.endswith(".so") else 0o644
        if dst.startswith(conf_dirs) and edited(full, old.get(dst)) \
                and read_bytes(full) != data:
            # fail2ban's configuration edited by the administrator since the
            # last install: kept, the new version put beside it (as dpkg
            # does with a conffile)
            write_file(full + ".smban-new", data, mode)
            entries.append("file %s %s" % (old[dst], dst))
            entries.append("file %s %s" % (sha256(full + ".smban-new"), dst + ".smban-new"))
            print("kept      %s (changed since it was installed); the new version is %s: "
                  "compare them and merge what you need" % (full, full + ".smban-new"))
            continue
        write_file(full, data, mode)
        entries.append("file %s %s" % (sha256(full), dst))
        print("installed %s" % full)
    # files of an earlier install that this one no longer has
    for path in set(old) - {e.split(" ", 2)[2] for e in entries}:
        remove_file(args, path, old[path])
    makedirs(os.path.dirname(p["manifest"]))
    text = "".join(e + "\n" for e in entries) + \
        "".join("dir %s\n" % d for d in dict.fromkeys(created))
    write_file(staged(args, p["manifest"]), text.encode(), 0o644)
    print("manifest  %s" % staged(args, p["manifest"]))
    verify_import(args, p)
    print("\nsmban is installed; fail2ban's jail files were not touched.  To use it, add "
          "this to jail.local\n(see the README for /var/log/maillog, /var/log/mail.log "
          "and journald), then run 'fail2ban-client reload':\n")
    print(snippet(args.fail2ban_dir, staged(args, args.fail2ban_dir)))


def edited(full, sha):
    """The installed file full differs from what the manifest recorded."""
    return bool(sha) and os.path.isfile(full) and sha256(full) != sha


def verify_import(args, p):
    """The installed package imports, from where it was installed."""
    env = dict(os.environ)
    if args.destdir:
        env["PYTHONPATH"] = staged(args, p["site"])
    else:
        env.pop("PYTHONPATH", None)
    code = ("import smban, smban._core, smban._iptc, smban.engine, smban.iptables; "
            "print(smban.__file__)")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd="/",
                       capture_output=True, text=True)
    where = os.path.join(staged(args, p["site"]), "smban", "__init__.py")
    if r.returncode != 0 or r.stdout.strip() != where:
        raise Failure("the installed package does not import from %s: %s%s"
                      % (where, r.stdout, r.stderr.strip().splitlines()[-1:]))
    print("verified  %s imports smban from %s" % (sys.executable, os.path.dirname(where)))


# ---- uninstall ----

def remove_file(args, path, sha):
    full = staged(args, path)
    if not os.path.lexists(full):
        return
    if sha and os.path.isfile(full) and sha256(full) != sha:
        print("kept      %s (changed since it was installed)" % full)
        return
    os.unlink(full)
    print("removed   %s" % full)
    # byte code written beside it (by Python, or by fail2ban loading an action)
    if path.endswith(".py"):
        cache = os.path.join(os.path.dirname(full), "__pycache__")
        stem = os.path.basename(path)[:-3] + "."
        if os.path.isdir(cache):
            for name in os.listdir(cache):
                if name.startswith(stem) and name.endswith(".pyc"):
                    os.unlink(os.path.join(cache, name))
            if not os.listdir(cache):
                os.rmdir(cache)


def uninstall(args):
    if not args.destdir and os.geteuid() != 0:
        raise Failure("uninstalling from the system needs root: run 'sudo make uninstall'")
    p = paths(args)
    entries = read_manifest(staged(args, p["manifest"]))
    if not entries:
        raise Failure("nothing to uninstall: no manifest at %s (PREFIX=%s)"
                      % (staged(args, p["manifest"]), args.prefix))
    for kind, sha, path in entries:
        if kind == "file":
            remove_file(args, path, sha)
    os.unlink(staged(args, p["manifest"]))
    print("removed   %s" % staged(args, p["manifest"]))
    # directories install created, deepest first, if nothing else is in them
    for path in sorted((path for kind, _, path in entries if kind == "dir"),
                       key=lambda d: d.count("/"), reverse=True):
        full = staged(args, path)
        cache = os.path.join(full, "__pycache__")
        if os.path.isdir(cache) and path.endswith(os.path.join("dist-packages", "smban")):
            shutil.rmtree(cache)      # the package's own byte code
        try:
            os.rmdir(full)
            print("removed   %s/" % full)
        except FileNotFoundError:
            pass
        except OSError:
            print("kept      %s/ (not empty)" % full)
    print("\nsmban is uninstalled.  Remove the [smban] jail from jail.local (or put "
          "filter/action back to fail2ban's own) and run 'fail2ban-client reload'.")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("check", "install", "uninstall"))
    ap.add_argument("--destdir", default=os.environ.get("DESTDIR", ""))
    ap.add_argument("--prefix", default=os.environ.get("PREFIX") or "/usr/local")
    ap.add_argument("--fail2ban-dir", default=os.environ.get("FAIL2BAN_DIR") or "/etc/fail2ban")
    ap.add_argument("--fail2ban-server", default=None,
                    help="fail2ban-server to check for (default: found on PATH)")
    ap.add_argument("--pkg-dir", default=os.path.join(ROOT, "smban"),
                    help="the built smban package to install (default: the source tree's)")
    args = ap.parse_args(argv)
    args.fail2ban_dir = os.path.normpath(args.fail2ban_dir)
    try:
        if args.command == "check":
            check(args)
        elif args.command == "install":
            install(args)
        else:
            uninstall(args)
    except Failure as e:
        print("smban %s: %s" % (args.command, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
