/* SPDX-License-Identifier: MIT */
/*
 * The context: options, static overrides, the resolver it owns (src/resolver/ares.c, which
 * keeps the DNS cache), the TLS session cache, lifetime and counters. Nothing here changes
 * after rill_ctx_new, so the fields need no lock; the resolver and the session cache lock
 * themselves.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "resolver/resolver.h"

struct override {
    char *host;
    int port; /* -1: any */
    struct rilli_ip *ips;
    size_t count;
};

struct rill_ctx {
    int refs; /* atomic: the application's, and one per connect op that uses it */
    int family;
    struct override *overrides;
    size_t override_count;
    struct rilli_dns *dns;             /* c-ares channel and DNS cache (own lock) */
    struct rilli_sess_cache *sessions; /* TLS client sessions (own lock) */
};

struct rilli_sess_cache *rilli_ctx_sessions(rill_ctx *ctx)
{
    return ctx ? ctx->sessions : NULL;
}

int rilli_ctx_family(const rill_ctx *ctx)
{
    return ctx->family;
}

struct rilli_dns *rilli_ctx_dns(rill_ctx *ctx)
{
    return ctx->dns;
}

RILL_API void rill_ctx_opts_init(rill_ctx_opts *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->size = rilli_opts_size(sizeof *opts);
    opts->cache_max_ttl_s = 300;
    opts->negative_ttl_s = 5;
    opts->query_timeout_ms = 2000;
    opts->query_tries = 3;
    opts->max_queries_in_flight = 64;
    opts->tls_session_cache_max = 256;
    opts->dns_cache_max = 1000;
}

/* ---- overrides ("HOST:PORT:ADDR[,ADDR]") ---- */

static rill_status parse_override(const char *spec, struct override *o, rill_error *err)
{
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2 || c1 == spec || c2 == c1 + 1 || !c2[1]) {
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "ctx: override \"%.80s\" is not HOST:PORT:ADDR[,ADDR]", spec);
    }
    o->port = -1;
    if (!(c2 - c1 == 2 && c1[1] == '*')) {
        char *end = NULL;
        long port = strtol(c1 + 1, &end, 10);
        if (end != c2 || port < 1 || port > 65535)
            return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: override \"%.80s\": bad port",
                                   spec);
        o->port = (int)port;
    }
    o->host = rilli_malloc((size_t)(c1 - spec) + 1);
    if (!o->host)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    memcpy(o->host, spec, (size_t)(c1 - spec));
    o->host[c1 - spec] = '\0';
    rill_error why;
    if (rilli_host_check(o->host, 1, &why) != RILL_OK)
        return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: override \"%.80s\": %s", spec,
                               why.msg);
    size_t n = 1;
    for (const char *p = c2 + 1; *p; p++)
        n += *p == ',';
    o->ips = rilli_calloc(n, sizeof *o->ips);
    if (!o->ips)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    const char *p = c2 + 1;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char addr[INET6_ADDRSTRLEN + 3];
        if (len == 0 || len >= sizeof addr ||
            (memcpy(addr, p, len), addr[len] = '\0', !rilli_ip_parse(addr, &o->ips[o->count]))) {
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "ctx: override \"%.80s\": \"%.*s\" is not a numeric address",
                                   spec, (int)len, p);
        }
        o->count++;
        p += len;
        if (comma && !*++p) /* "ADDR," leaves an empty last entry */
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "ctx: override \"%.80s\": empty address after ','", spec);
    }
    return RILL_OK;
}

bool rilli_ctx_override(const rill_ctx *ctx, const char *host, uint16_t port,
                        const struct rilli_ip **ips, size_t *count)
{
    for (size_t i = 0; i < ctx->override_count; i++) {
        const struct override *o = &ctx->overrides[i];
        if ((o->port < 0 || o->port == port) && strcasecmp(o->host, host) == 0) {
            *ips = o->ips;
            *count = o->count;
            return true;
        }
    }
    return false;
}

static rill_status parse_overrides(rill_ctx *ctx, const char *const *specs, rill_error *err)
{
    size_t n = 0;
    while (specs && specs[n])
        n++;
    if (n == 0)
        return RILL_OK;
    ctx->overrides = rilli_calloc(n, sizeof *ctx->overrides);
    if (!ctx->overrides)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    for (size_t i = 0; i < n; i++) {
        rill_status st = parse_override(specs[i], &ctx->overrides[i], err);
        ctx->override_count = i + 1; /* so a partly parsed entry is freed too */
        if (st != RILL_OK)
            return st;
    }
    return RILL_OK;
}

/* ---- lifetime ---- */

void rilli_ctx_ref(rill_ctx *ctx)
{
    __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED);
}

RILL_API void rill_ctx_free(rill_ctx *ctx)
{
    if (!ctx || __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    rilli_dns_free(ctx->dns); /* cancels what is outstanding */
    for (size_t i = 0; ctx->overrides && i < ctx->override_count; i++) {
        rilli_free(ctx->overrides[i].host);
        rilli_free(ctx->overrides[i].ips);
    }
    rilli_free(ctx->overrides);
    rilli_sess_cache_free(ctx->sessions);
    rilli_free(ctx);
}

RILL_API rill_status rill_ctx_new(const rill_ctx_opts *opts, rill_ctx **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: out is NULL");
    rill_ctx_opts loaded;
    rill_status lst = rilli_ctx_opts_load(opts, &loaded, err);
    if (lst != RILL_OK)
        return lst;
    opts = &loaded;
    if (opts->family != 0 && opts->family != 4 && opts->family != 6)
        return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: family %d is not 0, 4 or 6",
                               opts->family);
    if (opts->max_queries_in_flight < 1 || opts->max_queries_in_flight > 4096)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "ctx: max_queries_in_flight %d is not in 1 .. 4096",
                               opts->max_queries_in_flight);
    if (opts->cache_max_ttl_s < 0 || opts->negative_ttl_s < 0 || opts->query_timeout_ms < 0 ||
        opts->query_tries < 0 || opts->tls_session_cache_max < 0 || opts->dns_cache_max < 0)
        return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: negative cache or query setting");
    rill_ctx *ctx = rilli_calloc(1, sizeof *ctx);
    if (!ctx)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    ctx->refs = 1;
    ctx->family = opts->family;
    ctx->sessions = rilli_sess_cache_new((size_t)opts->tls_session_cache_max);
    rill_status st = RILL_OK;
    if (opts->tls_session_cache_max > 0 && !ctx->sessions)
        st = rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    if (st == RILL_OK)
        st = parse_overrides(ctx, opts->overrides, err);
    if (st == RILL_OK)
        st = rilli_dns_new(opts, &ctx->dns, err);
    if (st != RILL_OK) {
        rill_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return RILL_OK;
}

RILL_API void rill_ctx_get_stats(rill_ctx *ctx, rill_ctx_stats *stats)
{
    if (!stats)
        return;
    memset(stats, 0, sizeof *stats);
    if (ctx)
        rilli_dns_stats(ctx->dns, stats);
}
