// SPDX-License-Identifier: MIT
/*
 * test_comp.c - the codec interface against the real libraries.
 *
 * Round trips every codec at several levels over every page of the corpus images (a strided
 * subset for the slow codecs on the 64 MiB ones), plus random, incompressible, zero, tiny and
 * large inputs; lz4, lz4hc and zstd dictionaries from memory and from a file, and the file
 * reader's limits (regular files of at most 1 MiB, a FIFO refused at once); parameters (deflate's
 * window bits, what each codec ignores); corrupt input (random bytes,
 * every truncation, bit flips) and short buffers, always with input and output placed against a
 * PROT_NONE page so that a read past srclen or a write past dstcap faults even inside the
 * (uninstrumented) codec libraries; argument errors; and concurrency: threads sharing one codec,
 * and a page mutated while it is being compressed.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zdict.h>
#include <lz4.h>

#include <uzram/comp.h>

#define PAGE UZ_PAGE_SIZE

static const char *const algs[] = {"lzo-rle", "lzo", "lz4", "lz4hc", "zstd", "deflate"};
#define NALGS (sizeof(algs) / sizeof(algs[0]))

/* The codecs that take a dictionary. */
static bool takes_dict(const char *name)
{
    return !strcmp(name, "lz4") || !strcmp(name, "lz4hc") || !strcmp(name, "zstd");
}

/* Codec configurations the round trips run, and how many pages of an image each sees at most
 * (0: all; otherwise a strided subset) so that the slow levels do not dominate the run time. */
static const struct {
    const char *name;
    int level;
    size_t max_pages;
} cases[] = {
    {"lzo", 0, 0},       {"lz4", 0, 0},       {"lz4", 3, 1000},   {"lz4", 65537, 1000},
    {"lz4hc", 0, 2000},  {"lz4hc", 1, 1000},  {"lz4hc", 12, 200}, {"zstd", 0, 0},
    {"zstd", -7, 1000},  {"zstd", 3, 1000},   {"zstd", 19, 64},   {"deflate", 0, 2000},
    {"deflate", 6, 500}, {"deflate", 9, 200},
};

/* ---- fenced buffers: `room` usable bytes that end exactly at a PROT_NONE page ---- */

struct fence {
    uint8_t *end; /* first byte of the PROT_NONE page */
    size_t room;
};

static struct fence fence_new(size_t room)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t len = (room + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
    uint8_t *p =
        mmap(NULL, len + (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    CHECK(mprotect(p + len, (size_t)pg, PROT_NONE) == 0);
    return (struct fence){p + len, len};
}

/* A buffer of n bytes whose last byte is the last accessible one. */
static uint8_t *fence_at(const struct fence *f, size_t n)
{
    CHECK(n <= f->room);
    return f->end - n;
}

static struct fence fin, fout; /* input and output fences */

/* ---- helpers ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct uz_comp *comp_new(const char *name, int level)
{
    struct uz_comp *c;
    int rc = uz_comp_create(name, level, &c);
    if (rc)
        fprintf(stderr, "uz_comp_create(%s, %d) = %d\n", name, level, rc);
    CHECK_EQ(rc, 0);
    return c;
}

/* A codec with a raw-content dictionary (for those that take one). */
static struct uz_comp *comp_dict_new(const char *name, int level, const void *dict, size_t len)
{
    struct uz_comp *c = comp_new(name, level);
    if (takes_dict(name))
        CHECK_EQ(uz_comp_set_dict(c, dict, len), 0);
    return c;
}

static struct uz_comp_stream *stream_new(struct uz_comp *c)
{
    struct uz_comp_stream *s;
    CHECK_EQ(uz_comp_stream_create(c, &s), 0);
    CHECK(uz_comp_stream_buf_size(s) >= uz_comp_bound(c, PAGE));
    CHECK(uz_comp_stream_buf_size(s) >= PAGE);
    CHECK(((uintptr_t)uz_comp_stream_buf(s) & 63) == 0);
    return s;
}

static void fill_random(uint8_t *p, size_t n, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(uzt_rand(seed) >> 24);
}

/* Compresses `len` bytes through the stream buffer and decompresses them back.
 * @return : the compressed length. With `thorough`, also checks the exact-fit and one-short
 * destinations, a fenced input and a short output, all against the fence. */
static size_t check_round_trip(struct uz_comp *c, struct uz_comp_stream *s, const uint8_t *src,
                               size_t len, bool thorough)
{
    static uint8_t out[PAGE];
    uint8_t *buf = uz_comp_stream_buf(s);
    ssize_t n = uz_comp_compress(s, src, len, buf, uz_comp_stream_buf_size(s));
    CHECK(n > 0);
    CHECK((size_t)n <= uz_comp_bound(c, len));
    CHECK((size_t)n <= uz_comp_stream_buf_size(s));
    memset(out, 0xa5, len);
    CHECK_EQ(uz_comp_decompress(s, buf, (size_t)n, out, len), len);
    CHECK(memcmp(out, src, len) == 0);
    if (!thorough)
        return (size_t)n;

    /* Exactly n bytes of room: liblz4 keeps a safety margin in its limited-output mode, so it
     * may refuse; whatever fits must be the same stream. */
    uint8_t *d = fence_at(&fout, (size_t)n);
    ssize_t m = uz_comp_compress(s, src, len, d, (size_t)n);
    CHECK(m == n || m == -E2BIG);
    if (m == n)
        CHECK(memcmp(d, buf, (size_t)n) == 0);
    /* One byte short never fits, and never writes past dstcap (it would fault). */
    d = fence_at(&fout, (size_t)n - 1);
    CHECK_EQ(uz_comp_compress(s, src, len, d, (size_t)n - 1), -E2BIG);
    d = fence_at(&fout, (size_t)n / 2);
    CHECK_EQ(uz_comp_compress(s, src, len, d, (size_t)n / 2), -E2BIG);

    /* The compressed input ends at the fence, the output too. */
    uint8_t *in = fence_at(&fin, (size_t)n);
    memcpy(in, buf, (size_t)n);
    d = fence_at(&fout, len);
    CHECK_EQ(uz_comp_decompress(s, in, (size_t)n, d, len), len);
    CHECK(memcmp(d, src, len) == 0);
    /* Output that does not fit is corrupt input. */
    size_t shorts[] = {len - 1, len / 2, 1, 0};
    for (size_t i = 0; i < sizeof(shorts) / sizeof(shorts[0]); i++) {
        if (shorts[i] >= len)
            continue;
        d = fence_at(&fout, shorts[i]);
        CHECK_EQ(uz_comp_decompress(s, in, (size_t)n, d, shorts[i]), -EBADMSG);
    }
    return (size_t)n;
}

/* ---- argument errors, names, levels ---- */

static void test_api(void)
{
    const char *const *names = uz_comp_algorithms();
    for (size_t i = 0; i < NALGS; i++)
        CHECK_STR(names[i], algs[i]);
    CHECK(names[NALGS] == NULL);

    struct uz_comp *c = NULL;
    CHECK_EQ(uz_comp_create("lz5", 0, &c), -ENOENT);
    CHECK(c == NULL);
    CHECK_EQ(uz_comp_create("", 0, &c), -ENOENT);
    CHECK_EQ(uz_comp_create("LZ4", 0, &c), -ENOENT);
    CHECK_EQ(uz_comp_create("842", 0, &c), -ENOENT);
    CHECK_EQ(uz_comp_create("lz4", 0, NULL), -EINVAL);

    /* lzo-rle, the kernel's default name, is lzo1x-1: each decodes the other's output. */
    {
        struct uz_comp *rle = comp_new("lzo-rle", 0), *lzo = comp_new("lzo", 0);
        CHECK_STR(uz_comp_name(rle), "lzo-rle");
        CHECK_EQ(uz_comp_create("lzo-rle", 1, &c), -EINVAL);
        struct uz_comp_stream *sr = stream_new(rle), *sl = stream_new(lzo);
        uint8_t pg[PAGE], back[PAGE];
        for (size_t i = 0; i < PAGE; i++)
            pg[i] = (uint8_t)(i % 251 < 100 ? 'a' : i);
        ssize_t n =
            uz_comp_compress(sr, pg, PAGE, uz_comp_stream_buf(sr), uz_comp_stream_buf_size(sr));
        CHECK(n > 0);
        CHECK_EQ(uz_comp_decompress(sl, uz_comp_stream_buf(sr), (size_t)n, back, PAGE), PAGE);
        CHECK(memcmp(pg, back, PAGE) == 0);
        uz_comp_stream_destroy(sr);
        uz_comp_stream_destroy(sl);
        uz_comp_destroy(rle);
        uz_comp_destroy(lzo);
    }

    const struct {
        const char *name;
        int def, lo, hi;
    } lv[] = {
        {"lzo-rle", 0, 0, 0}, {"lzo", 0, 0, 0},    {"lz4", 1, 1, 65537},
        {"lz4hc", 9, 1, 12},  {"zstd", 1, -7, 22}, {"deflate", 1, 1, 9},
    };
    for (size_t i = 0; i < sizeof(lv) / sizeof(lv[0]); i++) {
        c = comp_new(lv[i].name, 0);
        CHECK_STR(uz_comp_name(c), lv[i].name);
        CHECK_EQ(uz_comp_level(c), lv[i].def);
        uz_comp_destroy(c);
        if (lv[i].lo) {
            c = comp_new(lv[i].name, lv[i].lo);
            CHECK_EQ(uz_comp_level(c), lv[i].lo);
            uz_comp_destroy(c);
        }
        c = comp_new(lv[i].name, lv[i].hi);
        CHECK_EQ(uz_comp_level(c), lv[i].hi);
        uz_comp_destroy(c);
        CHECK_EQ(uz_comp_create(lv[i].name, lv[i].hi + 1, &c), -EINVAL);
        if (lv[i].lo - 1 != 0) /* 0 is always the default */
            CHECK_EQ(uz_comp_create(lv[i].name, lv[i].lo - 1, &c), -EINVAL);
        CHECK_EQ(uz_comp_create(lv[i].name, -1000000, &c), -EINVAL);
        CHECK_EQ(uz_comp_create(lv[i].name, 1000000, &c), -EINVAL);
    }
    c = comp_new(NULL, 0);
    CHECK_STR(uz_comp_name(c), "lz4");
    CHECK_EQ(uz_comp_level(c), 1);
    CHECK_EQ(uz_comp_bound(c, PAGE), LZ4_compressBound(PAGE));
    CHECK_EQ(uz_comp_stream_create(c, NULL), -EINVAL);
    struct uz_comp_stream *s = stream_new(c);
    uint8_t page[PAGE] = {1}, out[PAGE];
    uint8_t *buf = uz_comp_stream_buf(s);
    size_t cap = uz_comp_stream_buf_size(s);
    CHECK_EQ(uz_comp_compress(s, page, 0, buf, cap), -EINVAL);
    CHECK_EQ(uz_comp_compress(s, NULL, PAGE, buf, cap), -EINVAL);
    CHECK_EQ(uz_comp_compress(s, page, PAGE, NULL, cap), -EINVAL);
    CHECK_EQ(uz_comp_compress(NULL, page, PAGE, buf, cap), -EINVAL);
    /* Too large for liblz4's int sizes: refused before anything is read. */
    CHECK_EQ(uz_comp_compress(s, page, (size_t)LZ4_MAX_INPUT_SIZE + 1, buf, cap), -EINVAL);
    ssize_t n = uz_comp_compress(s, page, PAGE, buf, cap);
    CHECK(n > 0);
    CHECK_EQ(uz_comp_decompress(s, buf, 0, out, PAGE), -EINVAL);
    CHECK_EQ(uz_comp_decompress(s, NULL, (size_t)n, out, PAGE), -EINVAL);
    CHECK_EQ(uz_comp_decompress(s, buf, (size_t)n, NULL, PAGE), -EINVAL);
    CHECK_EQ(uz_comp_decompress(NULL, buf, (size_t)n, out, PAGE), -EINVAL);
    CHECK_EQ(uz_comp_decompress(s, buf, (size_t)n, out, PAGE), PAGE);
    uz_comp_stream_destroy(s);
    uz_comp_stream_destroy(NULL);
    uz_comp_destroy(c);
    uz_comp_destroy(NULL);

    c = comp_new("deflate", 0);
    s = stream_new(c);
    CHECK_EQ(uz_comp_compress(s, page, (size_t)UINT32_MAX + 1, out, PAGE), -EINVAL);
    uz_comp_stream_destroy(s);
    uz_comp_destroy(c);

    /* Dictionaries: lz4, lz4hc and zstd take them, the others refuse. */
    uint8_t dict[64] = {0};
    for (size_t i = 0; i < NALGS; i++) {
        if (takes_dict(algs[i]))
            continue;
        c = comp_new(algs[i], 0);
        CHECK_EQ(uz_comp_set_dict(c, dict, sizeof(dict)), -EOPNOTSUPP);
        CHECK_EQ(uz_comp_load_dict(c, "/nonexistent"), -EOPNOTSUPP);
        uz_comp_destroy(c);
    }
    for (size_t i = 0; i < NALGS; i++) {
        if (!takes_dict(algs[i]))
            continue;
        c = comp_new(algs[i], 0);
        CHECK_EQ(uz_comp_set_dict(c, dict, 0), -EINVAL);
        CHECK_EQ(uz_comp_set_dict(c, NULL, 10), -EINVAL);
        CHECK_EQ(uz_comp_set_dict(c, dict, UZ_COMP_DICT_MAX + 1), -EINVAL);
        CHECK_EQ(uz_comp_load_dict(c, "/nonexistent/dict"), -ENOENT);
        CHECK_EQ(uz_comp_load_dict(c, "/dev/null"), -EINVAL); /* not a regular file */
        if (!strcmp(algs[i], "zstd")) {
            /* A zstd dictionary header with garbage tables is unusable. */
            uint8_t bad[256];
            uint64_t seed = 99;
            fill_random(bad, sizeof(bad), &seed);
            memcpy(bad, "\x37\xa4\x30\xec", 4);
            CHECK_EQ(uz_comp_set_dict(c, bad, sizeof(bad)), -EINVAL);
        }
        CHECK_EQ(uz_comp_set_dict(c, dict, sizeof(dict)), 0);
        CHECK_EQ(uz_comp_set_dict(c, dict, sizeof(dict)), 0); /* replaces */
        struct uz_comp_params p;
        uz_comp_get_params(c, &p);
        CHECK(p.dict && p.dict_len == sizeof(dict) && memcmp(p.dict, dict, sizeof(dict)) == 0);
        s = stream_new(c);
        CHECK_EQ(uz_comp_set_dict(c, dict, sizeof(dict)), -EBUSY);
        CHECK_EQ(uz_comp_load_dict(c, "/nonexistent/dict"), -EBUSY);
        struct uz_comp_stream *s2 = stream_new(c);
        uz_comp_stream_destroy(s);
        CHECK_EQ(uz_comp_set_dict(c, dict, sizeof(dict)), -EBUSY);
        uz_comp_stream_destroy(s2);
        CHECK_EQ(uz_comp_set_dict(c, dict, sizeof(dict)), 0);
        /* A 1-byte dictionary (too short for lz4 to hash) still round-trips. */
        CHECK_EQ(uz_comp_set_dict(c, dict, 1), 0);
        s = stream_new(c);
        check_round_trip(c, s, page, PAGE, true);
        uz_comp_stream_destroy(s);
        uz_comp_destroy(c);
    }
}

/* ---- the dictionary file reader: regular files of 1 byte to 1 MiB, never blocking ---- */

static void write_file_of(const char *path, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    uint8_t *b = calloc(1, len ? len : 1);
    CHECK(b);
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(i * 7 + i / 4096);
    CHECK(write(fd, b, len) == (ssize_t)len);
    free(b);
    close(fd);
}

static void test_dict_file(void)
{
    char dir[] = "/tmp/uzram-test-dictfile-XXXXXX";
    CHECK(mkdtemp(dir));
    char path[256];
    void *d = NULL;
    size_t len = 0;

    /* A FIFO without a writer: refused at once (it used to block in open() forever). */
    snprintf(path, sizeof(path), "%s/fifo", dir);
    CHECK_EQ(mkfifo(path, 0600), 0);
    alarm(10);
    CHECK_EQ(uz_comp_dict_read(path, &d, &len), -EINVAL);
    struct uz_comp *c = comp_new("zstd", 0);
    CHECK_EQ(uz_comp_load_dict(c, path), -EINVAL);
    alarm(0);
    unlink(path);

    /* Devices (unbounded /dev/zero used to grow until OOM), directories, empty files. */
    alarm(10);
    CHECK_EQ(uz_comp_dict_read("/dev/zero", &d, &len), -EINVAL);
    CHECK_EQ(uz_comp_dict_read("/dev/null", &d, &len), -EINVAL);
    alarm(0);
    CHECK_EQ(uz_comp_dict_read(dir, &d, &len), -EINVAL);
    CHECK_EQ(uz_comp_dict_read("/nonexistent/dict", &d, &len), -ENOENT);
    snprintf(path, sizeof(path), "%s/empty", dir);
    write_file_of(path, 0);
    CHECK_EQ(uz_comp_dict_read(path, &d, &len), -EINVAL);
    unlink(path);
    CHECK_EQ(uz_comp_dict_read(NULL, &d, &len), -EINVAL);

    /* The size bound: 1 MiB is read, 1 MiB + 1 is refused. */
    snprintf(path, sizeof(path), "%s/max", dir);
    write_file_of(path, UZ_COMP_DICT_MAX);
    CHECK_EQ(uz_comp_dict_read(path, &d, &len), 0);
    CHECK_EQ(len, UZ_COMP_DICT_MAX);
    CHECK_EQ(((uint8_t *)d)[UZ_COMP_DICT_MAX - 1], (uint8_t)((UZ_COMP_DICT_MAX - 1) * 7 + 255));
    free(d);
    CHECK_EQ(uz_comp_load_dict(c, path), 0);
    unlink(path);
    snprintf(path, sizeof(path), "%s/over", dir);
    write_file_of(path, UZ_COMP_DICT_MAX + 1);
    CHECK_EQ(uz_comp_dict_read(path, &d, &len), -EFBIG);
    CHECK_EQ(uz_comp_load_dict(c, path), -EFBIG);
    unlink(path);
    uz_comp_destroy(c);

    /* A small file, for lz4 and lz4hc too. */
    snprintf(path, sizeof(path), "%s/small", dir);
    write_file_of(path, 100);
    CHECK_EQ(uz_comp_dict_read(path, &d, &len), 0);
    CHECK_EQ(len, 100);
    free(d);
    const char *dnames[] = {"lz4", "lz4hc"};
    for (size_t i = 0; i < 2; i++) {
        c = comp_new(dnames[i], 0);
        CHECK_EQ(uz_comp_load_dict(c, path), 0);
        uz_comp_destroy(c);
    }
    unlink(path);
    CHECK_EQ(rmdir(dir), 0);
}

/* ---- parameters: deflate's window bits; what each codec ignores ---- */

static void test_params(const uint8_t *sample)
{
    struct uz_comp *c;
    uint8_t dict[256];
    memcpy(dict, sample + 10 * PAGE, sizeof(dict));

    /* Window bits as the kernel's zlib_deflateInit2() takes them. */
    const int bad[] = {-16, -8, -1, 1, 8, 16, 1000, -1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct uz_comp_params p = {.deflate_winbits = bad[i]};
        CHECK_EQ(uz_comp_create_params("deflate", &p, &c), -EINVAL);
        CHECK(c == NULL);
    }
    const int good[] = {-15, -12, -9, 9, 12, 15};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct uz_comp_params p = {.level = 6, .deflate_winbits = good[i]};
        CHECK_EQ(uz_comp_create_params("deflate", &p, &c), 0);
        CHECK_EQ(uz_comp_level(c), 6);
        struct uz_comp_stream *s = stream_new(c);
        for (size_t pg = 0; pg < 64; pg++)
            check_round_trip(c, s, sample + pg * PAGE, PAGE, pg % 8 == 0);
        /* Positive: the zlib format (CMF byte: method 8, window 2^(bits-8) << 4). */
        ssize_t n =
            uz_comp_compress(s, sample, PAGE, uz_comp_stream_buf(s), uz_comp_stream_buf_size(s));
        CHECK(n > 2);
        uint8_t cmf = ((uint8_t *)uz_comp_stream_buf(s))[0];
        if (good[i] > 0)
            CHECK(cmf == (uint8_t)(((good[i] - 8) << 4) | 8));
        uz_comp_stream_destroy(s);
        struct uz_comp_params got;
        uz_comp_get_params(c, &got);
        CHECK_EQ(got.deflate_winbits, good[i]);
        CHECK_EQ(got.level, 6);
        uz_comp_destroy(c);
    }
    /* The zlib format does not decode as raw deflate. */
    {
        struct uz_comp_params pz = {.deflate_winbits = 15};
        struct uz_comp *z, *raw = comp_new("deflate", 0);
        CHECK_EQ(uz_comp_create_params("deflate", &pz, &z), 0);
        struct uz_comp_stream *sz = stream_new(z), *sr = stream_new(raw);
        uint8_t back[PAGE];
        ssize_t n =
            uz_comp_compress(sz, sample, PAGE, uz_comp_stream_buf(sz), uz_comp_stream_buf_size(sz));
        CHECK(n > 0);
        CHECK(uz_comp_decompress(sr, uz_comp_stream_buf(sz), (size_t)n, back, PAGE) != PAGE ||
              memcmp(back, sample, PAGE) != 0);
        uz_comp_stream_destroy(sz);
        uz_comp_stream_destroy(sr);
        uz_comp_destroy(z);
        uz_comp_destroy(raw);
    }

    /* What a codec has no use for is ignored, and still reported back (it carries over). */
    for (size_t a = 0; a < NALGS; a++) {
        struct uz_comp_params p = {.deflate_winbits = 12, .dict = dict, .dict_len = sizeof(dict)};
        bool levels = strcmp(algs[a], "lzo") && strcmp(algs[a], "lzo-rle");
        p.level = levels ? 0 : 5;
        CHECK_EQ(uz_comp_create_params(algs[a], &p, &c), 0);
        struct uz_comp_params got;
        uz_comp_get_params(c, &got);
        CHECK_EQ(got.level, p.level);
        CHECK_EQ(got.deflate_winbits, 12);
        CHECK(got.dict && got.dict_len == sizeof(dict) &&
              memcmp(got.dict, dict, sizeof(dict)) == 0);
        struct uz_comp_stream *s = stream_new(c);
        for (size_t pg = 0; pg < 32; pg++)
            check_round_trip(c, s, sample + pg * PAGE, PAGE, pg % 8 == 0);
        uz_comp_stream_destroy(s);
        uz_comp_destroy(c);
    }
    /* Levels out of range, bad dictionaries, unknown names. */
    struct uz_comp_params p = {.level = 13};
    CHECK_EQ(uz_comp_create_params("lz4hc", &p, &c), -EINVAL);
    p = (struct uz_comp_params){.dict = dict, .dict_len = 0};
    CHECK_EQ(uz_comp_create_params("zstd", &p, &c), -EINVAL);
    p = (struct uz_comp_params){.dict = dict, .dict_len = UZ_COMP_DICT_MAX + 1};
    CHECK_EQ(uz_comp_create_params("lz4", &p, &c), -EINVAL);
    CHECK_EQ(uz_comp_create_params("brotli", &p, &c), -ENOENT);
    CHECK_EQ(uz_comp_create_params("lz4", &p, NULL), -EINVAL);
    CHECK_EQ(uz_comp_create_params(NULL, NULL, &c), 0);
    CHECK_STR(uz_comp_name(c), "lz4");
    uz_comp_destroy(c);
}

/* ---- round trips over images ---- */

static void test_image(const char *label, const uint8_t *img, size_t pages)
{
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct uz_comp *c = comp_new(cases[k].name, cases[k].level);
        struct uz_comp_stream *s = stream_new(c);
        size_t max = cases[k].max_pages;
        size_t step = max && pages > max ? pages / max : 1;
        size_t total = 0, n = 0;
        double t0 = now();
        for (size_t i = 0; i < pages; i += step, n++) {
            /* Exact-fit, short-buffer and fenced checks on every 8th page checked. */
            bool thorough = n % 8 == 0;
            total += check_round_trip(c, s, img + i * PAGE, PAGE, thorough);
        }
        printf("%s %s level %d: %zu pages, ratio %.2f %.2f s\n", label, cases[k].name,
               uz_comp_level(c), n, (double)n * PAGE / (double)total, now() - t0);
        uz_comp_stream_destroy(s);
        uz_comp_destroy(c);
    }
}

/* ---- synthetic inputs: random, incompressible, zero, tiny, large ---- */

static void test_synthetic(const uint8_t *sample)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    const size_t sizes[] = {1,   2,    3,    4,    15,   16,    17,    64,      255,
                            256, 1000, 4095, 4096, 4097, 65536, 65537, 1u << 20};
    size_t maxlen = 1u << 20;
    uint8_t *src = malloc(maxlen), *out = malloc(maxlen);
    CHECK(src && out);
    for (size_t a = 0; a < NALGS; a++) {
        struct uz_comp *c = comp_new(algs[a], 0);
        struct uz_comp_stream *s = stream_new(c);
        size_t bcap = uz_comp_bound(c, maxlen);
        uint8_t *cbuf = malloc(bcap);
        CHECK(cbuf);

        /* Zero page: tiny. Incompressible page: fits the stream buffer, not a page. */
        uint8_t page[PAGE];
        memset(page, 0, PAGE);
        CHECK(check_round_trip(c, s, page, PAGE, true) < 64);
        fill_random(page, PAGE, &seed);
        CHECK(check_round_trip(c, s, page, PAGE, true) >= PAGE);
        CHECK_EQ(uz_comp_compress(s, page, PAGE, fence_at(&fout, PAGE), PAGE), -E2BIG);
        /* Random data at every level of compressibility: a fraction of random bytes. */
        for (unsigned frac = 1; frac < 16; frac++) {
            for (size_t i = 0; i < PAGE; i++)
                page[i] = (uzt_rand(&seed) & 15) < frac ? (uint8_t)uzt_rand(&seed) : 'a';
            check_round_trip(c, s, page, PAGE, true);
        }
        /* Every 1-byte input. */
        for (unsigned v = 0; v < 256; v++) {
            page[0] = (uint8_t)v;
            check_round_trip(c, s, page, 1, true);
        }

        /* Sizes other than a page, with random, zero and text-like content. */
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            size_t len = sizes[i];
            CHECK(uz_comp_bound(c, len) >= len);
            for (int kind = 0; kind < 3; kind++) {
                if (kind == 0)
                    fill_random(src, len, &seed);
                else if (kind == 1)
                    memset(src, 0, len);
                else
                    for (size_t j = 0; j < len; j += PAGE)
                        memcpy(src + j, sample + (j / PAGE % 512) * PAGE,
                               len - j < PAGE ? len - j : PAGE);
                ssize_t n = uz_comp_compress(s, src, len, cbuf, uz_comp_bound(c, len));
                CHECK(n > 0 && (size_t)n <= uz_comp_bound(c, len));
                CHECK_EQ(uz_comp_decompress(s, cbuf, (size_t)n, out, maxlen), len);
                CHECK(memcmp(src, out, len) == 0);
                /* Short destinations, including (for lzo) larger than the scratch buffer. */
                CHECK_EQ(uz_comp_compress(s, src, len, cbuf, (size_t)n - 1), -E2BIG);
                if (len <= PAGE) {
                    ssize_t m = uz_comp_compress(s, src, len, uz_comp_stream_buf(s), (size_t)n);
                    CHECK(m == n || m == -E2BIG);
                    if (m == n) {
                        CHECK_EQ(uz_comp_decompress(s, uz_comp_stream_buf(s), (size_t)n, out, len),
                                 len);
                        CHECK(memcmp(src, out, len) == 0);
                    }
                }
            }
        }
        free(cbuf);
        uz_comp_stream_destroy(s);
        uz_comp_destroy(c);
    }
    free(src);
    free(out);
}

/* ---- corrupt input ---- */

/* A decompression of damaged input: an error, or some output that fits dstcap. */
static void check_damaged(struct uz_comp_stream *s, const uint8_t *in, size_t n, size_t dstcap,
                          ssize_t forbidden_len)
{
    uint8_t *src = fence_at(&fin, n);
    memmove(src, in, n);
    uint8_t *dst = fence_at(&fout, dstcap);
    ssize_t r = uz_comp_decompress(s, src, n, dst, dstcap);
    CHECK(r == -EBADMSG || (r >= 0 && (size_t)r <= dstcap));
    if (forbidden_len >= 0)
        CHECK(r != forbidden_len);
}

static void test_corrupt(const uint8_t *sample)
{
    uint64_t seed = 12345;
    uint8_t page[PAGE], tmp[2 * PAGE];
    /* A text-like page, a mostly-zero one, a half-random one. */
    const uint8_t *pages[3] = {sample + 3 * PAGE, NULL, page};
    uint8_t sparse[PAGE] = {0};
    sparse[100] = 1;
    sparse[3000] = 0xff;
    pages[1] = sparse;
    memcpy(page, sample + 700 * PAGE, PAGE);
    fill_random(page + PAGE / 2, PAGE / 2, &seed);

    for (size_t v = 0; v < 2 * NALGS; v++) {
        /* Each codec, then those with a dictionary (blocks that refer to it). */
        const char *name = algs[v % NALGS];
        bool with_dict = v >= NALGS;
        if (with_dict && !takes_dict(name))
            continue;
        struct uz_comp *c =
            with_dict ? comp_dict_new(name, 0, sample + 200 * PAGE, 16 * PAGE) : comp_new(name, 0);
        struct uz_comp_stream *s = stream_new(c);
        size_t errors = 0, valid = 0;
        for (size_t p = 0; p < 3; p++) {
            uint8_t comp[2 * PAGE];
            ssize_t n = uz_comp_compress(s, pages[p], PAGE, comp, sizeof(comp));
            CHECK(n > 0);
            /* Every truncation: never the original length. */
            for (size_t k = 1; k < (size_t)n; k++) {
                check_damaged(s, comp, k, PAGE, PAGE);
                check_damaged(s, comp + (size_t)n - k, k, PAGE, -1);
            }
            /* Every single-bit flip, and some multi-byte damage. */
            for (size_t bit = 0; bit < (size_t)n * 8; bit++) {
                memcpy(tmp, comp, (size_t)n);
                tmp[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                check_damaged(s, tmp, (size_t)n, PAGE, -1);
            }
            for (int t = 0; t < 2000; t++) {
                memcpy(tmp, comp, (size_t)n);
                for (int j = 0; j < 1 + t % 8; j++)
                    tmp[uzt_rand(&seed) % (size_t)n] = (uint8_t)uzt_rand(&seed);
                check_damaged(s, tmp, (size_t)n, PAGE, -1);
                check_damaged(s, tmp, (size_t)n, PAGE - 1, -1);
            }
            /* Valid stream followed by junk, and two streams back to back. */
            memcpy(tmp, comp, (size_t)n);
            memcpy(tmp + n, comp, (size_t)n);
            check_damaged(s, tmp, 2 * (size_t)n, 2 * PAGE, -1);
            tmp[n] = 0x55;
            check_damaged(s, tmp, (size_t)n + 1, PAGE, -1);
        }
        /* Random bytes of every length up to a bit more than a page. */
        for (size_t len = 1; len <= PAGE + 100; len++) {
            fill_random(tmp, len, &seed);
            uint8_t *src = fence_at(&fin, len);
            memcpy(src, tmp, len);
            ssize_t r = uz_comp_decompress(s, src, len, fence_at(&fout, PAGE), PAGE);
            CHECK(r == -EBADMSG || (r >= 0 && r <= (ssize_t)PAGE));
            errors += r == -EBADMSG;
            valid += r >= 0;
            r = uz_comp_decompress(s, src, len, fence_at(&fout, 16), 16);
            CHECK(r == -EBADMSG || (r >= 0 && r <= 16));
        }
        /* Random bytes decode almost never; a bit more often against a 64 KiB dictionary,
         * where lz4's random match offsets become valid references (about 1 in 45). */
        size_t ratio = with_dict ? 20 : 50;
        if (errors <= ratio * valid)
            fprintf(stderr, "%s%s: %zu of %zu random inputs decode\n", name,
                    with_dict ? " (dict)" : "", valid, valid + errors);
        CHECK(errors > ratio * valid);
        uz_comp_stream_destroy(s);
        uz_comp_destroy(c);
    }
}

/* ---- dictionaries: zstd, lz4, lz4hc ---- */

static size_t total_size(struct uz_comp *c, const uint8_t *img, size_t first, size_t pages)
{
    struct uz_comp_stream *s = stream_new(c);
    size_t total = 0;
    for (size_t i = first; i < first + pages; i++)
        total += check_round_trip(c, s, img + i * PAGE, PAGE, i % 8 == 0);
    uz_comp_stream_destroy(s);
    return total;
}

/* Compresses pages 256.. with `c` (a dictionary) and decodes them with `plain` (none):
 * @return : how many do not come back right. */
static size_t undecodable_without(struct uz_comp *c, struct uz_comp *plain, const uint8_t *sample,
                                  size_t pages)
{
    struct uz_comp_stream *sd = stream_new(c), *sp = stream_new(plain);
    size_t differ = 0;
    uint8_t out[PAGE];
    for (size_t i = 256; i < pages; i++) {
        const uint8_t *pg = sample + i * PAGE;
        ssize_t n =
            uz_comp_compress(sd, pg, PAGE, uz_comp_stream_buf(sd), uz_comp_stream_buf_size(sd));
        CHECK(n > 0);
        ssize_t r = uz_comp_decompress(sp, uz_comp_stream_buf(sd), (size_t)n, out, PAGE);
        differ += r != PAGE || memcmp(out, pg, PAGE) != 0;
    }
    uz_comp_stream_destroy(sd);
    uz_comp_stream_destroy(sp);
    return differ;
}

static void test_dict(const uint8_t *sample, size_t pages)
{
    /* Without a dictionary, as the baseline. Pages 256.. are compressed; 0..255 train. */
    struct uz_comp *plain = comp_new("zstd", 3);
    size_t base = total_size(plain, sample, 256, pages - 256);

    /* Raw-content dictionary from memory: 16 pages of the same image. */
    struct uz_comp *c = comp_new("zstd", 3);
    CHECK_EQ(uz_comp_set_dict(c, sample, 16 * PAGE), 0);
    size_t raw = total_size(c, sample, 256, pages - 256);

    /* Output made with the dictionary does not decode correctly without it (at least not all
     * of it). */
    CHECK(undecodable_without(c, plain, sample, pages) > 0);
    uz_comp_destroy(c);

    /* Trained dictionary, loaded from a file. */
    size_t nsamples = 256, dcap = 16384;
    size_t *sizes = malloc(nsamples * sizeof(*sizes));
    uint8_t *dict = malloc(dcap);
    CHECK(sizes && dict);
    for (size_t i = 0; i < nsamples; i++)
        sizes[i] = PAGE;
    size_t dlen = ZDICT_trainFromBuffer(dict, dcap, sample, sizes, (unsigned)nsamples);
    CHECK(!ZDICT_isError(dlen));
    char path[] = "/tmp/uzram-test-dict-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, dict, dlen) == (ssize_t)dlen);
    close(fd);
    c = comp_new("zstd", 3);
    CHECK_EQ(uz_comp_load_dict(c, path), 0);
    unlink(path);
    size_t trained = total_size(c, sample, 256, pages - 256);
    uz_comp_destroy(c);

    /* Negative level with a dictionary too. */
    c = comp_new("zstd", -3);
    CHECK_EQ(uz_comp_set_dict(c, dict, dlen), 0);
    total_size(c, sample, 256, 64);
    uz_comp_destroy(c);

    printf("zstd level 3 on %zu pages: no dict %zu B, raw dict %zu B, trained dict (%zu B) %zu B\n",
           pages - 256, base, raw, dlen, trained);
    /* Pages resemble earlier pages of the same process: raw content helps. A trained
     * dictionary's entropy tables do not help memory pages much (here they cost a little);
     * it only has to work. */
    CHECK(raw < base);
    CHECK(trained < base + base / 5);
    free(sizes);
    free(dict);
    uz_comp_destroy(plain);

    /* lz4 and lz4hc: raw content, of which they keep the last 64 KiB. */
    const char *const lz[] = {"lz4", "lz4hc"};
    for (size_t i = 0; i < 2; i++) {
        plain = comp_new(lz[i], 0);
        size_t lbase = total_size(plain, sample, 256, pages - 256);
        c = comp_dict_new(lz[i], 0, sample, 16 * PAGE);
        size_t lraw = total_size(c, sample, 256, pages - 256);
        /* Its blocks refer to the dictionary: not all decode right without it. */
        CHECK(undecodable_without(c, plain, sample, pages) > 0);
        uz_comp_destroy(c);
        /* More than 64 KiB: the tail is what counts, and gives the same blocks. */
        struct uz_comp *big = comp_dict_new(lz[i], 0, sample, 48 * PAGE);
        struct uz_comp *tail = comp_dict_new(lz[i], 0, sample + 32 * PAGE, 16 * PAGE);
        struct uz_comp_stream *sb = stream_new(big), *st = stream_new(tail);
        uint8_t out[PAGE];
        for (size_t k = 256; k < 320; k++) {
            ssize_t n = uz_comp_compress(sb, sample + k * PAGE, PAGE, uz_comp_stream_buf(sb),
                                         uz_comp_stream_buf_size(sb));
            CHECK(n > 0);
            CHECK_EQ(uz_comp_decompress(st, uz_comp_stream_buf(sb), (size_t)n, out, PAGE), PAGE);
            CHECK(memcmp(out, sample + k * PAGE, PAGE) == 0);
        }
        uz_comp_stream_destroy(sb);
        uz_comp_stream_destroy(st);
        uz_comp_destroy(big);
        uz_comp_destroy(tail);
        /* The top level with a dictionary too. */
        if (!strcmp(lz[i], "lz4hc")) {
            c = comp_new("lz4hc", 12);
            CHECK_EQ(uz_comp_set_dict(c, sample, 16 * PAGE), 0);
            total_size(c, sample, 256, 32);
            uz_comp_destroy(c);
        }
        printf("%s on %zu pages: no dict %zu B, 64 KiB raw dict %zu B\n", lz[i], pages - 256, lbase,
               lraw);
        CHECK(lraw < lbase);
        uz_comp_destroy(plain);
    }
}

/* ---- threads sharing one codec ---- */

struct share_arg {
    struct uz_comp *comp;
    const uint8_t *img;
    size_t pages;
};

static void *share_thread(void *p)
{
    struct share_arg *a = p;
    struct uz_comp_stream *s = stream_new(a->comp);
    uint8_t out[PAGE];
    for (int r = 0; r < 2; r++) {
        for (size_t i = 0; i < a->pages; i++) {
            const uint8_t *pg = a->img + i * PAGE;
            uint8_t *buf = uz_comp_stream_buf(s);
            ssize_t n = uz_comp_compress(s, pg, PAGE, buf, uz_comp_stream_buf_size(s));
            CHECK(n > 0);
            CHECK_EQ(uz_comp_decompress(s, buf, (size_t)n, out, PAGE), PAGE);
            CHECK(memcmp(out, pg, PAGE) == 0);
        }
    }
    uz_comp_stream_destroy(s);
    return NULL;
}

static void test_shared(const uint8_t *sample, size_t pages)
{
    for (size_t a = 0; a < NALGS; a++) {
        struct uz_comp *c = comp_dict_new(algs[a], 0, sample, 8 * PAGE);
        struct share_arg arg = {c, sample, pages > 256 ? 256 : pages};
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            CHECK_EQ(pthread_create(&t[i], NULL, share_thread, &arg), 0);
        for (int i = 0; i < 3; i++)
            CHECK_EQ(pthread_join(t[i], NULL), 0);
        uz_comp_destroy(c);
    }
}

/* ---- a page changing while it is compressed ---- */

struct mutator {
    uint8_t *page;
    const uint8_t *sample;
    atomic_bool stop;
    atomic_ulong rounds;
};

/* Racy on purpose (the kernel's unstable pages): uninstrumented for TSan, and through a
 * volatile pointer so that it stays a stream of plain byte stores. */
__attribute__((no_sanitize("thread"))) static void *mutator_thread(void *p)
{
    struct mutator *m = p;
    volatile uint8_t *page = m->page;
    uint64_t seed = 777;
    while (!atomic_load_explicit(&m->stop, memory_order_relaxed)) {
        uint64_t r = uzt_rand(&seed);
        size_t off = r % PAGE, len = 1 + (r >> 12) % 256;
        if (off + len > PAGE)
            len = PAGE - off;
        switch ((r >> 20) % 4) {
        case 0: /* random bytes */
            for (size_t i = 0; i < len; i++)
                page[off + i] = (uint8_t)uzt_rand(&seed);
            break;
        case 1: /* a run */
            for (size_t i = 0; i < len; i++)
                page[off + i] = (uint8_t)(r >> 40);
            break;
        default: { /* real content, so that there are matches to find */
            const uint8_t *from = m->sample + (r >> 32) % (1000 * PAGE);
            for (size_t i = 0; i < len; i++)
                page[off + i] = from[i];
        }
        }
        atomic_fetch_add_explicit(&m->rounds, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_race(const uint8_t *sample)
{
    uint8_t *page = malloc(PAGE);
    CHECK(page);
    memcpy(page, sample + 5 * PAGE, PAGE);
    struct mutator m = {.page = page, .sample = sample};
    atomic_init(&m.stop, false);
    atomic_init(&m.rounds, 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, mutator_thread, &m), 0);
    uint8_t out[PAGE];
    /* Every case, then the codecs that take one with a dictionary (its prepared state is shared
     * and must come out of every racing page unchanged). */
    const size_t ncases = sizeof(cases) / sizeof(cases[0]);
    const char *const dict_cases[] = {"lz4", "lz4hc", "zstd"};
    for (size_t k = 0; k < ncases + 3; k++) {
        bool with_dict = k >= ncases;
        const char *name = with_dict ? dict_cases[k - ncases] : cases[k].name;
        struct uz_comp *c = with_dict ? comp_dict_new(name, 0, sample + 64 * PAGE, 16 * PAGE)
                                      : comp_new(name, cases[k].level);
        struct uz_comp_stream *s = stream_new(c);
        int iters = with_dict                  ? 1000
                    : cases[k].max_pages == 0  ? 3000
                    : cases[k].max_pages < 500 ? 30
                                               : 300;
        for (int i = 0; i < iters; i++) {
            uint8_t *buf = uz_comp_stream_buf(s);
            size_t cap = uz_comp_stream_buf_size(s);
            ssize_t n = uz_comp_compress(s, page, PAGE, buf, cap);
            CHECK(n > 0 && (size_t)n <= cap);
            CHECK_EQ(uz_comp_decompress(s, buf, (size_t)n, out, PAGE), PAGE);
            /* Into a fenced page too: a racing page must not push it past dstcap either. */
            n = uz_comp_compress(s, page, PAGE, fence_at(&fout, PAGE), PAGE);
            CHECK((n > 0 && n <= (ssize_t)PAGE) || n == -E2BIG);
        }
        uz_comp_stream_destroy(s);
        uz_comp_destroy(c);
    }
    atomic_store(&m.stop, true);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(atomic_load(&m.rounds) > 0);
    printf("race: %lu mutations\n", (unsigned long)atomic_load(&m.rounds));
    free(page);
}

#define TIMED(call)                                                                                \
    do {                                                                                           \
        double t0_ = now();                                                                        \
        call;                                                                                      \
        printf("%s: %.2f s\n", #call, now() - t0_);                                                \
    } while (0)

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, SIG_DFL); /* a test that blocks dies of its alarm() */
    fin = fence_new(1u << 17);
    fout = fence_new(1u << 17);

    size_t pages;
    uint8_t *sample = uzt_load_image(UZT_SAMPLE, &pages);
    CHECK(sample && pages >= 1024);

    TIMED(test_api());
    TIMED(test_dict_file());
    TIMED(test_params(sample));
    TIMED(test_synthetic(sample));
    TIMED(test_corrupt(sample));
    TIMED(test_dict(sample, pages));
    TIMED(test_shared(sample, pages));
    TIMED(test_race(sample));
    TIMED(test_image("sample", sample, pages));

    const char *big[] = {"py-64m.img.zst", "node-64m.img.zst"};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        size_t n;
        uint8_t *img = uzt_load_image(big[i], &n);
        if (!img) {
            printf("%s: not found, skipped\n", big[i]);
            continue;
        }
        TIMED(test_image(big[i], img, n));
        free(img);
    }
    free(sample);
    printf("ok\n");
    return 0;
}
