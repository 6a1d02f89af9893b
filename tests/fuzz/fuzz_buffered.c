/* SPDX-License-Identifier: MIT */
/*
 * fuzz_buffered: the buffered decorator over the memory transport, driven through a mix of
 * rill_read, rill_read_full, rill_peek, rill_unread (of bytes just read, of bytes inside a peeked
 * range, and of new bytes), the big-endian readers, writes, flushes and rill_shrink, blocking or
 * non-blocking (injected WANTs), with arbitrary read sizes.
 *
 * Header: [0] 0x01 non-blocking with WANTs, 0x02 filler bursts, 0x04 large read buffer;
 * [1] read size; [2] write size. Control bytes choose the operations and read pieces.
 *
 * A model holds the bytes the stream owes: those given back with rill_unread, in order, then the
 * bytes served by the transport and not yet read. Every read and peek must return exactly the
 * front of that, rill_pending() must equal its length after every call, and a flush must leave
 * every accepted write byte at the transport.
 */
#include <string.h>

#include "fuzz.h"

#define MAX_OPS     4096
#define RECENT_SIZE 512

struct model {
    rill_stream *s;
    struct fz_input *in;
    size_t read_size;
    bool nonblocking;
    uint8_t *back; /* bytes given back with rill_unread, front first */
    size_t back_len;
    size_t back_cap;
    size_t pos; /* next transport byte owed */
    const uint8_t *log;
    size_t served;
    uint8_t recent[RECENT_SIZE]; /* the latest bytes read, for giving back */
    size_t recent_len;
    size_t accepted; /* bytes accepted by writes */
};

static void settle(struct model *m)
{
    m->log = fz_mem_log(m->s, &m->served);
}

static size_t owed(const struct model *m)
{
    return m->back_len + (m->served - m->pos);
}

/* The @p i-th byte the stream owes. */
static uint8_t owed_at(const struct model *m, size_t i)
{
    return i < m->back_len ? m->back[i] : m->log[m->pos + i - m->back_len];
}

/* Check that @p p[0 .. n) is the front of what is owed. */
static void check_front(const struct model *m, const uint8_t *p, size_t n, const char *op)
{
    FZ_CHECK(n <= owed(m), "%s: %zu bytes, only %zu owed", op, n, owed(m));
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(p[i] == owed_at(m, i), "%s: byte %zu is 0x%02x, owed 0x%02x", op, i,
                 (unsigned)p[i], (unsigned)owed_at(m, i));
}

static void remember(struct model *m, const uint8_t *p, size_t n)
{
    if (n >= RECENT_SIZE) {
        memcpy(m->recent, p + n - RECENT_SIZE, RECENT_SIZE);
        m->recent_len = RECENT_SIZE;
        return;
    }
    if (m->recent_len + n > RECENT_SIZE) {
        size_t drop = m->recent_len + n - RECENT_SIZE;
        memmove(m->recent, m->recent + drop, m->recent_len - drop);
        m->recent_len -= drop;
    }
    memcpy(m->recent + m->recent_len, p, n);
    m->recent_len += n;
}

/* @p p[0 .. n) was read: check it and drop it from what is owed. */
static void consume(struct model *m, const uint8_t *p, size_t n, const char *op)
{
    check_front(m, p, n, op);
    size_t from_back = n < m->back_len ? n : m->back_len;
    if (from_back > 0) {
        memmove(m->back, m->back + from_back, m->back_len - from_back);
        m->back_len -= from_back;
    }
    m->pos += n - from_back;
    remember(m, p, n);
}

/* rill_unread(p, n) succeeded: those bytes are owed first now. */
static void given_back(struct model *m, const uint8_t *copy, size_t n)
{
    if (m->back_len + n > m->back_cap) {
        size_t cap = m->back_cap ? m->back_cap : 256;
        while (cap < m->back_len + n)
            cap *= 2;
        uint8_t *grown = realloc(m->back, cap);
        FZ_CHECK(grown != NULL, "out of memory");
        m->back = grown;
        m->back_cap = cap;
    }
    memmove(m->back + n, m->back, m->back_len);
    memcpy(m->back, copy, n);
    m->back_len += n;
}

static bool is_wait(const struct model *m, rill_status st)
{
    return m->nonblocking && (st == RILL_WANT_READ || st == RILL_WANT_WRITE);
}

static void check_status(const struct model *m, rill_status st, const char *op)
{
    if (st == RILL_EOF) {
        FZ_CHECK(owed(m) == 0, "%s: RILL_EOF with %zu bytes owed", op, owed(m));
        return;
    }
    FZ_CHECK(st == RILL_OK || is_wait(m, st), "%s: status %d (%s): %s", op, (int)st,
             rill_strerror(st), rill_errmsg(m->s));
}

static void unread_checked(struct model *m, const void *p, size_t n, const char *op)
{
    uint8_t *copy = malloc(n);
    FZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, p, n); /* p may point into the stream's own buffer */
    rill_status st = rill_unread(m->s, p, n);
    FZ_CHECK(st == RILL_OK, "%s: rill_unread: %d (%s): %s", op, (int)st, rill_strerror(st),
             rill_errmsg(m->s));
    given_back(m, copy, n);
    free(copy);
}

static void op_peek(struct model *m)
{
    size_t want = 1 + fz_ctl16(m->in) % m->read_size;
    const void *data = NULL;
    size_t avail = 0;
    rill_status st = rill_peek(m->s, want, &data, &avail);
    settle(m);
    if (st == RILL_OK || st == RILL_EOF) {
        check_front(m, data, avail, "rill_peek");
        if (st == RILL_OK)
            FZ_CHECK(avail >= want, "rill_peek: %zu bytes for %zu", avail, want);
        else
            FZ_CHECK(avail < want && avail == owed(m), "rill_peek: EOF with %zu of %zu owed",
                     avail, owed(m));
    } else {
        check_status(m, st, "rill_peek");
    }
    uint8_t c = fz_ctl(m->in);
    if (avail > 0 && (c & 1)) {
        /* Give back a piece of the peeked range itself (it aliases the read buffer). */
        size_t off = (c >> 1) % avail;
        size_t n = 1 + fz_ctl(m->in) % (avail - off);
        unread_checked(m, (const uint8_t *)data + off, n, "unread of a peeked range");
    }
}

static void op_read_be(struct model *m, uint8_t c)
{
    size_t width = (size_t)2 << (c % 3);
    if (m->read_size < width)
        return; /* without whole-value reads a stop inside a value loses an unknown count */
    uint64_t v = 0;
    rill_status st;
    if (width == 2) {
        uint16_t x = 0;
        st = rill_read_u16be(m->s, &x);
        v = x;
    } else if (width == 4) {
        uint32_t x = 0;
        st = rill_read_u32be(m->s, &x);
        v = x;
    } else {
        st = rill_read_u64be(m->s, &v);
    }
    settle(m);
    if (st == RILL_OK) {
        uint8_t b[8];
        for (size_t i = 0; i < width; i++)
            b[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
        consume(m, b, width, "rill_read_uNbe");
    } else if (st == RILL_E_PROTOCOL) {
        /* Ended inside the value: what there was is consumed. */
        size_t left = owed(m);
        FZ_CHECK(left > 0 && left < width, "rill_read_uNbe: PROTOCOL with %zu owed: %s", left,
                 rill_errmsg(m->s));
        uint8_t b[8];
        for (size_t i = 0; i < left; i++)
            b[i] = owed_at(m, i);
        consume(m, b, left, "rill_read_uNbe");
    } else {
        check_status(m, st, "rill_read_uNbe");
    }
}

static void step(struct model *m, uint8_t c)
{
    uint8_t buf[1024];
    size_t n = 0;
    rill_status st;
    switch (c % 8) {
    case 0: {
        size_t want = 1 + fz_ctl(m->in) * 4u;
        st = rill_read(m->s, buf, want, &n);
        settle(m);
        if (st == RILL_OK) {
            FZ_CHECK(n >= 1 && n <= want, "rill_read: %zu bytes for %zu", n, want);
            consume(m, buf, n, "rill_read");
        } else {
            FZ_CHECK(n == 0, "rill_read: %zu bytes with status %d", n, (int)st);
            check_status(m, st, "rill_read");
        }
        break;
    }
    case 1:
        op_peek(m);
        break;
    case 2:
        if (m->recent_len > 0) {
            n = 1 + fz_ctl(m->in) % m->recent_len;
            unread_checked(m, m->recent + m->recent_len - n, n, "unread of bytes read");
            m->recent_len -= n;
        }
        break;
    case 3:
        n = 1 + fz_ctl(m->in) % 16;
        for (size_t i = 0; i < n; i++)
            buf[i] = fz_ctl(m->in);
        unread_checked(m, buf, n, "unread of new bytes");
        break;
    case 4:
        op_read_be(m, (uint8_t)(c >> 3));
        break;
    case 5: {
        size_t len = 1 + fz_ctl(m->in) * 2u;
        memset(buf, 'w', len);
        st = rill_write(m->s, buf, len, &n);
        FZ_CHECK(st == RILL_OK || is_wait(m, st), "rill_write: %d (%s): %s", (int)st,
                 rill_strerror(st), rill_errmsg(m->s));
        m->accepted += n;
        if (c & 0x80) {
            st = rill_flush(m->s);
            FZ_CHECK(st == RILL_OK || is_wait(m, st), "rill_flush: %d (%s): %s", (int)st,
                     rill_strerror(st), rill_errmsg(m->s));
            if (st == RILL_OK)
                FZ_CHECK(fz_mem_written(m->s) == m->accepted,
                         "flush: %zu bytes at the transport, %zu accepted",
                         fz_mem_written(m->s), m->accepted);
        }
        settle(m);
        break;
    }
    case 6:
        (void)rill_shrink(m->s);
        break;
    default: {
        size_t want = 1 + fz_ctl(m->in) * 2u;
        st = rill_read_full(m->s, buf, want, &n);
        settle(m);
        FZ_CHECK(n <= want, "rill_read_full: %zu bytes for %zu", n, want);
        consume(m, buf, n, "rill_read_full");
        if (st == RILL_OK)
            FZ_CHECK(n == want, "rill_read_full: RILL_OK with %zu of %zu bytes", n, want);
        else
            check_status(m, st, "rill_read_full");
        break;
    }
    }
    size_t held = rill_pending(m->s);
    FZ_CHECK(held == owed(m), "rill_pending %zu, model owes %zu", held, owed(m));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in;
    fz_split(&in, data, size, 3);
    struct model *m = calloc(1, sizeof *m);
    FZ_CHECK(m != NULL, "out of memory");
    m->in = &in;
    uint8_t h = in.hdr[0];
    m->nonblocking = (h & 0x01) != 0;
    m->read_size = (h & 0x04) ? 1 + (size_t)in.hdr[1] * 257 : 1 + (size_t)in.hdr[1];
    size_t write_size = 1 + in.hdr[2] % 64u;

    struct fz_mem_opts mo = { m->nonblocking, (h & 0x02) != 0, 100000 };
    rill_stream *t = NULL;
    FZ_CHECK(fz_mem_new(&in, &mo, &t) == RILL_OK, "fz_mem_new");
    FZ_CHECK(rill_buffered_new(t, m->read_size, write_size, 0, &m->s) == RILL_OK,
             "rill_buffered_new: %s", rill_errmsg(t));
    if (m->nonblocking)
        FZ_CHECK(rill_set_timeouts(m->s, 0, 0) == RILL_OK, "rill_set_timeouts");
    settle(m);

    for (int i = 0; i < MAX_OPS && in.ictl < in.nctl; i++)
        step(m, fz_ctl(&in));
    /* Drain: everything owed must come, then the end. */
    size_t bound = 2 * (size + 64) + m->back_len;
    rill_status st;
    for (size_t i = 0;; i++) {
        FZ_CHECK(i < bound, "rill_read makes no progress (%zu bytes owed)", owed(m));
        uint8_t buf[4096];
        size_t n = 0;
        st = rill_read(m->s, buf, sizeof buf, &n);
        settle(m);
        if (st == RILL_OK)
            consume(m, buf, n, "drain");
        else
            check_status(m, st, "drain");
        if (st == RILL_EOF)
            break;
    }
    st = rill_close(m->s);
    FZ_CHECK(st == RILL_OK || (m->nonblocking && st == RILL_E_TIMEOUT), "rill_close: %d (%s)",
             (int)st, rill_strerror(st));
    free(m->back);
    free(m);
    return 0;
}
