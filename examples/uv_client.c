/* SPDX-License-Identifier: MIT */
/*
 * uv_client — TLS connections by name from a libuv loop: rill_connect_start() and its steps on
 * a uv_poll_t and a uv_timer_t, then a request and its reply on the same handles.
 *
 *     uv_client [--dns SERVERS] HOST PORT [COUNT [CAFILE]]
 *
 * COUNT connections (default 10, at most 100) run at once, each the exchange epoll_clients.c
 * makes: resolve HOST and connect with TLS (verifying the server as HOST, against CAFILE instead
 * of the system store when given), send eight lines of its own, read them back reversed from an
 * `openssl s_server -rev` peer and check every byte. --dns sends DNS queries to SERVERS
 * ("127.0.0.1:5353") instead of those of /etc/resolv.conf.
 *
 * What the libuv side must take care of:
 *
 *  - The descriptor rill_connect_poll_info() names changes between steps (an epoll descriptor
 *    of the op's own, an attempt's socket, the winner's socket during the TLS handshake), and the
 *    op closes the old one itself, inside the step. A uv_poll_t watches one descriptor for its
 *    whole life, so a new descriptor needs a new handle: uv_poll_stop() and uv_close() the old
 *    one, uv_poll_init() another (watch()). Do it before returning to the loop: libuv must not
 *    poll a handle whose descriptor is gone. uv_close() completes in a later loop iteration:
 *    free the handle in its close callback, never before.
 *  - The same number can come back for a new socket (a failed attempt's socket closed, the next
 *    attempt's socket given that number). Closing dropped the old socket from libuv's epoll set
 *    behind libuv's back, so after every step the handle is stopped and started again, which
 *    makes libuv register the descriptor anew whatever it thinks it is watching.
 *  - When the op ends, its handle ends first: uv_poll_stop() before rill_connect_op_free() closes
 *    the descriptors, as libuv asks. The stream gets a handle of its own.
 *  - The op's timer goes in a uv_timer_t: rill_connect_poll_info()'s timeout is when the next
 *    step is due even if no descriptor becomes ready (the RFC 8305 delays, the deadline).
 *  - uv_poll_init() puts the descriptor in non-blocking mode. rill does not mind: it passes
 *    MSG_DONTWAIT per call and polls by itself for calls with a timeout.
 *  - The exchange reads until rill returns RILL_WANT_*, and only then waits. Bytes the TLS layer
 *    has decrypted make no descriptor readable: a loop that stops reading earlier must check
 *    rill_pending() and come back without waiting (epoll_clients.c does, with a ready list; in
 *    libuv a uv_idle_t would do).
 *
 * Output: the first few failures on stderr, then on stdout
 *     uv_client: 10/10 ok in 22 ms
 *     uv: 15 poll handles made, 16 restarted
 * Exit status 0 when every connection checked out, 1 otherwise, 2 for bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <rill/rill.h>
#include <uv.h>

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG          "uv_client"
#define DEFAULT_COUNT 10
#define MAX_COUNT     100 /* all at once: 100 fit the usual limit of 1024 descriptors */

#define LINES       8
#define LINE_LEN    96 /* characters of a line, without its LF */
#define LINE_SIZE   ((size_t)LINE_LEN + 1)
#define PAYLOAD_LEN ((size_t)LINES * LINE_SIZE)

#define CONNECT_TIMEOUT_MS 30000 /* DNS + TCP + TLS */
#define IO_TIMEOUT_MS      10000 /* request and reply, once connected */
#define MAX_REPORTED       5

enum state { CONNECTING, SENDING, FLUSHING, READING, DONE };

struct client;

struct conn {
    unsigned id;
    enum state state;
    struct client *cl;
    rill_connect_op *op; /* while CONNECTING */
    rill_stream *s;      /* "tls > tcp" once connected */
    uv_poll_t *poll;     /* on the descriptor it waits for; NULL: none */
    int poll_fd;
    uv_timer_t timer; /* the op's next timer, then the deadline of the reply */
    size_t sent, got;
    char payload[PAYLOAD_LEN];
    char reply[PAYLOAD_LEN];
};

struct client {
    uv_loop_t loop;
    rill_ctx *ctx;
    const char *host;
    uint16_t port;
    rill_connect_opts opts;
    size_t ok, failed;
    unsigned long long made, restarted;
};

/* ---- the handles ---- */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Stop watching for @p c. The descriptor may be closed after uv_poll_stop(), not before. */
static void unwatch(struct conn *c)
{
    if (!c->poll)
        return;
    uv_poll_stop(c->poll);
    uv_close((uv_handle_t *)c->poll, free_handle);
    c->poll = NULL;
}

/*
 * Wait for @p fd with poll(2)'s @p events on behalf of @p c (-1: for nothing). Call it after
 * every rill call that may have changed what @p c waits on. Returns 0 or a libuv error.
 */
static int watch(struct conn *c, int fd, short events)
{
    if (c->poll && c->poll_fd != fd)
        unwatch(c);
    if (fd < 0)
        return 0;
    if (!c->poll) {
        uv_poll_t *h = malloc(sizeof *h);
        if (!h)
            return UV_ENOMEM;
        int r = uv_poll_init(&c->cl->loop, h, fd);
        if (r != 0) {
            free(h);
            return r;
        }
        h->data = c;
        c->poll = h;
        c->poll_fd = fd;
        c->cl->made++;
    } else {
        /* Maybe a new socket under the old number: stop and start registers it afresh. */
        uv_poll_stop(c->poll);
        c->cl->restarted++;
    }
    int uv_events = ((events & POLLIN) ? UV_READABLE : 0) | ((events & POLLOUT) ? UV_WRITABLE : 0);
    return uv_poll_start(c->poll, uv_events, on_poll);
}

static void on_timer(uv_timer_t *t);

/* Run on_timer for @p c after @p ms (-1: never). */
static void timer_set(struct conn *c, int ms)
{
    if (ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- one connection ---- */

/* Lines of letters, different for every connection and line (see epoll_clients.c). */
static void make_payload(struct conn *c)
{
    static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint32_t x = c->id * 2654435761u + 1u; /* xorshift32; never 0 */
    for (unsigned line = 0; line < LINES; line++) {
        char *p = c->payload + line * LINE_SIZE;
        int head = snprintf(p, LINE_LEN, "uv connection %u line %u ", c->id, line);
        for (size_t i = (size_t)head; i < LINE_LEN; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p[i] = letters[x % (sizeof letters - 1)];
        }
        p[LINE_LEN] = '\n';
    }
}

/* The first line of the reply that is not its line of the payload reversed, or -1. */
static int bad_line(const struct conn *c)
{
    for (int line = 0; line < LINES; line++) {
        const char *sent = c->payload + (size_t)line * LINE_SIZE;
        const char *got = c->reply + (size_t)line * LINE_SIZE;
        for (size_t i = 0; i < LINE_LEN; i++) {
            if (got[i] != sent[LINE_LEN - 1 - i])
                return line;
        }
        if (got[LINE_LEN] != '\n')
            return line;
    }
    return -1;
}

/*
 * Done with @p c: count it (@p error NULL: it checked out), then close its handles (the loop
 * ends when all are closed) and free what it holds. @p error may be rill_errmsg() of its
 * stream, so it is reported before the stream goes.
 */
static void finish(struct conn *c, const char *error)
{
    if (!error)
        c->cl->ok++;
    else if (c->cl->failed++ < MAX_REPORTED)
        fprintf(stderr, PROG ": connection %u: %s\n", c->id, error);
    unwatch(c); /* before rill closes the descriptor */
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, NULL); /* the memory is the conn's: no callback needed */
    rill_connect_op_free(c->op);
    c->op = NULL;
    (void)rill_close(c->s); /* non-blocking: a close_notify that does not fit now is dropped */
    c->s = NULL;
    c->state = DONE;
}

static void fail_uv(struct conn *c, const char *what, int r)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(r));
    finish(c, msg);
}

/* The request and the reply: as far as it goes without waiting. */
static void io_step(struct conn *c)
{
    rill_status st = RILL_OK;
    size_t n;
    while (c->state == SENDING) {
        st = rill_write(c->s, c->payload + c->sent, PAYLOAD_LEN - c->sent, &n);
        if (st != RILL_OK)
            break;
        if ((c->sent += n) == PAYLOAD_LEN)
            c->state = FLUSHING;
    }
    if (c->state == FLUSHING && (st = rill_flush(c->s)) == RILL_OK)
        c->state = READING;
    while (c->state == READING) {
        st = rill_read(c->s, c->reply + c->got, PAYLOAD_LEN - c->got, &n);
        if (st != RILL_OK)
            break;
        if ((c->got += n) == PAYLOAD_LEN) {
            int line = bad_line(c);
            char msg[64];
            snprintf(msg, sizeof msg, "line %d of the reply is not line %d reversed", line, line);
            finish(c, line < 0 ? NULL : msg);
            return;
        }
    }
    if (st == RILL_EOF) {
        char msg[96];
        snprintf(msg, sizeof msg, "the server closed the connection after %zu of %zu bytes", c->got,
                 PAYLOAD_LEN);
        finish(c, msg);
        return;
    }
    if (st < 0) {
        finish(c, rill_errmsg(c->s));
        return;
    }
    /* RILL_WANT_*: the chain names the descriptor and events (a TLS read may need POLLOUT). */
    int fd, r;
    short events;
    if (rill_poll_info(c->s, &fd, &events) != RILL_OK)
        finish(c, rill_errmsg(c->s));
    else if ((r = watch(c, fd, events)) != 0)
        fail_uv(c, "uv_poll", r);
}

static void connect_step(struct conn *c)
{
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect_step(c->op, &s, &err);
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
        int fd, timeout_ms, r;
        short events;
        if (rill_connect_poll_info(c->op, &fd, &events, &timeout_ms) != RILL_OK) {
            finish(c, "rill_connect_poll_info failed");
            return;
        }
        if ((r = watch(c, fd, events)) != 0) {
            fail_uv(c, "uv_poll", r);
            return;
        }
        timer_set(c, timeout_ms);
        return;
    }
    /* Finished: stop watching, then free the op (its descriptors close); the stream is ours. */
    unwatch(c);
    rill_connect_op_free(c->op);
    c->op = NULL;
    if (st != RILL_OK) {
        finish(c, err.msg);
        return;
    }
    c->s = s;
    c->state = SENDING;
    timer_set(c, IO_TIMEOUT_MS);
    io_step(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status; /* an error on the descriptor is the next rill call's to report */
    (void)events;
    struct conn *c = h->data;
    if (c->state == CONNECTING)
        connect_step(c);
    else if (c->state != DONE)
        io_step(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == CONNECTING) {
        connect_step(c); /* a delay of the op is over, or its deadline */
    } else if (c->state != DONE) {
        char msg[96];
        snprintf(msg, sizeof msg, "no whole reply within %d ms (%zu of %zu bytes)", IO_TIMEOUT_MS,
                 c->got, PAYLOAD_LEN);
        finish(c, msg);
    }
}

static void start(struct client *cl, struct conn *c)
{
    rill_error err;
    c->cl = cl;
    c->poll_fd = -1;
    uv_timer_init(&cl->loop, &c->timer);
    c->timer.data = c;
    if (rill_connect_start(cl->ctx, cl->host, cl->port, &cl->opts, &c->op, &err) != RILL_OK) {
        finish(c, err.msg);
        return;
    }
    c->state = CONNECTING;
    connect_step(c); /* a name rill knows already is connecting by now */
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--dns SERVERS] HOST PORT [COUNT [CAFILE]]\n");
    exit(2);
}

static unsigned long parse_number(const char *text, unsigned long max)
{
    char *end;
    unsigned long v = strtoul(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v == 0 || v > max)
        usage();
    return v;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

int main(int argc, char **argv)
{
    const char *dns = NULL;
    int arg = 1;
    if (arg + 1 < argc && strcmp(argv[arg], "--dns") == 0) {
        dns = argv[arg + 1];
        arg += 2;
    }
    if (argc - arg < 2 || argc - arg > 4)
        usage();
    static struct client cl;
    cl.host = argv[arg];
    cl.port = (uint16_t)parse_number(argv[arg + 1], 65535);
    size_t count = argc - arg > 2 ? parse_number(argv[arg + 2], MAX_COUNT) : DEFAULT_COUNT;
    const char *cafile = argc - arg > 3 ? argv[arg + 3] : NULL;

    int status = 1;
    rill_error err;
    rill_tls_config *tls = NULL;
    struct conn *conns = NULL;
    int r = uv_loop_init(&cl.loop);
    if (r != 0) {
        fprintf(stderr, PROG ": uv_loop_init: %s\n", uv_strerror(r));
        return 1;
    }
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.dns_servers = dns;
    if (rill_ctx_new(&co, &cl.ctx, &err) != RILL_OK || rill_tls_config_new(&tls, &err) != RILL_OK ||
        (cafile && rill_tls_config_set_ca_file(tls, cafile, &err) != RILL_OK)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    rill_connect_opts_init(&cl.opts);
    cl.opts.timeout_ms = CONNECT_TIMEOUT_MS;
    cl.opts.tls = tls;
    cl.opts.read_timeout_ms = cl.opts.write_timeout_ms = 0; /* the stream comes non-blocking */

    conns = calloc(count, sizeof *conns);
    if (!conns) {
        perror(PROG);
        goto out;
    }
    uint64_t t0 = now_ms();
    for (size_t i = 0; i < count; i++) {
        conns[i].id = (unsigned)i;
        make_payload(&conns[i]);
        start(&cl, &conns[i]);
    }
    /* Returns when every handle is closed: every connection finished. */
    uv_run(&cl.loop, UV_RUN_DEFAULT);
    unsigned long long ms = (unsigned long long)(now_ms() - t0);

    if (cl.failed > MAX_REPORTED)
        fprintf(stderr, PROG ": %zu more failures not shown\n", cl.failed - MAX_REPORTED);
    printf(PROG ": %zu/%zu ok in %llu ms\n", cl.ok, count, ms);
    printf("uv: %llu poll handles made, %llu restarted\n", cl.made, cl.restarted);
    status = cl.ok == count ? 0 : 1;

out:
    /* Every handle is closed by now; a loop that does not close says one was forgotten. */
    r = uv_loop_close(&cl.loop);
    if (r != 0) {
        fprintf(stderr, PROG ": uv_loop_close: %s\n", uv_strerror(r));
        status = 1;
    }
    free(conns);
    rill_ctx_free(cl.ctx);
    rill_tls_config_free(tls);
    return status;
}
