/* SPDX-License-Identifier: MIT */
/* Status texts, error records and the errno vocabulary shared by all layers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#ifndef RILL_VERSION_STRING
#error "RILL_VERSION_STRING must be defined by the build"
#endif

RILL_API const char *rill_version(void)
{
    return RILL_VERSION_STRING;
}

RILL_API unsigned rill_version_number(void)
{
    return RILL_VERSION_NUMBER;
}

RILL_API int rill_version_check(unsigned header_version)
{
    return (header_version >> 16) == RILL_VERSION_MAJOR && header_version <= RILL_VERSION_NUMBER;
}

RILL_API const char *rill_strerror(rill_status code)
{
    switch (code) {
    case RILL_OK: return "success";
    case RILL_EOF: return "end of stream";
    case RILL_WANT_READ: return "operation would block until readable";
    case RILL_WANT_WRITE: return "operation would block until writable";
    case RILL_E_INVALID: return "invalid argument";
    case RILL_E_NOMEM: return "out of memory";
    case RILL_E_IO: return "I/O error";
    case RILL_E_CLOSED: return "stream closed";
    case RILL_E_TIMEOUT: return "timed out";
    case RILL_E_RESET: return "connection reset by peer";
    case RILL_E_REFUSED: return "connection refused";
    case RILL_E_CONNECT: return "connect failed";
    case RILL_E_DNS: return "name resolution failed";
    case RILL_E_TLS: return "TLS error";
    case RILL_E_TLS_VERIFY: return "TLS verification failed";
    case RILL_E_TRUNCATED: return "TLS stream truncated (no close_notify)";
    case RILL_E_LINE_TOO_LONG: return "line too long";
    case RILL_E_PENDING_DATA: return "unread data pending";
    case RILL_E_PROTOCOL: return "malformed input";
    case RILL_E_UNSUPPORTED: return "operation not supported";
    case RILL_E_PROXY: return "proxy refused the tunnel";
    }
    return "unknown status";
}

const char *rilli_errno_text(int errnum)
{
    /* Lower-case wording for the errors users meet most; strerror() for the rest. */
    switch (errnum) {
    case ECONNREFUSED: return "connection refused";
    case ECONNRESET: return "connection reset by peer";
    case EPIPE: return "broken pipe, the peer closed the connection";
    case ETIMEDOUT: return "timed out";
    case ENETUNREACH: return "network unreachable";
    case EHOSTUNREACH: return "host unreachable";
    case EADDRINUSE: return "address already in use";
    case EADDRNOTAVAIL: return "address not available";
    case EMFILE: return "too many open files (process limit)";
    case ENFILE: return "too many open files (system limit)";
    case ENOENT: return "no such file or directory";
    case EACCES: return "permission denied";
    case ENOMEM: return "out of memory";
    default: break;
    }
    static const char unknown[] = "unknown error";
    const char *text = strerrordesc_np(errnum);
    return text ? text : unknown;
}

rill_status rilli_status_from_errno(int errnum)
{
    switch (errnum) {
    case ECONNREFUSED: return RILL_E_REFUSED;
    case ECONNRESET: return RILL_E_RESET;
    case EPIPE: return RILL_E_CLOSED;
    case ETIMEDOUT: return RILL_E_TIMEOUT;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
    case ECONNABORTED:
    case EADDRNOTAVAIL:
    case ENOENT: return RILL_E_CONNECT;
    case ENOMEM: return RILL_E_NOMEM;
    default: return RILL_E_IO;
    }
}

rill_status rilli_error_vset(rill_error *err, rill_status code, int errnum, const char *fmt,
                             va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    err->sys_errno = errnum;
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    if (n < 0)
        err->msg[0] = '\0';
    if (errnum != 0 && n >= 0 && (size_t)n < sizeof err->msg) {
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", rilli_errno_text(errnum));
    }
    return code;
}

rill_status rilli_error_set(rill_error *err, rill_status code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rilli_error_vset(err, code, errnum, fmt, ap);
    va_end(ap);
    return code;
}

rill_status rilli_error_from_stream(rill_error *err, const rill_stream *s)
{
    const rill_error *e = rill_last_error(s);
    if (err && e)
        *err = *e;
    return e ? e->code : RILL_E_INVALID;
}

size_t rilli_snprintf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(len ? buf : NULL, len, fmt, ap);
    va_end(ap);
    return n < 0 ? 0 : (size_t)n;
}

int64_t rilli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t rilli_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_us() + (int64_t)timeout_ms * 1000;
}

int rilli_remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_us();
    if (left <= 0)
        return 0;
    /* Round up so a wait never ends before the deadline has really passed. */
    left = (left + 999) / 1000;
    return left > 0x7fffffff ? 0x7fffffff : (int)left;
}
