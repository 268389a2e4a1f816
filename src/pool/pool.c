// SPDX-License-Identifier: MIT
/*
 * pool.c - the pool's lifecycle and its class lock.
 *
 * uz_pool_create() lays out the classes (pool_geometry.c) and reserves the chunk table; the
 * arena (pool_arena.c) grows on demand. uz_pool_destroy() returns everything at once: the
 * chunks' address space, the zspages' metadata and the cell segments.
 *
 * The class lock (struct uz_plock) is a futex lock: uncontended it is one CAS to take and one
 * exchange to drop, like a spinlock; contended, it spins about a microsecond and then sleeps,
 * so a holder that blocks (a page fault or madvise in compaction, the checker's long walk)
 * never has other threads burning a core on it.
 */
#include "pool_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UZ_PLOCK_SPINS 128

static void futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    syscall(SYS_futex, addr, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

void uz_plock_lock_slow(struct uz_plock *l)
{
    for (unsigned i = 0; i < UZ_PLOCK_SPINS; i++) {
        uint32_t free = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &free, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        uz_cpu_relax();
    }
    /* Mark the lock contended; whoever held it wakes one sleeper when it drops it. */
    while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
        futex(&l->v, FUTEX_WAIT, 2);
}

void uz_plock_wake(struct uz_plock *l)
{
    futex(&l->v, FUTEX_WAKE, 1);
}

int uz_pool_create(struct uz_pool **out)
{
    struct uz_pool *pool;
    if (posix_memalign((void **)&pool, UZ_CACHELINE, sizeof(*pool)))
        return -ENOMEM;
    memset(pool, 0, sizeof(*pool));
    pool->chunks = uz_arena_map_anon(UZ_ARENA_MAX_CHUNKS * sizeof(*pool->chunks));
    if (!pool->chunks) {
        free(pool);
        return -ENOMEM;
    }
    if (pthread_mutex_init(&pool->arena_lock, NULL)) {
        munmap(pool->chunks, UZ_ARENA_MAX_CHUNKS * sizeof(*pool->chunks));
        free(pool);
        return -ENOMEM;
    }
    uz_pool_geometry_init(pool);
    *out = pool;
    return 0;
}

void uz_pool_destroy(struct uz_pool *pool)
{
    if (!pool)
        return;
    for (unsigned i = 0; i < UZ_POOL_NCLASSES; i++) {
        struct uz_class *c = &pool->cls[i];
        if (pool->class_of[i] != i)
            continue;
        for (unsigned g = 0; g < UZ_POOL_NGROUPS; g++)
            for (struct uz_zspage *zs = uz_class_first(pool, c, g); zs; zs = zs->next)
                free(zs->bitmap);
        uz_cells_destroy(c);
    }
    uz_arena_destroy(pool);
    free(pool->held); /* their pages went with the chunks */
    munmap(pool->chunks, UZ_ARENA_MAX_CHUNKS * sizeof(*pool->chunks));
    pthread_mutex_destroy(&pool->arena_lock);
    free(pool);
}
