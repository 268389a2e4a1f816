# SPDX-License-Identifier: MIT
"""run_dict.py - the Python workload of bench/run-bench.sh: a dict of MIB of data, verified.

    python3 run_dict.py IMAGE MIB

IMAGE is an uncompressed memory image (../shared/corpus/py-64m.img.zst decompressed); its first
32 MiB are read as one bytes object. The dict maps str keys ("k" + 9 digits) to values cut from
the image: half of them bytes of 16..256 B, 40% of 256..2048 B, 10% of 2048..8192 B, from
offsets a seeded random.Random(42) picks; every eighth value is a tuple (int, bytes) instead.
Entries are added until the keys, values and the dict's table (sys.getsizeof) reach MIB, then
every entry is looked up again in order and compared with the image (the same generator
replayed), then 200,000 random lookups (each value's type checked). Prints one line; exit 0
when all matched.
"""
import random
import sys
import time


def sizes(rng, img_len):
    r = rng.random()
    if r < 0.5:
        n = rng.randint(16, 256)
    elif r < 0.9:
        n = rng.randint(256, 2048)
    else:
        n = rng.randint(2048, 8192)
    return n, rng.randrange(img_len - n)


def main():
    if len(sys.argv) != 3:
        print("usage: run_dict.py IMAGE MIB", file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        img = f.read(32 << 20)
    want = int(sys.argv[2]) << 20
    getsizeof = sys.getsizeof
    t0 = time.monotonic()
    rng = random.Random(42)
    d = {}
    est = 0
    i = 0
    while est + getsizeof(d) < want:
        n, off = sizes(rng, len(img))
        k = "k%09d" % i
        v = img[off:off + n]
        if i % 8 == 7:
            v = (i, v)
            est += getsizeof(v) + getsizeof(v[1]) + getsizeof(i)
        else:
            est += getsizeof(v)
        est += getsizeof(k)
        d[k] = v
        i += 1
    count = i
    t1 = time.monotonic()
    rng = random.Random(42)
    for i in range(count):
        n, off = sizes(rng, len(img))
        v = d["k%09d" % i]
        if i % 8 == 7:
            ok = v[0] == i and v[1] == img[off:off + n]
        else:
            ok = v == img[off:off + n]
        if not ok:
            print("run_dict: entry %d differs" % i, file=sys.stderr)
            return 1
    t2 = time.monotonic()
    rng = random.Random(7)
    for _ in range(200000):
        i = rng.randrange(count)
        v = d["k%09d" % i]
        if (i % 8 == 7) != isinstance(v, tuple):
            print("run_dict: entry %d has the wrong type" % i, file=sys.stderr)
            return 1
    t3 = time.monotonic()
    print("run_dict: entries=%d dict_mib=%d build_s=%.3f verify_s=%.3f lookup_s=%.3f"
          % (count, (est + getsizeof(d)) >> 20, t1 - t0, t2 - t1, t3 - t2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
