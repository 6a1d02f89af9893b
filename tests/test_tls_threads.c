/* SPDX-License-Identifier: MIT */
/*
 * One rill_ctx and one rill_tls_config shared by many threads at once (src/transport/tls*.c,
 * src/session_cache.c): concurrent verified connects with session resumption from the shared
 * cache against a rill TLS listener served by several threads, checksummed echo traffic, and the
 * config's reference counting (freed by its owner while streams still use it). Also built and
 * run under ThreadSanitizer by `scripts/test --tsan`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "support.h"

#define CLIENTS     6
#define CONNECTS    8
#define SERVERS     3
#define MESSAGE_LEN 20000

struct shared {
    rill_listener *listener;
    rill_tls_config *client_cfg;
    rill_ctx *ctx;
    uint16_t port;
    int resumed; /* atomic */
    int served;  /* atomic */
    char failure[RILL_ERRMSG_MAX + 64];
    pthread_mutex_t lock;
};

static void fail_once(struct shared *sh, const char *what, const char *msg)
{
    pthread_mutex_lock(&sh->lock);
    if (!sh->failure[0])
        snprintf(sh->failure, sizeof sh->failure, "%s: %s", what, msg);
    pthread_mutex_unlock(&sh->lock);
}

/* Serve connections until the listener's accept times out: echo until EOF, then close. */
static void *serve(void *arg)
{
    struct shared *sh = arg;
    char *b = malloc(65536);
    ck_assert_ptr_nonnull(b);
    for (;;) {
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = rill_accept(sh->listener, 3000, &s, &err);
        if (st == RILL_E_TIMEOUT)
            break;
        if (st != RILL_OK) {
            fail_once(sh, "accept", err.msg);
            break;
        }
        if (rill_set_timeouts(s, 10000, 10000) != RILL_OK)
            fail_once(sh, "server timeouts", rill_errmsg(s));
        size_t n = 0;
        while ((st = rill_read(s, b, 65536, &n)) == RILL_OK) {
            if ((st = rill_write_all(s, b, n, NULL)) != RILL_OK)
                break;
        }
        if (st != RILL_EOF)
            fail_once(sh, "server", rill_errmsg(s));
        else if (rill_shutdown(s) != RILL_OK)
            fail_once(sh, "server shutdown", rill_errmsg(s));
        rill_close(s);
        __atomic_add_fetch(&sh->served, 1, __ATOMIC_RELAXED);
    }
    free(b);
    return NULL;
}

static void *client(void *arg)
{
    struct shared *sh = arg;
    char *out = malloc(MESSAGE_LEN), *in = malloc(MESSAGE_LEN);
    ck_assert(out && in);
    for (int i = 0; i < CONNECTS && !sh->failure[0]; i++) {
        rt_fill_pattern(out, MESSAGE_LEN, (uint64_t)(uintptr_t)&i + (uint64_t)i);
        rill_connect_opts o;
        rill_connect_opts_init(&o);
        o.tls = sh->client_cfg;
        o.timeout_ms = 10000;
        o.read_timeout_ms = o.write_timeout_ms = 10000;
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = rill_connect(sh->ctx, RT_CERTS_HOST, sh->port, &o, &s, &err);
        if (st != RILL_OK) {
            fail_once(sh, "connect", err.msg);
            break;
        }
        size_t got = 0;
        st = rill_write_all(s, out, MESSAGE_LEN, NULL);
        if (st == RILL_OK)
            st = rill_shutdown(s);
        if (st == RILL_OK)
            st = rill_read_full(s, in, MESSAGE_LEN, &got);
        if (st != RILL_OK)
            fail_once(sh, "client", rill_errmsg(s));
        else if (memcmp(in, out, MESSAGE_LEN) != 0)
            fail_once(sh, "client", "echoed bytes differ");
        char one;
        size_t n = 0;
        if (st == RILL_OK && (st = rill_read(s, &one, 1, &n)) != RILL_EOF)
            fail_once(sh, "client end", rill_errmsg(s));
        if (rill_tls_session_resumed(s))
            __atomic_add_fetch(&sh->resumed, 1, __ATOMIC_RELAXED);
        rill_close(s);
    }
    free(out);
    free(in);
    return NULL;
}

START_TEST(test_shared_ctx_and_config)
{
    rt_watchdog(120, "shared ctx and config");
    const rt_certs *c = rt_certs_get();
    int fds = rt_count_fds();
    struct shared sh = { 0 };
    pthread_mutex_init(&sh.lock, NULL);
    rill_error err;
    rill_tls_config *server_cfg = NULL;
    ck_assert_msg(rill_tls_config_new(&server_cfg, &err) == RILL_OK, "%s", err.msg);
    ck_assert_msg(rill_tls_config_set_cert_file(server_cfg, c->good.chain, c->good.key, &err) ==
                      RILL_OK,
                  "%s", err.msg);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.tls = server_cfg;
    ck_assert_msg(rill_listen("127.0.0.1", 0, &lo, &sh.listener, &err) == RILL_OK, "%s", err.msg);
    rill_tls_config_free(server_cfg); /* the listener holds its own reference */
    sh.port = rill_listener_port(sh.listener);

    ck_assert_msg(rill_tls_config_new(&sh.client_cfg, &err) == RILL_OK, "%s", err.msg);
    ck_assert_msg(rill_tls_config_set_ca_file(sh.client_cfg, c->ca, &err) == RILL_OK, "%s",
                  err.msg);
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    const char *overrides[] = { RT_CERTS_HOST ":*:127.0.0.1", NULL };
    co.overrides = overrides;
    co.dns_servers = "127.0.0.1:9"; /* never asked: the override answers */
    ck_assert_msg(rill_ctx_new(&co, &sh.ctx, &err) == RILL_OK, "%s", err.msg);

    pthread_t srv[SERVERS], cli[CLIENTS];
    for (int i = 0; i < SERVERS; i++)
        ck_assert_int_eq(pthread_create(&srv[i], NULL, serve, &sh), 0);
    for (int i = 0; i < CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&cli[i], NULL, client, &sh), 0);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(cli[i], NULL);
    for (int i = 0; i < SERVERS; i++)
        pthread_join(srv[i], NULL);

    ck_assert_msg(!sh.failure[0], "%s", sh.failure);
    ck_assert_int_eq(sh.served, CLIENTS * CONNECTS);
    /* Each client's first connect may race the others to the cache; later ones find tickets. */
    ck_assert_msg(sh.resumed > 0, "no connection resumed a session from the shared ctx");
    rill_tls_config_free(sh.client_cfg);
    rill_ctx_free(sh.ctx);
    rill_listener_free(sh.listener);
    pthread_mutex_destroy(&sh.lock);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* A config freed by its owner right after use stays alive for the streams that hold it. */
START_TEST(test_config_outlives_owner_reference)
{
    rt_watchdog(60, "config refs");
    const rt_certs *c = rt_certs_get();
    rill_error err;
    rill_tls_config *scfg = NULL, *ccfg = NULL;
    ck_assert(rill_tls_config_new(&scfg, &err) == RILL_OK);
    ck_assert_msg(rill_tls_config_set_cert_file(scfg, c->good.chain, c->good.key, &err) == RILL_OK,
                  "%s", err.msg);
    ck_assert(rill_tls_config_new(&ccfg, &err) == RILL_OK);
    ck_assert(rill_tls_config_set_ca_file(ccfg, c->ca, &err) == RILL_OK);
    rill_stream *a = NULL, *b = NULL, *ta = NULL, *tb = NULL;
    rt_tcp_pair(&a, &b);
    ck_assert(rill_tls_client(a, ccfg, RT_CERTS_HOST, 0, &ta) == RILL_OK);
    ck_assert(rill_tls_server(b, scfg, 0, &tb) == RILL_OK);
    rill_tls_config_free(ccfg);
    rill_tls_config_free(scfg);
    /* Drive both handshakes from one thread, non-blocking. */
    ck_assert(rill_set_timeouts(ta, 0, 0) == RILL_OK);
    ck_assert(rill_set_timeouts(tb, 0, 0) == RILL_OK);
    rill_status sa = RILL_WANT_READ, sb = RILL_WANT_READ;
    for (int i = 0; i < 1000 && (sa != RILL_OK || sb != RILL_OK); i++) {
        if (sa != RILL_OK)
            sa = rill_tls_handshake(ta);
        if (sb != RILL_OK)
            sb = rill_tls_handshake(tb);
        ck_assert_msg(sa >= 0, "client: %s", rill_errmsg(ta));
        ck_assert_msg(sb >= 0, "server: %s", rill_errmsg(tb));
    }
    ck_assert_int_eq(sa, RILL_OK);
    ck_assert_int_eq(sb, RILL_OK);
    rill_tls_info info;
    ck_assert(rill_tls_get_info(ta, &info) == RILL_OK);
    ck_assert_int_eq(info.verified, 1);
    rill_close(ta);
    rill_close(tb);
}
END_TEST

Suite *rill_test_suite(void)
{
    (void)rt_certs_prepare(NULL, 0); /* once, before Check forks the tests */
    Suite *s = suite_create("tls_threads");
    TCase *tc = tcase_create("shared");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_shared_ctx_and_config);
    tcase_add_test(tc, test_config_outlives_owner_reference);
    suite_add_tcase(s, tc);
    return s;
}
