/* SPDX-License-Identifier: MIT */
/*
 * preload_sys.c - the machine's numbers both the preload and uzram-run need: the memory the
 * process may use (its memory cgroup's limit, else MemTotal) and the region's default size (RAM
 * plus swap). No allocation: it runs in the preload's constructor too.
 */
#include "preload_sys.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ssize_t read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* A field of /proc/meminfo, in bytes; 0 if absent. */
static uint64_t meminfo(const char *key)
{
    char buf[4096];
    if (read_small("/proc/meminfo", buf, sizeof(buf)) < 0)
        return 0;
    char *p = strstr(buf, key);
    if (!p)
        return 0;
    return strtoull(p + strlen(key), NULL, 10) * 1024;
}

/* The cgroup v2 memory.max of this process (the lowest on the path up), 0 if none. */
static uint64_t cgroup_limit(void)
{
    char buf[512], path[1024];
    if (read_small("/proc/self/cgroup", buf, sizeof(buf)) < 0)
        return 0;
    char *p = strstr(buf, "0::");
    if (!p)
        return 0;
    p += 3;
    char *nl = strchr(p, '\n');
    if (nl)
        *nl = 0;
    uint64_t best = 0;
    for (;;) {
        char val[64];
        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", strcmp(p, "/") ? p : "");
        if (read_small(path, val, sizeof(val)) > 0 && strncmp(val, "max", 3) != 0) {
            uint64_t v = strtoull(val, NULL, 10);
            if (v && (!best || v < best))
                best = v;
        }
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
            break;
        *slash = 0;
    }
    return best;
}

uint64_t uzp_memory_available(void)
{
    uint64_t total = meminfo("MemTotal:"), cg = cgroup_limit();
    return cg && (cg < total || !total) ? cg : total;
}

uint64_t uzp_default_limit(void)
{
    uint64_t l = uzp_memory_available() / 2 & ~(uint64_t)4095;
    return l < (64u << 20) ? (64u << 20) : l;
}

uint64_t uzp_default_size(void)
{
    uint64_t s = meminfo("MemTotal:") + meminfo("SwapTotal:");
    if (s < (1ull << 30))
        s = 1ull << 30;
    return (s + (1ull << 30) - 1) & ~((1ull << 30) - 1); /* whole GiB */
}
