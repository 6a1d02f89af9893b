/* SPDX-License-Identifier: MIT */
/*
 * epoll_server — a TLS line server for thousands of clients in one thread, with epoll.
 *
 *     epoll_server --cert CHAIN.pem --key KEY.pem [--port N] [--addr A] [--handshake-ms N]
 *                  [--idle-ms N] [--grace-ms N] [--max-conns N] [--max-line N] [--reuseport]
 *                  [-v]
 *
 * Listens on A:N (default 127.0.0.1, port 0: the kernel picks one) and says where on stdout:
 *     epoll_server: listening on 127.0.0.1:40112
 * Each line a client sends (LF-terminated, at most --max-line bytes, default 1024) is
 * acknowledged with one line "SEQ CHECKSUM": the line's number on this connection (from 1) and
 * the FNV-1a 64-bit hash of its bytes in 16 hex digits, so a client can check every byte came
 * through. A longer line gets "error: line too long" and the connection is closed.
 *
 * What a server driving rill from its own event loop does, and where this file does it:
 *
 *  - Accepting (on_listener): the listening socket is non-blocking; when epoll reports it
 *    readable, rill_accept(l, 0, ...) until RILL_WANT_READ. rill_listen()'s stream options give
 *    every accepted stream the TLS config and timeouts 0, so it is "tls > tcp" and nothing on it
 *    ever blocks. A connection cap (--max-conns) and accept errors (EMFILE) pause accepting:
 *    the listener leaves the epoll set for a while instead of spinning.
 *  - The handshake (step, HANDSHAKE): rill_tls_handshake() returns RILL_WANT_READ/WRITE until
 *    done; rill_poll_info() tells the events to wait for. A client that never finishes is cut
 *    at its handshake deadline (--handshake-ms): nobody else waits for it, because nothing
 *    here blocks.
 *  - Deadlines: one per connection in a rill_timers set keyed by the connection: handshake,
 *    then idle (reset by every line), then the shutdown grace period, then the linger of a
 *    close. epoll_wait() sleeps at most rill_timers_timeout(); after it, rill_timers_expire()
 *    hands out each connection whose deadline passed.
 *  - Bytes the TLS layer decrypted but the loop did not consume (it stops after LINES_PER_WAKE
 *    lines so one chatty client cannot starve the others) make no descriptor readable:
 *    rill_pending() says so, and such a connection runs again before the next wait (the ready
 *    list). Replies that do not fit the socket wait in a small per-connection buffer; while it
 *    is full the connection reads nothing more (back-pressure).
 *  - Idle memory: rill_shrink() after a wake that left nothing buffered releases the line
 *    reader's buffer; OpenSSL releases its record buffers itself (SSL_MODE_RELEASE_BUFFERS).
 *  - Closing (CLOSING, LINGER): flush the replies, rill_shutdown() sends close_notify
 *    (non-blocking: RILL_WANT_WRITE means call again when writable), then read until the
 *    client closes too, at most LINGER_MS; closing the socket with unread bytes would make the
 *    kernel send a reset that can destroy replies the client has not read yet.
 *  - Graceful shutdown on SIGTERM or SIGINT (signalfd): free the listener (stop accepting; the
 *    connections still in its queue are reset), let the open connections go on until they end
 *    or --grace-ms passes (default 5000), then close each one as above. Every reply that was
 *    written before that is delivered ahead of close_notify. The program exits when the last
 *    connection is gone, printing
 *        epoll_server: stopped: 2000 connections (2000 closed by the client, 0 idle,
 *        0 handshake timeouts, 0 cut at shutdown, 0 errors), 10000 lines acknowledged
 *  - SIGUSR1 prints a snapshot: connections open (and how many in their handshake), lines
 *    acknowledged, descriptors open, heap bytes in use (glibc).
 *
 * Exit status 0 after a graceful shutdown, 1 on a start-up error, 2 for bad usage.
 */
#define _GNU_SOURCE

#include <rill/rill.h>

#include <errno.h>
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define PROG           "epoll_server"
#define LINES_PER_WAKE 64
#define OUT_CAP        512 /* reply bytes held per connection */
#define REPLY_MAX      48  /* "SEQ CHECKSUM\n" fits easily */
#define LINGER_MS      1000
#define PAUSE_MS       100 /* accepting pauses this long after an accept error */

enum conn_state { HANDSHAKE, OPEN, CLOSING, LINGER };

enum end_reason { END_PEER, END_IDLE, END_HANDSHAKE, END_SHUTDOWN, END_ERROR, END_COUNT };

struct conn {
    rill_stream *s; /* lines > tls > tcp */
    int fd;
    uint32_t events; /* registered with epoll */
    enum conn_state state;
    enum end_reason reason;
    bool ready;        /* on the ready list */
    bool notified;     /* close_notify sent */
    bool error_queued; /* the last reply held is an error, not an acknowledgement */
    struct conn *next_ready;
    struct conn *prev, *next; /* all connections */
    uint64_t id;
    uint64_t seq; /* lines answered */
    size_t out_len, out_off;
    char out[OUT_CAP];
};

struct server {
    int ep;
    int sigfd;
    rill_listener *listener;
    bool listener_watched;
    rill_timers *timers;
    int pause_key; /* the listener's timer key while accepting is paused */
    struct conn *all;
    struct conn *ready;
    size_t open;
    size_t handshaking; /* of them, still in their handshake */
    uint64_t accepted;
    uint64_t ended[END_COUNT];
    uint64_t lines;
    bool stopping;
    int64_t grace_deadline;
    /* options */
    int handshake_ms, idle_ms, grace_ms;
    size_t max_conns, max_line;
    bool verbose;
};

static const char *const reason_names[END_COUNT] = { "closed by the client", "idle",
                                                     "handshake timeouts", "cut at shutdown",
                                                     "errors" };

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

static void watch(struct server *sv, struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = { .events = events, .data.ptr = c };
    int op = c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(sv->ep, op, c->fd, &ev) == 0)
        c->events = events;
    else
        fprintf(stderr, PROG ": epoll_ctl: %s\n", strerror(errno));
}

/* Wait for what the last RILL_WANT_* of the stream needs. */
static void watch_wanted(struct server *sv, struct conn *c)
{
    int fd = -1;
    short events = POLLIN;
    if (rill_poll_info(c->s, &fd, &events) != RILL_OK)
        events = POLLIN;
    watch(sv, c, (events & POLLOUT ? EPOLLOUT : 0u) | (events & POLLIN ? EPOLLIN : 0u));
}

static void set_deadline(struct server *sv, struct conn *c, int ms)
{
    int64_t dl = rill_now_ms() + ms;
    if (sv->stopping && (c->state == HANDSHAKE || c->state == OPEN) && sv->grace_deadline < dl)
        dl = sv->grace_deadline;
    if (rill_timers_set(sv->timers, c, dl) != RILL_OK) {
        /* Without a deadline the connection could live forever: refuse to keep it. */
        c->reason = END_ERROR;
        c->state = LINGER;
    }
}

static void conn_free(struct server *sv, struct conn *c)
{
    rill_timers_remove(sv->timers, c);
    for (struct conn **r = &sv->ready; c->ready && *r; r = &(*r)->next_ready) {
        if (*r == c) {
            *r = c->next_ready;
            break;
        }
    }
    if (c->events)
        epoll_ctl(sv->ep, EPOLL_CTL_DEL, c->fd, NULL);
    /* Every closing message was sent (or given up on) before: close without waiting. */
    (void)rill_close(c->s);
    sv->ended[c->reason]++;
    if (c->state == HANDSHAKE)
        sv->handshaking--;
    if (c->prev)
        c->prev->next = c->next;
    else
        sv->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    sv->open--;
    free(c);
}

static void fail(struct server *sv, struct conn *c, enum end_reason why, const char *what)
{
    if (sv->verbose && what)
        fprintf(stderr, PROG ": connection %" PRIu64 ": %s\n", c->id, what);
    c->reason = why;
    c->state = LINGER;
    c->out_len = c->out_off = 0;
}

/* Start the orderly end: flush replies, close_notify, then wait for the client to close. */
static void begin_close(struct server *sv, struct conn *c, enum end_reason why)
{
    c->reason = why;
    c->state = CLOSING;
    set_deadline(sv, c, LINGER_MS);
}

/* Write held replies; one counts as acknowledged when its LF is written. RILL_OK: none left. */
static rill_status flush_out(struct server *sv, struct conn *c)
{
    while (c->out_off < c->out_len) {
        size_t n = 0;
        rill_status st = rill_write(c->s, c->out + c->out_off, c->out_len - c->out_off, &n);
        if (st != RILL_OK)
            return st;
        for (size_t i = c->out_off; i < c->out_off + n; i++)
            sv->lines += c->out[i] == '\n';
        c->out_off += n;
        if (c->error_queued && c->out_off == c->out_len)
            sv->lines--; /* that LF ended the error message */
    }
    c->out_len = c->out_off = 0;
    return RILL_OK;
}

static void queue_reply(struct conn *c, const char *text, size_t len)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_len = c->out_off = 0;
    if (c->out_off > 0 && c->out_len + len > OUT_CAP) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
}

/* One connection's work for this wake. Returns false when the connection was freed. */
static bool step(struct server *sv, struct conn *c)
{
    rill_status st = RILL_OK;
    if (c->state == HANDSHAKE) {
        st = rill_tls_handshake(c->s);
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            watch_wanted(sv, c);
            return true;
        }
        if (st != RILL_OK) {
            fail(sv, c, END_ERROR, rill_errmsg(c->s));
            conn_free(sv, c);
            return false;
        }
        c->state = OPEN;
        sv->handshaking--;
        set_deadline(sv, c, sv->idle_ms);
    }
    if (c->state == OPEN) {
        bool got_line = false;
        int budget = LINES_PER_WAKE;
        for (;;) {
            st = flush_out(sv, c);
            if (st != RILL_OK)
                break;
            if (budget-- == 0)
                break;
            const char *line = NULL;
            size_t len = 0;
            st = rill_read_line(c->s, &line, &len);
            if (st == RILL_OK) {
                char reply[REPLY_MAX];
                int n = snprintf(reply, sizeof reply, "%" PRIu64 " %016" PRIx64 "\n", c->seq + 1,
                                 fnv1a(line, len));
                queue_reply(c, reply, (size_t)n);
                c->seq++;
                got_line = true;
                continue;
            }
            if (st == RILL_E_LINE_TOO_LONG) {
                static const char msg[] = "error: line too long\n";
                queue_reply(c, msg, sizeof msg - 1);
                c->error_queued = true;
                begin_close(sv, c, END_ERROR);
            } else if (st == RILL_EOF) {
                begin_close(sv, c, END_PEER);
            }
            break;
        }
        if (c->state == OPEN) {
            if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
                if (got_line)
                    set_deadline(sv, c, sv->idle_ms);
                if (c->out_len == 0)
                    (void)rill_shrink(c->s);
                watch_wanted(sv, c);
                return true;
            }
            if (st == RILL_OK) { /* out of budget with lines left: run again before waiting */
                if (got_line)
                    set_deadline(sv, c, sv->idle_ms);
                if (!c->ready) {
                    c->ready = true;
                    c->next_ready = sv->ready;
                    sv->ready = c;
                }
                return true;
            }
            fail(sv, c, END_ERROR, rill_errmsg(c->s));
        }
    }
    if (c->state == CLOSING) {
        st = flush_out(sv, c);
        if (st == RILL_OK)
            st = rill_shutdown(c->s);
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            watch_wanted(sv, c);
            return true;
        }
        if (st == RILL_OK) {
            c->state = LINGER;
            c->notified = true;
        } else
            fail(sv, c, c->reason == END_PEER ? END_ERROR : c->reason, rill_errmsg(c->s));
    }
    if (c->state == LINGER && c->notified) {
        /* Read what the client still sends (discarded) until it closes too. */
        for (;;) {
            char sink[4096];
            size_t n = 0;
            st = rill_read(c->s, sink, sizeof sink, &n);
            if (st == RILL_OK)
                continue;
            if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
                watch_wanted(sv, c);
                return true;
            }
            break;
        }
    }
    conn_free(sv, c);
    return false;
}

static void on_timer(struct server *sv, struct conn *c)
{
    switch (c->state) {
    case HANDSHAKE:
        fail(sv, c, sv->stopping ? END_SHUTDOWN : END_HANDSHAKE, NULL);
        conn_free(sv, c);
        return;
    case OPEN:
        begin_close(sv, c, sv->stopping ? END_SHUTDOWN : END_IDLE);
        (void)step(sv, c);
        return;
    case CLOSING:
    case LINGER:
        /* The client took too long to read its replies or to close: give up on it. */
        conn_free(sv, c);
        return;
    }
}

static void listener_watch(struct server *sv, bool on)
{
    if (!sv->listener || sv->listener_watched == on)
        return;
    int fd = rill_listener_fd(sv->listener);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(sv->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) == 0)
        sv->listener_watched = on;
}

static void on_listener(struct server *sv)
{
    while (sv->listener) {
        if (sv->open >= sv->max_conns) {
            /* Resumed by conn_free's caller when a connection ends (see the main loop). */
            listener_watch(sv, false);
            return;
        }
        rill_stream *tls = NULL;
        rill_error err;
        rill_status st = rill_accept(sv->listener, 0, &tls, &err);
        if (st == RILL_WANT_READ)
            return;
        if (st != RILL_OK) {
            fprintf(stderr, PROG ": %s (accepting again in %d ms)\n", err.msg, PAUSE_MS);
            listener_watch(sv, false);
            if (rill_timers_set(sv->timers, &sv->pause_key, rill_now_ms() + PAUSE_MS) != RILL_OK)
                listener_watch(sv, true);
            return;
        }
        struct conn *c = calloc(1, sizeof *c);
        rill_stream *lines = NULL;
        if (!c || rill_lines_new(tls, sv->max_line, RILL_EOL_LF, 0, &lines) != RILL_OK) {
            fprintf(stderr, PROG ": out of memory for a connection\n");
            free(c);
            (void)rill_close(tls);
            continue;
        }
        c->s = lines;
        c->fd = rill_fd(lines);
        c->id = ++sv->accepted;
        c->state = HANDSHAKE;
        c->next = sv->all;
        if (sv->all)
            sv->all->prev = c;
        sv->all = c;
        sv->open++;
        sv->handshaking++;
        set_deadline(sv, c, sv->handshake_ms);
        (void)step(sv, c);
    }
}

static void stop_accepting(struct server *sv)
{
    if (sv->stopping)
        return;
    sv->stopping = true;
    sv->grace_deadline = rill_now_ms() + sv->grace_ms;
    listener_watch(sv, false);
    rill_listener_free(sv->listener);
    sv->listener = NULL;
    rill_timers_remove(sv->timers, &sv->pause_key);
    /* Pull every deadline in to the end of the grace period at the latest. */
    for (struct conn *c = sv->all; c; c = c->next) {
        int64_t dl = 0;
        if ((c->state == HANDSHAKE || c->state == OPEN) &&
            (!rill_timers_get(sv->timers, c, &dl) || dl > sv->grace_deadline) &&
            rill_timers_set(sv->timers, c, sv->grace_deadline) != RILL_OK)
            fail(sv, c, END_ERROR, "out of memory for a deadline");
    }
    printf(PROG ": stopping: %zu connections open, grace %d ms\n", sv->open, sv->grace_ms);
    fflush(stdout);
}

static void print_stats(struct server *sv)
{
    long long heap = -1;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    heap = (long long)mi.uordblks;
#endif
    printf(PROG ": stats: %zu connections open, %zu in handshake, %" PRIu64 " accepted, %" PRIu64
                " lines acknowledged, %d descriptors open, heap %lld bytes\n",
           sv->open, sv->handshaking, sv->accepted, sv->lines, count_fds(), heap);
    fflush(stdout);
}

static void on_signal(struct server *sv)
{
    struct signalfd_siginfo si;
    while (read(sv->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGUSR1)
            print_stats(sv);
        else
            stop_accepting(sv);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " --cert CHAIN.pem --key KEY.pem [--port N] [--addr A]"
                    " [--handshake-ms N] [--idle-ms N] [--grace-ms N] [--max-conns N]"
                    " [--max-line N] [--reuseport] [-v]\n");
    exit(2);
}

static long number(const char *s, long min, long max)
{
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || *end || v < min || v > max)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    struct server sv = { .handshake_ms = 10000,
                         .idle_ms = 60000,
                         .grace_ms = 5000,
                         .max_conns = 100000,
                         .max_line = 1024,
                         .ep = -1,
                         .sigfd = -1 };
    const char *cert = NULL, *key = NULL, *addr = "127.0.0.1";
    uint16_t port = 0;
    bool reuseport = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-v")) {
            sv.verbose = true;
            continue;
        }
        if (!strcmp(a, "--reuseport")) {
            reuseport = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--cert"))
            cert = v;
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--addr"))
            addr = v;
        else if (!strcmp(a, "--port"))
            port = (uint16_t)number(v, 0, 65535);
        else if (!strcmp(a, "--handshake-ms"))
            sv.handshake_ms = (int)number(v, 1, INT_MAX / 2);
        else if (!strcmp(a, "--idle-ms"))
            sv.idle_ms = (int)number(v, 1, INT_MAX / 2);
        else if (!strcmp(a, "--grace-ms"))
            sv.grace_ms = (int)number(v, 0, INT_MAX / 2);
        else if (!strcmp(a, "--max-conns"))
            sv.max_conns = (size_t)number(v, 1, 10000000);
        else if (!strcmp(a, "--max-line"))
            sv.max_line = (size_t)number(v, 1, 1 << 20);
        else
            usage();
    }
    if (!cert || !key)
        usage();

    /* Many connections, one descriptor each: take the whole hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    int status = 1;
    rill_error err;
    rill_tls_config *cfg = NULL;
    if (rill_tls_config_new(&cfg, &err) != RILL_OK ||
        rill_tls_config_set_cert_file(cfg, cert, key, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.backlog = 4096;
    lo.reuseport = reuseport;
    lo.stream.tls = cfg;
    lo.stream.read_timeout_ms = 0; /* non-blocking: the loop keeps the deadlines */
    lo.stream.write_timeout_ms = 0;
    if (rill_listen(addr, port, &lo, &sv.listener, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    if (rill_timers_new(&sv.timers) != RILL_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sv.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    sv.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &sv };
    if (sv.sigfd < 0 || sv.ep < 0 || epoll_ctl(sv.ep, EPOLL_CTL_ADD, sv.sigfd, &sev) < 0) {
        fprintf(stderr, PROG ": signalfd/epoll: %s\n", strerror(errno));
        goto out;
    }
    listener_watch(&sv, true);
    printf(PROG ": listening on %s:%u\n", addr, (unsigned)rill_listener_port(sv.listener));
    fflush(stdout);

    enum { MAX_EVENTS = 256 };
    struct epoll_event evs[MAX_EVENTS];
    while (!sv.stopping || sv.open > 0) {
        int timeout = sv.ready ? 0 : rill_timers_timeout(sv.timers, rill_now_ms());
        int n = epoll_wait(sv.ep, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": epoll_wait: %s\n", strerror(errno));
            goto out;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &sv)
                on_signal(&sv);
            else if (!p)
                on_listener(&sv);
            else
                (void)step(&sv, p);
        }
        /* Connections with decrypted bytes left over from their budget (conn_free takes a
         * connection off this list). */
        struct conn *r = sv.ready;
        sv.ready = NULL;
        while (r) {
            struct conn *next = r->next_ready;
            r->ready = false;
            (void)step(&sv, r);
            r = next;
        }
        int64_t now = rill_now_ms();
        void *k;
        while ((k = rill_timers_expire(sv.timers, now)) != NULL) {
            if (k == &sv.pause_key)
                listener_watch(&sv, true);
            else
                on_timer(&sv, k);
        }
        if (sv.listener && !sv.listener_watched && sv.open < sv.max_conns &&
            !rill_timers_get(sv.timers, &sv.pause_key, NULL))
            listener_watch(&sv, true);
    }
    printf(PROG ": stopped: %" PRIu64 " connections (", sv.accepted);
    for (int i = 0; i < END_COUNT; i++)
        printf("%s%" PRIu64 " %s", i ? ", " : "", sv.ended[i], reason_names[i]);
    printf("), %" PRIu64 " lines acknowledged\n", sv.lines);
    status = 0;
out:
    rill_listener_free(sv.listener);
    for (struct conn *c = sv.all, *next; c; c = next) {
        next = c->next;
        c->reason = END_ERROR;
        conn_free(&sv, c);
    }
    rill_timers_free(sv.timers);
    rill_tls_config_free(cfg);
    if (sv.ep >= 0)
        close(sv.ep);
    if (sv.sigfd >= 0)
        close(sv.sigfd);
    return status;
}
