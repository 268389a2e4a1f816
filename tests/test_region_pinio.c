// SPDX-License-Identifier: MIT
/*
 * test_region_pinio.c - writes the kernel makes into region memory through page pins, which
 * write-protection never sees: O_DIRECT reads, Linux AIO reads and process_vm_writev from
 * another process, into a region under heavy reclaim (a resident limit of 64 pages for 2048),
 * and mlock / mlockall of region memory.
 *
 * Issue 8's first item: reclaim snapshotted a page the kernel had pinned for a read, then
 * dropped it; the read landed in the dropped page and the region later faulted back the old
 * contents (thousands of pages lost per run). Every write here is checked against a shadow
 * copy of the whole region: 0 lost pages. mlock: the locked pages stay resident (mincore), the
 * region never fails and nothing livelocks (alarm()). mlockall(MCL_FUTURE) before create, or
 * while a region exists: the region is neither populated nor locked, its limit holds, destroy
 * returns (in a child process). The file for direct I/O is made in the current directory (the
 * build directory): a filesystem with O_DIRECT (tmpfs has none), else those parts are skipped.
 * Runs in the normal, ASan and TSan builds, fewer rounds under the sanitizers.
 */
#include "harness.h"

#include <fcntl.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "region_harness.h"

#define PAGE     UZ_PAGE_SIZE
#define NPAGES   2048u /* 8 MiB of region */
#define LIMIT    64u   /* 256 KiB resident */
#define IOPAGES  256u  /* one read: 1 MiB */
#define NCHUNK   20u   /* reads per round, the file's 1 MiB chunks */
#define AIOPAGES 64u   /* one AIO read: 256 KiB */

static struct uz_region *r;
static unsigned char *base, *shadow;
static uint64_t seed = 0x5eed8u;
static int helper_cmd = -1, helper_res = -1; /* pipes to the process_vm_writev helper */

/* Page p of chunk c (or, for c >= NCHUNK, a version written by the application). */
static void fill(unsigned char *dst, uint64_t c, uint64_t p)
{
    uint64_t *w = (uint64_t *)dst;
    for (unsigned j = 0; j < PAGE / 8; j++)
        w[j] = mix(c << 40 | p << 20 | j) ^ c;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void make_region(unsigned npages, unsigned limit)
{
    struct uz_region_config cfg = {.size = (size_t)npages * PAGE,
                                   .resident_limit = (size_t)limit * PAGE};
    int rc = uz_region_create(&cfg, &r);
    if (rc == -ENOSYS || rc == -EPERM || rc == -EOPNOTSUPP) {
        printf("test_region_pinio: no userfaultfd write-protect (%d): skipped\n", rc);
        exit(UZT_SKIP);
    }
    CHECK_EQ(rc, 0);
    base = uz_region_base(r);
    shadow = calloc(npages, PAGE);
    CHECK(shadow);
}

static struct uz_region_stat stat_now(void)
{
    struct uz_region_stat st;
    CHECK_EQ(uz_region_stat(r, &st), 0);
    return st;
}

/* Kernel-originated faults are only served in FULL mode: the I/O parts need it. */
static bool full_mode(void)
{
    return stat_now().mode == UZ_REGION_MODE_FULL;
}

/* The application writes `n` random pages (keeps reclaim busy, leaves pages dirty). */
static void scramble(unsigned npages, unsigned n, uint64_t version)
{
    for (unsigned k = 0; k < n; k++) {
        uint64_t p = uzt_rand(&seed) % npages;
        fill(shadow + p * PAGE, NCHUNK + version, p);
        memcpy(base + p * PAGE, shadow + p * PAGE, PAGE);
    }
}

/* Pages whose contents are not the shadow's. */
static unsigned lost_pages(unsigned npages)
{
    unsigned lost = 0;
    for (uint64_t p = 0; p < npages; p++)
        lost += memcmp(base + p * PAGE, shadow + p * PAGE, PAGE) != 0;
    return lost;
}

static void finish(const char *what, unsigned rounds, unsigned lost, double t0)
{
    struct uz_region_stat st = stat_now();
    printf("%s: rounds=%u lost_pages=%u s=%.1f swapouts=%llu refused=%llu restored=%llu "
           "kept=%llu move=%d failed=%d\n",
           what, rounds, lost, now_s() - t0, (unsigned long long)st.swapouts,
           (unsigned long long)st.evict_refused, (unsigned long long)st.evict_restored,
           (unsigned long long)st.kept_pages, st.move_eviction, st.failed);
    CHECK_EQ(lost, 0);
    CHECK_EQ(st.failed, 0);
    CHECK(st.swapouts > 0); /* the reclaim did run */
}

static void destroy_region(void)
{
    uz_region_destroy(r);
    r = NULL;
    free(shadow);
}

/* ---- the file: NCHUNK chunks of IOPAGES pages, with O_DIRECT ---- */

static int open_direct(void)
{
    char path[] = "uzram-pinio-XXXXXX";
    int tfd = mkstemp(path);
    if (tfd < 0)
        return -1;
    int fd = open(path, O_RDWR | O_DIRECT);
    unlink(path);
    close(tfd);
    if (fd < 0) {
        printf("test_region_pinio: O_DIRECT not supported here (%s): direct I/O skipped\n",
               strerror(errno));
        return -1;
    }
    unsigned char *buf = aligned_alloc(PAGE, (size_t)IOPAGES * PAGE);
    CHECK(buf);
    for (uint64_t c = 0; c < NCHUNK; c++) {
        for (uint64_t p = 0; p < IOPAGES; p++)
            fill(buf + p * PAGE, c, p);
        CHECK_EQ(pwrite(fd, buf, (size_t)IOPAGES * PAGE, (off_t)(c * IOPAGES * PAGE)),
                 (long)IOPAGES * PAGE);
    }
    free(buf);
    CHECK_EQ(fsync(fd), 0);
    return fd;
}

/* Page p of the file (chunk p / IOPAGES) into the shadow at page `to`. */
static void shadow_file(uint64_t to, uint64_t p, unsigned n)
{
    for (unsigned k = 0; k < n; k++)
        fill(shadow + (to + k) * PAGE, (p + k) / IOPAGES, (p + k) % IOPAGES);
}

/* Rounds of a case: 100 (10 under the sanitizers), bounded in time for make check; with
 * UZT_ROUNDS=N exactly N, however long they take (the "100 runs of 20 reads":
 * UZT_ROUNDS=100 UZT_CASE=odirect). */
static unsigned max_rounds(void)
{
    const char *e = getenv("UZT_ROUNDS");
    return e ? (unsigned)atoi(e) : UZT_SANITIZED ? 10 : 100;
}

static bool more_rounds(unsigned rounds, double t0, double secs)
{
    if (getenv("UZT_ROUNDS"))
        return rounds < max_rounds();
    return rounds < max_rounds() && (rounds < 3 || now_s() - t0 < secs);
}

/* ---- O_DIRECT ---- */

static void t_odirect(int fd)
{
    make_region(NPAGES, LIMIT);
    if (!full_mode()) {
        printf("odirect: user-only mode (kernel faults not served): skipped\n");
        destroy_region();
        return;
    }
    scramble(NPAGES, NPAGES, 0);
    double t0 = now_s();
    unsigned lost = 0, rounds = 0;
    while (more_rounds(rounds, t0, 14)) {
        for (unsigned k = 0; k < NCHUNK; k++) {
            uint64_t c = uzt_rand(&seed) % NCHUNK;
            uint64_t to = uzt_rand(&seed) % (NPAGES - IOPAGES + 1);
            scramble(NPAGES, 16, rounds * NCHUNK + k + 1);
            ssize_t got =
                pread(fd, base + to * PAGE, (size_t)IOPAGES * PAGE, (off_t)(c * IOPAGES * PAGE));
            CHECK_EQ(got, (long)IOPAGES * PAGE);
            shadow_file(to, c * IOPAGES, IOPAGES);
        }
        lost += lost_pages(NPAGES);
        rounds++;
        /* A lost page is counted once: make the region agree with the shadow again. */
        memcpy(base, shadow, (size_t)NPAGES * PAGE);
    }
    finish("odirect", rounds, lost, t0);
    destroy_region();
}

/* ---- Linux AIO (io_submit, no libaio) ---- */

static void t_aio(int fd)
{
    make_region(NPAGES, LIMIT);
    if (!full_mode()) {
        destroy_region();
        return;
    }
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, NCHUNK, &ctx)) {
        printf("aio: io_setup: %s: skipped\n", strerror(errno));
        destroy_region();
        return;
    }
    scramble(NPAGES, NPAGES, 0);
    double t0 = now_s();
    unsigned lost = 0, rounds = 0;
    const unsigned slots = NPAGES / AIOPAGES;
    while (more_rounds(rounds, t0, 14)) {
        struct iocb cb[NCHUNK], *cbp[NCHUNK];
        bool taken[NPAGES / AIOPAGES] = {false};
        scramble(NPAGES, 64, rounds + 1);
        for (unsigned k = 0; k < NCHUNK; k++) {
            unsigned s;
            do
                s = (unsigned)(uzt_rand(&seed) % slots);
            while (taken[s]);
            taken[s] = true;
            uint64_t from = uzt_rand(&seed) % (NCHUNK * IOPAGES / AIOPAGES) * AIOPAGES;
            memset(&cb[k], 0, sizeof(cb[k]));
            cb[k].aio_fildes = (uint32_t)fd;
            cb[k].aio_lio_opcode = IOCB_CMD_PREAD;
            cb[k].aio_buf = (uintptr_t)(base + (uint64_t)s * AIOPAGES * PAGE);
            cb[k].aio_nbytes = (uint64_t)AIOPAGES * PAGE;
            cb[k].aio_offset = (int64_t)(from * PAGE);
            cb[k].aio_data = k;
            cbp[k] = &cb[k];
            shadow_file((uint64_t)s * AIOPAGES, from, AIOPAGES);
        }
        CHECK_EQ(syscall(SYS_io_submit, ctx, (long)NCHUNK, cbp), NCHUNK);
        struct io_event ev[NCHUNK];
        long done = 0;
        while (done < NCHUNK) {
            long n = syscall(SYS_io_getevents, ctx, 1L, (long)(NCHUNK - done), ev, NULL);
            if (n < 0 && errno == EINTR)
                continue;
            CHECK(n > 0);
            for (long k = 0; k < n; k++)
                CHECK_EQ(ev[k].res, (long)AIOPAGES * PAGE);
            done += n;
        }
        lost += lost_pages(NPAGES);
        rounds++;
        memcpy(base, shadow, (size_t)NPAGES * PAGE);
    }
    syscall(SYS_io_destroy, ctx);
    finish("aio", rounds, lost, t0);
    destroy_region();
}

/* ---- process_vm_writev from another process ---- */

struct helper_req {
    uint64_t addr;  /* in this process */
    uint64_t chunk; /* contents: chunk `chunk`, pages from 0 */
    uint32_t pages;
};

/* The helper, forked before any region exists (a region is not inherited): writes what it is
 * asked into its parent, answers the result. */
static void helper_main(int cmd, int res, pid_t parent)
{
    unsigned char *buf = malloc((size_t)IOPAGES * PAGE);
    struct helper_req q;
    while (read(cmd, &q, sizeof(q)) == (ssize_t)sizeof(q)) {
        for (uint32_t p = 0; p < q.pages; p++)
            fill(buf + (size_t)p * PAGE, q.chunk, p);
        struct iovec l = {buf, (size_t)q.pages * PAGE}, rv = {(void *)q.addr, l.iov_len};
        long n = (long)process_vm_writev(parent, &l, 1, &rv, 1, 0);
        long out = n < 0 ? -errno : n;
        if (write(res, &out, sizeof(out)) != (ssize_t)sizeof(out))
            break;
    }
    _exit(0);
}

static pid_t start_helper(void)
{
    int c[2], s[2];
    CHECK_EQ(pipe(c), 0);
    CHECK_EQ(pipe(s), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (!pid) {
        close(c[1]);
        close(s[0]);
        helper_main(c[0], s[1], parent);
    }
    close(c[0]);
    close(s[1]);
    helper_cmd = c[1];
    helper_res = s[0];
    prctl(PR_SET_PTRACER, pid, 0, 0, 0); /* Yama: let the child write into us */
    return pid;
}

/* putback_fails: every page found changed after its move cannot be put back (injected):
 * its contents are stored instead (the path a page unmapped mid-eviction takes), still 0
 * lost (a moved page used to be dropped with the scratch then). */
static void t_vm_writev(bool putback_fails)
{
    make_region(NPAGES, LIMIT);
    if (!full_mode()) {
        destroy_region();
        return;
    }
    if (putback_fails)
        uz_region_sys_inject(r, UZ_SYS_PUTBACK, 0, 1u << 30, EINVAL);
    scramble(NPAGES, NPAGES, 0);
    double t0 = now_s();
    unsigned lost = 0, rounds = 0;
    while (more_rounds(rounds, t0, 10)) {
        for (unsigned k = 0; k < NCHUNK; k++) {
            uint64_t c = uzt_rand(&seed) % NCHUNK;
            uint64_t to = uzt_rand(&seed) % (NPAGES - IOPAGES + 1);
            scramble(NPAGES, 16, rounds * NCHUNK + k + 1);
            struct helper_req q = {(uintptr_t)(base + to * PAGE), c, IOPAGES};
            CHECK_EQ(write(helper_cmd, &q, sizeof(q)), (long)sizeof(q));
            long n;
            CHECK_EQ(read(helper_res, &n, sizeof(n)), (long)sizeof(n));
            if (n == -EPERM) {
                printf("vm_writev: process_vm_writev refused (EPERM): skipped\n");
                destroy_region();
                return;
            }
            CHECK_EQ(n, (long)IOPAGES * PAGE);
            for (unsigned p = 0; p < IOPAGES; p++)
                fill(shadow + (to + p) * PAGE, c, p);
        }
        lost += lost_pages(NPAGES);
        rounds++;
        memcpy(base, shadow, (size_t)NPAGES * PAGE);
    }
    struct uz_region_stat st = stat_now();
    if (putback_fails) {
        CHECK_EQ(st.evict_restored, 0);
        CHECK(st.evict_saved > 0); /* the path was taken */
        CHECK_EQ(st.failed, 0);
        printf("vm_writev_putback: saved=%llu\n", (unsigned long long)st.evict_saved);
    }
    finish(putback_fails ? "vm_writev_putback" : "vm_writev", rounds, lost, t0);
    destroy_region();
}

/* ---- mlock ---- */

static unsigned resident_in(unsigned char *a, unsigned n)
{
    unsigned char vec[NPAGES];
    CHECK_EQ(mincore(a, (size_t)n * PAGE, vec), 0);
    unsigned k = 0;
    for (unsigned p = 0; p < n; p++)
        k += vec[p] & 1;
    return k;
}

/* The sanitizers' mlock() interceptors do nothing: the system call itself. */
static int sys_mlock(void *a, size_t len)
{
    return (int)syscall(SYS_mlock, a, len);
}

/* mlock of 256 pages (four times the limit) of a region under reclaim: they stay resident, the
 * rest keeps being swapped, nothing livelocks or fails. */
static void t_mlock(void)
{
    make_region(NPAGES, LIMIT);
    scramble(NPAGES, NPAGES, 0);
    const unsigned first = 512, n = 4 * LIMIT;
    double t0 = now_s();
    if (sys_mlock(base + (size_t)first * PAGE, (size_t)n * PAGE)) {
        fprintf(stderr, "mlock: %s\n", strerror(errno));
        CHECK(0);
    }
    for (unsigned k = 0; k < 200; k++) {
        scramble(NPAGES, 64, k + 1);
        CHECK_EQ(resident_in(base + (size_t)first * PAGE, n), n);
        if (k % 20 == 0)
            CHECK_EQ(lost_pages(NPAGES), 0);
    }
    struct uz_region_stat st = stat_now();
    CHECK(st.resident_pages >= n);
    CHECK_EQ(st.move_eviction, !uz_region_force_no_move);
    CHECK_EQ(syscall(SYS_munlock, base + (size_t)first * PAGE, (size_t)n * PAGE), 0);
    /* Unlocked, the pages can go again. */
    for (unsigned k = 0; k < 100; k++)
        scramble(NPAGES, 64, 300 + k);
    uz_region_swapout(r, base, (size_t)NPAGES * PAGE);
    CHECK(resident_in(base + (size_t)first * PAGE, n) < n);
    finish("mlock", 300, lost_pages(NPAGES), t0);
    destroy_region();
}

/* mlockall(MCL_CURRENT) with a region under reclaim: it populates the whole region (and the
 * region's scratch), which must stay resident beyond the limit. (Not under the sanitizers:
 * their shadow memory is terabytes of reserved address space.) */
static void t_mlockall(void)
{
    if (UZT_SANITIZED)
        return;
    const unsigned np = 512;
    make_region(np, LIMIT);
    scramble(np, 4 * np, 0);
    double t0 = now_s();
    if (mlockall(MCL_CURRENT)) {
        printf("mlockall: %s: skipped\n", strerror(errno));
        destroy_region();
        return;
    }
    for (unsigned k = 0; k < 100; k++) {
        scramble(np, 16, k + 1);
        CHECK_EQ(resident_in(base, np), np);
    }
    CHECK_EQ(lost_pages(np), 0);
    CHECK_EQ(munlockall(), 0);
    for (unsigned k = 0; k < 100; k++)
        scramble(np, 64, 200 + k);
    uz_region_swapout(r, base, (size_t)np * PAGE);
    CHECK(resident_in(base, np) < np);
    finish("mlockall", 200, lost_pages(np), t0);
    destroy_region();
}

/* ---- mlockall(MCL_FUTURE) and regions created after it ---- */

/* Issue 8: mlockall(MCL_FUTURE) made the kernel populate and lock every mapping of a region made
 * after it (the region itself, its scratch and doorbell), so the limit was ignored, and under
 * the sanitizers destroy hung. Each case runs in a child forked first (this process is never
 * locked), which a watchdog (alarm) and the parent's timeout end if anything hangs.
 * The memory locked is measured as the kernel reports it: VmLck (/proc/self/status) is the
 * size of the locked mappings, resident or not (glibc's 64 MiB malloc arenas of the library's
 * threads count whole), Locked (/proc/self/smaps_rollup) the resident pages of those. Each of
 * the library's threads has a stack of the default size, locked whole by MCL_FUTURE (not
 * ONFAULT): FUT_THREADS of them with two workers (one fault thread, reclaim, two zramd). */
#define FUT_NPAGES  16384u /* 64 MiB of region */
#define FUT_LIMIT   256u   /* 1 MiB resident */
#define FUT_THREADS 4u

/* Page p of version v: a few random words, then a fill that compresses well (the pool stays
 * small: what is locked is the library's, not the swapped data). */
static void fut_fill(unsigned char *dst, uint64_t v, uint64_t p)
{
    uint64_t *w = (uint64_t *)dst;
    for (unsigned j = 0; j < PAGE / 8; j++)
        w[j] = j < 8 ? mix(v << 40 | p << 8 | j) : (v << 32 | p);
}

/* The value of `key:` in /proc/self/<file>, in kB, or -1. */
static long proc_kib(const char *file, const char *key)
{
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    snprintf(line, sizeof(line), "/proc/self/%s", file);
    FILE *f = fopen(line, "r");
    CHECK(f);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* Mappings in [a, a+len) whose VmFlags (/proc/self/smaps) say locked ("lo") or lock on
 * fault ("lf"). */
static unsigned locked_vmas(const unsigned char *a, size_t len)
{
    char line[512];
    unsigned n = 0;
    bool in = false;
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = lo < (uintptr_t)a + len && hi > (uintptr_t)a;
        } else if (in && !strncmp(line, "VmFlags:", 8)) {
            n += strstr(line, " lo") || strstr(line, " lf");
        }
    }
    fclose(f);
    return n;
}

static unsigned fut_resident(const unsigned char *a)
{
    static unsigned char vec[FUT_NPAGES];
    CHECK_EQ(mincore((void *)a, (size_t)FUT_NPAGES * PAGE, vec), 0);
    unsigned k = 0;
    for (unsigned p = 0; p < FUT_NPAGES; p++)
        k += vec[p] & 1;
    return k;
}

/* Fails if more than the library may lock under MCL_FUTURE was locked (kB): its threads'
 * stacks and 16 MiB (its buffers, the device's and pool's first pages). A region populated and
 * locked is 64 MiB more, each pool chunk populated and locked 64 MiB. Not checked under the
 * sanitizers, whose runtimes lock their own memory for each thread (TSan: 64 MiB and more). */
static void fut_check_locked(long kib)
{
    pthread_attr_t at;
    size_t stack = 8u << 20;
    if (!pthread_getattr_default_np(&at)) {
        pthread_attr_getstacksize(&at, &stack);
        pthread_attr_destroy(&at);
    }
    CHECK(UZT_SANITIZED || kib < (long)(FUT_THREADS * stack / 1024) + 16 * 1024);
}

static struct uz_region *fut_create(const char *what)
{
    struct uz_region_config cfg = {.size = (size_t)FUT_NPAGES * PAGE,
                                   .resident_limit = (size_t)FUT_LIMIT * PAGE,
                                   .workers = 2};
    struct uz_region *fr = NULL;
    long lck0 = proc_kib("status", "VmLck"), res0 = proc_kib("smaps_rollup", "Locked");
    double t0 = now_s();
    int rc = uz_region_create(&cfg, &fr);
    if (rc == -ENOSYS || rc == -EPERM || rc == -EOPNOTSUPP)
        _exit(UZT_SKIP);
    CHECK_EQ(rc, 0);
    double dt = now_s() - t0;
    unsigned char *b = uz_region_base(fr);
    unsigned res = fut_resident(b), vmas = locked_vmas(b, (size_t)FUT_NPAGES * PAGE);
    long lck = proc_kib("status", "VmLck"), rlck = proc_kib("smaps_rollup", "Locked");
    printf("%s: create s=%.3f resident_after_create=%u locked_vmas=%u VmLck=+%ld kB "
           "Locked=+%ld kB\n",
           what, dt, res, vmas, lck - lck0, rlck - res0);
    CHECK(res <= 16);  /* not populated */
    CHECK_EQ(vmas, 0); /* nor locked */
    fut_check_locked(lck - lck0);
    fut_check_locked(rlck - res0);
    return fr;
}

/* Every page written with version v, then every page read back; the limit held throughout and
 * the region's memory stays unlocked. */
static void fut_use(struct uz_region *fr, const char *what, uint64_t v)
{
    unsigned char *b = uz_region_base(fr), want[PAGE];
    for (uint64_t p = 0; p < FUT_NPAGES; p++)
        fut_fill(b + p * PAGE, v, p);
    unsigned bad = 0;
    for (uint64_t p = 0; p < FUT_NPAGES; p++) {
        fut_fill(want, v, p);
        bad += memcmp(b + p * PAGE, want, PAGE) != 0;
    }
    struct uz_region_stat st;
    CHECK_EQ(uz_region_stat(fr, &st), 0);
    unsigned res = fut_resident(b);
    printf("%s: bad_pages=%u resident=%llu mincore=%u kept=%llu swapouts=%llu failed=%d "
           "VmLck=%ld kB Locked=%ld kB\n",
           what, bad, (unsigned long long)st.resident_pages, res, (unsigned long long)st.kept_pages,
           (unsigned long long)st.swapouts, st.failed, proc_kib("status", "VmLck"),
           proc_kib("smaps_rollup", "Locked"));
    CHECK_EQ(bad, 0);
    CHECK_EQ(st.failed, 0);
    CHECK(st.swapouts >= FUT_NPAGES - FUT_LIMIT);
    CHECK_EQ(st.kept_pages, 0);
    /* Faults reserve up to a readahead window past the limit before reclaim catches up. */
    CHECK(st.resident_pages <= FUT_LIMIT + UZ_RA_MAX);
    CHECK(res <= FUT_LIMIT + UZ_RA_MAX);
    CHECK_EQ(locked_vmas(b, (size_t)FUT_NPAGES * PAGE), 0);
}

static void fut_destroy(struct uz_region *fr, const char *what)
{
    double t0 = now_s();
    uz_region_destroy(fr);
    printf("%s: destroy s=%.3f\n", what, now_s() - t0);
}

/* The mlockall() flags of a child: no MCL_CURRENT under the sanitizers (it would lock their
 * shadow memory, terabytes of reserved address space), and MCL_FUTURE only with MCL_ONFAULT
 * under TSan, whose runtime maps gigabytes it means to fill lazily: MCL_FUTURE populates them
 * (1 GB locked here with gcc; once, with clang, a child grew to 24 GB and was OOM-killed). */
static int fut_mlockall(int flags)
{
    if (UZT_SANITIZED)
        flags &= ~MCL_CURRENT;
    if (UZT_TSAN)
        flags |= MCL_ONFAULT;
    return (int)syscall(SYS_mlockall, flags);
}

/* mlockall(MCL_CURRENT | MCL_FUTURE [| MCL_ONFAULT]) before create: the region is neither
 * populated nor locked, the limit holds, the resident memory locked stays the library's own,
 * destroy returns. */
static int fut_flags;
static const char *fut_name;

static void fut_before_child(void)
{
    if (fut_mlockall(MCL_CURRENT | fut_flags)) {
        printf("mlockall: %s: skipped\n", strerror(errno));
        _exit(UZT_SKIP);
    }
    long rlck0 = proc_kib("smaps_rollup", "Locked");
    struct uz_region *fr = fut_create(fut_name);
    fut_use(fr, fut_name, 1);
    fut_use(fr, fut_name, 2);
    fut_check_locked(proc_kib("smaps_rollup", "Locked") - rlck0);
    fut_destroy(fr, fut_name);
}

/* MCL_FUTURE set while a region exists changes nothing for it; a region created afterwards is
 * neither populated nor locked either. */
static void fut_after_child(void)
{
    struct uz_region *a = fut_create("mcl_future_after");
    fut_use(a, "mcl_future_after", 1);
    if (fut_mlockall(MCL_FUTURE)) {
        printf("mlockall: %s: skipped\n", strerror(errno));
        _exit(UZT_SKIP);
    }
    long rlck0 = proc_kib("smaps_rollup", "Locked");
    fut_use(a, "mcl_future_after", 2);
    struct uz_region *b = fut_create("mcl_future_after");
    fut_use(b, "mcl_future_after", 3);
    fut_use(a, "mcl_future_after", 4);
    fut_check_locked(proc_kib("smaps_rollup", "Locked") - rlck0);
    fut_destroy(b, "mcl_future_after");
    fut_destroy(a, "mcl_future_after");
}

/* Runs fn in a child (forked before it creates anything) and fails unless it exits 0 within
 * `secs`; exit 77 (skip) is passed on as a skip of that case. */
static void in_child(void (*fn)(void), const char *what, unsigned secs)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (!pid) {
        alarm(secs); /* a hang in the child kills it (SIGALRM) */
        fn();
        exit(0);
    }
    int status = 0;
    double t0 = now_s();
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        CHECK(w >= 0);
        if (w == pid)
            break;
        if (now_s() - t0 > secs + 10) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "%s: the child did not finish in %u s\n", what, secs);
            CHECK(0);
        }
        usleep(10000);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == UZT_SKIP) {
        printf("%s: skipped\n", what);
        return;
    }
    if (WIFSIGNALED(status))
        fprintf(stderr, "%s: the child died of signal %d\n", what, WTERMSIG(status));
    else if (WEXITSTATUS(status))
        fprintf(stderr, "%s: the child exited %d\n", what, WEXITSTATUS(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* UZT_CASE=odirect|aio|vm_writev|vm_writev_putback|mlock|mlockall|mlock_nomove|mcl_future|mcl_future_onfault|
 * mcl_future_after runs that one alone. */
static bool wanted(const char *name)
{
    const char *only = getenv("UZT_CASE");
    return !only || !strcmp(only, name);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(UZT_SANITIZED ? 500 : 240); /* a livelock or deadlock fails, it does not hang */
    pid_t helper = start_helper();    /* before any region (and any thread) */
    int fd = wanted("odirect") || wanted("aio") ? open_direct() : -1;
    if (fd >= 0) {
        if (wanted("odirect"))
            t_odirect(fd);
        if (wanted("aio"))
            t_aio(fd);
        close(fd);
    }
    if (wanted("vm_writev"))
        t_vm_writev(false);
    if (wanted("vm_writev_putback"))
        t_vm_writev(true);
    close(helper_cmd);
    waitpid(helper, NULL, 0);
    if (wanted("mlock"))
        t_mlock();
    if (wanted("mlockall"))
        t_mlockall();
    if (wanted("mcl_future")) {
        fut_flags = MCL_FUTURE;
        fut_name = "mcl_future";
        in_child(fut_before_child, "mcl_future", UZT_SANITIZED ? 300 : 60);
    }
    if (wanted("mcl_future_onfault")) {
        fut_flags = MCL_FUTURE | MCL_ONFAULT;
        fut_name = "mcl_future_onfault";
        in_child(fut_before_child, "mcl_future_onfault", UZT_SANITIZED ? 300 : 60);
    }
    if (wanted("mcl_future_after"))
        in_child(fut_after_child, "mcl_future_after", UZT_SANITIZED ? 300 : 60);
    if (wanted("mlock_nomove")) {
        /* As on a kernel before 6.8: MADV_DONTNEED's EINVAL keeps the locked pages. */
        uz_region_force_no_move = true;
        t_mlock();
        uz_region_force_no_move = false;
    }
    printf("test_region_pinio: ok\n");
    return 0;
}
