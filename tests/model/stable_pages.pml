/* SPDX-License-Identifier: MIT */
/*
 * stable_pages.pml - the region's stable-page protocol (src/region), checked with spin.
 *
 * One page of two words, so that a copy taken in the middle of an update (a torn page) can be
 * told from a whole one. The processes, as in the implementation:
 *   app      the application: stores version v into word 0, then word 1, reads both back
 *            (v = 1..MAXV). Every access goes through the MMU: a store needs the page present
 *            and not write-protected, a load needs it present; otherwise the access faults (a
 *            message to the fault thread) and is retried after the wakeup.
 *   fault    the fault thread: missing faults swap the page in (UFFDIO_COPY from the slot,
 *            mapped write-protected as CLEAN or writable as DIRTY, the policy's choice);
 *            write-protect faults redirty (CLEAN: discard the slot; WB: new generation,
 *            the copy in flight is abandoned) and unprotect at once, before the page lock is
 *            released. The writer never waits for the worker.
 *   writeback  (twice: the reclaim thread and a uz_region_swapout() caller) writeback of a
 *            DIRTY page with no writeback in flight: write-protect, snapshot both words,
 *            generation + 1, state WB, mark in flight, all under the page lock; submit after
 *            releasing it. The reclaim thread's evictions do not write-protect (`unprot`,
 *            UZ_PG_UNPROT): the application keeps writing the page, unseen, until the move.
 *            And the drop of a CLEAN page, under the page lock.
 *   worker   the device's zramd worker: stores the snapshot into the slot word by word, then
 *            the completion: WB with the same generation -> CLEAN (the slot is the page, or,
 *            unprotected, was the page when the snapshot was taken);
 *            DIRTY (redirtied) -> discard the stale slot; no longer in flight.
 *   kio      the kernel doing a read(2) into the page for the application (O_DIRECT, AIO,
 *            process_vm_writev): get_user_pages faults the page in writable like a store,
 *            pins it (only a present, writable pte can be pinned for writing), then, at any
 *            later time, writes both words through the pin -- bypassing write-protection --
 *            and drops the pin. The application waits for the read (a system call) and then
 *            checks what it got. A page dropped while pinned leaves the pin on an orphan: the
 *            write lands there, not in the region.
 *   Eviction is UFFDIO_MOVE: atomically, a pinned page is refused (EBUSY: the page stays, DIRTY,
 *   unprotected: "kept"), else the page leaves the region; the moved page is then compared
 *   with the slot: equal, the page is SWAPPED; different (a write through a pin landed after
 *   the snapshot, or, unprotected, any write), its contents are stored, SWAPPED. A page CLEAN
 *   by a swap-in (mapped write-protected, never writable since) is not compared: no write can
 *   have reached it. A move that fails otherwise leaves a protected page CLEAN, an unprotected
 *   one DIRTY (its slot discarded).
 *   Then the application drops the page with madvise(MADV_DONTNEED) (issue 8): the kernel
 *   queues a REMOVE event behind the faults, wakes the caller once the fault thread has READ
 *   it, and only then unmaps the page; from the call's return the page reads zeros. The fault
 *   thread handles the event under the page lock: the slot freed (a writeback abandoned), a
 *   resident page moved out at once (EMPTY), or, when the move is refused (pinned, or failing),
 *   DIRTY until the kernel's drop; SWAPPED -> EMPTY. A missing fault on a page the words call
 *   resident maps zeros (the page was dropped behind them); an eviction that finds no page to
 *   move (ENOENT) frees the slot and leaves the page EMPTY.
 *   The kernel's part (MMU checks, UFFDIO_COPY, UFFDIO_WRITEPROTECT, UFFDIO_MOVE) is atomic.
 *   Each of those calls may also fail, as region_sys.c reports after its retries: a copy that
 *   fails maps nothing (the faulting thread is woken and faults again), an unprotect that fails
 *   leaves the page DIRTY and still protected (woken, the writer faults again and the fault
 *   retries it), a write-protect that fails leaves the page DIRTY (perhaps protected already),
 *   a move that fails otherwise leaves the page CLEAN and mapped. The page lock is a blocking
 *   lock (region_page.c: a short spin, then a futex): lock() waits without a step of its own.
 *
 * Checked: every load returns what the application stored last into that word (no lost write,
 * no stale or torn page faulted back), a swap-in never reads a discarded slot, and no state is
 * left inconsistent (page present <-> resident state; CLEAN/WB -> write-protected unless
 * unprotected).
 *
 * Variants that must FAIL (tests/test_region_model.sh checks that they do), each one mistake
 * the implementation avoids:
 *   -DBUG_IGNORE_REDIRTY  completion makes the page CLEAN even when it was written during the
 *                         writeback (the kernel's reuse_swap_page() before the seed: the new
 *                         write is dropped with the page)
 *   -DBUG_LATE_UNPROTECT  the write-protect fault unprotects after releasing the page lock
 *   -DBUG_NO_WP           writeback does not write-protect the page and takes it for protected
 *                         (the seed's bug: the page changes under the compressor and the stale
 *                         copy is dropped to)
 *   -DBUG_UNPROT_TRUSTED  the drop trusts an unprotected eviction's page like one swapped in
 *                         read-only (no comparison): a write that landed after the snapshot
 *                         is dropped with the page
 *   -DBUG_MULTI_INFLIGHT  a redirtied page may be written back again while its abandoned
 *                         writeback is still queued: the two submissions can reach the queue
 *                         in the other order and the stale copy overwrites the slot
 *   -DBUG_DONTNEED_PINNED eviction with MADV_DONTNEED, which drops a pinned page (issue 8:
 *                         the read lands in the orphan, the old contents come back)
 *   -DBUG_NO_COMPARE      the move is not followed by the comparison: a write through a pin
 *                         that landed after the snapshot, the pin released before the move,
 *                         is dropped with the page
 *   -DBUG_IGNORE_REMOVE   the REMOVE event is ignored (before issue 8's events): a page
 *                         swapped out before the madvise comes back with its old contents
 *   -DBUG_REMOVE_WAITS    the event handler leaves resident pages to the kernel's drop (as
 *                         first written this session): an eviction between the event's read
 *                         and the drop stores the old contents and leaves nothing to drop
 *                         (found by this model)
 *   -DBUG_MOVE_BACK       a moved page found changed is moved back (as before this session):
 *                         when the drop's event was read while the eviction held the page
 *                         lock, the drop found nothing and the move back maps the old contents
 *                         again after madvise returned (found by this model)
 */

#define MAXV 2   /* versions the application writes */
#define KV 7     /* what the kernel's read writes */
#define MAXGEN 5 /* writebacks in the model (bounds the state space: 69M states; no wrap) */
#define GONE 9   /* what a dropped page "contains" */

mtype = { MISSING, WP, REMOVE };
#define EMPTY_ 0
#define DIRTY 1
#define CLEAN 2
#define WB 3
#define SWAPPED 4

/* the kernel's view of the page */
bool present = true;
bool wp = false;
byte w[2];               /* the page's words (0: zero page at start) */
/* the region's view */
byte st = DIRTY;
byte gen = 0;
bool locked = false;     /* the page lock */
/* the device slot */
byte slot[2];
bool slot_valid = false;
bool inflight = false;   /* a writeback of the page is queued or running */
/* what the application stored last */
byte last[2];
/* the kernel's pin (get_user_pages FOLL_PIN|FOLL_WRITE) */
bool pinned = false;
bool orphan = false;     /* the pinned page is no longer the region's (dropped) */
bool dma_since_snap = false; /* a write through the pin since the last snapshot */
bool unprot = false;     /* CLEAN/WB without write-protection (meaningful in those states) */
bool fresh = false;      /* CLEAN by a writeback, not by a read-only swap-in */
chan io = [0] of { bit };
chan evread = [0] of { bit }; /* the REMOVE event was read: the madvise caller goes on */
chan iodone = [0] of { bit };

chan faults = [2] of { mtype };
chan wake = [2] of { bit };
chan queue = [4] of { byte, byte, byte }; /* snapshot word 0, word 1, generation */

inline lock() { atomic { !locked -> locked = true } }
/* unprot and fresh mean something only in CLEAN and WB: cleared with every other state, so
 * that stale values do not multiply the states. (Steps under the page lock that only the lock's
 * holders see are d_steps: the other processes cannot tell them apart from one step.) */
#define NORM unprot = false; fresh = false
inline unlock() { locked = false }

/* The MMU: a store to word i, faulting as needed. */
inline store(i, v) {
    do
    :: atomic { present && !wp -> w[i] = v; last[i] = v; break }
    :: atomic { !present -> faults!MISSING }; wake?_
    :: atomic { present && wp -> faults!WP }; wake?_
    od
}

inline load(i, out) {
    do
    :: atomic { present -> out = w[i]; break }
    :: atomic { !present -> faults!MISSING }; wake?_
    od
}

active proctype app() {
    byte v = 1, x;
    do
    :: v <= MAXV ->
        store(0, v);
        store(1, v);
        load(0, x);
        assert(x == last[0]);
        load(1, x);
        assert(x == last[1]);
        v++
    :: v > MAXV -> break
    od;
    /* a read(2) into the page (the kernel writes KV through a pin), then, once everything
     * settled, what was read must still be there */
    io!1;
    iodone?_;
    load(0, x);
    assert(x == KV);
    load(1, x);
    assert(x == KV);
    /* madvise(MADV_DONTNEED): the event, read; then the kernel drops the page */
    faults!REMOVE;
    evread?_;
    atomic { present = false; wp = false; w[0] = GONE; w[1] = GONE; last[0] = 0; last[1] = 0 };
    load(0, x);
    assert(x == 0);
    load(1, x);
    assert(x == 0)
}

/* The kernel serving the application's read: fault in writable (the faults go to the fault
 * thread, like the application's own), pin, write through the pin, unpin. */
active proctype kio() {
    io?_;
    do
    :: atomic { present && !wp -> pinned = true; orphan = false; break }
    :: atomic { !present -> faults!MISSING }; wake?_
    :: atomic { present && wp -> faults!WP }; wake?_
    od;
    atomic { if :: !orphan -> w[0] = KV :: else -> skip fi; last[0] = KV; dma_since_snap = true };
    atomic { if :: !orphan -> w[1] = KV :: else -> skip fi; last[1] = KV; dma_since_snap = true };
    pinned = false;
    iodone!1
}

active proctype fault() {
    mtype m;
    bit keep_clean;
end:
    do
    :: faults?m ->
        if
        :: m == REMOVE -> evread!1 /* read: the caller goes on (and drops the page) */
        :: else -> skip
        fi;
        lock();
        if
        :: m == REMOVE ->
#ifndef BUG_IGNORE_REMOVE
            if
            :: st == SWAPPED -> d_step { slot_valid = false; st = EMPTY_; NORM }
            :: st == CLEAN || st == WB || st == DIRTY ->
                if
                :: st == CLEAN -> slot_valid = false
                :: st == WB -> gen++
                :: else -> skip
                fi;
                if
#ifndef BUG_REMOVE_WAITS
                :: atomic { present && !pinned -> present = false; wp = false;
                            w[0] = GONE; w[1] = GONE; st = EMPTY_; NORM }
                    /* moved out at once (UFFDIO_MOVE): EMPTY */
#endif
                :: atomic { pinned || !present -> st = DIRTY; NORM }
                    /* pinned (EBUSY), or gone already: the kernel's drop follows. (A move that
                     * fails otherwise, EAGAIN past the retries, does the same in the code, a
                     * failure path counted in sys_errors; not modelled.) */
#ifdef BUG_REMOVE_WAITS
                :: d_step { st = DIRTY; NORM }
#endif
                fi
            :: else -> skip
            fi;
#endif
            unlock()
        :: m == MISSING ->
            if
            :: st == EMPTY_ ->
                /* never touched, or dropped: zeros */
                atomic { w[0] = 0; w[1] = 0; present = true; wp = false };
                d_step { st = DIRTY; NORM }
            :: st != SWAPPED && st != EMPTY_ && !present ->
                /* the words say resident, the page was dropped behind them: zeros */
                atomic { w[0] = 0; w[1] = 0; present = true; wp = false };
                d_step {
                    if
                    :: st == CLEAN -> slot_valid = false
                    :: st == WB -> gen++
                    :: else -> skip
                    fi;
                    st = DIRTY;
                    NORM
                }
            :: st == SWAPPED ->
                assert(slot_valid);
                if /* the policy: read-only (swap cache) or writable (slot discarded) */
                :: keep_clean = 1
                :: keep_clean = 0
                fi;
                if
                :: atomic {
                        w[0] = slot[0];
                        w[1] = slot[1];
                        present = true;
                        wp = keep_clean
                    };
                    if
                    :: keep_clean -> d_step { st = CLEAN; NORM }
                    :: else -> d_step { st = DIRTY; slot_valid = false; NORM }
                    fi
                :: skip /* UFFDIO_COPY failed: nothing mapped, the thread faults again */
                fi
            :: else -> skip /* mapped meanwhile: EEXIST, just wake */
            fi;
            unlock()
        :: m == WP && !present -> unlock() /* dropped meanwhile: refaults as missing */
        :: m == WP && present ->
            if
            :: st == CLEAN -> d_step { slot_valid = false; st = DIRTY; NORM }
            :: st == WB -> d_step { gen++; st = DIRTY; NORM }
            :: else -> skip
            fi;
#ifdef BUG_LATE_UNPROTECT
            if
            :: st == DIRTY -> unlock(); wp = false
            :: else -> unlock()
            fi
#else
            if
            :: st == DIRTY ->
                if
                :: wp = false
                :: skip /* the unprotect failed: still protected; the writer faults again */
                fi
            :: else -> skip /* dropped meanwhile: the writer refaults as missing */
            fi;
            unlock()
#endif
        fi;
        if
        :: m != REMOVE -> wake!1
        :: else -> skip
        fi
    od
}

/* Writeback and drop, as reclaim does them; run twice (the reclaim thread and an explicit
 * uz_region_swapout() caller). The snapshot and the state change happen under the page lock,
 * the submission after it is released, so two writebacks of one page could reach the queue in
 * the other order: the implementation never lets a page have two writebacks in flight
 * (`inflight`, the UZ_PG_INFLIGHT bit). */
proctype writeback(bool evict) {
    byte b0, b1, g, m0, m1;
end:
    do
    :: lock();
        if
        :: st == DIRTY && !present ->
            /* dropped behind the words: the snapshot copy faults, its fault maps zeros and
             * moves the generation on, the snapshot is abandoned */
            unlock()
        :: !evict && st == DIRTY && gen < MAXGEN && !inflight && !wp && present ->
            /* the write-protect failed: the page stays DIRTY, protected or not */
            if
            :: wp = true
            :: skip
            fi;
            unlock()
        :: st == DIRTY && gen < MAXGEN && !inflight && present ->
#ifndef BUG_NO_WP
            wp = (evict -> wp : true);
#endif
            dma_since_snap = false;
            b0 = w[0]; /* the snapshot, word by word: the application may run in between */
            b1 = w[1];
            d_step {
                gen++;
                g = gen;
                st = WB;
                fresh = false;
#ifdef BUG_NO_WP
                unprot = false
#else
                unprot = evict
#endif
            };
#ifndef BUG_MULTI_INFLIGHT
            inflight = true;
#endif
            unlock();
            queue!b0, b1, g
#ifdef BUG_DONTNEED_PINNED
        :: st == CLEAN ->
            /* MADV_DONTNEED: a pinned page goes too, the pin keeps the orphan */
            atomic { orphan = pinned; present = false; wp = false; w[0] = GONE; w[1] = GONE;
                     st = SWAPPED; NORM };
            unlock()
#else
        :: st == CLEAN ->
            if
            :: atomic { pinned -> skip };
                /* EBUSY: kept, DIRTY (the slot may be stale), unprotected */
                d_step { slot_valid = false; st = DIRTY; NORM };
                if
                :: wp = false
                :: skip /* the unprotect failed: DIRTY allows it */
                fi
            :: atomic { !pinned && !present -> skip };
                /* ENOENT: dropped by the application since the snapshot: zeros now */
                d_step { slot_valid = false; st = EMPTY_; NORM }
            :: atomic { !pinned && present -> m0 = w[0]; m1 = w[1]; present = false; wp = false;
                        w[0] = GONE; w[1] = GONE };
#ifdef BUG_NO_COMPARE
                d_step { st = SWAPPED; NORM }
#else
                /* swapped in read-only (not FRESH, not UNPROT): trusted, not compared */
#ifdef BUG_UNPROT_TRUSTED
#define TRUSTED (!fresh || unprot)
#else
#define TRUSTED (!fresh && !unprot)
#endif
                if
                :: TRUSTED || (m0 == slot[0] && m1 == slot[1]) -> d_step { st = SWAPPED; NORM }
                :: else ->
#ifdef BUG_MOVE_BACK
                    /* changed through a pin: moved back (writable), DIRTY -- over a drop
                     * whose event was read while this held the lock */
                    atomic { w[0] = m0; w[1] = m1; present = true };
                    d_step { slot_valid = false; st = DIRTY; NORM }
#else
                    /* changed through a pin: its contents stored, SWAPPED */
                    d_step { slot[0] = m0; slot[1] = m1; slot_valid = true; st = SWAPPED; NORM }
#endif
                fi
#endif
            fi;
            unlock()
#endif
        :: st == CLEAN ->
            /* the move failed otherwise: stays CLEAN and mapped, or, unprotected, DIRTY */
            if
            :: unprot -> d_step { slot_valid = false; st = DIRTY; NORM }
            :: else -> skip
            fi;
            unlock()
        :: else -> unlock()
        fi
    od
}

init {
    run writeback(true); /* the reclaim thread: evictions, unprotected */
    run writeback(false) /* uz_region_swapout(): protected */
}

active proctype worker() {
    byte b0, b1, g;
end:
    do
    :: queue?b0, b1, g ->
        slot[0] = b0;
        slot[1] = b1;
        lock();
        if
#ifdef BUG_IGNORE_REDIRTY
        :: st == WB || st == DIRTY -> d_step { st = CLEAN; slot_valid = true; fresh = true }
#else
        :: st == WB && gen == g -> d_step { st = CLEAN; slot_valid = true; fresh = true }
        :: st == DIRTY -> slot_valid = false /* redirtied: the copy is abandoned */
#endif
        :: else -> skip
        fi;
        inflight = false;
        unlock()
    od
}

/* The states agree with the kernel whenever the page lock is free. (The generation compared at
 * completion is implied by the in-flight rule, which allows one writeback per page; the
 * implementation keeps both.) */
active proctype invariant() {
end:
    do
    :: atomic {
        !locked ->
        assert(st != SWAPPED || !present);
        assert(st != EMPTY_ || !present);
        assert(!present || st == DIRTY || st == CLEAN || st == WB);
        /* (writes through a pin bypass write-protection: CLEAN is then only "as far as the
         * region could see", which the move's comparison catches up with) */
        assert(st != CLEAN || (slot_valid && (dma_since_snap || unprot || !present ||
                                              (slot[0] == w[0] && slot[1] == w[1]))));
#ifndef BUG_NO_WP
        assert(st != CLEAN || wp || unprot || !present);
        assert(st != WB || wp || unprot || !present)
#endif
       }
    od
}
