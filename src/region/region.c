// SPDX-License-Identifier: MIT
/*
 * region.c - the region's API: creation (memory, userfaultfd, device, threads), teardown,
 * statistics, pinning, explicit swap-out; and what the other files share: the resident-memory
 * reservation that throttles faults, and the error policy (transient errors counted, the
 * others put the region in its failed state, which wakes every thread it could leave asleep).
 * The page lock is in region_page.c, the system calls in region_sys.c, the fault service in
 * region_fault.c, reclaim and writeback in region_reclaim.c, the checker in region_check.c;
 * region_internal.h has the page states, the lock order and the error policy in full.
 *
 * The library's own memory (page words, snapshot and staging buffers, the zero source) is
 * separate from the region, so the fault path can never fault on the region itself, and it is
 * mlock'ed (best effort; uz_region_stat.locked says whether it worked).
 */
#include "region_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

bool uz_region_force_user_mode;
bool uz_region_force_no_move;

/* ---- small helpers ---- */

void uz_region_discard_slot(struct uz_region *r, uint64_t i)
{
    uz_dev_discard(r->dev, i * UZ_PAGE_SIZE, UZ_PAGE_SIZE);
}

uint64_t uz_region_hole_locked(struct uz_region *r, uint64_t i, uint64_t w)
{
    unsigned st = uz_pg_state(w);
    if (st == UZ_PG_HOLE)
        return w;
    if (st == UZ_PG_CLEAN || st == UZ_PG_SWAPPED)
        uz_region_discard_slot(r, i);
    if (uz_pg_resident(st))
        atomic_fetch_sub((w & UZ_PG_KEPT) ? &r->kept : &r->resident, 1);
    if (uz_pg_pins(w)) {
        atomic_fetch_sub(&r->pinned, 1);
        if (r->limit)
            atomic_fetch_sub(&r->pin_budget, 1);
    }
    w &= ~(UZ_PG_REF | UZ_PG_SAMPLE | UZ_PG_FRESH | UZ_PG_KEPT | UZ_PG_PIN_MASK);
    return uz_pg_set_state(uz_pg_next_gen(w), UZ_PG_HOLE);
}

/* ---- errors and the failed state ---- */

static void broadcast_all(struct uz_region *r)
{
    pthread_mutex_lock(&r->lock);
    r->reclaim_kick = true;
    pthread_cond_broadcast(&r->reclaim_cond);
    pthread_cond_broadcast(&r->room_cond);
    pthread_cond_broadcast(&r->req_cond);
    pthread_mutex_unlock(&r->lock);
}

void uz_region_set_failed(struct uz_region *r, int err)
{
    int none = 0;
    if (!atomic_compare_exchange_strong(&r->failed, &none, err ? err : -EIO))
        return;
    /* Every thread asleep in a fault on the region faults again (and is served, or gets
     * SIGBUS); threads waiting for room or requests stop waiting. */
    if (uz_region_sys_wake(r, 0, r->npages))
        uz_counter_add(&r->st.sys_errors, 1); /* nothing more can be done from here */
    broadcast_all(r);
}

int uz_region_error(struct uz_region *r, int err)
{
    uz_counter_add(&r->st.sys_errors, 1);
    /* ENOENT with UNMAP events: the range was unmapped by the application (its event, read
     * or not yet, makes it a hole). */
    if (err != -ENOMEM && err != -EAGAIN && err != -EINTR && !(err == -ENOENT && r->ev_unmap))
        uz_region_set_failed(r, err);
    return err;
}

void uz_region_release(struct uz_region *r, uint64_t first, uint64_t n)
{
    int rc = uz_region_sys_wake(r, first, n);
    if (rc) {
        uz_counter_add(&r->st.sys_errors, 1);
        uz_region_set_failed(r, rc); /* a thread left asleep otherwise */
    }
}

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void uz_region_wake_reclaim(struct uz_region *r)
{
    if (!r->limit || atomic_load(&r->reclaim_busy))
        return;
    pthread_mutex_lock(&r->lock);
    r->reclaim_kick = true;
    pthread_cond_signal(&r->reclaim_cond);
    pthread_mutex_unlock(&r->lock);
}

/* ---- resident-memory reservation (the fault path's throttle) ---- */

unsigned uz_region_reserve_try(struct uz_region *r, unsigned min, unsigned want)
{
    if (!r->limit) {
        atomic_fetch_add(&r->resident, want);
        return want;
    }
    for (;;) {
        uint64_t res = atomic_load(&r->resident);
        uint64_t avail = res < r->limit ? r->limit - res : 0;
        if (avail < min && !atomic_load(&r->stop) && !uz_region_failed(r))
            return 0;
        unsigned take = avail < want ? (avail > min ? (unsigned)avail : min) : want;
        if (!atomic_compare_exchange_weak(&r->resident, &res, res + take))
            continue;
        if (res + take > r->start_wm)
            uz_region_wake_reclaim(r);
        return take;
    }
}

void uz_region_reserve_force(struct uz_region *r, unsigned n)
{
    if (atomic_fetch_add(&r->resident, n) + n > r->start_wm && r->limit)
        uz_region_wake_reclaim(r);
}

void uz_region_room_wait(struct uz_region *r, unsigned min, long ms)
{
    pthread_mutex_lock(&r->lock);
    atomic_fetch_add(&r->room_waiters, 1);
    r->reclaim_kick = true;
    pthread_cond_signal(&r->reclaim_cond);
    if (atomic_load(&r->resident) + min > r->limit && !atomic_load(&r->stop) &&
        !uz_region_failed(r)) {
        struct timespec ts;
        deadline_in(&ts, ms);
        pthread_cond_timedwait(&r->room_cond, &r->lock, &ts);
    }
    atomic_fetch_sub(&r->room_waiters, 1);
    pthread_mutex_unlock(&r->lock);
}

/* Reserves room for at least `min` and at most `want` pages to be mapped, waiting for reclaim
 * while the region is at its limit. Called holding no page lock, and not from a fault thread
 * (which waits with fault_reserve(), serving faults meanwhile). @return : pages reserved. */
unsigned uz_region_reserve(struct uz_region *r, unsigned min, unsigned want)
{
    bool waited = false;
    for (;;) {
        unsigned take = uz_region_reserve_try(r, min, want);
        if (take)
            return take;
        if (!waited)
            uz_counter_add(&r->st.throttled, 1);
        waited = true;
        pthread_mutex_lock(&r->lock);
        atomic_fetch_add(&r->room_waiters, 1);
        r->reclaim_kick = true;
        pthread_cond_signal(&r->reclaim_cond);
        while (atomic_load(&r->resident) + min > r->limit && !atomic_load(&r->stop) &&
               !uz_region_failed(r)) {
            struct timespec ts;
            deadline_in(&ts, 20);
            pthread_cond_timedwait(&r->room_cond, &r->lock, &ts);
        }
        atomic_fetch_sub(&r->room_waiters, 1);
        pthread_mutex_unlock(&r->lock);
    }
}

void uz_region_unreserve(struct uz_region *r, unsigned n)
{
    if (!n)
        return;
    atomic_fetch_sub(&r->resident, n);
    uz_region_room_freed(r);
}

void uz_region_room_freed(struct uz_region *r)
{
    if (!atomic_load(&r->room_waiters))
        return;
    pthread_mutex_lock(&r->lock);
    pthread_cond_broadcast(&r->room_cond);
    pthread_mutex_unlock(&r->lock);
}

void uz_region_note_sample(struct uz_region *r, bool written)
{
    int s = atomic_load_explicit(&r->wscore, memory_order_relaxed);
    int target = written ? 1024 : 0;
    atomic_store_explicit(&r->wscore, s + (target - s) / 8, memory_order_relaxed);
}

/* ---- create / destroy ---- */

/* Maps memory for the library's own use and locks it. `lazy` (the page words, 2 MiB per GiB of
 * region; snapshot and staging buffers): locked as it is first touched (MLOCK_ONFAULT), so that
 * create neither populates nor locks the words of pages never used, and mapped so that an
 * mlockall(MCL_FUTURE) does not either (uz_map_unlocked()); a kernel without MLOCK_ONFAULT
 * leaves them unlocked. */
static void *map_locked(size_t bytes, bool lazy, bool *locked)
{
    void *p = lazy ? uz_map_unlocked(bytes, 0)
                   : mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!p || p == MAP_FAILED)
        return NULL;
    if (lazy ? syscall(SYS_mlock2, p, bytes, MLOCK_ONFAULT) != 0 : mlock(p, bytes) != 0)
        *locked = false;
    return p;
}

void uz_region_init_sync(struct uz_region *r)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->scratch_lock, NULL);
    pthread_mutex_init(&r->read_lock, NULL);
    pthread_cond_init(&r->reclaim_cond, &ca);
    pthread_cond_init(&r->room_cond, &ca);
    pthread_cond_init(&r->req_cond, &ca);
    pthread_cond_init(&r->wb_cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* Private anonymous memory of `bytes` starting at a multiple of `align` (a power of two), or
 * NULL, neither populated nor locked by mlockall(MCL_FUTURE) (uz_map_unlocked()). The address
 * space around it is given back. */
static void *map_aligned(size_t bytes, size_t align)
{
    unsigned char *p = uz_map_unlocked(bytes + align, MAP_NORESERVE);
    if (!p)
        return NULL;
    unsigned char *a = (unsigned char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    munmap(a + bytes, (size_t)(p + align - a));
    return a;
}

static void teardown(struct uz_region *r)
{
    uz_region_fork_untrack(r); /* no fork handler touches it from here */
    atomic_store(&r->stop, true);
    broadcast_all(r);
    if (r->reclaim_started)
        pthread_join(r->reclaim_thread, NULL);
    /* Writes in flight complete into the page words, which are still there. */
    if (r->dev)
        uz_dev_flush(r->dev);
    /* Each running fault thread leaves after serving one fault on a doorbell page; every
     * page faults once (it is mapped by the answer), so ring page t for thread t. */
    unsigned running = 0;
    for (unsigned t = 0; r->ft && t < r->nfault; t++)
        running += r->ft[t].started;
    /* mlockall(MCL_CURRENT) after create may have populated (and locked) the doorbell: empty
     * it again first (raw munlock: the sanitizers' interceptor does nothing, and a locked page
     * cannot be dropped). */
    if (running) {
        (void)syscall(SYS_munlock, r->doorbell, (size_t)r->nfault * UZ_PAGE_SIZE);
        (void)uz_region_sys_madvise(r, r->doorbell, (size_t)r->nfault * UZ_PAGE_SIZE,
                                    MADV_DONTNEED);
    }
    for (unsigned t = 0; t < running; t++)
        (void)*(volatile unsigned char *)(r->doorbell + (size_t)t * UZ_PAGE_SIZE);
    for (unsigned t = 0; r->ft && t < r->nfault; t++)
        if (r->ft[t].started)
            pthread_join(r->ft[t].thread, NULL);
    uz_region_sys_close(r);
    if (r->pidfd_own >= 0)
        close(r->pidfd_own);
    /* Not the holes: what is mapped there now is the application's. */
    for (uint64_t i = 0; r->base && i < r->npages;) {
        uint64_t j = i;
        while (j < r->npages &&
               (!r->pages || uz_pg_state(atomic_load_explicit(&r->pages[j],
                                                              memory_order_relaxed)) != UZ_PG_HOLE))
            j++;
        if (j > i)
            munmap(r->base + i * UZ_PAGE_SIZE, (j - i) * UZ_PAGE_SIZE);
        i = j + 1;
    }
    if (r->doorbell)
        munmap(r->doorbell, (size_t)r->nfault * UZ_PAGE_SIZE);
    if (r->scratch)
        munmap(r->scratch, (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE);
    if (r->scratch_cmp)
        munmap(r->scratch_cmp, UZ_PAGE_SIZE);
    if (r->trash)
        munmap(r->trash, (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE);
    uz_dev_destroy(r->dev);
    for (unsigned t = 0; r->ft && t < r->nfault; t++)
        if (r->ft[t].staging)
            munmap(r->ft[t].staging, UZ_RA_MAX * UZ_PAGE_SIZE);
    for (unsigned t = 0; r->ft && t < r->nfault; t++)
        free(r->ft[t].defer);
    free(r->ft);
    if (r->pages)
        munmap(r->pages, r->pages_bytes);
    if (r->bufs)
        munmap(r->bufs, (size_t)UZ_REGION_NREQ * UZ_PAGE_SIZE);
    if (r->zeros)
        munmap(r->zeros, UZ_RA_MAX * UZ_PAGE_SIZE);
    free(r->reqs);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->scratch_lock);
    pthread_mutex_destroy(&r->read_lock);
    pthread_cond_destroy(&r->reclaim_cond);
    pthread_cond_destroy(&r->room_cond);
    pthread_cond_destroy(&r->req_cond);
    pthread_cond_destroy(&r->wb_cond);
    uz_region_wd_destroy(r);
    free(r);
}

static unsigned default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > 4 ? 4 : (unsigned)n;
}

/* Starts a thread with every signal blocked: the application's signal handlers must never run
 * on a fault-service thread (a handler touching the region there would deadlock). */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!rc)
        pthread_setname_np(*t, name);
    return -rc;
}

int uz_region_start_thread(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    return start_thread(t, fn, arg, name);
}

int uz_region_create(const struct uz_region_config *cfg, struct uz_region **out)
{
    if (!cfg || !out || !cfg->size || cfg->size % UZ_PAGE_SIZE)
        return -EINVAL;
    uint64_t limit = cfg->resident_limit / UZ_PAGE_SIZE;
    if (cfg->resident_limit && limit < UZ_REGION_MIN_LIMIT)
        return -EINVAL;
    struct uz_region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->uffd = -1;
    r->trash_uffd = -1;
    uz_region_wd_init(r, cfg->watchdog_ms);
    r->pid = getpid();
    r->pidfd_own = (int)syscall(SYS_pidfd_open, r->pid, 0);
    atomic_store(&r->pidfd, r->pidfd_own);
    r->size = cfg->size;
    r->npages = cfg->size / UZ_PAGE_SIZE;
    r->limit_bytes = cfg->resident_limit;
    if (cfg->clean_limit == SIZE_MAX)
        r->clean_max = UINT64_MAX;
    else if (cfg->clean_limit)
        r->clean_max = cfg->clean_limit / UZ_PAGE_SIZE;
    else
        r->clean_max = (limit ? limit : r->npages) / 8;
    r->locked = true;
    uz_region_init_sync(r);
    atomic_store(&r->reclaim_busy, true);

    if (limit && limit < r->npages) {
        uint64_t slack = limit / 32;
        if (slack < 1)
            slack = 1;
        if (slack > 4096)
            slack = 4096;
        r->limit = limit;
        r->start_wm = limit - slack;
        r->stop_wm = limit - 2 * slack;
    }

    unsigned workers = cfg->workers ? cfg->workers : default_workers();
    r->nfault = workers > 1 ? workers / 2 : 1;

    int rc = uz_region_sys_open(r);
    if (rc)
        goto fail;
    /* The region, its doorbell and its scratch (below) must be empty when userfaultfd is
     * registered, and mlockall(MCL_FUTURE) would populate (and lock) them here: a page
     * populated before the registration never faults (the region's pages would be written
     * unseen, resident and never counted or evicted: the limit ignored; the doorbell's would
     * not wake its fault thread at destroy unless emptied again, see teardown()). Region
     * memory is swap, never locked by MCL_FUTURE, so that its resident limit holds (region.h:
     * mlock): uz_map_unlocked() maps all three neither populated nor locked. */
    r->base = uz_map_unlocked(r->size, MAP_NORESERVE);
    if (!r->base) {
        rc = -errno;
        goto fail;
    }
    /* 4 KiB pages only (userfaultfd serves them one pte at a time; a kernel without THP
     * refuses the advice, which is as good). Inherited by a child of fork(), which serves it
     * with its own userfaultfd (region_fork.c). */
    rc = uz_region_sys_madvise(r, r->base, r->size, MADV_NOHUGEPAGE);
    if (rc && rc != -EINVAL)
        goto fail;
    r->doorbell = uz_map_unlocked((size_t)r->nfault * UZ_PAGE_SIZE, 0);
    if (!r->doorbell) {
        rc = -ENOMEM;
        goto fail;
    }
    /* The scratch is private anonymous memory with the region's protection, unlocked, as
     * UFFDIO_MOVE requires of the two ends, and within one page table (2 MiB aligned), so that
     * a run of victims moves with one TLB flush (region_sys.c). */
    if (!(r->scratch = map_aligned((size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE, 2u << 20))) {
        rc = -ENOMEM;
        goto fail;
    }
    (void)uz_region_sys_madvise(r, r->scratch, (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE,
                                MADV_NOHUGEPAGE);
    if (r->trash_uffd >= 0) { /* the same, for the same reasons (r->trash) */
        if (!(r->trash = map_aligned((size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE, 2u << 20))) {
            rc = -ENOMEM;
            goto fail;
        }
        (void)uz_region_sys_madvise(r, r->trash, (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE,
                                    MADV_NOHUGEPAGE);
    }
    if ((rc = uz_region_sys_register(r)))
        goto fail;

    r->pages_bytes = r->npages * sizeof(r->pages[0]);
    r->pages = map_locked(r->pages_bytes, true, &r->locked);
    /* Snapshot buffers and staging are locked as they are first used (MLOCK_ONFAULT): the
     * request free list is LIFO, so only as many buffers as were ever in flight at once become
     * resident (populating all 512 cost 2 MiB per region, most of a region's fixed cost). */
    r->bufs = map_locked((size_t)UZ_REGION_NREQ * UZ_PAGE_SIZE, true, &r->locked);
    r->zeros = map_locked(UZ_RA_MAX * UZ_PAGE_SIZE, false, &r->locked);
    r->scratch_cmp = map_locked(UZ_PAGE_SIZE, false, &r->locked);
    r->reqs = calloc(UZ_REGION_NREQ, sizeof(*r->reqs));
    r->ft = calloc(r->nfault, sizeof(*r->ft));
    rc = -ENOMEM;
    if (!r->pages || !r->bufs || !r->zeros || !r->scratch_cmp || !r->reqs || !r->ft)
        goto fail;
    for (unsigned i = 0; i < UZ_REGION_NREQ; i++) {
        r->reqs[i].r = r;
        r->reqs[i].buf = r->bufs + (size_t)i * UZ_PAGE_SIZE;
        r->reqs[i].next = r->free_reqs;
        r->free_reqs = &r->reqs[i];
    }
    r->nfree = UZ_REGION_NREQ;
    for (unsigned t = 0; t < r->nfault; t++) {
        r->ft[t].r = r;
        r->ft[t].staging = map_locked(UZ_RA_MAX * UZ_PAGE_SIZE, true, &r->locked);
        r->ft[t].defer = calloc(UZ_FAULT_DEFER, sizeof(struct uffd_msg));
        if (!r->ft[t].staging || !r->ft[t].defer)
            goto fail;
    }

    struct uz_dev_config dc = {
        .disksize = r->size,
        .algorithm = cfg->algorithm,
        .workers = workers,
    };
    if ((rc = uz_dev_create(&dc, &r->dev)))
        goto fail;
    /* As swapon does with SWP_STABLE_WRITES: the device reads what it is given after the
     * submitting call returned, so what it is given must not change until completion. The
     * region gives it a snapshot that the request owns until then, and keeps the page itself
     * write-protected from the snapshot until the drop. */
    r->stable_writes = uz_dev_stable_writes(r->dev);

    for (unsigned t = 0; t < r->nfault; t++) {
        if ((rc = start_thread(&r->ft[t].thread, uz_region_fault_main, &r->ft[t], "uzram-fault")))
            goto fail;
        r->ft[t].started = true;
    }
    if (r->limit) {
        if ((rc = start_thread(&r->reclaim_thread, uz_region_reclaim_main, r, "uzram-reclaim")))
            goto fail;
        r->reclaim_started = true;
    }
    if ((rc = uz_region_fork_track(r)))
        goto fail;
    *out = r;
    return 0;
fail:
    teardown(r);
    return rc;
}

void uz_region_destroy(struct uz_region *r)
{
    if (r)
        teardown(r);
}

int uz_region_probe(void)
{
    struct uz_region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->uffd = r->trash_uffd = -1;
    int rc = uz_region_sys_open(r);
    if (!rc)
        rc = r->mode;
    if (r->uffd >= 0)
        close(r->uffd);
    if (r->trash_uffd >= 0)
        close(r->trash_uffd);
    free(r);
    return rc;
}

void *uz_region_base(struct uz_region *r)
{
    return r ? r->base : NULL;
}

int uz_region_fds(struct uz_region *r, int *fds, unsigned max)
{
    if (!r || (max && !fds))
        return -EINVAL;
    int have[3] = {r->uffd, r->trash_uffd, r->pidfd_own};
    unsigned n = 0;
    for (unsigned k = 0; k < 3; k++) {
        if (have[k] < 0)
            continue;
        if (n < max)
            fds[n] = have[k];
        n++;
    }
    return (int)n;
}

struct uz_dev *uz_region_dev(struct uz_region *r)
{
    return r ? r->dev : NULL;
}

/* ---- statistics ---- */

/* O(1): the counts uz_region_pg_unlock() keeps (a sum read while pages change state can be
 * off by the changes in progress, never below 0). */
static uint64_t state_count(struct uz_region *r, unsigned st)
{
    int64_t v = uz_counter_read(&r->nstate[st]);
    return v > 0 ? (uint64_t)v : 0;
}

int uz_region_stat(struct uz_region *r, struct uz_region_stat *st)
{
    if (!r || !st)
        return -EINVAL;
    memset(st, 0, sizeof(*st));
    st->size = r->size;
    st->resident_limit = r->limit_bytes;
    /* A fault thread publishes a page's new state just after the ioctl that woke the faulting
     * thread: wait for the faults being handled now (bounded work), so that a thread back
     * from a fault sees its effect here. */
    for (unsigned t = 0; r->ft && t < r->nfault; t++) {
        uint64_t b = atomic_load(&r->ft[t].busy);
        for (unsigned spins = 0; (b & 1) && atomic_load(&r->ft[t].busy) == b; spins++) {
            if (spins < 64)
                uz_cpu_relax();
            else
                sched_yield();
        }
    }
    st->dirty_pages = state_count(r, UZ_PG_DIRTY);
    st->clean_pages = state_count(r, UZ_PG_CLEAN);
    st->writeback_pages = state_count(r, UZ_PG_WB);
    st->swapped_pages = state_count(r, UZ_PG_SWAPPED);
    st->hole_pages = state_count(r, UZ_PG_HOLE);
    st->evict_saved = (uint64_t)uz_counter_read(&r->st.evict_saved);
    st->events = r->ev_unmap;
    st->remove_events = r->ev_remove;
    st->pinned_pages = atomic_load(&r->pinned);
    st->resident_pages = st->dirty_pages + st->clean_pages + st->writeback_pages;
    struct uz_region_stats *c = &r->st;
    st->major_faults = (uint64_t)uz_counter_read(&c->major_faults);
    st->minor_faults = (uint64_t)uz_counter_read(&c->minor_faults);
    st->wp_faults = (uint64_t)uz_counter_read(&c->wp_faults);
    st->swapins = (uint64_t)uz_counter_read(&c->swapins);
    st->readahead_pages = (uint64_t)uz_counter_read(&c->readahead_pages);
    st->swapouts = (uint64_t)uz_counter_read(&c->swapouts);
    st->swapouts_clean = (uint64_t)uz_counter_read(&c->swapouts_clean);
    st->writebacks = (uint64_t)uz_counter_read(&c->writebacks);
    st->redirtied = (uint64_t)uz_counter_read(&c->redirtied);
    st->throttled = (uint64_t)uz_counter_read(&c->throttled);
    st->read_errors = (uint64_t)uz_counter_read(&c->read_errors);
    st->writeback_errors = (uint64_t)uz_counter_read(&c->wb_errors);
    st->sys_errors = (uint64_t)uz_counter_read(&c->sys_errors);
    st->evict_refused = (uint64_t)uz_counter_read(&c->evict_refused);
    st->evict_restored = (uint64_t)uz_counter_read(&c->evict_restored);
    st->writebacks_unprotected = (uint64_t)uz_counter_read(&c->wb_unprotected);
    st->kept_pages = atomic_load(&r->kept);
    st->stalls = (uint64_t)uz_counter_read(&r->wd.stalls);
    st->move_eviction = r->can_move;
    struct uz_dev_stats ds;
    if (!uz_dev_stats(r->dev, &ds)) {
        st->orig_data_size = ds.orig_data_size;
        st->compr_data_size = ds.compr_data_size;
        st->mem_used_total = ds.mem_used_total;
    }
    st->failed = atomic_load(&r->failed);
    st->mode = r->mode;
    st->stable_writes = r->stable_writes;
    st->locked = r->locked;
    return 0;
}

/* ---- pinning ---- */

static bool range_pages(struct uz_region *r, const void *addr, size_t len, uint64_t *first,
                        uint64_t *end)
{
    uintptr_t a = (uintptr_t)addr, b = (uintptr_t)r->base;
    if (!len || a < b || a - b >= r->size || len > r->size - (a - b))
        return false;
    *first = (a - b) / UZ_PAGE_SIZE;
    *end = UZ_DIV_ROUND_UP(a - b + len, UZ_PAGE_SIZE);
    return true;
}

/* Gives back n pages of the pin budget (only kept with a resident limit). */
static void budget_put(struct uz_region *r, uint64_t n)
{
    if (r->limit && n)
        atomic_fetch_sub(&r->pin_budget, n);
}

static int unpin_range(struct uz_region *r, uint64_t first, uint64_t end)
{
    int rc = 0;
    for (uint64_t i = first; i < end; i++) {
        uint64_t w = uz_region_pg_lock(r, i);
        if (!uz_pg_pins(w)) {
            rc = -EINVAL;
        } else {
            w -= UZ_PG_PIN_ONE;
            if (!uz_pg_pins(w)) {
                atomic_fetch_sub(&r->pinned, 1);
                budget_put(r, 1);
            }
        }
        uz_region_pg_unlock(r, i, w);
    }
    return rc;
}

/* Makes locked page i resident and writable (DIRTY); the caller holds a reservation of one page
 * for the case it is not resident. @return : 0 (and *used when the reservation was used). */
static int make_writable(struct uz_region *r, uint64_t i, uint64_t *w, bool *used)
{
    unsigned st = uz_pg_state(*w);
    if (st == UZ_PG_HOLE)
        return -EINVAL; /* not the region's */
    if (st == UZ_PG_EMPTY || st == UZ_PG_SWAPPED) {
        unsigned char page[UZ_PAGE_SIZE] __attribute__((aligned(64)));
        int err = 0;
        *used = uz_region_fill_run(r, page, i, 1, w, true, &err) == 1;
        if (*used)
            return 0;
        return err == -EIO ? -EIO : uz_region_error(r, err); /* -EIO: the device's */
    }
    if (st == UZ_PG_CLEAN) {
        uz_region_discard_slot(r, i);
    } else if (st == UZ_PG_WB) {
        *w = uz_pg_next_gen(*w);
        uz_counter_add(&r->st.redirtied, 1);
    }
    /* DIRTY even when the unprotect fails: the slot is gone or the writeback abandoned, and a
     * DIRTY page may be write-protected (its next write fault unprotects it). DIRTY may still be
     * write-protected after a failed writeback: unprotect in every case. */
    *w = uz_pg_dirtied(*w);
    int rc = uz_region_sys_wp(r, i, 1, false);
    return rc ? uz_region_error(r, rc) : 0;
}

int uz_region_pin(struct uz_region *r, void *addr, size_t len)
{
    uint64_t first, end;
    if (!r || !range_pages(r, addr, len, &first, &end))
        return -EINVAL;
    if (uz_region_failed(r))
        return -EIO;
    uint64_t n = end - first;
    if (r->limit) {
        /* Claim the whole range against the budget first, in one CAS: pinners that pass
         * together can never pin more than half the limit between them, so reclaim always has
         * the other half to make room with and the reservations below always end. A page found
         * pinned already gives its claim back. */
        uint64_t b = atomic_load(&r->pin_budget);
        do {
            if (n > r->limit / 2 - (b < r->limit / 2 ? b : r->limit / 2))
                return -ENOMEM;
        } while (!atomic_compare_exchange_weak(&r->pin_budget, &b, b + n));
    }
    for (uint64_t i = first; i < end; i++) {
        /* Reserve before locking (reclaim may need page locks to make room). */
        unsigned got = uz_region_reserve(r, 1, 1);
        uint64_t w = uz_region_pg_lock(r, i);
        bool used = false;
        int rc = make_writable(r, i, &w, &used);
        if (!rc) {
            if (uz_pg_pins(w) == 0xffff) {
                rc = -EINVAL;
            } else {
                if (!uz_pg_pins(w))
                    atomic_fetch_add(&r->pinned, 1); /* the claim becomes the pin */
                else
                    budget_put(r, 1);
                w += UZ_PG_PIN_ONE;
            }
        }
        uz_region_pg_unlock(r, i, w);
        if (!used)
            uz_region_unreserve(r, got);
        if (rc) {
            unpin_range(r, first, i);
            budget_put(r, end - i);
            return rc == -EINVAL ? rc : -EIO;
        }
    }
    return 0;
}

int uz_region_unpin(struct uz_region *r, void *addr, size_t len)
{
    uint64_t first, end;
    if (!r || !range_pages(r, addr, len, &first, &end))
        return -EINVAL;
    return unpin_range(r, first, end);
}

/* ---- discard ---- */

/* Discards locked pages idx..idx+n-1 (words[] their locked words): the resident ones are
 * unmapped in one system call, and each page ends EMPTY with its stored copy freed, except a
 * pinned page, mapped again writable with zeros. @return : 0 or the first error (the pages
 * of a run that could not be unmapped keep their state). */
static int discard_locked(struct uz_region *r, uint64_t idx, unsigned n, uint64_t *words)
{
    struct iovec iov[UZ_RECLAIM_BATCH];
    unsigned run[UZ_RECLAIM_BATCH];
    bool ok[UZ_RECLAIM_BATCH];
    unsigned niov = 0;
    for (unsigned k = 0; k < n; k++) {
        if (!uz_pg_resident(uz_pg_state(words[k])))
            continue;
        unsigned char *a = r->base + (idx + k) * UZ_PAGE_SIZE;
        if (niov && (unsigned char *)iov[niov - 1].iov_base + iov[niov - 1].iov_len == a) {
            iov[niov - 1].iov_len += UZ_PAGE_SIZE;
        } else {
            iov[niov].iov_base = a;
            iov[niov++].iov_len = UZ_PAGE_SIZE;
        }
        run[k] = niov - 1;
    }
    int rc = niov ? uz_region_sys_zap(r, iov, niov, ok) : 0, first_err = 0;
    if (rc)
        first_err = uz_region_error(r, rc);
    uint64_t freed = 0;
    for (unsigned k = 0; k < n; k++) {
        uint64_t w = words[k];
        unsigned st = uz_pg_state(w);
        if (uz_pg_resident(st) && !ok[run[k]])
            continue; /* still mapped: unchanged */
        if (st == UZ_PG_EMPTY)
            continue;
        if (st == UZ_PG_CLEAN || st == UZ_PG_SWAPPED)
            uz_region_discard_slot(r, idx + k);
        /* A writeback in flight (WB, or DIRTY after a redirty) completes into an EMPTY page:
         * its completion frees what it stored (wb_done). */
        if (st == UZ_PG_WB)
            w = uz_pg_next_gen(w);
        w &= ~(UZ_PG_REF | UZ_PG_SAMPLE | UZ_PG_FRESH);
        if (uz_pg_pins(w)) {
            /* Pinned pages stay resident and writable: zeros mapped back at once. */
            unsigned done;
            int crc = uz_region_sys_copy(r, idx + k, r->zeros, 1, false, &done);
            if (crc && !first_err)
                first_err = uz_region_error(r, crc);
            words[k] = uz_pg_set_state(w, UZ_PG_DIRTY); /* a missing fault maps zeros too */
            continue;
        }
        freed += uz_pg_resident(st);
        words[k] = uz_pg_set_state(w, UZ_PG_EMPTY);
    }
    if (freed) {
        atomic_fetch_sub(&r->resident, freed);
        uz_region_room_freed(r);
    }
    return first_err;
}

/* With REMOVE events (r->ev_remove) no page lock may be held across a madvise of region
 * memory (a fault thread would have to read its event, and may be waiting for one of them).
 * So the locked pages leave by moving into the scratch (no event), from where they are
 * dropped; those the kernel will not move (pinned for I/O, mlock'ed, mprotect'ed) are left in
 * *stubborn[] for a plain madvise once every lock is let go. Pages pinned by uz_region_pin()
 * get zeros written in place instead. @return : 0 or the first error. */
static int discard_moving(struct uz_region *r, uint64_t idx, unsigned n, uint64_t *words,
                          bool *stubborn)
{
    int first_err = 0;
    uint64_t freed = 0;
    bool keep[UZ_RECLAIM_BATCH]; /* a resident page left as it is (an error) */
    unsigned resets = 0;
    bool again = false;
    pthread_mutex_lock(&r->scratch_lock);
    for (unsigned k = 0; k < n; k++)
        stubborn[k] = keep[k] = false;
    for (unsigned k = 0; k < n;) {
        if (!uz_pg_resident(uz_pg_state(words[k])) || uz_pg_pins(words[k])) {
            k++;
            continue;
        }
        unsigned len = 1;
        while (k + len < n && uz_pg_resident(uz_pg_state(words[k + len])) &&
               !uz_pg_pins(words[k + len]))
            len++;
        unsigned done = 0;
        int rc = uz_region_sys_move_run(r, r->scratch + (size_t)k * UZ_PAGE_SIZE,
                                        r->base + (idx + k) * UZ_PAGE_SIZE, len, &done);
        if (rc == -EEXIST && resets++ < 2) {
            /* mlockall populated the scratch: empty it (the pages moved so far go too, as
             * they should) and go on from where the move stopped. */
            k += done;
            if ((rc = uz_region_sys_scratch_unlock(r)) && !first_err)
                first_err = uz_region_error(r, rc);
            continue;
        }
        k += done;
        if (!rc)
            continue;
        if (rc == -EBUSY || rc == -EINVAL) {
            stubborn[k] = true; /* pinned for I/O, mlock'ed or mprotect'ed */
        } else if (rc == -EAGAIN) {
            /* The application changes its mappings (an event waits to be read, and may wait
             * for one of these locks): the rest of the batch is tried again unlocked. */
            for (; k < n; k++)
                keep[k] = true;
            again = true;
            break;
        } else if (rc != -ENOENT) { /* ENOENT: dropped by the application, as good as moved */
            keep[k] = true;
            first_err = first_err ? first_err : uz_region_error(r, rc);
        }
        k++;
    }
    for (unsigned k = 0; k < n; k++) {
        uint64_t w = words[k];
        unsigned st = uz_pg_state(w);
        if (st == UZ_PG_EMPTY || st == UZ_PG_HOLE || stubborn[k] || keep[k])
            continue;
        if (st == UZ_PG_CLEAN || st == UZ_PG_SWAPPED)
            uz_region_discard_slot(r, idx + k);
        if (st == UZ_PG_WB)
            w = uz_pg_next_gen(w); /* its completion frees what it stored (wb_done) */
        w &= ~(UZ_PG_REF | UZ_PG_SAMPLE | UZ_PG_FRESH);
        if (uz_pg_pins(w)) {
            /* Pinned pages stay resident and writable: zeros written in place (a pinned page
             * is DIRTY and unprotected), or, unwritable (mprotect), dropped below. */
            words[k] = uz_pg_set_state(w, UZ_PG_DIRTY);
            if (uz_region_sys_write(r, idx + k, r->zeros))
                stubborn[k] = true;
            continue;
        }
        if (uz_pg_resident(st) && (w & UZ_PG_KEPT))
            atomic_fetch_sub(&r->kept, 1);
        else if (uz_pg_resident(st))
            freed++;
        words[k] = uz_pg_set_state(w & ~UZ_PG_KEPT, UZ_PG_EMPTY);
    }
    int rc = uz_region_sys_scratch_free(r, n);
    if (rc && !first_err)
        first_err = uz_region_error(r, rc);
    pthread_mutex_unlock(&r->scratch_lock);
    if (freed) {
        atomic_fetch_sub(&r->resident, freed);
        uz_region_room_freed(r);
    }
    return first_err ? first_err : again ? -EAGAIN : 0;
}

/* The pages discard_moving() could not move: dropped with madvise, holding no page lock; the
 * REMOVE event does the rest (region_fault.c), and taking read_lock once waits for it. A
 * pinned page gets zeros mapped back at once. @return : 0, or -errno of madvise. */
static int discard_stubborn(struct uz_region *r, uint64_t idx, unsigned n, const bool *stubborn)
{
    int first_err = 0;
    bool any = false;
    for (unsigned k = 0; k < n; k++) {
        if (!stubborn[k])
            continue;
        any = true;
        int rc = uz_region_sys_madvise(r, r->base + (idx + k) * UZ_PAGE_SIZE, UZ_PAGE_SIZE,
                                       MADV_DONTNEED);
        if (rc && !first_err)
            first_err = rc;
    }
    if (!any)
        return 0;
    uz_region_events_settle(r); /* the events of the calls above are handled */
    for (unsigned k = 0; k < n; k++) {
        if (!stubborn[k])
            continue;
        uint64_t w = uz_region_pg_lock(r, idx + k);
        if (uz_pg_pins(w) && uz_pg_resident(uz_pg_state(w))) {
            unsigned done;
            int crc = uz_region_sys_copy(r, idx + k, r->zeros, 1, false, &done);
            if (crc && crc != -EEXIST && !first_err)
                first_err = uz_region_error(r, crc);
        }
        uz_region_pg_unlock(r, idx + k, w);
    }
    return first_err;
}

int uz_region_discard(struct uz_region *r, void *addr, size_t len)
{
    uint64_t first, end;
    if (!r || ((uintptr_t)addr & (UZ_PAGE_SIZE - 1)) || !range_pages(r, addr, len, &first, &end))
        return -EINVAL;
    if (uz_region_failed(r))
        return -EIO;
    uint64_t words[UZ_RECLAIM_BATCH];
    int rc = 0;
    unsigned tries = 0;
    for (uint64_t i = first; i < end;) {
        unsigned n = end - i < UZ_RECLAIM_BATCH ? (unsigned)(end - i) : UZ_RECLAIM_BATCH;
        bool stubborn[UZ_RECLAIM_BATCH];
        for (unsigned k = 0; k < n; k++) /* ascending: the lock order */
            words[k] = uz_region_pg_lock(r, i + k);
        int brc = r->ev_remove ? discard_moving(r, i, n, words, stubborn)
                               : discard_locked(r, i, n, words);
        if (brc && brc != -EAGAIN && !rc)
            rc = brc;
        for (unsigned k = 0; k < n; k++)
            uz_region_pg_unlock(r, i + k, words[k]);
        if (brc == -EAGAIN && ++tries < 10000) {
            /* Unlocked now: the event in the way can be handled. The batch again (its pages
             * discarded already are EMPTY). */
            if (tries > 2)
                usleep(tries < 100 ? 10 : 1000);
            if ((brc = discard_stubborn(r, i, n, stubborn)) && !rc)
                rc = brc;
            continue;
        }
        if (brc == -EAGAIN && !rc)
            rc = brc;
        tries = 0;
        if (r->ev_remove && (brc = discard_stubborn(r, i, n, stubborn)) && !rc)
            rc = brc;
        i += n;
    }
    return rc ? (uz_region_failed(r) ? -EIO : rc) : 0;
}

/* ---- explicit swap-out ---- */

enum {
    UZ_SWAPOUT_ROUNDS = 3,   /* rounds of uz_region_swapout() at most */
    UZ_SWAPOUT_WAIT_MS = 200 /* its wait for another's writeback, at most, per round */
};

/* One pass of uz_region_swapout() over pages [first, end): drops the CLEAN pages and, with
 * dirty_too, starts the writeback of the DIRTY ones. Pages found under a writeback that is not
 * ours (the reclaim thread's: it may not even be queued yet) are counted in *nbusy, the first
 * UZ_RECLAIM_BATCH of them kept in busy[] with their words. */
static long swapout_pass(struct uz_region *r, uint64_t first, uint64_t end, bool dirty_too,
                         uint64_t *busy, uint64_t *busy_w, unsigned *nbusy)
{
    uint64_t clean[UZ_RECLAIM_BATCH], dirty[UZ_RECLAIM_BATCH];
    long dropped = 0;
    uint64_t i = first;
    while (i < end) {
        unsigned nc = 0, nd = 0;
        for (; i < end && nc < UZ_RECLAIM_BATCH && nd < UZ_RECLAIM_BATCH; i++) {
            uint64_t w = uz_region_pg_settled(r, i);
            if (uz_pg_pins(w))
                continue;
            if (uz_pg_state(w) == UZ_PG_CLEAN) {
                clean[nc++] = i;
            } else if (uz_pg_state(w) == UZ_PG_DIRTY && dirty_too && !(w & UZ_PG_INFLIGHT)) {
                dirty[nd++] = i;
            } else if (uz_pg_state(w) == UZ_PG_WB && !dirty_too) {
                if (*nbusy < UZ_RECLAIM_BATCH) {
                    busy[*nbusy] = i;
                    busy_w[*nbusy] = w;
                }
                (*nbusy)++;
            }
        }
        dropped += uz_region_drop(r, clean, NULL, nc);
        for (unsigned k = 0; k < nd;)
            k += uz_region_writeback(r, dirty + k, nd - k, false);
    }
    return dropped;
}

/* Waits (UZ_SWAPOUT_WAIT_MS at most) until none of pages busy[0..n) is under the writeback it
 * was under (word busy_w[k]): state WB, same generation. Holds r->lock (lock order 3) and only
 * reads the page words, so it never waits for a page lock under it. */
static void swapout_wait(struct uz_region *r, const uint64_t *busy, const uint64_t *busy_w,
                         unsigned n)
{
    struct timespec ts;
    deadline_in(&ts, UZ_SWAPOUT_WAIT_MS);
    pthread_mutex_lock(&r->lock);
    r->wb_waiters++;
    for (unsigned k = 0; k < n && !atomic_load(&r->stop) && !uz_region_failed(r);) {
        uint64_t w = atomic_load(&r->pages[busy[k]]);
        if (uz_pg_state(w) != UZ_PG_WB || uz_pg_gen(w) != uz_pg_gen(busy_w[k]))
            k++;
        else if (pthread_cond_timedwait(&r->wb_cond, &r->lock, &ts) == ETIMEDOUT)
            break;
    }
    r->wb_waiters--;
    pthread_mutex_unlock(&r->lock);
}

long uz_region_swapout(struct uz_region *r, void *addr, size_t len)
{
    uint64_t first, end;
    if (!r || !range_pages(r, addr, len, &first, &end))
        return -EINVAL;
    if (uz_region_failed(r))
        return -EIO;
    /* Write back the dirty pages, wait, drop the clean ones. Two things leave a page that
     * nobody wrote during the call resident after one round, and send the range round again
     * (at most UZ_SWAPOUT_ROUNDS times, so that pages written all along cannot keep us here):
     * - the reclaim thread's own writeback of it, maybe not queued yet when we flushed: we wait
     *   for it to end (the page is CLEAN then, or DIRTY if a write came);
     * - an unprotected eviction's page (UZ_PG_UNPROT) written after its snapshot, before this
     *   call, which a drop found changed and put back DIRTY (evict_restored moves). */
    uint64_t busy[UZ_RECLAIM_BATCH], busy_w[UZ_RECLAIM_BATCH];
    long n = 0;
    for (unsigned round = 0; round < UZ_SWAPOUT_ROUNDS; round++) {
        int64_t restored = uz_counter_read(&r->st.evict_restored);
        unsigned nbusy = 0;
        n += swapout_pass(r, first, end, true, busy, busy_w, &nbusy);
        uz_dev_flush(r->dev);
        n += swapout_pass(r, first, end, false, busy, busy_w, &nbusy);
        if ((!nbusy && uz_counter_read(&r->st.evict_restored) == restored) || uz_region_failed(r))
            break;
        swapout_wait(r, busy, busy_w, nbusy < UZ_RECLAIM_BATCH ? nbusy : UZ_RECLAIM_BATCH);
    }
    return n;
}

/* ---- the application's mappings ---- */

/* Whether [addr, addr+len) is page-aligned and inside the region: its pages in *first, *end. */
static bool aligned_pages(struct uz_region *r, const void *addr, size_t len, uint64_t *first,
                          uint64_t *end)
{
    return r && !((uintptr_t)addr & (UZ_PAGE_SIZE - 1)) && !(len & (UZ_PAGE_SIZE - 1)) &&
           range_pages(r, addr, len, first, end);
}

int uz_region_unmap(struct uz_region *r, void *addr, size_t len)
{
    uint64_t first, end;
    if (!aligned_pages(r, addr, len, &first, &end))
        return -EINVAL;
    if (!r->ev_unmap)
        return -EOPNOTSUPP;
    /* The UNMAP event makes the pages holes; uz_region_events_settle() waits for its
     * handling (the munmap returned once a fault thread had read it). */
    if (munmap(addr, len))
        return -errno;
    uz_region_events_settle(r);
    return 0;
}

int uz_region_remap(struct uz_region *r, void *addr, size_t old_len, size_t new_len)
{
    uint64_t first, end;
    size_t span = old_len > new_len ? old_len : new_len;
    if (!old_len || !new_len || !aligned_pages(r, addr, span, &first, &end))
        return -EINVAL;
    if (new_len == old_len)
        return 0;
    if (new_len < old_len)
        return uz_region_unmap(r, (unsigned char *)addr + new_len, old_len - new_len);
    if (!r->ev_unmap)
        return -EOPNOTSUPP;
    /* Growing in place only: over holes of the region, which the kernel checks (ENOMEM when
     * anything is mapped there). The grown part is registered as the mapping it extends. */
    uint64_t from = first + old_len / UZ_PAGE_SIZE;
    for (uint64_t i = from; i < end; i++)
        if (uz_pg_state(uz_region_pg_settled(r, i)) != UZ_PG_HOLE)
            return -ENOMEM;
    if (mremap(addr, old_len, new_len, 0) == MAP_FAILED)
        return -errno;
    for (uint64_t i = from; i < end; i++) {
        uint64_t w = uz_region_pg_lock(r, i);
        if (uz_pg_state(w) == UZ_PG_HOLE)
            w = uz_pg_set_state(w, UZ_PG_EMPTY);
        uz_region_pg_unlock(r, i, w);
    }
    return 0;
}

int uz_region_protect(struct uz_region *r, void *addr, size_t len, int prot)
{
    uint64_t first, end;
    if (!aligned_pages(r, addr, len, &first, &end) ||
        (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
        return -EINVAL;
    for (uint64_t i = first; i < end; i++)
        if (uz_pg_state(uz_region_pg_settled(r, i)) == UZ_PG_HOLE)
            return -ENOMEM; /* as mprotect says of an unmapped range */
    return mprotect(addr, len, prot) ? -errno : 0;
}
