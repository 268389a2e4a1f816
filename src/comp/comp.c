// SPDX-License-Identifier: MIT
/*
 * comp.c - the generic half of the codec interface: the algorithm table, codec and stream
 * lifetimes, parameters and dictionaries, argument checks, and dispatch to the backend ops.
 *
 * The per-call path is one argument check and one indirect call: a stream carries a copy of its
 * ops pointer and already holds every piece of working memory its codec needs, so compressing
 * and decompressing never allocate nor lock. The stream count is atomic only so that
 * set_dict() can refuse (-EBUSY) once streams exist.
 */
#include "comp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The kernel's order (drivers/block/zram/zcomp.c), which comp_algorithm shows. */
static const struct uz_comp_ops *const backends[] = {
    &uz_comp_lzorle_ops, &uz_comp_lzo_ops,  &uz_comp_lz4_ops,
    &uz_comp_lz4hc_ops,  &uz_comp_zstd_ops, &uz_comp_deflate_ops,
};

static const char *const algorithm_names[] = {"lzo-rle", "lzo",     "lz4", "lz4hc",
                                              "zstd",    "deflate", NULL};

_Static_assert(UZ_ARRAY_SIZE(backends) + 1 == UZ_ARRAY_SIZE(algorithm_names),
               "one name per backend");

void *uz_comp_aligned_alloc(size_t size)
{
    void *p;
    return posix_memalign(&p, UZ_CACHELINE, size ? size : 1) ? NULL : p;
}

const char *const *uz_comp_algorithms(void)
{
    return algorithm_names;
}

static const struct uz_comp_ops *find_ops(const char *name)
{
    for (size_t i = 0; i < UZ_ARRAY_SIZE(backends); i++)
        if (!strcmp(name, backends[i]->name))
            return backends[i];
    return NULL;
}

static int comp_new(const struct uz_comp_ops *ops, int level, struct uz_comp **out)
{
    if (level == 0)
        level = ops->level_default;
    else if (level < ops->level_min || level > ops->level_max)
        return -EINVAL;
    struct uz_comp *comp = calloc(1, sizeof(*comp));
    if (!comp)
        return -ENOMEM;
    comp->ops = ops;
    comp->level = level;
    atomic_init(&comp->nstreams, 0);
    *out = comp;
    return 0;
}

int uz_comp_create(const char *name, int level, struct uz_comp **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    const struct uz_comp_ops *ops = find_ops(name ? name : "lz4");
    if (!ops)
        return -ENOENT;
    int rc = comp_new(ops, level, out);
    if (!rc)
        (*out)->level_param = level;
    return rc;
}

/* Keeps the dictionary as given, for uz_comp_get_params(). */
static int keep_raw_dict(struct uz_comp *comp, const void *dict, size_t len)
{
    void *copy = malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, dict, len);
    free(comp->dict_raw);
    comp->dict_raw = copy;
    comp->dict_raw_len = len;
    return 0;
}

int uz_comp_create_params(const char *name, const struct uz_comp_params *p, struct uz_comp **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!p)
        return uz_comp_create(name, 0, out);
    const struct uz_comp_ops *ops = find_ops(name ? name : "lz4");
    if (!ops)
        return -ENOENT;
    if (p->dict && (!p->dict_len || p->dict_len > UZ_COMP_DICT_MAX))
        return -EINVAL;
    int w = p->deflate_winbits;
    if (ops->winbits && w && (w < -15 || w > 15 || (w > -9 && w < 9)))
        return -EINVAL; /* what the kernel's zlib_deflateInit2() accepts */
    /* A codec without levels ignores one, as the kernel's lzo backends do. */
    bool levels = ops->level_min != 0 || ops->level_max != 0;
    struct uz_comp *comp;
    int rc = comp_new(ops, levels ? p->level : 0, &comp);
    if (rc)
        return rc;
    comp->level_param = p->level;
    comp->winbits = w;
    if (p->dict) {
        rc = ops->set_dict ? ops->set_dict(comp, p->dict, p->dict_len) : 0;
        if (!rc)
            rc = keep_raw_dict(comp, p->dict, p->dict_len);
        if (rc) {
            uz_comp_destroy(comp);
            return rc;
        }
    }
    *out = comp;
    return 0;
}

void uz_comp_get_params(const struct uz_comp *comp, struct uz_comp_params *p)
{
    *p = (struct uz_comp_params){.level = comp->level_param,
                                 .deflate_winbits = comp->winbits,
                                 .dict = comp->dict_raw,
                                 .dict_len = comp->dict_raw_len};
}

void uz_comp_destroy(struct uz_comp *comp)
{
    if (!comp)
        return;
    if (comp->ops->dict_free)
        comp->ops->dict_free(comp);
    free(comp->dict_raw);
    free(comp);
}

int uz_comp_set_dict(struct uz_comp *comp, const void *dict, size_t len)
{
    if (!comp)
        return -EINVAL;
    if (!comp->ops->set_dict)
        return -EOPNOTSUPP;
    if (atomic_load(&comp->nstreams))
        return -EBUSY;
    if (!dict || !len || len > UZ_COMP_DICT_MAX)
        return -EINVAL;
    int rc = comp->ops->set_dict(comp, dict, len);
    return rc ? rc : keep_raw_dict(comp, dict, len);
}

/* Reads at most UZ_COMP_DICT_MAX + 1 bytes, so that a file growing after fstat() is still caught
 * as too large rather than read without bound. O_NONBLOCK: opening a FIFO without a writer, or a
 * device, returns at once and fstat() then refuses it. */
int uz_comp_dict_read(const char *path, void **out, size_t *outlen)
{
    if (!path || !out || !outlen)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) ? -errno : 0;
    if (!rc && !S_ISREG(st.st_mode))
        rc = -EINVAL;
    else if (!rc && st.st_size > (off_t)UZ_COMP_DICT_MAX)
        rc = -EFBIG;
    char *buf = NULL;
    size_t len = 0, cap = UZ_COMP_DICT_MAX + 1;
    if (!rc && !(buf = malloc(cap)))
        rc = -ENOMEM;
    while (!rc && len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -errno;
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    close(fd);
    if (!rc && len > UZ_COMP_DICT_MAX)
        rc = -EFBIG;
    else if (!rc && len == 0)
        rc = -EINVAL;
    if (rc) {
        free(buf);
        return rc;
    }
    char *fit = realloc(buf, len); /* give back the unused tail */
    *out = fit ? fit : buf;
    *outlen = len;
    return 0;
}

int uz_comp_load_dict(struct uz_comp *comp, const char *path)
{
    if (!comp || !path)
        return -EINVAL;
    if (!comp->ops->set_dict)
        return -EOPNOTSUPP;
    if (atomic_load(&comp->nstreams))
        return -EBUSY;
    void *dict = NULL;
    size_t len = 0;
    int rc = uz_comp_dict_read(path, &dict, &len);
    if (rc)
        return rc;
    rc = uz_comp_set_dict(comp, dict, len);
    free(dict);
    return rc;
}

const char *uz_comp_name(const struct uz_comp *comp)
{
    return comp->ops->name;
}

int uz_comp_level(const struct uz_comp *comp)
{
    return comp->level;
}

size_t uz_comp_bound(const struct uz_comp *comp, size_t srclen)
{
    return comp->ops->bound(srclen);
}

int uz_comp_stream_create(struct uz_comp *comp, struct uz_comp_stream **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!comp)
        return -EINVAL;
    struct uz_comp_stream *s = uz_comp_aligned_alloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    memset(s, 0, sizeof(*s));
    s->ops = comp->ops;
    s->comp = comp;
    s->level = comp->level;
    s->buf_size = comp->ops->bound(UZ_PAGE_SIZE);
    if (s->buf_size < UZ_PAGE_SIZE)
        s->buf_size = UZ_PAGE_SIZE;
    s->buf = uz_comp_aligned_alloc(s->buf_size);
    s->snap = uz_comp_aligned_alloc(UZ_PAGE_SIZE);
    int rc = s->buf && s->snap ? s->ops->stream_init(s) : -ENOMEM;
    if (rc) {
        free(s->buf);
        free(s->snap);
        free(s);
        return rc;
    }
    /* Pairs with the load in set_dict(): a dictionary change after this point is refused. */
    atomic_fetch_add(&comp->nstreams, 1);
    *out = s;
    return 0;
}

void uz_comp_stream_destroy(struct uz_comp_stream *s)
{
    if (!s)
        return;
    s->ops->stream_fini(s);
    atomic_fetch_sub(&s->comp->nstreams, 1);
    free(s->buf);
    free(s->snap);
    free(s);
}

void *uz_comp_stream_buf(struct uz_comp_stream *s)
{
    return s->buf;
}

size_t uz_comp_stream_buf_size(const struct uz_comp_stream *s)
{
    return s->buf_size;
}

ssize_t uz_comp_compress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                         size_t dstcap)
{
    if (UZ_UNLIKELY(!s || !src || !dst || !srclen || srclen > s->ops->max_srclen))
        return -EINVAL;
    /* A source that changes while it is compressed can make a codec emit a stream that does not
     * decode (seen with lz4, about once in 10^5 racing pages). Compressing a private copy makes
     * the result always a valid stream of some page, whatever the caller's page does meanwhile;
     * the copy costs about 1% of an lz4 compression. */
    if (srclen <= UZ_PAGE_SIZE) {
        memcpy(s->snap, src, srclen);
        src = s->snap;
    }
    return s->ops->compress(s, src, srclen, dst, dstcap);
}

ssize_t uz_comp_decompress(struct uz_comp_stream *s, const void *src, size_t srclen, void *dst,
                           size_t dstcap)
{
    if (UZ_UNLIKELY(!s || !src || !dst || !srclen))
        return -EINVAL;
    return s->ops->decompress(s, src, srclen, dst, dstcap);
}

ssize_t uz_comp_decompress_prefix(struct uz_comp_stream *s, const void *src, size_t srclen,
                                  void *dst, size_t want, size_t dstcap)
{
    if (UZ_UNLIKELY(!s || !src || !dst || !srclen || !want || want > dstcap))
        return -EINVAL;
    ssize_t n = s->ops->decompress_prefix
                    ? s->ops->decompress_prefix(s, src, srclen, dst, want, dstcap)
                    : s->ops->decompress(s, src, srclen, dst, dstcap);
    return n < 0 ? n : (size_t)n < want ? -EBADMSG : n;
}
