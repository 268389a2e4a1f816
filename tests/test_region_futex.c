// SPDX-License-Identifier: MIT
/*
 * test_region_futex.c - pthread synchronisation objects in region memory (issue 8, "USER_ONLY
 * futexes"): the rule region.h states for UZ_REGION_MODE_USER_ONLY (pin the page of every
 * mutex, condition variable, rwlock, barrier, semaphore or futex word for its whole life) works,
 * and the hazard it guards against is real; and what FULL mode does and does not serve. The
 * cases, in the order they run, and what each one guards:
 *   syscalls     the kernel behaviour behind the rule, with the futex system call itself on a
 *                swapped-out, a pinned and a clean (write-protected) page. USER_ONLY: FUTEX_WAIT
 *                (private, _BITSET or shared) and a shared FUTEX_WAKE on a swapped-out page fail
 *                with EFAULT and leave it swapped out, a private FUTEX_WAKE succeeds,
 *                FUTEX_TRYLOCK_PI fails with EFAULT on a swapped-out and on a clean page; on
 *                the pinned page everything works (ETIMEDOUT, EAGAIN, PI lock/unlock). FULL: the
 *                waits and wakes on the swapped-out page succeed (kernel faults served:
 *                major_faults), but the PRIVATE PI operations (TRYLOCK_PI, LOCK_PI, UNLOCK_PI)
 *                and FUTEX_WAKE_OP still fail with EFAULT on a swapped-out or clean page: the
 *                futex code faults the word in with fixup_user_fault() without retry, which
 *                userfaultfd refuses in every mode (shared PI operations look the page up with
 *                get_user_pages() first and work). So PI mutexes need pins in FULL mode too,
 *                which region.h's "FULL mode serves these kernel faults: nothing to pin" misses.
 *                Guards: that the rule is needed, is enough, and what exactly FULL mode serves.
 *   glibc        the abort itself, deterministically, in forked children: a seccomp
 *                user-notification filter stops a thread's wait in its futex call (a contended
 *                pthread_mutex_lock's FUTEX_WAIT or FUTEX_LOCK_PI, pthread_cond_wait's or
 *                sem_wait's FUTEX_WAIT_BITSET) after glibc's user-space atomics made the page
 *                resident, the supervising thread swaps the page out (uz_region_swapout) and
 *                lets the call continue. USER_ONLY unpinned (mutex, condvar, semaphore), and
 *                FULL with a PI mutex unpinned: the child dies of SIGABRT with glibc's "The
 *                futex facility returned an unexpected error code". A process-shared
 *                semaphore's sem_post stopped the same way in its FUTEX_WAKE, USER_ONLY
 *                unpinned: the wake fails with EFAULT, which glibc ignores: sem_post returns 0
 *                and the waiter sleeps on (a lost wake-up: a hang, not an abort). Pinned
 *                (either mode): the swap-out drops nothing and the wait ends normally; FULL
 *                unpinned (all but PI): the page is dropped, the kernel's fault is served, the
 *                wait ends normally. Guards: the window region.h describes exists and no
 *                "recently used" rule could close it; pins close it.
 *   user_pinned  USER_ONLY (forced as root), 4096 pages under a resident limit of 64: 64 mutexes
 *                with condition variables and counters on 8 pinned pages spread over the
 *                region, a barrier, a pshared semaphore and a pshared rwlock on a ninth, a
 *                priority-inheritance mutex on a tenth (all pinned); lock threads,
 *                condition-variable ping-pong pairs, a thread that keeps swapping the sync
 *                pages out (it must drop none), and memory threads that write and verify random
 *                unpinned pages against a shadow and swap ranges out. Counts are exact, mutual
 *                exclusion holds, the shadow matches, no abort, the region never fails,
 *                reclaim really ran, the pinned pages stay resident and writable (mincore, page
 *                words) throughout. Guards: pins keeping pages resident AND writable (a pinned
 *                page write-protected for writeback would make the kernel's PI writes fail)
 *                under reclaim and explicit swap-outs.
 *   user_unpinned the same stress without any pin, in a child: it must die of SIGABRT with
 *                glibc's futex error, or hang on a lost wake-up (a thread asleep in a shared
 *                FUTEX_WAIT on a region word for seconds without waking once: a pshared
 *                object's wake failed), within up to ten runs of the stress; in the normal
 *                build it aborts within a second or two. Guards: that user_pinned passes
 *                because of the pins, not because the stress misses the window.
 *   full         FULL mode, the same stress with only the PI mutex's page pinned: the other
 *                nine sync pages are swapped out over and over under the threads. No abort,
 *                counts exact, shadow matches. Guards: kernel-mode faults (futex reads,
 *                shared-futex page lookups) on swapped-out and write-protected pages served.
 * Fixed seeds; every case under alarm(). Runs in the normal, ASan and TSan builds (fewer rounds
 * under the sanitizers; TSan: die_after_fork=0, as in test_region_fork.c).
 * Usage: test_region_futex [case...] (default: all).
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UZT_FORK_THREADS  /* the glibc and user_unpinned cases fork after other cases ran threads  \
                           */
#include "region_harness.h"

#define PAGE UZ_PAGE_SIZE

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Reads fd to its end and closes it: the first errlen - 1 bytes into err[], 0-terminated. */
static void read_all(int fd, char *err, size_t errlen)
{
    size_t n = 0;
    char sink[512]; /* the rest is drained, so that the child never blocks on a full pipe */
    for (;;) {
        bool room = n + 1 < errlen;
        ssize_t k = room ? read(fd, err + n, errlen - 1 - n) : read(fd, sink, sizeof(sink));
        if (k <= 0)
            break;
        if (room)
            n += (size_t)k;
    }
    err[n] = 0;
    close(fd);
}

static struct uz_region *make_mode(size_t pages, size_t limit, bool user_only)
{
    uz_region_force_user_mode = user_only;
    struct uz_region *r = make(pages, limit);
    uz_region_force_user_mode = false;
    return r;
}

static bool resident(const void *addr)
{
    unsigned char v = 0;
    CHECK_EQ(mincore((void *)((uintptr_t)addr & ~(uintptr_t)(PAGE - 1)), PAGE, &v), 0);
    return v & 1;
}

/* The page word of addr's page, once the fault threads are done with the faults in progress
 * (uz_region_stat() waits for them: a fault's waker can run before the word is published). */
static uint64_t page_word(struct uz_region *r, const void *addr)
{
    (void)stat_of(r);
    uint64_t i =
        (uint64_t)((const unsigned char *)addr - (unsigned char *)uz_region_base(r)) / PAGE;
    return atomic_load(&r->pages[i]);
}

/* ---- the stress: synchronisation objects in region memory under heavy reclaim ---- */

#define ST_PAGES   4096u
#define ST_LIMIT   64u
#define ST_NSYNC   8u /* pages holding the slots */
#define ST_PERPAGE 8u /* slots per page */
#define ST_NSLOT   (ST_NSYNC * ST_PERPAGE)
#define ST_NLOCK   4u  /* lock threads */
#define ST_NPAIR   2u  /* condition-variable ping-pong pairs */
#define ST_NMEM    2u  /* memory threads */
#define ST_BARRIER 64u /* lock-thread iterations between barriers */
#define ST_HAND    8u  /* consecutive ping-pong rounds on one slot */

/* One slot: a mutex with its condition variable and what they protect. 256 bytes. */
struct slot {
    pthread_mutex_t m;
    pthread_cond_t c;
    uint64_t count;          /* lock threads' increments, under m */
    uint32_t owner;          /* 0, or the lock thread inside m (mutual exclusion check) */
    uint32_t turn[ST_NPAIR]; /* pair q: 0 ping's turn, 1 pong's; under m */
    uint64_t pings[ST_NPAIR], pongs[ST_NPAIR];
};
_Static_assert(sizeof(struct slot) <= PAGE / ST_PERPAGE, "slot size");

/* The ninth page: objects every thread of a kind shares. */
struct misc {
    pthread_barrier_t barrier;      /* the lock threads */
    sem_t sem;                      /* pshared, value 2: at most two threads inside */
    pthread_rwlock_t rw;            /* pshared */
    uint64_t rw_x, rw_y, rw_writes; /* under rw: x == y == writes */
    _Atomic uint32_t in_sem;        /* threads between sem_wait and sem_post */
    _Atomic uint64_t arrived;       /* barrier arrivals */
};

/* The tenth page: a priority-inheritance mutex, whose word the kernel writes (FUTEX_LOCK_PI,
 * FUTEX_UNLOCK_PI). Pinned in both modes: see syscalls_mode(). */
struct pi_page {
    pthread_mutex_t pi; /* PTHREAD_PRIO_INHERIT */
    uint64_t pi_count;  /* under pi */
};

#define ST_NSP (ST_NSYNC + 2) /* sync pages: the slots', misc, pi */

static struct {
    struct uz_region *r;
    unsigned char *base;
    unsigned npin;   /* the last npin sync pages are pinned */
    bool pshared;    /* the semaphore and the rwlock are process-shared */
    unsigned iters;  /* per lock thread, a multiple of ST_BARRIER */
    unsigned rounds; /* ping-pong rounds per pair */
    uint64_t sync_page[ST_NSP];
    bool is_sync[ST_PAGES];
    struct slot *slot[ST_NSLOT];
    struct misc *misc;
    struct pi_page *pip;
    uint32_t *ver; /* shadow: page p holds version ver[p] (0: never written, zeros) */
    _Atomic bool stop_mem;
    _Atomic unsigned done; /* lock and ping-pong threads finished */
    _Atomic uint64_t mem_writes, mem_verifies, mem_swapouts, sync_swapouts;
} st;

static int st_report_fd = -1; /* stress() sends its region's range here (user_unpinned) */

static uint64_t word_of(uint64_t p, uint64_t v, uint64_t j)
{
    return mix(p << 40 ^ v << 12 ^ j) | 1; /* never 0: a zero page is never mistaken */
}

static void fill_page(uint64_t p, uint32_t v)
{
    uint64_t *w = (uint64_t *)(st.base + p * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        w[j] = word_of(p, v, j);
}

static bool page_matches(uint64_t p, uint32_t v)
{
    const uint64_t *w = (const uint64_t *)(st.base + p * PAGE);
    for (uint64_t j = 0; j < PAGE / 8; j++)
        if (w[j] != (v ? word_of(p, v, j) : 0))
            return false;
    return true;
}

static void *lock_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t seed = 0xf07e0001u + id * 7919u;
    uint64_t *mine = calloc(ST_NSLOT, sizeof(*mine));
    CHECK(mine);
    struct misc *mc = st.misc;
    for (unsigned i = 0; i < st.iters; i++) {
        uint64_t rnd = uzt_rand(&seed);
        struct slot *s = st.slot[rnd % ST_NSLOT];
        CHECK_EQ(pthread_mutex_lock(&s->m), 0);
        CHECK_EQ(s->owner, 0);
        s->owner = id + 1;
        s->count++;
        for (unsigned k = 0; k < (rnd >> 20) % 64; k++)
            __asm__ volatile("" ::: "memory");
        CHECK_EQ(s->owner, id + 1);
        s->owner = 0;
        CHECK_EQ(pthread_mutex_unlock(&s->m), 0);
        mine[rnd % ST_NSLOT]++;

        if (i % 4 == 0) {
            if ((rnd >> 32) % 4 == 0) {
                CHECK_EQ(pthread_rwlock_wrlock(&mc->rw), 0);
                mc->rw_x++;
                mc->rw_y++;
                mc->rw_writes++;
                CHECK_EQ(pthread_rwlock_unlock(&mc->rw), 0);
            } else {
                CHECK_EQ(pthread_rwlock_rdlock(&mc->rw), 0);
                CHECK_EQ(mc->rw_x, mc->rw_y);
                CHECK_EQ(pthread_rwlock_unlock(&mc->rw), 0);
            }
        }
        if (i % 8 == 1) {
            while (sem_wait(&mc->sem))
                CHECK_EQ(errno, EINTR);
            CHECK(atomic_fetch_add(&mc->in_sem, 1) < 2);
            sched_yield();
            atomic_fetch_sub(&mc->in_sem, 1);
            CHECK_EQ(sem_post(&mc->sem), 0);
        }
        if (i % 8 == 2) {
            CHECK_EQ(pthread_mutex_lock(&st.pip->pi), 0);
            st.pip->pi_count++;
            CHECK_EQ(pthread_mutex_unlock(&st.pip->pi), 0);
        }
        if (i % ST_BARRIER == ST_BARRIER - 1) {
            uint64_t round = i / ST_BARRIER;
            atomic_fetch_add(&mc->arrived, 1);
            int rc = pthread_barrier_wait(&mc->barrier);
            CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
            CHECK(atomic_load(&mc->arrived) >= ST_NLOCK * (round + 1));
        }
    }
    atomic_fetch_add(&st.done, 1);
    return mine;
}

/* Pair q, side 0 (ping) or 1 (pong): ST_HAND rounds in a row on each slot in turn. */
static void *pong_main(void *arg)
{
    unsigned q = (unsigned)(uintptr_t)arg / 2, side = (unsigned)(uintptr_t)arg % 2;
    for (unsigned i = 0; i < st.rounds; i++) {
        struct slot *s = st.slot[(i / ST_HAND + q * (ST_NSLOT / 2)) % ST_NSLOT];
        CHECK_EQ(pthread_mutex_lock(&s->m), 0);
        while (s->turn[q] != side)
            CHECK_EQ(pthread_cond_wait(&s->c, &s->m), 0);
        s->turn[q] = !side;
        if (side)
            s->pongs[q]++;
        else
            s->pings[q]++;
        CHECK_EQ(pthread_cond_broadcast(&s->c), 0); /* two pairs may wait on one slot */
        CHECK_EQ(pthread_mutex_unlock(&s->m), 0);
    }
    atomic_fetch_add(&st.done, 1);
    return NULL;
}

/* Writes and verifies its own pages (p % ST_NMEM == id, not sync pages) against the shadow, and
 * swaps ranges out (any pages: a swap-out changes no contents). */
static void *mem_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t seed = 0xf07e1001u + id * 104729u;
    uint64_t k = 0;
    while (!atomic_load(&st.stop_mem) || k < (UZT_SANITIZED ? 2000 : 5000)) {
        uint64_t rnd = uzt_rand(&seed);
        uint64_t p = (rnd % (ST_PAGES / ST_NMEM)) * ST_NMEM + id;
        k++;
        if (st.is_sync[p])
            continue;
        if ((rnd >> 40) % 3 == 0) {
            CHECK(page_matches(p, st.ver[p]));
            atomic_fetch_add(&st.mem_verifies, 1);
        } else {
            fill_page(p, ++st.ver[p]);
            atomic_fetch_add(&st.mem_writes, 1);
        }
        if (k % 32 == 0) {
            uint64_t first = (rnd >> 12) % (ST_PAGES - 16);
            long n = uz_region_swapout(st.r, st.base + first * PAGE, 16 * PAGE);
            CHECK(n >= 0);
            atomic_fetch_add(&st.mem_swapouts, (uint64_t)n);
        }
    }
    return NULL;
}

/* Swaps the sync pages out one by one, over and over, while the lock and ping-pong threads run:
 * the unpinned ones go (and fault back in, by the user's atomics or the kernel's futex calls),
 * the pinned ones never do. */
static void *swapper_main(void *arg)
{
    (void)arg;
    while (atomic_load(&st.done) < ST_NLOCK + 2 * ST_NPAIR) {
        for (unsigned j = 0; j < ST_NSP; j++) {
            long n = uz_region_swapout(st.r, st.base + st.sync_page[j] * PAGE, PAGE);
            /* Not <= 1: a page dropped by the first pass and faulted back in (read) before the
             * second is dropped, and counted, twice. */
            CHECK(n >= 0);
            if (j >= ST_NSP - st.npin)
                CHECK_EQ(n, 0);
            atomic_fetch_add(&st.sync_swapouts, (uint64_t)n);
        }
        usleep(1000);
    }
    return NULL;
}

static void init_sync(void)
{
    for (unsigned j = 0; j < ST_NSLOT; j++) {
        struct slot *s = st.slot[j];
        memset(s, 0, sizeof(*s));
        CHECK_EQ(pthread_mutex_init(&s->m, NULL), 0);
        CHECK_EQ(pthread_cond_init(&s->c, NULL), 0);
    }
    struct misc *mc = st.misc;
    memset(mc, 0, sizeof(*mc));
    CHECK_EQ(pthread_barrier_init(&mc->barrier, NULL, ST_NLOCK), 0);
    CHECK_EQ(sem_init(&mc->sem, st.pshared, 2), 0);
    pthread_rwlockattr_t ra;
    CHECK_EQ(pthread_rwlockattr_init(&ra), 0);
    CHECK_EQ(pthread_rwlockattr_setpshared(&ra, st.pshared ? PTHREAD_PROCESS_SHARED
                                                           : PTHREAD_PROCESS_PRIVATE),
             0);
    CHECK_EQ(pthread_rwlock_init(&mc->rw, &ra), 0);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutexattr_t ma;
    CHECK_EQ(pthread_mutexattr_init(&ma), 0);
    CHECK_EQ(pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT), 0);
    memset(st.pip, 0, sizeof(*st.pip));
    CHECK_EQ(pthread_mutex_init(&st.pip->pi, &ma), 0);
    pthread_mutexattr_destroy(&ma);
}

static void destroy_sync(void)
{
    for (unsigned j = 0; j < ST_NSLOT; j++) {
        CHECK_EQ(pthread_cond_destroy(&st.slot[j]->c), 0);
        CHECK_EQ(pthread_mutex_destroy(&st.slot[j]->m), 0);
    }
    CHECK_EQ(pthread_barrier_destroy(&st.misc->barrier), 0);
    CHECK_EQ(sem_destroy(&st.misc->sem), 0);
    CHECK_EQ(pthread_rwlock_destroy(&st.misc->rw), 0);
    CHECK_EQ(pthread_mutex_destroy(&st.pip->pi), 0);
}

/* Every pinned page is mapped, and writable (DIRTY: never write-protected for writeback). */
static void check_pinned_resident(void)
{
    for (unsigned j = ST_NSP - st.npin; j < ST_NSP; j++) {
        void *a = st.base + st.sync_page[j] * PAGE;
        CHECK(resident(a));
        uint64_t w = page_word(st.r, a);
        CHECK(uz_pg_pins(w) >= 1);
        CHECK_EQ(uz_pg_state(w), UZ_PG_DIRTY);
    }
}

/* npin: the last npin of the sync pages are pinned (ST_NSP: all; 1: the PI mutex's). */
static void stress(const char *name, bool user_only, unsigned npin, bool pshared)
{
    alarm(UZT_SANITIZED ? 400 : 90);
    double t0 = now_s();
    memset(&st, 0, sizeof(st));
    st.r = make_mode(ST_PAGES, ST_LIMIT, user_only);
    struct uz_region_stat s0 = stat_of(st.r);
    CHECK_EQ(s0.mode, user_only ? UZ_REGION_MODE_USER_ONLY : UZ_REGION_MODE_FULL);
    st.base = uz_region_base(st.r);
    if (st_report_fd >= 0) {
        uint64_t range[2] = {(uintptr_t)st.base, (uint64_t)ST_PAGES * PAGE};
        CHECK_EQ(write(st_report_fd, range, sizeof(range)), (ssize_t)sizeof(range));
    }
    st.npin = npin;
    st.pshared = pshared;
    st.iters = (UZT_SANITIZED ? 100 : 400) * ST_BARRIER;
    st.rounds = UZT_SANITIZED ? 10000 : 40000;
    st.ver = calloc(ST_PAGES, sizeof(*st.ver));
    CHECK(st.ver);
    for (unsigned j = 0; j < ST_NSP; j++) {
        st.sync_page[j] = 37 + j * 401; /* spread: 37 .. 3646 */
        st.is_sync[st.sync_page[j]] = true;
        void *a = st.base + st.sync_page[j] * PAGE;
        if (j >= ST_NSP - npin)
            CHECK_EQ(uz_region_pin(st.r, a, PAGE), 0);
    }
    for (unsigned j = 0; j < ST_NSLOT; j++)
        st.slot[j] = (struct slot *)(st.base + st.sync_page[j / ST_PERPAGE] * PAGE +
                                     (j % ST_PERPAGE) * (PAGE / ST_PERPAGE));
    st.misc = (struct misc *)(st.base + st.sync_page[ST_NSYNC] * PAGE);
    st.pip = (struct pi_page *)(st.base + st.sync_page[ST_NSYNC + 1] * PAGE);
    init_sync();
    CHECK_EQ(stat_of(st.r).pinned_pages, npin);
    check_pinned_resident();

    pthread_t lt[ST_NLOCK], pt[2 * ST_NPAIR], mt[ST_NMEM], sw;
    for (unsigned i = 0; i < ST_NMEM; i++)
        CHECK_EQ(pthread_create(&mt[i], NULL, mem_main, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < ST_NLOCK; i++)
        CHECK_EQ(pthread_create(&lt[i], NULL, lock_main, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < 2 * ST_NPAIR; i++)
        CHECK_EQ(pthread_create(&pt[i], NULL, pong_main, (void *)(uintptr_t)i), 0);
    CHECK_EQ(pthread_create(&sw, NULL, swapper_main, NULL), 0);
    unsigned checks = 0;
    while (atomic_load(&st.done) < ST_NLOCK + 2 * ST_NPAIR) {
        check_pinned_resident();
        checks++;
        usleep(2000);
    }
    uint64_t expect[ST_NSLOT] = {0};
    for (unsigned i = 0; i < ST_NLOCK; i++) {
        void *ret;
        CHECK_EQ(pthread_join(lt[i], &ret), 0);
        for (unsigned j = 0; j < ST_NSLOT; j++)
            expect[j] += ((uint64_t *)ret)[j];
        free(ret);
    }
    for (unsigned i = 0; i < 2 * ST_NPAIR; i++)
        CHECK_EQ(pthread_join(pt[i], NULL), 0);
    CHECK_EQ(pthread_join(sw, NULL), 0);
    atomic_store(&st.stop_mem, true);
    for (unsigned i = 0; i < ST_NMEM; i++)
        CHECK_EQ(pthread_join(mt[i], NULL), 0);

    /* Counts exact. */
    uint64_t total = 0, pings[ST_NPAIR] = {0}, pongs[ST_NPAIR] = {0};
    for (unsigned j = 0; j < ST_NSLOT; j++) {
        struct slot *s = st.slot[j];
        CHECK_EQ(s->count, expect[j]);
        CHECK_EQ(s->owner, 0);
        total += s->count;
        for (unsigned q = 0; q < ST_NPAIR; q++) {
            CHECK_EQ(s->turn[q], 0);
            CHECK_EQ(s->pings[q], s->pongs[q]);
            pings[q] += s->pings[q];
            pongs[q] += s->pongs[q];
        }
    }
    CHECK_EQ(total, (uint64_t)ST_NLOCK * st.iters);
    for (unsigned q = 0; q < ST_NPAIR; q++) {
        CHECK_EQ(pings[q], st.rounds);
        CHECK_EQ(pongs[q], st.rounds);
    }
    struct misc *mc = st.misc;
    CHECK_EQ(mc->rw_x, mc->rw_writes);
    CHECK_EQ(mc->rw_y, mc->rw_writes);
    CHECK(mc->rw_writes > 0);
    CHECK_EQ(st.pip->pi_count, (uint64_t)ST_NLOCK * st.iters / 8);
    CHECK_EQ(atomic_load(&mc->arrived), (uint64_t)ST_NLOCK * (st.iters / ST_BARRIER));
    CHECK_EQ(atomic_load(&mc->in_sem), 0);
    int sv = -1;
    CHECK_EQ(sem_getvalue(&mc->sem, &sv), 0);
    CHECK_EQ(sv, 2);
    check_pinned_resident();
    destroy_sync();

    /* The shadow matches. */
    unsigned bad = 0;
    for (uint64_t p = 0; p < ST_PAGES; p++)
        if (!st.is_sync[p])
            bad += !page_matches(p, st.ver[p]);
    CHECK_EQ(bad, 0);

    struct uz_region_stat s1 = stat_of(st.r);
    printf("%s: s=%.1f lock_iters=%u pingpong=%u writes=%llu verifies=%llu swapouts=%llu "
           "(explicit %llu, sync pages %llu) major=%llu wp=%llu pinned=%llu pin_checks=%u "
           "failed=%d\n",
           name, now_s() - t0, ST_NLOCK * st.iters, ST_NPAIR * st.rounds,
           (unsigned long long)st.mem_writes, (unsigned long long)st.mem_verifies,
           (unsigned long long)s1.swapouts, (unsigned long long)st.mem_swapouts,
           (unsigned long long)st.sync_swapouts, (unsigned long long)s1.major_faults,
           (unsigned long long)s1.wp_faults, (unsigned long long)s1.pinned_pages, checks,
           s1.failed);
    CHECK_EQ(s1.failed, 0);
    CHECK(s1.swapouts > 0);
    /* the reclaim thread evicted too, not only we */
    CHECK(s1.swapouts > st.mem_swapouts + st.sync_swapouts);
    if (npin < ST_NSP)
        CHECK(st.sync_swapouts > 0); /* the unpinned sync pages did go */
    CHECK(s1.major_faults > 0);
    CHECK_EQ(s1.pinned_pages, npin);
    for (unsigned j = ST_NSP - npin; j < ST_NSP; j++)
        CHECK_EQ(uz_region_unpin(st.r, st.base + st.sync_page[j] * PAGE, PAGE), 0);
    CHECK_EQ(stat_of(st.r).pinned_pages, 0);
    settle_and_check(st.r);
    /* Unpinned, the former sync pages can go like any other. */
    CHECK(uz_region_swapout(st.r, st.base, (size_t)ST_PAGES * PAGE) >= 0);
    for (unsigned j = 0; j < ST_NSP; j++)
        CHECK(!resident(st.base + st.sync_page[j] * PAGE));
    uz_region_destroy(st.r);
    free(st.ver);
    st.r = NULL;
}

static void case_user_pinned(void)
{
    stress("user_pinned", true, ST_NSP, true);
}

/* Thread tid of process pid: sleeping in a shared FUTEX_WAIT(_BITSET) on [lo, hi)? Sets *addr
 * and *nvcsw (its voluntary context switches) then. */
static bool shared_wait_in(pid_t pid, pid_t tid, uint64_t lo, uint64_t hi, uint64_t *addr,
                           uint64_t *nvcsw)
{
    char path[96], line[256];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    long nr = -1;
    unsigned long long a0 = 0, a1 = 0;
    int got = fscanf(f, "%ld %llx %llx", &nr, &a0, &a1);
    fclose(f);
    unsigned cmd = (unsigned)a1 & FUTEX_CMD_MASK;
    if (got != 3 || nr != SYS_futex || a0 < lo || a0 >= hi || (a1 & FUTEX_PRIVATE_FLAG) ||
        (cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET))
        return false;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
    f = fopen(path, "r");
    if (!f)
        return false;
    *nvcsw = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "voluntary_ctxt_switches: %llu", &a1) == 1)
            *nvcsw = a1;
    fclose(f);
    *addr = a0;
    return true;
}

/* The same without the pins, in a child: it must die of glibc's futex error, or hang on a lost
 * wake-up: a thread asleep, without waking once, in a shared FUTEX_WAIT on a region word for
 * seconds (a process-shared object's FUTEX_WAKE failed with EFAULT, which glibc ignores: see
 * the glibc case). Either comes within a second or so in the normal build; the child runs the
 * stress up to ten times. */
static void case_user_unpinned(void)
{
    alarm(UZT_SANITIZED ? 600 : 120);
    const double lost_s = UZT_SANITIZED ? 10 : 3;
    int ep[2], ip[2];
    CHECK_EQ(pipe(ep), 0);
    CHECK_EQ(pipe(ip), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (!pid) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        setenv("LIBC_FATAL_STDERR_", "1", 1);
        dup2(ep[1], 2);
        close(ep[0]);
        close(ep[1]);
        close(ip[0]);
        st_report_fd = ip[1];
        for (int k = 0; k < 10; k++)
            stress("user_unpinned (survived)", true, 0, true);
        _exit(0);
    }
    close(ep[1]);
    close(ip[1]);
    CHECK_EQ(fcntl(ep[0], F_SETFL, O_NONBLOCK), 0);
    CHECK_EQ(fcntl(ip[0], F_SETFL, O_NONBLOCK), 0);
    char err[4096];
    size_t nerr = 0;
    uint64_t range[2] = {0, 0}, got[2];
    pid_t stuck_tid = 0;
    uint64_t stuck_addr = 0, stuck_nvcsw = 0;
    double stuck_since = 0;
    int status = 0;
    bool lost = false;
    for (;;) {
        usleep(100000);
        while (read(ip[0], got, sizeof(got)) == (ssize_t)sizeof(got))
            memcpy(range, got, sizeof(range));
        ssize_t k;
        while (nerr + 1 < sizeof(err) && (k = read(ep[0], err + nerr, sizeof(err) - 1 - nerr)) > 0)
            nerr += (size_t)k;
        err[nerr] = 0;
        pid_t w = waitpid(pid, &status, WNOHANG);
        CHECK(w == 0 || w == pid);
        if (w == pid)
            break;
        if (!range[0])
            continue;
        char dir[64];
        snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        bool still = false;
        pid_t cand = 0;
        uint64_t cand_addr = 0, cand_nvcsw = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            uint64_t addr, nvcsw;
            pid_t tid = (pid_t)atoi(e->d_name);
            if (tid <= 0 || !shared_wait_in(pid, tid, range[0], range[0] + range[1], &addr, &nvcsw))
                continue;
            if (tid == stuck_tid && addr == stuck_addr && nvcsw == stuck_nvcsw) {
                still = true; /* the same sleep, not woken since */
                break;
            }
            if (!cand) {
                cand = tid;
                cand_addr = addr;
                cand_nvcsw = nvcsw;
            }
        }
        closedir(d);
        if (!still) {
            stuck_tid = cand;
            stuck_addr = cand_addr;
            stuck_nvcsw = cand_nvcsw;
            stuck_since = now_s();
        } else if (now_s() - stuck_since > lost_s) {
            lost = true;
            kill(pid, SIGKILL);
            CHECK_EQ(waitpid(pid, &status, 0), pid);
            break;
        }
    }
    close(ep[0]);
    close(ip[0]);
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT &&
                   strstr(err, "The futex facility returned an unexpected error code");
    if (lost)
        printf("user_unpinned: a lost wake-up (thread %d asleep in a shared FUTEX_WAIT on region "
               "offset %#llx for %.0f s, never woken)\n",
               (int)stuck_tid, (unsigned long long)(stuck_addr - range[0]), lost_s);
    else
        printf("user_unpinned: %s\n", aborted ? "SIGABRT (glibc's futex error)" : "survived");
    if (!aborted && !lost)
        fprintf(stderr, "user_unpinned: status %#x, stderr:\n%s\n", status, err);
    CHECK(aborted || lost);
}

static void case_full(void)
{
    struct uz_region *r = make_mode(64, 0, false);
    bool full = stat_of(r).mode == UZ_REGION_MODE_FULL;
    uz_region_destroy(r);
    if (!full) {
        printf("full: kernel faults are not served here (user-only mode): skipped\n");
        return;
    }
    stress("full", false, 1, true); /* only the PI mutex's page */
}

/* ---- the futex system call itself on swapped-out, pinned and clean pages ---- */

static long futex(void *addr, int op, uint32_t val, long timeout_ms)
{
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
    errno = 0;
    return syscall(SYS_futex, addr, op, val, timeout_ms >= 0 ? &ts : NULL, NULL,
                   FUTEX_BITSET_MATCH_ANY); /* val3: the bitset of the _BITSET ops */
}

/* -errno of a futex call, or its (non-negative) result. */
static long futex_rc(void *addr, int op, uint32_t val, long timeout_ms)
{
    long rc = futex(addr, op, val, timeout_ms);
    return rc < 0 ? -errno : rc;
}

#define SY_PAGES 256u
#define SY_OUT   8u   /* swapped out, unpinned */
#define SY_PIN   100u /* pinned */
#define SY_CLEAN 200u /* swapped in by a read: mapped write-protected (CLEAN) */

static void syscalls_mode(bool user_only)
{
    const char *name = user_only ? "syscalls user_only" : "syscalls full";
    struct uz_region *r = make_mode(SY_PAGES, 0, user_only);
    if (!user_only && stat_of(r).mode != UZ_REGION_MODE_FULL) {
        printf("%s: kernel faults are not served here: skipped\n", name);
        uz_region_destroy(r);
        return;
    }
    CHECK_EQ(stat_of(r).mode, user_only ? UZ_REGION_MODE_USER_ONLY : UZ_REGION_MODE_FULL);
    unsigned char *b = uz_region_base(r);
    uint32_t *out = (uint32_t *)(b + SY_OUT * PAGE + 64);
    uint32_t *pin = (uint32_t *)(b + SY_PIN * PAGE + 64);
    uint32_t *clean = (uint32_t *)(b + SY_CLEAN * PAGE + 64);
    uint32_t *pi_out = out + 1, *pi_pin = pin + 1, *pi_clean = clean + 1;
    for (uint64_t p = 0; p < SY_PAGES; p++)
        memset(b + p * PAGE, (int)(p + 1), PAGE);
    *out = *pin = *clean = 7;
    *pi_out = *pi_pin = *pi_clean = 0;
    out[2] = 0; /* FUTEX_WAKE_OP's second word */
    CHECK_EQ(uz_region_swapout(r, b, (size_t)SY_PAGES * PAGE), (long)SY_PAGES);
    CHECK_EQ(*(volatile uint32_t *)clean, 7u); /* a user read fault: CLEAN */
    CHECK_EQ(uz_region_pin(r, pin, 4), 0);
    bool ra = resident(out); /* the read fault's readahead may have brought it in */
    CHECK_EQ(uz_region_swapout(r, out, 4), ra ? 1 : 0);
    CHECK(!resident(out));
    CHECK(resident(pin) && resident(clean));
    CHECK_EQ(uz_pg_state(page_word(r, out)), UZ_PG_SWAPPED);
    CHECK_EQ(uz_pg_state(page_word(r, pin)), UZ_PG_DIRTY);
    CHECK_EQ(uz_pg_state(page_word(r, clean)), UZ_PG_CLEAN);
    const pid_t tid = (pid_t)syscall(SYS_gettid);

    /* The pinned page: everything works in both modes. */
    CHECK_EQ(futex_rc(pin, FUTEX_WAIT_PRIVATE, 7, 10), -ETIMEDOUT);
    CHECK_EQ(futex_rc(pin, FUTEX_WAIT_PRIVATE, 8, 10), -EAGAIN);
    CHECK_EQ(futex_rc(pin, FUTEX_WAIT, 7, 10), -ETIMEDOUT); /* shared: the page looked up */
    CHECK_EQ(futex_rc(pin, FUTEX_WAKE, 1, -1), 0);
    CHECK_EQ(futex_rc(pin, FUTEX_WAKE_PRIVATE, 1, -1), 0);
    CHECK_EQ(futex_rc(pi_pin, FUTEX_TRYLOCK_PI_PRIVATE, 0, -1), 0); /* written by the kernel */
    CHECK_EQ(*pi_pin, (uint32_t)tid);
    CHECK_EQ(futex_rc(pi_pin, FUTEX_UNLOCK_PI_PRIVATE, 0, -1), 0);
    CHECK_EQ(*pi_pin, 0u);
    /* A clean page can be read by the kernel in both modes. */
    CHECK_EQ(futex_rc(clean, FUTEX_WAIT_PRIVATE, 7, 10), -ETIMEDOUT);
    CHECK_EQ(futex_rc(clean, FUTEX_WAIT_PRIVATE, 8, 10), -EAGAIN);
    CHECK_EQ(uz_pg_state(page_word(r, clean)), UZ_PG_CLEAN);

    struct uz_region_stat s0 = stat_of(r);
    if (user_only) {
        /* The swapped-out page: the kernel's fault is not served, the call fails, the page
         * stays out. */
        CHECK_EQ(futex_rc(out, FUTEX_WAIT_PRIVATE, 7, 10), -EFAULT);
        CHECK_EQ(futex_rc(out, FUTEX_WAIT_PRIVATE, 8, 10), -EFAULT);
        CHECK_EQ(futex_rc(out, FUTEX_WAIT_BITSET_PRIVATE, 7, -1), -EFAULT); /* sem, cond */
        CHECK_EQ(futex_rc(out, FUTEX_WAIT, 7, 10), -EFAULT);
        CHECK_EQ(futex_rc(out, FUTEX_WAKE, 1, -1), -EFAULT);   /* shared: looks it up */
        CHECK_EQ(futex_rc(out, FUTEX_WAKE_PRIVATE, 1, -1), 0); /* never reads the word */
        CHECK_EQ(futex_rc(pi_out, FUTEX_TRYLOCK_PI_PRIVATE, 0, -1), -EFAULT);
        CHECK(!resident(out));
        CHECK_EQ(uz_pg_state(page_word(r, out)), UZ_PG_SWAPPED);
        /* A kernel write to the clean (write-protected) page is refused too. */
        CHECK_EQ(futex_rc(pi_clean, FUTEX_TRYLOCK_PI_PRIVATE, 0, -1), -EFAULT);
        CHECK_EQ(uz_pg_state(page_word(r, clean)), UZ_PG_CLEAN);
        struct uz_region_stat s1 = stat_of(r);
        CHECK_EQ(s1.major_faults, s0.major_faults);
        CHECK_EQ(s1.wp_faults, s0.wp_faults);
        /* The user-space contents are all there: a user fault brings the page in. */
        CHECK_EQ(*(volatile uint32_t *)out, 7u);
        CHECK_EQ(*pi_out, 0u);
        CHECK_EQ(*pi_clean, 0u);
    } else {
        /* FULL: the kernel's faults are served. */
        CHECK_EQ(futex_rc(out, FUTEX_WAIT_PRIVATE, 7, 10), -ETIMEDOUT);
        CHECK(resident(out));
        struct uz_region_stat s1 = stat_of(r);
        CHECK(s1.major_faults > s0.major_faults);
        CHECK_EQ(uz_region_swapout(r, out, 4), 1);
        CHECK_EQ(futex_rc(out, FUTEX_WAIT, 7, 10), -ETIMEDOUT); /* shared */
        CHECK_EQ(uz_region_swapout(r, out, 4), 1);
        CHECK_EQ(futex_rc(out, FUTEX_WAKE, 1, -1), 0);
        CHECK_EQ(uz_region_swapout(r, out, 4), 1);
        /* But not every kernel fault: the futex code's own fault-in for the words it writes
         * (fault_in_user_writeable(): fixup_user_fault() without `unlocked`, so without
         * FAULT_FLAG_ALLOW_RETRY) is one userfaultfd refuses in any mode (handle_userfault()
         * returns VM_FAULT_SIGBUS when it may not retry). Private PI operations and
         * FUTEX_WAKE_OP fail with EFAULT on a swapped-out or a write-protected (clean, or under
         * writeback) page in FULL mode too: PI mutexes must be pinned there as well. */
        s0 = stat_of(r);
        CHECK_EQ(futex_rc(pi_out, FUTEX_TRYLOCK_PI_PRIVATE, 0, -1), -EFAULT);
        CHECK_EQ(futex_rc(pi_out, FUTEX_LOCK_PI_PRIVATE, 0, -1), -EFAULT);
        CHECK_EQ(syscall(SYS_futex, out, FUTEX_WAKE_OP_PRIVATE, 1, 1, out + 2,
                         FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0)),
                 -1);
        CHECK_EQ(errno, EFAULT);
        CHECK(!resident(out));
        CHECK_EQ(uz_pg_state(page_word(r, out)), UZ_PG_SWAPPED);
        CHECK_EQ(futex_rc(pi_clean, FUTEX_TRYLOCK_PI_PRIVATE, 0, -1), -EFAULT);
        CHECK_EQ(uz_pg_state(page_word(r, clean)), UZ_PG_CLEAN);
        *(volatile uint32_t *)clean; /* (reads do not unprotect) */
        CHECK_EQ(stat_of(r).major_faults, s0.major_faults);
        CHECK_EQ(stat_of(r).wp_faults, s0.wp_faults);
        /* A shared PI futex looks its page up with get_user_pages(FOLL_WRITE) first, which may
         * retry: that fault is served (missing, then write-protect) and the write succeeds. */
        CHECK_EQ(futex_rc(pi_out, FUTEX_TRYLOCK_PI, 0, -1), 0);
        CHECK_EQ(*pi_out, (uint32_t)tid);
        CHECK_EQ(futex_rc(pi_out, FUTEX_UNLOCK_PI, 0, -1), 0);
        CHECK_EQ(*pi_out, 0u);
        CHECK_EQ(futex_rc(pi_clean, FUTEX_TRYLOCK_PI, 0, -1), 0);
        CHECK_EQ(uz_pg_state(page_word(r, clean)), UZ_PG_DIRTY);
        CHECK_EQ(*pi_clean, (uint32_t)tid);
        /* UNLOCK_PI writes the word too: on a write-protected page it fails. */
        CHECK_EQ(uz_region_swapout(r, clean, 4), 1);
        CHECK_EQ(*(volatile uint32_t *)pi_clean, (uint32_t)tid); /* in again: CLEAN */
        CHECK_EQ(uz_pg_state(page_word(r, clean)), UZ_PG_CLEAN);
        CHECK_EQ(futex_rc(pi_clean, FUTEX_UNLOCK_PI_PRIVATE, 0, -1), -EFAULT);
        CHECK_EQ(*pi_clean, (uint32_t)tid);
        CHECK_EQ(futex_rc(pi_clean, FUTEX_UNLOCK_PI, 0, -1), 0); /* shared: gup first */
        CHECK_EQ(*pi_clean, 0u);
        /* Pinned, the private PI operations work (tested above). */
    }
    CHECK_EQ(uz_region_unpin(r, pin, 4), 0);
    for (uint64_t p = 0; p < SY_PAGES; p++)
        for (size_t k = 128; k < PAGE; k += 512)
            CHECK_EQ(b[p * PAGE + k], (unsigned char)(p + 1));
    settle_and_check(r);
    uz_region_destroy(r);
    printf("%s: ok\n", name);
}

static void case_syscalls(void)
{
    alarm(60);
    syscalls_mode(true);
    syscalls_mode(false);
}

/* ---- glibc's abort, made deterministic with a seccomp user notification ---- */

#if defined(__x86_64__)
#define FX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#if defined(FX_AUDIT_ARCH) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FX_SECCOMP 1

/* What the contender waits on: each is on page 5 of the child's region. GX_WAKE: a
 * process-shared semaphore, whose poster (not its waiter) is stopped, in its FUTEX_WAKE. */
enum gx_obj { GX_MUTEX, GX_PI, GX_COND, GX_SEM, GX_WAKE };

static struct {
    enum gx_obj obj;
    pthread_mutex_t *m;
    pthread_cond_t *c;
    sem_t *sem;
    uint32_t *flag; /* under m: the condition of the COND variant */
    int pipe[2];    /* the contender sends the listener fd (or -errno) */
    _Atomic bool done;
    _Atomic pid_t waiter; /* the contender's thread id */
} gx;

/* Installs, on the calling thread only, a filter that stops its FUTEX_WAIT(_BITSET) and
 * FUTEX_LOCK_PI calls (`wake`: its FUTEX_WAKE calls) on words of `page` for a supervisor.
 * @return : the listener fd, or -errno. */
static int trap_futex(const void *page, bool wake)
{
    const uint32_t c1 = wake ? FUTEX_WAKE : FUTEX_WAIT, c2 = wake ? FUTEX_WAKE : FUTEX_WAIT_BITSET,
                   c3 = wake ? FUTEX_WAKE : FUTEX_LOCK_PI;
    uint64_t a = (uint64_t)(uintptr_t)page;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FX_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~(uint32_t)(PAGE - 1)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)a, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(a >> 32), 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, FUTEX_CMD_MASK & 0xff),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, c1, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, c2, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, c3, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return -errno;
    long fd =
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    return fd < 0 ? -errno : (int)fd;
}

static void *contender_main(void *arg)
{
    atomic_store(&gx.waiter, (pid_t)syscall(SYS_gettid));
    if (gx.obj != GX_WAKE) { /* (GX_WAKE's waiter is not stopped: its poster is) */
        int fd = trap_futex(arg, false);
        CHECK_EQ(write(gx.pipe[1], &fd, sizeof(fd)), (ssize_t)sizeof(fd));
        if (fd < 0)
            return NULL;
    }
    switch (gx.obj) {
    case GX_MUTEX:
    case GX_PI: /* contended: stops in FUTEX_WAIT or FUTEX_LOCK_PI */
        CHECK_EQ(pthread_mutex_lock(gx.m), 0);
        CHECK_EQ(pthread_mutex_unlock(gx.m), 0);
        break;
    case GX_COND: /* stops in FUTEX_WAIT_BITSET on the condition variable's signals word */
        CHECK_EQ(pthread_mutex_lock(gx.m), 0);
        while (!*gx.flag)
            CHECK_EQ(pthread_cond_wait(gx.c, gx.m), 0);
        CHECK_EQ(pthread_mutex_unlock(gx.m), 0);
        break;
    case GX_SEM:  /* value 0: stops in FUTEX_WAIT_BITSET */
    case GX_WAKE: /* value 0: sleeps in FUTEX_WAIT_BITSET (shared) */
        while (sem_wait(gx.sem))
            CHECK_EQ(errno, EINTR);
        break;
    }
    atomic_store(&gx.done, true);
    return NULL;
}

/* GX_WAKE: posts the semaphore, stopped in its FUTEX_WAKE. */
static void *poster_main(void *arg)
{
    int fd = trap_futex(arg, true);
    CHECK_EQ(write(gx.pipe[1], &fd, sizeof(fd)), (ssize_t)sizeof(fd));
    if (fd >= 0)
        CHECK_EQ(sem_post(gx.sem), 0); /* glibc ignores the wake's EFAULT: the post "works" */
    return NULL;
}

/* Whether thread `tid` of this process sleeps in a futex system call. */
static bool in_futex(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    CHECK(f);
    long nr = -1;
    int got = fscanf(f, "%ld", &nr);
    fclose(f);
    return got == 1 && nr == SYS_futex;
}

/* Answers the contender's later stops (a woken waiter may wait again) until it is done. */
static void serve_until_done(int fd)
{
    while (!atomic_load(&gx.done)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 10) <= 0)
            continue;
        struct seccomp_notif req;
        memset(&req, 0, sizeof(req));
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req))
            continue;
        struct seccomp_notif_resp resp = {.id = req.id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
        ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

/* The child: a mutex (PTHREAD_PRIO_INHERIT for GX_PI, held by this thread), a condition
 * variable or a semaphore (value 0) on page 5 of a fresh region; another thread's wait on it is
 * stopped in its futex call while the page is swapped out, then continued (GX_WAKE: the
 * poster's wake is). Exits 0 when the wait ended normally (lock handed over, signal or post
 * received), 3 when the wake-up was lost, 77 without seccomp; dies of glibc's abort otherwise. */
static void glibc_child(bool user_only, bool pinned, enum gx_obj obj)
{
    alarm(UZT_SANITIZED ? 120 : 30);
    setenv("LIBC_FATAL_STDERR_", "1", 1);
    struct uz_region *r = make_mode(16, 0, user_only);
    if (!user_only && stat_of(r).mode != UZ_REGION_MODE_FULL)
        _exit(UZT_SKIP);
    unsigned char *page = (unsigned char *)uz_region_base(r) + 5 * PAGE;
    gx.obj = obj;
    gx.m = (pthread_mutex_t *)(page + 256);
    gx.c = (pthread_cond_t *)(page + 512);
    gx.sem = (sem_t *)(page + 768);
    gx.flag = (uint32_t *)(page + 1024);
    if (pinned)
        CHECK_EQ(uz_region_pin(r, page, PAGE), 0);
    pthread_mutexattr_t ma;
    CHECK_EQ(pthread_mutexattr_init(&ma), 0);
    if (obj == GX_PI)
        CHECK_EQ(pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT), 0);
    CHECK_EQ(pthread_mutex_init(gx.m, &ma), 0);
    pthread_mutexattr_destroy(&ma);
    CHECK_EQ(pthread_cond_init(gx.c, NULL), 0);
    CHECK_EQ(sem_init(gx.sem, obj == GX_WAKE, 0), 0);
    *gx.flag = 0;
    if (obj == GX_MUTEX || obj == GX_PI)
        CHECK_EQ(pthread_mutex_lock(gx.m), 0);
    CHECK_EQ(pipe(gx.pipe), 0);
    pthread_t t, w;
    CHECK_EQ(pthread_create(&t, NULL, contender_main, page), 0);
    if (obj == GX_WAKE) {
        /* The waiter goes to sleep (the page resident), then the poster starts. */
        while (!atomic_load(&gx.waiter) || !in_futex(atomic_load(&gx.waiter)))
            usleep(1000);
        CHECK_EQ(pthread_create(&w, NULL, poster_main, page), 0);
    }
    int fd;
    CHECK_EQ(read(gx.pipe[0], &fd, sizeof(fd)), (ssize_t)sizeof(fd));
    if (fd < 0) {
        fprintf(stderr, "seccomp user notification unavailable (%s)\n", strerror(-fd));
        _exit(UZT_SKIP);
    }
    struct seccomp_notif req;
    memset(&req, 0, sizeof(req));
    CHECK_EQ(ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req), 0);
    CHECK_EQ(req.data.nr, SYS_futex);
    uintptr_t word = (uintptr_t)req.data.args[0];
    unsigned cmd = (unsigned)req.data.args[1] & FUTEX_CMD_MASK;
    switch (obj) {
    case GX_MUTEX:
        CHECK_EQ(word, (uintptr_t)&gx.m->__data.__lock);
        CHECK_EQ(cmd, FUTEX_WAIT);
        CHECK_EQ(req.data.args[2], 2); /* glibc's "locked, with waiters" */
        break;
    case GX_PI:
        CHECK_EQ(word, (uintptr_t)&gx.m->__data.__lock);
        CHECK_EQ(cmd, FUTEX_LOCK_PI);
        break;
    case GX_COND:
        CHECK(word >= (uintptr_t)gx.c && word < (uintptr_t)(gx.c + 1));
        CHECK_EQ(cmd, FUTEX_WAIT_BITSET);
        break;
    case GX_SEM:
        CHECK(word >= (uintptr_t)gx.sem && word < (uintptr_t)(gx.sem + 1));
        CHECK_EQ(cmd, FUTEX_WAIT_BITSET);
        break;
    case GX_WAKE:
        CHECK(word >= (uintptr_t)gx.sem && word < (uintptr_t)(gx.sem + 1));
        CHECK_EQ(cmd, FUTEX_WAKE);
        CHECK(req.data.args[1] & FUTEX_PRIVATE_FLAG ? 0 : 1); /* shared */
        break;
    }
    /* glibc's user-space atomics (for PI a failed compare-and-swap: a write access all the
     * same) made the page resident; the contender is between them and its futex call: the
     * window region.h describes. */
    CHECK(resident(page));
    CHECK_EQ(uz_region_swapout(r, page, PAGE), pinned ? 0 : 1);
    CHECK_EQ(resident(page), pinned);
    struct seccomp_notif_resp resp = {.id = req.id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
    CHECK_EQ(ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp), 0);
    usleep(50000); /* the contender sleeps in the kernel, or has aborted the process */
    int code = 0;
    switch (obj) {
    case GX_MUTEX:
    case GX_PI:
        CHECK_EQ(pthread_mutex_unlock(gx.m), 0);
        break;
    case GX_COND:
        CHECK_EQ(pthread_mutex_lock(gx.m), 0);
        *gx.flag = 1;
        CHECK_EQ(pthread_cond_signal(gx.c), 0);
        CHECK_EQ(pthread_mutex_unlock(gx.m), 0);
        break;
    case GX_SEM:
        CHECK_EQ(sem_post(gx.sem), 0);
        break;
    case GX_WAKE: {
        CHECK_EQ(pthread_join(w, NULL), 0); /* its sem_post returned 0 */
        usleep(150000);
        bool lost = !atomic_load(&gx.done);
        int val = -1;
        CHECK_EQ(sem_getvalue(gx.sem, &val), 0);
        if (lost) {
            CHECK_EQ(val, 1); /* posted, and nobody woken: the waiter sleeps on */
            CHECK(in_futex(atomic_load(&gx.waiter)));
            CHECK_EQ(sem_post(gx.sem), 0); /* this thread's wake is not stopped: it works */
        }
        code = lost ? 3 : 0;
        break;
    }
    }
    serve_until_done(fd);
    CHECK_EQ(pthread_join(t, NULL), 0);
    if (pinned)
        CHECK_EQ(uz_region_unpin(r, page, PAGE), 0);
    CHECK_EQ(stat_of(r).failed, 0);
    uz_region_destroy(r);
    _exit(code);
}

/* Runs glibc_child in a child process. @return : its wait status (its stderr in err[]). */
static int run_glibc_child(bool user_only, bool pinned, enum gx_obj obj, char *err, size_t errlen)
{
    int ep[2];
    CHECK_EQ(pipe(ep), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (!pid) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(ep[1], 2);
        close(ep[0]);
        close(ep[1]);
        glibc_child(user_only, pinned, obj);
    }
    close(ep[1]);
    read_all(ep[0], err, errlen);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    return status;
}
#else
#define FX_SECCOMP 0
#endif

static void case_glibc(void)
{
#if FX_SECCOMP
    alarm(UZT_SANITIZED ? 400 : 120);
    static const struct {
        const char *name;
        bool user_only, pinned;
        enum gx_obj obj;
        int expect; /* 0: the wait ends normally, SIGABRT, or 3: the wake-up is lost */
    } v[] = {
        {"glibc user_only mutex unpinned", true, false, GX_MUTEX, SIGABRT},
        {"glibc user_only cond unpinned", true, false, GX_COND, SIGABRT},
        {"glibc user_only sem unpinned", true, false, GX_SEM, SIGABRT},
        {"glibc user_only pshared sem_post unpinned", true, false, GX_WAKE, 3},
        {"glibc user_only mutex pinned", true, true, GX_MUTEX, 0},
        {"glibc user_only cond pinned", true, true, GX_COND, 0},
        {"glibc user_only sem pinned", true, true, GX_SEM, 0},
        {"glibc user_only pshared sem_post pinned", true, true, GX_WAKE, 0},
        {"glibc user_only pi pinned", true, true, GX_PI, 0},
        {"glibc full mutex unpinned", false, false, GX_MUTEX, 0},
        {"glibc full cond unpinned", false, false, GX_COND, 0},
        {"glibc full sem unpinned", false, false, GX_SEM, 0},
        {"glibc full pshared sem_post unpinned", false, false, GX_WAKE, 0},
        /* FULL mode does not serve the PI futex's own fault-in (see syscalls_mode()). */
        {"glibc full pi unpinned", false, false, GX_PI, SIGABRT},
        {"glibc full pi pinned", false, true, GX_PI, 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char err[4096];
        int status = run_glibc_child(v[i].user_only, v[i].pinned, v[i].obj, err, sizeof(err));
        if (WIFEXITED(status) && WEXITSTATUS(status) == UZT_SKIP) {
            printf("%s: skipped: %s", v[i].name, err);
            continue;
        }
        bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        bool lost = WIFEXITED(status) && WEXITSTATUS(status) == 3;
        printf("%s: %s\n", v[i].name,
               aborted ? "SIGABRT"
               : ok    ? "the wait ended normally"
               : lost  ? "the wake-up was lost (sem_post returned 0, the waiter sleeps on)"
                       : "unexpected status");
        bool want = v[i].expect == SIGABRT ? aborted : v[i].expect == 3 ? lost : ok;
        if (want && aborted && !strstr(err, "The futex facility returned an unexpected error code"))
            want = false;
        if (!want)
            fprintf(stderr, "%s: status %#x, stderr:\n%s\n", v[i].name, status, err);
        CHECK(want);
    }
#else
    printf("glibc: no seccomp filter for this architecture: skipped\n");
#endif
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"syscalls", case_syscalls},
        {"glibc", case_glibc},
        {"user_pinned", case_user_pinned},
        {"user_unpinned", case_user_unpinned},
        {"full", case_full},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool want = argc < 2;
        for (int a = 1; a < argc; a++)
            want |= !strcmp(argv[a], cases[i].name);
        if (want)
            cases[i].fn();
    }
    printf("test_region_futex: ok\n");
    return 0;
}
