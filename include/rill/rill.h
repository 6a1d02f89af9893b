/* SPDX-License-Identifier: MIT */
/*
 * rill — stackable network streams for C.
 *
 * This is the header for users of the library. Implementers of their own layers also include
 * <rill/stream.h>.
 *
 * Conventions that hold for every function below unless its comment says otherwise:
 *  - Functions that can fail return a rill_status: RILL_OK (0) on success, RILL_EOF at end of
 *    stream, RILL_WANT_READ / RILL_WANT_WRITE when a non-blocking call would wait, and a negative
 *    RILL_E_* code on error. Results come back through out-parameters.
 *  - After an error on a stream, rill_errmsg() on that stream says what happened, e.g.
 *    "buffered: tcp: connection reset by peer (127.0.0.1:40112 > 127.0.0.1:8443)". Functions that
 *    create a stream from nothing take an optional rill_error* that receives the same information.
 *    A decorator constructor (rill_lines_new(inner, ..., &out), rill_tls_client(), ...) that
 *    fails leaves *out untouched and the reason on inner, which stays the caller's, so a chain
 *    built in one variable (rill_lines_new(s, ..., &s)) has one place to look: rill_errmsg(s).
 *  - errno means nothing after a rill call; the message and rill_error.sys_errno carry it.
 *  - A stream is used by one thread at a time. Different streams may be used from different
 *    threads at once without locking.
 *  - No rill function raises SIGPIPE or changes signal dispositions.
 */
#ifndef RILL_RILL_H
#define RILL_RILL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>  /* memchr, for the inline rill_read_line */
#include <sys/uio.h> /* struct iovec, for rill_writev */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RILL_STATIC_DEFINE)
#define RILL_API
#elif defined(__GNUC__)
#define RILL_API __attribute__((visibility("default")))
#else
#define RILL_API
#endif

#if defined(__GNUC__)
#define RILL_NODISCARD    __attribute__((warn_unused_result))
#define RILL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RILL_NODISCARD
#define RILL_PRINTF(f, a)
#endif

/** Outcome of a rill call. Non-negative values are not errors. */
typedef enum rill_status {
    RILL_OK = 0,             /**< success */
    RILL_EOF = 1,            /**< end of stream: the peer finished sending */
    RILL_WANT_READ = 2,      /**< non-blocking: wait until rill_poll_info()'s fd is ready */
    RILL_WANT_WRITE = 3,     /**< non-blocking: wait until rill_poll_info()'s fd is ready */
    RILL_E_INVALID = -1,     /**< invalid argument or call out of sequence */
    RILL_E_NOMEM = -2,       /**< out of memory */
    RILL_E_IO = -3,          /**< operating-system I/O error (see the message for errno text) */
    RILL_E_CLOSED = -4,      /**< stream already shut down for writing, or peer stopped reading */
    RILL_E_TIMEOUT = -5,     /**< a deadline passed */
    RILL_E_RESET = -6,       /**< connection reset by peer */
    RILL_E_REFUSED = -7,     /**< connection refused */
    RILL_E_CONNECT = -8,     /**< connect failed (unreachable, no route, ...) */
    RILL_E_DNS = -9,         /**< name resolution failed */
    RILL_E_TLS = -10,        /**< TLS protocol error */
    RILL_E_TLS_VERIFY = -11, /**< TLS peer certificate or hostname verification failed */
    RILL_E_TRUNCATED = -12,  /**< TLS stream ended without close_notify */
    RILL_E_LINE_TOO_LONG = -13, /**< line longer than the line reader's limit; nothing consumed */
    RILL_E_PENDING_DATA = -14,  /**< refused: a layer still holds unread or unwritten bytes */
    RILL_E_PROTOCOL = -15,    /**< malformed input (bare CR/LF in strict CRLF mode, short value) */
    RILL_E_UNSUPPORTED = -16, /**< operation not supported by this stream or platform */
    RILL_E_PROXY = -17 /**< the proxy refused the tunnel (HTTP status, SOCKS reply, credentials) */
} rill_status;

/** Size of the message buffer in rill_error; longer messages are truncated. */
#define RILL_ERRMSG_MAX 256

/**
 * Details of a failure: the status, the errno that caused it (0 if none) and a message that names
 * the layer, the peer and the reason. Fixed size, so it can report out-of-memory conditions and
 * live on the caller's stack.
 */
typedef struct rill_error {
    rill_status code;
    int sys_errno;
    char msg[RILL_ERRMSG_MAX];
} rill_error;

/** A stream: one layer of a chain (transport or decorator). Opaque. */
typedef struct rill_stream rill_stream;

/** A listening socket that accepts streams. Opaque. */
typedef struct rill_listener rill_listener;

struct rill_connect_event;

/** A TLS configuration (trust, verification, versions, certificates). Opaque; see "TLS". */
typedef struct rill_tls_config rill_tls_config;

/*
 * The man pages are made from this file and <rill/stream.h> by tools/mangen.c. Each section
 * that opens with a comment line of dashes is one page, rill_<first function>(3), titled by the
 * section's heading; the rest of that comment opens its DESCRIPTION, and an indented block
 * after a line ending in "Example:" is its EXAMPLES ("Page: name" on its own line names the
 * page otherwise). Each function's comment (summary, then Ownership:, Errors:, Thread-safety:)
 * goes to DESCRIPTION, ERRORS and THREAD SAFETY; documented types and macros are shown as
 * declared. A function added to a section needs nothing but its comment.
 */

/* ---------------------------------------------------------------------------------------------
 * Library: version, status texts, allocator
 *
 * Check at start-up that the library loaded is one the program was built for. Example:
 *     if (!rill_version_check(RILL_VERSION_NUMBER)) {
 *         fprintf(stderr, "rill %s is older than the %d.%d.%d this program needs\n",
 *                 rill_version(), RILL_VERSION_MAJOR, RILL_VERSION_MINOR, RILL_VERSION_PATCH);
 *         return 1;
 *     }
 */

/**
 * Version of this header. CMake reads the project version from these three lines, so they are
 * the one place it is set. RILL_VERSION_NUMBER compares as an integer: 0x00MMmmpp.
 */
#define RILL_VERSION_MAJOR 0
#define RILL_VERSION_MINOR 1
#define RILL_VERSION_PATCH 0
#define RILL_VERSION_NUMBER \
    ((RILL_VERSION_MAJOR << 16) | (RILL_VERSION_MINOR << 8) | RILL_VERSION_PATCH)

/**
 * Version of the library as "MAJOR.MINOR.PATCH": the library loaded at run time, which may be
 * newer than the header a program was built with. Thread-safety: safe.
 */
RILL_API const char *rill_version(void);

/** RILL_VERSION_NUMBER of the library loaded at run time. Thread-safety: safe. */
RILL_API unsigned rill_version_number(void);

/**
 * Check that the library loaded at run time can serve a program built against the header of
 * version @p header_version (pass RILL_VERSION_NUMBER): the same major version (for 0.x, the
 * and the library is not older than the header. Returns 1 if so, 0 if not: a library older than
 * its header lacks functions and option fields the program may use.
 * Thread-safety: safe.
 */
RILL_API int rill_version_check(unsigned header_version);

/** Short English text for a status, e.g. "connection refused". Never NULL. Thread-safe. */
RILL_API const char *rill_strerror(rill_status code);

/**
 * Replace the allocator used by rill for its own allocations (not OpenSSL's or c-ares's).
 * Any of the three may be NULL to keep the default (malloc/realloc/free). Call it before any
 * other rill function, from one thread; memory allocated before the change is freed with the
 * functions that were in force when the call was made only if they are the same, so do not
 * change allocators while rill objects exist. An allocator that returns NULL makes the calling
 * function fail with RILL_E_NOMEM (this is how the test suite injects allocation failures).
 *
 * Thread-safety: not thread-safe; process-wide.
 */
RILL_API void rill_set_allocator(void *(*alloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                                 void (*free_fn)(void *));

/* ---------------------------------------------------------------------------------------------
 * Errors of a stream
 *
 * After a call on a stream fails, the stream says why: the message names each layer the error
 * came through, the peer and the reason. Example:
 *     if (rill_write_all(s, buf, len, NULL) != RILL_OK)
 *         fprintf(stderr, "send: %s\n", rill_errmsg(s));
 */

/**
 * The last error message of stream @p s (the layer the call was made on), e.g.
 * "lines: buffered: tcp: connection reset by peer (127.0.0.1:40112 > 127.0.0.1:8443)".
 * Returns "" when no error has been recorded and "(null stream)" for NULL. The pointer stays
 * valid until the next call on @p s. The message is kept in a record allocated with the
 * stream's first error; if that allocation failed, the code is still kept and the message is
 * "out of memory: no room for the message of this error" (or, on the thread that recorded it
 * and until another such error, the message itself).
 */
RILL_API const char *rill_errmsg(const rill_stream *s);

/** The last error of @p s as a whole record (code, errno, message). NULL for NULL. */
RILL_API const rill_error *rill_last_error(const rill_stream *s);

/* ---------------------------------------------------------------------------------------------
 * Reading and writing
 *
 * Example:
 *     char buf[4096];
 *     size_t n;
 *     rill_status st;
 *     while ((st = rill_read(s, buf, sizeof buf, &n)) == RILL_OK)
 *         fwrite(buf, 1, n, stdout);
 *     if (st != RILL_EOF)
 *         fprintf(stderr, "%s\n", rill_errmsg(s));
 *     st = rill_close(s);
 */

/**
 * Read up to @p len bytes into @p buf.
 *
 * On RILL_OK, *nread is between 1 and len: a successful read never reports 0 bytes. At end of
 * stream returns RILL_EOF with *nread = 0. In non-blocking mode (read timeout 0) returns
 * RILL_WANT_READ or RILL_WANT_WRITE when no byte is available yet (see rill_poll_info()).
 *
 * Errors: RILL_E_INVALID (NULL s/buf/nread, len 0), RILL_E_TIMEOUT when the read timeout passes
 * (the stream stays usable), RILL_E_RESET, RILL_E_IO, and layer errors (RILL_E_TLS, ...).
 */
RILL_API RILL_NODISCARD rill_status rill_read(rill_stream *s, void *buf, size_t len, size_t *nread);

/**
 * Write up to @p len bytes from @p buf; *nwritten receives how many were accepted (at least 1
 * on RILL_OK when len > 0). A write of 0 bytes returns RILL_OK and writes nothing. A buffered
 * layer may hold accepted bytes until rill_flush().
 *
 * Errors: RILL_E_INVALID, RILL_E_TIMEOUT, RILL_E_CLOSED (after rill_shutdown, or the peer is
 * gone: "broken pipe"), RILL_E_RESET, RILL_E_IO.
 */
RILL_API RILL_NODISCARD rill_status rill_write(rill_stream *s, const void *buf, size_t len,
                                               size_t *nwritten);

/**
 * Read exactly @p len bytes, waiting as needed. Returns RILL_OK when all arrived; RILL_EOF if the
 * stream ended first (*nread tells how many did arrive, so none are lost). In non-blocking mode
 * or on timeout, returns RILL_WANT_* or RILL_E_TIMEOUT with *nread bytes already stored in @p buf.
 * The read timeout covers the whole call. @p nread may be NULL.
 */
RILL_API RILL_NODISCARD rill_status rill_read_full(rill_stream *s, void *buf, size_t len,
                                                   size_t *nread);

/**
 * Write all @p len bytes, waiting as needed; the write timeout covers the whole call. On any
 * status but RILL_OK, *nwritten (may be NULL) says how many bytes were accepted.
 */
RILL_API RILL_NODISCARD rill_status rill_write_all(rill_stream *s, const void *buf, size_t len,
                                                   size_t *nwritten);

/**
 * Gather write: write all bytes of @p iov[0 .. iovcnt) in order, as rill_write_all() would write
 * their concatenation, but without joining them first. Every layer passes the pieces on whole
 * where it can: a tcp, unix or fd transport sends them with one sendmsg() or writev() (a header
 * and a body in one system call), buffered copies what fits and hands the rest and its held
 * bytes down as one gather, tls packs small pieces into one record and encrypts large ones in
 * place; a layer without a gather op of its own gets them one at a time. The write timeout
 * covers the whole call. On any status but RILL_OK, *nwritten (may be NULL) says how many bytes
 * were accepted. Entries with len 0 are skipped; iovcnt 0 writes nothing.
 *
 * Ownership: nothing is kept after the call.
 * Errors: as rill_write_all(); RILL_E_INVALID for a NULL @p iov with iovcnt > 0 or a NULL base
 * with a non-zero len (nothing written).
 * Thread-safety: as any call on a stream (one thread at a time).
 */
RILL_API RILL_NODISCARD rill_status rill_writev(rill_stream *s, const struct iovec *iov,
                                                size_t iovcnt, size_t *nwritten);

/**
 * Write all bytes of NUL-terminated @p str: rill_write_all(s, str, strlen(str), nwritten).
 * @p nwritten (may be NULL) tells how far a call stopped by a wait or timeout got.
 */
RILL_API RILL_NODISCARD rill_status rill_write_str(rill_stream *s, const char *str,
                                                   size_t *nwritten);

/** Largest text rill_write_fmt() formats, in bytes (without the terminating NUL). */
#define RILL_WRITE_FMT_MAX 65536u

/**
 * Format like printf() and write all of the text, as rill_write_all(): for protocol lines,
 * rill_write_fmt(s, NULL, "EHLO %s\r\n", name). The text is bounded: one longer than
 * RILL_WRITE_FMT_MAX bytes is refused before anything is written. Up to 511 bytes are formatted
 * on the stack; longer text in one allocation. @p nwritten (may be NULL) tells how far a call
 * stopped by a wait or timeout got.
 *
 * Errors: RILL_E_INVALID (NULL format; "rill_write_fmt: the text is 70000 bytes, over the limit
 * of 65536 (RILL_WRITE_FMT_MAX); nothing was written"; a format the C library cannot expand),
 * RILL_E_NOMEM, and the errors of rill_write_all().
 */
RILL_API RILL_NODISCARD rill_status rill_write_fmt(rill_stream *s, size_t *nwritten,
                                                   const char *fmt, ...) RILL_PRINTF(3, 4);

/** rill_write_fmt() with a va_list. */
RILL_API RILL_NODISCARD rill_status rill_write_vfmt(rill_stream *s, size_t *nwritten,
                                                    const char *fmt, va_list ap) RILL_PRINTF(3, 0);

/**
 * Push bytes held by write buffers down the whole chain to the transport. Non-blocking mode may
 * return RILL_WANT_WRITE; call again when writable. Errors as for rill_write().
 */
RILL_API RILL_NODISCARD rill_status rill_flush(rill_stream *s);

/**
 * Flush, then half-close the chain for writing: TLS sends close_notify, TCP sends FIN
 * (shutdown(SHUT_WR)). Each layer shuts down top-down, and what it writes while doing so is
 * flushed through the layers below before they shut down (a close_notify reaches the socket
 * ahead of the FIN in any order of layers). Reading stays possible until the peer closes. Later
 * writes fail with RILL_E_CLOSED. Calling it twice is harmless. Non-blocking mode may return
 * RILL_WANT_WRITE; call again when writable.
 */
RILL_API RILL_NODISCARD rill_status rill_shutdown(rill_stream *s);

/**
 * Flush and close the whole chain top-down and free it. A layer created with RILL_BORROW stops
 * the walk: the stream it wraps stays open and owned by the caller. Each layer's closing message
 * (TLS's close_notify) goes out in order, top-down, and is flushed through the layers below
 * before they close, waiting as the write timeout allows; a closing message that cannot be
 * sent in that time (or at once, in non-blocking mode) is discarded and reported as
 * RILL_E_TIMEOUT, while a peer that has already gone is no error of the close.
 *
 * Always frees @p s (NULL is accepted and returns RILL_OK). Returns RILL_OK, or the first
 * problem met: bytes that could not be flushed within the write timeout are discarded and
 * reported as RILL_E_TIMEOUT (or the write error); pending bytes of the closed layers of a
 * borrowing chain (see rill_pending(): unread bytes the borrowed stream will never deliver, or
 * an LF a RILL_EOL_ANY line reader still owes, which it would deliver) are reported as
 * RILL_E_PENDING_DATA, with the reason in rill_errmsg() of the borrowed stream (check
 * rill_pending() first when detaching after a protocol step). The closed stream's own message
 * is gone with it; call rill_flush() first where that message matters.
 */
RILL_API rill_status rill_close(rill_stream *s);

/**
 * Bytes held in the chain's buffers that can be read without I/O. The descriptor does not
 * signal them: a caller of the non-blocking API that stops reading before a call returned
 * RILL_WANT_* (say, after handling one line) must not sleep in poll() while this is non-zero.
 * After a RILL_WANT_*, polling is right even when bytes are held (part of a line, say). Also
 * tells whether a STARTTLS upgrade would be refused, so it counts one more byte while a
 * RILL_EOL_ANY line reader owes the LF of a line that ended at a CR (see rill_lines_new()):
 * that byte has not arrived, and reading on settles it.
 */
RILL_API size_t rill_pending(const rill_stream *s);

/**
 * After RILL_WANT_READ/RILL_WANT_WRITE, the descriptor to poll and the events (POLLIN, POLLOUT)
 * that make progress possible; the direction may differ from the call's (a read can need
 * POLLOUT). Before any WANT, reports POLLIN.
 *
 * Errors: RILL_E_INVALID (NULL arguments), RILL_E_UNSUPPORTED when the chain has no descriptor.
 */
RILL_API RILL_NODISCARD rill_status rill_poll_info(rill_stream *s, int *fd, short *events);

/* ---------------------------------------------------------------------------------------------
 * Timeouts
 *
 * Example:
 *     if (rill_set_timeouts(s, 5000, 5000) != RILL_OK)   // 5 s for each read and write
 *         return 1;
 *     if (rill_read_line(lines, &line, &len) == RILL_E_TIMEOUT)
 *         puts("quiet peer");                             // the stream stays usable
 */

/** Timeout value meaning "wait as long as it takes" (blocking mode, the default). */
#define RILL_TIMEOUT_NONE (-1)

/**
 * Set the read and write timeouts of @p s and of every layer below it, in milliseconds:
 * RILL_TIMEOUT_NONE (-1) blocks without limit (default), 0 makes calls non-blocking (they return
 * RILL_WANT_READ / RILL_WANT_WRITE), a positive value is a deadline for each call measured on
 * the monotonic clock from the call's start; when it passes the call returns RILL_E_TIMEOUT and
 * the stream stays usable. Decorators inherit the timeouts of the stream they wrap.
 *
 * Errors: RILL_E_INVALID for NULL or values below -1.
 */
RILL_API RILL_NODISCARD rill_status rill_set_timeouts(rill_stream *s, int read_ms, int write_ms);

/** Current timeouts of @p s (either pointer may be NULL). */
RILL_API void rill_get_timeouts(const rill_stream *s, int *read_ms, int *write_ms);

/* ---------------------------------------------------------------------------------------------
 * Introspection
 *
 * Example:
 *     char chain[512];
 *     rill_describe(s, chain, sizeof chain);
 *     printf("%s\n", chain); // lines(max=8192 eol=lf) > buffered(16384) > tcp(fd=5 ...)
 */

/** Layer kinds, as reported by rill_kind() and looked up by rill_find(). */
#define RILL_LAYER_FD           "fd"
#define RILL_LAYER_TCP          "tcp"
#define RILL_LAYER_UNIX         "unix"
#define RILL_LAYER_BUFFERED     "buffered"
#define RILL_LAYER_LINES        "lines"
#define RILL_LAYER_TLS          "tls"
#define RILL_LAYER_HTTP_CONNECT "http-connect"
#define RILL_LAYER_SOCKS5       "socks5"

/**
 * Write a description of the chain into @p buf (always NUL-terminated when len > 0), e.g.
 * "lines(max=8192 eol=lf) > buffered(16384) > tcp(fd=5 127.0.0.1:40112 > 127.0.0.1:8443)".
 * Returns the length the full description has (like snprintf), so a result >= len means it was
 * truncated. @p buf may be NULL when @p len is 0.
 */
RILL_API size_t rill_describe(const rill_stream *s, char *buf, size_t len);

/** The layer of kind @p kind (e.g. RILL_LAYER_TCP) in the chain starting at @p s, or NULL. */
RILL_API rill_stream *rill_find(rill_stream *s, const char *kind);

/** Kind name of the top layer of @p s ("tcp", "buffered", ...); "" for NULL. */
RILL_API const char *rill_kind(const rill_stream *s);

/**
 * The descriptor at the bottom of the chain (for poll or socket options), or -1 if none.
 * Ownership stays with the stream: do not close it, and do not change its file status flags.
 * A socket made by a connect (rill_connect(), rill_tcp_connect_addr(), the connect op) keeps
 * the O_NONBLOCK flag of its connect until the stream's first call that may block clears it;
 * the stream's own calls never depend on that flag.
 */
RILL_API int rill_fd(rill_stream *s);

/* ---------------------------------------------------------------------------------------------
 * Transports
 *
 * Example:
 *     rill_connect_opts o;
 *     rill_connect_opts_init(&o);
 *     o.timeout_ms = 2000;
 *     rill_stream *s;
 *     rill_error err;
 *     if (rill_tcp_connect_addr("127.0.0.1", 8080, &o, &s, &err) != RILL_OK) {
 *         fprintf(stderr, "%s\n", err.msg);
 *         return 1;
 *     }
 */

/** Flag for constructors of decorators: rill_close() leaves the wrapped stream open. */
#define RILL_BORROW 0x1u
/** Flag for rill_fd_new(): rill_close() closes the descriptors (default: leave them open). */
#define RILL_FD_OWN 0x2u

/**
 * Wrap existing descriptors as a stream: reads come from @p read_fd, writes go to @p write_fd
 * (the same fd for a socket; 0 and 1 for a stdio pair; -1 for a one-way stream). Sockets are
 * used with MSG_DONTWAIT/MSG_NOSIGNAL; other descriptors (pipes, terminals, files) are polled
 * before I/O when a timeout is set, writes are then limited to PIPE_BUF bytes, and SIGPIPE from
 * writing to a closed pipe is suppressed for the calling thread only. The descriptors' file
 * status flags are never changed.
 *
 * Limits of poll-then-I/O on descriptors in blocking mode: a terminal may report writable with
 * less than PIPE_BUF bytes of room, and another reader of a shared pipe may take the bytes poll
 * announced; the write or read then blocks past the timeout. Where hard deadlines matter on such
 * descriptors, set O_NONBLOCK on them yourself: rill then never blocks on them.
 *
 * Ownership: with RILL_FD_OWN the stream closes the descriptors on rill_close(); otherwise the
 * caller keeps them. *out is the new stream on RILL_OK and untouched on error.
 * Errors: RILL_E_INVALID (both fds -1, fd not open, NULL out), RILL_E_NOMEM. @p err may be NULL.
 */
RILL_API RILL_NODISCARD rill_status rill_fd_new(int read_fd, int write_fd, unsigned flags,
                                                rill_stream **out, rill_error *err);

/*
 * Option structs (rill_connect_opts, rill_ctx_opts, rill_listen_opts) are allocated by the caller
 * and grow at their end in later versions. Their first member, size, is set by their _init
 * function to the size the program was compiled with (tagged so that an uninitialised struct is
 * told apart); the library reads only that many bytes and gives the fields the program does not
 * know their defaults. So: always call the _init function, then set fields; never copy a size
 * from elsewhere. A struct from a newer header is accepted if the fields this library does not
 * know are zero (their defaults), else refused with RILL_E_INVALID ("... needs a newer rill").
 * Structs the library fills (rill_tls_info, rill_ctx_stats) keep a fixed size for a soname and
 * grow into their reserved space; array elements (rill_addr, rill_resolve_result) and rill_error
 * never change. See docs/abi.md.
 */

/**
 * Options for connecting and for accepted streams. Initialise with rill_connect_opts_init().
 * A bad size field makes the functions taking it fail with RILL_E_INVALID
 * ("tcp: rill_connect_opts not initialised with rill_connect_opts_init() (size field 0x0)").
 */
typedef struct rill_connect_opts {
    uint32_t size; /**< set by rill_connect_opts_init(); do not change */
    /** Connect deadline in ms; default 30000; RILL_TIMEOUT_NONE for none. 0 means no waiting:
     *  rill_tcp_connect_addr() and rill_unix_connect() then succeed only when the connection
     *  is made within the call (a Unix socket; often loopback), else give RILL_E_TIMEOUT;
     *  rill_connect() and rill_connect_start() refuse 0 with RILL_E_INVALID (use
     *  rill_connect_start() for a connect that does not block). */
    int timeout_ms;
    int read_timeout_ms;  /**< read timeout of the new stream; default RILL_TIMEOUT_NONE */
    int write_timeout_ms; /**< write timeout of the new stream; default RILL_TIMEOUT_NONE */
    int nodelay;          /**< TCP_NODELAY; default 1 */
    int keepalive_idle_s; /**< TCP keepalive after this many idle seconds; default 0 (off) */
    /* rill_connect() only: */
    int family;           /**< 0: the context's choice, 4: IPv4 only, 6: IPv6 only */
    int attempt_delay_ms; /**< Happy Eyeballs: start the next address after this long;
                               default 250, at least 10; negative: one address at a time, no
                               racing */
    int max_in_flight;    /**< connect attempts in flight at once; default 4 (>= 1) */
    /** Trace callback (resolving, resolved, each attempt, failures, connected); may be NULL.
     *  Called on the connecting thread; @p ev and its strings live only during the call. */
    void (*on_event)(void *arg, const struct rill_connect_event *ev);
    void *on_event_arg; /**< passed to on_event */
    /** rill_connect(): when set, the stream is wrapped with rill_tls_client() and the handshake
     *  runs inside the connect deadline, so *out is a verified "tls > tcp" stream. With
     *  rill_listen(): accepted streams are wrapped with rill_tls_server() (the handshake then
     *  runs on their first I/O or rill_tls_handshake(), so a slow client never stalls accept).
     *  The config is referenced, not copied; default NULL (plain TCP). */
    rill_tls_config *tls;
    /** rill_connect() with tls: the name sent as SNI and verified; default NULL = the host. */
    const char *tls_servername;
    unsigned tls_flags; /**< flags for rill_tls_client()/rill_tls_server(); default 0 */
    /** rill_connect(): when the A answer comes first, how long to wait for the AAAA answer
     *  before connecting with IPv4 (RFC 8305 Resolution Delay); default 50; 0: go at once. */
    int resolution_delay_ms;
    /** rill_connect(): reach the host through this proxy, a URL as rill_proxy_parse() reads it
     *  ("http://[user:pass@]proxy:3128", https://, socks5://, socks5h://); copied. The race
     *  and its DNS are the proxy's (with socks5:// the host is first resolved by rill and the
     *  proxy given an address); then TLS to an https:// proxy, the CONNECT or SOCKS5
     *  handshake, then opts->tls to the host over the tunnel, all within timeout_ms. The stream
     *  is "tls > http-connect > [tls >] tcp" or "socks5 > tcp". Default NULL: no proxy. */
    const char *proxy;
    /** rill_connect(): with proxy NULL, take the proxy from the environment as
     *  rill_proxy_from_env() does (https_proxy first when opts->tls is set); default 0 */
    int proxy_from_env;
    /** Credentials for the proxy, replacing those of the URL; copied; default NULL */
    const char *proxy_user;
    const char *proxy_password; /**< with proxy_user */
    /** Trust and settings for TLS to an https:// proxy, verified with the proxy's own name;
     *  referenced; default NULL: a config with the defaults (system trust store) */
    rill_tls_config *proxy_tls;
    /** Hosts reached directly, in rill_proxy_bypass() form; copied. With proxy_from_env, the
     *  environment's no_proxy applies as well. Default NULL */
    const char *no_proxy;
    /** http(s) proxies: extra CONNECT header lines "Name: value", NULL-terminated; copied;
     *  default NULL */
    const char *const *proxy_headers;
} rill_connect_opts;

/** Fill @p opts with the defaults listed in rill_connect_opts. */
RILL_API void rill_connect_opts_init(rill_connect_opts *opts);

/**
 * Connect over TCP to a numeric address ("127.0.0.1", "::1" or "[::1]") and @p port, within
 * opts->timeout_ms. @p opts may be NULL for defaults. No name resolution is done here.
 *
 * Ownership: *out receives a new stream on RILL_OK, caller closes with rill_close().
 * Errors: RILL_E_INVALID (not a numeric address, port 0, NULL out), RILL_E_REFUSED,
 * RILL_E_TIMEOUT, RILL_E_CONNECT (unreachable, ...), RILL_E_IO (socket creation: EMFILE, ...),
 * RILL_E_NOMEM; @p err (may be NULL) receives the message, e.g.
 * "tcp: connect to 127.0.0.1:9 failed: connection refused".
 */
RILL_API RILL_NODISCARD rill_status rill_tcp_connect_addr(const char *addr, uint16_t port,
                                                          const rill_connect_opts *opts,
                                                          rill_stream **out, rill_error *err);

/**
 * Connect to a Unix-domain stream socket at @p path; a path starting with '@' names a Linux
 * abstract socket. timeout and stream timeouts from @p opts (may be NULL).
 * Errors: RILL_E_INVALID (empty or too long path), RILL_E_REFUSED (nobody listening),
 * RILL_E_CONNECT (no such file), RILL_E_TIMEOUT, RILL_E_IO, RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_unix_connect(const char *path,
                                                      const rill_connect_opts *opts,
                                                      rill_stream **out, rill_error *err);

/* ---------------------------------------------------------------------------------------------
 * Context: the resolver (c-ares), its caches and defaults, shared by threads
 * Page: rill_ctx_new
 *
 * Example:
 *     rill_ctx_opts o;
 *     rill_ctx_opts_init(&o);
 *     o.dns_servers = "127.0.0.1:5353";
 *     rill_ctx *ctx;
 *     rill_error err;
 *     if (rill_ctx_new(&o, &ctx, &err) != RILL_OK)
 *         errx(1, "%s", err.msg);
 *     // share ctx between threads; rill_ctx_free(ctx) at the end
 */

/** Shared state for resolving and connecting: c-ares channel, DNS cache, defaults. Opaque. */
typedef struct rill_ctx rill_ctx;

/** Options for rill_ctx_new(). Initialise with rill_ctx_opts_init(). */
typedef struct rill_ctx_opts {
    uint32_t size; /**< set by rill_ctx_opts_init(); do not change */
    /** DNS servers as "127.0.0.1:5353,[::1]:5353" (port optional); NULL: /etc/resolv.conf. */
    const char *dns_servers;
    /** NULL-terminated list of static answers in curl's --resolve form "HOST:PORT:ADDR[,ADDR]"
     *  (IPv6 addresses in brackets; PORT "*" for any port). Copied by rill_ctx_new(). They
     *  take precedence over everything, localhost included. */
    const char *const *overrides;
    int family;           /**< 0: IPv4 and IPv6 (default), 4: IPv4 only, 6: IPv6 only */
    int cache_max_ttl_s;  /**< cap on how long an answer is cached (its TTL, capped); default 300;
                               0 disables the cache */
    int negative_ttl_s;   /**< how long "no such name" is cached; default 5 */
    int query_timeout_ms; /**< first retry interval handed to c-ares; default 2000 */
    int query_tries;      /**< tries per server handed to c-ares; default 3 */
    int max_queries_in_flight; /**< rill_resolve_many() window, in names (two queries each); default
                                  64 (1 .. 4096) */
    int tls_session_cache_max; /**< TLS client sessions kept for resumption by rill_connect()
                                    (keyed by host, port and TLS config); default 256; 0: none */
    int dns_cache_max;         /**< names (per family asked) the DNS cache keeps at most, least
                                    recently used out first; default 1000; 0 disables the cache.
                                    Lookups in flight count too and may take the cache over the
                                    limit until they end. See docs/guide.md for the bytes */
} rill_ctx_opts;

/** Fill @p opts with the defaults listed in rill_ctx_opts. */
RILL_API void rill_ctx_opts_init(rill_ctx_opts *opts);

/**
 * Create a context. /etc/hosts is honoured as c-ares does (before DNS); localhost never asks
 * either (see rill_resolve()).
 * Ownership: caller frees *out with rill_ctx_free(); @p opts is not kept.
 * Errors: RILL_E_INVALID (bad server list or override, NULL out), RILL_E_DNS (c-ares could not
 * start: no resolv.conf and no servers), RILL_E_NOMEM.
 * Thread-safety: a context may be used from several threads at once (an internal lock guards
 * the channel and the cache; threads waiting for the same name share one query).
 */
RILL_API RILL_NODISCARD rill_status rill_ctx_new(const rill_ctx_opts *opts, rill_ctx **out,
                                                 rill_error *err);

/**
 * Free a context; lookups still outstanding on it are cancelled. No thread may be using it.
 * NULL is accepted. Streams made with it are not affected (a TLS stream keeps the session cache
 * it uses alive). Connect ops started on it keep it alive until the last of them is freed, so
 * they may be freed after it (their lookups go on until then).
 */
RILL_API void rill_ctx_free(rill_ctx *ctx);

/* ---------------------------------------------------------------------------------------------
 * Resolving names
 *
 * Example:
 *     rill_addr *a;
 *     size_t n;
 *     if (rill_resolve(ctx, "example.test", 443, 5000, &a, &n, &err) == RILL_OK) {
 *         for (size_t i = 0; i < n; i++)
 *             puts(a[i].text);
 *         rill_addrs_free(a);
 *     }
 */

/** One resolved address. */
typedef struct rill_addr {
    int family;           /**< 4 or 6 */
    unsigned sa_len;      /**< bytes used in sa */
    unsigned char sa[28]; /**< the struct sockaddr_in / sockaddr_in6, port included */
    char text[56];        /**< "127.0.0.1:8443" or "[::1]:8443" */
} rill_addr;

/**
 * Resolve @p host (a name, or a numeric address, which never touches DNS) for @p port, within
 * @p timeout_ms (RILL_TIMEOUT_NONE: no limit; 0: only what is known without asking, from the
 * cache, an override or the name itself, else RILL_E_TIMEOUT at once). A and AAAA are asked in
 * one query that waits for both (rill_connect() asks them apart); answers are
 * cached per the record TTLs (capped) and concurrent lookups of one name share one query. The
 * list is ordered for connecting: families interleaved, starting with the family of the first
 * address the sorted answer gives. "localhost" and names ending in ".localhost" (any case, a
 * trailing dot allowed) give ::1 then 127.0.0.1 without DNS or /etc/hosts (RFC 6761), unless
 * an override of @p ctx names them; @p ctx may be NULL for them and for numeric hosts.
 *
 * Ownership: *addrs is an array of *count entries; free it with rill_addrs_free().
 * Errors: RILL_E_INVALID (empty name, over 253 bytes, embedded NUL/space/control bytes, port 0),
 * RILL_E_DNS (no such name, no address of the wanted family, server failure; the message names
 * the host), RILL_E_TIMEOUT, RILL_E_NOMEM.
 * Thread-safety: safe; threads may resolve on one shared context at once.
 */
RILL_API RILL_NODISCARD rill_status rill_resolve(rill_ctx *ctx, const char *host, uint16_t port,
                                                 int timeout_ms, rill_addr **addrs, size_t *count,
                                                 rill_error *err);

/** Free an array returned by rill_resolve(). NULL is accepted. */
RILL_API void rill_addrs_free(rill_addr *addrs);

/** The outcome of one name in rill_resolve_many(). */
typedef struct rill_resolve_result {
    const char *host;              /**< the name, as given (not copied) */
    rill_status status;            /**< RILL_OK, RILL_E_DNS, RILL_E_TIMEOUT, RILL_E_INVALID, ... */
    rill_addr *addrs;              /**< on RILL_OK: the addresses, as rill_resolve() orders them */
    size_t count;                  /**< number of addrs */
    char message[RILL_ERRMSG_MAX]; /**< on error: what happened, naming the host */
} rill_resolve_result;

/**
 * Resolve @p n names concurrently for @p port, at most opts.max_queries_in_flight of
 * rill_ctx_opts at a time (so a large batch does not flood the server into drops and retry
 * timeouts), all within one deadline @p timeout_ms (RILL_TIMEOUT_NONE: no limit; 0: as in
 * rill_resolve(), only what is known without asking: the call then returns RILL_E_TIMEOUT and
 * the names that would need DNS have status RILL_E_TIMEOUT). Cache, shared queries, numeric
 * hosts and overrides behave as in rill_resolve(). Fills @p results[0..n-1] (caller-allocated).
 *
 * Returns RILL_OK when every name has an outcome (look at each result's status), RILL_E_TIMEOUT
 * when the deadline passed first (the names left have status RILL_E_TIMEOUT), RILL_E_INVALID for
 * NULL arguments. Ownership: free the addresses with rill_resolve_results_free().
 * Thread-safety: as rill_resolve().
 */
RILL_API RILL_NODISCARD rill_status rill_resolve_many(rill_ctx *ctx, const char *const *hosts,
                                                      size_t n, uint16_t port, int timeout_ms,
                                                      rill_resolve_result *results);

/** Free the address arrays of @p n results (the array itself stays the caller's). */
RILL_API void rill_resolve_results_free(rill_resolve_result *results, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Connecting by name
 *
 * Example:
 *     rill_connect_opts o;
 *     rill_connect_opts_init(&o);
 *     o.timeout_ms = 5000;  // DNS, every attempt and TLS together
 *     o.tls = cfg;          // NULL for plain TCP
 *     rill_stream *s;
 *     if (rill_connect(ctx, "example.test", 443, &o, &s, &err) != RILL_OK)
 *         errx(1, "%s", err.msg);
 */

/** What a connect trace event reports. */
typedef enum rill_connect_event_type {
    RILL_EV_RESOLVING = 1,   /**< host: the name being resolved */
    RILL_EV_RESOLVED,        /**< count: addresses known when the first attempt starts */
    RILL_EV_ATTEMPT,         /**< addr: a connect attempt starts */
    RILL_EV_ATTEMPT_FAILED,  /**< addr, status, message: an attempt failed */
    RILL_EV_CONNECTED,       /**< addr: the winner */
    RILL_EV_ANSWER,          /**< family, count (status, message on failure): one family's
                                  answer arrived (from DNS, the cache, /etc/hosts or an override) */
    RILL_EV_TLS_HANDSHAKE,   /**< addr: the TLS handshake starts on the winner */
    RILL_EV_TLS_DONE,        /**< addr (status, message on failure): the handshake ended */
    RILL_EV_PROXY_TLS,       /**< host, addr: the TLS handshake with an https:// proxy starts */
    RILL_EV_PROXY_TLS_DONE,  /**< host, addr (status, message on failure): it ended */
    RILL_EV_PROXY_HANDSHAKE, /**< host: the target; addr: the proxy; message: "CONNECT" or
                                  "SOCKS5": the proxy is asked for the tunnel */
    RILL_EV_PROXY_DONE       /**< as PROXY_HANDSHAKE (status, message on failure): the tunnel
                                  is open, or the proxy refused */
} rill_connect_event_type;

/** A connect trace event (see rill_connect_opts.on_event). */
typedef struct rill_connect_event {
    rill_connect_event_type type;
    const char *host;    /**< always set */
    const char *addr;    /**< ATTEMPT, ATTEMPT_FAILED, CONNECTED: "127.0.0.1:8443" */
    size_t count;        /**< RESOLVED: number of addresses */
    rill_status status;  /**< ATTEMPT_FAILED */
    const char *message; /**< ATTEMPT_FAILED, failed ANSWER or TLS_DONE: the reason */
    int64_t elapsed_ms;  /**< since rill_connect() or rill_connect_start() started */
    int family;          /**< ANSWER: 4 (A) or 6 (AAAA); ATTEMPT...: the address's family */
} rill_connect_event;

/**
 * Resolve @p host and connect to @p port over TCP (and TLS with opts->tls), per RFC 8305 (Happy
 * Eyeballs v2): A and AAAA are asked as separate queries; connecting starts as soon as the AAAA
 * answer arrives, or opts->resolution_delay_ms after an A answer that came first; attempts
 * alternate families (IPv6 first), the next starting after opts->attempt_delay_ms or at once
 * when one fails, earlier ones kept running; answers that come later join the race; the first
 * to connect wins and the others are closed at once. A family whose query fails or never
 * answers does not fail or slow a connect the other family can make. One deadline,
 * opts->timeout_ms, covers resolution, all attempts and the TLS handshake (0 is refused: there
 * would be no time; use rill_connect_start() for a connect that does not block). @p ctx may be
 * NULL for numeric hosts and localhost (see rill_resolve()). This is a loop over
 * rill_connect_start() and rill_connect_step(): the same machine an event loop drives.
 *
 * Ownership: *out receives a new "tcp" stream ("tls > tcp" with opts->tls; through a proxy
 * "[tls >] http-connect > [tls >] tcp" or "[tls >] socks5 > tcp") on RILL_OK.
 * Errors: RILL_E_INVALID (arguments, timeout_ms 0); RILL_E_DNS when no address came of any
 * family ("resolve: example.test: no such name (NXDOMAIN)"); RILL_E_REFUSED / RILL_E_CONNECT
 * when every address failed, naming each and, when a lookup failed, what each family's lookup
 * did: "connect: example.test:8443: 127.0.0.1: connection refused; ::1: connection refused";
 * RILL_E_TIMEOUT naming the phase ("timed out after 1000 ms resolving (A: no answer, AAAA: no
 * answer)"); TLS errors as rill_tls_handshake(); RILL_E_IO (EMFILE, ...). Through a proxy
 * (opts->proxy): the race's errors prefixed with the proxy ("proxy http://p.test:3128: connect:
 * ..."), RILL_E_PROXY and RILL_E_PROTOCOL from its handshake (see rill_tunnel_handshake()),
 * RILL_E_INVALID for a proxy URL that does not parse; the message names the proxy.
 * Thread-safety: safe on a shared context; on_event runs on the calling thread.
 */
RILL_API RILL_NODISCARD rill_status rill_connect(rill_ctx *ctx, const char *host, uint16_t port,
                                                 const rill_connect_opts *opts, rill_stream **out,
                                                 rill_error *err);

/* ---------------------------------------------------------------------------------------------
 * Connecting from an event loop
 */

/**
 * A connect in progress that the caller's event loop drives (rill_connect_start()). Opaque.
 * Used by one thread at a time; different ops may run on one shared context from any threads.
 */
typedef struct rill_connect_op rill_connect_op;

/**
 * Start connecting to @p host and @p port without blocking: the same connect as rill_connect()
 * (DNS for A and AAAA as separate queries, the Happy Eyeballs race, the TLS handshake when
 * opts->tls is set, one deadline opts->timeout_ms over all of it) as steps that the caller runs
 * when rill_connect_poll_info() says so. No call of the op blocks: not on DNS, not on connect,
 * not on the handshake. A name in the context's cache, an override, an IP literal or
 * "localhost" start connecting within this call (the socket is created and connect(2) issued).
 *
 * The loop:
 *     rill_connect_start(ctx, host, port, &opts, &op, &err);
 *     for (;;) {
 *         rill_connect_poll_info(op, &fd, &events, &timeout_ms);   // wait for fd or timeout
 *         st = rill_connect_step(op, &s, &err);                    // RILL_WANT_*: again
 *         if (st != RILL_WANT_READ && st != RILL_WANT_WRITE) break;
 *     }
 *     rill_connect_op_free(op);
 *
 * Ops of one context share the DNS work: one op waiting on DNS at a time processes the
 * resolver's sockets for all of them, and wakes the others through their own descriptors (the
 * job passes on when it finishes). So keep stepping an op when rill_connect_poll_info() says
 * so, or free it: an op left unstepped while it waits on DNS delays the lookups of the others.
 *
 * Ownership: *op is the caller's, freed with rill_connect_op_free() (also after it finished;
 * a finished op holds no descriptor any more).
 * @p opts is copied; opts->tls and opts->proxy_tls are referenced until the op is freed; the
 * strings in @p opts (tls_servername, proxy, proxy_user, proxy_password, no_proxy,
 * proxy_headers) and @p host are copied. With proxy_from_env the environment is read here.
 * on_event runs inside rill_connect_step() (and in this call), on the calling thread; it must
 * not call the op's functions or free it.
 * Errors (nothing is left to free then): RILL_E_INVALID (host, port, options; a timeout_ms of
 * 0), RILL_E_NOMEM, RILL_E_IO (no descriptor for the op). Failures of the connect itself come
 * from rill_connect_step().
 * Thread-safety: safe on a shared context.
 */
RILL_API RILL_NODISCARD rill_status rill_connect_start(rill_ctx *ctx, const char *host,
                                                       uint16_t port, const rill_connect_opts *opts,
                                                       rill_connect_op **op, rill_error *err);

/**
 * What the op waits for before the next rill_connect_step(): one descriptor @p fd with poll
 * @p events (POLLIN or POLLOUT), and @p timeout_ms, the time until the op's next timer (the
 * resolution or attempt delay, a DNS retry, the deadline): call rill_connect_step() when the
 * descriptor is ready or the time has passed, whichever comes first. *timeout_ms is never -1
 * while a deadline is set; 0 means step now.
 *
 * The descriptor may change from one step to the next, and is always the op's own, never
 * shared with another op: an attempt's socket while only that one is waited for, an internal
 * epoll descriptor of the op while several are (DNS and the race), the winner's socket during
 * the TLS handshake. Ask again after every step (epoll users: re-register when it changed,
 * and also when the number is the same, since a closed descriptor's number comes back for a
 * new socket; libuv: restart the uv_poll_t). The op owns it: never close it. An epoll
 * descriptor the op no longer reports stays open until rill_connect_op_free() but watches
 * nothing, so it never wakes a loop that still has it registered. Spurious wake-ups are
 * harmless (a step then returns the same WANT). *fd is -1 when only the timer is waited for.
 * Errors: RILL_E_INVALID (NULL arguments, an op whose outcome a step has returned).
 * Thread-safety: as every call on an op, one thread at a time per op.
 */
RILL_API RILL_NODISCARD rill_status rill_connect_poll_info(rill_connect_op *op, int *fd,
                                                           short *events, int *timeout_ms);

/**
 * Make whatever progress is possible without blocking. Returns RILL_WANT_READ or
 * RILL_WANT_WRITE while the connect goes on (then wait as rill_connect_poll_info() says),
 * RILL_OK with *out the connected stream ("tcp", or "tls > tcp" with opts->tls; its timeouts as
 * opts says), or an error with @p err filled as rill_connect() would: RILL_E_DNS,
 * RILL_E_REFUSED / RILL_E_CONNECT naming each address and what each family's lookup did,
 * RILL_E_TIMEOUT naming the phase it was in, TLS errors, RILL_E_IO, RILL_E_NOMEM. After
 * RILL_OK or an error the op is finished: further steps return the same status (RILL_OK with
 * *out NULL) and only rill_connect_op_free() remains.
 * Ownership: *out is the caller's on RILL_OK.
 */
RILL_API RILL_NODISCARD rill_status rill_connect_step(rill_connect_op *op, rill_stream **out,
                                                      rill_error *err);

/**
 * Cancel and free @p op at any point: every descriptor it holds (attempts, the epoll
 * descriptor, a handshake in progress) is closed at once and its interest in DNS answers is
 * dropped (a query that nobody else waits for is cancelled). NULL is accepted.
 */
RILL_API void rill_connect_op_free(rill_connect_op *op);

/**
 * Make a "tcp" transport of a connected TCP socket @p fd that the application connected itself
 * (from its own event loop, say): its endpoints appear in rill_describe() and in messages like
 * those of rill_connect(). The socket may be blocking or not (rill uses MSG_DONTWAIT per call
 * and never changes the descriptor's flags). @p opts (may be NULL) gives nodelay, keepalive and
 * the stream's timeouts.
 * Ownership: on RILL_OK the stream owns @p fd (rill_close() closes it); on error the caller
 * still does. Errors: RILL_E_INVALID (not a connected TCP socket, NULL out), RILL_E_NOMEM,
 * RILL_E_IO (a socket option could not be set). Thread-safety: safe (no shared state).
 */
RILL_API RILL_NODISCARD rill_status rill_tcp_adopt(int fd, const rill_connect_opts *opts,
                                                   rill_stream **out, rill_error *err);

/* ---------------------------------------------------------------------------------------------
 * Context statistics
 *
 * Example:
 *     rill_ctx_stats st;
 *     rill_ctx_get_stats(ctx, &st);
 *     printf("%llu queries, %llu cache hits\n", (unsigned long long)st.queries,
 *            (unsigned long long)st.cache_hits);
 */

/** Counters of a context, for tests and monitoring. */
typedef struct rill_ctx_stats {
    uint64_t queries;         /**< lookups sent to c-ares: rill_connect() asks A and AAAA as
                                   two, rill_resolve() both in one */
    uint64_t cache_hits;      /**< lookups answered from the cache, positive or negative */
    uint64_t merged;          /**< lookups that joined a query already in flight */
    uint64_t cache_entries;   /**< names in the DNS cache now, lookups in flight included
                                   (expired answers are freed before counting) */
    uint64_t cache_evictions; /**< answers dropped before expiry to stay within dns_cache_max */
    uint64_t reserved[11];    /**< zero; counters added later take this space (fixed size) */
} rill_ctx_stats;

/** Read the counters of @p ctx. Thread-safe. */
RILL_API void rill_ctx_get_stats(rill_ctx *ctx, rill_ctx_stats *stats);

/* ---------------------------------------------------------------------------------------------
 * Timers for event loops
 *
 * A non-blocking stream never times out by itself: the loop that drives it keeps its deadlines
 * (a TLS handshake that must finish, a connection idle too long, a shutdown grace period).
 * rill_timers is a small min-heap for that: one deadline per key (any non-NULL pointer of the
 * caller's, typically its per-connection struct), set, moved and removed in O(log n), with the
 * time until the earliest one as the timeout of poll() or epoll_wait(). Deadlines are
 * milliseconds on the clock of rill_now_ms() (or any clock the caller uses consistently).
 * Deadlines that are equal expire in the order they were set. See "Serving from an event loop"
 * in docs/guide.md.
 *
 * Thread-safety: a rill_timers is used by one thread at a time (the loop's); no global state.
 */

/** A set of deadlines keyed by caller pointers. Opaque. */
typedef struct rill_timers rill_timers;

/**
 * Create an empty timer set.
 * Ownership: free *out with rill_timers_free(). Errors: RILL_E_INVALID (NULL out), RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_timers_new(rill_timers **out);

/** Free the set (the keys are the caller's and are not touched). NULL is accepted. */
RILL_API void rill_timers_free(rill_timers *t);

/**
 * Set the deadline of @p key to @p deadline_ms: adds the key, or moves its deadline (earlier or
 * later) if it has one. The set does not own @p key; remove it before freeing what it points to.
 * Errors: RILL_E_INVALID (NULL t or key), RILL_E_NOMEM (a new key could not be stored; the set
 * is unchanged).
 */
RILL_API RILL_NODISCARD rill_status rill_timers_set(rill_timers *t, void *key, int64_t deadline_ms);

/** Remove the deadline of @p key. Returns 1 if it had one, 0 if not (or NULL arguments). */
RILL_API int rill_timers_remove(rill_timers *t, const void *key);

/** 1 and *deadline_ms (may be NULL) if @p key has a deadline, 0 if not. */
RILL_API int rill_timers_get(const rill_timers *t, const void *key, int64_t *deadline_ms);

/** Number of keys with a deadline (0 for NULL). */
RILL_API size_t rill_timers_count(const rill_timers *t);

/**
 * Milliseconds from @p now_ms until the earliest deadline, as a poll() timeout: -1 when the set
 * is empty (wait without limit), 0 when a deadline has passed, at most INT_MAX.
 */
RILL_API int rill_timers_timeout(const rill_timers *t, int64_t now_ms);

/**
 * Take out one key whose deadline is at or before @p now_ms (the earliest first) and return it;
 * NULL when none is due. Call it in a loop after each wait: `while ((k = rill_timers_expire(t,
 * now)))`. A key may be set again while handling it.
 */
RILL_API void *rill_timers_expire(rill_timers *t, int64_t now_ms);

/** The monotonic clock in milliseconds (CLOCK_MONOTONIC), the clock rill's own deadlines use. */
RILL_API int64_t rill_now_ms(void);

/* ---------------------------------------------------------------------------------------------
 * Listening
 * Page: rill_listen
 *
 * Example:
 *     rill_listener *l;
 *     if (rill_listen("127.0.0.1", 0, NULL, &l, &err) != RILL_OK)
 *         errx(1, "%s", err.msg);
 *     printf("port %u\n", rill_listener_port(l));
 *     rill_stream *c;
 *     while (rill_accept(l, RILL_TIMEOUT_NONE, &c, &err) == RILL_OK)
 *         serve(c);         // rill_close(c) when done
 */

/** Options for rill_listen(). Initialise with rill_listen_opts_init(). */
typedef struct rill_listen_opts {
    uint32_t size; /**< set by rill_listen_opts_init(); do not change */
    int backlog;   /**< listen(2) backlog; default 128 */
    int reuseaddr; /**< SO_REUSEADDR; default 1 */
    int v6only;    /**< IPV6_V6ONLY for IPv6 addresses; default 1 */
    /** nodelay, keepalive, timeouts and tls for accepted streams. It may grow: fields of
     *  rill_listen_opts added later come after it, and the library finds them by stream.size. */
    rill_connect_opts stream;
    /** SO_REUSEPORT (TCP only): several listeners (threads or processes, each with its own
     *  rill_listen()) bind the same address and port, and the kernel spreads new connections
     *  over them. All of them must set it; default 0. Refused for Unix listeners. */
    int reuseport;
} rill_listen_opts;

/** Fill @p opts with the defaults listed in rill_listen_opts. */
RILL_API void rill_listen_opts_init(rill_listen_opts *opts);

/**
 * Listen on TCP @p addr (numeric; NULL means 127.0.0.1) and @p port (0 picks a free port; see
 * rill_listener_port()). The listening socket is non-blocking: rill_accept() with timeout 0
 * never waits, so an event loop polls rill_listener_fd() for POLLIN and accepts until
 * RILL_WANT_READ. Ownership: caller frees *out with rill_listener_free().
 * Errors: RILL_E_INVALID, RILL_E_IO (address in use, also when another listener on the port
 * lacks reuseport; EMFILE, ...), RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_listen(const char *addr, uint16_t port,
                                                const rill_listen_opts *opts, rill_listener **out,
                                                rill_error *err);

/**
 * Listen on a Unix-domain socket at @p path ('@' prefix: Linux abstract name). An existing
 * socket file at @p path is not removed: the call fails with RILL_E_IO (address in use).
 * The file is unlinked by rill_listener_free(). opts->reuseport is refused with
 * RILL_E_UNSUPPORTED ("unix: reuseport is for TCP listeners").
 */
RILL_API RILL_NODISCARD rill_status rill_listen_unix(const char *path, const rill_listen_opts *opts,
                                                     rill_listener **out, rill_error *err);

/**
 * Accept one connection, waiting at most @p timeout_ms (RILL_TIMEOUT_NONE: no limit; 0: return
 * RILL_WANT_READ at once if none is queued). The new stream is a "tcp" or "unix" transport with
 * the options given to rill_listen() ("tls > tcp" with opts.stream.tls; give it read and write
 * timeouts 0 there and its handshake runs in non-blocking steps, see rill_tls_handshake()).
 * A connection the peer aborted while it was queued is skipped. Stop accepting (graceful
 * shutdown) by freeing the listener: connections still queued are then reset.
 * Errors: RILL_E_TIMEOUT, RILL_E_IO (EMFILE, ...), RILL_E_NOMEM, RILL_E_INVALID.
 */
RILL_API RILL_NODISCARD rill_status rill_accept(rill_listener *l, int timeout_ms, rill_stream **out,
                                                rill_error *err);

/** The local port of a TCP listener (0 for Unix listeners or NULL). */
RILL_API uint16_t rill_listener_port(const rill_listener *l);

/** The listening descriptor, for poll(POLLIN) in event loops; owned by the listener. */
RILL_API int rill_listener_fd(const rill_listener *l);

/** Close the listener (and unlink its Unix socket file). Accepted streams stay open. NULL ok. */
RILL_API void rill_listener_free(rill_listener *l);

/* ---------------------------------------------------------------------------------------------
 * Buffered decorator
 *
 * Example:
 *     rill_stream *b;
 *     if (rill_buffered_new(tcp, RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0,
 *                           &b) != RILL_OK)
 *         errx(1, "%s", rill_errmsg(tcp));   // tcp is still the caller's
 *     const void *head;
 *     size_t avail;
 *     rill_status st = rill_peek(b, 4, &head, &avail);
 */

/** Default read and write buffer size of rill_buffered_new(). */
#define RILL_BUFFERED_DEFAULT_SIZE 16384u

/**
 * Wrap @p inner with read-ahead and write-behind buffers of @p read_size and @p write_size bytes
 * (each 1 .. 1 GiB). Buffers are allocated on first use and released when they empty at the end
 * of a burst (the write buffer by a flush, the read buffer when its last byte is taken and the
 * read that filled it did not fill it); rill_shrink() releases any empty one.
 * Reads of at least read_size/2 into an empty buffer and writes that do not fit the buffer go
 * straight to the inner stream, so bulk data is copied at most once. Before a read waits for
 * the inner stream, pending write-behind bytes are flushed (no request/response deadlock).
 *
 * Ownership: on RILL_OK the new stream owns @p inner (unless RILL_BORROW in @p flags); on error
 * the caller still owns @p inner and rill_errmsg(inner) says why.
 * Errors: RILL_E_INVALID (NULL, size 0 or too large), RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_buffered_new(rill_stream *inner, size_t read_size,
                                                      size_t write_size, unsigned flags,
                                                      rill_stream **out);

/**
 * Look at buffered input without consuming it: waits (under the read timeout) until at least
 * @p want bytes are buffered or the stream ends, then sets *data and *avail (which may exceed
 * @p want). @p want must not exceed the read buffer size. At end of stream with fewer bytes,
 * returns RILL_EOF with what there is (*avail may be 0). *data stays valid until the next call
 * on the stream. The top layer of @p s must be a buffered stream.
 * Errors: RILL_E_INVALID (not buffered, want 0 or > read size), I/O errors of the inner stream.
 */
RILL_API RILL_NODISCARD rill_status rill_peek(rill_stream *s, size_t want, const void **data,
                                              size_t *avail);

/**
 * Push @p len bytes back in front of the buffered input; the next read returns them first.
 * Errors: RILL_E_INVALID (not buffered, NULL data), RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_unread(rill_stream *s, const void *data, size_t len);

/**
 * Release memory that idle layers do not need now (empty buffers of buffered and lines layers
 * that they kept, e.g. after a bulk transfer filled them, or the last line a lines layer keeps),
 * down the whole chain. Buffers come back on next use. Returns the number of bytes of buffers
 * released.
 */
RILL_API size_t rill_shrink(rill_stream *s);

/* ---------------------------------------------------------------------------------------------
 * Line decorator
 *
 * Example:
 *     rill_stream *lines;
 *     if (rill_lines_new(tcp, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, 0, &lines) != RILL_OK)
 *         errx(1, "%s", rill_errmsg(tcp));
 *     const char *line;
 *     size_t len;
 *     while (rill_read_line(lines, &line, &len) == RILL_OK)
 *         printf("%.*s\n", (int)len, line);
 *     rill_close(lines);   // closes tcp too
 */

/** How lines end. */
typedef enum rill_eol {
    RILL_EOL_LF = 0,   /**< a line ends at LF; CR is ordinary data */
    RILL_EOL_CRLF = 1, /**< strict: a line ends at CRLF; a bare CR or LF is RILL_E_PROTOCOL */
    RILL_EOL_ANY = 2   /**< LF, CRLF or a lone CR end a line (a CR that ended the data owes its
                          LF: see rill_lines_new()) */
} rill_eol;

/** Default line limit used by tools and examples. */
#define RILL_LINES_DEFAULT_MAX 8192u

/**
 * Wrap @p inner with a line reader whose lines may be at most @p max_line bytes long (without
 * the line ending; 1 .. 64 MiB). Reading raw bytes (rill_read) from the line stream returns what
 * it buffered first; writes pass straight through.
 *
 * RILL_EOL_ANY: a line that ends at a CR which is the last byte received is returned at once
 * (waiting could hang a peer that ends lines with CR alone), and the reader then owes the LF of
 * a possible CRLF: the next byte read through it (line, skip or raw read) is dropped if it is
 * an LF; end of stream cancels the debt. While it is owed, rill_pending() counts it as one byte
 * and describe says "LF owed", so detaching a borrowing reader (rill_close) or starting TLS over
 * the chain is refused with RILL_E_PENDING_DATA instead of handing that LF to the next reader
 * (the TLS handshake). To upgrade anyway, settle it first: with a 0 timeout, rill_read() until
 * rill_pending() is 0 (each call swallows the LF if it came and says RILL_WANT_READ; a byte it
 * returns is plaintext sent before the upgrade); or use RILL_EOL_CRLF for such protocols.
 *
 * Ownership as for rill_buffered_new(). Errors: RILL_E_INVALID (NULL, max_line 0 or too large,
 * bad eol), RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_lines_new(rill_stream *inner, size_t max_line,
                                                   rill_eol eol, unsigned flags, rill_stream **out);

/**
 * Read one line. On RILL_OK, *line points at the line without its ending, NUL-terminated, inside
 * the line reader's buffer, and *len is its length (a line may contain NUL bytes; use *len).
 * The pointer stays valid until the next read on the line stream (rill_read, rill_read_line,
 * rill_read_line_copy, rill_skip_line), rill_shrink() or rill_close(); writes and flushes on
 * the same chain (rill_write, rill_write_fmt, rill_flush), rill_pending() and rill_describe()
 * leave it alone, so a reply can be written while the line is still in use. A last line
 * without ending at end of stream is returned with RILL_OK; the call after it returns RILL_EOF.
 *
 * Errors: RILL_E_LINE_TOO_LONG when no line ending comes within max_line bytes (nothing is
 * consumed: the bytes stay readable with rill_read(), or skip them with rill_skip_line());
 * RILL_E_PROTOCOL for a bare CR or LF in RILL_EOL_CRLF mode (likewise nothing consumed);
 * RILL_E_INVALID if @p s is not a line stream; RILL_E_TIMEOUT; errors of the inner stream.
 * In RILL_EOL_ANY mode a line ending at the last CR received comes back at once and leaves its
 * LF owed (see rill_lines_new()).
 *
 * In RILL_EOL_LF mode a call is served inline, without a library call, when a whole line is
 * already buffered (a macro in this header maps rill_read_line to that inline path; define
 * RILL_NO_INLINE to call the library every time). The behaviour is the same either way.
 * Thread-safety: as any call on a stream (one thread at a time).
 */
RILL_API RILL_NODISCARD rill_status rill_read_line(rill_stream *s, const char **line, size_t *len);

/*
 * The inline rill_read_line(). A line stream in RILL_EOL_LF mode publishes the bytes it holds
 * after the last line it handed out in a window that the first member of every stream points
 * at (NULL for other streams); the inline path finds the next line in them with memchr() and
 * hands it out without a library call, and calls the library when it finds no whole line
 * (other modes always do). This layout is part of the ABI (docs/abi.md); it is not for
 * applications' own use. Define RILL_NO_INLINE before including this header to call the
 * library for every line instead; (rill_read_line)(...) and a pointer to rill_read_line reach
 * the library function, which behaves the same.
 */
typedef struct rill_line_window_ {
    char *pos;   /* the next line starts here; NULL: the window is closed */
    char *end;   /* the end of the bytes the inline path may search */
    size_t room; /* the line limit plus one: an LF further than this from pos is not searched */
} rill_line_window_;

/* Casts that C++ consumers built with -Wold-style-cast accept too (undefined again below). */
#ifdef __cplusplus
#define RILL_CAST_(type, expr) static_cast<type>(expr)
#else
#define RILL_CAST_(type, expr) ((type)(expr))
#endif

/* The next line of an open window @p w, handed out in place: 1, or 0 when none is whole. */
static inline int rill_line_window_take_(rill_line_window_ *w, const char **line, size_t *len)
{
    char *p = w->pos;
    if (!p)
        return 0;
    size_t avail = RILL_CAST_(size_t, w->end - p);
    char *e = RILL_CAST_(char *, memchr(p, '\n', avail < w->room ? avail : w->room));
    if (!e)
        return 0;
    *e = '\0';
    *line = p;
    *len = RILL_CAST_(size_t, e - p);
    w->pos = e + 1;
    return 1;
}

RILL_NODISCARD static inline rill_status rill_read_line_inline_(rill_stream *s, const char **line,
                                                                size_t *len)
{
    rill_line_window_ *w;
    if (s && line && len &&
        (w = *RILL_CAST_(rill_line_window_ *const *, RILL_CAST_(const void *, s))) &&
        rill_line_window_take_(w, line, len))
        return RILL_OK;
    return (rill_read_line)(s, line, len);
}

#undef RILL_CAST_

#if !defined(RILL_NO_INLINE)
#define rill_read_line(s, line, len) rill_read_line_inline_((s), (line), (len))
#endif

/**
 * Read one line into @p buf of @p cap bytes (line and NUL must fit: cap >= max_line + 1 always
 * does); otherwise like rill_read_line(). *len receives the line length. When the line does
 * not fit, returns RILL_E_INVALID, consumes nothing and sets *len to the line's length so the
 * caller can retry with a larger buffer. @p buf and @p len must not be NULL.
 */
RILL_API RILL_NODISCARD rill_status rill_read_line_copy(rill_stream *s, char *buf, size_t cap,
                                                        size_t *len);

/** One line handed out by rill_read_lines(): NUL-terminated in place; len excludes the ending. */
typedef struct rill_line {
    const char *data;
    size_t len;
} rill_line;

/**
 * Read up to @p max lines at once, zero-copy: waits (under the read timeout) for the first
 * whole line exactly as rill_read_line() does, then hands out every further whole line already
 * buffered, up to @p max, without I/O. Each line is NUL-terminated in place and valid until the
 * next call on @p s (any call that reads, rill_shrink() or rill_close()). The limit and the
 * ending mode apply to every line as in rill_read_line(), and no byte is lost: a later line
 * that would fail (too long, bare CR or LF in RILL_EOL_CRLF mode) ends the batch before it and
 * is reported by the next call, with nothing consumed. *count receives the number of lines
 * (0 unless RILL_OK).
 *
 * Ownership: the lines point into the layer's buffer; the caller owns @p lines.
 * Errors: as rill_read_line() (RILL_EOF, RILL_WANT_*, RILL_E_TIMEOUT, RILL_E_LINE_TOO_LONG,
 * RILL_E_PROTOCOL, errors of the inner stream); RILL_E_INVALID for a NULL @p lines or
 * @p count, @p max 0, or a stream that is not a line stream.
 * Thread-safety: as any call on a stream (one thread at a time).
 */
RILL_API RILL_NODISCARD rill_status rill_read_lines(rill_stream *s, rill_line *lines, size_t max,
                                                    size_t *count);

/** Lines a rill_line_iter takes per rill_read_lines() call. */
#define RILL_LINE_ITER_BATCH 64

/**
 * A line iterator in the caller's memory: rill_line_iter_next() hands out the lines of one
 * rill_read_lines() batch from an inline function (no library call per line), and calls the
 * library only when the batch is used up. Set it up with rill_line_iter_init(). While it holds
 * lines of a batch (rill_line_iter_held() > 0) those lines are already consumed from the
 * stream: other reads on the stream would skip them, so finish the batch first.
 */
typedef struct rill_line_iter {
    rill_stream *s;
    size_t next;
    size_t count;
    rill_line lines[RILL_LINE_ITER_BATCH];
} rill_line_iter;

/** Start iterating over the lines of line stream @p s. Ownership: @p s stays the caller's. */
static inline void rill_line_iter_init(rill_line_iter *it, rill_stream *s)
{
    it->s = s;
    it->next = it->count = 0;
}

/** Lines of the current batch not yet handed out by rill_line_iter_next(). */
static inline size_t rill_line_iter_held(const rill_line_iter *it)
{
    return it->count - it->next;
}

/**
 * The next batch (rill_line_iter_next() calls it when the batch is used up): its first line in
 * *line and *len. Errors: as rill_read_lines(); RILL_E_INVALID for NULL @p line or @p len.
 * Thread-safety: as any call on the stream.
 */
RILL_API RILL_NODISCARD rill_status rill_line_iter_fill(rill_line_iter *it, const char **line,
                                                        size_t *len);

/**
 * The next line, like rill_read_line() (same statuses, limit and guarantees; a line is valid
 * until the call that reads the next batch), served inline from the current batch.
 */
RILL_NODISCARD static inline rill_status rill_line_iter_next(rill_line_iter *it, const char **line,
                                                             size_t *len)
{
    if (it->next < it->count) {
        const rill_line *l = &it->lines[it->next++];
        *line = l->data;
        *len = l->len;
        return RILL_OK;
    }
    return rill_line_iter_fill(it, line, len);
}

/**
 * Discard input up to and including the next line ending, however long the line is (the way
 * to move past RILL_E_LINE_TOO_LONG or RILL_E_PROTOCOL). *skipped (may be NULL) receives the
 * number of bytes dropped by this call, line ending included; in RILL_EOL_ANY mode the LF of a
 * CRLF whose CR ended the available data is owed (counted by rill_pending() until then) and
 * dropped later, when it arrives, and is not counted in *skipped.
 * Returns RILL_EOF if the stream ends first.
 */
RILL_API RILL_NODISCARD rill_status rill_skip_line(rill_stream *s, size_t *skipped);

/* ---------------------------------------------------------------------------------------------
 * Proxy tunnels
 *
 * A proxy is a layer: "http-connect" (HTTP CONNECT, RFC 9110 section 9.3.6) or "socks5"
 * (RFC 1928, username/password per RFC 1929) over a stream to the proxy, which after its
 * handshake carries the bytes of the target connection. TLS to the target goes on top
 * (rill_tls_client() over the tunnel), TLS to an HTTPS proxy below:
 * "tls > http-connect > tls > tcp". rill_connect() builds these chains from a proxy URL (see
 * rill_connect_opts.proxy); the functions here are for chains built by hand.
 */

/** Options of a tunnel layer. Initialise with rill_tunnel_opts_init(). */
typedef struct rill_tunnel_opts {
    const char *user;     /**< credentials: Basic Proxy-Authorization for http-connect, RFC 1929
                               for socks5 (each at most 255 bytes); NULL: none */
    const char *password; /**< with user; NULL is "" */
    /** http-connect: extra request header lines "Name: value" (no CR/LF), NULL-terminated;
     *  default NULL */
    const char *const *headers;
    /** The proxy's name in describe and messages; default NULL: the peer address of the tcp
     *  transport below, else "proxy" */
    const char *proxy_name;
    /** Most bytes of reply the layer holds while it waits for the end of the proxy's header
     *  block (http-connect); default 16384, 64 .. 1 MiB */
    size_t max_reply;
} rill_tunnel_opts;

/** Fill @p opts with the defaults listed in rill_tunnel_opts. */
RILL_API void rill_tunnel_opts_init(rill_tunnel_opts *opts);

/**
 * Wrap @p inner (a stream to an HTTP proxy) in a layer that asks the proxy with
 * "CONNECT host:port HTTP/1.1" (Host header, Basic Proxy-Authorization with opts->user, the extra
 * headers) for a tunnel to @p host (a name or an IP literal; IPv6 is sent in brackets) and
 * @p port. The handshake runs on the first I/O or in rill_tunnel_handshake(), under the
 * stream's timeouts (0: non-blocking steps that return RILL_WANT_*; rill_poll_info() says what
 * to wait for). Bytes the proxy sends after its header block are the target's and come out of
 * the first reads; rill_pending() counts them (a TLS client over the layer refuses to start
 * while any are held). rill_describe(): "http-connect(example.test:443 via 127.0.0.1:3128)".
 *
 * Ownership as for rill_buffered_new(); @p host and @p opts are copied (@p opts may be NULL).
 * Errors: RILL_E_INVALID (NULL, bad host, port 0, CR/LF or no ':' in a header, credentials too
 * long), RILL_E_NOMEM. Handshake errors: see rill_tunnel_handshake().
 * Thread-safety: as every stream.
 */
RILL_API RILL_NODISCARD rill_status rill_http_connect_new(rill_stream *inner, const char *host,
                                                          uint16_t port,
                                                          const rill_tunnel_opts *opts,
                                                          unsigned flags, rill_stream **out);

/**
 * Wrap @p inner (a stream to a SOCKS5 proxy) in a layer that asks the proxy for a connection to
 * @p host and @p port: an IP literal is sent as an address, a name as a name that the proxy
 * resolves (curl's socks5h; resolve first, e.g. with rill_resolve(), and pass the address for
 * curl's socks5). Offers no authentication, and username/password when opts->user is set.
 * Otherwise as rill_http_connect_new(); describe: "socks5(example.test:443 via 127.0.0.1:1080)".
 */
RILL_API RILL_NODISCARD rill_status rill_socks5_new(rill_stream *inner, const char *host,
                                                    uint16_t port, const rill_tunnel_opts *opts,
                                                    unsigned flags, rill_stream **out);

/**
 * Run the handshake of the topmost tunnel layer of @p s now, under its read timeout (0: one
 * non-blocking step, RILL_WANT_* until done). RILL_OK once the tunnel is open.
 * Errors: RILL_E_PROXY when the proxy refuses, naming the proxy and its answer:
 * "http-connect: proxy 127.0.0.1:3128 answered 403 Forbidden to CONNECT example.test:443",
 * "http-connect: proxy authentication required: ... answered 407 ...",
 * "socks5: proxy 127.0.0.1:1080: connection refused by destination host (reply 5)",
 * "socks5: proxy 127.0.0.1:1080 rejected the username/password"; RILL_E_PROTOCOL for a reply
 * that is not the protocol's, a header block over max_reply ("reply header block longer than
 * 16384 bytes"), or a proxy that closed the connection before its reply was complete;
 * RILL_E_TIMEOUT; errors of the stream below; RILL_E_INVALID without a tunnel layer. A failed
 * handshake repeats its error to every later call.
 */
RILL_API RILL_NODISCARD rill_status rill_tunnel_handshake(rill_stream *s);

/** Proxy kinds of a proxy URL. */
typedef enum rill_proxy_scheme {
    RILL_PROXY_HTTP = 1, /**< http:// : CONNECT over TCP (default port 1080, as curl) */
    RILL_PROXY_HTTPS,    /**< https:// : CONNECT over TLS to the proxy (default port 443) */
    RILL_PROXY_SOCKS5,   /**< socks5:// : rill resolves the target (default port 1080) */
    RILL_PROXY_SOCKS5H   /**< socks5h:// : the proxy resolves the target (default port 1080) */
} rill_proxy_scheme;

/** A parsed proxy URL. Strings are percent-decoded and NUL-terminated. */
typedef struct rill_proxy {
    rill_proxy_scheme scheme;
    char host[256]; /**< name or IP literal (IPv6 without brackets) */
    uint16_t port;
    char user[256];     /**< "" when the URL has none */
    char password[256]; /**< "" when the URL has none */
} rill_proxy;

/**
 * Parse a proxy URL "[scheme://][user[:password]@]host[:port][/]": schemes http, https, socks5,
 * socks5h (any case; none means http, as curl); IPv6 hosts in brackets; %XX escapes in user and
 * password. Errors: RILL_E_INVALID naming the problem ("proxy: unsupported scheme \"ftp\"",
 * "proxy: bad port", ...). @p err may be NULL. Thread-safety: safe.
 */
RILL_API RILL_NODISCARD rill_status rill_proxy_parse(const char *url, rill_proxy *out,
                                                     rill_error *err);

/**
 * Whether @p host and @p port match a no_proxy list @p list (curl's NO_PROXY form): entries
 * separated by commas or spaces; "*" matches everything; a name matches itself and its
 * subdomains (a leading dot is ignored: ".example.test" and "example.test" both match
 * "a.example.test" and "example.test"); "name:port" and "[v6]:port" match that port only; an IP
 * literal or CIDR range ("10.0.0.0/8", "fe80::/10", "::1") matches IP literal hosts in it. Case
 * and a trailing dot are ignored. Returns 1 on a match, 0 otherwise (also for NULL).
 * Thread-safety: safe.
 */
RILL_API int rill_proxy_bypass(const char *list, const char *host, uint16_t port);

/**
 * The proxy the environment gives for a connection to @p host and @p port, as curl reads it:
 * with @p tls non-zero https_proxy then HTTPS_PROXY, then (in any case) all_proxy then
 * ALL_PROXY; none when no_proxy (else NO_PROXY) matches (rill_proxy_bypass()). Sets *found to 1
 * and fills @p out when a proxy applies, *found 0 otherwise.
 * Errors: RILL_E_INVALID when the variable's URL does not parse (the message names the
 * variable). Thread-safety: reads the environment (getenv): not safe against concurrent setenv.
 */
RILL_API RILL_NODISCARD rill_status rill_proxy_from_env(const char *host, uint16_t port, int tls,
                                                        rill_proxy *out, int *found,
                                                        rill_error *err);

/* ---------------------------------------------------------------------------------------------
 * Big-endian integers
 *
 * Example:
 *     uint32_t len;
 *     if (rill_read_u32be(s, &len) == RILL_OK && len <= sizeof buf)
 *         st = rill_read_full(s, buf, len, NULL);
 */

/**
 * Read a big-endian integer of 2, 4 or 8 bytes (rill_read_full under the read timeout).
 * RILL_EOF if the stream ended before the first byte; RILL_E_PROTOCOL if it ended inside the
 * value (the partial bytes are consumed and the message says how many arrived).
 *
 * When the top layer is buffered (with a read size of at least the width), a value is consumed
 * whole or not at all: RILL_WANT_* and
 * RILL_E_TIMEOUT leave the stream as it was, so the call can simply be repeated. On other
 * streams, a wait or timeout that stops the read inside a value returns RILL_E_PROTOCOL (the
 * bytes already read cannot be given back, and a retry would misread the stream).
 */
RILL_API RILL_NODISCARD rill_status rill_read_u16be(rill_stream *s, uint16_t *value);
RILL_API RILL_NODISCARD rill_status rill_read_u32be(rill_stream *s, uint32_t *value);
RILL_API RILL_NODISCARD rill_status rill_read_u64be(rill_stream *s, uint64_t *value);

/**
 * Write a big-endian integer of 2, 4 or 8 bytes (rill_write_all under the write timeout).
 * A wait or timeout that stops the write inside the value returns RILL_E_PROTOCOL with the
 * count in the message (a retry would repeat the bytes already sent); one that stops it before
 * the first byte returns RILL_WANT_* / RILL_E_TIMEOUT as usual.
 */
RILL_API RILL_NODISCARD rill_status rill_write_u16be(rill_stream *s, uint16_t value);
RILL_API RILL_NODISCARD rill_status rill_write_u32be(rill_stream *s, uint32_t value);
RILL_API RILL_NODISCARD rill_status rill_write_u64be(rill_stream *s, uint64_t value);

/* ---------------------------------------------------------------------------------------------
 * TLS (OpenSSL 3): configuration
 *
 * Secure by default: a client verifies the peer's chain against the system trust store, the
 * validity dates, and the host name (DNS subjectAltName with RFC 6125 wildcard rules, or an IP
 * subjectAltName for an IP literal; never the subject CN). TLS 1.2 is the minimum, OpenSSL's
 * security level is at least 2 (RSA/DH >= 2048 bits, no SHA-1 signatures), and a peer that ends
 * the stream without close_notify gives RILL_E_TRUNCATED. Only functions named *insecure* weaken
 * this.
 *
 * A config is built with the setters below, then used by any number of streams, from any
 * number of threads; the first stream that uses it freezes it (setters then fail with
 * RILL_E_INVALID) and the trust store is loaded once, at that moment, for every connection.
 * Setter errors: RILL_E_INVALID (NULL or bad argument, frozen config), RILL_E_NOMEM, and
 * RILL_E_TLS for files or PEM that OpenSSL cannot load; @p err (may be NULL) gets the reason,
 * e.g. "tls: cannot load CA file /x.pem: no such file or directory".
 * Thread-safety: setters are not thread-safe (configure from one thread before sharing);
 * everything else on a config is.
 *
 * Example:
 *     rill_tls_config *cfg;
 *     if (rill_tls_config_new(&cfg, &err) != RILL_OK ||
 *         rill_tls_config_set_ca_file(cfg, "/etc/myapp/ca.pem", &err) != RILL_OK ||
 *         rill_tls_config_set_alpn(cfg, "http/1.1", &err) != RILL_OK)
 *         errx(1, "%s", err.msg);
 */

/** Protocol versions for rill_tls_config_set_versions() (the wire values). */
#define RILL_TLS_1_2 0x0303
#define RILL_TLS_1_3 0x0304

/** Client-certificate policy of a server (rill_tls_config_set_verify_client()). */
typedef enum rill_tls_client_auth {
    RILL_TLS_CLIENT_AUTH_NONE = 0,     /**< do not ask for a client certificate (default) */
    RILL_TLS_CLIENT_AUTH_OPTIONAL = 1, /**< ask; verify one if sent */
    RILL_TLS_CLIENT_AUTH_REQUIRE = 2   /**< ask and require a valid one */
} rill_tls_client_auth;

/** Flag for rill_tls_client() and rill_tls_server(): a peer EOF without close_notify is RILL_EOF
 *  instead of RILL_E_TRUNCATED (for broken peers whose framing protects against truncation). */
#define RILL_TLS_ALLOW_TRUNCATION 0x100u

/**
 * Create a config with the secure defaults (system trust store, TLS 1.2 .. 1.3, security level
 * 2, verification on). If the environment variable SSLKEYLOGFILE names a file, session keys are
 * appended to it (a debugging aid for Wireshark; never set it in production).
 * Ownership: release with rill_tls_config_free(). Errors: RILL_E_NOMEM, RILL_E_TLS.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_new(rill_tls_config **out, rill_error *err);

/**
 * Drop the caller's reference. Streams, listeners and connect options that use the config keep
 * their own references, so it may be freed while they live. NULL is accepted. Thread-safe.
 */
RILL_API void rill_tls_config_free(rill_tls_config *cfg);

/** Trust the CA certificates in PEM file @p path instead of the system store (repeatable). */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_ca_file(rill_tls_config *cfg,
                                                                const char *path, rill_error *err);
/** Trust the CA certificates of an OpenSSL hashed directory (c_rehash) instead of the system
 *  store. */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_ca_path(rill_tls_config *cfg,
                                                                const char *dir, rill_error *err);
/** Trust the CA certificates in @p len bytes of PEM at @p pem (copied) instead of the system
 *  store (repeatable). */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_ca_mem(rill_tls_config *cfg,
                                                               const void *pem, size_t len,
                                                               rill_error *err);
/**
 * Check revocation of every certificate of the peer's chain against the CRLs in PEM file
 * @p path (all of them are loaded). A chain certificate whose issuer has no CRL in the file then
 * fails verification ("unable to get certificate CRL").
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_crl_file(rill_tls_config *cfg,
                                                                 const char *path, rill_error *err);

/** Allowed protocol versions, RILL_TLS_1_2 or RILL_TLS_1_3 each; 0 keeps the default
 *  (1.2 minimum, 1.3 maximum). Older versions cannot be enabled. */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_versions(rill_tls_config *cfg,
                                                                 int min_version, int max_version,
                                                                 rill_error *err);
/** TLS 1.2 cipher list in OpenSSL syntax (default: ECDHE with AES-GCM or ChaCha20-Poly1305). */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_ciphers(rill_tls_config *cfg,
                                                                const char *list, rill_error *err);
/** TLS 1.3 ciphersuites, colon-separated (default: OpenSSL's, all AEAD). */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_ciphersuites(rill_tls_config *cfg,
                                                                     const char *list,
                                                                     rill_error *err);
/**
 * Key-exchange groups offered or accepted, colon-separated, most preferred first, in OpenSSL
 * syntax ("X25519:P-256"; default OpenSSL's). A TLS 1.3 client sends a key share for the first
 * group only; a server that wants another answers with a HelloRetryRequest
 * (rill_tls_info.hello_retry).
 * Errors: RILL_E_INVALID ("tls: no usable group in \"...\"", a NULL or empty list, a config
 * already in use).
 * Thread-safety: as the other setters (before the config is first used).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_groups(rill_tls_config *cfg,
                                                               const char *list, rill_error *err);
/** OpenSSL security level, 2 .. 5 (default 2). Lower levels are refused. */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_security_level(rill_tls_config *cfg,
                                                                       int level, rill_error *err);
/**
 * ALPN protocols as a comma-separated list in preference order, e.g. "h2,http/1.1". A client
 * offers them; a server picks the first of its own list that the client offers, and answers
 * without ALPN when none matches (rill_tls_info.alpn is then ""), or refuses the client under
 * rill_tls_config_set_alpn_policy(RILL_TLS_ALPN_REQUIRE).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_alpn(rill_tls_config *cfg, const char *list,
                                                             rill_error *err);

/**
 * Passphrase for encrypted private keys: @p cb writes at most @p size bytes into @p buf and
 * returns the length, or -1 to give up. Set it before the key is loaded. @p arg is passed back.
 */
typedef int (*rill_tls_passphrase_fn)(char *buf, int size, void *arg);
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_passphrase_cb(rill_tls_config *cfg,
                                                                      rill_tls_passphrase_fn cb,
                                                                      void *arg, rill_error *err);
/**
 * Certificate chain (leaf first, then intermediates) and private key in PEM files: the client
 * certificate for mutual TLS, or a server's (default) certificate; as
 * rill_tls_config_add_cert_file() with name NULL. The key must match the certificate. The
 * chain is sent as the file gives it (never completed from the trust store).
 * Errors: RILL_E_TLS ("tls: cannot load key /k.pem: bad decrypt", "key does not match ...").
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_cert_file(rill_tls_config *cfg,
                                                                  const char *cert_path,
                                                                  const char *key_path,
                                                                  rill_error *err);
/** As rill_tls_config_set_cert_file() from PEM in memory (copied). */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_cert_mem(rill_tls_config *cfg,
                                                                 const void *cert_pem,
                                                                 size_t cert_len,
                                                                 const void *key_pem,
                                                                 size_t key_len, rill_error *err);
/**
 * Server: add a certificate chain and key (PEM files) for the clients whose SNI is @p name: an
 * exact host name ("api.example.com") or a wildcard for one more label ("*.example.com" matches
 * "a.example.com", not "example.com" or "a.b.example.com"); names compare case-insensitively,
 * and an exact entry wins over a wildcard. @p name NULL adds to the default, served to clients
 * without SNI and (under RILL_TLS_SNI_DEFAULT) to names no entry matches;
 * rill_tls_config_set_cert_file() is this call with NULL. Call it again with the same name and a
 * key of another type (an ECDSA and an RSA certificate) to let each client get the one it can
 * verify (its signature_algorithms decide; ECDSA first when it takes both); a key of a type the
 * name already has replaces that certificate. At most 4 key types per name. The files are
 * remembered for rill_tls_config_reload().
 * Errors: RILL_E_INVALID (NULL paths, a name that is no host name or "*." wildcard, a fifth key
 * type, frozen config), RILL_E_TLS ("tls: cannot load certificate /c.pem: no start line",
 * "private key /k.pem does not match the certificate /c.pem", "chain of /c.pem ends in a broken
 * certificate"), RILL_E_NOMEM; a failed call leaves the config as it was.
 * Ownership: @p name and the paths are copied; the files are read now and at each reload.
 * Thread-safety: a setter (configure from one thread before sharing).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_add_cert_file(rill_tls_config *cfg,
                                                                  const char *name,
                                                                  const char *cert_path,
                                                                  const char *key_path,
                                                                  rill_error *err);
/** As rill_tls_config_add_cert_file() from PEM in memory (copied; a reload parses it again). */
RILL_API RILL_NODISCARD rill_status
rill_tls_config_add_cert_mem(rill_tls_config *cfg, const char *name, const void *cert_pem,
                             size_t cert_len, const void *key_pem, size_t key_len, rill_error *err);

/** Server: what a client gets whose SNI matches no certificate entry. */
typedef enum rill_tls_sni_policy {
    RILL_TLS_SNI_DEFAULT = 0, /**< the default certificate (the default policy) */
    RILL_TLS_SNI_REFUSE = 1   /**< an unrecognized_name alert: the handshake fails */
} rill_tls_sni_policy;

/**
 * Server: set the policy for SNI names that match no entry (rill_tls_config_add_cert_file()).
 * A client that sends no SNI gets the default certificate under either policy; with no default
 * it is refused with unrecognized_name too. The server's stream then fails with RILL_E_TLS
 * "handshake failed: refused: no certificate for server name \"x.test\" ...".
 * Errors: RILL_E_INVALID (unknown policy, frozen config).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_sni_policy(rill_tls_config *cfg,
                                                                   rill_tls_sni_policy policy,
                                                                   rill_error *err);

/**
 * Read every certificate, key, CA and CRL file of @p cfg again and swap the result in for new
 * handshakes (connections made before keep what they started with); memory PEM is parsed again.
 * All or nothing: when a file is missing, does not parse (a PEM still being written), holds a
 * key that does not match its certificate, or holds an expired certificate, the certificates
 * and trust in use stay, and the call fails with RILL_E_TLS and the reason, e.g. "tls: reload
 * failed, keeping the certificates in use: certificate /c.pem expired on 2001-01-01T00:00:00Z".
 * Works on a config in use (that is its point); an encrypted key asks the passphrase callback
 * again. A CA directory is read by OpenSSL as needed and needs no reload.
 * Errors: RILL_E_INVALID (NULL), RILL_E_TLS, RILL_E_NOMEM.
 * Thread-safety: thread-safe, also against handshakes running on the config; reloads of one
 * config run one at a time.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_reload(rill_tls_config *cfg, rill_error *err);

/**
 * Outcome of an automatic reload (rill_tls_config_set_reload_check()): @p outcome->code is
 * RILL_OK with a message naming what was read, or the error of rill_tls_config_reload(). Runs
 * in the thread whose handshake noticed the change; it must not call rill_tls_config_reload().
 */
typedef void (*rill_tls_reload_fn)(void *arg, const rill_error *outcome);

/**
 * Check-on-handshake reloading: when a stream starts with @p cfg (rill_tls_server(),
 * rill_tls_client(), an accept with opts.tls) and at least @p interval_ms have passed since the
 * last check, compare each file's device, inode, size, mtime and ctime with what was read, and
 * reload as rill_tls_config_reload() when one changed (a failed reload keeps the last good
 * set and is tried again when a file changes again). @p cb (may be NULL) hears each outcome.
 * 0 turns it off (the default). A check that another thread is running is not waited for.
 * Errors: RILL_E_INVALID (negative interval, frozen config).
 * Thread-safety: a setter; @p cb runs in whichever thread starts the stream that checks, one
 * call at a time.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_reload_check(rill_tls_config *cfg,
                                                                     int interval_ms,
                                                                     rill_tls_reload_fn cb,
                                                                     void *arg, rill_error *err);

/** Length of one session ticket key for rill_tls_config_set_ticket_keys(): a 16-byte name,
 *  a 32-byte AES-256 key and a 32-byte HMAC-SHA256 key. */
#define RILL_TLS_TICKET_KEY_LEN 80

/**
 * Server: session tickets (stateless resumption, TLS 1.2 and 1.3) are on by default, sealed with
 * a random key that rill replaces every @p seconds (default 3600); a ticket sealed with the key
 * before stays accepted for one more period (and gets a fresh ticket), so a session resumes for
 * up to two periods (the lifetime sent with it). 0 turns tickets off: resumption then uses the
 * server's session-ID cache (1024 sessions per config, the oldest dropped first, TLS 1.2 and
 * 1.3). At most 604800 (7 days, RFC 8446).
 * Errors: RILL_E_INVALID (over 7 days, frozen config).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_ticket_lifetime(rill_tls_config *cfg,
                                                                        unsigned seconds,
                                                                        rill_error *err);

/**
 * Server: use @p len / RILL_TLS_TICKET_KEY_LEN (1 to 4) ticket keys from the application
 * instead of rill's own: the first seals new tickets, all of them open tickets (one opened with
 * another than the first is renewed). Processes or configs given the same keys resume each
 * other's sessions; to rotate, call again with the new key first and the old ones after; a
 * ticket sealed with a key no longer given means a full handshake. The keys are copied; make
 * them with a CSPRNG and keep them secret (anyone with them can decrypt sessions).
 * Errors: RILL_E_INVALID (NULL, a length that is not 1 to 4 keys, tickets turned off).
 * Thread-safety: thread-safe, also on a config in use.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_ticket_keys(rill_tls_config *cfg,
                                                                    const void *keys, size_t len,
                                                                    rill_error *err);

/** Server: what happens when a client offers ALPN protocols and none is in the server's list. */
typedef enum rill_tls_alpn_policy {
    RILL_TLS_ALPN_OPTIONAL = 0, /**< go on without ALPN (rill_tls_info.alpn ""): the default */
    RILL_TLS_ALPN_REQUIRE = 1   /**< refuse with a no_application_protocol alert (RFC 7301) */
} rill_tls_alpn_policy;

/**
 * Server: set the policy for clients whose ALPN list shares no protocol with the list set
 * with rill_tls_config_set_alpn(). A client that offers no ALPN is served under either policy.
 * A refused handshake fails on the server with RILL_E_TLS "handshake failed: refused: no
 * application protocol in common: the client offers \"x\", this server speaks \"h2\"".
 * Errors: RILL_E_INVALID (unknown policy, frozen config).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_alpn_policy(rill_tls_config *cfg,
                                                                    rill_tls_alpn_policy policy,
                                                                    rill_error *err);

/** Server: whether to ask for and require a client certificate, verified against the CAs of
 *  this config (rill_tls_config_set_ca_*; the system store if none). */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_verify_client(rill_tls_config *cfg,
                                                                      rill_tls_client_auth mode,
                                                                      rill_error *err);
/**
 * Pin the peer's public key: @p pin is "sha256//" followed by the base64 SHA-256 of the
 * certificate's SubjectPublicKeyInfo (curl's --pinnedpubkey form; `openssl x509 -pubkey | openssl
 * pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`). Repeatable: the handshake
 * succeeds if the leaf matches any pin, and fails with RILL_E_TLS_VERIFY "pin mismatch"
 * otherwise. Pins are checked in addition to chain verification, and also under the insecure
 * switches.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_add_pin(rill_tls_config *cfg, const char *pin,
                                                            rill_error *err);
/**
 * Append session keys in NSS key log format to @p path (created 0600 if missing), so a capture
 * can be decrypted. A debugging aid only: anyone with the file can read the traffic. NULL
 * turns it off (also overriding SSLKEYLOGFILE).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_set_keylog_file(rill_tls_config *cfg,
                                                                    const char *path,
                                                                    rill_error *err);

/**
 * INSECURE: accept any peer certificate chain (no chain, date or name checks). The connection
 * is then open to any man in the middle. Pins still apply. For tests against throwaway peers.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_config_insecure_noverifycert(rill_tls_config *cfg,
                                                                          rill_error *err);
/** INSECURE: verify the chain but not that it names the host: any certificate from a trusted
 *  CA is accepted for any host. */
RILL_API RILL_NODISCARD rill_status rill_tls_config_insecure_noverifyname(rill_tls_config *cfg,
                                                                          rill_error *err);
/** INSECURE: ignore the validity dates of the chain (expired or not yet valid certificates). */
RILL_API RILL_NODISCARD rill_status rill_tls_config_insecure_noverifytime(rill_tls_config *cfg,
                                                                          rill_error *err);

/* ---------------------------------------------------------------------------------------------
 * TLS streams
 *
 * Example:
 *     rill_stream *tls;
 *     if (rill_tls_client(tcp, cfg, "example.test", 0, &tls) != RILL_OK)
 *         errx(1, "%s", rill_errmsg(tcp));
 *     if (rill_tls_handshake(tls) != RILL_OK)
 *         errx(1, "%s", rill_errmsg(tls));
 *     rill_tls_info info;
 *     if (rill_tls_get_info(tls, &info) == RILL_OK)
 *         printf("%s %s\n", info.version, info.cipher);
 */

/**
 * Start a TLS client over @p inner (any stream: a tcp or unix transport, an already-open plain
 * chain for STARTTLS, another TLS stream, a proxy tunnel). When @p inner is a bare tcp or unix
 * transport, OpenSSL does its I/O on the socket itself; otherwise through @p inner.
 * @p servername (copied) is the name verified and, for DNS names, sent as SNI; an IP literal is
 * verified against the certificate's IP subjectAltNames and not sent. A trailing dot
 * ("localhost.") is removed for both. A name that names no host is refused with RILL_E_INVALID:
 * wildcards ("*.example.test"), spaces, control or non-ASCII bytes (use the IDNA "xn--" form),
 * empty labels or labels over 63 bytes, over 253 bytes. NULL is allowed only with
 * rill_tls_config_insecure_noverifyname() or _noverifycert().
 * The handshake runs on first I/O or in rill_tls_handshake(). @p flags: RILL_BORROW,
 * RILL_TLS_ALLOW_TRUNCATION.
 *
 * For STARTTLS on a chain you have been reading lines through, rill_starttls() does the upgrade
 * in one call; this is the low-level route (detach the plaintext layers first).
 * Refuses with RILL_E_PENDING_DATA when @p inner's chain holds unread bytes (plaintext
 * received before the upgrade: an injection hole, CVE-2011-0411), or when rill_pending() counts
 * an LF a RILL_EOL_ANY line reader still owes; the message names the layer. Layers above
 * @p inner that are closed first report their pending bytes from rill_close() the same way.
 * Ownership as for rill_buffered_new() (on error the caller keeps @p inner; the reason is in
 * rill_errmsg(inner)). The stream holds a reference to @p cfg.
 * Errors: RILL_E_INVALID, RILL_E_PENDING_DATA, RILL_E_NOMEM, RILL_E_TLS.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_client(rill_stream *inner, rill_tls_config *cfg,
                                                    const char *servername, unsigned flags,
                                                    rill_stream **out);

/**
 * Start a TLS server over @p inner (usually an accepted stream). @p cfg must have a certificate
 * and key. Client certificates per rill_tls_config_set_verify_client(). Otherwise as
 * rill_tls_client().
 */
RILL_API RILL_NODISCARD rill_status rill_tls_server(rill_stream *inner, rill_tls_config *cfg,
                                                    unsigned flags, rill_stream **out);

/**
 * STARTTLS: upgrade the plaintext chain *top to TLS in place, as a client. The TLS layer goes
 * under the line and buffered layers at the top of the chain (those that read ahead), so
 * "lines > buffered > tcp" becomes "lines > buffered > tls > tcp" and *top is unchanged; when
 * the top layer is not one of them (a bare tcp stream, a layer of your own), TLS goes on top
 * and *top becomes the TLS layer. Nothing is closed, detached or freed, so no pointer the caller
 * holds goes stale, and rill_close(*top) later closes the whole chain as before. Bytes written
 * before the call are flushed first, as plaintext. The handshake runs on first I/O or in
 * rill_tls_handshake(*top). @p servername and the config as for rill_tls_client(); @p flags: 0
 * or RILL_TLS_ALLOW_TRUNCATION. A layer that borrowed its inner stream (RILL_BORROW) keeps
 * that stream open on close: the TLS layer borrows it instead.
 *
 * rill_tls_client() over a detached transport stays the route for layer authors.
 * Errors (the chain is then as it was, and rill_errmsg(*top) says why): RILL_E_PENDING_DATA
 * when a layer holds bytes received before the upgrade ("rill_starttls: refusing to start TLS:
 * 14 bytes received before the upgrade are still unread in lines(...)": plaintext that could
 * have been injected, CVE-2011-0411; also an LF a RILL_EOL_ANY reader owes), or when the last
 * rill_read_lines() batch (a rill_line_iter's too) handed out lines after the go-ahead's first
 * ("... the last rill_read_lines batch handed out N bytes of lines after its first": read the
 * go-ahead alone, with rill_read_line(), where a server may pipeline), RILL_E_INVALID
 * (NULL, other flags, a bad server name, a chain that already runs TLS under its line and
 * buffered layers), RILL_E_CLOSED (shut down for writing), errors of
 * the flush, RILL_E_NOMEM, RILL_E_TLS. In non-blocking mode the flush may return
 * RILL_WANT_WRITE: nothing has changed; call again when writable.
 */
RILL_API RILL_NODISCARD rill_status rill_starttls(rill_stream **top, rill_tls_config *cfg,
                                                  const char *servername, unsigned flags);

/**
 * Run the handshake of the topmost TLS layer of @p s now, under the read timeout (0: one
 * non-blocking step, returning RILL_WANT_* until done). RILL_OK when it has completed (also if
 * it already had). Errors name the reason, e.g.
 * "tls: certificate verify failed: certificate has expired (depth 0, subject CN=good.rill.test)",
 * "tls: hostname mismatch: certificate is for other.example, not good.rill.test",
 * "tls: peer speaks TLSv1.0, minimum is TLSv1.2", "tls: pin mismatch: ...".
 * Codes: RILL_E_TLS_VERIFY (chain, date, name, pin), RILL_E_TLS (protocol, version, alert),
 * RILL_E_TIMEOUT, I/O errors of the inner stream, RILL_E_INVALID if there is no TLS layer.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_handshake(rill_stream *s);

/** What a TLS layer knows about its connection (rill_tls_get_info()). Strings are "" if unknown. */
typedef struct rill_tls_info {
    int handshake_done;   /**< 1 once the handshake completed */
    int is_server;        /**< 1 for rill_tls_server() streams */
    int resumed;          /**< 1 if the session was resumed (abbreviated handshake) */
    int verified;         /**< 1 if the peer certificate was verified (chain and name) */
    char version[16];     /**< "TLSv1.3" */
    char cipher[64];      /**< "TLS_AES_256_GCM_SHA384" */
    char alpn[64];        /**< the protocol agreed, "" when none */
    char servername[256]; /**< client: the name verified; server: the SNI the client sent */
    char subject[256];    /**< peer certificate subject, RFC 2253 ("CN=good.rill.test,O=...") */
    char issuer[256];     /**< peer certificate issuer */
    char sans[512];       /**< subjectAltNames, comma-separated ("DNS:a.test,IP:127.0.0.1") */
    char not_before[32];  /**< validity start, "2026-11-24T10:00:00Z" */
    char not_after[32];   /**< validity end */
    char spki_sha256[64]; /**< "sha256//BASE64" of the public key, the form pins take */
    char cert_entry[256]; /**< server: entry that served ("*.a.test", "(default)"; "" resumed) */
    char cert_type[16];   /**< key of the certificate this side sent: "ECDSA", "RSA", "Ed25519" */
    char cert_spki[64];   /**< "sha256//BASE64" of that certificate's public key; "" if none */
    char group[32];       /**< key-exchange group of the handshake ("X25519"), "" if none */
    int hello_retry;      /**< 1 if the handshake took a HelloRetryRequest (TLS 1.3) */
    int close_notify;     /**< 1 once the peer's close_notify was received */
    int truncated;        /**< 1 if the peer ended without close_notify and that was accepted
                               (RILL_TLS_ALLOW_TRUNCATION) */
    char reserved[132];   /**< zero; facts added later take this space (fixed size) */
} rill_tls_info;

/**
 * Fill @p info from the topmost TLS layer of @p s (e.g. a lines > buffered > tls > tcp chain).
 * Errors: RILL_E_INVALID (NULL, or no TLS layer in the chain).
 */
RILL_API RILL_NODISCARD rill_status rill_tls_get_info(rill_stream *s, rill_tls_info *info);

/** One certificate the peer sent (rill_tls_get_peer_cert()). */
typedef struct rill_tls_cert {
    char subject[256];   /**< RFC 2253 */
    char issuer[256];    /**< RFC 2253 */
    char not_before[32]; /**< "2026-11-24T10:00:00Z" */
    char not_after[32];  /**< validity end */
} rill_tls_cert;

/**
 * Certificate @p index (0: the peer's own, then the chain in the order the peer sent it) of the
 * topmost TLS layer of @p s after its handshake: its names and dates in @p info (may be NULL),
 * and, if @p pem is not NULL, the certificate in PEM in *pem (NUL-terminated, its length in
 * *pem_len if that is not NULL). Returns RILL_EOF past the last certificate.
 * Ownership: free *pem with rill_free().
 * Errors: RILL_E_INVALID (no TLS layer, or its handshake is not done), RILL_E_NOMEM.
 * Thread-safety: as any call on the stream.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_get_peer_cert(rill_stream *s, size_t index,
                                                           rill_tls_cert *info, char **pem,
                                                           size_t *pem_len);

/** 1 if the topmost TLS layer of @p s resumed a session, 0 otherwise (or no TLS layer). */
RILL_API int rill_tls_session_resumed(rill_stream *s);

/* ---------------------------------------------------------------------------------------------
 * TLS sessions
 *
 * Example:
 *     void *blob;
 *     size_t len;
 *     if (rill_tls_session_export(tls, &blob, &len) == RILL_OK) {
 *         save(blob, len);       // secret: store it like a key
 *         rill_free(blob);
 *     }
 */

/**
 * Serialize the session of the topmost TLS client layer of @p s (after its handshake) so an
 * application can persist it and resume later with rill_tls_session_import(). A TLS 1.3 session
 * is only available once the server's ticket has arrived, which may take a first read. The blob
 * records what the session was verified for: the server name, the peer's port (when known:
 * rill_connect() sets it, and a tcp transport right below the TLS layer gives it) and a digest
 * of the config's trust settings (CA and CRL sources, pins, insecure switches).
 * Ownership: free *blob with rill_free(). The blob holds secrets: store it like a key.
 * Errors: RILL_E_INVALID (no TLS client, no handshake yet, no resumable session), RILL_E_NOMEM.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_session_export(rill_stream *s, void **blob,
                                                            size_t *len);

/**
 * Offer a session exported earlier for resumption; call before the handshake. A resumed
 * handshake skips certificate verification, so the blob must have been made for this
 * connection: the same server name (case-insensitive), the same port when both are known, and
 * a config with the same trust settings. After a resumed handshake the client also checks that
 * the session was verified and that its certificate names this host; if not, the handshake
 * fails with RILL_E_TLS_VERIFY ("resumed session was not verified: ...", "hostname mismatch:
 * resumed session's certificate is for ...").
 *
 * Errors: RILL_E_INVALID, the stream unchanged (its handshake will be a full one), for a blob
 * that is not one rill exported ("not a session exported by this version of rill"), one made
 * for another name or port ("the session was made for a.test:443, not b.test:443"), one made
 * under other trust settings ("made under other trust settings"), or one whose session does
 * not parse; also when @p s has no TLS client before its handshake. A session the server
 * declines just means a full handshake.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_session_import(rill_stream *s, const void *blob,
                                                            size_t len);

/**
 * Let the topmost TLS client layer of @p s (made with rill_tls_client(), before its handshake)
 * use the session cache of @p ctx as rill_connect() does: offer a session cached for the same
 * server name, @p port and config, and store the ones the server sends. Sessions never cross
 * names, ports or configs.
 * Errors: RILL_E_INVALID (NULL, no TLS client before its handshake, port 0, no server name).
 * A context with its cache disabled (tls_session_cache_max 0) makes this a no-op.
 * Thread-safety: the cache is shared and locked; the stream is the caller's.
 */
RILL_API RILL_NODISCARD rill_status rill_tls_use_session_cache(rill_stream *s, rill_ctx *ctx,
                                                               uint16_t port);

/** Free memory that rill allocated for the caller (session blobs). NULL is accepted. */
RILL_API void rill_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* RILL_RILL_H */
