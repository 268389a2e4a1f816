/* SPDX-License-Identifier: MIT */
/*
 * run_heap.c - `run-heap`: the C workload of bench/run-bench.sh, an ordinary program (no uzram
 * in it) that fills a heap of MIB in mixed sizes with real process memory and verifies it.
 *
 *   run-heap IMAGE MIB
 *
 * IMAGE is an uncompressed memory image (../shared/corpus/py-64m.img.zst decompressed); its
 * first 32 MiB are read into the heap. Then, as test_run_prog's memtest (the same size and
 * alignment mix: a quarter 1..200 B, a quarter 1 B..8 KiB, half 1 B..256 KiB, a third through
 * aligned_alloc with 16 B..8 KiB alignment), blocks are allocated until MIB have been
 * allocated, every 4096 blocks a quarter of them verified, grown twofold by realloc and filled
 * again; finally every block is verified and freed. A block's contents are the image's bytes
 * from an offset derived from its index, with the index in its first 8 bytes, so pages
 * compress like a real heap (lz4 about 2.5x) and a block that came back wrong or from another
 * block is caught. Exit 0 when every byte verified, 1 otherwise.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SRC_MAX (32u << 20)
#define N       (1u << 18)

static unsigned char *src;
static size_t src_len;

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Where block `key` of `n` bytes takes its contents from. */
static size_t src_off(uint64_t key, size_t n)
{
    return (size_t)((key * 2654435761u) % (src_len - n + 1));
}

static void fill(unsigned char *p, size_t n, uint64_t key)
{
    memcpy(p, src + src_off(key, n), n);
    if (n >= 8)
        memcpy(p, &key, 8);
}

static int same(const unsigned char *p, size_t n, uint64_t key)
{
    size_t off = src_off(key, n), head = n >= 8 ? 8 : 0;
    if (head && memcmp(p, &key, 8))
        return 0;
    return !memcmp(p + head, src + off + head, n - head);
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "run-heap: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: run-heap IMAGE MIB\n");
        return 2;
    }
    uint64_t want = strtoull(argv[2], NULL, 10) << 20;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    src = malloc(SRC_MAX);
    CHECK(src);
    while (src_len < SRC_MAX) {
        ssize_t n = read(fd, src + src_len, SRC_MAX - src_len);
        if (n <= 0)
            break;
        src_len += (size_t)n;
    }
    close(fd);
    if (src_len < (1u << 20)) {
        fprintf(stderr, "run-heap: %s: less than 1 MiB\n", argv[1]);
        return 1;
    }

    static unsigned char *ptr[N];
    static size_t len[N];
    uint64_t s = 42, total = 0;
    size_t n = 0;
    double t0 = now();
    while (total < want && n < N) {
        uint64_t r = rnd(&s);
        size_t sz = r % 4 == 0 ? 1 + r % 200 : r % 4 == 1 ? 1 + r % 8192 : 1 + r % (256 << 10);
        size_t al = (size_t)16 << (r >> 40) % 10; /* 16 B .. 8 KiB */
        int aligned = (r >> 20) % 3 == 0;
        unsigned char *p = aligned ? aligned_alloc(al, (sz + al - 1) / al * al) : malloc(sz);
        CHECK(p);
        if (aligned)
            CHECK((uintptr_t)p % al == 0);
        fill(p, sz, n);
        ptr[n] = p;
        len[n] = sz;
        total += sz;
        n++;
        if (n % 4096 == 0) { /* verify a quarter, grow it twofold, fill it again */
            for (size_t i = n - 4096; i < n; i += 4) {
                CHECK(same(ptr[i], len[i], i));
                ptr[i] = realloc(ptr[i], len[i] * 2);
                CHECK(ptr[i] && same(ptr[i], len[i], i));
                total += len[i];
                len[i] *= 2;
                fill(ptr[i], len[i], i);
            }
        }
    }
    double t1 = now();
    uint64_t live = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(same(ptr[i], len[i], i));
        live += len[i];
    }
    double t2 = now();
    for (size_t i = 0; i < n; i++)
        free(ptr[i]);
    free(src);
    CHECK(live == total);
    printf("run-heap: blocks=%zu live_mib=%llu fill_s=%.3f verify_s=%.3f\n", n,
           (unsigned long long)(live >> 20), t1 - t0, t2 - t1);
    return 0;
}
