/* SPDX-License-Identifier: MIT */
/*
 * Happy Eyeballs against an address that never answers. The test runs in a child inside a
 * private network namespace of its own: a veth pair (both ends in that namespace), fd00::1 on
 * one end, and a static neighbour entry for fd00::2 with a MAC nobody has, so SYNs to
 * [fd00::2] are dropped silently by the other end. Nothing leaves the namespace. Where
 * namespaces cannot be made (no privilege, no `ip`), the test says so and is skipped.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

/* Set up the namespace; 0 on success, else writes why into @p why. */
static int make_namespace(char *why, size_t len)
{
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(why, len, "unshare(CLONE_NEWNET) failed (needs root or user namespaces)");
        return -1;
    }
    static const char *const steps[] = {
        "ip link set lo up",
        "ip link add rill0 type veth peer name rill1",
        "ip link set rill0 up",
        "ip link set rill1 up",
        "ip -6 addr add fd00::1/64 dev rill0 nodad",
        "ip -6 neigh add fd00::2 lladdr 02:00:00:00:00:99 dev rill0 nud permanent",
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "%s >/dev/null 2>&1", steps[i]);
        if (system(cmd) != 0) {
            snprintf(why, len, "\"%s\" failed", steps[i]);
            return -1;
        }
    }
    return 0;
}

enum { SKIPPED = 77 };

struct trace {
    int attempts;
    int failed;
    char winner[64];
};

static void on_event(void *arg, const rill_connect_event *ev)
{
    struct trace *t = arg;
    if (ev->type == RILL_EV_ATTEMPT)
        t->attempts++;
    if (ev->type == RILL_EV_ATTEMPT_FAILED)
        t->failed++;
    if (ev->type == RILL_EV_CONNECTED)
        snprintf(t->winner, sizeof t->winner, "%s", ev->addr);
}

/*
 * In the namespace: [fd00::2] (silent) is first, 127.0.0.1 (listening) second. The connect
 * must win on 127.0.0.1 after the racing delay, long before the deadline.
 * values: 0 status, 1 elapsed ms, 2 attempts, 3 winner is 127.0.0.1, 4 silent attempt failed
 */
static void race_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    char why[160];
    if (make_namespace(why, sizeof why) != 0) {
        snprintf(rep->msg, sizeof rep->msg, "%s", why);
        rep->status = SKIPPED;
        return;
    }
    rill_error err;
    rill_listener *l = NULL;
    if (rill_listen("127.0.0.1", 0, NULL, &l, &err) != RILL_OK) {
        snprintf(rep->msg, sizeof rep->msg, "listen: %s", err.msg);
        return;
    }
    char override[96];
    snprintf(override, sizeof override, "race.rill.test:%u:[fd00::2],127.0.0.1",
             rill_listener_port(l));
    const char *const overrides[] = { override, NULL };
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.overrides = overrides;
    co.dns_servers = "127.0.0.1:9"; /* never asked: the override answers */
    rill_ctx *ctx = NULL;
    if (rill_ctx_new(&co, &ctx, &err) != RILL_OK) {
        snprintf(rep->msg, sizeof rep->msg, "ctx: %s", err.msg);
        return;
    }
    struct trace t = { 0 };
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 5000;
    o.attempt_delay_ms = 300;
    o.on_event = on_event;
    o.on_event_arg = &t;
    rill_stream *s = NULL;
    int64_t t0 = rt_now_us();
    rill_status st = rill_connect(ctx, "race.rill.test", rill_listener_port(l), &o, &s, &err);
    rep->values[0] = st;
    rep->values[1] = (int)((rt_now_us() - t0) / 1000);
    rep->values[2] = t.attempts;
    rep->values[3] = strncmp(t.winner, "127.0.0.1:", 10) == 0;
    rep->values[4] = t.failed;
    if (st != RILL_OK)
        snprintf(rep->msg, sizeof rep->msg, "%s", err.msg);
    rill_close(s);

    /* Racing off: one address at a time, so the silent one holds until the deadline. */
    o.attempt_delay_ms = -1;
    o.timeout_ms = 600;
    t0 = rt_now_us();
    st = rill_connect(ctx, "race.rill.test", rill_listener_port(l), &o, &s, &err);
    rep->values[5] = st;
    rep->values[6] = (int)((rt_now_us() - t0) / 1000);
    if (st == RILL_OK)
        rill_close(s);
    else
        snprintf(rep->msg + strlen(rep->msg), sizeof rep->msg - strlen(rep->msg), "|%s", err.msg);
    rill_ctx_free(ctx);
    rill_listener_free(l);
    rep->status = 0;
}

START_TEST(test_second_family_wins_after_delay)
{
    rt_child_result res;
    rt_run_child(race_child, NULL, 20, &res);
    ck_assert_msg(res.exited, "race child did not exit");
    if (res.report.status == SKIPPED) {
        fprintf(stderr, "race: SKIPPED: network namespaces unavailable: %s\n", res.report.msg);
        return;
    }
    ck_assert_msg(res.report.status == 0, "race child failed: %s", res.report.msg);
    ck_assert_msg(res.report.values[0] == RILL_OK, "connect failed: %s", res.report.msg);
    ck_assert_int_eq(res.report.values[3], 1);    /* 127.0.0.1 won */
    ck_assert_int_eq(res.report.values[2], 2);    /* the silent address, then 127.0.0.1 */
    ck_assert_int_eq(res.report.values[4], 0);    /* the silent attempt never failed: it hung */
    ck_assert_int_ge(res.report.values[1], 300);  /* after the racing delay... */
    ck_assert_int_lt(res.report.values[1], 2000); /* ...not after the 5 s deadline */
    /* Without racing the silent address keeps the connect until the deadline. */
    ck_assert_int_eq(res.report.values[5], RILL_E_TIMEOUT);
    ck_assert_msg(strstr(res.report.msg, "timed out after 600 ms") != NULL, "message: %s",
                  res.report.msg);
    ck_assert_int_ge(res.report.values[6], 600);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("race");
    TCase *tc = tcase_create("happy eyeballs");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_second_family_wins_after_delay);
    suite_add_tcase(s, tc);
    return s;
}
