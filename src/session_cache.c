/* SPDX-License-Identifier: MIT */
/*
 * A small cache of reference-counted objects (TLS client sessions) for a rill_ctx, keyed by a
 * string the TLS room builds from host, port and config identity. It knows nothing of OpenSSL:
 * the TLS room hands in the objects with their ref/unref functions. (Objects, not serialized
 * sessions: decoding a session re-parses the peer's certificate, which cost resumed handshakes
 * a quarter of their rate.)
 *
 * Entries live in one array in insertion order; when it is full the oldest goes. Several
 * entries may share a key (a TLS 1.3 server sends more than one ticket); a lookup takes the
 * newest live one, and removes it when it was marked single-use.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

struct blob {
    char *key;
    void *obj;
    const struct rilli_sess_ops *ops;
    int64_t expires_ms;
    bool single_use;
};

struct rilli_sess_cache {
    int refs; /* atomic: the context's, and one per TLS layer that uses it */
    pthread_mutex_t lock;
    size_t max;
    size_t count;
    struct blob *items; /* oldest first */
};

struct rilli_sess_cache *rilli_sess_cache_new(size_t max)
{
    if (max == 0)
        return NULL;
    struct rilli_sess_cache *c = rilli_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->items = rilli_calloc(max, sizeof *c->items);
    if (!c->items) {
        rilli_free(c);
        return NULL;
    }
    c->max = max;
    c->refs = 1;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void blob_free(struct blob *b)
{
    rilli_free(b->key);
    if (b->obj)
        b->ops->unref(b->obj);
}

/* Remove item @p i, keeping the order of the rest. Called with the lock held. */
static void remove_at(struct rilli_sess_cache *c, size_t i)
{
    blob_free(&c->items[i]);
    memmove(&c->items[i], &c->items[i + 1], (c->count - i - 1) * sizeof *c->items);
    c->count--;
}

void rilli_sess_cache_ref(struct rilli_sess_cache *c)
{
    if (c)
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void rilli_sess_cache_free(struct rilli_sess_cache *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < c->count; i++)
        blob_free(&c->items[i]);
    pthread_mutex_destroy(&c->lock);
    rilli_free(c->items);
    rilli_free(c);
}

bool rilli_sess_cache_put(struct rilli_sess_cache *c, const char *key, void *obj,
                          const struct rilli_sess_ops *ops, bool single_use, int64_t expires_ms)
{
    if (!c || !key || !obj || !ops)
        return false;
    size_t klen = strlen(key) + 1;
    struct blob b = { rilli_malloc(klen), obj, ops, expires_ms, single_use };
    if (!b.key)
        return false; /* out of memory: the session is simply not cached */
    memcpy(b.key, key, klen);
    pthread_mutex_lock(&c->lock);
    if (c->count == c->max)
        remove_at(c, 0);
    c->items[c->count++] = b;
    pthread_mutex_unlock(&c->lock);
    return true;
}

void *rilli_sess_cache_get(struct rilli_sess_cache *c, const char *key)
{
    if (!c || !key)
        return NULL;
    void *out = NULL;
    int64_t now = rilli_now_ms();
    pthread_mutex_lock(&c->lock);
    for (size_t i = c->count; i-- > 0;) {
        struct blob *b = &c->items[i];
        if (b->expires_ms <= now) {
            remove_at(c, i);
            continue;
        }
        if (strcmp(b->key, key) != 0)
            continue;
        out = b->obj;
        if (b->single_use) {
            b->obj = NULL; /* the caller gets the cache's reference */
            remove_at(c, i);
        } else {
            b->ops->ref(out);
        }
        break;
    }
    pthread_mutex_unlock(&c->lock);
    return out;
}
