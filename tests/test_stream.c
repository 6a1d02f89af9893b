/* SPDX-License-Identifier: MIT */
/*
 * The stream core (src/stream.c, error.c, alloc.c) through the public API and through small
 * layers written here against <rill/stream.h>: a socket transport "raw", a pass-through "pass"
 * (every op NULL), a counting decorator "tag", a failing decorator "custom" and a descriptor-less
 * transport "mem". Everything runs over real socketpairs and loopback TCP.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

/* ---- a log of layer ops, to check the order the core calls them in ---- */

static char oplog[1024];

static void oplog_add(const char *fmt, ...) RILL_PRINTF(1, 2);

static void oplog_add(const char *fmt, ...)
{
    size_t used = strlen(oplog);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(oplog + used, sizeof oplog - used, fmt, ap);
    va_end(ap);
    used = strlen(oplog);
    if (used + 1 < sizeof oplog) {
        oplog[used] = ' ';
        oplog[used + 1] = '\0';
    }
}

/* ---- "raw": a transport over one connected socket ---- */

struct raw_state {
    int fd;
    int last_may_block; /* rill_stream_may_block() during the last read or write */
    size_t pending;     /* what the pending op reports */
};

static rill_status raw_fail(rill_stream *s, int e, const char *what)
{
    rill_status code = e == ECONNRESET ? RILL_E_RESET : e == EPIPE ? RILL_E_CLOSED : RILL_E_IO;
    return rill_stream_error_sys(s, code, e, "%s failed", what);
}

static rill_status raw_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct raw_state *st = rill_stream_state(s);
    st->last_may_block = rill_stream_may_block(s);
    ssize_t r = recv(st->fd, buf, len, st->last_may_block ? 0 : MSG_DONTWAIT);
    if (r > 0) {
        *n = (size_t)r;
        return RILL_OK;
    }
    if (r == 0)
        return RILL_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return RILL_WANT_READ;
    return raw_fail(s, errno, "recv");
}

static rill_status raw_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct raw_state *st = rill_stream_state(s);
    st->last_may_block = rill_stream_may_block(s);
    ssize_t r = send(st->fd, buf, len, MSG_NOSIGNAL | (st->last_may_block ? 0 : MSG_DONTWAIT));
    if (r > 0) {
        *n = (size_t)r;
        return RILL_OK;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return RILL_WANT_WRITE;
    return raw_fail(s, r < 0 ? errno : EIO, "send");
}

static rill_status raw_shutdown(rill_stream *s)
{
    struct raw_state *st = rill_stream_state(s);
    oplog_add("shutdown:raw");
    if (shutdown(st->fd, SHUT_WR) < 0)
        return raw_fail(s, errno, "shutdown");
    return RILL_OK;
}

static void raw_close(rill_stream *s)
{
    struct raw_state *st = rill_stream_state(s);
    oplog_add("close:raw");
    close(st->fd);
    st->fd = -1;
}

static size_t raw_pending(const rill_stream *s)
{
    return ((const struct raw_state *)rill_stream_state(s))->pending;
}

static rill_status raw_poll(rill_stream *s, int *fd, short *events)
{
    (void)events;
    *fd = ((struct raw_state *)rill_stream_state(s))->fd;
    return RILL_OK;
}

static size_t raw_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct raw_state *st = rill_stream_state(s);
    return (size_t)snprintf(buf, len, "raw(fd=%d)", st->fd);
}

static const struct rill_stream_ops raw_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "raw",
    .read = raw_read,
    .write = raw_write,
    .shutdown = raw_shutdown,
    .close = raw_close,
    .pending = raw_pending,
    .poll = raw_poll,
    .describe = raw_describe,
};

static rill_stream *raw_new(int fd)
{
    rill_stream *s = NULL;
    rill_status st = rill_stream_new(&raw_ops, sizeof(struct raw_state), NULL, 0, &s);
    ck_assert_msg(st == RILL_OK, "rill_stream_new(raw): %s", rill_strerror(st));
    ck_assert_ptr_nonnull(s);
    ((struct raw_state *)rill_stream_state(s))->fd = fd;
    return s;
}

static struct raw_state *raw_of(rill_stream *s)
{
    rill_stream *r = rill_find(s, "raw");
    ck_assert_ptr_nonnull(r);
    return rill_stream_state(r);
}

/* ---- pass-through decorators: a name and nothing else ---- */

static const struct rill_stream_ops pass_ops = { .version = RILL_STREAM_OPS_VERSION,
                                                 .name = "pass" };
static const struct rill_stream_ops outer_ops = { .version = RILL_STREAM_OPS_VERSION,
                                                  .name = "outer" };

static rill_stream *wrap(const struct rill_stream_ops *ops, rill_stream *inner, unsigned flags)
{
    rill_stream *s = NULL;
    rill_status st = rill_stream_new(ops, 0, inner, flags, &s);
    ck_assert_msg(st == RILL_OK, "rill_stream_new(%s): %s: %s", ops->name, rill_strerror(st),
                  rill_errmsg(inner));
    return s;
}

/* ---- "tag": a decorator that reads and writes through the inner stream and logs its ops ---- */

struct tag_state {
    char tag;
    size_t nread;
    size_t nwritten;
    size_t pending;
    size_t shrinkable;
    rill_status flush_result; /* what flush returns (RILL_OK normally) */
};

static rill_status tag_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct tag_state *st = rill_stream_state(s);
    rill_status r = rill_stream_read_inner(s, buf, len, n);
    if (r == RILL_OK)
        st->nread += *n;
    return r;
}

static rill_status tag_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct tag_state *st = rill_stream_state(s);
    rill_status r = rill_stream_write_inner(s, buf, len, n);
    if (r == RILL_OK)
        st->nwritten += *n;
    return r;
}

static rill_status tag_flush(rill_stream *s)
{
    struct tag_state *st = rill_stream_state(s);
    oplog_add("flush:%c", st->tag);
    if (st->flush_result < 0)
        return rill_stream_error(s, st->flush_result, "cannot flush %c", st->tag);
    return st->flush_result;
}

static rill_status tag_shutdown(rill_stream *s)
{
    oplog_add("shutdown:%c", ((struct tag_state *)rill_stream_state(s))->tag);
    return RILL_OK;
}

static void tag_close(rill_stream *s)
{
    oplog_add("close:%c", ((struct tag_state *)rill_stream_state(s))->tag);
}

static size_t tag_pending(const rill_stream *s)
{
    return ((const struct tag_state *)rill_stream_state(s))->pending;
}

static size_t tag_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct tag_state *st = rill_stream_state(s);
    return (size_t)snprintf(buf, len, "tag(%c read=%zu)", st->tag, st->nread);
}

static size_t tag_shrink(rill_stream *s)
{
    struct tag_state *st = rill_stream_state(s);
    size_t n = st->shrinkable;
    st->shrinkable = 0;
    return n;
}

static const struct rill_stream_ops tag_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "tag",
    .read = tag_read,
    .write = tag_write,
    .flush = tag_flush,
    .shutdown = tag_shutdown,
    .close = tag_close,
    .pending = tag_pending,
    .describe = tag_describe,
    .shrink = tag_shrink,
};

static rill_stream *tag_new(rill_stream *inner, char tag, unsigned flags)
{
    rill_stream *s = NULL;
    rill_status st = rill_stream_new(&tag_ops, sizeof(struct tag_state), inner, flags, &s);
    ck_assert_msg(st == RILL_OK, "rill_stream_new(tag): %s", rill_strerror(st));
    ((struct tag_state *)rill_stream_state(s))->tag = tag;
    return s;
}

static struct tag_state *tag_of(rill_stream *s)
{
    ck_assert_ptr_eq(rill_stream_ops_of(s), &tag_ops);
    return rill_stream_state(s);
}

/* ---- "custom": a decorator whose reads and writes fail ---- */

static rill_status custom_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    (void)buf;
    (void)len;
    (void)n;
    return rill_stream_error(s, RILL_E_PROTOCOL, "bad frame %d", 7);
}

static rill_status custom_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    (void)buf;
    (void)n;
    return rill_stream_error_sys(s, RILL_E_IO, EIO, "cannot frame %zu bytes", len);
}

static const struct rill_stream_ops custom_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "custom",
    .read = custom_read,
    .write = custom_write,
};

/* ---- "mem": a transport without a descriptor, moving at most `chunk` bytes per call ---- */

struct mem_state {
    const char *data;
    size_t len;
    size_t pos;
    size_t chunk;
    int starve; /* reads return RILL_WANT_READ (data "not there yet") */
    char out[64];
    size_t outlen;
    int writes; /* write ops called */
};

static rill_status mem_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct mem_state *st = rill_stream_state(s);
    if (st->starve)
        return RILL_WANT_READ;
    if (st->pos == st->len)
        return RILL_EOF;
    size_t k = st->len - st->pos;
    if (k > st->chunk)
        k = st->chunk;
    if (k > len)
        k = len;
    memcpy(buf, st->data + st->pos, k);
    st->pos += k;
    *n = k;
    return RILL_OK;
}

static rill_status mem_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct mem_state *st = rill_stream_state(s);
    st->writes++;
    size_t room = sizeof st->out - st->outlen;
    if (room == 0)
        return rill_stream_error(s, RILL_E_CLOSED, "sink full after %zu bytes", st->outlen);
    size_t k = len < st->chunk ? len : st->chunk;
    if (k > room)
        k = room;
    memcpy(st->out + st->outlen, buf, k);
    st->outlen += k;
    *n = k;
    return RILL_OK;
}

static const struct rill_stream_ops mem_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "mem",
    .read = mem_read,
    .write = mem_write,
};

static rill_stream *mem_new(const char *data, size_t chunk)
{
    rill_stream *s = NULL;
    ck_assert_int_eq(rill_stream_new(&mem_ops, sizeof(struct mem_state), NULL, 0, &s), RILL_OK);
    struct mem_state *st = rill_stream_state(s);
    st->data = data;
    st->len = strlen(data);
    st->chunk = chunk;
    return s;
}

/* ---- a counting allocator that can fail on demand ---- */

static long alloc_calls;   /* allocation attempts (malloc and realloc) */
static long alloc_live;    /* blocks handed out and not yet freed */
static long alloc_fail_at; /* 0: never fail; n > 0: fail the n-th attempt; -1: fail all */

static int alloc_fails(void)
{
    alloc_calls++;
    return alloc_fail_at < 0 || alloc_calls == alloc_fail_at;
}

static void *t_alloc(size_t n)
{
    if (alloc_fails())
        return NULL;
    void *p = malloc(n);
    if (p)
        alloc_live++;
    return p;
}

static void *t_realloc(void *p, size_t n)
{
    if (alloc_fails())
        return NULL;
    void *q = realloc(p, n);
    if (q && !p)
        alloc_live++;
    return q;
}

static void t_free(void *p)
{
    if (p)
        alloc_live--;
    free(p);
}

static void use_counting_allocator(long fail_at)
{
    alloc_calls = 0;
    alloc_fail_at = fail_at;
    rill_set_allocator(t_alloc, t_realloc, t_free);
}

/* ---- fixture ---- */

static void setup(void)
{
    oplog[0] = '\0';
    alloc_calls = alloc_live = alloc_fail_at = 0;
}

static void teardown(void)
{
    rill_set_allocator(NULL, NULL, NULL);
    rt_watchdog(0, NULL);
}

/* An fd transport over one end of a fresh socketpair; the other end is returned in *peer. */
static rill_stream *fd_stream(int *peer, int *own_fd)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_fd_new(sv[0], sv[0], RILL_FD_OWN, &s, &err);
    ck_assert_msg(st == RILL_OK, "rill_fd_new: %s", err.msg);
    *peer = sv[1];
    if (own_fd)
        *own_fd = sv[0];
    return s;
}

/* Raw bytes from a peer socket to a stream: check they arrive through the chain. */
static void expect_from_peer(int peer, rill_stream *s, const char *text)
{
    size_t len = strlen(text);
    ck_assert_int_eq(send(peer, text, len, MSG_NOSIGNAL), (ssize_t)len);
    char buf[256];
    size_t n = 0;
    rill_status st = rill_read_full(s, buf, len, &n);
    ck_assert_msg(st == RILL_OK, "read_full: %s: %s", rill_strerror(st), rill_errmsg(s));
    ck_assert_mem_eq(buf, text, len);
}

/* Bytes written to a stream arrive at the raw peer socket. */
static void expect_at_peer(rill_stream *s, int peer, const char *text)
{
    size_t len = strlen(text);
    rill_status st = rill_write_all(s, text, len, NULL);
    ck_assert_msg(st == RILL_OK, "write_all: %s: %s", rill_strerror(st), rill_errmsg(s));
    ck_assert_int_eq(rill_flush(s), RILL_OK);
    char buf[256];
    size_t got = 0;
    while (got < len) {
        ssize_t r = recv(peer, buf + got, len - got, 0);
        ck_assert_msg(r > 0, "peer recv: %zd (%s)", r, strerror(errno));
        got += (size_t)r;
    }
    ck_assert_mem_eq(buf, text, len);
}

/* ================================================================================================
 * Library
 */

START_TEST(test_version)
{
    const char *v = rill_version();
    ck_assert_ptr_nonnull(v);
    ck_assert_msg(v[0] != '\0', "empty version");
    int dots = 0, digits = 0;
    for (const char *p = v; *p; p++) {
        if (*p == '.') {
            ck_assert_msg(digits > 0, "empty component in version \"%s\"", v);
            dots++;
            digits = 0;
        } else {
            ck_assert_msg(*p >= '0' && *p <= '9', "version \"%s\" has '%c'", v, *p);
            digits++;
        }
    }
    ck_assert_msg(dots == 2 && digits > 0, "version \"%s\" is not MAJOR.MINOR.PATCH", v);
}
END_TEST

START_TEST(test_strerror)
{
    enum { FIRST = RILL_E_PROXY, LAST = RILL_WANT_WRITE };
    const char *texts[LAST - FIRST + 1];
    for (int c = FIRST; c <= LAST; c++) {
        const char *t = rill_strerror((rill_status)c);
        ck_assert_msg(t != NULL && t[0] != '\0', "rill_strerror(%d) is empty", c);
        texts[c - FIRST] = t;
    }
    for (int a = FIRST; a <= LAST; a++) {
        for (int b = a + 1; b <= LAST; b++) {
            ck_assert_msg(strcmp(texts[a - FIRST], texts[b - FIRST]) != 0,
                          "rill_strerror(%d) == rill_strerror(%d) == \"%s\"", a, b,
                          texts[a - FIRST]);
        }
    }
    /* Unknown codes still give text, and not the text of a real status. */
    const int unknown[] = { 4, FIRST - 1, 1000, -1000, INT_MIN, INT_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *t = rill_strerror((rill_status)unknown[i]);
        ck_assert_msg(t != NULL && t[0] != '\0', "rill_strerror(%d) is empty", unknown[i]);
        for (int c = FIRST; c <= LAST; c++)
            ck_assert_str_ne(t, texts[c - FIRST]);
    }
    ck_assert_pstr_eq(rill_strerror(RILL_E_REFUSED), "connection refused");
}
END_TEST

/* ================================================================================================
 * Argument checks at the public boundary
 */

struct invalid_case {
    const char *what;
    int on_stream;      /* the call gets a live stream, which must record the message */
    const char *needle; /* in rill_errmsg() when on_stream */
};

static const struct invalid_case invalid_cases[] = {
    { "rill_read(NULL stream)", 0, NULL },
    { "rill_read(NULL buf)", 1, "rill_read: buffer is NULL" },
    { "rill_read(len 0)", 1, "rill_read: length is 0" },
    { "rill_read(NULL nread)", 1, "rill_read: nread is NULL" },
    { "rill_write(NULL stream)", 0, NULL },
    { "rill_write(NULL buf, len 5)", 1, "rill_write: buffer is NULL" },
    { "rill_write(NULL nwritten)", 1, "rill_write: nwritten is NULL" },
    { "rill_read_full(NULL buf)", 1, "rill_read_full: buffer is NULL" },
    { "rill_read_full(len 0)", 1, "rill_read_full: length is 0" },
    { "rill_read_full(NULL stream)", 0, NULL },
    { "rill_write_all(NULL buf, len 3)", 1, "rill_write_all: buffer is NULL" },
    { "rill_write_all(NULL stream)", 0, NULL },
    { "rill_write_str(NULL str)", 1, "rill_write_str: string is NULL" },
    { "rill_write_str(NULL stream)", 0, NULL },
    { "rill_flush(NULL)", 0, NULL },
    { "rill_shutdown(NULL)", 0, NULL },
    { "rill_poll_info(NULL stream)", 0, NULL },
    { "rill_poll_info(NULL fd)", 1, "rill_poll_info: fd or events is NULL" },
    { "rill_poll_info(NULL events)", 1, "rill_poll_info: fd or events is NULL" },
    { "rill_set_timeouts(NULL)", 0, NULL },
    { "rill_set_timeouts(-2, 0)", 1, "(got -2, 0)" },
    { "rill_set_timeouts(0, -2)", 1, "(got 0, -2)" },
    { "rill_set_timeouts(INT_MIN, -1)", 1, "timeouts must be -1 (none), 0 or positive" },
    { "rill_stream_new(NULL out)", 1, "rill_stream_new: out is NULL" },
    { "rill_stream_call(NULL attempt)", 1, "rill_stream_call: NULL argument" },
};

static rill_status invalid_call(int i, rill_stream *s)
{
    char buf[8] = "abc";
    size_t n = 99;
    int fd = 0;
    short ev = 0;
    rill_stream *out = NULL;
    switch (i) {
    case 0: return rill_read(NULL, buf, sizeof buf, &n);
    case 1: return rill_read(s, NULL, 5, &n);
    case 2: return rill_read(s, buf, 0, &n);
    case 3: return rill_read(s, buf, sizeof buf, NULL);
    case 4: return rill_write(NULL, buf, 3, &n);
    case 5: return rill_write(s, NULL, 5, &n);
    case 6: return rill_write(s, buf, 3, NULL);
    case 7: return rill_read_full(s, NULL, 5, &n);
    case 8: return rill_read_full(s, buf, 0, &n);
    case 9: return rill_read_full(NULL, buf, 3, &n);
    case 10: return rill_write_all(s, NULL, 3, &n);
    case 11: return rill_write_all(NULL, buf, 3, &n);
    case 12: return rill_write_str(s, NULL, NULL);
    case 13: return rill_write_str(NULL, "x", NULL);
    case 14: return rill_flush(NULL);
    case 15: return rill_shutdown(NULL);
    case 16: return rill_poll_info(NULL, &fd, &ev);
    case 17: return rill_poll_info(s, NULL, &ev);
    case 18: return rill_poll_info(s, &fd, NULL);
    case 19: return rill_set_timeouts(NULL, 10, 10);
    case 20: return rill_set_timeouts(s, -2, 0);
    case 21: return rill_set_timeouts(s, 0, -2);
    case 22: return rill_set_timeouts(s, INT_MIN, -1);
    case 23: return rill_stream_new(&pass_ops, 0, s, 0, NULL);
    case 24: return rill_stream_call(s, 0, NULL, NULL);
    default: break;
    }
    (void)out;
    ck_abort_msg("no case %d", i);
    return RILL_OK;
}

START_TEST(test_invalid_args)
{
    ck_assert_int_eq((int)(sizeof invalid_cases / sizeof invalid_cases[0]), 25);
    const struct invalid_case *c = &invalid_cases[_i];
    int peer = -1;
    rill_stream *s = fd_stream(&peer, NULL);
    ck_assert_int_eq(rill_set_timeouts(s, 2000, 2000), RILL_OK);
    rill_status st = invalid_call(_i, s);
    ck_assert_msg(st == RILL_E_INVALID, "%s returned %d (%s), not RILL_E_INVALID", c->what, (int)st,
                  rill_strerror(st));
    if (c->on_stream) {
        rt_assert_error(s, st, RILL_E_INVALID, c->needle);
        ck_assert_int_eq(rill_last_error(s)->code, RILL_E_INVALID);
    }
    /* The stream is unharmed: its timeouts are unchanged and bytes still flow both ways. */
    int r = 0, w = 0;
    rill_get_timeouts(s, &r, &w);
    ck_assert_int_eq(r, 2000);
    ck_assert_int_eq(w, 2000);
    expect_from_peer(peer, s, "still here");
    expect_at_peer(s, peer, "and writable");
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(peer);
}
END_TEST

START_TEST(test_null_and_fresh)
{
    ck_assert_int_eq(rill_close(NULL), RILL_OK);
    ck_assert_str_eq(rill_errmsg(NULL), "(null stream)");
    ck_assert_ptr_null(rill_last_error(NULL));
    ck_assert_str_eq(rill_kind(NULL), "");
    ck_assert_int_eq(rill_fd(NULL), -1);
    ck_assert_ptr_null(rill_find(NULL, RILL_LAYER_TCP));
    ck_assert_uint_eq(rill_pending(NULL), 0);
    ck_assert_uint_eq(rill_shrink(NULL), 0);
    ck_assert_ptr_null(rill_stream_inner(NULL));
    ck_assert_ptr_null(rill_stream_ops_of(NULL));
    int r = 5, w = 5;
    rill_get_timeouts(NULL, &r, &w);
    ck_assert_int_eq(r, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(w, RILL_TIMEOUT_NONE);

    /* rill_describe(NULL): NUL-terminated, snprintf-like length, and it says "null". */
    char buf[64];
    memset(buf, 'X', sizeof buf);
    size_t n = rill_describe(NULL, buf, sizeof buf);
    ck_assert_ptr_nonnull(memchr(buf, '\0', sizeof buf));
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_ptr_nonnull(strstr(buf, "null"));
    ck_assert_uint_eq(rill_describe(NULL, NULL, 0), n);
    memset(buf, 'X', sizeof buf);
    ck_assert_uint_eq(rill_describe(NULL, buf, 3), n);
    ck_assert_int_eq(buf[2], '\0');
    ck_assert_int_eq(buf[3], 'X');

    /* A fresh stream has no error recorded. */
    int peer = -1;
    rill_stream *s = fd_stream(&peer, NULL);
    ck_assert_str_eq(rill_errmsg(s), "");
    ck_assert_ptr_nonnull(rill_last_error(s));
    ck_assert_int_eq(rill_last_error(s)->code, RILL_OK);
    ck_assert_int_eq(rill_last_error(s)->sys_errno, 0);
    ck_assert_ptr_null(rill_find(s, NULL));
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(peer);
}
END_TEST

/* rill_stream_new with bad ops: table of cases, each made with and without an inner stream. */

static const struct rill_stream_ops bad_version0 = { .version = 0, .name = "v0" };
static const struct rill_stream_ops bad_version2 = { .version = RILL_STREAM_OPS_VERSION + 1,
                                                     .name = "v2" };
static const struct rill_stream_ops bad_noname = { .version = RILL_STREAM_OPS_VERSION };
static const struct rill_stream_ops bad_emptyname = { .version = RILL_STREAM_OPS_VERSION,
                                                      .name = "" };

static const struct {
    const struct rill_stream_ops *ops;
    size_t state_size;
    const char *needle;
} bad_new_cases[] = {
    { NULL, 0, "ops is NULL" },
    { &bad_version0, 0, "version" },
    { &bad_version2, 0, "version" },
    { &bad_noname, 0, "no name" },
    { &bad_emptyname, 0, "no name" },
    { &pass_ops, ((size_t)1 << 30) + 1, "state_size too large" },
    { &pass_ops, SIZE_MAX, "state_size too large" },
};

START_TEST(test_stream_new_bad_ops)
{
    int fds0 = rt_count_fds();
    int peer = -1;
    rill_stream *inner = fd_stream(&peer, NULL);
    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x1234;

    rill_stream *out = sentinel;
    rill_status st =
        rill_stream_new(bad_new_cases[_i].ops, bad_new_cases[_i].state_size, inner, 0, &out);
    rt_assert_error(inner, st, RILL_E_INVALID, bad_new_cases[_i].needle);
    ck_assert_ptr_eq(out, sentinel);

    out = sentinel;
    st = rill_stream_new(bad_new_cases[_i].ops, bad_new_cases[_i].state_size, NULL, 0, &out);
    ck_assert_int_eq(st, RILL_E_INVALID);
    ck_assert_ptr_eq(out, sentinel);

    /* The caller still owns inner and it works. */
    expect_at_peer(inner, peer, "mine");
    ck_assert_int_eq(rill_close(inner), RILL_OK);
    close(peer);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_state_block)
{
    int peer = -1;
    rill_stream *inner = fd_stream(&peer, NULL);
    rill_stream *s = NULL;
    const size_t size = 1000;
    ck_assert_int_eq(rill_stream_new(&pass_ops, size, inner, 0, &s), RILL_OK);
    unsigned char *state = rill_stream_state(s);
    ck_assert_ptr_nonnull(state);
    ck_assert_uint_eq((uintptr_t)state % _Alignof(max_align_t), 0);
    for (size_t i = 0; i < size; i++)
        ck_assert_msg(state[i] == 0, "state byte %zu is %u, not zeroed", i, state[i]);
    memset(state, 0xa5, size); /* all of it is ours (ASan would catch an overflow) */
    ck_assert_ptr_eq(rill_stream_inner(s), inner);
    ck_assert_ptr_eq(rill_stream_ops_of(s), &pass_ops);
    ck_assert_ptr_null(rill_stream_inner(inner));
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(peer);
}
END_TEST

/* ================================================================================================
 * Custom layers over real transports
 */

START_TEST(test_passthrough_echo)
{
    int fds0 = rt_count_fds();
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *mid = wrap(&pass_ops, client, 0);
    rill_stream *top = wrap(&outer_ops, mid, 0);

    ck_assert_str_eq(rill_kind(top), "outer");
    ck_assert_str_eq(rill_kind(mid), "pass");
    ck_assert_str_eq(rill_kind(client), RILL_LAYER_TCP);
    ck_assert_ptr_eq(rill_stream_inner(top), mid);
    ck_assert_int_eq(rill_fd(top), rill_fd(client));
    ck_assert_int_ge(rill_fd(top), 0);

    for (int round = 0; round < 3; round++) {
        rt_transfer(top, server, 4096 + (size_t)round * 10000, 11 + (uint64_t)round);
        rt_transfer(server, top, 3000 + (size_t)round * 7000, 21 + (uint64_t)round);
    }
    /* One byte at a time and a short read into a large buffer. */
    rt_transfer(top, server, 1, 5);
    ck_assert_int_eq(rill_write_str(server, "xyz", NULL), RILL_OK);
    char buf[100];
    size_t n = 0;
    ck_assert_int_eq(rill_read(top, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_le(n, 3);

    ck_assert_uint_eq(rill_pending(top), 0);
    ck_assert_uint_eq(rill_shrink(top), 0);

    /* Half-close through the pass-through layers reaches TCP. */
    ck_assert_int_eq(rill_shutdown(top), RILL_OK);
    ck_assert_int_eq(rill_read(server, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_close(top), RILL_OK); /* closes mid and client too */
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_error_prefix)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *raw = raw_new(sv[0]);
    rill_stream *custom = wrap(&custom_ops, raw, 0);
    rill_stream *top = wrap(&outer_ops, custom, 0);
    char buf[16];
    size_t n = 7;

    rill_status st = rill_read(top, buf, sizeof buf, &n);
    rt_assert_error(top, st, RILL_E_PROTOCOL, "outer: custom: bad frame 7");
    ck_assert_str_eq(rill_errmsg(top), "outer: custom: bad frame 7");
    ck_assert_int_eq(rill_last_error(top)->code, RILL_E_PROTOCOL);
    ck_assert_uint_eq(n, 0);

    st = rill_write(top, "hello", 5, &n);
    rt_assert_error(top, st, RILL_E_IO, "outer: custom: cannot frame 5 bytes: ");
    ck_assert_int_eq(strncmp(rill_errmsg(top), "outer: custom: cannot frame 5 bytes: ", 37), 0);
    ck_assert_int_eq(rill_last_error(top)->sys_errno, EIO);
    ck_assert_int_eq(rill_last_error(top)->code, RILL_E_IO);

    /* Called on the failing layer itself: its own name only. */
    st = rill_read(custom, buf, sizeof buf, &n);
    rt_assert_error(custom, st, RILL_E_PROTOCOL, "custom: bad frame 7");
    ck_assert_str_eq(rill_errmsg(custom), "custom: bad frame 7");

    /* rill_read_full and rill_write_all report the same way. */
    st = rill_read_full(top, buf, 4, &n);
    rt_assert_error(top, st, RILL_E_PROTOCOL, "outer: custom: bad frame 7");
    st = rill_write_all(top, "abc", 3, &n);
    rt_assert_error(top, st, RILL_E_IO, "outer: custom: cannot frame 3 bytes");
    ck_assert_uint_eq(n, 0);

    ck_assert_int_eq(rill_close(top), RILL_OK);
    close(sv[1]);
}
END_TEST

/* A transport error travels up through a decorator op and a NULL-op layer, gaining prefixes. */
START_TEST(test_error_from_transport)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *top = tag_new(wrap(&pass_ops, client, 0), 'a', 0);

    struct linger lg = { 1, 0 };
    ck_assert_int_eq(setsockopt(rill_fd(server), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ck_assert_int_eq(rill_close(server), RILL_OK);

    char buf[16];
    size_t n = 0;
    rill_status st = rill_read(top, buf, sizeof buf, &n);
    rt_assert_error(top, st, RILL_E_RESET, "tag: pass: tcp: connection reset by peer");
    ck_assert_int_eq(strncmp(rill_errmsg(top), "tag: pass: tcp: ", 16), 0);
    ck_assert_ptr_nonnull(strstr(rill_errmsg(top), "127.0.0.1:"));
    ck_assert_int_eq(rill_last_error(top)->sys_errno, ECONNRESET);
    ck_assert_int_eq(rill_close(top), RILL_OK);
}
END_TEST

START_TEST(test_describe)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *raw = raw_new(sv[0]);
    rill_stream *top = tag_new(wrap(&pass_ops, raw, 0), 'a', 0);
    char expect[64];
    snprintf(expect, sizeof expect, "tag(a read=0) > pass > raw(fd=%d)", sv[0]);
    size_t full = strlen(expect);

    char buf[128];
    ck_assert_uint_eq(rill_describe(top, buf, sizeof buf), full);
    ck_assert_str_eq(buf, expect);
    ck_assert_uint_eq(rill_describe(top, NULL, 0), full);

    /* Every buffer length, including cuts inside a layer and inside " > ". */
    for (size_t len = 0; len <= full + 2; len++) {
        memset(buf, 'X', sizeof buf);
        size_t r = rill_describe(top, buf, len);
        ck_assert_msg(r == full, "len %zu: returned %zu, not %zu", len, r, full);
        if (len == 0) {
            ck_assert_msg(buf[0] == 'X', "len 0 wrote into the buffer");
            continue;
        }
        size_t shown = len - 1 < full ? len - 1 : full;
        ck_assert_msg(buf[shown] == '\0', "len %zu: no NUL at %zu", len, shown);
        ck_assert_msg(memcmp(buf, expect, shown) == 0,
                      "len %zu: \"%s\" is not a prefix of "
                      "\"%s\"",
                      len, buf, expect);
        ck_assert_msg(buf[len] == 'X', "len %zu: wrote past the buffer", len);
    }

    /* The description follows the state of the layers. */
    expect_from_peer(sv[1], top, "12345");
    ck_assert_uint_eq(rill_describe(top, buf, sizeof buf), full);
    ck_assert_ptr_nonnull(strstr(buf, "tag(a read=5) > pass > raw(fd="));

    /* Over TCP: "pass > tcp(fd=N 127.0.0.1:P > 127.0.0.1:Q)". */
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *ptcp = wrap(&pass_ops, client, 0);
    char tcpdesc[128];
    rill_describe(client, tcpdesc, sizeof tcpdesc);
    char both[160];
    snprintf(both, sizeof both, "pass > %s", tcpdesc);
    ck_assert_uint_eq(rill_describe(ptcp, buf, sizeof buf), strlen(both));
    ck_assert_str_eq(buf, both);
    ck_assert_int_eq(strncmp(tcpdesc, "tcp(fd=", 7), 0);

    ck_assert_int_eq(rill_close(ptcp), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rill_close(top), RILL_OK);
    close(sv[1]);
}
END_TEST

START_TEST(test_find_and_kind)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *raw = raw_new(sv[0]);
    rill_stream *low = tag_new(raw, 'b', 0);
    rill_stream *mid = wrap(&pass_ops, low, 0);
    rill_stream *top = tag_new(mid, 'a', 0);

    ck_assert_ptr_eq(rill_find(top, "tag"), top); /* the topmost of two */
    ck_assert_ptr_eq(rill_find(mid, "tag"), low);
    ck_assert_ptr_eq(rill_find(top, "pass"), mid);
    ck_assert_ptr_eq(rill_find(top, "raw"), raw);
    ck_assert_ptr_eq(rill_find(raw, "raw"), raw);
    ck_assert_ptr_null(rill_find(raw, "tag")); /* only downwards */
    ck_assert_ptr_null(rill_find(top, RILL_LAYER_TLS));
    ck_assert_ptr_null(rill_find(top, RILL_LAYER_TCP));
    ck_assert_ptr_null(rill_find(top, ""));
    ck_assert_ptr_null(rill_find(top, "ta"));
    ck_assert_str_eq(rill_kind(top), "tag");
    ck_assert_str_eq(rill_kind(mid), "pass");
    ck_assert_str_eq(rill_kind(raw), "raw");
    ck_assert_int_eq(rill_fd(top), sv[0]);
    ck_assert_int_eq(rill_fd(mid), sv[0]);

    /* A chain without a descriptor. */
    rill_stream *m = wrap(&pass_ops, mem_new("x", 1), 0);
    ck_assert_int_eq(rill_fd(m), -1);
    ck_assert_ptr_eq(rill_find(m, "mem"), rill_stream_inner(m));
    ck_assert_int_eq(rill_close(m), RILL_OK);

    /* The real transports report their kinds. */
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    ck_assert_str_eq(rill_kind(client), RILL_LAYER_TCP);
    ck_assert_str_eq(rill_kind(server), RILL_LAYER_TCP);
    ck_assert_ptr_eq(rill_find(client, RILL_LAYER_TCP), client);
    ck_assert_ptr_null(rill_find(client, RILL_LAYER_FD));
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);

    ck_assert_int_eq(rill_close(top), RILL_OK);
    close(sv[1]);
}
END_TEST

START_TEST(test_borrow)
{
    int fds0 = rt_count_fds();
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    int cfd = rill_fd(client);

    rill_stream *outer = wrap(&outer_ops, client, RILL_BORROW);
    rt_transfer(outer, server, 5000, 1);
    rt_transfer(server, outer, 5000, 2);
    ck_assert_int_eq(rill_close(outer), RILL_OK);

    /* The borrowed transport is open and works in both directions. */
    ck_assert_msg(rt_fd_is_open(cfd), "closing the borrower closed the inner descriptor");
    ck_assert_int_eq(rill_fd(client), cfd);
    rt_transfer(client, server, 7000, 3);
    rt_transfer(server, client, 7000, 4);

    /* Borrow again, shut down and close the borrower: still no close of the inner. */
    outer = wrap(&outer_ops, client, RILL_BORROW);
    ck_assert_int_eq(rill_close(outer), RILL_OK);
    rt_transfer(client, server, 100, 5);

    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_msg(!rt_fd_is_open(cfd), "closing the transport left its descriptor open");
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), fds0);

    /* The op log shows which layers were closed, in order. */
    int sv[2];
    rt_socketpair(sv);
    rill_stream *raw = raw_new(sv[0]);
    rill_stream *b = tag_new(raw, 'b', RILL_BORROW);
    rill_stream *a = tag_new(b, 'a', 0);
    oplog[0] = '\0';
    ck_assert_int_eq(rill_close(a), RILL_OK);
    /* What a's close op wrote is flushed through b before b closes. */
    ck_assert_msg(strstr(oplog, "close:a flush:b flush:b close:b") != NULL, "op log: %s", oplog);
    ck_assert_msg(strstr(oplog, "close:raw") == NULL, "borrowed raw closed: %s", oplog);
    expect_from_peer(sv[1], raw, "raw lives");
    oplog[0] = '\0';
    ck_assert_int_eq(rill_close(raw), RILL_OK);
    ck_assert_msg(strstr(oplog, "close:raw") != NULL, "op log: %s", oplog);
    close(sv[1]);
}
END_TEST

START_TEST(test_owned_chain_closes_top_down)
{
    int fds0 = rt_count_fds();
    int sv[2];
    rt_socketpair(sv);
    rill_stream *top = tag_new(wrap(&pass_ops, tag_new(raw_new(sv[0]), 'b', 0), 0), 'a', 0);
    oplog[0] = '\0';
    ck_assert_int_eq(rill_close(top), RILL_OK);
    /* Each layer flushed in its closing state before its close op; what a close op wrote is
     * flushed through the layers below before they close. */
    ck_assert_msg(strstr(oplog, "flush:a close:a flush:b flush:b close:b close:raw") != NULL,
                  "op log: %s", oplog);
    /* Each layer closed once. */
    const char *first = strstr(oplog, "close:raw");
    ck_assert_ptr_null(strstr(first + 1, "close:raw"));
    ck_assert_msg(!rt_fd_is_open(sv[0]), "transport descriptor left open");
    close(sv[1]);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_pending_sums)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *raw = raw_new(sv[0]);
    rill_stream *b = tag_new(raw, 'b', 0);
    rill_stream *mid = wrap(&pass_ops, b, 0);
    rill_stream *a = tag_new(mid, 'a', 0);
    ck_assert_uint_eq(rill_pending(a), 0);
    tag_of(a)->pending = 5;
    tag_of(b)->pending = 7;
    raw_of(a)->pending = 11;
    ck_assert_uint_eq(rill_pending(a), 23);
    ck_assert_uint_eq(rill_pending(mid), 18);
    ck_assert_uint_eq(rill_pending(b), 18);
    ck_assert_uint_eq(rill_pending(raw), 11);
    tag_of(a)->pending = 0;
    raw_of(a)->pending = 0;
    ck_assert_uint_eq(rill_pending(a), 7);
    tag_of(b)->pending = 0;
    ck_assert_int_eq(rill_close(a), RILL_OK);
    close(sv[1]);

    /* Bytes waiting in the kernel are not "pending": reading them needs I/O. */
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    ck_assert_int_eq(rill_write_str(server, "0123456789", NULL), RILL_OK);
    struct pollfd p = { .fd = rill_fd(client), .events = POLLIN };
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert_uint_eq(rill_pending(client), 0);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

START_TEST(test_timeouts_propagate)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *raw = raw_new(sv[0]);
    rill_stream *mid = wrap(&pass_ops, raw, 0);
    rill_stream *top = tag_new(mid, 'a', 0);
    int r = 0, w = 0;
    rill_get_timeouts(top, &r, &w);
    ck_assert_int_eq(r, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(w, RILL_TIMEOUT_NONE);

    ck_assert_int_eq(rill_set_timeouts(top, 250, 500), RILL_OK);
    rill_stream *layers[] = { top, mid, raw };
    for (size_t i = 0; i < 3; i++) {
        rill_get_timeouts(layers[i], &r, &w);
        ck_assert_msg(r == 250 && w == 500, "%s has %d/%d, not 250/500", rill_kind(layers[i]), r,
                      w);
    }
    /* Setting a lower layer changes it and what is below, not what is above. */
    ck_assert_int_eq(rill_set_timeouts(mid, 10, 0), RILL_OK);
    rill_get_timeouts(top, &r, &w);
    ck_assert_int_eq(r, 250);
    ck_assert_int_eq(w, 500);
    rill_get_timeouts(raw, &r, &w);
    ck_assert_int_eq(r, 10);
    ck_assert_int_eq(w, 0);
    /* Either pointer may be NULL. */
    r = 1;
    rill_get_timeouts(top, &r, NULL);
    ck_assert_int_eq(r, 250);
    w = 1;
    rill_get_timeouts(top, NULL, &w);
    ck_assert_int_eq(w, 500);

    /* A new decorator inherits the timeouts of the stream it wraps. */
    ck_assert_int_eq(rill_set_timeouts(top, 123, 456), RILL_OK);
    rill_stream *newer = wrap(&outer_ops, top, 0);
    rill_get_timeouts(newer, &r, &w);
    ck_assert_int_eq(r, 123);
    ck_assert_int_eq(w, 456);
    /* ...and applies them: a read through it times out after 123 ms. */
    int64_t t0 = rt_now_us();
    char buf[4];
    size_t n = 0;
    rill_status st = rill_read(newer, buf, sizeof buf, &n);
    rt_assert_error(newer, st, RILL_E_TIMEOUT, "timed out");
    rt_assert_elapsed(t0, 123, 2000);

    /* Boundary values are accepted. */
    ck_assert_int_eq(rill_set_timeouts(newer, RILL_TIMEOUT_NONE, 0), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(newer, INT_MAX, 1), RILL_OK);
    rill_get_timeouts(raw, &r, &w);
    ck_assert_int_eq(r, INT_MAX);
    ck_assert_int_eq(w, 1);
    ck_assert_int_eq(rill_close(newer), RILL_OK);
    close(sv[1]);
}
END_TEST

/* Read deadlines applied by the core over a custom transport: -1, 0, and 150 ms. */
static const int read_modes[] = { RILL_TIMEOUT_NONE, 0, 150 };

START_TEST(test_read_deadlines)
{
    int timeout = read_modes[_i];
    int sv[2];
    rt_socketpair(sv);
    rill_stream *raw = raw_new(sv[0]);
    rill_stream *top = tag_new(raw, 'a', 0);
    ck_assert_int_eq(rill_set_timeouts(top, timeout, RILL_TIMEOUT_NONE), RILL_OK);
    char buf[16];
    size_t n = 0;

    /* Before any WANT, poll info reports the descriptor and POLLIN. */
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(top, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, sv[0]);
    ck_assert_int_eq(ev, POLLIN);

    if (timeout == RILL_TIMEOUT_NONE) {
        ck_assert_int_eq(send(sv[1], "ab", 2, 0), 2);
        ck_assert_int_eq(rill_read(top, buf, sizeof buf, &n), RILL_OK);
        ck_assert_uint_eq(n, 2);
        ck_assert_msg(raw_of(top)->last_may_block == 1, "no timeout, but may_block was 0");
    } else if (timeout == 0) {
        rill_status st = rill_read(top, buf, sizeof buf, &n);
        ck_assert_msg(st == RILL_WANT_READ, "got %s", rill_strerror(st));
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(raw_of(top)->last_may_block, 0);
        fd = -1;
        ev = 0;
        ck_assert_int_eq(rill_poll_info(top, &fd, &ev), RILL_OK);
        ck_assert_int_eq(fd, sv[0]);
        ck_assert_msg(ev & POLLIN, "events %#x lack POLLIN", (unsigned)ev);
    } else {
        int64_t t0 = rt_now_us();
        rill_status st = rill_read(top, buf, sizeof buf, &n);
        rt_assert_error(top, st, RILL_E_TIMEOUT, "tag: read timed out after 150 ms");
        rt_assert_elapsed(t0, timeout, timeout + 2000);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(raw_of(top)->last_may_block, 0);
    }
    /* Usable afterwards in every mode. */
    ck_assert_int_eq(send(sv[1], "cde", 3, 0), 3);
    struct pollfd p = { .fd = sv[0], .events = POLLIN };
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    n = 0;
    ck_assert_int_eq(rill_read_full(top, buf, 3, &n), RILL_OK);
    ck_assert_mem_eq(buf, "cde", 3);
    ck_assert_uint_eq(tag_of(top)->nread, timeout == RILL_TIMEOUT_NONE ? 5 : 3);
    ck_assert_int_eq(rill_close(top), RILL_OK);
    close(sv[1]);
}
END_TEST

START_TEST(test_write_deadlines)
{
    int sv[2];
    rt_socketpair(sv);
    int small = 4096;
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    rill_stream *top = tag_new(raw_new(sv[0]), 'a', 0);
    ck_assert_int_eq(rill_set_timeouts(top, RILL_TIMEOUT_NONE, 0), RILL_OK);
    static char chunk[8192];
    memset(chunk, 'w', sizeof chunk);
    size_t total = 0, n = 0;
    rill_status st = RILL_OK;
    for (int i = 0; i < 10000 && st == RILL_OK; i++) {
        st = rill_write(top, chunk, sizeof chunk, &n);
        total += n;
    }
    ck_assert_msg(st == RILL_WANT_WRITE, "filling: %s after %zu bytes", rill_strerror(st), total);
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(top, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, sv[0]);
    ck_assert_msg(ev & POLLOUT, "events %#x lack POLLOUT", (unsigned)ev);

    ck_assert_int_eq(rill_set_timeouts(top, RILL_TIMEOUT_NONE, 150), RILL_OK);
    int64_t t0 = rt_now_us();
    st = rill_write(top, chunk, sizeof chunk, &n);
    rt_assert_error(top, st, RILL_E_TIMEOUT, "tag: write timed out after 150 ms");
    rt_assert_elapsed(t0, 150, 2150);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(tag_of(top)->nwritten, total);

    /* Drain everything; then writing works again and no byte was lost or invented. */
    size_t drained = 0;
    char sink[65536];
    for (;;) {
        ssize_t r = recv(sv[1], sink, sizeof sink, MSG_DONTWAIT);
        if (r <= 0)
            break;
        drained += (size_t)r;
    }
    ck_assert_uint_eq(drained, total);
    expect_at_peer(top, sv[1], "after the drain");
    ck_assert_int_eq(rill_close(top), RILL_OK);
    close(sv[1]);
}
END_TEST

/*
 * A layer that keeps asking to wait while its descriptor is ready must not outlive the deadline.
 * Run in a child: a core that spins past the deadline would otherwise hang the suite.
 */
static void spurious_want_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        rep->status = 999;
        return;
    }
    rill_stream *top = tag_new(raw_new(sv[0]), 'a', 0);
    tag_of(top)->flush_result = RILL_WANT_WRITE; /* always "not yet"; the fd is writable */
    rep->values[0] = rill_set_timeouts(top, RILL_TIMEOUT_NONE, 100);
    int64_t t0 = rt_now_us();
    rep->status = rill_flush(top);
    rep->values[1] = (int)((rt_now_us() - t0) / 1000);
    snprintf(rep->msg, sizeof rep->msg, "%s", rill_errmsg(top));
    /* Non-blocking: the WANT comes back at once; close discards and reports a timeout. */
    rep->values[2] = rill_set_timeouts(top, RILL_TIMEOUT_NONE, 0);
    rep->values[3] = rill_flush(top);
    oplog[0] = '\0';
    rep->values[4] = rill_close(top);
    rep->values[5] = strstr(oplog, "close:a close:raw") != NULL;
    close(sv[1]);
}

START_TEST(test_deadline_bounds_spurious_wants)
{
    rt_child_result res;
    rt_run_child(spurious_want_child, NULL, 3, &res);
    ck_assert_msg(res.term_signal == 0 && res.exited && res.exit_code == 0,
                  "rill_flush with a 100 ms write timeout did not return within 3 s while a "
                  "layer kept returning RILL_WANT_WRITE on a writable fd (exit %d, signal %d)",
                  res.exit_code, res.term_signal);
    ck_assert_int_eq(res.report.values[0], RILL_OK);
    ck_assert_msg(res.report.status == RILL_E_TIMEOUT, "rill_flush: %d (%s): %s", res.report.status,
                  rill_strerror(res.report.status), res.report.msg);
    ck_assert_msg(strstr(res.report.msg, "timed out") != NULL, "message: %s", res.report.msg);
    ck_assert_msg(res.report.values[1] >= 100 && res.report.values[1] <= 2100,
                  "returned after %d ms", res.report.values[1]);
    ck_assert_int_eq(res.report.values[2], RILL_OK);
    ck_assert_int_eq(res.report.values[3], RILL_WANT_WRITE);
    ck_assert_int_eq(res.report.values[4], RILL_E_TIMEOUT);
    ck_assert_msg(res.report.values[5], "rill_close did not close every layer");
}
END_TEST

START_TEST(test_flush_shutdown_order)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *b = tag_new(raw_new(sv[0]), 'b', 0);
    rill_stream *top = tag_new(wrap(&pass_ops, b, 0), 'a', 0);

    oplog[0] = '\0';
    ck_assert_int_eq(rill_flush(top), RILL_OK);
    ck_assert_str_eq(oplog, "flush:a flush:b ");

    expect_at_peer(top, sv[1], "before shutdown");
    oplog[0] = '\0';
    ck_assert_int_eq(rill_shutdown(top), RILL_OK);
    /* Each shutdown's own bytes are flushed through the layers below before they shut down. */
    ck_assert_str_eq(oplog, "flush:a flush:b shutdown:a flush:b shutdown:b shutdown:raw ");
    char buf[32];
    ck_assert_int_eq(recv(sv[1], buf, sizeof buf, 0), 0); /* the peer sees EOF */

    /* Twice is harmless: no layer is shut down again. */
    oplog[0] = '\0';
    ck_assert_int_eq(rill_shutdown(top), RILL_OK);
    ck_assert_ptr_null(strstr(oplog, "shutdown:"));

    /* Writes now fail with RILL_E_CLOSED and say why; reading still works. */
    size_t n = 9;
    rill_status st = rill_write(top, "x", 1, &n);
    rt_assert_error(top, st, RILL_E_CLOSED, "shutdown");
    ck_assert_uint_eq(n, 0);
    rt_assert_error(top, rill_write_all(top, "xy", 2, &n), RILL_E_CLOSED, "shutdown");
    rt_assert_error(top, rill_write_str(top, "xyz", NULL), RILL_E_CLOSED, "shutdown");
    rt_assert_error(b, rill_write(b, "x", 1, &n), RILL_E_CLOSED, "shutdown");
    expect_from_peer(sv[1], top, "reply after FIN");

    oplog[0] = '\0';
    ck_assert_int_eq(rill_close(top), RILL_OK);
    ck_assert_msg(strstr(oplog, "close:a flush:b flush:b close:b close:raw ") != NULL, "op log: %s",
                  oplog);
    close(sv[1]);
}
END_TEST

START_TEST(test_close_reports_flush_error)
{
    int fds0 = rt_count_fds();
    int sv[2];
    rt_socketpair(sv);
    rill_stream *b = tag_new(raw_new(sv[0]), 'b', 0);
    rill_stream *top = tag_new(b, 'a', 0);
    tag_of(b)->flush_result = RILL_E_IO;

    rill_status st = rill_flush(top);
    rt_assert_error(top, st, RILL_E_IO, "tag: tag: cannot flush b");
    oplog[0] = '\0';
    ck_assert_int_eq(rill_close(top), RILL_E_IO);
    /* After a failed flush nothing more is pushed: the layers close at once. */
    ck_assert_msg(strstr(oplog, "close:a close:b close:raw") != NULL, "op log: %s", oplog);
    close(sv[1]);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_full_and_all_helpers)
{
    /* mem moves at most 3 bytes per op, so the helpers must loop. */
    rill_stream *m = mem_new("hello, world", 3);
    rill_stream *top = wrap(&pass_ops, m, 0);
    char buf[32];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(top, buf, 12, &n), RILL_OK);
    ck_assert_uint_eq(n, 12);
    ck_assert_mem_eq(buf, "hello, world", 12);
    ck_assert_int_eq(rill_read(top, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_read_full(top, buf, 4, NULL), RILL_EOF); /* nread may be NULL */

    struct mem_state *ms = rill_stream_state(m);
    ms->pos = 5; /* 7 bytes left, ask for 10: EOF with the 7 that did arrive */
    n = 0;
    ck_assert_int_eq(rill_read_full(top, buf, 10, &n), RILL_EOF);
    ck_assert_uint_eq(n, 7);
    ck_assert_mem_eq(buf, ", world", 7);

    ck_assert_int_eq(rill_write_all(top, "0123456789", 10, &n), RILL_OK);
    ck_assert_uint_eq(n, 10);
    ck_assert_int_eq(rill_write_str(top, "ab", NULL), RILL_OK);
    ck_assert_uint_eq(ms->outlen, 12);
    ck_assert_mem_eq(ms->out, "0123456789ab", 12);

    /* A write of 0 bytes writes nothing and does not reach the layer. */
    int writes = ms->writes;
    n = 5;
    ck_assert_int_eq(rill_write(top, "zz", 0, &n), RILL_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_write_all(top, "zz", 0, &n), RILL_OK);
    ck_assert_int_eq(ms->writes, writes);

    /* A short rill_write: one op, between 1 and 3 bytes. */
    ck_assert_int_eq(rill_write(top, "ABCDEFG", 7, &n), RILL_OK);
    ck_assert_uint_eq(n, 3);

    /* Filling the sink: rill_write_all stops with the error and says how much went. */
    static char big[100];
    memset(big, 'q', sizeof big);
    size_t before = ms->outlen;
    rill_status st = rill_write_all(top, big, sizeof big, &n);
    rt_assert_error(top, st, RILL_E_CLOSED, "pass: mem: sink full after 64 bytes");
    ck_assert_uint_eq(n, sizeof ms->out - before);

    /* No descriptor: poll info is unsupported, and so is waiting. */
    int fd = 0;
    short ev = 0;
    st = rill_poll_info(top, &fd, &ev);
    rt_assert_error(top, st, RILL_E_UNSUPPORTED, "no descriptor");
    ms->starve = 1;
    ck_assert_int_eq(rill_set_timeouts(top, 0, 0), RILL_OK);
    ck_assert_int_eq(rill_read(top, buf, 4, &n), RILL_WANT_READ);
    ck_assert_int_eq(rill_set_timeouts(top, 100, 100), RILL_OK);
    st = rill_read(top, buf, 4, &n);
    rt_assert_error(top, st, RILL_E_UNSUPPORTED, "no descriptor");
    ck_assert_int_eq(rill_set_timeouts(top, RILL_TIMEOUT_NONE, 100), RILL_OK);
    st = rill_read(top, buf, 4, &n);
    rt_assert_error(top, st, RILL_E_UNSUPPORTED, "no descriptor");
    ck_assert_int_eq(rill_close(top), RILL_OK);
}
END_TEST

START_TEST(test_shrink)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *b = tag_new(raw_new(sv[0]), 'b', 0);
    rill_stream *top = tag_new(wrap(&pass_ops, b, 0), 'a', 0);
    ck_assert_uint_eq(rill_shrink(top), 0);
    tag_of(top)->shrinkable = 100;
    tag_of(b)->shrinkable = 20;
    ck_assert_uint_eq(rill_shrink(top), 120);
    ck_assert_uint_eq(rill_shrink(top), 0);
    ck_assert_int_eq(rill_close(top), RILL_OK);
    close(sv[1]);

    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rt_transfer(client, server, 1000, 9);
    ck_assert_uint_eq(rill_shrink(client), 0);
    ck_assert_uint_eq(rill_shrink(server), 0);
    int peer = -1;
    rill_stream *f = fd_stream(&peer, NULL);
    ck_assert_uint_eq(rill_shrink(f), 0);
    ck_assert_int_eq(rill_close(f), RILL_OK);
    close(peer);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* ================================================================================================
 * Allocator
 */

/* ---- gather writes ---- */

/* "probe": a transport whose writev op records each call's pieces and sends them with sendmsg. */
struct probe_state {
    int fd;
    int calls;
    int last_pieces;
};

static rill_status probe_writev(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n)
{
    struct probe_state *st = rill_stream_state(s);
    st->calls++;
    st->last_pieces = iovcnt;
    for (int i = 0; i < iovcnt; i++)
        ck_assert_uint_gt(iov[i].iov_len, 0); /* the core never hands on empty pieces */
    struct msghdr m = { .msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)iovcnt };
    ssize_t r = sendmsg(st->fd, &m, MSG_NOSIGNAL);
    ck_assert_int_gt(r, 0);
    *n = (size_t)r;
    return RILL_OK;
}

static rill_status probe_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct iovec one = { (void *)(uintptr_t)buf, len };
    return probe_writev(s, &one, 1, n);
}

static void probe_close(rill_stream *s)
{
    close(((struct probe_state *)rill_stream_state(s))->fd);
}

static const struct rill_stream_ops probe_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "probe",
    .write = probe_write,
    .close = probe_close,
    .writev = probe_writev,
};

/* A layer of version 1 (before writev): accepted, and given the pieces through its write op. */
static const struct rill_stream_ops v1_ops = {
    .version = 1,
    .name = "v1",
    .write = tag_write,
};

static void peer_expect(int peer, const char *want)
{
    size_t len = strlen(want);
    char *got = malloc(len + 1);
    ck_assert_ptr_nonnull(got);
    size_t off = 0;
    while (off < len) {
        ssize_t r = read(peer, got + off, len - off);
        ck_assert_int_gt(r, 0);
        off += (size_t)r;
    }
    ck_assert_mem_eq(got, want, len);
    free(got);
}

/*
 * rill_writev through an fd transport (one sendmsg), blocking, under a deadline and
 * non-blocking; a gather larger than the socket takes in non-blocking mode stops with
 * RILL_WANT_WRITE and says how much went, and the rest follows.
 */
START_TEST(test_writev_modes)
{
    static const int timeouts[] = { RILL_TIMEOUT_NONE, 2000, 0 };
    int peer;
    rill_stream *s = fd_stream(&peer, NULL);
    ck_assert_int_eq(rill_set_timeouts(s, timeouts[_i], timeouts[_i]), RILL_OK);
    struct iovec iov[4] = { { "HEAD ", 5 }, { NULL, 0 }, { "body", 4 }, { "\n", 1 } };
    size_t n = 0;
    ck_assert_int_eq(rill_writev(s, iov, 4, &n), RILL_OK);
    ck_assert_uint_eq(n, 10);
    peer_expect(peer, "HEAD body\n");
    ck_assert_int_eq(rill_writev(s, iov, 0, &n), RILL_OK);
    ck_assert_uint_eq(n, 0);
    if (_i == 2) {
        size_t big = 4u << 20;
        char *body = malloc(big);
        ck_assert_ptr_nonnull(body);
        for (size_t i = 0; i < big; i++)
            body[i] = (char)('a' + i % 23);
        struct iovec two[2] = { { "H", 1 }, { body, big } };
        rill_status st = rill_writev(s, two, 2, &n);
        ck_assert_int_eq(st, RILL_WANT_WRITE);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_lt(n, big + 1);
        char *got = malloc(big + 1);
        ck_assert_ptr_nonnull(got);
        size_t have = 0, sent = n;
        while (have < big + 1) {
            ssize_t r = read(peer, got + have, big + 1 - have);
            ck_assert_int_gt(r, 0);
            have += (size_t)r;
            if (sent < big + 1) {
                struct iovec rest = { body + (sent - 1), big + 1 - sent };
                st = rill_writev(s, &rest, 1, &n);
                ck_assert(st == RILL_OK || st == RILL_WANT_WRITE);
                sent += n;
            }
        }
        ck_assert_int_eq(got[0], 'H');
        ck_assert_mem_eq(got + 1, body, big);
        free(got);
        free(body);
    }
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * Layers without a gather op: a pass-through layer hands the gather on whole, a layer with a
 * write op (also one of ops version 1) gets the pieces one at a time; buffered sends its held
 * bytes and the pieces as one gather.
 */
START_TEST(test_writev_through_layers)
{
    int sv[2];
    rt_socketpair(sv);
    rill_stream *probe = NULL;
    ck_assert_int_eq(rill_stream_new(&probe_ops, sizeof(struct probe_state), NULL, 0, &probe),
                     RILL_OK);
    struct probe_state *ps = rill_stream_state(probe);
    ps->fd = sv[0];
    rill_stream *pass = wrap(&pass_ops, probe, 0);
    struct iovec iov[3] = { { "ab", 2 }, { "cd", 2 }, { "ef", 2 } };
    size_t n = 0;
    ck_assert_int_eq(rill_writev(pass, iov, 3, &n), RILL_OK);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(ps->calls, 1);
    ck_assert_int_eq(ps->last_pieces, 3);
    peer_expect(sv[1], "abcdef");

    rill_stream *tag = tag_new(pass, 't', 0);
    ps->calls = 0;
    ck_assert_int_eq(rill_writev(tag, iov, 3, &n), RILL_OK);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(ps->calls, 3); /* one piece at a time through the write op */
    ck_assert_uint_eq(tag_of(tag)->nwritten, 6);
    peer_expect(sv[1], "abcdef");

    rill_stream *v1 = NULL;
    ck_assert_int_eq(rill_stream_new(&v1_ops, sizeof(struct tag_state), tag, 0, &v1), RILL_OK);
    ps->calls = 0;
    ck_assert_int_eq(rill_writev(v1, iov, 3, &n), RILL_OK);
    ck_assert_int_eq(ps->calls, 3);
    peer_expect(sv[1], "abcdef");

    /* buffered over the pass-through: small gathers join the held bytes; a large one goes down
     * with them as one gather. */
    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(pass, 16, 16, RILL_BORROW, &b), RILL_OK);
    ps->calls = 0;
    ck_assert_int_eq(rill_writev(b, iov, 2, &n), RILL_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ps->calls, 0);
    struct iovec big[2] = { { "0123456789", 10 }, { "ABCDEFGHIJ", 10 } };
    ck_assert_int_eq(rill_writev(b, big, 2, &n), RILL_OK);
    ck_assert_uint_eq(n, 20);
    ck_assert_int_eq(ps->calls, 1);
    ck_assert_int_eq(ps->last_pieces, 3); /* held "abcd", then both pieces */
    peer_expect(sv[1], "abcd0123456789ABCDEFGHIJ");
    ck_assert_int_eq(rill_close(b), RILL_OK);
    close(sv[1]);
    ck_assert_int_eq(rill_close(v1), RILL_OK);
}
END_TEST

START_TEST(test_writev_invalid)
{
    int peer;
    rill_stream *s = fd_stream(&peer, NULL);
    size_t n = 99;
    struct iovec bad[2] = { { "x", 1 }, { NULL, 3 } };
    ck_assert_int_eq(rill_writev(NULL, bad, 1, &n), RILL_E_INVALID);
    ck_assert_uint_eq(n, 0);
    rt_assert_error(s, rill_writev(s, NULL, 1, &n), RILL_E_INVALID, "rill_writev: iov is NULL");
    rt_assert_error(s, rill_writev(s, bad, 2, &n), RILL_E_INVALID,
                    "rill_writev: piece 1 has no buffer");
    /* Ops of a version this library does not know are refused, with the reason on inner. */
    static const struct rill_stream_ops future_ops = { .version = RILL_STREAM_OPS_VERSION + 1,
                                                       .name = "future" };
    rill_stream *layer = NULL;
    rt_assert_error(s, rill_stream_new(&future_ops, 0, s, 0, &layer), RILL_E_INVALID,
                    "rill_stream_new: ops version mismatch");
    ck_assert_ptr_null(layer);
    ck_assert_int_eq(rill_shutdown(s), RILL_OK);
    rt_assert_error(s, rill_writev(s, bad, 1, &n), RILL_E_CLOSED,
                    "rill_writev: fd: write after shutdown");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_allocator_counts)
{
    use_counting_allocator(0);
    int sv[2];
    rt_socketpair(sv);
    rill_stream *s = NULL;
    rill_error err;
    ck_assert_int_eq(rill_fd_new(sv[0], sv[0], 0, &s, &err), RILL_OK);
    ck_assert_msg(alloc_calls >= 1 && alloc_live >= 1,
                  "rill_fd_new allocated nothing through "
                  "the allocator (calls %ld, live %ld)",
                  alloc_calls, alloc_live);
    long after_fd = alloc_calls;
    rill_stream *top = wrap(&pass_ops, s, 0);
    ck_assert_int_gt(alloc_calls, after_fd);

    rill_stream *client = NULL, *server = NULL;
    long before_tcp = alloc_calls;
    rt_tcp_pair(&client, &server);
    ck_assert_int_ge(alloc_calls, before_tcp + 3); /* listener, client and accepted stream */
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);

    ck_assert_int_eq(rill_close(top), RILL_OK);
    ck_assert_msg(alloc_live == 0, "%ld blocks not freed through the allocator", alloc_live);

    /* NULLs restore the defaults: the counting allocator sees nothing any more. */
    rill_set_allocator(NULL, NULL, NULL);
    long calls = alloc_calls;
    ck_assert_int_eq(rill_fd_new(sv[0], sv[0], RILL_FD_OWN, &s, &err), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_int_eq(alloc_calls, calls);
    close(sv[1]);
}
END_TEST

START_TEST(test_allocator_fails)
{
    int fds0 = rt_count_fds();
    int peer = -1;
    rill_stream *inner = fd_stream(&peer, NULL); /* made with the default allocator */
    use_counting_allocator(-1);

    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x5678;
    rill_stream *out = sentinel;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_fd_new(p[0], p[1], RILL_FD_OWN, &out, &err);
    rt_assert_err(&err, st, RILL_E_NOMEM, "out of memory");
    ck_assert_ptr_eq(out, sentinel);
    ck_assert_msg(rt_fd_is_open(p[0]) && rt_fd_is_open(p[1]),
                  "failed rill_fd_new closed the caller's descriptors");
    ck_assert_int_eq(alloc_live, 0);
    st = rill_fd_new(p[0], p[1], 0, &out, NULL); /* err may be NULL */
    ck_assert_int_eq(st, RILL_E_NOMEM);

    out = sentinel;
    st = rill_stream_new(&pass_ops, 16, inner, 0, &out);
    rt_assert_error(inner, st, RILL_E_NOMEM, "out of memory");
    ck_assert_ptr_eq(out, sentinel);
    ck_assert_int_eq(alloc_live, 0);
    st = rill_stream_new(&pass_ops, 16, NULL, 0, &out);
    ck_assert_int_eq(st, RILL_E_NOMEM);
    ck_assert_ptr_eq(out, sentinel);

    rill_set_allocator(NULL, NULL, NULL);
    /* The caller still owns inner, and it works. */
    expect_at_peer(inner, peer, "after NOMEM");
    ck_assert_int_eq(rill_close(inner), RILL_OK);
    close(peer);
    close(p[0]);
    close(p[1]);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/*
 * Fail each allocation of a constructor in turn (the first, then the second, ...) until it
 * succeeds: every failure is RILL_E_NOMEM with a message, and leaks neither memory nor fds.
 */
struct torture_env {
    rill_listener *tcp_listener;
    rill_listener *unix_listener;
    char unix_name[64];
    char unix_listen_name[64];
    rill_stream *inner;
    int inner_peer;
    int client_fd; /* raw client for the accept case */
    rill_stream *made;
    rill_listener *made_listener;
};

static const char *const torture_names[] = {
    "rill_fd_new", "rill_stream_new",   "rill_tcp_connect_addr", "rill_listen",
    "rill_accept", "rill_unix_connect", "rill_listen_unix",
};

static void torture_prepare(struct torture_env *env, int which)
{
    env->client_fd = -1;
    if (which != 4)
        return;
    /* A pending connection made without rill, so only rill_accept allocates. */
    env->client_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(env->client_fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(rill_listener_port(env->tcp_listener)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(connect(env->client_fd, (struct sockaddr *)&sa, sizeof sa), 0);
}

static rill_status torture_run(struct torture_env *env, int which, rill_error *err)
{
    rill_status st = RILL_OK;
    switch (which) {
    case 0: return rill_fd_new(env->inner_peer, env->inner_peer, 0, &env->made, err);
    case 1:
        st = rill_stream_new(&pass_ops, 64, env->inner, RILL_BORROW, &env->made);
        if (st != RILL_OK)
            *err = *rill_last_error(env->inner);
        return st;
    case 2:
        return rill_tcp_connect_addr("127.0.0.1", rill_listener_port(env->tcp_listener), NULL,
                                     &env->made, err);
    case 3: return rill_listen("127.0.0.1", 0, NULL, &env->made_listener, err);
    case 4: return rill_accept(env->tcp_listener, 5000, &env->made, err);
    case 5: return rill_unix_connect(env->unix_name, NULL, &env->made, err);
    case 6: return rill_listen_unix(env->unix_listen_name, NULL, &env->made_listener, err);
    default: break;
    }
    ck_abort_msg("no torture case %d", which);
    return RILL_OK;
}

static void torture_cleanup(struct torture_env *env)
{
    rill_close(env->made);
    env->made = NULL;
    rill_listener_free(env->made_listener);
    env->made_listener = NULL;
    if (env->client_fd >= 0)
        close(env->client_fd);
    env->client_fd = -1;
}

/*
 * A stream's error record is allocated with its first error, not with the stream. When that
 * allocation fails the error still reports: its code always, its message while this thread's
 * scratch record still holds it, and after that a fixed out-of-memory text.
 */
START_TEST(test_error_record_lazy)
{
    int pa, pb, pc;
    use_counting_allocator(0);
    long before = alloc_live;
    rill_stream *a = fd_stream(&pa, NULL);
    long one_stream = alloc_live - before;
    rill_stream *b = fd_stream(&pb, NULL), *c = fd_stream(&pc, NULL);
    ck_assert_int_eq(alloc_live - before, 3 * one_stream); /* no record yet */
    ck_assert_str_eq(rill_errmsg(a), "");
    ck_assert_int_eq(rill_last_error(a)->code, RILL_OK);
    size_t n;
    ck_assert_int_eq(rill_read(a, NULL, 1, &n), RILL_E_INVALID);
    ck_assert_int_eq(alloc_live - before, 3 * one_stream + 1);
    ck_assert_str_eq(rill_errmsg(a), "rill_read: buffer is NULL");

    alloc_fail_at = -1;
    ck_assert_int_eq(rill_write(b, NULL, 1, &n), RILL_E_INVALID);
    ck_assert_int_eq(rill_last_error(b)->code, RILL_E_INVALID);
    ck_assert_str_eq(rill_errmsg(b), "rill_write: buffer is NULL");
    ck_assert_int_eq(rill_read(c, NULL, 1, &n), RILL_E_INVALID);
    ck_assert_str_eq(rill_errmsg(c), "rill_read: buffer is NULL");
    ck_assert_int_eq(rill_last_error(b)->code, RILL_E_INVALID);
    ck_assert_str_eq(rill_errmsg(b), "out of memory: no room for the message of this error");
    ck_assert_int_eq(alloc_live - before, 3 * one_stream + 1);

    alloc_fail_at = 0;
    ck_assert_int_eq(rill_write(b, NULL, 1, &n), RILL_E_INVALID);
    ck_assert_str_eq(rill_errmsg(b), "rill_write: buffer is NULL");
    ck_assert_int_eq(rill_last_error(b)->code, RILL_E_INVALID);
    ck_assert_int_eq(rill_close(a), RILL_OK);
    ck_assert_int_eq(rill_close(b), RILL_OK);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(alloc_live, before);
    close(pa);
    close(pb);
    close(pc);
}
END_TEST

START_TEST(test_allocator_torture)
{
    struct torture_env env;
    memset(&env, 0, sizeof env);
    rill_error err;
    use_counting_allocator(0);
    snprintf(env.unix_name, sizeof env.unix_name, "@rill-torture-%ld-%d", (long)getpid(), _i);
    snprintf(env.unix_listen_name, sizeof env.unix_listen_name, "@rill-torture-l-%ld-%d",
             (long)getpid(), _i);
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &env.tcp_listener, &err), RILL_OK);
    ck_assert_int_eq(rill_listen_unix(env.unix_name, NULL, &env.unix_listener, &err), RILL_OK);
    env.inner = fd_stream(&env.inner_peer, NULL);
    /* A stream's error record is allocated with its first error and kept: give the inner one
     * now, so the reason a failed constructor records on it is not counted as a leak. */
    size_t ignored;
    ck_assert_int_eq(rill_read(env.inner, NULL, 1, &ignored), RILL_E_INVALID);

    int failures = 0;
    int succeeded = 0;
    for (long k = 1; k <= 64 && !succeeded; k++) {
        torture_prepare(&env, _i);
        int fds0 = rt_count_fds();
        long live0 = alloc_live;
        memset(&err, 0, sizeof err);
        alloc_calls = 0;
        alloc_fail_at = k;
        rill_status st = torture_run(&env, _i, &err);
        alloc_fail_at = 0;
        if (alloc_calls < k) {
            ck_assert_msg(st == RILL_OK, "%s: no allocation failed, yet %s: %s", torture_names[_i],
                          rill_strerror(st), err.msg);
            succeeded = 1;
        } else {
            ck_assert_msg(st == RILL_E_NOMEM, "%s with allocation %ld failing: %d (%s): %s",
                          torture_names[_i], k, (int)st, rill_strerror(st), err.msg);
            rt_assert_err(&err, st, RILL_E_NOMEM, "out of memory");
            ck_assert_ptr_null(env.made);
            ck_assert_ptr_null(env.made_listener);
            ck_assert_msg(alloc_live == live0,
                          "%s: %ld blocks leaked after failing "
                          "allocation %ld",
                          torture_names[_i], alloc_live - live0, k);
            ck_assert_msg(rt_count_fds() == fds0,
                          "%s: %d descriptors leaked after failing "
                          "allocation %ld",
                          torture_names[_i], rt_count_fds() - fds0, k);
            failures++;
        }
        torture_cleanup(&env);
    }
    ck_assert_msg(succeeded, "%s never succeeded", torture_names[_i]);
    ck_assert_msg(failures >= 1, "%s allocates nothing through the allocator", torture_names[_i]);

    rill_close(env.inner);
    close(env.inner_peer);
    rill_listener_free(env.tcp_listener);
    rill_listener_free(env.unix_listener);
    ck_assert_msg(alloc_live == 0, "%ld blocks leaked", alloc_live);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("stream");

    TCase *tc = tcase_create("library");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_strerror);
    suite_add_tcase(s, tc);

    tc = tcase_create("arguments");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_invalid_args, 0,
                        (int)(sizeof invalid_cases / sizeof invalid_cases[0]));
    tcase_add_test(tc, test_null_and_fresh);
    tcase_add_loop_test(tc, test_stream_new_bad_ops, 0,
                        (int)(sizeof bad_new_cases / sizeof bad_new_cases[0]));
    tcase_add_test(tc, test_state_block);
    suite_add_tcase(s, tc);

    tc = tcase_create("layers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_passthrough_echo);
    tcase_add_test(tc, test_error_prefix);
    tcase_add_test(tc, test_error_from_transport);
    tcase_add_test(tc, test_describe);
    tcase_add_test(tc, test_find_and_kind);
    tcase_add_test(tc, test_borrow);
    tcase_add_test(tc, test_owned_chain_closes_top_down);
    tcase_add_test(tc, test_pending_sums);
    tcase_add_test(tc, test_flush_shutdown_order);
    tcase_add_test(tc, test_close_reports_flush_error);
    tcase_add_test(tc, test_full_and_all_helpers);
    tcase_add_test(tc, test_shrink);
    suite_add_tcase(s, tc);

    tc = tcase_create("timeouts");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_timeouts_propagate);
    tcase_add_loop_test(tc, test_read_deadlines, 0,
                        (int)(sizeof read_modes / sizeof read_modes[0]));
    tcase_add_test(tc, test_write_deadlines);
    tcase_add_test(tc, test_deadline_bounds_spurious_wants);
    suite_add_tcase(s, tc);

    tc = tcase_create("writev");
    tcase_add_loop_test(tc, test_writev_modes, 0, 3);
    tcase_add_test(tc, test_writev_through_layers);
    tcase_add_test(tc, test_writev_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("allocator");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_allocator_counts);
    tcase_add_test(tc, test_allocator_fails);
    tcase_add_test(tc, test_error_record_lazy);
    tcase_add_loop_test(tc, test_allocator_torture, 0,
                        (int)(sizeof torture_names / sizeof torture_names[0]));
    suite_add_tcase(s, tc);
    return s;
}
