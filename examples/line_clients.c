/* SPDX-License-Identifier: MIT */
/*
 * line_clients — many TLS clients of epoll_server's line protocol from one thread, with epoll.
 *
 *     line_clients [--cafile CA.pem] [--count N] [--lines K] [--window W] [--until-closed]
 *                  [--loris L] [--seed S] ADDR PORT
 *
 * Opens N connections (default 1000) to ADDR:PORT (numeric), at most W at once (default all),
 * each verifying the server as "localhost" against CA.pem (else the system store). Each
 * connection sends K lines (default 5) of its own random text, one at a time, and checks every
 * answer: "SEQ CHECKSUM" with the line's number and the FNV-1a 64-bit hash of its bytes. Then it
 * closes the TLS way: close_notify (rill_shutdown), read until the server's close_notify
 * (RILL_EOF), close.
 *
 * --until-closed: each connection sends lines until the server ends the connection (its idle
 * or shutdown deadline), and must get a clean close_notify (RILL_EOF), never a reset or a
 * truncation; the count of answers received is what the server acknowledged.
 * --loris L: also open L raw TCP connections that send three bytes of a TLS record header and
 * nothing more, and report when the server cut each of them.
 *
 * Output (stdout):
 *     line_clients: 1000/1000 ok in 812 ms, 5000 lines acknowledged, slowest 95 ms
 *     line_clients: loris: 50/50 cut after 1001..1013 ms
 * and the first failures on stderr ("line_clients: connection 7: tls: ..."). Exit status 0 when
 * every connection checked out, 1 otherwise, 2 for bad usage.
 */
#define _GNU_SOURCE

#include <rill/rill.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROG       "line_clients"
#define MAX_SHOWN  10
#define LINE_MAX_B 200

enum cstate { C_HANDSHAKE, C_SEND, C_READ, C_SHUTDOWN, C_DRAIN, C_DONE };

struct client {
    int idx;
    rill_stream *s;
    int fd;
    uint32_t events;
    enum cstate state;
    int sent, acked;
    uint64_t rng;
    uint64_t want; /* checksum of the line in flight */
    size_t line_len, line_off;
    char line[LINE_MAX_B + 1];
    int64_t started_ms;
};

struct run {
    int ep;
    rill_tls_config *cfg;
    const char *addr;
    uint16_t port;
    int lines;
    bool until_closed;
    int ok, failed, shown;
    uint64_t acked;
    int64_t slowest_ms;
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

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void make_line(struct client *c)
{
    size_t len = 1 + (size_t)(next_rand(&c->rng) % LINE_MAX_B);
    for (size_t i = 0; i < len; i++)
        c->line[i] = (char)(' ' + next_rand(&c->rng) % 95); /* printable ASCII, no LF */
    c->want = fnv1a(c->line, len);
    c->line[len] = '\n';
    c->line_len = len + 1;
    c->line_off = 0;
}

static void watch(struct run *r, struct client *c)
{
    int fd = -1;
    short ev = POLLIN;
    if (rill_poll_info(c->s, &fd, &ev) != RILL_OK)
        ev = POLLIN;
    uint32_t events = (ev & POLLOUT ? EPOLLOUT : 0u) | (ev & POLLIN ? EPOLLIN : 0u);
    if (events == c->events)
        return;
    struct epoll_event e = { .events = events, .data.ptr = c };
    if (epoll_ctl(r->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) == 0)
        c->events = events;
}

static void finish(struct run *r, struct client *c, const char *why)
{
    if (why) {
        r->failed++;
        if (r->shown++ < MAX_SHOWN)
            fprintf(stderr, PROG ": connection %d: %s\n", c->idx, why);
    } else {
        r->ok++;
        int64_t took = rill_now_ms() - c->started_ms;
        if (took > r->slowest_ms)
            r->slowest_ms = took;
    }
    r->acked += (uint64_t)c->acked;
    if (c->events)
        epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
    (void)rill_close(c->s);
    c->s = NULL;
    c->state = C_DONE;
}

static bool start(struct run *r, struct client *c)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 10000;
    rill_stream *tcp = NULL, *tls = NULL;
    rill_error err;
    c->started_ms = rill_now_ms();
    if (rill_tcp_connect_addr(r->addr, r->port, &o, &tcp, &err) != RILL_OK) {
        c->s = NULL;
        r->failed++;
        if (r->shown++ < MAX_SHOWN)
            fprintf(stderr, PROG ": connection %d: %s\n", c->idx, err.msg);
        c->state = C_DONE;
        return false;
    }
    if (rill_set_timeouts(tcp, 0, 0) != RILL_OK ||
        rill_tls_client(tcp, r->cfg, "localhost", 0, &tls) != RILL_OK) {
        c->s = tcp;
        finish(r, c, rill_errmsg(tcp));
        return false;
    }
    if (rill_lines_new(tls, 1024, RILL_EOL_LF, 0, &c->s) != RILL_OK) {
        c->s = tls;
        finish(r, c, rill_errmsg(tls));
        return false;
    }
    c->fd = rill_fd(c->s);
    c->state = C_HANDSHAKE;
    return true;
}

/* Run client @p c as far as it goes without waiting. */
static void step(struct run *r, struct client *c)
{
    char why[RILL_ERRMSG_MAX + 64];
    rill_status st = RILL_OK;
    for (;;) {
        switch (c->state) {
        case C_HANDSHAKE:
            st = rill_tls_handshake(c->s);
            if (st != RILL_OK)
                goto wait_or_fail;
            c->state = C_SEND;
            make_line(c);
            continue;
        case C_SEND:
            while (c->line_off < c->line_len) {
                size_t n = 0;
                st = rill_write(c->s, c->line + c->line_off, c->line_len - c->line_off, &n);
                if (st != RILL_OK)
                    goto wait_or_fail;
                c->line_off += n;
            }
            c->sent++;
            c->state = C_READ;
            continue;
        case C_READ: {
            const char *line = NULL;
            size_t len = 0;
            st = rill_read_line(c->s, &line, &len);
            if (st != RILL_OK)
                goto wait_or_fail;
            char expect[48];
            snprintf(expect, sizeof expect, "%d %016" PRIx64, c->sent, c->want);
            if (len != strlen(expect) || memcmp(line, expect, len) != 0) {
                snprintf(why, sizeof why, "answer \"%.*s\" to line %d, expected \"%s\"",
                         (int)(len > 60 ? 60 : len), line, c->sent, expect);
                finish(r, c, why);
                return;
            }
            c->acked++;
            if (r->until_closed || c->sent < r->lines) {
                make_line(c);
                c->state = C_SEND;
            } else {
                c->state = C_SHUTDOWN;
            }
            continue;
        }
        case C_SHUTDOWN:
            st = rill_shutdown(c->s);
            if (st != RILL_OK)
                goto wait_or_fail;
            c->state = C_DRAIN;
            continue;
        case C_DRAIN: {
            char buf[256];
            size_t n = 0;
            st = rill_read(c->s, buf, sizeof buf, &n);
            if (st == RILL_OK) {
                snprintf(why, sizeof why, "%zu unexpected bytes after the last answer", n);
                finish(r, c, why);
                return;
            }
            if (st == RILL_EOF) {
                finish(r, c, NULL);
                return;
            }
            goto wait_or_fail;
        }
        case C_DONE: return;
        }
    }
wait_or_fail:
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
        watch(r, c);
        return;
    }
    if (st == RILL_EOF && r->until_closed && (c->state == C_READ || c->state == C_SEND)) {
        /* The server ended the connection with close_notify: answer in kind. */
        c->state = C_SHUTDOWN;
        st = rill_shutdown(c->s);
        if (st == RILL_OK || st == RILL_E_CLOSED || st == RILL_E_RESET) {
            finish(r, c, NULL);
            return;
        }
        if (st == RILL_WANT_WRITE || st == RILL_WANT_READ) {
            c->state = C_SHUTDOWN;
            watch(r, c);
            return;
        }
    }
    if (st == RILL_EOF) {
        snprintf(why, sizeof why, "the server closed after %d of %d answers", c->acked, r->lines);
        finish(r, c, why);
        return;
    }
    finish(r, c, rill_errmsg(c->s));
}

/* ---- slow-loris peers ---- */

struct loris {
    int fd;
    int64_t cut_ms; /* -1 while open */
};

static int loris_open(const char *addr, uint16_t port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* The start of a TLS handshake record, and then nothing. */
    static const unsigned char head[3] = { 0x16, 0x03, 0x01 };
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        send(fd, head, sizeof head, MSG_NOSIGNAL) != (ssize_t)sizeof head) {
        close(fd);
        return -1;
    }
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--cafile CA.pem] [--count N] [--lines K] [--window W]"
                    " [--until-closed] [--loris L] [--seed S] ADDR PORT\n");
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
    struct run r = { .ep = -1, .lines = 5 };
    const char *cafile = NULL;
    long count = 1000, window = 0, nloris = 0;
    uint64_t seed = 1;
    int pos = 0;
    const char *args[2] = { NULL, NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!a)
            usage();
        if (!strcmp(a, "--until-closed")) {
            r.until_closed = true;
        } else if (!strcmp(a, "--cafile") && v) {
            cafile = v;
            i++;
        } else if (!strcmp(a, "--count") && v) {
            count = number(v, 0, 1000000);
            i++;
        } else if (!strcmp(a, "--lines") && v) {
            r.lines = (int)number(v, 1, 1000000);
            i++;
        } else if (!strcmp(a, "--window") && v) {
            window = number(v, 1, 1000000);
            i++;
        } else if (!strcmp(a, "--loris") && v) {
            nloris = number(v, 0, 100000);
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            seed = (uint64_t)number(v, 1, LONG_MAX);
            i++;
        } else if (a[0] != '-' && pos < 2) {
            args[pos++] = a;
        } else {
            usage();
        }
    }
    if (pos != 2)
        usage();
    r.addr = args[0];
    r.port = (uint16_t)number(args[1], 1, 65535);
    if (window == 0 || window > count)
        window = count;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    int status = 1;
    rill_error err;
    struct client *cs = calloc((size_t)count + 1, sizeof *cs);
    struct loris *ls = calloc((size_t)nloris + 1, sizeof *ls);
    if (!cs || !ls) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    if (rill_tls_config_new(&r.cfg, &err) != RILL_OK ||
        (cafile && rill_tls_config_set_ca_file(r.cfg, cafile, &err) != RILL_OK)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    if (r.ep < 0) {
        fprintf(stderr, PROG ": epoll_create1: %s\n", strerror(errno));
        goto out;
    }
    int64_t t0 = rill_now_ms();
    for (long i = 0; i < nloris; i++) {
        ls[i].cut_ms = -1;
        ls[i].fd = loris_open(r.addr, r.port);
        if (ls[i].fd < 0) {
            fprintf(stderr, PROG ": loris %ld: cannot connect: %s\n", i, strerror(errno));
            goto out;
        }
        struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &ls[i] };
        epoll_ctl(r.ep, EPOLL_CTL_ADD, ls[i].fd, &e);
    }
    long next = 0, active = 0, lorises_open = nloris;
    enum { MAX_EVENTS = 256 };
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        while (active < window && next < count) {
            struct client *c = &cs[next];
            c->idx = (int)next;
            c->rng = seed * 0x9e3779b97f4a7c15u + (uint64_t)next + 1;
            next++;
            if (start(&r, c)) {
                active++;
                step(&r, c);
                if (c->state == C_DONE)
                    active--;
            }
        }
        if (active == 0 && next == count && lorises_open == 0)
            break;
        int n = epoll_wait(r.ep, evs, MAX_EVENTS, 30000);
        if (n == 0) {
            fprintf(stderr, PROG ": nothing happened for 30 s; %ld connections stuck\n", active);
            goto out;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p >= (void *)ls && p < (void *)(ls + nloris)) {
                struct loris *l = p;
                char b[64];
                if (l->cut_ms < 0 && recv(l->fd, b, sizeof b, MSG_DONTWAIT) <= 0) {
                    l->cut_ms = rill_now_ms() - t0;
                    epoll_ctl(r.ep, EPOLL_CTL_DEL, l->fd, NULL);
                    close(l->fd);
                    l->fd = -1;
                    lorises_open--;
                }
                continue;
            }
            struct client *c = p;
            step(&r, c);
            if (c->state == C_DONE)
                active--;
        }
    }
    printf(PROG ": %d/%ld ok in %lld ms, %" PRIu64 " lines acknowledged, slowest %lld ms\n", r.ok,
           count, (long long)(rill_now_ms() - t0), r.acked, (long long)r.slowest_ms);
    if (nloris) {
        int64_t lo = INT64_MAX, hi = 0;
        for (long i = 0; i < nloris; i++) {
            lo = ls[i].cut_ms < lo ? ls[i].cut_ms : lo;
            hi = ls[i].cut_ms > hi ? ls[i].cut_ms : hi;
        }
        printf(PROG ": loris: %ld/%ld cut after %lld..%lld ms\n", nloris, nloris, (long long)lo,
               (long long)hi);
    }
    status = r.failed ? 1 : 0;
out:
    if (cs)
        for (long i = 0; i < count; i++)
            if (cs[i].s)
                (void)rill_close(cs[i].s);
    if (ls)
        for (long i = 0; i < nloris; i++)
            if (ls[i].fd >= 0 && ls[i].cut_ms < 0)
                close(ls[i].fd);
    free(cs);
    free(ls);
    rill_tls_config_free(r.cfg);
    if (r.ep >= 0)
        close(r.ep);
    return status;
}
