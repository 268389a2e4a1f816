// SPDX-License-Identifier: MIT
/*
 * dev_wb.c - writeback: cold slots leave the pool for a backing file or block device (zram's
 * backing_dev, writeback, writeback_limit, bd_stat), and are read from there.
 *
 * Two layouts of the store, fixed while anything is written back:
 *  - raw (the kernel's): one 4 KiB block per page, holding the page itself; a bitmap of blocks,
 *    first fit from a moving hint. The slot's `val` is the block number.
 *  - packed (compressed_writeback=1, beyond the kernel): the compressed objects one after the
 *    other from an append point, so the file holds about the compressed bytes rather than 4 KiB
 *    a page. `val` is the byte offset; the size bits keep the object's length (4096: a raw page).
 *    Every 4 KiB block of the file counts its live bytes; a block whose count falls to 0 behind
 *    the append point is punched out. When the blocks still allocated exceed 1.10x the live
 *    bytes + 512 KiB, cleaning moves the objects of 256 KiB segments that are less than half
 *    live to the append point, so that their blocks can be punched.
 * Freed space is returned with fallocate(FALLOC_FL_PUNCH_HOLE), so a file shrinks on disk.
 *
 * Writeback follows the kernel's post-processing protocol: a candidate is marked UZ_SLOT_PP under
 * its slot lock and copied out (packed: its object, there and then; raw: decoded afterwards under
 * its slot lock again, if it still has PP, by whichever of two threads claims it); the batch is
 * written with no slot lock held; then each slot is locked again and committed only if it still
 * has PP (any free, overwrite or discard clears it; then the copy in the store is freed instead).
 * A failed write leaves every slot of the batch in RAM, unchanged. Reading a written-back slot
 * reads the store (pread) and decodes; the page is NOT brought back to RAM, as in the kernel: a
 * read of cold data must not undo the writeback nor need pool memory (under mem_limit it could
 * not), and an overwrite stores it anew anyway.
 *
 * Locks: `run` (below) lets one writeback at a time run on the store (the attribute's and the
 * policy thread's would race: the second marking PP again a slot freed and rewritten meanwhile,
 * the first would commit its stale copy); taken under init_lock (read), before any slot lock;
 * its holder sleeps (I/O). `lock` is a leaf taken under slot locks (frees) or with none
 * (allocation); its holder may sleep: it punches holes (fallocate), so a block is never handed
 * out again before its old contents are gone.
 */
#include "dev_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define BLK       UZ_PAGE_SIZE
#define SEG_BLKS  64u /* 256 KiB cleaning segments */
#define MAX_BATCH 256u
/* Batches in the pipeline: the caller picks and decodes up to WB_BUFS - 1 batches ahead of the
 * one the worker writes, so that neither waits on the other's wake-up between two batches: at
 * 32 pages a batch is 128 KiB, written in ~60 us, and a thread's wake-up on a 2-vCPU VM is of
 * that order. Medians of 4 x 9 pairs against dd (uzram-bench tier): py-64m 0.77 -> 0.78, node-64m
 * 0.82 -> 0.94, with a spread of 0.6-1.1 either way; 256-page batches gave 0.86-0.89. */
#define WB_BUFS 4

ssize_t (*uz_dev_wb_pwrite_hook)(int fd, const void *buf, size_t len, off_t off);
ssize_t (*uz_dev_wb_pread_hook)(int fd, void *buf, size_t len, off_t off);

struct uz_dev_wb {
    int fd;
    char *path;
    uint64_t cap_blocks; /* a block device's size in blocks; 0: a file (grows as needed) */
    bool packed;         /* the layout in use (compressed_writeback when attached or emptied) */
    bool shared;         /* in a forked child: the parent owns the store (see uz_dev_wb_fork) */

    /* Held by the writeback in progress: while it is, UZ_SLOT_PP marks its items only. */
    pthread_mutex_t run;
    /* Protected by `lock` (a leaf; see the top of the file; its holder may sleep). */
    pthread_mutex_t lock;
    uint64_t stored;                  /* objects in the store */
    uint64_t nblocks;                 /* capacity of the maps below, in blocks */
    uint64_t *bitmap;                 /* raw: used blocks */
    uint64_t hint;                    /* raw: where the next search starts */
    uint16_t *live;                   /* packed: live bytes per block */
    uint64_t tail;                    /* packed: the append point, in bytes */
    uint64_t live_bytes, used_blocks; /* packed: bytes of live objects, blocks with live > 0 */
};

/* ---- the store's I/O (with the tests' hooks) ---- */

static int full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    while (len) {
        ssize_t n = uz_dev_wb_pwrite_hook ? uz_dev_wb_pwrite_hook(fd, buf, len, off)
                                          : pwrite(fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ENOSPC || errno == EFBIG ? -ENOSPC : -EIO;
        if (n == 0)
            return -ENOSPC;
        buf = (const char *)buf + n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int full_pread(int fd, void *buf, size_t len, off_t off)
{
    while (len) {
        ssize_t n = uz_dev_wb_pread_hook ? uz_dev_wb_pread_hook(fd, buf, len, off)
                                         : pread(fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        buf = (char *)buf + n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static void punch(struct uz_dev_wb *wb, uint64_t first, uint64_t blocks)
{
    if (blocks && !wb->shared)
        fallocate(wb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * BLK),
                  (off_t)(blocks * BLK)); /* best effort: a store that cannot punch just stays */
}

/* Grows the maps to hold block `b`. Under lock. */
static int grow(struct uz_dev_wb *wb, uint64_t b)
{
    if (b < wb->nblocks)
        return 0;
    if (wb->cap_blocks && b >= wb->cap_blocks)
        return -ENOSPC;
    uint64_t n = wb->nblocks ? wb->nblocks : 4096;
    while (n <= b)
        n *= 2;
    if (wb->cap_blocks && n > wb->cap_blocks)
        n = (wb->cap_blocks + 63) / 64 * 64;
    if (wb->packed) {
        uint16_t *v = realloc(wb->live, n * sizeof(*v));
        if (!v)
            return -ENOMEM;
        memset(v + wb->nblocks, 0, (n - wb->nblocks) * sizeof(*v));
        wb->live = v;
    } else {
        uint64_t *v = realloc(wb->bitmap, n / 64 * sizeof(*v));
        if (!v)
            return -ENOMEM;
        memset(v + wb->nblocks / 64, 0, (n - wb->nblocks) / 64 * sizeof(*v));
        wb->bitmap = v;
    }
    wb->nblocks = n;
    return 0;
}

/* ---- raw layout: blocks ---- */

static int raw_alloc(struct uz_dev_wb *wb, uint64_t *out)
{
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t w = wb->hint / 64; w < wb->nblocks / 64; w++) {
            if (wb->bitmap[w] != ~0ull) {
                uint64_t b = w * 64 + (uint64_t)__builtin_ctzll(~wb->bitmap[w]);
                if (wb->cap_blocks && b >= wb->cap_blocks)
                    break;
                wb->bitmap[w] |= 1ull << (b % 64);
                wb->hint = b + 1;
                *out = b;
                return 0;
            }
        }
        wb->hint = 0;
    }
    uint64_t b = wb->nblocks; /* all in use: grow */
    int rc = grow(wb, b);
    if (rc)
        return rc;
    wb->bitmap[b / 64] |= 1ull << (b % 64);
    wb->hint = b + 1;
    *out = b;
    return 0;
}

static void raw_free(struct uz_dev_wb *wb, uint64_t b)
{
    wb->bitmap[b / 64] &= ~(1ull << (b % 64));
    if (b < wb->hint)
        wb->hint = b;
    punch(wb, b, 1);
}

/* ---- packed layout: byte ranges ---- */

/* Adds `delta` live bytes over [off, off + len); punches blocks that become empty behind the
 * append point. Under lock. */
static void packed_account(struct uz_dev_wb *wb, uint64_t off, uint64_t len, int sign)
{
    uint64_t run = 0, run_first = 0;
    for (uint64_t pos = off; pos < off + len;) {
        uint64_t b = pos / BLK, end = (b + 1) * BLK < off + len ? (b + 1) * BLK : off + len;
        uint16_t n = (uint16_t)(end - pos);
        if (sign > 0) {
            wb->used_blocks += wb->live[b] == 0;
            wb->live[b] = (uint16_t)(wb->live[b] + n);
        } else {
            wb->live[b] = (uint16_t)(wb->live[b] - n);
            if (!wb->live[b]) {
                wb->used_blocks--;
                if ((b + 1) * BLK <= wb->tail) {
                    if (run && run_first + run == b) {
                        run++;
                    } else {
                        punch(wb, run_first, run);
                        run_first = b;
                        run = 1;
                    }
                }
            }
        }
        pos = end;
    }
    punch(wb, run_first, run);
    wb->live_bytes = sign > 0 ? wb->live_bytes + len : wb->live_bytes - len;
}

/* Reserves `len` bytes at the append point, counted live from now on. Under lock. */
static int packed_reserve(struct uz_dev_wb *wb, uint64_t len, uint64_t *off)
{
    int rc = grow(wb, (wb->tail + len - 1) / BLK);
    if (rc)
        return rc;
    *off = wb->tail;
    wb->tail += len;
    packed_account(wb, *off, len, +1);
    return 0;
}

/* ---- slots (the slot is locked by the caller) ---- */

static uint64_t obj_len(uint32_t f)
{
    return f & UZ_SLOT_SIZE_MASK;
}

/* Frees a written-back slot's copy in the store (the caller clears the slot). */
void uz_dev_wb_free(struct uz_dev *dev, struct uz_slot *s)
{
    struct uz_dev_wb *wb = dev->wb;
    uint32_t f = uz_slot_flags(s);
    pthread_mutex_lock(&wb->lock);
    if (wb->packed)
        packed_account(wb, s->val, obj_len(f), -1);
    else
        raw_free(wb, s->val);
    wb->stored--;
    pthread_mutex_unlock(&wb->lock);
    uz_counter_add(&dev->st.bd_count, -1);
}

int uz_dev_wb_read(struct uz_dev *dev, struct uz_slot *s, void *page)
{
    struct uz_dev_wb *wb = dev->wb;
    uint32_t f = uz_slot_flags(s);
    int rc;
    if (!wb->packed) {
        rc = full_pread(wb->fd, page, BLK, (off_t)(s->val * BLK));
    } else if (obj_len(f) == BLK) {
        rc = full_pread(wb->fd, page, BLK, (off_t)s->val);
    } else {
        unsigned char buf[BLK];
        rc = full_pread(wb->fd, buf, obj_len(f), (off_t)s->val);
        if (!rc)
            rc = uz_dev_decode(dev, f & ~UZ_SLOT_HUGE, buf, page, NULL);
    }
    if (!rc)
        uz_counter_add(&dev->st.bd_reads, 1);
    return rc ? -EIO : 0;
}

/* ---- attach / detach ---- */

int uz_dev_wb_open(const char *path, bool packed, struct uz_dev_wb **out)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    uint64_t cap = 0;
    if (S_ISBLK(st.st_mode)) {
        uint64_t bytes = 0;
        if (ioctl(fd, BLKGETSIZE64, &bytes) || bytes < BLK) {
            close(fd);
            return -EINVAL;
        }
        cap = bytes / BLK;
    } else if (!S_ISREG(st.st_mode)) {
        close(fd);
        return -ENOTBLK; /* the kernel's answer for what is not a block device */
    }
    struct uz_dev_wb *wb = calloc(1, sizeof(*wb));
    char *p = strdup(path);
    if (!wb || !p) {
        free(wb);
        free(p);
        close(fd);
        return -ENOMEM;
    }
    wb->fd = fd;
    wb->path = p;
    wb->cap_blocks = cap;
    wb->packed = packed;
    pthread_mutex_init(&wb->run, NULL);
    pthread_mutex_init(&wb->lock, NULL);
    *out = wb;
    return 0;
}

void uz_dev_wb_close(struct uz_dev_wb *wb)
{
    if (!wb)
        return;
    if (wb->stored && !wb->shared && wb->nblocks)
        punch(wb, 0, wb->packed ? (wb->tail + BLK - 1) / BLK : wb->nblocks);
    close(wb->fd);
    pthread_mutex_destroy(&wb->run);
    pthread_mutex_destroy(&wb->lock);
    free(wb->bitmap);
    free(wb->live);
    free(wb->path);
    free(wb);
}

const char *uz_dev_wb_path(const struct uz_dev_wb *wb)
{
    return wb ? wb->path : NULL;
}

uint64_t uz_dev_wb_stored(struct uz_dev_wb *wb)
{
    if (!wb)
        return 0;
    pthread_mutex_lock(&wb->lock);
    uint64_t n = wb->stored;
    pthread_mutex_unlock(&wb->lock);
    return n;
}

void uz_dev_wb_set_packed(struct uz_dev_wb *wb, bool packed)
{
    /* Only while empty (the caller checked under the exclusive lock). */
    free(wb->bitmap);
    free(wb->live);
    wb->bitmap = NULL;
    wb->live = NULL;
    wb->nblocks = wb->hint = wb->tail = wb->live_bytes = wb->used_blocks = 0;
    wb->packed = packed;
}

void uz_dev_wb_fork_child(struct uz_dev_wb *wb)
{
    if (!wb)
        return;
    pthread_mutex_init(&wb->run, NULL);
    pthread_mutex_init(&wb->lock, NULL);
    wb->shared = true;
}

bool uz_dev_wb_shared(const struct uz_dev_wb *wb)
{
    return wb && wb->shared;
}

/* ---- writeback ---- */

struct item {
    uint64_t index;
    uz_handle_t handle; /* the pool object when picked */
    uint32_t flags;     /* the slot's data flags when picked */
    uint32_t len;       /* bytes in the store */
    uint64_t where;     /* block (raw) or offset (packed) */
};

static bool wanted(uint32_t f, unsigned pick)
{
    if (!(f & UZ_SLOT_ALLOC) || (f & (UZ_SLOT_SAME | UZ_SLOT_WB | UZ_SLOT_PP)))
        return false;
    if ((pick & UZ_DEV_PICK_IDLE) && !(f & UZ_SLOT_IDLE))
        return false;
    if ((pick & UZ_DEV_PICK_HUGE) && !(f & UZ_SLOT_HUGE))
        return false;
    if ((pick & UZ_DEV_PICK_INCOMP) && !(f & UZ_SLOT_INCOMP))
        return false;
    return true;
}

/* Takes the budget of writeback_limit for one page. false: exhausted. */
static bool limit_take(struct uz_dev *dev)
{
    if (!atomic_load(&dev->wb_limit_enable))
        return true;
    uint64_t v = atomic_load(&dev->wb_limit);
    while (v && !atomic_compare_exchange_weak(&dev->wb_limit, &v, v - 1))
        ;
    return v != 0;
}

static void limit_return(struct uz_dev *dev, uint64_t n)
{
    if (n && atomic_load(&dev->wb_limit_enable))
        atomic_fetch_add(&dev->wb_limit, n);
}

/* Raw layout: decodes a picked item into its block of the batch, under the slot's lock. A slot
 * changed since it was picked (PP gone) is not decoded: its block is zeroed, and the copy is
 * freed again at commit. @return : 0 or -EIO (a corrupt object). */
static int decode_item(struct uz_dev *dev, const struct item *it, unsigned char *dst)
{
    struct uz_slot *s = &dev->table[it->index];
    int rc = 0;
    uz_slot_lock(s);
    uint32_t f = uz_slot_flags(s);
    if ((f & UZ_SLOT_PP) && s->val == it->handle && (f & UZ_SLOT_MULTI)) {
        rc = uz_dev_mobj_read(dev, s, it->index, dst, NULL);
    } else if ((f & UZ_SLOT_PP) && s->val == it->handle) {
        rc = uz_dev_decode(dev, f, uz_pool_map(dev->pool, s->val), dst, NULL);
        uz_pool_unmap(dev->pool, s->val);
    } else {
        memset(dst, 0, BLK);
    }
    uz_slot_unlock(s);
    return rc;
}

/* Writes the batch to the store: raw blocks in runs of consecutive numbers, packed objects as
 * one range. Space is allocated here; on failure it is freed again. */
static int write_batch(struct uz_dev_wb *wb, struct item *it, unsigned n, unsigned char *buf)
{
    int rc = 0;
    pthread_mutex_lock(&wb->lock);
    if (wb->packed) {
        uint64_t total = 0, off;
        for (unsigned k = 0; k < n; k++)
            total += it[k].len;
        rc = packed_reserve(wb, total, &off);
        for (unsigned k = 0; !rc && k < n; k++) {
            it[k].where = off;
            off += it[k].len;
        }
    } else {
        unsigned k;
        for (k = 0; k < n && !rc; k++)
            rc = raw_alloc(wb, &it[k].where);
        if (rc)
            for (unsigned j = 0; j + 1 < k; j++)
                raw_free(wb, it[j].where);
    }
    if (!rc)
        wb->stored += n;
    pthread_mutex_unlock(&wb->lock);
    if (rc)
        return rc;

    if (wb->packed) {
        uint64_t total = it[n - 1].where + it[n - 1].len - it[0].where;
        rc = full_pwrite(wb->fd, buf, total, (off_t)it[0].where);
    } else {
        for (unsigned k = 0; k < n && !rc;) {
            unsigned j = k + 1;
            while (j < n && it[j].where == it[j - 1].where + 1)
                j++;
            rc = full_pwrite(wb->fd, buf + (size_t)k * BLK, (size_t)(j - k) * BLK,
                             (off_t)(it[k].where * BLK));
            k = j;
        }
    }
    if (rc) {
        pthread_mutex_lock(&wb->lock);
        for (unsigned k = 0; k < n; k++) {
            if (wb->packed)
                packed_account(wb, it[k].where, it[k].len, -1);
            else
                raw_free(wb, it[k].where);
        }
        wb->stored -= n;
        pthread_mutex_unlock(&wb->lock);
    }
    return rc;
}

/* Commits (or, for slots changed meanwhile, undoes) a written batch. @return : slots moved. */
static uint64_t commit_batch(struct uz_dev *dev, struct item *it, unsigned n, bool written)
{
    struct uz_dev_wb *wb = dev->wb;
    uint64_t moved = 0, unused = 0;
    for (unsigned k = 0; k < n; k++) {
        struct uz_slot *s = &dev->table[it[k].index];
        uz_slot_lock(s);
        uint32_t f = uz_slot_flags(s);
        bool keep = written && (f & UZ_SLOT_PP);
        if (keep) {
            /* The pool object goes; the slot now points into the store. It still counts in
             * orig_data_size (pages_stored), no longer in compr_data_size. */
            if (f & UZ_SLOT_MULTI) {
                uz_dev_mobj_put(dev, s, it[k].index); /* counts the object when it goes */
                f &= ~UZ_SLOT_PRIO_MASK;              /* a raw page in the store */
            } else {
                uz_pool_free(dev->pool, s->val);
                uz_counter_add(&dev->st.compr_data_size, -(int64_t)obj_len(f));
            }
            if (f & UZ_SLOT_HUGE)
                uz_counter_add(&dev->st.huge_pages, -1);
            s->val = it[k].where;
            uz_slot_set_flags(s, UZ_SLOT_WB | (f & UZ_SLOT_PRIO_MASK) | it[k].len);
            uz_counter_add(&dev->st.bd_count, 1);
            uz_counter_add(&dev->st.bd_writes, 1);
            moved++;
        } else {
            if (f & UZ_SLOT_PP)
                uz_slot_set_flags(s, f & ~UZ_SLOT_PP);
            if (written) {
                /* Changed while in flight: its copy in the store is stale. */
                pthread_mutex_lock(&wb->lock);
                if (wb->packed)
                    packed_account(wb, it[k].where, it[k].len, -1);
                else
                    raw_free(wb, it[k].where);
                wb->stored--;
                pthread_mutex_unlock(&wb->lock);
                unused++;
            }
        }
        uz_slot_unlock(s);
    }
    limit_return(dev, unused);
    return moved;
}

static void clean(struct uz_dev *dev);

/* One batch: its items and the bytes to write. `n` is fixed from picking until the batch is
 * done; decoding may cut it at `bad`. */
struct batch {
    struct item *it;
    unsigned char *buf;
    unsigned n;
    uint64_t seq;          /* its number in the call, from 0 */
    _Atomic unsigned next; /* raw: items [0, next) are claimed for decoding (a run at once) */
    _Atomic unsigned left; /* raw: items not decoded yet; whoever decodes the last one queues it */
    _Atomic unsigned bad;  /* the first item that failed to decode; n when none: items [0, bad)
                            * are written */
};

/* Items claimed at once: four slots share a cache line of the table, so the two decoding
 * threads do not take turns at one line's slot locks; at least object_pages, so that one thread
 * decodes the pages of a multi-page object (its stream keeps the object decoded). */
#define DECODE_RUN 4u

/*
 * The worker thread of one writeback call. The caller picks batch k + 1 while the worker writes
 * and commits batch k; then both decode batch k + 1 (raw layout), and whichever decodes its last
 * item queues it for writing. Neither waits for the other in the steady state: the caller goes
 * on to pick batch k + WB_BUFS once batch k is done (its buffer is then free), the worker writes
 * batch k + 1 as soon as it is decoded. The first error (a failed write, a corrupt object) is kept
 * with its batch: later batches are undone instead of written, and the caller stops picking.
 * `lock` is a leaf (its holder only waits on `cond`). The thread holds no device lock of its
 * own (the caller's init_lock covers it: the caller waits for every batch before it returns);
 * it takes slot locks one at a time, under which decoding takes a stream and maps the object
 * (slot -> stream -> pool) and committing frees the object and takes the store's leaf lock.
 * Batch k's buffers are picked into again only once done == k + 1, and by then the worker has
 * left decode_share() on it: it runs every job itself, after its own decoding.
 */
struct worker {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct uz_dev *dev;
    /* Protected by `lock`. */
    struct batch *queue[WB_BUFS]; /* decoded, in batch order: the head runs once seq == done */
    unsigned queued;
    struct batch *dec; /* published for decoding and not complete; NULL when none */
    bool quit;
    uint64_t done;    /* batches finished: written and committed, or undone */
    int err;          /* the first error; 0 when none */
    uint64_t err_seq; /* its batch: the batches after it are undone */
    uint64_t moved;   /* slots committed */
};

/* Under w->lock: keeps the first error, in batch order. */
static void note_error(struct worker *w, int rc, uint64_t seq)
{
    if (!w->err || seq < w->err_seq) {
        w->err = rc;
        w->err_seq = seq;
    }
}

/* Writes and commits items [0, bad) of a batch, or undoes them after an earlier batch's error;
 * a failed write is counted and leaves its slots in RAM, unchanged. */
static void run_job(struct worker *w, struct batch *b)
{
    struct uz_dev *dev = w->dev;
    unsigned n = atomic_load_explicit(&b->bad, memory_order_relaxed);
    pthread_mutex_lock(&w->lock);
    bool undo = w->err && b->seq > w->err_seq;
    pthread_mutex_unlock(&w->lock);
    int rc = n && !undo ? write_batch(dev->wb, b->it, n, b->buf) : 0;
    uint64_t moved = 0;
    if (rc)
        uz_counter_add(&dev->st.failed_writes, 1);
    if (undo || rc) {
        limit_return(dev, n);
        commit_batch(dev, b->it, n, false);
    } else {
        moved = commit_batch(dev, b->it, n, true);
    }
    pthread_mutex_lock(&w->lock);
    if (rc)
        note_error(w, rc, b->seq);
    w->moved += moved;
    w->done++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* A batch is decoded (or, packed, picked): the items from a corrupt object on leave PP and
 * return their budget; the batch is queued for the worker, or run here when there is none. */
static void batch_ready(struct worker *w, struct batch *b)
{
    unsigned bad = atomic_load_explicit(&b->bad, memory_order_relaxed);
    if (bad < b->n) {
        limit_return(w->dev, b->n - bad);
        commit_batch(w->dev, b->it + bad, b->n - bad, false);
    }
    pthread_mutex_lock(&w->lock);
    if (bad < b->n)
        note_error(w, -EIO, b->seq);
    if (w->dec == b)
        w->dec = NULL;
    if (w->started) {
        /* In batch order: batch k + 1 may be decoded before the last run of batch k is. */
        unsigned at = w->queued++;
        for (; at && w->queue[at - 1]->seq > b->seq; at--)
            w->queue[at] = w->queue[at - 1];
        w->queue[at] = b;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    if (!w->started)
        run_job(w, b);
}

/* Decodes unclaimed items of `b` until none is left (the caller and the worker both do). */
static void decode_share(struct worker *w, struct batch *b)
{
    const unsigned run = w->dev->object_pages > DECODE_RUN ? w->dev->object_pages : DECODE_RUN;
    for (;;) {
        unsigned k = atomic_fetch_add_explicit(&b->next, run, memory_order_relaxed);
        if (k >= b->n)
            return;
        unsigned end = k + run < b->n ? k + run : b->n;
        for (unsigned j = k; j < end; j++) {
            if (decode_item(w->dev, &b->it[j], b->buf + (size_t)j * BLK)) {
                unsigned cur = atomic_load_explicit(&b->bad, memory_order_relaxed);
                while (j < cur && !atomic_compare_exchange_weak_explicit(
                                      &b->bad, &cur, j, memory_order_relaxed, memory_order_relaxed))
                    ;
            }
        }
        /* acq_rel: the last one sees every block and `bad` the other thread wrote */
        if (atomic_fetch_sub_explicit(&b->left, end - k, memory_order_acq_rel) == end - k) {
            batch_ready(w, b);
            return;
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (w->queued && w->queue[0]->seq == w->done) {
            struct batch *b = w->queue[0];
            w->queued--;
            memmove(w->queue, w->queue + 1, w->queued * sizeof(w->queue[0]));
            pthread_mutex_unlock(&w->lock);
            run_job(w, b);
            pthread_mutex_lock(&w->lock);
            continue;
        }
        struct batch *d = w->dec;
        if (d && atomic_load_explicit(&d->next, memory_order_relaxed) < d->n) {
            pthread_mutex_unlock(&w->lock);
            decode_share(w, d);
            pthread_mutex_lock(&w->lock);
            continue;
        }
        if (w->quit)
            break;
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void worker_start(struct worker *w, struct uz_dev *dev)
{
    *w = (struct worker){.dev = dev};
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* a library thread takes no signal */
    w->started = pthread_create(&w->thread, NULL, worker_main, w) == 0;
    if (w->started)
        pthread_setname_np(w->thread, "uzram-wb");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Waits until `n` batches are done. @return : the first error so far, or 0. */
static int worker_wait(struct worker *w, uint64_t n)
{
    pthread_mutex_lock(&w->lock);
    while (w->done < n)
        pthread_cond_wait(&w->cond, &w->lock);
    int rc = w->err;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

static void worker_stop(struct worker *w)
{
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->quit = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

/* Raw layout: publishes a picked batch for the worker to help, and decodes it. */
static void decode_batch(struct worker *w, struct batch *b)
{
    atomic_store_explicit(&b->next, 0, memory_order_relaxed);
    atomic_store_explicit(&b->left, b->n, memory_order_relaxed);
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->dec = b;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
    decode_share(w, b);
}

struct scan {
    unsigned pick, batch;
    uint64_t i, hi, max_pages, taken;
    bool packed;
};

/* Picks the next batch of candidates, marking them PP; packed, copies their objects out (raw:
 * decode_batch() decodes them next). *rc: set when the scan must stop (-EIO: writeback_limit
 * exhausted). @return : the batch's size. */
static unsigned fill_batch(struct uz_dev *dev, struct scan *sc, struct batch *b, int *rc)
{
    unsigned n = 0;
    size_t at = 0;
    for (; sc->i < sc->hi && n < sc->batch && !*rc; sc->i++) {
        if (sc->max_pages && sc->taken == sc->max_pages)
            break;
        struct uz_slot *s = &dev->table[sc->i];
        if (!wanted(uz_slot_flags(s), sc->pick))
            continue; /* racy peek, rechecked under the lock */
        uz_slot_lock(s);
        uint32_t f = uz_slot_flags(s);
        if (wanted(f, sc->pick)) {
            if (!limit_take(dev)) {
                *rc = -EIO; /* the kernel's answer to an exhausted writeback_limit */
            } else {
                uint32_t len = BLK;
                int r = 0;
                if (sc->packed && (f & UZ_SLOT_MULTI)) {
                    /* A page of a multi-page object goes to the store as a raw page, in either
                     * layout: the object stays in RAM for its other pages (the store keeps no
                     * mask). Raw, decode_item() decodes it as any other. */
                    r = uz_dev_mobj_read(dev, s, sc->i, b->buf + at, NULL);
                } else if (sc->packed) {
                    len = (uint32_t)obj_len(f);
                    memcpy(b->buf + at, uz_pool_map(dev->pool, s->val), len);
                    uz_pool_unmap(dev->pool, s->val);
                }
                if (r) {
                    limit_return(dev, 1);
                    *rc = r;
                } else {
                    uz_slot_set_flags(s, f | UZ_SLOT_PP);
                    b->it[n++] =
                        (struct item){.index = sc->i, .handle = s->val, .flags = f, .len = len};
                    at += len;
                    sc->taken++;
                }
            }
        }
        uz_slot_unlock(s);
    }
    b->n = n;
    atomic_store_explicit(&b->bad, n, memory_order_relaxed);
    return n;
}

int uz_dev_writeback_locked(struct uz_dev *dev, unsigned pick, uint64_t lo, uint64_t hi,
                            uint64_t max_pages, uint64_t *done)
{
    struct uz_dev_wb *wb = dev->wb;
    if (!dev->table)
        return -EINVAL;
    if (!wb)
        return -ENODEV;
    if (wb->shared)
        return -EBUSY;              /* a forked child never writes into its parent's store */
    if (pick != UZ_DEV_PICK_NONE) { /* a type: the whole device (dev_internal.h) */
        lo = 0;
        hi = dev->nr_pages;
    }
    if (hi > dev->nr_pages)
        hi = dev->nr_pages;
    unsigned batch = atomic_load(&dev->wb_batch);
    batch = batch < 1 ? 1 : batch > MAX_BATCH ? MAX_BATCH : batch;
    struct batch set[WB_BUFS] = {{0}};
    int rc = 0;
    for (int k = 0; k < WB_BUFS && !rc; k++) {
        set[k].it = malloc(sizeof(struct item) * batch);
        set[k].buf = aligned_alloc(BLK, (size_t)batch * BLK);
        if (!set[k].it || !set[k].buf)
            rc = -ENOMEM;
    }
    struct scan sc = {.pick = pick,
                      .batch = batch,
                      .i = lo,
                      .hi = hi,
                      .max_pages = max_pages,
                      .packed = wb->packed};
    pthread_mutex_lock(&wb->run);
    /* The objects freed go back to the OS together (pool_arena.c: one TLB flush per 1024
     * emptied zspages instead of one per zspage). */
    uz_pool_hold(dev->pool);
    struct worker w;
    bool have_worker = !rc;
    if (have_worker)
        worker_start(&w, dev);
    /* WB_BUFS batches: batch k + WB_BUFS is picked into batch k's buffers once k is done. A failed
     * write or a corrupt object undoes the batches after it (their slots stay in RAM, unchanged).
     */
    uint64_t made = 0;
    for (bool more = !rc; more;) {
        if (worker_wait(&w, made < WB_BUFS ? 0 : made - (WB_BUFS - 1)))
            break;
        struct batch *b = &set[made % WB_BUFS];
        unsigned n = fill_batch(dev, &sc, b, &rc);
        if (!n || rc || sc.i >= sc.hi || (max_pages && sc.taken == max_pages))
            more = false;
        if (!n)
            break;
        b->seq = made++;
        if (sc.packed)
            batch_ready(&w, b);
        else
            decode_batch(&w, b);
    }
    if (have_worker) {
        int e = worker_wait(&w, made);
        if (e)
            rc = e;
        worker_stop(&w);
        *done += w.moved;
    }
    for (int k = 0; k < WB_BUFS; k++) {
        free(set[k].it);
        free(set[k].buf);
    }
    uz_pool_unhold(dev->pool);
    if (sc.packed)
        clean(dev);
    pthread_mutex_unlock(&wb->run);
    return rc;
}

/* ---- packed cleaning ---- */

/* Moves one locked written-back slot's object to the append point. */
static int relocate(struct uz_dev *dev, struct uz_slot *s)
{
    struct uz_dev_wb *wb = dev->wb;
    uint32_t f = uz_slot_flags(s);
    uint64_t len = obj_len(f), off;
    unsigned char buf[BLK];
    int rc = full_pread(wb->fd, buf, len, (off_t)s->val);
    if (rc)
        return rc;
    pthread_mutex_lock(&wb->lock);
    rc = packed_reserve(wb, len, &off);
    pthread_mutex_unlock(&wb->lock);
    if (rc)
        return rc;
    rc = full_pwrite(wb->fd, buf, len, (off_t)off);
    pthread_mutex_lock(&wb->lock);
    if (rc) {
        packed_account(wb, off, len, -1);
    } else {
        packed_account(wb, s->val, len, -1);
        s->val = off;
    }
    pthread_mutex_unlock(&wb->lock);
    return rc;
}

/* When the blocks in use exceed 1.10x the live bytes + 512 KiB, moves the objects of segments
 * that are less than half live (those behind the append point) to the append point. */
static void clean(struct uz_dev *dev)
{
    struct uz_dev_wb *wb = dev->wb;
    pthread_mutex_lock(&wb->lock);
    uint64_t used = wb->used_blocks * BLK, live = wb->live_bytes,
             tail_seg = wb->tail / BLK / SEG_BLKS;
    uint64_t nseg = wb->nblocks / SEG_BLKS;
    uint8_t *victim = NULL;
    if (used > live + live / 10 + (512u << 10) && nseg && (victim = calloc(nseg, 1))) {
        for (uint64_t g = 0; g < nseg && g < tail_seg; g++) {
            uint64_t sum = 0;
            for (uint64_t b = g * SEG_BLKS; b < (g + 1) * SEG_BLKS; b++)
                sum += wb->live[b];
            victim[g] = sum && sum < SEG_BLKS * BLK / 2;
        }
    }
    pthread_mutex_unlock(&wb->lock);
    if (!victim)
        return;
    for (uint64_t i = 0; i < dev->nr_pages; i++) {
        struct uz_slot *s = &dev->table[i];
        if (!(uz_slot_flags(s) & UZ_SLOT_WB))
            continue;
        uz_slot_lock(s);
        uint32_t f = uz_slot_flags(s);
        uint64_t g = s->val / BLK / SEG_BLKS;
        if ((f & UZ_SLOT_WB) && g < nseg && victim[g] && relocate(dev, s))
            i = dev->nr_pages; /* an I/O error: stop cleaning, nothing is lost */
        uz_slot_unlock(s);
    }
    free(victim);
}

void uz_dev_wb_usage(struct uz_dev_wb *wb, uint64_t *live_bytes, uint64_t *used_bytes)
{
    pthread_mutex_lock(&wb->lock);
    *live_bytes = wb->packed ? wb->live_bytes : wb->stored * BLK;
    *used_bytes = wb->packed ? wb->used_blocks * BLK : wb->stored * BLK;
    pthread_mutex_unlock(&wb->lock);
}
