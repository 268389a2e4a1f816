// SPDX-License-Identifier: MIT
/*
 * test_region_mem.c - the application's mappings calls on region memory, told to the region
 * by userfaultfd's REMOVE, UNMAP and REMAP events (issue 8), checked page by page against
 * what each page must hold, under heavy reclaim (a resident limit far below the pages used):
 *   remove   raw madvise(MADV_DONTNEED / MADV_FREE) over swapped-out, clean and dirty
 *            pages: all read back zeros (a swapped page used to come back with its old
 *            contents) and their stored copies are freed; the pages around are intact
 *   unmap    raw munmap, uz_region_unmap() and mmap(MAP_FIXED) over parts of the region
 *            while workers write and verify the rest: holes counted, stored copies and pins
 *            given back; the application's mappings placed in the holes are never touched
 *            by reclaim or faults and outlive uz_region_destroy()
 *   mremap   shrinking (a hole), growing back in place (uz_region_remap and raw mremap:
 *            zeros, usable and swappable again), growing over live pages (-ENOMEM), and
 *            moving region memory out with half of it swapped out: every page arrives
 *            with its contents, the old place is a hole
 *   churn    threads that munmap, re-map (grow in place) and madvise random chunks while
 *            others write and verify: no hang, no lost page, the checker agrees at the end
 *   fork     fork while threads unmap and re-map chunks: in the child every page its region
 *            calls its own is mapped (an UNMAP not handled before the fork used to leave the
 *            child a page that is not), the region has not failed, the checker agrees
 * Every case in FULL mode and, where the kernel sends events to it, user-only mode; under
 * alarm(). Runs in the normal, ASan and TSan builds.
 * Usage: test_region_mem [case...] (default: all).
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UZT_FORK_THREADS /* the fork case: its children start the region's threads again */
#include "region_harness.h"

#define PAGE UZ_PAGE_SIZE

/* Word j of page p at version v (v 0: zeros). */
static uint64_t word_of(uint64_t p, uint64_t v, uint64_t j)
{
    if (!v)
        return 0;
    return ((p << 32 | v << 12) ^ (j < 32 ? mix(j + 1) : 0x5a5a)) | 1;
}

static void fill(unsigned char *base, uint64_t p, uint64_t v)
{
    uint64_t *w = (uint64_t *)(base + p * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        w[j] = word_of(p, v, j);
}

static bool holds(const unsigned char *base, uint64_t p, uint64_t v)
{
    const uint64_t *w = (const uint64_t *)(base + p * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        if (w[j] != word_of(p, v, j))
            return false;
    return true;
}

static void expect(const unsigned char *base, uint64_t p, uint64_t v, const char *what)
{
    if (holds(base, p, v))
        return;
    const uint64_t *w = (const uint64_t *)(base + p * PAGE);
    fprintf(stderr, "%s: page %llu holds %016llx..., want version %llu (%016llx...)\n", what,
            (unsigned long long)p, (unsigned long long)w[0], (unsigned long long)v,
            (unsigned long long)word_of(p, v, 0));
    exit(1);
}

/* A region in the mode asked for; NULL (and a note) where the kernel sends it no events. */
static struct uz_region *make_mode(size_t pages, size_t limit, bool user_only, bool need_remove)
{
    uz_region_force_user_mode = user_only;
    struct uz_region *r = make(pages, limit);
    int probed = uz_region_probe(); /* the mode a region gets, without making one */
    uz_region_force_user_mode = false;
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(probed, st.mode);
    if (!st.events || (need_remove && !st.remove_events)) {
        fprintf(stderr, "  (%s mode: no %s events here: skipped)\n",
                user_only ? "user-only" : "full", need_remove ? "remove" : "unmap");
        uz_region_destroy(r);
        return NULL;
    }
    CHECK_EQ(st.mode, user_only ? UZ_REGION_MODE_USER_ONLY : UZ_REGION_MODE_FULL);
    return r;
}

/* Waits (up to 5 s) until the region counts `holes` hole pages. */
static void wait_holes(struct uz_region *r, uint64_t holes)
{
    for (int k = 0; k < 5000 && stat_of(r).hole_pages != holes; k++)
        usleep(1000);
    CHECK_EQ(stat_of(r).hole_pages, holes);
}

/* ---- remove ---- */

static void remove_once(bool user_only, int advice)
{
    enum { N = 512, LIMIT = 64 };
    struct uz_region *r = make_mode(N, LIMIT, user_only, true);
    if (!r)
        return;
    unsigned char *b = uz_region_base(r);
    for (uint64_t p = 0; p < N; p++)
        fill(b, p, 1);
    /* 0..191 swapped out; 128..191 then read back (CLEAN, the swap cache); 192..255 written
     * again (DIRTY); the rest as reclaim left it. */
    CHECK(uz_region_swapout(r, b, 256 * PAGE) >= 0);
    for (uint64_t p = 128; p < 192; p++)
        expect(b, p, 1, "read back");
    for (uint64_t p = 192; p < 256; p++)
        fill(b, p, 2);
    struct uz_region_stat before = stat_of(r);
    CHECK(before.swapped_pages >= 64);
    CHECK_EQ(madvise(b + 64 * PAGE, 160 * PAGE, advice), 0); /* pages 64..223 */
    /* The stored copies of the dropped pages are gone (the event is handled just after the
     * call returns): what is stored is at most the pages outside the range, until a page of
     * the range is touched again (zeros are stored too, as same-filled pages). */
    struct uz_region_stat st = stat_of(r);
    for (int k = 0; k < 2000 && st.orig_data_size > (uint64_t)(N - 160) * PAGE; k++) {
        usleep(1000);
        st = stat_of(r);
    }
    CHECK(st.orig_data_size <= (uint64_t)(N - 160) * PAGE);
    for (uint64_t p = 0; p < N; p++) {
        uint64_t was = p >= 192 && p < 256 ? 2 : 1;
        bool dropped = p >= 64 && p < 224;
        /* MADV_FREE: a page the kernel has not freed yet keeps its contents (as on any
         * memory); a swapped-out page reads zeros. */
        if (dropped && advice == MADV_FREE && holds(b, p, was))
            continue;
        expect(b, p, dropped ? 0 : was, "after madvise");
    }
    settle_and_check(r);
    CHECK_EQ(stat_of(r).failed, 0);
    fprintf(stderr, "  %s %s: stored %llu -> %llu bytes\n", user_only ? "user-only" : "full",
            advice == MADV_FREE ? "MADV_FREE" : "MADV_DONTNEED",
            (unsigned long long)before.orig_data_size, (unsigned long long)st.orig_data_size);
    uz_region_destroy(r);
}

static void t_remove(void)
{
    alarm(120);
    for (int u = 0; u < 2; u++) {
        remove_once(u, MADV_DONTNEED);
        remove_once(u, MADV_FREE);
    }
    alarm(0);
}

/* ---- unmap ---- */

enum { UN_PAGES = 1024, UN_LIMIT = 64, UN_HOLE = 256, UN_HOLE_END = 512 };

static struct {
    unsigned char *b;
    uint32_t ver[UN_PAGES];
    atomic_bool stop;
    atomic_long ops;
} un;

/* Writes and verifies the pages outside the holes; worker t owns the pages p % 2 == t. */
static void *un_worker(void *arg)
{
    uintptr_t t = (uintptr_t)arg;
    uint64_t seed = 0xabc + t;
    while (!atomic_load(&un.stop)) {
        uint64_t x = uzt_rand(&seed);
        uint64_t p = (x % (UN_PAGES / 2)) * 2 + t;
        if (p >= UN_HOLE && p < UN_HOLE_END)
            continue;
        if ((x >> 40) % 4 == 0) {
            un.ver[p]++;
            fill(un.b, p, un.ver[p]);
        } else {
            expect(un.b, p, un.ver[p], "worker");
        }
        atomic_fetch_add(&un.ops, 1);
    }
    return NULL;
}

static void unmap_once(bool user_only)
{
    struct uz_region *r = make_mode(UN_PAGES, UN_LIMIT, user_only, false);
    if (!r)
        return;
    unsigned char *b = un.b = uz_region_base(r);
    for (uint64_t p = 0; p < UN_PAGES; p++) {
        un.ver[p] = 1;
        fill(b, p, 1);
    }
    /* A pinned page inside the first hole: its pin goes with it. */
    CHECK_EQ(uz_region_pin(r, b + 300 * PAGE, PAGE), 0);
    CHECK_EQ(stat_of(r).pinned_pages, 1);
    atomic_store(&un.stop, false);
    pthread_t w[2];
    for (uintptr_t t = 0; t < 2; t++)
        CHECK_EQ(pthread_create(&w[t], NULL, un_worker, (void *)t), 0);
    usleep(200000);
    uint64_t stored = stat_of(r).orig_data_size;

    /* Raw munmap of 256..383, then the application maps its own memory there. */
    CHECK_EQ(munmap(b + UN_HOLE * PAGE, 128 * PAGE), 0);
    wait_holes(r, 128);
    CHECK_EQ(stat_of(r).pinned_pages, 0);
    unsigned char *mine = mmap(b + UN_HOLE * PAGE, 128 * PAGE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(mine == b + UN_HOLE * PAGE);
    for (uint64_t p = UN_HOLE; p < UN_HOLE + 128; p++)
        fill(b, p, 1000);
    /* uz_region_unmap() of 384..447, and mmap(MAP_FIXED) straight over 448..511. */
    CHECK_EQ(uz_region_unmap(r, b + 384 * PAGE, 64 * PAGE), 0);
    CHECK_EQ(stat_of(r).hole_pages, 192);
    unsigned char *over = mmap(b + 448 * PAGE, 64 * PAGE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(over == b + 448 * PAGE);
    wait_holes(r, 256);
    for (uint64_t p = 448; p < UN_HOLE_END; p++)
        fill(b, p, 2000);
    CHECK_EQ(uz_region_unmap(r, b + 100 * PAGE, 3), -EINVAL); /* not page-sized */
    CHECK_EQ(uz_region_protect(r, b + 250 * PAGE, 10 * PAGE, PROT_READ), -ENOMEM); /* a hole */
    CHECK_EQ(uz_region_pin(r, b + 260 * PAGE, PAGE), -EINVAL);
    /* The descriptors a runner must keep the application from closing: live ones. */
    int fds[4];
    int nfd = uz_region_fds(r, fds, 4);
    CHECK(nfd >= 1 && nfd <= 3);
    for (int k = 0; k < nfd; k++)
        CHECK(fcntl(fds[k], F_GETFD) >= 0);
    CHECK_EQ(uz_region_fds(r, NULL, 0), nfd);

    /* Reclaim and the workers go on around the application's mappings. */
    long ops0 = atomic_load(&un.ops);
    uint64_t swapouts0 = stat_of(r).swapouts;
    sleep(1);
    atomic_store(&un.stop, true);
    for (int t = 0; t < 2; t++)
        CHECK_EQ(pthread_join(w[t], NULL), 0);
    struct uz_region_stat st = stat_of(r);
    CHECK(atomic_load(&un.ops) > ops0);
    CHECK(st.swapouts > swapouts0);
    for (uint64_t p = UN_HOLE; p < UN_HOLE_END; p++)
        if (p < 384 || p >= 448) /* 384..447: nothing mapped */
            expect(b, p, p < 384 ? 1000 : 2000, "application mapping");
    unsigned char vec[128];
    CHECK_EQ(mincore(mine, 128 * PAGE, vec), 0);
    for (int k = 0; k < 128; k++)
        CHECK(vec[k] & 1); /* never evicted: not the region's */
    for (uint64_t p = 0; p < UN_PAGES; p++)
        if (p < UN_HOLE || p >= UN_HOLE_END)
            expect(b, p, un.ver[p], "region");
    CHECK(st.orig_data_size < stored + (uint64_t)(UN_PAGES - 256) * PAGE);
    CHECK(st.orig_data_size <= (uint64_t)(UN_PAGES - 256) * PAGE);
    CHECK_EQ(st.failed, 0);
    settle_and_check(r);
    fprintf(stderr, "  %s: %ld ops, %llu swapouts, %llu holes\n", user_only ? "user-only" : "full",
            atomic_load(&un.ops), (unsigned long long)st.swapouts,
            (unsigned long long)st.hole_pages);
    uz_region_destroy(r);
    /* The application's mappings outlive the region. */
    for (uint64_t p = UN_HOLE; p < UN_HOLE + 128; p++)
        expect(b, p, 1000, "after destroy");
    for (uint64_t p = 448; p < UN_HOLE_END; p++)
        expect(b, p, 2000, "after destroy");
    CHECK_EQ(munmap(mine, 128 * PAGE), 0);
    CHECK_EQ(munmap(over, 64 * PAGE), 0);
}

static void t_unmap(void)
{
    alarm(120);
    unmap_once(false);
    unmap_once(true);
    alarm(0);
}

/* ---- mremap ---- */

static void mremap_once(bool user_only)
{
    enum { N = 1024, LIMIT = 64 };
    struct uz_region *r = make_mode(N, LIMIT, user_only, false);
    if (!r)
        return;
    unsigned char *b = uz_region_base(r);
    for (uint64_t p = 0; p < N; p++)
        fill(b, p, 1);
    /* Shrink 100..149 to 100..119: 120..149 a hole. */
    CHECK(mremap(b + 100 * PAGE, 50 * PAGE, 20 * PAGE, 0) == b + 100 * PAGE);
    wait_holes(r, 30);
    /* Growing over live pages: refused, nothing changes. */
    CHECK_EQ(uz_region_remap(r, b + 200 * PAGE, 10 * PAGE, 20 * PAGE), -ENOMEM);
    CHECK_EQ(uz_region_remap(r, b + 100 * PAGE, 20 * PAGE, 0), -EINVAL);
    CHECK_EQ(uz_region_remap(r, b + (N - 10) * PAGE, 10 * PAGE, 20 * PAGE), -EINVAL);
    /* Grow back in place: zeros, then usable and swappable like any region page. */
    CHECK_EQ(uz_region_remap(r, b + 100 * PAGE, 20 * PAGE, 50 * PAGE), 0);
    CHECK_EQ(stat_of(r).hole_pages, 0);
    for (uint64_t p = 100; p < 150; p++) {
        expect(b, p, p < 120 ? 1 : 0, "grown back");
        fill(b, p, 3);
    }
    CHECK(uz_region_swapout(r, b + 100 * PAGE, 50 * PAGE) > 0);
    for (uint64_t p = 100; p < 150; p++)
        expect(b, p, 3, "grown back, swapped");
    /* Shrink with the library, grow with a raw mremap. */
    CHECK_EQ(uz_region_remap(r, b + 100 * PAGE, 50 * PAGE, 10 * PAGE), 0);
    CHECK_EQ(stat_of(r).hole_pages, 40);
    CHECK(mremap(b + 100 * PAGE, 10 * PAGE, 50 * PAGE, 0) == b + 100 * PAGE);
    for (uint64_t p = 100; p < 150; p++)
        expect(b, p, p < 110 ? 3 : 0, "raw grow");
    wait_holes(r, 0); /* each page HOLE -> EMPTY at its first fault */

    /* Move 600..799 out, half of it swapped out: every page arrives with its contents. */
    CHECK(uz_region_swapout(r, b + 600 * PAGE, 100 * PAGE) >= 0);
    CHECK(stat_of(r).swapped_pages >= 50);
    unsigned char *to = mmap(NULL, 200 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(to != MAP_FAILED);
    CHECK(mremap(b + 600 * PAGE, 200 * PAGE, 200 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to) == to);
    wait_holes(r, 200);
    for (uint64_t k = 0; k < 200; k++) {
        const uint64_t *w = (const uint64_t *)(to + k * PAGE);
        for (uint64_t j = 0; j < PAGE / 8; j++)
            if (w[j] != word_of(600 + k, 1, j)) {
                fprintf(stderr, "moved page %llu word %llu: %016llx\n", (unsigned long long)k,
                        (unsigned long long)j, (unsigned long long)w[j]);
                CHECK(0);
            }
    }
    memset(to, 0x77, 200 * PAGE); /* plain memory now: writable, no fault reaches the region */
    for (uint64_t p = 0; p < N; p++)
        if (p < 600 || p >= 800)
            expect(b, p, p >= 100 && p < 110 ? 3 : p >= 100 && p < 150 ? 0 : 1, "region");
    settle_and_check(r);
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.failed, 0);
    CHECK(st.orig_data_size <= (uint64_t)(N - 200) * PAGE);
    fprintf(stderr, "  %s: %llu swapouts, %llu holes\n", user_only ? "user-only" : "full",
            (unsigned long long)st.swapouts, (unsigned long long)st.hole_pages);
    uz_region_destroy(r);
    for (uint64_t k = 0; k < 200 * PAGE; k += 997)
        CHECK_EQ(to[k], 0x77);
    CHECK_EQ(munmap(to, 200 * PAGE), 0);
}

static void t_mremap(void)
{
    alarm(120);
    mremap_once(false);
    mremap_once(true);
    alarm(0);
}

/* ---- churn ---- */

enum { CH_PAGES = 2048, CH_LIMIT = 128, CH_CHUNK = 16, CH_CHUNKS = CH_PAGES / CH_CHUNK };

static struct {
    struct uz_region *r;
    unsigned char *b;
    pthread_mutex_t lock[CH_CHUNKS]; /* a chunk: its pages, its mapping */
    bool mapped[CH_CHUNKS];
    uint32_t ver[CH_PAGES];
    atomic_bool stop;
    atomic_long ops, unmaps, remaps, drops;
} ch;

static void *ch_worker(void *arg)
{
    uint64_t seed = 0x5eed + (uintptr_t)arg;
    while (!atomic_load(&ch.stop)) {
        uint64_t x = uzt_rand(&seed);
        uint64_t p = x % CH_PAGES, c = p / CH_CHUNK;
        pthread_mutex_lock(&ch.lock[c]);
        if (ch.mapped[c]) {
            if ((x >> 40) % 3 == 0) {
                ch.ver[p]++;
                fill(ch.b, p, ch.ver[p]);
            } else {
                expect(ch.b, p, ch.ver[p], "churn");
            }
            atomic_fetch_add(&ch.ops, 1);
        }
        pthread_mutex_unlock(&ch.lock[c]);
    }
    return NULL;
}

/* Unmaps a chunk (raw or library), grows it back in place, or drops it with madvise. The
 * first and last chunk stay: a chunk grows back from the one before it, which must be mapped
 * (and not the region's first). */
static void *ch_mapper(void *arg)
{
    uint64_t seed = 0x3a9 + (uintptr_t)arg;
    while (!atomic_load(&ch.stop)) {
        uint64_t x = uzt_rand(&seed);
        uint64_t c = 1 + x % (CH_CHUNKS - 2);
        pthread_mutex_lock(&ch.lock[c - 1]);
        pthread_mutex_lock(&ch.lock[c]);
        unsigned char *a = ch.b + c * CH_CHUNK * PAGE;
        if (ch.mapped[c] && (x >> 32) % 3 == 0) {
            CHECK_EQ(madvise(a, CH_CHUNK * PAGE, MADV_DONTNEED), 0);
            for (uint64_t p = c * CH_CHUNK; p < (c + 1) * CH_CHUNK; p++)
                ch.ver[p] = 0;
            atomic_fetch_add(&ch.drops, 1);
        } else if (ch.mapped[c]) {
            if ((x >> 32) % 2)
                CHECK_EQ(munmap(a, CH_CHUNK * PAGE), 0);
            else
                CHECK_EQ(uz_region_unmap(ch.r, a, CH_CHUNK * PAGE), 0);
            ch.mapped[c] = false;
            atomic_fetch_add(&ch.unmaps, 1);
        } else if (ch.mapped[c - 1]) {
            /* The last page of the chunk before, grown over this one. */
            unsigned char *prev = a - PAGE;
            int rc = uz_region_remap(ch.r, prev, PAGE, (CH_CHUNK + 1) * PAGE);
            if (rc == 0) {
                ch.mapped[c] = true;
                for (uint64_t p = c * CH_CHUNK; p < (c + 1) * CH_CHUNK; p++)
                    ch.ver[p] = 0;
                atomic_fetch_add(&ch.remaps, 1);
            } else {
                /* A raw munmap's event can still be in flight: the holes are not all
                 * counted yet. */
                CHECK_EQ(rc, -ENOMEM);
            }
        }
        pthread_mutex_unlock(&ch.lock[c]);
        pthread_mutex_unlock(&ch.lock[c - 1]);
        usleep(100);
    }
    return NULL;
}

/* A region for the churn and fork cases, every chunk mapped, every page at version 1. @return :
 * false where the kernel sends no remove events (skipped). */
static bool ch_start(bool user_only)
{
    ch.r = make_mode(CH_PAGES, CH_LIMIT, user_only, true);
    if (!ch.r)
        return false;
    ch.b = uz_region_base(ch.r);
    for (uint64_t c = 0; c < CH_CHUNKS; c++) {
        pthread_mutex_init(&ch.lock[c], NULL);
        ch.mapped[c] = true;
    }
    for (uint64_t p = 0; p < CH_PAGES; p++) {
        ch.ver[p] = 1;
        fill(ch.b, p, 1);
    }
    atomic_store(&ch.stop, false);
    return true;
}

static void ch_finish(void)
{
    uz_region_destroy(ch.r);
    for (uint64_t c = 0; c < CH_CHUNKS; c++)
        pthread_mutex_destroy(&ch.lock[c]);
}

static void churn_once(bool user_only)
{
    if (!ch_start(user_only))
        return;
    pthread_t w[3], m[2];
    for (uintptr_t t = 0; t < 3; t++)
        CHECK_EQ(pthread_create(&w[t], NULL, ch_worker, (void *)t), 0);
    for (uintptr_t t = 0; t < 2; t++)
        CHECK_EQ(pthread_create(&m[t], NULL, ch_mapper, (void *)t), 0);
    sleep(3);
    atomic_store(&ch.stop, true);
    for (int t = 0; t < 3; t++)
        CHECK_EQ(pthread_join(w[t], NULL), 0);
    for (int t = 0; t < 2; t++)
        CHECK_EQ(pthread_join(m[t], NULL), 0);
    uint64_t holes = 0;
    for (uint64_t c = 0; c < CH_CHUNKS; c++) {
        holes += ch.mapped[c] ? 0 : CH_CHUNK;
        for (uint64_t p = c * CH_CHUNK; ch.mapped[c] && p < (c + 1) * CH_CHUNK; p++)
            expect(ch.b, p, ch.ver[p], "churn, at the end");
    }
    wait_holes(ch.r, holes);
    struct uz_region_stat st = stat_of(ch.r);
    fprintf(stderr, "  %s: %ld ops, %ld unmaps, %ld remaps, %ld drops, %llu swapouts\n",
            user_only ? "user-only" : "full", atomic_load(&ch.ops), atomic_load(&ch.unmaps),
            atomic_load(&ch.remaps), atomic_load(&ch.drops), (unsigned long long)st.swapouts);
    CHECK(atomic_load(&ch.unmaps) > 10 && atomic_load(&ch.remaps) > 10);
    CHECK(st.swapouts > 1000);
    CHECK_EQ(st.failed, 0);
    settle_and_check(ch.r);
    ch_finish();
}

static void t_churn(void)
{
    alarm(120);
    churn_once(false);
    churn_once(true);
    alarm(0);
}

/* ---- fork while the application unmaps and re-maps ---- */

/* A child of a fork taken while another thread unmaps, grows back and drops chunks: every
 * page the child's region says is its own is mapped (a page of a range an unhandled UNMAP took
 * away would crash the read), the region has not failed, and the checker agrees. */
static void fork_child(void)
{
    alarm(20);
    struct uz_region_stat st = stat_of(ch.r);
    CHECK_EQ(st.failed, 0);
    uint64_t holes = 0;
    for (uint64_t p = 0; p < CH_PAGES; p++) {
        if (uz_pg_state(atomic_load(&ch.r->pages[p])) == UZ_PG_HOLE) {
            holes++;
            continue;
        }
        (void)*(volatile unsigned char *)(ch.b + p * PAGE);
    }
    CHECK_EQ(stat_of(ch.r).hole_pages, holes);
    settle_and_check(ch.r);
    _exit(0);
}

static void fork_once(bool user_only)
{
    if (!ch_start(user_only))
        return;
    atomic_store(&ch.unmaps, 0);
    pthread_t m[2];
    for (uintptr_t t = 0; t < 2; t++)
        CHECK_EQ(pthread_create(&m[t], NULL, ch_mapper, (void *)t), 0);
    unsigned forks = UZT_SANITIZED ? 6 : 30;
    for (unsigned k = 0; k < forks; k++) {
        usleep(5000);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (!pid)
            fork_child();
        int status;
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status)) {
            fprintf(stderr, "fork %u: child status %#x\n", k, status);
            CHECK(0);
        }
    }
    atomic_store(&ch.stop, true);
    for (int t = 0; t < 2; t++)
        CHECK_EQ(pthread_join(m[t], NULL), 0);
    fprintf(stderr, "  %s: %u forks, %ld unmaps\n", user_only ? "user-only" : "full", forks,
            atomic_load(&ch.unmaps));
    CHECK(atomic_load(&ch.unmaps) > 10);
    CHECK_EQ(stat_of(ch.r).failed, 0);
    ch_finish();
}

static void t_fork(void)
{
    alarm(180);
    fork_once(false);
    fork_once(true);
    alarm(0);
}

int main(int argc, char **argv)
{
    static const struct uzt_case cases[] = {
        {"remove", t_remove}, {"unmap", t_unmap}, {"mremap", t_mremap},
        {"churn", t_churn},   {"fork", t_fork},
    };
    uzt_run_cases(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
    fprintf(stderr, "test_region_mem: ok\n");
    return 0;
}
