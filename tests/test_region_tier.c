// SPDX-License-Identifier: MIT
/*
 * test_region_tier.c - an application's memory tiered RAM -> compressed RAM -> file: the
 * region's device takes the tiering attributes through uz_region_dev() before and after the
 * first touch; pages swapped out, recompressed and written back to a file fault back in exact
 * (read from the file), and written again they are stored anew; the policy thread runs on a
 * region's device while the application works.
 */
#include "harness.h"

#include <sys/stat.h>
#include <unistd.h>

#include "region_harness.h"

#define PAGE UZ_PAGE_SIZE
#define N    512

static unsigned char *img; /* N pages of the embedded sample (python3 and node memory) */

/* Version `ver` of page i: a sample page with its first word stamped. */
static void make_page(unsigned char *p, uint64_t i, uint64_t ver)
{
    memcpy(p, img + (i * 2 % 1024) * PAGE, PAGE);
    uint64_t stamp = mix(i * 131 + ver);
    memcpy(p, &stamp, 8);
}

static void fill(unsigned char *base, uint64_t ver)
{
    for (uint64_t i = 0; i < N; i++)
        make_page(base + i * PAGE, i, ver);
}

static void verify(const unsigned char *base, uint64_t ver)
{
    unsigned char want[PAGE];
    for (uint64_t i = 0; i < N; i++) {
        make_page(want, i, ver);
        if (memcmp(base + i * PAGE, want, PAGE)) {
            fprintf(stderr, "page %llu differs\n", (unsigned long long)i);
            CHECK(0);
        }
    }
}

static struct uz_dev_stats dstats(struct uz_region *r)
{
    struct uz_dev_stats st;
    CHECK_EQ(uz_dev_stats(uz_region_dev(r), &st), 0);
    return st;
}

static void t_tiers(void)
{
    char file[] = "/tmp/uzt-region-tier-XXXXXX";
    int fd = mkstemp(file);
    CHECK(fd >= 0);
    close(fd);
    struct uz_region *r = make(N, 64);
    struct uz_dev *dev = uz_region_dev(r);
    /* Before the first touch: the secondary codec and the backing file. */
    CHECK_EQ(uz_dev_attr_write(dev, "recomp_algorithm", "algo=zstd priority=1"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "backing_dev", file), 0);
    unsigned char *base = uz_region_base(r);
    fill(base, 1);
    CHECK(uz_region_swapout(r, base, N * PAGE) >= 0);
    uz_dev_flush(dev);
    struct uz_dev_stats s0 = dstats(r);
    CHECK(s0.orig_data_size >= (N - 64) * PAGE);

    /* After: recompress what is idle, then write it all back to the file. */
    CHECK_EQ(uz_dev_attr_write(dev, "idle", "all"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "recompress", "type=idle"), 0);
    struct uz_dev_stats s1 = dstats(r);
    CHECK(s1.compr_data_size < s0.compr_data_size);
    CHECK_EQ(uz_dev_attr_write(dev, "idle", "all"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "writeback", "idle"), 0);
    struct uz_dev_stats s2 = dstats(r);
    CHECK(s2.bd_count > N / 2);
    CHECK(s2.mem_used_total < s1.mem_used_total);
    struct stat st;
    CHECK_EQ(stat(file, &st), 0);
    CHECK(st.st_blocks > 0);

    /* Faults read the file: every page comes back exact. */
    verify(base, 1);
    CHECK(dstats(r).bd_reads > 0);
    settle_and_check(r);

    /* Written again: stored anew, the file's copies freed. */
    fill(base, 2);
    CHECK(uz_region_swapout(r, base, N * PAGE) >= 0);
    uz_dev_flush(dev);
    verify(base, 2);
    settle_and_check(r);
    CHECK(dstats(r).bd_count < s2.bd_count);

    /* The policy on the region's device, while the application reads and writes. */
    CHECK_EQ(uz_dev_attr_write(dev, "policy",
                               "interval=1 writeback_age=0 recompress_age=0 "
                               "writeback_max_per_round=512K"),
             0);
    for (int round = 0; round < 3; round++) {
        CHECK(uz_region_swapout(r, base, N * PAGE) >= 0);
        usleep(1200000);
        verify(base, 2);
    }
    CHECK_EQ(uz_dev_attr_write(dev, "policy", "interval=0"), 0);
    char buf[512];
    CHECK(uz_dev_attr_read(dev, "policy_stat", buf, sizeof(buf)) > 0);
    CHECK(strstr(buf, "rounds=") && !strstr(buf, "rounds=0 "));
    verify(base, 2);
    settle_and_check(r);
    uz_region_destroy(r);
    unlink(file);
}

int main(int argc, char **argv)
{
    alarm(120);
    size_t pages;
    img = uzt_load_image(UZT_SAMPLE, &pages);
    CHECK(img && pages >= 1024);
    static const struct uzt_case cases[] = {{"tiers", t_tiers}};
    uzt_run_cases(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
    printf("region_tier: ok\n");
    return 0;
}
