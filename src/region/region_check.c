// SPDX-License-Identifier: MIT
/*
 * region_check.c - the invariant checker the tests call on a quiescent region.
 *
 * It reads the kernel's view of every page of the region with one PAGEMAP_SCAN walk of
 * /proc/self/pagemap (present; written, i.e. not write-protected) and compares it with each
 * page word: resident states are mapped and the others are not, CLEAN and WB pages are
 * write-protected, no lock is held, no writeback in flight, only DIRTY pages pinned; then the
 * resident, pinned and per-state counters (what uz_region_stat() reports) against the words.
 * It prints nothing: what it found goes back in a struct uz_region_check_result, for the
 * caller to print.
 */
#include "region_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* bit 0: present, bit 1: written (not write-protected) */
static int kernel_view(struct uz_region *r, uint8_t *kstate)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    enum { NVEC = 1024 };
    struct page_region *vec = malloc(NVEC * sizeof(*vec));
    int rc = vec ? 0 : -ENOMEM;
    uint64_t start = (uintptr_t)r->base, end = start + r->size;
    while (!rc && start < end) {
        struct pm_scan_arg arg = {
            .size = sizeof(arg),
            .start = start,
            .end = end,
            .vec = (uintptr_t)vec,
            .vec_len = NVEC,
            .category_anyof_mask = PAGE_IS_PRESENT,
            .return_mask = PAGE_IS_PRESENT | PAGE_IS_WRITTEN,
        };
        long n = ioctl(fd, PAGEMAP_SCAN, &arg);
        if (n < 0) {
            rc = -errno;
            break;
        }
        for (long k = 0; k < n; k++)
            for (uint64_t a = vec[k].start; a < vec[k].end; a += UZ_PAGE_SIZE)
                kstate[(a - (uintptr_t)r->base) / UZ_PAGE_SIZE] =
                    1 | ((vec[k].categories & PAGE_IS_WRITTEN) ? 2 : 0);
        if (arg.walk_end <= start)
            break;
        start = arg.walk_end;
    }
    free(vec);
    close(fd);
    return rc;
}

static const char *page_problem(uint64_t w, uint8_t k)
{
    unsigned st = uz_pg_state(w);
    bool present = k & 1, writable = k & 2;
    if (w & (UZ_PG_LOCK | UZ_PG_WAITERS))
        return "locked";
    if (st > UZ_PG_HOLE)
        return "bad state";
    if (st == UZ_PG_HOLE)
        return uz_pg_pins(w) || (w & (UZ_PG_KEPT | UZ_PG_INFLIGHT)) ? "a hole that counts" : NULL;
    if (uz_pg_resident(st) && !present)
        return "resident but not mapped";
    if (!uz_pg_resident(st) && present)
        return "mapped but not resident";
    if ((st == UZ_PG_CLEAN || st == UZ_PG_WB) && writable && !(w & UZ_PG_UNPROT))
        return "clean or under writeback but not write-protected";
    if (uz_pg_pins(w) && st != UZ_PG_DIRTY)
        return "pinned but not dirty";
    if (w & UZ_PG_INFLIGHT)
        return "a writeback in flight on a quiet region";
    return NULL;
}

int uz_region_check(struct uz_region *r, struct uz_region_check_result *out)
{
    struct uz_region_check_result res = {0};
    uint8_t *kstate = calloc(r->npages, 1);
    int rc = kstate ? kernel_view(r, kstate) : -ENOMEM;
    if (rc) {
        snprintf(res.msg, sizeof(res.msg), "cannot read the kernel's page table: %s",
                 strerror(-rc));
        goto out;
    }
    for (uint64_t i = 0; i < r->npages; i++) {
        uint64_t w = atomic_load(&r->pages[i]);
        const char *bad = page_problem(w, kstate[i]);
        if (bad && !res.bad_pages++) {
            res.first_bad = i;
            res.first_bad_word = w;
            res.first_problem = bad;
        }
        res.resident += uz_pg_resident(uz_pg_state(w)) && !(w & UZ_PG_KEPT);
        res.dirty += uz_pg_state(w) == UZ_PG_DIRTY;
        res.clean += uz_pg_state(w) == UZ_PG_CLEAN;
        res.writeback += uz_pg_state(w) == UZ_PG_WB;
        res.swapped += uz_pg_state(w) == UZ_PG_SWAPPED;
        res.holes += uz_pg_state(w) == UZ_PG_HOLE;
        if ((w & UZ_PG_KEPT) && uz_pg_state(w) != UZ_PG_DIRTY && !bad && !res.bad_pages++) {
            res.first_bad = i;
            res.first_bad_word = w;
            res.first_problem = "kept but not DIRTY";
        }
        res.pinned += uz_pg_pins(w) != 0;
    }
    res.pages = r->npages;
    res.resident_counter = atomic_load(&r->resident);
    res.pinned_counter = atomic_load(&r->pinned);
    for (unsigned st = UZ_PG_DIRTY; st < UZ_PG_NSTATES; st++)
        res.nstate[st] = (uint64_t)uz_counter_read(&r->nstate[st]);
    const uint64_t counted[UZ_PG_NSTATES] = {0,           res.dirty, res.clean, res.writeback,
                                             res.swapped, res.holes};
    unsigned bad_state = 0;
    for (unsigned st = UZ_PG_DIRTY; st < UZ_PG_NSTATES && !bad_state; st++)
        if (counted[st] != res.nstate[st])
            bad_state = st;
    if (res.bad_pages)
        snprintf(res.msg, sizeof(res.msg), "page %llu (state %u, word %#llx): %s (%llu bad)",
                 (unsigned long long)res.first_bad, uz_pg_state(res.first_bad_word),
                 (unsigned long long)res.first_bad_word, res.first_problem,
                 (unsigned long long)res.bad_pages);
    else if (res.resident != res.resident_counter)
        snprintf(res.msg, sizeof(res.msg), "%llu resident pages, counter says %llu",
                 (unsigned long long)res.resident, (unsigned long long)res.resident_counter);
    else if (res.pinned != res.pinned_counter)
        snprintf(res.msg, sizeof(res.msg), "%llu pinned pages, counter says %llu",
                 (unsigned long long)res.pinned, (unsigned long long)res.pinned_counter);
    else if (bad_state)
        snprintf(res.msg, sizeof(res.msg), "%llu pages in state %u, its counter says %lld",
                 (unsigned long long)counted[bad_state], bad_state,
                 (long long)res.nstate[bad_state]);
    rc = res.msg[0] ? -EUCLEAN : 0;
out:
    free(kstate);
    if (out)
        *out = res;
    return rc;
}
