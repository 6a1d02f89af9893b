/* SPDX-License-Identifier: MIT */
/*
 * `rillcat --demo` (see demo.h): the first thing a newcomer runs. Public rill API only, apart
 * from making the throwaway certificates (democert.c).
 */
#include "demo.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rill/rill.h>

#include "democert.h"

#define DEMO_HOST "demo.rill.test"
#define DEMO_ALPN "rill-demo"
#define STEP_MS   5000 /* every call of the demo has this deadline: nothing can hang */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

RILL_PRINTF(2, 3) static int demo_fail(const char *what, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    fprintf(stderr, "rillcat: demo: %s: %s\n", what, reason);
    return 1;
}

/* Stack buffered > lines on @p inner (taken on success; closed on failure). */
static rill_status stack_lines(rill_stream *inner, rill_stream **top, char *why, size_t len)
{
    rill_stream *buffered = NULL;
    rill_status st = rill_buffered_new(inner, RILL_BUFFERED_DEFAULT_SIZE,
                                       RILL_BUFFERED_DEFAULT_SIZE, 0, &buffered);
    if (st != RILL_OK) {
        snprintf(why, len, "%s", rill_errmsg(inner));
        (void)rill_close(inner);
        return st;
    }
    st = rill_lines_new(buffered, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, 0, top);
    if (st != RILL_OK) {
        snprintf(why, len, "%s", rill_errmsg(buffered));
        (void)rill_close(buffered);
    }
    return st;
}

static rill_status send_line(rill_stream *s, const char *line)
{
    rill_status st = rill_write_str(s, line, NULL);
    if (st == RILL_OK)
        st = rill_write_str(s, "\r\n", NULL);
    return st == RILL_OK ? rill_flush(s) : st;
}

/* ---- the server: one thread, one TLS connection, then one STARTTLS connection ---- */

struct server {
    rill_listener *tls_listener, *plain_listener;
    rill_tls_config *cfg;
    pthread_mutex_t lock; /* guards the chains, which the client prints */
    char chain[2][512];
    char error[RILL_ERRMSG_MAX + 64];
};

/* Answer each line with "250 <line>" until the client half-closes; owns and closes @p s. */
static int serve_lines(struct server *srv, rill_stream *s, int conn)
{
    rill_stream *top = NULL;
    if (stack_lines(s, &top, srv->error, sizeof srv->error) != RILL_OK)
        return -1;
    rill_status st;
    for (int n = 0;; n++) {
        const char *line;
        size_t len;
        st = rill_read_line(top, &line, &len);
        if (st != RILL_OK)
            break;
        if (n == 0) { /* the handshake is done now, so the description is complete */
            pthread_mutex_lock(&srv->lock);
            rill_describe(top, srv->chain[conn], sizeof srv->chain[conn]);
            pthread_mutex_unlock(&srv->lock);
        }
        char reply[RILL_LINES_DEFAULT_MAX + 8];
        snprintf(reply, sizeof reply, "250 %.*s", (int)len, line);
        if ((st = send_line(top, reply)) != RILL_OK)
            break;
    }
    if (st != RILL_EOF)
        snprintf(srv->error, sizeof srv->error, "%s", rill_errmsg(top));
    rill_status closed = rill_close(top);
    return st == RILL_EOF && closed == RILL_OK ? 0 : -1;
}

/* The plain part of the STARTTLS connection: greet, wait for STARTTLS, agree. */
static int serve_plain(struct server *srv, rill_stream *tcp)
{
    rill_stream *lines = NULL;
    rill_status st =
        rill_lines_new(tcp, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, RILL_BORROW, &lines);
    if (st != RILL_OK) {
        snprintf(srv->error, sizeof srv->error, "%s", rill_errmsg(tcp));
        return -1;
    }
    const char *line = "";
    size_t len = 0;
    st = send_line(lines, "220 " DEMO_HOST " ready, say STARTTLS");
    if (st == RILL_OK)
        st = rill_read_line(lines, &line, &len);
    if (st == RILL_OK && (len != 8 || memcmp(line, "STARTTLS", 8) != 0)) {
        snprintf(srv->error, sizeof srv->error, "expected STARTTLS, got %.*s", (int)len, line);
        (void)rill_close(lines);
        return -1;
    }
    if (st == RILL_OK)
        st = send_line(lines, "220 go ahead");
    if (st != RILL_OK)
        snprintf(srv->error, sizeof srv->error, "%s", rill_errmsg(lines));
    /* Unread plaintext here would be an injection attempt: rill_close reports it. */
    rill_status closed = rill_close(lines);
    if (st == RILL_OK && closed != RILL_OK)
        snprintf(srv->error, sizeof srv->error, "refusing the upgrade: %s", rill_strerror(closed));
    return st == RILL_OK && closed == RILL_OK ? 0 : -1;
}

static void *server_main(void *arg)
{
    struct server *srv = arg;
    rill_error err;
    rill_stream *s = NULL;
    /* Accepted from the TLS listener: a "tls > tcp" stream whose handshake runs on first read. */
    if (rill_accept(srv->tls_listener, STEP_MS, &s, &err) != RILL_OK) {
        snprintf(srv->error, sizeof srv->error, "%s", err.msg);
        return NULL;
    }
    if (rill_set_timeouts(s, STEP_MS, STEP_MS) != RILL_OK || serve_lines(srv, s, 0) != 0)
        return NULL;

    if (rill_accept(srv->plain_listener, STEP_MS, &s, &err) != RILL_OK) {
        snprintf(srv->error, sizeof srv->error, "%s", err.msg);
        return NULL;
    }
    rill_stream *tls = NULL;
    if (rill_set_timeouts(s, STEP_MS, STEP_MS) != RILL_OK || serve_plain(srv, s) != 0 ||
        rill_tls_server(s, srv->cfg, 0, &tls) != RILL_OK) {
        if (!srv->error[0])
            snprintf(srv->error, sizeof srv->error, "%s", rill_errmsg(s));
        (void)rill_close(s);
        return NULL;
    }
    (void)serve_lines(srv, tls, 1);
    return NULL;
}

/* ---- the client ---- */

/* Send each line and print it with the server's answer. */
static int exchange(rill_stream *top, const char *const *lines, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *reply;
        size_t len;
        rill_status st = send_line(top, lines[i]);
        if (st == RILL_OK)
            st = rill_read_line(top, &reply, &len);
        if (st != RILL_OK)
            return demo_fail("exchange", "%s",
                             st == RILL_EOF ? "the server closed early" : rill_errmsg(top));
        printf("   > %s\n   < %.*s\n", lines[i], (int)len, reply);
    }
    return 0;
}

/* Half-close, expect the server to close in turn, and close the chain. */
static int finish(rill_stream *top)
{
    const char *line;
    size_t len;
    rill_status st = rill_shutdown(top);
    if (st == RILL_OK)
        st = rill_read_line(top, &line, &len);
    if (st != RILL_EOF) {
        demo_fail("closing", "%s",
                  st == RILL_OK ? "the server sent more than expected" : rill_errmsg(top));
        (void)rill_close(top);
        return 1;
    }
    return rill_close(top) == RILL_OK ? 0 : demo_fail("closing", "could not close cleanly");
}

static void print_chains(struct server *srv, rill_stream *top, int conn)
{
    char chain[512];
    rill_describe(top, chain, sizeof chain);
    printf("   client: %s\n", chain);
    pthread_mutex_lock(&srv->lock);
    printf("   server: %s\n", srv->chain[conn]);
    pthread_mutex_unlock(&srv->lock);
}

static void print_tls_facts(rill_stream *top)
{
    rill_tls_info info;
    if (rill_tls_get_info(top, &info) != RILL_OK)
        return;
    printf("   TLS:    %s %s, ALPN %s, %s, %s\n", info.version, info.cipher,
           info.alpn[0] ? info.alpn : "none", info.resumed ? "resumed session" : "full handshake",
           info.verified ? "peer verified (chain, name, dates)" : "peer NOT verified");
    printf("   peer:   %s, issued by %s\n", info.subject, info.issuer);
    printf("           %s, valid until %s\n", info.sans, info.not_after);
}

struct timings {
    double certs, connect, exchange, starttls;
};

/* Connection 1: rill_connect with TLS in one deadline, then buffered > lines on top. */
static int demo_tls(struct server *srv, rill_ctx *ctx, rill_tls_config *cfg, uint16_t port,
                    struct timings *t)
{
    static const char *const lines[] = { "EHLO newcomer", "MAIL FROM:<you@" DEMO_HOST ">", "QUIT" };
    printf("\n1. TLS from the first byte, verified against the demo CA\n");
    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = STEP_MS;
    opts.read_timeout_ms = opts.write_timeout_ms = STEP_MS;
    opts.tls = cfg;
    rill_error err;
    rill_stream *tls = NULL, *top = NULL;
    double t0 = now_ms();
    if (rill_connect(ctx, DEMO_HOST, port, &opts, &tls, &err) != RILL_OK)
        return demo_fail("connect", "%s", err.msg);
    t->connect = now_ms() - t0;
    char why[RILL_ERRMSG_MAX];
    if (stack_lines(tls, &top, why, sizeof why) != RILL_OK)
        return demo_fail("stacking layers", "%s", why);
    t0 = now_ms();
    if (exchange(top, lines, sizeof lines / sizeof lines[0]) != 0) {
        (void)rill_close(top);
        return 1;
    }
    t->exchange = now_ms() - t0;
    print_chains(srv, top, 0);
    print_tls_facts(top);
    return finish(top);
}

/* Connection 2: plain lines over tcp, STARTTLS, then TLS over the very same tcp stream. */
static int demo_starttls(struct server *srv, rill_ctx *ctx, rill_tls_config *cfg, uint16_t port,
                         struct timings *t)
{
    static const char *const lines[] = { "EHLO newcomer, now encrypted" };
    printf("\n2. STARTTLS: plain lines first, then TLS on the same socket\n");
    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = STEP_MS;
    opts.read_timeout_ms = opts.write_timeout_ms = STEP_MS;
    rill_error err;
    rill_stream *top = NULL;
    double t0 = now_ms();
    if (rill_connect(ctx, DEMO_HOST, port, &opts, &top, &err) != RILL_OK)
        return demo_fail("connect", "%s", err.msg);
    /* One variable for the chain: a failed constructor leaves it as it was (tcp). */
    if (rill_lines_new(top, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, 0, &top) != RILL_OK) {
        demo_fail("stacking layers", "%s", rill_errmsg(top));
        (void)rill_close(top);
        return 1;
    }
    const char *line;
    size_t len;
    rill_status st = rill_read_line(top, &line, &len);
    if (st == RILL_OK)
        printf("   < %.*s\n   > STARTTLS\n", (int)len, line);
    if (st == RILL_OK)
        st = send_line(top, "STARTTLS");
    if (st == RILL_OK)
        st = rill_read_line(top, &line, &len);
    if (st == RILL_OK)
        printf("   < %.*s\n", (int)len, line);
    /* TLS goes under the line reader; bytes it still held would be refused as injected. */
    if (st == RILL_OK)
        st = rill_starttls(&top, cfg, DEMO_HOST, 0);
    if (st == RILL_OK)
        st = rill_tls_handshake(top);
    if (st != RILL_OK) {
        demo_fail("STARTTLS", "%s", rill_errmsg(top));
        (void)rill_close(top);
        return 1;
    }
    t->starttls = now_ms() - t0;
    printf("   (rill_starttls put TLS under the line reader, on the same socket)\n");
    if (exchange(top, lines, 1) != 0) {
        (void)rill_close(top);
        return 1;
    }
    print_chains(srv, top, 1);
    return finish(top);
}

/* Configs, listeners and the resolver context, all from memory. */
static int demo_setup(struct server *srv, const struct democert *dc, rill_tls_config **client,
                      rill_ctx **ctx)
{
    rill_error err;
    if (rill_tls_config_new(&srv->cfg, &err) != RILL_OK ||
        rill_tls_config_set_cert_mem(srv->cfg, dc->cert_pem, dc->cert_len, dc->key_pem, dc->key_len,
                                     &err) != RILL_OK ||
        rill_tls_config_set_alpn(srv->cfg, DEMO_ALPN, &err) != RILL_OK ||
        rill_tls_config_new(client, &err) != RILL_OK ||
        rill_tls_config_set_ca_mem(*client, dc->ca_pem, dc->ca_len, &err) != RILL_OK ||
        rill_tls_config_set_alpn(*client, DEMO_ALPN, &err) != RILL_OK)
        return demo_fail("TLS setup", "%s", err.msg);

    rill_listen_opts lopts;
    rill_listen_opts_init(&lopts);
    lopts.stream.tls = srv->cfg; /* accepted streams are "tls > tcp" */
    if (rill_listen("127.0.0.1", 0, &lopts, &srv->tls_listener, &err) != RILL_OK ||
        rill_listen("127.0.0.1", 0, NULL, &srv->plain_listener, &err) != RILL_OK)
        return demo_fail("listen", "%s", err.msg);

    /* The demo name resolves by a static answer (like curl --resolve): no DNS traffic. */
    static const char *const overrides[] = { DEMO_HOST ":*:127.0.0.1", NULL };
    rill_ctx_opts copts;
    rill_ctx_opts_init(&copts);
    copts.overrides = overrides;
    copts.dns_servers = "127.0.0.1";
    if (rill_ctx_new(&copts, ctx, &err) != RILL_OK)
        return demo_fail("resolver", "%s", err.msg);
    return 0;
}

int rillcat_demo(void)
{
    struct server srv = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct democert dc;
    struct timings t = { 0 };
    rill_tls_config *client = NULL;
    rill_ctx *ctx = NULL;
    char why[256];
    int rc = 1;
    printf("rill %s demo: a rill TLS listener and client on 127.0.0.1, no network needed\n",
           rill_version());
    double t0 = now_ms();
    if (democert_make(DEMO_HOST, "127.0.0.1", &dc, why, sizeof why) != 0)
        return demo_fail("certificates", "%s", why);
    t.certs = now_ms() - t0;
    printf("made a throwaway CA and a certificate for " DEMO_HOST " in memory\n");
    if (demo_setup(&srv, &dc, &client, &ctx) != 0)
        goto out;
    uint16_t tls_port = rill_listener_port(srv.tls_listener);
    uint16_t plain_port = rill_listener_port(srv.plain_listener);
    printf("listening: TLS on 127.0.0.1:%u, plain (for STARTTLS) on 127.0.0.1:%u; " DEMO_HOST
           " resolves to 127.0.0.1 by an override\n",
           tls_port, plain_port);
    pthread_t server;
    if (pthread_create(&server, NULL, server_main, &srv) != 0) {
        demo_fail("server", "cannot start the server thread");
        goto out;
    }
    rc = demo_tls(&srv, ctx, client, tls_port, &t);
    if (rc == 0)
        rc = demo_starttls(&srv, ctx, client, plain_port, &t);
    if (rc != 0) {
        /* Unblock the server if the client stopped early. */
        rill_listener_free(srv.tls_listener);
        rill_listener_free(srv.plain_listener);
        srv.tls_listener = srv.plain_listener = NULL;
    }
    pthread_join(server, NULL);
    if (rc == 0 && srv.error[0])
        rc = demo_fail("server", "%s", srv.error);
    if (rc == 0) {
        printf("\ntimings: certificates %.1f ms, connect + TLS handshake %.1f ms (with the "
               "first use of\n         both TLS configs), 3 round trips %.1f ms, STARTTLS "
               "exchange + handshake %.1f ms\n",
               t.certs, t.connect, t.exchange, t.starttls);
        printf("demo ok\n");
    }
out:
    rill_ctx_free(ctx);
    rill_tls_config_free(client);
    rill_tls_config_free(srv.cfg);
    rill_listener_free(srv.tls_listener);
    rill_listener_free(srv.plain_listener);
    democert_free(&dc);
    return rc;
}
