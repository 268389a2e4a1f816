/* SPDX-License-Identifier: MIT */
/*
 * dev_internal.h - private state of the compressed page device (the zram core), shared by
 * dev_io.c (slots and I/O paths), dev_codec.c (codec and streams), dev_lifecycle.c (create,
 * storage, statistics), dev_idle.c (access tracking), dev_attr.c (sysfs-style attributes) and
 * dev_queue.c (zramd workers).
 *
 * Lock order (outermost first); every holder may sleep unless it says otherwise:
 *   gate (big-reader; read by async submitters, written by exclusive operations)
 *   -> init_lock (big-reader; read by every I/O, written by reset/disksize/algorithm changes)
 *   -> slot lock (bit in uz_slot.flags; spins briefly, then sleeps on a futex)
 *   -> stream lock (uz_dev_stream.lock, a mutex); a thread holding a stream of codec priority
 *      p (0: the primary, 1..3: recomp_algorithm's secondaries) takes only streams of a higher
 *      priority
 *   -> pool locks (inside uz_pool_*)
 * The policy's locks (dev_policy.c): its set_lock comes before gate (taken with no device lock
 * held), and the policy's `lock` is a leaf. The store's (dev_wb.c): `run` (one writeback at a
 * time) between init_lock and slot locks, its `lock` a leaf.
 * A full-page write takes a stream, compresses, allocates and copies, and puts the stream back
 * BEFORE it takes the slot lock; reads and partial writes take the slot lock first.
 * Worker queue locks are leaves: nothing else is taken while holding one.
 */
#ifndef UZ_DEV_INTERNAL_H
#define UZ_DEV_INTERNAL_H

#include <uzram/comp.h>
#include <uzram/dev.h>
#include <uzram/pool.h>

#include "util.h"

/* Slot flags (the flags word). A slot with none of SAME/ALLOC set is empty and reads as zeros.
 * Bits 0..12 hold the compressed size (<= 4096) when ALLOC, so the slot stays 16 bytes with a
 * 32-bit access time beside the flags. */
#define UZ_SLOT_LOCK    (1u << 31) /* slot lock bit (the holder may sleep: see below) */
#define UZ_SLOT_SAME    (1u << 30) /* val is the 8-byte fill word; no pool memory */
#define UZ_SLOT_ALLOC   (1u << 29) /* val is a pool handle of `size` bytes */
#define UZ_SLOT_HUGE    (1u << 28) /* with ALLOC: the raw page, size == UZ_PAGE_SIZE */
#define UZ_SLOT_WAITERS (1u << 27) /* with LOCK: a contender sleeps on the flags word */
#define UZ_SLOT_IDLE    (1u << 26) /* marked idle (the idle attribute); any access clears it */
/* Tiering (issue 10). A written-back slot has WB and neither SAME nor ALLOC: `val` then locates
 * its copy in the backing store (dev_wb.c says how) and the size bits keep its stored length
 * (4096 for a raw page). Every test for "slot holds data" must include WB. */
#define UZ_SLOT_WB         (1u << 25) /* written back to the backing store ('w') */
#define UZ_SLOT_RECOMP     (1u << 24) /* recompressed by a secondary codec ('r') */
#define UZ_SLOT_INCOMP     (1u << 23) /* the strongest codec could not shrink it ('n') */
#define UZ_SLOT_PRIO_SHIFT 21         /* bits 21..22: priority of the codec that made the object */
/* With ALLOC: picked by a writeback in flight (the kernel's ZRAM_PP_SLOT). Freeing the slot
 * clears it, which tells the writeback that its copy is stale (dev_wb.c). */
#define UZ_SLOT_PP (1u << 20)
/* With ALLOC: the slot's page is one of the pages of a multi-page object (issue 11;
 * dev_multi.c). `val` is then the handle of the object's head chunk, shared by every slot of
 * the run whose page is in it, the size bits are 0 and the object's header (in the head chunk)
 * says the rest. The slots of one object are those of the aligned run of object_pages slots
 * (index / object_pages) whose val is that handle; the invariant that ties them:
 *   live pages of an object == popcount(its header's mask) == slots of the run that are
 *   MULTI with that val
 * and the object is freed by whoever clears the last bit of the mask. */
#define UZ_SLOT_MULTI     (1u << 19)
#define UZ_SLOT_PRIO_MASK (3u << UZ_SLOT_PRIO_SHIFT)
#define UZ_SLOT_LOCK_BITS (UZ_SLOT_LOCK | UZ_SLOT_WAITERS)
#define UZ_SLOT_SIZE_MASK 0x1fffu
#define UZ_SLOT_STORED    (UZ_SLOT_SAME | UZ_SLOT_ALLOC | UZ_SLOT_WB)

static inline unsigned uz_slot_prio(uint32_t flags)
{
    return (flags & UZ_SLOT_PRIO_MASK) >> UZ_SLOT_PRIO_SHIFT;
}

/* Which slots recompress and writeback pick (the kernel's type= values): a slot is a candidate
 * when it has every property in the mask (huge_idle = HUGE | IDLE). */
#define UZ_DEV_PICK_IDLE   1u /* UZ_SLOT_IDLE */
#define UZ_DEV_PICK_HUGE   2u /* UZ_SLOT_HUGE */
#define UZ_DEV_PICK_INCOMP 4u /* UZ_SLOT_INCOMP */

/* One 4096-byte slot: 16 bytes. `flags` is atomic; `atime` and `val` are protected by the slot
 * lock. */
struct uz_slot {
    _Atomic uint32_t flags;
    uint32_t atime; /* seconds of CLOCK_BOOTTIME at the last read or write (uz_dev_now()) */
    uint64_t val;   /* handle (ALLOC) or fill word (SAME) */
};
_Static_assert(sizeof(struct uz_slot) == 16, "a slot is 16 bytes");

/* A compression stream with a page of scratch for read-modify-write. Owned by whoever holds
 * `lock` (a mutex; lock order: under the slot lock, above the pool's locks; its holder runs the
 * codec and may sleep). There are 2 per CPU plus one per worker, so trylock usually succeeds. */
struct uz_dev_stream {
    pthread_mutex_t lock;
    struct uz_comp_stream *cs;
    unsigned char *page; /* UZ_PAGE_SIZE bytes of scratch */
    /* Multi-page objects (dev_multi.c), allocated at the stream's first run: `run` holds
     * UZ_DEV_OBJ_PAGES_MAX pages (a run's pages gathered, or an object decoded) and `cbuf` is
     * the worst-case output of compressing them (or an object's chunks put together). */
    unsigned char *run, *cbuf;
    size_t cbuf_size;
    /* What `run` holds decoded: the first run_pages member pages of the object run_head whose
     * header id is run_id (run_head 0: nothing). A thread mostly gets the same stream back, so
     * reading an object's pages in turn decodes it once. */
    uz_handle_t run_head;
    uint32_t run_id;
    unsigned run_pages;
} UZ_ALIGNED;

#define UZ_DEV_OBJ_PAGES_MAX 16u /* the largest object_pages */

struct uz_dev_req {
    uint64_t index;
    const void *page;
    uz_dev_done_fn done;
    void *arg;
};

#define UZ_DEV_QUEUE_DEPTH 256
/* Slots per worker stripe: the requests for slots i and j go to the same worker when
 * i / UZ_DEV_WORKER_SPAN == j / UZ_DEV_WORKER_SPAN (dev_queue.c says why). */
#define UZ_DEV_WORKER_SPAN 64u

/* A request queued past a full ring by a callback (which never waits for room). */
struct uz_dev_req_node {
    struct uz_dev_req req;
    struct uz_dev_req_node *next;
};

/* One zramd worker and its FIFO: ring[tail % DEPTH .. head % DEPTH), then the overflow list.
 * Requests for index i go to worker i % nworkers, so writes to one index complete in submission
 * order. completed <= submitted; overflow non-empty implies the ring is full.
 * `lock` is a leaf (nothing else is taken while holding it); its holder may sleep only in
 * pthread_cond_wait on `cond`. */
struct uz_dev_worker {
    struct uz_dev *dev;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled on: new request, space freed, completion, stop */
    uint64_t head, tail; /* ring[tail % DEPTH] is the oldest queued request */
    uint64_t submitted, completed;
    struct uz_dev_req_node *overflow, *overflow_tail;
    size_t overflow_len;
    bool stop;
    struct uz_dev_req ring[UZ_DEV_QUEUE_DEPTH];
} UZ_ALIGNED;

/* A codec and its streams, built with no device lock held and then swapped in under
 * uz_dev_exclusive_begin() (no lock across the allocations, nor across reading a dictionary). */
struct uz_dev_codec {
    struct uz_comp *comp;
    struct uz_dev_stream *streams;
    unsigned nstreams;
    char *dict_path; /* malloc'd, or NULL */
};

#define UZ_DEV_PRIO_MAX 3 /* the highest recompression priority */

struct uz_dev_counters {
    struct uz_counter pages_stored;     /* slots holding data (same-filled included) */
    struct uz_counter compr_data_size;  /* bytes of compressed data (huge pages count 4096) */
    struct uz_counter same_pages;       /* slots holding a fill word */
    struct uz_counter huge_pages;       /* slots holding a raw page */
    struct uz_counter huge_pages_since; /* raw pages written since init */
    struct uz_counter failed_reads;
    struct uz_counter failed_writes;
    struct uz_counter notify_free;         /* pages of discarded ranges */
    struct uz_counter bd_count;            /* slots written back now (bd_stat, 4 KiB units) */
    struct uz_counter bd_reads, bd_writes; /* pages read from / written to the store */
};

struct uz_dev {
    /* Lock order: gate -> init_lock -> slot lock -> stream lock -> pool locks; worker queue
     * locks are leaves. Every one of them may be held while sleeping (none is a busy-wait held
     * across blocking work; see the slot lock in dev_io.c). */
    struct uz_brlock gate; /* read: an async submission; write: an exclusive operation */
    struct uz_brlock init_lock;

    /* Protected by init_lock (written only with it held for writing). */
    /* Written under init_lock held for writing; atomic so that uz_dev_disksize() can read it
     * without the lock (from a const device, while a reset runs). */
    _Atomic uint64_t disksize; /* 0: uninitialised */
    uint64_t nr_pages;
    struct uz_slot *table; /* nr_pages slots, mmap'd */
    size_t table_bytes;
    struct uz_pool *pool;
    size_t huge_size;     /* compressed sizes >= this are stored raw */
    struct uz_comp *comp; /* also holds the algorithm_params as set (uz_comp_get_params()) */
    char algorithm[16];   /* == uz_comp_name(comp) */
    char *dict_path;      /* the dict= of the last algorithm_params, or NULL */
    struct uz_dev_stream *streams;
    unsigned nstreams;
    uint64_t codec_gen; /* bumped at every codec swap: a change built unlocked checks it */
    /* sec[1..3]: the secondary codecs of recomp_algorithm (comp NULL when unset); sec[0] is
     * unused (the primary is comp/streams above). Changed only under the exclusive lock. */
    struct uz_dev_codec sec[UZ_DEV_PRIO_MAX + 1];

    _Atomic uint64_t limit_pages; /* 0: unlimited */
    _Atomic int64_t clock_offset; /* seconds from CLOCK_MONOTONIC_COARSE to BOOTTIME (+ tests') */
    _Atomic uint64_t max_used_pages; /* high-water mark of uz_pool_total_pages() */
    struct uz_dev_counters st;

    /* Writeback (dev_wb.c). `wb` is set and cleared under the exclusive lock (readers hold
     * init_lock); the settings are atomics any holder of init_lock may change. */
    struct uz_dev_wb *wb;         /* NULL: no backing device */
    _Atomic uint64_t wb_limit;    /* writeback_limit, 4 KiB units */
    _Atomic bool wb_limit_enable; /* writeback_limit_enable */
    _Atomic unsigned wb_batch;    /* writeback_batch_size: pages in flight */
    bool wb_compressed;           /* compressed_writeback (the store's layout) */

    /* object_pages (dev_multi.c): 1, 2, 4, 8 or 16; changed only while no page is stored,
     * under the exclusive lock. */
    unsigned object_pages;
    /* Striped leaf mutexes of the objects' masks (dev_multi.c): under slot locks, above the
     * pool's; the holder calls the pool and may sleep. */
#define UZ_DEV_MOBJ_LOCKS 64
    pthread_mutex_t mobj_locks[UZ_DEV_MOBJ_LOCKS];
    _Atomic uint32_t mobj_ids; /* the next object's id (dev_multi.c) */

    unsigned nworkers;
    struct uz_dev_worker *workers;
    struct uz_dev_policy *policy; /* dev_policy.c; set at create */
};

/* ---- the slot lock, and access tracking (used by dev_io.c and dev_idle.c) ---- */

#include <time.h>

/*
 * The slot lock: bit UZ_SLOT_LOCK of the slot's flags word, with UZ_SLOT_WAITERS set by a thread
 * that sleeps on the word (futex). Its holder may sleep: it runs the codec, waits for a stream
 * and calls the pool, so a contender spins only briefly (the common case is an uncontended CAS)
 * and then sleeps instead of burning a core. Every other flag bit changes only under the lock.
 */
static inline void uz_slot_lock_slow(struct uz_slot *s)
{
    for (unsigned spins = 0; spins < 100; spins++) {
        uz_cpu_relax();
        uint32_t f = atomic_load_explicit(&s->flags, memory_order_relaxed);
        if (!(f & UZ_SLOT_LOCK) &&
            atomic_compare_exchange_weak_explicit(&s->flags, &f, f | UZ_SLOT_LOCK,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
    }
    for (;;) {
        uint32_t f = atomic_load_explicit(&s->flags, memory_order_relaxed);
        if (!(f & UZ_SLOT_LOCK)) {
            /* Taken from the sleeping path: keep WAITERS set, since others may still sleep. */
            if (atomic_compare_exchange_weak_explicit(&s->flags, &f,
                                                      f | UZ_SLOT_LOCK | UZ_SLOT_WAITERS,
                                                      memory_order_acquire, memory_order_relaxed))
                return;
            continue;
        }
        if (!(f & UZ_SLOT_WAITERS) &&
            !atomic_compare_exchange_weak_explicit(&s->flags, &f, f | UZ_SLOT_WAITERS,
                                                   memory_order_relaxed, memory_order_relaxed))
            continue;
        uz_futex_wait(&s->flags, f | UZ_SLOT_WAITERS);
    }
}

static inline void uz_slot_lock(struct uz_slot *s)
{
    uint32_t f = atomic_load_explicit(&s->flags, memory_order_relaxed);
    if (UZ_LIKELY(!(f & UZ_SLOT_LOCK)) &&
        atomic_compare_exchange_weak_explicit(&s->flags, &f, f | UZ_SLOT_LOCK, memory_order_acquire,
                                              memory_order_relaxed))
        return;
    uz_slot_lock_slow(s);
}

static inline void uz_slot_unlock(struct uz_slot *s)
{
    uint32_t old = atomic_fetch_and_explicit(&s->flags, ~(UZ_SLOT_LOCK | UZ_SLOT_WAITERS),
                                             memory_order_release);
    if (UZ_UNLIKELY(old & UZ_SLOT_WAITERS))
        uz_futex_wake(&s->flags, 1);
}

static inline uint32_t uz_slot_flags(const struct uz_slot *s)
{
    return atomic_load_explicit(&s->flags, memory_order_relaxed) & ~UZ_SLOT_LOCK_BITS;
}

static inline void uz_slot_set_flags(struct uz_slot *s, uint32_t flags)
{
    /* The holder changes the data bits; contenders may set WAITERS meanwhile, so keep both
     * lock bits as they are. */
    uint32_t f = atomic_load_explicit(&s->flags, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&s->flags, &f, (f & UZ_SLOT_LOCK_BITS) | flags,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Seconds of CLOCK_BOOTTIME (the kernel's clock for ac_time), plus the test clock offset. Read
 * as CLOCK_MONOTONIC_COARSE (8 ns here, against 28 for CLOCK_BOOTTIME: this runs on every I/O)
 * plus the boot-to-monotonic difference taken when the device was created; a suspend after that
 * is not counted (the ages of an idle mark then run late by the suspended time). */
static inline uint32_t uz_dev_now(const struct uz_dev *dev)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((int64_t)ts.tv_sec +
                      atomic_load_explicit(&dev->clock_offset, memory_order_relaxed));
}

/* A locked slot was read: record the access and clear its idle mark. */
static inline void uz_slot_accessed(const struct uz_dev *dev, struct uz_slot *s)
{
    uint32_t f = uz_slot_flags(s);
    if (!(f & UZ_SLOT_STORED))
        return; /* nothing stored: nothing to track */
    uint32_t now = uz_dev_now(dev);
    if (s->atime != now)
        s->atime = now;
    if (f & UZ_SLOT_IDLE)
        uz_slot_set_flags(s, f & ~UZ_SLOT_IDLE);
}

/* dev_idle.c: the callers hold init_lock for reading. */
UZ_HIDDEN int uz_dev_mark_idle_locked(struct uz_dev *dev, bool all, uint64_t age);
/* Slots marked idle now: a peek at every flags word, no slot lock (a snapshot that may be
 * off by the slots changing meanwhile). */
UZ_HIDDEN uint64_t uz_dev_idle_pages_locked(struct uz_dev *dev);
UZ_HIDDEN ssize_t uz_dev_block_state_locked(struct uz_dev *dev, uint64_t *index, char *buf,
                                            size_t len);

/* dev_recomp.c / dev_wb.c: the bodies of the recompress and writeback attributes, also run by
 * the policy thread (dev_policy.c). Callers hold init_lock for reading. Each stops after
 * `max_pages` slots (0: no bound) and adds the slots it changed to *done.
 *  uz_dev_recompress_locked() : recompress the slots matching `pick` with the codec of priority
 *    `prio` (1..3), those of at least `threshold` bytes (0: any); the kernel's semantics.
 *  uz_dev_writeback_locked() : write back the slots matching `pick` (0 with an index range:
 *    every stored slot of [lo, hi)), within writeback_limit when it is enabled.
 *  @return : 0 or the attribute's -errno. */
UZ_HIDDEN int uz_dev_recompress_locked(struct uz_dev *dev, unsigned pick, uint64_t max_pages,
                                       size_t threshold, unsigned prio, uint64_t *done);
UZ_HIDDEN int uz_dev_writeback_locked(struct uz_dev *dev, unsigned pick, uint64_t lo, uint64_t hi,
                                      uint64_t max_pages, uint64_t *done);

/* dev_wb.c: the backing store. uz_dev_wb_read/_free: the slot is locked, WB set. */
struct uz_dev_wb;
UZ_HIDDEN int uz_dev_wb_read(struct uz_dev *dev, struct uz_slot *s, void *page);
UZ_HIDDEN void uz_dev_wb_free(struct uz_dev *dev, struct uz_slot *s);
/* Opens (creating a regular file if missing, 0600) a store; no device lock needed. */
UZ_HIDDEN int uz_dev_wb_open(const char *path, bool packed, struct uz_dev_wb **out);
/* Closes a store, punching what it held (NULL: no-op). Nothing may point into it any more. */
UZ_HIDDEN void uz_dev_wb_close(struct uz_dev_wb *wb);
UZ_HIDDEN const char *uz_dev_wb_path(const struct uz_dev_wb *wb);
UZ_HIDDEN uint64_t uz_dev_wb_stored(struct uz_dev_wb *wb); /* objects in it */
/* Changes the layout of an EMPTY store (under the exclusive lock). */
UZ_HIDDEN void uz_dev_wb_set_packed(struct uz_dev_wb *wb, bool packed);
/* In a forked child: the store is the parent's; the child reads it but never writes or frees
 * space in it (writeback is -EBUSY there). */
UZ_HIDDEN void uz_dev_wb_fork_child(struct uz_dev_wb *wb);
UZ_HIDDEN bool uz_dev_wb_shared(const struct uz_dev_wb *wb);
/* Live bytes of the objects and bytes of the blocks that hold them. */
UZ_HIDDEN void uz_dev_wb_usage(struct uz_dev_wb *wb, uint64_t *live_bytes, uint64_t *used_bytes);
/* Test hooks: when set, the store's I/O goes through them (to inject errors). */
UZ_HIDDEN extern ssize_t (*uz_dev_wb_pwrite_hook)(int fd, const void *buf, size_t len, off_t off);
UZ_HIDDEN extern ssize_t (*uz_dev_wb_pread_hook)(int fd, void *buf, size_t len, off_t off);

/* dev_policy.c: the tiering policy thread (the `policy` attribute). Sizes in bytes, ages and
 * the interval in seconds; a pick of UZ_DEV_PICK_NONE turns its stage off. */
#define UZ_DEV_PICK_NONE 0u
struct uz_dev_policy_cfg {
    uint64_t interval; /* 0: off */
    uint64_t recompress_age, writeback_age;
    unsigned recompress_pick, writeback_pick;
    unsigned recompress_prio; /* the secondary's priority, 1..3 */
    uint64_t writeback_per_day, writeback_per_round;
};
struct uz_dev_policy_stat {
    uint64_t rounds, recompressed, written_back; /* slots, since the policy was set up */
    uint64_t day_pages;                          /* written back in the current day */
    uint64_t day_left_pages;                     /* what the day's budget still allows */
    int writeback_error, recompress_error;       /* the last round's (0, -ENODEV, ...) */
};
struct uz_dev_policy;
UZ_HIDDEN extern const struct uz_dev_policy_cfg uz_dev_policy_defaults;
UZ_HIDDEN int uz_dev_policy_init(struct uz_dev *dev);
UZ_HIDDEN void uz_dev_policy_destroy(struct uz_dev *dev);
/* The caller holds no device lock (stopping joins the thread, whose round takes init_lock). */
UZ_HIDDEN int uz_dev_policy_set(struct uz_dev *dev, const struct uz_dev_policy_cfg *cfg);
UZ_HIDDEN void uz_dev_policy_reset(struct uz_dev *dev);
/* Any lock may be held (the policy's own is a leaf). Either pointer may be NULL. */
UZ_HIDDEN void uz_dev_policy_get(struct uz_dev *dev, struct uz_dev_policy_cfg *cfg,
                                 struct uz_dev_policy_stat *st);
/* Fork: fork_lock(true) before the device's exclusive lock, fork_prepare() after it; parent
 * and child undo them in the reverse order (the child's fork_child() does both). */
UZ_HIDDEN void uz_dev_policy_fork_lock(struct uz_dev *dev, bool take);
UZ_HIDDEN void uz_dev_policy_fork_prepare(struct uz_dev *dev);
UZ_HIDDEN void uz_dev_policy_fork_parent(struct uz_dev *dev);
UZ_HIDDEN int uz_dev_policy_fork_child(struct uz_dev *dev);

/* dev_codec.c */
/* Builds `out` for `algorithm` with `params` (copied); reads only dev->nworkers. */
UZ_HIDDEN int uz_dev_codec_build(const struct uz_dev *dev, const char *algorithm,
                                 const struct uz_comp_params *params, const char *dict_path,
                                 struct uz_dev_codec *out);
/* Caller holds init_lock for writing (or is creating): installs *c and hands back the old codec
 * in *c, to be freed with uz_dev_codec_free() once the lock is dropped. */
UZ_HIDDEN void uz_dev_codec_swap(struct uz_dev *dev, struct uz_dev_codec *c);
UZ_HIDDEN void uz_dev_codec_free(struct uz_dev_codec *c);
/* Builds and installs a codec without a dictionary; for uz_dev_create(), with no lock. */
UZ_HIDDEN int uz_dev_set_codec(struct uz_dev *dev, const char *algorithm, int level,
                               const char *dict_path);
/* Takes a stream (trylock round-robin from the thread's own, then waits on it). */
UZ_HIDDEN struct uz_dev_stream *uz_dev_stream_get(struct uz_dev *dev);
/* A stream of the codec of priority `prio` (0: the primary); NULL when that secondary is not
 * configured. The caller holds init_lock for reading. */
UZ_HIDDEN struct uz_dev_stream *uz_dev_prio_stream_get(struct uz_dev *dev, unsigned prio);
/* Decodes an object of a slot whose data flags are `flags` (HUGE: a raw page; otherwise
 * (flags & UZ_SLOT_SIZE_MASK) bytes made by the codec of priority uz_slot_prio(flags)) into
 * the 4096-byte `page`. `held`: a stream of that same priority the caller holds, or NULL to take
 * one. Used by reads, recompression and writeback. @return : 0 or -EIO (corrupt object). */
UZ_HIDDEN int uz_dev_decode(struct uz_dev *dev, uint32_t flags, const void *obj, void *page,
                            struct uz_dev_stream *held);
UZ_HIDDEN void uz_dev_stream_put(struct uz_dev_stream *st);
UZ_HIDDEN void uz_dev_streams_free(struct uz_dev *dev);

/* dev_lifecycle.c */
UZ_HIDDEN int uz_dev_init_storage(struct uz_dev *dev, uint64_t disksize);
UZ_HIDDEN void uz_dev_free_storage(struct uz_dev *dev);
UZ_HIDDEN bool uz_dev_is_empty(struct uz_dev *dev);
/* Raises mem_used_max to `used` pages if below. The pool also changes size outside writes
 * (batch pages, the zspage cache, compaction), so readers of the statistics call it too. */
UZ_HIDDEN void uz_dev_note_mem_used(struct uz_dev *dev, uint64_t used);
/* uz_dev_stats() for a caller that holds init_lock (either way). */
UZ_HIDDEN void uz_dev_stats_locked(struct uz_dev *dev, struct uz_dev_stats *st);

/* dev_io.c */
UZ_HIDDEN int uz_dev_write_page_nolock(struct uz_dev *dev, uint64_t index, const void *page);
/* Whether the page is one 8-byte word repeated (*fill set). */
UZ_HIDDEN bool uz_dev_page_same_filled(const void *page, uint64_t *fill);
/* After an allocation: -ENOSPC if the pool now passes mem_limit (the caller frees what it
 * allocated; the limit is checked after the allocation, as zram does), else 0 with
 * mem_used_max raised. */
UZ_HIDDEN int uz_dev_limit_check(struct uz_dev *dev);
/* Reads one page (index checked: -EINVAL), tracking the access; the caller holds init_lock. */
UZ_HIDDEN int uz_dev_read_page_locked(struct uz_dev *dev, uint64_t index, void *page);
/* What a write turns a page into before it locks the slot (dev_io.c and dev_multi.c). */
struct uz_dev_stored {
    uint32_t flags; /* SAME, ALLOC [| HUGE], or ALLOC | MULTI | prio */
    uint32_t size;  /* bytes of the object (0 for MULTI: the object counts once) */
    uint64_t val;
};
/* A page into a fill word or a pool object of its own, with `st` held; nothing is allocated on
 * failure. @return : 0, -ENOSPC (mem_limit), -ENOMEM, -EIO. */
UZ_HIDDEN int uz_dev_store_page(struct uz_dev *dev, struct uz_dev_stream *st, const void *page,
                                struct uz_dev_stored *out);
/* A locked slot: empty it (freeing or leaving its object) / put a stored page into it. */
UZ_HIDDEN void uz_dev_slot_free(struct uz_dev *dev, struct uz_slot *s, uint64_t index);
UZ_HIDDEN void uz_dev_slot_commit(struct uz_dev *dev, struct uz_slot *s, uint64_t index,
                                  const struct uz_dev_stored *p);
/* Decodes a locked slot into `page` (see dev_io.c). */
UZ_HIDDEN int uz_dev_slot_read(struct uz_dev *dev, struct uz_slot *s, uint64_t index, void *page,
                               struct uz_dev_stream *held);

/* dev_multi.c: multi-page objects. The caller holds init_lock for reading. */
/* Writes object_pages pages at slot `first` (a multiple of object_pages) as one object; pages[k]
 * is the k-th page. On failure no slot changed. @return : 0 or -errno. */
UZ_HIDDEN int uz_dev_write_run(struct uz_dev *dev, uint64_t first, const void *const *pages);
/* A locked MULTI slot: its page into `page` (`held`: a primary stream the caller holds). */
UZ_HIDDEN int uz_dev_mobj_read(struct uz_dev *dev, struct uz_slot *s, uint64_t index, void *page,
                               struct uz_dev_stream *held);
/* A locked MULTI slot leaves its object (freed with its last page). The caller clears the slot
 * and counts pages_stored. */
UZ_HIDDEN void uz_dev_mobj_put(struct uz_dev *dev, struct uz_slot *s, uint64_t index);
/* Reads the n pages from slot `first` into buf, decoding each object once. @return : 0 or the
 * first error. */
UZ_HIDDEN int uz_dev_read_pages_locked(struct uz_dev *dev, uint64_t first, uint64_t n, void *buf);
/* Recompresses (prio 1..3) or repacks (prio 0: objects at most half live, with their own codec)
 * the multi-page objects whose every live page matches `pick`. Adds the pages whose object was
 * replaced to *done. @return : 0 or -errno. */
UZ_HIDDEN int uz_dev_mobj_recompress(struct uz_dev *dev, unsigned pick, uint64_t max_pages,
                                     unsigned prio, bool last, size_t threshold, uint64_t *done);
/* For tests: every run's object agrees with its slots (live pages == popcount(mask) == the
 * run's MULTI slots with its handle; mask within members). Takes init_lock and the slot
 * locks. @return : 0 or -EUCLEAN. */
UZ_HIDDEN int uz_dev_mobj_check(struct uz_dev *dev);
/* Frees the run buffers of a stream. */
UZ_HIDDEN void uz_dev_stream_run_free(struct uz_dev_stream *st);

/* dev_queue.c */
/* uz_dev_exclusive_begin() / _end() : take init_lock for writing with the async queue drained
 * (no request queued before the call is still pending) and closed to new submissions until
 * _end (they wait). For reset, disksize and codec changes. From a `done` callback of this
 * device: -EDEADLK, nothing taken. */
UZ_HIDDEN int uz_dev_exclusive_begin(struct uz_dev *dev); /* 0 or -EDEADLK */
UZ_HIDDEN void uz_dev_exclusive_end(struct uz_dev *dev);
UZ_HIDDEN int uz_dev_queue_start(struct uz_dev *dev, unsigned nworkers);
UZ_HIDDEN void uz_dev_queue_stop(struct uz_dev *dev);
UZ_HIDDEN void uz_dev_queue_flush(struct uz_dev *dev);

#endif
