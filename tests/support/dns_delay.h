/* SPDX-License-Identifier: MIT */
/*
 * A scripted DNS responder for the Happy Eyeballs suites: UDP and TCP on 127.0.0.1 and one free
 * port, run by a thread of the test process. The test says, per name and query type, which
 * addresses to answer with, after how long (or never) and with which response code; every query
 * is logged with its arrival time, so a test can assert what the resolver asked and when.
 *
 *  - A name with no rule at all is NXDOMAIN (with an SOA in the authority section).
 *  - A name with a rule for one type answers other types at once with NOERROR and no answer
 *    (NODATA), again with an SOA, so a resolver caches the absence negatively.
 *  - Delayed answers are queued with their due time: a slow answer never holds up another.
 *  - Names are compared without regard to case; the question is echoed as it came. An EDNS OPT
 *    record (or anything else) after the question is ignored; malformed queries are dropped and
 *    counted (rt_dnsd_malformed).
 *
 * Loopback only. The functions that can fail return a status instead of failing the test, so
 * they can also run in a child process (rt_run_child), where Check's assertions must not be
 * used; rt_dnsd_start() is the asserting form for ordinary tests.
 */
#ifndef RILL_TEST_DNS_DELAY_H
#define RILL_TEST_DNS_DELAY_H

#include <stddef.h>
#include <stdint.h>

/* Query types the rules are made for. */
#define RT_DNSD_A    1
#define RT_DNSD_AAAA 28

/* delay_ms of a rule whose queries are logged and never answered. */
#define RT_DNSD_NEVER (-1)

/* Response codes a rule may give. */
#define RT_DNSD_NOERROR  0
#define RT_DNSD_SERVFAIL 2
#define RT_DNSD_NXDOMAIN 3
#define RT_DNSD_REFUSED  5

/* Addresses one rule may answer with. */
#define RT_DNSD_MAX_ADDRS 8

typedef struct rt_dnsd rt_dnsd;

/*
 * Bind UDP and a TCP listener on 127.0.0.1 and one free port and start the thread. NULL on
 * failure, with the reason in @p why. Also clears LOCALDOMAIN, so contexts made after this use
 * no search domains from the machine's resolv.conf.
 */
rt_dnsd *rt_dnsd_try_start(char *why, size_t len);

/* As rt_dnsd_try_start(), failing the test (ck_abort) with the reason. */
rt_dnsd *rt_dnsd_start(void);

/* "127.0.0.1:PORT", for rill_ctx_opts.dns_servers. Valid until rt_dnsd_stop(). */
const char *rt_dnsd_servers(const rt_dnsd *d);

uint16_t rt_dnsd_port(const rt_dnsd *d);

/*
 * Set the rule for @p name (without a trailing dot) and @p type (RT_DNSD_A or RT_DNSD_AAAA,
 * or any other type number), replacing an earlier one: answer with @p addr (numeric, of the
 * type's family; NULL: no address, so NOERROR/NODATA), @p delay_ms after the query arrived
 * (0: at once; RT_DNSD_NEVER: never), with response code @p rcode (non-zero codes carry no
 * answer) and TTL @p ttl seconds. Takes effect for queries that arrive afterwards.
 * Returns 0, or -1 for a bad argument (the reason goes to stderr). Thread-safe.
 */
int rt_dnsd_set(rt_dnsd *d, const char *name, int type, const char *addr, int delay_ms, int rcode,
                int ttl);

/* Add one more address to the rule of @p name and @p type (made by rt_dnsd_set). 0 or -1. */
int rt_dnsd_add(rt_dnsd *d, const char *name, int type, const char *addr);

/*
 * When @p on, every UDP answer is sent with the TC bit and no records, so the resolver must
 * ask again over TCP (where the rules apply as over UDP).
 */
void rt_dnsd_truncate_udp(rt_dnsd *d, int on);

/* Queries received so far for @p name and @p type (0: any type), over UDP and TCP. */
int rt_dnsd_count(rt_dnsd *d, const char *name, int type);

/* Of those, the ones that came over TCP. */
int rt_dnsd_count_tcp(rt_dnsd *d, const char *name, int type);

/*
 * Arrival times (rt_now_us() clock) of the queries for @p name and @p type (0: any), oldest
 * first: fills up to @p max entries of @p us and returns how many queries there were.
 */
int rt_dnsd_arrivals(rt_dnsd *d, const char *name, int type, int64_t *us, int max);

/* Datagrams and TCP messages dropped as malformed so far. */
int rt_dnsd_malformed(rt_dnsd *d);

/* Answers sent so far (UDP and TCP). */
int rt_dnsd_answered(rt_dnsd *d);

/* Stop the thread, close every socket, free. Queued answers are dropped. NULL is accepted. */
void rt_dnsd_stop(rt_dnsd *d);

/* Stop every responder still running (for a teardown fixture; also run at exit). */
void rt_dnsd_stop_all(void);

#endif
