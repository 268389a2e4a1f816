// SPDX-License-Identifier: MIT
/*
 * dev_queue.c - asynchronous writes: the zramd workers.
 *
 * Each worker owns a bounded FIFO ring. A request for slot i goes to worker i % nworkers, so
 * writes to one slot complete in submission order, and distinct workers share no queue lock.
 * The worker reads the caller's page only when it gets to the request, after the submitting
 * call has returned: this is why a device with workers advertises stable writes (invariant 2),
 * and why a caller that breaks the contract gets, at worst, a garbage page (invariant 1 still
 * holds in the write path, so nothing overruns).
 *
 * With no workers, uz_dev_write_page_async() writes inline and calls `done` before returning.
 */
#include "dev_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The worker the calling thread is, if any: a `done` callback that submits more writes to its own
 * full queue writes inline instead of waiting for itself. */
static __thread struct uz_dev_worker *current_worker;

static void *worker_main(void *arg)
{
    struct uz_dev_worker *w = arg;
    current_worker = w;
    struct uz_dev *dev = w->dev;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->head == w->tail && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->head == w->tail)
            break; /* stopping and drained */
        struct uz_dev_req req = w->ring[w->tail % UZ_DEV_QUEUE_DEPTH];
        /* The request stays in the ring until it completes, so a submitter blocked on a full
         * queue and flush both see it as pending. */
        pthread_mutex_unlock(&w->lock);

        unsigned shard = uz_brlock_read_lock(&dev->init_lock);
        int rc = uz_dev_write_page_nolock(dev, req.index, req.page);
        uz_brlock_read_unlock(&dev->init_lock, shard);
        if (req.done)
            req.done(req.arg, rc);

        pthread_mutex_lock(&w->lock);
        w->tail++;
        w->completed++;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int uz_dev_queue_start(struct uz_dev *dev, unsigned nworkers)
{
    dev->nworkers = nworkers;
    if (!nworkers)
        return 0;
    struct uz_dev_worker *w = aligned_alloc(UZ_CACHELINE, sizeof(*w) * nworkers);
    if (!w)
        return -ENOMEM;
    memset(w, 0, sizeof(*w) * nworkers);
    dev->workers = w;
    for (unsigned i = 0; i < nworkers; i++) {
        w[i].dev = dev;
        pthread_mutex_init(&w[i].lock, NULL);
        pthread_cond_init(&w[i].cond, NULL);
        int rc = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
        if (rc) {
            dev->nworkers = i;
            uz_dev_queue_stop(dev);
            return -rc;
        }
    }
    return 0;
}

void uz_dev_queue_stop(struct uz_dev *dev)
{
    for (unsigned i = 0; i < dev->nworkers; i++) {
        struct uz_dev_worker *w = &dev->workers[i];
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
    for (unsigned i = 0; i < dev->nworkers; i++) {
        pthread_join(dev->workers[i].thread, NULL);
        pthread_mutex_destroy(&dev->workers[i].lock);
        pthread_cond_destroy(&dev->workers[i].cond);
    }
    free(dev->workers);
    dev->workers = NULL;
    /* nworkers keeps its value: stable_writes stays what the device was created with. */
}

void uz_dev_queue_flush(struct uz_dev *dev)
{
    for (unsigned i = 0; i < dev->nworkers && dev->workers; i++) {
        struct uz_dev_worker *w = &dev->workers[i];
        pthread_mutex_lock(&w->lock);
        uint64_t target = w->submitted;
        while (w->completed < target)
            pthread_cond_wait(&w->cond, &w->lock);
        pthread_mutex_unlock(&w->lock);
    }
}

void uz_dev_exclusive_begin(struct uz_dev *dev)
{
    uz_dev_queue_flush(dev);
    uz_brlock_write_lock(&dev->init_lock);
}

void uz_dev_exclusive_end(struct uz_dev *dev)
{
    uz_brlock_write_unlock(&dev->init_lock);
}

int uz_dev_write_page_async(struct uz_dev *dev, uint64_t index, const void *page,
                            uz_dev_done_fn done, void *arg)
{
    if (!dev || !page)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    bool ok = index < dev->nr_pages;
    uz_brlock_read_unlock(&dev->init_lock, shard);
    if (!ok)
        return -EINVAL;
    if (!dev->nworkers) {
        int rc = uz_dev_write_page(dev, index, page);
        if (done)
            done(arg, rc);
        return 0;
    }
    struct uz_dev_worker *w = &dev->workers[index % dev->nworkers];
    pthread_mutex_lock(&w->lock);
    if (w == current_worker && w->head - w->tail >= UZ_DEV_QUEUE_DEPTH) {
        pthread_mutex_unlock(&w->lock);
        int rc = uz_dev_write_page(dev, index, page);
        if (done)
            done(arg, rc);
        return 0;
    }
    while (w->head - w->tail >= UZ_DEV_QUEUE_DEPTH)
        pthread_cond_wait(&w->cond, &w->lock);
    w->ring[w->head % UZ_DEV_QUEUE_DEPTH] =
        (struct uz_dev_req){.index = index, .page = page, .done = done, .arg = arg};
    w->head++;
    w->submitted++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int uz_dev_flush(struct uz_dev *dev)
{
    if (!dev)
        return -EINVAL;
    uz_dev_queue_flush(dev);
    return 0;
}
