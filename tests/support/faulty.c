/* SPDX-License-Identifier: MIT */
/* The fault-injecting test layer (see faulty.h). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "faulty.h"
#include "support.h"

struct faulty {
    rt_faults f;
    uint64_t rng;
    uint64_t wants;
    uint64_t read_bytes;
    uint64_t written;
    int64_t stall_until_us; /* 0: not started; -1: over */
};

static const struct rill_stream_ops faulty_ops;

static uint64_t next_rand(struct faulty *st)
{
    uint64_t x = st->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return st->rng = x;
}

static size_t piece(struct faulty *st, size_t max, size_t len)
{
    if (max == 0 || len <= 1)
        return len;
    size_t n = max == 1 ? 1 : 1 + (size_t)(next_rand(st) % max);
    return n < len ? n : len;
}

static bool inject_want(struct faulty *st)
{
    if (st->f.want_pct == 0 || next_rand(st) % 100 >= st->f.want_pct)
        return false;
    st->wants++;
    return true;
}

static rill_status faulty_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct faulty *st = rill_stream_state(s);
    *n = 0;
    if (st->f.stall_ms && st->stall_until_us >= 0) {
        if (st->stall_until_us == 0)
            st->stall_until_us = rt_now_us() + (int64_t)st->f.stall_ms * 1000;
        if (rt_now_us() < st->stall_until_us)
            return RILL_WANT_READ;
        st->stall_until_us = -1;
    }
    if (st->f.reset_read_at && st->read_bytes >= st->f.reset_read_at)
        return rill_stream_error(s, RILL_E_RESET, "connection reset (injected after %llu bytes)",
                                 (unsigned long long)st->read_bytes);
    if (inject_want(st))
        return RILL_WANT_READ;
    size_t want = piece(st, st->f.max_read, len);
    if (st->f.reset_read_at && want > st->f.reset_read_at - st->read_bytes)
        want = (size_t)(st->f.reset_read_at - st->read_bytes);
    rill_status r = rill_stream_read_inner(s, buf, want, n);
    st->read_bytes += *n;
    return r;
}

static rill_status faulty_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct faulty *st = rill_stream_state(s);
    *n = 0;
    if (inject_want(st))
        return RILL_WANT_WRITE;
    rill_status r = rill_stream_write_inner(s, buf, piece(st, st->f.max_write, len), n);
    st->written += *n;
    return r;
}

static size_t faulty_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct faulty *st = rill_stream_state(s);
    int n = snprintf(buf, len, "faulty(read<=%zu write<=%zu want=%u%%)", st->f.max_read,
                     st->f.max_write, st->f.want_pct);
    return n < 0 ? 0 : (size_t)n;
}

static const struct rill_stream_ops faulty_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "faulty",
    .read = faulty_read,
    .write = faulty_write,
    .describe = faulty_describe,
};

rill_status rt_faulty_new(rill_stream *inner, const rt_faults *f, rill_stream **out)
{
    rill_status st = rill_stream_new(&faulty_ops, sizeof(struct faulty), inner, 0, out);
    if (st != RILL_OK)
        return st;
    struct faulty *fs = rill_stream_state(*out);
    fs->f = *f;
    fs->rng = f->seed ? f->seed : 0x2545f4914f6cdd1dull;
    return RILL_OK;
}

void rt_faulty_stats(rill_stream *s, uint64_t *wants, uint64_t *read_bytes, uint64_t *written)
{
    rill_stream *l = rill_find(s, "faulty");
    const struct faulty *st = l ? rill_stream_state(l) : NULL;
    if (wants)
        *wants = st ? st->wants : 0;
    if (read_bytes)
        *read_bytes = st ? st->read_bytes : 0;
    if (written)
        *written = st ? st->written : 0;
}
