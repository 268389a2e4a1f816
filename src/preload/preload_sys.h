/* SPDX-License-Identifier: MIT */
/*
 * preload_sys.h - memory sizes of the machine, for the preload's and uzram-run's defaults.
 */
#ifndef UZ_PRELOAD_SYS_H
#define UZ_PRELOAD_SYS_H

#include <stdint.h>

/* The memory this process may use: its memory cgroup's limit if any, else MemTotal (bytes). */
uint64_t uzp_memory_available(void);
/* The default resident limit: half of uzp_memory_available(), page-aligned, at least 64 MiB. */
uint64_t uzp_default_limit(void);
/* The default region size: RAM plus swap, rounded up to whole GiB, at least 1 GiB. */
uint64_t uzp_default_size(void);

#endif
