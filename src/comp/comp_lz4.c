// SPDX-License-Identifier: MIT
/*
 * comp_lz4.c - the "lz4" and "lz4hc" backends (liblz4 block format).
 *
 * Each stream owns one compression state (LZ4_sizeofState() or LZ4_sizeofStateHC() bytes) and
 * hands it to the *_extState entry points, which is what LZ4_compress_default() and
 * LZ4_compress_HC() do with a stack or heap state of their own: the output is identical, minus
 * the allocation. liblz4 checks dstCapacity itself (its "limited output" mode is picked whenever
 * dstCapacity < LZ4_compressBound()), so nothing is ever written past dstcap. For lz4 the level
 * is the acceleration factor. Both decompress with LZ4_decompress_safe().
 */
#include "comp_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <lz4.h>
#include <lz4hc.h>

#ifndef LZ4_ACCELERATION_MAX
#define LZ4_ACCELERATION_MAX 65537
#endif

static inline int clamp_int(size_t n)
{
    return n > INT_MAX ? INT_MAX : (int)n;
}

static size_t lz4_bound(size_t srclen)
{
    if (srclen > LZ4_MAX_INPUT_SIZE)
        return 0;
    return (size_t)LZ4_compressBound((int)srclen);
}

static int lz4_stream_init(struct uz_comp_stream *s)
{
    s->cctx = uz_comp_aligned_alloc((size_t)LZ4_sizeofState());
    return s->cctx ? 0 : -ENOMEM;
}

static int lz4hc_stream_init(struct uz_comp_stream *s)
{
    s->cctx = uz_comp_aligned_alloc((size_t)LZ4_sizeofStateHC());
    return s->cctx ? 0 : -ENOMEM;
}

static void lz4_stream_fini(struct uz_comp_stream *s)
{
    free(s->cctx);
    s->cctx = NULL;
}

static ssize_t lz4_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                            size_t dstcap)
{
    int n = LZ4_compress_fast_extState(s->cctx, src, dst, (int)srclen, clamp_int(dstcap), s->level);
    return n > 0 ? n : -E2BIG;
}

static ssize_t lz4hc_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                              size_t dstcap)
{
    int n = LZ4_compress_HC_extStateHC(s->cctx, src, dst, (int)srclen, clamp_int(dstcap), s->level);
    return n > 0 ? n : -E2BIG;
}

static ssize_t lz4_decompress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                              size_t dstcap)
{
    if (UZ_UNLIKELY(srclen > INT_MAX))
        return -EBADMSG; /* no valid block of ours is that long */
    int n = LZ4_decompress_safe(src, dst, (int)srclen, clamp_int(dstcap));
    return n >= 0 ? n : -EBADMSG;
}

const struct uz_comp_ops uz_comp_lz4_ops = {
    .name = "lz4",
    .level_default = 1,
    .level_min = 1,
    .level_max = LZ4_ACCELERATION_MAX,
    .max_srclen = LZ4_MAX_INPUT_SIZE,
    .bound = lz4_bound,
    .stream_init = lz4_stream_init,
    .stream_fini = lz4_stream_fini,
    .compress = lz4_compress,
    .decompress = lz4_decompress,
};

const struct uz_comp_ops uz_comp_lz4hc_ops = {
    .name = "lz4hc",
    .level_default = LZ4HC_CLEVEL_DEFAULT,
    .level_min = 1,
    .level_max = LZ4HC_CLEVEL_MAX,
    .max_srclen = LZ4_MAX_INPUT_SIZE,
    .bound = lz4_bound,
    .stream_init = lz4hc_stream_init,
    .stream_fini = lz4_stream_fini,
    .compress = lz4hc_compress,
    .decompress = lz4_decompress,
};
