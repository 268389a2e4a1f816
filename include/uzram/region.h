/* SPDX-License-Identifier: MIT */
/*
 * region.h - transparent compressed swap for a range of an application's memory.
 *
 * A region is `size` bytes of private anonymous memory that the application uses like any other
 * memory: loads and stores from any thread, pointers handed to libc and to system calls. Behind
 * it, userfaultfd serves the missing pages: zeros on first touch, decompressed pages when they
 * were swapped out. A reclaim thread (kswapd) keeps the resident pages under `resident_limit`:
 * it picks cold pages with a clock (second chance), write-protects them, and hands a copy to the
 * region's own compressed device (dev.h) through its asynchronous write queue (the zramd
 * workers). A page under writeback stays write-protected until its stored copy is committed and
 * the page is dropped; a write to it never waits for the compression: the writer gets the page
 * back at once, the in-flight copy is abandoned and the page is dirty again (the seed's stable
 * pages, done without making the writer wait). Pages swapped in and not written keep their
 * stored copy (a swap cache, bounded by clean_limit), so evicting them again costs no
 * compression.
 *
 * Privilege modes (uz_region_stat.mode):
 *  - UZ_REGION_MODE_FULL: root, CAP_SYS_PTRACE, read/write access to /dev/userfaultfd, or
 *    vm.unprivileged_userfaultfd=1. Faults raised by the kernel on the application's behalf
 *    (read(2) into a swapped-out page, write(2) from one) are served like any other.
 *  - UZ_REGION_MODE_USER_ONLY: anyone else (UFFD_USER_MODE_ONLY). Only faults of user code are
 *    served; a system call that touches a non-resident page fails with EFAULT. Bracket such I/O
 *    with uz_region_pin() / uz_region_unpin(), which bring the pages in writable and keep them
 *    resident.
 *    Futexes are system calls too: pin the page(s) of every pthread mutex, condition variable,
 *    rwlock, barrier or semaphore (and any futex word) placed in region memory, for its whole
 *    life. Unpinned, the page can be evicted between glibc's user-space atomic and its futex
 *    call (the library cannot see a user-mode access to a resident page, so no "recently
 *    used" rule can close that window); then FUTEX_WAIT reads the word from the kernel
 *    (get_user after the atomic read fails), the kernel-mode fault is not served in this mode
 *    and the call fails with EFAULT, on which glibc's futex_wait aborts ("The futex facility
 *    returned an unexpected error code"): pthread_mutex_lock when contended, pthread_cond_wait,
 *    sem_wait, pthread_barrier_wait. A private FUTEX_WAKE never reads the word and succeeds
 *    (glibc also ignores EFAULT from a wake); shared (pshared) futexes look the page up for both
 *    wait and wake (EFAULT; glibc drops the failed wake, so a pshared waiter can sleep forever
 *    instead of aborting); PI mutexes (FUTEX_LOCK_PI/UNLOCK_PI) write the word from the kernel,
 *    which fails on a write-protected (CLEAN or under writeback) page too. FULL mode serves
 *    these kernel faults, with one exception, in every mode: the private PI operations
 *    (PTHREAD_PRIO_INHERIT mutexes: FUTEX_LOCK_PI, TRYLOCK_PI, UNLOCK_PI) and FUTEX_WAKE_OP
 *    fault the word in with fixup_user_fault() without the retry userfaultfd needs, so they
 *    fail with EFAULT on a swapped-out or write-protected page even in FULL mode (Linux 6.18;
 *    shared PI mutexes look the page up first and work): pin the page of a PI mutex in both
 *    modes (tests/test_region_futex.c shows each case).
 *
 * I/O into region memory by the kernel through page pins (O_DIRECT, Linux AIO, io_uring,
 * process_vm_writev, RDMA) is safe with uz_region_stat.move_eviction (Linux 6.8+): a pinned
 * page is never evicted, and a write that lands after the page's snapshot is noticed when the
 * page is moved out. Without it (older kernels) such a write can be lost: pin the range with
 * uz_region_pin() around the I/O.
 *
 * mlock() and mlockall(): region memory is swap, and mlockall(MCL_FUTURE) never locks it. A
 * region created after MCL_FUTURE (with MCL_ONFAULT or not) is mapped neither populated nor
 * locked and its resident limit holds; the library's own buffers are locked as they are first
 * touched, as always (uz_region_stat.locked); the stacks and malloc arenas of its threads are
 * new memory like any other, which MCL_FUTURE locks. MCL_FUTURE set while a region exists
 * changes nothing for it (it applies to new mappings only). What the application locks itself
 * stays resident and is not counted against resident_limit (uz_region_stat.kept_pages): a range
 * mlock()'ed, or the whole region after mlockall(MCL_CURRENT) while it exists (which populates
 * it); munlock() or munlockall() lets the pages be swapped again. An unprivileged process under
 * MCL_FUTURE needs RLIMIT_MEMLOCK room for the region's size at create all the same: the kernel
 * checks it when the memory is mapped, before the library can unlock it (-EAGAIN).
 *
 * The application's own memory calls on region memory. The kernel tells the region about
 * them through userfaultfd events (Linux 4.11+ for unmap and mremap; madvise needs UFFDIO_MOVE
 * too, Linux 6.8+): uz_region_stat.events and .remove_events say whether it does. With them,
 * the raw system calls behave like the library calls below, wherever they are made from:
 *  - madvise(MADV_DONTNEED / MADV_FREE) and uz_region_discard(): the range reads back as
 *    zeros (MADV_FREE: zeros or, for a page the kernel has not freed yet, its contents, as on
 *    any memory) and its stored copies are freed. (MADV_REMOVE is refused by the kernel on
 *    private memory.) Without remove_events a raw madvise is safe (nothing hangs or crashes)
 *    but only half defined: resident pages read back as zeros, swapped-out ones may keep
 *    their old contents.
 *  - MADV_PAGEOUT reaches the kernel's own swap, not the region (the kernel does not say):
 *    call uz_region_swapout().
 *  - mprotect() / uz_region_protect(): reclaim never reads a page it cannot read (PROT_NONE)
 *    and leaves it resident; pages in read-only ranges are kept resident (the kernel moves
 *    only writable pages) or, swapped out before, read back read-only. Made writable again,
 *    every page has its contents.
 *  - munmap() / uz_region_unmap() of part of the region, and mmap(MAP_FIXED) over it: the
 *    range becomes a hole (uz_region_stat.hole_pages), its stored copies freed, pins and
 *    counts given back. The region never touches what the application maps there later, and
 *    uz_region_destroy() leaves it mapped.
 *  - mremap(): shrinking makes a hole of the tail; growing in place (over holes of the
 *    region: uz_region_remap(), or a raw mremap without MREMAP_MAYMOVE) gives the region its
 *    pages back, zeros; moving region memory elsewhere (MREMAP_MAYMOVE, MREMAP_FIXED) takes it
 *    out of the region: its old place is a hole, its new place is ordinary memory with all of
 *    its contents (the swapped-out pages are copied in while the event is handled). A mapping
 *    of the region grown past the region's end is ordinary memory there.
 *  - mlock() / mlockall(): see above.
 * One window is left to raw munmap() (not to uz_region_unmap()): between the unmap and the
 * moment a fault thread has read its event (microseconds), another thread of the application
 * may map new memory at that address, and an eviction already under way may move a page of
 * it out, find it unlike the stored copy and put it back with a write of the kernel's; a
 * write to that page in the same instant could be overwritten. Unmap region memory with
 * uz_region_unmap() where threads of the application race to map the same addresses.
 * The same holds for a fault on a page that another thread is dropping with a raw madvise at
 * that moment, where the region has more than one fault thread (4 CPUs or more): a fault
 * thread already decompressing the page when the REMOVE event is read can map the old
 * contents after the kernel dropped the page, so that even the madvise caller may read them
 * afterwards. Only a program that accesses memory while another thread drops it sees this;
 * with one fault thread messages are served in order and it cannot happen.
 * Without events (kernels before 4.11): do not mremap() or munmap() region memory.
 *
 * fork(): the child gets its own copy of every region, contents included, and may use it like
 * the parent (pin, swap, destroy; its device is a copy-on-write view of the parent's). Fork
 * handlers quiesce every region just before the fork (writebacks drained, every page lock and
 * the device taken: the parent's faults wait meanwhile) and give the child a new userfaultfd,
 * locks and threads; a 1 GiB region with 768 MiB swapped out forks in about 20 ms. In the child
 * the statistics start from the parent's; pins taken by the forking thread are the child's, a
 * range another thread was pinning at the fork may stay pinned. If the child's setup fails
 * (no memory, no userfaultfd) its region is failed (uz_region_stat.failed) and PROT_NONE: a
 * touch crashes instead of reading swapped-out pages as zeros. vfork() and posix_spawn() need
 * and cost nothing (the child only execs); a child made without fork handlers (_Fork(), a raw
 * clone()) must not touch region memory. Nothing libc itself reads while the child's handler
 * starts its threads (the global locale, the DTVs of reused thread stacks, the loader's tables)
 * may live in region memory: those reads would fault before a fault thread runs, and the child
 * would wait for itself (uzram-run keeps them in glibc's heap). A fork while another thread unmaps
 * region memory is safe: the child makes a hole of every page its own mm no longer maps (a mapping
 * another thread placed there in that same instant is taken for the region's in the child).
 */
#ifndef UZRAM_REGION_H
#define UZRAM_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uzram/common.h>
#include <uzram/dev.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Thread-safety: a plain value, read by uz_region_create() only. */
struct uz_region_config {
    size_t size;           /* bytes of address space, multiple of 4096 */
    size_t resident_limit; /* bytes of the region allowed in RAM; 0: no limit (no reclaim) */
    const char *algorithm; /* NULL: lz4 */
    unsigned workers;      /* compression/fault-service threads; 0: a sensible default */
    unsigned watchdog_ms;  /* a fault not served for this long is a stall (uz_region_set_watchdog);
                              0: 10000 */
    size_t clean_limit;    /* the swap cache: bytes of resident pages that may keep their stored
                              copy (clean_pages); a swap-in past it is mapped writable and its
                              copy freed, as kernel zram swap frees its slot. 0: resident_limit
                              / 8 (size / 8 without a limit); SIZE_MAX: no bound */
};

/* The region. Thread-safety: every function is safe from any thread; the memory itself is
 * ordinary memory. uz_region_destroy() must not race with any other use of the region. */
struct uz_region;

enum uz_region_mode {
    UZ_REGION_MODE_FULL = 1,      /* user and kernel-originated faults are served */
    UZ_REGION_MODE_USER_ONLY = 2, /* UFFD_USER_MODE_ONLY: pin pages around system calls */
};

/* A snapshot of the region's counters. Page counts are in 4096-byte pages.
 * Thread-safety: a plain value, filled by uz_region_stat(). */
struct uz_region_stat {
    uint64_t size;             /* bytes of address space */
    uint64_t resident_limit;   /* bytes; 0: no limit */
    uint64_t resident_pages;   /* mapped pages: dirty + clean + writeback */
    uint64_t dirty_pages;      /* mapped, newer than any stored copy */
    uint64_t clean_pages;      /* mapped read-only, identical to their stored copy (swap cache) */
    uint64_t writeback_pages;  /* mapped read-only, a copy being compressed */
    uint64_t swapped_pages;    /* not mapped, held by the device */
    uint64_t pinned_pages;     /* held resident by uz_region_pin() */
    uint64_t major_faults;     /* faults served from the device */
    uint64_t minor_faults;     /* faults served with zeros (first touch) */
    uint64_t wp_faults;        /* write faults on write-protected pages (clean or writeback) */
    uint64_t swapins;          /* pages decompressed into the region, readahead included */
    uint64_t readahead_pages;  /* of which brought in ahead of a fault on a neighbour */
    uint64_t swapouts;         /* pages dropped from memory with a committed stored copy */
    uint64_t swapouts_clean;   /* of which needed no compression (the swap cache had the copy) */
    uint64_t writebacks;       /* copies handed to the device */
    uint64_t redirtied;        /* pages written while under writeback (the copy abandoned) */
    uint64_t throttled;        /* faults that waited for reclaim to make room */
    uint64_t read_errors;      /* pages the device could not return (mapped as poisoned) */
    uint64_t writeback_errors; /* writebacks the device refused (the page stays dirty) */
    uint64_t sys_errors;       /* userfaultfd ioctls and madvise calls that failed after retries */
    uint64_t orig_data_size;   /* the device's mm_stat: bytes stored before compression */
    uint64_t compr_data_size;  /* ... after compression */
    uint64_t mem_used_total;   /* ... memory the device's pool uses */
    int mode;                  /* enum uz_region_mode */
    int failed;                /* 0, or the -errno that put the region in its failed state: see
                                  uz_region_create() */
    bool stable_writes;        /* uz_dev_stable_writes() of the device, checked at attach */
    bool locked;               /* the library's own buffers and metadata are mlock'ed */
    bool move_eviction;        /* pages are evicted with UFFDIO_MOVE (Linux 6.8+), which never
                                  drops a page pinned for I/O; else with MADV_DONTNEED, which
                                  can lose a write made through such a pin (see below) */
    uint64_t kept_pages;       /* resident pages the kernel would not let go (pinned for I/O,
                                  mlock'ed): not counted against resident_limit */
    uint64_t evict_refused;    /* evictions the kernel refused (the page became kept) */
    uint64_t evict_restored;   /* evicted pages found changed by a write through a pin after
                                  their snapshot, and put back (no write is lost) */
    uint64_t stalls;           /* faults not served within watchdog_ms (one per episode): see
                                  uz_region_set_watchdog() */
    uint64_t evict_saved;      /* of evict_restored's kind, but stored instead of put back
                                  (always with remove_events, see design.md; else when the
                                  put-back failed: unmapped meanwhile) */
    uint64_t hole_pages;       /* pages the application unmapped (or moved away): not the
                                  region's any more, see "memory calls" above */
    /* Of writebacks, evictions made without write-protecting the page (with move_eviction):
     * the move that evicts the page compares it with what was stored (evict_saved or
     * evict_restored when a write landed meanwhile). */
    uint64_t writebacks_unprotected;
    bool events;        /* the kernel reports munmap/mremap of region memory */
    bool remove_events; /* ... and madvise(MADV_DONTNEED/MADV_FREE) */
};

/* uz_region_create() :
 *  Maps the region, sets up userfaultfd (see the privilege modes above), its device and
 *  threads: `workers` zramd compression workers (0: one per CPU, at most 4), half as many
 *  fault-service threads (at least one) and, with a resident limit below `size`, one reclaim
 *  thread. Never blocks waiting for anything but its own threads' start.
 *  @return : 0 and *out, -EINVAL (size 0 or not a multiple of 4096, a resident limit under
 *            16 pages), -ENOENT (unknown algorithm), -ENOSYS (the kernel has no userfaultfd),
 *            -EPERM (userfaultfd refused even in user-only mode, e.g. by seccomp),
 *            -EOPNOTSUPP (no write-protect support for anonymous memory), -ENOMEM, or the
 *            -errno of mmap, madvise or pthread_create.
 *  A system call of the fault or reclaim path that fails is retried when the failure is
 *  transient (EINTR, EAGAIN, ENOMEM: uz_region_stat.sys_errors counts them); any other failure
 *  puts the region in its failed state (uz_region_stat.failed): every thread waiting on it is
 *  woken, reclaim stops (the resident limit no longer holds), uz_region_pin() and
 *  uz_region_swapout() return -EIO, and a later fault on a page that is not resident gets
 *  SIGBUS where the kernel has UFFDIO_POISON (Linux 6.6+) rather than possibly wrong data. No
 *  faulting thread is ever left asleep. */
UZ_API int uz_region_create(const struct uz_region_config *cfg, struct uz_region **out);

/* uz_region_probe() :
 *  The mode a region created now would run in, without creating one: a userfaultfd is opened
 *  and negotiated as uz_region_create() does, then closed (no memory, no thread).
 *  @return : UZ_REGION_MODE_FULL or UZ_REGION_MODE_USER_ONLY, or uz_region_create()'s errors
 *            for userfaultfd (-ENOSYS, -EPERM, -EOPNOTSUPP, -ENOMEM, -errno). */
UZ_API int uz_region_probe(void);

/* uz_region_base() : the first byte of the region (page-aligned). */
UZ_API void *uz_region_base(struct uz_region *r);

/* uz_region_stat() : fills *st. @return : 0, or -EINVAL. */
UZ_API int uz_region_stat(struct uz_region *r, struct uz_region_stat *st);

/* uz_region_destroy() :
 *  Waits for writes in flight, stops the threads and unmaps the region. NULL is a no-op. */
UZ_API void uz_region_destroy(struct uz_region *r);

/* uz_region_pin() :
 *  Brings every page overlapping [addr, addr+len) in, writable, and keeps it resident until a
 *  matching uz_region_unpin(). Pins nest (up to 65535 per page). Needed only in
 *  UZ_REGION_MODE_USER_ONLY, around system calls on region memory; harmless otherwise.
 *  @return : 0, -EINVAL (range outside the region, or over a hole), -ENOMEM (more than half of
 * resident_limit would be pinned, counting the ranges other threads' uz_region_pin() calls are
 *            pinning meanwhile; nothing is pinned then: retry after an unpin), -EIO (a page
 *            the device cannot return or the kernel would not map, or the region has failed;
 *            nothing is pinned then).
 *  Concurrent pinners each succeed or fail at once: the range is claimed against the budget
 *  in one atomic step before any page is pinned, so they never wait for each other's room. */
UZ_API int uz_region_pin(struct uz_region *r, void *addr, size_t len);

/* uz_region_unpin() : releases one pin of every page overlapping [addr, addr+len).
 *  @return : 0, or -EINVAL (range outside the region, or a page not pinned). */
UZ_API int uz_region_unpin(struct uz_region *r, void *addr, size_t len);

/* uz_region_discard() :
 *  Drops every page of [addr, addr+len) (len rounded up to pages), like MADV_DONTNEED on
 *  anonymous memory: each reads back as zeros, its stored copy is freed and it no longer counts
 *  as resident. A pinned page stays pinned and resident, and reads back as zeros too. Safe
 *  while other threads use and the region reclaims the range (their accesses see the old
 *  contents or zeros).
 *  @return : 0, -EINVAL (addr not page-aligned, or the range outside the region), -EIO (the
 *            region has failed), or -errno of madvise (the pages it could not drop keep
 *            their contents). */
UZ_API int uz_region_discard(struct uz_region *r, void *addr, size_t len);

/* uz_region_unmap() :
 *  munmap() of [addr, addr+len) of the region, which becomes a hole (see "memory calls"
 *  above): stored copies freed, pins dropped; the region never touches the range again, nor
 *  what the application maps there. Returns after the region has taken note.
 *  @return : 0, -EINVAL (addr or len not page-aligned, or the range outside the region),
 *            -EOPNOTSUPP (the kernel reports no unmap events), or -errno of munmap. */
UZ_API int uz_region_unmap(struct uz_region *r, void *addr, size_t len);

/* uz_region_remap() :
 *  mremap() of [addr, addr+old_len), in place: shrinking makes a hole of the tail; growing
 *  takes holes of the region right after it back (as zeros). Never moves.
 *  @return : 0, -EINVAL (not page-aligned, a length 0, or the result outside the region),
 *            -ENOMEM (growing over pages that are not holes, or over a mapping the
 *            application placed in a hole), -EOPNOTSUPP (no unmap events), -errno of mremap
 *            (e.g. -EFAULT: the old range is not one mapping). */
UZ_API int uz_region_remap(struct uz_region *r, void *addr, size_t old_len, size_t new_len);

/* uz_region_protect() :
 *  mprotect() of [addr, addr+len) (see "memory calls" above for what reclaim does with
 *  PROT_NONE and read-only pages). @return : 0, -EINVAL (not page-aligned, outside the
 *  region, or prot other than PROT_READ/WRITE/EXEC), -ENOMEM (the range has a hole), or
 *  -errno of mprotect. */
UZ_API int uz_region_protect(struct uz_region *r, void *addr, size_t len, int prot);

/* uz_region_swapout() :
 *  Swaps out every page overlapping [addr, addr+len) that is neither pinned nor written to
 *  meanwhile (like MADV_PAGEOUT), waiting for the compression.
 *  @return : the number of evictions made (>= 0; a page another thread faulted back in
 *            meanwhile and that was dropped again counts twice), -EINVAL, or -EIO (the region
 *            has failed). */
UZ_API long uz_region_swapout(struct uz_region *r, void *addr, size_t len);

/* Why a fault stalls (uz_region_stall.reason). */
enum uz_region_stall_reason {
    UZ_REGION_STALL_ROOM = 1,    /* waiting for room: reclaim frees nothing, no error seen (all
                                    resident pages pinned or kept, reclaim itself stuck) */
    UZ_REGION_STALL_DEVICE = 2,  /* waiting for room: the device refuses writebacks (err: its
                                    -errno, -ENOMEM when its pool or mem_limit is full) */
    UZ_REGION_STALL_SYSCALL = 3, /* waiting for room while system calls fail, or the fault's
                                    own userfaultfd ioctl keeps failing transiently (err) */
};

/* What the watchdog reports. Thread-safety: a plain value, valid during the callback only. */
struct uz_region_stall {
    void *addr;         /* the faulting page (page-aligned) */
    uint64_t page;      /* its index in the region */
    uint64_t waited_ms; /* how long the fault has been waiting when reported */
    int reason;         /* enum uz_region_stall_reason */
    int err;            /* the last -errno seen (device or system call), 0 if none */
};

/* A watchdog callback. Thread-safety: called on one of the region's own threads (a fault or the
 * reclaim thread), holding no lock of the library, possibly from several threads at once. */
typedef void (*uz_region_watchdog_fn)(void *arg, const struct uz_region_stall *stall);

/* uz_region_set_watchdog() :
 *  A fault that cannot be served within watchdog_ms (uz_region_config; default 10 s) -- the
 *  region at its limit while reclaim makes no progress (the device full, ioctls failing, every
 *  page pinned), or a fault whose own ioctl fails transiently over and over -- is a stall: it is
 *  counted in uz_region_stat.stalls and reported to fn(arg, stall) once per episode (an episode
 *  ends when the fault is served; a fault still stuck is not reported again). The fault keeps
 *  being retried: the watchdog reports, it never fails or serves the fault itself.
 *  The stall is detected by a thread that is not stuck: the fault-service thread waiting for
 *  room polls its own wait, and the reclaim thread and every fault thread look at the others.
 *  fn NULL removes the callback (the counter still counts); a callback already running may
 *  still be running when this returns.
 *  fn runs on a library thread that serves faults: it must return promptly and must not touch
 *  region memory that may not be resident (that fault could be the one stalled, or wait for
 *  this thread), nor call uz_region_pin(), uz_region_swapout(), uz_region_discard() or
 *  uz_region_destroy(). It may call uz_region_stat(), uz_region_unpin(), uz_region_dev() and
 *  the device's uz_dev_attr_read()/uz_dev_attr_write() (e.g. to raise mem_limit), log, or
 *  signal another thread of the application.
 *  @return : 0, or -EINVAL (r NULL). */
UZ_API int uz_region_set_watchdog(struct uz_region *r, uz_region_watchdog_fn fn, void *arg);

/* uz_region_fds() :
 *  The file descriptors the region keeps open (its userfaultfds and a pidfd): closing one, or
 *  dup2()ing over it, breaks the region (a fault is then never served). A runner that
 *  interposes close() refuses these. They change in a forked child (it opens its own).
 *  @return : how many there are (the first `max` stored in fds[]), or -EINVAL (r NULL). */
UZ_API int uz_region_fds(struct uz_region *r, int *fds, unsigned max);

/* uz_region_dev() : the region's device, for its attributes (uz_dev_attr_read: mm_stat, ...)
 *  and its tiering, before or after the first touch (uz_dev_attr_write: recomp_algorithm and
 *  algorithm_params priority=N while it is empty; idle, recompress, backing_dev,
 *  compressed_writeback, writeback, writeback_limit[_enable], writeback_batch_size, policy,
 *  mem_limit, compact at any time): the application's memory then tiers RAM -> compressed RAM
 *  -> file, and a fault on a written-back page reads the file. Do not write pages to it, nor
 *  change disksize or comp_algorithm, nor reset it. */
UZ_API struct uz_dev *uz_region_dev(struct uz_region *r);

#ifdef __cplusplus
}
#endif
#endif
