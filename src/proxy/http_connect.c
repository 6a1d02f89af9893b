/* SPDX-License-Identifier: MIT */
/*
 * The http-connect layer: "CONNECT host:port HTTP/1.1" to an HTTP proxy, then a tunnel.
 *
 * The reply is read into the engine's bounded buffer until its header block ends (an empty
 * line); a status line that is not HTTP's fails at once, without waiting for more. Only the
 * header block is consumed: what follows it in the same read is the target's first bytes.
 */
#include <stdio.h>
#include <string.h>

#include "proxy/proxy.h"

static const struct rill_stream_ops http_connect_ops;

/* Printable copy of @p len bytes (other bytes as '?'), at most cap - 1 of them. */
static void printable(char *dst, size_t cap, const unsigned char *src, size_t len)
{
    size_t i = 0;
    for (; i < len && i + 1 < cap; i++) {
        dst[i] = '?';
        if (src[i] >= 0x20 && src[i] < 0x7f)
            dst[i] = (char)src[i];
    }
    dst[i] = '\0';
}

enum rilli_http_result rilli_http_reply_parse(const unsigned char *buf, size_t len,
                                              struct rilli_http_reply *r)
{
    memset(r, 0, sizeof *r);
    /* The status line: "HTTP/1.x NNN reason". Judge what has come of it so far. */
    static const char proto[] = "HTTP/1.";
    size_t plen = sizeof proto - 1;
    size_t k = len < plen ? len : plen;
    if (memcmp(buf, proto, k) != 0 || (len > plen && (buf[plen] < '0' || buf[plen] > '9')) ||
        (len > plen + 1 && buf[plen + 1] != ' ')) {
        char got[40];
        const unsigned char *eol = memchr(buf, '\n', len);
        size_t n = eol ? (size_t)(eol - buf) : len;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
        printable(got, sizeof got, buf, n);
        snprintf(r->problem, sizeof r->problem, "not an HTTP reply: \"%s\"", got);
        return RILLI_HTTP_BAD;
    }
    for (size_t i = plen + 2; i < len && i < plen + 5; i++) {
        if (buf[i] < '0' || buf[i] > '9') {
            char got[40];
            printable(got, sizeof got, buf, len < 30 ? len : 30);
            snprintf(r->problem, sizeof r->problem, "bad status code in \"%s\"", got);
            return RILLI_HTTP_BAD;
        }
    }
    if (len > plen + 5 && buf[plen + 5] != ' ' && buf[plen + 5] != '\r' && buf[plen + 5] != '\n') {
        snprintf(r->problem, sizeof r->problem, "status code longer than three digits");
        return RILLI_HTTP_BAD;
    }
    /* The end of the header block: an empty line (CRLF CRLF, or bare LFs, as RFC 9112 allows). */
    size_t end = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            end = i + 3;
            break;
        }
    }
    if (end == 0)
        return RILLI_HTTP_NEED;
    r->status = (buf[plen + 2] - '0') * 100 + (buf[plen + 3] - '0') * 10 + (buf[plen + 4] - '0');
    const unsigned char *line_end = memchr(buf, '\n', end);
    size_t rs = plen + 6, re = (size_t)(line_end - buf);
    if (re > 0 && buf[re - 1] == '\r')
        re--;
    if (rs < re)
        printable(r->reason, sizeof r->reason, buf + rs, re - rs);
    r->header_len = end;
    return RILLI_HTTP_DONE;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t base64(char *dst, const unsigned char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)src[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)src[i + 1] << 8;
        if (i + 2 < len)
            v |= src[i + 2];
        dst[o++] = b64[(v >> 18) & 63];
        dst[o++] = b64[(v >> 12) & 63];
        dst[o++] = b64[(v >> 6) & 63];
        dst[o++] = b64[v & 63];
        if (i + 2 >= len)
            dst[o - 1] = '=';
        if (i + 1 >= len)
            dst[o - 2] = '=';
    }
    dst[o] = '\0';
    return o;
}

static rill_status connect_start(rill_stream *s, struct rilli_tunnel *t)
{
    bool v6 = strchr(t->host, ':') != NULL;
    char target[300];
    snprintf(target, sizeof target, "%s%s%s:%u", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
    char auth[760] = "";
    if (t->user) {
        unsigned char cred[520];
        size_t ul = strlen(t->user), pl = strlen(t->password);
        memcpy(cred, t->user, ul);
        cred[ul] = ':';
        memcpy(cred + ul + 1, t->password, pl);
        char enc[720];
        base64(enc, cred, ul + 1 + pl);
        snprintf(auth, sizeof auth, "Proxy-Authorization: Basic %s\r\n", enc);
    }
    size_t cap = 2 * strlen(target) + strlen(auth) + strlen(t->headers) + 64;
    char *req = rilli_malloc(cap);
    if (!req)
        return rill_stream_error(s, RILL_E_NOMEM, "out of memory");
    int n = snprintf(req, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", target, target, auth,
                     t->headers);
    rill_status st = rilli_tunnel_queue(s, t, req, (size_t)n);
    rilli_free(req);
    return st;
}

static rill_status connect_parse(rill_stream *s, struct rilli_tunnel *t, size_t *consumed)
{
    struct rilli_http_reply r;
    switch (rilli_http_reply_parse(t->in + t->in_off, t->in_len - t->in_off, &r)) {
    case RILLI_HTTP_NEED: return RILL_WANT_READ;
    case RILLI_HTTP_BAD:
        return rill_stream_error(s, RILL_E_PROTOCOL, "proxy %s: %s", t->via, r.problem);
    case RILLI_HTTP_DONE: break;
    }
    bool v6 = strchr(t->host, ':') != NULL;
    if (r.status == 407)
        return rill_stream_error(s, RILL_E_PROXY,
                                 "proxy authentication required: proxy %s answered %d %s to "
                                 "CONNECT %s%s%s:%u%s",
                                 t->via, r.status, r.reason, v6 ? "[" : "", t->host, v6 ? "]" : "",
                                 t->port, t->user ? " (the credentials were refused)" : "");
    if (r.status < 200 || r.status > 299)
        return rill_stream_error(s, RILL_E_PROXY, "proxy %s answered %d %s to CONNECT %s%s%s:%u",
                                 t->via, r.status, r.reason, v6 ? "[" : "", t->host, v6 ? "]" : "",
                                 t->port);
    *consumed = r.header_len;
    t->open = true;
    return RILL_OK;
}

static const struct rilli_tunnel_proto http_proto = { &http_connect_ops, connect_start,
                                                      connect_parse };

static const struct rill_stream_ops http_connect_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_HTTP_CONNECT,
    .read = rilli_tunnel_read,
    .write = rilli_tunnel_write,
    .flush = rilli_tunnel_flush,
    .close = rilli_tunnel_close,
    .pending = rilli_tunnel_pending,
    .describe = rilli_tunnel_describe,
};

RILL_API rill_status rill_http_connect_new(rill_stream *inner, const char *host, uint16_t port,
                                           const rill_tunnel_opts *opts, unsigned flags,
                                           rill_stream **out)
{
    return rilli_tunnel_new(&http_proto, "rill_http_connect_new", inner, host, port, opts, flags,
                            out);
}

bool rilli_is_tunnel(const rill_stream *s)
{
    return rilli_ops(s) == &http_connect_ops || rilli_ops(s) == rilli_socks5_ops_ref;
}
