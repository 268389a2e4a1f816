/* SPDX-License-Identifier: MIT */
/*
 * comp.h - compression codecs behind one interface, with per-thread streams.
 *
 * A `struct uz_comp` names an algorithm (lzo-rle, lzo, lz4, lz4hc, zstd, deflate) and its
 * parameters, as the kernel's zram algorithm_params sets them: a level, a dictionary (lz4, lz4hc,
 * zstd) and deflate's window bits; it is immutable once created and shared by every thread. A
 * `struct uz_comp_stream` owns the codec's working memory and a scratch buffer sized for the
 * worst case, so compressing and decompressing never allocate. Use one stream per thread.
 *
 * The real libraries do the work: liblz4, libzstd, liblzo2 (lzo1x-1) and zlib (raw deflate).
 * "lzo-rle", the kernel's default name, is served by lzo1x-1 too: the kernel's run-length variant
 * exists only in the kernel, and uzram never exchanges compressed pages with it.
 */
#ifndef UZRAM_COMP_H
#define UZRAM_COMP_H

#include <stddef.h>
#include <sys/types.h>
#include <uzram/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A codec configuration. Thread-safety: immutable after creation (and after
 * uz_comp_load_dict()), so any number of threads may create streams from it. */
struct uz_comp;

/* Working memory of one codec user. Thread-safety: none; one thread at a time. */
struct uz_comp_stream;

/* uz_comp_algorithms() :
 *  @return : a NULL-terminated list of the supported algorithm names, in the order the kernel's
 *            comp_algorithm lists them: "lzo-rle", "lzo", "lz4", "lz4hc", "zstd", "deflate". */
UZ_API const char *const *uz_comp_algorithms(void);

/* The largest dictionary uzram reads: 1 MiB. The kernel reads up to INT_MAX bytes; zstd's trained
 * dictionaries are typically 16-110 KiB and lz4 uses only the last 64 KiB of any dictionary. */
#define UZ_COMP_DICT_MAX (1u << 20)

/* A codec's parameters, as zram's algorithm_params sets them. Zero-initialise, then set what is
 * wanted. Thread-safety: plain data. */
struct uz_comp_params {
    int level;           /* 0: the algorithm's default (see uz_comp_create()) */
    int deflate_winbits; /* zlib's windowBits as the kernel passes it: -15..-9 raw deflate,
                          * 9..15 zlib-wrapped; 0: the default, -15 (the kernel's is -11) */
    const void *dict;    /* dictionary content (copied), or NULL */
    size_t dict_len;     /* 0 < dict_len <= UZ_COMP_DICT_MAX when dict is set */
};

/* uz_comp_create() :
 *  Creates a codec. `name` NULL means "lz4". `level` 0 means the algorithm's default
 *  (lz4: acceleration 1; lz4hc: 9; zstd: 1; deflate: 1; lzo has no levels and accepts only 0).
 *  For lz4, a positive level is the acceleration factor (LZ4_compress_fast).
 *  @return : 0, -ENOENT for an unknown name, -EINVAL for a level out of range, -ENOMEM. */
UZ_API int uz_comp_create(const char *name, int level, struct uz_comp **out);

/* uz_comp_create_params() :
 *  Creates a codec with parameters. As the kernel's backends do, a codec ignores the parameters
 *  it has no use for: lzo and lzo-rle the level and the dictionary, deflate the dictionary, all
 *  but deflate the window bits; uz_comp_get_params() still returns them, so that they carry over
 *  to a codec of another algorithm.
 *  @return : 0, -ENOENT for an unknown name, -EINVAL for a level or window bits out of range or
 *            an unusable dictionary (a malformed zstd one, dict_len 0 or too large), -ENOMEM. */
UZ_API int uz_comp_create_params(const char *name, const struct uz_comp_params *params,
                                 struct uz_comp **out);

/* uz_comp_get_params() :
 *  The parameters `comp` was created with (level and window bits as given, 0 for the default);
 *  p->dict points into `comp` and lives as long as it. */
UZ_API void uz_comp_get_params(const struct uz_comp *comp, struct uz_comp_params *p);

/* uz_comp_destroy() : NULL is a no-op. Every stream of `comp` must be destroyed first. */
UZ_API void uz_comp_destroy(struct uz_comp *comp);

/* uz_comp_dict_read() :
 *  Reads a dictionary file into a malloc'd buffer (free() it): a regular file only (opened with
 *  O_NONBLOCK, so a FIFO or a device never blocks the call), of 1 to UZ_COMP_DICT_MAX bytes.
 *  Takes no lock: call it before taking any.
 *  @return : 0, -errno of open/read, -EINVAL for a file that is not regular or is empty, -EFBIG
 *            for one larger than UZ_COMP_DICT_MAX, -ENOMEM. */
UZ_API int uz_comp_dict_read(const char *path, void **dict, size_t *len);

/* uz_comp_load_dict() / uz_comp_set_dict() :
 *  Gives an lz4, lz4hc or zstd codec a dictionary, from a file (uz_comp_dict_read()) or from
 *  memory (copied). zstd takes raw content or a zstd-trained dictionary; lz4 and lz4hc raw
 *  content, of which they use the last 64 KiB. Call before creating streams.
 *  Cost: zstd digests the dictionary once; lz4 and lz4hc copy a prepared match state into the
 *  stream before each page (16 KiB for lz4, 256 KiB for lz4hc; the kernel re-loads the
 *  dictionary before each page instead). On the shared 2-core VM, under load, a 64 KiB
 *  dictionary made a page cost about 1.5x (lz4) and 1.3x (lz4hc) its time without one.
 *  @return : 0, -EOPNOTSUPP for codecs without dictionaries (lzo, lzo-rle, deflate), -EBUSY once
 *            streams exist, the errors of uz_comp_dict_read(), -EINVAL for an empty, too large
 *            or unusable dictionary, -ENOMEM. */
UZ_API int uz_comp_load_dict(struct uz_comp *comp, const char *path);
UZ_API int uz_comp_set_dict(struct uz_comp *comp, const void *dict, size_t len);

/* uz_comp_name() : the algorithm name it was created with ("lz4", "lzo-rle", ...). */
UZ_API const char *uz_comp_name(const struct uz_comp *comp);

/* uz_comp_level() : the effective level (the default resolved). */
UZ_API int uz_comp_level(const struct uz_comp *comp);

/* uz_comp_bound() :
 *  @return : the largest compressed size `srclen` bytes can produce (the codec's worst case). */
UZ_API size_t uz_comp_bound(const struct uz_comp *comp, size_t srclen);

/* uz_comp_stream_create() :
 *  Allocates the codec's working memory and a scratch buffer of
 *  uz_comp_bound(comp, UZ_PAGE_SIZE) bytes (at least UZ_PAGE_SIZE), 64-byte aligned.
 *  @return : 0 or -ENOMEM (-EIO in the unlikely case liblzo2 fails its start-up check). */
UZ_API int uz_comp_stream_create(struct uz_comp *comp, struct uz_comp_stream **out);
UZ_API void uz_comp_stream_destroy(struct uz_comp_stream *s);

/* uz_comp_stream_buf() / uz_comp_stream_buf_size() :
 *  The stream's worst-case scratch buffer: compressing one page into it can never fail for
 *  lack of room. */
UZ_API void *uz_comp_stream_buf(struct uz_comp_stream *s);
UZ_API size_t uz_comp_stream_buf_size(const struct uz_comp_stream *s);

/* uz_comp_compress() :
 *  Compresses src[0..srclen) into dst[0..dstcap). Never writes beyond dstcap, even when another
 *  thread modifies src meanwhile. An input of up to UZ_PAGE_SIZE bytes is first copied into the
 *  stream, so the result is always a valid stream, of some state of a page that changed.
 *  @return : the compressed length (> 0), -E2BIG when the result does not fit in dstcap,
 *            -EINVAL for srclen 0 or too large for the codec, -EIO for an internal codec error.
 *  Note: lzo cannot bound its output, so with dstcap < uz_comp_bound() it compresses into the
 *  stream buffer (or, for srclen > UZ_PAGE_SIZE, a temporary allocation) and copies. */
UZ_API ssize_t uz_comp_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                                size_t dstcap);

/* uz_comp_decompress() :
 *  Decompresses src[0..srclen) into dst[0..dstcap). Never reads beyond srclen nor writes beyond
 *  dstcap, whatever the input.
 *  @return : the decompressed length, -EBADMSG for corrupt or truncated input or output that
 *            would not fit in dstcap, -EINVAL for bad arguments (a NULL pointer, srclen 0). */
UZ_API ssize_t uz_comp_decompress(struct uz_comp_stream *s, const void *src, size_t srclen,
                                  void *dst, size_t dstcap);

/* uz_comp_decompress_prefix() :
 *  Decodes at least the first `want` (0 < want <= dstcap) bytes of the stream src[0..srclen)
 *  into dst[0..dstcap). lz4 and lz4hc stop soon after `want` bytes; the other codecs decode the
 *  whole stream, which must fit in dstcap. Bounds as uz_comp_decompress().
 *  @return : the bytes decoded (>= want), -EBADMSG for corrupt input or a stream shorter than
 *            `want`, -EINVAL for bad arguments. */
UZ_API ssize_t uz_comp_decompress_prefix(struct uz_comp_stream *s, const void *src, size_t srclen,
                                         void *dst, size_t want, size_t dstcap);

#ifdef __cplusplus
}
#endif
#endif
