// SPDX-License-Identifier: MIT
/*
 * pool_geometry.c - size classes. Classes every 16 bytes from 32 to 4096; each takes the zspage
 * page count (1..16) that wastes the least of a zspage, ties to fewer pages. Runs of classes
 * with the same geometry (pages and objects per zspage) merge into their largest, from the top
 * as zsmalloc does; the top run (one object per zspage) is the huge classes.
 */
#include "pool_internal.h"

#include <stddef.h>

unsigned uz_pool_size_index(size_t size)
{
    return size <= UZ_POOL_MIN_ALLOC
               ? 0
               : (unsigned)UZ_DIV_ROUND_UP(size - UZ_POOL_MIN_ALLOC, UZ_POOL_CLASS_STEP);
}

/* The page count (1..16) that wastes the least of a zspage for `size`; ties to fewer pages. */
static void class_geometry(unsigned size, unsigned *pages, unsigned *objs)
{
    unsigned bp = 1, bo = UZ_PAGE_SIZE / size;
    for (unsigned p = 2; p <= UZ_POOL_MAX_ZSPAGE_PAGES; p++) {
        unsigned o = p * UZ_PAGE_SIZE / size;
        if ((uint64_t)o * bp > (uint64_t)bo * p) { /* o/p > bo/bp: more of the zspage used */
            bp = p;
            bo = o;
        }
    }
    *pages = bp;
    *objs = bo;
}

void uz_pool_geometry_init(struct uz_pool *pool)
{
    unsigned rep = 0, rp = 0, ro = 0;
    for (unsigned i = UZ_POOL_NCLASSES; i-- > 0;) {
        unsigned size = UZ_POOL_MIN_ALLOC + i * UZ_POOL_CLASS_STEP, p, o;
        class_geometry(size, &p, &o);
        if (i == UZ_POOL_NCLASSES - 1 || p != rp || o != ro) {
            struct uz_class *c = &pool->cls[i];
            c->index = i;
            c->size = size;
            c->pages = p;
            c->objs = o;
            size_t meta = UZ_DIV_ROUND_UP(o, 64) * sizeof(uint64_t) + o * sizeof(uint32_t);
            c->meta_obj = (uint32_t)(UZ_DIV_ROUND_UP(meta, UZ_CACHELINE) * UZ_CACHELINE);
            rep = i;
            rp = p;
            ro = o;
            pool->nreps++;
        }
        pool->class_of[i] = (uint8_t)rep;
    }
    /* Huge classes are the top run; the size just above the last non-huge class enters it. */
    pool->huge_size = UZ_POOL_MAX_ALLOC;
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++) {
        if (pool->cls[pool->class_of[i]].objs == 1) {
            pool->huge_size = i ? UZ_POOL_MIN_ALLOC + (i - 1) * UZ_POOL_CLASS_STEP + 1 : 1;
            break;
        }
    }
}

size_t uz_pool_class_size(const struct uz_pool *pool, size_t size)
{
    if (size == 0 || size > UZ_POOL_MAX_ALLOC)
        return 0;
    return pool->cls[pool->class_of[uz_pool_size_index(size)]].size;
}

size_t uz_pool_huge_size(const struct uz_pool *pool)
{
    return pool->huge_size;
}
