// SPDX-License-Identifier: MIT
/*
 * bench_tier.c - `uzram-bench tier`: memory tiering on a memory image, with its baselines in the
 * same run.
 *
 *   uzram-bench tier --image FILE [--algorithm lz4] [--secondary zstd] [--dir DIR] [--runs N]
 *
 * 1. recompress: the image is stored with the primary codec, `idle all` + `recompress
 *    type=idle` with the secondary; mem_used after / before (target <= 0.65), every page
 *    verified.
 * 2. writeback: `idle all` + `writeback idle` into a backing file in DIR (default /var/tmp),
 *    timed against dd writing the same number of bytes to a file in the same directory, in
 *    pairs (N rounds, default 5, dd first in odd rounds and second in even ones; the page cache
 *    synced before each timing, so neither meets the other's dirty pages being flushed): the
 *    medians of both and of the per-round ratios (target >= 0.8x dd's speed); every page read
 *    back from the file and verified. A 64 MiB image takes 30-70 ms each way here, so single
 *    runs spread from 0.3x to 2x on a shared 2-vCPU machine.
 * 3. compressed_writeback: the same with packed objects; the file's allocated bytes (st_blocks)
 *    against the compressed bytes it holds (target <= 1.15x + 1 MiB).
 * Output: key=value lines.
 */
#include <uzram/uzram.h>

#include "bench_tier.h"
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "uzram-bench tier: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static void set(struct uz_dev *dev, const char *attr, const char *val)
{
    int rc = uz_dev_attr_write(dev, attr, val);
    if (rc < 0) {
        char what[8192];
        snprintf(what, sizeof(what), "%s <- %s", attr, val);
        fail(what, rc);
    }
}

static struct uz_dev_stats stats(struct uz_dev *dev)
{
    struct uz_dev_stats st;
    int rc = uz_dev_stats(dev, &st);
    if (rc)
        fail("stats", rc);
    return st;
}

static struct uz_dev *store(const char *algo, const char *secondary, const unsigned char *img,
                            size_t n)
{
    struct uz_dev_config cfg = {.disksize = (uint64_t)n * 4096, .algorithm = algo};
    struct uz_dev *dev;
    int rc = uz_dev_create(&cfg, &dev);
    if (rc)
        fail("create", rc);
    if (secondary) {
        char v[64];
        snprintf(v, sizeof(v), "algo=%s priority=1", secondary);
        set(dev, "recomp_algorithm", v);
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = uz_dev_write_page(dev, i, img + i * 4096)))
            fail("write", rc);
    return dev;
}

static unsigned long verify(struct uz_dev *dev, const unsigned char *img, size_t n)
{
    unsigned char page[4096];
    unsigned long bad = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = uz_dev_read_page(dev, i, page);
        if (rc)
            fail("read", rc);
        bad += memcmp(page, img + i * 4096, 4096) != 0;
    }
    return bad;
}

/* dd if=SRC of=PATH bs=128K (32 pages a write, as writeback_batch_size): the seconds it took,
 * or a negative number when dd failed. SRC holds the same bytes writeback writes (the stored
 * pages), read from the page cache. */
static double dd_seconds(const char *src, const char *path)
{
    char in[4200], of[4200];
    snprintf(in, sizeof(in), "if=%s", src);
    snprintf(of, sizeof(of), "of=%s", path);
    char *argv[] = {"dd", in, of, "bs=128K", "status=none", NULL};
    double t0 = now();
    pid_t pid;
    if (posix_spawnp(&pid, "dd", NULL, NULL, argv, environ))
        return -1;
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
        return -1;
    return now() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_RUNS 64

/* One writeback of everything idle into a fresh `file`: its seconds; *bytes and *bad set. */
static double writeback_once(const char *algo, const unsigned char *img, size_t n, const char *file,
                             uint64_t *bytes, unsigned long *bad, uint64_t *bd_reads)
{
    struct uz_dev *dev = store(algo, NULL, img, n);
    unlink(file);
    set(dev, "backing_dev", file);
    if (getenv("UZB_WB_BATCH"))
        set(dev, "writeback_batch_size", getenv("UZB_WB_BATCH"));
    set(dev, "idle", "all");
    sync();
    double t0 = now();
    set(dev, "writeback", "idle");
    double t = now() - t0;
    *bytes = stats(dev).bd_count * 4096;
    *bad += verify(dev, img, n);
    *bd_reads = stats(dev).bd_reads;
    uz_dev_destroy(dev);
    unlink(file);
    return t;
}

static uint64_t allocated(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

int uz_bench_tier(int argc, char **argv)
{
    const char *image = NULL, *algo = "lz4", *secondary = "zstd", *dir = "/var/tmp";
    int runs = 5;
    static const struct option opts[] = {
        {"image", required_argument, 0, 'i'},     {"algorithm", required_argument, 0, 'a'},
        {"secondary", required_argument, 0, 's'}, {"dir", required_argument, 0, 'd'},
        {"runs", required_argument, 0, 'r'},      {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "i:a:s:d:r:", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            image = optarg;
            break;
        case 'a':
            algo = optarg;
            break;
        case 's':
            secondary = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'r':
            runs = atoi(optarg);
            if (runs < 1 || runs > MAX_RUNS) {
                fprintf(stderr, "uzram-bench tier: --runs takes 1..%d\n", MAX_RUNS);
                return 2;
            }
            break;
        default:
            return 2;
        }
    }
    if (!image) {
        fprintf(stderr, "uzram-bench tier: --image FILE is required\n");
        return 2;
    }
    size_t n;
    unsigned char *img = uz_image_load(image, &n);
    if (!img) {
        fprintf(stderr, "uzram-bench tier: cannot load %s\n", image);
        return 1;
    }
    const char *base = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
    printf("image=%s pages=%zu algorithm=%s secondary=%s\n", base, n, algo, secondary);

    /* 1. recompression */
    struct uz_dev *dev = store(algo, secondary, img, n);
    struct uz_dev_stats s0 = stats(dev);
    double t0 = now();
    set(dev, "idle", "all");
    set(dev, "recompress", "type=idle");
    double t_rec = now() - t0;
    struct uz_dev_stats s1 = stats(dev);
    unsigned long bad = verify(dev, img, n);
    printf("recompress_mem_used_before=%" PRIu64 " recompress_mem_used_after=%" PRIu64
           " recompress_mem_ratio=%.3f recompress_compr_before=%" PRIu64
           " recompress_compr_after=%" PRIu64 " recompress_seconds=%.3f recompress_bad_pages=%lu\n",
           s0.mem_used_total, s1.mem_used_total,
           (double)s1.mem_used_total / (double)s0.mem_used_total, s0.compr_data_size,
           s1.compr_data_size, t_rec, bad);
    uz_dev_destroy(dev);

    /* 2. writeback of everything idle, raw pages, against dd in the same directory */
    char file[4096], ddfile[4096];
    snprintf(file, sizeof(file), "%s/uzram-bench-tier.%d", dir, (int)getpid());
    snprintf(ddfile, sizeof(ddfile), "%s/uzram-bench-tier-dd.%d", dir, (int)getpid());
    /* dd's input: the pages writeback will write (all but the same-filled ones), in a file in
     * the same directory, read once so that it comes from the page cache. */
    char src[4200];
    snprintf(src, sizeof(src), "%s/uzram-bench-tier-src.%d", dir, (int)getpid());
    uint64_t stored = 0;
    int sfd = open(src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (sfd < 0)
        fail(src, errno);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = img + i * 4096;
        size_t k = 1;
        while (k < 4096 / 8 && !memcmp(p, p + k * 8, 8))
            k++;
        if (k == 4096 / 8)
            continue; /* same-filled: never written back */
        if (write(sfd, p, 4096) != 4096)
            fail(src, errno);
        stored += 4096;
    }
    close(sfd);
    (void)dd_seconds(src, ddfile); /* warms the source and the directory */
    unlink(ddfile);
    double v_dd[MAX_RUNS], v_wb[MAX_RUNS], v_ratio[MAX_RUNS];
    uint64_t wb_bytes = 0, bd_reads = 0;
    bad = 0;
    for (int r = 0; r < runs; r++) {
        double t_dd = 0, t_wb = 0;
        for (int k = 0; k < 2; k++) {
            if ((k == 0) == (r % 2 == 0)) {
                sync();
                t_dd = dd_seconds(src, ddfile);
                unlink(ddfile);
                if (t_dd <= 0)
                    fail("dd", EIO);
            } else {
                t_wb = writeback_once(algo, img, n, file, &wb_bytes, &bad, &bd_reads);
            }
        }
        v_dd[r] = (double)stored / t_dd / 1e6;
        v_wb[r] = (double)wb_bytes / t_wb / 1e6;
        v_ratio[r] = v_wb[r] / v_dd[r];
    }
    unlink(src);
    double lo = v_ratio[0], hi = v_ratio[0];
    for (int r = 1; r < runs; r++) {
        lo = v_ratio[r] < lo ? v_ratio[r] : lo;
        hi = v_ratio[r] > hi ? v_ratio[r] : hi;
    }
    double wb_mbs = median(v_wb, runs), dd_mbs = median(v_dd, runs);
    printf("writeback_runs=%d writeback_bytes=%" PRIu64 " writeback_mb_s=%.1f dd_bytes=%" PRIu64
           " dd_mb_s=%.1f writeback_vs_dd=%.2f writeback_vs_dd_min=%.2f writeback_vs_dd_max=%.2f "
           "writeback_bad_pages=%lu bd_reads=%" PRIu64 "\n",
           runs, wb_bytes, wb_mbs, stored, dd_mbs, median(v_ratio, runs), lo, hi, bad, bd_reads);

    /* 3. compressed_writeback: packed objects */
    dev = store(algo, NULL, img, n);
    set(dev, "backing_dev", file);
    set(dev, "compressed_writeback", "1");
    struct uz_dev_stats s3 = stats(dev);
    set(dev, "idle", "all");
    t0 = now();
    set(dev, "writeback", "idle");
    double t_cwb = now() - t0;
    struct uz_dev_stats s4 = stats(dev);
    uint64_t held = s3.compr_data_size - s4.compr_data_size; /* what left the pool */
    uint64_t alloc = allocated(file);
    bad = verify(dev, img, n);
    printf("cwb_compr_bytes=%" PRIu64 " cwb_file_allocated=%" PRIu64 " cwb_alloc_ratio=%.3f "
           "cwb_bound=%" PRIu64 " cwb_within_bound=%d cwb_seconds=%.3f cwb_bad_pages=%lu\n",
           held, alloc, held ? (double)alloc / (double)held : 0,
           (uint64_t)((double)held * 1.15) + (1u << 20),
           alloc <= (uint64_t)((double)held * 1.15) + (1u << 20), t_cwb, bad);
    uz_dev_destroy(dev);
    unlink(file);
    free(img);
    return 0;
}
