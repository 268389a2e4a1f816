// SPDX-License-Identifier: MIT
/*
 * pool_alloc.c - allocation, free, map and unmap, and the zspage bookkeeping inside a class.
 *
 * Allocation takes the class lock, picks the fullest non-full zspage and its lowest free
 * object, publishes the cell and drops the lock. What may block happens with the lock dropped:
 * a new zspage (cache, free list or new slot, and its metadata) or a new cell segment is
 * fetched unlocked and the choice is made again under the lock (another thread may have made
 * room meanwhile; an unused zspage goes back to the arena). When the object reaches pages its
 * zspage has not populated, they are counted under the lock and populated after it, with one
 * MADV_POPULATE_WRITE (cheaper than a page fault each): for a hot class together with up to
 * UZ_POOL_BATCH - 1 pages further, which its next objects will need, while the pool's batch
 * pages stay within UZ_POOL_BATCH_AHEAD. `filling` keeps the compactor away from the zspage
 * until the pages are in, so none is given back before it is populated.
 *
 * Free takes the class lock, clears the object and its cell, and when the zspage empties,
 * detaches it and hands it to the arena (cache or MADV_DONTNEED) after dropping the lock.
 * Map and unmap take no lock: two atomic operations on the zspage's pin count.
 */
#include "pool_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* What malloc and free touch shares the class lock's cache line. */
_Static_assert(offsetof(struct uz_class, nzs) - offsetof(struct uz_class, lock) == UZ_CACHELINE,
               "hot class fields overflow the lock's cache line");
_Static_assert(UZ_POOL_MAX_OBJS < (1u << UZ_LOC_IDX_BITS), "object index must fit a location");
_Static_assert(sizeof(struct uz_zspage) == UZ_CACHELINE, "a zspage header is one cache line");
_Static_assert(UZ_POOL_BATCH <= UZ_POOL_BATCH_AHEAD, "a batch must fit the batch budget");

static struct uz_class *handle_class(const struct uz_pool *pool, uz_handle_t h)
{
    assert((h >> 32) < UZ_POOL_NCLASSES && pool->class_of[h >> 32] == (h >> 32));
    assert((uint32_t)h != 0);
    return uz_handle_class(pool, h);
}

/* ---- zspages in a class (under its lock) ------------------------------------------------- */

void uz_list_add(const struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs, unsigned g)
{
    zs->group = (uint8_t)g;
    zs->prev = NULL;
    zs->next = uz_class_first(pool, c, g);
    if (zs->next)
        zs->next->prev = zs;
    c->head[g] = zs->slot + 1;
    c->nzs[g]++;
    if (g < UZ_POOL_FULL_GROUP)
        c->nonempty |= (uint16_t)(1u << g);
}

void uz_list_del(struct uz_class *c, struct uz_zspage *zs)
{
    unsigned g = zs->group;
    if (zs->prev)
        zs->prev->next = zs->next;
    else
        c->head[g] = zs->next ? zs->next->slot + 1 : 0;
    if (zs->next)
        zs->next->prev = zs->prev;
    c->nzs[g]--;
    if (!c->head[g])
        c->nonempty &= (uint16_t) ~(1u << g);
}

void uz_regroup(const struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    unsigned g = uz_group(zs->inuse, c->objs);
    if (g != zs->group) {
        uz_list_del(c, zs);
        uz_list_add(pool, c, zs, g);
    }
}

struct uz_zspage *uz_pick_fullest(const struct uz_pool *pool, const struct uz_class *c)
{
    if (!c->nonempty)
        return NULL;
    return uz_zspage_of(pool, c->head[31 - __builtin_clz(c->nonempty)] - 1);
}

void uz_zspage_publish(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    /* A cached zspage's pages were reserved in ahead: they are batch pages of a live one now. */
    if (zs->resident) {
        atomic_fetch_sub_explicit(&pool->reserved, zs->resident, memory_order_relaxed);
        c->pages_used += zs->resident;
    }
    zs->live = 1;
    uz_list_add(pool, c, zs, 0);
    c->zspages++;
}

void uz_zspage_detach(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    assert(zs->inuse == 0);
    zs->live = 0;
    c->zspages--;
    c->pages_used -= zs->resident;
    atomic_fetch_sub_explicit(&pool->ahead, zs->resident - zs->touched, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->in_flight, zs->resident, memory_order_relaxed);
}

/* The object's end reached page t > resident: count pages [resident, t) and, for a hot class
 * with `after`, a batch beyond; leave their population to the caller. */
static void zspage_grow(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs, unsigned t,
                        struct uz_pool_after *after)
{
    unsigned r = zs->resident, extra = 0;
    uint64_t now = atomic_fetch_add_explicit(&pool->needs, 1, memory_order_relaxed) + 1;
    if (after && now - c->last_need <= UZ_POOL_HOT && t - r < UZ_POOL_BATCH) {
        extra = UZ_POOL_BATCH - (t - r);
        if (extra > c->pages - t)
            extra = c->pages - t;
        while (extra && !uz_ahead_reserve(pool, extra, UZ_POOL_BATCH_AHEAD))
            extra /= 2;
    }
    c->last_need = now;
    unsigned n = t + extra - r;
    zs->resident = (uint8_t)(t + extra);
    c->pages_used += n;
    atomic_fetch_add_explicit(&pool->total_pages, n, memory_order_relaxed);
    if (after) {
        atomic_fetch_add_explicit(&zs->filling, 1, memory_order_relaxed);
        after->fill = zs;
        after->addr = uz_zspage_base(pool, zs->slot) + (size_t)r * UZ_PAGE_SIZE;
        after->len = (size_t)n * UZ_PAGE_SIZE;
    }
}

unsigned uz_obj_take(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs, uint32_t cell,
                     struct uz_pool_after *after)
{
    unsigned w = zs->hint;
    while (zs->bitmap[w] == ~(uint64_t)0)
        w++;
    unsigned idx = w * 64 + (unsigned)__builtin_ctzll(~zs->bitmap[w]);
    assert(idx < c->objs);
    zs->bitmap[w] |= (uint64_t)1 << (idx & 63);
    zs->hint = (uint16_t)w;
    zs->backref[idx] = cell;
    zs->inuse++;
    c->obj_used++;
    if (idx >= zs->hwm) {
        zs->hwm = (uint16_t)(idx + 1);
        unsigned t = uz_touched(zs->hwm, c->size);
        if (t > zs->touched) {
            /* Batch pages up to t are spent; pages beyond the resident ones are new. */
            unsigned spent = (t < zs->resident ? t : zs->resident) - zs->touched;
            atomic_fetch_sub_explicit(&pool->ahead, spent, memory_order_relaxed);
            if (t > zs->resident)
                zspage_grow(pool, c, zs, t, after);
            zs->touched = (uint8_t)t;
        }
    }
    return idx;
}

void uz_obj_put(struct uz_class *c, struct uz_zspage *zs, unsigned idx)
{
    unsigned w = idx / 64;
    assert(zs->bitmap[w] & ((uint64_t)1 << (idx & 63)));
    zs->bitmap[w] &= ~((uint64_t)1 << (idx & 63));
    if (w < zs->hint)
        zs->hint = (uint16_t)w;
    zs->inuse--;
    c->obj_used--;
}

/* ---- public API -------------------------------------------------------------------------- */

int uz_pool_malloc(struct uz_pool *pool, size_t size, uz_handle_t *out)
{
    if (UZ_UNLIKELY(size == 0 || size > UZ_POOL_MAX_ALLOC))
        return -EINVAL;
    struct uz_class *c = &pool->cls[pool->class_of[uz_pool_size_index(size)]];
    struct uz_zspage *spare = NULL;
    struct uz_pool_after after = {0};
    uint32_t cell = 0;
    unsigned k;
    int rc;
    uz_plock_lock(&c->lock);
    for (;;) {
        rc = uz_cell_ready(c, &k);
        if (UZ_UNLIKELY(rc == -EAGAIN)) {
            uz_plock_unlock(&c->lock);
            rc = uz_cell_grow(c, k);
            uz_plock_lock(&c->lock);
            if (rc)
                break;
            continue;
        }
        if (UZ_UNLIKELY(rc))
            break;
        struct uz_zspage *zs = uz_pick_fullest(pool, c);
        if (UZ_UNLIKELY(!zs)) {
            if (!spare) {
                uz_plock_unlock(&c->lock);
                rc = uz_zspage_get(pool, c, &spare);
                uz_plock_lock(&c->lock);
                if (rc)
                    break;
                continue;
            }
            zs = spare;
            spare = NULL;
            uz_zspage_publish(pool, c, zs);
        }
        cell = uz_cell_take(c);
        unsigned idx = uz_obj_take(pool, c, zs, cell, &after);
        uz_regroup(pool, c, zs);
        atomic_store_explicit(uz_cell(c, cell), uz_loc(zs->slot, idx), memory_order_release);
        break;
    }
    uz_plock_unlock(&c->lock);
    if (after.fill) {
        uz_arena_populate(after.addr, after.len);
        /* release: the compactor that sees 0 trims only after the pages went in */
        atomic_fetch_sub_explicit(&after.fill->filling, 1, memory_order_release);
    }
    if (UZ_UNLIKELY(spare))
        uz_zspage_put(pool, spare, UZ_PUT_RESERVED); /* another thread made room first */
    if (UZ_UNLIKELY(rc))
        return rc;
    *out = (uint64_t)c->index << 32 | (cell + 1);
    return 0;
}

void uz_pool_free(struct uz_pool *pool, uz_handle_t handle)
{
    if (!handle)
        return;
    struct uz_class *c = handle_class(pool, handle);
    uint32_t cell = uz_handle_cell(handle);
    uz_plock_lock(&c->lock);
    assert(cell < c->cells_hwm);
    uint64_t e = atomic_load_explicit(uz_cell(c, cell), memory_order_relaxed);
    assert(!(e & UZ_CELL_FREE));
    struct uz_zspage *zs = uz_zspage_of(pool, uz_loc_slot(e));
    uz_obj_put(c, zs, uz_loc_idx(e));
    uz_cell_release(c, cell);
    if (zs->inuse) {
        uz_regroup(pool, c, zs);
        uz_plock_unlock(&c->lock);
        return;
    }
    /* A zspage that only ever held this object (a huge one, or a new zspage whose first
     * object is freed at once, as after a write refused for mem_limit) goes straight back:
     * caching it would keep memory the caller just meant to give back. */
    unsigned how = zs->hwm > 1 ? 0 : UZ_PUT_NOCACHE;
    uz_list_del(c, zs);
    uz_zspage_detach(pool, c, zs);
    uz_plock_unlock(&c->lock);
    uz_zspage_put(pool, zs, how);
}

void *uz_pool_map(struct uz_pool *pool, uz_handle_t handle)
{
    struct uz_class *c = handle_class(pool, handle);
    _Atomic uint64_t *cp = uz_cell(c, uz_handle_cell(handle));
    unsigned spins = 0;
    for (;;) {
        uint64_t e = atomic_load_explicit(cp, memory_order_acquire);
        assert(!(e & UZ_CELL_FREE));
        uint32_t slot = uz_loc_slot(e);
        const struct uz_arena_chunk *ch = uz_arena_chunk(pool, slot);
        struct uz_zspage *zs = &ch->hdr[slot & UZ_ARENA_SLOT_MASK];
        /* acquire: the cell re-check below must not be satisfied before the pin is taken */
        if (UZ_LIKELY(atomic_fetch_add_explicit(&zs->pins, 1, memory_order_acquire) >= 0) &&
            UZ_LIKELY(atomic_load_explicit(cp, memory_order_acquire) == e))
            return ch->base + (size_t)(slot & UZ_ARENA_SLOT_MASK) * ch->pages * UZ_PAGE_SIZE +
                   (size_t)uz_loc_idx(e) * c->size;
        atomic_fetch_sub_explicit(&zs->pins, 1, memory_order_release);
        uz_backoff(&spins); /* the compactor is moving this zspage: a few microseconds */
    }
}

void uz_pool_unmap(struct uz_pool *pool, uz_handle_t handle)
{
    struct uz_class *c = handle_class(pool, handle);
    /* The object cannot move while its zspage is pinned, so the cell is stable. */
    uint64_t e = atomic_load_explicit(uz_cell(c, uz_handle_cell(handle)), memory_order_relaxed);
    struct uz_zspage *zs = uz_zspage_of(pool, uz_loc_slot(e));
    int old = atomic_fetch_sub_explicit(&zs->pins, 1, memory_order_release);
    assert(old > 0);
    (void)old;
}

int uz_pool_write(struct uz_pool *pool, uz_handle_t handle, const void *src, size_t len)
{
    if (UZ_UNLIKELY(len > handle_class(pool, handle)->size))
        return -EINVAL;
    memcpy(uz_pool_map(pool, handle), src, len);
    uz_pool_unmap(pool, handle);
    return 0;
}

int uz_pool_read(struct uz_pool *pool, uz_handle_t handle, void *dst, size_t len)
{
    if (UZ_UNLIKELY(len > handle_class(pool, handle)->size))
        return -EINVAL;
    memcpy(dst, uz_pool_map(pool, handle), len);
    uz_pool_unmap(pool, handle);
    return 0;
}

size_t uz_pool_obj_size(const struct uz_pool *pool, uz_handle_t handle)
{
    return handle_class(pool, handle)->size;
}
