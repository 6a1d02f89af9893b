/* SPDX-License-Identifier: MIT */
/*
 * fuzz_lines: the line decorator over the memory transport, with arbitrary bytes, arbitrary
 * read boundaries, each EOL mode and limit, blocking or non-blocking (injected WANTs), and a
 * mix of rill_read_line, rill_read_lines (batches of 1..16), rill_read_line_copy, rill_skip_line,
 * rill_read and rill_shrink.
 *
 * Header: [0] bits 0-1 EOL mode (3 = LF), 0x04 non-blocking with WANTs, 0x08 filler bursts,
 * 0x10 large limits; [1..2] the limit. Control bytes choose the operations and read pieces.
 *
 * A model follows the stream: every line returned must equal the bytes at the model's position
 * and be followed by the ending the mode requires (or be the last line at end of stream); skips
 * must stop right after an ending; raw reads return the next bytes; errors consume nothing and
 * must be justified by the bytes (an overlong line really has no ending within the limit; a bare
 * CR or LF in CRLF mode is really there). At the end, lines + endings + skipped + raw bytes must
 * be exactly the bytes served, and rill_pending() must equal what the model holds (plus an LF
 * owed in ANY mode) after every call.
 */
#include <string.h>

#include "fuzz.h"

#define MAX_OPS 4096

struct model {
    rill_stream *s;
    struct fz_input *in;
    rill_eol eol;
    size_t max;
    bool nonblocking;
    size_t pos;   /* bytes of the log accounted for */
    bool swallow; /* ANY: a line ended at a CR that was the last byte served */
    bool ended;   /* a call reported RILL_EOF or the last line */
    const uint8_t *log;
    size_t served;
};

static bool is_term(const struct model *m, uint8_t c)
{
    return c == '\n' || (m->eol != RILL_EOL_LF && c == '\r');
}

/* Index of the first line-ending byte at or after @p from, or served when there is none. */
static size_t first_term(const struct model *m, size_t from)
{
    if (from >= m->served)
        return m->served;
    size_t n = m->served - from;
    const uint8_t *lf = memchr(m->log + from, '\n', n);
    size_t at = lf ? (size_t)(lf - m->log) : m->served;
    if (m->eol != RILL_EOL_LF) {
        const uint8_t *cr = memchr(m->log + from, '\r', at - from);
        if (cr)
            at = (size_t)(cr - m->log);
    }
    return at;
}

/* Bring the model up to date after a call: the new log, and an LF swallowed after a CR. */
static void settle(struct model *m)
{
    m->log = fz_mem_log(m->s, &m->served);
    if (m->swallow && m->pos < m->served) {
        if (m->log[m->pos] == '\n')
            m->pos++;
        m->swallow = false;
    }
}

/*
 * The bytes held, plus an LF still owed after a CR that ended the data (end of stream cancels
 * the debt): the layer counts it as pending so that detaching it then is refused.
 */
static void check_pending(struct model *m, const char *op)
{
    size_t held = rill_pending(m->s);
    size_t want = m->served - m->pos + (m->swallow && !m->ended ? 1 : 0);
    FZ_CHECK(held == want, "%s: rill_pending %zu, model holds %zu (LF owed: %d)", op, held, want,
             (int)(m->swallow && !m->ended));
}

/* A line of @p len bytes was returned: check it and move past it and its ending. */
static void took_line(struct model *m, const char *line, size_t len, const char *op)
{
    FZ_CHECK(len <= m->max, "%s: line of %zu bytes, limit %zu", op, len, m->max);
    FZ_CHECK(m->pos + len <= m->served, "%s: line of %zu bytes at %zu, only %zu served", op, len,
             m->pos, m->served);
    FZ_CHECK(memcmp(line, m->log + m->pos, len) == 0, "%s: line differs from the input at %zu", op,
             m->pos);
    FZ_CHECK(line[len] == '\0', "%s: line not NUL-terminated", op);
    for (size_t i = 0; i < len; i++)
        FZ_CHECK(!is_term(m, (uint8_t)line[i]), "%s: line contains ending byte 0x%02x at %zu", op,
                 (unsigned)(uint8_t)line[i], i);
    size_t e = m->pos + len;
    if (e == m->served) {
        /* No ending: the last line, which only comes at end of stream. */
        m->pos = e;
        m->ended = true;
        return;
    }
    uint8_t c = m->log[e];
    bool lf_next = e + 1 < m->served && m->log[e + 1] == '\n';
    switch (m->eol) {
    case RILL_EOL_LF:
        FZ_CHECK(c == '\n', "%s: line at %zu not followed by LF", op, m->pos);
        m->pos = e + 1;
        break;
    case RILL_EOL_CRLF:
        FZ_CHECK(c == '\r' && lf_next, "%s: line at %zu not followed by CRLF", op, m->pos);
        m->pos = e + 2;
        break;
    case RILL_EOL_ANY:
        FZ_CHECK(c == '\n' || c == '\r', "%s: line at %zu not followed by CR or LF", op, m->pos);
        m->pos = e + (c == '\r' && lf_next ? 2 : 1);
        m->swallow = c == '\r' && e + 1 == m->served;
        break;
    }
}

/* RILL_E_LINE_TOO_LONG / RILL_E_PROTOCOL: nothing consumed, and the bytes say so. */
static void took_error(struct model *m, rill_status st, const char *op)
{
    size_t i = first_term(m, m->pos);
    size_t len = i - m->pos;
    if (st == RILL_E_LINE_TOO_LONG) {
        FZ_CHECK(len > m->max, "%s: too long, but an ending comes after %zu bytes (limit %zu)", op,
                 len, m->max);
        return;
    }
    FZ_CHECK(st == RILL_E_PROTOCOL && m->eol == RILL_EOL_CRLF, "%s: status %d (%s): %s", op,
             (int)st, rill_strerror(st), rill_errmsg(m->s));
    FZ_CHECK(i < m->served && len <= m->max, "%s: protocol error without a bare ending", op);
    bool crlf = m->log[i] == '\r' && i + 1 < m->served && m->log[i + 1] == '\n';
    FZ_CHECK(!crlf, "%s: protocol error at a proper CRLF (offset %zu)", op, len);
}

static void took_skip(struct model *m, rill_status st, size_t n)
{
    FZ_CHECK(m->pos + n <= m->served, "skip: %zu bytes at %zu, only %zu served", n, m->pos,
             m->served);
    size_t end = m->pos + n;
    if (st == RILL_OK) {
        FZ_CHECK(n >= 1, "skip: RILL_OK with nothing skipped");
        uint8_t last = m->log[end - 1];
        size_t body = end - 1;
        if (m->eol == RILL_EOL_ANY && last == '\n' && n >= 2 && m->log[end - 2] == '\r')
            body = end - 2;
        FZ_CHECK(last == '\n' || (m->eol == RILL_EOL_ANY && last == '\r'),
                 "skip: stopped after 0x%02x, not a line ending", (unsigned)last);
        FZ_CHECK(first_term(m, m->pos) >= body || m->eol == RILL_EOL_CRLF,
                 "skip: went past a line ending at %zu", first_term(m, m->pos));
        if (m->eol == RILL_EOL_CRLF)
            FZ_CHECK(memchr(m->log + m->pos, '\n', n - 1) == NULL, "skip: went past an LF");
        if (m->eol == RILL_EOL_ANY && last == '\r') {
            FZ_CHECK(end == m->served || m->log[end] != '\n', "skip: left the LF of a CRLF");
            m->swallow = end == m->served;
        }
    } else if (st == RILL_EOF) {
        FZ_CHECK(end == m->served, "skip: RILL_EOF with %zu bytes left", m->served - end);
        m->ended = true;
    } else {
        FZ_CHECK(m->nonblocking && (st == RILL_WANT_READ || st == RILL_WANT_WRITE),
                 "skip: status %d (%s): %s", (int)st, rill_strerror(st), rill_errmsg(m->s));
        bool dropped = m->eol == RILL_EOL_CRLF ? n > 0 && memchr(m->log + m->pos, '\n', n)
                                               : first_term(m, m->pos) < end;
        FZ_CHECK(!dropped, "skip: dropped an ending before a WANT");
    }
    m->pos = end;
}

/* Statuses every call may return without consuming anything. */
static bool is_wait(const struct model *m, rill_status st)
{
    return m->nonblocking && (st == RILL_WANT_READ || st == RILL_WANT_WRITE);
}

static void check_other(struct model *m, rill_status st, const char *op)
{
    if (st == RILL_EOF) {
        FZ_CHECK(m->pos == m->served, "%s: RILL_EOF with %zu bytes held", op, m->served - m->pos);
        m->ended = true;
        return;
    }
    if (is_wait(m, st))
        return;
    took_error(m, st, op);
}

/* One operation chosen by control byte @p c; returns its status. */
static rill_status step(struct model *m, uint8_t c)
{
    rill_status st;
    switch (c % 8) {
    case 7: {
        /* A batch: every line must be the next one of the input, in order. */
        rill_line lines[16];
        size_t max = 1 + fz_ctl(m->in) % 16u, count = 99;
        st = rill_read_lines(m->s, lines, max, &count);
        settle(m);
        if (st == RILL_OK) {
            FZ_CHECK(count >= 1 && count <= max, "rill_read_lines: %zu lines for %zu", count, max);
            for (size_t i = 0; i < count; i++) {
                FZ_CHECK(!m->ended, "rill_read_lines: a line after the last line");
                took_line(m, lines[i].data, lines[i].len, "rill_read_lines");
            }
        } else {
            FZ_CHECK(count == 0, "rill_read_lines: count %zu with status %d", count, (int)st);
            check_other(m, st, "rill_read_lines");
        }
        break;
    }
    case 0: {
        const char *line = NULL;
        size_t len = 0;
        st = rill_read_line(m->s, &line, &len);
        settle(m);
        if (st == RILL_OK)
            took_line(m, line, len, "rill_read_line");
        else
            check_other(m, st, "rill_read_line");
        break;
    }
    case 1:
    case 5: {
        /* Case 1: a buffer that may be too small; case 5: one that always fits. */
        size_t cap = c % 8 == 1 ? 1 + fz_ctl16(m->in) % (m->max + 3) : m->max + 1;
        char *buf = malloc(cap);
        FZ_CHECK(buf != NULL, "out of memory");
        size_t len = 0;
        st = rill_read_line_copy(m->s, buf, cap, &len);
        settle(m);
        if (st == RILL_OK) {
            FZ_CHECK(len < cap, "copy: line of %zu bytes in a %zu-byte buffer", len, cap);
            took_line(m, buf, len, "rill_read_line_copy");
        } else if (st == RILL_E_INVALID) {
            FZ_CHECK(len >= cap && len <= m->max, "copy: INVALID with len %zu, cap %zu", len, cap);
            FZ_CHECK(m->pos + len <= m->served, "copy: INVALID for a line not yet served");
        } else {
            check_other(m, st, "rill_read_line_copy");
        }
        free(buf);
        break;
    }
    case 2: {
        size_t n = 0;
        st = rill_skip_line(m->s, &n);
        settle(m);
        took_skip(m, st, n);
        break;
    }
    case 3: {
        uint8_t buf[1024];
        size_t want = 1 + fz_ctl(m->in) * 4u;
        size_t n = 0;
        st = rill_read(m->s, buf, want, &n);
        settle(m);
        if (st == RILL_OK) {
            FZ_CHECK(n >= 1 && n <= want, "rill_read: %zu bytes for %zu", n, want);
            FZ_CHECK(m->pos + n <= m->served && memcmp(buf, m->log + m->pos, n) == 0,
                     "rill_read: bytes differ from the input at %zu", m->pos);
            m->pos += n;
        } else if (st == RILL_EOF) {
            check_other(m, st, "rill_read");
        } else {
            FZ_CHECK(is_wait(m, st), "rill_read: status %d (%s): %s", (int)st, rill_strerror(st),
                     rill_errmsg(m->s));
        }
        break;
    }
    case 4:
        (void)rill_shrink(m->s);
        settle(m);
        st = RILL_OK;
        break;
    default: {
        char text[128];
        size_t n = rill_describe(m->s, text, 1 + c % sizeof text);
        FZ_CHECK(n > 0 && strlen(text) <= c % sizeof text, "rill_describe overran");
        st = RILL_OK;
        break;
    }
    }
    check_pending(m, "after a call");
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in;
    fz_split(&in, data, size, 3);
    struct model m;
    memset(&m, 0, sizeof m);
    m.in = &in;
    uint8_t h = in.hdr[0];
    m.eol = (h & 3) == 3 ? RILL_EOL_LF : (rill_eol)(h & 3);
    m.nonblocking = (h & 0x04) != 0;
    size_t v = (size_t)in.hdr[1] << 8 | in.hdr[2];
    m.max = (h & 0x10) ? 1 + v * 2 : 1 + v % 2048;

    struct fz_mem_opts mo = { m.nonblocking, (h & 0x08) != 0, 100000 };
    rill_stream *t = NULL;
    FZ_CHECK(fz_mem_new(&in, &mo, &t) == RILL_OK, "fz_mem_new");
    FZ_CHECK(rill_lines_new(t, m.max, m.eol, 0, &m.s) == RILL_OK, "rill_lines_new: %s",
             rill_errmsg(t));
    if (m.nonblocking)
        FZ_CHECK(rill_set_timeouts(m.s, 0, 0) == RILL_OK, "rill_set_timeouts");
    settle(&m);

    for (int i = 0; i < MAX_OPS && !m.ended; i++) {
        bool had_ctl = in.ictl < in.nctl;
        rill_status st = step(&m, fz_ctl(&in));
        /* With the controls used up the same call would fail the same way forever. */
        if (!had_ctl && st < 0)
            break;
    }
    /* Drain what is left line by line; every call must make progress or end. */
    size_t bound = 2 * (size + 64);
    for (size_t i = 0; !m.ended; i++) {
        FZ_CHECK(i < bound, "rill_skip_line makes no progress (pos %zu of %zu)", m.pos, m.served);
        size_t n = 0;
        rill_status st = rill_skip_line(m.s, &n);
        settle(&m);
        took_skip(&m, st, n);
        check_pending(&m, "drain");
    }
    FZ_CHECK(m.pos == m.served, "ended with %zu bytes unaccounted for", m.served - m.pos);
    /* After the end (or the last line), the stream stays at its end. */
    rill_status st;
    for (size_t i = 0;; i++) {
        FZ_CHECK(i < bound, "no RILL_EOF after the end");
        const char *line = NULL;
        size_t len = 0;
        st = rill_read_line(m.s, &line, &len);
        if (!is_wait(&m, st))
            break;
    }
    settle(&m);
    FZ_CHECK(st == RILL_EOF, "after the end: status %d (%s), %zu more bytes served", (int)st,
             rill_strerror(st), m.served - m.pos);
    st = rill_close(m.s);
    FZ_CHECK(st == RILL_OK, "rill_close: %d (%s)", (int)st, rill_strerror(st));
    return 0;
}
