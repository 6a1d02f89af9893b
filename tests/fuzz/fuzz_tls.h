/* SPDX-License-Identifier: MIT */
/*
 * The driver shared by fuzz_tls_client and fuzz_tls_server: a TLS layer over the memory
 * transport, non-blocking, fed the input's data as the peer's bytes (in pieces and with WANTs
 * as the control bytes say) while its own writes are swallowed. It runs the handshake, then
 * reads, until the stream fails or ends; every WANT must come from the transport (whose WANTs
 * are bounded by the control bytes), so a loop that does not end is a finding. A failed stream
 * must stay failed with the same status, and close must not leak.
 *
 * Header byte: bits 0-1 choose one of four configs of the target, 0x04 RILL_TLS_ALLOW_TRUNCATION,
 * 0x08 writes application data after the handshake, 0x10 a buffered layer under TLS (the
 * stream BIO path through a decorator rather than straight to the transport).
 */
#ifndef RILL_FUZZ_TLS_H
#define RILL_FUZZ_TLS_H

#include <string.h>

#include "fuzz.h"

/* Make the TLS layer over @p inner (owned on success) for config @p which (0..3). */
typedef rill_status (*fz_tls_make)(rill_stream *inner, unsigned which, unsigned flags,
                                   rill_stream **out);

static bool fz_tls_is_want(rill_status st)
{
    return st == RILL_WANT_READ || st == RILL_WANT_WRITE;
}

static void fz_tls_check_failed(rill_stream *s, rill_status st, const char *op)
{
    FZ_CHECK(st < 0 && st != RILL_E_INVALID, "%s: status %d (%s): %s", op, (int)st,
             rill_strerror(st), rill_errmsg(s));
    FZ_CHECK(rill_errmsg(s)[0] != '\0', "%s: error %d without a message", op, (int)st);
}

static int fz_tls_run(const uint8_t *data, size_t size, fz_tls_make make)
{
    struct fz_input in;
    fz_split(&in, data, size, 1);
    uint8_t h = in.hdr[0];
    unsigned flags = (h & 0x04) ? RILL_TLS_ALLOW_TRUNCATION : 0;
    struct fz_mem_opts mo = { true, false, 0 };
    rill_stream *t = NULL, *below = NULL, *s = NULL;
    FZ_CHECK(fz_mem_new(&in, &mo, &t) == RILL_OK, "fz_mem_new");
    below = t;
    if (h & 0x10) {
        FZ_CHECK(rill_buffered_new(t, 1 + in.hdr[0] % 7u * 4096, 4096, 0, &below) == RILL_OK,
                 "rill_buffered_new");
    }
    rill_status st = make(below, h & 3u, flags, &s);
    FZ_CHECK(st == RILL_OK, "making the TLS layer: %d (%s): %s", (int)st, rill_strerror(st),
             rill_errmsg(below));
    FZ_CHECK(rill_set_timeouts(s, 0, 0) == RILL_OK, "rill_set_timeouts");

    /* Each WANT consumes a control byte at the transport, so this many calls always suffice. */
    size_t bound = in.nctl + 64;
    size_t calls = 0;
    do {
        FZ_CHECK(calls++ < bound, "handshake: still WANT after %zu calls", calls);
        st = rill_tls_handshake(s);
    } while (fz_tls_is_want(st));
    rill_tls_info info;
    FZ_CHECK(rill_tls_get_info(s, &info) == RILL_OK, "rill_tls_get_info");
    FZ_CHECK(info.handshake_done == (st == RILL_OK), "handshake_done %d after status %d",
             info.handshake_done, (int)st);
    FZ_CHECK(memchr(info.subject, '\0', sizeof info.subject) &&
                 memchr(info.sans, '\0', sizeof info.sans),
             "rill_tls_info strings not terminated");
    char desc[512];
    (void)rill_describe(s, desc, sizeof desc);
    if (st == RILL_OK) {
        if (h & 0x08) {
            size_t n = 0;
            st = rill_write(s, "ping\n", 5, &n);
            FZ_CHECK(st == RILL_OK || fz_tls_is_want(st) || st < 0, "rill_write: %d", (int)st);
        }
        uint8_t buf[4096];
        calls = 0;
        do {
            FZ_CHECK(calls++ < bound + size, "read: no end after %zu calls", calls);
            size_t n = 0;
            st = rill_read(s, buf, sizeof buf, &n);
            FZ_CHECK(st != RILL_OK || (n >= 1 && n <= sizeof buf), "rill_read: %zu bytes", n);
        } while (st == RILL_OK || fz_tls_is_want(st));
        if (st != RILL_EOF)
            fz_tls_check_failed(s, st, "rill_read");
    } else {
        fz_tls_check_failed(s, st, "rill_tls_handshake");
        /* A failed connection stays failed, with the same status. */
        uint8_t b[16];
        size_t n = 0;
        rill_status again = rill_read(s, b, sizeof b, &n);
        FZ_CHECK(again == st, "read after a failed handshake: %d, the handshake said %d",
                 (int)again, (int)st);
    }
    (void)rill_close(s);
    return 0;
}

#endif
