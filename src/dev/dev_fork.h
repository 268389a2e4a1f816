/* SPDX-License-Identifier: MIT */
/*
 * dev_fork.h - the device's part in a fork() of the process (called by the region's fork
 * handlers, region_fork.c; dev_queue.c implements them). Before the fork the device is made
 * quiescent: its async queues drained, no I/O running, every lock free except the exclusive
 * ones the forking thread holds. The parent then just resumes. The child has only the forking
 * thread: it rebuilds every lock and condition variable another thread could have held or been
 * waiting on, and starts new zramd workers. The device's memory (slot table, pool) is ordinary
 * private memory, inherited copy-on-write: the child gets its own view of the stored pages.
 */
#ifndef UZ_DEV_FORK_H
#define UZ_DEV_FORK_H

#include <uzram/dev.h>

#include "util.h"

/* uz_dev_fork_prepare() : drains the async queues and takes the device for itself (gate and
 *  init_lock for writing, every worker's queue lock). The caller holds no lock the device's
 *  completions need. Not from a `done` callback of this device (-EDEADLK, nothing taken). */
UZ_HIDDEN int uz_dev_fork_prepare(struct uz_dev *dev);
/* uz_dev_fork_parent() : releases what uz_dev_fork_prepare() took. */
UZ_HIDDEN void uz_dev_fork_parent(struct uz_dev *dev);
/* uz_dev_fork_child() :
 *  In the child, on the state uz_dev_fork_prepare() left: initialises the device's locks and
 *  the workers' locks and conditions again and starts the workers.
 *  @return : 0, or -errno of pthread_create (then only the workers started before serve the
 *            queues, which stay consistent: nworkers is what runs). */
UZ_HIDDEN int uz_dev_fork_child(struct uz_dev *dev);

#endif
