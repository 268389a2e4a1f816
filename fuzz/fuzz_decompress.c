// SPDX-License-Identifier: MIT
/*
 * fuzz_decompress.c - libFuzzer target for the decompressors (and a compress round trip).
 *
 * Input: one selector byte, then the bytes fed to uz_comp_decompress() into a page-sized buffer
 * and into a smaller one. byte % 10 picks the codec: 0..4 lzo, lz4, lz4hc, zstd, deflate (the
 * seeds' order), 5..9 the same with parameters: lzo-rle, lz4, lz4hc and zstd with a 64 KiB
 * dictionary (blocks that refer into it), deflate with winbits 12 (the zlib format). The same bytes
 * are then compressed, and must decompress back unchanged. uz_comp_decompress_prefix() gets the
 * same bytes with a `want` taken from the first data byte. The codec libraries are not
 * instrumented, so inputs and outputs are placed against a PROT_NONE page: a read past srclen
 * or a write past dstcap faults even inside them. Codecs and streams are created once.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <uzram/comp.h>

#define NCODECS 10
#define ROOM    (1u << 20) /* fenced bytes; larger inputs are cut to this */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fence {
    uint8_t *end;
};

static struct uz_comp_stream *streams[NCODECS];
static struct uz_comp *comps[NCODECS];
static struct fence fin, fout, fcomp;
static uint8_t *plain;

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct fence fence_new(size_t room)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = (room + pg - 1) / pg * pg;
    uint8_t *p = mmap(NULL, len + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    REQUIRE(mprotect(p + len, pg, PROT_NONE) == 0);
    return (struct fence){p + len};
}

static void init(void)
{
    static const char *const names[NCODECS] = {"lzo",     "lz4", "lz4hc", "zstd", "deflate",
                                               "lzo-rle", "lz4", "lz4hc", "zstd", "deflate"};
    /* A dictionary of text-like runs, so that blocks made with it refer into it. */
    static uint8_t dict[65536];
    for (size_t i = 0; i < sizeof(dict); i++)
        dict[i] = (uint8_t)("uzram dictionary: the quick brown fox "[i % 38] + (i / 4096) % 3);
    for (int i = 0; i < NCODECS; i++) {
        struct uz_comp_params p = {0};
        if (i >= 5 && i <= 8) {
            p.dict = dict;
            p.dict_len = sizeof(dict);
        } else if (i == 9) {
            p.deflate_winbits = 12;
        }
        REQUIRE(uz_comp_create_params(names[i], &p, &comps[i]) == 0);
        REQUIRE(uz_comp_stream_create(comps[i], &streams[i]) == 0);
    }
    fin = fence_new(ROOM);
    fout = fence_new(ROOM);
    fcomp = fence_new(2 * ROOM);
    plain = malloc(ROOM);
    REQUIRE(plain);
}

/* Decompresses src into `cap` bytes ending at the fence: an error or something that fits. */
static ssize_t decompress_into(struct uz_comp_stream *s, const uint8_t *src, size_t len, size_t cap)
{
    ssize_t n = uz_comp_decompress(s, src, len, fout.end - cap, cap);
    REQUIRE(n == -EBADMSG || (n >= 0 && (size_t)n <= cap));
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!streams[0])
        init();
    if (size < 2)
        return 0;
    struct uz_comp *c = comps[data[0] % NCODECS];
    struct uz_comp_stream *s = streams[data[0] % NCODECS];
    data++;
    size--;
    if (size > ROOM)
        size = ROOM;
    uint8_t *in = fin.end - size;
    memcpy(in, data, size);

    /* Decompress the bytes as they are: into a page, then into less than what they produced. */
    ssize_t n = decompress_into(s, in, size, UZ_PAGE_SIZE);
    if (n > 0)
        REQUIRE(decompress_into(s, in, size, (size_t)n - 1) == -EBADMSG);
    decompress_into(s, in, size, 64);
    /* A prefix of it (multi-page objects): at least `want` bytes, never past the fence. */
    size_t want = 1 + data[0] % UZ_PAGE_SIZE;
    ssize_t p = uz_comp_decompress_prefix(s, in, size, fout.end - UZ_PAGE_SIZE, want, UZ_PAGE_SIZE);
    REQUIRE(p == -EBADMSG || (p >= (ssize_t)want && p <= UZ_PAGE_SIZE));
    if (n >= 0 && (size_t)n >= want)
        REQUIRE(p >= (ssize_t)want);

    /* Compress them: the result fits the bound and round-trips. */
    size_t bound = uz_comp_bound(c, size);
    REQUIRE(bound >= size && bound <= 2 * ROOM);
    uint8_t *cbuf = fcomp.end - bound;
    ssize_t m = uz_comp_compress(s, in, size, cbuf, bound);
    REQUIRE(m > 0 && (size_t)m <= bound);
    if (size <= UZ_PAGE_SIZE)
        REQUIRE((size_t)m <= uz_comp_stream_buf_size(s));
    uint8_t *cin = fin.end - m; /* the compressed stream against the fence, as input */
    memmove(cin, cbuf, (size_t)m);
    ssize_t d = uz_comp_decompress(s, cin, (size_t)m, plain, size);
    REQUIRE(d == (ssize_t)size && memcmp(plain, data, size) == 0);
    REQUIRE(decompress_into(s, cin, (size_t)m, size - 1) == -EBADMSG);
    /* A destination one byte short of the result never fits and is never overrun. */
    REQUIRE(uz_comp_compress(s, data, size, fout.end - (m - 1), (size_t)m - 1) == -E2BIG);
    return 0;
}
