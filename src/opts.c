/* SPDX-License-Identifier: MIT */
/*
 * Caller-allocated option structs that grow: the size a program was built with comes in the
 * struct's first member (tagged, so an uninitialised struct is refused), and each public entry
 * point loads the caller's struct into one of this library's size with defaults for the fields
 * the program does not know. See docs/abi.md.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* The high 16 bits of a size field: 'r' 'l'. Sizes are below 64 KiB. */
#define SIZE_TAG  0x726c0000u
#define SIZE_MASK 0x0000ffffu

/*
 * Where each member ends, in order: a program built against an older header passes a size at
 * one of these ends (or rounded up to the struct's alignment, as sizeof gives it). Add a line
 * here with every member added at the end of a struct; the assertions below catch a forgotten one.
 */
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
/* A pointer member (data or function: one size on POSIX systems). */
#define END_OF_PTR(type, field) (offsetof(type, field) + sizeof(void *))
static const size_t connect_opts_ends[] = {
    END_OF(rill_connect_opts, timeout_ms),        END_OF(rill_connect_opts, read_timeout_ms),
    END_OF(rill_connect_opts, write_timeout_ms),  END_OF(rill_connect_opts, nodelay),
    END_OF(rill_connect_opts, keepalive_idle_s),  END_OF(rill_connect_opts, family),
    END_OF(rill_connect_opts, attempt_delay_ms),  END_OF(rill_connect_opts, max_in_flight),
    END_OF_PTR(rill_connect_opts, on_event),      END_OF_PTR(rill_connect_opts, on_event_arg),
    END_OF_PTR(rill_connect_opts, tls),           END_OF_PTR(rill_connect_opts, tls_servername),
    END_OF(rill_connect_opts, tls_flags),         END_OF(rill_connect_opts, resolution_delay_ms),
    END_OF_PTR(rill_connect_opts, proxy),         END_OF(rill_connect_opts, proxy_from_env),
    END_OF_PTR(rill_connect_opts, proxy_user),    END_OF_PTR(rill_connect_opts, proxy_password),
    END_OF_PTR(rill_connect_opts, proxy_tls),     END_OF_PTR(rill_connect_opts, no_proxy),
    END_OF_PTR(rill_connect_opts, proxy_headers),
};
static const size_t ctx_opts_ends[] = {
    END_OF_PTR(rill_ctx_opts, dns_servers),
    END_OF_PTR(rill_ctx_opts, overrides),
    END_OF(rill_ctx_opts, family),
    END_OF(rill_ctx_opts, cache_max_ttl_s),
    END_OF(rill_ctx_opts, negative_ttl_s),
    END_OF(rill_ctx_opts, query_timeout_ms),
    END_OF(rill_ctx_opts, query_tries),
    END_OF(rill_ctx_opts, max_queries_in_flight),
    END_OF(rill_ctx_opts, tls_session_cache_max),
    END_OF(rill_ctx_opts, dns_cache_max),
};
/* Members after stream, if any, are listed here by their end minus the end of stream. */
static const size_t listen_opts_tail_ends[] = {
    0,
    END_OF(rill_listen_opts, reuseport) - END_OF(rill_listen_opts, stream),
};

#define ROUND_UP(n, align) (((n) + (align)-1) / (align) * (align))
_Static_assert(ROUND_UP(END_OF_PTR(rill_connect_opts, proxy_headers),
                        _Alignof(rill_connect_opts)) == sizeof(rill_connect_opts),
               "a member was added to rill_connect_opts: list it in connect_opts_ends");
_Static_assert(ROUND_UP(END_OF(rill_ctx_opts, dns_cache_max), _Alignof(rill_ctx_opts)) ==
                   sizeof(rill_ctx_opts),
               "a member was added to rill_ctx_opts: list it in ctx_opts_ends");
_Static_assert(ROUND_UP(END_OF(rill_listen_opts, reuseport), _Alignof(rill_listen_opts)) ==
                   sizeof(rill_listen_opts),
               "a member was added to rill_listen_opts: list it in listen_opts_tail_ends");

static bool size_known(size_t size, const size_t *ends, size_t n, size_t align)
{
    for (size_t i = 0; i < n; i++) {
        if (size == ends[i] || size == ROUND_UP(ends[i], align))
            return true;
    }
    return false;
}

/* Output structs keep their size for a soname (they grow into reserved space). */
#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(rill_tls_info) == 2080, "rill_tls_info has a fixed size: use reserved");
_Static_assert(sizeof(rill_ctx_stats) == 128, "rill_ctx_stats has a fixed size: use reserved");
_Static_assert(sizeof(rill_addr) == 92, "rill_addr is an array element: its size is fixed");
_Static_assert(sizeof(rill_error) == 264, "rill_error's size is fixed");
_Static_assert(sizeof(rill_resolve_result) == 288, "rill_resolve_result is an array element");
#endif

uint32_t rilli_opts_size(size_t size)
{
    return SIZE_TAG | (uint32_t)size;
}

/*
 * The size the caller's struct has, from its tagged first member: one of @p ends (a struct from
 * an older or this header) or larger than @p ours (a newer header).
 */
static rill_status read_size(const char *kind, const char *type, const void *src,
                             const size_t *ends, size_t n_ends, size_t align, size_t ours,
                             size_t *size, rill_error *err)
{
    uint32_t tagged;
    memcpy(&tagged, src, sizeof tagged);
    *size = tagged & SIZE_MASK;
    if ((tagged & ~SIZE_MASK) != SIZE_TAG ||
        (*size <= ours && !size_known(*size, ends, n_ends, align))) {
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "%s: %s not initialised with %s_init() (size field 0x%x)", kind,
                               type, type, (unsigned)tagged);
    }
    return RILL_OK;
}

/* Copy @p src_n caller bytes over @p dst_n bytes of defaults; bytes we do not know must be 0. */
static rill_status copy_grown(const char *kind, const char *type, const void *src, size_t src_n,
                              void *dst, size_t dst_n, rill_error *err)
{
    const unsigned char *bytes = src;
    for (size_t i = dst_n; i < src_n; i++) {
        if (bytes[i] != 0) {
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "%s: %s sets a field this rill (%s) does not know: it needs "
                                   "a newer rill",
                                   kind, type, rill_version());
        }
    }
    memcpy(dst, src, src_n < dst_n ? src_n : dst_n);
    return RILL_OK;
}

/* Load a struct whose first member is its size and which grows only at its end. */
static rill_status load(const char *kind, const char *type, const void *src, const size_t *ends,
                        size_t n_ends, size_t align, void *dst, size_t dst_size, rill_error *err)
{
    size_t size = 0;
    rill_status st = read_size(kind, type, src, ends, n_ends, align, dst_size, &size, err);
    if (st != RILL_OK)
        return st;
    const size_t skip = sizeof(uint32_t); /* dst keeps its own size */
    return copy_grown(kind, type, (const unsigned char *)src + skip, size - skip,
                      (unsigned char *)dst + skip, dst_size - skip, err);
}

rill_status rilli_connect_opts_load(const char *kind, const rill_connect_opts *in,
                                    rill_connect_opts *out, rill_error *err)
{
    rill_connect_opts_init(out);
    if (!in)
        return RILL_OK;
    rill_status st = load(kind, "rill_connect_opts", in, connect_opts_ends,
                          sizeof connect_opts_ends / sizeof connect_opts_ends[0],
                          _Alignof(rill_connect_opts), out, sizeof *out, err);
    return st == RILL_OK ? rilli_check_connect_opts(kind, out, err) : st;
}

rill_status rilli_ctx_opts_load(const rill_ctx_opts *in, rill_ctx_opts *out, rill_error *err)
{
    rill_ctx_opts_init(out);
    if (!in)
        return RILL_OK;
    return load("ctx", "rill_ctx_opts", in, ctx_opts_ends,
                sizeof ctx_opts_ends / sizeof ctx_opts_ends[0], _Alignof(rill_ctx_opts), out,
                sizeof *out, err);
}

/*
 * rill_listen_opts embeds a rill_connect_opts that may grow too: the caller's stream member is
 * stream.size bytes long, and the caller's fields after it start right behind it (its size is a
 * multiple of its alignment, which no later scalar member exceeds). The members before stream
 * never change.
 */
rill_status rilli_listen_opts_load(const char *kind, const rill_listen_opts *in,
                                   rill_listen_opts *out, rill_error *err)
{
    rill_listen_opts_init(out);
    if (!in)
        return RILL_OK;
    const size_t head = offsetof(rill_listen_opts, stream);
    const size_t tail_at = head + sizeof(rill_connect_opts);
    size_t size = 0, stream_size = 0;
    uint32_t tagged;
    memcpy(&tagged, in, sizeof tagged);
    size = tagged & SIZE_MASK;
    if ((tagged & ~SIZE_MASK) != SIZE_TAG || size < head + sizeof(uint32_t)) {
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "%s: rill_listen_opts not initialised with rill_listen_opts_init() "
                               "(size field 0x%x)",
                               kind, (unsigned)tagged);
    }
    rill_status st =
        read_size(kind, "rill_connect_opts", &in->stream, connect_opts_ends,
                  sizeof connect_opts_ends / sizeof connect_opts_ends[0],
                  _Alignof(rill_connect_opts), sizeof(rill_connect_opts), &stream_size, err);
    if (st != RILL_OK)
        return st;
    size_t tail = head + stream_size <= size ? size - head - stream_size : 0;
    if (head + stream_size > size ||
        (tail <= sizeof *out - tail_at &&
         !size_known(tail, listen_opts_tail_ends,
                     sizeof listen_opts_tail_ends / sizeof listen_opts_tail_ends[0],
                     _Alignof(rill_listen_opts))))
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "%s: rill_listen_opts not initialised with rill_listen_opts_init() "
                               "(size %zu, stream size %zu)",
                               kind, size, stream_size);
    const size_t skip = sizeof(uint32_t);
    memcpy((unsigned char *)out + skip, (const unsigned char *)in + skip, head - skip);
    st = copy_grown(kind, "rill_connect_opts", (const unsigned char *)&in->stream + skip,
                    stream_size - skip, (unsigned char *)&out->stream + skip,
                    sizeof out->stream - skip, err);
    if (st != RILL_OK)
        return st;
    return copy_grown(kind, "rill_listen_opts", (const unsigned char *)in + head + stream_size,
                      size - head - stream_size, (unsigned char *)out + tail_at,
                      sizeof *out - tail_at, err);
}
