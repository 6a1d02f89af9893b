/*
 * The context: one c-ares channel, a DNS cache and static overrides, shared by threads.
 *
 * Locking: every c-ares call is made with ctx->lock held, so c-ares callbacks always run with
 * the lock held too. One waiting thread at a time drives the channel (polls its sockets with the
 * lock released, then processes them under the lock); the other waiters sleep on ctx->done and
 * take over driving when the driver leaves. Concurrent lookups of one name share one cache
 * entry and so one query.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"
#include "resolver.h"

enum entry_state { ENTRY_PENDING, ENTRY_READY };

struct entry {
    struct entry *next;
    struct rill_ctx *ctx;
    char *name;
    int family;
    enum entry_state state;
    int waiters;
    bool cacheable;
    int64_t expires_ms;
    rill_status status;
    char reason[128];
    struct rilli_ip *ips;
    size_t count;
};

struct override {
    char *host;
    int port; /* -1: any */
    struct rilli_ip *ips;
    size_t count;
};

struct rill_ctx {
    pthread_mutex_t lock;
    pthread_cond_t done;
    ares_channel channel;
    bool driving;
    bool cancelling; /* inside ares_cancel: answers delivered now are partial, not cached */
    int family;
    int cache_max_ttl_s;
    int negative_ttl_s;
    size_t window;
    /* The cache: a hash table of entry chains keyed on the lower-cased name and family. */
    struct entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t nentries;
    size_t pending; /* entries whose query is in flight */
    size_t waiting; /* waiters on those entries; 0 with pending > 0 means abandoned */
    struct override *overrides;
    size_t override_count;
    rill_ctx_stats stats;
    struct rilli_sess_cache *sessions; /* TLS client sessions (own lock) */
};

struct rilli_sess_cache *rilli_ctx_sessions(rill_ctx *ctx)
{
    return ctx ? ctx->sessions : NULL;
}

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status = ARES_SUCCESS;

static void library_init(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

RILL_API void rill_ctx_opts_init(rill_ctx_opts *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->cache_max_ttl_s = 300;
    opts->negative_ttl_s = 5;
    opts->query_timeout_ms = 2000;
    opts->query_tries = 3;
    opts->max_queries_in_flight = 64;
    opts->tls_session_cache_max = 256;
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

static const struct override *find_override(const rill_ctx *ctx, const char *host, uint16_t port)
{
    for (size_t i = 0; i < ctx->override_count; i++) {
        const struct override *o = &ctx->overrides[i];
        if ((o->port < 0 || o->port == port) && strcasecmp(o->host, host) == 0)
            return o;
    }
    return NULL;
}

/* ---- DNS server lists ("127.0.0.1:5353,[::1]:5353") ---- */

static bool valid_port(const char *p, size_t len)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

static bool valid_ip(const char *p, size_t len, int af)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return inet_pton(af, buf, bin) == 1;
}

/*
 * c-ares takes a bad port modulo 65536 and an empty list as "no servers", so every entry is
 * checked here: IPv4[:PORT], [IPv6][:PORT] or a bare IPv6 address.
 */
static bool valid_server(const char *p, size_t len)
{
    if (len > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (!close || !valid_ip(p + 1, (size_t)(close - p - 1), AF_INET6))
            return false;
        size_t rest = len - (size_t)(close - p) - 1;
        return rest == 0 || (close[1] == ':' && valid_port(close + 2, rest - 1));
    }
    if (valid_ip(p, len, AF_INET) || valid_ip(p, len, AF_INET6))
        return true;
    const char *colon = memchr(p, ':', len);
    return colon && valid_ip(p, (size_t)(colon - p), AF_INET) &&
           valid_port(colon + 1, len - (size_t)(colon - p) - 1);
}

static rill_status check_servers(const char *csv, rill_error *err)
{
    const char *p = csv;
    do {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!valid_server(p, len)) {
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "ctx: bad DNS server \"%.*s\" in \"%.80s\" (want ADDR, "
                                   "ADDR:PORT or [IPv6]:PORT, port 1..65535)",
                                   (int)(len > 60 ? 60 : len), p, csv);
        }
        p = comma ? comma + 1 : NULL;
    } while (p);
    return RILL_OK;
}

/* ---- context ---- */

static void free_entry(struct entry *e)
{
    rilli_free(e->name);
    rilli_free(e->ips);
    rilli_free(e);
}

RILL_API void rill_ctx_free(rill_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->channel) {
        pthread_mutex_lock(&ctx->lock);
        ares_cancel(ctx->channel); /* callbacks release entries nobody waits for */
        ares_destroy(ctx->channel);
        pthread_mutex_unlock(&ctx->lock);
    }
    for (size_t b = 0; ctx->buckets && b < ctx->nbuckets; b++) {
        for (struct entry *e = ctx->buckets[b], *next; e; e = next) {
            next = e->next;
            free_entry(e);
        }
    }
    rilli_free(ctx->buckets);
    for (size_t i = 0; ctx->overrides && i < ctx->override_count; i++) {
        rilli_free(ctx->overrides[i].host);
        rilli_free(ctx->overrides[i].ips);
    }
    rilli_free(ctx->overrides);
    rilli_sess_cache_free(ctx->sessions);
    pthread_cond_destroy(&ctx->done);
    pthread_mutex_destroy(&ctx->lock);
    rilli_free(ctx);
}

static rill_status init_sync(rill_ctx *ctx, rill_error *err)
{
    pthread_condattr_t attr;
    if (pthread_mutex_init(&ctx->lock, NULL) != 0)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: cannot create a lock");
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int r = pthread_cond_init(&ctx->done, &attr);
    pthread_condattr_destroy(&attr);
    if (r != 0) {
        pthread_mutex_destroy(&ctx->lock);
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: cannot create a condition variable");
    }
    return RILL_OK;
}

RILL_API rill_status rill_ctx_new(const rill_ctx_opts *opts, rill_ctx **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: out is NULL");
    rill_ctx_opts defaults;
    if (!opts) {
        rill_ctx_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts->family != 0 && opts->family != 4 && opts->family != 6)
        return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: family %d is not 0, 4 or 6",
                               opts->family);
    if (opts->max_queries_in_flight < 1 || opts->max_queries_in_flight > 4096)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "ctx: max_queries_in_flight %d is not in 1 .. 4096",
                               opts->max_queries_in_flight);
    if (opts->cache_max_ttl_s < 0 || opts->negative_ttl_s < 0 || opts->query_timeout_ms < 0 ||
        opts->query_tries < 0 || opts->tls_session_cache_max < 0)
        return rilli_error_set(err, RILL_E_INVALID, 0, "ctx: negative cache or query setting");
    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS)
        return rilli_error_set(err, RILL_E_DNS, 0, "ctx: c-ares library init failed: %s",
                               ares_strerror(library_status));
    rill_ctx *ctx = rilli_calloc(1, sizeof *ctx);
    if (!ctx)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    rill_status st = init_sync(ctx, err);
    if (st != RILL_OK) {
        rilli_free(ctx);
        return st;
    }
    ctx->family = opts->family;
    ctx->cache_max_ttl_s = opts->cache_max_ttl_s;
    ctx->negative_ttl_s = opts->negative_ttl_s;
    ctx->window = (size_t)opts->max_queries_in_flight;
    ctx->nbuckets = 64;
    ctx->buckets = rilli_calloc(ctx->nbuckets, sizeof(struct entry *));
    ctx->sessions = rilli_sess_cache_new((size_t)opts->tls_session_cache_max);
    if (!ctx->buckets || (opts->tls_session_cache_max > 0 && !ctx->sessions)) {
        st = rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
        goto fail;
    }

    size_t n = 0;
    while (opts->overrides && opts->overrides[n])
        n++;
    if (n) {
        ctx->overrides = rilli_calloc(n, sizeof *ctx->overrides);
        if (!ctx->overrides) {
            st = rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            st = parse_override(opts->overrides[i], &ctx->overrides[i], err);
            ctx->override_count = i + 1; /* so a partly parsed entry is freed too */
            if (st != RILL_OK)
                goto fail;
        }
    }

    struct ares_options ao;
    memset(&ao, 0, sizeof ao);
    int mask = 0;
    if (opts->query_timeout_ms > 0) {
        ao.timeout = opts->query_timeout_ms;
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (opts->query_tries > 0) {
        ao.tries = opts->query_tries;
        mask |= ARES_OPT_TRIES;
    }
    int r = ares_init_options(&ctx->channel, &ao, mask);
    if (r != ARES_SUCCESS) {
        ctx->channel = NULL;
        st = rilli_error_set(err, r == ARES_ENOMEM ? RILL_E_NOMEM : RILL_E_DNS, 0,
                             "ctx: cannot start the resolver: %s", ares_strerror(r));
        goto fail;
    }
    if (opts->dns_servers) {
        st = check_servers(opts->dns_servers, err);
        if (st != RILL_OK)
            goto fail;
        r = ares_set_servers_ports_csv(ctx->channel, opts->dns_servers);
        if (r != ARES_SUCCESS) {
            st = rilli_error_set(err, r == ARES_ENOMEM ? RILL_E_NOMEM : RILL_E_INVALID, 0,
                                 "ctx: bad DNS server list \"%.80s\": %s", opts->dns_servers,
                                 ares_strerror(r));
            goto fail;
        }
    }
    *out = ctx;
    return RILL_OK;
fail:
    rill_ctx_free(ctx);
    return st;
}

RILL_API void rill_ctx_get_stats(rill_ctx *ctx, rill_ctx_stats *stats)
{
    if (!stats)
        return;
    memset(stats, 0, sizeof *stats);
    if (!ctx)
        return;
    pthread_mutex_lock(&ctx->lock);
    *stats = ctx->stats;
    pthread_mutex_unlock(&ctx->lock);
}

/* ---- lookups ---- */

static size_t hash_name(const char *name, int family)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)family;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= (uint64_t)(*p >= 'A' && *p <= 'Z' ? *p + ('a' - 'A') : *p);
        h *= 0x100000001b3ull;
    }
    return (size_t)(h ^ (h >> 32));
}

static struct entry **bucket_of(rill_ctx *ctx, const char *name, int family)
{
    return &ctx->buckets[hash_name(name, family) & (ctx->nbuckets - 1)];
}

static void unlink_entry(rill_ctx *ctx, struct entry *e)
{
    for (struct entry **pp = bucket_of(ctx, e->name, e->family); *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            ctx->nentries--;
            return;
        }
    }
}

/* Double the table when chains grow long; without memory it simply stays as it is. */
static void maybe_grow(rill_ctx *ctx)
{
    if (ctx->nentries <= 2 * ctx->nbuckets || ctx->nbuckets > ((size_t)1 << 24))
        return;
    size_t n = ctx->nbuckets * 2;
    struct entry **b = rilli_calloc(n, sizeof(struct entry *));
    if (!b)
        return;
    for (size_t i = 0; i < ctx->nbuckets; i++) {
        for (struct entry *e = ctx->buckets[i], *next; e; e = next) {
            next = e->next;
            struct entry **slot = &b[hash_name(e->name, e->family) & (n - 1)];
            e->next = *slot;
            *slot = e;
        }
    }
    rilli_free(ctx->buckets);
    ctx->buckets = b;
    ctx->nbuckets = n;
}

/* The shortest TTL of the answer, CNAMEs of the chain included; negative TTLs count as 0. */
static int min_ttl(const struct ares_addrinfo *res, size_t *count)
{
    bool seen = false;
    int ttl = 0;
    *count = 0;
    for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next) {
        if (n->ai_family != AF_INET && n->ai_family != AF_INET6)
            continue;
        (*count)++;
        int t = n->ai_ttl < 0 ? 0 : n->ai_ttl;
        if (!seen || t < ttl)
            ttl = t;
        seen = true;
    }
    for (const struct ares_addrinfo_cname *c = res ? res->cnames : NULL; c && seen; c = c->next) {
        int t = c->ttl < 0 ? 0 : c->ttl;
        if (t < ttl)
            ttl = t;
    }
    return ttl;
}

/* c-ares callback, run with ctx->lock held (every c-ares call is made under it). */
static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct entry *e = arg;
    rill_ctx *ctx = e->ctx;
    size_t count = 0;
    int ttl = min_ttl(res, &count);
    e->state = ENTRY_READY;
    e->cacheable = false;
    ctx->pending--;
    ctx->waiting -= (size_t)e->waiters;
    if (status == ARES_SUCCESS && count > 0) {
        e->ips = rilli_calloc(count, sizeof *e->ips);
        if (!e->ips) {
            e->status = RILL_E_NOMEM;
            snprintf(e->reason, sizeof e->reason, "out of memory");
        } else {
            for (const struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next) {
                if (rilli_ip_from_sockaddr(n->ai_addr, &e->ips[e->count]))
                    e->count++;
            }
            int keep = ttl < ctx->cache_max_ttl_s ? ttl : ctx->cache_max_ttl_s;
            e->status = RILL_OK;
            /* c-ares ends a cancelled lookup with what it has (say, A without AAAA): a
             * waiter may use it, but it is not the whole answer, so it is not cached. */
            e->cacheable = keep > 0 && !ctx->cancelling;
            e->expires_ms = rilli_now_ms() + (int64_t)keep * 1000;
        }
    } else if (status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        e->status = RILL_E_DNS;
        snprintf(e->reason, sizeof e->reason, "%s",
                 status == ARES_ENOTFOUND ? "no such name (NXDOMAIN)"
                                          : "no address of the wanted family");
        int keep =
            ctx->negative_ttl_s < ctx->cache_max_ttl_s ? ctx->negative_ttl_s : ctx->cache_max_ttl_s;
        e->cacheable = keep > 0 && !ctx->cancelling;
        e->expires_ms = rilli_now_ms() + (int64_t)keep * 1000;
    } else {
        /* Failures of the servers or the network are not cached: the next lookup asks again. */
        e->status = status == ARES_ETIMEOUT ? RILL_E_TIMEOUT
                    : status == ARES_ENOMEM ? RILL_E_NOMEM
                                            : RILL_E_DNS;
        snprintf(e->reason, sizeof e->reason, "%s", ares_strerror(status));
    }
    if (res)
        ares_freeaddrinfo(res);
    if (e->waiters == 0 && !e->cacheable) {
        /* Every waiter gave up (deadline) or the context is being freed: nobody reads it. */
        unlink_entry(ctx, e);
        free_entry(e);
    }
    pthread_cond_broadcast(&ctx->done);
}

static struct entry *find_entry(rill_ctx *ctx, const char *name, int family)
{
    int64_t now = rilli_now_ms();
    for (struct entry **pp = bucket_of(ctx, name, family); *pp;) {
        struct entry *e = *pp;
        bool stale =
            e->state == ENTRY_READY && e->waiters == 0 && (!e->cacheable || e->expires_ms <= now);
        if (stale) {
            *pp = e->next;
            ctx->nentries--;
            free_entry(e);
            continue;
        }
        if (e->family == family && strcasecmp(e->name, name) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

/* Drive the channel once: wait (lock released) for its sockets or its next timeout. */
static void drive_once(rill_ctx *ctx, int64_t deadline)
{
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    /* Tested as unsigned: c-ares's own macros shift 1 into the sign bit of an int. */
    unsigned bits = (unsigned)ares_getsock(ctx->channel, socks, ARES_GETSOCK_MAXNUM);
    struct pollfd pfd[ARES_GETSOCK_MAXNUM];
    nfds_t n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
        bool rd = (bits & (1u << i)) != 0;
        bool wr = (bits & (1u << (i + ARES_GETSOCK_MAXNUM))) != 0;
        short ev = (short)((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
        if (ev)
            pfd[n++] = (struct pollfd){ .fd = socks[i], .events = ev };
    }
    struct timeval maxtv, tv;
    int left = rilli_remaining_ms(deadline);
    maxtv.tv_sec = left < 0 ? 3600 : left / 1000;
    maxtv.tv_usec = left < 0 ? 0 : (left % 1000) * 1000;
    struct timeval *tvp = ares_timeout(ctx->channel, &maxtv, &tv);
    int wait_ms = (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
    pthread_mutex_unlock(&ctx->lock);
    int r = poll(pfd, n, wait_ms);
    pthread_mutex_lock(&ctx->lock);
    if (r <= 0) {
        ares_process_fd(ctx->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
        return;
    }
    for (nfds_t i = 0; i < n; i++) {
        if (!pfd[i].revents)
            continue;
        bool rd = (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        bool wr = (pfd[i].revents & POLLOUT) != 0;
        ares_process_fd(ctx->channel, rd ? pfd[i].fd : ARES_SOCKET_BAD,
                        wr ? pfd[i].fd : ARES_SOCKET_BAD);
    }
}

/*
 * One round of waiting, under the lock: drive the channel if nobody does, else sleep until
 * the driver reports progress or the deadline passes.
 */
static void wait_round(rill_ctx *ctx, int64_t deadline)
{
    if (!ctx->driving) {
        ctx->driving = true;
        drive_once(ctx, deadline);
        ctx->driving = false;
        pthread_cond_broadcast(&ctx->done); /* progress, and let another waiter drive */
        return;
    }
    if (deadline < 0) {
        pthread_cond_wait(&ctx->done, &ctx->lock);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int left = rilli_remaining_ms(deadline);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&ctx->done, &ctx->lock, &ts);
}

/*
 * Under the lock: the entry for @p name, from the cache, joined while in flight, or with a new
 * query started; counted as one more waiter. NULL when out of memory.
 */
static struct entry *lookup_start(rill_ctx *ctx, const char *name, int family)
{
    struct entry *e = find_entry(ctx, name, family);
    if (e) {
        if (e->state == ENTRY_READY) {
            ctx->stats.cache_hits++;
        } else {
            ctx->stats.merged++;
            ctx->waiting++;
        }
        e->waiters++;
        return e;
    }
    e = rilli_calloc(1, sizeof *e);
    size_t len = strlen(name);
    if (e)
        e->name = rilli_malloc(len + 1);
    if (!e || !e->name) {
        rilli_free(e);
        return NULL;
    }
    memcpy(e->name, name, len + 1);
    e->ctx = ctx;
    e->family = family;
    e->state = ENTRY_PENDING;
    maybe_grow(ctx);
    struct entry **slot = bucket_of(ctx, name, family);
    e->next = *slot;
    *slot = e;
    ctx->nentries++;
    ctx->pending++;
    ctx->waiting++;
    ctx->stats.queries++;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    e->waiters++; /* before the call: the answer may come at once (hosts file) */
    ares_getaddrinfo(ctx->channel, name, NULL, &hints, on_answer, e);
    return e;
}

/*
 * Under the lock: stop waiting for @p e. When it is ready, copy its answer (the IPs to *ips,
 * or its reason) and return its status; when it is still pending (deadline), leave it to a
 * later lookup or to on_answer, and return RILL_E_TIMEOUT.
 */
static rill_status lookup_finish(rill_ctx *ctx, struct entry *e, struct rilli_ip **ips,
                                 size_t *count, char *reason, size_t reason_len)
{
    e->waiters--;
    if (e->state != ENTRY_READY) {
        ctx->waiting--;
        reason[0] = '\0';
        return RILL_E_TIMEOUT;
    }
    rill_status st = e->status;
    snprintf(reason, reason_len, "%s", e->reason);
    if (st == RILL_OK) {
        *ips = rilli_calloc(e->count, sizeof **ips);
        if (*ips) {
            memcpy(*ips, e->ips, e->count * sizeof **ips);
            *count = e->count;
        } else {
            st = RILL_E_NOMEM;
            snprintf(reason, reason_len, "out of memory");
        }
    }
    if (e->waiters == 0 && !e->cacheable) {
        unlink_entry(ctx, e);
        free_entry(e);
    }
    return st;
}

/*
 * Under the lock, after a waiter gave up at its deadline: when nobody waits for any query any
 * more, cancel everything outstanding, so no c-ares retry schedule outlives its callers (the
 * callbacks free the abandoned entries). c-ares has no per-query cancel, hence all or none.
 */
static void cancel_if_abandoned(rill_ctx *ctx)
{
    if (ctx->pending == 0 || ctx->waiting > 0)
        return;
    ctx->cancelling = true;
    ares_cancel(ctx->channel);
    ctx->cancelling = false;
}

/* Look @p name up (cache, shared query, or a new one) and copy the answer to *ips. */
static rill_status lookup(rill_ctx *ctx, const char *name, int family, int64_t deadline,
                          struct rilli_ip **ips, size_t *count, char *reason, size_t reason_len)
{
    pthread_mutex_lock(&ctx->lock);
    struct entry *e = lookup_start(ctx, name, family);
    if (!e) {
        pthread_mutex_unlock(&ctx->lock);
        snprintf(reason, reason_len, "out of memory");
        return RILL_E_NOMEM;
    }
    while (e->state == ENTRY_PENDING && rilli_remaining_ms(deadline) != 0)
        wait_round(ctx, deadline);
    rill_status st = lookup_finish(ctx, e, ips, count, reason, reason_len);
    cancel_if_abandoned(ctx); /* queries abandoned by others, or by us; e may be freed now */
    pthread_mutex_unlock(&ctx->lock);
    return st;
}

RILL_API rill_status rill_resolve(rill_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                                  rill_addr **addrs, size_t *count, rill_error *err)
{
    if (!addrs || !count)
        return rilli_error_set(err, RILL_E_INVALID, 0, "resolve: addrs or count is NULL");
    *addrs = NULL;
    *count = 0;
    return rilli_resolve(ctx, host, port, 0, timeout_ms, addrs, count, err);
}

rill_status rilli_resolve(rill_ctx *ctx, const char *host, uint16_t port, int family,
                          int timeout_ms, rill_addr **addrs, size_t *count, rill_error *err)
{
    rill_status st = rilli_host_check(host, port, err);
    if (st != RILL_OK)
        return st;
    if (timeout_ms < RILL_TIMEOUT_NONE)
        return rilli_error_set(err, RILL_E_INVALID, 0, "resolve: timeout %d is below -1",
                               timeout_ms);
    if (family == 0 && ctx)
        family = ctx->family;
    struct rilli_ip one;
    if (rilli_ip_parse(host, &one)) /* numeric: never touches DNS */
        return rilli_addrs_build(host, &one, 1, port, family, addrs, count, err);
    if (!ctx)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "resolve: \"%.80s\" is a name and no context was given", host);
    const struct override *o = find_override(ctx, host, port);
    if (o)
        return rilli_addrs_build(host, o->ips, o->count, port, family, addrs, count, err);
    struct rilli_ip *ips = NULL;
    size_t n = 0;
    char reason[128] = "";
    st = lookup(ctx, host, family, rilli_deadline(timeout_ms), &ips, &n, reason, sizeof reason);
    if (st == RILL_E_TIMEOUT && reason[0] == '\0')
        return rilli_error_set(err, st, 0, "resolve: %.100s: no answer within %d ms", host,
                               timeout_ms);
    if (st != RILL_OK)
        return rilli_error_set(err, st, 0, "resolve: %.100s: %s", host, reason);
    st = rilli_addrs_build(host, ips, n, port, family, addrs, count, err);
    rilli_free(ips);
    return st;
}

/* ---- batches ---- */

static void set_result(rill_resolve_result *r, rill_status st, const rill_error *e)
{
    r->status = st;
    if (st != RILL_OK)
        snprintf(r->message, sizeof r->message, "%s", e->msg);
}

/* Turn a finished lookup of result @p r into its addresses or its error. */
static void finish_result(rill_resolve_result *r, rill_status st, struct rilli_ip *ips, size_t n,
                          const char *reason, uint16_t port, int family)
{
    rill_error e = { 0 };
    if (st == RILL_OK)
        st = rilli_addrs_build(r->host, ips, n, port, family, &r->addrs, &r->count, &e);
    else if (st == RILL_E_TIMEOUT && reason[0] == '\0')
        rilli_error_set(&e, st, 0, "resolve: %.80s: no answer in time", r->host);
    else
        rilli_error_set(&e, st, 0, "resolve: %.80s: %s", r->host, reason);
    rilli_free(ips);
    set_result(r, st, &e);
}

RILL_API rill_status rill_resolve_many(rill_ctx *ctx, const char *const *hosts, size_t n,
                                       uint16_t port, int timeout_ms, rill_resolve_result *results)
{
    if ((!results && n) || (!hosts && n))
        return RILL_E_INVALID;
    /* Every result is valid to free from here on, whatever the outcome. */
    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        results[i].host = hosts[i];
        results[i].status = RILL_E_INVALID;
    }
    if (!ctx || timeout_ms < RILL_TIMEOUT_NONE)
        return RILL_E_INVALID;
    int64_t deadline = rilli_deadline(timeout_ms);
    size_t *need = n ? rilli_calloc(n, sizeof *need) : NULL;
    size_t *active = rilli_calloc(ctx->window, sizeof *active);
    struct entry **ent = n ? rilli_calloc(n, sizeof(struct entry *)) : NULL;
    if ((n && (!need || !ent)) || !active) {
        rilli_free(need);
        rilli_free(active);
        rilli_free(ent);
        return RILL_E_NOMEM;
    }
    /* Names that need no query are answered first, without the lock. */
    size_t need_count = 0;
    for (size_t i = 0; i < n; i++) {
        rill_resolve_result *r = &results[i];
        rill_error e = { 0 };
        struct rilli_ip one;
        const struct override *o;
        rill_status st = rilli_host_check(hosts[i], port, &e);
        if (st != RILL_OK)
            set_result(r, st, &e);
        else if (rilli_ip_parse(hosts[i], &one))
            set_result(
                r,
                rilli_addrs_build(hosts[i], &one, 1, port, ctx->family, &r->addrs, &r->count, &e),
                &e);
        else if ((o = find_override(ctx, hosts[i], port)) != NULL)
            set_result(r,
                       rilli_addrs_build(hosts[i], o->ips, o->count, port, ctx->family, &r->addrs,
                                         &r->count, &e),
                       &e);
        else
            need[need_count++] = i;
    }

    /* The rest go out through a window of queries in flight, all under one deadline. */
    size_t started = 0, finished = 0, nactive = 0;
    rill_status overall = RILL_OK;
    pthread_mutex_lock(&ctx->lock);
    while (finished < need_count) {
        while (nactive < ctx->window && started < need_count) {
            size_t i = need[started++];
            ent[i] = lookup_start(ctx, hosts[i], ctx->family);
            if (!ent[i]) {
                finish_result(&results[i], RILL_E_NOMEM, NULL, 0, "out of memory", port, 0);
                finished++;
                continue;
            }
            active[nactive++] = i;
        }
        bool expired = rilli_remaining_ms(deadline) == 0;
        for (size_t k = nactive; k-- > 0;) {
            size_t i = active[k];
            if (ent[i]->state != ENTRY_READY && !expired)
                continue;
            struct rilli_ip *ips = NULL;
            size_t cnt = 0;
            char reason[128];
            rill_status st = lookup_finish(ctx, ent[i], &ips, &cnt, reason, sizeof reason);
            finish_result(&results[i], st, ips, cnt, reason, port, ctx->family);
            ent[i] = NULL;
            active[k] = active[--nactive];
            finished++;
        }
        if (expired) {
            /* Out of time: names not started get what the cache has, else a timeout. */
            for (; started < need_count; started++, finished++) {
                size_t i = need[started];
                struct entry *e = find_entry(ctx, hosts[i], ctx->family);
                if (!e || e->state != ENTRY_READY) {
                    finish_result(&results[i], RILL_E_TIMEOUT, NULL, 0, "", port, 0);
                    continue;
                }
                ctx->stats.cache_hits++;
                e->waiters++;
                struct rilli_ip *ips = NULL;
                size_t cnt = 0;
                char reason[128];
                rill_status st = lookup_finish(ctx, e, &ips, &cnt, reason, sizeof reason);
                finish_result(&results[i], st, ips, cnt, reason, port, ctx->family);
            }
            break;
        }
        if (nactive > 0)
            wait_round(ctx, deadline);
    }
    cancel_if_abandoned(ctx);
    pthread_mutex_unlock(&ctx->lock);
    rilli_free(need);
    rilli_free(active);
    rilli_free(ent);
    for (size_t i = 0; i < n && overall == RILL_OK; i++)
        if (results[i].status == RILL_E_TIMEOUT)
            overall = RILL_E_TIMEOUT;
    return overall;
}

RILL_API void rill_resolve_results_free(rill_resolve_result *results, size_t n)
{
    for (size_t i = 0; results && i < n; i++) {
        rill_addrs_free(results[i].addrs);
        results[i].addrs = NULL;
        results[i].count = 0;
    }
}
