// SPDX-License-Identifier: MIT
/*
 * region_sys.c - the region's primitives: every userfaultfd ioctl and every madvise /
 * process_madvise the region makes is here, and nowhere else in src/region.
 *
 * One retry loop (sys_call) serves them all. A call that is interrupted (EINTR) or asks to be
 * repeated (EAGAIN: the kernel did part of a range, or the mm was changing) is made again from
 * where it stopped; it gives up with -EAGAIN after UZ_SYS_RETRIES attempts in a row that made no
 * progress (yielding the CPU after the first few), so no caller can spin forever. Every other
 * error is returned as -errno for the caller to decide (region_internal.h says how: transient,
 * expected such as EEXIST on a page already mapped, or fatal for the region).
 *
 * The tests make the calls fail on purpose with uz_region_sys_inject(): the check costs one
 * relaxed load per call while disarmed.
 */
#include "region_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- failure injection ---- */

void uz_region_sys_inject(struct uz_region *r, enum uz_region_sys_op op, unsigned skip,
                          unsigned times, int err)
{
    struct uz_region_inject *in = &r->inject[op];
    atomic_store(&in->armed, 0);
    atomic_store(&in->skip, skip);
    atomic_store(&in->err, err);
    atomic_store(&in->armed, times);
}

/* @return : the errno an armed injection makes this call fail with, else 0. */
static int injected(struct uz_region *r, enum uz_region_sys_op op)
{
    struct uz_region_inject *in = &r->inject[op];
    if (UZ_LIKELY(!atomic_load_explicit(&in->armed, memory_order_relaxed)))
        return 0;
    unsigned s = atomic_load(&in->skip);
    while (s) {
        if (atomic_compare_exchange_weak(&in->skip, &s, s - 1))
            return 0;
    }
    unsigned a = atomic_load(&in->armed);
    while (a) {
        if (atomic_compare_exchange_weak(&in->armed, &a, a - 1))
            return atomic_load(&in->err);
    }
    return 0;
}

/* ---- the retry loop ---- */

/* One call of a primitive over [off, len) bytes of its range. */
struct sys_req {
    enum uz_region_sys_op op;
    uintptr_t start; /* first byte */
    size_t len;      /* bytes */
    uintptr_t src;   /* UZ_SYS_COPY: the source */
    uint64_t mode;   /* ioctl mode, or the madvise advice */
    size_t off;      /* bytes done */
};

/* Makes the call once from q->off. @return : 0 (all done), or the errno; q->off advanced by
 * what the kernel reports done even when it fails. */
static int sys_once(struct uz_region *r, struct sys_req *q)
{
    uintptr_t a = q->start + q->off;
    size_t left = q->len - q->off;
    long rc;
    switch (q->op) {
    case UZ_SYS_COPY: {
        struct uffdio_copy c = {.dst = a, .src = q->src + q->off, .len = left, .mode = q->mode};
        rc = ioctl(r->uffd, UFFDIO_COPY, &c);
        if (rc && c.copy > 0)
            q->off += (size_t)c.copy;
        break;
    }
    case UZ_SYS_ZEROPAGE: {
        struct uffdio_zeropage z = {.range = {.start = a, .len = left}, .mode = q->mode};
        rc = ioctl(r->uffd, UFFDIO_ZEROPAGE, &z);
        if (rc && z.zeropage > 0)
            q->off += (size_t)z.zeropage;
        break;
    }
    case UZ_SYS_WRITEPROTECT:
    case UZ_SYS_UNPROTECT: {
        struct uffdio_writeprotect wp = {.range = {.start = a, .len = left}, .mode = q->mode};
        rc = ioctl(r->uffd, UFFDIO_WRITEPROTECT, &wp);
        break;
    }
    case UZ_SYS_WAKE: {
        struct uffdio_range range = {.start = a, .len = left};
        rc = ioctl(r->uffd, UFFDIO_WAKE, &range);
        break;
    }
    case UZ_SYS_POISON: {
        struct uffdio_poison p = {.range = {.start = a, .len = left}};
        rc = ioctl(r->uffd, UFFDIO_POISON, &p);
        if (rc && p.updated > 0)
            q->off += (size_t)p.updated;
        break;
    }
    case UZ_SYS_MADVISE:
        rc = madvise((void *)a, left, (int)q->mode);
        break;
    case UZ_SYS_MOVE:
    case UZ_SYS_TRASH: {
        struct uffdio_move m = {.dst = a, .src = q->src + q->off, .len = left, .mode = q->mode};
        rc = ioctl(q->op == UZ_SYS_TRASH ? r->trash_uffd : r->uffd, UFFDIO_MOVE, &m);
        if (rc && m.move > 0)
            q->off += (size_t)m.move;
        break;
    }
    case UZ_SYS_WRITE: {
        struct iovec local = {.iov_base = (void *)(q->src + q->off), .iov_len = left};
        struct iovec remote = {.iov_base = (void *)a, .iov_len = left};
        ssize_t got = process_vm_writev(r->pid, &local, 1, &remote, 1, 0);
        if (got >= 0 && (size_t)got < left) {
            q->off += (size_t)got;
            return got ? EAGAIN : EFAULT;
        }
        rc = got < 0 ? -1 : 0;
        break;
    }
    default:
        return EINVAL;
    }
    if (!rc) {
        q->off = q->len;
        return 0;
    }
    return errno;
}

static int sys_call(struct uz_region *r, struct sys_req *q)
{
    unsigned idle = 0;
    while (q->off < q->len) {
        size_t before = q->off;
        int e = injected(r, q->op);
        if (!e)
            e = sys_once(r, q);
        if (!e)
            return 0;
        if (e != EAGAIN && e != EINTR)
            return -e;
        idle = q->off > before ? 0 : idle + 1;
        if (idle >= UZ_SYS_RETRIES)
            return -EAGAIN;
        if (e == EAGAIN && q->op != UZ_SYS_MADVISE)
            uz_region_fault_read_ahead(r); /* an unread event holds the mm as changing */
        if (idle > 4)
            sched_yield();
    }
    return 0;
}

static uintptr_t page_addr(struct uz_region *r, uint64_t i)
{
    return (uintptr_t)(r->base + i * UZ_PAGE_SIZE);
}

/* ---- the primitives ---- */

int uz_region_sys_copy(struct uz_region *r, uint64_t first, const void *src, unsigned n, bool wp,
                       unsigned *done)
{
    struct sys_req q = {.op = UZ_SYS_COPY,
                        .start = page_addr(r, first),
                        .len = (size_t)n * UZ_PAGE_SIZE,
                        .src = (uintptr_t)src,
                        .mode = wp ? UFFDIO_COPY_MODE_WP : 0};
    int rc = sys_call(r, &q);
    if (rc == -ENOENT && q.len - q.off > UZ_PAGE_SIZE) {
        /* The range crosses a VMA boundary (mlock or madvise split the region's VMA): the
         * kernel fills within one VMA only. The page at q.off is in one: that one alone. */
        q.len = q.off + UZ_PAGE_SIZE;
        rc = sys_call(r, &q);
    }
    *done = (unsigned)(q.off / UZ_PAGE_SIZE);
    return rc;
}

int uz_region_sys_copy_at(struct uz_region *r, uint64_t addr, const void *src)
{
    struct sys_req q = {
        .op = UZ_SYS_COPY, .start = (uintptr_t)addr, .len = UZ_PAGE_SIZE, .src = (uintptr_t)src};
    return sys_call(r, &q);
}

int uz_region_sys_zeropage(struct uz_region *r, uint64_t first, unsigned n, unsigned *done)
{
    struct sys_req q = {
        .op = UZ_SYS_ZEROPAGE, .start = page_addr(r, first), .len = (size_t)n * UZ_PAGE_SIZE};
    int rc = sys_call(r, &q);
    if (rc == -ENOENT && q.len - q.off > UZ_PAGE_SIZE) {
        q.len = q.off + UZ_PAGE_SIZE; /* across a VMA boundary: see above */
        rc = sys_call(r, &q);
    }
    *done = (unsigned)(q.off / UZ_PAGE_SIZE);
    return rc;
}

int uz_region_sys_wp(struct uz_region *r, uint64_t first, uint64_t n, bool protect)
{
    struct sys_req q = {.op = protect ? UZ_SYS_WRITEPROTECT : UZ_SYS_UNPROTECT,
                        .start = page_addr(r, first),
                        .len = n * UZ_PAGE_SIZE,
                        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    return sys_call(r, &q);
}

int uz_region_sys_wake(struct uz_region *r, uint64_t first, uint64_t n)
{
    struct sys_req q = {.op = UZ_SYS_WAKE, .start = page_addr(r, first), .len = n * UZ_PAGE_SIZE};
    return sys_call(r, &q);
}

int uz_region_sys_poison(struct uz_region *r, uint64_t i)
{
    struct sys_req q = {.op = UZ_SYS_POISON, .start = page_addr(r, i), .len = UZ_PAGE_SIZE};
    return sys_call(r, &q);
}

int uz_region_sys_doorbell_answer(struct uz_region *r, uintptr_t addr)
{
    addr &= ~(uintptr_t)(UZ_PAGE_SIZE - 1);
    struct sys_req z = {.op = UZ_SYS_ZEROPAGE, .start = addr, .len = UZ_PAGE_SIZE};
    if (!sys_call(r, &z))
        return 0;
    struct sys_req w = {.op = UZ_SYS_WAKE, .start = addr, .len = UZ_PAGE_SIZE};
    return sys_call(r, &w);
}

int uz_region_sys_madvise(struct uz_region *r, void *addr, size_t len, int advice)
{
    struct sys_req q = {
        .op = UZ_SYS_MADVISE, .start = (uintptr_t)addr, .len = len, .mode = (uint64_t)advice};
    return sys_call(r, &q);
}

/* UFFDIO_MOVE (Linux 6.8) of one page. The kernel moves the pte and the page with it under the
 * page table lock, and refuses with EBUSY a page that may be pinned for DMA
 * (folio_maybe_dma_pinned) or is not exclusive to this mm; with EINVAL when the two VMAs differ
 * in VM_LOCKED or protection; EEXIST when the destination is mapped. */
int uz_region_sys_move(struct uz_region *r, void *dst, const void *src)
{
    unsigned done;
    return uz_region_sys_move_run(r, dst, src, 1, &done);
}

/* Since Linux 6.18 one UFFDIO_MOVE of a run of present, exclusive small pages within one page
 * table (2 MiB) clears their ptes under one lock and flushes the TLB once, where one call per
 * page flushed (an inter-processor interrupt to every core running the process) per page. A
 * run stops at the first page the kernel refuses: the call reports the pages moved before it
 * (EAGAIN with progress, which the retry loop continues), then fails on that page alone. */
int uz_region_sys_move_run(struct uz_region *r, void *dst, const void *src, unsigned n,
                           unsigned *done)
{
    struct sys_req q = {.op = UZ_SYS_MOVE,
                        .start = (uintptr_t)dst,
                        .len = (size_t)n * UZ_PAGE_SIZE,
                        .src = (uintptr_t)src};
    int rc = sys_call(r, &q);
    *done = (unsigned)(q.off / UZ_PAGE_SIZE);
    return rc;
}

int uz_region_sys_write(struct uz_region *r, uint64_t i, const void *src)
{
    struct sys_req q = {
        .op = UZ_SYS_WRITE, .start = page_addr(r, i), .len = UZ_PAGE_SIZE, .src = (uintptr_t)src};
    return sys_call(r, &q);
}

int uz_region_sys_put_back(struct uz_region *r, uint64_t i, unsigned char *s)
{
    int e = injected(r, UZ_SYS_PUTBACK);
    if (e)
        return -e;
    unsigned done;
    int rc = uz_region_sys_move(r, (void *)page_addr(r, i), s);
    if (rc)
        rc = uz_region_sys_copy(r, i, s, 1, false, &done);
    if (rc && rc != -EEXIST)
        rc = uz_region_sys_write(r, i, s);
    return rc;
}

int uz_region_sys_unregister(struct uz_region *r, void *addr, size_t len)
{
    struct uffdio_range range = {.start = (uintptr_t)addr, .len = len};
    return ioctl(r->uffd, UFFDIO_UNREGISTER, &range) ? -errno : 0;
}

/* mlockall(MCL_CURRENT) locks the scratch and the trash too (MADV_DONTNEED then fails with
 * EINVAL, and its populate maps their pages: the scratch's faults are answered with zero
 * pages, see region_fault.c, the trash raises none): unlock them, so that the scratch differs
 * from mlock'ed region memory again, and empty them. */
int uz_region_sys_scratch_unlock(struct uz_region *r)
{
    size_t bytes = (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE;
    if (munlock(r->scratch, bytes) || (r->trash && munlock(r->trash, bytes)))
        return -errno;
    if (r->trash)
        (void)uz_region_sys_madvise(r, r->trash, bytes, MADV_DONTNEED);
    return uz_region_sys_scratch_free(r, UZ_RECLAIM_BATCH);
}

/* Without REMOVE events the scratch is simply dropped. With them, its pages move to the trash
 * (one call: holes allowed, the pages put back into the region left some) and are dropped
 * there, which raises no event: trash_uffd asked for none. */
int uz_region_sys_scratch_free(struct uz_region *r, unsigned n)
{
    size_t bytes = (size_t)n * UZ_PAGE_SIZE;
    if (!r->trash_registered)
        return uz_region_sys_madvise(r, r->scratch, bytes, MADV_DONTNEED);
    for (int tries = 0;; tries++) {
        struct sys_req q = {.op = UZ_SYS_TRASH,
                            .start = (uintptr_t)r->trash,
                            .len = bytes,
                            .src = (uintptr_t)r->scratch,
                            .mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES};
        int rc = sys_call(r, &q);
        int mrc = q.off ? uz_region_sys_madvise(r, r->trash, q.off, MADV_DONTNEED) : 0;
        if (!rc && !mrc)
            return 0;
        bool locked = rc == -EEXIST || rc == -EINVAL || mrc == -EINVAL;
        if (tries || !locked || (mrc && mrc != -EINVAL))
            return mrc ? mrc : rc;
        /* The trash was populated (EEXIST), or the scratch or the trash locked (EINVAL), by
         * mlockall(): unlock both, empty the trash, once more (the pages moved so far left
         * holes in the scratch, which the move skips). */
        size_t all = (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE;
        if (munlock(r->scratch, all) || munlock(r->trash, all))
            return -errno;
        if ((rc = uz_region_sys_madvise(r, r->trash, all, MADV_DONTNEED)))
            return rc;
    }
}

/* Linux 6.13 lets a process use process_madvise() on itself with any advice, and from 6.16 the
 * runs share one TLB shootdown: with scattered victims that is one inter-processor interrupt per
 * batch instead of one per page. Elsewhere, or when refused, one madvise() per run (dropping an
 * already dropped range is harmless, so a partial process_madvise is simply redone that way). */
int uz_region_sys_zap(struct uz_region *r, const struct iovec *iov, unsigned n, bool *ok)
{
    int pidfd = atomic_load_explicit(&r->pidfd, memory_order_relaxed);
    if (n > 1 && pidfd >= 0) {
        size_t total = 0;
        for (unsigned k = 0; k < n; k++)
            total += iov[k].iov_len;
        int e = injected(r, UZ_SYS_PROCESS_MADVISE);
        long done = e ? (errno = e, -1)
                      : syscall(SYS_process_madvise, pidfd, iov, (size_t)n, MADV_DONTNEED, 0);
        if (done == (long)total) {
            for (unsigned k = 0; k < n; k++)
                ok[k] = true;
            return 0;
        }
        if (done < 0 && errno != EINTR && errno != EAGAIN && errno != ENOMEM)
            atomic_store(&r->pidfd, -1); /* not for this kernel: stop trying (fd closed at end) */
    }
    int first_err = 0;
    for (unsigned k = 0; k < n; k++) {
        int rc = uz_region_sys_madvise(r, iov[k].iov_base, iov[k].iov_len, MADV_DONTNEED);
        ok[k] = !rc;
        if (rc && !first_err)
            first_err = rc;
    }
    return first_err;
}

/* The snapshot copy. A plain load from region memory would fault in the copying thread: a page
 * the application made PROT_NONE kills it (SIGSEGV), and a page the application dropped would
 * need a fault thread. process_vm_readv reads through the kernel's page-table walk instead: an
 * unreadable page is -EFAULT (the copy stops there and reports how far it got), a dropped page
 * is a kernel-originated fault (served, FULL mode, or -EFAULT, user-only). Where the call is
 * refused (seccomp, a kernel without it) the copy is a plain one, as before. */
int uz_region_sys_read(struct uz_region *r, uint64_t first, unsigned n, unsigned char *const *dst,
                       unsigned *done)
{
    struct iovec local[UZ_RECLAIM_BATCH];
    unsigned k = 0, idle = 0;
    *done = 0;
    if (n > UZ_RECLAIM_BATCH)
        n = UZ_RECLAIM_BATCH;
    while (k < n) {
        unsigned char *src = (unsigned char *)page_addr(r, first + k);
        if (atomic_load_explicit(&r->no_vmread, memory_order_relaxed)) {
            uz_region_copy_page(dst[k], src);
            *done = ++k;
            continue;
        }
        for (unsigned j = k; j < n; j++) {
            local[j - k].iov_base = dst[j];
            local[j - k].iov_len = UZ_PAGE_SIZE;
        }
        struct iovec remote = {.iov_base = src, .iov_len = (size_t)(n - k) * UZ_PAGE_SIZE};
        int e = injected(r, UZ_SYS_READ);
        ssize_t got = e ? (errno = e, -1) : process_vm_readv(r->pid, local, n - k, &remote, 1, 0);
        if (got > 0) {
            k += (unsigned)((size_t)got / UZ_PAGE_SIZE);
            *done = k;
            idle = 0;
            if (k < n && (size_t)got % UZ_PAGE_SIZE == 0)
                continue; /* partial: the next call says why */
            if (k < n)
                return -EFAULT; /* stopped inside page k */
            return 0;
        }
        if (got == 0)
            return -EFAULT;
        if (errno == ENOSYS || errno == EPERM) {
            atomic_store(&r->no_vmread, true);
            continue;
        }
        if ((errno == EINTR || errno == EAGAIN || errno == ENOMEM) && ++idle < UZ_SYS_RETRIES)
            continue;
        return -errno;
    }
    return 0;
}

/* ---- setup and teardown ---- */

static int uffd_new(int *mode)
{
    int fd;
    if (!uz_region_force_user_mode) {
        /* /dev/userfaultfd (Linux 6.1+) serves kernel faults to whoever may open it. */
        int devfd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (devfd >= 0) {
            fd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
            close(devfd);
            if (fd >= 0) {
                *mode = UZ_REGION_MODE_FULL;
                return fd;
            }
        }
        /* root, CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1 */
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0) {
            *mode = UZ_REGION_MODE_FULL;
            return fd;
        }
        if (errno == ENOSYS)
            return -ENOSYS;
    }
    fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd >= 0) {
        *mode = UZ_REGION_MODE_USER_ONLY;
        return fd;
    }
    /* EINVAL: a kernel before 5.11 without user-mode-only; for us that is a refusal too. */
    return errno == ENOSYS ? -ENOSYS : errno == EINVAL ? -EPERM : -errno;
}

/* The trash's userfaultfd: move only, no events (see r->trash). @return : the descriptor, or
 * -1 (then the region asks for no REMOVE event either). */
static int trash_open(void)
{
    int mode, fd = uffd_new(&mode);
    if (fd < 0)
        return -1;
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MOVE};
    if (ioctl(fd, UFFDIO_API, &api)) {
        close(fd);
        return -1;
    }
    return fd;
}

int uz_region_sys_open(struct uz_region *r)
{
    /* Poison (for pages the device cannot return) and move (eviction that respects page pins)
     * when the kernel has them, and the events that tell the region what the application does
     * to its memory (r->ev_remove); UFFDIO_API takes one try per descriptor, and refuses a
     * feature it does not know with EINVAL. */
    static const uint64_t tries[] = {UFFD_FEATURE_POISON | UFFD_FEATURE_MOVE, UFFD_FEATURE_MOVE,
                                     UFFD_FEATURE_POISON, 0};
    const uint64_t ev_map = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP;
    if (!uz_region_force_no_move && r->trash_uffd < 0)
        r->trash_uffd = trash_open();
    for (unsigned attempt = 0; attempt < 2 * sizeof(tries) / sizeof(tries[0]); attempt++) {
        int fd = uffd_new(&r->mode);
        if (fd < 0)
            return fd;
        /* The faulting thread's id tells the fault threads which faults reclaim raised. */
        uint64_t want = tries[attempt / 2];
        if (uz_region_force_no_move)
            want &= ~(uint64_t)UFFD_FEATURE_MOVE;
        if (!(attempt & 1)) /* first with the events, then without */
            want |= ev_map | ((want & UFFD_FEATURE_MOVE) && r->trash_uffd >= 0
                                  ? (uint64_t)UFFD_FEATURE_EVENT_REMOVE
                                  : 0);
        struct uffdio_api api = {.api = UFFD_API, .features = want | UFFD_FEATURE_THREAD_ID};
        if (ioctl(fd, UFFDIO_API, &api) == 0) {
            r->uffd = fd;
            r->can_poison = (want & UFFD_FEATURE_POISON) != 0;
            r->can_move = (want & UFFD_FEATURE_MOVE) != 0;
            r->ev_remove = (want & UFFD_FEATURE_EVENT_REMOVE) != 0;
            r->ev_unmap = (want & ev_map) != 0;
            if (!r->ev_remove && r->trash_uffd >= 0) {
                close(r->trash_uffd);
                r->trash_uffd = -1;
            }
            return 0;
        }
        int e = errno;
        close(fd);
        if (e != EINVAL)
            return -e;
    }
    return -EOPNOTSUPP;
}

/* Registers the runs of pages of the region that are not HOLE (all of it at create; in a
 * forked child, not what the application unmapped, which may be its own mapping now). */
static int register_region(struct uz_region *r, uint64_t *ioctls)
{
    *ioctls = ~0ull;
    if (!r->pages) { /* at create: all of it */
        struct uffdio_register reg = {
            .range = {.start = (uintptr_t)r->base, .len = r->size},
            .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
        };
        if (ioctl(r->uffd, UFFDIO_REGISTER, &reg))
            return errno == EINVAL ? -EOPNOTSUPP : -errno;
        *ioctls = reg.ioctls;
        return 0;
    }
    for (uint64_t i = 0; i < r->npages;) {
        if (uz_pg_state(atomic_load_explicit(&r->pages[i], memory_order_relaxed)) == UZ_PG_HOLE) {
            i++;
            continue;
        }
        uint64_t j = i + 1;
        while (j < r->npages &&
               uz_pg_state(atomic_load_explicit(&r->pages[j], memory_order_relaxed)) != UZ_PG_HOLE)
            j++;
        struct uffdio_register reg = {
            .range = {.start = page_addr(r, i), .len = (j - i) * UZ_PAGE_SIZE},
            .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
        };
        if (ioctl(r->uffd, UFFDIO_REGISTER, &reg))
            return errno == EINVAL ? -EOPNOTSUPP : -errno;
        *ioctls &= reg.ioctls;
        i = j;
    }
    return 0;
}

int uz_region_sys_register(struct uz_region *r)
{
    uint64_t ioctls;
    int rc = register_region(r, &ioctls);
    if (rc)
        return rc;
    uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE) |
                    (1ull << _UFFDIO_WRITEPROTECT);
    if ((ioctls & need) != need)
        return -EOPNOTSUPP;
    if (!(ioctls & (1ull << _UFFDIO_POISON)))
        r->can_poison = false;
    if (!(ioctls & (1ull << _UFFDIO_MOVE)))
        r->can_move = false;
    if (r->ev_remove && r->can_move) {
        /* Write-protect mode only: nothing ever waits for a fault of the trash (mlockall's
         * populate just maps it). */
        struct uffdio_register tr = {
            .range = {.start = (uintptr_t)r->trash, .len = (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE},
            .mode = UFFDIO_REGISTER_MODE_WP,
        };
        if (ioctl(r->trash_uffd, UFFDIO_REGISTER, &tr))
            r->can_move = false;
        else
            r->trash_registered = true;
    }
    if (r->ev_remove && !r->can_move)
        return -EOPNOTSUPP; /* the region would drop pages with madvise: see r->ev_remove */
    if (r->can_move) {
        /* The destination of a move must be registered with the same userfaultfd. */
        struct uffdio_register scr = {
            .range = {.start = (uintptr_t)r->scratch,
                      .len = (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE},
            .mode = UFFDIO_REGISTER_MODE_MISSING,
        };
        if (ioctl(r->uffd, UFFDIO_REGISTER, &scr))
            r->can_move = false;
        else
            r->scratch_registered = true;
    }
    struct uffdio_register bell = {
        .range = {.start = (uintptr_t)r->doorbell, .len = (size_t)r->nfault * UZ_PAGE_SIZE},
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    return ioctl(r->uffd, UFFDIO_REGISTER, &bell) ? -errno : 0;
}

void uz_region_sys_close(struct uz_region *r)
{
    if (r->uffd < 0)
        return;
    /* Closing the descriptor unregisters everything too; unregistering first is tidier. */
    if (r->base && !r->pages)
        (void)uz_region_sys_unregister(r, r->base, r->size);
    for (uint64_t i = 0; r->base && r->pages && i < r->npages;) {
        uint64_t j = i;
        while (j < r->npages &&
               uz_pg_state(atomic_load_explicit(&r->pages[j], memory_order_relaxed)) != UZ_PG_HOLE)
            j++;
        if (j > i)
            (void)uz_region_sys_unregister(r, r->base + i * UZ_PAGE_SIZE, (j - i) * UZ_PAGE_SIZE);
        i = j + 1;
    }
    struct uffdio_range bell = {.start = (uintptr_t)r->doorbell,
                                .len = (size_t)r->nfault * UZ_PAGE_SIZE};
    if (r->doorbell)
        (void)ioctl(r->uffd, UFFDIO_UNREGISTER, &bell);
    struct uffdio_range scr = {.start = (uintptr_t)r->scratch,
                               .len = (size_t)UZ_RECLAIM_BATCH * UZ_PAGE_SIZE};
    if (r->scratch_registered)
        (void)ioctl(r->uffd, UFFDIO_UNREGISTER, &scr);
    close(r->uffd);
    r->uffd = -1;
    if (r->trash_uffd >= 0)
        close(r->trash_uffd); /* unregisters the trash */
    r->trash_uffd = -1;
    r->trash_registered = false;
}
