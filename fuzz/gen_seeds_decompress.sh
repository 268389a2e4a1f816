#!/bin/sh
# SPDX-License-Identifier: MIT
#
# gen_seeds_decompress.sh - regenerates fuzz/seeds/decompress/: for each codec variant (the
# selector byte is its index in fuzz_decompress.c's table: lzo, lz4, lz4hc, zstd, deflate, then
# lzo-rle, lz4, lz4hc and zstd with its 64 KiB dictionary, deflate in the zlib format), valid compressed
# pages (pages of data/sample-4m.img.zst, a zero page, a sparse page, an incompressible page, a
# 1-byte input), truncated and bit-flipped ones, plus a few random inputs. Deterministic.
# Usage: fuzz/gen_seeds_decompress.sh [CC]   (run from anywhere; needs the codec -dev packages)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cc=${1:-${CC:-cc}}
out="$root/fuzz/seeds/decompress"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

cat > "$tmp/gen.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <uzram/comp.h>

#define PAGE UZ_PAGE_SIZE

static uint64_t seed = 88172645463325252ull;
static uint8_t rnd(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return (uint8_t)(seed >> 24);
}

static void put(const char *dir, const char *name, int sel, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(sel, f) == EOF || fwrite(p, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

/* Reads `pages` pages of a zstd file (whose content size may be unknown). */
static uint8_t *load(const char *path, size_t pages)
{
    FILE *f = fopen(path, "rb");
    uint8_t *out = calloc(pages, PAGE), in[65536];
    ZSTD_DStream *ds = ZSTD_createDStream();
    ZSTD_outBuffer ob = {out, pages * PAGE, 0};
    size_t n;
    if (!f || !out || !ds) {
        perror(path);
        exit(1);
    }
    while (ob.pos < ob.size && (n = fread(in, 1, sizeof(in), f)) > 0) {
        ZSTD_inBuffer ib = {in, n, 0};
        while (ib.pos < ib.size && ob.pos < ob.size)
            if (ZSTD_isError(ZSTD_decompressStream(ds, &ob, &ib)))
                exit(1);
    }
    fclose(f);
    ZSTD_freeDStream(ds);
    return out;
}

int main(int argc, char **argv)
{
    const char *dir = argv[1];
    uint8_t *img = load(argv[2], 1024);
    /* Must match fuzz_decompress.c's init(). */
    static const char *const names[] = {"lzo",     "lz4", "lz4hc", "zstd", "deflate",
                                        "lzo-rle", "lz4", "lz4hc", "zstd", "deflate", NULL};
    static const char *const labels[] = {"lzo",     "lz4",      "lz4hc",      "zstd",
                                         "deflate", "lzo-rle",  "lz4-dict",   "lz4hc-dict",
                                         "zstd-dict", "deflate-zlib"};
    static uint8_t dict[65536];
    for (size_t i = 0; i < sizeof(dict); i++)
        dict[i] = (uint8_t)("uzram dictionary: the quick brown fox "[i % 38] + (i / 4096) % 3);
    uint8_t zero[PAGE] = {0}, sparse[PAGE] = {0}, noise[PAGE], one[1] = {'x'};
    sparse[17] = 1;
    sparse[2048] = 0xee;
    for (size_t i = 0; i < PAGE; i++)
        noise[i] = rnd();
    char name[256];
    for (int c = 0; names[c]; c++) {
        struct uz_comp *comp;
        struct uz_comp_stream *s;
        struct uz_comp_params p = {0};
        if (c >= 5 && c <= 8) {
            p.dict = dict;
            p.dict_len = sizeof(dict);
        } else if (c == 9) {
            p.deflate_winbits = 12;
        }
        if (uz_comp_create_params(names[c], &p, &comp) || uz_comp_stream_create(comp, &s))
            return 1;
        const struct {
            const char *what;
            const uint8_t *p;
            size_t n;
        } in[] = {{"text", img + 3 * PAGE, PAGE}, {"node", img + 700 * PAGE, PAGE},
                  {"zero", zero, PAGE},         {"sparse", sparse, PAGE},
                  {"noise", noise, PAGE},       {"byte", one, 1},
                  {"dicttext", dict + 1000, PAGE}};
        for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
            uint8_t *buf = uz_comp_stream_buf(s);
            ssize_t n = uz_comp_compress(s, in[i].p, in[i].n, buf, uz_comp_stream_buf_size(s));
            if (n <= 0)
                return 1;
            if (c < 5 && i == 6)
                continue; /* the dictionary's text, for the variants that have it */
            snprintf(name, sizeof(name), "%s-valid-%s", labels[c], in[i].what);
            put(dir, name, c, buf, (size_t)n);
            if (i != 0)
                continue;
            snprintf(name, sizeof(name), "%s-trunc-half", labels[c]);
            put(dir, name, c, buf, (size_t)n / 2);
            snprintf(name, sizeof(name), "%s-trunc-last", labels[c]);
            put(dir, name, c, buf, (size_t)n - 1);
            buf[n / 3] ^= 0x10;
            snprintf(name, sizeof(name), "%s-bitflip", labels[c]);
            put(dir, name, c, buf, (size_t)n);
        }
        uz_comp_stream_destroy(s);
        uz_comp_destroy(comp);
    }
    for (int r = 0; r < 6; r++) {
        uint8_t buf[512];
        size_t n = 1 + (size_t)rnd() * 2;
        for (size_t i = 0; i < n; i++)
            buf[i] = rnd();
        snprintf(name, sizeof(name), "random-%d", r);
        put(dir, name, r, buf, n);
    }
    free(img);
    return 0;
}
EOF

"$cc" -std=gnu11 -O1 -D_GNU_SOURCE -I"$root/include" -I"$root/src/common" -I"$root/src/comp" \
    "$tmp/gen.c" "$root/src/common/util.c" "$root"/src/comp/comp*.c \
    -llz4 -lzstd -llzo2 -lz -lpthread -o "$tmp/gen"
mkdir -p "$out"
"$tmp/gen" "$out" "$root/data/sample-4m.img.zst"
echo "$(ls "$out" | wc -l) seeds in $out"
