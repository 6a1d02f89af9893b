/* SPDX-License-Identifier: MIT */
/*
 * What the TLS benchmarks share: raw OpenSSL's error on failure, and the raw peer and client
 * contexts with rill's client config over certificates made for the run.
 */
#ifndef RILL_BENCH_TLS_PEER_H
#define RILL_BENCH_TLS_PEER_H

#include "common.h"

#include <openssl/ssl.h>

/* Exit with @p what and OpenSSL's first queued error. */
void bench_ssl_die(const char *what) __attribute__((noreturn));

/* A listening socket with a raw TLS 1.3 server behind it and clients that trust its CA. */
struct bench_tls {
    char dir[64];  /* the certificates (bench_make_certs) */
    int listen_fd; /* on 127.0.0.1:port */
    uint16_t port;
    SSL_CTX *server;      /* raw server: TLS 1.3 only, the one cipher suite asked for */
    SSL_CTX *raw;         /* raw client with rill's SSL modes, verifying the server */
    rill_tls_config *tls; /* rill's client config, trusting the same CA */
};

/* Certificates for @p name (EC P-256), the listener and the three contexts; exits on failure. */
void bench_tls_setup(struct bench_tls *t, const char *name, const char *suite);

/* Frees what bench_tls_setup made and removes the certificates. */
void bench_tls_free(struct bench_tls *t);

#endif
