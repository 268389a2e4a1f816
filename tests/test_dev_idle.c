// SPDX-License-Identifier: MIT
/*
 * test_dev_idle.c - access tracking: the `idle` attribute (all, or an age in seconds, with a
 * test clock), its grammar and errors as Linux 6.18's idle_store, accesses clearing the mark,
 * and `block_state` (whole, and in pieces with uz_dev_block_state()) against a model.
 */
#include "harness.h"

#include "dev_internal.h"

#define PAGE  UZ_PAGE_SIZE
#define PAGES 64

enum kind { UNWRITTEN, DATA, SAME, HUGE };

struct model {
    enum kind kind[PAGES];
    uint32_t atime[PAGES];
    bool idle[PAGES];
};

static void write_kind(struct uz_dev *dev, struct model *m, uint64_t i, enum kind k, uint64_t *seed)
{
    unsigned char page[PAGE];
    if (k == SAME) {
        memset(page, 0x5a, PAGE);
    } else if (k == HUGE) {
        for (size_t j = 0; j < PAGE; j++)
            page[j] = (unsigned char)uzt_rand(seed);
    } else {
        for (size_t j = 0; j < PAGE; j++)
            page[j] = (unsigned char)("uzram idle "[j % 11] + (j / 512));
    }
    CHECK_EQ(uz_dev_write_page(dev, i, page), 0);
    m->kind[i] = k;
    m->atime[i] = uz_dev_now(dev);
    m->idle[i] = false;
}

/* Parses the whole listing and compares it with the model. */
static void check_listing(struct uz_dev *dev, const struct model *m, const char *text)
{
    uint64_t want = 0;
    for (uint64_t i = 0; i < PAGES; i++)
        want += m->kind[i] != UNWRITTEN;
    uint64_t lines = 0;
    for (const char *p = text; *p; lines++) {
        long long idx;
        unsigned sec, usec;
        char flags[8];
        int used = 0;
        CHECK(sscanf(p, "%lld %u.%u %7s%n", &idx, &sec, &usec, flags, &used) == 4);
        CHECK(idx >= 0 && idx < PAGES);
        CHECK(strlen(flags) == 6);
        CHECK(m->kind[idx] != UNWRITTEN);
        CHECK_EQ(flags[0], m->kind[idx] == SAME ? 's' : '.');
        CHECK_EQ(flags[1], '.');
        CHECK_EQ(flags[2], m->kind[idx] == HUGE ? 'h' : '.');
        CHECK_EQ(flags[3], m->idle[idx] ? 'i' : '.');
        CHECK(flags[4] == '.' && flags[5] == '.');
        CHECK(sec == m->atime[idx] || sec == m->atime[idx] + 1); /* a second may tick */
        CHECK_EQ(usec, 0);
        CHECK_EQ(p[used], '\n');
        /* The kernel's widths: "%12zd %12u.%06d %c%c%c%c%c%c\n" is 12+1+12+1+6+1+6+1 bytes. */
        CHECK_EQ(used + 1, 40);
        p += used + 1;
    }
    CHECK_EQ(lines, want);
}

static void read_listing(struct uz_dev *dev, char *buf, size_t len)
{
    int n = uz_dev_attr_read(dev, "block_state", buf, len);
    CHECK(n >= 0);
    CHECK_EQ(strlen(buf), n);
}

static void mark(struct uz_dev *dev, struct model *m, const char *value, bool all, uint32_t age)
{
    CHECK_EQ(uz_dev_attr_write(dev, "idle", value), 0);
    uint32_t now = uz_dev_now(dev);
    for (uint64_t i = 0; i < PAGES; i++)
        if (m->kind[i] == DATA || m->kind[i] == HUGE)
            m->idle[i] = all || now - m->atime[i] >= age;
}

int main(void)
{
    struct uz_dev_config cfg = {.disksize = PAGES * PAGE, .algorithm = "lz4"};
    struct uz_dev *dev;
    CHECK_EQ(uz_dev_create(&cfg, &dev), 0);
    struct model m = {0};
    uint64_t seed = 42;
    static char text[PAGES * 64];

    /* Nothing written: an empty listing; idle works and marks nothing. */
    read_listing(dev, text, sizeof(text));
    CHECK_EQ(strlen(text), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "idle", "all"), 0);

    /* Group A at t, group B 50 s later (the test clock), then 50 s more. */
    for (uint64_t i = 0; i < 20; i++)
        write_kind(dev, &m, i, i % 5 == 0 ? SAME : i % 7 == 0 ? HUGE : DATA, &seed);
    atomic_fetch_add(&dev->clock_offset, 50);
    for (uint64_t i = 30; i < 50; i++)
        write_kind(dev, &m, i, i % 6 == 0 ? SAME : DATA, &seed);
    atomic_fetch_add(&dev->clock_offset, 50);
    read_listing(dev, text, sizeof(text));
    check_listing(dev, &m, text);

    mark(dev, &m, "80", false, 80); /* A (100 s old) idle, B (50 s) not */
    for (uint64_t i = 0; i < 20; i++)
        CHECK_EQ(m.idle[i], m.kind[i] != SAME);
    for (uint64_t i = 30; i < 50; i++)
        CHECK(!m.idle[i]);
    read_listing(dev, text, sizeof(text));
    check_listing(dev, &m, text);
    mark(dev, &m, "30\n", false, 30); /* both */
    read_listing(dev, text, sizeof(text));
    check_listing(dev, &m, text);
    mark(dev, &m, "0x78", false, 120); /* neither: the older marks are cleared (6.13+) */
    for (uint64_t i = 0; i < PAGES; i++)
        CHECK(!m.idle[i]);
    read_listing(dev, text, sizeof(text));
    check_listing(dev, &m, text);

    /* "all", then accesses: a read and a write clear the mark and stamp the slot. */
    mark(dev, &m, "all\n", true, 0);
    atomic_fetch_add(&dev->clock_offset, 7);
    unsigned char page[PAGE];
    CHECK_EQ(uz_dev_read_page(dev, 1, page), 0);
    m.idle[1] = false;
    m.atime[1] = uz_dev_now(dev);
    CHECK_EQ(uz_dev_pread(dev, page, 100, 31 * PAGE + 5), 100);
    m.idle[31] = false;
    m.atime[31] = uz_dev_now(dev);
    write_kind(dev, &m, 2, DATA, &seed);
    CHECK_EQ(uz_dev_pwrite(dev, "x", 1, 3 * PAGE), 1);
    m.idle[3] = false;
    m.atime[3] = uz_dev_now(dev);
    read_listing(dev, text, sizeof(text));
    check_listing(dev, &m, text);

    /* Pieces: small buffers give the same text, whole lines each time. */
    char whole[sizeof(text)];
    memcpy(whole, text, sizeof(text));
    for (size_t len = 40 + 1; len < 300; len += 37) {
        char piece[300], joined[sizeof(text)] = "";
        size_t at = 0;
        uint64_t index = 0;
        ssize_t n;
        while ((n = uz_dev_block_state(dev, &index, piece, len)) > 0) {
            CHECK((size_t)n < len && n % 40 == 0);
            memcpy(joined + at, piece, (size_t)n + 1);
            at += (size_t)n;
        }
        CHECK_EQ(n, 0);
        CHECK(!strcmp(joined, whole));
    }
    uint64_t index = 0;
    CHECK_EQ(uz_dev_block_state(dev, &index, text, 40), -ERANGE); /* no room for the NUL */
    CHECK_EQ(uz_dev_block_state(dev, NULL, text, 100), -EINVAL);
    CHECK_EQ(uz_dev_attr_read(dev, "block_state", text, 100), -ERANGE);
    CHECK_EQ(uz_dev_attr_write(dev, "block_state", "1"), -EACCES);
    CHECK_EQ(uz_dev_attr_read(dev, "idle", text, sizeof(text)), -EACCES);

    /* Grammar and errors (idle_store: sysfs_streq "all", else kstrtoull base 0); a refused
     * write changes no mark. */
    mark(dev, &m, "all", true, 0);
    const char *bad[] = {
        "ALL", "all ", " all", "-1", "12abc", "1.5", "0x", "99999999999999999999", "all\n\n", "08"};
    for (size_t i = 0; i < UZ_ARRAY_SIZE(bad); i++)
        CHECK_EQ(uz_dev_attr_write(dev, "idle", bad[i]), -EINVAL);
    read_listing(dev, text, sizeof(text));
    check_listing(dev, &m, text);
    mark(dev, &m, "+010", false, 8); /* octal: 8 s; the slots touched above lose their mark */
    CHECK(!m.idle[1] && !m.idle[3] && !m.idle[31] && m.idle[6]);
    /* Same-filled slots are never idle; discarded slots leave the listing. */
    CHECK_EQ(uz_dev_discard(dev, 0, 5 * PAGE), 0);
    for (uint64_t i = 0; i < 5; i++)
        m.kind[i] = UNWRITTEN;
    read_listing(dev, text, sizeof(text));
    check_listing(dev, &m, text);

    /* Uninitialised: -EINVAL, as the kernel. */
    CHECK_EQ(uz_dev_attr_write(dev, "reset", "1"), 0);
    CHECK_EQ(uz_dev_attr_write(dev, "idle", "all"), -EINVAL);
    read_listing(dev, text, sizeof(text));
    CHECK_EQ(strlen(text), 0);
    uz_dev_destroy(dev);
    printf("dev_idle: ok\n");
    return 0;
}
