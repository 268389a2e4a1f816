// SPDX-License-Identifier: MIT
/*
 * dev_recomp.c - recompression with a secondary codec (the kernel's `recompress` attribute, run
 * by the policy thread too).
 *
 * The kernel's 2026 semantics: one call recompresses with ONE target codec (priority 1..3; no
 * chaining through the others). Candidates are stored objects (not same-filled, not written
 * back, not marked incompressible) that match the pick (idle, huge or both), were made by a
 * codec of a LOWER priority than the target and are at least `threshold` bytes. They are sorted
 * into the kernel's 64-byte size buckets and taken largest first, so a bounded call (max_pages)
 * spends itself where it saves the most.
 *
 * Each candidate is decoded under its slot lock into a private page, compressed once into a
 * stream of the target codec (invariant 1: its worst-case buffer, then exactly that length is
 * allocated and copied), and the new object replaces the old one only when it lands in a
 * SMALLER pool class (anything else saves nothing). When the target is the strongest
 * configured codec and it fails to shrink the object, the slot is marked incompressible ('n')
 * so that no later call tries again. A call that replaced objects ends with a compaction: the
 * freed holes are what make the saving real in pool pages.
 *
 * Stream order: the old object is decoded with a stream of its own (lower) priority, which is
 * put back before the target's is taken, so no thread ever holds two streams here.
 */
#include "dev_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NR_BUCKETS (UZ_PAGE_SIZE / 64 + 1) /* the kernel's 64-byte pp buckets */

/* Whether a slot is a candidate; `f` is its flags word (racy peek or under its lock). */
static bool candidate(uint32_t f, unsigned pick, unsigned prio, size_t threshold)
{
    if (!(f & UZ_SLOT_ALLOC) || (f & (UZ_SLOT_SAME | UZ_SLOT_WB | UZ_SLOT_INCOMP | UZ_SLOT_MULTI)))
        return false; /* a page of a multi-page object goes with its object (below) */
#ifdef UZ_SLOT_PP
    if (f & UZ_SLOT_PP)
        return false; /* being written back */
#endif
    if ((pick & UZ_DEV_PICK_IDLE) && !(f & UZ_SLOT_IDLE))
        return false;
    if ((pick & UZ_DEV_PICK_HUGE) && !(f & UZ_SLOT_HUGE))
        return false;
    if (uz_slot_prio(f) >= prio)
        return false; /* already made by this codec or a stronger one */
    return (f & UZ_SLOT_SIZE_MASK) >= threshold;
}

/* The highest configured secondary priority (0: none). */
static unsigned strongest(const struct uz_dev *dev)
{
    for (unsigned p = UZ_DEV_PRIO_MAX; p > 0; p--)
        if (dev->sec[p].comp)
            return p;
    return 0;
}

/* Recompresses one locked slot. @return : 1 replaced, 0 kept, or -errno (-ENOMEM, -EIO). */
static int recompress_slot(struct uz_dev *dev, struct uz_slot *s, unsigned prio, size_t threshold,
                           bool last, void *page)
{
    uint32_t f = uz_slot_flags(s);
    size_t old_len = f & UZ_SLOT_SIZE_MASK;
    const void *obj = uz_pool_map(dev->pool, s->val);
    int rc = uz_dev_decode(dev, f, obj, page, NULL);
    uz_pool_unmap(dev->pool, s->val);
    if (rc)
        return rc;

    struct uz_dev_stream *st = uz_dev_prio_stream_get(dev, prio);
    void *buf = uz_comp_stream_buf(st->cs);
    ssize_t len =
        uz_comp_compress(st->cs, page, UZ_PAGE_SIZE, buf, uz_comp_stream_buf_size(st->cs));
    if (len < 0 && len != -E2BIG) {
        uz_dev_stream_put(st);
        return -EIO;
    }
    size_t old_class = uz_pool_class_size(dev->pool, old_len);
    size_t new_class = len > 0 ? uz_pool_class_size(dev->pool, (size_t)len) : 0;
    if (len <= 0 || !new_class || new_class >= old_class) {
        uz_dev_stream_put(st);
        if (last)
            uz_slot_set_flags(s, f | UZ_SLOT_INCOMP); /* the strongest codec failed too */
        return 0;
    }
    if (threshold && (size_t)len >= threshold) {
        uz_dev_stream_put(st); /* smaller, but not below the caller's threshold */
        return 0;
    }
    /* Invariant 1: exactly `len` bytes allocated and copied from the stream's buffer. */
    uz_handle_t h;
    rc = uz_pool_malloc(dev->pool, (size_t)len, &h);
    if (!rc)
        uz_pool_write(dev->pool, h, buf, (size_t)len);
    uz_dev_stream_put(st);
    if (rc)
        return rc; /* the old object stays: nothing is lost */

    uz_pool_free(dev->pool, s->val);
    s->val = h;
    uz_counter_add(&dev->st.compr_data_size, (int64_t)len - (int64_t)old_len);
    if (f & UZ_SLOT_HUGE)
        uz_counter_add(&dev->st.huge_pages, -1);
    /* As the kernel: the slot was touched, so it is no longer idle (a later writeback of idle
     * pages does not take what was just made small); its access time is not an access. */
    uint32_t nf = (f & ~(UZ_SLOT_SIZE_MASK | UZ_SLOT_HUGE | UZ_SLOT_IDLE | UZ_SLOT_PRIO_MASK)) |
                  UZ_SLOT_RECOMP | (prio << UZ_SLOT_PRIO_SHIFT) | (uint32_t)len;
    uz_slot_set_flags(s, nf);
    uz_dev_note_mem_used(dev, uz_pool_total_pages(dev->pool));
    return 1;
}

int uz_dev_recompress_locked(struct uz_dev *dev, unsigned pick, uint64_t max_pages,
                             size_t threshold, unsigned prio, uint64_t *done)
{
    if (!dev->table || prio < 1 || prio > UZ_DEV_PRIO_MAX || !dev->sec[prio].comp)
        return -EINVAL;
    bool last = prio == strongest(dev);
    uz_pool_hold(dev->pool); /* the old objects' pages go back together (pool_arena.c) */
    int rc = 0;
    uint64_t tried = 0, replaced = 0;

    /* Count the candidates per bucket, then list them bucket by bucket (a counting sort over a
     * racy peek; each is checked again under its lock). */
    uint64_t count[NR_BUCKETS] = {0}, total = 0;
    for (uint64_t i = 0; i < dev->nr_pages; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        if (candidate(f, pick, prio, threshold)) {
            count[(f & UZ_SLOT_SIZE_MASK) / 64]++;
            total++;
        }
    }
    if (!total)
        goto objects;
    size_t bytes = (size_t)total * sizeof(uint64_t);
    uint64_t *list = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *page = aligned_alloc(UZ_CACHELINE, UZ_PAGE_SIZE);
    if (list == MAP_FAILED || !page) {
        if (list != MAP_FAILED)
            munmap(list, bytes);
        free(page);
        uz_pool_unhold(dev->pool);
        return -ENOMEM;
    }
    uint64_t start[NR_BUCKETS], end[NR_BUCKETS], at = 0; /* largest bucket first */
    for (int b = NR_BUCKETS - 1; b >= 0; b--) {
        start[b] = at;
        at += count[b];
        end[b] = at;
    }
    for (uint64_t i = 0; i < dev->nr_pages; i++) {
        uint32_t f = uz_slot_flags(&dev->table[i]);
        if (!candidate(f, pick, prio, threshold))
            continue;
        unsigned b = (f & UZ_SLOT_SIZE_MASK) / 64;
        if (start[b] < end[b]) /* a bucket that grew since the count keeps its first ones */
            list[start[b]++] = i;
    }
    /* Slots that left a bucket since the count leave its tail unused: compact the list. */
    uint64_t n = 0;
    for (int b = NR_BUCKETS - 1; b >= 0; b--)
        for (uint64_t k = end[b] - count[b]; k < start[b]; k++)
            list[n++] = list[k];
    total = n;

    for (uint64_t k = 0; k < total && !rc; k++) {
        if (max_pages && tried == max_pages)
            break;
        struct uz_slot *s = &dev->table[list[k]];
        uz_slot_lock(s);
        if (candidate(uz_slot_flags(s), pick, prio, threshold)) {
            tried++;
            int r = recompress_slot(dev, s, prio, threshold, last, page);
            if (r > 0)
                replaced++;
            else
                rc = r;
        }
        uz_slot_unlock(s);
    }
    munmap(list, bytes);
    free(page);
objects:
    /* Multi-page objects, per object, after the single pages (dev_multi.c; not sorted by
     * size: an object's pages go together). */
    if (!rc && (!max_pages || tried < max_pages))
        rc = uz_dev_mobj_recompress(dev, pick, max_pages ? max_pages - tried : 0, prio, last,
                                    threshold, &replaced);
    uz_pool_unhold(dev->pool);
    if (replaced)
        uz_pool_compact(dev->pool);
    *done += replaced;
    return rc;
}
