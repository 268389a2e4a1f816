/* SPDX-License-Identifier: MIT */
/*
 * preload.h - libuzram-preload.so's private declarations (the module of uzram-run).
 *
 * The preload gives an unmodified, dynamically linked program one uzram region (region.h) and
 * puts the program's heap in it: the malloc family goes to jemalloc (an arena whose extent hooks
 * take page ranges of the region, preload_malloc.c), private anonymous mmaps become page ranges
 * of the region (preload_mmap.c), and the region's userfaultfds are kept from being closed
 * (preload_fd.c); in user-only mode the system calls the program makes on region memory pin it
 * for the call (preload_io.c). Page ranges of the region are handed out by a first-fit allocator
 * (preload_range.c); a thread serves the live statistics on a socket (preload_stats.c).
 * preload.c sets it all up in a constructor, from UZRAM_* variables.
 *
 * Reentrancy: every interposed function runs the real (glibc or raw system call) path while
 * uzp_in is set. It is set on the thread that is inside the uzram library (creating the
 * region, calling it from a hook, forking), and for good on every thread the library creates
 * (the pthread_create wrapper): the library's own threads and metadata never live in the
 * region.
 */
#ifndef UZ_PRELOAD_H
#define UZ_PRELOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uzram/region.h>

#define UZP_EXPORT __attribute__((visibility("default")))
#define UZP_PAGE   4096UL

enum uzp_state {
    UZP_STATE_INIT = 0, /* before the constructor: everything goes to glibc */
    UZP_STATE_READY,    /* the region is up: heap and private anonymous mmaps go to it */
    UZP_STATE_OFF,      /* no region (could not be created): plain glibc for good */
    UZP_STATE_LAZY,     /* after the constructor, before the first allocation: the region is
                           created by the first one (uzp_routing_alloc()) */
};

extern _Atomic int uzp_state;
extern struct uz_region *uzp_region;
extern uintptr_t uzp_base, uzp_end; /* [uzp_base, uzp_end): the region; 0, 0 until ready */
extern __thread int uzp_in __attribute__((tls_model("initial-exec")));

/* True when addr lies in the region. */
static inline bool uzp_in_region(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    return a >= uzp_base && a < uzp_end;
}

/* True when [addr, addr+len) lies in the region. */
static inline bool uzp_range_in_region(const void *addr, size_t len)
{
    uintptr_t a = (uintptr_t)addr;
    return a >= uzp_base && a < uzp_end && len <= uzp_end - a;
}

/* True when interposed calls of this thread go to the region now. */
static inline bool uzp_routing(void)
{
    return !uzp_in && atomic_load_explicit(&uzp_state, memory_order_acquire) == UZP_STATE_READY;
}

/* preload.c: creates the region (once, whichever thread comes first; the others wait). */
void uzp_start_lazy(void);

/* uzp_routing() for the malloc family: the first such call of the process creates the region
 * (a private anonymous mmap before it stays ordinary memory: see do_mmap()). A program that
 * allocates nothing (many short commands a script runs) never pays for one. */
static inline bool uzp_routing_alloc(void)
{
    if (uzp_in)
        return false;
    int s = atomic_load_explicit(&uzp_state, memory_order_acquire);
    if (__builtin_expect(s == UZP_STATE_LAZY, 0)) {
        uzp_start_lazy();
        s = atomic_load_explicit(&uzp_state, memory_order_acquire);
    }
    return s == UZP_STATE_READY;
}

/* preload_range.c: page ranges of [base, base+size), all page-aligned.
 * Thread-safety: every function takes the allocator's mutex; fork-safe (preload.c's handlers). */
void uzp_range_init(uintptr_t base, size_t size);
/* A free range of `len` bytes aligned to `align` (a power of two >= 4096), or 0. */
uintptr_t uzp_range_alloc(size_t len, size_t align);
/* Takes exactly [addr, addr+len) if every page of it is free; @return : true if taken. */
bool uzp_range_take_exact(uintptr_t addr, size_t len);
/* Marks [addr, addr+len) in use, whatever part of it was free (MAP_FIXED over the region). */
void uzp_range_claim(uintptr_t addr, size_t len);
/* Gives [addr, addr+len) back; pages already free stay free (a double free is harmless). */
void uzp_range_free(uintptr_t addr, size_t len);
/* In the child after fork (the lock is not held across fork, see preload_range.c). */
void uzp_range_fork_child(void);

/* preload_malloc.c */
/* Creates the region arena (jemalloc, extent hooks); @return : 0 or -errno. */
int uzp_malloc_init(void);
/* Around fork: extent hooks stop calling into the region (they report failure, jemalloc keeps
 * the pages) and prepare waits for those under way, so no thread holding a jemalloc lock blocks
 * on the quiesced region while the forking thread waits for that lock in jemalloc's handler. */
void uzp_malloc_fork_prepare(void);
void uzp_malloc_fork_done(void);
/* In user-only mode: the malloc family called from glibc (libc.so, ld.so) allocates in glibc's
 * heap, so that glibc's own system calls on its buffers never see region memory. */
void uzp_malloc_user_only(void);
/* Real (glibc) functions the preload calls by pointer. */
extern size_t (*uzp_real_malloc_usable_size)(void *);

/* preload_mmap.c: the real calls (raw system calls). uzp_raw() returns the kernel's result
 * (-errno on failure), uzp_sys() -1 with errno set, as syscall(2) does. */
long uzp_raw(long n, long a, long b, long c, long d, long e, long f);
long uzp_sys(long n, long a, long b, long c, long d, long e, long f);
void *uzp_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
int uzp_sys_munmap(void *addr, size_t len);
/* Fills in the range with the region's idea of "fresh private anonymous memory": zeros and
 * `prot`. @return : 0 or -errno. */
int uzp_fresh(uintptr_t addr, size_t len, int prot);

/* preload_io.c: system calls on region memory, pinned around the call in user-only mode. */
extern bool uzp_user_only; /* the region is UZ_REGION_MODE_USER_ONLY (set before READY) */
/* Looks up glibc's functions that must not be looked up later (in the constructor). */
void uzp_io_init(void);
/* syscall(SYS_futex, a[0..5]) for preload_mmap.c's syscall(). */
long uzp_futex(long a[6]);

/* preload_fd.c */
/* Finds the process's userfaultfds (/proc/self/fd) and protects them from now on. */
void uzp_fd_scan(void);

/* preload_stats.c: the live statistics on the abstract socket "@" UZP_STATS_PREFIX "<pid>". */
#define UZP_STATS_PREFIX "uzram-run/"
#define UZP_STATS_LINE   512 /* bytes: room for uzp_stats_format()'s line */
/* Starts this process's statistics thread (its socket, its own descriptor table); in the
 * constructor and in a forked child. Nothing happens if it cannot (no message). */
void uzp_stats_start(void);

/* preload.c */
/* Prints one line "uzram-run: ..." on stderr (no allocation). */
void uzp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes the --stats line ("resident_bytes=... mode=M\n"; with_pid: "pid=P " first) into buf.
 * @return : its length, or -errno (no region). Thread-safety: safe; no allocation. */
int uzp_stats_format(char *buf, size_t len, bool with_pid);

#endif
