/* SPDX-License-Identifier: MIT */
/*
 * bench_tls: the tls layer against raw OpenSSL in the same run, over loopback TCP. The peer is
 * always raw OpenSSL in a thread pinned to another CPU, the same for both sides of a comparison.
 *
 *  throughput  N bytes received (the peer SSL_write()s them after a 1-byte request) and sent (the
 *              peer SSL_read()s them until close_notify), 64 KiB reads/writes on this thread:
 *              raw SSL_read_ex/SSL_write_ex on SSL_set_fd over a blocking socket, against
 *              `tcp > tls > buffered` (rill_tcp_connect_addr; the tls layer's socket fast path)
 *              and `fd > tls > buffered` (rill_fd_new on a connected socket: not a tcp transport,
 *              so OpenSSL's I/O goes through rill's stream BIO and the inner stream's ops). The
 *              time runs from the end of the handshake to the last byte.
 *  handshakes  connections per second, each: TCP connect, TLS 1.3 handshake with chain and name
 *              verification, a 1-byte read (which also takes in the session tickets), close with
 *              close_notify. Full handshakes: raw SSL_connect against rill_tls_client +
 *              rill_tls_handshake (and rill_connect without a ctx, for information). Resumed:
 *              raw SSL_set_session(the previous connection's session) against rill_connect with a
 *              shared rill_ctx (its session cache), and rill_tls_session_export/import for
 *              information. Also the client thread's CPU time per connection.
 *  memory      heap bytes per idle client connection after the handshake and one request/response
 *              line (raw SSL against `tcp > tls > buffered > lines`, without rill_shrink), with
 *              each layer's share: OpenSSL's allocations (CRYPTO_set_mem_functions) plus rill's
 *              (rill_set_allocator) made on this thread, summed over many open connections and
 *              divided.
 *
 * The raw client mirrors what rill sets on its SSL_CTX and SSL: the same modes
 * (SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER),
 * options, versions, client session cache mode, verification (CA file, DNS name with SNI). A raw
 * client with OpenSSL's default modes is shown for information. The peer offers only one TLS 1.3
 * ciphersuite (-C), so both clients negotiate the same; it is printed. Certificates (EC P-256 CA
 * and a leaf for DNS:bench.rill.test,IP:127.0.0.1) are made with the openssl command in a
 * temporary directory before anything is timed, and removed at exit.
 *
 * Variants run interleaved, one round of each per rep, the order reversed every other round;
 * ratios are medians of per-round ratios (bench_paired_ratio), as in bench_throughput.
 *
 * usage: bench_tls [-s bytes] [-r reps] [-c chunk] [-n handshakes] [-m idle-conns] [-C suite]
 *                  [-T] [-H] [-M] [-P] [-R] [-O v] [-v]
 *   defaults: 256 MiB per throughput run, 11 rounds, 64 KiB chunks, 200 connections per
 *   handshake run, 200 idle connections, TLS_AES_256_GCM_SHA384
 *   -T/-H/-M  run only the throughput / handshake / memory part (combinable)
 *   -P  do not pin the measured thread and its peer to different CPUs   -v  print every run
 *   -R  RSA-2048 certificates (CA and leaf) instead of EC P-256
 *   -O v  run only variant v, for profilers such as callgrind --toggle-collect=run_send or
 *         hs_one (ratios are then void): throughput 1 raw, 2 rill tcp, 3 rill fd, 4 raw default
 *         modes; handshakes 1 raw full, 2 rill full, 3 rill_connect full, 4 raw resumed, 5 rill
 *         resumed, 6 rill export/import, 7 raw resumed non-blocking under a deadline
 */
#include "common.h"
#include "tls_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define SERVER_NAME "bench.rill.test"
#define MAX_REPS    99

/* ---- setup ---- */

struct config {
    uint64_t bytes;
    size_t reps;
    size_t chunk;
    size_t handshakes;
    size_t idle;
    const char *suite;
    bool run_tput, run_hs, run_mem;
    bool rsa; /* RSA-2048 certificates instead of EC P-256 */
    int only; /* run only this throughput variant (for profilers), -1: all */
};

struct bench {
    struct config cfg;
    char dir[64]; /* the temporary certificate directory */
    char ca[96], cert[96], key[96];
    int listen_fd;
    uint16_t port;
    SSL_CTX *server;      /* the raw peer */
    SSL_CTX *raw;         /* raw client, rill's modes and options */
    SSL_CTX *raw_default; /* raw client, OpenSSL's default modes (for information) */
    rill_tls_config *tls; /* rill client */
    rill_ctx *ctx;        /* rill_connect's session cache */
    unsigned char *mine;
    unsigned char *theirs;
    char cipher[64];
    char version[16];
};

static void make_certs(struct bench *b)
{
    bench_make_certs(b->dir, sizeof b->dir, SERVER_NAME, b->cfg.rsa);
    snprintf(b->ca, sizeof b->ca, "%s/ca.pem", b->dir);
    snprintf(b->cert, sizeof b->cert, "%s/leaf.pem", b->dir);
    snprintf(b->key, sizeof b->key, "%s/leaf.key", b->dir);
}

static void remove_certs(const struct bench *b)
{
    bench_remove_certs(b->dir);
}

/* What rill_tls_config_new() sets on its SSL_CTX, for the raw client (see tls_config.c). */
static SSL_CTX *raw_client_ctx(const struct bench *b, bool rill_modes)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c)
        bench_ssl_die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    if (rill_modes) {
        SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                   SSL_OP_CIPHER_SERVER_PREFERENCE);
        SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_file(c, b->ca) != 1)
        bench_ssl_die("SSL_CTX_load_verify_file");
    return c;
}

static void setup(struct bench *b)
{
    b->listen_fd = bench_listen(&b->port);

    b->server = SSL_CTX_new(TLS_server_method());
    if (!b->server || SSL_CTX_use_certificate_chain_file(b->server, b->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(b->server, b->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_set_min_proto_version(b->server, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(b->server, b->cfg.suite) != 1)
        bench_ssl_die("server SSL_CTX");
    b->raw = raw_client_ctx(b, true);
    b->raw_default = raw_client_ctx(b, false);

    rill_error err;
    if (rill_tls_config_new(&b->tls, &err) != RILL_OK ||
        rill_tls_config_set_ca_file(b->tls, b->ca, &err) != RILL_OK)
        bench_die("rill tls config: %s", err.msg);
    rill_ctx_opts copts;
    rill_ctx_opts_init(&copts);
    copts.dns_servers = "127.0.0.1"; /* never asked: the host is numeric */
    if (rill_ctx_new(&copts, &b->ctx, &err) != RILL_OK)
        bench_die("rill_ctx_new: %s", err.msg);

    b->mine = malloc(b->cfg.chunk);
    b->theirs = malloc(b->cfg.chunk);
    if (!b->mine || !b->theirs)
        bench_die("out of memory");
    for (size_t i = 0; i < b->cfg.chunk; i++) {
        b->mine[i] = (unsigned char)(i * 131 + 7);
        b->theirs[i] = (unsigned char)(i * 17 + 3);
    }
}

static double bench_min(const double *v, size_t n)
{
    double m = v[0];
    for (size_t i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

/* ---- the raw server side ---- */

static SSL *server_accept(SSL_CTX *ctx, int fd)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        bench_ssl_die("server SSL_new");
    if (SSL_accept(ssl) != 1)
        bench_ssl_die("server SSL_accept");
    return ssl;
}

/* Read until close_notify (or, leniently, a plain end); returns the bytes read. */
static uint64_t server_drain(SSL *ssl, unsigned char *buf, size_t len)
{
    uint64_t got = 0;
    size_t n;
    while (SSL_read_ex(ssl, buf, len, &n) == 1)
        got += n;
    ERR_clear_error();
    return got;
}

static void server_write_all(SSL *ssl, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        size_t w = 0;
        if (SSL_write_ex(ssl, p, len, &w) != 1)
            bench_ssl_die("server SSL_write_ex");
        p += w;
        len -= w;
    }
}

/* ---- the client side: raw SSL or a rill chain ---- */

struct client {
    int fd;
    SSL *ssl;
    rill_stream *s;
};

static SSL *raw_connect(SSL_CTX *ctx, int fd, SSL_SESSION *sess)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        bench_ssl_die("SSL_new");
    SSL_set_hostflags(ssl,
                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    if (SSL_set_tlsext_host_name(ssl, SERVER_NAME) != 1 || SSL_set1_host(ssl, SERVER_NAME) != 1)
        bench_ssl_die("SSL_set1_host");
    if (sess && SSL_set_session(ssl, sess) != 1)
        bench_ssl_die("SSL_set_session");
    if (SSL_connect(ssl) != 1)
        bench_ssl_die("SSL_connect");
    return ssl;
}

/* Wait up to @p deadline (CLOCK_MONOTONIC seconds) for @p events on @p fd. */
static void wait_fd(int fd, short events, double deadline)
{
    struct pollfd p = { .fd = fd, .events = events };
    int ms = (int)((deadline - bench_now()) * 1e3);
    int r;
    do {
        r = poll(&p, 1, ms > 0 ? ms : 0);
    } while (r < 0 && errno == EINTR);
    if (r <= 0)
        bench_die("poll: %s", r == 0 ? "deadline passed" : strerror(errno));
}

/*
 * Raw OpenSSL driven the way rill_connect() drives a connection under its deadline (info row):
 * a non-blocking connect and handshake with poll() until the deadline, then the descriptor back
 * to blocking for the application's reads. Shows what bounding the handshake in time costs
 * with no library in between.
 */
static SSL *raw_connect_deadline(SSL_CTX *ctx, uint16_t port, SSL_SESSION *sess, int *fd_out)
{
    double deadline = bench_now() + 30.0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        bench_die("socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno != EINPROGRESS)
            bench_die("connect: %s", strerror(errno));
        wait_fd(fd, POLLOUT, deadline);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
            bench_die("connect: %s", strerror(soerr));
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        bench_ssl_die("SSL_new");
    SSL_set_hostflags(ssl,
                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    if (SSL_set_tlsext_host_name(ssl, SERVER_NAME) != 1 || SSL_set1_host(ssl, SERVER_NAME) != 1)
        bench_ssl_die("SSL_set1_host");
    if (sess && SSL_set_session(ssl, sess) != 1)
        bench_ssl_die("SSL_set_session");
    for (;;) {
        int r = SSL_connect(ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            wait_fd(fd, POLLIN, deadline);
        else if (e == SSL_ERROR_WANT_WRITE)
            wait_fd(fd, POLLOUT, deadline);
        else
            bench_ssl_die("SSL_connect");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        bench_die("fcntl: %s", strerror(errno));
    *fd_out = fd;
    return ssl;
}

/* Returns 0 at the end of the stream (close_notify). */
static size_t client_read(struct client *c, void *buf, size_t len)
{
    size_t n = 0;
    if (c->ssl) {
        if (SSL_read_ex(c->ssl, buf, len, &n) == 1)
            return n;
        if (SSL_get_error(c->ssl, 0) == SSL_ERROR_ZERO_RETURN)
            return 0;
        bench_ssl_die("SSL_read_ex");
    }
    rill_status st = rill_read(c->s, buf, len, &n);
    if (st == RILL_EOF)
        return 0;
    bench_check(st, "rill_read", c->s);
    return n;
}

static void client_write_all(struct client *c, const void *buf, size_t len)
{
    if (!c->ssl) {
        bench_check(rill_write_all(c->s, buf, len, NULL), "rill_write_all", c->s);
        return;
    }
    const unsigned char *p = buf;
    while (len > 0) { /* partial writes (one record each) with rill's modes */
        size_t w = 0;
        if (SSL_write_ex(c->ssl, p, len, &w) != 1)
            bench_ssl_die("SSL_write_ex");
        p += w;
        len -= w;
    }
}

static void client_flush(struct client *c)
{
    if (!c->ssl)
        bench_check(rill_flush(c->s), "rill_flush", c->s);
}

/* Send close_notify and wait for nothing (both sides alike). */
static void client_shutdown(struct client *c)
{
    if (!c->ssl) {
        bench_check(rill_shutdown(c->s), "rill_shutdown", c->s);
        return;
    }
    if (SSL_shutdown(c->ssl) < 0)
        bench_ssl_die("SSL_shutdown");
}

static void client_close(struct client *c)
{
    if (c->ssl) {
        (void)SSL_shutdown(c->ssl); /* close_notify if not sent yet, as rill_close() does */
        ERR_clear_error();
        SSL_free(c->ssl);
        close(c->fd);
    } else {
        (void)rill_close(c->s);
    }
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void note_cipher(struct bench *b, const char *version, const char *cipher)
{
    if (!b->cipher[0]) {
        snprintf(b->version, sizeof b->version, "%s", version);
        snprintf(b->cipher, sizeof b->cipher, "%s", cipher);
    } else if (strcmp(b->cipher, cipher) != 0 || strcmp(b->version, version) != 0) {
        bench_die("negotiated %s %s here but %s %s before", version, cipher, b->version, b->cipher);
    }
}

static void client_note_cipher(struct bench *b, struct client *c)
{
    if (c->ssl) {
        note_cipher(b, SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
        return;
    }
    rill_tls_info info;
    bench_check(rill_tls_get_info(c->s, &info), "rill_tls_get_info", c->s);
    note_cipher(b, info.version, info.cipher);
}

/* ---- 1, 2: throughput ---- */

/* CPU seconds used by the calling thread (user + system). */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum tvariant { T_RAW, T_RILL_TCP, T_RILL_FD, T_RAW_DEFAULT, TVARIANTS };

/* `tcp > tls > buffered` or `fd > tls > buffered`, handshake done. */
static void rill_open(struct bench *b, bool fd_transport, struct client *c)
{
    rill_error err;
    rill_stream *in = NULL, *tls = NULL, *top = NULL;
    if (fd_transport) {
        c->fd = bench_connect(b->port);
        if (rill_fd_new(c->fd, c->fd, RILL_FD_OWN, &in, &err) != RILL_OK)
            bench_die("rill_fd_new: %s", err.msg);
    } else if (rill_tcp_connect_addr("127.0.0.1", b->port, NULL, &in, &err) != RILL_OK) {
        bench_die("rill_tcp_connect_addr: %s", err.msg);
    }
    bench_check(rill_tls_client(in, b->tls, SERVER_NAME, 0, &tls), "rill_tls_client", in);
    bench_check(
        rill_buffered_new(tls, RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0, &top),
        "rill_buffered_new", tls);
    bench_check(rill_tls_handshake(top), "rill_tls_handshake", top);
    c->s = top;
}

static void tput_open(struct bench *b, enum tvariant v, struct client *c)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    if (v == T_RAW || v == T_RAW_DEFAULT) {
        c->fd = bench_connect(b->port);
        c->ssl = raw_connect(v == T_RAW ? b->raw : b->raw_default, c->fd, NULL);
    } else {
        rill_open(b, v == T_RILL_FD, c);
    }
    client_note_cipher(b, c);
}

struct tput_peer {
    const struct bench *b;
    bool sending; /* the peer sends: this thread receives */
    uint64_t got;
};

static void *tput_peer_main(void *arg)
{
    struct tput_peer *p = arg;
    const struct bench *b = p->b;
    bench_pin(0);
    int fd = bench_accept(b->listen_fd);
    SSL *ssl = server_accept(b->server, fd);
    if (p->sending) {
        unsigned char req;
        size_t n;
        if (SSL_read_ex(ssl, &req, 1, &n) != 1)
            bench_ssl_die("peer: reading the request");
        for (uint64_t left = b->cfg.bytes; left > 0;) {
            size_t len = left < b->cfg.chunk ? (size_t)left : b->cfg.chunk;
            server_write_all(ssl, b->theirs, len);
            left -= len;
        }
        if (SSL_shutdown(ssl) < 0)
            bench_ssl_die("peer: SSL_shutdown");
    } else {
        p->got = server_drain(ssl, b->theirs, b->cfg.chunk);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return NULL;
}

/* MB/s (10^6 bytes per second) received by this thread; *cpu_us: its CPU microseconds per MB. */
__attribute__((noinline)) /* a function of its own for callgrind --toggle-collect */
static double
run_recv(struct bench *b, enum tvariant v, double *cpu_us)
{
    struct tput_peer p = { b, true, 0 };
    pthread_t t;
    if (pthread_create(&t, NULL, tput_peer_main, &p) != 0)
        bench_die("pthread_create failed");
    struct client c;
    tput_open(b, v, &c);

    double c0 = thread_cpu(), t0 = bench_now();
    client_write_all(&c, "g", 1);
    client_flush(&c);
    uint64_t got = 0;
    for (size_t n; (n = client_read(&c, b->mine, b->cfg.chunk)) > 0;)
        got += n;
    double t1 = bench_now(), c1 = thread_cpu();
    pthread_join(t, NULL);
    client_close(&c);
    if (got != b->cfg.bytes)
        bench_die("recv: got %llu bytes, sent %llu", (unsigned long long)got,
                  (unsigned long long)b->cfg.bytes);
    *cpu_us = (c1 - c0) * 1e12 / (double)got;
    return (double)got / (t1 - t0) / 1e6;
}

/* MB/s sent by this thread, until the peer has read the last byte; *cpu_us as run_recv(). */
__attribute__((noinline)) /* as run_recv */
static double
run_send(struct bench *b, enum tvariant v, double *cpu_us)
{
    struct tput_peer p = { b, false, 0 };
    pthread_t t;
    if (pthread_create(&t, NULL, tput_peer_main, &p) != 0)
        bench_die("pthread_create failed");
    struct client c;
    tput_open(b, v, &c);

    double c0 = thread_cpu(), t0 = bench_now();
    for (uint64_t left = b->cfg.bytes; left > 0;) {
        size_t len = left < b->cfg.chunk ? (size_t)left : b->cfg.chunk;
        client_write_all(&c, b->mine, len);
        left -= len;
    }
    client_shutdown(&c);
    double c1 = thread_cpu();
    pthread_join(t, NULL);
    double t1 = bench_now();
    client_close(&c);
    if (p.got != b->cfg.bytes)
        bench_die("send: peer got %llu bytes, sent %llu", (unsigned long long)p.got,
                  (unsigned long long)b->cfg.bytes);
    *cpu_us = (c1 - c0) * 1e12 / (double)p.got;
    return (double)p.got / (t1 - t0) / 1e6;
}

static void bench_throughput(struct bench *b)
{
    static double fig[2][TVARIANTS][MAX_REPS], cpu[2][TVARIANTS][MAX_REPS];
    size_t reps = b->cfg.reps;
    for (size_t r = 0; r < reps; r++) {
        for (int k = 0; k < TVARIANTS; k++) {
            enum tvariant v = (enum tvariant)(r % 2 ? TVARIANTS - 1 - k : k);
            if (b->cfg.only >= 0 && (int)v != b->cfg.only) {
                fig[0][v][r] = fig[1][v][r] = cpu[0][v][r] = cpu[1][v][r] = 1;
                continue;
            }
            fig[0][v][r] = run_recv(b, v, &cpu[0][v][r]);
            fig[1][v][r] = run_send(b, v, &cpu[1][v][r]);
            if (bench_verbose)
                fprintf(stderr,
                        "tput run %zu variant %d: recv %.1f send %.1f MB/s, CPU %.0f %.0f "
                        "us/MB\n",
                        r, (int)v, fig[0][v][r], fig[1][v][r], cpu[0][v][r], cpu[1][v][r]);
        }
    }

    static const char *const dir_name[2] = { "recv", "send" };
    static const char *const raw_op[2] = { "SSL_read_ex", "SSL_write_ex" };
    struct bench_row rows[2 * TVARIANTS], cpu_rows[2 * TVARIANTS];
    memset(rows, 0, sizeof rows);
    memset(cpu_rows, 0, sizeof cpu_rows);
    size_t nrows = 0;
    for (int d = 0; d < 2; d++) {
        double ratio[TVARIANTS], cpu_ratio[TVARIANTS], lo[TVARIANTS] = { 0 }, hi[TVARIANTS] = { 0 },
                                                       cpu_lo[TVARIANTS] = { 0 },
                                                       cpu_hi[TVARIANTS] = { 0 };
        for (int v = 0; v < TVARIANTS; v++) {
            ratio[v] = bench_paired_ratio(fig[d][v], fig[d][T_RAW], reps);
            cpu_ratio[v] = bench_paired_ratio(cpu[d][v], cpu[d][T_RAW], reps);
            if (v != T_RAW) {
                bench_paired_range(fig[d][v], fig[d][T_RAW], reps, &lo[v], &hi[v]);
                bench_paired_range(cpu[d][v], cpu[d][T_RAW], reps, &cpu_lo[v], &cpu_hi[v]);
            }
        }
        for (int v = 0; v < TVARIANTS; v++) {
            struct bench_row *row = &rows[nrows++];
            switch ((enum tvariant)v) {
            case T_RAW:
                snprintf(row->name, sizeof row->name, "%s raw %s, SSL_set_fd", dir_name[d],
                         raw_op[d]);
                break;
            case T_RILL_TCP:
                snprintf(row->name, sizeof row->name, "%s rill tcp > tls > buffered", dir_name[d]);
                break;
            case T_RILL_FD:
                snprintf(row->name, sizeof row->name, "%s rill fd > tls > buffered (BIO)",
                         dir_name[d]);
                break;
            default:
                snprintf(row->name, sizeof row->name, "%s raw, OpenSSL default modes (info)",
                         dir_name[d]);
                break;
            }
            row->best = bench_max(fig[d][v], reps);
            row->median = bench_median(fig[d][v], reps);
            row->ratio = v == T_RAW ? -1 : ratio[v];
            row->goal = v == T_RILL_TCP ? 0.98 : v == T_RILL_FD ? 0.95 : 0;
            row->lo = lo[v];
            row->hi = hi[v];
            struct bench_row *crow = &cpu_rows[nrows - 1];
            *crow = *row;
            crow->best = bench_min(cpu[d][v], reps);
            crow->median = bench_median(cpu[d][v], reps);
            crow->ratio = v == T_RAW ? -1 : cpu_ratio[v];
            crow->goal = 0;
            crow->lo = cpu_lo[v];
            crow->hi = cpu_hi[v];
        }
    }
    char title[300];
    snprintf(title, sizeof title,
             "bench_tls throughput: loopback TCP, %s %s, %.0f MiB per run, %zu-byte "
             "reads/writes, raw OpenSSL peer thread, best and median of %zu runs%s",
             b->version, b->cipher, (double)b->cfg.bytes / (1024.0 * 1024.0), b->cfg.chunk, reps,
             bench_pinning ? ", peer and measured thread pinned to two CPUs" : "");
    bench_print_table(title, "MB/s", "vs raw", rows, nrows);
    printf("raw uses rill's SSL modes (SSL_MODE_RELEASE_BUFFERS | ENABLE_PARTIAL_WRITE | "
           "ACCEPT_MOVING_WRITE_BUFFER);\n\"default modes\" is a raw client without them. "
           "buffered(%u) on top of tls.\n",
           RILL_BUFFERED_DEFAULT_SIZE);
    bench_print_table("bench_tls throughput: the measured thread's CPU time per MB moved "
                      "(CLOCK_THREAD_CPUTIME_ID, user + system), lowest and median; less "
                      "sensitive to other load on the machine than MB/s; ratio: lower is better",
                      "CPU us/MB", "vs raw", cpu_rows, nrows);
}

/* ---- 3: handshakes ---- */

enum hvariant {
    H_RAW_FULL,
    H_RILL_FULL,
    H_RILL_CONNECT_FULL,
    H_RAW_RESUMED,
    H_RILL_RESUMED,
    H_RILL_IMPORT,
    H_RAW_RESUMED_DEADLINE,
    HVARIANTS
};

static bool hs_resumes(enum hvariant v)
{
    return v >= H_RAW_RESUMED;
}

struct hs_server {
    const struct bench *b;
    size_t count;
    size_t resumed;
};

/* One connection after another: handshake, 1 byte, wait for the client's close. */
static void *hs_server_main(void *arg)
{
    struct hs_server *h = arg;
    bench_pin(0);
    unsigned char buf[64];
    for (size_t i = 0; i < h->count; i++) {
        int fd = bench_accept(h->b->listen_fd);
        SSL *ssl = server_accept(h->b->server, fd);
        h->resumed += (size_t)SSL_session_reused(ssl);
        server_write_all(ssl, "h", 1);
        (void)server_drain(ssl, buf, sizeof buf);
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

/* What carries a session from one connection to the next. */
struct hs_state {
    SSL_SESSION *sess; /* raw */
    void *blob;        /* rill export/import */
    size_t blob_len;
};

/* One connection of variant @p v; returns 1 if it resumed a session. */
__attribute__((noinline)) /* a function of its own for callgrind --toggle-collect */
static int
hs_one(struct bench *b, enum hvariant v, struct hs_state *st)
{
    struct client c = { -1, NULL, NULL };
    rill_error err;
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.tls = b->tls;
    o.tls_servername = SERVER_NAME;
    switch (v) {
    case H_RAW_FULL:
    case H_RAW_RESUMED:
        c.fd = bench_connect(b->port);
        c.ssl = raw_connect(b->raw, c.fd, v == H_RAW_RESUMED ? st->sess : NULL);
        break;
    case H_RAW_RESUMED_DEADLINE:
        c.ssl = raw_connect_deadline(b->raw, b->port, st->sess, &c.fd);
        break;
    case H_RILL_FULL:
    case H_RILL_IMPORT: {
        rill_stream *tcp = NULL;
        if (rill_tcp_connect_addr("127.0.0.1", b->port, NULL, &tcp, &err) != RILL_OK)
            bench_die("rill_tcp_connect_addr: %s", err.msg);
        bench_check(rill_tls_client(tcp, b->tls, SERVER_NAME, 0, &c.s), "rill_tls_client", tcp);
        if (v == H_RILL_IMPORT && st->blob)
            bench_check(rill_tls_session_import(c.s, st->blob, st->blob_len),
                        "rill_tls_session_import", c.s);
        bench_check(rill_tls_handshake(c.s), "rill_tls_handshake", c.s);
        break;
    }
    default:
        if (rill_connect(v == H_RILL_RESUMED ? b->ctx : NULL, "127.0.0.1", b->port, &o, &c.s,
                         &err) != RILL_OK)
            bench_die("rill_connect: %s", err.msg);
        break;
    }
    unsigned char byte;
    if (client_read(&c, &byte, 1) != 1)
        bench_die("handshake run: no byte from the server");
    int resumed = c.ssl ? SSL_session_reused(c.ssl) : rill_tls_session_resumed(c.s);
    if (v == H_RAW_RESUMED || v == H_RAW_RESUMED_DEADLINE) {
        SSL_SESSION_free(st->sess);
        st->sess = SSL_get1_session(c.ssl);
    } else if (v == H_RILL_IMPORT) {
        rill_free(st->blob);
        st->blob = NULL;
        bench_check(rill_tls_session_export(c.s, &st->blob, &st->blob_len),
                    "rill_tls_session_export", c.s);
    }
    client_close(&c);
    return resumed;
}

/* Connections per second; *cpu_us gets this thread's CPU microseconds per connection. */
static double run_handshakes(struct bench *b, enum hvariant v, double *cpu_us)
{
    size_t n = b->cfg.handshakes;
    bool resumes = hs_resumes(v);
    struct hs_server h = { b, n + (resumes ? 1 : 0), 0 };
    pthread_t t;
    if (pthread_create(&t, NULL, hs_server_main, &h) != 0)
        bench_die("pthread_create failed");
    struct hs_state st = { NULL, NULL, 0 };
    if (resumes)
        (void)hs_one(b, v, &st); /* a session to start from */
    size_t resumed = 0;
    double c0 = thread_cpu(), t0 = bench_now();
    for (size_t i = 0; i < n; i++)
        resumed += (size_t)hs_one(b, v, &st);
    double t1 = bench_now(), c1 = thread_cpu();
    pthread_join(t, NULL);
    SSL_SESSION_free(st.sess);
    rill_free(st.blob);
    if (resumed != (resumes ? n : 0))
        bench_die("handshake variant %d: %zu of %zu connections resumed", (int)v, resumed, n);
    *cpu_us = (c1 - c0) / (double)n * 1e6;
    return (double)n / (t1 - t0);
}

static void bench_handshakes(struct bench *b)
{
    static double rate[HVARIANTS][MAX_REPS], cpu[HVARIANTS][MAX_REPS];
    size_t reps = b->cfg.reps;
    if (!b->cipher[0]) { /* name the cipher from one raw and one rill connection, untimed */
        struct hs_server h = { b, 2, 0 };
        pthread_t t;
        if (pthread_create(&t, NULL, hs_server_main, &h) != 0)
            bench_die("pthread_create failed");
        for (int v = T_RAW; v <= T_RILL_TCP; v++) {
            struct client c;
            unsigned char byte;
            tput_open(b, (enum tvariant)v, &c);
            (void)client_read(&c, &byte, 1);
            client_close(&c);
        }
        pthread_join(t, NULL);
    }
    for (size_t r = 0; r < reps; r++) {
        for (int k = 0; k < HVARIANTS; k++) {
            enum hvariant v = (enum hvariant)(r % 2 ? HVARIANTS - 1 - k : k);
            if (b->cfg.only >= 0 && (int)v != b->cfg.only) {
                rate[v][r] = cpu[v][r] = 1;
                continue;
            }
            rate[v][r] = run_handshakes(b, v, &cpu[v][r]);
            if (bench_verbose)
                fprintf(stderr, "handshake run %zu variant %d: %.0f/s, %.1f us CPU\n", r, (int)v,
                        rate[v][r], cpu[v][r]);
        }
    }
    static const char *const names[HVARIANTS] = {
        "full: raw SSL_connect",
        "full: rill tls_client + tls_handshake",
        "full: rill_connect, no ctx (info)",
        "resumed: raw SSL_set_session(previous)",
        "resumed: rill_connect, shared ctx",
        "resumed: rill session_export/import (info)",
        "resumed: raw, non-blocking under a deadline (info)",
    };
    struct bench_row rows[HVARIANTS], cpu_rows[HVARIANTS];
    memset(rows, 0, sizeof rows);
    memset(cpu_rows, 0, sizeof cpu_rows);
    for (int v = 0; v < HVARIANTS; v++) {
        int base = hs_resumes((enum hvariant)v) ? H_RAW_RESUMED : H_RAW_FULL;
        struct bench_row *row = &rows[v], *crow = &cpu_rows[v];
        snprintf(row->name, sizeof row->name, "%s", names[v]);
        snprintf(crow->name, sizeof crow->name, "%s", names[v]);
        row->ratio = v == base ? -1 : bench_paired_ratio(rate[v], rate[base], reps);
        crow->ratio = v == base ? -1 : bench_paired_ratio(cpu[v], cpu[base], reps);
        if (v != base) {
            bench_paired_range(rate[v], rate[base], reps, &row->lo, &row->hi);
            bench_paired_range(cpu[v], cpu[base], reps, &crow->lo, &crow->hi);
        }
        row->goal = v == H_RILL_FULL || v == H_RILL_RESUMED ? 0.98 : 0;
        crow->goal = 0;
    }
    for (int v = 0; v < HVARIANTS; v++) { /* after the ratios: bench_median() sorts in place */
        rows[v].best = bench_max(rate[v], reps);
        rows[v].median = bench_median(rate[v], reps);
        cpu_rows[v].best = bench_min(cpu[v], reps);
        cpu_rows[v].median = bench_median(cpu[v], reps);
    }
    char title[300];
    snprintf(title, sizeof title,
             "bench_tls handshakes: loopback TCP, %s %s, %s chain verified with SNI and "
             "DNS name; per connection: connect, handshake, 1-byte read, close; %zu per run, "
             "best and median of %zu runs",
             b->version, b->cipher, b->cfg.rsa ? "RSA-2048" : "EC P-256", b->cfg.handshakes, reps);
    bench_print_table(title, "conn/s", "vs raw", rows, HVARIANTS);
    snprintf(title, sizeof title,
             "bench_tls handshakes: client thread CPU time per connection "
             "(CLOCK_THREAD_CPUTIME_ID, user + system), lowest and median; ratio: lower is "
             "better");
    bench_print_table(title, "CPU us", "vs raw", cpu_rows, HVARIANTS);
}

/* ---- 4: memory ---- */

struct mem_server {
    const struct bench *b;
    size_t count;
};

/*
 * Accept and keep @p count connections, each answering one request line ("ping\n") with one
 * response line ("pong\n"); then wait for each to be closed.
 */
static void *mem_server_main(void *arg)
{
    struct mem_server *m = arg;
    bench_pin(0);
    SSL **ssl = calloc(m->count, sizeof *ssl);
    int *fds = calloc(m->count, sizeof *fds);
    if (!ssl || !fds)
        bench_die("out of memory");
    unsigned char buf[64];
    for (size_t i = 0; i < m->count; i++) {
        fds[i] = bench_accept(m->b->listen_fd);
        ssl[i] = server_accept(m->b->server, fds[i]);
        size_t got = 0, n;
        while (got < 5 && SSL_read_ex(ssl[i], buf + got, 5 - got, &n) == 1)
            got += n;
        if (got != 5 || memcmp(buf, "ping\n", 5) != 0)
            bench_die("memory run: the server did not get the request");
        server_write_all(ssl[i], "pong\n", 5);
    }
    for (size_t i = 0; i < m->count; i++) {
        (void)server_drain(ssl[i], buf, sizeof buf);
        SSL_free(ssl[i]);
        close(fds[i]);
    }
    free(ssl);
    free(fds);
    return NULL;
}

/* What the memory part reports per connection, in counted bytes. */
enum mem_step { M_TCP, M_TLS, M_HANDSHAKE, M_BUFFERED, M_LINES, M_TRAFFIC, M_IDLE, M_SHRUNK, M_N };

/*
 * A raw client: handshake, request, response; the response read whole (5 bytes). With
 * @p free_buffers, SSL_free_buffers() after it (OpenSSL 3.0's RELEASE_BUFFERS mode alone keeps
 * the read buffer of the response here).
 */
static void mem_raw_one(struct bench *b, struct client *c, bool free_buffers)
{
    c->fd = bench_connect(b->port);
    c->ssl = raw_connect(b->raw, c->fd, NULL);
    client_write_all(c, "ping\n", 5);
    unsigned char buf[8];
    size_t got = 0;
    while (got < 5)
        got += client_read(c, buf + got, 5 - got);
    if (memcmp(buf, "pong\n", 5) != 0)
        bench_die("memory run: wrong response");
    if (free_buffers && SSL_free_buffers(c->ssl) != 1)
        bench_die("memory run: SSL_free_buffers refused");
}

/* A rill client `tcp > tls > buffered > lines`, counting each step's bytes into @p step. */
static void mem_rill_one(struct bench *b, struct client *c, double step[M_N])
{
    rill_error err;
    rill_stream *tcp = NULL, *tls = NULL, *buf = NULL, *top = NULL;
    size_t at = bench_live_bytes();
#define STEP(k)                               \
    do {                                      \
        size_t now_ = bench_live_bytes();     \
        step[k] += (double)now_ - (double)at; \
        at = now_;                            \
    } while (0)
    if (rill_tcp_connect_addr("127.0.0.1", b->port, NULL, &tcp, &err) != RILL_OK)
        bench_die("rill_tcp_connect_addr: %s", err.msg);
    STEP(M_TCP);
    bench_check(rill_tls_client(tcp, b->tls, SERVER_NAME, 0, &tls), "rill_tls_client", tcp);
    STEP(M_TLS);
    bench_check(rill_tls_handshake(tls), "rill_tls_handshake", tls);
    STEP(M_HANDSHAKE);
    bench_check(
        rill_buffered_new(tls, RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0, &buf),
        "rill_buffered_new", tls);
    STEP(M_BUFFERED);
    bench_check(rill_lines_new(buf, RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, 0, &top), "rill_lines_new",
                buf);
    STEP(M_LINES);
    bench_check(rill_write_all(top, "ping\n", 5, NULL), "rill_write_all", top);
    bench_check(rill_flush(top), "rill_flush", top);
    const char *line;
    size_t len;
    bench_check(rill_read_line(top, &line, &len), "rill_read_line", top);
    if (len != 4 || memcmp(line, "pong", 4) != 0)
        bench_die("memory run: wrong response line");
    STEP(M_TRAFFIC);
#undef STEP
    c->s = top;
}

/*
 * Open @p n connections (raw, or rill `tcp > tls > buffered > lines`), each idle after its
 * handshake and one request/response. Per connection: step[M_IDLE] = counted bytes then,
 * step[M_SHRUNK] = after rill_shrink() (rill only), and for rill each step's share.
 */
enum mem_client { MEM_RILL, MEM_RAW, MEM_RAW_FREED };

static void mem_run(struct bench *b, enum mem_client who, size_t n, double step[M_N])
{
    struct mem_server m = { b, n };
    pthread_t t;
    if (pthread_create(&t, NULL, mem_server_main, &m) != 0)
        bench_die("pthread_create failed");
    struct client *c = calloc(n, sizeof *c);
    if (!c)
        bench_die("out of memory");
    memset(step, 0, M_N * sizeof *step);
    bench_count_this_thread(true);
    size_t before = bench_live_bytes();
    for (size_t i = 0; i < n; i++) {
        c[i].fd = -1;
        if (who != MEM_RILL)
            mem_raw_one(b, &c[i], who == MEM_RAW_FREED);
        else
            mem_rill_one(b, &c[i], step);
    }
    size_t open = bench_live_bytes();
    for (size_t i = 0; who == MEM_RILL && i < n; i++)
        (void)rill_shrink(c[i].s);
    size_t shrunk = bench_live_bytes();
    bench_count_this_thread(false);
    for (size_t i = 0; i < n; i++)
        client_close(&c[i]);
    pthread_join(t, NULL);
    free(c);
    for (int k = 0; k < M_N; k++)
        step[k] /= (double)n;
    step[M_IDLE] = (double)(open - before) / (double)n;
    step[M_SHRUNK] = (double)(shrunk - before) / (double)n;
}

static void bench_memory(struct bench *b)
{
    double raw[M_N], freed[M_N], rill[M_N];
    /* One connection each first: what the first use allocates for good (the trust store loaded
     * when rill's config freezes, OpenSSL's per-thread and algorithm caches) is not per
     * connection. */
    mem_run(b, MEM_RAW, 1, raw);
    mem_run(b, MEM_RILL, 1, rill);
    mem_run(b, MEM_RAW, b->cfg.idle, raw);
    mem_run(b, MEM_RAW_FREED, b->cfg.idle, freed);
    mem_run(b, MEM_RILL, b->cfg.idle, rill);
    double ratio = rill[M_IDLE] / raw[M_IDLE], vs_freed = rill[M_IDLE] / freed[M_IDLE];
    printf("\nbench_tls memory: heap bytes per idle client connection after the handshake and one "
           "request/response line, %zu connections each;\ncounted: OpenSSL's allocations "
           "(CRYPTO_set_mem_functions) and rill's (rill_set_allocator) on the client thread, "
           "requested sizes\n(malloc's own overhead not counted). The raw client uses "
           "SSL_MODE_RELEASE_BUFFERS (as rill's config does; rill's tls layer releases its "
           "SSL's\nrecord buffers itself when a burst ends); the second raw row also calls "
           "SSL_free_buffers() after the response.\n",
           b->cfg.idle);
    printf("%-48s %11s %13s %9s %7s %s\n", "name", "bytes/conn", "after shrink", "vs raw", "goal",
           "result");
    printf("%-48s %11.0f %13s %9s %7s\n", "raw SSL_set_fd, one SSL_CTX", raw[M_IDLE], "-", "-", "");
    printf("%-48s %11.0f %13s %9.3f %7s\n", "raw, then SSL_free_buffers() (info)", freed[M_IDLE],
           "-", freed[M_IDLE] / raw[M_IDLE], "");
    printf("%-48s %11.0f %13.0f %9.3f %7s %s\n", "rill tcp > tls > buffered(16384) > lines(8192)",
           rill[M_IDLE], rill[M_SHRUNK], ratio, "<=1.05", ratio <= 1.05 ? "PASS" : "MISS");
    printf("vs raw: rill without rill_shrink() / raw; rill / raw with SSL_free_buffers(): %.3f. "
           "Per layer (bytes each step added, rill's "
           "layer blocks and what OpenSSL allocated in it):\n",
           vs_freed);
    static const char *const names[M_TRAFFIC + 1] = {
        "tcp: rill_tcp_connect_addr",
        "tls: rill_tls_client (SSL_new)",
        "tls: handshake (session, peer cert)",
        "buffered: rill_buffered_new",
        "lines: rill_lines_new",
        "request/response (TLS 1.3 tickets arrive)",
    };
    for (int k = 0; k <= M_TRAFFIC; k++)
        printf("  %-46s %11.0f\n", names[k], rill[k]);
    printf("  %-46s %11.0f (rill's own: layer blocks, texts, kept line)\n",
           "rill over raw with SSL_free_buffers()", rill[M_IDLE] - freed[M_IDLE]);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_tls [-s bytes] [-r reps] [-c chunk] [-n handshakes] "
                    "[-m idle-conns] [-C tls13-suite] [-T] [-H] [-M] [-P] [-R] [-O v] [-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    /* Before anything allocates through OpenSSL. */
    if (!CRYPTO_set_mem_functions(bench_ossl_malloc, bench_ossl_realloc, bench_ossl_free)) {
        fprintf(stderr, "bench: CRYPTO_set_mem_functions refused (OpenSSL already allocated)\n");
        return 1;
    }
    bench_count_per_thread_install();
    signal(SIGPIPE, SIG_IGN); /* raw SSL_shutdown writes with write(2) to a peer that may be gone */

    struct bench b = { .cfg = { 256u * 1024 * 1024, 11, 65536, 200, 200, "TLS_AES_256_GCM_SHA384",
                                false, false, false, false, -1 } };
    int opt;
    while ((opt = getopt(argc, argv, "s:r:c:n:m:C:O:THMPRv")) != -1) {
        switch (opt) {
        case 'P': bench_pinning = 0; break;
        case 'R': b.cfg.rsa = true; break;
        case 'O': b.cfg.only = (int)bench_parse_count(optarg, "variant") - 1; break;
        case 'v': bench_verbose = 1; break;
        case 's': b.cfg.bytes = bench_parse_count(optarg, "size"); break;
        case 'r': b.cfg.reps = (size_t)bench_parse_count(optarg, "reps"); break;
        case 'c': b.cfg.chunk = (size_t)bench_parse_count(optarg, "chunk"); break;
        case 'n': b.cfg.handshakes = (size_t)bench_parse_count(optarg, "handshakes"); break;
        case 'm': b.cfg.idle = (size_t)bench_parse_count(optarg, "idle connections"); break;
        case 'C': b.cfg.suite = optarg; break;
        case 'T': b.cfg.run_tput = true; break;
        case 'H': b.cfg.run_hs = true; break;
        case 'M': b.cfg.run_mem = true; break;
        default: usage();
        }
    }
    if (optind != argc || b.cfg.reps > MAX_REPS || b.cfg.chunk > (1u << 30) || b.cfg.idle > 400)
        usage();
    if (!b.cfg.run_tput && !b.cfg.run_hs && !b.cfg.run_mem)
        b.cfg.run_tput = b.cfg.run_hs = b.cfg.run_mem = true;

    bench_pin(1);
    make_certs(&b);
    setup(&b);
    if (b.cfg.run_tput)
        bench_throughput(&b);
    if (b.cfg.run_hs)
        bench_handshakes(&b);
    if (b.cfg.run_mem)
        bench_memory(&b);

    rill_ctx_free(b.ctx);
    rill_tls_config_free(b.tls);
    SSL_CTX_free(b.raw);
    SSL_CTX_free(b.raw_default);
    SSL_CTX_free(b.server);
    close(b.listen_fd);
    free(b.mine);
    free(b.theirs);
    remove_certs(&b);
    return 0;
}
