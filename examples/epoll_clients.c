/* SPDX-License-Identifier: MIT */
/*
 * epoll_clients — many TLS connections by name from one thread with epoll, non-blocking from
 * the DNS lookup to the last byte.
 *
 *     epoll_clients [--dns SERVERS] HOST PORT [COUNT [CAFILE]]
 *
 * Opens COUNT connections (default 1000) to HOST:PORT with TLS. Each one resolves HOST and
 * connects with rill_connect_start() (DNS, the RFC 8305 address race and the TLS handshake, as
 * steps), sends eight lines of text of its own and reads them back reversed from an
 * `openssl s_server -rev` peer, checking every byte, then closes. CAFILE (PEM) replaces the
 * system trust store; --dns sends DNS queries to SERVERS ("127.0.0.1:5353") instead of those of
 * /etc/resolv.conf. "localhost" needs no DNS at all: it is ::1 and 127.0.0.1.
 *
 * What an application driving rill from its own event loop must do, and where this file does it:
 *
 *  - Connecting (connect_step): after rill_connect_start(), call rill_connect_step() whenever the
 *    descriptor from rill_connect_poll_info() is ready or its timeout has passed, whichever
 *    comes first. The timeout is the op's next timer (the RFC 8305 resolution and attempt
 *    delays, a DNS retry, the connect deadline): without it an op waiting on the clock would
 *    never run. The op owns the descriptor (never close it) and it CHANGES between steps: an
 *    epoll descriptor of the op's own while it waits for DNS and attempts at once, an attempt's
 *    socket, the winner's socket during the TLS handshake. Ask after every step and move the
 *    registration (watch()). Even the same number may name a new socket: a failed attempt's
 *    socket is closed, which drops it from our epoll set, and the next attempt may get the
 *    number back.
 *  - Ownership: rill_connect_start() copies the options and the host name and takes a reference
 *    to the TLS config (so ours can be freed whenever we are done with it). The descriptors are
 *    the op's. A step that returns RILL_OK hands over the stream (ours to rill_close()); the op
 *    still has to be freed. rill_connect_op_free() cancels at any point, closing everything the
 *    op holds at once; take its descriptor out of the epoll set first or right after.
 *  - Talking (io_step): with timeouts 0 every call returns RILL_WANT_READ/RILL_WANT_WRITE
 *    instead of waiting; then rill_poll_info() says which descriptor and events (a TLS read may
 *    need POLLOUT). Nothing times out a non-blocking stream: the loop's own timer does.
 *  - A read that stops before RILL_WANT_* (here: after READS_PER_WAKE reads, so that one busy
 *    connection cannot starve the others) may leave decrypted bytes inside the TLS layer. They
 *    make no descriptor readable, so epoll would never report them: check rill_pending() and run
 *    such a connection again without sleeping (the ready list).
 *  - Descriptors: a connection holds up to FDS_PER_CONN while it connects. The soft
 *    RLIMIT_NOFILE is raised for all COUNT (up to the hard limit); when that is not enough the
 *    program says so and keeps fewer connections open at once (the window).
 *
 * The peer, `openssl s_server -rev`, serves one connection at a time: the others wait in its
 * listen queue, their TLS handshakes included, so most of the run is the peer's queue.
 *
 * Output: the first few failures on stderr, then on stdout (here by name through DNS)
 *     epoll_clients: 1000/1000 ok in 2124 ms
 *     connect: 2000 answers (A, AAAA), 2000 attempts (1000 failed), 2 sessions resumed
 *     epoll: 4726 waits, 2476 runs for pending bytes; registrations: 1842 added, 7197 changed,
 *     338 moved, 504 renewed
 * ("moved": to another descriptor; "renewed": the same number came back for a new socket).
 * Exit status 0 when every connection checked out, 1 otherwise, 2 for bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <rill/rill.h>

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PROG          "epoll_clients"
#define DEFAULT_COUNT 1000
#define MAX_COUNT     100000

#define LINES       8
#define LINE_LEN    96 /* characters of a line, without its LF */
#define LINE_SIZE   ((size_t)LINE_LEN + 1)
#define PAYLOAD_LEN ((size_t)LINES * LINE_SIZE)

/* The server answers each line in a TLS record of its own, which takes two reads of READ_CHUNK:
 * a budget of three reads per wake-up often ends in the middle of a record. */
#define READ_CHUNK     64
#define READS_PER_WAKE 3

#define CONNECT_TIMEOUT_MS 30000 /* DNS + TCP + TLS; the peer serves one connection at a time */
#define IO_TIMEOUT_MS      10000 /* request and reply, once connected */

/*
 * Descriptors: at most MAX_IN_FLIGHT attempts per connection while it races, plus the op's
 * epoll descriptor and its DNS eventfd; the reserve covers stdio, our epoll set, the resolver's
 * sockets and files read on the way (the CA file).
 */
#define MAX_IN_FLIGHT 2
#define FDS_PER_CONN  (MAX_IN_FLIGHT + 2)
#define FDS_RESERVE   64

#define MAX_EVENTS   256
#define MAX_REPORTED 5

enum state { CONNECTING, SENDING, FLUSHING, READING, DONE };

struct conn {
    unsigned id;
    enum state state;
    rill_connect_op *op; /* while CONNECTING */
    rill_stream *s;      /* "tls > tcp" once connected */
    int fd;              /* what our epoll set watches for it; -1: nothing */
    int64_t due_ms;      /* its timer (monotonic ms); -1: none */
    size_t heap_at;      /* its place in the timer heap while due_ms >= 0 */
    bool ready;          /* on the ready list: run again without waiting */
    size_t sent, got;
    char payload[PAYLOAD_LEN];
    char reply[PAYLOAD_LEN];
};

struct loop {
    int ep;
    rill_ctx *ctx;
    const char *host;
    uint16_t port;
    rill_connect_opts opts;
    struct conn *conns;
    size_t count, started, open, ok, failed;
    unsigned *heap; /* connection ids, a min-heap on their due_ms */
    size_t nheap;
    unsigned *ready, *batch; /* ids on the ready list, and the copy one round works through */
    size_t nready;
    /* for the summary */
    unsigned long long answers, attempts, attempts_failed, resumed;
    unsigned long long waits, ready_runs, added, changed, moved, renewed;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the timer heap: one entry per connection, the earliest on top ---- */

static struct conn *heap_conn(const struct loop *lp, size_t i)
{
    return &lp->conns[lp->heap[i]];
}

static void heap_swap(struct loop *lp, size_t i, size_t j)
{
    unsigned t = lp->heap[i];
    lp->heap[i] = lp->heap[j];
    lp->heap[j] = t;
    heap_conn(lp, i)->heap_at = i;
    heap_conn(lp, j)->heap_at = j;
}

static void heap_up(struct loop *lp, size_t i)
{
    while (i > 0 && heap_conn(lp, i)->due_ms < heap_conn(lp, (i - 1) / 2)->due_ms) {
        heap_swap(lp, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct loop *lp, size_t i)
{
    for (;;) {
        size_t least = i, l = 2 * i + 1, r = l + 1;
        if (l < lp->nheap && heap_conn(lp, l)->due_ms < heap_conn(lp, least)->due_ms)
            least = l;
        if (r < lp->nheap && heap_conn(lp, r)->due_ms < heap_conn(lp, least)->due_ms)
            least = r;
        if (least == i)
            return;
        heap_swap(lp, i, least);
        i = least;
    }
}

/* Set @p c's timer to @p due_ms, or clear it (-1). */
static void timer_set(struct loop *lp, struct conn *c, int64_t due_ms)
{
    if (c->due_ms >= 0) {
        size_t i = c->heap_at;
        assert(i < lp->nheap && lp->heap[i] == c->id);
        c->due_ms = -1;
        if (i != --lp->nheap) {
            lp->heap[i] = lp->heap[lp->nheap];
            heap_conn(lp, i)->heap_at = i;
            heap_down(lp, i);
            heap_up(lp, i);
        }
    }
    if (due_ms < 0)
        return;
    c->due_ms = due_ms;
    c->heap_at = lp->nheap;
    lp->heap[lp->nheap++] = c->id;
    heap_up(lp, c->heap_at);
}

/* ---- the epoll set ---- */

/*
 * Make our epoll set watch @p fd for poll(2)'s @p events on behalf of @p c, and nothing else for
 * it (@p fd -1: nothing). Call it right after each rill call that may have changed what @p c
 * waits on. Returns 0, or -1 with errno from epoll_ctl.
 */
static int watch(struct loop *lp, struct conn *c, int fd, short events)
{
    if (c->fd >= 0 && c->fd != fd) {
        /*
         * The old descriptor is either still open (the op waits on another one now: it must
         * leave the set, or level-triggered epoll would report it again and again) or closed
         * by rill, which dropped it from the set already (ENOENT or EBADF then). Its number
         * cannot belong to another connection yet: nothing else ran since rill closed it.
         */
        (void)epoll_ctl(lp->ep, EPOLL_CTL_DEL, c->fd, NULL);
        c->fd = -1;
        if (fd >= 0)
            lp->moved++;
    }
    if (fd < 0)
        return 0;
    struct epoll_event ev = { .events = ((events & POLLIN) ? (uint32_t)EPOLLIN : 0u) |
                                        ((events & POLLOUT) ? (uint32_t)EPOLLOUT : 0u),
                              .data.ptr = c };
    if (c->fd == fd) {
        if (epoll_ctl(lp->ep, EPOLL_CTL_MOD, fd, &ev) == 0) {
            lp->changed++;
            return 0;
        }
        if (errno != ENOENT)
            return -1;
        /* Same number, new socket: the old one was closed (and so left the set). */
        lp->renewed++;
    }
    if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -1;
    c->fd = fd;
    lp->added++;
    return 0;
}

/* ---- one connection ---- */

/* Lines of letters, different for every connection and line: a byte lost, or a reply that
 * went to another connection, cannot pass the check. */
static void make_payload(struct conn *c)
{
    static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint32_t x = c->id * 2654435761u + 1u; /* xorshift32; never 0 */
    for (unsigned line = 0; line < LINES; line++) {
        char *p = c->payload + line * LINE_SIZE;
        int head = snprintf(p, LINE_LEN, "connection %u line %u ", c->id, line);
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
 * Done with @p c: count it (@p error NULL: it checked out), then drop its timer and
 * registration and free what it holds. @p error may be rill_errmsg() of its stream, so it is
 * reported before the stream goes.
 */
static void finish(struct loop *lp, struct conn *c, const char *error)
{
    if (!error)
        lp->ok++;
    else if (lp->failed++ < MAX_REPORTED)
        fprintf(stderr, PROG ": connection %u: %s\n", c->id, error);
    timer_set(lp, c, -1);
    (void)watch(lp, c, -1, 0); /* before rill closes the descriptor */
    rill_connect_op_free(c->op);
    c->op = NULL;
    /* Non-blocking: a close_notify that does not fit the socket now is dropped. */
    (void)rill_close(c->s);
    c->s = NULL;
    c->state = DONE;
    lp->open--;
}

static void fail_errno(struct loop *lp, struct conn *c, const char *what)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
    finish(lp, c, msg);
}

/* Make @p c run in the next round without waiting for its descriptor. */
static void make_ready(struct loop *lp, struct conn *c)
{
    if (!c->ready) {
        c->ready = true;
        lp->ready[lp->nready++] = c->id;
    }
}

/* The request and the reply, one wake-up's worth. */
static void io_step(struct loop *lp, struct conn *c)
{
    rill_status st = RILL_OK;
    size_t n;
    while (c->state == SENDING) {
        /* Bytes accepted are never to be offered again, even those TLS has yet to send. */
        st = rill_write(c->s, c->payload + c->sent, PAYLOAD_LEN - c->sent, &n);
        if (st != RILL_OK)
            break;
        if ((c->sent += n) == PAYLOAD_LEN)
            c->state = FLUSHING;
    }
    if (c->state == FLUSHING && (st = rill_flush(c->s)) == RILL_OK)
        c->state = READING;
    if (c->state == READING) {
        for (int reads = 0; reads < READS_PER_WAKE; reads++) {
            size_t want = PAYLOAD_LEN - c->got;
            st = rill_read(c->s, c->reply + c->got, want < READ_CHUNK ? want : READ_CHUNK, &n);
            if (st != RILL_OK)
                break;
            if ((c->got += n) < PAYLOAD_LEN)
                continue;
            int line = bad_line(c);
            char msg[64];
            snprintf(msg, sizeof msg, "line %d of the reply is not line %d reversed", line, line);
            finish(lp, c, line < 0 ? NULL : msg);
            return;
        }
        if (st == RILL_OK) {
            /*
             * Our budget is spent, the reply is not whole, and the last read returned bytes,
             * so nothing said the chain has to wait. Bytes it holds already (the rest of a TLS
             * record) make no descriptor readable: with any, come back without sleeping;
             * otherwise epoll reports the socket when more arrive.
             */
            if (watch(lp, c, rill_fd(c->s), POLLIN) != 0)
                fail_errno(lp, c, "epoll_ctl");
            else if (rill_pending(c->s) > 0)
                make_ready(lp, c);
            return;
        }
    }
    if (st == RILL_EOF) {
        char msg[96];
        snprintf(msg, sizeof msg, "the server closed the connection after %zu of %zu bytes", c->got,
                 PAYLOAD_LEN);
        finish(lp, c, msg);
        return;
    }
    if (st < 0) {
        finish(lp, c, rill_errmsg(c->s));
        return;
    }
    /* RILL_WANT_*: the chain says what to wait for (a TLS read may need POLLOUT). */
    int fd;
    short events;
    if (rill_poll_info(c->s, &fd, &events) != RILL_OK)
        finish(lp, c, rill_errmsg(c->s));
    else if (watch(lp, c, fd, events) != 0)
        fail_errno(lp, c, "epoll_ctl");
}

/* One step of the connect; the first runs right after rill_connect_start(). */
static void connect_step(struct loop *lp, struct conn *c)
{
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_connect_step(c->op, &s, &err);
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
        /* Ask again after every step: the descriptor and the timer may both have changed. */
        int fd, timeout_ms;
        short events;
        if (rill_connect_poll_info(c->op, &fd, &events, &timeout_ms) != RILL_OK) {
            finish(lp, c, "rill_connect_poll_info failed");
            return;
        }
        if (watch(lp, c, fd, events) != 0) {
            fail_errno(lp, c, "epoll_ctl");
            return;
        }
        timer_set(lp, c, timeout_ms < 0 ? -1 : now_ms() + timeout_ms);
        return;
    }
    /* Finished. Its descriptors close with the op; the winner's socket is the stream's now. */
    rill_connect_op_free(c->op);
    c->op = NULL;
    if (st != RILL_OK) {
        finish(lp, c, err.msg);
        return;
    }
    c->s = s;
    lp->resumed += (unsigned)rill_tls_session_resumed(s);
    c->state = SENDING;
    timer_set(lp, c, now_ms() + IO_TIMEOUT_MS);
    io_step(lp, c);
}

static void start(struct loop *lp, struct conn *c)
{
    rill_error err;
    lp->open++;
    if (rill_connect_start(lp->ctx, lp->host, lp->port, &lp->opts, &c->op, &err) != RILL_OK) {
        finish(lp, c, err.msg);
        return;
    }
    c->state = CONNECTING;
    /* A name rill knows already (localhost, the cache) is connecting by now: step at once. */
    connect_step(lp, c);
}

/* Its descriptor is ready, or it has bytes pending: move it on. */
static void advance(struct loop *lp, struct conn *c)
{
    if (c->state == CONNECTING)
        connect_step(lp, c);
    else if (c->state != DONE)
        io_step(lp, c);
}

static void on_timer(struct loop *lp, struct conn *c)
{
    if (c->state == CONNECTING) {
        connect_step(lp, c); /* the op's timer: a delay is over, or its deadline */
    } else if (c->state != DONE) {
        char msg[96];
        snprintf(msg, sizeof msg, "no whole reply within %d ms (%zu of %zu bytes)", IO_TIMEOUT_MS,
                 c->got, PAYLOAD_LEN);
        finish(lp, c, msg);
    }
}

/* Trace events of every op: counted for the summary. Called inside rill_connect_step(). */
static void on_event(void *arg, const rill_connect_event *ev)
{
    struct loop *lp = arg;
    if (ev->type == RILL_EV_ANSWER)
        lp->answers++;
    else if (ev->type == RILL_EV_ATTEMPT)
        lp->attempts++;
    else if (ev->type == RILL_EV_ATTEMPT_FAILED)
        lp->attempts_failed++;
}

/* ---- setup ---- */

/*
 * Raise the soft descriptor limit to what @p count connections need (up to the hard limit) and
 * return how many may be open at once; 0 if not even one.
 */
static size_t fit_descriptors(size_t count)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)count * FDS_PER_CONN + FDS_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror(PROG ": getrlimit");
        return 0;
    }
    if (rl.rlim_cur < need) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            perror(PROG ": setrlimit");
            rl.rlim_cur = old;
        }
    }
    size_t fit = rl.rlim_cur > FDS_RESERVE ? (size_t)(rl.rlim_cur - FDS_RESERVE) / FDS_PER_CONN : 0;
    if (fit >= count)
        return count;
    fprintf(stderr,
            PROG ": %zu connections need %llu descriptors, but the limit is %llu (hard limit "
                 "%llu): ",
            count, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
            (unsigned long long)rl.rlim_max);
    if (fit == 0)
        fprintf(stderr, "not even one fits\n");
    else
        fprintf(stderr, "at most %zu at once\n", fit);
    return fit;
}

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
    struct loop lp = { .ep = -1, .host = argv[arg] };
    lp.port = (uint16_t)parse_number(argv[arg + 1], 65535);
    lp.count = argc - arg > 2 ? parse_number(argv[arg + 2], MAX_COUNT) : DEFAULT_COUNT;
    const char *cafile = argc - arg > 3 ? argv[arg + 3] : NULL;

    int status = 1;
    rill_error err;
    rill_tls_config *tls = NULL;
    size_t window = fit_descriptors(lp.count);
    if (window == 0)
        goto out;

    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.dns_servers = dns;
    /* One context for all: one resolver, one DNS cache, one TLS session cache. */
    if (rill_ctx_new(&co, &lp.ctx, &err) != RILL_OK || rill_tls_config_new(&tls, &err) != RILL_OK ||
        (cafile && rill_tls_config_set_ca_file(tls, cafile, &err) != RILL_OK)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    rill_connect_opts_init(&lp.opts);
    lp.opts.timeout_ms = CONNECT_TIMEOUT_MS;
    lp.opts.max_in_flight = MAX_IN_FLIGHT;
    lp.opts.tls = tls; /* the op verifies the server as HOST before it hands out the stream */
    lp.opts.read_timeout_ms = lp.opts.write_timeout_ms = 0; /* the stream comes non-blocking */
    lp.opts.on_event = on_event;
    lp.opts.on_event_arg = &lp;

    lp.ep = epoll_create1(EPOLL_CLOEXEC);
    lp.conns = calloc(lp.count, sizeof *lp.conns);
    lp.heap = calloc(lp.count, sizeof *lp.heap);
    lp.ready = calloc(lp.count, sizeof *lp.ready);
    lp.batch = calloc(lp.count, sizeof *lp.batch);
    if (lp.ep < 0 || !lp.conns || !lp.heap || !lp.ready || !lp.batch) {
        perror(PROG ": setting up");
        goto out;
    }
    for (size_t i = 0; i < lp.count; i++) {
        struct conn *c = &lp.conns[i];
        c->id = (unsigned)i;
        c->fd = -1;
        c->due_ms = -1;
        make_payload(c);
    }

    int64_t t0 = now_ms();
    while (lp.ok + lp.failed < lp.count) {
        while (lp.started < lp.count && lp.open < window)
            start(&lp, &lp.conns[lp.started++]);

        int timeout = -1; /* nothing due: sleep until a descriptor is ready */
        if (lp.nready > 0) {
            timeout = 0;
        } else if (lp.nheap > 0) {
            int64_t left = heap_conn(&lp, 0)->due_ms - now_ms();
            timeout = left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
        } else if (lp.open == 0) {
            continue; /* all finished while starting */
        }
        struct epoll_event events[MAX_EVENTS];
        int n = epoll_wait(lp.ep, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            perror(PROG ": epoll_wait");
            goto out;
        }
        lp.waits++;
        /* An event can name a connection that finished earlier in this round: advance()
         * ignores those. Errors and hang-ups are the next rill call's to report. */
        for (int i = 0; i < n; i++)
            advance(&lp, events[i].data.ptr);

        /* Connections with pending bytes; those that still have some go to the next round. */
        size_t nbatch = lp.nready;
        memcpy(lp.batch, lp.ready, nbatch * sizeof *lp.batch);
        lp.nready = 0;
        for (size_t i = 0; i < nbatch; i++) {
            struct conn *c = &lp.conns[lp.batch[i]];
            c->ready = false;
            lp.ready_runs++;
            advance(&lp, c);
        }

        /* Timers due now (a timer set while running these waits for the next round). */
        int64_t now = now_ms();
        size_t ndue = 0;
        while (lp.nheap > 0 && heap_conn(&lp, 0)->due_ms <= now) {
            struct conn *c = heap_conn(&lp, 0);
            lp.batch[ndue++] = c->id;
            timer_set(&lp, c, -1);
        }
        for (size_t i = 0; i < ndue; i++)
            on_timer(&lp, &lp.conns[lp.batch[i]]);
    }
    long long ms = (long long)(now_ms() - t0);

    printf(PROG ": %zu/%zu ok in %lld ms\n", lp.ok, lp.count, ms);
    if (lp.failed > MAX_REPORTED)
        fprintf(stderr, PROG ": %zu more failures not shown\n", lp.failed - MAX_REPORTED);
    printf("connect: %llu answers (A, AAAA), %llu attempts (%llu failed), %llu sessions resumed\n",
           lp.answers, lp.attempts, lp.attempts_failed, lp.resumed);
    printf("epoll: %llu waits, %llu runs for pending bytes; registrations: %llu added, %llu "
           "changed, %llu moved, %llu renewed\n",
           lp.waits, lp.ready_runs, lp.added, lp.changed, lp.moved, lp.renewed);
    status = lp.ok == lp.count ? 0 : 1;

out:
    for (size_t i = 0; lp.conns && i < lp.count; i++) {
        rill_connect_op_free(lp.conns[i].op); /* cancels a connect in progress */
        (void)rill_close(lp.conns[i].s);
    }
    free(lp.conns);
    free(lp.heap);
    free(lp.ready);
    free(lp.batch);
    if (lp.ep >= 0)
        close(lp.ep);
    rill_ctx_free(lp.ctx);
    rill_tls_config_free(tls);
    return status;
}
