/* SPDX-License-Identifier: MIT */
/*
 * The stream core: dispatch through the layer vtables, wait for readiness under deadlines, keep
 * each layer's error slot, and walk chains for flush, shutdown, close and introspection.
 *
 * Waiting happens only here, at the public call: layers are non-blocking state machines that
 * return RILL_WANT_*; the core polls the descriptor rill_poll_info() names and retries. When a
 * call has no timeout the chain may block in the kernel instead (rill_stream_may_block), which
 * keeps blocking use as cheap as a plain read(2).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { DIR_READ = 0, DIR_WRITE = 1 };

/* ---- error slots ---- */

/*
 * Error records are allocated when an error happens: an idle stream holds a pointer, not a
 * 264-byte record. When that allocation fails the message is written to a per-thread scratch
 * record and only its code is kept on the stream (lost_code). The scratch keeps serving that
 * stream's message on this thread until another lost error takes it; after that, or on another
 * thread, rill_errmsg() says the message was lost to a lack of memory. Errors therefore still
 * report when memory is gone.
 */
static _Thread_local rill_error scratch_record;
static _Thread_local const rill_stream *scratch_owner; /* whose message the scratch holds */
static _Thread_local rill_error lost_record;
static const rill_error no_error;
static const char lost_text[] = "out of memory: no room for the message of this error";

/* The record of a lost error of @p s: the scratch while it still holds it. */
static const rill_error *lost_error(const rill_stream *s)
{
    if (scratch_owner == s && scratch_record.code == s->lost_code)
        return &scratch_record;
    lost_record.code = s->lost_code;
    lost_record.sys_errno = 0;
    memcpy(lost_record.msg, lost_text, sizeof lost_text);
    return &lost_record;
}

rill_error *rilli_stream_errslot(rill_stream *s)
{
    if (s->err)
        return s->err;
    s->err = rilli_malloc(sizeof *s->err);
    if (!s->err)
        return &scratch_record;
    /* Carries on what a lost record said, for a caller that reads the code back. */
    if (s->lost_code)
        *s->err = *lost_error(s);
    else
        *s->err = no_error;
    s->lost_code = RILL_OK;
    return s->err;
}

/* After writing @p e (from rilli_stream_errslot): keep the code if it is the scratch record. */
static rill_status slot_done(rill_stream *s, const rill_error *e)
{
    if (e == &scratch_record) {
        s->lost_code = e->code;
        scratch_owner = s;
    }
    return e->code;
}

/* The code of the last error recorded on @p s (RILL_OK when none). */
static rill_status last_code(const rill_stream *s)
{
    return s->err ? s->err->code : s->lost_code;
}

static void clear_error(rill_stream *s)
{
    if (s->err)
        s->err->code = RILL_OK;
    s->lost_code = RILL_OK;
}

void rilli_stream_free(rill_stream *s)
{
    if (scratch_owner == s)
        scratch_owner = NULL;
    if (s) {
        rilli_free(s->err);
        rilli_free(s);
    }
}

rill_status rilli_api_error(rill_stream *s, rill_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (s) {
        rill_error *e = rilli_stream_errslot(s);
        rilli_error_vset(e, code, 0, fmt, ap);
        slot_done(s, e);
    }
    va_end(ap);
    return code;
}

static rill_status layer_verror(rill_stream *s, rill_status code, int errnum, const char *fmt,
                                va_list ap) RILL_PRINTF(4, 0);

static rill_status layer_verror(rill_stream *s, rill_status code, int errnum, const char *fmt,
                                va_list ap)
{
    rill_error *e = rilli_stream_errslot(s);
    int n = snprintf(e->msg, sizeof e->msg, "%s: ", s->ops->name);
    if (n < 0 || (size_t)n >= sizeof e->msg)
        n = 0;
    rill_error tail;
    rilli_error_vset(&tail, code, errnum, fmt, ap);
    snprintf(e->msg + n, sizeof e->msg - (size_t)n, "%s", tail.msg);
    e->code = code;
    e->sys_errno = errnum;
    return slot_done(s, e);
}

RILL_API rill_status rill_stream_error(rill_stream *s, rill_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    layer_verror(s, code, 0, fmt, ap);
    va_end(ap);
    return code;
}

RILL_API rill_status rill_stream_error_sys(rill_stream *s, rill_status code, int errnum,
                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    layer_verror(s, code, errnum, fmt, ap);
    va_end(ap);
    return code;
}

/*
 * Give @p top the error recorded on @p from, a layer below it, prefixed with the names of the
 * layers between them: "lines: buffered: tcp: connection reset by peer (...)".
 */
rill_status rilli_adopt_error(rill_stream *top, const rill_stream *from, rill_status code)
{
    if (top == from)
        return code;
    char msg[RILL_ERRMSG_MAX];
    size_t used = 0;
    for (const rill_stream *l = top; l && l != from; l = l->inner) {
        int n = snprintf(msg + used, sizeof msg - used, "%s: ", l->ops->name);
        if (n < 0 || (size_t)n >= sizeof msg - used)
            break;
        used += (size_t)n;
    }
    const rill_error *below = rill_last_error(from);
    snprintf(msg + used, sizeof msg - used, "%s", below->msg);
    int errnum = below->sys_errno;
    rill_error *e = rilli_stream_errslot(top);
    memcpy(e->msg, msg, sizeof msg);
    e->code = code;
    e->sys_errno = errnum;
    return slot_done(top, e);
}

RILL_API const char *rill_errmsg(const rill_stream *s)
{
    return s ? rill_last_error(s)->msg : "(null stream)";
}

RILL_API const rill_error *rill_last_error(const rill_stream *s)
{
    if (!s)
        return NULL;
    if (s->err)
        return s->err;
    return s->lost_code ? lost_error(s) : &no_error;
}

/* ---- creation and accessors ---- */

RILL_API rill_status rill_stream_new(const struct rill_stream_ops *ops, size_t state_size,
                                     rill_stream *inner, unsigned flags, rill_stream **out)
{
    bool known = ops && (ops->version == 1 || ops->version == RILL_STREAM_OPS_VERSION);
    if (!out || !ops || !known || !ops->name || !*ops->name) {
        return rilli_api_error(inner, RILL_E_INVALID, "rill_stream_new: %s",
                               !out     ? "out is NULL"
                               : !ops   ? "ops is NULL"
                               : !known ? "ops version mismatch"
                                        : "ops has no name");
    }
    if (state_size > ((size_t)1 << 30))
        return rilli_api_error(inner, RILL_E_INVALID, "rill_stream_new: state_size too large");
    rill_stream *s = rilli_calloc(1, sizeof *s + state_size);
    if (!s) {
        return rilli_api_error(inner, RILL_E_NOMEM, "%s: out of memory creating the layer",
                               ops->name);
    }
    s->ops = ops;
    s->state = s->state_block;
    s->inner = inner;
    s->flags = flags & RILL_BORROW;
    s->read_timeout_ms = inner ? inner->read_timeout_ms : RILL_TIMEOUT_NONE;
    s->write_timeout_ms = inner ? inner->write_timeout_ms : RILL_TIMEOUT_NONE;
    s->shut_wr = inner ? inner->shut_wr : false;
    *out = s;
    return RILL_OK;
}

RILL_API void *rill_stream_state(const rill_stream *s)
{
    return s->state;
}

RILL_API rill_stream *rill_stream_inner(const rill_stream *s)
{
    return s ? s->inner : NULL;
}

RILL_API const struct rill_stream_ops *rill_stream_ops_of(const rill_stream *s)
{
    return s ? s->ops : NULL;
}

RILL_API int rill_stream_may_block(const rill_stream *s)
{
    return s->may_block;
}

/* ---- dispatch (one layer, no waiting) ---- */

static rill_status dispatch_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    if (s->ops->read)
        return s->ops->read(s, buf, len, n);
    return rill_stream_read_inner(s, buf, len, n);
}

static rill_status dispatch_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    if (s->ops->write)
        return s->ops->write(s, buf, len, n);
    return rill_stream_write_inner(s, buf, len, n);
}

/*
 * A gather write on one layer: its own writev op; else, for a layer with a write op, the first
 * piece through it; else (a pass-through layer) the gather goes to the inner stream.
 */
static rill_status dispatch_writev(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n)
{
    const struct rill_stream_ops *ops = s->ops;
    if (ops->version >= 2 && ops->writev)
        return ops->writev(s, iov, iovcnt, n);
    if (ops->write)
        return ops->write(s, iov[0].iov_base, iov[0].iov_len, n);
    return rill_stream_writev_inner(s, iov, iovcnt, n);
}

RILL_API rill_status rill_stream_writev_inner(rill_stream *self, const struct iovec *iov,
                                              int iovcnt, size_t *n)
{
    rill_stream *in = self->inner;
    *n = 0;
    if (!in)
        return rill_stream_error(self, RILL_E_UNSUPPORTED, "write: layer has no inner stream");
    if (in->shut_wr)
        return rill_stream_error(self, RILL_E_CLOSED, "write after shutdown");
    in->may_block = self->may_block;
    rill_status st = dispatch_writev(in, iov, iovcnt, n);
    return st < 0 ? rilli_adopt_error(self, in, st) : st;
}

RILL_API rill_status rill_stream_read_inner(rill_stream *self, void *buf, size_t len, size_t *n)
{
    rill_stream *in = self->inner;
    *n = 0;
    if (!in)
        return rill_stream_error(self, RILL_E_UNSUPPORTED, "read: layer has no inner stream");
    in->may_block = self->may_block;
    rill_status st = dispatch_read(in, buf, len, n);
    return st < 0 ? rilli_adopt_error(self, in, st) : st;
}

RILL_API rill_status rill_stream_write_inner(rill_stream *self, const void *buf, size_t len,
                                             size_t *n)
{
    rill_stream *in = self->inner;
    *n = 0;
    if (!in)
        return rill_stream_error(self, RILL_E_UNSUPPORTED, "write: layer has no inner stream");
    if (in->shut_wr)
        return rill_stream_error(self, RILL_E_CLOSED, "write after shutdown");
    in->may_block = self->may_block;
    rill_status st = dispatch_write(in, buf, len, n);
    return st < 0 ? rilli_adopt_error(self, in, st) : st;
}

static rill_status flush_chain(rill_stream *s, void *arg);

RILL_API rill_status rill_stream_flush_inner(rill_stream *self)
{
    rill_stream *in = self->inner;
    if (!in)
        return RILL_OK;
    in->may_block = self->may_block;
    rill_status st = flush_chain(in, NULL);
    return st < 0 ? rilli_adopt_error(self, in, st) : st;
}

/* ---- waiting ---- */

static bool is_want(rill_status st)
{
    return st == RILL_WANT_READ || st == RILL_WANT_WRITE;
}

static rill_status find_poll(rill_stream *s, int *fd, short *events)
{
    *fd = -1;
    for (rill_stream *l = s; l; l = l->inner) {
        if (!l->ops->poll)
            continue;
        rill_status st = l->ops->poll(l, fd, events);
        if (st < 0)
            return rilli_adopt_error(s, l, st);
        if (*fd >= 0)
            return RILL_OK;
    }
    return RILL_E_UNSUPPORTED;
}

/* Wait until the chain can make progress on @p want, or the deadline passes. */
static rill_status wait_ready(rill_stream *s, rill_status want, int64_t deadline, int dir)
{
    struct pollfd p = { .fd = -1, .events = want == RILL_WANT_WRITE ? POLLOUT : POLLIN };
    if (find_poll(s, &p.fd, &p.events) != RILL_OK) {
        return rilli_api_error(s, RILL_E_UNSUPPORTED,
                               "%s: would block, but the chain has no descriptor to wait on",
                               s->ops->name);
    }
    for (;;) {
        /*
         * Checked before polling too: a layer that keeps answering WANT while its descriptor
         * is ready must still meet the deadline.
         */
        int left = rilli_remaining_ms(deadline);
        int r = left == 0 ? 0 : poll(&p, 1, left);
        if (r > 0)
            return RILL_OK;
        if (r == 0) {
            int ms = dir == DIR_READ ? s->read_timeout_ms : s->write_timeout_ms;
            return rill_stream_error(s, RILL_E_TIMEOUT, "%s timed out after %d ms",
                                     dir == DIR_READ ? "read" : "write", ms);
        }
        if (errno != EINTR)
            return rill_stream_error_sys(s, RILL_E_IO, errno, "poll failed");
    }
}

RILL_API rill_status rill_stream_call(rill_stream *s, int dir,
                                      rill_status (*attempt)(rill_stream *s, void *arg), void *arg)
{
    if (!s || !attempt)
        return rilli_api_error(s, RILL_E_INVALID, "rill_stream_call: NULL argument");
    int timeout = dir == DIR_READ ? s->read_timeout_ms : s->write_timeout_ms;
    int64_t deadline = timeout > 0 ? rilli_deadline(timeout) : -1;
    s->may_block = timeout < 0;
    for (;;) {
        rill_status st = attempt(s, arg);
        if (!is_want(st)) {
            s->want = RILL_OK;
            return st;
        }
        s->want = st;
        if (timeout == 0)
            return st;
        st = wait_ready(s, st, deadline, dir);
        if (st != RILL_OK)
            return st;
    }
}

/* ---- reading and writing ---- */

struct io_args {
    void *buf;        /* reads */
    const void *data; /* writes */
    size_t len;
    size_t done;
};

static rill_status read_once(rill_stream *s, void *arg)
{
    struct io_args *a = arg;
    return dispatch_read(s, a->buf, a->len, &a->done);
}

static rill_status write_once(rill_stream *s, void *arg)
{
    struct io_args *a = arg;
    return dispatch_write(s, a->data, a->len, &a->done);
}

static rill_status read_all(rill_stream *s, void *arg)
{
    struct io_args *a = arg;
    while (a->done < a->len) {
        size_t n = 0;
        rill_status st = dispatch_read(s, (char *)a->buf + a->done, a->len - a->done, &n);
        a->done += n;
        if (st != RILL_OK)
            return st;
    }
    return RILL_OK;
}

static rill_status write_all(rill_stream *s, void *arg)
{
    struct io_args *a = arg;
    while (a->done < a->len) {
        size_t n = 0;
        rill_status st = dispatch_write(s, (const char *)a->data + a->done, a->len - a->done, &n);
        a->done += n;
        if (st != RILL_OK)
            return st;
    }
    return RILL_OK;
}

/*
 * rill_writev: the pieces not yet written, from piece @p at, @p off bytes into it. Each attempt
 * hands the layer a window of at most GATHER_MAX pieces (the first one trimmed).
 */
#define GATHER_MAX 64

struct gather_args {
    const struct iovec *iov;
    size_t iovcnt;
    size_t at;
    size_t off;
    size_t done;
};

static rill_status writev_all(rill_stream *s, void *arg)
{
    struct gather_args *a = arg;
    struct iovec win[GATHER_MAX];
    for (;;) {
        while (a->at < a->iovcnt && a->off == a->iov[a->at].iov_len) {
            a->at++;
            a->off = 0;
        }
        if (a->at == a->iovcnt)
            return RILL_OK;
        int k = 0;
        for (size_t i = a->at; i < a->iovcnt && k < GATHER_MAX; i++) {
            size_t skip = i == a->at ? a->off : 0;
            if (a->iov[i].iov_len == skip)
                continue;
            win[k].iov_base = (char *)a->iov[i].iov_base + skip;
            win[k].iov_len = a->iov[i].iov_len - skip;
            k++;
        }
        if (k == 0) /* not reached: the piece at the cursor has bytes left */
            return RILL_OK;
        size_t n = 0;
        rill_status st = dispatch_writev(s, win, k, &n);
        a->done += n;
        /* Advance the cursor by n bytes. */
        while (n > 0) {
            size_t left = a->iov[a->at].iov_len - a->off;
            size_t take = n < left ? n : left;
            a->off += take;
            n -= take;
            if (a->off == a->iov[a->at].iov_len && n > 0) {
                a->at++;
                a->off = 0;
            }
        }
        if (st != RILL_OK)
            return st;
    }
}

static rill_status check_io_args(rill_stream *s, const char *fn, const void *buf, size_t len,
                                 bool zero_ok)
{
    if (!s)
        return RILL_E_INVALID;
    if (!buf && len > 0)
        return rilli_api_error(s, RILL_E_INVALID, "%s: buffer is NULL", fn);
    if (len == 0 && !zero_ok)
        return rilli_api_error(s, RILL_E_INVALID, "%s: length is 0", fn);
    return RILL_OK;
}

static rill_status check_writable(rill_stream *s, const char *fn)
{
    if (s->shut_wr)
        return rilli_api_error(s, RILL_E_CLOSED, "%s: %s: write after shutdown", fn, s->ops->name);
    return RILL_OK;
}

RILL_API rill_status rill_read(rill_stream *s, void *buf, size_t len, size_t *nread)
{
    if (!nread)
        return rilli_api_error(s, RILL_E_INVALID, "rill_read: nread is NULL");
    *nread = 0;
    rill_status st = check_io_args(s, "rill_read", buf, len, false);
    if (st != RILL_OK)
        return st;
    struct io_args a = { .buf = buf, .len = len };
    st = rill_stream_call(s, DIR_READ, read_once, &a);
    *nread = a.done;
    return st;
}

RILL_API rill_status rill_write(rill_stream *s, const void *buf, size_t len, size_t *nwritten)
{
    if (!nwritten)
        return rilli_api_error(s, RILL_E_INVALID, "rill_write: nwritten is NULL");
    *nwritten = 0;
    rill_status st = check_io_args(s, "rill_write", buf, len, true);
    if (st == RILL_OK)
        st = check_writable(s, "rill_write");
    if (st != RILL_OK || len == 0)
        return st;
    struct io_args a = { .data = buf, .len = len };
    st = rill_stream_call(s, DIR_WRITE, write_once, &a);
    *nwritten = a.done;
    return st;
}

RILL_API rill_status rill_read_full(rill_stream *s, void *buf, size_t len, size_t *nread)
{
    if (nread)
        *nread = 0;
    rill_status st = check_io_args(s, "rill_read_full", buf, len, false);
    if (st != RILL_OK)
        return st;
    struct io_args a = { .buf = buf, .len = len };
    st = rill_stream_call(s, DIR_READ, read_all, &a);
    if (nread)
        *nread = a.done;
    return st;
}

RILL_API rill_status rill_write_all(rill_stream *s, const void *buf, size_t len, size_t *nwritten)
{
    if (nwritten)
        *nwritten = 0;
    rill_status st = check_io_args(s, "rill_write_all", buf, len, true);
    if (st == RILL_OK)
        st = check_writable(s, "rill_write_all");
    if (st != RILL_OK || len == 0)
        return st;
    struct io_args a = { .data = buf, .len = len };
    st = rill_stream_call(s, DIR_WRITE, write_all, &a);
    if (nwritten)
        *nwritten = a.done;
    return st;
}

RILL_API rill_status rill_writev(rill_stream *s, const struct iovec *iov, size_t iovcnt,
                                 size_t *nwritten)
{
    if (nwritten)
        *nwritten = 0;
    if (!s)
        return RILL_E_INVALID;
    if (!iov && iovcnt > 0)
        return rilli_api_error(s, RILL_E_INVALID, "rill_writev: iov is NULL");
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len > 0)
            return rilli_api_error(s, RILL_E_INVALID, "rill_writev: piece %zu has no buffer", i);
        if (iov[i].iov_len > SIZE_MAX - total)
            return rilli_api_error(s, RILL_E_INVALID, "rill_writev: total length overflows");
        total += iov[i].iov_len;
    }
    rill_status st = check_writable(s, "rill_writev");
    if (st != RILL_OK || total == 0)
        return st;
    struct gather_args a = { iov, iovcnt, 0, 0, 0 };
    st = rill_stream_call(s, DIR_WRITE, writev_all, &a);
    if (nwritten)
        *nwritten = a.done;
    return st;
}

RILL_API rill_status rill_write_str(rill_stream *s, const char *str, size_t *nwritten)
{
    if (nwritten)
        *nwritten = 0;
    if (!str)
        return rilli_api_error(s, RILL_E_INVALID, "rill_write_str: string is NULL");
    return rill_write_all(s, str, strlen(str), nwritten);
}

/* ---- flush, shutdown, close ---- */

/* Flush every layer top-down: each pushes its own bytes into the one below. */
static rill_status flush_chain(rill_stream *s, void *arg)
{
    (void)arg;
    for (rill_stream *l = s; l; l = l->inner) {
        if (!l->ops->flush)
            continue;
        l->may_block = s->may_block;
        rill_status st = l->ops->flush(l);
        if (st != RILL_OK)
            return st < 0 ? rilli_adopt_error(s, l, st) : st;
    }
    return RILL_OK;
}

/*
 * Flush the layers below @p l, on behalf of @p top (which owns the call and its message): the
 * bytes a layer writes while it shuts down or closes (TLS's close_notify, a framing layer's
 * trailer) land in the layer below it and must reach the transport before that layer is shut
 * down or freed in turn.
 */
static rill_status flush_below(rill_stream *top, rill_stream *l)
{
    l->may_block = top->may_block;
    rill_status st = rill_stream_flush_inner(l);
    return st < 0 ? rilli_adopt_error(top, l, st) : st;
}

/*
 * Shut the chain down top-down: each layer's own part (close_notify, FIN), then what that wrote
 * is flushed through every layer below before the next one shuts down. Restartable after a
 * WANT: layers already shut are skipped, and the first flush pushes whatever is still held.
 */
static rill_status shutdown_chain(rill_stream *s, void *arg)
{
    rill_status st = flush_chain(s, arg);
    if (st != RILL_OK)
        return st;
    for (rill_stream *l = s; l; l = l->inner) {
        if (!l->shut_wr && l->ops->shutdown) {
            l->may_block = s->may_block;
            st = l->ops->shutdown(l);
            if (st != RILL_OK)
                return st < 0 ? rilli_adopt_error(s, l, st) : st;
            l->shut_wr = true;
            st = flush_below(s, l);
            if (st != RILL_OK)
                return st;
        }
        l->shut_wr = true;
        if (l->flags & RILL_BORROW)
            break;
    }
    return RILL_OK;
}

RILL_API rill_status rill_flush(rill_stream *s)
{
    if (!s)
        return RILL_E_INVALID;
    return rill_stream_call(s, DIR_WRITE, flush_chain, NULL);
}

RILL_API rill_status rill_shutdown(rill_stream *s)
{
    if (!s)
        return RILL_E_INVALID;
    return rill_stream_call(s, DIR_WRITE, shutdown_chain, NULL);
}

/*
 * Write into @p buf what the describe op says of the first layer from @p top down to (not
 * including) @p stop that counts pending bytes of its own; "" when none does.
 */
size_t rilli_describe_pending(const rill_stream *top, const rill_stream *stop, char *buf,
                              size_t len)
{
    for (const rill_stream *l = top; l && l != stop; l = l->inner) {
        if (!l->ops->pending || l->ops->pending(l) == 0)
            continue;
        if (l->ops->describe)
            return l->ops->describe(l, buf, len);
        return rilli_snprintf(buf, len, "%s", l->ops->name);
    }
    return rilli_snprintf(buf, len, "%s", "");
}

rill_status rilli_refuse_pending_plaintext(rill_stream *s, const char *who)
{
    size_t unread = rill_pending(s);
    if (unread == 0)
        return RILL_OK;
    char holder[128];
    rilli_describe_pending(s, NULL, holder, sizeof holder);
    return rilli_api_error(s, RILL_E_PENDING_DATA,
                           "%s: refusing to start TLS: %zu byte%s received before the upgrade %s "
                           "still unread in %s (plaintext that could be injected, CVE-2011-0411)",
                           who, unread, unread == 1 ? "" : "s", unread == 1 ? "is" : "are", holder);
}

/*
 * The closed layers of a borrowing chain still count pending bytes: read-ahead the borrowed
 * stream will not deliver again, or a byte a layer claimed before it arrived (so the borrowed
 * stream will deliver it). Either way its next reader would not start where the closed layers
 * stopped: say so on the stream that survives.
 */
static void report_dropped(const rill_stream *s, rill_stream *borrowed, size_t dropped)
{
    if (!borrowed)
        return;
    char holder[128];
    rilli_describe_pending(s, borrowed, holder, sizeof holder);
    rilli_api_error(borrowed, RILL_E_PENDING_DATA,
                    "rill_close: %zu pending byte%s in %s did not carry over to the borrowed %s "
                    "stream: its next reader would not start where the closed layers stopped",
                    dropped, dropped == 1 ? "" : "s", holder, borrowed->ops->name);
}

/* rill_close: flush one layer alone, in its closing state. */
static rill_status flush_one(rill_stream *s, void *arg)
{
    (void)arg;
    return s->ops->flush(s);
}

/*
 * What rill_close reports of a closing message (close_notify, a trailer): not sent in time is
 * RILL_E_TIMEOUT, since it is discarded; a peer that has gone could not take it anyway (the
 * close is best effort there, as close(2) is), so that is no error of the close.
 */
static rill_status closing_status(rill_status st)
{
    if (is_want(st))
        return RILL_E_TIMEOUT;
    if (st == RILL_E_CLOSED || st == RILL_E_RESET || st > 0)
        return RILL_OK;
    return st;
}

RILL_API rill_status rill_close(rill_stream *s)
{
    if (!s)
        return RILL_OK;
    rill_status result = rill_stream_call(s, DIR_WRITE, flush_chain, NULL);
    if (is_want(result))
        result = RILL_E_TIMEOUT; /* non-blocking close: what is still held is discarded */
    /*
     * Closing layers that borrow the stream below them while they hold read-ahead drops bytes
     * the borrowed stream will never deliver, and while they count a byte they claimed before
     * reading it leaves one it will: report it rather than misplace bytes silently.
     */
    size_t dropped = 0;
    rill_stream *kept = NULL; /* the stream a borrowing layer leaves open */
    for (rill_stream *l = s; l; l = l->inner) {
        if (l->flags & RILL_BORROW) {
            kept = l->inner;
            dropped = rill_pending(s) - rill_pending(kept);
            break;
        }
    }
    if (dropped > 0 && result == RILL_OK) {
        result = RILL_E_PENDING_DATA;
        report_dropped(s, kept, dropped);
    }
    rill_stream *l = s;
    while (l) {
        rill_stream *next = l->inner;
        bool borrowed = (l->flags & RILL_BORROW) != 0;
        /*
         * The layer's closing message goes out first (rill's TLS layer sends close_notify from
         * its flush op when closing, where the wait for the connection is allowed): after what
         * the layers above said while closing, before what the layers below will say.
         */
        l->closing = true; /* only now: the layers below wait for what this one says */
        if (l->ops->flush && result == RILL_OK)
            result = closing_status(rill_stream_call(l, DIR_WRITE, flush_one, NULL));
        if (l->ops->close) {
            clear_error(l);
            l->ops->close(l);
            /* A closing message its layer could not send without waiting is discarded. */
            if (result == RILL_OK)
                result = closing_status(last_code(l));
            /*
             * Bytes the close op wrote (a trailer) sit in the layer below, which is closed next,
             * or borrowed and left to the caller: push them through first, as the write timeout
             * allows, like the flush above.
             */
            if (next && result == RILL_OK)
                result = closing_status(rill_stream_call(next, DIR_WRITE, flush_chain, NULL));
        }
        rilli_stream_free(l);
        if (borrowed)
            break;
        l = next;
    }
    return result;
}

/* ---- introspection ---- */

RILL_API size_t rill_pending(const rill_stream *s)
{
    size_t total = 0;
    for (const rill_stream *l = s; l; l = l->inner) {
        if (l->ops->pending)
            total += l->ops->pending(l);
    }
    return total;
}

RILL_API rill_status rill_poll_info(rill_stream *s, int *fd, short *events)
{
    if (!s)
        return RILL_E_INVALID;
    if (!fd || !events)
        return rilli_api_error(s, RILL_E_INVALID, "rill_poll_info: fd or events is NULL");
    *events = s->want == RILL_WANT_WRITE ? POLLOUT : POLLIN;
    rill_status st = find_poll(s, fd, events);
    if (st == RILL_E_UNSUPPORTED)
        return rilli_api_error(s, st, "rill_poll_info: the chain has no descriptor");
    return st;
}

RILL_API size_t rill_describe(const rill_stream *s, char *buf, size_t len)
{
    if (buf && len)
        buf[0] = '\0';
    if (!s)
        return rilli_snprintf(buf, len, "(null stream)");
    size_t total = 0;
    for (const rill_stream *l = s; l; l = l->inner) {
        size_t off = total < len ? total : len;
        char *at = buf ? buf + off : NULL;
        size_t room = buf ? len - off : 0;
        if (l != s)
            total += rilli_snprintf(at, room, " > ");
        off = total < len ? total : len;
        at = buf ? buf + off : NULL;
        room = buf ? len - off : 0;
        if (l->ops->describe)
            total += l->ops->describe(l, at, room);
        else
            total += rilli_snprintf(at, room, "%s", l->ops->name);
    }
    if (buf && len && total >= len)
        buf[len - 1] = '\0';
    return total;
}

RILL_API rill_stream *rill_find(rill_stream *s, const char *kind)
{
    if (!kind)
        return NULL;
    for (rill_stream *l = s; l; l = l->inner) {
        if (strcmp(l->ops->name, kind) == 0)
            return l;
    }
    return NULL;
}

RILL_API const char *rill_kind(const rill_stream *s)
{
    return s ? s->ops->name : "";
}

RILL_API int rill_fd(rill_stream *s)
{
    int fd = -1;
    short events = POLLIN;
    if (!s || find_poll(s, &fd, &events) != RILL_OK)
        return -1;
    return fd;
}

RILL_API size_t rill_shrink(rill_stream *s)
{
    size_t released = 0;
    for (rill_stream *l = s; l; l = l->inner) {
        if (l->ops->shrink)
            released += l->ops->shrink(l);
    }
    return released;
}

/* ---- timeouts ---- */

RILL_API rill_status rill_set_timeouts(rill_stream *s, int read_ms, int write_ms)
{
    if (!s)
        return RILL_E_INVALID;
    if (read_ms < RILL_TIMEOUT_NONE || write_ms < RILL_TIMEOUT_NONE) {
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_set_timeouts: timeouts must be -1 (none), 0 or positive ms "
                               "(got %d, %d)",
                               read_ms, write_ms);
    }
    for (rill_stream *l = s; l; l = l->inner) {
        l->read_timeout_ms = read_ms;
        l->write_timeout_ms = write_ms;
    }
    return RILL_OK;
}

RILL_API void rill_get_timeouts(const rill_stream *s, int *read_ms, int *write_ms)
{
    if (read_ms)
        *read_ms = s ? s->read_timeout_ms : RILL_TIMEOUT_NONE;
    if (write_ms)
        *write_ms = s ? s->write_timeout_ms : RILL_TIMEOUT_NONE;
}
