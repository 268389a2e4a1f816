/* SPDX-License-Identifier: MIT */
/*
 * region_internal.h - private state of a region (region.h), shared by the files of src/region:
 *   region.c          the API: create/destroy, statistics, pin/unpin, swap-out, the reservation
 *                     that throttles faults, the failed state
 *   region_page.c     the page word's lock (spins briefly, then sleeps on a futex)
 *   region_sys.c      every userfaultfd ioctl and madvise of the region, behind one retry helper,
 *                     and the failure injection the tests use; nothing else makes those calls
 *   region_fault.c    the userfaultfd service threads
 *   region_reclaim.c  the reclaim thread, writeback and its completion
 *   region_check.c    the invariant checker the tests call
 *   region_fork.c     fork(): the atfork handlers, the child's new userfaultfd and threads
 *   region_watchdog.c the stall watchdog: faults not served within watchdog_ms, reported
 * Each .c includes only this header from src/region; this header includes none of them.
 *
 * Every page has one 64-bit word: its state, a lock bit, the clock's reference bit, a pin count
 * and a writeback generation. The states and what is true in each (P: the page is mapped in the
 * region; WP: its pte is userfaultfd-write-protected; S: the device slot holds exactly the
 * page's contents):
 *
 *   EMPTY    !P, slot unwritten, reads as zeros                        (never touched)
 *   DIRTY    P, slot empty or stale (ignored)                           (written, or zero-filled)
 *   CLEAN    P, WP, S                                                   (the swap cache)
 *   WB       P, WP, a snapshot taken under WP is being written (gen g)  (under writeback)
 *   CLEAN+U, WB+U   (UZ_PG_UNPROT) an eviction's writeback made without write-protection:
 *            P, not WP, the slot holds a snapshot the page may have moved on from; trusted
 *            only by the move that evicts it, which compares the moved page with the snapshot
 *   SWAPPED  !P, S
 *   HOLE     not the region's any more: the application unmapped it (munmap, mmap MAP_FIXED
 *            over it, mremap moved it away: userfaultfd's UNMAP and REMAP events, or
 *            uz_region_unmap()); no slot; reclaim and faults never touch it, whatever the
 *            application maps there
 *
 * Transitions (who):
 *   EMPTY   -> DIRTY    missing fault: zeros (fault thread)
 *   SWAPPED -> CLEAN    missing fault: decompress, UFFDIO_COPY with WP (fault thread)
 *   SWAPPED -> DIRTY    same, mapped writable when recent swap-ins were mostly written; the slot
 *                       is discarded (fault thread, uz_region_pin)
 *   CLEAN   -> DIRTY    write-protect fault: discard the slot, unprotect (fault thread)
 *   DIRTY   -> WB(g+1)  write-protect, mark in flight, unlock, snapshot (process_vm_readv, no
 *                       lock held), submit if still WB(g+1) (reclaim, uz_region_swapout); not
 *                       while a writeback is in flight
 *   DIRTY   -> WB+U(g+1) the same for the reclaim thread's evictions when pages move out
 *                       (UFFDIO_MOVE), without the write-protect: its TLB shootdown (an IPI to
 *                       every core running the application) was half of an eviction's cost.
 *                       The snapshot may be torn; completion makes the page CLEAN+U, and the
 *                       drop stores it only if the page moved out equals the snapshot, the page
 *                       at the instant of the move (else "saved"/"restored" below)
 *   CLEAN+U/WB+U -> DIRTY  any other way out (a failed move, a fork's child, a pin): the slot
 *                       is discarded, never trusted
 *   any     -> EMPTY    uz_region_discard: unmapped, stored copy freed (pinned: DIRTY, zeros)
 *   any     -> EMPTY    the application dropped the range (REMOVE event: MADV_DONTNEED,
 *                       MADV_FREE): stored copy freed (a writeback abandoned), a resident page
 *                       moved out at once (fault thread, under read_lock)
 *   CLEAN/WB -> DIRTY   same event, the page pinned: the kernel's drop follows
 *   any     -> HOLE     UNMAP / REMAP event, uz_region_unmap(): stored copy freed, counters
 *                       given back (pins, kept, resident) (fault thread, under read_lock)
 *   HOLE    -> EMPTY    a missing fault on it: the region's mapping grew back over it
 *                       (mremap in place, uz_region_remap)
 *   WB(g)   -> DIRTY    write fault under writeback: g+1, unprotect AT ONCE; the copy in flight
 *                       is abandoned (fault thread) -- "redirtied"
 *   WB(g)   -> CLEAN    completion with generation still g and success (zramd worker); every
 *                       completion clears the in-flight mark
 *   WB(g)   -> DIRTY    completion with an error (stays WP: the next write just unprotects)
 *   CLEAN   -> SWAPPED  evicted while WP and locked (reclaim, uz_region_swapout): moved into
 *                       the scratch (UFFDIO_MOVE), found equal to what the slot holds, freed
 *                       there; or, without UFFDIO_MOVE (before Linux 6.8), MADV_DONTNEED
 *   CLEAN   -> SWAPPED  the move found the page changed (a write through a pin, e.g. O_DIRECT
 *                       or process_vm_writev, landed after the snapshot): its contents stored
 *                       (reclaim) -- "saved"; without REMOVE events, or the device full:
 *   CLEAN   -> DIRTY    moved back, the slot discarded -- "restored"
 *   CLEAN   -> EMPTY    the move found no page: the application dropped it (a raw madvise)
 *                       since the snapshot: it reads as zeros, the stored copy is freed
 *   CLEAN   -> DIRTY+KEPT  the kernel refused the eviction: EBUSY (pinned by get_user_pages
 *                       for I/O, or shared) or EINVAL (mlock'ed, or mprotect'ed unlike the
 *                       scratch); unprotected, the slot discarded, no longer counted in
 *                       `resident` (reclaim)
 *   KEPT    -> (not)    the clock hand passes it, or a writeback takes it: counted again and
 *                       REF, so it is tried again after one more lap at the earliest
 *
 * Kept pages: the kernel holds them (an I/O in progress, mlock): they are resident, DIRTY,
 * and not counted against the limit, so that faults of the same I/O (a read into 1 MiB of
 * swapped-out pages pins them one by one) can always make progress; the hand re-counts them
 * lap by lap, so no page is retried in a loop and the region never fails because of them.
 *
 * The three invariants the region exists for:
 *   stable:   a page is never dropped unless CLEAN, and CLEAN or WB pages are WP: between the
 *             snapshot and the drop no write can land unseen, because a write to a WP page
 *             blocks in the kernel until a fault thread, holding the page lock, redirties it.
 *             Unprotected (UZ_PG_UNPROT) evictions instead let writes land and catch them at
 *             the move: what the move takes out of the region can no longer change, so a
 *             snapshot equal to it, torn or not, is the page at that instant.
 *   no loss:  the eviction happens with the page lock held and state CLEAN, so the content
 *             dropped equals the slot -- except for writes through a page pin taken while the
 *             page was writable, which write-protection never sees: UFFDIO_MOVE refuses a
 *             pinned page, and the moved page is compared with the snapshot (or the slot), so a
 *             pinned write that landed after the snapshot is found and kept (design.md: "No
 *             write lost through a pin"); a redirtied page's generation moved on, so its
 *             completion cannot make it CLEAN. A page has at most one writeback in flight:
 *             submission happens after the page lock is released, so two writebacks of one
 *             page could reach the device's queue in the other order and the older, stale
 *             copy would overwrite the newer one in the slot after the page was dropped.
 *   no wait:  the write-protect fault path never waits for a compression: it takes the page lock
 *             (held only for bounded work: ioctls, decompression of <= UZ_RA_MAX pages, never
 *             a queue or a completion), changes the state and unprotects.
 *
 * Lock order (outermost first), and whether a holder may sleep:
 *   1. page locks (UZ_PG_LOCK), in ascending index order (trylock only for any other order).
 *      The holder MAY block: device calls (decompression, discard), userfaultfd ioctls,
 *      madvise. So waiters spin only briefly and then sleep on a futex (region_page.c).
 *   2. device locks (inside uz_dev_*: read, discard; the device documents its own).
 *   3. r->lock (a pthread mutex: the request pool, the drop queue, the condition variables;
 *      a leaf). The holder may sleep only in pthread_cond_(timed)wait on its own conditions.
 *   r->ra_lock (a spinlock, readahead streams) is a leaf taken under nothing else; its holder
 *   never blocks (a few loads and stores).
 *   0b. r->read_lock (a pthread mutex): taken holding nothing, by a fault thread around a
 *   read of the userfaultfd and the handling of an event (which takes page locks, ascending),
 *   by uz_region_events_settle(), and by the fork prepare handler; a fault thread holding page
 *   locks only trylocks it (uz_region_fault_read_ahead()). Its holder blocks on page locks and
 *   in non-blocking reads only.
 *   0. Outside all of these: the fork list lock (region_fork.c), taken holding nothing by
 *   create and destroy, and by the fork prepare handler, which then takes, region by region,
 *   read_lock, every page lock (ascending, after the writebacks drained), scratch_lock, the device
 *   (uz_dev_fork_prepare), r->lock and r->ra_lock, and holds them all across the fork.
 * uz_dev_write_page_async() (which may block on a full queue) is only called holding no lock.
 * No page lock is held across anything that needs another thread: the snapshot copy, which may
 * fault, holds none; a fault thread waiting for room keeps serving the faults that need none
 * (the reclaim thread's own among them), so reclaim and fault threads never wait in a cycle.
 * Completions run on zramd workers and take one page lock, then r->lock.
 *
 * Failures of the system calls (region_sys.c retries EINTR and EAGAIN): every fault message
 * ends with the faulting thread woken, by the ioctl that resolves it or by UFFDIO_WAKE (it then
 * faults again). ENOMEM, and EAGAIN past the retries, are transient: counted in
 * uz_region_stat.sys_errors, the fault is retried by the faulting thread. Any other error, and
 * a wake that fails, puts the region in its failed state (uz_region_stat.failed): the whole
 * region is woken, reclaim stops, nothing waits for room any more, pin and swap-out return -EIO,
 * and a later missing fault is answered with UFFDIO_POISON (SIGBUS, as the kernel does for a
 * page it cannot read) where the kernel has it, rather than served from state that may disagree
 * with the kernel's.
 */
#ifndef UZ_REGION_INTERNAL_H
#define UZ_REGION_INTERNAL_H

#include <uzram/dev.h>
#include <uzram/region.h>

#include <linux/ioctl.h> /* _IO for the constants below; ioctl() itself is region_sys.c's */
#include <linux/userfaultfd.h>
#include <sched.h> /* cpu_set_t */
#include <sys/types.h>
#include <sys/uio.h>

#include "util.h"

/* ---- kernel constants newer than some distributions' headers (Linux 6.18 has them all) ---- */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFDIO_WRITEPROTECT_MODE_WP
#define UFFDIO_WRITEPROTECT_MODE_WP ((__u64)1 << 0)
#endif
#ifndef UFFDIO_WRITEPROTECT_MODE_DONTWAKE
#define UFFDIO_WRITEPROTECT_MODE_DONTWAKE ((__u64)1 << 1)
#endif
#ifndef UFFDIO_COPY_MODE_WP
#define UFFDIO_COPY_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_THREAD_ID
#define UFFD_FEATURE_THREAD_ID (1 << 8)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFDIO_POISON
struct uffdio_poison {
    struct uffdio_range range;
    __u64 mode;
    __s64 updated;
};
#define _UFFDIO_POISON 0x08
#define UFFDIO_POISON  _IOWR(0xAA, _UFFDIO_POISON, struct uffdio_poison)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 10)
#endif
#ifndef UFFDIO_MOVE /* Linux 6.8 */
struct uffdio_move {
    __u64 dst, src, len, mode;
    __s64 move;
};
#define _UFFDIO_MOVE                     0x05
#define UFFDIO_MOVE                      _IOWR(0xAA, _UFFDIO_MOVE, struct uffdio_move)
#define UFFDIO_MOVE_MODE_DONTWAKE        ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
    __u64 start, end, categories;
};
struct pm_scan_arg {
    __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
    __u64 category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN    _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#endif

/* ---- tunables ---- */
#define UZ_RA_MAX           32u    /* readahead / fault-around window, pages (the page-cluster) */
#define UZ_RA_STREAMS       32u    /* sequential streams tracked for readahead */
#define UZ_RA_GAP           8u     /* a fault this close after a stream's window continues it */
#define UZ_EMPTY_AROUND     16u    /* fresh pages a first write maps with it (handle_missing) */
#define UZ_REGION_NREQ      512u   /* writebacks in flight at most (snapshot buffers) */
#define UZ_RECLAIM_BATCH    128u   /* victims chosen per sweep step */
#define UZ_DROP_BATCH       64u    /* completed evictions gathered before one round of drops */
#define UZ_REGION_MIN_LIMIT 16u    /* smallest resident limit, pages */
#define UZ_FAULT_SPIN_NS    30000u /* a fault thread polls this long after a fault, then sleeps */
#define UZ_FAULT_FOLLOW     256u   /* faults between two looks at where the faulting thread runs */
#define UZ_FAULT_BACKLOG_MS 1000   /* with events, a sleeping fault thread looks at the backlog */
#define UZ_PG_LOCK_SPINS    128u   /* a page lock waiter spins this many times, then sleeps */
#define UZ_SYS_RETRIES      64u    /* EINTR/EAGAIN without progress before a call gives up */
#define UZ_FAULT_DEFER      256u   /* faults a fault thread keeps aside while waiting for room */
#define UZ_EV_BACKLOG       256u   /* messages read ahead while an event is handled */

/* ---- the page word ---- */
enum uz_pg_state {
    UZ_PG_EMPTY = 0,
    UZ_PG_DIRTY = 1,
    UZ_PG_CLEAN = 2,
    UZ_PG_WB = 3,
    UZ_PG_SWAPPED = 4,
    UZ_PG_HOLE = 5,
    UZ_PG_NSTATES
};
#define UZ_PG_STATE_MASK 0x7ull
#define UZ_PG_LOCK       (1ull << 3) /* the page lock (region_page.c; the holder may block) */
#define UZ_PG_REF        (1ull << 4) /* referenced since the clock hand last passed */
#define UZ_PG_SAMPLE     (1ull << 5) /* swapped in read-only to sample the swap-in write ratio */
#define UZ_PG_FRESH      (1ull << 6) /* CLEAN by a writeback (not by a swap-in): for statistics */
#define UZ_PG_INFLIGHT   (1ull << 7) /* a writeback of the page is queued or running */
#define UZ_PG_PIN_SHIFT  8
#define UZ_PG_PIN_ONE    (1ull << UZ_PG_PIN_SHIFT)
#define UZ_PG_PIN_MASK   (0xffffull << UZ_PG_PIN_SHIFT)
#define UZ_PG_WAITERS    (1ull << 24) /* a thread sleeps on the futex of the lock; only with LOCK */
#define UZ_PG_KEPT       (1ull << 25) /* DIRTY, held resident by the kernel (see "kept" above) */
#define UZ_PG_UNPROT     (1ull << 26) /* CLEAN or WB without write-protection (see above) */
#define UZ_PG_GEN_SHIFT  32
/* The futex is the word's low 32 bits, which hold LOCK and WAITERS. */
_Static_assert(UZ_PG_PIN_MASK < UZ_PG_WAITERS && UZ_PG_WAITERS < (1ull << 32), "page word bits");

static inline unsigned uz_pg_state(uint64_t w)
{
    return (unsigned)(w & UZ_PG_STATE_MASK);
}
/* Every change of state ends an unprotected writeback's standing (UZ_PG_UNPROT): only its
 * completion keeps it, explicitly. */
static inline uint64_t uz_pg_set_state(uint64_t w, unsigned st)
{
    return (w & ~(UZ_PG_STATE_MASK | UZ_PG_UNPROT)) | st;
}
/* w made DIRTY by a write or a stored copy given up: the swap-in sample and the writeback mark
 * go with the state (and UZ_PG_UNPROT, as with any change of state). */
static inline uint64_t uz_pg_dirtied(uint64_t w)
{
    return uz_pg_set_state(w & ~(UZ_PG_SAMPLE | UZ_PG_FRESH), UZ_PG_DIRTY);
}
static inline uint32_t uz_pg_gen(uint64_t w)
{
    return (uint32_t)(w >> UZ_PG_GEN_SHIFT);
}
static inline uint64_t uz_pg_next_gen(uint64_t w)
{
    return w + (1ull << UZ_PG_GEN_SHIFT); /* wraps within the field */
}
static inline unsigned uz_pg_pins(uint64_t w)
{
    return (unsigned)((w & UZ_PG_PIN_MASK) >> UZ_PG_PIN_SHIFT);
}
static inline bool uz_pg_resident(unsigned st)
{
    return st == UZ_PG_DIRTY || st == UZ_PG_CLEAN || st == UZ_PG_WB;
}

/* One writeback in flight: the snapshot the device reads, and what completion checks. */
struct uz_region_req {
    struct uz_region *r;
    uint64_t index;
    uint32_t gen;               /* the page's generation when the snapshot was taken */
    bool evict;                 /* completion queues the page for dropping */
    unsigned char *buf;         /* UZ_PAGE_SIZE bytes, owned by the request until done */
    struct uz_region_req *next; /* free list */
};

struct uz_region_fault_thread {
    struct uz_region *r;
    pthread_t thread;
    bool started;
    unsigned char *staging; /* UZ_RA_MAX pages: decompressed pages for UFFDIO_COPY */
    /* Odd while the thread handles a fault past its reservation (bounded work: page locks,
     * ioctls, decompressions): uz_region_stat() waits for an odd value to change, so a thread
     * back from a fault sees the fault's state change in its own statistics. */
    _Atomic uint64_t busy;
    /* Faults read while waiting for room that need room themselves (fault_reserve()), served
     * in order once the current fault is: a ring of UZ_FAULT_DEFER messages. */
    struct uffd_msg *defer;
    unsigned dhead, ndefer;
    /* The watchdog's view of this thread's wait for room (region_watchdog.c): wait_since is
     * the wait's start (ns, CLOCK_MONOTONIC; 0: not waiting), also its episode id; reported is
     * the wait_since of the episode reported (so once per episode, whoever sees it first). */
    _Atomic uint64_t wait_since, wait_page, wait_reported;
    int64_t wait_wb_errors, wait_sys_errors; /* the counters when the wait began */
    /* How long the thread polls after a fault before it sleeps: UZ_FAULT_SPIN_NS, or 0 while
     * it may run on one CPU only (fault_spin_ns()). Written by the thread only, when it starts
     * and when it wakes from a sleep. */
    _Atomic uint64_t spin_ns;
    /* Following the application's faulting thread (fault_follow()): the CPUs the thread was
     * allowed at its start; the faulting thread of the faults counted since the last look
     * (follow_mixed: more than one); the CPU the thread is pinned to, -1 when not. Written by
     * the thread only (follow_cpu read by tests). */
    cpu_set_t home;
    pid_t follow_tid;
    bool follow_mixed;
    unsigned follow_n;
    _Atomic int follow_cpu;
};

/* A sequential access stream: the next fault expected at `next` grows the window. */
struct uz_ra_stream {
    uint64_t next;
    unsigned win;
    uint64_t used; /* clock for replacement */
};

struct uz_region_stats {
    struct uz_counter major_faults, minor_faults, wp_faults, swapins, readahead_pages;
    struct uz_counter swapouts, swapouts_clean, writebacks, redirtied, throttled, read_errors;
    struct uz_counter wb_errors, sys_errors;
    struct uz_counter evict_refused, evict_restored, evict_saved, wb_unprotected;
};

/* The watchdog (region_watchdog.c). */
struct uz_region_wd {
    uint64_t timeout_ns;
    /* lock: a leaf taken under no other lock (a page lock may be held); the holder never
     * blocks (a few loads and stores). Protects fn, arg and the failing-fault record. */
    pthread_mutex_t lock;
    uz_region_watchdog_fn fn;
    void *arg;
    struct uz_counter stalls;
    _Atomic int last_wb_err; /* the last error of a writeback completion (wb_done) */
    /* A fault whose own ioctl keeps failing transiently (one at a time is tracked): since 0
     * when none; cleared when that page's fault is served. */
    _Atomic uint64_t fail_since;
    uint64_t fail_page, fail_reported;
    int fail_err;
};

/* ---- system calls (region_sys.c) ---- */
enum uz_region_sys_op {
    UZ_SYS_COPY,            /* UFFDIO_COPY */
    UZ_SYS_ZEROPAGE,        /* UFFDIO_ZEROPAGE */
    UZ_SYS_WRITEPROTECT,    /* UFFDIO_WRITEPROTECT, protecting */
    UZ_SYS_UNPROTECT,       /* UFFDIO_WRITEPROTECT, unprotecting (it wakes the writer) */
    UZ_SYS_WAKE,            /* UFFDIO_WAKE */
    UZ_SYS_POISON,          /* UFFDIO_POISON */
    UZ_SYS_MADVISE,         /* madvise */
    UZ_SYS_PROCESS_MADVISE, /* process_madvise on this process */
    UZ_SYS_READ,            /* process_vm_readv on this process (the snapshot copy) */
    UZ_SYS_MOVE,            /* UFFDIO_MOVE, either way between the region and the scratch */
    UZ_SYS_TRASH,           /* UFFDIO_MOVE from the scratch to the trash (r->trash_uffd) */
    UZ_SYS_WRITE,           /* process_vm_writev on this process (a moved page put back) */
    UZ_SYS_PUTBACK,         /* uz_region_sys_put_back() as a whole (for tests) */
    UZ_SYS_NOPS
};

/* Failure injection for tests: off unless uz_region_sys_inject() armed it. */
struct uz_region_inject {
    _Atomic unsigned armed; /* calls still to fail (0: off) */
    _Atomic unsigned skip;  /* calls to let pass before failing */
    _Atomic int err;        /* the errno they fail with */
};

struct uz_region {
    unsigned char *base;
    size_t size;
    uint64_t npages;
    _Atomic uint64_t *pages; /* npages words, see above; each holds a page lock (order 1, the
                                holder may block: region_page.c) */
    size_t pages_bytes;
    struct uz_dev *dev;
    int uffd;
    unsigned char *doorbell; /* nfault registered pages: destroy touches page t to stop one
                                thread (each page faults once: no madvise needed to re-arm) */
    int pidfd_own;           /* pidfd of this process (closed at destroy) */
    pid_t pid;               /* this process, for process_vm_readv (the snapshot copy) */
    _Atomic bool no_vmread;  /* process_vm_readv refused (seccomp): plain copies instead */
    _Atomic int pidfd;       /* pidfd_own while process_madvise(MADV_DONTNEED) works, else -1 */
    int mode;                /* enum uz_region_mode */
    bool stable_writes;
    bool locked;
    bool can_poison;
    bool can_move; /* evictions move pages out (UFFDIO_MOVE), else MADV_DONTNEED them */

    /* The scratch: UZ_RECLAIM_BATCH pages registered (missing) with r->uffd, where evictions
     * move their victims; empty whenever scratch_lock is free. scratch_lock: order 1b, taken
     * holding page locks, no page lock is taken under it; the holder blocks in ioctls and
     * madvise (a pthread mutex). */
    unsigned char *scratch;
    unsigned char *scratch_cmp; /* one page: a stored copy read back for the comparison */
    bool scratch_registered;
    pthread_mutex_t scratch_lock;
    /* The trash: UZ_RECLAIM_BATCH pages registered (write-protect mode only: nothing waits
     * for a fault there) with a second userfaultfd, trash_uffd, that asks for no events. The
     * scratch is emptied by moving its pages there and dropping them (MADV_DONTNEED): dropping
     * the scratch itself would raise a REMOVE event on r->uffd, and the thread that drops
     * (holding page locks) would wait for a fault thread to read it. Under scratch_lock. */
    unsigned char *trash;
    int trash_uffd;
    bool trash_registered;

    /* Non-cooperative events (UFFD_FEATURE_EVENT_*), where the kernel has them: REMOVE
     * (madvise DONTNEED/FREE: only with can_move, because without UFFDIO_MOVE the region
     * drops pages with madvise itself, holding page locks), UNMAP and REMAP.
     * read_lock (a pthread mutex, order 0b: taken holding nothing but, inside, page locks
     * in ascending order; the holder blocks only in a non-blocking read() and on page
     * locks) is held by a fault thread across each read() of r->uffd and the handling of an
     * event it returned, so that every message read after an event is handled after it (a
     * fault on a page the application has just dropped never serves the old contents), and
     * a thread that made an event-raising call waits for its handling with
     * uz_region_events_settle(). The handling itself makes no userfaultfd ioctl that an unread
     * event could refuse (EAGAIN) except REMAP's copies, which retry (region_fault.c). */
    bool ev_remove, ev_unmap;
    pthread_mutex_t read_lock;
    /* Messages read ahead while an event was being handled (a REMAP's copies are refused
     * while the next event waits to be read: the handler reads it), served before the
     * descriptor is read again; under read_lock. */
    struct uffd_msg backlog[UZ_EV_BACKLOG];
    unsigned bl_head, bl_n;

    /* Watermarks in pages (limit 0: no reclaim). Faults wait while resident + n > limit;
     * reclaim starts above start_wm and evicts until resident - pending_evict <= stop_wm. */
    uint64_t limit, start_wm, stop_wm;
    size_t limit_bytes;        /* resident_limit as configured */
    uint64_t clean_max;        /* pages: the swap cache's bound (clean_limit), read-only */
    _Atomic uint64_t resident; /* == |DIRTY| + |CLEAN| + |WB| - |KEPT| + reservations being
                                  filled (kept pages do not count against the limit) */
    _Atomic uint64_t kept;     /* == |KEPT| */
    _Atomic uint64_t pinned;   /* pages with a pin count > 0 */
    /* pin_budget == pinned + pages claimed by uz_region_pin() calls in progress and not yet
     * pinned (or found pinned already); <= limit / 2 with a limit, taken by CAS before any page
     * is pinned, so concurrent pinners can never together pin more than half the limit. */
    _Atomic uint64_t pin_budget;
    /* nstate[s] == |pages in state s| (s != EMPTY), kept by uz_region_pg_unlock() as pages
     * change state: uz_region_stat() sums them instead of scanning the page words. A sum read
     * while pages change state may be off by the changes in progress. */
    struct uz_counter nstate[UZ_PG_NSTATES];
    _Atomic uint64_t pending_evict; /* evicting writebacks not yet dropped or abandoned */
    _Atomic unsigned room_waiters;
    _Atomic bool reclaim_busy;
    _Atomic bool stop;

    /* Swap-in mapping policy: wscore (0..1024) estimates how many swapped-in pages are written
     * before they are evicted; above half, swap-ins are mapped writable (no second fault), and
     * one in 16 is still mapped read-only as a sample. */
    _Atomic int wscore;
    _Atomic uint64_t swapin_seq;

    struct uz_spinlock ra_lock; /* a leaf, under no other lock; the holder never blocks */
    struct uz_ra_stream ra[UZ_RA_STREAMS];
    uint64_t ra_clock;

    pthread_mutex_t lock; /* lock order 3, a leaf: protects what follows; the holder sleeps
                             only in waits on these conditions */
    pthread_cond_t reclaim_cond, room_cond, req_cond;
    pthread_cond_t wb_cond; /* a writeback ended (wb_done, abandon), while wb_waiters */
    unsigned wb_waiters;    /* uz_region_swapout() calls waiting for another's writeback */
    struct uz_region_req *free_reqs;
    unsigned nfree;
    struct uz_region_req *done_reqs; /* completed evictions whose pages reclaim drops */
    unsigned ndone;                  /* |done_reqs| */
    bool reclaim_kick;

    uint64_t hand; /* clock hand (reclaim thread only) */
    pthread_t reclaim_thread;
    _Atomic pid_t reclaim_tid; /* the reclaim thread's id (UFFD_FEATURE_THREAD_ID), 0 before */
    bool reclaim_started;

    struct uz_region_req *reqs;
    unsigned char *bufs;  /* UZ_REGION_NREQ snapshot pages */
    unsigned char *zeros; /* UZ_RA_MAX pages of zeros, the source of zero-filling copies */
    unsigned nfault;
    struct uz_region_fault_thread *ft;

    _Atomic int failed; /* 0, or the -errno that put the region in its failed state */
    struct uz_region_stats st;
    struct uz_region_inject inject[UZ_SYS_NOPS];

    /* fork() (region_fork.c). fork_prev/next/listed: the list of live regions, under the fork
     * list lock. fork_hold: under r->lock, set while a fork is being prepared: no writeback
     * starts (take_reqs) until it is cleared. forked: this process forked, or is a child of a
     * fork, while the region was live: resident pages may be shared copy-on-write, which
     * UFFDIO_MOVE refuses (uz_region_drop() then makes them exclusive and tries again). */
    struct uz_region *fork_prev, *fork_next;
    bool fork_listed;
    bool fork_hold;
    bool fork_dev; /* the prepare handler holds the device (uz_dev_fork_prepare()) */
    _Atomic bool forked;
    struct uz_region_wd wd;
};

/* region_page.c: the page lock. uz_region_pg_lock() returns the locked word (LOCK set,
 * WAITERS clear); the holder changes its copy and publishes it with uz_region_pg_unlock(), which
 * wakes sleepers. uz_region_pg_settled() waits (spin, then sleep) until the lock is free and
 * returns the word then, without taking the lock. */
UZ_HIDDEN uint64_t uz_region_pg_lock(struct uz_region *r, uint64_t i);
UZ_HIDDEN bool uz_region_pg_trylock(struct uz_region *r, uint64_t i, uint64_t *w);
UZ_HIDDEN void uz_region_pg_unlock(struct uz_region *r, uint64_t i, uint64_t w);
UZ_HIDDEN uint64_t uz_region_pg_settled(struct uz_region *r, uint64_t i);
UZ_HIDDEN void uz_region_copy_page(void *dst, const void *src);

/* region_sys.c: the primitives. Each returns 0 or -errno after the one retry loop (EINTR and
 * EAGAIN retried while they make progress, at most UZ_SYS_RETRIES times in a row without).
 * Ranges are in pages of the region; *done (where there is one) is the pages mapped. */
/* uz_region_sys_open() : opens r->uffd (FULL mode first, then user-only: r->mode) and
 *  negotiates the API (r->can_poison). @return : 0, -ENOSYS, -EPERM, -EOPNOTSUPP, -errno. */
UZ_HIDDEN int uz_region_sys_open(struct uz_region *r);
/* uz_region_sys_register() : the region (missing + write-protect) and the doorbell (missing).
 *  @return : 0, -EOPNOTSUPP (no write-protect for anonymous memory), -errno. */
UZ_HIDDEN int uz_region_sys_register(struct uz_region *r);
/* uz_region_sys_close() : unregisters what is registered and closes r->uffd (teardown). */
UZ_HIDDEN void uz_region_sys_close(struct uz_region *r);
UZ_HIDDEN int uz_region_sys_copy(struct uz_region *r, uint64_t first, const void *src, unsigned n,
                                 bool wp, unsigned *done);
/* uz_region_sys_copy_at() : UFFDIO_COPY of one page, writable, at addr (anywhere r->uffd has
 *  registered: a mapping moved out of the region, see region_fault.c). @return : 0, -errno. */
UZ_HIDDEN int uz_region_sys_copy_at(struct uz_region *r, uint64_t addr, const void *src);
UZ_HIDDEN int uz_region_sys_zeropage(struct uz_region *r, uint64_t first, unsigned n,
                                     unsigned *done);
UZ_HIDDEN int uz_region_sys_wp(struct uz_region *r, uint64_t first, uint64_t n, bool protect);
UZ_HIDDEN int uz_region_sys_wake(struct uz_region *r, uint64_t first, uint64_t n);
UZ_HIDDEN int uz_region_sys_poison(struct uz_region *r, uint64_t i);
/* The doorbell: page t answered (zero page, else a wake). */
UZ_HIDDEN int uz_region_sys_doorbell_answer(struct uz_region *r, uintptr_t addr);
/* madvise(advice) of [addr, addr+len) outside the region's pages proper (setup) */
UZ_HIDDEN int uz_region_sys_madvise(struct uz_region *r, void *addr, size_t len, int advice);
/* MADV_DONTNEED of runs iov[0..n): one process_madvise where the kernel allows, else one
 * madvise per run. ok[k] tells whether run k was dropped. @return : 0, or the first error. */
UZ_HIDDEN int uz_region_sys_zap(struct uz_region *r, const struct iovec *iov, unsigned n, bool *ok);
/* uz_region_sys_read() :
 *  Copies pages first..first+n-1 of the region into dst[0..n) (one page each) with
 *  process_vm_readv on this process, so that a page the application made unreadable
 *  (mprotect) fails with -EFAULT instead of crashing the thread; a page the application dropped
 *  (madvise) faults like a kernel access, served by a fault thread (or -EFAULT in user-only
 *  mode). Never called with a page lock held. *done: pages copied from `first`.
 *  @return : 0 (*done == n), -EFAULT (page first + *done cannot be read), or -errno. */
UZ_HIDDEN int uz_region_sys_read(struct uz_region *r, uint64_t first, unsigned n,
                                 unsigned char *const *dst, unsigned *done);
/* uz_region_sys_move() : UFFDIO_MOVE of one page from src to dst (between the region and the
 *  scratch, either way). @return : 0, -EBUSY (pinned or shared: not moved), -EINVAL (mlock'ed
 *  or protected unlike the scratch), -EEXIST (dst mapped), -errno. */
UZ_HIDDEN int uz_region_sys_move(struct uz_region *r, void *dst, const void *src);
/* uz_region_sys_move_run() : the same for n pages from src to dst, in as few calls (TLB
 *  flushes) as the kernel allows. *done: pages moved from the start. @return : 0 (*done == n),
 *  or the error of page *done (the pages after it were not tried). */
UZ_HIDDEN int uz_region_sys_move_run(struct uz_region *r, void *dst, const void *src, unsigned n,
                                     unsigned *done);
/* uz_region_sys_scratch_free() : empties the first n pages of the scratch (moved to the trash,
 *  dropped there; no event). A scratch or trash that mlockall() populated or locked is
 *  unlocked and emptied as well. Called with scratch_lock held. @return : 0, -errno. */
UZ_HIDDEN int uz_region_sys_scratch_free(struct uz_region *r, unsigned n);
/* uz_region_sys_scratch_unlock() : munlock of the scratch and the trash (mlockall locked
 *  them), then empties the whole scratch. @return : 0, -errno. */
UZ_HIDDEN int uz_region_sys_scratch_unlock(struct uz_region *r);
/* uz_region_sys_put_back() : page i, moved out to scratch page s, into the region again:
 *  moved back, else copied in (UFFDIO_COPY), else written (process_vm_writev: the range no
 *  longer registered, its event not handled yet). @return : 0, or the last error. */
UZ_HIDDEN int uz_region_sys_put_back(struct uz_region *r, uint64_t i, unsigned char *s);
/* uz_region_sys_write() : copies one page from src into page i of the region with
 *  process_vm_writev (a write of the kernel's: never crashes, faults like a system call).
 *  @return : 0, -EFAULT, -errno. */
UZ_HIDDEN int uz_region_sys_write(struct uz_region *r, uint64_t i, const void *src);
/* uz_region_sys_unregister() : takes [addr, addr+len) off r->uffd (the kernel clears its
 *  uffd-wp bits). @return : 0, -errno. */
UZ_HIDDEN int uz_region_sys_unregister(struct uz_region *r, void *addr, size_t len);
/* uz_region_sys_inject() :
 *  For tests: the next `skip` calls of `op` on this region pass, the `times` after them fail
 *  with `err` (without being made). times 0 disarms. Safe from any thread. */
UZ_HIDDEN void uz_region_sys_inject(struct uz_region *r, enum uz_region_sys_op op, unsigned skip,
                                    unsigned times, int err);

/* region.c */
/* uz_region_init_sync() : initialises r->lock, r->scratch_lock and r's condition variables
 *  (monotonic clock): at create, and in a forked child, whose copies may be held by threads
 *  that do not exist there. */
UZ_HIDDEN void uz_region_init_sync(struct uz_region *r);
UZ_HIDDEN void uz_region_discard_slot(struct uz_region *r, uint64_t i);
/* uz_region_hole_locked() :
 *  Locked page i (word w) is no longer the region's (unmapped): its stored copy is freed, and
 *  what it counted (resident or kept, pinned, the pin budget) is given back. A writeback in
 *  flight completes into a HOLE, which frees what it stored. @return : the word to unlock
 *  with (HOLE). The caller calls uz_region_room_freed() after a run. */
UZ_HIDDEN uint64_t uz_region_hole_locked(struct uz_region *r, uint64_t i, uint64_t w);
UZ_HIDDEN unsigned uz_region_reserve(struct uz_region *r, unsigned min, unsigned want);
/* uz_region_reserve_try() : the same without waiting. @return : pages reserved, 0 when there is
 *  no room for `min` (a stopping or failed region always has room). */
UZ_HIDDEN unsigned uz_region_reserve_try(struct uz_region *r, unsigned min, unsigned want);
/* uz_region_reserve_force() : n pages even above the limit (a fault reclaim itself raised). */
UZ_HIDDEN void uz_region_reserve_force(struct uz_region *r, unsigned n);
/* uz_region_room_wait() : kicks reclaim and waits up to `ms` for room for `min` pages. */
UZ_HIDDEN void uz_region_room_wait(struct uz_region *r, unsigned min, long ms);
UZ_HIDDEN void uz_region_unreserve(struct uz_region *r, unsigned n);
UZ_HIDDEN void uz_region_wake_reclaim(struct uz_region *r);
UZ_HIDDEN void uz_region_room_freed(struct uz_region *r);
UZ_HIDDEN void uz_region_note_sample(struct uz_region *r, bool written);
/* uz_region_error() :
 *  Counts a failed system call (err < 0) and, unless it is transient (ENOMEM, EAGAIN, EINTR),
 *  puts the region in its failed state. @return : err. Safe with page locks held. */
UZ_HIDDEN int uz_region_error(struct uz_region *r, int err);
/* uz_region_set_failed() : enters the failed state (the first error is kept) and wakes every
 * thread the region could have left asleep: faulting threads (a wake of the whole region) and
 * waiters on its conditions. */
UZ_HIDDEN void uz_region_set_failed(struct uz_region *r, int err);
/* uz_region_release() : wakes the threads faulting on pages first..first+n-1 so that they fault
 * again; a wake that fails puts the region in its failed state (which wakes everything). */
UZ_HIDDEN void uz_region_release(struct uz_region *r, uint64_t first, uint64_t n);
static inline bool uz_region_failed(struct uz_region *r)
{
    return atomic_load_explicit(&r->failed, memory_order_relaxed) != 0;
}

/* uz_region_start_thread() : starts one of the region's threads with every signal blocked.
 *  @return : 0 or -errno of pthread_create. */
UZ_HIDDEN int uz_region_start_thread(pthread_t *t, void *(*fn)(void *), void *arg,
                                     const char *name);

/* region_fault.c */
UZ_HIDDEN void *uz_region_fault_main(void *arg);
/* uz_region_fill_run() :
 *  Maps the locked, non-resident pages first..first+n-1 (words[] are their locked words, updated
 *  to the new states), for which the caller holds a reservation of n pages. A run of EMPTY pages
 *  is zero-filled; otherwise SWAPPED pages are read from the device (EMPTY ones are zeros) and
 *  mapped read-only (CLEAN) or, when `write` or the policy says so, writable (DIRTY).
 *  @return : the number of pages mapped from `first` (the rest keep their state and the caller
 *            gives their reservation back); 0 with *err set when none could be. */
UZ_HIDDEN unsigned uz_region_fill_run(struct uz_region *r, unsigned char *staging, uint64_t first,
                                      unsigned n, uint64_t *words, bool write, int *err);

/* uz_region_fault_read_ahead() :
 *  On a fault thread whose ioctl the kernel refuses with EAGAIN while an event waits to be
 *  read (and this thread would be the one to read it): reads the waiting messages into the
 *  backlog, which this thread serves next, so that the ioctl can succeed. Elsewhere a no-op. */
UZ_HIDDEN void uz_region_fault_read_ahead(struct uz_region *r);

/* uz_region_events_settle() :
 *  Returns once every event read so far is handled (read_lock free, the backlog empty): a
 *  thread that made a call raising one (munmap, madvise: they return once it is read) sees
 *  its effect after this. Holding no lock. */
UZ_HIDDEN void uz_region_events_settle(struct uz_region *r);

/* uz_region_events_drain() :
 *  With read_lock held and no page lock: reads every waiting message into the backlog and
 *  handles the events among them at once (the faults stay, in order), so that the page words
 *  say what the kernel did before they are copied (the fork prepare handler: a child would
 *  otherwise register a range an unread UNMAP has taken away). @return : 0, -ENOMEM. */
UZ_HIDDEN int uz_region_events_drain(struct uz_region *r);

/* region_reclaim.c */
UZ_HIDDEN void *uz_region_reclaim_main(void *arg);
/* uz_region_drop() :
 *  Evicts those of pages idx[0..n) (ascending, n <= UZ_RECLAIM_BATCH) that are CLEAN and not
 *  pinned: moved out and compared with reqs[k]'s snapshot (when reqs, and its generation is the
 *  page's) or with the slot, or without UFFDIO_MOVE dropped with one system call where the
 *  kernel allows. Pages the kernel refuses become kept, changed ones DIRTY.
 *  @return : pages evicted. */
UZ_HIDDEN unsigned uz_region_drop(struct uz_region *r, const uint64_t *idx,
                                  struct uz_region_req *const *reqs, unsigned n);
UZ_HIDDEN unsigned uz_region_writeback(struct uz_region *r, const uint64_t *idx, unsigned n,
                                       bool evict);

/* region_fork.c: fork() support (pthread_atfork handlers shared by every region). */
/* uz_region_fork_track() : lists the fully created region r for the handlers (registered once,
 *  at the first call). @return : 0, or -ENOMEM (pthread_atfork). */
UZ_HIDDEN int uz_region_fork_track(struct uz_region *r);
/* uz_region_fork_untrack() : takes r off the list (waits for a fork in progress); a region
 *  never listed is a no-op. First thing in teardown. */
UZ_HIDDEN void uz_region_fork_untrack(struct uz_region *r);
/* uz_region_fork_unshare() :
 *  For locked CLEAN page i whose move was refused with EBUSY in a region that has forked (its
 *  page may be shared copy-on-write with the other process): unprotects it, breaks the sharing
 *  with a write fault that changes nothing (MADV_POPULATE_WRITE) and protects it again, so that
 *  the move can be tried again. Writes may land unseen meanwhile: the caller compares the moved
 *  page with the slot whatever the page's history. @return : 0 (protected again), or -errno
 *  (the page may be unprotected: the caller makes it DIRTY). */
UZ_HIDDEN int uz_region_fork_unshare(struct uz_region *r, uint64_t i);
/* region_watchdog.c: the hooks. None blocks; none calls the callback except _tick, which must
 * be called holding no lock (and, on a fault thread, with ft->busy even). */
UZ_HIDDEN void uz_region_wd_init(struct uz_region *r, unsigned ms);
UZ_HIDDEN void uz_region_wd_destroy(struct uz_region *r);
/* A fault thread starts (page i) / ends waiting for room. */
UZ_HIDDEN void uz_region_wd_wait_begin(struct uz_region_fault_thread *ft, uint64_t i);
UZ_HIDDEN void uz_region_wd_wait_end(struct uz_region_fault_thread *ft);
/* The fault on page i failed with err (transient: the thread faults again) / was served. */
UZ_HIDDEN void uz_region_wd_fail(struct uz_region *r, uint64_t i, int err);
UZ_HIDDEN void uz_region_wd_ok_slow(struct uz_region *r, uint64_t i);
static inline void uz_region_wd_ok(struct uz_region *r, uint64_t i)
{
    if (UZ_UNLIKELY(atomic_load_explicit(&r->wd.fail_since, memory_order_relaxed)))
        uz_region_wd_ok_slow(r, i);
}
/* Looks at every wait and the failing fault; reports (counter, callback) what is overdue. */
UZ_HIDDEN void uz_region_wd_tick(struct uz_region *r);

/* region_check.c */
/* What uz_region_check() found. */
struct uz_region_check_result {
    uint64_t pages;            /* page words checked */
    uint64_t bad_pages;        /* pages whose word disagrees with the kernel or itself */
    uint64_t first_bad;        /* the first of them, when bad_pages */
    uint64_t first_bad_word;   /* its page word */
    const char *first_problem; /* what is wrong with it (a static string), or NULL */
    uint64_t resident, pinned; /* counted from the page words */
    uint64_t dirty, clean, writeback, swapped, holes; /* counted from the page words */
    uint64_t nstate[UZ_PG_NSTATES];                   /* r->nstate[], summed */
    uint64_t resident_counter;                        /* r->resident */
    uint64_t pinned_counter;                          /* r->pinned */
    char msg[192]; /* a one-line summary of the first problem, "" when none */
};
/* uz_region_check() :
 *  For tests, on a quiescent region (no faults, no writebacks in flight): every page's state
 *  against the kernel's view (PAGEMAP_SCAN: present, write-protected) and the counters. Prints
 *  nothing: fills *res (when not NULL).
 *  @return : 0, -EUCLEAN when anything disagrees, or -errno (pagemap unreadable, -ENOMEM). */
UZ_HIDDEN int uz_region_check(struct uz_region *r, struct uz_region_check_result *res);

/* For tests: when set before uz_region_create(), the region behaves as for an unprivileged user
 * (UFFD_USER_MODE_ONLY) even when it could do more. */
UZ_HIDDEN extern bool uz_region_force_user_mode;
/* For tests: when set before uz_region_create(), evictions use MADV_DONTNEED as on kernels
 * before 6.8 (no UFFDIO_MOVE). */
UZ_HIDDEN extern bool uz_region_force_no_move;

#endif
