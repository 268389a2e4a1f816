// SPDX-License-Identifier: MIT
/*
 * test_region.c - the region (region.h), one behaviour at a time: bad configurations, zeros on
 * first touch, swap-out and swap-in against the written pattern, the swap cache (clean pages
 * evicted again without compression), readahead, libc I/O (read(2) into and write(2) from
 * swapped-out and write-protected pages), the user-only privilege mode with pinning (forced, and
 * as a real unprivileged user), a clear -errno when userfaultfd is refused (seccomp), pages the
 * application drops itself, destroy with writebacks in flight, and many create/destroy cycles
 * without leaking descriptors or threads, system calls of the fault and reclaim paths that fail
 * (injected: no faulting thread may stay asleep, the failed state), and a page lock waiter that
 * sleeps rather than spins. uz_region_check() compares the page states with the kernel's
 * (PAGEMAP_SCAN) after each step. alarm() guards against any hang; the threads that could be
 * left asleep are joined with a timeout.
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "region_harness.h"

#define PAGE UZ_PAGE_SIZE

static uint64_t pattern(uint64_t page, uint64_t ver, uint64_t word)
{
    uint64_t x = (page + 1) * 0x9e3779b97f4a7c15ull ^ (ver + 7) * 0xc2b2ae3d27d4eb4full;
    x ^= word * 0x165667b19e3779f9ull;
    x ^= x >> 29;
    /* Half of each page is the pattern, half zeros: compressible, like real memory. */
    return word < 256 ? x : 0;
}

static void fill_page(unsigned char *base, uint64_t page, uint64_t ver)
{
    uint64_t *w = (uint64_t *)(base + page * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        w[j] = pattern(page, ver, j);
}

static int page_ok(const unsigned char *base, uint64_t page, uint64_t ver)
{
    const uint64_t *w = (const uint64_t *)(base + page * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        if (w[j] != pattern(page, ver, j))
            return 0;
    return 1;
}

static void t_invalid(void)
{
    struct uz_region *r = (struct uz_region *)1;
    struct uz_region_config cfg = {.size = 0};
    CHECK_EQ(uz_region_create(&cfg, &r), -EINVAL);
    cfg.size = PAGE + 1;
    CHECK_EQ(uz_region_create(&cfg, &r), -EINVAL);
    cfg.size = 64 * PAGE;
    cfg.resident_limit = 8 * PAGE; /* under the 16-page minimum */
    CHECK_EQ(uz_region_create(&cfg, &r), -EINVAL);
    CHECK_EQ(uz_region_create(NULL, &r), -EINVAL);
    cfg.resident_limit = 0;
    cfg.algorithm = "no-such-codec";
    int rc = uz_region_create(&cfg, &r);
    CHECK(rc == -ENOENT || rc == -ENOSYS || rc == -EPERM);
    uz_region_destroy(NULL);
    CHECK(uz_region_base(NULL) == NULL);
    CHECK_EQ(uz_region_stat(NULL, NULL), -EINVAL);
}

static void t_zero_and_roundtrip(void)
{
    const size_t n = 2048, limit = 256; /* 8 MiB, 1 MiB resident */
    struct uz_region *r = make(n, limit);
    unsigned char *b = uz_region_base(r);
    CHECK(((uintptr_t)b & (PAGE - 1)) == 0);
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.size, n * PAGE);
    CHECK_EQ(st.resident_limit, limit * PAGE);
    CHECK(st.mode == UZ_REGION_MODE_FULL || st.mode == UZ_REGION_MODE_USER_ONLY);
    CHECK(st.stable_writes);

    /* First touch reads zeros, and costs no device read. */
    for (size_t p = 0; p < n; p += 97)
        for (size_t j = 0; j < PAGE; j += 511)
            CHECK_EQ(b[p * PAGE + j], 0);
    st = stat_of(r);
    CHECK(st.minor_faults > 0);
    CHECK_EQ(st.major_faults, 0);

    for (size_t p = 0; p < n; p++)
        fill_page(b, p, 1);
    st = stat_of(r);
    CHECK(st.resident_pages <= limit);
    CHECK(st.swapouts > 0);
    CHECK(st.writebacks > 0);
    for (size_t p = 0; p < n; p++)
        CHECK(page_ok(b, p, 1));
    /* Backwards, so that readahead does not hide the faults. */
    for (size_t p = n; p-- > 0;)
        CHECK(page_ok(b, p, 1));
    st = stat_of(r);
    CHECK(st.major_faults > 0);
    CHECK(st.resident_pages <= limit);
    CHECK(st.orig_data_size > 0 && st.compr_data_size > 0 && st.mem_used_total > 0);
    CHECK(st.compr_data_size < st.orig_data_size);
    settle_and_check(r);
    uz_region_destroy(r);
}

/* A region of *cfg (cfg->size bytes, no limit) whose n pages hold fill_page(key), all swapped
 * out. */
static struct uz_region *swapped_region(const struct uz_region_config *cfg, uint64_t key,
                                        unsigned char **b)
{
    const size_t n = cfg->size / PAGE;
    struct uz_region *r = make_cfg(cfg);
    *b = uz_region_base(r);
    for (size_t p = 0; p < n; p++)
        fill_page(*b, p, key);
    CHECK_EQ(uz_region_swapout(r, *b, n * PAGE), (long)n);
    return r;
}

static void t_swap_cache_and_readahead(void)
{
    const size_t n = 512;
    /* No limit: only explicit swap-out; the swap cache unbounded. */
    struct uz_region_config cfg = {.size = n * PAGE, .clean_limit = SIZE_MAX};
    unsigned char *b;
    struct uz_region *r = swapped_region(&cfg, 2, &b);
    struct uz_region_stat s0 = stat_of(r);
    CHECK_EQ(s0.swapped_pages, n);
    CHECK_EQ(s0.resident_pages, 0);
    CHECK_EQ(s0.writebacks, n);
    settle_and_check(r);

    /* A sequential read: readahead brings most pages in ahead of their fault. */
    for (size_t p = 0; p < n; p++)
        CHECK(page_ok(b, p, 2));
    struct uz_region_stat s1 = stat_of(r);
    CHECK_EQ(s1.swapins - s0.swapins, n);
    CHECK(s1.readahead_pages - s0.readahead_pages > n / 2);
    CHECK(s1.major_faults - s0.major_faults < n / 2);
    CHECK_EQ(s1.clean_pages, n); /* read only: the stored copies are kept */
    settle_and_check(r);

    /* Evicting them again costs no compression. */
    CHECK_EQ(uz_region_swapout(r, b, n * PAGE), (long)n);
    struct uz_region_stat s2 = stat_of(r);
    CHECK_EQ(s2.writebacks, s1.writebacks);
    CHECK_EQ(s2.swapouts_clean - s1.swapouts_clean, n);

    /* A write to a clean page is a write-protect fault; the page is written back again. */
    CHECK(page_ok(b, 7, 2));
    fill_page(b, 7, 3);
    struct uz_region_stat s3 = stat_of(r);
    CHECK_EQ(s3.wp_faults - s2.wp_faults, 1);
    CHECK_EQ(s3.dirty_pages, 1);
    CHECK_EQ(uz_region_swapout(r, b + 7 * PAGE, PAGE), 1);
    struct uz_region_stat s4 = stat_of(r);
    CHECK_EQ(s4.writebacks - s3.writebacks, 1);
    for (size_t p = 0; p < n; p++)
        CHECK(page_ok(b, p, p == 7 ? 3 : 2));
    settle_and_check(r);
    CHECK_EQ(uz_region_swapout(r, b - PAGE, PAGE), -EINVAL);
    CHECK_EQ(uz_region_swapout(r, b, (n + 1) * PAGE), -EINVAL);
    uz_region_destroy(r);
}

/* Readahead follows many interleaved streams (an allocator's size classes read back in
 * allocation order) and streams with gaps (a size class's pages between other classes'): 16
 * streams read in turn, then one stream reading every other page. Each would fault on every page
 * with a table of 4 streams that must match the next page exactly. */
static void t_readahead_streams(void)
{
    const size_t streams = 16, per = 256, n = streams * per;
    struct uz_region_config cfg = {.size = n * PAGE, .clean_limit = SIZE_MAX};
    unsigned char *b;
    struct uz_region *r = swapped_region(&cfg, 4, &b);
    struct uz_region_stat s0 = stat_of(r);
    for (size_t k = 0; k < per; k++)
        for (size_t st = 0; st < streams; st++)
            CHECK(page_ok(b, st * per + k, 4));
    struct uz_region_stat s1 = stat_of(r);
    CHECK(s1.major_faults - s0.major_faults < n / 4);
    CHECK(s1.readahead_pages - s0.readahead_pages > n / 2);
    CHECK_EQ(uz_region_swapout(r, b, n * PAGE), (long)n);
    for (size_t p = 0; p < n; p += 2) /* every other page: each fault is 2 pages on */
        CHECK(page_ok(b, p, 4));
    struct uz_region_stat s2 = stat_of(r);
    CHECK(s2.major_faults - s1.major_faults < n / 8);
    for (size_t p = 0; p < n; p++)
        CHECK(page_ok(b, p, 4));
    settle_and_check(r);
    uz_region_destroy(r);
}

/* A sparse stream (every fifth page of swapped-out memory, in order: the pages skipped are not
 * resident) keeps a window of one page: each fault lands a few pages past the last one, which
 * used to double the window, and every window then swapped in four unneeded pages for each it
 * served. A dense stream (every page) still reads ahead. */
static void t_readahead_sparse(void)
{
    const size_t n = 4096;
    struct uz_region_config cfg = {.size = n * PAGE, .clean_limit = SIZE_MAX};
    unsigned char *b;
    struct uz_region *r = swapped_region(&cfg, 7, &b);
    struct uz_region_stat s0 = stat_of(r);
    size_t touched = 0;
    for (size_t p = 0; p < n; p += 5, touched++)
        CHECK(page_ok(b, p, 7));
    struct uz_region_stat s1 = stat_of(r);
    fprintf(stderr, "readahead_sparse: %zu pages read, %llu faults, %llu read ahead\n", touched,
            (unsigned long long)(s1.major_faults - s0.major_faults),
            (unsigned long long)(s1.readahead_pages - s0.readahead_pages));
    CHECK(s1.readahead_pages - s0.readahead_pages < touched / 4);
    CHECK(s1.major_faults - s0.major_faults >= touched * 3 / 4);
    CHECK(uz_region_swapout(r, b, n * PAGE) >= (long)touched);
    for (size_t p = 0; p < n; p++)
        CHECK(page_ok(b, p, 7));
    struct uz_region_stat s2 = stat_of(r);
    CHECK(s2.major_faults - s1.major_faults < n / 8);
    settle_and_check(r);
    uz_region_destroy(r);
}

/* The swap cache's bound: past clean_limit a read-only swap-in frees its stored copy and is
 * mapped writable (DIRTY), as kernel zram frees its slot; the default bound is an eighth of the
 * resident limit. */
static void t_swap_cache_bound(void)
{
    const size_t n = 1024, cap = 64;
    struct uz_region_config cfg = {.size = n * PAGE, .clean_limit = cap * PAGE};
    unsigned char *b;
    struct uz_region *r = swapped_region(&cfg, 5, &b);
    settle_and_check(r);
    struct uz_region_stat s0 = stat_of(r);
    CHECK_EQ(s0.orig_data_size, (uint64_t)n * PAGE);
    for (size_t p = 0; p < n; p++)
        CHECK(page_ok(b, p, 5));
    struct uz_region_stat s1 = stat_of(r);
    /* Readahead maps a window at once: the bound may be passed by one window (32 pages) per
     * fault thread. */
    CHECK(s1.clean_pages >= cap && s1.clean_pages <= cap + 32 * 4);
    CHECK_EQ(s1.clean_pages + s1.dirty_pages, n);
    CHECK_EQ(s1.orig_data_size, s1.clean_pages * PAGE); /* the others' copies are freed */
    /* Everything back out and in: each page's contents survive both ways. */
    CHECK_EQ(uz_region_swapout(r, b, n * PAGE), (long)n);
    struct uz_region_stat s2 = stat_of(r);
    CHECK_EQ(s2.swapouts_clean - s1.swapouts_clean, s1.clean_pages);
    CHECK_EQ(s2.writebacks - s1.writebacks, s1.dirty_pages);
    for (size_t p = n; p-- > 0;)
        CHECK(page_ok(b, p, 5));
    settle_and_check(r);
    uz_region_destroy(r);

    /* The default: resident_limit / 8, under reclaim. */
    r = make(n, 256);
    b = uz_region_base(r);
    for (size_t p = 0; p < n; p++)
        fill_page(b, p, 6);
    for (int pass = 0; pass < 2; pass++)
        for (size_t p = 0; p < n; p++)
            CHECK(page_ok(b, p, 6));
    settle_and_check(r);
    struct uz_region_stat s3 = stat_of(r);
    CHECK(s3.clean_pages <= 256 / 8 + 32 * 4);
    CHECK(s3.swapouts_clean > 0);
    /* Stored: the swapped pages and the cache, nothing else. */
    CHECK(s3.orig_data_size <= (s3.swapped_pages + s3.clean_pages) * PAGE);
    uz_region_destroy(r);
}

/* read(2) into swapped-out and write-protected pages, write(2) from swapped-out ones. */
static void t_libc_io(void)
{
    const size_t n = 64;
    struct uz_region *r = make(n, 0);
    if (stat_of(r).mode != UZ_REGION_MODE_FULL) {
        fprintf(stderr, "t_libc_io: user-only mode here, covered by t_user_only\n");
        uz_region_destroy(r);
        return;
    }
    unsigned char *b = uz_region_base(r);
    for (size_t p = 0; p < n; p++)
        fill_page(b, p, 4);
    CHECK_EQ(uz_region_swapout(r, b, n * PAGE), (long)n);

    /* write(2) from pages 0..3 (swapped out): the kernel faults them in. */
    char path[] = "/tmp/uzram-region-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    CHECK_EQ(write(fd, b, 4 * PAGE), (ssize_t)(4 * PAGE));
    static unsigned char check[4 * PAGE];
    CHECK_EQ(pread(fd, check, sizeof(check), 0), (ssize_t)sizeof(check));
    for (size_t p = 0; p < 4; p++)
        CHECK(memcmp(check + p * PAGE, b + p * PAGE, PAGE) == 0 && page_ok(b, p, 4));

    /* read(2) into pages 10.. (swapped out), across page boundaries. */
    static unsigned char src[3 * PAGE];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (unsigned char)(i * 7 + 3);
    CHECK_EQ(pwrite(fd, src, sizeof(src), 0), (ssize_t)sizeof(src));
    CHECK_EQ(pread(fd, b + 10 * PAGE + 100, sizeof(src), 0), (ssize_t)sizeof(src));
    CHECK(memcmp(b + 10 * PAGE + 100, src, sizeof(src)) == 0);
    for (size_t i = 0; i < 100; i++)
        CHECK_EQ(b[10 * PAGE + i], ((unsigned char *)&(uint64_t){pattern(10, 4, i / 8)})[i % 8]);

    /* read(2) into a clean (write-protected) page: a write-protect fault from the kernel. */
    CHECK(page_ok(b, 20, 4)); /* swapped in read-only */
    struct uz_region_stat s0 = stat_of(r);
    CHECK_EQ(pread(fd, b + 20 * PAGE, 64, 0), 64);
    CHECK(memcmp(b + 20 * PAGE, src, 64) == 0);
    CHECK_EQ(stat_of(r).wp_faults - s0.wp_faults, 1);
    close(fd);
    settle_and_check(r);
    uz_region_destroy(r);
}

/* The unprivileged mode: syscalls on non-resident pages fail; pinned pages work. */
static void user_only_body(struct uz_region *r)
{
    const size_t n = 64;
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.mode, UZ_REGION_MODE_USER_ONLY);
    unsigned char *b = uz_region_base(r);
    for (size_t p = 0; p < n; p++)
        fill_page(b, p, 5);
    CHECK_EQ(uz_region_swapout(r, b, n * PAGE), (long)n);
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    /* write(2) from a swapped-out page: the kernel may not wait for us here. */
    errno = 0;
    CHECK_EQ(write(fds[1], b + 3 * PAGE, 16), -1);
    CHECK_EQ(errno, EFAULT);
    CHECK_EQ(uz_region_pin(r, b + 3 * PAGE, 16), 0);
    CHECK_EQ(stat_of(r).pinned_pages, 1);
    CHECK_EQ(write(fds[1], b + 3 * PAGE, 16), 16);
    unsigned char got[16];
    CHECK_EQ(read(fds[0], got, 16), 16);
    CHECK(memcmp(got, b + 3 * PAGE, 16) == 0);
    /* read(2) into a pinned range spanning two swapped-out pages. */
    CHECK_EQ(write(fds[1], "0123456789abcdef", 16), 16);
    CHECK_EQ(uz_region_pin(r, b + 9 * PAGE - 8, 16), 0);
    CHECK_EQ(read(fds[0], b + 9 * PAGE - 8, 16), 16);
    CHECK(memcmp(b + 9 * PAGE - 8, "0123456789abcdef", 16) == 0);
    /* Pinned pages stay resident through a swap-out. */
    CHECK_EQ(uz_region_swapout(r, b, n * PAGE), 0);
    CHECK_EQ(stat_of(r).pinned_pages, 3);
    settle_and_check(r);
    CHECK_EQ(uz_region_unpin(r, b + 9 * PAGE - 8, 16), 0);
    CHECK_EQ(uz_region_unpin(r, b + 3 * PAGE, 16), 0);
    CHECK_EQ(uz_region_unpin(r, b + 3 * PAGE, 16), -EINVAL); /* not pinned any more */
    CHECK_EQ(uz_region_pin(r, b - 1, 2), -EINVAL);
    CHECK_EQ(stat_of(r).pinned_pages, 0);
    CHECK_EQ(uz_region_swapout(r, b, n * PAGE), 3);
    for (size_t p = 0; p < n; p++)
        if (p != 8 && p != 9)
            CHECK(page_ok(b, p, 5));
    close(fds[0]);
    close(fds[1]);
    settle_and_check(r);
}

static void t_user_only(void)
{
    uz_region_force_user_mode = true;
    struct uz_region *r = make(64, 0);
    uz_region_force_user_mode = false;
    user_only_body(r);
    uz_region_destroy(r);

    /* Pinning more than half the resident limit is refused. */
    r = make(256, 32);
    unsigned char *b = uz_region_base(r);
    CHECK_EQ(uz_region_pin(r, b, 17 * PAGE), -ENOMEM);
    CHECK_EQ(uz_region_pin(r, b, 16 * PAGE), 0);
    for (size_t p = 16; p < 256; p++)
        fill_page(b, p, 6);
    for (size_t p = 16; p < 256; p++)
        CHECK(page_ok(b, p, 6));
    CHECK_EQ(uz_region_unpin(r, b, 16 * PAGE), 0);
    uz_region_destroy(r);
}

/* As a real unprivileged user (root drops to nobody in a child): the region falls back to
 * user-only mode by itself, unless the machine lets everyone serve kernel faults. */
static void t_unprivileged(void)
{
    if (geteuid() != 0)
        return; /* then the other tests already ran unprivileged */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (!pid) {
        alarm(60);
        if (setgid(65534) || setuid(65534))
            _exit(UZT_SKIP);
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); /* /proc/self/pagemap for uz_region_check() */
        FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
        int open_to_all = 0;
        if (f) {
            if (fscanf(f, "%d", &open_to_all) != 1)
                open_to_all = 0;
            fclose(f);
        }
        struct uz_region *r = make(64, 0);
        if (open_to_all || !access("/dev/userfaultfd", R_OK | W_OK)) {
            CHECK_EQ(stat_of(r).mode, UZ_REGION_MODE_FULL);
        } else {
            user_only_body(r);
        }
        uz_region_destroy(r);
        _exit(0);
    }
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == UZT_SKIP);
}

/* userfaultfd refused (as a seccomp policy would): a clear error at once, never a hang. */
static void t_unavailable(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (!pid) {
        alarm(20);
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, USERFAULTFD_IOC_NEW, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = UZ_ARRAY_SIZE(f), .filter = f};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
            _exit(UZT_SKIP);
        struct uz_region_config cfg = {.size = 64 * PAGE};
        struct uz_region *r = (struct uz_region *)1;
        int rc = uz_region_create(&cfg, &r);
        _exit(rc == -ENOSYS && r == (struct uz_region *)1 ? 0 : 1);
    }
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == UZT_SKIP);
}

/* The application drops resident region pages itself: they read as zeros afterwards, as
 * anonymous memory does. (Swapped-out pages cannot be dropped that way: region.h says so.) */
static void t_app_madvise(void)
{
    const size_t n = 32;
    struct uz_region *r = make(n, 0);
    unsigned char *b = uz_region_base(r);
    for (size_t p = 0; p < n; p++)
        fill_page(b, p, 7);
    CHECK_EQ(uz_region_swapout(r, b + 8 * PAGE, 8 * PAGE), 8);
    CHECK(page_ok(b, 9, 7)); /* now clean */
    CHECK_EQ(stat_of(r).clean_pages, 1);
    CHECK_EQ(madvise(b, 8 * PAGE, MADV_DONTNEED), 0);
    CHECK_EQ(madvise(b + 9 * PAGE, PAGE, MADV_DONTNEED), 0);
    for (size_t p = 0; p < n; p++) {
        if (p < 8 || p == 9) {
            for (size_t j = 0; j < PAGE; j += 64)
                CHECK_EQ(b[p * PAGE + j], 0);
        } else {
            CHECK(page_ok(b, p, 7));
        }
    }
    settle_and_check(r);
    uz_region_destroy(r);
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    CHECK(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Destroy right after a burst of writes, writebacks still in flight, and many cycles. */
static void t_destroy_inflight_and_cycles(void)
{
    int fds = count_dir("/proc/self/fd"), tasks = count_dir("/proc/self/task");
    uint64_t inflight_seen = 0;
    for (int i = 0; i < 40; i++) {
        struct uz_region *r = make(1024, 64);
        unsigned char *b = uz_region_base(r);
        for (size_t p = 0; p < 1024; p++)
            fill_page(b, p, (uint64_t)i);
        if (i % 2)
            uz_region_swapout(r, b + 64 * PAGE, 64 * PAGE);
        inflight_seen += stat_of(r).writeback_pages;
        uz_region_destroy(r);
    }
    for (int i = 0; i < 200; i++) {
        struct uz_region *r = make(16 + (size_t)i % 7, i % 3 ? 0 : 16);
        unsigned char *b = uz_region_base(r);
        b[(size_t)i % 16 * PAGE] = (unsigned char)i;
        uz_region_destroy(r);
    }
    fprintf(stderr, "destroy: %llu pages under writeback seen at destroy time\n",
            (unsigned long long)inflight_seen);
    CHECK_EQ(count_dir("/proc/self/fd"), fds);
    CHECK_EQ(count_dir("/proc/self/task"), tasks);
}

/* Several regions at once, each with its own threads and device. */
static void t_many_regions(void)
{
    struct uz_region *rs[8];
    for (int i = 0; i < 8; i++)
        rs[i] = make(256, 32);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 8; i++) {
            unsigned char *b = uz_region_base(rs[i]);
            for (size_t p = 0; p < 256; p++) {
                if (round)
                    CHECK(page_ok(b, p, (uint64_t)i));
                else
                    fill_page(b, p, (uint64_t)i);
            }
        }
    for (int i = 0; i < 8; i++) {
        settle_and_check(rs[i]);
        uz_region_destroy(rs[i]);
    }
}

/* ---- failures of the system calls (injected) ---- */

struct toucher {
    unsigned char *p;
    bool write;
    unsigned char value;
    bool sigbus_ok; /* a SIGBUS is an answer too (the failed state poisons) */
    bool sigbus;
};

static __thread sigjmp_buf *bus_jmp;

static void on_sigbus(int sig)
{
    (void)sig;
    if (bus_jmp)
        siglongjmp(*bus_jmp, 1);
    _exit(3);
}

static void *touch_main(void *arg)
{
    struct toucher *t = arg;
    sigjmp_buf jb;
    if (t->sigbus_ok) {
        if (sigsetjmp(jb, 1)) {
            bus_jmp = NULL;
            t->sigbus = true;
            return NULL;
        }
        bus_jmp = &jb;
    }
    if (t->write)
        *(volatile unsigned char *)t->p = t->value;
    else
        t->value = *(volatile unsigned char *)t->p;
    bus_jmp = NULL;
    return NULL;
}

/* Touches *p from a new thread, which must come back within 10 s: a fault the region failed to
 * resolve must never leave its thread asleep. */
static void touch(struct toucher *t)
{
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, touch_main, t), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int rc = pthread_timedjoin_np(th, NULL, &ts);
    if (rc) {
        fprintf(stderr, "a thread faulting on %p is still asleep after 10 s\n", (void *)t->p);
        exit(1);
    }
}

/* Page 3 of a fresh region made CLEAN: written, swapped out, read back (mapped read-only). */
static struct uz_region *region_with_clean_page(unsigned char **b)
{
    struct uz_region *r = make(64, 0);
    *b = uz_region_base(r);
    fill_page(*b, 3, 1);
    CHECK_EQ(uz_region_swapout(r, *b + 3 * PAGE, PAGE), 1);
    CHECK(page_ok(*b, 3, 1));
    CHECK_EQ(stat_of(r).clean_pages, 1);
    return r;
}

/* The first write into fresh memory zero-fills the rest of its 64 KiB block in the same fault
 * (one round trip where there were up to 16), stopping at a page that is not fresh, and only as
 * far as there is room under the resident limit. */
static void t_fresh_around(void)
{
    struct uz_region *r = make(64, 0);
    unsigned char *b = uz_region_base(r);
    b[20 * PAGE + 1] = 1; /* block 16..31: pages 20..31 */
    struct uz_region_stat s0 = stat_of(r);
    CHECK_EQ(s0.minor_faults, 1);
    CHECK_EQ(s0.resident_pages, 12);
    for (unsigned p = 21; p < 32; p++) /* no fault for these */
        b[p * PAGE] = (unsigned char)p;
    CHECK_EQ(stat_of(r).minor_faults, 1);
    CHECK_EQ(uz_region_swapout(r, b + 24 * PAGE, PAGE), 1);
    b[16 * PAGE] = 16; /* 16..19: page 20 is not fresh */
    struct uz_region_stat s1 = stat_of(r);
    CHECK_EQ(s1.minor_faults, 2);
    CHECK_EQ(s1.resident_pages, 12 - 1 + 4);
    CHECK_EQ(b[24 * PAGE], 24); /* the swapped-out page is its own, not a zero fill */
    CHECK_EQ(b[20 * PAGE + 1], 1);
    CHECK_EQ(b[17 * PAGE], 0);
    CHECK_EQ(stat_of(r).resident_pages, 16); /* page 24 swapped in */
    /* A read of fresh memory maps the zero page, that page alone. */
    CHECK_EQ(b[40 * PAGE], 0);
    CHECK_EQ(stat_of(r).resident_pages, 17);
    settle_and_check(r);
    uz_region_destroy(r);

    /* Under the smallest resident limit: never more than the room there is. */
    const unsigned lim = UZ_REGION_MIN_LIMIT, np = 8 * UZ_REGION_MIN_LIMIT;
    r = make(np, lim);
    b = uz_region_base(r);
    for (unsigned p = 0; p < np; p++) {
        b[p * PAGE + 5] = (unsigned char)(p + 1);
        CHECK(stat_of(r).resident_pages <= lim);
    }
    for (unsigned p = 0; p < np; p++)
        CHECK_EQ(b[p * PAGE + 5], (unsigned char)(p + 1));
    CHECK(stat_of(r).resident_pages <= lim);
    settle_and_check(r);
    uz_region_destroy(r);
}

/* The unprotect of a write-protect fault fails: the writer is woken, faults again, and gets in. */
static void t_fail_unprotect(void)
{
    unsigned char *b;
    struct uz_region *r = region_with_clean_page(&b);
    unsigned char orig = b[3 * PAGE + 8];
    /* (The first write zero-filled page 3's fresh neighbours too: they are dirty already.) */
    uint64_t dirty0 = stat_of(r).dirty_pages;
    /* EAGAIN and EINTR are retried inside the call. */
    uz_region_sys_inject(r, UZ_SYS_UNPROTECT, 0, 3, EAGAIN);
    struct toucher t = {.p = b + 3 * PAGE + 8, .write = true, .value = 0x5a};
    touch(&t);
    CHECK_EQ(stat_of(r).sys_errors, 0);
    CHECK_EQ(stat_of(r).dirty_pages, dirty0 + 1);
    /* ENOMEM is transient: counted, the writer faults again. */
    CHECK_EQ(uz_region_swapout(r, b + 3 * PAGE, PAGE), 1);
    CHECK_EQ(b[3 * PAGE + 8], 0x5a);
    CHECK_EQ(stat_of(r).clean_pages, 1);
    uz_region_sys_inject(r, UZ_SYS_UNPROTECT, 0, 2, ENOMEM);
    t.value = 0xa5;
    touch(&t);
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.sys_errors, 2);
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(b[3 * PAGE + 8], 0xa5);
    b[3 * PAGE + 8] = orig;
    CHECK(page_ok(b, 3, 1));
    settle_and_check(r);
    uz_region_destroy(r);
}

/* A wake that fails (the copy of a missing fault failed first): retried, and when it fails for
 * good the region fails, which wakes everyone; from then on missing faults get SIGBUS. */
static void t_fail_wake(void)
{
    struct sigaction sa = {.sa_handler = on_sigbus}, old;
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGBUS, &sa, &old), 0);
    struct uz_region *r = make(64, 0);
    unsigned char *b = uz_region_base(r);
    fill_page(b, 5, 2);
    fill_page(b, 9, 2);
    CHECK_EQ(uz_region_swapout(r, b + 5 * PAGE, PAGE), 1); /* (their neighbours stay mapped) */
    CHECK_EQ(uz_region_swapout(r, b + 9 * PAGE, PAGE), 1);
    uz_region_sys_inject(r, UZ_SYS_COPY, 0, 1, ENOMEM);
    uz_region_sys_inject(r, UZ_SYS_WAKE, 0, 2, EAGAIN);
    struct toucher t = {.p = b + 5 * PAGE};
    touch(&t);
    CHECK(page_ok(b, 5, 2));
    CHECK_EQ(stat_of(r).sys_errors, 1);
    CHECK_EQ(stat_of(r).failed, 0);

    uz_region_sys_inject(r, UZ_SYS_COPY, 0, 1, ENOMEM);
    uz_region_sys_inject(r, UZ_SYS_WAKE, 0, 1, EINVAL);
    struct toucher t2 = {.p = b + 9 * PAGE, .sigbus_ok = true};
    touch(&t2);
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.failed, -EINVAL);
    CHECK_EQ(uz_region_pin(r, b, PAGE), -EIO);
    CHECK_EQ(uz_region_swapout(r, b, PAGE), -EIO);
    if (r->can_poison) {
        CHECK(t2.sigbus); /* the failed state answers missing faults with poison */
        struct toucher t3 = {.p = b + 20 * PAGE, .sigbus_ok = true};
        touch(&t3);
        CHECK(t3.sigbus);
    }
    /* Resident pages still work, writes to protected ones included. */
    CHECK(page_ok(b, 5, 2));
    fill_page(b, 5, 3);
    CHECK(page_ok(b, 5, 3));
    uz_region_destroy(r);
    sigaction(SIGBUS, &old, NULL);
}

/* The eviction (UFFDIO_MOVE, or MADV_DONTNEED) fails in a swap-out: the page stays CLEAN and mapped
 * (not SWAPPED while still mapped, where a write to it would fault for ever). */
static void t_fail_madvise(void)
{
    unsigned char *b;
    struct uz_region *r = region_with_clean_page(&b);
    /* The eviction's call: UFFDIO_MOVE where the kernel has it, else MADV_DONTNEED. */
    enum uz_region_sys_op evict = stat_of(r).move_eviction ? UZ_SYS_MOVE : UZ_SYS_MADVISE;
    uz_region_sys_inject(r, evict, 0, 2, ENOMEM); /* both passes */
    CHECK_EQ(uz_region_swapout(r, b + 3 * PAGE, PAGE), 0);
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.clean_pages, 1);
    CHECK_EQ(st.sys_errors, 2);
    CHECK_EQ(st.failed, 0);
    settle_and_check(r);
    struct toucher t = {.p = b + 3 * PAGE + 8, .write = true, .value = 0x77};
    touch(&t);
    CHECK_EQ(b[3 * PAGE + 8], 0x77);
    /* A hard error fails the region; the data stays readable. */
    CHECK_EQ(uz_region_swapout(r, b + 3 * PAGE, PAGE), 1);
    CHECK_EQ(b[3 * PAGE + 8], 0x77);
    /* (EINVAL is not one: it says the page is mlock'ed, and the page is kept.) */
    uz_region_sys_inject(r, evict, 0, 2, EFAULT);
    CHECK_EQ(uz_region_swapout(r, b + 3 * PAGE, PAGE), 0);
    CHECK_EQ(stat_of(r).failed, -EFAULT);
    CHECK_EQ(b[3 * PAGE + 8], 0x77);
    settle_and_check(r);
    uz_region_destroy(r);
}

/* uz_region_pin() on a CLEAN page whose unprotect fails: -EIO, and the page must not stay CLEAN
 * with its stored copy discarded (a swap-out would then lose it). */
static void t_fail_pin_unprotect(void)
{
    unsigned char *b;
    struct uz_region *r = region_with_clean_page(&b);
    uz_region_sys_inject(r, UZ_SYS_UNPROTECT, 0, 1, ENOMEM);
    CHECK_EQ(uz_region_pin(r, b + 3 * PAGE, PAGE), -EIO);
    CHECK_EQ(stat_of(r).pinned_pages, 0);
    CHECK_EQ(uz_region_swapout(r, b + 3 * PAGE, PAGE), 1);
    CHECK(page_ok(b, 3, 1));
    settle_and_check(r);
    uz_region_destroy(r);
}

/* ---- the page lock sleeps ---- */

struct locker {
    struct uz_region *r;
    double cpu_ms, wall_ms;
};

static double ms_of(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *lock_main(void *arg)
{
    struct locker *l = arg;
    double c0 = ms_of(CLOCK_THREAD_CPUTIME_ID), w0 = ms_of(CLOCK_MONOTONIC);
    uint64_t w = uz_region_pg_lock(l->r, 7);
    l->cpu_ms = ms_of(CLOCK_THREAD_CPUTIME_ID) - c0;
    l->wall_ms = ms_of(CLOCK_MONOTONIC) - w0;
    uz_region_pg_unlock(l->r, 7, w);
    return NULL;
}

/* A holder of a page lock may block (device calls, ioctls): a waiter must sleep, not spin. */
static void t_page_lock_sleeps(void)
{
    struct uz_region *r = make(16, 0);
    uint64_t w = uz_region_pg_lock(r, 7);
    struct locker l = {.r = r};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, lock_main, &l), 0);
    usleep(300 * 1000);
    uz_region_pg_unlock(r, 7, w);
    CHECK_EQ(pthread_join(th, NULL), 0);
    fprintf(stderr, "page lock: waited %.0f ms, %.1f ms of it on the CPU\n", l.wall_ms, l.cpu_ms);
    CHECK(l.wall_ms >= 250);
    CHECK(l.cpu_ms < 30);
    check_region(r);
    uz_region_destroy(r);
}

int main(void)
{
    alarm(300);
    t_invalid();
    t_zero_and_roundtrip();
    t_swap_cache_and_readahead();
    t_readahead_streams();
    t_readahead_sparse();
    t_swap_cache_bound();
    t_libc_io();
    t_user_only();
    t_unprivileged();
    t_unavailable();
    t_app_madvise();
    t_destroy_inflight_and_cycles();
    t_many_regions();
    t_fresh_around();
    t_fail_unprotect();
    t_fail_wake();
    t_fail_madvise();
    t_fail_pin_unprotect();
    t_page_lock_sleeps();
    printf("test_region: ok\n");
    return 0;
}
