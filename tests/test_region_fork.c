// SPDX-License-Identifier: MIT
/*
 * test_region_fork.c - fork() of a process with a live region (issue 8 item 7), against a
 * shadow of every page (its version: the contents follow from it):
 *   fork     a multithreaded parent (writers and verifiers on a region under heavy reclaim)
 *            forks, twice; each child verifies every page against the shadow, writes and reads
 *            more under its own resident limit (swapping in its copy-on-write view of the
 *            device), checks the region's invariants, destroys it and exits 0, while the parent
 *            keeps writing and verifying; then the parent verifies everything and checks its
 *            own invariants. (The region used to be MADV_DONTFORK: the child died of SIGSEGV at
 *            its first touch.)
 *   limit    the parent's resident limit holds after a fork, the child alive and then gone:
 *            its resident pages are shared copy-on-write, which UFFDIO_MOVE refuses like a
 *            pinned page; they used to become "kept" (uncounted), and the region's memory grew
 *            to twice its limit.
 *   latency  fork of a 1 GiB region with 768 MiB swapped out (128 MiB under the sanitizers):
 *            prints the latency in the parent and until the child runs, which checks a sample
 *            of pages; both must be well under a second (5 s under the sanitizers).
 * Every case runs under alarm() (the children set their own); fixed seeds. The program runs in
 * the normal, ASan and TSan builds (TSan: die_after_fork=0, see below).
 * Usage: test_region_fork [case...] (default: all).
 */
#include "harness.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UZT_FORK_THREADS /* its children start the region's threads again */
#include "region_harness.h"

#define PAGE UZ_PAGE_SIZE

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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

static void expect_page(const unsigned char *base, uint64_t p, uint64_t v, const char *who)
{
    const uint64_t *w = (const uint64_t *)(base + p * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++) {
        if (w[j] != word_of(p, v, j)) {
            fprintf(stderr, "%s: page %llu word %llu: %016llx, want version %llu (%016llx)\n", who,
                    (unsigned long long)p, (unsigned long long)j, (unsigned long long)w[j],
                    (unsigned long long)v, (unsigned long long)word_of(p, v, j));
            exit(1);
        }
    }
}

/* Swaps everything out, waits for the counters to settle and checks the invariants. */
static void quiesce_and_check(struct uz_region *r)
{
    CHECK(uz_region_swapout(r, uz_region_base(r), stat_of(r).size) >= 0);
    settle_and_check(r);
}

/* Pages of [base, base + pages) the kernel has mapped (mincore: resident anonymous pages). */
static uint64_t present_pages(unsigned char *base, uint64_t pages)
{
    unsigned char *vec = malloc(pages);
    CHECK(vec);
    CHECK_EQ(mincore(base, pages * PAGE, vec), 0);
    uint64_t n = 0;
    for (uint64_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

/* @return : the child's exit status, as a string for the failure message */
static void expect_exit0(pid_t pid, const char *who)
{
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "%s: child killed by signal %d (%s)\n", who, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
        exit(1);
    }
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
}

/* ---- fork: a multithreaded parent under reclaim forks; the child uses its copy ---- */

#define FK_PAGES   (UZT_SANITIZED ? 4096u : 8192u)
#define FK_LIMIT   (UZT_SANITIZED ? 512u : 1024u)
#define FK_WORKERS 3

static struct {
    struct uz_region *r;
    unsigned char *base;
    pthread_mutex_t lock[8192];
    uint32_t ver[8192];
    atomic_bool stop;
    atomic_long ops;
} fk;

/* The test's own fork handlers (registered after the library's, so its prepare runs first and
 * its child handler last): the writers park between two pages, so the shadow the child
 * inherits is exact. (One gate rather than every page's lock: TSan tracks at most 64 locks
 * held by one thread.) */
static struct {
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool pause;
    unsigned running, parked;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0};

static void fk_prepare(void)
{
    pthread_mutex_lock(&gate.m);
    gate.pause = true;
    while (gate.parked < gate.running)
        pthread_cond_wait(&gate.cv, &gate.m);
    pthread_mutex_unlock(&gate.m);
}

static void fk_parent(void)
{
    pthread_mutex_lock(&gate.m);
    gate.pause = false;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.m);
}

static void fk_child(void)
{
    /* The parked writers do not exist here; the condition may count them as waiters. */
    pthread_mutex_init(&gate.m, NULL);
    pthread_cond_init(&gate.cv, NULL);
    gate.pause = false;
    gate.running = gate.parked = 0;
}

static void fk_park(void)
{
    pthread_mutex_lock(&gate.m);
    gate.parked++;
    pthread_cond_broadcast(&gate.cv);
    while (gate.pause)
        pthread_cond_wait(&gate.cv, &gate.m);
    gate.parked--;
    pthread_mutex_unlock(&gate.m);
}

static void *fk_worker(void *arg)
{
    uint64_t seed = 0xf0f0 + (uintptr_t)arg * 0x9e3779b97f4a7c15ull;
    while (!atomic_load(&fk.stop)) {
        pthread_mutex_lock(&gate.m);
        bool pause = gate.pause;
        pthread_mutex_unlock(&gate.m);
        if (pause)
            fk_park();
        uint64_t x = uzt_rand(&seed);
        uint32_t p = (uint32_t)(x % FK_PAGES);
        pthread_mutex_lock(&fk.lock[p]);
        if ((x >> 32) % 3 == 0) {
            fk.ver[p]++;
            fill_page(fk.base, p, fk.ver[p]);
        } else {
            expect_page(fk.base, p, fk.ver[p], "parent");
        }
        pthread_mutex_unlock(&fk.lock[p]);
        atomic_fetch_add(&fk.ops, 1);
    }
    pthread_mutex_lock(&gate.m);
    gate.running--;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.m);
    return NULL;
}

/* The child: only this thread exists. */
static void fk_child_main(unsigned round)
{
    alarm(UZT_SANITIZED ? 240 : 60);
    struct uz_region *r = fk.r;
    struct uz_region_stat st0 = stat_of(r);
    CHECK_EQ(st0.failed, 0);
    for (unsigned p = 0; p < FK_PAGES; p++)
        expect_page(fk.base, p, fk.ver[p], "child");
    /* More than the limit, several times: the child swaps in and out on its own. */
    uint64_t seed = 0xc41d + round;
    for (unsigned k = 0; k < 6 * FK_PAGES; k++) {
        uint64_t x = uzt_rand(&seed);
        uint32_t p = (uint32_t)(x % FK_PAGES);
        if ((x >> 32) & 1) {
            fk.ver[p] += 1000;
            fill_page(fk.base, p, fk.ver[p]);
        } else {
            expect_page(fk.base, p, fk.ver[p], "child");
        }
    }
    for (unsigned p = 0; p < FK_PAGES; p++)
        expect_page(fk.base, p, fk.ver[p], "child");
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.failed, 0);
    CHECK(st.swapouts > st0.swapouts);
    CHECK(st.major_faults > st0.major_faults);
    quiesce_and_check(r);
    st = stat_of(r);
    CHECK(st.resident_pages + st.kept_pages <= FK_LIMIT);
    CHECK(present_pages(fk.base, FK_PAGES) <= FK_LIMIT + 16);
    for (unsigned p = 0; p < FK_PAGES; p++)
        expect_page(fk.base, p, fk.ver[p], "child");
    fprintf(stderr, "fork: child %u verified %u pages, swapouts %llu -> %llu\n", round, FK_PAGES,
            (unsigned long long)st0.swapouts, (unsigned long long)st.swapouts);
#ifndef __SANITIZE_THREAD__
    /* TSan (GCC 12's libtsan) keeps the parent's vanished threads registered in the child;
     * glibc reuses their stacks, hence their pthread_t, for the child's new threads, and
     * joining one aborts with "dup thread with used id" (exit 66): no destroy there. */
    uz_region_destroy(r);
#endif
    _exit(0);
}

static void case_fork(void)
{
    alarm(UZT_SANITIZED ? 600 : 120);
    fk.r = make(FK_PAGES, FK_LIMIT);
    fk.base = uz_region_base(fk.r);
    for (unsigned p = 0; p < FK_PAGES; p++) {
        pthread_mutex_init(&fk.lock[p], NULL);
        fk.ver[p] = 1;
        fill_page(fk.base, p, 1);
    }
    CHECK_EQ(pthread_atfork(fk_prepare, fk_parent, fk_child), 0);
    gate.running = FK_WORKERS;
    pthread_t t[FK_WORKERS];
    for (uintptr_t i = 0; i < FK_WORKERS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, fk_worker, (void *)i), 0);
    for (unsigned round = 0; round < 2; round++) {
        usleep(200000);
        struct uz_region_stat before = stat_of(fk.r);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            fk_child_main(round);
        long ops0 = atomic_load(&fk.ops);
        expect_exit0(pid, "fork");
        struct uz_region_stat after = stat_of(fk.r);
        fprintf(stderr,
                "fork: round %u, at the fork: %llu resident, %llu swapped, %llu under "
                "writeback; parent ops while the child ran: %ld\n",
                round, (unsigned long long)before.resident_pages,
                (unsigned long long)before.swapped_pages,
                (unsigned long long)before.writeback_pages, atomic_load(&fk.ops) - ops0);
        CHECK_EQ(after.failed, 0);
    }
    usleep(200000);
    atomic_store(&fk.stop, true);
    for (unsigned i = 0; i < FK_WORKERS; i++)
        pthread_join(t[i], NULL);
    for (unsigned p = 0; p < FK_PAGES; p++)
        expect_page(fk.base, p, fk.ver[p], "parent");
    quiesce_and_check(fk.r);
    struct uz_region_stat st = stat_of(fk.r);
    CHECK_EQ(st.failed, 0);
    CHECK(st.kept_pages <= 16);
    CHECK(present_pages(fk.base, FK_PAGES) <= FK_LIMIT + 16);
    for (unsigned p = 0; p < FK_PAGES; p++)
        expect_page(fk.base, p, fk.ver[p], "parent");
    uz_region_destroy(fk.r);
    fk.r = NULL; /* the handlers stay registered: with no writer running they do nothing */
}

/* ---- limit: the parent's resident limit after a fork ---- */

#define LM_PAGES 16384u
#define LM_LIMIT 2048u
#define LM_OLD   1536u

static void limit_phase(struct uz_region *r, unsigned char *base, uint64_t from, uint64_t to,
                        const char *when, uint64_t *present_out, uint64_t *kept_out)
{
    for (uint64_t p = from; p < to; p++)
        fill_page(base, p, 1);
    /* Reclaim runs behind the writes: let it catch up before measuring. */
    uint64_t present = 0;
    for (int i = 0; i < 200; i++) {
        present = present_pages(base, LM_PAGES);
        if (present <= LM_LIMIT)
            break;
        usleep(10000);
    }
    struct uz_region_stat st = stat_of(r);
    fprintf(stderr,
            "limit: %s: %llu pages present (limit %u), resident %llu, kept %llu, refused "
            "evictions %llu\n",
            when, (unsigned long long)present, LM_LIMIT, (unsigned long long)st.resident_pages,
            (unsigned long long)st.kept_pages, (unsigned long long)st.evict_refused);
    *present_out = present;
    *kept_out = st.kept_pages;
}

static void case_limit(void)
{
    alarm(UZT_SANITIZED ? 600 : 120);
    /* The swap cache unbounded: the case needs most of the limit CLEAN. */
    struct uz_region_config cfg = {.size = (size_t)LM_PAGES * PAGE,
                                   .resident_limit = (size_t)LM_LIMIT * PAGE,
                                   .clean_limit = SIZE_MAX};
    struct uz_region *r = make_cfg(&cfg);
    unsigned char *base = uz_region_base(r);
    if (!stat_of(r).move_eviction) {
        fprintf(stderr, "limit: no UFFDIO_MOVE (MADV_DONTNEED eviction drops shared pages as "
                        "it does any other): nothing to check\n");
        uz_region_destroy(r);
        return;
    }
    /* At the fork, 3/4 of the limit is CLEAN (swapped in and only read: the swap cache). A
     * DIRTY page's writeback unshares it anyway (its snapshot, process_vm_readv, pins it
     * read-only, which breaks the sharing); a CLEAN page is evicted without a snapshot. */
    uint64_t present, kept;
    limit_phase(r, base, 0, LM_OLD, "filled", &present, &kept);
    CHECK(uz_region_swapout(r, base, LM_OLD * PAGE) >= 0);
    for (uint64_t p = 0; p < LM_OLD; p++)
        expect_page(base, p, 1, "parent");
    struct uz_region_stat st = stat_of(r);
    fprintf(stderr, "limit: before the fork: %llu clean, %llu dirty\n",
            (unsigned long long)st.clean_pages, (unsigned long long)st.dirty_pages);
    CHECK(st.clean_pages >= LM_OLD * 3 / 4);
    int pfd[2];
    CHECK_EQ(pipe(pfd), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* Holds the shared pages until the parent is done. */
        alarm(UZT_SANITIZED ? 600 : 120);
        char c;
        close(pfd[1]);
        _exit(read(pfd[0], &c, 1) == 0 ? 0 : 1);
    }
    close(pfd[0]);
    /* Every page resident at the fork is shared with the child now; new ones push them out. */
    limit_phase(r, base, LM_OLD, LM_PAGES / 2, "fork, child alive", &present, &kept);
    CHECK(present <= LM_LIMIT + LM_LIMIT / 16);
    CHECK(kept <= 16);
    close(pfd[1]);
    expect_exit0(pid, "limit");
    /* The child is gone, but the parent's pages are not marked exclusive again by that. */
    limit_phase(r, base, LM_PAGES / 2, LM_PAGES, "child gone", &present, &kept);
    CHECK(present <= LM_LIMIT + LM_LIMIT / 16);
    CHECK(kept <= 16);
    for (uint64_t p = 0; p < LM_PAGES; p++)
        expect_page(base, p, 1, "parent");
    quiesce_and_check(r);
    CHECK(stat_of(r).kept_pages <= 16);
    uz_region_destroy(r);
}

/* ---- latency: fork of a 1 GiB region with 768 MiB swapped out ---- */

static void case_latency(void)
{
    alarm(UZT_SANITIZED ? 900 : 180);
    const uint64_t pages = UZT_SANITIZED ? 32768 : 262144, limit = pages / 4;
    struct uz_region *r = make(pages, limit);
    unsigned char *base = uz_region_base(r);
    double t = now_s();
    for (uint64_t p = 0; p < pages; p++)
        fill_page(base, p, 1);
    struct uz_region_stat st = stat_of(r);
    fprintf(stderr,
            "latency: %llu MiB region filled in %.2f s: %llu MiB resident, %llu MiB swapped "
            "(%llu MiB compressed, pool %llu MiB)\n",
            (unsigned long long)(pages * PAGE >> 20), now_s() - t,
            (unsigned long long)(st.resident_pages * PAGE >> 20),
            (unsigned long long)(st.swapped_pages * PAGE >> 20),
            (unsigned long long)(st.compr_data_size >> 20),
            (unsigned long long)(st.mem_used_total >> 20));
    CHECK(st.swapped_pages >= pages * 5 / 8);
    double worst_parent = 0, worst_child = 0;
    for (int round = 0; round < 3; round++) {
        int pfd[2];
        CHECK_EQ(pipe(pfd), 0);
        double t0 = now_s();
        pid_t pid = fork();
        double t1 = now_s();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(UZT_SANITIZED ? 600 : 60);
            close(pfd[0]);
            if (write(pfd[1], &t1, sizeof(t1)) != (ssize_t)sizeof(t1))
                _exit(2);
            /* A sample: resident and swapped pages alike, then a few writes. */
            for (uint64_t p = 0; p < pages; p += 61)
                expect_page(base, p, 1, "child");
            for (uint64_t p = 7; p < pages; p += 997) {
                fill_page(base, p, 2);
                expect_page(base, p, 2, "child");
            }
            CHECK_EQ(stat_of(r).failed, 0);
            _exit(0);
        }
        close(pfd[1]);
        double tc = 0;
        CHECK_EQ(read(pfd[0], &tc, sizeof(tc)), (ssize_t)sizeof(tc));
        close(pfd[0]);
        expect_exit0(pid, "latency");
        fprintf(stderr,
                "latency: round %d: fork() returned in the parent after %.1f ms, in the "
                "child after %.1f ms\n",
                round, (t1 - t0) * 1e3, (tc - t0) * 1e3);
        if (t1 - t0 > worst_parent)
            worst_parent = t1 - t0;
        if (tc - t0 > worst_child)
            worst_child = tc - t0;
    }
    double bound = UZT_SANITIZED ? 5.0 : 1.0;
    CHECK(worst_parent < bound);
    CHECK(worst_child < bound);
    for (uint64_t p = 0; p < pages; p += 61)
        expect_page(base, p, 1, "parent");
    uz_region_destroy(r);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"fork", case_fork}, {"limit", case_limit}, {"latency", case_latency}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        bool run = argc < 2;
        for (int a = 1; a < argc; a++)
            run |= strcmp(argv[a], cases[c].name) == 0;
        if (!run)
            continue;
        double t = now_s();
        cases[c].fn();
        fprintf(stderr, "%s: ok (%.2f s)\n", cases[c].name, now_s() - t);
    }
    return 0;
}
