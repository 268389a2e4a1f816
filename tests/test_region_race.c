// SPDX-License-Identifier: MIT
/*
 * test_region_race.c - the seed's race, on the region: writers hammer exactly the pages that
 * are being swapped out.
 *
 * The kernel bug behind the seed ("mm: support anonymous stable page"): a page under writeback
 * to zram was written again through the swap cache while zram compressed it. Here the resident
 * limit is the smallest allowed (16 pages) for 64 pages, and besides the reclaim thread a
 * swapper thread keeps calling uz_region_swapout() on the whole region, so that nearly every
 * write lands on a page that is write-protected for writeback or was just dropped. Each writer
 * owns its pages and rewrites them word by word with the next version, alternating contents
 * that compress well, not at all (stored raw) and in between, then reads the page back: every
 * word must be the version just written (no lost write, nothing stale faulted back, no torn
 * page). The region's `redirtied` counter shows that writes did hit pages under writeback; the
 * test requires it to be non-zero. Runs under ASan and TSan too. With the argument `1cpu` the
 * whole process runs on one CPU (the fault threads then sleep at once instead of polling for
 * the next fault: region_fault.c, fault_spin_ns()).
 */
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "region_harness.h"

#define PAGE    UZ_PAGE_SIZE
#define NPAGES  64u
#define LIMIT   16u
#define WRITERS 3u

static struct uz_region *r;
static unsigned char *base;
static uint32_t version[NPAGES];
static atomic_bool stop;
static atomic_long writes, swapouts_called;

/* Word j of page p at version v. Kind v % 3: 0 compresses to nearly nothing, 1 not at all,
 * 2 about half. Every word carries v, so a word from another version shows. */
static uint64_t word_of(uint32_t p, uint32_t v, uint32_t j)
{
    uint64_t tag = (uint64_t)v << 32 | (uint64_t)p << 16 | j;
    switch (v % 3) {
    case 0:
        return (uint64_t)v << 32 | p;
    case 1:
        return mix(tag) << 32 ^ tag;
    default:
        return j % 2 ? tag : mix(tag);
    }
}

static void *writer(void *arg)
{
    uint32_t w = (uint32_t)(uintptr_t)arg;
    uint64_t seed = 42 + w;
    long n = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint32_t p = w + WRITERS * (uint32_t)(uzt_rand(&seed) % (NPAGES / WRITERS));
        uint32_t v = ++version[p];
        uint64_t *q = (uint64_t *)(base + (size_t)p * PAGE);
        for (uint32_t j = 0; j < PAGE / 8; j++)
            q[j] = word_of(p, v, j);
        for (uint32_t j = 0; j < PAGE / 8; j++) {
            if (q[j] != word_of(p, v, j)) {
                fprintf(stderr, "page %u word %u: %016llx, want %016llx (version %u)\n", p, j,
                        (unsigned long long)q[j], (unsigned long long)word_of(p, v, j), v);
                exit(1);
            }
        }
        n++;
    }
    atomic_fetch_add(&writes, n);
    return NULL;
}

static void *swapper(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        CHECK(uz_region_swapout(r, base, (size_t)NPAGES * PAGE) >= 0);
        atomic_fetch_add(&swapouts_called, 1);
    }
    return NULL;
}

static struct uz_region_stat stat_now(void)
{
    struct uz_region_stat st;
    CHECK_EQ(uz_region_stat(r, &st), 0);
    return st;
}

/* Pins the process to the first CPU it may run on (before the region starts its threads, which
 * inherit it). */
static void one_cpu(void)
{
    cpu_set_t set, one;
    CHECK_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &set)) {
            CPU_SET(c, &one);
            break;
        }
    }
    CHECK_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
}

int main(int argc, char **argv)
{
    alarm(300);
    if (argc > 1 && !strcmp(argv[1], "1cpu"))
        one_cpu();
    struct uz_region_config cfg = {.size = (size_t)NPAGES * PAGE,
                                   .resident_limit = (size_t)LIMIT * PAGE};
    int rc = uz_region_create(&cfg, &r);
    if (rc == -ENOSYS || rc == -EPERM)
        return UZT_SKIP;
    CHECK_EQ(rc, 0);
    base = uz_region_base(r);

    pthread_t tw[WRITERS], ts;
    for (uint32_t i = 0; i < WRITERS; i++)
        CHECK_EQ(pthread_create(&tw[i], NULL, writer, (void *)(uintptr_t)i), 0);
    CHECK_EQ(pthread_create(&ts, NULL, swapper, NULL), 0);
    /* Until the race was hit often enough, 2 to 30 seconds. */
    time_t t0 = time(NULL);
    for (;;) {
        sleep(1);
        struct uz_region_stat st = stat_now();
        if ((st.redirtied >= 200 && time(NULL) - t0 >= 2) || time(NULL) - t0 >= 30)
            break;
    }
    atomic_store(&stop, true);
    for (uint32_t i = 0; i < WRITERS; i++)
        pthread_join(tw[i], NULL);
    pthread_join(ts, NULL);

    for (uint32_t p = 0; p < NPAGES; p++) {
        const uint64_t *q = (const uint64_t *)(base + (size_t)p * PAGE);
        for (uint32_t j = 0; j < PAGE / 8; j++) {
            uint64_t want = version[p] ? word_of(p, version[p], j) : 0;
            if (q[j] != want) {
                uint32_t found = 0;
                for (uint32_t v = version[p]; v > 0 && !found; v--)
                    if (q[j] == word_of(p, v, j))
                        found = v;
                fprintf(stderr,
                        "page %u word %u: %016llx, want %016llx (version %u; holds "
                        "version %u; page word %016llx)\n",
                        p, j, (unsigned long long)q[j], (unsigned long long)want, version[p], found,
                        (unsigned long long)atomic_load(&r->pages[p]));
                exit(1);
            }
        }
    }
    struct uz_region_stat st = stat_now();
    fprintf(stderr,
            "writes=%ld swapout_calls=%ld redirtied=%llu wp_faults=%llu writebacks=%llu "
            "swapouts=%llu major=%llu throttled=%llu\n",
            atomic_load(&writes), atomic_load(&swapouts_called), (unsigned long long)st.redirtied,
            (unsigned long long)st.wp_faults, (unsigned long long)st.writebacks,
            (unsigned long long)st.swapouts, (unsigned long long)st.major_faults,
            (unsigned long long)st.throttled);
    CHECK(st.redirtied > 0); /* the race was hit */
    /* The fault threads (which have served faults: started) poll only where they can run
     * beside the application. */
    cpu_set_t set;
    CHECK_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
    for (unsigned t = 0; t < r->nfault; t++)
        CHECK_EQ(atomic_load(&r->ft[t].spin_ns), CPU_COUNT(&set) > 1 ? UZ_FAULT_SPIN_NS : 0);
    CHECK(st.swapouts > 0 && st.major_faults > 0);
    CHECK(st.resident_pages <= LIMIT);

    CHECK(uz_region_swapout(r, base, (size_t)NPAGES * PAGE) >= 0);
    uz_dev_flush(uz_region_dev(r));
    CHECK_EQ(stat_now().resident_pages, 0);
    /* Not check_region() at once: the reclaim thread may still be finishing a round (it
     * unlocks its batch before it updates the resident counter), see settle_and_check(). */
    settle_and_check(r);
    for (uint32_t p = 0; p < NPAGES; p++)
        for (uint32_t j = 0; j < PAGE / 8; j += 7)
            CHECK(((const uint64_t *)(base + (size_t)p * PAGE))[j] ==
                  (version[p] ? word_of(p, version[p], j) : 0));
    uz_region_destroy(r);
    printf("test_region_race: ok\n");
    return 0;
}
