// SPDX-License-Identifier: MIT
/*
 * test_dev_multi.c - multi-page objects (object_pages, issue 11): the attribute's grammar and
 * errors; density on the sample against object_pages=1; -ENOSPC in the middle of a run (the
 * object path and the page-by-page path) leaving all old pages readable; one page overwritten in
 * the middle of a 16-page object under readers of the others; the seed's race for a run (its
 * pages changing while it is compressed); recompression, repacking by compaction and writeback
 * per object, every page verified; a worker's queued neighbours written as one object. Fixed
 * seeds; every test under an alarm.
 */
#include "harness.h"

#include "dev_harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define PAGE UZ_PAGE_SIZE

static unsigned char *sample;
static size_t sample_pages;

static struct uz_dev *mkdev(const char *algo, uint64_t pages, unsigned object_pages,
                            unsigned workers)
{
    struct uz_dev_config cfg = {.disksize = pages * PAGE, .algorithm = algo, .workers = workers};
    struct uz_dev *dev;
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    char v[8];
    snprintf(v, sizeof(v), "%u", object_pages);
    CHECK_EQ(uz_dev_attr_write(dev, "object_pages", v), 0);
    return dev;
}

static void check_all(struct uz_dev *dev)
{
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    CHECK_EQ(uz_dev_mobj_check(dev), 0);
}

static void t_attr(void)
{
    struct uz_dev *dev = mkdev("lz4", 64, 1, 0);
    char buf[64];
    CHECK_EQ(uz_dev_attr_read(dev, "object_pages", buf, sizeof(buf)), 2);
    CHECK_STR(buf, "1\n");
    static const char *const bad[] = {"0", "3", "5", "32", "17", "abc", "-1", "4x", " 4"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ(uz_dev_attr_write(dev, "object_pages", bad[i]), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "object_pages", "99999999999999999999"), -ERANGE);
    CHECK_EQ(uz_dev_attr_write(dev, "object_pages", "16\n"), 0);
    CHECK_EQ(uz_dev_attr_read(dev, "object_pages", buf, sizeof(buf)), 3);
    CHECK_STR(buf, "16\n");
    CHECK_EQ(uz_dev_write_page(dev, 3, sample), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "object_pages", "4"), -EBUSY); /* a page is stored */
    CHECK_EQ(uz_dev_attr_read(dev, "object_pages", buf, sizeof(buf)), 3);
    CHECK_STR(buf, "16\n");
    CHECK_EQ(uz_dev_attr_write(dev, "reset", "1"), 0);
    CHECK_EQ(uz_dev_attr_read(dev, "object_pages", buf, sizeof(buf)), 2);
    CHECK_STR(buf, "1\n"); /* a default, like comp_algorithm */
    uz_dev_destroy(dev);
}

/* The sample in runs against page by page: smaller, same pages back, objects where expected. */
static void t_density(const char *algo)
{
    const uint64_t pages = sample_pages / 16 * 16;
    uint64_t compr[2];
    for (int k = 0; k < 2; k++) {
        struct uz_dev *dev = mkdev(algo, pages, k ? 4 : 1, 0);
        CHECK_EQ(uz_dev_pwrite(dev, sample, pages * PAGE, 0), (ssize_t)(pages * PAGE));
        uzt_dev_verify(dev, sample, 0, pages);
        unsigned char *all = malloc(pages * PAGE);
        CHECK_EQ(uz_dev_pread(dev, all, pages * PAGE, 0), (ssize_t)(pages * PAGE));
        CHECK(memcmp(all, sample, pages * PAGE) == 0);
        free(all);
        struct uz_dev_stats st;
        CHECK_EQ(uz_dev_stats(dev, &st), 0);
        compr[k] = st.compr_data_size;
        CHECK_EQ(st.orig_data_size, pages * PAGE);
        if (k)
            CHECK(uzt_dev_count_flag(dev, UZ_SLOT_MULTI) > pages / 2);
        else
            CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_MULTI), 0);
        check_all(dev);
        uz_dev_destroy(dev);
    }
    fprintf(stderr, "  %s: compr_data_size %llu (1 page) -> %llu (4 pages)\n", algo,
            (unsigned long long)compr[0], (unsigned long long)compr[1]);
    CHECK(compr[1] < compr[0]);
}

static void fill_random(unsigned char *p, size_t n, uint64_t *seed)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = uzt_rand(seed);
        memcpy(p + i, &r, 8);
    }
}

/* mem_limit reached by a run: -ENOSPC, and every page of that run still reads its old data. */
static void t_enospc(bool compressible)
{
    const uint64_t pages = 256, run = 4;
    struct uz_dev *dev = mkdev("lz4", pages, (unsigned)run, 0);
    CHECK_EQ(uz_dev_pwrite(dev, sample, pages * PAGE, 0), (ssize_t)(pages * PAGE));
    struct uz_dev_stats st;
    CHECK_EQ(uz_dev_stats(dev, &st), 0);
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)(st.mem_used_total + 8 * PAGE));
    CHECK_EQ(uz_dev_attr_write(dev, "mem_limit", v), 0);
    unsigned char *b = malloc(pages * PAGE);
    uint64_t seed = compressible ? 11 : 12;
    if (compressible) {
        /* Other compressible pages: the sample's, with a few words changed. */
        for (uint64_t i = 0; i < pages; i++) {
            memcpy(b + i * PAGE, sample + ((i + 97) % sample_pages) * PAGE, PAGE);
            fill_random(b + i * PAGE + 64, 1024, &seed); /* larger: the pool grows */
        }
    } else {
        fill_random(b, pages * PAGE, &seed); /* page by page, raw */
    }
    uint64_t r;
    ssize_t rc = 0;
    for (r = 0; r < pages / run; r++) {
        /* Overwrites keep old objects until the commit: the limit is hit on the way. */
        rc = uz_dev_pwrite(dev, b + r * run * PAGE, run * PAGE, r * run * PAGE);
        if (rc < 0)
            break;
        CHECK_EQ(rc, (ssize_t)(run * PAGE));
    }
    CHECK_EQ(rc, -ENOSPC);
    CHECK(r > 0);
    uzt_dev_verify(dev, b, 0, r * run); /* the runs written */
    uzt_dev_verify(dev, sample + r * run * PAGE, r * run,
                   pages - r * run); /* the failed one and on */
    check_all(dev);
    free(b);
    uz_dev_destroy(dev);
}

/* ---- one page of a 16-page object overwritten under readers of the others ---- */

static struct {
    struct uz_dev *dev;
    unsigned char *a, *b; /* page 7's two contents */
    atomic_bool stop;
    atomic_long reads, writes;
} mid;

static void *mid_reader(void *arg)
{
    uint64_t seed = (uintptr_t)arg + 1;
    unsigned char buf[PAGE], *run = malloc(16 * PAGE);
    while (!atomic_load(&mid.stop)) {
        uint64_t i = uzt_rand(&seed) % 16;
        if (uzt_rand(&seed) % 4 == 0) {
            CHECK_EQ(uz_dev_pread(mid.dev, run, 16 * PAGE, 0), 16 * PAGE);
            for (uint64_t k = 0; k < 16; k++)
                if (k != 7)
                    CHECK(memcmp(run + k * PAGE, sample + k * PAGE, PAGE) == 0);
            CHECK(!memcmp(run + 7 * PAGE, mid.a, PAGE) || !memcmp(run + 7 * PAGE, mid.b, PAGE));
        } else {
            CHECK_EQ(uz_dev_read_page(mid.dev, i, buf), 0);
            if (i == 7)
                CHECK(!memcmp(buf, mid.a, PAGE) || !memcmp(buf, mid.b, PAGE));
            else
                CHECK(memcmp(buf, sample + i * PAGE, PAGE) == 0);
        }
        atomic_fetch_add(&mid.reads, 1);
    }
    free(run);
    return NULL;
}

static void *mid_writer(void *arg)
{
    (void)arg;
    for (long n = 0; !atomic_load(&mid.stop); n++) {
        CHECK_EQ(uz_dev_write_page(mid.dev, 7, n & 1 ? mid.b : mid.a), 0);
        if (n % 8 == 0) /* and as a partial write now and then */
            CHECK_EQ(uz_dev_pwrite(mid.dev, mid.a, 100, 7 * PAGE), 100);
        atomic_fetch_add(&mid.writes, 1);
    }
    return NULL;
}

static void t_middle(const char *algo)
{
    mid.dev = mkdev(algo, 64, 16, 0);
    mid.a = sample + 7 * PAGE; /* page 7 as it was, or the sample's page 40 */
    mid.b = malloc(PAGE);
    memcpy(mid.b, sample + 40 * PAGE, PAGE);
    memcpy(mid.b, mid.a, 100); /* a partial write of a's first 100 bytes leaves b itself */
    atomic_store(&mid.stop, false);
    atomic_store(&mid.reads, 0);
    atomic_store(&mid.writes, 0);
    for (int round = 0; round < 4; round++) {
        CHECK_EQ(uz_dev_pwrite(mid.dev, sample, 16 * PAGE, 0), 16 * PAGE); /* a fresh object */
        CHECK(uzt_dev_count_flag(mid.dev, UZ_SLOT_MULTI) >= 8);
        atomic_store(&mid.stop, false);
        pthread_t r[3], w;
        for (uintptr_t t = 0; t < 3; t++)
            CHECK_EQ(pthread_create(&r[t], NULL, mid_reader, (void *)(t + round * 3)), 0);
        CHECK_EQ(pthread_create(&w, NULL, mid_writer, NULL), 0);
        usleep(250000);
        atomic_store(&mid.stop, true);
        for (int t = 0; t < 3; t++)
            CHECK_EQ(pthread_join(r[t], NULL), 0);
        CHECK_EQ(pthread_join(w, NULL), 0);
        check_all(mid.dev);
    }
    fprintf(stderr, "  %s: %ld reads, %ld writes of page 7\n", algo, atomic_load(&mid.reads),
            atomic_load(&mid.writes));
    CHECK(atomic_load(&mid.reads) > 100 && atomic_load(&mid.writes) > 100);
    /* Only page 7 left its object; the rest still share it. */
    uint64_t multi = uzt_dev_count_flag(mid.dev, UZ_SLOT_MULTI);
    CHECK(multi >= 8 && multi <= 15);
    free(mid.b);
    uz_dev_destroy(mid.dev);
}

/* ---- the seed's race, for runs: pages changing while their run is compressed ---- */

static struct {
    unsigned char *buf;
    atomic_bool stop;
} race;

/* Breaks the stable-page contract on purpose; its stores are kept out of TSan's view (the
 * race is the test's subject, as in test_seed_race.c), so no libc call here. */
__attribute__((no_sanitize("thread"))) static void *race_scribbler(void *arg)
{
    uint64_t seed = (uintptr_t)arg;
    while (!atomic_load(&race.stop)) {
        size_t at = uzt_rand(&seed) % (16 * PAGE - 512) / 8 * 8;
        bool grow = uzt_rand(&seed) & 1; /* random bytes grow the compressed size, zeros shrink */
        for (size_t i = 0; i < 512; i += 8) {
            uint64_t v = grow ? uzt_rand(&seed) : 0;
            for (int k = 0; k < 8; k++)
                ((volatile unsigned char *)race.buf)[at + i + (size_t)k] =
                    (unsigned char)(v >> (8 * k));
        }
    }
    return NULL;
}

static void t_seed_race(const char *algo)
{
    struct uz_dev *dev = mkdev(algo, 64, 16, 0);
    race.buf = malloc(16 * PAGE);
    memcpy(race.buf, sample, 16 * PAGE);
    atomic_store(&race.stop, false);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, race_scribbler, (void *)5), 0);
    unsigned char *got = malloc(16 * PAGE);
    for (int k = 0; k < 400; k++) {
        uint64_t at = (uint64_t)(k % 4) * 16;
        CHECK_EQ(uz_dev_pwrite(dev, race.buf, 16 * PAGE, at * PAGE), 16 * PAGE);
        /* Whatever the pages were meanwhile, what was stored decodes. */
        CHECK_EQ(uz_dev_pread(dev, got, 16 * PAGE, at * PAGE), 16 * PAGE);
    }
    atomic_store(&race.stop, true);
    CHECK_EQ(pthread_join(t, NULL), 0);
    /* Stable now: stored exactly. */
    CHECK_EQ(uz_dev_pwrite(dev, race.buf, 16 * PAGE, 0), 16 * PAGE);
    uzt_dev_verify(dev, race.buf, 0, 16);
    check_all(dev);
    free(got);
    free(race.buf);
    uz_dev_destroy(dev);
}

/* ---- tiering per object ---- */

static void t_tier(void)
{
    const uint64_t pages = 512;
    struct uz_dev *dev = mkdev("lz4", pages, 4, 0);
    CHECK_EQ(uz_dev_attr_write(dev, "recomp_algorithm", "algo=zstd"), 0);
    CHECK_EQ(uz_dev_pwrite(dev, sample, pages * PAGE, 0), (ssize_t)(pages * PAGE));
    struct uz_dev_stats a, b;
    CHECK_EQ(uz_dev_stats(dev, &a), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "idle", "all"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "recompress", "type=idle"), 0);
    CHECK_EQ(uz_dev_stats(dev, &b), 0);
    fprintf(stderr, "  recompress: compr_data_size %llu -> %llu\n",
            (unsigned long long)a.compr_data_size, (unsigned long long)b.compr_data_size);
    CHECK(b.compr_data_size < a.compr_data_size * 9 / 10);
    CHECK(uzt_dev_count_flag(dev, UZ_SLOT_RECOMP) > pages / 2);
    CHECK(uzt_dev_count_flag(dev, UZ_SLOT_MULTI) > pages / 2);
    uzt_dev_verify(dev, sample, 0, pages);
    check_all(dev);
    /* Never again at the same priority. */
    CHECK_EQ(uz_dev_attr_write(dev, "idle", "all"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "recompress", "type=idle"), 0);
    struct uz_dev_stats c;
    CHECK_EQ(uz_dev_stats(dev, &c), 0);
    CHECK_EQ(c.compr_data_size, b.compr_data_size);

    /* Three of every four pages overwritten with zeros: the objects are a quarter live, and a
     * compaction repacks them. */
    static const unsigned char zeros[PAGE];
    unsigned char *img = malloc(pages * PAGE);
    memcpy(img, sample, pages * PAGE);
    for (uint64_t i = 0; i < pages; i++)
        if (i % 4) {
            CHECK_EQ(uz_dev_write_page(dev, i, zeros), 0);
            memset(img + i * PAGE, 0, PAGE);
        }
    check_all(dev);
    CHECK_EQ(uz_dev_stats(dev, &a), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "compact", "1"), 0);
    CHECK_EQ(uz_dev_stats(dev, &b), 0);
    fprintf(stderr,
            "  repack: mem_used %llu -> %llu (compr_data_size, the live share: %llu -> %llu)\n",
            (unsigned long long)a.mem_used_total, (unsigned long long)b.mem_used_total,
            (unsigned long long)a.compr_data_size, (unsigned long long)b.compr_data_size);
    CHECK(b.mem_used_total < a.mem_used_total * 6 / 10);
    /* compr_data_size counts live shares: the stale three quarters were uncounted already. */
    CHECK(a.compr_data_size < a.mem_used_total / 2);
    CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_MULTI),
             0); /* one live page each: objects of their own */
    uzt_dev_verify(dev, img, 0, pages);
    check_all(dev);

    /* Writeback of pages of objects: a fresh set of runs, all of it written back, read back. */
    char path[] = "/tmp/uzram-multi-wb-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ(uz_dev_pwrite(dev, sample, pages * PAGE, 0), (ssize_t)(pages * PAGE));
    CHECK_EQ(uz_dev_attr_write(dev, "backing_dev", path), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "writeback", "page_index=5"), 0); /* one page of one */
    CHECK_EQ(uz_dev_page_state(dev, 5), UZ_DEV_PAGE_DATA);
    CHECK(uz_slot_flags(&dev->table[5]) & UZ_SLOT_WB);
    CHECK(uz_slot_flags(&dev->table[4]) & UZ_SLOT_MULTI);
    check_all(dev);
    CHECK_EQ(uz_dev_attr_write(dev, "idle", "all"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "writeback", "idle"), 0);
    CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_MULTI), 0);
    CHECK_EQ(uz_dev_stats(dev, &a), 0);
    CHECK_EQ(a.compr_data_size, 0); /* every object went with its last page */
    uzt_dev_verify(dev, sample, 0, pages);
    check_all(dev);
    uz_dev_destroy(dev);
    unlink(path);
    free(img);
}

/* ---- a worker's queued neighbours: one object ---- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool go;
    atomic_int done, failed;
} aq = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0};

static void hold_done(void *arg, int rc)
{
    (void)arg;
    pthread_mutex_lock(&aq.lock);
    while (!aq.go)
        pthread_cond_wait(&aq.cond, &aq.lock);
    pthread_mutex_unlock(&aq.lock);
    if (rc)
        atomic_fetch_add(&aq.failed, 1);
    atomic_fetch_add(&aq.done, 1);
}

static void count_done(void *arg, int rc)
{
    (void)arg;
    if (rc)
        atomic_fetch_add(&aq.failed, 1);
    atomic_fetch_add(&aq.done, 1);
}

static void t_async(void)
{
    struct uz_dev *dev = mkdev("zstd", 256, 4, 1);
    /* The worker blocks in the first request's callback while the run requests queue behind
     * it, so it finds whole runs queued. */
    CHECK_EQ(uz_dev_write_page_async(dev, 255, sample, hold_done, NULL), 0);
    for (uint64_t i = 0; i < 64; i++)
        CHECK_EQ(uz_dev_write_page_async(dev, i, sample + i * PAGE, count_done, NULL), 0);
    pthread_mutex_lock(&aq.lock);
    aq.go = true;
    pthread_cond_broadcast(&aq.cond);
    pthread_mutex_unlock(&aq.lock);
    CHECK_EQ(uz_dev_flush(dev), 0);
    CHECK_EQ(atomic_load(&aq.done), 65);
    CHECK_EQ(atomic_load(&aq.failed), 0);
    uzt_dev_verify(dev, sample, 0, 64);
    uint64_t multi = 0, stored = 0;
    for (uint64_t i = 0; i < 64; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        multi += (f & UZ_SLOT_MULTI) != 0;
        stored += (f & UZ_SLOT_ALLOC) != 0;
    }
    fprintf(stderr, "  async: %llu of %llu stored pages in objects\n", (unsigned long long)multi,
            (unsigned long long)stored);
    CHECK(multi > stored * 3 / 4);
    check_all(dev);
    uz_dev_destroy(dev);
}

int main(void)
{
    alarm(300);
    sample = uzt_load_image(UZT_SAMPLE, &sample_pages);
    CHECK(sample && sample_pages >= 512);
    t_attr();
    t_density("lz4");
    t_density("zstd");
    t_enospc(true);
    t_enospc(false);
    t_middle("lz4");
    t_middle("zstd");
    t_seed_race("lz4");
    t_seed_race("zstd");
    t_seed_race("lzo");
    t_tier();
    t_async();
    free(sample);
    printf("dev_multi: ok\n");
    return 0;
}
