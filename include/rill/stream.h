/* SPDX-License-Identifier: MIT */
/*
 * rill/stream.h — for implementers of layers (transports and decorators).
 *
 * A layer kind is one `static const struct rill_stream_ops` and a constructor that calls
 * rill_stream_new(). The core (not the layer) waits for readiness, applies deadlines, keeps
 * errors, prefixes messages with the layer name as they travel up, and closes chains. A layer
 * therefore never blocks on its own, never frees its inner stream, and implements only the ops
 * it changes: a NULL op means "pass through to the inner stream" (read, write, poll) or
 * "nothing of my own to do" (flush, shutdown, close, pending, shrink).
 *
 * Ops contracts (s is the layer itself; reach its state with rill_stream_state(s)):
 *  - read: fill buf with 1..len bytes and set *n, or return RILL_EOF, RILL_WANT_READ,
 *    RILL_WANT_WRITE, or an error set with rill_stream_error(). May call the inner stream only
 *    through rill_stream_read_inner()/rill_stream_write_inner(). Must leave the layer in a state
 *    where the same call can be repeated after a WANT (the core retries after poll()).
 *    len is never 0.
 *  - write: accept 1..len bytes and set *n, or WANT/error. len is never 0.
 *  - flush: push this layer's own held bytes to the inner stream (the core then flushes the
 *    inner stream itself). RILL_OK when nothing is held any more.
 *  - shutdown: this layer's part of a write-side half-close (TLS: close_notify; TCP:
 *    shutdown(SHUT_WR)). Called after flush; the core then shuts down the inner stream.
 *  - close: release this layer's own resources (not the state block, which the core frees, and
 *    never the inner stream). Must not block; best effort. A closing message it writes (TLS's
 *    close_notify) goes to the inner stream, and the core flushes it through the layers below
 *    before closing them. If the message could not be written without waiting, record
 *    RILL_E_TIMEOUT with rill_stream_error(): rill_close() then reports it as discarded.
 *    Other errors are ignored (a peer that has gone cannot take the message).
 *  - pending: bytes this layer holds that a read could return without I/O, plus any byte it
 *    has claimed from the inner stream before reading it (the lines layer's owed LF). While it
 *    is non-zero, rill_close() of a borrowing layer reports RILL_E_PENDING_DATA and TLS
 *    refuses to start over the chain. A message-oriented layer (TLS records, a framing
 *    protocol) counts the payload bytes of whole messages it has decoded and not yet returned
 *    (TLS: SSL_pending()); a message it holds only in part cannot be read without I/O and is
 *    not counted (its bytes are ciphertext or framing, not data a plaintext reader would
 *    take over); a layer that keeps such raw input across a detach or an upgrade must count
 *    it instead, so the refusal above still protects it.
 *  - poll: set *fd, and adjust *events if this layer knows better, for the WANT the last call
 *    returned. Transports set *fd; decorators usually leave it NULL (the core asks the inner).
 *  - describe: write this layer's own part ("buffered(16384)") like snprintf; the core joins
 *    layers with " > ". NULL prints the name alone.
 *  - shrink: release memory not needed while idle; return the number of bytes released.
 *  - writev (version 2): accept 1..total bytes of the pieces iov[0 .. iovcnt) in order (iovcnt
 *    >= 1, every len > 0) and set *n, or WANT/error, like write. Pass them on whole where the
 *    layer can (rill_stream_writev_inner()). NULL: a layer with its own write op is given the
 *    pieces one at a time through it; a layer without one passes the gather to its inner stream.
 */
#ifndef RILL_STREAM_H
#define RILL_STREAM_H

#include <stdarg.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rill.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Writing a layer
 * Page: rill_stream_new
 *
 * A layer kind is one static const struct rill_stream_ops and a constructor that calls
 * rill_stream_new(); the ops contracts are in the comment at the top of <rill/stream.h> and in
 * rill(7)'s guide. Example:
 *     struct upper { int unused; };
 *     static rill_status upper_read(rill_stream *s, void *buf, size_t len, size_t *n)
 *     {
 *         rill_status st = rill_stream_read_inner(s, buf, len, n);
 *         for (size_t i = 0; st == RILL_OK && i < *n; i++)
 *             ((char *)buf)[i] = (char)toupper(((unsigned char *)buf)[i]);
 *         return st;
 *     }
 *     static const struct rill_stream_ops upper_ops = {
 *         .version = RILL_STREAM_OPS_VERSION, .name = "upper", .read = upper_read,
 *     };
 *     rill_status upper_new(rill_stream *inner, rill_stream **out)
 *     {
 *         return rill_stream_new(&upper_ops, sizeof(struct upper), inner, 0, out);
 *     }
 */

/**
 * Version of struct rill_stream_ops this header describes. 2 added writev; ops of version 1
 * (which end before it) are still accepted.
 */
#define RILL_STREAM_OPS_VERSION 2

/** The vtable of one layer kind. Define it `static const`; it must outlive its streams. */
struct rill_stream_ops {
    unsigned version; /**< REQUIRED: RILL_STREAM_OPS_VERSION */
    const char *name; /**< REQUIRED: the kind, e.g. "tcp"; used by rill_find() and messages */
    rill_status (*read)(rill_stream *s, void *buf, size_t len, size_t *n);        /**< OPTIONAL */
    rill_status (*write)(rill_stream *s, const void *buf, size_t len, size_t *n); /**< OPTIONAL */
    rill_status (*flush)(rill_stream *s);                                         /**< OPTIONAL */
    rill_status (*shutdown)(rill_stream *s);                                      /**< OPTIONAL */
    void (*close)(rill_stream *s);                                                /**< OPTIONAL */
    size_t (*pending)(const rill_stream *s);                                      /**< OPTIONAL */
    rill_status (*poll)(rill_stream *s, int *fd, short *events);                  /**< OPTIONAL */
    size_t (*describe)(const rill_stream *s, char *buf, size_t len);              /**< OPTIONAL */
    size_t (*shrink)(rill_stream *s);                                             /**< OPTIONAL */
    /** OPTIONAL, version >= 2 */
    rill_status (*writev)(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n);
};

/**
 * Create a layer of kind @p ops with a zeroed state block of @p state_size bytes (aligned for
 * any type), wrapping @p inner (NULL for a transport). The new layer inherits the inner stream's
 * timeouts. @p flags: RILL_BORROW leaves @p inner open when the layer is closed.
 *
 * Ownership: on RILL_OK *out owns @p inner (unless borrowed). On error nothing changes and the
 * caller still owns @p inner; the reason is recorded on @p inner when there is one.
 * Errors: RILL_E_INVALID (NULL ops/out, a version other than 1 or RILL_STREAM_OPS_VERSION, no
 * name), RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_stream_new(const struct rill_stream_ops *ops,
                                                    size_t state_size, rill_stream *inner,
                                                    unsigned flags, rill_stream **out);

/** The layer's state block (state_size bytes given to rill_stream_new()). */
RILL_API void *rill_stream_state(const rill_stream *s);

/** The stream this layer wraps, or NULL for a transport. */
RILL_API rill_stream *rill_stream_inner(const rill_stream *s);

/** The ops of the layer (compare with a layer's own ops to check its kind). */
RILL_API const struct rill_stream_ops *rill_stream_ops_of(const rill_stream *s);

/**
 * Whether the current call may block indefinitely in a system call (the public call came with
 * no timeout). Transports pass this to the kernel (no MSG_DONTWAIT); when false they must not
 * wait and return RILL_WANT_* instead.
 */
RILL_API int rill_stream_may_block(const rill_stream *s);

/**
 * Call the inner stream of @p self from inside an op. Never waits beyond what
 * rill_stream_may_block(self) allows. On error, the inner stream's message is copied to @p self
 * prefixed with the inner layer's path, so it travels up the chain.
 */
RILL_API rill_status rill_stream_read_inner(rill_stream *self, void *buf, size_t len, size_t *n);
RILL_API rill_status rill_stream_write_inner(rill_stream *self, const void *buf, size_t len,
                                             size_t *n);
/** The same for a gather write (iovcnt >= 1, every len > 0); see rill_writev(). */
RILL_API rill_status rill_stream_writev_inner(rill_stream *self, const struct iovec *iov,
                                              int iovcnt, size_t *n);

/**
 * Flush the layers below @p self from inside an op, without waiting beyond what
 * rill_stream_may_block(self) allows: for a layer whose protocol needs its bytes on the wire now
 * (a handshake flight) while a buffered layer below would hold them. Returns RILL_OK when
 * nothing is held below any more, RILL_WANT_WRITE (try again when writable), or the error of the
 * layer below (its message copied to @p self).
 */
RILL_API RILL_NODISCARD rill_status rill_stream_flush_inner(rill_stream *self);

/**
 * Record an error on @p s and return @p code: the message becomes "<name>: <formatted text>".
 * rill_stream_error_sys() appends ": <strerror(errnum)>" (or the given text) and keeps errnum.
 */
RILL_API rill_status rill_stream_error(rill_stream *s, rill_status code, const char *fmt, ...)
    RILL_PRINTF(3, 4);
RILL_API rill_status rill_stream_error_sys(rill_stream *s, rill_status code, int errnum,
                                           const char *fmt, ...) RILL_PRINTF(4, 5);

/**
 * Run @p attempt repeatedly under the read (dir = 0) or write (dir = 1) timeout of @p s,
 * waiting with poll() between attempts that return RILL_WANT_*; this is how public blocking
 * helpers of a layer (rill_peek, rill_read_line) are built. The core sets
 * rill_stream_may_block() for the chain before each attempt. Returns the first status that is
 * not a WANT, the WANT itself in non-blocking mode, or RILL_E_TIMEOUT.
 */
RILL_API RILL_NODISCARD rill_status rill_stream_call(
    rill_stream *s, int dir, rill_status (*attempt)(rill_stream *s, void *arg), void *arg);

#ifdef __cplusplus
}
#endif

#endif /* RILL_STREAM_H */
