#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Dump the resident, private, writable, anonymous pages of a process: what a swap device sees.

usage: dump-memory.py PID OUT       (reads /proc/PID/maps, pagemap and mem; needs ptrace rights)

Each resident page is written as 4096 raw bytes, in address order, like ../shared/corpus.
"""
import struct
import sys

PAGE = 4096


def main():
    pid, out = sys.argv[1], sys.argv[2]
    n = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pm, \
            open(f"/proc/{pid}/mem", "rb") as mem, open(out, "wb") as dst:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            perms, inode = f[1], f[4]
            path = f[5] if len(f) > 5 else ""
            # Anonymous private writable: no file behind it (heap, stacks, anonymous mmaps).
            if perms[0:2] != "rw" or perms[3] != "p" or inode != "0" or path in ("[vvar]", "[vsyscall]"):
                continue
            npages = (hi - lo) // PAGE
            pm.seek(lo // PAGE * 8)
            entries = pm.read(npages * 8)
            for i in range(len(entries) // 8):
                (e,) = struct.unpack_from("<Q", entries, i * 8)
                if not (e >> 63) & 1:  # not present in RAM
                    continue
                try:
                    mem.seek(lo + i * PAGE)
                    dst.write(mem.read(PAGE))
                    n += 1
                except OSError:
                    pass
    print(f"dumped {n} pages ({n * PAGE / 1048576:.1f} MiB) of process {pid} to {out}")


if __name__ == "__main__":
    main()
