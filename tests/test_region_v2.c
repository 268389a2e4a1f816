// SPDX-License-Identifier: MIT
/*
 * test_region_v2.c - what the application's own memory calls do to a region while reclaim runs
 * (issue 8), against a shadow copy of every page:
 *   dontneed  threads madvise(MADV_DONTNEED) and uz_region_discard() random ranges while others
 *             write and verify under heavy reclaim (reclaim used to fault on a dropped page
 *             holding its lock: a deadlock every time); discarded pages read zeros, and so do
 *             dropped ones where the kernel sends REMOVE events (else zeros or their last
 *             contents: region.h, raw DONTNEED without them is half defined)
 *   discard   uz_region_discard() of every kind of page: zeros after, stored copies freed
 *   pin       concurrent pinners of overlapping and disjoint ranges against a small limit
 *             (the budget check used to be racy: four pinners passed it and all waited)
 *   mprotect  PROT_NONE and PROT_READ ranges during reclaim (reclaim's copy used to crash on
 *             PROT_NONE); made writable again, the data is intact
 *   stat      uz_region_stat() of a 64 GiB region is O(1) (it scanned every page word) and
 *             agrees with the checker's full scan after a stress phase
 *   unprot    threads rewrite hot pages word by word while reclaim evicts them without
 *             write-protection (UZ_PG_UNPROT): the move's comparison must find every write
 *             that landed after the snapshot (it ran: saved/restored), none is lost
 *   stale     a page written after an unprotected eviction's snapshot is still swapped out
 *             by uz_region_swapout() (it was restored DIRTY and left resident)
 * Every case runs under alarm(); the program runs in the normal, ASan and TSan builds.
 * Usage: test_region_v2 [case...] (default: all).
 */
#include "harness.h"

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "region_harness.h"

#define PAGE UZ_PAGE_SIZE

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Swaps everything out first, so that reclaim has nothing left to do (slow under TSan, it
 * could still be dropping pages while the checker reads the kernel's view), then waits for
 * the counters to settle and checks. */
static void quiesce_and_check(struct uz_region *r)
{
    CHECK(uz_region_swapout(r, uz_region_base(r), stat_of(r).size) >= 0);
    settle_and_check(r);
}

/* Word j of page p at version v (v 0: zeros). The first 64 words vary, the rest compress. */
static uint64_t word_of(uint64_t p, uint64_t v, uint64_t j)
{
    if (!v)
        return 0;
    uint64_t x = (p << 32 | v << 12) ^ (j < 64 ? j * 0x9e3779b97f4a7c15ull : 0x5555);
    return x | 1; /* never 0 */
}

static void fill_page(unsigned char *base, uint64_t p, uint64_t v)
{
    uint64_t *w = (uint64_t *)(base + p * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        w[j] = word_of(p, v, j);
}

/* @return : whether page p holds version v */
static bool page_is(const unsigned char *base, uint64_t p, uint64_t v)
{
    const uint64_t *w = (const uint64_t *)(base + p * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        if (w[j] != word_of(p, v, j))
            return false;
    return true;
}

static void expect_page(const unsigned char *base, uint64_t p, uint64_t v, bool or_zero)
{
    if (page_is(base, p, v) || (or_zero && page_is(base, p, 0)))
        return;
    const uint64_t *w = (const uint64_t *)(base + p * PAGE);
    fprintf(stderr, "page %llu: word0 %016llx, want version %llu%s (%016llx)\n",
            (unsigned long long)p, (unsigned long long)w[0], (unsigned long long)v,
            or_zero ? " or zeros" : "", (unsigned long long)word_of(p, v, 0));
    exit(1);
}

/* ---- dontneed: raw MADV_DONTNEED and uz_region_discard() under heavy reclaim ---- */

#define DN_PAGES 4096u
#define DN_LIMIT 256u

static struct {
    struct uz_region *r;
    unsigned char *base;
    pthread_mutex_t lock[DN_PAGES];
    uint32_t ver[DN_PAGES];
    bool maybe_zero[DN_PAGES]; /* dropped by raw madvise since the last write */
    bool exact; /* REMOVE events: a raw madvise reads back zeros exactly as a discard */
    atomic_bool stop;
    atomic_long ops, drops, discards;
} dn;

static void *dn_worker(void *arg)
{
    uint64_t seed = 0x51ed + (uintptr_t)arg * 0x9e3779b97f4a7c15ull;
    while (!atomic_load(&dn.stop)) {
        uint64_t x = uzt_rand(&seed);
        uint32_t p = (uint32_t)(x % DN_PAGES);
        pthread_mutex_lock(&dn.lock[p]);
        if ((x >> 32) % 3) {
            expect_page(dn.base, p, dn.ver[p], dn.maybe_zero[p]);
        } else {
            dn.ver[p]++;
            fill_page(dn.base, p, dn.ver[p]);
            dn.maybe_zero[p] = false;
        }
        pthread_mutex_unlock(&dn.lock[p]);
        atomic_fetch_add(&dn.ops, 1);
    }
    return NULL;
}

/* Drops random ranges: raw madvise (arg 0) or uz_region_discard (arg 1). */
static void *dn_dropper(void *arg)
{
    bool lib = (uintptr_t)arg;
    uint64_t seed = 0xd0d0 + (uintptr_t)arg;
    while (!atomic_load(&dn.stop)) {
        uint64_t x = uzt_rand(&seed);
        uint32_t len = 1 + (uint32_t)(x % 16), p = (uint32_t)((x >> 8) % (DN_PAGES - len));
        for (uint32_t k = 0; k < len; k++)
            pthread_mutex_lock(&dn.lock[p + k]);
        if (lib) {
            CHECK_EQ(uz_region_discard(dn.r, dn.base + (size_t)p * PAGE, (size_t)len * PAGE), 0);
            atomic_fetch_add(&dn.discards, 1);
        } else {
            CHECK_EQ(madvise(dn.base + (size_t)p * PAGE, (size_t)len * PAGE, MADV_DONTNEED), 0);
            atomic_fetch_add(&dn.drops, 1);
        }
        for (uint32_t k = 0; k < len; k++) {
            if (lib || dn.exact) {
                dn.ver[p + k] = 0;
                dn.maybe_zero[p + k] = false;
            } else {
                dn.maybe_zero[p + k] = true;
            }
            pthread_mutex_unlock(&dn.lock[p + k]);
        }
        usleep(200);
    }
    return NULL;
}

static void t_dontneed(void)
{
    alarm(120);
    dn.r = make(DN_PAGES, DN_LIMIT);
    dn.base = uz_region_base(dn.r);
    dn.exact = stat_of(dn.r).remove_events;
    for (uint32_t p = 0; p < DN_PAGES; p++) {
        pthread_mutex_init(&dn.lock[p], NULL);
        dn.ver[p] = 1;
        fill_page(dn.base, p, 1);
    }
    pthread_t w[3], d[2];
    for (uintptr_t t = 0; t < 3; t++)
        CHECK_EQ(pthread_create(&w[t], NULL, dn_worker, (void *)t), 0);
    for (uintptr_t t = 0; t < 2; t++)
        CHECK_EQ(pthread_create(&d[t], NULL, dn_dropper, (void *)t), 0);
    sleep(3);
    atomic_store(&dn.stop, true);
    for (int t = 0; t < 3; t++)
        CHECK_EQ(pthread_join(w[t], NULL), 0);
    for (int t = 0; t < 2; t++)
        CHECK_EQ(pthread_join(d[t], NULL), 0);
    /* Every page once more (which also maps back the pages raw madvise dropped behind the
     * region's back), then the invariants. */
    for (uint32_t p = 0; p < DN_PAGES; p++)
        expect_page(dn.base, p, dn.ver[p], dn.maybe_zero[p]);
    struct uz_region_stat st = stat_of(dn.r);
    fprintf(stderr, "dontneed: %ld ops, %ld madvise, %ld discards, %llu swapouts\n",
            atomic_load(&dn.ops), atomic_load(&dn.drops), atomic_load(&dn.discards),
            (unsigned long long)st.swapouts);
    CHECK(st.swapouts > 1000);
    CHECK(atomic_load(&dn.drops) > 10 && atomic_load(&dn.discards) > 10);
    CHECK_EQ(st.failed, 0);
    quiesce_and_check(dn.r);
    uz_region_destroy(dn.r);
    for (uint32_t p = 0; p < DN_PAGES; p++)
        pthread_mutex_destroy(&dn.lock[p]);
    alarm(0);
}

/* ---- discard: every kind of page ---- */

static void t_discard(void)
{
    alarm(60);
    const size_t n = 64;
    struct uz_region *r = make(n, 0);
    unsigned char *b = uz_region_base(r);
    for (size_t p = 0; p < n; p++)
        fill_page(b, p, 3);
    CHECK_EQ(uz_region_swapout(r, b, 32 * PAGE), 32); /* 0..31 swapped */
    for (size_t p = 24; p-- > 16;)
        expect_page(b, p, 3, false); /* 16..23 clean (the swap cache); backwards: no readahead */
    CHECK_EQ(uz_region_pin(r, b + 40 * PAGE, PAGE), 0);
    struct uz_region_stat s0 = stat_of(r);
    CHECK_EQ(s0.swapped_pages, 24);
    CHECK_EQ(s0.clean_pages, 8);
    CHECK_EQ(uz_region_discard(r, b + 1, PAGE), -EINVAL);
    CHECK_EQ(uz_region_discard(r, b + n * PAGE, PAGE), -EINVAL);
    /* Swapped 8..15, clean 16..23, dirty 32..39, the pinned 40, never-written is not possible
     * here; then a partial page length rounds up. */
    CHECK_EQ(uz_region_discard(r, b + 8 * PAGE, 33 * PAGE - 100), 0);
    struct uz_region_stat s1 = stat_of(r);
    CHECK_EQ(s1.swapped_pages, 8);
    CHECK_EQ(s1.clean_pages, 0);
    CHECK_EQ(s1.resident_pages, s0.resident_pages - 16);
    CHECK_EQ(s1.pinned_pages, 1);
    CHECK(s1.orig_data_size <= s0.orig_data_size - 16 * PAGE); /* stored copies freed */
    for (size_t p = 0; p < n; p++)
        expect_page(b, p, p >= 8 && p <= 40 ? 0 : 3, false);
    fill_page(b, 40, 4); /* still pinned and writable */
    CHECK_EQ(uz_region_unpin(r, b + 40 * PAGE, PAGE), 0);
    CHECK_EQ(uz_region_discard(r, b, n * PAGE), 0);
    struct uz_region_stat s2 = stat_of(r);
    CHECK_EQ(s2.swapped_pages + s2.resident_pages, 0);
    CHECK_EQ(s2.orig_data_size, 0);
    for (size_t p = 0; p < n; p++)
        expect_page(b, p, 0, false);
    quiesce_and_check(r);
    uz_region_destroy(r);
    alarm(0);
}

/* ---- pin: concurrent pinners against a small limit ---- */

#define PN_PAGES   1024u
#define PN_LIMIT   64u
#define PN_THREADS 8
#define PN_ROUNDS  600

static struct {
    struct uz_region *r;
    unsigned char *base;
    atomic_bool stop;
    atomic_long ok, refused;
    pthread_barrier_t start;
} pn;

static void *pn_pinner(void *arg)
{
    uintptr_t t = (uintptr_t)arg;
    uint64_t seed = 0x9191 + t * 0x9e3779b97f4a7c15ull;
    /* Even threads share pages 0..63; odd ones each have 128 pages of their own. */
    uint32_t area = t % 2 ? 256 + (uint32_t)(t / 2) * 128 : 0, span = t % 2 ? 128 : 64;
    for (unsigned round = 0; round < PN_ROUNDS; round++) {
        /* All start together (the old budget check raced exactly so); the second half of
         * the rounds are random lengths, the first half are 16 pages. */
        pthread_barrier_wait(&pn.start);
        uint64_t x = uzt_rand(&seed);
        uint32_t len = round < PN_ROUNDS / 2 ? 16 : 1 + (uint32_t)(x % 16);
        uint32_t p = area + (uint32_t)((x >> 8) % (span - len));
        unsigned char *a = pn.base + (size_t)p * PAGE;
        int rc = uz_region_pin(pn.r, a, (size_t)len * PAGE);
        if (rc == -ENOMEM) {
            atomic_fetch_add(&pn.refused, 1);
            continue;
        }
        CHECK_EQ(rc, 0);
        /* Pinned pages are resident and writable: a syscall into them works in any mode. */
        for (uint32_t k = 0; k < len; k++)
            a[(size_t)k * PAGE + (x % PAGE)] = (unsigned char)x;
        usleep(50); /* held a while, as around a system call */
        CHECK_EQ(uz_region_unpin(pn.r, a, (size_t)len * PAGE), 0);
        atomic_fetch_add(&pn.ok, 1);
    }
    return NULL;
}

static void *pn_toucher(void *arg)
{
    (void)arg;
    uint64_t seed = 0x7777;
    while (!atomic_load(&pn.stop)) {
        uint32_t p = 512 + (uint32_t)(uzt_rand(&seed) % (PN_PAGES - 512));
        pn.base[(size_t)p * PAGE] ^= 1;
    }
    return NULL;
}

static void t_pin(void)
{
    alarm(60);
    pn.r = make(PN_PAGES, PN_LIMIT);
    pn.base = uz_region_base(pn.r);
    pthread_t th[PN_THREADS + 1];
    CHECK_EQ(pthread_barrier_init(&pn.start, NULL, PN_THREADS), 0);
    /* Everything swapped out first: each pin needs room, and reclaim has to make it. */
    for (uint32_t p = 0; p < PN_PAGES; p++)
        pn.base[(size_t)p * PAGE] = 1;
    CHECK(uz_region_swapout(pn.r, pn.base, (size_t)PN_PAGES * PAGE) > 0);
    for (uintptr_t t = 0; t < PN_THREADS; t++)
        CHECK_EQ(pthread_create(&th[t], NULL, pn_pinner, (void *)t), 0);
    CHECK_EQ(pthread_create(&th[PN_THREADS], NULL, pn_toucher, NULL), 0);
    for (;;) {
        usleep(10000);
        if (atomic_load(&pn.ok) + atomic_load(&pn.refused) >= (long)PN_THREADS * PN_ROUNDS)
            break;
        struct uz_region_stat st = stat_of(pn.r);
        CHECK(st.pinned_pages <= PN_LIMIT / 2);
    }
    atomic_store(&pn.stop, true);
    for (int t = 0; t <= PN_THREADS; t++)
        CHECK_EQ(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&pn.start);
    fprintf(stderr, "pin: %ld pinned and unpinned, %ld refused (-ENOMEM)\n", atomic_load(&pn.ok),
            atomic_load(&pn.refused));
    CHECK(atomic_load(&pn.ok) > PN_ROUNDS);
    CHECK_EQ(stat_of(pn.r).pinned_pages, 0);
    CHECK_EQ(stat_of(pn.r).failed, 0);
    /* All the budget is back: half the limit can be pinned at once again. */
    CHECK_EQ(uz_region_pin(pn.r, pn.base, (PN_LIMIT / 2 - 1) * PAGE), 0);
    CHECK_EQ(uz_region_pin(pn.r, pn.base, PAGE), 0); /* nested: its claim is given back */
    CHECK_EQ(uz_region_pin(pn.r, pn.base + 100 * PAGE, PAGE), 0);
    CHECK_EQ(uz_region_pin(pn.r, pn.base + 101 * PAGE, PAGE), -ENOMEM);
    CHECK_EQ(stat_of(pn.r).pinned_pages, PN_LIMIT / 2);
    CHECK_EQ(uz_region_unpin(pn.r, pn.base, PAGE), 0);
    CHECK_EQ(uz_region_unpin(pn.r, pn.base + 100 * PAGE, PAGE), 0);
    CHECK_EQ(uz_region_unpin(pn.r, pn.base, (PN_LIMIT / 2 - 1) * PAGE), 0);
    quiesce_and_check(pn.r);
    uz_region_destroy(pn.r);
    alarm(0);
}

/* ---- mprotect: PROT_NONE and read-only ranges under reclaim ---- */

#define MP_PAGES 2048u
#define MP_LIMIT 128u

static struct {
    struct uz_region *r;
    unsigned char *base;
    uint32_t ver[MP_PAGES];
    atomic_long rounds;
} mp;

/* Thread t owns pages [t * MP_PAGES / 2, (t + 1) * MP_PAGES / 2). */
static void *mp_worker(void *arg)
{
    uintptr_t t = (uintptr_t)arg;
    uint32_t lo = (uint32_t)t * MP_PAGES / 2, n = MP_PAGES / 2;
    uint64_t seed = 0x3131 + t;
    double t0 = now_s();
    while (now_s() - t0 < 2.5) {
        uint64_t x = uzt_rand(&seed);
        uint32_t len = 1 + (uint32_t)(x % 32), p = lo + (uint32_t)((x >> 8) % (n - len));
        int prot = (x >> 40) % 2 ? PROT_NONE : PROT_READ;
        /* Dirty pages first, so that reclaim has to write them back while protected. */
        for (uint32_t k = 0; k < len; k++)
            fill_page(mp.base, p + k, ++mp.ver[p + k]);
        CHECK_EQ(mprotect(mp.base + (size_t)p * PAGE, (size_t)len * PAGE, prot), 0);
        /* Pressure elsewhere in our half: reclaim sweeps over the protected range. */
        for (unsigned i = 0; i < 3 * MP_LIMIT; i++) {
            uint32_t q = lo + (uint32_t)(uzt_rand(&seed) % n);
            if (q >= p && q < p + len) {
                if (prot == PROT_READ)
                    expect_page(mp.base, q, mp.ver[q], false);
                continue;
            }
            if (i % 2)
                fill_page(mp.base, q, ++mp.ver[q]);
            else
                expect_page(mp.base, q, mp.ver[q], false);
        }
        if ((x >> 48) % 4 == 0) /* an explicit swap-out over the protected range too */
            CHECK(uz_region_swapout(mp.r, mp.base + (size_t)p * PAGE, (size_t)len * PAGE) >= 0);
        CHECK_EQ(mprotect(mp.base + (size_t)p * PAGE, (size_t)len * PAGE, PROT_READ | PROT_WRITE),
                 0);
        for (uint32_t k = 0; k < len; k++)
            expect_page(mp.base, p + k, mp.ver[p + k], false);
        atomic_fetch_add(&mp.rounds, 1);
    }
    return NULL;
}

static void t_mprotect(void)
{
    alarm(120);
    mp.r = make(MP_PAGES, MP_LIMIT);
    mp.base = uz_region_base(mp.r);
    for (uint32_t p = 0; p < MP_PAGES; p++)
        fill_page(mp.base, p, mp.ver[p] = 1);
    pthread_t th[2];
    for (uintptr_t t = 0; t < 2; t++)
        CHECK_EQ(pthread_create(&th[t], NULL, mp_worker, (void *)t), 0);
    for (int t = 0; t < 2; t++)
        CHECK_EQ(pthread_join(th[t], NULL), 0);
    for (uint32_t p = 0; p < MP_PAGES; p++)
        expect_page(mp.base, p, mp.ver[p], false);
    struct uz_region_stat st = stat_of(mp.r);
    fprintf(stderr, "mprotect: %ld rounds, %llu swapouts, %llu writebacks\n",
            atomic_load(&mp.rounds), (unsigned long long)st.swapouts,
            (unsigned long long)st.writebacks);
    CHECK(st.swapouts > 1000);
    CHECK_EQ(st.failed, 0);
    quiesce_and_check(mp.r);
    uz_region_destroy(mp.r);
    alarm(0);
}

/* ---- stat: O(1) on a 64 GiB region, and equal to a full scan ---- */

static void t_stat(void)
{
    alarm(120);
    const size_t pages = (64ull << 30) / PAGE;
    struct uz_region *r = make(pages, 4096);
    unsigned char *b = uz_region_base(r);
    /* A stress phase: pages all over the region, written, read, swapped out and in. */
    uint64_t seed = 0xabcd;
    for (unsigned round = 0; round < 3; round++)
        for (unsigned i = 0; i < 6000; i++) {
            uint64_t p = (uzt_rand(&seed) % 8000) * (pages / 8000);
            if (round == 1 && i % 3 == 0)
                (void)*(volatile unsigned char *)(b + p * PAGE);
            else
                b[p * PAGE + i % PAGE] = (unsigned char)i;
        }
    quiesce_and_check(r); /* everything swapped out */
    /* Some pages back, clean and dirty, below the limit (reclaim stays idle). */
    for (unsigned i = 0; i < 1500; i++) {
        uint64_t p = (uzt_rand(&seed) % 8000) * (pages / 8000);
        if (i % 2)
            (void)*(volatile unsigned char *)(b + p * PAGE);
        else
            b[p * PAGE] ^= 1;
    }
    uz_dev_flush(uz_region_dev(r));
    usleep(20000);
    double best = 1e9;
    struct uz_region_stat st;
    for (int k = 0; k < 7; k++) {
        double t0 = now_s();
        CHECK_EQ(uz_region_stat(r, &st), 0);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    struct uz_region_check_result res;
    CHECK_EQ(uz_region_check(r, &res), 0);
    fprintf(stderr,
            "stat: 64 GiB region, best of 7 %.3f ms; %llu dirty, %llu clean, %llu wb, "
            "%llu swapped\n",
            best * 1e3, (unsigned long long)st.dirty_pages, (unsigned long long)st.clean_pages,
            (unsigned long long)st.writeback_pages, (unsigned long long)st.swapped_pages);
    CHECK(best < 0.005); /* a sanity bound: the scan took about 40 ms */
    CHECK(st.swapouts > 0 && st.swapped_pages > 0 && st.clean_pages > 0 && st.dirty_pages > 0);
    CHECK_EQ(st.dirty_pages, res.dirty);
    CHECK_EQ(st.clean_pages, res.clean);
    CHECK_EQ(st.writeback_pages, res.writeback);
    CHECK_EQ(st.swapped_pages, res.swapped);
    CHECK_EQ(st.resident_pages, res.resident);
    CHECK_EQ(st.pinned_pages, res.pinned);
    uz_region_destroy(r);
    alarm(0);
}

/* ---- create: the page words of a 16 GiB region are neither populated nor locked whole ---- */

static void t_create(void)
{
    alarm(60);
    double best = 1e9;
    for (int k = 0; k < 3; k++) {
        double t0 = now_s();
        struct uz_region *r = make((16ull << 30) / PAGE, 8192);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
        unsigned char *b = uz_region_base(r);
        b[0] = 1;
        b[(16ull << 30) - 1] = 2;
        CHECK_EQ(b[0] + b[(16ull << 30) - 1], 3);
        check_region(r);
        uz_region_destroy(r);
    }
    fprintf(stderr, "create: 16 GiB region, best of 3 %.3f ms\n", best * 1e3);
#if defined(__SANITIZE_THREAD__)
    /* TSan's interceptors (mmap, mlock, thread start) alone cost 4-6 ms per create here; the
     * normal build and ASan check the bound, this build checks that it all works. */
    CHECK(best < 0.05);
#else
    CHECK(best < 0.005);          /* a sanity bound: populating and locking 32 MiB took 10-27 ms */
#endif
    alarm(0);
}

/* Frees with no swap-outs behind them (discards of scattered pages) leave the pool sparse:
 * the reclaim thread compacts it once idle (issue 8: the pool stayed at 1.49x its data). */
static void t_compact(void)
{
    alarm(60);
    const size_t n = 16384;
    struct uz_region *r = make(n, n / 2); /* a limit, so that there is a reclaim thread */
    unsigned char *b = uz_region_base(r);
    for (size_t p = 0; p < n; p++)
        fill_page(b, p, 5);
    CHECK(uz_region_swapout(r, b, n * PAGE) >= 0); /* reclaim took some already */
    for (size_t p = 0; p < n; p++)
        if (p % 4)
            CHECK_EQ(uz_region_discard(r, b + p * PAGE, PAGE), 0);
    struct uz_region_stat st = stat_of(r);
    fprintf(stderr, "after discards: compr %llu mem_used %llu\n",
            (unsigned long long)st.compr_data_size, (unsigned long long)st.mem_used_total);
    double t0 = now_s();
    while (st.mem_used_total > st.compr_data_size + st.compr_data_size / 8 + (1u << 20) &&
           now_s() - t0 < 10) {
        usleep(100 * 1000);
        st = stat_of(r);
    }
    fprintf(stderr, "after %.1f s idle: compr %llu mem_used %llu\n", now_s() - t0,
            (unsigned long long)st.compr_data_size, (unsigned long long)st.mem_used_total);
    CHECK(st.mem_used_total <= st.compr_data_size + st.compr_data_size / 8 + (1u << 20));
    for (size_t p = 0; p < n; p += 97)
        expect_page(b, p, p % 4 ? 0 : 5, false);
    uz_region_destroy(r);
    alarm(0);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

/* What a region costs before it is touched (issue 8: 50 untouched regions cost 132 MB). */
static void t_fixed(void)
{
    alarm(60);
    enum { N = 20 };
    struct uz_region *r[N];
    r[0] = make(1u << 18, 1u << 14); /* the first pays for the threads' and allocators' set-up */
    long before = rss_kb();
    for (int i = 1; i < N; i++)
        r[i] = make(1u << 18, 1u << 14); /* 1 GiB, 64 MiB resident */
    long per = (rss_kb() - before) / (N - 1);
    fprintf(stderr, "an untouched 1 GiB region: %ld KiB resident\n", per);
#if defined(__SANITIZE_THREAD__)
    /* TSan's shadow and its allocator multiply every resident byte; the normal build and ASan
     * check the bound, this build checks that it all works. */
    CHECK(per > 0);
#elif defined(__SANITIZE_ADDRESS__)
    CHECK(per > 0 && per < 2048); /* redzones and quarantine on top of the 1 MiB */
#else
    CHECK(per > 0 && per < 1024);
#endif
    for (int i = 0; i < N; i++)
        uz_region_destroy(r[i]);
    alarm(0);
}

/* ---- unprot: writes that land while an eviction is in flight without write-protection ---- */

#define UP_PAGES   2048u
#define UP_LIMIT   96u
#define UP_THREADS 4

static struct {
    struct uz_region *r;
    unsigned char *base;
    uint32_t ver[UP_PAGES]; /* page p is written by thread p % UP_THREADS only */
    atomic_bool stop;
    atomic_long ops;
} up;

/* Rewrites its pages word by word (so a snapshot taken meanwhile is torn) after checking them,
 * a small hot set most of the time, so that pages are written while reclaim evicts them. */
static void *up_writer(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    uint64_t seed = 0xa11ce + t * 0x9e3779b97f4a7c15ull;
    long n = 0;
    while (!atomic_load_explicit(&up.stop, memory_order_relaxed)) {
        uint64_t x = uzt_rand(&seed);
        uint32_t p =
            (uint32_t)((x % 4 ? (x >> 8) % 256 : (x >> 8) % UP_PAGES) & ~(UP_THREADS - 1u));
        p += t;
        expect_page(up.base, p, up.ver[p], false);
        fill_page(up.base, p, ++up.ver[p]);
        n++;
    }
    atomic_fetch_add(&up.ops, n);
    return NULL;
}

static void t_unprot(void)
{
    alarm(120);
    up.r = make(UP_PAGES, UP_LIMIT);
    up.base = uz_region_base(up.r);
    atomic_store(&up.stop, false);
    for (uint32_t p = 0; p < UP_PAGES; p++) {
        up.ver[p] = 1;
        fill_page(up.base, p, 1);
    }
    pthread_t t[UP_THREADS];
    for (uintptr_t i = 0; i < UP_THREADS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, up_writer, (void *)i), 0);
    double end = now_s() + (UZT_SANITIZED ? 2.0 : 3.0);
    struct uz_region_stat st = stat_of(up.r);
    /* Until the mismatch path ran (a write landed between snapshot and move) for a while. */
    while (now_s() < end ||
           (st.move_eviction && st.evict_saved + st.evict_restored < 10 && now_s() < end + 30)) {
        usleep(20000);
        st = stat_of(up.r);
    }
    atomic_store(&up.stop, true);
    for (int i = 0; i < UP_THREADS; i++)
        pthread_join(t[i], NULL);
    for (uint32_t p = 0; p < UP_PAGES; p++)
        expect_page(up.base, p, up.ver[p], false);
    st = stat_of(up.r);
    fprintf(stderr,
            "unprot: ops=%ld writebacks=%llu unprotected=%llu redirtied=%llu saved=%llu "
            "restored=%llu refused=%llu swapouts=%llu\n",
            atomic_load(&up.ops), (unsigned long long)st.writebacks,
            (unsigned long long)st.writebacks_unprotected, (unsigned long long)st.redirtied,
            (unsigned long long)st.evict_saved, (unsigned long long)st.evict_restored,
            (unsigned long long)st.evict_refused, (unsigned long long)st.swapouts);
    CHECK(st.swapouts > UP_PAGES);
    if (st.move_eviction) {
        /* Evictions skip the write-protect; an explicit swap-out does not. */
        CHECK(st.writebacks_unprotected > 0 && st.writebacks_unprotected <= st.writebacks);
        CHECK(st.evict_saved + st.evict_restored >= 10);
        uint64_t before = st.writebacks_unprotected, wb = st.writebacks;
        for (uint32_t p = 0; p < 16; p++)
            fill_page(up.base, p, ++up.ver[p]);
        CHECK(uz_region_swapout(up.r, up.base, 16 * PAGE) >= 0);
        st = stat_of(up.r);
        CHECK(st.writebacks - wb > st.writebacks_unprotected - before);
    } else {
        CHECK_EQ(st.writebacks_unprotected, 0);
    }
    for (uint32_t p = 0; p < UP_PAGES; p++)
        expect_page(up.base, p, up.ver[p], false);
    quiesce_and_check(up.r);
    uz_region_destroy(up.r);
    alarm(0);
}

/* ---- stale: a swap-out after a write that landed on an unprotected eviction's snapshot ---- */

/* Regression (CI, stop 20: region_race found a page resident after its final swap-out): page p
 * is evicted unprotected (UZ_PG_UNPROT), written after the snapshot, then swapped out while
 * the reclaim thread sweeps (each fault maps a window of neighbours, which fills the limit).
 * Nothing writes p during the swap-out, so region.h says it is swapped out when the call
 * returns; it was left under writeback when the reclaim thread had started one that was not
 * queued yet at the swap-out's flush (and, where a drop puts a changed page back, DIRTY). */
static void t_stale(void)
{
    alarm(60);
    enum { NP = 64 };
    struct uz_region *r = make(NP, NP - 16);
    unsigned char *base = uz_region_base(r);
    if (!stat_of(r).move_eviction) {
        fprintf(stderr, "stale: evictions do not move pages: nothing to test\n");
        uz_region_destroy(r);
        return;
    }
    uint32_t ver[NP] = {0};
    unsigned left = 0, tries = 3000;
    for (unsigned i = 0; i < tries; i++) {
        uint64_t p = i % NP;
        fill_page(base, p, ++ver[p]);
        CHECK(uz_region_writeback(r, &p, 1, true) <= 1); /* snapshot taken, unprotected */
        fill_page(base, p, ++ver[p]);                    /* no fault: the snapshot is stale */
        CHECK(uz_region_swapout(r, base + p * PAGE, PAGE) >= 0);
        uint64_t w = atomic_load(&r->pages[p]);
        if (uz_pg_state(w) != UZ_PG_SWAPPED && left++ < 5)
            fprintf(stderr, "stale: page %llu left in state %u (word %#llx)\n",
                    (unsigned long long)p, uz_pg_state(w), (unsigned long long)w);
        expect_page(base, p, ver[p], false);
    }
    struct uz_region_stat st = stat_of(r);
    fprintf(stderr, "stale: %u of %u swap-outs left the page resident, restored=%llu\n", left,
            tries, (unsigned long long)st.evict_restored);
    CHECK_EQ(left, 0);
    quiesce_and_check(r);
    uz_region_destroy(r);
    alarm(0);
}

int main(int argc, char **argv)
{
    static const struct uzt_case cases[] = {
        {"discard", t_discard},   {"dontneed", t_dontneed}, {"pin", t_pin},
        {"mprotect", t_mprotect}, {"stat", t_stat},         {"create", t_create},
        {"compact", t_compact},   {"fixed", t_fixed},       {"unprot", t_unprot},
        {"stale", t_stale},
    };
    uzt_run_cases(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
    printf("test_region_v2: ok\n");
    return 0;
}
