/* SPDX-License-Identifier: MIT */
/*
 * uzram-run - runs an unmodified, dynamically linked program with compressed swap for its heap.
 *
 *   uzram-run [--limit SIZE] [--algorithm NAME] [--size SIZE] [--stats] [--no-children]
 *             [--allow-user-only] [--] PROGRAM [ARGS...]
 *
 * Checks what can be checked before the program runs -- the userfaultfd mode
 * (uz_region_probe(): a userfaultfd opened and closed), that the target is dynamically linked
 * (PT_INTERP), not setuid/setgid and without file capabilities (the loader ignores LD_PRELOAD for
 * those) -- then puts libuzram-preload.so first in LD_PRELOAD, passes the settings as UZRAM_*
 * variables and execs the program, so its exit status is the program's own. The preload does the
 * rest (src/preload/).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <uzram/region.h>

#include "preload_sys.h"
#include "util.h"

#ifndef UZ_PRELOAD_LIBDIR
#define UZ_PRELOAD_LIBDIR "lib"
#endif
#ifndef UZ_PRELOAD_PATH
#define UZ_PRELOAD_PATH "/usr/local/lib/libuzram-preload.so"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: uzram-run [--limit SIZE] [--algorithm NAME] [--size SIZE] [--stats]\n"
               "                 [--no-children] [--allow-user-only] [--] PROGRAM [ARGS...]\n"
               "  --limit SIZE       resident limit of the program's heap (default: half of the\n"
               "                     memory the process may use)\n"
               "  --size SIZE        address space reserved (default: RAM plus swap)\n"
               "  --algorithm NAME   lz4 (default), zstd, lzo, lzo-rle, deflate\n"
               "  --stats            print one line of statistics on stderr at exit\n"
               "  --no-children      programs it execs run without uzram\n"
               "  --allow-user-only  run even where userfaultfd is user-mode only\n"
               "SIZE: bytes, or with a K, M, G or T suffix.\n");
}

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("uzram-run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(125);
}

/* PROGRAM as execvp would find it. */
static char *resolve(const char *prog)
{
    if (strchr(prog, '/'))
        return strdup(prog);
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char buf[PATH_MAX];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, n ? p : ".", prog);
        if (access(buf, X_OK) == 0)
            return strdup(buf);
        p += n + (e ? 1 : 0);
        if (!e)
            break;
    }
    return NULL;
}

/* 1 if the ELF file has a PT_INTERP (dynamically linked), 0 if not, -1 if not an ELF file. */
static int is_dynamic(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    Elf64_Ehdr eh;
    int res = -1;
    if (pread(fd, &eh, sizeof(eh), 0) == sizeof(eh) && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
        res = 0;
        for (unsigned i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) != sizeof(ph))
                break;
            if (ph.p_type == PT_INTERP) {
                res = 1;
                break;
            }
        }
    }
    close(fd);
    return res;
}

/* The mode without a region (a probe region cost ~2 ms of threads started and stopped). */
static int probe_mode(void)
{
    return uz_region_probe();
}

static const char *find_preload(const char *argv0)
{
    const char *env = getenv("UZRAM_PRELOAD");
    if (env && *env)
        return env;
    static char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 64);
    if (n > 0) {
        buf[n] = 0;
        char *slash = strrchr(buf, '/');
        if (slash) {
            strcpy(slash + 1, "libuzram-preload.so");
            if (access(buf, R_OK) == 0)
                return buf;
            /* an installed tree moved elsewhere (DESTDIR, a relocated prefix) */
            snprintf(slash + 1, sizeof(buf) - (size_t)(slash + 1 - buf),
                     "../" UZ_PRELOAD_LIBDIR "/libuzram-preload.so");
            if (access(buf, R_OK) == 0)
                return buf;
        }
    }
    return UZ_PRELOAD_PATH;
}

static void set_size(const char *name, const char *arg, const char *opt)
{
    uint64_t v;
    if (uz_parse_size(arg, &v) || v == 0)
        die("%s: not a size: '%s' (bytes, or with a K, M, G or T suffix)", opt, arg);
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    setenv(name, buf, 1);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"size", required_argument, NULL, 's'},
        {"algorithm", required_argument, NULL, 'a'},
        {"stats", no_argument, NULL, 'S'},
        {"no-children", no_argument, NULL, 'n'},
        {"allow-user-only", no_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool allow_user_only = false, limit_set = false, size_set = false;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            set_size("UZRAM_LIMIT", optarg, "--limit");
            limit_set = true;
            break;
        case 's':
            set_size("UZRAM_SIZE", optarg, "--size");
            size_set = true;
            break;
        case 'a':
            setenv("UZRAM_ALGORITHM", optarg, 1);
            break;
        case 'S':
            setenv("UZRAM_STATS", "1", 1);
            break;
        case 'n':
            setenv("UZRAM_NO_CHILDREN", "1", 1);
            break;
        case 'u':
            allow_user_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 125;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 125;
    }
    if (!limit_set) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)uzp_default_limit());
        setenv("UZRAM_LIMIT", buf, 1);
    }
    if (!size_set) { /* the default, computed once here rather than in every exec'd image */
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)uzp_default_size());
        setenv("UZRAM_SIZE", buf, 1);
    }

    const char *prog = argv[optind];
    char *path = resolve(prog);
    struct stat sb;
    if (!path || stat(path, &sb) != 0) { /* as env(1): 127 for a program not found */
        fprintf(stderr, "uzram-run: %s: %s\n", prog, path ? strerror(errno) : "command not found");
        return errno == ENOENT || !path ? 127 : 126;
    }
    if (sb.st_mode & (S_ISUID | S_ISGID))
        die("%s is set-user-ID or set-group-ID: the loader ignores LD_PRELOAD for it, so it "
            "cannot run with uzram (run a copy without the bit)",
            path);
    if (getxattr(path, "security.capability", NULL, 0) >= 0)
        die("%s has file capabilities (setcap): the loader ignores LD_PRELOAD for it, so it "
            "cannot run with uzram",
            path);
    int dyn = is_dynamic(path);
    if (dyn == 0)
        die("%s is statically linked: uzram-run needs a dynamically linked program (it works "
            "through LD_PRELOAD)",
            path);
    /* dyn < 0: a script or another format; its interpreter gets the preload. */

    int mode = probe_mode();
    if (mode < 0)
        die("cannot create a userfaultfd region (%s): is userfaultfd enabled in this kernel, "
            "and allowed here (seccomp)?",
            strerror(-mode));
    if (mode == UZ_REGION_MODE_USER_ONLY && !allow_user_only)
        die("userfaultfd is user-mode only for this user, and system calls that touch swapped "
            "out memory would fail (EFAULT). As root, run once: sysctl "
            "vm.unprivileged_userfaultfd=1 "
            "(or give this user read/write access to /dev/userfaultfd); or pass "
            "--allow-user-only to run anyway");

    const char *preload = find_preload(argv[0]);
    if (access(preload, R_OK) != 0)
        die("cannot find %s (set UZRAM_PRELOAD to its path)", preload);
    const char *old = getenv("LD_PRELOAD");
    if (old && *old) {
        size_t n = strlen(preload) + strlen(old) + 2;
        char *v = malloc(n);
        if (!v)
            die("out of memory");
        snprintf(v, n, "%s:%s", preload, old);
        setenv("LD_PRELOAD", v, 1);
    } else {
        setenv("LD_PRELOAD", preload, 1);
    }
    execv(path, &argv[optind]);
    int e = errno;
    fprintf(stderr, "uzram-run: cannot run %s: %s\n", path, strerror(e));
    return e == ENOENT ? 127 : 126;
}
