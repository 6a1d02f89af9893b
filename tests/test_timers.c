/* SPDX-License-Identifier: MIT */
/*
 * The timer set for event loops (src/timers.c): order of expiry, moving and removing deadlines,
 * poll timeouts, allocation failure, and random operation sequences checked step by step
 * against a plain array model.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"

static rill_timers *timers_ok(void)
{
    rill_timers *t = NULL;
    ck_assert_int_eq(rill_timers_new(&t), RILL_OK);
    ck_assert_ptr_nonnull(t);
    return t;
}

static int keys[4096];

START_TEST(test_empty)
{
    rill_timers *t = timers_ok();
    ck_assert_uint_eq(rill_timers_count(t), 0);
    ck_assert_int_eq(rill_timers_timeout(t, 0), -1);
    ck_assert_ptr_null(rill_timers_expire(t, INT64_MAX));
    ck_assert_int_eq(rill_timers_remove(t, &keys[0]), 0);
    ck_assert_int_eq(rill_timers_get(t, &keys[0], NULL), 0);
    rill_timers_free(t);
    rill_timers_free(NULL);
}
END_TEST

START_TEST(test_order_and_ties)
{
    rill_timers *t = timers_ok();
    int64_t d[] = { 50, 10, 30, 10, 20, 30, 10 };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        ck_assert_int_eq(rill_timers_set(t, &keys[i], d[i]), RILL_OK);
    ck_assert_uint_eq(rill_timers_count(t), 7);
    ck_assert_int_eq(rill_timers_timeout(t, 0), 10);
    ck_assert_int_eq(rill_timers_timeout(t, 9), 1);
    ck_assert_int_eq(rill_timers_timeout(t, 10), 0);
    ck_assert_int_eq(rill_timers_timeout(t, 1000), 0);
    /* Nothing due before 10; then equal deadlines come out in the order they were set. */
    ck_assert_ptr_null(rill_timers_expire(t, 9));
    int want[] = { 1, 3, 6, 4, 2, 5, 0 };
    for (size_t i = 0; i < 7; i++)
        ck_assert_ptr_eq(rill_timers_expire(t, 100), &keys[want[i]]);
    ck_assert_ptr_null(rill_timers_expire(t, 100));
    ck_assert_uint_eq(rill_timers_count(t), 0);
    rill_timers_free(t);
}
END_TEST

START_TEST(test_move_and_remove)
{
    rill_timers *t = timers_ok();
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(rill_timers_set(t, &keys[i], 100 + i), RILL_OK);
    /* Later, earlier, and to the same deadline as another (then it counts as set last). */
    ck_assert_int_eq(rill_timers_set(t, &keys[0], 500), RILL_OK);
    ck_assert_int_eq(rill_timers_set(t, &keys[9], 1), RILL_OK);
    ck_assert_int_eq(rill_timers_set(t, &keys[1], 105), RILL_OK);
    ck_assert_uint_eq(rill_timers_count(t), 10);
    int64_t dl = 0;
    ck_assert_int_eq(rill_timers_get(t, &keys[0], &dl), 1);
    ck_assert_int_eq(dl, 500);
    ck_assert_int_eq(rill_timers_remove(t, &keys[5]), 1);
    ck_assert_int_eq(rill_timers_remove(t, &keys[5]), 0);
    ck_assert_int_eq(rill_timers_get(t, &keys[5], &dl), 0);
    int want[] = { 9, 2, 3, 4, 1, 6, 7, 8, 0 };
    for (size_t i = 0; i < 9; i++)
        ck_assert_ptr_eq(rill_timers_expire(t, 1000), &keys[want[i]]);
    ck_assert_ptr_null(rill_timers_expire(t, 1000));
    rill_timers_free(t);
}
END_TEST

START_TEST(test_timeout_range)
{
    rill_timers *t = timers_ok();
    ck_assert_int_eq(rill_timers_set(t, &keys[0], INT64_MAX / 2), RILL_OK);
    ck_assert_int_eq(rill_timers_timeout(t, 0), INT_MAX);
    ck_assert_int_eq(rill_timers_set(t, &keys[0], -5), RILL_OK);
    ck_assert_int_eq(rill_timers_timeout(t, 0), 0);
    ck_assert_ptr_eq(rill_timers_expire(t, -5), &keys[0]);
    /* The ends of int64: no overflow (UBSan aborts on one), the answer in range. */
    ck_assert_int_eq(rill_timers_set(t, &keys[1], INT64_MIN), RILL_OK);
    ck_assert_int_eq(rill_timers_timeout(t, 1000), 0);
    ck_assert_ptr_eq(rill_timers_expire(t, 1000), &keys[1]);
    ck_assert_int_eq(rill_timers_set(t, &keys[2], INT64_MAX), RILL_OK);
    ck_assert_int_eq(rill_timers_timeout(t, -1000), INT_MAX);
    ck_assert_int_eq(rill_timers_timeout(t, INT64_MIN), INT_MAX);
    ck_assert_int_eq(rill_timers_timeout(t, INT64_MAX), 0);
    ck_assert_int_eq(rill_timers_remove(t, &keys[2]), 1);
    /* The clock helper is monotonic and in milliseconds. */
    int64_t a = rill_now_ms();
    struct timespec ts = { 0, 20L * 1000 * 1000 };
    nanosleep(&ts, NULL);
    int64_t b = rill_now_ms();
    ck_assert_msg(b - a >= 19 && b - a < 5000, "rill_now_ms advanced %lld ms over a 20 ms sleep",
                  (long long)(b - a));
    rill_timers_free(t);
}
END_TEST

START_TEST(test_invalid)
{
    rill_timers *t = timers_ok();
    rill_status st = rill_timers_new(NULL);
    ck_assert_int_eq(st, RILL_E_INVALID);
    ck_assert_str_eq(rill_strerror(st), "invalid argument");
    st = rill_timers_set(t, NULL, 5);
    ck_assert_int_eq(st, RILL_E_INVALID);
    ck_assert_str_eq(rill_strerror(st), "invalid argument");
    ck_assert_int_eq(rill_timers_set(NULL, &keys[0], 5), RILL_E_INVALID);
    ck_assert_int_eq(rill_timers_remove(NULL, &keys[0]), 0);
    ck_assert_int_eq(rill_timers_remove(t, NULL), 0);
    ck_assert_int_eq(rill_timers_get(NULL, &keys[0], NULL), 0);
    ck_assert_uint_eq(rill_timers_count(NULL), 0);
    ck_assert_int_eq(rill_timers_timeout(NULL, 0), -1);
    ck_assert_ptr_null(rill_timers_expire(NULL, 0));
    ck_assert_uint_eq(rill_timers_count(t), 0);
    rill_timers_free(t);
}
END_TEST

/* Every allocation a set can make fails once; the set keeps what it had and stays usable. */
START_TEST(test_nomem)
{
    rt_counting_on();
    rt_allocs_left = 0;
    rill_timers *t = NULL;
    rill_status st = rill_timers_new(&t);
    ck_assert_int_eq(st, RILL_E_NOMEM);
    ck_assert_str_eq(rill_strerror(st), "out of memory");
    ck_assert_ptr_null(t);
    rt_allocs_left = -1;
    t = timers_ok();
    int failures = 0;
    for (int i = 0; i < 200; i++) {
        rt_allocs_left = 0; /* every allocation fails until the retry */
        size_t before = rill_timers_count(t);
        st = rill_timers_set(t, &keys[i], 1000 - i);
        if (st == RILL_E_NOMEM) {
            failures++;
            ck_assert_uint_eq(rill_timers_count(t), before);
            ck_assert_int_eq(rill_timers_get(t, &keys[i], NULL), 0);
            rt_allocs_left = -1;
            ck_assert_int_eq(rill_timers_set(t, &keys[i], 1000 - i), RILL_OK);
        } else {
            ck_assert_int_eq(st, RILL_OK);
        }
        rt_allocs_left = -1;
    }
    /* The heap grows at 0, 16, 32, 64 and 128 keys, the table also at 8: each failed once. */
    ck_assert_int_eq(failures, 6);
    for (int i = 199; i >= 0; i--)
        ck_assert_ptr_eq(rill_timers_expire(t, 1000), &keys[i]);
    rill_timers_free(t);
    ck_assert_uint_eq(rt_live_bytes, 0);
    rt_counting_off();
}
END_TEST

/* ---- random sequences against a model ---- */

struct model_entry {
    int key;
    int64_t deadline;
    uint64_t seq;
};

struct model {
    struct model_entry e[4096];
    size_t n;
    uint64_t seq;
};

static long model_find(const struct model *m, int key)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].key == key)
            return (long)i;
    return -1;
}

static long model_first(const struct model *m)
{
    long best = -1;
    for (size_t i = 0; i < m->n; i++) {
        const struct model_entry *a = &m->e[i];
        if (best < 0 || a->deadline < m->e[best].deadline ||
            (a->deadline == m->e[best].deadline && a->seq < m->e[best].seq))
            best = (long)i;
    }
    return best;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void run_random(uint64_t seed, int nkeys, int ops, int span)
{
    static struct model m;
    memset(&m, 0, sizeof m);
    uint64_t rng = seed * 2654435761u + 1;
    rill_timers *t = timers_ok();
    int64_t now = 0;
    for (int op = 0; op < ops; op++) {
        int key = (int)(rng_next(&rng) % (uint64_t)nkeys);
        unsigned what = (unsigned)(rng_next(&rng) % 10);
        if (what < 5) { /* set: add or move */
            int64_t dl = now + (int64_t)(rng_next(&rng) % (uint64_t)span) - span / 8;
            ck_assert_int_eq(rill_timers_set(t, &keys[key], dl), RILL_OK);
            long i = model_find(&m, key);
            if (i < 0)
                i = (long)m.n++;
            m.e[i] = (struct model_entry){ key, dl, m.seq++ };
        } else if (what < 7) { /* remove */
            long i = model_find(&m, key);
            ck_assert_int_eq(rill_timers_remove(t, &keys[key]), i >= 0);
            if (i >= 0)
                m.e[i] = m.e[--m.n];
        } else if (what < 9) { /* advance the clock and expire what is due */
            now += (int64_t)(rng_next(&rng) % (uint64_t)(span / 4 + 1));
            for (;;) {
                long i = model_first(&m);
                void *got = rill_timers_expire(t, now);
                if (i < 0 || m.e[i].deadline > now) {
                    ck_assert_msg(got == NULL, "seed %llu op %d: expired key %ld, none due",
                                  (unsigned long long)seed, op, got ? (int *)got - keys : -1L);
                    break;
                }
                ck_assert_msg(got == &keys[m.e[i].key], "seed %llu op %d: expired %ld, not %d",
                              (unsigned long long)seed, op, got ? (int *)got - keys : -1L,
                              m.e[i].key);
                m.e[i] = m.e[--m.n];
            }
        } else { /* look up */
            long i = model_find(&m, key);
            int64_t dl = -1;
            ck_assert_int_eq(rill_timers_get(t, &keys[key], &dl), i >= 0);
            if (i >= 0)
                ck_assert_int_eq(dl, m.e[i].deadline);
        }
        ck_assert_uint_eq(rill_timers_count(t), m.n);
        long first = model_first(&m);
        int want = -1;
        if (first >= 0) {
            int64_t left = m.e[first].deadline - now;
            want = left <= 0 ? 0 : (int)left;
        }
        ck_assert_int_eq(rill_timers_timeout(t, now), want);
    }
    /* Drain: everything comes out in model order. */
    while (m.n) {
        long i = model_first(&m);
        ck_assert_ptr_eq(rill_timers_expire(t, INT64_MAX), &keys[m.e[i].key]);
        m.e[i] = m.e[--m.n];
    }
    ck_assert_ptr_null(rill_timers_expire(t, INT64_MAX));
    rill_timers_free(t);
}

/* Few keys and a narrow span: many ties, many moves of one key. */
START_TEST(test_random_small)
{
    run_random((uint64_t)_i + 1, 8, 4000, 16);
}
END_TEST

/* More keys: deep heaps, table growth and backward-shift deletion in long probe runs. */
START_TEST(test_random_large)
{
    run_random((uint64_t)_i + 100, 3000, 30000, 5000);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("timers");
    TCase *tc = tcase_create("timers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_order_and_ties);
    tcase_add_test(tc, test_move_and_remove);
    tcase_add_test(tc, test_timeout_range);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_nomem);
    tcase_add_loop_test(tc, test_random_small, 0, 20);
    tcase_add_loop_test(tc, test_random_large, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}
