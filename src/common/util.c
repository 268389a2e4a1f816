// SPDX-License-Identifier: MIT
/*
 * util.c - thread slots, backoff, sharded counters, the big-reader lock, size parsing and
 * memory mappings that mlockall(MCL_FUTURE) leaves alone.
 * See util.h for what each is for.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_uint next_slot;
static __thread unsigned my_slot = UINT32_MAX;

unsigned uz_thread_slot(void)
{
    if (UZ_UNLIKELY(my_slot == UINT32_MAX))
        my_slot = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) & 0x7fffffff;
    return my_slot;
}

void uz_backoff(unsigned *spins)
{
    if (*spins < 64) {
        for (unsigned i = 0; i < (1u << (*spins / 16)); i++)
            uz_cpu_relax();
        (*spins)++;
    } else {
        sched_yield();
    }
}

void uz_futex_wait(_Atomic uint32_t *word, uint32_t val)
{
    /* EAGAIN (the word changed), EINTR and spurious returns all mean: look again. */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

void uz_futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

int64_t uz_counter_read(const struct uz_counter *c)
{
    int64_t sum = 0;
    for (unsigned i = 0; i < UZ_SHARDS; i++)
        sum += atomic_load_explicit(&c->shard[i].v, memory_order_relaxed);
    return sum;
}

void uz_counter_reset(struct uz_counter *c)
{
    for (unsigned i = 0; i < UZ_SHARDS; i++)
        atomic_store_explicit(&c->shard[i].v, 0, memory_order_relaxed);
}

int uz_brlock_init(struct uz_brlock *b)
{
    /* Writer-preferring: a waiting writer (reset, an algorithm change) is not starved by a
     * stream of readers. So a reader must never take its shard twice. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    for (unsigned i = 0; i < UZ_SHARDS; i++) {
        int rc = pthread_rwlock_init(&b->shard[i].l, &attr);
        if (rc) {
            while (i--)
                pthread_rwlock_destroy(&b->shard[i].l);
            pthread_rwlockattr_destroy(&attr);
            return -rc;
        }
    }
    pthread_rwlockattr_destroy(&attr);
    return 0;
}

void uz_brlock_destroy(struct uz_brlock *b)
{
    for (unsigned i = 0; i < UZ_SHARDS; i++)
        pthread_rwlock_destroy(&b->shard[i].l);
}

unsigned uz_brlock_read_lock(struct uz_brlock *b)
{
    unsigned s = uz_thread_slot() % UZ_SHARDS;
    pthread_rwlock_rdlock(&b->shard[s].l);
    return s;
}

void uz_brlock_read_unlock(struct uz_brlock *b, unsigned shard)
{
    pthread_rwlock_unlock(&b->shard[shard].l);
}

void uz_brlock_write_lock(struct uz_brlock *b)
{
    for (unsigned i = 0; i < UZ_SHARDS; i++)
        pthread_rwlock_wrlock(&b->shard[i].l);
}

void uz_brlock_write_unlock(struct uz_brlock *b)
{
    for (unsigned i = UZ_SHARDS; i-- > 0;)
        pthread_rwlock_unlock(&b->shard[i].l);
}

int uz_parse_size(const char *s, uint64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno)
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift && *end == 'i')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

void *uz_map_unlocked(size_t bytes, int flags)
{
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* The system call itself: the sanitizers' munlock() interceptor does nothing. */
    if (syscall(SYS_munlock, p, bytes) || mprotect(p, bytes, PROT_READ | PROT_WRITE)) {
        int e = errno;
        munmap(p, bytes);
        errno = e;
        return NULL;
    }
    return p;
}
