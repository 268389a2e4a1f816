// SPDX-License-Identifier: MIT
/*
 * region_watchdog.c - the stall watchdog (region.h: uz_region_set_watchdog()).
 *
 * A fault can stall two ways, and each is recorded where it happens, by small hooks:
 *  - a fault thread waits for room (fault_reserve() in region_fault.c): its wait_since is set
 *    when the wait begins and cleared when it ends;
 *  - a fault's own ioctl fails transiently (ENOMEM, EAGAIN past the retries): the faulting
 *    thread faults again, over and over; the first failing page is recorded (fail_since) and
 *    cleared when that page's fault is served.
 * Nobody watches with a thread of its own: uz_region_wd_tick() looks at every record and is
 * called by threads that are not the stuck ones -- the fault thread waiting for room (it polls
 * every millisecond anyway), every fault thread after each fault it handles, and the reclaim
 * thread on each pass of its loop (at least every 50 ms). An episode is reported once (counter,
 * callback), by whichever thread sees it overdue first: the episode's start time is its id, and
 * a CAS on `reported` elects the reporter.
 *
 * The reason is judged when reporting: a wait during which writebacks failed is the device's
 * (its last error), one during which system calls failed is the system's, else plain room.
 */
#include "region_internal.h"

#include <errno.h>
#include <time.h>

static uint64_t wd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void uz_region_wd_init(struct uz_region *r, unsigned ms)
{
    r->wd.timeout_ns = (uint64_t)(ms ? ms : 10000) * 1000000u;
    pthread_mutex_init(&r->wd.lock, NULL);
}

void uz_region_wd_destroy(struct uz_region *r)
{
    pthread_mutex_destroy(&r->wd.lock);
}

int uz_region_set_watchdog(struct uz_region *r, uz_region_watchdog_fn fn, void *arg)
{
    if (!r)
        return -EINVAL;
    pthread_mutex_lock(&r->wd.lock);
    r->wd.fn = fn;
    r->wd.arg = arg;
    pthread_mutex_unlock(&r->wd.lock);
    return 0;
}

void uz_region_wd_wait_begin(struct uz_region_fault_thread *ft, uint64_t i)
{
    struct uz_region *r = ft->r;
    ft->wait_wb_errors = uz_counter_read(&r->st.wb_errors);
    ft->wait_sys_errors = uz_counter_read(&r->st.sys_errors);
    atomic_store_explicit(&ft->wait_page, i, memory_order_relaxed);
    uint64_t t = wd_now();
    atomic_store_explicit(&ft->wait_since, t ? t : 1, memory_order_release);
}

void uz_region_wd_wait_end(struct uz_region_fault_thread *ft)
{
    atomic_store_explicit(&ft->wait_since, 0, memory_order_relaxed);
}

void uz_region_wd_fail(struct uz_region *r, uint64_t i, int err)
{
    pthread_mutex_lock(&r->wd.lock);
    if (!atomic_load_explicit(&r->wd.fail_since, memory_order_relaxed)) {
        uint64_t t = wd_now();
        r->wd.fail_page = i;
        atomic_store_explicit(&r->wd.fail_since, t ? t : 1, memory_order_relaxed);
    }
    if (r->wd.fail_page == i)
        r->wd.fail_err = err;
    pthread_mutex_unlock(&r->wd.lock);
}

void uz_region_wd_ok_slow(struct uz_region *r, uint64_t i)
{
    pthread_mutex_lock(&r->wd.lock);
    if (atomic_load_explicit(&r->wd.fail_since, memory_order_relaxed) && r->wd.fail_page == i)
        atomic_store_explicit(&r->wd.fail_since, 0, memory_order_relaxed);
    pthread_mutex_unlock(&r->wd.lock);
}

/* Counts the stall and calls the callback (holding no lock: copied out under wd.lock). */
static void report(struct uz_region *r, uint64_t page, uint64_t since, uint64_t now, int reason,
                   int err)
{
    uz_counter_add(&r->wd.stalls, 1);
    pthread_mutex_lock(&r->wd.lock);
    uz_region_watchdog_fn fn = r->wd.fn;
    void *arg = r->wd.arg;
    pthread_mutex_unlock(&r->wd.lock);
    if (!fn)
        return;
    struct uz_region_stall s = {.addr = r->base + page * UZ_PAGE_SIZE,
                                .page = page,
                                .waited_ms = (now - since) / 1000000u,
                                .reason = reason,
                                .err = err};
    fn(arg, &s);
}

void uz_region_wd_tick(struct uz_region *r)
{
    uint64_t now = 0;
    for (unsigned t = 0; r->ft && t < r->nfault; t++) {
        struct uz_region_fault_thread *ft = &r->ft[t];
        uint64_t since = atomic_load_explicit(&ft->wait_since, memory_order_acquire);
        if (!since)
            continue;
        if (!now)
            now = wd_now();
        if (now < since || now - since < r->wd.timeout_ns)
            continue;
        uint64_t seen = atomic_load_explicit(&ft->wait_reported, memory_order_relaxed);
        if (seen == since || !atomic_compare_exchange_strong(&ft->wait_reported, &seen, since))
            continue;
        uint64_t page = atomic_load_explicit(&ft->wait_page, memory_order_relaxed);
        /* The counters at the wait's start were written before wait_since (release): read
         * by another thread they may belong to a later wait of the same thread, which only
         * makes the reason less precise. */
        int reason = UZ_REGION_STALL_ROOM, err = 0;
        if (uz_counter_read(&r->st.wb_errors) != ft->wait_wb_errors) {
            reason = UZ_REGION_STALL_DEVICE;
            err = atomic_load_explicit(&r->wd.last_wb_err, memory_order_relaxed);
        } else if (uz_counter_read(&r->st.sys_errors) != ft->wait_sys_errors) {
            reason = UZ_REGION_STALL_SYSCALL;
        }
        report(r, page, since, now, reason, err);
    }
    uint64_t fs = atomic_load_explicit(&r->wd.fail_since, memory_order_relaxed);
    if (!fs)
        return;
    if (!now)
        now = wd_now();
    if (now < fs || now - fs < r->wd.timeout_ns)
        return;
    pthread_mutex_lock(&r->wd.lock);
    fs = atomic_load_explicit(&r->wd.fail_since, memory_order_relaxed);
    bool due = fs && r->wd.fail_reported != fs && now >= fs && now - fs >= r->wd.timeout_ns;
    uint64_t page = r->wd.fail_page;
    int err = r->wd.fail_err;
    if (due)
        r->wd.fail_reported = fs;
    pthread_mutex_unlock(&r->wd.lock);
    if (due)
        report(r, page, fs, now, UZ_REGION_STALL_SYSCALL, err);
}
