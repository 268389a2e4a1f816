// SPDX-License-Identifier: MIT
/*
 * pool_check.c - uz_pool_check(): walks every invariant of pool_internal.h with all class
 * locks held (ascending index, then the arena lock), so the pool-wide totals are compared on a
 * consistent snapshot even while other threads run: every change of total_pages, ahead,
 * in_flight and reserved happens under one of those locks. Stops at the first violation.
 */
#include "pool_internal.h"

#include <stdbool.h>

#include <errno.h>

#define BAD(cond)                                                                                  \
    do {                                                                                           \
        if (cond)                                                                                  \
            return -EUCLEAN;                                                                       \
    } while (0)

static int check_zspage(const struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs,
                        unsigned g)
{
    BAD(!zs->live || zs->cls != c->index || zs->group != g);
    BAD(zs->inuse == 0 || zs->inuse > c->objs || uz_group(zs->inuse, c->objs) != g);
    BAD(zs->hwm > c->objs || zs->touched != uz_touched(zs->hwm, c->size));
    BAD(zs->touched > zs->resident || zs->resident > c->pages);
    BAD(atomic_load_explicit(&zs->pins, memory_order_relaxed) < 0); /* frozen outside a lock */
    BAD(uz_zspage_of(pool, zs->slot) != zs);
    BAD(uz_arena_chunk(pool, zs->slot)->pages != c->pages);
    BAD((zs->slot & UZ_ARENA_SLOT_MASK) >= uz_arena_chunk(pool, zs->slot)->bump);
    unsigned words = UZ_DIV_ROUND_UP(c->objs, 64), pop = 0;
    for (unsigned w = 0; w < words; w++) {
        uint64_t b = zs->bitmap[w];
        pop += (unsigned)__builtin_popcountll(b);
        BAD(w < zs->hint && b != ~(uint64_t)0);
        for (; b; b &= b - 1) {
            unsigned i = w * 64 + (unsigned)__builtin_ctzll(b);
            BAD(i >= zs->hwm); /* also covers i >= objs */
            uint32_t cell = zs->backref[i];
            BAD(cell >= c->cells_hwm);
            BAD(atomic_load_explicit(uz_cell(c, cell), memory_order_relaxed) !=
                uz_loc(zs->slot, i));
        }
    }
    BAD(pop != zs->inuse);
    BAD(zs->hint > words);
    return 0;
}

/* *ahead += the class's batch pages. */
static int check_class(const struct uz_pool *pool, struct uz_class *c, uint64_t *ahead)
{
    uint64_t zspages = 0, inuse = 0, resident = 0;
    for (unsigned g = 0; g < UZ_POOL_NGROUPS; g++) {
        uint64_t n = 0;
        struct uz_zspage *prev = NULL;
        for (struct uz_zspage *zs = uz_class_first(pool, c, g); zs; prev = zs, zs = zs->next) {
            BAD(zs->prev != prev || ++n > c->nzs[g]);
            int rc = check_zspage(pool, c, zs, g);
            if (rc)
                return rc;
            inuse += zs->inuse;
            resident += zs->resident;
            *ahead += zs->resident - zs->touched;
        }
        BAD(n != c->nzs[g]);
        BAD(g < UZ_POOL_FULL_GROUP && !!(c->nonempty & (1u << g)) != (n != 0));
        zspages += n;
    }
    BAD(c->nonempty >> UZ_POOL_FULL_GROUP);
    BAD(zspages != c->zspages || inuse != c->obj_used || resident != c->pages_used);
    /* Free cells: each tagged, in range, and with the live ones they make up every cell. */
    uint64_t nfree = 0;
    for (uint32_t f = c->cell_free; f; nfree++) {
        BAD(f - 1 >= c->cells_hwm || nfree >= c->cells_hwm);
        uint64_t v = atomic_load_explicit(uz_cell(c, f - 1), memory_order_relaxed);
        BAD(!(v & UZ_CELL_FREE));
        f = (uint32_t)(v & ~UZ_CELL_FREE);
    }
    BAD(nfree + c->obj_used != c->cells_hwm);
    return 0;
}

/* A free or cache list of zspages of `p` pages: slots in range, not live, resident pages only
 * on the cache. *pages += their resident pages. */
static int check_list(const struct uz_pool *pool, unsigned p, uint32_t head, bool cached,
                      uint64_t *pages)
{
    uint64_t n = 0;
    for (uint32_t s = head; s; n++) {
        BAD(((s - 1) >> UZ_ARENA_SLOT_BITS) >= pool->nchunks);
        const struct uz_arena_chunk *ch = uz_arena_chunk(pool, s - 1);
        BAD(ch->pages != p || ((s - 1) & UZ_ARENA_SLOT_MASK) >= ch->bump);
        BAD(n > (uint64_t)pool->nchunks << UZ_ARENA_SLOT_BITS);
        const struct uz_zspage *zs = &ch->hdr[(s - 1) & UZ_ARENA_SLOT_MASK];
        BAD(zs->live || zs->slot != s - 1);
        BAD(cached ? zs->resident == 0 || zs->resident > p : zs->resident != 0);
        *pages += zs->resident;
        s = zs->next_free;
    }
    return 0;
}

static int check_arena(const struct uz_pool *pool)
{
    uint64_t cached = 0;
    for (unsigned p = 1; p <= UZ_POOL_MAX_ZSPAGE_PAGES; p++) {
        int rc = check_list(pool, p, pool->free_slot[p], false, &cached);
        if (!rc)
            rc = check_list(pool, p, pool->cache[p], true, &cached);
        if (rc)
            return rc;
    }
    BAD(cached != pool->cache_pages || cached > UZ_POOL_CACHE_PAGES);
    return 0;
}

int uz_pool_check(struct uz_pool *pool)
{
    int rc = 0;
    uint64_t pages = 0, ahead = 0;
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++)
        if (pool->class_of[i] == i)
            uz_plock_lock(&pool->cls[i].lock);
    pthread_mutex_lock(&pool->arena_lock);
    for (unsigned i = 0; i < UZ_POOL_NCLASSES && !rc; i++) {
        struct uz_class *c = &pool->cls[i];
        if (pool->class_of[i] != i)
            continue;
        if (c->index != i || c->objs != c->pages * UZ_PAGE_SIZE / c->size)
            rc = -EUCLEAN;
        else
            rc = check_class(pool, c, &ahead);
        pages += c->pages_used;
    }
    if (!rc)
        rc = check_arena(pool);
    if (!rc) {
        uint64_t in_flight = atomic_load_explicit(&pool->in_flight, memory_order_relaxed);
        uint64_t reserved = atomic_load_explicit(&pool->reserved, memory_order_relaxed);
        uint64_t total = atomic_load_explicit(&pool->total_pages, memory_order_relaxed);
        uint64_t want = atomic_load_explicit(&pool->ahead, memory_order_relaxed);
        if (pages + pool->cache_pages + pool->held_pages + in_flight + reserved != total ||
            ahead + reserved != want || want > UZ_POOL_AHEAD_MAX)
            rc = -EUCLEAN;
    }
    pthread_mutex_unlock(&pool->arena_lock);
    for (unsigned i = UZ_POOL_NCLASSES; i-- > 0;)
        if (pool->class_of[i] == i)
            uz_plock_unlock(&pool->cls[i].lock);
    return rc;
}
