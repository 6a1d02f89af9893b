/* SPDX-License-Identifier: MIT */
/*
 * rill_connect by name (src/resolver/connect.c) against rill listeners on 127.0.0.1 and ::1 and
 * names served by a real dnsmasq: the first family refusing and the second accepting without a
 * racing delay, every address refused with one message naming each, DNS failures and
 * deadlines, numeric hosts without a context, the trace of events, and no descriptor left
 * behind after a thousand failures. Loopback only.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"
#include "support.h"

static void teardown(void)
{
    rt_dns_stop_all();
    rt_watchdog(0, NULL);
}

/* Whether ::1 works here; if not, say so on stderr (the case then passes without running). */
static int have_v6(const char *test)
{
    char why[160];
    if (rt_ipv6_loopback(why, sizeof why))
        return 1;
    fprintf(stderr, "SKIP %s: IPv6 loopback ::1 unavailable (%s)\n", test, why);
    return 0;
}

/* ---- the event trace ---- */

#define MAX_EVENTS 64

struct event_copy {
    rill_connect_event_type type;
    char host[300];
    char addr[64];
    size_t count;
    rill_status status;
    char message[200];
    int64_t elapsed_ms;
};

struct trace {
    int n;
    int overflow;
    struct event_copy ev[MAX_EVENTS];
    /* RILL_EV_ANSWER events, kept apart so the positions above read as the connect's steps. */
    int nanswers;
    struct event_copy answer[4];
    int answer_family[4];
};

static void on_event(void *arg, const rill_connect_event *ev)
{
    struct trace *t = arg;
    if (ev->type == RILL_EV_ANSWER && t->nanswers < 4)
        t->answer_family[t->nanswers] = ev->family;
    struct event_copy *c = NULL;
    if (ev->type == RILL_EV_ANSWER)
        c = t->nanswers < 4 ? &t->answer[t->nanswers++] : NULL;
    else if (t->n < MAX_EVENTS)
        c = &t->ev[t->n++];
    if (!c) {
        t->overflow = 1;
        return;
    }
    memset(c, 0, sizeof *c);
    c->type = ev->type;
    snprintf(c->host, sizeof c->host, "%s", ev->host ? ev->host : "(null)");
    snprintf(c->addr, sizeof c->addr, "%s", ev->addr ? ev->addr : "(null)");
    c->count = ev->count;
    c->status = ev->status;
    snprintf(c->message, sizeof c->message, "%s", ev->message ? ev->message : "(null)");
    c->elapsed_ms = ev->elapsed_ms;
}

static const char *type_name(rill_connect_event_type t)
{
    switch (t) {
    case RILL_EV_RESOLVING: return "RESOLVING";
    case RILL_EV_RESOLVED: return "RESOLVED";
    case RILL_EV_ATTEMPT: return "ATTEMPT";
    case RILL_EV_ATTEMPT_FAILED: return "ATTEMPT_FAILED";
    case RILL_EV_CONNECTED: return "CONNECTED";
    case RILL_EV_ANSWER: return "ANSWER";
    case RILL_EV_TLS_HANDSHAKE: return "TLS_HANDSHAKE";
    case RILL_EV_TLS_DONE: return "TLS_DONE";
    default: return "PROXY";
    }
    return "?";
}

/* The trace as one line, for failure messages. */
static const char *trace_text(const struct trace *t)
{
    static char buf[2048];
    buf[0] = '\0';
    for (int i = 0; i < t->n; i++) {
        const struct event_copy *e = &t->ev[i];
        char one[256];
        snprintf(one, sizeof one, "%s%s(%.80s n=%zu %.100s @%lldms)", i ? " " : "",
                 type_name(e->type),
                 e->type == RILL_EV_RESOLVING || e->type == RILL_EV_RESOLVED ? e->host : e->addr,
                 e->count, e->type == RILL_EV_ATTEMPT_FAILED ? e->message : "",
                 (long long)e->elapsed_ms);
        strncat(buf, one, sizeof buf - strlen(buf) - 1);
    }
    return buf;
}

/* Every event names @p host, and time only moves forward. */
static void check_trace_basics(const struct trace *t, const char *host)
{
    ck_assert_msg(!t->overflow, "more than %d events", MAX_EVENTS);
    int64_t last = 0;
    for (int i = 0; i < t->n; i++) {
        ck_assert_msg(strcmp(t->ev[i].host, host) == 0, "event %d names host \"%s\", not %s", i,
                      t->ev[i].host, host);
        ck_assert_msg(t->ev[i].elapsed_ms >= last, "event %d goes back in time: %s", i,
                      trace_text(t));
        last = t->ev[i].elapsed_ms;
    }
}

static void expect_event(const struct trace *t, int i, rill_connect_event_type type,
                         const char *addr)
{
    ck_assert_msg(i < t->n, "no event %d (%s); trace: %s", i, type_name(type), trace_text(t));
    ck_assert_msg(t->ev[i].type == type, "event %d is %s, wanted %s; trace: %s", i,
                  type_name(t->ev[i].type), type_name(type), trace_text(t));
    if (addr)
        ck_assert_msg(strcmp(t->ev[i].addr, addr) == 0, "event %d (%s) has addr %s, wanted %s", i,
                      type_name(type), t->ev[i].addr, addr);
}

/* ---- helpers ---- */

static void copts_traced(rill_connect_opts *o, struct trace *t)
{
    rill_connect_opts_init(o);
    o->timeout_ms = 5000;
    o->attempt_delay_ms = 2000; /* long: a test that waits for it shows */
    memset(t, 0, sizeof *t);
    o->on_event = on_event;
    o->on_event_arg = t;
}

static rill_ctx *ctx_for(const char *servers, int family)
{
    rill_ctx_opts o;
    rill_ctx_opts_init(&o);
    o.dns_servers = servers;
    o.family = family;
    rill_ctx *ctx = NULL;
    rill_error err;
    rill_status st = rill_ctx_new(&o, &ctx, &err);
    ck_assert_msg(st == RILL_OK, "rill_ctx_new: %s", err.msg);
    return ctx;
}

static rill_listener *listen_on(const char *addr, uint16_t port, rill_error *err)
{
    rill_listener *l = NULL;
    if (rill_listen(addr, port, NULL, &l, err) != RILL_OK)
        return NULL;
    return l;
}

/*
 * Listeners on 127.0.0.1 and ::1 with one port number (either pointer NULL: close that one
 * again, leaving the port refused there). Retries when ::1 has the port taken.
 */
static uint16_t listen_both(rill_listener **l4, rill_listener **l6)
{
    rill_error err;
    for (int attempt = 0; attempt < 20; attempt++) {
        rill_listener *a = listen_on("127.0.0.1", 0, &err);
        ck_assert_msg(a != NULL, "listen on 127.0.0.1: %s", err.msg);
        uint16_t port = rill_listener_port(a);
        rill_listener *b = listen_on("::1", port, &err);
        if (!b) {
            rill_listener_free(a);
            continue;
        }
        if (l4)
            *l4 = a;
        else
            rill_listener_free(a);
        if (l6)
            *l6 = b;
        else
            rill_listener_free(b);
        return port;
    }
    ck_abort_msg("no port free on both 127.0.0.1 and ::1 after 20 tries");
    return 0;
}

/* A port nobody listens on at 127.0.0.1 nor ::1 (both were free a moment ago). */
static uint16_t dead_port(void)
{
    return listen_both(NULL, NULL);
}

/* Same, 127.0.0.1 only (where ::1 is unavailable). */
static uint16_t dead_port_v4(void)
{
    rill_error err;
    rill_listener *l = listen_on("127.0.0.1", 0, &err);
    ck_assert_msg(l != NULL, "listen on 127.0.0.1: %s", err.msg);
    uint16_t port = rill_listener_port(l);
    rill_listener_free(l);
    return port;
}

static void assert_accepted(rill_listener *l, rill_stream *client)
{
    rill_stream *server = NULL;
    rill_error err;
    rill_status st = rill_accept(l, 2000, &server, &err);
    ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
    rt_transfer(client, server, 1000, 7);
    rt_transfer(server, client, 1000, 8);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}

/* "127.0.0.1:PORT" or "[::1]:PORT", as events and rill_addr.text spell addresses. */
static void addr_text(char *buf, size_t len, int family, uint16_t port)
{
    snprintf(buf, len, "%s:%u", family == 4 ? "127.0.0.1" : "[::1]", (unsigned)port);
}

/* ---- one family refuses, the other accepts ---- */

/*
 * both.rill.test resolves to 127.0.0.1 and ::1. _i == 0: only 127.0.0.1 listens (the localhost
 * case of the issue). _i == 1: only the address resolved second listens, so the first attempt
 * surely fails. Either way the connect succeeds well before the 2 s attempt delay.
 */
START_TEST(test_first_refuses_second_accepts)
{
    if (!have_v6("test_first_refuses_second_accepts"))
        return;
    rt_watchdog(20, "test_first_refuses_second_accepts");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), 0);

    rill_addr *order;
    size_t n;
    rill_error err;
    rill_status st = rill_resolve(ctx, RT_DNS_BOTH, 80, 5000, &order, &n, &err);
    ck_assert_msg(st == RILL_OK, "resolve: %s", err.msg);
    ck_assert_uint_eq(n, 2);
    int accept_family = _i == 0 ? 4 : order[1].family;
    int first_family = order[0].family;
    rill_addrs_free(order);

    rill_listener *l4 = NULL, *l6 = NULL;
    uint16_t port = listen_both(accept_family == 4 ? &l4 : NULL, accept_family == 6 ? &l6 : NULL);
    rill_listener *l = l4 ? l4 : l6;
    char good[64], bad[64];
    addr_text(good, sizeof good, accept_family, port);
    addr_text(bad, sizeof bad, accept_family == 4 ? 6 : 4, port);

    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    rill_stream *s = NULL;
    int64_t start = rt_now_us();
    st = rill_connect(ctx, RT_DNS_BOTH, port, &o, &s, &err);
    int64_t took_us = rt_now_us() - start;
    ck_assert_msg(st == RILL_OK, "connect: %s: %s; trace: %s", rill_strerror(st), err.msg,
                  trace_text(&t));
    ck_assert_msg(took_us < (int64_t)o.attempt_delay_ms * 1000,
                  "took %lld us: the %d ms attempt delay was waited; trace: %s", (long long)took_us,
                  o.attempt_delay_ms, trace_text(&t));
    ck_assert_str_eq(rill_kind(s), RILL_LAYER_TCP);
    char desc[256];
    rill_describe(s, desc, sizeof desc);
    ck_assert_msg(strstr(desc, good) != NULL, "describe \"%s\" lacks %s", desc, good);
    assert_accepted(l, s);

    check_trace_basics(&t, RT_DNS_BOTH);
    expect_event(&t, 0, RILL_EV_RESOLVING, NULL);
    expect_event(&t, 1, RILL_EV_RESOLVED, NULL);
    /* The addresses known when the first attempt starts: on a AAAA answer that is at once,
     * so the A answer may not be in yet (RFC 8305). */
    ck_assert_uint_ge(t.ev[1].count, 1);
    ck_assert_uint_le(t.ev[1].count, 2);
    if (first_family != accept_family) {
        expect_event(&t, 2, RILL_EV_ATTEMPT, bad);
        expect_event(&t, 3, RILL_EV_ATTEMPT_FAILED, bad);
        ck_assert_int_eq(t.ev[3].status, RILL_E_REFUSED);
        ck_assert_msg(strstr(t.ev[3].message, "refused") != NULL, "reason: %s", t.ev[3].message);
        expect_event(&t, 4, RILL_EV_ATTEMPT, good);
        expect_event(&t, 5, RILL_EV_CONNECTED, good);
        ck_assert_int_eq(t.n, 6);
    } else {
        expect_event(&t, 2, RILL_EV_ATTEMPT, good);
        expect_event(&t, 3, RILL_EV_CONNECTED, good);
        ck_assert_int_eq(t.n, 4);
    }
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rill_listener_free(l);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* No racing (attempt_delay_ms < 0): one address at a time, still on to the next at once. */
START_TEST(test_sequential_fallback)
{
    if (!have_v6("test_sequential_fallback"))
        return;
    rt_watchdog(20, "test_sequential_fallback");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), 0);
    rill_addr *order;
    size_t n;
    rill_error err;
    rill_status st = rill_resolve(ctx, RT_DNS_BOTH, 80, 5000, &order, &n, &err);
    ck_assert_msg(st == RILL_OK, "resolve: %s", err.msg);
    int accept_family = order[1].family;
    rill_addrs_free(order);
    rill_listener *l4 = NULL, *l6 = NULL;
    uint16_t port = listen_both(accept_family == 4 ? &l4 : NULL, accept_family == 6 ? &l6 : NULL);

    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    o.attempt_delay_ms = -1;
    rill_stream *s = NULL;
    int64_t start = rt_now_us();
    st = rill_connect(ctx, RT_DNS_BOTH, port, &o, &s, &err);
    ck_assert_msg(st == RILL_OK, "connect: %s; trace: %s", err.msg, trace_text(&t));
    rt_assert_elapsed(start, 0, 1000);
    expect_event(&t, 3, RILL_EV_ATTEMPT_FAILED, NULL);
    expect_event(&t, 5, RILL_EV_CONNECTED, NULL);
    assert_accepted(l4 ? l4 : l6, s);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rill_listener_free(l4 ? l4 : l6);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* Both families listen: one connection wins, the loser (if any started) is closed. */
START_TEST(test_both_accept)
{
    if (!have_v6("test_both_accept"))
        return;
    rt_watchdog(20, "test_both_accept");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), 0);
    rill_listener *l4, *l6;
    uint16_t port = listen_both(&l4, &l6);
    int fds = rt_count_fds();
    for (int i = 0; i < 50; i++) {
        rill_connect_opts o;
        struct trace t;
        copts_traced(&o, &t);
        o.attempt_delay_ms = i % 2 ? 1 : 250;
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = rill_connect(ctx, RT_DNS_BOTH, port, &o, &s, &err);
        ck_assert_msg(st == RILL_OK, "connect %d: %s; trace: %s", i, err.msg, trace_text(&t));
        ck_assert_int_eq(t.ev[t.n - 1].type, RILL_EV_CONNECTED);
        ck_assert_int_eq(rill_close(s), RILL_OK);
        ck_assert_msg(rt_count_fds() == fds, "connect %d: %d descriptors open, %d before", i,
                      rt_count_fds(), fds);
    }
    rill_listener_free(l4);
    rill_listener_free(l6);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* ---- failures ---- */

START_TEST(test_all_refused)
{
    if (!have_v6("test_all_refused"))
        return;
    rt_watchdog(20, "test_all_refused");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), 0);
    uint16_t port = dead_port();
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    rill_stream *s = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    int64_t start = rt_now_us();
    rill_status st = rill_connect(ctx, RT_DNS_BOTH, port, &o, &s, &err);
    int64_t took_us = rt_now_us() - start;
    rt_assert_err(&err, st, RILL_E_REFUSED, "127.0.0.1: connection refused");
    char hostport[64];
    snprintf(hostport, sizeof hostport, "%s:%u", RT_DNS_BOTH, (unsigned)port);
    ck_assert_msg(strstr(err.msg, hostport) != NULL, "\"%s\" lacks %s", err.msg, hostport);
    ck_assert_msg(strstr(err.msg, "::1: connection refused") != NULL, "\"%s\" lacks ::1", err.msg);
    ck_assert_ptr_null(s);
    ck_assert_msg(took_us < (int64_t)o.attempt_delay_ms * 1000, "took %lld us; trace: %s",
                  (long long)took_us, trace_text(&t));

    check_trace_basics(&t, RT_DNS_BOTH);
    int failed = 0;
    for (int i = 0; i < t.n; i++) {
        ck_assert_int_ne(t.ev[i].type, RILL_EV_CONNECTED);
        if (t.ev[i].type == RILL_EV_ATTEMPT_FAILED) {
            failed++;
            ck_assert_int_eq(t.ev[i].status, RILL_E_REFUSED);
        }
    }
    ck_assert_msg(failed == 2, "%d failed attempts; trace: %s", failed, trace_text(&t));
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

START_TEST(test_nxdomain)
{
    rt_watchdog(20, "test_nxdomain");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), 0);
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    rill_stream *s = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_connect(ctx, RT_DNS_MISSING, 443, &o, &s, &err);
    rt_assert_err(&err, st, RILL_E_DNS, RT_DNS_MISSING);
    ck_assert_ptr_null(s);
    check_trace_basics(&t, RT_DNS_MISSING);
    expect_event(&t, 0, RILL_EV_RESOLVING, NULL);
    ck_assert_msg(t.n == 1, "events after a failed resolution: %s", trace_text(&t));
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* A DNS server that never answers: RILL_E_TIMEOUT at the connect deadline. */
START_TEST(test_silent_dns_timeout)
{
    rt_watchdog(20, "test_silent_dns_timeout");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx *ctx = ctx_for(rt_dns_silent_servers(silent), 0);
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    o.timeout_ms = 600;
    rill_stream *s = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    int64_t start = rt_now_us();
    rill_status st = rill_connect(ctx, RT_DNS_BOTH, 443, &o, &s, &err);
    rt_assert_elapsed(start, 600, 1100);
    rt_assert_err(&err, st, RILL_E_TIMEOUT, RT_DNS_BOTH);
    ck_assert_ptr_null(s);
    ck_assert_int_ge(rt_dns_silent_received(silent), 1);
    expect_event(&t, 0, RILL_EV_RESOLVING, NULL);
    ck_assert_msg(t.n == 1, "events after a resolution timeout: %s", trace_text(&t));
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

/* One deadline covers DNS and the attempts: time spent resolving counts. */
START_TEST(test_slow_dns_counts)
{
    rt_watchdog(20, "test_slow_dns_counts");
    rt_dns *dns = rt_dns_start();
    rt_dns_relay *relay = rt_dns_relay_start(dns, 400);
    rill_ctx *ctx = ctx_for(rt_dns_relay_servers(relay), 0);
    rill_listener *l4;
    uint16_t port = listen_both(&l4, NULL);

    /* Slower than the deadline: timeout at the deadline, not when the answer comes. */
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    o.timeout_ms = 200;
    rill_stream *s = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    int64_t start = rt_now_us();
    rill_status st = rill_connect(ctx, RT_DNS_V4, port, &o, &s, &err);
    rt_assert_elapsed(start, 200, 700);
    rt_assert_err(&err, st, RILL_E_TIMEOUT, RT_DNS_V4);

    /* Within the deadline: the events show the time resolution took. */
    rill_ctx_free(ctx);
    ctx = ctx_for(rt_dns_relay_servers(relay), 0);
    copts_traced(&o, &t);
    o.timeout_ms = 3000;
    start = rt_now_us();
    st = rill_connect(ctx, RT_DNS_V4, port, &o, &s, &err);
    ck_assert_msg(st == RILL_OK, "connect: %s; trace: %s", err.msg, trace_text(&t));
    rt_assert_elapsed(start, 390, 2000);
    expect_event(&t, 1, RILL_EV_RESOLVED, NULL);
    ck_assert_msg(t.ev[1].elapsed_ms >= 390, "resolved at %lld ms; trace: %s",
                  (long long)t.ev[1].elapsed_ms, trace_text(&t));
    assert_accepted(l4, s);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rill_listener_free(l4);
    rill_ctx_free(ctx);
    rt_dns_relay_stop(relay);
    rt_dns_stop(dns);
}
END_TEST

/* ---- numeric hosts, context rules, family ---- */

static const struct {
    const char *listen;
    const char *host;
    int family;
} numerics[] = {
    { "127.0.0.1", "127.0.0.1", 4 },
    { "::1", "::1", 6 },
    { "::1", "[::1]", 6 },
};

START_TEST(test_numeric_without_ctx)
{
    if (numerics[_i].listen[0] == ':' && !have_v6("test_numeric_without_ctx"))
        return;
    rt_watchdog(20, "test_numeric_without_ctx");
    rill_error err;
    rill_listener *l = listen_on(numerics[_i].listen, 0, &err);
    ck_assert_msg(l != NULL, "listen: %s", err.msg);
    uint16_t port = rill_listener_port(l);
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    rill_stream *s = NULL;
    rill_status st = rill_connect(NULL, numerics[_i].host, port, &o, &s, &err);
    ck_assert_msg(st == RILL_OK, "connect %s: %s", numerics[_i].host, err.msg);
    char want[64];
    addr_text(want, sizeof want, numerics[_i].family, port);
    check_trace_basics(&t, numerics[_i].host);
    expect_event(&t, t.n - 1, RILL_EV_CONNECTED, want);
    assert_accepted(l, s);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rill_listener_free(l);
}
END_TEST

START_TEST(test_name_needs_ctx)
{
    rt_watchdog(20, "test_name_needs_ctx");
    rill_stream *s = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_connect(NULL, RT_DNS_BOTH, 443, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, RT_DNS_BOTH);
    ck_assert_ptr_null(s);
}
END_TEST

/* rill_connect_opts.family narrows the addresses; the context's family is the default. */
static const struct {
    int ctx_family;
    int conn_family;
    int listen_family; /* where the listener is */
    rill_status want;
    const char *needle; /* for errors: a piece of the message */
} families[] = {
    { 0, 4, 4, RILL_OK, NULL },
    { 0, 6, 6, RILL_OK, NULL },
    { 6, 0, 6, RILL_OK, NULL },
    { 6, 4, 4, RILL_OK, NULL },
    { 4, 0, 4, RILL_OK, NULL },
    { 0, 6, 4, RILL_E_REFUSED, "::1: connection refused" },
    { 0, 4, 6, RILL_E_REFUSED, "127.0.0.1: connection refused" },
};

START_TEST(test_family)
{
    if (!have_v6("test_family"))
        return;
    rt_watchdog(20, "test_family");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), families[_i].ctx_family);
    rill_listener *l4 = NULL, *l6 = NULL;
    uint16_t port = listen_both(families[_i].listen_family == 4 ? &l4 : NULL,
                                families[_i].listen_family == 6 ? &l6 : NULL);
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    o.family = families[_i].conn_family;
    rill_stream *s = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_connect(ctx, RT_DNS_BOTH, port, &o, &s, &err);
    char want[64];
    addr_text(want, sizeof want, families[_i].listen_family, port);
    expect_event(&t, 1, RILL_EV_RESOLVED, NULL);
    ck_assert_uint_eq(t.ev[1].count, 1);
    if (families[_i].want == RILL_OK) {
        ck_assert_msg(st == RILL_OK, "connect: %s; trace: %s", err.msg, trace_text(&t));
        expect_event(&t, 2, RILL_EV_ATTEMPT, want);
        expect_event(&t, 3, RILL_EV_CONNECTED, want);
        assert_accepted(l4 ? l4 : l6, s);
        ck_assert_int_eq(rill_close(s), RILL_OK);
    } else {
        rt_assert_err(&err, st, families[_i].want, families[_i].needle);
        const char *other = families[_i].conn_family == 6 ? "127.0.0.1" : "::1:";
        ck_assert_msg(strstr(err.msg, other) == NULL, "\"%s\" names %s, which was excluded",
                      err.msg, other);
    }
    rill_listener_free(l4 ? l4 : l6);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* An override connects without asking DNS (here a server that would never answer). */
START_TEST(test_override)
{
    rt_watchdog(20, "test_override");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_listener *l4;
    uint16_t port = listen_both(&l4, NULL);
    const char *list[] = { "over.rill.test:*:127.0.0.1", NULL };
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.dns_servers = rt_dns_silent_servers(silent);
    co.overrides = list;
    rill_ctx *ctx = NULL;
    rill_error err;
    ck_assert_msg(rill_ctx_new(&co, &ctx, &err) == RILL_OK, "ctx: %s", err.msg);
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    rill_stream *s = NULL;
    int64_t start = rt_now_us();
    rill_status st = rill_connect(ctx, "over.rill.test", port, &o, &s, &err);
    ck_assert_msg(st == RILL_OK, "connect: %s", err.msg);
    rt_assert_elapsed(start, 0, 500);
    assert_accepted(l4, s);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rill_ctx_stats stats;
    rill_ctx_get_stats(ctx, &stats);
    ck_assert_uint_eq(stats.queries, 0);
    rill_listener_free(l4);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

/* ---- events ---- */

START_TEST(test_events_success)
{
    rt_watchdog(20, "test_events_success");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), 0);
    rill_listener *l4;
    uint16_t port = listen_both(&l4, NULL);
    rill_connect_opts o;
    struct trace t;
    copts_traced(&o, &t);
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(ctx, RT_DNS_V4, port, &o, &s, &err);
    ck_assert_msg(st == RILL_OK, "connect: %s", err.msg);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    check_trace_basics(&t, RT_DNS_V4);
    ck_assert_msg(t.n == 4, "trace: %s", trace_text(&t));
    expect_event(&t, 0, RILL_EV_RESOLVING, NULL);
    expect_event(&t, 1, RILL_EV_RESOLVED, NULL);
    ck_assert_uint_eq(t.ev[1].count, 1);
    expect_event(&t, 2, RILL_EV_ATTEMPT, addr);
    expect_event(&t, 3, RILL_EV_CONNECTED, addr);
    /* Each family's answer, before the first attempt: A with the address, AAAA with none. */
    ck_assert_int_eq(t.nanswers, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(t.answer[i].type, RILL_EV_ANSWER);
        ck_assert_int_le(t.answer[i].elapsed_ms, t.ev[2].elapsed_ms);
        if (t.answer_family[i] == 4) {
            ck_assert_int_eq(t.answer[i].status, RILL_OK);
            ck_assert_uint_eq(t.answer[i].count, 1);
        } else {
            ck_assert_int_eq(t.answer_family[i], 6);
            ck_assert_uint_eq(t.answer[i].count, 0);
            ck_assert_msg(t.answer[i].status == RILL_E_DNS, "AAAA answer status %d: %s",
                          t.answer[i].status, t.answer[i].message);
        }
    }
    assert_accepted(l4, s);
    ck_assert_int_eq(rill_close(s), RILL_OK);

    /* No callback: the same connect works without one. */
    o.on_event = NULL;
    st = rill_connect(ctx, RT_DNS_V4, port, &o, &s, &err);
    ck_assert_msg(st == RILL_OK, "connect without on_event: %s", err.msg);
    assert_accepted(l4, s);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rill_listener_free(l4);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* ---- arguments ---- */

static const struct {
    const char *host;
    uint16_t port;
    int null_out;
    int family;
    int max_in_flight;
    int timeout_ms;
    const char *needle;
} bad_args[] = {
    { RT_DNS_BOTH, 0, 0, 0, 4, 1000, "port 0" },
    { NULL, 443, 0, 0, 4, 1000, "NULL" },
    { "", 443, 0, 0, 4, 1000, "empty" },
    { "a b.rill.test", 443, 0, 0, 4, 1000, "space" },
    { RT_DNS_BOTH, 443, 1, 0, 4, 1000, "out" },
    { RT_DNS_BOTH, 443, 0, 5, 4, 1000, "family" },
    { RT_DNS_BOTH, 443, 0, 0, 0, 1000, "max_in_flight" },
    { RT_DNS_BOTH, 443, 0, 0, -1, 1000, "max_in_flight" },
    { RT_DNS_BOTH, 443, 0, 0, 4, -2, "timeout" },
    { RT_DNS_BOTH, 443, 0, 0, 4, 0, "timeout_ms 0 leaves no time to connect" },
};

START_TEST(test_invalid_args)
{
    rt_watchdog(20, "test_invalid_args");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx *ctx = ctx_for(rt_dns_silent_servers(silent), 0);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.family = bad_args[_i].family;
    o.max_in_flight = bad_args[_i].max_in_flight;
    o.timeout_ms = bad_args[_i].timeout_ms;
    rill_stream *s = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    int64_t start = rt_now_us();
    rill_status st = rill_connect(ctx, bad_args[_i].host, bad_args[_i].port, &o,
                                  bad_args[_i].null_out ? NULL : &s, &err);
    if (st != RILL_E_INVALID) {
        (void)rill_close(s);
        rill_ctx_free(ctx); /* before failing: no leak report on top of the finding */
    }
    rt_assert_err(&err, st, RILL_E_INVALID, bad_args[_i].needle);
    rt_assert_elapsed(start, 0, 100);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

START_TEST(test_connect_opts_defaults)
{
    rill_connect_opts o;
    memset(&o, 0x5a, sizeof o);
    rill_connect_opts_init(&o);
    ck_assert_int_eq(o.family, 0);
    ck_assert_int_eq(o.attempt_delay_ms, 250);
    ck_assert_int_eq(o.max_in_flight, 4);
    ck_assert_int_eq(o.timeout_ms, 30000);
    ck_assert_int_eq(o.resolution_delay_ms, 50);
    ck_assert_msg(o.on_event == NULL, "on_event is set by default");
    ck_assert_ptr_null(o.on_event_arg);
}
END_TEST

/* The peer of test_blocking_after_nonblocking_connect: writes once, late. */
struct late_writer {
    rill_stream *server;
    rill_status st;
};

static void *write_late(void *arg)
{
    struct late_writer *w = arg;
    usleep(150 * 1000);
    size_t n = 0;
    w->st = rill_write(w->server, "late", 4, &n);
    return NULL;
}

/*
 * A connect leaves its socket non-blocking (the connect itself is one); the stream clears
 * O_NONBLOCK before its first call that may block, so a blocking read still waits for data
 * that comes late (it must not answer WANT or fail), and a stream only ever used without
 * blocking never pays for the switch. Numeric rill_connect, rill_tcp_connect_addr, and a name.
 */
START_TEST(test_blocking_after_nonblocking_connect)
{
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    uint16_t port = rill_listener_port(l);
    rill_ctx *ctx = NULL;
    if (_i == 2) { /* by name: the context's override answers it */
        rill_ctx_opts co;
        rill_ctx_opts_init(&co);
        const char *overrides[] = { "late.rill.test:*:127.0.0.1", NULL };
        co.overrides = overrides;
        co.dns_servers = "127.0.0.1:9";
        ck_assert_int_eq(rill_ctx_new(&co, &ctx, &err), RILL_OK);
    }
    rill_stream *c = NULL;
    rill_status st =
        _i == 1 ? rill_tcp_connect_addr("127.0.0.1", port, NULL, &c, &err)
                : rill_connect(ctx, _i == 2 ? "late.rill.test" : "127.0.0.1", port, NULL, &c, &err);
    ck_assert_msg(st == RILL_OK, "connect: %s", err.msg);
    rill_stream *server = NULL;
    ck_assert_int_eq(rill_accept(l, 2000, &server, &err), RILL_OK);
    int fd = rill_fd(c);
    ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);

    /* Non-blocking use: WANT, and the descriptor stays as it is. */
    ck_assert_int_eq(rill_set_timeouts(c, 0, 0), RILL_OK);
    char buf[8];
    size_t n = 0;
    ck_assert_int_eq(rill_read(c, buf, sizeof buf, &n), RILL_WANT_READ);
    ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);

    /* Blocking use: the read waits for the late bytes. */
    ck_assert_int_eq(rill_set_timeouts(c, RILL_TIMEOUT_NONE, RILL_TIMEOUT_NONE), RILL_OK);
    struct late_writer w = { server, RILL_E_IO };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, write_late, &w), 0);
    st = rill_read_full(c, buf, 4, &n);
    pthread_join(t, NULL);
    ck_assert_int_eq(w.st, RILL_OK);
    ck_assert_msg(st == RILL_OK, "read: %s", rill_errmsg(c));
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(memcmp(buf, "late", 4), 0);
    ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    rt_transfer(c, server, 100000, 3); /* and both ways after it */
    rt_transfer(server, c, 100000, 4);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    rill_ctx_free(ctx);
    rill_listener_free(l);
}
END_TEST

/* ---- adopting a socket connected by the application ---- */

START_TEST(test_tcp_adopt)
{
    int fds = rt_count_fds();
    rill_listener *l4 = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l4, &err), RILL_OK);
    uint16_t port = rill_listener_port(l4);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* Not connected yet: refused, and the caller still owns the descriptor. */
    rill_stream *s = NULL;
    rt_assert_err(&err, rill_tcp_adopt(fd, NULL, &s, &err), RILL_E_INVALID, "is not connected");
    ck_assert_ptr_null(s);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.read_timeout_ms = 2000;
    ck_assert_msg(rill_tcp_adopt(fd, &o, &s, &err) == RILL_OK, "adopt: %s", err.msg);
    char desc[200], want[64];
    rill_describe(s, desc, sizeof desc);
    snprintf(want, sizeof want, "> 127.0.0.1:%u)", (unsigned)port);
    ck_assert_msg(strncmp(desc, "tcp(fd=", 7) == 0 && strstr(desc, want), "describe: %s", desc);
    int rd = 0;
    rill_get_timeouts(s, &rd, NULL);
    ck_assert_int_eq(rd, 2000);
    assert_accepted(l4, s);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    s = NULL;
    ck_assert_msg(!rt_fd_is_open(fd), "the stream did not close the adopted descriptor");

    /* Not a TCP socket: a pipe, a Unix socket, -1; NULL out. */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    rt_assert_err(&err, rill_tcp_adopt(p[0], NULL, &s, &err), RILL_E_INVALID,
                  "is not a TCP socket");
    int sv[2];
    rt_socketpair(sv);
    rt_assert_err(&err, rill_tcp_adopt(sv[0], NULL, &s, &err), RILL_E_INVALID,
                  "is not a TCP socket");
    rt_assert_err(&err, rill_tcp_adopt(-1, NULL, &s, &err), RILL_E_INVALID, "is not a TCP socket");
    rt_assert_err(&err, rill_tcp_adopt(sv[0], NULL, NULL, &err), RILL_E_INVALID, "out is NULL");
    ck_assert_ptr_null(s);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    rill_listener_free(l4);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* ---- descriptors ---- */

#define LEAK_ROUNDS 1000

/* A thousand refused connects to a numeric host, no context: no descriptor stays open. */
START_TEST(test_refused_numeric_no_leak)
{
    rt_watchdog(60, "test_refused_numeric_no_leak");
    uint16_t port = dead_port_v4();
    char needle[64];
    snprintf(needle, sizeof needle, "127.0.0.1:%u: 127.0.0.1: connection refused", (unsigned)port);
    int fds = rt_count_fds();
    for (int i = 0; i < LEAK_ROUNDS; i++) {
        rill_stream *s = NULL;
        rill_error err;
        memset(&err, 0, sizeof err);
        rill_status st = rill_connect(NULL, "127.0.0.1", port, NULL, &s, &err);
        rt_assert_err(&err, st, RILL_E_REFUSED, needle);
        ck_assert_ptr_null(s);
    }
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* A thousand refused connects to a name from the cache (two addresses each): no leak, and
 * only the first one asked DNS. */
START_TEST(test_refused_name_no_leak)
{
    int v6 = have_v6("test_refused_name_no_leak (IPv4 only)");
    rt_watchdog(60, "test_refused_name_no_leak");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_for(rt_dns_servers(dns), v6 ? 0 : 4);
    uint16_t port = v6 ? dead_port() : dead_port_v4();
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(ctx, RT_DNS_BOTH, port, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_REFUSED, "127.0.0.1: connection refused");
    int asked = rt_dns_query_count(dns, RT_DNS_BOTH);
    int fds = rt_count_fds();
    for (int i = 1; i < LEAK_ROUNDS; i++) {
        memset(&err, 0, sizeof err);
        st = rill_connect(ctx, RT_DNS_BOTH, port, NULL, &s, &err);
        rt_assert_err(&err, st, RILL_E_REFUSED, RT_DNS_BOTH);
        ck_assert_ptr_null(s);
    }
    ck_assert_int_eq(rt_count_fds(), fds);
    rill_ctx_stats stats;
    rill_ctx_get_stats(ctx, &stats);
    ck_assert_uint_eq(stats.queries, 2); /* A and AAAA, asked apart */
    ck_assert_uint_eq(stats.cache_hits, 2 * (LEAK_ROUNDS - 1));
    ck_assert_int_eq(rt_dns_query_count(dns, RT_DNS_BOTH), asked);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* Out of descriptors: connect fails at once with EMFILE named, and works when fds come back. */
static void emfile_connect_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    rill_listener *l = NULL;
    rill_error err;
    if (rill_listen("127.0.0.1", 0, NULL, &l, &err) != RILL_OK) {
        rep->status = 999;
        return;
    }
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    const char *overrides[] = { "full.rill.test:*:127.0.0.1", NULL };
    co.overrides = overrides;
    co.dns_servers = "127.0.0.1:9";
    rill_ctx *ctx = NULL;
    if (rill_ctx_new(&co, &ctx, &err) != RILL_OK) {
        rep->status = 998;
        return;
    }
    int lowest = dup(0);
    close(lowest);
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    low = old;
    low.rlim_cur = (rlim_t)lowest; /* every descriptor number below is taken */
    setrlimit(RLIMIT_NOFILE, &low);
    rill_stream *s = NULL;
    rep->status = rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &s, &err);
    rep->values[0] = err.sys_errno;
    snprintf(rep->msg, sizeof rep->msg, "%s", err.msg);
    rill_error err2;
    rep->values[1] = rill_connect(ctx, "full.rill.test", rill_listener_port(l), NULL, &s, &err2);
    rep->values[2] = strstr(err2.msg, "too many open files") != NULL;
    setrlimit(RLIMIT_NOFILE, &old);
    rep->values[3] = rill_connect(ctx, "full.rill.test", rill_listener_port(l), NULL, &s, &err2);
    if (rep->values[3] == RILL_OK)
        rill_close(s);
    rill_ctx_free(ctx);
    rill_listener_free(l);
}

START_TEST(test_connect_emfile)
{
    rt_child_result res;
    rt_run_child(emfile_connect_child, NULL, 20, &res);
    rt_assert_child_ok(&res);
    const rt_child_report *r = &res.report;
    ck_assert_msg(r->status == RILL_E_IO, "connect out of fds: %d (%s): %s", r->status,
                  rill_strerror(r->status), r->msg);
    ck_assert_msg(strstr(r->msg, "tcp: cannot create a socket") != NULL &&
                      strstr(r->msg, "too many open files") != NULL,
                  "message: %s", r->msg);
    ck_assert_int_eq(r->values[0], EMFILE);
    ck_assert_msg(r->values[1] == RILL_E_IO || r->values[1] == RILL_E_CONNECT,
                  "rill_connect out of fds: %d", r->values[1]);
    ck_assert_msg(r->values[2], "rill_connect's message does not name EMFILE");
    ck_assert_msg(r->values[3] == RILL_OK, "connect after fds came back: %d (%s)", r->values[3],
                  rill_strerror(r->values[3]));
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("connect");

    TCase *tc = tcase_create("racing");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_first_refuses_second_accepts, 0, 2);
    tcase_add_test(tc, test_sequential_fallback);
    tcase_add_test(tc, test_both_accept);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_all_refused);
    tcase_add_test(tc, test_nxdomain);
    tcase_add_test(tc, test_silent_dns_timeout);
    tcase_add_test(tc, test_slow_dns_counts);
    suite_add_tcase(s, tc);

    tc = tcase_create("hosts");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_numeric_without_ctx, 0, N(numerics));
    tcase_add_test(tc, test_name_needs_ctx);
    tcase_add_loop_test(tc, test_family, 0, N(families));
    tcase_add_test(tc, test_override);
    suite_add_tcase(s, tc);

    tc = tcase_create("events");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_events_success);
    suite_add_tcase(s, tc);

    tc = tcase_create("arguments");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_invalid_args, 0, N(bad_args));
    tcase_add_test(tc, test_connect_opts_defaults);
    tcase_add_test(tc, test_tcp_adopt);
    tcase_add_loop_test(tc, test_blocking_after_nonblocking_connect, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("leaks");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_refused_numeric_no_leak);
    tcase_add_test(tc, test_refused_name_no_leak);
    tcase_add_test(tc, test_connect_emfile);
    suite_add_tcase(s, tc);
    return s;
}
