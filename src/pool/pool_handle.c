// SPDX-License-Identifier: MIT
/*
 * pool_handle.c - handle cells. Each class has a table of atomic 64-bit cells in segments that
 * double in size (segment k holds 16 << k cells) and never move, so a handle (class, cell)
 * finds its object's location without a lock. Free cells form a list through their values
 * (UZ_CELL_FREE | next + 1), reused first. A new segment is allocated with the class lock
 * dropped (uz_cell_ready() says when) and published with a CAS from NULL: the loser of a race
 * frees its copy. Small segments come from the heap, large ones from mmap, whose pages are
 * touched only as cells reach them.
 */
#include "pool_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

static unsigned seg_of(uint32_t i)
{
    uint64_t n = (uint64_t)i + (1u << UZ_CELL_SEG0_SHIFT);
    return 63 - (unsigned)__builtin_clzll(n) - UZ_CELL_SEG0_SHIFT;
}

int uz_cell_ready(const struct uz_class *c, unsigned *k)
{
    if (c->cell_free)
        return 0;
    if (c->cells_hwm >= UZ_CELL_MAX)
        return -ENOMEM;
    *k = seg_of(c->cells_hwm);
    return atomic_load_explicit(&c->seg[*k], memory_order_relaxed) ? 0 : -EAGAIN;
}

int uz_cell_grow(struct uz_class *c, unsigned k)
{
    if (atomic_load_explicit(&c->seg[k], memory_order_acquire))
        return 0;
    size_t bytes = uz_cell_seg_bytes(k);
    bool heap = bytes <= UZ_CELL_SEG_MMAP_BYTES;
    void *seg = heap ? uz_arena_zalloc(bytes) : uz_arena_map_anon(bytes);
    if (!seg)
        return -ENOMEM;
    _Atomic uint64_t *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&c->seg[k], &none, seg, memory_order_release,
                                                 memory_order_relaxed)) {
        if (heap)
            free(seg);
        else
            munmap(seg, bytes);
    }
    return 0;
}

uint32_t uz_cell_take(struct uz_class *c)
{
    if (c->cell_free) {
        uint32_t i = c->cell_free - 1;
        uint64_t v = atomic_load_explicit(uz_cell(c, i), memory_order_relaxed);
        assert(v & UZ_CELL_FREE);
        c->cell_free = (uint32_t)(v & ~UZ_CELL_FREE);
        return i;
    }
    return c->cells_hwm++;
}

void uz_cell_release(struct uz_class *c, uint32_t i)
{
    atomic_store_explicit(uz_cell(c, i), UZ_CELL_FREE | c->cell_free, memory_order_relaxed);
    c->cell_free = i + 1;
}

void uz_cells_destroy(struct uz_class *c)
{
    for (unsigned k = 0; k < UZ_CELL_SEGS; k++) {
        void *seg = atomic_load_explicit(&c->seg[k], memory_order_relaxed);
        if (!seg)
            continue;
        if (uz_cell_seg_bytes(k) <= UZ_CELL_SEG_MMAP_BYTES)
            free(seg);
        else
            munmap(seg, uz_cell_seg_bytes(k));
    }
}

static uint64_t page_round(uint64_t bytes)
{
    return UZ_DIV_ROUND_UP(bytes, UZ_PAGE_SIZE) * UZ_PAGE_SIZE;
}

/* Cell memory of a class: heap segments whole, mmap'd ones by the pages its cells reach. */
uint64_t uz_cell_bytes(const struct uz_class *c)
{
    uint64_t b = 0;
    for (unsigned k = 0; k < UZ_CELL_SEGS; k++) {
        if (!atomic_load_explicit(&c->seg[k], memory_order_relaxed))
            continue;
        uint64_t first = ((uint64_t)1 << (k + UZ_CELL_SEG0_SHIFT)) - (1u << UZ_CELL_SEG0_SHIFT);
        uint64_t cells = uz_cell_seg_bytes(k) / sizeof(uint64_t);
        uint64_t used = c->cells_hwm > first ? c->cells_hwm - first : 0;
        if (used > cells)
            used = cells;
        b += uz_cell_seg_bytes(k) <= UZ_CELL_SEG_MMAP_BYTES ? uz_cell_seg_bytes(k)
                                                            : page_round(used * sizeof(uint64_t));
    }
    return b;
}
