/* SPDX-License-Identifier: MIT */
/*
 * uzramctl_run.h - `uzramctl run` (uzramctl_run.c) and the helpers of uzramctl.c it shares.
 */
#ifndef UZ_UZRAMCTL_RUN_H
#define UZ_UZRAMCTL_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* uzramctl.c's output helpers. */
void uzctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "1G", "27.3M", "0B" (util-linux's size_to_human_string with one-letter suffixes). */
void uzctl_human_size(uint64_t bytes, char *out, size_t len);
/* s as a JSON string on stdout, quoted and escaped. */
void uzctl_json_string(const char *s);

/* The options given before the word "run" (uzramctl -J run ...); run's own come on top. */
struct uzctl_run_opts {
    bool json, bytes, noheadings;
    double timeout; /* seconds per process */
};

/* uzctl_run() :
 *  `uzramctl run [-J] [-b] [-n] [-t SECONDS] [PID]`: argv[0] is "run". Lists the live
 *  uzram-run processes (their @uzram-run/<pid> sockets in /proc/net/unix), or PID alone.
 *  @return : the exit status: 0, 1 (PID is not a uzram-run process, or not ours to read),
 *            2 usage, 4 a process did not answer in time. */
int uzctl_run(int argc, char **argv, const struct uzctl_run_opts *o);
/* Prints run's part of --help. */
void uzctl_run_usage(FILE *f);

#endif
