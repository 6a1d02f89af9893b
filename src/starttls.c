/* SPDX-License-Identifier: MIT */
/*
 * STARTTLS in place: put a TLS client layer into a chain the caller has been talking plaintext
 * through, under its line and buffered layers (the ones that read ahead), so the caller keeps
 * its top pointer and nothing is closed or detached on the way.
 */
#include <string.h>

#include "internal.h"

/* Layers that read ahead of the protocol: they stay on top, over TLS. */
static bool reads_ahead(const rill_stream *s)
{
    const char *kind = rilli_ops(s)->name;
    return strcmp(kind, RILL_LAYER_LINES) == 0 || strcmp(kind, RILL_LAYER_BUFFERED) == 0;
}

RILL_API rill_status rill_starttls(rill_stream **top, rill_tls_config *cfg, const char *servername,
                                   unsigned flags)
{
    if (!top || !*top)
        return RILL_E_INVALID;
    rill_stream *s = *top;
    if (!cfg)
        return rilli_api_error(s, RILL_E_INVALID, "rill_starttls: config is NULL");
    if (flags & ~RILL_TLS_ALLOW_TRUNCATION) {
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_starttls: flags 0x%x: only RILL_TLS_ALLOW_TRUNCATION is "
                               "allowed (the chain keeps owning its layers)",
                               flags);
    }
    for (const rill_stream *l = s; l; l = l->inner) {
        if (l->shut_wr)
            return rilli_api_error(s, RILL_E_CLOSED,
                                   "rill_starttls: the %s layer is shut down for writing",
                                   rilli_ops(l)->name);
    }
    /* Whatever the caller wrote before the upgrade goes out as plaintext, before the hello. */
    rill_status st = rill_flush(s);
    if (st != RILL_OK)
        return st;
    st = rilli_refuse_pending_plaintext(s, "rill_starttls");
    if (st != RILL_OK)
        return st;
    for (rill_stream *l = s; l && reads_ahead(l); l = l->inner) {
        size_t held = rilli_lines_batch_unread(l);
        if (held > 0)
            return rilli_api_error(s, RILL_E_PENDING_DATA,
                                   "rill_starttls: refusing to start TLS: the last "
                                   "rill_read_lines batch handed out %zu byte%s of lines after "
                                   "its first, received before the upgrade (plaintext that "
                                   "could be injected, CVE-2011-0411)",
                                   held, held == 1 ? "" : "s");
    }
    /* TLS goes right under the lowest of the read-ahead layers at the top. */
    rill_stream *above = NULL, *below = s;
    while (below->inner && reads_ahead(below)) {
        above = below;
        below = below->inner;
    }
    if (strcmp(rilli_ops(below)->name, RILL_LAYER_TLS) == 0)
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_starttls: the chain already runs TLS under its line and "
                               "buffered layers (STARTTLS upgrades a plaintext chain once)");
    bool borrowed = above && (above->flags & RILL_BORROW);
    rill_stream *tls = NULL;
    st = rill_tls_client(below, cfg, servername, flags | (borrowed ? RILL_BORROW : 0u), &tls);
    if (st != RILL_OK)
        return rilli_adopt_error(s, below, st);
    if (!above) {
        *top = tls;
        return RILL_OK;
    }
    /* The layer above now wraps the TLS layer, which owns (or borrows) what it borrowed. */
    above->inner = tls;
    above->flags &= ~RILL_BORROW;
    return RILL_OK;
}
