#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks the Promela model of the region's stable-page protocol (tests/model/stable_pages.pml)
# with spin: the protocol as implemented must verify (no assertion violated, no invalid end
# state), and each variant with one of the mistakes the implementation avoids must be caught,
# which shows that the model's assertions have teeth. Exit 0 pass, 1 fail, 77 skip (no spin).
# Usage: test_region_model.sh SOURCE_ROOT
set -u
model="$1/tests/model/stable_pages.pml"
command -v spin >/dev/null 2>&1 || { echo "spin not installed (scripts/install-deps)"; exit 77; }
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || cc=gcc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

verify() { # spin options...
    (cd "$tmp" && rm -f pan pan.* _spin_nvr.tmp &&
        spin "$@" -a "$model" >spin.log 2>&1 &&
        "$cc" -O2 -DSAFETY -DCOLLAPSE -o pan pan.c >cc.log 2>&1 &&
        ./pan -m400000 2>&1) ||
        { cat "$tmp"/spin.log "$tmp"/cc.log 2>/dev/null; echo "spin or cc failed"; }
}

out=$(verify)
echo "$out" | grep -E "errors:|states, stored" | sed 's/^/model: /'
if ! echo "$out" | grep -q "errors: 0"; then
    echo "$out"
    echo "FAIL: the stable-page protocol does not verify"
    exit 1
fi
for bug in BUG_MULTI_INFLIGHT BUG_IGNORE_REDIRTY BUG_LATE_UNPROTECT BUG_NO_WP BUG_DONTNEED_PINNED \
    BUG_NO_COMPARE BUG_IGNORE_REMOVE BUG_MOVE_BACK BUG_REMOVE_WAITS BUG_UNPROT_TRUSTED; do
    out=$(verify -D$bug)
    if echo "$out" | grep -q "errors: 0" || ! echo "$out" | grep -q "assertion violated"; then
        echo "$out"
        echo "FAIL: variant $bug verifies, but it loses writes: the model misses it"
        exit 1
    fi
    echo "$bug: caught: $(echo "$out" | grep -m1 'assertion violated')"
done
echo "test_region_model: ok"
