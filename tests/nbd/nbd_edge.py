#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nbd_edge.py - the plugin's edge cases through libnbd (python3-libnbd, what nbdsh runs):
# zero-length requests and ranges past the end (strict mode off, so they reach the server),
# a seeded random model test at unaligned offsets mixing writes, zeroes (may_trim or not, FUA,
# fast), trims, reads and block-status checked against a shadow copy, concurrent connections
# with many requests in flight writing disjoint ranges that share pages, FUA and flush seen
# across connections, and mem_limit: ENOSPC, earlier data intact, writes succeed after a trim.
# Run by nbd_edge.sh and nbd_asan.sh. Environment: UZ_PLUGIN, UZ_PRELOAD (optional).
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import nbd

PLUGIN = os.environ["UZ_PLUGIN"]
PRELOAD = os.environ.get("UZ_PRELOAD", "")
PAGE = 4096
TMP = tempfile.mkdtemp(prefix="uzram-edge.")
SERVERS = []


class Server:
    def __init__(self, name, *args):
        self.name = name
        self.sock = f"{TMP}/{name}.sock"
        self.logpath = f"{TMP}/{name}.log"
        pidfile = f"{TMP}/{name}.pid"
        env = dict(os.environ)
        if PRELOAD:
            env["LD_PRELOAD"] = PRELOAD
        with open(self.logpath, "w") as log:
            self.proc = subprocess.Popen(
                ["nbdkit", "-f", "--exit-with-parent", "-U", self.sock, "-P", pidfile,
                 PLUGIN, *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        SERVERS.append(self)
        for _ in range(400):
            if os.path.exists(pidfile) and os.path.getsize(pidfile):
                break
            if self.proc.poll() is not None:
                sys.exit(f"FAIL: nbdkit {args} exited:\n{open(self.logpath).read()}")
            time.sleep(0.05)
        else:
            sys.exit(f"FAIL: nbdkit {args} did not start")
        self.uri = f"nbd+unix:///?socket={self.sock}"

    def connect(self, strict=True):
        h = nbd.NBD()
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        if not strict:
            h.set_strict_mode(0)
        h.connect_uri(self.uri)
        return h

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        SERVERS.remove(self)
        log = open(self.logpath).read()
        if sanitizer_report(log):
            sys.exit(f"FAIL: sanitizer report in {self.name}'s log:\n{log}")
        foreign_leak = "ERROR: LeakSanitizer" in log and self.proc.returncode == 1
        if self.proc.returncode not in (0, -signal.SIGTERM) and not foreign_leak:
            sys.exit(f"FAIL: {self.name} exited with {self.proc.returncode}:\n{log}")


def sanitizer_report(log):
    """An ASan error, or a leak whose stack passes through our code. nbdkit 1.32 itself leaks
    a few bytes at exit (its own frames only), which is not ours to fail on."""
    if "ERROR: AddressSanitizer" in log or "runtime error:" in log:
        return True
    leaks = log.partition("ERROR: LeakSanitizer")[2]
    return "uzram" in leaks or "plugin_ctl" in leaks


def expect_error(what, errnos, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum not in errnos:
            sys.exit(f"FAIL: {what}: errno {e.errnum} ({e}), wanted one of {errnos}")
        return
    sys.exit(f"FAIL: {what} succeeded")


def maybe_error(what, fn, *args):
    """Zero-length requests may succeed or be refused (nbdkit refuses them itself: EINVAL,
    ENOSPC for writes); anything else is a bug."""
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum not in (errno.EINVAL, errno.ENOSPC):
            sys.exit(f"FAIL: {what}: {e}")


def extents(h, count, offset, flags=0):
    out = []
    h.block_status(count, offset, lambda ctx, off, ents, err: out.extend(ents), flags)
    return list(zip(out[0::2], out[1::2]))


# ---- zero-length requests and ranges past the end

def test_bounds(srv, size):
    h = srv.connect(strict=False)
    h.pwrite(b"\x5a" * 10000, 0)
    nothing = lambda *a: 0
    for off in (0, 4095, size, size + PAGE):
        maybe_error(f"pread 0 @{off}", h.pread, 0, off)
        maybe_error(f"pwrite 0 @{off}", h.pwrite, b"", off)
        maybe_error(f"zero 0 @{off}", h.zero, 0, off)
        maybe_error(f"trim 0 @{off}", h.trim, 0, off)
        maybe_error(f"cache 0 @{off}", h.cache, 0, off)
        maybe_error(f"block_status 0 @{off}", h.block_status, 0, off, nothing)
    inval = (errno.EINVAL, errno.ENOSPC)
    for off, n in ((size - 100, 4096), (size, 1), (size + 1, 1), (1 << 62, 4096),
                   ((1 << 64) - 4096, 8192), (size - 1, (1 << 32) - 1)):
        expect_error(f"pread {n}@{off}", inval, h.pread, min(n, 1 << 20), off)
        expect_error(f"pwrite {n}@{off}", inval, h.pwrite, b"x" * min(n, 1 << 20), off)
        expect_error(f"zero {n}@{off}", inval, h.zero, n, off)
        expect_error(f"trim {n}@{off}", inval, h.trim, n, off)
        expect_error(f"cache {n}@{off}", inval, h.cache, n, off)
        expect_error(f"block_status {n}@{off}", inval, h.block_status, n, off, nothing)
    assert h.pread(10000, 0) == b"\x5a" * 10000, "data changed by refused requests"
    h.shutdown()


# ---- a random model test

def test_model(srv, size, seed, ops=500):
    rng = random.Random(seed)
    model = bytearray(size)
    h = srv.connect()
    text = b"".join(b"%08d: the quick brown fox jumps over the lazy dog\n" % i
                    for i in range(4000))

    def rand_range(maxlen):
        n = rng.choice((1, 7, 512, 4095, 4096, 4097, 8192, 12288 + 5,
                        rng.randrange(1, maxlen)))
        n = min(n, size)
        off = rng.choice((0, size - n, rng.randrange(0, size - n + 1),
                          rng.randrange(0, (size - n) // PAGE + 1) * PAGE))
        return off, n

    for i in range(ops):
        op = rng.random()
        off, n = rand_range(200000)
        if op < 0.35:
            kind = rng.randrange(4)
            if kind == 0:
                data = rng.randbytes(n)
            elif kind == 1:
                data = (text * (n // len(text) + 1))[:n]
            elif kind == 2:
                data = bytes(n)
            else:
                data = bytes([rng.randrange(256)]) * n
            flags = nbd.CMD_FLAG_FUA if rng.random() < 0.2 else 0
            h.pwrite(data, off, flags)
            model[off:off + n] = data
        elif op < 0.5:
            flags = rng.choice((0, nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_FAST_ZERO,
                                nbd.CMD_FLAG_FUA | nbd.CMD_FLAG_NO_HOLE))
            h.zero(n, off, flags)
            model[off:off + n] = bytes(n)
        elif op < 0.6:
            h.trim(n, off, nbd.CMD_FLAG_FUA if rng.random() < 0.2 else 0)
            # The device frees the pages wholly inside the range and leaves the rest.
            first = -(-off // PAGE)
            last = (off + n) // PAGE
            for p in range(first, last):
                end = min((p + 1) * PAGE, size)
                if (p + 1) * PAGE <= off + n:
                    model[p * PAGE:end] = bytes(end - p * PAGE)
        elif op < 0.85:
            got = h.pread(n, off)
            if got != bytes(model[off:off + n]):
                bad = next(k for k in range(n) if got[k] != model[off + k])
                sys.exit(f"FAIL: seed {seed} op {i}: pread {n}@{off} differs at {off + bad}")
        elif op < 0.95:
            flags = nbd.CMD_FLAG_REQ_ONE if rng.random() < 0.3 else 0
            pos = off
            for length, typ in extents(h, n, off, flags):
                if typ & nbd.STATE_ZERO and any(model[pos:pos + length]):
                    sys.exit(f"FAIL: seed {seed} op {i}: extent {pos}+{length} type {typ} "
                             "claims zeros over data")
                pos += length
            assert pos > off, "block status returned nothing"
        else:
            h.cache(n, off) if rng.random() < 0.5 else h.flush()
    h.flush()
    got = b"".join(h.pread(min(1 << 20, size - o), o) for o in range(0, size, 1 << 20))
    if got != bytes(model):
        sys.exit(f"FAIL: seed {seed}: final contents differ")
    h.shutdown()


# ---- concurrent connections, disjoint ranges that share pages

def test_concurrent(srv, size, nconn=4):
    region = size // nconn - 777  # boundaries fall inside pages
    expect = bytearray(size)
    h = srv.connect()
    h.zero(size, 0)  # start from an empty device
    h.shutdown()
    errors = []

    def writer(k):
        try:
            rng = random.Random(1000 + k)
            h = srv.connect()
            start = k * region + 333
            pos = start
            bufs = []
            while pos < start + region:
                n = min(rng.choice((4096, 65536, 1000, 300000)), start + region - pos)
                data = (b"conn%d-%d|" % (k, pos)) * (n // 8 + 1)
                data = data[:n]
                expect[pos:pos + n] = data
                buf = nbd.Buffer.from_bytearray(bytearray(data))
                bufs.append(buf)
                h.aio_pwrite(buf, pos)
                while h.aio_in_flight() >= 32:
                    h.poll(-1)
                pos += n
            while h.aio_in_flight() > 0:
                h.poll(-1)
            # Zero and trim a slice of our own region meanwhile, then write it again.
            h.zero(50000, start + 1000, nbd.CMD_FLAG_NO_HOLE)
            h.trim(50000, start + 60000)
            h.pwrite(bytes(expect[start + 1000:start + 120000]), start + 1000,
                     nbd.CMD_FLAG_FUA)
            h.shutdown()
        except Exception as e:  # reported by the main thread
            errors.append(f"writer {k}: {e!r}")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("FAIL: " + "; ".join(errors))
    h = srv.connect()
    got = b"".join(h.pread(min(1 << 20, size - o), o) for o in range(0, size, 1 << 20))
    if got != bytes(expect):
        bad = next(k for k in range(size) if got[k] != expect[k])
        sys.exit(f"FAIL: concurrent writers: contents differ at {bad}")
    h.shutdown()


# ---- FUA and flush, seen from another connection (multi-conn)

def test_fua_flush(srv):
    a, b = srv.connect(), srv.connect()
    assert a.can_multi_conn() and a.can_fua() and a.can_flush() and a.can_fast_zero()
    a.pwrite(b"\x42" * 8192, 4096 * 10 + 1, nbd.CMD_FLAG_FUA)
    assert b.pread(8192, 4096 * 10 + 1) == b"\x42" * 8192
    a.zero(4096, 4096 * 11, nbd.CMD_FLAG_FUA)
    assert b.pread(4096, 4096 * 11) == bytes(4096)
    a.pwrite(b"\x43" * 65536, 1 << 20)
    a.flush()
    assert b.pread(65536, 1 << 20) == b"\x43" * 65536
    a.trim(65536, 1 << 20, nbd.CMD_FLAG_FUA)
    b.flush()
    assert b.pread(65536, 1 << 20) == bytes(65536)
    assert extents(b, 65536, 1 << 20) [0][1] == nbd.STATE_HOLE | nbd.STATE_ZERO
    a.zero(1 << 20, 2 << 20, nbd.CMD_FLAG_FAST_ZERO)
    a.cache(1 << 20, 0)
    a.shutdown()
    b.shutdown()


# ---- mem_limit

def test_mem_limit():
    srv = Server("limit", "size=64M", "mem_limit=1M")
    h = srv.connect()
    rng = random.Random(7)
    pages = {}
    for i in range(4096):
        data = rng.randbytes(PAGE)  # incompressible: stored raw, 4 KiB of pool each
        try:
            h.pwrite(data, i * PAGE)
        except nbd.Error as e:
            if e.errnum != errno.ENOSPC:
                sys.exit(f"FAIL: mem_limit: page {i}: {e}, wanted ENOSPC")
            full = i
            break
        pages[i] = data
    else:
        sys.exit("FAIL: mem_limit=1M never refused a write")
    if not 128 <= full <= 300:
        sys.exit(f"FAIL: mem_limit=1M refused page {full} (expected about 256)")
    assert h.pread(PAGE, full * PAGE) == bytes(PAGE), "the refused write left data"
    for i, data in pages.items():
        assert h.pread(PAGE, i * PAGE) == data, f"page {i} damaged after ENOSPC"
    expect_error("multi-page write past the limit", (errno.ENOSPC,), h.pwrite,
                 rng.randbytes(16 * PAGE), (full + 10) * PAGE)
    # Zeros and same-filled pages hold no pool memory: they still fit.
    h.zero(1 << 20, 32 << 20, nbd.CMD_FLAG_NO_HOLE)
    h.pwrite(b"\x77" * (1 << 20), 40 << 20)
    assert h.pread(1 << 20, 40 << 20) == b"\x77" * (1 << 20)
    # Trim half of what was written: writes succeed again.
    h.trim((full // 2) * PAGE, 0)
    for i in range(full // 4):
        h.pwrite(rng.randbytes(PAGE), (full + 100 + i) * PAGE)
    for i, data in pages.items():
        if i >= full // 2:
            assert h.pread(PAGE, i * PAGE) == data, f"page {i} damaged by the trim"
    h.shutdown()
    srv.stop()


def main():
    try:
        size = (8 << 20) + 1234
        srv = Server("edge", f"size={size}")
        test_bounds(srv, size)
        test_model(srv, size, seed=1, ops=2000)
        test_fua_flush(srv)
        test_concurrent(srv, size)
        srv.stop()
        # The same through the device's workers and zstd, and with lzo.
        srv = Server("edge-workers", f"size={size}", "algorithm=zstd", "workers=2")
        test_model(srv, size, seed=2, ops=1000)
        test_concurrent(srv, size)
        test_fua_flush(srv)
        srv.stop()
        srv = Server("edge-lzo", "size=3M", "algorithm=lzo")
        test_model(srv, 3 << 20, seed=3, ops=300)
        srv.stop()
        # Multi-page objects (object_pages 4 and 16): the same model and concurrent clients.
        for n, algo, seed in ((4, "zstd", 4), (16, "lz4", 5), (1, "lz4", 6)):
            srv = Server(f"edge-obj{n}", f"size={size}", f"algorithm={algo}", f"object_pages={n}")
            test_model(srv, size, seed=seed, ops=1500)
            test_concurrent(srv, size)
            srv.stop()
        test_mem_limit()
    finally:
        for s in list(SERVERS):
            s.proc.kill()
        if os.environ.get("UZ_KEEP_TMP"):
            print("kept", TMP)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    print("nbd_edge: ok")


if __name__ == "__main__":
    main()
