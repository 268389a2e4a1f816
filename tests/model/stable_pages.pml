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
 *            releasing it. And the drop of a CLEAN page (MADV_DONTNEED: the contents are gone),
 *            under the page lock.
 *   worker   the device's zramd worker: stores the snapshot into the slot word by word, then
 *            the completion: WB with the same generation -> CLEAN (the slot is the page);
 *            DIRTY (redirtied) -> discard the stale slot; no longer in flight.
 *   The kernel's part (MMU checks, UFFDIO_COPY, UFFDIO_WRITEPROTECT, MADV_DONTNEED) is atomic.
 *   Each of those calls may also fail, as region_sys.c reports after its retries: a copy that
 *   fails maps nothing (the faulting thread is woken and faults again), an unprotect that fails
 *   leaves the page DIRTY and still protected (woken, the writer faults again and the fault
 *   retries it), a write-protect that fails leaves the page DIRTY (perhaps protected already),
 *   a MADV_DONTNEED that fails leaves the page CLEAN and mapped. The page lock is a blocking
 *   lock (region_page.c: a short spin, then a futex): lock() waits without a step of its own.
 *
 * Checked: every load returns what the application stored last into that word (no lost write,
 * no stale or torn page faulted back), a swap-in never reads a discarded slot, and no state is
 * left inconsistent (page present <-> resident state; CLEAN/WB -> write-protected).
 *
 * Variants that must FAIL (tests/test_region_model.sh checks that they do), each one mistake
 * the implementation avoids:
 *   -DBUG_IGNORE_REDIRTY  completion makes the page CLEAN even when it was written during the
 *                         writeback (the kernel's reuse_swap_page() before the seed: the new
 *                         write is dropped with the page)
 *   -DBUG_LATE_UNPROTECT  the write-protect fault unprotects after releasing the page lock
 *   -DBUG_NO_WP           writeback does not write-protect the page (the seed's bug: the page
 *                         changes under the compressor and the stale copy is dropped to)
 *   -DBUG_MULTI_INFLIGHT  a redirtied page may be written back again while its abandoned
 *                         writeback is still queued: the two submissions can reach the queue
 *                         in the other order and the stale copy overwrites the slot
 */

#define MAXV 3   /* versions the application writes */
#define MAXGEN 6 /* writebacks in the model (bounds the state space; no wrap) */
#define GONE 9   /* what a dropped page "contains" */

mtype = { MISSING, WP };
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

chan faults = [2] of { mtype };
chan wake = [2] of { bit };
chan queue = [4] of { byte, byte, byte }; /* snapshot word 0, word 1, generation */

inline lock() { atomic { !locked -> locked = true } }
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
    /* and once more after everything settled: what is stored must still be there */
    load(0, x);
    assert(x == MAXV);
    load(1, x);
    assert(x == MAXV)
}

active proctype fault() {
    mtype m;
    bit keep_clean;
end:
    do
    :: faults?m ->
        lock();
        if
        :: m == MISSING ->
            if
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
                    :: keep_clean -> st = CLEAN
                    :: else -> st = DIRTY; slot_valid = false
                    fi
                :: skip /* UFFDIO_COPY failed: nothing mapped, the thread faults again */
                fi
            :: else -> skip /* mapped meanwhile: EEXIST, just wake */
            fi;
            unlock()
        :: m == WP ->
            if
            :: st == CLEAN ->
                slot_valid = false;
                st = DIRTY
            :: st == WB ->
                gen++;
                st = DIRTY
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
        wake!1
    od
}

/* Writeback and drop, as reclaim does them; run twice (the reclaim thread and an explicit
 * uz_region_swapout() caller). The snapshot and the state change happen under the page lock,
 * the submission after it is released, so two writebacks of one page could reach the queue in
 * the other order: the implementation never lets a page have two writebacks in flight
 * (`inflight`, the UZ_PG_INFLIGHT bit). */
proctype writeback() {
    byte b0, b1, g;
end:
    do
    :: lock();
        if
        :: st == DIRTY && gen < MAXGEN && !inflight && !wp ->
            /* the write-protect failed: the page stays DIRTY, protected or not */
            if
            :: wp = true
            :: skip
            fi;
            unlock()
        :: st == DIRTY && gen < MAXGEN && !inflight ->
#ifndef BUG_NO_WP
            wp = true;
#endif
            b0 = w[0]; /* the snapshot, word by word: the application may run in between */
            b1 = w[1];
            gen++;
            g = gen;
            st = WB;
#ifndef BUG_MULTI_INFLIGHT
            inflight = true;
#endif
            unlock();
            queue!b0, b1, g
        :: st == CLEAN ->
            atomic { present = false; wp = false; w[0] = GONE; w[1] = GONE };
            st = SWAPPED;
            unlock()
        :: st == CLEAN -> unlock() /* MADV_DONTNEED failed: stays CLEAN and mapped */
        :: else -> unlock()
        fi
    od
}

init {
    run writeback();
    run writeback()
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
        :: st == WB || st == DIRTY -> st = CLEAN; slot_valid = true
#else
        :: st == WB && gen == g -> st = CLEAN; slot_valid = true
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
        assert((st == SWAPPED) == !present);
        assert(st != CLEAN || (slot_valid && slot[0] == w[0] && slot[1] == w[1]));
#ifndef BUG_NO_WP
        assert(st != CLEAN || wp);
        assert(st != WB || wp)
#endif
       }
    od
}
