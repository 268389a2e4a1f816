// SPDX-License-Identifier: MIT
/*
 * dev_attr.c - the device's attributes, with the names and text formats of the kernel's
 * /sys/block/zramN files (drivers/block/zram/zram_drv.c), so scripts written for zram read
 * uzram unchanged. pool_stat is ours: the per-class table zsmalloc shows in debugfs.
 *
 * Attributes the kernel makes write-only but whose value is useful (mem_limit, mem_used_max,
 * algorithm_params) read back here as a plain value; compact and reset stay write-only.
 */
#include "dev_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
    char *buf;
    size_t len, at;
    bool overflow;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->at < o->len ? o->len - o->at : 0;
    int n = vsnprintf(o->buf + (room ? o->at : 0), room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        o->overflow = true;
    o->at += n > 0 ? (size_t)n : 0;
}

static void show_disksize(struct uz_dev *dev, struct out *o)
{
    emit(o, "%llu\n", (unsigned long long)atomic_load(&dev->disksize));
}

static void show_initstate(struct uz_dev *dev, struct out *o)
{
    emit(o, "%u\n", dev->disksize ? 1u : 0u);
}

static void show_comp_algorithm(struct uz_dev *dev, struct out *o)
{
    for (const char *const *a = uz_comp_algorithms(); *a; a++)
        emit(o, strcmp(*a, dev->algorithm) ? "%s " : "[%s] ", *a);
    emit(o, "\n");
}

static void show_algorithm_params(struct uz_dev *dev, struct out *o)
{
    emit(o, "algo=%s level=%d", dev->algorithm, uz_comp_level(dev->comp));
    if (dev->dict_path)
        emit(o, " dict=%s", dev->dict_path);
    emit(o, "\n");
}

static void show_mem_limit(struct uz_dev *dev, struct out *o)
{
    emit(o, "%llu\n", (unsigned long long)(atomic_load(&dev->limit_pages) << UZ_PAGE_SHIFT));
}

static void show_mem_used_max(struct uz_dev *dev, struct out *o)
{
    if (dev->pool)
        uz_dev_note_mem_used(dev, uz_pool_total_pages(dev->pool));
    emit(o, "%llu\n", (unsigned long long)(atomic_load(&dev->max_used_pages) << UZ_PAGE_SHIFT));
}

static void show_mm_stat(struct uz_dev *dev, struct out *o)
{
    struct uz_dev_stats st;
    uz_dev_stats_locked(dev, &st);
    emit(o, "%8llu %8llu %8llu %8lu %8ld %8llu %8lu %8llu %8llu\n",
         (unsigned long long)st.orig_data_size, (unsigned long long)st.compr_data_size,
         (unsigned long long)st.mem_used_total, (unsigned long)st.mem_limit, (long)st.mem_used_max,
         (unsigned long long)(st.same_pages), (unsigned long)(st.pages_compacted),
         (unsigned long long)st.huge_pages, (unsigned long long)st.huge_pages_since);
}

static void show_io_stat(struct uz_dev *dev, struct out *o)
{
    struct uz_dev_stats st;
    uz_dev_stats_locked(dev, &st);
    /* The kernel prints its retired invalid_io column as a literal 0. */
    emit(o, "%8llu %8llu 0 %8llu\n", (unsigned long long)st.failed_reads,
         (unsigned long long)st.failed_writes, (unsigned long long)st.notify_free);
}

static void show_debug_stat(struct uz_dev *dev, struct out *o)
{
    struct uz_dev_stats st;
    uz_dev_stats_locked(dev, &st);
    emit(o, "version: %d\n0 %8llu\n", 1, (unsigned long long)st.miss_free);
}

static void show_max_comp_streams(struct uz_dev *dev, struct out *o)
{
    emit(o, "%u\n", dev->nstreams);
}

/* The per-class table, laid out like zsmalloc's debugfs "classes" file (classes in use). */
static void show_pool_stat(struct uz_dev *dev, struct out *o)
{
    static const char *const cols[] = {"10%", "20%", "30%", "40%", "50%", "60%",
                                       "70%", "80%", "90%", "99%", "100%"};
    emit(o, " class  size ");
    for (size_t i = 0; i < UZ_ARRAY_SIZE(cols); i++)
        emit(o, "%9s ", cols[i]);
    emit(o, "obj_allocated   obj_used pages_used pages_per_zspage freeable\n");
    if (!dev->pool)
        return;
    int n = uz_pool_class_stats(dev->pool, NULL, 0);
    struct uz_pool_class_stat *rows = n > 0 ? calloc((size_t)n, sizeof(*rows)) : NULL;
    if (!rows)
        return;
    n = uz_pool_class_stats(dev->pool, rows, (size_t)n);
    struct uz_pool_class_stat total = {0};
    for (int r = 0; r < n; r++) {
        const struct uz_pool_class_stat *c = &rows[r];
        if (!c->zspages)
            continue; /* only classes in use: the full table is ~200 rows of zeros */
        emit(o, "%6u %5u ", c->index, c->size);
        for (size_t i = 0; i < UZ_ARRAY_SIZE(c->fullness); i++) {
            emit(o, "%9llu ", (unsigned long long)c->fullness[i]);
            total.fullness[i] += c->fullness[i];
        }
        emit(o, "%13llu %10llu %10llu %16u %8llu\n", (unsigned long long)c->obj_allocated,
             (unsigned long long)c->obj_used, (unsigned long long)c->pages_used,
             c->pages_per_zspage, (unsigned long long)c->freeable);
        total.obj_allocated += c->obj_allocated;
        total.obj_used += c->obj_used;
        total.pages_used += c->pages_used;
        total.freeable += c->freeable;
    }
    emit(o, " Total       ");
    for (size_t i = 0; i < UZ_ARRAY_SIZE(total.fullness); i++)
        emit(o, "%9llu ", (unsigned long long)total.fullness[i]);
    emit(o, "%13llu %10llu %10llu %16s %8llu\n", (unsigned long long)total.obj_allocated,
         (unsigned long long)total.obj_used, (unsigned long long)total.pages_used, "",
         (unsigned long long)total.freeable);
    free(rows);
}

/* ---- stores ---- */

/* Copies `value` without surrounding white space (sysfs writes usually end in '\n'). */
static int trimmed(const char *value, char *buf, size_t len)
{
    while (isspace((unsigned char)*value))
        value++;
    size_t n = strlen(value);
    while (n && isspace((unsigned char)value[n - 1]))
        n--;
    if (n >= len)
        return -EINVAL;
    memcpy(buf, value, n);
    buf[n] = 0;
    return 0;
}

static int store_disksize(struct uz_dev *dev, const char *value)
{
    uint64_t size;
    int rc = uz_parse_size(value, &size);
    if (rc || !size)
        return -EINVAL;
    size = UZ_DIV_ROUND_UP(size, UZ_PAGE_SIZE) * UZ_PAGE_SIZE; /* PAGE_ALIGN, as zram */
    if ((rc = uz_dev_exclusive_begin(dev)))
        return rc;
    rc = dev->disksize ? -EBUSY : uz_dev_init_storage(dev, size);
    uz_dev_exclusive_end(dev);
    return rc;
}

/* Changes the codec; only while no page is stored (the stored pages would become unreadable). */
static int change_codec(struct uz_dev *dev, const char *algo, int level, const char *dict)
{
    int rc = uz_dev_exclusive_begin(dev);
    if (rc)
        return rc;
    rc = uz_dev_is_empty(dev) ? uz_dev_set_codec(dev, algo, level, dict) : -EBUSY;
    uz_dev_exclusive_end(dev);
    return rc;
}

static int store_comp_algorithm(struct uz_dev *dev, const char *value)
{
    char name[32];
    if (trimmed(value, name, sizeof(name)) || !*name)
        return -EINVAL;
    return change_codec(dev, name, 0, NULL);
}

/* "algo=NAME level=N dict=PATH" in any order (kernel 6.12+ algorithm_params). */
static int store_algorithm_params(struct uz_dev *dev, const char *value)
{
    char buf[4096], algo[32] = "", dict[4096] = "";
    int level = 0;
    if (trimmed(value, buf, sizeof(buf)))
        return -EINVAL;
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return -EINVAL;
        *eq++ = 0;
        if (!strcmp(tok, "algo")) {
            if (snprintf(algo, sizeof(algo), "%s", eq) >= (int)sizeof(algo))
                return -EINVAL;
        } else if (!strcmp(tok, "level")) {
            char *end;
            errno = 0;
            long l = strtol(eq, &end, 10);
            if (errno || *end || end == eq || l < -1000 || l > 1000)
                return -EINVAL;
            level = (int)l;
        } else if (!strcmp(tok, "dict")) {
            if (snprintf(dict, sizeof(dict), "%s", eq) >= (int)sizeof(dict))
                return -EINVAL;
        } else if (strcmp(tok, "priority")) {
            return -EINVAL; /* priority is accepted and ignored: there is one algorithm */
        }
    }
    return change_codec(dev, *algo ? algo : dev->algorithm, level, *dict ? dict : NULL);
}

static int store_mem_limit(struct uz_dev *dev, const char *value)
{
    uint64_t limit;
    if (uz_parse_size(value, &limit))
        return -EINVAL;
    atomic_store(&dev->limit_pages, UZ_DIV_ROUND_UP(limit, UZ_PAGE_SIZE));
    return 0;
}

static int store_mem_used_max(struct uz_dev *dev, const char *value)
{
    uint64_t v;
    if (uz_parse_size(value, &v) || v != 0)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    atomic_store(&dev->max_used_pages, dev->pool ? uz_pool_total_pages(dev->pool) : 0);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return 0;
}

static int store_compact(struct uz_dev *dev, const char *value)
{
    int rc = uz_dev_compact(dev); /* zram: -EINVAL when not initialised */
    return rc < 0 ? rc : 0;
}

static int store_reset(struct uz_dev *dev, const char *value)
{
    uint64_t v;
    if (uz_parse_size(value, &v))
        return -EINVAL;
    if (!v)
        return 0; /* "0" is accepted and does nothing, as in zram */
    int rc = uz_dev_exclusive_begin(dev);
    if (rc)
        return rc;
    uz_dev_free_storage(dev);
    uz_dev_exclusive_end(dev);
    return 0;
}

/* ---- table ---- */

struct attr {
    const char *name;
    void (*show)(struct uz_dev *dev, struct out *o);
    int (*store)(struct uz_dev *dev, const char *value);
};

static const struct attr attrs[] = {
    {"algorithm_params", show_algorithm_params, store_algorithm_params},
    {"comp_algorithm", show_comp_algorithm, store_comp_algorithm},
    {"compact", NULL, store_compact},
    {"debug_stat", show_debug_stat, NULL},
    {"disksize", show_disksize, store_disksize},
    {"initstate", show_initstate, NULL},
    {"io_stat", show_io_stat, NULL},
    {"max_comp_streams", show_max_comp_streams, NULL},
    {"mem_limit", show_mem_limit, store_mem_limit},
    {"mem_used_max", show_mem_used_max, store_mem_used_max},
    {"mm_stat", show_mm_stat, NULL},
    {"pool_stat", show_pool_stat, NULL},
    {"reset", NULL, store_reset},
};

static const struct attr *find_attr(const char *name)
{
    for (size_t i = 0; name && i < UZ_ARRAY_SIZE(attrs); i++)
        if (!strcmp(attrs[i].name, name))
            return &attrs[i];
    return NULL;
}

int uz_dev_attr_read(struct uz_dev *dev, const char *name, char *buf, size_t len)
{
    if (!dev || !buf || !len)
        return -EINVAL;
    const struct attr *a = find_attr(name);
    if (!a)
        return -ENOENT;
    if (!a->show)
        return -EACCES;
    struct out o = {.buf = buf, .len = len};
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    a->show(dev, &o);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    if (o.overflow) {
        buf[0] = 0;
        return -ERANGE;
    }
    return (int)o.at;
}

int uz_dev_attr_write(struct uz_dev *dev, const char *name, const char *value)
{
    if (!dev || !value)
        return -EINVAL;
    const struct attr *a = find_attr(name);
    if (!a)
        return -ENOENT;
    if (!a->store)
        return -EACCES;
    return a->store(dev, value);
}
