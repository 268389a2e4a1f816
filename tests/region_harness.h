/* SPDX-License-Identifier: MIT */
/*
 * region_harness.h - what the region tests share: checking a region's invariants and saying what
 * the checker found (uz_region_check() itself prints nothing). Include after harness.h.
 */
#ifndef UZ_REGION_HARNESS_H
#define UZ_REGION_HARNESS_H

#include <stdio.h>

#include "region_internal.h"

static inline void check_region(struct uz_region *reg)
{
    struct uz_region_check_result res;
    int rc = uz_region_check(reg, &res);
    if (rc)
        fprintf(stderr, "uz_region_check: %s\n", res.msg);
    CHECK_EQ(rc, 0);
}

#endif
