#!/bin/sh
# SPDX-License-Identifier: MIT
# `make bench`: every benchmark of the project on the shared corpus, each printing key=value
# lines with its baseline measured in the same run:
#   uzram-bench dev      the device vs the bare codec, 1 and 2 threads, and vs kernel zram
#                        (--kernel, when run as root and /dev/zram0 is free)
#   uzram-bench contend  4 threads on 64 shared slots vs slots of their own vs the bare codec
#   bench/nbd-bench.sh   the NBD plugin vs nbdkit's memory plugin
#   uzram-bench swap     a region vs kernel zram swap (--baseline, as root)
#   bench/run-bench.sh   uzram-run vs the same programs in a memory cgroup with kernel zram swap
#                        (a C heap, a Python dict, start-up; as root, 3 runs)
# Usage: scripts/bench.sh [BUILD_DIR]; RUNS=N sets repetitions (default 5), CORPUS=DIR the images
# (default ../shared/corpus), BENCH="dev contend nbd swap run" a subset.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${RUNS:-5}
corpus=${CORPUS:-../shared/corpus}
which=${BENCH:-dev contend nbd swap run}
bench=$build/tools/uzram-bench
[ -x "$bench" ] || { echo "bench.sh: $bench not built (make build)" >&2; exit 1; }

images=""
for name in py-64m node-64m; do
    [ -f "$corpus/$name.img.zst" ] && images="$images $corpus/$name.img.zst"
done
if [ -z "$images" ]; then
    images=data/sample-4m.img.zst
    echo "bench.sh: no corpus in $corpus; using the embedded sample (figures are not comparable)" >&2
fi
root=$([ "$(id -u)" = 0 ] && echo yes || echo no)
kernel=""
[ "$root" = yes ] && [ -e /dev/zram0 ] && kernel=--kernel

for b in $which; do
    case $b in
    dev)
        for img in $images; do
            echo "== uzram-bench dev $(basename "$img")"
            # shellcheck disable=SC2086
            "$bench" dev --image "$img" --threads 1,2 --runs "$runs" $kernel
        done
        ;;
    contend)
        echo "== uzram-bench contend"
        "$bench" contend --threads 4 --slots 64 --runs "$runs"
        ;;
    nbd)
        echo "== bench/nbd-bench.sh"
        # shellcheck disable=SC2086
        bench/nbd-bench.sh -r "$runs" -p "$build/plugin/nbdkit-uzram-plugin.so" $images
        ;;
    swap)
        if [ "$root" = yes ]; then
            img=${images%% *}
            [ -n "$img" ] || img=$(echo $images | cut -d' ' -f1)
            echo "== uzram-bench swap --baseline"
            "$bench" swap --image $img --size-mib 1024 --limit-mib 256 --touches 200000 \
                --baseline --runs 3
        else
            echo "== uzram-bench swap: skipped (needs root for the kernel baseline)"
        fi
        ;;
    run)
        if [ "$root" = yes ]; then
            img=$(echo $images | cut -d' ' -f1)
            echo "== bench/run-bench.sh"
            bench/run-bench.sh -b "$build" -r 3 -i "$img"
        else
            echo "== bench/run-bench.sh: skipped (needs root for the kernel baseline)"
        fi
        ;;
    *)
        echo "bench.sh: unknown benchmark $b" >&2
        exit 2
        ;;
    esac
done
