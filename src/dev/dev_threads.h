/* SPDX-License-Identifier: MIT */
/*
 * dev_threads.h - where the device's zramd workers run (called by the region's fault threads,
 * region_fault.c; dev_queue.c implements it). The region keeps them off the CPU of the
 * application thread it follows, so that the fault round trips there are not slowed by
 * compressions.
 */
#ifndef UZ_DEV_THREADS_H
#define UZ_DEV_THREADS_H

#include <sched.h>

#include <uzram/dev.h>

#include "util.h"

/* uz_dev_workers_affinity() : lets every zramd worker of `dev` run on the CPUs of `set` only.
 *  Safe from any thread while the device lives (not across its fork handlers).
 *  @return : 0, or the first -errno of pthread_setaffinity_np (the others are still set). */
UZ_HIDDEN int uz_dev_workers_affinity(struct uz_dev *dev, const cpu_set_t *set);

#endif
