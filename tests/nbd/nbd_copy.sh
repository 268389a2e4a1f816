#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_copy.sh - whole-image round trips with real clients: nbdcopy in and out (one and four
# connections, lz4 and zstd, with and without workers) compared with cmp, sparse copies out of
# the device, qemu-img convert and compare (raw and qcow2), and qemu-io read/write/zero/discard
# patterns at aligned and unaligned offsets.
. "$(dirname "$0")/common.sh"
need nbdcopy nbdinfo qemu-img qemu-io cmp
mib=32
image "$tmp/img" $mib
size=$((mib << 20))

# ---- nbdcopy round trips
for conf in "algorithm=lz4" "algorithm=zstd workers=2" "algorithm=lzo level=0" \
    "algorithm=lz4hc workers=1"; do
    # shellcheck disable=SC2086
    start copy size=$size $conf
    nbdcopy --flush "$tmp/img" "$uri" || fail "nbdcopy in ($conf)"
    rm -f "$tmp/out"
    nbdcopy "$uri" "$tmp/out" || fail "nbdcopy out ($conf)"
    cmp "$tmp/img" "$tmp/out" || fail "round trip ($conf)"
    # Again through one connection, one 4 KiB request at a time.
    nbdcopy --connections=1 --requests=1 --request-size=4096 "$uri" - | cmp - "$tmp/img" ||
        fail "nbdcopy with 4 KiB requests ($conf)"
    stop copy
done

# ---- sparseness: the zero run of the image comes back as a hole
start sparse size=$size
nbdcopy "$tmp/img" "$uri"
nbdinfo --map "$uri" | awk '$3 != 0 { z += $2 } END { exit !(z >= '$((mib / 8 << 20))') }' ||
    fail "the zero run of the image is not reported as zero"
rm -f "$tmp/out"
nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "sparse copy out"
alloc=$(($(stat -c %b "$tmp/out") * $(stat -c %B "$tmp/out")))
[ "$alloc" -lt "$size" ] || echo "note: $tmp's file system did not keep the copy sparse"

qemu-img compare -f raw -F raw "$tmp/img" "$uri" || fail "qemu-img compare after nbdcopy"
stop sparse

# ---- a partly written 1 GiB export read whole (nbdkit's zstd allocator crashed here)
start big size=1G algorithm=zstd
nbdcopy "$tmp/img" "$uri"
nbdcopy "$uri" null: || fail "reading a partly written 1 GiB export"
nbdinfo --map "$uri" >/dev/null || fail "map of a partly written 1 GiB export"
stop big

# ---- qemu-img
start qemu size=$size algorithm=zstd
qemu-img convert -n -f raw -O raw "$tmp/img" "$uri" || fail "qemu-img convert in"
qemu-img compare -f raw -F raw "$tmp/img" "$uri" || fail "qemu-img compare"
qemu-img convert -f raw -O qcow2 "$uri" "$tmp/out.qcow2" || fail "qemu-img convert out"
qemu-img compare -f qcow2 -F raw "$tmp/out.qcow2" "$tmp/img" || fail "qcow2 copy differs"
qemu-img map -f raw --output=json "$uri" >/dev/null || fail "qemu-img map"
stop qemu

# ---- qemu-io patterns
start qio size=16M
out=$(qemu-io -f raw \
    -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' \
    -c 'write -P 0xcd 4095 3' -c 'read -P 0xcd 4095 3' -c 'read -P 0xab 4098 4094' \
    -c 'write -z 1M 1M' -c 'read -P 0 1M 1M' \
    -c 'write -z -u 2M 1M' -c 'read -P 0 2M 1M' \
    -c 'write -P 0x11 3M 64k' -c 'discard 3M 64k' -c 'read -P 0 3M 64k' \
    -c 'discard 100 12000' -c 'read -P 0xab 100 3995' -c 'read -P 0 4096 4096' \
    -c 'read -P 0xab 8192 4096' \
    -c 'write -P 0x22 5000000 12345' -c 'read -P 0x22 5000000 12345' \
    -c 'aio_write -P 0x33 8M 256k' -c 'aio_write -P 0x44 9M 256k' -c 'aio_flush' \
    -c 'read -P 0x33 8M 256k' -c 'read -P 0x44 9M 256k' \
    -c 'write -f -P 0x55 10M 4k' -c 'flush' -c 'read -P 0x55 10M 4k' \
    -c 'read -P 0 12M 4M' \
    "$uri" 2>&1) || {
    echo "$out"
    fail "qemu-io"
}
if echo "$out" | grep -qi "fail\|error\|mismatch"; then
    echo "$out"
    fail "qemu-io reported a failure"
fi
stop qio
echo "nbd_copy: ok"
