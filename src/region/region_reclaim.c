// SPDX-License-Identifier: MIT
/*
 * region_reclaim.c - the reclaim thread (the region's kswapd), writeback and its completion.
 *
 * Reclaim wakes when resident pages pass start_wm and evicts until the pages it will still drop
 * bring them under stop_wm. It sweeps a clock hand over the page words: a referenced page (a
 * fault or a write-protect fault set its bit) gets a second chance; a CLEAN page is dropped at
 * once (its stored copy is valid: no compression); a DIRTY page is written back. Victims are
 * gathered in batches so that neighbours share one write-protect ioctl and one MADV_DONTNEED.
 *
 * Writeback of a run of DIRTY pages, all locked: write-protect the run, bump the generation,
 * state WB, mark in flight; unlock; copy each page into a request's snapshot buffer (with
 * process_vm_readv, which neither crashes on a page the application made unreadable nor needs
 * the page lock: region_sys.c); keep the snapshots whose generation did not move meanwhile
 * (no write can have landed in them) and submit those to the device's async queue. A page whose
 * writeback is still in flight (it was redirtied meanwhile) is not written back again until that
 * one completes: submissions happen unlocked, so two could reach the queue in the other order and
 * the stale copy land last. Completion (on a zramd worker): if the page is still WB with the
 * request's generation, it becomes CLEAN and, for an eviction, is queued for the reclaim thread to
 * drop; if it was redirtied meanwhile the stored copy is stale and is discarded. The drop re-checks
 * CLEAN under the page lock, so a write between completion and drop (a write-protect fault: CLEAN
 * -> DIRTY) keeps the page. Evictions that move pages out skip the write-protect (UZ_PG_UNPROT,
 * region_internal.h): writes land unseen until the move, which takes the page out of the
 * application's reach and compares it with the snapshot; a page found changed is stored as it
 * is or put back (move_back), like a write through a pin. A page whose MADV_DONTNEED failed stays
 * CLEAN (and resident); a write-protect that failed leaves its run DIRTY. Both are counted
 * (region_internal.h: the error policy), and reclaim does nothing more once the region has failed.
 */
#include "region_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- requests ---- */

static unsigned take_reqs(struct uz_region *r, struct uz_region_req **out, unsigned n, bool wait)
{
    pthread_mutex_lock(&r->lock);
    while (wait && (!r->nfree || r->fork_hold) && !atomic_load(&r->stop))
        pthread_cond_wait(&r->req_cond, &r->lock);
    unsigned k = 0;
    while (k < n && r->free_reqs && !r->fork_hold) { /* none while a fork is prepared */
        out[k++] = r->free_reqs;
        r->free_reqs = r->free_reqs->next;
        r->nfree--;
    }
    pthread_mutex_unlock(&r->lock);
    return k;
}

/* Called with r->lock held. */
static void put_req_locked(struct uz_region *r, struct uz_region_req *q)
{
    q->next = r->free_reqs;
    r->free_reqs = q;
    r->nfree++;
    pthread_cond_broadcast(&r->req_cond);
}

/* Whether the completed evictions should be dropped now (r->lock held): a full batch, a fault
 * waiting for room, or nothing else in flight. */
static bool drain_due(struct uz_region *r)
{
    return r->ndone >= UZ_DROP_BATCH || (r->ndone && (atomic_load(&r->room_waiters) ||
                                                      r->ndone >= atomic_load(&r->pending_evict)));
}

static void wb_done(void *arg, int result)
{
    struct uz_region_req *q = arg;
    struct uz_region *r = q->r;
    uint64_t w = uz_region_pg_lock(r, q->index);
    unsigned st = uz_pg_state(w);
    bool drop = false;
    w &= ~UZ_PG_INFLIGHT;
    if (st == UZ_PG_WB && uz_pg_gen(w) == q->gen) {
        if (!result) {
            /* An unprotected eviction stays unprotected: trusted only by its move. */
            w = uz_pg_set_state(w, UZ_PG_CLEAN) | UZ_PG_FRESH | (w & UZ_PG_UNPROT);
            drop = q->evict;
        } else {
            /* Not stored (no memory): dirty again, still protected; the next write unprotects
             * and a later sweep retries. */
            w = uz_pg_set_state(w, UZ_PG_DIRTY);
            atomic_store_explicit(&r->wd.last_wb_err, result, memory_order_relaxed);
            uz_counter_add(&r->st.wb_errors, 1);
        }
    } else if (!result && (st == UZ_PG_DIRTY || st == UZ_PG_EMPTY || st == UZ_PG_HOLE)) {
        /* Redirtied (or discarded, or unmapped) during writeback: what was stored is stale;
         * free it. (No other writeback of the page can be in flight: one at a time.) */
        uz_region_discard_slot(r, q->index);
    }
    uz_region_pg_unlock(r, q->index, w);

    pthread_mutex_lock(&r->lock);
    if (r->wb_waiters)
        pthread_cond_broadcast(&r->wb_cond);
    if (drop) {
        /* Keep the request (and its place in pending_evict) until the reclaim thread drops
         * the page; the completed list is bounded by the number of requests. Reclaim is woken
         * for a batch, not for every page: one MADV_DONTNEED (one TLB shootdown) per run. */
        q->next = r->done_reqs;
        r->done_reqs = q;
        r->ndone++;
        if (drain_due(r))
            pthread_cond_signal(&r->reclaim_cond);
        if (r->fork_hold)
            pthread_cond_broadcast(&r->req_cond); /* the fork's drain counts these home */
    } else {
        if (q->evict)
            atomic_fetch_sub(&r->pending_evict, 1);
        put_req_locked(r, q);
        if (q->evict && drain_due(r))
            pthread_cond_signal(&r->reclaim_cond);
    }
    pthread_mutex_unlock(&r->lock);
}

/* ---- drop and writeback of runs ---- */

static void abandon(struct uz_region *r, struct uz_region_req *q, bool failed);

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* What became of a locked CLEAN page offered for eviction. */
enum evict_out {
    EV_STAYS,    /* still mapped and CLEAN (a transient failure) */
    EV_GONE,     /* out of the region, its contents were the slot's: SWAPPED */
    EV_KEPT,     /* the kernel refused (pinned, mlock'ed): DIRTY, kept, not counted */
    EV_RESTORED, /* moved out, found changed since the snapshot, put back: DIRTY */
    EV_ZAPPED,   /* nothing to move: the application dropped it (a raw madvise): EMPTY */
    EV_SAVED,    /* moved out, changed, could not be put back: its contents stored, SWAPPED */
};

/* Whether the page moved into scratch page `s` holds what the slot of page i holds. `snap` is
 * the snapshot when the caller still has it; otherwise a page that became CLEAN by a writeback
 * (FRESH) is compared with the slot read back. A CLEAN page swapped in read-only and not
 * written since needs no comparison: no write pin could have been taken on it (a pin for
 * writing write-faults a write-protected pte first, which makes the page DIRTY). An
 * unprotected eviction's page (UNPROT, also FRESH) is always compared: any write may have
 * landed in it since the snapshot. */
static bool moved_intact(struct uz_region *r, uint64_t i, uint64_t w, const unsigned char *s,
                         const unsigned char *snap)
{
    if (!snap && !(w & (UZ_PG_FRESH | UZ_PG_UNPROT)))
        return true;
    if (!snap) {
        if (uz_dev_read_page(r->dev, i, r->scratch_cmp))
            return false; /* cannot tell: keep the page */
        snap = r->scratch_cmp;
    }
    return memcmp(s, snap, UZ_PAGE_SIZE) == 0;
}

/* Keeps page i, moved to scratch page s and found changed (a write through a pin) or, for a
 * kept page, simply movable again. With REMOVE events its contents are stored in the slot
 * (SWAPPED): moving it back could map them again after the application dropped the page
 * meanwhile, because the drop's event may have been read (and the kernel's drop done, over
 * nothing) while this thread held the page lock its handler waits for; the model's
 * BUG_MOVE_BACK. Otherwise, and when the device has no room, it is put back: moved back, or
 * copied in, or (the range no longer registered: unmapped, its event not handled yet)
 * written through the kernel. When nothing works the region fails: no write is lost silently.
 * @return : EV_RESTORED (mapped again, DIRTY), or EV_SAVED (stored: SWAPPED). */
static enum evict_out move_back(struct uz_region *r, uint64_t i, unsigned char *s)
{
    int wrc = r->ev_remove ? uz_dev_write_page(r->dev, i, s) : -EAGAIN;
    if (!wrc) {
        uz_counter_add(&r->st.evict_saved, 1);
        return EV_SAVED;
    }
    if (!uz_region_sys_put_back(r, i, s))
        return EV_RESTORED;
    if (wrc == -EAGAIN && !(wrc = uz_dev_write_page(r->dev, i, s))) {
        uz_counter_add(&r->st.evict_saved, 1);
        return EV_SAVED;
    }
    uz_region_set_failed(r, wrc);
    return EV_SAVED;
}

/* Evicts the locked CLEAN pages locked[0..m) (ascending) by moving them into the scratch, page
 * k to scratch page k, under scratch_lock: a run of neighbours goes in one call (one TLB
 * flush, region_sys.c), and a page the kernel refuses ends its run's call without costing its
 * neighbours theirs. */
static void evict_moving(struct uz_region *r, const uint64_t *locked, const uint64_t *words,
                         unsigned char *const *snap, unsigned m, enum evict_out *out)
{
    pthread_mutex_lock(&r->scratch_lock);
    bool reset = false;
    for (unsigned k = 0; k < m;) {
        unsigned len = 1;
        while (k + len < m && locked[k + len] == locked[k] + len)
            len++;
        unsigned done = 0;
        int rc = uz_region_sys_move_run(r, r->scratch + (size_t)k * UZ_PAGE_SIZE,
                                        r->base + locked[k] * UZ_PAGE_SIZE, len, &done);
        for (unsigned j = k; j < k + done; j++) {
            unsigned char *sp = r->scratch + (size_t)j * UZ_PAGE_SIZE;
            if (moved_intact(r, locked[j], words[j], sp, snap ? snap[j] : NULL)) {
                out[j] = EV_GONE;
            } else {
                /* A write through a pin landed after the snapshot: the page is the truth. */
                out[j] = move_back(r, locked[j], sp);
            }
        }
        k += done;
        if (!rc)
            continue;
        if (rc == -EEXIST && !reset) {
            /* The scratch was populated (mlockall's populate): free it and unlock it, then
             * try page k again. */
            reset = true;
            int e = uz_region_sys_scratch_unlock(r);
            if (e)
                uz_region_error(r, e);
            continue;
        }
        if (rc == -EBUSY && atomic_load_explicit(&r->forked, memory_order_relaxed)) {
            /* Maybe shared copy-on-write with a forked process rather than pinned: made
             * exclusive and moved again (region_fork.c). It was writable meanwhile, so it is
             * compared with the slot whatever its history. */
            unsigned char *a = r->base + locked[k] * UZ_PAGE_SIZE;
            unsigned char *sp = r->scratch + (size_t)k * UZ_PAGE_SIZE;
            int e = uz_region_fork_unshare(r, locked[k]);
            if (e) {
                uz_region_error(r, e); /* the page is kept (DIRTY) below */
            } else if (!(rc = uz_region_sys_move(r, sp, a))) {
                out[k] = moved_intact(r, locked[k], words[k] | UZ_PG_FRESH, sp, NULL)
                             ? EV_GONE
                             : move_back(r, locked[k], sp);
                k++;
                continue;
            }
        }
        if (rc == -EBUSY || rc == -EINVAL) {
            out[k] = EV_KEPT;
        } else if (rc == -ENOENT) {
            /* Nothing mapped: the application dropped the page itself (a raw MADV_DONTNEED or
             * MADV_FREE, maybe after the snapshot) or unmapped it. It reads as zeros now,
             * whatever the slot holds. */
            out[k] = EV_ZAPPED;
        } else {
            uz_region_error(r, rc);
            out[k] = EV_STAYS;
        }
        k++;
    }
    /* Every page moved is stored or back in the region: the scratch can go (a page of
     * memory mlockall(MCL_ONFAULT) locked, with the scratch locked alike, may have been
     * evicted once: its contents are stored, and the scratch is unlocked on the way). */
    int rc = uz_region_sys_scratch_free(r, m);
    if (rc)
        uz_region_error(r, rc);
    pthread_mutex_unlock(&r->scratch_lock);
}

unsigned uz_region_drop(struct uz_region *r, const uint64_t *idx, struct uz_region_req *const *reqs,
                        unsigned n)
{
    uint64_t locked[UZ_RECLAIM_BATCH], words[UZ_RECLAIM_BATCH];
    unsigned char *snap[UZ_RECLAIM_BATCH];
    struct iovec iov[UZ_RECLAIM_BATCH];
    unsigned run[UZ_RECLAIM_BATCH]; /* the iov each locked page is in */
    bool ok[UZ_RECLAIM_BATCH];
    enum evict_out out[UZ_RECLAIM_BATCH];
    unsigned m = 0, niov = 0;
    if (n > UZ_RECLAIM_BATCH)
        n = UZ_RECLAIM_BATCH;
    for (unsigned k = 0; k < n; k++) {
        if (k && idx[k] <= idx[k - 1])
            continue; /* not ascending: a page locked twice would deadlock */
        uint64_t w = uz_region_pg_lock(r, idx[k]);
        if (uz_pg_state(w) != UZ_PG_CLEAN || uz_pg_pins(w)) {
            uz_region_pg_unlock(r, idx[k], w);
            continue;
        }
        unsigned char *a = r->base + idx[k] * UZ_PAGE_SIZE;
        if (niov && (unsigned char *)iov[niov - 1].iov_base + iov[niov - 1].iov_len == a) {
            iov[niov - 1].iov_len += UZ_PAGE_SIZE;
        } else {
            iov[niov].iov_base = a;
            iov[niov++].iov_len = UZ_PAGE_SIZE;
        }
        run[m] = niov - 1;
        locked[m] = idx[k];
        /* The snapshot is only as good as its generation: a page redirtied and written back
         * again since is compared with the slot instead. */
        snap[m] = reqs && reqs[k]->gen == uz_pg_gen(w) ? reqs[k]->buf : NULL;
        words[m++] = w;
    }
    if (!m)
        return 0;
    if (r->can_move) {
        evict_moving(r, locked, words, snap, m, out);
    } else {
        int rc = uz_region_sys_zap(r, iov, niov, ok);
        /* EINVAL: mlock'ed (MADV_DONTNEED refuses VM_LOCKED): the pages stay, kept. */
        if (rc && rc != -EINVAL)
            uz_region_error(r, rc);
        for (unsigned k = 0; k < m; k++)
            out[k] = ok[run[k]] ? EV_GONE : rc == -EINVAL ? EV_KEPT : EV_STAYS;
    }
    unsigned fresh = 0, dropped = 0, kept = 0, zapped = 0;
    for (unsigned k = 0; k < m; k++) {
        uint64_t w = words[k];
        if (out[k] == EV_STAYS) {
            if (w & UZ_PG_UNPROT) {
                /* Still mapped and writable: the slot cannot be trusted, the page is DIRTY. */
                uz_region_discard_slot(r, locked[k]);
                w = uz_pg_dirtied(w);
            }
            uz_region_pg_unlock(r, locked[k], w); /* still mapped: stays CLEAN */
            continue;
        }
        if (w & UZ_PG_SAMPLE)
            uz_region_note_sample(r, false);
        if (out[k] == EV_ZAPPED) {
            uz_region_discard_slot(r, locked[k]);
            w &= ~(UZ_PG_REF | UZ_PG_SAMPLE | UZ_PG_FRESH);
            uz_region_pg_unlock(r, locked[k], uz_pg_set_state(w, UZ_PG_EMPTY));
            zapped++;
            continue;
        }
        if (out[k] == EV_GONE || out[k] == EV_SAVED) {
            dropped++;
            fresh += (w & UZ_PG_FRESH) != 0;
            w &= ~(UZ_PG_REF | UZ_PG_SAMPLE | UZ_PG_FRESH);
            uz_region_pg_unlock(r, locked[k], uz_pg_set_state(w, UZ_PG_SWAPPED));
            continue;
        }
        /* Kept or restored: the slot may be stale (a pinned write), the page is DIRTY. */
        uz_region_discard_slot(r, locked[k]);
        w = uz_pg_dirtied(w) | UZ_PG_REF;
        if (out[k] == EV_KEPT) {
            /* Unprotected, so that a write does not fault; DIRTY allows it to fail (and an
             * unprotected eviction's page is writable already, or protected by an earlier
             * failure, which DIRTY allows too). */
            int rc = (words[k] & UZ_PG_UNPROT) ? 0 : uz_region_sys_wp(r, locked[k], 1, false);
            if (rc)
                uz_region_error(r, rc);
            w |= UZ_PG_KEPT;
            kept++;
            uz_counter_add(&r->st.evict_refused, 1);
        } else {
            uz_counter_add(&r->st.evict_restored, 1);
        }
        uz_region_pg_unlock(r, locked[k], w);
    }
    atomic_fetch_add(&r->kept, kept);
    atomic_fetch_sub(&r->resident, dropped + kept + zapped);
    uz_counter_add(&r->st.swapouts, dropped);
    uz_counter_add(&r->st.swapouts_clean, dropped - fresh);
    uz_region_room_freed(r);
    return dropped;
}

/* Counts kept page i (locked, word *w) again as resident: it is tried again. */
static void unkeep_locked(struct uz_region *r, uint64_t *w)
{
    if (!(*w & UZ_PG_KEPT))
        return;
    *w = (*w & ~UZ_PG_KEPT) | UZ_PG_REF;
    atomic_fetch_sub(&r->kept, 1);
    atomic_fetch_add(&r->resident, 1);
}

unsigned uz_region_writeback(struct uz_region *r, const uint64_t *idx, unsigned n, bool evict)
{
    struct uz_region_req *q[UZ_RECLAIM_BATCH];
    uint64_t words[UZ_RECLAIM_BATCH];
    /* An eviction that moves its pages out needs no write-protection: the move compares what it
     * takes out with the snapshot (uz_region_drop), which spares each run one TLB shootdown, an
     * IPI to every core running the application (the swap benchmark's random touches: 40,000 ->
     * 51,000 per second). Any other writeback (an explicit swap-out, pages dropped with
     * MADV_DONTNEED) write-protects. */
    const bool unprot = evict && r->can_move;
    if (n > UZ_RECLAIM_BATCH)
        n = UZ_RECLAIM_BATCH;
    /* Requests first, holding no lock: the reclaim thread takes what is free, an explicit
     * swap-out waits for at least one. */
    unsigned nq = take_reqs(r, q, n, !evict), used = 0, consumed = 0, nsub = 0;
    while (consumed < n && used < nq) {
        uint64_t first = idx[consumed];
        unsigned len = 0;
        if (consumed && first <= idx[consumed - 1]) {
            consumed++; /* not ascending: a page locked twice would deadlock */
            continue;
        }
        while (consumed + len < n && used + len < nq && idx[consumed + len] == first + len) {
            uint64_t w = uz_region_pg_lock(r, first + len);
            if (uz_pg_state(w) != UZ_PG_DIRTY || uz_pg_pins(w) || (w & UZ_PG_INFLIGHT)) {
                uz_region_pg_unlock(r, first + len, w);
                break;
            }
            unkeep_locked(r, &w);
            words[len++] = w;
        }
        consumed += len ? len : 1;
        if (!len)
            continue;
        int rc = unprot ? 0 : uz_region_sys_wp(r, first, len, true);
        if (rc) {
            /* Some of the run may be protected: DIRTY allows that (a write unprotects). */
            uz_region_error(r, rc);
            for (unsigned k = 0; k < len; k++)
                uz_region_pg_unlock(r, first + k, words[k]);
            continue;
        }
        /* Protected: the contents are stable from here until a write-protect fault, which
         * moves the generation on (unprotected: not stable, and the move checks). Mark under
         * writeback, unlock, then snapshot: the copy holds
         * no page lock, because it may fault (a page the application dropped is a missing
         * fault, served by a fault thread that takes the page lock) or fail (a page it made
         * unreadable). */
        unsigned char *dst[UZ_RECLAIM_BATCH];
        for (unsigned k = 0; k < len; k++) {
            struct uz_region_req *rq = q[used + k];
            uint64_t w = uz_pg_set_state(uz_pg_next_gen(words[k]), UZ_PG_WB);
            w = (w & ~(UZ_PG_SAMPLE | UZ_PG_FRESH)) | UZ_PG_INFLIGHT | (unprot ? UZ_PG_UNPROT : 0);
            rq->index = first + k;
            rq->gen = uz_pg_gen(w);
            rq->evict = evict;
            dst[k] = rq->buf;
            uz_region_pg_unlock(r, first + k, w);
        }
        for (unsigned k = 0; k < len;) {
            unsigned got = 0;
            int crc = uz_region_sys_read(r, first + k, len - k, dst + k, &got);
            for (unsigned j = k; j < k + got; j++) {
                /* The snapshot is the page at one instant if no write-protect fault moved the
                 * generation on before the copy ended (a fault in progress holds the lock and
                 * may already have let its write in: wait for it). A snapshot that may be torn
                 * is never handed to the device as the page: an unprotected one may be torn,
                 * and is the page only if the move finds it equal. */
                uint64_t w = uz_region_pg_settled(r, first + j);
                if (uz_pg_state(w) == UZ_PG_WB && uz_pg_gen(w) == q[used + j]->gen)
                    q[nsub++] = q[used + j];
                else
                    abandon(r, q[used + j], false);
            }
            k += got;
            if (k < len) {
                /* Unreadable (mprotect), or dropped in user-only mode: back to DIRTY. */
                if (crc != -EFAULT)
                    uz_region_error(r, crc);
                abandon(r, q[used + k], true);
                k++;
            }
        }
        used += len;
    }
    if (evict)
        atomic_fetch_add(&r->pending_evict, nsub);
    for (unsigned k = 0; k < nsub; k++) {
        uz_counter_add(&r->st.writebacks, 1);
        if (unprot)
            uz_counter_add(&r->st.wb_unprotected, 1);
        if (uz_dev_write_page_async(r->dev, q[k]->index, q[k]->buf, wb_done, q[k]))
            wb_done(q[k], -EIO); /* cannot happen: the index is in range */
    }
    if (used < nq) {
        pthread_mutex_lock(&r->lock);
        for (unsigned k = used; k < nq; k++)
            put_req_locked(r, q[k]);
        pthread_mutex_unlock(&r->lock);
    }
    return consumed;
}

/* A writeback whose snapshot was not taken (`failed`: the page could not be read) or may be
 * torn: clear the in-flight mark; a page still WB in the request's generation is DIRTY again
 * (still protected, which DIRTY allows) and, when it could not be read, referenced, so the
 * clock passes over it once before trying again. The request goes back to the pool. */
static void abandon(struct uz_region *r, struct uz_region_req *q, bool failed)
{
    uint64_t w = uz_region_pg_lock(r, q->index) & ~UZ_PG_INFLIGHT;
    if (uz_pg_state(w) == UZ_PG_WB && uz_pg_gen(w) == q->gen)
        w = uz_pg_set_state(w, UZ_PG_DIRTY) | (failed ? UZ_PG_REF : 0);
    uz_region_pg_unlock(r, q->index, w);
    pthread_mutex_lock(&r->lock);
    if (r->wb_waiters)
        pthread_cond_broadcast(&r->wb_cond);
    put_req_locked(r, q);
    pthread_mutex_unlock(&r->lock);
}

/* ---- the reclaim thread ---- */

static int cmp_req(const void *a, const void *b)
{
    uint64_t x = (*(struct uz_region_req *const *)a)->index;
    uint64_t y = (*(struct uz_region_req *const *)b)->index;
    return x < y ? -1 : x > y;
}

static bool page_in_flight(struct uz_region *r, uint64_t i)
{
    return i < r->npages &&
           uz_pg_state(atomic_load_explicit(&r->pages[i], memory_order_relaxed)) == UZ_PG_WB;
}

/* Drops the pages of completed evictions, in runs. Writebacks of neighbours complete on
 * different workers, so a batch can be full of holes: unless `force`, a short run next to a
 * page still under writeback waits for it, to be dropped with it (one TLB shootdown instead of
 * one per page). */
static unsigned drain_done(struct uz_region *r, bool force)
{
    struct uz_region_req *batch[UZ_REGION_NREQ];
    bool kept[UZ_REGION_NREQ];
    pthread_mutex_lock(&r->lock);
    unsigned n = 0;
    for (struct uz_region_req *q = r->done_reqs; q; q = q->next)
        batch[n++] = q;
    r->done_reqs = NULL;
    r->ndone = 0;
    pthread_mutex_unlock(&r->lock);
    if (!n)
        return 0;
    qsort(batch, n, sizeof(batch[0]), cmp_req);
    uint64_t idx[UZ_RECLAIM_BATCH];
    struct uz_region_req *reqs[UZ_RECLAIM_BATCH];
    unsigned nidx = 0, dropped = 0;
    for (unsigned k = 0; k < n;) {
        unsigned len = 1;
        while (k + len < n && batch[k + len]->index == batch[k]->index + len)
            len++;
        uint64_t first = batch[k]->index;
        bool defer = !force && len < UZ_DROP_BATCH / 2 &&
                     (page_in_flight(r, first + len) || (first && page_in_flight(r, first - 1)));
        for (unsigned j = k; j < k + len; j++) {
            kept[j] = defer;
            if (defer)
                continue;
            reqs[nidx] = batch[j];
            idx[nidx++] = batch[j]->index;
            if (nidx == UZ_RECLAIM_BATCH) {
                uz_region_drop(r, idx, reqs, nidx);
                dropped += nidx;
                nidx = 0;
            }
        }
        k += len;
    }
    if (nidx) {
        uz_region_drop(r, idx, reqs, nidx);
        dropped += nidx;
    }
    atomic_fetch_sub(&r->pending_evict, dropped);
    pthread_mutex_lock(&r->lock);
    for (unsigned k = 0; k < n; k++) {
        if (kept[k]) {
            batch[k]->next = r->done_reqs;
            r->done_reqs = batch[k];
            r->ndone++;
        } else {
            put_req_locked(r, batch[k]);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return dropped;
}

static bool need_sweep(struct uz_region *r, bool *active)
{
    if (uz_region_failed(r))
        return false;
    uint64_t res = atomic_load(&r->resident), pend = atomic_load(&r->pending_evict);
    if (res > r->start_wm)
        *active = true;
    else if (res <= r->stop_wm)
        *active = false;
    return *active && res > r->stop_wm + pend;
}

/* Kept pages idx[0..n) met by the hand: those the kernel lets go now are counted again, with a
 * lap's grace (REF), and evicted as usual after it. With UFFDIO_MOVE the question is asked
 * without compressing the page: moved into the scratch and straight back, or refused again
 * (one cheap ioctl for a page still pinned or mlock'ed). Without it, MADV_COLD tells an
 * mlock'ed page; a pinned one is counted again. */
static void probe_kept(struct uz_region *r, const uint64_t *idx, unsigned n)
{
    for (unsigned k = 0; k < n; k++) {
        uint64_t w;
        if (!uz_region_pg_trylock(r, idx[k], &w))
            continue;
        if (!(w & UZ_PG_KEPT) || uz_pg_state(w) != UZ_PG_DIRTY || uz_pg_pins(w)) {
            uz_region_pg_unlock(r, idx[k], w);
            continue;
        }
        bool movable = true;
        if (r->can_move) {
            unsigned char *a = r->base + idx[k] * UZ_PAGE_SIZE;
            pthread_mutex_lock(&r->scratch_lock);
            int rc = uz_region_sys_move(r, r->scratch, a);
            if (!rc) {
                /* Movable again: stored (SWAPPED, with REMOVE events: see move_back()), or
                 * back at once, DIRTY, mapped writable again. */
                bool saved = move_back(r, idx[k], r->scratch) == EV_SAVED;
                rc = uz_region_sys_scratch_free(r, 1); /* a copy put back leaves it there */
                if (rc)
                    uz_region_error(r, rc);
                if (saved) {
                    /* Not kept any more, not resident: its contents are in the slot. */
                    atomic_fetch_sub(&r->kept, 1);
                    uz_counter_add(&r->st.swapouts, 1);
                    w = uz_pg_set_state(w & ~(UZ_PG_KEPT | UZ_PG_REF), UZ_PG_SWAPPED);
                    uz_region_pg_unlock(r, idx[k], w);
                    pthread_mutex_unlock(&r->scratch_lock);
                    continue;
                }
            } else if (rc == -EEXIST) {
                rc = uz_region_sys_scratch_unlock(r);
                if (rc)
                    uz_region_error(r, rc);
                movable = false; /* next lap */
            } else if (rc == -ENOENT) {
                movable = true; /* dropped by the application meanwhile: nothing holds it */
            } else {
                movable = false;
                if (rc != -EBUSY && rc != -EINVAL)
                    uz_region_error(r, rc);
            }
            pthread_mutex_unlock(&r->scratch_lock);
        } else {
            /* MADV_COLD (harmless: the page is only aged) refuses an mlock'ed page with
             * EINVAL as MADV_DONTNEED does. (Pins cannot be asked about this way.) */
            int rc =
                uz_region_sys_madvise(r, r->base + idx[k] * UZ_PAGE_SIZE, UZ_PAGE_SIZE, MADV_COLD);
            movable = rc != -EINVAL;
        }
        if (movable)
            unkeep_locked(r, &w);
        uz_region_pg_unlock(r, idx[k], w);
    }
}

/* One sweep step: chooses up to a batch of victims and starts their eviction.
 * @return : pages dropped or submitted. */
static unsigned sweep(struct uz_region *r)
{
    uint64_t res = atomic_load(&r->resident), pend = atomic_load(&r->pending_evict);
    if (res <= r->stop_wm + pend)
        return 0;
    uint64_t want = res - pend - r->stop_wm;
    pthread_mutex_lock(&r->lock);
    unsigned wbcap = r->nfree;
    pthread_mutex_unlock(&r->lock);
    uint64_t clean[UZ_RECLAIM_BATCH], dirty[UZ_RECLAIM_BATCH], kept[UZ_RECLAIM_BATCH];
    unsigned nc = 0, nd = 0, nk = 0;
    if (wbcap > UZ_RECLAIM_BATCH)
        wbcap = UZ_RECLAIM_BATCH;
    /* One lap at most, so that no page is chosen twice (a referenced page is chosen on the
     * next lap, if not referenced again). */
    for (uint64_t scanned = 0;
         scanned < r->npages && nc + nd < want && nc < UZ_RECLAIM_BATCH && nd < UZ_RECLAIM_BATCH;
         scanned++) {
        uint64_t i = r->hand;
        uint64_t w = atomic_load_explicit(&r->pages[i], memory_order_relaxed);
        unsigned st = uz_pg_state(w);
        if (st == UZ_PG_DIRTY && !(w & (UZ_PG_LOCK | UZ_PG_REF | UZ_PG_INFLIGHT | UZ_PG_KEPT)) &&
            !uz_pg_pins(w) && nd == wbcap)
            break; /* no request free for it: stop here, it is the next victim */
        if (++r->hand == r->npages)
            r->hand = 0;
        if (w & UZ_PG_KEPT) {
            if (!(w & UZ_PG_LOCK) && !uz_pg_pins(w) && nk < UZ_RECLAIM_BATCH)
                kept[nk++] = i; /* asked again below whether the kernel still holds it */
            continue;
        }
        if ((st != UZ_PG_CLEAN && st != UZ_PG_DIRTY) || (w & (UZ_PG_LOCK | UZ_PG_INFLIGHT)) ||
            uz_pg_pins(w))
            continue;
        if (w & UZ_PG_REF) {
            atomic_compare_exchange_strong_explicit(&r->pages[i], &w, w & ~UZ_PG_REF,
                                                    memory_order_relaxed, memory_order_relaxed);
            continue;
        }
        if (st == UZ_PG_CLEAN)
            clean[nc++] = i;
        else
            dirty[nd++] = i;
    }
    /* The hand wraps, so a batch may hold a run that wrapped: sort for the run detection. */
    qsort(clean, nc, sizeof(clean[0]), cmp_u64);
    qsort(dirty, nd, sizeof(dirty[0]), cmp_u64);
    unsigned done = uz_region_drop(r, clean, NULL, nc);
    probe_kept(r, kept, nk);
    unsigned k = 0;
    while (k < nd) {
        unsigned before = k;
        k += uz_region_writeback(r, dirty + k, nd - k, true);
        if (k == before)
            break;
        done += k - before;
    }
    return done;
}

static void wait_ms(struct uz_region *r, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->reclaim_cond, &r->lock, &ts);
}

/* Random swap-ins free objects all over the device's pool and leave its zspages sparse; like
 * zsmalloc's shrinker, compact when the pool holds a thirty-second more than the compressed data
 * (an eighth left it 8% above its data, 17 MB more than kernel zram in the swap benchmark). */
static void maybe_compact(struct uz_region *r, uint64_t *tried_at)
{
    struct uz_dev_stats ds;
    if (!uz_dev_stats(r->dev, &ds) && ds.mem_used_total != *tried_at &&
        ds.mem_used_total > ds.compr_data_size + ds.compr_data_size / 32 + (1u << 20)) {
        uz_dev_compact(r->dev);
        /* Not again at the same size: what compaction could not free it will not free now. */
        *tried_at = ds.mem_used_total;
    }
}

void *uz_region_reclaim_main(void *arg)
{
    struct uz_region *r = arg;
    atomic_store(&r->reclaim_tid, (pid_t)syscall(SYS_gettid)); /* see uz_region_fault_main */
    bool active = false, stuck = false;
    int64_t compact_mark = 0;
    uint64_t compact_tried = 0;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        if (stuck && !atomic_load(&r->stop) && !r->reclaim_kick)
            wait_ms(r, 2); /* a completion or a fault waiting for room signals */
        unsigned idle_waits = 0;
        bool idle_compact = false;
        for (;;) {
            if (atomic_load(&r->stop) || r->reclaim_kick || drain_due(r))
                break;
            if (r->nfree && need_sweep(r, &active))
                break;
            /* Idle: say so, then look once more (a fault raising `resident` after the check
             * above saw reclaim_busy still set and did not signal). */
            atomic_store(&r->reclaim_busy, false);
            if (r->nfree && need_sweep(r, &active))
                break;
            /* After a second of idleness, look at the pool once: frees (swap-ins, discards)
             * with no swap-outs behind them never reach the swap-out mark below. */
            if (++idle_waits == 20) {
                idle_compact = true;
                break;
            }
            wait_ms(r, 50);
        }
        atomic_store(&r->reclaim_busy, true);
        r->reclaim_kick = false;
        bool force = !r->nfree || atomic_load(&r->room_waiters);
        bool drain = r->ndone && (drain_due(r) || force);
        pthread_mutex_unlock(&r->lock);
        if (atomic_load(&r->stop))
            break;
        uz_region_wd_tick(r); /* holding no lock: watches the fault threads' waits */
        if (idle_compact)
            maybe_compact(r, &compact_tried);
        unsigned progress = 0;
        if (drain)
            progress = drain_done(r, force);
        if (need_sweep(r, &active))
            progress += sweep(r);
        /* Nothing dropped nor started (all under writeback, referenced or pinned, or waiting
         * for a neighbour): wait for a completion or a little time rather than spin. */
        stuck = !progress;
        int64_t swapouts = uz_counter_read(&r->st.swapouts);
        if (swapouts - compact_mark >= 32768) {
            compact_mark = swapouts;
            maybe_compact(r, &compact_tried);
        }
    }
    drain_done(r, true);
    return NULL;
}
