/* SPDX-License-Identifier: MIT */
/* Host and address handling for the resolver: syntax checks, numeric parsing, ordering. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "resolver.h"

bool rilli_ip_parse(const char *text, struct rilli_ip *ip)
{
    struct sockaddr_storage ss;
    unsigned len = 0;
    if (!text || !rilli_parse_numeric(text, 1, &ss, &len))
        return false;
    return rilli_ip_from_sockaddr((const struct sockaddr *)&ss, ip);
}

bool rilli_ip_from_sockaddr(const struct sockaddr *sa, struct rilli_ip *ip)
{
    memset(ip, 0, sizeof *ip);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        ip->family = 4;
        memcpy(ip->bytes, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        ip->family = 6;
        memcpy(ip->bytes, &in6->sin6_addr, 16);
        return true;
    }
    return false;
}

rill_status rilli_host_check(const char *host, uint16_t port, rill_error *err)
{
    if (!host)
        return rilli_error_set(err, RILL_E_INVALID, 0, "resolve: host is NULL");
    if (port == 0)
        return rilli_error_set(err, RILL_E_INVALID, 0, "resolve: %.80s: port 0 is not valid", host);
    size_t len = strlen(host);
    if (len == 0)
        return rilli_error_set(err, RILL_E_INVALID, 0, "resolve: host name is empty");
    struct rilli_ip ip;
    if (rilli_ip_parse(host, &ip))
        return RILL_OK;
    if (len > 253 && !(len == 254 && host[253] == '.'))
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "resolve: host name is %zu bytes, over the limit of 253", len);
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= 0x20 || c >= 0x7f) {
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "resolve: host name has a %s byte 0x%02x at offset %zu "
                                   "(names are ASCII; use punycode)",
                                   c == ' '                ? "space"
                                   : c < 0x20 || c == 0x7f ? "control"
                                                           : "non-ASCII",
                                   c, i);
        }
        if (c == '.') {
            if (label == 0)
                return rilli_error_set(err, RILL_E_INVALID, 0,
                                       "resolve: host name \"%.80s\" has an empty label", host);
            label = 0;
            continue;
        }
        if (++label > 63)
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "resolve: host name \"%.80s\" has a label over 63 bytes", host);
    }
    return RILL_OK;
}

bool rilli_is_localhost(const char *host)
{
    static const char name[] = "localhost";
    size_t n = sizeof name - 1;
    size_t len = strlen(host);
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (len < n || strncasecmp(host + len - n, name, n) != 0)
        return false;
    return len == n || host[len - n - 1] == '.'; /* "localhost", or a label ending in ".": a.b */
}

size_t rilli_loopback_ips(struct rilli_ip ips[2])
{
    static const unsigned char v6[16] = { [15] = 1 };
    static const unsigned char v4[4] = { 127, 0, 0, 1 };
    memset(ips, 0, 2 * sizeof *ips);
    ips[0].family = 6;
    memcpy(ips[0].bytes, v6, sizeof v6);
    ips[1].family = 4;
    memcpy(ips[1].bytes, v4, sizeof v4);
    return 2;
}

static void fill_addr(rill_addr *a, const struct rilli_ip *ip, uint16_t port, bool text)
{
    memset(a, 0, sizeof *a);
    a->family = ip->family;
    if (ip->family == 4) {
        struct sockaddr_in in;
        memset(&in, 0, sizeof in);
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        memcpy(&in.sin_addr, ip->bytes, 4);
        memcpy(a->sa, &in, sizeof in);
        a->sa_len = sizeof in;
    } else {
        struct sockaddr_in6 in6;
        memset(&in6, 0, sizeof in6);
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons(port);
        memcpy(&in6.sin6_addr, ip->bytes, 16);
        memcpy(a->sa, &in6, sizeof in6);
        a->sa_len = sizeof in6;
    }
    if (text)
        rilli_addr_text(a);
}

const char *rilli_addr_text(rill_addr *a)
{
    if (!a->text[0])
        rilli_sockaddr_format((const struct sockaddr *)(const void *)a->sa, a->sa_len, a->text,
                              sizeof a->text);
    return a->text;
}

rill_status rilli_addrs_build(const char *host, const struct rilli_ip *ips, size_t n, uint16_t port,
                              int family, rill_addr **addrs, size_t *count, rill_error *err)
{
    return rilli_addrs_build_ex(host, ips, n, port, family, true, addrs, count, err);
}

rill_status rilli_addrs_build_ex(const char *host, const struct rilli_ip *ips, size_t n,
                                 uint16_t port, int family, bool text, rill_addr **addrs,
                                 size_t *count, rill_error *err)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        kept += family == 0 || ips[i].family == family;
    if (kept == 0) {
        return rilli_error_set(err, RILL_E_DNS, 0, "resolve: %.100s: no IPv%d address", host,
                               family);
    }
    rill_addr *out = rilli_calloc(kept, sizeof *out);
    if (!out)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "resolve: out of memory");
    /* RFC 8305 section 4: alternate families, starting with the one sorted first. */
    int first = 0;
    for (size_t i = 0; i < n && !first; i++)
        if (family == 0 || ips[i].family == family)
            first = ips[i].family;
    size_t next[2] = { 0, 0 }; /* scan positions for the first and the other family */
    size_t k = 0;
    for (int turn = 0; k < kept; turn ^= 1) {
        int want = turn == 0 ? first : (first == 4 ? 6 : 4);
        size_t *pos = &next[turn];
        while (*pos < n && !(ips[*pos].family == want && (family == 0 || family == want)))
            (*pos)++;
        if (*pos < n)
            fill_addr(&out[k++], &ips[(*pos)++], port, text);
    }
    *addrs = out;
    *count = kept;
    return RILL_OK;
}

RILL_API void rill_addrs_free(rill_addr *addrs)
{
    rilli_free(addrs);
}
