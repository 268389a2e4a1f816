// SPDX-License-Identifier: MIT
/*
 * test_dev_recomp.c - recompression: the recomp_algorithm, recompress and algorithm_params
 * priority=N attributes against the kernel's grammar and errors (a table), results verified page
 * for page for every primary x secondary pair on the embedded sample, the kernel's rules (only a
 * smaller pool class is kept, never again at the same priority, 'n' only when the strongest
 * codec fails, largest first under max_pages, threshold), secondaries only while empty and gone
 * after reset, partial writes into recompressed objects, and readers and writers racing a
 * recompression against a shadow copy (fixed seeds).
 */
#include "harness.h"

#include "dev_harness.h"

#include <pthread.h>

#define PAGE UZ_PAGE_SIZE

static struct uz_dev *mkdev(const char *algo, uint64_t pages)
{
    struct uz_dev_config cfg = {.disksize = pages * PAGE, .algorithm = algo};
    struct uz_dev *dev;
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    return dev;
}

static int wr(struct uz_dev *dev, const char *attr, const char *val)
{
    return uz_dev_attr_write(dev, attr, val);
}

static void stats(struct uz_dev *dev, struct uz_dev_stats *st)
{
    CHECK_EQ(uz_dev_stats(dev, st), 0);
}

/* Sum of the compressed sizes in the slots, and the number with flag `bit`. */
static uint64_t slot_sum(struct uz_dev *dev, uint32_t bit, uint64_t *with)
{
    uint64_t sum = 0, n = 0;
    for (uint64_t i = 0; i < dev->nr_pages; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        if (f & UZ_SLOT_ALLOC)
            sum += f & UZ_SLOT_SIZE_MASK;
        n += (f & bit) != 0;
    }
    *with = n;
    return sum;
}

/* ---- grammar ---- */

struct row {
    const char *attr, *value;
    int rc;
};

static void test_grammar(void)
{
    struct uz_dev *dev = mkdev("lz4", 16);
    char buf[1024];
    /* Nothing configured: reads back empty, recompress has no target. */
    memset(buf, 'x', sizeof(buf)); /* regression (found by fuzz_dev_attr): "" was not written */
    CHECK_EQ(uz_dev_attr_read(dev, "recomp_algorithm", buf, sizeof(buf)), 0);
    CHECK_STR(buf, "");
    static const struct row before[] = {
        {"recompress", "type=idle", -EINVAL},
        {"recompress", "", 0},                       /* sysfs: an empty write does nothing */
        {"recomp_algorithm", "priority=1", -EINVAL}, /* no algo */
        {"recomp_algorithm", "algo=zstd priority=0", -EINVAL},
        {"recomp_algorithm", "algo=zstd priority=4", -EINVAL},
        {"recomp_algorithm", "algo=zstd priority=-1", -EINVAL},
        {"recomp_algorithm", "algo=zstd priority=x", -EINVAL},
        {"recomp_algorithm", "algo=zstd priority=99999999999", -ERANGE},
        {"recomp_algorithm", "algo=nope", -EINVAL},
        {"recomp_algorithm", "algo", -EINVAL},
        {"recomp_algorithm", "algo=", -EINVAL},
        {"algorithm_params", "priority=1 level=3", -EINVAL}, /* no secondary 1 yet */
        {"algorithm_params", "priority=4 level=3", -EINVAL},
        {"recomp_algorithm", "algo=zstd", 0},                      /* priority 1 by default */
        {"recomp_algorithm", "algo=deflate priority=3 junk=1", 0}, /* unknown keys ignored */
        {"recomp_algorithm", "algo=lz4hc priority=2\n", 0},
    };
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        int rc = wr(dev, before[i].attr, before[i].value);
        if (rc != before[i].rc)
            fprintf(stderr, "%s <- '%s': %d, want %d\n", before[i].attr, before[i].value, rc,
                    before[i].rc);
        CHECK_EQ(rc, before[i].rc);
    }
    int n = uz_dev_attr_read(dev, "recomp_algorithm", buf, sizeof(buf));
    CHECK(n > 0);
    CHECK(!strncmp(buf, "#1: ", 4));
    CHECK(strstr(buf, "[zstd]") && strstr(buf, "#2: ") && strstr(buf, "[lz4hc]") &&
          strstr(buf, "#3: ") && strstr(buf, "[deflate]"));
    CHECK(strstr(buf, "[zstd]") < strstr(buf, "#2: ") &&
          strstr(buf, "[lz4hc]") < strstr(buf, "#3: "));
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    CHECK_EQ(lines, 3);

    static const struct row after[] = {
        {"algorithm_params", "priority=1 level=5", 0},
        {"algorithm_params", "algo=lz4hc level=9", 0},
        {"algorithm_params", "algo=brotli level=9", -EINVAL},
        {"recompress", "type=idle", 0},
        {"recompress", "type=huge max_pages=10", 0},
        {"recompress", "type=bogus", 0}, /* an unknown type leaves the choice: all */
        {"recompress", "type=idle threshold=100", 0},
        {"recompress", "threshold=4096", -EINVAL}, /* at least the huge size */
        {"recompress", "threshold=-1", -EINVAL},
        {"recompress", "threshold=4294967296", -ERANGE},
        {"recompress", "max_pages=x", -EINVAL},
        {"recompress", "max_pages=18446744073709551616", -ERANGE},
        {"recompress", "priority=0", -EINVAL},
        {"recompress", "priority=4", -EINVAL},
        {"recompress", "priority=3", 0},
        {"recompress", "algo=lz4hc", 0},
        {"recompress", "algo=lzo", -EINVAL}, /* not a configured secondary */
        {"recompress", "algo=lz4", -EINVAL}, /* the primary is not a target */
        {"recompress", "type", -EINVAL},
        {"recompress", "type=", -EINVAL},
        {"recompress", "whatever=1", 0},
    };
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        int rc = wr(dev, after[i].attr, after[i].value);
        if (rc != after[i].rc)
            fprintf(stderr, "%s <- '%s': %d, want %d\n", after[i].attr, after[i].value, rc,
                    after[i].rc);
        CHECK_EQ(rc, after[i].rc);
    }
    CHECK_EQ(uz_comp_level(dev->sec[1].comp), 5);
    CHECK_EQ(uz_comp_level(dev->sec[2].comp), 9);

    /* Only while empty; a failed write changes nothing. */
    unsigned char page[PAGE];
    uzt_pattern_fill(page, PAGE, 7);
    memset(page + 2048, 0, 2048);
    CHECK_EQ(uz_dev_write_page(dev, 3, page), 0);
    CHECK_EQ(wr(dev, "recomp_algorithm", "algo=lzo priority=1"), -EBUSY);
    CHECK_EQ(wr(dev, "algorithm_params", "priority=1 level=1"), -EBUSY);
    CHECK_EQ(uz_comp_level(dev->sec[1].comp), 5);
    CHECK(!strcmp(uz_comp_name(dev->sec[1].comp), "zstd"));
    /* Uninitialised (after reset): -EINVAL, and the secondaries are gone. */
    CHECK_EQ(wr(dev, "reset", "1"), 0);
    CHECK_EQ(uz_dev_attr_read(dev, "recomp_algorithm", buf, sizeof(buf)), 0);
    CHECK_EQ(wr(dev, "recompress", "type=idle"), -EINVAL);
    CHECK_EQ(wr(dev, "recomp_algorithm", "algo=zstd"), 0);
    CHECK_EQ(wr(dev, "recompress", "type=idle"), -EINVAL); /* no disksize */
    CHECK_EQ(wr(dev, "disksize", "65536"), 0);
    CHECK_EQ(wr(dev, "recompress", "type=idle"), 0);
    uz_dev_destroy(dev);
}

/* ---- every pair, page for page ---- */

static void test_pairs(void)
{
    size_t pages;
    unsigned char *img = uzt_load_image(UZT_SAMPLE, &pages);
    CHECK(img);
    if (pages > 512)
        pages = 512; /* a mix of python3 and node pages (the sample's halves), strided below */
    unsigned char *mix = malloc(pages * PAGE);
    CHECK(mix);
    for (size_t i = 0; i < pages; i++)
        memcpy(mix + i * PAGE, img + ((i * 2 + (i & 1) * 511) % 1024) * PAGE, PAGE);
    free(img);

    int tried = 0;
    for (const char *const *a = uz_comp_algorithms(); *a; a++) {
        for (const char *const *b = uz_comp_algorithms(); *b; b++) {
            struct uz_dev *dev = mkdev(*a, pages);
            char v[64];
            snprintf(v, sizeof(v), "algo=%s priority=2", *b);
            CHECK_EQ(wr(dev, "recomp_algorithm", v), 0);
            for (size_t i = 0; i < pages; i++)
                CHECK_EQ(uz_dev_write_page(dev, i, mix + i * PAGE), 0);
            struct uz_dev_stats s0, s1;
            stats(dev, &s0);
            CHECK_EQ(wr(dev, "idle", "all"), 0);
            CHECK_EQ(wr(dev, "recompress", "type=idle priority=2"), 0);
            stats(dev, &s1);
            uint64_t nrec, nincomp;
            uint64_t sum = slot_sum(dev, UZ_SLOT_RECOMP, &nrec);
            slot_sum(dev, UZ_SLOT_INCOMP, &nincomp);
            CHECK_EQ(s1.compr_data_size, sum); /* the counters follow the slots */
            CHECK(s1.compr_data_size <= s0.compr_data_size);
            CHECK_EQ(s1.orig_data_size, s0.orig_data_size);
            CHECK(s1.huge_pages <= s0.huge_pages);
            /* Every stored non-same slot was either replaced or, the target being the only
             * (strongest) secondary, marked incompressible. */
            CHECK_EQ(nrec + nincomp, pages - s0.same_pages);
            for (uint64_t i = 0; i < pages; i++) {
                uint32_t f = uz_slot_flags(&dev->table[i]);
                if (f & UZ_SLOT_RECOMP) {
                    CHECK_EQ(uz_slot_prio(f), 2);
                    CHECK(!(f & UZ_SLOT_IDLE)); /* touched by the recompression */
                }
            }
            uzt_dev_verify(dev, mix, 0, pages);
            /* Never again at the same priority: a second call changes nothing. */
            uint64_t done = 0;
            unsigned shard = uz_brlock_read_lock(&dev->init_lock);
            CHECK_EQ(uz_dev_recompress_locked(dev, 0, 0, 0, 2, &done), 0);
            uz_brlock_read_unlock(&dev->init_lock, shard);
            CHECK_EQ(done, 0);
            CHECK_EQ(uz_pool_check(dev->pool), 0);
            /* A stronger secondary gains: zstd and deflate over lz4 and lzo. */
            if (!strcmp(*a, "lz4") && !strcmp(*b, "zstd"))
                CHECK(s1.compr_data_size * 10 < s0.compr_data_size * 8);
            uz_dev_destroy(dev);
            tried++;
        }
    }
    CHECK(tried >= 25);
    free(mix);
}

/* ---- the kernel's rules ---- */

/* Pages of a chosen compressibility: `zeros` of the last bytes are zero, the rest random. */
static void make_page(unsigned char *p, uint64_t key, size_t zeros)
{
    uzt_pattern_fill(p, PAGE, key);
    memset(p + PAGE - zeros, 0, zeros);
}

static void test_rules(void)
{
    enum { N = 64 };
    struct uz_dev *dev = mkdev("lz4", N);
    CHECK_EQ(wr(dev, "recomp_algorithm", "algo=lz4 priority=1"), 0);
    CHECK_EQ(wr(dev, "recomp_algorithm", "algo=zstd priority=2"), 0);
    static unsigned char img[N * PAGE];
    for (size_t i = 0; i < N; i++)
        make_page(img + i * PAGE, i + 1, i < 8 ? 0 : 3600 - (i - 8) * 45); /* 0..7: huge */
    for (size_t i = 0; i < N; i++)
        CHECK_EQ(uz_dev_write_page(dev, i, img + i * PAGE), 0);
    struct uz_dev_stats s;
    stats(dev, &s);
    CHECK_EQ(s.huge_pages, 8);

    /* Priority 1 is lz4 again: nothing lands in a smaller class, and since it is not the
     * strongest configured codec nothing is marked incompressible. */
    CHECK_EQ(wr(dev, "recompress", "priority=1"), 0);
    uint64_t n;
    slot_sum(dev, UZ_SLOT_RECOMP | UZ_SLOT_INCOMP, &n);
    CHECK_EQ(n, 0);

    /* Huge pages with the strongest: random data does not shrink, so all 8 become 'n'. */
    CHECK_EQ(wr(dev, "recompress", "type=huge priority=2"), 0);
    slot_sum(dev, UZ_SLOT_INCOMP, &n);
    CHECK_EQ(n, 8);
    for (size_t i = 0; i < 8; i++)
        CHECK(uz_slot_flags(&dev->table[i]) & UZ_SLOT_INCOMP);
    char text[8192];
    uint64_t at = 0;
    CHECK(uz_dev_block_state(dev, &at, text, sizeof(text)) > 0);
    CHECK(!strncmp(text, "           0 ", 13) && strstr(text, " ..h..n\n"));

    /* max_pages takes the largest first (in 64-byte buckets). */
    uint32_t before[N];
    for (size_t i = 0; i < N; i++)
        before[i] = uz_slot_flags(&dev->table[i]) & UZ_SLOT_SIZE_MASK;
    CHECK_EQ(wr(dev, "recompress", "max_pages=5 priority=2"), 0);
    uint32_t min_done = PAGE, max_left = 0;
    uint64_t done = 0;
    for (size_t i = 8; i < N; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        if (f & (UZ_SLOT_RECOMP | UZ_SLOT_INCOMP)) {
            done++;
            min_done = before[i] < min_done ? before[i] : min_done;
        } else {
            max_left = before[i] > max_left ? before[i] : max_left;
        }
    }
    CHECK_EQ(done, 5);
    CHECK(min_done / 64 >= max_left / 64);

    /* threshold: only objects of at least that size are tried, and a result must be below it. */
    uint32_t thr = 1500, was[N];
    for (size_t i = 0; i < N; i++)
        was[i] = uz_slot_flags(&dev->table[i]);
    char v[64];
    snprintf(v, sizeof(v), "threshold=%u priority=2", thr);
    CHECK_EQ(wr(dev, "recompress", v), 0);
    uint64_t changed = 0;
    for (size_t i = 8; i < N; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        if (f == was[i])
            continue;
        changed++;
        CHECK(before[i] >= thr); /* tried only at or above the threshold */
        if (f & UZ_SLOT_RECOMP)
            CHECK((f & UZ_SLOT_SIZE_MASK) < thr);
    }
    CHECK(changed > 0);
    uzt_dev_verify(dev, img, 0, N);

    /* An overwrite clears the marks: the new object is the primary's. */
    CHECK_EQ(uz_dev_write_page(dev, 0, img + 20 * PAGE), 0);
    CHECK(!(uz_slot_flags(&dev->table[0]) & (UZ_SLOT_INCOMP | UZ_SLOT_RECOMP | UZ_SLOT_PRIO_MASK)));
    memcpy(img, img + 20 * PAGE, PAGE);

    /* Partial writes and pread into recompressed objects (decoded by their own codec). */
    CHECK_EQ(wr(dev, "recompress", "priority=2"), 0);
    for (size_t i = 8; i < N; i += 5) {
        CHECK(uz_slot_prio(uz_slot_flags(&dev->table[i])) == 2 ||
              (uz_slot_flags(&dev->table[i]) & UZ_SLOT_INCOMP));
        unsigned char patch[100];
        uzt_pattern_fill(patch, sizeof(patch), 1000 + i);
        CHECK_EQ(uz_dev_pwrite(dev, patch, sizeof(patch), i * PAGE + 1000), (ssize_t)sizeof(patch));
        memcpy(img + i * PAGE + 1000, patch, sizeof(patch));
        unsigned char got[300];
        CHECK_EQ(uz_dev_pread(dev, got, sizeof(got), i * PAGE + 900), (ssize_t)sizeof(got));
        CHECK(!memcmp(got, img + i * PAGE + 900, sizeof(got)));
    }
    uzt_dev_verify(dev, img, 0, N);
    stats(dev, &s);
    uint64_t sum = slot_sum(dev, 0, &n);
    CHECK_EQ(s.compr_data_size, sum);
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    uz_dev_destroy(dev);
}

/* ---- racing readers and writers ---- */

enum { RP = 256, RTHREADS = 3 };
static unsigned char shadow[RP][PAGE];
static pthread_mutex_t shadow_lock[RP];
static _Atomic int stop_race;

struct racer {
    struct uz_dev *dev;
    uint64_t seed;
};

static void *race_io(void *arg)
{
    struct racer *r = arg;
    unsigned char page[PAGE], got[PAGE];
    while (!atomic_load(&stop_race)) {
        uint64_t i = uzt_rand(&r->seed) % RP;
        pthread_mutex_lock(&shadow_lock[i]);
        if (uzt_rand(&r->seed) & 1) {
            make_page(page, uzt_rand(&r->seed), 1000 + uzt_rand(&r->seed) % 2500);
            CHECK_EQ(uz_dev_write_page(r->dev, i, page), 0);
            memcpy(shadow[i], page, PAGE);
        } else {
            CHECK_EQ(uz_dev_read_page(r->dev, i, got), 0);
            CHECK(!memcmp(got, shadow[i], PAGE));
        }
        pthread_mutex_unlock(&shadow_lock[i]);
    }
    return NULL;
}

static void test_race(void)
{
    struct uz_dev *dev = mkdev("lz4", RP);
    CHECK_EQ(wr(dev, "recomp_algorithm", "algo=zstd priority=1"), 0);
    CHECK_EQ(wr(dev, "recomp_algorithm", "algo=deflate priority=3"), 0);
    uint64_t seed = 42;
    for (size_t i = 0; i < RP; i++) {
        pthread_mutex_init(&shadow_lock[i], NULL);
        make_page(shadow[i], uzt_rand(&seed), 1000 + i * 10);
        CHECK_EQ(uz_dev_write_page(dev, i, shadow[i]), 0);
    }
    pthread_t t[RTHREADS];
    struct racer r[RTHREADS];
    for (int k = 0; k < RTHREADS; k++) {
        r[k] = (struct racer){dev, 100 + (uint64_t)k};
        CHECK_EQ(pthread_create(&t[k], NULL, race_io, &r[k]), 0);
    }
    for (int round = 0; round < 30; round++) {
        CHECK_EQ(wr(dev, "idle", "all"), 0);
        CHECK_EQ(wr(dev, "recompress", round & 1 ? "type=idle priority=1" : "priority=3"), 0);
    }
    atomic_store(&stop_race, 1);
    for (int k = 0; k < RTHREADS; k++)
        pthread_join(t[k], NULL);
    for (size_t i = 0; i < RP; i++) {
        unsigned char got[PAGE];
        CHECK_EQ(uz_dev_read_page(dev, i, got), 0);
        CHECK(!memcmp(got, shadow[i], PAGE));
    }
    struct uz_dev_stats s;
    stats(dev, &s);
    uint64_t n;
    CHECK_EQ(s.compr_data_size, slot_sum(dev, 0, &n));
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    uz_dev_destroy(dev);
}

int main(void)
{
    test_grammar();
    test_rules();
    test_race();
    test_pairs();
    printf("dev_recomp: ok\n");
    return 0;
}
