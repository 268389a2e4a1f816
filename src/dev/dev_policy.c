// SPDX-License-Identifier: MIT
/*
 * dev_policy.c - the tiering policy: the deployments' daemons (Android's mmd, ChromeOS's
 * swap management) run inside the device, on a thread of its own.
 *
 * Every `interval` seconds a round runs, with init_lock held for reading (I/O goes on; a reset
 * or codec change waits for the round to end):
 *   1. writeback: mark idle the slots not accessed for writeback_age seconds, then write back
 *      the slots of writeback_type, at most writeback_max_per_round bytes and what is left of
 *      the day's writeback_limit_per_day (the budget refills 24 h after the day's first
 *      writeback, the way mmd resets writeback_limit once a day);
 *   2. recompress: mark idle the slots not accessed for recompress_age seconds (slots written
 *      back in step 1 are no longer candidates), then recompress the slots of recompress_type
 *      with the secondary of recompress_priority.
 * Longer ages come first because `idle N` also clears the marks of younger slots (Linux 6.13+):
 * while the policy runs it owns the idle marks. A stage without what it needs (no backing
 * device, no secondary compressor) is skipped, and its error kept in policy_stat.
 *
 * Ages are read on the device's clock (uz_dev_now(): tests move it), the interval on
 * CLOCK_MONOTONIC. The thread is started when interval becomes non-zero and joined when it
 * goes back to 0, at reset (which restores the defaults, policy off) and at destroy.
 */
#include "dev_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define DAY_SECONDS 86400u

struct uz_dev_policy {
    /* `lock`: a leaf (nothing else is taken while holding it, so the attribute store, the
     * thread and fork handlers may take it under any device lock); its holder sleeps only in
     * pthread_cond_timedwait on `cond`. It protects everything below. */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; signalled on a config change and on stop */
    struct uz_dev_policy_cfg cfg;
    struct uz_dev_policy_stat st;
    uint64_t gen;       /* bumped at every config change: a sleeping thread restarts its wait */
    uint32_t day_start; /* uz_dev_now() of the day's first writeback (valid when day_used) */
    bool running, stop;
    pthread_t thread;
    /* `set_lock`: serialises configuration changes (start, stop and join of the thread). Taken
     * first, with no device lock held; its holder sleeps in pthread_join. The thread never
     * takes it. */
    pthread_mutex_t set_lock;
};

const struct uz_dev_policy_cfg uz_dev_policy_defaults = {
    .interval = 0,
    .recompress_age = 2 * 3600, /* mmd: recompress what has been idle for 2 h */
    .recompress_pick = UZ_DEV_PICK_IDLE,
    .recompress_prio = 1,
    .writeback_age = 20 * 3600, /* mmd: write back what has been idle for 20 h */
    .writeback_pick = UZ_DEV_PICK_IDLE,
    .writeback_per_day = 1ull << 30, /* mmd: at most 1 GiB a day */
    .writeback_per_round = 1ull << 30,
};

int uz_dev_policy_init(struct uz_dev *dev)
{
    struct uz_dev_policy *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!rc && (rc = pthread_mutex_init(&p->lock, NULL)))
        pthread_cond_destroy(&p->cond);
    if (!rc && (rc = pthread_mutex_init(&p->set_lock, NULL))) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
    }
    if (rc) {
        free(p);
        return -rc;
    }
    p->cfg = uz_dev_policy_defaults;
    dev->policy = p;
    return 0;
}

/* Stops and joins the thread; the caller holds no device lock (a round takes init_lock). */
static void policy_stop(struct uz_dev_policy *p)
{
    pthread_mutex_lock(&p->lock);
    bool running = p->running;
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (running)
        pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->lock);
    p->running = false;
    p->stop = false;
    pthread_mutex_unlock(&p->lock);
}

void uz_dev_policy_destroy(struct uz_dev *dev)
{
    struct uz_dev_policy *p = dev->policy;
    if (!p)
        return;
    pthread_mutex_lock(&p->set_lock);
    policy_stop(p);
    pthread_mutex_unlock(&p->set_lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->set_lock);
    free(p);
    dev->policy = NULL;
}

/* ---- a round ---- */

/* Pages the day's budget still allows (p->lock held). */
static uint64_t day_left(struct uz_dev_policy *p, uint32_t now)
{
    uint64_t per_day = p->cfg.writeback_per_day / UZ_PAGE_SIZE;
    if (p->st.day_pages && (uint32_t)(now - p->day_start) >= DAY_SECONDS)
        p->st.day_pages = 0; /* a new day */
    return per_day > p->st.day_pages ? per_day - p->st.day_pages : 0;
}

static void policy_round(struct uz_dev *dev, struct uz_dev_policy *p)
{
    pthread_mutex_lock(&p->lock);
    struct uz_dev_policy_cfg cfg = p->cfg;
    pthread_mutex_unlock(&p->lock);

    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    if (!dev->table) {
        uz_brlock_read_unlock(&dev->init_lock, shard);
        return; /* uninitialised: nothing to tier */
    }
    int wb_rc = 0, rc_rc = 0;
    uint64_t written = 0, recompressed = 0;
    if (cfg.writeback_pick != UZ_DEV_PICK_NONE) {
        uint32_t now = uz_dev_now(dev);
        pthread_mutex_lock(&p->lock);
        uint64_t budget = day_left(p, now);
        pthread_mutex_unlock(&p->lock);
        uint64_t round = cfg.writeback_per_round / UZ_PAGE_SIZE;
        if (round < budget)
            budget = round;
        if (budget) {
            if (cfg.writeback_pick & UZ_DEV_PICK_IDLE)
                wb_rc = uz_dev_mark_idle_locked(dev, false, cfg.writeback_age);
            if (!wb_rc)
                wb_rc = uz_dev_writeback_locked(dev, cfg.writeback_pick, 0, 0, budget, &written);
        }
        pthread_mutex_lock(&p->lock);
        if (written && !p->st.day_pages)
            p->day_start = now;
        p->st.day_pages += written;
        pthread_mutex_unlock(&p->lock);
    }
    if (cfg.recompress_pick != UZ_DEV_PICK_NONE) {
        if (cfg.recompress_pick & UZ_DEV_PICK_IDLE)
            rc_rc = uz_dev_mark_idle_locked(dev, false, cfg.recompress_age);
        if (!rc_rc)
            rc_rc = uz_dev_recompress_locked(dev, cfg.recompress_pick, 0, 0, cfg.recompress_prio,
                                             &recompressed);
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);

    pthread_mutex_lock(&p->lock);
    p->st.rounds++;
    p->st.written_back += written;
    p->st.recompressed += recompressed;
    p->st.writeback_error = wb_rc;
    p->st.recompress_error = rc_rc;
    pthread_mutex_unlock(&p->lock);
}

static void *policy_main(void *arg)
{
    struct uz_dev *dev = arg;
    struct uz_dev_policy *p = dev->policy;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)p->cfg.interval;
        uint64_t gen = p->gen;
        int e = 0;
        while (!p->stop && p->gen == gen && e != ETIMEDOUT)
            e = pthread_cond_timedwait(&p->cond, &p->lock, &until);
        if (p->stop || p->gen != gen)
            continue; /* stopped, or a new interval: wait again from now */
        pthread_mutex_unlock(&p->lock);
        policy_round(dev, p);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Starts the thread with every signal blocked (in a region's process, an application handler
 * must never run on a device thread). p->lock held. */
static int policy_start(struct uz_dev *dev, struct uz_dev_policy *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&p->thread, NULL, policy_main, dev);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e)
        return -e;
    pthread_setname_np(p->thread, "uzram-policy");
    p->running = true;
    return 0;
}

/* ---- configuration ---- */

void uz_dev_policy_get(struct uz_dev *dev, struct uz_dev_policy_cfg *cfg,
                       struct uz_dev_policy_stat *st)
{
    struct uz_dev_policy *p = dev->policy;
    pthread_mutex_lock(&p->lock);
    if (cfg)
        *cfg = p->cfg;
    if (st) {
        *st = p->st;
        st->day_left_pages = day_left(p, uz_dev_now(dev));
    }
    pthread_mutex_unlock(&p->lock);
}

int uz_dev_policy_set(struct uz_dev *dev, const struct uz_dev_policy_cfg *cfg)
{
    struct uz_dev_policy *p = dev->policy;
    pthread_mutex_lock(&p->set_lock);
    int rc = 0;
    if (!cfg->interval)
        policy_stop(p); /* joined before the new settings apply: no round runs after this */
    pthread_mutex_lock(&p->lock);
    if (!cfg->interval || p->running || !(rc = policy_start(dev, p))) {
        p->cfg = *cfg;
        p->gen++;
        pthread_cond_broadcast(&p->cond);
    } /* else: the thread could not start, nothing changed */
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->set_lock);
    return rc;
}

void uz_dev_policy_reset(struct uz_dev *dev)
{
    uz_dev_policy_set(dev, &uz_dev_policy_defaults);
    pthread_mutex_lock(&dev->policy->lock);
    dev->policy->st = (struct uz_dev_policy_stat){0};
    pthread_mutex_unlock(&dev->policy->lock);
}

/* ---- fork (dev_fork.h): set_lock is taken first (before the device's exclusive lock: a
 * store holding it may be joining a thread whose round waits for init_lock), `lock` last
 * (a leaf; with init_lock held for writing no round runs). ---- */

void uz_dev_policy_fork_lock(struct uz_dev *dev, bool take)
{
    if (take)
        pthread_mutex_lock(&dev->policy->set_lock);
    else
        pthread_mutex_unlock(&dev->policy->set_lock);
}

void uz_dev_policy_fork_prepare(struct uz_dev *dev)
{
    pthread_mutex_lock(&dev->policy->lock);
}

void uz_dev_policy_fork_parent(struct uz_dev *dev)
{
    pthread_mutex_unlock(&dev->policy->lock);
}

int uz_dev_policy_fork_child(struct uz_dev *dev)
{
    struct uz_dev_policy *p = dev->policy;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->set_lock, NULL);
    bool was = p->running;
    p->running = false;
    p->stop = false;
    if (!was)
        return 0;
    pthread_mutex_lock(&p->lock);
    int rc = policy_start(dev, p);
    pthread_mutex_unlock(&p->lock);
    return rc;
}
