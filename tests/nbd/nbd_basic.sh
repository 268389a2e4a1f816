#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_basic.sh - the plugin's face: --dump-plugin and --help name every key, bad configurations
# fail with a message, nbdinfo sees every capability, --map tells data, zeros and holes apart on
# a partly written, zeroed and trimmed device, an unaligned size works, and uzramctl reads and
# writes attributes over the ctl socket with the documented exit codes.
. "$(dirname "$0")/common.sh"
need nbdinfo nbdsh python3
: "${UZRAMCTL:?}"

# ---- --dump-plugin, --help, configuration errors
dump=$(nbdkit "$UZ_PLUGIN" --dump-plugin)
help=$(nbdkit "$UZ_PLUGIN" --help)
for key in size algorithm level mem_limit workers ctl parallel; do
    echo "$dump" | grep -q "^uzram_key_$key=" || fail "--dump-plugin does not describe $key"
    echo "$help" | grep -q "^$key=" || fail "--help does not describe $key"
done
# parallel=auto: serialized per connection where nbdkit aborts on abrupt disconnects (nbd_abort.sh)
echo "$dump" | grep -q '^max_thread_model=parallel$' || fail "max thread model is not parallel"
if echo "$dump" | grep -q '^uzram_nbdkit_aborts_on_disconnect=1$'; then
    echo "$dump" | grep -q '^thread_model=serialize_requests$' || fail "auto: not serialized"
else
    echo "$dump" | grep -q '^thread_model=parallel$' || fail "auto: thread model is not parallel"
fi
nbdkit "$UZ_PLUGIN" size=1M parallel=on --dump-plugin | grep -q '^thread_model=parallel$' ||
    fail "parallel=on"
nbdkit "$UZ_PLUGIN" size=1M parallel=off --dump-plugin |
    grep -q '^thread_model=serialize_requests$' || fail "parallel=off"
echo "$dump" | grep -q '^uzram_algorithms=.*zstd' || fail "no algorithm list"

bad() { # expected-message args...: nbdkit must refuse to start and say why
    msg=$1
    shift
    if timeout 20 nbdkit -f -U "$tmp/bad.sock" "$UZ_PLUGIN" "$@" >"$tmp/bad.log" 2>&1; then
        fail "nbdkit $* started"
    fi
    grep -qi "$msg" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "nbdkit $*: no '$msg'"; }
}
bad "size" algorithm=lz4
bad "unknown algorithm" size=1M algorithm=snappy
bad "out of range" size=1M algorithm=zstd level=99
bad "could not parse" size=1Q
bad "unknown parameter" size=1M colour=blue
bad "could not decipher\|boolean" size=1M parallel=maybe
touch "$tmp/notasocket"
bad "not a socket\|exists" size=1M ctl="$tmp/notasocket"

# ---- capabilities
start main size=64M ctl="$tmp/main.ctl"
for flag in connect read write flush fua trim zero fast-zero multi-conn cache df; do
    nbdinfo --can "$flag" "$uri" || fail "nbdinfo --can $flag: no"
done
[ "$(nbdinfo --size "$uri")" = 67108864 ] || fail "size is not 64M"
nbdinfo "$uri" | grep -q "block_size_preferred: 4096" || fail "preferred block size is not 4096"

# ---- --map on a partly written device
nbdsh -u "$uri" -c '
text = b"".join(b"line %06d of a compressible page\n" % i for i in range(1 << 15))
h.pwrite(text[: 1 << 20], 0)                          # [0, 1M) data
h.zero(1 << 20, 1 << 20, nbd.CMD_FLAG_NO_HOLE)        # [1M, 2M) allocated zeros
h.pwrite(b"\x01" * (1 << 20), 2 << 20)                # [2M, 3M) data ...
h.trim(1 << 19, (2 << 20) + (1 << 19))                # ... then its middle [2.5M, 3M) trimmed
h.zero(1 << 20, 4 << 20)                              # [4M, 5M) zero with may_trim: hole
h.pwrite(bytes(4096), 6 << 20)                        # a zero page written as data: zero
'
nbdinfo --map "$uri" | awk '{print $1, $2, $3}' >"$tmp/map"
cat >"$tmp/map.expected" <<EOF
0 1048576 0
1048576 1048576 2
2097152 524288 0
2621440 3670016 3
6291456 4096 2
6295552 60813312 3
EOF
diff -u "$tmp/map.expected" "$tmp/map" || fail "nbdinfo --map"
nbdinfo --map --totals "$uri" >/dev/null

# ---- uzramctl
ctl=$tmp/main.ctl
"$UZRAMCTL" --socket "$ctl" >"$tmp/table"
cat "$tmp/table"
head -1 "$tmp/table" | grep -q "NAME *ALGORITHM *DISKSIZE *DATA *COMPR *TOTAL *STREAMS *COMP-RATIO" ||
    fail "uzramctl table header"
grep -q "^$ctl *lz4 *64M " "$tmp/table" || fail "uzramctl table row"
"$UZRAMCTL" --socket "$ctl" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)["uzramctl"][0]
assert d["algorithm"] == "lz4" and d["disksize"] == 64 << 20, d
assert d["data"] >= 2 << 20 and 0 < d["total"] < d["data"] and d["comp-ratio"] > 1, d
'
UZRAMCTL_SOCKET=$ctl "$UZRAMCTL" get disksize | grep -qx 67108864 || fail "get disksize"
# zramctl's interface: -o, --output-all, -n, --raw, -b, the extra columns.
"$UZRAMCTL" --output-all "$ctl" >"$tmp/all"
head -1 "$tmp/all" | grep -q "^NAME *DISKSIZE *DATA *COMPR *ALGORITHM *STREAMS *ZERO-PAGES *TOTAL \
*MEM-LIMIT *MEM-USED *MIGRATED *HUGE-PAGES *COMP-RATIO *BD-COUNT *IDLE$" || { cat "$tmp/all"; fail "--output-all"; }
set -- $("$UZRAMCTL" -b --raw -n -o name,disksize,zero-pages,mem-limit,mem-used,huge-pages,data "$ctl")
[ "$1 $2 $4" = "$ctl 67108864 0" ] || fail "--raw -n -b -o: $*"
mm=$("$UZRAMCTL" --socket "$ctl" get mm_stat)
[ "$3 $5 $6 $7" = "$(echo $mm | awk '{print $6, $5, $8, $1}')" ] ||
    fail "ZERO-PAGES MEM-USED HUGE-PAGES DATA ($*) do not match mm_stat ($mm)"
[ "$3" -ge 256 ] || fail "ZERO-PAGES: the zeroed MiB is $3 pages"
[ "$("$UZRAMCTL" -n -o +MEM-LIMIT "$ctl" | awk '{print NF}')" = 9 ] || fail "-o +COLUMN"
"$UZRAMCTL" -o DATA,BOGUS "$ctl" >/dev/null 2>&1 && fail "-o with an unknown column"
"$UZRAMCTL" -J -o name,huge-pages "$ctl" | python3 -c '
import json, sys
d = json.load(sys.stdin)["uzramctl"][0]
assert sorted(d) == ["bd_stat", "huge-pages", "name"] and d["huge-pages"] >= 0, d
assert d["bd_stat"] == {"bd_count": 0, "bd_reads": 0, "bd_writes": 0}, d
'
# The tiering columns: IDLE follows the idle attribute, BD-COUNT bd_stat.
"$UZRAMCTL" --socket "$ctl" set idle all || fail "set idle all"
set -- $("$UZRAMCTL" -b --raw -n -o idle,bd-count "$ctl")
[ "$1" -gt 0 ] && [ "$2" = 0 ] || fail "-o IDLE,BD-COUNT after idle all: $*"
[ "$1" = "$("$UZRAMCTL" --socket "$ctl" get idle_pages)" ] || fail "IDLE is not idle_pages"
# -t: a server that accepts and never answers is given up on, exit status 4.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); time.sleep(10)
' "$tmp/mute.ctl" &
mute=$!
while [ ! -S "$tmp/mute.ctl" ]; do sleep 0.05; done
t0=$(date +%s%N)
rc=0; "$UZRAMCTL" -t 0.5 "$tmp/mute.ctl" 2>"$tmp/err" || rc=$?
t1=$(date +%s%N)
kill $mute 2>/dev/null || true
[ $rc = 4 ] && grep -q "no answer within" "$tmp/err" || fail "timeout: rc $rc $(cat "$tmp/err")"
[ $(((t1 - t0) / 1000000)) -lt 2000 ] || fail "-t 0.5 took $(((t1 - t0) / 1000000)) ms"
"$UZRAMCTL" --socket "$ctl" get comp_algorithm | grep -q '\[lz4\]' || fail "get comp_algorithm"
"$UZRAMCTL" --socket "$ctl" get mm_stat | awk '{ exit !($1 >= 2097152 && NF >= 9) }' || fail "mm_stat"
"$UZRAMCTL" --socket "$ctl" get pool_stat >/dev/null || fail "get pool_stat"
"$UZRAMCTL" --socket "$ctl" --json get mm_stat | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["fields"]["orig_data_size"] >= 2 << 20, d
'
"$UZRAMCTL" --socket "$ctl" set mem_limit 100M || fail "set mem_limit"
[ "$("$UZRAMCTL" --socket "$ctl" get mem_limit)" = 104857600 ] || fail "mem_limit did not stick"
"$UZRAMCTL" --socket "$ctl" set mem_limit 0
"$UZRAMCTL" --socket "$ctl" set compact 1 || fail "set compact"
"$UZRAMCTL" --socket "$ctl" list | grep -qx "mm_stat r" || fail "list"
"$UZRAMCTL" --socket "$ctl" --json list | python3 -c 'import json, sys; json.load(sys.stdin)'
rc=0; "$UZRAMCTL" --socket "$ctl" get no_such_attr 2>"$tmp/err" || rc=$?
[ $rc = 1 ] && grep -q "no such attribute" "$tmp/err" || fail "get unknown: rc $rc"
rc=0; "$UZRAMCTL" --socket "$ctl" set disksize 1G 2>"$tmp/err" || rc=$?
[ $rc = 1 ] && grep -q "busy" "$tmp/err" || fail "set disksize while in use: rc $rc"
rc=0; "$UZRAMCTL" --socket "$ctl" get reset 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "get write-only: rc $rc"
rc=0; "$UZRAMCTL" --socket "$ctl" frobnicate 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "unknown command: rc $rc"
rc=0; "$UZRAMCTL" --socket "$ctl" get 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "get without ATTR: rc $rc"
rc=0; "$UZRAMCTL" --socket "$tmp/nothing.ctl" get mm_stat 2>/dev/null || rc=$?
[ $rc = 3 ] || fail "missing socket: rc $rc"
# A raw client speaking the protocol badly is answered, and the server lives on.
python3 - "$ctl" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"hello\nget\nversion\n")
data = b""
while data.count(b"\n") < 4:
    data += s.recv(4096)
assert data.startswith(b"err "), data
assert b"ok " in data and b"uzram-ctl 1" in data, data
s.sendall(b"x" * 5000)
PY
"$UZRAMCTL" --socket "$ctl" get initstate | grep -qx 1 || fail "ctl died after a bad client"

# reset through ctl is refused while an NBD client is connected (as the kernel refuses to reset
# an open zram device), then empties the device; new connections see the new size.
UZ_CTL=$ctl nbdsh -u "$uri" -c '
import os, subprocess
ctl = [os.environ["UZRAMCTL"], "--socket", os.environ["UZ_CTL"], "set", "reset"]
r = subprocess.run(ctl + ["1"], capture_output=True, text=True)
assert r.returncode == 1 and "busy" in r.stderr, r
r = subprocess.run(ctl + ["0"], capture_output=True, text=True)
assert "busy" not in r.stderr, r     # "0" is no reset: the library answers EINVAL
assert h.pread(4096, 0)[:4] == b"line"                  # the data is still there
'
"$UZRAMCTL" -r "$ctl" || fail "reset (-r) after the client left"
[ "$("$UZRAMCTL" --socket "$ctl" get initstate)" = 0 ] || fail "-r did not reset"
"$UZRAMCTL" -s 16M -a zstd "$ctl" || fail "-s 16M -a zstd"
"$UZRAMCTL" --socket "$ctl" get comp_algorithm | grep -q '\[zstd\]' || fail "-a zstd"
[ "$("$UZRAMCTL" --socket "$ctl" get disksize)" = 16777216 ] || fail "-s 16M"
rc=0; "$UZRAMCTL" -r -s 1M "$ctl" 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "-r with -s: rc $rc"
"$UZRAMCTL" --socket "$ctl" set reset 1
"$UZRAMCTL" --socket "$ctl" set disksize 8M
[ "$(nbdinfo --size "$uri")" = 8388608 ] || fail "size after reset + disksize"
nbdinfo --map "$uri" | grep -q "^ *0 *8388608 *3" || fail "map after reset"
stop main
[ ! -e "$ctl" ] || fail "ctl socket left behind"

# ---- an export size that is not a multiple of 4096
start odd size=1000001 algorithm=zstd
[ "$(nbdinfo --size "$uri")" = 1000001 ] || fail "odd size"
nbdsh --base-allocation -u "$uri" -c '
h.pwrite(b"xyz", 999998)
assert h.pread(3, 999998) == b"xyz"
assert h.pread(4097, 995904)[-3:] == b"xyz"
try:
    h.pwrite(b"ab", 1000000); raise SystemExit("write past the end succeeded")
except nbd.Error as e:
    pass
seen = []
h.block_status(1000001 - 995328, 995328, lambda ctx, off, ents, err: seen.extend(ents))
assert seen == [4096, 3, 577, 0], seen  # a hole, then the last page (partial) is data
'
nbdinfo --map "$uri" >/dev/null
stop odd
echo "nbd_basic: ok"
