// SPDX-License-Identifier: MIT
/*
 * test_pool.c - the pool on one thread: class geometry, page accounting, a property test
 * against a shadow model (random malloc/write/read/free/compact with uz_pool_check() and the
 * statistics compared to the model after every phase), memory given back to the OS after
 * frees and after compaction, pins holding objects in place, growth in batches (bounded, and
 * resident as counted) and the cache of freed zspages (bounded under churn).
 */
#include "harness.h"

#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>
#include <uzram/pool.h>
#include "pool_internal.h" /* the batch and cache bounds */

#define ARRAY_LEN(a)       (sizeof(a) / sizeof((a)[0]))
#define DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))

/* TSan's shadow memory moves with the heap: the RSS figures mean nothing under it. */
#ifdef __SANITIZE_THREAD__
#define RSS_CHECK(cond) ((void)0)
#else
#define RSS_CHECK(cond) CHECK(cond)
#endif
/* ASan's quarantine keeps freed heap blocks resident: RSS over heap churn means nothing. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define CHURN_RSS_CHECK(cond) ((void)0)
#else
#define CHURN_RSS_CHECK(cond) CHECK(cond)
#endif

/* Sizes like compressed pages: mostly 500..3000, some anywhere in 1..4096. */
static size_t rand_size(uint64_t *s)
{
    uint64_t r = uzt_rand(s);
    switch (r % 10) {
    case 0:
        return 1 + (r >> 8) % 200;
    case 1:
    case 2:
        return 1 + (r >> 8) % UZ_POOL_MAX_ALLOC;
    default:
        return 500 + (r >> 8) % 2501;
    }
}

static uint64_t rows_pages(struct uz_pool *pool)
{
    struct uz_pool_class_stat rows[UZ_POOL_MAX_ALLOC / UZ_POOL_CLASS_STEP];
    int n = uz_pool_class_stats(pool, rows, ARRAY_LEN(rows));
    CHECK(n > 0 && n <= (int)ARRAY_LEN(rows));
    uint64_t pages = 0;
    for (int i = 0; i < n; i++)
        pages += rows[i].pages_used;
    return pages;
}

static struct uz_pool *new_pool(void)
{
    struct uz_pool *pool;
    CHECK_EQ(uz_pool_create(&pool), 0);
    return pool;
}

static struct uz_pool_stat stats(struct uz_pool *pool)
{
    struct uz_pool_stat st;
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    return st;
}

/* Pages objects span: what the pool holds less its batch and cached pages. */
static uint64_t spanned(struct uz_pool *pool)
{
    struct uz_pool_stat st = stats(pool);
    CHECK(st.batch_pages <= UZ_POOL_AHEAD_MAX && st.cached_pages <= UZ_POOL_CACHE_PAGES);
    CHECK(st.total_pages >= st.batch_pages + st.cached_pages);
    return st.total_pages - st.batch_pages - st.cached_pages;
}

/* Everything freed: what stays is the cache, and compaction gives it back. */
static void expect_empty(struct uz_pool *pool)
{
    CHECK_EQ(uz_pool_check(pool), 0);
    struct uz_pool_stat st = stats(pool);
    CHECK_EQ(st.objects, 0);
    CHECK_EQ(st.batch_pages, 0);
    CHECK_EQ(st.total_pages, st.cached_pages);
    CHECK(st.cached_pages <= UZ_POOL_CACHE_PAGES);
    CHECK_EQ(uz_pool_compact(pool), (long)st.cached_pages);
    CHECK_EQ(uz_pool_total_pages(pool), 0);
    CHECK_EQ(rows_pages(pool), 0);
    CHECK_EQ(uz_pool_check(pool), 0);
}

static long rss_pages(void)
{
    long size, res;
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f && fscanf(f, "%ld %ld", &size, &res) == 2);
    fclose(f);
    return res;
}

static const struct uz_pool_class_stat *row_of(const struct uz_pool_class_stat *rows, int n,
                                               size_t size)
{
    for (int i = 0; i < n; i++)
        if (rows[i].size == size)
            return &rows[i];
    return NULL;
}

static void test_geometry(void)
{
    struct uz_pool *pool;
    CHECK_EQ(uz_pool_create(&pool), 0);
    struct uz_pool_class_stat rows[UZ_POOL_MAX_ALLOC / UZ_POOL_CLASS_STEP];
    int n = uz_pool_class_stats(pool, NULL, 0);
    CHECK(n > 100 && n <= (int)ARRAY_LEN(rows));
    CHECK_EQ(uz_pool_class_stats(pool, rows, ARRAY_LEN(rows)), n);
    for (int i = 0; i < n; i++) {
        const struct uz_pool_class_stat *r = &rows[i];
        CHECK(r->size >= UZ_POOL_MIN_ALLOC && r->size <= UZ_POOL_MAX_ALLOC);
        CHECK_EQ(r->size, UZ_POOL_MIN_ALLOC + r->index * UZ_POOL_CLASS_STEP);
        CHECK(r->pages_per_zspage >= 1 && r->pages_per_zspage <= UZ_POOL_MAX_ZSPAGE_PAGES);
        CHECK_EQ(r->objs_per_zspage, r->pages_per_zspage * UZ_PAGE_SIZE / r->size);
        CHECK(i == 0 || r->size > rows[i - 1].size);
        CHECK(r->zspages == 0 && r->obj_used == 0 && r->pages_used == 0);
    }
    CHECK_EQ(rows[n - 1].size, UZ_POOL_MAX_ALLOC);
    CHECK_EQ(uz_pool_class_size(pool, 0), 0);
    CHECK_EQ(uz_pool_class_size(pool, UZ_POOL_MAX_ALLOC + 1), 0);
    for (size_t size = 1; size <= UZ_POOL_MAX_ALLOC; size++) {
        size_t cs = uz_pool_class_size(pool, size);
        const struct uz_pool_class_stat *r = row_of(rows, n, cs);
        CHECK(r && cs >= size && cs >= UZ_POOL_MIN_ALLOC);
        /* The unmerged class: the first step at or above size, and its best geometry. */
        size_t own =
            size <= UZ_POOL_MIN_ALLOC
                ? UZ_POOL_MIN_ALLOC
                : UZ_POOL_MIN_ALLOC + DIV_ROUND_UP(size - UZ_POOL_MIN_ALLOC, UZ_POOL_CLASS_STEP) *
                                          UZ_POOL_CLASS_STEP;
        unsigned bp = 1, bo = UZ_PAGE_SIZE / own;
        for (unsigned p = 2; p <= UZ_POOL_MAX_ZSPAGE_PAGES; p++)
            if ((p * UZ_PAGE_SIZE / own) * bp > bo * p)
                bp = p, bo = p * UZ_PAGE_SIZE / own;
        CHECK(cs >= own);
        CHECK_EQ(r->pages_per_zspage, bp); /* merged only with equal geometry */
        CHECK_EQ(r->objs_per_zspage, bo);
        /* Every class between own and cs has that geometry too (cs is the top of the run). */
        if (cs > own) {
            const struct uz_pool_class_stat *below = row_of(rows, n, own);
            CHECK(!below);
        }
        if (cs < UZ_POOL_MAX_ALLOC) {
            const struct uz_pool_class_stat *next =
                row_of(rows, n, uz_pool_class_size(pool, cs + 1));
            CHECK(next);
            CHECK(next->pages_per_zspage != r->pages_per_zspage ||
                  next->objs_per_zspage != r->objs_per_zspage);
        }
    }
    /* Merged runs: the sizes just below a row's size that map to it share its geometry. */
    CHECK_EQ(uz_pool_class_size(pool, 1), UZ_POOL_MIN_ALLOC);
    CHECK_EQ(uz_pool_class_size(pool, 33), 48);
    CHECK_EQ(uz_pool_class_size(pool, 48), 48);
    CHECK_EQ(uz_pool_class_size(pool, 49), 64);
    size_t huge = uz_pool_huge_size(pool);
    CHECK(huge > 2048 && huge <= UZ_POOL_MAX_ALLOC);
    CHECK_EQ(row_of(rows, n, uz_pool_class_size(pool, huge))->objs_per_zspage, 1);
    CHECK(row_of(rows, n, uz_pool_class_size(pool, huge - 1))->objs_per_zspage > 1);
    for (size_t size = huge; size <= UZ_POOL_MAX_ALLOC; size++)
        CHECK_EQ(row_of(rows, n, uz_pool_class_size(pool, size))->objs_per_zspage, 1);
    printf("geometry: %d classes, huge_size=%zu\n", n, huge);
    uz_pool_destroy(pool);
}

static void test_api_edges(void)
{
    struct uz_pool *pool;
    uz_handle_t h = 0;
    CHECK_EQ(uz_pool_create(&pool), 0);
    CHECK_EQ(uz_pool_malloc(pool, 0, &h), -EINVAL);
    CHECK_EQ(uz_pool_malloc(pool, UZ_POOL_MAX_ALLOC + 1, &h), -EINVAL);
    CHECK_EQ(h, 0);
    uz_pool_free(pool, 0);
    CHECK_EQ(uz_pool_malloc(pool, 100, &h), 0);
    CHECK(h != 0);
    CHECK_EQ(uz_pool_obj_size(pool, h), uz_pool_class_size(pool, 100));
    char buf[UZ_POOL_MAX_ALLOC + 1];
    size_t cs = uz_pool_obj_size(pool, h);
    memset(buf, 0xab, sizeof(buf));
    CHECK_EQ(uz_pool_write(pool, h, buf, cs + 1), -EINVAL);
    CHECK_EQ(uz_pool_read(pool, h, buf, cs + 1), -EINVAL);
    CHECK_EQ(uz_pool_write(pool, h, buf, cs), 0);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(uz_pool_read(pool, h, buf, cs), 0);
    for (size_t i = 0; i < cs; i++)
        CHECK_EQ((unsigned char)buf[i], 0xab);
    CHECK_EQ(uz_pool_check(pool), 0);
    uz_pool_free(pool, h);
    expect_empty(pool);
    uz_pool_destroy(pool);
    uz_pool_destroy(NULL);
}

/* A fresh class counts only the pages its objects reach, not the whole zspage. */
static void test_accounting(void)
{
    struct uz_pool *pool;
    CHECK_EQ(uz_pool_create(&pool), 0);
    size_t size = 1000, cs = uz_pool_class_size(pool, size);
    struct uz_pool_class_stat rows[UZ_POOL_MAX_ALLOC / UZ_POOL_CLASS_STEP];
    int n = uz_pool_class_stats(pool, rows, ARRAY_LEN(rows));
    const struct uz_pool_class_stat *r = row_of(rows, n, cs);
    CHECK(r && r->pages_per_zspage > 2);
    uz_handle_t h[64];
    unsigned objs = r->objs_per_zspage < 64 ? r->objs_per_zspage : 64;
    for (unsigned i = 0; i < objs; i++) {
        CHECK_EQ(uz_pool_malloc(pool, size, &h[i]), 0);
        char *p = uz_pool_map(pool, h[i]);
        uzt_pattern_fill(p, cs, h[i]);
        uz_pool_unmap(pool, h[i]);
        /* Object i is the i-th of the zspage (lowest free index first); the pages beyond
         * are batch pages, populated with the first ones. */
        CHECK_EQ(spanned(pool), DIV_ROUND_UP((i + 1) * cs, UZ_PAGE_SIZE));
        CHECK(uz_pool_total_pages(pool) <= r->pages_per_zspage);
        CHECK_EQ(rows_pages(pool), uz_pool_total_pages(pool));
    }
    CHECK_EQ(uz_pool_check(pool), 0);
    /* Objects are contiguous in one zspage, straddling page boundaries. */
    char *p0 = uz_pool_map(pool, h[0]);
    for (unsigned i = 1; i < objs; i++) {
        char *p = uz_pool_map(pool, h[i]);
        CHECK(p == p0 + i * cs);
        CHECK(uzt_pattern_ok(p, cs, h[i]));
        uz_pool_unmap(pool, h[i]);
    }
    uz_pool_unmap(pool, h[0]);
    /* Freeing an object in the middle keeps the pages; the hole is refilled first. */
    uz_handle_t old = h[2];
    uz_pool_free(pool, h[2]);
    uint64_t pages = uz_pool_total_pages(pool), span = spanned(pool);
    CHECK_EQ(uz_pool_malloc(pool, size, &h[2]), 0);
    CHECK_EQ(uz_pool_total_pages(pool), pages);
    CHECK_EQ(spanned(pool), span);
    CHECK(h[2] == old); /* the freed cell is reused too */
    CHECK(uz_pool_map(pool, h[2]) == p0 + 2 * cs);
    uz_pool_unmap(pool, h[2]);
    struct uz_pool_stat st;
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.objects, objs);
    CHECK_EQ(st.obj_bytes, objs * cs);
    CHECK_EQ(st.zspages, 1);
    CHECK_EQ(st.total_pages, pages);
    CHECK(st.meta_bytes > 0);
    /* A second class: its first object spans one page (two if it straddled). */
    uz_handle_t g;
    CHECK_EQ(uz_pool_malloc(pool, 3000, &g), 0);
    CHECK_EQ(spanned(pool), span + 1);
    /* A huge object costs exactly one page, and a huge zspage has no room for a batch. */
    uz_handle_t hg;
    uint64_t before = uz_pool_total_pages(pool);
    CHECK_EQ(uz_pool_malloc(pool, uz_pool_huge_size(pool), &hg), 0);
    CHECK_EQ(uz_pool_obj_size(pool, hg), UZ_PAGE_SIZE);
    CHECK_EQ(spanned(pool), span + 2);
    CHECK_EQ(uz_pool_total_pages(pool), before + 1);
    CHECK_EQ(uz_pool_check(pool), 0);
    for (unsigned i = 0; i < objs; i++)
        uz_pool_free(pool, h[i]);
    uz_pool_free(pool, g);
    uz_pool_free(pool, hg);
    expect_empty(pool);
    uz_pool_destroy(pool);
}

struct live {
    uz_handle_t h;
    uint32_t size;
    uint64_t key;
};

static void model_verify(struct uz_pool *pool, const struct live *lv, size_t n)
{
    unsigned char buf[UZ_POOL_MAX_ALLOC];
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const void *p = uz_pool_map(pool, lv[i].h);
        CHECK(uzt_pattern_ok(p, lv[i].size, lv[i].key));
        uz_pool_unmap(pool, lv[i].h);
        CHECK_EQ(uz_pool_read(pool, lv[i].h, buf, lv[i].size), 0);
        CHECK(uzt_pattern_ok(buf, lv[i].size, lv[i].key));
        bytes += uz_pool_class_size(pool, lv[i].size);
        CHECK_EQ(uz_pool_obj_size(pool, lv[i].h), uz_pool_class_size(pool, lv[i].size));
    }
    CHECK_EQ(uz_pool_check(pool), 0);
    struct uz_pool_stat st;
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.objects, n);
    CHECK_EQ(st.obj_bytes, bytes);
    /* Class rows count every zspage page; the pool adds the cached zspages' pages. */
    uint64_t rows = rows_pages(pool);
    CHECK_EQ(st.total_pages, rows + st.cached_pages);
    CHECK(st.batch_pages <= UZ_POOL_AHEAD_MAX && st.cached_pages <= UZ_POOL_CACHE_PAGES);
    CHECK((st.total_pages - st.batch_pages - st.cached_pages) * UZ_PAGE_SIZE >= bytes);
}

/* Random operations against a shadow model of every live handle's contents. */
static void test_model(uint64_t seed, unsigned nops)
{
    struct uz_pool *pool = new_pool();
    size_t cap = 1 << 16, n = 0;
    struct live *lv = malloc(cap * sizeof(*lv));
    CHECK(lv);
    uint64_t s = seed, key = 0;
    unsigned char buf[UZ_POOL_MAX_ALLOC];
    long compacted = 0;
    for (unsigned op = 1; op <= nops; op++) {
        uint64_t r = uzt_rand(&s) % 100;
        /* Drift between growing and shrinking phases so zspages empty and refill. */
        unsigned grow = (op / 20000) % 2 ? 35 : 60;
        if (r < grow || n == 0) {
            if (n == cap)
                continue;
            size_t size = rand_size(&s);
            uz_handle_t h;
            CHECK_EQ(uz_pool_malloc(pool, size, &h), 0);
            CHECK(h != 0);
            lv[n] = (struct live){h, (uint32_t)size, ++key};
            if (uzt_rand(&s) & 1) {
                uzt_pattern_fill(buf, size, key);
                CHECK_EQ(uz_pool_write(pool, h, buf, size), 0);
            } else {
                void *p = uz_pool_map(pool, h);
                uzt_pattern_fill(p, size, key);
                uz_pool_unmap(pool, h);
            }
            n++;
        } else if (r < 85) {
            size_t i = uzt_rand(&s) % n;
            uz_pool_free(pool, lv[i].h);
            lv[i] = lv[--n];
        } else if (r < 93) {
            size_t i = uzt_rand(&s) % n;
            const void *p = uz_pool_map(pool, lv[i].h);
            CHECK(uzt_pattern_ok(p, lv[i].size, lv[i].key));
            uz_pool_unmap(pool, lv[i].h);
        } else if (r < 99) {
            size_t i = uzt_rand(&s) % n;
            lv[i].key = ++key;
            uzt_pattern_fill(buf, lv[i].size, key);
            CHECK_EQ(uz_pool_write(pool, lv[i].h, buf, lv[i].size), 0);
            CHECK_EQ(uz_pool_read(pool, lv[i].h, buf, lv[i].size), 0);
            CHECK(uzt_pattern_ok(buf, lv[i].size, key));
        } else if (uzt_rand(&s) % 50 == 0) {
            long c = uz_pool_compact(pool);
            CHECK(c >= 0);
            compacted += c;
            CHECK_EQ(uz_pool_check(pool), 0);
        }
        if (op % 20000 == 0)
            model_verify(pool, lv, n);
    }
    model_verify(pool, lv, n);
    compacted += uz_pool_compact(pool);
    model_verify(pool, lv, n);
    struct uz_pool_stat st;
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.pages_compacted, compacted);
    CHECK_EQ(st.cached_pages, 0); /* compaction empties the cache */
    printf("model seed=%llu: %u ops, %zu live, %llu pages for %llu bytes, compacted %ld\n",
           (unsigned long long)seed, nops, n, (unsigned long long)st.total_pages,
           (unsigned long long)st.obj_bytes, compacted);
    while (n)
        uz_pool_free(pool, lv[--n].h);
    expect_empty(pool);
    free(lv);
    uz_pool_destroy(pool);
}

/* ~64 MiB of objects in, all freed: the pool's pages and the process RSS go back down. */
static void test_release(void)
{
    struct uz_pool *pool = new_pool();
    size_t cap = 100000, n = 0;
    struct live *lv = malloc(cap * sizeof(*lv));
    CHECK(lv);
    memset(lv, 0, cap * sizeof(*lv)); /* fault the model in before measuring */
    uint64_t s = 42, bytes = 0;
    long rss0 = rss_pages();
    while (bytes < (64u << 20)) {
        size_t size = rand_size(&s);
        CHECK(n < cap);
        CHECK_EQ(uz_pool_malloc(pool, size, &lv[n].h), 0);
        lv[n].size = (uint32_t)size;
        lv[n].key = n + 1;
        void *p = uz_pool_map(pool, lv[n].h);
        uzt_pattern_fill(p, size, n + 1);
        uz_pool_unmap(pool, lv[n].h);
        bytes += size;
        n++;
    }
    long rss1 = rss_pages();
    uint64_t pages = uz_pool_total_pages(pool);
    CHECK(pages * UZ_PAGE_SIZE >= bytes);
    CHECK(pages * UZ_PAGE_SIZE < bytes + bytes / 20); /* dense: < 5% over the bytes asked */
    RSS_CHECK(rss1 - rss0 >= (long)(bytes / UZ_PAGE_SIZE) * 95 / 100);
    RSS_CHECK(rss1 - rss0 <= (long)pages + (long)pages / 10);
    CHECK_EQ(uz_pool_check(pool), 0);
    for (size_t i = 0; i < n; i++)
        uz_pool_free(pool, lv[i].h);
    /* What stays is the cache of freed zspages, a few pages. */
    CHECK(uz_pool_total_pages(pool) <= UZ_POOL_CACHE_PAGES);
    long rss2 = rss_pages();
    expect_empty(pool);
    printf("release: %zu objects, %llu bytes in %llu pages; rss +%ld pages, then -%ld\n", n,
           (unsigned long long)bytes, (unsigned long long)pages, rss1 - rss0, rss1 - rss2);
    RSS_CHECK(rss1 - rss2 >= (rss1 - rss0) * 9 / 10);
    free(lv);
    uz_pool_destroy(pool);
}

/* uz_pool_hold(): freed zspages stay counted (and the checker agrees) until the last unhold,
 * or until 1024 of them are held; then their memory really goes (RSS). Nested holds, and
 * frees from two threads while held. */
struct hold_job {
    struct uz_pool *pool;
    struct live *lv;
    size_t first, end;
};

static void *hold_free(void *arg)
{
    struct hold_job *j = arg;
    for (size_t i = j->first; i < j->end; i++)
        uz_pool_free(j->pool, j->lv[i].h);
    return NULL;
}

static void test_hold(void)
{
    struct uz_pool *pool = new_pool();
    size_t n = 4096; /* 16 MiB of 4 KiB objects: a zspage each, beyond the auto flush */
    struct live *lv = calloc(n, sizeof(*lv));
    CHECK(lv);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(uz_pool_malloc(pool, UZ_PAGE_SIZE, &lv[i].h), 0);
            void *p = uz_pool_map(pool, lv[i].h);
            uzt_pattern_fill(p, UZ_PAGE_SIZE, i + 1);
            uz_pool_unmap(pool, lv[i].h);
        }
        uint64_t full = uz_pool_total_pages(pool);
        long rss0 = rss_pages();
        uz_pool_hold(pool);
        uz_pool_hold(pool); /* nested */
        if (round == 0) {
            /* Fewer than the auto flush: all held. */
            for (size_t i = 0; i < 1000; i++)
                uz_pool_free(pool, lv[i].h);
            CHECK(uz_pool_total_pages(pool) + 2 >= full); /* still counted */
            CHECK_EQ(uz_pool_check(pool), 0);
            uz_pool_unhold(pool);
            CHECK(uz_pool_total_pages(pool) + 2 >= full); /* one holder left */
            uz_pool_unhold(pool);
            CHECK(uz_pool_total_pages(pool) + 1000 - UZ_POOL_CACHE_PAGES <= full);
            CHECK_EQ(uz_pool_check(pool), 0);
            for (size_t i = 1000; i < n; i++) /* and the rest with no hold */
                uz_pool_free(pool, lv[i].h);
        } else {
            /* Two threads free everything while held: the auto flush runs meanwhile. */
            pthread_t t[2];
            struct hold_job jobs[2] = {{pool, lv, 0, n / 2}, {pool, lv, n / 2, n}};
            for (int k = 0; k < 2; k++)
                CHECK_EQ(pthread_create(&t[k], NULL, hold_free, &jobs[k]), 0);
            for (int k = 0; k < 2; k++)
                CHECK_EQ(pthread_join(t[k], NULL), 0);
            CHECK(uz_pool_total_pages(pool) < full); /* 1024 at a time went */
            CHECK_EQ(uz_pool_check(pool), 0);
            uz_pool_unhold(pool);
            uz_pool_unhold(pool);
        }
        CHECK(uz_pool_total_pages(pool) <= UZ_POOL_CACHE_PAGES);
        CHECK_EQ(uz_pool_check(pool), 0);
        long rss1 = rss_pages();
        RSS_CHECK(rss0 - rss1 >= (long)n * 9 / 10); /* given back to the OS */
    }
    expect_empty(pool);
    free(lv);
    uz_pool_destroy(pool);
}

/* Free 3 of every 4 objects at random, compact: pages drop, survivors intact. */
static void test_compact(void)
{
    struct uz_pool *pool;
    CHECK_EQ(uz_pool_create(&pool), 0);
    size_t n = 40000, m = 0;
    struct live *lv = malloc(n * sizeof(*lv));
    CHECK(lv);
    uint64_t s = 7;
    for (size_t i = 0; i < n; i++) {
        lv[i].size = (uint32_t)rand_size(&s);
        lv[i].key = i + 1;
        CHECK_EQ(uz_pool_malloc(pool, lv[i].size, &lv[i].h), 0);
        void *p = uz_pool_map(pool, lv[i].h);
        uzt_pattern_fill(p, lv[i].size, lv[i].key);
        uz_pool_unmap(pool, lv[i].h);
    }
    for (size_t i = 0; i < n; i++) {
        if (uzt_rand(&s) % 4)
            uz_pool_free(pool, lv[i].h);
        else
            lv[m++] = lv[i];
    }
    CHECK_EQ(uz_pool_check(pool), 0);
    struct uz_pool_stat st;
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    uint64_t before = uz_pool_total_pages(pool);
    long rss0 = rss_pages();
    long freed = uz_pool_compact(pool);
    uint64_t after = uz_pool_total_pages(pool);
    long rss1 = rss_pages();
    printf("compact: %zu survivors, %llu obj bytes: %llu -> %llu pages (returned %ld), "
           "rss -%ld pages\n",
           m, (unsigned long long)st.obj_bytes, (unsigned long long)before,
           (unsigned long long)after, freed, rss0 - rss1);
    CHECK(freed > 0);
    CHECK_EQ(before - after, freed);
    CHECK(after < before / 2);
    RSS_CHECK(rss0 - rss1 >= freed * 9 / 10);
    CHECK_EQ(uz_pool_check(pool), 0);
    model_verify(pool, lv, m);
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.pages_compacted, freed);
    /* Nothing left to do: a second pass frees nothing. */
    CHECK_EQ(uz_pool_compact(pool), 0);
    struct uz_pool_class_stat rows[UZ_POOL_MAX_ALLOC / UZ_POOL_CLASS_STEP];
    int nr = uz_pool_class_stats(pool, rows, ARRAY_LEN(rows));
    for (int i = 0; i < nr; i++)
        CHECK_EQ(rows[i].freeable, 0);
    /* Packed: full zspages plus, per class, one page at most partly used. */
    CHECK(after * UZ_PAGE_SIZE <= st.obj_bytes + st.obj_bytes / 50 + (uint64_t)nr * UZ_PAGE_SIZE);
    for (size_t i = 0; i < m; i++)
        uz_pool_free(pool, lv[i].h);
    expect_empty(pool);
    free(lv);
    uz_pool_destroy(pool);
}

/* A mapped object stays where it is through compaction; unmapped, it may move. */
static void test_pinned(void)
{
    struct uz_pool *pool;
    CHECK_EQ(uz_pool_create(&pool), 0);
    size_t size = 1000, cs = uz_pool_class_size(pool, size);
    struct uz_pool_class_stat rows[UZ_POOL_MAX_ALLOC / UZ_POOL_CLASS_STEP];
    int nr = uz_pool_class_stats(pool, rows, ARRAY_LEN(rows));
    unsigned objs = row_of(rows, nr, cs)->objs_per_zspage;
    unsigned n = 3 * objs;
    uz_handle_t *h = malloc(n * sizeof(*h));
    CHECK(h);
    for (unsigned i = 0; i < n; i++) {
        CHECK_EQ(uz_pool_malloc(pool, size, &h[i]), 0);
        void *p = uz_pool_map(pool, h[i]);
        uzt_pattern_fill(p, cs, h[i]);
        uz_pool_unmap(pool, h[i]);
    }
    /* Keep one object in each of the three zspages. */
    for (unsigned i = 0; i < n; i++)
        if (i % objs)
            uz_pool_free(pool, h[i]);
    char *p0 = uz_pool_map(pool, h[0]);
    char *p1 = uz_pool_map(pool, h[objs]);
    char *p2 = uz_pool_map(pool, h[2 * objs]);
    /* Every zspage is pinned: nothing moves, only the empty tails of the zspages go. */
    CHECK(uz_pool_compact(pool) > 0);
    struct uz_pool_stat st;
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.zspages, 3);
    CHECK_EQ(st.total_pages, 3);
    CHECK(uz_pool_compact(pool) == 0);
    CHECK_EQ(uz_pool_check(pool), 0);
    CHECK(uzt_pattern_ok(p2, cs, h[2 * objs]));
    uz_pool_unmap(pool, h[2 * objs]);
    /* Only the third may move: it goes into one of the pinned zspages. */
    CHECK_EQ(uz_pool_compact(pool), 1);
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.zspages, 2);
    CHECK_EQ(st.total_pages, 2);
    CHECK(uzt_pattern_ok(p0, cs, h[0]) && uzt_pattern_ok(p1, cs, h[objs]));
    uz_pool_unmap(pool, h[objs]);
    uz_pool_unmap(pool, h[0]);
    CHECK(uz_pool_map(pool, h[0]) == p0);
    uz_pool_unmap(pool, h[0]);
    CHECK_EQ(uz_pool_check(pool), 0);
    /* Now all three fit in one zspage. */
    CHECK_EQ(uz_pool_compact(pool), 1);
    CHECK_EQ(uz_pool_stats(pool, &st), 0);
    CHECK_EQ(st.zspages, 1);
    CHECK_EQ(st.total_pages, 1);
    for (unsigned i = 0; i < 3; i++) {
        p0 = uz_pool_map(pool, h[i * objs]);
        CHECK(uzt_pattern_ok(p0, cs, h[i * objs]));
        uz_pool_unmap(pool, h[i * objs]);
        uz_pool_free(pool, h[i * objs]);
    }
    expect_empty(pool);
    free(h);
    uz_pool_destroy(pool);
}

/* Growth in batches: a busy class's new pages come with more of its zspage, counted at once
 * and really resident; pool-wide, batch pages stay within their bound however many classes
 * grow. */
static void test_batch(void)
{
    struct uz_pool *pool = new_pool();
    struct uz_pool_class_stat rows[UZ_POOL_MAX_ALLOC / UZ_POOL_CLASS_STEP];
    int nr = uz_pool_class_stats(pool, rows, ARRAY_LEN(rows));
    /* One class with 16-page zspages: its first object brings a batch of pages. */
    const struct uz_pool_class_stat *r = NULL;
    for (int i = 0; i < nr && !r; i++)
        if (rows[i].pages_per_zspage == UZ_POOL_MAX_ZSPAGE_PAGES && rows[i].size > 1000)
            r = &rows[i];
    CHECK(r);
    long rss0 = rss_pages();
    uz_handle_t first;
    CHECK_EQ(uz_pool_malloc(pool, r->size, &first), 0);
    struct uz_pool_stat st = stats(pool);
    CHECK(st.batch_pages > 0 && st.batch_pages < UZ_POOL_BATCH);
    CHECK_EQ(st.total_pages, spanned(pool) + st.batch_pages);
    CHECK_EQ(st.total_pages, UZ_POOL_BATCH);
    /* Populated, not just counted: resident before anything is written there. */
    RSS_CHECK(rss_pages() - rss0 >= UZ_POOL_BATCH);
    CHECK_EQ(uz_pool_check(pool), 0);
    /* Objects filling the batch pages spend them: the total stays until they are used up. */
    size_t n = 0, cap = 1 << 15;
    uz_handle_t *h = malloc(cap * sizeof(*h));
    CHECK(h);
    while ((n + 2) * r->size <= UZ_POOL_BATCH * UZ_PAGE_SIZE) {
        CHECK_EQ(uz_pool_malloc(pool, r->size, &h[n++]), 0);
        CHECK_EQ(uz_pool_total_pages(pool), UZ_POOL_BATCH);
    }
    CHECK(spanned(pool) == UZ_POOL_BATCH || spanned(pool) == UZ_POOL_BATCH - 1);
    CHECK_EQ(uz_pool_check(pool), 0);
    /* Every class growing at once, round robin: batch pages stay bounded, the pool exact. */
    rss0 = rss_pages();
    uint64_t total0 = uz_pool_total_pages(pool);
    for (unsigned round = 0; round < 40; round++) {
        for (int i = 0; i < nr && n < cap; i++) {
            CHECK_EQ(uz_pool_malloc(pool, rows[i].size, &h[n]), 0);
            uzt_pattern_fill(uz_pool_map(pool, h[n]), rows[i].size, h[n]);
            uz_pool_unmap(pool, h[n]);
            n++;
        }
        st = stats(pool);
        CHECK(st.batch_pages <= UZ_POOL_BATCH_AHEAD);
        CHECK_EQ(st.cached_pages, 0);
    }
    CHECK_EQ(uz_pool_check(pool), 0);
    long grown = rss_pages() - rss0;
    long counted = (long)(uz_pool_total_pages(pool) - total0);
    printf("batch: %zu objects, %llu pages counted (%llu batch), rss +%ld\n", n,
           (unsigned long long)uz_pool_total_pages(pool), (unsigned long long)st.batch_pages,
           grown);
    RSS_CHECK(grown >= counted * 95 / 100 && grown <= counted + counted / 10);
    (void)counted;
    for (size_t i = 0; i < n; i++)
        uz_pool_free(pool, h[i]);
    uz_pool_free(pool, first);
    expect_empty(pool);
    free(h);
    uz_pool_destroy(pool);
}

/* Churn through the cache of freed zspages: freed zspages keep their pages up to the bound
 * and are reused first; RSS stays bounded over many rounds; the pool is exact after each. */
static void test_cache(void)
{
    struct uz_pool *pool = new_pool();
    const size_t n = 20000;
    uz_handle_t *h = malloc(n * sizeof(*h));
    CHECK(h);
    uint64_t s = 99;
    long rss_base = 0, rss_max = 0;
    uint64_t peak = 0;
    for (unsigned round = 0; round < 12; round++) {
        for (size_t i = 0; i < n; i++) {
            size_t size = rand_size(&s);
            CHECK_EQ(uz_pool_malloc(pool, size, &h[i]), 0);
            uzt_pattern_fill(uz_pool_map(pool, h[i]), size < 64 ? size : 64, i);
            uz_pool_unmap(pool, h[i]);
        }
        uint64_t full = uz_pool_total_pages(pool);
        if (full > peak)
            peak = full;
        CHECK_EQ(uz_pool_check(pool), 0);
        for (size_t i = 0; i < n; i++)
            uz_pool_free(pool, h[i]);
        struct uz_pool_stat st = stats(pool);
        CHECK_EQ(st.objects, 0);
        CHECK(st.cached_pages > 0 && st.cached_pages <= UZ_POOL_CACHE_PAGES);
        CHECK_EQ(st.total_pages, st.cached_pages);
        CHECK_EQ(uz_pool_check(pool), 0);
        /* After the first round (cell tables and heap metadata stay), only the cache is
         * resident between rounds: RSS does not creep up with churn. */
        long rss = rss_pages();
        if (round == 0)
            rss_base = rss;
        else if (rss - rss_base > rss_max)
            rss_max = rss - rss_base;
        CHURN_RSS_CHECK(rss - rss_base <= 64);
    }
    /* Reuse comes first: a freed zspage's pages serve the next object of its size. */
    uint64_t cached = stats(pool).cached_pages;
    CHECK_EQ(uz_pool_compact(pool), (long)cached);
    uz_handle_t two[2];
    CHECK_EQ(uz_pool_malloc(pool, 3000, &two[0]), 0);
    CHECK_EQ(uz_pool_malloc(pool, 3000, &two[1]), 0);
    uint64_t pages = uz_pool_total_pages(pool);
    uz_pool_free(pool, two[0]);
    uz_pool_free(pool, two[1]);
    CHECK_EQ(stats(pool).cached_pages, pages);
    CHECK_EQ(uz_pool_malloc(pool, 3000, &two[0]), 0);
    CHECK_EQ(uz_pool_total_pages(pool), pages);
    CHECK_EQ(stats(pool).cached_pages, 0);
    CHECK_EQ(uz_pool_check(pool), 0);
    uz_pool_free(pool, two[0]);
    /* A zspage that held a single object is not cached (a write refused for mem_limit frees
     * its new object at once and expects the memory back). */
    CHECK_EQ(uz_pool_total_pages(pool), 0);
    printf("cache: 12 rounds of %zu objects (peak %llu pages), rss growth after round 0 <= +%ld\n",
           n, (unsigned long long)peak, rss_max);
    expect_empty(pool);
    free(h);
    uz_pool_destroy(pool);
}

int main(void)
{
    test_geometry();
    test_api_edges();
    test_accounting();
    test_pinned();
    test_model(1, 200000);
    test_model(0x5eed, 200000);
    test_compact();
    test_release();
    test_hold();
    test_batch();
    test_cache();
    printf("test_pool: ok\n");
    return 0;
}
