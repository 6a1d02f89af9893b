/* SPDX-License-Identifier: MIT */
/*
 * fuzz_proxy: the http-connect and socks5 layers fed arbitrary proxy replies over the memory
 * transport, and the reply parsers behind them called directly.
 *
 * Header (2 bytes): [0] bit 0: socks5 (else http-connect); bit 1: with credentials; bit 2:
 * non-blocking (control bytes inject WANTs); bit 3: the target is an IPv6 literal. [1] selects
 * max_reply (64 << (b % 9)). Then control bytes and the proxy's bytes (see fuzz.h).
 *
 * Checked: the handshake ends (no endless WANT loop) with RILL_OK or a negative status with a
 * message, and a failure repeats itself; once open, the bytes read through the layer are exactly
 * the bytes the proxy sent after its reply (nothing lost, nothing of the reply handed up), and
 * rill_pending() counted the ones held; the parsers' verdicts agree with their inputs (a
 * complete HTTP header block ends in an empty line within the bytes; a SOCKS reply's length
 * fits).
 */
#include <string.h>

#include "fuzz.h"
#include "proxy/proxy.h"

#define HDR 2

static void check_parsers(const uint8_t *d, size_t n)
{
    struct rilli_http_reply hr;
    enum rilli_http_result h = rilli_http_reply_parse(d, n, &hr);
    if (h == RILLI_HTTP_DONE) {
        FZ_CHECK(hr.header_len >= 12 && hr.header_len <= n, "header_len %zu of %zu", hr.header_len,
                 n);
        FZ_CHECK(d[hr.header_len - 1] == '\n', "header block does not end in LF");
        FZ_CHECK(hr.status >= 0 && hr.status <= 999, "status %d", hr.status);
        FZ_CHECK(memchr(hr.reason, '\0', sizeof hr.reason) != NULL, "reason not terminated");
    } else if (h == RILLI_HTTP_BAD) {
        FZ_CHECK(hr.problem[0] != '\0', "bad reply without a reason");
    }
    for (int stage = 0; stage < 3; stage++) {
        struct rilli_socks_reply sr;
        enum rilli_socks_result r = rilli_socks5_reply_parse(stage, d, n, &sr);
        if (r == RILLI_SOCKS_DONE)
            FZ_CHECK(sr.len >= 2 && sr.len <= n, "socks reply length %zu of %zu", sr.len, n);
        else if (r == RILLI_SOCKS_BAD)
            FZ_CHECK(sr.problem[0] != '\0', "bad socks reply without a reason");
        FZ_CHECK(rilli_socks5_reply_text(sr.code)[0] != '\0', "reply code without text");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in;
    fz_split(&in, data, size, HDR);
    check_parsers(in.data, in.ndata);
    bool socks = in.hdr[0] & 1, cred = in.hdr[0] & 2, nb = in.hdr[0] & 4, v6 = in.hdr[0] & 8;
    struct fz_mem_opts mo = { .wants = nb, .bursts = false, .burst_max = 0 };
    rill_stream *mem = NULL, *t = NULL;
    if (fz_mem_new(&in, &mo, &mem) != RILL_OK)
        return 0;
    rill_tunnel_opts to;
    rill_tunnel_opts_init(&to);
    to.max_reply = (size_t)64 << (in.hdr[1] % 9);
    to.user = cred ? "user" : NULL;
    to.password = cred ? "pass" : NULL;
    to.proxy_name = "fuzz-proxy";
    const char *host = v6 ? "2001:db8::1" : "target.example";
    rill_status st = socks ? rill_socks5_new(mem, host, 443, &to, 0, &t)
                           : rill_http_connect_new(mem, host, 443, &to, 0, &t);
    if (st != RILL_OK) {
        FZ_CHECK(st == RILL_E_NOMEM, "constructor failed: %d", (int)st);
        (void)rill_close(mem);
        return 0;
    }
    if (nb && rill_set_timeouts(t, 0, 0) != RILL_OK)
        abort();
    int rounds = 0;
    do {
        st = rill_tunnel_handshake(t);
        FZ_CHECK(++rounds < 100000, "endless WANT loop");
    } while (st == RILL_WANT_READ || st == RILL_WANT_WRITE);
    if (st != RILL_OK) {
        FZ_CHECK(st < 0 && rill_errmsg(t)[0] != '\0', "status %d without message", (int)st);
        FZ_CHECK(rill_tunnel_handshake(t) == st, "a failed handshake did not repeat itself");
        (void)rill_close(t);
        return 0;
    }
    /* Open: what comes out is what followed the reply, byte for byte. */
    size_t log_at_open = 0;
    (void)fz_mem_log(t, &log_at_open);
    size_t held = rill_pending(t);
    FZ_CHECK(held <= log_at_open, "pending %zu of %zu served", held, log_at_open);
    uint8_t *got = malloc(in.ndata + 1);
    size_t ngot = 0;
    for (rounds = 0;; rounds++) {
        size_t n = 0;
        st = rill_read(t, got + ngot, in.ndata + 1 - ngot, &n);
        FZ_CHECK(rounds < 100000, "endless read loop");
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
            continue;
        if (st != RILL_OK)
            break;
        ngot += n;
        FZ_CHECK(ngot <= in.ndata, "more bytes out than the proxy sent");
    }
    FZ_CHECK(st == RILL_EOF, "read after open: %d %s", (int)st, rill_errmsg(t));
    size_t served = 0;
    const uint8_t *log = fz_mem_log(t, &served);
    FZ_CHECK(ngot <= served && memcmp(got, log + served - ngot, ngot) == 0,
             "tunnel bytes differ from the tail of what the proxy sent");
    FZ_CHECK(served - ngot == log_at_open - held, "reply %zu bytes, consumed %zu", served - ngot,
             log_at_open - held);
    free(got);
    (void)rill_close(t);
    return 0;
}
