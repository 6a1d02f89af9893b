/* SPDX-License-Identifier: MIT */
/*
 * Proxies and origins for the proxy suite, all on 127.0.0.1 and free high ports:
 *
 *  - rt_daemon: a real proxy from a Debian package run as a child process in the foreground
 *    (tinyproxy, microsocks, stunnel4), started with a generated configuration and waited for
 *    until it listens. Daemons made before Check forks (from rill_test_suite()) are shared by
 *    the forked tests and stopped when the process that made them exits.
 *  - rt_origin: a rill listener in a thread that serves a checksummed transfer (plain, TLS, or
 *    plain then STARTTLS), one thread per connection.
 *  - rt_badproxy: a scripted HTTP/SOCKS5 proxy on rill's listener that misbehaves on purpose.
 */
#ifndef RILL_TEST_PROXIES_H
#define RILL_TEST_PROXIES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rill/rill.h"

/* ---- real proxies ---- */

typedef struct rt_daemon rt_daemon;

/* tinyproxy; @p user non-NULL: Basic auth required; @p connect_port non-zero: CONNECT to that
 * port only (others get 403). NULL and a reason in @p why if it cannot start. */
rt_daemon *rt_tinyproxy_start(const char *user, const char *pass, uint16_t connect_port, char *why,
                              size_t len);

/* microsocks (SOCKS5); @p user non-NULL: username/password required. */
rt_daemon *rt_microsocks_start(const char *user, const char *pass, char *why, size_t len);

/* stunnel4 terminating TLS with certificate @p chain / @p key and forwarding to 127.0.0.1:@p to:
 * an HTTPS proxy in front of a tinyproxy. */
rt_daemon *rt_stunnel_start(uint16_t to, const char *chain, const char *key, char *why, size_t len);

uint16_t rt_daemon_port(const rt_daemon *d);
pid_t rt_daemon_pid(const rt_daemon *d);

/* Stop (SIGTERM, then SIGKILL) and free. NULL is accepted. Only the process that started the
 * daemon stops it; in others (forked tests) this frees nothing. */
void rt_daemon_stop(rt_daemon *d);

/* ---- origins ---- */

typedef enum rt_origin_mode {
    RT_ORIGIN_PLAIN = 0,
    RT_ORIGIN_TLS,      /* TLS server with the "good" leaf from the start */
    RT_ORIGIN_STARTTLS, /* "220 ready", "STARTTLS" -> "220 go", then TLS, then the transfer */
    RT_ORIGIN_BANNER    /* sends "HELLO\n" at once, then the transfer */
} rt_origin_mode;

typedef struct rt_origin rt_origin;

/*
 * The transfer: the client sends u64 up, u64 down (big-endian), then @c up bytes; the origin
 * answers with the u64 checksum (rt_checksum) of what it received, then @c down pattern bytes
 * of seed 2, and closes.
 */
rt_origin *rt_origin_start(rt_origin_mode mode);
uint16_t rt_origin_port(const rt_origin *o);
int rt_origin_served(rt_origin *o); /* transfers that completed (their streams closed) */
void rt_origin_stop(rt_origin *o);

/* The client side of the transfer over @p s; fails the test on any mismatch. */
void rt_transfer_check(rill_stream *s, size_t up, size_t down);

/* The TLS config the tests use to verify origins and the HTTPS proxy (rt_certs' root). */
rill_tls_config *rt_client_tls(void);

/* ---- a proxy that misbehaves ---- */

typedef enum rt_bad_mode {
    RT_BAD_GARBAGE,       /* answers the CONNECT with bytes that are not HTTP */
    RT_BAD_CLOSE_MID,     /* sends half a status line and closes */
    RT_BAD_SILENT,        /* reads the request and says nothing */
    RT_BAD_SAME_SEGMENT,  /* "200" and the target's first bytes in one write, then echoes */
    RT_BAD_LONG_HEADER,   /* "200" then a header line of 1 MiB */
    RT_BAD_SOCKS_GARBAGE, /* answers a SOCKS5 greeting with an HTTP error */
    RT_BAD_SOCKS_BADREP   /* accepts no-auth, answers CONNECT with reply code 9 */
} rt_bad_mode;

#define RT_BAD_FIRST_BYTES "ORIGIN-FIRST-BYTES\n"

typedef struct rt_badproxy rt_badproxy;
rt_badproxy *rt_badproxy_start(rt_bad_mode mode);
uint16_t rt_badproxy_port(const rt_badproxy *b);
int rt_badproxy_handled(rt_badproxy *b); /* connections served and closed so far */
void rt_badproxy_stop(rt_badproxy *b);

#endif
