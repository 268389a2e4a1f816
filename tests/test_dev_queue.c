// SPDX-License-Identifier: MIT
/*
 * test_dev_queue.c - the async write queue's contract (dev.h, uz_dev_write_page_async):
 *  - writes to one index complete in submission order, also when a `done` callback submits to
 *    its own full queue (regression: it used to write inline, ahead of earlier queued writes);
 *  - callbacks that submit to each other's full queues never hang (regression: two workers
 *    blocked forever);
 *  - uz_dev_flush() and reset from a callback return -EDEADLK instead of waiting for themselves;
 *  - reset, disksize and codec changes drain the queue and keep new submissions out until they
 *    are done (regression: a write queued between the flush and the lock ran after the reset);
 *  - uz_dev_disksize() races cleanly with reset (TSan build).
 * Every wait is bounded by alarm(): a hang is a failure.
 */
#include <uzram/dev.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define PAGE  4096u
#define DEPTH 256 /* UZ_DEV_QUEUE_DEPTH */
#define SPAN  64  /* UZ_DEV_WORKER_SPAN: slots i and j share a worker when i/SPAN == j/SPAN */

/* The k-th slot (k < SPAN * many) that worker w of two serves. */
static uint64_t slot_of(unsigned w, uint64_t k)
{
    return (k / SPAN) * 2 * SPAN + w * SPAN + k % SPAN;
}

static void fill(unsigned char *p, unsigned v)
{
    for (unsigned i = 0; i < PAGE; i++)
        p[i] = (unsigned char)(v * 31 + i / 64);
}

static unsigned page_value(struct uz_dev *dev, uint64_t index)
{
    unsigned char got[PAGE], want[PAGE];
    CHECK_EQ(uz_dev_read_page(dev, index, got), 0);
    for (unsigned v = 0; v < 4096; v++) {
        fill(want, v);
        if (!memcmp(got, want, PAGE))
            return v;
    }
    return ~0u;
}

/* ---- order: a callback submits to its own full queue ---- */

struct order_ctx {
    struct uz_dev *dev;
    atomic_int release; /* set once the queue is full */
    atomic_int done_calls, errors;
    unsigned char late[PAGE];
    int late_rc;
};

static void count_done(void *arg, int rc)
{
    struct order_ctx *c = arg;
    if (rc)
        atomic_fetch_add(&c->errors, 1);
    atomic_fetch_add(&c->done_calls, 1);
}

static void first_done(void *arg, int rc)
{
    struct order_ctx *c = arg;
    CHECK_EQ(rc, 0);
    while (!atomic_load(&c->release))
        usleep(1000);
    /* The queue holds this request and DEPTH-1 writes to index 5 submitted before this one:
     * this write comes last and must win. */
    c->late_rc = uz_dev_write_page_async(c->dev, 5, c->late, count_done, c);
    atomic_fetch_add(&c->done_calls, 1);
}

static void test_callback_order(void)
{
    struct uz_dev_config cfg = {.disksize = 64 * PAGE, .workers = 1};
    struct order_ctx c = {0};
    CHECK_EQ(uz_dev_create(&cfg, &c.dev), 0);
    unsigned char *early = malloc(PAGE * 8);
    for (unsigned i = 0; i < 8; i++)
        fill(early + i * PAGE, 100 + i);
    fill(c.late, 7);
    alarm(60);
    CHECK_EQ(uz_dev_write_page_async(c.dev, 0, early, first_done, &c), 0);
    for (unsigned i = 0; i < DEPTH - 1; i++)
        CHECK_EQ(uz_dev_write_page_async(c.dev, 5, early + (i % 8) * PAGE, count_done, &c), 0);
    atomic_store(&c.release, 1);
    CHECK_EQ(uz_dev_flush(c.dev), 0);
    /* The late write was submitted inside a callback after flush started: flush again. */
    while (atomic_load(&c.done_calls) < DEPTH + 1)
        CHECK_EQ(uz_dev_flush(c.dev), 0);
    alarm(0);
    CHECK_EQ(c.late_rc, 0);
    CHECK_EQ(atomic_load(&c.errors), 0);
    CHECK_EQ(page_value(c.dev, 5), 7);
    uz_dev_destroy(c.dev);
    free(early);
}

/* ---- two workers whose callbacks submit to each other's full queues ---- */

struct cross_ctx {
    struct uz_dev *dev;
    atomic_int release, in_callback;
    atomic_int calls;
    unsigned char page[PAGE];
    int rc[2];
};

static void cross_count(void *arg, int rc)
{
    struct cross_ctx *c = arg;
    CHECK_EQ(rc, 0);
    atomic_fetch_add(&c->calls, 1);
}

static void cross_done(struct cross_ctx *c, int me)
{
    atomic_fetch_add(&c->in_callback, 1);
    while (!atomic_load(&c->release))
        usleep(1000);
    /* Slot_of(1 - me, 0) belongs to the other worker, whose queue is full and whose own
     * callback is doing the same to ours. */
    c->rc[me] = uz_dev_write_page_async(c->dev, slot_of(1 - me, 0), c->page, cross_count, c);
    atomic_fetch_add(&c->calls, 1);
}
static void cross_done0(void *arg, int rc)
{
    CHECK_EQ(rc, 0);
    cross_done(arg, 0);
}
static void cross_done1(void *arg, int rc)
{
    CHECK_EQ(rc, 0);
    cross_done(arg, 1);
}

static void test_cross_submit(void)
{
    struct uz_dev_config cfg = {.disksize = 1024 * PAGE, .workers = 2};
    struct cross_ctx c = {0};
    CHECK_EQ(uz_dev_create(&cfg, &c.dev), 0);
    fill(c.page, 3);
    alarm(60);
    CHECK_EQ(uz_dev_write_page_async(c.dev, slot_of(0, 0), c.page, cross_done0, &c), 0);
    CHECK_EQ(uz_dev_write_page_async(c.dev, slot_of(1, 0), c.page, cross_done1, &c), 0);
    /* Fill both rings (stripes of SPAN slots alternate between the two workers). */
    for (unsigned i = 1; i < DEPTH; i++) {
        CHECK_EQ(uz_dev_write_page_async(c.dev, slot_of(0, i), c.page, cross_count, &c), 0);
        CHECK_EQ(uz_dev_write_page_async(c.dev, slot_of(1, i), c.page, cross_count, &c), 0);
    }
    atomic_store(&c.release, 1);
    while (atomic_load(&c.calls) < 2 * DEPTH + 2)
        CHECK_EQ(uz_dev_flush(c.dev), 0);
    alarm(0);
    CHECK_EQ(c.rc[0], 0);
    CHECK_EQ(c.rc[1], 0);
    uz_dev_destroy(c.dev);
}

/* ---- flush and reset from a callback ---- */

struct self_ctx {
    struct uz_dev *dev;
    atomic_int flush_rc, reset_rc, async_rc, calls;
};

static void self_nested(void *arg, int rc)
{
    struct self_ctx *c = arg;
    atomic_fetch_add(&c->calls, 1);
}

static void self_done(void *arg, int rc)
{
    struct self_ctx *c = arg;
    atomic_store(&c->flush_rc, uz_dev_flush(c->dev));
    atomic_store(&c->reset_rc, uz_dev_attr_write(c->dev, "reset", "1"));
    static unsigned char page[PAGE];
    atomic_store(&c->async_rc, uz_dev_write_page_async(c->dev, 2, page, self_nested, c));
    atomic_fetch_add(&c->calls, 1);
}

static void test_self_calls(void)
{
    struct uz_dev_config cfg = {.disksize = 16 * PAGE, .workers = 1};
    struct self_ctx c = {.flush_rc = 1, .reset_rc = 1, .async_rc = 1};
    CHECK_EQ(uz_dev_create(&cfg, &c.dev), 0);
    unsigned char page[PAGE];
    fill(page, 1);
    alarm(30);
    CHECK_EQ(uz_dev_write_page_async(c.dev, 1, page, self_done, &c), 0);
    while (atomic_load(&c.calls) < 2)
        CHECK_EQ(uz_dev_flush(c.dev), 0);
    alarm(0);
    CHECK_EQ(atomic_load(&c.flush_rc), -EDEADLK);
    CHECK_EQ(atomic_load(&c.reset_rc), -EDEADLK);
    CHECK_EQ(atomic_load(&c.async_rc), 0);
    CHECK_EQ(uz_dev_disksize(c.dev), 16 * PAGE); /* the reset did not happen */
    CHECK_EQ(page_value(c.dev, 1), 1);
    uz_dev_destroy(c.dev);
}

/* ---- reset against concurrent submitters: nothing queued runs against freed storage ---- */

struct gate_ctx {
    struct uz_dev *dev;
    atomic_int stop;
    atomic_long ok, einval, other;
};

static void gate_done(void *arg, int rc)
{
    struct gate_ctx *c = arg;
    if (rc == 0)
        atomic_fetch_add(&c->ok, 1);
    else if (rc == -EINVAL)
        atomic_fetch_add(&c->einval, 1);
    else
        atomic_fetch_add(&c->other, 1);
}

static void *gate_submitter(void *arg)
{
    struct gate_ctx *c = arg;
    static unsigned char page[PAGE];
    uint64_t i = 0;
    while (!atomic_load(&c->stop)) {
        int rc = uz_dev_write_page_async(c->dev, i++ % 64, page, gate_done, c);
        CHECK(rc == 0 || rc == -EINVAL); /* -EINVAL: the device is reset right now */
        (void)uz_dev_disksize(c->dev);   /* races with reset: must be clean under TSan */
    }
    return NULL;
}

static void test_reset_gate(void)
{
    struct uz_dev_config cfg = {.disksize = 64 * PAGE, .workers = 2};
    struct gate_ctx c = {0};
    CHECK_EQ(uz_dev_create(&cfg, &c.dev), 0);
    alarm(120);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, gate_submitter, &c) == 0);
    for (int round = 0; round < 50; round++) {
        usleep(2000);
        CHECK_EQ(uz_dev_attr_write(c.dev, "reset", "1"), 0);
        CHECK_EQ(uz_dev_attr_write(c.dev, "disksize", "262144"), 0);
    }
    atomic_store(&c.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(uz_dev_flush(c.dev), 0);
    alarm(0);
    /* Every accepted write ran before the reset freed the storage, or after disksize was set
     * again: none was accepted and then failed against a reset device. */
    CHECK_EQ(atomic_load(&c.einval), 0);
    CHECK_EQ(atomic_load(&c.other), 0);
    CHECK(atomic_load(&c.ok) > 0);
    uz_dev_destroy(c.dev);
}

int main(void)
{
    test_callback_order();
    test_cross_submit();
    test_self_calls();
    test_reset_gate();
    printf("dev_queue: ok\n");
    return 0;
}
