/* SPDX-License-Identifier: MIT */
/*
 * TCP listeners (src/transport/listen.c) on 127.0.0.1 and ::1: ports, accept deadlines, options
 * handed to accepted streams, address-in-use errors, invalid arguments, poll integration.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

static void teardown(void)
{
    rt_watchdog(0, NULL);
}

static int have_v6(const char *test)
{
    char why[160];
    if (rt_ipv6_loopback(why, sizeof why))
        return 1;
    fprintf(stderr, "SKIP %s: IPv6 loopback ::1 unavailable (%s)\n", test, why);
    return 0;
}

static rill_listener *listen_ok(const char *addr, uint16_t port, const rill_listen_opts *o)
{
    rill_listener *l = NULL;
    rill_error err;
    rill_status st = rill_listen(addr, port, o, &l, &err);
    ck_assert_msg(st == RILL_OK, "listen on %s:%u: %s", addr ? addr : "(NULL)", (unsigned)port,
                  err.msg);
    ck_assert_ptr_nonnull(l);
    return l;
}

/* A raw (non-rill) client connected to 127.0.0.1:@p port. */
static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

static void local_addr(int fd, char *buf, size_t len, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)len);
        *port = ntohs(in->sin_port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)len);
        *port = ntohs(in6->sin6_port);
    }
}

/* ================================================================================================
 * Ports and addresses
 */

START_TEST(test_port_zero)
{
    int fds0 = rt_count_fds();
    const char *addr = _i == 0 ? NULL : "127.0.0.1"; /* NULL means 127.0.0.1 */
    rill_listener *a = listen_ok(addr, 0, NULL);
    rill_listener *b = listen_ok(addr, 0, NULL);
    uint16_t pa = rill_listener_port(a), pb = rill_listener_port(b);
    ck_assert_uint_ne(pa, 0);
    ck_assert_uint_ne(pb, 0);
    ck_assert_uint_ne(pa, pb);
    char host[64];
    uint16_t bound = 0;
    local_addr(rill_listener_fd(a), host, sizeof host, &bound);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(bound, pa);
    ck_assert_int_eq(rt_sockopt_int(rill_listener_fd(a), SOL_SOCKET, SO_ACCEPTCONN), 1);

    /* The port really accepts. */
    rill_stream *c = NULL, *s = NULL;
    rill_error err;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", pa, NULL, &c, &err), RILL_OK);
    ck_assert_int_eq(rill_accept(a, 2000, &s, &err), RILL_OK);
    rt_transfer(c, s, 100, 1);

    /* Accepted streams outlive the listener; then the port refuses. */
    rill_listener_free(a);
    rt_transfer(s, c, 100, 2);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", pa, NULL, &c, &err), RILL_E_REFUSED);
    rill_listener_free(b);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_listen_opts_defaults)
{
    rill_listen_opts o;
    memset(&o, 0x5a, sizeof o);
    rill_listen_opts_init(&o);
    ck_assert_int_eq(o.backlog, 128);
    ck_assert_int_eq(o.reuseaddr, 1);
    ck_assert_int_eq(o.v6only, 1);
    ck_assert_int_eq(o.stream.timeout_ms, 30000);
    ck_assert_int_eq(o.stream.read_timeout_ms, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(o.stream.write_timeout_ms, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(o.stream.nodelay, 1);
    ck_assert_int_eq(o.stream.keepalive_idle_s, 0);
    rill_listen_opts_init(NULL);

    rill_listener *l = listen_ok("127.0.0.1", 0, NULL);
    ck_assert_int_eq(rt_sockopt_int(rill_listener_fd(l), SOL_SOCKET, SO_REUSEADDR), 1);
    rill_listener_free(l);
    o.reuseaddr = 0;
    l = listen_ok("127.0.0.1", 0, &o);
    ck_assert_int_eq(rt_sockopt_int(rill_listener_fd(l), SOL_SOCKET, SO_REUSEADDR), 0);
    rill_listener_free(l);
}
END_TEST

/* Two listeners on one port: the second fails, whatever SO_REUSEADDR says. */
START_TEST(test_port_in_use)
{
    int fds0 = rt_count_fds();
    rill_listener *a = listen_ok("127.0.0.1", 0, NULL);
    uint16_t port = rill_listener_port(a);
    rill_listen_opts o;
    rill_listen_opts_init(&o);
    o.reuseaddr = _i; /* 0 and 1 */
    rill_listener *b = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    int fds1 = rt_count_fds();
    rill_status st = rill_listen("127.0.0.1", port, &o, &b, &err);
    rt_assert_err(&err, st, RILL_E_IO, "address already in use");
    char where[32];
    snprintf(where, sizeof where, "127.0.0.1:%u", (unsigned)port);
    ck_assert_msg(strstr(err.msg, where) != NULL, "message \"%s\" lacks \"%s\"", err.msg, where);
    ck_assert_msg(strncmp(err.msg, "tcp: ", 5) == 0, "message lacks the layer: %s", err.msg);
    ck_assert_int_eq(err.sys_errno, EADDRINUSE);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(rt_count_fds(), fds1);

    /* The first listener is unharmed. */
    rill_stream *c = NULL, *s = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", port, NULL, &c, &err), RILL_OK);
    ck_assert_int_eq(rill_accept(a, 2000, &s, &err), RILL_OK);
    rill_close(c);
    rill_close(s);
    rill_listener_free(a);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* SO_REUSEPORT: two listeners on one port, and the kernel spreads connections over both; a
 * third listener without the option is refused; a Unix listener refuses the option. */
START_TEST(test_reuseport)
{
    int fds0 = rt_count_fds();
    rill_listen_opts o;
    rill_listen_opts_init(&o);
    ck_assert_int_eq(o.reuseport, 0);
    rill_listener *plain = listen_ok("127.0.0.1", 0, &o);
    ck_assert_int_eq(rt_sockopt_int(rill_listener_fd(plain), SOL_SOCKET, SO_REUSEPORT), 0);
    rill_listener_free(plain);

    o.reuseport = 1;
    rill_listener *a = listen_ok("127.0.0.1", 0, &o);
    uint16_t port = rill_listener_port(a);
    rill_listener *b = listen_ok("127.0.0.1", port, &o);
    ck_assert_int_eq(rill_listener_port(b), port);
    ck_assert_int_eq(rt_sockopt_int(rill_listener_fd(b), SOL_SOCKET, SO_REUSEPORT), 1);

    rill_listen_opts no;
    rill_listen_opts_init(&no);
    rill_listener *c = NULL;
    rill_error err;
    rill_status st = rill_listen("127.0.0.1", port, &no, &c, &err);
    rt_assert_err(&err, st, RILL_E_IO, "address already in use");
    ck_assert_ptr_null(c);

    /* 64 connections: the kernel picks a listener by a hash of each 4-tuple, so both get some
     * (all 64 on one side would happen with probability 2^-63). */
    enum { N = 64 };
    int raw[N];
    for (int i = 0; i < N; i++)
        raw[i] = raw_connect(port);
    int got[2] = { 0, 0 };
    rill_listener *ls[2] = { a, b };
    for (int side = 0; side < 2; side++) {
        for (;;) {
            rill_stream *s = NULL;
            st = rill_accept(ls[side], 0, &s, &err);
            if (st == RILL_WANT_READ)
                break;
            ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
            got[side]++;
            rill_close(s);
        }
    }
    ck_assert_msg(got[0] > 0 && got[1] > 0 && got[0] + got[1] == N,
                  "accepted %d and %d of %d connections", got[0], got[1], N);
    for (int i = 0; i < N; i++)
        close(raw[i]);
    rill_listener_free(a);
    rill_listener_free(b);

    char dir[32], path[64];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/sock", dir);
    memset(&err, 0, sizeof err);
    st = rill_listen_unix(path, &o, &c, &err);
    rt_assert_err(&err, st, RILL_E_UNSUPPORTED, "unix: reuseport is for TCP listeners");
    ck_assert_ptr_null(c);
    ck_assert_int_eq(access(path, F_OK), -1);
    rt_rmdir(dir);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* Stopping accepting for a graceful shutdown: freeing the listener resets connections still
 * queued, while one accepted before stays open and usable. */
START_TEST(test_stop_accepting)
{
    int fds0 = rt_count_fds();
    rill_listener *l = listen_ok("127.0.0.1", 0, NULL);
    uint16_t port = rill_listener_port(l);
    rill_error err;
    rill_stream *c1 = NULL, *c2 = NULL, *s1 = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", port, NULL, &c1, &err), RILL_OK);
    ck_assert_int_eq(rill_accept(l, 2000, &s1, &err), RILL_OK);
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", port, NULL, &c2, &err), RILL_OK);
    rill_listener_free(l);

    ck_assert_int_eq(rill_set_timeouts(c2, 2000, 2000), RILL_OK);
    char b;
    size_t n = 0;
    rt_assert_error(c2, rill_read(c2, &b, 1, &n), RILL_E_RESET, "connection reset by peer");
    rt_transfer(c1, s1, 1000, 7);
    rt_transfer(s1, c1, 1000, 8);
    rill_close(c1);
    rill_close(c2);
    rill_close(s1);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* A port whose last connection is in TIME_WAIT on the server side: SO_REUSEADDR lets a new
 * listener bind it at once, without it the bind fails. */
START_TEST(test_reuseaddr_time_wait)
{
    rill_listener *l = listen_ok("127.0.0.1", 0, NULL);
    uint16_t port = rill_listener_port(l);
    rill_stream *c = NULL, *s = NULL;
    rill_error err;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", port, NULL, &c, &err), RILL_OK);
    ck_assert_int_eq(rill_accept(l, 2000, &s, &err), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK); /* the server closes first: TIME_WAIT is its */
    char buf[4];
    size_t n = 0;
    ck_assert_int_eq(rill_read(c, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    rill_listener_free(l);
    poll(NULL, 0, 20);

    rill_listen_opts o;
    rill_listen_opts_init(&o);
    o.reuseaddr = 0;
    rill_listener *again = NULL;
    rill_status st = rill_listen("127.0.0.1", port, &o, &again, &err);
    rt_assert_err(&err, st, RILL_E_IO, "address already in use");
    o.reuseaddr = 1;
    st = rill_listen("127.0.0.1", port, &o, &again, &err);
    ck_assert_msg(st == RILL_OK, "SO_REUSEADDR listener on a TIME_WAIT port: %s", err.msg);
    ck_assert_uint_eq(rill_listener_port(again), port);
    rill_listener_free(again);
}
END_TEST

START_TEST(test_ipv6)
{
    if (!have_v6("listen ipv6"))
        return;
    int fds0 = rt_count_fds();
    rill_listener *l = listen_ok("::1", 0, NULL);
    uint16_t port = rill_listener_port(l);
    ck_assert_uint_ne(port, 0);
    char host[64];
    uint16_t bound = 0;
    local_addr(rill_listener_fd(l), host, sizeof host, &bound);
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(bound, port);
    ck_assert_int_eq(rt_sockopt_int(rill_listener_fd(l), IPPROTO_IPV6, IPV6_V6ONLY), 1);

    rill_stream *c = NULL, *s = NULL;
    rill_error err;
    ck_assert_int_eq(rill_tcp_connect_addr("::1", port, NULL, &c, &err), RILL_OK);
    ck_assert_int_eq(rill_accept(l, 2000, &s, &err), RILL_OK);
    rt_transfer(c, s, 5000, 1);
    rt_transfer(s, c, 5000, 2);
    char desc[160];
    rill_describe(s, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "[::1]:") != NULL, "describe: %s", desc);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);

    /* An IPv4 listener may share the port number: the families are separate. */
    rill_listener *v4 = listen_ok("127.0.0.1", port, NULL);
    rill_listener_free(v4);

    /* The listener's IPv6 address appears in messages. */
    rill_listener *dup = NULL;
    ck_assert_int_eq(rill_listen("::1", port, NULL, &dup, &err), RILL_E_IO);
    char where[40];
    snprintf(where, sizeof where, "[::1]:%u", (unsigned)port);
    ck_assert_msg(strstr(err.msg, where) != NULL, "message \"%s\" lacks \"%s\"", err.msg, where);
    rill_listener_free(l);

    /* (v6only = 0 cannot be observed on ::1: Linux makes a socket bound to a specific IPv6
     * address v6-only, and binding "::" would leave loopback.) */
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* ================================================================================================
 * Accepting
 */

START_TEST(test_accept_timeout)
{
    rill_listener *l = listen_ok("127.0.0.1", 0, NULL);
    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x55;
    rill_stream *s = sentinel;
    rill_error err;
    memset(&err, 0, sizeof err);
    int64_t t0 = rt_now_us();
    rill_status st = rill_accept(l, 200, &s, &err);
    rt_assert_err(&err, st, RILL_E_TIMEOUT, "within 200 ms");
    rt_assert_elapsed(t0, 200, 2200);
    char where[32];
    snprintf(where, sizeof where, "127.0.0.1:%u", (unsigned)rill_listener_port(l));
    ck_assert_msg(strstr(err.msg, where) != NULL, "message \"%s\" lacks \"%s\"", err.msg, where);
    ck_assert_ptr_eq(s, sentinel);

    /* A pending connection is taken at once, even with a deadline. */
    int fd = raw_connect(rill_listener_port(l));
    t0 = rt_now_us();
    ck_assert_int_eq(rill_accept(l, 2000, &s, &err), RILL_OK);
    rt_assert_elapsed(t0, 0, 500);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(fd);
    rill_listener_free(l);
}
END_TEST

START_TEST(test_accept_nonblocking)
{
    int fds0 = rt_count_fds();
    rill_listener *l = listen_ok("127.0.0.1", 0, NULL);
    int lfd = rill_listener_fd(l);
    ck_assert_int_ge(lfd, 0);
    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x56;
    rill_stream *s = sentinel;
    rill_error err;
    int64_t t0 = rt_now_us();
    ck_assert_int_eq(rill_accept(l, 0, &s, &err), RILL_WANT_READ);
    rt_assert_elapsed(t0, 0, 500);
    ck_assert_ptr_eq(s, sentinel);
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    ck_assert_int_eq(poll(&p, 1, 0), 0);

    int fd = raw_connect(rill_listener_port(l));
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert(p.revents & POLLIN);
    ck_assert_int_eq(rill_accept(l, 0, &s, &err), RILL_OK);
    ck_assert_ptr_ne(s, sentinel);
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    ck_assert_int_eq(rill_accept(l, 0, &s, &err), RILL_WANT_READ);

    /* Several pending connections are accepted in turn. */
    int fds[20];
    for (int i = 0; i < 20; i++)
        fds[i] = raw_connect(rill_listener_port(l));
    for (int i = 0; i < 20; i++) {
        rill_stream *a = NULL;
        ck_assert_msg(rill_accept(l, 0, &a, &err) == RILL_OK, "accept %d: %s", i, err.msg);
        rill_close(a);
        close(fds[i]);
    }
    ck_assert_int_eq(rill_accept(l, 0, &s, &err), RILL_WANT_READ);
    rill_close(s);
    close(fd);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

struct late_connect {
    uint16_t port;
    int fd;
};

static void *connect_later(void *arg)
{
    struct late_connect *lc = arg;
    poll(NULL, 0, 100);
    lc->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(lc->port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(lc->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(lc->fd);
        lc->fd = -1;
    }
    return NULL;
}

/* Without a deadline (-1) and with one, accept waits for a connection that comes later. */
START_TEST(test_accept_waits)
{
    rill_listener *l = listen_ok("127.0.0.1", 0, NULL);
    struct late_connect lc = { rill_listener_port(l), -1 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, connect_later, &lc), 0);
    rill_stream *s = NULL;
    rill_error err;
    rt_watchdog(20, "rill_accept waiting for a late connection");
    int64_t t0 = rt_now_us();
    rill_status st = rill_accept(l, _i == 0 ? RILL_TIMEOUT_NONE : 5000, &s, &err);
    rt_watchdog(0, NULL);
    ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
    rt_assert_elapsed(t0, 50, 5000);
    pthread_join(t, NULL);
    ck_assert_int_ge(lc.fd, 0);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(lc.fd);
    rill_listener_free(l);
}
END_TEST

START_TEST(test_accepted_inherit_opts)
{
    rill_listen_opts o;
    rill_listen_opts_init(&o);
    o.stream.read_timeout_ms = 150;
    o.stream.write_timeout_ms = 250;
    o.stream.nodelay = 0;
    o.stream.keepalive_idle_s = 20;
    rill_listener *l = listen_ok("127.0.0.1", 0, &o);
    rill_stream *c = NULL, *s = NULL;
    rill_error err;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &c, &err),
                     RILL_OK);
    ck_assert_int_eq(rill_accept(l, 2000, &s, &err), RILL_OK);
    int r = 0, w = 0;
    rill_get_timeouts(s, &r, &w);
    ck_assert_int_eq(r, 150);
    ck_assert_int_eq(w, 250);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(s), IPPROTO_TCP, TCP_NODELAY), 0);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(s), SOL_SOCKET, SO_KEEPALIVE), 1);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(s), IPPROTO_TCP, TCP_KEEPIDLE), 20);
    /* The client keeps its own defaults. */
    rill_get_timeouts(c, &r, &w);
    ck_assert_int_eq(r, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(c), IPPROTO_TCP, TCP_NODELAY), 1);

    /* And the inherited deadline applies. */
    char buf[4];
    size_t n = 0;
    int64_t t0 = rt_now_us();
    rill_status st = rill_read(s, buf, sizeof buf, &n);
    rt_assert_error(s, st, RILL_E_TIMEOUT, "read timed out after 150 ms");
    rt_assert_elapsed(t0, 150, 2150);

    /* Every accepted stream gets them, not only the first. */
    rill_stream *c2 = NULL, *s2 = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &c2, &err),
                     RILL_OK);
    ck_assert_int_eq(rill_accept(l, 2000, &s2, &err), RILL_OK);
    rill_get_timeouts(s2, &r, &w);
    ck_assert_int_eq(r, 150);
    ck_assert_int_eq(w, 250);
    rill_close(c2);
    rill_close(s2);
    rill_close(c);
    rill_close(s);
    rill_listener_free(l);
}
END_TEST

/* The process is out of descriptors when a connection is to be accepted: RILL_E_IO at once
 * (no spinning until the deadline), and the connection can be accepted once fds are free. */
static void emfile_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    rill_listener *l = NULL;
    rill_error err;
    if (rill_listen("127.0.0.1", 0, NULL, &l, &err) != RILL_OK) {
        rep->status = 999;
        return;
    }
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(rill_listener_port(l)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(cfd, (struct sockaddr *)&sa, sizeof sa) != 0) {
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
    int64_t t0 = rt_now_us();
    rep->status = rill_accept(l, 2000, &s, &err);
    rep->values[0] = (int)((rt_now_us() - t0) / 1000);
    snprintf(rep->msg, sizeof rep->msg, "%s", err.msg);
    rep->values[1] = err.sys_errno;
    setrlimit(RLIMIT_NOFILE, &old);
    rep->values[2] = rill_accept(l, 2000, &s, &err);
    if (rep->values[2] == RILL_OK)
        rill_close(s);
    close(cfd);
    rill_listener_free(l);
}

START_TEST(test_accept_emfile)
{
    if (rt_on_valgrind()) {
        /* valgrind keeps descriptors of its own and refuses to raise RLIMIT_NOFILE again. */
        fprintf(stderr, "SKIP test_accept_emfile: RLIMIT_NOFILE cannot be restored under "
                        "valgrind\n");
        return;
    }
    rt_child_result res;
    rt_run_child(emfile_child, NULL, 20, &res);
    rt_assert_child_ok(&res);
    const rt_child_report *r = &res.report;
    ck_assert_msg(r->status == RILL_E_IO, "accept out of fds: %d (%s): %s", r->status,
                  rill_strerror(r->status), r->msg);
    ck_assert_msg(strstr(r->msg, "too many open files") != NULL, "message: %s", r->msg);
    ck_assert_msg(strncmp(r->msg, "tcp: ", 5) == 0, "message lacks the layer: %s", r->msg);
    ck_assert_int_eq(r->values[1], EMFILE);
    ck_assert_msg(r->values[0] < 1000, "took %d ms to report EMFILE", r->values[0]);
    ck_assert_msg(r->values[2] == RILL_OK, "accept after fds came back: %d (%s)", r->values[2],
                  rill_strerror(r->values[2]));
}
END_TEST

/* ================================================================================================
 * Invalid arguments
 */

static const struct {
    const char *addr;
    const char *needle;
} bad_listen_addrs[] = {
    { "localhost", "\"localhost\"" },
    { "", "\"\"" },
    { "1.2.3", "\"1.2.3\"" },
    { "::1]", "\"::1]\"" },
    { "127.0.0.1:80", "\"127.0.0.1:80\"" },
    { "127.1", "\"127.1\"" },
};

START_TEST(test_invalid_listen_addr)
{
    int fds0 = rt_count_fds();
    rill_listener *l = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_listen(bad_listen_addrs[_i].addr, 0, NULL, &l, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, bad_listen_addrs[_i].needle);
    ck_assert_msg(strstr(err.msg, "numeric") != NULL, "message: %s", err.msg);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_invalid_args)
{
    int fds0 = rt_count_fds();
    rill_error err;
    rill_status st = rill_listen("127.0.0.1", 0, NULL, NULL, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "out is NULL");
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, NULL, NULL), RILL_E_INVALID);

    rill_stream *s = NULL;
    st = rill_accept(NULL, 0, &s, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "listener is NULL");
    rill_listener *l = listen_ok("127.0.0.1", 0, NULL);
    st = rill_accept(l, 0, NULL, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "out is NULL");
    st = rill_accept(l, -2, &s, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "-2");
    st = rill_accept(l, -1000, &s, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "-1000");
    ck_assert_ptr_null(s);
    ck_assert_int_eq(rill_accept(l, -2, &s, NULL), RILL_E_INVALID);

    ck_assert_uint_eq(rill_listener_port(NULL), 0);
    ck_assert_int_eq(rill_listener_fd(NULL), -1);
    rill_listener_free(NULL);
    rill_listener_free(l);

    /* A Unix listener has no port. */
    char name[64];
    snprintf(name, sizeof name, "@rill-listen-args-%ld", (long)getpid());
    ck_assert_int_eq(rill_listen_unix(name, NULL, &l, &err), RILL_OK);
    ck_assert_uint_eq(rill_listener_port(l), 0);
    ck_assert_int_ge(rill_listener_fd(l), 0);
    rill_listener_free(l);

    /* A port below 1024 without privileges: RILL_E_IO with the reason. */
    if (geteuid() != 0) {
        st = rill_listen("127.0.0.1", 1, NULL, &l, &err);
        rt_assert_err(&err, st, RILL_E_IO, "permission denied");
    }
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("listen");
    TCase *tc = tcase_create("ports");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_port_zero, 0, 2);
    tcase_add_test(tc, test_listen_opts_defaults);
    tcase_add_loop_test(tc, test_port_in_use, 0, 2);
    tcase_add_test(tc, test_reuseaddr_time_wait);
    tcase_add_test(tc, test_reuseport);
    tcase_add_test(tc, test_ipv6);
    suite_add_tcase(s, tc);

    tc = tcase_create("accept");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_accept_timeout);
    tcase_add_test(tc, test_accept_nonblocking);
    tcase_add_loop_test(tc, test_accept_waits, 0, 2);
    tcase_add_test(tc, test_accepted_inherit_opts);
    tcase_add_test(tc, test_accept_emfile);
    tcase_add_test(tc, test_stop_accepting);
    suite_add_tcase(s, tc);

    tc = tcase_create("arguments");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_invalid_listen_addr, 0,
                        (int)(sizeof bad_listen_addrs / sizeof bad_listen_addrs[0]));
    tcase_add_test(tc, test_invalid_args);
    suite_add_tcase(s, tc);
    return s;
}
