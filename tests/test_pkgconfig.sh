#!/bin/sh
# SPDX-License-Identifier: MIT
# A program outside the tree compiles and links against the build directory with
# PKG_CONFIG_PATH=build/meson-uninstalled pkg-config --cflags --libs uzram, and runs; the private
# headers (dev_internal.h, util.h, ...) do not compile from there; libuzram.so exports the
# uz_* functions only, under the version of src/uzram.map.
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/outside.c" <<'C'
#include <uzram/uzram.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    struct uz_dev_config cfg = {.disksize = 1 << 20};
    struct uz_dev *dev;
    char page[4096], back[4096], text[256];
    if (uz_dev_create(&cfg, &dev))
        return 1;
    memset(page, 'x', sizeof(page));
    if (uz_dev_write_page(dev, 3, page) || uz_dev_read_page(dev, 3, back) ||
        memcmp(page, back, sizeof(page)))
        return 1;
    if (uz_dev_attr_read(dev, "mm_stat", text, sizeof(text)) <= 0)
        return 1;
    uz_dev_destroy(dev);
    return 0;
}
C
flags=$(PKG_CONFIG_PATH="$build/meson-uninstalled" pkg-config --cflags --libs uzram)
cc -o "$tmp/outside" "$tmp/outside.c" $flags -Wl,-rpath,"$build"
"$tmp/outside"
echo "outside program built with: $flags"

for hdr in dev_internal.h util.h pool_internal.h comp_internal.h region_internal.h; do
    printf '#include "%s"\nint main(void) { return 0; }\n' "$hdr" > "$tmp/private.c"
    if cc -c -o "$tmp/private.o" "$tmp/private.c" $flags 2>/dev/null; then
        echo "FAIL: the private header $hdr compiles from outside the tree" >&2
        exit 1
    fi
done
echo "private headers stay private"

lib=$(ls "$build"/libuzram.so.* | head -1)
others=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ && $3 !~ /^uz_/ {print $3}')
if [ -n "$others" ]; then
    echo "FAIL: libuzram.so exports symbols outside uz_*: $others" >&2
    exit 1
fi
nm -D --defined-only --with-symbol-versions "$lib" | grep -q ' uz_dev_create@@UZRAM_0.1$' ||
    { echo "FAIL: uz_dev_create is not versioned UZRAM_0.1" >&2; exit 1; }
echo "exports: $(nm -D --defined-only "$lib" | grep -c ' uz_') uz_* symbols, versioned"
