/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of the soak programs (tests/soak/): plain C programs, one per scenario, that
 * print their figures and exit non-zero on failure. They run only under the ctest label "soak"
 * (scripts/soak), never in the default test run.
 */
#ifndef RILL_SOAK_H
#define RILL_SOAK_H

#include <stddef.h>
#include <stdint.h>

#include "rill/rill.h"

#if defined(__GNUC__)
#define SOAK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SOAK_PRINTF(f, a)
#endif

/* Program name for messages; each program sets it first thing in main(). */
extern const char *soak_prog;

/* Print "<prog>: FAIL: ..." to stdout (so it sits among the figures) and count it. */
void soak_fail(const char *fmt, ...) SOAK_PRINTF(1, 2);

/* Failures counted by soak_fail() so far (thread-safe). */
unsigned soak_failures(void);

/* Print "<prog>: ..." and exit with status 1: for setup errors that leave nothing to test. */
void soak_die(const char *fmt, ...) SOAK_PRINTF(1, 2) __attribute__((noreturn));

/* Monotonic clock in milliseconds. */
int64_t soak_now_ms(void);

/* Open descriptors of this process (entries of /proc/self/fd), or -1. */
int soak_fd_count(void);

/* Resident set size of this process in bytes (/proc/self/statm), or 0. */
uint64_t soak_rss_bytes(void);

/* Parse a positive decimal count from @p text, or die naming @p what. */
unsigned long soak_parse_count(const char *text, const char *what);

/*
 * Raise the RLIMIT_NOFILE soft limit to the hard limit; die if the result is below @p need.
 * Returns the new soft limit.
 */
unsigned long soak_raise_nofile(unsigned long need);

/*
 * Bytes [@p offset, @p offset + @p len) of the endless pseudo-random stream named by @p seed.
 * Any position can be produced without the bytes before it, so a sender and a checker need no
 * buffer of the whole payload.
 */
void soak_pattern(void *buf, size_t len, uint64_t seed, uint64_t offset);

/* FNV-1a 64-bit, chainable (start with 0): the support library's rt_checksum. */
uint64_t soak_checksum(uint64_t h, const void *buf, size_t len);

/* Encode / decode a 64-bit value little-endian (the soak protocols' framing). */
void soak_put64(unsigned char out[8], uint64_t v);
uint64_t soak_get64(const unsigned char in[8]);

/*
 * TLS configs over the test certificates (tests/support/certs.h, made now in a private
 * directory under /tmp and removed at exit): a client trusting the test root, verifying
 * SOAK_HOST; a server presenting the "good" leaf with its chain. Dies on error.
 */
#define SOAK_HOST "good.rill.test"
void soak_tls_configs(rill_tls_config **client, rill_tls_config **server);

/*
 * Route rill's own allocations (not OpenSSL's or c-ares's) through a thread-safe counter; call
 * first thing in main(), before any other rill function. soak_rill_heap() then reports the
 * bytes and blocks rill has allocated and not yet freed.
 */
void soak_count_rill_heap(void);
void soak_rill_heap(uint64_t *bytes, uint64_t *blocks);

/* "12.3 MiB" style text of @p bytes into @p buf. */
const char *soak_mib(char *buf, size_t len, uint64_t bytes);

#endif
