// SPDX-License-Identifier: MIT
/*
 * dev_idle.c - access tracking: marking slots idle by age (the `idle` attribute) and listing
 * every stored slot with its access time and flags (`block_state`, the kernel's debugfs file).
 *
 * Every read and write stamps the slot with uz_dev_now() (seconds of CLOCK_BOOTTIME) and clears
 * its idle mark (dev_io.c). Marking walks the table slot by slot under each slot's lock, as
 * zram's mark_idle() does; never-written slots are skipped with a peek at the atomic flags word,
 * so a sparse device costs little and untouched table pages are never written.
 */
#include "dev_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int uz_dev_mark_idle_locked(struct uz_dev *dev, bool all, uint64_t age)
{
    if (!dev->table)
        return -EINVAL; /* zram: -EINVAL when not initialised */
    uint32_t now = uz_dev_now(dev);
    for (uint64_t i = 0; i < dev->nr_pages; i++) {
        struct uz_slot *s = &dev->table[i];
        if (!(atomic_load_explicit(&s->flags, memory_order_relaxed) & UZ_SLOT_ALLOC))
            continue; /* empty or same-filled: never idle (racy peek, rechecked below) */
        uz_slot_lock(s);
        uint32_t f = uz_slot_flags(s);
        if ((f & UZ_SLOT_ALLOC) && !(f & UZ_SLOT_SAME)) {
            /* Linux 6.13+: a slot that no longer meets the cutoff loses an older mark. */
            bool idle = all || (uint64_t)(uint32_t)(now - s->atime) >= age;
            uint32_t want = idle ? f | UZ_SLOT_IDLE : f & ~UZ_SLOT_IDLE;
            if (want != f)
                uz_slot_set_flags(s, want);
        }
        uz_slot_unlock(s);
    }
    return 0;
}

uint64_t uz_dev_idle_pages_locked(struct uz_dev *dev)
{
    uint64_t n = 0;
    for (uint64_t i = 0; dev->table && i < dev->nr_pages; i++)
        n += (atomic_load_explicit(&dev->table[i].flags, memory_order_relaxed) & UZ_SLOT_IDLE) != 0;
    return n;
}

ssize_t uz_dev_block_state_locked(struct uz_dev *dev, uint64_t *index, char *buf, size_t len)
{
    size_t at = 0;
    uint64_t i = *index;
    for (; dev->table && i < dev->nr_pages; i++) {
        struct uz_slot *s = &dev->table[i];
        if (!(atomic_load_explicit(&s->flags, memory_order_relaxed) &
              (UZ_SLOT_STORED | UZ_SLOT_LOCK)))
            continue; /* never written: not listed, as in the kernel */
        uz_slot_lock(s);
        uint32_t f = uz_slot_flags(s), atime = s->atime;
        uz_slot_unlock(s);
        if (!(f & UZ_SLOT_STORED))
            continue;
        /* The kernel's read_block_state() line; uzram keeps whole seconds, so the fraction is 0.
         * Flags: same, written back, huge, idle, recompressed, incompressible. */
        char line[64];
        int n = snprintf(line, sizeof(line), "%12zd %12u.%06d %c%c%c%c%c%c\n", (ssize_t)i, atime, 0,
                         (f & UZ_SLOT_SAME) ? 's' : '.', (f & UZ_SLOT_WB) ? 'w' : '.',
                         (f & UZ_SLOT_HUGE) ? 'h' : '.', (f & UZ_SLOT_IDLE) ? 'i' : '.',
                         (f & UZ_SLOT_RECOMP) ? 'r' : '.', (f & UZ_SLOT_INCOMP) ? 'n' : '.');
        if ((size_t)n >= len - at) {
            if (!at)
                return -ERANGE; /* not even one line fits */
            break;
        }
        memcpy(buf + at, line, (size_t)n + 1);
        at += (size_t)n;
    }
    *index = i;
    return (ssize_t)at;
}

ssize_t uz_dev_block_state(struct uz_dev *dev, uint64_t *index, char *buf, size_t len)
{
    if (!dev || !index || !buf || !len)
        return -EINVAL;
    unsigned shard = uz_brlock_read_lock(&dev->init_lock);
    ssize_t rc = uz_dev_block_state_locked(dev, index, buf, len);
    uz_brlock_read_unlock(&dev->init_lock, shard);
    return rc;
}
