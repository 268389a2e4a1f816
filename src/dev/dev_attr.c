// SPDX-License-Identifier: MIT
/*
 * dev_attr.c - the device's attributes, with the names and text formats of the kernel's
 * /sys/block/zramN files (drivers/block/zram/zram_drv.c), so scripts written for zram read
 * uzram unchanged. pool_stat is ours: the per-class table zsmalloc shows in debugfs.
 *
 * Attributes the kernel makes write-only but whose value is useful (mem_limit, mem_used_max,
 * algorithm_params) read back here as a plain value; compact and reset stay write-only.
 *
 * Stores parse their text as Linux 6.18's do (kstrtou16/kstrtoint/kstrtoul, memparse, next_arg
 * and sysfs's page-size limit), with the same errors. Codec changes are built whole, dictionary
 * read included, with no device lock held, and only swapped in under the exclusive lock.
 */
#include "dev_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
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

/* The name of secondary `prio`'s codec, or "" when none is configured. */
static const char *sec_name(const struct uz_dev *dev, unsigned prio)
{
    return dev->sec[prio].comp ? uz_comp_name(dev->sec[prio].comp) : "";
}

static void show_disksize(struct uz_dev *dev, struct out *o)
{
    emit(o, "%llu\n", (unsigned long long)dev->disksize);
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
    struct uz_comp_params p;
    uz_comp_get_params(dev->comp, &p);
    emit(o, "algo=%s level=%d", dev->algorithm, uz_comp_level(dev->comp));
    if (p.deflate_winbits)
        emit(o, " deflate.winbits=%d", p.deflate_winbits);
    if (dev->dict_path)
        emit(o, " dict=%s", dev->dict_path);
    emit(o, "\n");
}

/* zram's recomp_algorithm_show(): one line per configured secondary, "#N: " and the list of
 * algorithms with the selected one in brackets. */
static void show_recomp_algorithm(struct uz_dev *dev, struct out *o)
{
    for (unsigned p = 1; p <= UZ_DEV_PRIO_MAX; p++) {
        if (!dev->sec[p].comp)
            continue;
        emit(o, "#%u: ", p);
        for (const char *const *a = uz_comp_algorithms(); *a; a++)
            emit(o, strcmp(*a, sec_name(dev, p)) ? "%s " : "[%s] ", *a);
        emit(o, "\n");
    }
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

/* ---- the kernel's number parsers (lib/kstrtox.c, lib/cmdline.c), as they behave ---- */

/* kstrtoull(s, 10, ...): an optional '+', decimal digits, one optional '\n', nothing else.
 * -EINVAL for anything else, -ERANGE past 2^64 - 1 (checked before the trailing bytes). */
static int k_strtoull(const char *s, unsigned long long *out)
{
    if (*s == '+')
        s++;
    const char *p = s;
    unsigned long long v = 0;
    bool overflow = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            overflow = true;
        v = v * 10 + d;
    }
    if (p == s)
        return -EINVAL;
    if (overflow)
        return -ERANGE;
    if (*p == '\n')
        p++;
    if (*p)
        return -EINVAL;
    *out = v;
    return 0;
}

/* The digits of base `base` at p (hex digits in either case) into *v, which wraps past 2^64 as
 * simple_strtoull() does; *overflow tells whether it did. @return : the first byte after them. */
static const char *k_digits(const char *p, unsigned base, unsigned long long *v, bool *overflow)
{
    for (;; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (isxdigit((unsigned char)*p))
            d = (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
        else
            break;
        if (d >= base)
            break;
        if (*v > (ULLONG_MAX - d) / base)
            *overflow = true;
        *v = *v * base + d;
    }
    return p;
}

/* kstrtoull(s, 0, ...): as k_strtoull(), but "0x"/"0X" selects hex and a leading 0 octal.
 * Any failure is -EINVAL here (callers of the kernel's treat it so). */
static int k_strtoull0(const char *s, unsigned long long *out)
{
    if (*s == '+')
        s++;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isxdigit((unsigned char)s[2])) {
        base = 16;
        s += 2;
    } else if (s[0] == '0' && s[1] >= '0' && s[1] <= '9') {
        base = 8;
    }
    unsigned long long v = 0;
    bool overflow = false;
    const char *p = k_digits(s, base, &v, &overflow);
    if (p == s || overflow)
        return -EINVAL;
    if (*p == '\n')
        p++;
    if (*p)
        return -EINVAL;
    *out = v;
    return 0;
}

/* kstrtoint(s, 10, ...): k_strtoull() with an optional '-' instead of '+'. */
static int k_strtoint(const char *s, int *out)
{
    unsigned long long v;
    bool neg = *s == '-';
    int rc = neg ? (s[1] == '+' ? -EINVAL : k_strtoull(s + 1, &v)) : k_strtoull(s, &v);
    if (rc)
        return rc;
    if (v > (neg ? (unsigned long long)INT_MAX + 1 : (unsigned long long)INT_MAX))
        return -ERANGE;
    *out = !neg ? (int)v : v > INT_MAX ? INT_MIN : -(int)v;
    return 0;
}

/* memparse(): simple_strtoull(s, &end, 0) (no white space, no sign; 0x for hex, 0 for octal;
 * wraps past 2^64 as the kernel's does), then one optional K, M, G, T, P or E (either case).
 * *end is s when no digit was read. */
static uint64_t k_memparse(const char *s, const char **end)
{
    unsigned base = 10;
    const char *p = s;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && isxdigit((unsigned char)p[2])) {
        base = 16;
        p += 2;
    } else if (p[0] == '0') {
        base = 8;
    }
    const char *digits = p;
    unsigned long long v = 0;
    bool wrapped = false; /* memparse wraps silently */
    p = k_digits(p, base, &v, &wrapped);
    if (p == digits && base != 16) {
        *end = s;
        return 0;
    }
    static const char suffixes[] = "kmgtpe";
    const char *sfx = *p ? strchr(suffixes, tolower((unsigned char)*p)) : NULL;
    if (sfx) {
        v <<= 10 * (unsigned)(sfx - suffixes + 1);
        p++;
    }
    *end = p;
    return v;
}

/* One word of a key=value list, split off as the kernel's next_arg() does: words end at white
 * space outside double quotes; a word's leading quote and its closing one are dropped, as are
 * the quotes around a value; the key ends at the first '=' after its first byte. *val is NULL
 * when there is no '='. Returns the rest, white space skipped. */
static char *next_word(char *args, char **key, char **val)
{
    bool quoted = *args == '"', in_quote = quoted;
    if (quoted)
        args++;
    size_t i, eq = 0;
    for (i = 0; args[i]; i++) {
        if (isspace((unsigned char)args[i]) && !in_quote)
            break;
        if (!eq && i > 0 && args[i] == '=')
            eq = i;
        if (args[i] == '"')
            in_quote = !in_quote;
    }
    *key = args;
    *val = NULL;
    if (eq) {
        args[eq] = 0;
        *val = args + eq + 1;
        if (**val == '"') {
            (*val)++;
            if (args[i - 1] == '"')
                args[i - 1] = 0;
        }
    }
    if (quoted && i > 0 && args[i - 1] == '"')
        args[i - 1] = 0;
    char *rest = args + i;
    if (*rest)
        *rest++ = 0;
    while (isspace((unsigned char)*rest))
        rest++;
    return rest;
}

/* ---- stores ---- */

static int store_disksize(struct uz_dev *dev, const char *value)
{
    const char *end;
    uint64_t size = k_memparse(value, &end);
    if (!size)
        return -EINVAL; /* zram: also "junk" (nothing parsed reads as 0) */
    if (size > UINT64_MAX - UZ_PAGE_SIZE + 1)
        return -ENOMEM; /* no table that large: zram's vzalloc() fails the same way */
    size = UZ_DIV_ROUND_UP(size, UZ_PAGE_SIZE) * UZ_PAGE_SIZE; /* PAGE_ALIGN, as zram */
    int rc = uz_dev_exclusive_begin(dev);
    if (rc)
        return rc;
    rc = dev->disksize ? -EBUSY : uz_dev_init_storage(dev, size);
    uz_dev_exclusive_end(dev);
    return rc;
}

static bool known_algorithm(const char *name)
{
    for (const char *const *a = uz_comp_algorithms(); *a; a++)
        if (!strcmp(*a, name))
            return true;
    return false;
}

/* Installs a codec built unlocked, unless pages were stored or the codec changed meanwhile
 * (its parameters were read under generation `gen`). Frees whichever codec is left over. */
static int install_codec(struct uz_dev *dev, struct uz_dev_codec *c, uint64_t gen)
{
    int rc = uz_dev_exclusive_begin(dev);
    if (rc) {
        uz_dev_codec_free(c);
        return rc;
    }
    rc = !uz_dev_is_empty(dev) || dev->codec_gen != gen ? -EBUSY : 0;
    if (!rc)
        uz_dev_codec_swap(dev, c);
    uz_dev_exclusive_end(dev);
    uz_dev_codec_free(c);
    return rc;
}

/* install_codec() for secondary `prio` (recomp_algorithm, algorithm_params priority=N). */
static int install_sec(struct uz_dev *dev, unsigned prio, struct uz_dev_codec *c, uint64_t gen)
{
    int rc = uz_dev_exclusive_begin(dev);
    if (rc) {
        uz_dev_codec_free(c);
        return rc;
    }
    rc = !uz_dev_is_empty(dev) || dev->codec_gen != gen ? -EBUSY : 0;
    if (!rc) {
        struct uz_dev_codec old = dev->sec[prio];
        dev->sec[prio] = *c;
        *c = old;
        dev->codec_gen++;
    }
    uz_dev_exclusive_end(dev);
    uz_dev_codec_free(c);
    return rc;
}

/* zram's __comp_algorithm_store(): names of 128 bytes or more are -E2BIG, one trailing newline
 * is dropped, an unknown name is -EINVAL. The parameters set so far carry over to the new
 * algorithm, as they do in the kernel (params[prio] is not per algorithm). */
static int store_comp_algorithm(struct uz_dev *dev, const char *value)
{
    char name[128];
    size_t n = strlen(value);
    if (n >= sizeof(name))
        return -E2BIG;
    memcpy(name, value, n + 1);
    if (n && name[n - 1] == '\n')
        name[n - 1] = 0;
    if (!known_algorithm(name))
        return -EINVAL;

    /* Copy the parameters under the read lock; build with none held. */
    struct uz_comp_params p;
    void *dict = NULL;
    char *dict_path = NULL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = uz_dev_is_empty(dev) ? 0 : -EBUSY;
    uint64_t gen = dev->codec_gen;
    if (!rc) {
        uz_comp_get_params(dev->comp, &p);
        if (p.dict && !(dict = malloc(p.dict_len)))
            rc = -ENOMEM;
        else if (p.dict)
            memcpy(dict, p.dict, p.dict_len);
        if (!rc && dev->dict_path && !(dict_path = strdup(dev->dict_path)))
            rc = -ENOMEM;
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    struct uz_dev_codec c;
    if (!rc) {
        p.dict = dict;
        rc = uz_dev_codec_build(dev, name, &p, dict_path, &c);
    }
    free(dict);
    free(dict_path);
    return rc ? rc : install_codec(dev, &c, gen);
}

/* zram's algorithm_params_store() (6.16+): "key=value ..." with priority, level, algo, dict and
 * deflate.winbits; unknown keys are ignored and a key without a value is -EINVAL. Each write sets
 * all the parameters: what it does not name goes back to the default. priority selects the
 * compressor (0, the primary; 1..3 the recompression secondaries of recomp_algorithm); algo=NAME
 * selects the configured compressor of that name instead (-EINVAL when none is). The dictionary is
 * read here, before any lock, as a regular file of at most UZ_COMP_DICT_MAX bytes; zram turns every
 * failure to read it into -EINVAL, and so does this. */
static int store_algorithm_params(struct uz_dev *dev, const char *value)
{
    char *buf = strdup(value);
    if (!buf)
        return -ENOMEM;
    int prio = 0, level = 0, winbits = 0, rc = 0;
    const char *algo = NULL, *dict_path = NULL;
    char *args = buf;
    while (isspace((unsigned char)*args))
        args++;
    while (*args && !rc) {
        char *key, *val;
        args = next_word(args, &key, &val);
        if (!val || !*val)
            rc = -EINVAL;
        else if (!strcmp(key, "priority"))
            rc = k_strtoint(val, &prio);
        else if (!strcmp(key, "level"))
            rc = k_strtoint(val, &level);
        else if (!strcmp(key, "algo"))
            algo = val;
        else if (!strcmp(key, "dict"))
            dict_path = val;
        else if (!strcmp(key, "deflate.winbits") && !(rc = k_strtoint(val, &winbits)) && !winbits)
            rc = -EINVAL; /* no window; here 0 means "not set" (the kernel fails at init) */
    }

    /* The compressor it is for: algo= wins over priority=, as in the kernel (the primary's
     * name first). A secondary must be configured (recomp_algorithm) before its parameters are
     * set: the kernel keeps parameters for a priority that has no codec yet; here a codec is
     * built with its parameters, so that write is -EINVAL. */
    uint64_t gen = 0;
    char name[sizeof(dev->algorithm)];
    if (!rc) {
        unsigned shard = uz_brlock_read_lock(&dev->init_lock);
        if (algo) {
            prio = -1;
            for (int q = 0; q <= UZ_DEV_PRIO_MAX && prio < 0; q++)
                if (!strcmp(algo, q ? sec_name(dev, (unsigned)q) : dev->algorithm))
                    prio = q;
        }
        if (prio < 0 || prio > UZ_DEV_PRIO_MAX || (prio && !dev->sec[prio].comp))
            rc = -EINVAL;
        else if (!uz_dev_is_empty(dev))
            rc = -EBUSY;
        else
            snprintf(name, sizeof(name), "%s",
                     prio ? sec_name(dev, (unsigned)prio) : dev->algorithm);
        gen = dev->codec_gen;
        uz_brlock_read_unlock(&dev->init_lock, shard);
    }

    void *dict = NULL;
    size_t dict_len = 0;
    if (!rc && dict_path && uz_comp_dict_read(dict_path, &dict, &dict_len))
        rc = -EINVAL;
    struct uz_dev_codec c;
    if (!rc) {
        struct uz_comp_params p = {
            .level = level, .deflate_winbits = winbits, .dict = dict, .dict_len = dict_len};
        rc = uz_dev_codec_build(dev, name, &p, dict_path, &c);
        if (rc == -EOPNOTSUPP || rc == -ENOENT)
            rc = -EINVAL;
    }
    free(dict);
    free(buf);
    if (rc)
        return rc;
    return prio ? install_sec(dev, (unsigned)prio, &c, gen) : install_codec(dev, &c, gen);
}

/* zram's recomp_algorithm_store(): "algo=NAME [priority=N]" (priority kstrtoint, default 1,
 * 1..3 else -EINVAL; algo required; other keys ignored; a key without a value -EINVAL), then
 * __comp_algorithm_store()'s checks (-E2BIG, unknown name -EINVAL). The kernel takes it only
 * before disksize (-EBUSY after); uzram devices are sized at creation, so here it is taken
 * while no page is stored (-EBUSY otherwise). A replaced secondary's parameters carry over. */
static int store_recomp_algorithm(struct uz_dev *dev, const char *value)
{
    char *buf = strdup(value);
    if (!buf)
        return -ENOMEM;
    int prio = 1, rc = 0;
    const char *algo = NULL;
    char *args = buf;
    while (isspace((unsigned char)*args))
        args++;
    while (*args && !rc) {
        char *key, *val;
        args = next_word(args, &key, &val);
        if (!val || !*val)
            rc = -EINVAL;
        else if (!strcmp(key, "algo"))
            algo = val;
        else if (!strcmp(key, "priority"))
            rc = k_strtoint(val, &prio);
    }
    char name[128];
    if (!rc && !algo)
        rc = -EINVAL;
    if (!rc && (prio < 1 || prio > UZ_DEV_PRIO_MAX))
        rc = -EINVAL;
    if (!rc && strlen(algo) >= sizeof(name))
        rc = -E2BIG;
    if (!rc) {
        snprintf(name, sizeof(name), "%s", algo);
        size_t n = strlen(name);
        if (n && name[n - 1] == '\n')
            name[n - 1] = 0;
        if (!known_algorithm(name))
            rc = -EINVAL;
    }
    free(buf);
    if (rc)
        return rc;

    struct uz_comp_params p = {0};
    void *dict = NULL;
    char *dict_path = NULL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    rc = uz_dev_is_empty(dev) ? 0 : -EBUSY;
    uint64_t gen = dev->codec_gen;
    const struct uz_dev_codec *cur = &dev->sec[prio];
    if (!rc && cur->comp) {
        uz_comp_get_params(cur->comp, &p);
        if (p.dict && !(dict = malloc(p.dict_len)))
            rc = -ENOMEM;
        else if (p.dict)
            memcpy(dict, p.dict, p.dict_len);
        if (!rc && cur->dict_path && !(dict_path = strdup(cur->dict_path)))
            rc = -ENOMEM;
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    struct uz_dev_codec c;
    if (!rc) {
        p.dict = dict;
        rc = uz_dev_codec_build(dev, name, &p, dict_path, &c);
    }
    free(dict);
    free(dict_path);
    return rc ? rc : install_sec(dev, (unsigned)prio, &c, gen);
}

/* kstrtouint(s, 10, ...). */
static int k_strtouint(const char *s, unsigned *out)
{
    unsigned long long v;
    int rc = k_strtoull(s, &v);
    if (rc)
        return rc;
    if (v > UINT_MAX)
        return -ERANGE;
    *out = (unsigned)v;
    return 0;
}

/* zram's recompress_store() (Linux 6.18 and the 2026 single-target semantics): keys type=
 * (idle, huge, huge_idle; any other value leaves the choice as it was), max_pages= (kstrtoul;
 * 0 or absent: no bound), threshold= (kstrtouint; at least the huge size is -EINVAL), algo=
 * (a configured secondary's name, else -EINVAL) and priority= (kstrtouint, 1..3 else -EINVAL);
 * other keys are ignored, a key without a value is -EINVAL. The target is algo='s codec, else
 * priority='s, else priority 1; an unconfigured target or an uninitialised device is
 * -EINVAL. */
static int store_recompress(struct uz_dev *dev, const char *value)
{
    char *buf = strdup(value);
    if (!buf)
        return -ENOMEM;
    unsigned pick = 0, threshold = 0, prio = 1;
    unsigned long long max_pages = 0;
    const char *algo = NULL;
    int rc = 0;
    char *args = buf;
    while (isspace((unsigned char)*args))
        args++;
    while (*args && !rc) {
        char *key, *val;
        args = next_word(args, &key, &val);
        if (!val || !*val) {
            rc = -EINVAL;
        } else if (!strcmp(key, "type")) {
            if (!strcmp(val, "idle"))
                pick = UZ_DEV_PICK_IDLE;
            else if (!strcmp(val, "huge"))
                pick = UZ_DEV_PICK_HUGE;
            else if (!strcmp(val, "huge_idle"))
                pick = UZ_DEV_PICK_IDLE | UZ_DEV_PICK_HUGE;
        } else if (!strcmp(key, "max_pages")) {
            rc = k_strtoull(val, &max_pages);
        } else if (!strcmp(key, "threshold")) {
            rc = k_strtouint(val, &threshold);
        } else if (!strcmp(key, "algo")) {
            algo = val;
        } else if (!strcmp(key, "priority")) {
            if (!(rc = k_strtouint(val, &prio)) && (prio < 1 || prio > UZ_DEV_PRIO_MAX))
                rc = -EINVAL;
        }
    }
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    size_t huge = dev->pool ? dev->huge_size : UZ_PAGE_SIZE;
    if (!rc && threshold >= huge)
        rc = -EINVAL;
    if (!rc && algo) {
        prio = 0;
        for (unsigned q = 1; q <= UZ_DEV_PRIO_MAX && !prio; q++)
            if (!strcmp(algo, sec_name(dev, q)))
                prio = q;
        if (!prio)
            rc = -EINVAL;
    }
    uint64_t done = 0;
    if (!rc)
        rc = uz_dev_recompress_locked(dev, pick, max_pages, threshold, prio, &done);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    free(buf);
    return rc;
}

/* zram: memparse(), -EINVAL only when nothing was parsed ("1M junk" is 1M); PAGE_ALIGN. */
static int store_mem_limit(struct uz_dev *dev, const char *value)
{
    const char *end;
    uint64_t limit = k_memparse(value, &end);
    if (end == value)
        return -EINVAL;
    atomic_store(&dev->limit_pages, UZ_DIV_ROUND_UP(limit, UZ_PAGE_SIZE));
    return 0;
}

/* zram: kstrtoul(), and only 0 ("0", "0\n", "+0", "00"; not " 0"): anything else is -EINVAL. */
static int store_mem_used_max(struct uz_dev *dev, const char *value)
{
    unsigned long long v;
    if (k_strtoull(value, &v) || v != 0)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    atomic_store(&dev->max_used_pages, dev->pool ? uz_pool_total_pages(dev->pool) : 0);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return 0;
}

/* zram's idle_store(): "all" (sysfs_streq: one trailing newline allowed) marks every stored
 * slot idle; a number (kstrtoull, base 0) marks the slots not accessed for at least that many
 * seconds and clears the mark of the others (Linux 6.13+). Same-filled slots are never idle.
 * Anything else, or an uninitialised device, is -EINVAL. */
static int store_idle(struct uz_dev *dev, const char *value)
{
    bool all = !strcmp(value, "all") || !strcmp(value, "all\n");
    unsigned long long age = 0;
    if (!all && k_strtoull0(value, &age))
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = uz_dev_mark_idle_locked(dev, all, age);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}

/* The whole block_state listing (uz_dev_block_state() reads it in pieces). */
static void show_block_state(struct uz_dev *dev, struct out *o)
{
    uint64_t index = 0;
    ssize_t n = 0;
    if (o->at < o->len)
        o->buf[o->at] = 0; /* an empty listing is still a string */
    while (!o->overflow && o->at < o->len &&
           (n = uz_dev_block_state_locked(dev, &index, o->buf + o->at, o->len - o->at)) > 0)
        o->at += (size_t)n;
    if (n < 0 || (dev->table && index < dev->nr_pages))
        o->overflow = true; /* stopped before the last stored slot */
}

/* uzram's own: how many slots are marked idle (the kernel only lists them in block_state),
 * for uzramctl's IDLE column. */
static void show_idle_pages(struct uz_dev *dev, struct out *o)
{
    emit(o, "%llu\n", (unsigned long long)uz_dev_idle_pages_locked(dev));
}

static int store_compact(struct uz_dev *dev, const char *value)
{
    (void)value;
    int rc = uz_dev_compact(dev); /* zram: -EINVAL when not initialised */
    return rc < 0 ? rc : 0;
}

/* zram's reset_store(): kstrtou16() (its -EINVAL or -ERANGE), then 0 is -EINVAL. The device
 * goes back to what zram_reset_device() leaves: no storage, disksize 0, mem_limit 0, the default
 * algorithm (lz4) with no parameters and no dictionary. */
static int store_reset(struct uz_dev *dev, const char *value)
{
    unsigned long long v;
    int rc = k_strtoull(value, &v);
    if (rc)
        return rc;
    if (v > 0xffff)
        return -ERANGE;
    if (!v)
        return -EINVAL;
    struct uz_dev_codec c;
    if ((rc = uz_dev_codec_build(dev, "lz4", NULL, NULL, &c)))
        return rc;
    if ((rc = uz_dev_exclusive_begin(dev))) {
        uz_dev_codec_free(&c);
        return rc;
    }
    uz_dev_free_storage(dev);
    atomic_store(&dev->limit_pages, 0);
    __atomic_store_n(&dev->object_pages, 1u, __ATOMIC_RELAXED); /* a default too */
    uz_dev_codec_swap(dev, &c);
    struct uz_dev_codec sec[UZ_DEV_PRIO_MAX + 1]; /* zram_destroy_comps(): secondaries go too */
    memcpy(sec, dev->sec, sizeof(sec));
    memset(dev->sec, 0, sizeof(dev->sec));
    uz_dev_exclusive_end(dev);
    uz_dev_codec_free(&c);
    for (unsigned p = 1; p <= UZ_DEV_PRIO_MAX; p++)
        uz_dev_codec_free(&sec[p]);
    uz_dev_policy_reset(dev); /* uzram's policy is part of the defaults: off */
    return 0;
}

/* ---- writeback (dev_wb.c) ---- */

static int parse_pick(const char *val, bool writeback, unsigned *pick);

static void show_backing_dev(struct uz_dev *dev, struct out *o)
{
    const char *p = uz_dev_wb_path(dev->wb);
    emit(o, "%s\n", p ? p : "none");
}

/* zram's backing_dev_store(): a path (one trailing newline dropped), or "none" to detach.
 * Unlike the kernel, a regular file is accepted (created 0600 if missing, grown sparse) as well
 * as a block device; anything else is -ENOTBLK, an open failure its -errno. The kernel takes it
 * only before disksize; uzram devices are sized at creation, so here it changes while nothing
 * is written back (-EBUSY otherwise). */
static int store_backing_dev(struct uz_dev *dev, const char *value)
{
    char path[PATH_MAX];
    size_t n = strnlen(value, sizeof(path));
    if (n >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, value, n + 1);
    if (n && path[n - 1] == '\n')
        path[--n] = 0;
    if (!n)
        return -EINVAL;
    struct uz_dev_wb *wb = NULL;
    int rc = strcmp(path, "none") ? uz_dev_wb_open(path, false, &wb) : 0;
    if (rc)
        return rc;
    if ((rc = uz_dev_exclusive_begin(dev))) {
        uz_dev_wb_close(wb);
        return rc;
    }
    if (uz_dev_wb_stored(dev->wb) || uz_dev_wb_shared(dev->wb)) {
        rc = -EBUSY;
    } else {
        if (wb)
            uz_dev_wb_set_packed(wb, dev->wb_compressed);
        struct uz_dev_wb *old = dev->wb;
        dev->wb = wb;
        wb = old;
    }
    uz_dev_exclusive_end(dev);
    uz_dev_wb_close(wb); /* the old one (or the new, refused) */
    return rc;
}

static int parse_index(const char *val, uint64_t nr_pages, uint64_t *out)
{
    unsigned long long v;
    int rc = k_strtoull(val, &v);
    if (rc)
        return -EINVAL;
    if (v >= nr_pages)
        return -ERANGE;
    *out = v;
    return 0;
}

/* zram's writeback_store() (Linux 6.18): "idle", "huge", "huge_idle", "incompressible" (the old
 * form, the whole value), or key=value words: type= (those four), page_index=N (repeatable),
 * page_indexes=LO-HI (LO < HI <= the slot count). A bad index is -ERANGE, other bad syntax
 * -EINVAL (type and indexes together too); an uninitialised device -EINVAL, no backing device
 * -ENODEV, an exhausted writeback_limit -EIO, a full store -ENOSPC. */
static int store_writeback(struct uz_dev *dev, const char *value)
{
    char *buf = strdup(value);
    if (!buf)
        return -ENOMEM;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    int rc = !dev->table ? -EINVAL : !dev->wb ? -ENODEV : 0;
    uint64_t done = 0;
    if (!rc && !strchr(buf, '=')) {
        unsigned pick = 0;
        size_t n = strlen(buf);
        if (n && buf[n - 1] == '\n')
            buf[n - 1] = 0;
        rc = parse_pick(buf, true, &pick);
        if (!rc && pick == UZ_DEV_PICK_NONE)
            rc = -EINVAL;
        if (!rc)
            rc = uz_dev_writeback_locked(dev, pick, 0, dev->nr_pages, 0, &done);
    } else if (!rc) {
        char *args = buf;
        unsigned pick = UZ_DEV_PICK_NONE;
        bool typed = false, indexed = false;
        while (isspace((unsigned char)*args))
            args++;
        /* Validate the whole value first: a failure changes nothing. */
        for (char *a = args; *a && !rc;) {
            char *key, *val;
            a = next_word(a, &key, &val);
            uint64_t lo, hi;
            if (!val || !*val) {
                rc = -EINVAL;
            } else if (!strcmp(key, "type")) {
                typed = true;
                if (parse_pick(val, true, &pick) || pick == UZ_DEV_PICK_NONE)
                    rc = -EINVAL;
            } else if (!strcmp(key, "page_index")) {
                indexed = true;
                rc = parse_index(val, dev->nr_pages, &lo);
            } else if (!strcmp(key, "page_indexes")) {
                indexed = true;
                char *dash = strchr(val, '-');
                if (!dash)
                    rc = -EINVAL;
                else {
                    *dash = 0;
                    rc = parse_index(val, dev->nr_pages, &lo);
                    if (!rc)
                        rc = parse_index(dash + 1, dev->nr_pages + 1, &hi);
                    if (!rc && lo >= hi)
                        rc = -ERANGE;
                    *dash = '-';
                }
            } else {
                rc = -EINVAL;
            }
        }
        if (!rc && (typed == indexed))
            rc = -EINVAL; /* neither, or both */
        if (!rc && typed)
            rc = uz_dev_writeback_locked(dev, pick, 0, dev->nr_pages, 0, &done);
        /* Indexes: each range in turn (next_word split the copy in place: parse again). */
        free(buf);
        buf = strdup(value);
        args = buf;
        while (!rc && buf && indexed && *args) {
            char *key, *val;
            while (isspace((unsigned char)*args))
                args++;
            if (!*args)
                break;
            args = next_word(args, &key, &val);
            uint64_t lo = 0, hi = 0;
            if (!strcmp(key, "page_index")) {
                parse_index(val, dev->nr_pages, &lo);
                hi = lo + 1;
            } else {
                char *dash = strchr(val, '-');
                *dash = 0;
                parse_index(val, dev->nr_pages, &lo);
                parse_index(dash + 1, dev->nr_pages + 1, &hi);
            }
            rc = uz_dev_writeback_locked(dev, UZ_DEV_PICK_NONE, lo, hi, 0, &done);
        }
    }
    uz_brlock_read_unlock(&dev->init_lock, shard);
    free(buf);
    return rc;
}

static void show_writeback_limit(struct uz_dev *dev, struct out *o)
{
    emit(o, "%llu\n", (unsigned long long)atomic_load(&dev->wb_limit));
}

/* zram: kstrtoull(buf, 10): its -EINVAL or -ERANGE; 4 KiB units. */
static int store_writeback_limit(struct uz_dev *dev, const char *value)
{
    unsigned long long v;
    int rc = k_strtoull(value, &v);
    if (!rc)
        atomic_store(&dev->wb_limit, v);
    return rc;
}

static void show_writeback_limit_enable(struct uz_dev *dev, struct out *o)
{
    emit(o, "%d\n", atomic_load(&dev->wb_limit_enable) ? 1 : 0);
}

/* zram: kstrtoull(buf, 10); any non-zero value enables. */
static int store_writeback_limit_enable(struct uz_dev *dev, const char *value)
{
    unsigned long long v;
    int rc = k_strtoull(value, &v);
    if (!rc)
        atomic_store(&dev->wb_limit_enable, v != 0);
    return rc;
}

static void show_writeback_batch_size(struct uz_dev *dev, struct out *o)
{
    emit(o, "%u\n", atomic_load(&dev->wb_batch));
}

/* zram: kstrtouint(buf, 10), 0 is -EINVAL. uzram keeps at most 256 pages in flight. */
static int store_writeback_batch_size(struct uz_dev *dev, const char *value)
{
    unsigned long long v;
    int rc = k_strtoull(value, &v);
    if (rc)
        return rc;
    if (v > UINT_MAX)
        return -ERANGE;
    if (!v)
        return -EINVAL;
    atomic_store(&dev->wb_batch, (unsigned)v);
    return 0;
}

static void show_compressed_writeback(struct uz_dev *dev, struct out *o)
{
    emit(o, "%d\n", dev->wb_compressed ? 1 : 0);
}

/* 0 or 1 (kstrtoull): the store's layout, changed only while nothing is written back (-EBUSY);
 * with 1, compressed objects are packed densely in the store. */
static int store_compressed_writeback(struct uz_dev *dev, const char *value)
{
    unsigned long long v;
    int rc = k_strtoull(value, &v);
    if (rc)
        return rc;
    if (v > 1)
        return -EINVAL;
    if ((rc = uz_dev_exclusive_begin(dev)))
        return rc;
    if (uz_dev_wb_stored(dev->wb) || uz_dev_wb_shared(dev->wb)) {
        rc = -EBUSY;
    } else {
        dev->wb_compressed = v;
        if (dev->wb)
            uz_dev_wb_set_packed(dev->wb, v);
    }
    uz_dev_exclusive_end(dev);
    return rc;
}

/* zram's bd_stat: "%8llu %8llu %8llu\n" bd_count bd_reads bd_writes, 4 KiB units. */
static void show_bd_stat(struct uz_dev *dev, struct out *o)
{
    struct uz_dev_stats st;
    uz_dev_stats_locked(dev, &st);
    emit(o, "%8llu %8llu %8llu\n", (unsigned long long)st.bd_count, (unsigned long long)st.bd_reads,
         (unsigned long long)st.bd_writes);
}

/* ---- multi-page objects (dev_multi.c): uzram's own attribute ---- */

static void show_object_pages(struct uz_dev *dev, struct out *o)
{
    emit(o, "%u\n", dev->object_pages);
}

/* 1, 2, 4, 8 or 16 (kstrtoull; anything else -EINVAL), while no page is stored (-EBUSY). */
static int store_object_pages(struct uz_dev *dev, const char *value)
{
    unsigned long long v;
    int rc = k_strtoull(value, &v);
    if (rc)
        return rc;
    if (!v || v > UZ_DEV_OBJ_PAGES_MAX || (v & (v - 1)))
        return -EINVAL;
    if ((rc = uz_dev_exclusive_begin(dev)))
        return rc;
    if (!uz_dev_is_empty(dev))
        rc = -EBUSY; /* a disk of fewer pages than a run, or its tail, stores page by page */
    else
        __atomic_store_n(&dev->object_pages, (unsigned)v, __ATOMIC_RELAXED);
    uz_dev_exclusive_end(dev);
    return rc;
}

/* ---- the tiering policy (dev_policy.c): uzram's own attribute ---- */

struct pick_name {
    const char *name;
    unsigned pick;
};

static const struct pick_name picks[] = {
    {"none", UZ_DEV_PICK_NONE},
    {"idle", UZ_DEV_PICK_IDLE},
    {"huge", UZ_DEV_PICK_HUGE},
    {"huge_idle", UZ_DEV_PICK_HUGE | UZ_DEV_PICK_IDLE},
    {"incompressible", UZ_DEV_PICK_INCOMP},
};

static const char *pick_str(unsigned pick)
{
    for (size_t i = 0; i < UZ_ARRAY_SIZE(picks); i++)
        if (picks[i].pick == pick)
            return picks[i].name;
    return "?";
}

/* A type= value: the names recompress (idle, huge, huge_idle) or writeback (and
 * incompressible) takes, or none. */
static int parse_pick(const char *val, bool writeback, unsigned *pick)
{
    for (size_t i = 0; i < UZ_ARRAY_SIZE(picks); i++)
        if (!strcmp(picks[i].name, val) && (writeback || picks[i].pick != UZ_DEV_PICK_INCOMP)) {
            *pick = picks[i].pick;
            return 0;
        }
    return -EINVAL;
}

/* A size of the policy: memparse, the whole value (a trailing newline allowed). */
static int parse_size(const char *val, uint64_t *out)
{
    const char *end;
    uint64_t v = k_memparse(val, &end);
    if (end == val || (*end && strcmp(end, "\n")))
        return -EINVAL;
    *out = v;
    return 0;
}

static void show_policy(struct uz_dev *dev, struct out *o)
{
    struct uz_dev_policy_cfg c;
    uz_dev_policy_get(dev, &c, NULL);
    emit(o,
         "interval=%llu recompress_age=%llu recompress_type=%s recompress_priority=%u "
         "writeback_age=%llu writeback_type=%s writeback_limit_per_day=%llu "
         "writeback_max_per_round=%llu\n",
         (unsigned long long)c.interval, (unsigned long long)c.recompress_age,
         pick_str(c.recompress_pick), c.recompress_prio, (unsigned long long)c.writeback_age,
         pick_str(c.writeback_pick), (unsigned long long)c.writeback_per_day,
         (unsigned long long)c.writeback_per_round);
}

/* "key=value ..." (next_arg() words, as algorithm_params): the keys named change, the others
 * keep their values; "default" alone restores every default (policy off). Ages and interval
 * are seconds (kstrtoull, base 0), sizes memparse; any unknown key, bad value or key without a
 * value is -EINVAL and changes nothing. */
static int store_policy(struct uz_dev *dev, const char *value)
{
    struct uz_dev_policy_cfg c;
    uz_dev_policy_get(dev, &c, NULL);
    char *buf = strdup(value);
    if (!buf)
        return -ENOMEM;
    char *args = buf;
    while (isspace((unsigned char)*args))
        args++;
    int rc = *args ? 0 : -EINVAL;
    if (!strcmp(args, "default") || !strcmp(args, "default\n")) {
        c = uz_dev_policy_defaults;
        *args = 0;
    }
    while (*args && !rc) {
        char *key, *val;
        args = next_word(args, &key, &val);
        unsigned long long v = 0;
        if (!val || !*val)
            rc = -EINVAL;
        else if (!strcmp(key, "interval"))
            rc = k_strtoull0(val, &v) ? -EINVAL : (c.interval = v, 0);
        else if (!strcmp(key, "recompress_age"))
            rc = k_strtoull0(val, &v) ? -EINVAL : (c.recompress_age = v, 0);
        else if (!strcmp(key, "writeback_age"))
            rc = k_strtoull0(val, &v) ? -EINVAL : (c.writeback_age = v, 0);
        else if (!strcmp(key, "recompress_priority"))
            rc = k_strtoull0(val, &v) || v < 1 || v > 3 ? -EINVAL
                                                        : (c.recompress_prio = (unsigned)v, 0);
        else if (!strcmp(key, "recompress_type"))
            rc = parse_pick(val, false, &c.recompress_pick);
        else if (!strcmp(key, "writeback_type"))
            rc = parse_pick(val, true, &c.writeback_pick);
        else if (!strcmp(key, "writeback_limit_per_day"))
            rc = parse_size(val, &c.writeback_per_day);
        else if (!strcmp(key, "writeback_max_per_round"))
            rc = parse_size(val, &c.writeback_per_round);
        else
            rc = -EINVAL;
    }
    free(buf);
    if (!rc &&
        (c.interval > UINT32_MAX || c.recompress_age > UINT32_MAX || c.writeback_age > UINT32_MAX))
        rc = -ERANGE; /* ages on the slots' 32-bit clock */
    return rc ? rc : uz_dev_policy_set(dev, &c);
}

static void show_policy_stat(struct uz_dev *dev, struct out *o)
{
    struct uz_dev_policy_stat st;
    uz_dev_policy_get(dev, NULL, &st);
    emit(o,
         "rounds=%llu recompressed=%llu written_back=%llu day_written=%llu day_left=%llu "
         "writeback_error=%d recompress_error=%d\n",
         (unsigned long long)st.rounds, (unsigned long long)st.recompressed,
         (unsigned long long)st.written_back, (unsigned long long)st.day_pages,
         (unsigned long long)st.day_left_pages, st.writeback_error, st.recompress_error);
}

/* ---- table ---- */

struct attr {
    const char *name;
    void (*show)(struct uz_dev *dev, struct out *o);
    int (*store)(struct uz_dev *dev, const char *value);
};

static const struct attr attrs[] = {
    {"algorithm_params", show_algorithm_params, store_algorithm_params},
    {"backing_dev", show_backing_dev, store_backing_dev},
    {"bd_stat", show_bd_stat, NULL},
    {"block_state", show_block_state, NULL},
    {"comp_algorithm", show_comp_algorithm, store_comp_algorithm},
    {"compact", NULL, store_compact},
    {"compressed_writeback", show_compressed_writeback, store_compressed_writeback},
    {"debug_stat", show_debug_stat, NULL},
    {"disksize", show_disksize, store_disksize},
    {"idle", NULL, store_idle},
    {"idle_pages", show_idle_pages, NULL},
    {"initstate", show_initstate, NULL},
    {"io_stat", show_io_stat, NULL},
    {"max_comp_streams", show_max_comp_streams, NULL},
    {"mem_limit", show_mem_limit, store_mem_limit},
    {"mem_used_max", show_mem_used_max, store_mem_used_max},
    {"mm_stat", show_mm_stat, NULL},
    {"object_pages", show_object_pages, store_object_pages},
    {"policy", show_policy, store_policy},
    {"policy_stat", show_policy_stat, NULL},
    {"pool_stat", show_pool_stat, NULL},
    {"recomp_algorithm", show_recomp_algorithm, store_recomp_algorithm},
    {"recompress", NULL, store_recompress},
    {"reset", NULL, store_reset},
    {"writeback", NULL, store_writeback},
    {"writeback_batch_size", show_writeback_batch_size, store_writeback_batch_size},
    {"writeback_limit", show_writeback_limit, store_writeback_limit},
    {"writeback_limit_enable", show_writeback_limit_enable, store_writeback_limit_enable},
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
    buf[0] = 0; /* an attribute that shows nothing (recomp_algorithm unset) reads as "" */
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
    /* sysfs: a write longer than a page is -E2BIG, an empty one does nothing. */
    size_t n = strnlen(value, UZ_PAGE_SIZE + 1);
    if (n > UZ_PAGE_SIZE)
        return -E2BIG;
    return n ? a->store(dev, value) : 0;
}
