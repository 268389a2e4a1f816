// SPDX-License-Identifier: MIT
/*
 * comp_deflate.c - the "deflate" backend: zlib raw deflate (RFC 1951, no zlib/gzip wrapper).
 *
 * Each stream owns one deflate z_stream and one inflate z_stream, initialised once (memLevel 8,
 * windowBits -15 or deflate.winbits as the kernel passes it: negative for raw deflate, positive
 * for the zlib format, whose 6 bytes of header and Adler-32 deflateBound() covers) and only reset
 * per call, so a call allocates nothing. zlib bounds every write
 * by avail_out, and deflate compresses from its own copy of the input (its window), so neither
 * a short dst nor a src changing underneath can make it overrun. A decompressed stream must end
 * exactly at srclen with a final block; anything else (truncated, corrupt, trailing bytes,
 * output larger than dstcap) is -EBADMSG.
 */
#include "comp_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <zlib.h>

#define DEFLATE_WBITS    15
#define DEFLATE_MEMLEVEL 8

static inline uInt clamp_uint(size_t n)
{
    return n > UINT_MAX ? UINT_MAX : (uInt)n;
}

/* zlib's conservative bound for any parameters (deflateBound() without a stream), which also
 * covers a zlib wrapper we do not emit. */
static size_t deflate_bound(size_t srclen)
{
    return deflateBound(NULL, srclen);
}

static void deflate_stream_fini(struct uz_comp_stream *s)
{
    z_stream *c = s->cctx, *d = s->dctx;
    if (c) {
        deflateEnd(c);
        free(c);
    }
    if (d) {
        inflateEnd(d);
        free(d);
    }
    s->cctx = s->dctx = NULL;
}

static int deflate_stream_init(struct uz_comp_stream *s)
{
    int wbits = s->comp->winbits ? s->comp->winbits : -DEFLATE_WBITS;
    z_stream *c = calloc(1, sizeof(*c));
    if (c && deflateInit2(c, s->level, Z_DEFLATED, wbits, DEFLATE_MEMLEVEL, Z_DEFAULT_STRATEGY) !=
                 Z_OK) {
        free(c);
        c = NULL;
    }
    s->cctx = c;
    z_stream *d = calloc(1, sizeof(*d));
    if (d && inflateInit2(d, wbits) != Z_OK) {
        free(d);
        d = NULL;
    }
    s->dctx = d;
    if (!c || !d) {
        deflate_stream_fini(s);
        return -ENOMEM;
    }
    return 0;
}

static ssize_t deflate_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                                size_t dstcap)
{
    z_stream *z = s->cctx;
    if (UZ_UNLIKELY(deflateReset(z) != Z_OK))
        return -EIO;
    uInt cap = clamp_uint(dstcap);
    z->next_in = (Bytef *)src;
    z->avail_in = (uInt)srclen;
    z->next_out = dst;
    z->avail_out = cap;
    int rc = deflate(z, Z_FINISH);
    if (UZ_LIKELY(rc == Z_STREAM_END))
        return (ssize_t)(cap - z->avail_out);
    /* With all input given and Z_FINISH, anything short of the end means dst is full. */
    return rc == Z_OK || rc == Z_BUF_ERROR ? -E2BIG : -EIO;
}

static ssize_t deflate_decompress(struct uz_comp_stream *s, const void *src, size_t srclen,
                                  void *dst, size_t dstcap)
{
    z_stream *z = s->dctx;
    if (UZ_UNLIKELY(srclen > UINT_MAX || inflateReset(z) != Z_OK))
        return -EBADMSG;
    uInt cap = clamp_uint(dstcap);
    z->next_in = (Bytef *)src;
    z->avail_in = (uInt)srclen;
    z->next_out = dst;
    z->avail_out = cap;
    int rc = inflate(z, Z_FINISH);
    if (UZ_LIKELY(rc == Z_STREAM_END && z->avail_in == 0))
        return (ssize_t)(cap - z->avail_out);
    /* Including Z_MEM_ERROR: zlib allocates its window (once per stream) only when a stream
     * does not finish in one call, which with all of it given means it is truncated or too
     * large for dst. */
    return -EBADMSG;
}

const struct uz_comp_ops uz_comp_deflate_ops = {
    .name = "deflate",
    .level_default = 1,
    .level_min = 1,
    .level_max = 9,
    .max_srclen = UINT_MAX,
    .winbits = true,
    .bound = deflate_bound,
    .stream_init = deflate_stream_init,
    .stream_fini = deflate_stream_fini,
    .compress = deflate_compress,
    .decompress = deflate_decompress,
};
