/* SPDX-License-Identifier: MIT */
/*
 * Findings of the fuzz targets (tests/fuzz/), replayed as ordinary tests over real sockets.
 * The raw crash inputs are also kept in tests/fuzz/regressions/<target>/ and run by the
 * fuzz_<target> ctests; the cases here state the expected behaviour in the API's own terms.
 *
 * Z1 (fuzz_tls_client): a server whose first record is a close_notify alert (a warning-level
 * alert, valid TLS framing) made rill_tls_handshake() return RILL_EOF with an empty message,
 * although no handshake happened; the stream was not failed, so when the peer kept the
 * connection open, reads reported a clean end of stream and writes RILL_EOF. The handshake must
 * fail with an error (RILL_E_TLS) that names the reason, and the stream must stay failed.
 */
#include "support.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A warning-level close_notify alert record, as a TLS 1.2 server would frame it. */
static const unsigned char close_notify[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00 };

/* Junk application-data record after it, so the connection stays open and has bytes. */
static const unsigned char app_record[] = { 0x17, 0x03, 0x03, 0x00, 0x01, 'x' };

static rill_stream *client_after(const void *bytes, size_t len, int close_peer, int *peer,
                                 rill_tls_config **cfg)
{
    rill_stream *fd = rt_fd_end(peer);
    ck_assert_int_eq(write(*peer, bytes, len), (ssize_t)len);
    if (close_peer)
        ck_assert_int_eq(shutdown(*peer, SHUT_WR), 0);
    rill_error err;
    ck_assert_int_eq(rill_tls_config_new(cfg, &err), RILL_OK);
    ck_assert_int_eq(rill_tls_config_insecure_noverifycert(*cfg, &err), RILL_OK);
    rill_stream *c = NULL;
    ck_assert_int_eq(rill_tls_client(fd, *cfg, "fuzz.rill.test", 0, &c), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(c, 2000, 2000), RILL_OK);
    return c;
}

/* _i: 0 the peer closes after the alert, 1 it keeps the connection open and sends more. */
START_TEST(test_tls_close_notify_during_handshake)
{
    unsigned char bytes[sizeof close_notify + sizeof app_record];
    memcpy(bytes, close_notify, sizeof close_notify);
    memcpy(bytes + sizeof close_notify, app_record, sizeof app_record);
    size_t len = _i == 0 ? sizeof close_notify : sizeof bytes;
    int peer = -1;
    rill_tls_config *cfg = NULL;
    rill_stream *c = client_after(bytes, len, _i == 0, &peer, &cfg);

    rill_status st = rill_tls_handshake(c);
    rt_assert_error(c, st, RILL_E_TLS, "tls: peer sent close_notify during the handshake");
    rill_tls_info info;
    ck_assert_int_eq(rill_tls_get_info(c, &info), RILL_OK);
    ck_assert_int_eq(info.handshake_done, 0);

    /* The stream stays failed: no clean end of stream for a connection never established. */
    char buf[16];
    size_t n = 0;
    rill_status rs = rill_read(c, buf, sizeof buf, &n);
    ck_assert_msg(rs == st, "read after the failed handshake: %d (%s), handshake said %d", rs,
                  rill_strerror(rs), (int)st);
    rill_status ws = rill_write(c, "hi", 2, &n);
    ck_assert_msg(ws < 0, "write after the failed handshake: %d (%s)", ws, rill_strerror(ws));

    rill_close(c);
    rill_tls_config_free(cfg);
    close(peer);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("fuzz_regressions");
    TCase *tc = tcase_create("tls");
    tcase_add_loop_test(tc, test_tls_close_notify_during_handshake, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
