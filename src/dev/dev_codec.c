// SPDX-License-Identifier: MIT
/*
 * dev_codec.c - the device's codec and its compression streams: a pool of streams, each with a
 * worst-case output buffer and a page of scratch, taken by whoever compresses or decompresses.
 * A new codec is built whole (codec, dictionary, streams) with no device lock held and only
 * swapped in under the exclusive lock; the old one is freed after the lock is dropped.
 */
#include "dev_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- streams ---- */

static struct uz_dev_stream *streams_get(struct uz_dev_stream *v, unsigned n)
{
    unsigned first = uz_thread_slot() % n;
    for (unsigned i = 0; i < n; i++) {
        struct uz_dev_stream *st = &v[(first + i) % n];
        if (pthread_mutex_trylock(&st->lock) == 0)
            return st;
    }
    struct uz_dev_stream *st = &v[first];
    pthread_mutex_lock(&st->lock);
    return st;
}

struct uz_dev_stream *uz_dev_stream_get(struct uz_dev *dev)
{
    return streams_get(dev->streams, dev->nstreams);
}

struct uz_dev_stream *uz_dev_prio_stream_get(struct uz_dev *dev, unsigned prio)
{
    if (!prio)
        return uz_dev_stream_get(dev);
    const struct uz_dev_codec *c = &dev->sec[prio];
    return c->comp ? streams_get(c->streams, c->nstreams) : NULL;
}

/* ---- decoding ---- */

int uz_dev_decode(struct uz_dev *dev, uint32_t flags, const void *obj, void *page,
                  struct uz_dev_stream *held)
{
    if (flags & UZ_SLOT_HUGE) {
        memcpy(page, obj, UZ_PAGE_SIZE);
        return 0;
    }
    unsigned prio = uz_slot_prio(flags);
    struct uz_dev_stream *st = held ? held : uz_dev_prio_stream_get(dev, prio);
    if (!st)
        return -EIO; /* made by a secondary that is gone: cannot happen while it holds data */
    ssize_t n = uz_comp_decompress(st->cs, obj, flags & UZ_SLOT_SIZE_MASK, page, UZ_PAGE_SIZE);
    if (!held)
        uz_dev_stream_put(st);
    return n == UZ_PAGE_SIZE ? 0 : -EIO;
}

void uz_dev_stream_put(struct uz_dev_stream *st)
{
    pthread_mutex_unlock(&st->lock);
}

static void streams_free(struct uz_dev_stream *v, unsigned n)
{
    for (unsigned i = 0; v && i < n; i++) {
        uz_comp_stream_destroy(v[i].cs);
        free(v[i].page);
        uz_dev_stream_run_free(&v[i]);
        pthread_mutex_destroy(&v[i].lock);
    }
    free(v);
}

void uz_dev_streams_free(struct uz_dev *dev)
{
    streams_free(dev->streams, dev->nstreams);
    dev->streams = NULL;
    dev->nstreams = 0;
}

static int streams_alloc(struct uz_comp *comp, struct uz_dev_stream **out, unsigned n)
{
    struct uz_dev_stream *v = aligned_alloc(UZ_CACHELINE, sizeof(*v) * n);
    if (!v)
        return -ENOMEM;
    memset(v, 0, sizeof(*v) * n);
    unsigned i;
    int rc = 0;
    for (i = 0; i < n; i++) {
        pthread_mutex_init(&v[i].lock, NULL);
        v[i].page = aligned_alloc(UZ_CACHELINE, UZ_PAGE_SIZE);
        rc = v[i].page ? uz_comp_stream_create(comp, &v[i].cs) : -ENOMEM;
        if (rc) {
            i++;
            break;
        }
    }
    if (rc) {
        streams_free(v, i);
        return rc;
    }
    *out = v;
    return 0;
}

void uz_dev_codec_free(struct uz_dev_codec *c)
{
    streams_free(c->streams, c->nstreams);
    uz_comp_destroy(c->comp);
    free(c->dict_path);
    *c = (struct uz_dev_codec){0};
}

int uz_dev_codec_build(const struct uz_dev *dev, const char *algorithm,
                       const struct uz_comp_params *params, const char *dict_path,
                       struct uz_dev_codec *out)
{
    *out = (struct uz_dev_codec){0};
    int rc = uz_comp_create_params(algorithm, params, &out->comp);
    if (rc)
        return rc;
    if (dict_path && !(out->dict_path = strdup(dict_path))) {
        uz_dev_codec_free(out);
        return -ENOMEM;
    }
    /* Two streams per CPU plus one per worker, so a thread almost never waits for one. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = (unsigned)(cpus > 0 ? cpus : 1) * 2 + dev->nworkers;
    if ((rc = streams_alloc(out->comp, &out->streams, n))) {
        uz_dev_codec_free(out);
        return rc;
    }
    out->nstreams = n;
    return 0;
}

void uz_dev_codec_swap(struct uz_dev *dev, struct uz_dev_codec *c)
{
    struct uz_dev_codec old = {dev->comp, dev->streams, dev->nstreams, dev->dict_path};
    dev->comp = c->comp;
    dev->streams = c->streams;
    dev->nstreams = c->nstreams;
    dev->dict_path = c->dict_path;
    snprintf(dev->algorithm, sizeof(dev->algorithm), "%s", uz_comp_name(dev->comp));
    dev->codec_gen++;
    *c = old;
}

int uz_dev_set_codec(struct uz_dev *dev, const char *algorithm, int level, const char *dict_path)
{
    /* uz_dev_create() refuses a level the codec has no use for (lzo), as it always has;
     * uz_comp_create_params() would ignore it, as algorithm_params does. */
    struct uz_comp *probe;
    int rc = uz_comp_create(algorithm, level, &probe);
    uz_comp_destroy(probe);
    if (rc)
        return rc;
    struct uz_comp_params p = {.level = level};
    void *dict = NULL;
    rc = dict_path ? uz_comp_dict_read(dict_path, &dict, &p.dict_len) : 0;
    p.dict = dict;
    struct uz_dev_codec c;
    if (!rc)
        rc = uz_dev_codec_build(dev, algorithm, &p, dict_path, &c);
    free(dict);
    if (rc)
        return rc;
    uz_dev_codec_swap(dev, &c);
    uz_dev_codec_free(&c);
    return 0;
}
