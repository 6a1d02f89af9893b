/* SPDX-License-Identifier: MIT */
/*
 * Chains: echo through every combination of transport and decorator stack, a bulk transfer
 * through `tcp > buffered` against a raw socket, descriptor accounting over many open/close
 * cycles and whole-chain closes, and the shape of rill_describe() for whole chains.
 *
 * Every check compares exact bytes (memcmp against what was sent, plus a running checksum and
 * byte count), so a lost, duplicated or reordered byte anywhere in a chain fails a test.
 */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sanitizers slow byte loops (checksums) several times: the bulk transfer shrinks under them. */
#if defined(__SANITIZE_ADDRESS__)
#define CHAINS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHAINS_SANITIZED 1
#endif
#endif
#ifndef CHAINS_SANITIZED
#define CHAINS_SANITIZED 0
#endif

#define IO_TIMEOUT_MS 10000          /* no progress for this long is a failure */
#define MAX_LINE      1024u          /* limit of the lines layers in the echo tests */
#define LONGEST_LINE  400u           /* lines the echo tests send are 0..LONGEST_LINE bytes */
#define MAX_CHUNK     65536u         /* largest raw chunk of one echo step */
#define OP_BUF        (256u * 1024u) /* room for one echo step: lines plus a chunk */

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static size_t rng_below(uint64_t *x, size_t n)
{
    return (size_t)(rng_next(x) % n);
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Index of the first differing byte of two equally long buffers, or len if none. */
static size_t first_difference(const unsigned char *a, const unsigned char *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (a[i] != b[i])
            return i;
    }
    return len;
}

#define assert_ok(s, expr)                                                                       \
    do {                                                                                         \
        rill_status st_ = (expr);                                                                \
        ck_assert_msg(st_ == RILL_OK, "%s: %s (%s)", #expr, rill_strerror(st_), rill_errmsg(s)); \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Transports and stacks
 */

enum transport { T_TCP, T_UNIX_PATH, T_UNIX_ABSTRACT, T_FD, TRANSPORTS };

static const char *const transport_names[TRANSPORTS] = { "tcp", "unix(path)", "unix(@abstract)",
                                                         "fd(socketpair)" };

/* A decorator stack: optional buffered layer (sizes), optional lines layer on top. */
struct stack {
    const char *name;
    size_t read_size; /* 0: no buffered layer */
    size_t write_size;
    int lines;
};

static const struct stack stacks[] = {
    { "none", 0, 0, 0 },
    { "buffered", RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0 },
    { "lines", 0, 0, 1 },
    { "buffered > lines", RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 1 },
    { "buffered(1)", 1, 1, 0 },
    { "buffered(7)", 7, 7, 0 },
    { "buffered(7) > lines", 7, 7, 1 },
    { "buffered(r=1 w=7) > lines", 1, 7, 1 },
};
#define STACKS (sizeof stacks / sizeof stacks[0])

/* A connected pair of transports; *dir is set when a directory must be removed afterwards. */
static void make_transport(enum transport t, rill_stream **client, rill_stream **server, char *dir,
                           size_t dirlen)
{
    static unsigned counter;
    char path[160];
    int fds[2];
    rill_error err;
    dir[0] = '\0';
    switch (t) {
    case T_TCP: rt_tcp_pair(client, server); break;
    case T_UNIX_PATH:
        rt_mkdtemp(dir, dirlen);
        snprintf(path, sizeof path, "%s/chain.sock", dir);
        rt_unix_pair(path, client, server);
        break;
    case T_UNIX_ABSTRACT:
        snprintf(path, sizeof path, "@rill-chains-%ld-%u", (long)getpid(), counter++);
        rt_unix_pair(path, client, server);
        break;
    case T_FD:
        rt_socketpair(fds);
        ck_assert_msg(rill_fd_new(fds[0], fds[0], RILL_FD_OWN, client, &err) == RILL_OK,
                      "rill_fd_new: %s", err.msg);
        ck_assert_msg(rill_fd_new(fds[1], fds[1], RILL_FD_OWN, server, &err) == RILL_OK,
                      "rill_fd_new: %s", err.msg);
        break;
    default: ck_abort_msg("bad transport %d", (int)t);
    }
}

/* Put @p sp on top of @p s; returns the new top. */
static rill_stream *apply_stack(rill_stream *s, const struct stack *sp)
{
    rill_stream *top = s;
    if (sp->read_size) {
        rill_stream *b = NULL;
        assert_ok(top, rill_buffered_new(top, sp->read_size, sp->write_size, 0, &b));
        top = b;
    }
    if (sp->lines) {
        rill_stream *l = NULL;
        assert_ok(top, rill_lines_new(top, MAX_LINE, RILL_EOL_LF, 0, &l));
        top = l;
    }
    assert_ok(top, rill_set_timeouts(top, IO_TIMEOUT_MS, IO_TIMEOUT_MS));
    return top;
}

/* ---------------------------------------------------------------------------------------------
 * Echo server (a thread: reports failures in its struct, never through ck_assert)
 */

struct echo {
    rill_stream *s;
    uint64_t bytes;
    uint64_t sum;
    int failed;
    char why[RILL_ERRMSG_MAX + 128];
};

static void *echo_main(void *arg)
{
    static const size_t read_sizes[] = { 1, 3, 4096, 7, MAX_CHUNK, 100, 16384, 2, 512 };
    struct echo *e = arg;
    unsigned char *buf = malloc(MAX_CHUNK);
    if (buf == NULL) {
        e->failed = 1;
        snprintf(e->why, sizeof e->why, "echo: out of memory");
        return NULL;
    }
    for (size_t i = 0;; i++) {
        size_t want = read_sizes[i % (sizeof read_sizes / sizeof read_sizes[0])];
        size_t n = 0, w = 0;
        rill_status st = rill_read(e->s, buf, want, &n);
        if (st == RILL_EOF && n == 0)
            break;
        if (st != RILL_OK || n == 0 || n > want) {
            snprintf(e->why, sizeof e->why, "echo: read %zu: %s, n=%zu (%s)", want,
                     rill_strerror(st), n, rill_errmsg(e->s));
            e->failed = 1;
            break;
        }
        e->bytes += n;
        e->sum = rt_checksum(e->sum, buf, n);
        st = rill_write_all(e->s, buf, n, &w);
        if (st == RILL_OK)
            st = rill_flush(e->s);
        if (st != RILL_OK || w != n) {
            snprintf(e->why, sizeof e->why, "echo: write %zu: %s, wrote %zu (%s)", n,
                     rill_strerror(st), w, rill_errmsg(e->s));
            e->failed = 1;
            break;
        }
    }
    /* after a failure too, so the client sees the end at once rather than at its timeout */
    rill_status st = rill_shutdown(e->s);
    if (st != RILL_OK && !e->failed) {
        snprintf(e->why, sizeof e->why, "echo: shutdown: %s (%s)", rill_strerror(st),
                 rill_errmsg(e->s));
        e->failed = 1;
    }
    free(buf);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Echo client
 */

struct client {
    rill_stream *s;
    const struct stack *sp;
    uint64_t rng;
    unsigned piece; /* rotates write sizes and write functions */
    unsigned reads; /* rotates read sizes and read functions */
    uint64_t sent, sent_sum;
    uint64_t received, received_sum;
    unsigned char *scratch; /* receive buffer, OP_BUF bytes */
};

/* Write all of @p data with a mix of rill_write (partial counts) and rill_write_all, flush. */
static void client_send(struct client *c, const unsigned char *data, size_t len)
{
    static const size_t pieces[] = { 1, 5, 300, 8192, 2, 16385, 77, MAX_CHUNK, 4096 };
    size_t off = 0;
    while (off < len) {
        size_t want = min_size(pieces[c->piece % (sizeof pieces / sizeof pieces[0])], len - off);
        size_t n = 0;
        if (c->piece++ % 3 == 0) {
            assert_ok(c->s, rill_write(c->s, data + off, want, &n));
            ck_assert_msg(n >= 1 && n <= want, "rill_write of %zu reported %zu", want, n);
        } else {
            assert_ok(c->s, rill_write_all(c->s, data + off, want, &n));
            ck_assert_msg(n == want, "rill_write_all of %zu reported %zu", want, n);
        }
        off += n;
    }
    assert_ok(c->s, rill_flush(c->s));
    c->sent += len;
    c->sent_sum = rt_checksum(c->sent_sum, data, len);
}

/*
 * Read back exactly @p len bytes with rill_read (rotating sizes) or rill_read_full and compare
 * them with @p want. With @p may_overask, single reads may ask for more than is due: nothing
 * more was sent, so a correct chain still returns only what is due.
 */
static void client_expect_raw(struct client *c, const unsigned char *want, size_t len,
                              int may_overask)
{
    static const size_t sizes[] = { 1, 4096, 7, MAX_CHUNK, 3, 16384, 100, 32769 };
    size_t have = 0;
    if (c->reads++ % 4 == 0) {
        size_t n = 0;
        rill_status st = rill_read_full(c->s, c->scratch, len, &n);
        ck_assert_msg(st == RILL_OK && n == len, "read_full %zu: %s after %zu bytes (%s)", len,
                      rill_strerror(st), n, rill_errmsg(c->s));
        have = n;
    }
    while (have < len) {
        size_t ask = sizes[c->reads++ % (sizeof sizes / sizeof sizes[0])];
        if (!may_overask)
            ask = min_size(ask, len - have);
        size_t n = 0;
        rill_status st = rill_read(c->s, c->scratch + have, ask, &n);
        ck_assert_msg(st == RILL_OK, "read %zu at %zu of %zu: %s (%s)", ask, have, len,
                      rill_strerror(st), rill_errmsg(c->s));
        ck_assert_msg(n >= 1 && n <= ask, "read of %zu reported %zu", ask, n);
        ck_assert_msg(n <= len - have, "read returned %zu bytes, only %zu were sent", n,
                      len - have);
        /* compare as bytes arrive: a lost byte fails here instead of waiting for one more */
        size_t d = first_difference(c->scratch + have, want + have, n);
        ck_assert_msg(d == n, "%s: byte %zu of %zu differs: got 0x%02x, sent 0x%02x", c->sp->name,
                      have + d, len, c->scratch[have + d], want[have + d]);
        have += n;
    }
    size_t d = first_difference(c->scratch, want, len);
    ck_assert_msg(d == len, "%s: byte %zu of %zu differs: got 0x%02x, sent 0x%02x", c->sp->name, d,
                  len, c->scratch[d], want[d]);
    c->received += len;
    c->received_sum = rt_checksum(c->received_sum, c->scratch, len);
}

/* Read back @p count LF-terminated lines that make up want[0..len) with rill_read_line(_copy). */
static void client_expect_lines(struct client *c, const unsigned char *want, size_t len,
                                size_t count)
{
    static char copy[MAX_LINE + 1];
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        const unsigned char *nl = memchr(want + off, '\n', len - off);
        ck_assert_ptr_nonnull(nl);
        size_t expect_len = (size_t)(nl - (want + off));
        const char *line = NULL;
        size_t got_len = 0;
        if (c->reads++ % 5 == 0) {
            assert_ok(c->s, rill_read_line_copy(c->s, copy, sizeof copy, &got_len));
            line = copy;
        } else {
            assert_ok(c->s, rill_read_line(c->s, &line, &got_len));
        }
        ck_assert_msg(got_len == expect_len, "line %zu: length %zu, sent %zu", i, got_len,
                      expect_len);
        ck_assert_msg(memcmp(line, want + off, expect_len) == 0, "line %zu: content differs", i);
        ck_assert_msg(line[got_len] == '\0', "line %zu is not NUL-terminated", i);
        c->received_sum = rt_checksum(c->received_sum, line, got_len);
        c->received_sum = rt_checksum(c->received_sum, "\n", 1);
        off += expect_len + 1;
    }
    ck_assert_uint_eq(off, len);
    c->received += len;
}

/* Append @p count random lines (no LF inside, any other byte) to @p buf; returns bytes added. */
static size_t make_lines(struct client *c, unsigned char *buf, size_t count)
{
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = rng_below(&c->rng, LONGEST_LINE + 1);
        rt_fill_pattern(buf + off, n, rng_next(&c->rng));
        for (size_t j = 0; j < n; j++) {
            if (buf[off + j] == '\n')
                buf[off + j] = 'x';
        }
        buf[off + n] = '\n';
        off += n + 1;
    }
    return off;
}

enum echo_op { OP_RAW, OP_LINES, OP_LINES_THEN_RAW, OP_RAW_THEN_LINES, OPS };

/* One echo step: send a mix, read it back the way the stack allows, compare. */
static void echo_step(struct client *c, unsigned char *out)
{
    static const size_t chunks[] = { 1,    2,     7,     13,    100,   1000,     4095,
                                     4096, 16383, 16384, 16385, 32768, MAX_CHUNK };
    enum echo_op op = (enum echo_op)rng_below(&c->rng, OPS);
    size_t chunk = chunks[rng_below(&c->rng, sizeof chunks / sizeof chunks[0])];
    size_t count = 1 + rng_below(&c->rng, 40);
    size_t lines_len = 0;

    switch (op) {
    case OP_RAW:
        rt_fill_pattern(out, chunk, rng_next(&c->rng));
        client_send(c, out, chunk);
        client_expect_raw(c, out, chunk, 1);
        break;
    case OP_LINES:
        lines_len = make_lines(c, out, count);
        client_send(c, out, lines_len);
        if (c->sp->lines)
            client_expect_lines(c, out, lines_len, count);
        else
            client_expect_raw(c, out, lines_len, 0);
        break;
    case OP_LINES_THEN_RAW:
        /* raw bytes after lines: rill_read on a lines stream returns what it buffered first */
        lines_len = make_lines(c, out, count);
        rt_fill_pattern(out + lines_len, chunk, rng_next(&c->rng));
        client_send(c, out, lines_len + chunk);
        if (c->sp->lines) {
            client_expect_lines(c, out, lines_len, count);
            client_expect_raw(c, out + lines_len, chunk, 1);
        } else {
            client_expect_raw(c, out, lines_len + chunk, 1);
        }
        break;
    case OP_RAW_THEN_LINES:
        rt_fill_pattern(out, chunk, rng_next(&c->rng));
        lines_len = make_lines(c, out + chunk, count);
        client_send(c, out, chunk + lines_len);
        if (c->sp->lines) {
            client_expect_raw(c, out, chunk, 0);
            client_expect_lines(c, out + chunk, lines_len, count);
        } else {
            client_expect_raw(c, out, chunk + lines_len, 1);
        }
        break;
    default: ck_abort();
    }
}

/* Loop index: transport = i / STACKS, stack = i % STACKS. */
START_TEST(test_echo_every_chain)
{
    enum transport t = (enum transport)((size_t)_i / STACKS);
    const struct stack *sp = &stacks[(size_t)_i % STACKS];
    int fds_before = rt_count_fds();
    char dir[64];
    rill_stream *client = NULL, *server = NULL;
    make_transport(t, &client, &server, dir, sizeof dir);

    struct client c = { .sp = sp, .rng = 0x2545f4914f6cdd1dull + (uint64_t)_i };
    c.s = apply_stack(client, sp);
    struct echo e = { .s = apply_stack(server, sp) };
    unsigned char *out = malloc(OP_BUF);
    c.scratch = malloc(OP_BUF);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(c.scratch);

    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, echo_main, &e), 0);
    for (int step = 0; step < 60; step++)
        echo_step(&c, out);

    /*
     * A last few bytes written without a flush: rill_shutdown must push them out before the
     * half-close. The echo then sees EOF, shuts down its side, and we see EOF after them.
     */
    static const char tail[] = "tail bytes that only rill_shutdown flushes";
    size_t n = 0;
    assert_ok(c.s, rill_write_all(c.s, tail, sizeof tail - 1, &n));
    ck_assert_uint_eq(n, sizeof tail - 1);
    assert_ok(c.s, rill_shutdown(c.s));
    c.sent += sizeof tail - 1;
    c.sent_sum = rt_checksum(c.sent_sum, tail, sizeof tail - 1);
    memcpy(out, tail, sizeof tail - 1);
    client_expect_raw(&c, out, sizeof tail - 1, 1);
    rill_status st;
    if (sp->lines) {
        const char *line = NULL;
        st = rill_read_line(c.s, &line, &n);
        ck_assert_msg(st == RILL_EOF, "read_line at end: %s (%s)", rill_strerror(st),
                      rill_errmsg(c.s));
    } else {
        st = rill_read(c.s, c.scratch, 100, &n);
        ck_assert_msg(st == RILL_EOF && n == 0, "read at end: %s, n=%zu (%s)", rill_strerror(st), n,
                      rill_errmsg(c.s));
    }
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(!e.failed, "%s", e.why);

    ck_assert_uint_eq(e.bytes, c.sent);
    ck_assert_uint_eq(c.received, c.sent);
    ck_assert_msg(e.sum == c.sent_sum, "echo server saw other bytes than were sent");
    ck_assert_msg(c.received_sum == c.sent_sum, "checksum of echoed bytes differs");
    ck_assert_uint_gt(c.sent, 100000);

    ck_assert_int_eq(rill_close(c.s), RILL_OK);
    ck_assert_int_eq(rill_close(e.s), RILL_OK);
    if (dir[0])
        ck_assert_msg(rmdir(dir) == 0, "socket directory not empty after listener free: %s",
                      strerror(errno));
    ck_assert_int_eq(rt_count_fds(), fds_before);
    free(out);
    free(c.scratch);
    fprintf(stderr, "chains: echo %s > %s: %llu bytes ok\n", transport_names[t], sp->name,
            (unsigned long long)c.sent);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Bulk transfer: `tcp > buffered` on one side, a raw blocking socket on the other
 */

#define BULK_PERIOD ((1u << 20) + 9u) /* pattern period, not a multiple of any I/O size */

struct bulk {
    rill_stream *s; /* the rill side */
    int fd;         /* the raw side */
    uint64_t size;
    const unsigned char *pattern;
    uint64_t done; /* bytes written by the writer thread */
    uint64_t sum;
    int failed;
    char why[RILL_ERRMSG_MAX + 128];
};

static const size_t bulk_write_sizes[] = { 65536, 1, 16384, 100, 131072, 7, 4096, 16385, 200000 };
static const size_t bulk_read_sizes[] = { 65536, 1, 7, 200000, 16384, 4095, 8192, 131072 };

/* Writer thread: rill_write (buffered) or write(2), in a mix of sizes; then half-close. */
static void *bulk_writer(void *arg)
{
    struct bulk *b = arg;
    size_t k = 0;
    while (b->done < b->size) {
        size_t off = (size_t)(b->done % BULK_PERIOD);
        size_t n = bulk_write_sizes[k++ % (sizeof bulk_write_sizes / sizeof bulk_write_sizes[0])];
        /* the last 1000 bytes go in small writes, so the buffer holds some at shutdown */
        uint64_t left = b->size - b->done;
        n = left <= 1000 ? 7 : (size_t)min_size(n, (size_t)(left - 1000));
        n = min_size(min_size(n, BULK_PERIOD - off), (size_t)left);
        size_t w = 0;
        if (b->s) {
            rill_status st = rill_write(b->s, b->pattern + off, n, &w);
            if (st != RILL_OK || w == 0 || w > n) {
                snprintf(b->why, sizeof b->why, "rill_write %zu at %llu: %s, w=%zu (%s)", n,
                         (unsigned long long)b->done, rill_strerror(st), w, rill_errmsg(b->s));
                b->failed = 1;
                return NULL;
            }
        } else {
            ssize_t r = write(b->fd, b->pattern + off, n);
            if (r <= 0) {
                snprintf(b->why, sizeof b->why, "write: %s", strerror(errno));
                b->failed = 1;
                return NULL;
            }
            w = (size_t)r;
        }
        b->sum = rt_checksum(b->sum, b->pattern + off, w);
        b->done += w;
    }
    if (b->s) {
        /* no rill_flush: rill_shutdown must push out what the buffer holds before the FIN */
        rill_status st = rill_shutdown(b->s);
        if (st != RILL_OK) {
            snprintf(b->why, sizeof b->why, "rill_shutdown: %s (%s)", rill_strerror(st),
                     rill_errmsg(b->s));
            b->failed = 1;
        }
    } else if (shutdown(b->fd, SHUT_WR) != 0) {
        snprintf(b->why, sizeof b->why, "shutdown: %s", strerror(errno));
        b->failed = 1;
    }
    return NULL;
}

static int raw_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

/* _i = 0: rill writes (tcp > buffered, from rill_tcp_connect_addr), raw reads.
 * _i = 1: raw writes, rill reads (tcp > buffered, from rill_listen/rill_accept). */
START_TEST(test_bulk_transfer)
{
    const int rill_writes = _i == 0;
    const uint64_t size = CHAINS_SANITIZED ? 128ull << 20 : 1ull << 30;
    unsigned char *pattern = malloc(BULK_PERIOD);
    unsigned char *buf = malloc(200000);
    ck_assert_ptr_nonnull(pattern);
    ck_assert_ptr_nonnull(buf);
    rt_fill_pattern(pattern, BULK_PERIOD, 0xb01cull + (uint64_t)_i);

    rill_error err;
    rill_stream *tcp = NULL, *s = NULL;
    int fd;
    if (rill_writes) {
        uint16_t port;
        int lfd = raw_listen(&port);
        ck_assert_msg(rill_tcp_connect_addr("127.0.0.1", port, NULL, &tcp, &err) == RILL_OK,
                      "connect: %s", err.msg);
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        close(lfd);
    } else {
        rill_listener *l = NULL;
        ck_assert_msg(rill_listen("127.0.0.1", 0, NULL, &l, &err) == RILL_OK, "listen: %s",
                      err.msg);
        fd = raw_connect(rill_listener_port(l));
        ck_assert_msg(rill_accept(l, 5000, &tcp, &err) == RILL_OK, "accept: %s", err.msg);
        rill_listener_free(l);
    }
    assert_ok(
        tcp, rill_buffered_new(tcp, RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0, &s));
    assert_ok(s, rill_set_timeouts(s, IO_TIMEOUT_MS, IO_TIMEOUT_MS));
    struct timeval tv = { IO_TIMEOUT_MS / 1000, 0 };
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);

    struct bulk b = { .s = rill_writes ? s : NULL, .fd = fd, .size = size, .pattern = pattern };
    pthread_t th;
    int64_t t0 = rt_now_us();
    ck_assert_int_eq(pthread_create(&th, NULL, bulk_writer, &b), 0);

    uint64_t got = 0, sum = 0;
    size_t k = 0;
    for (;;) {
        size_t ask = bulk_read_sizes[k++ % (sizeof bulk_read_sizes / sizeof bulk_read_sizes[0])];
        size_t n = 0;
        if (rill_writes) {
            ssize_t r = read(fd, buf, ask);
            ck_assert_msg(r >= 0, "read after %llu bytes: %s", (unsigned long long)got,
                          strerror(errno));
            if (r == 0)
                break;
            n = (size_t)r;
        } else {
            rill_status st = rill_read(s, buf, ask, &n);
            if (st == RILL_EOF) {
                ck_assert_uint_eq(n, 0);
                break;
            }
            ck_assert_msg(st == RILL_OK && n >= 1 && n <= ask,
                          "rill_read %zu after %llu bytes: %s, n=%zu (%s)", ask,
                          (unsigned long long)got, rill_strerror(st), n, rill_errmsg(s));
        }
        /* cheap exact check as we go: the stream is the pattern repeated */
        size_t off = (size_t)(got % BULK_PERIOD);
        for (size_t done = 0; done < n;) {
            size_t part = min_size(n - done, BULK_PERIOD - off);
            ck_assert_msg(memcmp(buf + done, pattern + off, part) == 0,
                          "bytes differ in [%llu, %llu)", (unsigned long long)(got + done),
                          (unsigned long long)(got + done + part));
            done += part;
            off = 0;
        }
        sum = rt_checksum(sum, buf, n);
        got += n;
        ck_assert_msg(got <= size, "received %llu bytes, more than the %llu sent",
                      (unsigned long long)got, (unsigned long long)size);
    }
    int64_t t1 = rt_now_us();
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(!b.failed, "%s", b.why);
    ck_assert_uint_eq(b.done, size);
    ck_assert_uint_eq(got, size);
    ck_assert_msg(sum == b.sum, "checksum differs: received %016llx, sent %016llx",
                  (unsigned long long)sum, (unsigned long long)b.sum);
    fprintf(stderr, "chains: bulk %s %llu MiB (%s) in %.2f s, checksum %016llx ok\n",
            rill_writes ? "tcp > buffered -> raw socket" : "raw socket -> tcp > buffered",
            (unsigned long long)(size >> 20), CHAINS_SANITIZED ? "sanitizer size" : "full size",
            (double)(t1 - t0) / 1e6, (unsigned long long)sum);

    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(fd);
    free(pattern);
    free(buf);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Descriptors
 */

/* A full client chain tcp > buffered > lines on a fresh connection, 10,000 times. */
START_TEST(test_fd_count_open_close_cycles)
{
    rill_error err;
    rill_listener *l = NULL;
    ck_assert_msg(rill_listen("127.0.0.1", 0, NULL, &l, &err) == RILL_OK, "listen: %s", err.msg);
    int before = rt_count_fds();
    for (int i = 0; i < 10000; i++) {
        rill_stream *tcp = NULL, *buf = NULL, *top = NULL, *server = NULL;
        ck_assert_msg(rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &tcp, &err) ==
                          RILL_OK,
                      "cycle %d: connect: %s", i, err.msg);
        assert_ok(tcp, rill_buffered_new(tcp, RILL_BUFFERED_DEFAULT_SIZE,
                                         RILL_BUFFERED_DEFAULT_SIZE, 0, &buf));
        assert_ok(buf, rill_lines_new(buf, RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, 0, &top));
        ck_assert_msg(rill_accept(l, 5000, &server, &err) == RILL_OK, "cycle %d: accept: %s", i,
                      err.msg);
        assert_ok(top, rill_set_timeouts(top, IO_TIMEOUT_MS, IO_TIMEOUT_MS));

        char msg[32];
        int mlen = snprintf(msg, sizeof msg, "cycle %d\n", i);
        assert_ok(server, rill_write_all(server, msg, (size_t)mlen, NULL));
        const char *line = NULL;
        size_t len = 0;
        assert_ok(top, rill_read_line(top, &line, &len));
        ck_assert_uint_eq(len, (size_t)mlen - 1);
        ck_assert_msg(memcmp(line, msg, len) == 0, "cycle %d: got \"%s\"", i, line);
        /* the client writes through the chain too */
        assert_ok(top, rill_write_all(top, "x", 1, NULL));
        assert_ok(top, rill_flush(top));
        char x = 0;
        assert_ok(server, rill_read_full(server, &x, 1, NULL));
        ck_assert_int_eq(x, 'x');

        /* the server closes first so TIME_WAIT stays on its side, not on ephemeral ports */
        ck_assert_int_eq(rill_close(server), RILL_OK);
        ck_assert_int_eq(rill_close(top), RILL_OK);
        if (i == 0 || i == 999)
            ck_assert_int_eq(rt_count_fds(), before);
    }
    ck_assert_int_eq(rt_count_fds(), before);
    rill_listener_free(l);
}
END_TEST

/* rill_close of the top closes the whole chain; RILL_BORROW stops the walk. Loop: transport. */
START_TEST(test_close_whole_chain)
{
    enum transport t = (enum transport)_i;
    int before = rt_count_fds();
    char dir[64];
    rill_stream *client = NULL, *server = NULL, *buf = NULL, *top = NULL;
    make_transport(t, &client, &server, dir, sizeof dir);
    ck_assert_int_eq(rt_count_fds(), before + 2);
    int client_fd = rill_fd(client);
    ck_assert_int_ge(client_fd, 0);
    assert_ok(server, rill_set_timeouts(server, IO_TIMEOUT_MS, IO_TIMEOUT_MS));

    /* borrowed: closing lines leaves buffered > transport open and working */
    assert_ok(client, rill_buffered_new(client, 64, 64, 0, &buf));
    assert_ok(buf, rill_lines_new(buf, 100, RILL_EOL_LF, RILL_BORROW, &top));
    assert_ok(top, rill_write_all(top, "held", 4, NULL)); /* sits in buffered's write buffer */
    ck_assert_int_eq(rill_close(top), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before + 2);
    ck_assert(rt_fd_is_open(client_fd));
    assert_ok(buf, rill_write_all(buf, "+more", 5, NULL));
    assert_ok(buf, rill_flush(buf));
    char got[16] = "";
    size_t n = 0;
    assert_ok(server, rill_read_full(server, got, 9, &n));
    ck_assert_msg(memcmp(got, "held+more", 9) == 0, "got \"%.9s\"", got);

    /* owned: lines > buffered > transport, closed from the top, closes the descriptor */
    assert_ok(buf, rill_lines_new(buf, 100, RILL_EOL_LF, 0, &top));
    assert_ok(top, rill_write_all(top, "last\n", 5, NULL)); /* flushed by rill_close */
    ck_assert_int_eq(rill_close(top), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before + 1);
    ck_assert(!rt_fd_is_open(client_fd));
    memset(got, 0, sizeof got);
    assert_ok(server, rill_read_full(server, got, 5, &n));
    ck_assert_msg(memcmp(got, "last\n", 5) == 0, "got \"%.5s\"", got);
    rill_status st = rill_read(server, got, sizeof got, &n);
    ck_assert_msg(st == RILL_EOF, "peer of a closed chain reads %s, not EOF", rill_strerror(st));

    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before);
    if (dir[0])
        rt_rmdir(dir);
}
END_TEST

/*
 * Issue 10 through a deeper chain: lines(ANY) > buffered(BORROW) > transport. The line reader
 * owes the LF of a line that ended at the last CR received; closing the chain down to the
 * borrowed transport reports it (RILL_E_PENDING_DATA, the reason on the transport, naming the
 * layer), because the LF would otherwise reach the transport's next reader. Loop: transport.
 */
START_TEST(test_close_borrowing_chain_owing_lf)
{
    enum transport t = (enum transport)_i;
    int before = rt_count_fds();
    char dir[64];
    rill_stream *client = NULL, *server = NULL, *buf = NULL, *top = NULL;
    make_transport(t, &client, &server, dir, sizeof dir);
    assert_ok(client, rill_set_timeouts(client, IO_TIMEOUT_MS, IO_TIMEOUT_MS));
    assert_ok(client, rill_buffered_new(client, 64, 64, RILL_BORROW, &buf));
    assert_ok(buf, rill_lines_new(buf, 100, RILL_EOL_ANY, 0, &top));
    assert_ok(server, rill_write_all(server, "A\r", 2, NULL));
    const char *line = NULL;
    size_t len = 0;
    assert_ok(top, rill_read_line(top, &line, &len));
    ck_assert_uint_eq(len, 1);
    ck_assert_int_eq(line[0], 'A');
    ck_assert_uint_eq(rill_pending(top), 1);
    ck_assert_uint_eq(rill_pending(client), 0);
    char want[256];
    snprintf(want, sizeof want,
             "rill_close: 1 pending byte in lines(max=100 eol=any LF owed) did not carry over "
             "to the borrowed %s stream",
             rill_kind(client));
    rt_assert_error(client, rill_close(top), RILL_E_PENDING_DATA, want);
    assert_ok(server, rill_write_all(server, "\nZ", 2, NULL));
    char got[2];
    size_t n = 0;
    assert_ok(client, rill_read_full(client, got, 2, &n));
    ck_assert_msg(memcmp(got, "\nZ", 2) == 0, "got \"%.2s\"", got);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before);
    if (dir[0])
        rt_rmdir(dir);
}
END_TEST

/* rill_fd_new without RILL_FD_OWN leaves the descriptors to the caller, however deep. */
START_TEST(test_close_borrowed_fd)
{
    int fds[2];
    rt_socketpair(fds);
    int before = rt_count_fds();
    rill_error err;
    rill_stream *fd = NULL, *buf = NULL, *top = NULL;
    ck_assert_msg(rill_fd_new(fds[0], fds[0], 0, &fd, &err) == RILL_OK, "%s", err.msg);
    assert_ok(fd, rill_buffered_new(fd, 16, 16, 0, &buf));
    assert_ok(buf, rill_lines_new(buf, 100, RILL_EOL_LF, 0, &top));
    assert_ok(top, rill_write_all(top, "ping\n", 5, NULL));
    ck_assert_int_eq(rill_close(top), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before);
    ck_assert(rt_fd_is_open(fds[0]));
    char got[8] = "";
    ck_assert_int_eq(read(fds[1], got, sizeof got), 5);
    ck_assert_msg(memcmp(got, "ping\n", 5) == 0, "got \"%.5s\"", got);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * rill_describe of whole chains
 */

static void endpoint(int fd, int peer, char *buf, size_t len)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &sl)
                 : getsockname(fd, (struct sockaddr *)&sa, &sl);
    ck_assert_int_eq(r, 0);
    char ip[INET_ADDRSTRLEN];
    ck_assert_ptr_nonnull(inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip));
    snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
}

static void assert_describe(const rill_stream *s, const char *want)
{
    char buf[512];
    size_t n = rill_describe(s, buf, sizeof buf);
    ck_assert_msg(strcmp(buf, want) == 0, "describe:\n  got  \"%s\"\n  want \"%s\"", buf, want);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_uint_eq(rill_describe(s, NULL, 0), n);
    /* truncation keeps a NUL-terminated prefix and still reports the full length */
    char small[12];
    memset(small, 'Z', sizeof small);
    ck_assert_uint_eq(rill_describe(s, small, sizeof small), n);
    ck_assert_msg(strlen(small) == sizeof small - 1 && strncmp(small, want, sizeof small - 1) == 0,
                  "truncated describe \"%.12s\"", small);
}

START_TEST(test_describe_tcp_chain)
{
    rill_stream *client = NULL, *server = NULL, *cb = NULL, *ctop = NULL, *sb = NULL;
    rt_tcp_pair(&client, &server);
    int cfd = rill_fd(client), sfd = rill_fd(server);
    char local[64], peer[64], want[512];
    endpoint(cfd, 0, local, sizeof local);
    endpoint(cfd, 1, peer, sizeof peer);

    snprintf(want, sizeof want, "tcp(fd=%d %s > %s)", cfd, local, peer);
    assert_describe(client, want);
    assert_ok(client, rill_buffered_new(client, RILL_BUFFERED_DEFAULT_SIZE,
                                        RILL_BUFFERED_DEFAULT_SIZE, 0, &cb));
    assert_ok(cb, rill_lines_new(cb, RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, 0, &ctop));
    snprintf(want, sizeof want, "lines(max=8192 eol=lf) > buffered(16384) > tcp(fd=%d %s > %s)",
             cfd, local, peer);
    assert_describe(ctop, want);

    /* the accepted end names the same endpoints from its side */
    assert_ok(server, rill_buffered_new(server, 1, 7, 0, &sb));
    snprintf(want, sizeof want, "buffered(r=1 w=7) > tcp(fd=%d %s < %s)", sfd, peer, local);
    assert_describe(sb, want);

    ck_assert_str_eq(rill_kind(ctop), "lines");
    ck_assert_ptr_eq(rill_find(ctop, RILL_LAYER_LINES), ctop);
    ck_assert_ptr_eq(rill_find(ctop, RILL_LAYER_BUFFERED), cb);
    ck_assert_ptr_eq(rill_find(ctop, RILL_LAYER_TCP), client);
    ck_assert_ptr_null(rill_find(ctop, RILL_LAYER_TLS));
    ck_assert_ptr_null(rill_find(sb, RILL_LAYER_LINES));
    ck_assert_int_eq(rill_fd(ctop), cfd);
    ck_assert_int_eq(rill_fd(sb), sfd);
    ck_assert_int_eq(rill_close(ctop), RILL_OK);
    ck_assert_int_eq(rill_close(sb), RILL_OK);
}
END_TEST

START_TEST(test_describe_unix_and_fd_chains)
{
    char dir[64], path[128], want[512];
    rill_stream *client = NULL, *server = NULL, *b = NULL, *top = NULL;
    rt_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/d.sock", dir);
    rt_unix_pair(path, &client, &server);
    assert_ok(client, rill_buffered_new(client, 7, 7, 0, &b));
    assert_ok(b, rill_lines_new(b, 100, RILL_EOL_CRLF, 0, &top));
    snprintf(want, sizeof want, "lines(max=100 eol=crlf) > buffered(7) > unix(fd=%d %s)",
             rill_fd(client), path);
    assert_describe(top, want);
    snprintf(want, sizeof want, "unix(fd=%d %s accepted)", rill_fd(server), path);
    assert_describe(server, want);
    ck_assert_int_eq(rill_close(top), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    rt_rmdir(dir);

    int fds[2];
    rill_error err;
    rt_socketpair(fds);
    ck_assert_msg(rill_fd_new(fds[0], fds[0], RILL_FD_OWN, &client, &err) == RILL_OK, "%s",
                  err.msg);
    assert_ok(client, rill_lines_new(client, 64, RILL_EOL_ANY, 0, &top));
    snprintf(want, sizeof want, "lines(max=64 eol=any) > fd(%d owned)", fds[0]);
    assert_describe(top, want);
    ck_assert_int_eq(rill_close(top), RILL_OK);
    ck_assert(!rt_fd_is_open(fds[0]));
    close(fds[1]);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("chains");

    TCase *tc = tcase_create("echo");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_echo_every_chain, 0, (int)(TRANSPORTS * STACKS));
    suite_add_tcase(s, tc);

    tc = tcase_create("bulk");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_bulk_transfer, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("descriptors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fd_count_open_close_cycles);
    tcase_add_loop_test(tc, test_close_whole_chain, 0, TRANSPORTS);
    tcase_add_test(tc, test_close_borrowed_fd);
    tcase_add_loop_test(tc, test_close_borrowing_chain_owing_lf, 0, TRANSPORTS);
    suite_add_tcase(s, tc);

    tc = tcase_create("describe");
    tcase_add_test(tc, test_describe_tcp_chain);
    tcase_add_test(tc, test_describe_unix_and_fd_chains);
    suite_add_tcase(s, tc);
    return s;
}
