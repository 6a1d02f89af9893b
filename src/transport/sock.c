/* SPDX-License-Identifier: MIT */
/*
 * What the socket transports (tcp, unix) share: address parsing and formatting, the connect
 * under a deadline, and the stream ops over a connected socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

void rilli_sockaddr_format(const struct sockaddr *sa, unsigned sa_len, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    buf[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)(const void *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        if (sa_len <= off)
            return; /* unnamed */
        size_t n = sa_len - off;
        if (un->sun_path[0] == '\0') /* abstract: not NUL-terminated */
            snprintf(buf, cap, "@%.*s", (int)(n - 1), un->sun_path + 1);
        else
            snprintf(buf, cap, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
    }
}

bool rilli_parse_numeric(const char *addr, uint16_t port, void *ss, unsigned *sa_len)
{
    char host[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(addr);
    if (n == 0 || n >= sizeof host)
        return false;
    if (addr[0] == '[') {
        if (n < 3 || addr[n - 1] != ']')
            return false;
        memcpy(host, addr + 1, n - 2);
        host[n - 2] = '\0';
    } else {
        memcpy(host, addr, n + 1);
    }
    memset(ss, 0, sizeof(struct sockaddr_storage));
    struct sockaddr_in *in = ss;
    struct sockaddr_in6 *in6 = ss;
    if (addr[0] != '[' && inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *sa_len = sizeof *in;
        return true;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *sa_len = sizeof *in6;
        return true;
    }
    return false;
}

rill_status rilli_unix_addr(const char *path, void *sun_out, unsigned *sa_len, rill_error *err)
{
    struct sockaddr_un *sun = sun_out;
    if (!path)
        return rilli_error_set(err, RILL_E_INVALID, 0, "unix: path is NULL");
    size_t n = strlen(path);
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof sun->sun_path || (path[0] == '@' && n == 1)) {
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "unix: socket path \"%.64s\" is empty or longer than %zu bytes",
                               path, sizeof sun->sun_path - 1);
    }
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') {
        sun->sun_path[0] = '\0'; /* Linux abstract namespace: length-delimited, no file */
        *sa_len = (unsigned)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *sa_len = (unsigned)sizeof *sun;
    }
    return RILL_OK;
}

/* The caller's deadline passed (distinct from the kernel giving up with ETIMEDOUT). */
#define DEADLINE_PASSED (-1)

/* One call where poll and SO_ERROR would take two; over loopback it has usually finished. */
int rilli_connect_probe(int fd, const struct sockaddr *sa, unsigned sa_len)
{
    if (connect(fd, sa, sa_len) == 0)
        return 0;
    int e = errno;
    return e == EISCONN ? 0 : e == EINPROGRESS || e == EINTR ? EALREADY : e;
}

/* Wait for a non-blocking connect; returns 0, the errno that ended it, or DEADLINE_PASSED. */
static int await_connect(int fd, const struct sockaddr *sa, unsigned sa_len, int64_t deadline)
{
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    for (;;) {
        int e = rilli_connect_probe(fd, sa, sa_len);
        if (e != EALREADY)
            return e;
        int r = poll(&p, 1, rilli_remaining_ms(deadline));
        if (r == 0)
            return DEADLINE_PASSED;
        if (r < 0 && errno != EINTR)
            return errno;
    }
}

rill_status rilli_sock_connect(const char *kind, const char *display, const struct sockaddr *sa,
                               unsigned sa_len, int timeout_ms, int *fd_out, rill_error *err)
{
    int64_t deadline = rilli_deadline(timeout_ms);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int e = errno;
        return rilli_error_set(
            err, rilli_status_from_errno(e) == RILL_E_NOMEM ? RILL_E_NOMEM : RILL_E_IO, e,
            "%s: cannot create a socket for %s", kind, display);
    }
    int e = 0;
    for (;;) {
        if (connect(fd, sa, sa_len) == 0) {
            e = 0;
            break;
        }
        e = errno;
        if (e == EINPROGRESS || e == EINTR) {
            e = await_connect(fd, sa, sa_len, deadline);
            break;
        }
        /* A full AF_UNIX backlog answers EAGAIN and cannot be polled: retry briefly. */
        if (e == EAGAIN && sa->sa_family == AF_UNIX && rilli_remaining_ms(deadline) != 0) {
            poll(NULL, 0, 5);
            continue;
        }
        break;
    }
    if (e != 0) {
        close(fd);
        /* A Unix backlog that stayed full until the deadline is the deadline passing too. */
        bool deadline_passed = e == DEADLINE_PASSED || (e == EAGAIN && sa->sa_family == AF_UNIX);
        if (deadline_passed) {
            return rilli_error_set(err, RILL_E_TIMEOUT, 0,
                                   "%s: connect to %s timed out after %d ms", kind, display,
                                   timeout_ms);
        }
        return rilli_error_set(err, rilli_status_from_errno(e), e, "%s: connect to %s failed", kind,
                               display);
    }
    *fd_out = fd;
    return RILL_OK;
}

rill_status rilli_check_connect_opts(const char *kind, const rill_connect_opts *o, rill_error *err)
{
    if (o->timeout_ms < RILL_TIMEOUT_NONE || o->read_timeout_ms < RILL_TIMEOUT_NONE ||
        o->write_timeout_ms < RILL_TIMEOUT_NONE) {
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "%s: timeouts must be -1 (none), 0 or positive ms (connect %d, "
                               "read %d, write %d)",
                               kind, o->timeout_ms, o->read_timeout_ms, o->write_timeout_ms);
    }
    if (o->max_in_flight < 1)
        return rilli_error_set(err, RILL_E_INVALID, 0, "%s: max_in_flight %d is below 1", kind,
                               o->max_in_flight);
    if (o->keepalive_idle_s < 0)
        return rilli_error_set(err, RILL_E_INVALID, 0, "%s: keepalive_idle_s %d is negative", kind,
                               o->keepalive_idle_s);
    return RILL_OK;
}

static rill_status apply_opts(int fd, int family, const rill_connect_opts *o, const char *kind,
                              rill_error *err)
{
    int on = 1;
    if (family == AF_INET || family == AF_INET6) {
        int nodelay = o->nodelay ? 1 : 0;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay) < 0)
            return rilli_error_set(err, RILL_E_IO, errno, "%s: cannot set TCP_NODELAY", kind);
        if (o->keepalive_idle_s > 0) {
            int idle = o->keepalive_idle_s;
            if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0 ||
                setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0) {
                return rilli_error_set(err, RILL_E_IO, errno, "%s: cannot enable keepalive", kind);
            }
        }
    }
    return RILL_OK;
}

/* The local end of @p fd as text ("" if the kernel cannot say). */
static void local_text(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage local = { 0 };
    socklen_t len = sizeof local;
    buf[0] = '\0';
    if (getsockname(fd, (struct sockaddr *)&local, &len) == 0)
        rilli_sockaddr_format((struct sockaddr *)&local, len, buf, cap);
}

void rilli_sock_peer_text(const rill_stream *s, char *buf, size_t cap)
{
    const struct rilli_sock *sk = rilli_state(s);
    buf[0] = '\0';
    if (!sk->is_unix && sk->peer_len > 0)
        rilli_sockaddr_format((const struct sockaddr *)&sk->peer, sk->peer_len, buf, cap);
}

/* Both ends as messages show them: "local > peer" (connected) or "local < peer" (accepted). */
static void sock_where(const rill_stream *s, char *buf, size_t cap)
{
    const struct rilli_sock *sk = rilli_state(s);
    if (sk->is_unix) { /* made at the start */
        rilli_snprintf(buf, cap, "%s", sk->unix_where);
        return;
    }
    char l[INET6_ADDRSTRLEN + 16], p[INET6_ADDRSTRLEN + 16] = "";
    local_text(sk->fd, l, sizeof l);
    if (sk->peer_len > 0)
        rilli_sockaddr_format((const struct sockaddr *)&sk->peer, sk->peer_len, p, sizeof p);
    rilli_snprintf(buf, cap, "%s %s %s", l, sk->accepted ? "<" : ">", p);
}

/*
 * The endpoints of a Unix connection, for a state made up front: one side is usually unnamed,
 * so the named one is shown. Unix sockets are not the hot path, and a peer that has gone can
 * no longer be asked for its name.
 */
static void unix_text(int fd, bool accepted, char *buf, size_t cap)
{
    char side[sizeof(((struct sockaddr_un *)0)->sun_path) + 2] = "";
    struct sockaddr_storage ss = { 0 };
    socklen_t len = sizeof ss;
    if ((accepted ? getsockname(fd, (struct sockaddr *)&ss, &len)
                  : getpeername(fd, (struct sockaddr *)&ss, &len)) == 0)
        rilli_sockaddr_format((struct sockaddr *)&ss, len, side, sizeof side);
    rilli_snprintf(buf, cap, "%s%s", side, accepted ? " accepted" : "");
}

rill_status rilli_sock_new_peer(const struct rill_stream_ops *ops, int fd, bool accepted,
                                const struct sockaddr *peer, unsigned peer_len, bool nonblock,
                                const rill_connect_opts *opts, rill_stream **out, rill_error *err)
{
    rill_connect_opts defaults;
    if (!opts) {
        rill_connect_opts_init(&defaults);
        opts = &defaults;
    }
    bool is_unix = ops == &rilli_unix_ops;
    struct sockaddr_storage asked = { 0 };
    if (!is_unix && !peer) {
        socklen_t len = sizeof asked;
        if (getpeername(fd, (struct sockaddr *)&asked, &len) == 0 &&
            (asked.ss_family == AF_INET || asked.ss_family == AF_INET6)) {
            peer = (const struct sockaddr *)&asked;
            peer_len = len;
        }
    }
    int family = is_unix ? AF_UNIX : peer ? peer->sa_family : AF_UNSPEC;
    rill_status st = apply_opts(fd, family, opts, ops->name, err);
    if (st != RILL_OK)
        return st;
    char where[sizeof(((struct sockaddr_un *)0)->sun_path) + 16] = "";
    size_t extra = 0;
    if (is_unix) {
        unix_text(fd, accepted, where, sizeof where);
        extra = strlen(where) + 1;
    }
    rill_stream *s = NULL;
    if (rill_stream_new(ops, sizeof(struct rilli_sock) + extra, NULL, 0, &s) != RILL_OK)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "%s: out of memory", ops->name);
    struct rilli_sock *sk = rilli_state(s);
    sk->fd = fd;
    sk->accepted = accepted;
    sk->nonblock = nonblock;
    sk->is_unix = is_unix;
    if (is_unix) {
        memcpy(sk->unix_where, where, extra);
    } else if (peer && peer_len <= sizeof sk->peer) {
        memcpy(&sk->peer, peer, peer_len);
        sk->peer_len = (uint16_t)peer_len;
    } else {
        sk->peer_len = 0; /* not known: shown as nothing */
    }
    st = rill_set_timeouts(s, opts->read_timeout_ms, opts->write_timeout_ms);
    if (st != RILL_OK) {
        rilli_error_from_stream(err, s);
        sk->fd = -1; /* the caller still owns fd on failure */
        rill_close(s);
        return st;
    }
    *out = s;
    return RILL_OK;
}

rill_status rilli_sock_new(const struct rill_stream_ops *ops, int fd, bool accepted,
                           const rill_connect_opts *opts, rill_stream **out, rill_error *err)
{
    return rilli_sock_new_peer(ops, fd, accepted, NULL, 0, false, opts, out, err);
}

/* A call that may block needs a blocking descriptor: the connect left O_NONBLOCK set. */
static inline void settle(rill_stream *s, struct rilli_sock *sk)
{
    if (sk->nonblock && rill_stream_may_block(s) && fcntl(sk->fd, F_SETFL, 0) == 0)
        sk->nonblock = false; /* on failure the call answers WANT and the core polls */
}

rill_status rilli_sock_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct rilli_sock *sk = rilli_state(s);
    settle(s, sk);
    return rilli_fd_read(s, sk->fd, true, sock_where, buf, len, n);
}

rill_status rilli_sock_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct rilli_sock *sk = rilli_state(s);
    settle(s, sk);
    return rilli_fd_write(s, sk->fd, true, sock_where, buf, len, n);
}

rill_status rilli_sock_writev(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n)
{
    struct rilli_sock *sk = rilli_state(s);
    settle(s, sk);
    return rilli_fd_writev(s, sk->fd, true, sock_where, iov, iovcnt, n);
}

rill_status rilli_sock_shutdown(rill_stream *s)
{
    struct rilli_sock *sk = rilli_state(s);
    if (shutdown(sk->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
        int e = errno;
        char where[128];
        sock_where(s, where, sizeof where);
        rill_stream_error(s, rilli_status_from_errno(e), "shutdown failed: %s (%s)",
                          rilli_errno_text(e), where);
        rilli_stream_errslot(s)->sys_errno = e;
        return rilli_stream_errslot(s)->code;
    }
    return RILL_OK;
}

void rilli_sock_close(rill_stream *s)
{
    struct rilli_sock *sk = rilli_state(s);
    if (sk->fd >= 0)
        close(sk->fd);
    sk->fd = -1;
}

rill_status rilli_sock_poll(rill_stream *s, int *fd, short *events)
{
    (void)events;
    *fd = ((struct rilli_sock *)rilli_state(s))->fd;
    return RILL_OK;
}

size_t rilli_sock_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct rilli_sock *sk = rilli_state(s);
    char where[128];
    sock_where(s, where, sizeof where);
    return rilli_snprintf(buf, len, "%s(fd=%d %s)", rill_kind(s), sk->fd, where);
}

RILL_API void rill_connect_opts_init(rill_connect_opts *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->size = rilli_opts_size(sizeof *opts);
    opts->timeout_ms = 30000;
    opts->read_timeout_ms = RILL_TIMEOUT_NONE;
    opts->write_timeout_ms = RILL_TIMEOUT_NONE;
    opts->nodelay = 1;
    opts->keepalive_idle_s = 0;
    opts->family = 0;
    opts->attempt_delay_ms = 250;
    opts->max_in_flight = 4;
    opts->resolution_delay_ms = 50;
}
