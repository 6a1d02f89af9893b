/* SPDX-License-Identifier: MIT */
/*
 * fuzz_addr: host, port and address parsing, without touching the network.
 *
 * Input: [0] flags (bits 0-1: context family 0/4/6/0; 0x04: resolve with a second batch call),
 * [1..2] port (0 included: it must be refused), then text lines separated by '\n':
 * line 1 is a DNS server list ("" for none), the middle lines are overrides "HOST:PORT:ADDR[,..]",
 * and the last line is a host.
 *
 * What runs, and why none of it leaves the machine:
 *  - rill_ctx_new() with the server list and the overrides from the input: must succeed or fail
 *    cleanly with RILL_E_INVALID (or RILL_E_DNS/NOMEM) and a message; the context is freed
 *    without a lookup, so a server list naming a real address is never used.
 *  - rill_ctx_new() with the same overrides and the server list "127.0.0.1:9" (the loopback
 *    discard port) and one try; then rill_resolve() with a 0 ms timeout for the host and for
 *    each override's HOST, and rill_resolve_many() for all of them. Names that match an
 *    override or are numeric never reach DNS; others start a c-ares query to 127.0.0.1:9 that
 *    the 0 ms deadline abandons at once (/etc/hosts may answer "localhost").
 *  - rill_resolve() with no context: rill's host checks and numeric parsing alone.
 *  - rilli_parse_numeric(), the parser behind rill_tcp_connect_addr() and rill_listen()
 *    ("127.0.0.1", "::1", "[::1]"), called directly and checked against inet_pton().
 * The "host:port" splitting of rillcat's command line is not library code and is not covered.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "internal.h"

#define MAX_LINES 10

static void check_error(rill_status st, const rill_error *err, const char *op)
{
    FZ_CHECK(st == RILL_E_INVALID || st == RILL_E_DNS || st == RILL_E_TIMEOUT ||
                 st == RILL_E_NOMEM,
             "%s: unexpected status %d (%s)", op, (int)st, rill_strerror(st));
    FZ_CHECK(err->code == st && err->msg[0] != '\0', "%s: status %d without its message", op,
             (int)st);
    FZ_CHECK(memchr(err->msg, '\0', sizeof err->msg) != NULL, "%s: message not terminated", op);
}

static void check_addrs(const rill_addr *addrs, size_t count, uint16_t port, int family,
                        const char *op)
{
    FZ_CHECK(addrs != NULL && count >= 1, "%s: RILL_OK with %zu addresses", op, count);
    for (size_t i = 0; i < count; i++) {
        const rill_addr *a = &addrs[i];
        FZ_CHECK(a->family == 4 || a->family == 6, "%s: family %d", op, a->family);
        FZ_CHECK(family == 0 || a->family == family, "%s: IPv%d address for an IPv%d context",
                 op, a->family, family);
        FZ_CHECK(a->sa_len == (a->family == 4 ? sizeof(struct sockaddr_in)
                                              : sizeof(struct sockaddr_in6)),
                 "%s: sa_len %u", op, a->sa_len);
        FZ_CHECK(memchr(a->text, '\0', sizeof a->text) != NULL && a->text[0] != '\0',
                 "%s: text not terminated", op);
        uint16_t p;
        memcpy(&p, a->sa + 2, sizeof p); /* sin_port and sin6_port share this offset */
        FZ_CHECK(ntohs(p) == port, "%s: port %u, asked for %u", op, ntohs(p), port);
    }
}

static void resolve_one(rill_ctx *ctx, const char *host, uint16_t port, int family)
{
    rill_addr *addrs = NULL;
    size_t count = 0;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_resolve(ctx, host, port, 0, &addrs, &count, &err);
    if (st == RILL_OK)
        check_addrs(addrs, count, port, family, "rill_resolve");
    else
        check_error(st, &err, "rill_resolve");
    if (st == RILL_OK && port != 0) {
        /* A numeric host is its own single answer, for any context. */
        unsigned char bin[16];
        if (inet_pton(AF_INET, host, bin) == 1)
            FZ_CHECK(count == 1 && addrs[0].family == 4, "numeric IPv4 host gave %zu", count);
    }
    rill_addrs_free(addrs);
    if (st == RILL_E_INVALID) /* a host refused without a context is refused with one too */
        return;
    if (!ctx)
        FZ_CHECK(st != RILL_E_DNS && st != RILL_E_TIMEOUT, "DNS status without a context");
}

static void check_numeric(const char *text, uint16_t port)
{
    struct sockaddr_storage ss;
    unsigned len = 0;
    bool ok = rilli_parse_numeric(text, port, &ss, &len);
    unsigned char bin[16];
    size_t n = strlen(text);
    bool v4 = text[0] != '[' && inet_pton(AF_INET, text, bin) == 1;
    bool v6 = !v4 && inet_pton(AF_INET6, text, bin) == 1;
    if (!v4 && !v6 && n >= 3 && text[0] == '[' && text[n - 1] == ']' && n - 2 < 64) {
        char inner[64];
        memcpy(inner, text + 1, n - 2);
        inner[n - 2] = '\0';
        v6 = inet_pton(AF_INET6, inner, bin) == 1;
    }
    FZ_CHECK(!(v4 || v6) || ok, "rilli_parse_numeric refused \"%s\", which inet_pton takes",
             text);
    if (!ok)
        return;
    FZ_CHECK(v4 || v6, "rilli_parse_numeric took \"%s\", which inet_pton refuses", text);
    if (v4) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&ss;
        FZ_CHECK(in->sin_family == AF_INET && len == sizeof *in && ntohs(in->sin_port) == port &&
                     memcmp(&in->sin_addr, bin, 4) == 0,
                 "rilli_parse_numeric: wrong IPv4 result for \"%s\"", text);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&ss;
        FZ_CHECK(in6->sin6_family == AF_INET6 && len == sizeof *in6 &&
                     ntohs(in6->sin6_port) == port && memcmp(&in6->sin6_addr, bin, 16) == 0,
                 "rilli_parse_numeric: wrong IPv6 result for \"%s\"", text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    static const int families[4] = { 0, 4, 6, 0 };
    int family = families[data[0] & 3];
    bool many = (data[0] & 0x04) != 0;
    uint16_t port = (uint16_t)(data[1] << 8 | data[2]);

    /* Split the text into NUL-terminated lines (an embedded NUL just ends that string). */
    char *text = malloc(size - 3 + 1);
    FZ_CHECK(text != NULL, "out of memory");
    memcpy(text, data + 3, size - 3);
    text[size - 3] = '\0';
    char *lines[MAX_LINES];
    size_t nlines = 0;
    for (char *p = text; nlines < MAX_LINES;) {
        lines[nlines++] = p;
        char *nl = memchr(p, '\n', (size_t)(text + (size - 3) - p));
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    const char *servers = lines[0];
    const char *host = lines[nlines - 1];
    const char *overrides[MAX_LINES];
    size_t noverrides = 0;
    for (size_t i = 1; i + 1 < nlines; i++)
        overrides[noverrides++] = lines[i];
    overrides[noverrides] = NULL;

    rill_ctx_opts opts;
    rill_ctx_opts_init(&opts);
    opts.family = family;
    opts.overrides = overrides;
    opts.dns_servers = servers[0] ? servers : NULL;
    rill_ctx *ctx = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = opts.dns_servers ? rill_ctx_new(&opts, &ctx, &err) : RILL_OK;
    if (st == RILL_OK)
        FZ_CHECK(!opts.dns_servers || ctx != NULL, "rill_ctx_new: RILL_OK without a context");
    else
        check_error(st, &err, "rill_ctx_new");
    rill_ctx_free(ctx);
    ctx = NULL;

    opts.dns_servers = "127.0.0.1:9";
    opts.query_tries = 1;
    opts.query_timeout_ms = 1;
    memset(&err, 0, sizeof err);
    st = rill_ctx_new(&opts, &ctx, &err);
    if (st != RILL_OK) {
        check_error(st, &err, "rill_ctx_new (loopback)");
    } else {
        const char *names[MAX_LINES + 1];
        size_t nnames = 0;
        char hosts[MAX_LINES][256];
        for (size_t i = 0; i < noverrides; i++) {
            const char *colon = strchr(overrides[i], ':');
            size_t len = colon ? (size_t)(colon - overrides[i]) : strlen(overrides[i]);
            if (len >= sizeof hosts[i])
                len = sizeof hosts[i] - 1;
            memcpy(hosts[i], overrides[i], len);
            hosts[i][len] = '\0';
            names[nnames++] = hosts[i];
        }
        names[nnames++] = host;
        for (size_t i = 0; i < nnames; i++)
            resolve_one(ctx, names[i], port, family);
        if (many) {
            rill_resolve_result results[MAX_LINES + 1];
            st = rill_resolve_many(ctx, names, nnames, port, 0, results);
            FZ_CHECK(st == RILL_OK || st == RILL_E_TIMEOUT, "rill_resolve_many: %d (%s)",
                     (int)st, rill_strerror(st));
            for (size_t i = 0; i < nnames; i++) {
                if (results[i].status == RILL_OK)
                    check_addrs(results[i].addrs, results[i].count, port, family,
                                "rill_resolve_many");
                else
                    FZ_CHECK(results[i].message[0] != '\0', "rill_resolve_many: no message");
            }
            rill_resolve_results_free(results, nnames);
        }
        rill_ctx_free(ctx);
    }

    resolve_one(NULL, host, port, 0);
    for (size_t i = 0; i < nlines; i++)
        check_numeric(lines[i], port);
    free(text);
    return 0;
}
