/* SPDX-License-Identifier: MIT */
/*
 * dev_harness.h - checks the device tests share, over the device's internals (dev_internal.h):
 * every page of a range read back against an image, and a count of slots with a flag.
 */
#ifndef UZ_TEST_DEV_HARNESS_H
#define UZ_TEST_DEV_HARNESS_H

#include "harness.h"

#include "dev_internal.h"

/* Pages first .. first + n - 1 read back equal to img[0 .. n pages); the first that differs is
 * named, then the check fails. */
static inline void uzt_dev_verify(struct uz_dev *dev, const unsigned char *img, uint64_t first,
                                  uint64_t n)
{
    unsigned char buf[UZ_PAGE_SIZE];
    for (uint64_t i = first; i < first + n; i++) {
        CHECK_EQ(uz_dev_read_page(dev, i, buf), 0);
        if (memcmp(buf, img + (i - first) * UZ_PAGE_SIZE, UZ_PAGE_SIZE)) {
            fprintf(stderr, "page %llu differs\n", (unsigned long long)i);
            CHECK(0);
        }
    }
}

/* Slots with `bit` in their flags (a snapshot). */
static inline uint64_t uzt_dev_count_flag(struct uz_dev *dev, uint32_t bit)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < dev->nr_pages; i++)
        n += (uz_slot_flags(&dev->table[i]) & bit) != 0;
    return n;
}

#endif
