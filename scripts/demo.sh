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
