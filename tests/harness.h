/* SPDX-License-Identifier: MIT */
/*
 * harness.h - the tiny test harness: CHECK macros that report file:line and exit 1, the skip
 * exit code (77, Meson's convention), a seeded xorshift64 generator, and a loader for memory
 * images (the shared corpus or the embedded sample in data/).
 */
#ifndef UZ_HARNESS_H
#define UZ_HARNESS_H

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h" /* support/image: the loader the tools use too */

#define UZT_SKIP 77

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) {                                                                            \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__,         \
                    __LINE__, #a, #b, _a, _b);                                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (strcmp(_a, _b) != 0) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK_STR failed:\n  got:  \"%s\"\n  want: \"%s\"\n",          \
                    __FILE__, __LINE__, _a, _b);                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* xorshift64 (Marsaglia), the generator the anchors' workloads use. */
static inline uint64_t uzt_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Fills `len` bytes with a stream derived from `key` (uzt_pattern_ok() checks them). */
static inline void uzt_pattern_fill(void *dst, size_t len, uint64_t key)
{
    uint64_t s = key * 0x9e3779b97f4a7c15ull | 1;
    unsigned char *p = dst;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = uzt_rand(&s);
        memcpy(p + i, &v, len - i < 8 ? len - i : 8);
    }
}

static inline int uzt_pattern_ok(const void *src, size_t len, uint64_t key)
{
    unsigned char buf[4096];
    if (len > sizeof(buf))
        return 0;
    uzt_pattern_fill(buf, len, key);
    return memcmp(buf, src, len) == 0;
}

/* uzt_load_image() :
 *  Loads a memory image (raw pages or zstd): `name` is looked up as given, then in
 *  $UZ_CORPUS_DIR, then in the source tree's ../shared/corpus and data/. Returns a page-aligned
 *  malloc'd buffer of whole pages and sets *pages, or NULL when not found. */
static inline void *uzt_load_image(const char *name, size_t *pages)
{
    char path[4096];
    const char *dirs[] = {"", getenv("UZ_CORPUS_DIR"), UZ_SOURCE_ROOT "/../shared/corpus",
                          UZ_SOURCE_ROOT "/data"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (!dirs[i])
            continue;
        snprintf(path, sizeof(path), "%s%s%s", dirs[i], *dirs[i] ? "/" : "", name);
        void *img = uz_image_load(path, pages);
        if (img)
            return img;
    }
    return NULL;
}

/* The embedded sample (always present): 1024 pages, half python3, half node. */
#define UZT_SAMPLE "sample-4m.img.zst"

#endif
