// SPDX-License-Identifier: MIT
/*
 * uzramctl.c - uzramctl: reads and writes the zram attributes of uzram devices served by
 * nbdkit-uzram-plugin with ctl=SOCKET, like util-linux zramctl does for /dev/zramN.
 *
 *   uzramctl [--socket PATH]... [--bytes] [--json]     table of devices
 *   uzramctl [--socket PATH] [--json] get ATTR          one attribute (kernel text format)
 *   uzramctl [--socket PATH] set ATTR VALUE...          write one attribute
 *   uzramctl [--socket PATH] [--json] list              attribute names and modes
 *
 * Without --socket: $UZRAMCTL_SOCKET, else every /run/uzram/ *.ctl. The protocol is
 * ctl_proto.h. Exit codes: 0 success, 1 the device refused the request, 2 usage, 3 no device
 * could be reached (or it spoke nonsense).
 */
#include "ctl_proto.h"

#include <uzram/common.h>

#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_GLOB "/run/uzram/*.ctl"

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static bool opt_json, opt_bytes;

static void usage(FILE *f)
{
    fprintf(f, "Usage:\n"
               "  uzramctl [--socket PATH]... [--bytes] [--json]\n"
               "  uzramctl [--socket PATH] [--json] get ATTR\n"
               "  uzramctl [--socket PATH] set ATTR VALUE...\n"
               "  uzramctl [--socket PATH] [--json] list\n"
               "\n"
               "Shows and changes uzram devices served by nbdkit-uzram-plugin with ctl=SOCKET.\n"
               "\n"
               "Options:\n"
               "  -s, --socket PATH  the device's ctl socket (default: $UZRAMCTL_SOCKET, else\n"
               "                     every " DEFAULT_GLOB ")\n"
               "  -b, --bytes        print sizes in bytes rather than in human-readable form\n"
               "  -J, --json         JSON output\n"
               "  -h, --help         this help\n"
               "  -V, --version      the version\n"
               "\n"
               "Attributes have the kernel zram names and formats: disksize, comp_algorithm,\n"
               "algorithm_params, mem_limit, mem_used_max, mm_stat, io_stat, debug_stat,\n"
               "max_comp_streams, pool_stat, initstate; write-only: compact, reset.\n"
               "\n"
               "Exit status: 0 success, 1 the device refused the request, 2 usage error,\n"
               "3 no device could be reached.\n");
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("uzramctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- the connection ---- */

struct conn {
    int fd;
    const char *path;
    char buf[UZ_CTL_LINE_MAX];
    size_t have, at; /* buf[at..have) is received and not yet consumed */
};

static int conn_open(struct conn *c, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    c->path = path;
    c->have = c->at = 0;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        warn("%s: socket path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        warn("%s: cannot connect: %s", path, strerror(errno));
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int conn_fill(struct conn *c)
{
    if (c->at == c->have)
        c->at = c->have = 0;
    if (c->have == sizeof(c->buf)) {
        memmove(c->buf, c->buf + c->at, c->have - c->at);
        c->have -= c->at;
        c->at = 0;
    }
    ssize_t n;
    do
        n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    c->have += (size_t)n;
    return 0;
}

/* Sends one request; on "ok", *out gets the malloc'd NUL-terminated payload and 0 is returned;
 * on "err", the positive errno; on a broken connection or protocol, -1 (already reported). */
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
        warn("request too long");
        return -1;
    }
    line[n++] = '\n';
    for (int sent = 0; sent < n;) {
        ssize_t w = send(c->fd, line + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            warn("%s: send: %s", c->path, strerror(errno));
            return -1;
        }
        sent += (int)w;
    }

    /* The status line. */
    char *nl;
    while (!(nl = memchr(c->buf + c->at, '\n', c->have - c->at)))
        if (conn_fill(c) < 0)
            goto broken;
    *nl = '\0';
    char *status = c->buf + c->at;
    c->at = (size_t)(nl + 1 - c->buf);
    unsigned long long len;
    int err;
    if (sscanf(status, "ok %llu", &len) == 1 && len <= UZ_CTL_REPLY_MAX) {
        char *p = malloc(len + 1);
        if (!p) {
            warn("out of memory");
            return -1;
        }
        size_t got = 0;
        while (got < len) {
            if (c->at == c->have && conn_fill(c) < 0) {
                free(p);
                goto broken;
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
    warn("%s: unexpected reply '%.60s'", c->path, status);
    return -1;
broken:
    warn("%s: connection closed by the device", c->path);
    return -1;
}

/* ---- output helpers ---- */

static void json_string(const char *s)
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
static void human_size(uint64_t bytes, char *out, size_t len)
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

struct row {
    const char *name;
    char algorithm[32];
    uint64_t disksize, data, compr, total, streams;
};

static int fetch_row(const char *path, struct row *r)
{
    struct conn c;
    if (conn_open(&c, path) < 0)
        return EXIT_UNREACHABLE;
    memset(r, 0, sizeof(*r));
    r->name = path;
    char *alg = NULL, *size = NULL, *mm = NULL, *streams = NULL;
    int rc = request(&c, &alg, "get comp_algorithm");
    if (rc == 0)
        rc = request(&c, &size, "get disksize");
    if (rc == 0)
        rc = request(&c, &mm, "get mm_stat");
    if (rc == 0)
        rc = request(&c, &streams, "get max_comp_streams");
    conn_close(&c);
    int status = 0;
    if (rc > 0) {
        warn("%s: %s", path, refusal(rc));
        status = EXIT_REFUSED;
    } else if (rc < 0) {
        status = EXIT_UNREACHABLE;
    } else {
        /* comp_algorithm reads "lzo [lz4] zstd": the selected one is bracketed. */
        char *open = strchr(alg, '['), *close = open ? strchr(open, ']') : NULL;
        if (open && close && close - open - 1 < (long)sizeof(r->algorithm))
            snprintf(r->algorithm, sizeof(r->algorithm), "%.*s", (int)(close - open - 1), open + 1);
        unsigned long long d = 0, cd = 0, t = 0;
        if (!parse_u64(size, &r->disksize) || sscanf(mm, "%llu %llu %llu", &d, &cd, &t) != 3 ||
            !parse_u64(streams, &r->streams)) {
            warn("%s: malformed attributes", path);
            status = EXIT_UNREACHABLE;
        }
        r->data = d;
        r->compr = cd;
        r->total = t;
    }
    free(alg);
    free(size);
    free(mm);
    free(streams);
    return status;
}

static double ratio(const struct row *r)
{
    return r->total ? (double)r->data / (double)r->total : 0.0;
}

static int cmd_table(char **sockets, int n)
{
    struct row *rows = calloc((size_t)n, sizeof(*rows));
    int status = 0, good = 0;
    if (!rows) {
        warn("out of memory");
        return EXIT_UNREACHABLE;
    }
    for (int i = 0; i < n; i++) {
        int s = fetch_row(sockets[i], &rows[good]);
        if (s == 0)
            good++;
        else if (s > status)
            status = s;
    }
    if (opt_json) {
        printf("{\n   \"uzramctl\": [");
        for (int i = 0; i < good; i++) {
            const struct row *r = &rows[i];
            printf("%s\n      {\"name\": ", i ? "," : "");
            json_string(r->name);
            printf(", \"algorithm\": ");
            json_string(r->algorithm);
            printf(", \"disksize\": %" PRIu64 ", \"data\": %" PRIu64 ", \"compr\": %" PRIu64
                   ", \"total\": %" PRIu64 ", \"streams\": %" PRIu64 ", \"comp-ratio\": ",
                   r->disksize, r->data, r->compr, r->total, r->streams);
            if (r->total)
                printf("%.3f}", ratio(r));
            else
                printf("null}");
        }
        printf("%s]\n}\n", good ? "\n   " : "");
    } else if (good) {
        char cell[6][32];
        const char *head[8] = {"NAME",  "ALGORITHM", "DISKSIZE", "DATA",
                               "COMPR", "TOTAL",     "STREAMS",  "COMP-RATIO"};
        int w[8];
        for (int k = 0; k < 8; k++)
            w[k] = (int)strlen(head[k]);
        char(*text)[6][32] = calloc((size_t)good, sizeof(*text));
        if (!text) {
            free(rows);
            return EXIT_UNREACHABLE;
        }
        for (int i = 0; i < good; i++) {
            const struct row *r = &rows[i];
            uint64_t v[4] = {r->disksize, r->data, r->compr, r->total};
            for (int k = 0; k < 4; k++) {
                if (opt_bytes)
                    snprintf(cell[k], sizeof(cell[k]), "%" PRIu64, v[k]);
                else
                    human_size(v[k], cell[k], sizeof(cell[k]));
            }
            snprintf(cell[4], sizeof(cell[4]), "%" PRIu64, r->streams);
            if (r->total)
                snprintf(cell[5], sizeof(cell[5]), "%.2f", ratio(r));
            else
                snprintf(cell[5], sizeof(cell[5]), "-");
            memcpy(text[i], cell, sizeof(cell));
            int l0 = (int)strlen(r->name), l1 = (int)strlen(r->algorithm);
            w[0] = l0 > w[0] ? l0 : w[0];
            w[1] = l1 > w[1] ? l1 : w[1];
            for (int k = 0; k < 6; k++) {
                int l = (int)strlen(cell[k]);
                w[k + 2] = l > w[k + 2] ? l : w[k + 2];
            }
        }
        printf("%-*s %-*s", w[0], head[0], w[1], head[1]);
        for (int k = 2; k < 8; k++)
            printf(" %*s", w[k], head[k]);
        putchar('\n');
        for (int i = 0; i < good; i++) {
            printf("%-*s %-*s", w[0], rows[i].name, w[1], rows[i].algorithm);
            for (int k = 0; k < 6; k++)
                printf(" %*s", w[k + 2], text[i][k]);
            putchar('\n');
        }
        free(text);
    }
    free(rows);
    return status;
}

/* ---- get, set, list ---- */

static const char *const mm_stat_fields[] = {
    "orig_data_size", "compr_data_size", "mem_used_total", "mem_limit",        "mem_used_max",
    "same_pages",     "pages_compacted", "huge_pages",     "huge_pages_since", NULL};
static const char *const io_stat_fields[] = {"failed_reads", "failed_writes", "invalid_io",
                                             "notify_free", NULL};

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
            warn("get %s: %s", attr, refusal(rc));
        return rc > 0 ? EXIT_REFUSED : EXIT_UNREACHABLE;
    }
    if (!opt_json) {
        fputs(text, stdout);
    } else {
        size_t len = strlen(text);
        while (len && text[len - 1] == '\n')
            text[--len] = '\0';
        uint64_t v;
        printf("{\"name\": ");
        json_string(attr);
        printf(", \"value\": ");
        if (parse_u64(text, &v))
            printf("%" PRIu64, v);
        else
            json_string(text);
        if (!strcmp(attr, "mm_stat"))
            json_fields(text, mm_stat_fields);
        else if (!strcmp(attr, "io_stat"))
            json_fields(text, io_stat_fields);
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
            warn("set %s: value too long", attr);
            return EXIT_USAGE;
        }
        at += (size_t)k;
    }
    if (strchr(value, '\n')) {
        warn("set %s: the value may not contain a newline", attr);
        return EXIT_USAGE;
    }
    int rc = request(c, NULL, "set %s %s", attr, value);
    if (rc > 0)
        warn("set %s %s: %s", attr, value, refusal(rc));
    return rc > 0 ? EXIT_REFUSED : rc < 0 ? EXIT_UNREACHABLE : 0;
}

static int cmd_list(struct conn *c)
{
    char *text = NULL;
    int rc = request(c, &text, "list");
    if (rc) {
        if (rc > 0)
            warn("list: %s", refusal(rc));
        return rc > 0 ? EXIT_REFUSED : EXIT_UNREACHABLE;
    }
    if (!opt_json) {
        fputs(text, stdout);
    } else {
        printf("{\"attributes\": [");
        char name[128], mode[8];
        int first = 1, off = 0, used;
        while (sscanf(text + off, "%127s %7s%n", name, mode, &used) == 2) {
            printf("%s{\"name\": ", first ? "" : ", ");
            json_string(name);
            printf(", \"mode\": ");
            json_string(mode);
            printf("}");
            first = 0;
            off += used;
        }
        printf("]}\n");
    }
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'}, {"bytes", no_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'J'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0}};
    char **sockets = calloc((size_t)argc + 1, sizeof(char *));
    int nsockets = 0, opt;
    if (!sockets)
        return EXIT_UNREACHABLE;
    /* '+': options end at the subcommand, so "set mem_limit -1" passes -1 through. */
    while ((opt = getopt_long(argc, argv, "+s:bJhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            sockets[nsockets++] = optarg;
            break;
        case 'b':
            opt_bytes = true;
            break;
        case 'J':
            opt_json = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("uzramctl from uzram %s (ctl protocol %d)\n", UZ_VERSION_STRING, UZ_CTL_PROTO);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *cmd = optind < argc ? argv[optind] : NULL;
    int nargs = cmd ? argc - optind - 1 : 0;
    char **args = argv + optind + 1;
    if (cmd && !((!strcmp(cmd, "get") && nargs == 1) || (!strcmp(cmd, "set") && nargs >= 2) ||
                 (!strcmp(cmd, "list") && nargs == 0))) {
        warn(!strcmp(cmd, "get") || !strcmp(cmd, "set") || !strcmp(cmd, "list")
                 ? "%s: wrong number of arguments"
                 : "unknown command '%s'",
             cmd);
        usage(stderr);
        return EXIT_USAGE;
    }

    glob_t g = {0};
    if (!nsockets) {
        const char *env = getenv("UZRAMCTL_SOCKET");
        if (env && *env) {
            sockets[nsockets++] = (char *)env;
        } else if (glob(DEFAULT_GLOB, 0, NULL, &g) == 0) {
            free(sockets);
            sockets = g.gl_pathv;
            nsockets = (int)g.gl_pathc;
        }
    }
    int status;
    if (!cmd) {
        status = nsockets ? cmd_table(sockets, nsockets) : 0; /* no devices: empty, like zramctl */
        if (!nsockets && opt_json)
            printf("{\n   \"uzramctl\": []\n}\n");
    } else if (nsockets != 1) {
        warn(nsockets ? "%s: several devices; choose one with --socket"
                      : "%s: no device; give --socket PATH or set UZRAMCTL_SOCKET",
             cmd);
        status = nsockets ? EXIT_USAGE : EXIT_UNREACHABLE;
    } else {
        struct conn c;
        if (conn_open(&c, sockets[0]) < 0) {
            status = EXIT_UNREACHABLE;
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
