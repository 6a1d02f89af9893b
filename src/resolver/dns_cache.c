/* SPDX-License-Identifier: MIT */
/*
 * The DNS cache: answers keyed on (lower-cased name, family) in a hash table of entry chains,
 * each kept until its expiry, and the entries of queries in flight. No lock of its own: the
 * resolver calls it under its lock. See resolver.h for the rules on holding entries.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "resolver.h"

struct rilli_dns_cache {
    struct rilli_dns_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t nentries;
};

#define MIN_BUCKETS 64

struct rilli_dns_cache *rilli_dns_cache_new(void)
{
    struct rilli_dns_cache *c = rilli_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->nbuckets = MIN_BUCKETS;
    c->buckets = rilli_calloc(c->nbuckets, sizeof(struct rilli_dns_entry *));
    if (!c->buckets) {
        rilli_free(c);
        return NULL;
    }
    return c;
}

static void free_entry(struct rilli_dns_entry *e)
{
    rilli_free(e->name);
    rilli_free(e->ips);
    rilli_free(e);
}

void rilli_dns_cache_free(struct rilli_dns_cache *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < c->nbuckets; b++) {
        for (struct rilli_dns_entry *e = c->buckets[b], *next; e; e = next) {
            next = e->next;
            free_entry(e);
        }
    }
    rilli_free(c->buckets);
    rilli_free(c);
}

static size_t hash_name(const char *name, int family)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)family;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= (uint64_t)(*p >= 'A' && *p <= 'Z' ? *p + ('a' - 'A') : *p);
        h *= 0x100000001b3ull;
    }
    return (size_t)(h ^ (h >> 32));
}

static struct rilli_dns_entry **bucket_of(struct rilli_dns_cache *c, const char *name, int family)
{
    return &c->buckets[hash_name(name, family) & (c->nbuckets - 1)];
}

static void unlink_entry(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    for (struct rilli_dns_entry **pp = bucket_of(c, e->name, e->family); *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            c->nentries--;
            return;
        }
    }
}

/* Double the table when chains grow long; without memory it simply stays as it is. */
static void maybe_grow(struct rilli_dns_cache *c)
{
    if (c->nentries <= 2 * c->nbuckets || c->nbuckets > ((size_t)1 << 24))
        return;
    size_t n = c->nbuckets * 2;
    struct rilli_dns_entry **b = rilli_calloc(n, sizeof(struct rilli_dns_entry *));
    if (!b)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (struct rilli_dns_entry *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            struct rilli_dns_entry **slot = &b[hash_name(e->name, e->family) & (n - 1)];
            e->next = *slot;
            *slot = e;
        }
    }
    rilli_free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

struct rilli_dns_entry *rilli_dns_cache_find(struct rilli_dns_cache *c, const char *name,
                                             int family)
{
    int64_t now = rilli_now_ms();
    for (struct rilli_dns_entry **pp = bucket_of(c, name, family); *pp;) {
        struct rilli_dns_entry *e = *pp;
        bool stale = e->ready && e->waiters == 0 && (!e->cacheable || e->expires_ms <= now);
        if (stale) {
            *pp = e->next;
            c->nentries--;
            free_entry(e);
            continue;
        }
        if (e->family == family && strcasecmp(e->name, name) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

struct rilli_dns_entry *rilli_dns_cache_add(struct rilli_dns_cache *c, const char *name, int family)
{
    struct rilli_dns_entry *e = rilli_calloc(1, sizeof *e);
    size_t len = strlen(name);
    if (e)
        e->name = rilli_malloc(len + 1);
    if (!e || !e->name) {
        rilli_free(e);
        return NULL;
    }
    memcpy(e->name, name, len + 1);
    e->family = family;
    maybe_grow(c);
    struct rilli_dns_entry **slot = bucket_of(c, name, family);
    e->next = *slot;
    *slot = e;
    c->nentries++;
    return e;
}

void rilli_dns_cache_hold(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    (void)c;
    e->waiters++;
}

/* Free @p e if it is answered, idle and not to be kept. */
static void drop_if_done(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    if (e->ready && e->waiters == 0 && !e->cacheable) {
        unlink_entry(c, e);
        free_entry(e);
    }
}

void rilli_dns_cache_release(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    e->waiters--;
    drop_if_done(c, e);
}

void rilli_dns_cache_answer(struct rilli_dns_cache *c, struct rilli_dns_entry *e,
                            rill_status status, const char *reason, struct rilli_ip *ips,
                            size_t count, int keep_s)
{
    e->ready = true;
    e->status = status;
    snprintf(e->reason, sizeof e->reason, "%s", reason ? reason : "");
    e->ips = ips;
    e->count = status == RILL_OK ? count : 0;
    e->cacheable = keep_s > 0;
    e->expires_ms = rilli_now_ms() + (int64_t)keep_s * 1000;
    drop_if_done(c, e);
}
