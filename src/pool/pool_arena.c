// SPDX-License-Identifier: MIT
/*
 * pool_arena.c - where zspages live: 64 MiB chunks of reserved address space, one page count
 * per chunk, cut into slots handed out by a bump index and recycled through per-page-count
 * lists, plus a small cache of freed zspages that keep their pages.
 *
 * A zspage emptied by a free or by compaction is detached by its class (its pages stay counted,
 * in in_flight) and handed here with no class lock held: while the cache holds fewer than
 * UZ_POOL_CACHE_PAGES pages it keeps the zspage with its resident pages, so churn (a page
 * rewritten, its old object freed, a new one allocated) does not pay MADV_DONTNEED and fresh
 * page faults again; otherwise its pages are uncounted and then given back with MADV_DONTNEED,
 * and only after that its slot goes on the free list (a new owner never sees them zeroed under
 * its objects). A class needing a zspage takes a cached one first, while the pool's batch
 * pages (ahead) have room for its pages, then a free slot, then a new one.
 *
 * Bulk frees (a writeback emptying thousands of zspages) pay one MADV_DONTNEED, and so one TLB
 * shootdown, per zspage: about 15 ms of a 55 ms writeback of 64 MiB. Between uz_pool_hold() and
 * uz_pool_unhold(), emptied zspages that the cache cannot take are held instead, their pages
 * still counted (held_pages), and given back together, every UZ_POOL_HELD_MAX zspages and at
 * the unhold: uncounted, released with one process_madvise() per UIO_MAXIOV ranges (Linux 6.18
 * batches the TLB flush over its ranges: 1024 scattered 16 KiB ranges in 1.6-1.9 ms against
 * 6.3-8.3 ms for 1024 madvise calls here), then put on the free lists. madvise() per range
 * when process_madvise() is refused.
 *
 * Every function here runs with no class lock held and takes the arena lock (a mutex: mmap may
 * block under it) only around the lists and counters.
 */
#include "pool_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define UZ_POOL_HELD_MAX 1024u /* held zspages given back at once */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Address space whose pages the pool populates as it needs them, and gives back with
 * MADV_DONTNEED: never populated nor locked by mlockall(MCL_FUTURE), which would make each
 * 64 MiB chunk resident at once and refuse the MADV_DONTNEED. */
void *uz_arena_map_anon(size_t bytes)
{
    void *p = uz_map_unlocked(bytes, MAP_NORESERVE);
    if (!p)
        return NULL;
    madvise(p, bytes, MADV_NOHUGEPAGE); /* THP would make untouched pages resident */
    return p;
}

/* Zeroed, on cache lines of its own: bitmaps and cells of different classes never share one. */
void *uz_arena_zalloc(size_t bytes)
{
    bytes = UZ_DIV_ROUND_UP(bytes, UZ_CACHELINE) * UZ_CACHELINE;
    void *p = aligned_alloc(UZ_CACHELINE, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void uz_arena_populate(void *addr, size_t len)
{
    madvise(addr, len, MADV_POPULATE_WRITE);
}

void uz_arena_release(void *addr, size_t len)
{
    madvise(addr, len, MADV_DONTNEED);
}

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
    ch->base = uz_arena_map_anon(UZ_ARENA_CHUNK_BYTES);
    ch->hdr = uz_arena_map_anon(ch->nslots * sizeof(struct uz_zspage));
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

/* A slot with no resident page, from the free list or the bump chunk. Under the arena lock. */
static struct uz_zspage *arena_take_slot(struct uz_pool *pool, unsigned pages)
{
    uint32_t s = pool->free_slot[pages];
    if (s) {
        struct uz_zspage *zs = uz_zspage_of(pool, s - 1);
        pool->free_slot[pages] = zs->next_free;
        return zs;
    }
    uint32_t cur = pool->cur_chunk[pages];
    struct uz_arena_chunk *ch = cur ? uz_arena_chunk(pool, (cur - 1) << UZ_ARENA_SLOT_BITS) : NULL;
    if (!ch || ch->bump == ch->nslots) {
        int id = arena_add_chunk(pool, pages);
        if (id < 0)
            return NULL;
        cur = pool->cur_chunk[pages] = (uint32_t)id + 1;
        ch = uz_arena_chunk(pool, (uint32_t)id << UZ_ARENA_SLOT_BITS);
    }
    uint32_t slot = (cur - 1) << UZ_ARENA_SLOT_BITS | ch->bump++;
    struct uz_zspage *zs = &ch->hdr[slot & UZ_ARENA_SLOT_MASK];
    zs->slot = slot;
    return zs;
}

bool uz_ahead_reserve(struct uz_pool *pool, unsigned n, unsigned max)
{
    uint64_t cur = atomic_load_explicit(&pool->ahead, memory_order_relaxed);
    do {
        if (cur + n > max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&pool->ahead, &cur, cur + n,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

/* The cached zspage of `pages` pages if ahead has room for its pages. Under the arena lock. */
static struct uz_zspage *cache_take(struct uz_pool *pool, unsigned pages)
{
    uint32_t s = pool->cache[pages];
    if (!s)
        return NULL;
    struct uz_zspage *zs = uz_zspage_of(pool, s - 1);
    if (!uz_ahead_reserve(pool, zs->resident, UZ_POOL_AHEAD_MAX))
        return NULL;
    pool->cache[pages] = zs->next_free;
    pool->cache_pages -= zs->resident;
    atomic_fetch_add_explicit(&pool->reserved, zs->resident, memory_order_relaxed);
    return zs;
}

int uz_zspage_get(struct uz_pool *pool, struct uz_class *c, struct uz_zspage **out)
{
    pthread_mutex_lock(&pool->arena_lock);
    struct uz_zspage *zs = cache_take(pool, c->pages);
    if (!zs && (zs = arena_take_slot(pool, c->pages)))
        zs->resident = 0;
    pthread_mutex_unlock(&pool->arena_lock);
    if (!zs)
        return -ENOMEM;
    /* Outside every lock: the metadata's allocation and the header's first touch. */
    uint64_t *meta = uz_arena_zalloc(c->meta_obj);
    if (!meta) {
        zs->bitmap = NULL;
        uz_zspage_put(pool, zs, UZ_PUT_RESERVED);
        return -ENOMEM;
    }
    zs->cls = (uint16_t)c->index;
    zs->inuse = 0;
    zs->hwm = 0;
    zs->touched = 0;
    zs->hint = 0;
    zs->live = 0;
    atomic_store_explicit(&zs->filling, 0, memory_order_relaxed);
    zs->bitmap = meta;
    zs->backref = (uint32_t *)(meta + UZ_DIV_ROUND_UP(c->objs, 64));
    *out = zs;
    return 0;
}

/* Appends a slot to the held list, under the arena lock. false: no memory for it. */
static bool held_push(struct uz_pool *pool, uint32_t slot)
{
    if (pool->nheld == pool->held_cap) {
        uint32_t cap = pool->held_cap ? pool->held_cap * 2 : 64;
        uint32_t *v = realloc(pool->held, cap * sizeof(*v));
        if (!v)
            return false;
        pool->held = v;
        pool->held_cap = cap;
    }
    pool->held[pool->nheld++] = slot;
    return true;
}

/* Gives back `n` address ranges: one process_madvise() per UIO_MAXIOV of them, or madvise()
 * each when that is refused (an old kernel, a seccomp filter, no pidfd). */
static void release_ranges(struct iovec *iov, size_t n)
{
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    for (size_t at = 0; at < n;) {
        size_t k = n - at < UIO_MAXIOV ? n - at : UIO_MAXIOV;
        size_t want = 0;
        for (size_t j = 0; j < k; j++)
            want += iov[at + j].iov_len;
        long done =
            pidfd >= 0 ? syscall(SYS_process_madvise, pidfd, iov + at, k, MADV_DONTNEED, 0) : -1;
        if (done != (long)want) /* refused, or stopped part-way: the rest one by one */
            for (size_t j = 0; j < k; j++)
                uz_arena_release(iov[at + j].iov_base, iov[at + j].iov_len);
        at += k;
    }
    if (pidfd >= 0)
        close(pidfd);
}

void uz_arena_held_flush(struct uz_pool *pool)
{
    pthread_mutex_lock(&pool->arena_lock);
    uint32_t *slots = pool->held, n = pool->nheld;
    uint64_t pages = pool->held_pages;
    pool->held = NULL;
    pool->nheld = pool->held_cap = 0;
    pool->held_pages = 0;
    /* Uncounted first, then given back, then reusable (as uz_zspage_put()). */
    atomic_fetch_sub_explicit(&pool->total_pages, pages, memory_order_relaxed);
    pthread_mutex_unlock(&pool->arena_lock);
    if (!n) {
        free(slots);
        return;
    }
    struct iovec *iov = malloc(n * sizeof(*iov));
    size_t nio = 0;
    for (uint32_t k = 0; k < n; k++) {
        struct uz_zspage *zs = uz_zspage_of(pool, slots[k]);
        void *base = uz_zspage_base(pool, zs->slot);
        size_t len = (size_t)zs->resident * UZ_PAGE_SIZE;
        if (!iov)
            uz_arena_release(base, len);
        else if (nio && (char *)iov[nio - 1].iov_base + iov[nio - 1].iov_len == (char *)base)
            iov[nio - 1].iov_len += len; /* neighbours in a chunk: one range */
        else
            iov[nio++] = (struct iovec){.iov_base = base, .iov_len = len};
    }
    if (iov)
        release_ranges(iov, nio);
    free(iov);
    pthread_mutex_lock(&pool->arena_lock);
    for (uint32_t k = 0; k < n; k++) {
        struct uz_zspage *zs = uz_zspage_of(pool, slots[k]);
        unsigned p = uz_arena_chunk(pool, zs->slot)->pages;
        zs->resident = 0;
        zs->next_free = pool->free_slot[p];
        pool->free_slot[p] = zs->slot + 1;
    }
    pthread_mutex_unlock(&pool->arena_lock);
    free(slots);
}

void uz_pool_hold(struct uz_pool *pool)
{
    atomic_fetch_add_explicit(&pool->hold, 1, memory_order_relaxed);
}

void uz_pool_unhold(struct uz_pool *pool)
{
    if (atomic_fetch_sub_explicit(&pool->hold, 1, memory_order_acq_rel) == 1)
        uz_arena_held_flush(pool);
}

void uz_zspage_put(struct uz_pool *pool, struct uz_zspage *zs, unsigned how)
{
    unsigned pages = uz_arena_chunk(pool, zs->slot)->pages, r = zs->resident;
    bool reserved = how & UZ_PUT_RESERVED;
    _Atomic uint64_t *from = reserved ? &pool->reserved : &pool->in_flight;
    free(zs->bitmap);
    zs->bitmap = NULL;
    zs->backref = NULL;
    pthread_mutex_lock(&pool->arena_lock);
    if (reserved)
        atomic_fetch_sub_explicit(&pool->ahead, r, memory_order_relaxed);
    if (r && !(how & (UZ_PUT_RELEASE | UZ_PUT_NOCACHE)) &&
        pool->cache_pages + r <= UZ_POOL_CACHE_PAGES) {
        zs->next_free = pool->cache[pages];
        pool->cache[pages] = zs->slot + 1;
        pool->cache_pages += r;
        atomic_fetch_sub_explicit(from, r, memory_order_relaxed);
        pthread_mutex_unlock(&pool->arena_lock);
        return;
    }
    if (r && !(how & UZ_PUT_RELEASE) && atomic_load_explicit(&pool->hold, memory_order_relaxed) &&
        held_push(pool, zs->slot)) {
        pool->held_pages += r;
        atomic_fetch_sub_explicit(from, r, memory_order_relaxed);
        bool full = pool->nheld >= UZ_POOL_HELD_MAX;
        pthread_mutex_unlock(&pool->arena_lock);
        /* Full, or the holder let go meanwhile (its flush may have run before this push). */
        if (full || !atomic_load_explicit(&pool->hold, memory_order_acquire))
            uz_arena_held_flush(pool);
        return;
    }
    /* Uncounted first, then given back, then reusable: never resident and uncounted for long,
     * never zeroed under a new owner's objects. */
    atomic_fetch_sub_explicit(from, r, memory_order_relaxed);
    atomic_fetch_sub_explicit(&pool->total_pages, r, memory_order_relaxed);
    pthread_mutex_unlock(&pool->arena_lock);
    if (r)
        uz_arena_release(uz_zspage_base(pool, zs->slot), (size_t)r * UZ_PAGE_SIZE);
    zs->resident = 0;
    pthread_mutex_lock(&pool->arena_lock);
    zs->next_free = pool->free_slot[pages];
    pool->free_slot[pages] = zs->slot + 1;
    pthread_mutex_unlock(&pool->arena_lock);
}

long uz_arena_cache_drain(struct uz_pool *pool)
{
    long freed = 0;
    for (unsigned p = 1; p <= UZ_POOL_MAX_ZSPAGE_PAGES; p++) {
        for (;;) {
            pthread_mutex_lock(&pool->arena_lock);
            uint32_t s = pool->cache[p];
            struct uz_zspage *zs = s ? uz_zspage_of(pool, s - 1) : NULL;
            if (zs) {
                pool->cache[p] = zs->next_free;
                pool->cache_pages -= zs->resident;
                atomic_fetch_add_explicit(&pool->in_flight, zs->resident, memory_order_relaxed);
            }
            pthread_mutex_unlock(&pool->arena_lock);
            if (!zs)
                break;
            freed += zs->resident;
            uz_zspage_put(pool, zs, UZ_PUT_RELEASE);
        }
    }
    return freed;
}

void uz_arena_destroy(struct uz_pool *pool)
{
    for (unsigned i = 0; i < pool->nchunks; i++) {
        struct uz_arena_chunk *ch = atomic_load_explicit(&pool->chunks[i], memory_order_relaxed);
        munmap(ch->base, UZ_ARENA_CHUNK_BYTES);
        munmap(ch->hdr, ch->nslots * sizeof(struct uz_zspage));
        free(ch);
    }
}
