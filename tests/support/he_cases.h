/* SPDX-License-Identifier: MIT */
/*
 * The RFC 8305 (Happy Eyeballs) cases shared by the suite of the blocking rill_connect
 * (test_happy_eyeballs.c) and the suite of the non-blocking connect op, each run through a
 * connect function the suite passes in, timed against the scripted DNS responder of dns_delay.h
 * and rill listeners that tell the client which family it reached:
 *
 *  - rt_he_scenario(i): the table of DNS timings: the resolution delay (default 50 ms, 0, 500),
 *    a family late, never answered, SERVFAIL or NODATA, both late or never, answers for a
 *    family nobody listens on, NXDOMAIN; each asserting the outcome, the time against the
 *    delays, the winner's family, the message on failure and the trace;
 *  - refusals starting the next attempt at once, TLS events, the deadline over DNS and TLS;
 *  - in private network namespaces with blackholed addresses: the connection attempt delay and
 *    its floor, interleaved families with earlier attempts kept running, a late answer joining
 *    a race in flight, the deadline over DNS and TCP.
 *
 * Every case fails the test (Check assertions) with what it saw: status, time, message and the
 * whole trace. Cases that need ::1 print "SKIP" and return where it is unavailable; namespace
 * cases do the same where namespaces cannot be made (as test_race.c does).
 */
#ifndef RILL_TEST_HE_CASES_H
#define RILL_TEST_HE_CASES_H

#include <stdint.h>

#include "eyeballs.h"
#include "rill/rill.h"

/* The names of the cases live under this domain (never in /etc/hosts). */
#define RT_HE_DOMAIN "he.rill.test"

/* A connect with rill_connect()'s signature: rill_connect itself, or a loop over the op. */
typedef rill_status (*rt_connect_fn)(rill_ctx *ctx, const char *host, uint16_t port,
                                     const rill_connect_opts *opts, rill_stream **out,
                                     rill_error *err);

/* Number of rows of the scenario table; run row @p i with rt_he_scenario(i, fn). */
int rt_he_scenario_count(void);
void rt_he_scenario(int i, rt_connect_fn fn);

/* ::1 refused at once, IPv4 next at once although the attempt delay is 1000 ms. */
void rt_he_refusals_start_next_at_once(rt_connect_fn fn);

/* A TLS connect by name: CONNECTED, TLS_HANDSHAKE, TLS_DONE on the winner. */
void rt_he_tls_events(rt_connect_fn fn);

/* A 400 ms A answer and a peer that never speaks TLS: the 1000 ms deadline covers both. */
void rt_he_deadline_covers_dns_and_tls(rt_connect_fn fn);

/* Namespace: the attempt delay, variants 0 (default 250 ms), 1 (100 ms), 2 (1 ms: the floor). */
#define RT_HE_ATTEMPT_DELAY_VARIANTS 3
void rt_he_attempt_delay(int variant, rt_connect_fn fn);

/* Namespace: four blackholed addresses attempted 6 4 6 4, all kept running to the deadline. */
void rt_he_interleave_keep_running(rt_connect_fn fn);

/* Namespace: an AAAA answer 400 ms late joins the race while an IPv4 attempt hangs. */
void rt_he_late_answer_joins_race(rt_connect_fn fn);

/* Namespace: a 500 ms A answer naming a blackholed address; the deadline cuts at 1000 ms. */
void rt_he_deadline_covers_dns_and_tcp(rt_connect_fn fn);

/* ---- helpers the suites use for their own cases ---- */

/* Whether ::1 works here; if not, prints "SKIP <test>: ..." and returns 0. */
int rt_he_have_v6(const char *test);

/* A context whose DNS servers are @p servers (a responder's); fails the test on error. */
rill_ctx *rt_he_ctx_for(const char *servers);

/* Whether message @p msg says what the lookup of @p family did ("A"/"IPv4", "AAAA"/"IPv6"). */
int rt_he_mentions_family(const char *msg, int family);

/* The order every trace keeps, and the family fields of its events (see he_cases.c). */
void rt_he_check_trace_order(const rt_trace *t, const char *host, rt_verdict *v);
void rt_he_check_trace_fields(const rt_trace *t, rt_verdict *v);
void rt_he_check_trace_basics(const rt_trace *t, const char *host, rt_verdict *v);

#endif
