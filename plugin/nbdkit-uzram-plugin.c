// SPDX-License-Identifier: MIT
/*
 * nbdkit-uzram-plugin.c - serves one uzram compressed page device (struct uz_dev) over NBD.
 *
 *   nbdkit uzram size=1G [algorithm=lz4] [level=N] [mem_limit=SIZE] [workers=N] [ctl=SOCKET]
 *
 * nbdkit brings the protocol (handshake, structured replies, TLS, multi-conn); this file maps
 * each NBD command onto the public dev API. Every connection shares the one device created in
 * .after_fork, so the thread model is PARALLEL and multi-conn is safe: a write is visible to
 * every connection once its reply is sent (the device has no cache to flush).
 *
 *   pread/pwrite   uz_dev_pread; whole pages by uz_dev_pwrite, or with workers=N by the
 *                  device's workers (the reply waits for all of them, so FUA needs nothing
 *                  more), partial pages by uz_dev_pwrite (an atomic read-modify-write)
 *   trim           uz_dev_discard: whole pages become holes, partial pages are left alone
 *   zero           zeros in partial pages; whole pages are discarded (may_trim) or stored as
 *                  same-filled zero pages, which hold no pool memory; always fast
 *   extents        uz_dev_page_state: unwritten/discarded -> hole|zero, zero page -> zero
 *   cache          a no-op: everything is in memory already
 *
 * The export is `size` bytes; the device is that rounded up to whole pages. ctl=SOCKET starts
 * plugin_ctl.c's attribute server (uzramctl's peer).
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <uzram/uzram.h>

#include "plugin_ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Largest request we invite (nbdkit itself caps payloads at 64 MiB). */
#define UZ_NBD_MAX_BLOCK (32u << 20)
/* At most this many extents per block-status reply: clients ask again for the rest. */
#define UZ_NBD_MAX_EXTENTS 4096

static struct {
    int64_t size; /* -1 until size= is given */
    const char *algorithm;
    int level;
    uint64_t mem_limit;
    unsigned workers;
    char *ctl_path; /* absolute, or NULL */
} cfg = {.size = -1, .algorithm = "lz4"};

static struct uz_dev *dev;
static struct uz_plugin_ctl *ctl;

/* Two pages: a zero request with no whole page in it spans at most 8190 bytes. */
static const uint8_t zero_page[2 * UZ_PAGE_SIZE] __attribute__((aligned(64)));

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

static struct uz_dev_config dev_config(uint64_t disksize, unsigned workers)
{
    return (struct uz_dev_config){.disksize = disksize,
                                  .algorithm = cfg.algorithm,
                                  .level = cfg.level,
                                  .mem_limit = cfg.mem_limit,
                                  .workers = workers};
}

static int uzram_config_complete(void)
{
    if (cfg.size == -1) {
        nbdkit_error("you must give the disk size: size=SIZE (e.g. size=1G)");
        return -1;
    }
    /* Check the algorithm and level now, while errors still reach the user: the real device is
     * created in .after_fork because its workers are threads. */
    struct uz_dev_config c = dev_config(UZ_PAGE_SIZE, 0);
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
    uz_dev_destroy(probe);
    return 0;
}

#define uzram_config_help                                                                          \
    "size=<SIZE>           (required) Disk size, with K/M/G/T suffixes (e.g. 1G).\n"               \
    "algorithm=<ALGO>      Compressor: lz4 (default), lz4hc, zstd, lzo, deflate.\n"                \
    "level=<N>             Compression level (0: the algorithm's default; lz4: acceleration).\n"   \
    "mem_limit=<SIZE>      Most memory the compressed pages may use; writes past it fail\n"        \
    "                      with ENOSPC (default 0: no limit).\n"                                   \
    "workers=<N>           Compression threads per device (default 0: compress in nbdkit's\n"      \
    "                      own request threads).\n"                                                \
    "ctl=<SOCKET>          Serve the device's zram attributes on this Unix socket (uzramctl)."

static void uzram_dump_plugin(void)
{
    printf("uzram_version=%s\n", UZ_VERSION_STRING);
    printf("uzram_algorithms=");
    for (const char *const *a = uz_comp_algorithms(); *a; a++)
        printf("%s%s", *a, a[1] ? " " : "\n");
    printf("uzram_page_size=%u\n", UZ_PAGE_SIZE);
    printf("uzram_keys=size algorithm level mem_limit workers ctl\n");
    printf("uzram_key_size=disk size in bytes, K/M/G/T suffixes (required; magic key)\n");
    printf("uzram_key_algorithm=compressor (default lz4)\n");
    printf("uzram_key_level=compression level (default 0: the algorithm's own)\n");
    printf("uzram_key_mem_limit=pool memory limit, K/M/G/T suffixes (default 0: none)\n");
    printf("uzram_key_workers=compression threads (default 0: inline)\n");
    printf("uzram_key_ctl=Unix socket path for uzramctl (default: none)\n");
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
    struct uz_dev_config c = dev_config(device_bytes(), cfg.workers);
    int rc = uz_dev_create(&c, &dev);
    if (rc < 0) {
        nbdkit_error("cannot create the device: %s", errdesc(-rc));
        return -1;
    }
    if (ctl) {
        rc = uz_plugin_ctl_start(ctl, dev);
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
    return NBDKIT_HANDLE_NOT_NEEDED;
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
    /* nbdkit mallocs a buffer per request (nbdcopy sends 256 KiB); glibc's sliding mmap
     * threshold soon keeps such buffers in per-thread arenas, resident for good. A memory
     * saving device wants them returned: fix the thresholds (which stops the sliding). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024);
}

/* Writes len bytes (0 < len < 4096) at byte `off` of page `index`: the device
 * read-modify-writes the page atomically, so disjoint partial writes to one page (e.g. from two
 * connections) never lose each other's bytes. */
static int write_partial(uint64_t index, const uint8_t *buf, size_t off, size_t len)
{
    ssize_t rc = uz_dev_pwrite(dev, buf, len, index * UZ_PAGE_SIZE + off);
    return rc < 0 ? (int)rc : 0;
}

/* A write whose whole pages the device's workers compress. */
struct pending {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t left; /* queued pages not yet done, plus one while still queueing */
    int err;       /* the first error, or 0 */
};

static void page_done(void *arg, int result)
{
    struct pending *p = arg;
    pthread_mutex_lock(&p->lock);
    if (result && !p->err)
        p->err = result;
    if (--p->left == 0)
        pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Stores whole pages [first, first + n) from buf through the workers; returns when all are
 * stored. */
static int write_pages_async(const uint8_t *buf, uint64_t first, uint64_t n)
{
    struct pending p = {
        .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .left = n + 1};
    for (uint64_t i = 0; i < n; i++) {
        int rc = uz_dev_write_page_async(dev, first + i, buf + i * UZ_PAGE_SIZE, page_done, &p);
        if (rc < 0) { /* done will not be called for this page nor for those after it */
            pthread_mutex_lock(&p.lock);
            p.left -= n - i;
            if (!p.err)
                p.err = rc;
            pthread_mutex_unlock(&p.lock);
            break;
        }
    }
    pthread_mutex_lock(&p.lock);
    p.left--;
    while (p.left)
        pthread_cond_wait(&p.cond, &p.lock);
    int rc = p.err;
    pthread_mutex_unlock(&p.lock);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.lock);
    return rc;
}

/* Writes [offset, offset + count) from buf: the partial head and tail pages by
 * read-modify-write, the whole pages in between inline or through the workers.
 * @return : 0 or -errno. */
static int write_range(const uint8_t *buf, uint64_t count, uint64_t offset)
{
    if (offset > uz_dev_disksize(dev) || count > uz_dev_disksize(dev) - offset)
        return -EINVAL;
    int rc = 0;
    size_t in = offset % UZ_PAGE_SIZE;
    if (in && count) { /* head */
        size_t n = count < UZ_PAGE_SIZE - in ? count : UZ_PAGE_SIZE - in;
        rc = write_partial(offset / UZ_PAGE_SIZE, buf, in, n);
        buf += n;
        offset += n;
        count -= n;
    }
    uint64_t pages = count / UZ_PAGE_SIZE;
    if (rc == 0 && pages) {
        if (cfg.workers && pages > 1) {
            rc = write_pages_async(buf, offset / UZ_PAGE_SIZE, pages);
        } else {
            ssize_t w = uz_dev_pwrite(dev, buf, pages * UZ_PAGE_SIZE, offset); /* aligned */
            rc = w < 0 ? (int)w : 0;
        }
        buf += pages * UZ_PAGE_SIZE;
        offset += pages * UZ_PAGE_SIZE;
        count -= pages * UZ_PAGE_SIZE;
    }
    if (rc == 0 && count) /* tail */
        rc = write_partial(offset / UZ_PAGE_SIZE, buf, 0, count);
    return rc;
}

static int uzram_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
                        uint32_t flags)
{
    /* FUA needs nothing: when we return, every page is stored. */
    int rc = write_range(buf, count, offset);
    return rc < 0 ? fail("pwrite", count, offset, rc) : 0;
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
    uint64_t end = offset + count;
    uint64_t first = (offset + UZ_PAGE_SIZE - 1) / UZ_PAGE_SIZE; /* first whole page */
    uint64_t last = end / UZ_PAGE_SIZE;                          /* one past the last */
    if (end > uz_dev_disksize(dev))
        return fail("zero", count, offset, -EINVAL);
    if (first >= last) { /* no whole page: at most 8190 bytes over one or two pages */
        int rc = write_range(zero_page, count, offset);
        return rc < 0 ? fail("zero", count, offset, rc) : 0;
    }
    int rc = 0;
    if (offset < first * UZ_PAGE_SIZE)
        rc = write_range(zero_page, first * UZ_PAGE_SIZE - offset, offset);
    if (rc == 0 && end > last * UZ_PAGE_SIZE)
        rc = write_range(zero_page, end - last * UZ_PAGE_SIZE, last * UZ_PAGE_SIZE);
    if (rc == 0 && (flags & NBDKIT_FLAG_MAY_TRIM)) {
        rc = uz_dev_discard(dev, first * UZ_PAGE_SIZE, (last - first) * UZ_PAGE_SIZE);
    } else {
        /* Allocated zeros: a same-filled page costs a slot and no pool memory. */
        for (uint64_t i = first; rc == 0 && i < last; i++)
            if (uz_dev_page_state(dev, i) != UZ_DEV_PAGE_ZERO)
                rc = uz_dev_write_page(dev, i, zero_page);
    }
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
    uint64_t disksize = uz_dev_disksize(dev);
    uint64_t end = offset + count;
    if (end > disksize)
        return fail("extents", count, offset, -EINVAL);
    if (count == 0)
        return 0;
    uint64_t index = offset / UZ_PAGE_SIZE;
    uint64_t last = (end + UZ_PAGE_SIZE - 1) / UZ_PAGE_SIZE;
    unsigned added = 0;
    while (index < last) {
        int state = uz_dev_page_state(dev, index);
        if (state < 0)
            return fail("extents", count, offset, state);
        uint64_t run = index + 1;
        while (run < last && uz_dev_page_state(dev, run) == state)
            run++;
        if (nbdkit_add_extent(extents, index * UZ_PAGE_SIZE, (run - index) * UZ_PAGE_SIZE,
                              extent_type(state)) == -1)
            return -1;
        index = run;
        if ((flags & NBDKIT_FLAG_REQ_ONE) || ++added == UZ_NBD_MAX_EXTENTS)
            break;
    }
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
    .open = uzram_open,
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
