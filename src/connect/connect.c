/* SPDX-License-Identifier: MIT */
/*
 * The connect machine: one object per connect, driven by rill_connect_step() from the caller's
 * event loop, or by rill_connect()'s own short loop (one code path for both).
 *
 * Steps: A and AAAA are asked as separate lookups; RFC 8305 decides when to start connecting
 * (at once on a AAAA answer, a resolution delay after an early A answer); attempts alternate
 * families, a new one every attempt delay or at once when one fails, earlier ones kept
 * running, later answers joining the list; the first socket to connect wins and the others
 * close; then, with opts.tls, the handshake runs on the winner. One deadline covers it all.
 *
 * Nothing here blocks: DNS sockets and attempts are polled with a zero timeout inside a step,
 * and rill_connect_poll_info() tells the caller which one descriptor to wait on (an epoll
 * descriptor of the op's own when there are several) and for how long.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/proxy.h"
#include "resolver/resolver.h"

#define MAX_IN_FLIGHT_CAP 16
#define MIN_ATTEMPT_DELAY 10                      /* RFC 8305 section 5: never below 10 ms */
#define MAX_WAIT_FDS      (MAX_IN_FLIGHT_CAP + 2) /* attempts, the resolver's and our eventfd */

enum phase { PH_RACE, PH_PROXY, PH_TLS, PH_DONE };

struct proxy_state; /* a connect through a proxy (the proxy phase, at the end of this file) */

/* One family's lookup and the addresses it gave: [0] is IPv6 (AAAA), [1] IPv4 (A). */
struct fam {
    int family; /* 6 or 4 */
    bool wanted;
    bool done;
    rill_status status; /* of the lookup, once done */
    char reason[128];
    int64_t at_ms; /* when the answer came, since start */
    struct rilli_dns_lookup *lookup;
    rill_addr *addrs;
    size_t count;
    size_t next; /* the next address of this family to try */
};

struct attempt {
    int fd;
    rill_addr *addr; /* in its family's addrs, which live as long as the op */
};

struct rill_connect_op {
    rill_ctx *ctx;
    char *host;
    uint16_t port;
    rill_connect_opts opts; /* tls_servername points at servername */
    char *servername;
    int64_t start_ms;
    int64_t deadline; /* rilli_deadline() of opts.timeout_ms, -1: none */
    enum phase phase;
    struct fam fam[2];
    bool resolved_sent; /* RILL_EV_RESOLVED went out */
    int last_family;    /* of the last attempt started; 0 before the first */
    struct attempt live[MAX_IN_FLIGHT_CAP];
    size_t in_flight;
    size_t attempts; /* started so far */
    int64_t next_at_ms;
    char failures[RILL_ERRMSG_MAX];
    size_t failures_len;
    rill_status worst;
    rill_addr *winner;   /* the attempt that connected */
    rill_stream *stream; /* the winner's transport, then the TLS layer in its handshake */
    int wakefd;          /* eventfd: a lookup of ours answered by someone else's processing */
    int epfd;            /* our own epoll descriptor, made when several descriptors wait */
    struct pollfd registered[MAX_WAIT_FDS]; /* what epfd watches */
    size_t nregistered;
    rill_status setup_failed; /* poll_info could not set up epfd: the next step says so */
    rill_status result;
    bool delivered;         /* a step has returned the outcome */
    rill_error err;         /* the failure, repeated to later steps */
    struct proxy_state *px; /* NULL: no proxy */
};

static rill_status proxy_won(rill_connect_op *op, rill_stream *tcp, rill_error *err);
static rill_status proxy_step(rill_connect_op *op, rill_error *err);
static rill_status proxy_timed_out(rill_connect_op *op, rill_error *err);
static rill_status proxy_origin_resolved(rill_connect_op *op, rill_error *err);
static bool proxy_resolving_origin(const rill_connect_op *op);
static void proxy_note_failure(rill_connect_op *op);
static void proxy_free(rill_connect_op *op);

/* ---- events and messages ---- */

/* Addresses are formatted only when something shows them (an event, a message). */
static void emit(const rill_connect_op *op, rill_connect_event_type type, rill_addr *addr,
                 size_t count, rill_status status, const char *message, int family)
{
    if (!op->opts.on_event)
        return;
    rill_connect_event ev = { type,   op->host, addr ? rilli_addr_text(addr) : NULL, count,
                              status, message,  rilli_now_ms() - op->start_ms,       family };
    op->opts.on_event(op->opts.on_event_arg, &ev);
}

static int64_t elapsed(const rill_connect_op *op)
{
    return rilli_now_ms() - op->start_ms;
}

/* The address without its port, as the aggregated message names it. */
static void ip_text(const char *t, char *buf, size_t len)
{
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

static void add_failure(rill_connect_op *op, const char *fmt, ...) RILL_PRINTF(2, 3);

static void add_failure(rill_connect_op *op, const char *fmt, ...)
{
    if (op->failures_len >= sizeof op->failures)
        return;
    if (op->failures_len)
        op->failures_len += rilli_snprintf(op->failures + op->failures_len,
                                           sizeof op->failures - op->failures_len, "; ");
    if (op->failures_len >= sizeof op->failures)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n =
        vsnprintf(op->failures + op->failures_len, sizeof op->failures - op->failures_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        op->failures_len += (size_t)n;
}

static void record_attempt_failure(rill_connect_op *op, const struct attempt *a, int errnum)
{
    char ip[64];
    ip_text(rilli_addr_text(a->addr), ip, sizeof ip);
    const char *why = rilli_errno_text(errnum);
    add_failure(op, "%s: %s", ip, why);
    rill_status st = rilli_status_from_errno(errnum);
    /* Refused everywhere is "refused"; anything else makes the whole a connect failure. */
    if (op->worst == RILL_OK || (op->worst == RILL_E_REFUSED && st != RILL_E_REFUSED))
        op->worst = st == RILL_E_REFUSED ? RILL_E_REFUSED : RILL_E_CONNECT;
    emit(op, RILL_EV_ATTEMPT_FAILED, a->addr, 0, st, why, a->addr->family);
}

/* What the lookups did, for messages: "A: no answer, AAAA: server failure". */
static void lookups_text(const rill_connect_op *op, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < 2; i++) {
        const struct fam *f = &op->fam[1 - i]; /* A first, as people read it */
        if (!f->wanted)
            continue;
        const char *what = !f->done               ? "no answer"
                           : f->status != RILL_OK ? f->reason
                           : f->count == 0        ? "no address"
                                                  : NULL;
        char counted[32];
        if (!what) {
            snprintf(counted, sizeof counted, "%zu address%s", f->count, f->count == 1 ? "" : "es");
            what = counted;
        }
        used += rilli_snprintf(buf + (used < len ? used : len), used < len ? len - used : 0,
                               "%s%s: %s", used ? ", " : "", f->family == 6 ? "AAAA" : "A", what);
    }
}

static void close_attempt(rill_connect_op *op, size_t slot);
static void drop_lookups(rill_connect_op *op);
static void quiet_epoll(rill_connect_op *op);

/*
 * Finish the op with @p st; the message goes to op->err (and @p err). What it still holds
 * (attempts, lookups) goes at once, not when the caller frees the op.
 */
static rill_status finish(rill_connect_op *op, rill_status st, rill_error *err)
{
    while (op->in_flight > 0)
        close_attempt(op, op->in_flight - 1);
    drop_lookups(op);
    quiet_epoll(op);
    op->phase = PH_DONE;
    op->result = st;
    if (st < 0 && op->px)
        proxy_note_failure(op);
    if (err && st < 0)
        *err = op->err;
    return st;
}

static rill_status fail(rill_connect_op *op, rill_error *err, rill_status st, int errnum,
                        const char *fmt, ...) RILL_PRINTF(5, 6);

static rill_status fail(rill_connect_op *op, rill_error *err, rill_status st, int errnum,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rilli_error_vset(&op->err, st, errnum, fmt, ap);
    va_end(ap);
    return finish(op, st, err);
}

/* ---- descriptors ---- */

/*
 * Close a descriptor of the op's own. The close takes it out of op->epfd too: forget its
 * registration, since its number may come back for another descriptor (of this op or of
 * another thread, which the op must then never touch).
 */
static void forget_registration(rill_connect_op *op, int fd)
{
    for (size_t i = 0; i < op->nregistered; i++) {
        if (op->registered[i].fd == fd) {
            op->registered[i] = op->registered[--op->nregistered];
            (void)epoll_ctl(op->epfd, EPOLL_CTL_DEL, fd, NULL); /* before it can close */
            break;
        }
    }
}

static void close_own(rill_connect_op *op, int fd)
{
    forget_registration(op, fd);
    close(fd);
}

static void close_attempt(rill_connect_op *op, size_t slot)
{
    close_own(op, op->live[slot].fd);
    op->live[slot] = op->live[--op->in_flight];
}

static void drop_lookups(rill_connect_op *op)
{
    for (int i = 0; i < 2; i++) {
        rilli_dns_lookup_free(op->fam[i].lookup);
        op->fam[i].lookup = NULL;
    }
    if (op->wakefd >= 0) {
        rilli_dns_release(op->ctx, op->wakefd); /* another op drives DNS now, if this one did */
        close_own(op, op->wakefd);
        op->wakefd = -1;
    }
}

static bool dns_pending(const rill_connect_op *op)
{
    return op->fam[0].lookup || op->fam[1].lookup;
}

/* Everything the op waits on now; returns the count. */
static size_t wanted_fds(rill_connect_op *op, struct pollfd *fds, int *dns_timeout)
{
    size_t n = 0;
    *dns_timeout = -1;
    if (op->phase == PH_TLS || op->phase == PH_PROXY) {
        int fd = -1;
        short events = POLLIN;
        if (rill_poll_info(op->stream, &fd, &events) == RILL_OK && fd >= 0)
            fds[n++] = (struct pollfd){ .fd = fd, .events = events };
        return n;
    }
    if (op->phase != PH_RACE)
        return 0;
    if (dns_pending(op)) {
        int dns_fd = rilli_dns_wants(op->ctx, op->wakefd, dns_timeout);
        if (dns_fd >= 0)
            fds[n++] = (struct pollfd){ .fd = dns_fd, .events = POLLIN };
        if (op->wakefd >= 0)
            fds[n++] = (struct pollfd){ .fd = op->wakefd, .events = POLLIN };
    }
    for (size_t i = 0; i < op->in_flight; i++)
        fds[n++] = (struct pollfd){ .fd = op->live[i].fd, .events = POLLOUT };
    return n;
}

/* Make op->epfd watch exactly @p fds (n > 1). */
static rill_status sync_epoll(rill_connect_op *op, const struct pollfd *fds, size_t n)
{
    if (op->epfd < 0) {
        op->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (op->epfd < 0)
            return op->setup_failed = rilli_error_set(&op->err, RILL_E_IO, errno,
                                                      "connect: cannot create an epoll "
                                                      "descriptor");
        op->nregistered = 0;
    }
    for (size_t i = 0; i < op->nregistered; i++) {
        bool keep = false;
        for (size_t j = 0; j < n && !keep; j++)
            keep = fds[j].fd == op->registered[i].fd && fds[j].events == op->registered[i].events;
        if (!keep) /* may fail harmlessly: the descriptor was closed (c-ares, a lost attempt) */
            (void)epoll_ctl(op->epfd, EPOLL_CTL_DEL, op->registered[i].fd, NULL);
    }
    for (size_t j = 0; j < n; j++) {
        bool have = false;
        for (size_t i = 0; i < op->nregistered && !have; i++)
            have = fds[j].fd == op->registered[i].fd && fds[j].events == op->registered[i].events;
        if (have)
            continue;
        struct epoll_event ev = { .events = ((fds[j].events & POLLIN) ? EPOLLIN : 0u) |
                                            ((fds[j].events & POLLOUT) ? EPOLLOUT : 0u),
                                  .data.fd = fds[j].fd };
        if (epoll_ctl(op->epfd, EPOLL_CTL_ADD, fds[j].fd, &ev) < 0 &&
            (errno != EEXIST || epoll_ctl(op->epfd, EPOLL_CTL_MOD, fds[j].fd, &ev) < 0)) {
            op->nregistered = 0; /* start over next time */
            close(op->epfd);
            op->epfd = -1;
            return op->setup_failed =
                       rilli_error_set(&op->err, RILL_E_IO, errno, "connect: epoll_ctl failed");
        }
    }
    memcpy(op->registered, fds, n * sizeof *fds);
    op->nregistered = n;
    return RILL_OK;
}

/* Stop op->epfd watching anything (it stays open: the caller may still have it registered). */
static void quiet_epoll(rill_connect_op *op)
{
    for (size_t i = 0; op->epfd >= 0 && i < op->nregistered; i++)
        (void)epoll_ctl(op->epfd, EPOLL_CTL_DEL, op->registered[i].fd, NULL);
    op->nregistered = 0;
}

/* ---- addresses ---- */

static bool can_connect(const rill_connect_op *op, int64_t now, int64_t *wake)
{
    const struct fam *v6 = &op->fam[0], *v4 = &op->fam[1];
    bool have6 = v6->done && v6->next < v6->count;
    bool have4 = v4->done && v4->next < v4->count;
    if (have6 || (have4 && (!v6->wanted || v6->done)) || op->attempts > 0)
        return have6 || have4;
    if (!have4)
        return false;
    /* A came first: give AAAA the resolution delay (RFC 8305 section 3). */
    int64_t until = op->start_ms + v4->at_ms + op->opts.resolution_delay_ms;
    if (now >= until)
        return true;
    if (*wake < 0 || until < *wake)
        *wake = until;
    return false;
}

/* The next address to try: alternate families, IPv6 first (RFC 8305 section 4). */
static struct fam *next_family(rill_connect_op *op)
{
    struct fam *v6 = &op->fam[0], *v4 = &op->fam[1];
    bool have6 = v6->done && v6->next < v6->count;
    bool have4 = v4->done && v4->next < v4->count;
    if (have6 && (!have4 || op->last_family != 6))
        return v6;
    return have4 ? v4 : NULL;
}

/* Start one attempt; true if it connected at once (op->winner set, fd in *fd). */
static rill_status start_attempt(rill_connect_op *op, struct fam *f, int *connected_fd,
                                 rill_error *err)
{
    rill_addr *a = &f->addrs[f->next++];
    struct attempt at = { .fd = -1, .addr = a };
    op->last_family = a->family;
    op->attempts++;
    if (!op->resolved_sent) {
        op->resolved_sent = true;
        emit(op, RILL_EV_RESOLVED, NULL, op->fam[0].count + op->fam[1].count, RILL_OK, NULL, 0);
    }
    emit(op, RILL_EV_ATTEMPT, a, 0, RILL_OK, NULL, a->family);
    at.fd =
        socket(a->family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (at.fd < 0) {
        int e = errno;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            /* Out of descriptors or memory is the process's problem, not this address's. */
            return fail(op, err, e == ENOMEM ? RILL_E_NOMEM : RILL_E_IO, e,
                        "connect: %.100s:%u: cannot create a socket", op->host, op->port);
        }
        record_attempt_failure(op, &at, e); /* EAFNOSUPPORT: this family is dead here */
        op->next_at_ms = 0;
        return RILL_OK;
    }
    if (connect(at.fd, (const struct sockaddr *)(const void *)a->sa, a->sa_len) == 0) {
        *connected_fd = at.fd;
        op->winner = a;
        return RILL_OK;
    }
    int e = errno;
    if (e == EINPROGRESS || e == EINTR) {
        op->live[op->in_flight++] = at;
        int delay = op->opts.attempt_delay_ms;
        op->next_at_ms = rilli_now_ms() + (delay < MIN_ATTEMPT_DELAY ? MIN_ATTEMPT_DELAY : delay);
        return RILL_OK;
    }
    close(at.fd);
    record_attempt_failure(op, &at, e);
    op->next_at_ms = 0; /* a failure starts the next address at once */
    return RILL_OK;
}

/* Take the answer of @p f's lookup into the op. */
static rill_status take_answer(rill_connect_op *op, struct fam *f, rill_status st,
                               const char *reason, const struct rilli_ip *ips, size_t n,
                               rill_error *err)
{
    f->done = true;
    f->status = st;
    f->at_ms = elapsed(op);
    size_t rn = reason ? strnlen(reason, sizeof f->reason - 1) : 0; /* no printf: hot path */
    memcpy(f->reason, reason ? reason : "", rn);
    f->reason[rn] = '\0';
    if (st == RILL_OK && n > 0) {
        rill_error scratch;
        rill_status built = rilli_addrs_build_ex(op->host, ips, n, op->port, f->family, false,
                                                 &f->addrs, &f->count, &scratch);
        if (built == RILL_E_NOMEM)
            return fail(op, err, built, 0, "connect: %.100s:%u: out of memory", op->host, op->port);
        if (built != RILL_OK)
            f->count = 0; /* nothing of this family in the answer */
    }
    if (f->status == RILL_OK && f->count == 0)
        snprintf(f->reason, sizeof f->reason, "no address");
    emit(op, RILL_EV_ANSWER, NULL, f->count, f->status, f->status == RILL_OK ? NULL : f->reason,
         f->family);
    return RILL_OK;
}

/* ---- the steps ---- */

/* Take the answers of the lookups that are done. */
static rill_status take_done(rill_connect_op *op, rill_error *err)
{
    for (int i = 0; i < 2; i++) {
        struct fam *f = &op->fam[i];
        rill_status st;
        const char *reason = NULL;
        const struct rilli_ip *ips = NULL;
        size_t count = 0;
        if (!f->lookup || !rilli_dns_lookup_done(f->lookup, &st, &reason, &ips, &count))
            continue;
        st = take_answer(op, f, st, reason, ips, count, err);
        rilli_dns_lookup_free(f->lookup);
        f->lookup = NULL;
        if (st != RILL_OK)
            return st;
    }
    return RILL_OK;
}

static rill_status dns_step(rill_connect_op *op, rill_error *err)
{
    if (op->wakefd >= 0) {
        uint64_t v;
        ssize_t r = read(op->wakefd, &v, sizeof v); /* reset; EAGAIN when not signalled */
        (void)r;
    }
    rill_status st = take_done(op, err); /* answered from the cache: nothing to ask the kernel */
    if (st == RILL_OK && dns_pending(op)) {
        rilli_dns_process(op->ctx);
        st = take_done(op, err);
    }
    if (st != RILL_OK)
        return st;
    if (!dns_pending(op))
        drop_lookups(op);
    return RILL_OK;
}

static int winner_family(const rill_connect_op *op)
{
    return op->winner->family;
}

/*
 * @p s (the op's from here on) reaches the host, directly or through a proxy's tunnel: it is
 * the outcome, or TLS to the host starts on it.
 */
static rill_status to_host(rill_connect_op *op, rill_stream *s, rill_error *err)
{
    if (!op->opts.tls) {
        op->stream = s;
        return finish(op, RILL_OK, err);
    }
    rill_stream *tls = NULL;
    rill_status st =
        rilli_tls_connect_wrap(op->ctx, op->host, op->port, &op->opts, s, &tls, &op->err);
    if (st != RILL_OK) {
        rill_close(s);
        return finish(op, st, err);
    }
    op->stream = tls;
    op->phase = PH_TLS;
    emit(op, RILL_EV_TLS_HANDSHAKE, op->winner, 0, RILL_OK, NULL, winner_family(op));
    return RILL_OK;
}

/* The winner: close the others, make the stream, start TLS if asked. */
static rill_status won(rill_connect_op *op, int fd, rill_error *err)
{
    forget_registration(op, fd); /* the stream's now: the op's epoll descriptor lets it go */
    while (op->in_flight > 0)
        close_attempt(op, op->in_flight - 1);
    drop_lookups(op);
    rill_connect_opts so = op->opts;
    if (op->opts.tls)
        so.read_timeout_ms = so.write_timeout_ms = 0; /* the handshake runs in steps */
    rill_stream *s = NULL;
    /* The descriptor stays non-blocking until the stream first blocks (one fcntl then). */
    rill_status st = rilli_sock_new_peer(&rilli_tcp_ops, fd, false,
                                         (const struct sockaddr *)(const void *)op->winner->sa,
                                         op->winner->sa_len, true, &so, &s, &op->err);
    if (st != RILL_OK) {
        close(fd);
        return finish(op, st, err);
    }
    emit(op, RILL_EV_CONNECTED, op->winner, 0, RILL_OK, NULL, winner_family(op));
    if (op->px)
        return proxy_won(op, s, err);
    return to_host(op, s, err);
}

static rill_status tls_step(rill_connect_op *op, rill_error *err)
{
    rill_status st = rill_tls_handshake(op->stream);
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
        return st;
    emit(op, RILL_EV_TLS_DONE, op->winner, 0, st, st == RILL_OK ? NULL : rill_errmsg(op->stream),
         winner_family(op));
    if (st == RILL_OK)
        st = rill_set_timeouts(op->stream, op->opts.read_timeout_ms, op->opts.write_timeout_ms);
    if (st != RILL_OK) {
        rilli_error_from_stream(&op->err, op->stream);
        rill_close(op->stream);
        op->stream = NULL;
        return finish(op, st, err);
    }
    return finish(op, RILL_OK, err);
}

/* Everything failed or the deadline passed: say what each family and address did. */
static rill_status give_up(rill_connect_op *op, bool timed_out, rill_error *err)
{
    if (timed_out && op->phase == PH_PROXY)
        return proxy_timed_out(op, err);
    char dns[200];
    lookups_text(op, dns, sizeof dns);
    bool any_addr = op->fam[0].count + op->fam[1].count > 0;
    if (timed_out) {
        const char *phase = op->phase == PH_TLS ? "in the TLS handshake"
                            : !any_addr         ? "resolving"
                                                : "connecting";
        if (op->phase == PH_TLS) {
            rill_stream *s = op->stream;
            op->stream = NULL;
            rill_close(s);
            return fail(op, err, RILL_E_TIMEOUT, 0,
                        "connect: %.100s:%u: timed out after %d ms in the TLS handshake with "
                        "%s",
                        op->host, op->port, op->opts.timeout_ms, rilli_addr_text(op->winner));
        }
        for (size_t i = 0; i < op->in_flight; i++) {
            char ip[64];
            ip_text(rilli_addr_text(op->live[i].addr), ip, sizeof ip);
            add_failure(op, "%s: no answer yet", ip);
        }
        return fail(op, err, RILL_E_TIMEOUT, 0,
                    "connect: %.100s:%u: timed out after %d ms %s (%s%s%s)", op->host, op->port,
                    op->opts.timeout_ms, phase, dns, op->failures_len ? "; " : "", op->failures);
    }
    if (!any_addr) {
        /* The name resolved to nothing usable: what each family's lookup said. */
        const struct fam *v6 = &op->fam[0], *v4 = &op->fam[1];
        if (v4->wanted != v6->wanted) { /* one family asked: its own words */
            const struct fam *f = v4->wanted ? v4 : v6;
            return fail(op, err, f->status < 0 ? f->status : RILL_E_DNS, 0,
                        "resolve: %.100s: %s (%s)", op->host, f->reason,
                        f->family == 6 ? "AAAA" : "A");
        }
        if (v4->status == v6->status && strcmp(v4->reason, v6->reason) == 0)
            return fail(op, err, v4->status < 0 ? v4->status : RILL_E_DNS, 0,
                        "resolve: %.100s: %s (A and AAAA)", op->host, v4->reason);
        /* Out of memory is this process's trouble, not the name's: say it as such. */
        bool nomem = v4->status == RILL_E_NOMEM || v6->status == RILL_E_NOMEM;
        return fail(op, err, nomem ? RILL_E_NOMEM : RILL_E_DNS, 0, "resolve: %.100s: %s", op->host,
                    dns);
    }
    bool family_failed = (op->fam[0].wanted && op->fam[0].status != RILL_OK) ||
                         (op->fam[1].wanted && op->fam[1].status != RILL_OK);
    return fail(op, err, op->worst ? op->worst : RILL_E_CONNECT, 0, "connect: %.100s:%u: %s%s%s%s",
                op->host, op->port, op->failures, family_failed ? " (" : "",
                family_failed ? dns : "", family_failed ? ")" : "");
}

static rill_status race_step(rill_connect_op *op, rill_error *err)
{
    /* Attempts that finished. */
    for (size_t i = 0; i < op->in_flight;) {
        const rill_addr *a = op->live[i].addr;
        int e = rilli_connect_probe(op->live[i].fd, (const struct sockaddr *)(const void *)a->sa,
                                    a->sa_len);
        if (e == EALREADY) {
            i++;
            continue;
        }
        if (e == 0) {
            int fd = op->live[i].fd;
            op->winner = op->live[i].addr;
            op->live[i] = op->live[--op->in_flight];
            return won(op, fd, err);
        }
        record_attempt_failure(op, &op->live[i], e);
        close_attempt(op, i); /* moves the last one into slot i */
        op->next_at_ms = 0;
    }
    /* New attempts: when RFC 8305 allows, the in-flight cap has room and the delay is over. */
    size_t cap = op->opts.max_in_flight > MAX_IN_FLIGHT_CAP ? MAX_IN_FLIGHT_CAP
                                                            : (size_t)op->opts.max_in_flight;
    if (op->opts.attempt_delay_ms < 0)
        cap = 1;
    for (;;) {
        int64_t now = rilli_now_ms(), wake = -1;
        if (op->in_flight >= cap || !can_connect(op, now, &wake))
            break;
        if (op->in_flight > 0 && now < op->next_at_ms)
            break;
        int fd = -1;
        rill_status st = start_attempt(op, next_family(op), &fd, err);
        if (st != RILL_OK)
            return st;
        if (fd >= 0)
            return won(op, fd, err);
    }
    bool more = op->fam[0].next < op->fam[0].count || op->fam[1].next < op->fam[1].count;
    if (op->in_flight == 0 && !more && !dns_pending(op))
        return give_up(op, false, err);
    return RILL_OK;
}

/* ---- public API ---- */

static void op_free(rill_connect_op *op)
{
    while (op->in_flight > 0)
        close_attempt(op, op->in_flight - 1);
    drop_lookups(op);
    if (op->epfd >= 0)
        close(op->epfd);
    rill_close(op->stream);
    proxy_free(op);
    rill_tls_config_free(op->opts.tls);
    rilli_free(op->fam[0].addrs);
    rilli_free(op->fam[1].addrs);
    rilli_free(op->host);
    rilli_free(op->servername);
    rill_ctx_free(op->ctx); /* the op's reference: the context may have been freed before it */
    rilli_free(op);
}

static char *copy_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = rilli_malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

/* Start the lookups (or take the answer an IP literal, override, cache or localhost gives). */
static rill_status begin(rill_connect_op *op, rill_error *err)
{
    const struct rilli_ip *ips = NULL;
    size_t count = 0;
    struct rilli_ip ip;
    if (rilli_ip_parse(op->host, &ip)) { /* op->host: the proxy's, when there is one */
        /* An IP literal is its own answer, of its own family alone. */
        ips = &ip;
        count = 1;
        for (int i = 0; i < 2; i++)
            op->fam[i].wanted = op->fam[i].wanted && op->fam[i].family == ip.family;
        if (!op->fam[0].wanted && !op->fam[1].wanted)
            return fail(op, err, RILL_E_DNS, 0,
                        "connect: %.100s is an IPv%d address, but only "
                        "IPv%d is allowed",
                        op->host, ip.family, ip.family == 4 ? 6 : 4);
    }
    struct rilli_ip loopback[2];
    if (!ips && !(op->ctx && rilli_ctx_override(op->ctx, op->host, op->port, &ips, &count)) &&
        rilli_is_localhost(op->host)) {
        /* RFC 6761 6.3: never asked of DNS, whatever the network would say. */
        ips = loopback;
        count = rilli_loopback_ips(loopback);
    }
    if (ips) {
        for (int i = 0; i < 2; i++) {
            if (!op->fam[i].wanted)
                continue;
            rill_status st = take_answer(op, &op->fam[i], RILL_OK, NULL, ips, count, err);
            if (st != RILL_OK)
                return st;
        }
        return RILL_OK;
    }
    for (int i = 0; i < 2; i++) {
        struct fam *f = &op->fam[i];
        if (!f->wanted)
            continue;
        rill_status st = rilli_dns_lookup_new(op->ctx, op->host, f->family, &f->lookup, &op->err);
        if (st != RILL_OK)
            return finish(op, st, err);
    }
    /* Cached answers are in already; a lookup that waits needs a way to be woken. */
    rill_status st = dns_step(op, err);
    if (st != RILL_OK || !dns_pending(op))
        return st;
    op->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (op->wakefd < 0)
        return fail(op, err, RILL_E_IO, errno, "connect: %.100s: eventfd", op->host);
    for (int i = 0; i < 2; i++) {
        if (op->fam[i].lookup)
            rilli_dns_lookup_wake(op->fam[i].lookup, op->wakefd);
    }
    return dns_step(op, err); /* an answer that came in between */
}

/* ---- the proxy phase ----
 *
 * With a proxy, the race above connects to the proxy (its name resolved instead of the host's;
 * for socks5:// the host's name is resolved first, through the same lookups, and the proxy is
 * given the address). Then PH_PROXY: TLS to an https:// proxy (its own name, config and session
 * cache keys), the CONNECT or SOCKS5 handshake, and on an open tunnel the host's TLS (PH_TLS)
 * over it, all under the op's one deadline. op->host and op->port name the proxy until the
 * tunnel is open, then the host again, so later messages and events speak of the host.
 */

enum proxy_stage { PXS_TLS, PXS_TUNNEL };

struct proxy_state {
    rill_proxy url;
    char *origin_host; /* the host, while op->host names the proxy */
    uint16_t origin_port;
    char target[256]; /* what the proxy is asked for: the host, or its address (socks5://) */
    bool origin_dns;  /* socks5://: the host's name is being resolved */
    bool reached;     /* the race to the proxy is won */
    int family;       /* the family setting, for the proxy's own lookups */
    enum proxy_stage stage;
    rill_tls_config *tls; /* for an https:// proxy */
    char via[80];         /* "127.0.0.1:3128", the proxy's address once reached */
    char *headers;        /* copies of opts->proxy_headers, NUL-separated */
    const char **header_list;
};

static bool proxy_resolving_origin(const rill_connect_op *op)
{
    return op->px && op->px->origin_dns;
}

static const char *scheme_name(rill_proxy_scheme s)
{
    switch (s) {
    case RILL_PROXY_HTTP: return "http";
    case RILL_PROXY_HTTPS: return "https";
    case RILL_PROXY_SOCKS5: return "socks5";
    case RILL_PROXY_SOCKS5H: return "socks5h";
    }
    return "?";
}

static void emit_px(const rill_connect_op *op, rill_connect_event_type type, const char *host,
                    rill_status status, const char *message)
{
    if (!op->opts.on_event)
        return;
    rill_connect_event ev = {
        type, host, rilli_addr_text(op->winner), 0, status, message, elapsed(op), winner_family(op)
    };
    op->opts.on_event(op->opts.on_event_arg, &ev);
}

static void proxy_free(rill_connect_op *op)
{
    struct proxy_state *px = op->px;
    if (!px)
        return;
    rilli_free(px->origin_host);
    rill_tls_config_free(px->tls);
    rilli_free(px->headers);
    rilli_free(px->header_list);
    rilli_free(px);
    op->px = NULL;
}

/* The race to the proxy failed: say that it was the proxy that could not be reached. */
static void proxy_note_failure(rill_connect_op *op)
{
    struct proxy_state *px = op->px;
    if (px->reached || px->origin_dns)
        return;
    char msg[RILL_ERRMSG_MAX];
    bool v6 = strchr(px->url.host, ':') != NULL;
    rilli_snprintf(msg, sizeof msg, "proxy %s://%s%.100s%s:%u: %s", scheme_name(px->url.scheme),
                   v6 ? "[" : "", px->url.host, v6 ? "]" : "", px->url.port, op->err.msg);
    memcpy(op->err.msg, msg, sizeof msg);
}

static rill_status proxy_fail(rill_connect_op *op, rill_error *err, rill_status st)
{
    rill_error why;
    rilli_error_from_stream(&why, op->stream);
    rill_close(op->stream);
    op->stream = NULL;
    bool v6 = strchr(op->px->origin_host, ':') != NULL;
    return fail(op, err, st, why.sys_errno, "connect: %s%.100s%s:%u via proxy %s: %s",
                v6 ? "[" : "", op->px->origin_host, v6 ? "]" : "", op->px->origin_port, op->px->via,
                why.msg);
}

/* Put the tunnel layer on op->stream and start its handshake. */
static rill_status start_tunnel(rill_connect_op *op, rill_error *err)
{
    struct proxy_state *px = op->px;
    rill_tunnel_opts to;
    rill_tunnel_opts_init(&to);
    to.user = px->url.user[0] ? px->url.user : NULL;
    to.password = px->url.password;
    to.proxy_name = px->via;
    bool http = px->url.scheme == RILL_PROXY_HTTP || px->url.scheme == RILL_PROXY_HTTPS;
    to.headers = http ? px->header_list : NULL;
    rill_stream *t = NULL;
    rill_status st =
        http ? rill_http_connect_new(op->stream, px->target, px->origin_port, &to, 0, &t)
             : rill_socks5_new(op->stream, px->target, px->origin_port, &to, 0, &t);
    if (st != RILL_OK)
        return proxy_fail(op, err, st);
    op->stream = t;
    px->stage = PXS_TUNNEL;
    emit_px(op, RILL_EV_PROXY_HANDSHAKE, px->origin_host, RILL_OK, http ? "CONNECT" : "SOCKS5");
    return RILL_OK;
}

/* The race to the proxy is won: @p tcp goes to the proxy. */
static rill_status proxy_won(rill_connect_op *op, rill_stream *tcp, rill_error *err)
{
    struct proxy_state *px = op->px;
    px->reached = true;
    snprintf(px->via, sizeof px->via, "%s", rilli_addr_text(op->winner));
    op->stream = tcp;
    op->phase = PH_PROXY;
    rill_status st = rill_set_timeouts(tcp, 0, 0); /* the handshakes run in steps */
    if (st != RILL_OK)
        return proxy_fail(op, err, st);
    if (px->url.scheme != RILL_PROXY_HTTPS)
        return start_tunnel(op, err);
    rill_stream *tls = NULL;
    st = rilli_tls_proxy_wrap(op->ctx, px->url.host, px->url.port, px->tls, tcp, &tls, &op->err);
    if (st != RILL_OK)
        return proxy_fail(op, err, st);
    op->stream = tls;
    px->stage = PXS_TLS;
    emit_px(op, RILL_EV_PROXY_TLS, px->url.host, RILL_OK, NULL);
    return RILL_OK;
}

static rill_status proxy_step(rill_connect_op *op, rill_error *err)
{
    struct proxy_state *px = op->px;
    rill_status st;
    if (px->stage == PXS_TLS) {
        st = rill_tls_handshake(op->stream);
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
            return st;
        emit_px(op, RILL_EV_PROXY_TLS_DONE, px->url.host, st,
                st == RILL_OK ? NULL : rill_errmsg(op->stream));
        if (st != RILL_OK)
            return proxy_fail(op, err, st);
        st = start_tunnel(op, err);
        if (st != RILL_OK)
            return st;
    }
    st = rill_tunnel_handshake(op->stream);
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
        return st;
    emit_px(op, RILL_EV_PROXY_DONE, px->origin_host, st,
            st == RILL_OK ? NULL : rill_errmsg(op->stream));
    if (st != RILL_OK)
        return proxy_fail(op, err, st);
    /* The tunnel is open: from here on the op speaks of the host. */
    rilli_free(op->host);
    op->host = px->origin_host;
    px->origin_host = NULL;
    op->port = px->origin_port;
    if (!op->opts.tls) { /* the caller's timeouts, in place of the steps' 0 */
        st = rill_set_timeouts(op->stream, op->opts.read_timeout_ms, op->opts.write_timeout_ms);
        if (st != RILL_OK)
            return finish(op, st, err);
    }
    rill_stream *tunnel = op->stream;
    op->stream = NULL;
    return to_host(op, tunnel, err);
}

static rill_status proxy_timed_out(rill_connect_op *op, rill_error *err)
{
    struct proxy_state *px = op->px;
    bool http = px->url.scheme == RILL_PROXY_HTTP || px->url.scheme == RILL_PROXY_HTTPS;
    const char *what = px->stage == PXS_TLS ? "in the TLS handshake with"
                       : http               ? "waiting for the CONNECT answer of"
                                            : "in the SOCKS5 handshake with";
    rill_close(op->stream);
    op->stream = NULL;
    bool v6 = strchr(px->origin_host, ':') != NULL;
    return fail(op, err, RILL_E_TIMEOUT, 0,
                "connect: %s%.100s%s:%u: timed out after %d ms %s proxy %s", v6 ? "[" : "",
                px->origin_host, v6 ? "]" : "", px->origin_port, op->opts.timeout_ms, what,
                px->via);
}

/* socks5://: once the host's name has an address to use, race to the proxy instead. */
static rill_status proxy_origin_resolved(rill_connect_op *op, rill_error *err)
{
    struct proxy_state *px = op->px;
    int64_t wake = -1;
    if (!can_connect(op, rilli_now_ms(), &wake))
        return dns_pending(op) ? RILL_OK : give_up(op, false, err);
    struct fam *f = next_family(op);
    ip_text(rilli_addr_text(&f->addrs[f->next]), px->target, sizeof px->target);
    drop_lookups(op);
    for (int i = 0; i < 2; i++) {
        rilli_free(op->fam[i].addrs);
        op->fam[i] = (struct fam){ .family = i == 0 ? 6 : 4,
                                   .wanted = i == 0 ? px->family != 4 : px->family != 6 };
    }
    char *proxy_host = copy_str(px->url.host);
    if (!proxy_host)
        return fail(op, err, RILL_E_NOMEM, 0, "connect: out of memory");
    px->origin_host = op->host;
    op->host = proxy_host;
    op->port = px->url.port;
    px->origin_dns = false;
    emit(op, RILL_EV_RESOLVING, NULL, 0, RILL_OK, NULL, 0);
    return begin(op, err);
}

/* Which proxy, if any, serves @p host:@p port under @p opts. */
static rill_status proxy_choose(const char *host, uint16_t port, const rill_connect_opts *opts,
                                rill_proxy *proxy, bool *use, rill_error *err)
{
    *use = false;
    if (opts->no_proxy && rill_proxy_bypass(opts->no_proxy, host, port))
        return RILL_OK;
    if (opts->proxy) {
        rill_status st = rill_proxy_parse(opts->proxy, proxy, err);
        if (st != RILL_OK)
            return st;
        const char *no = getenv("no_proxy");
        if (!no || !*no)
            no = getenv("NO_PROXY");
        *use = !(opts->proxy_from_env && no && rill_proxy_bypass(no, host, port));
        return RILL_OK;
    }
    if (!opts->proxy_from_env)
        return RILL_OK;
    int found = 0;
    rill_status st = rill_proxy_from_env(host, port, opts->tls != NULL, proxy, &found, err);
    *use = found != 0;
    return st;
}

/* Make op go through @p proxy: copies what the op needs of opts. */
static rill_status proxy_setup(rill_connect_op *op, const rill_proxy *proxy,
                               const rill_connect_opts *opts, int family, rill_error *err)
{
    struct proxy_state *px = rilli_calloc(1, sizeof *px);
    if (!px)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "connect: out of memory");
    op->px = px;
    px->url = *proxy;
    if (opts->proxy_user) { /* the options' credentials replace the URL's */
        const char *pass = opts->proxy_password ? opts->proxy_password : "";
        if (strlen(opts->proxy_user) >= sizeof px->url.user ||
            strlen(pass) >= sizeof px->url.password)
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "connect: proxy_user or proxy_password longer than 255 "
                                   "bytes");
        snprintf(px->url.user, sizeof px->url.user, "%s", opts->proxy_user);
        snprintf(px->url.password, sizeof px->url.password, "%s", pass);
    }
    /* What the op keeps of the proxy options is in px now (copied or referenced). */
    op->opts.proxy = op->opts.proxy_user = op->opts.proxy_password = op->opts.no_proxy = NULL;
    op->opts.proxy_headers = NULL;
    op->opts.proxy_tls = NULL;
    px->family = family;
    px->origin_port = op->port;
    snprintf(px->via, sizeof px->via, "%.60s:%u", proxy->host, proxy->port);
    size_t hl = 0, hn = 0;
    for (const char *const *h = opts->proxy_headers; h && *h; h++, hn++)
        hl += strlen(*h) + 1;
    px->headers = rilli_malloc(hl + 1);
    px->header_list = rilli_calloc(hn + 1, sizeof *px->header_list);
    if (!px->headers || !px->header_list)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "connect: out of memory");
    size_t at = 0, i = 0;
    for (const char *const *h = opts->proxy_headers; h && *h; h++) {
        size_t k = strlen(*h) + 1;
        memcpy(px->headers + at, *h, k);
        px->header_list[i++] = px->headers + at;
        at += k;
    }
    if (proxy->scheme == RILL_PROXY_HTTPS) {
        if (opts->proxy_tls) {
            rilli_tls_config_ref(opts->proxy_tls);
            px->tls = opts->proxy_tls;
        } else {
            rill_status st = rill_tls_config_new(&px->tls, err);
            if (st != RILL_OK)
                return st;
        }
    }
    struct rilli_ip ip;
    snprintf(px->target, sizeof px->target, "%s", op->host);
    if (proxy->scheme == RILL_PROXY_SOCKS5 && !rilli_ip_parse(op->host, &ip)) {
        px->origin_dns = true; /* the race starts on the host's name; see proxy_origin_resolved */
        return RILL_OK;
    }
    char *proxy_host = copy_str(proxy->host);
    if (!proxy_host)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "connect: out of memory");
    px->origin_host = op->host;
    op->host = proxy_host;
    op->port = proxy->port;
    return RILL_OK;
}

static bool needs_ctx(const char *name)
{
    struct rilli_ip ip;
    return !rilli_ip_parse(name, &ip) && !rilli_is_localhost(name);
}

RILL_API rill_status rill_connect_start(rill_ctx *ctx, const char *host, uint16_t port,
                                        const rill_connect_opts *opts, rill_connect_op **out,
                                        rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "connect: op is NULL");
    *out = NULL;
    rill_connect_opts loaded;
    rill_status st = rilli_connect_opts_load("connect", opts, &loaded, err);
    if (st != RILL_OK)
        return st;
    opts = &loaded;
    if (opts->timeout_ms == 0)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "connect: timeout_ms 0 leaves no time to connect (-1: no deadline; "
                               "for a connect that does not block use rill_connect_start)");
    if (opts->family != 0 && opts->family != 4 && opts->family != 6)
        return rilli_error_set(err, RILL_E_INVALID, 0, "connect: family %d is not 0, 4 or 6",
                               opts->family);
    if (opts->resolution_delay_ms < 0)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "connect: resolution_delay_ms %d is negative",
                               opts->resolution_delay_ms);
    struct rilli_ip ip;
    bool literal = rilli_ip_parse(host, &ip); /* a numeric host skips the name checks */
    if (!literal || port == 0) {
        st = rilli_host_check(host, port, err);
        if (st != RILL_OK)
            return st;
    }
    rill_proxy proxy;
    bool use_proxy = false;
    st = proxy_choose(host, port, opts, &proxy, &use_proxy, err);
    if (st != RILL_OK)
        return st;
    const char *to_resolve = !use_proxy                          ? host
                             : proxy.scheme != RILL_PROXY_SOCKS5 ? proxy.host
                             : needs_ctx(host)                   ? host
                                                                 : proxy.host;
    if (!ctx && needs_ctx(to_resolve))
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "connect: \"%.100s\" is a name and no context was given to "
                               "resolve it",
                               to_resolve);
    rill_connect_op *op = rilli_calloc(1, sizeof *op);
    if (!op)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "connect: out of memory");
    op->ctx = ctx;
    if (ctx)
        rilli_ctx_ref(ctx);
    op->port = port;
    op->opts = *opts;
    op->wakefd = op->epfd = -1;
    op->start_ms = rilli_now_ms();
    op->deadline = rilli_deadline(opts->timeout_ms);
    op->host = copy_str(host);
    op->servername = opts->tls_servername ? copy_str(opts->tls_servername) : NULL;
    op->opts.tls_servername = op->servername;
    op->opts.tls = NULL;
    if (!op->host || (opts->tls_servername && !op->servername)) {
        op_free(op);
        return rilli_error_set(err, RILL_E_NOMEM, 0, "connect: out of memory");
    }
    if (opts->tls) {
        rilli_tls_config_ref(opts->tls);
        op->opts.tls = opts->tls;
    }
    int family = opts->family ? opts->family : ctx ? rilli_ctx_family(ctx) : 0;
    if (use_proxy && (st = proxy_setup(op, &proxy, opts, family, err)) != RILL_OK) {
        op_free(op);
        return st;
    }
    op->fam[0] = (struct fam){ .family = 6, .wanted = family != 4 };
    op->fam[1] = (struct fam){ .family = 4, .wanted = family != 6 };
    emit(op, RILL_EV_RESOLVING, NULL, 0, RILL_OK, NULL, 0);
    /* What is known at once (an IP literal, an override, the cache) starts connecting now; the
     * outcome, a failure included, is the first step's to report. */
    st = begin(op, NULL);
    if (st == RILL_OK && op->phase == PH_RACE && !proxy_resolving_origin(op))
        (void)race_step(op, NULL);
    *out = op;
    return RILL_OK;
}

RILL_API rill_status rill_connect_poll_info(rill_connect_op *op, int *fd, short *events,
                                            int *timeout_ms)
{
    if (!op || !fd || !events || !timeout_ms)
        return RILL_E_INVALID;
    *fd = -1;
    *events = 0;
    *timeout_ms = -1;
    if (op->delivered)
        return RILL_E_INVALID;
    if (op->phase == PH_DONE) {
        *timeout_ms = 0; /* finished before a step said so (at the start): step now */
        return RILL_OK;
    }
    struct pollfd fds[MAX_WAIT_FDS];
    int dns_timeout = -1;
    size_t n = wanted_fds(op, fds, &dns_timeout);
    int64_t now = rilli_now_ms(), wake = -1;
    if (op->phase == PH_RACE) {
        if (dns_timeout >= 0)
            wake = now + dns_timeout;
        (void)can_connect(op, now, &wake);
        bool more = op->fam[0].next < op->fam[0].count || op->fam[1].next < op->fam[1].count;
        if (more && op->in_flight > 0 && (wake < 0 || op->next_at_ms < wake))
            wake = op->next_at_ms;
    }
    int timeout = wake < 0 ? -1 : wake <= now ? 0 : (int)(wake - now);
    int left = rilli_remaining_ms(op->deadline); /* rounded up: never wake before it */
    if (left >= 0 && (timeout < 0 || left < timeout))
        timeout = left;
    *timeout_ms = timeout;
    if (n <= 1)
        quiet_epoll(op); /* a caller still watching it must not be woken by it */
    if (n == 1) {
        *fd = fds[0].fd;
        *events = fds[0].events;
    } else if (n > 1) {
        if (sync_epoll(op, fds, n) != RILL_OK) {
            *timeout_ms = 0; /* the step reports it */
            return RILL_OK;
        }
        *fd = op->epfd;
        *events = POLLIN;
    }
    return RILL_OK;
}

RILL_API rill_status rill_connect_step(rill_connect_op *op, rill_stream **out, rill_error *err)
{
    if (!op || !out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "connect: op or out is NULL");
    *out = NULL;
    if (op->phase == PH_DONE) {
        op->delivered = true;
        if (op->result < 0 && err)
            *err = op->err;
        return op->result;
    }
    if (op->setup_failed) {
        op->delivered = true;
        return finish(op, op->setup_failed, err);
    }
    rill_status st = RILL_OK;
    if (op->phase == PH_RACE && dns_pending(op))
        st = dns_step(op, err);
    if (st == RILL_OK && op->phase == PH_RACE && proxy_resolving_origin(op))
        st = proxy_origin_resolved(op, err);
    if (st == RILL_OK && op->phase == PH_RACE && !proxy_resolving_origin(op))
        st = race_step(op, err);
    if (st == RILL_OK && op->phase == PH_PROXY)
        st = proxy_step(op, err);
    if (st == RILL_OK && op->phase == PH_TLS)
        st = tls_step(op, err);
    if (op->phase == PH_DONE) {
        op->delivered = true;
        if (st == RILL_OK) {
            *out = op->stream;
            op->stream = NULL;
        }
        return st;
    }
    if (rilli_remaining_ms(op->deadline) == 0) {
        op->delivered = true;
        return give_up(op, true, err);
    }
    if (op->phase == PH_TLS || op->phase == PH_PROXY)
        return st; /* the handshake's own WANT */
    return RILL_WANT_READ;
}

RILL_API void rill_connect_op_free(rill_connect_op *op)
{
    if (op)
        op_free(op);
}

RILL_API rill_status rill_connect(rill_ctx *ctx, const char *host, uint16_t port,
                                  const rill_connect_opts *opts, rill_stream **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "connect: out is NULL");
    *out = NULL;
    rill_connect_op *op = NULL;
    rill_status st = rill_connect_start(ctx, host, port, opts, &op, err);
    while (st == RILL_OK) {
        st = rill_connect_step(op, out, err);
        if (st != RILL_WANT_READ && st != RILL_WANT_WRITE)
            break;
        struct pollfd p = { .fd = -1 };
        int timeout = -1;
        if (rill_connect_poll_info(op, &p.fd, &p.events, &timeout) != RILL_OK)
            timeout = 0; /* finished meanwhile: the next step says how */
        if (p.fd < 0 && timeout < 0)
            timeout = 10; /* nothing to wait for: never sleep for good */
        if (poll(&p, p.fd >= 0 ? 1 : 0, timeout) < 0 && errno != EINTR) {
            st = rilli_error_set(err, RILL_E_IO, errno, "connect: poll failed");
            break;
        }
        st = RILL_OK;
    }
    rill_connect_op_free(op);
    return st;
}
