/* SPDX-License-Identifier: MIT */
/*
 * The fd transport: any descriptor pair (a socket, a pipe, stdin/stdout, a file). The
 * descriptors' flags are never changed, since they may be shared with other processes
 * (a terminal, a pipe from the shell).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct fd_state {
    int rfd;
    int wfd;
    bool rsock;
    bool wsock;
    bool own;
    char where[32];
};

static void fd_where(const rill_stream *s, char *buf, size_t cap)
{
    rilli_snprintf(buf, cap, "%s", ((const struct fd_state *)rilli_state(s))->where);
}

static rill_status fd_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct fd_state *st = rilli_state(s);
    if (st->rfd < 0) {
        *n = 0;
        return rill_stream_error(s, RILL_E_UNSUPPORTED, "stream is write-only (no read fd)");
    }
    return rilli_fd_read(s, st->rfd, st->rsock, fd_where, buf, len, n);
}

static rill_status fd_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct fd_state *st = rilli_state(s);
    if (st->wfd < 0) {
        *n = 0;
        return rill_stream_error(s, RILL_E_UNSUPPORTED, "stream is read-only (no write fd)");
    }
    return rilli_fd_write(s, st->wfd, st->wsock, fd_where, buf, len, n);
}

static rill_status fd_writev(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n)
{
    struct fd_state *st = rilli_state(s);
    if (st->wfd < 0)
        return fd_write(s, iov[0].iov_base, iov[0].iov_len, n);
    return rilli_fd_writev(s, st->wfd, st->wsock, fd_where, iov, iovcnt, n);
}

static rill_status fd_shutdown(rill_stream *s)
{
    struct fd_state *st = rilli_state(s);
    /* Half-close is a socket notion; for a pipe the writer ends it by closing. */
    if (st->wfd >= 0 && st->wsock && shutdown(st->wfd, SHUT_WR) < 0 && errno != ENOTCONN) {
        int e = errno;
        rill_stream_error(s, rilli_status_from_errno(e), "shutdown failed: %s (%s)",
                          rilli_errno_text(e), st->where);
        rilli_stream_errslot(s)->sys_errno = e;
        return rilli_stream_errslot(s)->code;
    }
    return RILL_OK;
}

static void fd_close(rill_stream *s)
{
    struct fd_state *st = rilli_state(s);
    if (!st->own)
        return;
    if (st->rfd >= 0)
        close(st->rfd);
    if (st->wfd >= 0 && st->wfd != st->rfd)
        close(st->wfd);
    st->rfd = st->wfd = -1;
}

static rill_status fd_poll(rill_stream *s, int *fd, short *events)
{
    struct fd_state *st = rilli_state(s);
    /* A one-way stream waits on the only descriptor it has. */
    *fd = (*events & POLLOUT) ? (st->wfd >= 0 ? st->wfd : st->rfd)
                              : (st->rfd >= 0 ? st->rfd : st->wfd);
    return RILL_OK;
}

static size_t fd_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct fd_state *st = rilli_state(s);
    return rilli_snprintf(buf, len, "fd(%s%s)", st->where, st->own ? " owned" : "");
}

static const struct rill_stream_ops fd_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_FD,
    .read = fd_read,
    .write = fd_write,
    .writev = fd_writev,
    .shutdown = fd_shutdown,
    .close = fd_close,
    .poll = fd_poll,
    .describe = fd_describe,
};

/* Whether @p fd is open, and whether it is a socket. */
static bool probe(int fd, bool *is_sock)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return false;
    *is_sock = S_ISSOCK(sb.st_mode);
    return true;
}

RILL_API rill_status rill_fd_new(int read_fd, int write_fd, unsigned flags, rill_stream **out,
                                 rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "fd: out is NULL");
    if (read_fd < -1 || write_fd < -1)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "fd: descriptors must be >= 0, or -1 for none (got %d, %d)", read_fd,
                               write_fd);
    if (read_fd < 0 && write_fd < 0)
        return rilli_error_set(err, RILL_E_INVALID, 0, "fd: both descriptors are -1");
    bool rsock = false, wsock = false;
    if (read_fd >= 0 && !probe(read_fd, &rsock))
        return rilli_error_set(err, RILL_E_INVALID, errno, "fd: read descriptor %d", read_fd);
    if (write_fd >= 0 && !probe(write_fd, &wsock))
        return rilli_error_set(err, RILL_E_INVALID, errno, "fd: write descriptor %d", write_fd);
    rill_stream *s = NULL;
    if (rill_stream_new(&fd_ops, sizeof(struct fd_state), NULL, 0, &s) != RILL_OK)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "fd: out of memory");
    struct fd_state *st = rilli_state(s);
    st->rfd = read_fd;
    st->wfd = write_fd;
    st->rsock = rsock;
    st->wsock = wsock;
    st->own = (flags & RILL_FD_OWN) != 0;
    if (read_fd == write_fd)
        rilli_snprintf(st->where, sizeof st->where, "%d", read_fd);
    else
        rilli_snprintf(st->where, sizeof st->where, "r=%d w=%d", read_fd, write_fd);
    *out = s;
    return RILL_OK;
}
