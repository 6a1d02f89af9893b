/* SPDX-License-Identifier: MIT */
/* The tcp transport: a connected TCP socket. Connects to numeric addresses only. */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

const struct rill_stream_ops rilli_tcp_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_TCP,
    .read = rilli_sock_read,
    .write = rilli_sock_write,
    .writev = rilli_sock_writev,
    .shutdown = rilli_sock_shutdown,
    .close = rilli_sock_close,
    .poll = rilli_sock_poll,
    .describe = rilli_sock_describe,
};

RILL_API rill_status rill_tcp_connect_addr(const char *addr, uint16_t port,
                                           const rill_connect_opts *opts, rill_stream **out,
                                           rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tcp: out is NULL");
    if (!addr)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tcp: address is NULL");
    if (port == 0)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tcp: port 0 is not a valid destination");
    struct sockaddr_storage ss;
    unsigned sl = 0;
    if (!rilli_parse_numeric(addr, port, &ss, &sl)) {
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tcp: \"%.64s\" is not a numeric IPv4 or IPv6 address", addr);
    }
    rill_connect_opts loaded;
    rill_status st = rilli_connect_opts_load("tcp", opts, &loaded, err);
    if (st != RILL_OK)
        return st;
    opts = &loaded;
    char display[80];
    rilli_sockaddr_format((struct sockaddr *)&ss, sl, display, sizeof display);
    int fd = -1;
    st = rilli_sock_connect("tcp", display, (struct sockaddr *)&ss, sl, opts->timeout_ms, &fd, err);
    if (st != RILL_OK)
        return st;
    st = rilli_sock_new_peer(&rilli_tcp_ops, fd, false, (struct sockaddr *)&ss, sl, true, opts, out,
                             err);
    if (st != RILL_OK)
        close(fd);
    return st;
}

RILL_API rill_status rill_tcp_adopt(int fd, const rill_connect_opts *opts, rill_stream **out,
                                    rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tcp: out is NULL");
    struct sockaddr_storage ss = { 0 };
    socklen_t sl = sizeof ss;
    int type = 0;
    socklen_t tl = sizeof type;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        return rilli_error_set(err, RILL_E_INVALID, 0, "tcp: descriptor %d is not a TCP socket",
                               fd);
    }
    sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
        return rilli_error_set(err, RILL_E_INVALID, errno, "tcp: descriptor %d is not connected",
                               fd);
    }
    rill_connect_opts loaded;
    rill_status st = rilli_connect_opts_load("tcp", opts, &loaded, err);
    if (st != RILL_OK)
        return st;
    opts = &loaded;
    return rilli_sock_new_peer(&rilli_tcp_ops, fd, false, (struct sockaddr *)&ss, sl, false, opts,
                               out, err);
}
