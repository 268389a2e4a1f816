// SPDX-License-Identifier: MIT
/*
 * comp_zstd.c - the "zstd" backend (libzstd), optionally with a dictionary.
 *
 * Each stream creates one ZSTD_CCtx and one ZSTD_DCtx and sets their parameters once: the level,
 * and no content size, checksum or dictionary ID in the frame header (the caller knows a page's
 * size), which saves a byte per page, five with a dictionary. Each call is then a single
 * ZSTD_compress2() / ZSTD_decompressDCtx(), whose context reuse costs no allocation. A dictionary
 * is digested once per codec into a ZSTD_CDict and a ZSTD_DDict that every stream references.
 * The decoder accepts exactly one standard zstd frame (no skippable or legacy frames, no trailing
 * bytes), so anything else is reported as corrupt. The magicless format would save 4 more bytes
 * per page (0.4% on the corpus) at the same speed; standard frames keep to the stable API, allow
 * that check and leave dumps readable by the zstd tool.
 */
#include "comp_internal.h"

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

/* The digested dictionary shared (read-only) by every stream of a codec. */
struct zstd_dict {
    ZSTD_CDict *cdict;
    ZSTD_DDict *ddict;
};

static size_t zstd_bound(size_t srclen)
{
    size_t n = ZSTD_compressBound(srclen);
    return ZSTD_isError(n) ? 0 : n;
}

static void zstd_stream_fini(struct uz_comp_stream *s)
{
    ZSTD_freeCCtx(s->cctx);
    ZSTD_freeDCtx(s->dctx);
    s->cctx = s->dctx = NULL;
}

static int zstd_stream_init(struct uz_comp_stream *s)
{
    const struct zstd_dict *d = s->comp->dict_priv;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    s->cctx = cctx;
    s->dctx = dctx;
    if (!cctx || !dctx)
        goto fail;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, s->level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0)))
        goto fail;
    if (d && (ZSTD_isError(ZSTD_CCtx_refCDict(cctx, d->cdict)) ||
              ZSTD_isError(ZSTD_DCtx_refDDict(dctx, d->ddict))))
        goto fail;
    return 0;
fail:
    zstd_stream_fini(s);
    return -ENOMEM;
}

static ssize_t zstd_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                             size_t dstcap)
{
    size_t n = ZSTD_compress2(s->cctx, dst, dstcap, src, srclen);
    if (UZ_LIKELY(!ZSTD_isError(n)))
        return (ssize_t)n;
    return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -E2BIG : -EIO;
}

static ssize_t zstd_decompress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                               size_t dstcap)
{
    /* One standard frame, nothing else: this also keeps the legacy decoders out of reach.
     * (An error code is a huge size_t, never equal to srclen.) */
    uint32_t magic;
    if (UZ_UNLIKELY(srclen < sizeof(magic)))
        return -EBADMSG;
    memcpy(&magic, src, sizeof(magic));
    if (UZ_UNLIKELY(le32toh(magic) != ZSTD_MAGICNUMBER ||
                    ZSTD_findFrameCompressedSize(src, srclen) != srclen))
        return -EBADMSG;
    size_t n = ZSTD_decompressDCtx(s->dctx, dst, dstcap, src, srclen);
    return ZSTD_isError(n) ? -EBADMSG : (ssize_t)n;
}

static void zstd_dict_free(struct uz_comp *comp)
{
    struct zstd_dict *d = comp->dict_priv;
    if (!d)
        return;
    ZSTD_freeCDict(d->cdict);
    ZSTD_freeDDict(d->ddict);
    free(d);
    comp->dict_priv = NULL;
}

static int zstd_set_dict(struct uz_comp *comp, const void *dict, size_t len)
{
    struct zstd_dict *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    /* Both copy `dict`; a malformed trained dictionary (zstd magic, bad tables) fails here. */
    d->cdict = ZSTD_createCDict(dict, len, comp->level);
    d->ddict = ZSTD_createDDict(dict, len);
    if (!d->cdict || !d->ddict) {
        ZSTD_freeCDict(d->cdict);
        ZSTD_freeDDict(d->ddict);
        free(d);
        return -EINVAL;
    }
    zstd_dict_free(comp);
    comp->dict_priv = d;
    return 0;
}

const struct uz_comp_ops uz_comp_zstd_ops = {
    .name = "zstd",
    .level_default = 1,
    .level_min = -7,
    .level_max = 22,
    .max_srclen = (size_t)1 << 40,
    .bound = zstd_bound,
    .stream_init = zstd_stream_init,
    .stream_fini = zstd_stream_fini,
    .compress = zstd_compress,
    .decompress = zstd_decompress,
    .set_dict = zstd_set_dict,
    .dict_free = zstd_dict_free,
};
