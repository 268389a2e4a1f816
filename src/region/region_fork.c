// SPDX-License-Identifier: MIT
/*
 * region_fork.c - fork() of a process with live regions (issue 8 item 7).
 *
 * Region memory is inherited like any private memory (copy-on-write), but what serves it is
 * not: the kernel clears the child's userfaultfd registration and every uffd-wp bit of its ptes
 * at fork (no UFFD_FEATURE_EVENT_FORK), the userfaultfd and pidfd the child inherits refer to
 * the PARENT's mm and process (an ioctl or process_madvise through them would change the
 * parent's pages), and only the forking thread runs in the child. One set of pthread_atfork
 * handlers serves every region, through a list of the live ones:
 *
 *   prepare  (fork list lock held from here to parent/child) for each region: fork_hold stops
 *            new writebacks and the handler waits for those in flight (every request back in
 *            the free list or the completed list: nothing left in the device's queues); then
 *            every page lock, ascending (whoever holds one finishes its bounded work; fault
 *            threads then wait for a page lock holding none, faults of other threads wait in
 *            the kernel), scratch_lock, the device (drained, init_lock held, worker locks),
 *            r->lock and r->ra_lock. No page is between two states at the fork.
 *   parent   releases all of it in reverse and clears fork_hold. Its resident pages are shared
 *            copy-on-write now, which UFFDIO_MOVE refuses (EBUSY, like a pinned page):
 *            uz_region_drop() makes such a page exclusive again (uz_region_fork_unshare())
 *            and retries, so the resident limit keeps holding.
 *   child    closes (never uses) the inherited userfaultfd and pidfd, initialises every lock
 *            and condition again, rebuilds the page words (no lock, nothing in flight or
 *            kept, CLEAN pages write-protected again through a new userfaultfd that registers
 *            the region, the scratch and the doorbell), counts the counters again, restarts
 *            the device's workers (uz_dev_fork_child()), the fault threads and reclaim.
 *            SWAPPED pages are served from the child's copy-on-write view of the device. If
 *            any of that fails the region is failed and PROT_NONE in the child: a touch
 *            crashes rather than reading swapped-out pages as zeros.
 * The prepare cost is O(pages of address space) (a lock per page word: a few ms per GiB) plus
 * the drain of the writebacks in flight; the kernel's fork copies page tables of resident memory
 * only. vfork() and posix_spawn() run no handlers and need none.
 */
#include "region_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dev_fork.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* The fork list lock: order 0, outside every lock of every region. Taken holding nothing by
 * uz_region_create/destroy (track/untrack) and by the prepare handler, which holds it across
 * the fork (it sleeps meanwhile: waits for writebacks, takes the regions' locks). */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct uz_region *list_head;
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;
static int handlers_rc;

/* ---- prepare / parent ---- */

static void prepare_one(struct uz_region *r)
{
    pthread_mutex_lock(&r->lock);
    r->fork_hold = true;
    /* Each request is free, completed (its page CLEAN and waiting for the drop), or in flight
     * (being prepared, queued, or running its completion): wait for the last to end. */
    while (r->nfree + r->ndone < UZ_REGION_NREQ)
        pthread_cond_wait(&r->req_cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
    /* No event half handled: the child registers what the page words say is the region's. */
    pthread_mutex_lock(&r->read_lock);
    /* An event read ahead or not read yet (a munmap on another thread, its caller waiting):
     * handled now, so the child's words agree with the mm it inherits (without memory the
     * child's region may fail, which it survives: see child_one). */
    (void)uz_region_events_drain(r);
    for (uint64_t i = 0; i < r->npages; i++)
        (void)uz_region_pg_lock(r, i);
    pthread_mutex_lock(&r->scratch_lock);
    /* Fails only from a completion callback of this device, which never forks. */
    r->fork_dev = uz_dev_fork_prepare(r->dev) == 0;
    pthread_mutex_lock(&r->lock);
    uz_spin_lock(&r->ra_lock);
}

static void parent_one(struct uz_region *r)
{
    atomic_store(&r->forked, true);
    uz_spin_unlock(&r->ra_lock);
    r->fork_hold = false;
    pthread_cond_broadcast(&r->req_cond);
    pthread_mutex_unlock(&r->lock);
    if (r->fork_dev)
        uz_dev_fork_parent(r->dev);
    pthread_mutex_unlock(&r->scratch_lock);
    /* The states did not change: unlocking with the word as it is (a waiter may have set
     * WAITERS meanwhile, which the unlock clears and answers). */
    for (uint64_t i = 0; i < r->npages; i++)
        uz_region_pg_unlock(r, i, atomic_load_explicit(&r->pages[i], memory_order_relaxed));
    pthread_mutex_unlock(&r->read_lock);
    uz_region_wake_reclaim(r);
}

static void prepare_all(void)
{
    pthread_mutex_lock(&list_lock);
    for (struct uz_region *r = list_head; r; r = r->fork_next)
        prepare_one(r);
}

static void parent_all(void)
{
    for (struct uz_region *r = list_head; r; r = r->fork_next)
        parent_one(r);
    pthread_mutex_unlock(&list_lock);
}

/* ---- child ---- */

static void init_locks(struct uz_region *r)
{
    uz_region_init_sync(r);
    atomic_store(&r->ra_lock.locked, false);
    /* The watchdog (region_watchdog.c): its leaf lock, and no wait or failing fault of the
     * parent's threads is the child's. */
    pthread_mutex_init(&r->wd.lock, NULL);
    atomic_store(&r->wd.fail_since, 0);
    for (unsigned t = 0; t < r->nfault; t++)
        atomic_store(&r->ft[t].wait_since, 0);
}

/* What the threads of the parent were doing is gone with them: their reservations, claims,
 * waits and fault messages. Every request is home (prepare drained them): the completed ones
 * were evictions of CLEAN pages, which the child will evict itself if it needs to. */
static void reset_threads_state(struct uz_region *r)
{
    while (r->done_reqs) {
        struct uz_region_req *q = r->done_reqs;
        r->done_reqs = q->next;
        q->next = r->free_reqs;
        r->free_reqs = q;
        r->nfree++;
    }
    r->ndone = 0;
    r->fork_hold = false;
    r->reclaim_kick = false;
    r->reclaim_started = false;
    atomic_store(&r->pending_evict, 0);
    atomic_store(&r->room_waiters, 0);
    atomic_store(&r->reclaim_busy, true);
    atomic_store(&r->reclaim_tid, 0);
    r->bl_head = r->bl_n = 0; /* faults of the parent's threads */
    for (unsigned t = 0; t < r->nfault; t++) {
        r->ft[t].started = false;
        r->ft[t].dhead = r->ft[t].ndefer = 0;
        atomic_store(&r->ft[t].busy, 0);
    }
}

/* Makes CLEAN pages first..first+n-1 DIRTY (their protection could not be restored). */
static void dirty_run(struct uz_region *r, uint64_t first, uint64_t n, uint64_t *count)
{
    for (uint64_t i = first; i < first + n; i++) {
        uint64_t w = atomic_load_explicit(&r->pages[i], memory_order_relaxed);
        uz_region_discard_slot(r, i);
        w = uz_pg_dirtied(w);
        atomic_store_explicit(&r->pages[i], w, memory_order_relaxed);
    }
    count[UZ_PG_CLEAN] -= n;
    count[UZ_PG_DIRTY] += n;
}

/* The page words in the child: no lock (the forking thread held them all), no writeback in
 * flight (drained), nothing kept (fork gives the child its own copy of a pinned page, and mlock
 * is not inherited). CLEAN pages lost their uffd-wp bit: protected again with the child's
 * userfaultfd when `protect` (a run that cannot be becomes DIRTY, its slots discarded).
 * Then the counters, from the words. @return : 0 or the first error of a protect. */
static int rebuild_pages(struct uz_region *r, bool protect)
{
    const uint64_t gone = UZ_PG_LOCK | UZ_PG_WAITERS | UZ_PG_INFLIGHT | UZ_PG_KEPT;
    uint64_t count[UZ_PG_NSTATES] = {0}, pinned = 0, run = 0, nrun = 0;
    int first_err = 0;
    for (uint64_t i = 0; i <= r->npages; i++) {
        unsigned st = UZ_PG_EMPTY;
        if (i < r->npages) {
            uint64_t w = atomic_load_explicit(&r->pages[i], memory_order_relaxed) & ~gone;
            if (uz_pg_state(w) == UZ_PG_WB) /* not after the drain; DIRTY is always safe */
                w = uz_pg_set_state(uz_pg_next_gen(w), UZ_PG_DIRTY);
            if (w & UZ_PG_UNPROT) {
                /* An unprotected eviction's page, its drop the parent's: never trusted. */
                uz_region_discard_slot(r, i);
                w = uz_pg_dirtied(w);
            }
            atomic_store_explicit(&r->pages[i], w, memory_order_relaxed);
            st = uz_pg_state(w);
            count[st]++;
            pinned += uz_pg_pins(w) != 0;
            if (st == UZ_PG_CLEAN) {
                if (!nrun++)
                    run = i;
                continue;
            }
        }
        if (!nrun)
            continue;
        /* Without `protect` the region fails in the child: the words need no more care. */
        int rc = protect ? uz_region_sys_wp(r, run, nrun, true) : 0;
        if (rc) {
            if (!first_err)
                first_err = rc;
            dirty_run(r, run, nrun, count);
        }
        nrun = 0;
    }
    for (unsigned s = UZ_PG_DIRTY; s < UZ_PG_NSTATES; s++) {
        uz_counter_reset(&r->nstate[s]);
        uz_counter_add(&r->nstate[s], (int64_t)count[s]);
    }
    atomic_store(&r->resident, count[UZ_PG_DIRTY] + count[UZ_PG_CLEAN] + count[UZ_PG_WB]);
    atomic_store(&r->kept, 0);
    atomic_store(&r->pinned, pinned);
    atomic_store(&r->pin_budget, r->limit ? pinned : 0);
    return first_err;
}

/* mlock is not inherited: lock the library's own memory again as uz_region_create() did. */
static void relock(struct uz_region *r)
{
    if (!r->locked)
        return;
    bool ok =
        syscall(SYS_mlock2, r->pages, r->pages_bytes, MLOCK_ONFAULT) == 0 &&
        syscall(SYS_mlock2, r->bufs, (size_t)UZ_REGION_NREQ * UZ_PAGE_SIZE, MLOCK_ONFAULT) == 0 &&
        mlock(r->zeros, UZ_RA_MAX * UZ_PAGE_SIZE) == 0 && mlock(r->scratch_cmp, UZ_PAGE_SIZE) == 0;
    for (unsigned t = 0; ok && t < r->nfault; t++)
        ok = syscall(SYS_mlock2, r->ft[t].staging, UZ_RA_MAX * UZ_PAGE_SIZE, MLOCK_ONFAULT) == 0;
    r->locked = ok;
}

static int start_threads(struct uz_region *r)
{
    for (unsigned t = 0; t < r->nfault; t++) {
        int rc = uz_region_start_thread(&r->ft[t].thread, uz_region_fault_main, &r->ft[t],
                                        "uzram-fault");
        if (rc)
            return rc;
        r->ft[t].started = true;
    }
    if (r->limit) {
        int rc =
            uz_region_start_thread(&r->reclaim_thread, uz_region_reclaim_main, r, "uzram-reclaim");
        if (rc)
            return rc;
        r->reclaim_started = true;
    }
    return 0;
}

/* Pages of [first, end) no mapping covers: HOLE. */
static void holes_in(struct uz_region *r, uint64_t first, uint64_t end)
{
    for (uint64_t i = first; i < end; i++) {
        uint64_t w = atomic_load_explicit(&r->pages[i], memory_order_relaxed);
        atomic_store_explicit(&r->pages[i], uz_region_hole_locked(r, i, w), memory_order_relaxed);
    }
}

/* The child's own mm is the truth: a munmap another thread made between the prepare handler
 * and the kernel's copy of the mm has its event queued to the parent only. Every page of the
 * region that no mapping of the child covers becomes a hole (/proc/self/maps, read with plain
 * system calls into a stack buffer: ascending, one "start-end ..." line per mapping). A
 * mapping placed in such a hole in the same instant cannot be told from the region's and is
 * taken for it (region.h). @return : 0, or -errno (maps unreadable: nothing changed). */
static int child_holes(struct uz_region *r)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    const uint64_t base = (uintptr_t)r->base, top = base + r->size;
    uint64_t next = base; /* the first byte of the region not known to be mapped */
    char buf[4096];
    size_t have = 0;
    bool skip = false; /* dropping the rest of a line longer than the buffer */
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        char *line = buf, *nl;
        for (;;) {
            nl = strchr(line, '\n');
            if (!nl && (line > buf || have < sizeof(buf) - 1))
                break; /* a partial line: read on */
            if (!skip) {
                char *dash;
                uint64_t start = strtoull(line, &dash, 16), end = strtoull(dash + 1, NULL, 16);
                if (end > next && start < top) {
                    if (start > next)
                        holes_in(r, (next - base) / UZ_PAGE_SIZE,
                                 ((start < top ? start : top) - base) / UZ_PAGE_SIZE);
                    next = end;
                }
            }
            skip = !nl; /* a full buffer with no newline: its addresses are taken */
            line = nl ? nl + 1 : buf + have;
        }
        have = (size_t)(buf + have - line);
        memmove(buf, line, have);
    }
    close(fd);
    if (next < top)
        holes_in(r, (next - base) / UZ_PAGE_SIZE, r->npages);
    return 0;
}

static void child_one(struct uz_region *r)
{
    /* Close, never use: the userfaultfd works on the parent's mm (an ioctl through it would
     * map, protect or unregister the PARENT's pages; its last close is the parent's), and the
     * pidfd names the parent. */
    if (r->uffd >= 0)
        close(r->uffd);
    r->uffd = -1;
    r->scratch_registered = false;
    if (r->trash_uffd >= 0)
        close(r->trash_uffd); /* the parent's trash */
    r->trash_uffd = -1;
    r->trash_registered = false;
    bool use_pidfd = atomic_load(&r->pidfd) >= 0;
    if (r->pidfd_own >= 0)
        close(r->pidfd_own);
    r->pid = getpid();
    r->pidfd_own = (int)syscall(SYS_pidfd_open, r->pid, 0);
    atomic_store(&r->pidfd, use_pidfd ? r->pidfd_own : -1);
    atomic_store(&r->forked, true);
    init_locks(r);
    reset_threads_state(r);
    relock(r);

    int rc = r->fork_dev ? uz_dev_fork_child(r->dev) : -EDEADLK;
    if (!rc && r->ev_unmap)
        rc = child_holes(r);
    if (!rc)
        rc = uz_region_sys_open(r);
    if (!rc)
        rc = uz_region_sys_register(r);
    int prc = rebuild_pages(r, !rc);
    if (!rc && prc)
        rc = prc;
    if (!rc)
        rc = start_threads(r);
    if (rc) {
        /* Better a crash at the first touch than swapped-out pages read as zeros. */
        uz_counter_add(&r->st.sys_errors, 1);
        atomic_store(&r->failed, rc);
        (void)mprotect(r->base, r->size, PROT_NONE);
    }
}

static void child_all(void)
{
    pthread_mutex_init(&list_lock, NULL); /* held by the forking thread, whose id changed */
    for (struct uz_region *r = list_head; r; r = r->fork_next)
        child_one(r);
}

/* ---- the list ---- */

static void register_handlers(void)
{
    handlers_rc = -pthread_atfork(prepare_all, parent_all, child_all);
}

int uz_region_fork_track(struct uz_region *r)
{
    pthread_once(&handlers_once, register_handlers);
    if (handlers_rc)
        return handlers_rc;
    pthread_mutex_lock(&list_lock);
    r->fork_prev = NULL;
    r->fork_next = list_head;
    if (list_head)
        list_head->fork_prev = r;
    list_head = r;
    r->fork_listed = true;
    pthread_mutex_unlock(&list_lock);
    return 0;
}

void uz_region_fork_untrack(struct uz_region *r)
{
    if (!r->fork_listed)
        return;
    pthread_mutex_lock(&list_lock);
    if (r->fork_prev)
        r->fork_prev->fork_next = r->fork_next;
    else
        list_head = r->fork_next;
    if (r->fork_next)
        r->fork_next->fork_prev = r->fork_prev;
    r->fork_listed = false;
    pthread_mutex_unlock(&list_lock);
}

/* ---- the parent's (and child's) shared pages ---- */

int uz_region_fork_unshare(struct uz_region *r, uint64_t i)
{
    /* Unprotected first: a write fault on a protected pte would wait for a fault thread, which
     * waits for the page lock the caller holds. The write fault MADV_POPULATE_WRITE raises
     * copies the page, or reuses it when the other process let go of it, and the pte then maps
     * an exclusive page; nothing is written. A page pinned for I/O is exclusive already (fork
     * copies those for the child): nothing happens to it, and the move is refused again. */
    int rc = uz_region_sys_wp(r, i, 1, false);
    if (rc)
        return rc;
    int prc =
        uz_region_sys_madvise(r, r->base + i * UZ_PAGE_SIZE, UZ_PAGE_SIZE, MADV_POPULATE_WRITE);
    rc = uz_region_sys_wp(r, i, 1, true);
    return rc ? rc : prc;
}
