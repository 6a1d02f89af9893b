/* SPDX-License-Identifier: MIT */
/* Input splitting and the memory transport of the fuzz targets (see fuzz.h). */
#include <string.h>

#include "fuzz.h"

void fz_split(struct fz_input *in, const uint8_t *buf, size_t size, size_t hdr_len)
{
    memset(in, 0, sizeof *in);
    if (hdr_len > sizeof in->hdr_copy)
        hdr_len = sizeof in->hdr_copy;
    size_t h = size < hdr_len ? size : hdr_len;
    memcpy(in->hdr_copy, buf, h);
    in->hdr = in->hdr_copy;
    buf += h;
    size -= h;
    size_t n = 0;
    if (size >= 2) {
        n = (size_t)buf[0] << 8 | buf[1];
        buf += 2;
        size -= 2;
    } else {
        buf += size;
        size = 0;
    }
    if (n > size)
        n = size;
    in->ctl = buf;
    in->nctl = n;
    in->data = buf + n;
    in->ndata = size - n;
}

uint8_t fz_ctl(struct fz_input *in)
{
    return in->ictl < in->nctl ? in->ctl[in->ictl++] : 0;
}

size_t fz_ctl16(struct fz_input *in)
{
    size_t hi = fz_ctl(in);
    return hi << 8 | fz_ctl(in);
}

size_t fz_piece(uint8_t c, size_t len)
{
    size_t n;
    if (c == 0)
        n = len;
    else if (c < 0x80)
        n = 1 + (size_t)(c % 16); /* small pieces: 1 .. 16 bytes */
    else
        n = 1 + (size_t)(c - 0x80) * 97; /* larger ones, up to about 10 KiB */
    return n < len ? n : len;
}

struct fz_mem {
    struct fz_input *in;
    struct fz_mem_opts opts;
    size_t pos;        /* next data byte */
    size_t burst_left; /* filler bytes still to serve in the current run */
    size_t burst_total;
    uint8_t *log;
    size_t log_len;
    size_t log_cap;
    size_t written;
    bool eof; /* RILL_EOF was returned: it stays so (no filler after the end) */
};

static const struct rill_stream_ops fz_mem_ops;

static bool log_append(struct fz_mem *m, const void *p, size_t n)
{
    if (m->log_len + n > m->log_cap) {
        size_t cap = m->log_cap ? m->log_cap : 256;
        while (cap < m->log_len + n)
            cap *= 2;
        uint8_t *grown = realloc(m->log, cap);
        if (!grown)
            return false;
        m->log = grown;
        m->log_cap = cap;
    }
    memcpy(m->log + m->log_len, p, n);
    m->log_len += n;
    return true;
}

static rill_status mem_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct fz_mem *m = rill_stream_state(s);
    *n = 0;
    if (m->eof)
        return RILL_EOF;
    uint8_t c = fz_ctl(m->in);
    if (m->opts.wants && c >= 0xf0 && c < 0xff)
        return RILL_WANT_READ;
    if (m->opts.bursts && c == 0xff && m->burst_left == 0 &&
        m->burst_total < m->opts.burst_max) {
        size_t want = 1 + fz_ctl16(m->in) % 40000;
        size_t room = m->opts.burst_max - m->burst_total;
        m->burst_left = want < room ? want : room;
        m->burst_total += m->burst_left;
        c = 0;
    }
    size_t k;
    if (m->burst_left > 0) {
        k = fz_piece(c, len);
        if (k > m->burst_left)
            k = m->burst_left;
        memset(buf, 'x', k);
        m->burst_left -= k;
    } else {
        if (m->pos == m->in->ndata) {
            m->eof = true;
            return RILL_EOF;
        }
        k = fz_piece(c, len);
        if (k > m->in->ndata - m->pos)
            k = m->in->ndata - m->pos;
        memcpy(buf, m->in->data + m->pos, k);
        m->pos += k;
    }
    if (!log_append(m, buf, k))
        return rill_stream_error(s, RILL_E_NOMEM, "out of memory for the read log");
    *n = k;
    return RILL_OK;
}

static rill_status mem_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct fz_mem *m = rill_stream_state(s);
    (void)buf;
    *n = 0;
    uint8_t c = fz_ctl(m->in);
    if (m->opts.wants && c >= 0xf0 && c < 0xff)
        return RILL_WANT_WRITE;
    *n = fz_piece(c, len);
    m->written += *n;
    return RILL_OK;
}

static void mem_close(rill_stream *s)
{
    struct fz_mem *m = rill_stream_state(s);
    free(m->log);
    m->log = NULL;
}

static const struct rill_stream_ops fz_mem_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "fzmem",
    .read = mem_read,
    .write = mem_write,
    .close = mem_close,
};

rill_status fz_mem_new(struct fz_input *in, const struct fz_mem_opts *opts, rill_stream **out)
{
    rill_status st = rill_stream_new(&fz_mem_ops, sizeof(struct fz_mem), NULL, 0, out);
    if (st != RILL_OK)
        return st;
    struct fz_mem *m = rill_stream_state(*out);
    m->in = in;
    if (opts)
        m->opts = *opts;
    return RILL_OK;
}

static struct fz_mem *mem_of(rill_stream *s)
{
    rill_stream *t = rill_find(s, "fzmem");
    return t ? rill_stream_state(t) : NULL;
}

const uint8_t *fz_mem_log(rill_stream *s, size_t *len)
{
    struct fz_mem *m = mem_of(s);
    *len = m ? m->log_len : 0;
    return m ? m->log : NULL;
}

size_t fz_mem_written(rill_stream *s)
{
    struct fz_mem *m = mem_of(s);
    return m ? m->written : 0;
}
