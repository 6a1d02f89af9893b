/* SPDX-License-Identifier: MIT */
/*
 * The tunnel engine under the http-connect and socks5 layers: send a message, read the
 * proxy's reply into a bounded buffer, let the protocol parse it (and queue the next message),
 * until the tunnel is open. Then the layer passes bytes through, after handing out first what
 * came with the reply's last segment (those bytes are the target's: never parsed, never lost).
 *
 * Every step is non-blocking when the stream is: the engine keeps its place (what is left to
 * send, what was read) across RILL_WANT_*, so the core, rill_tunnel_handshake() or the connect
 * machine can repeat the call. A failed handshake keeps its error and repeats it.
 */
#include <stdio.h>
#include <string.h>

#include "proxy/proxy.h"
#include "resolver/resolver.h"

RILL_API void rill_tunnel_opts_init(rill_tunnel_opts *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->max_reply = RILLI_TUNNEL_REPLY_DEFAULT;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = rilli_malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

rill_status rilli_tunnel_queue(rill_stream *s, struct rilli_tunnel *t, const void *data, size_t len)
{
    unsigned char *p = rilli_malloc(len ? len : 1);
    if (!p)
        return rill_stream_error(s, RILL_E_NOMEM, "out of memory");
    memcpy(p, data, len);
    rilli_free(t->out);
    t->out = p;
    t->out_len = len;
    t->out_off = 0;
    return RILL_OK;
}

static rill_status fail_once(rill_stream *s, struct rilli_tunnel *t, rill_status st)
{
    t->failed = st;
    snprintf(t->failed_msg, sizeof t->failed_msg, "%s", rill_errmsg(s));
    return st;
}

/* One pass of the handshake: as far as it goes without waiting. */
static rill_status handshake(rill_stream *s, struct rilli_tunnel *t)
{
    if (t->failed) {
        rilli_error_set(rilli_stream_errslot(s), t->failed, 0, "%s", t->failed_msg);
        return t->failed;
    }
    if (!t->started) {
        t->started = true;
        rill_status st = t->proto->start(s, t);
        if (st != RILL_OK)
            return fail_once(s, t, st);
    }
    for (;;) {
        while (t->out_off < t->out_len) {
            size_t n = 0;
            rill_status st =
                rill_stream_write_inner(s, t->out + t->out_off, t->out_len - t->out_off, &n);
            if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
                return st;
            if (st != RILL_OK)
                return fail_once(s, t, st);
            t->out_off += n;
        }
        if (t->out) {
            rill_status st = rill_stream_flush_inner(s);
            if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
                return st;
            if (st != RILL_OK)
                return fail_once(s, t, st);
            rilli_free(t->out);
            t->out = NULL;
            t->out_len = t->out_off = 0;
        }
        if (t->open)
            return RILL_OK;
        if (t->in_len > t->in_off) {
            size_t used = 0;
            rill_status st = t->proto->parse(s, t, &used);
            if (st == RILL_OK) {
                t->in_off += used;
                if (t->in_off == t->in_len) {
                    t->in_off = t->in_len = 0;
                    if (t->open) { /* an open tunnel with no bytes of its own holds no buffer */
                        rilli_free(t->in);
                        t->in = NULL;
                        t->in_cap = 0;
                    }
                }
                continue;
            }
            if (st != RILL_WANT_READ)
                return fail_once(s, t, st);
        }
        /* More reply needed: read what there is, up to the bound. */
        if (t->in_off > 0) {
            memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
            t->in_len -= t->in_off;
            t->in_off = 0;
        }
        if (t->in_len >= t->reply_max)
            return fail_once(s, t,
                             rill_stream_error(s, RILL_E_PROTOCOL,
                                               "proxy %s: reply header block longer than %zu "
                                               "bytes",
                                               t->via, t->reply_max));
        if (!t->in) {
            t->in_cap = t->reply_max;
            t->in = rilli_malloc(t->in_cap);
            if (!t->in)
                return fail_once(s, t, rill_stream_error(s, RILL_E_NOMEM, "out of memory"));
        }
        size_t n = 0;
        rill_status st = rill_stream_read_inner(s, t->in + t->in_len, t->in_cap - t->in_len, &n);
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
            return st;
        if (st == RILL_EOF)
            return fail_once(s, t,
                             rill_stream_error(s, RILL_E_PROTOCOL,
                                               "proxy %s closed the connection before its "
                                               "reply was complete (%zu bytes of it came)",
                                               t->via, t->in_len));
        if (st != RILL_OK)
            return fail_once(s, t, st);
        t->in_len += n;
    }
}

rill_status rilli_tunnel_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct rilli_tunnel *t = rilli_state(s);
    if (!t->open) {
        rill_status st = handshake(s, t);
        if (st != RILL_OK)
            return st;
    }
    if (t->in_len > t->in_off) {
        size_t k = t->in_len - t->in_off;
        if (k > len)
            k = len;
        memcpy(buf, t->in + t->in_off, k);
        t->in_off += k;
        if (t->in_off == t->in_len) {
            rilli_free(t->in);
            t->in = NULL;
            t->in_len = t->in_off = t->in_cap = 0;
        }
        *n = k;
        return RILL_OK;
    }
    return rill_stream_read_inner(s, buf, len, n);
}

rill_status rilli_tunnel_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct rilli_tunnel *t = rilli_state(s);
    if (!t->open) {
        rill_status st = handshake(s, t);
        if (st != RILL_OK)
            return st;
    }
    return rill_stream_write_inner(s, buf, len, n);
}

rill_status rilli_tunnel_flush(rill_stream *s)
{
    struct rilli_tunnel *t = rilli_state(s);
    /*
     * A handshake started by a read must finish its message before the layers below flush.
     * Waiting for the proxy's reply is the read's business; a failure is the flush's too.
     */
    if (t->started && !t->open && !t->failed && t->out_off < t->out_len) {
        rill_status st = handshake(s, t);
        return st == RILL_WANT_READ ? RILL_OK : st;
    }
    return RILL_OK;
}

void rilli_tunnel_close(rill_stream *s)
{
    struct rilli_tunnel *t = rilli_state(s);
    rilli_free(t->host);
    rilli_free(t->user);
    rilli_free(t->password);
    rilli_free(t->headers);
    rilli_free(t->out);
    rilli_free(t->in);
}

size_t rilli_tunnel_pending(const rill_stream *s)
{
    const struct rilli_tunnel *t = rilli_state(s);
    return t->open ? t->in_len - t->in_off : 0;
}

size_t rilli_tunnel_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct rilli_tunnel *t = rilli_state(s);
    bool v6 = strchr(t->host, ':') != NULL;
    return rilli_snprintf(buf, len, "%s(%s%s%s:%u via %s%s)", rilli_ops(s)->name, v6 ? "[" : "",
                          t->host, v6 ? "]" : "", t->port, t->via,
                          t->failed ? " failed"
                          : t->open ? ""
                                    : " handshake");
}

/* The proxy's address from the tcp transport at the bottom. */
static void via_from_chain(const rill_stream *inner, char *buf, size_t len)
{
    const rill_stream *l = inner;
    while (l->inner)
        l = l->inner;
    snprintf(buf, len, "proxy");
    if (rilli_ops(l) != &rilli_tcp_ops)
        return;
    char peer[64];
    rilli_sock_peer_text(l, peer, sizeof peer);
    if (peer[0])
        snprintf(buf, len, "%s", peer);
}

static bool header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h)
        return false;
    for (const char *p = h; *p; p++) {
        if (*p == '\r' || *p == '\n' || ((unsigned char)*p < 0x20 && *p != '\t'))
            return false;
    }
    return true;
}

rill_status rilli_tunnel_new(const struct rilli_tunnel_proto *proto, const char *fn,
                             rill_stream *inner, const char *host, uint16_t port,
                             const rill_tunnel_opts *opts, unsigned flags, rill_stream **out)
{
    if (!inner)
        return RILL_E_INVALID;
    if (!out || !host)
        return rilli_api_error(inner, RILL_E_INVALID, "%s: host or out is NULL", fn);
    rill_error scratch;
    if (rilli_host_check(host, port, &scratch) != RILL_OK)
        return rilli_api_error(inner, RILL_E_INVALID, "%s: %s", fn, scratch.msg);
    rill_tunnel_opts defaults;
    if (!opts) {
        rill_tunnel_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts->max_reply < 64 || opts->max_reply > RILLI_TUNNEL_REPLY_MAX)
        return rilli_api_error(inner, RILL_E_INVALID, "%s: max_reply %zu out of range (64 .. %u)",
                               fn, opts->max_reply, RILLI_TUNNEL_REPLY_MAX);
    if ((opts->user && strlen(opts->user) > 255) ||
        (opts->password && strlen(opts->password) > 255))
        return rilli_api_error(inner, RILL_E_INVALID,
                               "%s: user name or password longer than 255 bytes", fn);
    size_t hlen = 0;
    for (const char *const *h = opts->headers; h && *h; h++) {
        if (!header_ok(*h))
            return rilli_api_error(inner, RILL_E_INVALID,
                                   "%s: header \"%.60s\" is not \"Name: value\" on one line", fn,
                                   *h);
        hlen += strlen(*h) + 2;
    }
    rill_stream *s = NULL;
    rill_status st = rill_stream_new(proto->ops, sizeof(struct rilli_tunnel), inner, flags, &s);
    if (st != RILL_OK)
        return st;
    struct rilli_tunnel *t = rilli_state(s);
    t->proto = proto;
    t->port = port;
    t->reply_max = opts->max_reply;
    t->host = dup_str(host);
    t->user = opts->user ? dup_str(opts->user) : NULL;
    t->password = dup_str(opts->password ? opts->password : "");
    t->headers = rilli_malloc(hlen + 1);
    bool nomem = !t->host || (opts->user && !t->user) || !t->password || !t->headers;
    if (!nomem) {
        size_t at = 0;
        for (const char *const *h = opts->headers; h && *h; h++) {
            size_t k = strlen(*h);
            memcpy(t->headers + at, *h, k);
            memcpy(t->headers + at + k, "\r\n", 2);
            at += k + 2;
        }
        t->headers[at] = '\0';
    }
    /* A trailing dot is not part of the name the proxy is asked for. */
    size_t hl = t->host ? strlen(t->host) : 0;
    if (hl > 1 && t->host[hl - 1] == '.')
        t->host[hl - 1] = '\0';
    if (opts->proxy_name)
        snprintf(t->via, sizeof t->via, "%s", opts->proxy_name);
    else
        via_from_chain(inner, t->via, sizeof t->via);
    if (nomem) {
        /* Free the layer without closing the caller's stream. */
        s->flags |= RILL_BORROW;
        (void)rill_close(s);
        return rilli_api_error(inner, RILL_E_NOMEM, "%s: out of memory", fn);
    }
    *out = s;
    return RILL_OK;
}

static rill_stream *find_tunnel(rill_stream *s)
{
    for (rill_stream *l = s; l; l = l->inner) {
        if (rilli_is_tunnel(l))
            return l;
    }
    return NULL;
}

static rill_status handshake_attempt(rill_stream *s, void *arg)
{
    (void)arg;
    return handshake(s, rilli_state(s));
}

RILL_API rill_status rill_tunnel_handshake(rill_stream *s)
{
    if (!s)
        return RILL_E_INVALID;
    rill_stream *l = find_tunnel(s);
    if (!l)
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_tunnel_handshake: no http-connect or socks5 layer in the "
                               "chain");
    struct rilli_tunnel *t = rilli_state(l);
    if (t->open)
        return RILL_OK;
    rill_status st = rill_stream_call(l, 0, handshake_attempt, NULL);
    if (st == RILL_E_TIMEOUT) {
        int ms = 0;
        rill_get_timeouts(l, &ms, NULL);
        st = rill_stream_error(l, RILL_E_TIMEOUT, "proxy %s did not answer within %d ms", t->via,
                               ms);
    }
    return st < 0 && l != s ? rilli_adopt_error(s, l, st) : st;
}
