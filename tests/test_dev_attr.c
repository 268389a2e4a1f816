// SPDX-License-Identifier: MIT
/*
 * test_dev_attr.c - the attribute grammar against Linux 6.18's zram, and codec changes that never
 * stall the device. Each block is a regression test of issue 7 (each failed on the old code):
 *  - algorithm_params dict=: a FIFO without a writer is refused at once while reads go on (it used
 *    to block in open() with the device's write lock held), /dev/zero is refused (it used to be
 *    read until OOM), 1 MiB + 1 bytes is refused, a failed change leaves the old codec working;
 *  - reset: "0" is -EINVAL (kstrtou16, then 0 refused), " 1" too, and reset restores the defaults
 *    (lz4, no parameters, no dictionary, mem_limit 0);
 *  - comp_algorithm: unknown names -EINVAL, 128 bytes or more -E2BIG, lzo-rle listed and served,
 *    842 unavailable, only one trailing newline dropped;
 *  - algorithm_params: priority selects the compressor (> 0: -EINVAL, never the primary's), algo=
 *    names the configured one and does not switch, deflate.winbits, unknown keys ignored, a key
 *    without a value -EINVAL, kstrtoint's -ERANGE, quoted values; parameters carry over to a new
 *    comp_algorithm as the kernel's params[prio] do; dictionaries for lz4 and lz4hc;
 *  - mem_used_max: kstrtoul, so "0" and "0\n" but not " 0" nor "0x0";
 *  - disksize and mem_limit: memparse (leading blanks refused, trailing text ignored);
 *  - sysfs: a value longer than a page is -E2BIG, an empty write does nothing.
 * Every test runs under alarm(): one that blocks dies instead of hanging the suite.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dev_internal.h"

#define PAGE UZ_PAGE_SIZE

static unsigned char *sample;
static size_t sample_pages;
static char tmpdir[] = "/tmp/uzram-test-attr-XXXXXX";

static struct uz_dev *mkdev(uint64_t disksize, const char *algo)
{
    struct uz_dev_config cfg = {.disksize = disksize, .algorithm = algo};
    struct uz_dev *dev = NULL;
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    return dev;
}

static const char *get(struct uz_dev *dev, const char *name)
{
    static char buf[4096];
    int n = uz_dev_attr_read(dev, name, buf, sizeof(buf));
    CHECK(n > 0);
    return buf;
}

static int put(struct uz_dev *dev, const char *name, const char *value)
{
    return uz_dev_attr_write(dev, name, value);
}

/* Writes, reads back and discards a few pages: the codec in place works. */
static void check_io(struct uz_dev *dev)
{
    unsigned char got[PAGE];
    for (uint64_t i = 0; i < 8; i++)
        CHECK_EQ(uz_dev_write_page(dev, i, sample + (100 + i) * PAGE), 0);
    for (uint64_t i = 0; i < 8; i++) {
        CHECK_EQ(uz_dev_read_page(dev, i, got), 0);
        CHECK(memcmp(got, sample + (100 + i) * PAGE, PAGE) == 0);
    }
    CHECK_EQ(uz_dev_discard(dev, 0, 8 * PAGE), 0);
}

static const char *tmp_file(const char *name, const void *data, size_t len)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < (1u << 20) ? len - off : (1u << 20);
        const unsigned char *src = data ? (const unsigned char *)data + off : sample;
        CHECK(write(fd, src, n) == (ssize_t)n);
        off += n;
    }
    close(fd);
    return path;
}

/* ---- dictionaries: read with no lock held, bounded, regular files only ---- */

struct fifo_writer {
    struct uz_dev *dev;
    const char *value;
    atomic_int rc;
    atomic_bool done;
};

static void *attr_thread(void *p)
{
    struct fifo_writer *w = p;
    atomic_store(&w->rc, put(w->dev, "algorithm_params", w->value));
    atomic_store(&w->done, true);
    return NULL;
}

static void test_dict_fifo(void)
{
    struct uz_dev *dev = mkdev(1 << 20, "zstd");
    char fifo[512], value[600];
    snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
    CHECK_EQ(mkfifo(fifo, 0600), 0);
    snprintf(value, sizeof(value), "dict=%s", fifo);

    alarm(20);
    struct fifo_writer w = {.dev = dev, .value = value};
    atomic_init(&w.rc, 1);
    atomic_init(&w.done, false);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, attr_thread, &w), 0);
    /* Reads go on while the store runs (they used to wait behind the blocked open()). */
    unsigned char got[PAGE];
    for (int i = 0; i < 2000 || !atomic_load(&w.done); i++)
        CHECK_EQ(uz_dev_read_page(dev, (uint64_t)i % 256, got), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_EQ(atomic_load(&w.rc), -EINVAL);
    alarm(0);
    unlink(fifo);
    CHECK_STR(get(dev, "algorithm_params"), "algo=zstd level=1\n");
    check_io(dev);
    uz_dev_destroy(dev);
}

static void test_dict_limits(void)
{
    struct uz_dev *dev = mkdev(1 << 20, "zstd");
    char value[600];
    alarm(20);
    /* Unbounded and non-regular files. */
    CHECK_EQ(put(dev, "algorithm_params", "dict=/dev/zero"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "dict=/dev/null"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "dict=/tmp"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "dict=/nonexistent/dict"), -EINVAL);
    /* 1 MiB + 1 is refused, 1 MiB is taken. */
    snprintf(value, sizeof(value), "dict=%s", tmp_file("over", NULL, UZ_COMP_DICT_MAX + 1));
    CHECK_EQ(put(dev, "algorithm_params", value), -EINVAL);
    snprintf(value, sizeof(value), "level=3 dict=%s", tmp_file("max", NULL, UZ_COMP_DICT_MAX));
    CHECK_EQ(put(dev, "algorithm_params", value), 0);
    char want[700];
    snprintf(want, sizeof(want), "algo=zstd level=3 dict=%s/max\n", tmpdir);
    CHECK_STR(get(dev, "algorithm_params"), want);
    check_io(dev);

    /* A failed change leaves the old codec, dictionary included, in place and working. */
    CHECK_EQ(put(dev, "algorithm_params", "level=5 dict=/dev/zero"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "level=99 dict=/dev/null"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "level=99"), -EINVAL);
    CHECK_STR(get(dev, "algorithm_params"), want);
    check_io(dev);
    alarm(0);
    uz_dev_destroy(dev);
}

/* Dictionaries for lz4 and lz4hc through the device; lzo and deflate ignore one, as the
 * kernel's backends do. */
static void test_dict_lz4(void)
{
    const char *path = tmp_file("dict64k", sample, 16 * PAGE);
    char value[600];
    snprintf(value, sizeof(value), "dict=%s", path);
    const char *const algos[] = {"lz4", "lz4hc", "lzo-rle", "deflate"};
    for (size_t i = 0; i < 4; i++) {
        struct uz_dev *dev = mkdev(1 << 20, algos[i]);
        CHECK_EQ(put(dev, "algorithm_params", value), 0);
        CHECK(strstr(get(dev, "algorithm_params"), path));
        check_io(dev);
        uz_dev_destroy(dev);
    }
}

/* ---- reset ---- */

static void test_reset(void)
{
    struct uz_dev *dev = mkdev(1 << 20, NULL);
    char value[600];
    snprintf(value, sizeof(value), "level=7 dict=%s", tmp_file("d", sample, 8 * PAGE));
    CHECK_EQ(put(dev, "comp_algorithm", "zstd"), 0);
    CHECK_EQ(put(dev, "algorithm_params", value), 0);
    CHECK_EQ(put(dev, "mem_limit", "1M"), 0);
    CHECK_EQ(uz_dev_write_page(dev, 3, sample), 0);

    /* kstrtou16, then 0 is refused: nothing changes. */
    CHECK_EQ(put(dev, "reset", "0"), -EINVAL);
    CHECK_EQ(put(dev, "reset", "0\n"), -EINVAL);
    CHECK_EQ(put(dev, "reset", " 1"), -EINVAL);
    CHECK_EQ(put(dev, "reset", "1 "), -EINVAL);
    CHECK_EQ(put(dev, "reset", "-1"), -EINVAL);
    CHECK_EQ(put(dev, "reset", "yes"), -EINVAL);
    CHECK_EQ(put(dev, "reset", "65536"), -ERANGE);
    CHECK_EQ(put(dev, "reset", ""), 0); /* an empty write does nothing */
    CHECK_STR(get(dev, "disksize"), "1048576\n");
    CHECK(strstr(get(dev, "algorithm_params"), "algo=zstd level=7 dict="));

    /* Any other u16 resets, to the defaults. */
    CHECK_EQ(put(dev, "reset", "+2\n"), 0);
    CHECK_STR(get(dev, "disksize"), "0\n");
    CHECK_STR(get(dev, "comp_algorithm"), "lzo-rle lzo [lz4] lz4hc zstd deflate \n");
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=1\n");
    CHECK_STR(get(dev, "mem_limit"), "0\n");
    CHECK_EQ(put(dev, "disksize", "1M"), 0);
    check_io(dev);
    CHECK_EQ(put(dev, "reset", "65535"), 0);
    uz_dev_destroy(dev);
}

/* ---- comp_algorithm ---- */

static void test_comp_algorithm(void)
{
    struct uz_dev *dev = mkdev(1 << 20, NULL);
    char name[200];
    CHECK_EQ(put(dev, "comp_algorithm", "nonesuch"), -EINVAL);
    CHECK_EQ(put(dev, "comp_algorithm", "842"), -EINVAL);
    CHECK_EQ(put(dev, "comp_algorithm", "LZ4"), -EINVAL);
    CHECK_EQ(put(dev, "comp_algorithm", " lz4"), -EINVAL);
    CHECK_EQ(put(dev, "comp_algorithm", "lz4 "), -EINVAL);
    CHECK_EQ(put(dev, "comp_algorithm", "lz4\n\n"), -EINVAL);
    CHECK_EQ(put(dev, "comp_algorithm", "\n"), -EINVAL);
    memset(name, 'a', 127);
    name[127] = 0;
    CHECK_EQ(put(dev, "comp_algorithm", name), -EINVAL);
    memset(name, 'a', 128);
    name[128] = 0;
    CHECK_EQ(put(dev, "comp_algorithm", name), -E2BIG);
    memset(name, 'z', 127); /* 128 bytes with the newline: still too long */
    name[127] = '\n';
    name[128] = 0;
    CHECK_EQ(put(dev, "comp_algorithm", name), -E2BIG);
    CHECK_STR(get(dev, "comp_algorithm"), "lzo-rle lzo [lz4] lz4hc zstd deflate \n");

    /* lzo-rle, the kernel's default, is served by lzo1x-1. */
    CHECK_EQ(put(dev, "comp_algorithm", "lzo-rle\n"), 0);
    CHECK_STR(get(dev, "comp_algorithm"), "[lzo-rle] lzo lz4 lz4hc zstd deflate \n");
    CHECK_STR(get(dev, "algorithm_params"), "algo=lzo-rle level=0\n");
    check_io(dev);
    CHECK_EQ(put(dev, "comp_algorithm", "lzo"), 0);
    CHECK_STR(get(dev, "comp_algorithm"), "lzo-rle [lzo] lz4 lz4hc zstd deflate \n");

    /* Unknown names are refused even when pages are stored; known ones are then busy. */
    CHECK_EQ(uz_dev_write_page(dev, 0, sample), 0);
    CHECK_EQ(put(dev, "comp_algorithm", "nonesuch"), -EINVAL);
    CHECK_EQ(put(dev, "comp_algorithm", "zstd"), -EBUSY);
    CHECK_EQ(put(dev, "algorithm_params", "level=1"), -EBUSY);
    uz_dev_destroy(dev);
}

/* ---- algorithm_params ---- */

static void test_algorithm_params(void)
{
    struct uz_dev *dev = mkdev(1 << 20, NULL);
    /* priority: 0 is the primary; 1..3 (secondaries) do not exist; never the primary's. */
    CHECK_EQ(put(dev, "algorithm_params", "priority=1 level=3"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "priority=3 level=3"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "priority=4 level=3"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "priority=-1 level=3"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "priority=x"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "priority=99999999999"), -ERANGE);
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=1\n");
    CHECK_EQ(put(dev, "algorithm_params", "priority=0 level=3"), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=3\n");

    /* algo= names the configured compressor, and wins over priority=; it never switches. */
    CHECK_EQ(put(dev, "algorithm_params", "algo=zstd level=3"), -EINVAL);
    CHECK_STR(get(dev, "comp_algorithm"), "lzo-rle lzo [lz4] lz4hc zstd deflate \n");
    CHECK_EQ(put(dev, "algorithm_params", "algo=lz4 level=4"), 0);
    CHECK_EQ(put(dev, "algorithm_params", "priority=2 algo=lz4 level=5\n"), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=5\n");

    /* Unknown keys are ignored; each write sets every parameter (level back to default). */
    CHECK_EQ(put(dev, "algorithm_params", "colour=blue"), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=1\n");
    /* A key without a value, an empty value, '=' first, kstrtoint's errors. */
    CHECK_EQ(put(dev, "algorithm_params", "level"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "level="), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "level=2 colour"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "=2"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "level=3x"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "level= 3"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "level=2147483648"), -ERANGE);
    CHECK_EQ(put(dev, "algorithm_params", "  level=+2\t\n"), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=2\n");
    CHECK_EQ(put(dev, "algorithm_params", "\"level=3\""), 0); /* next_arg's quotes */
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=3\n");
    CHECK_EQ(put(dev, "algorithm_params", "level=\"4\""), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=4\n");

    /* A quoted dictionary path with a blank in it. */
    char dir[600], value[800];
    snprintf(dir, sizeof(dir), "%s/a dir", tmpdir);
    CHECK_EQ(mkdir(dir, 0700), 0);
    char path[700];
    snprintf(path, sizeof(path), "%s/dict", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, sample, 4 * PAGE) == 4 * PAGE);
    close(fd);
    snprintf(value, sizeof(value), "dict=\"%s\" level=2", path);
    CHECK_EQ(put(dev, "algorithm_params", value), 0);
    CHECK(strstr(get(dev, "algorithm_params"), "a dir/dict"));
    check_io(dev);
    unlink(path);
    rmdir(dir);
    CHECK_EQ(put(dev, "algorithm_params", "level=2"), 0); /* and the dictionary is dropped */
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4 level=2\n");

    /* deflate.winbits: zlib's windowBits, -15..-9 raw and 9..15 zlib-wrapped. */
    CHECK_EQ(put(dev, "comp_algorithm", "deflate"), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=deflate level=2\n"); /* carried over */
    CHECK_EQ(put(dev, "algorithm_params", "deflate.winbits=12 level=6"), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=deflate level=6 deflate.winbits=12\n");
    check_io(dev);
    CHECK_EQ(put(dev, "algorithm_params", "deflate.winbits=-9"), 0);
    check_io(dev);
    CHECK_EQ(put(dev, "algorithm_params", "deflate.winbits=8"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "deflate.winbits=16"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "deflate.winbits=0"), -EINVAL);
    CHECK_EQ(put(dev, "algorithm_params", "deflate.winbits=abc"), -EINVAL);
    CHECK_STR(get(dev, "algorithm_params"), "algo=deflate level=1 deflate.winbits=-9\n");

    /* Parameters carry over to a new algorithm (the kernel's params[prio]); one it cannot take
     * refuses the change and leaves the old codec. */
    CHECK_EQ(put(dev, "comp_algorithm", "lz4hc"), 0);
    CHECK_STR(get(dev, "algorithm_params"), "algo=lz4hc level=9 deflate.winbits=-9\n");
    CHECK_EQ(put(dev, "comp_algorithm", "zstd"), 0);
    CHECK_EQ(put(dev, "algorithm_params", "level=22"), 0);
    CHECK_EQ(put(dev, "comp_algorithm", "lz4hc"), -EINVAL);
    CHECK_STR(get(dev, "algorithm_params"), "algo=zstd level=22\n");
    CHECK_EQ(put(dev, "comp_algorithm", "lzo"), 0); /* lzo has no levels: ignored */
    check_io(dev);
    uz_dev_destroy(dev);
}

/* ---- mem_used_max, mem_limit, disksize, sysfs limits ---- */

static void test_numbers(void)
{
    struct uz_dev *dev = mkdev(1 << 20, NULL);
    const char *ok[] = {"0", "0\n", "+0", "00", "000\n"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        CHECK_EQ(put(dev, "mem_used_max", ok[i]), 0);
    const char *bad[] = {" 0", "0 ", "0x0", "-0", "1", "0\n\n", "0k", "zero", "\n", "+"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ(put(dev, "mem_used_max", bad[i]), -EINVAL);

    /* memparse: no leading blanks, trailing text ignored, 0x and 0 prefixes, K..E suffixes. */
    CHECK_EQ(put(dev, "mem_limit", " 1M"), -EINVAL);
    CHECK_EQ(put(dev, "mem_limit", "M"), -EINVAL);
    CHECK_EQ(put(dev, "mem_limit", "1M of memory"), 0);
    CHECK_STR(get(dev, "mem_limit"), "1048576\n");
    CHECK_EQ(put(dev, "mem_limit", "0x2000"), 0);
    CHECK_STR(get(dev, "mem_limit"), "8192\n");
    CHECK_EQ(put(dev, "mem_limit", "010k"), 0); /* octal */
    CHECK_STR(get(dev, "mem_limit"), "8192\n");
    CHECK_EQ(put(dev, "mem_limit", "1g"), 0);
    CHECK_STR(get(dev, "mem_limit"), "1073741824\n");
    CHECK_EQ(put(dev, "mem_limit", "1"), 0); /* PAGE_ALIGN */
    CHECK_STR(get(dev, "mem_limit"), "4096\n");
    CHECK_EQ(put(dev, "mem_limit", "0"), 0);

    CHECK_EQ(put(dev, "reset", "1"), 0);
    CHECK_EQ(put(dev, "disksize", " 1M"), -EINVAL);
    CHECK_EQ(put(dev, "disksize", "junk"), -EINVAL);
    CHECK_EQ(put(dev, "disksize", "0x100000 bytes"), 0);
    CHECK_STR(get(dev, "disksize"), "1048576\n");
    CHECK_EQ(put(dev, "disksize", "2M"), -EBUSY);
    CHECK_EQ(put(dev, "disksize", "0"), -EINVAL); /* checked before busy, as in zram */

    /* sysfs: at most a page per write; an empty write does nothing. */
    char *big = malloc(PAGE + 2);
    CHECK(big);
    memset(big, ' ', PAGE + 1);
    big[0] = '0';
    big[PAGE + 1] = 0;
    CHECK_EQ(put(dev, "mem_used_max", big), -E2BIG);
    big[PAGE] = 0;
    CHECK_EQ(put(dev, "mem_used_max", big), -EINVAL); /* a page: parsed, and refused */
    free(big);
    CHECK_EQ(put(dev, "disksize", ""), 0);
    CHECK_EQ(put(dev, "comp_algorithm", ""), 0);
    CHECK_EQ(put(dev, "nonesuch", ""), -ENOENT);
    CHECK_EQ(put(dev, "mm_stat", ""), -EACCES);
    check_io(dev);
    uz_dev_destroy(dev);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, SIG_DFL);
    alarm(120);
    sample = uzt_load_image(UZT_SAMPLE, &sample_pages);
    CHECK(sample && sample_pages >= 256);
    CHECK(mkdtemp(tmpdir));

    /* One test by name (to check each against an old build), or all. */
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"dict_fifo", test_dict_fifo},
        {"dict_limits", test_dict_limits},
        {"dict_lz4", test_dict_lz4},
        {"reset", test_reset},
        {"comp_algorithm", test_comp_algorithm},
        {"algorithm_params", test_algorithm_params},
        {"numbers", test_numbers},
    };
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
        if (argc < 2 || !strcmp(argv[1], tests[i].name))
            tests[i].fn();

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    CHECK_EQ(system(cmd), 0);
    free(sample);
    printf("dev_attr: ok\n");
    return 0;
}
