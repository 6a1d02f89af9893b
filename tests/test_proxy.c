/* SPDX-License-Identifier: MIT */
/*
 * Proxies: the http-connect and socks5 layers and rill_connect through proxies, against real
 * proxies started here on loopback (tinyproxy with and without Basic auth and with a
 * ConnectPort rule, microsocks with and without username/password, stunnel4 in front of
 * tinyproxy as an HTTPS proxy) and a scripted proxy that misbehaves; plain, TLS and STARTTLS
 * origins on rill's listener; the proxy URL and no_proxy parsers over tables; the blocking and
 * the non-blocking connect; fds and memory over 1,000 proxied connects.
 *
 * The daemons are started once, before Check forks, and shared by the tests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "dns.h"
#include "eyeballs.h"
#include "proxies.h"
#include "support.h"

#define MIB (1024u * 1024u)

static rt_daemon *tp, *tp_auth, *tp_443, *ms, *ms_auth, *https_px;
static char start_problem[512];

static void need(const rt_daemon *d, const char *what)
{
    ck_assert_msg(d != NULL, "%s did not start: %s", what, start_problem);
}

static void url(char *buf, size_t len, const char *scheme, const char *cred, const rt_daemon *d)
{
    snprintf(buf, len, "%s://%s%s127.0.0.1:%u", scheme, cred ? cred : "", cred ? "@" : "",
             rt_daemon_port(d));
}

static rill_connect_opts proxy_opts(const char *proxy_url)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.proxy = proxy_url;
    o.timeout_ms = 10000;
    o.read_timeout_ms = o.write_timeout_ms = 10000;
    return o;
}

static void teardown(void)
{
    rt_watchdog(0, NULL);
}

/* ---- through each real proxy: plain and TLS origins, 16 MiB each way, as the issue asks ---- */

enum px_kind { PX_HTTP, PX_HTTPS, PX_SOCKS5H, PX_SOCKS5 };
static const char *const kind_names[] = { "http", "https", "socks5h", "socks5" };

static rill_connect_opts opts_for(enum px_kind k, char *buf, size_t len)
{
    const rt_daemon *d = k == PX_HTTP ? tp : k == PX_HTTPS ? https_px : ms;
    need(d, kind_names[k]);
    url(buf, len, kind_names[k], NULL, d);
    rill_connect_opts o = proxy_opts(buf);
    if (k == PX_HTTPS)
        o.proxy_tls = rt_client_tls();
    return o;
}

static rill_ctx *test_ctx(void)
{
    static const char *const overrides[] = { "origin.rill.test:*:127.0.0.1", NULL };
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.overrides = overrides;
    co.dns_servers = "127.0.0.1:9"; /* never asked: every name here has an override */
    rill_ctx *ctx = NULL;
    rill_error err;
    ck_assert_msg(rill_ctx_new(&co, &ctx, &err) == RILL_OK, "%s", err.msg);
    return ctx;
}

START_TEST(test_transfer_through_each)
{
    enum px_kind k = (enum px_kind)(_i / 2);
    int tls = _i % 2;
    rt_watchdog(60, "transfer through a proxy");
    int fds = rt_count_fds();
    rt_origin *o = rt_origin_start(tls ? RT_ORIGIN_TLS : RT_ORIGIN_PLAIN);
    char u[128];
    rill_connect_opts opts = opts_for(k, u, sizeof u);
    if (tls) {
        opts.tls = rt_client_tls();
        opts.tls_servername = RT_CERTS_HOST;
    }
    rill_ctx *ctx = test_ctx();
    /* socks5:// resolves the name here (the override); the others send the address. */
    const char *host = k == PX_SOCKS5 ? "origin.rill.test" : "127.0.0.1";
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(ctx, host, rt_origin_port(o), &opts, &s, &err);
    ck_assert_msg(st == RILL_OK, "%s: %s", kind_names[k], err.msg);
    char d[512], want[160];
    rill_describe(s, d, sizeof d);
    const char *layer = k >= PX_SOCKS5H ? "socks5" : "http-connect";
    snprintf(want, sizeof want, "%s(127.0.0.1:%u via 127.0.0.1:%u)", layer, rt_origin_port(o),
             k == PX_HTTP    ? rt_daemon_port(tp)
             : k == PX_HTTPS ? rt_daemon_port(https_px)
                             : rt_daemon_port(ms));
    ck_assert_msg(strstr(d, want), "describe: %s; wanted %s", d, want);
    ck_assert_msg((strncmp(d, "tls(", 4) == 0) == (tls != 0), "describe: %s", d);
    ck_assert_msg((strstr(d, "http-connect(") && strstr(strstr(d, "http-connect("), "> tls(")) ==
                      (k == PX_HTTPS),
                  "describe: %s", d);
    rt_transfer_check(s, 16 * MIB, 16 * MIB);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rill_ctx_free(ctx);
    rt_origin_stop(o);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* The same connects as event-loop steps: start, poll_info, step; no call blocks. */
START_TEST(test_nonblocking_steps)
{
    enum px_kind k = (enum px_kind)_i;
    rt_watchdog(30, "non-blocking proxied connect");
    rt_origin *o = rt_origin_start(RT_ORIGIN_TLS);
    char u[128];
    rill_connect_opts opts = opts_for(k, u, sizeof u);
    opts.tls = rt_client_tls();
    opts.tls_servername = RT_CERTS_HOST;
    rt_trace tr;
    rt_trace_attach(&tr, &opts);
    rill_ctx *ctx = test_ctx();
    rill_connect_op *op = NULL;
    rill_error err;
    const char *host = k == PX_SOCKS5 ? "origin.rill.test" : "127.0.0.1";
    ck_assert_int_eq(rill_connect_start(ctx, host, rt_origin_port(o), &opts, &op, &err), RILL_OK);
    rill_stream *s = NULL;
    rill_status st;
    for (;;) {
        int fd = -1, timeout = -1;
        short ev = 0;
        ck_assert_int_eq(rill_connect_poll_info(op, &fd, &ev, &timeout), RILL_OK);
        ck_assert_msg(fd >= 0 || timeout >= 0, "poll_info: nothing to wait for");
        struct pollfd p = { .fd = fd, .events = ev };
        (void)poll(&p, fd >= 0 ? 1 : 0, timeout < 0 || timeout > 1000 ? 1000 : timeout);
        int64_t t0 = rt_now_us();
        st = rill_connect_step(op, &s, &err);
        ck_assert_msg(rt_now_us() - t0 < 200000, "a step blocked");
        if (st != RILL_WANT_READ && st != RILL_WANT_WRITE)
            break;
    }
    rill_connect_op_free(op);
    ck_assert_msg(st == RILL_OK, "%s: %s", kind_names[k], err.msg);
    ck_assert_int_ge(rt_trace_find(&tr, RILL_EV_PROXY_HANDSHAKE, 0, 0), 0);
    ck_assert_int_ge(rt_trace_find(&tr, RILL_EV_PROXY_DONE, 0, 0), 0);
    ck_assert_int_ge(rt_trace_find(&tr, RILL_EV_TLS_DONE, 0, 0), 0);
    ck_assert_int_eq(rt_trace_find(&tr, RILL_EV_PROXY_TLS_DONE, 0, 0) >= 0, k == PX_HTTPS);
    rt_transfer_check(s, 65536, 65536);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rill_ctx_free(ctx);
    rt_origin_stop(o);
}
END_TEST

/* ---- the layers by hand ---- */

START_TEST(test_layer_by_hand_nonblocking)
{
    need(_i ? ms : tp, _i ? "microsocks" : "tinyproxy");
    rt_origin *o = rt_origin_start(RT_ORIGIN_PLAIN);
    uint16_t pport = rt_daemon_port(_i ? ms : tp);
    rill_stream *tcp = NULL, *t = NULL;
    rill_error err;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", pport, NULL, &tcp, &err), RILL_OK);
    rill_status st = _i ? rill_socks5_new(tcp, "127.0.0.1", rt_origin_port(o), NULL, 0, &t)
                        : rill_http_connect_new(tcp, "127.0.0.1", rt_origin_port(o), NULL, 0, &t);
    ck_assert_int_eq(st, RILL_OK);
    char d[256], want[128];
    snprintf(want, sizeof want, "%s(127.0.0.1:%u via 127.0.0.1:%u handshake) > tcp(",
             _i ? "socks5" : "http-connect", rt_origin_port(o), pport);
    rill_describe(t, d, sizeof d);
    ck_assert_msg(strncmp(d, want, strlen(want)) == 0, "describe: %s", d);
    ck_assert_int_eq(rill_set_timeouts(t, 0, 0), RILL_OK);
    while ((st = rill_tunnel_handshake(t)) == RILL_WANT_READ || st == RILL_WANT_WRITE) {
        int fd = -1;
        short ev = 0;
        ck_assert_int_eq(rill_poll_info(t, &fd, &ev), RILL_OK);
        ck_assert_int_eq(fd, rill_fd(t));
        struct pollfd p = { .fd = fd, .events = ev };
        ck_assert_int_eq(poll(&p, 1, 5000), 1);
    }
    ck_assert_msg(st == RILL_OK, "%s", rill_errmsg(t));
    snprintf(want, sizeof want, "%s(127.0.0.1:%u via 127.0.0.1:%u) > tcp(",
             _i ? "socks5" : "http-connect", rt_origin_port(o), pport);
    rill_describe(t, d, sizeof d);
    ck_assert_msg(strncmp(d, want, strlen(want)) == 0, "describe: %s", d);
    ck_assert_ptr_eq(rill_find(t, _i ? RILL_LAYER_SOCKS5 : RILL_LAYER_HTTP_CONNECT), t);
    ck_assert_int_eq(rill_set_timeouts(t, 5000, 5000), RILL_OK);
    rt_transfer_check(t, 100000, 100000);
    ck_assert_int_eq(rill_close(t), RILL_OK);
    rt_origin_stop(o);
}
END_TEST

/* A proxy that never answers: non-blocking steps wait on POLLIN; a deadline ends it. */
START_TEST(test_layer_silent_proxy)
{
    rt_badproxy *b = rt_badproxy_start(RT_BAD_SILENT);
    rill_stream *tcp = NULL, *t = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", rt_badproxy_port(b), NULL, &tcp, NULL),
                     RILL_OK);
    ck_assert_int_eq(rill_http_connect_new(tcp, "example.test", 443, NULL, 0, &t), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(t, 0, 0), RILL_OK);
    int64_t t0 = rt_now_us();
    rill_status st = rill_tunnel_handshake(t);
    ck_assert_int_eq(st, RILL_WANT_READ);
    rt_assert_elapsed(t0, 0, 150);
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(t, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, rill_fd(t));
    ck_assert_int_eq(ev, POLLIN);
    size_t n = 0;
    char c;
    ck_assert_int_eq(rill_read(t, &c, 1, &n), RILL_WANT_READ);
    ck_assert_int_eq(rill_set_timeouts(t, 300, 300), RILL_OK);
    t0 = rt_now_us();
    rt_assert_error(t, rill_tunnel_handshake(t), RILL_E_TIMEOUT, "http-connect: proxy 127.0.0.1:");
    rt_assert_error(t, RILL_E_TIMEOUT, RILL_E_TIMEOUT, "did not answer within 300 ms");
    rt_assert_elapsed(t0, 300, 3000);
    ck_assert_int_eq(rill_close(t), RILL_OK);
    rt_badproxy_stop(b);
}
END_TEST

/* The handshake on first I/O, blocking, with a deadline that is met. */
START_TEST(test_layer_first_io)
{
    need(tp, "tinyproxy");
    rt_origin *o = rt_origin_start(RT_ORIGIN_BANNER);
    rill_stream *tcp = NULL, *t = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", rt_daemon_port(tp), NULL, &tcp, NULL),
                     RILL_OK);
    static const char *const hdrs[] = { "X-Rill-Test: 1", "User-Agent: rill-test", NULL };
    rill_tunnel_opts to;
    rill_tunnel_opts_init(&to);
    to.headers = hdrs;
    to.proxy_name = "the-proxy";
    ck_assert_int_eq(rill_http_connect_new(tcp, "127.0.0.1", rt_origin_port(o), &to, 0, &t),
                     RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(t, 5000, 5000), RILL_OK);
    char line[8] = "";
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(t, line, 6, &n), RILL_OK);
    ck_assert_int_eq(memcmp(line, "HELLO\n", 6), 0);
    char d[256];
    rill_describe(t, d, sizeof d);
    ck_assert_msg(strstr(d, "via the-proxy)"), "%s", d);
    rt_transfer_check(t, 1000, 1000);
    ck_assert_int_eq(rill_close(t), RILL_OK);
    rt_origin_stop(o);
}
END_TEST

/*
 * An open tunnel with no bytes of its own holds no reply buffer: with max_reply at 1 MiB, a
 * tunnel that kept it would hold a megabyte per connection for its whole life.
 */
START_TEST(test_layer_releases_reply_buffer)
{
    need(tp, "tinyproxy");
    rt_counting_on(); /* before the origin (a thread here): its blocks are freed counted too */
    rt_origin *o = rt_origin_start(RT_ORIGIN_PLAIN);
    rill_stream *tcp = NULL, *t = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", rt_daemon_port(tp), NULL, &tcp, NULL),
                     RILL_OK);
    rill_tunnel_opts to;
    rill_tunnel_opts_init(&to);
    to.max_reply = 1 << 20;
    ck_assert_int_eq(rill_http_connect_new(tcp, "127.0.0.1", rt_origin_port(o), &to, 0, &t),
                     RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(t, 5000, 5000), RILL_OK);
    ck_assert_msg(rill_tunnel_handshake(t) == RILL_OK, "%s", rill_errmsg(t));
    ck_assert_uint_eq(rill_pending(t), 0);
    size_t held = rt_live_bytes; /* the origin (a thread here) counts too: a few KiB */
    ck_assert_msg(held < 256 * 1024, "an open tunnel holds %zu bytes", held);
    rt_transfer_check(t, 1000, 1000);
    ck_assert_int_eq(rill_close(t), RILL_OK);
    rt_origin_stop(o);
    rt_counting_off();
}
END_TEST

/* The peer of test_layer_flush_reports_failure: takes a little of the request, then resets. */
static void *reset_early(void *arg)
{
    rill_listener *l = arg;
    rill_stream *s = NULL;
    if (rill_accept(l, 5000, &s, NULL) != RILL_OK)
        return NULL;
    usleep(200 * 1000); /* the client's socket buffer fills meanwhile */
    char b[1000];
    size_t n = 0;
    (void)!rill_read(s, b, sizeof b, &n);
    struct linger lg = { 1, 0 };
    (void)setsockopt(rill_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    (void)!rill_close(s);
    return NULL;
}

/*
 * A non-blocking read starts the CONNECT; its request (8 MB of extra headers) cannot go at
 * once; the proxy resets. The flush that pushes the rest reports the failure (it said OK, and
 * only the next read told), and the read after it repeats it.
 */
START_TEST(test_layer_flush_reports_failure)
{
    enum { NH = 4000, HL = 2000 };
    static char hb[NH][HL];
    static const char *hs[NH + 1];
    for (int i = 0; i < NH; i++) {
        snprintf(hb[i], HL, "X-Pad-%d: ", i);
        size_t k = strlen(hb[i]);
        memset(hb[i] + k, 'a', HL - 1 - k);
        hb[i][HL - 1] = '\0';
        hs[i] = hb[i];
    }
    int fds = rt_count_fds();
    rill_listener *l = NULL;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, NULL), RILL_OK);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, reset_early, l), 0);
    rill_tunnel_opts to;
    rill_tunnel_opts_init(&to);
    to.headers = hs;
    rill_stream *tcp = NULL, *t = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &tcp, NULL),
                     RILL_OK);
    ck_assert_int_eq(rill_http_connect_new(tcp, "origin.test", 443, &to, 0, &t), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(t, 0, 0), RILL_OK);
    char buf[16];
    size_t n = 0;
    ck_assert_int_eq(rill_read(t, buf, sizeof buf, &n), RILL_WANT_WRITE);
    pthread_join(th, NULL);
    usleep(100 * 1000);
    rill_status st = rill_flush(t);
    ck_assert_msg(st == RILL_E_RESET || st == RILL_E_CLOSED, "flush: %d (%s)", (int)st,
                  rill_errmsg(t));
    ck_assert_msg(strstr(rill_errmsg(t), "http-connect: tcp: ") &&
                      (strstr(rill_errmsg(t), "reset by peer") || strstr(rill_errmsg(t), "pipe")),
                  "message: %s", rill_errmsg(t));
    ck_assert_int_eq(rill_read(t, buf, sizeof buf, &n), st);
    (void)!rill_close(t);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* ---- STARTTLS through a tunnel ---- */

START_TEST(test_starttls_through_tunnel)
{
    need(tp, "tinyproxy");
    rt_origin *o = rt_origin_start(RT_ORIGIN_STARTTLS);
    char u[128];
    url(u, sizeof u, "http", NULL, tp);
    rill_connect_opts opts = proxy_opts(u);
    rill_stream *s = NULL, *lines = NULL, *tls = NULL;
    rill_error err;
    rill_status st = rill_connect(NULL, "127.0.0.1", rt_origin_port(o), &opts, &s, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    ck_assert_int_eq(rill_lines_new(s, 512, RILL_EOL_CRLF, RILL_BORROW, &lines), RILL_OK);
    const char *line;
    size_t len;
    ck_assert_int_eq(rill_read_line(lines, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "220 ready");
    ck_assert_int_eq(rill_write_str(s, "STARTTLS\r\n", NULL), RILL_OK);
    ck_assert_int_eq(rill_read_line(lines, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "220 go");
    ck_assert_int_eq(rill_close(lines), RILL_OK);
    ck_assert_int_eq(rill_tls_client(s, rt_client_tls(), RT_CERTS_HOST, 0, &tls), RILL_OK);
    st = rill_tls_handshake(tls);
    ck_assert_msg(st == RILL_OK, "%s", rill_errmsg(tls));
    char d[512];
    rill_describe(tls, d, sizeof d);
    ck_assert_msg(strncmp(d, "tls(", 4) == 0 && strstr(d, "> http-connect("), "%s", d);
    rt_transfer_check(tls, 200000, 200000);
    ck_assert_int_eq(rill_close(tls), RILL_OK);
    rt_origin_stop(o);
}
END_TEST

/* ---- the HTTPS proxy's sessions stay apart from the origin's ---- */

START_TEST(test_https_proxy_session_cache_apart)
{
    need(https_px, "stunnel");
    /* The origin is the HTTPS proxy itself, reached through the tunnel: same name, port and
     * config as the proxy, so only the role in the cache key tells the sessions apart. */
    char u[128];
    url(u, sizeof u, "https", NULL, https_px);
    rill_connect_opts opts = proxy_opts(u);
    opts.proxy_tls = rt_client_tls();
    opts.tls = rt_client_tls();
    rill_ctx *ctx = test_ctx();
    for (int round = 0; round < 2; round++) {
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = rill_connect(ctx, "127.0.0.1", rt_daemon_port(https_px), &opts, &s, &err);
        ck_assert_msg(st == RILL_OK, "round %d: %s", round, err.msg);
        rill_stream *tunnel = rill_find(s, RILL_LAYER_HTTP_CONNECT);
        ck_assert_ptr_nonnull(tunnel);
        rill_stream *proxy_tls = rill_stream_inner(tunnel);
        ck_assert_str_eq(rill_kind(proxy_tls), RILL_LAYER_TLS);
        ck_assert_msg(!rill_tls_session_resumed(s),
                      "round %d: the origin's handshake resumed a session", round);
        ck_assert_int_eq(rill_tls_session_resumed(proxy_tls), round == 1);
        ck_assert_int_eq(rill_close(s), RILL_OK);
    }
    rill_ctx_free(ctx);
}
END_TEST

/* ---- errors ---- */

struct fail_case {
    const char *what;
    int proxy; /* 0 tp, 1 tp_auth, 2 tp_443, 3 ms, 4 ms_auth, 5 nobody */
    const char *scheme;
    const char *cred;
    int target_closed; /* connect to a port where nobody listens */
    rill_status want;
    const char *needle;
};

static const struct fail_case fails[] = {
    { "no credentials", 1, "http", NULL, 0, RILL_E_PROXY, "proxy authentication required" },
    { "bad credentials", 1, "http", "alice:wrong", 0, RILL_E_PROXY,
      "answered 401 Unauthorized to CONNECT 127.0.0.1:" },
    { "ConnectPort rule", 2, "http", NULL, 0, RILL_E_PROXY, "answered 403 " },
    { "unreachable target", 0, "http", NULL, 1, RILL_E_PROXY, "answered 500 " },
    { "socks no credentials", 4, "socks5h", NULL, 0, RILL_E_PROXY,
      "accepts none of the authentication methods offered" },
    { "socks bad credentials", 4, "socks5h", "bob:wrong", 0, RILL_E_PROXY,
      "rejected the username/password" },
    { "socks unreachable target", 3, "socks5h", NULL, 1, RILL_E_PROXY,
      "connection refused by destination host (reply 5)" },
    { "proxy refused", 5, "http", NULL, 0, RILL_E_REFUSED, "connection refused" },
    { "socks proxy refused", 5, "socks5", NULL, 0, RILL_E_REFUSED, "connection refused" },
};

START_TEST(test_failures)
{
    const struct fail_case *c = &fails[_i];
    rt_daemon *const ds[] = { tp, tp_auth, tp_443, ms, ms_auth };
    uint16_t pport;
    if (c->proxy < 5) {
        need(ds[c->proxy], c->what);
        pport = rt_daemon_port(ds[c->proxy]);
    } else {
        rill_listener *l = NULL;
        ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, NULL), RILL_OK);
        pport = rill_listener_port(l);
        rill_listener_free(l);
    }
    rt_origin *o = rt_origin_start(RT_ORIGIN_PLAIN);
    uint16_t target = rt_origin_port(o);
    if (c->target_closed) {
        rill_listener *l = NULL;
        ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, NULL), RILL_OK);
        target = rill_listener_port(l);
        rill_listener_free(l);
    }
    char u[160];
    snprintf(u, sizeof u, "%s://%s%s127.0.0.1:%u", c->scheme, c->cred ? c->cred : "",
             c->cred ? "@" : "", pport);
    rill_connect_opts opts = proxy_opts(u);
    int fds = rt_count_fds();
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(NULL, "127.0.0.1", target, &opts, &s, &err);
    for (int i = 0; i < 100 && rt_count_fds() != fds; i++)
        usleep(10000); /* the origin's thread closes its side of a refused tunnel */
    rt_assert_err(&err, st, c->want, c->needle);
    ck_assert_ptr_null(s);
    if (c->proxy == 5) {
        char pfx[64];
        snprintf(pfx, sizeof pfx, "proxy %s://127.0.0.1:%u: ", c->scheme, pport);
        ck_assert_msg(strncmp(err.msg, pfx, strlen(pfx)) == 0, "%s", err.msg);
    } else {
        char via[64];
        snprintf(via, sizeof via, "via proxy 127.0.0.1:%u", pport);
        ck_assert_msg(strstr(err.msg, via), "%s lacks %s", err.msg, via);
    }
    ck_assert_int_eq(rt_count_fds(), fds);
    rt_origin_stop(o);
}
END_TEST

/* Credentials that work, from the URL (percent-encoded) and from the options. */
START_TEST(test_credentials_ok)
{
    rt_daemon *d = _i < 2 ? tp_auth : ms_auth;
    need(d, "auth proxy");
    rt_origin *o = rt_origin_start(RT_ORIGIN_PLAIN);
    char u[160];
    const char *scheme = _i < 2 ? "http" : "socks5h";
    const char *cred = _i < 2 ? "alice:s3%63ret" : "bob:p%40ss";
    if (_i % 2 == 0)
        snprintf(u, sizeof u, "%s://%s@127.0.0.1:%u", scheme, cred, rt_daemon_port(d));
    else
        snprintf(u, sizeof u, "%s://127.0.0.1:%u", scheme, rt_daemon_port(d));
    rill_connect_opts opts = proxy_opts(u);
    if (_i % 2 == 1) {
        opts.proxy_user = _i < 2 ? "alice" : "bob";
        opts.proxy_password = _i < 2 ? "s3cret" : "p@ss";
    }
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(NULL, "127.0.0.1", rt_origin_port(o), &opts, &s, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    rt_transfer_check(s, 1000, 1000);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rt_origin_stop(o);
}
END_TEST

struct bad_case {
    rt_bad_mode mode;
    const char *scheme;
    rill_status want;
    const char *needle;
};

static const struct bad_case bads[] = {
    { RT_BAD_GARBAGE, "http", RILL_E_PROTOCOL, "not an HTTP reply: \"SSH-2.0-OpenSSH_9.2\"" },
    { RT_BAD_CLOSE_MID, "http", RILL_E_PROTOCOL,
      "closed the connection before its reply was complete (11 bytes of it came)" },
    { RT_BAD_SILENT, "http", RILL_E_TIMEOUT,
      "timed out after 400 ms waiting for the CONNECT answer of proxy" },
    { RT_BAD_LONG_HEADER, "http", RILL_E_PROTOCOL, "reply header block longer than 16384 bytes" },
    { RT_BAD_SOCKS_GARBAGE, "socks5h", RILL_E_PROTOCOL, "not a SOCKS5 proxy (version byte 0x48)" },
    { RT_BAD_SOCKS_BADREP, "socks5h", RILL_E_PROXY, "unknown reply code (reply 9)" },
    { RT_BAD_SILENT, "socks5h", RILL_E_TIMEOUT, "in the SOCKS5 handshake with proxy" },
    { RT_BAD_SILENT, "https", RILL_E_TIMEOUT, "in the TLS handshake with proxy" },
};

START_TEST(test_bad_proxy)
{
    const struct bad_case *c = &bads[_i];
    rt_watchdog(20, "bad proxy");
    rt_badproxy *b = rt_badproxy_start(c->mode);
    char u[128];
    snprintf(u, sizeof u, "%s://127.0.0.1:%u", c->scheme, rt_badproxy_port(b));
    rill_connect_opts opts = proxy_opts(u);
    opts.timeout_ms = 400;
    int fds = rt_count_fds();
    int64_t t0 = rt_now_us();
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(NULL, "127.0.0.1", 443, &opts, &s, &err);
    rt_assert_err(&err, st, c->want, c->needle);
    rt_assert_elapsed(t0, c->want == RILL_E_TIMEOUT ? 400 : 0, 5000);
    for (int i = 0; i < 500 && rt_badproxy_handled(b) < 1; i++)
        usleep(10000); /* its thread closes its end */
    ck_assert_int_eq(rt_count_fds(), fds);
    rt_badproxy_stop(b);
}
END_TEST

/* An HTTPS proxy is verified with its own name and config: the system store does not know
 * the test root, and a config that trusts it for another name still refuses. */
START_TEST(test_https_proxy_verified)
{
    need(https_px, "stunnel");
    char u[128];
    snprintf(u, sizeof u, "https://localhost:%u", rt_daemon_port(https_px));
    rill_connect_opts opts = proxy_opts(u);
    int fds = rt_count_fds();
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(NULL, "127.0.0.1", 443, &opts, &s, &err);
    rt_assert_err(&err, st, RILL_E_TLS_VERIFY, "certificate verify failed");
    ck_assert_msg(strstr(err.msg, "via proxy 127.0.0.1:") || strstr(err.msg, "via proxy [::1]:"),
                  "%s", err.msg);
    /* The origin's config (which trusts the root) is not used for the proxy. */
    opts.tls = rt_client_tls();
    st = rill_connect(NULL, "127.0.0.1", 443, &opts, &s, &err);
    rt_assert_err(&err, st, RILL_E_TLS_VERIFY, "certificate verify failed");
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* Bytes the proxy sends with its 200 belong to the tunnel: none lost, none parsed. */
START_TEST(test_tunnel_bytes_in_reply_segment)
{
    rt_badproxy *b = rt_badproxy_start(RT_BAD_SAME_SEGMENT);
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%u", rt_badproxy_port(b));
    rill_connect_opts opts = proxy_opts(u);
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(NULL, "127.0.0.1", 443, &opts, &s, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    ck_assert_uint_eq(rill_pending(s), strlen(RT_BAD_FIRST_BYTES));
    /* A TLS client must not start over bytes that came before its handshake. */
    rill_stream *tls = NULL;
    ck_assert_int_eq(rill_tls_client(s, rt_client_tls(), RT_CERTS_HOST, 0, &tls),
                     RILL_E_PENDING_DATA);
    char buf[64] = "";
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(s, buf, strlen(RT_BAD_FIRST_BYTES), &n), RILL_OK);
    ck_assert_str_eq(buf, RT_BAD_FIRST_BYTES);
    ck_assert_uint_eq(rill_pending(s), 0);
    ck_assert_int_eq(rill_write_str(s, "echo me\n", NULL), RILL_OK);
    memset(buf, 0, sizeof buf);
    ck_assert_int_eq(rill_read_full(s, buf, 8, &n), RILL_OK);
    ck_assert_str_eq(buf, "echo me\n");
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rt_badproxy_stop(b);
}
END_TEST

/* A proxy whose name does not resolve; a proxy URL that does not parse. */
START_TEST(test_proxy_name_not_resolved)
{
    rt_dns *dns = rt_dns_start();
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.dns_servers = rt_dns_servers(dns);
    rill_ctx *ctx = NULL;
    ck_assert_int_eq(rill_ctx_new(&co, &ctx, NULL), RILL_OK);
    rill_connect_opts opts = proxy_opts("http://" RT_DNS_MISSING ":3128");
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect(ctx, "127.0.0.1", 443, &opts, &s, &err);
    rt_assert_err(&err, st, RILL_E_DNS, "proxy http://" RT_DNS_MISSING ":3128: resolve: ");
    /* socks5:// with a host name that does not resolve: the host's own resolve error. */
    need(ms, "microsocks");
    char u[128];
    url(u, sizeof u, "socks5", NULL, ms);
    opts = proxy_opts(u);
    st = rill_connect(ctx, RT_DNS_MISSING, 443, &opts, &s, &err);
    rt_assert_err(&err, st, RILL_E_DNS, "resolve: " RT_DNS_MISSING ":");
    ck_assert_msg(strncmp(err.msg, "resolve: ", 9) == 0, "%s", err.msg);
    /* ...and one that resolves (through dnsmasq, not at once): the proxy gets the address. */
    rt_origin *o = rt_origin_start(RT_ORIGIN_PLAIN);
    rt_trace tr;
    rt_trace_attach(&tr, &opts);
    st = rill_connect(ctx, RT_DNS_V4, rt_origin_port(o), &opts, &s, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    char d[256], want[64];
    rill_describe(s, d, sizeof d);
    snprintf(want, sizeof want, "socks5(127.0.0.1:%u via", rt_origin_port(o));
    ck_assert_msg(strstr(d, want), "%s", d);
    char t[2048];
    rt_trace_text(&tr, t, sizeof t);
    ck_assert_msg(strstr(t, "RESOLVING(" RT_DNS_V4) && strstr(t, "RESOLVING(127.0.0.1"), "%s", t);
    rt_transfer_check(s, 1000, 1000);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rt_origin_stop(o);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* Freeing an op in the middle of the proxy's handshake leaves nothing behind. */
START_TEST(test_cancel_in_proxy_phase)
{
    rt_badproxy *b = rt_badproxy_start(RT_BAD_SILENT);
    need(https_px, "stunnel");
    char u[128];
    if (_i)
        url(u, sizeof u, "https", NULL, https_px);
    else
        snprintf(u, sizeof u, "http://127.0.0.1:%u", rt_badproxy_port(b));
    rill_connect_opts opts = proxy_opts(u);
    opts.proxy_tls = rt_client_tls();
    rt_trace tr;
    rt_trace_attach(&tr, &opts);
    int fds = rt_count_fds();
    rt_counting_on();
    rill_connect_op *op = NULL;
    rill_error err;
    ck_assert_int_eq(rill_connect_start(NULL, "127.0.0.1", 9, &opts, &op, &err), RILL_OK);
    rill_connect_event_type until = _i ? RILL_EV_PROXY_TLS : RILL_EV_PROXY_HANDSHAKE;
    for (int i = 0; i < 100 && rt_trace_find(&tr, until, 0, 0) < 0; i++) {
        int fd = -1, timeout = -1;
        short ev = 0;
        ck_assert_int_eq(rill_connect_poll_info(op, &fd, &ev, &timeout), RILL_OK);
        struct pollfd p = { .fd = fd, .events = ev };
        (void)poll(&p, fd >= 0 ? 1 : 0, 50);
        rill_stream *s = NULL;
        rill_status st = rill_connect_step(op, &s, &err);
        ck_assert_msg(st == RILL_WANT_READ || st == RILL_WANT_WRITE, "%s", err.msg);
    }
    ck_assert_int_ge(rt_trace_find(&tr, until, 0, 0), 0);
    rill_connect_op_free(op);
    /*
     * The scripted proxy is a thread of this process: its stream was allocated through the
     * counting allocator, so it must close its end before the allocator changes (and before
     * the count, which includes it).
     */
    for (int i = 0; _i == 0 && i < 500 && rt_badproxy_handled(b) < 1; i++)
        usleep(10000);
    size_t live = rt_live_bytes;
    rt_counting_off();
    ck_assert_msg(live == 0, "%zu bytes left", live);
    ck_assert_int_eq(rt_count_fds(), fds);
    rt_badproxy_stop(b);
}
END_TEST

START_TEST(test_invalid)
{
    rill_stream *s = NULL;
    rill_error err;
    rill_connect_opts opts = proxy_opts("ftp://127.0.0.1:21");
    rt_assert_err(&err, rill_connect(NULL, "127.0.0.1", 443, &opts, &s, &err), RILL_E_INVALID,
                  "proxy: unsupported scheme \"ftp\"");
    opts = proxy_opts("http://proxy.test:3128");
    rt_assert_err(&err, rill_connect(NULL, "127.0.0.1", 443, &opts, &s, &err), RILL_E_INVALID,
                  "\"proxy.test\" is a name and no context was given");
    int fd = -1;
    rill_stream *raw = rt_fd_end(&fd);
    rill_tunnel_opts to;
    rill_tunnel_opts_init(&to);
    static const char *const bad_hdr[] = { "X-Evil: a\r\nHost: b", NULL };
    to.headers = bad_hdr;
    rill_stream *t = NULL;
    rt_assert_error(raw, rill_http_connect_new(raw, "example.test", 443, &to, 0, &t),
                    RILL_E_INVALID, "is not \"Name: value\" on one line");
    rt_assert_error(raw, rill_socks5_new(raw, "example.test", 443, &to, 0, &t), RILL_E_INVALID,
                    "SOCKS5 has no request headers");
    rt_assert_error(raw, rill_http_connect_new(raw, "bad host", 443, NULL, 0, &t), RILL_E_INVALID,
                    "rill_http_connect_new:");
    rt_assert_error(raw, rill_http_connect_new(raw, "example.test", 0, NULL, 0, &t), RILL_E_INVALID,
                    "port");
    rill_tunnel_opts_init(&to);
    to.max_reply = 10;
    rt_assert_error(raw, rill_http_connect_new(raw, "example.test", 443, &to, 0, &t),
                    RILL_E_INVALID, "max_reply 10 out of range");
    rt_assert_error(raw, rill_tunnel_handshake(raw), RILL_E_INVALID,
                    "no http-connect or socks5 layer");
    ck_assert_int_eq(rill_close(raw), RILL_OK);
    close(fd);
}
END_TEST

/* ---- URLs, no_proxy and the environment, over tables ---- */

struct url_case {
    const char *url;
    rill_status want;
    rill_proxy_scheme scheme;
    const char *host;
    unsigned port;
    const char *user, *password;
};

static const struct url_case urls[] = {
    { "http://proxy.test:3128", RILL_OK, RILL_PROXY_HTTP, "proxy.test", 3128, "", "" },
    { "proxy.test", RILL_OK, RILL_PROXY_HTTP, "proxy.test", 1080, "", "" },
    { "HTTPS://proxy.test/", RILL_OK, RILL_PROXY_HTTPS, "proxy.test", 443, "", "" },
    { "socks5://u:p@10.0.0.1:1081", RILL_OK, RILL_PROXY_SOCKS5, "10.0.0.1", 1081, "u", "p" },
    { "socks5h://[::1]:1080", RILL_OK, RILL_PROXY_SOCKS5H, "::1", 1080, "", "" },
    { "http://us%40r:p%3Ass@[fe80::1]:8080", RILL_OK, RILL_PROXY_HTTP, "fe80::1", 8080, "us@r",
      "p:ss" },
    { "http://a:b@c@proxy.test", RILL_OK, RILL_PROXY_HTTP, "proxy.test", 1080, "a", "b@c" },
    { "http://user@proxy.test:1", RILL_OK, RILL_PROXY_HTTP, "proxy.test", 1, "user", "" },
    { "ftp://proxy.test", RILL_E_INVALID, 0, "unsupported scheme", 0, NULL, NULL },
    { "http://proxy.test:0", RILL_E_INVALID, 0, "bad port", 0, NULL, NULL },
    { "http://proxy.test:65536", RILL_E_INVALID, 0, "bad port", 0, NULL, NULL },
    { "http://proxy.test:80x", RILL_E_INVALID, 0, "bad port", 0, NULL, NULL },
    { "http://[::1", RILL_E_INVALID, 0, "no ']'", 0, NULL, NULL },
    { "http://", RILL_E_INVALID, 0, "no host", 0, NULL, NULL },
    { "http://u:%zz@proxy.test", RILL_E_INVALID, 0, "bad %-escape", 0, NULL, NULL },
    { "http://u:%4@proxy.test", RILL_E_INVALID, 0, "truncated %-escape", 0, NULL, NULL },
    { "http://pro xy:1", RILL_E_INVALID, 0, "proxy: ", 0, NULL, NULL },
};

START_TEST(test_url_table)
{
    const struct url_case *c = &urls[_i];
    rill_proxy p;
    rill_error err;
    rill_status st = rill_proxy_parse(c->url, &p, &err);
    if (c->want != RILL_OK) {
        rt_assert_err(&err, st, c->want, c->host);
        return;
    }
    ck_assert_msg(st == RILL_OK, "%s: %s", c->url, err.msg);
    ck_assert_int_eq(p.scheme, c->scheme);
    ck_assert_str_eq(p.host, c->host);
    ck_assert_uint_eq(p.port, c->port);
    ck_assert_str_eq(p.user, c->user);
    ck_assert_str_eq(p.password, c->password);
}
END_TEST

/* A message about a proxy URL never shows its password: it may end up in a log. */
START_TEST(test_url_errors_hide_password)
{
    static const char *const bad[] = {
        "http://alice:s3cret@proxy.test:99999",
        "ftp://alice:s3cret@proxy.test",
        "http://alice:s3cret@",
        "http://alice:s3cret@[::1",
        "http://al%zzice:s3cret@proxy.test",
        "http://alice:s3cret@[::1]x",
    };
    static const char *const want[] = {
        "proxy: bad port in http://alice:***@proxy.test:99999",
        "proxy: unsupported scheme \"ftp\" in ftp://alice:***@proxy.test",
        "proxy: no host in http://alice:***@",
        "proxy: no ']' after IPv6 address in http://alice:***@[::1",
        "proxy: user name in http://al%zzice:***@proxy.test: bad %-escape",
        "proxy: unexpected text after ']' in http://alice:***@[::1]x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rill_proxy p;
        rill_error err;
        rt_assert_err(&err, rill_proxy_parse(bad[i], &p, &err), RILL_E_INVALID, want[i]);
        ck_assert_msg(!strstr(err.msg, "s3cret"), "the password shows: %s", err.msg);
    }
}
END_TEST

struct bypass_case {
    const char *list;
    const char *host;
    unsigned port;
    int want;
};

static const struct bypass_case bypasses[] = {
    { "*", "anything.test", 443, 1 },
    { "example.test", "example.test", 443, 1 },
    { "example.test", "www.example.test", 443, 1 },
    { "example.test", "badexample.test", 443, 0 },
    { ".example.test", "example.test", 443, 1 },
    { ".example.test", "a.b.example.test", 443, 1 },
    { "EXAMPLE.test.", "www.Example.TEST", 443, 1 },
    { "example.test", "www.example.test.", 443, 1 },
    { "other.test, example.test", "example.test", 80, 1 },
    { "other.test example.test", "example.test", 80, 1 },
    { "example.test:8443", "example.test", 8443, 1 },
    { "example.test:8443", "example.test", 443, 0 },
    { "10.0.0.0/8", "10.1.2.3", 443, 1 },
    { "10.0.0.0/8", "11.1.2.3", 443, 0 },
    { "192.168.1.0/25", "192.168.1.127", 443, 1 },
    { "192.168.1.0/25", "192.168.1.128", 443, 0 },
    { "10.0.0.0/8", "ten.example.test", 443, 0 },
    { "127.0.0.1", "127.0.0.1", 443, 1 },
    { "127.0.0.1", "127.0.0.2", 443, 0 },
    { "::1", "::1", 443, 1 },
    { "::1", "[::1]", 443, 1 },
    { "[::1]:8080", "::1", 8080, 1 },
    { "[::1]:8080", "::1", 443, 0 },
    { "fe80::/10", "fe80::1234", 443, 1 },
    { "fe80::/10", "fec0::1", 443, 0 },
    { "2001:db8::/32", "2001:db8:ffff::1", 443, 1 },
    { "2001:db8::/32", "2001:db9::1", 443, 0 },
    { "10.0.0.0/8", "::ffff:10.0.0.1", 443, 0 },
    { "0.0.0.0/0", "203.0.113.9", 443, 1 },
    { "::/0", "2001:db8::1", 443, 1 },
    { "", "example.test", 443, 0 },
    { ",,  ,", "example.test", 443, 0 },
    { "10.0.0.0/33", "10.0.0.1", 443, 0 },
    { "1.2.3.4/-0", "9.9.9.9", 443, 0 },             /* not a prefix length: no match */
    { "example.test:443x", "example.test", 443, 0 }, /* not a port: no match */
    { "example.test:", "example.test", 443, 0 },
    { "[::1]:8080x", "::1", 8080, 0 },
};

START_TEST(test_bypass_table)
{
    const struct bypass_case *c = &bypasses[_i];
    ck_assert_msg(rill_proxy_bypass(c->list, c->host, (uint16_t)c->port) == c->want,
                  "no_proxy \"%s\" vs %s:%u: wanted %d", c->list, c->host, c->port, c->want);
}
END_TEST

struct env_case {
    const char *vars[6][2]; /* name, value */
    const char *host;
    int tls;
    int found;
    const char *proxy_host;
};

static const struct env_case envs[] = {
    { { { "https_proxy", "http://a.test:1" } }, "example.test", 1, 1, "a.test" },
    { { { "https_proxy", "http://a.test:1" } }, "example.test", 0, 0, NULL },
    { { { "HTTPS_PROXY", "http://b.test:1" } }, "example.test", 1, 1, "b.test" },
    { { { "https_proxy", "http://a.test:1" }, { "HTTPS_PROXY", "http://b.test:1" } },
      "example.test",
      1,
      1,
      "a.test" },
    { { { "all_proxy", "socks5h://c.test" } }, "example.test", 0, 1, "c.test" },
    { { { "ALL_PROXY", "socks5h://d.test" } }, "example.test", 1, 1, "d.test" },
    { { { "https_proxy", "http://a.test:1" }, { "all_proxy", "http://c.test" } },
      "example.test",
      1,
      1,
      "a.test" },
    { { { "all_proxy", "http://c.test" }, { "no_proxy", "example.test" } },
      "www.example.test",
      0,
      0,
      NULL },
    { { { "all_proxy", "http://c.test" }, { "NO_PROXY", "*" } }, "example.test", 0, 0, NULL },
    { { { "all_proxy", "http://c.test" }, { "no_proxy", "10.0.0.0/8,::1" } }, "::1", 0, 0, NULL },
    { { { "all_proxy", "http://c.test" }, { "no_proxy", "10.0.0.0/8,::1" } },
      "10.9.9.9",
      0,
      0,
      NULL },
    { { { "all_proxy", "http://c.test" }, { "no_proxy", "10.0.0.0/8,::1" } },
      "11.0.0.1",
      0,
      1,
      "c.test" },
    { { { NULL, NULL } }, "example.test", 1, 0, NULL },
};

static const char *const env_names[] = { "https_proxy", "HTTPS_PROXY", "all_proxy",
                                         "ALL_PROXY",   "no_proxy",    "NO_PROXY" };

START_TEST(test_env_table)
{
    const struct env_case *c = &envs[_i];
    for (size_t i = 0; i < 6; i++)
        unsetenv(env_names[i]);
    for (size_t i = 0; i < 6 && c->vars[i][0]; i++)
        setenv(c->vars[i][0], c->vars[i][1], 1);
    rill_proxy p;
    int found = -1;
    rill_error err;
    rill_status st = rill_proxy_from_env(c->host, 443, c->tls, &p, &found, &err);
    for (size_t i = 0; i < 6; i++)
        unsetenv(env_names[i]);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    ck_assert_int_eq(found, c->found);
    if (found)
        ck_assert_str_eq(p.host, c->proxy_host);
}
END_TEST

START_TEST(test_env_bad_url_and_connect)
{
    setenv("all_proxy", "gopher://x", 1);
    rill_proxy p;
    int found = -1;
    rill_error err;
    rt_assert_err(&err, rill_proxy_from_env("example.test", 443, 0, &p, &found, &err),
                  RILL_E_INVALID, "all_proxy: proxy: unsupported scheme \"gopher\"");
    unsetenv("all_proxy");
    /* rill_connect with proxy_from_env: the environment's proxy, and its no_proxy. */
    need(tp, "tinyproxy");
    rt_origin *o = rt_origin_start(RT_ORIGIN_PLAIN);
    char u[128];
    url(u, sizeof u, "http", NULL, tp);
    setenv("all_proxy", u, 1);
    rill_connect_opts opts = proxy_opts(NULL);
    opts.proxy_from_env = 1;
    rill_stream *s = NULL;
    ck_assert_int_eq(rill_connect(NULL, "127.0.0.1", rt_origin_port(o), &opts, &s, &err), RILL_OK);
    ck_assert_ptr_nonnull(rill_find(s, RILL_LAYER_HTTP_CONNECT));
    ck_assert_int_eq(rill_close(s), RILL_OK);
    setenv("no_proxy", "127.0.0.0/8", 1);
    ck_assert_int_eq(rill_connect(NULL, "127.0.0.1", rt_origin_port(o), &opts, &s, &err), RILL_OK);
    ck_assert_ptr_null(rill_find(s, RILL_LAYER_HTTP_CONNECT));
    ck_assert_int_eq(rill_close(s), RILL_OK);
    /* opts.no_proxy works without the environment too. */
    unsetenv("no_proxy");
    unsetenv("all_proxy");
    opts = proxy_opts(u);
    opts.no_proxy = "localhost,127.0.0.1";
    ck_assert_int_eq(rill_connect(NULL, "127.0.0.1", rt_origin_port(o), &opts, &s, &err), RILL_OK);
    ck_assert_ptr_null(rill_find(s, RILL_LAYER_HTTP_CONNECT));
    ck_assert_int_eq(rill_close(s), RILL_OK);
    rt_origin_stop(o);
}
END_TEST

/* ---- many connects, failures mixed in: no fd and no byte left ---- */

START_TEST(test_many_connects_no_leak)
{
    need(tp, "tinyproxy");
    need(ms_auth, "microsocks");
    rt_watchdog(120, "many proxied connects");
    int fds = rt_count_fds();
    rt_origin *o = rt_origin_start(RT_ORIGIN_PLAIN);
    rt_badproxy *bad = rt_badproxy_start(RT_BAD_GARBAGE);
    char ok_url[128], auth_bad[128], garbage[128];
    url(ok_url, sizeof ok_url, "http", NULL, tp);
    url(auth_bad, sizeof auth_bad, "socks5h", "bob:nope", ms_auth);
    snprintf(garbage, sizeof garbage, "http://127.0.0.1:%u", rt_badproxy_port(bad));
    rt_counting_on();
    int n = rt_on_valgrind() ? 30 : 1000, good = 0, bad_count = 0;
    for (int i = 0; i < n; i++) {
        const char *u = i % 3 == 0 ? ok_url : i % 3 == 1 ? auth_bad : garbage;
        rill_connect_opts opts = proxy_opts(u);
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = rill_connect(NULL, "127.0.0.1", rt_origin_port(o), &opts, &s, &err);
        if (i % 3 == 0) {
            ck_assert_msg(st == RILL_OK, "connect %d: %s", i, err.msg);
            rt_transfer_check(s, 100, 100);
            ck_assert_int_eq(rill_close(s), RILL_OK);
            good++;
        } else {
            ck_assert_int_eq(st, i % 3 == 1 ? RILL_E_PROXY : RILL_E_PROTOCOL);
            bad_count += i % 3 == 2;
        }
    }
    /* The helper servers close their ends in their own threads: wait for them. */
    for (int i = 0; i < 500 && (rt_origin_served(o) < good || rt_badproxy_handled(bad) < bad_count);
         i++)
        usleep(10000);
    size_t live = rt_live_bytes;
    rt_counting_off();
    rt_origin_stop(o);
    rt_badproxy_stop(bad);
    ck_assert_msg(live == 0, "%zu bytes of rill's memory left", live);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* ---- rillcat ---- */

struct rc_run {
    int status; /* exit status, or -1 */
    char out[4096];
    size_t out_len;
    char err[8192];
};

/*
 * Run rillcat with @p args and @p env ("NAME=value" each; the proxy variables are cleared
 * first), @p in on stdin, which stays open until @p expect_out bytes came out (or 10 s):
 * many proxies end a tunnel when the client half-closes, which would cut the answer short.
 * Waits at most 20 s.
 */
static void run_rillcat_ex(const char *const *args, const char *const *env, const void *in,
                           size_t in_len, size_t expect_out, struct rc_run *r)
{
    const char *dir = getenv("RILL_TEST_BINARY_DIR");
    ck_assert_msg(dir != NULL, "RILL_TEST_BINARY_DIR is not set (run through ctest)");
    char path[4096], tmp[64], out_path[96], err_path[96];
    snprintf(path, sizeof path, "%s/tools/rillcat", dir);
    rt_mkdtemp(tmp, sizeof tmp);
    snprintf(out_path, sizeof out_path, "%s/out", tmp);
    snprintf(err_path, sizeof err_path, "%s/err", tmp);
    int inp[2];
    ck_assert_int_eq(pipe2(inp, O_CLOEXEC), 0);
    char *argv[32];
    size_t n = 0;
    argv[n++] = "rillcat";
    for (size_t i = 0; args[i]; i++)
        argv[n++] = (char *)(uintptr_t)args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (size_t i = 0; i < 6; i++)
            unsetenv(env_names[i]);
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)(uintptr_t)env[i]);
        int fout = open(out_path, O_WRONLY | O_CREAT, 0600),
            ferr = open(err_path, O_WRONLY | O_CREAT, 0600);
        if (fout < 0 || ferr < 0 || dup2(inp[0], 0) < 0 || dup2(fout, 1) < 0 || dup2(ferr, 2) < 0)
            _exit(126);
        execv(path, argv);
        _exit(127);
    }
    close(inp[0]);
    ck_assert(write(inp[1], in, in_len) == (ssize_t)in_len);
    for (int i = 0; i < 1000 && expect_out > 0; i++) {
        struct stat st;
        if (stat(out_path, &st) == 0 && (size_t)st.st_size >= expect_out)
            break;
        usleep(10000);
    }
    close(inp[1]);
    int wst = 0;
    r->status = -1;
    for (int i = 0; i < 2000; i++) {
        if (waitpid(pid, &wst, WNOHANG) == pid) {
            r->status = WIFEXITED(wst) ? WEXITSTATUS(wst) : -1;
            break;
        }
        usleep(10000);
    }
    if (r->status == -1 && waitpid(pid, &wst, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &wst, 0);
    }
    size_t len = 0;
    char *o = rt_file_read(out_path, &len);
    r->out_len = len < sizeof r->out ? len : sizeof r->out;
    memcpy(r->out, o, r->out_len);
    free(o);
    char *e = rt_file_read(err_path, &len);
    snprintf(r->err, sizeof r->err, "%s", e);
    free(e);
    rt_rmdir(tmp);
}

static void run_rillcat(const char *const *args, const char *const *env, const void *in,
                        size_t in_len, struct rc_run *r)
{
    run_rillcat_ex(args, env, in, in_len, 0, r);
}

/* What the origin answers in RT_ORIGIN_BANNER mode to a 5-byte upload and download. */
static void transfer_request(unsigned char req[21])
{
    memset(req, 0, 21);
    req[7] = 5;
    req[15] = 5;
    memcpy(req + 16, "abcde", 5);
}

START_TEST(test_rillcat_through_proxies)
{
    rt_watchdog(60, "rillcat through proxies");
    need(tp, "tinyproxy");
    need(ms, "microsocks");
    need(https_px, "stunnel");
    rt_origin *plain = rt_origin_start(RT_ORIGIN_BANNER);
    char port[8], proxy[96], env1[128];
    snprintf(port, sizeof port, "%u", rt_origin_port(plain));
    unsigned char req[21];
    transfer_request(req);
    struct rc_run r;
    /* --proxy, -v shows the steps */
    url(proxy, sizeof proxy, "http", NULL, tp);
    const char *a1[] = { "-v", "--proxy", proxy, "127.0.0.1", port, NULL };
    run_rillcat_ex(a1, NULL, req, sizeof req, 19, &r);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_uint_eq(r.out_len, 6 + 8 + 5);
    ck_assert_int_eq(memcmp(r.out, "HELLO\n", 6), 0);
    ck_assert_msg(strstr(r.err, "asking proxy 127.0.0.1:") && strstr(r.err, "(CONNECT)") &&
                      strstr(r.err, "proxy tunnel to 127.0.0.1 open") &&
                      strstr(r.err, "http-connect(127.0.0.1:"),
                  "%s", r.err);
    /* all_proxy from the environment: socks5h */
    url(proxy, sizeof proxy, "socks5h", NULL, ms);
    snprintf(env1, sizeof env1, "all_proxy=%s", proxy);
    const char *e2[] = { env1, NULL };
    const char *a2[] = { "-v", "127.0.0.1", port, NULL };
    run_rillcat_ex(a2, e2, req, sizeof req, 19, &r);
    ck_assert_msg(r.status == 0 && strstr(r.err, "socks5(127.0.0.1:"), "exit %d: %s", r.status,
                  r.err);
    ck_assert_uint_eq(r.out_len, 6 + 8 + 5);
    /* https_proxy is for TLS only: without --tls a dead https_proxy is not used... */
    const char *e3[] = { "https_proxy=http://127.0.0.1:9", NULL };
    run_rillcat(a2, e3, req, sizeof req, &r);
    ck_assert_msg(r.status == 0 && !strstr(r.err, "proxy"), "exit %d: %s", r.status, r.err);
    /* ...and NO_PROXY (CIDR) and --noproxy bypass all_proxy. */
    const char *e4[] = { "all_proxy=http://127.0.0.1:9", "NO_PROXY=127.0.0.0/8", NULL };
    run_rillcat(a2, e4, req, sizeof req, &r);
    ck_assert_msg(r.status == 0 && strstr(r.err, "no proxy for 127.0.0.1 (no_proxy)"),
                  "exit %d: %s", r.status, r.err);
    const char *a5[] = { "-v",        "--noproxy", "*", "--proxy", "http://127.0.0.1:9",
                         "127.0.0.1", port,        NULL };
    run_rillcat(a5, NULL, req, sizeof req, &r);
    ck_assert_msg(r.status == 0 && strstr(r.err, "no proxy for 127.0.0.1 (--noproxy)"),
                  "exit %d: %s", r.status, r.err);
    rt_origin_stop(plain);

    /* An HTTPS proxy (--proxy-cacert) to a TLS origin, the origin verified by its own name. */
    rt_origin *tls = rt_origin_start(RT_ORIGIN_TLS);
    snprintf(port, sizeof port, "%u", rt_origin_port(tls));
    url(proxy, sizeof proxy, "https", NULL, https_px);
    const rt_certs *c = rt_certs_get();
    const char *a6[] = { "-v",        "--proxy",  proxy, "--proxy-cacert", c->ca,
                         "--tls",     "--cafile", c->ca, "--servername",   RT_CERTS_HOST,
                         "127.0.0.1", port,       NULL };
    run_rillcat_ex(a6, NULL, req, 16 + 5, 13, &r);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_uint_eq(r.out_len, 8 + 5);
    ck_assert_msg(strstr(r.err, "TLS handshake with proxy done") &&
                      strstr(r.err, "http-connect(127.0.0.1:") && strstr(r.err, "> tls("),
                  "%s", r.err);
    /* Without --proxy-cacert the proxy's certificate is checked against the system store. */
    const char *a7[] = { "--proxy",      proxy,         "--tls",     "--cafile", c->ca,
                         "--servername", RT_CERTS_HOST, "127.0.0.1", port,       NULL };
    run_rillcat(a7, NULL, req, 16 + 5, &r);
    ck_assert_msg(r.status == 60 && strstr(r.err, "certificate verify failed"), "exit %d: %s",
                  r.status, r.err);
    rt_origin_stop(tls);
}
END_TEST

START_TEST(test_rillcat_exit_codes)
{
    rt_watchdog(60, "rillcat exit codes");
    need(tp_auth, "tinyproxy");
    need(ms_auth, "microsocks");
    rt_dns *dns = rt_dns_start();
    rt_badproxy *silent = rt_badproxy_start(RT_BAD_SILENT);
    rill_listener *l = NULL;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, NULL), RILL_OK);
    char dead[64], auth[64], socks[96], quiet[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", rill_listener_port(l));
    rill_listener_free(l);
    url(auth, sizeof auth, "http", NULL, tp_auth);
    url(socks, sizeof socks, "socks5h", NULL, ms_auth);
    snprintf(quiet, sizeof quiet, "http://127.0.0.1:%u", rt_badproxy_port(silent));
    struct {
        const char *args[12];
        int rc;
        const char *needle;
    } cases[] = {
        { { "--dns-server", rt_dns_servers(dns), "--proxy", "http://" RT_DNS_MISSING ":3128",
            "127.0.0.1", "443", NULL },
          5,
          "proxy http://" RT_DNS_MISSING ":3128: resolve:" },
        { { "--proxy", dead, "127.0.0.1", "443", NULL }, 7, "connection refused" },
        { { "--proxy", auth, "127.0.0.1", "443", NULL }, 56, "proxy authentication required" },
        { { "--proxy", auth, "--proxy-user", "alice:nope", "127.0.0.1", "443", NULL },
          56,
          "answered 401" },
        { { "--proxy", socks, "--proxy-user", "bob:nope", "127.0.0.1", "443", NULL },
          97,
          "rejected the username/password" },
        { { "--proxy", quiet, "--connect-timeout", "300", "127.0.0.1", "443", NULL },
          28,
          "timed out after 300 ms waiting for the CONNECT answer" },
        { { "--proxy", "gopher://x", "127.0.0.1", "443", NULL }, 2, "unsupported scheme" },
        { { "--proxy-user", "nocolon", "127.0.0.1", "443", NULL }, 2, "USER:PASSWORD" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rc_run r;
        run_rillcat(cases[i].args, NULL, "", 0, &r);
        ck_assert_msg(r.status == cases[i].rc && strstr(r.err, cases[i].needle),
                      "case %zu: exit %d (wanted %d): %s", i, r.status, cases[i].rc, r.err);
    }
    rt_badproxy_stop(silent);
    rt_dns_stop(dns);
}
END_TEST

Suite *rill_test_suite(void)
{
    char why[256];
    (void)rt_certs_prepare(why, sizeof why);
    const rt_certs *c = rt_certs_prepare(why, sizeof why);
    char p[200];
    tp = rt_tinyproxy_start(NULL, NULL, 0, p, sizeof p);
    if (!tp)
        snprintf(start_problem, sizeof start_problem, "%s", p);
    tp_auth = rt_tinyproxy_start("alice", "s3cret", 0, p, sizeof p);
    tp_443 = rt_tinyproxy_start(NULL, NULL, 443, p, sizeof p);
    ms = rt_microsocks_start(NULL, NULL, p, sizeof p);
    if (!ms)
        snprintf(start_problem, sizeof start_problem, "%s", p);
    ms_auth = rt_microsocks_start("bob", "p@ss", p, sizeof p);
    if (tp && c)
        https_px = rt_stunnel_start(rt_daemon_port(tp), c->good.chain, c->good.key, p, sizeof p);
    if (tp && !https_px)
        snprintf(start_problem, sizeof start_problem, "%s", c ? p : why);

    Suite *s = suite_create("proxy");
    TCase *tc = tcase_create("through");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_transfer_through_each, 0, 8);
    tcase_add_loop_test(tc, test_nonblocking_steps, 0, 4);
    tcase_add_loop_test(tc, test_layer_by_hand_nonblocking, 0, 2);
    tcase_add_test(tc, test_layer_first_io);
    tcase_add_test(tc, test_layer_releases_reply_buffer);
    tcase_add_test(tc, test_layer_flush_reports_failure);
    tcase_add_test(tc, test_layer_silent_proxy);
    tcase_add_test(tc, test_starttls_through_tunnel);
    tcase_add_test(tc, test_https_proxy_session_cache_apart);
    tcase_add_loop_test(tc, test_credentials_ok, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_failures, 0, (int)(sizeof fails / sizeof fails[0]));
    tcase_add_loop_test(tc, test_bad_proxy, 0, (int)(sizeof bads / sizeof bads[0]));
    tcase_add_test(tc, test_tunnel_bytes_in_reply_segment);
    tcase_add_test(tc, test_https_proxy_verified);
    tcase_add_test(tc, test_proxy_name_not_resolved);
    tcase_add_loop_test(tc, test_cancel_in_proxy_phase, 0, 2);
    tcase_add_test(tc, test_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("settings");
    tcase_add_loop_test(tc, test_url_table, 0, (int)(sizeof urls / sizeof urls[0]));
    tcase_add_test(tc, test_url_errors_hide_password);
    tcase_add_loop_test(tc, test_bypass_table, 0, (int)(sizeof bypasses / sizeof bypasses[0]));
    tcase_add_loop_test(tc, test_env_table, 0, (int)(sizeof envs / sizeof envs[0]));
    tcase_add_test(tc, test_env_bad_url_and_connect);
    suite_add_tcase(s, tc);

    tc = tcase_create("rillcat");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rillcat_through_proxies);
    tcase_add_test(tc, test_rillcat_exit_codes);
    suite_add_tcase(s, tc);

    tc = tcase_create("leaks");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_many_connects_no_leak);
    suite_add_tcase(s, tc);
    return s;
}
