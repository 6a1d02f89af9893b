/* SPDX-License-Identifier: MIT */
/* rill_write_fmt: printf-style writes with a bound on the formatted size. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

RILL_API rill_status rill_write_vfmt(rill_stream *s, size_t *nwritten, const char *fmt, va_list ap)
{
    if (nwritten)
        *nwritten = 0;
    if (!s)
        return RILL_E_INVALID;
    if (!fmt)
        return rilli_api_error(s, RILL_E_INVALID, "rill_write_fmt: format is NULL");
    /* Most protocol lines fit the stack; longer text is formatted once more into the heap. */
    char small[512];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    rill_status st = RILL_OK;
    if (n < 0) {
        st = rilli_api_error(s, RILL_E_INVALID, "rill_write_fmt: the format cannot be expanded");
    } else if ((size_t)n >= RILL_WRITE_FMT_MAX) {
        st = rilli_api_error(s, RILL_E_INVALID,
                             "rill_write_fmt: the text is %d bytes, over the limit of %u "
                             "(RILL_WRITE_FMT_MAX); nothing was written",
                             n, RILL_WRITE_FMT_MAX);
    } else if ((size_t)n < sizeof small) {
        st = rill_write_all(s, small, (size_t)n, nwritten);
    } else {
        char *big = rilli_malloc((size_t)n + 1);
        if (!big) {
            st = rilli_api_error(s, RILL_E_NOMEM,
                                 "rill_write_fmt: out of memory for %d bytes of text", n);
        } else {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            st = rill_write_all(s, big, (size_t)n, nwritten);
            rilli_free(big);
        }
    }
    va_end(again);
    return st;
}

RILL_API rill_status rill_write_fmt(rill_stream *s, size_t *nwritten, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rill_status st = rill_write_vfmt(s, nwritten, fmt, ap);
    va_end(ap);
    return st;
}
