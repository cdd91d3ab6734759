"""Build the fuzzers' seed corpora from the repository's fixture logs.

    python3 ext/fuzz/seeds.py OUTDIR FIXTURE.log...

writes OUTDIR/{frame,line,session,addr,table}/ with one file per seed:
each log line (frame, line), runs of 24 consecutive lines of one fixture
(session), each bracketed client address with a family and prefix byte in
front (addr), and a few operation programs for the table harness.  File
names are content hashes, so rebuilding gives the same corpus.
"""
import hashlib
import os
import re
import sys

ADDR = re.compile(rb"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")


def log_lines(path):
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            if line.strip() and not line.startswith(b"#"):
                yield line


def write(outdir, kind, data, seen):
    d = os.path.join(outdir, kind)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    if (kind, name) not in seen:
        seen.add((kind, name))
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main(outdir, paths):
    seen = set()
    for path in sorted(paths):
        lines = list(log_lines(path))
        for line in lines:
            write(outdir, "frame", line, seen)
            write(outdir, "line", line, seen)
            for m in ADDR.finditer(line):
                family = b"\x01" if b":" in m.group(1) else b"\x00"
                for prefix in (b"\x00", b"\x18", b"\x40"):
                    write(outdir, "addr", family + prefix + m.group(1), seen)
                    write(outdir, "addr", family + prefix + m.group(1) + b"/24", seen)
        for i in range(0, len(lines), 24):
            write(outdir, "session", b"\n".join(lines[i:i + 24]) + b"\n", seen)
    # table programs: fill and overflow, revisit, expire, delete, clear
    write(outdir, "table", bytes(b for k in range(8) for b in (1, k, 4, 0)), seen)
    write(outdir, "table", bytes(b for k in range(16) for b in (1 + (k & 2), k % 7, 60, 0)), seen)
    write(outdir, "table", bytes(b for k in range(12) for b in (k & 3, k * 5 % 32, 200 - k, 0xff)), seen)
    counts = {k: sum(1 for kind, _ in seen if kind == k) for k in ("frame", "line", "session", "addr", "table")}
    print("seeds: " + ", ".join("%s %d" % kv for kv in counts.items()))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: seeds.py OUTDIR FIXTURE.log...")
    main(sys.argv[1], sys.argv[2:])
