/* SPDX-License-Identifier: MIT */
/*
 * The resolver of a context: one c-ares channel driven by the threads that wait on it, the
 * lookups (rill_resolve, rill_resolve_many) and the DNS cache they fill (dns_cache.c). The only
 * file that sees c-ares.
 *
 * Locking: every c-ares call and every cache call is made with dns->lock held, so c-ares
 * callbacks always run with the lock held too. One waiting thread at a time drives the channel
 * (polls its sockets with the lock released, then processes them under the lock); the other
 * waiters sleep on dns->done and take over driving when the driver leaves. Concurrent lookups
 * of one name share one cache entry and so one query. The driver also polls dns->kick, an
 * eventfd that a thread starting a query (or answering one) writes while someone drives, so a
 * new query's socket and timeout are seen at once, not when the driver's poll returns.
 *
 * Non-blocking lookups (struct rilli_dns_lookup, for the connect machine) drive the channel in
 * their caller's steps (rilli_dns_wants, rilli_dns_process) and are woken through an eventfd of
 * their own when someone else's processing answers them.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "resolver.h"

/*
 * A response with a failure code, noted as it arrives (under the lock). c-ares 1.18 tries the
 * next server on SERVFAIL, NOTIMP and REFUSED and, when none is left, reports only "Could not
 * contact DNS servers", as if no server had answered: the notes say what one did answer.
 */
#define RCODE_NOTES 16
struct rcode_note {
    char name[256]; /* the question, lower case, without a trailing dot */
    int rcode;
};

struct rilli_dns {
    pthread_mutex_t lock;
    struct rcode_note notes[RCODE_NOTES];
    unsigned notes_next;
    pthread_cond_t done;
    ares_channel channel;
    bool driving;
    bool cancelling; /* inside ares_cancel: answers delivered now are partial, not cached */
    int cache_max_ttl_s;
    int negative_ttl_s;
    size_t window;
    struct rilli_dns_cache *cache;
    size_t pending; /* entries whose query is in flight */
    size_t waiting; /* waiters on those entries; 0 with pending > 0 means abandoned */
    uint64_t queries, cache_hits, merged;
    int kick; /* eventfd: wakes the driver's poll (see above) */
    /*
     * c-ares's sockets, registered by its socket-state callback (under the lock): whoever
     * drives waits on this one descriptor, which lives as long as the context, so no thread
     * ever polls or registers a socket c-ares may be closing in another thread, and a socket
     * re-opened under an old number is registered afresh.
     */
    int epfd;
    /*
     * Non-blocking lookups: one op at a time (named by its wake eventfd) watches c-ares's
     * sockets and processes them; the others wait on their eventfds alone. Were every op to
     * watch the shared sockets, a loop with hundreds of ops waiting on one cold name would
     * pass the kernel's limit on epoll paths to one file (500) and fail to register them.
     */
    int nb_driver;                    /* -1: none */
    struct rilli_dns_lookup *nb_wait; /* lookups with a wake eventfd, still unanswered */
};

/* A non-blocking lookup: a hold on one cache entry, and who to wake when it is answered. */
struct rilli_dns_lookup {
    struct rilli_dns *dns;
    struct rilli_dns_entry *entry;
    int wakefd;                    /* -1: none */
    struct rilli_dns_lookup *next; /* on entry->wakers while pending */
    struct rilli_dns_lookup **pprev;
    struct rilli_dns_lookup *nb_next; /* on dns->nb_wait while pending */
    struct rilli_dns_lookup **nb_pprev;
};

static void nb_unlink(struct rilli_dns_lookup *lk)
{
    if (!lk->nb_pprev)
        return;
    *lk->nb_pprev = lk->nb_next;
    if (lk->nb_next)
        lk->nb_next->nb_pprev = lk->nb_pprev;
    lk->nb_next = NULL;
    lk->nb_pprev = NULL;
}

static void wake(int fd)
{
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w; /* a full counter is still readable */
}

/*
 * Under the lock: the op that watched c-ares's sockets is gone (or has its answers): hand the
 * job to an op still waiting, and wake it so it asks rilli_dns_wants() again.
 */
static void nb_handover(struct rilli_dns *dns, int wakefd)
{
    if (dns->nb_driver != wakefd)
        return;
    dns->nb_driver = -1;
    for (struct rilli_dns_lookup *lk = dns->nb_wait; lk; lk = lk->nb_next) {
        if (lk->wakefd != wakefd) {
            dns->nb_driver = lk->wakefd;
            wake(lk->wakefd);
            return;
        }
    }
}

/* Wake the thread that drives the channel, if one does (under the lock). */
static void kick_driver(struct rilli_dns *dns)
{
    if (dns->driving && dns->kick >= 0) {
        uint64_t one = 1;
        ssize_t r = write(dns->kick, &one, sizeof one);
        (void)r; /* a full counter is still readable: the driver wakes anyway */
    }
}

/* One query in flight: what its callback needs. */
struct query {
    struct rilli_dns *dns;
    struct rilli_dns_entry *entry;
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status = ARES_SUCCESS;

static void library_init(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- DNS server lists ("127.0.0.1:5353,[::1]:5353") ---- */

static bool valid_port(const char *p, size_t len)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

static bool valid_ip(const char *p, size_t len, int af)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return inet_pton(af, buf, bin) == 1;
}

/*
 * c-ares takes a bad port modulo 65536 and an empty list as "no servers", so every entry is
 * checked here: IPv4[:PORT], [IPv6][:PORT] or a bare IPv6 address.
 */
static bool valid_server(const char *p, size_t len)
{
    if (len > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (!close || !valid_ip(p + 1, (size_t)(close - p - 1), AF_INET6))
            return false;
        size_t rest = len - (size_t)(close - p) - 1;
        return rest == 0 || (close[1] == ':' && valid_port(close + 2, rest - 1));
    }
    if (valid_ip(p, len, AF_INET) || valid_ip(p, len, AF_INET6))
        return true;
    const char *colon = memchr(p, ':', len);
    return colon && valid_ip(p, (size_t)(colon - p), AF_INET) &&
           valid_port(colon + 1, len - (size_t)(colon - p) - 1);
}

static rill_status check_servers(const char *csv, rill_error *err)
{
    const char *p = csv;
    do {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!valid_server(p, len)) {
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "ctx: bad DNS server \"%.*s\" in \"%.80s\" (want ADDR, "
                                   "ADDR:PORT or [IPv6]:PORT, port 1..65535)",
                                   (int)(len > 60 ? 60 : len), p, csv);
        }
        p = comma ? comma + 1 : NULL;
    } while (p);
    return RILL_OK;
}

/* ---- lifetime ---- */

void rilli_dns_free(struct rilli_dns *dns)
{
    if (!dns)
        return;
    if (dns->channel) {
        pthread_mutex_lock(&dns->lock);
        ares_cancel(dns->channel); /* callbacks release entries nobody waits for */
        ares_destroy(dns->channel);
        pthread_mutex_unlock(&dns->lock);
    }
    rilli_dns_cache_free(dns->cache);
    if (dns->kick >= 0)
        close(dns->kick);
    if (dns->epfd >= 0)
        close(dns->epfd);
    pthread_cond_destroy(&dns->done);
    pthread_mutex_destroy(&dns->lock);
    rilli_free(dns);
}

static rill_status init_sync(struct rilli_dns *dns, rill_error *err)
{
    pthread_condattr_t attr;
    if (pthread_mutex_init(&dns->lock, NULL) != 0)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: cannot create a lock");
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int r = pthread_cond_init(&dns->done, &attr);
    pthread_condattr_destroy(&attr);
    if (r != 0) {
        pthread_mutex_destroy(&dns->lock);
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: cannot create a condition variable");
    }
    return RILL_OK;
}

static void sock_state(void *data, ares_socket_t s, int readable, int writable);

/* The question name of DNS message @p msg, dotted and lower case; false when malformed. */
static bool question_name(const unsigned char *msg, size_t len, char *out, size_t cap)
{
    size_t at = 12, used = 0;
    while (at < len && msg[at] != 0) {
        size_t label = msg[at++];
        if (label > 63 || at + label > len || used + label + 2 > cap)
            return false;
        if (used)
            out[used++] = '.';
        for (size_t i = 0; i < label; i++) {
            unsigned char c = msg[at + i];
            out[used++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        at += label;
    }
    out[used] = '\0';
    return at < len;
}

/* c-ares's socket calls, the system's own; recvfrom also notes failure codes (above). */
/* c-ares leaves sockets made by these functions as they come: they must be non-blocking. */
static ares_socket_t dns_socket(int domain, int type, int protocol, void *arg)
{
    (void)arg;
    return socket(domain, type | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
}

static int dns_close(ares_socket_t fd, void *arg)
{
    (void)arg;
    return close(fd);
}

static int dns_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len, void *arg)
{
    (void)arg;
    return connect(fd, sa, len);
}

static ares_ssize_t dns_recvfrom(ares_socket_t fd, void *buf, size_t len, int flags,
                                 struct sockaddr *from, ares_socklen_t *from_len, void *arg)
{
    struct rilli_dns *dns = arg;
    ssize_t n = recvfrom(fd, buf, len, flags, from, from_len);
    const unsigned char *m = buf;
    /* UDP responses only (a TCP read may start mid-message): QR set, rcode 2, 4 or 5. */
    if (from && n >= 12 && (m[2] & 0x80)) {
        int rcode = m[3] & 0x0f;
        struct rcode_note *note = &dns->notes[dns->notes_next % RCODE_NOTES];
        if ((rcode == 2 || rcode == 4 || rcode == 5) &&
            question_name(m, (size_t)n, note->name, sizeof note->name)) {
            note->rcode = rcode;
            dns->notes_next++;
        }
    }
    return n;
}

/* sendmsg with MSG_NOSIGNAL: a DNS server that closed its TCP end never raises SIGPIPE. */
static ares_ssize_t dns_sendv(ares_socket_t fd, const struct iovec *iov, int n, void *arg)
{
    (void)arg;
    struct msghdr msg = { .msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)n };
    return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

static const struct ares_socket_functions dns_socket_functions = {
    dns_socket, dns_close, dns_connect, dns_recvfrom, dns_sendv,
};

/*
 * Under the lock: what a server answered @p name with, as static text, when its answer was a
 * failure code; NULL when none was noted. A name c-ares extended with a search domain counts.
 */
static const char *failure_answer(struct rilli_dns *dns, const char *name)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    for (unsigned i = 1; i <= RCODE_NOTES && i <= dns->notes_next; i++) {
        const struct rcode_note *note = &dns->notes[(dns->notes_next - i) % RCODE_NOTES];
        if (strncasecmp(note->name, name, len) != 0 ||
            (note->name[len] != '\0' && note->name[len] != '.'))
            continue;
        switch (note->rcode) {
        case 2: return "the DNS server answered SERVFAIL (it failed to resolve the name)";
        case 4: return "the DNS server answered NOTIMP (it does not do such queries)";
        default: return "the DNS server answered REFUSED (it does not resolve for us)";
        }
    }
    return NULL;
}

static rill_status init_channel(struct rilli_dns *dns, const rill_ctx_opts *opts, rill_error *err)
{
    struct ares_options ao;
    memset(&ao, 0, sizeof ao);
    ao.sock_state_cb = sock_state;
    ao.sock_state_cb_data = dns;
    int mask = ARES_OPT_SOCK_STATE_CB;
    if (opts->query_timeout_ms > 0) {
        ao.timeout = opts->query_timeout_ms;
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (opts->query_tries > 0) {
        ao.tries = opts->query_tries;
        mask |= ARES_OPT_TRIES;
    }
    int r = ares_init_options(&dns->channel, &ao, mask);
    if (r != ARES_SUCCESS) {
        dns->channel = NULL;
        return rilli_error_set(err, r == ARES_ENOMEM ? RILL_E_NOMEM : RILL_E_DNS, 0,
                               "ctx: cannot start the resolver: %s", ares_strerror(r));
    }
    ares_set_socket_functions(dns->channel, &dns_socket_functions, dns);
    if (!opts->dns_servers)
        return RILL_OK;
    rill_status st = check_servers(opts->dns_servers, err);
    if (st != RILL_OK)
        return st;
    r = ares_set_servers_ports_csv(dns->channel, opts->dns_servers);
    if (r != ARES_SUCCESS)
        return rilli_error_set(err, r == ARES_ENOMEM ? RILL_E_NOMEM : RILL_E_INVALID, 0,
                               "ctx: bad DNS server list \"%.80s\": %s", opts->dns_servers,
                               ares_strerror(r));
    return RILL_OK;
}

rill_status rilli_dns_new(const rill_ctx_opts *opts, struct rilli_dns **out, rill_error *err)
{
    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS)
        return rilli_error_set(err, RILL_E_DNS, 0, "ctx: c-ares library init failed: %s",
                               ares_strerror(library_status));
    struct rilli_dns *dns = rilli_calloc(1, sizeof *dns);
    if (!dns)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    rill_status st = init_sync(dns, err);
    if (st != RILL_OK) {
        rilli_free(dns);
        return st;
    }
    dns->nb_driver = -1;
    dns->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    dns->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (dns->kick < 0 || dns->epfd < 0)
        st = rilli_error_set(err, RILL_E_IO, errno, "ctx: cannot create an %s",
                             dns->kick < 0 ? "eventfd" : "epoll descriptor");
    dns->cache_max_ttl_s = opts->cache_max_ttl_s;
    dns->negative_ttl_s = opts->negative_ttl_s;
    dns->window = (size_t)opts->max_queries_in_flight;
    dns->cache = st == RILL_OK ? rilli_dns_cache_new((size_t)opts->dns_cache_max) : NULL;
    if (st == RILL_OK && !dns->cache)
        st = rilli_error_set(err, RILL_E_NOMEM, 0, "ctx: out of memory");
    if (st == RILL_OK)
        st = init_channel(dns, opts, err);
    if (st != RILL_OK) {
        rilli_dns_free(dns);
        return st;
    }
    *out = dns;
    return RILL_OK;
}

void rilli_dns_stats(struct rilli_dns *dns, rill_ctx_stats *stats)
{
    pthread_mutex_lock(&dns->lock);
    stats->queries = dns->queries;
    stats->cache_hits = dns->cache_hits;
    stats->merged = dns->merged;
    rilli_dns_cache_counts(dns->cache, &stats->cache_entries, &stats->cache_evictions);
    pthread_mutex_unlock(&dns->lock);
}

/* ---- lookups ---- */

/* The shortest TTL of the answer, CNAMEs of the chain included; negative TTLs count as 0. */
static int min_ttl(const struct ares_addrinfo *res, size_t *count)
{
    bool seen = false;
    int ttl = 0;
    *count = 0;
    for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next) {
        if (n->ai_family != AF_INET && n->ai_family != AF_INET6)
            continue;
        (*count)++;
        int t = n->ai_ttl < 0 ? 0 : n->ai_ttl;
        if (!seen || t < ttl)
            ttl = t;
        seen = true;
    }
    for (const struct ares_addrinfo_cname *c = res ? res->cnames : NULL; c && seen; c = c->next) {
        int t = c->ttl < 0 ? 0 : c->ttl;
        if (t < ttl)
            ttl = t;
    }
    return ttl;
}

/* c-ares callback, run with dns->lock held (every c-ares call is made under it). */
static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct query *q = arg;
    struct rilli_dns *dns = q->dns;
    struct rilli_dns_entry *e = q->entry;
    rilli_free(q);
    size_t count = 0;
    int ttl = min_ttl(res, &count);
    dns->pending--;
    dns->waiting -= (size_t)e->waiters;
    rill_status st;
    const char *reason = NULL;
    struct rilli_ip *ips = NULL;
    size_t n = 0;
    int keep = 0;
    if (status == ARES_SUCCESS && count > 0) {
        ips = rilli_calloc(count, sizeof *ips);
        if (!ips) {
            st = RILL_E_NOMEM;
            reason = "out of memory";
        } else {
            for (const struct ares_addrinfo_node *node = res->nodes; node; node = node->ai_next) {
                if (rilli_ip_from_sockaddr(node->ai_addr, &ips[n]))
                    n++;
            }
            st = RILL_OK;
            keep = ttl < dns->cache_max_ttl_s ? ttl : dns->cache_max_ttl_s;
        }
    } else if (status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        st = RILL_E_DNS;
        reason = status == ARES_ENOTFOUND ? "no such name (NXDOMAIN)"
                                          : "no address of the wanted family";
        keep =
            dns->negative_ttl_s < dns->cache_max_ttl_s ? dns->negative_ttl_s : dns->cache_max_ttl_s;
    } else {
        /* Failures of the servers or the network are not cached: the next lookup asks again. */
        st = status == ARES_ETIMEOUT ? RILL_E_TIMEOUT
             : status == ARES_ENOMEM ? RILL_E_NOMEM
                                     : RILL_E_DNS;
        reason = ares_strerror(status);
        /* Newer c-ares says it (ESERVFAIL, EREFUSED); 1.18 says the servers were not reached. */
        const char *answered = status == ARES_ECONNREFUSED || status == ARES_ESERVFAIL ||
                                       status == ARES_EREFUSED || status == ARES_ENOTIMP
                                   ? failure_answer(dns, e->name)
                                   : NULL;
        if (answered)
            reason = answered;
    }
    /* c-ares ends a cancelled lookup with what it has (say, A without AAAA): a waiter may use
     * it, but it is not the whole answer, so it is not cached. */
    if (dns->cancelling)
        keep = 0;
    if (res)
        ares_freeaddrinfo(res);
    /* Non-blocking lookups waiting for it: wake them (they hold e, so it stays). */
    while (e->wakers) {
        struct rilli_dns_lookup *lk = e->wakers;
        wake(lk->wakefd);
        e->wakers = lk->next;
        lk->next = NULL;
        lk->pprev = NULL;
        nb_unlink(lk);
    }
    /* Every waiter gave up (deadline) or the context is being freed: nobody reads it, and an
     * answer not to be kept is freed here. */
    rilli_dns_cache_answer(dns->cache, e, st, reason, ips, n, keep);
    pthread_cond_broadcast(&dns->done);
    kick_driver(dns);
}

/* Under the lock: the ms until c-ares's next timeout (its sockets are all in dns->epfd). */
static int channel_timeout(struct rilli_dns *dns)
{
    struct timeval maxtv = { .tv_sec = 3600 }, tv;
    struct timeval *tvp = ares_timeout(dns->channel, &maxtv, &tv);
    return (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
}

/* c-ares's socket-state callback (under the lock): keep dns->epfd watching its sockets. */
static void sock_state(void *data, ares_socket_t s, int readable, int writable)
{
    struct rilli_dns *dns = data;
    if (!readable && !writable) {
        (void)epoll_ctl(dns->epfd, EPOLL_CTL_DEL, s, NULL);
        return;
    }
    struct epoll_event ev = { .events = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u),
                              .data.fd = s };
    /* A number closed and re-opened was dropped from the set by the close: add it anew. */
    if (epoll_ctl(dns->epfd, EPOLL_CTL_MOD, s, &ev) < 0)
        (void)epoll_ctl(dns->epfd, EPOLL_CTL_ADD, s, &ev);
}

/* Under the lock: process what c-ares's sockets have for it, and the timers that are due. */
static void process_ready(struct rilli_dns *dns)
{
    struct epoll_event evs[16]; /* c-ares has one socket per server and kind (UDP, TCP) */
    int n = epoll_wait(dns->epfd, evs, (int)(sizeof evs / sizeof evs[0]), 0);
    for (int i = 0; i < n; i++) {
        bool rd = (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
        bool wr = (evs[i].events & EPOLLOUT) != 0;
        ares_process_fd(dns->channel, rd ? evs[i].data.fd : ARES_SOCKET_BAD,
                        wr ? evs[i].data.fd : ARES_SOCKET_BAD);
    }
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* due timeouts */
}

/* Drive the channel once: wait (lock released) for its sockets or its next timeout. */
static void drive_once(struct rilli_dns *dns, int64_t deadline)
{
    int left = rilli_remaining_ms(deadline), wait_ms = channel_timeout(dns);
    if (left >= 0 && left < wait_ms)
        wait_ms = left;
    struct pollfd pfd[2] = { { .fd = dns->epfd, .events = POLLIN },
                             { .fd = dns->kick, .events = POLLIN } };
    pthread_mutex_unlock(&dns->lock);
    (void)poll(pfd, 2, wait_ms); /* whatever it says, processing below finds what is due */
    pthread_mutex_lock(&dns->lock);
    if (pfd[1].revents) {
        uint64_t v;
        ssize_t got = read(dns->kick, &v, sizeof v);
        (void)got;
    }
    process_ready(dns);
}

/*
 * One round of waiting, under the lock: drive the channel if nobody does, else sleep until
 * the driver reports progress or the deadline passes.
 */
static void wait_round(struct rilli_dns *dns, int64_t deadline)
{
    if (!dns->driving) {
        dns->driving = true;
        drive_once(dns, deadline);
        dns->driving = false;
        pthread_cond_broadcast(&dns->done); /* progress, and let another waiter drive */
        return;
    }
    if (deadline < 0) {
        pthread_cond_wait(&dns->done, &dns->lock);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int left = rilli_remaining_ms(deadline);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&dns->done, &dns->lock, &ts);
}

/*
 * Under the lock: the entry for @p name, from the cache, joined while in flight, or with a new
 * query started; held as one more waiter. NULL when out of memory.
 */
static struct rilli_dns_entry *lookup_start(struct rilli_dns *dns, const char *name, int family)
{
    struct rilli_dns_entry *e = rilli_dns_cache_find(dns->cache, name, family);
    if (e) {
        if (e->ready) {
            dns->cache_hits++;
        } else {
            dns->merged++;
            dns->waiting++;
        }
        rilli_dns_cache_hold(dns->cache, e);
        return e;
    }
    struct query *q = rilli_malloc(sizeof *q);
    e = q ? rilli_dns_cache_add(dns->cache, name, family) : NULL;
    if (!e) {
        rilli_free(q);
        return NULL;
    }
    q->dns = dns;
    q->entry = e;
    dns->pending++;
    dns->waiting++;
    dns->queries++;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rilli_dns_cache_hold(dns->cache, e); /* before the call: the answer may come at once */
    ares_getaddrinfo(dns->channel, name, NULL, &hints, on_answer, q);
    kick_driver(dns); /* a new socket or timeout the driver's poll does not know of */
    return e;
}

/*
 * Under the lock: stop waiting for @p e. When it is ready, copy its answer (the IPs to *ips,
 * or its reason) and return its status; when it is still pending (deadline), leave it to a
 * later lookup or to on_answer, and return RILL_E_TIMEOUT.
 */
static rill_status lookup_finish(struct rilli_dns *dns, struct rilli_dns_entry *e,
                                 struct rilli_ip **ips, size_t *count, char *reason,
                                 size_t reason_len)
{
    if (!e->ready) {
        dns->waiting--;
        rilli_dns_cache_release(dns->cache, e);
        reason[0] = '\0';
        return RILL_E_TIMEOUT;
    }
    rill_status st = e->status;
    snprintf(reason, reason_len, "%s", e->reason);
    if (st == RILL_OK) {
        *ips = rilli_calloc(e->count, sizeof **ips);
        if (*ips) {
            memcpy(*ips, e->ips, e->count * sizeof **ips);
            *count = e->count;
        } else {
            st = RILL_E_NOMEM;
            snprintf(reason, reason_len, "out of memory");
        }
    }
    rilli_dns_cache_release(dns->cache, e);
    return st;
}

/*
 * Under the lock, after a waiter gave up at its deadline: when nobody waits for any query any
 * more, cancel everything outstanding, so no c-ares retry schedule outlives its callers (the
 * callbacks free the abandoned entries). c-ares has no per-query cancel, hence all or none.
 */
static void cancel_if_abandoned(struct rilli_dns *dns)
{
    if (dns->pending == 0 || dns->waiting > 0)
        return;
    dns->cancelling = true;
    ares_cancel(dns->channel);
    dns->cancelling = false;
}

/* Look @p name up (cache, shared query, or a new one) and copy the answer to *ips. */
static rill_status lookup(struct rilli_dns *dns, const char *name, int family, int64_t deadline,
                          struct rilli_ip **ips, size_t *count, char *reason, size_t reason_len)
{
    pthread_mutex_lock(&dns->lock);
    struct rilli_dns_entry *e = lookup_start(dns, name, family);
    if (!e) {
        pthread_mutex_unlock(&dns->lock);
        snprintf(reason, reason_len, "out of memory");
        return RILL_E_NOMEM;
    }
    while (!e->ready && rilli_remaining_ms(deadline) != 0)
        wait_round(dns, deadline);
    rill_status st = lookup_finish(dns, e, ips, count, reason, reason_len);
    cancel_if_abandoned(dns); /* queries abandoned by others, or by us; e may be freed now */
    pthread_mutex_unlock(&dns->lock);
    return st;
}

RILL_API rill_status rill_resolve(rill_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                                  rill_addr **addrs, size_t *count, rill_error *err)
{
    if (!addrs || !count)
        return rilli_error_set(err, RILL_E_INVALID, 0, "resolve: addrs or count is NULL");
    *addrs = NULL;
    *count = 0;
    return rilli_resolve(ctx, host, port, 0, timeout_ms, addrs, count, err);
}

rill_status rilli_resolve(rill_ctx *ctx, const char *host, uint16_t port, int family,
                          int timeout_ms, rill_addr **addrs, size_t *count, rill_error *err)
{
    rill_status st = rilli_host_check(host, port, err);
    if (st != RILL_OK)
        return st;
    if (timeout_ms < RILL_TIMEOUT_NONE)
        return rilli_error_set(err, RILL_E_INVALID, 0, "resolve: timeout %d is below -1",
                               timeout_ms);
    if (family == 0 && ctx)
        family = rilli_ctx_family(ctx);
    struct rilli_ip one;
    if (rilli_ip_parse(host, &one)) /* numeric: never touches DNS */
        return rilli_addrs_build(host, &one, 1, port, family, addrs, count, err);
    const struct rilli_ip *fixed = NULL;
    size_t nfixed = 0;
    if (ctx && rilli_ctx_override(ctx, host, port, &fixed, &nfixed))
        return rilli_addrs_build(host, fixed, nfixed, port, family, addrs, count, err);
    struct rilli_ip loopback[2];
    if (rilli_is_localhost(host)) /* never asks DNS, whatever the network would say */
        return rilli_addrs_build(host, loopback, rilli_loopback_ips(loopback), port, family, addrs,
                                 count, err);
    if (!ctx)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "resolve: \"%.80s\" is a name and no context was given", host);
    struct rilli_ip *ips = NULL;
    size_t n = 0;
    char reason[128] = "";
    st = lookup(rilli_ctx_dns(ctx), host, family, rilli_deadline(timeout_ms), &ips, &n, reason,
                sizeof reason);
    if (st == RILL_E_TIMEOUT && reason[0] == '\0')
        return rilli_error_set(err, st, 0, "resolve: %.100s: no answer within %d ms", host,
                               timeout_ms);
    if (st != RILL_OK)
        return rilli_error_set(err, st, 0, "resolve: %.100s: %s", host, reason);
    st = rilli_addrs_build(host, ips, n, port, family, addrs, count, err);
    rilli_free(ips);
    return st;
}

/* ---- non-blocking lookups ---- */

rill_status rilli_dns_lookup_new(rill_ctx *ctx, const char *name, int family,
                                 struct rilli_dns_lookup **out, rill_error *err)
{
    struct rilli_dns *dns = rilli_ctx_dns(ctx);
    struct rilli_dns_lookup *lk = rilli_calloc(1, sizeof *lk);
    if (!lk)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "resolve: out of memory");
    pthread_mutex_lock(&dns->lock);
    lk->dns = dns;
    lk->wakefd = -1;
    lk->entry = lookup_start(dns, name, family);
    pthread_mutex_unlock(&dns->lock);
    if (!lk->entry) {
        rilli_free(lk);
        return rilli_error_set(err, RILL_E_NOMEM, 0, "resolve: out of memory");
    }
    *out = lk;
    return RILL_OK;
}

void rilli_dns_lookup_wake(struct rilli_dns_lookup *lk, int wakefd)
{
    struct rilli_dns *dns = lk->dns;
    pthread_mutex_lock(&dns->lock);
    lk->wakefd = wakefd;
    struct rilli_dns_entry *e = lk->entry;
    if (!e->ready && !lk->pprev) {
        lk->next = e->wakers;
        if (lk->next)
            lk->next->pprev = &lk->next;
        lk->pprev = &e->wakers;
        e->wakers = lk;
        lk->nb_next = dns->nb_wait;
        if (lk->nb_next)
            lk->nb_next->nb_pprev = &lk->nb_next;
        lk->nb_pprev = &dns->nb_wait;
        dns->nb_wait = lk;
    }
    pthread_mutex_unlock(&dns->lock);
}

bool rilli_dns_lookup_done(struct rilli_dns_lookup *lk, rill_status *st, const char **reason,
                           const struct rilli_ip **ips, size_t *count)
{
    struct rilli_dns *dns = lk->dns;
    pthread_mutex_lock(&dns->lock);
    const struct rilli_dns_entry *e = lk->entry;
    bool ready = e->ready;
    pthread_mutex_unlock(&dns->lock);
    if (!ready)
        return false;
    /* An answered entry no longer changes, and our hold keeps it. */
    *st = e->status;
    *reason = e->reason;
    *ips = e->ips;
    *count = e->status == RILL_OK ? e->count : 0;
    return true;
}

void rilli_dns_lookup_free(struct rilli_dns_lookup *lk)
{
    if (!lk)
        return;
    struct rilli_dns *dns = lk->dns;
    pthread_mutex_lock(&dns->lock);
    if (lk->pprev) {
        *lk->pprev = lk->next;
        if (lk->next)
            lk->next->pprev = lk->pprev;
    }
    nb_unlink(lk);
    struct rilli_dns_entry *e = lk->entry;
    if (!e->ready)
        dns->waiting--;
    rilli_dns_cache_release(dns->cache, e);
    cancel_if_abandoned(dns);
    pthread_mutex_unlock(&dns->lock);
    rilli_free(lk);
}

int rilli_dns_wants(rill_ctx *ctx, int wakefd, int *timeout_ms)
{
    struct rilli_dns *dns = rilli_ctx_dns(ctx);
    *timeout_ms = -1;
    if (wakefd < 0)
        return -1;
    int fd = -1;
    pthread_mutex_lock(&dns->lock);
    if (dns->nb_driver < 0)
        dns->nb_driver = wakefd;
    if (dns->nb_driver == wakefd) {
        fd = dns->epfd;
        *timeout_ms = channel_timeout(dns);
    }
    pthread_mutex_unlock(&dns->lock);
    return fd;
}

void rilli_dns_release(rill_ctx *ctx, int wakefd)
{
    struct rilli_dns *dns = rilli_ctx_dns(ctx);
    pthread_mutex_lock(&dns->lock);
    nb_handover(dns, wakefd);
    pthread_mutex_unlock(&dns->lock);
}

void rilli_dns_process(rill_ctx *ctx)
{
    struct rilli_dns *dns = rilli_ctx_dns(ctx);
    pthread_mutex_lock(&dns->lock);
    process_ready(dns);
    pthread_mutex_unlock(&dns->lock);
}

/* ---- batches ---- */

static void set_result(rill_resolve_result *r, rill_status st, const rill_error *e)
{
    r->status = st;
    if (st != RILL_OK)
        snprintf(r->message, sizeof r->message, "%s", e->msg);
}

/* Turn a finished lookup of result @p r into its addresses or its error. */
static void finish_result(rill_resolve_result *r, rill_status st, struct rilli_ip *ips, size_t n,
                          const char *reason, uint16_t port, int family)
{
    rill_error e = { 0 };
    if (st == RILL_OK)
        st = rilli_addrs_build(r->host, ips, n, port, family, &r->addrs, &r->count, &e);
    else if (st == RILL_E_TIMEOUT && reason[0] == '\0')
        rilli_error_set(&e, st, 0, "resolve: %.80s: no answer in time", r->host);
    else
        rilli_error_set(&e, st, 0, "resolve: %.80s: %s", r->host, reason);
    rilli_free(ips);
    set_result(r, st, &e);
}

RILL_API rill_status rill_resolve_many(rill_ctx *ctx, const char *const *hosts, size_t n,
                                       uint16_t port, int timeout_ms, rill_resolve_result *results)
{
    if ((!results && n) || (!hosts && n))
        return RILL_E_INVALID;
    /* Every result is valid to free from here on, whatever the outcome. */
    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        results[i].host = hosts[i];
        results[i].status = RILL_E_INVALID;
    }
    if (!ctx || timeout_ms < RILL_TIMEOUT_NONE)
        return RILL_E_INVALID;
    struct rilli_dns *dns = rilli_ctx_dns(ctx);
    int family = rilli_ctx_family(ctx);
    int64_t deadline = rilli_deadline(timeout_ms);
    size_t *need = n ? rilli_calloc(n, sizeof *need) : NULL;
    size_t *active = rilli_calloc(dns->window, sizeof *active);
    struct rilli_dns_entry **ent = n ? rilli_calloc(n, sizeof(struct rilli_dns_entry *)) : NULL;
    if ((n && (!need || !ent)) || !active) {
        rilli_free(need);
        rilli_free(active);
        rilli_free(ent);
        return RILL_E_NOMEM;
    }
    /* Names that need no query are answered first, without the lock. */
    size_t need_count = 0;
    for (size_t i = 0; i < n; i++) {
        rill_resolve_result *r = &results[i];
        rill_error e = { 0 };
        struct rilli_ip one;
        const struct rilli_ip *fixed = NULL;
        size_t nfixed = 0;
        struct rilli_ip loopback[2];
        rill_status st = rilli_host_check(hosts[i], port, &e);
        if (st != RILL_OK)
            set_result(r, st, &e);
        else if (rilli_ip_parse(hosts[i], &one))
            set_result(r,
                       rilli_addrs_build(hosts[i], &one, 1, port, family, &r->addrs, &r->count, &e),
                       &e);
        else if (rilli_ctx_override(ctx, hosts[i], port, &fixed, &nfixed))
            set_result(
                r,
                rilli_addrs_build(hosts[i], fixed, nfixed, port, family, &r->addrs, &r->count, &e),
                &e);
        else if (rilli_is_localhost(hosts[i]))
            set_result(r,
                       rilli_addrs_build(hosts[i], loopback, rilli_loopback_ips(loopback), port,
                                         family, &r->addrs, &r->count, &e),
                       &e);
        else
            need[need_count++] = i;
    }

    /* The rest go out through a window of queries in flight, all under one deadline. */
    size_t started = 0, finished = 0, nactive = 0;
    rill_status overall = RILL_OK;
    pthread_mutex_lock(&dns->lock);
    while (finished < need_count) {
        while (nactive < dns->window && started < need_count) {
            size_t i = need[started++];
            ent[i] = lookup_start(dns, hosts[i], family);
            if (!ent[i]) {
                finish_result(&results[i], RILL_E_NOMEM, NULL, 0, "out of memory", port, 0);
                finished++;
                continue;
            }
            active[nactive++] = i;
        }
        bool expired = rilli_remaining_ms(deadline) == 0;
        for (size_t k = nactive; k-- > 0;) {
            size_t i = active[k];
            if (!ent[i]->ready && !expired)
                continue;
            struct rilli_ip *ips = NULL;
            size_t cnt = 0;
            char reason[128];
            rill_status st = lookup_finish(dns, ent[i], &ips, &cnt, reason, sizeof reason);
            finish_result(&results[i], st, ips, cnt, reason, port, family);
            ent[i] = NULL;
            active[k] = active[--nactive];
            finished++;
        }
        if (expired) {
            /* Out of time: names not started get what the cache has, else a timeout. */
            for (; started < need_count; started++, finished++) {
                size_t i = need[started];
                struct rilli_dns_entry *e = rilli_dns_cache_find(dns->cache, hosts[i], family);
                if (!e || !e->ready) {
                    finish_result(&results[i], RILL_E_TIMEOUT, NULL, 0, "", port, 0);
                    continue;
                }
                dns->cache_hits++;
                rilli_dns_cache_hold(dns->cache, e);
                struct rilli_ip *ips = NULL;
                size_t cnt = 0;
                char reason[128];
                rill_status st = lookup_finish(dns, e, &ips, &cnt, reason, sizeof reason);
                finish_result(&results[i], st, ips, cnt, reason, port, family);
            }
            break;
        }
        if (nactive > 0)
            wait_round(dns, deadline);
    }
    cancel_if_abandoned(dns);
    pthread_mutex_unlock(&dns->lock);
    rilli_free(need);
    rilli_free(active);
    rilli_free(ent);
    for (size_t i = 0; i < n && overall == RILL_OK; i++)
        if (results[i].status == RILL_E_TIMEOUT)
            overall = RILL_E_TIMEOUT;
    return overall;
}

RILL_API void rill_resolve_results_free(rill_resolve_result *results, size_t n)
{
    for (size_t i = 0; results && i < n; i++) {
        rill_addrs_free(results[i].addrs);
        results[i].addrs = NULL;
        results[i].count = 0;
    }
}
