#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_fio.sh - fio's nbd engine (libnbd) writes random 4 KiB and 64 KiB blocks with crc32c
# verification headers from two jobs (two connections) at queue depth 16, then verifies every
# block; a third pass mixes reads and writes. Buffers are partly compressible, partly random.
. "$(dirname "$0")/common.sh"
need fio
fio --enghelp 2>/dev/null | grep -qw nbd || skip "this fio has no nbd engine"

run() { # name size algorithm fio-options...
    name=$1
    size=$2
    shift 2
    start "$name" size="$size" "$1"
    shift
    if ! fio --name="$name" --ioengine=nbd --uri="$uri" --output="$tmp/$name.fio" \
        --size=24M --numjobs=2 --offset_increment=24M --iodepth=16 \
        --buffer_compress_percentage=60 --refill_buffers \
        --verify=crc32c --verify_fatal=1 --do_verify=1 "$@"; then
        cat "$tmp/$name.fio"
        fail "fio $name"
    fi
    grep -q "err= 0" "$tmp/$name.fio" || { cat "$tmp/$name.fio"; fail "fio $name: errors"; }
    stop "$name"
}
run rand4k 48M algorithm=lz4 --rw=randwrite --bs=4k
run rand64k 48M algorithm=zstd --rw=randwrite --bs=64k
run mixed 48M algorithm=lz4 --rw=randrw --rwmixread=30 --bsrange=4k-64k --bs_unaligned=1 \
    --verify_backlog=256
echo "nbd_fio: ok"
