/* SPDX-License-Identifier: MIT */
/*
 * preload_malloc.c - the malloc family, on jemalloc, in the region.
 *
 * A maintained allocator does the work: jemalloc 5.3 (Debian's libjemalloc2), called by its
 * non-standard names (mallocx, rallocx, sallocx, dallocx) so that the malloc, free, ... this
 * file exports win over glibc's and jemalloc's own. Every allocation names one arena created
 * at start with extent hooks (MALLOCX_ARENA), and a per-thread explicit tcache (tcaches.create;
 * MALLOCX_TCACHE), so no automatic arena and no huge arena (whose hooks are jemalloc's mmap)
 * ever hands memory to the program. The hooks map jemalloc's extents onto the region:
 *   alloc         a range of preload_range.c (first-fit, aligned; always zero and committed)
 *   dalloc        uz_region_discard() + the range back to the free list
 *   purge, decommit   uz_region_discard() (the range stays jemalloc's)
 *   commit, split, merge   nothing to do: the region is one mapping, always readable
 * A pointer in the region is jemalloc's; any other pointer came from glibc (allocated before
 * the preload took over, by the loader or libc, or on a library thread) and goes back to glibc.
 */
#include "preload.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
void *pvalloc(size_t n); /* not declared by every glibc */

size_t (*uzp_real_malloc_usable_size)(void *);

static unsigned arena_ind;

/* Per thread: 0 not set up yet, 1 has tcache tc_ind, 2 no tcache (none left, or exiting). */
static __thread int tc_state __attribute__((tls_model("initial-exec")));
static __thread unsigned tc_ind __attribute__((tls_model("initial-exec")));
static pthread_key_t tc_key;

static void tc_release(void *arg)
{
    (void)arg;
    if (tc_state == 1) {
        tc_state = 2; /* allocations later in this thread's exit go without a tcache */
        uzp_in++;
        (void)mallctl("tcaches.destroy", NULL, NULL, &tc_ind, sizeof(tc_ind));
        uzp_in--;
    }
}

static int tcflags(void)
{
    if (__builtin_expect(tc_state == 0, 0)) {
        size_t sz = sizeof(tc_ind);
        tc_state = 2;
        uzp_in++;
        int rc = mallctl("tcaches.create", &tc_ind, &sz, NULL, 0);
        uzp_in--;
        if (rc == 0) {
            tc_state = 1;
            pthread_setspecific(tc_key, &tc_state);
        }
    }
    return tc_state == 1 ? MALLOCX_TCACHE(tc_ind) : MALLOCX_TCACHE_NONE;
}

static int flags(void)
{
    return MALLOCX_ARENA(arena_ind) | tcflags();
}

/* ---- extent hooks ---- */

static atomic_bool forking;
static _Atomic unsigned in_hook; /* hooks inside uz_region_discard() now */

/* 0, or nonzero when the pages were not discarded (the hook then reports failure). */
static int discard(void *addr, size_t len)
{
    atomic_fetch_add(&in_hook, 1);
    if (atomic_load(&forking)) {
        atomic_fetch_sub(&in_hook, 1);
        return -EAGAIN;
    }
    uzp_in++;
    int rc = uz_region_discard(uzp_region, addr, len);
    uzp_in--;
    atomic_fetch_sub(&in_hook, 1);
    return rc;
}

void uzp_malloc_fork_prepare(void)
{
    atomic_store(&forking, true);
    unsigned spins = 0;
    while (atomic_load(&in_hook))
        if (++spins > 64)
            sched_yield();
}

void uzp_malloc_fork_done(void)
{
    atomic_store(&forking, false);
}

static void *h_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment, bool *zero,
                     bool *commit, unsigned ind)
{
    uintptr_t a;
    if (alignment < UZP_PAGE)
        alignment = UZP_PAGE;
    size = (size + UZP_PAGE - 1) & ~(UZP_PAGE - 1);
    if (new_addr) {
        if (((uintptr_t)new_addr & (alignment - 1)) || !uzp_range_in_region(new_addr, size) ||
            !uzp_range_take_exact((uintptr_t)new_addr, size))
            return NULL;
        a = (uintptr_t)new_addr;
    } else {
        a = uzp_range_alloc(size, alignment);
        if (!a) {
            static atomic_bool warned;
            if (!atomic_exchange(&warned, true))
                uzp_log("the region's address space is full (raise --size): malloc fails");
            return NULL;
        }
    }
    *zero = true; /* fresh or discarded: zeros */
    *commit = true;
    return (void *)a;
}

static bool h_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{
    if (!uzp_range_in_region(addr, size))
        return true; /* not ours: jemalloc keeps it */
    if (discard(addr, size))
        return true;
    uzp_range_free((uintptr_t)addr, size);
    return false;
}

static void h_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{
    (void)h_dalloc(h, addr, size, committed, ind);
}

static bool h_commit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                     unsigned ind)
{
    return false; /* region memory is always readable and writable */
}

static bool h_purge(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                    unsigned ind)
{
    char *p = (char *)addr + off;
    if (!uzp_range_in_region(p, len))
        return true;
    return discard(p, len) != 0;
}

static bool h_split(extent_hooks_t *h, void *addr, size_t size, size_t a, size_t b, bool committed,
                    unsigned ind)
{
    return false;
}

static bool h_merge(extent_hooks_t *h, void *addr_a, size_t size_a, void *addr_b, size_t size_b,
                    bool committed, unsigned ind)
{
    return !(uzp_range_in_region(addr_a, size_a) && uzp_range_in_region(addr_b, size_b));
}

static extent_hooks_t hooks = {
    .alloc = h_alloc,
    .dalloc = h_dalloc,
    .destroy = h_destroy,
    .commit = h_commit,
    .decommit = h_purge,
    .purge_lazy = h_purge,
    .purge_forced = h_purge,
    .split = h_split,
    .merge = h_merge,
};

/* jemalloc 5.3's experimental.arenas_create_ext: the arena's metadata stays out of its hooks
 * (in memory jemalloc maps itself, outside the region), so no jemalloc lock is ever held across
 * a fault on region memory (fork quiesces the region while jemalloc's fork handler takes them). */
struct uzp_arena_config {
    extent_hooks_t *extent_hooks;
    bool metadata_use_hooks;
};

int uzp_malloc_init(void)
{
    extent_hooks_t *hp = &hooks;
    struct uzp_arena_config cfg = {&hooks, false};
    size_t sz = sizeof(arena_ind);
    int rc = pthread_key_create(&tc_key, tc_release);
    if (rc)
        return -rc;
    rc = mallctl("experimental.arenas_create_ext", &arena_ind, &sz, &cfg, sizeof(cfg));
    if (rc) {
        sz = sizeof(arena_ind);
        rc = mallctl("arenas.create", &arena_ind, &sz, &hp, sizeof(hp));
    }
    if (rc)
        return -rc;
    /* jemalloc grows an arena by ever larger extents (opt.retain); on a bounded address space
     * they would end up too large to place. 64 MiB steps keep the region's space usable. */
    char name[64];
    size_t limit = 64u << 20;
    snprintf(name, sizeof(name), "arena.%u.retain_grow_limit", arena_ind);
    (void)mallctl(name, NULL, NULL, &limit, sizeof(limit));
    return 0;
}

/* ---- the malloc family ---- */

/* glibc's code (libc.so.6, ld.so), for uzp_from_libc(): [lo, hi) of their executable segments. */
#define LIBC_SEGS 4
static uintptr_t libc_lo[LIBC_SEGS], libc_hi[LIBC_SEGS];
static int n_libc;

static int find_libc(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (!strstr(name, "/libc.so") && !strstr(name, "/ld-linux") && !strstr(name, "/ld.so"))
        return 0;
    for (int i = 0; i < info->dlpi_phnum && n_libc < LIBC_SEGS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        libc_lo[n_libc] = info->dlpi_addr + ph->p_vaddr;
        libc_hi[n_libc] = libc_lo[n_libc] + ph->p_memsz;
        n_libc++;
    }
    return 0;
}

void uzp_malloc_user_only(void)
{
    n_libc = 0;
    dl_iterate_phdr(find_libc, NULL);
}

/* True when the caller (a return address) is glibc's own code. */
static inline bool uzp_from_libc(const void *ra)
{
    uintptr_t a = (uintptr_t)ra;
    for (int i = 0; i < n_libc; i++)
        if (a >= libc_lo[i] && a < libc_hi[i])
            return true;
    return false;
}

/* True when an allocation for the caller `ra` goes to the region. */
static inline bool use_region(const void *ra)
{
    if (!uzp_routing_alloc())
        return false;
    return !uzp_user_only || !uzp_from_libc(ra);
}

#define CALLER __builtin_return_address(0)

static void *do_malloc(size_t n, const void *ra)
{
    if (!use_region(ra))
        return __libc_malloc(n);
    int f = flags();
    uzp_in++;
    void *p = mallocx(n ? n : 1, f);
    uzp_in--;
    if (!p)
        errno = ENOMEM;
    return p;
}

UZP_EXPORT void *malloc(size_t n)
{
    return do_malloc(n, CALLER);
}

UZP_EXPORT void free(void *p)
{
    if (!p)
        return;
    if (uzp_in_region(p)) {
        int f = uzp_in ? MALLOCX_TCACHE_NONE : tcflags();
        uzp_in++;
        dallocx(p, f);
        uzp_in--;
    } else
        __libc_free(p);
}

UZP_EXPORT void *calloc(size_t n, size_t m)
{
    size_t t;
    if (!use_region(CALLER))
        return __libc_calloc(n, m);
    if (__builtin_mul_overflow(n, m, &t)) {
        errno = ENOMEM;
        return NULL;
    }
    int f = flags() | MALLOCX_ZERO;
    uzp_in++;
    void *p = mallocx(t ? t : 1, f);
    uzp_in--;
    if (!p)
        errno = ENOMEM;
    return p;
}

static void *do_realloc(void *p, size_t n, const void *ra)
{
    if (!p)
        return do_malloc(n, ra);
    if (n == 0) {
        free(p);
        return NULL;
    }
    if (uzp_in_region(p)) {
        int f = flags();
        uzp_in++;
        void *q = rallocx(p, n, f);
        uzp_in--;
        if (!q)
            errno = ENOMEM;
        return q;
    }
    if (!use_region(ra) || !uzp_real_malloc_usable_size)
        return __libc_realloc(p, n);
    /* A glibc block: move it into the region. */
    size_t old = uzp_real_malloc_usable_size(p);
    void *q = do_malloc(n, ra);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    __libc_free(p);
    return q;
}

UZP_EXPORT void *realloc(void *p, size_t n)
{
    return do_realloc(p, n, CALLER);
}

UZP_EXPORT void *reallocarray(void *p, size_t n, size_t m)
{
    size_t t;
    if (__builtin_mul_overflow(n, m, &t)) {
        errno = ENOMEM;
        return NULL;
    }
    return do_realloc(p, t, CALLER);
}

UZP_EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    if (uzp_in_region(p))
        return sallocx(p, 0); /* reads metadata only */
    return uzp_real_malloc_usable_size ? uzp_real_malloc_usable_size(p) : 0;
}

static void *aligned(size_t al, size_t n, const void *ra)
{
    if (!use_region(ra))
        return __libc_memalign(al, n);
    int f = flags() | MALLOCX_ALIGN(al);
    uzp_in++;
    void *p = mallocx(n ? n : 1, f);
    uzp_in--;
    if (!p)
        errno = ENOMEM;
    return p;
}

static void *do_memalign(size_t al, size_t n, const void *ra)
{
    if (al < sizeof(void *))
        al = sizeof(void *);
    if (al & (al - 1)) { /* as glibc: the next power of two */
        size_t p2 = sizeof(void *);
        while (p2 < al && p2 <= SIZE_MAX / 2)
            p2 *= 2;
        if (p2 < al) {
            errno = EINVAL;
            return NULL;
        }
        al = p2;
    }
    return aligned(al, n, ra);
}

UZP_EXPORT void *memalign(size_t al, size_t n)
{
    return do_memalign(al, n, CALLER);
}

UZP_EXPORT void *aligned_alloc(size_t al, size_t n)
{
    if (al == 0 || (al & (al - 1))) {
        errno = EINVAL;
        return NULL;
    }
    return do_memalign(al, n, CALLER);
}

UZP_EXPORT int posix_memalign(void **out, size_t al, size_t n)
{
    if (al < sizeof(void *) || (al & (al - 1)))
        return EINVAL;
    int saved = errno;
    void *p = aligned(al, n, CALLER);
    if (!p)
        return ENOMEM;
    errno = saved;
    *out = p;
    return 0;
}

UZP_EXPORT void *valloc(size_t n)
{
    return do_memalign(UZP_PAGE, n, CALLER);
}

UZP_EXPORT void *pvalloc(size_t n)
{
    if (n > SIZE_MAX - UZP_PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    return do_memalign(UZP_PAGE, (n + UZP_PAGE - 1) & ~(UZP_PAGE - 1), CALLER);
}
