# SPDX-License-Identifier: MIT
"""nbd_ctl.py CTL_SOCKET NBDKIT_PID UZRAMCTL - hostile ctl clients (run by nbd_ctl.sh).

Each check fails (exit 1) when a good client waits more than GOOD_S for its answer while a bad
client holds on, when a bad client is not cut off by the server's deadline (UZ_CTL_DEADLINE_MS,
3 s, plus slack), or when nbdkit takes a second or more to stop on SIGTERM.
"""
import os
import signal
import socket
import subprocess
import sys
import time

CTL, PID, UZRAMCTL = sys.argv[1], int(sys.argv[2]), sys.argv[3]
DEADLINE_S = 3.0  # support/ctl/ctl_proto.h UZ_CTL_DEADLINE_MS
GOOD_S = 1.0  # a good client's answer may take this long at most
CLIENTS_MAX = 16  # UZ_CTL_CLIENTS_MAX
# UZ_CTL_CHECKS=2,3: run only those checks (to see each fail alone against an old plugin).
CHECKS = os.environ.get("UZ_CTL_CHECKS", "1,2,3,4,5").split(",")


def alive(pid):
    """nbdkit is this process's child (nbd_ctl.sh execs python): reap it, or it stays a zombie."""
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(CTL)
    return s


def good_client(what):
    """uzramctl get initstate must answer 1 within GOOD_S."""
    t = time.monotonic()
    try:
        r = subprocess.run([UZRAMCTL, "--timeout", "5", "--socket", CTL, "get", "initstate"],
                           capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        fail(what + ": uzramctl hung")
    dt = time.monotonic() - t
    if r.returncode != 0 or r.stdout.strip() != "1":
        fail("%s: uzramctl: rc %d, %r %r" % (what, r.returncode, r.stdout, r.stderr))
    if dt > GOOD_S:
        fail("%s: a good client waited %.2f s" % (what, dt))


def wait_closed(s, what, limit):
    """Reads (and drops) whatever comes until EOF; fails if EOF takes longer than limit."""
    t = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - t < limit:
        try:
            if not s.recv(65536):
                return time.monotonic() - t
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t
    fail("%s: not cut off after %.1f s" % (what, limit))


def never_reads():
    """Pipelines requests with big replies and never reads: the server's socket buffer fills."""
    s = connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    req = b"get pool_stat\nget mm_stat\nlist\n" * 200
    sent = 0
    t = time.monotonic()
    while sent < len(req) and time.monotonic() - t < 1:
        try:
            sent += s.send(req[sent:])
        except BlockingIOError:
            time.sleep(0.01)
    return s


# 1. A client that sends requests and never reads does not hold up another one; the server
#    drops it at its deadline.
def check_1():
    bad = never_reads()
    time.sleep(0.2)
    good_client("never-reading client")
    dt = wait_closed(bad, "never-reading client", DEADLINE_S + 2)
    print("never-reading client cut off after %.2f s" % dt)
    bad.close()


# 2. An idle client does not delay a second one, and is cut off at its deadline.
def check_2():
    idle = connect()
    time.sleep(0.2)
    good_client("idle client")
    dt = wait_closed(idle, "idle client", DEADLINE_S + 2)
    print("idle client cut off after %.2f s" % dt)


# 3. A client trickling a byte every 0.5 s (an idle timer would never fire) is cut off by the
#    absolute deadline of its request.
def check_3():
    trickle = connect()
    t = time.monotonic()
    closed = False
    for ch in b"get mm_stat" * 4:
        try:
            trickle.send(bytes([ch]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        trickle.settimeout(0.5)
        try:
            if not trickle.recv(4096):
                closed = True
                break
        except socket.timeout:
            pass
        if time.monotonic() - t > DEADLINE_S + 2:
            break
    dt = time.monotonic() - t
    if not closed:
        fail("trickling client not cut off after %.1f s" % dt)
    print("trickling client cut off after %.2f s" % dt)
    trickle.close()


# 4. More clients than the server takes: the extra one is told (EUSERS) at once, and the server
#    serves again when they go.
def check_4():
    crowd = [connect() for _ in range(CLIENTS_MAX)]
    time.sleep(0.2)
    extra = connect()
    extra.settimeout(GOOD_S)
    try:
        answer = extra.recv(4096)
    except socket.timeout:
        fail("client over the limit: no answer")
    if not answer.startswith(b"err %d " % 87):  # EUSERS
        fail("client over the limit: %r" % answer)
    extra.close()
    for s in crowd:
        s.close()
    time.sleep(0.2)
    good_client("after the crowd left")


# 5. SIGTERM stops nbdkit within a second while clients are stuck: one never reading, one idle,
#    one halfway through a request.
def check_5():
    stuck = [never_reads(), connect(), connect()]
    stuck[2].send(b"get mm_")
    time.sleep(0.3)
    t = time.monotonic()
    os.kill(PID, signal.SIGTERM)
    while time.monotonic() - t < 5 and alive(PID):
        time.sleep(0.01)
    dt = time.monotonic() - t
    if dt >= 1.0:
        fail("nbdkit took %.2f s to stop on SIGTERM with stuck ctl clients" % dt)
    print("nbdkit stopped %.3f s after SIGTERM" % dt)


for k, check in enumerate([check_1, check_2, check_3, check_4, check_5], 1):
    if str(k) in CHECKS:
        check()
print("nbd_ctl: ok")
