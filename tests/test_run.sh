#!/bin/sh
# SPDX-License-Identifier: MIT
# uzram-run over an ordinary program (test_run_prog.c), one case per area, under a resident
# limit well below what the program uses. Exit 0 pass, 1 fail, 77 skip (no userfaultfd here).
# usage: test_run.sh UZRAM_RUN PRELOAD PROG STATIC_PROG|- [UZRAMCTL]
set -u
RUN=$1
export UZRAM_PRELOAD=$2
PROG=$3
STATIC=$4
CTL=${5:-}
tmp=$(mktemp -d)
held=
trap 'for p in $held; do kill -9 "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# The probe: a region can be created here (FULL mode, or the test is skipped).
"$RUN" --limit 64M --size 1G -- "$PROG" exit 0 2>"$tmp/probe"
rc=$?
if [ $rc -ne 0 ]; then
    cat "$tmp/probe"
    if grep -q "cannot create a userfaultfd region\|user-mode only" "$tmp/probe"; then
        echo "skip: no FULL-mode userfaultfd"
        exit 77
    fi
    exit 1
fi

run() { # name, expected status, uzram-run options..., -- prog args
    name=$1; want=$2; shift 2
    timeout 120 "$RUN" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" = "$want" ]; then ok "$name"; else
        bad "$name (status $got, want $want)"; cat "$tmp/out" "$tmp/err"; fi
}

# 256 MiB of mixed sizes and alignments under a 64 MiB limit, every byte verified; it swapped.
run memtest 0 --limit 64M --size 2G --stats -- "$PROG" memtest 256
stats=$(grep '^resident_bytes=' "$tmp/err")
echo "     $stats"
for k in resident_bytes swapped_pages orig_bytes compr_bytes mem_used major_faults \
         minor_faults wp_faults throttled forks mode; do
    echo "$stats" | grep -q " *$k=" || bad "--stats has no $k="
done
swapped=$(echo "$stats" | sed -n 's/.*swapped_pages=\([0-9]*\).*/\1/p')
[ "${swapped:-0}" -gt 0 ] && ok "memtest swapped ($swapped pages)" || bad "memtest swapped nothing"
echo "$stats" | grep -q "mode=full" || bad "mode is not full"

for area in align calloc foreign threads fork spawn fds mmap syscalls; do
    run "$area" 0 --limit 32M --size 1G -- "$PROG" "$area"
done
grep -q "forks=" "$tmp/err" && bad "--stats not asked for but printed" || true
run "fork --stats" 0 --limit 32M --size 1G --stats -- "$PROG" fork
[ "$(grep -c '^resident_bytes=' "$tmp/err")" = 1 ] || bad "--stats printed $(grep -c '^resident_bytes=' "$tmp/err") lines, want 1"
grep -q "forks=1 " "$tmp/err" && ok "forks=1" || bad "forks= not 1: $(cat "$tmp/err")"

# --stats through a wrapper that execs the program (pyenv's shims do): the line is the last
# image's, and a child the wrapper forks first prints none (dash itself leaves with _exit).
run "--stats through exec" 0 --limit 32M --size 1G --stats -- /bin/sh -c "exec \"$PROG\" memtest 64"
[ "$(grep -c '^resident_bytes=' "$tmp/err")" = 1 ] || bad "--stats through exec printed $(grep -c '^resident_bytes=' "$tmp/err") lines, want 1"
grep -q "swapped_pages=0 " "$tmp/err" && bad "--stats through exec: not the program's line: $(cat "$tmp/err")"
run "--stats through a child" 0 --limit 32M --size 1G --stats -- /bin/sh -c "\"$PROG\" exit 0; exec \"$PROG\" exit 0"
[ "$(grep -c '^resident_bytes=' "$tmp/err")" = 1 ] || bad "--stats through a child printed $(grep -c '^resident_bytes=' "$tmp/err") lines, want 1"

# A program that allocates nothing gets no region (it is made by the first malloc-family call)
# and still its --stats line, zeros and the mode.
run "--stats, nothing allocated" 0 --size 1G --stats -- /bin/true
grep -q "^resident_bytes=0 .*mode=full" "$tmp/err" || bad "--stats of /bin/true: $(cat "$tmp/err")"

# mlockall(MCL_CURRENT) and (MCL_FUTURE) under a limit: the heap still swaps, nothing hangs.
run mlockall 0 --limit 32M --size 1G --stats -- "$PROG" mlock
grep -q "swapped_pages=0 " "$tmp/err" && bad "mlockall: nothing swapped: $(cat "$tmp/err")"

# The exit status passes through; a program not found is 127 (as env(1)).
run "exit 42" 42 --size 1G -- "$PROG" exit 42
run "not found" 127 --size 1G -- /nonexistent/program
run "bad size" 125 --limit 12Q -- "$PROG" exit 0

# --no-children: the child has no preload in LD_PRELOAD; without it, it has.
run "children" 0 --size 1G -- /bin/sh -c 'case "$LD_PRELOAD" in *uzram-preload*) exit 0;; esac; exit 9'
run "no-children" 0 --size 1G --no-children -- /bin/sh -c 'case "$LD_PRELOAD" in *uzram-preload*) exit 9;; esac; exit 0'
# An existing LD_PRELOAD is kept, after ours.
LD_PRELOAD=libc.so.6 run "LD_PRELOAD kept" 0 --size 1G -- /bin/sh -c 'case "$LD_PRELOAD" in *uzram-preload.so:libc.so.6) exit 0;; esac; exit 9'

# Refused: a static program, a setuid copy.
if [ "$STATIC" != - ]; then
    run "static refused" 125 --size 1G -- "$STATIC"
    grep -q "statically linked" "$tmp/err" || bad "static: message: $(cat "$tmp/err")"
fi
cp "$PROG" "$tmp/suid" && chmod u+s "$tmp/suid"
run "setuid refused" 125 --size 1G -- "$tmp/suid" exit 0
grep -q "set-user-ID" "$tmp/err" || bad "setuid: message: $(cat "$tmp/err")"

# userfaultfd denied by seccomp: the program runs uncompressed, with one line on stderr.
if [ -n "${UZT_RUN_SECCOMP:-}" ]; then
    timeout 60 "$UZT_RUN_SECCOMP" "$UZRAM_PRELOAD" "$PROG" memtest 32 >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ $got = 77 ]; then echo "skip seccomp (no seccomp here)"
    elif [ $got = 0 ] && grep -q "running uncompressed" "$tmp/err" &&
         [ "$(wc -l <"$tmp/err")" = 1 ]; then ok "seccomp: runs uncompressed"
    else bad "seccomp (status $got)"; cat "$tmp/out" "$tmp/err"; fi
fi

# C++: aligned new 16 B..64 KiB, containers and exceptions across threads (if built).
if [ -n "${UZT_RUN_CXX:-}" ]; then
    run "c++" 0 --limit 32M --size 1G -- "$UZT_RUN_CXX"
fi

# python3 (a real runtime: its arenas are mmaps) under a limit, verified.
if [ -x /usr/bin/python3 ]; then
    run python3 0 --limit 32M --size 2G -- /usr/bin/python3 -c '
import os
d = {i: str(i) * 20 for i in range(400000)}
assert all(d[i] == str(i) * 20 for i in range(400000))
pid = os.fork()
if pid == 0:
    os._exit(0 if d[1234] == "1234" * 20 else 3)
assert os.waitpid(pid, 0)[1] == 0
os.closerange(3, 65536)
assert sum(len(v) for v in d.values()) == sum(len(str(i)) * 20 for i in range(400000))
'
    # fork from a multithreaded parent (threads allocating meanwhile), 10 times.
    run "python3 fork from threads" 0 --limit 32M --size 2G -- /usr/bin/python3 -c '
import os, threading
stop = False
def churn(k):
    x = []
    while not stop:
        x.append(bytes(5000 + k) * 3)
        if len(x) > 2000: x = x[1000:]
d = {i: str(i) * 20 for i in range(200000)}
ts = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
for t in ts: t.start()
for n in range(10):
    pid = os.fork()
    if pid == 0:
        ok = d[777] == "777" * 20 and len([bytes(1000) for _ in range(2000)]) == 2000
        os._exit(0 if ok else 3)
    assert os.waitpid(pid, 0)[1] == 0
stop = True
for t in ts: t.join()
'
fi
# Live statistics: `uzramctl run` reads the @uzram-run/<pid> socket of a running program and of
# its forked child; another uid is refused; the socket goes with the process.
if [ -n "$CTL" ]; then
    # hold_start OUT uzram-run args...: starts it in the background, waits for "ready PID CHILD".
    hold_start() {
        out=$1; shift
        timeout 90 "$RUN" "$@" >"$out" 2>"$out.err" &
        held="$held $!"
        i=0
        while ! grep -q '^ready' "$out" && [ $i -lt 300 ] && kill -0 $! 2>/dev/null; do
            sleep 0.1; i=$((i + 1))
        done
        read -r _ pid child <"$out" || { pid=; child=; }
        held="$held ${pid:-} ${child:-}"
    }
    hold_start "$tmp/hold" --limit 32M --size 1G -- "$PROG" hold 64 60 fork
    if [ -z "${pid:-}" ] || [ "${child:-0}" = 0 ]; then
        bad "hold: never ready"; cat "$tmp/hold" "$tmp/hold.err"
    else
        ctl() { timeout 20 "$CTL" "$@"; }
        ctl run "$pid" >"$tmp/out" 2>"$tmp/err"; got=$?
        orig=$(awk -v p="$pid" '$1 == p { print $4 }' "$tmp/out")
        head -1 "$tmp/out" | grep -q '^ *PID  *RESIDENT  *SWAPPED  *ORIG  *COMPR  *MEM-USED  *MAJFLT  *MODE  *COMMAND$' ||
            bad "run PID: header: $(head -1 "$tmp/out")"
        if [ $got = 0 ] && [ -n "$orig" ] && [ "$orig" != 0B ]; then ok "run PID (ORIG $orig)"
        else bad "run PID (status $got, ORIG '$orig')"; cat "$tmp/out" "$tmp/err"; fi
        if ctl run -J "$pid" >"$tmp/json" 2>"$tmp/err" && python3 -m json.tool "$tmp/json" >/dev/null &&
           python3 -c '
import json, sys
(p,) = json.load(open(sys.argv[1]))
keys = "pid resident_bytes swapped_pages orig_bytes compr_bytes mem_used major_faults " \
       "minor_faults wp_faults throttled forks mode command".split()
assert all(k in p for k in keys), [k for k in keys if k not in p]
assert p["pid"] == int(sys.argv[2]) and p["orig_bytes"] > 0 and p["forks"] == 1, p
assert p["mode"] == "full", p
' "$tmp/json" "$pid"; then ok "run -J PID"
        else bad "run -J PID"; cat "$tmp/json" "$tmp/err"; fi
        ctl run -J "$child" >"$tmp/json" 2>"$tmp/err" &&
            python3 -c '
import json, sys
(p,) = json.load(open(sys.argv[1]))
assert p["pid"] == int(sys.argv[2]) and p["orig_bytes"] > 0 and p["forks"] == 0, p
' "$tmp/json" "$child" && ok "run CHILD (the forked child's own socket)" ||
            { bad "run CHILD"; cat "$tmp/json" "$tmp/err"; }
        ctl run >"$tmp/out" 2>"$tmp/err"
        awk '{ print $1 }' "$tmp/out" | grep -qx "$pid" && awk '{ print $1 }' "$tmp/out" | grep -qx "$child" &&
            ok "run (lists parent and child)" || { bad "run: list"; cat "$tmp/out" "$tmp/err"; }
        # Another uid is refused (when root can become nobody and nobody can run uzramctl).
        if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
           setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" --version >/dev/null 2>&1; then
            timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" run "$pid" \
                >"$tmp/out" 2>"$tmp/err"; got=$?
            if [ $got = 1 ] && grep -q "permission denied" "$tmp/err" && ! [ -s "$tmp/out" ]; then
                ok "run PID as another uid: refused"
            else bad "run PID as another uid (status $got)"; cat "$tmp/out" "$tmp/err"; fi
        else
            echo "skip run as another uid (not root, no setpriv, or uzramctl not runnable as nobody)"
        fi
        # Not a uzram-run process: a message and status 1.
        ctl run $$ >"$tmp/out" 2>"$tmp/err"; got=$?
        [ $got = 1 ] && grep -q "not a uzram-run process" "$tmp/err" && ok "run non-uzram PID: refused" ||
            { bad "run non-uzram PID (status $got)"; cat "$tmp/out" "$tmp/err"; }
        # An exec'd child (sh forks and execs the program): its own region and socket.
        hpid=$pid hchild=$child
        hold_start "$tmp/exec" --limit 8M --size 1G -- /bin/sh -c '"$0" hold 32 60; exit 0' "$PROG"
        if [ -n "${pid:-}" ] && ctl run -J "$pid" >"$tmp/json" 2>"$tmp/err" &&
           python3 -c '
import json, sys
(p,) = json.load(open(sys.argv[1]))
assert p["pid"] == int(sys.argv[2]) and p["orig_bytes"] > 0 and "hold" in p["command"], p
' "$tmp/json" "$pid"; then ok "run EXECD (an exec'd child's own socket)"
        else bad "run EXECD"; cat "$tmp/exec" "$tmp/exec.err" "$tmp/json" "$tmp/err"; fi
        [ -n "${pid:-}" ] && kill "$pid"
        pid=$hpid child=$hchild
        # Gone with the process.
        kill "$pid" "$child" 2>/dev/null
        wait 2>/dev/null
        i=0
        while kill -0 "$child" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        if grep -q "@uzram-run/$pid\$\|@uzram-run/$child\$" /proc/net/unix; then bad "sockets left after exit"
        else
            ctl run "$pid" >/dev/null 2>&1; got=$?
            [ $got = 1 ] && ok "socket gone after exit" || bad "run after exit: status $got"
        fi
        held=
    fi
fi

# USER_ONLY: as an unprivileged user where the sysctl is 0 (stock Debian), uzram-run refuses
# without --allow-user-only and says what to change; with it, the program runs and the preload
# pins region memory around the system calls it makes on it (test_run_prog syscalls: buffers,
# paths, exec arguments, futex waits, an alternate signal stack, all swapped out first), and
# python3, node and Java run verified. The binaries are copied where nobody can read them.
uo_skip=
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then uo_skip="not root, or no setpriv"
elif [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" != 0 ]; then
    uo_skip="vm.unprivileged_userfaultfd is not 0 (unprivileged users get FULL mode)"
fi
if [ -z "$uo_skip" ]; then
    uo=$tmp/uo
    mkdir -p "$uo/tmp" && cp "$RUN" "$uo/uzram-run" && cp "$UZRAM_PRELOAD" "$uo/libuzram-preload.so" &&
        cp "$PROG" "$uo/prog" && chmod 755 "$tmp" "$uo" && chmod 1777 "$uo/tmp" &&
        chmod 755 "$uo/uzram-run" "$uo/libuzram-preload.so" "$uo/prog" || uo_skip="cannot copy"
    nobody() { timeout 120 setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$uo/tmp" \
                   TMPDIR="$uo/tmp" UZRAM_PRELOAD="$uo/libuzram-preload.so" "$uo/uzram-run" "$@"; }
    if [ -z "$uo_skip" ] &&
       setpriv --reuid=65534 --regid=65534 --clear-groups test -r /dev/userfaultfd -a -w /dev/userfaultfd; then
        uo_skip="nobody may open /dev/userfaultfd (FULL mode)"
    fi
fi
if [ -n "$uo_skip" ]; then
    echo "skip user-only cases: $uo_skip"
else
    urun() { # name, expected status, uzram-run options..., -- prog args
        name=$1; want=$2; shift 2
        nobody "$@" >"$tmp/out" 2>"$tmp/err"
        got=$?
        if [ "$got" = "$want" ]; then ok "user-only: $name"; else
            bad "user-only: $name (status $got, want $want)"; cat "$tmp/out" "$tmp/err"; fi
    }
    urun refused 125 --size 1G -- "$uo/prog" exit 0
    grep -q "user-mode only" "$tmp/err" && grep -q "sysctl vm.unprivileged_userfaultfd=1" "$tmp/err" &&
        grep -q -- "--allow-user-only" "$tmp/err" || bad "user-only: refusal message: $(cat "$tmp/err")"
    urun memtest 0 --allow-user-only --limit 64M --size 2G --stats -- "$uo/prog" memtest 256
    grep -q "mode=user_only" "$tmp/err" || bad "user-only: mode is not user_only: $(cat "$tmp/err")"
    grep -q "swapped_pages=0 " "$tmp/err" && bad "user-only: memtest swapped nothing"
    for area in align calloc foreign threads fork spawn fds mmap syscalls; do
        urun "$area" 0 --allow-user-only --limit 32M --size 1G -- "$uo/prog" "$area"
    done
    if [ -x /usr/bin/python3 ]; then
        urun python3 0 --allow-user-only --limit 32M --size 2G --stats -- /usr/bin/python3 -c '
import os, subprocess, threading, queue
d = {i: str(i) * 20 for i in range(400000)}
assert all(d[i] == str(i) * 20 for i in range(400000))
p = os.path.join(os.environ["TMPDIR"], "py.%d" % os.getpid())
blob = bytes(range(256)) * 20000
with open(p, "wb") as f: f.write(blob)
with open(p, "rb") as f: assert f.read() == blob
assert os.path.basename(p) in os.listdir(os.environ["TMPDIR"])
os.unlink(p)
q = queue.Queue()
ts = [threading.Thread(target=lambda k=k: q.put(sum(len(d[i]) for i in range(k, 400000, 4)))) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
assert sum(q.get() for _ in ts) == sum(len(v) for v in d.values())
assert subprocess.run(["sh", "-c", "exit 7"]).returncode == 7
pid = os.fork()
if pid == 0: os._exit(0 if d[4321] == "4321" * 20 else 3)
assert os.waitpid(pid, 0)[1] == 0
'
        grep -q "swapped_pages=0 " "$tmp/err" && bad "user-only: python3 swapped nothing: $(cat "$tmp/err")"
    fi
    if [ -x /usr/bin/node ]; then
        urun node 0 --allow-user-only --limit 48M --size 4G -- /usr/bin/node -e '
const fs = require("fs"), p = process.env.TMPDIR + "/node." + process.pid;
const a = []; for (let i = 0; i < 1000000; i++) a.push({k: i, v: "x" + i});
const b = Buffer.alloc(16 << 20, 7); fs.writeFileSync(p, b);
const c = fs.readFileSync(p); fs.unlinkSync(p);
if (!c.equals(b)) process.exit(3);
for (let i = 0; i < a.length; i++) if (a[i].v !== "x" + i) process.exit(4);'
    fi
    if [ -x /usr/bin/java ]; then
        cat >"$uo/tmp/J.java" <<'EOF'
import java.util.*;
import java.nio.file.*;
public class J {
    public static void main(String[] args) throws Exception {
        HashMap<Integer, String> m = new HashMap<>();
        for (int i = 0; i < 1000000; i++) m.put(i, "v" + i);
        byte[] b = new byte[8 << 20];
        Arrays.fill(b, (byte) 5);
        Path p = Paths.get(System.getenv("TMPDIR"), "j" + ProcessHandle.current().pid());
        Files.write(p, b);
        byte[] c = Files.readAllBytes(p);
        Files.delete(p);
        if (!Arrays.equals(b, c)) System.exit(3);
        for (int i = 0; i < 1000000; i++) if (!m.get(i).equals("v" + i)) System.exit(4);
    }
}
EOF
        chmod 644 "$uo/tmp/J.java"
        urun java 0 --allow-user-only --limit 64M --size 8G -- /usr/bin/java "$uo/tmp/J.java"
    fi
fi
exit $fail
