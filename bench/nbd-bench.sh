#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd-bench.sh - uzram's NBD benchmark: nbdcopy of an image into and back out of fresh 1 GiB
# exports on Unix sockets, served by
#   uzram-lz4, uzram-zstd    nbdkit + nbdkit-uzram-plugin.so (algorithm=lz4 / zstd), default
#                            keys: on nbdkit < 1.34 the requests of a connection are serialized
#   uzram-zstd-obj4          uzram-zstd with object_pages=4 (multi-page objects)
#   uzram-zstd-obj4-par      uzram-zstd-obj4 with parallel=on
#   uzram-lz4-par            uzram-lz4 with parallel=on (what the serialization costs; this
#                            nbdkit may abort when a client disconnects abruptly, not here)
#   memory-sparse            nbdkit memory 1G                  (the baseline)
#   memory-zstd              nbdkit memory 1G allocator=zstd
# Each repetition starts every server afresh and runs them in turn, so machine noise spreads
# evenly. Write: nbdcopy IMAGE URI (its defaults: 4 connections, 64 requests of 256 KiB in
# flight). Read: nbd-read.py reads the image's bytes back the same way (nbdcopy out of the
# 1 GiB export would need block status, which crashes memory-zstd). Per server it prints one
# line: the medians over the repetitions, the nbdkit process's VmRSS after both, and the ratios
# against memory-sparse (and, for uzram-zstd, memory-zstd) from the same run, then a line with
# the targets for uzram-lz4 (write >= 0.7, read >= 0.9, RSS <= 0.5 of memory-sparse). The first
# read-back of each server is also compared with the image (outside the timing).
#
#   bench/nbd-bench.sh [-r RUNS] [-p PLUGIN] [-s SERVERS] [-o OPTS] [-c CONNECTIONS] IMAGE...
#
# IMAGE is raw pages or a .zst of them. PLUGIN defaults to build/plugin/nbdkit-uzram-plugin.so;
# SERVERS is a space-separated subset of the names above; OPTS are extra plugin keys (e.g.
# "workers=2"); CONNECTIONS is the client's (default 4, nbdcopy's; 1 shows what serializing the
# requests of one connection costs a single-connection client).
set -eu
PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH # Debian's tools first
here=$(cd "$(dirname "$0")/.." && pwd)
runs=5
plugin=$here/build/plugin/nbdkit-uzram-plugin.so
servers="uzram-lz4 memory-sparse memory-zstd uzram-zstd"
opts=""
conns=4
while getopts r:p:s:o:c: o; do
    case $o in
    r) runs=$OPTARG ;;
    p) plugin=$OPTARG ;;
    s) servers=$OPTARG ;;
    o) opts=$OPTARG ;;
    c) conns=$OPTARG ;;
    *)
        echo "usage: $0 [-r RUNS] [-p PLUGIN] [-s SERVERS] [-o OPTS] [-c CONNECTIONS] IMAGE..." >&2
        exit 2
        ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r RUNS] [-p PLUGIN] [-s SERVERS] [-o OPTS] [-c CONNECTIONS] IMAGE..." >&2; exit 2; }
for t in nbdkit nbdcopy python3; do
    command -v $t >/dev/null || { echo "nbd-bench: $t is missing (scripts/install-deps)" >&2; exit 1; }
done
[ -f "$plugin" ] || { echo "nbd-bench: no plugin at $plugin (make build, or -p)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/uzram-bench.XXXXXX)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
export UZ_BENCH_CONNECTIONS=$conns

# serve NAME: starts that server on $tmp/s.sock; sets $pid and $uri.
serve() {
    rm -f "$tmp/s.sock" "$tmp/s.pid"
    case $1 in
    uzram-lz4) set -- "$plugin" size=1G algorithm=lz4 $opts ;;
    uzram-zstd) set -- "$plugin" size=1G algorithm=zstd $opts ;;
    uzram-zstd-obj4) set -- "$plugin" size=1G algorithm=zstd object_pages=4 $opts ;;
    uzram-zstd-obj4-par) set -- "$plugin" size=1G algorithm=zstd object_pages=4 parallel=on $opts ;;
    uzram-lz4-par) set -- "$plugin" size=1G algorithm=lz4 parallel=on $opts ;;
    memory-sparse) set -- memory size=1G ;;
    memory-zstd) set -- memory size=1G allocator=zstd ;;
    *) echo "nbd-bench: unknown server $1" >&2; exit 2 ;;
    esac
    nbdkit -f --exit-with-parent -U "$tmp/s.sock" -P "$tmp/s.pid" "$@" 2>"$tmp/s.log" &
    pid=$!
    while [ ! -s "$tmp/s.pid" ]; do
        kill -0 $pid 2>/dev/null || { cat "$tmp/s.log" >&2; exit 1; }
        sleep 0.02
    done
    uri="nbd+unix:///?socket=$tmp/s.sock"
}

for image in "$@"; do
    name=$(basename "$image")
    name=${name%.zst}
    name=${name%.img}
    src=$image
    case $image in
    *.zst)
        zstd -q -dc "$image" >"$tmp/image"
        src=$tmp/image
        ;;
    esac
    bytes=$(stat -c %s "$src")
    cat "$src" >/dev/null # into the page cache
    : >"$tmp/results"
    for run in $(seq 1 "$runs"); do
        for server in $servers; do
            serve "$server"
            t0=$(now)
            nbdcopy --connections="$conns" "$src" "$uri"
            t1=$(now)
            secs=$(python3 "$here/bench/nbd-read.py" "$uri" "$bytes")
            rss=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$pid/status")
            [ "$run" != 1 ] || python3 "$here/bench/nbd-read.py" "$uri" "$bytes" --verify "$src" \
                >/dev/null || { echo "nbd-bench: $server returned different data" >&2; exit 1; }
            t2=$(echo "$t1 $secs" | awk '{ printf "%.6f", $1 + $2 }')
            kill $pid
            wait $pid 2>/dev/null || true
            pid=""
            echo "$server $t0 $t1 $t2 $rss" >>"$tmp/results"
        done
    done
    python3 - "$tmp/results" "$name" "$bytes" "$runs" "$servers" "$conns" <<'PY'
import statistics, sys
path, image, nbytes, runs, servers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5].split()
conns = sys.argv[6]
res = {}
for line in open(path):
    s, t0, t1, t2, rss = line.split()
    r = res.setdefault(s, {"w": [], "r": [], "rss": []})
    r["w"].append(nbytes / (float(t1) - float(t0)) / 1e6)
    r["r"].append(nbytes / (float(t2) - float(t1)) / 1e6)
    r["rss"].append(int(rss))
med = {s: {k: statistics.median(v) for k, v in r.items()} for s, r in res.items()}
base = med.get("memory-sparse")
for s in servers:
    m = med[s]
    line = (f"image={image} server={s} runs={runs} connections={conns} write_MBps={m['w']:.0f} "
            f"read_MBps={m['r']:.0f} rss_bytes={m['rss']:.0f}")
    if base:
        line += (f" write_vs_sparse={m['w'] / base['w']:.2f} read_vs_sparse={m['r'] / base['r']:.2f}"
                 f" rss_vs_sparse={m['rss'] / base['rss']:.2f}")
    if s in ("uzram-zstd", "uzram-zstd-obj4", "uzram-zstd-obj4-par") and "memory-zstd" in med:
        z = med["memory-zstd"]
        line += (f" write_vs_memzstd={m['w'] / z['w']:.2f} read_vs_memzstd={m['r'] / z['r']:.2f}"
                 f" rss_vs_memzstd={m['rss'] / z['rss']:.2f}")
    if s.startswith("uzram-zstd-obj4") and "uzram-zstd" in med:
        o = med["uzram-zstd"]
        line += (f" write_vs_obj1={m['w'] / o['w']:.2f} read_vs_obj1={m['r'] / o['r']:.2f}"
                 f" rss_vs_obj1={m['rss'] / o['rss']:.2f}")
    if s == "uzram-lz4" and "uzram-lz4-par" in med:
        p = med["uzram-lz4-par"]
        line += f" write_vs_parallel={m['w'] / p['w']:.2f} read_vs_parallel={m['r'] / p['r']:.2f}"
    print(line, flush=True)
# The ceiling: what a server with no codec at all (memory-sparse) reaches over the same nbdkit,
# transport and client, against memory-zstd. A target above it cannot be met by a codec.
for o in ("uzram-zstd-obj4", "uzram-zstd-obj4-par"):
    if o not in med or "memory-zstd" not in med:
        continue
    m, z = med[o], med["memory-zstd"]
    w, r, rss = m["w"] / z["w"], m["r"] / z["r"], m["rss"] / z["rss"]
    line = (f"image={image} targets={o} write_vs_memzstd={w:.2f}>=2.00:"
            f"{'met' if w >= 2 else 'MISSED'} read_vs_memzstd={r:.2f}>=2.00:"
            f"{'met' if r >= 2 else 'MISSED'} rss_vs_memzstd={rss:.2f}<=1.00:"
            f"{'met' if rss <= 1 else 'MISSED'}")
    if base:
        line += (f" ceiling_write_vs_memzstd={base['w'] / z['w']:.2f}"
                 f" ceiling_read_vs_memzstd={base['r'] / z['r']:.2f}")
    print(line, flush=True)
if base and "uzram-lz4" in med:
    m = med["uzram-lz4"]
    w, r, rss = m["w"] / base["w"], m["r"] / base["r"], m["rss"] / base["rss"]
    print(f"image={image} targets=uzram-lz4 write_vs_sparse={w:.2f}>=0.70:"
          f"{'met' if w >= 0.7 else 'MISSED'} read_vs_sparse={r:.2f}>=0.90:"
          f"{'met' if r >= 0.9 else 'MISSED'} rss_vs_sparse={rss:.2f}<=0.50:"
          f"{'met' if rss <= 0.5 else 'MISSED'}", flush=True)
PY
done
