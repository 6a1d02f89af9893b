/*
 * rill_connect: resolve, then race connect attempts over the addresses (RFC 8305, Happy
 * Eyeballs) under one deadline. An attempt starts at once, the next one after the attempt delay
 * or as soon as one fails; the first to connect wins and every other socket is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolver.h"

#define MAX_IN_FLIGHT_CAP 16

struct attempt {
    int fd;
    size_t addr;
};

struct race {
    const char *host;
    uint16_t port;
    const rill_connect_opts *opts;
    int64_t start_ms;
    rill_addr *addrs;
    size_t count;
    struct attempt live[MAX_IN_FLIGHT_CAP];
    size_t in_flight;
    size_t next;
    char failures[RILL_ERRMSG_MAX];
    size_t failures_len;
    rill_status worst; /* the status reported when every attempt failed */
    size_t winner;     /* index of the address that connected */
    bool failed_now;   /* the attempt just started failed at once */
};

static void emit(const struct race *r, rill_connect_event_type type, const char *addr, size_t count,
                 rill_status status, const char *message)
{
    if (!r->opts->on_event)
        return;
    rill_connect_event ev = {
        type, r->host, addr, count, status, message, rilli_now_ms() - r->start_ms, 0
    };
    r->opts->on_event(r->opts->on_event_arg, &ev);
}

/* The address without its port, as the aggregated message names it. */
static void ip_text(const rill_addr *a, char *buf, size_t len)
{
    const char *t = a->text;
    size_t n = strlen(t);
    const char *colon = strrchr(t, ':');
    if (colon)
        n = (size_t)(colon - t);
    if (t[0] == '[' && n >= 2) {
        t++;
        n -= 2;
    }
    snprintf(buf, len, "%.*s", (int)n, t);
}

static void record_failure(struct race *r, size_t idx, int errnum)
{
    char ip[64];
    ip_text(&r->addrs[idx], ip, sizeof ip);
    const char *why = rilli_errno_text(errnum);
    if (r->failures_len < sizeof r->failures) {
        int n = snprintf(r->failures + r->failures_len, sizeof r->failures - r->failures_len,
                         "%s%s: %s", r->failures_len ? "; " : "", ip, why);
        if (n > 0)
            r->failures_len += (size_t)n;
    }
    rill_status st = rilli_status_from_errno(errnum);
    /* Refused everywhere is "refused"; anything else makes the whole a connect failure. */
    if (r->worst == RILL_OK || (r->worst == RILL_E_REFUSED && st != RILL_E_REFUSED))
        r->worst = st == RILL_E_REFUSED ? RILL_E_REFUSED : RILL_E_CONNECT;
    emit(r, RILL_EV_ATTEMPT_FAILED, r->addrs[idx].text, 0, st, why);
}

static void drop_attempt(struct race *r, size_t slot)
{
    close(r->live[slot].fd);
    r->live[slot] = r->live[--r->in_flight];
}

/* Start the next address; returns a connected fd (immediate success) or -1. */
static int start_next(struct race *r, rill_error *err, rill_status *fatal)
{
    size_t idx = r->next++;
    const rill_addr *a = &r->addrs[idx];
    emit(r, RILL_EV_ATTEMPT, a->text, 0, RILL_OK, NULL);
    int fd =
        socket(a->family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int e = errno;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            /* Out of descriptors or memory is the process's problem, not this address's. */
            *fatal =
                rilli_error_set(err, e == ENOMEM ? RILL_E_NOMEM : RILL_E_IO, e,
                                "connect: %.100s:%u: cannot create a socket", r->host, r->port);
            return -1;
        }
        record_failure(r, idx, e); /* e.g. EAFNOSUPPORT: this family is dead, try the next */
        r->failed_now = true;
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)(const void *)a->sa, a->sa_len) == 0) {
        r->winner = idx;
        return fd;
    }
    int e = errno;
    if (e == EINPROGRESS || e == EINTR) {
        r->live[r->in_flight++] = (struct attempt){ fd, idx };
        return -1;
    }
    close(fd);
    record_failure(r, idx, e);
    r->failed_now = true;
    return -1;
}

static int race(struct race *r, int64_t deadline, rill_error *err, rill_status *fatal)
{
    int delay = r->opts->attempt_delay_ms;
    size_t cap = r->opts->max_in_flight < 1 ? 1 : (size_t)r->opts->max_in_flight;
    if (cap > MAX_IN_FLIGHT_CAP)
        cap = MAX_IN_FLIGHT_CAP;
    if (delay < 0)
        cap = 1;         /* no racing: one address at a time */
    int64_t next_at = 0; /* when the next attempt may start (monotonic ms) */
    for (;;) {
        int64_t now = rilli_now_ms();
        bool more = r->next < r->count;
        if (more && r->in_flight < cap && (r->in_flight == 0 || now >= next_at)) {
            r->failed_now = false;
            int fd = start_next(r, err, fatal);
            if (fd >= 0 || *fatal != RILL_OK)
                return fd;
            /* A failure at once starts the next address at once, as a failure later does. */
            next_at = r->failed_now ? 0 : rilli_now_ms() + (delay > 0 ? delay : 0);
            continue;
        }
        if (r->in_flight == 0)
            return -1; /* every address failed */
        int left = rilli_remaining_ms(deadline);
        if (left == 0)
            return -1;
        int wait_ms = left;
        if (more && r->in_flight < cap) {
            int64_t until = next_at - now;
            if (until < 0)
                until = 0;
            if (wait_ms < 0 || until < wait_ms)
                wait_ms = (int)until;
        }
        struct pollfd pfd[MAX_IN_FLIGHT_CAP];
        for (size_t i = 0; i < r->in_flight; i++)
            pfd[i] = (struct pollfd){ .fd = r->live[i].fd, .events = POLLOUT };
        int n = poll(pfd, r->in_flight, wait_ms);
        if (n < 0 && errno != EINTR) {
            *fatal = rilli_error_set(err, RILL_E_IO, errno, "connect: poll failed");
            return -1;
        }
        for (size_t i = r->in_flight; n > 0 && i-- > 0;) {
            if (!pfd[i].revents)
                continue;
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
                soerr = errno;
            if (soerr == 0) {
                int fd = r->live[i].fd;
                r->winner = r->live[i].addr;
                r->live[i] = r->live[--r->in_flight]; /* the winner leaves the list */
                return fd;
            }
            record_failure(r, r->live[i].addr, soerr);
            drop_attempt(r, i);
            next_at = 0; /* a failure starts the next address at once */
        }
    }
}

RILL_API rill_status rill_connect(rill_ctx *ctx, const char *host, uint16_t port,
                                  const rill_connect_opts *opts, rill_stream **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "connect: out is NULL");
    rill_connect_opts defaults;
    if (!opts) {
        rill_connect_opts_init(&defaults);
        opts = &defaults;
    }
    rill_status st = rilli_check_connect_opts("connect", opts, err);
    if (st != RILL_OK)
        return st;
    if (opts->family != 0 && opts->family != 4 && opts->family != 6)
        return rilli_error_set(err, RILL_E_INVALID, 0, "connect: family %d is not 0, 4 or 6",
                               opts->family);
    struct race r = {
        .host = host ? host : "", .port = port, .opts = opts, .start_ms = rilli_now_ms()
    };
    int64_t deadline = rilli_deadline(opts->timeout_ms);
    emit(&r, RILL_EV_RESOLVING, NULL, 0, RILL_OK, NULL);
    st = rilli_resolve(ctx, host, port, opts->family, rilli_remaining_ms(deadline), &r.addrs,
                       &r.count, err);
    if (st != RILL_OK)
        return st;
    emit(&r, RILL_EV_RESOLVED, NULL, r.count, RILL_OK, NULL);

    rill_status fatal = RILL_OK;
    int fd = race(&r, deadline, err, &fatal);
    while (r.in_flight > 0)
        drop_attempt(&r, r.in_flight - 1); /* losers and abandoned attempts close now */
    if (fd < 0) {
        if (fatal != RILL_OK)
            st = fatal;
        else if (r.next < r.count || r.failures_len == 0 || rilli_remaining_ms(deadline) == 0)
            st = rilli_error_set(err, RILL_E_TIMEOUT, 0,
                                 "connect: %.100s:%u: timed out after %d ms%s%s%s", r.host, port,
                                 opts->timeout_ms, r.failures_len ? " (" : "", r.failures,
                                 r.failures_len ? ")" : "");
        else
            st = rilli_error_set(err, r.worst, 0, "connect: %.100s:%u: %s", r.host, port,
                                 r.failures);
        rill_addrs_free(r.addrs);
        return st;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        st = rilli_error_set(err, RILL_E_IO, errno, "connect: %.100s:%u: fcntl", r.host, port);
        close(fd);
        rill_addrs_free(r.addrs);
        return st;
    }
    rill_stream *s = NULL;
    st = rilli_sock_new(&rilli_tcp_ops, fd, false, opts, &s, err);
    if (st != RILL_OK)
        close(fd);
    else
        emit(&r, RILL_EV_CONNECTED, r.addrs[r.winner].text, 0, RILL_OK, NULL);
    rill_addrs_free(r.addrs);
    if (st == RILL_OK && opts->tls)
        st = rilli_tls_connect(ctx, r.host, port, opts, deadline, &s, err);
    if (st == RILL_OK)
        *out = s;
    return st;
}
