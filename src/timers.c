/* SPDX-License-Identifier: MIT */
/*
 * Deadlines for event loops: a binary min-heap of (deadline, key) ordered by deadline, then by
 * the order the deadlines were set (so equal deadlines expire first-set first), and an
 * open-addressing table from key to heap position so that set and remove find an entry in
 * O(1) and move it in O(log n). Each heap entry knows its table slot and each slot its heap
 * position; every move of either updates the other.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

struct timer_entry {
    int64_t deadline;
    uint64_t seq; /* order of setting: ties expire first-set first */
    void *key;
    size_t slot; /* index in the key table */
};

struct key_slot {
    void *key;  /* NULL: free */
    size_t pos; /* index in the heap */
};

struct rill_timers {
    struct timer_entry *heap;
    size_t count;
    size_t heap_cap;
    struct key_slot *slots;
    size_t slot_cap; /* power of two, 0 before the first set */
    uint64_t next_seq;
};

RILL_API rill_status rill_timers_new(rill_timers **out)
{
    if (!out)
        return RILL_E_INVALID;
    rill_timers *t = rilli_calloc(1, sizeof *t);
    if (!t)
        return RILL_E_NOMEM;
    *out = t;
    return RILL_OK;
}

RILL_API void rill_timers_free(rill_timers *t)
{
    if (!t)
        return;
    rilli_free(t->heap);
    rilli_free(t->slots);
    rilli_free(t);
}

static size_t hash_key(const void *key, size_t cap)
{
    /* Pointers are aligned and often close together: mix all bits (splitmix64 finaliser). */
    uint64_t x = (uint64_t)(uintptr_t)key;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    x ^= x >> 31;
    return (size_t)x & (cap - 1);
}

static size_t find_slot(const rill_timers *t, const void *key)
{
    if (t->slot_cap == 0)
        return SIZE_MAX;
    for (size_t i = hash_key(key, t->slot_cap);; i = (i + 1) & (t->slot_cap - 1)) {
        if (t->slots[i].key == key)
            return i;
        if (!t->slots[i].key)
            return SIZE_MAX;
    }
}

static void put_slot(rill_timers *t, void *key, size_t pos)
{
    size_t i = hash_key(key, t->slot_cap);
    while (t->slots[i].key)
        i = (i + 1) & (t->slot_cap - 1);
    t->slots[i].key = key;
    t->slots[i].pos = pos;
    t->heap[pos].slot = i;
}

/* Keep the table at most half full so probes stay short. */
static rill_status grow_slots(rill_timers *t)
{
    if ((t->count + 1) * 2 <= t->slot_cap)
        return RILL_OK;
    size_t cap = t->slot_cap ? t->slot_cap * 2 : 16;
    struct key_slot *slots = rilli_calloc(cap, sizeof *slots);
    if (!slots)
        return RILL_E_NOMEM;
    rilli_free(t->slots);
    t->slots = slots;
    t->slot_cap = cap;
    for (size_t pos = 0; pos < t->count; pos++)
        put_slot(t, t->heap[pos].key, pos);
    return RILL_OK;
}

static rill_status grow_heap(rill_timers *t)
{
    if (t->count < t->heap_cap)
        return RILL_OK;
    size_t cap = t->heap_cap ? t->heap_cap * 2 : 16;
    struct timer_entry *heap = rilli_realloc(t->heap, cap * sizeof *heap);
    if (!heap)
        return RILL_E_NOMEM;
    t->heap = heap;
    t->heap_cap = cap;
    return RILL_OK;
}

/* Free slot @p i, shifting later entries of its probe run back so lookups need no tombstones. */
static void drop_slot(rill_timers *t, size_t i)
{
    size_t mask = t->slot_cap - 1;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; t->slots[j].key; j = (j + 1) & mask) {
        size_t home = hash_key(t->slots[j].key, t->slot_cap);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        t->slots[hole] = t->slots[j];
        t->heap[t->slots[hole].pos].slot = hole;
        hole = j;
    }
    t->slots[hole].key = NULL;
}

static bool earlier(const struct timer_entry *a, const struct timer_entry *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void place(rill_timers *t, size_t pos, struct timer_entry e)
{
    t->heap[pos] = e;
    t->slots[e.slot].pos = pos;
}

static void sift_up(rill_timers *t, size_t pos)
{
    struct timer_entry e = t->heap[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (!earlier(&e, &t->heap[parent]))
            break;
        place(t, pos, t->heap[parent]);
        pos = parent;
    }
    place(t, pos, e);
}

static void sift_down(rill_timers *t, size_t pos)
{
    struct timer_entry e = t->heap[pos];
    for (;;) {
        size_t child = 2 * pos + 1;
        if (child >= t->count)
            break;
        if (child + 1 < t->count && earlier(&t->heap[child + 1], &t->heap[child]))
            child++;
        if (!earlier(&t->heap[child], &e))
            break;
        place(t, pos, t->heap[child]);
        pos = child;
    }
    place(t, pos, e);
}

/* Take the entry at heap position @p pos out of the heap and the table. */
static void remove_at(rill_timers *t, size_t pos)
{
    drop_slot(t, t->heap[pos].slot);
    t->count--;
    if (pos == t->count)
        return;
    place(t, pos, t->heap[t->count]);
    if (pos > 0 && earlier(&t->heap[pos], &t->heap[(pos - 1) / 2]))
        sift_up(t, pos);
    else
        sift_down(t, pos);
}

RILL_API rill_status rill_timers_set(rill_timers *t, void *key, int64_t deadline_ms)
{
    if (!t || !key)
        return RILL_E_INVALID;
    size_t i = find_slot(t, key);
    if (i != SIZE_MAX) {
        size_t pos = t->slots[i].pos;
        t->heap[pos].deadline = deadline_ms;
        t->heap[pos].seq = t->next_seq++;
        /* A later seq can only move it down among equal deadlines; an earlier deadline up. */
        sift_up(t, pos);
        sift_down(t, t->slots[i].pos);
        return RILL_OK;
    }
    if (grow_heap(t) != RILL_OK || grow_slots(t) != RILL_OK)
        return RILL_E_NOMEM;
    size_t pos = t->count++;
    t->heap[pos] =
        (struct timer_entry){ .deadline = deadline_ms, .seq = t->next_seq++, .key = key };
    put_slot(t, key, pos);
    sift_up(t, pos);
    return RILL_OK;
}

RILL_API int rill_timers_remove(rill_timers *t, const void *key)
{
    if (!t || !key)
        return 0;
    size_t i = find_slot(t, key);
    if (i == SIZE_MAX)
        return 0;
    remove_at(t, t->slots[i].pos);
    return 1;
}

RILL_API int rill_timers_get(const rill_timers *t, const void *key, int64_t *deadline_ms)
{
    if (!t || !key)
        return 0;
    size_t i = find_slot(t, key);
    if (i == SIZE_MAX)
        return 0;
    if (deadline_ms)
        *deadline_ms = t->heap[t->slots[i].pos].deadline;
    return 1;
}

RILL_API size_t rill_timers_count(const rill_timers *t)
{
    return t ? t->count : 0;
}

RILL_API int rill_timers_timeout(const rill_timers *t, int64_t now_ms)
{
    if (!t || t->count == 0)
        return -1;
    int64_t deadline = t->heap[0].deadline;
    if (deadline <= now_ms)
        return 0;
    /* Any two int64 values: the difference may not fit, but then it is over INT_MAX. */
    if (now_ms < 0 && deadline > INT64_MAX + now_ms)
        return INT_MAX;
    int64_t left = deadline - now_ms;
    return left > INT_MAX ? INT_MAX : (int)left;
}

RILL_API void *rill_timers_expire(rill_timers *t, int64_t now_ms)
{
    if (!t || t->count == 0 || t->heap[0].deadline > now_ms)
        return NULL;
    void *key = t->heap[0].key;
    remove_at(t, 0);
    return key;
}

RILL_API int64_t rill_now_ms(void)
{
    return rilli_now_ms();
}
