// SPDX-License-Identifier: MIT
/*
 * image.c - memory image loader shared by the tools, benchmarks and tests (see image.h).
 */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define IMG_PAGE 4096u

static unsigned char *page_buffer(size_t bytes)
{
    size_t rounded = (bytes + IMG_PAGE - 1) / IMG_PAGE * IMG_PAGE;
    unsigned char *p = aligned_alloc(IMG_PAGE, rounded ? rounded : IMG_PAGE);
    if (!p)
        errno = ENOMEM;
    return p;
}

/* Streams the frame(s) out, so frames without a content size (from a pipe) work too. */
static unsigned char *decompress(const unsigned char *src, size_t len, size_t *npages)
{
    unsigned long long hint = ZSTD_getFrameContentSize(src, len);
    size_t cap =
        hint == ZSTD_CONTENTSIZE_ERROR || hint == ZSTD_CONTENTSIZE_UNKNOWN ? len * 4 : (size_t)hint;
    cap = (cap + IMG_PAGE - 1) / IMG_PAGE * IMG_PAGE + IMG_PAGE;
    unsigned char *out = page_buffer(cap);
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!out || !ds) {
        free(out);
        ZSTD_freeDStream(ds);
        errno = ENOMEM;
        return NULL;
    }
    ZSTD_inBuffer in = {src, len, 0};
    ZSTD_outBuffer ob = {out, cap, 0};
    size_t rc = 1;
    while (in.pos < in.size) {
        if (ob.pos == ob.size) {
            unsigned char *bigger = page_buffer(cap * 2);
            if (!bigger) {
                rc = (size_t)-1;
                break;
            }
            memcpy(bigger, out, ob.pos);
            free(out);
            out = bigger;
            cap *= 2;
            ob.dst = out;
            ob.size = cap;
        }
        rc = ZSTD_decompressStream(ds, &ob, &in);
        if (ZSTD_isError(rc))
            break;
    }
    ZSTD_freeDStream(ds);
    if (rc == (size_t)-1 || ZSTD_isError(rc) || rc != 0) {
        free(out);
        errno = rc == (size_t)-1 ? ENOMEM : EINVAL;
        return NULL;
    }
    *npages = ob.pos / IMG_PAGE;
    return out;
}

unsigned char *uz_image_load(const char *path, size_t *npages)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *raw = NULL, *out = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        errno = EINVAL;
        return NULL;
    }
    raw = page_buffer((size_t)size);
    if (!raw || fread(raw, 1, (size_t)size, f) != (size_t)size) {
        int e = errno ? errno : EIO;
        fclose(f);
        free(raw);
        errno = e;
        return NULL;
    }
    fclose(f);
    /* A zstd frame starts with the magic number 0xFD2FB528 (little-endian). */
    if (size >= 4 && raw[0] == 0x28 && raw[1] == 0xb5 && raw[2] == 0x2f && raw[3] == 0xfd) {
        out = decompress(raw, (size_t)size, npages);
        int e = errno;
        free(raw);
        errno = e;
        return out;
    }
    *npages = (size_t)size / IMG_PAGE;
    return raw;
}
