// SPDX-License-Identifier: MIT
/*
 * uzramctl.c - uzramctl: reads and writes the zram attributes of uzram devices served by
 * nbdkit-uzram-plugin with ctl=SOCKET, like util-linux zramctl does for /dev/zramN.
 *
 *   uzramctl [options] [SOCKET...]                    table of devices (zramctl's columns)
 *   uzramctl [-s SIZE] [-a ALGO] [-p PARAMS] SOCKET   set a device up (reset first, as zramctl)
 *   uzramctl -r SOCKET                                reset it
 *   uzramctl [options] [--socket PATH] get ATTR       one attribute (kernel text format)
 *   uzramctl [options] [--socket PATH] set ATTR VALUE...
 *   uzramctl [options] [--socket PATH] list           attribute names and modes
 *   uzramctl [options] run [PID]                      programs under uzram-run (uzramctl_run.c)
 *
 * Without a socket: $UZRAMCTL_SOCKET, else every /run/uzram/ *.ctl. The protocol is
 * support/ctl/ctl_proto.h. Every device must answer within -t SECONDS (default 5). Exit codes:
 * 0 success, 1 the device refused the request, 2 usage, 3 no device could be reached (or it
 * spoke nonsense), 4 a device did not answer in time.
 */
#include "ctl_proto.h"
#include "uzramctl_run.h"

#include <uzram/common.h>

#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_GLOB "/run/uzram/*.ctl"

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_TIMEOUT = 4 };

static bool opt_json, opt_bytes;

void uzctl_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("uzramctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- the connection ---- */

/* Every request of one device must be answered by this CLOCK_MONOTONIC time (-t). */
static double opt_timeout = 5.0;

enum { RQ_BROKEN = -1, RQ_TIMEOUT = -2 };

struct conn {
    int fd;
    const char *path;
    int64_t deadline; /* ms */
    char buf[UZ_CTL_LINE_MAX];
    size_t have, at; /* buf[at..have) is received and not yet consumed */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes. 0, or RQ_TIMEOUT. */
static int conn_wait(struct conn *c, short events)
{
    for (;;) {
        int64_t left = c->deadline - now_ms();
        if (left <= 0)
            return RQ_TIMEOUT;
        struct pollfd p = {.fd = c->fd, .events = events};
        int r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return RQ_BROKEN;
    }
}

static void conn_timed_out(const struct conn *c)
{
    uzctl_warn("%s: no answer within %g s (-t/--timeout)", c->path, opt_timeout);
}

/* 0, RQ_BROKEN or RQ_TIMEOUT (reported). */
static int conn_open(struct conn *c, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    c->path = path;
    c->have = c->at = 0;
    c->deadline = now_ms() + (int64_t)(opt_timeout * 1000);
    if (strlen(path) >= sizeof(sa.sun_path)) {
        uzctl_warn("%s: socket path too long", path);
        return RQ_BROKEN;
    }
    strcpy(sa.sun_path, path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        uzctl_warn("%s: socket: %s", path, strerror(errno));
        return RQ_BROKEN;
    }
    /* A Unix connect() waits while the server's backlog is full, for at most SO_SNDTIMEO. */
    int64_t left = c->deadline - now_ms();
    struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        close(c->fd);
        c->fd = -1;
        if (err == EAGAIN || err == EINPROGRESS || err == ETIMEDOUT) {
            conn_timed_out(c);
            return RQ_TIMEOUT;
        }
        uzctl_warn("%s: cannot connect: %s", path, strerror(err));
        return RQ_BROKEN;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* 0, RQ_BROKEN (EOF or error) or RQ_TIMEOUT. */
static int conn_fill(struct conn *c)
{
    if (c->at == c->have)
        c->at = c->have = 0;
    if (c->have == sizeof(c->buf)) {
        memmove(c->buf, c->buf + c->at, c->have - c->at);
        c->have -= c->at;
        c->at = 0;
    }
    for (;;) {
        int rc = conn_wait(c, POLLIN);
        if (rc)
            return rc;
        ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return RQ_BROKEN;
        c->have += (size_t)n;
        return 0;
    }
}

/* Sends one request; on "ok", *out gets the malloc'd NUL-terminated payload and 0 is returned;
 * on "err", the positive errno; on a broken connection or protocol RQ_BROKEN, past the deadline
 * RQ_TIMEOUT (both already reported). */
static int request(struct conn *c, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int request(struct conn *c, char **out, const char *fmt, ...)
{
    char line[UZ_CTL_LINE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || n >= UZ_CTL_LINE_MAX) {
        uzctl_warn("request too long");
        return RQ_BROKEN;
    }
    line[n++] = '\n';
    int rc = 0;
    for (int sent = 0; sent < n;) {
        if ((rc = conn_wait(c, POLLOUT)))
            goto failed;
        ssize_t w = send(c->fd, line + sent, (size_t)(n - sent), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0) {
            uzctl_warn("%s: send: %s", c->path, strerror(errno));
            return RQ_BROKEN;
        }
        sent += (int)w;
    }

    /* The status line. */
    char *nl;
    while (!(nl = memchr(c->buf + c->at, '\n', c->have - c->at)))
        if ((rc = conn_fill(c)))
            goto failed;
    *nl = '\0';
    char *status = c->buf + c->at;
    c->at = (size_t)(nl + 1 - c->buf);
    unsigned long long len;
    int err;
    if (sscanf(status, "ok %llu", &len) == 1 && len <= UZ_CTL_REPLY_MAX) {
        char *p = malloc(len + 1);
        if (!p) {
            uzctl_warn("out of memory");
            return RQ_BROKEN;
        }
        size_t got = 0;
        while (got < len) {
            if (c->at == c->have && (rc = conn_fill(c))) {
                free(p);
                goto failed;
            }
            size_t k = c->have - c->at;
            if (k > len - got)
                k = len - got;
            memcpy(p + got, c->buf + c->at, k);
            c->at += k;
            got += k;
        }
        p[len] = '\0';
        if (out)
            *out = p;
        else
            free(p);
        return 0;
    }
    if (sscanf(status, "err %d", &err) == 1 && err > 0)
        return err;
    uzctl_warn("%s: unexpected reply '%.60s'", c->path, status);
    return RQ_BROKEN;
failed:
    if (rc == RQ_TIMEOUT)
        conn_timed_out(c);
    else
        uzctl_warn("%s: connection closed by the device", c->path);
    return rc;
}

/* The exit status for a request's result. */
static int status_of(int rc)
{
    return rc == 0 ? 0 : rc > 0 ? EXIT_REFUSED : rc == RQ_TIMEOUT ? EXIT_TIMEOUT : EXIT_UNREACHABLE;
}

/* ---- output helpers ---- */

void uzctl_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch == '\t')
            fputs("\\t", stdout);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* "1G", "27.3M", "0B": util-linux's size_to_human_string with one-letter suffixes. */
void uzctl_human_size(uint64_t bytes, char *out, size_t len)
{
    static const char units[] = "BKMGTPE";
    int exp = 0;
    while (exp < 6 && bytes >= (1ull << (10 * (exp + 1))))
        exp++;
    if (exp == 0) {
        snprintf(out, len, "%" PRIu64 "B", bytes);
        return;
    }
    uint64_t whole = bytes >> (10 * exp);
    uint64_t frac = bytes & ((1ull << (10 * exp)) - 1);
    /* One decimal, rounded to nearest. */
    unsigned dec = (unsigned)((frac * 10 + (1ull << (10 * exp - 1))) >> (10 * exp));
    if (dec == 10) {
        whole++;
        dec = 0;
    }
    if (dec)
        snprintf(out, len, "%" PRIu64 ".%u%c", whole, dec, units[exp]);
    else
        snprintf(out, len, "%" PRIu64 "%c", whole, units[exp]);
}

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    while (*end == ' ' || *end == '\n')
        end++;
    if (errno || end == s || *end)
        return false;
    *v = x;
    return true;
}

static const char *refusal(int err)
{
    switch (err) {
    case ENOENT:
        return "no such attribute";
    case EACCES:
        return "attribute is not readable or not writable";
    case EINVAL:
        return "invalid value";
    case EBUSY:
        return "device busy (it holds data or is initialised: set reset 1 first)";
    case EBADRQC:
        return "request not understood by the device";
    default:
        return strerror(err);
    }
}

/* ---- the table ---- */

/* One device: what its attributes say. */
struct row {
    const char *name;
    char algorithm[32];
    uint64_t disksize, streams;
    uint64_t mm[9]; /* mm_stat, in the kernel's order (enum mm) */
    uint64_t bd[3]; /* bd_stat: bd_count bd_reads bd_writes, 4 KiB units (0 without writeback) */
    uint64_t idle;  /* idle_pages: slots marked idle */
};

enum mm {
    MM_ORIG_DATA_SIZE,
    MM_COMPR_DATA_SIZE,
    MM_MEM_USED_TOTAL,
    MM_MEM_LIMIT,
    MM_MEM_USED_MAX,
    MM_SAME_PAGES,
    MM_PAGES_COMPACTED,
    MM_HUGE_PAGES,
    MM_HUGE_PAGES_SINCE,
};

enum col_kind { COL_TEXT, COL_SIZE, COL_NUMBER, COL_RATIO };

/* zramctl(8)'s columns (same names and meanings; no MOUNTPOINT) plus HUGE-PAGES. */
static const struct column {
    const char *name, *json, *help;
    enum col_kind kind;
} columns[] = {
    {"NAME", "name", "the device's ctl socket", COL_TEXT},
    {"DISKSIZE", "disksize", "limit on the uncompressed amount of data", COL_SIZE},
    {"DATA", "data", "uncompressed size of stored data", COL_SIZE},
    {"COMPR", "compr", "compressed size of stored data", COL_SIZE},
    {"ALGORITHM", "algorithm", "the selected compression algorithm", COL_TEXT},
    {"STREAMS", "streams", "number of concurrent compress operations", COL_NUMBER},
    {"ZERO-PAGES", "zero-pages", "empty pages with no allocated memory", COL_NUMBER},
    {"TOTAL", "total", "all memory including allocator fragmentation and metadata overhead",
     COL_SIZE},
    {"MEM-LIMIT", "mem-limit", "memory limit used to store compressed data", COL_SIZE},
    {"MEM-USED", "mem-used", "memory the device has used at most to store compressed data",
     COL_SIZE},
    {"MIGRATED", "migrated", "number of pool pages freed by compaction", COL_NUMBER},
    {"HUGE-PAGES", "huge-pages", "incompressible pages stored raw", COL_NUMBER},
    {"COMP-RATIO", "comp-ratio", "compression ratio: DATA/TOTAL", COL_RATIO},
    {"BD-COUNT", "bd-count", "data written back to the backing device (bd_stat)", COL_SIZE},
    {"IDLE", "idle", "pages marked idle (the idle attribute)", COL_NUMBER},
};
#define NCOLUMNS (int)(sizeof(columns) / sizeof(columns[0]))
enum {
    C_NAME,
    C_DISKSIZE,
    C_DATA,
    C_COMPR,
    C_ALGORITHM,
    C_STREAMS,
    C_ZERO_PAGES,
    C_TOTAL,
    C_MEM_LIMIT,
    C_MEM_USED,
    C_MIGRATED,
    C_HUGE_PAGES,
    C_COMP_RATIO,
    C_BD_COUNT,
    C_IDLE
};
static const int default_columns[] = {C_NAME,  C_ALGORITHM, C_DISKSIZE, C_DATA,
                                      C_COMPR, C_TOTAL,     C_STREAMS,  C_COMP_RATIO};

static int out_cols[NCOLUMNS * 4]; /* the columns to print, in order (repeats allowed) */
static int n_out_cols;
static bool opt_noheadings, opt_raw;

/* Parses -o LIST ("NAME,DATA" or "+ZERO-PAGES" to add to the defaults). false: bad name. */
static bool parse_columns(const char *list)
{
    if (*list == '+')
        list++;
    else
        n_out_cols = 0;
    while (*list) {
        size_t len = strcspn(list, ",");
        int found = -1;
        for (int k = 0; k < NCOLUMNS && found < 0; k++)
            if (strlen(columns[k].name) == len && !strncasecmp(columns[k].name, list, len))
                found = k;
        if (found < 0) {
            uzctl_warn("unknown column: %.*s", (int)len, list);
            return false;
        }
        if (n_out_cols == (int)(sizeof(out_cols) / sizeof(out_cols[0]))) {
            uzctl_warn("too many columns");
            return false;
        }
        out_cols[n_out_cols++] = found;
        list += len;
        if (*list == ',')
            list++;
    }
    return true;
}

static int fetch_row(const char *path, struct row *r)
{
    struct conn c;
    memset(r, 0, sizeof(*r));
    r->name = path;
    int rc = conn_open(&c, path);
    if (rc)
        return status_of(rc);
    char *alg = NULL, *size = NULL, *mm = NULL, *streams = NULL;
    rc = request(&c, &alg, "get comp_algorithm");
    if (rc == 0)
        rc = request(&c, &size, "get disksize");
    if (rc == 0)
        rc = request(&c, &mm, "get mm_stat");
    if (rc == 0)
        rc = request(&c, &streams, "get max_comp_streams");
    /* Tiering: absent from devices without it (ENOENT), which then show zeros. */
    char *bd = NULL, *idle = NULL;
    if (rc == 0 && (rc = request(&c, &bd, "get bd_stat")) == ENOENT)
        rc = 0;
    if (rc == 0 && (rc = request(&c, &idle, "get idle_pages")) == ENOENT)
        rc = 0;
    conn_close(&c);
    int status = status_of(rc);
    if (rc > 0) {
        uzctl_warn("%s: %s", path, refusal(rc));
    } else if (rc == 0) {
        /* comp_algorithm reads "lzo [lz4] zstd": the selected one is bracketed. */
        char *open = strchr(alg, '['), *close = open ? strchr(open, ']') : NULL;
        if (open && close && close - open - 1 < (long)sizeof(r->algorithm))
            snprintf(r->algorithm, sizeof(r->algorithm), "%.*s", (int)(close - open - 1), open + 1);
        unsigned long long v[9] = {0};
        int got = sscanf(mm, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                         &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]);
        if (!parse_u64(size, &r->disksize) || got < 8 || !parse_u64(streams, &r->streams)) {
            uzctl_warn("%s: malformed attributes", path);
            status = EXIT_UNREACHABLE;
        }
        for (int k = 0; k < 9; k++)
            r->mm[k] = v[k];
        unsigned long long b[3] = {0};
        if (bd && sscanf(bd, "%llu %llu %llu", &b[0], &b[1], &b[2]) != 3) {
            uzctl_warn("%s: malformed bd_stat", path);
            status = EXIT_UNREACHABLE;
        }
        for (int k = 0; k < 3; k++)
            r->bd[k] = b[k];
        if (idle && !parse_u64(idle, &r->idle)) {
            uzctl_warn("%s: malformed idle_pages", path);
            status = EXIT_UNREACHABLE;
        }
    }
    free(bd);
    free(idle);
    free(alg);
    free(size);
    free(mm);
    free(streams);
    return status;
}

static double ratio(const struct row *r)
{
    return r->mm[MM_MEM_USED_TOTAL]
               ? (double)r->mm[MM_ORIG_DATA_SIZE] / (double)r->mm[MM_MEM_USED_TOTAL]
               : 0.0;
}

/* The numeric value of a size or number column. */
static uint64_t cell_value(const struct row *r, int col)
{
    switch (col) {
    case C_DISKSIZE:
        return r->disksize;
    case C_DATA:
        return r->mm[MM_ORIG_DATA_SIZE];
    case C_COMPR:
        return r->mm[MM_COMPR_DATA_SIZE];
    case C_STREAMS:
        return r->streams;
    case C_ZERO_PAGES:
        return r->mm[MM_SAME_PAGES];
    case C_TOTAL:
        return r->mm[MM_MEM_USED_TOTAL];
    case C_MEM_LIMIT:
        return r->mm[MM_MEM_LIMIT];
    case C_MEM_USED:
        return r->mm[MM_MEM_USED_MAX];
    case C_MIGRATED:
        return r->mm[MM_PAGES_COMPACTED];
    case C_HUGE_PAGES:
        return r->mm[MM_HUGE_PAGES];
    case C_BD_COUNT:
        return r->bd[0] * 4096; /* bd_stat counts 4 KiB blocks */
    case C_IDLE:
        return r->idle;
    default:
        return 0;
    }
}

/* The text of one cell, as the table shows it. */
static void cell_text(const struct row *r, int col, char *out, size_t len)
{
    switch (columns[col].kind) {
    case COL_TEXT:
        snprintf(out, len, "%s", col == C_NAME ? r->name : r->algorithm);
        break;
    case COL_SIZE:
        if (opt_bytes)
            snprintf(out, len, "%" PRIu64, cell_value(r, col));
        else
            uzctl_human_size(cell_value(r, col), out, len);
        break;
    case COL_NUMBER:
        snprintf(out, len, "%" PRIu64, cell_value(r, col));
        break;
    case COL_RATIO:
        if (r->mm[MM_MEM_USED_TOTAL])
            snprintf(out, len, "%.2f", ratio(r));
        else
            snprintf(out, len, "-");
        break;
    }
}

/* libsmartcols' raw output: whitespace, backslashes and control characters as \xHH. */
static void raw_print(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch == '\\' || ch == 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
}

static void print_json(const struct row *rows, int n)
{
    printf("{\n   \"uzramctl\": [");
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        printf("%s\n      {", i ? "," : "");
        for (int k = 0; k < n_out_cols; k++) {
            int col = out_cols[k];
            printf("%s\"%s\": ", k ? ", " : "", columns[col].json);
            switch (columns[col].kind) {
            case COL_TEXT:
                uzctl_json_string(col == C_NAME ? r->name : r->algorithm);
                break;
            case COL_SIZE: /* always bytes: scripts want numbers */
            case COL_NUMBER:
                printf("%" PRIu64, cell_value(r, col));
                break;
            case COL_RATIO:
                if (r->mm[MM_MEM_USED_TOTAL])
                    printf("%.3f", ratio(r));
                else
                    printf("null");
                break;
            }
        }
        /* Always: the backing device's counters, in bytes as the size columns are. */
        printf("%s\"bd_stat\": {\"bd_count\": %" PRIu64 ", \"bd_reads\": %" PRIu64
               ", \"bd_writes\": %" PRIu64 "}",
               n_out_cols ? ", " : "", r->bd[0] * 4096, r->bd[1] * 4096, r->bd[2] * 4096);
        printf("}");
    }
    printf("%s]\n}\n", n ? "\n   " : "");
}

static void print_table(const struct row *rows, int n)
{
    typedef char cell[32];
    cell *text = calloc((size_t)n * (size_t)n_out_cols + 1, sizeof(cell));
    int w[NCOLUMNS * 4];
    if (!text) {
        uzctl_warn("out of memory");
        return;
    }
    for (int k = 0; k < n_out_cols; k++)
        w[k] = opt_noheadings ? 0 : (int)strlen(columns[out_cols[k]].name);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n_out_cols; k++) {
            char *t = text[i * n_out_cols + k];
            int col = out_cols[k];
            if (col == C_NAME) /* names are longer than a cell: printed from the row */
                t[0] = '\0';
            else
                cell_text(&rows[i], col, t, sizeof(cell));
            int l = (int)strlen(col == C_NAME ? rows[i].name : t);
            w[k] = l > w[k] ? l : w[k];
        }
    for (int i = opt_noheadings ? 0 : -1; i < n; i++) {
        for (int k = 0; k < n_out_cols; k++) {
            int col = out_cols[k];
            const char *t = i < 0           ? columns[col].name
                            : col == C_NAME ? rows[i].name
                                            : text[i * n_out_cols + k];
            if (opt_raw) {
                if (k)
                    putchar(' ');
                raw_print(t);
            } else if (columns[col].kind == COL_TEXT) {
                /* left-aligned; the last column is not padded */
                printf("%s%-*s", k ? " " : "", k == n_out_cols - 1 ? 0 : w[k], t);
            } else {
                printf("%s%*s", k ? " " : "", w[k], t);
            }
        }
        putchar('\n');
    }
    free(text);
}

static int cmd_table(char **sockets, int n)
{
    struct row *rows = calloc((size_t)n + 1, sizeof(*rows));
    int status = 0, good = 0;
    if (!rows) {
        uzctl_warn("out of memory");
        return EXIT_UNREACHABLE;
    }
    for (int i = 0; i < n; i++) {
        int s = fetch_row(sockets[i], &rows[good]);
        if (s == 0)
            good++;
        else if (s > status)
            status = s;
    }
    if (opt_json)
        print_json(rows, good);
    else if (good)
        print_table(rows, good);
    free(rows);
    return status;
}

/* ---- setup: -r, -s, -a, -p (zramctl's) ---- */

/* zramctl's order: reset first (-r alone, or -s, which sets a device up afresh), then the
 * algorithm, its parameters, and the disk size. */
static int cmd_setup(const char *path, bool reset, const char *size, const char *algorithm,
                     const char *params)
{
    struct conn c;
    int rc = conn_open(&c, path);
    if (rc)
        return status_of(rc);
    const struct {
        const char *attr, *value;
    } steps[] = {
        {"reset", reset || size ? "1" : NULL},
        {"comp_algorithm", algorithm},
        {"algorithm_params", params},
        {"disksize", size},
    };
    for (size_t i = 0; rc == 0 && i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (!steps[i].value)
            continue;
        if (strchr(steps[i].value, '\n')) {
            uzctl_warn("%s: the value may not contain a newline", steps[i].attr);
            conn_close(&c);
            return EXIT_USAGE;
        }
        rc = request(&c, NULL, "set %s %s", steps[i].attr, steps[i].value);
        if (rc > 0)
            uzctl_warn("%s: set %s %s: %s", path, steps[i].attr, steps[i].value, refusal(rc));
    }
    conn_close(&c);
    return status_of(rc);
}

/* ---- get, set, list ---- */

static const char *const mm_stat_fields[] = {
    "orig_data_size", "compr_data_size", "mem_used_total", "mem_limit",        "mem_used_max",
    "same_pages",     "pages_compacted", "huge_pages",     "huge_pages_since", NULL};
static const char *const io_stat_fields[] = {"failed_reads", "failed_writes", "invalid_io",
                                             "notify_free", NULL};
static const char *const bd_stat_fields[] = {"bd_count", "bd_reads", "bd_writes", NULL};

static void json_fields(const char *text, const char *const *names)
{
    printf(", \"fields\": {");
    const char *p = text;
    for (int i = 0; names[i]; i++) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p)
            break;
        printf("%s\"%s\": %lld", i ? ", " : "", names[i], v);
        p = end;
    }
    printf("}");
}

static int cmd_get(struct conn *c, const char *attr)
{
    char *text = NULL;
    int rc = request(c, &text, "get %s", attr);
    if (rc) {
        if (rc > 0)
            uzctl_warn("get %s: %s", attr, refusal(rc));
        return status_of(rc);
    }
    if (!opt_json) {
        fputs(text, stdout);
    } else {
        size_t len = strlen(text);
        while (len && text[len - 1] == '\n')
            text[--len] = '\0';
        uint64_t v;
        printf("{\"name\": ");
        uzctl_json_string(attr);
        printf(", \"value\": ");
        if (parse_u64(text, &v))
            printf("%" PRIu64, v);
        else
            uzctl_json_string(text);
        if (!strcmp(attr, "mm_stat"))
            json_fields(text, mm_stat_fields);
        else if (!strcmp(attr, "io_stat"))
            json_fields(text, io_stat_fields);
        else if (!strcmp(attr, "bd_stat"))
            json_fields(text, bd_stat_fields);
        printf("}\n");
    }
    free(text);
    return 0;
}

static int cmd_set(struct conn *c, const char *attr, char **words, int n)
{
    char value[UZ_CTL_LINE_MAX];
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        int k = snprintf(value + at, sizeof(value) - at, "%s%s", i ? " " : "", words[i]);
        if (k < 0 || (size_t)k >= sizeof(value) - at) {
            uzctl_warn("set %s: value too long", attr);
            return EXIT_USAGE;
        }
        at += (size_t)k;
    }
    if (strchr(value, '\n')) {
        uzctl_warn("set %s: the value may not contain a newline", attr);
        return EXIT_USAGE;
    }
    int rc = request(c, NULL, "set %s %s", attr, value);
    if (rc > 0)
        uzctl_warn("set %s %s: %s", attr, value, refusal(rc));
    return status_of(rc);
}

static int cmd_list(struct conn *c)
{
    char *text = NULL;
    int rc = request(c, &text, "list");
    if (rc) {
        if (rc > 0)
            uzctl_warn("list: %s", refusal(rc));
        return status_of(rc);
    }
    if (!opt_json) {
        fputs(text, stdout);
    } else {
        printf("{\"attributes\": [");
        char name[128], mode[8];
        int first = 1, off = 0, used;
        while (sscanf(text + off, "%127s %7s%n", name, mode, &used) == 2) {
            printf("%s{\"name\": ", first ? "" : ", ");
            uzctl_json_string(name);
            printf(", \"mode\": ");
            uzctl_json_string(mode);
            printf("}");
            first = 0;
            off += used;
        }
        printf("]}\n");
    }
    free(text);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage:\n"
               "  uzramctl [options] [SOCKET...]\n"
               "  uzramctl [-s SIZE] [-a ALGORITHM] [-p PARAMS] SOCKET\n"
               "  uzramctl -r SOCKET...\n"
               "  uzramctl [options] [--socket PATH] get ATTR\n"
               "  uzramctl [options] [--socket PATH] set ATTR VALUE...\n"
               "  uzramctl [options] [--socket PATH] list\n"
               "  uzramctl [options] run [PID]\n"
               "\n"
               "Shows and sets up uzram devices served by nbdkit-uzram-plugin with ctl=SOCKET,\n"
               "as zramctl does for /dev/zramN.\n"
               "\n"
               "Options:\n"
               "  -a, --algorithm ALGO        set the compression algorithm (set comp_algorithm)\n"
               "  -p, --algorithm-params P    set its parameters (set algorithm_params)\n"
               "  -s, --size SIZE             reset the device, then set its disk size (with -a\n"
               "                              and -p between the two, as zramctl does)\n"
               "  -r, --reset                 reset the device (set reset 1)\n"
               "  -o, --output LIST           columns to show (NAME,DATA,... or +COLUMN to add)\n"
               "      --output-all            every column\n"
               "  -n, --noheadings            no header line\n"
               "      --raw                   unaligned output, one space between columns\n"
               "  -b, --bytes                 sizes in bytes rather than in human-readable form\n"
               "  -J, --json                  JSON output\n"
               "      --socket PATH           the device's ctl socket (default: the SOCKET\n"
               "                              arguments, else $UZRAMCTL_SOCKET, else every\n"
               "                              " DEFAULT_GLOB ")\n"
               "  -t, --timeout SECONDS       give up on a device that has not answered after\n"
               "                              SECONDS (default 5)\n"
               "  -h, --help                  this help\n"
               "  -V, --version               the version\n"
               "\n"
               "Columns:\n");
    for (int k = 0; k < NCOLUMNS; k++)
        fprintf(f, "  %-11s  %s\n", columns[k].name, columns[k].help);
    fprintf(f, "\n"
               "Attributes have the kernel zram names and formats: disksize, comp_algorithm,\n"
               "algorithm_params, mem_limit, mem_used_max, mm_stat, io_stat, debug_stat,\n"
               "max_comp_streams, pool_stat, initstate; write-only: compact, reset.\n"
               "\n"
               "Programs under uzram-run (their live statistics, from @uzram-run/PID sockets;\n"
               "-J, -b, -n and -t apply):\n");
    uzctl_run_usage(f);
    fprintf(f, "\n"
               "Exit status: 0 success, 1 the device refused the request (run: PID is not a\n"
               "uzram-run process, or another user's), 2 usage error, 3 no device could be\n"
               "reached, 4 a device (run: a process) did not answer within the timeout.\n");
}

static bool is_command(const char *w)
{
    return !strcmp(w, "get") || !strcmp(w, "set") || !strcmp(w, "list") || !strcmp(w, "run");
}

int main(int argc, char **argv)
{
    enum { OPT_OUTPUT_ALL = 256, OPT_RAW, OPT_SOCKET };
    static const struct option longopts[] = {{"algorithm", required_argument, NULL, 'a'},
                                             {"algorithm-params", required_argument, NULL, 'p'},
                                             {"size", required_argument, NULL, 's'},
                                             {"reset", no_argument, NULL, 'r'},
                                             {"output", required_argument, NULL, 'o'},
                                             {"output-all", no_argument, NULL, OPT_OUTPUT_ALL},
                                             {"noheadings", no_argument, NULL, 'n'},
                                             {"raw", no_argument, NULL, OPT_RAW},
                                             {"bytes", no_argument, NULL, 'b'},
                                             {"json", no_argument, NULL, 'J'},
                                             {"socket", required_argument, NULL, OPT_SOCKET},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    char **sockets = calloc((size_t)argc + 1, sizeof(char *));
    int nsockets = 0, opt;
    const char *size = NULL, *algorithm = NULL, *params = NULL;
    bool reset = false;
    if (!sockets)
        return EXIT_UNREACHABLE;
    memcpy(out_cols, default_columns, sizeof(default_columns));
    n_out_cols = (int)(sizeof(default_columns) / sizeof(default_columns[0]));
    /* '+': options end at the command, so "set mem_limit -1" passes -1 through; a SOCKET
     * argument before it does not end them ("uzramctl /run/uzram/a.ctl -o NAME"). */
    for (;;) {
        while ((opt = getopt_long(argc, argv, "+a:p:s:ro:nbJt:hV", longopts, NULL)) != -1) {
            switch (opt) {
            case 'a':
                algorithm = optarg;
                break;
            case 'p':
                params = optarg;
                break;
            case 's':
                size = optarg;
                break;
            case 'r':
                reset = true;
                break;
            case 'o':
                if (!parse_columns(optarg))
                    return EXIT_USAGE;
                break;
            case OPT_OUTPUT_ALL:
                for (n_out_cols = 0; n_out_cols < NCOLUMNS; n_out_cols++)
                    out_cols[n_out_cols] = n_out_cols;
                break;
            case 'n':
                opt_noheadings = true;
                break;
            case OPT_RAW:
                opt_raw = true;
                break;
            case 'b':
                opt_bytes = true;
                break;
            case 'J':
                opt_json = true;
                break;
            case OPT_SOCKET:
                sockets[nsockets++] = optarg;
                break;
            case 't': {
                char *end;
                errno = 0;
                opt_timeout = strtod(optarg, &end);
                if (errno || end == optarg || *end || !(opt_timeout > 0) || opt_timeout > 1e6) {
                    uzctl_warn("--timeout %s: not a number of seconds above 0", optarg);
                    return EXIT_USAGE;
                }
                break;
            }
            case 'h':
                usage(stdout);
                return 0;
            case 'V':
                printf("uzramctl from uzram %s (ctl protocol %d)\n", UZ_VERSION_STRING,
                       UZ_CTL_PROTO);
                return 0;
            default:
                usage(stderr);
                return EXIT_USAGE;
            }
        }
        /* A SOCKET is a path: another word is a command (or a mistyped one). */
        if (optind >= argc || is_command(argv[optind]) ||
            (!strchr(argv[optind], '/') && !strstr(argv[optind], ".ctl")))
            break;
        sockets[nsockets++] = argv[optind++];
    }
    const char *cmd = optind < argc ? argv[optind] : NULL;
    if (cmd && !strcmp(cmd, "run")) {
        if (nsockets || size || algorithm || params || reset) {
            uzctl_warn("run: no SOCKET, --socket, -s, -a, -p or -r");
            return EXIT_USAGE;
        }
        free(sockets);
        struct uzctl_run_opts ro = {.json = opt_json,
                                    .bytes = opt_bytes,
                                    .noheadings = opt_noheadings,
                                    .timeout = opt_timeout};
        return uzctl_run(argc - optind, argv + optind, &ro);
    }
    int nargs = cmd ? argc - optind - 1 : 0;
    char **args = argv + optind + 1;
    if (cmd && !((!strcmp(cmd, "get") && nargs == 1) || (!strcmp(cmd, "set") && nargs >= 2) ||
                 (!strcmp(cmd, "list") && nargs == 0))) {
        uzctl_warn(is_command(cmd) ? "%s: wrong number of arguments" : "unknown command '%s'", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    bool setup = size || algorithm || params;
    if ((setup || reset) && cmd) {
        uzctl_warn("%s: not with -s, -a, -p or -r", cmd);
        return EXIT_USAGE;
    }
    if (reset && setup) {
        uzctl_warn("--reset and --size, --algorithm, --algorithm-params are mutually exclusive");
        return EXIT_USAGE;
    }

    glob_t g = {0};
    if (!nsockets && !setup && !reset) {
        const char *env = getenv("UZRAMCTL_SOCKET");
        if (env && *env) {
            sockets[nsockets++] = (char *)env;
        } else if (glob(DEFAULT_GLOB, 0, NULL, &g) == 0) {
            free(sockets);
            sockets = g.gl_pathv;
            nsockets = (int)g.gl_pathc;
        }
    }
    int status = 0;
    if (reset) {
        if (!nsockets) {
            uzctl_warn("--reset: name the devices (SOCKET arguments or --socket)");
            status = EXIT_USAGE;
        }
        for (int i = 0; i < nsockets; i++) { /* like zramctl -r, every device named */
            int s = cmd_setup(sockets[i], true, NULL, NULL, NULL);
            status = s > status ? s : status;
        }
    } else if (setup) {
        if (nsockets != 1) {
            uzctl_warn("-s, -a, -p: name exactly one device (SOCKET argument or --socket)");
            status = EXIT_USAGE;
        } else {
            status = cmd_setup(sockets[0], false, size, algorithm, params);
        }
    } else if (!cmd) {
        status = nsockets ? cmd_table(sockets, nsockets) : 0; /* no devices: empty, like zramctl */
        if (!nsockets && opt_json)
            printf("{\n   \"uzramctl\": []\n}\n");
    } else if (nsockets != 1) {
        uzctl_warn(nsockets ? "%s: several devices; choose one with --socket"
                            : "%s: no device; give --socket PATH or set UZRAMCTL_SOCKET",
                   cmd);
        status = nsockets ? EXIT_USAGE : EXIT_UNREACHABLE;
    } else {
        struct conn c;
        int rc = conn_open(&c, sockets[0]);
        if (rc) {
            status = status_of(rc);
        } else {
            if (!strcmp(cmd, "get"))
                status = cmd_get(&c, args[0]);
            else if (!strcmp(cmd, "set"))
                status = cmd_set(&c, args[0], args + 1, nargs - 1);
            else
                status = cmd_list(&c);
            conn_close(&c);
        }
    }
    if (g.gl_pathv)
        globfree(&g);
    else
        free(sockets);
    return status;
}
