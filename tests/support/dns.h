/* SPDX-License-Identifier: MIT */
/*
 * DNS peers for the resolver and connect suites, all on 127.0.0.1 and a free high port:
 *
 *  - rt_dns: a real dnsmasq (Debian's dnsmasq-base) in the foreground with a generated
 *    configuration: no upstream, authoritative NXDOMAIN for unknown names under rill.test, and
 *    the records below. Every query is logged, so a test can count what reached the server.
 *  - rt_dns_silent: a UDP socket (and a TCP listener on the same port) that never answers.
 *  - rt_dns_relay: a UDP relay in front of an rt_dns that holds each query for a fixed delay,
 *    so a lookup stays in flight long enough for other threads to join it.
 *  - rt_dns_fixed: a scripted UDP server that gives every name the same answer (or the same
 *    error) at once, for names dnsmasq would not answer as a test needs (localhost) and for
 *    lookups by the hundred thousand.
 *
 * Failing to start any of them fails the test with the reason (a missing dnsmasq included:
 * these tests never skip). Addresses used are loopback only.
 */
#ifndef RILL_TEST_DNS_H
#define RILL_TEST_DNS_H

#include <stdint.h>

/* The records served by rt_dns (all under RT_DNS_DOMAIN; anything else there is NXDOMAIN). */
#define RT_DNS_DOMAIN    "rill.test"
#define RT_DNS_BOTH      "both.rill.test"  /* A 127.0.0.1 and AAAA ::1, TTL RT_DNS_TTL_S */
#define RT_DNS_V4        "v4.rill.test"    /* A 127.0.0.1 only (AAAA: no data) */
#define RT_DNS_V6        "v6.rill.test"    /* AAAA ::1 only (A: no data) */
#define RT_DNS_ALIAS     "alias.rill.test" /* CNAME hop.rill.test, CNAME both.rill.test */
#define RT_DNS_ALIAS_HOP "hop.rill.test"
#define RT_DNS_SHORT     "short.rill.test"   /* A 127.0.0.1 and AAAA ::1, TTL RT_DNS_SHORT_TTL_S */
#define RT_DNS_WILD      "wild.rill.test"    /* any name below it: A 127.0.0.1 and AAAA ::1 */
#define RT_DNS_MISSING   "missing.rill.test" /* NXDOMAIN */

#define RT_DNS_TTL_S       60
#define RT_DNS_SHORT_TTL_S 1

/* ---- dnsmasq ---- */

typedef struct rt_dns rt_dns;

/*
 * Start dnsmasq and wait until it answers. Fails the test (ck_abort) if dnsmasq is missing or
 * does not come up. The process is killed if the test process dies first.
 */
rt_dns *rt_dns_start(void);

/* "127.0.0.1:PORT", for rill_ctx_opts.dns_servers. Valid until rt_dns_stop(). */
const char *rt_dns_servers(const rt_dns *d);

uint16_t rt_dns_port(const rt_dns *d);

/*
 * How many queries for @p name (any type; compared without regard to case) dnsmasq has logged
 * so far. Queries answered before the call are always counted (the call waits for a probe
 * query of its own to be answered first, and dnsmasq handles queries in order).
 */
int rt_dns_query_count(rt_dns *d, const char *name);

/* Same, for one query type only: "A", "AAAA", ... */
int rt_dns_query_count_type(rt_dns *d, const char *name, const char *type);

/* Kill dnsmasq, wait for it, remove its files. NULL is accepted. */
void rt_dns_stop(rt_dns *d);

/* ---- a server that never answers ---- */

typedef struct rt_dns_silent rt_dns_silent;

/* Bind UDP and TCP (listening, never accepting) on 127.0.0.1 and one free port. */
rt_dns_silent *rt_dns_silent_start(void);

/* "127.0.0.1:PORT". Valid until rt_dns_silent_stop(). */
const char *rt_dns_silent_servers(const rt_dns_silent *s);

/* Datagrams received so far, plus 1 if a TCP connection is waiting to be accepted. */
int rt_dns_silent_received(rt_dns_silent *s);

/* Close the sockets. NULL is accepted. */
void rt_dns_silent_stop(rt_dns_silent *s);

/* ---- a relay that delays answers ---- */

typedef struct rt_dns_relay rt_dns_relay;

/*
 * Relay UDP queries to @p upstream, each sent on @p delay_ms after it arrived (answers come
 * back at once). A thread does the work until rt_dns_relay_stop().
 */
rt_dns_relay *rt_dns_relay_start(const rt_dns *upstream, int delay_ms);

/* "127.0.0.1:PORT". Valid until rt_dns_relay_stop(). */
const char *rt_dns_relay_servers(const rt_dns_relay *r);

/* Queries received from clients so far. Thread-safe. */
int rt_dns_relay_received(rt_dns_relay *r);

/* Stop the thread and close the sockets. NULL is accepted. */
void rt_dns_relay_stop(rt_dns_relay *r);

/* ---- a scripted server that gives every name the same answer ---- */

typedef struct rt_dns_fixed rt_dns_fixed;

/*
 * Answer every UDP query on 127.0.0.1 and a free port from a thread, whatever the name: type A
 * with address @p a, AAAA with @p aaaa (either NULL: no data), TTL @p ttl_s; other types get no
 * data. With @p rcode non-zero every query gets that rcode and no records (5: REFUSED).
 */
rt_dns_fixed *rt_dns_fixed_start(const char *a, const char *aaaa, int ttl_s, int rcode);

/* "127.0.0.1:PORT". Valid until rt_dns_fixed_stop(). */
const char *rt_dns_fixed_servers(const rt_dns_fixed *f);

/* Queries received so far (each counted before it is answered). Thread-safe. */
int rt_dns_fixed_received(rt_dns_fixed *f);

/* Stop the thread and close the sockets. NULL is accepted. */
void rt_dns_fixed_stop(rt_dns_fixed *f);

/* Stop every rt_dns, silent server, relay and fixed server still running (for a teardown
 * fixture). */
void rt_dns_stop_all(void);

#endif
