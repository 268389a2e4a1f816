// SPDX-License-Identifier: MIT
/*
 * image.c - memory image loader shared by uzram-bench and uzram-demo (see image.h).
 */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define PAGE 4096u

static unsigned char *page_buffer(size_t bytes)
{
    size_t rounded = (bytes + PAGE - 1) / PAGE * PAGE;
    unsigned char *p = aligned_alloc(PAGE, rounded ? rounded : PAGE);
    if (!p)
        errno = ENOMEM;
    return p;
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
        unsigned long long dsize = ZSTD_getFrameContentSize(raw, (size_t)size);
        if (dsize == ZSTD_CONTENTSIZE_ERROR || dsize == ZSTD_CONTENTSIZE_UNKNOWN) {
            free(raw);
            errno = EINVAL;
            return NULL;
        }
        out = page_buffer(dsize);
        if (!out || ZSTD_isError(ZSTD_decompress(out, dsize, raw, (size_t)size))) {
            free(raw);
            free(out);
            errno = out ? EINVAL : ENOMEM;
            return NULL;
        }
        free(raw);
        *npages = dsize / PAGE;
        return out;
    }
    *npages = (size_t)size / PAGE;
    return raw;
}
