#!/bin/sh
# SPDX-License-Identifier: MIT
# A program outside the tree compiles and links against the build directory with
# PKG_CONFIG_PATH=build/meson-uninstalled pkg-config --cflags --libs uzram, and runs.
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
