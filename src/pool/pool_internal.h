/* SPDX-License-Identifier: MIT */
/*
 * pool_internal.h - the pool's private structures, shared by pool.c and pool_check.c.
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
 * A zspage's pages are counted (and faulted in) up to the page holding the end of its
 * high-water object; new objects always take the lowest free index.
 *
 * Map/unmap against compaction: a map pins the zspage (pins++) and re-checks the cell; the
 * compactor freezes a source zspage with CAS(pins: 0 -> UZ_ZS_FROZEN), so a pinned zspage is
 * never frozen and a frozen one is never pinned. The compactor moves the objects, publishes
 * each new location (release) and unfreezes.
 */
#ifndef UZ_POOL_INTERNAL_H
#define UZ_POOL_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>
#include <uzram/pool.h>
#include "util.h"

#define UZ_POOL_NCLASSES   ((UZ_POOL_MAX_ALLOC - UZ_POOL_MIN_ALLOC) / UZ_POOL_CLASS_STEP + 1)
#define UZ_POOL_NGROUPS    11
#define UZ_POOL_FULL_GROUP 10
#define UZ_POOL_MAX_OBJS   (UZ_POOL_MAX_ZSPAGE_PAGES * UZ_PAGE_SIZE / UZ_POOL_MIN_ALLOC)
#define UZ_ZS_FROZEN       (INT32_MIN / 2)
#define UZ_PF_RING         1024   /* prefault requests queued at most */
#define UZ_PF_RESERVE      0x8000 /* request flag: refill reserve[request & 0xff] */
#define UZ_PF_SAMPLE       64     /* ahead requests per lateness verdict */
#define UZ_PF_PAUSE_MS     50     /* how long a late prefault thread stands aside */

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

/* A zspage header: 64 bytes, one cache line, so pins of neighbours never share a line. */
struct uz_zspage {
    _Atomic int pins; /* maps held or being tried, + UZ_ZS_FROZEN while compaction moves objects;
                       * never reset: stale readers may still add and remove a pin after reuse */
    uint16_t cls;     /* owning class index */
    uint16_t inuse;   /* == popcount(bitmap) */
    uint16_t hwm;     /* no bit >= hwm is set; the pages objects [0, hwm) span are counted */
    uint8_t touched;  /* == DIV_ROUND_UP(hwm * size, UZ_PAGE_SIZE): pages counted as resident */
    uint8_t group;    /* inuse == objs ? 10 : inuse * 10 / objs */
    uint16_t hint;    /* bitmap words [0, hint) are full */
    uint8_t live;     /* owned by a class (else on the arena free list, or being released) */
    uint8_t pad;
    uint32_t slot;      /* own slot id */
    uint32_t next_free; /* arena free list: next free slot id + 1, 0 = end (when !live) */
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
    /* Read-mostly: set at creation, segments published once (release). */
    uint32_t index;    /* (size - UZ_POOL_MIN_ALLOC) / UZ_POOL_CLASS_STEP */
    uint32_t size;     /* object size */
    uint32_t pages;    /* pages per zspage */
    uint32_t objs;     /* objects per zspage == pages * UZ_PAGE_SIZE / size */
    uint32_t meta_obj; /* bytes of one zspage's bitmap + back references */
    _Atomic(_Atomic uint64_t *) seg[UZ_CELL_SEGS]; /* segment k: UZ_CELL_SEG0 << k cells */

    /* Lock order: class locks by ascending index, then the arena lock. Everything below is
     * under `lock`; what every malloc and free touches shares the lock's cache line. */
    struct uz_spinlock lock UZ_ALIGNED;
    uint16_t nonempty;              /* bit g set <=> head[g] != 0, g < 10 */
    uint32_t cell_free;             /* first free cell + 1, 0 = none */
    uint32_t cells_hwm;             /* cells [0, cells_hwm) exist: obj_used live + free list */
    uint32_t obj_used;              /* == sum over zspages of inuse */
    uint32_t pages_used;            /* == sum over zspages of touched */
    uint32_t head[UZ_POOL_NGROUPS]; /* first zspage of fullness group g: slot id + 1, 0 = none */
    uint64_t nzs[UZ_POOL_NGROUPS] UZ_ALIGNED; /* == |list of group g| */
    uint64_t zspages;                         /* == sum nzs[g] */
    /* Prefault (uz_pool_prefault()): at most one page counted ahead of need. When ahead_slot
     * != 0, page ahead_page == touched of zspage ahead_slot - 1 is counted in pages_used and
     * total_pages and queued to the prefault thread (ahead_done once it is faulted in). */
    uint32_t ahead_slot;
    uint8_t ahead_page;
    uint8_t ahead_done;
} UZ_ALIGNED;

struct uz_pool {
    /* Read-mostly. */
    uint8_t class_of[UZ_POOL_NCLASSES]; /* size index -> representative class index */
    uint32_t huge_size;
    uint32_t nreps;                           /* distinct classes */
    _Atomic(struct uz_arena_chunk *) *chunks; /* [UZ_ARENA_MAX_CHUNKS], never reallocated */

    /* Written when a zspage's touched pages change or it is freed. */
    _Atomic uint64_t total_pages UZ_ALIGNED; /* == sum over live zspages of touched */
    _Atomic uint64_t pages_compacted;

    /* The arena. Lock order: innermost (after class locks). */
    pthread_mutex_t arena_lock UZ_ALIGNED;
    uint32_t nchunks;                                 /* chunks[0, nchunks) are published */
    uint32_t free_slot[UZ_POOL_MAX_ZSPAGE_PAGES + 1]; /* per page count: free slot id + 1 */
    uint32_t cur_chunk[UZ_POOL_MAX_ZSPAGE_PAGES + 1]; /* per page count: bump chunk + 1 */
    /* Per page count, with prefault on: a slot (id + 1) whose first page the prefault thread
     * has faulted in, handed to the next new zspage; counted in total_pages (one page each). */
    uint32_t reserve[UZ_POOL_MAX_ZSPAGE_PAGES + 1];

    /* The prefault thread and its FIFO of class indices (each names the class's ahead page).
     * pf_lock is a leaf: taken under a class lock by producers, never the other way round. */
    _Atomic bool pf_on;
    _Atomic bool pf_paused; /* the thread found itself mostly late: no ahead pages for now */
    bool pf_stop;
    bool pf_running;
    pthread_t pf_thread;
    pthread_mutex_t pf_lock;
    pthread_cond_t pf_cond;
    uint32_t pf_head, pf_tail; /* pf_ring[pf_tail % UZ_PF_RING] is the oldest request */
    uint16_t pf_ring[UZ_PF_RING];

    struct uz_class cls[UZ_POOL_NCLASSES];
};

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

#endif
