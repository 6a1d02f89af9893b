/* SPDX-License-Identifier: MIT */
/*
 * Internal helpers shared across rill's own files (prefix rilli_). Not installed.
 */
#ifndef RILL_INTERNAL_H
#define RILL_INTERNAL_H

#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rill/rill.h"
#include "rill/stream.h"

/*
 * A layer of a chain. Public code sees it as opaque; rill's own layers use the inline accessors
 * below, which keep per-line hot paths free of calls.
 */
struct rill_stream {
    /*
     * First, at offset 0, as the ABI has it (rill.h): the window of buffered bytes that the
     * inline rill_read_line() reads, published by a line stream; NULL for every other stream.
     */
    rill_line_window_ *line_window;
    const struct rill_stream_ops *ops;
    void *state; /* points at state_block, so const streams hand out a usable pointer */
    rill_stream *inner;
    unsigned flags;
    int read_timeout_ms;
    int write_timeout_ms;
    bool may_block;
    bool shut_wr;
    bool closing;     /* rill_close is flushing it: its closing message may go out now */
    rill_status want; /* the WANT the last public call returned, for rill_poll_info */
    /*
     * The last error: allocated when the first error happens, so an idle stream does not carry
     * a message buffer. lost_code is the code of an error whose record could not be allocated
     * (rill_errmsg then gives a fixed out-of-memory text).
     */
    rill_status lost_code;
    rill_error *err;
    max_align_t state_block[];
};

_Static_assert(offsetof(struct rill_stream, line_window) == 0,
               "the inline rill_read_line() reads the line window at offset 0");

static inline void *rilli_state(const rill_stream *s)
{
    return s->state;
}

static inline const struct rill_stream_ops *rilli_ops(const rill_stream *s)
{
    return s->ops;
}

/* Allocation: every allocation of rill's own goes through these (rill_set_allocator). */
void *rilli_malloc(size_t n);
void *rilli_calloc(size_t count, size_t size);
void *rilli_realloc(void *p, size_t n);
void rilli_free(void *p);

/* Monotonic clock in milliseconds. */
int64_t rilli_now_ms(void);

/* Deadline (opaque, microseconds on the monotonic clock) for a timeout in ms; -1 for none. */
int64_t rilli_deadline(int timeout_ms);

/* Milliseconds left until @p deadline for poll(), rounded up: -1 for none, 0 when passed. */
int rilli_remaining_ms(int64_t deadline);

/*
 * Fill a rill_error (may be NULL) and return @p code. The message is the formatted text, and
 * with _sys ": strerror(errnum)" appended.
 */
rill_status rilli_error_set(rill_error *err, rill_status code, int errnum, const char *fmt, ...)
    RILL_PRINTF(4, 5);
rill_status rilli_error_vset(rill_error *err, rill_status code, int errnum, const char *fmt,
                             va_list ap) RILL_PRINTF(4, 0);

/* Record a message without a layer prefix on @p s (may be NULL): misuse of the public API. */
rill_status rilli_api_error(rill_stream *s, rill_status code, const char *fmt, ...)
    RILL_PRINTF(3, 4);

/*
 * The error slot of @p s, for layers that set sys_errno or API-level messages themselves:
 * allocated on first use. When that allocation fails it is a per-thread scratch record, and
 * @p s keeps only the code given to rilli_stream_errslot_done().
 */
rill_error *rilli_stream_errslot(rill_stream *s);

/* Free the layer block @p s (and its error record) without closing anything. */
void rilli_stream_free(rill_stream *s);

/*
 * Descriptor I/O shared by the fd, tcp and unix transports. Sockets use recv/send with
 * MSG_NOSIGNAL, and MSG_DONTWAIT unless the call may block; other descriptors are polled first
 * when the call may not block, and SIGPIPE is kept from the process. @p where writes the
 * endpoints for a message ("127.0.0.1:40112 > 127.0.0.1:8443"), called only on an error.
 */
typedef void (*rilli_where_fn)(const rill_stream *s, char *buf, size_t cap);
rill_status rilli_fd_read(rill_stream *s, int fd, bool is_sock, rilli_where_fn where, void *buf,
                          size_t len, size_t *n);
rill_status rilli_fd_write(rill_stream *s, int fd, bool is_sock, rilli_where_fn where,
                           const void *buf, size_t len, size_t *n);
/* A gather write on a descriptor: one sendmsg() (sockets) or writev() (others). */
rill_status rilli_fd_writev(rill_stream *s, int fd, bool is_sock, rilli_where_fn where,
                            const struct iovec *iov, int iovcnt, size_t *n);

/* Copy the error of stream @p s into @p err (may be NULL); returns the code. */
rill_status rilli_error_from_stream(rill_error *err, const rill_stream *s);

/* errno text in rill's wording ("connection refused", ...); never NULL. */
const char *rilli_errno_text(int errnum);

/* Map an errno from a socket or fd operation to a status. */
rill_status rilli_status_from_errno(int errnum);

/*
 * Bytes of the lines after the first that the last rill_read_lines() batch of line layer @p s
 * handed out, while the stream has not read past them (the caller may hold them unread, as a
 * rill_line_iter does); 0 when @p s is not a line layer.
 */
size_t rilli_lines_batch_unread(const rill_stream *s);

/* The read size of a buffered layer, or 0 when @p s is not one (for whole-value peeks). */
size_t rilli_buffered_read_size(const rill_stream *s);

/* snprintf into buf that tolerates len 0 and returns the would-be length as size_t. */
size_t rilli_snprintf(char *buf, size_t len, const char *fmt, ...) RILL_PRINTF(3, 4);

/*
 * Socket transports (tcp, unix) share one state layout and these ops; each has its own
 * rill_stream_ops (name, describe) in its file.
 */
struct sockaddr;
struct rilli_sock {
    int fd;
    bool accepted;
    bool is_unix;
    bool nonblock;     /* O_NONBLOCK still set from the connect: cleared before a blocking call */
    uint16_t peer_len; /* of peer; 0: not known (then asked of the kernel when needed) */
    union {            /* the peer of a tcp socket, kept to name it after a reset */
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer;
    char unix_where[]; /* unix: the endpoint text, made at the start (NUL-terminated) */
};

extern const struct rill_stream_ops rilli_tcp_ops;
extern const struct rill_stream_ops rilli_unix_ops;

/*
 * Make a socket transport of kind @p ops around connected socket @p fd (taking it over on
 * RILL_OK; on error the caller still closes it), applying @p opts (NULL: defaults). The
 * endpoints are formatted only when a message or rill_describe() needs them.
 */
rill_status rilli_sock_new(const struct rill_stream_ops *ops, int fd, bool accepted,
                           const rill_connect_opts *opts, rill_stream **out, rill_error *err);
/*
 * The same for a socket whose peer address @p peer (@p peer_len bytes, an AF_INET or AF_INET6
 * address) the caller knows, which spares the kernel questions; @p nonblock: @p fd still has
 * O_NONBLOCK set (from a non-blocking connect), cleared by the layer before its first blocking
 * call.
 */
rill_status rilli_sock_new_peer(const struct rill_stream_ops *ops, int fd, bool accepted,
                                const struct sockaddr *peer, unsigned peer_len, bool nonblock,
                                const rill_connect_opts *opts, rill_stream **out, rill_error *err);
/* The peer address of tcp stream @p s ("127.0.0.1:3128"), "" when not known. */
void rilli_sock_peer_text(const rill_stream *s, char *buf, size_t cap);
rill_status rilli_sock_read(rill_stream *s, void *buf, size_t len, size_t *n);
rill_status rilli_sock_write(rill_stream *s, const void *buf, size_t len, size_t *n);
rill_status rilli_sock_writev(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n);
rill_status rilli_sock_shutdown(rill_stream *s);
void rilli_sock_close(rill_stream *s);
rill_status rilli_sock_poll(rill_stream *s, int *fd, short *events);
size_t rilli_sock_describe(const rill_stream *s, char *buf, size_t len);

/*
 * Create a socket for @p sa and connect it within @p timeout_ms (-1: no limit). On RILL_OK
 * *fd is a connected, close-on-exec socket, still in non-blocking mode (see
 * rilli_sock_new_peer). Messages read
 * "<kind>: connect to <display> failed: <reason>".
 */
rill_status rilli_sock_connect(const char *kind, const char *display, const struct sockaddr *sa,
                               unsigned sa_len, int timeout_ms, int *fd, rill_error *err);

/*
 * Where the non-blocking connect of @p fd to @p sa stands, asked by connecting again: 0
 * connected, EALREADY still going, else the errno that ended it (ECONNREFUSED, ...).
 */
int rilli_connect_probe(int fd, const struct sockaddr *sa, unsigned sa_len);

/* RILL_E_INVALID (with "<kind>: " message) unless every timeout in @p opts is >= -1. */
rill_status rilli_check_connect_opts(const char *kind, const rill_connect_opts *opts,
                                     rill_error *err);

/* "127.0.0.1:8443", "[::1]:8443", "/path" or "@abstract" for a socket address. */
void rilli_sockaddr_format(const struct sockaddr *sa, unsigned sa_len, char *buf, size_t cap);

/*
 * Parse a numeric IPv4/IPv6 address ("::1" or "[::1]") with @p port into @p ss (a
 * struct sockaddr_storage). Returns false if @p addr is not numeric.
 */
bool rilli_parse_numeric(const char *addr, uint16_t port, void *ss, unsigned *sa_len);

/*
 * Fill a struct sockaddr_un for @p path ('@' prefix: abstract). RILL_E_INVALID, with the
 * message in @p err, for a NULL, empty or too long path.
 */
rill_status rilli_unix_addr(const char *path, void *sun, unsigned *sa_len, rill_error *err);

/* Give @p top the error recorded on @p from (a layer below it), prefixed with the layer names
 * between them; returns @p code. */
rill_status rilli_adopt_error(rill_stream *top, const rill_stream *from, rill_status code);

/*
 * Describe into @p buf the first layer from @p top down to (not including) @p stop whose own
 * pending op counts bytes, as its describe op does; "" when none does. Returns what
 * rilli_snprintf would.
 */
size_t rilli_describe_pending(const rill_stream *top, const rill_stream *stop, char *buf,
                              size_t len);

/*
 * RILL_OK when no layer of @p s holds bytes received so far; else RILL_E_PENDING_DATA on @p s,
 * "<who>: refusing to start TLS: N bytes received before the upgrade are still unread in
 * <layer>" (plaintext that could have been injected before a TLS upgrade).
 */
rill_status rilli_refuse_pending_plaintext(rill_stream *s, const char *who);

/*
 * Whether rill_close is flushing @p s before closing it: a layer of rill's own with a closing
 * message (TLS's close_notify) sends it from its flush op then, where the core may wait for
 * the connection to take it, rather than from its close op, which must not wait.
 */
static inline bool rilli_closing(const rill_stream *s)
{
    return s->closing;
}

/* Set whether calls on @p s may block in the kernel (the TLS room's BIO passes its own flag). */
static inline void rilli_set_may_block(rill_stream *s, bool may_block)
{
    s->may_block = may_block;
}

/*
 * TLS client session cache of a rill_ctx (src/session_cache.c): reference-counted objects under
 * string keys. rilli_sess_cache_new(0) is NULL, and every function accepts a NULL cache.
 * put takes over the caller's reference to @p obj (false: not stored, the caller keeps it);
 * get returns a reference the caller owns (a single-use entry is removed), or NULL.
 */
struct rilli_sess_ops {
    void (*ref)(void *obj);
    void (*unref)(void *obj);
};
struct rilli_sess_cache;
struct rilli_sess_cache *rilli_sess_cache_new(size_t max);
/* The cache is reference-counted: a TLS layer that uses it keeps it alive past its context.
 * free drops one reference. */
void rilli_sess_cache_ref(struct rilli_sess_cache *c);
void rilli_sess_cache_free(struct rilli_sess_cache *c);
bool rilli_sess_cache_put(struct rilli_sess_cache *c, const char *key, void *obj,
                          const struct rilli_sess_ops *ops, bool single_use, int64_t expires_ms);
void *rilli_sess_cache_get(struct rilli_sess_cache *c, const char *key);

/* The session cache of @p ctx (NULL when disabled or ctx is NULL). */
struct rilli_sess_cache *rilli_ctx_sessions(rill_ctx *ctx);

/* TLS configs are reference-counted: streams and listeners hold one each. */
void rilli_tls_config_ref(rill_tls_config *cfg);

/*
 * The connect machine's TLS layer: wrap connected @p tcp in a TLS client for @p host (or
 * opts->tls_servername) with opts->tls and flags, using @p ctx's session cache for that name,
 * @p port and config. The handshake is left to the caller. On error @p tcp is still the
 * caller's and @p err says why.
 */
rill_status rilli_tls_connect_wrap(rill_ctx *ctx, const char *host, uint16_t port,
                                   const rill_connect_opts *opts, rill_stream *tcp,
                                   rill_stream **out, rill_error *err);

/*
 * Option structs that grow (src/opts.c): rilli_opts_size() is what an _init function stores in
 * the size member; the loaders fill @p out (this library's size, defaults for what the caller's
 * struct lacks) from the caller's @p in (NULL: defaults) and refuse a bad size with
 * RILL_E_INVALID naming @p kind. rilli_connect_opts_load also checks the values
 * (rilli_check_connect_opts).
 */
uint32_t rilli_opts_size(size_t size);
rill_status rilli_connect_opts_load(const char *kind, const rill_connect_opts *in,
                                    rill_connect_opts *out, rill_error *err);
rill_status rilli_ctx_opts_load(const rill_ctx_opts *in, rill_ctx_opts *out, rill_error *err);
rill_status rilli_listen_opts_load(const char *kind, const rill_listen_opts *in,
                                   rill_listen_opts *out, rill_error *err);

/*
 * The connect machine's TLS layer to an https:// proxy: as rilli_tls_connect_wrap() for
 * @p proxy_host with @p cfg, its sessions cached under keys of their own, never offered to a
 * host reached through the proxy (nor the host's to the proxy).
 */
rill_status rilli_tls_proxy_wrap(rill_ctx *ctx, const char *proxy_host, uint16_t port,
                                 rill_tls_config *cfg, rill_stream *tcp, rill_stream **out,
                                 rill_error *err);

#endif /* RILL_INTERNAL_H */
