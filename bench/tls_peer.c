/* SPDX-License-Identifier: MIT */
/* The TLS benchmarks' shared set-up (tls_peer.h). */
#include "tls_peer.h"

#include <stdio.h>
#include <unistd.h>

#include <openssl/err.h>

void bench_ssl_die(const char *what)
{
    char why[256] = "no OpenSSL error";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, why, sizeof why);
    bench_die("%s: %s", what, why);
}

void bench_tls_setup(struct bench_tls *t, const char *name, const char *suite)
{
    bench_make_certs(t->dir, sizeof t->dir, name, 0);
    char ca[96], cert[96], key[96];
    snprintf(ca, sizeof ca, "%s/ca.pem", t->dir);
    snprintf(cert, sizeof cert, "%s/leaf.pem", t->dir);
    snprintf(key, sizeof key, "%s/leaf.key", t->dir);
    t->listen_fd = bench_listen(&t->port);
    t->server = SSL_CTX_new(TLS_server_method());
    if (!t->server || SSL_CTX_use_certificate_chain_file(t->server, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(t->server, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_set_min_proto_version(t->server, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(t->server, suite) != 1)
        bench_ssl_die("server SSL_CTX");
    /* The raw client mirrors rill's modes (tls_config.c). */
    t->raw = SSL_CTX_new(TLS_client_method());
    if (!t->raw || SSL_CTX_load_verify_file(t->raw, ca) != 1)
        bench_ssl_die("client SSL_CTX");
    SSL_CTX_set_mode(t->raw, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(t->raw, SSL_VERIFY_PEER, NULL);
    rill_error err;
    if (rill_tls_config_new(&t->tls, &err) != RILL_OK ||
        rill_tls_config_set_ca_file(t->tls, ca, &err) != RILL_OK)
        bench_die("rill tls config: %s", err.msg);
}

void bench_tls_free(struct bench_tls *t)
{
    rill_tls_config_free(t->tls);
    SSL_CTX_free(t->raw);
    SSL_CTX_free(t->server);
    close(t->listen_fd);
    bench_remove_certs(t->dir);
}
