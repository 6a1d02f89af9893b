/* SPDX-License-Identifier: MIT */
/*
 * The lines decorator over real sockets: every line-ending mode, table-driven and fed in
 * different splits (all at once, one byte at a time, random chunks from a thread), the line
 * limit and what stays readable around an overlong line, strict CRLF errors, the lone CR that
 * must not block, end of stream, NUL bytes, timeouts, memory and argument checks.
 *
 * The layer sits over an fd transport on one end of a socketpair; the test writes the other
 * end with raw write(2). In non-blocking mode each written byte is readable at once on an
 * AF_UNIX pair, which lets a test place read boundaries exactly.
 */
#include "support.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static rill_stream *lines_over(rill_stream *inner, size_t max_line, rill_eol eol)
{
    rill_stream *l = NULL;
    rill_status st = rill_lines_new(inner, max_line, eol, 0, &l);
    ck_assert_msg(st == RILL_OK, "rill_lines_new: %s", rill_errmsg(inner));
    return l;
}

static rill_stream *lines_end(size_t max_line, rill_eol eol, int *peer)
{
    return lines_over(rt_fd_end(peer), max_line, eol);
}

static void peer_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_msg(r > 0, "peer write: %s", strerror(errno));
        p += r;
        len -= (size_t)r;
    }
}

static void peer_str(int fd, const char *s)
{
    peer_write(fd, s, strlen(s));
}

/* Read one line and check it is exactly @p want (a C string: no NUL inside). */
static void expect_line(rill_stream *s, const char *want)
{
    const char *line = NULL;
    size_t len = 99;
    rill_status st = rill_read_line(s, &line, &len);
    ck_assert_msg(st == RILL_OK, "rill_read_line: %s (%s), wanted \"%s\"", rill_strerror(st),
                  rill_errmsg(s), want);
    ck_assert_ptr_nonnull(line);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(line, want, len);
    ck_assert_int_eq(line[len], '\0');
}

static void expect_eof(rill_stream *s)
{
    const char *line = "sentinel";
    size_t len = 99;
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_EOF);
    ck_assert_ptr_null(line);
    ck_assert_uint_eq(len, 0);
}

static const char *eol_text(rill_eol eol)
{
    return eol == RILL_EOL_LF ? "\n" : "\r\n";
}

/* Writes pieces (or one buffer in pseudo-random chunks) in a thread, then half-closes. */
struct feed {
    int fd;
    const char *data;
    size_t len;
    const char *const *pieces; /* instead of data: NULL-terminated list, one write each */
    unsigned delay_us;
    int error;
    pthread_t th;
};

static void feed_write(struct feed *f, const char *p, size_t n)
{
    while (n > 0 && f->error == 0) {
        ssize_t r = write(f->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            f->error = errno;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

static void *feed_main(void *arg)
{
    struct feed *f = arg;
    if (f->pieces) {
        for (const char *const *p = f->pieces; *p; p++) {
            feed_write(f, *p, strlen(*p));
            usleep(f->delay_us);
        }
    } else {
        size_t off = 0, step = 1;
        while (off < f->len && f->error == 0) {
            step = step * 7 % 5003 + 1;
            size_t n = f->len - off < step ? f->len - off : step;
            feed_write(f, f->data + off, n);
            off += n;
            if (f->delay_us)
                usleep(f->delay_us);
        }
    }
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void feed_start(struct feed *f)
{
    ck_assert_int_eq(pthread_create(&f->th, NULL, feed_main, f), 0);
}

static void feed_join(struct feed *f)
{
    pthread_join(f->th, NULL);
    ck_assert_int_eq(f->error, 0);
}

/* Allocator that counts live bytes and can be told to fail (process-wide: restore after). */

/* ---- every mode, table-driven, in three ways of splitting the input ---- */

struct eol_case {
    rill_eol eol;
    const char *input;
    const char *lines[10]; /* expected, NULL-terminated; then RILL_EOF */
};

static const struct eol_case eol_cases[] = {
    { RILL_EOL_LF, "a\nbc\r\n\r\n\nlast", { "a", "bc\r", "\r", "", "last" } },
    { RILL_EOL_LF, "one\n", { "one" } },
    { RILL_EOL_LF, "", { NULL } },
    { RILL_EOL_LF, "\r\r\n\rx", { "\r\r", "\rx" } },
    { RILL_EOL_CRLF, "a\r\nbc\r\n\r\nlast", { "a", "bc", "", "last" } },
    { RILL_EOL_CRLF, "x\r\n", { "x" } },
    { RILL_EOL_CRLF, "\r\n\r\n", { "", "" } },
    { RILL_EOL_ANY, "a\nb\r\nc\rd\r\r\n\n\re", { "a", "b", "c", "d", "", "", "", "e" } },
    { RILL_EOL_ANY, "\r\n\r\n", { "", "" } },
    { RILL_EOL_ANY, "tail\r", { "tail" } },
    { RILL_EOL_ANY, "\n\n\r\r", { "", "", "", "" } },
};

#define N_EOL_CASES (int)(sizeof eol_cases / sizeof eol_cases[0])
enum { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_THREAD, N_SPLITS };

struct collected {
    char *lines[16];
    size_t n;
};

static void collect(struct collected *c, const char *line, size_t len)
{
    ck_assert_uint_lt(c->n, 16);
    c->lines[c->n] = strndup(line, len);
    ck_assert_uint_eq(strlen(c->lines[c->n]), len);
    c->n++;
}

/* Read lines until WANT_READ (non-blocking) or EOF; returns the last status. */
static rill_status drain_lines(rill_stream *s, struct collected *c)
{
    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_read_line(s, &line, &len);
        if (st != RILL_OK)
            return st;
        collect(c, line, len);
    }
}

START_TEST(test_eol_modes)
{
    const struct eol_case *tc = &eol_cases[_i / N_SPLITS];
    int split = _i % N_SPLITS;
    int peer;
    rill_stream *s = lines_end(64, tc->eol, &peer);
    struct collected got = { { NULL }, 0 };
    size_t in_len = strlen(tc->input);
    rill_status st;
    if (split == SPLIT_WHOLE) {
        peer_write(peer, tc->input, in_len);
        shutdown(peer, SHUT_WR);
        st = drain_lines(s, &got);
    } else if (split == SPLIT_BYTES) {
        ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
        for (size_t i = 0; i < in_len; i++) {
            peer_write(peer, tc->input + i, 1);
            ck_assert_int_eq(drain_lines(s, &got), RILL_WANT_READ);
        }
        shutdown(peer, SHUT_WR);
        st = drain_lines(s, &got);
    } else {
        char *copy = strdup(tc->input);
        struct feed f = { .fd = peer, .data = copy, .len = in_len, .delay_us = 300 };
        feed_start(&f);
        st = drain_lines(s, &got);
        feed_join(&f);
        free(copy);
    }
    ck_assert_msg(st == RILL_EOF, "case %d split %d: %s (%s)", _i / N_SPLITS, split,
                  rill_strerror(st), rill_errmsg(s));
    size_t want_n = 0;
    while (tc->lines[want_n])
        want_n++;
    ck_assert_msg(got.n == want_n, "case %d split %d: %zu lines, wanted %zu", _i / N_SPLITS, split,
                  got.n, want_n);
    for (size_t i = 0; i < want_n; i++)
        ck_assert_str_eq(got.lines[i], tc->lines[i]);
    for (size_t i = 0; i < got.n; i++)
        free(got.lines[i]);
    /* EOF stays EOF. */
    expect_eof(s);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* Random lines with random endings in random chunks: the reader must see exactly them. */
START_TEST(test_random_lines_random_chunks)
{
    rill_eol eol = (rill_eol)_i;
    int peer;
    rill_stream *s = lines_end(300, eol, &peer);
    enum { NLINES = 3000 };
    static size_t lens[NLINES];
    size_t cap = (size_t)NLINES * 303, len = 0;
    char *data = malloc(cap);
    ck_assert_ptr_nonnull(data);
    unsigned char rnd[NLINES * 2];
    rt_fill_pattern(rnd, sizeof rnd, 77 + (uint64_t)_i);
    bool after_cr = false;
    for (size_t i = 0; i < NLINES; i++) {
        lens[i] = (size_t)rnd[2 * i] * 300 / 255;
        /* An empty LF line right after a lone CR would read as one CRLF. */
        if (after_cr && lens[i] == 0)
            lens[i] = 1;
        after_cr = false;
        for (size_t j = 0; j < lens[i]; j++)
            data[len++] = (char)('a' + (i + j) % 26);
        unsigned pick = rnd[2 * i + 1] % 3;
        if (eol == RILL_EOL_LF || (eol == RILL_EOL_ANY && pick == 0)) {
            data[len++] = '\n';
        } else if (eol == RILL_EOL_CRLF || pick == 1) {
            data[len++] = '\r';
            data[len++] = '\n';
        } else {
            data[len++] = '\r';
            after_cr = true;
        }
    }
    struct feed f = { .fd = peer, .data = data, .len = len, .delay_us = 20 };
    feed_start(&f);
    for (size_t i = 0; i < NLINES; i++) {
        const char *line;
        size_t n;
        rill_status st = rill_read_line(s, &line, &n);
        ck_assert_msg(st == RILL_OK, "line %zu: %s", i, rill_errmsg(s));
        ck_assert_uint_eq(n, lens[i]);
        for (size_t j = 0; j < n; j++)
            ck_assert_int_eq(line[j], 'a' + (int)((i + j) % 26));
    }
    expect_eof(s);
    feed_join(&f);
    free(data);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* ---- the line limit ---- */

static const rill_eol limit_modes[] = { RILL_EOL_LF, RILL_EOL_CRLF, RILL_EOL_ANY };

/* Overlong line in each mode: the bytes stay readable, or skip_line moves past them. */
START_TEST(test_overlong_line_keeps_bytes)
{
    rill_eol eol = limit_modes[_i / 2];
    bool use_skip = _i % 2;
    const char *e = eol_text(eol);
    int peer;
    rill_stream *s = lines_end(10, eol, &peer);
    char input[128];
    snprintf(input, sizeof input, "short%s%s%safter%s", e, "xxxxxxxxxxxxxxxxxxxxxxxxy", e, e);
    peer_str(peer, input);
    expect_line(s, "short");
    const char *line = "x";
    size_t len = 99;
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "lines: line longer than 10 bytes");
    ck_assert_ptr_null(line);
    /* Nothing was consumed: asking again gives the same answer. */
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "line longer than 10 bytes");
    size_t overlong = 25 + strlen(e);
    if (use_skip) {
        size_t skipped = 0;
        ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
        ck_assert_uint_eq(skipped, overlong);
    } else {
        char raw[64];
        size_t n = 0;
        ck_assert_int_eq(rill_read_full(s, raw, overlong, &n), RILL_OK);
        ck_assert_mem_eq(raw, "xxxxxxxxxxxxxxxxxxxxxxxxy", 25);
        ck_assert_mem_eq(raw + 25, e, strlen(e));
    }
    expect_line(s, "after");
    shutdown(peer, SHUT_WR);
    expect_eof(s);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_line_of_exactly_max_line)
{
    rill_eol eol = limit_modes[_i];
    const char *e = eol_text(eol);
    int peer;
    rill_stream *s = lines_end(10, eol, &peer);
    char input[128];
    snprintf(input, sizeof input, "0123456789%s01234567890%sok%s", e, e, e);
    peer_str(peer, input);
    expect_line(s, "0123456789");
    const char *line;
    size_t len;
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "line longer than 10 bytes");
    size_t skipped = 0;
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, 11 + strlen(e));
    expect_line(s, "ok");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* The limit decided byte by byte: max_line bytes wait, one more fails without an ending. */
START_TEST(test_limit_boundary_byte_by_byte)
{
    rill_eol eol = limit_modes[_i];
    int peer;
    rill_stream *s = lines_end(10, eol, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    const char *line;
    size_t len;
    static const char digits[] = "0123456789";
    for (int i = 0; i < 10; i++) {
        peer_write(peer, &digits[i], 1);
        ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_WANT_READ);
    }
    if (eol == RILL_EOL_CRLF) {
        /* 11 bytes buffered, but the last may start the CRLF: keep waiting. */
        peer_str(peer, "\r");
        ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_WANT_READ);
        peer_str(peer, "\n");
    } else {
        peer_str(peer, eol == RILL_EOL_ANY ? "\r" : "\n");
    }
    expect_line(s, "0123456789");

    peer_str(peer, "0123456789");
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_WANT_READ);
    /* Byte 11 of content: too long at once, no need to wait for the ending. */
    peer_str(peer, "x");
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "lines: line longer than 10 bytes");
    ck_assert_uint_eq(rill_pending(s), 11);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_long_limit_beyond_default_buffer)
{
    int peer;
    rill_stream *s = lines_end(100000, RILL_EOL_LF, &peer);
    size_t total = 100000 + 1 + 100001 + 1 + 4;
    char *data = malloc(total + 1);
    ck_assert_ptr_nonnull(data);
    memset(data, 'a', 100000);
    data[100000] = '\n';
    memset(data + 100001, 'b', 100001);
    snprintf(data + 200002, total + 1 - 200002, "\nend\n");
    struct feed f = { .fd = peer, .data = data, .len = total };
    feed_start(&f);
    const char *line;
    size_t len;
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
    ck_assert_uint_eq(len, 100000);
    ck_assert_int_eq(line[0], 'a');
    ck_assert_int_eq(line[99999], 'a');
    ck_assert_int_eq(line[100000], '\0');
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "line longer than 100000 bytes");
    size_t skipped = 0;
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, 100002);
    expect_line(s, "end");
    expect_eof(s);
    feed_join(&f);
    free(data);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_skip_streams_any_length)
{
    int peer;
    rill_stream *s = lines_end(100, RILL_EOL_CRLF, &peer);
    size_t big = 1u << 20;
    char *data = malloc(big + 16);
    ck_assert_ptr_nonnull(data);
    memset(data, 'z', big);
    snprintf(data + big, 16, "\r\nnext\r\ntail");
    struct feed f = { .fd = peer, .data = data, .len = big + 12 };
    feed_start(&f);
    const char *line;
    size_t len;
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "line longer than 100 bytes");
    size_t skipped = 0;
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, big + 2);
    expect_line(s, "next");
    /* Skipping into the end of the stream drops the rest and says so. */
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_EOF);
    ck_assert_uint_eq(skipped, 4);
    expect_eof(s);
    feed_join(&f);
    free(data);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_skip_nonblocking_continues)
{
    int peer;
    rill_stream *s = lines_end(8, RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    peer_str(peer, "zzzz");
    size_t skipped = 99;
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_WANT_READ);
    ck_assert_uint_eq(skipped, 4);
    ck_assert_uint_eq(rill_pending(s), 0);
    peer_str(peer, "zz\nok\n");
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, 3);
    expect_line(s, "ok");
    ck_assert_int_eq(rill_skip_line(s, NULL), RILL_WANT_READ);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* ---- strict CRLF ---- */

struct crlf_error_case {
    const char *input;
    bool close_after;
    const char *needle;
    size_t skip;      /* what rill_skip_line drops after the error */
    const char *next; /* the line after, or NULL for EOF */
};

static const struct crlf_error_case crlf_errors[] = {
    { "ab\ncd\r\n", false, "lines: bare LF at offset 2 of line", 3, "cd" },
    { "\nok\r\n", false, "lines: bare LF at offset 0 of line", 1, "ok" },
    { "ab\rcd\r\nok\r\n", false, "lines: bare CR at offset 2 of line", 7, "ok" },
    { "ab\r\rcd\r\nok\r\n", false, "lines: bare CR at offset 2 of line", 8, "ok" },
    { "ab\r", true, "lines: bare CR at offset 2 of line (stream ended before its LF)", 3, NULL },
};

START_TEST(test_crlf_strict_errors)
{
    const struct crlf_error_case *tc = &crlf_errors[_i];
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_CRLF, &peer);
    peer_str(peer, tc->input);
    if (tc->close_after)
        shutdown(peer, SHUT_WR);
    const char *line;
    size_t len;
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_PROTOCOL, tc->needle);
    ck_assert_uint_eq(rill_pending(s), strlen(tc->input));
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_PROTOCOL, tc->needle);
    size_t skipped = 0;
    ck_assert_int_eq(rill_skip_line(s, &skipped), tc->close_after ? RILL_EOF : RILL_OK);
    ck_assert_uint_eq(skipped, tc->skip);
    if (tc->next)
        expect_line(s, tc->next);
    else
        expect_eof(s);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_crlf_bare_cr_found_without_waiting)
{
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_CRLF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    const char *line;
    size_t len;
    peer_str(peer, "ab\r");
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_WANT_READ);
    peer_str(peer, "c");
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_PROTOCOL, "bare CR at offset 2");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_crlf_split_across_reads)
{
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_CRLF, &peer);
    static const char *const pieces[] = { "abc\r",     "\n",  "def", "\r",
                                          "\nghi\r\n", "x\r", "\ny", NULL };
    struct feed f = { .fd = peer, .pieces = pieces, .delay_us = 20000 };
    feed_start(&f);
    expect_line(s, "abc");
    expect_line(s, "def");
    expect_line(s, "ghi");
    expect_line(s, "x");
    expect_line(s, "y");
    expect_eof(s);
    feed_join(&f);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* ---- ANY: a CR at the end of what arrived ends the line at once ---- */

START_TEST(test_any_lone_cr_does_not_block)
{
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_ANY, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, 3000, 3000), RILL_OK);
    peer_str(peer, "abc\r");
    int64_t t0 = (rt_now_us() / 1000);
    expect_line(s, "abc");
    ck_assert_int_lt((rt_now_us() / 1000) - t0, 1000);
    /* The LF of that CRLF arrives later and is not an empty line. */
    peer_str(peer, "\nnext\r");
    expect_line(s, "next");
    /* Nothing is buffered, but the LF a CRLF may still bring is owed: it counts as pending. */
    ck_assert_uint_eq(rill_pending(s), 1);
    /* Raw reads swallow it too. */
    peer_str(peer, "\nraw");
    char buf[8];
    size_t n = 0;
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(buf, "raw", 3);
    ck_assert_uint_eq(rill_pending(s), 0);
    /* And a lone LF after the swallow is a line of its own. */
    peer_str(peer, "x\r");
    expect_line(s, "x");
    peer_str(peer, "\n\nlast\n");
    expect_line(s, "");
    expect_line(s, "last");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_any_swallowed_lf_alone_then_more)
{
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_ANY, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    peer_str(peer, "a\r");
    expect_line(s, "a");
    peer_str(peer, "\n");
    char buf[4];
    size_t n = 0;
    /* The only byte was the swallowed LF: nothing to return yet. */
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_WANT_READ);
    ck_assert_uint_eq(n, 0);
    peer_str(peer, "\n");
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(buf[0], '\n');
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * Issue 10: after a line that ended at a CR with nothing behind it, the layer owes the LF of a
 * possible CRLF. Detaching a borrowing line reader then (STARTTLS) would hand that LF to the
 * next reader of the borrowed stream, the TLS handshake. rill_pending counts the owed LF, so
 * rill_close reports RILL_E_PENDING_DATA with the reason on the borrowed stream. Loop 0: the
 * LF is still on its way; loop 1: it sits unread in the socket when the layer is closed.
 */
START_TEST(test_any_owed_lf_refuses_detach)
{
    int before = rt_count_fds();
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    ck_assert_int_eq(rill_set_timeouts(server, 3000, 3000), RILL_OK);
    rill_stream *l = NULL;
    ck_assert_int_eq(rill_lines_new(server, 64, RILL_EOL_ANY, RILL_BORROW, &l), RILL_OK);
    ck_assert_int_eq(rill_write_str(client, "STARTTLS\r", NULL), RILL_OK);
    expect_line(l, "STARTTLS");
    ck_assert_uint_eq(rill_pending(l) - rill_pending(server), 1);
    char desc[128];
    rill_describe(l, desc, sizeof desc);
    ck_assert_msg(strncmp(desc, "lines(max=64 eol=any LF owed) > tcp(", 36) == 0, "describe: %s",
                  desc);
    if (_i == 1) {
        ck_assert_int_eq(rill_write_str(client, "\n", NULL), RILL_OK);
        struct pollfd p = { .fd = rill_fd(server), .events = POLLIN };
        ck_assert_int_eq(poll(&p, 1, 3000), 1);
    }
    rt_assert_error(server, rill_close(l), RILL_E_PENDING_DATA,
                    "rill_close: 1 pending byte in lines(max=64 eol=any LF owed) did not carry "
                    "over to the borrowed tcp stream: its next reader would not start where the "
                    "closed layers stopped");
    /* What the refusal is about: the next reader of the borrowed stream gets that LF. */
    if (_i == 0)
        ck_assert_int_eq(rill_write_str(client, "\n", NULL), RILL_OK);
    ck_assert_int_eq(rill_write_str(client, "\x16\x03\x01", NULL), RILL_OK);
    char got[4];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(server, got, 4, &n), RILL_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(got, "\n\x16\x03\x01", 4);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/*
 * Reading on settles the owed LF: a line, raw bytes or a skip consume it when it arrives (a
 * non-blocking read that only swallowed it says RILL_WANT_READ), and then the borrowing layer
 * detaches cleanly with the borrowed stream exactly where the layer stopped.
 */
START_TEST(test_any_owed_lf_settled_by_reading)
{
    int before = rt_count_fds();
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *l = NULL;
    ck_assert_int_eq(rill_lines_new(server, 64, RILL_EOL_ANY, RILL_BORROW, &l), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(l, 3000, 3000), RILL_OK);

    /* A line: its LF arrives with the next line and is not an empty line. */
    ck_assert_int_eq(rill_write_str(client, "A\r", NULL), RILL_OK);
    expect_line(l, "A");
    ck_assert_uint_eq(rill_pending(l), 1);
    ck_assert_int_eq(rill_write_str(client, "\nB\n", NULL), RILL_OK);
    expect_line(l, "B");
    ck_assert_uint_eq(rill_pending(l), 0);

    /* A skip: the owed LF is dropped when it arrives and not counted (rill_skip_line's doc). */
    size_t skipped = 0;
    ck_assert_int_eq(rill_write_str(client, "xx\r", NULL), RILL_OK);
    ck_assert_int_eq(rill_skip_line(l, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, 3);
    ck_assert_uint_eq(rill_pending(l), 1);
    ck_assert_int_eq(rill_write_str(client, "\nD\r\n", NULL), RILL_OK);
    ck_assert_int_eq(rill_skip_line(l, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, 3);
    ck_assert_uint_eq(rill_pending(l), 0);

    /* A non-blocking raw read: it swallows the LF and, with nothing else there, wants more. */
    ck_assert_int_eq(rill_write_str(client, "C\r", NULL), RILL_OK);
    expect_line(l, "C");
    ck_assert_uint_eq(rill_pending(l), 1);
    ck_assert_int_eq(rill_set_timeouts(l, 0, 0), RILL_OK);
    char buf[8];
    size_t n = 9;
    ck_assert_int_eq(rill_read(l, buf, sizeof buf, &n), RILL_WANT_READ);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(rill_pending(l), 1); /* the LF has not come yet */
    ck_assert_int_eq(rill_write_str(client, "\n", NULL), RILL_OK);
    int64_t end = rt_now_us() + 3000000;
    while (rill_pending(l) > 0 && rt_now_us() < end) {
        struct pollfd p = { .fd = -1 };
        ck_assert_int_eq(rill_poll_info(l, &p.fd, &p.events), RILL_OK);
        ck_assert_int_ge(poll(&p, 1, 3000), 0);
        ck_assert_int_eq(rill_read(l, buf, sizeof buf, &n), RILL_WANT_READ);
        ck_assert_uint_eq(n, 0);
    }
    ck_assert_uint_eq(rill_pending(l), 0);
    char desc[128];
    rill_describe(l, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "owed") == NULL, "describe: %s", desc);

    ck_assert_int_eq(rill_close(l), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(server, 3000, 3000), RILL_OK);
    ck_assert_int_eq(rill_write_str(client, "\x16next", NULL), RILL_OK);
    ck_assert_int_eq(rill_read_full(server, buf, 5, &n), RILL_OK);
    ck_assert_mem_eq(buf, "\x16next", 5);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/*
 * A peer that ends lines with CR alone never sends the owed LF: its lines still come at once,
 * non-blocking and under a deadline, the debt is only reported (rill_pending 1), and end of
 * stream cancels it. Loop 0: non-blocking; loop 1: a 200 ms read deadline.
 */
START_TEST(test_any_lone_cr_peer_never_waits)
{
    int before = rt_count_fds();
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *l = NULL;
    ck_assert_int_eq(rill_lines_new(inner, 64, RILL_EOL_ANY, RILL_BORROW, &l), RILL_OK);
    int timeout = _i == 0 ? 0 : 200;
    ck_assert_int_eq(rill_set_timeouts(l, timeout, timeout), RILL_OK);
    peer_str(peer, "A\rB\r");
    int64_t t0 = rt_now_us();
    expect_line(l, "A");
    expect_line(l, "B");
    rt_assert_elapsed(t0, 0, 150);
    ck_assert_uint_eq(rill_pending(l), 1);
    const char *line = "x";
    size_t len = 9;
    t0 = rt_now_us();
    if (_i == 0) {
        ck_assert_int_eq(rill_read_line(l, &line, &len), RILL_WANT_READ);
    } else {
        rt_assert_error(l, rill_read_line(l, &line, &len), RILL_E_TIMEOUT,
                        "read timed out after 200 ms");
        rt_assert_elapsed(t0, 150, 5000);
    }
    ck_assert_ptr_null(line);
    ck_assert_uint_eq(len, 0);
    ck_assert_uint_eq(rill_pending(l), 1);
    /* More lone-CR lines keep coming at once. */
    peer_str(peer, "C\r");
    expect_line(l, "C");
    /* The peer hangs up: no LF will ever come, so nothing is owed and detaching is clean. */
    shutdown(peer, SHUT_WR);
    ck_assert_int_eq(rill_set_timeouts(l, 3000, 3000), RILL_OK);
    expect_eof(l);
    ck_assert_uint_eq(rill_pending(l), 0);
    ck_assert_int_eq(rill_close(l), RILL_OK);
    ck_assert_int_eq(rill_close(inner), RILL_OK);
    close(peer);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/* ---- end of stream, NUL bytes, copies ---- */

START_TEST(test_last_line_without_ending)
{
    int peer;
    rill_stream *s = lines_end(16, RILL_EOL_LF, &peer);
    peer_str(peer, "first\nlast");
    shutdown(peer, SHUT_WR);
    expect_line(s, "first");
    expect_line(s, "last");
    expect_eof(s);
    expect_eof(s);
    char buf[4];
    size_t n = 9;
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_nul_bytes_inside_lines)
{
    int peer;
    rill_stream *s = lines_end(16, RILL_EOL_LF, &peer);
    peer_write(peer, "a\0b\n\0\nc\0\n", 9);
    const char *line;
    size_t len;
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(line, "a\0b", 4);
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
    ck_assert_uint_eq(len, 1);
    ck_assert_mem_eq(line, "\0", 2);
    char buf[8];
    ck_assert_int_eq(rill_read_line_copy(s, buf, sizeof buf, &len), RILL_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(buf, "c\0", 3);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_read_line_copy)
{
    int peer;
    rill_stream *s = lines_end(16, RILL_EOL_CRLF, &peer);
    peer_str(peer, "hello\r\nworld\r\n");
    char buf[16];
    size_t len = 0;
    rt_assert_error(s, rill_read_line_copy(s, buf, 5, &len), RILL_E_INVALID,
                    "line of 5 bytes does not fit in a 5-byte buffer");
    ck_assert_uint_eq(len, 5); /* the size a retry needs, minus the NUL */
    ck_assert_uint_eq(rill_pending(s), 14);
    ck_assert_int_eq(rill_read_line_copy(s, buf, 6, &len), RILL_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_str_eq(buf, "hello");
    ck_assert_int_eq(rill_read_line_copy(s, buf, sizeof buf, &len), RILL_OK);
    ck_assert_str_eq(buf, "world");
    rt_assert_error(s, rill_read_line_copy(s, NULL, 4, &len), RILL_E_INVALID, "buf or len");
    rt_assert_error(s, rill_read_line_copy(s, buf, 4, NULL), RILL_E_INVALID, "buf or len");
    rt_assert_error(s, rill_read_line_copy(s, buf, 0, &len), RILL_E_INVALID, "cap is 0");
    shutdown(peer, SHUT_WR);
    ck_assert_int_eq(rill_read_line_copy(s, buf, sizeof buf, &len), RILL_EOF);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(buf, "");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* ---- timeouts ---- */

START_TEST(test_read_timeout_keeps_partial_line)
{
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, 200, 200), RILL_OK);
    const char *line;
    size_t len;
    int64_t t0 = (rt_now_us() / 1000);
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_TIMEOUT,
                    "lines: read timed out after 200 ms");
    int64_t waited = (rt_now_us() / 1000) - t0;
    ck_assert_int_ge(waited, 190);
    ck_assert_int_lt(waited, 2000);
    peer_str(peer, "abc");
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_TIMEOUT, "read timed out");
    ck_assert_uint_eq(rill_pending(s), 3);
    peer_str(peer, "def\n");
    expect_line(s, "abcdef");
    size_t skipped = 0;
    rt_assert_error(s, rill_skip_line(s, &skipped), RILL_E_TIMEOUT, "read timed out");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_nonblocking_want_read)
{
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    const char *line;
    size_t len;
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_WANT_READ);
    int fd = -1;
    short events = 0;
    ck_assert_int_eq(rill_poll_info(s, &fd, &events), RILL_OK);
    ck_assert_int_ne(fd, -1);
    ck_assert_int_eq(fd, rill_fd(s));
    ck_assert(events & POLLIN);
    peer_str(peer, "one\ntwo\nthr");
    struct pollfd p = { .fd = fd, .events = events };
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    expect_line(s, "one");
    /* The second line is already buffered: no poll needed, and rill_pending says so. */
    ck_assert_uint_eq(rill_pending(s), 7);
    expect_line(s, "two");
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_WANT_READ);
    peer_str(peer, "ee\n");
    expect_line(s, "three");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* ---- batches: rill_read_lines and rill_line_iter ---- */

static const int batch_timeouts[] = { RILL_TIMEOUT_NONE, 2000, 0 };

/* Wait until @p s has something to read (non-blocking mode), under a 2 s bound. */
static void wait_readable(rill_stream *s)
{
    int fd = -1;
    short events = 0;
    ck_assert_int_eq(rill_poll_info(s, &fd, &events), RILL_OK);
    struct pollfd p = { .fd = fd, .events = events };
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
}

/* rill_read_lines, retrying after RILL_WANT_READ in non-blocking mode. */
static rill_status read_batch(rill_stream *s, rill_line *lines, size_t max, size_t *count)
{
    for (;;) {
        rill_status st = rill_read_lines(s, lines, max, count);
        if (st != RILL_WANT_READ)
            return st;
        ck_assert_uint_eq(*count, 0);
        wait_readable(s);
    }
}

/*
 * Every whole line buffered comes in one call, in place and NUL-terminated, up to max; the
 * partial line stays for the next call; EOF gives the last line, then RILL_EOF. Blocking,
 * deadline and non-blocking, in each ending mode.
 */
START_TEST(test_read_lines_batch)
{
    int mode = _i % 3;
    rill_eol eol = limit_modes[_i / 3];
    const char *nl = eol == RILL_EOL_LF ? "\n" : "\r\n";
    int peer;
    rill_stream *s = lines_end(16, eol, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, batch_timeouts[mode], batch_timeouts[mode]), RILL_OK);
    char text[128];
    snprintf(text, sizeof text, "one%stwo%s%sfour%sfiv", nl, nl, nl, nl);
    peer_str(peer, text);
    rill_line lines[8];
    size_t count = 99;
    if (mode == 2)
        wait_readable(s);
    ck_assert_int_eq(read_batch(s, lines, 2, &count), RILL_OK);
    ck_assert_uint_eq(count, 2);
    ck_assert_str_eq(lines[0].data, "one");
    ck_assert_uint_eq(lines[0].len, 3);
    ck_assert_str_eq(lines[1].data, "two");
    ck_assert_uint_eq(rill_pending(s), strlen(nl) * 2 + 7);
    ck_assert_int_eq(read_batch(s, lines, 8, &count), RILL_OK);
    ck_assert_uint_eq(count, 2);
    ck_assert_str_eq(lines[0].data, "");
    ck_assert_uint_eq(lines[0].len, 0);
    ck_assert_str_eq(lines[1].data, "four");
    ck_assert_uint_eq(rill_pending(s), 3); /* "fiv" waits for its ending */
    if (mode == 2)
        ck_assert_int_eq(rill_read_lines(s, lines, 8, &count), RILL_WANT_READ);
    snprintf(text, sizeof text, "e%ssix", nl);
    peer_str(peer, text);
    ck_assert_int_eq(read_batch(s, lines, 8, &count), RILL_OK);
    ck_assert_uint_eq(count, 1);
    ck_assert_str_eq(lines[0].data, "five");
    shutdown(peer, SHUT_WR);
    ck_assert_int_eq(read_batch(s, lines, 8, &count), RILL_OK);
    ck_assert_uint_eq(count, 1);
    ck_assert_str_eq(lines[0].data, "six");
    count = 99;
    ck_assert_int_eq(read_batch(s, lines, 8, &count), RILL_EOF);
    ck_assert_uint_eq(count, 0);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * A line that would fail ends the batch before it, losing nothing: the next call reports it
 * (status and message), rill_skip_line moves past it, and the lines after it follow.
 */
START_TEST(test_read_lines_error_ends_batch)
{
    int mode = _i % 3, crlf = _i / 3;
    int peer;
    rill_stream *s = lines_end(8, crlf ? RILL_EOL_CRLF : RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, batch_timeouts[mode], batch_timeouts[mode]), RILL_OK);
    peer_str(peer, crlf ? "ok\r\nbare\nafter\r\n" : "ok\nmuch too long\nafter\n");
    if (mode == 2)
        wait_readable(s);
    rill_line lines[8];
    size_t count = 99, skipped = 0;
    ck_assert_int_eq(read_batch(s, lines, 8, &count), RILL_OK);
    ck_assert_uint_eq(count, 1);
    ck_assert_str_eq(lines[0].data, "ok");
    size_t held = rill_pending(s);
    if (crlf)
        rt_assert_error(s, rill_read_lines(s, lines, 8, &count), RILL_E_PROTOCOL,
                        "lines: bare LF at offset 4 of line (CRLF line endings required)");
    else
        rt_assert_error(s, rill_read_lines(s, lines, 8, &count), RILL_E_LINE_TOO_LONG,
                        "lines: line longer than 8 bytes");
    ck_assert_uint_eq(count, 0);
    ck_assert_uint_eq(rill_pending(s), held); /* nothing consumed */
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, crlf ? 5 : 14);
    ck_assert_int_eq(read_batch(s, lines, 8, &count), RILL_OK);
    ck_assert_uint_eq(count, 1);
    ck_assert_str_eq(lines[0].data, "after");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * The iterator over many lines in random chunks: every line, byte and checksum arrives, in
 * blocking, deadline and non-blocking modes.
 */
START_TEST(test_line_iter_many_lines)
{
    int mode = _i;
    int peer;
    rill_stream *s = lines_end(RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, batch_timeouts[mode], batch_timeouts[mode]), RILL_OK);
    struct feed f = { .fd = peer };
    size_t total = 0, want_sum = 0;
    char *text = malloc(200000);
    ck_assert_ptr_nonnull(text);
    int nlines = 0;
    while (total < 190000) {
        int len = (int)((unsigned)nlines * 37u % 300u);
        for (int k = 0; k < len; k++) {
            text[total + (size_t)k] = (char)('a' + (nlines + k) % 26);
            want_sum += (unsigned char)text[total + (size_t)k] * (size_t)(k + 1);
        }
        total += (size_t)len;
        text[total++] = '\n';
        nlines++;
    }
    f.data = text;
    f.len = total;
    feed_start(&f);
    rill_line_iter it;
    rill_line_iter_init(&it, s);
    int got = 0;
    size_t sum = 0, bytes = 0;
    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_line_iter_next(&it, &line, &len);
        if (st == RILL_WANT_READ) {
            ck_assert_uint_eq(rill_line_iter_held(&it), 0);
            wait_readable(s);
            continue;
        }
        if (st == RILL_EOF)
            break;
        ck_assert_int_eq(st, RILL_OK);
        ck_assert_int_eq(line[len], '\0');
        ck_assert_uint_eq(len, (size_t)((unsigned)got * 37u % 300u));
        for (size_t k = 0; k < len; k++)
            sum += (unsigned char)line[k] * (k + 1);
        bytes += len + 1;
        got++;
    }
    feed_join(&f);
    ck_assert_int_eq(got, nlines);
    ck_assert_uint_eq(bytes, total);
    ck_assert_uint_eq(sum, want_sum);
    free(text);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * After a line, rill_read_line hands out the next ones from the window of buffered bytes
 * (inline, rill.h); every other way of reading in between (a raw read, a copy, a skip, a batch,
 * more data arriving) must take over where it got to and close the window, never hand out
 * stale bytes. Blocking, deadline and non-blocking.
 */
START_TEST(test_read_line_ahead_mixed)
{
    int mode = _i;
    int peer;
    rill_stream *s = lines_end(16, RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, batch_timeouts[mode], batch_timeouts[mode]), RILL_OK);
    peer_str(peer, "a1\nb22\nc333\nd4444\ne5\nf6\ng7\nh8\nmuch too long line\ni9\n");
    if (mode == 2)
        wait_readable(s);
    expect_line(s, "a1"); /* opens the window over b..i */
    char raw[3];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(s, raw, 2, &n), RILL_OK); /* "b2" of "b22" */
    ck_assert_mem_eq(raw, "b2", 2);
    expect_line(s, "2");
    expect_line(s, "c333");
    char copy[16];
    ck_assert_int_eq(rill_read_line_copy(s, copy, sizeof copy, &n), RILL_OK);
    ck_assert_str_eq(copy, "d4444");
    expect_line(s, "e5");
    size_t skipped = 0;
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, 3); /* "f6\n" */
    rill_line lines[1];
    ck_assert_int_eq(rill_read_lines(s, lines, 1, &n), RILL_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(lines[0].data, "g7");
    expect_line(s, "h8");
    const char *line;
    size_t len;
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "lines: line longer than 16 bytes");
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    expect_line(s, "i9");
    /* More data after the buffer emptied and was refilled: the ends found before are gone. */
    peer_str(peer, "j10\nk11\n");
    if (mode == 2)
        wait_readable(s);
    expect_line(s, "j10");
    peer_str(peer, "l12\n");
    expect_line(s, "k11");
    if (mode == 2)
        wait_readable(s);
    expect_line(s, "l12");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * The inline rill_read_line() of rill.h hands out LF lines from the window the layer publishes,
 * without calling the library: everything the library reports must see where it got to
 * (pending bytes, raw reads, describe, shrink), the library function reached directly must
 * agree with it, and a line found too far away or cut off must come from the library with its
 * error. Blocking, deadline and non-blocking.
 */
START_TEST(test_read_line_inline_window)
{
    int mode = _i;
    int peer;
    rill_stream *s = lines_end(8, RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, batch_timeouts[mode], batch_timeouts[mode]), RILL_OK);
    peer_str(peer, "a\nbb\nccc\ndddd\nee\nf");
    if (mode == 2)
        wait_readable(s);
    expect_line(s, "a"); /* the library: opens the window over "bb\n..." */
    ck_assert_uint_eq(rill_pending(s), 16);
    expect_line(s, "bb"); /* inline */
    ck_assert_uint_eq(rill_pending(s), 13);
    const char *line = NULL;
    size_t len = 0;
    ck_assert_int_eq((rill_read_line)(s, &line, &len), RILL_OK); /* the exported function */
    ck_assert_uint_eq(len, 3);
    ck_assert_str_eq(line, "ccc");
    ck_assert_uint_eq(rill_pending(s), 9);
    ck_assert_uint_eq(rill_shrink(s), 0); /* bytes are buffered: nothing to release */
    char raw[2];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(s, raw, 2, &n), RILL_OK); /* raw bytes after the window */
    ck_assert_mem_eq(raw, "dd", 2);
    expect_line(s, "dd");
    expect_line(s, "ee");
    /* "f" has no ending yet: the inline path finds no line and the library waits for it. */
    if (mode == 2) {
        rt_assert_error(s, rill_read_line(s, &line, &len), RILL_WANT_READ, "");
        ck_assert_ptr_null(line);
    }
    peer_str(peer, "ff\ng\n0123456789\nh\n");
    if (mode == 2)
        wait_readable(s);
    expect_line(s, "fff");
    expect_line(s, "g"); /* inline */
    /* A line over the limit: the inline search stops at the limit and the library reports it. */
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_LINE_TOO_LONG,
                    "lines: line longer than 8 bytes");
    ck_assert_uint_eq(rill_pending(s), 13); /* nothing consumed */
    size_t skipped = 0;
    ck_assert_int_eq(rill_skip_line(s, &skipped), RILL_OK);
    ck_assert_uint_eq(skipped, 11);
    expect_line(s, "h");
    ck_assert_uint_eq(rill_pending(s), 0);
    /* A line that the end of stream cuts off is the last line, from the library. */
    peer_str(peer, "i\nj");
    close(peer);
    if (mode == 2)
        wait_readable(s);
    expect_line(s, "i");
    expect_line(s, "j");
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_EOF, "");
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * Not a line stream, NULL arguments: the inline path does not touch what it cannot use and the
 * library reports the error, as the exported function does.
 */
START_TEST(test_read_line_inline_invalid)
{
    int peer;
    rill_stream *fd = rt_fd_end(&peer);
    const char *line = "x";
    size_t len = 7;
    ck_assert_int_eq(rill_read_line(NULL, &line, &len), RILL_E_INVALID);
    rt_assert_error(fd, rill_read_line(fd, &line, &len), RILL_E_INVALID,
                    "rill_read_line: not a line stream (top layer is fd)");
    rill_stream *s = lines_over(fd, 16, RILL_EOL_LF);
    peer_str(peer, "a\nb\nc\n");
    expect_line(s, "a");
    rt_assert_error(s, rill_read_line(s, NULL, &len), RILL_E_INVALID,
                    "rill_read_line: line or len is NULL");
    rt_assert_error(s, rill_read_line(s, &line, NULL), RILL_E_INVALID,
                    "rill_read_line: line or len is NULL");
    expect_line(s, "b"); /* nothing consumed by the refused calls */
    expect_line(s, "c");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_read_lines_invalid)
{
    int peer;
    rill_stream *s = lines_end(64, RILL_EOL_LF, &peer);
    rill_line lines[2];
    size_t count = 99;
    ck_assert_int_eq(rill_read_lines(NULL, lines, 2, &count), RILL_E_INVALID);
    ck_assert_uint_eq(count, 0);
    rt_assert_error(s, rill_read_lines(s, NULL, 2, &count), RILL_E_INVALID,
                    "rill_read_lines: lines is NULL");
    rt_assert_error(s, rill_read_lines(s, lines, 2, NULL), RILL_E_INVALID,
                    "rill_read_lines: count is NULL");
    rt_assert_error(s, rill_read_lines(s, lines, 0, &count), RILL_E_INVALID,
                    "rill_read_lines: max is 0");
    rill_stream *inner = rill_stream_inner(s);
    rt_assert_error(inner, rill_read_lines(inner, lines, 2, &count), RILL_E_INVALID,
                    "rill_read_lines: not a line stream (top layer is fd)");
    rill_line_iter it;
    rill_line_iter_init(&it, s);
    const char *line;
    ck_assert_int_eq(rill_line_iter_fill(NULL, &line, &count), RILL_E_INVALID);
    rt_assert_error(s, rill_line_iter_fill(&it, &line, NULL), RILL_E_INVALID,
                    "rill_line_iter_next: line or len is NULL");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* ---- chains, memory, arguments ---- */

START_TEST(test_over_buffered_bypasses_its_copy)
{
    int peer;
    rill_stream *b = NULL, *inner = rt_fd_end(&peer);
    ck_assert_int_eq(rill_buffered_new(inner, 16384, 16384, 0, &b), RILL_OK);
    rill_stream *s = lines_over(b, 128, RILL_EOL_LF);
    /* Bytes pushed back into the buffered layer come first. */
    ck_assert_int_eq(rill_unread(b, "pre", 3), RILL_OK);
    char data[20000];
    size_t len = 0;
    for (int i = 0; len + 16 < sizeof data; i++)
        len += (size_t)snprintf(data + len, sizeof data - len, "fix%d\n", i);
    struct feed f = { .fd = peer, .data = data, .len = len };
    feed_start(&f);
    expect_line(s, "prefix0");
    char want[16];
    for (int i = 1;; i++) {
        const char *line;
        size_t n;
        rill_status st = rill_read_line(s, &line, &n);
        if (st == RILL_EOF)
            break;
        ck_assert_int_eq(st, RILL_OK);
        snprintf(want, sizeof want, "fix%d", i);
        ck_assert_str_eq(line, want);
    }
    feed_join(&f);
    ck_assert_uint_eq(rill_pending(s), 0);

    /* Writes pass through the line layer. */
    ck_assert_int_eq(rill_write_str(s, "reply\n", NULL), RILL_OK);
    ck_assert_int_eq(rill_flush(s), RILL_OK);
    char got[6];
    ck_assert_int_eq(read(peer, got, sizeof got), 6);
    ck_assert_mem_eq(got, "reply\n", 6);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_large_reads_skip_buffered_copy)
{
    int peer;
    rill_stream *b = NULL, *inner = rt_fd_end(&peer);
    ck_assert_int_eq(rill_buffered_new(inner, 16384, 16384, 0, &b), RILL_OK);
    rill_stream *s = lines_over(b, 128, RILL_EOL_LF);
    peer_str(peer, "one\ntwo\n");
    expect_line(s, "one");
    expect_line(s, "two");
    /* The line layer read straight from the fd: the buffered layer never needed a buffer. */
    ck_assert_uint_eq(rill_shrink(b), 0);
    /* Nor does the line layer keep its own once idle: the last line is all it holds. */
    ck_assert_uint_eq(rill_shrink(s), 0);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * Idle memory without rill_shrink(): the line that empties the buffer at the end of a burst is
 * moved to the front and the block shrunk around it (it stays valid until the next call); the
 * next fill grows it back. Blocking, under a deadline and non-blocking (the bytes are there).
 */
START_TEST(test_shrink_and_idle_memory)
{
    static const int timeouts[] = { RILL_TIMEOUT_NONE, 2000, 0 };
    rt_counting_on();
    int peer;
    rill_stream *s = lines_end(RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, &peer);
    ck_assert_int_eq(rill_set_timeouts(s, timeouts[_i], timeouts[_i]), RILL_OK);
    size_t idle = rt_live_bytes;
    ck_assert_uint_lt(idle, 4096);
    ck_assert_uint_eq(rill_shrink(s), 0);
    peer_str(peer, "a\nbb\n");
    expect_line(s, "a");
    size_t active = rt_live_bytes - idle;
    ck_assert_uint_ge(active, RILL_LINES_DEFAULT_MAX + 2);
    ck_assert_uint_eq(rill_shrink(s), 0); /* "bb\n" is still buffered */
    const char *line;
    size_t len;
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "bb");
    ck_assert_uint_eq(len, 2);
    ck_assert_uint_eq(rt_live_bytes, idle + 3); /* the last line and its NUL */
    ck_assert_uint_eq(rill_shrink(s), 0);       /* frees that; nothing was buffered */
    ck_assert_uint_eq(rt_live_bytes, idle);
    peer_str(peer, "c\nd");
    expect_line(s, "c"); /* "d" is still buffered */
    ck_assert_uint_eq(rt_live_bytes, idle + active);
    peer_str(peer, "\n");
    char copy[8];
    ck_assert_int_eq(rill_read_line_copy(s, copy, sizeof copy, &len), RILL_OK);
    ck_assert_str_eq(copy, "d");
    ck_assert_uint_eq(rt_live_bytes, idle); /* a copied line leaves nothing to keep */
    peer_str(peer, "raw");
    char raw[3];
    ck_assert_int_eq(rill_read_full(s, raw, 3, &len), RILL_OK);
    ck_assert_mem_eq(raw, "raw", 3);
    ck_assert_uint_eq(rt_live_bytes, idle);

    /* The largest limit allocates nothing up front either. */
    rill_stream *inner = NULL, *big = NULL;
    int peer2;
    inner = rt_fd_end(&peer2);
    size_t before = rt_live_bytes;
    ck_assert_int_eq(rill_lines_new(inner, (size_t)64 << 20, RILL_EOL_LF, 0, &big), RILL_OK);
    ck_assert_uint_lt(rt_live_bytes - before, 4096);
    close(peer2);
    ck_assert_int_eq(rill_close(big), RILL_OK);

    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_uint_eq(rt_live_bytes, 0);
    rt_counting_off();
}
END_TEST

START_TEST(test_out_of_memory)
{
    rt_counting_on();
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *s = NULL;
    rt_allocs_left = 0;
    rt_assert_error(inner, rill_lines_new(inner, 64, RILL_EOL_LF, 0, &s), RILL_E_NOMEM,
                    "out of memory");
    ck_assert_ptr_null(s);
    rt_allocs_left = -1;
    s = lines_over(inner, 64, RILL_EOL_LF);
    peer_str(peer, "line\n");
    rt_allocs_left = 0;
    const char *line;
    size_t len;
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_NOMEM, "lines: out of memory");
    rt_allocs_left = -1;
    expect_line(s, "line");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_uint_eq(rt_live_bytes, 0);
    rt_counting_off();
}
END_TEST

START_TEST(test_invalid_arguments)
{
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *s = NULL;
    ck_assert_int_eq(rill_lines_new(NULL, 64, RILL_EOL_LF, 0, &s), RILL_E_INVALID);
    rt_assert_error(inner, rill_lines_new(inner, 64, RILL_EOL_LF, 0, NULL), RILL_E_INVALID,
                    "rill_lines_new: out is NULL");
    rt_assert_error(inner, rill_lines_new(inner, 0, RILL_EOL_LF, 0, &s), RILL_E_INVALID,
                    "max_line 0 out of range");
    rt_assert_error(inner, rill_lines_new(inner, ((size_t)64 << 20) + 1, RILL_EOL_LF, 0, &s),
                    RILL_E_INVALID, "max_line 67108865 out of range (1 .. 67108864)");
    rt_assert_error(inner, rill_lines_new(inner, 64, (rill_eol)3, 0, &s), RILL_E_INVALID,
                    "unknown line ending mode 3");
    rt_assert_error(inner, rill_lines_new(inner, 64, (rill_eol)-1, 0, &s), RILL_E_INVALID,
                    "unknown line ending mode -1");
    ck_assert_ptr_null(s);

    /* The wrong kind of stream. */
    const char *line;
    size_t len;
    char buf[8];
    rt_assert_error(inner, rill_read_line(inner, &line, &len), RILL_E_INVALID,
                    "rill_read_line: not a line stream (top layer is fd)");
    rt_assert_error(inner, rill_read_line_copy(inner, buf, sizeof buf, &len), RILL_E_INVALID,
                    "rill_read_line_copy: not a line stream");
    rt_assert_error(inner, rill_skip_line(inner, NULL), RILL_E_INVALID,
                    "rill_skip_line: not a line stream");
    ck_assert_int_eq(rill_read_line(NULL, &line, &len), RILL_E_INVALID);
    ck_assert_int_eq(rill_read_line_copy(NULL, buf, sizeof buf, &len), RILL_E_INVALID);
    ck_assert_int_eq(rill_skip_line(NULL, NULL), RILL_E_INVALID);

    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(inner, 64, 64, 0, &b), RILL_OK);
    rt_assert_error(b, rill_read_line(b, &line, &len), RILL_E_INVALID,
                    "not a line stream (top layer is buffered)");

    /* After all that, the chain still works. */
    s = lines_over(b, 64, RILL_EOL_LF);
    rt_assert_error(s, rill_read_line(s, NULL, &len), RILL_E_INVALID, "line or len is NULL");
    rt_assert_error(s, rill_read_line(s, &line, NULL), RILL_E_INVALID, "line or len is NULL");
    peer_str(peer, "fine\n");
    expect_line(s, "fine");
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_borrow_and_no_descriptor_leak)
{
    int before = rt_count_fds();
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *l = NULL;
    ck_assert_int_eq(rill_lines_new(server, 64, RILL_EOL_CRLF, RILL_BORROW, &l), RILL_OK);
    ck_assert_int_eq(rill_write_str(client, "HELO x\r\nrest", NULL), RILL_OK);
    expect_line(l, "HELO x");
    /* rest is still in the line layer: closing it drops those bytes (reported), not the
     * connection. */
    ck_assert_uint_eq(rill_pending(l) - rill_pending(server), 4);
    rt_assert_error(server, rill_close(l), RILL_E_PENDING_DATA,
                    "rill_close: 4 pending bytes in lines(max=64 eol=crlf) did not carry over to "
                    "the borrowed tcp stream");
    ck_assert_int_eq(rill_write_str(server, "250 ok\r\n", NULL), RILL_OK);
    ck_assert_int_eq(rill_lines_new(client, 64, RILL_EOL_CRLF, 0, &l), RILL_OK);
    expect_line(l, "250 ok");
    ck_assert_int_eq(rill_close(l), RILL_OK);
    /* A borrowing layer with nothing held closes cleanly. */
    ck_assert_int_eq(rill_lines_new(server, 64, RILL_EOL_CRLF, RILL_BORROW, &l), RILL_OK);
    ck_assert_int_eq(rill_close(l), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

START_TEST(test_describe)
{
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *s = lines_over(inner, RILL_LINES_DEFAULT_MAX, RILL_EOL_LF);
    char buf[256];
    rill_describe(s, buf, sizeof buf);
    ck_assert_msg(strncmp(buf, "lines(max=8192 eol=lf) > fd", 27) == 0, "describe: %s", buf);
    ck_assert_str_eq(rill_kind(s), "lines");
    ck_assert_ptr_eq(rill_find(s, RILL_LAYER_LINES), s);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);

    inner = rt_fd_end(&peer);
    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(inner, 16384, 16384, 0, &b), RILL_OK);
    s = lines_over(b, 100, RILL_EOL_CRLF);
    rill_describe(s, buf, sizeof buf);
    ck_assert_msg(strncmp(buf, "lines(max=100 eol=crlf) > buffered(16384) > fd", 46) == 0,
                  "describe: %s", buf);
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);

    inner = rt_fd_end(&peer);
    s = lines_over(inner, 1, RILL_EOL_ANY);
    size_t n = rill_describe(s, buf, sizeof buf);
    ck_assert_msg(strncmp(buf, "lines(max=1 eol=any) > ", 23) == 0, "describe: %s", buf);
    ck_assert_uint_eq(n, strlen(buf));
    close(peer);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_errors_of_inner_carry_the_chain)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(client, 4096, 4096, 0, &b), RILL_OK);
    rill_stream *s = lines_over(b, 64, RILL_EOL_LF);
    struct linger lg = { 1, 0 };
    ck_assert_int_eq(setsockopt(rill_fd(server), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ck_assert_int_eq(rill_write_str(s, "x", NULL), RILL_OK);
    ck_assert_int_eq(rill_flush(s), RILL_OK);
    usleep(50 * 1000);
    rill_close(server);
    const char *line;
    size_t len;
    rt_assert_error(s, rill_read_line(s, &line, &len), RILL_E_RESET,
                    "lines: buffered: tcp: connection reset by peer");
    rill_close(s);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("lines");
    TCase *tc = tcase_create("modes");
    tcase_add_loop_test(tc, test_eol_modes, 0, N_EOL_CASES * N_SPLITS);
    tcase_add_loop_test(tc, test_random_lines_random_chunks, 0, 3);
    tcase_add_loop_test(tc, test_crlf_strict_errors, 0,
                        (int)(sizeof crlf_errors / sizeof crlf_errors[0]));
    tcase_add_test(tc, test_crlf_bare_cr_found_without_waiting);
    tcase_add_test(tc, test_crlf_split_across_reads);
    tcase_add_test(tc, test_any_lone_cr_does_not_block);
    tcase_add_test(tc, test_any_swallowed_lf_alone_then_more);
    tcase_add_loop_test(tc, test_any_owed_lf_refuses_detach, 0, 2);
    tcase_add_test(tc, test_any_owed_lf_settled_by_reading);
    tcase_add_loop_test(tc, test_any_lone_cr_peer_never_waits, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("limit");
    tcase_add_loop_test(tc, test_overlong_line_keeps_bytes, 0, 6);
    tcase_add_loop_test(tc, test_line_of_exactly_max_line, 0, 3);
    tcase_add_loop_test(tc, test_limit_boundary_byte_by_byte, 0, 3);
    tcase_add_test(tc, test_long_limit_beyond_default_buffer);
    tcase_add_test(tc, test_skip_streams_any_length);
    tcase_add_test(tc, test_skip_nonblocking_continues);
    suite_add_tcase(s, tc);

    tc = tcase_create("stream");
    tcase_add_test(tc, test_last_line_without_ending);
    tcase_add_test(tc, test_nul_bytes_inside_lines);
    tcase_add_test(tc, test_read_line_copy);
    tcase_add_test(tc, test_read_timeout_keeps_partial_line);
    tcase_add_test(tc, test_nonblocking_want_read);
    tcase_add_test(tc, test_over_buffered_bypasses_its_copy);
    tcase_add_test(tc, test_large_reads_skip_buffered_copy);
    tcase_add_test(tc, test_errors_of_inner_carry_the_chain);
    suite_add_tcase(s, tc);

    tc = tcase_create("batch");
    tcase_add_loop_test(tc, test_read_lines_batch, 0, 9);
    tcase_add_loop_test(tc, test_read_lines_error_ends_batch, 0, 6);
    tcase_add_loop_test(tc, test_line_iter_many_lines, 0, 3);
    tcase_add_test(tc, test_read_lines_invalid);
    tcase_add_loop_test(tc, test_read_line_ahead_mixed, 0, 3);
    tcase_add_loop_test(tc, test_read_line_inline_window, 0, 3);
    tcase_add_test(tc, test_read_line_inline_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_add_loop_test(tc, test_shrink_and_idle_memory, 0, 3);
    tcase_add_test(tc, test_out_of_memory);
    tcase_add_test(tc, test_invalid_arguments);
    tcase_add_test(tc, test_borrow_and_no_descriptor_leak);
    tcase_add_test(tc, test_describe);
    suite_add_tcase(s, tc);
    return s;
}
