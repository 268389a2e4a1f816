// SPDX-License-Identifier: MIT
/*
 * region_page.c - the page lock, a bit (UZ_PG_LOCK) in each page's 64-bit word.
 *
 * Its holder may block: it decompresses (uz_dev_read_page), discards slots and makes
 * userfaultfd ioctls and madvise calls with the lock held (region_internal.h, lock order 1). So a
 * waiter spins only UZ_PG_LOCK_SPINS times, then sets UZ_PG_WAITERS and sleeps on a futex on
 * the word's low 32 bits (which hold LOCK and WAITERS); the unlock that finds WAITERS wakes
 * every sleeper of that word (contention on one page is between a handful of threads, and a
 * waiter may be one that only waits for the lock to be free, uz_region_pg_settled()). The word
 * with the lock free never has WAITERS set: only a waiter sets it, and only while LOCK is set;
 * the unlock clears both.
 *
 * The unlock also keeps the per-state page counts (r->nstate) that make uz_region_stat() O(1).
 *
 * Also here: the plain copy of a page out of the region, the snapshot's fallback where
 * process_vm_readv is refused (region_sys.c).
 */
#include "region_internal.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint32_t *futex_of(_Atomic uint64_t *p)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)p + 1;
#else
    return (uint32_t *)p;
#endif
}

/* Sleeps while the word's low half is still `seen` (any change, or a spurious wake, returns). */
static void futex_wait(_Atomic uint64_t *p, uint64_t seen)
{
    syscall(SYS_futex, futex_of(p), FUTEX_WAIT_PRIVATE, (uint32_t)seen, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint64_t *p)
{
    syscall(SYS_futex, futex_of(p), FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits for the lock of *p to be free (spin, then sleep). @return : the word seen free. */
static uint64_t wait_free(_Atomic uint64_t *p, unsigned *spins)
{
    for (;;) {
        uint64_t w = atomic_load_explicit(p, memory_order_acquire);
        if (!(w & UZ_PG_LOCK))
            return w;
        if (*spins < UZ_PG_LOCK_SPINS) {
            ++*spins;
            uz_cpu_relax();
            continue;
        }
        if (!(w & UZ_PG_WAITERS) &&
            !atomic_compare_exchange_weak_explicit(p, &w, w | UZ_PG_WAITERS, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        futex_wait(p, w | UZ_PG_WAITERS);
    }
}

uint64_t uz_region_pg_lock(struct uz_region *r, uint64_t i)
{
    _Atomic uint64_t *p = &r->pages[i];
    unsigned spins = 0;
    uint64_t w = atomic_load_explicit(p, memory_order_relaxed);
    for (;;) {
        if (w & UZ_PG_LOCK)
            w = wait_free(p, &spins);
        if (atomic_compare_exchange_weak_explicit(p, &w, w | UZ_PG_LOCK, memory_order_acquire,
                                                  memory_order_relaxed))
            return w | UZ_PG_LOCK;
    }
}

bool uz_region_pg_trylock(struct uz_region *r, uint64_t i, uint64_t *out)
{
    _Atomic uint64_t *p = &r->pages[i];
    uint64_t w = atomic_load_explicit(p, memory_order_relaxed);
    if ((w & UZ_PG_LOCK) || !atomic_compare_exchange_strong_explicit(
                                p, &w, w | UZ_PG_LOCK, memory_order_acquire, memory_order_relaxed))
        return false;
    *out = w | UZ_PG_LOCK;
    return true;
}

void uz_region_pg_unlock(struct uz_region *r, uint64_t i, uint64_t w)
{
    _Atomic uint64_t *p = &r->pages[i];
    uint64_t old =
        atomic_exchange_explicit(p, w & ~(UZ_PG_LOCK | UZ_PG_WAITERS), memory_order_release);
    /* Only the holder changes the state, so `old` has the state the holder found: count the
     * change (uz_region_stat() reads the counts). */
    unsigned from = uz_pg_state(old), to = uz_pg_state(w);
    if (from != to) {
        if (from != UZ_PG_EMPTY)
            uz_counter_add(&r->nstate[from], -1);
        if (to != UZ_PG_EMPTY)
            uz_counter_add(&r->nstate[to], 1);
    }
    if (UZ_UNLIKELY(old & UZ_PG_WAITERS))
        futex_wake_all(p);
}

/* A page's word once its lock is free: a fault thread wakes the faulting thread (by the ioctl
 * that maps or unprotects the page) just before it publishes the new state. */
uint64_t uz_region_pg_settled(struct uz_region *r, uint64_t i)
{
    unsigned spins = 0;
    return wait_free(&r->pages[i], &spins);
}

/*
 * Copies one page out of the region. The page is write-protected, so nobody can change it
 * unseen; but the application's earlier stores to it and this load are ordered by the
 * kernel (the write-protect ioctl), which the thread sanitizer cannot see. The copy is done in
 * assembly where we can, so that no sanitizer instruments it.
 */
#if defined(__x86_64__)
void uz_region_copy_page(void *dst, const void *src)
{
    size_t n = UZ_PAGE_SIZE;
    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}
#else
__attribute__((no_sanitize_thread, no_sanitize_address,
               optimize("no-tree-loop-distribute-patterns"))) void
uz_region_copy_page(void *dst, const void *src)
{
    uint64_t *d = dst;
    const volatile uint64_t *s = src;
    for (size_t i = 0; i < UZ_PAGE_SIZE / 8; i++)
        d[i] = s[i];
}
#endif
