#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_edge.sh - runs nbd_edge.py (edge cases, model test, concurrency, FUA, mem_limit) with
# Debian's python3, which has libnbd's bindings.
. "$(dirname "$0")/common.sh"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
exec /usr/bin/python3 "$(dirname "$0")/nbd_edge.py"
