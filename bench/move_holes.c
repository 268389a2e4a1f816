/* SPDX-License-Identifier: MIT */
/*
 * move_holes.c - `move-holes`: how many TLB-shootdown IPIs a UFFDIO_MOVE of a 512-page range
 * sends, with every page present or only every STRIDE-th (the region's victims among
 * swapped-out neighbours), in one call with UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES or one call per
 * page. Behind design.md's "A move batches its TLB flush only over a run of present pages".
 *
 *   move-holes [STRIDE [ROUNDS]]     (default 4 and 200)
 *
 * A second thread keeps the process running on the other CPU (else the kernel need not send
 * an IPI at all). IPIs are read from /proc/interrupts' CAL line (function-call interrupts,
 * every CPU), so other activity on the machine counts too: run it on a quiet machine.
 * Prints one key=value line per mode (per_page, one_call_dense, one_call_holes). Needs
 * userfaultfd (root, or vm.unprivileged_userfaultfd=1) and Linux 6.8+ (UFFDIO_MOVE).
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFDIO_MOVE /* Debian 12's headers predate it (Linux 6.8) */
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
    __u64 dst, src, len, mode;
    __s64 move;
};
#define UFFDIO_MOVE                      _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#define UFFD_FEATURE_MOVE                (1 << 16)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#endif

#define PAGE  4096ul
#define NPAGE 512ul /* one page table: the kernel batches within it */

static atomic_bool stop;
static volatile char spin_byte;

static void *spinner(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed))
        spin_byte++;
    return NULL;
}

/* Function-call interrupts so far, summed over every CPU. */
static long cal_ipis(void)
{
    FILE *f = fopen("/proc/interrupts", "r");
    char line[4096];
    long total = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        char *p = strstr(line, "CAL:");
        if (!p)
            continue;
        p += 4;
        for (;;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p)
                break;
            total += v;
            p = end;
        }
    }
    fclose(f);
    return total;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *map_aligned(size_t len)
{
    char *p = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    p = (char *)(((uintptr_t)p + len - 1) & ~(uintptr_t)(len - 1));
    madvise(p, len, MADV_NOHUGEPAGE);
    return p;
}

static int move(int uffd, char *dst, char *src, size_t len, __u64 mode)
{
    struct uffdio_move m = {.dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len, .mode = mode};
    return ioctl(uffd, UFFDIO_MOVE, &m) ? -errno : 0;
}

static int run(const char *name, int uffd, char *src, char *dst, unsigned stride, bool one_call,
               unsigned rounds)
{
    long moved = 0, c0 = cal_ipis();
    double t0 = now_s();
    for (unsigned k = 0; k < rounds; k++) {
        for (size_t i = 0; i < NPAGE; i += stride)
            src[i * PAGE] = 1;
        int rc = 0;
        if (one_call)
            rc = move(uffd, dst, src, NPAGE * PAGE, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES);
        for (size_t i = 0; !one_call && !rc && i < NPAGE; i += stride)
            rc = move(uffd, dst + i * PAGE, src + i * PAGE, PAGE, 0);
        if (rc) {
            fprintf(stderr, "move-holes: UFFDIO_MOVE: %s\n", strerror(-rc));
            return -1;
        }
        moved += (long)((NPAGE + stride - 1) / stride);
        madvise(dst, NPAGE * PAGE, MADV_DONTNEED);
    }
    double t = now_s() - t0;
    long ipis = cal_ipis() - c0;
    printf("mode=%s stride=%u pages=%ld ipis=%ld ipis_per_page=%.3f us_per_page=%.2f\n", name,
           stride, moved, ipis, (double)ipis / (double)moved, t * 1e6 / (double)moved);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned stride = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
    unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 200;
    if (!stride || stride > NPAGE || !rounds) {
        fprintf(stderr, "usage: move-holes [STRIDE (1..512) [ROUNDS]]\n");
        return 2;
    }
    char *src = map_aligned(NPAGE * PAGE), *dst = map_aligned(NPAGE * PAGE);
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (!src || !dst || uffd < 0) {
        fprintf(stderr, "move-holes: %s\n", uffd < 0 ? "userfaultfd refused" : "mmap failed");
        return 1;
    }
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MOVE};
    struct uffdio_register reg = {.range = {.start = (uintptr_t)dst, .len = NPAGE * PAGE},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_API, &api) || ioctl(uffd, UFFDIO_REGISTER, &reg)) {
        fprintf(stderr, "move-holes: no UFFDIO_MOVE here: %s\n", strerror(errno));
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, spinner, NULL))
        return 1;
    usleep(1000);
    int rc = run("per_page", uffd, src, dst, stride, false, rounds);
    if (!rc)
        rc = run("one_call_dense", uffd, src, dst, 1, true, rounds);
    if (!rc)
        rc = run("one_call_holes", uffd, src, dst, stride, true, rounds);
    atomic_store(&stop, true);
    pthread_join(t, NULL);
    return rc ? 1 : 0;
}
