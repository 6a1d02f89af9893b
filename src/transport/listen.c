/* SPDX-License-Identifier: MIT */
/* Listening sockets (TCP on a numeric address, Unix path or abstract name) and accept. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

struct rill_listener {
    int fd;
    bool is_unix;
    bool unlink_path;
    uint16_t port;
    rill_listen_opts opts;
    char where[112];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

RILL_API void rill_listen_opts_init(rill_listen_opts *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->size = rilli_opts_size(sizeof *opts);
    opts->backlog = 128;
    opts->reuseaddr = 1;
    opts->v6only = 1;
    rill_connect_opts_init(&opts->stream);
}

static rill_status listen_on(const struct sockaddr *sa, unsigned sl, const char *display,
                             const rill_listen_opts *opts, rill_listener **out, rill_error *err)
{
    const char *kind = sa->sa_family == AF_UNIX ? "unix" : "tcp";
    rill_status st = rilli_check_connect_opts(kind, &opts->stream, err);
    if (st != RILL_OK)
        return st;
    if (sa->sa_family == AF_UNIX && opts->reuseport)
        return rilli_error_set(err, RILL_E_UNSUPPORTED, 0, "unix: reuseport is for TCP listeners");
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return rilli_error_set(err, RILL_E_IO, errno,
                               "%s: cannot create a socket to listen "
                               "on %s",
                               kind, display);
    int on = 1, v6only = opts->v6only ? 1 : 0;
    if (sa->sa_family != AF_UNIX && opts->reuseaddr)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (sa->sa_family != AF_UNIX && opts->reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) {
        st = rilli_error_set(err, RILL_E_IO, errno, "%s: cannot set SO_REUSEPORT for %s", kind,
                             display);
        goto fail;
    }
    if (sa->sa_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    if (bind(fd, sa, sl) < 0) {
        st = rilli_error_set(err, RILL_E_IO, errno, "%s: cannot bind %s", kind, display);
        goto fail;
    }
    if (listen(fd, opts->backlog > 0 ? opts->backlog : 128) < 0) {
        st = rilli_error_set(err, RILL_E_IO, errno, "%s: cannot listen on %s", kind, display);
        goto fail_bound;
    }
    rill_listener *l = rilli_calloc(1, sizeof *l);
    if (!l) {
        st = rilli_error_set(err, RILL_E_NOMEM, 0, "%s: out of memory", kind);
        goto fail_bound;
    }
    l->fd = fd;
    l->opts = *opts;
    if (opts->stream.tls)
        rilli_tls_config_ref(opts->stream.tls); /* accepted streams wrap with it later */
    l->is_unix = sa->sa_family == AF_UNIX;
    struct sockaddr_storage bound = { 0 };
    socklen_t bl = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) == 0) {
        rilli_sockaddr_format((struct sockaddr *)&bound, bl, l->where, sizeof l->where);
        if (bound.ss_family == AF_INET)
            l->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else if (bound.ss_family == AF_INET6)
            l->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    *out = l;
    return RILL_OK;
fail_bound:
    /* bind() created the socket file of a path listener: leave no stale file behind. */
    if (sa->sa_family == AF_UNIX && display[0] != '@')
        unlink(display);
fail:
    close(fd);
    return st;
}

RILL_API rill_status rill_listen(const char *addr, uint16_t port, const rill_listen_opts *opts,
                                 rill_listener **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tcp: out is NULL");
    if (!addr)
        addr = "127.0.0.1";
    struct sockaddr_storage ss;
    unsigned sl = 0;
    if (!rilli_parse_numeric(addr, port, &ss, &sl)) {
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tcp: cannot listen on \"%.64s\": not a numeric IPv4 or IPv6 "
                               "address",
                               addr);
    }
    rill_listen_opts loaded;
    rill_status st = rilli_listen_opts_load("tcp", opts, &loaded, err);
    if (st != RILL_OK)
        return st;
    opts = &loaded;
    char display[80];
    rilli_sockaddr_format((struct sockaddr *)&ss, sl, display, sizeof display);
    return listen_on((struct sockaddr *)&ss, sl, display, opts, out, err);
}

RILL_API rill_status rill_listen_unix(const char *path, const rill_listen_opts *opts,
                                      rill_listener **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "unix: out is NULL");
    struct sockaddr_un sun;
    unsigned sl = 0;
    rill_status st = rilli_unix_addr(path, &sun, &sl, err);
    if (st != RILL_OK)
        return st;
    rill_listen_opts loaded;
    st = rilli_listen_opts_load("unix", opts, &loaded, err);
    if (st != RILL_OK)
        return st;
    opts = &loaded;
    st = listen_on((struct sockaddr *)&sun, sl, path, opts, out, err);
    if (st == RILL_OK && path[0] != '@') {
        (*out)->unlink_path = true;
        snprintf((*out)->path, sizeof(*out)->path, "%s", path);
    }
    return st;
}

RILL_API rill_status rill_accept(rill_listener *l, int timeout_ms, rill_stream **out,
                                 rill_error *err)
{
    if (!l || !out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "accept: %s is NULL",
                               !l ? "listener" : "out");
    if (timeout_ms < RILL_TIMEOUT_NONE)
        return rilli_error_set(err, RILL_E_INVALID, 0, "accept: timeout %d is below -1",
                               timeout_ms);
    const char *kind = l->is_unix ? "unix" : "tcp";
    int64_t deadline = rilli_deadline(timeout_ms);
    for (;;) {
        /* Accepted sockets start blocking; the transports add MSG_DONTWAIT per call. */
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            rill_stream *s = NULL;
            rill_status st = rilli_sock_new(l->is_unix ? &rilli_unix_ops : &rilli_tcp_ops, fd, true,
                                            &l->opts.stream, &s, err);
            if (st != RILL_OK) {
                close(fd);
                return st;
            }
            if (l->opts.stream.tls) {
                rill_stream *tls = NULL;
                st = rill_tls_server(s, l->opts.stream.tls, l->opts.stream.tls_flags, &tls);
                if (st != RILL_OK) {
                    rilli_error_from_stream(err, s);
                    rill_close(s);
                    return st;
                }
                s = tls;
            }
            *out = s;
            return RILL_OK;
        }
        int e = errno;
        if (e == EINTR || e == ECONNABORTED)
            continue;
        if (e != EAGAIN && e != EWOULDBLOCK) {
            return rilli_error_set(
                err, rilli_status_from_errno(e) == RILL_E_NOMEM ? RILL_E_NOMEM : RILL_E_IO, e,
                "%s: accept on %s failed", kind, l->where);
        }
        if (timeout_ms == 0)
            return RILL_WANT_READ;
        struct pollfd p = { .fd = l->fd, .events = POLLIN };
        int r = poll(&p, 1, rilli_remaining_ms(deadline));
        if (r == 0) {
            return rilli_error_set(err, RILL_E_TIMEOUT, 0, "%s: no connection on %s within %d ms",
                                   kind, l->where, timeout_ms);
        }
        if (r < 0 && errno != EINTR)
            return rilli_error_set(err, RILL_E_IO, errno, "%s: poll on %s failed", kind, l->where);
    }
}

RILL_API uint16_t rill_listener_port(const rill_listener *l)
{
    return l ? l->port : 0;
}

RILL_API int rill_listener_fd(const rill_listener *l)
{
    return l ? l->fd : -1;
}

RILL_API void rill_listener_free(rill_listener *l)
{
    if (!l)
        return;
    close(l->fd);
    rill_tls_config_free(l->opts.stream.tls);
    if (l->unlink_path)
        unlink(l->path);
    rilli_free(l);
}
