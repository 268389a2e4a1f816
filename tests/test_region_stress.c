// SPDX-License-Identifier: MIT
/*
 * test_region_stress.c - several threads read and write random pages of a region four times
 * larger than its resident limit, against a shadow model (mimalloc test-stress style, fixed
 * seeds). Every page holds a pattern derived from (page, version); the shadow keeps each page's
 * version. A thread locks the page's test mutex (the application's own locking: the region
 * needs none), then either checks the page against the shadow (whole, or a few words) or
 * rewrites it with the next version (whole, or one word at a time through libc's memcpy), and
 * sometimes swaps a random range out explicitly. Afterwards every page is checked, the
 * counters must show real swapping, and uz_region_check() compares the states with the kernel's.
 * Runs under ASan and TSan too (make check). An argument N sets the device's object_pages
 * first (multi-page objects: neighbours evicted together become one object, and a fault reads
 * the rest of the object's run in).
 */
#include "harness.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "region_harness.h"

#include "dev_harness.h"

#define PAGE     UZ_PAGE_SIZE
#define NPAGES   8192u /* 32 MiB */
#define LIMIT    2048u /* 8 MiB resident: a quarter */
#define NTHREADS 4
#define SECONDS  4

static struct uz_region *r;
static unsigned char *base;
static uint32_t shadow[NPAGES];
static pthread_mutex_t locks[NPAGES];
static unsigned char *sample;
static size_t sample_pages;
static atomic_bool stop;
static atomic_long ops, checks;

/* Word j of page p at version v: a real memory page from the sample, marked with p, v and j
 * in every word (so that a torn or misplaced page shows), or an all-zero page at version 0. */
static uint64_t word_of(uint32_t p, uint32_t v, uint32_t j)
{
    if (!v)
        return 0;
    const uint64_t *src =
        (const uint64_t *)(sample + ((size_t)(p * 31u + v) % sample_pages) * PAGE);
    return src[j] ^ ((uint64_t)p << 40 | (uint64_t)v << 12 | j);
}

static void write_page(uint32_t p, uint32_t v, uint64_t *seed)
{
    uint64_t *w = (uint64_t *)(base + (size_t)p * PAGE);
    if (uzt_rand(seed) % 2) {
        for (uint32_t j = 0; j < PAGE / 8; j++)
            w[j] = word_of(p, v, j);
    } else {
        uint64_t buf[PAGE / 8];
        for (uint32_t j = 0; j < PAGE / 8; j++)
            buf[j] = word_of(p, v, j);
        memcpy(w, buf, PAGE);
    }
}

static void check_page(uint32_t p, uint32_t v, bool whole)
{
    const uint64_t *w = (const uint64_t *)(base + (size_t)p * PAGE);
    for (uint32_t j = 0; j < PAGE / 8; j += whole ? 1 : 61) {
        if (w[j] != word_of(p, v, j)) {
            fprintf(stderr, "page %u word %u: %016llx, want %016llx (version %u)\n", p, j,
                    (unsigned long long)w[j], (unsigned long long)word_of(p, v, j), v);
            exit(1);
        }
    }
    atomic_fetch_add_explicit(&checks, 1, memory_order_relaxed);
}

static void *worker(void *arg)
{
    uint64_t seed = 0x1234567ull + (uintptr_t)arg * 0x9e3779b97f4a7c15ull;
    long n = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t x = uzt_rand(&seed);
        /* Skewed: a quarter of the pages get half of the accesses. */
        uint32_t p = (uint32_t)(x % 2 ? (x >> 8) % (NPAGES / 4) : (x >> 8) % NPAGES);
        pthread_mutex_lock(&locks[p]);
        switch ((x >> 40) % 8) {
        case 0:
        case 1:
        case 2:
            write_page(p, ++shadow[p], &seed);
            break;
        case 3:
        case 4:
            check_page(p, shadow[p], true);
            break;
        default:
            check_page(p, shadow[p], false);
            break;
        }
        pthread_mutex_unlock(&locks[p]);
        if ((x >> 50) % 512 == 0) {
            uint32_t first = (uint32_t)((x >> 20) % NPAGES), len = 1 + (uint32_t)(x % 64);
            if (first + len > NPAGES)
                len = NPAGES - first;
            CHECK(uz_region_swapout(r, base + (size_t)first * PAGE, (size_t)len * PAGE) >= 0);
        }
        n++;
    }
    atomic_fetch_add(&ops, n);
    return NULL;
}

int main(int argc, char **argv)
{
    alarm(300);
    const char *object_pages = argc > 1 ? argv[1] : "1";
    sample = uzt_load_image(UZT_SAMPLE, &sample_pages);
    CHECK(sample && sample_pages);
    struct uz_region_config cfg = {.size = (size_t)NPAGES * PAGE,
                                   .resident_limit = (size_t)LIMIT * PAGE};
    int rc = uz_region_create(&cfg, &r);
    if (rc == -ENOSYS || rc == -EPERM)
        return UZT_SKIP;
    CHECK_EQ(rc, 0);
    CHECK_EQ(uz_dev_attr_write(uz_region_dev(r), "object_pages", object_pages), 0);
    base = uz_region_base(r);
    for (uint32_t p = 0; p < NPAGES; p++)
        pthread_mutex_init(&locks[p], NULL);

    /* A sequential fill first: reclaim evicts neighbours together, which the device writes as
     * multi-page objects when object_pages > 1 (the random phase after it scatters them). */
    uint64_t fill_seed = 99;
    for (uint32_t p = 0; p < NPAGES; p++) {
        write_page(p, 1, &fill_seed);
        shadow[p] = 1;
    }
    for (uint32_t p = 0; p < NPAGES; p += 7)
        check_page(p, 1, true);
    CHECK_EQ(uz_dev_flush(uz_region_dev(r)), 0);
    uint64_t multi = uzt_dev_count_flag(uz_region_dev(r), UZ_SLOT_MULTI);
    fprintf(stderr, "object_pages=%s: after the fill, %llu stored pages in multi-page objects\n",
            object_pages, (unsigned long long)multi);
    if (strcmp(object_pages, "1"))
        CHECK(multi > 0);

    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, worker, (void *)i), 0);
    sleep(SECONDS);
    atomic_store(&stop, true);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);

    for (uint32_t p = 0; p < NPAGES; p++)
        check_page(p, shadow[p], true);
    struct uz_region_stat st;
    CHECK_EQ(uz_region_stat(r, &st), 0);
    fprintf(stderr,
            "ops=%ld checks=%ld resident=%llu swapped=%llu major=%llu minor=%llu wp=%llu "
            "swapins=%llu readahead=%llu swapouts=%llu clean=%llu writebacks=%llu "
            "redirtied=%llu throttled=%llu\n",
            atomic_load(&ops), atomic_load(&checks), (unsigned long long)st.resident_pages,
            (unsigned long long)st.swapped_pages, (unsigned long long)st.major_faults,
            (unsigned long long)st.minor_faults, (unsigned long long)st.wp_faults,
            (unsigned long long)st.swapins, (unsigned long long)st.readahead_pages,
            (unsigned long long)st.swapouts, (unsigned long long)st.swapouts_clean,
            (unsigned long long)st.writebacks, (unsigned long long)st.redirtied,
            (unsigned long long)st.throttled);
    CHECK(st.resident_pages <= LIMIT);
    CHECK(st.major_faults > 0 && st.swapouts > NPAGES && st.writebacks > 0);
    CHECK(st.swapouts_clean > 0 && st.wp_faults > 0);

    /* Let reclaim settle (no writeback in flight, nothing moving, the reclaim thread idle:
     * it updates the resident counter after unlocking a batch), then compare states. */
    settle_and_check(r);
    struct uz_dev *dev = uz_region_dev(r);
    CHECK_EQ(uz_dev_mobj_check(dev), 0);
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    fprintf(stderr, "object_pages=%s: at the end, %llu stored pages in multi-page objects\n",
            object_pages, (unsigned long long)uzt_dev_count_flag(dev, UZ_SLOT_MULTI));
    uz_region_destroy(r);
    free(sample);
    printf("test_region_stress: ok\n");
    return 0;
}
