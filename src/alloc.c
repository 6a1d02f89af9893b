/* SPDX-License-Identifier: MIT */
/* The one allocation hook of rill: every allocation of the library's own goes through here. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *(*alloc_hook)(size_t) = malloc;
static void *(*realloc_hook)(void *, size_t) = realloc;
static void (*free_hook)(void *) = free;

RILL_API void rill_set_allocator(void *(*alloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                                 void (*free_fn)(void *))
{
    alloc_hook = alloc_fn ? alloc_fn : malloc;
    realloc_hook = realloc_fn ? realloc_fn : realloc;
    free_hook = free_fn ? free_fn : free;
}

void *rilli_malloc(size_t n)
{
    return alloc_hook(n ? n : 1);
}

void *rilli_calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    void *p = rilli_malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *rilli_realloc(void *p, size_t n)
{
    return realloc_hook(p, n ? n : 1);
}

void rilli_free(void *p)
{
    if (p)
        free_hook(p);
}
