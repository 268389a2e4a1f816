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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* One connection. fd -1: the slot is free. */
struct ctl_client {
    int fd;
    bool closing;     /* close once `out` is sent (after a protocol error) */
    int64_t deadline; /* CLOCK_MONOTONIC ms: the current request or reply must be done by then */
    size_t in_len;    /* bytes of `in` received, no newline among them */
    char *out;        /* malloc'd reply being sent, or NULL: reading the next request */
    size_t out_len, out_at;
    char in[UZ_CTL_LINE_MAX];
};

struct uz_plugin_ctl {
    int listen_fd;
    int stop_pipe[2]; /* -1 until started; a byte on [1] stops the thread */
    bool started;
    pthread_t thread;
    struct uz_dev *dev;
    uz_plugin_ctl_write_fn write;
    void *write_arg;
    struct ctl_client clients[UZ_CTL_CLIENTS_MAX];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* The kernel zram attributes the device has, with their modes (dev.h). */
static const struct {
    const char *name;
    const char *mode;
} attr_list[] = {
    {"algorithm_params", "rw"},
    {"block_state", "r"},
    {"comp_algorithm", "rw"},
    {"compact", "w"},
    {"debug_stat", "r"},
    {"disksize", "rw"},
    {"idle", "w"},
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Replies are built whole in memory, then sent as the socket takes them. */
struct reply {
    char *buf;
    size_t len;
};

static void reply_err(struct reply *r, int err)
{
    char line[256];
    const char *desc = strerrordesc_np(err); /* strerror() is not thread-safe */
    int n = snprintf(line, sizeof(line), "err %d %s\n", err, desc ? desc : "Unknown error");
    r->buf = malloc((size_t)n);
    r->len = r->buf ? (size_t)n : 0;
    if (r->buf)
        memcpy(r->buf, line, (size_t)n);
}

/* "ok LEN\n" then the payload. */
static void reply_ok(struct reply *r, const char *payload, size_t len)
{
    char line[32];
    int n = snprintf(line, sizeof(line), "ok %zu\n", len);
    r->buf = malloc((size_t)n + len);
    if (!r->buf) {
        reply_err(r, ENOMEM);
        return;
    }
    memcpy(r->buf, line, (size_t)n);
    memcpy(r->buf + n, payload, len);
    r->len = (size_t)n + len;
}

static void do_get(struct uz_plugin_ctl *ctl, struct reply *r, const char *name)
{
    size_t cap = 4096;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) {
            reply_err(r, ENOMEM);
            return;
        }
        int n = uz_dev_attr_read(ctl->dev, name, buf, cap);
        if (n == -ERANGE && cap < UZ_CTL_REPLY_MAX) {
            free(buf);
            cap *= 2;
            continue;
        }
        if (n < 0)
            reply_err(r, -n);
        else
            reply_ok(r, buf, (size_t)n);
        free(buf);
        return;
    }
}

static void do_list(struct reply *r)
{
    char buf[1024];
    size_t at = 0;
    for (size_t i = 0; i < sizeof(attr_list) / sizeof(attr_list[0]); i++)
        at += (size_t)snprintf(buf + at, sizeof(buf) - at, "%s %s\n", attr_list[i].name,
                               attr_list[i].mode);
    reply_ok(r, buf, at);
}

/* Answers one request line (NUL-terminated, newline stripped) into *r. */
static void handle_line(struct uz_plugin_ctl *ctl, struct reply *r, char *line)
{
    char *arg = strchr(line, ' ');
    if (arg)
        *arg++ = '\0';
    if (!strcmp(line, "get") && arg && *arg) {
        do_get(ctl, r, arg);
    } else if (!strcmp(line, "set") && arg && *arg) {
        char *value = strchr(arg, ' ');
        if (!value) {
            reply_err(r, EINVAL);
            return;
        }
        *value++ = '\0';
        int rc = ctl->write ? ctl->write(ctl->write_arg, ctl->dev, arg, value)
                            : uz_dev_attr_write(ctl->dev, arg, value);
        if (rc < 0)
            reply_err(r, -rc);
        else
            reply_ok(r, "", 0);
    } else if (!strcmp(line, "list") && !arg) {
        do_list(r);
    } else if (!strcmp(line, "version") && !arg) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "uzram-ctl %d %s\n", UZ_CTL_PROTO, UZ_VERSION_STRING);
        reply_ok(r, buf, (size_t)n);
    } else {
        reply_err(r, EBADRQC);
    }
}

static void client_close(struct ctl_client *c)
{
    close(c->fd);
    free(c->out);
    c->fd = -1;
    c->out = NULL;
}

static void client_queue(struct ctl_client *c, struct reply *r, int64_t now)
{
    c->out = r->buf;
    c->out_len = r->len;
    c->out_at = 0;
    c->deadline = now + UZ_CTL_DEADLINE_MS;
    if (!c->out) /* not even the error fitted in memory */
        c->closing = true;
}

/* Sends what the socket takes of the pending reply. false: the client is gone. */
static bool client_send(struct ctl_client *c, int64_t now)
{
    while (c->out && c->out_at < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_at, c->out_len - c->out_at, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0)
            return false;
        c->out_at += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    if (c->closing)
        return false;
    c->deadline = now + UZ_CTL_DEADLINE_MS; /* for the next request */
    return true;
}

/* Answers the next complete line in `in`, if any and if no reply is pending. */
static void client_answer(struct uz_plugin_ctl *ctl, struct ctl_client *c, int64_t now)
{
    if (c->out || c->closing)
        return;
    char *nl = memchr(c->in, '\n', c->in_len);
    struct reply r;
    if (!nl) {
        if (c->in_len < sizeof(c->in))
            return;
        reply_err(&r, E2BIG); /* a line too long: answer, then hang up */
        client_queue(c, &r, now);
        c->closing = true;
        return;
    }
    *nl = '\0';
    if (nl > c->in && nl[-1] == '\r')
        nl[-1] = '\0';
    handle_line(ctl, &r, c->in);
    size_t used = (size_t)(nl + 1 - c->in);
    memmove(c->in, nl + 1, c->in_len - used);
    c->in_len -= used;
    client_queue(c, &r, now_ms()); /* the attribute call may have taken a while */
}

/* Reads what arrived. false: EOF or error (the client is gone). */
static bool client_recv(struct ctl_client *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0)
            return false;
        c->in_len += (size_t)n;
        return true;
    }
}

/* Advances one client after poll(); closes it when it is done, gone or late. */
static void client_step(struct uz_plugin_ctl *ctl, struct ctl_client *c, short revents)
{
    int64_t now = now_ms();
    bool alive = true;
    if (revents & (POLLERR | POLLNVAL))
        alive = false;
    if (alive && c->out && (revents & (POLLOUT | POLLHUP)))
        alive = client_send(c, now);
    else if (alive && !c->out && (revents & (POLLIN | POLLHUP)))
        alive = client_recv(c);
    /* Answer every whole line while replies go out at once (a pipelining client). */
    while (alive && !c->out && !c->closing) {
        size_t before = c->in_len;
        client_answer(ctl, c, now);
        if (!c->out)
            break;
        alive = client_send(c, now_ms());
        if (c->in_len == before && !c->out) /* nothing consumed: wait for more input */
            break;
    }
    if (alive && now_ms() >= c->deadline)
        alive = false;
    if (!alive)
        client_close(c);
}

static void accept_clients(struct uz_plugin_ctl *ctl)
{
    for (;;) {
        int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return; /* EAGAIN, ECONNABORTED, EMFILE: try again on the next wakeup */
        struct ctl_client *c = NULL;
        for (int i = 0; i < UZ_CTL_CLIENTS_MAX && !c; i++)
            if (ctl->clients[i].fd < 0)
                c = &ctl->clients[i];
        if (!c) { /* full: say so if the socket takes it at once, and hang up */
            struct reply r;
            reply_err(&r, EUSERS);
            if (r.buf)
                (void)!send(fd, r.buf, r.len, MSG_NOSIGNAL | MSG_DONTWAIT);
            free(r.buf);
            close(fd);
            continue;
        }
        *c = (struct ctl_client){.fd = fd, .deadline = now_ms() + UZ_CTL_DEADLINE_MS};
    }
}

static void *ctl_main(void *arg)
{
    struct uz_plugin_ctl *ctl = arg;
    struct pollfd p[2 + UZ_CTL_CLIENTS_MAX];
    int slot[UZ_CTL_CLIENTS_MAX]; /* p[2 + k] is ctl->clients[slot[k]] */
    for (;;) {
        p[0] = (struct pollfd){.fd = ctl->listen_fd, .events = POLLIN};
        p[1] = (struct pollfd){.fd = ctl->stop_pipe[0], .events = POLLIN};
        int n = 0;
        int64_t wake = INT64_MAX;
        for (int i = 0; i < UZ_CTL_CLIENTS_MAX; i++) {
            struct ctl_client *c = &ctl->clients[i];
            if (c->fd < 0)
                continue;
            p[2 + n] = (struct pollfd){.fd = c->fd, .events = c->out ? POLLOUT : POLLIN};
            slot[n++] = i;
            wake = c->deadline < wake ? c->deadline : wake;
        }
        int timeout = -1;
        if (wake != INT64_MAX) {
            int64_t left = wake - now_ms();
            timeout = left < 0 ? 0 : (int)left + 1;
        }
        int r = poll(p, (nfds_t)(2 + n), timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (r > 0 && p[1].revents)
            break;
        for (int k = 0; k < n; k++)
            client_step(ctl, &ctl->clients[slot[k]], r > 0 ? p[2 + k].revents : 0);
        if (r > 0 && p[0].revents)
            accept_clients(ctl);
    }
    for (int i = 0; i < UZ_CTL_CLIENTS_MAX; i++)
        if (ctl->clients[i].fd >= 0)
            client_close(&ctl->clients[i]);
    return NULL;
}

int uz_plugin_ctl_start(struct uz_plugin_ctl *ctl, struct uz_dev *dev, uz_plugin_ctl_write_fn write,
                        void *arg)
{
    ctl->dev = dev;
    ctl->write = write;
    ctl->write_arg = arg;
    for (int i = 0; i < UZ_CTL_CLIENTS_MAX; i++)
        ctl->clients[i].fd = -1;
    int fl = fcntl(ctl->listen_fd, F_GETFL);
    if (fl < 0 || fcntl(ctl->listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
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
