// SPDX-License-Identifier: MIT
/*
 * plugin_ctl.c - the ctl socket of nbdkit-uzram-plugin: one thread that accepts connections on
 * a Unix socket and answers get/set/list/version requests (support/ctl/ctl_proto.h) with
 * uz_dev_attr_read() and uz_dev_attr_write().
 *
 * Clients are served one at a time: requests are tiny, and one slow client is cut off after
 * UZ_CTL_IDLE_MS. The thread polls the listening socket, the client and a pipe; a byte on the
 * pipe stops it. All signals are blocked in the thread (nbdkit handles them in its own).
 */
#include "plugin_ctl.h"
#include "ctl_proto.h"

#include <uzram/uzram.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct uz_plugin_ctl {
    int listen_fd;
    int stop_pipe[2]; /* -1 until started; a byte on [1] stops the thread */
    bool started;
    pthread_t thread;
    struct uz_dev *dev;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* The kernel zram attributes the device has, with their modes (dev.h). */
static const struct {
    const char *name;
    const char *mode;
} attr_list[] = {
    {"algorithm_params", "rw"},
    {"comp_algorithm", "rw"},
    {"compact", "w"},
    {"debug_stat", "r"},
    {"disksize", "rw"},
    {"initstate", "r"},
    {"io_stat", "r"},
    {"max_comp_streams", "r"},
    {"mem_limit", "rw"},
    {"mem_used_max", "rw"},
    {"mm_stat", "r"},
    {"pool_stat", "r"},
    {"reset", "w"},
};

int uz_plugin_ctl_bind(const char *path, struct uz_plugin_ctl **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        /* Someone listening there? Then it is not ours to take. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return -errno;
        int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(probe);
        if (live)
            return -EADDRINUSE;
        unlink(path);
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    mode_t old = umask(0077);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc == 0)
        rc = listen(fd, 16);
    if (rc < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    struct uz_plugin_ctl *ctl = calloc(1, sizeof(*ctl));
    if (!ctl) {
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    ctl->listen_fd = fd;
    ctl->stop_pipe[0] = ctl->stop_pipe[1] = -1;
    strcpy(ctl->path, path);
    *out = ctl;
    return 0;
}

static bool send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool reply_err(int fd, int err)
{
    char line[256];
    const char *desc = strerrordesc_np(err); /* strerror() is not thread-safe */
    int n = snprintf(line, sizeof(line), "err %d %s\n", err, desc ? desc : "Unknown error");
    return send_all(fd, line, (size_t)n);
}

static bool reply_ok(int fd, const char *payload, size_t len)
{
    char line[32];
    int n = snprintf(line, sizeof(line), "ok %zu\n", len);
    return send_all(fd, line, (size_t)n) && send_all(fd, payload, len);
}

static bool do_get(struct uz_plugin_ctl *ctl, int fd, const char *name)
{
    size_t cap = 4096;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf)
            return reply_err(fd, ENOMEM);
        int n = uz_dev_attr_read(ctl->dev, name, buf, cap);
        if (n == -ERANGE && cap < UZ_CTL_REPLY_MAX) {
            free(buf);
            cap *= 2;
            continue;
        }
        bool ok = n < 0 ? reply_err(fd, -n) : reply_ok(fd, buf, (size_t)n);
        free(buf);
        return ok;
    }
}

static bool do_list(int fd)
{
    char buf[1024];
    size_t at = 0;
    for (size_t i = 0; i < sizeof(attr_list) / sizeof(attr_list[0]); i++)
        at += (size_t)snprintf(buf + at, sizeof(buf) - at, "%s %s\n", attr_list[i].name,
                               attr_list[i].mode);
    return reply_ok(fd, buf, at);
}

/* Answers one request line (NUL-terminated, newline stripped). false: drop the client. */
static bool handle_line(struct uz_plugin_ctl *ctl, int fd, char *line)
{
    char *arg = strchr(line, ' ');
    if (arg)
        *arg++ = '\0';
    if (!strcmp(line, "get") && arg && *arg)
        return do_get(ctl, fd, arg);
    if (!strcmp(line, "set") && arg && *arg) {
        char *value = strchr(arg, ' ');
        if (!value)
            return reply_err(fd, EINVAL);
        *value++ = '\0';
        int rc = uz_dev_attr_write(ctl->dev, arg, value);
        return rc < 0 ? reply_err(fd, -rc) : reply_ok(fd, "", 0);
    }
    if (!strcmp(line, "list") && !arg)
        return do_list(fd);
    if (!strcmp(line, "version") && !arg) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "uzram-ctl %d %s\n", UZ_CTL_PROTO, UZ_VERSION_STRING);
        return reply_ok(fd, buf, (size_t)n);
    }
    return reply_err(fd, EBADRQC);
}

/* Serves one client until EOF, error, idle timeout or stop. */
static void serve_client(struct uz_plugin_ctl *ctl, int fd)
{
    char buf[UZ_CTL_LINE_MAX + 1];
    size_t have = 0;
    for (;;) {
        char *nl;
        while ((nl = memchr(buf, '\n', have))) {
            *nl = '\0';
            if (nl > buf && nl[-1] == '\r')
                nl[-1] = '\0';
            if (!handle_line(ctl, fd, buf))
                return;
            size_t used = (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, have - used);
            have -= used;
        }
        if (have == UZ_CTL_LINE_MAX) {
            reply_err(fd, E2BIG);
            return;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                              {.fd = ctl->stop_pipe[0], .events = POLLIN}};
        int r = poll(p, 2, UZ_CTL_IDLE_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || p[1].revents)
            return;
        ssize_t n = recv(fd, buf + have, UZ_CTL_LINE_MAX - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        have += (size_t)n;
    }
}

static void *ctl_main(void *arg)
{
    struct uz_plugin_ctl *ctl = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = ctl->listen_fd, .events = POLLIN},
                              {.fd = ctl->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* EAGAIN, ECONNABORTED, EMFILE: try again on the next wakeup */
        serve_client(ctl, fd);
        close(fd);
    }
    return NULL;
}

int uz_plugin_ctl_start(struct uz_plugin_ctl *ctl, struct uz_dev *dev)
{
    ctl->dev = dev;
    if (pipe2(ctl->stop_pipe, O_CLOEXEC) < 0)
        return -errno;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&ctl->thread, NULL, ctl_main, ctl);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    ctl->started = true;
    return 0;
}

void uz_plugin_ctl_stop(struct uz_plugin_ctl *ctl)
{
    if (!ctl)
        return;
    if (ctl->started) {
        char b = 0;
        while (write(ctl->stop_pipe[1], &b, 1) < 0 && errno == EINTR)
            ;
        pthread_join(ctl->thread, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (ctl->stop_pipe[i] >= 0)
            close(ctl->stop_pipe[i]);
    close(ctl->listen_fd);
    unlink(ctl->path);
    free(ctl);
}
