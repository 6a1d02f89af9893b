/* SPDX-License-Identifier: MIT */
/* A counting allocator for rill_set_allocator: live bytes, and failure of the N-th allocation. */
#include <stdlib.h>
#include <string.h>

#include "support.h"

size_t rt_live_bytes;
long rt_allocs_left = -1; /* -1: never fail */

struct alloc_hdr {
    size_t size;
    max_align_t align;
};

static void *count_alloc(size_t n)
{
    if (rt_allocs_left == 0)
        return NULL;
    if (rt_allocs_left > 0)
        rt_allocs_left--;
    struct alloc_hdr *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->size = n;
    /* Atomic: helper servers on rill's listener allocate from their own threads meanwhile. */
    __atomic_fetch_add(&rt_live_bytes, n, __ATOMIC_RELAXED);
    return h + 1;
}

static void count_free(void *p)
{
    if (!p)
        return;
    struct alloc_hdr *h = (struct alloc_hdr *)p - 1;
    __atomic_fetch_sub(&rt_live_bytes, h->size, __ATOMIC_RELAXED);
    free(h);
}

static void *count_realloc(void *p, size_t n)
{
    void *q = count_alloc(n);
    if (!q || !p)
        return q;
    struct alloc_hdr *h = (struct alloc_hdr *)p - 1;
    memcpy(q, p, h->size < n ? h->size : n);
    count_free(p);
    return q;
}

void rt_counting_on(void)
{
    rt_live_bytes = 0;
    rt_allocs_left = -1;
    rill_set_allocator(count_alloc, count_realloc, count_free);
}

void rt_counting_off(void)
{
    rill_set_allocator(NULL, NULL, NULL);
    rt_allocs_left = -1;
}
