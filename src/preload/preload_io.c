/* SPDX-License-Identifier: MIT */
/*
 * preload_io.c - system calls on region memory in user-only mode.
 *
 * In UZ_REGION_MODE_USER_ONLY (stock Debian for an unprivileged user, uzram-run
 * --allow-user-only) the kernel does not report its own faults to the region: a read() into a
 * page never touched or swapped out fails with EFAULT (or returns short, at the first such page),
 * a path in a swapped-out string cannot be opened, FUTEX_WAIT on a swapped-out mutex fails and
 * glibc aborts. region.h's rule for that mode is to pin the memory a system call uses, and that
 * is what the calls here do for the program, around the call, with uz_region_pin():
 *   - buffers: read/write/pread/pwrite (and the _chk forms), readv/writev/preadv/pwritev(2),
 *     recv/recvfrom/send/sendto/recvmsg/sendmsg, fread/fwrite, getrandom, getcwd, readlink(at),
 *     the stat family's struct, poll/ppoll/select/epoll_wait's arrays, and the small structs
 *     of some fifty calls more (pipe/socketpair pairs, socket addresses and options, wait
 *     statuses, timespecs, itimers, rlimits, signal sets, statfs/statvfs, uname, sysinfo,
 *     sendfile/splice offsets: PIN2_CALL);
 *   - strings: every path of open/openat/creat/fopen/freopen, the stat family, access, mkdir,
 *     unlink, rename, chdir, opendir, readlink, execve/execv/execvp and posix_spawn(p) (argv and
 *     envp too), system and popen, fputs/puts (dlopen needs nothing: the loader opens a copy
 *     of the path);
 *   - waits (pthread_mutex_lock, pthread_cond_wait, sem_wait, pthread_rwlock locks, barrier
 *     waits, syscall(SYS_futex, FUTEX_WAIT...)): the object's page, for the wait only: an
 *     uncontended lock takes the try-lock path and pins nothing;
 *   - sigaltstack: the alternate stack, while it is installed (the kernel writes signal frames
 *     there).
 * A buffer larger than UZP_IO_CHUNK is transferred a chunk at a time (each pinned), so that a
 * big read never needs more than the pin budget (half the resident limit): the chunks go on while
 * each completes and the descriptor is a regular file or a block device; on a pipe or a socket
 * the first chunk's count is returned (a short count, which those may always return).
 * Memory glibc itself allocates (stdio buffers, DIR streams, getaddrinfo results, setenv) goes to
 * glibc's heap in this mode (preload_malloc.c: uzp_from_libc()), so glibc's internal system
 * calls on it work without any of this.
 * What remains: a system call glibc makes on program memory inside another function (fprintf of
 * a long string, setvbuf with the program's buffer, execl's arguments, C11 mtx_lock/cnd_wait),
 * ioctl, prctl and the other calls not listed; direct system calls of the program (syscall() with
 * other numbers, inline assembly); signal frames on a thread stack placed in region memory. Those
 * fail with EFAULT as without uzram-run's help; FULL mode has none of it.
 * In FULL mode (and on the library's own threads, and for memory outside the region) every call
 * goes straight to glibc's.
 */
/* The names are defined here as glibc exports them: open and open64, pread and pread64, ... are
 * both defined (aliases), which the header's redirects under _FILE_OFFSET_BITS=64 would forbid.
 * (On x86_64 and every 64-bit ABI the two forms are one function.) */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#include "preload.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/inotify.h>
#include <sys/sendfile.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define UZP_IO_CHUNK (1UL << 20) /* bytes pinned at once for one buffer */
#define PINS_MAX     16          /* ranges one call pins */
#define IOV_BATCH    64          /* iovec entries one chunk of vector I/O pins */

bool uzp_user_only;

/* Declared only under _FORTIFY_SOURCE (which calls them instead of read, recv, ...). */
extern void __chk_fail(void) __attribute__((noreturn));
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                       socklen_t *alen);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* True when this call's memory must be pinned: user-only mode, the region up, not the library. */
static inline bool pinning(void)
{
    return __builtin_expect(uzp_user_only, 0) && !uzp_in &&
           atomic_load_explicit(&uzp_state, memory_order_acquire) == UZP_STATE_READY;
}

struct pins {
    unsigned n;
    struct {
        void *addr;
        size_t len;
    } r[PINS_MAX];
};

/* The part [*a, *e) of [addr, addr+len) inside the region. @return : false when there is none. */
static bool clip(const void *addr, size_t len, uintptr_t *a, uintptr_t *e)
{
    *a = (uintptr_t)addr;
    if (!addr || !len)
        return false;
    if (__builtin_add_overflow(*a, len, e))
        *e = UINTPTR_MAX;
    if (*e <= uzp_base || *a >= uzp_end)
        return false;
    if (*a < uzp_base)
        *a = uzp_base;
    if (*e > uzp_end)
        *e = uzp_end;
    return true;
}

/* True when [addr, addr+len) overlaps the region. */
static bool overlaps(const void *addr, size_t len)
{
    uintptr_t a, e;
    return clip(addr, len, &a, &e);
}

/* Pins the part of [addr, addr+len) inside the region. @return : 0 (pinned, or nothing of it in
 * the region), -ENOSPC (no room left in `p`), or the pin's -errno (then nothing of it is
 * pinned: the system call sees what it would have seen without uzram-run). */
static int pin(struct pins *p, const void *addr, size_t len)
{
    uintptr_t a, e;
    if (!clip(addr, len, &a, &e))
        return 0;
    if (p->n == PINS_MAX)
        return -ENOSPC;
    uzp_in++;
    int rc = uz_region_pin(uzp_region, (void *)a, e - a);
    uzp_in--;
    if (rc == 0) {
        p->r[p->n].addr = (void *)a;
        p->r[p->n].len = e - a;
        p->n++;
    }
    return rc;
}

static void pin_str(struct pins *p, const char *s)
{
    if (s && uzp_in_region(s))
        (void)pin(p, s, strlen(s) + 1); /* strlen's user-mode faults bring it in first */
}

/* A NULL-terminated array of strings (argv, envp): the array and every string. */
static void pin_strv(struct pins *p, char *const *v)
{
    if (!v)
        return;
    size_t n = 0;
    while (v[n])
        pin_str(p, v[n++]);
    (void)pin(p, v, (n + 1) * sizeof(*v));
}

/* Releases what pin() took; errno is kept (the caller's result is in it). */
static void unpin(struct pins *p)
{
    if (!p->n)
        return;
    int e = errno;
    uzp_in++;
    for (unsigned i = 0; i < p->n; i++)
        (void)uz_region_unpin(uzp_region, p->r[i].addr, p->r[i].len);
    uzp_in--;
    p->n = 0;
    errno = e;
}

/* glibc's function of that name (the next definition after this library's). */
static void *real(void **slot, const char *name)
{
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!f) {
        uzp_in++;
        f = dlsym(RTLD_NEXT, name);
        uzp_in--;
        __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    }
    return f;
}

/* In an interposed function `name` of type `type`: `fn` is glibc's (its pointer kept in `slot`),
 * or the call fails with ENOSYS. */
#define REAL_AT(type, slot, name, fail)                                                            \
    __typeof__(type) fn = (__typeof__(type))real(&slot, name);                                     \
    if (!fn) {                                                                                     \
        errno = ENOSYS;                                                                            \
        return fail;                                                                               \
    }

#define REAL(type, name, fail)                                                                     \
    static void *slot_;                                                                            \
    REAL_AT(type, slot_, name, fail)

/* The exec family's, looked up at start: a child of vfork() (CPython's subprocess uses it) runs
 * execve on the parent's memory while the parent's other threads may hold the loader's lock,
 * where dlsym would wait for ever. */
static void *slot_execve, *slot_execvp; /* (execv is execve with environ) */

void uzp_io_init(void)
{
    (void)real(&slot_execve, "execve");
    (void)real(&slot_execvp, "execvp");
}

/* ---- one buffer, in chunks ---- */

enum io_op { OP_READ, OP_PREAD, OP_WRITE, OP_PWRITE, OP_RECV, OP_SEND };

typedef ssize_t (*rw_fn)(int, void *, size_t);
typedef ssize_t (*prw_fn)(int, void *, size_t, off_t);
typedef ssize_t (*sr_fn)(int, void *, size_t, int);

static ssize_t op_call(enum io_op op, void *fn, int fd, void *buf, size_t n, off_t off, int flags)
{
    switch (op) {
    case OP_READ:
    case OP_WRITE:
        return ((rw_fn)fn)(fd, buf, n);
    case OP_PREAD:
    case OP_PWRITE:
        return ((prw_fn)fn)(fd, buf, n, off);
    default:
        return ((sr_fn)fn)(fd, buf, n, flags);
    }
}

/* True when a full chunk may be followed by the next: a regular file or block device, where a
 * short count means end of file (a pipe or socket would block where one call would not). */
static bool seekable(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

/* Pins [buf, buf+*n), halving *n down to a page while the pin budget refuses. */
static void pin_chunk(struct pins *p, void *buf, size_t *n)
{
    while (pin(p, buf, *n) == -ENOMEM && *n > UZP_PAGE)
        *n /= 2;
}

static ssize_t buf_io(enum io_op op, void *fn, int fd, void *buf, size_t n, off_t off, int flags)
{
    if (!pinning() || !overlaps(buf, n))
        return op_call(op, fn, fd, buf, n, off, flags);
    size_t done = 0;
    int more = -1; /* unknown, no, yes: seekable(fd) */
    while (done < n) {
        size_t c = n - done < UZP_IO_CHUNK ? n - done : UZP_IO_CHUNK;
        struct pins p = {0};
        pin_chunk(&p, (char *)buf + done, &c);
        ssize_t r = op_call(op, fn, fd, (char *)buf + done, c, off + (off_t)done, flags);
        unpin(&p);
        if (r < 0)
            return done ? (ssize_t)done : r;
        done += (size_t)r;
        if ((size_t)r < c || done == n || op >= OP_RECV)
            break;
        if (more < 0)
            more = seekable(fd);
        if (!more)
            break;
    }
    return (ssize_t)done;
}

UZP_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    REAL(void *, "read", -1);
    return buf_io(OP_READ, fn, fd, buf, n, 0, 0);
}

UZP_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (n > buflen)
        __chk_fail(); /* a buffer overflow caught by _FORTIFY_SOURCE, as glibc does */
    return read(fd, buf, n);
}

UZP_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(void *, "write", -1);
    return buf_io(OP_WRITE, fn, fd, (void *)buf, n, 0, 0);
}

UZP_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    REAL(void *, "pread64", -1);
    return buf_io(OP_PREAD, fn, fd, buf, n, off, 0);
}

UZP_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread64")));

UZP_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
    if (n > buflen)
        __chk_fail();
    return pread64(fd, buf, n, off);
}

UZP_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(void *, "pwrite64", -1);
    return buf_io(OP_PWRITE, fn, fd, (void *)buf, n, off, 0);
}

UZP_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
    __attribute__((alias("pwrite64")));

UZP_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    REAL(void *, "recv", -1);
    return buf_io(OP_RECV, fn, fd, buf, n, 0, flags);
}

UZP_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (n > buflen)
        __chk_fail();
    return recv(fd, buf, n, flags);
}

UZP_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    REAL(void *, "send", -1);
    return buf_io(OP_SEND, fn, fd, (void *)buf, n, 0, flags);
}

UZP_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, __SOCKADDR_ARG sa,
                            socklen_t *alen)
{
    struct sockaddr *addr = sa.__sockaddr__;
    REAL(ssize_t(*)(int, void *, size_t, int, struct sockaddr *, socklen_t *), "recvfrom", -1);
    if (!pinning())
        return fn(fd, buf, n, flags, addr, alen);
    struct pins p = {0};
    if (n > UZP_IO_CHUNK)
        n = UZP_IO_CHUNK; /* a datagram's rest is lost either way; a stream's comes next */
    pin_chunk(&p, buf, &n);
    (void)pin(&p, alen, sizeof(*alen));
    if (addr && alen)
        (void)pin(&p, addr, *alen);
    ssize_t r = fn(fd, buf, n, flags, addr, alen);
    unpin(&p);
    return r;
}

UZP_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                                  struct sockaddr *addr, socklen_t *alen)
{
    if (n > buflen)
        __chk_fail();
    return recvfrom(fd, buf, n, flags, (__SOCKADDR_ARG){.__sockaddr__ = addr}, alen);
}

UZP_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG sa,
                          socklen_t alen)
{
    const struct sockaddr *addr = sa.__sockaddr__;
    REAL(ssize_t(*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t), "sendto",
         -1);
    if (!pinning())
        return fn(fd, buf, n, flags, addr, alen);
    struct pins p = {0};
    if (pin(&p, buf, n) == -ENOMEM && !addr) {
        if (n > UZP_IO_CHUNK) /* a stream socket: a short count */
            n = UZP_IO_CHUNK;
        pin_chunk(&p, (void *)buf, &n);
    }
    (void)pin(&p, addr, alen);
    ssize_t r = fn(fd, buf, n, flags, addr, alen);
    unpin(&p);
    return r;
}

/* ---- vectors ---- */

/* Pins the buffers of iov[0..cnt) (a copy of the caller's array, on the stack): as many entries
 * as fit in `p` and in UZP_IO_CHUNK bytes of region memory, at least one (only its first chunk
 * if it is large: *cut is then that entry's shortened copy). @return : the entries pinned. */
static int pin_iov(struct pins *p, const struct iovec *iov, int cnt, struct iovec *cut)
{
    size_t total = 0;
    int i = 0;
    for (; i < cnt; i++) {
        size_t len = iov[i].iov_len;
        if (!overlaps(iov[i].iov_base, len))
            continue; /* not region memory: nothing to pin, nothing counted */
        if (i > 0 && (total + len > UZP_IO_CHUNK || p->n == PINS_MAX))
            break;
        if (len > UZP_IO_CHUNK || pin(p, iov[i].iov_base, len) == -ENOMEM) {
            if (i > 0)
                break;
            *cut = iov[0];
            cut->iov_len = len < UZP_IO_CHUNK ? len : UZP_IO_CHUNK;
            pin_chunk(p, cut->iov_base, &cut->iov_len);
            return 1;
        }
        total += len;
    }
    return i;
}

enum vec_op { V_READ, V_WRITE, V_PREAD, V_PWRITE };

static ssize_t vec_call(enum vec_op op, void *fn, int fd, const struct iovec *iov, int cnt,
                        off_t off, int flags)
{
    switch (op) {
    case V_READ:
    case V_WRITE:
        return ((ssize_t(*)(int, const struct iovec *, int))fn)(fd, iov, cnt);
    default:
        return ((ssize_t(*)(int, const struct iovec *, int, off_t, int))fn)(fd, iov, cnt, off,
                                                                            flags);
    }
}

/* Vector I/O a batch of entries at a time, each pinned; goes on as buf_io() does. off < 0 (with
 * preadv2's -1) keeps the file position. */
static ssize_t vec_io(enum vec_op op, void *fn, int fd, const struct iovec *iov, int cnt, off_t off,
                      int flags)
{
    if (!pinning() || cnt <= 0)
        return vec_call(op, fn, fd, iov, cnt, off, flags);
    bool any = overlaps(iov, (size_t)cnt * sizeof(*iov));
    for (int i = 0; i < cnt && !any; i++)
        any = overlaps(iov[i].iov_base, iov[i].iov_len);
    if (!any)
        return vec_call(op, fn, fd, iov, cnt, off, flags);
    ssize_t done = 0;
    int more = -1;
    size_t skip = 0; /* bytes of iov[0] already done */
    while (cnt > 0) {
        struct iovec first = iov[0], cut;
        first.iov_base = (char *)first.iov_base + skip;
        first.iov_len -= skip;
        struct pins p = {0};
        cut.iov_len = 0;
        /* The batch: the (rest of the) first entry, then as many whole ones as fit. */
        struct iovec batch[IOV_BATCH];
        int nb = cnt < IOV_BATCH ? cnt : IOV_BATCH;
        batch[0] = first;
        memcpy(batch + 1, iov + 1, (size_t)(nb - 1) * sizeof(*iov));
        int k = pin_iov(&p, batch, nb, &cut);
        if (cut.iov_len)
            batch[0] = cut;
        size_t want = 0;
        for (int i = 0; i < k; i++)
            want += batch[i].iov_len;
        ssize_t r = vec_call(op, fn, fd, batch, k, off < 0 ? off : off + done, flags);
        unpin(&p);
        if (r < 0)
            return done ? done : r;
        done += r;
        if ((size_t)r < want)
            break;
        /* Advance past the batch. */
        size_t adv = (size_t)r;
        while (cnt > 0 && adv >= iov[0].iov_len - skip) {
            adv -= iov[0].iov_len - skip;
            skip = 0;
            iov++;
            cnt--;
        }
        skip += adv;
        if (cnt == 0)
            break;
        if (more < 0)
            more = seekable(fd);
        if (!more)
            break;
    }
    return done;
}

UZP_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    REAL(void *, "readv", -1);
    return vec_io(V_READ, fn, fd, iov, cnt, 0, 0);
}

UZP_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(void *, "writev", -1);
    return vec_io(V_WRITE, fn, fd, iov, cnt, 0, 0);
}

UZP_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    REAL(void *, "preadv64v2", -1);
    return vec_io(V_PREAD, fn, fd, iov, cnt, off, flags);
}

UZP_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
    __attribute__((alias("preadv64v2")));

UZP_EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    REAL(void *, "pwritev64v2", -1);
    return vec_io(V_PWRITE, fn, fd, iov, cnt, off, flags);
}

UZP_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
    __attribute__((alias("pwritev64v2")));

UZP_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return preadv64v2(fd, iov, cnt, off, 0);
}

UZP_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
    __attribute__((alias("preadv64")));

UZP_EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return pwritev64v2(fd, iov, cnt, off, 0);
}

UZP_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
    __attribute__((alias("pwritev64")));

/* The message header, its name, control data, iovec array and buffers (all or what fits). */
static void pin_msg(struct pins *p, const struct msghdr *m)
{
    (void)pin(p, m, sizeof(*m));
    (void)pin(p, m->msg_name, m->msg_namelen);
    (void)pin(p, m->msg_control, m->msg_controllen);
    (void)pin(p, m->msg_iov, m->msg_iovlen * sizeof(*m->msg_iov));
    for (size_t i = 0; i < m->msg_iovlen; i++)
        (void)pin(p, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
}

UZP_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
    REAL(ssize_t(*)(int, struct msghdr *, int), "recvmsg", -1);
    if (!pinning() || !m)
        return fn(fd, m, flags);
    struct pins p = {0};
    pin_msg(&p, m);
    ssize_t r = fn(fd, m, flags);
    unpin(&p);
    return r;
}

UZP_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    REAL(ssize_t(*)(int, const struct msghdr *, int), "sendmsg", -1);
    if (!pinning() || !m)
        return fn(fd, m, flags);
    struct pins p = {0};
    pin_msg(&p, m);
    ssize_t r = fn(fd, m, flags);
    unpin(&p);
    return r;
}

/* ---- stdio's direct transfers (a large fread/fwrite bypasses the FILE's buffer) ---- */

typedef size_t (*fread_fn)(void *, size_t, size_t, FILE *);
typedef size_t (*fwrite_fn)(const void *, size_t, size_t, FILE *);

/* glibc's fread (rd) or fwrite (wr, rd NULL), UZP_IO_CHUNK bytes of whole items at a time, each
 * chunk pinned; stops at the first short count, as they do. */
static size_t stdio_chunks(fread_fn rd, fwrite_fn wr, char *buf, size_t size, size_t n, FILE *f)
{
    size_t total;
    if (!pinning() || !size || __builtin_mul_overflow(size, n, &total))
        return rd ? rd(buf, size, n, f) : wr(buf, size, n, f);
    size_t per = size >= UZP_IO_CHUNK ? 1 : UZP_IO_CHUNK / size, done = 0;
    while (done < n) {
        size_t k = n - done < per ? n - done : per;
        struct pins p = {0};
        (void)pin(&p, buf + done * size, k * size);
        size_t r = rd ? rd(buf + done * size, size, k, f) : wr(buf + done * size, size, k, f);
        unpin(&p);
        done += r;
        if (r < k)
            break;
    }
    return done;
}

UZP_EXPORT size_t fread(void *buf, size_t size, size_t n, FILE *f)
{
    REAL(fread_fn, "fread", 0);
    return stdio_chunks(fn, NULL, buf, size, n, f);
}

UZP_EXPORT size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
    REAL(fwrite_fn, "fwrite", 0);
    return stdio_chunks(NULL, fn, (char *)buf, size, n, f); /* only read through wr */
}

UZP_EXPORT FILE *fopen64(const char *path, const char *mode)
{
    REAL(FILE * (*)(const char *, const char *), "fopen64", NULL);
    if (!pinning())
        return fn(path, mode);
    struct pins p = {0};
    pin_str(&p, path);
    FILE *f = fn(path, mode);
    unpin(&p);
    return f;
}

UZP_EXPORT FILE *fopen(const char *path, const char *mode) __attribute__((alias("fopen64")));

UZP_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *old)
{
    REAL(FILE * (*)(const char *, const char *, FILE *), "freopen64", NULL);
    if (!pinning())
        return fn(path, mode, old);
    struct pins p = {0};
    pin_str(&p, path);
    FILE *f = fn(path, mode, old);
    unpin(&p);
    return f;
}

UZP_EXPORT FILE *freopen(const char *path, const char *mode, FILE *old)
    __attribute__((alias("freopen64")));

UZP_EXPORT int fputs(const char *s, FILE *f)
{
    REAL(int (*)(const char *, FILE *), "fputs", EOF);
    if (!pinning())
        return fn(s, f);
    struct pins p = {0};
    pin_str(&p, s);
    int r = fn(s, f);
    unpin(&p);
    return r;
}

UZP_EXPORT int puts(const char *s)
{
    REAL(int (*)(const char *), "puts", EOF);
    if (!pinning())
        return fn(s);
    struct pins p = {0};
    pin_str(&p, s);
    int r = fn(s);
    unpin(&p);
    return r;
}

/* ---- paths and small structs ---- */

/* A function whose memory arguments are up to two paths s1, s2 and two structs o1, o2 of l1, l2
 * bytes (NULL or 0 where it has fewer). */
#define PIN2_CALL(ret, fail, type, name, call, s1, s2, o1, l1, o2, l2)                             \
    REAL(type, name, fail);                                                                        \
    if (!pinning())                                                                                \
        return call;                                                                               \
    struct pins p = {0};                                                                           \
    pin_str(&p, s1);                                                                               \
    pin_str(&p, s2);                                                                               \
    (void)pin(&p, o1, l1);                                                                         \
    (void)pin(&p, o2, l2);                                                                         \
    ret r = call;                                                                                  \
    unpin(&p);                                                                                     \
    return r

/* The same with one struct. */
#define PIN_CALL(ret, fail, type, name, call, s1, s2, o, olen)                                     \
    PIN2_CALL(ret, fail, type, name, call, s1, s2, o, olen, NULL, 0)

static int open_mode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

UZP_EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = open_mode(flags, ap);
    va_end(ap);
    PIN_CALL(int, -1, int (*)(const char *, int, ...), "open64", fn(path, flags, mode), path, NULL,
             NULL, 0);
}

UZP_EXPORT int open(const char *path, int flags, ...) __attribute__((alias("open64")));

UZP_EXPORT int __open64_2(const char *path, int flags)
{
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        __chk_fail(); /* as glibc: "O_CREAT or O_TMPFILE without mode" */
    return open64(path, flags, 0);
}

UZP_EXPORT int __open_2(const char *path, int flags) __attribute__((alias("__open64_2")));

UZP_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = open_mode(flags, ap);
    va_end(ap);
    PIN_CALL(int, -1, int (*)(int, const char *, int, ...), "openat64",
             fn(dirfd, path, flags, mode), path, NULL, NULL, 0);
}

UZP_EXPORT int openat(int dirfd, const char *path, int flags, ...)
    __attribute__((alias("openat64")));

UZP_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        __chk_fail();
    return openat64(dirfd, path, flags, 0);
}

UZP_EXPORT int __openat_2(int dirfd, const char *path, int flags)
    __attribute__((alias("__openat64_2")));

UZP_EXPORT int creat64(const char *path, mode_t mode)
{
    return open64(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

UZP_EXPORT int creat(const char *path, mode_t mode) __attribute__((alias("creat64")));

UZP_EXPORT int stat64(const char *path, struct stat64 *st)
{
    PIN_CALL(int, -1, int (*)(const char *, struct stat64 *), "stat64", fn(path, st), path, NULL,
             st, sizeof(*st));
}

UZP_EXPORT int stat(const char *path, struct stat *st)
{
    return stat64(path, (struct stat64 *)st); /* one layout on x86_64 (as glibc's alias) */
}

UZP_EXPORT int lstat64(const char *path, struct stat64 *st)
{
    PIN_CALL(int, -1, int (*)(const char *, struct stat64 *), "lstat64", fn(path, st), path, NULL,
             st, sizeof(*st));
}

UZP_EXPORT int lstat(const char *path, struct stat *st)
{
    return lstat64(path, (struct stat64 *)st);
}

UZP_EXPORT int fstat64(int fd, struct stat64 *st)
{
    PIN_CALL(int, -1, int (*)(int, struct stat64 *), "fstat64", fn(fd, st), NULL, NULL, st,
             sizeof(*st));
}

UZP_EXPORT int fstat(int fd, struct stat *st)
{
    return fstat64(fd, (struct stat64 *)st);
}

UZP_EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
    PIN_CALL(int, -1, int (*)(int, const char *, struct stat64 *, int), "fstatat64",
             fn(dirfd, path, st, flags), path, NULL, st, sizeof(*st));
}

UZP_EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    return fstatat64(dirfd, path, (struct stat64 *)st, flags);
}

UZP_EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *st)
{
    PIN_CALL(int, -1, int (*)(int, const char *, int, unsigned, struct statx *), "statx",
             fn(dirfd, path, flags, mask, st), path, NULL, st, sizeof(*st));
}

UZP_EXPORT int access(const char *path, int mode)
{
    PIN_CALL(int, -1, int (*)(const char *, int), "access", fn(path, mode), path, NULL, NULL, 0);
}

UZP_EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
    PIN_CALL(int, -1, int (*)(int, const char *, int, int), "faccessat",
             fn(dirfd, path, mode, flags), path, NULL, NULL, 0);
}

UZP_EXPORT int mkdir(const char *path, mode_t mode)
{
    PIN_CALL(int, -1, int (*)(const char *, mode_t), "mkdir", fn(path, mode), path, NULL, NULL, 0);
}

UZP_EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
    PIN_CALL(int, -1, int (*)(int, const char *, mode_t), "mkdirat", fn(dirfd, path, mode), path,
             NULL, NULL, 0);
}

UZP_EXPORT int rmdir(const char *path)
{
    PIN_CALL(int, -1, int (*)(const char *), "rmdir", fn(path), path, NULL, NULL, 0);
}

UZP_EXPORT int unlink(const char *path)
{
    PIN_CALL(int, -1, int (*)(const char *), "unlink", fn(path), path, NULL, NULL, 0);
}

UZP_EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    PIN_CALL(int, -1, int (*)(int, const char *, int), "unlinkat", fn(dirfd, path, flags), path,
             NULL, NULL, 0);
}

UZP_EXPORT int rename(const char *from, const char *to)
{
    PIN_CALL(int, -1, int (*)(const char *, const char *), "rename", fn(from, to), from, to, NULL,
             0);
}

UZP_EXPORT int renameat(int fd1, const char *from, int fd2, const char *to)
{
    PIN_CALL(int, -1, int (*)(int, const char *, int, const char *), "renameat",
             fn(fd1, from, fd2, to), from, to, NULL, 0);
}

UZP_EXPORT int chdir(const char *path)
{
    PIN_CALL(int, -1, int (*)(const char *), "chdir", fn(path), path, NULL, NULL, 0);
}

UZP_EXPORT int chmod(const char *path, mode_t mode)
{
    PIN_CALL(int, -1, int (*)(const char *, mode_t), "chmod", fn(path, mode), path, NULL, NULL, 0);
}

UZP_EXPORT int truncate64(const char *path, off_t len)
{
    PIN_CALL(int, -1, int (*)(const char *, off_t), "truncate64", fn(path, len), path, NULL, NULL,
             0);
}

UZP_EXPORT int truncate(const char *path, off_t len) __attribute__((alias("truncate64")));

UZP_EXPORT int symlink(const char *target, const char *path)
{
    PIN_CALL(int, -1, int (*)(const char *, const char *), "symlink", fn(target, path), target,
             path, NULL, 0);
}

UZP_EXPORT int link(const char *from, const char *to)
{
    PIN_CALL(int, -1, int (*)(const char *, const char *), "link", fn(from, to), from, to, NULL, 0);
}

UZP_EXPORT ssize_t readlink(const char *path, char *buf, size_t n)
{
    PIN_CALL(ssize_t, -1, ssize_t(*)(const char *, char *, size_t), "readlink", fn(path, buf, n),
             path, NULL, buf, n);
}

UZP_EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
    PIN_CALL(ssize_t, -1, ssize_t(*)(int, const char *, char *, size_t), "readlinkat",
             fn(dirfd, path, buf, n), path, NULL, buf, n);
}

UZP_EXPORT char *getcwd(char *buf, size_t n)
{
    PIN_CALL(char *, NULL, char *(*)(char *, size_t), "getcwd", fn(buf, n), NULL, NULL, buf, n);
}

UZP_EXPORT DIR *opendir(const char *path)
{
    PIN_CALL(DIR *, NULL, DIR * (*)(const char *), "opendir", fn(path), path, NULL, NULL, 0);
}

UZP_EXPORT ssize_t getrandom(void *buf, size_t n, unsigned flags)
{
    if (n > UZP_IO_CHUNK && pinning())
        n = UZP_IO_CHUNK; /* getrandom(2) may return short for large requests */
    PIN_CALL(ssize_t, -1, ssize_t(*)(void *, size_t, unsigned), "getrandom", fn(buf, n, flags),
             NULL, NULL, buf, n);
}

UZP_EXPORT int pipe(int fds[2])
{
    PIN2_CALL(int, -1, int (*)(int *), "pipe", fn(fds), NULL, NULL, fds, 2 * sizeof(int), NULL, 0);
}

UZP_EXPORT int pipe2(int fds[2], int flags)
{
    PIN2_CALL(int, -1, int (*)(int *, int), "pipe2", fn(fds, flags), NULL, NULL, fds,
              2 * sizeof(int), NULL, 0);
}

UZP_EXPORT int socketpair(int domain, int type, int proto, int sv[2])
{
    PIN2_CALL(int, -1, int (*)(int, int, int, int *), "socketpair", fn(domain, type, proto, sv),
              NULL, NULL, sv, 2 * sizeof(int), NULL, 0);
}

/* An address argument with its length (in *len, read here: the page faults in user mode). */
static size_t addr_len(const socklen_t *len)
{
    return len ? *len : 0;
}

UZP_EXPORT int accept(int fd, __SOCKADDR_ARG sa, socklen_t *len)
{
    struct sockaddr *a = sa.__sockaddr__;
    PIN2_CALL(int, -1, int (*)(int, __SOCKADDR_ARG, socklen_t *), "accept", fn(fd, sa, len), NULL,
              NULL, a, a ? addr_len(len) : 0, len, sizeof(*len));
}

UZP_EXPORT int accept4(int fd, __SOCKADDR_ARG sa, socklen_t *len, int flags)
{
    struct sockaddr *a = sa.__sockaddr__;
    PIN2_CALL(int, -1, int (*)(int, __SOCKADDR_ARG, socklen_t *, int), "accept4",
              fn(fd, sa, len, flags), NULL, NULL, a, a ? addr_len(len) : 0, len, sizeof(*len));
}

UZP_EXPORT int getsockname(int fd, __SOCKADDR_ARG sa, socklen_t *len)
{
    PIN2_CALL(int, -1, int (*)(int, __SOCKADDR_ARG, socklen_t *), "getsockname", fn(fd, sa, len),
              NULL, NULL, sa.__sockaddr__, addr_len(len), len, sizeof(*len));
}

UZP_EXPORT int getpeername(int fd, __SOCKADDR_ARG sa, socklen_t *len)
{
    PIN2_CALL(int, -1, int (*)(int, __SOCKADDR_ARG, socklen_t *), "getpeername", fn(fd, sa, len),
              NULL, NULL, sa.__sockaddr__, addr_len(len), len, sizeof(*len));
}

UZP_EXPORT int connect(int fd, __CONST_SOCKADDR_ARG sa, socklen_t len)
{
    PIN2_CALL(int, -1, int (*)(int, __CONST_SOCKADDR_ARG, socklen_t), "connect", fn(fd, sa, len),
              NULL, NULL, sa.__sockaddr__, len, NULL, 0);
}

UZP_EXPORT int bind(int fd, __CONST_SOCKADDR_ARG sa, socklen_t len)
{
    PIN2_CALL(int, -1, int (*)(int, __CONST_SOCKADDR_ARG, socklen_t), "bind", fn(fd, sa, len), NULL,
              NULL, sa.__sockaddr__, len, NULL, 0);
}

UZP_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    PIN2_CALL(int, -1, int (*)(int, int, int, void *, socklen_t *), "getsockopt",
              fn(fd, level, name, val, len), NULL, NULL, val, addr_len(len), len, sizeof(*len));
}

UZP_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    PIN2_CALL(int, -1, int (*)(int, int, int, const void *, socklen_t), "setsockopt",
              fn(fd, level, name, val, len), NULL, NULL, val, len, NULL, 0);
}

UZP_EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
    PIN2_CALL(pid_t, -1, pid_t(*)(pid_t, int *, int), "waitpid", fn(pid, status, options), NULL,
              NULL, status, sizeof(*status), NULL, 0);
}

UZP_EXPORT pid_t wait(int *status)
{
    return waitpid(-1, status, 0);
}

UZP_EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
    PIN2_CALL(pid_t, -1, pid_t(*)(pid_t, int *, int, struct rusage *), "wait4",
              fn(pid, status, options, ru), NULL, NULL, status, sizeof(*status), ru, sizeof(*ru));
}

UZP_EXPORT int waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
    PIN2_CALL(int, -1, int (*)(idtype_t, id_t, siginfo_t *, int), "waitid",
              fn(type, id, info, options), NULL, NULL, info, sizeof(*info), NULL, 0);
}

UZP_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
    PIN2_CALL(int, -1, int (*)(const struct timespec *, struct timespec *), "nanosleep",
              fn(req, rem), NULL, NULL, req, sizeof(*req), rem, sizeof(*rem));
}

UZP_EXPORT int clock_nanosleep(clockid_t c, int flags, const struct timespec *req,
                               struct timespec *rem)
{
    PIN2_CALL(int, EINVAL, int (*)(clockid_t, int, const struct timespec *, struct timespec *),
              "clock_nanosleep", fn(c, flags, req, rem), NULL, NULL, req, sizeof(*req), rem,
              sizeof(*rem));
}

UZP_EXPORT int uname(struct utsname *u)
{
    PIN2_CALL(int, -1, int (*)(struct utsname *), "uname", fn(u), NULL, NULL, u, sizeof(*u), NULL,
              0);
}

UZP_EXPORT int getrlimit(__rlimit_resource_t res, struct rlimit *rl)
{
    PIN2_CALL(int, -1, int (*)(__rlimit_resource_t, struct rlimit *), "getrlimit", fn(res, rl),
              NULL, NULL, rl, sizeof(*rl), NULL, 0);
}

UZP_EXPORT int setrlimit(__rlimit_resource_t res, const struct rlimit *rl)
{
    PIN2_CALL(int, -1, int (*)(__rlimit_resource_t, const struct rlimit *), "setrlimit",
              fn(res, rl), NULL, NULL, rl, sizeof(*rl), NULL, 0);
}

UZP_EXPORT int prlimit(pid_t pid, __rlimit_resource_t res, const struct rlimit *nl,
                       struct rlimit *ol)
{
    PIN2_CALL(int, -1, int (*)(pid_t, __rlimit_resource_t, const struct rlimit *, struct rlimit *),
              "prlimit", fn(pid, res, nl, ol), NULL, NULL, nl, sizeof(*nl), ol, sizeof(*ol));
}

UZP_EXPORT int getrusage(__rusage_who_t who, struct rusage *ru)
{
    PIN2_CALL(int, -1, int (*)(__rusage_who_t, struct rusage *), "getrusage", fn(who, ru), NULL,
              NULL, ru, sizeof(*ru), NULL, 0);
}

UZP_EXPORT int sysinfo(struct sysinfo *si)
{
    PIN2_CALL(int, -1, int (*)(struct sysinfo *), "sysinfo", fn(si), NULL, NULL, si, sizeof(*si),
              NULL, 0);
}

UZP_EXPORT int sched_getaffinity(pid_t pid, size_t len, cpu_set_t *set)
{
    PIN2_CALL(int, -1, int (*)(pid_t, size_t, cpu_set_t *), "sched_getaffinity", fn(pid, len, set),
              NULL, NULL, set, len, NULL, 0);
}

UZP_EXPORT int sched_setaffinity(pid_t pid, size_t len, const cpu_set_t *set)
{
    PIN2_CALL(int, -1, int (*)(pid_t, size_t, const cpu_set_t *), "sched_setaffinity",
              fn(pid, len, set), NULL, NULL, set, len, NULL, 0);
}

UZP_EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    PIN2_CALL(int, -1, int (*)(int, const sigset_t *, sigset_t *), "sigprocmask", fn(how, set, old),
              NULL, NULL, set, sizeof(*set), old, sizeof(*old));
}

UZP_EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    PIN2_CALL(int, EINVAL, int (*)(int, const sigset_t *, sigset_t *), "pthread_sigmask",
              fn(how, set, old), NULL, NULL, set, sizeof(*set), old, sizeof(*old));
}

UZP_EXPORT int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *t)
{
    PIN2_CALL(int, -1, int (*)(const sigset_t *, siginfo_t *, const struct timespec *),
              "sigtimedwait", fn(set, info, t), NULL, NULL, set, sizeof(*set), info, sizeof(*info));
}

UZP_EXPORT int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
    PIN2_CALL(int, -1, int (*)(const sigset_t *, siginfo_t *), "sigwaitinfo", fn(set, info), NULL,
              NULL, set, sizeof(*set), info, sizeof(*info));
}

UZP_EXPORT int sigwait(const sigset_t *set, int *sig)
{
    PIN2_CALL(int, EINVAL, int (*)(const sigset_t *, int *), "sigwait", fn(set, sig), NULL, NULL,
              set, sizeof(*set), sig, sizeof(*sig));
}

UZP_EXPORT int statfs64(const char *path, struct statfs64 *st)
{
    PIN2_CALL(int, -1, int (*)(const char *, struct statfs64 *), "statfs64", fn(path, st), path,
              NULL, st, sizeof(*st), NULL, 0);
}

UZP_EXPORT int statfs(const char *path, struct statfs *st)
{
    return statfs64(path, (struct statfs64 *)st); /* one layout on 64-bit ABIs */
}

UZP_EXPORT int fstatfs64(int fd, struct statfs64 *st)
{
    PIN2_CALL(int, -1, int (*)(int, struct statfs64 *), "fstatfs64", fn(fd, st), NULL, NULL, st,
              sizeof(*st), NULL, 0);
}

UZP_EXPORT int fstatfs(int fd, struct statfs *st)
{
    return fstatfs64(fd, (struct statfs64 *)st);
}

UZP_EXPORT int statvfs64(const char *path, struct statvfs64 *st)
{
    PIN2_CALL(int, -1, int (*)(const char *, struct statvfs64 *), "statvfs64", fn(path, st), path,
              NULL, st, sizeof(*st), NULL, 0);
}

UZP_EXPORT int statvfs(const char *path, struct statvfs *st)
{
    return statvfs64(path, (struct statvfs64 *)st);
}

UZP_EXPORT int fstatvfs64(int fd, struct statvfs64 *st)
{
    PIN2_CALL(int, -1, int (*)(int, struct statvfs64 *), "fstatvfs64", fn(fd, st), NULL, NULL, st,
              sizeof(*st), NULL, 0);
}

UZP_EXPORT int fstatvfs(int fd, struct statvfs *st)
{
    return fstatvfs64(fd, (struct statvfs64 *)st);
}

UZP_EXPORT int utimensat(int dirfd, const char *path, const struct timespec t[2], int flags)
{
    PIN2_CALL(int, -1, int (*)(int, const char *, const struct timespec *, int), "utimensat",
              fn(dirfd, path, t, flags), path, NULL, t, 2 * sizeof(*t), NULL, 0);
}

UZP_EXPORT int futimens(int fd, const struct timespec t[2])
{
    PIN2_CALL(int, -1, int (*)(int, const struct timespec *), "futimens", fn(fd, t), NULL, NULL, t,
              2 * sizeof(*t), NULL, 0);
}

UZP_EXPORT int chown(const char *path, uid_t u, gid_t g)
{
    PIN2_CALL(int, -1, int (*)(const char *, uid_t, gid_t), "chown", fn(path, u, g), path, NULL,
              NULL, 0, NULL, 0);
}

UZP_EXPORT int lchown(const char *path, uid_t u, gid_t g)
{
    PIN2_CALL(int, -1, int (*)(const char *, uid_t, gid_t), "lchown", fn(path, u, g), path, NULL,
              NULL, 0, NULL, 0);
}

UZP_EXPORT int fchownat(int dirfd, const char *path, uid_t u, gid_t g, int flags)
{
    PIN2_CALL(int, -1, int (*)(int, const char *, uid_t, gid_t, int), "fchownat",
              fn(dirfd, path, u, g, flags), path, NULL, NULL, 0, NULL, 0);
}

UZP_EXPORT int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    PIN2_CALL(int, -1, int (*)(int, const char *, mode_t, int), "fchmodat",
              fn(dirfd, path, mode, flags), path, NULL, NULL, 0, NULL, 0);
}

UZP_EXPORT int mkfifo(const char *path, mode_t mode)
{
    PIN2_CALL(int, -1, int (*)(const char *, mode_t), "mkfifo", fn(path, mode), path, NULL, NULL, 0,
              NULL, 0);
}

UZP_EXPORT int linkat(int fd1, const char *from, int fd2, const char *to, int flags)
{
    PIN2_CALL(int, -1, int (*)(int, const char *, int, const char *, int), "linkat",
              fn(fd1, from, fd2, to, flags), from, to, NULL, 0, NULL, 0);
}

UZP_EXPORT int symlinkat(const char *target, int dirfd, const char *path)
{
    PIN2_CALL(int, -1, int (*)(const char *, int, const char *), "symlinkat",
              fn(target, dirfd, path), target, path, NULL, 0, NULL, 0);
}

UZP_EXPORT int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
    PIN2_CALL(int, -1, int (*)(int, const char *, int, const char *, unsigned), "renameat2",
              fn(fd1, from, fd2, to, flags), from, to, NULL, 0, NULL, 0);
}

UZP_EXPORT int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
    PIN2_CALL(int, -1, int (*)(int, const char *, uint32_t), "inotify_add_watch",
              fn(fd, path, mask), path, NULL, NULL, 0, NULL, 0);
}

UZP_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
    PIN2_CALL(ssize_t, -1, ssize_t(*)(int, int, off_t *, size_t), "sendfile64", fn(out, in, off, n),
              NULL, NULL, off, sizeof(*off), NULL, 0);
}

UZP_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
    __attribute__((alias("sendfile64")));

UZP_EXPORT ssize_t copy_file_range(int in, off_t *off_in, int out, off_t *off_out, size_t n,
                                   unsigned flags)
{
    PIN2_CALL(ssize_t, -1, ssize_t(*)(int, off_t *, int, off_t *, size_t, unsigned),
              "copy_file_range", fn(in, off_in, out, off_out, n, flags), NULL, NULL, off_in,
              sizeof(*off_in), off_out, sizeof(*off_out));
}

UZP_EXPORT ssize_t splice(int in, off_t *off_in, int out, off_t *off_out, size_t n, unsigned flags)
{
    PIN2_CALL(ssize_t, -1, ssize_t(*)(int, off_t *, int, off_t *, size_t, unsigned), "splice",
              fn(in, off_in, out, off_out, n, flags), NULL, NULL, off_in, sizeof(*off_in), off_out,
              sizeof(*off_out));
}

UZP_EXPORT int getgroups(int n, gid_t *list)
{
    PIN2_CALL(int, -1, int (*)(int, gid_t *), "getgroups", fn(n, list), NULL, NULL, list,
              n > 0 ? (size_t)n * sizeof(*list) : 0, NULL, 0);
}

UZP_EXPORT int setitimer(__itimer_which_t which, const struct itimerval *nv, struct itimerval *ov)
{
    PIN2_CALL(int, -1, int (*)(__itimer_which_t, const struct itimerval *, struct itimerval *),
              "setitimer", fn(which, nv, ov), NULL, NULL, nv, sizeof(*nv), ov, sizeof(*ov));
}

UZP_EXPORT int getitimer(__itimer_which_t which, struct itimerval *v)
{
    PIN2_CALL(int, -1, int (*)(__itimer_which_t, struct itimerval *), "getitimer", fn(which, v),
              NULL, NULL, v, sizeof(*v), NULL, 0);
}

UZP_EXPORT int timerfd_settime(int fd, int flags, const struct itimerspec *nv,
                               struct itimerspec *ov)
{
    PIN2_CALL(int, -1, int (*)(int, int, const struct itimerspec *, struct itimerspec *),
              "timerfd_settime", fn(fd, flags, nv, ov), NULL, NULL, nv, sizeof(*nv), ov,
              sizeof(*ov));
}

UZP_EXPORT int timerfd_gettime(int fd, struct itimerspec *v)
{
    PIN2_CALL(int, -1, int (*)(int, struct itimerspec *), "timerfd_gettime", fn(fd, v), NULL, NULL,
              v, sizeof(*v), NULL, 0);
}

/* ---- waits on descriptors ---- */

UZP_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    PIN_CALL(int, -1, int (*)(struct pollfd *, nfds_t, int), "poll", fn(fds, n, timeout), NULL,
             NULL, fds, n * sizeof(*fds));
}

UZP_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask)
{
    PIN_CALL(int, -1, int (*)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *),
             "ppoll", fn(fds, n, t, mask), NULL, NULL, fds, n * sizeof(*fds));
}

UZP_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int n, int timeout)
{
    PIN_CALL(int, -1, int (*)(int, struct epoll_event *, int, int), "epoll_wait",
             fn(epfd, ev, n, timeout), NULL, NULL, ev, n > 0 ? (size_t)n * sizeof(*ev) : 0);
}

UZP_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int n, int timeout,
                           const sigset_t *mask)
{
    PIN_CALL(int, -1, int (*)(int, struct epoll_event *, int, int, const sigset_t *), "epoll_pwait",
             fn(epfd, ev, n, timeout, mask), NULL, NULL, ev, n > 0 ? (size_t)n * sizeof(*ev) : 0);
}

UZP_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    PIN_CALL(int, -1, int (*)(int, int, int, struct epoll_event *), "epoll_ctl",
             fn(epfd, op, fd, ev), NULL, NULL, ev, sizeof(*ev));
}

UZP_EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t)
{
    REAL(int (*)(int, fd_set *, fd_set *, fd_set *, struct timeval *), "select", -1);
    if (!pinning())
        return fn(n, r, w, e, t);
    struct pins p = {0};
    (void)pin(&p, r, sizeof(*r));
    (void)pin(&p, w, sizeof(*w));
    (void)pin(&p, e, sizeof(*e));
    (void)pin(&p, t, sizeof(*t));
    int rc = fn(n, r, w, e, t);
    unpin(&p);
    return rc;
}

/* ---- programs started ---- */

/* The memory of an exec: the path, the arguments and the environment. */
static void pin_exec(struct pins *p, const char *path, char *const argv[], char *const envp[])
{
    pin_str(p, path);
    pin_strv(p, argv);
    pin_strv(p, envp);
}

UZP_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    REAL_AT(int (*)(const char *, char *const[], char *const[]), slot_execve, "execve", -1);
    if (!pinning())
        return fn(path, argv, envp);
    struct pins p = {0};
    pin_exec(&p, path, argv, envp);
    int r = fn(path, argv, envp);
    unpin(&p);
    return r;
}

UZP_EXPORT int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ); /* what glibc's execv is */
}

UZP_EXPORT int execvp(const char *file, char *const argv[])
{
    REAL_AT(int (*)(const char *, char *const[]), slot_execvp, "execvp", -1);
    if (!pinning())
        return fn(file, argv);
    struct pins p = {0};
    pin_exec(&p, file, argv, environ); /* the kernel reads the environment too */
    int r = fn(file, argv);
    unpin(&p);
    return r;
}

typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);

static int spawn(spawn_fn fn, pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    if (!pinning())
        return fn(pid, path, fa, attr, argv, envp);
    struct pins p = {0};
    pin_exec(&p, path, argv, envp);
    (void)pin(&p, pid, sizeof(*pid));
    int r = fn(pid, path, fa, attr, argv, envp);
    unpin(&p);
    return r;
}

UZP_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    REAL(spawn_fn, "posix_spawn", ENOSYS);
    return spawn(fn, pid, path, fa, attr, argv, envp);
}

UZP_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                            const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    REAL(spawn_fn, "posix_spawnp", ENOSYS);
    return spawn(fn, pid, file, fa, attr, argv, envp);
}

UZP_EXPORT int system(const char *cmd)
{
    PIN_CALL(int, -1, int (*)(const char *), "system", fn(cmd), cmd, NULL, NULL, 0);
}

UZP_EXPORT FILE *popen(const char *cmd, const char *mode)
{
    PIN_CALL(FILE *, NULL, FILE * (*)(const char *, const char *), "popen", fn(cmd, mode), cmd,
             mode, NULL, 0);
}

/* ---- waits on memory: the object's page while the thread sleeps on it ---- */

/* A blocking call `call` on `obj` after its try form `try_call` found it busy (try_busy). */
#define WAIT_CALL(type, name, obj, try_call, try_busy, call)                                       \
    REAL(type, name, EINVAL);                                                                      \
    if (!pinning() || !uzp_in_region(obj))                                                         \
        return call;                                                                               \
    int t_ = try_call;                                                                             \
    if (!(try_busy))                                                                               \
        return t_;                                                                                 \
    struct pins p = {0};                                                                           \
    (void)pin(&p, obj, sizeof(*(obj)));                                                            \
    int r = call;                                                                                  \
    unpin(&p);                                                                                     \
    return r

UZP_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    WAIT_CALL(int (*)(pthread_mutex_t *), "pthread_mutex_lock", m, pthread_mutex_trylock(m),
              t_ == EBUSY, fn(m));
}

UZP_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *t)
{
    WAIT_CALL(int (*)(pthread_mutex_t *, const struct timespec *), "pthread_mutex_timedlock", m,
              pthread_mutex_trylock(m), t_ == EBUSY, fn(m, t));
}

UZP_EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    WAIT_CALL(int (*)(pthread_rwlock_t *), "pthread_rwlock_rdlock", l, pthread_rwlock_tryrdlock(l),
              t_ == EBUSY || t_ == EAGAIN, fn(l));
}

UZP_EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    WAIT_CALL(int (*)(pthread_rwlock_t *), "pthread_rwlock_wrlock", l, pthread_rwlock_trywrlock(l),
              t_ == EBUSY, fn(l));
}

UZP_EXPORT int sem_wait(sem_t *s)
{
    WAIT_CALL(int (*)(sem_t *), "sem_wait", s, sem_trywait(s), t_ != 0 && errno == EAGAIN, fn(s));
}

UZP_EXPORT int sem_timedwait(sem_t *s, const struct timespec *t)
{
    WAIT_CALL(int (*)(sem_t *, const struct timespec *), "sem_timedwait", s, sem_trywait(s),
              t_ != 0 && errno == EAGAIN, fn(s, t));
}

UZP_EXPORT int sem_clockwait(sem_t *s, clockid_t c, const struct timespec *t)
{
    WAIT_CALL(int (*)(sem_t *, clockid_t, const struct timespec *), "sem_clockwait", s,
              sem_trywait(s), t_ != 0 && errno == EAGAIN, fn(s, c, t));
}

UZP_EXPORT int pthread_barrier_wait(pthread_barrier_t *b)
{
    WAIT_CALL(int (*)(pthread_barrier_t *), "pthread_barrier_wait", b, 0, 1, fn(b));
}

/* A condition variable's wait: the variable and the mutex (relocked on the way out). */
#define COND_CALL(type, name, c, m, call)                                                          \
    REAL(type, name, EINVAL);                                                                      \
    if (!pinning())                                                                                \
        return call;                                                                               \
    struct pins p = {0};                                                                           \
    (void)pin(&p, c, sizeof(*(c)));                                                                \
    (void)pin(&p, m, sizeof(*(m)));                                                                \
    int r = call;                                                                                  \
    unpin(&p);                                                                                     \
    return r

UZP_EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    COND_CALL(int (*)(pthread_cond_t *, pthread_mutex_t *), "pthread_cond_wait", c, m, fn(c, m));
}

UZP_EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                      const struct timespec *t)
{
    COND_CALL(int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *),
              "pthread_cond_timedwait", c, m, fn(c, m, t));
}

UZP_EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t k,
                                      const struct timespec *t)
{
    COND_CALL(int (*)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *),
              "pthread_cond_clockwait", c, m, fn(c, m, k, t));
}

/* syscall(SYS_futex, ...) (Rust's std, Go's runtime use their own futex words): the word (and
 * the second one of a requeue) while the call sleeps. Called by preload_mmap.c's syscall(). */
long uzp_futex(long a[6])
{
    int op = (int)a[1] & FUTEX_CMD_MASK;
    if (!pinning())
        return uzp_sys(SYS_futex, a[0], a[1], a[2], a[3], a[4], a[5]);
    struct pins p = {0};
    (void)pin(&p, (void *)a[0], sizeof(uint32_t));
    if (op == FUTEX_CMP_REQUEUE || op == FUTEX_WAKE_OP || op == FUTEX_WAIT_REQUEUE_PI ||
        op == FUTEX_CMP_REQUEUE_PI)
        (void)pin(&p, (void *)a[4], sizeof(uint32_t));
    if ((op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET || op == FUTEX_LOCK_PI ||
         op == FUTEX_WAIT_REQUEUE_PI) &&
        a[3])
        (void)pin(&p, (void *)a[3], sizeof(struct timespec));
    long r = uzp_sys(SYS_futex, a[0], a[1], a[2], a[3], a[4], a[5]);
    unpin(&p);
    return r;
}

/* ---- the alternate signal stack: pinned while installed (per thread) ---- */

static __thread void *alt_addr __attribute__((tls_model("initial-exec")));
static __thread size_t alt_len __attribute__((tls_model("initial-exec")));

UZP_EXPORT int sigaltstack(const stack_t *ss, stack_t *old)
{
    REAL(int (*)(const stack_t *, stack_t *), "sigaltstack", -1);
    if (!pinning())
        return fn(ss, old);
    struct pins p = {0};
    if (ss && !(ss->ss_flags & SS_DISABLE) && uzp_in_region(ss->ss_sp))
        (void)pin(&p, ss->ss_sp, ss->ss_size);
    (void)pin(&p, old, sizeof(*old));
    int r = fn(ss, old);
    int e = errno;
    if (r == 0 && ss) {
        struct pins prev = {.n = alt_len ? 1 : 0};
        prev.r[0].addr = alt_addr;
        prev.r[0].len = alt_len;
        unpin(&prev);
        alt_addr = NULL;
        alt_len = 0;
        if (p.n && p.r[0].addr >= ss->ss_sp &&
            (char *)p.r[0].addr < (char *)ss->ss_sp + ss->ss_size) {
            alt_addr = p.r[0].addr; /* kept: the first range is the stack's */
            alt_len = p.r[0].len;
            p.r[0] = p.r[--p.n];
        }
    }
    unpin(&p);
    errno = e;
    return r;
}
