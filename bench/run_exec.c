/* SPDX-License-Identifier: MIT */
/*
 * run_exec.c - `run-exec`: runs a command N times and prints how long it took and how much
 * memory it used, for bench/run-bench.sh (uzram-run against kernel zram swap).
 *
 *   run-exec [-n REPS] [-g CGROUP_DIR] [-e NAME=VALUE]... [-q] -- PROGRAM [ARGS...]
 *
 * Each repetition: clock_gettime(CLOCK_MONOTONIC), fork, the child moves itself into the cgroup
 * (writes its pid to CGROUP_DIR/cgroup.procs), sets the -e variables and execs PROGRAM (stdout to
 * /dev/null with -q), the parent waits with wait4, clock_gettime. The same fork+exec+wait is paid
 * on both sides of a comparison, so differences between two commands are the commands' own.
 *
 * Prints one line: reps= median_s= min_s= max_s= cpu_median_s= (user + system time of the
 * program, every thread and waited-for child, from wait4) maxrss_bytes= (the largest ru_maxrss
 * wait4 reported: the peak RSS of the program, or of the largest of its waited-for children)
 * status= (the exit status of the last repetition, 128+N for a signal). Exit status: 0 when every
 * repetition exited 0, 1 otherwise, 2 for a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v). */
static double median(double *v, long n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: run-exec [-n REPS] [-g CGROUP_DIR] [-e NAME=VALUE]... [-q] -- PROGRAM "
               "[ARGS...]\n");
}

int main(int argc, char **argv)
{
    long reps = 1;
    const char *cgroup = NULL;
    int quiet = 0, c;
    char *env[16];
    int nenv = 0;
    while ((c = getopt(argc, argv, "+n:g:e:qh")) != -1) {
        switch (c) {
        case 'n':
            reps = strtol(optarg, NULL, 10);
            break;
        case 'g':
            cgroup = optarg;
            break;
        case 'e':
            if (nenv == 16 || !strchr(optarg, '=')) {
                usage(stderr);
                return 2;
            }
            env[nenv++] = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc || reps < 1 || reps > 1000000) {
        usage(stderr);
        return 2;
    }
    char procs[4096];
    if (cgroup)
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
    double *t = malloc((size_t)reps * sizeof(*t)), *cpu = malloc((size_t)reps * sizeof(*cpu));
    if (!t || !cpu) {
        perror("run-exec");
        return 1;
    }
    long maxrss = 0;
    int status = 0, all_ok = 1;
    for (long i = 0; i < reps; i++) {
        fflush(NULL);
        double t0 = now();
        pid_t pid = fork();
        if (pid < 0) {
            perror("run-exec: fork");
            return 1;
        }
        if (!pid) {
            if (cgroup) {
                int fd = open(procs, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(fd, "0", 1) != 1) {
                    fprintf(stderr, "run-exec: %s: %s\n", procs, strerror(errno));
                    _exit(126);
                }
                close(fd);
            }
            for (int k = 0; k < nenv; k++)
                putenv(env[k]);
            if (quiet) {
                int fd = open("/dev/null", O_WRONLY);
                if (fd >= 0)
                    dup2(fd, 1);
            }
            execvp(argv[optind], &argv[optind]);
            fprintf(stderr, "run-exec: %s: %s\n", argv[optind], strerror(errno));
            _exit(127);
        }
        int st;
        struct rusage ru;
        while (wait4(pid, &st, 0, &ru) < 0)
            if (errno != EINTR) {
                perror("run-exec: wait4");
                return 1;
            }
        t[i] = now() - t0;
        cpu[i] = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
        if (ru.ru_maxrss > maxrss)
            maxrss = ru.ru_maxrss;
        status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (status)
            all_ok = 0;
    }
    double med = median(t, reps), cpu_med = median(cpu, reps); /* t sorted from here on */
    printf("reps=%ld median_s=%.6f min_s=%.6f max_s=%.6f cpu_median_s=%.6f maxrss_bytes=%lld "
           "status=%d\n",
           reps, med, t[0], t[reps - 1], cpu_med, (long long)maxrss * 1024, status);
    free(t);
    free(cpu);
    return all_ok ? 0 : 1;
}
