/* SPDX-License-Identifier: MIT */
/*
 * Reading and writing a descriptor on behalf of a transport layer. The transports keep their
 * sockets in blocking mode and choose per call: a call that may block goes to the kernel as is
 * (as cheap as plain read/write), a call under a deadline or in non-blocking mode uses
 * MSG_DONTWAIT, so the core can poll and retry without ever changing the descriptor's flags.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static rill_status io_error(rill_stream *s, int errnum, const char *what, rilli_where_fn where)
{
    rill_status code = rilli_status_from_errno(errnum);
    rill_status st;
    char text[128] = "";
    if (where)
        where(s, text, sizeof text);
    if (text[0])
        st = rill_stream_error(s, code, "%s (%s)", rilli_errno_text(errnum), text);
    else
        st = rill_stream_error(s, code, "%s: %s", what, rilli_errno_text(errnum));
    rilli_stream_errslot(s)->sys_errno = errnum;
    return st;
}

/*
 * Readiness of a descriptor that cannot take MSG_DONTWAIT, checked without waiting. A failing
 * poll() counts as not ready: the I/O that would follow might block under a deadline, and the
 * core's own poll reports the failure.
 */
static bool ready_now(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    int r;
    do {
        r = poll(&p, 1, 0);
    } while (r < 0 && errno == EINTR);
    return r > 0; /* errors and hang-ups then come from the read or write itself */
}

rill_status rilli_fd_read(rill_stream *s, int fd, bool is_sock, rilli_where_fn where, void *buf,
                          size_t len, size_t *n)
{
    *n = 0;
    bool may_block = rill_stream_may_block(s);
    if (!is_sock && !may_block && !ready_now(fd, POLLIN))
        return RILL_WANT_READ;
    for (;;) {
        ssize_t r = is_sock ? recv(fd, buf, len, may_block ? 0 : MSG_DONTWAIT) : read(fd, buf, len);
        if (r > 0) {
            *n = (size_t)r;
            return RILL_OK;
        }
        if (r == 0)
            return RILL_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RILL_WANT_READ;
        return io_error(s, errno, "read failed", where);
    }
}

/*
 * write(2) on a pipe whose reader is gone raises SIGPIPE. Block it in this thread for the call
 * and consume the one the write generated, leaving any SIGPIPE that was already pending alone.
 * The write need not fail for that: when the reader goes away while a blocking write waits for
 * room, the write returns the bytes it got in and raises SIGPIPE all the same. So every short
 * write looks for one (a full write cannot have raised it, so it costs nothing extra).
 */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t r = write(fd, buf, len);
    int saved = errno;
    bool short_write = r < 0 ? saved == EPIPE : (size_t)r < len;
    if (short_write && !was_pending) {
        const struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return r;
}

rill_status rilli_fd_write(rill_stream *s, int fd, bool is_sock, rilli_where_fn where,
                           const void *buf, size_t len, size_t *n)
{
    *n = 0;
    bool may_block = rill_stream_may_block(s);
    if (!is_sock && !may_block) {
        if (!ready_now(fd, POLLOUT))
            return RILL_WANT_WRITE;
        /* A blocking pipe reported writable takes PIPE_BUF bytes without waiting. */
        if (len > PIPE_BUF)
            len = PIPE_BUF;
    }
    for (;;) {
        ssize_t r = is_sock ? send(fd, buf, len, MSG_NOSIGNAL | (may_block ? 0 : MSG_DONTWAIT))
                            : write_nosigpipe(fd, buf, len);
        if (r >= 0) {
            *n = (size_t)r;
            return r > 0 ? RILL_OK : RILL_WANT_WRITE;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RILL_WANT_WRITE;
        return io_error(s, errno, "write failed", where);
    }
}

rill_status rilli_fd_writev(rill_stream *s, int fd, bool is_sock, rilli_where_fn where,
                            const struct iovec *iov, int iovcnt, size_t *n)
{
    *n = 0;
    if (!is_sock) /* pipes and files: the first piece, with rilli_fd_write's care for pipes */
        return rilli_fd_write(s, fd, false, where, iov[0].iov_base, iov[0].iov_len, n);
    union {
        const struct iovec *in;
        struct iovec *out; /* sendmsg() only reads the pieces */
    } pieces = { .in = iov };
    struct msghdr m = { .msg_iov = pieces.out,
                        .msg_iovlen = (size_t)(iovcnt > IOV_MAX ? IOV_MAX : iovcnt) };
    int flags = MSG_NOSIGNAL | (rill_stream_may_block(s) ? 0 : MSG_DONTWAIT);
    for (;;) {
        ssize_t r = sendmsg(fd, &m, flags);
        if (r >= 0) {
            *n = (size_t)r;
            return r > 0 ? RILL_OK : RILL_WANT_WRITE;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RILL_WANT_WRITE;
        return io_error(s, errno, "write failed", where);
    }
}
