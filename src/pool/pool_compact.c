// SPDX-License-Identifier: MIT
/*
 * pool_compact.c - compaction. Per class, under its lock: freeze the sparsest zspage nobody
 * has mapped (CAS of its pin count from 0 to UZ_ZS_FROZEN; see pool_internal.h), move its
 * highest objects into the fullest other non-full zspage, or, when it is the only one, into
 * its own lowest holes; republish each moved cell; unfreeze; free it when emptied (to the OS,
 * not the cache), else trim the pages above its last object (batch pages included). Last, the
 * cache of freed zspages is emptied: compaction gives back all the memory it can. The class lock is
 * a sleeping lock because the moves may fault pages in and trimming calls madvise while it is held
 * (they must: an allocation could otherwise place an object in a page being given back). A zspage
 * whose batch is being populated (`filling`) is neither moved nor trimmed.
 */
#include "pool_internal.h"

#include <string.h>

static bool filling(struct uz_zspage *zs)
{
    /* acquire: pairs with the populating thread's release, so its madvise came first */
    return atomic_load_explicit(&zs->filling, memory_order_acquire) != 0;
}

/* Freezes the sparsest zspage nobody has mapped or is populating, or returns NULL. */
static struct uz_zspage *freeze_sparsest(const struct uz_pool *pool, struct uz_class *c)
{
    for (unsigned g = 0; g < UZ_POOL_FULL_GROUP; g++) {
        for (struct uz_zspage *zs = uz_class_first(pool, c, g); zs; zs = zs->next) {
            int zero = 0;
            /* acquire: see what mappers wrote before their unmap */
            if (!filling(zs) &&
                atomic_compare_exchange_strong_explicit(&zs->pins, &zero, UZ_ZS_FROZEN,
                                                        memory_order_acquire, memory_order_relaxed))
                return zs;
        }
    }
    return NULL;
}

static unsigned highest_set(const struct uz_zspage *zs)
{
    unsigned w = UZ_DIV_ROUND_UP(zs->hwm, 64);
    while (!zs->bitmap[w - 1])
        w--;
    return (w - 1) * 64 + 63 - (unsigned)__builtin_clzll(zs->bitmap[w - 1]);
}

/* Moves the object at `i` of the frozen `src` to the lowest free index of `dst` (which may be
 * src itself). */
static void move_object(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *src, unsigned i,
                        struct uz_zspage *dst)
{
    uint32_t cell = src->backref[i];
    unsigned j = uz_obj_take(pool, c, dst, cell, NULL);
    memcpy(uz_zspage_base(pool, dst->slot) + (size_t)j * c->size,
           uz_zspage_base(pool, src->slot) + (size_t)i * c->size, c->size);
    /* release: a mapper that sees the new location sees the copied bytes */
    atomic_store_explicit(uz_cell(c, cell), uz_loc(dst->slot, j), memory_order_release);
    uz_obj_put(c, src, i);
}

/* Gives back the pages above the last live object of a non-empty zspage. */
static void trim_zspage(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    if (filling(zs))
        return;
    unsigned hwm = highest_set(zs) + 1, t = uz_touched(hwm, c->size);
    zs->hwm = (uint16_t)hwm;
    atomic_fetch_sub_explicit(&pool->ahead, zs->resident - zs->touched, memory_order_relaxed);
    zs->touched = (uint8_t)t;
    if (t < zs->resident) {
        unsigned d = zs->resident - t;
        uz_arena_release(uz_zspage_base(pool, zs->slot) + (size_t)t * UZ_PAGE_SIZE,
                         (size_t)d * UZ_PAGE_SIZE);
        zs->resident = (uint8_t)t;
        c->pages_used -= d;
        atomic_fetch_sub_explicit(&pool->total_pages, d, memory_order_relaxed);
    }
}

/*
 * One round under the class lock (see the top of the file). Each round removes a non-full
 * zspage or packs the last one, so the class ends at its ideal page count unless mapped
 * zspages stand in the way.
 * @return : true to go on; *victim is an emptied zspage to hand back after unlocking.
 */
static bool compact_round(struct uz_pool *pool, struct uz_class *c, struct uz_zspage **victim)
{
    struct uz_zspage *src = freeze_sparsest(pool, c);
    if (!src)
        return false;
    uz_list_del(c, src);
    struct uz_zspage *dst = uz_pick_fullest(pool, c);
    if (dst) {
        while (src->inuse && dst->inuse < c->objs)
            move_object(pool, c, src, highest_set(src), dst);
        uz_regroup(pool, c, dst);
    } else {
        for (unsigned i; (i = highest_set(src)) >= src->inuse;)
            move_object(pool, c, src, i, src);
    }
    atomic_fetch_sub_explicit(&src->pins, UZ_ZS_FROZEN, memory_order_release);
    if (!src->inuse) {
        uz_zspage_detach(pool, c, src);
        *victim = src;
    } else {
        trim_zspage(pool, c, src);
        uz_list_add(pool, c, src, uz_group(src->inuse, c->objs));
    }
    return dst != NULL;
}

static long compact_class(struct uz_pool *pool, struct uz_class *c)
{
    long freed = 0;
    for (bool more = true; more;) {
        struct uz_zspage *victim = NULL;
        uz_plock_lock(&c->lock);
        uint64_t before = c->pages_used;
        more = before > uz_ideal_pages(c) && compact_round(pool, c, &victim);
        if (!more) {
            for (unsigned g = 0; g < UZ_POOL_FULL_GROUP; g++)
                for (struct uz_zspage *zs = uz_class_first(pool, c, g); zs; zs = zs->next)
                    trim_zspage(pool, c, zs);
        }
        freed += (long)(before - c->pages_used);
        uz_plock_unlock(&c->lock);
        if (victim)
            uz_zspage_put(pool, victim, UZ_PUT_RELEASE);
    }
    return freed;
}

long uz_pool_compact(struct uz_pool *pool)
{
    long freed = 0;
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++)
        if (pool->class_of[i] == i)
            freed += compact_class(pool, &pool->cls[i]);
    freed += uz_arena_cache_drain(pool);
    if (freed < 0)
        freed = 0;
    atomic_fetch_add_explicit(&pool->pages_compacted, (uint64_t)freed, memory_order_relaxed);
    return freed;
}
