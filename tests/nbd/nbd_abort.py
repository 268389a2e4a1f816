# SPDX-License-Identifier: MIT
"""nbd_abort.py SOCKET NBDKIT_PID [ROUNDS] - clients that vanish with requests in flight.

A raw NBD client (fixed newstyle handshake, simple replies) writes a known pattern, then ROUNDS
(500) times connects, pipelines 64 reads of 64 KiB, takes part of the first reply and resets
the connection (SO_LINGER 0: the server's next send gets ECONNRESET/EPIPE). nbdkit 1.32 aborts
on this ("raw_send_socket: Assertion 'sock >= 0' failed") when one connection's requests run in
parallel; the plugin serializes them there (parallel=auto). Afterwards nbdkit must still be
running and serve the pattern intact.
"""
import os
import socket
import struct
import sys
import time

SOCK, PID = sys.argv[1], int(sys.argv[2])
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 500
SIZE = 4 << 20
READ = 64 << 10
PIPELINE = 64

REQUEST_MAGIC, SIMPLE_REPLY_MAGIC = 0x25609513, 0x67446698
CMD_READ, CMD_WRITE, CMD_DISC = 0, 1, 2


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def alive(pid):
    try:  # nbdkit may be our child (nbd_abort.sh execs python): a dead one is a zombie
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    except ChildProcessError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed the connection")
        buf += chunk
    return bytes(buf)


def connect():
    """Fixed newstyle handshake with NBD_OPT_EXPORT_NAME; returns (socket, export size)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(SOCK)
    magic, opt_magic, _flags = struct.unpack(">8s8sH", recv_exact(s, 18))
    if magic != b"NBDMAGIC" or opt_magic != b"IHAVEOPT":
        fail("not an NBD newstyle server: %r %r" % (magic, opt_magic))
    s.sendall(struct.pack(">I", 1 | 2))  # FIXED_NEWSTYLE | NO_ZEROES
    s.sendall(b"IHAVEOPT" + struct.pack(">II", 1, 0))  # NBD_OPT_EXPORT_NAME ""
    size, _tflags = struct.unpack(">QH", recv_exact(s, 10))
    return s, size


def request(s, cmd, handle, offset, length, data=b""):
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, handle, offset, length) + data)


def reply(s, handle, length):
    magic, err, h = struct.unpack(">IIQ", recv_exact(s, 16))
    if magic != SIMPLE_REPLY_MAGIC or err or h != handle:
        fail("bad reply: magic %#x error %d handle %d" % (magic, err, h))
    return recv_exact(s, length)


def pattern():
    page = bytearray()
    for i in range(SIZE // 4096):  # compressible, and different on every page
        page += ((b"page %08d " % i) * 300)[:4096]
    return bytes(page)


data = pattern()
s, size = connect()
if size < SIZE:
    fail("export too small: %d" % size)
for i in range(0, SIZE, 1 << 20):
    request(s, CMD_WRITE, i, i, 1 << 20, data[i : i + (1 << 20)])
    reply(s, i, 0)
request(s, CMD_DISC, 0, 0, 0)
s.close()

t = time.monotonic()
for r in range(ROUNDS):
    try:
        s, _ = connect()
        reqs = b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, k,
                                    (k * READ) % SIZE, READ) for k in range(PIPELINE))
        s.sendall(reqs)
        s.recv(100)  # part of the first reply: the others are being sent
    except (OSError, EOFError) as e:
        if not alive(PID):
            fail("nbdkit died in round %d (%s)" % (r, e))
        fail("round %d: %s" % (r, e))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # a reset, with replies in flight
    if not alive(PID):
        fail("nbdkit died after round %d" % r)
print("%d abrupt disconnects in %.1f s" % (ROUNDS, time.monotonic() - t))

time.sleep(0.2)
if not alive(PID):
    fail("nbdkit died")
s, _ = connect()
for k, off in enumerate(range(0, SIZE, READ)):
    request(s, CMD_READ, k, off, READ)
    if reply(s, k, READ) != data[off : off + READ]:
        fail("wrong data at %d after the disconnects" % off)
request(s, CMD_DISC, 0, 0, 0)
s.close()
print("nbd_abort: ok")
