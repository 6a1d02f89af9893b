/* SPDX-License-Identifier: MIT */
/*
 * The buffered decorator: a read-ahead buffer (with peek and unread) and a write-behind buffer
 * over any stream.
 *
 * Both buffers are allocated on first use and released when they empty at the end of a burst
 * (as OpenSSL's SSL_MODE_RELEASE_BUFFERS does with its record buffers): the read buffer when its
 * last byte is taken and the fill that brought it did not fill it (the inner stream had no
 * more), the write buffer when a flush has pushed it all. An idle connection thus costs only the
 * state block, without rill_shrink(), while a bulk transfer keeps its buffers. Bulk transfers
 * also skip the copy: a read big enough to fill half the buffer, or a write that does not fit,
 * goes straight to the inner stream.
 */
#include <poll.h>
#include <string.h>

#include "internal.h"

/* Upper bound of each buffer size given to rill_buffered_new(). */
#define BUFFERED_MAX_SIZE ((size_t)1 << 30)

struct buffered {
    size_t read_size;  /* configured read-ahead size */
    size_t write_size; /* configured write-behind size */

    /* Read-ahead: unread bytes are rbuf[rpos .. rend). ralloc may exceed read_size after
     * rill_unread() pushed back more than fits. */
    unsigned char *rbuf;
    size_t ralloc;
    size_t rpos;
    size_t rend;
    bool rfull; /* the last fill filled the buffer: more may be waiting, keep it */

    /* Write-behind: bytes not yet handed to the inner stream are wbuf[wpos .. wend). */
    unsigned char *wbuf;
    size_t wpos;
    size_t wend;
    bool push_stuck; /* the last pre-read push stopped on a full send path */
};

static const struct rill_stream_ops buffered_ops;

static rill_status ensure_rbuf(rill_stream *s, struct buffered *b)
{
    if (b->rbuf)
        return RILL_OK;
    b->rbuf = rilli_malloc(b->read_size);
    if (!b->rbuf) {
        return rill_stream_error(s, RILL_E_NOMEM, "out of memory (%zu-byte read buffer)",
                                 b->read_size);
    }
    b->ralloc = b->read_size;
    b->rpos = b->rend = 0;
    return RILL_OK;
}

static rill_status ensure_wbuf(rill_stream *s, struct buffered *b)
{
    if (b->wbuf)
        return RILL_OK;
    b->wbuf = rilli_malloc(b->write_size);
    if (!b->wbuf) {
        return rill_stream_error(s, RILL_E_NOMEM, "out of memory (%zu-byte write buffer)",
                                 b->write_size);
    }
    b->wpos = b->wend = 0;
    return RILL_OK;
}

/*
 * Hand held write bytes to the inner stream. Progress is kept across WANT_WRITE, so the call
 * can simply be repeated.
 */
static rill_status push_held(rill_stream *s, struct buffered *b)
{
    while (b->wpos < b->wend) {
        size_t n = 0;
        rill_status st = rill_stream_write_inner(s, b->wbuf + b->wpos, b->wend - b->wpos, &n);
        b->wpos += n;
        if (st != RILL_OK)
            return st;
    }
    b->wpos = b->wend = 0;
    return RILL_OK;
}

/*
 * Read from the inner stream after held write bytes have had their chance to go out. A request
 * still in our write buffer would never be answered, so it is pushed first; but only as far as
 * it goes without waiting: a read must neither block in send() under a deadline nor wait for
 * a peer that stopped reading while its answer is already readable. Push errors stay held for
 * the next flush to report. While bytes are stuck, the read does not block either, and
 * buffered_poll asks for POLLOUT as well, so the core wakes for whichever side can move.
 */
static rill_status read_inner(rill_stream *s, struct buffered *b, void *buf, size_t len, size_t *n)
{
    bool may_block = s->may_block;
    b->push_stuck = false;
    if (b->wend > b->wpos) {
        s->may_block = false;
        b->push_stuck = push_held(s, b) == RILL_WANT_WRITE;
        s->may_block = may_block && !b->push_stuck;
    }
    rill_status st = rill_stream_read_inner(s, buf, len, n);
    s->may_block = may_block;
    return st;
}

static void release_rbuf(struct buffered *b)
{
    rilli_free(b->rbuf);
    b->rbuf = NULL;
    b->ralloc = b->rpos = b->rend = 0;
}

static size_t take_buffered(struct buffered *b, void *buf, size_t len)
{
    size_t held = b->rend - b->rpos;
    size_t n = len < held ? len : held;
    memcpy(buf, b->rbuf + b->rpos, n);
    b->rpos += n;
    if (b->rpos == b->rend) {
        b->rpos = b->rend = 0;
        if (!b->rfull)
            release_rbuf(b); /* the burst is over: do not hold the buffer while idle */
    }
    return n;
}

static rill_status buffered_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct buffered *b = rilli_state(s);
    *n = 0;
    if (b->rend > b->rpos) {
        *n = take_buffered(b, buf, len);
        return RILL_OK;
    }
    if (len >= b->read_size / 2)
        return read_inner(s, b, buf, len, n);
    rill_status st = ensure_rbuf(s, b);
    if (st != RILL_OK)
        return st;
    size_t got = 0;
    st = read_inner(s, b, b->rbuf, b->ralloc, &got);
    if (st != RILL_OK)
        return st;
    b->rpos = 0;
    b->rend = got;
    b->rfull = got == b->ralloc;
    *n = take_buffered(b, buf, len);
    return RILL_OK;
}

static rill_status buffered_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct buffered *b = rilli_state(s);
    *n = 0;
    size_t held = b->wend - b->wpos;
    rill_status st;
    if (len < b->write_size && len <= b->write_size - held) {
        st = ensure_wbuf(s, b);
        if (st != RILL_OK)
            return st;
        if (b->write_size - b->wend < len) {
            memmove(b->wbuf, b->wbuf + b->wpos, held);
            b->wpos = 0;
            b->wend = held;
        }
        memcpy(b->wbuf + b->wend, buf, len);
        b->wend += len;
        *n = len;
        return RILL_OK;
    }
    /* Held bytes go first so the peer sees the bytes in the order they were written. */
    st = push_held(s, b);
    if (st != RILL_OK)
        return st;
    if (len < b->write_size) {
        st = ensure_wbuf(s, b);
        if (st != RILL_OK)
            return st;
        memcpy(b->wbuf, buf, len);
        b->wend = len;
        *n = len;
        return RILL_OK;
    }
    return rill_stream_write_inner(s, buf, len, n);
}

/*
 * A gather: what fits joins the held bytes; otherwise the held bytes and the pieces go down as
 * one gather (a header and a body in one system call on a socket), without copying the pieces.
 */
static rill_status buffered_writev(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n)
{
    struct buffered *b = rilli_state(s);
    *n = 0;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t held = b->wend - b->wpos;
    if (total < b->write_size && total <= b->write_size - held) {
        rill_status st = ensure_wbuf(s, b);
        if (st != RILL_OK)
            return st;
        if (b->write_size - b->wend < total) {
            memmove(b->wbuf, b->wbuf + b->wpos, held);
            b->wpos = 0;
            b->wend = held;
        }
        for (int i = 0; i < iovcnt; i++) {
            memcpy(b->wbuf + b->wend, iov[i].iov_base, iov[i].iov_len);
            b->wend += iov[i].iov_len;
        }
        *n = total;
        return RILL_OK;
    }
    enum { WINDOW = 64 };
    struct iovec win[WINDOW + 1];
    int k = iovcnt < WINDOW ? iovcnt : WINDOW;
    for (;;) {
        held = b->wend - b->wpos;
        int first = held ? 1 : 0;
        if (held) {
            win[0].iov_base = b->wbuf + b->wpos;
            win[0].iov_len = held;
        }
        memcpy(win + first, iov, (size_t)k * sizeof *iov);
        size_t w = 0;
        rill_status st = rill_stream_writev_inner(s, win, k + first, &w);
        size_t from_held = w < held ? w : held;
        b->wpos += from_held;
        if (b->wpos == b->wend)
            b->wpos = b->wend = 0;
        *n = w - from_held;
        if (*n > 0)
            return RILL_OK; /* a failure after progress comes back with the next call */
        if (st != RILL_OK)
            return st;
    }
}

static rill_status buffered_flush(rill_stream *s)
{
    struct buffered *b = rilli_state(s);
    rill_status st = push_held(s, b);
    if (st == RILL_OK && b->wbuf) {
        /* A flush ends a burst of writes: the buffer is empty, do not hold it while idle. */
        rilli_free(b->wbuf);
        b->wbuf = NULL;
    }
    return st;
}

static void buffered_close(rill_stream *s)
{
    struct buffered *b = rilli_state(s);
    rilli_free(b->rbuf);
    rilli_free(b->wbuf);
    b->rbuf = b->wbuf = NULL;
}

static size_t buffered_pending(const rill_stream *s)
{
    const struct buffered *b = rilli_state(s);
    return b->rend - b->rpos;
}

static rill_status buffered_poll(rill_stream *s, int *fd, short *events)
{
    const struct buffered *b = rilli_state(s);
    (void)fd; /* the transport below names the descriptor */
    if (b->push_stuck && b->wend > b->wpos)
        *events |= POLLOUT;
    return RILL_OK;
}

static size_t buffered_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct buffered *b = rilli_state(s);
    if (b->read_size == b->write_size)
        return rilli_snprintf(buf, len, "buffered(%zu)", b->read_size);
    return rilli_snprintf(buf, len, "buffered(r=%zu w=%zu)", b->read_size, b->write_size);
}

static size_t buffered_shrink(rill_stream *s)
{
    struct buffered *b = rilli_state(s);
    size_t released = 0;
    if (b->rbuf && b->rpos == b->rend) {
        released += b->ralloc;
        release_rbuf(b);
    }
    if (b->wbuf && b->wpos == b->wend) {
        released += b->write_size;
        rilli_free(b->wbuf);
        b->wbuf = NULL;
        b->wpos = b->wend = 0;
    }
    return released;
}

static const struct rill_stream_ops buffered_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_BUFFERED,
    .read = buffered_read,
    .write = buffered_write,
    .writev = buffered_writev,
    .flush = buffered_flush,
    .close = buffered_close,
    .pending = buffered_pending,
    .poll = buffered_poll,
    .describe = buffered_describe,
    .shrink = buffered_shrink,
};

size_t rilli_buffered_read_size(const rill_stream *s)
{
    if (!s || rilli_ops(s) != &buffered_ops)
        return 0;
    return ((const struct buffered *)rilli_state(s))->read_size;
}

RILL_API rill_status rill_buffered_new(rill_stream *inner, size_t read_size, size_t write_size,
                                       unsigned flags, rill_stream **out)
{
    if (!inner)
        return RILL_E_INVALID;
    if (!out)
        return rilli_api_error(inner, RILL_E_INVALID, "rill_buffered_new: out is NULL");
    if (read_size == 0 || read_size > BUFFERED_MAX_SIZE) {
        return rilli_api_error(inner, RILL_E_INVALID,
                               "rill_buffered_new: read size %zu out of range (1 .. %zu)",
                               read_size, BUFFERED_MAX_SIZE);
    }
    if (write_size == 0 || write_size > BUFFERED_MAX_SIZE) {
        return rilli_api_error(inner, RILL_E_INVALID,
                               "rill_buffered_new: write size %zu out of range (1 .. %zu)",
                               write_size, BUFFERED_MAX_SIZE);
    }
    rill_stream *s = NULL;
    rill_status st = rill_stream_new(&buffered_ops, sizeof(struct buffered), inner, flags, &s);
    if (st != RILL_OK)
        return st;
    struct buffered *b = rilli_state(s);
    b->read_size = read_size;
    b->write_size = write_size;
    *out = s;
    return RILL_OK;
}

static struct buffered *buffered_of(rill_stream *s, const char *fn)
{
    if (rilli_ops(s) == &buffered_ops)
        return rilli_state(s);
    rilli_api_error(s, RILL_E_INVALID, "%s: not a buffered stream (top layer is %s)", fn,
                    rill_kind(s));
    return NULL;
}

struct peek_req {
    size_t want;
    const void **data;
    size_t *avail;
};

static rill_status peek_attempt(rill_stream *s, void *arg)
{
    struct peek_req *req = arg;
    struct buffered *b = rilli_state(s);
    for (;;) {
        size_t held = b->rend - b->rpos;
        if (held >= req->want) {
            *req->data = b->rbuf + b->rpos;
            *req->avail = held;
            return RILL_OK;
        }
        rill_status st = ensure_rbuf(s, b);
        if (st != RILL_OK)
            return st;
        /* want <= read_size <= ralloc, so moving the held bytes to the front makes room. */
        if (b->ralloc - b->rpos < req->want) {
            memmove(b->rbuf, b->rbuf + b->rpos, held);
            b->rpos = 0;
            b->rend = held;
        }
        size_t got = 0;
        st = read_inner(s, b, b->rbuf + b->rend, b->ralloc - b->rend, &got);
        if (st == RILL_EOF) {
            *req->data = b->rbuf + b->rpos;
            *req->avail = held;
            return RILL_EOF;
        }
        if (st != RILL_OK)
            return st;
        b->rend += got;
        b->rfull = b->rend == b->ralloc;
    }
}

RILL_API rill_status rill_peek(rill_stream *s, size_t want, const void **data, size_t *avail)
{
    if (!s)
        return RILL_E_INVALID;
    struct buffered *b = buffered_of(s, "rill_peek");
    if (!b)
        return RILL_E_INVALID;
    if (!data || !avail)
        return rilli_api_error(s, RILL_E_INVALID, "rill_peek: data or avail is NULL");
    *data = NULL;
    *avail = 0;
    if (want == 0 || want > b->read_size) {
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_peek: want %zu out of range (1 .. read size %zu)", want,
                               b->read_size);
    }
    struct peek_req req = { want, data, avail };
    /* Enough bytes already buffered: answer without touching the clock or the inner stream. */
    if (b->rend - b->rpos >= want)
        return peek_attempt(s, &req);
    return rill_stream_call(s, 0, peek_attempt, &req);
}

RILL_API rill_status rill_unread(rill_stream *s, const void *data, size_t len)
{
    if (!s)
        return RILL_E_INVALID;
    struct buffered *b = buffered_of(s, "rill_unread");
    if (!b)
        return RILL_E_INVALID;
    if (!data)
        return rilli_api_error(s, RILL_E_INVALID, "rill_unread: data is NULL");
    if (len == 0)
        return RILL_OK;
    if (len <= b->rpos) {
        b->rpos -= len;
        memmove(b->rbuf + b->rpos, data, len);
        return RILL_OK;
    }
    size_t held = b->rend - b->rpos;
    if (len > SIZE_MAX - held)
        return rill_stream_error(s, RILL_E_NOMEM, "unread of %zu bytes is too large", len);
    size_t total = held + len;
    uintptr_t at = (uintptr_t)data, lo = (uintptr_t)b->rbuf;
    bool aliases = b->rbuf && at >= lo && at < lo + b->ralloc;
    if (b->rbuf && total <= b->ralloc && !aliases) {
        memmove(b->rbuf + len, b->rbuf + b->rpos, held);
        memcpy(b->rbuf, data, len);
        b->rpos = 0;
        b->rend = total;
        return RILL_OK;
    }
    /* A fresh block rather than realloc: the held bytes move anyway, and data may point into
     * the old buffer (a peeked range given back). */
    size_t cap = total > b->read_size ? total : b->read_size;
    unsigned char *grown = rilli_malloc(cap);
    if (!grown) {
        return rill_stream_error(s, RILL_E_NOMEM, "out of memory (unread of %zu bytes)", len);
    }
    memcpy(grown, data, len);
    if (b->rbuf)
        memcpy(grown + len, b->rbuf + b->rpos, held);
    rilli_free(b->rbuf);
    b->rbuf = grown;
    b->ralloc = cap;
    b->rpos = 0;
    b->rend = total;
    return RILL_OK;
}
