// SPDX-License-Identifier: MIT
/*
 * nbdkit-uzram-plugin.c - serves one uzram compressed page device (struct uz_dev) over NBD.
 *
 *   nbdkit uzram size=1G [algorithm=lz4] [level=N] [mem_limit=SIZE] [workers=N] [ctl=SOCKET]
 *                        [parallel=auto|on|off]
 *
 * nbdkit brings the protocol (handshake, structured replies, TLS, multi-conn); this file maps
 * each NBD command onto one call of the public dev API, as nbdkit's memory plugin does. Every
 * connection shares the one device created in .after_fork, so multi-conn is safe: a write is
 * visible to every connection once its reply is sent (the device has no cache to flush).
 *
 *   pread/pwrite   uz_dev_pread / uz_dev_pwrite (partial pages: an atomic read-modify-write);
 *                  compressed in nbdkit's request thread (workers=N, which queued whole pages
 *                  to the device's zramd threads, measured no faster: docs/nbd.md; the key is
 *                  still accepted and ignored)
 *   trim           uz_dev_discard: whole pages become holes, partial pages are left alone
 *   zero           uz_dev_zero: zeros in partial pages; whole pages become holes (may_trim) or
 *                  same-filled zero pages, which hold no pool memory; always fast
 *   extents        uz_dev_extents: unwritten/discarded -> hole|zero, zero page -> zero
 *   cache          a no-op: everything is in memory already
 *
 * Thread model: PARALLEL, except on the nbdkit versions that abort when a client disconnects
 * with several requests of one connection in flight (parallel=auto, below): there
 * SERIALIZE_REQUESTS, one request at a time per connection, connections still in parallel.
 *
 * The export is `size` bytes; the device is that rounded up to whole pages. ctl=SOCKET starts
 * plugin_ctl.c's attribute server (uzramctl's peer); its `set reset` is refused with EBUSY while
 * any NBD connection is open, as the kernel refuses to reset an open zram device.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <uzram/uzram.h>

#include "plugin_ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Largest request we invite (nbdkit itself caps payloads at 64 MiB). */
#define UZ_NBD_MAX_BLOCK (32u << 20)
/* At most this many extents per block-status reply: clients ask again for the rest. */
#define UZ_NBD_MAX_EXTENTS 4096
/* A reset waits this long for connections that are closing (a client that just disconnected
 * is closed by nbdkit a moment later) before it answers EBUSY. */
#define UZ_NBD_RESET_GRACE_MS 250

/* nbdkit 1.32.x (at least 1.32.5, Debian 12's) aborts in raw_send_socket ("Assertion 'sock >=
 * 0' failed") when a client drops its connection while several of its requests are in flight:
 * a second request thread of the connection sends a reply on the socket the first one just
 * closed. Serializing the requests of each connection avoids it (nbdkit -t 1 and the
 * noparallel filter survive 2000 abrupt disconnects). Reproduced on 1.32.5; the versions after
 * 1.32 were not available to test, so every version before 1.34, the next stable branch, is
 * treated as affected. nbdkit 1.32 has no call telling the running version, so this is the
 * version of the nbdkit headers the plugin was built with (the same package on distributions). */
#define UZ_NBDKIT_ABORTS_ON_DISCONNECT (NBDKIT_VERSION_MAJOR == 1 && NBDKIT_VERSION_MINOR < 34)

enum parallel_mode { PARALLEL_AUTO, PARALLEL_ON, PARALLEL_OFF };

static struct {
    int64_t size; /* -1 until size= is given */
    const char *algorithm;
    int level;
    uint64_t mem_limit;
    unsigned workers;
    char *ctl_path; /* absolute, or NULL */
    enum parallel_mode parallel;
    /* Tiering (zram's attributes, applied in this order to every device made): */
    char *backing_dev;        /* absolute path, or NULL */
    int compressed_writeback; /* -1: not given */
    char *recomp_algorithm;   /* the attribute's text ("algo=NAME [priority=N]"), or NULL */
    char *policy;             /* the policy attribute's text (commas made spaces), or NULL */
    char object_pages[8];     /* object_pages (multi-page objects), or "" */
} cfg = {.size = -1, .algorithm = "lz4", .parallel = PARALLEL_AUTO, .compressed_writeback = -1};

static struct uz_dev *dev;
static struct uz_plugin_ctl *ctl;

/* Open NBD handles, for the ctl socket's reset. Lock order: handles_lock first, then the
 * device's own locks (a reset runs under it); nothing takes handles_lock under a device lock.
 * Its holder may sleep (a reset frees the whole device; the reset waits on handles_closed). */
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t handles_closed; /* CLOCK_MONOTONIC; signalled when open_handles hits 0 */
static unsigned open_handles;         /* .open calls minus .close calls */

/* strerror() is neither thread-safe nor lock-free (it translates, taking glibc's locale lock;
 * under ASan that lock was left corrupted): request threads use the untranslated text. */
static const char *errdesc(int err)
{
    const char *d = strerrordesc_np(err);
    return d ? d : "Unknown error";
}

static void uzram_unload(void)
{
    free(cfg.ctl_path);
    free(cfg.backing_dev);
    free(cfg.recomp_algorithm);
    free(cfg.policy);
}

/* Keeps a copy of `value` in *slot (a repeated key: the last wins). */
static int keep(char **slot, const char *value)
{
    char *v = strdup(value);
    if (!v) {
        nbdkit_error("strdup: %s", errdesc(errno));
        return -1;
    }
    free(*slot);
    *slot = v;
    return 0;
}

static int uzram_config(const char *key, const char *value)
{
    if (!strcmp(key, "size")) {
        cfg.size = nbdkit_parse_size(value);
        if (cfg.size == -1)
            return -1;
        if (cfg.size == 0) {
            nbdkit_error("size must be at least 1 byte");
            return -1;
        }
    } else if (!strcmp(key, "algorithm")) {
        cfg.algorithm = value;
    } else if (!strcmp(key, "level")) {
        if (nbdkit_parse_int("level", value, &cfg.level) == -1)
            return -1;
    } else if (!strcmp(key, "mem_limit")) {
        int64_t v = nbdkit_parse_size(value);
        if (v == -1)
            return -1;
        cfg.mem_limit = (uint64_t)v;
    } else if (!strcmp(key, "workers")) {
        if (nbdkit_parse_unsigned("workers", value, &cfg.workers) == -1)
            return -1;
        if (cfg.workers > 256) {
            nbdkit_error("workers=%u: at most 256", cfg.workers);
            return -1;
        }
        nbdkit_debug("workers=%u: ignored (writes compress in the request threads)", cfg.workers);
    } else if (!strcmp(key, "parallel")) {
        if (!strcmp(value, "auto")) {
            cfg.parallel = PARALLEL_AUTO;
        } else {
            int b = nbdkit_parse_bool(value);
            if (b == -1)
                return -1;
            cfg.parallel = b ? PARALLEL_ON : PARALLEL_OFF;
        }
    } else if (!strcmp(key, "backing_dev")) {
        free(cfg.backing_dev);
        cfg.backing_dev = nbdkit_absolute_path(value); /* nbdkit may chdir("/") */
        if (!cfg.backing_dev)
            return -1;
    } else if (!strcmp(key, "compressed_writeback")) {
        if ((cfg.compressed_writeback = nbdkit_parse_bool(value)) == -1)
            return -1;
    } else if (!strcmp(key, "recomp_algorithm")) {
        /* A bare name is priority 1; "algo=NAME priority=N" is passed as it is. */
        char buf[256];
        if (snprintf(buf, sizeof(buf), strchr(value, '=') ? "%s" : "algo=%s", value) >=
            (int)sizeof(buf)) {
            nbdkit_error("recomp_algorithm=%s: too long", value);
            return -1;
        }
        if (keep(&cfg.recomp_algorithm, buf) == -1)
            return -1;
    } else if (!strcmp(key, "object_pages")) {
        unsigned n;
        if (nbdkit_parse_unsigned("object_pages", value, &n) == -1)
            return -1;
        if (!n || n > 16 || (n & (n - 1))) {
            nbdkit_error("object_pages=%s: 1, 2, 4, 8 or 16", value);
            return -1;
        }
        snprintf(cfg.object_pages, sizeof(cfg.object_pages), "%u", n);
    } else if (!strcmp(key, "policy")) {
        /* policy=interval=60,recompress_age=7200,...: the attribute's keys, comma-separated. */
        if (keep(&cfg.policy, value) == -1)
            return -1;
        for (char *c = cfg.policy; *c; c++)
            if (*c == ',')
                *c = ' ';
    } else if (!strcmp(key, "ctl")) {
        free(cfg.ctl_path);
        cfg.ctl_path = nbdkit_absolute_path(value);
        if (!cfg.ctl_path)
            return -1;
    } else {
        nbdkit_error("unknown parameter '%s' (see nbdkit uzram --help)", key);
        return -1;
    }
    return 0;
}

static uint64_t device_bytes(void)
{
    return ((uint64_t)cfg.size + UZ_PAGE_SIZE - 1) / UZ_PAGE_SIZE * UZ_PAGE_SIZE;
}

static struct uz_dev_config dev_config(uint64_t disksize)
{
    return (struct uz_dev_config){.disksize = disksize,
                                  .algorithm = cfg.algorithm,
                                  .level = cfg.level,
                                  .mem_limit = cfg.mem_limit};
}

/* Applies the tiering keys to a new device, in the order a zram script writes them. */
static int tier_apply(struct uz_dev *d)
{
    const struct {
        const char *attr, *key, *value;
    } steps[] = {
        {"object_pages", "object_pages", cfg.object_pages[0] ? cfg.object_pages : NULL},
        {"backing_dev", "backing_dev", cfg.backing_dev},
        {"compressed_writeback", "compressed_writeback",
         cfg.compressed_writeback < 0 ? NULL
         : cfg.compressed_writeback   ? "1"
                                      : "0"},
        {"recomp_algorithm", "recomp_algorithm", cfg.recomp_algorithm},
        {"policy", "policy", cfg.policy},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (!steps[i].value)
            continue;
        int rc = uz_dev_attr_write(d, steps[i].attr, steps[i].value);
        if (rc < 0) {
            nbdkit_error("%s=%s: %s", steps[i].key, steps[i].value, errdesc(-rc));
            return -1;
        }
    }
    return 0;
}

static int uzram_config_complete(void)
{
    if (cfg.size == -1) {
        nbdkit_error("you must give the disk size: size=SIZE (e.g. size=1G)");
        return -1;
    }
    /* Check the algorithm and level now, while errors still reach the user: the real device is
     * created in .after_fork, after nbdkit forks (a device may start threads). */
    struct uz_dev_config c = dev_config(UZ_PAGE_SIZE);
    struct uz_dev *probe;
    int rc = uz_dev_create(&c, &probe);
    if (rc == -ENOENT) {
        nbdkit_error("algorithm=%s: unknown algorithm", cfg.algorithm);
        return -1;
    }
    if (rc == -EINVAL) {
        nbdkit_error("level=%d: out of range for %s", cfg.level, cfg.algorithm);
        return -1;
    }
    if (rc < 0) {
        nbdkit_error("cannot create the device: %s", errdesc(-rc));
        return -1;
    }
    /* The tiering keys too (the backing file is created here, as the real device would). */
    rc = tier_apply(probe);
    uz_dev_destroy(probe);
    return rc;
}

#define uzram_config_help                                                                          \
    "size=<SIZE>           (required) Disk size, with K/M/G/T suffixes (e.g. 1G).\n"               \
    "algorithm=<ALGO>      Compressor: lz4 (default), lz4hc, zstd, lzo, deflate.\n"                \
    "level=<N>             Compression level (0: the algorithm's default; lz4: acceleration).\n"   \
    "mem_limit=<SIZE>      Most memory the compressed pages may use; writes past it fail\n"        \
    "                      with ENOSPC (default 0: no limit).\n"                                   \
    "workers=<N>           Ignored (kept for old command lines): pages are compressed in\n"        \
    "                      nbdkit's own request threads.\n"                                        \
    "ctl=<SOCKET>          Serve the device's zram attributes on this Unix socket (uzramctl).\n"   \
    "parallel=auto|on|off  Requests of one connection in parallel (on) or one at a time (off);\n"  \
    "                      auto (default): off on nbdkit < 1.34, which can abort otherwise.\n"     \
    "backing_dev=<PATH>    Write-back store: a file (created, grown sparse) or block device.\n"    \
    "compressed_writeback=<BOOL> Write compressed objects back, packed (default off).\n"           \
    "recomp_algorithm=<ALGO> Secondary compressor for recompress (priority 1), or the\n"           \
    "                      attribute's own text: \"algo=zstd priority=2\".\n"                      \
    "object_pages=<N>      Compress aligned runs of N pages (1, 2, 4, 8, 16) as one object.\n"     \
    "policy=<K=V,...>      The tiering policy, comma-separated (interval=60,recompress_age=\n"     \
    "                      7200,writeback_age=72000,...; see uzram's policy attribute)."

static void uzram_dump_plugin(void)
{
    printf("uzram_version=%s\n", UZ_VERSION_STRING);
    printf("uzram_algorithms=");
    for (const char *const *a = uz_comp_algorithms(); *a; a++)
        printf("%s%s", *a, a[1] ? " " : "\n");
    printf("uzram_page_size=%u\n", UZ_PAGE_SIZE);
    printf("uzram_keys=size algorithm level mem_limit workers ctl parallel backing_dev "
           "compressed_writeback recomp_algorithm policy\n");
    printf("uzram_key_size=disk size in bytes, K/M/G/T suffixes (required; magic key)\n");
    printf("uzram_key_algorithm=compressor (default lz4)\n");
    printf("uzram_key_level=compression level (default 0: the algorithm's own)\n");
    printf("uzram_key_mem_limit=pool memory limit, K/M/G/T suffixes (default 0: none)\n");
    printf("uzram_key_workers=ignored: pages compress in the request threads\n");
    printf("uzram_key_ctl=Unix socket path for uzramctl (default: none)\n");
    printf("uzram_key_parallel=auto|on|off: parallel requests per connection (default auto)\n");
    printf("uzram_key_backing_dev=write-back file or block device (default: none)\n");
    printf("uzram_key_compressed_writeback=write back compressed objects, packed (default 0)\n");
    printf("uzram_key_recomp_algorithm=secondary compressor NAME, or algo=NAME priority=N\n");
    printf("uzram_key_policy=tiering policy keys, comma-separated (default: off)\n");
    printf("uzram_nbdkit_aborts_on_disconnect=%d\n", UZ_NBDKIT_ABORTS_ON_DISCONNECT);
}

/* PARALLEL or SERIALIZE_REQUESTS (see UZ_NBDKIT_ABORTS_ON_DISCONNECT); nbdkit takes the
 * stricter of this and THREAD_MODEL. Either way connections run in parallel with each other. */
static int uzram_thread_model(void)
{
    bool parallel = cfg.parallel == PARALLEL_ON ||
                    (cfg.parallel == PARALLEL_AUTO && !UZ_NBDKIT_ABORTS_ON_DISCONNECT);
    return parallel ? NBDKIT_THREAD_MODEL_PARALLEL : NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS;
}

/* true when `value` is what the kernel's reset_store() acts on: kstrtoul(value, 0) != 0. */
static bool reset_requested(const char *value)
{
    if (*value == '+')
        value++;
    if (*value < '0' || *value > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 0);
    if (*end == '\n')
        end++;
    return !errno && !*end && v != 0;
}

/* The ctl socket's set requests: reset is refused with EBUSY while NBD handles are open (after
 * a short grace for those that are closing), and runs under handles_lock, so that no connection
 * opens meanwhile. Bad values still get the device's own error (EINVAL). */
static int ctl_write(void *arg, struct uz_dev *d, const char *name, const char *value)
{
    if (strcmp(name, "reset") || !reset_requested(value))
        return uz_dev_attr_write(d, name, value);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += UZ_NBD_RESET_GRACE_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&handles_lock);
    while (open_handles && pthread_cond_timedwait(&handles_closed, &handles_lock, &until) == 0)
        ;
    int rc = open_handles ? -EBUSY : uz_dev_attr_write(d, name, value);
    pthread_mutex_unlock(&handles_lock);
    return rc;
}

static int uzram_get_ready(void)
{
    if (cfg.ctl_path) {
        /* Bind now so that a bad path is reported before nbdkit forks. */
        int rc = uz_plugin_ctl_bind(cfg.ctl_path, &ctl);
        if (rc < 0) {
            nbdkit_error("ctl=%s: %s", cfg.ctl_path, errdesc(-rc));
            return -1;
        }
    }
    return 0;
}

static int uzram_after_fork(void)
{
    struct uz_dev_config c = dev_config(device_bytes());
    int rc = uz_dev_create(&c, &dev);
    if (rc < 0) {
        nbdkit_error("cannot create the device: %s", errdesc(-rc));
        return -1;
    }
    if (tier_apply(dev) == -1)
        return -1;
    if (ctl) {
        rc = uz_plugin_ctl_start(ctl, dev, ctl_write, NULL);
        if (rc < 0) {
            nbdkit_error("ctl=%s: cannot start its thread: %s", cfg.ctl_path, errdesc(-rc));
            return -1;
        }
    }
    return 0;
}

static void uzram_cleanup(void)
{
    uz_plugin_ctl_stop(ctl); /* before the device it serves */
    ctl = NULL;
    uz_dev_destroy(dev);
    dev = NULL;
}

static void *uzram_open(int readonly)
{
    pthread_mutex_lock(&handles_lock);
    open_handles++;
    pthread_mutex_unlock(&handles_lock);
    return NBDKIT_HANDLE_NOT_NEEDED;
}

static void uzram_close(void *handle)
{
    pthread_mutex_lock(&handles_lock);
    if (--open_handles == 0)
        pthread_cond_broadcast(&handles_closed);
    pthread_mutex_unlock(&handles_lock);
}

static int64_t uzram_get_size(void *handle)
{
    /* The configured size, unless uzramctl reset or resized the device since. */
    uint64_t disksize = uz_dev_disksize(dev);
    return disksize == device_bytes() ? cfg.size : (int64_t)disksize;
}

static const char *uzram_export_description(void *handle)
{
    return nbdkit_printf_intern("uzram compressed RAM disk (%s)", cfg.algorithm);
}

static int uzram_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
    *minimum = 1;
    *preferred = UZ_PAGE_SIZE;
    *maximum = UZ_NBD_MAX_BLOCK;
    return 0;
}

static int uzram_can_true(void *handle)
{
    return 1;
}

static int uzram_is_rotational(void *handle)
{
    return 0;
}

static int uzram_can_fua(void *handle)
{
    return NBDKIT_FUA_NATIVE;
}

static int uzram_can_cache(void *handle)
{
    return NBDKIT_CACHE_NATIVE;
}

/* Reports a library error to nbdkit, which sends the NBD error matching `-rc`. */
static int fail(const char *what, uint32_t count, uint64_t offset, int rc)
{
    int err = -rc;
    if (err != ENOSPC && err != EINVAL && err != ENOMEM && err != EIO)
        err = EIO;
    nbdkit_error("%s count=%" PRIu32 " offset=%" PRIu64 ": %s", what, count, offset, errdesc(-rc));
    nbdkit_set_error(err);
    return -1;
}

static int uzram_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
    ssize_t rc = uz_dev_pread(dev, buf, count, offset);
    return rc < 0 ? fail("pread", count, offset, (int)rc) : 0;
}

static void uzram_load(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&handles_closed, &ca);
    pthread_condattr_destroy(&ca);
    /* nbdkit mallocs a buffer per request (nbdcopy sends 256 KiB); glibc's sliding mmap
     * threshold soon keeps such buffers in per-thread arenas, resident for good. A memory
     * saving device wants them returned: fix the thresholds (which stops the sliding). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024);
}

static int uzram_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
                        uint32_t flags)
{
    /* FUA needs nothing: when we return, every page is stored. */
    ssize_t rc = uz_dev_pwrite(dev, buf, count, offset);
    return rc < 0 ? fail("pwrite", count, offset, (int)rc) : 0;
}

static int uzram_flush(void *handle, uint32_t flags)
{
    int rc = uz_dev_flush(dev);
    return rc < 0 ? fail("flush", 0, 0, rc) : 0;
}

static int uzram_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    int rc = uz_dev_discard(dev, offset, count);
    return rc < 0 ? fail("trim", count, offset, rc) : 0;
}

static int uzram_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    /* Never slower than the write it replaces, so NBDKIT_FLAG_FAST_ZERO needs no check. */
    unsigned zf = (flags & NBDKIT_FLAG_MAY_TRIM) ? UZ_DEV_ZERO_TRIM : 0;
    int rc = uz_dev_zero(dev, offset, count, zf);
    return rc < 0 ? fail("zero", count, offset, rc) : 0;
}

static int uzram_cache(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    if (flags) {
        nbdkit_error("cache: unknown flags %#" PRIx32, flags);
        nbdkit_set_error(EINVAL);
        return -1;
    }
    return 0;
}

static uint32_t extent_type(int state)
{
    return state == UZ_DEV_PAGE_UNWRITTEN ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO
           : state == UZ_DEV_PAGE_ZERO    ? NBDKIT_EXTENT_ZERO
                                          : 0;
}

static int uzram_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                         struct nbdkit_extents *extents)
{
    struct uz_dev_extent ext[64];
    uint64_t end = offset + count;
    unsigned added = 0;
    size_t max = (flags & NBDKIT_FLAG_REQ_ONE) ? 1 : sizeof(ext) / sizeof(ext[0]);
    do {
        int n = uz_dev_extents(dev, offset, end - offset, ext, max);
        if (n < 0)
            return fail("extents", count, offset, n);
        for (int i = 0; i < n; i++)
            if (nbdkit_add_extent(extents, ext[i].offset, ext[i].length,
                                  extent_type(ext[i].state)) == -1)
                return -1;
        if (n == 0)
            break;
        offset = ext[n - 1].offset + ext[n - 1].length;
        added += (unsigned)n;
    } while (offset < end && max > 1 && added < UZ_NBD_MAX_EXTENTS);
    return 0;
}

static struct nbdkit_plugin plugin = {
    .name = "uzram",
    .longname = "uzram compressed RAM disk",
    .version = UZ_VERSION_STRING,
    .description = "A RAM disk that stores compressed pages, like Linux zram",
    .load = uzram_load,
    .unload = uzram_unload,
    .config = uzram_config,
    .config_complete = uzram_config_complete,
    .config_help = uzram_config_help,
    .magic_config_key = "size",
    .dump_plugin = uzram_dump_plugin,
    .get_ready = uzram_get_ready,
    .after_fork = uzram_after_fork,
    .cleanup = uzram_cleanup,
    .thread_model = uzram_thread_model,
    .open = uzram_open,
    .close = uzram_close,
    .get_size = uzram_get_size,
    .export_description = uzram_export_description,
    .block_size = uzram_block_size,
    .can_write = uzram_can_true,
    .can_flush = uzram_can_true,
    .is_rotational = uzram_is_rotational,
    .can_trim = uzram_can_true,
    .can_zero = uzram_can_true,
    .can_fast_zero = uzram_can_true,
    .can_fua = uzram_can_fua,
    .can_multi_conn = uzram_can_true,
    .can_extents = uzram_can_true,
    .can_cache = uzram_can_cache,
    .pread = uzram_pread,
    .pwrite = uzram_pwrite,
    .flush = uzram_flush,
    .trim = uzram_trim,
    .zero = uzram_zero,
    .cache = uzram_cache,
    .extents = uzram_extents,
    .errno_is_preserved = 0,
};

struct nbdkit_plugin *plugin_init(void); /* defined by the macro below */
NBDKIT_REGISTER_PLUGIN(plugin)
