// SPDX-License-Identifier: MIT
/*
 * dev_io.c - the device's I/O paths: slots and their lock, the write and read paths, partial
 * I/O, discard, zeroing and extents.
 *
 * Every slot is a 16-byte uz_slot with a lock bit, so I/O on different slots shares no lock. A
 * full-page write compresses into a stream's worst-case buffer with no lock held but the
 * stream's, allocates exactly the compressed length in the pool, copies exactly that length, and
 * only then locks the slot to swap the new object in and free the old one: a failed write
 * (-ENOSPC, -ENOMEM) leaves the slot untouched. Reads decompress straight from the pool's memory
 * (uz_pool_map) into the caller's page. Partial writes read-modify-write under the slot lock so
 * that concurrent partial writes to one page never lose each other's bytes.
 *
 * The whole device is guarded by a big-reader lock (init_lock): I/O takes its own shard for
 * reading, while reset, disksize and algorithm changes take every shard.
 */
#include "dev_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- slots ---- */

/* Empties a locked slot, freeing its pool object (or leaving its multi-page object). */
void uz_dev_slot_free(struct uz_dev *dev, struct uz_slot *s, uint64_t index)
{
    uint32_t f = uz_slot_flags(s);
    if (f & UZ_SLOT_SAME) {
        uz_counter_add(&dev->st.same_pages, -1);
        uz_counter_add(&dev->st.pages_stored, -1);
    } else if (f & UZ_SLOT_MULTI) {
        uz_dev_mobj_put(dev, s, index); /* frees the object with its last page */
        uz_counter_add(&dev->st.pages_stored, -1);
    } else if (f & UZ_SLOT_ALLOC) {
        uz_pool_free(dev->pool, s->val);
        uz_counter_add(&dev->st.compr_data_size, -(int64_t)(f & UZ_SLOT_SIZE_MASK));
        uz_counter_add(&dev->st.pages_stored, -1);
        if (f & UZ_SLOT_HUGE)
            uz_counter_add(&dev->st.huge_pages, -1);
    } else if (f & UZ_SLOT_WB) {
        uz_dev_wb_free(dev, s); /* punches its space in the store */
        uz_counter_add(&dev->st.pages_stored, -1);
    } else {
        return;
    }
    s->val = 0; /* and every flag, PP included: a writeback in flight sees the slot changed */
    uz_slot_set_flags(s, 0);
}

/* ---- write path ---- */

/* Loads the i-th 8-byte word of a page that need not be aligned (pages come from callers'
 * buffers and pwrite offsets); compiles to a plain load. */
static inline uint64_t page_word(const void *page, size_t i)
{
    uint64_t w;
    memcpy(&w, (const char *)page + i * 8, 8);
    return w;
}

bool uz_dev_page_same_filled(const void *page, uint64_t *fill)
{
    uint64_t v = page_word(page, 0);
    /* The last word first: most pages that are not same-filled differ there already. */
    if (page_word(page, UZ_PAGE_SIZE / 8 - 1) != v)
        return false;
    for (size_t i = 1; i < UZ_PAGE_SIZE / 8 - 1; i++)
        if (page_word(page, i) != v)
            return false;
    *fill = v;
    return true;
}

/* Turns a page into what a slot holds: a fill word, or a pool object. Called with `st` held.
 * On failure nothing is allocated. */
int uz_dev_limit_check(struct uz_dev *dev)
{
    uint64_t used = uz_pool_total_pages(dev->pool);
    uint64_t limit = atomic_load_explicit(&dev->limit_pages, memory_order_relaxed);
    if (limit && used > limit)
        return -ENOSPC;
    uz_dev_note_mem_used(dev, used);
    return 0;
}

int uz_dev_store_page(struct uz_dev *dev, struct uz_dev_stream *st, const void *page,
                      struct uz_dev_stored *out)
{
    uint64_t fill;
    if (uz_dev_page_same_filled(page, &fill)) {
        *out = (struct uz_dev_stored){.flags = UZ_SLOT_SAME, .val = fill};
        return 0;
    }

    /*
     * Invariant 1 (the seed's bug, fixed by construction): compress ONCE, into the stream's
     * buffer sized for the codec's worst case, so compression can never fail for lack of room;
     * then allocate exactly `len` bytes and copy exactly `len` bytes from that buffer. There is
     * no second compression whose result could differ from the first, so even if the caller
     * modifies `page` meanwhile nothing can overrun the object.
     */
    void *buf = uz_comp_stream_buf(st->cs);
    ssize_t len =
        uz_comp_compress(st->cs, page, UZ_PAGE_SIZE, buf, uz_comp_stream_buf_size(st->cs));
    const void *src = buf;
    uint32_t flags = UZ_SLOT_ALLOC;
    if (len < 0 && len != -E2BIG)
        return -EIO;
    if (len < 0 || (size_t)len >= dev->huge_size) {
        /* Does not shrink enough: store the page raw (a fixed 4096 bytes, so no overrun
         * whatever the page holds by now). */
        len = UZ_PAGE_SIZE;
        src = page;
        flags |= UZ_SLOT_HUGE;
    }
    uz_handle_t h;
    int rc = uz_pool_malloc(dev->pool, (size_t)len, &h);
    if (rc)
        return rc;
    if ((rc = uz_dev_limit_check(dev))) {
        uz_pool_free(dev->pool, h);
        return rc;
    }
    uz_pool_write(dev->pool, h, src, (size_t)len); /* exactly len bytes into len bytes */
    *out = (struct uz_dev_stored){.flags = flags, .size = (uint32_t)len, .val = h};
    return 0;
}

/* Puts a stored page into a locked slot, freeing what it held. A MULTI page's object is counted
 * in compr_data_size by its writer, once. */
void uz_dev_slot_commit(struct uz_dev *dev, struct uz_slot *s, uint64_t index,
                        const struct uz_dev_stored *p)
{
    uz_dev_slot_free(dev, s, index);
    s->val = p->val;
    s->atime = uz_dev_now(dev);
    uz_slot_set_flags(s, p->flags | p->size); /* the size lives in the flags word's low bits */
    uz_counter_add(&dev->st.pages_stored, 1);
    if (p->flags & UZ_SLOT_SAME) {
        uz_counter_add(&dev->st.same_pages, 1);
    } else if (!(p->flags & UZ_SLOT_MULTI)) {
        uz_counter_add(&dev->st.compr_data_size, p->size);
        if (p->flags & UZ_SLOT_HUGE) {
            uz_counter_add(&dev->st.huge_pages, 1);
            uz_counter_add(&dev->st.huge_pages_since, 1);
        }
    }
}

/* Full-page write; the caller holds init_lock for reading and has checked the index. */
static int write_page(struct uz_dev *dev, uint64_t index, const void *page)
{
    struct uz_dev_stream *st = uz_dev_stream_get(dev);
    struct uz_dev_stored p;
    int rc = uz_dev_store_page(dev, st, page, &p);
    uz_dev_stream_put(st);
    if (rc) {
        uz_counter_add(&dev->st.failed_writes, 1);
        return rc;
    }
    struct uz_slot *s = &dev->table[index];
    uz_slot_lock(s);
    uz_dev_slot_commit(dev, s, index, &p);
    uz_slot_unlock(s);
    return 0;
}

int uz_dev_write_page_nolock(struct uz_dev *dev, uint64_t index, const void *page)
{
    if (index >= dev->nr_pages)
        return -EINVAL;
    return write_page(dev, index, page);
}

int uz_dev_write_page(struct uz_dev *dev, uint64_t index, const void *page)
{
    if (!dev || !page)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = uz_dev_write_page_nolock(dev, index, page);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

/* ---- read path ---- */

/* Decodes a locked slot into `page`. `held` is a stream of the primary codec the caller holds
 * already (NULL: take one for the decompression). An object made by a secondary codec is
 * decoded with a stream of its own priority, taken after the held one (stream locks are taken
 * in ascending priority: see dev_internal.h). */
int uz_dev_slot_read(struct uz_dev *dev, struct uz_slot *s, uint64_t index, void *page,
                     struct uz_dev_stream *held)
{
    uint32_t f = uz_slot_flags(s);
    if (f & UZ_SLOT_SAME) {
        for (size_t i = 0; i < UZ_PAGE_SIZE / 8; i++)
            memcpy((char *)page + i * 8, &s->val, 8);
        return 0;
    }
    if (f & UZ_SLOT_WB)
        return uz_dev_wb_read(dev, s, page);
    if (!(f & UZ_SLOT_ALLOC)) {
        memset(page, 0, UZ_PAGE_SIZE);
        return 0;
    }
    if (f & UZ_SLOT_MULTI)
        return uz_dev_mobj_read(dev, s, index, page, held);
    const void *obj = uz_pool_map(dev->pool, s->val);
    int rc = uz_dev_decode(dev, f, obj, page, held && !uz_slot_prio(f) ? held : NULL);
    uz_pool_unmap(dev->pool, s->val);
    return rc;
}

int uz_dev_read_page_locked(struct uz_dev *dev, uint64_t index, void *page)
{
    if (index >= dev->nr_pages)
        return -EINVAL;
    struct uz_slot *s = &dev->table[index];
    uz_slot_lock(s);
    int rc = uz_dev_slot_read(dev, s, index, page, NULL);
    if (!rc)
        uz_slot_accessed(dev, s);
    uz_slot_unlock(s);
    if (rc)
        uz_counter_add(&dev->st.failed_reads, 1);
    return rc;
}

int uz_dev_read_page(struct uz_dev *dev, uint64_t index, void *page)
{
    if (!dev || !page)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = uz_dev_read_page_locked(dev, index, page);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

static int slot_state(struct uz_slot *s)
{
    uint32_t f = uz_slot_flags(s);
    if (f & UZ_SLOT_SAME)
        return s->val ? UZ_DEV_PAGE_DATA : UZ_DEV_PAGE_ZERO;
    return (f & (UZ_SLOT_ALLOC | UZ_SLOT_WB)) ? UZ_DEV_PAGE_DATA : UZ_DEV_PAGE_UNWRITTEN;
}

int uz_dev_page_state(struct uz_dev *dev, uint64_t index)
{
    if (!dev)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = -EINVAL;
    if (index < dev->nr_pages) {
        struct uz_slot *s = &dev->table[index];
        uz_slot_lock(s);
        rc = slot_state(s);
        uz_slot_unlock(s);
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

/* ---- byte-granular I/O ---- */

static bool range_ok(const struct uz_dev *dev, uint64_t offset, uint64_t len)
{
    return offset <= dev->disksize && len <= dev->disksize - offset;
}

/* The part of [pos, pos + left) inside pos's page: slot *index, from byte *off. @return : its
 * length. */
static size_t page_span(uint64_t pos, size_t left, uint64_t *index, size_t *off)
{
    *index = pos / UZ_PAGE_SIZE;
    *off = pos % UZ_PAGE_SIZE;
    return UZ_PAGE_SIZE - *off < left ? UZ_PAGE_SIZE - *off : left;
}

/* Read-modify-write of part of one page, atomic with respect to every other access to the
 * slot: the slot stays locked from the read to the commit. */
static int write_partial(struct uz_dev *dev, uint64_t index, const void *buf, size_t off,
                         size_t len)
{
    struct uz_slot *s = &dev->table[index];
    uz_slot_lock(s);
    struct uz_dev_stream *st = uz_dev_stream_get(dev);
    int rc = uz_dev_slot_read(dev, s, index, st->page, st);
    struct uz_dev_stored p;
    if (!rc) {
        memcpy(st->page + off, buf, len);
        rc = uz_dev_store_page(dev, st, st->page, &p);
    }
    uz_dev_stream_put(st);
    if (!rc)
        uz_dev_slot_commit(dev, s, index, &p);
    uz_slot_unlock(s);
    if (rc)
        uz_counter_add(&dev->st.failed_writes, 1);
    return rc;
}

ssize_t uz_dev_pwrite(struct uz_dev *dev, const void *buf, size_t len, uint64_t offset)
{
    if (!dev || (!buf && len) || len > SSIZE_MAX)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    ssize_t rc = range_ok(dev, offset, len) ? 0 : -EINVAL;
    const unsigned char *p = buf;
    size_t done = 0;
    const uint64_t run = dev->object_pages, run_bytes = run * UZ_PAGE_SIZE;
    while (!rc && done < len) {
        uint64_t index;
        size_t off, n = page_span(offset + done, len - done, &index, &off);
        if (run > 1 && !off && index % run == 0 && len - done >= run_bytes &&
            index + run <= dev->nr_pages) {
            /* A whole aligned run: one object (dev_multi.c). */
            const void *pages[UZ_DEV_OBJ_PAGES_MAX];
            for (unsigned k = 0; k < run; k++)
                pages[k] = p + done + (size_t)k * UZ_PAGE_SIZE;
            rc = uz_dev_write_run(dev, index, pages);
            done += run_bytes;
            continue;
        }
        rc = n == UZ_PAGE_SIZE ? write_page(dev, index, p + done)
                               : write_partial(dev, index, p + done, off, n);
        done += n;
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc ? rc : (ssize_t)len;
}

ssize_t uz_dev_pread(struct uz_dev *dev, void *buf, size_t len, uint64_t offset)
{
    if (!dev || (!buf && len) || len > SSIZE_MAX)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    ssize_t rc = range_ok(dev, offset, len) ? 0 : -EINVAL;
    unsigned char *p = buf;
    size_t done = 0;
    while (!rc && done < len) {
        uint64_t index;
        size_t off, n = page_span(offset + done, len - done, &index, &off);
        if (n == UZ_PAGE_SIZE && dev->object_pages > 1 && len - done >= 2 * UZ_PAGE_SIZE) {
            /* Whole pages: each multi-page object among them decoded once. */
            uint64_t pages = (len - done) / UZ_PAGE_SIZE;
            rc = uz_dev_read_pages_locked(dev, index, pages, p + done);
            done += pages * UZ_PAGE_SIZE;
            continue;
        }
        if (n == UZ_PAGE_SIZE) {
            rc = uz_dev_read_page_locked(dev, index, p + done);
        } else {
            unsigned char tmp[UZ_PAGE_SIZE] __attribute__((aligned(16)));
            rc = uz_dev_read_page_locked(dev, index, tmp);
            if (!rc)
                memcpy(p + done, tmp + off, n);
        }
        done += n;
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc ? rc : (ssize_t)len;
}

/* Zeroes whole pages [first, end): holes with trim, zero pages otherwise. */
static void zero_pages(struct uz_dev *dev, uint64_t first, uint64_t end, bool trim)
{
    for (uint64_t i = first; i < end; i++) {
        struct uz_slot *s = &dev->table[i];
        if (trim && !(uz_slot_flags(s) & UZ_SLOT_STORED))
            continue; /* a hole already (racy peek at the atomic flags, rechecked below) */
        uz_slot_lock(s);
        uint32_t f = uz_slot_flags(s);
        if (trim) {
            uz_dev_slot_free(dev, s, i);
        } else if (!(f & UZ_SLOT_SAME) || s->val) {
            struct uz_dev_stored p = {.flags = UZ_SLOT_SAME, .val = 0};
            uz_dev_slot_commit(dev, s, i, &p);
        }
        uz_slot_unlock(s);
    }
}

int uz_dev_discard(struct uz_dev *dev, uint64_t offset, uint64_t len)
{
    if (!dev)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = range_ok(dev, offset, len) ? 0 : -EINVAL;
    if (!rc) {
        /* Only whole pages: discarding is about freeing memory, so a partial page is left as it
         * is rather than recompressed (zram_bio_discard does the same). */
        uint64_t first = UZ_DIV_ROUND_UP(offset, UZ_PAGE_SIZE);
        uint64_t end = (offset + len) / UZ_PAGE_SIZE;
        bool bulk = end > first + 64; /* many frees: their pages go back together */
        if (bulk)
            uz_pool_hold(dev->pool);
        zero_pages(dev, first, end, true);
        if (bulk)
            uz_pool_unhold(dev->pool);
        /* The kernel counts every page of a discarded range, freed or not. */
        if (end > first)
            uz_counter_add(&dev->st.notify_free, (int64_t)(end - first));
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

int uz_dev_zero(struct uz_dev *dev, uint64_t offset, uint64_t len, unsigned flags)
{
    if (!dev || (flags & ~UZ_DEV_ZERO_TRIM))
        return -EINVAL;
    static const unsigned char zeros[UZ_PAGE_SIZE];
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = range_ok(dev, offset, len) ? 0 : -EINVAL;
    uint64_t end = offset + len, pos = offset;
    while (!rc && pos < end) {
        uint64_t index;
        size_t off,
            n = page_span(pos, end - pos > SIZE_MAX ? SIZE_MAX : (size_t)(end - pos), &index, &off);
        if (n < UZ_PAGE_SIZE) {
            rc = write_partial(dev, index, zeros, off, n);
            pos += n;
            continue;
        }
        uint64_t last = end / UZ_PAGE_SIZE; /* whole pages [index, last) */
        zero_pages(dev, index, last, flags & UZ_DEV_ZERO_TRIM);
        pos = last * UZ_PAGE_SIZE;
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

int uz_dev_extents(struct uz_dev *dev, uint64_t offset, uint64_t len, struct uz_dev_extent *ext,
                   size_t max)
{
    if (!dev || !ext || !max)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = range_ok(dev, offset, len) ? 0 : -EINVAL;
    size_t n = 0;
    uint64_t end = offset + len, pos = offset;
    while (!rc && pos < end) {
        uint64_t index = pos / UZ_PAGE_SIZE;
        uint64_t next = (index + 1) * UZ_PAGE_SIZE;
        if (next > end)
            next = end;
        struct uz_slot *s = &dev->table[index];
        int state;
        if (!(atomic_load_explicit(&s->flags, memory_order_relaxed) &
              (UZ_SLOT_STORED | UZ_SLOT_LOCK))) {
            state = UZ_DEV_PAGE_UNWRITTEN; /* the common hole: no lock needed for a snapshot */
        } else {
            uz_slot_lock(s);
            state = slot_state(s);
            uz_slot_unlock(s);
        }
        if (n && ext[n - 1].state == state) {
            ext[n - 1].length += next - pos;
        } else if (n == max) {
            break;
        } else {
            ext[n++] = (struct uz_dev_extent){.offset = pos, .length = next - pos, .state = state};
        }
        pos = next;
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc ? rc : (int)n;
}
