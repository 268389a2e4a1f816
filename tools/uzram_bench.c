// SPDX-License-Identifier: MIT
/*
 * uzram_bench.c - uzram-bench: benchmarks that print one line of key=value pairs per case and
 * always measure their baseline in the same run.
 *
 *   uzram-bench dev --image FILE [--algorithm lz4] [--level N] [--threads N[,N...]] [--runs N]
 *                   [--object-pages N[,N...]] [--kernel]
 *   uzram-bench contend [--threads N] [--seconds S] [--slots N]
 *
 * `dev` stores every page of FILE (raw pages, or a .zst of them) at index i of a fresh device,
 * reads them all back, verifies them byte for byte, and compares with the bare codec library
 * (liblz4, libzstd, liblzo2, zlib called directly, one page per call, one thread) on the same
 * pages. Times are the best of --runs repetitions. The device is used through the public API
 * only. --kernel also writes the image to kernel zram (/dev/zram0, O_DIRECT, when it is free; as
 * root) in each repetition and prints its memory use and speed beside the device's.
 * --object-pages runs each case with every listed object_pages (stores in runs of that many
 * pages through uz_dev_pwrite; loads page by page, in order) and, when 1 is listed, prints each
 * other count's orig_per_mem, store and load speed against object_pages=1 of the same run.
 *
 * `contend` runs threads that write and read the same few slots (--slots, default 64) against
 * threads doing the same on slots of their own, and prints each case's operations per second
 * and its slowest thread's count: every thread must make progress, and the shared case shows
 * what contention on slot locks costs.
 */
#include <uzram/uzram.h>

#include "bench_swap.h"
#include "bench_tier.h"
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <lz4.h>
#include <lz4hc.h>
#include <lzo/lzo1x.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds the whole process has used (every thread: callers and workers). */
static double process_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "uzram-bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

/* ---- the bare codec, called directly: the baseline ---- */

struct raw_codec {
    const char *name;
    int level;
    void *state;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    z_stream zdef, zinf;
};

static void raw_init(struct raw_codec *r, const char *name, int level)
{
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->level = level;
    if (!strcmp(name, "lz4")) {
        r->state = malloc((size_t)LZ4_sizeofState());
    } else if (!strcmp(name, "lz4hc")) {
        r->state = malloc((size_t)LZ4_sizeofStateHC());
        r->level = level ? level : 9;
    } else if (!strcmp(name, "zstd")) {
        r->zc = ZSTD_createCCtx();
        r->zd = ZSTD_createDCtx();
        r->level = level ? level : 1;
    } else if (!strcmp(name, "lzo")) {
        if (lzo_init() != LZO_E_OK)
            die("lzo_init failed%s", "");
        r->state = malloc(LZO1X_1_MEM_COMPRESS);
    } else if (!strcmp(name, "deflate")) {
        r->level = level ? level : 1;
        if (deflateInit2(&r->zdef, r->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK ||
            inflateInit2(&r->zinf, -15) != Z_OK)
            die("zlib init failed%s", "");
    } else {
        die("unknown algorithm %s", name);
    }
}

static size_t raw_compress(struct raw_codec *r, const void *src, void *dst, size_t cap)
{
    const char *n = r->name;
    if (!strcmp(n, "lz4"))
        return (size_t)LZ4_compress_fast_extState(r->state, src, dst, UZ_PAGE_SIZE, (int)cap,
                                                  r->level ? r->level : 1);
    if (!strcmp(n, "lz4hc"))
        return (size_t)LZ4_compress_HC_extStateHC(r->state, src, dst, UZ_PAGE_SIZE, (int)cap,
                                                  r->level);
    if (!strcmp(n, "zstd"))
        return ZSTD_compressCCtx(r->zc, dst, cap, src, UZ_PAGE_SIZE, r->level);
    if (!strcmp(n, "lzo")) {
        lzo_uint out = cap;
        lzo1x_1_compress(src, UZ_PAGE_SIZE, dst, &out, r->state);
        return out;
    }
    deflateReset(&r->zdef);
    r->zdef.next_in = (Bytef *)src;
    r->zdef.avail_in = UZ_PAGE_SIZE;
    r->zdef.next_out = dst;
    r->zdef.avail_out = (uInt)cap;
    deflate(&r->zdef, Z_FINISH);
    return cap - r->zdef.avail_out;
}

static size_t raw_decompress(struct raw_codec *r, const void *src, size_t len, void *dst)
{
    const char *n = r->name;
    if (!strcmp(n, "lz4") || !strcmp(n, "lz4hc"))
        return (size_t)LZ4_decompress_safe(src, dst, (int)len, UZ_PAGE_SIZE);
    if (!strcmp(n, "zstd"))
        return ZSTD_decompressDCtx(r->zd, dst, UZ_PAGE_SIZE, src, len);
    if (!strcmp(n, "lzo")) {
        lzo_uint out = UZ_PAGE_SIZE;
        lzo1x_decompress_safe(src, len, dst, &out, NULL);
        return out;
    }
    inflateReset(&r->zinf);
    r->zinf.next_in = (Bytef *)src;
    r->zinf.avail_in = (uInt)len;
    r->zinf.next_out = dst;
    r->zinf.avail_out = UZ_PAGE_SIZE;
    inflate(&r->zinf, Z_FINISH);
    return UZ_PAGE_SIZE - r->zinf.avail_out;
}

/* The bare codec's buffers and best times so far. */
struct raw_bench {
    struct raw_codec codec;
    const unsigned char *img;
    size_t npages;
    unsigned char *comp; /* npages slots of 2 pages */
    uint32_t *len;
    double compress_s, decompress_s; /* best so far */
    double compress_cpu;             /* best CPU seconds of a compress pass */
    uint64_t compr_bytes;
};

static void raw_open(struct raw_bench *rb, const char *algo, int level, const unsigned char *img,
                     size_t npages)
{
    raw_init(&rb->codec, algo, level);
    rb->img = img;
    rb->npages = npages;
    rb->comp = malloc(npages * 2 * UZ_PAGE_SIZE);
    rb->len = malloc(npages * sizeof(*rb->len));
    if (!rb->comp || !rb->len)
        die("out of memory%s", "");
    rb->compress_s = rb->decompress_s = rb->compress_cpu = 1e30;
}

/* One timed pass: compress every page, then decompress every page, one page per call. */
static void raw_pass(struct raw_bench *rb)
{
    const size_t cap = 2 * UZ_PAGE_SIZE;
    unsigned char page[UZ_PAGE_SIZE];
    double c0 = thread_cpu(), t0 = now();
    for (size_t i = 0; i < rb->npages; i++)
        rb->len[i] =
            (uint32_t)raw_compress(&rb->codec, rb->img + i * UZ_PAGE_SIZE, rb->comp + i * cap, cap);
    double t1 = now(), c1 = thread_cpu();
    if (c1 - c0 < rb->compress_cpu)
        rb->compress_cpu = c1 - c0;
    for (size_t i = 0; i < rb->npages; i++)
        if (raw_decompress(&rb->codec, rb->comp + i * cap, rb->len[i], page) != UZ_PAGE_SIZE)
            die("the bare %s failed to decompress a page", rb->codec.name);
    double t2 = now();
    if (t1 - t0 < rb->compress_s)
        rb->compress_s = t1 - t0;
    if (t2 - t1 < rb->decompress_s)
        rb->decompress_s = t2 - t1;
    rb->compr_bytes = 0;
    for (size_t i = 0; i < rb->npages; i++)
        rb->compr_bytes += rb->len[i] < UZ_PAGE_SIZE ? rb->len[i] : UZ_PAGE_SIZE;
}

/* The bare codec in `threads` threads, each with its own state and a contiguous share of the
 * pages, as the device runs in run_pass(): how far the codec itself scales on this machine. */
struct raw_job {
    struct raw_bench *rb;
    const char *algo;
    int level;
    size_t first, end;
    pthread_barrier_t *start;
};

static void *raw_job_main(void *arg)
{
    struct raw_job *j = arg;
    struct raw_codec c;
    raw_init(&c, j->algo, j->level);
    const size_t cap = 2 * UZ_PAGE_SIZE;
    pthread_barrier_wait(j->start);
    for (size_t i = j->first; i < j->end; i++)
        raw_compress(&c, j->rb->img + i * UZ_PAGE_SIZE, j->rb->comp + i * cap, cap);
    free(c.state);
    ZSTD_freeCCtx(c.zc);
    ZSTD_freeDCtx(c.zd);
    if (!strcmp(c.name, "deflate")) {
        deflateEnd(&c.zdef);
        inflateEnd(&c.zinf);
    }
    return NULL;
}

/* @return : seconds to compress every page with `threads` threads. */
static double raw_compress_threads(struct raw_bench *rb, const char *algo, int level,
                                   unsigned threads)
{
    pthread_t tid[64];
    struct raw_job jobs[64];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        jobs[t] = (struct raw_job){
            rb, algo, level, rb->npages * t / threads, rb->npages * (t + 1) / threads, &start};
        if (pthread_create(&tid[t], NULL, raw_job_main, &jobs[t]))
            die("pthread_create failed%s", "");
    }
    pthread_barrier_wait(&start);
    double t0 = now();
    for (unsigned t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    double t1 = now();
    pthread_barrier_destroy(&start);
    return t1 - t0;
}

static void raw_close(struct raw_bench *rb)
{
    free(rb->comp);
    free(rb->len);
    free(rb->codec.state);
    ZSTD_freeCCtx(rb->codec.zc);
    ZSTD_freeDCtx(rb->codec.zd);
    if (!strcmp(rb->codec.name, "deflate")) {
        deflateEnd(&rb->codec.zdef);
        inflateEnd(&rb->codec.zinf);
    }
}

/* ---- the device ---- */

struct job {
    struct uz_dev *dev;
    unsigned char *img, *out;
    size_t first, end;
    size_t run; /* object_pages: stores go in runs of this many pages */
    int write;
    int rc;
    pthread_barrier_t *start;
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    pthread_barrier_wait(j->start);
    for (size_t i = j->first; i < j->end && !j->rc;) {
        if (j->write && j->run > 1 && i % j->run == 0 && i + j->run <= j->end) {
            ssize_t n = uz_dev_pwrite(j->dev, j->img + i * UZ_PAGE_SIZE, j->run * UZ_PAGE_SIZE,
                                      i * UZ_PAGE_SIZE);
            j->rc = n < 0 ? (int)n : 0;
            i += j->run;
            continue;
        }
        j->rc = j->write ? uz_dev_write_page(j->dev, i, j->img + i * UZ_PAGE_SIZE)
                         : uz_dev_read_page(j->dev, i, j->out + i * UZ_PAGE_SIZE);
        i++;
    }
    return NULL;
}

/* Runs one pass (store or load) over all pages with `threads` threads, each taking a contiguous
 * share. Returns seconds from the common start to the last join. */
static double run_pass(struct uz_dev *dev, unsigned char *img, unsigned char *out, size_t npages,
                       unsigned threads, size_t run, int write, double *cpu)
{
    pthread_t tid[64];
    struct job jobs[64];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        /* Shares of whole runs, so that no run is split between two threads. */
        size_t runs = npages / run, first = runs * t / threads * run,
               end = t + 1 == threads ? npages : runs * (t + 1) / threads * run;
        jobs[t] = (struct job){dev, img, out, first, end, run, write, 0, &start};
        if (pthread_create(&tid[t], NULL, job_main, &jobs[t]))
            die("pthread_create failed%s", "");
    }
    pthread_barrier_wait(&start);
    double c0 = process_cpu(), t0 = now();
    for (unsigned t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    double t1 = now();
    *cpu = process_cpu() - c0;
    pthread_barrier_destroy(&start);
    for (unsigned t = 0; t < threads; t++)
        if (jobs[t].rc) {
            fprintf(stderr, "uzram-bench: %s failed: %s\n", write ? "store" : "load",
                    strerror(-jobs[t].rc));
            exit(1);
        }
    return t1 - t0;
}

/* ---- kernel zram, the device's baseline for memory use (--kernel) ---- */

struct kernel_result {
    bool ok;
    double write_s, read_s; /* best */
    unsigned long long mem_used, compr_bytes;
};

static int sys_write(const char *attr, const char *val)
{
    char path[128];
    snprintf(path, sizeof(path), "/sys/block/zram0/%s", attr);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, val, strlen(val));
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int sys_read(const char *attr, char *buf, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "/sys/block/zram0/%s", attr);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, len - 1);
    int rc = n < 0 ? -errno : 0;
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    return rc;
}

/* Writes the image to /dev/zram0 with O_DIRECT (one writer, 1 MiB requests, as anchors.md
 * measures), reads it back, and keeps mm_stat. Leaves zram0 reset. A zram0 in use is left
 * alone (not ok). */
static void kernel_pass(const char *algo, const unsigned char *img, size_t npages,
                        unsigned char *out, struct kernel_result *k)
{
    char buf[256];
    if (sys_read("initstate", buf, sizeof(buf)) || atoi(buf))
        return; /* no zram0, or in use */
    if (sys_write("reset", "1") || sys_write("comp_algorithm", algo))
        return;
    snprintf(buf, sizeof(buf), "%zu", npages * UZ_PAGE_SIZE);
    int fd = -1;
    if (sys_write("disksize", buf) || (fd = open("/dev/zram0", O_RDWR | O_DIRECT)) < 0) {
        sys_write("reset", "1");
        return;
    }
    size_t bytes = npages * UZ_PAGE_SIZE, chunk = 1 << 20;
    bool ok = true;
    double t0 = now();
    for (size_t off = 0; ok && off < bytes; off += chunk)
        ok = pwrite(fd, img + off, bytes - off < chunk ? bytes - off : chunk, (off_t)off) > 0;
    double t1 = now();
    for (size_t off = 0; ok && off < bytes; off += chunk)
        ok = pread(fd, out + off, bytes - off < chunk ? bytes - off : chunk, (off_t)off) > 0;
    double t2 = now();
    close(fd);
    unsigned long long orig, compr, used;
    if (ok && !memcmp(img, out, bytes) && !sys_read("mm_stat", buf, sizeof(buf)) &&
        sscanf(buf, "%llu %llu %llu", &orig, &compr, &used) == 3) {
        if (!k->ok || t1 - t0 < k->write_s)
            k->write_s = t1 - t0;
        if (!k->ok || t2 - t1 < k->read_s)
            k->read_s = t2 - t1;
        k->mem_used = used;
        k->compr_bytes = compr;
        k->ok = true;
    }
    sys_write("reset", "1");
}

static int cmd_dev(int argc, char **argv)
{
    const char *image = NULL, *algo = "lz4", *threads_arg = "1", *op_arg = "1";
    int level = 0, runs = 5;
    bool kernel = false;
    static const struct option opts[] = {
        {"image", required_argument, 0, 'i'},        {"algorithm", required_argument, 0, 'a'},
        {"level", required_argument, 0, 'l'},        {"threads", required_argument, 0, 't'},
        {"runs", required_argument, 0, 'r'},         {"kernel", no_argument, 0, 'k'},
        {"object-pages", required_argument, 0, 'o'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "i:a:l:t:r:ko:", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            op_arg = optarg;
            break;
        case 'k':
            kernel = true;
            break;
        case 'i':
            image = optarg;
            break;
        case 'a':
            algo = optarg;
            break;
        case 'l':
            level = atoi(optarg);
            break;
        case 't':
            threads_arg = optarg;
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (!image)
        die("dev: --image FILE is required%s", "");
    if (runs < 1)
        runs = 1;
    size_t npages;
    unsigned char *img = uz_image_load(image, &npages);
    if (!img) {
        fprintf(stderr, "uzram-bench: cannot load image %s: %s\n", image, strerror(errno));
        return 1;
    }
    if (!npages)
        die("%s holds no whole page", image);
    unsigned char *out = aligned_alloc(UZ_PAGE_SIZE, npages * UZ_PAGE_SIZE);
    if (!out)
        die("out of memory%s", "");

    /* Each repetition times the bare codec and then the device, back to back, so that load
     * from other processes on a shared machine hits both alike; the best of each is kept. */
    struct raw_bench raw;
    raw_open(&raw, algo, level, img, npages);
    raw_pass(&raw); /* warm-up: fault in the baseline's buffers */
    double bytes = (double)npages * UZ_PAGE_SIZE;

    unsigned ops[8], nops = 0;
    char oplist[64];
    snprintf(oplist, sizeof(oplist), "%s", op_arg);
    char *osave = NULL;
    for (char *tok = strtok_r(oplist, ",", &osave); tok; tok = strtok_r(NULL, ",", &osave)) {
        unsigned v = (unsigned)atoi(tok);
        if (nops == 8 || !v || v > 16 || (v & (v - 1)))
            die("--object-pages takes up to 8 of 1, 2, 4, 8, 16, not %s", tok);
        ops[nops++] = v;
    }

    struct result {
        unsigned threads, object_pages;
        double store_s, load_s, store_cpu, raw_s; /* raw_s: the bare codec, same threads */
        struct uz_dev_stats st;
    } res[64];
    struct kernel_result kres = {0};
    int nres = 0;
    char list[256];
    snprintf(list, sizeof(list), "%s", threads_arg);
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned threads = (unsigned)atoi(tok);
        if (threads < 1 || threads > 64 || nres + nops > 64)
            die("--threads takes up to 8 counts of 1..64, not %s", tok);
        struct result *rs = &res[nres];
        for (unsigned o = 0; o < nops; o++)
            rs[o] = (struct result){.threads = threads,
                                    .object_pages = ops[o],
                                    .store_s = 1e30,
                                    .load_s = 1e30,
                                    .store_cpu = 1e30,
                                    .raw_s = 1e30};
        nres += (int)nops;
        for (int run = 0; run < runs; run++)
            for (unsigned o = 0; o < nops; o++) {
                struct result *r = &rs[o];
                raw_pass(&raw);
                if (kernel && nres == (int)nops && !o)
                    kernel_pass(algo, img, npages, out, &kres);
                double tr = raw_compress_threads(&raw, algo, level, threads);
                if (tr < r->raw_s)
                    r->raw_s = tr;
                struct uz_dev_config cfg = {
                    .disksize = npages * UZ_PAGE_SIZE, .algorithm = algo, .level = level};
                struct uz_dev *dev;
                int rc = uz_dev_create(&cfg, &dev);
                if (rc) {
                    fprintf(stderr, "uzram-bench: uz_dev_create: %s\n", strerror(-rc));
                    return 1;
                }
                char opv[8];
                snprintf(opv, sizeof(opv), "%u", r->object_pages);
                if ((rc = uz_dev_attr_write(dev, "object_pages", opv))) {
                    fprintf(stderr, "uzram-bench: object_pages=%s: %s\n", opv, strerror(-rc));
                    return 1;
                }
                double cs, cl;
                double ts = run_pass(dev, img, out, npages, threads, r->object_pages, 1, &cs);
                memset(out, 0xa5, npages * UZ_PAGE_SIZE);
                double tl = run_pass(dev, img, out, npages, threads, r->object_pages, 0, &cl);
                if (cs < r->store_cpu)
                    r->store_cpu = cs;
                if (memcmp(img, out, npages * UZ_PAGE_SIZE)) {
                    for (size_t i = 0; i < npages; i++)
                        if (memcmp(img + i * UZ_PAGE_SIZE, out + i * UZ_PAGE_SIZE, UZ_PAGE_SIZE)) {
                            fprintf(stderr, "uzram-bench: page %zu read back differs\n", i);
                            break;
                        }
                    return 1;
                }
                if (ts < r->store_s)
                    r->store_s = ts;
                if (tl < r->load_s)
                    r->load_s = tl;
                uz_dev_stats(dev, &r->st);
                uz_dev_destroy(dev);
            }
    }

    double raw_c = bytes / raw.compress_s / 1e6, raw_d = bytes / raw.decompress_s / 1e6;
    for (int i = 0; i < nres; i++) {
        const struct result *r = &res[i];
        const struct uz_dev_stats *st = &r->st;
        double store = bytes / r->store_s / 1e6, load = bytes / r->load_s / 1e6;
        const struct result *t1 = NULL; /* the same object_pages with one thread */
        for (int k = 0; k < nres; k++)
            if (res[k].threads == 1 && res[k].object_pages == r->object_pages)
                t1 = &res[k];
        printf("algorithm=%s threads=%u object_pages=%u pages=%zu store_MBps=%.1f load_MBps=%.1f "
               "orig_per_mem=%.3f orig_bytes=%llu compr_bytes=%llu mem_used=%llu same_pages=%llu "
               "huge_pages=%llu "
               "ratio=%.3f raw_compress_MBps=%.1f raw_decompress_MBps=%.1f raw_compr_bytes=%llu "
               "store_vs_raw=%.3f load_vs_raw=%.3f",
               algo, r->threads, r->object_pages, npages, store, load,
               st->mem_used_total ? (double)st->orig_data_size / (double)st->mem_used_total : 0.0,
               (unsigned long long)st->orig_data_size, (unsigned long long)st->compr_data_size,
               (unsigned long long)st->mem_used_total, (unsigned long long)st->same_pages,
               (unsigned long long)st->huge_pages,
               st->mem_used_total ? bytes / (double)st->mem_used_total : 0.0, raw_c, raw_d,
               (unsigned long long)raw.compr_bytes, store / raw_c, load / raw_d);
        if (kres.ok)
            printf(" kernel_write_MBps=%.1f kernel_read_MBps=%.1f kernel_mem_used=%llu "
                   "mem_used_vs_kernel=%.3f store_vs_kernel=%.3f load_vs_kernel=%.3f",
                   bytes / kres.write_s / 1e6, bytes / kres.read_s / 1e6, kres.mem_used,
                   (double)st->mem_used_total / (double)kres.mem_used,
                   store / (bytes / kres.write_s / 1e6), load / (bytes / kres.read_s / 1e6));
        /* CPU per page, every thread of the process counted: shows what a pass costs even when
         * other load on a shared machine keeps the wall-clock figures from scaling. */
        printf(
            " store_cpu_us_per_page=%.2f raw_compress_cpu_us_per_page=%.2f store_vs_raw_cpu=%.3f",
            r->store_cpu * 1e6 / npages, raw.compress_cpu * 1e6 / npages,
            raw.compress_cpu / r->store_cpu);
        /* Against object_pages=1 of the same threads, same repetitions. */
        const struct result *one = NULL;
        for (int k = 0; k < nres; k++)
            if (res[k].threads == r->threads && res[k].object_pages == 1)
                one = &res[k];
        if (one && one != r && one->st.mem_used_total && st->mem_used_total)
            printf(" orig_per_mem_vs_1=%.3f store_vs_1=%.3f load_vs_1=%.3f",
                   ((double)st->orig_data_size / (double)st->mem_used_total) /
                       ((double)one->st.orig_data_size / (double)one->st.mem_used_total),
                   one->store_s / r->store_s, one->load_s / r->load_s);
        if (r->threads > 1 && t1) {
            /* The bare codec's own scaling on this machine, measured the same way: the ceiling
             * for the device's (2 vCPUs may share a physical core). */
            printf(" store_vs_1thread=%.3f raw_compress_vs_1thread=%.3f", t1->store_s / r->store_s,
                   t1->raw_s / r->raw_s);
        }
        printf("\n");
    }
    raw_close(&raw);
    free(img);
    free(out);
    return 0;
}

/* ---- contend: threads on the same slots vs on slots of their own ---- */

struct contend_job {
    struct uz_dev *dev;
    struct raw_codec *raw; /* NULL: the device; else the bare codec, no device */
    uint64_t first, nslots;
    uint64_t seed;
    double until;
    uint64_t ops;
    int rc;
    pthread_barrier_t *start;
};

/* A page that compresses about 2.5x, stamped with `tag` and a check word so a torn page shows. */
static void contend_page(unsigned char *p, uint64_t tag)
{
    uint64_t x = tag * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < UZ_PAGE_SIZE; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t w = (i / 8) % 4 ? (x & 0xff) : x;
        memcpy(p + i, &w, 8);
    }
    memcpy(p, &tag, 8);
}

static bool contend_valid(const unsigned char *p)
{
    unsigned char want[UZ_PAGE_SIZE];
    uint64_t tag;
    memcpy(&tag, p, 8);
    contend_page(want, tag);
    return !memcmp(p, want, UZ_PAGE_SIZE);
}

static void *contend_main(void *arg)
{
    struct contend_job *j = arg;
    unsigned char page[UZ_PAGE_SIZE], comp[2 * UZ_PAGE_SIZE];
    size_t clen = 0;
    uint64_t x = j->seed;
    pthread_barrier_wait(j->start);
    while (!j->rc) {
        for (int k = 0; k < 64 && !j->rc; k++, j->ops++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            uint64_t slot = j->first + x % j->nslots;
            if (j->raw && (x & 1)) {
                /* The baseline does what the device does, without the device: compress a
                 * fresh page, or decompress the last one. */
                contend_page(page, x);
                clen = raw_compress(j->raw, page, comp, sizeof(comp));
            } else if (j->raw) {
                if (clen && raw_decompress(j->raw, comp, clen, page) != UZ_PAGE_SIZE)
                    j->rc = -EIO;
            } else if (x & 1) {
                contend_page(page, x);
                j->rc = uz_dev_write_page(j->dev, slot, page);
            } else {
                j->rc = uz_dev_read_page(j->dev, slot, page);
                if (!j->rc && !contend_valid(page))
                    j->rc = -EILSEQ; /* a torn page */
            }
        }
        if (now() >= j->until)
            break;
    }
    return NULL;
}

/* Runs `threads` jobs for `seconds`. shared: all on slots [0, nslots); else each its own. */
static void contend_case(struct uz_dev *dev, const char *algo, unsigned threads, double seconds,
                         uint64_t nslots, bool shared, bool raw, double *ops_per_s,
                         uint64_t *min_ops)
{
    pthread_t tid[64];
    struct contend_job jobs[64];
    struct raw_codec codecs[64];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads + 1);
    double t0 = now();
    for (unsigned t = 0; t < threads; t++) {
        if (raw)
            raw_init(&codecs[t], algo, 0);
        jobs[t] = (struct contend_job){.dev = dev,
                                       .raw = raw ? &codecs[t] : NULL,
                                       .first = shared ? 0 : t * nslots,
                                       .nslots = nslots,
                                       .seed = 88172645463325252ull + t,
                                       .until = t0 + seconds,
                                       .start = &start};
        if (pthread_create(&tid[t], NULL, contend_main, &jobs[t]))
            die("pthread_create failed%s", "");
    }
    pthread_barrier_wait(&start);
    t0 = now();
    uint64_t total = 0, least = UINT64_MAX;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (jobs[t].rc) {
            fprintf(stderr, "uzram-bench: contend: %s\n", strerror(-jobs[t].rc));
            exit(1);
        }
        total += jobs[t].ops;
        least = jobs[t].ops < least ? jobs[t].ops : least;
        if (raw) {
            free(codecs[t].state);
            ZSTD_freeCCtx(codecs[t].zc);
            ZSTD_freeDCtx(codecs[t].zd);
            if (!strcmp(algo, "deflate")) {
                deflateEnd(&codecs[t].zdef);
                inflateEnd(&codecs[t].zinf);
            }
        }
    }
    double t1 = now();
    pthread_barrier_destroy(&start);
    *ops_per_s = (double)total / (t1 - t0);
    *min_ops = least;
}

static int cmd_contend(int argc, char **argv)
{
    const char *algo = "lz4";
    unsigned threads = 4, runs = 3;
    double seconds = 1.0;
    uint64_t nslots = 64;
    static const struct option opts[] = {
        {"threads", required_argument, 0, 't'}, {"seconds", required_argument, 0, 's'},
        {"slots", required_argument, 0, 'n'},   {"algorithm", required_argument, 0, 'a'},
        {"runs", required_argument, 0, 'r'},    {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "t:s:n:a:r:", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            threads = (unsigned)atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'n':
            nslots = strtoull(optarg, NULL, 0);
            break;
        case 'a':
            algo = optarg;
            break;
        case 'r':
            runs = (unsigned)atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || nslots < 1 || seconds <= 0 || runs < 1)
        die("contend: --threads 1..64, --slots >= 1, --seconds > 0, --runs >= 1%s", "");
    struct uz_dev_config cfg = {.disksize = threads * nslots * UZ_PAGE_SIZE, .algorithm = algo};
    struct uz_dev *dev;
    int rc = uz_dev_create(&cfg, &dev);
    if (rc)
        die("uz_dev_create: %s", strerror(-rc));
    unsigned char page[UZ_PAGE_SIZE];
    for (uint64_t i = 0; i < threads * nslots; i++) {
        contend_page(page, i);
        uz_dev_write_page(dev, i, page);
    }
    /* Best of --runs for each case, the three cases interleaved in every run. */
    double best[3] = {0, 0, 0};
    uint64_t least[3] = {0, 0, 0};
    for (unsigned run = 0; run < runs; run++)
        for (int k = 0; k < 3; k++) {
            double ops;
            uint64_t min_ops;
            contend_case(dev, algo, threads, seconds, nslots, k == 0, k == 2, &ops, &min_ops);
            if (ops > best[k]) {
                best[k] = ops;
                least[k] = min_ops;
            }
        }
    uz_dev_destroy(dev);
    printf("algorithm=%s threads=%u slots=%llu seconds=%.2f shared_ops_per_s=%.0f "
           "shared_min_thread_ops=%llu distinct_ops_per_s=%.0f distinct_min_thread_ops=%llu "
           "raw_ops_per_s=%.0f shared_vs_distinct=%.3f distinct_vs_raw=%.3f\n",
           algo, threads, (unsigned long long)nslots, seconds, best[0],
           (unsigned long long)least[0], best[1], (unsigned long long)least[1], best[2],
           best[0] / best[1], best[1] / best[2]);
    return least[0] > 0 && least[1] > 0 ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: uzram-bench dev --image FILE [--algorithm NAME] [--level N]\n"
               "                       [--threads N[,N...]] [--runs N]\n"
               "                       [--kernel]\n"
               "  NAME: lzo, lz4 (default), lz4hc, zstd, deflate\n");
    fprintf(f, "       uzram-bench contend [--threads N] [--slots N] [--seconds S] [--runs N]\n"
               "                           [--algorithm NAME]\n");
    fprintf(f, "       uzram-bench swap --image FILE [--size-mib N] [--limit-mib N] [--touches N]\n"
               "                        [--algorithm NAME] [--workers N] [--runs N] [--kernel | "
               "--baseline]\n");
    fprintf(f, "       uzram-bench tier --image FILE [--algorithm NAME] [--secondary NAME]\n"
               "                        [--dir DIR]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "dev"))
        return cmd_dev(argc - 1, argv + 1);
    if (!strcmp(argv[1], "contend"))
        return cmd_contend(argc - 1, argv + 1);
    if (!strcmp(argv[1], "swap"))
        return uz_bench_swap(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tier"))
        return uz_bench_tier(argc - 1, argv + 1);
    fprintf(stderr, "uzram-bench: unknown mode '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
