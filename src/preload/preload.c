/* SPDX-License-Identifier: MIT */
/*
 * preload.c - libuzram-preload.so's start, fork, threads and exit.
 *
 * The constructor reads UZRAM_LIMIT, UZRAM_SIZE (bytes, K/M/G suffixes), UZRAM_ALGORITHM,
 * UZRAM_STATS=1 (or the pid it becomes: see stats_wanted()) and UZRAM_NO_CHILDREN=1 (state
 * LAZY); the first malloc-family call (start_region()) creates the region with the uzram
 * library, makes the jemalloc arena on it (preload_malloc.c), notes the region's userfaultfds
 * (preload_fd.c) and only then switches the process over (uzp_state READY).
 * Until then every allocation is glibc's; if the region cannot be created (no userfaultfd,
 * seccomp), one line on stderr and the program runs on glibc. The uzram library is linked in
 * statically: its own allocations are glibc's because the constructor, the fork handlers and every
 * call into it run with uzp_in set, and the threads it creates keep uzp_in set for life (the
 * pthread_create wrapper below).
 *
 * fork: the handlers are registered after the region's, so ours run first in the parent
 * (uzp_in set, extent hooks kept out of the region: uzp_malloc_fork_prepare) and last in the
 * child (after the region has made the child's userfaultfd and threads: the descriptors are
 * scanned again, and the child starts its own statistics thread, preload_stats.c). jemalloc's own
 * fork handlers run after the region's quiesce, so no thread may block on the region while holding
 * a jemalloc lock: the arena's metadata is outside the region, jemalloc touches object memory
 * outside its locks, and the hooks that call the region (purge, dalloc) fail fast during a fork.
 * The range allocator's lock is not held across fork either (preload_range.c says how the child
 * copes).
 */
#include "preload.h"
#include "preload_sys.h"
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

_Atomic int uzp_state;
struct uz_region *uzp_region;
uintptr_t uzp_base, uzp_end;
__thread int uzp_in __attribute__((tls_model("initial-exec")));

static bool stats_at_exit;
static _Atomic uint64_t forks;

void uzp_log(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "uzram-run: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    (void)!write(2, buf, (size_t)n);
}

/* ---- threads ---- */

/* Depth of dlopen/dlclose calls of this thread: threads a constructor starts are not the
 * library's. */
static __thread int uzp_loader __attribute__((tls_model("initial-exec")));

typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static pthread_create_fn real_pthread_create;

struct start {
    void *(*fn)(void *);
    void *arg;
};

static void *library_thread(void *p)
{
    struct start s = *(struct start *)p;
    uzp_in = 1; /* for life: a thread of the uzram library never allocates in the region */
    __libc_free(p);
    return s.fn(s.arg);
}

static pthread_create_fn get_real_pthread_create(void)
{
    if (!real_pthread_create) {
        uzp_in++;
        real_pthread_create = (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        uzp_in--;
    }
    return real_pthread_create;
}

UZP_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                              void *arg)
{
    pthread_create_fn real = get_real_pthread_create();
    if (!real)
        return EAGAIN;
    /* What glibc allocates for the thread (its DTV) stays in glibc's heap: a forked child
     * clears the DTVs of its parent's other threads when it reuses their stacks, on the thread
     * that is starting the child's fault threads. */
    int rc, was_in = uzp_in++ - uzp_loader; /* in the uzram library, not just in dlopen */
    if (!was_in) {
        rc = real(t, attr, fn, arg);
    } else {
        struct start *s = __libc_malloc(sizeof(*s));
        if (!s) {
            uzp_in--;
            return EAGAIN;
        }
        s->fn = fn;
        s->arg = arg;
        rc = real(t, attr, library_thread, s);
        if (rc)
            __libc_free(s);
    }
    uzp_in--;
    return rc;
}

/* The loader's own tables (link maps, the TLS slot list that every new thread's setup reads)
 * stay in glibc's heap too. */
static void *real_dlopen, *real_dlclose, *real_dlmopen;
static void *real_fn(void **slot, const char *name);

UZP_EXPORT void *dlopen(const char *file, int mode)
{
    void *(*fn)(const char *, int) = (void *(*)(const char *, int))real_fn(&real_dlopen, "dlopen");
    if (!fn)
        return NULL;
    uzp_in++;
    uzp_loader++;
    void *h = fn(file, mode);
    uzp_loader--;
    uzp_in--;
    return h;
}

UZP_EXPORT void *dlmopen(Lmid_t lmid, const char *file, int mode)
{
    void *(*fn)(Lmid_t, const char *, int) =
        (void *(*)(Lmid_t, const char *, int))real_fn(&real_dlmopen, "dlmopen");
    if (!fn)
        return NULL;
    uzp_in++;
    uzp_loader++;
    void *h = fn(lmid, file, mode);
    uzp_loader--;
    uzp_in--;
    return h;
}

UZP_EXPORT int dlclose(void *h)
{
    int (*fn)(void *) = (int (*)(void *))real_fn(&real_dlclose, "dlclose");
    if (!fn)
        return -1;
    uzp_in++;
    uzp_loader++;
    int rc = fn(h);
    uzp_loader--;
    uzp_in--;
    return rc;
}

/* ---- locales ----
 * The global locale's data is read by every new thread before its start routine
 * (start_thread -> __ctype_init) and by libc calls of the library's threads (strerror, printf):
 * were it in the region, a fault thread started in a forked child would fault on it and wait
 * for itself. setlocale() and newlocale() (duplocale()) therefore allocate in glibc's heap. */

static void *real_fn(void **slot, const char *name)
{
    if (!*slot) {
        uzp_in++;
        *slot = dlsym(RTLD_NEXT, name);
        uzp_in--;
    }
    return *slot;
}

static void *real_setlocale, *real_newlocale, *real_duplocale;

UZP_EXPORT char *setlocale(int category, const char *locale)
{
    char *(*fn)(int, const char *) =
        (char *(*)(int, const char *))real_fn(&real_setlocale, "setlocale");
    if (!fn)
        return NULL;
    uzp_in++;
    char *r = fn(category, locale);
    uzp_in--;
    return r;
}

UZP_EXPORT locale_t newlocale(int mask, const char *locale, locale_t base)
{
    locale_t (*fn)(int, const char *, locale_t) =
        (locale_t(*)(int, const char *, locale_t))real_fn(&real_newlocale, "newlocale");
    if (!fn) {
        errno = ENOMEM;
        return (locale_t)0;
    }
    uzp_in++;
    locale_t r = fn(mask, locale, base);
    uzp_in--;
    return r;
}

UZP_EXPORT locale_t duplocale(locale_t l)
{
    locale_t (*fn)(locale_t) = (locale_t(*)(locale_t))real_fn(&real_duplocale, "duplocale");
    if (!fn) {
        errno = ENOMEM;
        return (locale_t)0;
    }
    uzp_in++;
    locale_t r = fn(l);
    uzp_in--;
    return r;
}

/* ---- fork ---- */

static void fork_prepare(void)
{
    uzp_in++;
    uzp_malloc_fork_prepare();
}

static void fork_parent(void)
{
    uzp_malloc_fork_done();
    forks++;
    uzp_in--;
}

static void fork_child(void)
{
    uzp_malloc_fork_done();
    uzp_range_fork_child();
    forks = 0;
    stats_at_exit = false; /* the parent prints */
    uzp_fd_scan();         /* the child's region has its own userfaultfd */
    uzp_stats_start();     /* and its own statistics socket, under its pid */
    uzp_in--;
}

/* ---- start and exit ---- */

/* The size in `name`, or dflt() (which reads /proc and the cgroup: uzram-run sets both
 * variables, so that the program's start-up does not read them again). */
static uint64_t env_size(const char *name, uint64_t (*dflt)(void))
{
    const char *s = getenv(name);
    uint64_t v;
    if (!s || !*s)
        return dflt();
    if (uz_parse_size(s, &v) || v == 0) {
        uzp_log("ignoring %s=%s (not a size)", name, s);
        return dflt();
    }
    return v;
}

/* Removes this library from LD_PRELOAD, so the program's children run without it. */
static void drop_from_ld_preload(void)
{
    Dl_info info;
    const char *pre = getenv("LD_PRELOAD");
    if (!pre || !dladdr((void *)drop_from_ld_preload, &info) || !info.dli_fname)
        return;
    const char *self = strrchr(info.dli_fname, '/');
    self = self ? self + 1 : info.dli_fname;
    size_t n = strlen(pre);
    char *out = __libc_malloc(n + 1), *copy = __libc_malloc(n + 1);
    if (!out || !copy)
        goto done;
    memcpy(copy, pre, n + 1);
    out[0] = 0;
    for (char *save, *tok = strtok_r(copy, " :", &save); tok; tok = strtok_r(NULL, " :", &save)) {
        const char *base = strrchr(tok, '/');
        if (strcmp(base ? base + 1 : tok, self) == 0)
            continue;
        if (out[0])
            strcat(out, ":");
        strcat(out, tok);
    }
    if (out[0])
        setenv("LD_PRELOAD", out, 1);
    else
        unsetenv("LD_PRELOAD");
done:
    __libc_free(out);
    __libc_free(copy);
}

/* UZRAM_STATS: "1" (uzram-run --stats) means this process, which it replaces with the pid:
 * an image this process execs later (a wrapper script that ends in exec, such as pyenv's
 * python3 shim) prints the line at its exit instead, and children (other pids) print none. */
static bool stats_wanted(void)
{
    const char *st = getenv("UZRAM_STATS");
    char pid[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    if (!st)
        return false;
    if (strcmp(st, "1") == 0) {
        setenv("UZRAM_STATS", pid, 1);
        return true;
    }
    return strcmp(st, pid) == 0;
}

static const char *mode_name(int mode)
{
    return mode == UZ_REGION_MODE_FULL        ? "full"
           : mode == UZ_REGION_MODE_USER_ONLY ? "user_only"
                                              : "none";
}

static struct uz_region_config lazy_cfg; /* the constructor's settings, for start_region() */

__attribute__((constructor)) static void uzp_start(void)
{
    uzp_in++;
    get_real_pthread_create();
    real_fn(&real_setlocale, "setlocale");
    real_fn(&real_newlocale, "newlocale");
    real_fn(&real_duplocale, "duplocale");
    real_fn(&real_dlopen, "dlopen");
    real_fn(&real_dlmopen, "dlmopen");
    real_fn(&real_dlclose, "dlclose");
    uzp_io_init();
    uzp_real_malloc_usable_size = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    const char *nc = getenv("UZRAM_NO_CHILDREN");
    if (nc && strcmp(nc, "1") == 0)
        drop_from_ld_preload();
    stats_at_exit = stats_wanted();

    lazy_cfg = (struct uz_region_config){
        .size = env_size("UZRAM_SIZE", uzp_default_size),
        .resident_limit = env_size("UZRAM_LIMIT", uzp_default_limit),
        .algorithm = getenv("UZRAM_ALGORITHM"),
    };
    lazy_cfg.size = (lazy_cfg.size + UZP_PAGE - 1) & ~(UZP_PAGE - 1);
    lazy_cfg.resident_limit &= ~(UZP_PAGE - 1);
    if (lazy_cfg.resident_limit >= lazy_cfg.size)
        lazy_cfg.resident_limit = 0; /* the whole region fits: no reclaim */
    atomic_store_explicit(&uzp_state, UZP_STATE_LAZY, memory_order_release);
    uzp_in--;
}

/* The region, made by the first allocation (uzp_routing_alloc()): the constructor only reads
 * the settings, so a program that allocates nothing (`uzram-run -- /bin/true`, the short
 * commands of a script, each of which gets a region of its own) pays for no region, no
 * jemalloc arena and no threads (2.3 ms of start-up here). Runs once, with uzp_in set: every
 * allocation it makes, and those of the threads it starts, are glibc's, so it never re-enters
 * itself; the other threads that allocate meanwhile wait in pthread_once. A fork child of a
 * process still LAZY is LAZY too, and makes its own. The fork handlers are registered here,
 * after the region's (see the top of the file), and this can deadlock only if the process's
 * very first allocation is made inside a fork handler (pthread_atfork waits for the fork's
 * lock): no program seen here does that; glibc, python3, node and Java allocate long before. */
static pthread_once_t lazy_once = PTHREAD_ONCE_INIT;

static void start_region(void)
{
    uzp_in++;
    struct uz_region_config cfg = lazy_cfg;
    struct uz_region *r;
    int rc = uz_region_create(&cfg, &r);
    if (rc) {
        uzp_log("cannot create the compressed region (%s): running uncompressed", strerror(-rc));
        atomic_store(&uzp_state, UZP_STATE_OFF);
        uzp_in--;
        return;
    }
    uzp_region = r;
    uzp_range_init((uintptr_t)uz_region_base(r), cfg.size);
    uzp_base = (uintptr_t)uz_region_base(r);
    uzp_end = uzp_base + cfg.size;
    rc = uzp_malloc_init();
    if (rc) {
        uzp_log("cannot set up jemalloc on the region (%s): running uncompressed", strerror(-rc));
        uzp_base = uzp_end = 0;
        uzp_region = NULL;
        uz_region_destroy(r);
        atomic_store(&uzp_state, UZP_STATE_OFF);
        uzp_in--;
        return;
    }
    struct uz_region_stat st;
    if (uz_region_stat(r, &st) == 0 && st.mode == UZ_REGION_MODE_USER_ONLY) {
        uzp_malloc_user_only(); /* glibc's own allocations stay in glibc's heap */
        uzp_user_only = true;   /* and system calls on region memory pin it (preload_io.c) */
    }
    uzp_fd_scan();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    atomic_store_explicit(&uzp_state, UZP_STATE_READY, memory_order_release);
    uzp_stats_start();
    uzp_in--;
}

void uzp_start_lazy(void)
{
    pthread_once(&lazy_once, start_region);
}

int uzp_stats_format(char *buf, size_t len, bool with_pid)
{
    struct uz_region_stat st = {0};
    int state = atomic_load(&uzp_state);
    if (state == UZP_STATE_LAZY) {
        /* Nothing allocated yet, so no region: zeros, and the mode one would have. */
        uzp_in++;
        int mode = uz_region_probe();
        uzp_in--;
        st.mode = mode > 0 ? mode : 0;
    } else if (state != UZP_STATE_READY) {
        return -ENODEV;
    } else {
        uzp_in++;
        int rc = uz_region_stat(uzp_region, &st);
        uzp_in--;
        if (rc)
            return rc;
    }
    int n = 0;
    if (with_pid)
        n = snprintf(buf, len, "pid=%ld ", (long)getpid());
    if (n < 0 || (size_t)n >= len)
        return -ENOSPC;
    int m = snprintf(buf + n, len - (size_t)n,
                     "resident_bytes=%llu swapped_pages=%llu orig_bytes=%llu compr_bytes=%llu "
                     "mem_used=%llu major_faults=%llu minor_faults=%llu wp_faults=%llu "
                     "throttled=%llu forks=%llu mode=%s\n",
                     (unsigned long long)st.resident_pages * UZP_PAGE,
                     (unsigned long long)st.swapped_pages, (unsigned long long)st.orig_data_size,
                     (unsigned long long)st.compr_data_size, (unsigned long long)st.mem_used_total,
                     (unsigned long long)st.major_faults, (unsigned long long)st.minor_faults,
                     (unsigned long long)st.wp_faults, (unsigned long long)st.throttled,
                     (unsigned long long)atomic_load(&forks), mode_name(st.mode));
    if (m < 0 || (size_t)m >= len - (size_t)n)
        return -ENOSPC;
    return n + m;
}

__attribute__((destructor)) static void uzp_stop(void)
{
    /* The region stays: other threads may still run while exit() runs destructors. */
    if (!stats_at_exit)
        return;
    char buf[UZP_STATS_LINE];
    int n = uzp_stats_format(buf, sizeof(buf), false);
    if (n > 0)
        (void)!write(2, buf, (size_t)n);
}
