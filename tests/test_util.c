// SPDX-License-Identifier: MIT
/*
 * test_util.c - the common helpers: size parsing, sharded counters under threads, the
 * big-reader lock's exclusion, thread slots.
 */
#include "harness.h"

#include <pthread.h>

#include "util.h"

static struct uz_counter counter;
static struct uz_brlock br;
static long shared_value; /* written under the brlock's write side only */

static void *count_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        uz_counter_add(&counter, 1);
    for (int i = 0; i < 2000; i++) {
        if (i % 10 == 0) {
            uz_brlock_write_lock(&br);
            long v = shared_value;
            shared_value = v + 1;
            uz_brlock_write_unlock(&br);
        } else {
            unsigned s = uz_brlock_read_lock(&br);
            CHECK(shared_value >= 0);
            uz_brlock_read_unlock(&br, s);
        }
    }
    return NULL;
}

static void *slot_thread(void *arg)
{
    unsigned *out = arg;
    *out = uz_thread_slot();
    CHECK_EQ(uz_thread_slot(), *out);
    return NULL;
}

int main(void)
{
    uint64_t v;
    CHECK_EQ(uz_parse_size("0", &v), 0);
    CHECK_EQ(v, 0);
    CHECK_EQ(uz_parse_size("4096", &v), 0);
    CHECK_EQ(v, 4096);
    CHECK_EQ(uz_parse_size("64K", &v), 0);
    CHECK_EQ(v, 65536);
    CHECK_EQ(uz_parse_size("512M\n", &v), 0);
    CHECK_EQ(v, 512ull << 20);
    CHECK_EQ(uz_parse_size(" 2G ", &v), 0);
    CHECK_EQ(v, 2ull << 30);
    CHECK_EQ(uz_parse_size("1GiB", &v), 0);
    CHECK_EQ(v, 1ull << 30);
    CHECK_EQ(uz_parse_size("3t", &v), 0);
    CHECK_EQ(v, 3ull << 40);
    CHECK_EQ(uz_parse_size("0x1000", &v), 0);
    CHECK_EQ(v, 4096);
    v = 77;
    CHECK_EQ(uz_parse_size("", &v), -EINVAL);
    CHECK_EQ(uz_parse_size("-1", &v), -EINVAL);
    CHECK_EQ(uz_parse_size("12Q", &v), -EINVAL);
    CHECK_EQ(uz_parse_size("1G x", &v), -EINVAL);
    CHECK_EQ(uz_parse_size("99999999999999999999", &v), -EINVAL);
    CHECK_EQ(uz_parse_size("16777216T", &v), -EINVAL);
    CHECK_EQ(v, 77); /* failures change nothing */

    CHECK_EQ(uz_brlock_init(&br), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, count_thread, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(uz_counter_read(&counter), 400000);
    CHECK_EQ(shared_value, 4 * 200);
    uz_counter_reset(&counter);
    CHECK_EQ(uz_counter_read(&counter), 0);
    uz_brlock_destroy(&br);

    unsigned a = 0, b = 0;
    pthread_create(&t[0], NULL, slot_thread, &a);
    pthread_join(t[0], NULL);
    pthread_create(&t[1], NULL, slot_thread, &b);
    pthread_join(t[1], NULL);
    CHECK(a != b);
    printf("util: ok\n");
    return 0;
}
