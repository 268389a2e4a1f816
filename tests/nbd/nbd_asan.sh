#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_asan.sh - the plugin built with AddressSanitizer (the library compiled in, instrumented
# too), loaded by nbdkit with libasan preloaded: the edge-case, model, concurrency and mem_limit
# tests of nbd_edge.py, an nbdcopy round trip and a read of a partly written 1 GiB export with
# workers, ctl requests and hostile ctl clients. Any ASan or LeakSanitizer report in a server's log fails the test.
. "$(dirname "$0")/common.sh"
need nbdcopy cmp
[ -n "$UZ_PRELOAD" ] && [ -f "$UZ_PRELOAD" ] || skip "no libasan to preload ($UZ_PRELOAD)"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
LD_PRELOAD=$UZ_PRELOAD nbdkit "$UZ_PLUGIN" --dump-plugin >/dev/null 2>&1 ||
    skip "nbdkit cannot load the ASan plugin here"

/usr/bin/python3 "$(dirname "$0")/nbd_edge.py"

image "$tmp/img" 16
start big size=1G workers=2 ctl="$tmp/big.ctl"
nbdcopy "$tmp/img" "$uri"
nbdcopy "$uri" - | head -c $((16 << 20)) | cmp - "$tmp/img" || fail "round trip"
nbdcopy "$uri" null: || fail "reading a partly written 1 GiB export"
"$UZRAMCTL" --socket "$tmp/big.ctl" >/dev/null
"$UZRAMCTL" --socket "$tmp/big.ctl" get pool_stat >/dev/null
"$UZRAMCTL" --socket "$tmp/big.ctl" set compact 1
# The ctl socket's hostile clients (nbd_ctl.py, SIGTERM aside: stop checks the log), under ASan.
# (Not nbd_abort.py: after nbdkit's own "Broken pipe" errors, nbdkit under preloaded libasan
# hangs at exit in p11-kit's destructor on glibc's locale lock, outside the plugin.)
UZ_CTL_CHECKS=1,2,3,4 /usr/bin/python3 "$(dirname "$0")/nbd_ctl.py" "$tmp/big.ctl" \
    "$(cat "$tmp/big.pid")" "$UZRAMCTL" || fail "nbd_ctl.py under ASan"
stop big
echo "nbd_asan: ok"
