// SPDX-License-Identifier: MIT
/*
 * test_dev_wb.c - writeback: the attributes' grammar and errors (a table, as Linux 6.18's),
 * writeback of each type and of index lists in both store layouts with every page read back
 * exact, holes punched on discard and overwrite (st_blocks), writeback_limit exhaustion, a full
 * file system (-ENOSPC, nothing lost), injected read and write errors (-EIO, counted, nothing
 * else lost), corrupt objects met by the two decoding threads, two writebacks at once (one waits
 * for the other: no stale copy committed), the packed layout's density before and after heavy
 * freeing, reset detaching the store, and readers, writers and discards racing writebacks
 * against a shadow copy.
 */
#include "harness.h"

#include "dev_harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE UZ_PAGE_SIZE

static char dir[] = "/tmp/uzt-wb-XXXXXX";

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static struct uz_dev *mkdev(uint64_t pages)
{
    struct uz_dev_config cfg = {.disksize = pages * PAGE, .algorithm = "lz4"};
    struct uz_dev *dev;
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    return dev;
}

static int wr(struct uz_dev *dev, const char *attr, const char *val)
{
    return uz_dev_attr_write(dev, attr, val);
}

static struct uz_dev_stats stats(struct uz_dev *dev)
{
    struct uz_dev_stats st;
    CHECK_EQ(uz_dev_stats(dev, &st), 0);
    return st;
}

static uint64_t blocks_of(const char *path)
{
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

/* Kinds of page: 0 compressible, 1 random (huge), 2 same-filled. */
static void make_page(unsigned char *p, uint64_t key, int kind)
{
    if (kind == 2) {
        memset(p, (int)(key & 0xff) | 1, PAGE);
        return;
    }
    uzt_pattern_fill(p, PAGE, key);
    if (kind == 0)
        memset(p + 1024 + key % 1024, 0, 2048);
}

/* The kind fill() gives page i. */
static int kind_of(uint64_t i)
{
    return i % 7 == 3 ? 2 : i % 5 == 1;
}

static void fill(struct uz_dev *dev, unsigned char *shadow, uint64_t n, uint64_t seed)
{
    for (uint64_t i = 0; i < n; i++) {
        make_page(shadow + i * PAGE, seed * 100000 + i, kind_of(i));
        CHECK_EQ(uz_dev_write_page(dev, i, shadow + i * PAGE), 0);
    }
}

/* ---- grammar ---- */

struct row {
    const char *attr, *value;
    int rc;
};

static void run_rows(struct uz_dev *dev, const struct row *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = wr(dev, r[i].attr, r[i].value);
        if (rc != r[i].rc)
            fprintf(stderr, "%s <- '%s': %d, want %d\n", r[i].attr, r[i].value, rc, r[i].rc);
        CHECK_EQ(rc, r[i].rc);
    }
}

static void test_grammar(void)
{
    enum { N = 16 };
    struct uz_dev *dev = mkdev(N);
    char buf[256], file[4200];
    path_of(file, sizeof(file), "grammar");
    CHECK_EQ(uz_dev_attr_read(dev, "backing_dev", buf, sizeof(buf)), 5);
    CHECK_STR(buf, "none\n");
    CHECK(uz_dev_attr_read(dev, "bd_stat", buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "       0        0        0\n");
    CHECK(uz_dev_attr_read(dev, "writeback_batch_size", buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "32\n");
    static const struct row before[] = {
        {"writeback", "idle", -ENODEV},
        {"writeback", "page_index=1", -ENODEV},
        {"backing_dev", "/dev/null", -ENOTBLK},
        {"backing_dev", "/", -EISDIR},
        {"backing_dev", "/nonexistent-dir/x", -ENOENT},
        {"backing_dev", "\n", -EINVAL},
        {"writeback_batch_size", "0", -EINVAL},
        {"writeback_batch_size", "x", -EINVAL},
        {"writeback_batch_size", "4294967296", -ERANGE},
        {"writeback_batch_size", "8\n", 0},
        {"writeback_limit", "-1", -EINVAL},
        {"writeback_limit", "18446744073709551616", -ERANGE},
        {"writeback_limit", "100", 0},
        {"writeback_limit_enable", "x", -EINVAL},
        {"writeback_limit_enable", "0", 0},
        {"compressed_writeback", "2", -EINVAL},
        {"compressed_writeback", "0", 0},
        {"backing_dev", "none", 0},
    };
    run_rows(dev, before, sizeof(before) / sizeof(before[0]));
    char v[4300];
    snprintf(v, sizeof(v), "%s\n", file);
    CHECK_EQ(wr(dev, "backing_dev", v), 0); /* created; the newline is dropped */
    CHECK_EQ(uz_dev_attr_read(dev, "backing_dev", buf, sizeof(buf)), (int)strlen(v));
    CHECK_STR(buf, v);
    static const struct row after[] = {
        {"writeback", "bogus", -EINVAL},
        {"writeback", "none", -EINVAL},
        {"writeback", "type=bogus", -EINVAL},
        {"writeback", "type=", -EINVAL},
        {"writeback", "page_index", -EINVAL},
        {"writeback", "page_index=x", -EINVAL},
        {"writeback", "page_index=16", -ERANGE},
        {"writeback", "page_indexes=5", -EINVAL},
        {"writeback", "page_indexes=5-3", -ERANGE},
        {"writeback", "page_indexes=5-5", -ERANGE},
        {"writeback", "page_indexes=0-17", -ERANGE},
        {"writeback", "type=idle page_index=1", -EINVAL},
        {"writeback", "page_index=1 junk=2", -EINVAL},
        {"writeback", "idle", 0},
        {"writeback", "huge\n", 0},
        {"writeback", "huge_idle", 0},
        {"writeback", "incompressible", 0},
        {"writeback", "type=huge", 0},
        {"writeback", "page_indexes=0-16", 0},
        {"writeback", "page_index=15 page_index=0", 0},
    };
    run_rows(dev, after, sizeof(after) / sizeof(after[0]));
    /* With something written back: detaching and changing the layout are refused. */
    unsigned char page[PAGE];
    make_page(page, 1, 0);
    CHECK_EQ(uz_dev_write_page(dev, 2, page), 0);
    CHECK_EQ(wr(dev, "writeback", "page_index=2"), 0);
    CHECK_EQ(stats(dev).bd_count, 1);
    CHECK_EQ(wr(dev, "backing_dev", "none"), -EBUSY);
    CHECK_EQ(wr(dev, "backing_dev", file), -EBUSY);
    CHECK_EQ(wr(dev, "compressed_writeback", "1"), -EBUSY);
    CHECK(uz_dev_attr_read(dev, "bd_stat", buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "       1        0        1\n");
    /* Reset detaches (the kernel's reset_bdev) and restores the defaults. */
    CHECK_EQ(wr(dev, "reset", "1"), 0);
    CHECK(uz_dev_attr_read(dev, "backing_dev", buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "none\n");
    CHECK(uz_dev_attr_read(dev, "writeback_batch_size", buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "32\n");
    CHECK_EQ(wr(dev, "writeback", "idle"), -EINVAL); /* uninitialised */
    uz_dev_destroy(dev);
    unlink(file);
}

/* ---- each type, both layouts ---- */

static void test_types(bool packed)
{
    enum { N = 200 };
    static unsigned char shadow[N * PAGE];
    char file[4200];
    path_of(file, sizeof(file), packed ? "types-packed" : "types-raw");
    unlink(file);
    struct uz_dev *dev = mkdev(N);
    CHECK_EQ(wr(dev, "compressed_writeback", packed ? "1" : "0"), 0);
    CHECK_EQ(wr(dev, "backing_dev", file), 0);
    fill(dev, shadow, N, 1);
    struct uz_dev_stats s0 = stats(dev);
    uint64_t huge = s0.huge_pages;
    CHECK(huge > 20);

    /* idle: only the slots marked idle (the first half), never same-filled ones. */
    for (uint64_t i = 0; i < N / 2; i++)
        atomic_fetch_or(&dev->table[i].flags,
                        uz_slot_flags(&dev->table[i]) & UZ_SLOT_ALLOC ? UZ_SLOT_IDLE : 0);
    uint64_t idle = uzt_dev_count_flag(dev, UZ_SLOT_IDLE);
    CHECK_EQ(wr(dev, "writeback", "huge_idle"), 0);
    uint64_t hi_n = uzt_dev_count_flag(dev, UZ_SLOT_WB);
    for (uint64_t i = 0; i < N; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        if (f & UZ_SLOT_WB)
            CHECK(i < N / 2 && kind_of(i) == 1);
    }
    CHECK(hi_n > 0);
    CHECK_EQ(wr(dev, "writeback", "idle"), 0);
    CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_WB), idle);
    for (uint64_t i = 0; i < N; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        CHECK(!(f & UZ_SLOT_WB) == !(i < N / 2 && kind_of(i) != 2));
    }
    struct uz_dev_stats s1 = stats(dev);
    CHECK_EQ(s1.orig_data_size, s0.orig_data_size);
    CHECK(s1.compr_data_size < s0.compr_data_size);
    CHECK_EQ(s1.bd_count, idle);
    CHECK_EQ(s1.bd_writes, idle);
    uzt_dev_verify(dev, shadow, 0, N);
    CHECK_EQ(stats(dev).bd_reads, idle); /* read from the store, not brought back */
    CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_WB), idle);

    /* block_state shows 'w'. */
    char text[64 * N];
    uint64_t at = 0;
    CHECK(uz_dev_block_state(dev, &at, text, sizeof(text)) > 0);
    CHECK(strstr(text, "           0 ") && strstr(text, " .w....\n"));

    /* huge: the raw pages of the second half. */
    CHECK_EQ(wr(dev, "writeback", "type=huge"), 0);
    for (uint64_t i = N / 2; i < N; i++)
        CHECK(!(uz_slot_flags(&dev->table[i]) & UZ_SLOT_WB) == (kind_of(i) != 1));
    CHECK_EQ(stats(dev).huge_pages, 0);
    /* incompressible: the 'n' slots only. */
    for (uint64_t i = N / 2; i < N; i += 10)
        if (uz_slot_flags(&dev->table[i]) & UZ_SLOT_ALLOC)
            atomic_fetch_or(&dev->table[i].flags, UZ_SLOT_INCOMP);
    uint64_t incomp = uzt_dev_count_flag(dev, UZ_SLOT_INCOMP),
             wb_before = uzt_dev_count_flag(dev, UZ_SLOT_WB);
    CHECK(incomp > 0);
    CHECK_EQ(wr(dev, "incompressible", ""), -ENOENT); /* not an attribute */
    CHECK_EQ(wr(dev, "writeback", "incompressible"), 0);
    CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_WB), wb_before + incomp);
    /* page_index and page_indexes: exactly those. */
    CHECK_EQ(wr(dev, "writeback", "page_index=102 page_index=104"), 0);
    CHECK(uz_slot_flags(&dev->table[102]) & UZ_SLOT_WB);
    CHECK(uz_slot_flags(&dev->table[104]) & UZ_SLOT_WB);
    CHECK(!(uz_slot_flags(&dev->table[103]) & UZ_SLOT_WB) || kind_of(103) == 1);
    CHECK_EQ(wr(dev, "writeback", "page_indexes=150-160"), 0);
    for (uint64_t i = 150; i < 160; i++)
        CHECK((uz_slot_flags(&dev->table[i]) & UZ_SLOT_WB) || kind_of(i) == 2);
    uzt_dev_verify(dev, shadow, 0, N);

    /* Partial writes into written-back pages: read from the store, stored anew in RAM. */
    unsigned char patch[300];
    uzt_pattern_fill(patch, sizeof(patch), 77);
    CHECK_EQ(uz_dev_pwrite(dev, patch, sizeof(patch), 152 * PAGE + 100), (ssize_t)sizeof(patch));
    memcpy(shadow + 152 * PAGE + 100, patch, sizeof(patch));
    CHECK(!(uz_slot_flags(&dev->table[152]) & UZ_SLOT_WB));
    uzt_dev_verify(dev, shadow, 0, N);
    CHECK_EQ(stats(dev).bd_count, uzt_dev_count_flag(dev, UZ_SLOT_WB));
    CHECK_EQ(uz_pool_check(dev->pool), 0);

    /* Holes: everything written back, then discarded or overwritten: the file shrinks. */
    CHECK_EQ(wr(dev, "writeback", "page_indexes=0-200"), 0);
    uint64_t full = blocks_of(file);
    CHECK(full > 0);
    CHECK_EQ(uz_dev_discard(dev, 0, N / 2 * PAGE), 0);
    memset(shadow, 0, N / 2 * PAGE);
    uint64_t half = blocks_of(file);
    CHECK(half < full * 3 / 4);
    for (uint64_t i = N / 2; i < N; i++) {
        make_page(shadow + i * PAGE, 999 + i, 0);
        CHECK_EQ(uz_dev_write_page(dev, i, shadow + i * PAGE), 0);
    }
    CHECK(blocks_of(file) <= 8192); /* at most a block or two left over */
    CHECK_EQ(stats(dev).bd_count, 0);
    uzt_dev_verify(dev, shadow, 0, N);
    uz_dev_destroy(dev);
    unlink(file);
}

/* ---- writeback_limit ---- */

static void test_limit(void)
{
    enum { N = 64 };
    static unsigned char shadow[N * PAGE];
    char file[4200];
    path_of(file, sizeof(file), "limit");
    struct uz_dev *dev = mkdev(N);
    CHECK_EQ(wr(dev, "backing_dev", file), 0);
    fill(dev, shadow, N, 2);
    CHECK_EQ(wr(dev, "writeback_limit_enable", "1"), 0);
    CHECK_EQ(wr(dev, "writeback_limit", "5"), 0);
    CHECK_EQ(wr(dev, "idle", "all"), 0);
    CHECK_EQ(wr(dev, "writeback", "idle"), -EIO);
    CHECK_EQ(stats(dev).bd_count, 5);
    char buf[32];
    CHECK(uz_dev_attr_read(dev, "writeback_limit", buf, sizeof(buf)) > 0);
    CHECK_STR(buf, "0\n");
    CHECK_EQ(wr(dev, "writeback", "idle"), -EIO); /* exhausted at once */
    CHECK_EQ(stats(dev).bd_count, 5);
    CHECK_EQ(wr(dev, "writeback_limit_enable", "0"), 0); /* off: no bound */
    CHECK_EQ(wr(dev, "writeback", "idle"), 0);
    CHECK_EQ(stats(dev).bd_count, uzt_dev_count_flag(dev, UZ_SLOT_WB));
    CHECK(stats(dev).bd_count > 40);
    uzt_dev_verify(dev, shadow, 0, N);
    uz_dev_destroy(dev);
    unlink(file);
}

/* ---- a full file system ---- */

static void test_full_fs(void)
{
    char mnt[4200], file[4300];
    path_of(mnt, sizeof(mnt), "small");
    CHECK_EQ(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k")) {
        printf("full_fs: cannot mount a tmpfs (%s); skipped\n", strerror(errno));
        rmdir(mnt);
        return;
    }
    snprintf(file, sizeof(file), "%s/store", mnt);
    for (int packed = 0; packed < 2; packed++) {
        enum { N = 128 };
        static unsigned char shadow[N * PAGE];
        struct uz_dev *dev = mkdev(N);
        CHECK_EQ(wr(dev, "compressed_writeback", packed ? "1" : "0"), 0);
        CHECK_EQ(wr(dev, "backing_dev", file), 0);
        fill(dev, shadow, N, 3);
        CHECK_EQ(wr(dev, "idle", "all"), 0);
        CHECK_EQ(wr(dev, "writeback", "idle"), -ENOSPC);
        struct uz_dev_stats s = stats(dev);
        CHECK(s.bd_count <= 16);
        CHECK(s.failed_writes >= 1);
        CHECK_EQ(s.bd_count, uzt_dev_count_flag(dev, UZ_SLOT_WB));
        uzt_dev_verify(dev, shadow, 0, N);
        CHECK_EQ(uz_pool_check(dev->pool), 0);
        uz_dev_destroy(dev);
        unlink(file);
    }
    umount(mnt);
    rmdir(mnt);
}

/* ---- injected I/O errors ---- */

static _Atomic int fail_writes, fail_reads;

static ssize_t bad_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (atomic_load(&fail_writes)) {
        errno = EIO;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

static ssize_t bad_pread(int fd, void *buf, size_t len, off_t off)
{
    if (atomic_load(&fail_reads)) {
        errno = EIO;
        return -1;
    }
    return pread(fd, buf, len, off);
}

static void test_io_errors(bool packed)
{
    enum { N = 64 };
    static unsigned char shadow[N * PAGE];
    char file[4200];
    path_of(file, sizeof(file), "ioerr");
    struct uz_dev *dev = mkdev(N);
    CHECK_EQ(wr(dev, "compressed_writeback", packed ? "1" : "0"), 0);
    CHECK_EQ(wr(dev, "backing_dev", file), 0);
    fill(dev, shadow, N, 4);
    uz_dev_wb_pwrite_hook = bad_pwrite;
    uz_dev_wb_pread_hook = bad_pread;
    atomic_store(&fail_writes, 1);
    CHECK_EQ(wr(dev, "writeback", "page_indexes=0-64"), -EIO);
    CHECK_EQ(stats(dev).bd_count, 0);
    CHECK_EQ(stats(dev).failed_writes, 1);
    CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_PP), 0);
    uzt_dev_verify(dev, shadow, 0, N);
    atomic_store(&fail_writes, 0);
    CHECK_EQ(wr(dev, "writeback", "page_indexes=0-32"), 0);
    uint64_t wb = stats(dev).bd_count;
    CHECK(wb > 20);
    atomic_store(&fail_reads, 1);
    unsigned char page[PAGE];
    uint64_t bad = 0;
    for (uint64_t i = 0; i < N; i++) {
        int rc = uz_dev_read_page(dev, i, page);
        if (uz_slot_flags(&dev->table[i]) & UZ_SLOT_WB) {
            CHECK_EQ(rc, -EIO);
            bad++;
        } else {
            CHECK_EQ(rc, 0);
            CHECK(!memcmp(page, shadow + i * PAGE, PAGE));
        }
    }
    CHECK_EQ(stats(dev).failed_reads, bad);
    atomic_store(&fail_reads, 0);
    uzt_dev_verify(dev, shadow, 0, N); /* nothing was lost */
    uz_dev_wb_pwrite_hook = NULL;
    uz_dev_wb_pread_hook = NULL;
    uz_dev_destroy(dev);
    unlink(file);
}

/* ---- corrupt objects, decoded by two threads ---- */

static _Atomic int writes_left; /* pwrite calls that succeed before the rest fail; < 0: all */

static ssize_t counted_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (atomic_load(&writes_left) >= 0 && atomic_fetch_sub(&writes_left, 1) <= 0) {
        errno = EIO;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

/* Raw writeback decodes each batch on both threads after picking it: a corrupt object cuts the
 * batch before it (-EIO), alone or while the batch before fails to write; nothing is lost, no PP
 * is left and writeback_limit gets back what was not written. */
static void test_corrupt(void)
{
    enum { N = 256, BATCH = 16, BAD = 100 };
    static unsigned char shadow[N * PAGE];
    char file[4200];
    path_of(file, sizeof(file), "corrupt");
    for (int write_fails = 0; write_fails < 2; write_fails++) {
        struct uz_dev *dev = mkdev(N);
        CHECK_EQ(wr(dev, "backing_dev", file), 0);
        CHECK_EQ(wr(dev, "writeback_batch_size", "16"), 0);
        CHECK_EQ(wr(dev, "writeback_limit_enable", "1"), 0);
        CHECK_EQ(wr(dev, "writeback_limit", "1000"), 0);
        for (uint64_t i = 0; i < N; i++) {
            make_page(shadow + i * PAGE, 900 + i, 0);
            CHECK_EQ(uz_dev_write_page(dev, i, shadow + i * PAGE), 0);
        }
        struct uz_slot *s = &dev->table[BAD];
        uint32_t f = uz_slot_flags(s);
        CHECK((f & UZ_SLOT_ALLOC) && !(f & UZ_SLOT_HUGE));
        memset(uz_pool_map(dev->pool, s->val), 0xff, f & UZ_SLOT_SIZE_MASK);
        uz_pool_unmap(dev->pool, s->val);
        /* write_fails: the write of the batch before BAD's fails while BAD's is decoded. */
        uint64_t want = write_fails ? BAD / BATCH * BATCH - BATCH : BAD;
        atomic_store(&writes_left, write_fails ? BAD / BATCH - 1 : -1);
        uz_dev_wb_pwrite_hook = counted_pwrite;
        CHECK_EQ(wr(dev, "writeback", "page_indexes=0-256"), -EIO);
        uz_dev_wb_pwrite_hook = NULL;
        struct uz_dev_stats st = stats(dev);
        CHECK_EQ(st.bd_count, want);
        CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_WB), want);
        CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_PP), 0);
        CHECK_EQ(st.failed_writes, (uint64_t)write_fails);
        for (uint64_t i = 0; i < N; i++)
            CHECK_EQ(!!(uz_slot_flags(&dev->table[i]) & UZ_SLOT_WB), i < want);
        char buf[64];
        CHECK(uz_dev_attr_read(dev, "writeback_limit", buf, sizeof(buf)) > 0);
        CHECK_EQ(strtoull(buf, NULL, 10), 1000 - want);
        unsigned char page[PAGE];
        CHECK_EQ(uz_dev_read_page(dev, BAD, page), -EIO);
        CHECK_EQ(uz_dev_write_page(dev, BAD, shadow + BAD * PAGE), 0); /* repaired */
        uzt_dev_verify(dev, shadow, 0, N);
        CHECK_EQ(wr(dev, "writeback", "page_indexes=0-256"), 0);
        CHECK_EQ(stats(dev).bd_count, N);
        uzt_dev_verify(dev, shadow, 0, N);
        CHECK_EQ(uz_dev_wb_stored(dev->wb), N);
        CHECK_EQ(uz_pool_check(dev->pool), 0);
        uz_dev_destroy(dev);
        unlink(file);
    }
}

/* ---- two writebacks at once ---- */

/* The first writeback's write: page X is overwritten and a second writeback of X starts, whose
 * own write then waits until the first writeback has returned. Were the two not serialised, the
 * second would mark X PP again and the first would commit its stale copy of X. */
enum { TX = 3 };
static struct uz_dev *two_dev;
static unsigned char two_new[PAGE];
static _Atomic int two_calls, two_second_in_write, two_first_done;
static pthread_t two_thread;

static void *two_second(void *arg)
{
    (void)arg;
    CHECK_EQ(wr(two_dev, "writeback", "page_index=3"), 0);
    return NULL;
}

static ssize_t two_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    int call = atomic_fetch_add(&two_calls, 1);
    if (call == 0) {
        CHECK_EQ(uz_dev_write_page(two_dev, TX, two_new), 0);
        CHECK_EQ(pthread_create(&two_thread, NULL, two_second, NULL), 0);
        for (int ms = 0; ms < 300 && !atomic_load(&two_second_in_write); ms++)
            usleep(1000);
    } else if (call == 1) {
        atomic_store(&two_second_in_write, 1);
        while (!atomic_load(&two_first_done))
            usleep(1000);
    }
    return pwrite(fd, buf, len, off);
}

static void test_two_writebacks(void)
{
    enum { N = 8 };
    static unsigned char shadow[N * PAGE];
    char file[4200];
    path_of(file, sizeof(file), "two");
    two_dev = mkdev(N);
    CHECK_EQ(wr(two_dev, "backing_dev", file), 0);
    for (uint64_t i = 0; i < N; i++) {
        make_page(shadow + i * PAGE, 300 + i, 0);
        CHECK_EQ(uz_dev_write_page(two_dev, i, shadow + i * PAGE), 0);
    }
    make_page(two_new, 777, 0);
    uz_dev_wb_pwrite_hook = two_pwrite;
    CHECK_EQ(wr(two_dev, "writeback", "page_indexes=0-8"), 0);
    atomic_store(&two_first_done, 1);
    pthread_join(two_thread, NULL);
    memcpy(shadow + TX * PAGE, two_new, PAGE);
    uz_dev_wb_pwrite_hook = NULL;
    uzt_dev_verify(two_dev, shadow, 0, N);
    struct uz_dev_stats st = stats(two_dev);
    CHECK_EQ(st.bd_count, uzt_dev_count_flag(two_dev, UZ_SLOT_WB));
    CHECK_EQ(uz_dev_wb_stored(two_dev->wb), st.bd_count);
    CHECK_EQ(uzt_dev_count_flag(two_dev, UZ_SLOT_PP), 0);
    uz_dev_destroy(two_dev);
    unlink(file);
}

/* ---- a real image, raw, in short batches ---- */

/* Batches of 5 decode in runs of 4 and 1, so batch k + 1 often finishes decoding before batch k
 * (whose last run the other thread still has): they must still be written in order, each once. */
static void test_image_raw(void)
{
    size_t n;
    unsigned char *img = uzt_load_image(UZT_SAMPLE, &n);
    CHECK(img);
    char file[4200];
    path_of(file, sizeof(file), "image");
    for (int round = 0; round < 6; round++) {
        struct uz_dev *dev = mkdev(n);
        CHECK_EQ(wr(dev, "backing_dev", file), 0);
        CHECK_EQ(wr(dev, "writeback_batch_size", round % 2 ? "5" : "3"), 0);
        for (size_t i = 0; i < n; i++)
            CHECK_EQ(uz_dev_write_page(dev, i, img + i * PAGE), 0);
        CHECK_EQ(wr(dev, "idle", "all"), 0);
        CHECK_EQ(wr(dev, "writeback", "idle"), 0);
        struct uz_dev_stats st = stats(dev);
        CHECK_EQ(st.bd_count, st.orig_data_size / PAGE - st.same_pages);
        CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_PP), 0);
        uzt_dev_verify(dev, img, 0, n);
        uz_dev_destroy(dev);
        unlink(file);
    }
    free(img);
}

/* ---- packed density ---- */

static void test_density(void)
{
    size_t n;
    unsigned char *img = uzt_load_image(UZT_SAMPLE, &n);
    CHECK(img);
    char file[4200];
    path_of(file, sizeof(file), "dense");
    struct uz_dev *dev = mkdev(n);
    CHECK_EQ(wr(dev, "compressed_writeback", "1"), 0);
    CHECK_EQ(wr(dev, "backing_dev", file), 0);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(uz_dev_write_page(dev, i, img + i * PAGE), 0);
    uint64_t compr = stats(dev).compr_data_size;
    CHECK_EQ(wr(dev, "idle", "all"), 0);
    CHECK_EQ(wr(dev, "writeback", "idle"), 0);
    uint64_t held = compr - stats(dev).compr_data_size;
    uint64_t alloc = blocks_of(file);
    printf("density: %llu compressed bytes in %llu allocated (%.3fx)\n", (unsigned long long)held,
           (unsigned long long)alloc, (double)alloc / (double)held);
    CHECK(alloc <= held + held * 15 / 100 + (1u << 20));
    /* Free 3 pages in 4 at random, then let cleaning run (a writeback with nothing to do). */
    uint64_t seed = 5;
    for (size_t i = 0; i < n; i++)
        if (uzt_rand(&seed) % 4) {
            CHECK_EQ(uz_dev_discard(dev, i * PAGE, PAGE), 0);
            memset(img + i * PAGE, 0, PAGE);
        }
    uint64_t live, used;
    uz_dev_wb_usage(dev->wb, &live, &used);
    CHECK_EQ(wr(dev, "writeback", "idle"), 0);
    uint64_t live2, used2;
    uz_dev_wb_usage(dev->wb, &live2, &used2);
    alloc = blocks_of(file);
    printf("density after freeing: live %llu, blocks %llu before cleaning, %llu after; "
           "allocated %llu\n",
           (unsigned long long)live, (unsigned long long)used, (unsigned long long)used2,
           (unsigned long long)alloc);
    CHECK_EQ(live2, live);
    CHECK(alloc <= live2 + live2 * 15 / 100 + (1u << 20));
    for (size_t i = 0; i < n; i++) {
        unsigned char page[PAGE];
        CHECK_EQ(uz_dev_read_page(dev, i, page), 0);
        CHECK(!memcmp(page, img + i * PAGE, PAGE));
    }
    uz_dev_destroy(dev);
    unlink(file);
    free(img);
}

/* ---- racing I/O ---- */

enum { RP = 512, RT = 3 };
static unsigned char rshadow[RP][PAGE];
static pthread_mutex_t rlock[RP];
static _Atomic int rstop;

struct racer {
    struct uz_dev *dev;
    uint64_t seed;
};

static void *race_io(void *arg)
{
    struct racer *r = arg;
    unsigned char page[PAGE];
    while (!atomic_load(&rstop)) {
        uint64_t i = uzt_rand(&r->seed) % RP;
        pthread_mutex_lock(&rlock[i]);
        switch (uzt_rand(&r->seed) % 4) {
        case 0:
            make_page(page, uzt_rand(&r->seed), (int)(uzt_rand(&r->seed) % 3));
            CHECK_EQ(uz_dev_write_page(r->dev, i, page), 0);
            memcpy(rshadow[i], page, PAGE);
            break;
        case 1:
            CHECK_EQ(uz_dev_discard(r->dev, i * PAGE, PAGE), 0);
            memset(rshadow[i], 0, PAGE);
            break;
        default:
            CHECK_EQ(uz_dev_read_page(r->dev, i, page), 0);
            CHECK(!memcmp(page, rshadow[i], PAGE));
        }
        pthread_mutex_unlock(&rlock[i]);
    }
    return NULL;
}

static void test_race(bool packed, const char *batch)
{
    char file[4200];
    path_of(file, sizeof(file), "race");
    struct uz_dev *dev = mkdev(RP);
    CHECK_EQ(wr(dev, "compressed_writeback", packed ? "1" : "0"), 0);
    CHECK_EQ(wr(dev, "backing_dev", file), 0);
    CHECK_EQ(wr(dev, "writeback_batch_size", batch), 0);
    for (size_t i = 0; i < RP; i++) {
        pthread_mutex_init(&rlock[i], NULL);
        make_page(rshadow[i], i, (int)(i % 3));
        CHECK_EQ(uz_dev_write_page(dev, i, rshadow[i]), 0);
    }
    atomic_store(&rstop, 0);
    pthread_t t[RT];
    struct racer r[RT];
    for (int k = 0; k < RT; k++) {
        r[k] = (struct racer){dev, 7 + (uint64_t)k + (packed ? 100 : 0)};
        CHECK_EQ(pthread_create(&t[k], NULL, race_io, &r[k]), 0);
    }
    for (int round = 0; round < 40; round++) {
        CHECK_EQ(wr(dev, "idle", "all"), 0);
        CHECK_EQ(wr(dev, "writeback", round % 3 ? "idle" : "page_indexes=0-512"), 0);
    }
    atomic_store(&rstop, 1);
    for (int k = 0; k < RT; k++)
        pthread_join(t[k], NULL);
    for (size_t i = 0; i < RP; i++) {
        unsigned char page[PAGE];
        CHECK_EQ(uz_dev_read_page(dev, i, page), 0);
        CHECK(!memcmp(page, rshadow[i], PAGE));
    }
    struct uz_dev_stats s = stats(dev);
    CHECK_EQ(s.bd_count, uzt_dev_count_flag(dev, UZ_SLOT_WB));
    CHECK_EQ(uzt_dev_count_flag(dev, UZ_SLOT_PP), 0);
    CHECK_EQ(uz_dev_wb_stored(dev->wb), s.bd_count);
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    uz_dev_destroy(dev);
    unlink(file);
}

int main(void)
{
    CHECK(mkdtemp(dir));
    test_grammar();
    test_types(false);
    test_types(true);
    test_limit();
    test_full_fs();
    test_io_errors(false);
    test_io_errors(true);
    test_corrupt();
    test_two_writebacks();
    test_image_raw();
    test_density();
    test_race(false, "16");
    test_race(false, "5"); /* a short last decoding run: batches finish decoding out of order */
    test_race(true, "16");
    rmdir(dir);
    printf("dev_wb: ok\n");
    return 0;
}
