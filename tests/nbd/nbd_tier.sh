#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_tier.sh - the plugin's tiering keys (backing_dev, compressed_writeback, recomp_algorithm,
# policy in its comma-separated form): described by --help and --dump-plugin, bad values refused
# at start with the attribute's error, and a running disk tiered through uzramctl set (idle,
# recompress, writeback) that reads back exact from RAM, recompressed objects and the file.
. "$(dirname "$0")/common.sh"
need nbdsh python3
: "${UZRAMCTL:?}"

dump=$(nbdkit "$UZ_PLUGIN" --dump-plugin)
help=$(nbdkit "$UZ_PLUGIN" --help)
for key in backing_dev compressed_writeback recomp_algorithm policy; do
    echo "$dump" | grep -q "^uzram_key_$key=" || fail "--dump-plugin does not describe $key"
    echo "$help" | grep -q "^$key=" || fail "--help does not describe $key"
done

bad() { # expected-message args...
    msg=$1
    shift
    if timeout 20 nbdkit -f -U "$tmp/bad.sock" "$UZ_PLUGIN" "$@" >"$tmp/bad.log" 2>&1; then
        fail "nbdkit $* started"
    fi
    grep -qi "$msg" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "nbdkit $*: no '$msg'"; }
}
bad "recomp_algorithm=.*invalid argument" size=1M recomp_algorithm=snappy
bad "policy=.*invalid argument" size=1M policy=interval=x
bad "policy=.*invalid argument" size=1M policy=interval=1,recompress_type=sometimes
bad "backing_dev=.*is a directory" size=1M backing_dev=/
bad "boolean" size=1M compressed_writeback=maybe

# The policy in its comma-separated form reads back in the attribute's.
start pol size=16M ctl="$tmp/pol.ctl" policy=interval=0,recompress_age=60,writeback_age=120
"$UZRAMCTL" --socket "$tmp/pol.ctl" get policy | grep -q "interval=0 recompress_age=60 .*writeback_age=120 " ||
    fail "policy key: $("$UZRAMCTL" --socket "$tmp/pol.ctl" get policy)"

for cwb in 0 1; do
    store=$tmp/store.$cwb
    start tier$cwb size=32M ctl="$tmp/tier$cwb.ctl" backing_dev="$store" recomp_algorithm=zstd \
        compressed_writeback=$cwb
    ctl=$tmp/tier$cwb.ctl
    [ -f "$store" ] || fail "backing_dev=$store was not created"
    [ "$("$UZRAMCTL" --socket "$ctl" get backing_dev)" = "$store" ] || fail "get backing_dev"
    [ "$("$UZRAMCTL" --socket "$ctl" get compressed_writeback)" = $cwb ] ||
        fail "compressed_writeback=$cwb"
    "$UZRAMCTL" --socket "$ctl" get recomp_algorithm | grep -q '^#1: .*\[zstd\]' ||
        fail "recomp_algorithm"
    # 16 MiB of text-like data (compressible, not trivially), its digest kept.
    nbdsh -u "$uri" -c '
import hashlib, random
r = random.Random(1)
words = [("w%x" % r.getrandbits(20)).encode() for _ in range(3000)]
buf = bytearray()
while len(buf) < 16 << 20:
    buf += b" ".join(r.choice(words) for _ in range(64)) + b"\n"
buf = bytes(buf[:16 << 20])
h.pwrite(buf, 0)
open("'"$tmp"'/digest", "w").write(hashlib.sha256(buf).hexdigest())
'
    before=$("$UZRAMCTL" --socket "$ctl" get mm_stat | awk '{print $3}')
    "$UZRAMCTL" --socket "$ctl" set idle all || fail "set idle all"
    "$UZRAMCTL" --socket "$ctl" set recompress type=idle || fail "set recompress"
    after=$("$UZRAMCTL" --socket "$ctl" get mm_stat | awk '{print $3}')
    [ "$after" -lt "$before" ] || fail "recompress: mem_used $before -> $after"
    "$UZRAMCTL" --socket "$ctl" set idle all
    "$UZRAMCTL" --socket "$ctl" set writeback idle || fail "set writeback idle"
    set -- $("$UZRAMCTL" --socket "$ctl" get bd_stat)
    [ "$1" -ge 4000 ] && [ "$3" -ge 4000 ] || fail "bd_stat after writeback: $*"
    rc=0; "$UZRAMCTL" --socket "$ctl" set writeback page_index=999999 2>"$tmp/err" || rc=$?
    [ $rc = 1 ] || fail "writeback page_index out of range: rc $rc"
    "$UZRAMCTL" --socket "$ctl" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)["uzramctl"][0]
assert d["bd_stat"]["bd_count"] >= 4000 * 4096, d
'
    nbdsh -u "$uri" -c '
import hashlib
buf = h.pread(16 << 20, 0)
assert hashlib.sha256(buf).hexdigest() == open("'"$tmp"'/digest").read(), "data differs"
'
    set -- $("$UZRAMCTL" --socket "$ctl" get bd_stat)
    [ "$2" -ge 4000 ] || fail "reads did not come from the store: bd_stat $*"
done
echo "nbd_tier: ok"
