/* SPDX-License-Identifier: MIT */
/*
 * Internal interface of the proxy room: the tunnel engine shared by the http-connect and socks5
 * layers (tunnel.c), the protocols' pure message builders and reply parsers (http_connect.c,
 * socks5.c; also the fuzz targets' entry points) and the proxy URL / environment code
 * (proxy_url.c).
 */
#ifndef RILL_PROXY_H
#define RILL_PROXY_H

#include "internal.h"

/* Bounds of the reply a tunnel layer reads before the tunnel is open. */
#define RILLI_TUNNEL_REPLY_DEFAULT 16384u
#define RILLI_TUNNEL_REPLY_MAX     (1u << 20)

struct rilli_tunnel;

/*
 * One protocol of the engine. start queues the first message; parse looks at the reply bytes
 * held (t->in, t->in_len) and returns RILL_WANT_READ (more bytes needed), RILL_OK after
 * setting *consumed (it may queue the next message with rilli_tunnel_queue, or set t->open
 * when the tunnel is open), or an error recorded with rill_stream_error().
 */
struct rilli_tunnel_proto {
    const struct rill_stream_ops *ops;
    rill_status (*start)(rill_stream *s, struct rilli_tunnel *t);
    rill_status (*parse)(rill_stream *s, struct rilli_tunnel *t, size_t *consumed);
};

struct rilli_tunnel {
    const struct rilli_tunnel_proto *proto;
    char *host;    /* the target, as given */
    uint16_t port; /* the target's port */
    char via[96];  /* the proxy, for describe and messages: "127.0.0.1:3128" */
    char *user;    /* NULL: no credentials */
    char *password;
    char *headers;      /* http-connect: extra header lines, each ending in CRLF ("" none) */
    unsigned char *out; /* the message being sent */
    size_t out_len, out_off;
    unsigned char *in; /* reply bytes; after the handshake, tunnel bytes that came with it */
    size_t in_len, in_off, in_cap;
    size_t reply_max; /* bound of the reply held at once */
    int step;         /* the protocol's own stage */
    bool started;
    bool open;          /* the tunnel is open */
    rill_status failed; /* the handshake's error, repeated to later calls */
    char failed_msg[RILL_ERRMSG_MAX];
};

/* Replace the message to send with @p len bytes of @p data (copied). */
rill_status rilli_tunnel_queue(rill_stream *s, struct rilli_tunnel *t, const void *data,
                               size_t len);

/*
 * Make a tunnel layer of @p proto over @p inner. Validates and copies the arguments; messages
 * name @p fn. Ownership as rill_stream_new().
 */
rill_status rilli_tunnel_new(const struct rilli_tunnel_proto *proto, const char *fn,
                             rill_stream *inner, const char *host, uint16_t port,
                             const rill_tunnel_opts *opts, unsigned flags, rill_stream **out);

/* The ops every tunnel layer uses (each kind has its own struct with its own name). */
rill_status rilli_tunnel_read(rill_stream *s, void *buf, size_t len, size_t *n);
rill_status rilli_tunnel_write(rill_stream *s, const void *buf, size_t len, size_t *n);
rill_status rilli_tunnel_flush(rill_stream *s);
void rilli_tunnel_close(rill_stream *s);
size_t rilli_tunnel_pending(const rill_stream *s);
size_t rilli_tunnel_describe(const rill_stream *s, char *buf, size_t len);

/* The socks5 layer's ops (socks5.c). */
extern const struct rill_stream_ops *const rilli_socks5_ops_ref;

/* Whether @p s is a tunnel layer (http-connect or socks5). */
bool rilli_is_tunnel(const rill_stream *s);

/* ---- the HTTP CONNECT reply (http_connect.c) ---- */

enum rilli_http_result { RILLI_HTTP_NEED, RILLI_HTTP_DONE, RILLI_HTTP_BAD };

struct rilli_http_reply {
    int status;        /* 100 .. 999 */
    char reason[80];   /* printable, possibly cut */
    size_t header_len; /* bytes of the status line and headers, the empty line included */
    char problem[96];  /* RILLI_HTTP_BAD: what is wrong */
};

/* Parse the reply in @p buf[0..len): a complete header block, more bytes needed, or bad. */
enum rilli_http_result rilli_http_reply_parse(const unsigned char *buf, size_t len,
                                              struct rilli_http_reply *r);

/* ---- the SOCKS5 replies (socks5.c) ---- */

enum rilli_socks_result { RILLI_SOCKS_NEED, RILLI_SOCKS_DONE, RILLI_SOCKS_BAD };

struct rilli_socks_reply {
    int code;         /* REP of the connect reply (0 success), or the method / auth status */
    size_t len;       /* bytes of the whole reply */
    char problem[96]; /* RILLI_SOCKS_BAD: what is wrong */
};

/* The method selection (stage 0), the username/password status (1), the connect reply (2). */
enum rilli_socks_result rilli_socks5_reply_parse(int stage, const unsigned char *buf, size_t len,
                                                 struct rilli_socks_reply *r);

/* The text of a SOCKS5 reply code: "connection refused by destination host", ... */
const char *rilli_socks5_reply_text(int code);

#endif /* RILL_PROXY_H */
