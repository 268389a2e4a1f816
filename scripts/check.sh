#!/bin/sh
# SPDX-License-Identifier: MIT
# `make check`: builds uzram three ways and runs the tests of each:
#   build/       the normal (debugoptimized) build: every suite
#   build-asan/  ASan+UBSan: the unit, stress and fuzz-replay tests
#   build-tsan/  TSan: the unit and stress tests
# plus the format check. The last line printed is the summary "N passed, N failed[, N skipped]".
set -u
cd "$(dirname "$0")/.."
./scripts/install-deps || exit 1

results=$(mktemp)
trap 'rm -f "$results"' EXIT

setup() { # dir, meson options...
    dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
    fi
    ninja -C "$dir" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; return 1; }
}

run_suite() { # label, dir, meson test args...
    label=$1; dir=$2; shift 2
    echo "== $label"
    meson test -C "$dir" --print-errorlogs "$@" 2>&1 | grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Skipped|Timeout|Expected)' || true
    python3 - "$dir/meson-logs/testlog.json" "$label" >>"$results" <<'PY'
import json, sys
path, label = sys.argv[1], sys.argv[2]
try:
    for line in open(path):
        t = json.loads(line)
        print(label, t["name"].replace(" ", "_"), t["result"])
except FileNotFoundError:
    print(label, "no-testlog", "FAIL")
PY
}

if setup build; then
    run_suite normal build
else
    echo "normal build-failed FAIL" >>"$results"
fi
if setup build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_suite asan+ubsan build-asan --suite unit
else
    echo "asan build-failed FAIL" >>"$results"
fi
if setup build-tsan -Db_sanitize=thread -Db_lundef=false; then
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
        run_suite tsan build-tsan --suite unit --no-suite fuzz_replay
else
    echo "tsan build-failed FAIL" >>"$results"
fi

echo "== format"
fmt_files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src include tools tests fuzz -name '*.[ch]')
if clang-format --dry-run -Werror $fmt_files >/tmp/uzram-format.log 2>&1; then
    echo "format clang-format OK" >>"$results"
else
    head -20 /tmp/uzram-format.log
    echo "format clang-format FAIL" >>"$results"
fi

echo "== summary"
grep -v ' OK$\| SKIP$' "$results" | sed 's/^/  not ok: /'
passed=$(grep -c ' OK$' "$results")
skipped=$(grep -c ' SKIP$' "$results")
failed=$(grep -vc ' OK$\| SKIP$' "$results")
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
