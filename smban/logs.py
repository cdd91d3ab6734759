"""Reading log files for the batch path: plain or gzip, in chunks of whole
lines, numbered from 1 in each file."""
import os

from smban._core import MAX_LINE

# 1 MiB: the piece just read is still in cache when the classifier reads it
CHUNK = 1 << 20


class LogError(Exception):
    """A log file that cannot be read: the message names it and why."""


def open_log(path, buffering=-1):
    """Open a log for binary reading (gzip by magic number); LogError if not.
    With buffering=0 a plain log is a raw file whose descriptor is at the
    start (no read-ahead), for Classifier.classify_file."""
    try:
        f = open(path, "rb", buffering=buffering)
        magic = f.read(2)
        f.seek(0)
    except IsADirectoryError:
        raise LogError("%s: is a directory" % path) from None
    except OSError as exc:
        raise LogError("%s: %s" % (path, exc.strerror or exc)) from None
    if magic == b"\x1f\x8b":
        import gzip     # only for a gzip log: a command's start-up counts
        return gzip.GzipFile(fileobj=f, mode="rb")
    return f


def check_readable(paths):
    """Raise LogError for the first path that cannot be opened, before any
    output is written."""
    for p in paths:
        open_log(p).close()


def chunks(path, size=CHUNK):
    """Yield the data of the log at path in pieces of whole lines; see
    pieces_of."""
    yield from pieces_of(open_log(path), path, size)


def pieces_of(f, path, size=CHUNK):
    """Yield the data read from the binary file f (closed at the end) in
    pieces that hold whole lines only (the last line of the file may lack
    its newline), so the caller numbers lines by counting them
    (classify_buffer returns the count).

    Each piece is a memoryview of one buffer that the next step reuses: use
    it before asking for the next (classify_buffer copies what it keeps).
    The file is read, not mapped, so a log truncated under the reader ends
    the data early instead of killing the process.  A line longer than the
    buffer is handed over cut to MAX_LINE + 1 bytes, which the classifier
    skips and counts as one over-long line."""
    buf = bytearray(max(size, 2 * (MAX_LINE + 1)))
    view = memoryview(buf)
    have = 0              # bytes held in buf
    skipping = False      # inside an over-long line: drop up to its newline
    try:
        with f:
            while True:
                try:
                    n = f.readinto(view[have:])
                except (OSError, EOFError) as exc:
                    raise LogError("%s: %s" % (path, exc)) from None
                if not n:
                    break
                have += n
                if skipping:
                    nl = buf.find(b"\n", 0, have)
                    if nl < 0:
                        have = 0
                        continue
                    rest = have - nl - 1
                    buf[:rest] = buf[nl + 1:have]
                    have, skipping = rest, False
                cut = buf.rfind(b"\n", 0, have)
                if cut < 0:
                    if have == len(buf):
                        yield view[:MAX_LINE + 1]
                        have, skipping = 0, True
                    continue
                yield view[:cut + 1]
                rest = have - cut - 1
                buf[:rest] = buf[cut + 1:have]
                have = rest
            if have and not skipping:
                yield view[:have]
    finally:
        view.release()


def size_of(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
