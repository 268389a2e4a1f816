// SPDX-License-Identifier: MIT
/*
 * dev_queue.c - asynchronous writes: the zramd workers, and the gate that reset, disksize and
 * codec changes close to have the device to themselves.
 *
 * Each worker owns a FIFO: a bounded ring plus an overflow list. A request for slot i goes to
 * worker (i / UZ_DEV_WORKER_SPAN) % nworkers, so writes to one slot complete in submission
 * order, distinct workers share no queue lock, and neighbours complete together, in order: the
 * region drops completed evictions in runs of neighbours, one TLB flush per run, and with
 * slots dealt out one by one (i % nworkers) a worker running behind split every run (a swap
 * benchmark's fill and scan made 151,321 moves for 453,018 pages, a third of the reclaim
 * thread's time in TLB-shootdown IPIs; stripes of 32: 54,781). 64 slots (256 KiB): half a
 * reclaim batch, so two workers still share every batch. The worker reads the caller's page only
 * when it gets to the request, after the submitting call has returned: this is why a device with
 * workers advertises stable writes (invariant 2), and why a caller that breaks the contract gets,
 * at worst, a garbage page (invariant 1 still holds in the write path, so nothing overruns).
 *
 * Who may wait for whom. An ordinary thread that submits to a full ring waits for room. A worker
 * thread (running a `done` callback, of this device or any other) never waits for a queue: its
 * request goes to the overflow list, behind everything queued before it, so two workers whose
 * callbacks submit to each other's full queues cannot deadlock and order is kept. The overflow is
 * refilled into the ring by the worker as the ring drains, so "overflow non-empty" implies "ring
 * full" and ring entries are always older than overflow entries (FIFO as a whole). uz_dev_flush()
 * and the exclusive operations from a callback of this device return -EDEADLK instead of waiting
 * for themselves.
 *
 * With no workers, uz_dev_write_page_async() writes inline and calls `done` before returning.
 */
#include "dev_internal.h"
#include "dev_fork.h"
#include "dev_threads.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(UZ_DEV_WORKER_SPAN % UZ_DEV_OBJ_PAGES_MAX == 0, "a run never spans two stripes");

/* The worker the calling thread is, if any (the thread is running a `done` callback or the
 * write before it). */
static __thread struct uz_dev_worker *current_worker;

static bool in_callback_of(const struct uz_dev *dev)
{
    return current_worker && current_worker->dev == dev;
}

/* Moves overflow requests into the ring while it has room. Caller holds w->lock. */
static void refill(struct uz_dev_worker *w)
{
    while (w->overflow && w->head - w->tail < UZ_DEV_QUEUE_DEPTH) {
        struct uz_dev_req_node *n = w->overflow;
        w->overflow = n->next;
        if (!w->overflow)
            w->overflow_tail = NULL;
        w->overflow_len--;
        w->ring[w->head % UZ_DEV_QUEUE_DEPTH] = n->req;
        w->head++;
        free(n);
    }
}

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
            break; /* stopping and drained (the overflow is empty when the ring is) */
        struct uz_dev_req req[UZ_DEV_OBJ_PAGES_MAX];
        req[0] = w->ring[w->tail % UZ_DEV_QUEUE_DEPTH];
        /* A whole aligned run of neighbours queued in order is written as one multi-page
         * object (dev_multi.c): the region's evictions of neighbours, an NBD write. Stripes
         * are whole runs (UZ_DEV_WORKER_SPAN is a multiple of 16), so a run is never split
         * between workers. object_pages changes only under the exclusive lock, which drains
         * the queues first. */
        unsigned take = 1, run = uz_dev_object_pages(dev);
        if (run > 1 && req[0].index % run == 0 && w->head - w->tail >= run) {
            for (take = 1; take < run; take++) {
                req[take] = w->ring[(w->tail + take) % UZ_DEV_QUEUE_DEPTH];
                if (req[take].index != req[0].index + take)
                    break;
            }
            if (take < run)
                take = 1;
        }
        /* The requests stay in the ring until they complete, so a submitter blocked on a full
         * queue and flush both see them as pending. */
        pthread_mutex_unlock(&w->lock);

        unsigned shard = uz_brlock_read_lock(&dev->init_lock);
        int rc;
        if (take > 1 && req[0].index + take <= dev->nr_pages) {
            const void *pages[UZ_DEV_OBJ_PAGES_MAX];
            for (unsigned k = 0; k < take; k++)
                pages[k] = req[k].page;
            rc = uz_dev_write_run(dev, req[0].index, pages);
        } else {
            take = 1;
            rc = uz_dev_write_page_nolock(dev, req[0].index, req[0].page);
        }
        uz_brlock_read_unlock(&dev->init_lock, shard);
        for (unsigned k = 0; k < take; k++)
            if (req[k].done)
                req[k].done(req[k].arg, rc);

        pthread_mutex_lock(&w->lock);
        w->tail += take;
        w->completed += take;
        refill(w);
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
        if (!rc)
            pthread_setname_np(w[i].thread, "uzram-zramd"); /* in ps, top and perf */
        if (rc) {
            pthread_mutex_destroy(&w[i].lock);
            pthread_cond_destroy(&w[i].cond);
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

/* Waits until every request queued before the call has completed (`all`: until the queues are
 * empty, requests that callbacks add meanwhile included). Not from a callback of this device. */
static void queue_drain(struct uz_dev *dev, bool all)
{
    for (unsigned i = 0; i < dev->nworkers && dev->workers; i++) {
        struct uz_dev_worker *w = &dev->workers[i];
        pthread_mutex_lock(&w->lock);
        uint64_t target = w->submitted;
        while (all ? w->completed < w->submitted : w->completed < target)
            pthread_cond_wait(&w->cond, &w->lock);
        pthread_mutex_unlock(&w->lock);
    }
}

int uz_dev_exclusive_begin(struct uz_dev *dev)
{
    if (in_callback_of(dev))
        return -EDEADLK; /* the drain would wait for the callback that is waiting */
    /* Close the gate: submissions in progress finish, new ones wait at the gate. Only callbacks
     * (which never wait at the gate) can queue more; the drain takes them too. */
    uz_brlock_write_lock(&dev->gate);
    queue_drain(dev, true);
    uz_brlock_write_lock(&dev->init_lock);
    return 0;
}

void uz_dev_exclusive_end(struct uz_dev *dev)
{
    uz_brlock_write_unlock(&dev->init_lock);
    uz_brlock_write_unlock(&dev->gate);
}

/* Queues a request on `w`. A callback never waits: past the ring it goes to the overflow. */
static int enqueue(struct uz_dev_worker *w, const struct uz_dev_req *req)
{
    pthread_mutex_lock(&w->lock);
    if (current_worker && w->head - w->tail >= UZ_DEV_QUEUE_DEPTH) {
        struct uz_dev_req_node *n = malloc(sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&w->lock);
            return -ENOMEM;
        }
        n->req = *req;
        n->next = NULL;
        if (w->overflow_tail)
            w->overflow_tail->next = n;
        else
            w->overflow = n;
        w->overflow_tail = n;
        w->overflow_len++;
    } else {
        /* Not a callback: wait for room. The ring has room only when the overflow is empty. */
        while (w->head - w->tail >= UZ_DEV_QUEUE_DEPTH)
            pthread_cond_wait(&w->cond, &w->lock);
        w->ring[w->head % UZ_DEV_QUEUE_DEPTH] = *req;
        w->head++;
    }
    w->submitted++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int uz_dev_write_page_async(struct uz_dev *dev, uint64_t index, const void *page,
                            uz_dev_done_fn done, void *arg)
{
    if (!dev || !page)
        return -EINVAL;
    if (!dev->nworkers) {
        int rc = uz_dev_write_page(dev, index, page);
        if (rc == -EINVAL)
            return rc; /* a bad index: done is not called */
        if (done)
            done(arg, rc);
        return 0;
    }
    /* Callbacks pass the gate: an exclusive operation waiting for the queues to drain needs
     * them to finish. Everyone else queues only while no exclusive operation runs. */
    bool gated = !current_worker;
    unsigned gshard = gated ? uz_brlock_read_lock(&dev->gate) : 0;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    bool ok = index < dev->nr_pages;
    uz_brlock_read_unlock(&dev->init_lock, shard);
    int rc = -EINVAL;
    if (ok) {
        struct uz_dev_req req = {.index = index, .page = page, .done = done, .arg = arg};
        rc = enqueue(&dev->workers[(index / UZ_DEV_WORKER_SPAN) % dev->nworkers], &req);
    }
    if (gated)
        uz_brlock_read_unlock(&dev->gate, gshard);
    return rc;
}

int uz_dev_flush(struct uz_dev *dev)
{
    if (!dev)
        return -EINVAL;
    if (in_callback_of(dev))
        return -EDEADLK;
    queue_drain(dev, false);
    return 0;
}

/* ---- placement (dev_threads.h) ---- */

int uz_dev_workers_affinity(struct uz_dev *dev, const cpu_set_t *set)
{
    int first = 0;
    for (unsigned i = 0; i < dev->nworkers && dev->workers; i++) {
        int e = pthread_setaffinity_np(dev->workers[i].thread, sizeof(*set), set);
        if (e && !first)
            first = -e;
    }
    return first;
}

/* ---- fork (dev_fork.h) ---- */

int uz_dev_fork_prepare(struct uz_dev *dev)
{
    uz_dev_policy_fork_lock(dev, true);
    int rc = uz_dev_exclusive_begin(dev);
    if (rc) {
        uz_dev_policy_fork_lock(dev, false);
        return rc;
    }
    /* No I/O runs now (init_lock): slot, stream and pool locks are free, and no policy round
     * runs. The workers idle in pthread_cond_wait; their queue locks are taken so that none is
     * held at the fork, and the policy's leaf lock last. */
    for (unsigned i = 0; i < dev->nworkers; i++)
        pthread_mutex_lock(&dev->workers[i].lock);
    uz_dev_policy_fork_prepare(dev);
    return 0;
}

void uz_dev_fork_parent(struct uz_dev *dev)
{
    uz_dev_policy_fork_parent(dev);
    for (unsigned i = 0; i < dev->nworkers; i++)
        pthread_mutex_unlock(&dev->workers[i].lock);
    uz_dev_exclusive_end(dev);
    uz_dev_policy_fork_lock(dev, false);
}

int uz_dev_fork_child(struct uz_dev *dev)
{
    /* The locks were held by the forking thread (whose id changed), the conditions may count
     * waiters that do not exist here: initialise them, do not unlock or destroy them. */
    int rc = uz_brlock_init(&dev->gate);
    if (!rc)
        rc = uz_brlock_init(&dev->init_lock);
    if (rc)
        return rc;
    uz_dev_wb_fork_child(dev->wb); /* reads the parent's store; never writes or frees in it */
    unsigned n = dev->nworkers;
    for (unsigned i = 0; i < n; i++) {
        struct uz_dev_worker *w = &dev->workers[i];
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->stop = false;
    }
    for (unsigned i = 0; i < n; i++) {
        int e = pthread_create(&dev->workers[i].thread, NULL, worker_main, &dev->workers[i]);
        if (!e)
            pthread_setname_np(dev->workers[i].thread, "uzram-zramd");
        if (e) {
            /* The queues are empty: routing by index % nworkers over the ones running is
             * fine (none: writes are made inline, as for a device created without workers). */
            dev->nworkers = i;
            return -e;
        }
    }
    return uz_dev_policy_fork_child(dev);
}
