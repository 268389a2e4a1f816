// SPDX-License-Identifier: MIT
/*
 * dev_lifecycle.c - the device's life: create and destroy, its storage (slot table and pool)
 * set up at init and dropped at reset, and the statistics read from it.
 */
#include "dev_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* ---- storage (table + pool) ---- */

int uz_dev_init_storage(struct uz_dev *dev, uint64_t disksize)
{
    uint64_t nr_pages = disksize / UZ_PAGE_SIZE;
    if (!nr_pages || disksize % UZ_PAGE_SIZE || nr_pages > (SIZE_MAX / sizeof(struct uz_slot)))
        return -EINVAL;
    size_t bytes = (size_t)nr_pages * sizeof(struct uz_slot);
    /* Untouched slots cost no memory: the table is mapped lazily, like zram's vmalloc'd one,
     * even after mlockall(MCL_FUTURE), which would populate and lock it whole (16 bytes per
     * page of disk: 1 GiB for 64 GiB). */
    void *t = uz_map_unlocked(bytes, MAP_NORESERVE);
    if (!t)
        return -ENOMEM;
    struct uz_pool *pool;
    int rc = uz_pool_create(&pool);
    if (rc) {
        munmap(t, bytes);
        return rc;
    }
    /* The pool grows in batches of pages populated together (cheaper than a fault each); its
     * prefault thread is gone: on the project's 2-core VM it gained no wall-clock time. */
    dev->table = t;
    dev->table_bytes = bytes;
    dev->pool = pool;
    dev->huge_size = uz_pool_huge_size(pool);
    dev->nr_pages = nr_pages;
    dev->disksize = disksize;
    atomic_store(&dev->max_used_pages, 0);
    return 0;
}

void uz_dev_free_storage(struct uz_dev *dev)
{
    /* The pool goes as a whole: no need to free slot by slot. */
    uz_pool_destroy(dev->pool);
    if (dev->table)
        munmap(dev->table, dev->table_bytes);
    dev->pool = NULL;
    dev->table = NULL;
    dev->table_bytes = 0;
    dev->nr_pages = 0;
    dev->disksize = 0;
    struct uz_dev_counters *st = &dev->st;
    struct uz_counter *all[] = {&st->pages_stored,  &st->compr_data_size,  &st->same_pages,
                                &st->huge_pages,    &st->huge_pages_since, &st->failed_reads,
                                &st->failed_writes, &st->notify_free,      &st->bd_count,
                                &st->bd_reads,      &st->bd_writes};
    for (size_t i = 0; i < UZ_ARRAY_SIZE(all); i++)
        uz_counter_reset(all[i]);
    atomic_store(&dev->max_used_pages, 0);
    /* The kernel's reset_bdev(): the backing device goes with the data (nothing points into it
     * now), and the writeback settings return to their defaults. */
    uz_dev_wb_close(dev->wb);
    dev->wb = NULL;
    dev->wb_compressed = false;
    atomic_store(&dev->wb_limit, 0);
    atomic_store(&dev->wb_limit_enable, false);
    atomic_store(&dev->wb_batch, 32);
}

bool uz_dev_is_empty(struct uz_dev *dev)
{
    return uz_counter_read(&dev->st.pages_stored) == 0;
}

/* ---- create / destroy ---- */

int uz_dev_create(const struct uz_dev_config *cfg, struct uz_dev **out)
{
    if (!cfg || !out || !cfg->disksize || cfg->disksize % UZ_PAGE_SIZE)
        return -EINVAL;
    struct uz_dev *dev = aligned_alloc(UZ_CACHELINE, sizeof(*dev));
    if (!dev)
        return -ENOMEM;
    memset(dev, 0, sizeof(*dev));
    int rc = uz_brlock_init(&dev->init_lock);
    if (rc) {
        free(dev);
        return rc;
    }
    if ((rc = uz_brlock_init(&dev->gate))) {
        uz_brlock_destroy(&dev->init_lock);
        free(dev);
        return rc;
    }
    dev->nworkers = cfg->workers;
    struct timespec boot, mono;
    clock_gettime(CLOCK_BOOTTIME, &boot);
    clock_gettime(CLOCK_MONOTONIC_COARSE, &mono);
    atomic_store(&dev->clock_offset, (int64_t)boot.tv_sec - (int64_t)mono.tv_sec);
    atomic_store(&dev->limit_pages, UZ_DIV_ROUND_UP(cfg->mem_limit, UZ_PAGE_SIZE));
    atomic_store(&dev->wb_batch, 32); /* the kernel's default writeback_batch_size */
    dev->object_pages = 1;
    for (unsigned i = 0; i < UZ_DEV_MOBJ_LOCKS; i++)
        pthread_mutex_init(&dev->mobj_locks[i], NULL);
    if ((rc = uz_dev_policy_init(dev)) ||
        (rc = uz_dev_set_codec(dev, cfg->algorithm, cfg->level, NULL)) ||
        (rc = uz_dev_init_storage(dev, cfg->disksize)) ||
        (rc = uz_dev_queue_start(dev, cfg->workers))) {
        uz_dev_policy_destroy(dev);
        uz_dev_free_storage(dev);
        uz_dev_streams_free(dev);
        uz_comp_destroy(dev->comp);
        uz_brlock_destroy(&dev->init_lock);
        uz_brlock_destroy(&dev->gate);
        free(dev);
        return rc;
    }
    *out = dev;
    return 0;
}

void uz_dev_destroy(struct uz_dev *dev)
{
    if (!dev)
        return;
    uz_dev_policy_destroy(dev); /* first: a round uses the whole device */
    uz_dev_queue_stop(dev);
    uz_dev_free_storage(dev);
    uz_dev_streams_free(dev);
    uz_comp_destroy(dev->comp);
    free(dev->dict_path);
    for (unsigned p = 1; p <= UZ_DEV_PRIO_MAX; p++)
        uz_dev_codec_free(&dev->sec[p]);
    for (unsigned i = 0; i < UZ_DEV_MOBJ_LOCKS; i++)
        pthread_mutex_destroy(&dev->mobj_locks[i]);
    uz_brlock_destroy(&dev->init_lock);
    uz_brlock_destroy(&dev->gate);
    free(dev);
}

bool uz_dev_stable_writes(const struct uz_dev *dev)
{
    /* Invariant 2 of the design: async writes read the caller's page after the call returned
     * exactly when there are workers, so that is when every user must keep pages stable. */
    return dev->nworkers > 0;
}

unsigned uz_dev_object_pages(const struct uz_dev *dev)
{
    /* No lock: a region's fault threads ask (set under the exclusive lock, atomically). */
    return dev ? __atomic_load_n(&dev->object_pages, __ATOMIC_RELAXED) : 1;
}

uint64_t uz_dev_disksize(const struct uz_dev *dev)
{
    return dev ? atomic_load_explicit(&dev->disksize, memory_order_acquire) : 0;
}
void uz_dev_note_mem_used(struct uz_dev *dev, uint64_t used)
{
    uint64_t max = atomic_load_explicit(&dev->max_used_pages, memory_order_relaxed);
    while (used > max &&
           !atomic_compare_exchange_weak_explicit(&dev->max_used_pages, &max, used,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- statistics ---- */

static uint64_t ctr(const struct uz_counter *c)
{
    int64_t v = uz_counter_read(c);
    return v > 0 ? (uint64_t)v : 0;
}

void uz_dev_stats_locked(struct uz_dev *dev, struct uz_dev_stats *st)
{
    *st = (struct uz_dev_stats){.disksize = dev->disksize};
    if (dev->pool) {
        struct uz_pool_stat ps = {0};
        uz_pool_stats(dev->pool, &ps);
        uint64_t used = uz_pool_total_pages(dev->pool);
        uz_dev_note_mem_used(dev, used);
        st->mem_used_total = used << UZ_PAGE_SHIFT;
        st->pages_compacted = ps.pages_compacted;
    }
    st->orig_data_size = ctr(&dev->st.pages_stored) << UZ_PAGE_SHIFT;
    st->compr_data_size = ctr(&dev->st.compr_data_size);
    st->mem_limit = atomic_load(&dev->limit_pages) << UZ_PAGE_SHIFT;
    st->mem_used_max = atomic_load(&dev->max_used_pages) << UZ_PAGE_SHIFT;
    st->same_pages = ctr(&dev->st.same_pages);
    st->huge_pages = ctr(&dev->st.huge_pages);
    st->huge_pages_since = ctr(&dev->st.huge_pages_since);
    st->failed_reads = ctr(&dev->st.failed_reads);
    st->failed_writes = ctr(&dev->st.failed_writes);
    st->notify_free = ctr(&dev->st.notify_free);
    st->bd_count = ctr(&dev->st.bd_count);
    st->bd_reads = ctr(&dev->st.bd_reads);
    st->bd_writes = ctr(&dev->st.bd_writes);
}

int uz_dev_stats(struct uz_dev *dev, struct uz_dev_stats *st)
{
    if (!dev || !st)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    uz_dev_stats_locked(dev, st);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return 0;
}

int uz_dev_compact(struct uz_dev *dev)
{
    if (!dev)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    /* Objects at most half live are repacked first (dev_multi.c): what they free is what the
     * pool's compaction then gives back. */
    uint64_t repacked = 0;
    if (dev->pool)
        (void)uz_dev_mobj_recompress(dev, 0, 0, 0, false, 0, &repacked);
    long freed = dev->pool ? uz_pool_compact(dev->pool) : -EINVAL;
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return freed > INT_MAX ? INT_MAX : (int)freed;
}
