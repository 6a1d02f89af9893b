/* SPDX-License-Identifier: MIT */
/*
 * The context and resolver (src/ctx.c, src/resolver/ares.c, dns_cache.c, addr.c) against a real
 * dnsmasq on 127.0.0.1: each record type, family selection, the TTL cache and its cap, negative
 * caching, shared in-flight queries, deadlines against a server that never answers, numeric hosts
 * and overrides without DNS, host syntax, context options, batches and descriptor leaks. Queries
 * that reach the server are counted twice: by the context's stats and by dnsmasq's own query log.
 * The cache's bound is measured with rill's counting allocator; localhost is checked against a
 * scripted server that answers it with another address, and in a root without /etc/hosts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"
#include "support.h"

static void teardown(void)
{
    rt_dns_stop_all();
    rt_watchdog(0, NULL);
}

/* ---- helpers ---- */

static void opts_for(rill_ctx_opts *o, const char *servers)
{
    rill_ctx_opts_init(o);
    o->dns_servers = servers;
}

static rill_ctx *new_ctx(const rill_ctx_opts *o)
{
    rill_ctx *ctx = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_ctx_new(o, &ctx, &err);
    ck_assert_msg(st == RILL_OK, "rill_ctx_new: %s: %s", rill_strerror(st), err.msg);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static rill_ctx *ctx_with(const char *servers)
{
    rill_ctx_opts o;
    opts_for(&o, servers);
    return new_ctx(&o);
}

static rill_ctx_stats stats_of(rill_ctx *ctx)
{
    rill_ctx_stats st;
    memset(&st, 0xff, sizeof st);
    rill_ctx_get_stats(ctx, &st);
    return st;
}

#define assert_stats(ctx, q, hits, merges)                                                      \
    do {                                                                                        \
        rill_ctx_stats st_ = stats_of(ctx);                                                     \
        ck_assert_msg(st_.queries == (q) && st_.cache_hits == (hits) && st_.merged == (merges), \
                      "stats queries=%llu cache_hits=%llu merged=%llu, wanted %d/%d/%d",        \
                      (unsigned long long)st_.queries, (unsigned long long)st_.cache_hits,      \
                      (unsigned long long)st_.merged, (int)(q), (int)(hits), (int)(merges));    \
    } while (0)

/* Check that @p a is a well-formed entry: family, sockaddr, port and text agree. */
static void check_addr(const rill_addr *a, uint16_t port)
{
    char ip[INET6_ADDRSTRLEN], want[64];
    if (a->family == 4) {
        struct sockaddr_in in;
        ck_assert_uint_eq(a->sa_len, sizeof in);
        memcpy(&in, a->sa, sizeof in);
        ck_assert_int_eq(in.sin_family, AF_INET);
        ck_assert_uint_eq(ntohs(in.sin_port), port);
        ck_assert_ptr_nonnull(inet_ntop(AF_INET, &in.sin_addr, ip, sizeof ip));
        snprintf(want, sizeof want, "%s:%u", ip, (unsigned)port);
    } else {
        ck_assert_int_eq(a->family, 6);
        struct sockaddr_in6 in6;
        ck_assert_uint_eq(a->sa_len, sizeof in6);
        memcpy(&in6, a->sa, sizeof in6);
        ck_assert_int_eq(in6.sin6_family, AF_INET6);
        ck_assert_uint_eq(ntohs(in6.sin6_port), port);
        ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &in6.sin6_addr, ip, sizeof ip));
        snprintf(want, sizeof want, "[%s]:%u", ip, (unsigned)port);
    }
    ck_assert_str_eq(a->text, want);
}

/* Resolve, assert success, check each entry. */
static void resolve_ok(rill_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                       rill_addr **addrs, size_t *count)
{
    rill_error err;
    memset(&err, 0, sizeof err);
    *addrs = NULL;
    *count = 0;
    rill_status st = rill_resolve(ctx, host, port, timeout_ms, addrs, count, &err);
    ck_assert_msg(st == RILL_OK, "resolve %s:%u: %s: %s", host, (unsigned)port, rill_strerror(st),
                  err.msg);
    ck_assert_ptr_nonnull(*addrs);
    ck_assert_uint_ge(*count, 1);
    for (size_t i = 0; i < *count; i++)
        check_addr(&(*addrs)[i], port);
}

/* Assert the addresses are exactly the texts in @p want (any order; NULL-terminated). */
static void assert_texts(const rill_addr *a, size_t n, const char *const *want)
{
    size_t nwant = 0;
    while (want[nwant])
        nwant++;
    char got[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(got, a[i].text, sizeof got - strlen(got) - 2);
        strncat(got, " ", sizeof got - strlen(got) - 1);
    }
    ck_assert_msg(n == nwant, "got %zu addresses (%s), wanted %zu", n, got, nwant);
    for (size_t i = 0; i < nwant; i++) {
        int found = 0;
        for (size_t k = 0; k < n; k++)
            found += strcmp(a[k].text, want[i]) == 0;
        ck_assert_msg(found == 1, "%s appears %d times in: %s", want[i], found, got);
    }
}

/* Resolve expecting failure @p want with @p needle in the message; nothing is returned. */
static void resolve_fails(rill_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                          rill_status want, const char *needle)
{
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_addr *addrs = NULL;
    size_t count = 0;
    rill_status st = rill_resolve(ctx, host, port, timeout_ms, &addrs, &count, &err);
    if (st == RILL_OK) {
        /* Free before failing, so a no-fork run reports the wrong answer and no leak. */
        char first[64];
        snprintf(first, sizeof first, "%s", count ? addrs[0].text : "");
        rill_addrs_free(addrs);
        ck_abort_msg("resolve %s:%u succeeded (%zu addresses, first %s), wanted %d (%s) with "
                     "\"%s\"",
                     host ? host : "(null)", (unsigned)port, count, first, (int)want,
                     rill_strerror(want), needle);
    }
    rt_assert_err(&err, st, want, needle);
    ck_assert_ptr_null(addrs);
    ck_assert_uint_eq(count, 0);
}

/* ---- records ---- */

struct record_case {
    const char *host;
    int family; /* ctx family */
    const char *want[3];
};

static const struct record_case records[] = {
    { RT_DNS_BOTH, 0, { "127.0.0.1:443", "[::1]:443", NULL } },
    { RT_DNS_V4, 0, { "127.0.0.1:443", NULL } },
    { RT_DNS_V6, 0, { "[::1]:443", NULL } },
    { RT_DNS_ALIAS, 0, { "127.0.0.1:443", "[::1]:443", NULL } },
    { "some-host." RT_DNS_WILD, 0, { "127.0.0.1:443", "[::1]:443", NULL } },
    { RT_DNS_BOTH, 4, { "127.0.0.1:443", NULL } },
    { RT_DNS_BOTH, 6, { "[::1]:443", NULL } },
    { RT_DNS_ALIAS, 6, { "[::1]:443", NULL } },
    { RT_DNS_V4, 4, { "127.0.0.1:443", NULL } },
    { RT_DNS_V6, 6, { "[::1]:443", NULL } },
};

START_TEST(test_records)
{
    const struct record_case *c = &records[_i];
    rt_watchdog(20, "test_records");
    rt_dns *dns = rt_dns_start();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.family = c->family;
    rill_ctx *ctx = new_ctx(&o);

    rill_addr *addrs;
    size_t n;
    resolve_ok(ctx, c->host, 443, 5000, &addrs, &n);
    assert_texts(addrs, n, c->want);
    if (n == 2)
        ck_assert_int_ne(addrs[0].family, addrs[1].family); /* interleaved */
    rill_addrs_free(addrs);

    assert_stats(ctx, 1, 0, 0);
    ck_assert_int_ge(rt_dns_query_count(dns, c->host), 1);
    ck_assert_int_le(rt_dns_query_count(dns, c->host), 2); /* A and AAAA, once each */
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* The context's family or the name's records leave nothing: RILL_E_DNS naming the host. */
static const struct {
    const char *host;
    int family;
} wrong_family[] = {
    { RT_DNS_V6, 4 },
    { RT_DNS_V4, 6 },
};

START_TEST(test_wrong_family)
{
    rt_watchdog(20, "test_wrong_family");
    rt_dns *dns = rt_dns_start();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.family = wrong_family[_i].family;
    rill_ctx *ctx = new_ctx(&o);
    resolve_fails(ctx, wrong_family[_i].host, 443, 5000, RILL_E_DNS, wrong_family[_i].host);
    ck_assert_int_ge(rt_dns_query_count(dns, wrong_family[_i].host), 1);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* Order for connecting: families alternate, and the same answer gives the same order. */
START_TEST(test_order_stable)
{
    rt_watchdog(20, "test_order_stable");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_with(rt_dns_servers(dns));
    rill_addr *a, *b;
    size_t na, nb;
    resolve_ok(ctx, RT_DNS_BOTH, 80, 5000, &a, &na);
    resolve_ok(ctx, RT_DNS_BOTH, 8080, 5000, &b, &nb); /* from the cache, another port */
    ck_assert_uint_eq(na, 2);
    ck_assert_uint_eq(nb, 2);
    for (size_t i = 0; i < na; i++)
        ck_assert_int_eq(a[i].family, b[i].family);
    ck_assert_int_ne(a[0].family, a[1].family);
    assert_stats(ctx, 1, 1, 0);
    rill_addrs_free(a);
    rill_addrs_free(b);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* ---- NXDOMAIN ---- */

START_TEST(test_nxdomain)
{
    rt_watchdog(20, "test_nxdomain");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_with(rt_dns_servers(dns));
    resolve_fails(ctx, RT_DNS_MISSING, 443, 5000, RILL_E_DNS, RT_DNS_MISSING);
    int asked = rt_dns_query_count(dns, RT_DNS_MISSING);
    ck_assert_int_ge(asked, 1);
    assert_stats(ctx, 1, 0, 0);

    /* Within negative_ttl_s (default 5 s) the same answer comes from the cache. */
    resolve_fails(ctx, RT_DNS_MISSING, 443, 5000, RILL_E_DNS, RT_DNS_MISSING);
    resolve_fails(ctx, RT_DNS_MISSING, 80, 5000, RILL_E_DNS, RT_DNS_MISSING);
    assert_stats(ctx, 1, 2, 0);
    ck_assert_int_eq(rt_dns_query_count(dns, RT_DNS_MISSING), asked);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

START_TEST(test_nxdomain_expires)
{
    rt_watchdog(20, "test_nxdomain_expires");
    rt_dns *dns = rt_dns_start();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.negative_ttl_s = 1;
    rill_ctx *ctx = new_ctx(&o);
    resolve_fails(ctx, RT_DNS_MISSING, 443, 5000, RILL_E_DNS, RT_DNS_MISSING);
    int asked = rt_dns_query_count(dns, RT_DNS_MISSING);
    resolve_fails(ctx, RT_DNS_MISSING, 443, 5000, RILL_E_DNS, RT_DNS_MISSING);
    assert_stats(ctx, 1, 1, 0);
    usleep(1400 * 1000);
    resolve_fails(ctx, RT_DNS_MISSING, 443, 5000, RILL_E_DNS, RT_DNS_MISSING);
    assert_stats(ctx, 2, 1, 0);
    ck_assert_int_eq(rt_dns_query_count(dns, RT_DNS_MISSING), 2 * asked);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* ---- cache ---- */

START_TEST(test_cache_hit)
{
    rt_watchdog(20, "test_cache_hit");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_with(rt_dns_servers(dns));
    rill_addr *addrs;
    size_t n;
    resolve_ok(ctx, RT_DNS_BOTH, 443, 5000, &addrs, &n);
    rill_addrs_free(addrs);
    int asked = rt_dns_query_count(dns, RT_DNS_BOTH);
    ck_assert_int_eq(rt_dns_query_count_type(dns, RT_DNS_BOTH, "A"), 1);
    ck_assert_int_eq(rt_dns_query_count_type(dns, RT_DNS_BOTH, "AAAA"), 1);
    assert_stats(ctx, 1, 0, 0);

    /* Repeats, on other ports too, are answered from the cache without a query. */
    static const char *const want80[] = { "127.0.0.1:80", "[::1]:80", NULL };
    for (int i = 0; i < 5; i++) {
        resolve_ok(ctx, RT_DNS_BOTH, 80, 5000, &addrs, &n);
        assert_texts(addrs, n, want80);
        rill_addrs_free(addrs);
    }
    assert_stats(ctx, 1, 5, 0);
    ck_assert_int_eq(rt_dns_query_count(dns, RT_DNS_BOTH), asked);

    /* Another name is a query of its own. */
    resolve_ok(ctx, RT_DNS_V4, 80, 5000, &addrs, &n);
    rill_addrs_free(addrs);
    assert_stats(ctx, 2, 5, 0);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* The TTL ends the cached answer: the record's own (1 s), or the cap (cache_max_ttl_s = 1). */
static const struct {
    const char *host;
    int max_ttl_s;
} expiry[] = {
    { RT_DNS_SHORT, 300 },
    { RT_DNS_BOTH, 1 },
};

START_TEST(test_ttl_expiry)
{
    rt_watchdog(20, "test_ttl_expiry");
    rt_dns *dns = rt_dns_start();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.cache_max_ttl_s = expiry[_i].max_ttl_s;
    rill_ctx *ctx = new_ctx(&o);
    const char *host = expiry[_i].host;
    rill_addr *addrs;
    size_t n;
    resolve_ok(ctx, host, 443, 5000, &addrs, &n);
    rill_addrs_free(addrs);
    int asked = rt_dns_query_count(dns, host);
    resolve_ok(ctx, host, 443, 5000, &addrs, &n);
    rill_addrs_free(addrs);
    assert_stats(ctx, 1, 1, 0);
    ck_assert_int_eq(rt_dns_query_count(dns, host), asked);

    usleep(1500 * 1000); /* past the 1 s TTL */
    resolve_ok(ctx, host, 443, 5000, &addrs, &n);
    ck_assert_uint_eq(n, 2);
    rill_addrs_free(addrs);
    assert_stats(ctx, 2, 1, 0);
    ck_assert_int_eq(rt_dns_query_count(dns, host), 2 * asked);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* cache_max_ttl_s = 0: every lookup asks the server, answers and "no such name" alike. */
START_TEST(test_cache_disabled)
{
    rt_watchdog(20, "test_cache_disabled");
    rt_dns *dns = rt_dns_start();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.cache_max_ttl_s = 0;
    rill_ctx *ctx = new_ctx(&o);
    for (int i = 0; i < 3; i++) {
        rill_addr *addrs;
        size_t n;
        resolve_ok(ctx, RT_DNS_BOTH, 443, 5000, &addrs, &n);
        ck_assert_uint_eq(n, 2);
        rill_addrs_free(addrs);
    }
    assert_stats(ctx, 3, 0, 0);
    ck_assert_int_eq(rt_dns_query_count_type(dns, RT_DNS_BOTH, "A"), 3);
    for (int i = 0; i < 2; i++)
        resolve_fails(ctx, RT_DNS_MISSING, 443, 5000, RILL_E_DNS, RT_DNS_MISSING);
    assert_stats(ctx, 5, 0, 0);
    ck_assert_int_eq(rt_dns_query_count_type(dns, RT_DNS_MISSING, "A"), 2);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* ---- threads ---- */

#define NTHREADS 8

struct lookup_job {
    rill_ctx *ctx;
    const char *host;
    pthread_barrier_t *barrier;
    int rounds;
    rill_status status;
    size_t count;
    char msg[RILL_ERRMSG_MAX];
};

static void *lookup_thread(void *arg)
{
    struct lookup_job *j = arg;
    if (j->barrier)
        pthread_barrier_wait(j->barrier);
    j->status = RILL_OK;
    for (int i = 0; i < j->rounds && j->status == RILL_OK; i++) {
        rill_addr *addrs = NULL;
        rill_error err;
        memset(&err, 0, sizeof err);
        j->status = rill_resolve(j->ctx, j->host, 443, 5000, &addrs, &j->count, &err);
        if (j->status != RILL_OK)
            snprintf(j->msg, sizeof j->msg, "%s", err.msg);
        rill_addrs_free(addrs);
    }
    return NULL;
}

/*
 * Lookups of one name from several threads share one query. A relay holds the query 300 ms so
 * every thread arrives while it is in flight.
 */
START_TEST(test_concurrent_merge)
{
    rt_watchdog(20, "test_concurrent_merge");
    rt_dns *dns = rt_dns_start();
    rt_dns_relay *relay = rt_dns_relay_start(dns, 300);
    rill_ctx *ctx = ctx_with(rt_dns_relay_servers(relay));
    pthread_barrier_t barrier;
    ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, NTHREADS), 0);
    struct lookup_job jobs[NTHREADS];
    pthread_t th[NTHREADS];
    int64_t start = rt_now_us();
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i] = (struct lookup_job){
            .ctx = ctx, .host = RT_DNS_BOTH, .barrier = &barrier, .rounds = 1
        };
        ck_assert_int_eq(pthread_create(&th[i], NULL, lookup_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    int64_t took_ms = (rt_now_us() - start) / 1000;
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < NTHREADS; i++) {
        ck_assert_msg(jobs[i].status == RILL_OK, "thread %d: %s: %s", i,
                      rill_strerror(jobs[i].status), jobs[i].msg);
        ck_assert_uint_eq(jobs[i].count, 2);
    }
    assert_stats(ctx, 1, 0, NTHREADS - 1);
    ck_assert_int_eq(rt_dns_query_count_type(dns, RT_DNS_BOTH, "A"), 1);
    ck_assert_int_eq(rt_dns_query_count_type(dns, RT_DNS_BOTH, "AAAA"), 1);
    ck_assert_int_eq(rt_dns_relay_received(relay), 2);
    ck_assert_msg(took_ms >= 290 && took_ms < 2000, "took %lld ms for one 300 ms query",
                  (long long)took_ms);
    rill_ctx_free(ctx);
    rt_dns_relay_stop(relay);
    rt_dns_stop(dns);
}
END_TEST

/* ---- the cache's bound ---- */

/*
 * Names under .onion never reach a server: c-ares answers them "no such name" at once (RFC
 * 7686), and rill caches that like any NXDOMAIN, for negative_ttl_s. So they fill the cache by
 * the hundred thousand in well under a second, through the same path as names from the network.
 */
static void onion_name(char *buf, size_t len, const char *tag, int i)
{
    snprintf(buf, len, "%s%d.crawl.onion", tag, i);
}

static void resolve_onion(rill_ctx *ctx, const char *tag, int i)
{
    char name[64];
    onion_name(name, sizeof name, tag, i);
    resolve_fails(ctx, name, 80, 1000, RILL_E_DNS, "no such name");
}

/* The bytes rill holds for a context now (rt_counting_on() before the context was made). */
static size_t live_bytes(void)
{
    return rt_live_bytes;
}

/*
 * What a kept name may cost at most, in bytes, once the cache holds many: the entry (80 on
 * LP64), the name and its NUL, 20 per address, its slot in the expiry heap (8, up to 16 while
 * the array has room to grow) and its share of the hash table (4 to 8), rounded up. The same
 * figures are in docs/guide.md.
 */
#define ENTRY_BUDGET(name_len, addrs) (128 + (name_len) + 1 + 20 * (addrs))

static void cache_teardown(void)
{
    rt_counting_off();
    teardown();
}

/*
 * 100,000 unique names through a context with the default limit (1000 names): the memory rill
 * holds never passes the limit's worth, and the oldest answers make room. Before the bound the
 * same run held 22 MB (NXDOMAIN answers) or 26 MB (two addresses each).
 */
START_TEST(test_cache_bound_100k)
{
    rt_watchdog(60, "test_cache_bound_100k");
    rt_dns_silent *silent = rt_dns_silent_start();
    rt_counting_on();
    rill_ctx *ctx = ctx_with(rt_dns_silent_servers(silent));
    size_t base = live_bytes();
    size_t bound = 1000 * (size_t)ENTRY_BUDGET(strlen("x99999.crawl.onion"), 0);
    size_t peak = 0;
    int64_t start = rt_now_us();
    for (int i = 0; i < 100000; i++) {
        resolve_onion(ctx, "x", i);
        size_t held = live_bytes() - base;
        if (held > peak)
            peak = held;
        ck_assert_msg(held <= bound, "after %d names rill holds %zu bytes, over the bound %zu",
                      i + 1, held, bound);
    }
    fprintf(stderr, "[cache_bound_100k] peak %zu bytes for 1000 kept names (bound %zu), %lld ms\n",
            peak, bound, (long long)(rt_now_us() - start) / 1000);
    rill_ctx_stats st = stats_of(ctx);
    ck_assert_uint_eq(st.queries, 100000);
    ck_assert_uint_eq(st.cache_entries, 1000);
    ck_assert_uint_eq(st.cache_evictions, 99000);
    /* The newest 1000 are kept, the older ones are gone. */
    resolve_onion(ctx, "x", 99999);
    resolve_onion(ctx, "x", 99000);
    assert_stats(ctx, 100000, 2, 0);
    resolve_onion(ctx, "x", 98999);
    assert_stats(ctx, 100001, 2, 0);
    rill_ctx_free(ctx);
    ck_assert_uint_eq(live_bytes(), 0);
    rt_counting_off();
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rt_dns_silent_stop(silent);
}
END_TEST

/*
 * Answers with addresses, from a server: 1000 names through a limit of 200 keep 200, within
 * their budget; the least recently used goes first, so a name used again stays.
 */
START_TEST(test_cache_bound_answers)
{
    rt_watchdog(30, "test_cache_bound_answers");
    rt_dns_fixed *fixed = rt_dns_fixed_start("127.0.0.1", "::1", 300, 0);
    rt_counting_on();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_fixed_servers(fixed));
    o.dns_cache_max = 200;
    o.max_queries_in_flight = 16;
    rill_ctx *ctx = new_ctx(&o);
    size_t base = live_bytes();
    static char names[1000][48];
    const char *hosts[1000];
    static rill_resolve_result res[100];
    for (int i = 0; i < 1000; i++) {
        snprintf(names[i], sizeof names[i], "n%d.fixed.rill.test", i);
        hosts[i] = names[i];
    }
    size_t bound = 200 * (size_t)ENTRY_BUDGET(strlen("n999.fixed.rill.test"), 2);
    rill_addr *addrs;
    size_t n;
    for (int chunk = 0; chunk < 10; chunk++) {
        if (chunk == 9) {
            /* Kept now: 700 .. 899. The oldest, used again, becomes the newest. */
            resolve_ok(ctx, hosts[700], 443, 5000, &addrs, &n);
            rill_addrs_free(addrs);
        }
        ck_assert_int_eq(rill_resolve_many(ctx, hosts + 100 * chunk, 100, 443, 10000, res),
                         RILL_OK);
        for (int i = 0; i < 100; i++) {
            ck_assert_msg(res[i].status == RILL_OK, "%s: %s", res[i].host, res[i].message);
            ck_assert_uint_eq(res[i].count, 2);
        }
        rill_resolve_results_free(res, 100);
        size_t held = live_bytes() - base;
        ck_assert_msg(held <= bound, "after %d names rill holds %zu bytes, over the bound %zu",
                      100 * (chunk + 1), held, bound);
    }
    fprintf(stderr, "[cache_bound_answers] %zu bytes for 200 kept names (bound %zu)\n",
            live_bytes() - base, bound);
    rill_ctx_stats st = stats_of(ctx);
    ck_assert_uint_eq(st.queries, 1000);
    ck_assert_uint_eq(st.cache_hits, 1);
    ck_assert_uint_eq(st.cache_entries, 200);
    ck_assert_uint_eq(st.cache_evictions, 800);
    int asked = rt_dns_fixed_received(fixed);
    ck_assert_int_eq(asked, 2000);
    /*
     * The last 100 names pushed out the 100 least recently used: 701 .. 799 and one of 800 ..
     * 899 (a batch lets its names go in the order their answers came), but not 700.
     */
    static const char *const want[] = { "127.0.0.1:443", "[::1]:443", NULL };
    const char *kept[] = { hosts[999], hosts[900], hosts[700] };
    for (int i = 0; i < 3; i++) {
        resolve_ok(ctx, kept[i], 443, 5000, &addrs, &n);
        assert_texts(addrs, n, want);
        rill_addrs_free(addrs);
    }
    assert_stats(ctx, 1000, 4, 0);
    ck_assert_int_eq(rt_dns_fixed_received(fixed), asked);
    resolve_ok(ctx, hosts[750], 443, 5000, &addrs, &n);
    rill_addrs_free(addrs);
    assert_stats(ctx, 1001, 4, 0);
    ck_assert_int_eq(rt_dns_fixed_received(fixed), asked + 2);
    rill_ctx_free(ctx);
    ck_assert_uint_eq(live_bytes(), 0);
    rt_counting_off();
    rt_dns_fixed_stop(fixed);
}
END_TEST

/*
 * Expired answers are freed without their names being asked again, whatever the limit, and the
 * table shrinks back: 20,000 names kept for 2 s (the case: they held 4.8 MB long after)
 * leave nothing after the second, at the next call on the context.
 */
START_TEST(test_cache_expired_freed)
{
    rt_watchdog(30, "test_cache_expired_freed");
    rt_dns_fixed *fixed = rt_dns_fixed_start("127.0.0.1", "::1", 2, 0);
    rt_counting_on();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_fixed_servers(fixed));
    o.dns_cache_max = 1000000;
    o.negative_ttl_s = 2;
    rill_ctx *ctx = new_ctx(&o);
    size_t base = live_bytes();
    /* Under valgrind fewer, so that all are in before the first expires. */
    int count = rt_on_valgrind() ? 2000 : 20000;

    /* Phase 1: freed at rill_ctx_get_stats, the only call after the second. */
    int64_t start = rt_now_us();
    for (int i = 0; i < count; i++)
        resolve_onion(ctx, "e", i);
    static char names[200][48];
    const char *hosts[200];
    for (int i = 0; i < 200; i++) {
        snprintf(names[i], sizeof names[i], "t%d.fixed.rill.test", i);
        hosts[i] = names[i];
    }
    rill_resolve_result res[200];
    ck_assert_int_eq(rill_resolve_many(ctx, hosts, 200, 443, 10000, res), RILL_OK);
    for (int i = 0; i < 200; i++)
        ck_assert_msg(res[i].status == RILL_OK, "%s: %s", res[i].host, res[i].message);
    rill_resolve_results_free(res, 200);
    int64_t fill_ms = (rt_now_us() - start) / 1000;
    ck_assert_msg(fill_ms < 1800, "filling took %lld ms, too long for a 2 s TTL",
                  (long long)fill_ms);
    rill_ctx_stats st = stats_of(ctx);
    ck_assert_uint_eq(st.cache_entries, (unsigned)count + 200);
    size_t full = live_bytes() - base;
    fprintf(stderr, "[cache_expired_freed] %d names hold %zu bytes (filled in %lld ms)\n",
            count + 200, full, (long long)fill_ms);
    ck_assert_uint_gt(full, ((size_t)count + 200) * 80);
    usleep(2200 * 1000);
    st = stats_of(ctx);
    ck_assert_uint_eq(st.cache_entries, 0);
    ck_assert_uint_eq(st.cache_evictions, 0);
    ck_assert_uint_eq(st.queries, (unsigned)count + 200);
    ck_assert_uint_eq(live_bytes(), base); /* table back to its first size, no heap left */
    ck_assert_int_eq(rt_dns_fixed_received(fixed), 400);

    /* Phase 2: freed by a lookup of another name. */
    for (int i = 0; i < count / 4; i++)
        resolve_onion(ctx, "f", i);
    ck_assert_uint_gt(live_bytes() - base, (size_t)count / 4 * 80);
    usleep(2200 * 1000);
    resolve_onion(ctx, "other", 0);
    size_t one = live_bytes() - base;
    /* One name: its entry and the expiry heap's first 16 slots. */
    ck_assert_msg(one <= ENTRY_BUDGET(strlen("other0.crawl.onion"), 0) + 16 * sizeof(void *),
                  "%zu bytes held for one name", one);
    st = stats_of(ctx);
    ck_assert_uint_eq(st.cache_entries, 1);
    ck_assert_uint_eq(st.queries, (unsigned)(count + 200 + count / 4 + 1));
    rill_ctx_free(ctx);
    rt_counting_off();
    rt_dns_fixed_stop(fixed);
}
END_TEST

/*
 * Entries in use are never dropped for the limit: a query in flight (held 300 ms by a relay)
 * survives a limit of 2 while ten other names pass, and a later lookup joins it.
 */
START_TEST(test_cache_bound_in_flight)
{
    rt_watchdog(20, "test_cache_bound_in_flight");
    rt_dns *dns = rt_dns_start();
    rt_dns_relay *relay = rt_dns_relay_start(dns, 300);
    rill_ctx_opts o;
    opts_for(&o, rt_dns_relay_servers(relay));
    o.dns_cache_max = 2;
    rill_ctx *ctx = new_ctx(&o);
    struct lookup_job job = { .ctx = ctx, .host = RT_DNS_BOTH, .rounds = 1 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, lookup_thread, &job), 0);
    while (rt_dns_relay_received(relay) < 1)
        usleep(2000);
    for (int i = 0; i < 10; i++)
        resolve_onion(ctx, "p", i);
    rill_addr *addrs;
    size_t n;
    resolve_ok(ctx, RT_DNS_BOTH, 443, 5000, &addrs, &n);
    ck_assert_uint_eq(n, 2);
    rill_addrs_free(addrs);
    pthread_join(th, NULL);
    ck_assert_msg(job.status == RILL_OK, "%s: %s", rill_strerror(job.status), job.msg);
    assert_stats(ctx, 11, 0, 1);
    rill_ctx_stats st = stats_of(ctx);
    ck_assert_uint_eq(st.cache_evictions, 9);
    ck_assert_uint_eq(st.cache_entries, 2);
    ck_assert_int_eq(rt_dns_query_count_type(dns, RT_DNS_BOTH, "A"), 1);
    rill_ctx_free(ctx);
    rt_dns_relay_stop(relay);
    rt_dns_stop(dns);
}
END_TEST

/*
 * A batch holds answered entries until it collects them: with a limit of 1, fifty names whose
 * answers come at once are all reported right (a dropped held entry would be read after free).
 */
START_TEST(test_cache_bound_batch_holds)
{
    rt_watchdog(20, "test_cache_bound_batch_holds");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_silent_servers(silent));
    o.dns_cache_max = 1;
    rill_ctx *ctx = new_ctx(&o);
    static char names[50][48];
    const char *hosts[50];
    for (int i = 0; i < 50; i++) {
        onion_name(names[i], sizeof names[i], "b", i);
        hosts[i] = names[i];
    }
    rill_resolve_result res[50];
    ck_assert_int_eq(rill_resolve_many(ctx, hosts, 50, 80, 5000, res), RILL_OK);
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(res[i].status, RILL_E_DNS);
        ck_assert_msg(strstr(res[i].message, hosts[i]) && strstr(res[i].message, "no such name"),
                      "result %d: \"%s\"", i, res[i].message);
    }
    rill_resolve_results_free(res, 50);
    rill_ctx_stats st = stats_of(ctx);
    ck_assert_uint_eq(st.queries, 50);
    ck_assert_uint_eq(st.cache_entries, 1);
    ck_assert_uint_eq(st.cache_evictions, 49);
    rill_ctx_free(ctx);
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rt_dns_silent_stop(silent);
}
END_TEST

/* dns_cache_max = 0 keeps nothing (every lookup asks); a negative limit is refused. */
START_TEST(test_cache_max_zero)
{
    rt_watchdog(20, "test_cache_max_zero");
    rt_dns_fixed *fixed = rt_dns_fixed_start("127.0.0.1", NULL, 300, 0);
    rill_ctx_opts o;
    opts_for(&o, rt_dns_fixed_servers(fixed));
    o.dns_cache_max = 0;
    rill_ctx *ctx = new_ctx(&o);
    for (int i = 0; i < 3; i++) {
        rill_addr *addrs;
        size_t n;
        resolve_ok(ctx, "zero.fixed.rill.test", 443, 5000, &addrs, &n);
        rill_addrs_free(addrs);
        resolve_onion(ctx, "z", 0);
    }
    assert_stats(ctx, 6, 0, 0);
    rill_ctx_stats st = stats_of(ctx);
    ck_assert_uint_eq(st.cache_entries, 0);
    ck_assert_uint_eq(st.cache_evictions, 0);
    ck_assert_int_eq(rt_dns_fixed_received(fixed), 6);
    rill_ctx_free(ctx);

    o.dns_cache_max = -1;
    rill_error err;
    memset(&err, 0, sizeof err);
    ctx = NULL;
    rt_assert_err(&err, rill_ctx_new(&o, &ctx, &err), RILL_E_INVALID, "negative");
    ck_assert_ptr_null(ctx);
    rt_dns_fixed_stop(fixed);
}
END_TEST

/* Threads looking up different names at once: each name is asked once, all answers right. */
START_TEST(test_threads_distinct_names)
{
    rt_watchdog(30, "test_threads_distinct_names");
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_with(rt_dns_servers(dns));
    static const char *const names[] = { RT_DNS_BOTH, RT_DNS_V4, RT_DNS_V6, RT_DNS_ALIAS };
    static const size_t counts[] = { 2, 1, 1, 2 };
    struct lookup_job jobs[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (struct lookup_job){ .ctx = ctx, .host = names[i % 4], .rounds = 50 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, lookup_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 8; i++) {
        ck_assert_msg(jobs[i].status == RILL_OK, "thread %d (%s): %s: %s", i, jobs[i].host,
                      rill_strerror(jobs[i].status), jobs[i].msg);
        ck_assert_uint_eq(jobs[i].count, counts[i % 4]);
    }
    rill_ctx_stats st = stats_of(ctx);
    ck_assert_uint_eq(st.queries, 4);
    ck_assert_uint_eq(st.cache_hits + st.merged, 8 * 50 - 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(rt_dns_query_count_type(dns, names[i], "A"), 1);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* ---- deadlines ---- */

static const int silent_deadlines[] = { 200, 700 };

/* A server that never answers: RILL_E_TIMEOUT at the deadline, not at c-ares' 2 s retry. */
START_TEST(test_silent_server_deadline)
{
    int deadline = silent_deadlines[_i];
    rt_watchdog(20, "test_silent_server_deadline");
    rt_dns_silent *silent = rt_dns_silent_start();
    int fds = rt_count_fds();
    rill_ctx *ctx = ctx_with(rt_dns_silent_servers(silent));
    int64_t start = rt_now_us();
    resolve_fails(ctx, RT_DNS_BOTH, 443, deadline, RILL_E_TIMEOUT, RT_DNS_BOTH);
    rt_assert_elapsed(start, deadline, deadline + 500);
    ck_assert_int_ge(rt_dns_silent_received(silent), 1);

    /* Freeing the context cancels the query left in flight, at once, and closes its sockets. */
    start = rt_now_us();
    rill_ctx_free(ctx);
    rt_assert_elapsed(start, 0, 200);
    ck_assert_int_eq(rt_count_fds(), fds);
    rt_dns_silent_stop(silent);
}
END_TEST

/* An answer slower than the deadline: timeout on time; the context stays usable. */
START_TEST(test_slow_answer)
{
    rt_watchdog(20, "test_slow_answer");
    rt_dns *dns = rt_dns_start();
    rt_dns_relay *relay = rt_dns_relay_start(dns, 600);
    rill_ctx *ctx = ctx_with(rt_dns_relay_servers(relay));
    int64_t start = rt_now_us();
    resolve_fails(ctx, RT_DNS_BOTH, 443, 200, RILL_E_TIMEOUT, RT_DNS_BOTH);
    rt_assert_elapsed(start, 200, 700);

    start = rt_now_us();
    rill_addr *addrs;
    size_t n;
    resolve_ok(ctx, RT_DNS_BOTH, 443, 3000, &addrs, &n);
    ck_assert_uint_eq(n, 2);
    rill_addrs_free(addrs);
    rt_assert_elapsed(start, 0, 2000);

    /* And a fresh name within a deadline longer than the delay. */
    start = rt_now_us();
    resolve_ok(ctx, RT_DNS_V4, 443, 3000, &addrs, &n);
    rill_addrs_free(addrs);
    rt_assert_elapsed(start, 590, 2000);
    rill_ctx_free(ctx);
    rt_dns_relay_stop(relay);
    rt_dns_stop(dns);
}
END_TEST

/* ---- numeric hosts and overrides ---- */

static const struct {
    const char *host;
    const char *want;
} numerics[] = {
    { "127.0.0.1", "127.0.0.1:8080" },
    { "::1", "[::1]:8080" },
    { "[::1]", "[::1]:8080" },
    { "0:0:0:0:0:0:0:1", "[::1]:8080" },
};

/* Numeric hosts never reach DNS, even with a server configured that would never answer. */
START_TEST(test_numeric_no_dns)
{
    rt_watchdog(20, "test_numeric_no_dns");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx *ctx = ctx_with(rt_dns_silent_servers(silent));
    int64_t start = rt_now_us();
    rill_addr *addrs;
    size_t n;
    resolve_ok(ctx, numerics[_i].host, 8080, 5000, &addrs, &n);
    rt_assert_elapsed(start, 0, 100);
    const char *want[] = { numerics[_i].want, NULL };
    assert_texts(addrs, n, want);
    rill_addrs_free(addrs);
    assert_stats(ctx, 0, 0, 0);
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

/* Resolve without asserting (addresses freed): for tests that free their state first. */
static rill_status try_resolve(rill_ctx *ctx, const char *host, uint16_t port, rill_error *err)
{
    rill_addr *addrs = NULL;
    size_t count = 0;
    memset(err, 0, sizeof *err);
    rill_status st = rill_resolve(ctx, host, port, 1000, &addrs, &count, err);
    if (st == RILL_OK)
        snprintf(err->msg, sizeof err->msg, "(success: %zu addresses, first %s)", count,
                 count ? addrs[0].text : "-");
    rill_addrs_free(addrs);
    return st;
}

/*
 * A numeric host of the family the context excludes has no usable address, as with
 * rill_connect_opts.family and with overrides.
 */
START_TEST(test_numeric_wrong_family)
{
    rt_watchdog(20, "test_numeric_wrong_family");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx_opts o;
    opts_for(&o, rt_dns_silent_servers(silent));
    o.family = 6;
    rill_ctx *ctx = new_ctx(&o);
    rill_error err6, err4;
    rill_status st6 = try_resolve(ctx, "127.0.0.1", 80, &err6);
    rill_ctx_free(ctx);
    o.family = 4;
    ctx = new_ctx(&o);
    rill_status st4 = try_resolve(ctx, "[::1]", 80, &err4);
    rill_ctx_free(ctx);
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rt_dns_silent_stop(silent);
    rt_assert_err(&err6, st6, RILL_E_DNS, "127.0.0.1");
    rt_assert_err(&err4, st4, RILL_E_DNS, "::1");
}
END_TEST

START_TEST(test_overrides)
{
    rt_watchdog(20, "test_overrides");
    rt_dns *dns = rt_dns_start();
    /* The specs live in a buffer that is wiped after rill_ctx_new(): it must copy them. */
    char specs[3][64];
    snprintf(specs[0], sizeof specs[0], "over.rill.test:443:127.0.0.1,[::1]");
    snprintf(specs[1], sizeof specs[1], "any.rill.test:*:[::1]");
    snprintf(specs[2], sizeof specs[2], RT_DNS_BOTH ":443:127.0.0.1");
    const char *list[] = { specs[0], specs[1], specs[2], NULL };
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.overrides = list;
    rill_ctx *ctx = new_ctx(&o);
    memset(specs, 'x', sizeof specs);

    rill_addr *addrs;
    size_t n;
    static const char *const over443[] = { "127.0.0.1:443", "[::1]:443", NULL };
    resolve_ok(ctx, "over.rill.test", 443, 5000, &addrs, &n);
    assert_texts(addrs, n, over443);
    rill_addrs_free(addrs);

    static const char *const any8080[] = { "[::1]:8080", NULL };
    resolve_ok(ctx, "any.rill.test", 8080, 5000, &addrs, &n);
    assert_texts(addrs, n, any8080);
    rill_addrs_free(addrs);
    static const char *const any1[] = { "[::1]:1", NULL };
    resolve_ok(ctx, "any.rill.test", 1, 5000, &addrs, &n);
    assert_texts(addrs, n, any1);
    rill_addrs_free(addrs);

    /* An override beats what DNS would say (both.rill.test has ::1 too). */
    static const char *const both443[] = { "127.0.0.1:443", NULL };
    resolve_ok(ctx, RT_DNS_BOTH, 443, 5000, &addrs, &n);
    assert_texts(addrs, n, both443);
    rill_addrs_free(addrs);

    assert_stats(ctx, 0, 0, 0);
    ck_assert_int_eq(rt_dns_query_count(dns, "over.rill.test"), 0);
    ck_assert_int_eq(rt_dns_query_count(dns, "any.rill.test"), 0);
    ck_assert_int_eq(rt_dns_query_count(dns, RT_DNS_BOTH), 0);

    /* On another port the override does not apply: DNS answers (here: no such name). */
    resolve_fails(ctx, "over.rill.test", 444, 5000, RILL_E_DNS, "over.rill.test");
    ck_assert_int_ge(rt_dns_query_count(dns, "over.rill.test"), 1);
    static const char *const both80[] = { "127.0.0.1:80", "[::1]:80", NULL };
    resolve_ok(ctx, RT_DNS_BOTH, 80, 5000, &addrs, &n);
    assert_texts(addrs, n, both80);
    rill_addrs_free(addrs);
    assert_stats(ctx, 2, 0, 0);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* The context's family filters override addresses too. */
START_TEST(test_override_family)
{
    rt_watchdog(20, "test_override_family");
    rt_dns_silent *silent = rt_dns_silent_start();
    const char *list[] = { "over.rill.test:*:127.0.0.1,[::1]", "six.rill.test:*:[::1]", NULL };
    rill_ctx_opts o;
    opts_for(&o, rt_dns_silent_servers(silent));
    o.overrides = list;
    o.family = 4;
    rill_ctx *ctx = new_ctx(&o);
    rill_addr *addrs;
    size_t n;
    static const char *const v4[] = { "127.0.0.1:25", NULL };
    resolve_ok(ctx, "over.rill.test", 25, 2000, &addrs, &n);
    assert_texts(addrs, n, v4);
    rill_addrs_free(addrs);
    resolve_fails(ctx, "six.rill.test", 25, 2000, RILL_E_DNS, "six.rill.test");
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

/* ---- localhost (RFC 6761 section 6.3) ---- */

/*
 * A server that answers every name, localhost included, with 127.0.0.99: rill still gives the
 * loopback addresses for localhost and names under it, in any case and with a trailing dot,
 * without a query; other names (which merely contain "localhost") go to the server.
 */
static const struct {
    const char *host;
    int family; /* ctx family */
    const char *want[3];
} localhosts[] = {
    { "localhost", 0, { "[::1]:8080", "127.0.0.1:8080", NULL } },
    { "localhost.", 0, { "[::1]:8080", "127.0.0.1:8080", NULL } },
    { "LocalHost", 0, { "[::1]:8080", "127.0.0.1:8080", NULL } },
    { "foo.LOCALHOST", 0, { "[::1]:8080", "127.0.0.1:8080", NULL } },
    { "a.b.localhost.", 0, { "[::1]:8080", "127.0.0.1:8080", NULL } },
    { "localhost", 4, { "127.0.0.1:8080", NULL } },
    { "app.localhost", 6, { "[::1]:8080", NULL } },
};

START_TEST(test_localhost_no_dns)
{
    rt_watchdog(20, "test_localhost_no_dns");
    rt_dns_fixed *fixed = rt_dns_fixed_start("127.0.0.99", NULL, 300, 0);
    rill_ctx_opts o;
    opts_for(&o, rt_dns_fixed_servers(fixed));
    o.family = localhosts[_i].family;
    rill_ctx *ctx = new_ctx(&o);
    rill_addr *addrs;
    size_t n;
    resolve_ok(ctx, localhosts[_i].host, 8080, 2000, &addrs, &n);
    ck_assert_uint_eq(n, (localhosts[_i].family ? 1u : 2u));
    for (size_t i = 0; i < n; i++) /* in this order: ::1 first */
        ck_assert_str_eq(addrs[i].text, localhosts[_i].want[i]);
    rill_addrs_free(addrs);
    /* A batch answers it the same way. */
    const char *hosts[] = { localhosts[_i].host };
    rill_resolve_result res[1];
    ck_assert_int_eq(rill_resolve_many(ctx, hosts, 1, 8080, 2000, res), RILL_OK);
    ck_assert_msg(res[0].status == RILL_OK, "%s", res[0].message);
    ck_assert_uint_eq(res[0].count, n);
    ck_assert_str_eq(res[0].addrs[0].text, localhosts[_i].want[0]);
    rill_resolve_results_free(res, 1);
    assert_stats(ctx, 0, 0, 0);
    ck_assert_uint_eq(stats_of(ctx).cache_entries, 0);
    ck_assert_int_eq(rt_dns_fixed_received(fixed), 0);

    rill_ctx_free(ctx);

    /* The server does answer what it is asked: names that only look like localhost. */
    ctx = ctx_with(rt_dns_fixed_servers(fixed));
    const char *others[] = { "notlocalhost", "localhost.example", "localhostx." };
    for (int i = 0; i < 3; i++) {
        resolve_ok(ctx, others[i], 8080, 2000, &addrs, &n);
        ck_assert_msg(n == 1 && strcmp(addrs[0].text, "127.0.0.99:8080") == 0,
                      "%s: %zu addresses, first %s", others[i], n, addrs[0].text);
        rill_addrs_free(addrs);
    }
    assert_stats(ctx, 3, 0, 0);
    ck_assert_int_ge(rt_dns_fixed_received(fixed), 3);
    rill_ctx_free(ctx);
    rt_dns_fixed_stop(fixed);
}
END_TEST

/* An override for localhost is the application's own choice, and wins. */
START_TEST(test_localhost_override)
{
    rt_watchdog(20, "test_localhost_override");
    rt_dns_silent *silent = rt_dns_silent_start();
    const char *list[] = { "localhost:8080:127.0.0.5", NULL };
    rill_ctx_opts o;
    opts_for(&o, rt_dns_silent_servers(silent));
    o.overrides = list;
    rill_ctx *ctx = new_ctx(&o);
    rill_addr *addrs;
    size_t n;
    static const char *const five[] = { "127.0.0.5:8080", NULL };
    resolve_ok(ctx, "LOCALHOST", 8080, 2000, &addrs, &n);
    assert_texts(addrs, n, five);
    rill_addrs_free(addrs);
    static const char *const loop[] = { "[::1]:8081", "127.0.0.1:8081", NULL };
    resolve_ok(ctx, "localhost", 8081, 2000, &addrs, &n); /* the override is for 8080 only */
    assert_texts(addrs, n, loop);
    rill_addrs_free(addrs);
    assert_stats(ctx, 0, 0, 0);
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

/* No context at all: localhost resolves and connects; other names still need a context. */
START_TEST(test_localhost_no_ctx)
{
    rt_watchdog(20, "test_localhost_no_ctx");
    int fds = rt_count_fds();
    rill_addr *addrs;
    size_t n;
    resolve_ok(NULL, "localhost", 443, 1000, &addrs, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(addrs[0].text, "[::1]:443");
    ck_assert_str_eq(addrs[1].text, "127.0.0.1:443");
    rill_addrs_free(addrs);
    resolve_fails(NULL, "localhost.example", 443, 1000, RILL_E_INVALID, "no context");

    rill_listener *l = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    ck_assert_msg(rill_listen("127.0.0.1", 0, NULL, &l, &err) == RILL_OK, "%s", err.msg);
    rill_connect_opts co;
    rill_connect_opts_init(&co);
    co.timeout_ms = 5000;
    rill_stream *s = NULL;
    rill_status st = rill_connect(NULL, "localhost", rill_listener_port(l), &co, &s, &err);
    ck_assert_msg(st == RILL_OK, "connect localhost: %s: %s", rill_strerror(st), err.msg);
    char desc[256];
    rill_describe(s, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "> 127.0.0.1:") != NULL, "connected as %s", desc);
    rill_close(s);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/*
 * A root without /etc/hosts (a debootstrap minbase): a child in its own mount namespace with an
 * empty tmpfs over /etc resolves and connects to localhost while the only DNS server refuses
 * every query or never answers. Before the fix, c-ares found no hosts file and asked the server.
 */
struct no_hosts_arg {
    const char *servers;
    uint16_t port; /* a listener on 127.0.0.1 in the parent */
};

static void no_hosts_child(rt_child_report *rep, void *p)
{
    const struct no_hosts_arg *a = p;
    rep->status = -100;
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/etc", "tmpfs", 0, "size=64k") != 0) {
        snprintf(rep->msg, sizeof rep->msg, "cannot hide /etc (needs root): %s", strerror(errno));
        return;
    }
    rep->values[0] = access("/etc/hosts", F_OK) == 0;
    rep->values[1] = access("/etc/resolv.conf", F_OK) == 0;
    rill_ctx_opts o;
    rill_ctx_opts_init(&o);
    o.dns_servers = a->servers;
    o.query_timeout_ms = 500;
    o.query_tries = 1;
    rill_ctx *ctx = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rep->status = rill_ctx_new(&o, &ctx, &err);
    if (rep->status != RILL_OK) {
        snprintf(rep->msg, sizeof rep->msg, "ctx: %s", err.msg);
        return;
    }
    int64_t start = rt_now_us();
    rill_addr *addrs = NULL;
    size_t n = 0;
    rep->status = rill_resolve(ctx, "localhost", 443, 3000, &addrs, &n, &err);
    rep->values[2] = (int)((rt_now_us() - start) / 1000);
    if (rep->status != RILL_OK) {
        snprintf(rep->msg, sizeof rep->msg, "resolve: %s", err.msg);
        rill_ctx_free(ctx);
        return;
    }
    rep->values[3] = (int)n;
    snprintf(rep->msg, sizeof rep->msg, "%s %s", n > 0 ? addrs[0].text : "",
             n > 1 ? addrs[1].text : "");
    rill_addrs_free(addrs);
    rill_connect_opts co;
    rill_connect_opts_init(&co);
    co.timeout_ms = 3000;
    rill_stream *s = NULL;
    rep->status = rill_connect(ctx, "localhost", a->port, &co, &s, &err);
    if (rep->status != RILL_OK)
        snprintf(rep->msg, sizeof rep->msg, "connect: %s", err.msg);
    rill_close(s);
    rill_ctx_stats st;
    rill_ctx_get_stats(ctx, &st);
    rep->values[4] = (int)st.queries;
    rill_ctx_free(ctx);
}

static const int no_hosts_refusing[] = { 1, 0 }; /* a server that refuses, one that is silent */

START_TEST(test_localhost_no_etc_hosts)
{
    rt_watchdog(30, "test_localhost_no_etc_hosts");
    rt_dns_fixed *refusing = NULL;
    rt_dns_silent *silent = NULL;
    struct no_hosts_arg arg;
    if (no_hosts_refusing[_i]) {
        refusing = rt_dns_fixed_start("127.0.0.99", "::99", 300, 5);
        arg.servers = rt_dns_fixed_servers(refusing);
    } else {
        silent = rt_dns_silent_start();
        arg.servers = rt_dns_silent_servers(silent);
    }
    rill_listener *l = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    ck_assert_msg(rill_listen("127.0.0.1", 0, NULL, &l, &err) == RILL_OK, "%s", err.msg);
    arg.port = rill_listener_port(l);
    rt_child_result res;
    rt_run_child(no_hosts_child, &arg, 20, &res);
    rt_assert_child_ok(&res);
    const rt_child_report *r = &res.report;
    ck_assert_msg(r->status == RILL_OK, "status %d (%s): %s", r->status,
                  r->status == -100 ? "setup" : rill_strerror(r->status), r->msg);
    ck_assert_msg(!r->values[0] && !r->values[1], "/etc/hosts %s, /etc/resolv.conf %s in the child",
                  r->values[0] ? "present" : "absent", r->values[1] ? "present" : "absent");
    ck_assert_int_eq(r->values[3], 2);
    ck_assert_str_eq(r->msg, "[::1]:443 127.0.0.1:443");
    ck_assert_msg(r->values[2] < 400, "localhost took %d ms", r->values[2]);
    ck_assert_int_eq(r->values[4], 0);
    if (refusing)
        ck_assert_int_eq(rt_dns_fixed_received(refusing), 0);
    else
        ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rill_listener_free(l);
    rt_dns_fixed_stop(refusing);
    rt_dns_silent_stop(silent);
}
END_TEST

/* ---- host syntax and arguments ---- */

static char long_name_253[254];
static char long_name_254[255];
static char long_label[80];

/* Labels of 63 bytes, then one of @p last bytes, then ".rill.test": 192 + last + 10 bytes. */
static void make_long_name(char *buf, size_t cap, size_t last)
{
    size_t n = 0;
    for (int l = 0; l < 3; l++) {
        memset(buf + n, 'a' + l, 63);
        n += 63;
        buf[n++] = '.';
    }
    memset(buf + n, 'd', last);
    n += last;
    memcpy(buf + n, ".rill.test", 11);
    ck_assert_uint_eq(strlen(buf), n + 10);
    ck_assert_uint_lt(n + 10, cap);
}

static void make_names(void)
{
    make_long_name(long_name_253, sizeof long_name_253, 51);
    make_long_name(long_name_254, sizeof long_name_254, 52);
    ck_assert_uint_eq(strlen(long_name_253), 253);
    ck_assert_uint_eq(strlen(long_name_254), 254);
    memset(long_label, 'x', 64);
    memcpy(long_label + 64, ".rill.test", 11);
}

static const struct {
    const char *host; /* NULL; "#254", "#label": the generated names */
    uint16_t port;
    const char *needle;
} bad_hosts[] = {
    { NULL, 443, "NULL" },
    { "", 443, "empty" },
    { "#254", 443, "254 bytes" },
    { "a b.rill.test", 443, "space" },
    { " both.rill.test", 443, "space" },
    { "both.rill.test ", 443, "space" },
    { "a\tb.rill.test", 443, "control" },
    { "a\nb.rill.test", 443, "control" },
    { "a\x01.rill.test", 443, "control" },
    { "a\x7f.rill.test", 443, "control" },
    { "caf\xc3\xa9.rill.test", 443, "non-ASCII" },
    { "a..b.rill.test", 443, "empty label" },
    { ".rill.test", 443, "empty label" },
    { "#label", 443, "63" },
    { RT_DNS_BOTH, 0, "port 0" },
    { "127.0.0.1", 0, "port 0" },
};

/* Bad syntax is refused before any query: the silent server sees nothing, no time passes. */
START_TEST(test_invalid_host)
{
    rt_watchdog(20, "test_invalid_host");
    make_names();
    const char *host = bad_hosts[_i].host;
    if (host && strcmp(host, "#254") == 0)
        host = long_name_254;
    else if (host && strcmp(host, "#label") == 0)
        host = long_label;
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx *ctx = ctx_with(rt_dns_silent_servers(silent));
    int64_t start = rt_now_us();
    resolve_fails(ctx, host, bad_hosts[_i].port, 2000, RILL_E_INVALID, bad_hosts[_i].needle);
    rt_assert_elapsed(start, 0, 100);
    assert_stats(ctx, 0, 0, 0);
    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

/* 253 bytes is a valid length: the name goes to DNS (which has no such name). */
START_TEST(test_longest_name)
{
    rt_watchdog(20, "test_longest_name");
    make_names();
    rt_dns *dns = rt_dns_start();
    rill_ctx *ctx = ctx_with(rt_dns_servers(dns));
    char head[64];
    snprintf(head, sizeof head, "%.60s", long_name_253);
    resolve_fails(ctx, long_name_253, 443, 5000, RILL_E_DNS, head);
    ck_assert_int_ge(rt_dns_query_count(dns, long_name_253), 1);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

START_TEST(test_invalid_args)
{
    rt_watchdog(20, "test_invalid_args");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx *ctx = ctx_with(rt_dns_silent_servers(silent));
    rill_addr *addrs = NULL;
    size_t n = 0;
    rill_error err;

    memset(&err, 0, sizeof err);
    rt_assert_err(&err, rill_resolve(ctx, RT_DNS_BOTH, 443, 1000, NULL, &n, &err), RILL_E_INVALID,
                  "addrs");
    memset(&err, 0, sizeof err);
    rt_assert_err(&err, rill_resolve(ctx, RT_DNS_BOTH, 443, 1000, &addrs, NULL, &err),
                  RILL_E_INVALID, "count");
    memset(&err, 0, sizeof err);
    rt_assert_err(&err, rill_resolve(ctx, RT_DNS_BOTH, 443, -2, &addrs, &n, &err), RILL_E_INVALID,
                  "-2");
    /* A name needs a context; a numeric host does not. */
    memset(&err, 0, sizeof err);
    rt_assert_err(&err, rill_resolve(NULL, RT_DNS_BOTH, 443, 1000, &addrs, &n, &err),
                  RILL_E_INVALID, RT_DNS_BOTH);
    rill_status st = rill_resolve(NULL, "[::1]", 443, 1000, &addrs, &n, &err);
    ck_assert_msg(st == RILL_OK, "numeric without ctx: %s", err.msg);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(addrs[0].text, "[::1]:443");
    rill_addrs_free(addrs);
    rill_addrs_free(NULL);

    ck_assert_int_eq(rt_dns_silent_received(silent), 0);
    assert_stats(ctx, 0, 0, 0);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

/* ---- context options ---- */

static const struct {
    const char *servers;
    const char *override;
    int family;
    int cache_max_ttl_s;
    int negative_ttl_s;
    const char *needle;
} bad_opts[] = {
    { "not-an-address", NULL, 0, 300, 5, "not-an-address" },
    { "127.0.0.1:99999", NULL, 0, 300, 5, "127.0.0.1:99999" },
    { "127.0.0.1:53,bogus", NULL, 0, 300, 5, "bogus" },
    { "[::1", NULL, 0, 300, 5, "[::1" },
    { "", NULL, 0, 300, 5, "server" },
    { NULL, "nocolons", 0, 300, 5, "nocolons" },
    { NULL, "host.rill.test:443", 0, 300, 5, "host.rill.test:443" },
    { NULL, ":443:127.0.0.1", 0, 300, 5, ":443:127.0.0.1" },
    { NULL, "host.rill.test::127.0.0.1", 0, 300, 5, "host.rill.test::127.0.0.1" },
    { NULL, "host.rill.test:0:127.0.0.1", 0, 300, 5, "port" },
    { NULL, "host.rill.test:65536:127.0.0.1", 0, 300, 5, "port" },
    { NULL, "host.rill.test:http:127.0.0.1", 0, 300, 5, "port" },
    { NULL, "host.rill.test:443:", 0, 300, 5, "host.rill.test:443:" },
    { NULL, "host.rill.test:443:localhost", 0, 300, 5, "localhost" },
    { NULL, "host.rill.test:443:127.0.0.1,", 0, 300, 5, "127.0.0.1," },
    { NULL, "host.rill.test:443:[::1", 0, 300, 5, "[::1" },
    { NULL, "host.rill.test:443:127.0.0.256", 0, 300, 5, "127.0.0.256" },
    { NULL, "two words.rill.test:443:127.0.0.1", 0, 300, 5, "two words" },
    { NULL, NULL, 5, 300, 5, "family" },
    { NULL, NULL, -1, 300, 5, "family" },
    { NULL, NULL, 0, -1, 5, "negative" },
    { NULL, NULL, 0, 300, -1, "negative" },
};

START_TEST(test_invalid_ctx_opts)
{
    rt_watchdog(20, "test_invalid_ctx_opts");
    int fds = rt_count_fds();
    rill_ctx_opts o;
    rill_ctx_opts_init(&o);
    o.dns_servers = bad_opts[_i].servers ? bad_opts[_i].servers : "127.0.0.1:53";
    const char *list[] = { "ok.rill.test:443:127.0.0.1", bad_opts[_i].override, NULL };
    o.overrides = list;
    o.family = bad_opts[_i].family;
    o.cache_max_ttl_s = bad_opts[_i].cache_max_ttl_s;
    o.negative_ttl_s = bad_opts[_i].negative_ttl_s;
    rill_ctx *ctx = NULL;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_ctx_new(&o, &ctx, &err);
    if (st == RILL_OK) {
        rill_ctx_free(ctx); /* before failing: no leak report on top of the finding */
        ck_abort_msg("rill_ctx_new accepted servers \"%s\", override \"%s\", family %d, "
                     "cache_max_ttl_s %d, negative_ttl_s %d; wanted RILL_E_INVALID",
                     o.dns_servers, bad_opts[_i].override ? bad_opts[_i].override : "", o.family,
                     o.cache_max_ttl_s, o.negative_ttl_s);
    }
    rt_assert_err(&err, st, RILL_E_INVALID, bad_opts[_i].needle);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

START_TEST(test_ctx_new_args)
{
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_ctx_opts o;
    opts_for(&o, "127.0.0.1:53");
    rt_assert_err(&err, rill_ctx_new(&o, NULL, &err), RILL_E_INVALID, "out");
    /* err may be NULL. */
    ck_assert_int_eq(rill_ctx_new(&o, NULL, NULL), RILL_E_INVALID);
}
END_TEST

START_TEST(test_defaults)
{
    rill_ctx_opts o;
    memset(&o, 0x5a, sizeof o);
    rill_ctx_opts_init(&o);
    ck_assert_ptr_null(o.dns_servers);
    ck_assert_ptr_null(o.overrides);
    ck_assert_int_eq(o.family, 0);
    ck_assert_int_eq(o.cache_max_ttl_s, 300);
    ck_assert_int_eq(o.negative_ttl_s, 5);
    ck_assert_int_eq(o.query_timeout_ms, 2000);
    ck_assert_int_eq(o.query_tries, 3);
    ck_assert_int_ge(o.max_queries_in_flight, 64);
    ck_assert_int_le(o.max_queries_in_flight, 256);
    ck_assert_int_eq(o.dns_cache_max, 1000);
}
END_TEST

/* ---- lifetime and descriptors ---- */

START_TEST(test_ctx_free_idle)
{
    rt_watchdog(20, "test_ctx_free_idle");
    rill_ctx_free(NULL);
    int fds = rt_count_fds();
    rill_ctx *ctx = ctx_with("127.0.0.1:53");
    assert_stats(ctx, 0, 0, 0);
    rill_ctx_free(ctx);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

START_TEST(test_no_fd_leak)
{
    rt_watchdog(30, "test_no_fd_leak");
    rt_dns *dns = rt_dns_start();
    const char *list[] = { "over.rill.test:*:127.0.0.1", NULL };
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.overrides = list;
    int fds = rt_count_fds();
    for (int round = 0; round < 20; round++) {
        rill_ctx *ctx = new_ctx(&o);
        static const char *const good[] = { RT_DNS_BOTH,  RT_DNS_V4,   RT_DNS_V6,
                                            RT_DNS_ALIAS, "127.0.0.1", "over.rill.test" };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
            rill_addr *addrs;
            size_t n;
            resolve_ok(ctx, good[i], 443, 5000, &addrs, &n);
            rill_addrs_free(addrs);
        }
        resolve_fails(ctx, RT_DNS_MISSING, 443, 5000, RILL_E_DNS, RT_DNS_MISSING);
        resolve_fails(ctx, "", 443, 5000, RILL_E_INVALID, "empty");
        rill_ctx_free(ctx);
        ck_assert_msg(rt_count_fds() == fds, "round %d: %d descriptors open, %d before", round,
                      rt_count_fds(), fds);
    }
    rt_dns_stop(dns);
}
END_TEST

/* ---- batches ---- */

#define BATCH 200

START_TEST(test_resolve_many)
{
    rt_watchdog(30, "test_resolve_many");
    rt_dns *dns = rt_dns_start();
    const char *list[] = { "over.rill.test:*:127.0.0.1", NULL };
    rill_ctx_opts o;
    opts_for(&o, rt_dns_servers(dns));
    o.overrides = list;
    rill_ctx *ctx = new_ctx(&o);

    static char names[BATCH][48];
    const char *hosts[BATCH + 5];
    for (int i = 0; i < BATCH; i++) {
        snprintf(names[i], sizeof names[i], "n%d." RT_DNS_WILD, i);
        hosts[i] = names[i];
    }
    hosts[BATCH] = RT_DNS_MISSING;
    hosts[BATCH + 1] = "bad name.rill.test";
    hosts[BATCH + 2] = "[::1]";
    hosts[BATCH + 3] = "over.rill.test";
    hosts[BATCH + 4] = RT_DNS_V6;
    static rill_resolve_result res[BATCH + 5];
    rill_status st = rill_resolve_many(ctx, hosts, BATCH + 5, 443, 10000, res);
    ck_assert_msg(st == RILL_OK, "resolve_many: %s", rill_strerror(st));
    for (int i = 0; i < BATCH; i++) {
        ck_assert_msg(res[i].status == RILL_OK, "%s: %s", hosts[i], res[i].message);
        ck_assert_ptr_eq(res[i].host, hosts[i]);
        ck_assert_uint_eq(res[i].count, 2);
        for (size_t k = 0; k < res[i].count; k++)
            check_addr(&res[i].addrs[k], 443);
    }
    ck_assert_int_eq(res[BATCH].status, RILL_E_DNS);
    ck_assert_ptr_nonnull(strstr(res[BATCH].message, RT_DNS_MISSING));
    ck_assert_int_eq(res[BATCH + 1].status, RILL_E_INVALID);
    ck_assert_ptr_nonnull(strstr(res[BATCH + 1].message, "space"));
    ck_assert_int_eq(res[BATCH + 2].status, RILL_OK);
    ck_assert_str_eq(res[BATCH + 2].addrs[0].text, "[::1]:443");
    ck_assert_int_eq(res[BATCH + 3].status, RILL_OK);
    ck_assert_str_eq(res[BATCH + 3].addrs[0].text, "127.0.0.1:443");
    ck_assert_int_eq(res[BATCH + 4].status, RILL_OK);
    ck_assert_str_eq(res[BATCH + 4].addrs[0].text, "[::1]:443");
    rill_resolve_results_free(res, BATCH + 5);
    assert_stats(ctx, BATCH + 2, 0, 0);
    ck_assert_int_eq(rt_dns_query_count_type(dns, "n7." RT_DNS_WILD, "A"), 1);

    /* Again: everything from the cache. */
    st = rill_resolve_many(ctx, hosts, BATCH + 5, 443, 10000, res);
    ck_assert_int_eq(st, RILL_OK);
    ck_assert_int_eq(res[0].status, RILL_OK);
    rill_resolve_results_free(res, BATCH + 5);
    assert_stats(ctx, BATCH + 2, BATCH + 2, 0);
    rill_ctx_free(ctx);
    rt_dns_stop(dns);
}
END_TEST

/* The window caps queries in flight: 16 names held 150 ms each take 4 rounds with a window
 * of 4, one round with a window of 16. */
static const int windows[] = { 4, 16 };

START_TEST(test_resolve_many_window)
{
    rt_watchdog(30, "test_resolve_many_window");
    int window = windows[_i];
    rt_dns *dns = rt_dns_start();
    rt_dns_relay *relay = rt_dns_relay_start(dns, 150);
    rill_ctx_opts o;
    opts_for(&o, rt_dns_relay_servers(relay));
    o.max_queries_in_flight = window;
    rill_ctx *ctx = new_ctx(&o);
    char names[16][32];
    const char *hosts[16];
    for (int i = 0; i < 16; i++) {
        snprintf(names[i], sizeof names[i], "w%d." RT_DNS_WILD, i);
        hosts[i] = names[i];
    }
    rill_resolve_result res[16];
    int64_t start = rt_now_us();
    rill_status st = rill_resolve_many(ctx, hosts, 16, 80, 10000, res);
    int64_t took_ms = (rt_now_us() - start) / 1000;
    ck_assert_int_eq(st, RILL_OK);
    for (int i = 0; i < 16; i++)
        ck_assert_msg(res[i].status == RILL_OK, "%s: %s", hosts[i], res[i].message);
    rill_resolve_results_free(res, 16);
    if (window == 4)
        ck_assert_msg(took_ms >= 4 * 150 - 10, "window 4: %lld ms", (long long)took_ms);
    else
        ck_assert_msg(took_ms < 3 * 150, "window 16: %lld ms", (long long)took_ms);
    rill_ctx_free(ctx);
    rt_dns_relay_stop(relay);
    rt_dns_stop(dns);
}
END_TEST

/* A batch with a deadline shorter than the answers: RILL_E_TIMEOUT for each, on time. */
START_TEST(test_resolve_many_deadline)
{
    rt_watchdog(20, "test_resolve_many_deadline");
    rt_dns_silent *silent = rt_dns_silent_start();
    rill_ctx *ctx = ctx_with(rt_dns_silent_servers(silent));
    const char *hosts[] = { RT_DNS_BOTH, RT_DNS_V4, "127.0.0.1" };
    rill_resolve_result res[3];
    int64_t start = rt_now_us();
    rill_status st = rill_resolve_many(ctx, hosts, 3, 80, 300, res);
    rt_assert_elapsed(start, 300, 800);
    ck_assert_int_eq(st, RILL_E_TIMEOUT);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(res[i].status, RILL_E_TIMEOUT);
        ck_assert_msg(strstr(res[i].message, hosts[i]) != NULL, "\"%s\" lacks %s", res[i].message,
                      hosts[i]);
    }
    ck_assert_int_eq(res[2].status, RILL_OK);
    rill_resolve_results_free(res, 3);
    ck_assert_int_eq(rill_resolve_many(NULL, hosts, 3, 80, 300, res), RILL_E_INVALID);
    ck_assert_int_eq(rill_resolve_many(ctx, NULL, 3, 80, 300, res), RILL_E_INVALID);
    ck_assert_int_eq(rill_resolve_many(ctx, hosts, 3, 80, 300, NULL), RILL_E_INVALID);
    rill_ctx_free(ctx);
    rt_dns_silent_stop(silent);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("resolver");

    TCase *tc = tcase_create("records");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_records, 0, N(records));
    tcase_add_loop_test(tc, test_wrong_family, 0, N(wrong_family));
    tcase_add_test(tc, test_order_stable);
    tcase_add_test(tc, test_nxdomain);
    tcase_add_test(tc, test_nxdomain_expires);
    suite_add_tcase(s, tc);

    tc = tcase_create("cache");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_cache_hit);
    tcase_add_loop_test(tc, test_ttl_expiry, 0, N(expiry));
    tcase_add_test(tc, test_cache_disabled);
    tcase_add_test(tc, test_concurrent_merge);
    tcase_add_test(tc, test_threads_distinct_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("cache_bound");
    tcase_add_checked_fixture(tc, NULL, cache_teardown);
    tcase_add_test(tc, test_cache_bound_100k);
    tcase_add_test(tc, test_cache_bound_answers);
    tcase_add_test(tc, test_cache_expired_freed);
    tcase_add_test(tc, test_cache_bound_in_flight);
    tcase_add_test(tc, test_cache_bound_batch_holds);
    tcase_add_test(tc, test_cache_max_zero);
    suite_add_tcase(s, tc);

    tc = tcase_create("deadlines");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_silent_server_deadline, 0, N(silent_deadlines));
    tcase_add_test(tc, test_slow_answer);
    suite_add_tcase(s, tc);

    tc = tcase_create("without_dns");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_numeric_no_dns, 0, N(numerics));
    tcase_add_test(tc, test_numeric_wrong_family);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_override_family);
    suite_add_tcase(s, tc);

    tc = tcase_create("localhost");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_localhost_no_dns, 0, N(localhosts));
    tcase_add_test(tc, test_localhost_override);
    tcase_add_test(tc, test_localhost_no_ctx);
    tcase_add_loop_test(tc, test_localhost_no_etc_hosts, 0, N(no_hosts_refusing));
    suite_add_tcase(s, tc);

    tc = tcase_create("invalid");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_invalid_host, 0, N(bad_hosts));
    tcase_add_test(tc, test_longest_name);
    tcase_add_test(tc, test_invalid_args);
    tcase_add_loop_test(tc, test_invalid_ctx_opts, 0, N(bad_opts));
    tcase_add_test(tc, test_ctx_new_args);
    tcase_add_test(tc, test_defaults);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifetime");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_ctx_free_idle);
    tcase_add_test(tc, test_no_fd_leak);
    suite_add_tcase(s, tc);

    tc = tcase_create("batch");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_resolve_many);
    tcase_add_loop_test(tc, test_resolve_many_window, 0, N(windows));
    tcase_add_test(tc, test_resolve_many_deadline);
    suite_add_tcase(s, tc);
    return s;
}
