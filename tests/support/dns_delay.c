/* SPDX-License-Identifier: MIT */
/*
 * The scripted DNS responder of dns_delay.h: one thread polls the UDP socket, the TCP listener,
 * the TCP connections and a wake-up pipe, and sends each queued answer when it falls due.
 * Queries are parsed within their length and dropped when malformed; answers are built from the
 * rules under a lock that the test's thread takes to change them.
 */
#include "dns_delay.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

#define MAX_LIVE    8
#define MAX_RULES   64
#define MAX_LOG     4096
#define MAX_PENDING 256
#define MAX_CONNS   16
#define NAME_MAX_   256  /* presentation form, NUL included */
#define MSG_MAX     1024 /* our answers: at most 8 addresses and an SOA */
#define QUERY_MAX   512  /* the largest query we accept (UDP and TCP) */

struct rule {
    char name[NAME_MAX_]; /* lower case, no trailing dot */
    int type;
    int delay_ms;
    int rcode;
    int ttl;
    int naddrs;
    unsigned char addr[RT_DNSD_MAX_ADDRS][16];
};

struct logged {
    char name[NAME_MAX_];
    int type;
    int tcp;
    int64_t at_us;
};

struct pending {
    int64_t due_us;
    int conn; /* -1: UDP, else the TCP connection slot */
    unsigned conn_serial;
    struct sockaddr_in to;
    size_t len;
    unsigned char msg[MSG_MAX + 2];
};

struct conn {
    int fd; /* -1: free slot */
    unsigned serial;
    size_t have;
    unsigned char buf[QUERY_MAX + 2];
};

struct rt_dnsd {
    int udp_fd;
    int tcp_fd;
    int wake[2];
    uint16_t port;
    char servers[32];
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock; /* rules, log and counters */
    struct rule rules[MAX_RULES];
    int nrules;
    int truncate_udp;
    struct logged log[MAX_LOG];
    int nlog;
    int log_lost;
    int malformed;
    int answered;
    /* The thread's own state. */
    struct pending pending[MAX_PENDING];
    int npending;
    struct conn conns[MAX_CONNS];
    unsigned next_serial;
};

static rt_dnsd *live[MAX_LIVE];

/* ---- names and rules ---- */

/* Lower-case copy of @p name without one trailing dot; -1 if it does not fit or is empty. */
static int normalise(const char *name, char *out)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len >= NAME_MAX_)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out[len] = '\0';
    return 0;
}

/* Under the lock: the rule for @p name and @p type, or NULL. */
static struct rule *find_rule(rt_dnsd *d, const char *name, int type)
{
    for (int i = 0; i < d->nrules; i++) {
        if (d->rules[i].type == type && strcmp(d->rules[i].name, name) == 0)
            return &d->rules[i];
    }
    return NULL;
}

static int name_known(rt_dnsd *d, const char *name)
{
    for (int i = 0; i < d->nrules; i++) {
        if (strcmp(d->rules[i].name, name) == 0)
            return 1;
    }
    return 0;
}

static int parse_addr(int type, const char *addr, unsigned char *out)
{
    if (type == RT_DNSD_A)
        return inet_pton(AF_INET, addr, out) == 1 ? 0 : -1;
    if (type == RT_DNSD_AAAA)
        return inet_pton(AF_INET6, addr, out) == 1 ? 0 : -1;
    return -1; /* other types answer without addresses */
}

int rt_dnsd_set(rt_dnsd *d, const char *name, int type, const char *addr, int delay_ms, int rcode,
                int ttl)
{
    char norm[NAME_MAX_];
    unsigned char bin[16];
    if (!d || !name || normalise(name, norm) != 0 || type < 1 || type > 65535 ||
        delay_ms < RT_DNSD_NEVER || rcode < 0 || rcode > 15 || ttl < 0) {
        fprintf(stderr, "rt_dnsd_set: bad argument (name %s, type %d, delay %d, rcode %d)\n",
                name ? name : "(null)", type, delay_ms, rcode);
        return -1;
    }
    if (addr && parse_addr(type, addr, bin) != 0) {
        fprintf(stderr, "rt_dnsd_set: \"%s\" is not an address for type %d\n", addr, type);
        return -1;
    }
    pthread_mutex_lock(&d->lock);
    struct rule *r = find_rule(d, norm, type);
    if (!r && d->nrules < MAX_RULES)
        r = &d->rules[d->nrules++];
    if (r) {
        memset(r, 0, sizeof *r);
        memcpy(r->name, norm, sizeof r->name);
        r->type = type;
        r->delay_ms = delay_ms;
        r->rcode = rcode;
        r->ttl = ttl;
        if (addr) {
            memcpy(r->addr[0], bin, sizeof bin);
            r->naddrs = 1;
        }
    }
    pthread_mutex_unlock(&d->lock);
    if (!r)
        fprintf(stderr, "rt_dnsd_set: more than %d rules\n", MAX_RULES);
    return r ? 0 : -1;
}

int rt_dnsd_add(rt_dnsd *d, const char *name, int type, const char *addr)
{
    char norm[NAME_MAX_];
    unsigned char bin[16];
    if (!d || !name || !addr || normalise(name, norm) != 0 || parse_addr(type, addr, bin) != 0) {
        fprintf(stderr, "rt_dnsd_add: bad argument (name %s, type %d, addr %s)\n",
                name ? name : "(null)", type, addr ? addr : "(null)");
        return -1;
    }
    pthread_mutex_lock(&d->lock);
    struct rule *r = find_rule(d, norm, type);
    int ok = r && r->naddrs < RT_DNSD_MAX_ADDRS;
    if (ok)
        memcpy(r->addr[r->naddrs++], bin, sizeof bin);
    pthread_mutex_unlock(&d->lock);
    if (!ok)
        fprintf(stderr, "rt_dnsd_add: no rule for %s type %d, or it has %d addresses\n", name, type,
                RT_DNSD_MAX_ADDRS);
    return ok ? 0 : -1;
}

void rt_dnsd_truncate_udp(rt_dnsd *d, int on)
{
    pthread_mutex_lock(&d->lock);
    d->truncate_udp = on;
    pthread_mutex_unlock(&d->lock);
}

/* ---- the log ---- */

static int log_matches(const struct logged *l, const char *norm, int type)
{
    return (type == 0 || l->type == type) && strcmp(l->name, norm) == 0;
}

static int count_where(rt_dnsd *d, const char *name, int type, int tcp_only)
{
    char norm[NAME_MAX_];
    if (normalise(name, norm) != 0)
        return 0;
    int n = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->nlog; i++) {
        if (log_matches(&d->log[i], norm, type) && (!tcp_only || d->log[i].tcp))
            n++;
    }
    int lost = d->log_lost;
    pthread_mutex_unlock(&d->lock);
    if (lost)
        fprintf(stderr, "rt_dnsd: %d queries were not logged (log full)\n", lost);
    return n;
}

int rt_dnsd_count(rt_dnsd *d, const char *name, int type)
{
    return count_where(d, name, type, 0);
}

int rt_dnsd_count_tcp(rt_dnsd *d, const char *name, int type)
{
    return count_where(d, name, type, 1);
}

int rt_dnsd_arrivals(rt_dnsd *d, const char *name, int type, int64_t *us, int max)
{
    char norm[NAME_MAX_];
    if (normalise(name, norm) != 0)
        return 0;
    int n = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->nlog; i++) {
        if (!log_matches(&d->log[i], norm, type))
            continue;
        if (n < max)
            us[n] = d->log[i].at_us;
        n++;
    }
    pthread_mutex_unlock(&d->lock);
    return n;
}

int rt_dnsd_malformed(rt_dnsd *d)
{
    pthread_mutex_lock(&d->lock);
    int n = d->malformed;
    pthread_mutex_unlock(&d->lock);
    return n;
}

int rt_dnsd_answered(rt_dnsd *d)
{
    pthread_mutex_lock(&d->lock);
    int n = d->answered;
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* ---- parsing a query and building its answer ---- */

struct question {
    size_t name_len; /* wire length of the name, root label included */
    size_t end;      /* offset just past QCLASS */
    int type;
    int qclass;
    char name[NAME_MAX_]; /* lower case presentation form, no trailing dot */
    size_t label_at[128]; /* offsets (from the name's start) of its labels */
    int nlabels;
};

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/*
 * Parse the header and the one question of @p msg (@p len bytes). 0 on success; -1 for
 * anything malformed: a response, an opcode other than QUERY, not exactly one question, a
 * compressed or over-long name, a name with bytes that are not printable, a short message.
 */
static int parse_query(const unsigned char *msg, size_t len, struct question *q)
{
    if (len < 12 || len > QUERY_MAX)
        return -1;
    if ((msg[2] & 0x80) != 0 || ((msg[2] >> 3) & 0x0f) != 0)
        return -1; /* QR set, or not a standard query */
    if (get16(msg + 4) != 1)
        return -1;
    size_t off = 12, text = 0;
    q->nlabels = 0;
    for (;;) {
        if (off >= len)
            return -1;
        unsigned label = msg[off];
        if (label == 0) {
            off++;
            break;
        }
        if (label > 63 || q->nlabels >= 128)
            return -1; /* 0xc0: compression has no place in a question; 0x40: reserved */
        if (off + 1 + label > len || text + label + 1 >= NAME_MAX_)
            return -1;
        q->label_at[q->nlabels++] = off - 12;
        if (text > 0)
            q->name[text++] = '.';
        for (unsigned i = 0; i < label; i++) {
            unsigned char c = msg[off + 1 + i];
            if (c <= 0x20 || c >= 0x7f || c == '.')
                return -1;
            q->name[text++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        }
        off += 1 + label;
    }
    if (off - 12 > 255 || off + 4 > len)
        return -1;
    q->name[text] = '\0';
    q->name_len = off - 12;
    q->type = (int)get16(msg + off);
    q->qclass = (int)get16(msg + off + 2);
    q->end = off + 4;
    return 0;
}

/*
 * The SOA of the zone the question falls in (its last two labels) as an authority record at
 * @p p, with names compressed into the question. Returns its length.
 */
static size_t put_soa(unsigned char *p, const struct question *q, int ttl)
{
    size_t zone = q->nlabels >= 2 ? q->label_at[q->nlabels - 2] : 0;
    unsigned zone_ptr = 0xc000u | (unsigned)(12 + zone);
    size_t n = 0;
    put16(p + n, zone_ptr);
    n += 2;
    put16(p + n, 6); /* SOA */
    put16(p + n + 2, 1);
    put32(p + n + 4, (uint32_t)ttl);
    size_t rdlen_at = n + 8;
    n += 10;
    size_t rdata = n;
    static const char mname[] = "\x02ns";
    static const char rname[] = "\x0ahostmaster";
    memcpy(p + n, mname, sizeof mname - 1);
    n += sizeof mname - 1;
    put16(p + n, zone_ptr);
    n += 2;
    memcpy(p + n, rname, sizeof rname - 1);
    n += sizeof rname - 1;
    put16(p + n, zone_ptr);
    n += 2;
    const uint32_t times[5] = { 1, 3600, 600, 86400, (uint32_t)ttl };
    for (int i = 0; i < 5; i++, n += 4)
        put32(p + n, times[i]);
    put16(p + rdlen_at, (unsigned)(n - rdata));
    return n;
}

/*
 * Under the lock: the answer to @p q in @p out (at most MSG_MAX bytes) and when to send it.
 * Returns the answer's length, or 0 when the rule says never to answer.
 */
static size_t build_answer(rt_dnsd *d, const unsigned char *query, const struct question *q,
                           int udp, unsigned char *out, int *delay_ms)
{
    const struct rule *r = q->qclass == 1 ? find_rule(d, q->name, q->type) : NULL;
    int rcode = 0, naddrs = 0, ttl = 5;
    *delay_ms = 0;
    if (q->qclass != 1)
        rcode = RT_DNSD_REFUSED;
    else if (r) {
        rcode = r->rcode;
        naddrs = rcode == 0 ? r->naddrs : 0;
        ttl = r->ttl;
        *delay_ms = r->delay_ms;
    } else if (!name_known(d, q->name))
        rcode = RT_DNSD_NXDOMAIN;
    if (*delay_ms == RT_DNSD_NEVER)
        return 0;
    int truncated = udp && d->truncate_udp;
    if (truncated)
        naddrs = 0;
    int soa =
        !truncated && q->qclass == 1 && (rcode == RT_DNSD_NXDOMAIN || (rcode == 0 && naddrs == 0));

    memcpy(out, query, 2); /* ID */
    out[2] = (unsigned char)(0x80 | 0x04 | (truncated ? 0x02 : 0) | (query[2] & 0x01));
    out[3] = (unsigned char)(0x80 | rcode); /* RA, RCODE */
    put16(out + 4, 1);
    put16(out + 6, (unsigned)naddrs);
    put16(out + 8, soa ? 1u : 0u);
    put16(out + 10, 0);
    size_t n = 12;
    memcpy(out + n, query + 12, q->end - 12); /* the question as it came */
    n = q->end;
    int alen = q->type == RT_DNSD_A ? 4 : 16;
    for (int i = 0; i < naddrs; i++) {
        put16(out + n, 0xc00c); /* the question's name */
        put16(out + n + 2, (unsigned)q->type);
        put16(out + n + 4, 1);
        put32(out + n + 6, (uint32_t)ttl);
        put16(out + n + 10, (unsigned)alen);
        memcpy(out + n + 12, r->addr[i], (size_t)alen);
        n += 12 + (size_t)alen;
    }
    if (soa)
        n += put_soa(out + n, q, ttl);
    return n;
}

/* ---- the thread ---- */

static void queue_answer(rt_dnsd *d, const unsigned char *msg, size_t len, int delay_ms, int conn,
                         const struct sockaddr_in *to)
{
    if (d->npending >= MAX_PENDING)
        return; /* dropped: the resolver asks again */
    struct pending *p = &d->pending[d->npending++];
    p->due_us = rt_now_us() + (int64_t)delay_ms * 1000;
    p->conn = conn;
    p->conn_serial = conn >= 0 ? d->conns[conn].serial : 0;
    if (to)
        p->to = *to;
    if (conn >= 0) {
        put16(p->msg, (unsigned)len);
        memcpy(p->msg + 2, msg, len);
        p->len = len + 2;
    } else {
        memcpy(p->msg, msg, len);
        p->len = len;
    }
}

/* Log, answer or drop one query that came over UDP (@p conn -1) or TCP connection @p conn. */
static void handle_query(rt_dnsd *d, const unsigned char *msg, size_t len, int conn,
                         const struct sockaddr_in *from)
{
    struct question q;
    unsigned char out[MSG_MAX];
    int delay_ms = 0;
    size_t n = 0;
    int64_t now = rt_now_us();
    pthread_mutex_lock(&d->lock);
    if (parse_query(msg, len, &q) != 0) {
        d->malformed++;
        pthread_mutex_unlock(&d->lock);
        return;
    }
    if (d->nlog < MAX_LOG) {
        struct logged *l = &d->log[d->nlog++];
        memcpy(l->name, q.name, sizeof l->name);
        l->type = q.type;
        l->tcp = conn >= 0;
        l->at_us = now;
    } else {
        d->log_lost++;
    }
    n = build_answer(d, msg, &q, conn < 0, out, &delay_ms);
    pthread_mutex_unlock(&d->lock);
    if (n > 0)
        queue_answer(d, out, n, delay_ms, conn, from);
}

static void read_udp(rt_dnsd *d)
{
    for (;;) {
        unsigned char buf[QUERY_MAX + 1];
        struct sockaddr_in from;
        memset(&from, 0, sizeof from);
        socklen_t flen = sizeof from;
        ssize_t n =
            recvfrom(d->udp_fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        if (flen != sizeof from || from.sin_family != AF_INET) {
            pthread_mutex_lock(&d->lock);
            d->malformed++;
            pthread_mutex_unlock(&d->lock);
            continue;
        }
        handle_query(d, buf, (size_t)n, -1, &from);
    }
}

static void close_conn(rt_dnsd *d, int i)
{
    close(d->conns[i].fd);
    d->conns[i].fd = -1;
    d->conns[i].have = 0;
}

static void accept_tcp(rt_dnsd *d)
{
    for (;;) {
        int fd = accept4(d->tcp_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++) {
            if (d->conns[i].fd < 0)
                slot = i;
        }
        if (slot < 0) {
            close(fd); /* too many at once: the resolver sees the close and gives up fast */
            continue;
        }
        d->conns[slot].fd = fd;
        d->conns[slot].serial = ++d->next_serial;
        d->conns[slot].have = 0;
    }
}

/* Read what connection @p i has; handle every whole length-prefixed query in it. */
static void read_conn(rt_dnsd *d, int i)
{
    struct conn *c = &d->conns[i];
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            close_conn(d, i);
            return;
        }
        if (n < 0)
            return;
        c->have += (size_t)n;
        while (c->have >= 2) {
            size_t want = get16(c->buf);
            if (want == 0 || want > QUERY_MAX) {
                pthread_mutex_lock(&d->lock);
                d->malformed++;
                pthread_mutex_unlock(&d->lock);
                close_conn(d, i); /* the framing is lost: nothing after it can be trusted */
                return;
            }
            if (c->have < want + 2)
                break;
            handle_query(d, c->buf + 2, want, i, NULL);
            memmove(c->buf, c->buf + 2 + want, c->have - 2 - want);
            c->have -= 2 + want;
        }
    }
}

/* Send every answer that is due; the time until the next one in ms (-1: none queued). */
static int send_due(rt_dnsd *d)
{
    int64_t now = rt_now_us();
    int64_t next = -1;
    int i = 0;
    while (i < d->npending) {
        struct pending *p = &d->pending[i];
        if (p->due_us > now) {
            if (next < 0 || p->due_us < next)
                next = p->due_us;
            i++;
            continue;
        }
        ssize_t sent = -1;
        if (p->conn < 0) {
            sent = sendto(d->udp_fd, p->msg, p->len, MSG_DONTWAIT, (struct sockaddr *)&p->to,
                          sizeof p->to);
        } else if (d->conns[p->conn].fd >= 0 && d->conns[p->conn].serial == p->conn_serial) {
            /* Small answers on a fresh socket buffer go out whole; a short send is a failure. */
            sent = send(d->conns[p->conn].fd, p->msg, p->len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent != (ssize_t)p->len)
                close_conn(d, p->conn);
        }
        if (sent == (ssize_t)p->len) {
            pthread_mutex_lock(&d->lock);
            d->answered++;
            pthread_mutex_unlock(&d->lock);
        }
        d->pending[i] = d->pending[--d->npending];
    }
    if (next < 0)
        return -1;
    int64_t left = next - rt_now_us();
    return left <= 0 ? 0 : (int)((left + 999) / 1000);
}

static void *dnsd_main(void *arg)
{
    rt_dnsd *d = arg;
    for (;;) {
        int timeout = send_due(d);
        struct pollfd pfd[3 + MAX_CONNS];
        int who[3 + MAX_CONNS];
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){ .fd = d->wake[0], .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = d->udp_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = d->tcp_fd, .events = POLLIN };
        for (int i = 0; i < MAX_CONNS; i++) {
            if (d->conns[i].fd >= 0) {
                who[n] = i;
                pfd[n++] = (struct pollfd){ .fd = d->conns[i].fd, .events = POLLIN };
            }
        }
        int r = poll(pfd, n, timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        if (pfd[0].revents)
            break;
        if (pfd[1].revents)
            read_udp(d);
        if (pfd[2].revents)
            accept_tcp(d);
        for (nfds_t i = 3; i < n; i++) {
            if (pfd[i].revents && d->conns[who[i]].fd == pfd[i].fd)
                read_conn(d, who[i]);
        }
    }
    return NULL;
}

/* ---- start and stop ---- */

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

/* UDP and a listening TCP socket on one free port of 127.0.0.1; 0 or -1 with @p why. */
static int bind_both(rt_dnsd *d, char *why, size_t len)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (u < 0) {
            snprintf(why, len, "dns delay responder: socket: %s", strerror(errno));
            return -1;
        }
        struct sockaddr_in sa = loopback(0);
        socklen_t slen = sizeof sa;
        if (bind(u, (struct sockaddr *)&sa, sizeof sa) != 0 ||
            getsockname(u, (struct sockaddr *)&sa, &slen) != 0) {
            snprintf(why, len, "dns delay responder: bind 127.0.0.1: %s", strerror(errno));
            close(u);
            return -1;
        }
        uint16_t port = ntohs(sa.sin_port);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (t < 0) {
            snprintf(why, len, "dns delay responder: socket: %s", strerror(errno));
            close(u);
            return -1;
        }
        int one = 1;
        (void)setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sa = loopback(port);
        if (port >= 1024 && bind(t, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(t, 16) == 0) {
            d->udp_fd = u;
            d->tcp_fd = t;
            d->port = port;
            return 0;
        }
        close(t);
        close(u);
    }
    snprintf(why, len, "dns delay responder: no port free for UDP and TCP after 50 tries");
    return -1;
}

static void release(rt_dnsd *d)
{
    if (d->udp_fd >= 0)
        close(d->udp_fd);
    if (d->tcp_fd >= 0)
        close(d->tcp_fd);
    for (int i = 0; i < MAX_CONNS; i++) {
        if (d->conns[i].fd >= 0)
            close(d->conns[i].fd);
    }
    if (d->wake[0] >= 0)
        close(d->wake[0]);
    if (d->wake[1] >= 0)
        close(d->wake[1]);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

rt_dnsd *rt_dnsd_try_start(char *why, size_t len)
{
    /* A "search" line in the machine's resolv.conf would send the test names out with a
     * suffix too; contexts made from here on use none. */
    setenv("LOCALDOMAIN", "", 1);
    rt_dnsd *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(why, len, "dns delay responder: out of memory");
        return NULL;
    }
    d->udp_fd = d->tcp_fd = d->wake[0] = d->wake[1] = -1;
    for (int i = 0; i < MAX_CONNS; i++)
        d->conns[i].fd = -1;
    pthread_mutex_init(&d->lock, NULL);
    if (bind_both(d, why, len) != 0) {
        release(d);
        return NULL;
    }
    if (pipe2(d->wake, O_CLOEXEC) != 0) {
        snprintf(why, len, "dns delay responder: pipe2: %s", strerror(errno));
        release(d);
        return NULL;
    }
    snprintf(d->servers, sizeof d->servers, "127.0.0.1:%u", (unsigned)d->port);
    int rc = pthread_create(&d->thread, NULL, dnsd_main, d);
    if (rc != 0) {
        snprintf(why, len, "dns delay responder: pthread_create: %s", strerror(rc));
        release(d);
        return NULL;
    }
    d->thread_started = true;
    rt_track((void **)live, MAX_LIVE, d, rt_dnsd_stop_all, "dns delay responder");
    return d;
}

rt_dnsd *rt_dnsd_start(void)
{
    char why[200];
    rt_dnsd *d = rt_dnsd_try_start(why, sizeof why);
    ck_assert_msg(d != NULL, "%s", why);
    return d;
}

const char *rt_dnsd_servers(const rt_dnsd *d)
{
    return d->servers;
}

uint16_t rt_dnsd_port(const rt_dnsd *d)
{
    return d->port;
}

void rt_dnsd_stop(rt_dnsd *d)
{
    if (!d)
        return;
    rt_untrack((void **)live, MAX_LIVE, d);
    if (d->thread_started) {
        (void)!write(d->wake[1], "x", 1);
        pthread_join(d->thread, NULL);
    }
    release(d);
}

void rt_dnsd_stop_all(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        rt_dnsd_stop(live[i]);
}
