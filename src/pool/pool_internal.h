/* SPDX-License-Identifier: MIT */
/*
 * pool_internal.h - the pool's private structures and the functions its files share. The one
 * private header of src/pool: every pool_*.c includes it and nothing else of the pool.
 *
 * Three tables, each type-stable until uz_pool_destroy() so lock-free readers may always touch
 * what they find:
 *  - the arena: 64 MiB chunks of address space (MAP_NORESERVE, no THP), each cut into slots of
 *    one page count (16384 / pages slots), one zspage per slot; slot id = chunk << 14 | index.
 *    Each chunk has an array of zspage headers indexed like its slots.
 *  - per class, a cell table of atomic 64-bit cells in geometrically growing segments
 *    (segment k holds 16 << k cells). A handle is (class << 32 | cell + 1); a live cell holds
 *    the object's location (slot << 16 | object index), a free cell UZ_CELL_FREE | next free.
 *  - per zspage, a bitmap of allocated objects and a back-reference array (object -> cell),
 *    malloc'd outside the pool pages: objects carry no header.
 *
 * Page accounting. A zspage's pages [0, resident) are populated and counted in total_pages;
 * pages [0, touched) are the ones its objects span (up to the end of the high-water object;
 * new objects take the lowest free index). resident - touched are batch pages: populated with
 * the pages a new object needed, in one MADV_POPULATE_WRITE, so the class's next objects find
 * them resident (pool_alloc.c). Freed zspages keep their pages in a small cache
 * (pool_arena.c). Every page is counted before it is populated and given back only after it is
 * uncounted, so total_pages never misses a resident page:
 *   total_pages == sum over classes of pages_used + cache_pages + held_pages + in_flight +
 *                  reserved
 *   pages_used  == sum over the class's zspages of resident
 *   ahead       == sum over live zspages of (resident - touched) + reserved <= UZ_POOL_AHEAD_MAX
 *   cache_pages == sum over cached zspages of resident                      <= UZ_POOL_CACHE_PAGES
 * in_flight: pages of emptied zspages on their way to the cache or the OS; reserved: pages of
 * cached zspages on their way to a class.
 *
 * Map/unmap against compaction: a map pins the zspage (pins++) and re-checks the cell; the
 * compactor freezes a source zspage with CAS(pins: 0 -> UZ_ZS_FROZEN), so a pinned zspage is
 * never frozen and a frozen one is never pinned. The compactor moves the objects, publishes
 * each new location (release) and unfreezes.
 *
 * Locks, outermost first (no other nesting exists):
 *  1. class locks (struct uz_plock, spins briefly then sleeps; the holder may block: page
 *     faults and madvise in compaction, the check's walk), several only in ascending index
 *     order (uz_pool_check());
 *  2. the arena lock (pthread mutex; the holder may block in mmap). Only uz_pool_check() takes
 *     it under class locks; allocation and free take it with no class lock held.
 * uz_pool_map()/uz_pool_unmap() take no lock.
 */
#ifndef UZ_POOL_INTERNAL_H
#define UZ_POOL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <uzram/pool.h>
#include "util.h"

#define UZ_POOL_NCLASSES   ((UZ_POOL_MAX_ALLOC - UZ_POOL_MIN_ALLOC) / UZ_POOL_CLASS_STEP + 1)
#define UZ_POOL_NGROUPS    11
#define UZ_POOL_FULL_GROUP 10
#define UZ_POOL_MAX_OBJS   (UZ_POOL_MAX_ZSPAGE_PAGES * UZ_PAGE_SIZE / UZ_POOL_MIN_ALLOC)
#define UZ_ZS_FROZEN       (INT32_MIN / 2)

/* Growth in batches (pool_alloc.c). A new object that needs fresh pages populates them
 * together with up to UZ_POOL_BATCH - 1 more of its zspage, when its class is hot (one of its
 * objects needed a fresh page within the last UZ_POOL_HOT fresh-page events of the pool) and
 * the pool's batch pages stay within UZ_POOL_BATCH_AHEAD. */
#define UZ_POOL_BATCH       8
#define UZ_POOL_BATCH_AHEAD 16
#define UZ_POOL_HOT         64
/* The cache of freed zspages (pool_arena.c): at most this many resident pages. A reused cached
 * zspage keeps its pages while ahead stays within UZ_POOL_AHEAD_MAX; the rest go back. */
#define UZ_POOL_CACHE_PAGES 64
#define UZ_POOL_AHEAD_MAX   (UZ_POOL_BATCH_AHEAD + UZ_POOL_CACHE_PAGES)

/* Arena geometry. */
#define UZ_ARENA_CHUNK_BYTES (64ul << 20)
#define UZ_ARENA_SLOT_BITS   14 /* 64 MiB / 4 KiB: the most slots a chunk has */
#define UZ_ARENA_SLOT_MASK   ((1u << UZ_ARENA_SLOT_BITS) - 1)
#define UZ_ARENA_MAX_CHUNKS  16384u /* 1 TiB of zspages */

/* Cell table geometry and encoding. */
#define UZ_CELL_SEG0_SHIFT 4
#define UZ_CELL_SEGS       28
#define UZ_CELL_MAX        ((((uint64_t)1 << UZ_CELL_SEGS) - 1) << UZ_CELL_SEG0_SHIFT)
#define UZ_CELL_FREE       ((uint64_t)1 << 63)
#define UZ_LOC_IDX_BITS    16
/* Segments up to this size come from the heap, larger ones from mmap (touched as they fill). */
#define UZ_CELL_SEG_MMAP_BYTES (128u << 10)

/* ---- the class lock ----------------------------------------------------------------------- */

/* A lock that spins briefly, then sleeps on a futex (Drepper's "mutex 3"): 0 free, 1 held,
 * 2 held with sleepers. Its holder may block. Zero-initialised is unlocked. */
struct uz_plock {
    _Atomic uint32_t v;
};
UZ_HIDDEN void uz_plock_lock_slow(struct uz_plock *l);
UZ_HIDDEN void uz_plock_wake(struct uz_plock *l);

static inline void uz_plock_lock(struct uz_plock *l)
{
    uint32_t free = 0;
    if (UZ_UNLIKELY(!atomic_compare_exchange_strong_explicit(&l->v, &free, 1, memory_order_acquire,
                                                             memory_order_relaxed)))
        uz_plock_lock_slow(l);
}

static inline void uz_plock_unlock(struct uz_plock *l)
{
    if (UZ_UNLIKELY(atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2))
        uz_plock_wake(l);
}

/* ---- structures --------------------------------------------------------------------------- */

/* A zspage header: 64 bytes, one cache line, so pins of neighbours never share a line. */
struct uz_zspage {
    _Atomic int pins; /* maps held or being tried, + UZ_ZS_FROZEN while compaction moves objects;
                       * never reset: stale readers may still add and remove a pin after reuse */
    _Atomic uint32_t filling;      /* populates in flight outside the class lock: while > 0 the
                                    * compactor neither moves this zspage's objects nor trims it */
    uint16_t cls;                  /* owning class index */
    uint16_t inuse;                /* == popcount(bitmap) */
    uint16_t hwm;                  /* no bit >= hwm is set */
    uint16_t hint;                 /* bitmap words [0, hint) are full */
    uint8_t touched;               /* == DIV_ROUND_UP(hwm * size, UZ_PAGE_SIZE) */
    uint8_t resident;              /* touched <= resident <= pages: pages populated and counted */
    uint8_t group;                 /* inuse == objs ? 10 : inuse * 10 / objs */
    uint8_t live;                  /* owned by a class (else cached, free, or in flight) */
    uint32_t slot;                 /* own slot id */
    uint32_t next_free;            /* arena free or cache list: next slot id + 1, 0 = end */
    struct uz_zspage *prev, *next; /* fullness list of `group` in the class (see head[]) */
    uint64_t *bitmap;              /* DIV_ROUND_UP(objs, 64) words, then the back references: */
    uint32_t *backref;             /* bit i set => cell[backref[i]] == loc(slot, i) */
} UZ_ALIGNED;

/* One 64 MiB chunk of the arena. Immutable once published in uz_pool.chunks[], but for bump. */
struct uz_arena_chunk {
    char *base;            /* UZ_ARENA_CHUNK_BYTES of address space */
    struct uz_zspage *hdr; /* nslots headers (mmap'd: untouched ones cost nothing) */
    uint32_t pages;        /* pages per slot */
    uint32_t nslots;       /* (UZ_ARENA_CHUNK_BYTES / UZ_PAGE_SIZE) / pages */
    uint32_t bump;         /* slots [0, bump) have been handed out; under the arena lock */
} UZ_ALIGNED;

/* A size class. Only representative classes (the largest of a merged run) are used. */
struct uz_class {
    /* Read-mostly: set at creation, segments published once (CAS from NULL). */
    uint32_t index;    /* (size - UZ_POOL_MIN_ALLOC) / UZ_POOL_CLASS_STEP */
    uint32_t size;     /* object size */
    uint32_t pages;    /* pages per zspage */
    uint32_t objs;     /* objects per zspage == pages * UZ_PAGE_SIZE / size */
    uint32_t meta_obj; /* bytes of one zspage's bitmap + back references */
    _Atomic(_Atomic uint64_t *) seg[UZ_CELL_SEGS]; /* segment k: UZ_CELL_SEG0 << k cells */

    /* Lock order: see the top of this file. Everything below is under `lock`; what every
     * malloc and free touches shares the lock's cache line. */
    struct uz_plock lock UZ_ALIGNED;
    uint16_t nonempty;              /* bit g set <=> head[g] != 0, g < 10 */
    uint32_t cell_free;             /* first free cell + 1, 0 = none */
    uint32_t cells_hwm;             /* cells [0, cells_hwm) exist: obj_used live + free list */
    uint32_t obj_used;              /* == sum over zspages of inuse */
    uint32_t head[UZ_POOL_NGROUPS]; /* first zspage of fullness group g: slot id + 1, 0 = none */
    uint64_t nzs[UZ_POOL_NGROUPS] UZ_ALIGNED; /* == |list of group g| */
    uint64_t zspages;                         /* == sum nzs[g] */
    uint64_t pages_used;                      /* == sum over zspages of resident */
    uint64_t last_need;                       /* pool->needs when this class last needed a page */
} UZ_ALIGNED;

struct uz_pool {
    /* Read-mostly. */
    uint8_t class_of[UZ_POOL_NCLASSES]; /* size index -> representative class index */
    uint32_t huge_size;
    uint32_t nreps;                           /* distinct classes */
    _Atomic(struct uz_arena_chunk *) *chunks; /* [UZ_ARENA_MAX_CHUNKS], never reallocated */

    /* Page accounting (see the top of this file). Changed under a class lock or the arena lock
     * (uz_pool_check() holds them all); total_pages is also read lock-free. */
    _Atomic uint64_t total_pages UZ_ALIGNED;
    _Atomic uint64_t ahead;     /* batch pages of live zspages, and reserved */
    _Atomic uint64_t in_flight; /* pages of detached zspages not yet taken back by the arena */
    _Atomic uint64_t reserved;  /* pages of cached zspages taken, not yet published */
    _Atomic uint64_t needs;     /* fresh-page events so far: the clock of UZ_POOL_HOT */
    _Atomic uint64_t pages_compacted;

    /* The arena: under arena_lock (order: see the top of this file). */
    pthread_mutex_t arena_lock UZ_ALIGNED;
    uint32_t nchunks;                                 /* chunks[0, nchunks) are published */
    uint32_t free_slot[UZ_POOL_MAX_ZSPAGE_PAGES + 1]; /* per page count: free slot id + 1 */
    uint32_t cur_chunk[UZ_POOL_MAX_ZSPAGE_PAGES + 1]; /* per page count: bump chunk + 1 */
    uint32_t cache[UZ_POOL_MAX_ZSPAGE_PAGES + 1];     /* per page count: cached slot id + 1 */
    uint32_t cache_pages;                             /* resident pages of cached zspages */
    /* Emptied zspages held back while some caller batches their release (uz_pool_hold()):
     * their pages stay counted (held_pages) until one process_madvise() gives them all back
     * (pool_arena.c). hold is read without the lock. */
    _Atomic int hold;
    uint32_t *held; /* slot ids, malloc'd; nheld of held_cap used */
    uint32_t nheld, held_cap;
    uint64_t held_pages;

    struct uz_class cls[UZ_POOL_NCLASSES];
};

/* What an allocation does after dropping the class lock: populate the pages it counted. */
struct uz_pool_after {
    struct uz_zspage *fill; /* its `filling` was raised; lowered once populated */
    char *addr;
    size_t len;
};

/* ---- inline helpers ----------------------------------------------------------------------- */

static inline uint64_t uz_loc(uint32_t slot, unsigned idx)
{
    return (uint64_t)slot << UZ_LOC_IDX_BITS | idx;
}
static inline uint32_t uz_loc_slot(uint64_t loc)
{
    return (uint32_t)(loc >> UZ_LOC_IDX_BITS);
}
static inline unsigned uz_loc_idx(uint64_t loc)
{
    return (unsigned)(loc & ((1u << UZ_LOC_IDX_BITS) - 1));
}

static inline struct uz_arena_chunk *uz_arena_chunk(const struct uz_pool *pool, uint32_t slot)
{
    return atomic_load_explicit(&pool->chunks[slot >> UZ_ARENA_SLOT_BITS], memory_order_acquire);
}

static inline struct uz_zspage *uz_zspage_of(const struct uz_pool *pool, uint32_t slot)
{
    return &uz_arena_chunk(pool, slot)->hdr[slot & UZ_ARENA_SLOT_MASK];
}

static inline char *uz_zspage_base(const struct uz_pool *pool, uint32_t slot)
{
    const struct uz_arena_chunk *ch = uz_arena_chunk(pool, slot);
    return ch->base + (size_t)(slot & UZ_ARENA_SLOT_MASK) * ch->pages * UZ_PAGE_SIZE;
}

/* The cell `i` of class `c`; its segment must exist (i < cells_hwm). */
static inline _Atomic uint64_t *uz_cell(struct uz_class *c, uint32_t i)
{
    uint64_t n = (uint64_t)i + (1u << UZ_CELL_SEG0_SHIFT);
    unsigned k = 63 - (unsigned)__builtin_clzll(n) - UZ_CELL_SEG0_SHIFT;
    _Atomic uint64_t *seg = atomic_load_explicit(&c->seg[k], memory_order_acquire);
    return seg + (n - ((uint64_t)1 << (k + UZ_CELL_SEG0_SHIFT)));
}

static inline size_t uz_cell_seg_bytes(unsigned k)
{
    return ((size_t)1 << (k + UZ_CELL_SEG0_SHIFT)) * sizeof(uint64_t);
}

/* The first zspage of fullness group g of class c, or NULL. */
static inline struct uz_zspage *uz_class_first(const struct uz_pool *pool, const struct uz_class *c,
                                               unsigned g)
{
    return c->head[g] ? uz_zspage_of(pool, c->head[g] - 1) : NULL;
}

static inline unsigned uz_group(unsigned inuse, unsigned objs)
{
    return inuse == objs ? UZ_POOL_FULL_GROUP : inuse * 10 / objs;
}

static inline unsigned uz_touched(unsigned hwm, unsigned size)
{
    return UZ_DIV_ROUND_UP(hwm * size, UZ_PAGE_SIZE);
}

/* The fewest pages the class's objects could span: full zspages, then one packed from 0. */
static inline uint64_t uz_ideal_pages(const struct uz_class *c)
{
    return c->obj_used / c->objs * c->pages + uz_touched(c->obj_used % c->objs, c->size);
}

static inline struct uz_class *uz_handle_class(const struct uz_pool *pool, uz_handle_t h)
{
    return (struct uz_class *)&pool->cls[h >> 32];
}

static inline uint32_t uz_handle_cell(uz_handle_t h)
{
    return (uint32_t)h - 1;
}

/* ---- shared between the pool's files ------------------------------------------------------ */

/* pool_geometry.c: fills class_of[], the representative classes and huge_size. */
UZ_HIDDEN void uz_pool_geometry_init(struct uz_pool *pool);
UZ_HIDDEN unsigned uz_pool_size_index(size_t size);

/* pool_arena.c. Each is called with no class lock held and takes the arena lock itself. */
UZ_HIDDEN void *uz_arena_map_anon(size_t bytes);
UZ_HIDDEN void *uz_arena_zalloc(size_t bytes);
UZ_HIDDEN void uz_arena_destroy(struct uz_pool *pool);
/* A zspage for class c, to publish with uz_zspage_publish(): from the cache while ahead has
 * room for its pages (counted in reserved), else from the free list or a new slot.
 * @return : 0 or -ENOMEM. */
UZ_HIDDEN int uz_zspage_get(struct uz_pool *pool, struct uz_class *c, struct uz_zspage **out);
/* Takes back a zspage uz_zspage_detach() removed (its pages counted in in_flight), or one
 * uz_zspage_get() gave and the caller did not publish (UZ_PUT_RESERVED): into the cache while
 * it has room (unless UZ_PUT_RELEASE or UZ_PUT_NOCACHE), else held while uz_pool_hold() is on
 * (unless UZ_PUT_RELEASE), else its pages go back to the OS. */
#define UZ_PUT_RESERVED 1u
#define UZ_PUT_RELEASE  2u
#define UZ_PUT_NOCACHE  4u /* not into the cache (a zspage of one object), but may be held */
UZ_HIDDEN void uz_zspage_put(struct uz_pool *pool, struct uz_zspage *zs, unsigned how);
/* Gives back every cached zspage's pages. @return : how many pages. */
UZ_HIDDEN long uz_arena_cache_drain(struct uz_pool *pool);
/* Gives back every held zspage (uz_pool_hold()); no lock held by the caller. */
UZ_HIDDEN void uz_arena_held_flush(struct uz_pool *pool);
/* MADV_POPULATE_WRITE (a failure is harmless: the pages fault in on first touch). */
UZ_HIDDEN void uz_arena_populate(void *addr, size_t len);
UZ_HIDDEN void uz_arena_release(void *addr, size_t len); /* MADV_DONTNEED */
/* Adds n to ahead if it stays within `max`. @return : whether it did. Lock-free. */
UZ_HIDDEN bool uz_ahead_reserve(struct uz_pool *pool, unsigned n, unsigned max);

/* pool_handle.c: cells, under the class lock but for uz_cell_grow(). */
/* @return : 0 when uz_cell_take() will succeed, -EAGAIN when segment *k must be added first
 *           (uz_cell_grow(), without the lock), -ENOMEM when the class has every cell. */
UZ_HIDDEN int uz_cell_ready(const struct uz_class *c, unsigned *k);
UZ_HIDDEN int uz_cell_grow(struct uz_class *c, unsigned k);
UZ_HIDDEN uint32_t uz_cell_take(struct uz_class *c);
UZ_HIDDEN void uz_cell_release(struct uz_class *c, uint32_t i);
UZ_HIDDEN void uz_cells_destroy(struct uz_class *c);
UZ_HIDDEN uint64_t uz_cell_bytes(const struct uz_class *c);

/* pool_alloc.c: zspages in a class, under its lock. */
UZ_HIDDEN void uz_list_add(const struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs,
                           unsigned g);
UZ_HIDDEN void uz_list_del(struct uz_class *c, struct uz_zspage *zs);
UZ_HIDDEN void uz_regroup(const struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs);
UZ_HIDDEN struct uz_zspage *uz_pick_fullest(const struct uz_pool *pool, const struct uz_class *c);
/* Places the object of `cell` at the lowest free index of a non-full zspage and counts the
 * pages it newly spans; with `after`, a hot class's batch too, left for the caller to populate
 * once unlocked. The caller regroups. @return : the index. */
UZ_HIDDEN unsigned uz_obj_take(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs,
                               uint32_t cell, struct uz_pool_after *after);
UZ_HIDDEN void uz_obj_put(struct uz_class *c, struct uz_zspage *zs, unsigned idx);
/* Adds a zspage from uz_zspage_get() to class c as its newest, empty. */
UZ_HIDDEN void uz_zspage_publish(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs);
/* Removes an emptied zspage (already off its list) from its class; its pages go in_flight and
 * uz_zspage_put() must follow, outside the lock. */
UZ_HIDDEN void uz_zspage_detach(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs);

#endif
