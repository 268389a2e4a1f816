// SPDX-License-Identifier: MIT
/*
 * dev.c - the compressed page device: slots, the write and read paths, partial I/O, discard.
 *
 * Every slot is a 16-byte uz_slot with a lock bit, so I/O on different slots never shares a
 * lock. A full-page write compresses into a stream's worst-case buffer with no lock held but the
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- slots ---- */

static inline void slot_lock(struct uz_slot *s)
{
    unsigned spins = 0;
    for (;;) {
        uint32_t f = atomic_load_explicit(&s->flags, memory_order_relaxed);
        if (!(f & UZ_SLOT_LOCK) &&
            atomic_compare_exchange_weak_explicit(&s->flags, &f, f | UZ_SLOT_LOCK,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
        uz_backoff(&spins);
    }
}

static inline void slot_unlock(struct uz_slot *s)
{
    atomic_fetch_and_explicit(&s->flags, ~UZ_SLOT_LOCK, memory_order_release);
}

static inline uint32_t slot_flags(const struct uz_slot *s)
{
    return atomic_load_explicit(&s->flags, memory_order_relaxed);
}

static inline void slot_set_flags(struct uz_slot *s, uint32_t flags)
{
    /* The lock bit stays set: only slot_unlock() clears it. */
    atomic_store_explicit(&s->flags, flags | UZ_SLOT_LOCK, memory_order_relaxed);
}

/* Empties a locked slot, freeing its pool object. */
static void slot_free(struct uz_dev *dev, struct uz_slot *s)
{
    uint32_t f = slot_flags(s);
    if (f & UZ_SLOT_SAME) {
        uz_counter_add(&dev->st.same_pages, -1);
        uz_counter_add(&dev->st.pages_stored, -1);
    } else if (f & UZ_SLOT_ALLOC) {
        uz_pool_free(dev->pool, s->val);
        uz_counter_add(&dev->st.compr_data_size, -(int64_t)s->size);
        uz_counter_add(&dev->st.pages_stored, -1);
        if (f & UZ_SLOT_HUGE)
            uz_counter_add(&dev->st.huge_pages, -1);
    } else {
        return;
    }
    s->val = 0;
    s->size = 0;
    slot_set_flags(s, 0);
}

/* ---- streams ---- */

static struct uz_dev_stream *stream_get(struct uz_dev *dev)
{
    unsigned n = dev->nstreams, first = uz_thread_slot() % n;
    for (unsigned i = 0; i < n; i++) {
        struct uz_dev_stream *st = &dev->streams[(first + i) % n];
        if (pthread_mutex_trylock(&st->lock) == 0)
            return st;
    }
    struct uz_dev_stream *st = &dev->streams[first];
    pthread_mutex_lock(&st->lock);
    return st;
}

static void stream_put(struct uz_dev_stream *st)
{
    pthread_mutex_unlock(&st->lock);
}

static void streams_free(struct uz_dev *dev)
{
    for (unsigned i = 0; i < dev->nstreams; i++) {
        uz_comp_stream_destroy(dev->streams[i].cs);
        free(dev->streams[i].page);
        pthread_mutex_destroy(&dev->streams[i].lock);
    }
    free(dev->streams);
    dev->streams = NULL;
    dev->nstreams = 0;
}

static int streams_alloc(struct uz_dev *dev, struct uz_comp *comp, struct uz_dev_stream **out,
                         unsigned n)
{
    struct uz_dev_stream *v = aligned_alloc(UZ_CACHELINE, sizeof(*v) * n);
    if (!v)
        return -ENOMEM;
    memset(v, 0, sizeof(*v) * n);
    unsigned i;
    int rc = 0;
    for (i = 0; i < n; i++) {
        pthread_mutex_init(&v[i].lock, NULL);
        v[i].page = aligned_alloc(UZ_CACHELINE, UZ_PAGE_SIZE);
        rc = v[i].page ? uz_comp_stream_create(comp, &v[i].cs) : -ENOMEM;
        if (rc) {
            i++;
            break;
        }
    }
    if (rc) {
        while (i--) {
            uz_comp_stream_destroy(v[i].cs);
            free(v[i].page);
            pthread_mutex_destroy(&v[i].lock);
        }
        free(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* Replaces the codec (and its streams). Caller holds init_lock for writing, or is creating. */
int uz_dev_set_codec(struct uz_dev *dev, const char *algorithm, int level, const char *dict_path)
{
    struct uz_comp *comp;
    int rc = uz_comp_create(algorithm, level, &comp);
    if (rc)
        return rc;
    if (dict_path && *dict_path && (rc = uz_comp_load_dict(comp, dict_path))) {
        uz_comp_destroy(comp);
        return rc;
    }
    char *dict_copy = NULL;
    if (dict_path && *dict_path && !(dict_copy = strdup(dict_path))) {
        uz_comp_destroy(comp);
        return -ENOMEM;
    }
    /* One stream per CPU plus one per worker, so a thread almost never waits for one. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = (unsigned)(cpus > 0 ? cpus : 1) * 2 + dev->nworkers;
    struct uz_dev_stream *streams;
    if ((rc = streams_alloc(dev, comp, &streams, n))) {
        free(dict_copy);
        uz_comp_destroy(comp);
        return rc;
    }
    streams_free(dev);
    uz_comp_destroy(dev->comp);
    free(dev->dict_path);
    dev->comp = comp;
    dev->streams = streams;
    dev->nstreams = n;
    dev->dict_path = dict_copy;
    snprintf(dev->algorithm, sizeof(dev->algorithm), "%s", uz_comp_name(comp));
    return 0;
}

/* ---- storage (table + pool) ---- */

int uz_dev_init_storage(struct uz_dev *dev, uint64_t disksize)
{
    uint64_t nr_pages = disksize / UZ_PAGE_SIZE;
    if (!nr_pages || disksize % UZ_PAGE_SIZE || nr_pages > (SIZE_MAX / sizeof(struct uz_slot)))
        return -EINVAL;
    size_t bytes = (size_t)nr_pages * sizeof(struct uz_slot);
    /* Untouched slots cost no memory: the table is mapped lazily, like zram's vmalloc'd one. */
    void *t = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (t == MAP_FAILED)
        return -ENOMEM;
    struct uz_pool *pool;
    int rc = uz_pool_create(&pool);
    if (rc) {
        munmap(t, bytes);
        return rc;
    }
    /* The pool's prefault thread (uz_pool_prefault()) stays off: on the project's 2-core VM it
     * moved page faults off the writer but gained no wall-clock time (the writer often spins on
     * the class lock the thread holds while it faults the page in) and cost CPU and memory. */
    dev->table = t;
    dev->table_bytes = bytes;
    dev->pool = pool;
    dev->huge_size = uz_pool_huge_size(pool);
    dev->nr_pages = nr_pages;
    dev->disksize = disksize;
    atomic_store(&dev->max_used_pages, 0);
    return 0;
}

void uz_dev_free_storage(struct uz_dev *dev)
{
    /* The pool goes as a whole: no need to free slot by slot. */
    uz_pool_destroy(dev->pool);
    if (dev->table)
        munmap(dev->table, dev->table_bytes);
    dev->pool = NULL;
    dev->table = NULL;
    dev->table_bytes = 0;
    dev->nr_pages = 0;
    dev->disksize = 0;
    struct uz_dev_counters *st = &dev->st;
    struct uz_counter *all[] = {&st->pages_stored,  &st->compr_data_size,  &st->same_pages,
                                &st->huge_pages,    &st->huge_pages_since, &st->failed_reads,
                                &st->failed_writes, &st->notify_free,      &st->miss_free};
    for (size_t i = 0; i < UZ_ARRAY_SIZE(all); i++)
        uz_counter_reset(all[i]);
    atomic_store(&dev->max_used_pages, 0);
}

bool uz_dev_is_empty(struct uz_dev *dev)
{
    return uz_counter_read(&dev->st.pages_stored) == 0;
}

/* ---- create / destroy ---- */

int uz_dev_create(const struct uz_dev_config *cfg, struct uz_dev **out)
{
    if (!cfg || !out || !cfg->disksize || cfg->disksize % UZ_PAGE_SIZE)
        return -EINVAL;
    struct uz_dev *dev = aligned_alloc(UZ_CACHELINE, sizeof(*dev));
    if (!dev)
        return -ENOMEM;
    memset(dev, 0, sizeof(*dev));
    int rc = uz_brlock_init(&dev->init_lock);
    if (rc) {
        free(dev);
        return rc;
    }
    dev->nworkers = cfg->workers;
    atomic_store(&dev->limit_pages, UZ_DIV_ROUND_UP(cfg->mem_limit, UZ_PAGE_SIZE));
    if ((rc = uz_dev_set_codec(dev, cfg->algorithm, cfg->level, NULL)) ||
        (rc = uz_dev_init_storage(dev, cfg->disksize)) ||
        (rc = uz_dev_queue_start(dev, cfg->workers))) {
        uz_dev_free_storage(dev);
        streams_free(dev);
        uz_comp_destroy(dev->comp);
        uz_brlock_destroy(&dev->init_lock);
        free(dev);
        return rc;
    }
    *out = dev;
    return 0;
}

void uz_dev_destroy(struct uz_dev *dev)
{
    if (!dev)
        return;
    uz_dev_queue_stop(dev);
    uz_dev_free_storage(dev);
    streams_free(dev);
    uz_comp_destroy(dev->comp);
    free(dev->dict_path);
    uz_brlock_destroy(&dev->init_lock);
    free(dev);
}

bool uz_dev_stable_writes(const struct uz_dev *dev)
{
    /* Invariant 2 of the design: async writes read the caller's page after the call returned
     * exactly when there are workers, so that is when every user must keep pages stable. */
    return dev->nworkers > 0;
}

uint64_t uz_dev_disksize(const struct uz_dev *dev)
{
    return dev->disksize;
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

static bool page_same_filled(const void *page, uint64_t *fill)
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

void uz_dev_note_mem_used(struct uz_dev *dev, uint64_t used)
{
    uint64_t max = atomic_load_explicit(&dev->max_used_pages, memory_order_relaxed);
    while (used > max &&
           !atomic_compare_exchange_weak_explicit(&dev->max_used_pages, &max, used,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

struct stored {
    uint32_t flags; /* SAME, or ALLOC [| HUGE] */
    uint32_t size;
    uint64_t val;
};

/* Turns a page into what a slot holds: a fill word, or a pool object. Called with `st` held.
 * On failure nothing is allocated. */
static int store_page(struct uz_dev *dev, struct uz_dev_stream *st, const void *page,
                      struct stored *out)
{
    uint64_t fill;
    if (page_same_filled(page, &fill)) {
        *out = (struct stored){.flags = UZ_SLOT_SAME, .val = fill};
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
    uint64_t used = uz_pool_total_pages(dev->pool);
    uint64_t limit = atomic_load_explicit(&dev->limit_pages, memory_order_relaxed);
    if (limit && used > limit) {
        uz_pool_free(dev->pool, h);
        return -ENOSPC;
    }
    uz_dev_note_mem_used(dev, used);
    uz_pool_write(dev->pool, h, src, (size_t)len); /* exactly len bytes into len bytes */
    *out = (struct stored){.flags = flags, .size = (uint32_t)len, .val = h};
    return 0;
}

/* Puts a stored page into a locked slot, freeing what it held. */
static void slot_commit(struct uz_dev *dev, struct uz_slot *s, const struct stored *p)
{
    slot_free(dev, s);
    s->val = p->val;
    s->size = p->size;
    slot_set_flags(s, p->flags);
    uz_counter_add(&dev->st.pages_stored, 1);
    if (p->flags & UZ_SLOT_SAME) {
        uz_counter_add(&dev->st.same_pages, 1);
    } else {
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
    struct uz_dev_stream *st = stream_get(dev);
    struct stored p;
    int rc = store_page(dev, st, page, &p);
    stream_put(st);
    if (rc) {
        uz_counter_add(&dev->st.failed_writes, 1);
        return rc;
    }
    struct uz_slot *s = &dev->table[index];
    slot_lock(s);
    slot_commit(dev, s, &p);
    slot_unlock(s);
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

/* Decodes a locked slot into `page`. `held` is a stream the caller holds already (NULL: take
 * one for the decompression): a thread never waits for a second stream while holding one. */
static int slot_read(struct uz_dev *dev, struct uz_slot *s, void *page, struct uz_dev_stream *held)
{
    uint32_t f = slot_flags(s);
    if (f & UZ_SLOT_SAME) {
        for (size_t i = 0; i < UZ_PAGE_SIZE / 8; i++)
            memcpy((char *)page + i * 8, &s->val, 8);
        return 0;
    }
    if (!(f & UZ_SLOT_ALLOC)) {
        memset(page, 0, UZ_PAGE_SIZE);
        return 0;
    }
    const void *obj = uz_pool_map(dev->pool, s->val);
    int rc = 0;
    if (f & UZ_SLOT_HUGE) {
        memcpy(page, obj, UZ_PAGE_SIZE);
    } else {
        struct uz_dev_stream *st = held ? held : stream_get(dev);
        ssize_t n = uz_comp_decompress(st->cs, obj, s->size, page, UZ_PAGE_SIZE);
        if (!held)
            stream_put(st);
        if (n != UZ_PAGE_SIZE)
            rc = -EIO;
    }
    uz_pool_unmap(dev->pool, s->val);
    return rc;
}

static int read_page(struct uz_dev *dev, uint64_t index, void *page)
{
    if (index >= dev->nr_pages)
        return -EINVAL;
    struct uz_slot *s = &dev->table[index];
    slot_lock(s);
    int rc = slot_read(dev, s, page, NULL);
    slot_unlock(s);
    if (rc)
        uz_counter_add(&dev->st.failed_reads, 1);
    return rc;
}

int uz_dev_read_page(struct uz_dev *dev, uint64_t index, void *page)
{
    if (!dev || !page)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = read_page(dev, index, page);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

int uz_dev_page_state(struct uz_dev *dev, uint64_t index)
{
    if (!dev)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = -EINVAL;
    if (index < dev->nr_pages) {
        struct uz_slot *s = &dev->table[index];
        slot_lock(s);
        uint32_t f = slot_flags(s);
        rc = (f & UZ_SLOT_SAME)    ? (s->val ? UZ_DEV_PAGE_DATA : UZ_DEV_PAGE_ZERO)
             : (f & UZ_SLOT_ALLOC) ? UZ_DEV_PAGE_DATA
                                   : UZ_DEV_PAGE_UNWRITTEN;
        slot_unlock(s);
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
    slot_lock(s);
    struct uz_dev_stream *st = stream_get(dev);
    int rc = slot_read(dev, s, st->page, st);
    struct stored p;
    if (!rc) {
        memcpy(st->page + off, buf, len);
        rc = store_page(dev, st, st->page, &p);
    }
    stream_put(st);
    if (!rc)
        slot_commit(dev, s, &p);
    slot_unlock(s);
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
    while (!rc && done < len) {
        uint64_t index;
        size_t off, n = page_span(offset + done, len - done, &index, &off);
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
        if (n == UZ_PAGE_SIZE) {
            rc = read_page(dev, index, p + done);
        } else {
            unsigned char tmp[UZ_PAGE_SIZE] __attribute__((aligned(16)));
            rc = read_page(dev, index, tmp);
            if (!rc)
                memcpy(p + done, tmp + off, n);
        }
        done += n;
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc ? rc : (ssize_t)len;
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
        for (uint64_t i = first; i < end; i++) {
            struct uz_slot *s = &dev->table[i];
            if (slot_flags(s) & (UZ_SLOT_SAME | UZ_SLOT_ALLOC)) {
                /* else empty: nothing to free (racy peek, rechecked under the lock) */
                slot_lock(s);
                slot_free(dev, s);
                slot_unlock(s);
            }
        }
        /* The kernel counts every page of a discarded range, freed or not. */
        if (end > first)
            uz_counter_add(&dev->st.notify_free, (int64_t)(end - first));
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

/* Zeroes whole pages [first, end): holes with trim, zero pages otherwise. */
static void zero_pages(struct uz_dev *dev, uint64_t first, uint64_t end, bool trim)
{
    for (uint64_t i = first; i < end; i++) {
        struct uz_slot *s = &dev->table[i];
        uint32_t f = slot_flags(s);
        if (trim ? !(f & (UZ_SLOT_SAME | UZ_SLOT_ALLOC))
                 : ((f & UZ_SLOT_SAME) && !(f & UZ_SLOT_LOCK) && s->val == 0))
            continue; /* racy peek, rechecked under the lock */
        slot_lock(s);
        f = slot_flags(s);
        if (trim) {
            slot_free(dev, s);
        } else if (!(f & UZ_SLOT_SAME) || s->val) {
            struct stored p = {.flags = UZ_SLOT_SAME, .val = 0};
            slot_commit(dev, s, &p);
        }
        slot_unlock(s);
    }
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

static int slot_state(struct uz_slot *s)
{
    uint32_t f = slot_flags(s);
    if (f & UZ_SLOT_SAME)
        return s->val ? UZ_DEV_PAGE_DATA : UZ_DEV_PAGE_ZERO;
    return (f & UZ_SLOT_ALLOC) ? UZ_DEV_PAGE_DATA : UZ_DEV_PAGE_UNWRITTEN;
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
        if (!(slot_flags(s) & (UZ_SLOT_SAME | UZ_SLOT_ALLOC | UZ_SLOT_LOCK))) {
            state = UZ_DEV_PAGE_UNWRITTEN; /* the common hole: no lock needed for a snapshot */
        } else {
            slot_lock(s);
            state = slot_state(s);
            slot_unlock(s);
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

/* ---- statistics ---- */

static uint64_t ctr(const struct uz_counter *c)
{
    int64_t v = uz_counter_read(c);
    return v > 0 ? (uint64_t)v : 0;
}

void uz_dev_stats_locked(struct uz_dev *dev, struct uz_dev_stats *st)
{
    *st = (struct uz_dev_stats){.disksize = dev->disksize};
    if (dev->pool) {
        struct uz_pool_stat ps = {0};
        uz_pool_stats(dev->pool, &ps);
        uint64_t used = uz_pool_total_pages(dev->pool);
        uz_dev_note_mem_used(dev, used);
        st->mem_used_total = used << UZ_PAGE_SHIFT;
        st->pages_compacted = ps.pages_compacted;
    }
    st->orig_data_size = ctr(&dev->st.pages_stored) << UZ_PAGE_SHIFT;
    st->compr_data_size = ctr(&dev->st.compr_data_size);
    st->mem_limit = atomic_load(&dev->limit_pages) << UZ_PAGE_SHIFT;
    st->mem_used_max = atomic_load(&dev->max_used_pages) << UZ_PAGE_SHIFT;
    st->same_pages = ctr(&dev->st.same_pages);
    st->huge_pages = ctr(&dev->st.huge_pages);
    st->huge_pages_since = ctr(&dev->st.huge_pages_since);
    st->failed_reads = ctr(&dev->st.failed_reads);
    st->failed_writes = ctr(&dev->st.failed_writes);
    st->notify_free = ctr(&dev->st.notify_free);
    st->miss_free = ctr(&dev->st.miss_free);
}

int uz_dev_stats(struct uz_dev *dev, struct uz_dev_stats *st)
{
    if (!dev || !st)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    uz_dev_stats_locked(dev, st);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return 0;
}

int uz_dev_compact(struct uz_dev *dev)
{
    if (!dev)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    long freed = dev->pool ? uz_pool_compact(dev->pool) : -EINVAL;
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return freed > INT_MAX ? INT_MAX : (int)freed;
}
