/* SPDX-License-Identifier: MIT */
/*
 * poll_clients — several HTTPS GETs at once, in one thread, driven by poll().
 *
 *     poll_clients [--cafile FILE] HOST PORT PATH [PATH...]
 *
 * One stream per PATH, each "lines (CRLF) > tls > tcp" with timeouts 0, which makes every call
 * non-blocking: instead of waiting, a call returns RILL_WANT_READ or RILL_WANT_WRITE. Each
 * stream is a small state machine (handshake, send the request, status line, headers, body), and
 * one poll() loop serves them all:
 *
 *  - A call that returns RILL_WANT_* has made no progress; rill_poll_info() names the
 *    descriptor and the events to wait for. They can point the other way than the call: a TLS
 *    read may need POLLOUT, a TLS write POLLIN.
 *  - The loop does one step per stream per round, so a fast stream cannot starve the others.
 *    After a successful read, rill_pending() says whether the chain still holds bytes (a line
 *    reader's read-ahead, decrypted TLS data). Such bytes make the descriptor no more readable,
 *    so a stream with pending bytes must run again without sleeping in poll(); a stream without
 *    them can wait for POLLIN. (After a RILL_WANT_*, pending bytes may remain, e.g. the start of
 *    a line the line reader cannot return yet; the call has said it needs the descriptor, so
 *    then sleeping is right.)
 *
 * Connecting itself is blocking (rill_connect under a short deadline; the peers here are on
 * loopback); everything after it, the TLS handshake included, is multiplexed.
 *
 * Output: one line per stream, in the order of PATH, then a summary. Exit status: 0 when every
 * stream read a whole response, 1 otherwise, 2 for bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <rill/rill.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG        "poll_clients"
#define MAX_STREAMS 16
#define DEADLINE_MS 15000 /* for everything after connecting */

enum step { HANDSHAKE, SEND, FLUSH, STATUS, HEADERS, BODY, DONE, FAILED };

/* One stream and where it is in its exchange. */
struct job {
    const char *path;
    rill_stream *s; /* lines > tls > tcp; NULL once finished */
    enum step step;
    /* 1: sleeping in poll() for fd/events; 0: runs in the next round */
    int wait;
    int fd;
    short events;
    char request[1024];
    size_t request_len, sent;
    char status[128]; /* the status line */
    unsigned headers; /* header lines seen */
    unsigned long long body;
    unsigned steps; /* calls that made progress */
    char error[RILL_ERRMSG_MAX];
};

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--cafile FILE] HOST PORT PATH [PATH...] (at most %d)\n",
            MAX_STREAMS);
    exit(2);
}

static unsigned parse_port(const char *text)
{
    char *end;
    unsigned long port = strtoul(text, &end, 10);
    if (*text == '\0' || *end != '\0' || port == 0 || port > 65535)
        return 0;
    return (unsigned)port;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(struct job *j, const char *what)
{
    snprintf(j->error, sizeof j->error, "%s", what);
    j->step = FAILED;
}

/*
 * One non-blocking call on @p j's stream. Returns the call's status; on RILL_OK the job moved
 * on, on RILL_WANT_* nothing happened and the caller must wait as rill_poll_info() says.
 */
static rill_status step(struct job *j)
{
    static char chunk[16384];
    const char *line;
    size_t len, n;
    rill_status st;

    switch (j->step) {
    case HANDSHAKE:
        st = rill_tls_handshake(j->s);
        if (st == RILL_OK)
            j->step = SEND;
        break;
    case SEND:
        /* Accepted bytes are never to be repeated, even those TLS still has to send. */
        st = rill_write(j->s, j->request + j->sent, j->request_len - j->sent, &n);
        if (st == RILL_OK && (j->sent += n) == j->request_len)
            j->step = FLUSH;
        break;
    case FLUSH:
        st = rill_flush(j->s);
        if (st == RILL_OK)
            j->step = STATUS;
        break;
    case STATUS:
    case HEADERS:
        st = rill_read_line(j->s, &line, &len);
        if (st == RILL_OK && j->step == STATUS) {
            snprintf(j->status, sizeof j->status, "%.*s", (int)len, line);
            j->step = HEADERS;
        } else if (st == RILL_OK) {
            if (len == 0)
                j->step = BODY;
            else
                j->headers++;
        } else if (st == RILL_EOF) {
            fail(j, "the server closed the connection before the body");
            return st;
        }
        break;
    case BODY:
        st = rill_read(j->s, chunk, sizeof chunk, &n);
        if (st == RILL_OK)
            j->body += n;
        else if (st == RILL_EOF) {
            j->step = DONE; /* a clean TLS close: the body is whole */
            return RILL_OK;
        }
        break;
    default: return RILL_E_INVALID;
    }
    if (st < 0)
        fail(j, rill_errmsg(j->s));
    else if (st == RILL_OK)
        j->steps++;
    return st;
}

/* After a step, decide whether @p j runs again at once or sleeps in poll() until its fd is. */
static void schedule(struct job *j, rill_status st)
{
    j->wait = 0;
    if (j->step == DONE || j->step == FAILED) {
        /* Close at once: a peer may wait for our end before it serves the next connection. */
        rill_close(j->s);
        j->s = NULL;
        return;
    }
    if (st == RILL_OK) {
        /*
         * Progress. A reading stream whose chain holds no bytes would only get RILL_WANT_READ
         * from its next call: let it sleep. One with pending bytes must not sleep (poll() would
         * not wake it for bytes already read from the socket). Writing steps simply run again.
         */
        if ((j->step == STATUS || j->step == HEADERS || j->step == BODY) &&
            rill_pending(j->s) == 0) {
            j->wait = 1;
            j->events = POLLIN;
            j->fd = rill_fd(j->s);
        }
        return;
    }
    /* RILL_WANT_READ or RILL_WANT_WRITE: the chain says what it is waiting for. */
    if (rill_poll_info(j->s, &j->fd, &j->events) != RILL_OK) {
        fail(j, rill_errmsg(j->s));
        return;
    }
    j->wait = 1;
}

int main(int argc, char **argv)
{
    const char *cafile = NULL;
    int arg = 1;
    if (arg + 1 < argc && strcmp(argv[arg], "--cafile") == 0) {
        cafile = argv[arg + 1];
        arg += 2;
    }
    if (argc - arg < 3 || argc - arg - 2 > MAX_STREAMS)
        usage();
    const char *host = argv[arg];
    unsigned port = parse_port(argv[arg + 1]);
    if (port == 0)
        usage();
    size_t njobs = (size_t)(argc - arg - 2);

    static struct job jobs[MAX_STREAMS];
    int status = 1;
    rill_error err;
    rill_tls_config *cfg = NULL;
    rill_ctx *ctx = NULL;
    if (rill_tls_config_new(&cfg, &err) != RILL_OK ||
        (cafile && rill_tls_config_set_ca_file(cfg, cafile, &err) != RILL_OK) ||
        rill_ctx_new(NULL, &ctx, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }

    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = 5000;
    for (size_t i = 0; i < njobs; i++) {
        struct job *j = &jobs[i];
        j->path = argv[arg + 2 + (int)i];
        int len = snprintf(j->request, sizeof j->request,
                           "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rill-example\r\n\r\n",
                           j->path, host, port);
        if (len < 0 || (size_t)len >= sizeof j->request) {
            fail(j, "path too long");
            continue;
        }
        j->request_len = (size_t)len;

        /* Plain TCP first; TLS is added by hand so that its handshake joins the poll loop. */
        rill_stream *tcp, *tls;
        if (rill_connect(ctx, host, (uint16_t)port, &opts, &tcp, &err) != RILL_OK) {
            fail(j, err.msg);
            continue;
        }
        if (rill_tls_client(tcp, cfg, host, 0, &tls) != RILL_OK) {
            fail(j, rill_errmsg(tcp));
            rill_close(tcp);
            continue;
        }
        if (rill_lines_new(tls, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, 0, &j->s) != RILL_OK) {
            fail(j, rill_errmsg(tls));
            rill_close(tls);
            continue;
        }
        /* Timeouts 0 on the top apply to the whole chain: every call is non-blocking now. */
        if (rill_set_timeouts(j->s, 0, 0) != RILL_OK) {
            fail(j, rill_errmsg(j->s));
            continue;
        }
        j->step = HANDSHAKE;
    }

    long long deadline = now_ms() + DEADLINE_MS;
    unsigned polls = 0;
    for (;;) {
        /* Run every stream that does not wait for its descriptor: one step each. */
        size_t active = 0, sleeping = 0;
        for (size_t i = 0; i < njobs; i++) {
            struct job *j = &jobs[i];
            if (j->step == DONE || j->step == FAILED)
                continue;
            if (!j->wait)
                schedule(j, step(j));
            if (j->step != DONE && j->step != FAILED) {
                active++;
                sleeping += j->wait;
            }
        }
        if (active == 0)
            break;

        long long left = deadline - now_ms();
        if (left <= 0) {
            for (size_t i = 0; i < njobs; i++)
                if (jobs[i].step != DONE && jobs[i].step != FAILED)
                    fail(&jobs[i], "no answer within the deadline");
            break;
        }
        if (sleeping < active)
            continue; /* someone can make progress without waiting: no poll() this round */

        struct pollfd pfds[MAX_STREAMS];
        struct job *owner[MAX_STREAMS];
        nfds_t n = 0;
        for (size_t i = 0; i < njobs; i++) {
            if (jobs[i].step == DONE || jobs[i].step == FAILED)
                continue;
            pfds[n] = (struct pollfd){ .fd = jobs[i].fd, .events = jobs[i].events };
            owner[n++] = &jobs[i];
        }
        polls++;
        int ready = poll(pfds, n, (int)left);
        if (ready < 0) {
            perror(PROG ": poll");
            goto out;
        }
        /* Errors and hang-ups are left for the next call on the stream to report. */
        for (nfds_t k = 0; k < n; k++)
            if (pfds[k].revents != 0)
                owner[k]->wait = 0;
    }

    size_t ok = 0;
    for (size_t i = 0; i < njobs; i++) {
        struct job *j = &jobs[i];
        if (j->step == DONE) {
            ok++;
            printf("stream %zu %s: %s, %u header lines, body %llu bytes, %u steps\n", i, j->path,
                   j->status, j->headers, j->body, j->steps);
        } else {
            printf("stream %zu %s: failed: %s\n", i, j->path, j->error);
        }
    }
    printf("%zu of %zu streams completed, %u poll() calls\n", ok, njobs, polls);
    status = ok == njobs ? 0 : 1;

out:
    for (size_t i = 0; i < njobs; i++)
        rill_close(jobs[i].s);
    rill_ctx_free(ctx);
    rill_tls_config_free(cfg);
    return status;
}
