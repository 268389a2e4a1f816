#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nbd-read.py - reads [0, LENGTH) of an NBD export the way nbdcopy reads a source (4
# connections, 16 requests of 256 KiB in flight on each) and prints the seconds it took; with
# --verify FILE it compares what it read with FILE. nbd-bench.sh uses it for the read-back, so
# every server is read over exactly the image's bytes, without block-status requests (which
# crash nbdkit 1.32's memory allocator=zstd over unwritten space).
#   nbd-read.py URI LENGTH [--verify FILE]
# $UZ_BENCH_CONNECTIONS sets the number of connections (default 4).
import os
import sys
import threading
import time

import nbd

CONNS, DEPTH, CHUNK = int(os.environ.get("UZ_BENCH_CONNECTIONS", "4")), 16, 256 << 10


def main():
    uri, length = sys.argv[1], int(sys.argv[2])
    verify = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--verify" else None
    handles = []
    for _ in range(CONNS):
        h = nbd.NBD()
        h.connect_uri(uri)
        handles.append(h)
    offsets = list(range(0, length, CHUNK))
    out = {} if verify else None
    errors = []

    def reader(k):
        try:
            h = handles[k]
            mine = offsets[k::CONNS]
            pending = {}
            i = 0
            while i < len(mine) or pending:
                while i < len(mine) and len(pending) < DEPTH:
                    off = mine[i]
                    buf = nbd.Buffer(min(CHUNK, length - off))
                    pending[h.aio_pread(buf, off)] = (off, buf)
                    i += 1
                h.poll(-1)
                for cookie in [c for c in pending if h.aio_command_completed(c)]:
                    off, buf = pending.pop(cookie)
                    if out is not None:
                        out[off] = buf.to_bytearray()
        except Exception as e:
            errors.append(repr(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=reader, args=(k,)) for k in range(CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if errors:
        sys.exit("nbd-read: " + "; ".join(errors))
    for h in handles:
        h.shutdown()
    if verify:
        with open(verify, "rb") as f:
            for off in offsets:
                if f.read(CHUNK) != bytes(out[off]):
                    sys.exit(f"nbd-read: data at {off} differs from {verify}")
    print(f"{elapsed:.6f}")


if __name__ == "__main__":
    main()
