/* SPDX-License-Identifier: MIT */
/*
 * region_harness.h - what the region tests share: making a region (skipping where userfaultfd is
 * refused), its statistics, and checking its invariants with what the checker found said
 * (uz_region_check() itself prints nothing). Include after harness.h.
 */
#ifndef UZ_REGION_HARNESS_H
#define UZ_REGION_HARNESS_H

#include <stdio.h>
#include <unistd.h>

#include "region_internal.h"

/* UZT_SANITIZED: an ASan or TSan build (gcc or clang), which runs fewer rounds; UZT_TSAN: TSan. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UZT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UZT_SANITIZED 1
#endif
#endif
#ifndef UZT_SANITIZED
#define UZT_SANITIZED 0
#endif
#if defined(__SANITIZE_THREAD__)
#define UZT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UZT_TSAN 1
#endif
#endif
#ifndef UZT_TSAN
#define UZT_TSAN 0
#endif

#if defined(UZT_FORK_THREADS) && UZT_TSAN
/* A test that defines UZT_FORK_THREADS forks from a multithreaded process and its child's region
 * starts threads again, which TSan refuses by default (it cannot know what the vanished threads
 * held); the region's child handler quiesced everything before the fork and rebuilds its locks,
 * so it may. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}
#endif

/* A 64-bit mixer (murmur-style finaliser) for page patterns. */
static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

/* A region of *cfg; the test is skipped where userfaultfd is unavailable. */
static inline struct uz_region *make_cfg(const struct uz_region_config *cfg)
{
    struct uz_region *r = NULL;
    int rc = uz_region_create(cfg, &r);
    if (rc == -ENOSYS || rc == -EPERM) {
        fprintf(stderr, "userfaultfd unavailable (%s): skipping\n", strerror(-rc));
        exit(UZT_SKIP);
    }
    CHECK_EQ(rc, 0);
    return r;
}

static inline struct uz_region *make(size_t pages, size_t limit_pages)
{
    struct uz_region_config cfg = {.size = pages * UZ_PAGE_SIZE,
                                   .resident_limit = limit_pages * UZ_PAGE_SIZE};
    return make_cfg(&cfg);
}

static inline struct uz_region_stat stat_of(struct uz_region *r)
{
    struct uz_region_stat st;
    CHECK_EQ(uz_region_stat(r, &st), 0);
    return st;
}

static inline void check_region(struct uz_region *reg)
{
    struct uz_region_check_result res;
    int rc = uz_region_check(reg, &res);
    if (rc)
        fprintf(stderr, "uz_region_check: %s\n", res.msg);
    CHECK_EQ(rc, 0);
}

/* Waits (2 s at most) until no writeback is in flight and reclaim has settled and is idle,
 * then checks the states. */
static inline void settle_and_check(struct uz_region *r)
{
    uz_dev_flush(uz_region_dev(r));
    struct uz_region_stat a = stat_of(r), b;
    for (int i = 0; i < 400; i++) {
        usleep(5000);
        uz_dev_flush(uz_region_dev(r));
        b = stat_of(r);
        /* Reclaim idle too: a batch of evictions holds its page locks for as long as it runs
         * (a page shared with a forked process is made exclusive first, one by one), and a
         * slow machine can stretch that past the sampling interval with no counter moving. */
        bool reclaim_idle = !r->limit || !atomic_load(&r->reclaim_busy);
        if (!b.writeback_pages && b.swapouts == a.swapouts && b.writebacks == a.writebacks &&
            b.resident_pages == a.resident_pages && reclaim_idle)
            break;
        a = b;
    }
    check_region(r);
}

/* A test program's cases: all of them, or those named on the command line. */
struct uzt_case {
    const char *name;
    void (*fn)(void);
};

static inline void uzt_run_cases(const struct uzt_case *cases, size_t n, int argc, char **argv)
{
    for (size_t c = 0; c < n; c++) {
        bool run = argc < 2;
        for (int a = 1; a < argc; a++)
            run |= !strcmp(argv[a], cases[c].name);
        if (run) {
            fprintf(stderr, "== %s\n", cases[c].name);
            cases[c].fn();
        }
    }
}

#endif
