/* SPDX-License-Identifier: MIT */
/*
 * util.h - small helpers every module uses: likely/unlikely, cache-line alignment, a stable
 * per-thread slot number, sharded counters (per-thread shards summed on read, so hot-path
 * statistics never bounce a cache line between cores), a test-and-test-and-set spinlock, a
 * "big reader" lock for rare whole-object operations, futex wait/wake, size parsing with
 * K/M/G suffixes, and anonymous memory that mlockall(MCL_FUTURE) leaves alone.
 * Depends on nothing else in the tree.
 */
#ifndef UZ_UTIL_H
#define UZ_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#define UZ_LIKELY(x)          __builtin_expect(!!(x), 1)
#define UZ_UNLIKELY(x)        __builtin_expect(!!(x), 0)
#define UZ_CACHELINE          64
#define UZ_ALIGNED            __attribute__((aligned(UZ_CACHELINE)))
#define UZ_ARRAY_SIZE(a)      (sizeof(a) / sizeof((a)[0]))
#define UZ_DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))
#define UZ_HIDDEN             __attribute__((visibility("hidden")))

/* Number of shards of sharded counters and big-reader locks (a power of two). */
#define UZ_SHARDS 16

/* uz_thread_slot() : a small number fixed for the life of the calling thread, handed out in
 * order of first use (0, 1, 2, ...). Shard index = slot % UZ_SHARDS. */
UZ_HIDDEN unsigned uz_thread_slot(void);

static inline void uz_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Spins briefly, then yields the CPU: for waits that are normally a few hundred nanoseconds but
 * must not burn a core when the holder is descheduled. `*spins` starts at 0. */
UZ_HIDDEN void uz_backoff(unsigned *spins);

/* uz_futex_wait() : sleeps while *word == val (or until woken; spurious wake-ups happen, so
 * callers loop). uz_futex_wake() : wakes up to n sleepers on word. Process-private futexes. */
UZ_HIDDEN void uz_futex_wait(_Atomic uint32_t *word, uint32_t val);
UZ_HIDDEN void uz_futex_wake(_Atomic uint32_t *word, int n);

/* Test-and-test-and-set spinlock for short critical sections. Zero-initialised is unlocked. */
struct uz_spinlock {
    atomic_bool locked;
};
static inline bool uz_spin_trylock(struct uz_spinlock *l)
{
    return !atomic_load_explicit(&l->locked, memory_order_relaxed) &&
           !atomic_exchange_explicit(&l->locked, true, memory_order_acquire);
}
static inline void uz_spin_lock(struct uz_spinlock *l)
{
    unsigned spins = 0;
    while (!uz_spin_trylock(l))
        uz_backoff(&spins);
}
static inline void uz_spin_unlock(struct uz_spinlock *l)
{
    atomic_store_explicit(&l->locked, false, memory_order_release);
}

/* Sharded counter: add on the caller's shard, sum all shards on read (a snapshot that may miss
 * adds racing with it). Zero-initialised is 0. */
struct uz_counter {
    struct {
        _Atomic int64_t v;
        char pad[UZ_CACHELINE - sizeof(int64_t)];
    } shard[UZ_SHARDS];
};
static inline void uz_counter_add(struct uz_counter *c, int64_t n)
{
    atomic_fetch_add_explicit(&c->shard[uz_thread_slot() % UZ_SHARDS].v, n, memory_order_relaxed);
}
UZ_HIDDEN int64_t uz_counter_read(const struct uz_counter *c);
UZ_HIDDEN void uz_counter_reset(struct uz_counter *c);

/* Big-reader lock: readers take the rwlock of their own shard (no shared cache line between
 * threads); a writer takes every shard in order. Lock order: shard 0 .. UZ_SHARDS-1. Writers
 * are preferred, so a thread must not read-lock one brlock twice. Holders may sleep. */
struct uz_brlock {
    struct {
        pthread_rwlock_t l;
    } UZ_ALIGNED shard[UZ_SHARDS];
};
UZ_HIDDEN int uz_brlock_init(struct uz_brlock *b);
UZ_HIDDEN void uz_brlock_destroy(struct uz_brlock *b);
/* Returns the shard to pass to uz_brlock_read_unlock(). */
UZ_HIDDEN unsigned uz_brlock_read_lock(struct uz_brlock *b);
UZ_HIDDEN void uz_brlock_read_unlock(struct uz_brlock *b, unsigned shard);
UZ_HIDDEN void uz_brlock_write_lock(struct uz_brlock *b);
UZ_HIDDEN void uz_brlock_write_unlock(struct uz_brlock *b);

/* uz_parse_size() :
 *  Parses "123", "64K", "512M", "2G", "1T" (binary multiples, optional trailing 'B'/'iB',
 *  surrounding white space and a trailing newline allowed), as the kernel's memparse does.
 *  @return : 0 and *out, or -EINVAL (empty, junk, overflow). */
UZ_HIDDEN int uz_parse_size(const char *s, uint64_t *out);

/* uz_map_unlocked() :
 *  Maps `bytes` of private anonymous memory, read/write, mmap(2) `flags` added (MAP_NORESERVE),
 *  that an earlier mlockall(MCL_FUTURE) neither populates nor locks: memory the library
 *  populates as it needs it (the region and what userfaultfd must find empty, the device's
 *  slot table, the pool's address space). MCL_FUTURE makes every new mapping VM_LOCKED, which
 *  mmap populates whole (or, with MCL_ONFAULT, locks page by page as it is touched). Here it is
 *  mapped PROT_NONE, which the populate skips (get_user_pages refuses an inaccessible mapping),
 *  then unlocked, which clears VM_LOCKED and VM_LOCKONFAULT from it, then made accessible,
 *  which populates only a VM_LOCKED mapping. An unprivileged process under MCL_FUTURE still
 *  needs RLIMIT_MEMLOCK room for `bytes`: the kernel checks it at the mmap (EAGAIN).
 *  @return : the mapping, or NULL with errno set. */
UZ_HIDDEN void *uz_map_unlocked(size_t bytes, int flags);

#endif
