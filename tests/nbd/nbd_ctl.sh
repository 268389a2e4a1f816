#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_ctl.sh - the ctl socket holds up against bad clients (nbd_ctl.py): one that sends requests
# and never reads the replies, idle ones, one that trickles a byte at a time, more clients than
# the server takes; none of them delays another client, each is cut off by its deadline, and
# SIGTERM stops nbdkit in under a second while such clients hang on.
. "$(dirname "$0")/common.sh"
: "${UZRAMCTL:?}"
start ctl size=64M ctl="$tmp/ctl.ctl"
exec python3 "$(dirname "$0")/nbd_ctl.py" "$tmp/ctl.ctl" "$(cat "$tmp/ctl.pid")" "$UZRAMCTL"
