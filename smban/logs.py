"""Reading log files for the batch path: plain or gzip, in chunks of whole
lines, numbered from 1 in each file."""
import gzip
import os

CHUNK = 8 << 20


class LogError(Exception):
    """A log file that cannot be read: the message names it and why."""


def open_log(path):
    """Open a log for binary reading (gzip by magic number); LogError if not."""
    try:
        f = open(path, "rb")
        magic = f.read(2)
        f.seek(0)
    except IsADirectoryError:
        raise LogError("%s: is a directory" % path) from None
    except OSError as exc:
        raise LogError("%s: %s" % (path, exc.strerror or exc)) from None
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")
    return f


def check_readable(paths):
    """Raise LogError for the first path that cannot be opened, before any
    output is written."""
    for p in paths:
        open_log(p).close()


def chunks(path, size=CHUNK):
    """Yield (data, first_line) for path: data holds whole lines only (the
    last line of the file may lack its newline)."""
    lineno = 1
    rest = b""
    with open_log(path) as f:
        while True:
            try:
                block = f.read(size)
            except (OSError, EOFError) as exc:
                raise LogError("%s: %s" % (path, exc)) from None
            if not block:
                break
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield data[:cut + 1], lineno
            lineno += data.count(b"\n", 0, cut + 1)
            rest = data[cut + 1:]
    if rest:
        yield rest, lineno


def size_of(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
