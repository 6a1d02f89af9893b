/* SPDX-License-Identifier: MIT */
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

/* An owning fd transport on one end of a socketpair; *peer is the raw other end. */
rill_stream *rt_fd_end(int *peer);

/* A connected AF_UNIX socketpair as two raw descriptors (SOCK_STREAM, CLOEXEC). */
void rt_socketpair(int fds[2]);

/* Deterministic pseudo-random bytes (xorshift) for payloads; same seed, same bytes. */
void rt_fill_pattern(void *buf, size_t len, uint64_t seed);

/* FNV-1a 64-bit checksum, chainable: pass the previous result as @p h (start with 0). */
uint64_t rt_checksum(uint64_t h, const void *buf, size_t len);

/* Assert that status @p st equals @p want and that the stream's message contains @p needle. */
#define rt_assert_error(s, st, want, needle)                                                   \
    do {                                                                                       \
        rill_status rt_st_ = (st);                                                             \
        ck_assert_msg(rt_st_ == (want), "status %d (%s), wanted %d (%s); message: %s",         \
                      (int)rt_st_, rill_strerror(rt_st_), (int)(want), rill_strerror(want),    \
                      rill_errmsg(s));                                                         \
        ck_assert_msg(strstr(rill_errmsg(s), (needle)) != NULL, "message \"%s\" lacks \"%s\"", \
                      rill_errmsg(s), (needle));                                               \
    } while (0)

/* Same for a rill_error filled by a constructor. */
#define rt_assert_err(errp, st, want, needle)                                               \
    do {                                                                                    \
        rill_status rt_st_ = (st);                                                          \
        ck_assert_msg(rt_st_ == (want), "status %d (%s), wanted %d (%s); message: %s",      \
                      (int)rt_st_, rill_strerror(rt_st_), (int)(want), rill_strerror(want), \
                      (errp)->msg);                                                         \
        ck_assert_int_eq((errp)->code, (want));                                             \
        ck_assert_msg(strstr((errp)->msg, (needle)) != NULL, "message \"%s\" lacks \"%s\"", \
                      (errp)->msg, (needle));                                               \
    } while (0)

/* ---- Transports, timing and processes (added with the transport suites) ---- */

/* Monotonic clock in microseconds. */
int64_t rt_now_us(void);

/* Assert that at least @p min_ms and at most @p max_ms passed since @p start_us (rt_now_us). */
#define rt_assert_elapsed(start_us, min_ms, max_ms)                                      \
    do {                                                                                 \
        int64_t rt_el_ = rt_now_us() - (start_us);                                       \
        ck_assert_msg(rt_el_ >= (int64_t)(min_ms)*1000,                                  \
                      "returned after %lld us, before the %d ms it had to wait",         \
                      (long long)rt_el_, (int)(min_ms));                                 \
        ck_assert_msg(rt_el_ <= (int64_t)(max_ms)*1000, "took %lld us, more than %d ms", \
                      (long long)rt_el_, (int)(max_ms));                                 \
    } while (0)

/* Whether descriptor @p fd is open in this process. */
int rt_fd_is_open(int fd);

/* Whether ::1 can be bound here; if not, returns 0 and writes the reason into @p why. */
int rt_ipv6_loopback(char *why, size_t len);

/*
 * Like rt_tcp_pair, listening on @p addr (NULL: 127.0.0.1) with @p lopts and connecting with
 * @p copts (either NULL for defaults). Fails the test on error.
 */
void rt_tcp_pair_opts(const char *addr, const rill_connect_opts *copts,
                      const rill_listen_opts *lopts, rill_stream **client, rill_stream **server);

/* A connected Unix-domain pair on @p path ('@' prefix: abstract), made with rill's listener. */
void rt_unix_pair(const char *path, rill_stream **client, rill_stream **server);

/*
 * Write @p len pattern bytes (seeded) to @p from with rill_write_all and check that exactly
 * those bytes arrive at @p to with rill_read_full. Nothing reads concurrently, so @p len must
 * fit in the transport's buffers (64 KiB is safe for sockets and pipes).
 */
void rt_transfer(rill_stream *from, rill_stream *to, size_t len, uint64_t seed);

/* getsockopt() of an int option; fails the test on error. */
int rt_sockopt_int(int fd, int level, int name);

/*
 * Watchdog for calls that would hang if the library were wrong: after @p seconds the process
 * prints "watchdog: <what> still running after N s" and exits with status 3 (a failure in fork
 * and no-fork mode alike). 0 disarms it.
 */
void rt_watchdog(unsigned seconds, const char *what);

/* A new private directory "/tmp/rill-test-XXXXXX" in @p buf (at least 32 bytes). */
void rt_mkdtemp(char *buf, size_t len);

/* Remove directory @p dir and the files directly inside it. */
void rt_rmdir(const char *dir);

/*
 * Run @p fn in a forked child, for tests that must survive signals (SIGPIPE) or change
 * process-wide state (limits, signal masks). The child fills *rep (shared memory) and must not
 * use ck_assert; it exits with 0 when @p fn returns, or 3 after @p timeout_s seconds.
 */
typedef struct rt_child_report {
    int status;    /* usually a rill_status */
    int values[8]; /* free-form facts the child observed */
    char msg[RILL_ERRMSG_MAX + 64];
} rt_child_report;

typedef struct rt_child_result {
    int exited; /* 1 if the child exited normally */
    int exit_code;
    int term_signal; /* the signal that killed it, or 0 */
    rt_child_report report;
} rt_child_result;

void rt_run_child(void (*fn)(rt_child_report *rep, void *arg), void *arg, unsigned timeout_s,
                  rt_child_result *res);

/* Assert the child ran to its end: not killed by a signal, exit status 0. */
#define rt_assert_child_ok(res)                                                       \
    do {                                                                              \
        ck_assert_msg((res)->term_signal == 0, "child killed by signal %d (%s)",      \
                      (res)->term_signal, strsignal((res)->term_signal));             \
        ck_assert_msg((res)->exited && (res)->exit_code == 0,                         \
                      "child exited with status %d (3: watchdog)", (res)->exit_code); \
    } while (0)

/*
 * Registries of live helper servers, so a harness can stop them all at exit: rt_track puts @p p
 * in the first free of the @p n slots of @p table (failing the test, naming harness @p what,
 * when all are taken) and registers @p stop_all with atexit() once; rt_untrack clears its slot.
 */
void rt_track(void **table, int n, void *p, void (*stop_all)(void), const char *what);
void rt_untrack(void **table, int n, const void *p);

/* Whether the test runs under valgrind (scripts/test --valgrind). */
int rt_on_valgrind(void);

/*
 * Counting allocator (tests/support/alloc.c): rt_counting_on() routes rill's allocations
 * through it with rt_live_bytes zeroed; rt_allocs_left >= 0 makes allocations fail once that
 * many more have succeeded; rt_counting_off() restores the default allocator.
 */
extern size_t rt_live_bytes;
extern long rt_allocs_left;
void rt_counting_on(void);
void rt_counting_off(void);

#endif
