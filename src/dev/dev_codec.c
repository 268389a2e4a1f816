// SPDX-License-Identifier: MIT
/*
 * dev_codec.c - the device's codec and its compression streams: a pool of streams, each with a
 * worst-case output buffer and a page of scratch, taken by whoever compresses or decompresses.
 */
#include "dev_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- streams ---- */

struct uz_dev_stream *uz_dev_stream_get(struct uz_dev *dev)
{
    unsigned n = dev->nstreams, first = uz_thread_slot() % n;
    for (unsigned i = 0; i < n; i++) {
        struct uz_dev_stream *st = &dev->streams[(first + i) % n];
        if (pthread_mutex_trylock(&st->lock) == 0)
            return st;
    }
    struct uz_dev_stream *st = &dev->streams[first];
    pthread_mutex_lock(&st->lock);
    return st;
}

void uz_dev_stream_put(struct uz_dev_stream *st)
{
    pthread_mutex_unlock(&st->lock);
}

void uz_dev_streams_free(struct uz_dev *dev)
{
    for (unsigned i = 0; i < dev->nstreams; i++) {
        uz_comp_stream_destroy(dev->streams[i].cs);
        free(dev->streams[i].page);
        pthread_mutex_destroy(&dev->streams[i].lock);
    }
    free(dev->streams);
    dev->streams = NULL;
    dev->nstreams = 0;
}

static int streams_alloc(struct uz_dev *dev, struct uz_comp *comp, struct uz_dev_stream **out,
                         unsigned n)
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
        while (i--) {
            uz_comp_stream_destroy(v[i].cs);
            free(v[i].page);
            pthread_mutex_destroy(&v[i].lock);
        }
        free(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* Replaces the codec (and its streams). Caller holds init_lock for writing, or is creating. */
int uz_dev_set_codec(struct uz_dev *dev, const char *algorithm, int level, const char *dict_path)
{
    struct uz_comp *comp;
    int rc = uz_comp_create(algorithm, level, &comp);
    if (rc)
        return rc;
    if (dict_path && *dict_path && (rc = uz_comp_load_dict(comp, dict_path))) {
        uz_comp_destroy(comp);
        return rc;
    }
    char *dict_copy = NULL;
    if (dict_path && *dict_path && !(dict_copy = strdup(dict_path))) {
        uz_comp_destroy(comp);
        return -ENOMEM;
    }
    /* One stream per CPU plus one per worker, so a thread almost never waits for one. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = (unsigned)(cpus > 0 ? cpus : 1) * 2 + dev->nworkers;
    struct uz_dev_stream *streams;
    if ((rc = streams_alloc(dev, comp, &streams, n))) {
        free(dict_copy);
        uz_comp_destroy(comp);
        return rc;
    }
    uz_dev_streams_free(dev);
    uz_comp_destroy(dev->comp);
    free(dev->dict_path);
    dev->comp = comp;
    dev->streams = streams;
    dev->nstreams = n;
    dev->dict_path = dict_copy;
    snprintf(dev->algorithm, sizeof(dev->algorithm), "%s", uz_comp_name(comp));
    return 0;
}
