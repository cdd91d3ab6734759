"""Reading log files for the batch path: plain or gzip, in chunks of whole
lines, numbered from 1 in each file."""
import gzip
import mmap
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
    """Yield the data of path in pieces that hold whole lines only (the last
    line of the file may lack its newline), so the caller numbers lines by
    counting them (classify_buffer returns the count).  A plain file is
    mapped, not copied: a piece is then a memoryview valid until the next
    step."""
    f = open_log(path)
    if not isinstance(f, gzip.GzipFile):
        try:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):
            m = None            # empty, or not mappable (a pipe): read it
        if m is not None:
            f.close()
            with m:
                yield from _mapped(m, size * 8)
            return
    yield from _read(f, path, size)


def _mapped(m, size):
    pos, n = 0, len(m)
    view = memoryview(m)
    try:
        while pos < n:
            end = min(pos + size, n)
            if end < n:
                cut = m.rfind(b"\n", pos, end)
                end = cut + 1 if cut >= 0 else n
            part = view[pos:end]
            yield part
            part.release()
            pos = end
    finally:
        view.release()


def _read(f, path, size):
    rest = b""
    with f:
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
            yield data[:cut + 1]
            rest = data[cut + 1:]
    if rest:
        yield rest


def size_of(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
