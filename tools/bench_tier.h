/* SPDX-License-Identifier: MIT */
/*
 * bench_tier.h - `uzram-bench tier`: recompression, writeback (against dd) and packed
 * compressed writeback on a memory image, printing key=value lines.
 */
#ifndef UZ_TOOLS_BENCH_TIER_H
#define UZ_TOOLS_BENCH_TIER_H

/* uz_bench_tier() : argv[0] is "tier". @return : the process exit status. */
int uz_bench_tier(int argc, char **argv);

#endif
