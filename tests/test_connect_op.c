/* SPDX-License-Identifier: MIT */
/*
 * The non-blocking connect op (rill_connect_start, rill_connect_poll_info, rill_connect_step,
 * rill_connect_op_free), driven by a poll() loop in the test:
 *
 *  - every Happy Eyeballs case of tests/support/he_cases.c (the same as test_happy_eyeballs.c
 *    runs through rill_connect), through a loop over the op that also checks its contract: no
 *    call blocks, poll_info names a descriptor and events and never an endless wait while a
 *    deadline is set, a finished op repeats its outcome and refuses poll_info;
 *  - an IP literal starts its attempt within rill_connect_start; a start never waits for DNS;
 *  - cancelling (rill_connect_op_free) in every phase: DNS pending, the resolution delay, an
 *    attempt in flight, a TLS handshake in progress, a finished op: no descriptor and no byte of
 *    rill's memory left;
 *  - the deadline in every phase, with a message that names the phase;
 *  - 200 ops by name in one thread against a rill listener, each sending a checksummed payload;
 *  - invalid arguments.
 *
 * Kept out of the build (the glob takes tests/test_*.c) until the op is implemented: rename to
 * tests/test_connect_op.c to enable it. Loopback only; blackholed addresses exist only inside
 * the namespaces the tests make.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certs.h"
#include "dns_delay.h"
#include "eyeballs.h"
#include "he_cases.h"
#include "support.h"

#define DOMAIN RT_HE_DOMAIN
#define NEVER  RT_DNSD_NEVER

/* No call of the op may take longer than this (it would be blocking). */
#define CALL_MAX_US 150000

static void teardown(void)
{
    rt_dnsd_stop_all();
    rt_watchdog(0, NULL);
}

/* ---- driving an op ---- */

struct drive {
    int steps;
    int64_t longest_us; /* the slowest start, poll_info or step call */
    char problem[256];  /* the first broken contract, "" if none */
};

static void problem(struct drive *dr, const char *fmt, ...) RILL_PRINTF(2, 3);

static void problem(struct drive *dr, const char *fmt, ...)
{
    if (dr->problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dr->problem, sizeof dr->problem, fmt, ap);
    va_end(ap);
}

static void timed(struct drive *dr, int64_t t0, const char *what)
{
    int64_t took = rt_now_us() - t0;
    if (took > dr->longest_us)
        dr->longest_us = took;
    if (took > CALL_MAX_US)
        problem(dr, "%s took %lld ms: a call of the op blocked", what, (long long)(took / 1000));
}

/*
 * One round: ask what the op waits for, wait for it (at most @p cap_ms), step. Returns the
 * step's status; checks the contract of poll_info and step into @p dr.
 */
static rill_status drive_once(rill_connect_op *op, int deadline_set, int cap_ms, rill_stream **out,
                              rill_error *err, struct drive *dr)
{
    int fd = -1, timeout = -2;
    short events = 0;
    int64_t t0 = rt_now_us();
    rill_status st = rill_connect_poll_info(op, &fd, &events, &timeout);
    timed(dr, t0, "rill_connect_poll_info");
    if (st != RILL_OK) {
        problem(dr, "poll_info on a running op: %s", rill_strerror(st));
        return st;
    }
    /* fd -1: only the timer (then it must be set: an op never waits on nothing). */
    if ((fd < 0 && timeout < 0) ||
        (fd >= 0 && (events == 0 || (events & ~(POLLIN | POLLOUT)) != 0)))
        problem(dr, "poll_info gave fd %d events 0x%x timeout %d", fd, (unsigned)events, timeout);
    if (timeout < -1 || (deadline_set && timeout < 0))
        problem(dr, "poll_info gave timeout %d with%s a deadline", timeout,
                deadline_set ? "" : "out");
    int wait = timeout < 0 || timeout > cap_ms ? cap_ms : timeout;
    struct pollfd p = { .fd = fd, .events = events };
    if (poll(&p, 1, wait) < 0 && errno != EINTR)
        problem(dr, "poll: %s", strerror(errno));
    if (p.revents & POLLNVAL)
        problem(dr, "poll_info gave fd %d, which is not open", fd);
    t0 = rt_now_us();
    *out = NULL;
    st = rill_connect_step(op, out, err);
    timed(dr, t0, "rill_connect_step");
    dr->steps++;
    if (st == RILL_OK && *out == NULL)
        problem(dr, "step returned RILL_OK without a stream");
    if (st != RILL_OK && st != RILL_WANT_READ && st != RILL_WANT_WRITE && *out != NULL)
        problem(dr, "step failed (%s) and set *out", rill_strerror(st));
    return st;
}

/* After the op finished with @p final: steps repeat it (without a stream), poll_info refuses. */
static void check_finished(rill_connect_op *op, rill_status final, struct drive *dr)
{
    rill_stream *again = NULL;
    rill_error err;
    rill_status st = rill_connect_step(op, &again, &err);
    if (st != final || again != NULL)
        problem(dr, "a step after the end returned %s%s, not %s", rill_strerror(st),
                again ? " with a stream" : "", rill_strerror(final));
    if (again)
        (void)rill_close(again);
    int fd, timeout;
    short events;
    st = rill_connect_poll_info(op, &fd, &events, &timeout);
    if (st != RILL_E_INVALID)
        problem(dr, "poll_info on a finished op returned %s, not RILL_E_INVALID",
                rill_strerror(st));
}

/* Drive @p op until it finishes or @p guard_ms pass (then a problem). */
static rill_status drive_to_end(rill_connect_op *op, int deadline_set, int guard_ms,
                                rill_stream **out, rill_error *err, struct drive *dr)
{
    int64_t end = rt_now_us() + (int64_t)guard_ms * 1000;
    for (;;) {
        int left = (int)((end - rt_now_us()) / 1000);
        if (left <= 0) {
            problem(dr, "the op did not finish within %d ms", guard_ms);
            return RILL_E_TIMEOUT;
        }
        rill_status st = drive_once(op, deadline_set, left, out, err, dr);
        if (st != RILL_WANT_READ && st != RILL_WANT_WRITE) {
            check_finished(op, st, dr);
            return st;
        }
    }
}

/*
 * rill_connect's signature over the op, for the shared cases. A broken contract of the op
 * fails the connect with RILL_E_PROTOCOL and says which, so the case's message shows it.
 */
static rill_status op_connect(rill_ctx *ctx, const char *host, uint16_t port,
                              const rill_connect_opts *opts, rill_stream **out, rill_error *err)
{
    struct drive dr = { 0 };
    rill_connect_op *op = NULL;
    int64_t t0 = rt_now_us();
    rill_status st = rill_connect_start(ctx, host, port, opts, &op, err);
    timed(&dr, t0, "rill_connect_start");
    if (st != RILL_OK) {
        if (op != NULL)
            problem(&dr, "start failed (%s) and set *op", rill_strerror(st));
    } else {
        int deadline_set = opts->timeout_ms > 0;
        int guard = deadline_set ? opts->timeout_ms + 3000 : 30000;
        st = drive_to_end(op, deadline_set, guard, out, err, &dr);
        rill_connect_op_free(op);
    }
    if (dr.problem[0]) {
        if (st == RILL_OK)
            (void)rill_close(*out);
        *out = NULL;
        snprintf(err->msg, sizeof err->msg, "connect op contract: %.200s", dr.problem);
        err->code = RILL_E_PROTOCOL;
        return RILL_E_PROTOCOL;
    }
    return st;
}

/* ---- the shared cases, through the op ---- */

START_TEST(test_scenario)
{
    rt_he_scenario(_i, op_connect);
}
END_TEST

START_TEST(test_refusals_start_next_at_once)
{
    rt_he_refusals_start_next_at_once(op_connect);
}
END_TEST

START_TEST(test_tls_events)
{
    rt_he_tls_events(op_connect);
}
END_TEST

START_TEST(test_deadline_covers_dns_and_tls)
{
    rt_he_deadline_covers_dns_and_tls(op_connect);
}
END_TEST

START_TEST(test_attempt_delay)
{
    rt_he_attempt_delay(_i, op_connect);
}
END_TEST

START_TEST(test_interleave_keep_running)
{
    rt_he_interleave_keep_running(op_connect);
}
END_TEST

START_TEST(test_late_answer_joins_race)
{
    rt_he_late_answer_joins_race(op_connect);
}
END_TEST

START_TEST(test_deadline_covers_dns_and_tcp)
{
    rt_he_deadline_covers_dns_and_tcp(op_connect);
}
END_TEST

/* ---- starting ---- */

/*
 * An IP literal needs no DNS: the attempt starts (ATTEMPT event) inside rill_connect_start,
 * and one step after the socket is writable finishes it. Both families where ::1 works.
 */
START_TEST(test_literal_attempts_in_start)
{
    rt_watchdog(30, "test_literal_attempts_in_start");
    int fds = rt_count_fds();
    char why[200];
    int v6 = rt_he_have_v6("test_literal_attempts_in_start (::1 part)");
    rt_famsrv *srv = rt_famsrv_try_start(v6 ? RT_FAM4 | RT_FAM6 : RT_FAM4, RT_FAMSRV_TELL, NULL,
                                         why, sizeof why);
    ck_assert_msg(srv != NULL, "%s", why);
    static const char *const literals[] = { "127.0.0.1", "::1", "[::1]" };
    for (int k = 0; k < (v6 ? 3 : 1); k++) {
        rill_connect_opts o;
        rill_connect_opts_init(&o);
        o.timeout_ms = 3000;
        static rt_trace t;
        rt_trace_attach(&t, &o);
        rill_connect_op *op = NULL;
        rill_error err;
        rill_status st = rill_connect_start(NULL, literals[k], rt_famsrv_port(srv), &o, &op, &err);
        ck_assert_msg(st == RILL_OK, "start %s: %s", literals[k], err.msg);
        char text[2048];
        ck_assert_msg(rt_trace_find(&t, RILL_EV_ATTEMPT, 0, 0) >= 0,
                      "%s: no ATTEMPT within rill_connect_start; trace: %s", literals[k],
                      rt_trace_text(&t, text, sizeof text));
        struct drive dr = { 0 };
        rill_stream *s = NULL;
        st = drive_to_end(op, 1, 5000, &s, &err, &dr);
        rill_connect_op_free(op);
        ck_assert_msg(!dr.problem[0], "%s: %s", literals[k], dr.problem);
        ck_assert_msg(st == RILL_OK, "%s: %s", literals[k], err.msg);
        int fam = rt_famsrv_read_family(s, why, sizeof why);
        ck_assert_msg(fam == (k == 0 ? 4 : 6), "%s: family %d (%s)", literals[k], fam, why);
        ck_assert_int_eq(rill_close(s), RILL_OK);
    }
    rt_famsrv_stop(srv);
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}
END_TEST

/* A name nobody answers: rill_connect_start returns at once, and so does every step. */
START_TEST(test_start_does_not_wait_for_dns)
{
    rt_watchdog(30, "test_start_does_not_wait_for_dns");
    int fds = rt_count_fds();
    const char *host = "mute." DOMAIN;
    rt_dnsd *d = rt_dnsd_start();
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_A, "127.0.0.1", NEVER, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_AAAA, "::1", NEVER, 0, 60), 0);
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 700;
    rill_connect_op *op = NULL;
    rill_error err;
    int64_t t0 = rt_now_us();
    rill_status st = rill_connect_start(ctx, host, 80, &o, &op, &err);
    int64_t took = rt_now_us() - t0;
    ck_assert_msg(st == RILL_OK, "start: %s", err.msg);
    ck_assert_msg(took < CALL_MAX_US, "rill_connect_start took %lld ms", (long long)took / 1000);
    struct drive dr = { 0 };
    rill_stream *s = NULL;
    st = drive_to_end(op, 1, 4000, &s, &err, &dr);
    int64_t total = rt_now_us() - t0;
    rill_connect_op_free(op);
    rill_ctx_free(ctx);
    rt_dnsd_stop(d);
    ck_assert_msg(!dr.problem[0], "%s", dr.problem);
    rt_assert_err(&err, st, RILL_E_TIMEOUT, host);
    ck_assert_msg(total >= 650000 && total < 1500000, "ended after %lld ms",
                  (long long)total / 1000);
    ck_assert_msg(dr.steps >= 1 && dr.steps < 200, "%d steps for one wait", dr.steps);
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}
END_TEST

/* ---- cancelling in every phase ---- */

enum phase {
    PHASE_DNS,       /* no answer yet */
    PHASE_RES_DELAY, /* A answered, AAAA pending: waiting out the resolution delay */
    PHASE_TLS,       /* TCP connected, the handshake under way with a silent peer */
    PHASE_FINISHED,  /* the op connected; the stream is taken and closed first */
    PHASE_FAILED,    /* the op failed (NXDOMAIN) */
    PHASE_ATTEMPT,   /* an attempt in flight to a blackholed address (namespace) */
    NPHASES
};

static const char *const phase_names[NPHASES] = { "DNS pending", "resolution delay",
                                                  "TLS",         "finished",
                                                  "failed",      "attempt in flight" };

/* Drive @p op until the trace shows an event of @p type (and @p family); 0 or -1 with why. */
static int step_until(rill_connect_op *op, const rt_trace *t, rill_connect_event_type type,
                      int family, int guard_ms, struct drive *dr)
{
    int64_t end = rt_now_us() + (int64_t)guard_ms * 1000;
    while (rt_trace_find(t, type, family, 0) < 0) {
        int left = (int)((end - rt_now_us()) / 1000);
        if (left <= 0) {
            problem(dr, "no %s event within %d ms", rt_event_name(type), guard_ms);
            return -1;
        }
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = drive_once(op, 1, left < 50 ? left : 50, &s, &err, dr);
        if (st != RILL_WANT_READ && st != RILL_WANT_WRITE) {
            problem(dr, "the op ended (%s: %s) before %s", rill_strerror(st), err.msg,
                    rt_event_name(type));
            (void)rill_close(s);
            return -1;
        }
    }
    return 0;
}

/* A raw listening socket on 127.0.0.1 that never accepts: TCP connects, TLS never answers. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    ck_assert_msg(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind: %s", strerror(errno));
    ck_assert_msg(listen(fd, 16) == 0, "listen: %s", strerror(errno));
    ck_assert_msg(getsockname(fd, (struct sockaddr *)&sa, &len) == 0, "getsockname: %s",
                  strerror(errno));
    *port = ntohs(sa.sin_port);
    return fd;
}

/*
 * Cancel in @p ph on the main network namespace (every phase but PHASE_ATTEMPT). All of rill's
 * allocations are counted: after rill_connect_op_free and rill_ctx_free none is left; and no
 * descriptor is.
 */
static void cancel_in_phase(enum phase ph)
{
    const char *name = phase_names[ph];
    int fds = rt_count_fds();
    const char *host = "cancel." DOMAIN;
    rt_dnsd *d = rt_dnsd_start();
    int a_delay = ph == PHASE_DNS ? NEVER : 0;
    int aaaa_delay = ph == PHASE_DNS || ph == PHASE_RES_DELAY ? NEVER : 0;
    if (ph != PHASE_FAILED) {
        ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_A, "127.0.0.1", a_delay, 0, 60), 0);
        ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_AAAA, NULL, aaaa_delay, 0, 60), 0);
    }
    uint16_t port = 0;
    int lfd = silent_listener(&port);

    rt_counting_on();
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
    rill_tls_config *tls = NULL;
    rill_error err;
    if (ph == PHASE_TLS) {
        ck_assert_msg(rill_tls_config_new(&tls, &err) == RILL_OK, "%s", err.msg);
        ck_assert_msg(rill_tls_config_set_ca_file(tls, rt_certs_get()->ca, &err) == RILL_OK, "%s",
                      err.msg);
    }
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 10000;
    o.resolution_delay_ms = 5000; /* PHASE_RES_DELAY: a wait that surely outlasts the test */
    o.tls = tls;
    o.tls_servername = RT_CERTS_HOST;
    static rt_trace t;
    rt_trace_attach(&t, &o);
    rill_connect_op *op = NULL;
    rill_status st = rill_connect_start(ctx, host, port, &o, &op, &err);
    ck_assert_msg(st == RILL_OK, "%s: start: %s", name, err.msg);

    struct drive dr = { 0 };
    rill_stream *s = NULL;
    switch (ph) {
    case PHASE_DNS:
        /* A few rounds with the queries out and no answer. */
        for (int k = 0; k < 3 && !dr.problem[0]; k++) {
            st = drive_once(op, 1, 30, &s, &err, &dr);
            if (st != RILL_WANT_READ && st != RILL_WANT_WRITE)
                problem(&dr, "the op ended (%s) with DNS silent", rill_strerror(st));
        }
        break;
    case PHASE_RES_DELAY:
        (void)step_until(op, &t, RILL_EV_ANSWER, 4, 3000, &dr);
        if (rt_trace_find(&t, RILL_EV_ATTEMPT, 0, 0) >= 0)
            problem(&dr, "an attempt started within the 5 s resolution delay");
        break;
    case PHASE_TLS: (void)step_until(op, &t, RILL_EV_TLS_HANDSHAKE, 0, 3000, &dr); break;
    case PHASE_FINISHED:
        st = drive_to_end(op, 1, 5000, &s, &err, &dr);
        if (st != RILL_OK)
            problem(&dr, "connect: %s", err.msg);
        (void)rill_close(s);
        break;
    case PHASE_FAILED:
        st = drive_to_end(op, 1, 5000, &s, &err, &dr);
        if (st != RILL_E_DNS)
            problem(&dr, "connect to an unknown name: %s, %s", rill_strerror(st), err.msg);
        break;
    case PHASE_ATTEMPT:
    case NPHASES: break;
    }
    rill_connect_op_free(op);
    rill_ctx_free(ctx);
    rill_tls_config_free(tls);
    size_t left = rt_live_bytes;
    rt_counting_off();
    close(lfd);
    rt_dnsd_stop(d);
    char text[4096];
    ck_assert_msg(!dr.problem[0], "%s: %s; trace: %s", name, dr.problem,
                  rt_trace_text(&t, text, sizeof text));
    ck_assert_msg(left == 0, "%s: %zu bytes of rill's memory left after the op and context", name,
                  left);
    ck_assert_msg(rt_count_fds() == fds, "%s: %d descriptors open, %d before", name, rt_count_fds(),
                  fds);
}

enum { NS_OK = 0, NS_FAILED = 1, NS_SKIPPED = 77 };

/*
 * In a namespace: the only address is blackholed; cancel while its attempt is in flight (and,
 * values[0] == 1, after the attempt delay started a second one). Reports descriptors and bytes.
 */
static void cancel_attempt_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    char why[200];
    if (rt_netns_blackhole(why, sizeof why) != 0) {
        snprintf(rep->msg, sizeof rep->msg, "%s", why);
        rep->status = NS_SKIPPED;
        return;
    }
    rep->status = NS_FAILED;
    int fds = rt_count_fds();
    rt_dnsd *d = rt_dnsd_try_start(why, sizeof why);
    if (!d) {
        snprintf(rep->msg, sizeof rep->msg, "%s", why);
        return;
    }
    const char *host = "cancel-attempt." DOMAIN;
    if (rt_dnsd_set(d, host, RT_DNSD_A, RT_BLACKHOLE4_A, 0, 0, 60) != 0 ||
        rt_dnsd_add(d, host, RT_DNSD_A, RT_BLACKHOLE4_B) != 0 ||
        rt_dnsd_set(d, host, RT_DNSD_AAAA, RT_BLACKHOLE6_A, 0, 0, 60) != 0) {
        snprintf(rep->msg, sizeof rep->msg, "responder rules");
        return;
    }
    rt_counting_on();
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.dns_servers = rt_dnsd_servers(d);
    rill_ctx *ctx = NULL;
    rill_error err;
    if (rill_ctx_new(&co, &ctx, &err) != RILL_OK) {
        snprintf(rep->msg, sizeof rep->msg, "ctx: %.200s", err.msg);
        return;
    }
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 10000;
    o.attempt_delay_ms = 100;
    static rt_trace t;
    rt_trace_attach(&t, &o);
    rill_connect_op *op = NULL;
    struct drive dr = { 0 };
    if (rill_connect_start(ctx, host, 80, &o, &op, &err) != RILL_OK) {
        snprintf(rep->msg, sizeof rep->msg, "start: %.200s", err.msg);
        return;
    }
    (void)step_until(op, &t, RILL_EV_ATTEMPT, 0, 3000, &dr);
    /* Then until three attempts are in flight (100 ms apart), none failed. */
    int64_t end = rt_now_us() + 3000000;
    while (!dr.problem[0] && rt_trace_count(&t, RILL_EV_ATTEMPT, 0) < 3 && rt_now_us() < end) {
        rill_stream *s = NULL;
        rill_status st = drive_once(op, 1, 50, &s, &err, &dr);
        if (st != RILL_WANT_READ && st != RILL_WANT_WRITE)
            problem(&dr, "the op ended: %s", err.msg);
    }
    if (rt_trace_count(&t, RILL_EV_ATTEMPT, 0) < 3)
        problem(&dr, "%d attempts after 3 s", rt_trace_count(&t, RILL_EV_ATTEMPT, 0));
    if (rt_trace_count(&t, RILL_EV_ATTEMPT_FAILED, 0) != 0)
        problem(&dr, "a blackholed attempt failed");
    rill_connect_op_free(op);
    rill_ctx_free(ctx);
    rep->values[0] = (int)rt_live_bytes;
    rt_counting_off();
    rt_dnsd_stop(d);
    rep->values[1] = rt_count_fds() - fds;
    if (dr.problem[0]) {
        char text[2048];
        fprintf(stderr, "cancel (attempt in flight): %s\n  trace: %s\n", dr.problem,
                rt_trace_text(&t, text, sizeof text));
        snprintf(rep->msg, sizeof rep->msg, "%.300s", dr.problem);
        return;
    }
    rep->status = NS_OK;
}

START_TEST(test_cancel_in_every_phase)
{
    rt_watchdog(40, "test_cancel_in_every_phase");
    enum phase ph = (enum phase)_i;
    if (ph != PHASE_ATTEMPT) {
        cancel_in_phase(ph);
        return;
    }
    rt_child_result res;
    rt_run_child(cancel_attempt_child, NULL, 30, &res);
    rt_assert_child_ok(&res);
    if (res.report.status == NS_SKIPPED) {
        fprintf(stderr, "cancel (attempt in flight): SKIPPED: %s\n", res.report.msg);
        return;
    }
    ck_assert_msg(res.report.status == NS_OK, "attempt in flight: %s", res.report.msg);
    ck_assert_msg(res.report.values[0] == 0, "attempt in flight: %d bytes of rill's memory left",
                  res.report.values[0]);
    ck_assert_msg(res.report.values[1] == 0, "attempt in flight: %d descriptors left",
                  res.report.values[1]);
}
END_TEST

/* ---- the deadline in every phase ---- */

/*
 * The deadline (600 ms) passes while the op waits for DNS (_i 0), for a TLS handshake with a
 * silent peer (_i 1), or (in a namespace, _i 2) for an attempt to a blackholed address: the
 * step at that time fails with RILL_E_TIMEOUT, a message naming the host, the timeout and the
 * phase, and nothing is left open.
 */
struct deadline_result {
    rill_status st;
    int64_t took_ms;
    char msg[RILL_ERRMSG_MAX];
    char problem[256];
    int fds_left;
};

static void deadline_run(rill_ctx *ctx, const char *host, uint16_t port, rill_tls_config *tls,
                         struct deadline_result *r)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 600;
    o.tls = tls;
    o.tls_servername = RT_CERTS_HOST;
    rill_connect_op *op = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    int64_t t0 = rt_now_us();
    struct drive dr = { 0 };
    r->st = rill_connect_start(ctx, host, port, &o, &op, &err);
    if (r->st == RILL_OK) {
        rill_stream *s = NULL;
        r->st = drive_to_end(op, 1, 4000, &s, &err, &dr);
        if (r->st == RILL_OK)
            (void)rill_close(s);
        rill_connect_op_free(op);
    }
    r->took_ms = (rt_now_us() - t0) / 1000;
    snprintf(r->msg, sizeof r->msg, "%s", err.msg);
    snprintf(r->problem, sizeof r->problem, "%s", dr.problem);
}

static void deadline_attempt_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    char why[200];
    if (rt_netns_blackhole(why, sizeof why) != 0) {
        snprintf(rep->msg, sizeof rep->msg, "%s", why);
        rep->status = NS_SKIPPED;
        return;
    }
    rep->status = NS_FAILED;
    int fds = rt_count_fds();
    const char *host = "deadline-attempt." DOMAIN;
    rt_dnsd *d = rt_dnsd_try_start(why, sizeof why);
    if (!d || rt_dnsd_set(d, host, RT_DNSD_A, RT_BLACKHOLE4_A, 0, 0, 60) != 0 ||
        rt_dnsd_set(d, host, RT_DNSD_AAAA, NULL, 0, 0, 60) != 0) {
        snprintf(rep->msg, sizeof rep->msg, "responder: %s", d ? "rules" : why);
        return;
    }
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.dns_servers = rt_dnsd_servers(d);
    rill_ctx *ctx = NULL;
    rill_error err;
    if (rill_ctx_new(&co, &ctx, &err) != RILL_OK) {
        snprintf(rep->msg, sizeof rep->msg, "ctx: %.200s", err.msg);
        return;
    }
    struct deadline_result r;
    deadline_run(ctx, host, 80, NULL, &r);
    rill_ctx_free(ctx);
    rt_dnsd_stop(d);
    rep->values[0] = r.st;
    rep->values[1] = (int)r.took_ms;
    rep->values[2] = rt_count_fds() - fds;
    snprintf(rep->msg, sizeof rep->msg, "%.250s|%.60s", r.msg, r.problem);
    rep->status = NS_OK;
}

START_TEST(test_deadline_in_every_phase)
{
    rt_watchdog(40, "test_deadline_in_every_phase");
    struct deadline_result r;
    memset(&r, 0, sizeof r);
    const char *host = _i == 0   ? "deadline-dns." DOMAIN
                       : _i == 1 ? "deadline-tls." DOMAIN
                                 : "deadline-attempt." DOMAIN;
    if (_i < 2) {
        int fds = rt_count_fds();
        rt_dnsd *d = rt_dnsd_start();
        int delay = _i == 0 ? NEVER : 0;
        ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_A, "127.0.0.1", delay, 0, 60), 0);
        ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_AAAA, NULL, delay, 0, 60), 0);
        uint16_t port = 0;
        int lfd = silent_listener(&port);
        rill_tls_config *tls = NULL;
        rill_error err;
        if (_i == 1) {
            ck_assert_msg(rill_tls_config_new(&tls, &err) == RILL_OK, "%s", err.msg);
            ck_assert_msg(rill_tls_config_set_ca_file(tls, rt_certs_get()->ca, &err) == RILL_OK,
                          "%s", err.msg);
        }
        rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
        deadline_run(ctx, host, port, tls, &r);
        rill_ctx_free(ctx);
        rill_tls_config_free(tls);
        close(lfd);
        rt_dnsd_stop(d);
        r.fds_left = rt_count_fds() - fds;
    } else {
        rt_child_result res;
        rt_run_child(deadline_attempt_child, NULL, 30, &res);
        rt_assert_child_ok(&res);
        if (res.report.status == NS_SKIPPED) {
            fprintf(stderr, "deadline (attempt in flight): SKIPPED: %s\n", res.report.msg);
            return;
        }
        ck_assert_msg(res.report.status == NS_OK, "%s", res.report.msg);
        r.st = (rill_status)res.report.values[0];
        r.took_ms = res.report.values[1];
        r.fds_left = res.report.values[2];
        char *bar = strrchr(res.report.msg, '|');
        if (bar) {
            *bar = '\0';
            snprintf(r.problem, sizeof r.problem, "%s", bar + 1);
        }
        snprintf(r.msg, sizeof r.msg, "%.*s", (int)sizeof r.msg - 1, res.report.msg);
    }
    static const char *const phase_words[3] = { "resolv", "tls|handshake", RT_BLACKHOLE4_A };
    ck_assert_msg(!r.problem[0], "%s", r.problem);
    ck_assert_msg(r.st == RILL_E_TIMEOUT, "status %s: %s", rill_strerror(r.st), r.msg);
    ck_assert_msg(r.took_ms >= 580 && r.took_ms < 1200, "ended after %lld ms, wanted ~600 ms",
                  (long long)r.took_ms);
    ck_assert_msg(strstr(r.msg, host) && strstr(r.msg, "timed out"),
                  "message \"%s\" lacks the host or \"timed out\"", r.msg);
    char words[64];
    snprintf(words, sizeof words, "%s", phase_words[_i]);
    int named = 0;
    char *save = NULL;
    for (char *w = strtok_r(words, "|", &save); w; w = strtok_r(NULL, "|", &save))
        named |= strcasestr(r.msg, w) != NULL;
    ck_assert_msg(named, "message \"%s\" does not name the phase (%s)", r.msg, phase_words[_i]);
    ck_assert_msg(r.fds_left == 0, "%d descriptors left", r.fds_left);
}
END_TEST

/* ---- many ops in one thread ---- */

#define MANY_OPS   1000
#define MANY_NAMES 20
#define MANY_BYTES 2048

struct many {
    rill_connect_op *op;
    rill_stream *s;
    uint64_t sum;
    rill_error err;
    rill_status st;
    int done;
};

/*
 * 1,000 ops by name (20 names, answered after 0 .. 38 ms, A 127.0.0.1 and AAAA ::1 where ::1
 * works) driven together by one poll() loop in this thread; as each connects it sends 2 KiB of
 * its own pattern, and then every stream gets the server's checksum of exactly those bytes.
 */
START_TEST(test_many_ops_one_thread)
{
    rt_watchdog(120, "test_many_ops_one_thread");
    struct rlimit rl, saved;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    saved = rl;
    rlim_t need = 8 * MANY_OPS + 64; /* the ops' and the server's ends, with room to spare */
    if (rl.rlim_cur < need && rl.rlim_max >= need) {
        rl.rlim_cur = need;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    ck_assert_msg(rl.rlim_cur >= need, "RLIMIT_NOFILE %llu is too low",
                  (unsigned long long)rl.rlim_cur);
    int v6 = rt_he_have_v6("test_many_ops_one_thread (IPv6 part)");
    int fds = rt_count_fds();
    rt_dnsd *d = rt_dnsd_start();
    char names[MANY_NAMES][64];
    for (int k = 0; k < MANY_NAMES; k++) {
        snprintf(names[k], sizeof names[k], "many%d." DOMAIN, k);
        ck_assert_int_eq(rt_dnsd_set(d, names[k], RT_DNSD_A, "127.0.0.1", 2 * k, 0, 60), 0);
        ck_assert_int_eq(
            rt_dnsd_set(d, names[k], RT_DNSD_AAAA, v6 ? "::1" : NULL, 38 - 2 * k, 0, 60), 0);
    }
    char why[200];
    rt_famsrv *srv = rt_famsrv_try_start(v6 ? RT_FAM4 | RT_FAM6 : RT_FAM4, RT_FAMSRV_CHECKSUM, NULL,
                                         why, sizeof why);
    ck_assert_msg(srv != NULL, "%s", why);
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));

    static struct many m[MANY_OPS];
    memset(m, 0, sizeof m);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 20000;
    o.read_timeout_ms = 10000;
    o.write_timeout_ms = 10000;
    struct drive dr = { 0 };
    for (int i = 0; i < MANY_OPS; i++) {
        int64_t t0 = rt_now_us();
        rill_status st = rill_connect_start(ctx, names[i % MANY_NAMES], rt_famsrv_port(srv), &o,
                                            &m[i].op, &m[i].err);
        timed(&dr, t0, "rill_connect_start");
        ck_assert_msg(st == RILL_OK, "start %d: %s", i, m[i].err.msg);
    }
    int left = MANY_OPS;
    int64_t end = rt_now_us() + 30000000;
    static struct pollfd pfd[MANY_OPS];
    static int who[MANY_OPS];
    while (left > 0 && rt_now_us() < end && !dr.problem[0]) {
        int n = 0, wait = 1000;
        for (int i = 0; i < MANY_OPS; i++) {
            if (m[i].done)
                continue;
            int fd, timeout;
            short events;
            ck_assert_int_eq(rill_connect_poll_info(m[i].op, &fd, &events, &timeout), RILL_OK);
            ck_assert_msg(timeout >= 0, "op %d: timeout %d with a deadline", i, timeout);
            if (timeout < wait)
                wait = timeout;
            pfd[n] = (struct pollfd){ .fd = fd, .events = events };
            who[n++] = i;
        }
        ck_assert_int_ge(poll(pfd, (nfds_t)n, wait), 0);
        for (int k = 0; k < n; k++) {
            struct many *x = &m[who[k]];
            /* Stepping an op whose descriptor is not ready is allowed (spurious wake-up);
             * stepping all keeps their timers honest without tracking each one. */
            int64_t t0 = rt_now_us();
            x->st = rill_connect_step(x->op, &x->s, &x->err);
            timed(&dr, t0, "rill_connect_step");
            if (x->st == RILL_WANT_READ || x->st == RILL_WANT_WRITE)
                continue;
            x->done = 1;
            left--;
            ck_assert_msg(x->st == RILL_OK, "op %d (%s): %s", who[k], names[who[k] % MANY_NAMES],
                          x->err.msg);
            unsigned char buf[MANY_BYTES];
            rt_fill_pattern(buf, sizeof buf, (uint64_t)who[k] + 1);
            x->sum = rt_checksum(0, buf, sizeof buf);
            ck_assert_int_eq(rill_write_u32be(x->s, MANY_BYTES), RILL_OK);
            ck_assert_int_eq(rill_write_all(x->s, buf, sizeof buf, NULL), RILL_OK);
            ck_assert_int_eq(rill_flush(x->s), RILL_OK);
        }
    }
    ck_assert_msg(!dr.problem[0], "%s", dr.problem);
    ck_assert_msg(left == 0, "%d ops still running after 30 s", left);
    for (int i = 0; i < MANY_OPS; i++) {
        uint64_t sum = 0;
        rill_status st = rill_read_u64be(m[i].s, &sum);
        ck_assert_msg(st == RILL_OK, "op %d: reading the checksum: %s", i, rill_errmsg(m[i].s));
        ck_assert_msg(sum == m[i].sum, "op %d: checksum %016llx, sent %016llx", i,
                      (unsigned long long)sum, (unsigned long long)m[i].sum);
        ck_assert_int_eq(rill_close(m[i].s), RILL_OK);
        rill_connect_op_free(m[i].op);
    }
    /* The server counts a connection once it has closed it, just after the client's read. */
    for (int k = 0; k < 300 && rt_famsrv_served(srv) < MANY_OPS; k++)
        usleep(10000);
    ck_assert_int_ge(rt_famsrv_served(srv), MANY_OPS);
    /* One query per name and type, however many ops shared it. */
    for (int k = 0; k < MANY_NAMES; k++) {
        ck_assert_msg(rt_dnsd_count(d, names[k], RT_DNSD_A) == 1, "%s: %d A queries", names[k],
                      rt_dnsd_count(d, names[k], RT_DNSD_A));
        ck_assert_msg(rt_dnsd_count(d, names[k], RT_DNSD_AAAA) == 1, "%s: %d AAAA queries",
                      names[k], rt_dnsd_count(d, names[k], RT_DNSD_AAAA));
    }
    rill_ctx_free(ctx);
    rt_famsrv_stop(srv);
    rt_dnsd_stop(d);
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
}
END_TEST

/* ---- invalid arguments ---- */

/*
 * 800 ops in one epoll loop wait on one cold name at once. Each op's descriptor is registered
 * in the loop's epoll; were every op to watch the resolver's shared socket itself (through its
 * own epoll descriptor), the kernel would refuse the registrations past its limit of 500 epoll
 * paths to one file (EPOLL_CTL_ADD: EINVAL). One op drives DNS for all; the others are woken
 * through their own eventfds, and the job is handed over when the driver finishes.
 */
#define COLD_OPS 800

START_TEST(test_many_ops_wait_on_one_name_epoll)
{
    rt_watchdog(60, "test_many_ops_wait_on_one_name_epoll");
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    struct rlimit saved = rl;
    if (rl.rlim_cur < 4 * COLD_OPS + 64 && rl.rlim_max >= 4 * COLD_OPS + 64) {
        rl.rlim_cur = 4 * COLD_OPS + 64;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    ck_assert_msg(rl.rlim_cur >= 4 * COLD_OPS + 64, "RLIMIT_NOFILE %llu is too low",
                  (unsigned long long)rl.rlim_cur);
    int fds0 = rt_count_fds();
    rt_dnsd *d = rt_dnsd_start();
    ck_assert_int_eq(rt_dnsd_set(d, "cold." DOMAIN, RT_DNSD_A, "127.0.0.1", 400, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, "cold." DOMAIN, RT_DNSD_AAAA, NULL, 400, 0, 60), 0);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.backlog = 4096; /* the kernel completes the handshakes; nobody needs to accept */
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_msg(rill_listen("127.0.0.1", 0, &lo, &l, &err) == RILL_OK, "%s", err.msg);
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    ck_assert_int_ge(ep, 0);
    static rill_connect_op *ops[COLD_OPS];
    static int regfd[COLD_OPS];
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 20000;
    int left = COLD_OPS, ok = 0;
    for (int i = 0; i < COLD_OPS; i++) {
        regfd[i] = -1;
        ck_assert_msg(rill_connect_start(ctx, "cold." DOMAIN, rill_listener_port(l), &o, &ops[i],
                                         &err) == RILL_OK,
                      "start %d: %s", i, err.msg);
    }
    int64_t end = rt_now_us() + 30000000;
    while (left > 0) {
        int timeout = 1000;
        for (int i = 0; i < COLD_OPS; i++) {
            if (!ops[i])
                continue;
            rill_stream *s = NULL;
            rill_status st = rill_connect_step(ops[i], &s, &err); /* spurious steps are fine */
            if (st == RILL_OK || st < 0) {
                ck_assert_msg(st == RILL_OK, "op %d: %s: %s", i, rill_strerror(st), err.msg);
                ok++;
                left--;
                rill_close(s);
                if (regfd[i] >= 0)
                    (void)epoll_ctl(ep, EPOLL_CTL_DEL, regfd[i], NULL);
                rill_connect_op_free(ops[i]);
                ops[i] = NULL;
                continue;
            }
            int fd = -1, t = -1;
            short ev = 0;
            ck_assert_int_eq(rill_connect_poll_info(ops[i], &fd, &ev, &t), RILL_OK);
            if (t >= 0 && t < timeout)
                timeout = t;
            /* (Re-)register: MOD, or ADD for a new descriptor (its number may have come back). */
            if (regfd[i] >= 0 && regfd[i] != fd)
                (void)epoll_ctl(ep, EPOLL_CTL_DEL, regfd[i], NULL);
            regfd[i] = fd;
            if (fd < 0)
                continue;
            struct epoll_event e = { .events = ((ev & POLLIN) ? EPOLLIN : 0u) |
                                               ((ev & POLLOUT) ? EPOLLOUT : 0u),
                                     .data.u32 = (uint32_t)i };
            int r = epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
            if (r < 0 && errno == ENOENT)
                r = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            ck_assert_msg(r == 0, "op %d: registering descriptor %d: %s", i, fd, strerror(errno));
        }
        ck_assert_msg(rt_now_us() < end, "%d of %d ops still going after 30 s", left, COLD_OPS);
        struct epoll_event evs[64];
        (void)epoll_wait(ep, evs, 64, timeout);
    }
    ck_assert_int_eq(ok, COLD_OPS);
    /* One query per family for all of them: they shared the lookups. */
    ck_assert_int_eq(rt_dnsd_count(d, "cold." DOMAIN, RT_DNSD_A), 1);
    close(ep);
    rill_ctx_free(ctx);
    rill_listener_free(l);
    rt_dnsd_stop(d);
    ck_assert_int_eq(rt_count_fds(), fds0);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
}
END_TEST

/*
 * Allocation failure at every allocation of a connect by name through the op API: a DNS
 * lookup (cold, then cached), the race and the TLS step. Each run ends in RILL_OK or a clean
 * RILL_E_NOMEM with a message, and leaves no byte of rill's memory and no descriptor behind.
 * The context is made and freed inside each run, so every run does the cold lookup.
 */
START_TEST(test_alloc_failure_every_step)
{
    rt_watchdog(120, "test_alloc_failure_every_step");
    rt_dnsd *d = rt_dnsd_start();
    ck_assert_int_eq(rt_dnsd_set(d, "alloc." DOMAIN, RT_DNSD_A, "127.0.0.1", 0, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, "alloc." DOMAIN, RT_DNSD_AAAA, NULL, 0, 0, 60), 0);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.backlog = 1024;
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_msg(rill_listen("127.0.0.1", 0, &lo, &l, &err) == RILL_OK, "%s", err.msg);
    int fds = rt_count_fds();
    int done = 0;
    long k;
    for (k = 0; k < 400 && !done; k++) {
        rt_counting_on();
        rt_allocs_left = k;
        rill_ctx_opts co;
        rill_ctx_opts_init(&co);
        co.dns_servers = rt_dnsd_servers(d);
        rill_ctx *ctx = NULL;
        memset(&err, 0, sizeof err);
        rill_status st = rill_ctx_new(&co, &ctx, &err);
        rill_connect_opts o;
        rill_connect_opts_init(&o);
        o.timeout_ms = 5000;
        rill_connect_op *op = NULL;
        rill_stream *s = NULL;
        if (st == RILL_OK)
            st = rill_connect_start(ctx, "alloc." DOMAIN, rill_listener_port(l), &o, &op, &err);
        struct drive dr = { 0 };
        if (st == RILL_OK)
            st = drive_to_end(op, 1, 6000, &s, &err, &dr);
        char msg[RILL_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", err.msg);
        rill_connect_op_free(op);
        if (st == RILL_OK) {
            done = rt_allocs_left > 0; /* no failure was injected: every allocation ran */
            rill_close(s);
        }
        rill_ctx_free(ctx);
        rt_allocs_left = -1;
        size_t live = rt_live_bytes;
        rt_counting_off();
        ck_assert_msg(st == RILL_OK || st == RILL_E_NOMEM, "allocation %ld failing gave %s: %s", k,
                      rill_strerror(st), msg);
        ck_assert_msg(st == RILL_OK || strstr(msg, "out of memory") != NULL,
                      "allocation %ld failing: message \"%s\" does not say so", k, msg);
        ck_assert_msg(live == 0, "allocation %ld failing leaked %zu bytes (%s)", k, live, msg);
        ck_assert_msg(rt_count_fds() == fds, "allocation %ld failing leaked a descriptor (%s)", k,
                      msg);
        ck_assert_msg(!dr.problem[0], "allocation %ld: %s", k, dr.problem);
    }
    ck_assert_msg(done, "no run succeeded within %ld allocations", k);
    rill_listener_free(l);
    rt_dnsd_stop(d);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    int fds = rt_count_fds();
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    rill_connect_op *op = NULL;
    rill_error err;
    rt_assert_err(&err, rill_connect_start(NULL, NULL, 80, &o, &op, &err), RILL_E_INVALID, "host");
    ck_assert_ptr_null(op);
    rt_assert_err(&err, rill_connect_start(NULL, "127.0.0.1", 0, &o, &op, &err), RILL_E_INVALID,
                  "port");
    ck_assert_ptr_null(op);
    rt_assert_err(&err, rill_connect_start(NULL, "name." DOMAIN, 80, &o, &op, &err), RILL_E_INVALID,
                  "context");
    ck_assert_ptr_null(op);
    o.timeout_ms = 0;
    rt_assert_err(&err, rill_connect_start(NULL, "127.0.0.1", 80, &o, &op, &err), RILL_E_INVALID,
                  "timeout");
    ck_assert_ptr_null(op);
    rill_connect_opts_init(&o);
    o.resolution_delay_ms = -5;
    rt_assert_err(&err, rill_connect_start(NULL, "127.0.0.1", 80, &o, &op, &err), RILL_E_INVALID,
                  "resolution_delay");
    ck_assert_ptr_null(op);
    rill_connect_opts_init(&o);
    ck_assert_int_eq(rill_connect_start(NULL, "127.0.0.1", 80, &o, NULL, &err), RILL_E_INVALID);
    int fd;
    short events;
    int timeout;
    ck_assert_int_eq(rill_connect_poll_info(NULL, &fd, &events, &timeout), RILL_E_INVALID);
    rill_stream *s = NULL;
    ck_assert_int_eq(rill_connect_step(NULL, &s, &err), RILL_E_INVALID);
    rill_connect_op_free(NULL);
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}
END_TEST

Suite *rill_test_suite(void)
{
    char why[256];
    if (!rt_certs_prepare(why, sizeof why))
        fprintf(stderr, "connect_op: certificates not made yet: %s\n", why);
    Suite *s = suite_create("connect_op");

    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_invalid_arguments);
    tcase_add_test(tc, test_literal_attempts_in_start);
    tcase_add_test(tc, test_start_does_not_wait_for_dns);
    suite_add_tcase(s, tc);

    tc = tcase_create("dns timing");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_scenario, 0, rt_he_scenario_count());
    tcase_add_test(tc, test_refusals_start_next_at_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("tls");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tls_events);
    tcase_add_test(tc, test_deadline_covers_dns_and_tls);
    suite_add_tcase(s, tc);

    tc = tcase_create("blackholes");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_attempt_delay, 0, RT_HE_ATTEMPT_DELAY_VARIANTS);
    tcase_add_test(tc, test_interleave_keep_running);
    tcase_add_test(tc, test_late_answer_joins_race);
    tcase_add_test(tc, test_deadline_covers_dns_and_tcp);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel and deadlines");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_cancel_in_every_phase, 0, NPHASES);
    tcase_add_loop_test(tc, test_deadline_in_every_phase, 0, 3);
    tcase_add_test(tc, test_alloc_failure_every_step);
    suite_add_tcase(s, tc);

    tc = tcase_create("many");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, test_many_ops_one_thread);
    tcase_add_test(tc, test_many_ops_wait_on_one_name_epoll);
    suite_add_tcase(s, tc);
    return s;
}
