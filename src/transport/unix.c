/* SPDX-License-Identifier: MIT */
/* The unix transport: a connected AF_UNIX stream socket (path or Linux abstract name). */
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

const struct rill_stream_ops rilli_unix_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_UNIX,
    .read = rilli_sock_read,
    .write = rilli_sock_write,
    .writev = rilli_sock_writev,
    .shutdown = rilli_sock_shutdown,
    .close = rilli_sock_close,
    .poll = rilli_sock_poll,
    .describe = rilli_sock_describe,
};

RILL_API rill_status rill_unix_connect(const char *path, const rill_connect_opts *opts,
                                       rill_stream **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "unix: out is NULL");
    struct sockaddr_un sun;
    unsigned sl = 0;
    rill_status st = rilli_unix_addr(path, &sun, &sl, err);
    if (st != RILL_OK)
        return st;
    rill_connect_opts loaded;
    st = rilli_connect_opts_load("unix", opts, &loaded, err);
    if (st != RILL_OK)
        return st;
    opts = &loaded;
    int fd = -1;
    st = rilli_sock_connect("unix", path, (struct sockaddr *)&sun, sl, opts->timeout_ms, &fd, err);
    if (st != RILL_OK)
        return st;
    st = rilli_sock_new_peer(&rilli_unix_ops, fd, false, NULL, 0, true, opts, out, err);
    if (st != RILL_OK)
        close(fd);
    return st;
}
