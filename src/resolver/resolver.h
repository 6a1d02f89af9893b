/* SPDX-License-Identifier: MIT */
/*
 * Internal interface of the context and resolver rooms: src/ctx.c (the context), addr.c (host
 * syntax, numeric addresses, ordering), dns_cache.c (the DNS cache), ares.c (the c-ares driver
 * and lookups; the only file that sees c-ares) and connect.c (the connect race).
 */
#ifndef RILL_RESOLVER_H
#define RILL_RESOLVER_H

#include "internal.h"

struct sockaddr;

/* A bare IP address (no port). */
struct rilli_ip {
    int family; /* 4 or 6 */
    unsigned char bytes[16];
};

/* Parse a numeric IPv4 or IPv6 address ("::1" or "[::1]"); false if not numeric. */
bool rilli_ip_parse(const char *text, struct rilli_ip *ip);

/* Take the address of an AF_INET/AF_INET6 sockaddr; false for other families. */
bool rilli_ip_from_sockaddr(const struct sockaddr *sa, struct rilli_ip *ip);

/*
 * Validate host syntax and port before any query: RILL_E_INVALID with a message for NULL or
 * empty hosts, names over 253 bytes, labels over 63 bytes or empty, spaces, control or non-ASCII
 * bytes, and port 0.
 */
rill_status rilli_host_check(const char *host, uint16_t port, rill_error *err);

/*
 * Whether @p host (a checked name) is "localhost" or ends in ".localhost", in any case, with or
 * without a trailing dot: the names RFC 6761 section 6.3 reserves for the loopback addresses.
 */
bool rilli_is_localhost(const char *host);

/* The loopback addresses localhost resolves to, in order: ::1, 127.0.0.1. Returns 2. */
size_t rilli_loopback_ips(struct rilli_ip ips[2]);

/*
 * Build the connect-ordered rill_addr array from @p ips: keep @p family (0: both), interleave
 * the families starting with the first address's, set @p port. RILL_E_DNS when nothing of the
 * wanted family is left (the message names @p host).
 */
rill_status rilli_addrs_build(const char *host, const struct rilli_ip *ips, size_t n, uint16_t port,
                              int family, rill_addr **addrs, size_t *count, rill_error *err);
/* The same; with @p text false the text fields stay empty until rilli_addr_text() fills them. */
rill_status rilli_addrs_build_ex(const char *host, const struct rilli_ip *ips, size_t n,
                                 uint16_t port, int family, bool text, rill_addr **addrs,
                                 size_t *count, rill_error *err);
/* @p a's text ("127.0.0.1:443", "[::1]:443"), formatted on the first call. */
const char *rilli_addr_text(rill_addr *a);

/* rill_resolve with a family override (0: the context's). */
rill_status rilli_resolve(rill_ctx *ctx, const char *host, uint16_t port, int family,
                          int timeout_ms, rill_addr **addrs, size_t *count, rill_error *err);

/* ---- the context (src/ctx.c) ---- */

struct rilli_dns;

/* One more holder of @p ctx: rill_ctx_free() drops one, and the last frees it. */
void rilli_ctx_ref(rill_ctx *ctx);

/* The context's address family: 0 (both), 4 or 6. */
int rilli_ctx_family(const rill_ctx *ctx);

/* The override for @p host (any case) and @p port: its addresses, owned by the context. */
bool rilli_ctx_override(const rill_ctx *ctx, const char *host, uint16_t port,
                        const struct rilli_ip **ips, size_t *count);

/* The context's resolver. */
struct rilli_dns *rilli_ctx_dns(rill_ctx *ctx);

/* ---- the DNS cache (dns_cache.c) ---- */

/*
 * One entry: the answer for a (name, family) pair, family 4, 6 or 0 (both), or the query still
 * in flight for it. The cache has no lock of its own: its owner serialises every call.
 *
 * An entry is pending from rilli_dns_cache_add until rilli_dns_cache_answer; the query holds a
 * pending entry, so the cache never frees it. Users hold an entry with rilli_dns_cache_hold
 * while they wait for it or read it, and let go with rilli_dns_cache_release; a held entry is
 * never freed either. Only answered entries nobody holds are dropped: when they expire (every
 * call frees those first), and least recently used first when the cache holds more than its
 * limit. An answer kept for 0 seconds (a server failure, a partial answer) lives only as long
 * as someone holds it.
 */
struct rilli_dns_entry {
    /* Read by the owner; set only through the functions below. */
    bool ready;         /* the answer is in */
    bool cacheable;     /* (the cache's own) the answer is to be kept when idle */
    int waiters;        /* holds taken with rilli_dns_cache_hold */
    rill_status status; /* once ready: RILL_OK (ips) or the failure (reason) */
    int family;         /* 4, 6 or 0 */
    const char *reason; /* static text; "" on success */
    struct rilli_ip *ips;
    size_t count;
    /* The resolver's: non-blocking lookups to wake when the answer comes. */
    struct rilli_dns_lookup *wakers;
    /* The cache's own. */
    struct rilli_dns_entry *next;                /* hash chain */
    struct rilli_dns_entry *lru_prev, *lru_next; /* idle entries by last use */
    size_t heap_slot;                            /* in the expiry heap; SIZE_MAX: not idle */
    int64_t expires_ms;
    char name[]; /* as first asked */
};

struct rilli_dns_cache;

/*
 * An empty cache that keeps at most @p max entries (0: keeps no answer once nobody holds it);
 * entries pending or held may take it over the limit until they are answered and let go.
 * NULL when out of memory.
 */
struct rilli_dns_cache *rilli_dns_cache_new(size_t max);

/* Free the cache and every entry in it, held or pending. NULL is accepted. */
void rilli_dns_cache_free(struct rilli_dns_cache *c);

/*
 * The entry for @p name (compared without regard to case) and @p family, pending, held or
 * answered and not expired; NULL if there is none. Not held: hold it to keep it.
 */
struct rilli_dns_entry *rilli_dns_cache_find(struct rilli_dns_cache *c, const char *name,
                                             int family);

/*
 * A new pending entry for @p name and @p family, not yet held (the least recently used idle
 * entry makes room when the cache is full); NULL when out of memory.
 */
struct rilli_dns_entry *rilli_dns_cache_add(struct rilli_dns_cache *c, const char *name,
                                            int family);

/* Hold @p e: one more user waiting for it or reading it. */
void rilli_dns_cache_hold(struct rilli_dns_cache *c, struct rilli_dns_entry *e);

/*
 * Let go of @p e. An answered entry nobody holds any more is kept (as the most recently used)
 * or freed: do not use @p e after this call.
 */
void rilli_dns_cache_release(struct rilli_dns_cache *c, struct rilli_dns_entry *e);

/*
 * Give pending @p e its answer: @p status with @p reason (static text, not copied; NULL for
 * none) or, for RILL_OK, @p count addresses in @p ips (taken over, allocated with rilli_malloc),
 * kept for @p keep_s seconds (0: only while held). Unless you hold @p e, do not use it after
 * this call: an entry nobody holds is kept or freed at once.
 */
void rilli_dns_cache_answer(struct rilli_dns_cache *c, struct rilli_dns_entry *e,
                            rill_status status, const char *reason, struct rilli_ip *ips,
                            size_t count, int keep_s);

/* Free what has expired, then report the entries held now and the evictions so far. */
void rilli_dns_cache_counts(struct rilli_dns_cache *c, uint64_t *entries, uint64_t *evictions);

/* ---- the resolver (ares.c) ---- */

/*
 * Start the resolver of a context: c-ares's library init (once), a channel with the query
 * settings and servers of @p opts (validated by the caller, but for the server list), a cache.
 * Errors: RILL_E_INVALID (bad server list), RILL_E_DNS (c-ares could not start), RILL_E_NOMEM.
 */
rill_status rilli_dns_new(const rill_ctx_opts *opts, struct rilli_dns **out, rill_error *err);

/* Cancel what is outstanding and free the resolver. NULL is accepted. */
void rilli_dns_free(struct rilli_dns *dns);

/* ---- non-blocking lookups (ares.c), for the connect machine ---- */

struct rilli_dns_lookup;

/*
 * Start or join the lookup of @p name for @p family (4: A, 6: AAAA) on @p ctx's resolver; a
 * cached answer makes it done at once. Errors: RILL_E_NOMEM.
 */
rill_status rilli_dns_lookup_new(rill_ctx *ctx, const char *name, int family,
                                 struct rilli_dns_lookup **out, rill_error *err);

/* Write to eventfd @p wakefd when the answer comes (at once if it is there). */
void rilli_dns_lookup_wake(struct rilli_dns_lookup *lk, int wakefd);

/*
 * Whether the answer is in; then its status, reason ("" on success) and addresses, valid until
 * rilli_dns_lookup_free().
 */
bool rilli_dns_lookup_done(struct rilli_dns_lookup *lk, rill_status *st, const char **reason,
                           const struct rilli_ip **ips, size_t *count);

/* Stop waiting (the query goes on for the cache unless nobody waits any more). NULL is ok. */
void rilli_dns_lookup_free(struct rilli_dns_lookup *lk);

/*
 * What the op with wake eventfd @p wakefd waits on for DNS: when this op is the one that drives
 * DNS (one op at a time does, the first to ask), the resolver's descriptor (one epoll
 * descriptor over c-ares's sockets, open as long as the context; wait for POLLIN) with the ms
 * until its next timer in *timeout_ms; else -1 (its eventfd wakes it) and *timeout_ms -1.
 */
int rilli_dns_wants(rill_ctx *ctx, int wakefd, int *timeout_ms);

/* The op with @p wakefd stops waiting for DNS: if it drove, another waiting op takes over. */
void rilli_dns_release(rill_ctx *ctx, int wakefd);

/* Process what the resolver's sockets have ready, and the timers that are due. */
void rilli_dns_process(rill_ctx *ctx);

/* Fill the resolver's counters into @p stats (zeroed by the caller). Thread-safe. */
void rilli_dns_stats(struct rilli_dns *dns, rill_ctx_stats *stats);

#endif
