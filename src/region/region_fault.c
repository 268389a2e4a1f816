// SPDX-License-Identifier: MIT
/*
 * region_fault.c - the userfaultfd service: threads that read fault messages and resolve them.
 *
 * A missing fault maps the page and, when the faults follow a sequential stream, a window of
 * its non-resident successors with the same ioctl (swap-in readahead for swapped pages, the
 * kernel's page-cluster; fault-around for never-touched ones). The window doubles while the
 * faults keep landing right after the previous window and falls back to one page otherwise, so
 * random access pays for no readahead. Never-touched pages get zeros: a write fault copies from
 * a zero buffer (the page is written next anyway), a read fault maps the shared zero page.
 * Swapped pages are decompressed into a per-thread staging buffer and copied in with
 * UFFDIO_COPY, read-only (the stored copy stays valid: the swap cache) unless recent swap-ins
 * were mostly written soon after (then writable at once, sparing a second fault; one in 16 is
 * still mapped read-only to keep measuring).
 *
 * A write-protect fault redirties the page: a CLEAN page loses its stored copy, a page under
 * writeback gets a new generation so that its completion is ignored. Either way the writer is
 * released at once, by the unprotect ioctl issued with the page lock held (so that reclaim
 * cannot protect and snapshot the page again in between, which would let a write go unseen).
 *
 * Every fault message ends with its thread woken: by the ioctl that resolves it, or, when that
 * fails or there is nothing to do, by uz_region_release() (the thread faults again). A failed
 * unprotect leaves the page DIRTY and still protected, which the next write fault unprotects.
 * The ioctls themselves are region_sys.c's.
 */
#include "region_internal.h"

#include "dev_threads.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the swap-in mapping policy ---- */

/* Whether a swap-in keeps its stored copy (mapped read-only, CLEAN) or frees it (writable,
 * DIRTY). Kept while recent swap-ins were mostly not written (or as one sample in 16), and
 * while the swap cache has room: past clean_max clean pages a swap-in frees its copy, as kernel
 * zram swap frees its slot on every swap-in. Unbounded, the copies of every resident page read
 * since its swap-in stay in the pool (a read-only scan of a 1 GiB heap under a 256 MiB limit
 * left 125 MB of them, 1.21x kernel zram's total memory); the bound keeps most of what they buy
 * (an eviction of an unwritten page costs no compression) at a fixed cost. The count is read
 * without a lock: the bound may be passed by the swap-ins in flight. */
static bool keep_clean(struct uz_region *r, bool *sample)
{
    if (atomic_load_explicit(&r->wscore, memory_order_relaxed) >= 512 &&
        atomic_fetch_add_explicit(&r->swapin_seq, 1, memory_order_relaxed) % 16 != 0)
        return false;
    if (r->clean_max != UINT64_MAX &&
        (uint64_t)uz_counter_read(&r->nstate[UZ_PG_CLEAN]) >= r->clean_max)
        return false;
    *sample = true;
    return true;
}

/* ---- filling ---- */

unsigned uz_region_fill_run(struct uz_region *r, unsigned char *staging, uint64_t first, unsigned n,
                            uint64_t *words, bool write, int *err)
{
    const uint64_t clear = UZ_PG_REF | UZ_PG_SAMPLE | UZ_PG_FRESH;
    unsigned st0 = uz_pg_state(words[0]), done = 0;
    int rc;
    if (st0 == UZ_PG_EMPTY || st0 == UZ_PG_HOLE) { /* HOLE: see handle_reserved() */
        /* The caller only runs EMPTY pages together. */
        rc = write ? uz_region_sys_copy(r, first, r->zeros, n, false, &done)
                   : uz_region_sys_zeropage(r, first, n, &done);
        if (rc == -ENOENT && !done && n > 1) {
            /* The window crosses a mapping boundary (the application mprotect'ed part of the
             * region, which splits it): one page, which cannot. */
            n = 1;
            rc = write ? uz_region_sys_copy(r, first, r->zeros, 1, false, &done)
                       : uz_region_sys_zeropage(r, first, 1, &done);
        }
        for (unsigned k = 0; k < done; k++)
            words[k] = uz_pg_set_state(words[k] & ~clear, UZ_PG_DIRTY);
        if (done) {
            words[0] |= UZ_PG_REF;
            uz_counter_add(&r->st.minor_faults, 1);
        } else {
            *err = rc ? rc : -EIO;
        }
        return done;
    }

    unsigned m = n;
    for (unsigned k = 0; k < n;) {
        unsigned char *dst = staging + (size_t)k * UZ_PAGE_SIZE;
        if (uz_pg_state(words[k]) != UZ_PG_SWAPPED) {
            memset(dst, 0, UZ_PAGE_SIZE);
            k++;
            continue;
        }
        /* A run of swapped neighbours in one read: the device decodes each multi-page object
         * among them once (dev_multi.c). On an error, page by page to find the first bad one. */
        unsigned j = k + 1;
        while (j < n && uz_pg_state(words[j]) == UZ_PG_SWAPPED)
            j++;
        size_t len = (size_t)(j - k) * UZ_PAGE_SIZE;
        if (j - k > 1 &&
            uz_dev_pread(r->dev, dst, len, (first + k) * UZ_PAGE_SIZE) == (ssize_t)len) {
            k = j;
            continue;
        }
        if (uz_dev_read_page(r->dev, first + k, dst)) {
            m = k;
            break;
        }
        k++;
    }
    if (!m) {
        /* The device cannot give the page back. Poison it, as the kernel does with a page it
         * cannot read: the application gets SIGBUS on access instead of wrong data. */
        uz_counter_add(&r->st.read_errors, 1);
        *err = -EIO;
        if (r->can_poison && !uz_region_sys_poison(r, first))
            return 0;
        memset(staging, 0, UZ_PAGE_SIZE);
        m = 1;
        write = true;
    }
    bool sample = false;
    bool wp = !write && keep_clean(r, &sample);
    rc = uz_region_sys_copy(r, first, staging, m, wp, &done);
    if (rc == -ENOENT && !done && m > 1) /* across a mapping boundary, as above */
        rc = uz_region_sys_copy(r, first, staging, 1, wp, &done);
    unsigned swapped = 0;
    for (unsigned k = 0; k < done; k++) {
        if (uz_pg_state(words[k]) == UZ_PG_SWAPPED) {
            swapped++;
            if (!wp)
                uz_region_discard_slot(r, first + k);
        }
        words[k] = uz_pg_set_state(words[k] & ~clear, wp ? UZ_PG_CLEAN : UZ_PG_DIRTY);
    }
    if (!done) {
        *err = rc ? rc : -EIO;
        return 0;
    }
    words[0] |= UZ_PG_REF | (sample ? UZ_PG_SAMPLE : 0);
    if (st0 == UZ_PG_SWAPPED)
        uz_counter_add(&r->st.major_faults, 1);
    uz_counter_add(&r->st.swapins, swapped);
    uz_counter_add(&r->st.readahead_pages, swapped - (st0 == UZ_PG_SWAPPED));
    return done;
}

/* ---- readahead window ---- */

/* Whether the application skipped pages it did not need between a stream's window and fault i:
 * some of next..i-1 are not resident (the fault did not simply come after pages that were
 * resident already, where the window stopped). Reads at most UZ_RA_GAP - 1 words. */
static bool ra_skipped(struct uz_region *r, uint64_t next, uint64_t i)
{
    for (uint64_t j = next; j < i; j++)
        if (!uz_pg_resident(uz_pg_state(atomic_load_explicit(&r->pages[j], memory_order_relaxed))))
            return true;
    return false;
}

/* The window of fault i: a fault right after a stream's window, or after pages that were all
 * resident, doubles it; a fault a few pages past it, the pages skipped not resident, halves it.
 * Such a sparse stream (a heap read in allocation order, every size class its own run of pools)
 * used to double as well, and a full window then brought in pages nobody read: the Python dict
 * workload of bench/run-bench.sh swapped in 1.7 million pages in 510,000 faults and compressed
 * 1.6 million (the kernel swapped in 720,000 and compressed 840,000); halving, 885,000 in
 * 545,000 faults, 890,000 compressed, its build phase 16.7 -> 12.0 s. */
static unsigned ra_window(struct uz_region *r, uint64_t i, unsigned *slot)
{
    uz_spin_lock(&r->ra_lock);
    unsigned s, lru = 0, win = 1;
    for (s = 0; s < UZ_RA_STREAMS; s++) {
        if (r->ra[s].win && i - r->ra[s].next < UZ_RA_GAP) {
            if (ra_skipped(r, r->ra[s].next, i)) /* none to skip when i == next */
                win = r->ra[s].win > 1 ? r->ra[s].win / 2 : 1;
            else
                win = r->ra[s].win * 2 > UZ_RA_MAX ? UZ_RA_MAX : r->ra[s].win * 2;
            break;
        }
        if (r->ra[s].used < r->ra[lru].used)
            lru = s;
    }
    if (s == UZ_RA_STREAMS)
        s = lru;
    r->ra[s].win = win;
    r->ra[s].next = i + 1;
    r->ra[s].used = ++r->ra_clock;
    uz_spin_unlock(&r->ra_lock);
    *slot = s;
    /* With multi-page objects, a sequential stream reads at least the rest of the page's run:
     * decoding one page of an object decodes the pages after it too, so they come in at no
     * codec cost (as swapped-in pages, clean, the stored copy kept). Random faults stay at one
     * page: the neighbours would cost resident room (touches 0.41x of object_pages=1 with them,
     * 0.65x without, uzram-bench swap 512/128 MiB). */
    unsigned run = uz_dev_object_pages(r->dev);
    if (run > 1 && win > 1 && win < run - i % run)
        win = (unsigned)(run - i % run);
    return r->npages - i < win ? (unsigned)(r->npages - i) : win;
}

static void ra_commit(struct uz_region *r, unsigned slot, uint64_t i, unsigned done)
{
    if (done <= 1)
        return;
    uz_spin_lock(&r->ra_lock);
    if (r->ra[slot].next == i + 1)
        r->ra[slot].next = i + done;
    uz_spin_unlock(&r->ra_lock);
}

/* ---- fault handlers ---- */

/* A missing fault on a page we think is mapped: either a second fault on a page another thread
 * just mapped (the pte is there: wake the faulting thread), or the application dropped the page
 * behind our back (madvise): then it reads as zeros, like any anonymous memory. */
static void missing_on_resident(struct uz_region *r, uint64_t i, uint64_t w)
{
    unsigned done;
    int rc = uz_region_sys_zeropage(r, i, 1, &done);
    if (rc) {
        if (rc != -EEXIST) /* EEXIST: mapped, the usual case */
            uz_region_error(r, rc);
        else
            uz_region_wd_ok(r, i);
        uz_region_release(r, i, 1);
        uz_region_pg_unlock(r, i, w);
        return;
    }
    unsigned st = uz_pg_state(w);
    if (st == UZ_PG_CLEAN)
        uz_region_discard_slot(r, i);
    else if (st == UZ_PG_WB)
        w = uz_pg_next_gen(w);
    uz_region_pg_unlock(r, i, uz_pg_set_state(w & ~UZ_PG_SAMPLE, UZ_PG_DIRTY));
}

static void handle_reserved(struct uz_region_fault_thread *ft, uint64_t i, bool write,
                            unsigned slot, unsigned got);
static void handle_wp(struct uz_region *r, uint64_t i);

/* Faults that need no room of their own: raised by reclaim itself (its snapshot copy of a page
 * the application dropped behind the region's back, which reclaim needs served to make room),
 * or on a page the words say is resident. */
static bool needs_no_room(struct uz_region *r, const struct uffd_msg *m, uint64_t i)
{
    pid_t rt = atomic_load_explicit(&r->reclaim_tid, memory_order_relaxed);
    if (rt && (pid_t)m->arg.pagefault.feat.ptid == rt)
        return true;
    return uz_pg_resident(uz_pg_state(atomic_load_explicit(&r->pages[i], memory_order_relaxed)));
}

/* Serves one page of a fault that needs no room, with a reservation taken even above the limit
 * (by one page at most; given back at once when the page is resident). */
static void handle_forced(struct uz_region_fault_thread *ft, uint64_t i, bool write)
{
    uz_region_reserve_force(ft->r, 1);
    atomic_fetch_add(&ft->busy, 1);
    handle_reserved(ft, i, write, UZ_RA_STREAMS, 1);
    atomic_fetch_add(&ft->busy, 1);
}

/* The page index of a fault message on the region, or false. */
static bool fault_page(struct uz_region *r, const struct uffd_msg *m, uint64_t *i)
{
    if (m->event != UFFD_EVENT_PAGEFAULT)
        return false;
    uintptr_t a = (uintptr_t)m->arg.pagefault.address, b = (uintptr_t)r->base;
    if (a < b || a - b >= r->size)
        return false;
    *i = (a - b) / UZ_PAGE_SIZE;
    return true;
}

static ssize_t read_msg(struct uz_region_fault_thread *ft, struct uffd_msg *msg, bool try);

/* While waiting for room: reads one fault message and serves it if it needs no room (a
 * write-protect fault, see needs_no_room()), else keeps it for later (ft->defer). The fault
 * thread thus never stops serving the faults reclaim depends on. @return : whether a message
 * was read. */
static bool serve_waiting(struct uz_region_fault_thread *ft)
{
    struct uz_region *r = ft->r;
    if (ft->ndefer == UZ_FAULT_DEFER)
        return false;
    struct uffd_msg msg;
    ssize_t got = read_msg(ft, &msg, false);
    if (got == 0)
        return true; /* an event, handled */
    if (got != (ssize_t)sizeof(msg))
        return false;
    uint64_t i;
    if (fault_page(r, &msg, &i)) {
        if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
            atomic_fetch_add(&ft->busy, 1);
            handle_wp(r, i);
            atomic_fetch_add(&ft->busy, 1);
            return true;
        }
        if (needs_no_room(r, &msg, i)) {
            handle_forced(ft, i, msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
            return true;
        }
    }
    ft->defer[(ft->dhead + ft->ndefer++) % UZ_FAULT_DEFER] = msg; /* the doorbell too */
    return true;
}

/* uz_region_reserve() for a fault thread: while there is no room it keeps serving (above). */
static unsigned fault_reserve(struct uz_region_fault_thread *ft, uint64_t i, unsigned min,
                              unsigned want)
{
    struct uz_region *r = ft->r;
    unsigned take = uz_region_reserve_try(r, min, want);
    if (take)
        return take;
    uz_counter_add(&r->st.throttled, 1);
    atomic_fetch_add(&r->room_waiters, 1);
    uz_region_wake_reclaim(r);
    uz_region_wd_wait_begin(ft, i);
    while (!(take = uz_region_reserve_try(r, min, want))) {
        uz_region_wd_tick(r); /* this thread is not stuck: it watches its own wait */
        if (serve_waiting(ft))
            continue;
        /* Nothing to serve: sleep until a fault arrives or a millisecond passes (room is
         * looked at again either way). Holds no lock. */
        struct pollfd p = {.fd = r->uffd, .events = POLLIN};
        uz_region_wake_reclaim(r);
        poll(&p, 1, 1);
    }
    uz_region_wd_wait_end(ft);
    atomic_fetch_sub(&r->room_waiters, 1);
    return take;
}

static void handle_missing(struct uz_region_fault_thread *ft, const struct uffd_msg *m, uint64_t i,
                           bool write)
{
    struct uz_region *r = ft->r;
    if (needs_no_room(r, m, i)) {
        handle_forced(ft, i, write);
        return;
    }
    unsigned slot;
    unsigned want = ra_window(r, i, &slot);
    if (want == 1 && write &&
        uz_pg_state(atomic_load_explicit(&r->pages[i], memory_order_relaxed)) == UZ_PG_EMPTY) {
        /* The first write into fresh memory (an allocator's new extent, a new arena): its
         * neighbours up to the end of the 64 KiB block are zero-filled with it, in one ioctl,
         * where each would be a fault of its own (a round trip to this thread: a growing heap
         * is written in order). Only EMPTY neighbours join (handle_reserved()), and only as far
         * as there is room. */
        unsigned around = UZ_EMPTY_AROUND - (unsigned)(i % UZ_EMPTY_AROUND);
        want = r->npages - i < around ? (unsigned)(r->npages - i) : around;
    }
    unsigned got = fault_reserve(ft, i, 1, want);
    atomic_fetch_add(&ft->busy, 1);
    handle_reserved(ft, i, write, slot, got);
    atomic_fetch_add(&ft->busy, 1);
}

static void handle_reserved(struct uz_region_fault_thread *ft, uint64_t i, bool write,
                            unsigned slot, unsigned got)
{
    struct uz_region *r = ft->r;
    uint64_t words[UZ_RA_MAX];
    words[0] = uz_region_pg_lock(r, i);
    unsigned st = uz_pg_state(words[0]);
    if (uz_pg_resident(st)) {
        uz_region_unreserve(r, got);
        missing_on_resident(r, i, words[0]);
        return;
    }
    if (uz_region_failed(r) && r->can_poison) {
        /* The page words may disagree with the kernel's: SIGBUS rather than wrong data. */
        int rc = uz_region_sys_poison(r, i);
        if (rc) {
            uz_counter_add(&r->st.sys_errors, 1);
            uz_region_release(r, i, 1);
        }
        uz_region_pg_unlock(r, i, words[0]);
        uz_region_unreserve(r, got);
        return;
    }
    unsigned n = 1;
    while (n < got && st != UZ_PG_HOLE) {
        uint64_t w;
        if (!uz_region_pg_trylock(r, i + n, &w))
            break;
        unsigned s = uz_pg_state(w);
        if (st == UZ_PG_EMPTY ? s != UZ_PG_EMPTY : s != UZ_PG_SWAPPED && s != UZ_PG_EMPTY) {
            uz_region_pg_unlock(r, i + n, w);
            break;
        }
        words[n++] = w;
    }
    int err = 0;
    unsigned done = uz_region_fill_run(r, ft->staging, i, n, words, write, &err);
    for (unsigned k = 0; k < n; k++)
        uz_region_pg_unlock(r, i + k, words[k]);
    uz_region_unreserve(r, got - done);
    ra_commit(r, slot, i, done);
    if (done)
        uz_region_wd_ok(r, i);
    if (!done && (st == UZ_PG_HOLE || (err == -ENOENT && r->ev_unmap))) {
        /* Not the region's (any more): a fault read before the event that unmapped it was
         * handled, or on a hole that no mapping of the region covers. The thread faults again
         * on whatever is mapped there now. (A HOLE page a mapping of the region covers again,
         * grown back over it by mremap, was zero-filled above: EMPTY again, then DIRTY.) */
        uz_region_release(r, i, 1);
    } else if (!done && err != -EIO) {
        uz_region_wd_fail(r, i, err);
        /* Not mapped (the kernel refused): count it, then the thread faults again. (-EIO: the
         * device could not return the page, which is poisoned, and the poison woke it.) */
        uz_region_error(r, err);
        uz_region_release(r, i, 1);
    } else if (!done) {
        uz_region_release(r, i, 1);
    }
}

static void handle_wp(struct uz_region *r, uint64_t i)
{
    uint64_t w = uz_region_pg_lock(r, i);
    int rc;
    switch (uz_pg_state(w)) {
    case UZ_PG_CLEAN:
        if (w & UZ_PG_SAMPLE)
            uz_region_note_sample(r, true);
        uz_region_discard_slot(r, i);
        w = uz_pg_dirtied(w) | UZ_PG_REF;
        uz_counter_add(&r->st.wp_faults, 1);
        rc = uz_region_sys_wp(r, i, 1, false);
        break;
    case UZ_PG_WB:
        /* The seed's race: written while its copy is being compressed. Abandon the copy (the
         * new generation makes its completion a no-op) and let the writer go now. */
        w = uz_pg_set_state(uz_pg_next_gen(w) & ~UZ_PG_SAMPLE, UZ_PG_DIRTY) | UZ_PG_REF;
        uz_counter_add(&r->st.wp_faults, 1);
        uz_counter_add(&r->st.redirtied, 1);
        rc = uz_region_sys_wp(r, i, 1, false);
        break;
    case UZ_PG_DIRTY:
        /* Still protected after a failed writeback or unprotect, or another thread got here
         * first. */
        rc = uz_region_sys_wp(r, i, 1, false);
        break;
    default:
        /* Dropped since: the writer faults again, as a missing page. */
        rc = 0;
        uz_region_release(r, i, 1);
        break;
    }
    if (!rc)
        uz_region_wd_ok(r, i);
    if (rc) {
        /* Still protected (DIRTY): the unprotect woke no one. Wake the writer to fault again,
         * which retries the unprotect. */
        uz_region_wd_fail(r, i, rc);
        uz_region_error(r, rc);
        uz_region_release(r, i, 1);
    }
    uz_region_pg_unlock(r, i, w);
}

/* ---- events: what the application did to region memory ---- */

/* The region's pages in [start, end) (addresses), or false when none. */
static bool event_pages(struct uz_region *r, uint64_t start, uint64_t end, uint64_t *first,
                        uint64_t *last)
{
    uint64_t b = (uintptr_t)r->base, e = b + r->size;
    if (end <= b || start >= e)
        return false;
    *first = (start < b ? 0 : start - b) / UZ_PAGE_SIZE;
    *last = UZ_DIV_ROUND_UP((end > e ? e : end) - b, UZ_PAGE_SIZE);
    return *first < *last;
}

/* Reads every message waiting into the backlog (read_lock held), which lets the threads
 * that wait for their events to be read go on: the kernel refuses the ioctls that fill pages
 * (EAGAIN) while an event waits. */
static void read_ahead(struct uz_region *r)
{
    while (r->bl_n < UZ_EV_BACKLOG) {
        struct uffd_msg *m = &r->backlog[(r->bl_head + r->bl_n) % UZ_EV_BACKLOG];
        if (read(r->uffd, m, sizeof(*m)) != (ssize_t)sizeof(*m))
            break;
        r->bl_n++;
    }
}

/* REMOVE (MADV_DONTNEED, MADV_FREE), read before the kernel drops the range: the region drops
 * it first, so that every page reads back as zeros. The kernel's own drop comes only after
 * the caller wakes, which it does as soon as the event is read: until then an eviction could
 * still snapshot and store the old contents of a resident page and move it out, leaving
 * nothing to drop (the model's variant without this step). So resident pages are moved out
 * here (UFFDIO_MOVE into the scratch, then freed) and become EMPTY; a swapped one becomes
 * EMPTY; each stored copy is freed. A page the kernel will not move (pinned for I/O or by
 * uz_region_pin(), or a move refused: the mm changing again, EAGAIN past the read-ahead)
 * loses its stored copy (or its writeback), is DIRTY, and the kernel's drop follows: its next
 * fault maps zeros (missing_on_resident()), and an eviction that finds it gone frees it
 * (region_reclaim.c). MADV_FREE's pages go as MADV_DONTNEED's do (allowed: a freed page may be
 * dropped at any time). Called with read_lock held, no page lock. */
static void event_remove(struct uz_region *r, uint64_t first, uint64_t last)
{
    for (uint64_t i = first; i < last;) {
        unsigned n = last - i < UZ_RECLAIM_BATCH ? (unsigned)(last - i) : UZ_RECLAIM_BATCH;
        uint64_t words[UZ_RECLAIM_BATCH];
        bool gone[UZ_RECLAIM_BATCH];
        for (unsigned k = 0; k < n; k++) { /* ascending: the lock order */
            words[k] = uz_region_pg_lock(r, i + k);
            gone[k] = false;
        }
        if (r->can_move) {
            unsigned resets = 0;
            pthread_mutex_lock(&r->scratch_lock);
            for (unsigned k = 0; k < n;) {
                if (!uz_pg_resident(uz_pg_state(words[k])) || uz_pg_pins(words[k])) {
                    k++;
                    continue;
                }
                unsigned len = 1, done = 0;
                while (k + len < n && uz_pg_resident(uz_pg_state(words[k + len])) &&
                       !uz_pg_pins(words[k + len]))
                    len++;
                int rc = uz_region_sys_move_run(r, r->scratch + (size_t)k * UZ_PAGE_SIZE,
                                                r->base + (i + k) * UZ_PAGE_SIZE, len, &done);
                for (int tries = 0; rc == -EAGAIN && tries < 100; tries++) {
                    for (unsigned j = k; j < k + done; j++)
                        gone[j] = true;
                    k += done;
                    len -= done;
                    read_ahead(r); /* the next event, in the way */
                    usleep(20);
                    rc = uz_region_sys_move_run(r, r->scratch + (size_t)k * UZ_PAGE_SIZE,
                                                r->base + (i + k) * UZ_PAGE_SIZE, len, &done);
                }
                for (unsigned j = k; j < k + done; j++)
                    gone[j] = true;
                k += done;
                if (rc == -EEXIST && resets++ < 2) { /* mlockall populated the scratch */
                    if ((rc = uz_region_sys_scratch_unlock(r)))
                        uz_region_error(r, rc);
                    continue;
                }
                if (rc == -ENOENT)
                    gone[k] = true; /* dropped already */
                else if (rc && rc != -EBUSY && rc != -EINVAL)
                    uz_counter_add(&r->st.sys_errors, 1);
                if (rc)
                    k++;
            }
            int rc = uz_region_sys_scratch_free(r, n);
            if (rc)
                uz_region_error(r, rc);
            pthread_mutex_unlock(&r->scratch_lock);
        }
        uint64_t freed = 0;
        for (unsigned k = 0; k < n; k++) {
            uint64_t w = words[k];
            unsigned st = uz_pg_state(w);
            if (st == UZ_PG_CLEAN || st == UZ_PG_SWAPPED)
                uz_region_discard_slot(r, i + k);
            if (st == UZ_PG_WB)
                w = uz_pg_next_gen(w); /* its completion frees what it stored */
            if (st == UZ_PG_SWAPPED || gone[k]) {
                if (gone[k] && (w & UZ_PG_KEPT))
                    atomic_fetch_sub(&r->kept, 1);
                else if (gone[k])
                    freed++;
                w = uz_pg_set_state(w & ~(UZ_PG_REF | UZ_PG_SAMPLE | UZ_PG_FRESH | UZ_PG_KEPT),
                                    UZ_PG_EMPTY);
            } else if (uz_pg_resident(st)) {
                w = uz_pg_dirtied(w);
            }
            uz_region_pg_unlock(r, i + k, w);
        }
        if (freed) {
            atomic_fetch_sub(&r->resident, freed);
            uz_region_room_freed(r);
        }
        i += n;
    }
}

/* Set on the fault threads (see uz_region_fault_read_ahead()). */
static __thread bool on_fault_thread;

void uz_region_fault_read_ahead(struct uz_region *r)
{
    if (!on_fault_thread || !r->ev_unmap || pthread_mutex_trylock(&r->read_lock))
        return; /* another thread holds it: it is reading, or handling an event (and reads) */
    read_ahead(r);
    pthread_mutex_unlock(&r->read_lock);
}

void uz_region_events_settle(struct uz_region *r)
{
    if (!r->ev_unmap)
        return;
    pthread_mutex_lock(&r->read_lock);
    while (r->bl_n) {
        /* Read ahead by a fault thread busy with a fault: it serves them right after. */
        pthread_mutex_unlock(&r->read_lock);
        usleep(20);
        pthread_mutex_lock(&r->read_lock);
    }
    pthread_mutex_unlock(&r->read_lock);
}

/* REMAP (mremap moved [from, from+len) to `to`), read after the move: the pages that were
 * swapped out are copied into their new place, so that the moved memory keeps all of its
 * contents, and the new place is taken off the region's userfaultfd: it is plain memory now,
 * the application's, like the old place is a hole. A copy refused while another event waits
 * to be read (EAGAIN past the retries) leaves that page zero (counted in sys_errors). */
static void event_remap(struct uz_region *r, unsigned char *staging, uint64_t from, uint64_t to,
                        uint64_t len)
{
    uint64_t first, last;
    if (event_pages(r, from, from + len, &first, &last)) {
        for (uint64_t i = first; i < last; i++) {
            uint64_t w = uz_region_pg_lock(r, i);
            if (uz_pg_state(w) == UZ_PG_SWAPPED) {
                uint64_t dst = to + ((uintptr_t)r->base + i * UZ_PAGE_SIZE - from);
                int rc = uz_dev_read_page(r->dev, i, staging);
                for (int tries = 0; !rc || (rc == -EAGAIN && tries < 200); tries++) {
                    if ((rc = uz_region_sys_copy_at(r, dst, staging)) != -EAGAIN)
                        break;
                    /* The event in the way (the old place's UNMAP) read, its thread takes a
                     * moment to go on. */
                    read_ahead(r);
                    usleep(20);
                }
                if (rc)
                    uz_counter_add(&r->st.sys_errors, 1);
            }
            uz_region_pg_unlock(r, i, uz_region_hole_locked(r, i, w));
        }
    }
    (void)uz_region_sys_unregister(r, (void *)(uintptr_t)to, len);
}

static void event_unmap(struct uz_region *r, uint64_t first, uint64_t last)
{
    for (uint64_t i = first; i < last; i++) {
        uint64_t w = uz_region_pg_lock(r, i);
        uz_region_pg_unlock(r, i, uz_region_hole_locked(r, i, w));
    }
    uz_region_room_freed(r);
}

/* Handles an event message; called with read_lock held (see r->read_lock). */
static void event(struct uz_region *r, unsigned char *staging, const struct uffd_msg *m)
{
    uint64_t first, last;
    switch (m->event) {
    case UFFD_EVENT_REMOVE:
        if (event_pages(r, m->arg.remove.start, m->arg.remove.end, &first, &last))
            event_remove(r, first, last);
        break;
    case UFFD_EVENT_UNMAP:
        if (event_pages(r, m->arg.remove.start, m->arg.remove.end, &first, &last))
            event_unmap(r, first, last);
        break;
    case UFFD_EVENT_REMAP:
        event_remap(r, staging, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
        break;
    default:
        break;
    }
}

static void handle_event(struct uz_region_fault_thread *ft, const struct uffd_msg *m)
{
    atomic_fetch_add(&ft->busy, 1);
    event(ft->r, ft->staging, m);
    atomic_fetch_add(&ft->busy, 1);
}

int uz_region_events_drain(struct uz_region *r)
{
    if (!r->ev_unmap)
        return 0;
    unsigned char *staging = malloc(UZ_PAGE_SIZE);
    if (!staging)
        return -ENOMEM;
    read_ahead(r);
    unsigned kept = 0;
    for (unsigned k = 0; k < r->bl_n; k++) {
        struct uffd_msg m = r->backlog[(r->bl_head + k) % UZ_EV_BACKLOG];
        if (m.event == UFFD_EVENT_PAGEFAULT)
            r->backlog[(r->bl_head + kept++) % UZ_EV_BACKLOG] = m; /* in order */
        else
            event(r, staging, &m);
    }
    r->bl_n = kept;
    free(staging);
    return 0;
}

/* Reads one message. With events, under read_lock, and an event is handled before the lock
 * is let go. @return : the read() result; 0 for an event handled here; -1 with EBUSY when `try`
 * found read_lock taken (nothing was read: the backlog may hold messages, so the caller must
 * not poll the descriptor on this answer). */
static ssize_t read_msg(struct uz_region_fault_thread *ft, struct uffd_msg *msg, bool try)
{
    struct uz_region *r = ft->r;
    if (!r->ev_unmap)
        return read(r->uffd, msg, sizeof(*msg));
    if (try) {
        if (pthread_mutex_trylock(&r->read_lock)) {
            errno = EBUSY; /* another thread is reading, or waits in events_settle() */
            return -1;
        }
    } else {
        pthread_mutex_lock(&r->read_lock);
    }
    ssize_t n;
    if (r->bl_n) {
        *msg = r->backlog[r->bl_head];
        r->bl_head = (r->bl_head + 1) % UZ_EV_BACKLOG;
        r->bl_n--;
        n = sizeof(*msg);
    } else {
        n = read(r->uffd, msg, sizeof(*msg));
    }
    int e = errno;
    if (n == (ssize_t)sizeof(*msg) && msg->event != UFFD_EVENT_PAGEFAULT) {
        handle_event(ft, msg);
        n = 0;
    }
    pthread_mutex_unlock(&r->read_lock);
    errno = e;
    return n;
}

static void handle(struct uz_region_fault_thread *ft, const struct uffd_msg *msg)
{
    struct uz_region *r = ft->r;
    uint64_t i;
    if (!fault_page(r, msg, &i)) {
        /* Outside the region: a mapping of the region that mremap grew past its end, or moved
         * away before its event was handled. Plain memory: a zero page, or a wake. */
        if (msg->event == UFFD_EVENT_PAGEFAULT &&
            uz_region_sys_doorbell_answer(r, (uintptr_t)msg->arg.pagefault.address))
            uz_counter_add(&r->st.sys_errors, 1);
        return;
    }
    if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
        atomic_fetch_add(&ft->busy, 1);
        handle_wp(r, i);
        atomic_fetch_add(&ft->busy, 1);
    } else {
        handle_missing(ft, msg, i, msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* How long to poll for the next fault after one. Polling saves the sleep and the wakeup when
 * the application runs on another CPU meanwhile; where this thread may run on one CPU only
 * (taskset, a cpuset of one), the application cannot fault while it polls and every poll is
 * time taken from it: no polling (the Python workload of bench/run-bench.sh under taskset -c 0:
 * 43-44 s with it, 35-38 s without). Asked again each time the thread wakes from a sleep. */
static uint64_t fault_spin_ns(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set))
        return UZ_FAULT_SPIN_NS;
    return CPU_COUNT(&set) > 1 ? UZ_FAULT_SPIN_NS : 0;
}

/* ---- following the faulting thread ---- */

/* The CPU thread `tid` of this process ran on last (field 39 of its stat), or -1. */
static int thread_cpu(pid_t tid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    for (int field = 2; p && field < 39; field++)
        p = strchr(p + 1, ' ');
    return p ? atoi(p + 1) : -1;
}

/* Notes that this thread served a fault of thread `tid` and, every UZ_FAULT_FOLLOW faults,
 * moves the thread to the CPU of the application thread that raised them all, or back to all
 * its CPUs when they came from several. A fault is a round trip: the application thread sleeps
 * until this thread has mapped the page. On two CPUs each side ran where the other had just
 * been and every fault cost two cross-CPU wakeups, each an inter-processor interrupt to a
 * halted virtual CPU (the Python workload of bench/run-bench.sh: 26-28 s on the same CPU,
 * 41-90 s left to the scheduler, 120 s on different CPUs; kernel zram 30 s). The scheduler
 * wakes a thread on its previous CPU when that is idle, so the application thread stays where
 * this one follows it. Reclaim and the device's workers keep the other CPUs. */
static void fault_follow(struct uz_region_fault_thread *ft, pid_t tid)
{
    if (CPU_COUNT(&ft->home) < 2 || !tid)
        return;
    if (!ft->follow_n++) {
        ft->follow_tid = tid;
        ft->follow_mixed = false;
    } else if (tid != ft->follow_tid) {
        ft->follow_mixed = true;
    }
    if (ft->follow_n < UZ_FAULT_FOLLOW)
        return;
    ft->follow_n = 0;
    int cpu = ft->follow_mixed ? -1 : thread_cpu(ft->follow_tid);
    if (cpu >= CPU_SETSIZE || (cpu >= 0 && !CPU_ISSET(cpu, &ft->home)))
        cpu = -1;
    if (cpu == atomic_load_explicit(&ft->follow_cpu, memory_order_relaxed))
        return;
    cpu_set_t one, rest = ft->home;
    CPU_ZERO(&one);
    if (cpu >= 0) {
        CPU_SET(cpu, &one);
        CPU_CLR(cpu, &rest);
    }
    if (sched_setaffinity(0, sizeof(cpu_set_t), cpu >= 0 ? &one : &ft->home))
        return;
    atomic_store_explicit(&ft->follow_cpu, cpu, memory_order_relaxed);
    /* Pinned to the application's CPU, polling would take it (fault_spin_ns()'s answer, known
     * here: one CPU, or home's several). */
    ft->spin_ns = cpu >= 0 ? 0 : UZ_FAULT_SPIN_NS;
    /* The reclaim thread and the device's workers run beside, on the other CPUs: with them on
     * the application's CPU the scheduler moved the application away, and each fault ran
     * across CPUs again until the next look. Failures only cost speed. */
    struct uz_region *r = ft->r;
    if (r->nfault == 1) {
        pid_t rt = atomic_load_explicit(&r->reclaim_tid, memory_order_relaxed);
        if (rt)
            (void)sched_setaffinity(rt, sizeof(rest), &rest);
        (void)uz_dev_workers_affinity(r->dev, &rest);
    }
}

void *uz_region_fault_main(void *arg)
{
    struct uz_region_fault_thread *ft = arg;
    struct uz_region *r = ft->r;
    uint64_t last = 0;
    on_fault_thread = true;
    atomic_store_explicit(&ft->follow_cpu, -1, memory_order_relaxed);
    ft->follow_n = 0;
    if (sched_getaffinity(0, sizeof(ft->home), &ft->home))
        CPU_ZERO(&ft->home); /* not known: never follow */
    ft->spin_ns = fault_spin_ns();
    for (;;) {
        struct uffd_msg msg;
        ssize_t n = sizeof(msg);
        if (ft->ndefer) {
            msg = ft->defer[ft->dhead];
            ft->dhead = (ft->dhead + 1) % UZ_FAULT_DEFER;
            ft->ndefer--;
        } else {
            n = read_msg(ft, &msg, now_ns() - last < ft->spin_ns);
        }
        if (n == 0) {
            last = now_ns(); /* an event, handled */
            continue;
        }
        if (n != (ssize_t)sizeof(msg)) {
            if (n < 0 && errno == EBUSY) {
                /* read_lock was taken: messages may wait in the backlog, where poll() does
                 * not see them (a thread in uz_region_events_settle() took the lock at the
                 * wrong moment, this thread went to poll and the settle waited forever for a
                 * backlogged UNMAP). Spin while the burst lasts, then take the lock. */
                if (now_ns() - last < ft->spin_ns)
                    uz_cpu_relax();
                else
                    last = 0; /* the next read_msg() waits for the lock */
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                /* Nothing in the backlog and nothing to read, both seen under read_lock.
                 * Faults come in bursts (the application runs a few microseconds between
                 * two): polling for a short while after each one saves the sleep and the
                 * wakeup, which on a busy machine cost far more than the fault itself. */
                if (now_ns() - last < ft->spin_ns) {
                    uz_cpu_relax();
                    continue;
                }
                /* With events, a thread other than a fault thread can move a message into
                 * the backlog after the check above: fork's uz_region_events_drain() keeps
                 * the faults it read there. poll() cannot see it, so it wakes once a second
                 * and the next read_msg() looks (under read_lock). Fault threads that read
                 * ahead serve what they read themselves. */
                struct pollfd p = {.fd = r->uffd, .events = POLLIN};
                poll(&p, 1, r->ev_unmap ? UZ_FAULT_BACKLOG_MS : -1);
                ft->spin_ns = fault_spin_ns();
            } else if (n < 0 && errno != EINTR) {
                usleep(1000); /* cannot happen with a live descriptor; do not spin */
            }
            continue;
        }
        uintptr_t bell = (uintptr_t)msg.arg.pagefault.address - (uintptr_t)r->doorbell;
        if (msg.event == UFFD_EVENT_PAGEFAULT && bell < (size_t)r->nfault * UZ_PAGE_SIZE) {
            /* uz_region_destroy() rings once per thread: answer (that wakes it) and leave.
             * Before that, only mlockall()'s populate touches the doorbell: answer, stay. */
            if (uz_region_sys_doorbell_answer(r, (uintptr_t)msg.arg.pagefault.address))
                uz_counter_add(&r->st.sys_errors, 1);
            if (atomic_load(&r->stop))
                break;
            continue;
        }
        uintptr_t scr = (uintptr_t)msg.arg.pagefault.address - (uintptr_t)r->scratch;
        if (msg.event == UFFD_EVENT_PAGEFAULT && scr < (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE) {
            /* Only mlockall()'s populate touches the scratch: a zero page (reclaim frees it). */
            if (uz_region_sys_doorbell_answer(r, (uintptr_t)msg.arg.pagefault.address))
                uz_counter_add(&r->st.sys_errors, 1);
            continue;
        }
        handle(ft, &msg);
        if (msg.event == UFFD_EVENT_PAGEFAULT &&
            (pid_t)msg.arg.pagefault.feat.ptid !=
                atomic_load_explicit(&r->reclaim_tid, memory_order_relaxed))
            fault_follow(ft, (pid_t)msg.arg.pagefault.feat.ptid);
        if (atomic_load_explicit(&r->wd.fail_since, memory_order_relaxed))
            uz_region_wd_tick(r); /* a fault failing over and over (busy is even here) */
        last = now_ns();
    }
    return NULL;
}
