/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure: the N-th allocation fails, for every N over a whole client conversation
 * (connect, TLS client, buffered, lines, handshake, a line each way, close) and over the
 * library's object constructors. Each run must end in RILL_OK or RILL_E_NOMEM (with a message),
 * leave no rill memory allocated (the counting allocator's live bytes return to 0) and no
 * descriptor open. The peer is a rill TLS server in a forked process, untouched by the failures.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "certs.h"
#include "support.h"

#define MAX_RUNS 400

/* Echo lines over TLS for every connection until killed. */
static void serve_forever(rill_listener *l)
{
    for (;;) {
        rill_stream *s = NULL, *lines = NULL;
        rill_error err;
        if (rill_accept(l, RILL_TIMEOUT_NONE, &s, &err) != RILL_OK)
            continue;
        if (rill_set_timeouts(s, 5000, 5000) != RILL_OK ||
            rill_lines_new(s, 1024, RILL_EOL_LF, 0, &lines) != RILL_OK) {
            rill_close(s);
            continue;
        }
        const char *line;
        size_t len;
        while (rill_read_line(lines, &line, &len) == RILL_OK) {
            char out[1100];
            int n = snprintf(out, sizeof out, "echo %.*s\n", (int)len, line);
            if (rill_write_all(lines, out, (size_t)n, NULL) != RILL_OK)
                break;
        }
        rill_close(lines);
    }
}

static pid_t start_server(uint16_t *port)
{
    const rt_certs *c = rt_certs_get();
    rill_error err;
    rill_tls_config *cfg = NULL;
    ck_assert(rill_tls_config_new(&cfg, &err) == RILL_OK);
    ck_assert_msg(rill_tls_config_set_cert_file(cfg, c->good.chain, c->good.key, &err) == RILL_OK,
                  "%s", err.msg);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.tls = cfg;
    rill_listener *l = NULL;
    ck_assert_msg(rill_listen("127.0.0.1", 0, &lo, &l, &err) == RILL_OK, "%s", err.msg);
    rill_tls_config_free(cfg);
    *port = rill_listener_port(l);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        rt_watchdog(120, "alloc-fail server");
        serve_forever(l);
        _exit(0);
    }
    rill_listener_free(l);
    return pid;
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGKILL);
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        ;
}

/* The conversation; returns its status with the message of whichever step failed in @p why. */
static rill_status converse(rill_tls_config *cfg, uint16_t port, char *why, size_t len)
{
    rill_error err = { 0 };
    rill_stream *tcp = NULL, *tls = NULL, *buf = NULL, *lines = NULL;
    rill_status st = rill_tcp_connect_addr("127.0.0.1", port, NULL, &tcp, &err);
    if (st != RILL_OK) {
        snprintf(why, len, "%s", err.msg);
        return st;
    }
    if ((st = rill_tls_client(tcp, cfg, RT_CERTS_HOST, 0, &tls)) != RILL_OK) {
        snprintf(why, len, "%s", rill_errmsg(tcp));
        rill_close(tcp);
        return st;
    }
    if ((st = rill_buffered_new(tls, 4096, 4096, 0, &buf)) != RILL_OK) {
        snprintf(why, len, "%s", rill_errmsg(tls));
        rill_close(tls);
        return st;
    }
    if ((st = rill_lines_new(buf, 1024, RILL_EOL_LF, 0, &lines)) != RILL_OK) {
        snprintf(why, len, "%s", rill_errmsg(buf));
        rill_close(buf);
        return st;
    }
    const char *line = NULL;
    size_t n = 0;
    if ((st = rill_set_timeouts(lines, 5000, 5000)) == RILL_OK &&
        (st = rill_tls_handshake(lines)) == RILL_OK &&
        (st = rill_write_str(lines, "hello\n", NULL)) == RILL_OK &&
        (st = rill_flush(lines)) == RILL_OK && (st = rill_read_line(lines, &line, &n)) == RILL_OK &&
        (n != 10 || memcmp(line, "echo hello", 10) != 0))
        st = RILL_E_PROTOCOL;
    snprintf(why, len, "%s", st == RILL_OK ? "" : rill_errmsg(lines));
    rill_status cst = rill_close(lines);
    return st != RILL_OK ? st : cst;
}

START_TEST(test_every_allocation_of_a_conversation)
{
    rt_watchdog(120, "alloc failure loop");
    const rt_certs *c = rt_certs_get();
    uint16_t port = 0;
    pid_t server = start_server(&port);
    rill_error err;
    rill_tls_config *cfg = NULL;
    ck_assert(rill_tls_config_new(&cfg, &err) == RILL_OK);
    ck_assert(rill_tls_config_set_ca_file(cfg, c->ca, &err) == RILL_OK);
    char why[RILL_ERRMSG_MAX];
    /* A first run freezes the config (allocations of its own, outside the loop). */
    ck_assert_msg(converse(cfg, port, why, sizeof why) == RILL_OK, "%s", why);
    int fds = rt_count_fds();
    int failures = 0;
    bool done = false;
    for (long n = 0; n < MAX_RUNS && !done; n++) {
        rt_counting_on();
        rt_allocs_left = n;
        rill_status st = converse(cfg, port, why, sizeof why);
        done = rt_allocs_left > 0; /* the run needed fewer than n allocations */
        size_t live = rt_live_bytes;
        rt_counting_off();
        ck_assert_msg(st == RILL_OK || st == RILL_E_NOMEM, "allocation %ld failing gave %s: %s", n,
                      rill_strerror(st), why);
        if (st == RILL_E_NOMEM) {
            failures++;
            ck_assert_msg(strstr(why, "out of memory") != NULL,
                          "allocation %ld: message does not say out of memory: %s", n, why);
        }
        ck_assert_msg(live == 0, "allocation %ld failing leaked %zu bytes", n, live);
        ck_assert_int_eq(rt_count_fds(), fds);
    }
    ck_assert_msg(done, "the conversation still failed after %d allocation limits", MAX_RUNS);
    ck_assert_msg(failures > 0, "no allocation failure was ever hit");
    fprintf(stderr, "alloc_fail: %d failing allocation points covered\n", failures);
    rill_tls_config_free(cfg);
    stop_server(server);
}
END_TEST

/* Constructors that allocate: each fails cleanly with RILL_E_NOMEM on every allocation. */
START_TEST(test_constructors)
{
    rill_error err;
    for (long n = 0; n < 50; n++) {
        rt_counting_on();
        rt_allocs_left = n;
        rill_tls_config *cfg = NULL;
        rill_status st = rill_tls_config_new(&cfg, &err);
        bool ok = st == RILL_OK;
        if (ok)
            st = rill_tls_config_set_alpn(cfg, "h2,http/1.1", &err);
        rill_ctx *ctx = NULL;
        rill_status cst = rill_ctx_new(NULL, &ctx, &err);
        bool done = rt_allocs_left > 0;
        rill_ctx_free(ctx);
        rill_tls_config_free(cfg);
        size_t live = rt_live_bytes;
        rt_counting_off();
        ck_assert_msg(st == RILL_OK || st == RILL_E_NOMEM, "tls config at %ld: %d", n, st);
        ck_assert_msg(cst == RILL_OK || cst == RILL_E_NOMEM || cst == RILL_E_DNS, "ctx at %ld: %d",
                      n, cst);
        ck_assert_msg(live == 0, "allocation %ld failing leaked %zu bytes", n, live);
        if (done)
            return;
    }
    ck_abort_msg("constructors still failing after 50 allocation limits");
}
END_TEST

/* OpenSSL's allocations, failing after a countdown (set before OpenSSL allocates anything). */
static long ossl_allocs_left = -1;
static bool ossl_hooked;

/* Count one allocation down; true when this one must fail. */
static bool ossl_fail_now(void)
{
    if (ossl_allocs_left == 0)
        return true;
    if (ossl_allocs_left > 0)
        ossl_allocs_left--;
    return false;
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return ossl_fail_now() ? NULL : malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return ossl_fail_now() ? NULL : realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* OpenSSL's own allocations fail in turn: every run ends in RILL_OK or a clean error. */
START_TEST(test_openssl_allocation_failures)
{
    rt_watchdog(300, "openssl alloc failure loop");
    if (!ossl_hooked) {
        fprintf(stderr, "SKIP: OpenSSL allocated before the hooks could be set\n");
        ck_abort_msg("CRYPTO_set_mem_functions was refused");
    }
    const rt_certs *c = rt_certs_get();
    uint16_t port = 0;
    pid_t server = start_server(&port);
    rill_error err;
    rill_tls_config *cfg = NULL;
    ck_assert(rill_tls_config_new(&cfg, &err) == RILL_OK);
    ck_assert(rill_tls_config_set_ca_file(cfg, c->ca, &err) == RILL_OK);
    char why[RILL_ERRMSG_MAX];
    ck_assert_msg(converse(cfg, port, why, sizeof why) == RILL_OK, "%s", why);
    int fds = rt_count_fds();
    int nomem = 0, other = 0;
    bool done = false;
    long n;
    for (n = 0; n < 200000 && !done; n += 1 + n / 32) {
        ossl_allocs_left = n;
        rill_status st = converse(cfg, port, why, sizeof why);
        done = ossl_allocs_left > 0;
        ossl_allocs_left = -1;
        if (st == RILL_E_NOMEM)
            nomem++;
        else if (st != RILL_OK)
            other++;
        ck_assert_msg(st == RILL_OK || st == RILL_E_NOMEM || st == RILL_E_TLS ||
                          st == RILL_E_TLS_VERIFY,
                      "OpenSSL allocation %ld failing gave %s: %s", n, rill_strerror(st), why);
        ck_assert_int_eq(rt_count_fds(), fds);
    }
    ck_assert_msg(done, "the conversation still failed at OpenSSL allocation %ld", n);
    fprintf(stderr,
            "alloc_fail: OpenSSL allocation points tried up to %ld: %d RILL_E_NOMEM, %d "
            "other TLS errors\n",
            n, nomem, other);
    ck_assert_msg(nomem > 0, "no OpenSSL allocation failure was reported as RILL_E_NOMEM");
    rill_tls_config_free(cfg);
    stop_server(server);
}
END_TEST

Suite *rill_test_suite(void)
{
    ossl_hooked = CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) == 1;
    (void)rt_certs_prepare(NULL, 0); /* once, before Check forks the tests */
    Suite *s = suite_create("alloc_fail");
    TCase *tc = tcase_create("alloc_fail");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_every_allocation_of_a_conversation);
    tcase_add_test(tc, test_constructors);
    tcase_add_test(tc, test_openssl_allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}
