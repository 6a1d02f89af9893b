/* SPDX-License-Identifier: MIT */
/* Big-endian integer helpers over any stream (network byte order framing). */
#include <string.h>

#include "internal.h"

/*
 * Read a @p width-byte big-endian value; @p value is checked by the callers. Over a buffered top
 * layer the value is taken whole or not at all (peek, then consume), so a WANT or a timeout
 * loses nothing. Elsewhere bytes read before such a stop cannot be given back: that is reported
 * as RILL_E_PROTOCOL, because a retry would read the rest of the value as a new one.
 */
static rill_status read_be(rill_stream *s, size_t width, uint64_t *value)
{
    unsigned char b[8];
    size_t got = 0;
    rill_status st;
    if (rilli_buffered_read_size(s) >= width) {
        const void *data = NULL;
        size_t avail = 0;
        st = rill_peek(s, width, &data, &avail);
        if (st == RILL_EOF && avail == 0)
            return RILL_EOF;
        if (st == RILL_OK || st == RILL_EOF)
            st = rill_read_full(s, b, avail < width ? avail : width, &got);
        if (st == RILL_OK && got < width)
            st = RILL_EOF;
    } else {
        st = rill_read_full(s, b, width, &got);
    }
    if (st == RILL_EOF && got > 0) {
        return rilli_api_error(s, RILL_E_PROTOCOL,
                               "rill_read_u%zube: stream ended after %zu of %zu bytes", width * 8,
                               got, width);
    }
    bool stopped = st == RILL_WANT_READ || st == RILL_WANT_WRITE || st == RILL_E_TIMEOUT;
    if (stopped && got > 0) {
        return rilli_api_error(s, RILL_E_PROTOCOL,
                               "rill_read_u%zube: %s after %zu of %zu bytes; they cannot be "
                               "given back (stack a buffered layer for whole-value reads)",
                               width * 8, st == RILL_E_TIMEOUT ? "timed out" : "would block", got,
                               width);
    }
    if (st != RILL_OK)
        return st;
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | b[i];
    *value = v;
    return RILL_OK;
}

static rill_status check_out(rill_stream *s, const void *value, size_t width)
{
    if (!s)
        return RILL_E_INVALID;
    if (!value) {
        return rilli_api_error(s, RILL_E_INVALID, "rill_read_u%zube: value is NULL", width * 8);
    }
    return RILL_OK;
}

RILL_API rill_status rill_read_u16be(rill_stream *s, uint16_t *value)
{
    uint64_t v = 0;
    rill_status st = check_out(s, value, 2);
    if (st == RILL_OK)
        st = read_be(s, 2, &v);
    if (st == RILL_OK)
        *value = (uint16_t)v;
    return st;
}

RILL_API rill_status rill_read_u32be(rill_stream *s, uint32_t *value)
{
    uint64_t v = 0;
    rill_status st = check_out(s, value, 4);
    if (st == RILL_OK)
        st = read_be(s, 4, &v);
    if (st == RILL_OK)
        *value = (uint32_t)v;
    return st;
}

RILL_API rill_status rill_read_u64be(rill_stream *s, uint64_t *value)
{
    rill_status st = check_out(s, value, 8);
    return st == RILL_OK ? read_be(s, 8, value) : st;
}

/*
 * Write a @p width-byte big-endian value. A wait or timeout that stops it part-way cannot be
 * retried without sending the first bytes twice: that is RILL_E_PROTOCOL with the count.
 */
static rill_status write_be(rill_stream *s, uint64_t v, size_t width)
{
    unsigned char b[8];
    for (size_t i = 0; i < width; i++)
        b[i] = (unsigned char)(v >> (8 * (width - 1 - i)));
    size_t done = 0;
    rill_status st = rill_write_all(s, b, width, &done);
    bool stopped = st == RILL_WANT_READ || st == RILL_WANT_WRITE || st == RILL_E_TIMEOUT;
    if (stopped && done > 0) {
        return rilli_api_error(s, RILL_E_PROTOCOL,
                               "rill_write_u%zube: %s after %zu of %zu bytes; the rest was not "
                               "sent",
                               width * 8, st == RILL_E_TIMEOUT ? "timed out" : "would block", done,
                               width);
    }
    return st;
}

RILL_API rill_status rill_write_u16be(rill_stream *s, uint16_t value)
{
    return write_be(s, value, 2);
}

RILL_API rill_status rill_write_u32be(rill_stream *s, uint32_t value)
{
    return write_be(s, value, 4);
}

RILL_API rill_status rill_write_u64be(rill_stream *s, uint64_t value)
{
    return write_be(s, value, 8);
}
