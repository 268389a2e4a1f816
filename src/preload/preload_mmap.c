/* SPDX-License-Identifier: MIT */
/*
 * preload_mmap.c - private anonymous mmaps of the program, as page ranges of the region.
 *
 * mmap(MAP_PRIVATE | MAP_ANONYMOUS) without MAP_FIXED takes a range of preload_range.c (the
 * hint is ignored) and gives it the requested protection; MAP_FIXED anonymous inside the region
 * claims the range and makes it fresh (zeros, the protection asked). munmap of region memory
 * does not unmap: the range is discarded (zeros), made read/write again and goes back to the
 * free list, so the region keeps no holes and its address space is reused (an access after
 * munmap reads zeros instead of crashing). mremap shrinks in place, grows in place over free
 * ranges, or moves by copying into a new range (never out of the region). madvise
 * DONTNEED/FREE is uz_region_discard(), PAGEOUT uz_region_swapout(); mprotect is
 * uz_region_protect(). Anything else -- file and shared mappings, MAP_STACK, huge pages,
 * memory outside the region, calls made by the library itself (uzp_in) -- goes to the kernel
 * by raw system call. A file mapped with MAP_FIXED over region memory makes a hole there (the
 * region is told by userfaultfd); that range is never handed out again. mlockall(MCL_CURRENT)
 * locks on fault and leaves the region unlocked (below).
 */
#include "preload.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's system call, without glibc's syscall() (which the preload replaces): the raw
 * result, -errno on failure. */
long uzp_raw(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
#else
#error "uzp_raw: add this architecture's system call"
#endif
}

long uzp_sys(long n, long a, long b, long c, long d, long e, long f)
{
    long r = uzp_raw(n, a, b, c, d, e, f);
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

void *uzp_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
    return (void *)uzp_sys(SYS_mmap, (long)(addr), (long)(len), (long)(prot), (long)(flags),
                           (long)(fd), (long)(off));
}

int uzp_sys_munmap(void *addr, size_t len)
{
    return (int)uzp_sys(SYS_munmap, (long)(addr), (long)(len), 0, 0, 0, 0);
}

static int fail(int rc)
{
    errno = -rc;
    return -1;
}

static size_t page_up(size_t n)
{
    return (n + UZP_PAGE - 1) & ~(UZP_PAGE - 1);
}

int uzp_fresh(uintptr_t addr, size_t len, int prot)
{
    uzp_in++;
    int rc = uz_region_protect(uzp_region, (void *)addr, len, PROT_READ | PROT_WRITE);
    if (!rc)
        rc = uz_region_discard(uzp_region, (void *)addr, len);
    if (!rc && prot != (PROT_READ | PROT_WRITE))
        rc = uz_region_protect(uzp_region, (void *)addr, len, prot);
    uzp_in--;
    return rc;
}

static bool ours(int flags, int fd)
{
    return (flags & MAP_TYPE) == MAP_PRIVATE && (flags & MAP_ANONYMOUS) &&
           !(flags & (MAP_GROWSDOWN | MAP_STACK | MAP_HUGETLB));
}

static void *do_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
    /* Not uzp_routing_alloc(): jemalloc's own constructor maps its memory through here (it is
     * linked in), and must not start the region, which calls into jemalloc. A private mapping
     * made before the first malloc-family call stays ordinary memory. */
    if (!uzp_routing() || len == 0 || (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
        return uzp_sys_mmap(addr, len, prot, flags, fd, off);
    size_t plen = page_up(len);
    bool fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
    if (fixed) {
        if (!uzp_range_in_region(addr, plen) || ((uintptr_t)addr & (UZP_PAGE - 1)))
            return uzp_sys_mmap(addr, len, prot, flags, fd, off);
        if (!ours(flags, fd)) {
            /* The program's own mapping over the region: a hole, never reused. */
            void *p = uzp_sys_mmap(addr, len, prot, flags, fd, off);
            if (p != MAP_FAILED)
                uzp_range_claim((uintptr_t)addr, plen);
            return p;
        }
        if ((flags & MAP_FIXED_NOREPLACE) && !uzp_range_take_exact((uintptr_t)addr, plen)) {
            errno = EEXIST;
            return MAP_FAILED;
        }
        uzp_range_claim((uintptr_t)addr, plen);
        int rc = uzp_fresh((uintptr_t)addr, plen, prot);
        if (rc) {
            errno = -rc;
            return MAP_FAILED;
        }
        return addr;
    }
    if (!ours(flags, fd))
        return uzp_sys_mmap(addr, len, prot, flags, fd, off);
    uintptr_t a = uzp_range_alloc(plen, UZP_PAGE);
    if (!a) {
        static atomic_bool warned;
        if (!atomic_exchange(&warned, true))
            uzp_log("the region's address space is full (raise --size): new mappings are "
                    "ordinary memory");
        return uzp_sys_mmap(addr, len, prot, flags, fd, off);
    }
    if (prot != (PROT_READ | PROT_WRITE)) {
        uzp_in++;
        int rc = uz_region_protect(uzp_region, (void *)a, plen, prot);
        uzp_in--;
        if (rc) {
            uzp_range_free(a, plen);
            errno = -rc;
            return MAP_FAILED;
        }
    }
    return (void *)a;
}

/* With _FILE_OFFSET_BITS=64 the header names mmap "mmap64": both symbols are spelled out. */
UZP_EXPORT void *uzp_mmap(void *addr, size_t len, int prot, int flags, int fd,
                          long off) __asm__("mmap");
UZP_EXPORT void *uzp_mmap64(void *addr, size_t len, int prot, int flags, int fd,
                            long off) __asm__("mmap64");

void *uzp_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
    return do_mmap(addr, len, prot, flags, fd, off);
}

void *uzp_mmap64(void *addr, size_t len, int prot, int flags, int fd, long off)
{
    return do_mmap(addr, len, prot, flags, fd, off);
}

UZP_EXPORT int munmap(void *addr, size_t len)
{
    if (!uzp_routing() || ((uintptr_t)addr & (UZP_PAGE - 1)) || !len ||
        !uzp_range_in_region(addr, page_up(len)))
        return uzp_sys_munmap(addr, len);
    size_t plen = page_up(len);
    if (uzp_fresh((uintptr_t)addr, plen, PROT_READ | PROT_WRITE)) {
        /* A hole (the program mapped something there): unmap what is there, keep it out. */
        return uzp_sys_munmap(addr, len);
    }
    uzp_range_free((uintptr_t)addr, plen);
    return 0;
}

UZP_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_addr = va_arg(ap, void *);
        va_end(ap);
    }
    size_t olen = page_up(old_len), nlen = page_up(new_len);
    if (!uzp_routing() || ((uintptr_t)old & (UZP_PAGE - 1)) || !olen || !nlen ||
        !uzp_range_in_region(old, olen) || (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))) {
        void *p = (void *)uzp_sys(SYS_mremap, (long)(old), (long)(old_len), (long)(new_len),
                                  (long)(flags), (long)(new_addr), 0);
        if (p != MAP_FAILED && uzp_range_in_region(old, olen))
            uzp_range_claim((uintptr_t)old, olen); /* moved away: a hole now */
        return p;
    }
    if (nlen <= olen) {
        if (nlen < olen && !uzp_fresh((uintptr_t)old + nlen, olen - nlen, PROT_READ | PROT_WRITE))
            uzp_range_free((uintptr_t)old + nlen, olen - nlen);
        return old;
    }
    if (uzp_range_in_region((char *)old + olen, nlen - olen) &&
        uzp_range_take_exact((uintptr_t)old + olen, nlen - olen))
        return old; /* the free range after it: zeros, read/write */
    if (!(flags & MREMAP_MAYMOVE)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    uintptr_t a = uzp_range_alloc(nlen, UZP_PAGE);
    if (!a) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    memcpy((void *)a, old, olen);
    if (!uzp_fresh((uintptr_t)old, olen, PROT_READ | PROT_WRITE))
        uzp_range_free((uintptr_t)old, olen);
    return (void *)a;
}

UZP_EXPORT int madvise(void *addr, size_t len, int advice)
{
    if (!uzp_routing() || ((uintptr_t)addr & (UZP_PAGE - 1)) ||
        !uzp_range_in_region(addr, page_up(len)) || !len)
        return (int)uzp_sys(SYS_madvise, (long)(addr), (long)(len), (long)(advice), 0, 0, 0);
    long rc;
    switch (advice) {
    case MADV_DONTNEED:
    case MADV_FREE:
        uzp_in++;
        rc = uz_region_discard(uzp_region, addr, page_up(len));
        uzp_in--;
        return rc ? fail((int)rc) : 0;
    case MADV_PAGEOUT:
        uzp_in++;
        rc = uz_region_swapout(uzp_region, addr, page_up(len));
        uzp_in--;
        return rc < 0 ? fail((int)rc) : 0;
    case MADV_COLD:
        return 0; /* reclaim's clock finds cold pages itself */
    case MADV_DONTFORK:
    case MADV_WIPEONFORK:
        return 0; /* the region's fork support copies the whole region */
    default:
        return (int)uzp_sys(SYS_madvise, (long)(addr), (long)(len), (long)(advice), 0, 0, 0);
    }
}

UZP_EXPORT int posix_madvise(void *addr, size_t len, int advice)
{
    /* glibc: POSIX_MADV_DONTNEED is advice only, it discards nothing. */
    if (advice == POSIX_MADV_DONTNEED)
        return 0;
    return madvise(addr, len, advice) ? errno : 0;
}

UZP_EXPORT int mprotect(void *addr, size_t len, int prot)
{
    if (!uzp_routing() || ((uintptr_t)addr & (UZP_PAGE - 1)) || !len ||
        !uzp_range_in_region(addr, page_up(len)) || (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
        return (int)uzp_sys(SYS_mprotect, (long)(addr), (long)(len), (long)(prot), 0, 0, 0);
    uzp_in++;
    int rc = uz_region_protect(uzp_region, addr, page_up(len), prot);
    uzp_in--;
    if (rc == -ENOMEM) /* a hole: the program's own mapping is there */
        return (int)uzp_sys(SYS_mprotect, (long)(addr), (long)(len), (long)(prot), 0, 0, 0);
    return rc ? fail(rc) : 0;
}

/* mlockall(MCL_CURRENT) while the region exists would populate and lock all of it (region.h),
 * gigabytes of address space: it locks on fault instead (MCL_ONFAULT: what is resident now and
 * what is touched later), and the region is unlocked again, so its pages stay swappable.
 * MCL_FUTURE alone changes nothing for the region (its mappings exist already). */
UZP_EXPORT int mlockall(int flags)
{
    if (!uzp_routing() || !(flags & MCL_CURRENT))
        return (int)uzp_sys(SYS_mlockall, (long)(flags), 0, 0, 0, 0, 0);
    int rc = (int)uzp_sys(SYS_mlockall, (long)(flags | MCL_ONFAULT), 0, 0, 0, 0, 0);
    if (rc == 0)
        (void)uzp_sys(SYS_munlock, (long)((void *)uzp_base), (long)(uzp_end - uzp_base), 0, 0, 0,
                      0);
    return rc;
}

/* syscall(2) for the calls above, so that a program (or a runtime) that makes them by number
 * gets the same treatment; everything else goes to the kernel as it is. */
UZP_EXPORT long syscall(long n, ...)
{
    va_list ap;
    long a[6];
    va_start(ap, n);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    switch (n) {
    case SYS_mmap:
        return (long)do_mmap((void *)a[0], (size_t)a[1], (int)a[2], (int)a[3], (int)a[4], a[5]);
    case SYS_munmap:
        return munmap((void *)a[0], (size_t)a[1]);
    case SYS_mremap:
        return (long)mremap((void *)a[0], (size_t)a[1], (size_t)a[2], (int)a[3], (void *)a[4]);
    case SYS_madvise:
        return madvise((void *)a[0], (size_t)a[1], (int)a[2]);
    case SYS_mprotect:
        return mprotect((void *)a[0], (size_t)a[1], (int)a[2]);
    case SYS_mlockall:
        return mlockall((int)a[0]);
    case SYS_futex:
        return uzp_futex(a);
    case SYS_close:
        return close((int)a[0]);
    case SYS_close_range:
        return close_range((unsigned)a[0], (unsigned)a[1], (int)a[2]);
#ifdef SYS_dup2
    case SYS_dup2:
        return dup2((int)a[0], (int)a[1]);
#endif
    case SYS_dup3:
        return dup3((int)a[0], (int)a[1], (int)a[2]);
    default:
        return uzp_sys(n, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
}
