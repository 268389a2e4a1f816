// SPDX-License-Identifier: MIT
/*
 * fuzz_dev_attr.c - libFuzzer target for everything that parses text in the device: attribute
 * writes (sizes with suffixes, algorithm names, algorithm_params key=value lists) and the size
 * parser itself, and the tiering ones (recomp_algorithm, recompress, writeback and its settings,
 * policy). Input: "NAME\nVALUE". The device has a secondary codec and a backing file, two pages
 * stored, one of them written back. A backing_dev write is pointed at the fuzzer's own file or
 * "none" (the input never names a path). After each write every readable attribute is read back,
 * the device still does I/O, both pages read back exact, and the pool passes its check.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"algorithm_params",
                                        "block_state",
                                        "comp_algorithm",
                                        "compact",
                                        "debug_stat",
                                        "disksize",
                                        "idle",
                                        "initstate",
                                        "io_stat",
                                        "max_comp_streams",
                                        "mem_limit",
                                        "mem_used_max",
                                        "mm_stat",
                                        "pool_stat",
                                        "reset",
                                        "recomp_algorithm",
                                        "backing_dev",
                                        "bd_stat",
                                        "policy",
                                        "policy_stat",
                                        "writeback_limit",
                                        "writeback_limit_enable",
                                        "writeback_batch_size",
                                        "compressed_writeback",
                                        "idle_pages",
                                        "object_pages"};
    static char store[64];
    if (!store[0])
        snprintf(store, sizeof(store), "/tmp/uzram-fuzz-store.%d", (int)getpid());
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *value = strchr(text, '\n');
    if (value)
        *value++ = 0;
    else
        value = text;

    uint64_t v;
    (void)uz_parse_size(value, &v);

    struct uz_dev_config cfg = {.disksize = 16 * UZ_PAGE_SIZE};
    struct uz_dev *dev;
    if (uz_dev_create(&cfg, &dev)) {
        free(text);
        return 0;
    }
    uz_dev_attr_write(dev, "recomp_algorithm", "algo=zstd"); /* while empty */
    unsigned char page[UZ_PAGE_SIZE];
    memset(page, 0x5a, sizeof(page));
    page[7] = 1;
    uz_dev_write_page(dev, 1, page);
    unsigned char other[UZ_PAGE_SIZE];
    for (size_t i = 0; i < sizeof(other); i++)
        other[i] = (unsigned char)(i * 7 / 5);
    uz_dev_write_page(dev, 2, other);
    uz_dev_attr_write(dev, "backing_dev", store);
    uz_dev_attr_write(dev, "writeback", "page_index=2");
    if (!strcmp(text, "backing_dev"))
        value = strncmp(value, "none", 4) ? store : "none"; /* never a path of the input's */
    /* Disksize changes can map large tables; keep the fuzzer's memory sane. */
    if (!strcmp(text, "disksize") && (uz_parse_size(value, &v) || v > (64u << 20))) {
        uz_dev_destroy(dev);
        unlink(store);
        free(text);
        return 0;
    }
    int rc = uz_dev_attr_write(dev, text, value);
    if (rc > 0)
        abort();
    if (!strcmp(text, "object_pages")) {
        /* Settable only while empty: on a fresh device, then a run written and read back. */
        struct uz_dev *d2;
        if (!uz_dev_create(&cfg, &d2)) {
            static unsigned char run[16 * UZ_PAGE_SIZE], back[16 * UZ_PAGE_SIZE];
            for (size_t i = 0; i < sizeof(run); i++)
                run[i] = (unsigned char)(i % 251 < 7 ? i / 4096 : i % 13);
            if (uz_dev_attr_write(d2, text, value) > 0 ||
                uz_dev_pwrite(d2, run, sizeof(run), 0) != (ssize_t)sizeof(run) ||
                uz_dev_pread(d2, back, sizeof(back), 0) != (ssize_t)sizeof(back) ||
                memcmp(run, back, sizeof(run)) || uz_dev_mobj_check(d2) || uz_pool_check(d2->pool))
                abort();
            uz_dev_destroy(d2);
        }
    }
    char out[16384];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int n = uz_dev_attr_read(dev, names[i], out, sizeof(out));
        if (n >= 0 && (size_t)n != strlen(out))
            abort();
    }
    if (uz_dev_disksize(dev)) {
        unsigned char got[UZ_PAGE_SIZE];
        if (uz_dev_write_page(dev, 0, page) == 0 &&
            (uz_dev_read_page(dev, 0, got) || memcmp(got, page, sizeof(page))))
            abort();
        if (uz_pool_check(dev->pool))
            abort();
        /* Slot 2 (written back, maybe recompressed or brought back) reads back exact, unless a
         * reset or discard emptied it. */
        int st = uz_dev_page_state(dev, 2);
        if (st == UZ_DEV_PAGE_DATA &&
            (uz_dev_read_page(dev, 2, got) || memcmp(got, other, sizeof(other))))
            abort();
    }
    uz_dev_destroy(dev);
    unlink(store);
    free(text);
    return 0;
}
