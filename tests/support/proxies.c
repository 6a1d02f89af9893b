/* SPDX-License-Identifier: MIT */
/*
 * Proxies and origins for the proxy suite: see proxies.h.
 */
#include "proxies.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "support.h"

/* A status a helper server has no use for (the client side reports what went wrong). */
static void rt_ignore(rill_status st)
{
    (void)st;
}

/* ---- daemons ---- */

struct rt_daemon {
    pid_t pid;
    pid_t owner; /* the process that started it */
    uint16_t port;
    char dir[64];
};

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void daemon_kill(rt_daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            d->pid = 0;
            return;
        }
        usleep(5000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

#define MAX_DAEMONS 16
static rt_daemon *live[MAX_DAEMONS];

static void stop_all(void)
{
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (live[i] && live[i]->owner == getpid()) {
            daemon_kill(live[i]);
            rt_rmdir(live[i]->dir);
        }
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Run @p argv with output into dir/out.log and wait until @p port listens (5 s). */
static rt_daemon *spawn(rt_daemon *d, char *const argv[], char *why, size_t len)
{
    char log[96];
    snprintf(log, sizeof log, "%s/out.log", d->dir);
    if (access(argv[0], X_OK) != 0) {
        snprintf(why, len, "%s is not installed (scripts/deps.sh test)", argv[0]);
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, len, "fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    d->pid = pid;
    d->owner = getpid();
    for (int i = 0; i < 500; i++) {
        if (port_open(d->port)) {
            for (int k = 0; k < MAX_DAEMONS; k++) {
                if (!live[k]) {
                    live[k] = d;
                    break;
                }
            }
            static int registered;
            if (!registered) {
                registered = 1;
                atexit(stop_all);
            }
            return d;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            d->pid = 0;
            char *out = NULL;
            FILE *f = fopen(log, "r");
            char buf[200] = "";
            if (f) {
                size_t n = fread(buf, 1, sizeof buf - 1, f);
                buf[n] = '\0';
                fclose(f);
            }
            (void)out;
            snprintf(why, len, "%s exited before listening: %s", argv[0], buf);
            goto fail;
        }
        usleep(10000);
    }
    snprintf(why, len, "%s did not listen on %u within 5 s", argv[0], d->port);
    daemon_kill(d);
fail:
    rt_rmdir(d->dir);
    free(d);
    return NULL;
}

/* No Check assertion here: daemons are started before any test runs (rill_test_suite). */
static rt_daemon *daemon_new(void)
{
    rt_daemon *d = calloc(1, sizeof *d);
    if (!d)
        abort();
    snprintf(d->dir, sizeof d->dir, "/tmp/rill-test-XXXXXX");
    if (!mkdtemp(d->dir))
        abort();
    d->port = free_port();
    return d;
}

rt_daemon *rt_tinyproxy_start(const char *user, const char *pass, uint16_t connect_port, char *why,
                              size_t len)
{
    rt_daemon *d = daemon_new();
    char conf[1024], path[96];
    int n = snprintf(conf, sizeof conf,
                     "Port %u\nListen 127.0.0.1\nTimeout 30\nMaxClients 200\nLogLevel Error\n"
                     "PidFile \"%s/tp.pid\"\nLogFile \"%s/tp.log\"\n",
                     d->port, d->dir, d->dir);
    if (user)
        n += snprintf(conf + n, sizeof conf - (size_t)n, "BasicAuth %s %s\n", user, pass);
    if (connect_port)
        snprintf(conf + n, sizeof conf - (size_t)n, "ConnectPort %u\n", connect_port);
    snprintf(path, sizeof path, "%s/tinyproxy.conf", d->dir);
    write_file(path, conf);
    char *argv[] = { "/usr/bin/tinyproxy", "-d", "-c", path, NULL };
    return spawn(d, argv, why, len);
}

rt_daemon *rt_microsocks_start(const char *user, const char *pass, char *why, size_t len)
{
    rt_daemon *d = daemon_new();
    char port[8];
    snprintf(port, sizeof port, "%u", d->port);
    char *argv[] = {
        "/usr/bin/microsocks", "-i", "127.0.0.1", "-p", port, NULL, NULL, NULL, NULL, NULL
    };
    if (user) {
        argv[5] = "-u";
        argv[6] = (char *)(uintptr_t)user;
        argv[7] = "-P";
        argv[8] = (char *)(uintptr_t)pass;
    }
    return spawn(d, argv, why, len);
}

rt_daemon *rt_stunnel_start(uint16_t to, const char *chain, const char *key, char *why, size_t len)
{
    rt_daemon *d = daemon_new();
    char conf[1024], path[96];
    snprintf(conf, sizeof conf,
             "foreground = yes\npid =\ndebug = 3\n[https-proxy]\naccept = 127.0.0.1:%u\n"
             "connect = 127.0.0.1:%u\ncert = %s\nkey = %s\n",
             d->port, to, chain, key);
    snprintf(path, sizeof path, "%s/stunnel.conf", d->dir);
    write_file(path, conf);
    char *argv[] = { "/usr/bin/stunnel4", path, NULL };
    return spawn(d, argv, why, len);
}

uint16_t rt_daemon_port(const rt_daemon *d)
{
    return d->port;
}

pid_t rt_daemon_pid(const rt_daemon *d)
{
    return d->pid;
}

void rt_daemon_stop(rt_daemon *d)
{
    if (!d || d->owner != getpid())
        return;
    for (int k = 0; k < MAX_DAEMONS; k++) {
        if (live[k] == d)
            live[k] = NULL;
    }
    daemon_kill(d);
    rt_rmdir(d->dir);
    free(d);
}

/* ---- origins ---- */

static rill_tls_config *server_tls;
static rill_tls_config *client_tls;

static rill_tls_config *origin_server_tls(void)
{
    if (server_tls)
        return server_tls;
    const rt_certs *c = rt_certs_get();
    rill_error err;
    ck_assert_int_eq(rill_tls_config_new(&server_tls, &err), RILL_OK);
    rill_status st = rill_tls_config_set_cert_file(server_tls, c->good.chain, c->good.key, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    return server_tls;
}

rill_tls_config *rt_client_tls(void)
{
    if (client_tls)
        return client_tls;
    const rt_certs *c = rt_certs_get();
    rill_error err;
    ck_assert_int_eq(rill_tls_config_new(&client_tls, &err), RILL_OK);
    rill_status st = rill_tls_config_set_ca_file(client_tls, c->ca, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    return client_tls;
}

#define MAX_CONNS 32

struct conn {
    pthread_t thread;
    rill_stream *s;
    int fd;
    int used; /* 1 running, 2 finished (join it) */
    struct rt_origin *o;
};

struct rt_origin {
    rt_origin_mode mode;
    rill_listener *l;
    uint16_t port;
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t lock;
    int served;
    struct conn conns[MAX_CONNS];
};

static int serve_transfer(rill_stream *s)
{
    uint64_t up = 0, down = 0, sum = 0;
    if (rill_read_u64be(s, &up) != RILL_OK || rill_read_u64be(s, &down) != RILL_OK)
        return 0;
    unsigned char *buf = malloc(65536);
    if (!buf)
        return 0;
    int ok = 1;
    while (ok && up > 0) {
        size_t n = 0, want = up < 65536 ? (size_t)up : 65536;
        ok = rill_read(s, buf, want, &n) == RILL_OK;
        if (ok) {
            sum = rt_checksum(sum, buf, n);
            up -= n;
        }
    }
    ok = ok && rill_write_u64be(s, sum) == RILL_OK;
    /* The pattern of seed 2 in 64 KiB pieces, each piece its own seed, so the client can
     * rebuild it without holding it all. */
    for (uint64_t off = 0, i = 0; ok && off < down; i++) {
        size_t n = down - off < 65536 ? (size_t)(down - off) : 65536;
        rt_fill_pattern(buf, n, 2 + i);
        ok = rill_write_all(s, buf, n, NULL) == RILL_OK;
        off += n;
    }
    free(buf);
    return ok && rill_flush(s) == RILL_OK;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    rill_stream *s = c->s;
    int ok = 0;
    if (c->o->mode == RT_ORIGIN_STARTTLS) {
        rill_stream *lines = NULL, *tls = NULL;
        const char *line;
        size_t len;
        if (rill_write_str(s, "220 ready\r\n", NULL) == RILL_OK &&
            rill_lines_new(s, 512, RILL_EOL_CRLF, RILL_BORROW, &lines) == RILL_OK &&
            rill_read_line(lines, &line, &len) == RILL_OK && strcmp(line, "STARTTLS") == 0 &&
            rill_write_str(s, "220 go\r\n", NULL) == RILL_OK && rill_close(lines) == RILL_OK &&
            rill_tls_server(s, origin_server_tls(), 0, &tls) == RILL_OK) {
            lines = NULL;
            s = tls;
            ok = serve_transfer(s);
        }
        if (lines)
            (void)rill_close(lines);
    } else if (c->o->mode == RT_ORIGIN_BANNER) {
        ok = rill_write_str(s, "HELLO\n", NULL) == RILL_OK && serve_transfer(s);
    } else {
        ok = serve_transfer(s);
    }
    pthread_mutex_lock(&c->o->lock);
    c->s = NULL;
    pthread_mutex_unlock(&c->o->lock);
    (void)rill_close(s);
    pthread_mutex_lock(&c->o->lock);
    c->o->served += ok; /* after the close: a test that counts memory waits for this */
    c->used = 2;
    pthread_mutex_unlock(&c->o->lock);
    return NULL;
}

static void reap_conns(rt_origin *o, int all)
{
    for (int i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &o->conns[i];
        pthread_mutex_lock(&o->lock);
        int used = c->used;
        if (used == 1 && all && c->s)
            shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&o->lock);
        if (used == 2 || (used == 1 && all)) {
            pthread_join(c->thread, NULL);
            c->used = 0;
        }
    }
}

static void *origin_main(void *arg)
{
    rt_origin *o = arg;
    for (;;) {
        struct pollfd p[2] = { { .fd = o->stop_pipe[0], .events = POLLIN },
                               { .fd = rill_listener_fd(o->l), .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;
        rill_stream *s = NULL;
        if (rill_accept(o->l, 0, &s, NULL) != RILL_OK)
            continue;
        reap_conns(o, 0);
        struct conn *c = NULL;
        for (int i = 0; i < MAX_CONNS && !c; i++) {
            if (o->conns[i].used == 0)
                c = &o->conns[i];
        }
        if (!c) {
            (void)rill_close(s);
            continue;
        }
        rt_ignore(rill_set_timeouts(s, 10000, 10000));
        c->s = s;
        c->fd = rill_fd(s);
        c->o = o;
        c->used = 1;
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            c->used = 0;
            (void)rill_close(s);
        }
    }
    return NULL;
}

rt_origin *rt_origin_start(rt_origin_mode mode)
{
    rt_origin *o = calloc(1, sizeof *o);
    ck_assert_ptr_nonnull(o);
    o->mode = mode;
    pthread_mutex_init(&o->lock, NULL);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    if (mode == RT_ORIGIN_TLS)
        lo.stream.tls = origin_server_tls();
    rill_error err;
    rill_status st = rill_listen("127.0.0.1", 0, &lo, &o->l, &err);
    ck_assert_msg(st == RILL_OK, "origin: %s", err.msg);
    o->port = rill_listener_port(o->l);
    ck_assert_int_eq(pipe2(o->stop_pipe, O_CLOEXEC), 0);
    ck_assert_int_eq(pthread_create(&o->thread, NULL, origin_main, o), 0);
    return o;
}

uint16_t rt_origin_port(const rt_origin *o)
{
    return o->port;
}

int rt_origin_served(rt_origin *o)
{
    pthread_mutex_lock(&o->lock);
    int n = o->served;
    pthread_mutex_unlock(&o->lock);
    return n;
}

void rt_origin_stop(rt_origin *o)
{
    if (!o)
        return;
    ssize_t w = write(o->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(o->thread, NULL);
    reap_conns(o, 1);
    rill_listener_free(o->l);
    close(o->stop_pipe[0]);
    close(o->stop_pipe[1]);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

void rt_transfer_check(rill_stream *s, size_t up, size_t down)
{
    unsigned char *buf = malloc(65536);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(rill_write_u64be(s, up), RILL_OK);
    ck_assert_int_eq(rill_write_u64be(s, down), RILL_OK);
    uint64_t sum = 0;
    for (size_t off = 0, i = 0; off < up; i++) {
        size_t n = up - off < 65536 ? up - off : 65536;
        rt_fill_pattern(buf, n, 100 + i);
        sum = rt_checksum(sum, buf, n);
        rill_status st = rill_write_all(s, buf, n, NULL);
        ck_assert_msg(st == RILL_OK, "upload at %zu: %s", off, rill_errmsg(s));
        off += n;
    }
    ck_assert_int_eq(rill_flush(s), RILL_OK);
    uint64_t theirs = 0;
    rill_status st = rill_read_u64be(s, &theirs);
    ck_assert_msg(st == RILL_OK, "checksum: %s", rill_errmsg(s));
    ck_assert_msg(theirs == sum, "the origin got other bytes than were sent");
    unsigned char *want = malloc(65536);
    ck_assert_ptr_nonnull(want);
    for (size_t off = 0, i = 0; off < down; i++) {
        size_t n = down - off < 65536 ? down - off : 65536;
        rt_fill_pattern(want, n, 2 + i);
        size_t got = 0;
        st = rill_read_full(s, buf, n, &got);
        ck_assert_msg(st == RILL_OK, "download at %zu: %s", off, rill_errmsg(s));
        ck_assert_msg(memcmp(buf, want, n) == 0, "download differs in bytes %zu..%zu", off,
                      off + n);
        off += n;
    }
    size_t n = 0;
    st = rill_read(s, buf, 1, &n);
    ck_assert_msg(st == RILL_EOF, "after the transfer: %s (%s)", rill_strerror(st), rill_errmsg(s));
    free(want);
    free(buf);
}

/* ---- the misbehaving proxy ---- */

struct rt_badproxy {
    rt_bad_mode mode;
    pthread_mutex_t lock;
    int handled;
    rill_listener *l;
    uint16_t port;
    int stop_pipe[2];
    pthread_t thread;
};

/* Read what the client sends first (a CONNECT request or a SOCKS5 greeting), up to a pause. */
static void read_request(rill_stream *s, rt_bad_mode mode, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    while (*len < cap - 1) {
        size_t n = 0;
        if (rill_read(s, buf + *len, cap - 1 - *len, &n) != RILL_OK)
            break;
        *len += n;
        buf[*len] = '\0';
        if (mode < RT_BAD_SOCKS_GARBAGE && strstr(buf, "\r\n\r\n"))
            break;
        if (mode >= RT_BAD_SOCKS_GARBAGE)
            break;
    }
}

static void bad_serve(rt_badproxy *b, rill_stream *s)
{
    char req[4096];
    size_t len = 0;
    rt_ignore(rill_set_timeouts(s, 5000, 5000));
    read_request(s, b->mode, req, sizeof req, &len);
    switch (b->mode) {
    case RT_BAD_GARBAGE: rt_ignore(rill_write_str(s, "SSH-2.0-OpenSSH_9.2\r\n\r\n", NULL)); break;
    case RT_BAD_CLOSE_MID: rt_ignore(rill_write_str(s, "HTTP/1.1 20", NULL)); break;
    case RT_BAD_SILENT: {
        /* Hold the connection until the client goes or the proxy is stopped. */
        struct pollfd p[2] = { { .fd = b->stop_pipe[0], .events = POLLIN },
                               { .fd = rill_fd(s), .events = POLLIN } };
        (void)poll(p, 2, 10000);
        break;
    }
    case RT_BAD_SAME_SEGMENT: {
        static const char reply[] = "HTTP/1.1 200 Connection established\r\n"
                                    "Proxy-Agent: rill-test\r\n\r\n" RT_BAD_FIRST_BYTES;
        if (rill_write_str(s, reply, NULL) != RILL_OK)
            break;
        char buf[4096];
        size_t n = 0;
        while (rill_read(s, buf, sizeof buf, &n) == RILL_OK) {
            if (rill_write_all(s, buf, n, NULL) != RILL_OK)
                break;
        }
        break;
    }
    case RT_BAD_LONG_HEADER: {
        if (rill_write_str(s, "HTTP/1.1 200 OK\r\nX-Long: ", NULL) != RILL_OK)
            break;
        char *big = malloc(1 << 20);
        if (big) {
            memset(big, 'a', 1 << 20);
            rt_ignore(rill_write_all(s, big, 1 << 20, NULL));
            free(big);
        }
        break;
    }
    case RT_BAD_SOCKS_GARBAGE:
        rt_ignore(rill_write_str(s, "HTTP/1.1 400 Bad Request\r\n\r\n", NULL));
        break;
    case RT_BAD_SOCKS_BADREP: {
        static const unsigned char method[] = { 5, 0 };
        static const unsigned char rep[] = { 5, 9, 0, 1, 0, 0, 0, 0, 0, 0 };
        if (rill_write_all(s, method, sizeof method, NULL) != RILL_OK)
            break;
        read_request(s, b->mode, req, sizeof req, &len);
        rt_ignore(rill_write_all(s, rep, sizeof rep, NULL));
        break;
    }
    }
    (void)rill_close(s);
}

static void *bad_main(void *arg)
{
    rt_badproxy *b = arg;
    for (;;) {
        struct pollfd p[2] = { { .fd = b->stop_pipe[0], .events = POLLIN },
                               { .fd = rill_listener_fd(b->l), .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;
        rill_stream *s = NULL;
        if (rill_accept(b->l, 0, &s, NULL) == RILL_OK) {
            bad_serve(b, s);
            pthread_mutex_lock(&b->lock);
            b->handled++;
            pthread_mutex_unlock(&b->lock);
        }
    }
    return NULL;
}

rt_badproxy *rt_badproxy_start(rt_bad_mode mode)
{
    rt_badproxy *b = calloc(1, sizeof *b);
    ck_assert_ptr_nonnull(b);
    b->mode = mode;
    pthread_mutex_init(&b->lock, NULL);
    rill_error err;
    rill_status st = rill_listen("127.0.0.1", 0, NULL, &b->l, &err);
    ck_assert_msg(st == RILL_OK, "badproxy: %s", err.msg);
    b->port = rill_listener_port(b->l);
    ck_assert_int_eq(pipe2(b->stop_pipe, O_CLOEXEC), 0);
    ck_assert_int_eq(pthread_create(&b->thread, NULL, bad_main, b), 0);
    return b;
}

uint16_t rt_badproxy_port(const rt_badproxy *b)
{
    return b->port;
}

int rt_badproxy_handled(rt_badproxy *b)
{
    pthread_mutex_lock(&b->lock);
    int n = b->handled;
    pthread_mutex_unlock(&b->lock);
    return n;
}

void rt_badproxy_stop(rt_badproxy *b)
{
    if (!b)
        return;
    ssize_t w = write(b->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(b->thread, NULL);
    rill_listener_free(b->l);
    close(b->stop_pipe[0]);
    close(b->stop_pipe[1]);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
