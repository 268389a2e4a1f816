// SPDX-License-Identifier: MIT
/*
 * dev_multi.c - multi-page objects (issue 11): with object_pages = N > 1, a write of a whole
 * aligned run of N pages (uz_dev_pwrite of the range, a worker's run of queued neighbours, an
 * NBD write) is compressed as one object. Beyond the kernel, whose zram stores a page per
 * object: a 16 KiB zstd-1 run compresses about 10-16% smaller and faster per byte than four
 * pages alone.
 *
 * Per page still: same-filled pages of a run are stored as fill words and left out of the
 * object; a run whose object would not come out below (pages in it) x huge_size is stored page by
 * page, each page then raw when it is incompressible on its own. A run with one page left to
 * store stores it alone.
 *
 * An object is `len` compressed bytes of its member pages, in run order, behind a header:
 *
 *   struct mobj_hdr { mask, members, nchunks, len, more[nchunks - 1] }  then the data
 *
 * Objects over 4096 bytes are split over pool objects ("chunks"): the head (header and the first
 * bytes) and then 4096-byte chunks and a tail, so the pool's classes and uz_pool_check() cover
 * them unchanged; a 4096-byte chunk is a pool page of its own and wastes nothing, so the
 * overhead over one object of that size is the header (16 bytes + 8 per further chunk) and the
 * tail's class rounding, as for any page.
 *
 * Slots (dev_internal.h, UZ_SLOT_MULTI): every slot of the run whose page is in the object holds
 * ALLOC | MULTI | the codec's priority and val = the head's handle. `mask` (an atomic in the
 * header) has bit k set while slot first + k still holds its page there. Overwriting or
 * discarding one page clears its bit and costs no recompression; the object is freed by whoever
 * clears the last bit. Live pages == popcount(mask) == the run's MULTI slots with that val.
 *
 * Locking. A reader of slot i holds slot i's lock, and bit i is set while it does, so the object
 * cannot be freed under it. Clearing a bit maps the head, and a head must not be freed while
 * another thread still has it mapped: the clear, the unmap and the free happen under a striped
 * leaf mutex picked by the handle (dev->mobj_locks: under slot locks, above the pool's locks;
 * its holder calls the pool and may sleep). Whoever replaces an object (recompression, repacking)
 * locks every slot of its run, ascending, which shuts out every reader and writer of it. A
 * thread holding several slot locks takes them in ascending index order (uz_dev_write_run,
 * uz_dev_read_pages_locked, recompression): no deadlock.
 *
 * Reading one page decodes only what it needs where the codec can stop early (lz4: up to the
 * page, uz_comp_decompress_prefix()), else the whole object into the stream's run buffer;
 * uz_dev_read_pages_locked() decodes an object once for all its pages in the range (pread,
 * the region's readahead).
 */
#include "dev_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mobj_hdr {
    _Atomic uint32_t mask; /* run positions whose page is live in the object */
    uint16_t members;      /* run positions whose pages the data holds, in run order */
    uint16_t nchunks;      /* pool objects it spans, the head included */
    uint32_t len;          /* compressed bytes, after the header, across the chunks */
    uint32_t id;           /* dev->mobj_ids when made: tells a stream's decoded copy apart */
    uz_handle_t more[];    /* chunks 1 .. nchunks - 1 */
};

#define CHUNK    UZ_PAGE_SIZE /* the pool's largest object */
#define RUN_MAX  UZ_DEV_OBJ_PAGES_MAX
#define RUN_SIZE (RUN_MAX * UZ_PAGE_SIZE)

static size_t hdr_size(unsigned nchunks)
{
    return sizeof(struct mobj_hdr) + (nchunks - 1) * sizeof(uz_handle_t);
}

static unsigned chunks_for(size_t len)
{
    unsigned n = 1;
    while (hdr_size(n) + len > (size_t)n * CHUNK)
        n++;
    return n;
}

static size_t chunk_len(size_t total, unsigned k)
{
    size_t left = total - (size_t)k * CHUNK;
    return left < CHUNK ? left : CHUNK;
}

static pthread_mutex_t *stripe(struct uz_dev *dev, uz_handle_t h)
{
    return &dev->mobj_locks[(h ^ (h >> 17)) % UZ_DEV_MOBJ_LOCKS];
}

static const struct uz_comp *codec_of(const struct uz_dev *dev, unsigned prio)
{
    return prio ? dev->sec[prio].comp : dev->comp;
}

/* ---- stream buffers ---- */

/* The stream's run buffers, allocated at its first run (a device that never sees one never
 * pays for them). The stream is held; its codec is `comp`. @return : 0 or -ENOMEM. */
static int run_bufs(struct uz_dev_stream *st, const struct uz_comp *comp)
{
    if (UZ_LIKELY(st->run))
        return 0;
    size_t bound = uz_comp_bound(comp, RUN_SIZE);
    if (bound < RUN_SIZE + hdr_size(RUN_MAX))
        bound = RUN_SIZE + hdr_size(RUN_MAX);
    bound = UZ_DIV_ROUND_UP(bound, UZ_CACHELINE) * UZ_CACHELINE;
    unsigned char *run = aligned_alloc(UZ_CACHELINE, RUN_SIZE);
    unsigned char *cbuf = aligned_alloc(UZ_CACHELINE, bound);
    if (!run || !cbuf) {
        free(run);
        free(cbuf);
        return -ENOMEM;
    }
    st->run = run;
    st->cbuf = cbuf;
    st->cbuf_size = bound;
    return 0;
}

void uz_dev_stream_run_free(struct uz_dev_stream *st)
{
    free(st->run);
    free(st->cbuf);
    st->run = st->cbuf = NULL;
    st->cbuf_size = 0;
    st->run_head = 0;
}

/* ---- objects ---- */

/* Allocates an object for `len` bytes of `data` holding the pages `members` and copies them
 * in (invariant 1: exactly hdr + len bytes allocated over the chunks, exactly that copied).
 * @return : 0 (*head, *total set) or -ENOSPC / -ENOMEM with nothing allocated. */
static int obj_alloc(struct uz_dev *dev, uint16_t members, const unsigned char *data, size_t len,
                     uz_handle_t *head, uint32_t *total)
{
    unsigned n = chunks_for(len);
    size_t bytes = hdr_size(n) + len;
    uz_handle_t h[RUN_MAX + 2];
    int rc = 0;
    unsigned k, got = 0;
    for (k = 0; k < n && !rc; k++)
        if (!(rc = uz_pool_malloc(dev->pool, chunk_len(bytes, k), &h[k])))
            got++;
    if (!rc)
        rc = uz_dev_limit_check(dev);
    if (rc) {
        for (unsigned j = 0; j < got; j++)
            uz_pool_free(dev->pool, h[j]);
        return rc;
    }
    struct mobj_hdr *hd = uz_pool_map(dev->pool, h[0]);
    atomic_init(&hd->mask, members);
    hd->members = members;
    hd->nchunks = (uint16_t)n;
    hd->len = (uint32_t)len;
    hd->id = atomic_fetch_add_explicit(&dev->mobj_ids, 1, memory_order_relaxed);
    for (k = 1; k < n; k++)
        hd->more[k - 1] = h[k];
    size_t at = chunk_len(bytes, 0) - hdr_size(n);
    memcpy((unsigned char *)hd + hdr_size(n), data, at);
    uz_pool_unmap(dev->pool, h[0]);
    for (k = 1; k < n; k++) {
        size_t l = chunk_len(bytes, k);
        uz_pool_write(dev->pool, h[k], data + at, l);
        at += l;
    }
    *head = h[0];
    *total = (uint32_t)bytes;
    return 0;
}

/* Pool bytes an object really costs: the class sizes of its chunks. */
static size_t obj_cost(const struct uz_dev *dev, size_t len)
{
    unsigned n = chunks_for(len);
    size_t bytes = hdr_size(n) + len, cost = 0;
    for (unsigned k = 0; k < n; k++)
        cost += uz_pool_class_size(dev->pool, chunk_len(bytes, k));
    return cost;
}

/* compr_data_size counts the live share of each object: each page that leaves it takes its
 * share away (the k-th of n members total*(k+1)/n - total*k/n bytes, so that the n shares sum
 * to the total exactly), and mem_used over compr_data_size shows what stale pages cost, which
 * is what sets a region's compaction (and its repacking) off. @return : the bytes still counted
 * for an object of `total` bytes, `nmem` members and `live` pages live. */
static uint64_t live_share(uint64_t total, unsigned nmem, unsigned live)
{
    return total - total * (nmem - live) / nmem;
}

/* Frees an object nobody maps or points to any more (its bytes already uncounted). */
static void obj_free(struct uz_dev *dev, uz_handle_t head)
{
    uz_handle_t more[RUN_MAX + 1];
    struct mobj_hdr *hd = uz_pool_map(dev->pool, head);
    unsigned n = hd->nchunks;
    memcpy(more, hd->more, (n - 1) * sizeof(uz_handle_t));
    uz_pool_unmap(dev->pool, head);
    uz_pool_free(dev->pool, head);
    for (unsigned k = 1; k < n; k++)
        uz_pool_free(dev->pool, more[k - 1]);
}

void uz_dev_mobj_put(struct uz_dev *dev, struct uz_slot *s, uint64_t index)
{
    uz_handle_t h = s->val;
    uint32_t bit = 1u << (index % dev->object_pages);
    pthread_mutex_t *m = stripe(dev, h);
    pthread_mutex_lock(m);
    struct mobj_hdr *hd = uz_pool_map(dev->pool, h);
    uint32_t old = atomic_fetch_and_explicit(&hd->mask, ~bit, memory_order_acq_rel);
    unsigned nmem = (unsigned)__builtin_popcount(hd->members),
             live = (unsigned)__builtin_popcount(old);
    uint64_t total = hdr_size(hd->nchunks) + hd->len;
    uz_pool_unmap(dev->pool, h);
    uz_counter_add(&dev->st.compr_data_size,
                   -(int64_t)(live_share(total, nmem, live) - live_share(total, nmem, live - 1)));
    if (old == bit)
        obj_free(dev, h); /* the last page: no other thread can map it now (see the top) */
    pthread_mutex_unlock(m);
}

/* Decodes at least the first `want` member pages of the object at `head` into st->run, unless
 * st->run holds them already (the same handle and id: the same object, alive since the caller
 * holds one of its pages). Asked again for more of the object it holds, it decodes all of it.
 * *members gets its member mask. @return : 0, -EIO (corrupt), -ENOMEM (no run buffers). */
static int obj_decode(struct uz_dev *dev, struct uz_dev_stream *st, unsigned prio, uz_handle_t head,
                      unsigned want, uint16_t *members)
{
    int rc = run_bufs(st, codec_of(dev, prio));
    if (rc)
        return rc;
    struct mobj_hdr *hd = uz_pool_map(dev->pool, head);
    unsigned n = hd->nchunks, count = (unsigned)__builtin_popcount(hd->members);
    size_t len = hd->len, bytes = hdr_size(n) + len;
    *members = hd->members;
    if (st->run_head == head && st->run_id == hd->id) {
        if (st->run_pages >= want) {
            uz_pool_unmap(dev->pool, head);
            return 0;
        }
        want = count; /* read on through the object: all of it at once */
    }
    st->run_head = 0;
    const unsigned char *src = (const unsigned char *)hd + hdr_size(n);
    if (n > 1) {
        /* Put the chunks together (a copy of compressed bytes: a fraction of the decode). */
        size_t at = chunk_len(bytes, 0) - hdr_size(n);
        memcpy(st->cbuf, src, at);
        for (unsigned k = 1; k < n && !rc; k++) {
            size_t l = chunk_len(bytes, k);
            rc = uz_pool_read(dev->pool, hd->more[k - 1], st->cbuf + at, l);
            at += l;
        }
        src = st->cbuf;
    }
    ssize_t got = -EBADMSG;
    if (!rc && count && want <= count && len <= st->cbuf_size)
        got = uz_comp_decompress_prefix(st->cs, src, len, st->run, (size_t)want * UZ_PAGE_SIZE,
                                        (size_t)count * UZ_PAGE_SIZE);
    if (got >= 0) {
        st->run_head = head;
        st->run_id = hd->id;
        st->run_pages =
            (size_t)got / UZ_PAGE_SIZE < count ? (unsigned)((size_t)got / UZ_PAGE_SIZE) : count;
    }
    uz_pool_unmap(dev->pool, head);
    return got < 0 ? -EIO : 0;
}

/* The member mask of the object at `head` (held alive by the caller). */
static uint16_t obj_members(struct uz_dev *dev, uz_handle_t head)
{
    struct mobj_hdr *hd = uz_pool_map(dev->pool, head);
    uint16_t members = hd->members;
    uz_pool_unmap(dev->pool, head);
    return members;
}

/* The page of run position `pos` among `members`: its place in the decoded data. */
static unsigned order_of(uint16_t members, unsigned pos)
{
    return (unsigned)__builtin_popcount(members & ((1u << pos) - 1));
}

int uz_dev_mobj_read(struct uz_dev *dev, struct uz_slot *s, uint64_t index, void *page,
                     struct uz_dev_stream *held)
{
    uint32_t f = uz_slot_flags(s);
    unsigned prio = uz_slot_prio(f), pos = (unsigned)(index % dev->object_pages);
    /* Stream order: a held stream is of priority 0, so a secondary's is taken after it. */
    struct uz_dev_stream *st = held && !prio ? held : uz_dev_prio_stream_get(dev, prio);
    if (!st)
        return -EIO;
    /* The members are known only from the header: peek at them to ask for just enough. */
    uint16_t members = obj_members(dev, s->val);
    int rc = (members >> pos) & 1 ? 0 : -EIO;
    unsigned order = order_of(members, pos);
    if (!rc)
        /* The first page asks for all of it (reading an object from its start is mostly
         * reading through it: one decode); a page further in for what it needs. */
        rc = obj_decode(dev, st, prio, s->val,
                        order ? order + 1 : (unsigned)__builtin_popcount(members), &members);
    if (!rc)
        memcpy(page, st->run + (size_t)order * UZ_PAGE_SIZE, UZ_PAGE_SIZE);
    if (st != held)
        uz_dev_stream_put(st);
    return rc;
}

/* ---- the write of a run ---- */

/* A stored page that is not committed: give back what it holds. */
static void stored_drop(struct uz_dev *dev, const struct uz_dev_stored *p)
{
    if ((p->flags & UZ_SLOT_ALLOC) && !(p->flags & UZ_SLOT_MULTI))
        uz_pool_free(dev->pool, p->val);
}

/* What the run's pages become, with `st` held: out[k] for every page, and the object's bytes in
 * *total (0: no object). On failure nothing is allocated. */
static int store_run(struct uz_dev *dev, struct uz_dev_stream *st, const void *const *pages,
                     struct uz_dev_stored *out, uint32_t *total)
{
    const unsigned n = dev->object_pages;
    uint16_t members = 0;
    *total = 0;
    int rc = 0;
    for (unsigned k = 0; k < n; k++) {
        /* Same-filled pages are found per page and stored as fill words, outside the object. */
        uint64_t fill;
        if (uz_dev_page_same_filled(pages[k], &fill))
            out[k] = (struct uz_dev_stored){.flags = UZ_SLOT_SAME, .val = fill};
        else
            members |= (uint16_t)(1u << k);
    }
    unsigned count = (unsigned)__builtin_popcount(members);
    unsigned char *src = NULL;
    ssize_t len = -E2BIG;
    if (count > 1 && !run_bufs(st, dev->comp)) {
        /* Gathered into the stream first: the codec reads a private copy, so a caller's page
         * that changes meanwhile cannot make it emit a stream that does not decode, and the
         * pages fall back from here if the run does not compress. */
        unsigned j = 0;
        st->run_head = 0; /* no longer a decoded object */
        for (unsigned k = 0; k < n; k++)
            if (members >> k & 1)
                memcpy(st->run + (size_t)j++ * UZ_PAGE_SIZE, pages[k], UZ_PAGE_SIZE);
        src = st->run;
        /* Invariant 1: once, into the stream's worst-case buffer for the whole run. */
        len = uz_comp_compress(st->cs, st->run, (size_t)count * UZ_PAGE_SIZE, st->cbuf,
                               st->cbuf_size);
        if (len < 0 && len != -E2BIG)
            return -EIO;
    }
    if (len > 0 && (size_t)len < (size_t)count * dev->huge_size) {
        uz_handle_t head;
        rc = obj_alloc(dev, members, st->cbuf, (size_t)len, &head, total);
        if (!rc)
            for (unsigned k = 0; k < n; k++)
                if (members >> k & 1)
                    out[k] =
                        (struct uz_dev_stored){.flags = UZ_SLOT_ALLOC | UZ_SLOT_MULTI, .val = head};
    } else {
        /* One page left, no run buffers, or a run that does not compress: page by page. */
        unsigned j = 0;
        for (unsigned k = 0; k < n && !rc; k++) {
            if (!(members >> k & 1))
                continue;
            const void *pg = src ? src + (size_t)j++ * UZ_PAGE_SIZE : pages[k];
            rc = uz_dev_store_page(dev, st, pg, &out[k]); /* nothing stored on failure */
        }
    }
    if (rc) /* the pages stored before the one that failed */
        for (unsigned k = 0; k < n; k++)
            stored_drop(dev, &out[k]);
    return rc;
}

int uz_dev_write_run(struct uz_dev *dev, uint64_t first, const void *const *pages)
{
    const unsigned n = dev->object_pages;
    if (first % n || first + n > dev->nr_pages)
        return -EINVAL;
    struct uz_dev_stored p[RUN_MAX];
    memset(p, 0, sizeof(p));
    uint32_t total;
    struct uz_dev_stream *st = uz_dev_stream_get(dev);
    int rc = store_run(dev, st, pages, p, &total);
    uz_dev_stream_put(st);
    if (rc) {
        uz_counter_add(&dev->st.failed_writes, 1);
        return rc; /* no slot changed: the old pages all read back */
    }
    for (unsigned k = 0; k < n; k++) /* ascending: see the top */
        uz_slot_lock(&dev->table[first + k]);
    for (unsigned k = 0; k < n; k++)
        uz_dev_slot_commit(dev, &dev->table[first + k], first + k, &p[k]);
    if (total)
        uz_counter_add(&dev->st.compr_data_size, total);
    for (unsigned k = n; k-- > 0;)
        uz_slot_unlock(&dev->table[first + k]);
    return 0;
}

/* ---- reads of many pages ---- */

int uz_dev_read_pages_locked(struct uz_dev *dev, uint64_t first, uint64_t n, void *buf)
{
    unsigned char *out = buf;
    int rc = 0;
    for (uint64_t i = first; i < first + n && !rc;) {
        struct uz_slot *s = &dev->table[i];
        uint32_t f = uz_slot_flags(s); /* a racy peek picks the path; each path rechecks */
        if (f & UZ_SLOT_MULTI) {
            uz_slot_lock(s);
            f = uz_slot_flags(s);
            if (!(f & UZ_SLOT_MULTI))
                uz_slot_unlock(s);
        }
        if (!(f & UZ_SLOT_MULTI)) {
            /* A page alone: the read of one page (which counts its own failure). */
            rc = uz_dev_read_page_locked(dev, i, out + (i - first) * UZ_PAGE_SIZE);
            i++;
            continue;
        }
        unsigned prio = uz_slot_prio(f);
        struct uz_dev_stream *st = uz_dev_prio_stream_get(dev, prio);
        uint16_t members = obj_members(dev, s->val);
        rc = st ? obj_decode(dev, st, prio, s->val, (unsigned)__builtin_popcount(members), &members)
                : -EIO;
        uint64_t base = i - i % dev->object_pages, j = i;
        if (!rc) {
            /* Slot i and the following slots of the run that hold pages of the same object
             * (locked ascending; slot i's bit keeps the object alive). */
            for (; j < base + dev->object_pages && j < first + n; j++) {
                struct uz_slot *t = &dev->table[j];
                if (j > i)
                    uz_slot_lock(t);
                uint32_t g = uz_slot_flags(t);
                bool same = (g & UZ_SLOT_MULTI) && t->val == s->val && (members >> (j - base) & 1);
                if (same) {
                    memcpy(out + (j - first) * UZ_PAGE_SIZE,
                           st->run + (size_t)order_of(members, (unsigned)(j - base)) * UZ_PAGE_SIZE,
                           UZ_PAGE_SIZE);
                    uz_slot_accessed(dev, t);
                }
                if (j > i)
                    uz_slot_unlock(t);
                if (!same)
                    break;
            }
        }
        if (st)
            uz_dev_stream_put(st);
        uz_slot_unlock(s);
        if (rc)
            uz_counter_add(&dev->st.failed_reads, 1);
        i = j > i ? j : i + 1;
    }
    return rc;
}

/* ---- recompression and repacking ---- */

/* Whether a live page of an object may be replaced: `f` its flags. */
static bool page_pick(uint32_t f, unsigned pick)
{
    if (f & (UZ_SLOT_PP | UZ_SLOT_INCOMP))
        return false;
    if ((pick & UZ_DEV_PICK_IDLE) && !(f & UZ_SLOT_IDLE))
        return false;
    return !(pick & UZ_DEV_PICK_HUGE); /* an object is never huge */
}

/* With the whole run at `base` locked: replaces its object (the first MULTI slot's) by one of
 * its live pages compressed with the codec of priority `target` (recompression) or its own
 * (target 0: repacking one at most half live). @return : pages replaced, 0, or -errno. */
static int replace_obj(struct uz_dev *dev, uint64_t base, unsigned pick, unsigned target, bool last,
                       size_t threshold, unsigned char *pages)
{
    const unsigned n = dev->object_pages;
    uz_handle_t head = 0;
    uint32_t f0 = 0;
    for (unsigned k = 0; k < n && !head; k++) {
        uint32_t f = uz_slot_flags(&dev->table[base + k]);
        if (f & UZ_SLOT_MULTI) {
            head = dev->table[base + k].val;
            f0 = f;
        }
    }
    if (!head)
        return 0;
    struct mobj_hdr *hd = uz_pool_map(dev->pool, head);
    uint16_t members = hd->members, live = (uint16_t)atomic_load(&hd->mask);
    size_t old_len = hd->len;
    uint64_t old_total = hdr_size(hd->nchunks) + hd->len;
    uz_pool_unmap(dev->pool, head);
    unsigned prio = uz_slot_prio(f0), count = (unsigned)__builtin_popcount(live);
    unsigned nmem = (unsigned)__builtin_popcount(members);
    for (unsigned k = 0; k < n; k++)
        if ((live >> k & 1) && !page_pick(uz_slot_flags(&dev->table[base + k]), pick))
            return 0;
    if (target ? prio >= target || old_len / nmem < threshold : count * 2 > nmem)
        return 0;
    unsigned codec = target ? target : prio;

    /* Decode the old object, keep its live pages in order. */
    struct uz_dev_stream *st = uz_dev_prio_stream_get(dev, prio);
    uint16_t m;
    int rc = st ? obj_decode(dev, st, prio, head, nmem, &m) : -EIO;
    if (!rc) {
        unsigned j = 0;
        for (unsigned k = 0; k < n; k++)
            if (live >> k & 1)
                memcpy(pages + (size_t)j++ * UZ_PAGE_SIZE,
                       st->run + (size_t)order_of(members, k) * UZ_PAGE_SIZE, UZ_PAGE_SIZE);
    }
    if (st)
        uz_dev_stream_put(st); /* put back before the target's is taken: one stream at a time */
    if (rc)
        return rc;

    st = uz_dev_prio_stream_get(dev, codec);
    if (!st)
        return -EIO;
    struct uz_dev_stored single = {0};
    uz_handle_t nh = 0;
    uint32_t total = 0;
    size_t new_cost = 0, old_cost = obj_cost(dev, old_len);
    if (count == 1) {
        /* One live page: an object of its own. */
        rc = uz_dev_store_page(dev, st, pages, &single);
        if (!rc && (single.flags & UZ_SLOT_ALLOC) && !(single.flags & UZ_SLOT_HUGE))
            single.flags |= codec << UZ_SLOT_PRIO_SHIFT;
    } else if (!(rc = run_bufs(st, codec_of(dev, codec)))) {
        ssize_t len =
            uz_comp_compress(st->cs, pages, (size_t)count * UZ_PAGE_SIZE, st->cbuf, st->cbuf_size);
        if (len < 0 && len != -E2BIG)
            rc = -EIO;
        else if (len > 0 && (new_cost = obj_cost(dev, (size_t)len)) < old_cost)
            rc = obj_alloc(dev, live, st->cbuf, (size_t)len, &nh, &total);
        else
            rc = 1; /* does not shrink */
    }
    uz_dev_stream_put(st);
    if (rc == 1) {
        if (target && last)
            for (unsigned k = 0; k < n; k++)
                if (live >> k & 1)
                    uz_slot_set_flags(&dev->table[base + k],
                                      uz_slot_flags(&dev->table[base + k]) | UZ_SLOT_INCOMP);
        return 0;
    }
    if (rc)
        return rc; /* the old object stays: nothing is lost */

    /* Every slot of the run is ours: nobody maps the old object any more. */
    for (unsigned k = 0; k < n; k++) {
        struct uz_slot *s = &dev->table[base + k];
        if (!(live >> k & 1))
            continue;
        uint32_t f = uz_slot_flags(s);
        uint32_t keep = f & ~(UZ_SLOT_PRIO_MASK | UZ_SLOT_IDLE | UZ_SLOT_SIZE_MASK | UZ_SLOT_MULTI |
                              UZ_SLOT_HUGE | UZ_SLOT_RECOMP);
        if (target)
            keep |= UZ_SLOT_RECOMP;
        else
            keep |= f & (UZ_SLOT_IDLE | UZ_SLOT_RECOMP); /* a repack is not an access */
        if (count == 1) {
            s->val = single.val;
            if (single.flags & UZ_SLOT_SAME) { /* cannot be: a member was not same-filled */
                keep &= ~UZ_SLOT_ALLOC;
            }
            uz_slot_set_flags(s, keep | single.flags | single.size);
            uz_counter_add(&dev->st.compr_data_size, single.size);
            if (single.flags & UZ_SLOT_HUGE) {
                uz_counter_add(&dev->st.huge_pages, 1);
                uz_counter_add(&dev->st.huge_pages_since, 1);
            }
        } else {
            s->val = nh;
            uz_slot_set_flags(s,
                              keep | UZ_SLOT_ALLOC | UZ_SLOT_MULTI | (codec << UZ_SLOT_PRIO_SHIFT));
        }
    }
    uz_counter_add(&dev->st.compr_data_size, -(int64_t)live_share(old_total, nmem, count));
    obj_free(dev, head);
    if (total)
        uz_counter_add(&dev->st.compr_data_size, total);
    uz_dev_note_mem_used(dev, uz_pool_total_pages(dev->pool));
    return (int)count;
}

int uz_dev_mobj_recompress(struct uz_dev *dev, unsigned pick, uint64_t max_pages, unsigned prio,
                           bool last, size_t threshold, uint64_t *done)
{
    const unsigned n = dev->object_pages;
    if (n < 2 || !dev->table)
        return 0;
    unsigned char *pages = aligned_alloc(UZ_CACHELINE, RUN_SIZE);
    if (!pages)
        return -ENOMEM;
    int rc = 0;
    uint64_t tried = 0;
    for (uint64_t base = 0; base + n <= dev->nr_pages && !rc; base += n) {
        if (max_pages && tried >= max_pages)
            break;
        bool any = false; /* racy peek, rechecked under the locks */
        for (unsigned k = 0; k < n && !any; k++)
            any = uz_slot_flags(&dev->table[base + k]) & UZ_SLOT_MULTI;
        if (!any)
            continue;
        for (unsigned k = 0; k < n; k++)
            uz_slot_lock(&dev->table[base + k]);
        int r = replace_obj(dev, base, pick, prio, last, threshold, pages);
        for (unsigned k = n; k-- > 0;)
            uz_slot_unlock(&dev->table[base + k]);
        if (r < 0)
            rc = r;
        else if (r > 0) {
            tried += (uint64_t)r;
            *done += (uint64_t)r;
        }
    }
    free(pages);
    return rc;
}

/* ---- the invariant, for tests ---- */

int uz_dev_mobj_check(struct uz_dev *dev)
{
    const unsigned n = dev->object_pages;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = 0;
    for (uint64_t base = 0; n > 1 && dev->table && base + n <= dev->nr_pages && !rc; base += n) {
        for (unsigned k = 0; k < n; k++)
            uz_slot_lock(&dev->table[base + k]);
        for (unsigned k = 0; k < n && !rc; k++) {
            const struct uz_slot *s = &dev->table[base + k];
            uint32_t f = uz_slot_flags(s);
            if (!(f & UZ_SLOT_MULTI))
                continue;
            if (!(f & UZ_SLOT_ALLOC) || (f & (UZ_SLOT_SAME | UZ_SLOT_WB | UZ_SLOT_HUGE)) ||
                (f & UZ_SLOT_SIZE_MASK)) {
                rc = -EUCLEAN;
                break;
            }
            uint32_t slots = 0; /* the run's slots that point to this object */
            for (unsigned j = 0; j < n; j++)
                if ((uz_slot_flags(&dev->table[base + j]) & UZ_SLOT_MULTI) &&
                    dev->table[base + j].val == s->val)
                    slots |= 1u << j;
            struct mobj_hdr *hd = uz_pool_map(dev->pool, s->val);
            uint32_t mask = atomic_load(&hd->mask);
            bool ok = mask == slots && (mask & ~(uint32_t)hd->members) == 0 &&
                      hd->nchunks == chunks_for(hd->len) && hd->len > 0;
            uz_pool_unmap(dev->pool, s->val);
            if (!ok)
                rc = -EUCLEAN;
        }
        for (unsigned k = n; k-- > 0;)
            uz_slot_unlock(&dev->table[base + k]);
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}
