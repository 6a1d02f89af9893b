/* SPDX-License-Identifier: MIT */
/* Helpers for the Happy Eyeballs suites: trace, family server, blackhole namespace. */
#include "eyeballs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

/* ---- the event trace ---- */

void rt_trace_on_event(void *arg, const rill_connect_event *ev)
{
    rt_trace *t = arg;
    if (t->n >= RT_TRACE_MAX) {
        t->overflow = 1;
        return;
    }
    rt_event *c = &t->ev[t->n++];
    memset(c, 0, sizeof *c);
    c->type = ev->type;
    snprintf(c->host, sizeof c->host, "%s", ev->host ? ev->host : "(null)");
    snprintf(c->addr, sizeof c->addr, "%s", ev->addr ? ev->addr : "(null)");
    c->count = ev->count;
    c->status = ev->status;
    snprintf(c->message, sizeof c->message, "%s", ev->message ? ev->message : "(null)");
    c->elapsed_ms = ev->elapsed_ms;
    c->family = ev->family;
}

void rt_trace_attach(rt_trace *t, rill_connect_opts *o)
{
    memset(t, 0, sizeof *t);
    o->on_event = rt_trace_on_event;
    o->on_event_arg = t;
}

const char *rt_event_name(rill_connect_event_type type)
{
    switch (type) {
    case RILL_EV_RESOLVING: return "RESOLVING";
    case RILL_EV_RESOLVED: return "RESOLVED";
    case RILL_EV_ATTEMPT: return "ATTEMPT";
    case RILL_EV_ATTEMPT_FAILED: return "ATTEMPT_FAILED";
    case RILL_EV_CONNECTED: return "CONNECTED";
    case RILL_EV_ANSWER: return "ANSWER";
    case RILL_EV_TLS_HANDSHAKE: return "TLS_HANDSHAKE";
    case RILL_EV_TLS_DONE: return "TLS_DONE";
    case RILL_EV_PROXY_TLS: return "PROXY_TLS";
    case RILL_EV_PROXY_TLS_DONE: return "PROXY_TLS_DONE";
    case RILL_EV_PROXY_HANDSHAKE: return "PROXY_HANDSHAKE";
    case RILL_EV_PROXY_DONE: return "PROXY_DONE";
    }
    return "?";
}

const char *rt_trace_text(const rt_trace *t, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < t->n && used + 1 < len; i++) {
        const rt_event *e = &t->ev[i];
        char detail[160] = "";
        if (e->type == RILL_EV_ANSWER)
            snprintf(detail, sizeof detail, "v%d n=%zu%s%.80s", e->family, e->count,
                     e->status != RILL_OK ? " " : "", e->status != RILL_OK ? e->message : "");
        else if (e->type == RILL_EV_RESOLVING)
            snprintf(detail, sizeof detail, "%.80s", e->host);
        else if (e->type == RILL_EV_RESOLVED)
            snprintf(detail, sizeof detail, "n=%zu", e->count);
        else
            snprintf(detail, sizeof detail, "%s v%d%s%.80s", e->addr, e->family,
                     e->status != RILL_OK ? " " : "", e->status != RILL_OK ? e->message : "");
        int n = snprintf(buf + used, len - used, "%s%s(%s @%lldms)", i ? " " : "",
                         rt_event_name(e->type), detail, (long long)e->elapsed_ms);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (t->overflow && used + 1 < len)
        snprintf(buf + used, len - used, " ...(more than %d events)", RT_TRACE_MAX);
    return buf;
}

int rt_trace_find(const rt_trace *t, rill_connect_event_type type, int family, int from)
{
    for (int i = from < 0 ? 0 : from; i < t->n; i++) {
        if (t->ev[i].type == type && (family == 0 || t->ev[i].family == family))
            return i;
    }
    return -1;
}

int rt_trace_count(const rt_trace *t, rill_connect_event_type type, int family)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        n += t->ev[i].type == type && (family == 0 || t->ev[i].family == family);
    return n;
}

int rt_addr_family(const char *addr)
{
    if (!addr)
        return 0;
    if (addr[0] == '[')
        return 6;
    if (strchr(addr, '.') != NULL)
        return 4;
    return 0;
}

/* ---- checks ---- */

void rt_verdict_add(rt_verdict *v, const char *fmt, ...)
{
    size_t used = strlen(v->why);
    if (v->failed && used + 3 < sizeof v->why) {
        memcpy(v->why + used, "; ", 3);
        used += 2;
    }
    v->failed++;
    if (used + 1 >= sizeof v->why)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->why + used, sizeof v->why - used, fmt, ap);
    va_end(ap);
}

/* ---- the family server ---- */

struct rt_famsrv {
    rill_listener *l4, *l6;
    uint16_t port;
    rt_famsrv_mode mode;
    int wake[2];
    pthread_t thread;
    pthread_mutex_t lock;
    int accepted4, accepted6, served;
};

/* Serve one accepted stream as the mode says; 1 when it was served completely. */
static int serve(rt_famsrv *s, rill_stream *c, int family)
{
    if (s->mode == RT_FAMSRV_TELL) {
        const char byte = family == 4 ? '4' : '6';
        return rill_write_all(c, &byte, 1, NULL) == RILL_OK && rill_flush(c) == RILL_OK;
    }
    uint32_t len = 0;
    if (rill_read_u32be(c, &len) != RILL_OK || len > (1u << 20))
        return 0;
    uint64_t sum = 0;
    unsigned char buf[4096];
    while (len > 0) {
        size_t want = len < sizeof buf ? len : sizeof buf;
        if (rill_read_full(c, buf, want, NULL) != RILL_OK)
            return 0;
        sum = rt_checksum(sum, buf, want);
        len -= (uint32_t)want;
    }
    return rill_write_u64be(c, sum) == RILL_OK && rill_flush(c) == RILL_OK;
}

static void *famsrv_main(void *arg)
{
    rt_famsrv *s = arg;
    for (;;) {
        struct pollfd pfd[3];
        rill_listener *which[3] = { NULL, NULL, NULL };
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){ .fd = s->wake[0], .events = POLLIN };
        if (s->l4) {
            which[n] = s->l4;
            pfd[n++] = (struct pollfd){ .fd = rill_listener_fd(s->l4), .events = POLLIN };
        }
        if (s->l6) {
            which[n] = s->l6;
            pfd[n++] = (struct pollfd){ .fd = rill_listener_fd(s->l6), .events = POLLIN };
        }
        int r = poll(pfd, n, -1);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        if (pfd[0].revents)
            break;
        for (nfds_t i = 1; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            rill_stream *c = NULL;
            rill_error err;
            if (rill_accept(which[i], 0, &c, &err) != RILL_OK)
                continue;
            int family = which[i] == s->l4 ? 4 : 6;
            pthread_mutex_lock(&s->lock);
            if (family == 4)
                s->accepted4++;
            else
                s->accepted6++;
            pthread_mutex_unlock(&s->lock);
            int ok = serve(s, c, family);
            (void)rill_close(c);
            pthread_mutex_lock(&s->lock);
            s->served += ok;
            pthread_mutex_unlock(&s->lock);
        }
    }
    return NULL;
}

static rill_listener *listen_at(const char *addr, uint16_t port, rill_tls_config *tls, char *why,
                                size_t len)
{
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.backlog = 1024;                /* the 200-op test connects all at once */
    lo.stream.read_timeout_ms = 5000; /* a client that stops halfway cannot stall the thread */
    lo.stream.write_timeout_ms = 5000;
    lo.stream.tls = tls;
    rill_listener *l = NULL;
    rill_error err;
    if (rill_listen(addr, port, &lo, &l, &err) != RILL_OK) {
        snprintf(why, len, "listen on %s: %s", addr, err.msg);
        return NULL;
    }
    return l;
}

rt_famsrv *rt_famsrv_try_start(int families, rt_famsrv_mode mode, rill_tls_config *tls, char *why,
                               size_t len)
{
    char v6why[160];
    why[0] = '\0';
    int have6 = rt_ipv6_loopback(v6why, sizeof v6why);
    if ((families & RT_FAM6) && !have6) {
        snprintf(why, len, "famsrv: IPv6 loopback unavailable: %s", v6why);
        return NULL;
    }
    rt_famsrv *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(why, len, "famsrv: out of memory");
        return NULL;
    }
    s->mode = mode;
    for (int attempt = 0; attempt < 20 && !s->port; attempt++) {
        rill_listener *a = listen_at("127.0.0.1", 0, tls, why, len);
        if (!a)
            break;
        uint16_t port = rill_listener_port(a);
        rill_listener *b = have6 ? listen_at("::1", port, tls, why, len) : NULL;
        if (have6 && !b) {
            rill_listener_free(a);
            continue; /* ::1 has that port taken: another one */
        }
        if (families & RT_FAM4)
            s->l4 = a;
        else
            rill_listener_free(a);
        if (families & RT_FAM6)
            s->l6 = b;
        else
            rill_listener_free(b);
        s->port = port;
    }
    if (!s->port) {
        if (!why[0])
            snprintf(why, len, "famsrv: no port free on 127.0.0.1 and ::1 after 20 tries");
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    if (pipe2(s->wake, O_CLOEXEC) != 0) {
        snprintf(why, len, "famsrv: pipe2: %s", strerror(errno));
        goto fail;
    }
    int rc = pthread_create(&s->thread, NULL, famsrv_main, s);
    if (rc != 0) {
        snprintf(why, len, "famsrv: pthread_create: %s", strerror(rc));
        close(s->wake[0]);
        close(s->wake[1]);
        goto fail;
    }
    return s;
fail:
    rill_listener_free(s->l4);
    rill_listener_free(s->l6);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

uint16_t rt_famsrv_port(const rt_famsrv *s)
{
    return s->port;
}

int rt_famsrv_accepted(rt_famsrv *s, int family)
{
    pthread_mutex_lock(&s->lock);
    int n = family == 4 ? s->accepted4 : s->accepted6;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int rt_famsrv_served(rt_famsrv *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->served;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void rt_famsrv_stop(rt_famsrv *s)
{
    if (!s)
        return;
    (void)!write(s->wake[1], "x", 1);
    pthread_join(s->thread, NULL);
    close(s->wake[0]);
    close(s->wake[1]);
    rill_listener_free(s->l4);
    rill_listener_free(s->l6);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int rt_famsrv_read_family(rill_stream *s, char *why, size_t len)
{
    char byte = 0;
    int read_ms = 0, write_ms = 0;
    rill_get_timeouts(s, &read_ms, &write_ms);
    if (rill_set_timeouts(s, 3000, write_ms) != RILL_OK) {
        snprintf(why, len, "set_timeouts: %s", rill_errmsg(s));
        return -1;
    }
    rill_status st = rill_read_full(s, &byte, 1, NULL);
    if (rill_set_timeouts(s, read_ms, write_ms) != RILL_OK && st == RILL_OK) {
        snprintf(why, len, "set_timeouts: %s", rill_errmsg(s));
        return -1;
    }
    if (st != RILL_OK) {
        snprintf(why, len, "reading the server's family byte: %s: %s", rill_strerror(st),
                 rill_errmsg(s));
        return -1;
    }
    if (byte != '4' && byte != '6') {
        snprintf(why, len, "the server sent 0x%02x, not '4' or '6'", (unsigned char)byte);
        return -1;
    }
    return byte - '0';
}

/* ---- a namespace with blackholed addresses ---- */

int rt_netns_blackhole(char *why, size_t len)
{
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(why, len, "unshare(CLONE_NEWNET): %s (needs root or user namespaces)",
                 strerror(errno));
        return -1;
    }
    /* The veth peer has no address and another MAC: frames to the bogus neighbour entries
     * are dropped there, so SYNs to the blackholed addresses vanish without an answer. */
    static const char *const steps[] = {
        "ip link set lo up",
        "ip link add rill0 type veth peer name rill1",
        "ip link set rill0 up",
        "ip link set rill1 up",
        "ip -4 addr add 198.18.0.1/24 dev rill0",
        "ip -6 addr add fd00::1/64 dev rill0 nodad",
        "ip -4 neigh add " RT_BLACKHOLE4_A " lladdr 02:00:00:00:00:99 dev rill0 nud permanent",
        "ip -4 neigh add " RT_BLACKHOLE4_B " lladdr 02:00:00:00:00:99 dev rill0 nud permanent",
        "ip -6 neigh add " RT_BLACKHOLE6_A " lladdr 02:00:00:00:00:99 dev rill0 nud permanent",
        "ip -6 neigh add " RT_BLACKHOLE6_B " lladdr 02:00:00:00:00:99 dev rill0 nud permanent",
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "%s >/dev/null 2>&1", steps[i]);
        if (system(cmd) != 0) {
            snprintf(why, len, "\"%s\" failed", steps[i]);
            return -1;
        }
    }
    char v6why[160];
    if (!rt_ipv6_loopback(v6why, sizeof v6why)) {
        snprintf(why, len, "no ::1 in the namespace: %s", v6why);
        return -1;
    }
    return 0;
}
