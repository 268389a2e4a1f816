/* SPDX-License-Identifier: MIT */
/*
 * preload_stats.c - the live statistics of the program, on the abstract Unix socket
 * "@uzram-run/<pid>" (what `uzramctl run` reads).
 *
 * One thread of the preload serves it (a library thread: uzp_in set for life, every signal
 * blocked, no allocation; its stack and TLS are glibc's). A client connects and gets one line,
 * "pid=P resident_bytes=... mode=M\n" (uzp_stats_format()), then end of file; a client whose
 * SO_PEERCRED uid is neither this process's (real or effective) nor root is closed without a
 * word.
 *
 * Its descriptors are not the program's: the thread first leaves the process's descriptor
 * table (unshare(CLONE_FILES)), closes the copies that gave it, and only then opens its socket.
 * So no close(), close_range(), closefrom(), dup2() of the program can reach the socket or a
 * connection, no descriptor number of the program is ever taken, a fork() (which copies the
 * forking thread's table) never inherits them and exec() drops them with the thread. A forked
 * child starts its own thread and socket under its own pid (preload.c's fork handler); an exec'd
 * program, its own (the constructor). Where unshare() is denied (a seccomp filter), or the name
 * is taken, there is no socket: the program runs as before, and nothing is printed.
 */
#include "preload.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>

#define SYS1(n, a)          uzp_raw(n, (long)(a), 0, 0, 0, 0, 0)
#define SYS3(n, a, b, c)    uzp_raw(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define SYS4(n, a, b, c, d) uzp_raw(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* The server's buffers: one server thread per process. */
static char line[UZP_STATS_LINE];

/* Fills in the socket's address for this process; @return : its length. */
static socklen_t stats_addr(struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "%s%ld", UZP_STATS_PREFIX,
                     SYS1(SYS_getpid, 0));
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* The peer may read: same uid (real or effective) as this process, or root. */
static bool peer_allowed(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (uzp_raw(SYS_getsockopt, fd, SOL_SOCKET, SO_PEERCRED, (long)&cr, (long)&len, 0) < 0)
        return false;
    return cr.uid == 0 || cr.uid == (uid_t)SYS1(SYS_getuid, 0) ||
           cr.uid == (uid_t)SYS1(SYS_geteuid, 0);
}

static void serve(int fd)
{
    if (!peer_allowed(fd))
        return;
    int n = uzp_stats_format(line, sizeof(line), true);
    if (n <= 0)
        return;
    /* A few hundred bytes into an empty socket buffer: never blocks; a client that has gone
     * costs an EPIPE, not a SIGPIPE. */
    uzp_raw(SYS_sendto, fd, (long)line, n, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
}

static void *stats_main(void *arg)
{
    (void)arg;
    SYS3(SYS_prctl, PR_SET_NAME, "uzram-stats", 0);
    /* A descriptor table of its own, emptied: the copies of the program's descriptors it got
     * are closed (their files stay open in the program's table; POSIX locks belong to that
     * table and are not dropped). */
    if (SYS1(SYS_unshare, CLONE_FILES) < 0 || SYS3(SYS_close_range, 0, ~0U, 0) < 0)
        return NULL;
    int lfd = (int)SYS3(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return NULL;
    struct sockaddr_un sa;
    socklen_t len = stats_addr(&sa);
    if (SYS3(SYS_bind, lfd, &sa, len) < 0 || SYS3(SYS_listen, lfd, 16, 0) < 0) {
        SYS1(SYS_close, lfd);
        return NULL;
    }
    for (;;) {
        long c = SYS4(SYS_accept4, lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
            serve((int)c);
            SYS1(SYS_close, c);
        } else if (c == -EMFILE || c == -ENFILE || c == -ENOBUFS || c == -ENOMEM) {
            struct timespec ts = {0, 100 * 1000 * 1000}; /* no spinning while out of them */
            SYS3(SYS_nanosleep, &ts, NULL, 0);
        } else if (c != -EINTR && c != -ECONNABORTED && c != -EAGAIN) {
            break;
        }
    }
    SYS1(SYS_close, lfd);
    return NULL;
}

void uzp_stats_start(void)
{
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    if (pthread_attr_init(&attr))
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    sigfillset(&all);
    uzp_in++; /* a library thread (preload.c's pthread_create): glibc's heap, for life */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    (void)pthread_create(&t, &attr, stats_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    uzp_in--;
    pthread_attr_destroy(&attr);
}
