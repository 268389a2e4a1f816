/* SPDX-License-Identifier: MIT */
/*
 * comp.h - compression codecs behind one interface, with per-thread streams.
 *
 * A `struct uz_comp` names an algorithm (lz4, lz4hc, zstd, lzo, deflate), its level and an
 * optional zstd dictionary; it is immutable once created and shared by every thread. A
 * `struct uz_comp_stream` owns the codec's working memory and a scratch buffer sized for the
 * worst case, so compressing and decompressing never allocate. Use one stream per thread.
 *
 * The real libraries do the work: liblz4, libzstd, liblzo2 (lzo1x-1) and zlib (raw deflate).
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
 *  @return : a NULL-terminated list of the supported algorithm names, in the order
 *            comp_algorithm lists them: "lzo", "lz4", "lz4hc", "zstd", "deflate". */
UZ_API const char *const *uz_comp_algorithms(void);

/* uz_comp_create() :
 *  Creates a codec. `name` NULL means "lz4". `level` 0 means the algorithm's default
 *  (lz4: acceleration 1; lz4hc: 9; zstd: 1; deflate: 1; lzo has no levels and accepts only 0).
 *  For lz4, a positive level is the acceleration factor (LZ4_compress_fast).
 *  @return : 0, -ENOENT for an unknown name, -EINVAL for a level out of range, -ENOMEM. */
UZ_API int uz_comp_create(const char *name, int level, struct uz_comp **out);

/* uz_comp_destroy() : NULL is a no-op. Every stream of `comp` must be destroyed first. */
UZ_API void uz_comp_destroy(struct uz_comp *comp);

/* uz_comp_load_dict() / uz_comp_set_dict() :
 *  Gives a zstd codec a dictionary (raw content or a zstd-trained dictionary), from a file or
 *  from memory (copied). Call before creating streams.
 *  @return : 0, -EOPNOTSUPP for codecs without dictionaries, -EBUSY once streams exist,
 *            -errno of open/read, -EINVAL for an empty or unusable dictionary, -ENOMEM. */
UZ_API int uz_comp_load_dict(struct uz_comp *comp, const char *path);
UZ_API int uz_comp_set_dict(struct uz_comp *comp, const void *dict, size_t len);

/* uz_comp_name() : the canonical algorithm name ("lz4", ...). */
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

#ifdef __cplusplus
}
#endif
#endif
