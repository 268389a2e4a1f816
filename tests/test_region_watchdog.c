// SPDX-License-Identifier: MIT
/*
 * test_region_watchdog.c - the stall watchdog (issue 8): a fault that cannot be served is
 * reported (uz_region_stat.stalls and the callback), never a silent hang.
 *   nomem   the device's mem_limit tiny: writeback fails with ENOMEM, reclaim frees nothing,
 *           a thread keeps faulting new pages past the resident limit; the callback fires
 *           within the (300 ms) timeout with reason DEVICE, the counter counts; the limit raised,
 *           the thread completes and every page verifies
 *   inject  the fault's own ioctls (UFFDIO_COPY, UFFDIO_ZEROPAGE) fail with ENOMEM for a long
 *           time: reported with reason SYSCALL and the error; disarmed, the fault completes
 * Every case runs under alarm(). The old code has no watchdog: the thread waits (or retries)
 * silently until the test gives up.
 */
#include "harness.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "region_harness.h"

#define PAGE UZ_PAGE_SIZE

static struct {
    atomic_int calls;
    atomic_int reason, err;
    atomic_ullong page, waited_ms;
} seen;

static void on_stall(void *arg, const struct uz_region_stall *s)
{
    struct uz_region *r = arg;
    CHECK(s->addr == (unsigned char *)uz_region_base(r) + s->page * PAGE);
    struct uz_region_stat st;
    CHECK_EQ(uz_region_stat(r, &st), 0); /* allowed from the callback */
    atomic_store(&seen.reason, s->reason);
    atomic_store(&seen.err, s->err);
    atomic_store(&seen.page, s->page);
    atomic_store(&seen.waited_ms, s->waited_ms);
    atomic_fetch_add(&seen.calls, 1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits up to `s` seconds for a callback. @return : whether one came. */
static bool wait_call(double s)
{
    double end = now_s() + s;
    while (!atomic_load(&seen.calls) && now_s() < end)
        usleep(2000);
    return atomic_load(&seen.calls) > 0;
}

static struct uz_region *make_wd(size_t pages, size_t limit, unsigned ms)
{
    struct uz_region_config cfg = {
        .size = pages * PAGE, .resident_limit = limit * PAGE, .watchdog_ms = ms};
    struct uz_region *r = make_cfg(&cfg);
    CHECK_EQ(uz_region_set_watchdog(r, on_stall, r), 0);
    return r;
}

static uint64_t pat(uint64_t p, uint64_t j)
{
    return mix(p * 4096 + j) | 1;
}

/* ---- nomem ---- */

#define NM_PAGES 2048u
#define NM_LIMIT 64u

static atomic_uint nm_done;

static void *nm_writer(void *arg)
{
    unsigned char *base = arg;
    uint64_t seed = 0x77;
    for (uint64_t p = 0; p < NM_PAGES; p++) {
        uint64_t *w = (uint64_t *)(base + p * PAGE);
        /* random, incompressible-ish data so the pool fills fast */
        for (unsigned j = 0; j < PAGE / 8; j++)
            w[j] = j < 16 ? pat(p, j) : uzt_rand(&seed) | pat(p, 0);
        atomic_store(&nm_done, (unsigned)p + 1);
    }
    return NULL;
}

static void t_nomem(void)
{
    alarm(60);
    memset(&seen, 0, sizeof(seen));
    struct uz_region *r = make_wd(NM_PAGES, NM_LIMIT, 300);
    unsigned char *base = uz_region_base(r);
    CHECK_EQ(uz_dev_attr_write(uz_region_dev(r), "mem_limit", "8K"), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, nm_writer, base), 0);
    double t0 = now_s();
    bool fired = wait_call(5.0);
    double dt = now_s() - t0;
    struct uz_region_stat st = stat_of(r);
    fprintf(stderr,
            "nomem: fired %d after %.2f s, reason %d err %d page %llu waited %llu ms, "
            "stalls %llu, wb errors %llu, written %u\n",
            fired, dt, atomic_load(&seen.reason), atomic_load(&seen.err),
            (unsigned long long)atomic_load(&seen.page),
            (unsigned long long)atomic_load(&seen.waited_ms), (unsigned long long)st.stalls,
            (unsigned long long)st.writeback_errors, atomic_load(&nm_done));
    CHECK(fired);
    CHECK(atomic_load(&nm_done) < NM_PAGES); /* really stuck */
    CHECK(st.stalls >= 1);
    CHECK_EQ(atomic_load(&seen.reason), UZ_REGION_STALL_DEVICE);
    CHECK(atomic_load(&seen.err) == -ENOSPC || atomic_load(&seen.err) == -ENOMEM);
    CHECK(atomic_load(&seen.waited_ms) >= 300);
    CHECK(atomic_load(&seen.page) == atomic_load(&nm_done));
    CHECK_EQ(uz_dev_attr_write(uz_region_dev(r), "mem_limit", "0"), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    uint64_t seed = 0x77;
    for (uint64_t p = 0; p < NM_PAGES; p++) {
        const uint64_t *w = (const uint64_t *)(base + p * PAGE);
        for (unsigned j = 0; j < PAGE / 8; j++)
            CHECK_EQ(w[j], j < 16 ? pat(p, j) : uzt_rand(&seed) | pat(p, 0));
    }
    st = stat_of(r);
    CHECK(st.resident_pages <= NM_LIMIT + 2);
    CHECK_EQ(st.failed, 0);
    uz_region_destroy(r);
    alarm(0);
}

/* ---- inject ---- */

static void *inj_toucher(void *arg)
{
    unsigned char *p = arg;
    p[0] = 0x5a; /* a write fault on a never-touched page: UFFDIO_COPY of zeros */
    return (void *)(uintptr_t)p[1]; /* and reads back zeros */
}

static void t_inject(void)
{
    alarm(60);
    memset(&seen, 0, sizeof(seen));
    struct uz_region *r = make_wd(256, 0, 300);
    unsigned char *base = uz_region_base(r);
    uz_region_sys_inject(r, UZ_SYS_COPY, 0, 4000000000u, ENOMEM);
    uz_region_sys_inject(r, UZ_SYS_ZEROPAGE, 0, 4000000000u, ENOMEM);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, inj_toucher, base + 17 * PAGE), 0);
    double t0 = now_s();
    bool fired = wait_call(5.0);
    double dt = now_s() - t0;
    fprintf(stderr, "inject: fired %d after %.2f s, reason %d err %d page %llu waited %llu ms\n",
            fired, dt, atomic_load(&seen.reason), atomic_load(&seen.err),
            (unsigned long long)atomic_load(&seen.page),
            (unsigned long long)atomic_load(&seen.waited_ms));
    uz_region_sys_inject(r, UZ_SYS_COPY, 0, 0, 0);
    uz_region_sys_inject(r, UZ_SYS_ZEROPAGE, 0, 0, 0);
    CHECK(fired);
    CHECK_EQ(atomic_load(&seen.reason), UZ_REGION_STALL_SYSCALL);
    CHECK_EQ(atomic_load(&seen.err), -ENOMEM);
    CHECK_EQ(atomic_load(&seen.page), 17u);
    CHECK(atomic_load(&seen.waited_ms) >= 300);
    void *ret;
    CHECK_EQ(pthread_join(t, &ret), 0);
    CHECK(ret == NULL);
    CHECK_EQ(base[17 * PAGE], 0x5a);
    struct uz_region_stat st = stat_of(r);
    CHECK_EQ(st.stalls, 1u); /* one episode, reported once */
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(atomic_load(&seen.calls), 1);
    uz_region_destroy(r);
    alarm(0);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "nomem") && strcmp(argv[i], "inject"))
            return 2;
    if (argc == 1 || !strcmp(argv[1], "nomem"))
        t_nomem();
    if (argc == 1 || !strcmp(argv[argc - 1], "inject"))
        t_inject();
    fprintf(stderr, "ok\n");
    return 0;
}
