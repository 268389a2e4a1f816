// SPDX-License-Identifier: MIT
/*
 * comp.c - the generic half of the codec interface: the algorithm table, codec and stream
 * lifetimes, dictionaries, argument checks, and dispatch to the backend ops.
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

static const struct uz_comp_ops *const backends[] = {
    &uz_comp_lzo_ops, &uz_comp_lz4_ops, &uz_comp_lz4hc_ops, &uz_comp_zstd_ops, &uz_comp_deflate_ops,
};

static const char *const algorithm_names[] = {"lzo", "lz4", "lz4hc", "zstd", "deflate", NULL};

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

int uz_comp_create(const char *name, int level, struct uz_comp **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!name)
        name = "lz4";
    const struct uz_comp_ops *ops = NULL;
    for (size_t i = 0; i < UZ_ARRAY_SIZE(backends); i++) {
        if (!strcmp(name, backends[i]->name)) {
            ops = backends[i];
            break;
        }
    }
    if (!ops)
        return -ENOENT;
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

void uz_comp_destroy(struct uz_comp *comp)
{
    if (!comp)
        return;
    if (comp->ops->dict_free)
        comp->ops->dict_free(comp);
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
    if (!dict || !len)
        return -EINVAL;
    return comp->ops->set_dict(comp, dict, len);
}

/* Reads a whole file (regular or not) into a malloc'd buffer. */
static int read_file(const char *path, void **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    size_t cap = (fstat(fd, &st) == 0 && st.st_size > 0) ? (size_t)st.st_size + 1 : 65536;
    size_t len = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : -ENOMEM;
    while (!rc) {
        if (len == cap) {
            char *nbuf = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nbuf) {
                rc = -ENOMEM;
                break;
            }
            buf = nbuf;
            cap *= 2;
        }
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
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
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
    int rc = read_file(path, &dict, &len);
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
