// SPDX-License-Identifier: MIT
/*
 * test_pool_stress.c - the pool under concurrency: 4 threads (fixed seeds) allocate, write,
 * verify and free their own objects for ~2 s while a 5th compacts in a loop and a 6th maps and
 * verifies a shared set of objects and runs uz_pool_check() on the live pool. At the end every
 * object must be intact and the pool consistent. Then prints a throughput figure with 1 and 2
 * threads (not asserted). Meant to run under TSan and ASan too. White-box cases first check
 * that a map waits while the compactor has the object's zspage frozen, and that a thread
 * waiting on a class lock held for long sleeps instead of spinning.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <uzram/pool.h>
#include "pool_internal.h"

#define WORKERS   4
#define PER_CAP   3000
#define SHARED    2000
#define STRESS_NS 2000000000ll

static struct uz_pool *pool;
static atomic_bool stop;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static size_t rand_size(uint64_t *s)
{
    uint64_t r = uzt_rand(s);
    return r % 8 ? 300 + (r >> 8) % 2800 : 1 + (r >> 8) % UZ_POOL_MAX_ALLOC;
}

struct obj {
    uz_handle_t h;
    uint32_t size;
    uint64_t key;
};

struct worker {
    pthread_t tid;
    unsigned id;
    uint64_t seed;
    size_t n;
    struct obj o[PER_CAP];
    uint64_t ops;
};

static struct obj shared[SHARED];

static void verify(const struct obj *o)
{
    const void *p = uz_pool_map(pool, o->h);
    CHECK(uzt_pattern_ok(p, o->size, o->key));
    uz_pool_unmap(pool, o->h);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t s = w->seed, key = (uint64_t)w->id << 48;
    unsigned char buf[UZ_POOL_MAX_ALLOC];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = uzt_rand(&s) % 100;
        if ((r < 45 && w->n < PER_CAP) || w->n == 0) {
            struct obj *o = &w->o[w->n];
            o->size = (uint32_t)rand_size(&s);
            o->key = ++key;
            CHECK_EQ(uz_pool_malloc(pool, o->size, &o->h), 0);
            if (r & 1) {
                uzt_pattern_fill(buf, o->size, o->key);
                CHECK_EQ(uz_pool_write(pool, o->h, buf, o->size), 0);
            } else {
                void *p = uz_pool_map(pool, o->h);
                uzt_pattern_fill(p, o->size, o->key);
                uz_pool_unmap(pool, o->h);
            }
            w->n++;
        } else if (r < 80) {
            size_t i = uzt_rand(&s) % w->n;
            verify(&w->o[i]);
            uz_pool_free(pool, w->o[i].h);
            w->o[i] = w->o[--w->n];
        } else if (r < 90) {
            verify(&w->o[uzt_rand(&s) % w->n]);
        } else if (r < 95) {
            struct obj *o = &w->o[uzt_rand(&s) % w->n];
            CHECK_EQ(uz_pool_read(pool, o->h, buf, o->size), 0);
            CHECK(uzt_pattern_ok(buf, o->size, o->key));
        } else {
            struct obj *o = &w->o[uzt_rand(&s) % w->n];
            o->key = ++key;
            void *p = uz_pool_map(pool, o->h);
            uzt_pattern_fill(p, o->size, o->key);
            uz_pool_unmap(pool, o->h);
        }
        w->ops++;
    }
    return NULL;
}

static atomic_long compactions, compacted_pages;

static void *compactor_main(void *arg)
{
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        long c = uz_pool_compact(pool);
        CHECK(c >= 0);
        atomic_fetch_add(&compacted_pages, c);
        atomic_fetch_add(&compactions, 1);
    }
    return NULL;
}

static atomic_long verified, checks;

static void *verifier_main(void *arg)
{
    uint64_t s = 99;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        /* Hold a few maps at once while the compactor runs. */
        size_t i = uzt_rand(&s) % SHARED, j = uzt_rand(&s) % SHARED;
        if (i == j)
            continue;
        const void *a = uz_pool_map(pool, shared[i].h);
        const void *b = uz_pool_map(pool, shared[j].h);
        CHECK(uzt_pattern_ok(a, shared[i].size, shared[i].key));
        CHECK(uzt_pattern_ok(b, shared[j].size, shared[j].key));
        uz_pool_unmap(pool, shared[j].h);
        uz_pool_unmap(pool, shared[i].h);
        if (atomic_fetch_add(&verified, 1) % 2000 == 0) {
            CHECK_EQ(uz_pool_check(pool), 0);
            atomic_fetch_add(&checks, 1);
            struct uz_pool_stat st;
            CHECK_EQ(uz_pool_stats(pool, &st), 0);
            CHECK(st.objects >= SHARED);
        }
    }
    return NULL;
}

static struct worker workers[WORKERS];

/* Growing in batches and churning through the zspage cache, against the compactor. */
static void stress(void)
{
    CHECK_EQ(uz_pool_create(&pool), 0);
    atomic_store(&stop, false);
    atomic_store(&verified, 0);
    atomic_store(&checks, 0);
    atomic_store(&compactions, 0);
    atomic_store(&compacted_pages, 0);
    memset(workers, 0, sizeof(workers));
    uint64_t s = 12345;
    for (size_t i = 0; i < SHARED; i++) {
        shared[i].size = (uint32_t)rand_size(&s);
        shared[i].key = (uint64_t)0xffff << 48 | i;
        CHECK_EQ(uz_pool_malloc(pool, shared[i].size, &shared[i].h), 0);
        void *p = uz_pool_map(pool, shared[i].h);
        uzt_pattern_fill(p, shared[i].size, shared[i].key);
        uz_pool_unmap(pool, shared[i].h);
    }
    /* Free every other one so the compactor has sparse zspages to move them out of. */
    size_t m = 0;
    for (size_t i = 0; i < SHARED; i++) {
        if (i % 2)
            uz_pool_free(pool, shared[i].h);
        else
            shared[m++] = shared[i];
    }
    for (size_t i = m; i < SHARED; i++) {
        shared[i].size = (uint32_t)rand_size(&s);
        shared[i].key = (uint64_t)0xfffe << 48 | i;
        CHECK_EQ(uz_pool_malloc(pool, shared[i].size, &shared[i].h), 0);
        void *p = uz_pool_map(pool, shared[i].h);
        uzt_pattern_fill(p, shared[i].size, shared[i].key);
        uz_pool_unmap(pool, shared[i].h);
    }
    pthread_t comp, ver;
    for (unsigned i = 0; i < WORKERS; i++) {
        workers[i].id = i + 1;
        workers[i].seed = 0x1234567ull * (i + 1);
        CHECK_EQ(pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]), 0);
    }
    CHECK_EQ(pthread_create(&comp, NULL, compactor_main, NULL), 0);
    CHECK_EQ(pthread_create(&ver, NULL, verifier_main, NULL), 0);
    struct timespec ts = {STRESS_NS / 1000000000ll, STRESS_NS % 1000000000ll};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    uint64_t ops = 0, live = SHARED;
    for (unsigned i = 0; i < WORKERS; i++) {
        CHECK_EQ(pthread_join(workers[i].tid, NULL), 0);
        ops += workers[i].ops;
        live += workers[i].n;
    }
    CHECK_EQ(pthread_join(comp, NULL), 0);
    CHECK_EQ(pthread_join(ver, NULL), 0);

    CHECK_EQ(uz_pool_check(pool), 0);
    struct uz_pool_stat st;
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.objects, live);
    for (size_t i = 0; i < SHARED; i++)
        verify(&shared[i]);
    for (unsigned i = 0; i < WORKERS; i++)
        for (size_t j = 0; j < workers[i].n; j++)
            verify(&workers[i].o[j]);
    printf("stress: %llu worker ops, %ld verified maps, %ld checks, %ld compactions "
           "(%ld pages), %llu live\n",
           (unsigned long long)ops, atomic_load(&verified), atomic_load(&checks),
           atomic_load(&compactions), atomic_load(&compacted_pages), (unsigned long long)live);
    CHECK(ops > 1000 && atomic_load(&compactions) > 0 && atomic_load(&checks) > 0);
    CHECK(uz_pool_compact(pool) >= 0);
    CHECK_EQ(uz_pool_check(pool), 0);
    for (size_t i = 0; i < SHARED; i++) {
        verify(&shared[i]);
        uz_pool_free(pool, shared[i].h);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        for (size_t j = 0; j < workers[i].n; j++) {
            verify(&workers[i].o[j]);
            uz_pool_free(pool, workers[i].o[j].h);
        }
    CHECK_EQ(uz_pool_check(pool), 0);
    CHECK(uz_pool_total_pages(pool) <= UZ_POOL_CACHE_PAGES); /* the cache of freed zspages */
    CHECK(uz_pool_compact(pool) >= 0);
    CHECK_EQ(uz_pool_total_pages(pool), 0);
    CHECK_EQ(uz_pool_check(pool), 0);
    uz_pool_destroy(pool);
}

/* ---- a map waits for a frozen zspage ---------------------------------------------------- */

static uz_handle_t frozen_h;
static void *_Atomic frozen_p;

static void *frozen_mapper(void *arg)
{
    void *p = uz_pool_map(pool, frozen_h);
    atomic_store(&frozen_p, p);
    uz_pool_unmap(pool, frozen_h);
    return NULL;
}

static void test_frozen_map(void)
{
    CHECK_EQ(uz_pool_create(&pool), 0);
    CHECK_EQ(uz_pool_malloc(pool, 1000, &frozen_h), 0);
    void *addr = uz_pool_map(pool, frozen_h);
    uz_pool_unmap(pool, frozen_h);
    struct uz_class *c = &pool->cls[frozen_h >> 32];
    uint64_t e = atomic_load(uz_cell(c, (uint32_t)frozen_h - 1));
    struct uz_zspage *zs = uz_zspage_of(pool, uz_loc_slot(e));
    int zero = 0;
    /* What the compactor does before moving the zspage's objects. */
    CHECK(atomic_compare_exchange_strong(&zs->pins, &zero, UZ_ZS_FROZEN));
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, frozen_mapper, NULL), 0);
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    CHECK(atomic_load(&frozen_p) == NULL);
    atomic_fetch_sub(&zs->pins, UZ_ZS_FROZEN);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(atomic_load(&frozen_p) == addr);
    CHECK_EQ(atomic_load(&zs->pins), 0);
    CHECK_EQ(uz_pool_check(pool), 0);
    uz_pool_free(pool, frozen_h);
    uz_pool_destroy(pool);
}

/* ---- a class lock held for long puts its waiters to sleep -------------------------------- */

static atomic_bool waiter_done;
static double waiter_cpu_ms;

static void *lock_waiter(void *arg)
{
    uz_handle_t h;
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    CHECK_EQ(uz_pool_malloc(pool, 1000, &h), 0); /* waits for the held class lock */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    waiter_cpu_ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    uz_pool_free(pool, h);
    atomic_store(&waiter_done, true);
    return NULL;
}

static void test_lock_sleeps(void)
{
    CHECK_EQ(uz_pool_create(&pool), 0);
    uz_handle_t h;
    CHECK_EQ(uz_pool_malloc(pool, 1000, &h), 0);
    struct uz_class *c = &pool->cls[h >> 32];
    /* What compaction or the checker may do: hold the class lock for a long time. */
    uz_plock_lock(&c->lock);
    atomic_store(&waiter_done, false);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, lock_waiter, NULL), 0);
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    CHECK(!atomic_load(&waiter_done));
    uz_plock_unlock(&c->lock);
    CHECK_EQ(pthread_join(t, NULL), 0);
    printf("lock: a waiter on a class lock held 300 ms used %.2f ms of CPU\n", waiter_cpu_ms);
    CHECK(waiter_cpu_ms < 30); /* it slept: a spinner would burn ~300 ms */
    uz_pool_free(pool, h);
    CHECK_EQ(uz_pool_check(pool), 0);
    uz_pool_destroy(pool);
}

/* ---- throughput: malloc + write + map/read + free per op, each thread on its own ring ---- */

#define RING 1024

struct bench {
    pthread_t tid;
    uint64_t seed;
    long long until;
    uint64_t ops;
};

static void *bench_main(void *arg)
{
    struct bench *b = arg;
    uz_handle_t ring[RING] = {0};
    unsigned char buf[UZ_POOL_MAX_ALLOC];
    memset(buf, 0x5a, sizeof(buf));
    uint64_t s = b->seed, ops = 0;
    while (now_ns() < b->until) {
        for (unsigned k = 0; k < 256; k++, ops++) {
            unsigned i = ops % RING;
            uz_pool_free(pool, ring[i]);
            size_t size = 300 + uzt_rand(&s) % 2800;
            CHECK_EQ(uz_pool_malloc(pool, size, &ring[i]), 0);
            CHECK_EQ(uz_pool_write(pool, ring[i], buf, size), 0);
            const unsigned char *p = uz_pool_map(pool, ring[i]);
            CHECK(p[size - 1] == 0x5a);
            uz_pool_unmap(pool, ring[i]);
        }
    }
    for (unsigned i = 0; i < RING; i++)
        uz_pool_free(pool, ring[i]);
    b->ops = ops;
    return NULL;
}

static double bench(unsigned threads)
{
    struct bench b[2];
    CHECK_EQ(uz_pool_create(&pool), 0);
    long long t0 = now_ns();
    for (unsigned i = 0; i < threads; i++) {
        b[i].seed = 777 + i;
        b[i].until = t0 + 500000000ll;
        CHECK_EQ(pthread_create(&b[i].tid, NULL, bench_main, &b[i]), 0);
    }
    uint64_t ops = 0;
    for (unsigned i = 0; i < threads; i++) {
        CHECK_EQ(pthread_join(b[i].tid, NULL), 0);
        ops += b[i].ops;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    CHECK(uz_pool_total_pages(pool) <= UZ_POOL_CACHE_PAGES);
    CHECK_EQ(uz_pool_check(pool), 0);
    uz_pool_destroy(pool);
    return (double)ops / secs;
}

int main(void)
{
    test_frozen_map();
    test_lock_sleeps();
    stress();
    double one = bench(1), two = bench(2);
    printf("pool_scaling threads=1 ops_per_s=%.0f\n", one);
    printf("pool_scaling threads=2 ops_per_s=%.0f speedup=%.2f\n", two, two / one);
    printf("test_pool_stress: ok\n");
    return 0;
}
