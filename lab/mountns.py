"""Run a program in a private mount namespace with the lab's /dev.

    python3 mountns.py DEVDIR BIND_SRC=BIND_DST ... -- PROGRAM ARGS...

sendmail logs only through syslog(3), which writes to /dev/log.  This
helper gives it the lab's own: it unshares the mount namespace (so nothing
it mounts is seen by the machine), makes every mount private, bind-mounts
the machine's /dev/null, /dev/zero, /dev/random and /dev/urandom onto empty
files in DEVDIR, then DEVDIR (holding the lab's log socket as "log") over
/dev, and each SRC over DST (the lab's hosts, resolv.conf,
nsswitch.conf and SASL configuration directory), and execs PROGRAM.  Nothing is
created outside DEVDIR; everything disappears when the last process of the
namespace exits.  No shell is involved.
"""
import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _mount(src, dst, flags):
    _check(_libc.mount(src and src.encode(), dst.encode(), None, flags, None),
           "mount %s on %s" % (src, dst))


def main(argv):
    sep = argv.index("--")
    devdir, binds, prog = argv[0], argv[1:sep], argv[sep + 1:]
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    for dev in ("null", "zero", "random", "urandom"):
        _mount("/dev/" + dev, os.path.join(devdir, dev), MS_BIND)
    _mount(devdir, "/dev", MS_BIND | MS_REC)
    for spec in binds:
        src, dst = spec.split("=", 1)
        _mount(src, dst, MS_BIND)
    if not os.path.exists("/dev/log"):
        raise SystemExit("mountns: no /dev/log after the mounts; refusing to run")
    os.execv(prog[0], prog)


if __name__ == "__main__":
    main(sys.argv[1:])
