// SPDX-License-Identifier: MIT
/*
 * pool.c - the zsmalloc-style pool: class geometry, the slot arena, handle cells, allocation,
 * map/unmap, compaction and statistics. See pool_internal.h for the data structures and the
 * map/compaction protocol.
 *
 * Allocation takes the class lock, pops a cell, picks the fullest non-full zspage (a new one
 * from the arena when none) and takes its lowest free object. Freeing the last object of a
 * zspage hands its resident pages back to the OS (MADV_DONTNEED) and its slot to the arena.
 * Map and unmap take no lock: two atomic operations on the zspage's pin count.
 */
#include "pool_internal.h"

#include <assert.h>
#include <stdbool.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* What malloc and free touch shares the class lock's cache line. */
_Static_assert(offsetof(struct uz_class, nzs) - offsetof(struct uz_class, lock) == UZ_CACHELINE,
               "hot class fields overflow the lock's cache line");
_Static_assert(UZ_POOL_MAX_OBJS < (1u << UZ_LOC_IDX_BITS), "object index must fit a location");
_Static_assert(sizeof(struct uz_zspage) == UZ_CACHELINE, "a zspage header is one cache line");

/* Segments up to this size come from the heap, larger ones from mmap (touched as they fill). */
#define UZ_CELL_SEG_MMAP_BYTES (128u << 10)

static void *map_anon(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, bytes, MADV_NOHUGEPAGE); /* THP would make untouched pages resident */
    return p;
}

/* Zeroed, on cache lines of its own: bitmaps and cells of different classes never share one. */
static void *zalloc_aligned(size_t bytes)
{
    bytes = UZ_DIV_ROUND_UP(bytes, UZ_CACHELINE) * UZ_CACHELINE;
    void *p = aligned_alloc(UZ_CACHELINE, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static size_t seg_bytes(unsigned k)
{
    return ((size_t)1 << (k + UZ_CELL_SEG0_SHIFT)) * sizeof(uint64_t);
}

static unsigned size_index(size_t size)
{
    return size <= UZ_POOL_MIN_ALLOC
               ? 0
               : (unsigned)UZ_DIV_ROUND_UP(size - UZ_POOL_MIN_ALLOC, UZ_POOL_CLASS_STEP);
}

static struct uz_class *handle_class(const struct uz_pool *pool, uz_handle_t h)
{
    assert((h >> 32) < UZ_POOL_NCLASSES && pool->class_of[h >> 32] == (h >> 32));
    return (struct uz_class *)&pool->cls[h >> 32];
}

static uint32_t handle_cell(uz_handle_t h)
{
    assert((uint32_t)h != 0);
    return (uint32_t)h - 1;
}

/* ---- geometry ---------------------------------------------------------------------------- */

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

/* ---- arena ------------------------------------------------------------------------------- */

/* Adds a chunk cut into `pages`-page slots. Under the arena lock. @return : its index or -1. */
static int arena_add_chunk(struct uz_pool *pool, unsigned pages)
{
    if (pool->nchunks == UZ_ARENA_MAX_CHUNKS)
        return -1;
    struct uz_arena_chunk *ch = aligned_alloc(UZ_CACHELINE, sizeof(*ch));
    if (!ch)
        return -1;
    ch->pages = pages;
    ch->nslots = (uint32_t)(UZ_ARENA_CHUNK_BYTES / UZ_PAGE_SIZE / pages);
    ch->bump = 0;
    ch->base = map_anon(UZ_ARENA_CHUNK_BYTES);
    ch->hdr = map_anon(ch->nslots * sizeof(struct uz_zspage));
    if (!ch->base || !ch->hdr) {
        if (ch->base)
            munmap(ch->base, UZ_ARENA_CHUNK_BYTES);
        if (ch->hdr)
            munmap(ch->hdr, ch->nslots * sizeof(struct uz_zspage));
        free(ch);
        return -1;
    }
    unsigned id = pool->nchunks++;
    atomic_store_explicit(&pool->chunks[id], ch, memory_order_release);
    return (int)id;
}

/* A slot from the free list or the bump chunk. Under the arena lock. */
static int arena_take_slot(struct uz_pool *pool, unsigned pages, uint32_t *out)
{
    uint32_t s = pool->free_slot[pages];
    if (s) {
        pool->free_slot[pages] = uz_zspage_of(pool, s - 1)->next_free;
        *out = s - 1;
        return 0;
    }
    uint32_t cur = pool->cur_chunk[pages];
    struct uz_arena_chunk *ch = cur ? uz_arena_chunk(pool, (cur - 1) << UZ_ARENA_SLOT_BITS) : NULL;
    if (!ch || ch->bump == ch->nslots) {
        int id = arena_add_chunk(pool, pages);
        if (id < 0)
            return -ENOMEM;
        cur = pool->cur_chunk[pages] = (uint32_t)id + 1;
        ch = uz_arena_chunk(pool, (uint32_t)id << UZ_ARENA_SLOT_BITS);
    }
    *out = (cur - 1) << UZ_ARENA_SLOT_BITS | ch->bump++;
    return 0;
}

static bool prefault_request(struct uz_pool *pool, uint16_t req);

static int arena_alloc_slot(struct uz_pool *pool, unsigned pages, uint32_t *out)
{
    int rc = 0;
    pthread_mutex_lock(&pool->arena_lock);
    if (pool->reserve[pages]) {
        /* Its first page is resident already; the class counts it from its first object. */
        *out = pool->reserve[pages] - 1;
        pool->reserve[pages] = 0;
        atomic_fetch_sub_explicit(&pool->total_pages, 1, memory_order_relaxed);
    } else {
        rc = arena_take_slot(pool, pages, out);
    }
    if (!rc && atomic_load_explicit(&pool->pf_on, memory_order_relaxed))
        prefault_request(pool, (uint16_t)(UZ_PF_RESERVE | pages));
    pthread_mutex_unlock(&pool->arena_lock);
    return rc;
}

static void arena_free_slot(struct uz_pool *pool, struct uz_zspage *zs)
{
    unsigned pages = uz_arena_chunk(pool, zs->slot)->pages;
    pthread_mutex_lock(&pool->arena_lock);
    zs->live = 0;
    zs->next_free = pool->free_slot[pages];
    pool->free_slot[pages] = zs->slot + 1;
    pthread_mutex_unlock(&pool->arena_lock);
}

/* ---- cells (under the class lock) -------------------------------------------------------- */

static int cell_alloc(struct uz_class *c, uint32_t *out)
{
    if (c->cell_free) {
        uint32_t i = c->cell_free - 1;
        uint64_t v = atomic_load_explicit(uz_cell(c, i), memory_order_relaxed);
        assert(v & UZ_CELL_FREE);
        c->cell_free = (uint32_t)(v & ~UZ_CELL_FREE);
        *out = i;
        return 0;
    }
    uint32_t i = c->cells_hwm;
    if (i >= UZ_CELL_MAX)
        return -ENOMEM;
    uint64_t n = (uint64_t)i + (1u << UZ_CELL_SEG0_SHIFT);
    unsigned k = 63 - (unsigned)__builtin_clzll(n) - UZ_CELL_SEG0_SHIFT;
    if (!atomic_load_explicit(&c->seg[k], memory_order_relaxed)) {
        size_t bytes = seg_bytes(k);
        void *seg = bytes <= UZ_CELL_SEG_MMAP_BYTES ? zalloc_aligned(bytes) : map_anon(bytes);
        if (!seg)
            return -ENOMEM;
        atomic_store_explicit(&c->seg[k], seg, memory_order_release);
    }
    c->cells_hwm++;
    *out = i;
    return 0;
}

static void cell_release(struct uz_class *c, uint32_t i)
{
    atomic_store_explicit(uz_cell(c, i), UZ_CELL_FREE | c->cell_free, memory_order_relaxed);
    c->cell_free = i + 1;
}

/* ---- zspages (under the class lock) ------------------------------------------------------ */

static void list_add(const struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs,
                     unsigned g)
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

static void list_del(struct uz_class *c, struct uz_zspage *zs)
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

static void regroup(const struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    unsigned g = uz_group(zs->inuse, c->objs);
    if (g != zs->group) {
        list_del(c, zs);
        list_add(pool, c, zs, g);
    }
}

/* The fullest non-full zspage, or NULL. */
static struct uz_zspage *pick_fullest(const struct uz_pool *pool, const struct uz_class *c)
{
    if (!c->nonempty)
        return NULL;
    return uz_zspage_of(pool, c->head[31 - __builtin_clz(c->nonempty)] - 1);
}

static struct uz_zspage *zspage_create(struct uz_pool *pool, struct uz_class *c)
{
    uint32_t slot;
    if (arena_alloc_slot(pool, c->pages, &slot))
        return NULL;
    struct uz_zspage *zs = uz_zspage_of(pool, slot);
    uint64_t *meta = zalloc_aligned(c->meta_obj);
    if (!meta) {
        zs->slot = slot;
        arena_free_slot(pool, zs);
        return NULL;
    }
    zs->cls = (uint16_t)c->index;
    zs->inuse = 0;
    zs->hwm = 0;
    zs->touched = 0;
    zs->hint = 0;
    zs->live = 1;
    zs->slot = slot;
    zs->bitmap = meta;
    zs->backref = (uint32_t *)(meta + UZ_DIV_ROUND_UP(c->objs, 64));
    list_add(pool, c, zs, 0);
    c->zspages++;
    return zs;
}

static void ahead_fold(struct uz_class *c, struct uz_zspage *zs);

/* Removes an emptied zspage from its class; zspage_release() must follow, outside the lock. */
static void zspage_detach(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    assert(zs->inuse == 0);
    ahead_fold(c, zs);
    c->zspages--;
    c->pages_used -= zs->touched;
    atomic_fetch_sub_explicit(&pool->total_pages, zs->touched, memory_order_relaxed);
}

static void zspage_release(struct uz_pool *pool, struct uz_zspage *zs)
{
    if (zs->touched)
        madvise(uz_zspage_base(pool, zs->slot), (size_t)zs->touched * UZ_PAGE_SIZE, MADV_DONTNEED);
    free(zs->bitmap);
    zs->bitmap = NULL;
    zs->backref = NULL;
    arena_free_slot(pool, zs);
}

/* ---- prefault ---------------------------------------------------------------------------- */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/*
 * A first write to a fresh page costs a page fault: zeroing and mapping it, several
 * microseconds on a virtual machine, which is as much as compressing a page. With prefault on,
 * when the next object of a zspage will reach past its counted pages, that page is counted at
 * once (honestly: it is about to be resident) and queued to a thread that faults it in with
 * MADV_POPULATE_WRITE while the allocating thread goes on. One page per class at most.
 */
static void prefault_next(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    if (!atomic_load_explicit(&pool->pf_on, memory_order_relaxed) ||
        atomic_load_explicit(&pool->pf_paused, memory_order_relaxed) || c->ahead_slot ||
        zs->touched >= c->pages || zs->hwm >= c->objs ||
        (size_t)(zs->hwm + 1) * c->size <= (size_t)zs->touched * UZ_PAGE_SIZE)
        return;
    if (!prefault_request(pool, (uint16_t)c->index))
        return;
    c->ahead_slot = zs->slot + 1;
    c->ahead_page = zs->touched;
    c->ahead_done = 0;
    c->pages_used++;
    atomic_fetch_add_explicit(&pool->total_pages, 1, memory_order_relaxed);
}

/* Queues a request (a class index, or UZ_PF_RESERVE | page count). pf_lock is a leaf lock.
 * @return : false when the queue is full (the request is dropped). */
static bool prefault_request(struct uz_pool *pool, uint16_t req)
{
    pthread_mutex_lock(&pool->pf_lock);
    bool queued = pool->pf_head - pool->pf_tail < UZ_PF_RING;
    if (queued) {
        pool->pf_ring[pool->pf_head++ % UZ_PF_RING] = req;
        pthread_cond_signal(&pool->pf_cond);
    }
    pthread_mutex_unlock(&pool->pf_lock);
    return queued;
}

/* Gives the next new zspage of `pages` pages a slot whose first page is already resident. */
static void prefault_reserve(struct uz_pool *pool, unsigned pages)
{
    pthread_mutex_lock(&pool->arena_lock);
    uint32_t slot;
    if (!pool->reserve[pages] && atomic_load_explicit(&pool->pf_on, memory_order_relaxed) &&
        !arena_take_slot(pool, pages, &slot)) {
        madvise(uz_zspage_base(pool, slot), UZ_PAGE_SIZE, MADV_POPULATE_WRITE);
        pool->reserve[pages] = slot + 1;
        atomic_fetch_add_explicit(&pool->total_pages, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&pool->arena_lock);
}

/* Hands a class's ahead page to zspage `zs` for release or trimming: it becomes an ordinary
 * counted page (touched) so that whoever gives back touched pages gives it back too. */
static void ahead_fold(struct uz_class *c, struct uz_zspage *zs)
{
    if (c->ahead_slot == zs->slot + 1) {
        c->ahead_slot = 0;
        zs->touched++;
    }
}

/* Stands aside for UZ_PF_PAUSE_MS (or until stopped). Called with pf_lock held. */
static void prefault_pause(struct uz_pool *pool)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += UZ_PF_PAUSE_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    atomic_store_explicit(&pool->pf_paused, true, memory_order_relaxed);
    while (!pool->pf_stop && pthread_cond_timedwait(&pool->pf_cond, &pool->pf_lock, &until) == 0)
        ;
    atomic_store_explicit(&pool->pf_paused, false, memory_order_relaxed);
}

/*
 * The prefault thread. It only pays off on a core the writers leave idle: when the writers keep
 * every core busy, it runs late (the writer has reached the page, and faulted it in itself,
 * before the thread got to it) and its wake-ups are pure overhead. So it keeps score, and when
 * most of a sample of requests came too late it stops asking for ahead pages for a while.
 */
static void *prefault_main(void *arg)
{
    struct uz_pool *pool = arg;
    unsigned seen = 0, late = 0;
    pthread_mutex_lock(&pool->pf_lock);
    for (;;) {
        while (pool->pf_head == pool->pf_tail && !pool->pf_stop)
            pthread_cond_wait(&pool->pf_cond, &pool->pf_lock);
        if (pool->pf_head == pool->pf_tail)
            break;
        uint16_t req = pool->pf_ring[pool->pf_tail++ % UZ_PF_RING];
        pthread_mutex_unlock(&pool->pf_lock);
        if (req & UZ_PF_RESERVE) {
            prefault_reserve(pool, req & 0xff);
            pthread_mutex_lock(&pool->pf_lock);
            continue;
        }
        struct uz_class *c = &pool->cls[req];
        /* Under the class lock, so the page cannot be given back (MADV_DONTNEED) meanwhile
         * and be left resident but uncounted. */
        uz_spin_lock(&c->lock);
        if (c->ahead_slot && !c->ahead_done) {
            madvise(uz_zspage_base(pool, c->ahead_slot - 1) + (size_t)c->ahead_page * UZ_PAGE_SIZE,
                    UZ_PAGE_SIZE, MADV_POPULATE_WRITE);
            c->ahead_done = 1;
        } else {
            late++;
        }
        uz_spin_unlock(&c->lock);
        pthread_mutex_lock(&pool->pf_lock);
        if (++seen == UZ_PF_SAMPLE) {
            if (late * 2 > seen)
                prefault_pause(pool);
            seen = late = 0;
        }
    }
    pthread_mutex_unlock(&pool->pf_lock);
    return NULL;
}

int uz_pool_prefault(struct uz_pool *pool, bool on)
{
    if (!pool)
        return -EINVAL;
    if (on && !pool->pf_running) {
        pool->pf_stop = false;
        int rc = pthread_create(&pool->pf_thread, NULL, prefault_main, pool);
        if (rc)
            return -rc;
        pool->pf_running = true;
        atomic_store(&pool->pf_on, true);
    } else if (!on && pool->pf_running) {
        atomic_store(&pool->pf_on, false);
        pthread_mutex_lock(&pool->pf_lock);
        pool->pf_stop = true; /* the thread drains what is queued, then exits */
        pthread_cond_signal(&pool->pf_cond);
        pthread_mutex_unlock(&pool->pf_lock);
        pthread_join(pool->pf_thread, NULL);
        pool->pf_running = false;
        pthread_mutex_lock(&pool->arena_lock);
        for (unsigned p = 1; p <= UZ_POOL_MAX_ZSPAGE_PAGES; p++) {
            uint32_t r = pool->reserve[p];
            if (!r)
                continue;
            pool->reserve[p] = 0;
            madvise(uz_zspage_base(pool, r - 1), UZ_PAGE_SIZE, MADV_DONTNEED);
            struct uz_zspage *zs = uz_zspage_of(pool, r - 1);
            zs->slot = r - 1;
            zs->live = 0;
            zs->next_free = pool->free_slot[p];
            pool->free_slot[p] = r;
            atomic_fetch_sub_explicit(&pool->total_pages, 1, memory_order_relaxed);
        }
        pthread_mutex_unlock(&pool->arena_lock);
    }
    return 0;
}

/* Places the object of `cell` at the lowest free index of a non-full zspage; counts newly
 * spanned pages. The caller regroups. @return : the index. */
static unsigned obj_take(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs,
                         uint32_t cell)
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
            unsigned d = t - zs->touched;
            if (c->ahead_slot == zs->slot + 1) {
                c->ahead_slot = 0; /* the first new page was counted ahead: it is ours now */
                d--;
            }
            zs->touched = (uint8_t)t;
            c->pages_used += d;
            atomic_fetch_add_explicit(&pool->total_pages, d, memory_order_relaxed);
        }
        prefault_next(pool, c, zs);
    }
    return idx;
}

static void obj_put(struct uz_class *c, struct uz_zspage *zs, unsigned idx)
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

int uz_pool_create(struct uz_pool **out)
{
    struct uz_pool *pool;
    if (posix_memalign((void **)&pool, UZ_CACHELINE, sizeof(*pool)))
        return -ENOMEM;
    memset(pool, 0, sizeof(*pool));
    pool->chunks = map_anon(UZ_ARENA_MAX_CHUNKS * sizeof(*pool->chunks));
    if (!pool->chunks) {
        free(pool);
        return -ENOMEM;
    }
    pthread_mutex_init(&pool->pf_lock, NULL);
    pthread_cond_init(&pool->pf_cond, NULL);
    if (pthread_mutex_init(&pool->arena_lock, NULL)) {
        munmap(pool->chunks, UZ_ARENA_MAX_CHUNKS * sizeof(*pool->chunks));
        free(pool);
        return -ENOMEM;
    }
    /* Merge runs of equal geometry into their largest class, from the top as zsmalloc does. */
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
    *out = pool;
    return 0;
}

void uz_pool_destroy(struct uz_pool *pool)
{
    if (!pool)
        return;
    uz_pool_prefault(pool, false);
    pthread_mutex_destroy(&pool->pf_lock);
    pthread_cond_destroy(&pool->pf_cond);
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++) {
        struct uz_class *c = &pool->cls[i];
        if (pool->class_of[i] != i)
            continue;
        for (unsigned g = 0; g < UZ_POOL_NGROUPS; g++)
            for (struct uz_zspage *zs = uz_class_first(pool, c, g); zs; zs = zs->next)
                free(zs->bitmap);
        for (unsigned k = 0; k < UZ_CELL_SEGS; k++) {
            void *seg = atomic_load_explicit(&c->seg[k], memory_order_relaxed);
            if (!seg)
                continue;
            if (seg_bytes(k) <= UZ_CELL_SEG_MMAP_BYTES)
                free(seg);
            else
                munmap(seg, seg_bytes(k));
        }
    }
    for (unsigned i = 0; i < pool->nchunks; i++) {
        struct uz_arena_chunk *ch = atomic_load_explicit(&pool->chunks[i], memory_order_relaxed);
        munmap(ch->base, UZ_ARENA_CHUNK_BYTES);
        munmap(ch->hdr, ch->nslots * sizeof(struct uz_zspage));
        free(ch);
    }
    munmap(pool->chunks, UZ_ARENA_MAX_CHUNKS * sizeof(*pool->chunks));
    pthread_mutex_destroy(&pool->arena_lock);
    free(pool);
}

int uz_pool_malloc(struct uz_pool *pool, size_t size, uz_handle_t *out)
{
    if (UZ_UNLIKELY(size == 0 || size > UZ_POOL_MAX_ALLOC))
        return -EINVAL;
    struct uz_class *c = &pool->cls[pool->class_of[size_index(size)]];
    uint32_t cell;
    uz_spin_lock(&c->lock);
    if (UZ_UNLIKELY(cell_alloc(c, &cell)))
        goto nomem;
    struct uz_zspage *zs = pick_fullest(pool, c);
    if (UZ_UNLIKELY(!zs) && !(zs = zspage_create(pool, c))) {
        cell_release(c, cell);
        goto nomem;
    }
    unsigned idx = obj_take(pool, c, zs, cell);
    regroup(pool, c, zs);
    atomic_store_explicit(uz_cell(c, cell), uz_loc(zs->slot, idx), memory_order_release);
    uz_spin_unlock(&c->lock);
    *out = (uint64_t)c->index << 32 | (cell + 1);
    return 0;
nomem:
    uz_spin_unlock(&c->lock);
    return -ENOMEM;
}

void uz_pool_free(struct uz_pool *pool, uz_handle_t handle)
{
    if (!handle)
        return;
    struct uz_class *c = handle_class(pool, handle);
    uint32_t cell = handle_cell(handle);
    uz_spin_lock(&c->lock);
    assert(cell < c->cells_hwm);
    uint64_t e = atomic_load_explicit(uz_cell(c, cell), memory_order_relaxed);
    assert(!(e & UZ_CELL_FREE));
    struct uz_zspage *zs = uz_zspage_of(pool, uz_loc_slot(e));
    obj_put(c, zs, uz_loc_idx(e));
    cell_release(c, cell);
    if (zs->inuse) {
        regroup(pool, c, zs);
        uz_spin_unlock(&c->lock);
        return;
    }
    list_del(c, zs);
    zspage_detach(pool, c, zs);
    uz_spin_unlock(&c->lock);
    zspage_release(pool, zs);
}

void *uz_pool_map(struct uz_pool *pool, uz_handle_t handle)
{
    struct uz_class *c = handle_class(pool, handle);
    _Atomic uint64_t *cp = uz_cell(c, handle_cell(handle));
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
        uz_backoff(&spins);
    }
}

void uz_pool_unmap(struct uz_pool *pool, uz_handle_t handle)
{
    struct uz_class *c = handle_class(pool, handle);
    /* The object cannot move while its zspage is pinned, so the cell is stable. */
    uint64_t e = atomic_load_explicit(uz_cell(c, handle_cell(handle)), memory_order_relaxed);
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

size_t uz_pool_class_size(const struct uz_pool *pool, size_t size)
{
    if (size == 0 || size > UZ_POOL_MAX_ALLOC)
        return 0;
    return pool->cls[pool->class_of[size_index(size)]].size;
}

size_t uz_pool_huge_size(const struct uz_pool *pool)
{
    return pool->huge_size;
}

uint64_t uz_pool_total_pages(const struct uz_pool *pool)
{
    return atomic_load_explicit(&pool->total_pages, memory_order_relaxed);
}

/* ---- compaction -------------------------------------------------------------------------- */

/* The fewest pages the class's objects could span: full zspages, then one packed from 0. */
static uint64_t ideal_pages(const struct uz_class *c)
{
    return c->obj_used / c->objs * c->pages + uz_touched(c->obj_used % c->objs, c->size);
}

/* Freezes the sparsest zspage nobody has mapped, or returns NULL. */
static struct uz_zspage *freeze_sparsest(const struct uz_pool *pool, struct uz_class *c)
{
    for (unsigned g = 0; g < UZ_POOL_FULL_GROUP; g++) {
        for (struct uz_zspage *zs = uz_class_first(pool, c, g); zs; zs = zs->next) {
            int zero = 0;
            /* acquire: see what mappers wrote before their unmap */
            if (atomic_compare_exchange_strong_explicit(&zs->pins, &zero, UZ_ZS_FROZEN,
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
    unsigned j = obj_take(pool, c, dst, cell);
    memcpy(uz_zspage_base(pool, dst->slot) + (size_t)j * c->size,
           uz_zspage_base(pool, src->slot) + (size_t)i * c->size, c->size);
    /* release: a mapper that sees the new location sees the copied bytes */
    atomic_store_explicit(uz_cell(c, cell), uz_loc(dst->slot, j), memory_order_release);
    obj_put(c, src, i);
}

/* Gives back the pages above the last live object of a non-empty zspage. */
static void trim_zspage(struct uz_pool *pool, struct uz_class *c, struct uz_zspage *zs)
{
    unsigned hwm = highest_set(zs) + 1, t = uz_touched(hwm, c->size);
    zs->hwm = (uint16_t)hwm;
    ahead_fold(c, zs);
    if (t < zs->touched) {
        unsigned d = zs->touched - t;
        madvise(uz_zspage_base(pool, zs->slot) + (size_t)t * UZ_PAGE_SIZE, (size_t)d * UZ_PAGE_SIZE,
                MADV_DONTNEED);
        zs->touched = (uint8_t)t;
        c->pages_used -= d;
        atomic_fetch_sub_explicit(&pool->total_pages, d, memory_order_relaxed);
    }
}

/*
 * One round under the class lock: freeze the sparsest unmapped zspage; move its highest objects
 * into the fullest other non-full zspage until one of them is full or empty, or, when it is the
 * only non-full zspage, into its own lowest holes; then trim it, or free it when emptied.
 * Each round removes a non-full zspage or packs the last one, so the class ends at its ideal
 * page count unless mapped zspages stand in the way.
 * @return : true to go on; *victim is an emptied zspage to release after unlocking.
 */
static bool compact_round(struct uz_pool *pool, struct uz_class *c, struct uz_zspage **victim)
{
    struct uz_zspage *src = freeze_sparsest(pool, c);
    if (!src)
        return false;
    list_del(c, src);
    struct uz_zspage *dst = pick_fullest(pool, c);
    if (dst) {
        while (src->inuse && dst->inuse < c->objs)
            move_object(pool, c, src, highest_set(src), dst);
        regroup(pool, c, dst);
    } else {
        for (unsigned i; (i = highest_set(src)) >= src->inuse;)
            move_object(pool, c, src, i, src);
    }
    atomic_fetch_sub_explicit(&src->pins, UZ_ZS_FROZEN, memory_order_release);
    if (!src->inuse) {
        zspage_detach(pool, c, src);
        *victim = src;
    } else {
        trim_zspage(pool, c, src);
        list_add(pool, c, src, uz_group(src->inuse, c->objs));
    }
    return dst != NULL;
}

static long compact_class(struct uz_pool *pool, struct uz_class *c)
{
    long freed = 0;
    for (bool more = true; more;) {
        struct uz_zspage *victim = NULL;
        uz_spin_lock(&c->lock);
        uint64_t before = c->pages_used;
        if (before > ideal_pages(c))
            more = compact_round(pool, c, &victim);
        else
            more = false;
        if (!more) {
            for (unsigned g = 0; g < UZ_POOL_FULL_GROUP; g++)
                for (struct uz_zspage *zs = uz_class_first(pool, c, g); zs; zs = zs->next)
                    trim_zspage(pool, c, zs);
        }
        freed += (long)(before - c->pages_used);
        uz_spin_unlock(&c->lock);
        if (victim)
            zspage_release(pool, victim);
    }
    return freed;
}

long uz_pool_compact(struct uz_pool *pool)
{
    long freed = 0;
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++)
        if (pool->class_of[i] == i)
            freed += compact_class(pool, &pool->cls[i]);
    if (freed < 0)
        freed = 0;
    atomic_fetch_add_explicit(&pool->pages_compacted, (uint64_t)freed, memory_order_relaxed);
    return freed;
}

/* ---- statistics -------------------------------------------------------------------------- */

static void class_row(struct uz_class *c, struct uz_pool_class_stat *r)
{
    memset(r, 0, sizeof(*r));
    r->index = c->index;
    r->size = c->size;
    r->pages_per_zspage = c->pages;
    r->objs_per_zspage = c->objs;
    uz_spin_lock(&c->lock);
    r->zspages = c->zspages;
    r->obj_allocated = c->zspages * c->objs;
    r->obj_used = c->obj_used;
    r->pages_used = c->pages_used;
    for (unsigned g = 0; g < UZ_POOL_NGROUPS; g++)
        r->fullness[g] = c->nzs[g];
    r->freeable = c->pages_used - ideal_pages(c);
    uz_spin_unlock(&c->lock);
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

/* Cell memory of a class: heap segments whole, mmap'd ones by the pages its cells reach. */
static uint64_t cell_bytes(const struct uz_class *c, uint32_t hwm)
{
    uint64_t b = 0;
    for (unsigned k = 0; k < UZ_CELL_SEGS; k++) {
        if (!atomic_load_explicit(&c->seg[k], memory_order_relaxed))
            break;
        uint64_t first = ((uint64_t)1 << (k + UZ_CELL_SEG0_SHIFT)) - (1u << UZ_CELL_SEG0_SHIFT);
        uint64_t used = hwm > first ? hwm - first : 0;
        if (used > seg_bytes(k) / sizeof(uint64_t))
            used = seg_bytes(k) / sizeof(uint64_t);
        b += seg_bytes(k) <= UZ_CELL_SEG_MMAP_BYTES ? seg_bytes(k)
                                                    : page_round(used * sizeof(uint64_t));
    }
    return b;
}

int uz_pool_stats(struct uz_pool *pool, struct uz_pool_stat *st)
{
    memset(st, 0, sizeof(*st));
    uint64_t meta = sizeof(*pool);
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++) {
        struct uz_class *c = &pool->cls[i];
        if (pool->class_of[i] != i)
            continue;
        uz_spin_lock(&c->lock);
        st->objects += c->obj_used;
        st->obj_bytes += (uint64_t)c->obj_used * c->size;
        st->zspages += c->zspages;
        meta += c->zspages * c->meta_obj + cell_bytes(c, c->cells_hwm);
        uz_spin_unlock(&c->lock);
    }
    pthread_mutex_lock(&pool->arena_lock);
    meta += page_round(pool->nchunks * sizeof(*pool->chunks));
    for (unsigned i = 0; i < pool->nchunks; i++) {
        const struct uz_arena_chunk *ch =
            atomic_load_explicit(&pool->chunks[i], memory_order_relaxed);
        meta += sizeof(*ch) + page_round(ch->bump * sizeof(struct uz_zspage));
    }
    pthread_mutex_unlock(&pool->arena_lock);
    st->meta_bytes = meta;
    st->total_pages = uz_pool_total_pages(pool);
    st->pages_compacted = atomic_load_explicit(&pool->pages_compacted, memory_order_relaxed);
    return 0;
}
