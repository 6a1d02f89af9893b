/* SPDX-License-Identifier: MIT */
/*
 * Faults under every layer (tests/support/faulty.c): reads in 1-byte and random pieces, short
 * writes, injected WANTs, a reset at a chosen byte and a stall, below buffered, lines and TLS
 * (client and server, handshake included). Data is checksummed: every run must deliver exactly
 * the bytes sent, in order, or a clear error — never lose, duplicate or reorder a byte.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certs.h"
#include "faulty.h"
#include "support.h"

enum top { TOP_NONE, TOP_BUFFERED, TOP_LINES };

struct side {
    rill_stream *s;
};

/* Build faulty > tcp, optionally tls over it, optionally buffered (and lines) on top. */
static rill_stream *stack(rill_stream *tcp, const rt_faults *f, rill_tls_config *tls, bool server,
                          enum top top)
{
    rill_stream *s = NULL;
    ck_assert_int_eq(rt_faulty_new(tcp, f, &s), RILL_OK);
    if (tls) {
        rill_stream *t = NULL;
        rill_status st =
            server ? rill_tls_server(s, tls, 0, &t) : rill_tls_client(s, tls, RT_CERTS_HOST, 0, &t);
        ck_assert_msg(st == RILL_OK, "tls: %s", rill_errmsg(s));
        s = t;
    }
    if (top >= TOP_BUFFERED) {
        rill_stream *b = NULL;
        ck_assert_int_eq(rill_buffered_new(s, 4096, 4096, 0, &b), RILL_OK);
        s = b;
    }
    if (top == TOP_LINES) {
        rill_stream *l = NULL;
        ck_assert_int_eq(rill_lines_new(s, 1024, RILL_EOL_LF, 0, &l), RILL_OK);
        s = l;
    }
    return s;
}

static rill_tls_config *server_cfg(void)
{
    const rt_certs *c = rt_certs_get();
    rill_tls_config *cfg = NULL;
    rill_error err;
    ck_assert(rill_tls_config_new(&cfg, &err) == RILL_OK);
    ck_assert_msg(rill_tls_config_set_cert_file(cfg, c->good.chain, c->good.key, &err) == RILL_OK,
                  "%s", err.msg);
    return cfg;
}

static rill_tls_config *client_cfg(void)
{
    const rt_certs *c = rt_certs_get();
    rill_tls_config *cfg = NULL;
    rill_error err;
    ck_assert(rill_tls_config_new(&cfg, &err) == RILL_OK);
    ck_assert_msg(rill_tls_config_set_ca_file(cfg, c->ca, &err) == RILL_OK, "%s", err.msg);
    return cfg;
}

/* The sent data: text lines of random lengths (so the line reader can rebuild it exactly). */
static unsigned char *make_data(size_t len, uint64_t seed)
{
    unsigned char *d = malloc(len);
    ck_assert_ptr_nonnull(d);
    rt_fill_pattern(d, len, seed);
    for (size_t i = 0; i < len; i++) {
        d[i] = (unsigned char)('a' + d[i] % 26);
        if (d[i] == 'q' || i + 1 == len)
            d[i] = '\n'; /* about one line end in 26 bytes, and the data ends with one */
    }
    return d;
}

struct writer {
    rill_stream *s;
    const unsigned char *data;
    size_t len;
    uint64_t seed;
    rill_status st;
    char msg[RILL_ERRMSG_MAX];
};

/* Write in random-size pieces, then flush and half-close. */
static void *write_side(void *arg)
{
    struct writer *w = arg;
    uint64_t x = w->seed | 1;
    size_t off = 0;
    w->st = RILL_OK;
    while (off < w->len && w->st == RILL_OK) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = 1 + (size_t)(x % 9000);
        if (n > w->len - off)
            n = w->len - off;
        size_t done = 0;
        w->st = rill_write_all(w->s, w->data + off, n, &done);
        off += done;
    }
    if (w->st == RILL_OK)
        w->st = rill_shutdown(w->s);
    snprintf(w->msg, sizeof w->msg, "%s", rill_errmsg(w->s));
    return NULL;
}

/* Read until EOF (by lines when @p by_lines), returning the bytes as received. */
static unsigned char *read_side(rill_stream *s, bool by_lines, size_t cap, size_t *got,
                                rill_status *end)
{
    unsigned char *in = malloc(cap + 1);
    ck_assert_ptr_nonnull(in);
    size_t n = 0;
    rill_status st;
    for (;;) {
        if (by_lines) {
            const char *line;
            size_t len = 0;
            st = rill_read_line(s, &line, &len);
            if (st != RILL_OK)
                break;
            ck_assert_uint_le(n + len + 1, cap);
            memcpy(in + n, line, len);
            n += len;
            in[n++] = '\n';
        } else {
            size_t k = 0;
            size_t want = 1 + (n * 7919) % 5000;
            st = rill_read(s, in + n, want < cap - n ? want : cap - n, &k);
            n += k;
            if (st != RILL_OK || n == cap)
                break;
        }
    }
    *got = n;
    *end = st;
    return in;
}

struct scenario {
    const char *name;
    rt_faults faults;
    bool tls;
    enum top top;
    size_t len;
    int timeout_ms; /* read/write timeouts of both ends; -1 blocks */
};

static void run(const struct scenario *sc, bool server_writes)
{
    rt_watchdog(60, sc->name);
    int fds = rt_count_fds();
    rill_stream *a = NULL, *b = NULL;
    rt_tcp_pair(&a, &b);
    rill_tls_config *ccfg = sc->tls ? client_cfg() : NULL;
    rill_tls_config *scfg = sc->tls ? server_cfg() : NULL;
    rt_faults fa = sc->faults, fb = sc->faults;
    fb.seed = fa.seed * 31 + 7;
    rill_stream *cli = stack(a, &fa, ccfg, false, sc->top);
    rill_stream *srv = stack(b, &fb, scfg, true, sc->top);
    rill_tls_config_free(ccfg);
    rill_tls_config_free(scfg);
    ck_assert(rill_set_timeouts(cli, sc->timeout_ms, sc->timeout_ms) == RILL_OK);
    ck_assert(rill_set_timeouts(srv, sc->timeout_ms, sc->timeout_ms) == RILL_OK);

    unsigned char *data = make_data(sc->len, sc->faults.seed + 1);
    struct writer w = { server_writes ? srv : cli, data, sc->len, sc->faults.seed + 2, 0, "" };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, write_side, &w), 0);
    size_t got = 0;
    rill_status end;
    rill_stream *reader = server_writes ? cli : srv;
    unsigned char *in = read_side(reader, sc->top == TOP_LINES, sc->len, &got, &end);
    char rmsg[RILL_ERRMSG_MAX];
    snprintf(rmsg, sizeof rmsg, "%s", rill_errmsg(reader));
    if (got == sc->len && end == RILL_OK) {
        size_t k = 0;
        char one;
        end = rill_read(reader, &one, 1, &k); /* the writer's half-close */
    }
    pthread_join(th, NULL);
    ck_assert_msg(w.st == RILL_OK, "%s: writer: %s: %s", sc->name, rill_strerror(w.st), w.msg);
    ck_assert_msg(end == RILL_EOF, "%s: reader ended with %s after %zu of %zu bytes: %s", sc->name,
                  rill_strerror(end), got, sc->len, rmsg);
    ck_assert_msg(got == sc->len, "%s: %zu of %zu bytes arrived", sc->name, got, sc->len);
    ck_assert_msg(memcmp(in, data, sc->len) == 0, "%s: bytes differ", sc->name);
    uint64_t wants = 0;
    rt_faulty_stats(cli, &wants, NULL, NULL);
    ck_assert_msg(sc->faults.want_pct == 0 || wants > 0, "%s: no WANT was injected", sc->name);
    free(in);
    free(data);
    ck_assert_int_eq(rill_close(cli), RILL_OK);
    ck_assert_int_eq(rill_close(srv), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), fds);
}

static const struct scenario scenarios[] = {
    { "buffered, 1-byte reads", { 11, 1, 0, 0, 0, 0 }, false, TOP_BUFFERED, 40000, -1 },
    { "buffered, random pieces and WANTs",
      { 12, 700, 333, 25, 0, 0 },
      false,
      TOP_BUFFERED,
      300000,
      5000 },
    { "lines, 1-byte reads and short writes",
      { 13, 1, 5, 10, 0, 0 },
      false,
      TOP_LINES,
      60000,
      5000 },
    { "lines, random pieces", { 14, 3000, 2000, 30, 0, 0 }, false, TOP_LINES, 300000, -1 },
    { "tls, 1-byte reads", { 15, 1, 0, 0, 0, 0 }, true, TOP_NONE, 60000, -1 },
    { "tls, random pieces, short writes, WANTs",
      { 16, 900, 700, 30, 0, 0 },
      true,
      TOP_NONE,
      400000,
      5000 },
    { "tls > buffered > lines, random faults",
      { 17, 50, 30, 20, 0, 0 },
      true,
      TOP_LINES,
      120000,
      5000 },
    { "tls > buffered, 1-byte writes", { 18, 0, 1, 5, 0, 0 }, true, TOP_BUFFERED, 30000, -1 },
};

START_TEST(test_client_to_server)
{
    run(&scenarios[_i], false);
}
END_TEST

START_TEST(test_server_to_client)
{
    run(&scenarios[_i], true);
}
END_TEST

/* A reset injected at byte K: exactly the first K bytes arrive, then RILL_E_RESET. */
START_TEST(test_reset_at_byte)
{
    rt_watchdog(30, "reset at byte");
    rill_stream *a = NULL, *b = NULL;
    rt_tcp_pair(&a, &b);
    rt_faults f = { .seed = 5, .max_read = 333, .reset_read_at = 10000 };
    rill_stream *rd = stack(b, &f, NULL, false, TOP_BUFFERED);
    unsigned char *data = make_data(50000, 9);
    ck_assert(rill_write_all(a, data, 50000, NULL) == RILL_OK);
    size_t got = 0;
    rill_status end;
    unsigned char *in = read_side(rd, false, 50000, &got, &end);
    ck_assert_int_eq(got, 10000);
    ck_assert_msg(memcmp(in, data, got) == 0, "the bytes before the reset differ");
    rt_assert_error(rd, end, RILL_E_RESET,
                    "buffered: faulty: connection reset (injected after 10000");
    free(in);
    free(data);
    rill_close(a);
    rill_close(rd);
}
END_TEST

/* The same under TLS: the reset is reported as a reset by the tls layer, after a clean prefix. */
START_TEST(test_reset_under_tls)
{
    rt_watchdog(30, "reset under tls");
    rill_stream *a = NULL, *b = NULL;
    rt_tcp_pair(&a, &b);
    rt_faults none = { .seed = 1 };
    rt_faults f = { .seed = 6, .max_read = 1000, .reset_read_at = 30000 };
    rill_tls_config *ccfg = client_cfg(), *scfg = server_cfg();
    rill_stream *cli = stack(a, &none, ccfg, false, TOP_NONE);
    rill_stream *srv = stack(b, &f, scfg, true, TOP_NONE);
    rill_tls_config_free(ccfg);
    rill_tls_config_free(scfg);
    unsigned char *data = make_data(200000, 10);
    struct writer w = { cli, data, 200000, 3, 0, "" };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, write_side, &w), 0);
    size_t got = 0;
    rill_status end;
    unsigned char *in = read_side(srv, false, 200000, &got, &end);
    rt_assert_error(srv, end, RILL_E_RESET, "tls: faulty: connection reset (injected");
    ck_assert_uint_gt(got, 0);
    ck_assert_uint_lt(got, 30000);
    ck_assert_msg(memcmp(in, data, got) == 0, "the bytes before the reset differ");
    rill_close(srv); /* the writer then fails or finishes into a closed peer */
    pthread_join(th, NULL);
    rill_close(cli);
    free(in);
    free(data);
}
END_TEST

/* A stall longer than the read timeout is RILL_E_TIMEOUT; the stream then goes on intact. */
START_TEST(test_stall_then_continue)
{
    rt_watchdog(30, "stall");
    rill_stream *a = NULL, *b = NULL;
    rt_tcp_pair(&a, &b);
    rt_faults f = { .seed = 7, .max_read = 100, .stall_ms = 300 };
    rill_stream *rd = stack(b, &f, NULL, false, TOP_LINES);
    ck_assert(rill_set_timeouts(rd, 100, 100) == RILL_OK);
    ck_assert(rill_write_str(a, "first\nsecond\n", NULL) == RILL_OK);
    const char *line;
    size_t len;
    int64_t t0 = rt_now_us();
    rt_assert_error(rd, rill_read_line(rd, &line, &len), RILL_E_TIMEOUT, "timed out after 100 ms");
    rt_assert_elapsed(t0, 100, 5000);
    usleep(250 * 1000);
    ck_assert_int_eq(rill_read_line(rd, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "first");
    ck_assert_int_eq(rill_read_line(rd, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "second");
    rill_close(a);
    rill_close(rd);
}
END_TEST

/* A TLS handshake that stalls past the timeout resumes where it stopped. */
START_TEST(test_tls_handshake_stall_then_continue)
{
    rt_watchdog(30, "tls stall");
    rill_stream *a = NULL, *b = NULL;
    rt_tcp_pair(&a, &b);
    /* Long enough that driving the server below fits in it on a loaded machine too. */
    rt_faults stall = { .seed = 8, .stall_ms = 1500 }, none = { .seed = 9 };
    rill_tls_config *ccfg = client_cfg(), *scfg = server_cfg();
    rill_stream *cli = stack(a, &stall, ccfg, false, TOP_NONE);
    rill_stream *srv = stack(b, &none, scfg, true, TOP_NONE);
    rill_tls_config_free(ccfg);
    rill_tls_config_free(scfg);
    ck_assert(rill_set_timeouts(cli, 0, 0) == RILL_OK);
    ck_assert(rill_set_timeouts(srv, 0, 0) == RILL_OK);
    /* Drive both ends from this thread; the client's reads stall for 1.5 s. */
    rill_status sc = rill_tls_handshake(cli), ss = RILL_WANT_READ;
    ck_assert(sc == RILL_WANT_READ || sc == RILL_WANT_WRITE);
    ck_assert(rill_set_timeouts(cli, 100, 100) == RILL_OK);
    for (int i = 0; i < 50 && ss != RILL_OK; i++) {
        ss = rill_tls_handshake(srv);
        ck_assert_msg(ss >= 0, "%s", rill_errmsg(srv));
        usleep(2000);
    }
    /* The server waits for the client's Finished; the client's stall outlasts its timeout. */
    rt_assert_error(cli, rill_tls_handshake(cli), RILL_E_TIMEOUT, "tls: handshake timed out");
    usleep(1500 * 1000);
    ck_assert(rill_set_timeouts(cli, 5000, 5000) == RILL_OK);
    ck_assert_msg(rill_tls_handshake(cli) == RILL_OK, "%s", rill_errmsg(cli));
    ck_assert(rill_set_timeouts(srv, 5000, 5000) == RILL_OK);
    ck_assert(rill_write_str(cli, "after the stall\n", NULL) == RILL_OK);
    char buf[64];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(srv, buf, 16, &n), RILL_OK);
    ck_assert(memcmp(buf, "after the stall\n", 16) == 0);
    rill_close(cli);
    rill_close(srv);
}
END_TEST

Suite *rill_test_suite(void)
{
    (void)rt_certs_prepare(NULL, 0); /* once, before Check forks the tests */
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 120);
    int n = (int)(sizeof scenarios / sizeof scenarios[0]);
    tcase_add_loop_test(tc, test_client_to_server, 0, n);
    tcase_add_loop_test(tc, test_server_to_client, 0, n);
    tcase_add_test(tc, test_reset_at_byte);
    tcase_add_test(tc, test_reset_under_tls);
    tcase_add_test(tc, test_stall_then_continue);
    tcase_add_test(tc, test_tls_handshake_stall_then_continue);
    suite_add_tcase(s, tc);
    return s;
}
