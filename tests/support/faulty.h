/* SPDX-License-Identifier: MIT */
/*
 * A fault-injecting layer for tests, written only against <rill/stream.h>: stacked on a real
 * transport, it delivers reads in pieces of 1 byte or of random sizes, accepts short writes,
 * answers WANT now and then although the descriptor may be ready (what EAGAIN and EINTR look
 * like at the layer level: transports retry EINTR themselves), resets the stream after a chosen
 * number of bytes, and stalls (answers WANT for a while). Every decorator and the TLS layer run
 * over it and must still deliver exactly the bytes sent, or a clear error.
 */
#ifndef RILL_TEST_FAULTY_H
#define RILL_TEST_FAULTY_H

#include <stdint.h>

#include "rill/stream.h"

typedef struct rt_faults {
    uint64_t seed;          /* pseudo-random choices; the same seed gives the same faults */
    size_t max_read;        /* 0: pass reads through whole; 1: one byte at a time; n: 1..n */
    size_t max_write;       /* 0: whole; n: short writes of 1..n bytes */
    unsigned want_pct;      /* percent of calls answered with a WANT before touching the inner */
    uint64_t reset_read_at; /* after this many bytes read, reads fail RILL_E_RESET; 0: never */
    unsigned stall_ms;      /* when > 0, the first read answers WANT for this long */
} rt_faults;

/* Wrap @p inner (owned by the new layer on RILL_OK). */
rill_status rt_faulty_new(rill_stream *inner, const rt_faults *f, rill_stream **out);

/* Counters of a faulty layer: calls answered with an injected WANT, bytes passed each way. */
void rt_faulty_stats(rill_stream *s, uint64_t *wants, uint64_t *read_bytes, uint64_t *written);

#endif
