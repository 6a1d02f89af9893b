/* SPDX-License-Identifier: MIT */
/*
 * The DNS cache: answers keyed on (lower-cased name, family) in a hash table of entry chains,
 * and the entries of queries in flight. No lock of its own: the resolver calls it under its
 * lock. See resolver.h for the rules on holding entries.
 *
 * The bound: at most `max` entries. Entries nobody holds (idle) are the only ones the cache may
 * drop, and it keeps them in two orders: a list by last use (the least recently used goes first
 * when the cache is over its limit) and a binary min-heap by expiry (every call first frees what
 * has expired, so expired answers never wait for their names to be asked again). Each entry
 * joins and leaves each structure once per use, at O(log n) for the heap, so the cost per call
 * stays O(log n) amortised whatever mix of names comes in. The table doubles when chains grow
 * long and halves when it gets sparse.
 */
#include <string.h>
#include <strings.h>

#include "resolver.h"

struct rilli_dns_cache {
    struct rilli_dns_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t nentries;
    size_t max;
    /* Idle entries with an answer to keep, by last use: head newest, tail oldest. */
    struct rilli_dns_entry *lru_head, *lru_tail;
    /* The same entries, by expiry: heap[0] expires first. */
    struct rilli_dns_entry **heap;
    size_t nheap, heap_cap;
    uint64_t evictions;
};

#define MIN_BUCKETS ((size_t)64)
#define MAX_BUCKETS ((size_t)1 << 24)
#define NO_SLOT     SIZE_MAX

struct rilli_dns_cache *rilli_dns_cache_new(size_t max)
{
    struct rilli_dns_cache *c = rilli_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->max = max;
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
    rilli_free(c->heap);
    rilli_free(c);
}

/* ---- the table ---- */

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

/* Rehash into @p n buckets; without memory the table simply stays as it is. */
static void rehash(struct rilli_dns_cache *c, size_t n)
{
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

/* Double the table when chains grow long (over 2 entries a bucket on average). */
static void maybe_grow(struct rilli_dns_cache *c)
{
    if (c->nentries > 2 * c->nbuckets && c->nbuckets < MAX_BUCKETS)
        rehash(c, c->nbuckets * 2);
}

/*
 * Halve the table (as often as it takes) when under 1 entry in 8 buckets is used; an empty cache
 * gives back its heap array too.
 */
static void maybe_shrink(struct rilli_dns_cache *c)
{
    if (c->nentries == 0 && c->heap) {
        rilli_free(c->heap);
        c->heap = NULL;
        c->heap_cap = 0;
    }
    size_t n = c->nbuckets;
    while (n > MIN_BUCKETS && c->nentries < n / 8)
        n /= 2;
    if (n != c->nbuckets)
        rehash(c, n);
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

/* ---- the expiry heap ---- */

static void heap_set(struct rilli_dns_cache *c, size_t i, struct rilli_dns_entry *e)
{
    c->heap[i] = e;
    e->heap_slot = i;
}

static void heap_up(struct rilli_dns_cache *c, size_t i)
{
    struct rilli_dns_entry *e = c->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (c->heap[parent]->expires_ms <= e->expires_ms)
            break;
        heap_set(c, i, c->heap[parent]);
        i = parent;
    }
    heap_set(c, i, e);
}

static void heap_down(struct rilli_dns_cache *c, size_t i)
{
    struct rilli_dns_entry *e = c->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= c->nheap)
            break;
        if (child + 1 < c->nheap && c->heap[child + 1]->expires_ms < c->heap[child]->expires_ms)
            child++;
        if (e->expires_ms <= c->heap[child]->expires_ms)
            break;
        heap_set(c, i, c->heap[child]);
        i = child;
    }
    heap_set(c, i, e);
}

/* Resize the heap array to @p cap slots; false without memory. */
static bool heap_resize(struct rilli_dns_cache *c, size_t cap)
{
    struct rilli_dns_entry **h = rilli_realloc(c->heap, cap * sizeof(struct rilli_dns_entry *));
    if (!h)
        return false;
    c->heap = h;
    c->heap_cap = cap;
    return true;
}

static bool heap_push(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    if (c->nheap == c->heap_cap && !heap_resize(c, c->heap_cap ? 2 * c->heap_cap : 16))
        return false;
    heap_set(c, c->nheap++, e);
    heap_up(c, c->nheap - 1);
    return true;
}

static void heap_remove(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    size_t i = e->heap_slot;
    e->heap_slot = NO_SLOT;
    struct rilli_dns_entry *last = c->heap[--c->nheap];
    if (i != c->nheap) {
        heap_set(c, i, last);
        if (i > 0 && c->heap[(i - 1) / 2]->expires_ms > last->expires_ms)
            heap_up(c, i);
        else
            heap_down(c, i);
    }
    /* A heap left mostly empty gives its memory back (a burst of names does not stay). */
    if (c->heap_cap > 16 && c->nheap < c->heap_cap / 4)
        (void)heap_resize(c, c->heap_cap / 2);
}

/* ---- idle entries: the last-use list and the heap together ---- */

static bool is_idle(const struct rilli_dns_entry *e)
{
    return e->heap_slot != NO_SLOT;
}

/* Make @p e idle (newest use); false when the heap has no room for it. */
static bool idle_add(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    if (!heap_push(c, e))
        return false;
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    else
        c->lru_tail = e;
    c->lru_head = e;
    return true;
}

static void idle_remove(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    heap_remove(c, e);
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

/* Remove idle @p e from everything and free it. */
static void drop_idle(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    idle_remove(c, e);
    unlink_entry(c, e);
    free_entry(e);
}

/* Free every idle entry that has expired. */
static void sweep(struct rilli_dns_cache *c, int64_t now)
{
    while (c->nheap > 0 && c->heap[0]->expires_ms <= now)
        drop_idle(c, c->heap[0]);
}

/* Drop the least recently used idle entries while the cache holds more than @p limit. */
static void evict_over(struct rilli_dns_cache *c, size_t limit)
{
    while (c->nentries > limit && c->lru_tail) {
        drop_idle(c, c->lru_tail);
        c->evictions++;
    }
}

/* ---- the interface ---- */

struct rilli_dns_entry *rilli_dns_cache_find(struct rilli_dns_cache *c, const char *name,
                                             int family)
{
    sweep(c, rilli_now_ms());
    maybe_shrink(c);
    for (struct rilli_dns_entry *e = *bucket_of(c, name, family); e; e = e->next) {
        if (e->family == family && strcasecmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

struct rilli_dns_entry *rilli_dns_cache_add(struct rilli_dns_cache *c, const char *name, int family)
{
    /* Room first, so the new entry is never the one dropped. */
    evict_over(c, c->max > 0 ? c->max - 1 : 0);
    size_t len = strlen(name);
    struct rilli_dns_entry *e = rilli_calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    memcpy(e->name, name, len + 1);
    e->family = family;
    e->heap_slot = NO_SLOT;
    maybe_grow(c);
    struct rilli_dns_entry **slot = bucket_of(c, name, family);
    e->next = *slot;
    *slot = e;
    c->nentries++;
    return e;
}

void rilli_dns_cache_hold(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    if (is_idle(e))
        idle_remove(c, e);
    e->waiters++;
}

/*
 * An answered entry nobody holds any more: keep it as idle (newest use) if it is to be kept and
 * has not expired, else free it; then keep the cache within its limit.
 */
static void settle(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    if (!e->ready || e->waiters > 0)
        return;
    if (!e->cacheable || e->expires_ms <= rilli_now_ms() || !idle_add(c, e)) {
        unlink_entry(c, e);
        free_entry(e);
    } else {
        evict_over(c, c->max);
    }
    maybe_shrink(c);
}

void rilli_dns_cache_release(struct rilli_dns_cache *c, struct rilli_dns_entry *e)
{
    e->waiters--;
    settle(c, e);
}

void rilli_dns_cache_answer(struct rilli_dns_cache *c, struct rilli_dns_entry *e,
                            rill_status status, const char *reason, struct rilli_ip *ips,
                            size_t count, int keep_s)
{
    e->ready = true;
    e->status = status;
    e->reason = reason ? reason : "";
    e->ips = ips;
    e->count = status == RILL_OK ? count : 0;
    e->cacheable = keep_s > 0 && c->max > 0;
    e->expires_ms = rilli_now_ms() + (int64_t)keep_s * 1000;
    settle(c, e);
}

void rilli_dns_cache_counts(struct rilli_dns_cache *c, uint64_t *entries, uint64_t *evictions)
{
    sweep(c, rilli_now_ms());
    maybe_shrink(c);
    *entries = c->nentries;
    *evictions = c->evictions;
}
