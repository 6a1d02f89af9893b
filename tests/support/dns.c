/* SPDX-License-Identifier: MIT */
/*
 * DNS peers for the suites: dnsmasq as a child process, a silent server, a delaying relay, a
 * scripted server with one answer for every name. Loopback only. See dns.h.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define MAX_LIVE 8

static const char *const dnsmasq_paths[] = { "/usr/sbin/dnsmasq", "/sbin/dnsmasq",
                                             "/usr/local/sbin/dnsmasq" };

/* The name dnsmasq answers for start-up and ordering probes; tests never look it up. */
#define PROBE_NAME "ready.rill.test"

struct rt_dns {
    pid_t pid;
    uint16_t port;
    int log_fd; /* dnsmasq's stderr and log (--log-facility=-); the file is already unlinked */
    char servers[32];
};

struct rt_dns_silent {
    int udp_fd;
    int tcp_fd;
    int received;
    char servers[32];
};

#define RELAY_SLOTS 64
#define RELAY_MSG   4096

struct relay_pending {
    int64_t due_us;
    struct sockaddr_in from;
    size_t len;
    unsigned char msg[RELAY_MSG];
};

struct relay_sent {
    int used;
    unsigned id;
    struct sockaddr_in from;
};

struct rt_dns_relay {
    int client_fd; /* where clients send queries */
    int up_fd;     /* connected to dnsmasq */
    int stop_fds[2];
    int delay_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    int received;
    char servers[32];
    size_t npending;
    struct relay_pending pending[RELAY_SLOTS];
    struct relay_sent sent[RELAY_SLOTS];
    size_t next_sent;
};

struct rt_dns_fixed {
    int fd;
    int stop_fds[2];
    int rcode;
    int ttl_s;
    bool has_a, has_aaaa;
    unsigned char a[4], aaaa[16];
    pthread_t thread;
    pthread_mutex_t lock;
    int received;
    char servers[32];
};

static rt_dns *live_dns[MAX_LIVE];
static rt_dns_silent *live_silent[MAX_LIVE];
static rt_dns_relay *live_relay[MAX_LIVE];
static rt_dns_fixed *live_fixed[MAX_LIVE];

static void track(void **table, void *p)
{
    rt_track(table, MAX_LIVE, p, rt_dns_stop_all, "dns harness");
}

static void untrack(void **table, const void *p)
{
    rt_untrack(table, MAX_LIVE, p);
}

/* ---- sockets ---- */

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    socklen_t len = sizeof sa;
    ck_assert_msg(getsockname(fd, (struct sockaddr *)&sa, &len) == 0, "getsockname: %s",
                  strerror(errno));
    return ntohs(sa.sin_port);
}

/*
 * Bind a UDP socket and a listening TCP socket on 127.0.0.1 and one free port (the kernel picks
 * it for UDP; TCP takes the same number or we try again). Returns the port.
 */
static uint16_t bind_pair(int *udp_fd, int *tcp_fd)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_msg(u >= 0, "socket: %s", strerror(errno));
        struct sockaddr_in sa = loopback(0);
        ck_assert_msg(bind(u, (struct sockaddr *)&sa, sizeof sa) == 0, "bind udp: %s",
                      strerror(errno));
        uint16_t port = bound_port(u);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_msg(t >= 0, "socket: %s", strerror(errno));
        sa = loopback(port);
        if (port >= 1024 && bind(t, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(t, 16) == 0) {
            *udp_fd = u;
            *tcp_fd = t;
            return port;
        }
        close(t);
        close(u);
    }
    ck_abort_msg("dns harness: no free port for UDP and TCP on 127.0.0.1 after 50 tries");
    return 0;
}

/* A query for @p name, type A, recursion desired. Returns its length. */
static size_t build_query(unsigned char *buf, size_t cap, unsigned id, const char *name)
{
    ck_assert_uint_lt(strlen(name) + 18, cap);
    size_t n = 0;
    buf[n++] = (unsigned char)(id >> 8);
    buf[n++] = (unsigned char)id;
    buf[n++] = 0x01; /* RD */
    buf[n++] = 0x00;
    buf[n++] = 0;
    buf[n++] = 1; /* QDCOUNT */
    memset(buf + n, 0, 6);
    n += 6;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t label = dot ? (size_t)(dot - p) : strlen(p);
        buf[n++] = (unsigned char)label;
        memcpy(buf + n, p, label);
        n += label;
        p += label;
        if (*p == '.')
            p++;
    }
    buf[n++] = 0;
    buf[n++] = 0;
    buf[n++] = 1; /* A */
    buf[n++] = 0;
    buf[n++] = 1; /* IN */
    return n;
}

/* Ask 127.0.0.1:@p port for @p name; the rcode of the answer, or -1 if none came in time. */
static int probe(uint16_t port, const char *name, int timeout_ms)
{
    static unsigned counter;
    unsigned id = ((unsigned)getpid() * 31u + ++counter) & 0xffffu;
    unsigned char q[512], a[4096];
    size_t qlen = build_query(q, sizeof q, id, name);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = loopback(port);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s",
                  strerror(errno));
    int rcode = -1;
    if (send(fd, q, qlen, 0) == (ssize_t)qlen) {
        int64_t end = rt_now_us() + (int64_t)timeout_ms * 1000;
        for (;;) {
            int64_t left = end - rt_now_us();
            if (left <= 0)
                break;
            struct pollfd pfd = { .fd = fd, .events = POLLIN };
            int r = poll(&pfd, 1, (int)((left + 999) / 1000));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            ssize_t n = recv(fd, a, sizeof a, 0);
            if (n < 0)
                break; /* ECONNREFUSED: nobody there yet */
            if (n >= 12 && ((unsigned)a[0] << 8 | a[1]) == id) {
                rcode = a[3] & 0x0f;
                break;
            }
        }
    }
    close(fd);
    return rcode;
}

/* ---- dnsmasq ---- */

static const char *find_dnsmasq(void)
{
    for (size_t i = 0; i < sizeof dnsmasq_paths / sizeof dnsmasq_paths[0]; i++) {
        if (access(dnsmasq_paths[i], X_OK) == 0)
            return dnsmasq_paths[i];
    }
    return NULL;
}

static void write_config(const char *path, uint16_t port)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "dns harness: cannot write %s: %s", path, strerror(errno));
    fprintf(f,
            "port=%u\n"
            "listen-address=127.0.0.1\n"
            "bind-interfaces\n"
            "no-resolv\n"
            "no-hosts\n"
            "no-poll\n"
            "user=root\n"
            "group=root\n"
            "pid-file=\n"
            "log-queries\n"
            "log-facility=-\n"
            "local=/" RT_DNS_DOMAIN "/\n"
            "local-ttl=%d\n"
            "host-record=" RT_DNS_BOTH ",127.0.0.1,::1,%d\n"
            "host-record=" RT_DNS_V4 ",127.0.0.1,%d\n"
            "host-record=" RT_DNS_V6 ",::1,%d\n"
            "host-record=" RT_DNS_SHORT ",127.0.0.1,::1,%d\n"
            "host-record=" PROBE_NAME ",127.0.0.1,%d\n"
            "cname=" RT_DNS_ALIAS "," RT_DNS_ALIAS_HOP "\n"
            "cname=" RT_DNS_ALIAS_HOP "," RT_DNS_BOTH "\n"
            "address=/" RT_DNS_WILD "/127.0.0.1\n"
            "address=/" RT_DNS_WILD "/::1\n",
            (unsigned)port, RT_DNS_TTL_S, RT_DNS_TTL_S, RT_DNS_TTL_S, RT_DNS_TTL_S,
            RT_DNS_SHORT_TTL_S, RT_DNS_TTL_S);
    ck_assert_msg(fclose(f) == 0, "dns harness: writing %s: %s", path, strerror(errno));
}

/* The first @p cap - 1 bytes of dnsmasq's output, NUL-terminated. */
static void read_log(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    buf[n > 0 ? (size_t)n : 0] = '\0';
}

static void reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    int64_t end = rt_now_us() + 2000000;
    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        if (rt_now_us() > end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            return;
        }
        usleep(2000);
    }
}

/*
 * Start dnsmasq on @p port with a configuration in a fresh directory. Its log goes to stderr,
 * a file we keep open; the directory and files are removed as soon as dnsmasq answers, so a
 * test that dies leaves nothing behind. 1: answering; 0: port taken (try another); aborts
 * otherwise.
 */
static int launch(rt_dns *d, const char *exe, uint16_t port)
{
    char dir[64], conf[128], log_path[128], conf_arg[160];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(conf, sizeof conf, "%s/dnsmasq.conf", dir);
    snprintf(log_path, sizeof log_path, "%s/dnsmasq.log", dir);
    snprintf(conf_arg, sizeof conf_arg, "--conf-file=%s", conf);
    write_config(conf, port);
    d->log_fd = open(log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ck_assert_msg(d->log_fd >= 0, "dns harness: %s: %s", log_path, strerror(errno));

    char *argv[] = { (char *)(uintptr_t)exe, "--keep-in-foreground", conf_arg, NULL };
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(d->log_fd, 1) < 0 || dup2(d->log_fd, 2) < 0)
            _exit(127);
        execv(exe, argv);
        _exit(127);
    }
    d->pid = pid;

    int up = 0;
    int64_t end = rt_now_us() + 5000000;
    while (!up && rt_now_us() < end) {
        int wstatus = 0;
        if (waitpid(pid, &wstatus, WNOHANG) == pid) {
            d->pid = 0;
            break;
        }
        up = probe(port, PROBE_NAME, 100) == 0;
        if (!up)
            usleep(10000);
    }
    unlink(conf);
    unlink(log_path);
    rmdir(dir);
    if (up)
        return 1;

    char text[2048];
    read_log(d->log_fd, text, sizeof text);
    close(d->log_fd);
    d->log_fd = -1;
    if (d->pid == 0 && strstr(text, "in use") != NULL)
        return 0;
    reap(d->pid);
    ck_abort_msg("dns harness: %s on 127.0.0.1:%u %s: %s", exe, (unsigned)port,
                 d->pid ? "did not answer within 5 s" : "exited at start-up", text);
    return 0;
}

rt_dns *rt_dns_start(void)
{
    /*
     * A "search" line in the machine's resolv.conf would make c-ares also try the test names
     * with that domain appended, which the harness's dnsmasq refuses; the tests must not
     * depend on the machine, so contexts made after this use no search domains.
     */
    setenv("LOCALDOMAIN", "", 1);
    const char *exe = find_dnsmasq();
    ck_assert_msg(exe != NULL,
                  "dns harness: dnsmasq not found (/usr/sbin/dnsmasq): install Debian's "
                  "dnsmasq-base (scripts/test does)");
    rt_dns *d = calloc(1, sizeof *d);
    ck_assert_ptr_nonnull(d);
    d->log_fd = -1;
    track((void **)live_dns, d);

    for (int attempt = 0; attempt < 10; attempt++) {
        int u, t;
        uint16_t port = bind_pair(&u, &t);
        close(u);
        close(t);
        if (launch(d, exe, port)) {
            d->port = port;
            snprintf(d->servers, sizeof d->servers, "127.0.0.1:%u", (unsigned)port);
            return d;
        }
    }
    ck_abort_msg("dns harness: dnsmasq found every port taken (10 tries)");
    return NULL;
}

const char *rt_dns_servers(const rt_dns *d)
{
    return d->servers;
}

uint16_t rt_dns_port(const rt_dns *d)
{
    return d->port;
}

/* Whether a dnsmasq log line records a query for @p name (of @p type, NULL: any). */
static int is_query_line(const char *line, const char *name, const char *type)
{
    const char *q = strstr(line, ": query[");
    if (!q)
        return 0;
    q += strlen(": query[");
    const char *close_br = strchr(q, ']');
    if (!close_br || close_br[1] != ' ')
        return 0;
    if (type && (strlen(type) != (size_t)(close_br - q) || strncmp(q, type, strlen(type)) != 0))
        return 0;
    const char *n = close_br + 2;
    size_t len = strlen(name);
    return strncasecmp(n, name, len) == 0 && strncmp(n + len, " from ", 6) == 0;
}

int rt_dns_query_count_type(rt_dns *d, const char *name, const char *type)
{
    /* dnsmasq logs each query before answering it and handles queries in order, so once this
     * probe is answered every earlier query is in the log. */
    ck_assert_msg(probe(d->port, PROBE_NAME, 2000) == 0,
                  "dns harness: dnsmasq stopped answering (ordering probe)");
    int fd = dup(d->log_fd);
    ck_assert_msg(fd >= 0, "dup: %s", strerror(errno));
    ck_assert_msg(lseek(fd, 0, SEEK_SET) == 0, "lseek: %s", strerror(errno));
    FILE *f = fdopen(fd, "r");
    ck_assert_msg(f != NULL, "fdopen: %s", strerror(errno));
    int count = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (is_query_line(line, name, type))
            count++;
    }
    fclose(f);
    return count;
}

int rt_dns_query_count(rt_dns *d, const char *name)
{
    return rt_dns_query_count_type(d, name, NULL);
}

void rt_dns_stop(rt_dns *d)
{
    if (!d)
        return;
    untrack((void **)live_dns, d);
    reap(d->pid);
    if (d->log_fd >= 0)
        close(d->log_fd);
    free(d);
}

/* ---- silent server ---- */

rt_dns_silent *rt_dns_silent_start(void)
{
    rt_dns_silent *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    uint16_t port = bind_pair(&s->udp_fd, &s->tcp_fd);
    snprintf(s->servers, sizeof s->servers, "127.0.0.1:%u", (unsigned)port);
    track((void **)live_silent, s);
    return s;
}

const char *rt_dns_silent_servers(const rt_dns_silent *s)
{
    return s->servers;
}

int rt_dns_silent_received(rt_dns_silent *s)
{
    unsigned char buf[4096];
    while (recv(s->udp_fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        s->received++;
    struct pollfd pfd = { .fd = s->tcp_fd, .events = POLLIN };
    int waiting = poll(&pfd, 1, 0) == 1 ? 1 : 0;
    return s->received + waiting;
}

void rt_dns_silent_stop(rt_dns_silent *s)
{
    if (!s)
        return;
    untrack((void **)live_silent, s);
    close(s->udp_fd);
    close(s->tcp_fd);
    free(s);
}

/* ---- delaying relay ---- */

static void relay_take_queries(rt_dns_relay *r)
{
    for (;;) {
        struct relay_pending *p = &r->pending[r->npending < RELAY_SLOTS ? r->npending : 0];
        unsigned char scratch[RELAY_MSG];
        unsigned char *buf = r->npending < RELAY_SLOTS ? p->msg : scratch;
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t n =
            recvfrom(r->client_fd, buf, RELAY_MSG, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        pthread_mutex_lock(&r->lock);
        r->received++;
        pthread_mutex_unlock(&r->lock);
        if (n < 12 || r->npending >= RELAY_SLOTS)
            continue; /* dropped: the client will retry */
        p->len = (size_t)n;
        p->from = from;
        p->due_us = rt_now_us() + (int64_t)r->delay_ms * 1000;
        r->npending++;
    }
}

static void relay_send_due(rt_dns_relay *r)
{
    int64_t now = rt_now_us();
    size_t i = 0;
    while (i < r->npending) {
        struct relay_pending *p = &r->pending[i];
        if (p->due_us > now) {
            i++;
            continue;
        }
        struct relay_sent *s = &r->sent[r->next_sent];
        r->next_sent = (r->next_sent + 1) % RELAY_SLOTS;
        s->used = 1;
        s->id = (unsigned)p->msg[0] << 8 | p->msg[1];
        s->from = p->from;
        (void)!send(r->up_fd, p->msg, p->len, 0);
        memmove(p, p + 1, (r->npending - i - 1) * sizeof *p);
        r->npending--;
    }
}

static void relay_pass_answers(rt_dns_relay *r)
{
    unsigned char buf[RELAY_MSG];
    for (;;) {
        ssize_t n = recv(r->up_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
            return;
        if (n < 12)
            continue;
        unsigned id = (unsigned)buf[0] << 8 | buf[1];
        for (size_t i = 0; i < RELAY_SLOTS; i++) {
            struct relay_sent *s = &r->sent[i];
            if (s->used && s->id == id) {
                s->used = 0;
                (void)!sendto(r->client_fd, buf, (size_t)n, 0, (struct sockaddr *)&s->from,
                              sizeof s->from);
                break;
            }
        }
    }
}

static void *relay_main(void *arg)
{
    rt_dns_relay *r = arg;
    for (;;) {
        int timeout = -1;
        if (r->npending > 0) {
            int64_t first = r->pending[0].due_us;
            for (size_t i = 1; i < r->npending; i++) {
                if (r->pending[i].due_us < first)
                    first = r->pending[i].due_us;
            }
            int64_t left = first - rt_now_us();
            timeout = left <= 0 ? 0 : (int)((left + 999) / 1000);
        }
        struct pollfd pfd[3] = { { .fd = r->client_fd, .events = POLLIN },
                                 { .fd = r->up_fd, .events = POLLIN },
                                 { .fd = r->stop_fds[0], .events = POLLIN } };
        int n = poll(pfd, 3, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && pfd[2].revents)
            break;
        if (n > 0 && pfd[0].revents)
            relay_take_queries(r);
        if (n > 0 && pfd[1].revents)
            relay_pass_answers(r);
        relay_send_due(r);
    }
    return NULL;
}

rt_dns_relay *rt_dns_relay_start(const rt_dns *upstream, int delay_ms)
{
    rt_dns_relay *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->delay_ms = delay_ms;
    int tcp_fd;
    uint16_t port = bind_pair(&r->client_fd, &tcp_fd);
    close(tcp_fd); /* UDP only: the resolver does not fall back to TCP for small answers */
    snprintf(r->servers, sizeof r->servers, "127.0.0.1:%u", (unsigned)port);

    r->up_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(r->up_fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = loopback(upstream->port);
    ck_assert_msg(connect(r->up_fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s",
                  strerror(errno));
    ck_assert_msg(pipe2(r->stop_fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    ck_assert_int_eq(pthread_mutex_init(&r->lock, NULL), 0);
    int rc = pthread_create(&r->thread, NULL, relay_main, r);
    ck_assert_msg(rc == 0, "pthread_create: %s", strerror(rc));
    track((void **)live_relay, r);
    return r;
}

const char *rt_dns_relay_servers(const rt_dns_relay *r)
{
    return r->servers;
}

int rt_dns_relay_received(rt_dns_relay *r)
{
    pthread_mutex_lock(&r->lock);
    int n = r->received;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void rt_dns_relay_stop(rt_dns_relay *r)
{
    if (!r)
        return;
    untrack((void **)live_relay, r);
    (void)!write(r->stop_fds[1], "x", 1);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->lock);
    close(r->stop_fds[0]);
    close(r->stop_fds[1]);
    close(r->client_fd);
    close(r->up_fd);
    free(r);
}

/* ---- scripted server: one answer for every name ---- */

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/*
 * The answer to query @p q of @p len bytes into @p out (room for RELAY_MSG bytes): the header
 * and question copied, then at most one record. 0 when the query is not worth an answer.
 */
static size_t fixed_answer(const rt_dns_fixed *f, const unsigned char *q, size_t len,
                           unsigned char *out)
{
    if (len < 12 || (q[2] & 0x80) || ((unsigned)q[4] << 8 | q[5]) != 1)
        return 0;
    size_t pos = 12;
    while (pos < len && q[pos] != 0) {
        if (q[pos] & 0xc0)
            return 0; /* no compression in a question */
        pos += 1u + q[pos];
    }
    if (pos + 5 > len)
        return 0;
    size_t qend = pos + 5; /* the root label, type, class */
    if (qend + 12 + 16 > RELAY_MSG)
        return 0;
    unsigned qtype = (unsigned)q[pos + 1] << 8 | q[pos + 2];
    memcpy(out, q, qend);
    out[2] = (unsigned char)(0x80 | (q[2] & 0x01));     /* QR, RD as asked */
    out[3] = (unsigned char)(0x80 | (f->rcode & 0x0f)); /* RA, rcode */
    put16(out + 6, 0);
    put16(out + 8, 0);
    put16(out + 10, 0); /* an OPT record in the query is not echoed */
    const unsigned char *rdata = NULL;
    size_t rdlen = 0;
    if (f->rcode == 0 && qtype == 1 && f->has_a) {
        rdata = f->a;
        rdlen = 4;
    } else if (f->rcode == 0 && qtype == 28 && f->has_aaaa) {
        rdata = f->aaaa;
        rdlen = 16;
    }
    if (!rdata)
        return qend;
    put16(out + 6, 1);
    unsigned char *r = out + qend;
    put16(r, 0xc00c); /* the name: a pointer to the question's */
    put16(r + 2, qtype);
    put16(r + 4, 1); /* IN */
    put16(r + 6, (unsigned)f->ttl_s >> 16);
    put16(r + 8, (unsigned)f->ttl_s & 0xffffu);
    put16(r + 10, (unsigned)rdlen);
    memcpy(r + 12, rdata, rdlen);
    return qend + 12 + rdlen;
}

static void *fixed_main(void *arg)
{
    rt_dns_fixed *f = arg;
    unsigned char q[RELAY_MSG], a[RELAY_MSG];
    for (;;) {
        struct pollfd pfd[2] = { { .fd = f->fd, .events = POLLIN },
                                 { .fd = f->stop_fds[0], .events = POLLIN } };
        int n = poll(pfd, 2, -1);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && pfd[1].revents)
            break;
        for (;;) {
            struct sockaddr_in from;
            socklen_t flen = sizeof from;
            ssize_t len =
                recvfrom(f->fd, q, sizeof q, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
            if (len < 0)
                break;
            pthread_mutex_lock(&f->lock);
            f->received++;
            pthread_mutex_unlock(&f->lock);
            size_t alen = fixed_answer(f, q, (size_t)len, a);
            if (alen)
                (void)!sendto(f->fd, a, alen, 0, (struct sockaddr *)&from, flen);
        }
    }
    return NULL;
}

rt_dns_fixed *rt_dns_fixed_start(const char *a, const char *aaaa, int ttl_s, int rcode)
{
    rt_dns_fixed *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->rcode = rcode;
    f->ttl_s = ttl_s;
    f->has_a = a != NULL;
    f->has_aaaa = aaaa != NULL;
    ck_assert_msg(!a || inet_pton(AF_INET, a, f->a) == 1, "rt_dns_fixed: bad IPv4 %s", a);
    ck_assert_msg(!aaaa || inet_pton(AF_INET6, aaaa, f->aaaa) == 1, "rt_dns_fixed: bad IPv6 %s",
                  aaaa);
    int tcp_fd;
    uint16_t port = bind_pair(&f->fd, &tcp_fd);
    close(tcp_fd); /* UDP only: answers are small, the resolver does not fall back to TCP */
    snprintf(f->servers, sizeof f->servers, "127.0.0.1:%u", (unsigned)port);
    /* Lookups by the hundred thousand arrive in bursts: room for them while the thread runs. */
    int rcvbuf = 1 << 20;
    (void)setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    ck_assert_msg(pipe2(f->stop_fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    ck_assert_int_eq(pthread_mutex_init(&f->lock, NULL), 0);
    int rc = pthread_create(&f->thread, NULL, fixed_main, f);
    ck_assert_msg(rc == 0, "pthread_create: %s", strerror(rc));
    track((void **)live_fixed, f);
    return f;
}

const char *rt_dns_fixed_servers(const rt_dns_fixed *f)
{
    return f->servers;
}

int rt_dns_fixed_received(rt_dns_fixed *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->received;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void rt_dns_fixed_stop(rt_dns_fixed *f)
{
    if (!f)
        return;
    untrack((void **)live_fixed, f);
    (void)!write(f->stop_fds[1], "x", 1);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->lock);
    close(f->stop_fds[0]);
    close(f->stop_fds[1]);
    close(f->fd);
    free(f);
}

void rt_dns_stop_all(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        rt_dns_fixed_stop(live_fixed[i]);
        rt_dns_relay_stop(live_relay[i]);
        rt_dns_silent_stop(live_silent[i]);
        rt_dns_stop(live_dns[i]);
    }
}
