/* SPDX-License-Identifier: MIT */
/*
 * pool.h - a zsmalloc-style allocator for compressed objects.
 *
 * Objects of 1..UZ_POOL_MAX_ALLOC bytes are rounded up to a size class (16-byte steps) and
 * packed into zspages: runs of 1..UZ_POOL_MAX_ZSPAGE_PAGES contiguous 4 KiB pages chosen per
 * class to waste the least. Classes whose geometry is identical are merged, as zsmalloc does.
 * Callers hold a handle, not an address: compaction moves objects between zspages and updates
 * the handle, so an object is only addressable between uz_pool_map() and uz_pool_unmap().
 *
 * Memory accounting is exact: total_pages counts every page the pool holds resident. A zspage's
 * pages are populated as its objects reach them, a few at a time for busy classes (the pool's
 * batch pages: at most a few dozen, pool-wide); an emptied zspage goes to a small cache of
 * freed zspages (at most 64 pages, reused first) or back to the OS (MADV_DONTNEED).
 */
#ifndef UZRAM_POOL_H
#define UZRAM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uzram/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest object the pool stores. */
#define UZ_POOL_MAX_ALLOC 4096u
/* Smallest class size and the step between classes. */
#define UZ_POOL_MIN_ALLOC  32u
#define UZ_POOL_CLASS_STEP 16u
/* Most 4 KiB pages one zspage spans. */
#define UZ_POOL_MAX_ZSPAGE_PAGES 16u

/* A reference to one object. 0 is never a valid handle. */
typedef uint64_t uz_handle_t;

/* The pool. Thread-safety: every function is safe to call from any thread concurrently;
 * allocation and free lock one size class (threads in different classes only share the
 * arena's lock when a zspage is created or emptied); map and unmap take no lock. */
struct uz_pool;

/* uz_pool_create() : @return : 0 or -ENOMEM. */
UZ_API int uz_pool_create(struct uz_pool **out);

/* uz_pool_destroy() : frees every object and all memory. NULL is a no-op. */
UZ_API void uz_pool_destroy(struct uz_pool *pool);

/* uz_pool_malloc() :
 *  Allocates an object of `size` bytes (its contents are undefined).
 *  @return : 0 and *out set, -EINVAL for size 0 or > UZ_POOL_MAX_ALLOC, -ENOMEM. */
UZ_API int uz_pool_malloc(struct uz_pool *pool, size_t size, uz_handle_t *out);

/* uz_pool_free() : frees an object; 0 is a no-op. The object must not be mapped. */
UZ_API void uz_pool_free(struct uz_pool *pool, uz_handle_t handle);

/* uz_pool_map() :
 *  Pins the object and returns its address: it stays valid, and compaction leaves the object in
 *  place, until uz_pool_unmap(). Any number of maps may be held at once, but a thread must not
 *  map the same handle twice nor free a mapped handle. The object is uz_pool_obj_size() bytes.
 *  Cost: two atomic operations on the object's zspage. */
UZ_API void *uz_pool_map(struct uz_pool *pool, uz_handle_t handle);
UZ_API void uz_pool_unmap(struct uz_pool *pool, uz_handle_t handle);

/* uz_pool_write() / uz_pool_read() :
 *  Copy `len` bytes (at most the object's class size) into or out of an object: map, memcpy,
 *  unmap. @return : 0 or -EINVAL (len larger than the object's class size). */
UZ_API int uz_pool_write(struct uz_pool *pool, uz_handle_t handle, const void *src, size_t len);
UZ_API int uz_pool_read(struct uz_pool *pool, uz_handle_t handle, void *dst, size_t len);

/* uz_pool_obj_size() : the class size of the object (>= the size it was allocated with). */
UZ_API size_t uz_pool_obj_size(const struct uz_pool *pool, uz_handle_t handle);

/* uz_pool_class_size() : the class size an allocation of `size` bytes gets, 0 if out of range. */
UZ_API size_t uz_pool_class_size(const struct uz_pool *pool, size_t size);

/* uz_pool_huge_size() :
 *  The smallest allocation size that lands in a huge class (one object per zspage, so it costs
 *  as much as storing the page raw). zram stores a page raw when it compresses to this or more.*/
UZ_API size_t uz_pool_huge_size(const struct uz_pool *pool);

/* uz_pool_total_pages() : 4 KiB pages of memory the pool holds (what mm_stat calls
 *  mem_used_total, divided by 4096). Cheap: one atomic load. */
UZ_API uint64_t uz_pool_total_pages(const struct uz_pool *pool);

/* uz_pool_hold() / uz_pool_unhold() :
 *  For bulk frees: between the two, the pages of zspages that empty are kept (still counted in
 *  uz_pool_total_pages()) and given back together, every 1024 zspages and at the last unhold,
 *  with one process_madvise() call (one TLB flush) instead of one madvise() per zspage. Calls
 *  nest; any thread. */
UZ_API void uz_pool_hold(struct uz_pool *pool);
UZ_API void uz_pool_unhold(struct uz_pool *pool);

/* uz_pool_compact() :
 *  Moves objects from sparse zspages into dense ones in every class, frees the emptied zspages
 *  and packs each class's last partial zspage from its start, giving back the pages above its
 *  last object, so a class ends at its fewest possible pages, and empties the cache of freed
 *  zspages. Runs concurrently with every other call; mapped objects are not moved (their
 *  zspages are skipped).
 *  @return : the number of 4 KiB pages freed (>= 0). */
UZ_API long uz_pool_compact(struct uz_pool *pool);

/* Per-class statistics, a snapshot. One row per distinct (merged) class. */
struct uz_pool_class_stat {
    uint32_t index;            /* class index (size = MIN_ALLOC + index * STEP) */
    uint32_t size;             /* object size of the class in bytes */
    uint32_t pages_per_zspage; /* pages in one zspage of this class */
    uint32_t objs_per_zspage;  /* objects one zspage holds */
    uint64_t zspages;          /* zspages of this class */
    uint64_t obj_allocated;    /* object slots in those zspages (zspages * objs_per_zspage) */
    uint64_t obj_used;         /* live objects */
    uint64_t pages_used;       /* resident pages of those zspages */
    uint64_t freeable;         /* pages compaction could free in this class (pages_used minus
                                * the fewest pages its objects could span) */
    uint64_t fullness[11];     /* zspages by fullness: [0] 0-9%, ..., [9] 90-99%, [10] 100% */
};

/* Whole-pool statistics, a snapshot. */
struct uz_pool_stat {
    uint64_t total_pages;     /* uz_pool_total_pages() */
    uint64_t objects;         /* live objects */
    uint64_t obj_bytes;       /* sum of the class sizes of live objects */
    uint64_t zspages;         /* zspages in use */
    uint64_t pages_compacted; /* pages freed by compaction since creation */
    uint64_t meta_bytes;      /* bookkeeping outside the pool pages (handles, zspage headers) */
    uint64_t batch_pages;     /* of total_pages: populated ahead of the objects of their zspages */
    uint64_t cached_pages;    /* of total_pages: held by the cache of freed zspages */
};

/* uz_pool_class_stats() :
 *  Fills up to `n` rows (n may be 0 to ask how many there are).
 *  @return : the number of distinct classes (may exceed n). */
UZ_API int uz_pool_class_stats(struct uz_pool *pool, struct uz_pool_class_stat *rows, size_t n);

/* uz_pool_stats() : @return : 0. Thread-safety: safe; a sum of per-class snapshots. */
UZ_API int uz_pool_stats(struct uz_pool *pool, struct uz_pool_stat *st);

/* uz_pool_check() :
 *  Walks every invariant (fullness lists, bitmaps against inuse counts, handle <-> object back
 *  references, page accounting with batch pages, the free lists and the zspage cache, class
 *  totals against the pool total). Holds every class lock and the arena lock for the walk, so
 *  it is exact even while other threads run (which sleep on the locks meanwhile).
 *  @return : 0, or -EUCLEAN on the first violation found. */
UZ_API int uz_pool_check(struct uz_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
