// SPDX-License-Identifier: MIT
/*
 * bench_swap.c - `uzram-bench swap`: the "swapwork" workload of docs/anchors.md.
 *
 *   uzram-bench swap --image FILE [--size-mib 1024] [--limit-mib 256] [--touches 200000]
 *                    [--algorithm lz4] [--workers N] [--object-pages N] [--runs N]
 *                    [--clean-limit-mib N|max] [--kernel | --baseline]
 *
 * The workload: map --size-mib of memory; fill it page by page from the first 32 MiB of the
 * image, cycling ("fill"); read one byte of every page in order ("scan"); then --touches
 * uniformly random page touches, each reading one byte and incrementing another (xorshift64,
 * seed 88172645463325252). Each phase is timed on its own.
 *
 * By default it runs on a uzram region limited to --limit-mib resident. --kernel runs the very
 * same code on plain anonymous memory (MADV_NOHUGEPAGE): run it inside a memory cgroup limited
 * to --limit-mib with kernel zram as swap. --baseline does that itself (root): it sets up
 * /dev/zram0 (lz4, 4 GiB) as swap and a memory cgroup (v1 or v2, whichever has the memory
 * controller), runs the kernel case in a child inside the cgroup, then the region case in this
 * process, prints both lines and their ratios, and puts zram0, swap and cgroups back as they
 * were. With --runs N every figure is the median of N runs (--baseline alternates: kernel,
 * region, kernel, region, ..., and each ratio is the median of the N pairs' ratios).
 *
 * Memory: resident_bytes is what of the workload's mapping is in RAM at the end (mincore, the
 * same call for both), total_bytes that plus the compressed store's mem_used (the region's
 * pool, or zram's); mem= in the ratio line is region total / kernel total (at most 1.00 means
 * the region used no more memory than kernel zram swap at the same limit).
 */
#include <uzram/uzram.h>

#include "bench_swap.h"
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE      4096u
#define IMG_PAGES (32u * 1024 * 1024 / PAGE) /* the first 32 MiB of the image */
#define SEED      88172645463325252ull
#define CGROUP    "uzram-bench"

struct swap_opts {
    const char *image;
    size_t size_mib, limit_mib, touches;
    const char *algorithm;
    unsigned workers, runs;
    const char *object_pages; /* the region device's object_pages, or NULL */
    size_t clean_limit;       /* uz_region_config.clean_limit (bytes; 0 default, SIZE_MAX none) */
    bool kernel, baseline;
};

struct swap_result {
    double fill_MBps, scan_MBps, touches_per_s;
    uint64_t major_faults, swapouts, mem_used, resident_bytes, checksum;
    int ok;
};

#define MAX_RUNS 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- the workload (identical for both cases) ---- */

static void workload(unsigned char *mem, size_t npages, const unsigned char *img, size_t img_pages,
                     size_t touches, struct swap_result *res)
{
    double t0 = now();
    for (size_t i = 0; i < npages; i++)
        memcpy(mem + i * PAGE, img + (i % img_pages) * PAGE, PAGE);
    double t1 = now();
    uint64_t sum = 0;
    for (size_t i = 0; i < npages; i++)
        sum += ((volatile unsigned char *)mem)[i * PAGE];
    double t2 = now();
    uint64_t s = SEED;
    for (size_t k = 0; k < touches; k++) {
        uint64_t x = xorshift64(&s);
        unsigned char *p = mem + (x % npages) * PAGE;
        size_t off = (x >> 40) % PAGE;
        sum += ((volatile unsigned char *)p)[off];
        ((volatile unsigned char *)p)[(off + PAGE / 2) % PAGE]++;
    }
    double t3 = now();
    double mb = (double)npages * PAGE / 1e6;
    res->fill_MBps = mb / (t1 - t0);
    res->scan_MBps = mb / (t2 - t1);
    res->touches_per_s = touches ? (double)touches / (t3 - t2) : 0;
    res->checksum = sum;
}

/* Pages of [mem, mem+size) in RAM, in bytes. */
static uint64_t resident_bytes(void *mem, size_t size)
{
    size_t n = size / PAGE;
    unsigned char *vec = malloc(n);
    uint64_t in = 0;
    if (vec && !mincore(mem, size, vec))
        for (size_t i = 0; i < n; i++)
            in += vec[i] & 1;
    free(vec);
    return in * PAGE;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v). */
static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median of each figure of runs[0..n): the speeds, and the memory of the median run by
 * total memory. */
static void median_of(const struct swap_result *runs, unsigned n, struct swap_result *out)
{
    double v[MAX_RUNS];
    *out = runs[n - 1];
#define MED(field)                                                                                 \
    do {                                                                                           \
        for (unsigned k = 0; k < n; k++)                                                           \
            v[k] = (double)runs[k].field;                                                          \
        out->field = median(v, n);                                                                 \
    } while (0)
    MED(fill_MBps);
    MED(scan_MBps);
    MED(touches_per_s);
    MED(mem_used);
    MED(resident_bytes);
#undef MED
}

/* ---- the region case ---- */

/* Runs o->runs times into runs[]. */
static int run_region(const struct swap_opts *o, const unsigned char *img, size_t img_pages,
                      struct swap_result *runs)
{
    for (unsigned run = 0; run < o->runs; run++) {
        struct uz_region_config cfg = {
            .size = o->size_mib << 20,
            .resident_limit = o->limit_mib << 20,
            .algorithm = o->algorithm,
            .workers = o->workers,
            .clean_limit = o->clean_limit,
        };
        struct uz_region *r;
        int rc = uz_region_create(&cfg, &r);
        if (rc) {
            fprintf(stderr, "uzram-bench: uz_region_create: %s%s\n", strerror(-rc),
                    rc == -EPERM || rc == -ENOSYS
                        ? " (userfaultfd is not available to this process: it needs a kernel "
                          "with CONFIG_USERFAULTFD and no seccomp filter refusing it)"
                        : "");
            return -1;
        }
        if (o->object_pages &&
            (rc = uz_dev_attr_write(uz_region_dev(r), "object_pages", o->object_pages))) {
            fprintf(stderr, "uzram-bench: object_pages=%s: %s\n", o->object_pages, strerror(-rc));
            uz_region_destroy(r);
            return -1;
        }
        struct swap_result res = {0};
        workload(uz_region_base(r), cfg.size / PAGE, img, img_pages, o->touches, &res);
        struct uz_region_stat st;
        uz_region_stat(r, &st);
        res.major_faults = st.major_faults;
        res.swapouts = st.swapouts;
        res.mem_used = st.mem_used_total;
        res.resident_bytes = resident_bytes(uz_region_base(r), cfg.size);
        runs[run] = res;
        if (run + 1 == o->runs)
            fprintf(stderr,
                    "region: mode=%s minor_faults=%llu wp_faults=%llu swapins=%llu "
                    "readahead=%llu swapouts_clean=%llu writebacks=%llu redirtied=%llu "
                    "throttled=%llu orig=%llu compr=%llu\n",
                    st.mode == UZ_REGION_MODE_FULL ? "full" : "user-only",
                    (unsigned long long)st.minor_faults, (unsigned long long)st.wp_faults,
                    (unsigned long long)st.swapins, (unsigned long long)st.readahead_pages,
                    (unsigned long long)st.swapouts_clean, (unsigned long long)st.writebacks,
                    (unsigned long long)st.redirtied, (unsigned long long)st.throttled,
                    (unsigned long long)st.orig_data_size, (unsigned long long)st.compr_data_size);
        uz_region_destroy(r);
    }
    return 0;
}

/* ---- the kernel case: plain anonymous memory ---- */

static uint64_t vmstat(const char *key)
{
    FILE *f = fopen("/proc/vmstat", "r");
    char name[64];
    unsigned long long v, found = 0;
    if (!f)
        return 0;
    while (fscanf(f, "%63s %llu", name, &v) == 2)
        if (!strcmp(name, key))
            found = v;
    fclose(f);
    return found;
}

static uint64_t zram_mem_used(void)
{
    FILE *f = fopen("/sys/block/zram0/mm_stat", "r");
    unsigned long long orig, compr, used = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu %llu", &orig, &compr, &used) != 3)
        used = 0;
    fclose(f);
    return used;
}

static int run_kernel(const struct swap_opts *o, const unsigned char *img, size_t img_pages,
                      struct swap_result *runs)
{
    for (unsigned run = 0; run < o->runs; run++) {
        size_t size = o->size_mib << 20;
        unsigned char *mem =
            mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
            perror("uzram-bench: mmap");
            return -1;
        }
        madvise(mem, size, MADV_NOHUGEPAGE);
        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        uint64_t out0 = vmstat("pswpout");
        struct swap_result res = {0};
        workload(mem, size / PAGE, img, img_pages, o->touches, &res);
        getrusage(RUSAGE_SELF, &ru1);
        res.major_faults = (uint64_t)(ru1.ru_majflt - ru0.ru_majflt);
        res.swapouts = vmstat("pswpout") - out0;
        res.mem_used = zram_mem_used();
        res.resident_bytes = resident_bytes(mem, size);
        runs[run] = res;
        munmap(mem, size);
    }
    return 0;
}

static void print_result(const char *mode, const struct swap_opts *o, const struct swap_result *r)
{
    printf("mode=%s size_mib=%zu limit_mib=%zu touches=%zu runs=%u fill_MBps=%.1f "
           "scan_MBps=%.1f touches_per_s=%.0f major_faults=%llu swapouts=%llu mem_used=%llu "
           "resident_bytes=%llu total_bytes=%llu\n",
           mode, o->size_mib, o->limit_mib, o->touches, o->runs, r->fill_MBps, r->scan_MBps,
           r->touches_per_s, (unsigned long long)r->major_faults, (unsigned long long)r->swapouts,
           (unsigned long long)r->mem_used, (unsigned long long)r->resident_bytes,
           (unsigned long long)(r->resident_bytes + r->mem_used));
    fflush(stdout);
}

/* ---- --baseline: kernel zram swap and a memory cgroup, set up and restored ---- */

static int write_file(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, val, strlen(val));
    int e = n < 0 ? errno : 0;
    close(fd);
    return n < 0 ? -e : 0;
}

static int read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    fclose(f);
    return 0;
}

struct baseline_env {
    bool made_node, zram_on, swap_on, v2;
    char cg[256];
    char old_algo[64];
};

static void baseline_restore(struct baseline_env *e)
{
    if (e->swap_on && swapoff("/dev/zram0"))
        perror("uzram-bench: swapoff /dev/zram0");
    if (e->zram_on) {
        write_file("/sys/block/zram0/reset", "1");
        if (e->old_algo[0])
            write_file("/sys/block/zram0/comp_algorithm", e->old_algo);
    }
    if (e->made_node)
        unlink("/dev/zram0");
    if (e->cg[0] && rmdir(e->cg) && errno != ENOENT)
        fprintf(stderr, "uzram-bench: rmdir %s: %s\n", e->cg, strerror(errno));
}

static const char *baseline_setup(struct baseline_env *e, const struct swap_opts *o)
{
    memset(e, 0, sizeof(*e));
    if (geteuid())
        return "--baseline needs root (zram, swapon, memory cgroup)";
    char buf[512];
    if (access("/sys/block/zram0", F_OK) &&
        write_file("/sys/class/zram-control/hot_add", "1") < 0 && system("modprobe zram"))
        return "no zram0 (no zram module, no zram-control)";
    if (read_file("/sys/block/zram0/initstate", buf, sizeof(buf)) || atoi(buf))
        return "zram0 is in use (initstate 1): not touching it";
    if (access("/dev/zram0", F_OK)) {
        if (read_file("/sys/block/zram0/dev", buf, sizeof(buf)))
            return "cannot read /sys/block/zram0/dev";
        unsigned maj = 253, min = 0;
        sscanf(buf, "%u:%u", &maj, &min);
        if (mknod("/dev/zram0", S_IFBLK | 0600, makedev(maj, min)))
            return "mknod /dev/zram0 failed";
        e->made_node = true;
    }
    if (!read_file("/sys/block/zram0/comp_algorithm", buf, sizeof(buf))) {
        char *a = strchr(buf, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b && b - a - 1 < (long)sizeof(e->old_algo)) {
            memcpy(e->old_algo, a + 1, (size_t)(b - a - 1));
            e->old_algo[b - a - 1] = 0;
        }
    }
    e->zram_on = true;
    write_file("/sys/block/zram0/reset", "1");
    const char *algo = o->algorithm ? o->algorithm : "lz4";
    if (write_file("/sys/block/zram0/comp_algorithm", algo) ||
        write_file("/sys/block/zram0/disksize", "4G"))
        return "cannot configure zram0 (comp_algorithm, disksize)";
    if (system("mkswap /dev/zram0 >/dev/null 2>&1"))
        return "mkswap /dev/zram0 failed";
    if (swapon("/dev/zram0", SWAP_FLAG_PREFER | (100 << SWAP_FLAG_PRIO_SHIFT)))
        return "swapon /dev/zram0 failed";
    e->swap_on = true;
    char lim[32];
    snprintf(lim, sizeof(lim), "%zuM", o->limit_mib);
    if (!access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK)) {
        snprintf(e->cg, sizeof(e->cg), "/sys/fs/cgroup/memory/%s", CGROUP);
        if (mkdir(e->cg, 0755) && errno != EEXIST)
            return "cannot create the v1 memory cgroup";
        snprintf(buf, sizeof(buf), "%s/memory.limit_in_bytes", e->cg);
        if (write_file(buf, lim))
            return "cannot set memory.limit_in_bytes";
        snprintf(buf, sizeof(buf), "%s/memory.swappiness", e->cg);
        write_file(buf, "60");
    } else if (!read_file("/sys/fs/cgroup/cgroup.controllers", buf, sizeof(buf)) &&
               strstr(buf, "memory")) {
        e->v2 = true;
        write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
        snprintf(e->cg, sizeof(e->cg), "/sys/fs/cgroup/%s", CGROUP);
        if (mkdir(e->cg, 0755) && errno != EEXIST)
            return "cannot create the v2 cgroup";
        snprintf(buf, sizeof(buf), "%s/memory.max", e->cg);
        if (write_file(buf, lim))
            return "cannot set memory.max";
        snprintf(buf, sizeof(buf), "%s/memory.swap.max", e->cg);
        write_file(buf, "max");
    } else {
        return "no memory cgroup controller";
    }
    return NULL;
}

/* Runs the kernel case in a child inside the cgroup; the result comes back through a pipe. */
static int run_kernel_in_cgroup(const struct baseline_env *e, const struct swap_opts *o,
                                const unsigned char *img, size_t img_pages, struct swap_result *res)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (!pid) {
        close(fds[0]);
        char path[300], pidbuf[32];
        snprintf(path, sizeof(path), "%s/%s", e->cg, e->v2 ? "cgroup.procs" : "tasks");
        snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
        struct swap_result r = {0};
        if (!write_file(path, pidbuf) && !run_kernel(o, img, img_pages, &r))
            r.ok = 1;
        if (write(fds[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], res, sizeof(*res));
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return n == (ssize_t)sizeof(*res) && res->ok ? 0 : -1;
}

/* ---- command line ---- */

static void swap_usage(FILE *f)
{
    fprintf(f, "usage: uzram-bench swap --image FILE [--size-mib N] [--limit-mib N] "
               "[--touches N]\n"
               "                        [--algorithm NAME] [--workers N] [--object-pages N] "
               "[--runs N]\n"
               "                        [--clean-limit-mib N|max] [--kernel | --baseline]\n");
}

int uz_bench_swap(int argc, char **argv)
{
    struct swap_opts o = {.size_mib = 1024, .limit_mib = 256, .touches = 200000, .runs = 1};
    static const struct option longopts[] = {
        {"image", required_argument, NULL, 'i'},
        {"size-mib", required_argument, NULL, 's'},
        {"limit-mib", required_argument, NULL, 'l'},
        {"touches", required_argument, NULL, 't'},
        {"algorithm", required_argument, NULL, 'a'},
        {"workers", required_argument, NULL, 'w'},
        {"object-pages", required_argument, NULL, 'o'},
        {"runs", required_argument, NULL, 'r'},
        {"clean-limit-mib", required_argument, NULL, 'c'},
        {"kernel", no_argument, NULL, 'k'},
        {"baseline", no_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            o.image = optarg;
            break;
        case 's':
            o.size_mib = strtoul(optarg, NULL, 10);
            break;
        case 'l':
            o.limit_mib = strtoul(optarg, NULL, 10);
            break;
        case 't':
            o.touches = strtoul(optarg, NULL, 10);
            break;
        case 'a':
            o.algorithm = optarg;
            break;
        case 'w':
            o.workers = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'o':
            o.object_pages = optarg;
            break;
        case 'r':
            o.runs = (unsigned)strtoul(optarg, NULL, 10);
            if (!o.runs || o.runs > MAX_RUNS) {
                fprintf(stderr, "uzram-bench: --runs: 1..%u\n", MAX_RUNS);
                return 2;
            }
            break;
        case 'c': /* the region's swap cache bound: MiB, or max (unbounded) */
            o.clean_limit =
                strcmp(optarg, "max") == 0 ? SIZE_MAX : (size_t)strtoul(optarg, NULL, 10) << 20;
            break;
        case 'k':
            o.kernel = true;
            break;
        case 'b':
            o.baseline = true;
            break;
        case 'h':
            swap_usage(stdout);
            return 0;
        default:
            swap_usage(stderr);
            return 2;
        }
    }
    if (!o.image || !o.size_mib || !o.runs || (o.kernel && o.baseline)) {
        swap_usage(stderr);
        return 2;
    }
    size_t img_pages;
    unsigned char *img = uz_image_load(o.image, &img_pages);
    if (!img) {
        fprintf(stderr, "uzram-bench: %s: %s\n", o.image, strerror(errno));
        return 1;
    }
    if (!img_pages) {
        fprintf(stderr, "uzram-bench: %s: no whole page\n", o.image);
        return 1;
    }
    if (img_pages > IMG_PAGES)
        img_pages = IMG_PAGES;

    int rc = 0;
    static struct swap_result kruns[MAX_RUNS], rruns[MAX_RUNS];
    struct swap_result kr, rr;
    if (o.kernel) {
        rc = run_kernel(&o, img, img_pages, kruns);
        if (!rc) {
            median_of(kruns, o.runs, &kr);
            print_result("kernel", &o, &kr);
        }
    } else if (o.baseline) {
        /* Kernel and region alternate, run by run, so that both see the same machine; each
         * ratio is the median of the pairs' ratios. */
        struct swap_opts one = o;
        one.runs = 1;
        bool have_kernel = true;
        const char *why = NULL;
        double fill[MAX_RUNS], scan[MAX_RUNS], touch[MAX_RUNS], mem[MAX_RUNS];
        unsigned pairs = 0, done = 0;
        for (unsigned run = 0; run < o.runs && !rc; run++) {
            if (have_kernel) {
                struct baseline_env env;
                why = baseline_setup(&env, &o);
                if (!why && run_kernel_in_cgroup(&env, &one, img, img_pages, &kruns[run]))
                    why = "the child in the cgroup failed";
                baseline_restore(&env);
                have_kernel = !why;
            }
            rc = run_region(&one, img, img_pages, &rruns[run]);
            if (rc)
                break;
            done++;
            if (have_kernel) {
                const struct swap_result *k = &kruns[run], *g = &rruns[run];
                fill[pairs] = g->fill_MBps / k->fill_MBps;
                scan[pairs] = g->scan_MBps / k->scan_MBps;
                touch[pairs] = k->touches_per_s > 0 ? g->touches_per_s / k->touches_per_s : 0;
                mem[pairs++] = (double)(g->resident_bytes + g->mem_used) /
                               (double)(k->resident_bytes + k->mem_used);
            }
        }
        if (have_kernel) {
            median_of(kruns, done ? done : 1, &kr);
            print_result("kernel", &o, &kr);
        } else {
            printf("mode=kernel unavailable=\"%s\"\n", why);
        }
        if (!rc) {
            median_of(rruns, done, &rr);
            print_result("region", &o, &rr);
            if (have_kernel && pairs == done)
                printf("mode=ratio pairs=%u fill=%.2f scan=%.2f touches=%.2f mem=%.2f\n", pairs,
                       median(fill, pairs), median(scan, pairs), median(touch, pairs),
                       median(mem, pairs));
        }
    } else {
        rc = run_region(&o, img, img_pages, rruns);
        if (!rc) {
            median_of(rruns, o.runs, &rr);
            print_result("region", &o, &rr);
        }
    }
    free(img);
    return rc ? 1 : 0;
}
