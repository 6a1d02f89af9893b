/* SPDX-License-Identifier: MIT */
/*
 * The lines decorator: bounded line reading over any stream.
 *
 * One linear buffer, filled by reading from the inner stream straight into its free tail (a
 * read that large bypasses a buffered layer's copy). Lines are found with memchr() from where
 * the previous search stopped, so no byte is scanned twice, and handed out in place with the
 * terminator overwritten by a NUL. The partial line at the end is moved to the front only when
 * the free tail gets too small for an efficient read.
 *
 * The buffer is not held while idle: when a line handed out leaves nothing buffered and the fill
 * that brought it did not fill the free tail (the inner stream had no more), the line is moved
 * to the front and the block shrunk around it (it must stay valid until the next call), and the
 * next fill grows it back. A stream of lines keeps its buffer; a connection that waits for the
 * next request holds only its last line.
 *
 * Invariant: buf[start .. scan) holds no line ending (and, in CRLF mode, no CR at all), so a
 * search resumes at scan. Errors consume nothing: the same bytes stay readable with rill_read()
 * or can be dropped with rill_skip_line().
 *
 * In ANY mode a CR that is the last byte received ends its line at once (waiting for a possible
 * LF would hang a peer that ends lines with CR alone), and the layer then owes that LF: the next
 * byte is dropped if it is one. The owed LF has not been read from the inner stream, so removing
 * the layer then (rill_close of a borrowing layer before a STARTTLS upgrade) would hand it to the
 * next reader, the TLS handshake. lines_pending() therefore counts it as one pending byte, which
 * makes the generic checks refuse: rill_close() of a borrowing chain and rill_tls_client() report
 * RILL_E_PENDING_DATA. Reading on (a line, or raw bytes) settles it when the next byte arrives;
 * end of stream cancels it.
 */
#include <string.h>

#include "internal.h"

#if defined(__GNUC__)
#define LINES_NOINLINE __attribute__((noinline))
#else
#define LINES_NOINLINE
#endif

/* Upper bound of max_line given to rill_lines_new(). */
#define LINES_MAX_LIMIT ((size_t)64 << 20)

/*
 * Smallest buffer. Matches the 64 KiB a hand-written read(2) loop would use, so a stream of
 * short lines costs as few system calls, and half of it (the least a read asks for) still
 * exceeds half of a default-sized buffered layer, so that layer is bypassed.
 */
#define LINES_MIN_BUFFER ((size_t)64 << 10)

struct lines {
    size_t max_line;
    rill_eol eol;
    char *buf; /* cap + 1 bytes: the extra one holds the NUL after a last line at EOF */
    size_t cap;
    bool small;      /* buf was shrunk to the last line handed out (idle) */
    bool fill_short; /* the last fill did not fill the free tail: the inner stream had no more */
    size_t start;    /* first unconsumed byte */
    size_t end;      /* end of the buffered bytes */
    size_t scan;     /* where the next search resumes; see the invariant above */
    size_t skipped;  /* bytes dropped so far by the current rill_skip_line() */
    bool swallow_lf; /* ANY: the last line ended at a CR that was the last byte buffered, so
                        an LF, if it comes next, belongs to that line (the owed LF) */
    /*
     * LF mode: the buffered bytes after the line rill_read_line() last handed out, published
     * to the inline rill_read_line() in rill.h, which finds and hands out the lines in them
     * itself (the memchr() loop of a hand-written splitter) and calls the library only when it
     * finds no whole line. While the window is open (win.pos set) the inline path moves win.pos
     * instead of start: every other entry to this layer first settles it (start = win.pos,
     * window closed), and what only looks reads cur_start(). The window leaves out the last
     * byte when the fill that brought it was short, so the line that empties the buffer at the
     * end of a burst comes from the library, which releases the buffer (release_idle).
     */
    rill_line_window_ win;
    /*
     * The lines after the first of the last rill_read_lines() batch (batch_tail bytes, ending
     * at batch_end): handed out at once, so the caller may still hold them unread; they count
     * as read only once the stream has moved past batch_end (rilli_lines_batch_unread).
     * Whatever starts the offsets over (a reset or a move of the buffer) drops the batch:
     * start could come back to batch_end later with the batch long read.
     */
    size_t batch_tail;
    size_t batch_end;
};

/* Bytes of the buffer's block: the buffer and the NUL byte after a last line at EOF. */
static inline size_t block_size(size_t cap)
{
    return cap + 1;
}

/* Take over where the inline rill_read_line() got to, and close the window. */
static inline void settle(struct lines *st)
{
    if (st->win.pos) {
        st->start = st->scan = (size_t)(st->win.pos - st->buf);
        st->win.pos = NULL;
    }
}

/* The first unconsumed byte, window or not, for what only looks. */
static inline size_t cur_start(const struct lines *st)
{
    return st->win.pos ? (size_t)(st->win.pos - st->buf) : st->start;
}

enum scan_result { SCAN_FOUND, SCAN_NEED, SCAN_TOO_LONG, SCAN_BARE_CR, SCAN_BARE_LF };

/* A line found at start: its length (or, for errors, the offset of the offender). */
struct line_at {
    size_t len;
    size_t term; /* bytes of the ending: 0 (last line at EOF), 1 or 2 */
    bool swallow;
};

/* Where a found line goes: a pointer into the buffer, or a copy into the caller's buffer. */
struct line_req {
    const char **line;
    char *copy;
    size_t copy_cap;
    size_t *len;
};

static const struct rill_stream_ops lines_ops;

static const char *eol_name(rill_eol eol)
{
    switch (eol) {
    case RILL_EOL_LF: return "lf";
    case RILL_EOL_CRLF: return "crlf";
    case RILL_EOL_ANY: return "any";
    }
    return "?";
}

/*
 * First CR or LF in p[0 .. n). Two memchr() calls over the whole range would cost quadratic
 * time when only one of the two bytes occurs (each call would run to the end of the buffer),
 * so the search goes through growing windows: the waste is bounded by the window size.
 */
static const char *find_cr_or_lf(const char *p, size_t n)
{
    size_t window = 128;
    while (n > 0) {
        size_t w = n < window ? n : window;
        const char *lf = memchr(p, '\n', w);
        const char *cr = memchr(p, '\r', lf ? (size_t)(lf - p) : w);
        if (cr)
            return cr;
        if (lf)
            return lf;
        p += w;
        n -= w;
        if (window < LINES_MIN_BUFFER)
            window *= 2;
    }
    return NULL;
}

/*
 * Look for the line at start in what is buffered (st->end > st->start). Searches at most
 * max_line bytes of content plus the ending, so the outcome does not depend on how the
 * input was split into reads.
 */
static inline enum scan_result scan_line(struct lines *st, struct line_at *f)
{
    char *base = st->buf;
    const char *first = base + st->start;
    size_t lim = st->start + st->max_line + 1;
    f->term = 1;
    f->swallow = false;
    if (st->eol == RILL_EOL_LF) {
        if (lim > st->end)
            lim = st->end;
        const char *lf = memchr(base + st->scan, '\n', lim - st->scan);
        if (lf) {
            f->len = (size_t)(lf - first);
            return SCAN_FOUND;
        }
    } else if (st->eol == RILL_EOL_ANY) {
        if (lim > st->end)
            lim = st->end;
        const char *p = find_cr_or_lf(base + st->scan, lim - st->scan);
        if (p) {
            f->len = (size_t)(p - first);
            if (*p == '\r') {
                /* A CR at the end of what arrived ends the line now: waiting for a possible
                 * LF could block an interactive peer that sends CR alone. */
                if (p + 1 == base + st->end)
                    f->swallow = true;
                else if (p[1] == '\n')
                    f->term = 2;
            }
            return SCAN_FOUND;
        }
    } else {
        lim++; /* room for the LF after a CR at max_line */
        if (lim > st->end)
            lim = st->end;
        const char *from = base + st->scan;
        const char *lf = memchr(from, '\n', lim - st->scan);
        const char *cr = memchr(from, '\r', (size_t)((lf ? lf : base + lim) - from));
        if (cr) {
            f->len = (size_t)(cr - first);
            if (f->len > st->max_line)
                return SCAN_TOO_LONG;
            if (cr + 1 == lf) {
                f->term = 2;
                return SCAN_FOUND;
            }
            if (cr + 1 < base + st->end)
                return SCAN_BARE_CR;
            st->scan = (size_t)(cr - base); /* the next byte decides */
            return SCAN_NEED;
        }
        if (lf) {
            f->len = (size_t)(lf - first);
            return f->len > st->max_line ? SCAN_TOO_LONG : SCAN_BARE_LF;
        }
    }
    st->scan = lim;
    return lim - st->start > st->max_line ? SCAN_TOO_LONG : SCAN_NEED;
}

static rill_status scan_error(rill_stream *s, const struct lines *st, enum scan_result r,
                              const struct line_at *f)
{
    if (r == SCAN_TOO_LONG) {
        return rill_stream_error(s, RILL_E_LINE_TOO_LONG, "line longer than %zu bytes",
                                 st->max_line);
    }
    return rill_stream_error(s, RILL_E_PROTOCOL,
                             "bare %s at offset %zu of line (CRLF line endings required)",
                             r == SCAN_BARE_CR ? "CR" : "LF", f->len);
}

/* Longest last line the buffer is shrunk around when idle; a longer one keeps the buffer. */
#define LINES_IDLE_KEEP 4096

/*
 * The line just handed out (@p *line, @p len bytes and its NUL) emptied the buffer at the end
 * of a burst: move it to the front and shrink the block around it, so an idle stream holds the
 * line, not the buffer. The line is the caller's until the next call, hence the move; NULL
 * @p line (a copied line, a raw read) frees the block outright.
 */
static LINES_NOINLINE void release_idle(struct lines *st, const char **line, size_t len)
{
    settle(st);
    if (!line) {
        rilli_free(st->buf);
        st->buf = NULL;
        st->small = false;
    } else {
        if (len >= LINES_IDLE_KEEP)
            return;
        memmove(st->buf, *line, len + 1);
        char *small = rilli_realloc(st->buf, len + 1);
        if (small)
            st->buf = small; /* else the block keeps its size, the line is at its front */
        *line = st->buf;
        st->small = true;
    }
    st->start = st->end = st->scan = 0;
    st->batch_tail = 0;
}

/* Whether the buffer is empty at the end of a burst (see release_idle). */
static inline bool idle_now(const struct lines *st)
{
    return st->start == st->end && st->fill_short;
}

/* Hand out the line @p f in place (NUL-terminated) and consume it; no idle release. */
static inline const char *take_in_place(struct lines *st, const struct line_at *f)
{
    char *line = st->buf + st->start;
    line[f->len] = '\0';
    st->start += f->len + f->term;
    st->scan = st->start;
    st->swallow_lf = f->swallow;
    return line;
}

static inline rill_status deliver(rill_stream *s, struct lines *st, const struct line_req *req,
                                  const struct line_at *f)
{
    char *line = st->buf + st->start;
    if (req->copy) {
        if (f->len >= req->copy_cap) {
            *req->len = f->len; /* so the caller can size a buffer */
            return rilli_api_error(s, RILL_E_INVALID,
                                   "rill_read_line_copy: line of %zu bytes does not fit in a "
                                   "%zu-byte buffer (nothing consumed)",
                                   f->len, req->copy_cap);
        }
        memcpy(req->copy, line, f->len);
        req->copy[f->len] = '\0';
    } else {
        line[f->len] = '\0';
        *req->line = line;
    }
    *req->len = f->len;
    st->start += f->len + f->term;
    st->scan = st->start;
    st->swallow_lf = f->swallow;
    if (idle_now(st))
        release_idle(st, req->copy ? NULL : req->line, f->len);
    return RILL_OK;
}

/*
 * Read more from the inner stream into the free tail. Never asked with a full buffer:
 * the buffer holds max_line + 2 bytes, and scan_line() reports a line that long as too long.
 */
static rill_status fill(rill_stream *s, struct lines *st)
{
    settle(st); /* the buffer may move */
    if (!st->buf || st->small) {
        /* Nothing is buffered when it is small: the last line it holds has been handed out. */
        char *grown = rilli_malloc(block_size(st->cap));
        if (!grown) {
            return rill_stream_error(s, RILL_E_NOMEM, "out of memory (%zu-byte line buffer)",
                                     block_size(st->cap));
        }
        rilli_free(st->buf);
        st->buf = grown;
        st->small = false;
        st->start = st->end = st->scan = 0;
        st->batch_tail = 0;
    }
    if (st->start == st->end) {
        st->start = st->end = st->scan = 0;
        st->batch_tail = 0;
    } else if (st->start > 0 && st->cap - st->end < st->cap / 2) {
        size_t held = st->end - st->start;
        memmove(st->buf, st->buf + st->start, held);
        st->scan -= st->start;
        st->start = 0;
        st->end = held;
        st->batch_tail = 0;
    }
    if (st->end == st->cap) /* unreachable while the invariant above holds */
        return rill_stream_error(s, RILL_E_LINE_TOO_LONG, "line buffer full");
    size_t got = 0;
    size_t at = st->end;
    rill_status rc = rill_stream_read_inner(s, st->buf + at, st->cap - at, &got);
    if (rc != RILL_OK) {
        if (rc == RILL_EOF)
            st->swallow_lf = false;
        return rc;
    }
    st->end += got;
    st->fill_short = got < st->cap - at;
    if (st->swallow_lf) {
        st->swallow_lf = false;
        if (st->start == at && st->buf[at] == '\n') {
            st->start++;
            st->scan = st->start;
        }
    }
    return RILL_OK;
}

/* At end of stream: what is left is the last line, which has no ending. */
static rill_status last_line(rill_stream *s, struct lines *st, const struct line_req *req)
{
    if (st->start == st->end)
        return RILL_EOF;
    struct line_at f = { st->end - st->start, 0, false };
    if (st->eol == RILL_EOL_CRLF && st->buf[st->end - 1] == '\r') {
        return rill_stream_error(s, RILL_E_PROTOCOL,
                                 "bare CR at offset %zu of line (stream ended before its LF)",
                                 f.len - 1);
    }
    return deliver(s, st, req, &f);
}

/*
 * Look for a whole line among the buffered bytes: deliver it, or report what is wrong with
 * them. Returns false (and sets nothing) when more bytes are needed.
 */
static bool scan_buffered(rill_stream *s, struct lines *st, const struct line_req *req,
                          rill_status *rc)
{
    if (st->end <= st->start)
        return false;
    struct line_at f;
    enum scan_result r = scan_line(st, &f);
    if (r == SCAN_NEED)
        return false;
    *rc = r == SCAN_FOUND ? deliver(s, st, req, &f) : scan_error(s, st, r, &f);
    return true;
}

static rill_status line_attempt(rill_stream *s, void *arg)
{
    const struct line_req *req = arg;
    struct lines *st = rilli_state(s);
    for (;;) {
        rill_status done;
        if (scan_buffered(s, st, req, &done))
            return done;
        rill_status rc = fill(s, st);
        if (rc == RILL_EOF)
            return last_line(s, st, req);
        if (rc != RILL_OK)
            return rc;
    }
}

static rill_status skip_attempt(rill_stream *s, void *arg)
{
    (void)arg;
    struct lines *st = rilli_state(s);
    for (;;) {
        if (st->end > st->start) {
            const char *from = st->buf + st->start;
            size_t avail = st->end - st->start;
            size_t term = 1;
            bool swallow = false;
            const char *p;
            /* In CRLF mode any LF ends the skip: it is where a bare-LF offender ends too. */
            if (st->eol == RILL_EOL_ANY) {
                p = find_cr_or_lf(from, avail);
                if (p && *p == '\r') {
                    if (p + 1 == from + avail)
                        swallow = true;
                    else if (p[1] == '\n')
                        term = 2;
                }
            } else {
                p = memchr(from, '\n', avail);
            }
            if (p) {
                size_t n = (size_t)(p - from) + term;
                st->skipped += n;
                st->start += n;
                st->scan = st->start;
                st->swallow_lf = swallow;
                return RILL_OK;
            }
            st->skipped += avail;
            st->start = st->end = st->scan = 0;
            st->batch_tail = 0;
        }
        rill_status rc = fill(s, st);
        if (rc != RILL_OK)
            return rc;
    }
}

static rill_status lines_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct lines *st = rilli_state(s);
    settle(st);
    *n = 0;
    if (st->end > st->start) {
        size_t held = st->end - st->start;
        size_t k = len < held ? len : held;
        memcpy(buf, st->buf + st->start, k);
        st->start += k;
        if (st->scan < st->start)
            st->scan = st->start;
        *n = k;
        if (idle_now(st))
            release_idle(st, NULL, 0);
        return RILL_OK;
    }
    for (;;) {
        rill_status rc = rill_stream_read_inner(s, buf, len, n);
        if (rc != RILL_OK || !st->swallow_lf) {
            if (rc == RILL_EOF)
                st->swallow_lf = false;
            return rc;
        }
        /* The LF of a CRLF whose CR ended the last line belongs to that line. */
        st->swallow_lf = false;
        unsigned char *b = buf;
        if (b[0] != '\n')
            return RILL_OK;
        if (*n > 1) {
            memmove(b, b + 1, *n - 1);
            (*n)--;
            return RILL_OK;
        }
        *n = 0;
    }
}

static void lines_close(rill_stream *s)
{
    struct lines *st = rilli_state(s);
    settle(st);
    rilli_free(st->buf);
    st->buf = NULL;
}

/*
 * The owed LF counts as a byte: it is not readable yet (a read may need I/O, which the pending
 * contract allows after a WANT), but this layer has claimed it, so the stream below does not
 * continue where this layer stopped. Callers that detach or upgrade see it here.
 */
static size_t lines_pending(const rill_stream *s)
{
    const struct lines *st = rilli_state(s);
    return st->end - cur_start(st) + (st->swallow_lf ? 1 : 0);
}

static size_t lines_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct lines *st = rilli_state(s);
    return rilli_snprintf(buf, len, "lines(max=%zu eol=%s%s)", st->max_line, eol_name(st->eol),
                          st->swallow_lf ? " LF owed" : "");
}

static size_t lines_shrink(rill_stream *s)
{
    struct lines *st = rilli_state(s);
    settle(st);
    if (!st->buf || st->start != st->end)
        return 0;
    size_t held = st->small ? 0 : block_size(st->cap); /* a shrunk one holds the last line */
    rilli_free(st->buf);
    st->buf = NULL;
    st->small = false;
    st->start = st->end = st->scan = 0;
    st->batch_tail = 0;
    return held;
}

static const struct rill_stream_ops lines_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_LINES,
    .read = lines_read,
    .close = lines_close,
    .pending = lines_pending,
    .describe = lines_describe,
    .shrink = lines_shrink,
};

RILL_API rill_status rill_lines_new(rill_stream *inner, size_t max_line, rill_eol eol,
                                    unsigned flags, rill_stream **out)
{
    if (!inner)
        return RILL_E_INVALID;
    if (!out)
        return rilli_api_error(inner, RILL_E_INVALID, "rill_lines_new: out is NULL");
    if (max_line == 0 || max_line > LINES_MAX_LIMIT) {
        return rilli_api_error(inner, RILL_E_INVALID,
                               "rill_lines_new: max_line %zu out of range (1 .. %zu)", max_line,
                               LINES_MAX_LIMIT);
    }
    if (eol != RILL_EOL_LF && eol != RILL_EOL_CRLF && eol != RILL_EOL_ANY)
        return rilli_api_error(inner, RILL_E_INVALID, "rill_lines_new: unknown line ending mode %d",
                               (int)eol);
    rill_stream *s = NULL;
    rill_status st = rill_stream_new(&lines_ops, sizeof(struct lines), inner, flags, &s);
    if (st != RILL_OK)
        return st;
    struct lines *l = rilli_state(s);
    l->max_line = max_line;
    l->eol = eol;
    s->line_window = &l->win;
    /* A line of max_line bytes and a CRLF must fit; whole pages beyond the minimum. */
    size_t need = max_line + 2;
    l->cap = need <= LINES_MIN_BUFFER ? LINES_MIN_BUFFER : (need + 4095) & ~(size_t)4095;
    *out = s;
    return RILL_OK;
}

/* The layer's state, its window settled: every entry but the inline path comes through here. */
static struct lines *lines_of(rill_stream *s, const char *fn)
{
    if (rilli_ops(s) == &lines_ops) {
        struct lines *st = rilli_state(s);
        settle(st);
        return st;
    }
    rilli_api_error(s, RILL_E_INVALID, "%s: not a line stream (top layer is %s)", fn, rill_kind(s));
    return NULL;
}

static rill_status read_line_req(rill_stream *s, struct lines *st, struct line_req *req)
{
    /* A whole line already buffered needs neither the clock nor the inner stream. */
    rill_status done;
    if (scan_buffered(s, st, req, &done))
        return done;
    return rill_stream_call(s, 0, line_attempt, req);
}

/*
 * Everything but the fast path of rill_read_line(): argument checks, other modes, waiting.
 * Kept out of line so the fast path stays a few dozen instructions.
 */
static LINES_NOINLINE rill_status read_line_slow(rill_stream *s, const char **line, size_t *len)
{
    if (!s)
        return RILL_E_INVALID;
    struct lines *st = lines_of(s, "rill_read_line");
    if (!st)
        return RILL_E_INVALID;
    if (!line || !len)
        return rilli_api_error(s, RILL_E_INVALID, "rill_read_line: line or len is NULL");
    struct line_req req = { line, NULL, 0, len };
    rill_status rc = read_line_req(s, st, &req);
    if (rc != RILL_OK) {
        *line = NULL;
        *len = 0;
    }
    return rc;
}

/*
 * After a line handed out in LF mode: publish the bytes after it to the inline path (not the
 * last byte when the fill was short, see struct lines; not a block shrunk while idle).
 */
static inline void open_window(struct lines *st)
{
    if (st->eol != RILL_EOL_LF || st->small || !st->buf || st->end <= st->start)
        return;
    st->win.pos = st->buf + st->start;
    st->win.end = st->buf + st->end - (st->fill_short ? 1 : 0);
    st->win.room = st->max_line + 1;
}

/* Parenthesised: rill.h makes rill_read_line(...) the inline path, which calls this one. */
RILL_API rill_status(rill_read_line)(rill_stream *s, const char **line, size_t *len)
{
    /*
     * The inline path of rill.h, for callers that reach this function directly (a pointer to
     * it, RILL_NO_INLINE, other languages): with the window open, one memchr() finds the next
     * line. This is the loop a hand-written splitter runs, and anything more per line shows at
     * 40-byte lines. Else the library path, which opens the window again.
     */
    if (s && line && len && rilli_ops(s) == &lines_ops) {
        struct lines *st = rilli_state(s);
        if (rill_line_window_take_(&st->win, line, len))
            return RILL_OK;
        rill_status rc = read_line_slow(s, line, len);
        if (rc == RILL_OK)
            open_window(st);
        return rc;
    }
    return read_line_slow(s, line, len);
}

RILL_API rill_status rill_read_line_copy(rill_stream *s, char *buf, size_t cap, size_t *len)
{
    if (!s)
        return RILL_E_INVALID;
    struct lines *st = lines_of(s, "rill_read_line_copy");
    if (!st)
        return RILL_E_INVALID;
    if (!buf || !len)
        return rilli_api_error(s, RILL_E_INVALID, "rill_read_line_copy: buf or len is NULL");
    if (cap == 0)
        return rilli_api_error(s, RILL_E_INVALID, "rill_read_line_copy: cap is 0");
    buf[0] = '\0';
    *len = 0;
    struct line_req req = { NULL, buf, cap, len };
    return read_line_req(s, st, &req);
}

RILL_API rill_status rill_skip_line(rill_stream *s, size_t *skipped)
{
    if (!s)
        return RILL_E_INVALID;
    struct lines *st = lines_of(s, "rill_skip_line");
    if (!st)
        return RILL_E_INVALID;
    st->skipped = 0;
    rill_status rc = rill_stream_call(s, 0, skip_attempt, NULL);
    if (skipped)
        *skipped = st->skipped;
    st->skipped = 0;
    return rc;
}

/*
 * After the first line of a batch: every further whole line already buffered, up to @p max in
 * all, without I/O and without moving the buffer (the lines handed out point into it). A line
 * that would fail stops the batch before it: the next call reports it, nothing consumed.
 */
static size_t batch_rest(struct lines *st, rill_line *lines, size_t n, size_t max)
{
    if (st->eol == RILL_EOL_LF) {
        /*
         * The splitter loop itself, on locals: the limit bounds each search as scan_line() does,
         * and an empty rest ends it through memchr() finding nothing.
         */
        char *base = st->buf, *p = base + st->start, *end = base + st->end;
        size_t room = st->max_line + 1;
        rill_line *out = lines + n, *stop = lines + max;
        char *resume = NULL;
        while (out < stop) {
            size_t avail = (size_t)(end - p);
            size_t w = avail < room ? avail : room;
            char *lf = memchr(p, '\n', w);
            if (!lf) {
                resume = p + w; /* searched: the next call resumes there */
                break;
            }
            *lf = '\0';
            out->data = p;
            out->len = (size_t)(lf - p);
            out++;
            p = lf + 1;
        }
        st->start = (size_t)(p - base);
        st->scan = resume ? (size_t)(resume - base) : st->start;
        return (size_t)(out - lines);
    }
    while (n < max && st->end > st->start) {
        struct line_at f;
        if (scan_line(st, &f) != SCAN_FOUND)
            break;
        lines[n].data = take_in_place(st, &f);
        lines[n].len = f.len;
        n++;
    }
    return n;
}

RILL_API rill_status rill_read_lines(rill_stream *s, rill_line *lines, size_t max, size_t *count)
{
    if (count)
        *count = 0;
    if (!s)
        return RILL_E_INVALID;
    struct lines *st = lines_of(s, "rill_read_lines");
    if (!st)
        return RILL_E_INVALID;
    if (!lines || !count || max == 0)
        return rilli_api_error(s, RILL_E_INVALID, "rill_read_lines: %s",
                               !lines   ? "lines is NULL"
                               : !count ? "count is NULL"
                                        : "max is 0");
    /* The first line as rill_read_line() gets it: waiting, errors, the last line at EOF. */
    const char *first = NULL;
    size_t len = 0;
    struct line_req req = { &first, NULL, 0, &len };
    rill_status rc = read_line_req(s, st, &req);
    if (rc != RILL_OK)
        return rc;
    lines[0].data = first;
    lines[0].len = len;
    /* A first line that emptied the buffer may have been moved into a small block. */
    size_t first_end = st->start;
    *count = st->small || !st->buf ? 1 : batch_rest(st, lines, 1, max);
    st->batch_tail = *count > 1 ? st->start - first_end : 0;
    st->batch_end = st->start;
    return RILL_OK;
}

size_t rilli_lines_batch_unread(const rill_stream *s)
{
    if (rilli_ops(s) != &lines_ops)
        return 0;
    const struct lines *st = rilli_state(s);
    return st->batch_tail > 0 && st->buf && !st->small && cur_start(st) == st->batch_end
               ? st->batch_tail
               : 0;
}

RILL_API rill_status rill_line_iter_fill(rill_line_iter *it, const char **line, size_t *len)
{
    if (!it)
        return RILL_E_INVALID;
    it->next = it->count = 0;
    if (!line || !len)
        return rilli_api_error(it->s, RILL_E_INVALID, "rill_line_iter_next: line or len is NULL");
    rill_status rc = rill_read_lines(it->s, it->lines, RILL_LINE_ITER_BATCH, &it->count);
    if (rc != RILL_OK) {
        *line = NULL;
        *len = 0;
        return rc;
    }
    *line = it->lines[0].data;
    *len = it->lines[0].len;
    it->next = 1;
    return RILL_OK;
}
