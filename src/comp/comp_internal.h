/* SPDX-License-Identifier: MIT */
/*
 * comp_internal.h - the codec module's private declarations: the backend ops table that comp.c
 * dispatches through, and the two objects every backend sees.
 *
 * Each backend (comp_lz4.c, comp_zstd.c, comp_lzo.c, comp_deflate.c) fills one
 * `struct uz_comp_ops` and does only codec work; comp.c owns lifetimes, argument checks and the
 * scratch buffer. A backend's compress()/decompress() are called with arguments already checked
 * (pointers non-NULL, 0 < srclen <= max_srclen) and must map results to -errno themselves:
 * compress -> length > 0, -E2BIG (does not fit), -EIO; decompress -> length, -EBADMSG.
 */
#ifndef UZ_COMP_INTERNAL_H
#define UZ_COMP_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <uzram/comp.h>

#include "util.h"

struct uz_comp_ops {
    const char *name;
    int level_default; /* what level 0 resolves to */
    int level_min;     /* valid levels: level_min <= level <= level_max, or 0 */
    int level_max;
    size_t max_srclen; /* largest input compress() accepts (the codec's int/uInt limits) */
    bool winbits;      /* uses uz_comp.winbits (deflate) */

    /* bound() : worst-case compressed size of any `srclen` bytes, whatever their content. */
    size_t (*bound)(size_t srclen);

    /* stream_init() / stream_fini() : allocate / free s->cctx and s->dctx (s->comp, s->level
     * and s->buf are already set). init returns 0 or -ENOMEM and cleans up after itself;
     * fini must accept a stream whose init failed half-way (NULL members). */
    int (*stream_init)(struct uz_comp_stream *s);
    void (*stream_fini)(struct uz_comp_stream *s);

    ssize_t (*compress)(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                        size_t dstcap);
    ssize_t (*decompress)(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                          size_t dstcap);
    /* decompress_prefix() : optional (NULL: decompress() of the whole stream). Decodes at least
     * the first `want` bytes into dst[0..dstcap) and may stop there; returns the bytes decoded
     * or -EBADMSG. */
    ssize_t (*decompress_prefix)(struct uz_comp_stream *s, const void *src, size_t srclen,
                                 void *dst, size_t want, size_t dstcap);

    /* set_dict() : optional (NULL: -EOPNOTSUPP). Replaces comp->dict_priv, the backend's
     * prepared dictionary, from 0 < `len` <= UZ_COMP_DICT_MAX bytes; called only while no stream
     * exists. Returns 0, -EINVAL (unusable) or -ENOMEM.
     * dict_free() releases comp->dict_priv (NULL is a no-op). */
    int (*set_dict)(struct uz_comp *comp, const void *dict, size_t len);
    void (*dict_free)(struct uz_comp *comp);
};

struct uz_comp {
    const struct uz_comp_ops *ops;
    int level;       /* resolved: never 0 unless the codec has no levels (lzo) */
    int level_param; /* as given (0: default), kept even when the codec ignores it */
    int winbits;     /* deflate's windowBits as given (0: default) */
    void *dict_priv; /* backend's prepared dictionary, or NULL */
    void *dict_raw;  /* the dictionary as given (uz_comp_get_params()), or NULL */
    size_t dict_raw_len;
    atomic_uint nstreams; /* live streams; dictionaries may change only while == 0 */
};

struct uz_comp_stream {
    const struct uz_comp_ops *ops; /* == comp->ops, one load less per call */
    struct uz_comp *comp;
    int level;       /* == comp->level */
    void *cctx;      /* backend's compression working memory */
    void *dctx;      /* backend's decompression working memory, or NULL */
    void *buf;       /* 64-byte aligned, buf_size bytes */
    size_t buf_size; /* == max(ops->bound(UZ_PAGE_SIZE), UZ_PAGE_SIZE) */
    void *snap;      /* UZ_PAGE_SIZE bytes: the private copy a page is compressed from */
};

/* The backends, in uz_comp_algorithms() order. */
UZ_HIDDEN extern const struct uz_comp_ops uz_comp_lzorle_ops;
UZ_HIDDEN extern const struct uz_comp_ops uz_comp_lzo_ops;
UZ_HIDDEN extern const struct uz_comp_ops uz_comp_lz4_ops;
UZ_HIDDEN extern const struct uz_comp_ops uz_comp_lz4hc_ops;
UZ_HIDDEN extern const struct uz_comp_ops uz_comp_zstd_ops;
UZ_HIDDEN extern const struct uz_comp_ops uz_comp_deflate_ops;

/* uz_comp_aligned_alloc() : 64-byte aligned, exactly `size` bytes (so sanitizers see overruns);
 * free with free(). */
UZ_HIDDEN void *uz_comp_aligned_alloc(size_t size);

#endif
