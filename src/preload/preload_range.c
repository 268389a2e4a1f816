/* SPDX-License-Identifier: MIT */
/*
 * preload_range.c - the page ranges of the region: who may have which addresses.
 *
 * The free address space of the region is a sorted array of disjoint free intervals
 * [start, end), merged with its neighbours on free; at start it is one interval, the whole
 * region. Allocation is first-fit with alignment (the lowest addresses are reused first, which
 * keeps the region's hot part small); a request splits an interval into at most two free parts.
 * Freed ranges were discarded by the caller (they read as zeros), so what is handed out again
 * is always zero-filled. The array lives in glibc's heap (never in the region).
 * Invariant: ivs[i].start < ivs[i].end < ivs[i+1].start, every bound page-aligned.
 * Lock: range_lock, a leaf (nothing else is taken under it; glibc's malloc is called). It is not
 * held across fork(): jemalloc's fork handler, which runs after ours, waits for threads that
 * may be waiting for range_lock inside an extent hook. A child forked while another thread was
 * in the middle of an operation (the lock held, the array possibly half-moved) starts afresh
 * from the high-water mark instead: every address below it may be in use, none above it is.
 * Invariant: every range ever handed out lies below r_high.
 */
#include "preload.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>

extern void *__libc_realloc(void *, size_t);

struct iv {
    uintptr_t start, end;
};

static pthread_mutex_t range_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iv *ivs;
static size_t n_ivs, cap_ivs;
static uintptr_t r_base, r_end, r_high;

static bool reserve(size_t n)
{
    if (n <= cap_ivs)
        return true;
    size_t cap = cap_ivs ? cap_ivs * 2 : 64;
    while (cap < n)
        cap *= 2;
    struct iv *p = __libc_realloc(ivs, cap * sizeof(*p));
    if (!p)
        return false;
    ivs = p;
    cap_ivs = cap;
    return true;
}

void uzp_range_init(uintptr_t base, size_t size)
{
    pthread_mutex_lock(&range_lock);
    r_base = base;
    r_end = base + size;
    r_high = base;
    n_ivs = 0;
    if (reserve(1)) {
        ivs[0] = (struct iv){base, base + size};
        n_ivs = 1;
    }
    pthread_mutex_unlock(&range_lock);
}

/* Removes [a, b) from interval i, which contains it. May insert one interval. */
static bool carve(size_t i, uintptr_t a, uintptr_t b)
{
    struct iv v = ivs[i];
    if (b > r_high)
        r_high = b; /* before the array changes: the child's fallback relies on it */
    if (v.start == a && v.end == b) {
        memmove(&ivs[i], &ivs[i + 1], (n_ivs - i - 1) * sizeof(*ivs));
        n_ivs--;
    } else if (v.start == a) {
        ivs[i].start = b;
    } else if (v.end == b) {
        ivs[i].end = a;
    } else {
        if (!reserve(n_ivs + 1))
            return false;
        memmove(&ivs[i + 2], &ivs[i + 1], (n_ivs - i - 1) * sizeof(*ivs));
        ivs[i].end = a;
        ivs[i + 1] = (struct iv){b, v.end};
        n_ivs++;
    }
    return true;
}

uintptr_t uzp_range_alloc(size_t len, size_t align)
{
    uintptr_t got = 0;
    if (!len || len % UZP_PAGE || align < UZP_PAGE || (align & (align - 1)))
        return 0;
    pthread_mutex_lock(&range_lock);
    for (size_t i = 0; i < n_ivs; i++) {
        uintptr_t a = (ivs[i].start + align - 1) & ~(uintptr_t)(align - 1);
        if (a < ivs[i].start || a >= ivs[i].end || ivs[i].end - a < len)
            continue;
        if (carve(i, a, a + len))
            got = a;
        break;
    }
    pthread_mutex_unlock(&range_lock);
    return got;
}

/* Index of the first interval whose end is above a. */
static size_t find(uintptr_t a)
{
    size_t lo = 0, hi = n_ivs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ivs[mid].end <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool uzp_range_take_exact(uintptr_t addr, size_t len)
{
    bool ok = false;
    pthread_mutex_lock(&range_lock);
    size_t i = find(addr);
    if (i < n_ivs && ivs[i].start <= addr && ivs[i].end - addr >= len)
        ok = carve(i, addr, addr + len);
    pthread_mutex_unlock(&range_lock);
    return ok;
}

void uzp_range_claim(uintptr_t addr, size_t len)
{
    uintptr_t b = addr + len;
    pthread_mutex_lock(&range_lock);
    for (;;) { /* each round removes one overlapping part */
        size_t i = find(addr);
        if (i >= n_ivs || ivs[i].start >= b)
            break;
        uintptr_t s = ivs[i].start > addr ? ivs[i].start : addr;
        uintptr_t e = ivs[i].end < b ? ivs[i].end : b;
        if (!carve(i, s, e))
            break; /* no memory for the split: the pages stay free, a later reuse is harmless */
    }
    pthread_mutex_unlock(&range_lock);
}

void uzp_range_free(uintptr_t addr, size_t len)
{
    uintptr_t a = addr, b = addr + len;
    if (a < r_base)
        a = r_base;
    if (b > r_end)
        b = r_end;
    if (a >= b)
        return;
    pthread_mutex_lock(&range_lock);
    /* Union with every interval that overlaps or touches [a, b). */
    size_t i = find(a);
    if (i > 0 && ivs[i - 1].end == a)
        i--;
    size_t j = i;
    while (j < n_ivs && ivs[j].start <= b) {
        if (ivs[j].start < a)
            a = ivs[j].start;
        if (ivs[j].end > b)
            b = ivs[j].end;
        j++;
    }
    if (j > i) {
        ivs[i] = (struct iv){a, b};
        memmove(&ivs[i + 1], &ivs[j], (n_ivs - j) * sizeof(*ivs));
        n_ivs -= j - i - 1;
    } else if (reserve(n_ivs + 1)) {
        memmove(&ivs[i + 1], &ivs[i], (n_ivs - i) * sizeof(*ivs));
        ivs[i] = (struct iv){a, b};
        n_ivs++;
    } /* else: no memory to note it, the range is lost (address space, not memory) */
    pthread_mutex_unlock(&range_lock);
}

void uzp_range_fork_child(void)
{
    if (pthread_mutex_trylock(&range_lock) == 0) { /* no operation was under way: consistent */
        pthread_mutex_unlock(&range_lock);
        return;
    }
    pthread_mutex_init(&range_lock, NULL);
    n_ivs = 0;
    if (r_high < r_end && reserve(1)) {
        ivs[0] = (struct iv){r_high, r_end};
        n_ivs = 1;
    }
}
