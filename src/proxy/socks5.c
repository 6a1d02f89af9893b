/* SPDX-License-Identifier: MIT */
/*
 * The socks5 layer (RFC 1928, username/password per RFC 1929): method selection, optional
 * authentication, CONNECT with the target as an address or a name, then a tunnel.
 *
 * Stages: 0 the method selection reply, 1 the username/password status, 2 the connect reply,
 * whose length depends on the address type it carries.
 */
#include <stdio.h>
#include <string.h>

#include "proxy/proxy.h"
#include "resolver/resolver.h"

static const struct rill_stream_ops socks5_ops;
const struct rill_stream_ops *const rilli_socks5_ops_ref = &socks5_ops;

#define SOCKS_VERSION  5
#define AUTH_VERSION   1
#define METHOD_NONE    0x00
#define METHOD_USER    0x02
#define METHOD_REFUSED 0xff

const char *rilli_socks5_reply_text(int code)
{
    switch (code) {
    case 0: return "succeeded";
    case 1: return "general SOCKS server failure";
    case 2: return "connection not allowed by ruleset";
    case 3: return "network unreachable";
    case 4: return "host unreachable";
    case 5: return "connection refused by destination host";
    case 6: return "TTL expired";
    case 7: return "command not supported";
    case 8: return "address type not supported";
    }
    return "unknown reply code";
}

enum rilli_socks_result rilli_socks5_reply_parse(int stage, const unsigned char *buf, size_t len,
                                                 struct rilli_socks_reply *r)
{
    memset(r, 0, sizeof *r);
    int version = stage == 1 ? AUTH_VERSION : SOCKS_VERSION;
    if (len >= 1 && buf[0] != version) {
        snprintf(r->problem, sizeof r->problem,
                 stage == 1 ? "not a RFC 1929 reply (version byte 0x%02x)"
                            : "not a SOCKS5 proxy (version byte 0x%02x)",
                 buf[0]);
        return RILLI_SOCKS_BAD;
    }
    if (len < 2)
        return RILLI_SOCKS_NEED;
    r->code = buf[1];
    if (stage != 2) {
        r->len = 2;
        return RILLI_SOCKS_DONE;
    }
    if (len < 4)
        return RILLI_SOCKS_NEED;
    if (buf[2] != 0) {
        snprintf(r->problem, sizeof r->problem, "reserved byte of the reply is 0x%02x, not 0",
                 buf[2]);
        return RILLI_SOCKS_BAD;
    }
    size_t need;
    switch (buf[3]) {
    case 1: need = 4 + 4 + 2; break;
    case 4: need = 4 + 16 + 2; break;
    case 3:
        if (len < 5)
            return RILLI_SOCKS_NEED;
        need = 4 + 1 + (size_t)buf[4] + 2;
        break;
    default:
        snprintf(r->problem, sizeof r->problem, "reply has unknown address type %u", buf[3]);
        return RILLI_SOCKS_BAD;
    }
    if (len < need)
        return RILLI_SOCKS_NEED;
    r->len = need;
    return RILLI_SOCKS_DONE;
}

static rill_status send_request(rill_stream *s, struct rilli_tunnel *t)
{
    unsigned char req[4 + 1 + 255 + 2];
    size_t n = 0;
    req[n++] = SOCKS_VERSION;
    req[n++] = 1; /* CONNECT */
    req[n++] = 0;
    struct rilli_ip ip;
    if (rilli_ip_parse(t->host, &ip)) {
        req[n++] = ip.family == 4 ? 1 : 4;
        size_t k = ip.family == 4 ? 4 : 16;
        memcpy(req + n, ip.bytes, k);
        n += k;
    } else {
        size_t k = strlen(t->host); /* checked: at most 253 */
        req[n++] = 3;
        req[n++] = (unsigned char)k;
        memcpy(req + n, t->host, k);
        n += k;
    }
    req[n++] = (unsigned char)(t->port >> 8);
    req[n++] = (unsigned char)(t->port & 0xff);
    t->step = 2;
    return rilli_tunnel_queue(s, t, req, n);
}

static rill_status socks_start(rill_stream *s, struct rilli_tunnel *t)
{
    unsigned char hello[4] = { SOCKS_VERSION, 1, METHOD_NONE, 0 };
    if (t->user) {
        hello[1] = 2;
        hello[3] = METHOD_USER;
    }
    t->step = 0;
    return rilli_tunnel_queue(s, t, hello, t->user ? 4 : 3);
}

static rill_status socks_parse(rill_stream *s, struct rilli_tunnel *t, size_t *consumed)
{
    struct rilli_socks_reply r;
    switch (rilli_socks5_reply_parse(t->step, t->in + t->in_off, t->in_len - t->in_off, &r)) {
    case RILLI_SOCKS_NEED: return RILL_WANT_READ;
    case RILLI_SOCKS_BAD:
        return rill_stream_error(s, RILL_E_PROTOCOL, "proxy %s: %s", t->via, r.problem);
    case RILLI_SOCKS_DONE: break;
    }
    *consumed = r.len;
    if (t->step == 0) {
        if (r.code == METHOD_NONE)
            return send_request(s, t);
        if (r.code == METHOD_USER && t->user) {
            unsigned char msg[3 + 255 + 255];
            size_t ul = strlen(t->user), pl = strlen(t->password), n = 0;
            msg[n++] = AUTH_VERSION;
            msg[n++] = (unsigned char)ul;
            memcpy(msg + n, t->user, ul);
            n += ul;
            msg[n++] = (unsigned char)pl;
            memcpy(msg + n, t->password, pl);
            n += pl;
            t->step = 1;
            return rilli_tunnel_queue(s, t, msg, n);
        }
        if (r.code == METHOD_USER)
            return rill_stream_error(s, RILL_E_PROXY, "proxy %s requires a username and password",
                                     t->via);
        if (r.code == METHOD_REFUSED)
            return rill_stream_error(s, RILL_E_PROXY,
                                     "proxy %s accepts none of the authentication methods "
                                     "offered (%s)",
                                     t->via, t->user ? "none, username/password" : "none");
        return rill_stream_error(s, RILL_E_PROTOCOL,
                                 "proxy %s chose authentication method 0x%02x, which was not "
                                 "offered",
                                 t->via, (unsigned)r.code);
    }
    if (t->step == 1) {
        if (r.code != 0)
            return rill_stream_error(s, RILL_E_PROXY,
                                     "proxy %s rejected the username/password (status %d)", t->via,
                                     r.code);
        return send_request(s, t);
    }
    if (r.code != 0) {
        bool v6 = strchr(t->host, ':') != NULL;
        return rill_stream_error(s, RILL_E_PROXY, "proxy %s: %s (reply %d) for %s%s%s:%u", t->via,
                                 rilli_socks5_reply_text(r.code), r.code, v6 ? "[" : "", t->host,
                                 v6 ? "]" : "", t->port);
    }
    t->open = true;
    return RILL_OK;
}

static const struct rilli_tunnel_proto socks_proto = { &socks5_ops, socks_start, socks_parse };

static const struct rill_stream_ops socks5_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_SOCKS5,
    .read = rilli_tunnel_read,
    .write = rilli_tunnel_write,
    .flush = rilli_tunnel_flush,
    .close = rilli_tunnel_close,
    .pending = rilli_tunnel_pending,
    .describe = rilli_tunnel_describe,
};

RILL_API rill_status rill_socks5_new(rill_stream *inner, const char *host, uint16_t port,
                                     const rill_tunnel_opts *opts, unsigned flags,
                                     rill_stream **out)
{
    if (inner && opts && opts->headers && opts->headers[0])
        return rilli_api_error(inner, RILL_E_INVALID,
                               "rill_socks5_new: SOCKS5 has no request headers");
    if (inner && opts && opts->user && opts->user[0] == '\0')
        return rilli_api_error(inner, RILL_E_INVALID,
                               "rill_socks5_new: RFC 1929 needs a user name of 1 .. 255 bytes");
    return rilli_tunnel_new(&socks_proto, "rill_socks5_new", inner, host, port, opts, flags, out);
}
