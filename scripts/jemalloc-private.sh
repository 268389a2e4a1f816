#!/bin/sh
# SPDX-License-Identifier: MIT
# jemalloc-private.sh IN OUT OBJCOPY AR: Debian's libjemalloc_pic.a made private to the preload.
# The archive exports malloc, free, ... itself, which would clash with the preload's own; those
# nine names are renamed (uzp_je_*: nothing calls them), jemalloc_cpp.pic.o (its operator new,
# the only reason libjemalloc.so.2 loads libstdc++) is left out, and the rest is linked into
# libuzram-preload.so with every symbol hidden. The preload calls jemalloc by its non-standard
# names (mallocx, ...), as before. Loading libstdc++ and binding libjemalloc.so.2's symbols was
# most of the preload's start-up cost (src/preload/meson.build).
set -eu
in=$(realpath "$1")
out=$(realpath "$2")
objcopy=$3
ar=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$ar" x "$in"
rm -f jemalloc_cpp.pic.o
[ -f jemalloc.pic.o ] || { echo "$0: no jemalloc.pic.o in $in" >&2; exit 1; }
args=""
for s in malloc calloc free realloc aligned_alloc memalign posix_memalign valloc \
         malloc_usable_size; do
    args="$args --redefine-sym $s=uzp_je_$s"
done
# shellcheck disable=SC2086
"$objcopy" $args jemalloc.pic.o
rm -f "$out"
"$ar" rcs "$out" ./*.o
