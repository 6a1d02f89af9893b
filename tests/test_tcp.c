/* SPDX-License-Identifier: MIT */
/*
 * The tcp transport (src/transport/tcp.c, sock.c, fdio.c) over loopback only: 127.0.0.1 and ::1,
 * peers made with rill's own listener. Connection errors, half-close, resets, deadlines, socket
 * options, descriptions and descriptor leaks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

static void teardown(void)
{
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

/* A pair: listen on @p laddr, connect to @p caddr (the same address, maybe spelled "[::1]"). */
static void pair_at(const char *laddr, const char *caddr, const rill_connect_opts *copts,
                    const rill_listen_opts *lopts, rill_stream **client, rill_stream **server)
{
    rill_error err;
    rill_listener *l = NULL;
    rill_status st = rill_listen(laddr, 0, lopts, &l, &err);
    ck_assert_msg(st == RILL_OK, "listen on %s: %s", laddr, err.msg);
    st = rill_tcp_connect_addr(caddr, rill_listener_port(l), copts, client, &err);
    ck_assert_msg(st == RILL_OK, "connect to %s: %s", caddr, err.msg);
    st = rill_accept(l, 5000, server, &err);
    ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
    rill_listener_free(l);
}

/* A TCP port on 127.0.0.1 that nobody listens on (it was free a moment ago). */
static uint16_t dead_port(const char *addr)
{
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_msg(rill_listen(addr, 0, NULL, &l, &err) == RILL_OK, "listen: %s", err.msg);
    uint16_t port = rill_listener_port(l);
    ck_assert_uint_ne(port, 0);
    rill_listener_free(l);
    return port;
}

static uint16_t local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void read_expect(rill_stream *s, const char *text)
{
    size_t len = strlen(text), n = 0;
    char buf[256];
    rill_status st = rill_read_full(s, buf, len, &n);
    ck_assert_msg(st == RILL_OK, "read_full: %s after %zu bytes: %s", rill_strerror(st), n,
                  rill_errmsg(s));
    ck_assert_mem_eq(buf, text, len);
}

/* Make the next reads of the peer see a reset: linger {1, 0} on the raw fd, then close. */
static void reset_close(rill_stream *s)
{
    struct linger lg = { 1, 0 };
    ck_assert_int_eq(setsockopt(rill_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}

/* ================================================================================================
 * Connecting and moving bytes
 */

static const struct {
    const char *listen;
    const char *connect;
    int v6;
} addrs[] = {
    { "127.0.0.1", "127.0.0.1", 0 },
    { "::1", "::1", 1 },
    { "::1", "[::1]", 1 },
};

START_TEST(test_connect_echo)
{
    if (addrs[_i].v6 && !have_v6("tcp connect_echo [::1]"))
        return;
    int fds0 = rt_count_fds();
    rill_stream *client = NULL, *server = NULL;
    pair_at(addrs[_i].listen, addrs[_i].connect, NULL, NULL, &client, &server);
    ck_assert_str_eq(rill_kind(client), RILL_LAYER_TCP);
    ck_assert_str_eq(rill_kind(server), RILL_LAYER_TCP);
    ck_assert_int_ge(rill_fd(client), 0);
    ck_assert_int_ge(rill_fd(server), 0);
    ck_assert_int_ne(rill_fd(client), rill_fd(server));

    const size_t sizes[] = { 1, 100, 1460, 4096, 60000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        rt_transfer(client, server, sizes[i], 1 + i);
        rt_transfer(server, client, sizes[i], 100 + i);
    }
    /* Each side's descriptor really is a TCP socket of the right family. */
    int domain = rt_sockopt_int(rill_fd(client), SOL_SOCKET, SO_DOMAIN);
    ck_assert_int_eq(domain, addrs[_i].v6 ? AF_INET6 : AF_INET);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(client), SOL_SOCKET, SO_TYPE), SOCK_STREAM);

    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_partial_reads)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    char buf[100];
    size_t n = 0;

    ck_assert_int_eq(rill_write_str(server, "abc", NULL), RILL_OK);
    ck_assert_int_eq(rill_read(client, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(buf, "abc", 3);

    ck_assert_int_eq(rill_write_str(server, "defgh", NULL), RILL_OK);
    ck_assert_int_eq(rill_read(client, buf, 2, &n), RILL_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_mem_eq(buf, "de", 2);
    ck_assert_int_eq(rill_read(client, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(buf, "fgh", 3);

    /* The peer writes in pieces, pausing: rill_read_full collects all of them. */
    for (int i = 0; i < 10; i++) {
        char c = (char)('0' + i);
        size_t w = 0;
        ck_assert_int_eq(rill_write(server, &c, 1, &w), RILL_OK);
        ck_assert_uint_eq(w, 1);
        if (i % 3 == 0)
            poll(NULL, 0, 5);
    }
    ck_assert_int_eq(rill_read_full(client, buf, 10, &n), RILL_OK);
    ck_assert_uint_eq(n, 10);
    ck_assert_mem_eq(buf, "0123456789", 10);

    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* Megabytes both ways at once, with a thread on the other side, in blocking and deadline mode. */
struct pump {
    rill_stream *s;
    size_t len;
    uint64_t seed;
    uint64_t sum;
    rill_status st;
};

static void *pump_write(void *arg)
{
    struct pump *p = arg;
    char *data = malloc(p->len);
    if (!data) {
        p->st = RILL_E_NOMEM;
        return NULL;
    }
    rt_fill_pattern(data, p->len, p->seed);
    p->sum = rt_checksum(0, data, p->len);
    size_t n = 0;
    p->st = rill_write_all(p->s, data, p->len, &n);
    free(data);
    return NULL;
}

static void pump_read(struct pump *p)
{
    char buf[30000];
    size_t got = 0;
    p->sum = 0;
    p->st = RILL_OK;
    while (got < p->len && p->st == RILL_OK) {
        size_t want = p->len - got < sizeof buf ? p->len - got : sizeof buf;
        size_t n = 0;
        p->st = rill_read(p->s, buf, want, &n);
        ck_assert_msg(p->st != RILL_OK || n > 0, "RILL_OK with 0 bytes");
        p->sum = rt_checksum(p->sum, buf, n);
        got += n;
    }
    p->len = got;
}

START_TEST(test_bulk_both_ways)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    int timeout = _i == 0 ? RILL_TIMEOUT_NONE : 5000;
    ck_assert_int_eq(rill_set_timeouts(client, timeout, timeout), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(server, timeout, timeout), RILL_OK);
    size_t len = 8u << 20;
    struct pump w = { client, len, 42, 0, RILL_OK };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, pump_write, &w), 0);
    struct pump r = { server, len, 0, 0, RILL_OK };
    pump_read(&r);
    pthread_join(t, NULL);
    ck_assert_msg(w.st == RILL_OK, "writer: %s: %s", rill_strerror(w.st), rill_errmsg(client));
    ck_assert_msg(r.st == RILL_OK, "reader: %s: %s", rill_strerror(r.st), rill_errmsg(server));
    ck_assert_uint_eq(r.len, len);
    ck_assert_uint_eq(r.sum, w.sum);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* ================================================================================================
 * Ends of streams
 */

START_TEST(test_half_close)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    char buf[16];
    size_t n = 9;

    ck_assert_int_eq(rill_write_str(client, "request", NULL), RILL_OK);
    ck_assert_int_eq(rill_shutdown(client), RILL_OK);
    ck_assert_int_eq(rill_shutdown(client), RILL_OK); /* twice is harmless */
    read_expect(server, "request");
    ck_assert_int_eq(rill_read(server, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_read(server, buf, sizeof buf, &n), RILL_EOF);

    /* The side that got EOF can still write, and the half-closed side still reads. */
    ck_assert_int_eq(rill_write_str(server, "response", NULL), RILL_OK);
    read_expect(client, "response");

    /* Writing after shutdown fails, and says so. */
    n = 9;
    rill_status st = rill_write(client, "x", 1, &n);
    rt_assert_error(client, st, RILL_E_CLOSED, "write after shutdown");
    ck_assert_uint_eq(n, 0);
    st = rill_write_all(client, "xy", 2, &n);
    rt_assert_error(client, st, RILL_E_CLOSED, "shutdown");

    /* The server ends too: the client reads EOF. */
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rill_read(client, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_close(client), RILL_OK);
}
END_TEST

START_TEST(test_peer_reset)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    ck_assert_int_eq(rill_set_timeouts(client, _i == 0 ? RILL_TIMEOUT_NONE : 2000, 2000), RILL_OK);
    char desc[160];
    rill_describe(client, desc, sizeof desc);
    rt_transfer(server, client, 100, 1);
    reset_close(server);
    char buf[16];
    size_t n = 0;
    rill_status st = rill_read(client, buf, sizeof buf, &n);
    rt_assert_error(client, st, RILL_E_RESET, "tcp: connection reset by peer");
    ck_assert_int_eq(rill_last_error(client)->sys_errno, ECONNRESET);
    /* The message names the connection: the same endpoints the description shows. */
    char ends[128];
    const char *open_paren = strchr(desc, ' ');
    ck_assert_ptr_nonnull(open_paren);
    snprintf(ends, sizeof ends, "%s", open_paren + 1);
    ends[strlen(ends) - 1] = '\0'; /* drop ")" */
    ck_assert_msg(strstr(rill_errmsg(client), ends) != NULL, "message \"%s\" lacks \"%s\"",
                  rill_errmsg(client), ends);
    ck_assert_int_eq(rill_close(client), RILL_OK);
}
END_TEST

/*
 * Writing to a peer that reset, or that closed, with SIGPIPE at its default disposition: every
 * failure is RILL_E_RESET or RILL_E_CLOSED and the process survives.
 */
static void write_after_reset_child(rt_child_report *rep, void *arg)
{
    int how = (int)(intptr_t)arg; /* 0: peer resets, 1: peer closes normally */
    signal(SIGPIPE, SIG_DFL);
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    if (how == 0) {
        struct linger lg = { 1, 0 };
        setsockopt(rill_fd(server), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    rep->values[0] = rill_close(server);
    poll(NULL, 0, 20);
    rep->status = RILL_OK;
    int errors = 0, bad = 0;
    for (int i = 0; i < 100 && errors < 3; i++) {
        size_t n = 0;
        rill_status st = rill_write(client, "data", 4, &n);
        if (st == RILL_OK) {
            poll(NULL, 0, 2);
            continue;
        }
        if (errors == 0) {
            rep->status = st;
            snprintf(rep->msg, sizeof rep->msg, "%s", rill_errmsg(client));
        }
        if (st != RILL_E_RESET && st != RILL_E_CLOSED)
            bad = st;
        errors++;
    }
    rep->values[1] = errors;
    rep->values[2] = bad;
    rep->values[3] = rill_close(client);
}

START_TEST(test_write_to_gone_peer)
{
    rt_child_result res;
    rt_run_child(write_after_reset_child, (void *)(intptr_t)_i, 20, &res);
    ck_assert_msg(res.term_signal != SIGPIPE, "writing to a %s peer raised SIGPIPE",
                  _i == 0 ? "reset" : "closed");
    rt_assert_child_ok(&res);
    const rt_child_report *r = &res.report;
    ck_assert_int_eq(r->values[0], RILL_OK);
    ck_assert_msg(r->values[1] == 3, "only %d writes failed", r->values[1]);
    ck_assert_msg(r->status == RILL_E_RESET || r->status == RILL_E_CLOSED,
                  "first failed write: %d (%s): %s", r->status, rill_strerror(r->status), r->msg);
    ck_assert_msg(r->values[2] == 0, "a later write failed with %d (%s)", r->values[2],
                  rill_strerror(r->values[2]));
    ck_assert_msg(strstr(r->msg, "reset") || strstr(r->msg, "broken pipe"), "message: %s", r->msg);
    ck_assert_msg(strncmp(r->msg, "tcp: ", 5) == 0, "message lacks the layer: %s", r->msg);
    ck_assert_int_eq(r->values[3], RILL_OK);
}
END_TEST

/* ================================================================================================
 * Connect errors
 */

START_TEST(test_refused)
{
    const char *addr = _i == 0 ? "127.0.0.1" : "::1";
    if (_i == 1 && !have_v6("tcp refused [::1]"))
        return;
    int fds0 = rt_count_fds();
    uint16_t port = dead_port(addr);
    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x77;
    rill_stream *s = sentinel;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_tcp_connect_addr(addr, port, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_REFUSED, "refused");
    char where[64];
    snprintf(where, sizeof where, _i == 0 ? "%s:%u" : "[%s]:%u", addr, (unsigned)port);
    ck_assert_msg(strstr(err.msg, where) != NULL, "message \"%s\" lacks \"%s\"", err.msg, where);
    ck_assert_msg(strncmp(err.msg, "tcp: ", 5) == 0, "message lacks the layer: %s", err.msg);
    ck_assert_int_eq(err.sys_errno, ECONNREFUSED);
    ck_assert_ptr_eq(s, sentinel);
    /* With a deadline and with err NULL: the same status. */
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 2000;
    ck_assert_int_eq(rill_tcp_connect_addr(addr, port, &o, &s, NULL), RILL_E_REFUSED);
    o.timeout_ms = RILL_TIMEOUT_NONE;
    ck_assert_int_eq(rill_tcp_connect_addr(addr, port, &o, &s, &err), RILL_E_REFUSED);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* Strings that are not numeric addresses. A live listener waits on the port, so a parser that
 * wrongly accepted one as 127.0.0.1 would connect (and the test would see it). */
static const char *const bad_addrs[] = {
    "localhost", "",           "1.2.3",        "::1]",      NULL,         "[::1",
    "[]",        "[",          "127.0.0.1:80", "256.1.1.1", " 127.0.0.1", "127.0.0.1 ",
    "127.1",     "0x7f.0.0.1", "[127.0.0.1]",  "::1::1",    "1.2.3.4.5",  "127.0.0.1\n",
};

START_TEST(test_invalid_address)
{
    int fds0 = rt_count_fds();
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 300;
    const char *addr = bad_addrs[_i];
    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x99;
    rill_stream *s = sentinel;
    memset(&err, 0, sizeof err);
    rill_status st = rill_tcp_connect_addr(addr, rill_listener_port(l), &o, &s, &err);
    if (addr) {
        char quoted[80];
        snprintf(quoted, sizeof quoted, "\"%s\"", addr);
        rt_assert_err(&err, st, RILL_E_INVALID, quoted);
        ck_assert_msg(strstr(err.msg, "numeric") != NULL, "message: %s", err.msg);
    } else {
        rt_assert_err(&err, st, RILL_E_INVALID, "address is NULL");
    }
    ck_assert_msg(strncmp(err.msg, "tcp: ", 5) == 0, "message lacks the layer: %s", err.msg);
    ck_assert_ptr_eq(s, sentinel);
    rill_stream *accepted = NULL;
    ck_assert_int_eq(rill_accept(l, 0, &accepted, &err), RILL_WANT_READ);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* Other invalid arguments of rill_tcp_connect_addr. */
START_TEST(test_invalid_connect_args)
{
    int fds0 = rt_count_fds();
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    uint16_t port = rill_listener_port(l);
    rill_stream *s = NULL;
    rill_status st = rill_tcp_connect_addr("127.0.0.1", 0, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "port 0");
    st = rill_tcp_connect_addr("127.0.0.1", port, NULL, NULL, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "out is NULL");
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", port, NULL, NULL, NULL), RILL_E_INVALID);
    ck_assert_ptr_null(s);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* Timeouts below -1 in the options are invalid, as they are for rill_set_timeouts. */
static const struct {
    int timeout, rd, wr;
} bad_opts[] = { { -2, -1, -1 }, { -100, -1, -1 }, { 1000, -2, -1 }, { 1000, -1, -7 } };

START_TEST(test_invalid_connect_opts)
{
    int fds0 = rt_count_fds();
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = bad_opts[_i].timeout;
    o.read_timeout_ms = bad_opts[_i].rd;
    o.write_timeout_ms = bad_opts[_i].wr;
    rill_stream *s = NULL;
    memset(&err, 0, sizeof err);
    rill_status st = rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), &o, &s, &err);
    rill_listener_free(l);
    if (st == RILL_OK) { /* wrong, but do not leak what was made */
        rill_close(s);
        s = NULL;
    }
    ck_assert_msg(st == RILL_E_INVALID, "opts {timeout %d, read %d, write %d}: %d (%s) %s",
                  o.timeout_ms, o.read_timeout_ms, o.write_timeout_ms, (int)st, rill_strerror(st),
                  err.msg);
    ck_assert_int_eq(err.code, RILL_E_INVALID);
    ck_assert_msg(strstr(err.msg, "-") != NULL && strstr(err.msg, "timeout") != NULL,
                  "message does not name the bad timeout: %s", err.msg);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_connect_opts_defaults)
{
    rill_connect_opts o;
    memset(&o, 0x5a, sizeof o);
    rill_connect_opts_init(&o);
    ck_assert_int_eq(o.timeout_ms, 30000);
    ck_assert_int_eq(o.read_timeout_ms, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(o.write_timeout_ms, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(o.nodelay, 1);
    ck_assert_int_eq(o.keepalive_idle_s, 0);
    rill_connect_opts_init(NULL);

    /* NULL opts mean these defaults; the stream's timeouts come from them. */
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    int r = 0, w = 0;
    rill_get_timeouts(client, &r, &w);
    ck_assert_int_eq(r, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(w, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);

    rill_connect_opts_init(&o);
    o.read_timeout_ms = 1234;
    o.write_timeout_ms = 0;
    rt_tcp_pair_opts(NULL, &o, NULL, &client, &server);
    rill_get_timeouts(client, &r, &w);
    ck_assert_int_eq(r, 1234);
    ck_assert_int_eq(w, 0);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* ================================================================================================
 * Deadlines
 */

START_TEST(test_read_timeout)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    char buf[16];
    size_t n = 5;

    ck_assert_int_eq(rill_set_timeouts(client, 200, RILL_TIMEOUT_NONE), RILL_OK);
    int64_t t0 = rt_now_us();
    rill_status st = rill_read(client, buf, sizeof buf, &n);
    rt_assert_error(client, st, RILL_E_TIMEOUT, "tcp: read timed out after 200 ms");
    rt_assert_elapsed(t0, 200, 2200);
    ck_assert_uint_eq(n, 0);
    /* Usable afterwards: the peer writes, the read succeeds. */
    ck_assert_int_eq(rill_write_str(server, "later", NULL), RILL_OK);
    read_expect(client, "later");

    /* Non-blocking. */
    ck_assert_int_eq(rill_set_timeouts(client, 0, 0), RILL_OK);
    t0 = rt_now_us();
    st = rill_read(client, buf, sizeof buf, &n);
    ck_assert_msg(st == RILL_WANT_READ, "got %d (%s)", (int)st, rill_strerror(st));
    rt_assert_elapsed(t0, 0, 500);
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(client, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, rill_fd(client));
    ck_assert_msg(ev & POLLIN, "events %#x lack POLLIN", (unsigned)ev);
    ck_assert_msg(!(ev & POLLOUT), "a plain TCP read waits for POLLIN only (%#x)", (unsigned)ev);
    ck_assert_int_eq(rill_write_str(server, "now", NULL), RILL_OK);
    struct pollfd pf = { .fd = fd, .events = ev };
    ck_assert_int_eq(poll(&pf, 1, 2000), 1);
    ck_assert_int_eq(rill_read(client, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(buf, "now", 3);

    /* Deadline for the whole rill_read_full, partial bytes kept. */
    ck_assert_int_eq(rill_set_timeouts(client, 150, 150), RILL_OK);
    ck_assert_int_eq(rill_write_str(server, "ab", NULL), RILL_OK);
    t0 = rt_now_us();
    st = rill_read_full(client, buf, 5, &n);
    rt_assert_error(client, st, RILL_E_TIMEOUT, "timed out");
    rt_assert_elapsed(t0, 150, 2150);
    ck_assert_uint_eq(n, 2);
    ck_assert_mem_eq(buf, "ab", 2);

    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* Fill the socket: the peer does not read. */
static size_t fill_socket(rill_stream *s, uint64_t *sum)
{
    static char chunk[16384];
    size_t total = 0, n = 0;
    rill_status st = RILL_OK;
    for (int i = 0; i < 100000 && st == RILL_OK; i++) {
        rt_fill_pattern(chunk, sizeof chunk, (uint64_t)i + 1);
        st = rill_write(s, chunk, sizeof chunk, &n);
        *sum = rt_checksum(*sum, chunk, n);
        total += n;
    }
    ck_assert_msg(st == RILL_WANT_WRITE, "filling: %d (%s) after %zu bytes: %s", (int)st,
                  rill_strerror(st), total, rill_errmsg(s));
    return total;
}

static void shrink_buffers(rill_stream *client, rill_stream *server)
{
    int small = 8192;
    ck_assert_int_eq(setsockopt(rill_fd(client), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ck_assert_int_eq(setsockopt(rill_fd(server), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
}

/* Everything the peer sends until @p len bytes arrived; returns their checksum. */
static uint64_t drain(rill_stream *s, size_t len)
{
    ck_assert_int_eq(rill_set_timeouts(s, 3000, 3000), RILL_OK);
    char buf[65536];
    uint64_t sum = 0;
    size_t got = 0;
    while (got < len) {
        size_t n = 0;
        size_t want = len - got < sizeof buf ? len - got : sizeof buf;
        rill_status st = rill_read(s, buf, want, &n);
        ck_assert_msg(st == RILL_OK, "drain: %s after %zu of %zu: %s", rill_strerror(st), got, len,
                      rill_errmsg(s));
        sum = rt_checksum(sum, buf, n);
        got += n;
    }
    return sum;
}

START_TEST(test_write_timeout)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    shrink_buffers(client, server);
    rt_watchdog(30, "tcp write deadlines");
    ck_assert_int_eq(rill_set_timeouts(client, RILL_TIMEOUT_NONE, 0), RILL_OK);
    uint64_t sum = 0;
    size_t total = fill_socket(client, &sum);
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(client, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, rill_fd(client));
    ck_assert_msg(ev & POLLOUT, "events %#x lack POLLOUT", (unsigned)ev);

    /* With a deadline: the socket may still take a little as the window moves, then it times
     * out, and the timed-out call took at least the deadline. */
    ck_assert_int_eq(rill_set_timeouts(client, RILL_TIMEOUT_NONE, 200), RILL_OK);
    static char chunk[16384];
    rill_status st = RILL_OK;
    int64_t t0 = 0;
    for (int i = 0; i < 1000 && st == RILL_OK; i++) {
        size_t n = 0;
        rt_fill_pattern(chunk, sizeof chunk, 1000000 + (uint64_t)i);
        t0 = rt_now_us();
        st = rill_write(client, chunk, sizeof chunk, &n);
        sum = rt_checksum(sum, chunk, n);
        total += n;
        if (st != RILL_OK)
            ck_assert_uint_eq(n, 0);
    }
    rt_assert_error(client, st, RILL_E_TIMEOUT, "tcp: write timed out after 200 ms");
    rt_assert_elapsed(t0, 200, 2200);

    /* rill_write_all under the deadline: times out and says how much it wrote. */
    size_t big = 1u << 20, n = 0;
    char *data = malloc(big);
    ck_assert_ptr_nonnull(data);
    rt_fill_pattern(data, big, 555);
    t0 = rt_now_us();
    st = rill_write_all(client, data, big, &n);
    rt_assert_error(client, st, RILL_E_TIMEOUT, "timed out");
    rt_assert_elapsed(t0, 200, 2200);
    ck_assert_uint_lt(n, big);
    sum = rt_checksum(sum, data, n);
    total += n;
    free(data);

    /* Every accepted byte arrives, in order, and nothing else; then writing works again. */
    ck_assert_uint_eq(drain(server, total), sum);
    ck_assert_int_eq(rill_set_timeouts(client, RILL_TIMEOUT_NONE, 2000), RILL_OK);
    ck_assert_int_eq(rill_write_str(client, "end", NULL), RILL_OK);
    read_expect(server, "end");
    rt_watchdog(0, NULL);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* ================================================================================================
 * Options and description
 */

START_TEST(test_nodelay)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(client), IPPROTO_TCP, TCP_NODELAY), 1);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(server), IPPROTO_TCP, TCP_NODELAY), 1);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);

    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.nodelay = 0;
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.nodelay = 0;
    rt_tcp_pair_opts(NULL, &o, &lo, &client, &server);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(client), IPPROTO_TCP, TCP_NODELAY), 0);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(server), IPPROTO_TCP, TCP_NODELAY), 0);
    rt_transfer(client, server, 1000, 1);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

START_TEST(test_keepalive)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(client), SOL_SOCKET, SO_KEEPALIVE), 0);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(server), SOL_SOCKET, SO_KEEPALIVE), 0);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);

    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.keepalive_idle_s = 30;
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.keepalive_idle_s = 45;
    rt_tcp_pair_opts(NULL, &o, &lo, &client, &server);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(client), SOL_SOCKET, SO_KEEPALIVE), 1);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(client), IPPROTO_TCP, TCP_KEEPIDLE), 30);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(server), SOL_SOCKET, SO_KEEPALIVE), 1);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(server), IPPROTO_TCP, TCP_KEEPIDLE), 45);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

START_TEST(test_describe)
{
    int v6 = _i == 1;
    if (v6 && !have_v6("tcp describe [::1]"))
        return;
    const char *host = v6 ? "[::1]" : "127.0.0.1";
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen(v6 ? "::1" : "127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    uint16_t q = rill_listener_port(l);
    rill_stream *client = NULL, *server = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr(v6 ? "::1" : "127.0.0.1", q, NULL, &client, &err),
                     RILL_OK);
    ck_assert_int_eq(rill_accept(l, 5000, &server, &err), RILL_OK);
    rill_listener_free(l);
    uint16_t p = local_port(rill_fd(client));

    char want[160], got[160];
    snprintf(want, sizeof want, "tcp(fd=%d %s:%u > %s:%u)", rill_fd(client), host, (unsigned)p,
             host, (unsigned)q);
    size_t n = rill_describe(client, got, sizeof got);
    ck_assert_str_eq(got, want);
    ck_assert_uint_eq(n, strlen(want));

    /* The accepted side names both endpoints and its own descriptor. */
    n = rill_describe(server, got, sizeof got);
    ck_assert_uint_eq(n, strlen(got));
    char part[64];
    snprintf(part, sizeof part, "tcp(fd=%d ", rill_fd(server));
    ck_assert_msg(strncmp(got, part, strlen(part)) == 0, "server describe: %s", got);
    snprintf(part, sizeof part, "%s:%u", host, (unsigned)p);
    ck_assert_msg(strstr(got, part) != NULL, "server describe \"%s\" lacks %s", got, part);
    snprintf(part, sizeof part, "%s:%u", host, (unsigned)q);
    ck_assert_msg(strstr(got, part) != NULL, "server describe \"%s\" lacks %s", got, part);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* ================================================================================================
 * Descriptor leaks under load
 */

START_TEST(test_refused_no_leak)
{
    uint16_t port = dead_port("127.0.0.1");
    int fds0 = rt_count_fds();
    int64_t t0 = rt_now_us();
    for (int i = 0; i < 1000; i++) {
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = rill_tcp_connect_addr("127.0.0.1", port, NULL, &s, &err);
        ck_assert_msg(st == RILL_E_REFUSED, "attempt %d: %s: %s", i, rill_strerror(st), err.msg);
    }
    fprintf(stderr, "tcp: 1000 refused connects took %lld ms\n",
            (long long)((rt_now_us() - t0) / 1000));
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_cycles_no_leak)
{
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    uint16_t port = rill_listener_port(l);
    int fds0 = rt_count_fds();
    int64_t t0 = rt_now_us();
    const int cycles = 10000;
    for (int i = 0; i < cycles; i++) {
        rill_stream *c = NULL, *s = NULL;
        rill_status st = rill_tcp_connect_addr("127.0.0.1", port, NULL, &c, &err);
        ck_assert_msg(st == RILL_OK, "cycle %d: connect: %s", i, err.msg);
        st = rill_accept(l, 5000, &s, &err);
        ck_assert_msg(st == RILL_OK, "cycle %d: accept: %s", i, err.msg);
        /* The server closes first, so TIME_WAIT stays on the listener's port and the client's
         * ephemeral ports can be reused at once. */
        ck_assert_int_eq(rill_close(s), RILL_OK);
        ck_assert_int_eq(rill_close(c), RILL_OK);
    }
    fprintf(stderr, "tcp: %d connect/accept/close cycles took %lld ms\n", cycles,
            (long long)((rt_now_us() - t0) / 1000));
    ck_assert_int_eq(rt_count_fds(), fds0);
    rill_listener_free(l);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("tcp");

    TCase *tc = tcase_create("bytes");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_connect_echo, 0, (int)(sizeof addrs / sizeof addrs[0]));
    tcase_add_test(tc, test_partial_reads);
    tcase_add_loop_test(tc, test_bulk_both_ways, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("ends");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_half_close);
    tcase_add_loop_test(tc, test_peer_reset, 0, 2);
    tcase_add_loop_test(tc, test_write_to_gone_peer, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("connect");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_refused, 0, 2);
    tcase_add_loop_test(tc, test_invalid_address, 0, (int)(sizeof bad_addrs / sizeof bad_addrs[0]));
    tcase_add_test(tc, test_invalid_connect_args);
    tcase_add_loop_test(tc, test_invalid_connect_opts, 0,
                        (int)(sizeof bad_opts / sizeof bad_opts[0]));
    tcase_add_test(tc, test_connect_opts_defaults);
    suite_add_tcase(s, tc);

    tc = tcase_create("deadlines");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_read_timeout);
    tcase_add_test(tc, test_write_timeout);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_nodelay);
    tcase_add_test(tc, test_keepalive);
    tcase_add_loop_test(tc, test_describe, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("leaks");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_refused_no_leak);
    tcase_add_test(tc, test_cycles_no_leak);
    suite_add_tcase(s, tc);
    return s;
}
