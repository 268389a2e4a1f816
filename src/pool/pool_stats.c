// SPDX-License-Identifier: MIT
/*
 * pool_stats.c - statistics: per-class rows and whole-pool totals, each class read under its
 * lock (a consistent row; the totals are a sum of per-class snapshots), and the lock-free
 * total_pages that mm_stat reports as mem_used_total.
 */
#include "pool_internal.h"

#include <string.h>

uint64_t uz_pool_total_pages(const struct uz_pool *pool)
{
    return atomic_load_explicit(&pool->total_pages, memory_order_relaxed);
}

static void class_row(struct uz_class *c, struct uz_pool_class_stat *r)
{
    memset(r, 0, sizeof(*r));
    r->index = c->index;
    r->size = c->size;
    r->pages_per_zspage = c->pages;
    r->objs_per_zspage = c->objs;
    uz_plock_lock(&c->lock);
    r->zspages = c->zspages;
    r->obj_allocated = c->zspages * c->objs;
    r->obj_used = c->obj_used;
    r->pages_used = c->pages_used;
    for (unsigned g = 0; g < UZ_POOL_NGROUPS; g++)
        r->fullness[g] = c->nzs[g];
    r->freeable = c->pages_used - uz_ideal_pages(c);
    uz_plock_unlock(&c->lock);
}

int uz_pool_class_stats(struct uz_pool *pool, struct uz_pool_class_stat *rows, size_t n)
{
    size_t k = 0;
    for (unsigned i = 0; i < UZ_POOL_NCLASSES && k < n; i++)
        if (pool->class_of[i] == i)
            class_row(&pool->cls[i], &rows[k++]);
    return (int)pool->nreps;
}

static uint64_t page_round(uint64_t bytes)
{
    return UZ_DIV_ROUND_UP(bytes, UZ_PAGE_SIZE) * UZ_PAGE_SIZE;
}

int uz_pool_stats(struct uz_pool *pool, struct uz_pool_stat *st)
{
    memset(st, 0, sizeof(*st));
    uint64_t meta = sizeof(*pool);
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++) {
        struct uz_class *c = &pool->cls[i];
        if (pool->class_of[i] != i)
            continue;
        uz_plock_lock(&c->lock);
        st->objects += c->obj_used;
        st->obj_bytes += (uint64_t)c->obj_used * c->size;
        st->zspages += c->zspages;
        meta += c->zspages * c->meta_obj + uz_cell_bytes(c);
        uz_plock_unlock(&c->lock);
    }
    pthread_mutex_lock(&pool->arena_lock);
    meta += page_round(pool->nchunks * sizeof(*pool->chunks));
    for (unsigned i = 0; i < pool->nchunks; i++) {
        const struct uz_arena_chunk *ch =
            atomic_load_explicit(&pool->chunks[i], memory_order_relaxed);
        meta += sizeof(*ch) + page_round(ch->bump * sizeof(struct uz_zspage));
    }
    st->cached_pages = pool->cache_pages;
    pthread_mutex_unlock(&pool->arena_lock);
    st->meta_bytes = meta;
    st->batch_pages = atomic_load_explicit(&pool->ahead, memory_order_relaxed);
    st->total_pages = uz_pool_total_pages(pool);
    st->pages_compacted = atomic_load_explicit(&pool->pages_compacted, memory_order_relaxed);
    return 0;
}
