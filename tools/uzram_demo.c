// SPDX-License-Identifier: MIT
/*
 * uzram_demo.c - uzram-demo: stores real memory images in uzram devices and shows what the
 * kernel's zram would show in /sys/block/zramN: mm_stat, io_stat, comp_algorithm, plus the
 * pool's per-class table. Uses the public API only.
 *
 *   uzram-demo [IMAGE...]     (raw pages or a .zst of them; default: the embedded sample)
 *
 * For each image and each of lz4 and zstd it stores every page, reads every page back and
 * compares, then prints the attributes and a one-line summary.
 */
#include <uzram/uzram.h>

#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void show(struct uz_dev *dev, const char *attr)
{
    static char buf[1 << 16];
    int n = uz_dev_attr_read(dev, attr, buf, sizeof(buf));
    if (n < 0)
        printf("  %-15s (%s)\n", attr, strerror(-n));
    else
        printf("  %-15s %s", attr, buf);
}

static int demo(const char *path, const char *algo)
{
    size_t npages;
    unsigned char *img = uz_image_load(path, &npages);
    if (!img || !npages) {
        fprintf(stderr, "uzram-demo: cannot load %s\n", path);
        free(img);
        return 1;
    }
    struct uz_dev_config cfg = {.disksize = npages * UZ_PAGE_SIZE, .algorithm = algo};
    struct uz_dev *dev;
    int rc = uz_dev_create(&cfg, &dev);
    if (rc) {
        fprintf(stderr, "uzram-demo: uz_dev_create: %s\n", strerror(-rc));
        free(img);
        return 1;
    }
    double t0 = now();
    for (size_t i = 0; i < npages && !rc; i++)
        rc = uz_dev_write_page(dev, i, img + i * UZ_PAGE_SIZE);
    double t1 = now();
    unsigned char page[UZ_PAGE_SIZE];
    size_t bad = 0;
    for (size_t i = 0; i < npages && !rc; i++) {
        rc = uz_dev_read_page(dev, i, page);
        bad += !rc && memcmp(page, img + i * UZ_PAGE_SIZE, UZ_PAGE_SIZE) != 0;
    }
    double t2 = now();
    if (rc || bad) {
        fprintf(stderr, "uzram-demo: %s: %s\n", path, rc ? strerror(-rc) : "pages differ");
        uz_dev_destroy(dev);
        free(img);
        return 1;
    }
    struct uz_dev_stats st;
    uz_dev_stats(dev, &st);
    double orig = (double)st.orig_data_size, compr = (double)st.compr_data_size,
           used = (double)st.mem_used_total;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    printf("\n%s with %s: %zu pages (%.1f MiB) stored and verified\n", base, algo, npages,
           npages / 256.0);
    show(dev, "comp_algorithm");
    show(dev, "mm_stat");
    show(dev, "io_stat");
    printf("  => %.1f MiB of pages held in %.1f MiB (ratio %.2f; compressed data %.1f MiB, pool "
           "overhead %.1f%%), store %.0f MB/s, load %.0f MB/s\n",
           orig / 1048576.0, used / 1048576.0, used ? orig / used : 0.0, compr / 1048576.0,
           compr ? 100.0 * (used - compr) / compr : 0.0, npages * 4096.0 / (t1 - t0) / 1e6,
           npages * 4096.0 / (t2 - t1) / 1e6);
    uz_dev_destroy(dev);
    free(img);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: uzram-demo IMAGE...\n");
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: uzram-demo IMAGE...\n");
        return 2;
    }
    printf("uzram %s: userspace zram. Each image is a process's resident anonymous memory.\n",
           UZ_VERSION_STRING);
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        rc |= demo(argv[i], "lz4");
        rc |= demo(argv[i], "zstd");
    }
    return rc;
}
