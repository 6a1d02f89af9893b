/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the Happy Eyeballs suites (blocking rill_connect and the non-blocking connect op):
 *
 *  - rt_trace: a copy of every connect trace event, with lookups and a one-line rendering;
 *  - rt_famsrv: rill listeners on 127.0.0.1 and/or ::1 (one port) served by a thread that tells
 *    each client which family it reached, or answers a checksum of what the client sent;
 *  - rt_netns_blackhole: a private network namespace where some addresses swallow SYNs;
 *  - rt_verdict: non-asserting checks that collect every failure, usable in a child process
 *    (rt_run_child) where Check's assertions must not run.
 *
 * Nothing here fails the test by itself: errors come back with a reason. Loopback only, and
 * inside a namespace of its own, the blackholed addresses listed below.
 */
#ifndef RILL_TEST_EYEBALLS_H
#define RILL_TEST_EYEBALLS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rill/rill.h"

/* ---- the event trace ---- */

#define RT_TRACE_MAX 128

typedef struct rt_event {
    rill_connect_event_type type;
    char host[128];
    char addr[64];
    size_t count;
    rill_status status;
    char message[200];
    int64_t elapsed_ms;
    int family;
} rt_event;

typedef struct rt_trace {
    int n;
    int overflow;
    rt_event ev[RT_TRACE_MAX];
} rt_trace;

/* Empty @p t and make @p o report its events into it. */
void rt_trace_attach(rt_trace *t, rill_connect_opts *o);

/* The on_event callback itself (arg: an rt_trace). */
void rt_trace_on_event(void *arg, const rill_connect_event *ev);

/* "ANSWER", "ATTEMPT", ...; "?" for anything else. */
const char *rt_event_name(rill_connect_event_type type);

/* The trace as one line, e.g. "ANSWER(v4 n=1 @2ms) ATTEMPT(127.0.0.1:80 v4 @52ms) ...". */
const char *rt_trace_text(const rt_trace *t, char *buf, size_t len);

/* Index of the first event of @p type (and @p family, 0: any) at or after @p from; -1: none. */
int rt_trace_find(const rt_trace *t, rill_connect_event_type type, int family, int from);

/* Number of events of @p type (and @p family, 0: any). */
int rt_trace_count(const rt_trace *t, rill_connect_event_type type, int family);

/* 4 or 6 from an address as events spell it ("127.0.0.1:80", "[::1]:80"); 0 if neither. */
int rt_addr_family(const char *addr);

/* ---- checks that collect every failure ---- */

typedef struct rt_verdict {
    int failed; /* how many checks failed */
    char why[1536];
} rt_verdict;

/* Record a failed check in @p v (appended to the earlier ones, "; " between). */
void rt_verdict_add(rt_verdict *v, const char *fmt, ...) RILL_PRINTF(2, 3);

/* Check @p cond; when false, record the message. Evaluates to 1 when the check failed. */
#define RT_EXPECT(v, cond, ...) ((cond) ? 0 : (rt_verdict_add((v), __VA_ARGS__), 1))

/* ---- the family server ---- */

#define RT_FAM4 1
#define RT_FAM6 2

typedef enum rt_famsrv_mode {
    /* Send one byte, '4' or '6' (the family of the listener that accepted), then close. */
    RT_FAMSRV_TELL,
    /* Read a big-endian u32 length and that many bytes, answer their rt_checksum as a big-endian
     * u64, then close. */
    RT_FAMSRV_CHECKSUM
} rt_famsrv_mode;

typedef struct rt_famsrv rt_famsrv;

/*
 * Listen on one port at 127.0.0.1 (RT_FAM4 in @p families) and/or ::1 (RT_FAM6). Where ::1 is
 * available the port is taken on both and the unwanted listener closed again, so that family
 * refuses on the port. @p tls (may be NULL): accepted streams are TLS servers with it.
 * NULL with the reason in @p why on failure.
 */
rt_famsrv *rt_famsrv_try_start(int families, rt_famsrv_mode mode, rill_tls_config *tls, char *why,
                               size_t len);

uint16_t rt_famsrv_port(const rt_famsrv *s);

/* Connections accepted so far on the listener of @p family (4 or 6), whatever came of them. */
int rt_famsrv_accepted(rt_famsrv *s, int family);

/* Connections served completely (byte sent, or checksum answered). */
int rt_famsrv_served(rt_famsrv *s);

/* Stop the thread, close the listeners. NULL is accepted. */
void rt_famsrv_stop(rt_famsrv *s);

/* Read the byte of an RT_FAMSRV_TELL server from @p s: 4, 6, or -1 with the reason in @p why. */
int rt_famsrv_read_family(rill_stream *s, char *why, size_t len);

/* ---- a namespace with blackholed addresses ---- */

/* Addresses that exist only in the namespace: a SYN to them is never answered. */
#define RT_BLACKHOLE4_A "198.18.0.2"
#define RT_BLACKHOLE4_B "198.18.0.3"
#define RT_BLACKHOLE6_A "fd00::2"
#define RT_BLACKHOLE6_B "fd00::3"

/*
 * Move the calling thread (call it in a child process of rt_run_child) into a new network
 * namespace with lo up (127.0.0.1 and ::1) and a veth pair whose peers answer nothing for the
 * RT_BLACKHOLE* addresses. 0, or -1 with the reason (no privilege, no `ip`, no IPv6).
 */
int rt_netns_blackhole(char *why, size_t len);

#endif
