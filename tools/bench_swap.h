/* SPDX-License-Identifier: MIT */
/*
 * bench_swap.h - `uzram-bench swap`: the "swapwork" workload on a uzram region, on plain
 * anonymous memory (--kernel, for a memory cgroup with kernel zram swap), or both in one run
 * (--baseline: sets up zram0 and the cgroup itself, as root, and restores them afterwards).
 */
#ifndef UZ_TOOLS_BENCH_SWAP_H
#define UZ_TOOLS_BENCH_SWAP_H

/* uz_bench_swap() : argv[0] is "swap". @return : the process exit status. */
int uz_bench_swap(int argc, char **argv);

#endif
