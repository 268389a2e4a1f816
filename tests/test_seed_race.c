// SPDX-License-Identifier: MIT
/*
 * test_seed_race.c - the race of the seed patch ("mm: support anonymous stable page").
 *
 * zram compressed a page that the swap cache let a process modify during writeback; its
 * two-pass path then copied a larger second compression into a buffer sized by the first, and
 * zsmalloc's memory was overrun. Here mutator threads keep rewriting pages, alternating
 * between highly compressible and incompressible contents so the compressed size swings across
 * the whole range, while writer threads store exactly those pages, synchronously and through
 * the async queue, with every codec. Run under ASan (make check does): any overrun of a pool
 * object is reported there; without ASan, uz_pool_check() and the neighbours' contents catch
 * corruption. Afterwards the pages are written once more while unmodified and must read back
 * exactly, and the pages stored in other slots during the race must be intact.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#include "dev_internal.h"

#define PAGE     UZ_PAGE_SIZE
#define NPAGES   16
#define GUARDS   32 /* slots NPAGES.. hold stable pages that must survive the race */
#define MUTATORS 2
#define WRITERS  2

static struct uz_dev *dev;
static unsigned char *shared; /* NPAGES pages under constant modification */
static unsigned char *sample;
static size_t sample_pages;
static atomic_bool stop;
static atomic_long writes_done;

/* The mutators break the stable-page contract on purpose: the device reads these pages while
 * they change. Their stores are kept out of TSan's view (the race is the test's subject, not a
 * bug to report); ASan still checks everything. */
__attribute__((no_sanitize("thread"))) static void *mutator(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        size_t p = uzt_rand(&seed) % NPAGES;
        /* Relaxed atomic stores, word by word, so the compiler makes no libc call of them. */
        _Atomic uint64_t *w = (_Atomic uint64_t *)(shared + p * PAGE);
        switch (uzt_rand(&seed) % 3) {
        case 0: /* zeros: compresses to a few bytes */
            for (size_t i = 0; i < PAGE / 8; i++)
                atomic_store_explicit(&w[i], 0, memory_order_relaxed);
            break;
        case 1: /* random: does not compress at all */
            for (size_t i = 0; i < PAGE / 8; i++)
                atomic_store_explicit(&w[i], uzt_rand(&seed), memory_order_relaxed);
            break;
        default: { /* real memory, a middle size */
            const uint64_t *src =
                (const uint64_t *)(sample + (uzt_rand(&seed) % sample_pages) * PAGE);
            for (size_t i = 0; i < PAGE / 8; i++)
                atomic_store_explicit(&w[i], src[i], memory_order_relaxed);
        }
        }
    }
    return NULL;
}

static void on_done(void *arg, int result)
{
    CHECK(result == 0 || result == -ENOSPC);
    atomic_fetch_sub_explicit((atomic_long *)arg, 1, memory_order_release);
}

static void *writer(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    atomic_long inflight = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        size_t p = uzt_rand(&seed) % NPAGES;
        if (uzt_rand(&seed) % 2) {
            CHECK_EQ(uz_dev_write_page(dev, p, shared + p * PAGE), 0);
        } else {
            atomic_fetch_add(&inflight, 1);
            CHECK_EQ(uz_dev_write_page_async(dev, p, shared + p * PAGE, on_done, &inflight), 0);
        }
        atomic_fetch_add_explicit(&writes_done, 1, memory_order_relaxed);
    }
    unsigned spins = 0;
    while (atomic_load_explicit(&inflight, memory_order_acquire))
        uz_backoff(&spins);
    return NULL;
}

static void race(const char *algo, unsigned workers, unsigned millis)
{
    struct uz_dev_config cfg = {
        .disksize = (NPAGES + GUARDS) * PAGE, .algorithm = algo, .workers = workers};
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    CHECK_EQ(uz_dev_stable_writes(dev), workers > 0);
    for (size_t g = 0; g < GUARDS; g++)
        CHECK_EQ(uz_dev_write_page(dev, NPAGES + g, sample + (g % sample_pages) * PAGE), 0);

    atomic_store(&stop, false);
    atomic_store(&writes_done, 0);
    pthread_t m[MUTATORS], w[WRITERS];
    for (uintptr_t i = 0; i < MUTATORS; i++)
        CHECK(pthread_create(&m[i], NULL, mutator, (void *)(i + 11)) == 0);
    for (uintptr_t i = 0; i < WRITERS; i++)
        CHECK(pthread_create(&w[i], NULL, writer, (void *)(i + 23)) == 0);
    struct timespec ts = {millis / 1000, (long)(millis % 1000) * 1000000};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < MUTATORS; i++)
        pthread_join(m[i], NULL);
    CHECK_EQ(uz_dev_flush(dev), 0);
    CHECK_EQ(uz_pool_check(dev->pool), 0);

    /* Every racy page decodes to some page (no corrupt stream, no crash). */
    unsigned char got[PAGE];
    for (size_t p = 0; p < NPAGES; p++)
        CHECK_EQ(uz_dev_read_page(dev, p, got), 0);
    /* Neighbours stored before the race are intact: nothing overran into them. */
    for (size_t g = 0; g < GUARDS; g++) {
        CHECK_EQ(uz_dev_read_page(dev, NPAGES + g, got), 0);
        CHECK(memcmp(got, sample + (g % sample_pages) * PAGE, PAGE) == 0);
    }
    /* Pages written while unmodified read back exactly, through both paths. */
    atomic_long pending = 0;
    for (size_t p = 0; p < NPAGES; p++) {
        if (p % 2) {
            CHECK_EQ(uz_dev_write_page(dev, p, shared + p * PAGE), 0);
        } else {
            atomic_fetch_add(&pending, 1);
            CHECK_EQ(uz_dev_write_page_async(dev, p, shared + p * PAGE, on_done, &pending), 0);
        }
    }
    CHECK_EQ(uz_dev_flush(dev), 0);
    CHECK_EQ(atomic_load(&pending), 0);
    for (size_t p = 0; p < NPAGES; p++) {
        CHECK_EQ(uz_dev_read_page(dev, p, got), 0);
        CHECK(memcmp(got, shared + p * PAGE, PAGE) == 0);
    }
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    printf("seed race: %-7s workers=%u writes=%ld\n", algo, workers, atomic_load(&writes_done));
    CHECK(atomic_load(&writes_done) > 100);
    uz_dev_destroy(dev);
}

int main(void)
{
    sample = uzt_load_image(UZT_SAMPLE, &sample_pages);
    CHECK(sample);
    shared = aligned_alloc(PAGE, NPAGES * PAGE);
    CHECK(shared);
    memset(shared, 0, NPAGES * PAGE);
    const char *const *algos = uz_comp_algorithms();
    for (int i = 0; algos[i]; i++) {
        race(algos[i], 0, 300);
        race(algos[i], 2, 300);
    }
    free(shared);
    free(sample);
    printf("seed_race: ok\n");
    return 0;
}
