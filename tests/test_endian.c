/* SPDX-License-Identifier: MIT */
/* Big-endian integer helpers over real TCP streams, raw and buffered. */
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

/* A client stream (raw tcp, or tcp > buffered when @p buffered) and the raw peer stream. */
static void pair(int buffered, rill_stream **client, rill_stream **server)
{
    rt_tcp_pair(client, server);
    if (buffered) {
        rill_stream *b = NULL;
        ck_assert_int_eq(rill_buffered_new(*client, 64, 64, 0, &b), RILL_OK);
        *client = b;
    }
}

/* Loop: 0 raw, 1 buffered. Every width round-trips its edge values, in network byte order. */
START_TEST(test_round_trip)
{
    rill_stream *c, *s;
    pair(_i, &c, &s);
    static const uint64_t v64[] = { 0, 1, 0x0102030405060708ull, UINT64_MAX };
    for (size_t i = 0; i < sizeof v64 / sizeof v64[0]; i++) {
        ck_assert_int_eq(rill_write_u16be(c, (uint16_t)v64[i]), RILL_OK);
        ck_assert_int_eq(rill_write_u32be(c, (uint32_t)v64[i]), RILL_OK);
        ck_assert_int_eq(rill_write_u64be(c, v64[i]), RILL_OK);
    }
    ck_assert_int_eq(rill_flush(c), RILL_OK);
    /* Network byte order on the wire: the first value group of 0x0102... case. */
    for (size_t i = 0; i < sizeof v64 / sizeof v64[0]; i++) {
        unsigned char wire[14];
        ck_assert_int_eq(rill_read_full(s, wire, sizeof wire, NULL), RILL_OK);
        if (v64[i] == 0x0102030405060708ull) {
            static const unsigned char want[] = { 0x07, 0x08, 0x05, 0x06, 0x07, 0x08, 1,
                                                  2,    3,    4,    5,    6,    7,    8 };
            ck_assert_mem_eq(wire, want, sizeof want);
        }
        ck_assert_int_eq(rill_write_all(s, wire, sizeof wire, NULL), RILL_OK);
    }
    for (size_t i = 0; i < sizeof v64 / sizeof v64[0]; i++) {
        uint16_t a;
        uint32_t b;
        uint64_t d;
        ck_assert_int_eq(rill_read_u16be(c, &a), RILL_OK);
        ck_assert_int_eq(rill_read_u32be(c, &b), RILL_OK);
        ck_assert_int_eq(rill_read_u64be(c, &d), RILL_OK);
        ck_assert_uint_eq(a, (uint16_t)v64[i]);
        ck_assert_uint_eq(b, (uint32_t)v64[i]);
        ck_assert_uint_eq(d, v64[i]);
    }
    rill_close(c);
    rill_close(s);
}
END_TEST

/* Loop: 0 raw, 1 buffered. EOF before a value is RILL_EOF; inside one it is RILL_E_PROTOCOL. */
START_TEST(test_eof)
{
    rill_stream *c, *s;
    pair(_i, &c, &s);
    ck_assert_int_eq(rill_write_all(s, "\x01\x02\x03", 3, NULL), RILL_OK);
    ck_assert_int_eq(rill_shutdown(s), RILL_OK);
    uint16_t a = 0;
    ck_assert_int_eq(rill_read_u16be(c, &a), RILL_OK);
    ck_assert_uint_eq(a, 0x0102);
    uint32_t b = 0xdeadbeef;
    rt_assert_error(c, rill_read_u32be(c, &b), RILL_E_PROTOCOL, "ended after 1 of 4 bytes");
    ck_assert_uint_eq(b, 0xdeadbeef); /* untouched on error */
    uint64_t d;
    ck_assert_int_eq(rill_read_u64be(c, &d), RILL_EOF);
    rill_close(c);
    rill_close(s);
}
END_TEST

/* Over buffered, a value cut by the non-blocking mode is not consumed: repeat gives it whole. */
START_TEST(test_nonblocking_buffered_is_atomic)
{
    rill_stream *c, *s;
    pair(1, &c, &s);
    ck_assert_int_eq(rill_set_timeouts(c, 0, RILL_TIMEOUT_NONE), RILL_OK);
    ck_assert_int_eq(rill_write_all(s, "\xAA\xBB", 2, NULL), RILL_OK);
    uint32_t v = 0;
    /* Each attempt buffers what has arrived; until both bytes are in, nothing is consumed. */
    for (int i = 0; i < 400 && rill_pending(c) < 2; i++) {
        ck_assert_int_eq(rill_read_u32be(c, &v), RILL_WANT_READ);
        usleep(5000);
    }
    ck_assert_int_eq(rill_read_u32be(c, &v), RILL_WANT_READ);
    ck_assert_uint_eq(rill_pending(c), 2);
    int fd;
    short ev;
    ck_assert_int_eq(rill_poll_info(c, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, rill_fd(c));
    ck_assert(ev & POLLIN);
    ck_assert_int_eq(rill_write_all(s, "\xCC\xDD", 2, NULL), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(c, 2000, RILL_TIMEOUT_NONE), RILL_OK);
    ck_assert_int_eq(rill_read_u32be(c, &v), RILL_OK);
    ck_assert_uint_eq(v, 0xAABBCCDD);
    rill_close(c);
    rill_close(s);
}
END_TEST

/* On a raw stream a timeout inside a value cannot give the bytes back: a clear error. */
START_TEST(test_timeout_inside_value_raw)
{
    rill_stream *c, *s;
    pair(0, &c, &s);
    ck_assert_int_eq(rill_set_timeouts(c, 100, RILL_TIMEOUT_NONE), RILL_OK);
    ck_assert_int_eq(rill_write_all(s, "\x01\x02\x03", 3, NULL), RILL_OK);
    uint64_t v = 7;
    rt_assert_error(c, rill_read_u64be(c, &v), RILL_E_PROTOCOL, "timed out after 3 of 8 bytes");
    ck_assert_uint_eq(v, 7);
    /* Nothing read at all: a plain timeout, and the stream is still usable. */
    uint16_t w = 0;
    rt_assert_error(c, rill_read_u16be(c, &w), RILL_E_TIMEOUT, "timed out after 100 ms");
    ck_assert_int_eq(rill_write_all(s, "\x12\x34", 2, NULL), RILL_OK);
    ck_assert_int_eq(rill_read_u16be(c, &w), RILL_OK);
    ck_assert_uint_eq(w, 0x1234);
    rill_close(c);
    rill_close(s);
}
END_TEST

START_TEST(test_invalid)
{
    rill_stream *c, *s;
    pair(0, &c, &s);
    rt_assert_error(c, rill_read_u16be(c, NULL), RILL_E_INVALID, "value is NULL");
    rt_assert_error(c, rill_read_u32be(c, NULL), RILL_E_INVALID, "rill_read_u32be");
    rt_assert_error(c, rill_read_u64be(c, NULL), RILL_E_INVALID, "rill_read_u64be");
    uint32_t v;
    ck_assert_int_eq(rill_read_u32be(NULL, &v), RILL_E_INVALID);
    ck_assert_int_eq(rill_write_u32be(NULL, 1), RILL_E_INVALID);
    ck_assert_int_eq(rill_shutdown(c), RILL_OK);
    rt_assert_error(c, rill_write_u16be(c, 1), RILL_E_CLOSED, "write after shutdown");
    rill_close(c);
    rill_close(s);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *suite = suite_create("endian");
    TCase *tc = tcase_create("endian");
    tcase_add_loop_test(tc, test_round_trip, 0, 2);
    tcase_add_loop_test(tc, test_eof, 0, 2);
    tcase_add_test(tc, test_nonblocking_buffered_is_atomic);
    tcase_add_test(tc, test_timeout_inside_value_raw);
    tcase_add_test(tc, test_invalid);
    suite_add_tcase(suite, tc);
    return suite;
}
