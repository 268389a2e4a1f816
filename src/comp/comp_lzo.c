// SPDX-License-Identifier: MIT
/*
 * comp_lzo.c - the "lzo" and "lzo-rle" backends: LZO1X-1 from liblzo2, as the kernel's "lzo".
 *
 * "lzo-rle" is the kernel's default algorithm name; its run-length extension of the format exists
 * only in the kernel's lzo, so here it is served by the same LZO1X-1 (uzram never exchanges
 * compressed pages with the kernel, and both formats decode their own output only).
 *
 * Each stream owns LZO1X_1_MEM_COMPRESS bytes of dictionary memory. lzo1x_1_compress() takes no
 * output capacity and may write up to lzo_bound(srclen) bytes, so when the caller's buffer is
 * smaller than that it compresses into the stream's scratch buffer (or, for inputs larger than a
 * page, a temporary one) and copies the result if it fits. The bound holds for any input, even
 * one that changes while it is read, because every input byte is emitted at most once as a
 * literal or covered by a match. Decompression uses lzo1x_decompress_safe(), which checks both
 * buffers' ends; lzo_init() runs once per process.
 */
#include "comp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lzo/lzo1x.h>

static pthread_once_t lzo_once = PTHREAD_ONCE_INIT;
static int lzo_init_rc;

static void lzo_init_once(void)
{
    lzo_init_rc = lzo_init();
}

/* The documented worst case of LZO1X-1 (lzo's examples and the kernel's lzo1x_worst_compress). */
static size_t lzo_bound(size_t srclen)
{
    return srclen + srclen / 16 + 64 + 3;
}

static int lzo_stream_init(struct uz_comp_stream *s)
{
    pthread_once(&lzo_once, lzo_init_once);
    if (lzo_init_rc != LZO_E_OK)
        return -EIO;
    s->cctx = uz_comp_aligned_alloc(LZO1X_1_MEM_COMPRESS);
    return s->cctx ? 0 : -ENOMEM;
}

static void lzo_stream_fini(struct uz_comp_stream *s)
{
    free(s->cctx);
    s->cctx = NULL;
}

static bool overlaps(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + blen && y < x + alen;
}

/* Slow path: dst is smaller than the worst case. */
static ssize_t lzo_compress_copy(struct uz_comp_stream *s, const void *src, size_t srclen,
                                 void *dst, size_t dstcap)
{
    size_t need = lzo_bound(srclen);
    void *tmp = s->buf;
    if (need > s->buf_size || overlaps(dst, dstcap, s->buf, s->buf_size)) {
        tmp = malloc(need);
        if (!tmp)
            return -ENOMEM;
    }
    lzo_uint n = need;
    int rc = lzo1x_1_compress(src, srclen, tmp, &n, s->cctx);
    ssize_t ret = -EIO;
    if (rc == LZO_E_OK && n <= dstcap) {
        memcpy(dst, tmp, n);
        ret = (ssize_t)n;
    } else if (rc == LZO_E_OK) {
        ret = -E2BIG;
    }
    if (tmp != s->buf)
        free(tmp);
    return ret;
}

static ssize_t lzo_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                            size_t dstcap)
{
    if (UZ_UNLIKELY(dstcap < lzo_bound(srclen)))
        return lzo_compress_copy(s, src, srclen, dst, dstcap);
    lzo_uint n = dstcap;
    int rc = lzo1x_1_compress(src, srclen, dst, &n, s->cctx);
    return rc == LZO_E_OK ? (ssize_t)n : -EIO;
}

static ssize_t lzo_decompress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                              size_t dstcap)
{
    lzo_uint n = dstcap;
    int rc = lzo1x_decompress_safe(src, srclen, dst, &n, NULL);
    return rc == LZO_E_OK ? (ssize_t)n : -EBADMSG;
}

/* lzo-rle is the kernel's default name; uzram serves it with the same lzo1x-1 (see comp.h). */
#define LZO_OPS(NAME)                                                                              \
    {                                                                                              \
        .name = NAME, .level_default = 0, .level_min = 0, .level_max = 0,                          \
        .max_srclen = (size_t)1 << 40, .bound = lzo_bound, .stream_init = lzo_stream_init,         \
        .stream_fini = lzo_stream_fini, .compress = lzo_compress, .decompress = lzo_decompress,    \
    }

const struct uz_comp_ops uz_comp_lzo_ops = LZO_OPS("lzo");
const struct uz_comp_ops uz_comp_lzorle_ops = LZO_OPS("lzo-rle");
