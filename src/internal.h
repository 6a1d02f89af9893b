/*
 * Internal helpers shared across rill's own files (prefix rilli_). Not installed.
 */
#ifndef RILL_INTERNAL_H
#define RILL_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rill.h"
#include "rill/stream.h"

/* Allocation: every allocation of rill's own goes through these (rill_set_allocator). */
void *rilli_malloc(size_t n);
void *rilli_calloc(size_t count, size_t size);
void *rilli_realloc(void *p, size_t n);
void rilli_free(void *p);

/* Monotonic clock in milliseconds. */
int64_t rilli_now_ms(void);

/* Deadline for a timeout in ms: -1 (none) stays -1, otherwise now + timeout. */
int64_t rilli_deadline(int timeout_ms);

/* Milliseconds left until @p deadline for poll(): -1 for none, 0 when passed. */
int rilli_remaining_ms(int64_t deadline);

/*
 * Fill a rill_error (may be NULL) and return @p code. The message is the formatted text, and
 * with _sys ": strerror(errnum)" appended.
 */
rill_status rilli_error_set(rill_error *err, rill_status code, int errnum, const char *fmt, ...)
    RILL_PRINTF(4, 5);
rill_status rilli_error_vset(rill_error *err, rill_status code, int errnum, const char *fmt,
                             va_list ap) RILL_PRINTF(4, 0);

/* Copy the error of stream @p s into @p err (may be NULL); returns the code. */
rill_status rilli_error_from_stream(rill_error *err, const rill_stream *s);

/* errno text in rill's wording ("connection refused", ...); never NULL. */
const char *rilli_errno_text(int errnum);

/* Map an errno from a socket or fd operation to a status. */
rill_status rilli_status_from_errno(int errnum);

/* snprintf into buf that tolerates len 0 and returns the would-be length as size_t. */
size_t rilli_snprintf(char *buf, size_t len, const char *fmt, ...) RILL_PRINTF(3, 4);

#endif /* RILL_INTERNAL_H */
