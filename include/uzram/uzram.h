/* SPDX-License-Identifier: MIT */
/*
 * uzram.h - umbrella header of libuzram, the userspace compressed-memory swap stack.
 *
 * libuzram rebuilds Linux zram in userspace: a zsmalloc-style pool for compressed objects
 * (pool.h), codecs with per-thread streams (comp.h) and a compressed page device with the
 * kernel's attributes and an asynchronous write queue (dev.h).
 */
#ifndef UZRAM_UZRAM_H
#define UZRAM_UZRAM_H

#include <uzram/common.h>
#include <uzram/pool.h>
#include <uzram/comp.h>
#include <uzram/dev.h>
#include <uzram/region.h>

#endif
