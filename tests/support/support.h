/*
 * Test support shared by the suites: real peers on loopback, descriptor counting, helpers.
 * Everything here talks to real sockets; nothing mocks the network.
 */
#ifndef RILL_TEST_SUPPORT_H
#define RILL_TEST_SUPPORT_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rill.h"
#include "rill/stream.h"

/* Each test file defines this; the shared runner main() runs it. */
Suite *rill_test_suite(void);

/* Number of open descriptors of this process (entries of /proc/self/fd). */
int rt_count_fds(void);

/*
 * A connected TCP pair on 127.0.0.1 made with rill's own listener: *client from
 * rill_tcp_connect_addr, *server from rill_accept. Fails the test on error.
 */
void rt_tcp_pair(rill_stream **client, rill_stream **server);

/* A connected AF_UNIX socketpair as two raw descriptors (SOCK_STREAM, CLOEXEC). */
void rt_socketpair(int fds[2]);

/* Deterministic pseudo-random bytes (xorshift) for payloads; same seed, same bytes. */
void rt_fill_pattern(void *buf, size_t len, uint64_t seed);

/* FNV-1a 64-bit checksum, chainable: pass the previous result as @p h (start with 0). */
uint64_t rt_checksum(uint64_t h, const void *buf, size_t len);

/* Assert that status @p st equals @p want and that the stream's message contains @p needle. */
#define rt_assert_error(s, st, want, needle)                                                    \
    do {                                                                                        \
        rill_status rt_st_ = (st);                                                              \
        ck_assert_msg(rt_st_ == (want), "status %d (%s), wanted %d (%s); message: %s",          \
                      (int)rt_st_, rill_strerror(rt_st_), (int)(want), rill_strerror(want),     \
                      rill_errmsg(s));                                                          \
        ck_assert_msg(strstr(rill_errmsg(s), (needle)) != NULL,                                 \
                      "message \"%s\" lacks \"%s\"", rill_errmsg(s), (needle));                 \
    } while (0)

/* Same for a rill_error filled by a constructor. */
#define rt_assert_err(errp, st, want, needle)                                                   \
    do {                                                                                        \
        rill_status rt_st_ = (st);                                                              \
        ck_assert_msg(rt_st_ == (want), "status %d (%s), wanted %d (%s); message: %s",          \
                      (int)rt_st_, rill_strerror(rt_st_), (int)(want), rill_strerror(want),     \
                      (errp)->msg);                                                             \
        ck_assert_int_eq((errp)->code, (want));                                                 \
        ck_assert_msg(strstr((errp)->msg, (needle)) != NULL, "message \"%s\" lacks \"%s\"",     \
                      (errp)->msg, (needle));                                                   \
    } while (0)

#endif
