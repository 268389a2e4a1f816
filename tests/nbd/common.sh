# SPDX-License-Identifier: MIT
# common.sh - sourced by the NBD integration tests: skips (exit 77) when a client is missing,
# starts nbdkit servers on private Unix sockets under a temporary directory, and stops them and
# removes everything on exit, however the test ends.
#
# Environment (set by tests/nbd/meson.build): UZ_PLUGIN (the plugin .so), UZRAMCTL, UZ_PRELOAD
# (libraries nbdkit runs with, e.g. libasan for the ASan twin), UZ_CORPUS_DIR.
set -eu
# Debian's python3 is the one with the nbd module (python3-libnbd); nbdsh runs "python3".
PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
export PATH

: "${UZ_PLUGIN:?UZ_PLUGIN must name nbdkit-uzram-plugin.so}"
UZ_PRELOAD=${UZ_PRELOAD:-}

skip() {
    echo "SKIP: $*"
    exit 77
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
need() {
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (scripts/install-deps)"
    done
}
need nbdkit
[ -f "$UZ_PLUGIN" ] || skip "$UZ_PLUGIN was not built"

tmp=$(mktemp -d /tmp/uzram-nbd.XXXXXX)
servers=""
cleanup() {
    for pid in $servers; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $servers; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${UZ_KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME ARGS...: nbdkit with the plugin on $tmp/NAME.sock; sets $uri and $sock; the log
# is $tmp/NAME.log. Waits until the socket accepts connections.
start() {
    name=$1
    shift
    sock=$tmp/$name.sock
    uri="nbd+unix:///?socket=$sock"
    rm -f "$tmp/$name.pid" "$sock"
    LD_PRELOAD=$UZ_PRELOAD nbdkit -f --exit-with-parent -U "$sock" -P "$tmp/$name.pid" \
        "$UZ_PLUGIN" "$@" >"$tmp/$name.log" 2>&1 &
    servers="$servers $!"
    for _ in $(seq 1 200); do
        [ -s "$tmp/$name.pid" ] && return 0
        kill -0 $! 2>/dev/null || {
            cat "$tmp/$name.log" >&2
            fail "nbdkit $* did not start"
        }
        sleep 0.05
    done
    fail "nbdkit $* did not start in 10 s"
}

# stop NAME: stops that server and waits for it; fails if it did not exit cleanly or if its log
# has a sanitizer report.
stop() {
    pid=$(cat "$tmp/$1.pid")
    kill "$pid"
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    # An ASan error, or a leak whose stack passes through our code (nbdkit 1.32 itself leaks a
    # few bytes at exit, in its own frames only).
    if grep -q "ERROR: AddressSanitizer\|runtime error:" "$tmp/$1.log" ||
        sed -n '/ERROR: LeakSanitizer/,$p' "$tmp/$1.log" | grep -q "uzram\|plugin_ctl"; then
        cat "$tmp/$1.log" >&2
        fail "sanitizer report in $1's log"
    fi
}

# image FILE MIB: writes MIB MiB of test data: real memory pages from the corpus when there,
# else real files (libraries, documentation), with zero runs and random runs in between.
image() {
    file=$1
    mib=$2
    corpus=${UZ_CORPUS_DIR:-/nonexistent}
    if [ -f "$corpus/py-64m.img.zst" ] && command -v zstd >/dev/null 2>&1; then
        zstd -dc "$corpus/py-64m.img.zst" | head -c $((mib << 20)) >"$file"
    else
        : >"$file"
        for f in /usr/lib/x86_64-linux-gnu/*.so* /usr/share/doc/*/copyright /usr/bin/*; do
            [ -f "$f" ] || continue
            cat "$f" >>"$file" 2>/dev/null || true
            [ "$(stat -c %s "$file")" -ge $((mib << 20)) ] && break
        done
        truncate -s $((mib << 20)) "$file"
    fi
    # A run of zeros and one of random bytes, so copies must keep holes and raw pages apart.
    dd if=/dev/zero of="$file" bs=1M seek=$((mib / 4)) count=$((mib / 8)) conv=notrunc \
        status=none
    dd if=/dev/urandom of="$file" bs=1M seek=$((mib / 2)) count=1 conv=notrunc status=none
}
