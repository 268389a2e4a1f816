// SPDX-License-Identifier: MIT
/*
 * uzramctl_run.c - `uzramctl run [PID]`: the live statistics of programs under uzram-run.
 *
 * Each such process (and each forked child of one) serves one line of key=value pairs on the
 * abstract Unix socket "@uzram-run/<pid>" (src/preload/preload_stats.c): "pid=P
 * resident_bytes=... swapped_pages=... orig_bytes=... compr_bytes=... mem_used=...
 * major_faults=... minor_faults=... wp_faults=... throttled=... forks=... mode=M". Without a
 * PID the processes are found by those names in /proc/net/unix (the sockets of this network
 * namespace); a process of another user closes the connection without a word and is left out
 * of the list. The table shows sizes human-readable (-b: bytes); -J prints a JSON array of
 * objects with every key as the process sent it (numbers raw) plus "command".
 */
#include "uzramctl_run.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define STATS_PREFIX "uzram-run/" /* the preload's UZP_STATS_PREFIX */
#define MAX_KEYS     24

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 4 }; /* uzramctl's statuses */

struct proc {
    long pid;
    char line[512]; /* the reply, split in place into keys and values */
    const char *key[MAX_KEYS], *val[MAX_KEYS];
    int nkeys;
    char command[256];
};

/* ---- asking one process ---- */

enum { ASK_OK = 0, ASK_NONE = -1, ASK_REFUSED = -2, ASK_TIMEOUT = -3, ASK_BROKEN = -4 };

static int ask(long pid, double timeout, char *buf, size_t size)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ASK_BROKEN;
    struct timeval tv = {(time_t)timeout, (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* connect() waits by it */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, STATS_PREFIX "%ld", pid);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
        int e = errno;
        close(fd);
        return e == EAGAIN || e == EINPROGRESS ? ASK_TIMEOUT : ASK_NONE;
    }
    /* One line; end of file before anything: refused. A newline ends it even if the
     * connection stays open (a copy of it held elsewhere). */
    size_t got = 0;
    while (got < size - 1 && !memchr(buf, '\n', got)) {
        ssize_t r = read(fd, buf + got, size - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return e == EAGAIN || e == EWOULDBLOCK ? ASK_TIMEOUT : ASK_BROKEN;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    if (got == 0)
        return ASK_REFUSED;
    char *nl = strchr(buf, '\n');
    if (!nl || strncmp(buf, "pid=", 4) != 0)
        return ASK_BROKEN;
    *nl = '\0';
    return ASK_OK;
}

/* Splits p->line into key=value pairs. @return : false if it is not such a line. */
static bool split(struct proc *p)
{
    p->nkeys = 0;
    for (char *save, *tok = strtok_r(p->line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || p->nkeys == MAX_KEYS)
            return false;
        *eq = '\0';
        p->key[p->nkeys] = tok;
        p->val[p->nkeys++] = eq + 1;
    }
    return p->nkeys > 0;
}

static const char *value(const struct proc *p, const char *key)
{
    for (int i = 0; i < p->nkeys; i++)
        if (!strcmp(p->key[i], key))
            return p->val[i];
    return NULL;
}

static bool is_number(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static uint64_t number(const struct proc *p, const char *key)
{
    const char *v = value(p, key);
    return v && is_number(v) ? strtoull(v, NULL, 10) : 0;
}

/* /proc/PID/cmdline with spaces between the arguments (ps's args), else comm. */
static void command_of(long pid, char *out, size_t size)
{
    char path[64];
    out[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    FILE *f = fopen(path, "re");
    if (f) {
        size_t n = fread(out, 1, size - 1, f);
        fclose(f);
        while (n > 0 && out[n - 1] == '\0')
            n--;
        out[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (out[i] == '\0' || out[i] == '\n' || out[i] == '\t')
                out[i] = ' ';
    }
    if (out[0])
        return;
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    f = fopen(path, "re");
    if (f) {
        if (!fgets(out, (int)size, f))
            out[0] = '\0';
        fclose(f);
        out[strcspn(out, "\n")] = '\0';
    }
}

/* ---- finding them ---- */

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The pids of the @uzram-run/<pid> sockets in /proc/net/unix, sorted, once each (accepted
 * connections carry the name too). @return : their number, or -errno. */
static int find_pids(long **out)
{
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f)
        return -errno;
    long *pids = NULL;
    int n = 0, cap = 0;
    char line[512];
    static const char tag[] = " @" STATS_PREFIX;
    while (fgets(line, sizeof(line), f)) {
        char *p = strstr(line, tag), *end;
        if (!p)
            continue;
        errno = 0;
        long pid = strtol(p + sizeof(tag) - 1, &end, 10);
        if (errno || pid <= 0 || (*end != '\n' && *end != '\0'))
            continue;
        if (n == cap) {
            long *np = realloc(pids, (size_t)(cap = cap ? cap * 2 : 16) * sizeof(*pids));
            if (!np) {
                free(pids);
                fclose(f);
                return -ENOMEM;
            }
            pids = np;
        }
        pids[n++] = pid;
    }
    fclose(f);
    if (n)
        qsort(pids, (size_t)n, sizeof(*pids), cmp_long);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (!u || pids[u - 1] != pids[i])
            pids[u++] = pids[i];
    *out = pids;
    return u;
}

/* ---- output ---- */

static void print_json(const struct proc *ps, int n)
{
    printf("[");
    for (int i = 0; i < n; i++) {
        const struct proc *p = &ps[i];
        printf("%s\n   {", i ? "," : "");
        for (int k = 0; k < p->nkeys; k++) {
            printf("%s", k ? ", " : "");
            uzctl_json_string(p->key[k]);
            printf(": ");
            if (is_number(p->val[k]))
                printf("%s", p->val[k]);
            else
                uzctl_json_string(p->val[k]);
        }
        printf(", \"command\": ");
        uzctl_json_string(p->command);
        printf("}");
    }
    printf("%s]\n", n ? "\n" : "");
}

enum {
    C_PID,
    C_RESIDENT,
    C_SWAPPED,
    C_ORIG,
    C_COMPR,
    C_MEM_USED,
    C_MAJFLT,
    C_MODE,
    C_COMMAND,
    NCOL
};

static const char *const col_name[NCOL] = {"PID",      "RESIDENT", "SWAPPED", "ORIG",   "COMPR",
                                           "MEM-USED", "MAJFLT",   "MODE",    "COMMAND"};

static void cell(const struct proc *p, int col, bool bytes, char *out, size_t len)
{
    uint64_t v = 0;
    switch (col) {
    case C_PID:
        snprintf(out, len, "%ld", p->pid);
        return;
    case C_MAJFLT:
        snprintf(out, len, "%" PRIu64, number(p, "major_faults"));
        return;
    case C_MODE: {
        const char *m = value(p, "mode");
        snprintf(out, len, "%s", m ? m : "-");
        return;
    }
    case C_COMMAND:
        snprintf(out, len, "%s", p->command);
        return;
    case C_RESIDENT:
        v = number(p, "resident_bytes");
        break;
    case C_SWAPPED:
        v = number(p, "swapped_pages") * 4096;
        break;
    case C_ORIG:
        v = number(p, "orig_bytes");
        break;
    case C_COMPR:
        v = number(p, "compr_bytes");
        break;
    case C_MEM_USED:
        v = number(p, "mem_used");
        break;
    }
    if (bytes)
        snprintf(out, len, "%" PRIu64, v);
    else
        uzctl_human_size(v, out, len);
}

static void print_table(const struct proc *ps, int n, const struct uzctl_run_opts *o)
{
    int w[NCOL];
    char t[256];
    for (int c = 0; c < NCOL; c++)
        w[c] = o->noheadings ? 0 : (int)strlen(col_name[c]);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < NCOL - 1; c++) {
            cell(&ps[i], c, o->bytes, t, sizeof(t));
            int l = (int)strlen(t);
            w[c] = l > w[c] ? l : w[c];
        }
    for (int i = o->noheadings ? 0 : -1; i < n; i++) {
        for (int c = 0; c < NCOL; c++) {
            const char *s = t;
            if (i < 0)
                s = col_name[c];
            else
                cell(&ps[i], c, o->bytes, t, sizeof(t));
            if (c == C_COMMAND) /* left-aligned, last: not padded */
                printf(" %s", s);
            else if (c == C_MODE)
                printf(" %-*s", w[c], s);
            else
                printf("%s%*s", c ? " " : "", w[c], s);
        }
        putchar('\n');
    }
}

/* ---- the command ---- */

void uzctl_run_usage(FILE *f)
{
    fprintf(f, "  uzramctl run [-J] [-b] [-n] [-t SECONDS] [PID]\n"
               "                              live statistics of programs under uzram-run\n"
               "                              (every one of this user, or PID): PID RESIDENT\n"
               "                              SWAPPED ORIG COMPR MEM-USED MAJFLT MODE COMMAND\n");
}

static bool parse_pid(const char *s, long *pid)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0)
        return false;
    *pid = v;
    return true;
}

int uzctl_run(int argc, char **argv, const struct uzctl_run_opts *given)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'J'},       {"bytes", no_argument, NULL, 'b'},
        {"noheadings", no_argument, NULL, 'n'}, {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    struct uzctl_run_opts o = *given;
    int opt;
    optind = 0; /* glibc: start afresh on this argv */
    while ((opt = getopt_long(argc, argv, "Jbnt:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'J':
            o.json = true;
            break;
        case 'b':
            o.bytes = true;
            break;
        case 'n':
            o.noheadings = true;
            break;
        case 't': {
            char *end;
            errno = 0;
            o.timeout = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o.timeout > 0) || o.timeout > 1e6) {
                uzctl_warn("--timeout %s: not a number of seconds above 0", optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case 'h':
            printf("Usage:\n");
            uzctl_run_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "Usage:\n");
            uzctl_run_usage(stderr);
            return EXIT_USAGE;
        }
    }
    long one, *pids = NULL;
    int n;
    if (optind < argc) {
        if (optind + 1 < argc) {
            uzctl_warn("run: one PID at most");
            return EXIT_USAGE;
        }
        if (!parse_pid(argv[optind], &one)) {
            uzctl_warn("run: %s: not a process id", argv[optind]);
            return EXIT_USAGE;
        }
        pids = &one;
        n = 1;
    } else {
        n = find_pids(&pids);
        if (n < 0) {
            uzctl_warn("/proc/net/unix: %s", strerror(-n));
            return EXIT_REFUSED;
        }
    }
    struct proc *ps = calloc((size_t)n + 1, sizeof(*ps));
    int good = 0, status = 0;
    if (!ps) {
        uzctl_warn("out of memory");
        status = EXIT_REFUSED;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct proc *p = &ps[good];
        p->pid = pids[i];
        int rc = ask(p->pid, o.timeout, p->line, sizeof(p->line));
        if (rc == ASK_OK && !split(p))
            rc = ASK_BROKEN;
        if (rc == ASK_OK) {
            command_of(p->pid, p->command, sizeof(p->command));
            good++;
            continue;
        }
        if (rc == ASK_TIMEOUT) {
            uzctl_warn("process %ld: no answer within %g s (-t/--timeout)", p->pid, o.timeout);
            status = EXIT_TIMEOUT;
        } else if (pids == &one) { /* in the list: gone meanwhile, or another user's */
            char path[64];
            snprintf(path, sizeof(path), "/proc/%ld", p->pid);
            if (rc == ASK_REFUSED)
                uzctl_warn("process %ld: permission denied (another user's uzram-run process)",
                           p->pid);
            else if (rc == ASK_BROKEN)
                uzctl_warn("process %ld: its uzram-run socket spoke nonsense", p->pid);
            else if (access(path, F_OK) != 0)
                uzctl_warn("process %ld: no such process", p->pid);
            else
                uzctl_warn("process %ld: not a uzram-run process (no @" STATS_PREFIX "%ld socket)",
                           p->pid, p->pid);
            status = EXIT_REFUSED;
        }
    }
    if (o.json)
        print_json(ps, good);
    else if (good)
        print_table(ps, good, &o);
out:
    free(ps);
    if (pids != &one)
        free(pids);
    return status;
}
