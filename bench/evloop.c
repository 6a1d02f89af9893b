/* SPDX-License-Identifier: MIT */
/*
 * bench_evloop: an event-loop TLS server built on rill against the same server built on raw
 * OpenSSL, in the same run, over loopback TCP.
 *
 * Both servers are one loop, on one thread pinned to a CPU of its own: epoll, a non-blocking
 * listening socket, accept until EAGAIN, a non-blocking TLS 1.3 handshake per connection, a
 * handshake deadline and then an idle deadline per connection in a rill_timers set (the same
 * calls for both), and a line protocol: each line is answered with "SEQ FNV-1a-64" and a
 * close_notify is answered with one. They differ only in the TLS and stream code:
 *   rill  rill_listen (stream options: the TLS config, timeouts 0), rill_accept(l, 0),
 *         lines > tls > tcp, rill_tls_handshake, rill_read_line, rill_write, rill_shutdown,
 *         rill_shrink when idle, rill_close
 *   raw   accept4, SSL_new on one SSL_CTX set up as rill sets its own (the same modes,
 *         SSL_MODE_RELEASE_BUFFERS among them, options and versions), SSL_set_fd,
 *         SSL_do_handshake, SSL_read_ex into a line buffer of the connection, SSL_write_ex,
 *         SSL_shutdown, SSL_free
 * Certificate: EC P-256 leaf and CA made with the openssl command; TLS_AES_256_GCM_SHA384.
 *
 * The clients are raw OpenSSL in two blocking threads pinned to another CPU, the same for both
 * servers: connect, handshake (chain and name verified), one line and its answer, close_notify
 * both ways. Resumed: each client thread offers the session of its previous connection
 * (TLS 1.3 tickets, on by default in both servers).
 *
 *  handshakes  connections per second served, full and resumed, and the server thread's CPU
 *              time per connection (CLOCK_THREAD_CPUTIME_ID), in rounds that alternate the two
 *              servers (order reversed every other round); the ratio is the median of the
 *              per-round ratios rill/raw, with their range.
 *  memory      heap bytes per idle server connection: OpenSSL's allocations
 *              (CRYPTO_set_mem_functions) and rill's (rill_set_allocator) made on the server
 *              thread, with N connections open after their line, divided by N; the loop's own
 *              per-connection struct is the same for both and counted for neither.
 *
 * usage: bench_evloop [-r rounds] [-n connections] [-m idle] [-P] [-v]
 *   defaults: 11 rounds, 400 connections per run, 400 idle connections
 */
#include "common.h"
#include "tls_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define SERVER_NAME "bench.rill.test"
#define MAX_REPS    99
#define CLIENTS     2

/* ---- setup ---- */

struct bench {
    size_t reps, conns, idle;
    char dir[64];
    char ca[96], cert[96], key[96];
    SSL_CTX *raw_server;
    rill_tls_config *rill_server;
    SSL_CTX *client;
};

static void make_certs(struct bench *b)
{
    snprintf(b->dir, sizeof b->dir, "/tmp/bench_evloop.XXXXXX");
    if (!mkdtemp(b->dir))
        bench_die("mkdtemp: %s", strerror(errno));
    snprintf(b->ca, sizeof b->ca, "%s/ca.pem", b->dir);
    snprintf(b->cert, sizeof b->cert, "%s/leaf.pem", b->dir);
    snprintf(b->key, sizeof b->key, "%s/leaf.key", b->dir);
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && exec >/dev/null 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj '/CN=rill bench CA' "
             "-addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign && "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout leaf.key -out leaf.csr -subj '/CN=" SERVER_NAME "' && "
             "printf 'subjectAltName=DNS:" SERVER_NAME ",IP:127.0.0.1\\n"
             "basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
             "extendedKeyUsage=serverAuth\\n' > leaf.ext && "
             "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 "
             "-extfile leaf.ext -out leaf.pem",
             b->dir);
    if (system(cmd) != 0)
        bench_die("making certificates with the openssl command failed (in %s)", b->dir);
}

static void remove_certs(const struct bench *b)
{
    static const char *const files[] = { "ca.pem",   "ca.key",   "leaf.pem",
                                         "leaf.key", "leaf.csr", "leaf.ext" };
    char path[128];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", b->dir, files[i]);
        unlink(path);
    }
    rmdir(b->dir);
}

static void setup(struct bench *b)
{
    /* The raw server's SSL_CTX as rill_tls_config_new() + a certificate set up rill's. */
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    if (!s || SSL_CTX_use_certificate_chain_file(s, b->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(s, b->key, SSL_FILETYPE_PEM) != 1)
        bench_ssl_die("raw server SSL_CTX");
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION);
    SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char sid[] = "bench_evloop";
    SSL_CTX_set_session_id_context(s, sid, sizeof sid - 1);
    b->raw_server = s;

    rill_error err;
    if (rill_tls_config_new(&b->rill_server, &err) != RILL_OK ||
        rill_tls_config_set_cert_file(b->rill_server, b->cert, b->key, &err) != RILL_OK)
        bench_die("rill server config: %s", err.msg);

    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c)
        bench_ssl_die("client SSL_CTX_new");
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    if (SSL_CTX_set_ciphersuites(c, "TLS_AES_256_GCM_SHA384") != 1)
        bench_ssl_die("client ciphersuites");
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_file(c, b->ca) != 1)
        bench_ssl_die("SSL_CTX_load_verify_file");
    b->client = c;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the servers: one loop, two TLS back ends ---- */

enum backend { RAW = 0, RILL = 1 };
enum sstate { S_HANDSHAKE, S_OPEN, S_DONE };

struct sconn {
    int fd;
    uint32_t events;
    enum sstate state;
    bool was_idle;
    SSL *ssl;       /* raw */
    rill_stream *s; /* rill: lines > tls > tcp */
    uint64_t seq;
    size_t in_len; /* raw: bytes of a line so far */
    char in[256];
    size_t out_len, out_off;
    char out[64];
};

struct server {
    const struct bench *b;
    enum backend be;
    int ep;
    int stop_fd; /* eventfd: the clients are done */
    int listen_fd;
    rill_listener *listener;
    uint16_t port;
    rill_timers *timers;
    size_t open, served;
    size_t idle_target; /* memory run: measure when this many connections are idle */
    size_t idle_now;
    size_t live_before, live_idle;
    double cpu;
    bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool measured;
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static void sv_watch(struct server *sv, struct sconn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(sv->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0)
        bench_die("epoll_ctl: %s", strerror(errno));
    c->events = events;
}

static void sv_close(struct server *sv, struct sconn *c)
{
    rill_timers_remove(sv->timers, c);
    epoll_ctl(sv->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (sv->be == RILL) {
        (void)rill_close(c->s);
    } else {
        SSL_free(c->ssl);
        close(c->fd);
    }
    if (c->was_idle)
        sv->idle_now--;
    sv->open--;
    sv->served++;
    free(c);
}

static void sv_deadline(struct server *sv, struct sconn *c, int ms)
{
    if (rill_timers_set(sv->timers, c, rill_now_ms() + ms) != RILL_OK)
        bench_die("rill_timers_set: out of memory");
}

/* What a raw SSL call's failure asks for: EPOLLIN/EPOLLOUT, 0 for the end, or die. */
static uint32_t raw_want(SSL *ssl, int r, const char *what)
{
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ: return EPOLLIN;
    case SSL_ERROR_WANT_WRITE: return EPOLLOUT;
    case SSL_ERROR_ZERO_RETURN: return 0;
    default: bench_ssl_die(what);
    }
}

static void rill_wait(struct server *sv, struct sconn *c)
{
    int fd;
    short ev = POLLIN;
    if (rill_poll_info(c->s, &fd, &ev) != RILL_OK)
        bench_die("rill_poll_info: %s", rill_errmsg(c->s));
    sv_watch(sv, c, ev & POLLOUT ? EPOLLOUT : EPOLLIN);
}

static void note_idle(struct server *sv, struct sconn *c)
{
    if (c->was_idle || c->out_len)
        return;
    if (sv->be == RILL)
        (void)rill_shrink(c->s);
    c->was_idle = true;
    if (++sv->idle_now == sv->idle_target && !sv->measured) {
        pthread_mutex_lock(&sv->lock);
        sv->live_idle = bench_live_bytes();
        sv->measured = true;
        pthread_cond_broadcast(&sv->changed);
        pthread_mutex_unlock(&sv->lock);
    }
}

static void queue_answer(struct sconn *c, const char *line, size_t len)
{
    c->seq++;
    c->out_len = (size_t)snprintf(c->out, sizeof c->out, "%" PRIu64 " %016" PRIx64 "\n", c->seq,
                                  fnv1a(line, len));
    c->out_off = 0;
}

static void step_rill(struct server *sv, struct sconn *c)
{
    rill_status st;
    if (c->state == S_HANDSHAKE) {
        st = rill_tls_handshake(c->s);
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            rill_wait(sv, c);
            return;
        }
        if (st != RILL_OK)
            bench_die("rill server handshake: %s", rill_errmsg(c->s));
        c->state = S_OPEN;
        sv_deadline(sv, c, 60000);
    }
    for (;;) {
        while (c->out_off < c->out_len) {
            size_t n = 0;
            st = rill_write(c->s, c->out + c->out_off, c->out_len - c->out_off, &n);
            if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
                rill_wait(sv, c);
                return;
            }
            if (st != RILL_OK)
                bench_die("rill server write: %s", rill_errmsg(c->s));
            c->out_off += n;
        }
        c->out_len = c->out_off = 0;
        const char *line;
        size_t len;
        st = rill_read_line(c->s, &line, &len);
        if (st == RILL_OK) {
            queue_answer(c, line, len);
            continue;
        }
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            note_idle(sv, c);
            {
                rill_wait(sv, c);
                return;
            }
        }
        if (st != RILL_EOF)
            bench_die("rill server read: %s", rill_errmsg(c->s));
        st = rill_shutdown(c->s);
        if (st != RILL_OK && st != RILL_E_CLOSED && st != RILL_E_RESET)
            bench_die("rill server shutdown: %s", rill_errmsg(c->s));
        {
            sv_close(sv, c);
            return;
        }
    }
}

static void step_raw(struct server *sv, struct sconn *c)
{
    if (c->state == S_HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            uint32_t w = raw_want(c->ssl, r, "raw server handshake");
            if (!w)
                bench_die("raw server handshake: closed");
            {
                sv_watch(sv, c, w);
                return;
            }
        }
        c->state = S_OPEN;
        sv_deadline(sv, c, 60000);
    }
    for (;;) {
        while (c->out_off < c->out_len) {
            size_t n = 0;
            int r = SSL_write_ex(c->ssl, c->out + c->out_off, c->out_len - c->out_off, &n);
            if (r != 1) {
                sv_watch(sv, c, raw_want(c->ssl, r, "raw server write"));
                return;
            }
            c->out_off += n;
        }
        c->out_len = c->out_off = 0;
        char *nl = memchr(c->in, '\n', c->in_len);
        if (nl) {
            size_t len = (size_t)(nl - c->in);
            queue_answer(c, c->in, len);
            c->in_len -= len + 1;
            memmove(c->in, nl + 1, c->in_len);
            continue;
        }
        if (c->in_len == sizeof c->in)
            bench_die("raw server: line too long");
        size_t n = 0;
        int r = SSL_read_ex(c->ssl, c->in + c->in_len, sizeof c->in - c->in_len, &n);
        if (r == 1) {
            c->in_len += n;
            continue;
        }
        uint32_t w = raw_want(c->ssl, r, "raw server read");
        if (w) {
            note_idle(sv, c);
            {
                sv_watch(sv, c, w);
                return;
            }
        }
        /* close_notify: answer with ours (a reset from a client already gone is fine) */
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        {
            sv_close(sv, c);
            return;
        }
    }
}

static void sv_accept(struct server *sv)
{
    for (;;) {
        struct sconn *c = calloc(1, sizeof *c);
        if (!c)
            bench_die("out of memory");
        if (sv->be == RILL) {
            rill_stream *tls = NULL;
            rill_error err;
            rill_status st = rill_accept(sv->listener, 0, &tls, &err);
            if (st == RILL_WANT_READ) {
                free(c);
                return;
            }
            if (st != RILL_OK)
                bench_die("rill_accept: %s", err.msg);
            if (rill_lines_new(tls, 1024, RILL_EOL_LF, 0, &c->s) != RILL_OK)
                bench_die("rill_lines_new: %s", rill_errmsg(tls));
            c->fd = rill_fd(c->s);
        } else {
            c->fd = accept4(sv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c->fd < 0) {
                free(c);
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                bench_die("accept4: %s", strerror(errno));
            }
            int on = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
            c->ssl = SSL_new(sv->b->raw_server);
            if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
                bench_ssl_die("raw server SSL_new");
            SSL_set_accept_state(c->ssl);
        }
        sv->open++;
        sv_deadline(sv, c, 10000);
        if (sv->be == RILL)
            step_rill(sv, c);
        else
            step_raw(sv, c);
    }
}

static void *server_main(void *arg)
{
    struct server *sv = arg;
    bench_pin(0);
    bench_count_this_thread(true);
    double c0 = thread_cpu();
    struct epoll_event evs[64];
    int listen_fd = sv->be == RILL ? rill_listener_fd(sv->listener) : sv->listen_fd;
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = sv };
    struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &sv->stop_fd };
    if (epoll_ctl(sv->ep, EPOLL_CTL_ADD, listen_fd, &lev) != 0 ||
        epoll_ctl(sv->ep, EPOLL_CTL_ADD, sv->stop_fd, &sev) != 0)
        bench_die("epoll_ctl: %s", strerror(errno));
    while (!sv->stopping || sv->open > 0) {
        int n = epoll_wait(sv->ep, evs, 64, rill_timers_timeout(sv->timers, rill_now_ms()));
        if (n < 0 && errno != EINTR)
            bench_die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == sv) {
                sv_accept(sv);
            } else if (p == &sv->stop_fd) {
                sv->stopping = true;
                epoll_ctl(sv->ep, EPOLL_CTL_DEL, sv->stop_fd, NULL);
            } else if (sv->be == RILL) {
                step_rill(sv, p);
            } else {
                step_raw(sv, p);
            }
        }
        if (rill_timers_expire(sv->timers, rill_now_ms()) != NULL)
            bench_die("a connection's deadline passed: the benchmark is stuck");
    }
    sv->cpu = thread_cpu() - c0;
    bench_count_this_thread(false);
    return NULL;
}

static void server_start(struct server *sv, const struct bench *b, enum backend be,
                         size_t idle_target)
{
    memset(sv, 0, sizeof *sv);
    sv->b = b;
    sv->be = be;
    sv->idle_target = idle_target;
    sv->ep = epoll_create1(EPOLL_CLOEXEC);
    sv->stop_fd = eventfd(0, EFD_CLOEXEC);
    pthread_mutex_init(&sv->lock, NULL);
    pthread_cond_init(&sv->changed, NULL);
    if (sv->ep < 0 || sv->stop_fd < 0 || rill_timers_new(&sv->timers) != RILL_OK)
        bench_die("server setup: %s", strerror(errno));
    if (be == RILL) {
        rill_listen_opts lo;
        rill_listen_opts_init(&lo);
        lo.backlog = 1024;
        lo.stream.tls = b->rill_server;
        lo.stream.read_timeout_ms = 0;
        lo.stream.write_timeout_ms = 0;
        rill_error err;
        if (rill_listen("127.0.0.1", 0, &lo, &sv->listener, &err) != RILL_OK)
            bench_die("rill_listen: %s", err.msg);
        sv->port = rill_listener_port(sv->listener);
    } else {
        sv->listen_fd = bench_listen(&sv->port);
        int fl = fcntl(sv->listen_fd, F_GETFL);
        fcntl(sv->listen_fd, F_SETFL, fl | O_NONBLOCK);
    }
    sv->live_before = bench_live_bytes();
}

static void server_stop(struct server *sv, pthread_t t)
{
    uint64_t one = 1;
    if (write(sv->stop_fd, &one, sizeof one) != (ssize_t)sizeof one)
        bench_die("eventfd write: %s", strerror(errno));
    pthread_join(t, NULL);
    rill_listener_free(sv->listener);
    if (sv->be == RAW)
        close(sv->listen_fd);
    rill_timers_free(sv->timers);
    close(sv->ep);
    close(sv->stop_fd);
    pthread_mutex_destroy(&sv->lock);
    pthread_cond_destroy(&sv->changed);
}

/* ---- the clients: raw OpenSSL, blocking ---- */

struct cconn {
    int fd;
    SSL *ssl;
};

static void client_open(const struct bench *b, uint16_t port, SSL_SESSION *sess, struct cconn *c,
                        uint64_t n)
{
    c->fd = bench_connect(port);
    c->ssl = SSL_new(b->client);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 ||
        SSL_set_tlsext_host_name(c->ssl, SERVER_NAME) != 1 ||
        SSL_set1_host(c->ssl, SERVER_NAME) != 1)
        bench_ssl_die("client SSL_new");
    if (sess && SSL_set_session(c->ssl, sess) != 1)
        bench_ssl_die("SSL_set_session");
    if (SSL_connect(c->ssl) != 1)
        bench_ssl_die("client SSL_connect");
    char line[64], want[64], got[64] = "";
    int len = snprintf(line, sizeof line, "hello %" PRIu64 "\n", n);
    size_t w = 0;
    if (SSL_write_ex(c->ssl, line, (size_t)len, &w) != 1 || w != (size_t)len)
        bench_ssl_die("client write");
    snprintf(want, sizeof want, "1 %016" PRIx64 "\n", fnv1a(line, (size_t)len - 1));
    size_t have = 0;
    while (have == 0 || got[have - 1] != '\n') {
        size_t r = 0;
        if (have == sizeof got - 1 ||
            SSL_read_ex(c->ssl, got + have, sizeof got - 1 - have, &r) != 1)
            bench_ssl_die("client read");
        have += r;
    }
    got[have] = '\0';
    if (strcmp(got, want) != 0)
        bench_die("client: answer \"%s\", expected \"%s\"", got, want);
}

static void client_close(struct cconn *c)
{
    (void)SSL_shutdown(c->ssl); /* close_notify */
    char b[16];
    size_t r;
    while (SSL_read_ex(c->ssl, b, sizeof b, &r) == 1) /* until the server's close_notify */
        ;
    ERR_clear_error();
    SSL_free(c->ssl);
    close(c->fd);
}

struct client_job {
    const struct bench *b;
    size_t count;
    size_t resumed;
    struct server *wait_idle; /* memory run: keep the connections open until measured */
    int cpu;
    uint16_t port;
    bool resume;
};

static void *client_main(void *arg)
{
    struct client_job *j = arg;
    bench_pin(j->cpu);
    SSL_SESSION *sess = NULL;
    struct cconn *keep = j->wait_idle ? calloc(j->count, sizeof *keep) : NULL;
    for (size_t i = 0; i < j->count; i++) {
        struct cconn c;
        client_open(j->b, j->port, j->resume ? sess : NULL, &c, i);
        if (SSL_session_reused(c.ssl))
            j->resumed++;
        if (j->resume) {
            SSL_SESSION_free(sess);
            sess = SSL_get1_session(c.ssl);
        }
        if (keep)
            keep[i] = c;
        else
            client_close(&c);
    }
    if (keep) {
        pthread_mutex_lock(&j->wait_idle->lock);
        while (!j->wait_idle->measured)
            pthread_cond_wait(&j->wait_idle->changed, &j->wait_idle->lock);
        pthread_mutex_unlock(&j->wait_idle->lock);
        for (size_t i = 0; i < j->count; i++)
            client_close(&keep[i]);
        free(keep);
    }
    SSL_SESSION_free(sess);
    return NULL;
}

/* One run: @p n connections from CLIENTS threads. Returns connections per second. */
static double run(const struct bench *b, enum backend be, bool resume, size_t n, size_t idle_target,
                  double *cpu_us, double *idle_bytes)
{
    struct server sv;
    server_start(&sv, b, be, idle_target);
    pthread_t st, ct[CLIENTS];
    if (pthread_create(&st, NULL, server_main, &sv) != 0)
        bench_die("pthread_create failed");
    struct client_job jobs[CLIENTS];
    double t0 = bench_now();
    for (int i = 0; i < CLIENTS; i++) {
        jobs[i] = (struct client_job){ .b = b,
                                       .count = n / CLIENTS,
                                       .wait_idle = idle_target ? &sv : NULL,
                                       .cpu = 1,
                                       .port = sv.port,
                                       .resume = resume };
        if (pthread_create(&ct[i], NULL, client_main, &jobs[i]) != 0)
            bench_die("pthread_create failed");
    }
    size_t resumed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(ct[i], NULL);
        resumed += jobs[i].resumed;
    }
    double t1 = bench_now();
    server_stop(&sv, st);
    size_t done = (n / CLIENTS) * CLIENTS;
    if (sv.served != done)
        bench_die("the server saw %zu of %zu connections", sv.served, done);
    /* Each client thread's first connection is a full handshake. */
    if (resume && resumed != done - CLIENTS)
        bench_die("%zu of %zu connections resumed", resumed, done - CLIENTS);
    if (cpu_us)
        *cpu_us = sv.cpu / (double)done * 1e6;
    if (idle_bytes)
        *idle_bytes = (double)(sv.live_idle - sv.live_before) / (double)idle_target;
    return (double)done / (t1 - t0);
}

static double vmin(const double *v, size_t n)
{
    double m = v[0];
    for (size_t i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static void ratio_range(const double *a, const double *b, size_t n, double *lo, double *hi)
{
    *lo = 1e300;
    *hi = 0;
    for (size_t i = 0; i < n; i++) {
        double r = a[i] / b[i];
        *lo = r < *lo ? r : *lo;
        *hi = r > *hi ? r : *hi;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_evloop [-r rounds] [-n connections] [-m idle] [-P] [-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (!CRYPTO_set_mem_functions(bench_ossl_malloc, bench_ossl_realloc, bench_ossl_free)) {
        fprintf(stderr, "bench: CRYPTO_set_mem_functions refused (OpenSSL already allocated)\n");
        return 1;
    }
    bench_count_per_thread_install();
    signal(SIGPIPE, SIG_IGN); /* raw SSL_shutdown writes with write(2) to a peer that may be gone */
    struct bench b = { .reps = 11, .conns = 400, .idle = 400 };
    int opt;
    while ((opt = getopt(argc, argv, "r:n:m:Pv")) != -1) {
        switch (opt) {
        case 'r': b.reps = (size_t)bench_parse_count(optarg, "rounds"); break;
        case 'n': b.conns = (size_t)bench_parse_count(optarg, "connections"); break;
        case 'm': b.idle = (size_t)bench_parse_count(optarg, "idle connections"); break;
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || b.reps > MAX_REPS || b.reps < 1 || b.conns < (size_t)CLIENTS * 2 ||
        b.idle < CLIENTS)
        usage();
    bench_pin(1);
    make_certs(&b);
    setup(&b);

    /* Warm-up, untimed: the first use of each config loads and caches what stays. */
    for (int be = 0; be < 2; be++)
        (void)run(&b, (enum backend)be, true, (size_t)2 * CLIENTS, 0, NULL, NULL);

    enum { V_RAW_FULL, V_RILL_FULL, V_RAW_RES, V_RILL_RES, NV };
    static double rate[NV][MAX_REPS], cpu[NV][MAX_REPS];
    for (size_t r = 0; r < b.reps; r++) {
        for (int k = 0; k < NV; k++) {
            int v = r % 2 ? NV - 1 - k : k;
            rate[v][r] = run(&b, v % 2 ? RILL : RAW, v >= V_RAW_RES, b.conns, 0, &cpu[v][r], NULL);
            if (bench_verbose)
                fprintf(stderr, "round %zu variant %d: %.0f conn/s, %.1f us server CPU\n", r, v,
                        rate[v][r], cpu[v][r]);
        }
    }
    static const char *const names[NV] = { "full: raw OpenSSL loop", "full: rill loop",
                                           "resumed: raw OpenSSL loop", "resumed: rill loop" };
    printf("\nbench_evloop handshakes: one-thread epoll TLS server (TLSv1.3 "
           "TLS_AES_256_GCM_SHA384, EC P-256), %d blocking raw OpenSSL client threads; per "
           "connection: connect, handshake, one line and its answer, close_notify both ways; "
           "%zu connections per run, %zu interleaved rounds\n",
           CLIENTS, b.conns, b.reps);
    printf("%-28s %10s %17s %16s %17s %12s\n", "server", "conn/s med", "min..max", "rill/raw med",
           "rill/raw min..max", "CPU us/conn");
    for (int v = 0; v < NV; v++) {
        double lo = 0, hi = 0, ratio = -1;
        int base = v >= V_RAW_RES ? V_RAW_RES : V_RAW_FULL;
        if (v != base) {
            ratio = bench_paired_ratio(rate[v], rate[base], b.reps);
            ratio_range(rate[v], rate[base], b.reps, &lo, &hi);
        }
        double cpu_ratio = v != base ? bench_paired_ratio(cpu[v], cpu[base], b.reps) : -1;
        double mn = vmin(rate[v], b.reps), mx = bench_max(rate[v], b.reps);
        double cmed = bench_median(cpu[v], b.reps);
        char range[32] = "-", rr[32] = "-", rmed[32] = "-", cpu_s[32];
        snprintf(range, sizeof range, "%.0f..%.0f", mn, mx);
        if (v != base) {
            snprintf(rmed, sizeof rmed, "%.3f", ratio);
            snprintf(rr, sizeof rr, "%.3f..%.3f", lo, hi);
        }
        if (cpu_ratio > 0)
            snprintf(cpu_s, sizeof cpu_s, "%.0f (x%.3f)", cmed, cpu_ratio);
        else
            snprintf(cpu_s, sizeof cpu_s, "%.0f", cmed);
        /* the median of the rates last: bench_median sorts in place */
        double med = bench_median(rate[v], b.reps);
        printf("%-28s %10.0f %17s %16s %17s %12s\n", names[v], med, range, rmed, rr, cpu_s);
    }
    printf("goal: rill/raw >= 0.95 (conn/s); CPU us/conn: the server thread's CPU time per "
           "connection, median (rill/raw median of per-round ratios)\n");

    static double mem[2][MAX_REPS];
    size_t mreps = b.reps < 5 ? b.reps : 5;
    for (size_t r = 0; r < mreps; r++)
        for (int k = 0; k < 2; k++) {
            int be = r % 2 ? 1 - k : k;
            (void)run(&b, (enum backend)be, false, b.idle, b.idle / CLIENTS * CLIENTS, NULL,
                      &mem[be][r]);
        }
    double mraw = bench_median(mem[RAW], mreps), mrill = bench_median(mem[RILL], mreps);
    printf("\nbench_evloop memory: heap bytes per idle server connection (OpenSSL's and rill's "
           "allocations on the server thread, requested sizes), %zu connections open after "
           "their line, median of %zu runs\n",
           b.idle, mreps);
    printf("%-28s %12.0f\n", "raw OpenSSL (RELEASE_BUFFERS)", mraw);
    printf("%-28s %12.0f   rill/raw %.3f (goal <= 1.10)\n", "rill lines > tls > tcp", mrill,
           mrill / mraw);
    fflush(stdout);

    rill_tls_config_free(b.rill_server);
    SSL_CTX_free(b.raw_server);
    SSL_CTX_free(b.client);
    remove_certs(&b);
    return 0;
}
