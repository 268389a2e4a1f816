#!/bin/sh
# SPDX-License-Identifier: MIT
# `make demo`: stores real memory in uzram devices and prints what zram's sysfs would show.
#  1. the embedded sample (data/sample-4m.img.zst: pages of real python3 and node processes);
#  2. the memory of a python3 process this script starts (dumped through /proc/PID/pagemap);
#  3. the shared corpus images, when ../shared/corpus is there.
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
demo="$build/tools/uzram-demo"
tmp=$(mktemp -d)
child=""
cleanup() { [ -n "$child" ] && kill "$child" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

images="$here/data/sample-4m.img.zst"

# A live process: python3 building ASTs and a dict of records, then waiting to be dumped.
python3 - "$tmp/ready" <<'PY' &
import ast, os, sys, glob, time
trees = []
for p in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:300]:
    try:
        trees.append(ast.parse(open(p, encoding="utf-8", errors="replace").read()))
    except Exception:
        pass
records = {i: {"id": i, "name": f"user{i}", "score": i * 0.5, "tags": [i % 7, i % 11]}
           for i in range(150000)}
open(sys.argv[1], "w").close()
time.sleep(120)
PY
child=$!
for _ in $(seq 1 600); do [ -f "$tmp/ready" ] && break; sleep 0.1; done
if [ -f "$tmp/ready" ] && python3 "$here/scripts/dump-memory.py" "$child" "$tmp/python3.img"; then
    images="$images $tmp/python3.img"
else
    echo "demo: could not dump a live process (no ptrace rights?); skipping that part"
fi
kill "$child" 2>/dev/null || true
child=""

for f in "$here/../shared/corpus/py-64m.img.zst" "$here/../shared/corpus/node-64m.img.zst"; do
    [ -f "$f" ] && images="$images $f"
done
# shellcheck disable=SC2086
"$demo" $images
echo
echo "kernel zram on the same 64 MiB images (../shared/docs/anchors.md), lz4: py-64m mem_used_total"
echo "28057600, node-64m 30154752."

# ---- 4. The real thing: uzram as a block device, through nbdkit (issue 4) ----
# nbdkit serves a 2 GiB uzram device on a private Unix socket. As root, with FUSE and loop
# devices: nbdfuse turns the export into a file, losetup into /dev/loopN; mkfs.ext4, mount, copy
# a few hundred MiB of real files in, remount (so reads come from uzram, not the page cache),
# diff. Without root: mkfs.ext4 -d builds the same file system in an image file, nbdcopy copies
# it into uzram and back out, cmp. Either way uzramctl then shows what the files cost in memory.
# Everything started here is stopped, unmounted and detached on exit, Ctrl-C included.
PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH # Debian's tools (and python3) first
plugin="$build/plugin/nbdkit-uzram-plugin.so"
uzramctl="$build/tools/uzramctl"
nbd=$(mktemp -d /tmp/uzram-demo-nbd.XXXXXX)
nbdkit_pid=""
fuse_pid=""
loopdev=""
mounted=""
nbd_cleanup() {
    set +e
    [ -n "$mounted" ] && umount "$nbd/mnt" 2>/dev/null
    [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
    if [ -n "$fuse_pid" ]; then
        fusermount3 -u "$nbd/fuse" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$fuse_pid" 2>/dev/null || break; sleep 0.1; done
        kill "$fuse_pid" 2>/dev/null
    fi
    [ -n "$nbdkit_pid" ] && kill "$nbdkit_pid" 2>/dev/null && wait "$nbdkit_pid" 2>/dev/null
    rm -rf "$nbd"
}
trap 'nbd_cleanup; cleanup' EXIT
trap 'exit 130' INT TERM

echo
echo "== uzram as a block device: nbdkit + nbdkit-uzram-plugin"
missing=""
for t in nbdkit nbdcopy mkfs.ext4 diff; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ] || [ ! -f "$plugin" ] || [ ! -x "$uzramctl" ]; then
    echo "demo: skipping the NBD part (missing:$missing; run scripts/install-deps and make)"
    exit 0
fi
sources=""
for d in /usr/share/doc /usr/lib/python3 /usr/lib/python3.*; do
    [ -d "$d" ] && sources="$sources $d"
done
echo "serving a 2 GiB lz4 uzram device on $nbd/nbd.sock (attributes on $nbd/ctl.sock)"
nbdkit -f --exit-with-parent -U "$nbd/nbd.sock" -P "$nbd/nbdkit.pid" "$plugin" \
    size=2G algorithm=lz4 ctl="$nbd/ctl.sock" &
nbdkit_pid=$!
for _ in $(seq 1 100); do [ -s "$nbd/nbdkit.pid" ] && break; sleep 0.1; done
uri="nbd+unix:///?socket=$nbd/nbd.sock"
# shellcheck disable=SC2086
bytes=$(du -scb $sources | tail -1 | cut -f1)
echo "copying $((bytes >> 20)) MiB of real files:$sources"

attached=""
if [ "$(id -u)" = 0 ] && command -v nbdfuse >/dev/null && command -v losetup >/dev/null &&
    [ -c /dev/fuse ]; then
    mkdir "$nbd/fuse" "$nbd/mnt"
    nbdfuse -P "$nbd/nbdfuse.pid" "$nbd/fuse" "$uri" &
    fuse_pid=$!
    for _ in $(seq 1 100); do [ -s "$nbd/nbdfuse.pid" ] && break; sleep 0.1; done
    if [ -f "$nbd/fuse/nbd" ] &&
        loopdev=$(losetup --find --show --direct-io=on "$nbd/fuse/nbd" 2>/dev/null ||
            losetup --find --show "$nbd/fuse/nbd"); then
        attached=yes
    else
        echo "demo: nbdfuse or losetup failed here; falling back to nbdcopy"
    fi
fi

if [ -n "$attached" ]; then
    echo "attached: $uri -> nbdfuse $nbd/fuse/nbd -> $loopdev"
    mkfs.ext4 -q -L uzram "$loopdev"
    mount "$loopdev" "$nbd/mnt"
    mounted=yes
    start=$(date +%s.%N)
    for d in $sources; do
        mkdir -p "$nbd/mnt$(dirname "$d")"
        cp -a "$d" "$nbd/mnt$(dirname "$d")/"
    done
    sync
    end=$(date +%s.%N)
    echo "copied in $(echo "$start $end" | awk '{ printf "%.1f", $2 - $1 }') s; remounting to drop the page cache"
    umount "$nbd/mnt"
    mounted=""
    mount "$loopdev" "$nbd/mnt"
    mounted=yes
    df -h "$nbd/mnt" | sed 's/^/  /'
    for d in $sources; do
        diff -r --no-dereference "$d" "$nbd/mnt$d" >/dev/null ||
            { echo "demo: $d differs after the round trip through uzram"; exit 1; }
    done
    echo "verified: every file reads back identical (diff -r)"
else
    echo "(not root, or no FUSE/loop: building the file system with mkfs.ext4 -d and nbdcopy)"
    mkdir "$nbd/tree"
    for d in $sources; do
        mkdir -p "$nbd/tree$(dirname "$d")"
        cp -a "$d" "$nbd/tree$(dirname "$d")/"
    done
    truncate -s 2G "$nbd/fs.img"
    mkfs.ext4 -q -L uzram -d "$nbd/tree" "$nbd/fs.img"
    rm -rf "$nbd/tree"
    nbdcopy "$nbd/fs.img" "$uri"
    nbdcopy "$uri" "$nbd/back.img"
    cmp "$nbd/fs.img" "$nbd/back.img" ||
        { echo "demo: the file system image differs after the round trip"; exit 1; }
    rm -f "$nbd/fs.img" "$nbd/back.img"
    echo "verified: the ext4 image reads back identical (cmp)"
fi
echo
echo "uzramctl --socket $nbd/ctl.sock"
"$uzramctl" --socket "$nbd/ctl.sock" | sed 's/^/  /'
echo "uzramctl --socket $nbd/ctl.sock get mm_stat"
"$uzramctl" --socket "$nbd/ctl.sock" get mm_stat | sed 's/^/  /'
echo "(DATA: bytes stored; COMPR: their compressed size; TOTAL: memory used, pool overhead"
echo " included; COMP-RATIO = DATA / TOTAL. ext4 metadata and trimmed space cost nothing.)"

# ---- 5. The userfaultfd swap region: an application's memory, 4x its resident limit.
echo
echo "== compressed swap for an application's memory (uz_region, userfaultfd)"
echo "256 MiB of memory filled from the sample, scanned, then 50000 random touches, with at most"
echo "64 MiB of it in RAM; the rest lives compressed in a uzram device and faults back on access:"
"$build/tools/uzram-bench" swap --image "$here/data/sample-4m.img.zst" --size-mib 256 \
    --limit-mib 64 --touches 50000 | sed 's/^/  /' ||
    echo "demo: the region needs userfaultfd (root, or vm.unprivileged_userfaultfd=1)"
