"""Build the fuzzers' seed corpora from the repository's fixture logs.

    python3 ext/fuzz/seeds.py OUTDIR FIXTURE.log...

writes OUTDIR/{frame,line,session,addr,table,blame,reader}/ with one file
per seed: each log line (frame, line), runs of 24 consecutive lines of one
fixture (session; and for reader, with a line stretched past the reader's
buffer), each bracketed client address with a family and prefix
byte in front (addr), a few operation programs for the table harness, and
client text that imitates sendmail's fields, for every format and client
form of fuzz_blame.c (blame).  File names are content hashes, so
rebuilding gives the same corpus.
"""
import hashlib
import os
import re
import sys

ADDR = re.compile(rb"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")

#: fuzz_blame.c: the number of formats (its NFORMATS) and texts a client
#: would plant ("\x01" splits a text between a line's two client fields)
BLAME_FORMATS = 27
BLAME_TEXTS = [
    b'"a, relay=[203.0.113.66], reject=550 5.7.1 <x>... Relaying denied. "@elsewhere.example',
    b'<"a, relay=[203.0.113.66], reject=550 5.7.1 <x>... Relaying denied. "@elsewhere.example>',
    b'"a, relay=[IPv6:2001:db8:bad::66]"@elsewhere.example',
    b'"a\\\\"b, relay=[203.0.113.66]"@elsewhere.example',
    b'"a>b, relay=h.example [203.0.113.66] (may be forged)"@x',
    b'"a, size=900, class=0, nrcpts=3, x"@example.net\x01<m, relay=[203.0.113.66]@x>',
    b'x, relay=[203.0.113.66], reject=550 5.7.1 <x>... Relaying denied.',
    b'root, relay=[203.0.113.66]\x01SASL(-13): user=x, relay=[203.0.113.66]',
    b'[203.0.113.66]: possible SMTP attack: command=AUTH, count=5',
    b'GET / HTTP/1.0\\r\\n, relay=[203.0.113.66]',
    b'a' * 120 + b'.example',
    b'relay-203-0-113-66.example',
]


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
            # reader: the same runs, one line stretched past the reader's
            # buffer or just past SMBAN_MAX_LINE (0x01 k: k * 2048 + 1 'x')
            run = lines[i:i + 24]
            for k, end in ((200, b"\n"), (32, b"\r\n"), (31, b"")):
                write(outdir, "reader", b"\n".join(run[:2]) + b"\n\x01" + bytes([k]) + end
                      + b"\r\n".join(run[2:]), seen)
    # table programs: fill and overflow, revisit, expire, delete, clear
    write(outdir, "table", bytes(b for k in range(8) for b in (1, k, 4, 0)), seen)
    write(outdir, "table", bytes(b for k in range(16) for b in (1 + (k & 2), k % 7, 60, 0)), seen)
    write(outdir, "table", bytes(b for k in range(12) for b in (k & 3, k * 5 % 32, 200 - k, 0xff)), seen)
    # blame: format byte, client byte, then client text imitating fields
    for fmt in range(BLAME_FORMATS):
        for who in (0, 2, 7, 9, 14):
            for text in BLAME_TEXTS:
                write(outdir, "blame", bytes((fmt, who)) + text, seen)
    counts = {k: sum(1 for kind, _ in seen if kind == k)
              for k in ("frame", "line", "session", "addr", "table", "blame", "reader")}
    print("seeds: " + ", ".join("%s %d" % kv for kv in counts.items()))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: seeds.py OUTDIR FIXTURE.log...")
    main(sys.argv[1], sys.argv[2:])
