// SPDX-License-Identifier: MIT
/*
 * test_dev_stress.c - concurrent readers and writers on overlapping slots (fixed seeds):
 *  1. Writers store self-describing pages (sync and async) into a few slots while readers
 *     verify that every page read is one a writer wrote whole (or zeros), never a mix, and a
 *     janitor discards and compacts. At the end the pool passes uz_pool_check().
 *  2. Threads owning disjoint byte ranges of ONE page hammer them with partial writes: the
 *     read-modify-write is atomic per slot, so no thread's last write is lost.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "dev_internal.h"

#define PAGE   UZ_PAGE_SIZE
#define SLOTS  24
#define MAGIC  0x757a72616d5f7067ull
#define ROUNDS 4000

static struct uz_dev *dev;
static atomic_bool stop;
static atomic_long pages_verified, zero_reads;

/* A page whose first word names (slot, version) and whose body follows from it, with a
 * compressibility that varies by version so objects move between size classes. */
static void make_page(unsigned char *p, uint64_t slot, uint64_t version)
{
    uint64_t seed = (slot << 32 | version) * 0x9e3779b97f4a7c15ull + 1;
    uint64_t head = MAGIC ^ (slot << 32 | version);
    memcpy(p, &head, 8);
    unsigned alphabet = (unsigned)(version % 7) * 40 + 2; /* 2..242 distinct byte values */
    for (size_t i = 8; i < PAGE; i++) {
        if (i % 8 == 0)
            uzt_rand(&seed);
        p[i] = (unsigned char)((seed >> (i % 8 * 8)) % alphabet);
    }
}

static void verify_page(const unsigned char *p, uint64_t slot)
{
    uint64_t head;
    memcpy(&head, p, 8);
    if (head == 0) {
        for (size_t i = 0; i < PAGE; i++)
            CHECK(p[i] == 0);
        atomic_fetch_add(&zero_reads, 1);
        return;
    }
    uint64_t id = head ^ MAGIC;
    CHECK_EQ(id >> 32, slot);
    unsigned char want[PAGE];
    make_page(want, slot, id & 0xffffffff);
    CHECK(memcmp(p, want, PAGE) == 0);
    atomic_fetch_add(&pages_verified, 1);
}

static void on_done(void *arg, int result)
{
    CHECK_EQ(result, 0);
    atomic_store_explicit((atomic_bool *)arg, true, memory_order_release);
}

static void *writer(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 7919 + 17;
    unsigned char *page = aligned_alloc(64, PAGE);
    for (uint64_t round = 0; round < ROUNDS; round++) {
        uint64_t slot = uzt_rand(&seed) % SLOTS;
        make_page(page, slot, (uint64_t)(uintptr_t)arg << 24 | round);
        if (round % 3 == 0) {
            /* Async: the page must stay unchanged until done (stable writes). */
            atomic_bool done = false;
            CHECK_EQ(uz_dev_write_page_async(dev, slot, page, on_done, &done), 0);
            unsigned spins = 0;
            while (!atomic_load_explicit(&done, memory_order_acquire))
                uz_backoff(&spins);
        } else {
            CHECK_EQ(uz_dev_write_page(dev, slot, page), 0);
        }
    }
    free(page);
    return NULL;
}

static void *reader(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    unsigned char page[PAGE];
    while (!atomic_load(&stop)) {
        uint64_t slot = uzt_rand(&seed) % SLOTS;
        if (uzt_rand(&seed) % 4) {
            CHECK_EQ(uz_dev_read_page(dev, slot, page), 0);
        } else {
            /* Through the byte path, in two halves: each half is from one whole page. */
            CHECK_EQ(uz_dev_pread(dev, page, PAGE, slot * PAGE), PAGE);
        }
        verify_page(page, slot);
    }
    return NULL;
}

static void *janitor(void *arg)
{
    uint64_t seed = 5;
    while (!atomic_load(&stop)) {
        uint64_t slot = uzt_rand(&seed) % SLOTS;
        CHECK_EQ(uz_dev_discard(dev, slot * PAGE, PAGE), 0);
        /* Both interfaces: the attribute texts and the struct calls they are built from. */
        if (uzt_rand(&seed) % 16 == 0)
            CHECK_EQ(uz_dev_attr_write(dev, "compact", "1"), 0);
        else if (uzt_rand(&seed) % 16 == 0)
            CHECK(uz_dev_compact(dev) >= 0);
        char buf[4096];
        CHECK(uz_dev_attr_read(dev, "mm_stat", buf, sizeof(buf)) > 0);
        struct uz_dev_stats st;
        CHECK_EQ(uz_dev_stats(dev, &st), 0);
        CHECK(st.mem_used_max >= st.mem_used_total); /* the high-water mark is never below */
        CHECK(st.orig_data_size <= st.disksize);
        sched_yield();
    }
    return NULL;
}

static void test_overlapping(void)
{
    struct uz_dev_config cfg = {.disksize = SLOTS * PAGE, .algorithm = "lz4", .workers = 2};
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    pthread_t w[3], r[2], j;
    atomic_store(&stop, false);
    for (uintptr_t i = 0; i < 3; i++)
        CHECK(pthread_create(&w[i], NULL, writer, (void *)(i + 1)) == 0);
    for (uintptr_t i = 0; i < 2; i++)
        CHECK(pthread_create(&r[i], NULL, reader, (void *)(i + 100)) == 0);
    CHECK(pthread_create(&j, NULL, janitor, NULL) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(w[i], NULL);
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    pthread_join(j, NULL);
    CHECK_EQ(uz_dev_flush(dev), 0);
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    unsigned char page[PAGE];
    for (uint64_t s = 0; s < SLOTS; s++) {
        CHECK_EQ(uz_dev_read_page(dev, s, page), 0);
        verify_page(page, s);
    }
    CHECK(atomic_load(&pages_verified) > 0);
    printf("overlapping: %ld pages verified, %ld zero reads\n", atomic_load(&pages_verified),
           atomic_load(&zero_reads));
    uz_dev_destroy(dev);
}

/* ---- partial writes to one page ---- */

#define OWNERS 8
#define REGION (PAGE / OWNERS)

static void *partial_owner(void *arg)
{
    uintptr_t me = (uintptr_t)arg;
    unsigned char buf[REGION];
    for (uint32_t v = 1; v <= 1500; v++) {
        /* Mostly compressible, sometimes not, so the page flips between classes and huge. */
        uint64_t seed = v * 31 + me;
        for (size_t i = 0; i < REGION; i++)
            buf[i] =
                v % 5 == 0 && v < 1500 ? (unsigned char)uzt_rand(&seed) : (unsigned char)(v + me);
        memcpy(buf, &v, sizeof(v));
        CHECK_EQ(uz_dev_pwrite(dev, buf, REGION, PAGE + me * REGION), REGION);
    }
    return NULL;
}

static void test_partial_atomic(void)
{
    struct uz_dev_config cfg = {.disksize = 4 * PAGE, .algorithm = "zstd"};
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    pthread_t t[OWNERS];
    for (uintptr_t i = 0; i < OWNERS; i++)
        CHECK(pthread_create(&t[i], NULL, partial_owner, (void *)i) == 0);
    for (int i = 0; i < OWNERS; i++)
        pthread_join(t[i], NULL);
    unsigned char page[PAGE];
    CHECK_EQ(uz_dev_read_page(dev, 1, page), 0);
    for (int i = 0; i < OWNERS; i++) {
        uint32_t v;
        memcpy(&v, page + i * REGION, sizeof(v));
        CHECK_EQ(v, 1500); /* every owner's last write survived */
        CHECK_EQ(page[i * REGION + 100], (unsigned char)(1500 + i));
    }
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    uz_dev_destroy(dev);
}

/* ---- many partial writers, more threads than streams ---- */

/* More partial writers than the device has streams, whatever the CPU count. */
static unsigned pw_threads;

static void *partial_writer(void *arg)
{
    uintptr_t me = (uintptr_t)arg;
    unsigned char buf[1000];
    for (uint32_t v = 0; v < 3000; v++) {
        memset(buf, (int)(v + me), sizeof(buf));
        /* A compressed page in each slot, then partial writes: read-modify-write needs a
         * stream to decompress with while it holds one to compress with. */
        CHECK_EQ(uz_dev_pwrite(dev, buf, sizeof(buf), (me * 2 + v % 2) * PAGE + 100), sizeof(buf));
    }
    return NULL;
}

static void test_partial_many(void)
{
    /* The stream count is known only once a device exists: probe, then size the real one. */
    struct uz_dev_config probe = {.disksize = PAGE, .algorithm = "zstd"};
    CHECK_EQ(uz_dev_create(&probe, &dev), 0);
    unsigned streams;
    char buf[64];
    CHECK(uz_dev_attr_read(dev, "max_comp_streams", buf, sizeof(buf)) > 0);
    CHECK(sscanf(buf, "%u", &streams) == 1 && streams > 0);
    uz_dev_destroy(dev);
    pw_threads = streams + 4;

    struct uz_dev_config cfg = {.disksize = 2 * pw_threads * PAGE, .algorithm = "zstd"};
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    for (uint64_t i = 0; i < 2 * pw_threads; i++) {
        unsigned char page[PAGE];
        make_page(page, i, 5);
        CHECK_EQ(uz_dev_write_page(dev, i, page), 0);
    }
    alarm(300); /* a lock-order bug here is a hang: turn it into a failure */
    pthread_t *t = calloc(pw_threads, sizeof(*t));
    CHECK(t);
    for (uintptr_t i = 0; i < pw_threads; i++)
        CHECK(pthread_create(&t[i], NULL, partial_writer, (void *)i) == 0);
    for (unsigned i = 0; i < pw_threads; i++)
        pthread_join(t[i], NULL);
    free(t);
    alarm(0);
    unsigned char page[PAGE];
    for (uint64_t i = 0; i < 2 * pw_threads; i++) {
        CHECK_EQ(uz_dev_read_page(dev, i, page), 0);
        CHECK_EQ(page[100], (unsigned char)(2999 - (i % 2 ? 0 : 1) + i / 2));
    }
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    uz_dev_destroy(dev);
}

int main(void)
{
    test_overlapping();
    test_partial_atomic();
    test_partial_many();
    printf("dev_stress: ok\n");
    return 0;
}
