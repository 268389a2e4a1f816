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
 *
 * With a dictionary, the codec keeps the dictionary's last 64 KiB (all an lz4 block can refer
 * to) and one match state prepared from it with LZ4_loadDict() / LZ4_loadDictHC(), read-only and
 * shared by every stream. Each page starts from a private copy of that state (memcpy into the
 * stream's own state, which lz4's documentation lists as the way to reuse a loaded dictionary;
 * the cheaper LZ4_attach_dictionary() is not exported by the shared liblz4) and is compressed
 * with LZ4_compress_fast_continue() / LZ4_compress_HC_continue(), which honour dstCapacity as
 * the one-shot calls do. It decompresses with LZ4_decompress_safe_usingDict(), which checks every
 * match offset against the dictionary's size. The kernel instead re-runs LZ4_loadDict() before
 * each page; the output is the same kind of block either way.
 */
#include "comp_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <string.h>

#include <lz4.h>
#include <lz4hc.h>

#define LZ4_WINDOW (64 * 1024) /* the farthest an lz4 match can reach */

/* A codec's dictionary: read-only once prepared. */
struct lz4_dict {
    char *data;  /* the last `len` bytes of the dictionary: what blocks may refer to */
    int len;     /* <= LZ4_WINDOW */
    void *state; /* LZ4_stream_t or LZ4_streamHC_t loaded with data[0..len) */
};

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
    const struct lz4_dict *d = s->comp->dict_priv;
    int n;
    if (UZ_LIKELY(!d)) {
        n = LZ4_compress_fast_extState(s->cctx, src, dst, (int)srclen, clamp_int(dstcap), s->level);
    } else {
        memcpy(s->cctx, d->state, (size_t)LZ4_sizeofState());
        n = LZ4_compress_fast_continue(s->cctx, src, dst, (int)srclen, clamp_int(dstcap), s->level);
    }
    return n > 0 ? n : -E2BIG;
}

static ssize_t lz4hc_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                              size_t dstcap)
{
    const struct lz4_dict *d = s->comp->dict_priv;
    int n;
    if (UZ_LIKELY(!d)) {
        n = LZ4_compress_HC_extStateHC(s->cctx, src, dst, (int)srclen, clamp_int(dstcap), s->level);
    } else {
        memcpy(s->cctx, d->state, (size_t)LZ4_sizeofStateHC());
        n = LZ4_compress_HC_continue(s->cctx, src, dst, (int)srclen, clamp_int(dstcap));
    }
    return n > 0 ? n : -E2BIG;
}

static ssize_t lz4_decompress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                              size_t dstcap)
{
    if (UZ_UNLIKELY(srclen > INT_MAX))
        return -EBADMSG; /* no valid block of ours is that long */
    const struct lz4_dict *d = s->comp->dict_priv;
    int n = UZ_LIKELY(!d) ? LZ4_decompress_safe(src, dst, (int)srclen, clamp_int(dstcap))
                          : LZ4_decompress_safe_usingDict(src, dst, (int)srclen, clamp_int(dstcap),
                                                          d->data, d->len);
    return n >= 0 ? n : -EBADMSG;
}

/* lz4 decodes sequentially and can stop once `want` bytes are out (a page of a multi-page
 * object needs only the pages up to it). */
static ssize_t lz4_decompress_prefix(struct uz_comp_stream *s, const void *src, size_t srclen,
                                     void *dst, size_t want, size_t dstcap)
{
    if (UZ_UNLIKELY(srclen > INT_MAX))
        return -EBADMSG;
    const struct lz4_dict *d = s->comp->dict_priv;
    int cap = clamp_int(dstcap), target = clamp_int(want);
    int n = UZ_LIKELY(!d) ? LZ4_decompress_safe_partial(src, dst, (int)srclen, target, cap)
                          : LZ4_decompress_safe_partial_usingDict(src, dst, (int)srclen, target,
                                                                  cap, d->data, d->len);
    return n >= 0 ? n : -EBADMSG;
}

static void lz4_dict_free(struct uz_comp *comp)
{
    struct lz4_dict *d = comp->dict_priv;
    if (!d)
        return;
    free(d->data);
    free(d->state);
    free(d);
    comp->dict_priv = NULL;
}

/* Keeps the dictionary's last 64 KiB and a match state loaded from them, at the codec's level. */
static int lz4_dict_prepare(struct uz_comp *comp, const void *dict, size_t len, bool hc)
{
    size_t keep = len < LZ4_WINDOW ? len : LZ4_WINDOW;
    size_t state_size = (size_t)(hc ? LZ4_sizeofStateHC() : LZ4_sizeofState());
    struct lz4_dict *d = calloc(1, sizeof(*d));
    if (d) {
        d->data = malloc(keep);
        d->state = uz_comp_aligned_alloc(state_size);
    }
    if (!d || !d->data || !d->state) {
        if (d) {
            free(d->data);
            free(d->state);
        }
        free(d);
        return -ENOMEM;
    }
    memcpy(d->data, (const char *)dict + (len - keep), keep);
    /* Both load all of data[0..keep) (keep <= 64 KiB), or, for a dictionary too short to hash,
     * nothing that a block could refer to: decoding against data[0..keep) is right either way,
     * since offsets count back from the page's start. */
    if (hc) {
        LZ4_streamHC_t *st = LZ4_initStreamHC(d->state, state_size);
        LZ4_resetStreamHC_fast(st, comp->level);
        LZ4_loadDictHC(st, d->data, (int)keep);
    } else {
        LZ4_loadDict(LZ4_initStream(d->state, state_size), d->data, (int)keep);
    }
    d->len = (int)keep;
    lz4_dict_free(comp);
    comp->dict_priv = d;
    return 0;
}

static int lz4_set_dict(struct uz_comp *comp, const void *dict, size_t len)
{
    return lz4_dict_prepare(comp, dict, len, false);
}

static int lz4hc_set_dict(struct uz_comp *comp, const void *dict, size_t len)
{
    return lz4_dict_prepare(comp, dict, len, true);
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
    .decompress_prefix = lz4_decompress_prefix,
    .set_dict = lz4_set_dict,
    .dict_free = lz4_dict_free,
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
    .decompress_prefix = lz4_decompress_prefix,
    .set_dict = lz4hc_set_dict,
    .dict_free = lz4_dict_free,
};
