/* SPDX-License-Identifier: MIT */
/*
 * Proxy URLs ("socks5h://user:p%40ss@proxy.test:1080") and the environment's proxy settings
 * (https_proxy, all_proxy, no_proxy and their upper-case forms), read as curl reads them.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/proxy.h"
#include "resolver/resolver.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode @p len bytes of @p src into @p dst (cap bytes with the NUL); false if bad. */
static bool decode(char *dst, size_t cap, const char *src, size_t len, const char **why)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            if (i + 2 >= len) {
                *why = "truncated %-escape";
                return false;
            }
            int a = hexval((unsigned char)src[i + 1]), b = hexval((unsigned char)src[i + 2]);
            if (a < 0 || b < 0) {
                *why = "bad %-escape";
                return false;
            }
            c = a * 16 + b;
            if (c == 0) {
                *why = "%00 is not allowed";
                return false;
            }
            i += 2;
        }
        if (o + 1 >= cap) {
            *why = "longer than 255 bytes";
            return false;
        }
        dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return true;
}

static const struct {
    const char *name;
    rill_proxy_scheme scheme;
    uint16_t port;
} schemes[] = {
    { "http", RILL_PROXY_HTTP, 1080 },
    { "https", RILL_PROXY_HTTPS, 443 },
    { "socks5", RILL_PROXY_SOCKS5, 1080 },
    { "socks5h", RILL_PROXY_SOCKS5H, 1080 },
};

/*
 * @p url as messages show it: the password, if any, as "***" (a message may end up in a log;
 * the password must not).
 */
static void shown_url(const char *url, char *buf, size_t cap)
{
    const char *a = strstr(url, "://");
    a = a ? a + 3 : url;
    size_t alen = strcspn(a, "/?#");
    const char *at = NULL, *colon = NULL;
    for (size_t i = 0; i < alen; i++) {
        if (a[i] == '@')
            at = a + i;
    }
    if (at)
        colon = memchr(a, ':', (size_t)(at - a));
    if (!colon) {
        rilli_snprintf(buf, cap, "%s", url);
        return;
    }
    rilli_snprintf(buf, cap, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

RILL_API rill_status rill_proxy_parse(const char *url, rill_proxy *out, rill_error *err)
{
    if (!url || !out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: URL or out is NULL");
    char shown[128];
    shown_url(url, shown, sizeof shown);
    memset(out, 0, sizeof *out);
    const char *p = url;
    const char *sep = strstr(p, "://");
    out->scheme = RILL_PROXY_HTTP;
    uint16_t def_port = 1080;
    if (sep) {
        size_t n = (size_t)(sep - p);
        bool known = false;
        for (size_t i = 0; i < sizeof schemes / sizeof schemes[0] && !known; i++) {
            if (strlen(schemes[i].name) == n && strncasecmp(p, schemes[i].name, n) == 0) {
                out->scheme = schemes[i].scheme;
                def_port = schemes[i].port;
                known = true;
            }
        }
        if (!known)
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "proxy: unsupported scheme \"%.*s\" in %.100s (http, https, "
                                   "socks5, socks5h)",
                                   (int)(n > 20 ? 20 : n), p, shown);
        p = sep + 3;
    }
    /* The authority ends at '/', '?' or '#'; a path is ignored, as curl does. */
    size_t alen = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++) {
        if (p[i] == '@')
            at = p + i; /* the last '@': a password may hold one unescaped */
    }
    const char *why = NULL;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (!decode(out->user, sizeof out->user, p, ul, &why))
            return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: user name in %.100s: %s", shown,
                                   why);
        if (colon &&
            !decode(out->password, sizeof out->password, colon + 1, (size_t)(at - colon - 1), &why))
            return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: password: %s", why);
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    const char *host = p, *port = NULL;
    size_t hlen;
    if (alen > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close)
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "proxy: no ']' after IPv6 address in %.100s", shown);
        host = p + 1;
        hlen = (size_t)(close - host);
        size_t rest = alen - (size_t)(close + 1 - p);
        if (rest > 0) {
            if (close[1] != ':')
                return rilli_error_set(err, RILL_E_INVALID, 0,
                                       "proxy: unexpected text after ']' in %.100s", shown);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
        if (colon)
            port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof out->host)
        return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: no host in %.100s", shown);
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (memchr(host, '%', hlen) || (host != p && !strchr(out->host, ':')))
        return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: bad host in %.100s", shown);
    out->port = def_port;
    if (port) {
        size_t plen = alen - (size_t)(port - p);
        unsigned long v = 0;
        bool ok = plen > 0 && plen <= 5;
        for (size_t i = 0; ok && i < plen; i++) {
            ok = port[i] >= '0' && port[i] <= '9';
            v = v * 10 + (unsigned long)(port[i] - '0');
        }
        if (!ok || v == 0 || v > 65535)
            return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: bad port in %.100s", shown);
        out->port = (uint16_t)v;
    }
    rill_error scratch;
    if (rilli_host_check(out->host, out->port, &scratch) != RILL_OK)
        return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: %s", scratch.msg);
    return RILL_OK;
}

/* ---- no_proxy ---- */

/* Whether @p ip lies in @p net / @p bits. */
static bool in_prefix(const struct rilli_ip *ip, const struct rilli_ip *net, unsigned bits)
{
    if (ip->family != net->family)
        return false;
    unsigned max = ip->family == 4 ? 32 : 128;
    if (bits > max)
        return false;
    size_t full = bits / 8;
    if (memcmp(ip->bytes, net->bytes, full) != 0)
        return false;
    unsigned rest = bits % 8;
    if (rest == 0)
        return true;
    unsigned mask = (0xffu << (8 - rest)) & 0xffu;
    return (ip->bytes[full] & mask) == (net->bytes[full] & mask);
}

/* The port of a no_proxy entry: 1 to 5 digits, 1 .. 65535; -1 when it is anything else. */
static long entry_port(const char *t)
{
    size_t n = strspn(t, "0123456789");
    if (n == 0 || n > 5 || t[n] != '\0')
        return -1;
    long v = strtol(t, NULL, 10);
    return v >= 1 && v <= 65535 ? v : -1;
}

/* One entry of a no_proxy list (@p e, @p n bytes) against the host. */
static bool entry_matches(const char *e, size_t n, const char *host, size_t hlen,
                          const struct rilli_ip *hip, bool host_is_ip, uint16_t port)
{
    char buf[300];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, e, n);
    buf[n] = '\0';
    if (strcmp(buf, "*") == 0)
        return true;
    /* A port: "name:port", "[v6]:port"; a bare IPv6 address has several colons and no port. */
    char *name = buf;
    long want_port = -1;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close)
            return false;
        *close = '\0';
        name = buf + 1;
        if (close[1] == ':' && (want_port = entry_port(close + 2)) < 0)
            return false;
    } else {
        char *colon = strchr(buf, ':');
        if (colon && !strchr(colon + 1, ':')) {
            *colon = '\0';
            if ((want_port = entry_port(colon + 1)) < 0)
                return false; /* "name:", "name:443x": no port, and so no match */
        }
    }
    if (want_port >= 0 && want_port != port)
        return false;
    char *slash = strchr(name, '/');
    if (slash) { /* a CIDR range: matches IP literal hosts only */
        *slash = '\0';
        char *end = NULL;
        long bits = strtol(slash + 1, &end, 10);
        struct rilli_ip net;
        if (!host_is_ip || !isdigit((unsigned char)slash[1]) || !end || *end || bits < 0 ||
            !rilli_ip_parse(name, &net))
            return false;
        return in_prefix(hip, &net, (unsigned)bits);
    }
    struct rilli_ip eip;
    if (rilli_ip_parse(name, &eip)) {
        if (!host_is_ip)
            return false;
        return in_prefix(hip, &eip, eip.family == 4 ? 32 : 128);
    }
    if (host_is_ip)
        return false;
    while (*name == '.')
        name++;
    size_t nl = strlen(name);
    if (nl > 0 && name[nl - 1] == '.')
        name[--nl] = '\0';
    if (nl == 0 || nl > hlen)
        return false;
    if (strncasecmp(host + hlen - nl, name, nl) != 0)
        return false;
    return nl == hlen || host[hlen - nl - 1] == '.';
}

RILL_API int rill_proxy_bypass(const char *list, const char *host, uint16_t port)
{
    if (!list || !host)
        return 0;
    struct rilli_ip hip;
    bool host_is_ip = rilli_ip_parse(host, &hip);
    size_t hlen = strlen(host);
    if (!host_is_ip && hlen > 0 && host[hlen - 1] == '.')
        hlen--;
    const char *p = list;
    while (*p) {
        size_t skip = strspn(p, ", \t");
        p += skip;
        size_t n = strcspn(p, ", \t");
        if (n && entry_matches(p, n, host, hlen, &hip, host_is_ip, port))
            return 1;
        p += n;
    }
    return 0;
}

static const char *env_either(const char *lower, const char *upper, const char **which)
{
    const char *v = getenv(lower);
    *which = lower;
    if (!v || !*v) {
        v = getenv(upper);
        *which = upper;
    }
    return v && *v ? v : NULL;
}

RILL_API rill_status rill_proxy_from_env(const char *host, uint16_t port, int tls, rill_proxy *out,
                                         int *found, rill_error *err)
{
    if (!host || !out || !found)
        return rilli_error_set(err, RILL_E_INVALID, 0, "proxy: host, out or found is NULL");
    *found = 0;
    const char *which = NULL;
    const char *no = env_either("no_proxy", "NO_PROXY", &which);
    if (no && rill_proxy_bypass(no, host, port))
        return RILL_OK;
    const char *url = tls ? env_either("https_proxy", "HTTPS_PROXY", &which) : NULL;
    if (!url)
        url = env_either("all_proxy", "ALL_PROXY", &which);
    if (!url)
        return RILL_OK;
    rill_error e;
    if (rill_proxy_parse(url, out, &e) != RILL_OK)
        return rilli_error_set(err, RILL_E_INVALID, 0, "%s: %s", which, e.msg);
    *found = 1;
    return RILL_OK;
}
