#!/bin/sh
# SPDX-License-Identifier: MIT
# nbd_abort.sh - nbdkit survives 500 clients that reset their connection with reads in flight
# and then serves the data intact (nbd_abort.py; the nbdkit 1.32 abort of docs/nbd.md).
# UZ_ABORT_ARGS adds plugin keys (parallel=on shows the abort on an affected nbdkit).
. "$(dirname "$0")/common.sh"
start abort size=8M ${UZ_ABORT_ARGS:-}
exec python3 "$(dirname "$0")/nbd_abort.py" "$sock" "$(cat "$tmp/abort.pid")" ${UZ_ABORT_ROUNDS:-500}
