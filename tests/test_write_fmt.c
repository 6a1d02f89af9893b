/* SPDX-License-Identifier: MIT */
/*
 * rill_write_fmt: printf-style writes over a real TCP pair (short text on the stack, long text
 * in one allocation, the RILL_WRITE_FMT_MAX bound), and the one place errors are read: the
 * stream given, also after a failed decorator constructor when the chain is built in one
 * variable.
 */
#include <stdlib.h>
#include <string.h>

#include "support.h"

/* Read exactly @p len bytes from @p s into a new NUL-terminated buffer. */
static char *read_exactly(rill_stream *s, size_t len)
{
    char *buf = malloc(len + 1);
    ck_assert_ptr_nonnull(buf);
    size_t n = 0;
    ck_assert_int_eq(rill_set_timeouts(s, 5000, 5000), RILL_OK);
    rill_status st = rill_read_full(s, buf, len, &n);
    ck_assert_msg(st == RILL_OK, "read: %s", rill_errmsg(s));
    buf[len] = '\0';
    return buf;
}

/* rill_write_fmt without the compiler's format check, to pass it a NULL format. */
static rill_status (*const write_fmt_unchecked)(rill_stream *, size_t *, const char *,
                                                ...) = rill_write_fmt;

/* Nothing more is readable on @p s right now. */
static void assert_nothing_sent(rill_stream *s)
{
    char c;
    size_t n = 0;
    ck_assert_int_eq(rill_set_timeouts(s, 50, 50), RILL_OK);
    rill_status st = rill_read(s, &c, 1, &n);
    ck_assert_msg(st == RILL_E_TIMEOUT, "status %d, %zu bytes: something was sent", st, n);
}

START_TEST(test_short_line)
{
    int fds = rt_count_fds();
    rill_stream *c = NULL, *s = NULL;
    rt_tcp_pair(&c, &s);
    size_t n = 99;
    ck_assert_int_eq(rill_write_fmt(c, &n, "EHLO %s %d%%\r\n", "client.example", 42), RILL_OK);
    const char *want = "EHLO client.example 42%\r\n";
    ck_assert_uint_eq(n, strlen(want));
    char *got = read_exactly(s, strlen(want));
    ck_assert_str_eq(got, want);
    free(got);
    ck_assert_int_eq(rill_write_fmt(c, NULL, "%s", ""), RILL_OK); /* empty: writes nothing */
    assert_nothing_sent(s);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* Text (2 bytes more than these) at and past the stack buffer (511) and at the limit. */
static const size_t long_sizes[] = { 509, 510, 4000, RILL_WRITE_FMT_MAX - 3 };

START_TEST(test_long_text)
{
    rill_stream *c = NULL, *s = NULL;
    rt_tcp_pair(&c, &s);
    size_t len = long_sizes[_i];
    char *text = malloc(len + 1);
    ck_assert_ptr_nonnull(text);
    rt_fill_pattern(text, len, (uint64_t)len);
    for (size_t i = 0; i < len; i++)
        text[i] = (char)('a' + (unsigned char)text[i] % 26);
    text[len] = '\0';
    size_t n = 0;
    ck_assert_int_eq(rill_set_timeouts(c, 5000, 5000), RILL_OK);
    ck_assert_int_eq(rill_write_fmt(c, &n, "[%s]", text), RILL_OK);
    ck_assert_uint_eq(n, len + 2);
    char *got = read_exactly(s, len + 2);
    ck_assert_int_eq(got[0], '[');
    ck_assert_int_eq(got[len + 1], ']');
    ck_assert_int_eq(memcmp(got + 1, text, len), 0);
    free(got);
    free(text);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_over_limit)
{
    rill_stream *c = NULL, *s = NULL;
    rt_tcp_pair(&c, &s);
    size_t n = 99;
    rt_assert_error(c, rill_write_fmt(c, &n, "%*s", (int)RILL_WRITE_FMT_MAX, "x"), RILL_E_INVALID,
                    "rill_write_fmt: the text is 65536 bytes, over the limit of 65536 "
                    "(RILL_WRITE_FMT_MAX); nothing was written");
    ck_assert_uint_eq(n, 0);
    assert_nothing_sent(s);
    /* The stream stays usable. */
    ck_assert_int_eq(rill_write_fmt(c, NULL, "ok\n"), RILL_OK);
    char *got = read_exactly(s, 3);
    ck_assert_str_eq(got, "ok\n");
    free(got);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_invalid)
{
    rill_stream *c = NULL, *s = NULL;
    rt_tcp_pair(&c, &s);
    size_t n = 5;
    rt_assert_error(c, write_fmt_unchecked(c, &n, NULL), RILL_E_INVALID,
                    "rill_write_fmt: format is NULL");
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_write_fmt(NULL, NULL, "x"), RILL_E_INVALID);
    ck_assert_int_eq(rill_shutdown(c), RILL_OK);
    rt_assert_error(c, rill_write_fmt(c, NULL, "late\n"), RILL_E_CLOSED, "");
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* Long text needs one allocation: its failure is RILL_E_NOMEM with nothing written. */
START_TEST(test_nomem)
{
    rill_stream *c = NULL, *s = NULL;
    rt_tcp_pair(&c, &s);
    char text[1000];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    rt_counting_on();
    rt_allocs_left = 0;
    rill_status st = rill_write_fmt(c, NULL, "%s", text);
    rill_status small = rill_write_fmt(c, NULL, "%s", "short\n"); /* no allocation */
    rt_counting_off();
    rt_assert_error(c, st, RILL_E_NOMEM, "rill_write_fmt: out of memory for 999 bytes of text");
    ck_assert_int_eq(small, RILL_OK);
    char *got = read_exactly(s, 6);
    ck_assert_str_eq(got, "short\n");
    free(got);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * A chain built in one variable: whichever step fails, rill_errmsg() of that variable says why,
 * and it is still the caller's to close.
 */
static rill_status step(rill_stream **s, int which)
{
    switch (which) {
    case 0: return rill_buffered_new(*s, 0, 4096, 0, s);
    case 1: return rill_lines_new(*s, 0, RILL_EOL_CRLF, 0, s);
    case 2: return rill_lines_new(*s, 512, (rill_eol)7, 0, s);
    default: return write_fmt_unchecked(*s, NULL, NULL);
    }
}

static const char *const step_messages[] = {
    "rill_buffered_new: read size 0 out of range",
    "rill_lines_new: max_line 0 out of range",
    "rill_lines_new: unknown line ending mode 7",
    "rill_write_fmt: format is NULL",
};

START_TEST(test_one_place_to_look)
{
    int fds = rt_count_fds();
    rill_stream *c = NULL, *srv = NULL;
    rt_tcp_pair(&c, &srv);
    rill_stream *s = c;
    ck_assert_int_eq(rill_buffered_new(s, 4096, 4096, 0, &s), RILL_OK);
    rill_stream *top = s;
    rill_status st = step(&s, _i);
    rt_assert_error(s, st, RILL_E_INVALID, step_messages[_i]);
    ck_assert_ptr_eq(s, top); /* unchanged on failure */
    ck_assert_int_eq(rill_last_error(s)->code, RILL_E_INVALID);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_int_eq(rill_close(srv), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/*
 * The line rill_read_line hands out stays valid across writes and flushes on the same chain
 * (lines > buffered > tcp): a reply can quote the request it answers.
 */
START_TEST(test_line_survives_reply)
{
    rill_stream *c = NULL, *srv = NULL, *s = NULL;
    rt_tcp_pair(&c, &srv);
    ck_assert_int_eq(rill_set_timeouts(srv, 5000, 5000), RILL_OK);
    ck_assert_int_eq(rill_buffered_new(srv, 64, 16, 0, &s), RILL_OK);
    ck_assert_int_eq(rill_lines_new(s, 512, RILL_EOL_CRLF, 0, &s), RILL_OK);
    ck_assert_int_eq(rill_write_fmt(c, NULL, "GET /first\r\nGET /second\r\n"), RILL_OK);
    const char *line = NULL;
    size_t len = 0;
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "GET /first");
    /* A reply larger than the write buffer, flushed, while the line is still in use. */
    char pad[100];
    memset(pad, '.', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    ck_assert_int_eq(rill_write_fmt(s, NULL, "200 %s %s\r\n", line, pad), RILL_OK);
    ck_assert_int_eq(rill_flush(s), RILL_OK);
    ck_assert_str_eq(line, "GET /first");
    ck_assert_uint_eq(len, 10);
    char *got = read_exactly(c, 4 + 10 + 1 + 99 + 2);
    ck_assert_int_eq(strncmp(got, "200 GET /first ..", 17), 0);
    free(got);
    ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "GET /second");
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_int_eq(rill_close(c), RILL_OK);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *suite = suite_create("write_fmt");
    TCase *tc = tcase_create("write_fmt");
    tcase_add_test(tc, test_short_line);
    tcase_add_loop_test(tc, test_long_text, 0, (int)(sizeof long_sizes / sizeof long_sizes[0]));
    tcase_add_test(tc, test_over_limit);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_nomem);
    tcase_add_test(tc, test_line_survives_reply);
    tcase_add_loop_test(tc, test_one_place_to_look, 0,
                        (int)(sizeof step_messages / sizeof step_messages[0]));
    suite_add_tcase(suite, tc);
    return suite;
}
