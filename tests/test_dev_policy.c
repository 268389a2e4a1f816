// SPDX-License-Identifier: MIT
/*
 * test_dev_policy.c - the tiering policy (the `policy` attribute, dev_policy.c): its grammar
 * and errors (a failed write changes nothing), and the thread at work with one-second rounds
 * and a test clock: idle pages written back to a file after writeback_age, younger idle pages
 * recompressed after recompress_age, the day's writeback budget and its refill, every page read
 * back exact; reset turning it off, destroy with a round due, a store racing the thread.
 */
#include "harness.h"

#include "dev_internal.h"

#include <pthread.h>
#include <unistd.h>

#define PAGE  UZ_PAGE_SIZE
#define PAGES 256

static const char *const defaults =
    "interval=0 recompress_age=7200 recompress_type=idle recompress_priority=1 "
    "writeback_age=72000 writeback_type=idle writeback_limit_per_day=1073741824 "
    "writeback_max_per_round=1073741824\n";

static struct uz_dev *make_dev(void)
{
    struct uz_dev_config cfg = {.disksize = PAGES * PAGE, .algorithm = "lz4"};
    struct uz_dev *dev;
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    return dev;
}

static void read_attr(struct uz_dev *dev, const char *name, char *buf, size_t len)
{
    CHECK(uz_dev_attr_read(dev, name, buf, len) > 0);
}

static uint64_t stat_key(struct uz_dev *dev, const char *key)
{
    char buf[512];
    read_attr(dev, "policy_stat", buf, sizeof(buf));
    char *p = strstr(buf, key);
    CHECK(p && p[strlen(key)] == '=');
    return strtoull(p + strlen(key) + 1, NULL, 10);
}

/* Waits (at most 20 s) until the policy has made `rounds` rounds in all. */
static void wait_rounds(struct uz_dev *dev, uint64_t rounds)
{
    for (int i = 0; i < 2000 && stat_key(dev, "rounds") < rounds; i++)
        usleep(10000);
    CHECK(stat_key(dev, "rounds") >= rounds);
}

static void grammar(void)
{
    struct uz_dev *dev = make_dev();
    char buf[512];
    read_attr(dev, "policy", buf, sizeof(buf));
    CHECK_STR(buf, defaults);
    CHECK_EQ(uz_dev_attr_write(dev, "policy_stat", "x"), -EACCES);

    static const struct {
        const char *value;
        int rc;
    } cases[] = {
        {"bogus=1", -EINVAL},
        {"interval", -EINVAL},
        {"interval=", -EINVAL},
        {"interval=x", -EINVAL},
        {"interval=-1", -EINVAL},
        {"interval=4294967296", -ERANGE},
        {"recompress_age=1 interval=y", -EINVAL}, /* nothing applied: the first key neither */
        {"recompress_type=incompressible", -EINVAL},
        {"recompress_type=cold", -EINVAL},
        {"writeback_type=huge_idle_x", -EINVAL},
        {"recompress_priority=0", -EINVAL},
        {"recompress_priority=4", -EINVAL},
        {"writeback_limit_per_day=1Q", -EINVAL},
        {"writeback_limit_per_day=junk", -EINVAL},
        {"   ", -EINVAL},
        {"defaults", -EINVAL},
    };
    for (size_t i = 0; i < UZ_ARRAY_SIZE(cases); i++) {
        int rc = uz_dev_attr_write(dev, "policy", cases[i].value);
        if (rc != cases[i].rc)
            fprintf(stderr, "policy '%s': %d, want %d\n", cases[i].value, rc, cases[i].rc);
        CHECK_EQ(rc, cases[i].rc);
        read_attr(dev, "policy", buf, sizeof(buf));
        CHECK_STR(buf, defaults); /* a failed write changes nothing */
    }

    /* Named keys change, the others keep their values; sizes take K/M/G; 0x works. */
    CHECK_EQ(uz_dev_attr_write(dev, "policy",
                               "recompress_age=60 writeback_type=huge_idle "
                               "writeback_limit_per_day=64M writeback_max_per_round=0x1000\n"),
             0);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "recompress_type=huge recompress_priority=3"), 0);
    read_attr(dev, "policy", buf, sizeof(buf));
    CHECK_STR(buf, "interval=0 recompress_age=60 recompress_type=huge recompress_priority=3 "
                   "writeback_age=72000 writeback_type=huge_idle writeback_limit_per_day=67108864 "
                   "writeback_max_per_round=4096\n");
    /* What it reads back is a valid write of the same settings. */
    char again[512];
    memcpy(again, buf, sizeof(again));
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "default"), 0);
    read_attr(dev, "policy", buf, sizeof(buf));
    CHECK_STR(buf, defaults);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", again), 0);
    read_attr(dev, "policy", buf, sizeof(buf));
    CHECK_STR(buf, again);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "writeback_type=none recompress_type=none"), 0);

    /* Reset restores the defaults: off. */
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=3600"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "reset", "1"), 0);
    read_attr(dev, "policy", buf, sizeof(buf));
    CHECK_STR(buf, defaults);
    /* Destroy with the thread running (a round an hour away): returns at once. */
    CHECK_EQ(uz_dev_attr_write(dev, "disksize", "1M"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=3600"), 0);
    uz_dev_destroy(dev);
}

static void fill_page(unsigned char *page, uint64_t i)
{
    /* Compressible text, different per page. */
    for (size_t j = 0; j < PAGE; j++)
        page[j] = (unsigned char)("tiering policy "[j % 15] + (i * 7 + j / 256) % 13);
}

static void verify_all(struct uz_dev *dev)
{
    unsigned char want[PAGE], got[PAGE];
    for (uint64_t i = 0; i < PAGES; i++) {
        fill_page(want, i);
        CHECK_EQ(uz_dev_read_page(dev, i, got), 0);
        CHECK(!memcmp(want, got, PAGE));
    }
}

/* Counts the lines of block_state whose flag at `col` is `c` (among the slots still in RAM
 * when `ram_only`). */
static unsigned count_flag(struct uz_dev *dev, int col, char c, bool ram_only)
{
    static char text[PAGES * 40 + 1];
    read_attr(dev, "block_state", text, sizeof(text));
    unsigned n = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        CHECK(nl && nl - line >= 6);
        n += nl[-6 + col] == c && (!ram_only || nl[-5] == '.');
        line = nl + 1;
    }
    return n;
}

static void at_work(void)
{
    char path[] = "/tmp/uzt-policy-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    struct uz_dev *dev = make_dev();
    CHECK_EQ(uz_dev_attr_write(dev, "backing_dev", path), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "recomp_algorithm", "algo=zstd priority=1"), 0);
    unsigned char page[PAGE];
    for (uint64_t i = 0; i < PAGES; i++) {
        fill_page(page, i);
        CHECK_EQ(uz_dev_write_page(dev, i, page), 0);
    }
    /* Pages 0..127 are old (1000 s), 128..255 young (touched after the clock moved). */
    atomic_fetch_add(&dev->clock_offset, 1000);
    for (uint64_t i = PAGES / 2; i < PAGES; i++)
        CHECK_EQ(uz_dev_read_page(dev, i, page), 0);
    atomic_fetch_add(&dev->clock_offset, 100);

    /* Write back what is idle for 500 s, 64 pages a day, 32 a round; recompress what is idle
     * for 50 s: the old pages go to the file (as far as the budget allows), the young ones are
     * recompressed. */
    CHECK_EQ(uz_dev_attr_write(dev, "policy",
                               "writeback_age=500 writeback_limit_per_day=256K "
                               "writeback_max_per_round=128K recompress_age=50 interval=1"),
             0);
    wait_rounds(dev, 3);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=0"), 0); /* stopped and joined */
    uint64_t rounds = stat_key(dev, "rounds");
    CHECK_EQ(stat_key(dev, "written_back"), 64); /* the day's budget, in two rounds of 32 */
    CHECK_EQ(stat_key(dev, "day_left"), 0);
    CHECK_EQ(count_flag(dev, 1, 'w', false), 64);
    /* Young pages recompressed; so were the old ones the budget left in RAM. */
    CHECK_EQ(count_flag(dev, 4, 'r', true) + count_flag(dev, 5, 'n', true), PAGES - 64);
    CHECK_EQ(stat_key(dev, "writeback_error"), 0);
    CHECK_EQ(stat_key(dev, "recompress_error"), 0);
    usleep(1500000);
    CHECK_EQ(stat_key(dev, "rounds"), rounds); /* no round after interval=0 */

    /* A day later the budget is back: the rest of the old pages go. The recompressed ones are
     * still idle candidates for writeback. */
    atomic_fetch_add(&dev->clock_offset, 86400);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=1"), 0);
    wait_rounds(dev, rounds + 2);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=0"), 0);
    CHECK(stat_key(dev, "written_back") >= 64 + 32);
    verify_all(dev);
    uz_dev_destroy(dev);
    unlink(path);
}

/* Recompression alone (no backing device): every page idle for the age is recompressed or
 * found incompressible, the writeback stage reports -ENODEV, and pages touched since are left. */
static void recompress_only(void)
{
    struct uz_dev *dev = make_dev();
    CHECK_EQ(uz_dev_attr_write(dev, "recomp_algorithm", "algo=zstd priority=1"), 0);
    unsigned char page[PAGE];
    for (uint64_t i = 0; i < PAGES; i++) {
        fill_page(page, i);
        CHECK_EQ(uz_dev_write_page(dev, i, page), 0);
    }
    atomic_fetch_add(&dev->clock_offset, 1000);
    for (uint64_t i = 0; i < PAGES / 4; i++)
        CHECK_EQ(uz_dev_read_page(dev, i, page), 0); /* young: 0 s */
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "recompress_age=500 interval=1"), 0);
    wait_rounds(dev, 2);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=0"), 0);
    CHECK_EQ((int)stat_key(dev, "writeback_error"), -ENODEV);
    CHECK_EQ(stat_key(dev, "recompress_error"), 0);
    CHECK_EQ(count_flag(dev, 4, 'r', true) + count_flag(dev, 5, 'n', true), PAGES - PAGES / 4);
    CHECK_EQ(stat_key(dev, "recompressed"), count_flag(dev, 4, 'r', true));
    verify_all(dev);
    uz_dev_destroy(dev);
}

/* Stages without what they need are skipped; their error is shown. */
static void unconfigured(void)
{
    struct uz_dev *dev = make_dev();
    unsigned char page[PAGE];
    fill_page(page, 1);
    CHECK_EQ(uz_dev_write_page(dev, 1, page), 0);
    atomic_fetch_add(&dev->clock_offset, 100000);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=1"), 0);
    wait_rounds(dev, 1);
    CHECK_EQ((int)stat_key(dev, "writeback_error"), -ENODEV);
    CHECK(stat_key(dev, "recompress_error") != 0);
    CHECK_EQ(stat_key(dev, "written_back") + stat_key(dev, "recompressed"), 0);
    uz_dev_destroy(dev); /* with the thread running */
}

struct racer {
    struct uz_dev *dev;
    uint64_t seed;
};

static void *race_stores(void *arg)
{
    struct racer *r = arg;
    static const char *const v[] = {"interval=1", "interval=0", "interval=2 recompress_age=1",
                                    "default", "writeback_type=none"};
    for (int i = 0; i < 300; i++)
        CHECK_EQ(uz_dev_attr_write(r->dev, "policy", v[uzt_rand(&r->seed) % 5]), 0);
    return NULL;
}

/* Stores from several threads against the thread's start and stop: no hang, no leak, and the
 * thread is gone after the last "interval=0". */
static void racing(void)
{
    struct uz_dev *dev = make_dev();
    pthread_t t[4];
    struct racer r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){.dev = dev, .seed = 0x9e3779b97f4a7c15ull + (uint64_t)i};
        CHECK_EQ(pthread_create(&t[i], NULL, race_stores, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=0"), 0);
    uz_dev_destroy(dev);
}

int main(void)
{
    grammar();
    unconfigured();
    racing();
    recompress_only();
    at_work();
    printf("dev_policy: ok\n");
    return 0;
}
