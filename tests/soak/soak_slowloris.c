/* SPDX-License-Identifier: MIT */
/*
 * soak_slowloris — slow peers (one byte per second) must not hold up the other connections of
 * a server built on rill's non-blocking API.
 *
 *     soak_slowloris [CLIENTS]          (per wave; default 40: half TLS, half plain)
 *
 * The server is one thread running one poll() loop over two rill listeners (rill_accept with
 * timeout 0): on the first, accepted streams become "lines > tls > tcp" (rill_tls_server), on
 * the second "lines > tcp", all with timeouts 0. It answers every line with "ok <line>".
 *
 * Two slow peers connect first and send one byte per second:
 *  - to the TLS listener, a real ClientHello (made by rill_tls_client over a socketpair), so the
 *    server sits in the middle of a handshake;
 *  - to the plain listener, a text line, so the server's line reader holds a partial line.
 * Then the normal clients (blocking rill streams with 10 s timeouts, several threads) each
 * exchange LINES checked lines and close, in WAVES waves: one after each of the slow peers'
 * first bytes. They must all be done before either slow peer has sent SLOW_BYTES_MAX bytes,
 * i.e. within about four seconds (completion, with a generous bound, is what is checked; not
 * speed), while the server still holds the slow streams mid-handshake and mid-line.
 * Finally the slow peers send the rest at once and must be served correctly too: the TLS one
 * completes its handshake through a relay and exchanges a line, the plain one gets its answer.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "soak.h"

#define DEFAULT_CLIENTS 40
#define CLIENT_THREADS  8
#define LINES           50
#define SLOW_BYTES_MAX  5 /* the normal clients must be done before a slow peer sent this many */
#define WAVES           3 /* waves of normal clients: after the slow peers' 1st, 2nd, 3rd byte */
#define MAX_CONNS       1024
#define IO_TIMEOUT_MS   10000
#define LINE_MAX_LEN    1024
#define SLOW_LINE       "slow loris says hello, one byte per second\n"

/* ---- the server ---- */

enum kind { KIND_TLS, KIND_PLAIN };
enum phase { HANDSHAKE, SERVING, CLOSED, FAILED };

struct sconn {
    rill_stream *s;
    enum kind kind;
    enum phase phase;
    char out[LINE_MAX_LEN + 8];
    size_t out_len, out_sent;
    int runnable;
    int fd;
    short events;
    unsigned lines;
};

static rill_tls_config *client_cfg, *server_cfg;
static rill_listener *tls_listener, *plain_listener;
static struct sconn sconns[MAX_CONNS];
static unsigned nconns;
static int server_stop;
/* Shared with main (atomics): how far the server got. */
static unsigned accepted[2];   /* by kind */
static int slow_phase[2];      /* phase of the first connection of each kind: the slow peers */
static size_t slow_plain_held; /* bytes of the slow line the server's line reader holds */
static unsigned server_lines, server_failed;
static unsigned long server_rounds;

static void sconn_end(struct sconn *c, enum phase how, const char *what, rill_status st)
{
    if (how == FAILED) {
        __atomic_add_fetch(&server_failed, 1, __ATOMIC_RELAXED);
        soak_fail("server conn %ld (%s): %s: %s (%s)", (long)(c - sconns),
                  c->kind == KIND_TLS ? "tls" : "plain", what, rill_strerror(st),
                  rill_errmsg(c->s));
    }
    (void)rill_close(c->s);
    c->s = NULL;
    c->phase = how;
}

static void sconn_wait(struct sconn *c)
{
    if (rill_poll_info(c->s, &c->fd, &c->events) != RILL_OK)
        sconn_end(c, FAILED, "rill_poll_info", RILL_E_INVALID);
}

/* One non-blocking step: handshake, then answer lines until a call would wait. */
static void sconn_step(struct sconn *c)
{
    rill_status st;
    c->runnable = 0;
    if (c->phase == HANDSHAKE) {
        st = rill_tls_handshake(c->s);
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            sconn_wait(c);
            return;
        }
        if (st != RILL_OK) {
            sconn_end(c, FAILED, "handshake", st);
            return;
        }
        c->phase = SERVING;
    }
    for (int turn = 0; turn < 16; turn++) {
        if (c->out_sent < c->out_len) {
            size_t n = 0;
            st = rill_write(c->s, c->out + c->out_sent, c->out_len - c->out_sent, &n);
            if (st == RILL_OK) {
                c->out_sent += n;
                continue;
            }
        } else if (c->out_len > 0) {
            st = rill_flush(c->s);
            if (st == RILL_OK) {
                c->out_len = c->out_sent = 0;
                continue;
            }
        } else {
            const char *line;
            size_t len;
            st = rill_read_line(c->s, &line, &len);
            if (st == RILL_OK) {
                memcpy(c->out, "ok ", 3);
                memcpy(c->out + 3, line, len);
                c->out[3 + len] = '\n';
                c->out_len = len + 4;
                c->lines++;
                __atomic_add_fetch(&server_lines, 1, __ATOMIC_RELAXED);
                continue;
            }
            if (st == RILL_EOF) {
                sconn_end(c, CLOSED, "", st);
                return;
            }
        }
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            sconn_wait(c);
            return;
        }
        sconn_end(c, FAILED, c->out_len ? "write" : "read", st);
        return;
    }
    c->runnable = 1; /* a busy stream: the others first */
}

static void accept_all(rill_listener *l, enum kind kind)
{
    rill_error err;
    for (;;) {
        rill_stream *tcp = NULL, *mid = NULL, *top = NULL;
        rill_status st = rill_accept(l, 0, &tcp, &err);
        if (st == RILL_WANT_READ || st == RILL_E_TIMEOUT)
            return;
        if (st != RILL_OK)
            soak_die("server: rill_accept: %s", err.msg);
        if (nconns == MAX_CONNS)
            soak_die("server: more than %d connections", MAX_CONNS);
        mid = tcp;
        if (kind == KIND_TLS && rill_tls_server(tcp, server_cfg, 0, &mid) != RILL_OK)
            soak_die("server: rill_tls_server: %s", rill_errmsg(tcp));
        if (rill_lines_new(mid, LINE_MAX_LEN, RILL_EOL_LF, 0, &top) != RILL_OK)
            soak_die("server: rill_lines_new: %s", rill_errmsg(mid));
        if (rill_set_timeouts(top, 0, 0) != RILL_OK)
            soak_die("server: rill_set_timeouts: %s", rill_errmsg(top));
        struct sconn *c = &sconns[nconns++];
        *c = (struct sconn){ .s = top,
                             .kind = kind,
                             .runnable = 1,
                             .fd = rill_fd(top),
                             .phase = kind == KIND_TLS ? HANDSHAKE : SERVING };
        __atomic_add_fetch(&accepted[kind], 1, __ATOMIC_RELEASE);
    }
}

/* Publish what main may look at: the state of the two slow connections. */
static void publish_slow(void)
{
    for (int kind = 0; kind < 2; kind++) {
        for (unsigned i = 0; i < nconns; i++) {
            if (sconns[i].kind != (enum kind)kind)
                continue;
            __atomic_store_n(&slow_phase[kind], (int)sconns[i].phase, __ATOMIC_RELEASE);
            if (kind == KIND_PLAIN && sconns[i].s)
                __atomic_store_n(&slow_plain_held, rill_pending(sconns[i].s), __ATOMIC_RELEASE);
            break;
        }
    }
}

static void *server_main(void *arg)
{
    (void)arg;
    static struct pollfd pfds[MAX_CONNS + 2];
    static struct sconn *owner[MAX_CONNS + 2];
    while (!__atomic_load_n(&server_stop, __ATOMIC_ACQUIRE)) {
        server_rounds++;
        int runnable = 0;
        for (unsigned i = 0; i < nconns; i++) {
            struct sconn *c = &sconns[i];
            if (c->s && c->runnable)
                sconn_step(c);
            runnable += c->s && c->runnable;
        }
        publish_slow();
        nfds_t n = 0;
        pfds[n] = (struct pollfd){ .fd = rill_listener_fd(tls_listener), .events = POLLIN };
        owner[n++] = NULL;
        pfds[n] = (struct pollfd){ .fd = rill_listener_fd(plain_listener), .events = POLLIN };
        owner[n++] = NULL;
        for (unsigned i = 0; i < nconns; i++) {
            struct sconn *c = &sconns[i];
            if (!c->s || c->runnable)
                continue;
            pfds[n] = (struct pollfd){ .fd = c->fd, .events = c->events };
            owner[n++] = c;
        }
        if (poll(pfds, n, runnable ? 0 : 100) < 0)
            soak_die("server: poll: %s", strerror(errno));
        if (pfds[0].revents)
            accept_all(tls_listener, KIND_TLS);
        if (pfds[1].revents)
            accept_all(plain_listener, KIND_PLAIN);
        for (nfds_t k = 2; k < n; k++)
            if (pfds[k].revents)
                owner[k]->runnable = 1;
    }
    for (unsigned i = 0; i < nconns; i++)
        if (sconns[i].s)
            sconn_end(&sconns[i], CLOSED, "", RILL_OK);
    return NULL;
}

/* ---- normal clients: blocking rill streams ---- */

struct client_job {
    unsigned first, count; /* client numbers */
    enum kind kind;
    unsigned done;
    int64_t slowest_ms;
};

static int64_t t_start;
static uint16_t tls_port, plain_port;

static int client_run(unsigned id, enum kind kind)
{
    rill_connect_opts co;
    rill_connect_opts_init(&co);
    co.timeout_ms = IO_TIMEOUT_MS;
    co.read_timeout_ms = IO_TIMEOUT_MS;
    co.write_timeout_ms = IO_TIMEOUT_MS;
    if (kind == KIND_TLS) {
        co.tls = client_cfg;
        co.tls_servername = SOAK_HOST;
    }
    rill_error err;
    rill_stream *s = NULL, *ln = NULL;
    const char *what = "connect";
    rill_status st =
        rill_connect(NULL, "127.0.0.1", kind == KIND_TLS ? tls_port : plain_port, &co, &s, &err);
    if (st != RILL_OK) {
        soak_fail("client %u: connect: %s", id, err.msg);
        return -1;
    }
    what = "rill_lines_new";
    st = rill_lines_new(s, LINE_MAX_LEN, RILL_EOL_LF, 0, &ln);
    if (st != RILL_OK) {
        soak_fail("client %u: %s: %s", id, what, rill_errmsg(s));
        (void)rill_close(s);
        return -1;
    }
    char req[128], want_line[160];
    for (unsigned j = 0; j < LINES && st == RILL_OK; j++) {
        unsigned char bytes[24];
        soak_pattern(bytes, sizeof bytes, id, 24ull * j);
        int len = snprintf(req, sizeof req, "client %u line %u ", id, j);
        for (size_t k = 0; k < sizeof bytes; k++)
            len += snprintf(req + len, sizeof req - (size_t)len, "%02x", bytes[k]);
        snprintf(want_line, sizeof want_line, "ok %s", req);
        req[len++] = '\n';
        what = "write";
        st = rill_write_all(ln, req, (size_t)len, NULL);
        if (st == RILL_OK) {
            what = "flush";
            st = rill_flush(ln);
        }
        const char *line;
        size_t n;
        if (st == RILL_OK) {
            what = "read";
            st = rill_read_line(ln, &line, &n);
        }
        if (st == RILL_OK && (n != strlen(want_line) || memcmp(line, want_line, n) != 0)) {
            soak_fail("client %u: line %u: answer \"%.*s\", wanted \"%s\"", id, j, (int)n, line,
                      want_line);
            (void)rill_close(ln);
            return -1;
        }
    }
    if (st == RILL_OK) {
        what = "shutdown";
        st = rill_shutdown(ln);
    }
    if (st == RILL_OK) {
        const char *line;
        size_t n;
        what = "end of stream";
        st = rill_read_line(ln, &line, &n);
        st = st == RILL_EOF ? RILL_OK : st == RILL_OK ? RILL_E_PROTOCOL : st;
    }
    if (st != RILL_OK)
        soak_fail("client %u (%s): %s: %s (%s)", id, kind == KIND_TLS ? "tls" : "plain", what,
                  rill_strerror(st), rill_errmsg(ln));
    rill_status cst = rill_close(ln);
    if (st == RILL_OK && cst != RILL_OK) {
        soak_fail("client %u: rill_close: %s", id, rill_strerror(cst));
        st = cst;
    }
    return st == RILL_OK ? 0 : -1;
}

static void *client_thread(void *arg)
{
    struct client_job *job = arg;
    for (unsigned i = 0; i < job->count; i++) {
        int64_t t = soak_now_ms();
        if (client_run(job->first + i, job->kind) == 0)
            job->done++;
        if (soak_now_ms() - t > job->slowest_ms)
            job->slowest_ms = soak_now_ms() - t;
    }
    return NULL;
}

/* ---- the slow peers ---- */

struct slow {
    const char *name;
    int sock;             /* raw TCP socket to the server */
    unsigned char *bytes; /* what it dribbles */
    size_t len;
    size_t sent; /* atomic: bytes sent so far */
};

static struct slow slow_peers[2];
static int dribble_stop;

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        soak_die("socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        soak_die("connect to 127.0.0.1:%u: %s", (unsigned)port, strerror(errno));
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_raw(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            soak_die("slow peer: send: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
}

/* One byte per second to each slow peer, the first at once. */
static void *dribble_main(void *arg)
{
    (void)arg;
    int64_t next = soak_now_ms();
    while (!__atomic_load_n(&dribble_stop, __ATOMIC_ACQUIRE)) {
        if (soak_now_ms() >= next) {
            for (int i = 0; i < 2; i++) {
                struct slow *p = &slow_peers[i];
                size_t k = __atomic_load_n(&p->sent, __ATOMIC_ACQUIRE);
                if (k + 1 < p->len) { /* the last byte is kept for the end */
                    send_raw(p->sock, p->bytes + k, 1);
                    __atomic_store_n(&p->sent, k + 1, __ATOMIC_RELEASE);
                }
            }
            /* Never catch up after a stall: at most one byte per second, even under load. */
            next = soak_now_ms() + 1000;
        }
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Wait until each slow peer has sent at least @p n bytes; 0, or -1 after 10 s. */
static int wait_dribbled(size_t n)
{
    int64_t end = soak_now_ms() + 10000;
    while (__atomic_load_n(&slow_peers[KIND_TLS].sent, __ATOMIC_ACQUIRE) < n ||
           __atomic_load_n(&slow_peers[KIND_PLAIN].sent, __ATOMIC_ACQUIRE) < n) {
        if (soak_now_ms() > end)
            return -1;
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
    }
    return 0;
}

/*
 * A real ClientHello: a rill TLS client over one end of a socketpair takes one non-blocking
 * handshake step; the bytes it wrote are read from the other end. The client stays alive in
 * *tls (over *relay_end's peer) to finish the handshake later through a relay.
 */
static void make_client_hello(struct slow *p, rill_stream **tls, int *relay_end)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
        soak_die("socketpair: %s", strerror(errno));
    rill_error err;
    rill_stream *fdst = NULL;
    if (rill_fd_new(sp[0], sp[0], RILL_FD_OWN, &fdst, &err) != RILL_OK)
        soak_die("rill_fd_new: %s", err.msg);
    if (rill_tls_client(fdst, client_cfg, SOAK_HOST, 0, tls) != RILL_OK)
        soak_die("rill_tls_client: %s", rill_errmsg(fdst));
    if (rill_set_timeouts(*tls, 0, 0) != RILL_OK)
        soak_die("rill_set_timeouts: %s", rill_errmsg(*tls));
    rill_status st = rill_tls_handshake(*tls);
    if (st != RILL_WANT_READ)
        soak_die("the ClientHello step returned %s, not RILL_WANT_READ (%s)", rill_strerror(st),
                 rill_errmsg(*tls));
    p->bytes = malloc(16384);
    if (!p->bytes)
        soak_die("out of memory");
    ssize_t r = recv(sp[1], p->bytes, 16384, MSG_DONTWAIT);
    if (r <= 5)
        soak_die("no ClientHello from the TLS client (%zd bytes: %s)", r, strerror(errno));
    p->len = (size_t)r;
    *relay_end = sp[1];
}

/* Copy bytes both ways between @p a and @p b until either ends or @p stop is set. */
struct relay {
    int a, b;
    int stop;
    unsigned long long bytes;
};

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    char buf[16384];
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p[2] = { { .fd = r->a, .events = POLLIN }, { .fd = r->b, .events = POLLIN } };
        if (poll(p, 2, 100) < 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents)
                continue;
            ssize_t n = recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0)
                return NULL; /* an end closed: the exchange is over (or failed; the TLS end says) */
            for (ssize_t off = 0; off < n;) {
                ssize_t w = send(i == 0 ? r->b : r->a, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return NULL;
                off += w;
            }
            __atomic_add_fetch(&r->bytes, (unsigned long long)n, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

/* The slow TLS peer, sped up: the rest of its ClientHello, then a handshake and a line. */
static void finish_slow_tls(rill_stream *tls, int relay_end)
{
    struct slow *p = &slow_peers[KIND_TLS];
    size_t k = __atomic_load_n(&p->sent, __ATOMIC_ACQUIRE);
    send_raw(p->sock, p->bytes + k, p->len - k);
    struct relay r = { .a = relay_end, .b = p->sock };
    pthread_t th;
    if (pthread_create(&th, NULL, relay_main, &r) != 0)
        soak_die("pthread_create failed");
    rill_stream *ln = NULL;
    const char *what = "set timeouts";
    rill_status st = rill_set_timeouts(tls, IO_TIMEOUT_MS, IO_TIMEOUT_MS);
    if (st == RILL_OK) {
        what = "handshake";
        st = rill_tls_handshake(tls);
    }
    if (st == RILL_OK) {
        what = "lines";
        st = rill_lines_new(tls, LINE_MAX_LEN, RILL_EOL_LF, 0, &ln);
    }
    if (st == RILL_OK) {
        tls = NULL; /* owned by ln now */
        what = "write";
        st = rill_write_str(ln, "slow tls peer\n", NULL);
    }
    if (st == RILL_OK) {
        what = "flush";
        st = rill_flush(ln);
    }
    if (st == RILL_OK) {
        const char *line;
        size_t n;
        what = "read";
        st = rill_read_line(ln, &line, &n);
        if (st == RILL_OK && (n != 16 || memcmp(line, "ok slow tls peer", 16) != 0)) {
            soak_fail("slow TLS peer: answer \"%.*s\"", (int)n, line);
            st = RILL_E_PROTOCOL;
        }
    }
    if (st != RILL_OK && st != RILL_E_PROTOCOL)
        soak_fail("slow TLS peer, sped up: %s: %s (%s)", what, rill_strerror(st),
                  rill_errmsg(ln ? ln : tls));
    else if (st == RILL_OK)
        printf("soak_slowloris: the slow TLS peer, sped up, completed its handshake (%zu-byte "
               "ClientHello) and got its line answered\n",
               p->len);
    (void)rill_close(ln ? ln : tls);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    close(relay_end);
}

/* The slow plain peer, sped up: the rest of its line, then the answer. */
static void finish_slow_plain(void)
{
    struct slow *p = &slow_peers[KIND_PLAIN];
    size_t k = __atomic_load_n(&p->sent, __ATOMIC_ACQUIRE);
    send_raw(p->sock, p->bytes + k, p->len - k);
    char want[128], got[128];
    int wlen = snprintf(want, sizeof want, "ok %s", SLOW_LINE);
    size_t have = 0;
    struct pollfd pf = { .fd = p->sock, .events = POLLIN };
    while (have < (size_t)wlen && poll(&pf, 1, IO_TIMEOUT_MS) == 1) {
        ssize_t n = recv(p->sock, got + have, sizeof got - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    if (have != (size_t)wlen || memcmp(got, want, have) != 0)
        soak_fail("slow plain peer, sped up: answer \"%.*s\", wanted \"%.*s\"", (int)have, got,
                  wlen - 1, want);
    else
        printf("soak_slowloris: the slow plain peer, sped up, got its line answered\n");
}

int main(int argc, char **argv)
{
    soak_prog = "soak_slowloris";
    soak_count_rill_heap();
    unsigned clients =
        argc > 1 ? (unsigned)soak_parse_count(argv[1], "client count") : DEFAULT_CLIENTS;
    if (argc > 2 || clients < 2 || clients > MAX_CONNS - 8)
        soak_die("usage: soak_slowloris [CLIENTS (2 .. %d)]", MAX_CONNS - 8);
    soak_tls_configs(&client_cfg, &server_cfg);
    int fds_before = soak_fd_count();

    rill_error err;
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.read_timeout_ms = 0;
    lo.stream.write_timeout_ms = 0;
    if (rill_listen("127.0.0.1", 0, &lo, &tls_listener, &err) != RILL_OK ||
        rill_listen("127.0.0.1", 0, &lo, &plain_listener, &err) != RILL_OK)
        soak_die("rill_listen: %s", err.msg);
    tls_port = rill_listener_port(tls_listener);
    plain_port = rill_listener_port(plain_listener);
    printf("soak_slowloris: one server thread, poll() over two rill listeners (TLS on %u, plain "
           "on %u) and their streams, timeouts 0; slow peers send one byte per second\n",
           (unsigned)tls_port, (unsigned)plain_port);

    pthread_t server, dribbler;
    if (pthread_create(&server, NULL, server_main, NULL) != 0)
        soak_die("pthread_create failed");

    /* The slow peers connect first, so they are the first stream of each listener. */
    rill_stream *slow_tls = NULL;
    int relay_end = -1;
    slow_peers[KIND_TLS].name = "tls";
    make_client_hello(&slow_peers[KIND_TLS], &slow_tls, &relay_end);
    slow_peers[KIND_TLS].sock = raw_connect(tls_port);
    slow_peers[KIND_PLAIN].name = "plain";
    slow_peers[KIND_PLAIN].bytes = (unsigned char *)strdup(SLOW_LINE);
    slow_peers[KIND_PLAIN].len = strlen(SLOW_LINE);
    slow_peers[KIND_PLAIN].sock = raw_connect(plain_port);
    int64_t wait_end = soak_now_ms() + 10000;
    while ((__atomic_load_n(&accepted[KIND_TLS], __ATOMIC_ACQUIRE) < 1 ||
            __atomic_load_n(&accepted[KIND_PLAIN], __ATOMIC_ACQUIRE) < 1) &&
           soak_now_ms() < wait_end) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    t_start = soak_now_ms();
    if (pthread_create(&dribbler, NULL, dribble_main, NULL) != 0)
        soak_die("pthread_create failed");
    printf("soak_slowloris: slow peers connected: a %zu-byte TLS ClientHello and a %zu-byte line, "
           "dribbled one byte per second\n",
           slow_peers[KIND_TLS].len, slow_peers[KIND_PLAIN].len);

    /*
     * The normal clients, in WAVES waves: wave w starts once each slow peer has sent w + 1
     * bytes, so the server serves them at several stages of the slow streams. Each wave: half
     * TLS, half plain, CLIENT_THREADS threads at once.
     */
    unsigned done = 0;
    int64_t slowest = 0, t_clients = 0;
    for (unsigned w = 0; w < WAVES; w++) {
        if (wait_dribbled(w + 1) != 0)
            soak_die("the slow peers did not send byte %u within 10 s", w + 1);
        int64_t t_wave = soak_now_ms();
        struct client_job jobs[CLIENT_THREADS];
        pthread_t threads[CLIENT_THREADS];
        unsigned next = w * clients;
        for (int t = 0; t < CLIENT_THREADS; t++) {
            unsigned share = clients / CLIENT_THREADS + ((unsigned)t < clients % CLIENT_THREADS);
            jobs[t] = (struct client_job){ .first = next,
                                           .count = share,
                                           .kind = t % 2 ? KIND_PLAIN : KIND_TLS };
            next += share;
            if (pthread_create(&threads[t], NULL, client_thread, &jobs[t]) != 0)
                soak_die("pthread_create failed");
        }
        unsigned wave_done = 0;
        for (int t = 0; t < CLIENT_THREADS; t++) {
            pthread_join(threads[t], NULL);
            wave_done += jobs[t].done;
            if (jobs[t].slowest_ms > slowest)
                slowest = jobs[t].slowest_ms;
        }
        done += wave_done;
        t_clients = soak_now_ms() - t_start;
        size_t sent_tls = __atomic_load_n(&slow_peers[KIND_TLS].sent, __ATOMIC_ACQUIRE);
        size_t sent_plain = __atomic_load_n(&slow_peers[KIND_PLAIN].sent, __ATOMIC_ACQUIRE);
        int phase_tls = __atomic_load_n(&slow_phase[KIND_TLS], __ATOMIC_ACQUIRE);
        int phase_plain = __atomic_load_n(&slow_phase[KIND_PLAIN], __ATOMIC_ACQUIRE);
        size_t held = __atomic_load_n(&slow_plain_held, __ATOMIC_ACQUIRE);
        printf("soak_slowloris: wave %u: %u of %u normal clients (%u lines each) done in %lld ms, "
               "at %lld ms; the slow peers had sent %zu (TLS) and %zu (plain) bytes; the "
               "server's slow TLS stream %s, its slow plain stream %s %zu bytes of a partial "
               "line\n",
               w + 1, wave_done, clients, LINES, (long long)(soak_now_ms() - t_wave),
               (long long)t_clients, sent_tls, sent_plain,
               phase_tls == HANDSHAKE ? "still in its handshake" : "NOT in its handshake",
               phase_plain == SERVING ? "holding" : "NOT SERVING,", held);
        if (wave_done != clients)
            soak_fail("wave %u: %u of %u normal clients failed", w + 1, clients - wave_done,
                      clients);
        if (sent_tls >= SLOW_BYTES_MAX || sent_plain >= SLOW_BYTES_MAX)
            soak_fail("wave %u finished only after a slow peer had sent %d bytes", w + 1,
                      SLOW_BYTES_MAX);
        if (phase_tls != HANDSHAKE)
            soak_fail("the server's slow TLS stream is no longer in its handshake (phase %d)",
                      phase_tls);
        if (phase_plain != SERVING || held == 0 || held > sent_plain)
            soak_fail("the server's slow plain stream: phase %d, holding %zu bytes of the %zu "
                      "sent",
                      phase_plain, held, sent_plain);
    }
    printf("soak_slowloris: %u of %u normal clients done within %lld ms of the slow peers' "
           "first byte; slowest client %lld ms; server answered %u lines\n",
           done, WAVES * clients, (long long)t_clients, (long long)slowest,
           __atomic_load_n(&server_lines, __ATOMIC_RELAXED));

    /* Then the slow peers, sped up, must be served too. */
    __atomic_store_n(&dribble_stop, 1, __ATOMIC_RELEASE);
    pthread_join(dribbler, NULL);
    finish_slow_plain();
    finish_slow_tls(slow_tls, relay_end);

    __atomic_store_n(&server_stop, 1, __ATOMIC_RELEASE);
    pthread_join(server, NULL);
    for (int i = 0; i < 2; i++) {
        close(slow_peers[i].sock);
        free(slow_peers[i].bytes);
    }
    printf("soak_slowloris: server: %u connections, %lu rounds, %u failures\n", nconns,
           server_rounds, __atomic_load_n(&server_failed, __ATOMIC_RELAXED));
    rill_listener_free(tls_listener);
    rill_listener_free(plain_listener);
    rill_tls_config_free(client_cfg);
    rill_tls_config_free(server_cfg);
    int fds_after = soak_fd_count();
    if (fds_after != fds_before)
        soak_fail("%d descriptors open after the run, %d before", fds_after, fds_before);
    uint64_t heap_bytes, heap_blocks;
    soak_rill_heap(&heap_bytes, &heap_blocks);
    printf("soak_slowloris: rill's own heap after freeing everything: %llu bytes in %llu blocks\n",
           (unsigned long long)heap_bytes, (unsigned long long)heap_blocks);
    if (heap_blocks != 0)
        soak_fail("rill still holds %llu blocks after everything was freed",
                  (unsigned long long)heap_blocks);
    unsigned failures = soak_failures();
    printf("soak_slowloris: %s\n", failures == 0 ? "PASS" : "FAILED");
    return failures == 0 ? 0 : 1;
}
