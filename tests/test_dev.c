// SPDX-License-Identifier: MIT
/*
 * test_dev.c - the compressed page device, single-threaded behaviour:
 *  - page and byte-granular I/O against a model file (pwrite/pread on a real temp file),
 *    random operations with a fixed seed, every codec;
 *  - same-filled, huge and never-written pages, discard;
 *  - mem_limit: -ENOSPC, the old contents stay, discard makes room again;
 *  - attribute text formats, byte for byte as the kernel prints them;
 *  - reset, disksize, comp_algorithm and algorithm_params semantics;
 *  - async writes with and without workers, stable_writes.
 */
#include "harness.h"

#include <fcntl.h>
#include <unistd.h>

#include "dev_internal.h"

#define PAGE UZ_PAGE_SIZE

static unsigned char *sample;
static size_t sample_pages;

static struct uz_dev *mkdev(uint64_t disksize, const char *algo, uint64_t mem_limit,
                            unsigned workers)
{
    struct uz_dev_config cfg = {
        .disksize = disksize, .algorithm = algo, .mem_limit = mem_limit, .workers = workers};
    struct uz_dev *dev = NULL;
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    CHECK(dev);
    return dev;
}

static void attr(struct uz_dev *dev, const char *name, char *buf, size_t len)
{
    int n = uz_dev_attr_read(dev, name, buf, len);
    CHECK(n > 0);
    CHECK_EQ(strlen(buf), n);
}

static unsigned long long mm(struct uz_dev *dev, int field)
{
    char buf[256];
    unsigned long long v[9];
    attr(dev, "mm_stat", buf, sizeof(buf));
    CHECK_EQ(sscanf(buf, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7], &v[8]),
             9);
    return v[field];
}
enum { ORIG, COMPR, MEM_USED, MEM_LIMIT, MEM_MAX, SAME, COMPACTED, HUGE, HUGE_SINCE };

static void fill_random(unsigned char *p, size_t n, uint64_t *seed)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = uzt_rand(seed);
        memcpy(p + i, &r, n - i < 8 ? n - i : 8);
    }
}

/* A page of one of several kinds: corpus, zero, same-filled, random, half random. */
static void make_page(unsigned char *p, uint64_t *seed)
{
    uint64_t w;
    switch (uzt_rand(seed) % 6) {
    case 0:
        memset(p, 0, PAGE);
        break;
    case 1:
        w = uzt_rand(seed);
        for (size_t i = 0; i < PAGE; i += 8)
            memcpy(p + i, &w, 8);
        break;
    case 2:
        fill_random(p, PAGE, seed);
        break;
    case 3:
        memcpy(p, sample + (uzt_rand(seed) % sample_pages) * PAGE, PAGE);
        fill_random(p + PAGE / 2, PAGE / 2, seed);
        break;
    default:
        memcpy(p, sample + (uzt_rand(seed) % sample_pages) * PAGE, PAGE);
        break;
    }
}

static void check_pool(struct uz_dev *dev)
{
    CHECK_EQ(uz_pool_check(dev->pool), 0);
    CHECK_EQ(uz_dev_mobj_check(dev), 0); /* multi-page objects agree with their slots */
}

static void set_object_pages(struct uz_dev *dev, unsigned n)
{
    char v[8];
    snprintf(v, sizeof(v), "%u", n);
    CHECK_EQ(uz_dev_attr_write(dev, "object_pages", v), 0);
}

/* Random page and byte I/O and discards, against a real file as the model, with objects of
 * `object_pages` pages: whole aligned runs (and longer writes covering several) become one
 * object each, which single-page, partial and discarding I/O then cut into. */
static void test_model(const char *algo, uint64_t seed, int ops, unsigned object_pages)
{
    const uint64_t pages = 96, size = pages * PAGE;
    struct uz_dev *dev = mkdev(size, algo, 0, 0);
    set_object_pages(dev, object_pages);
    const uint64_t run = object_pages;
    char path[] = "/tmp/uzram-model-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    CHECK_EQ(ftruncate(fd, (off_t)size), 0);
    const size_t bufsz = 40 * PAGE;
    unsigned char *buf = malloc(bufsz), *got = malloc(bufsz), *want = malloc(bufsz);
    for (int op = 0; op < ops; op++) {
        uint64_t r = uzt_rand(&seed) % 12;
        uint64_t off, len;
        if (r >= 10) { /* whole runs, or pages around them */
            uint64_t nruns = uzt_rand(&seed) % 2 + 1;
            len = nruns * run * PAGE;
            off = uzt_rand(&seed) % (pages / run) * run * PAGE;
            if (r == 11) { /* unaligned: page by page at the edges */
                off += (uzt_rand(&seed) % 3) * PAGE;
                len += PAGE;
            }
            if (off >= size)
                off = size - PAGE;
            if (len > size - off)
                len = size - off;
            for (uint64_t k = 0; k < len / PAGE; k++)
                make_page(buf + k * PAGE, &seed);
            if (uzt_rand(&seed) % 3 == 0) /* all of a run alike: its object is tiny */
                for (uint64_t k = 1; k < len / PAGE; k++)
                    memcpy(buf + k * PAGE, buf, PAGE);
            CHECK_EQ(uz_dev_pwrite(dev, buf, len, off), len);
            CHECK_EQ(pwrite(fd, buf, len, (off_t)off), len);
        } else if (r < 3) { /* whole page */
            uint64_t idx = uzt_rand(&seed) % pages;
            make_page(buf, &seed);
            CHECK_EQ(uz_dev_write_page(dev, idx, buf), 0);
            CHECK_EQ(pwrite(fd, buf, PAGE, (off_t)(idx * PAGE)), PAGE);
        } else if (r < 6) { /* bytes, possibly spanning pages */
            off = uzt_rand(&seed) % size;
            len = uzt_rand(&seed) % (3 * PAGE) + 1;
            if (len > size - off)
                len = size - off;
            make_page(buf, &seed);
            make_page(buf + PAGE, &seed);
            make_page(buf + 2 * PAGE, &seed);
            CHECK_EQ(uz_dev_pwrite(dev, buf, len, off), len);
            CHECK_EQ(pwrite(fd, buf, len, (off_t)off), len);
        } else if (r < 7) { /* discard: whole pages inside the range become zero */
            off = uzt_rand(&seed) % size;
            len = uzt_rand(&seed) % (4 * PAGE);
            if (len > size - off)
                len = size - off;
            CHECK_EQ(uz_dev_discard(dev, off, len), 0);
            uint64_t first = (off + PAGE - 1) / PAGE, end = (off + len) / PAGE;
            memset(buf, 0, PAGE);
            for (uint64_t i = first; i < end; i++)
                CHECK_EQ(pwrite(fd, buf, PAGE, (off_t)(i * PAGE)), PAGE);
        } else { /* read back bytes or a page */
            if (r < 8) {
                uint64_t idx = uzt_rand(&seed) % pages;
                off = idx * PAGE;
                len = PAGE;
                CHECK_EQ(uz_dev_read_page(dev, idx, got), 0);
            } else {
                off = uzt_rand(&seed) % size;
                len = uzt_rand(&seed) % (r == 9 ? bufsz : 4 * PAGE) + 1;
                if (len > size - off)
                    len = size - off;
                CHECK_EQ(uz_dev_pread(dev, got, len, off), len);
            }
            CHECK_EQ(pread(fd, want, len, (off_t)off), len);
            if (memcmp(got, want, len)) {
                size_t b = 0;
                while (got[b] == want[b])
                    b++;
                fprintf(stderr,
                        "%s object_pages=%u op %d r=%llu off=%llu len=%llu: byte %zu (page %llu) "
                        "differs\n",
                        algo, object_pages, op, (unsigned long long)r, (unsigned long long)off,
                        (unsigned long long)len, b, (unsigned long long)((off + b) / PAGE));
            }
            CHECK(memcmp(got, want, len) == 0);
        }
        if (op % 1000 == 0)
            check_pool(dev);
    }
    /* Every byte at the end. */
    for (uint64_t i = 0; i < pages; i++) {
        CHECK_EQ(uz_dev_read_page(dev, i, got), 0);
        CHECK_EQ(pread(fd, want, PAGE, (off_t)(i * PAGE)), PAGE);
        CHECK(memcmp(got, want, PAGE) == 0);
    }
    check_pool(dev);
    /* The pool grows in batches; the high-water mark still covers what it holds. */
    CHECK(mm(dev, MEM_MAX) >= mm(dev, MEM_USED));
    close(fd);
    free(buf);
    free(got);
    free(want);
    uz_dev_destroy(dev);
}

static void test_args(void)
{
    struct uz_dev *dev = NULL;
    struct uz_dev_config cfg = {.disksize = 0};
    CHECK_EQ(uz_dev_create(&cfg, &dev), -EINVAL);
    cfg.disksize = 4097;
    CHECK_EQ(uz_dev_create(&cfg, &dev), -EINVAL);
    cfg.disksize = 8192;
    cfg.algorithm = "brotli";
    CHECK_EQ(uz_dev_create(&cfg, &dev), -ENOENT);
    cfg.algorithm = "lzo";
    cfg.level = 5;
    CHECK_EQ(uz_dev_create(&cfg, &dev), -EINVAL);
    CHECK_EQ(uz_dev_create(NULL, &dev), -EINVAL);
    CHECK(dev == NULL);
    uz_dev_destroy(NULL);

    dev = mkdev(4 * PAGE, NULL, 0, 0);
    unsigned char page[PAGE];
    memset(page, 7, PAGE);
    CHECK_EQ(uz_dev_write_page(dev, 4, page), -EINVAL);
    CHECK_EQ(uz_dev_read_page(dev, 4, page), -EINVAL);
    CHECK_EQ(uz_dev_write_page(dev, UINT64_MAX, page), -EINVAL);
    CHECK_EQ(uz_dev_pwrite(dev, page, 2, 4 * PAGE - 1), -EINVAL);
    CHECK_EQ(uz_dev_pread(dev, page, 1, 4 * PAGE), -EINVAL);
    CHECK_EQ(uz_dev_pwrite(dev, page, 1, UINT64_MAX), -EINVAL);
    CHECK_EQ(uz_dev_pread(dev, page, 0, 4 * PAGE), 0); /* empty range at the end is fine */
    CHECK_EQ(uz_dev_discard(dev, 3 * PAGE, 2 * PAGE), -EINVAL);
    CHECK_EQ(uz_dev_write_page_async(dev, 9, page, NULL, NULL), -EINVAL);
    CHECK_EQ(uz_dev_write_page(dev, 0, NULL), -EINVAL);
    /* Nothing was stored by any failed call. */
    CHECK_EQ(mm(dev, ORIG), 0);
    uz_dev_destroy(dev);
}

static void test_kinds(void)
{
    struct uz_dev *dev = mkdev(64 * PAGE, "lz4", 0, 0);
    unsigned char page[PAGE], got[PAGE];
    uint64_t seed = 42;

    CHECK_EQ(uz_dev_page_state(dev, 64), -EINVAL);
    CHECK_EQ(uz_dev_page_state(dev, 5), UZ_DEV_PAGE_UNWRITTEN);
    /* Never written: zeros, no memory. */
    memset(got, 0xee, PAGE);
    CHECK_EQ(uz_dev_read_page(dev, 5, got), 0);
    memset(page, 0, PAGE);
    CHECK(memcmp(page, got, PAGE) == 0);
    CHECK_EQ(mm(dev, MEM_USED), 0);

    /* Same-filled pages (zero and a pattern): no pool memory. */
    CHECK_EQ(uz_dev_write_page(dev, 0, page), 0);
    uint64_t w = 0x0123456789abcdefull;
    for (size_t i = 0; i < PAGE; i += 8)
        memcpy(page + i, &w, 8);
    CHECK_EQ(uz_dev_write_page(dev, 1, page), 0);
    CHECK_EQ(mm(dev, SAME), 2);
    CHECK_EQ(uz_dev_page_state(dev, 0), UZ_DEV_PAGE_ZERO);
    CHECK_EQ(uz_dev_page_state(dev, 1), UZ_DEV_PAGE_DATA);
    CHECK_EQ(mm(dev, ORIG), 2 * PAGE);
    CHECK_EQ(mm(dev, COMPR), 0);
    CHECK_EQ(mm(dev, MEM_USED), 0);
    CHECK_EQ(uz_dev_read_page(dev, 1, got), 0);
    CHECK(memcmp(page, got, PAGE) == 0);
    /* Not same-filled because of the last word only. */
    page[PAGE - 1] ^= 1;
    CHECK_EQ(uz_dev_write_page(dev, 2, page), 0);
    CHECK_EQ(mm(dev, SAME), 2);
    CHECK_EQ(uz_dev_read_page(dev, 2, got), 0);
    CHECK(memcmp(page, got, PAGE) == 0);

    /* Huge: random data is stored raw. */
    fill_random(page, PAGE, &seed);
    CHECK_EQ(uz_dev_write_page(dev, 3, page), 0);
    CHECK_EQ(mm(dev, HUGE), 1);
    CHECK_EQ(mm(dev, HUGE_SINCE), 1);
    CHECK_EQ(uz_dev_read_page(dev, 3, got), 0);
    CHECK(memcmp(page, got, PAGE) == 0);
    unsigned long long compr = mm(dev, COMPR);
    CHECK(compr > PAGE);

    /* Overwriting a huge page with a same-filled one frees it; huge_pages_since stays. */
    memset(page, 0, PAGE);
    CHECK_EQ(uz_dev_write_page(dev, 3, page), 0);
    CHECK_EQ(mm(dev, HUGE), 0);
    CHECK_EQ(mm(dev, HUGE_SINCE), 1);
    CHECK_EQ(mm(dev, COMPR), compr - PAGE);

    /* Corpus pages compress; stats add up. */
    for (uint64_t i = 10; i < 40; i++)
        CHECK_EQ(uz_dev_write_page(dev, i, sample + (i % sample_pages) * PAGE), 0);
    CHECK(mm(dev, COMPR) < 30 * PAGE);
    CHECK(mm(dev, MEM_USED) > 0);
    CHECK(mm(dev, MEM_MAX) >= mm(dev, MEM_USED));
    for (uint64_t i = 10; i < 40; i++) {
        CHECK_EQ(uz_dev_read_page(dev, i, got), 0);
        CHECK(memcmp(sample + (i % sample_pages) * PAGE, got, PAGE) == 0);
    }

    /* Discard: whole pages only; notify_free counts; partial pages are left alone. */
    unsigned long long orig = mm(dev, ORIG);
    CHECK_EQ(uz_dev_discard(dev, 10 * PAGE + 1, 3 * PAGE), 0); /* frees 11 and 12 only */
    CHECK_EQ(mm(dev, ORIG), orig - 2 * PAGE);
    char buf[128];
    attr(dev, "io_stat", buf, sizeof(buf));
    CHECK_STR(buf, "       0        0 0        2\n");
    CHECK_EQ(uz_dev_read_page(dev, 10, got), 0);
    CHECK(memcmp(sample + 10 * PAGE, got, PAGE) == 0);
    CHECK_EQ(uz_dev_page_state(dev, 11), UZ_DEV_PAGE_UNWRITTEN);
    CHECK_EQ(uz_dev_page_state(dev, 13), UZ_DEV_PAGE_DATA);
    CHECK_EQ(uz_dev_read_page(dev, 11, got), 0);
    memset(page, 0, PAGE);
    CHECK(memcmp(page, got, PAGE) == 0);
    CHECK_EQ(uz_dev_read_page(dev, 13, got), 0);
    CHECK(memcmp(sample + 13 * PAGE, got, PAGE) == 0);

    /* Discarding everything gives the memory back, but for the pool's small cache of freed
     * zspages, which compaction empties. */
    CHECK_EQ(uz_dev_discard(dev, 0, 64 * PAGE), 0);
    CHECK_EQ(mm(dev, ORIG), 0);
    CHECK_EQ(mm(dev, COMPR), 0);
    CHECK(mm(dev, MEM_USED) <= 64 * PAGE);
    CHECK(uz_dev_compact(dev) >= 0);
    CHECK_EQ(mm(dev, MEM_USED), 0);
    CHECK_EQ(mm(dev, SAME), 0);
    check_pool(dev);
    uz_dev_destroy(dev);
}

static void test_mem_limit(void)
{
    /* Random pages are stored raw, one pool page each: a 16-page limit takes 16 of them. */
    struct uz_dev *dev = mkdev(64 * PAGE, NULL, 16 * PAGE, 0);
    unsigned char page[PAGE], got[PAGE], keep[PAGE];
    uint64_t seed = 7;
    int stored = 0, rc = 0;
    for (uint64_t i = 0; i < 64 && !rc; i++) {
        fill_random(page, PAGE, &seed);
        rc = uz_dev_write_page(dev, i, page);
        if (!rc)
            stored++;
    }
    CHECK_EQ(rc, -ENOSPC);
    CHECK_EQ(stored, 16);
    CHECK(mm(dev, MEM_USED) <= 16 * PAGE);
    CHECK_EQ(mm(dev, MEM_LIMIT), 16 * PAGE);

    /* Overwriting slot 3 with another incompressible page fails and keeps the old one. */
    CHECK_EQ(uz_dev_read_page(dev, 3, keep), 0);
    fill_random(page, PAGE, &seed);
    CHECK_EQ(uz_dev_write_page(dev, 3, page), -ENOSPC);
    CHECK_EQ(uz_dev_read_page(dev, 3, got), 0);
    CHECK(memcmp(keep, got, PAGE) == 0);
    /* A partial write that would need memory fails the same way. */
    CHECK_EQ(uz_dev_pwrite(dev, page, 100, 3 * PAGE + 5), -ENOSPC);
    CHECK_EQ(uz_dev_read_page(dev, 3, got), 0);
    CHECK(memcmp(keep, got, PAGE) == 0);
    char buf[128];
    attr(dev, "io_stat", buf, sizeof(buf));
    CHECK_STR(buf, "       0        3 0        0\n");
    /* Same-filled pages need no memory, so they still succeed. */
    memset(page, 0, PAGE);
    CHECK_EQ(uz_dev_write_page(dev, 40, page), 0);

    /* After a discard, writes succeed again. */
    CHECK_EQ(uz_dev_discard(dev, 0, 2 * PAGE), 0);
    fill_random(page, PAGE, &seed);
    CHECK_EQ(uz_dev_write_page(dev, 50, page), 0);
    CHECK_EQ(uz_dev_read_page(dev, 50, got), 0);
    CHECK(memcmp(page, got, PAGE) == 0);

    /* Raising the limit through the attribute, then removing it. */
    CHECK_EQ(uz_dev_attr_write(dev, "mem_limit", "1M\n"), 0);
    CHECK_EQ(mm(dev, MEM_LIMIT), 1 << 20);
    CHECK_EQ(uz_dev_write_page(dev, 51, page), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "mem_limit", "0"), 0);
    CHECK_EQ(mm(dev, MEM_LIMIT), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "mem_limit", "lots"), -EINVAL);
    check_pool(dev);
    uz_dev_destroy(dev);
}

static void test_attrs(void)
{
    struct uz_dev *dev = mkdev(1 << 20, NULL, 0, 0);
    char buf[8192], small[8];

    attr(dev, "comp_algorithm", buf, sizeof(buf));
    CHECK_STR(buf, "lzo-rle lzo [lz4] lz4hc zstd deflate \n");
    attr(dev, "disksize", buf, sizeof(buf));
    CHECK_STR(buf, "1048576\n");
    attr(dev, "initstate", buf, sizeof(buf));
    CHECK_STR(buf, "1\n");
    attr(dev, "mm_stat", buf, sizeof(buf));
    CHECK_STR(buf, "       0        0        0        0        0        0        0        0"
                   "        0\n");
    attr(dev, "io_stat", buf, sizeof(buf));
    CHECK_STR(buf, "       0        0 0        0\n");
    attr(dev, "debug_stat", buf, sizeof(buf));
    CHECK_STR(buf, "version: 1\n0        0\n");
    attr(dev, "algorithm_params", buf, sizeof(buf));
    CHECK_STR(buf, "algo=lz4 level=1\n");

    /* mm_stat with known contents: field widths grow past 8 digits as the kernel's do. */
    unsigned char page[PAGE];
    memset(page, 0, PAGE);
    for (uint64_t i = 0; i < 256; i++)
        CHECK_EQ(uz_dev_write_page(dev, i, page), 0);
    attr(dev, "mm_stat", buf, sizeof(buf));
    CHECK_STR(buf, " 1048576        0        0        0        0      256        0        0"
                   "        0\n");
    CHECK_EQ(uz_dev_write_page(dev, 0, sample), 0);
    unsigned long long used = mm(dev, MEM_USED), compr = mm(dev, COMPR);
    char want[256];
    snprintf(want, sizeof(want), "%8llu %8llu %8llu %8lu %8ld %8llu %8lu %8llu %8llu\n", 1048576ull,
             compr, used, 0ul, (long)used, 255ull, 0ul, 0ull, 0ull);
    attr(dev, "mm_stat", buf, sizeof(buf));
    CHECK_STR(buf, want);
    CHECK(used > 0 && used % PAGE == 0);

    /* pool_stat: the header and a Total line. */
    attr(dev, "pool_stat", buf, sizeof(buf));
    CHECK(strncmp(buf, " class  size ", 13) == 0);
    CHECK(strstr(buf, "obj_allocated   obj_used pages_used pages_per_zspage freeable\n"));
    CHECK(strstr(buf, "\n Total "));

    /* Errors. */
    CHECK_EQ(uz_dev_attr_read(dev, "nonesuch", buf, sizeof(buf)), -ENOENT);
    CHECK_EQ(uz_dev_attr_read(dev, "compact", buf, sizeof(buf)), -EACCES);
    CHECK_EQ(uz_dev_attr_read(dev, "reset", buf, sizeof(buf)), -EACCES);
    CHECK_EQ(uz_dev_attr_read(dev, "mm_stat", small, sizeof(small)), -ERANGE);
    CHECK_EQ(uz_dev_attr_write(dev, "mm_stat", "1"), -EACCES);
    CHECK_EQ(uz_dev_attr_write(dev, "io_stat", "1"), -EACCES);
    CHECK_EQ(uz_dev_attr_write(dev, "nonesuch", "1"), -ENOENT);
    CHECK_EQ(uz_dev_attr_write(dev, "mem_used_max", "5"), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "disksize", "2M"), -EBUSY);
    CHECK_EQ(uz_dev_attr_write(dev, "comp_algorithm", "zstd"), -EBUSY); /* data stored */
    CHECK_EQ(uz_dev_attr_write(dev, "compact", "1"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "mem_used_max", "0\n"), 0);
    CHECK_EQ(mm(dev, MEM_MAX), mm(dev, MEM_USED));

    /* reset: everything goes, the device is uninitialised until disksize is written. */
    CHECK_EQ(uz_dev_attr_write(dev, "reset", "1\n"), 0);
    attr(dev, "disksize", buf, sizeof(buf));
    CHECK_STR(buf, "0\n");
    attr(dev, "initstate", buf, sizeof(buf));
    CHECK_STR(buf, "0\n");
    CHECK_EQ(uz_dev_disksize(dev), 0);
    attr(dev, "mm_stat", buf, sizeof(buf));
    CHECK_STR(buf, "       0        0        0        0        0        0        0        0"
                   "        0\n");
    CHECK_EQ(uz_dev_write_page(dev, 0, page), -EINVAL);
    CHECK_EQ(uz_dev_read_page(dev, 0, page), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "compact", "1"), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "comp_algorithm", "nonesuch\n"), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "comp_algorithm", "zstd\n"), 0);
    attr(dev, "comp_algorithm", buf, sizeof(buf));
    CHECK_STR(buf, "lzo-rle lzo lz4 lz4hc [zstd] deflate \n");
    CHECK_EQ(uz_dev_attr_write(dev, "disksize", "junk"), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "disksize", "0"), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "disksize", "1000"), 0); /* rounded up to a page */
    attr(dev, "disksize", buf, sizeof(buf));
    CHECK_STR(buf, "4096\n");
    CHECK_EQ(uz_dev_attr_write(dev, "reset", "1"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "disksize", "2M\n"), 0);
    CHECK_EQ(uz_dev_disksize(dev), 2 << 20);
    CHECK_EQ(uz_dev_write_page(dev, 511, sample), 0);
    unsigned char got[PAGE];
    CHECK_EQ(uz_dev_read_page(dev, 511, got), 0);
    CHECK(memcmp(sample, got, PAGE) == 0);

    /* algorithm_params, on an empty device. */
    CHECK_EQ(uz_dev_discard(dev, 0, 2 << 20), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "comp_algorithm", "deflate"), 0); /* algo= does not switch */
    CHECK_EQ(uz_dev_attr_write(dev, "algorithm_params", "algo=deflate level=6\n"), 0);
    attr(dev, "algorithm_params", buf, sizeof(buf));
    CHECK_STR(buf, "algo=deflate level=6\n");
    CHECK_EQ(uz_dev_attr_write(dev, "algorithm_params", "algo=deflate level=99"), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "algorithm_params", "colour"), -EINVAL);
    CHECK_EQ(uz_dev_attr_write(dev, "algorithm_params", "algo=lzo dict=/nonexistent"), -EINVAL);
    attr(dev, "algorithm_params", buf, sizeof(buf)); /* failures changed nothing */
    CHECK_STR(buf, "algo=deflate level=6\n");
    CHECK_EQ(uz_dev_write_page(dev, 1, sample + PAGE), 0);
    CHECK_EQ(uz_dev_read_page(dev, 1, got), 0);
    CHECK(memcmp(sample + PAGE, got, PAGE) == 0);
    uz_dev_destroy(dev);
}

struct done_count {
    int calls, errors;
};

static void on_done(void *arg, int result)
{
    struct done_count *d = arg;
    __atomic_fetch_add(&d->calls, 1, __ATOMIC_RELAXED);
    if (result)
        __atomic_fetch_add(&d->errors, 1, __ATOMIC_RELAXED);
}

static void test_async(unsigned workers)
{
    const uint64_t pages = 256;
    struct uz_dev *dev = mkdev(pages * PAGE, "lz4", 0, workers);
    CHECK_EQ(uz_dev_stable_writes(dev), workers > 0);
    struct done_count d = {0, 0};
    /* Several generations per slot: the last submitted must win. */
    unsigned char *src = malloc(3 * pages * PAGE);
    for (int gen = 0; gen < 3; gen++)
        for (uint64_t i = 0; i < pages; i++) {
            unsigned char *p = src + (gen * pages + i) * PAGE;
            memcpy(p, sample + ((i + gen * 7) % sample_pages) * PAGE, PAGE);
            CHECK_EQ(uz_dev_write_page_async(dev, i, p, on_done, &d), 0);
        }
    CHECK_EQ(uz_dev_flush(dev), 0);
    CHECK_EQ(d.calls, 3 * pages);
    CHECK_EQ(d.errors, 0);
    unsigned char got[PAGE];
    for (uint64_t i = 0; i < pages; i++) {
        CHECK_EQ(uz_dev_read_page(dev, i, got), 0);
        CHECK(memcmp(src + (2 * pages + i) * PAGE, got, PAGE) == 0);
    }
    /* Errors reach the callback. */
    CHECK_EQ(uz_dev_attr_write(dev, "mem_limit", "4096"), 0);
    uint64_t seed = 99;
    for (uint64_t i = 0; i < 8; i++)
        fill_random(src + i * PAGE, PAGE, &seed);
    d.calls = d.errors = 0;
    for (uint64_t i = 0; i < 8; i++)
        CHECK_EQ(uz_dev_write_page_async(dev, i, src + i * PAGE, on_done, &d), 0);
    CHECK_EQ(uz_dev_flush(dev), 0);
    CHECK_EQ(d.calls, 8);
    CHECK_EQ(d.errors, 8);
    check_pool(dev);
    /* Destroy with writes still queued: they complete first. */
    CHECK_EQ(uz_dev_attr_write(dev, "mem_limit", "0"), 0);
    d.calls = 0;
    for (uint64_t i = 0; i < pages; i++)
        CHECK_EQ(uz_dev_write_page_async(dev, i, src + i % 8 * PAGE, on_done, &d), 0);
    uz_dev_destroy(dev);
    CHECK_EQ(d.calls, pages);
    free(src);
}

/* ---- range calls: uz_dev_zero() and uz_dev_extents() against a model ---- */

static int model_state(const unsigned char *page)
{
    for (size_t i = 0; i < PAGE; i++)
        if (page[i])
            return UZ_DEV_PAGE_DATA;
    return UZ_DEV_PAGE_ZERO;
}

/* The extents of [off, off+len) computed from the model's page states. */
static int model_extents(const int *state, uint64_t off, uint64_t len, struct uz_dev_extent *ext,
                         size_t max)
{
    size_t n = 0;
    for (uint64_t pos = off; pos < off + len;) {
        uint64_t next = (pos / PAGE + 1) * PAGE;
        if (next > off + len)
            next = off + len;
        int st = state[pos / PAGE];
        if (n && ext[n - 1].state == st)
            ext[n - 1].length += next - pos;
        else if (n == max)
            break;
        else
            ext[n++] = (struct uz_dev_extent){.offset = pos, .length = next - pos, .state = st};
        pos = next;
    }
    return (int)n;
}

static void test_ranges(uint64_t seed, int ops)
{
    const uint64_t pages = 64, size = pages * PAGE;
    struct uz_dev *dev = mkdev(size, "lz4", 0, 0);
    unsigned char *model = calloc(pages, PAGE), *got = malloc(size), *buf = malloc(3 * PAGE);
    int state[64];
    for (uint64_t i = 0; i < pages; i++)
        state[i] = UZ_DEV_PAGE_UNWRITTEN;
    for (int op = 0; op < ops; op++) {
        uint64_t r = uzt_rand(&seed) % 8;
        uint64_t off = uzt_rand(&seed) % size, len = uzt_rand(&seed) % (5 * PAGE);
        if (len > size - off)
            len = size - off;
        uint64_t first = (off + PAGE - 1) / PAGE, end = (off + len) / PAGE; /* whole pages */
        if (r < 3) { /* bytes: data, or zeros written as data */
            len = len > 3 * PAGE ? 3 * PAGE : len;
            if (r == 0)
                memset(buf, 0, len);
            else
                for (uint64_t i = 0; i < len; i++)
                    buf[i] = (unsigned char)uzt_rand(&seed);
            CHECK_EQ(uz_dev_pwrite(dev, buf, len, off), len);
            memcpy(model + off, buf, len);
            for (uint64_t p = off / PAGE; len && p <= (off + len - 1) / PAGE; p++)
                state[p] = model_state(model + p * PAGE);
        } else if (r < 6) { /* zero, trimming whole pages or not */
            bool trim = r == 5;
            CHECK_EQ(uz_dev_zero(dev, off, len, trim ? UZ_DEV_ZERO_TRIM : 0), 0);
            memset(model + off, 0, len);
            for (uint64_t p = off / PAGE; len && p <= (off + len - 1) / PAGE; p++)
                state[p] = p >= first && p < end ? (trim ? UZ_DEV_PAGE_UNWRITTEN : UZ_DEV_PAGE_ZERO)
                                                 : model_state(model + p * PAGE);
        } else if (r == 6) { /* discard: whole pages only */
            CHECK_EQ(uz_dev_discard(dev, off, len), 0);
            for (uint64_t p = first; p < end; p++) {
                memset(model + p * PAGE, 0, PAGE);
                state[p] = UZ_DEV_PAGE_UNWRITTEN;
            }
        }
        /* Extents of a random range, in pieces of at most 3 runs: the caller's loop. */
        uint64_t eoff = uzt_rand(&seed) % size, elen = uzt_rand(&seed) % (size - eoff) + 1;
        struct uz_dev_extent e[3], m[3];
        for (uint64_t pos = eoff; pos < eoff + elen;) {
            int n = uz_dev_extents(dev, pos, eoff + elen - pos, e, 3);
            int k = model_extents(state, pos, eoff + elen - pos, m, 3);
            CHECK_EQ(n, k);
            CHECK(n > 0);
            for (int i = 0; i < n; i++) {
                CHECK_EQ(e[i].offset, m[i].offset);
                CHECK_EQ(e[i].length, m[i].length);
                CHECK_EQ(e[i].state, m[i].state);
            }
            pos = e[n - 1].offset + e[n - 1].length;
        }
        CHECK_EQ(uz_dev_pread(dev, got, size, 0), size);
        CHECK(memcmp(got, model, size) == 0);
    }
    /* Zero and trimmed pages hold no pool memory. */
    CHECK_EQ(uz_dev_zero(dev, 0, size, 0), 0);
    struct uz_dev_stats st;
    CHECK_EQ(uz_dev_stats(dev, &st), 0);
    CHECK_EQ(st.compr_data_size, 0);
    CHECK_EQ(st.same_pages, pages);
    struct uz_dev_extent e[2];
    CHECK_EQ(uz_dev_extents(dev, 0, size, e, 2), 1);
    CHECK_EQ(e[0].state, UZ_DEV_PAGE_ZERO);
    CHECK_EQ(uz_dev_zero(dev, 0, size, UZ_DEV_ZERO_TRIM), 0);
    CHECK_EQ(uz_dev_stats(dev, &st), 0);
    CHECK_EQ(st.orig_data_size, 0);
    CHECK_EQ(uz_dev_extents(dev, 0, size, e, 2), 1);
    CHECK_EQ(e[0].state, UZ_DEV_PAGE_UNWRITTEN);
    /* Bad arguments change nothing. */
    CHECK_EQ(uz_dev_zero(dev, size - PAGE, 2 * PAGE, 0), -EINVAL);
    CHECK_EQ(uz_dev_zero(dev, 0, PAGE, 8), -EINVAL);
    CHECK_EQ(uz_dev_extents(dev, 0, size + 1, e, 2), -EINVAL);
    CHECK_EQ(uz_dev_extents(dev, 0, size, e, 0), -EINVAL);
    CHECK_EQ(uz_dev_extents(dev, 0, 0, e, 2), 0);
    /* notify_free counts every page of a discarded range, freed or not (as the kernel). */
    CHECK_EQ(uz_dev_stats(dev, &st), 0);
    uint64_t before = st.notify_free;
    CHECK_EQ(uz_dev_discard(dev, 0, 8 * PAGE), 0);
    CHECK_EQ(uz_dev_stats(dev, &st), 0);
    CHECK_EQ(st.notify_free - before, 8);
    check_pool(dev);
    free(model);
    free(got);
    free(buf);
    uz_dev_destroy(dev);
}

int main(void)
{
    sample = uzt_load_image(UZT_SAMPLE, &sample_pages);
    CHECK(sample && sample_pages >= 64);
    test_args();
    test_kinds();
    test_mem_limit();
    test_attrs();
    test_async(0);
    test_async(1);
    test_async(3);
    test_ranges(7, 3000);
    const char *const *algos = uz_comp_algorithms();
    for (int i = 0; algos[i]; i++)
        test_model(algos[i], 1000 + i, 6000, 1);
    test_model("zstd", 5, 20000, 1);
    /* Multi-page objects: every codec with runs of 4, the fast and the strong one with 2, 8, 16
     * (issue 11). */
    for (int i = 0; algos[i]; i++)
        test_model(algos[i], 2000 + i, 6000, 4);
    static const unsigned runs[] = {2, 8, 16};
    for (int k = 0; k < 3; k++) {
        test_model("lz4", 3000 + k, 8000, runs[k]);
        test_model("zstd", 3100 + k, 8000, runs[k]);
    }
    free(sample);
    printf("dev: ok\n");
    return 0;
}
