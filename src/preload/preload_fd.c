/* SPDX-License-Identifier: MIT */
/*
 * preload_fd.c - the region's userfaultfds are not the program's to close.
 *
 * Daemons close every descriptor above 2 (close_range, closefrom, close loops, dup2 over
 * them); closing the region's userfaultfd would leave every later fault unserved (the process
 * dies with SIGSEGV/SIGBUS). uz_region_fds() names them (its userfaultfds and pidfd); they are
 * taken right after the region is created and after each fork (the child's region has its
 * own). A userfaultfd of the program's own is not touched. close() of one fails with EBADF,
 * dup2/dup3 onto or from one with EBADF, and close_range()/closefrom() close the ranges around
 * them. The library's own calls (uzp_in) pass.
 */
#include "preload.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_FDS 8

static _Atomic int fds[MAX_FDS]; /* the protected descriptors; -1 empty */
static _Atomic int n_fds;

void uzp_fd_scan(void)
{
    int have[MAX_FDS];
    int n = uzp_region ? uz_region_fds(uzp_region, have, MAX_FDS) : 0;
    if (n < 0)
        n = 0;
    if (n > MAX_FDS)
        n = MAX_FDS;
    for (int i = 0; i < MAX_FDS; i++)
        fds[i] = i < n ? have[i] : -1;
    n_fds = n;
}

static bool guarded(int fd)
{
    if (uzp_in || fd < 0)
        return false;
    for (int i = 0; i < n_fds; i++)
        if (fds[i] == fd)
            return true;
    return false;
}

UZP_EXPORT int close(int fd)
{
    if (guarded(fd)) {
        errno = EBADF;
        return -1;
    }
    return (int)uzp_sys(SYS_close, (long)(fd), 0, 0, 0, 0, 0);
}

/* Closes [first, last] except the guarded descriptors, lowest range first. */
static int close_around(unsigned first, unsigned last, int flags)
{
    if (uzp_in || n_fds == 0)
        return (int)uzp_sys(SYS_close_range, (long)(first), (long)(last), (long)(flags), 0, 0, 0);
    int sorted[MAX_FDS], n = 0;
    for (int i = 0; i < n_fds; i++) {
        int fd = fds[i], j = n++;
        while (j > 0 && sorted[j - 1] > fd) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = fd;
    }
    unsigned lo = first;
    for (int i = 0; i < n && lo <= last; i++) {
        unsigned fd = (unsigned)sorted[i];
        if (fd < lo || fd > last)
            continue;
        if (fd > lo &&
            uzp_sys(SYS_close_range, (long)(lo), (long)(fd - 1), (long)(flags), 0, 0, 0) != 0)
            return -1;
        if (fd == UINT_MAX)
            return 0;
        lo = fd + 1;
    }
    if (lo <= last && lo >= first)
        return (int)uzp_sys(SYS_close_range, (long)(lo), (long)(last), (long)(flags), 0, 0, 0);
    return 0;
}

UZP_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
    if (first > last) {
        errno = EINVAL;
        return -1;
    }
    return close_around(first, last, flags);
}

UZP_EXPORT void closefrom(int lowfd)
{
    if (lowfd < 0)
        lowfd = 0;
    if (close_around((unsigned)lowfd, UINT_MAX, 0) != 0) {
        /* No close_range (old kernels): close what /proc lists. */
        for (long fd = lowfd, max = sysconf(_SC_OPEN_MAX); fd < max; fd++)
            close((int)fd);
    }
}

UZP_EXPORT int dup2(int oldfd, int newfd)
{
    if (oldfd != newfd && (guarded(newfd) || guarded(oldfd))) {
        errno = EBADF;
        return -1;
    }
    if (oldfd == newfd) /* dup2's rule: newfd if oldfd is valid */
        return (int)uzp_sys(SYS_fcntl, (long)(oldfd), (long)(F_GETFD), 0, 0, 0, 0) < 0 ? -1 : newfd;
    return (int)uzp_sys(SYS_dup3, (long)(oldfd), (long)(newfd), (long)(0), 0, 0, 0);
}

UZP_EXPORT int dup3(int oldfd, int newfd, int flags)
{
    if (guarded(newfd) || guarded(oldfd)) {
        errno = EBADF;
        return -1;
    }
    return (int)uzp_sys(SYS_dup3, (long)(oldfd), (long)(newfd), (long)(flags), 0, 0, 0);
}
