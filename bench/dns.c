/* SPDX-License-Identifier: MIT */
/*
 * bench_dns: names per second resolving N distinct names (2,000 by default; A and AAAA each)
 * against a real dnsmasq that this program starts on 127.0.0.1 and a free high port, in the same
 * run:
 *   - raw c-ares: ares_getaddrinfo(AF_UNSPEC) with a window of 256 lookups in flight, driven with
 *     ares_getsock / poll / ares_process_fd (the baseline), and for information the same with
 *     rill's default window (max_queries_in_flight of rill_ctx_opts_init, 128) and with a small
 *     window of 32,
 *   - rill_resolve_many() on a fresh rill_ctx each round (empty cache) with the default window,
 *     and for information with the small window, cache on and off (cache_max_ttl_s = 0). At
 *     window 32 nothing is dropped, so rill against raw c-ares there (a goal row, >= 0.9) shows
 *     rill's own cost apart from the server's drops and the 2 s retry timeouts that follow,
 *   - "getaddrinfo-style" sequential lookups, one name at a time, blocking: rill_resolve() on a
 *     fresh rill_ctx, and glibc's getaddrinfo() itself. glibc only asks port 53, so that row runs
 *     in a child in a private network and mount namespace (unshare), where lo is brought up, a
 *     resolv.conf naming 127.0.0.1 and an nsswitch.conf with "hosts: files dns" are bind-mounted
 *     and a second dnsmasq serves the same names on 127.0.0.1:53. Where namespaces are not
 *     available the row is skipped and the reason printed.
 *
 * Every lookup must give exactly two addresses, 127.0.0.1 and ::1; any name that does not is
 * counted, reported, and makes the program exit with status 1 (after the table).
 *
 * A warm-up round runs first and is not counted. Each variant then runs --reps times, interleaved
 * with the others (one round of every variant per rep, in alternating order); the table shows the
 * best and the median k names/s and, as ratios, the median over the rounds of one variant's
 * figure divided by the raw c-ares figure (or the sequential figure, in the goal rows) of the
 * same round. Contexts and channels are made before the clock starts and freed after it stops.
 * UDP receive-buffer drops (/proc/net/snmp, per network namespace; and of those, the ones at
 * dnsmasq's socket, from /proc/net/udp) are summed per variant, so a window that floods the server
 * into drops and 2 s retry timeouts shows as such.
 *
 * usage: bench_dns [-n names] [-r reps] [-w raw-window] [-b raw-rcvbuf] [-o variant] [-P] [-v]
 *   defaults: 2,000 names, 11 rounds, raw window 256
 *   -P  do not pin this process and dnsmasq to different CPUs   -v  print every run
 *   -b B  SO_RCVBUF (K/M suffix) for raw c-ares's sockets (ARES_OPT_SOCK_RCVBUF), to show whether
 *         drops happen at the client's socket
 *   -o N  run only variant N (1 raw, 2 raw default window, 3 raw window 32, 4 rill batch,
 *         5 rill window 32, 6 the same with the cache off, 7 rill one by one, 8 getaddrinfo),
 *         for profiling, and with -w for finding the window where drops start
 */
#include "common.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DNSMASQ     "/usr/sbin/dnsmasq"
#define DOMAIN      "bench.rill.test"
#define MAX_NAMES   20000
#define NAME_LEN    32
#define RESOLVE_MS  30000 /* per lookup or batch: far above any healthy round */
#define ROUND_LIMIT 60.0  /* seconds: a raw round that takes longer stops the program */
/*
 * A window far below what floods a default-sized UDP receive buffer (212,992 bytes hold 256
 * small datagrams; a name is two queries), where no round loses a query: rill against raw c-ares
 * there shows rill's own cost apart from drops and retry timeouts.
 */
#define SMALL_WINDOW 32

enum variant {
    V_RAW,          /* raw c-ares, window -w (256) */
    V_RAW_SAME,     /* raw c-ares with rill's default window */
    V_RAW_SMALL,    /* raw c-ares with a window far below the drops */
    V_RILL,         /* rill_resolve_many, fresh ctx, default window: the goal row */
    V_RILL_SMALL,   /* rill_resolve_many, the small window */
    V_RILL_NOCACHE, /* the same with the cache off */
    V_RILL_SEQ,     /* rill_resolve one by one */
    V_GAI,          /* getaddrinfo() one by one, in the namespace child */
    VARIANTS
};

struct config {
    size_t names;
    size_t reps;
    int raw_window;
    int rill_window; /* rill_ctx_opts' default max_queries_in_flight */
    int raw_rcvbuf;  /* -b: SO_RCVBUF for raw c-ares's sockets (ARES_OPT_SOCK_RCVBUF); 0: default */
};

/* Names, servers and the namespace child shared by the runs. */
struct bench {
    struct config cfg;
    char (*names)[NAME_LEN];
    const char **hosts;
    char servers[32];
    uint16_t port;
    int gai_ok;
    char gai_why[240];
    int gai_cmd; /* to the namespace child */
    int gai_res; /* from it */
    pid_t gai_pid;
};

/* The outcome of one run of one variant. */
struct outcome {
    double rate; /* names/s */
    unsigned long failures;
    char first_failure[160];
    unsigned long long drops;        /* all UDP receive-buffer drops in the namespace */
    unsigned long long server_drops; /* those at dnsmasq's socket */
};

/* ---- processes and files to clean up at exit (the parent only) ---- */

static pid_t main_pid;
static pid_t dnsmasq_pid;
static char tmp_dir[64];
static char conf_path[128];
static char log_path[128];
static char ns_resolv_path[128];
static char ns_nss_path[128];

static void stop_child(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 1000; i++) { /* 2 s, then SIGKILL */
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        usleep(2000);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static void remove_files(void)
{
    const char *files[] = { conf_path, log_path, ns_resolv_path, ns_nss_path };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (files[i][0])
            unlink(files[i]);
    if (tmp_dir[0])
        rmdir(tmp_dir);
}

static void cleanup(void)
{
    if (getpid() != main_pid)
        return; /* a forked child that exits never touches the parent's processes */
    stop_child(dnsmasq_pid);
    dnsmasq_pid = 0;
    remove_files();
}

/* ---- DNS probes and counters ---- */

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

/* A type-A query for @p name with recursion desired; returns its length. */
static size_t build_query(unsigned char *buf, unsigned id, const char *name)
{
    size_t n = 0;
    const unsigned char head[12] = { (unsigned char)(id >> 8), (unsigned char)id, 0x01, 0, 0, 1 };
    memcpy(buf, head, sizeof head);
    n = sizeof head;
    for (const char *p = name; *p;) {
        size_t label = strcspn(p, ".");
        buf[n++] = (unsigned char)label;
        memcpy(buf + n, p, label);
        n += label;
        p += label + (p[label] == '.');
    }
    const unsigned char tail[5] = { 0, 0, 1, 0, 1 }; /* root, type A, class IN */
    memcpy(buf + n, tail, sizeof tail);
    return n + sizeof tail;
}

/* Whether 127.0.0.1:@p port answers an A query for @p name with NOERROR within 100 ms. */
static int dns_answers(uint16_t port, const char *name)
{
    unsigned char q[300], a[1500];
    unsigned id = (unsigned)getpid() & 0xffffu;
    size_t qlen = build_query(q, id, name);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = loopback(port);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && send(fd, q, qlen, 0) > 0) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, 100) == 1) {
            ssize_t n = recv(fd, a, sizeof a, 0);
            ok = n >= 12 && ((unsigned)a[0] << 8 | a[1]) == id && (a[3] & 0x0f) == 0 &&
                 (a[6] | a[7]) != 0;
        }
    }
    close(fd);
    return ok;
}

/* UDP datagrams dropped for a full receive buffer so far in this network namespace. */
static unsigned long long udp_rcvbuf_errors(void)
{
    return bench_proc_net_counter("/proc/net/snmp", "Udp: ", "RcvbufErrors");
}

/* Datagrams dropped so far at the UDP socket bound to 127.0.0.1:@p port (/proc/net/udp). */
static unsigned long long udp_socket_drops(uint16_t port)
{
    FILE *f = fopen("/proc/net/udp", "r");
    if (!f)
        return 0;
    char line[512];
    unsigned long long result = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned addr, lport;
        if (sscanf(line, " %*u: %8x:%4x", &addr, &lport) != 2 || lport != port)
            continue;
        char *save = NULL, *last = NULL; /* drops is the last field; trailing blanks follow */
        for (char *tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
            last = tok;
        result = last ? strtoull(last, NULL, 10) : 0;
        break;
    }
    fclose(f);
    return result;
}

/* ---- dnsmasq ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) == EOF || fclose(f) != 0)
        bench_die("cannot write %s: %s", path, strerror(errno));
}

static void write_config(const struct bench *b)
{
    FILE *f = fopen(conf_path, "w");
    if (!f)
        bench_die("cannot write %s: %s", conf_path, strerror(errno));
    /* Local answers only: no upstream, no hosts file, NXDOMAIN for other names in the domain. */
    fprintf(f, "no-resolv\nno-hosts\nno-poll\nbind-interfaces\nlisten-address=127.0.0.1\n"
               "user=root\ngroup=root\npid-file=\nlog-facility=-\nlocal=/" DOMAIN "/\n"
               "cache-size=10000\ndns-forward-max=10000\n");
    for (size_t i = 0; i < b->cfg.names; i++)
        fprintf(f, "host-record=%s,127.0.0.1,::1,300\n", b->names[i]);
    if (fclose(f) != 0)
        bench_die("writing %s: %s", conf_path, strerror(errno));
}

/*
 * Start dnsmasq in the foreground on 127.0.0.1:@p port with the generated configuration, its
 * output appended to @p log_fd, and wait until it answers. Returns its pid, 0 if it exited at
 * start-up (port taken, ...) or -1 if it did not answer within 5 s (it is stopped then). Only
 * async-signal-safe calls between fork and exec (the caller is single-threaded anyway).
 */
static pid_t start_dnsmasq(uint16_t port, int log_fd, int cpu, const char *probe_name)
{
    char port_arg[32], conf_arg[160];
    snprintf(port_arg, sizeof port_arg, "--port=%u", (unsigned)port);
    snprintf(conf_arg, sizeof conf_arg, "--conf-file=%s", conf_path);
    char *argv[] = { DNSMASQ, "--keep-in-foreground", conf_arg, port_arg, NULL };
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        bench_pin(cpu);
        int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
            _exit(127);
        execv(DNSMASQ, argv);
        _exit(127);
    }
    for (int i = 0; i < 250; i++) { /* 5 s */
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 0;
        if (dns_answers(port, probe_name))
            return pid;
        usleep(10000);
    }
    stop_child(pid);
    return -1;
}

/* The end of dnsmasq's log, for error messages. */
static void log_tail(int log_fd, char *buf, size_t cap)
{
    off_t end = lseek(log_fd, 0, SEEK_END);
    off_t from = end > (off_t)(cap - 1) ? end - (off_t)(cap - 1) : 0;
    ssize_t n = pread(log_fd, buf, cap - 1, from);
    buf[n > 0 ? (size_t)n : 0] = '\0';
}

/* A free UDP port on 127.0.0.1 (freed again: dnsmasq binds it; a race is retried). */
static uint16_t free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = loopback(0);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        bench_die("cannot find a free UDP port: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

static void start_main_dnsmasq(struct bench *b, int log_fd)
{
    for (int attempt = 0; attempt < 10; attempt++) {
        uint16_t port = free_udp_port();
        if (port < 1024)
            continue;
        pid_t pid = start_dnsmasq(port, log_fd, 0, b->names[0]);
        if (pid > 0) {
            dnsmasq_pid = pid;
            b->port = port;
            snprintf(b->servers, sizeof b->servers, "127.0.0.1:%u", (unsigned)port);
            return;
        }
        char tail[1024];
        log_tail(log_fd, tail, sizeof tail);
        if (pid < 0 || strstr(tail, "in use") == NULL)
            bench_die("%s on 127.0.0.1:%u %s: %s", DNSMASQ, (unsigned)port,
                      pid < 0 ? "did not answer within 5 s" : "exited at start-up", tail);
    }
    bench_die("dnsmasq found every port it tried taken (10 tries)");
}

/* ---- verification ---- */

/* Whether @p sa is 127.0.0.1 (family 4) or ::1 (family 6); returns the family or 0. */
static int loopback_family(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return in->sin_addr.s_addr == htonl(INADDR_LOOPBACK) ? 4 : 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ? 6 : 0;
    }
    return 0;
}

/* Count a failure for @p name in @p o, keeping the first message. */
static void fail(struct outcome *o, const char *name, const char *what)
{
    if (o->failures++ == 0)
        snprintf(o->first_failure, sizeof o->first_failure, "%s: %s", name, what);
}

/* Check a rill answer: exactly 127.0.0.1 and ::1. */
static void check_rill(struct outcome *o, const char *name, rill_status st, const rill_addr *a,
                       size_t n, const char *msg)
{
    if (st != RILL_OK) {
        fail(o, name, msg);
        return;
    }
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        seen |= loopback_family((const struct sockaddr *)(const void *)a[i].sa);
    if (n != 2 || seen != (4 | 6))
        fail(o, name, "not exactly 127.0.0.1 and ::1");
}

/* ---- raw c-ares, a window of lookups in flight ---- */

struct raw_run {
    ares_channel channel;
    const struct bench *b;
    size_t window;
    size_t started, done, in_flight;
    unsigned char *ok; /* per name: the answer was 127.0.0.1 and ::1 */
    int *status;
    unsigned long timeouts; /* retries c-ares reported */
    size_t *index;          /* callback args: &index[i] == i */
};

static void raw_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res);

static void raw_start(struct raw_run *r)
{
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM; /* one node per address, as rill asks */
    while (r->in_flight < r->window && r->started < r->b->cfg.names) {
        size_t i = r->started++;
        r->in_flight++;
        ares_getaddrinfo(r->channel, r->b->hosts[i], NULL, &hints, raw_answer, &r->index[i]);
    }
}

static struct raw_run *raw_current;

static void raw_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct raw_run *r = raw_current;
    size_t i = *(const size_t *)arg;
    r->in_flight--;
    r->done++;
    r->timeouts += (unsigned long)timeouts;
    r->status[i] = status;
    int seen = 0, nodes = 0;
    for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next, nodes++)
        seen |= loopback_family(n->ai_addr);
    r->ok[i] = status == ARES_SUCCESS && nodes == 2 && seen == (4 | 6);
    if (res)
        ares_freeaddrinfo(res);
}

static ares_channel raw_channel(const struct bench *b)
{
    struct ares_options ao;
    memset(&ao, 0, sizeof ao);
    ao.timeout = 2000; /* rill_ctx's defaults: query_timeout_ms 2000, query_tries 3 */
    ao.tries = 3;
    int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (b->cfg.raw_rcvbuf > 0) {
        ao.socket_receive_buffer_size = b->cfg.raw_rcvbuf;
        mask |= ARES_OPT_SOCK_RCVBUF;
    }
    ares_channel ch;
    int st = ares_init_options(&ch, &ao, mask);
    if (st != ARES_SUCCESS)
        bench_die("ares_init_options: %s", ares_strerror(st));
    st = ares_set_servers_ports_csv(ch, b->servers);
    if (st != ARES_SUCCESS)
        bench_die("ares_set_servers_ports_csv: %s", ares_strerror(st));
    return ch;
}

static void run_raw(const struct bench *b, int window, struct outcome *o)
{
    size_t n = b->cfg.names;
    struct raw_run r = { .channel = raw_channel(b), .b = b, .window = (size_t)window };
    r.ok = calloc(n, 1);
    r.status = calloc(n, sizeof *r.status);
    r.index = calloc(n, sizeof *r.index);
    if (!r.ok || !r.status || !r.index)
        bench_die("out of memory");
    for (size_t i = 0; i < n; i++)
        r.index[i] = i;
    raw_current = &r;

    double t0 = bench_now();
    raw_start(&r);
    while (r.done < n) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        int bits = ares_getsock(r.channel, socks, ARES_GETSOCK_MAXNUM);
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        nfds_t np = 0;
        for (int k = 0; k < ARES_GETSOCK_MAXNUM; k++) {
            short ev = (short)((ARES_GETSOCK_READABLE(bits, k) ? POLLIN : 0) |
                               (ARES_GETSOCK_WRITABLE(bits, k) ? POLLOUT : 0));
            if (ev)
                pfd[np++] = (struct pollfd){ .fd = socks[k], .events = ev };
        }
        struct timeval maxtv = { 1, 0 }, tv;
        struct timeval *tvp = ares_timeout(r.channel, &maxtv, &tv);
        int wait_ms = (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
        int ready = poll(pfd, np, wait_ms);
        if (ready < 0 && errno != EINTR)
            bench_die("poll: %s", strerror(errno));
        if (ready <= 0) {
            ares_process_fd(r.channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        } else {
            for (nfds_t k = 0; k < np; k++) {
                if (!pfd[k].revents)
                    continue;
                int rd = (pfd[k].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
                int wr = (pfd[k].revents & POLLOUT) != 0;
                ares_process_fd(r.channel, rd ? pfd[k].fd : ARES_SOCKET_BAD,
                                wr ? pfd[k].fd : ARES_SOCKET_BAD);
            }
        }
        raw_start(&r);
        if (bench_now() - t0 > ROUND_LIMIT)
            bench_die("raw c-ares: %zu of %zu names after %.0f s", r.done, n, ROUND_LIMIT);
    }
    double t1 = bench_now();

    o->rate = (double)n / (t1 - t0);
    for (size_t i = 0; i < n; i++) {
        if (!r.ok[i])
            fail(o, b->hosts[i],
                 r.status[i] == ARES_SUCCESS ? "not exactly 127.0.0.1 and ::1"
                                             : ares_strerror(r.status[i]));
    }
    if (bench_verbose && r.timeouts)
        fprintf(stderr, "raw c-ares: %lu query timeouts (retries)\n", r.timeouts);
    ares_destroy(r.channel);
    raw_current = NULL;
    free(r.ok);
    free(r.status);
    free(r.index);
}

/* ---- rill ---- */

static rill_ctx *fresh_ctx(const struct bench *b, enum variant v)
{
    rill_ctx_opts opts;
    rill_ctx_opts_init(&opts);
    opts.dns_servers = b->servers;
    if (v == V_RILL_NOCACHE)
        opts.cache_max_ttl_s = 0;
    if (v == V_RILL_SMALL || v == V_RILL_NOCACHE)
        opts.max_queries_in_flight = SMALL_WINDOW;
    rill_ctx *ctx = NULL;
    rill_error err;
    if (rill_ctx_new(&opts, &ctx, &err) != RILL_OK)
        bench_die("rill_ctx_new: %s", err.msg);
    return ctx;
}

static void run_rill_many(const struct bench *b, enum variant v, struct outcome *o)
{
    size_t n = b->cfg.names;
    rill_resolve_result *res = calloc(n, sizeof *res);
    if (!res)
        bench_die("out of memory");
    rill_ctx *ctx = fresh_ctx(b, v);

    double t0 = bench_now();
    rill_status st = rill_resolve_many(ctx, b->hosts, n, 80, RESOLVE_MS, res);
    double t1 = bench_now();

    o->rate = (double)n / (t1 - t0);
    if (st != RILL_OK && st != RILL_E_TIMEOUT)
        bench_die("rill_resolve_many: %s", rill_strerror(st));
    for (size_t i = 0; i < n; i++)
        check_rill(o, b->hosts[i], res[i].status, res[i].addrs, res[i].count, res[i].message);
    rill_resolve_results_free(res, n);
    rill_ctx_free(ctx);
    free(res);
}

static void run_rill_seq(const struct bench *b, struct outcome *o)
{
    size_t n = b->cfg.names;
    rill_ctx *ctx = fresh_ctx(b, V_RILL_SEQ);
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++) {
        rill_addr *addrs = NULL;
        size_t count = 0;
        rill_error err;
        rill_status st = rill_resolve(ctx, b->hosts[i], 80, RESOLVE_MS, &addrs, &count, &err);
        check_rill(o, b->hosts[i], st, addrs, count, err.msg);
        rill_addrs_free(addrs);
    }
    double t1 = bench_now();
    o->rate = (double)n / (t1 - t0);
    rill_ctx_free(ctx);
}

/* ---- getaddrinfo() in a private network namespace ---- */

/* What the namespace child reports: once after setting up, then once per round. */
struct gai_report {
    int ok;
    double rate;
    unsigned long failures;
    unsigned long long drops, server_drops;
    char why[240];
};

static void gai_round(const struct bench *b, struct gai_report *rep)
{
    struct outcome o = { 0 };
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    unsigned long long drops0 = udp_rcvbuf_errors(), server0 = udp_socket_drops(53);
    double t0 = bench_now();
    for (size_t i = 0; i < b->cfg.names; i++) {
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(b->hosts[i], NULL, &hints, &res);
        if (rc != 0) {
            fail(&o, b->hosts[i], gai_strerror(rc));
            continue;
        }
        int seen = 0, nodes = 0;
        for (const struct addrinfo *a = res; a; a = a->ai_next, nodes++)
            seen |= loopback_family(a->ai_addr);
        if (nodes != 2 || seen != (4 | 6))
            fail(&o, b->hosts[i], "not exactly 127.0.0.1 and ::1");
        freeaddrinfo(res);
    }
    double t1 = bench_now();
    memset(rep, 0, sizeof *rep);
    rep->ok = 1;
    rep->rate = (double)b->cfg.names / (t1 - t0);
    rep->failures = o.failures;
    rep->drops = udp_rcvbuf_errors() - drops0;
    rep->server_drops = udp_socket_drops(53) - server0;
    snprintf(rep->why, sizeof rep->why, "%s", o.first_failure);
}

static int lo_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
        r = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static void gai_send(int fd, const struct gai_report *rep)
{
    if (write(fd, rep, sizeof *rep) != (ssize_t)sizeof *rep)
        _exit(1);
}

/* Report a setup failure to the parent and leave (never through exit: see cleanup()). */
static void gai_refuse(int fd, const char *what, int errnum)
{
    struct gai_report rep = { 0 };
    snprintf(rep.why, sizeof rep.why, "%s%s%s", what, errnum ? ": " : "",
             errnum ? strerror(errnum) : "");
    gai_send(fd, &rep);
    _exit(0);
}

/* The namespace child: set up, start dnsmasq on 127.0.0.1:53, then run rounds on command. */
static void gai_child(const struct bench *b, int cmd_fd, int res_fd, int log_fd)
{
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0)
        gai_refuse(res_fd, "unshare(CLONE_NEWNET | CLONE_NEWNS)", errno);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        gai_refuse(res_fd, "making / a private mount", errno);
    if (lo_up() != 0)
        gai_refuse(res_fd, "bringing up lo in the new namespace", errno);
    if (mount(ns_resolv_path, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0)
        gai_refuse(res_fd, "bind-mounting a resolv.conf on /etc/resolv.conf", errno);
    if (mount(ns_nss_path, "/etc/nsswitch.conf", NULL, MS_BIND, NULL) != 0)
        gai_refuse(res_fd, "bind-mounting an nsswitch.conf on /etc/nsswitch.conf", errno);
    pid_t pid = start_dnsmasq(53, log_fd, 0, b->names[0]);
    if (pid <= 0) {
        char tail[200], why[240];
        log_tail(log_fd, tail, sizeof tail);
        snprintf(why, sizeof why, "dnsmasq on 127.0.0.1:53 in the namespace %s: %.150s",
                 pid < 0 ? "did not answer" : "exited", tail);
        gai_refuse(res_fd, why, 0);
    }
    struct gai_report rep = { .ok = 1 };
    gai_send(res_fd, &rep);
    char cmd;
    while (read(cmd_fd, &cmd, 1) == 1 && cmd == 'r') {
        gai_round(b, &rep);
        gai_send(res_fd, &rep);
    }
    stop_child(pid);
    _exit(0);
}

/* Start the namespace child and wait for its report; on failure keep the reason. */
static void gai_start(struct bench *b, int log_fd)
{
    int cmd[2], res[2];
    if (pipe2(cmd, O_CLOEXEC) != 0 || pipe2(res, O_CLOEXEC) != 0)
        bench_die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(cmd[1]);
        close(res[0]);
        gai_child(b, cmd[0], res[1], log_fd);
    }
    close(cmd[0]);
    close(res[1]);
    b->gai_pid = pid;
    b->gai_cmd = cmd[1];
    b->gai_res = res[0];
    struct gai_report rep;
    if (read(b->gai_res, &rep, sizeof rep) != (ssize_t)sizeof rep) {
        snprintf(b->gai_why, sizeof b->gai_why, "the namespace child died while setting up");
        rep.ok = 0;
    } else if (!rep.ok) {
        snprintf(b->gai_why, sizeof b->gai_why, "%s", rep.why);
    }
    b->gai_ok = rep.ok;
    if (!b->gai_ok) {
        close(b->gai_cmd);
        close(b->gai_res);
        waitpid(pid, NULL, 0);
        b->gai_pid = 0;
    }
}

static void gai_stop(struct bench *b)
{
    if (!b->gai_pid)
        return;
    close(b->gai_cmd); /* the child stops its dnsmasq and leaves on EOF */
    close(b->gai_res);
    int status;
    for (int i = 0; i < 1000 && waitpid(b->gai_pid, &status, WNOHANG) == 0; i++)
        usleep(5000);
    stop_child(b->gai_pid);
    b->gai_pid = 0;
}

static void run_gai(const struct bench *b, struct outcome *o)
{
    struct gai_report rep;
    if (write(b->gai_cmd, "r", 1) != 1 ||
        read(b->gai_res, &rep, sizeof rep) != (ssize_t)sizeof rep || !rep.ok)
        bench_die("the getaddrinfo namespace child stopped answering");
    o->rate = rep.rate;
    o->failures = rep.failures;
    o->drops = rep.drops;
    o->server_drops = rep.server_drops;
    snprintf(o->first_failure, sizeof o->first_failure, "%.150s", rep.why);
}

/* ---- the runs ---- */

/* Row names (with the windows filled in) and short labels for the drop counts. */
static char variant_names[VARIANTS][64];
static const char *const variant_labels[VARIANTS] = {
    "raw",
    "raw default window",
    "raw small window",
    "rill batch",
    "rill small window",
    "rill small window cache off",
    "rill one by one",
    "getaddrinfo",
};

static void name_variants(const struct config *c)
{
    char buf[24] = "";
    if (c->raw_rcvbuf > 0)
        snprintf(buf, sizeof buf, ", rcvbuf %d K", c->raw_rcvbuf / 1024);
    snprintf(variant_names[V_RAW], 64, "raw c-ares, window %d%s (baseline)", c->raw_window, buf);
    snprintf(variant_names[V_RAW_SAME], 64, "raw c-ares, window %d%s (info)", c->rill_window, buf);
    snprintf(variant_names[V_RAW_SMALL], 64, "raw c-ares, window %d%s (info)", SMALL_WINDOW, buf);
    snprintf(variant_names[V_RILL], 64, "rill_resolve_many, window %d (default)", c->rill_window);
    snprintf(variant_names[V_RILL_SMALL], 64, "rill_resolve_many, window %d (info)", SMALL_WINDOW);
    snprintf(variant_names[V_RILL_NOCACHE], 64, "rill_resolve_many, window %d, cache off",
             SMALL_WINDOW);
    snprintf(variant_names[V_RILL_SEQ], 64, "rill_resolve one by one");
    snprintf(variant_names[V_GAI], 64, "getaddrinfo() one by one (netns, :53)");
}

static void run(const struct bench *b, enum variant v, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    unsigned long long drops0 = udp_rcvbuf_errors(), server0 = udp_socket_drops(b->port);
    switch (v) {
    case V_RAW: run_raw(b, b->cfg.raw_window, o); break;
    case V_RAW_SAME: run_raw(b, b->cfg.rill_window, o); break;
    case V_RAW_SMALL: run_raw(b, SMALL_WINDOW, o); break;
    case V_RILL:
    case V_RILL_SMALL:
    case V_RILL_NOCACHE: run_rill_many(b, v, o); break;
    case V_RILL_SEQ: run_rill_seq(b, o); break;
    case V_GAI: run_gai(b, o); return; /* counted in its own namespace */
    default: bench_die("unknown variant %d", (int)v);
    }
    o->drops = udp_rcvbuf_errors() - drops0;
    o->server_drops = udp_socket_drops(b->port) - server0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_dns [-n names] [-r reps] [-w raw-window] [-b raw-rcvbuf] [-o variant] "
            "[-P] [-v]\n");
    exit(2);
}

static void make_files(struct bench *b)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/rill-bench-dns-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        tmp_dir[0] = '\0';
        bench_die("mkdtemp: %s", strerror(errno));
    }
    snprintf(conf_path, sizeof conf_path, "%s/dnsmasq.conf", tmp_dir);
    snprintf(log_path, sizeof log_path, "%s/dnsmasq.log", tmp_dir);
    snprintf(ns_resolv_path, sizeof ns_resolv_path, "%s/resolv.conf", tmp_dir);
    snprintf(ns_nss_path, sizeof ns_nss_path, "%s/nsswitch.conf", tmp_dir);
    write_config(b);
    write_file(ns_resolv_path, "nameserver 127.0.0.1\n");
    write_file(ns_nss_path, "hosts: files dns\n");
}

int main(int argc, char **argv)
{
    struct bench b = { .cfg = { .names = 2000, .reps = 11, .raw_window = 256 } };
    rill_ctx_opts defaults;
    rill_ctx_opts_init(&defaults);
    b.cfg.rill_window = defaults.max_queries_in_flight;
    int opt, only = -1;
    while ((opt = getopt(argc, argv, "n:r:w:o:b:Pv")) != -1) {
        switch (opt) {
        case 'b': b.cfg.raw_rcvbuf = (int)bench_parse_count(optarg, "receive buffer"); break;
        case 'o': only = (int)bench_parse_count(optarg, "variant") - 1; break;
        case 'n': b.cfg.names = (size_t)bench_parse_count(optarg, "name count"); break;
        case 'r': b.cfg.reps = (size_t)bench_parse_count(optarg, "reps"); break;
        case 'w': b.cfg.raw_window = (int)bench_parse_count(optarg, "raw window"); break;
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || only >= VARIANTS || b.cfg.reps > 99 || b.cfg.names > MAX_NAMES ||
        b.cfg.raw_window > 65536 || b.cfg.raw_rcvbuf > (1 << 28))
        usage();
    name_variants(&b.cfg);
    if (access(DNSMASQ, X_OK) != 0)
        bench_die("%s not found: install Debian's dnsmasq-base", DNSMASQ);
    int st = ares_library_init(ARES_LIB_INIT_ALL);
    if (st != ARES_SUCCESS)
        bench_die("ares_library_init: %s", ares_strerror(st));

    b.names = calloc(b.cfg.names, sizeof *b.names);
    b.hosts = calloc(b.cfg.names, sizeof *b.hosts);
    if (!b.names || !b.hosts)
        bench_die("out of memory");
    for (size_t i = 0; i < b.cfg.names; i++) {
        snprintf(b.names[i], NAME_LEN, "n%05u." DOMAIN, (unsigned)i % 100000u);
        b.hosts[i] = b.names[i];
    }

    main_pid = getpid();
    atexit(cleanup);
    signal(SIGPIPE, SIG_IGN);
    int pinned = bench_pin(1);
    make_files(&b);
    int log_fd = open(log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0)
        bench_die("%s: %s", log_path, strerror(errno));
    start_main_dnsmasq(&b, log_fd);
    gai_start(&b, log_fd);
    remove_files(); /* both dnsmasqs have read their configuration; the log stays open */
    if (!b.gai_ok)
        fprintf(stderr, "bench_dns: getaddrinfo() row skipped: %s\n", b.gai_why);

    static double fig[VARIANTS][100];
    unsigned long failures[VARIANTS] = { 0 };
    unsigned long long drops[VARIANTS] = { 0 }, server_drops[VARIANTS] = { 0 };
    char first_failure[VARIANTS][160] = { { 0 } };
    for (size_t rep = 0; rep <= b.cfg.reps; rep++) { /* rep 0: warm-up, not counted */
        for (int k = 0; k < VARIANTS; k++) {
            enum variant v = (enum variant)(rep % 2 ? VARIANTS - 1 - k : k);
            if ((v == V_GAI && !b.gai_ok) || (only >= 0 && (int)v != only)) {
                if (rep > 0)
                    fig[v][rep - 1] = -1;
                continue;
            }
            struct outcome o;
            run(&b, v, &o);
            if (o.failures && failures[v] == 0)
                snprintf(first_failure[v], sizeof first_failure[v], "%s", o.first_failure);
            failures[v] += o.failures;
            if (rep == 0)
                continue;
            drops[v] += o.drops;
            server_drops[v] += o.server_drops;
            fig[v][rep - 1] = o.rate / 1e3;
            if (bench_verbose)
                fprintf(stderr, "run %zu %s: %.1f k names/s, %llu drops (%llu at dnsmasq)\n", rep,
                        variant_names[v], o.rate / 1e3, o.drops, o.server_drops);
        }
    }
    gai_stop(&b);
    stop_child(dnsmasq_pid);
    dnsmasq_pid = 0;
    close(log_fd);

    size_t reps = b.cfg.reps;
    /* paired ratios first: bench_median sorts the figures in place */
    double vs_raw[VARIANTS];
    for (int v = 0; v < VARIANTS; v++)
        vs_raw[v] = bench_paired_ratio(fig[v], fig[V_RAW], reps);
    struct bench_row goals[5] = {
        { "", -1, -1, -1, 0.90, 0, 0 },
        { "goal: rill batch / rill_resolve one by one", -1, -1, -1, 2.5, 0, 0 },
        { "goal: rill batch / getaddrinfo() one by one", -1, -1, -1, 2.5, 0, 0 },
        { "", -1, -1, -1, 0, 0, 0 },
        { "", -1, -1, -1, 0.90, 0, 0 },
    };
    snprintf(goals[0].name, sizeof goals[0].name, "goal: rill / raw c-ares, both window %d",
             SMALL_WINDOW);
    goals[0].ratio = bench_paired_ratio(fig[V_RILL_SMALL], fig[V_RAW_SMALL], reps);
    snprintf(goals[3].name, sizeof goals[3].name, "info: rill cache off / raw c-ares, window %d",
             SMALL_WINDOW);
    goals[3].ratio = bench_paired_ratio(fig[V_RILL_NOCACHE], fig[V_RAW_SMALL], reps);
    /* The default window against raw c-ares at the same window: the raw baseline's larger
     * window floods the server into drops and retry timeouts, so a goal against it would say
     * nothing about rill. */
    snprintf(goals[4].name, sizeof goals[4].name, "goal: rill / raw c-ares, both window %d",
             b.cfg.rill_window);
    goals[4].ratio = bench_paired_ratio(fig[V_RILL], fig[V_RAW_SAME], reps);
    goals[1].ratio = bench_paired_ratio(fig[V_RILL], fig[V_RILL_SEQ], reps);
    goals[2].ratio = b.gai_ok ? bench_paired_ratio(fig[V_RILL], fig[V_GAI], reps) : -1;

    struct bench_row rows[VARIANTS + 5];
    memset(rows, 0, sizeof rows);
    size_t nrows = 0;
    for (int v = 0; v < VARIANTS; v++) {
        struct bench_row *row = &rows[nrows++];
        snprintf(row->name, sizeof row->name, "%s", variant_names[v]);
        int have = (v != V_GAI || b.gai_ok) && (only < 0 || v == only);
        row->best = have ? bench_max(fig[v], reps) : -1;
        row->median = have ? bench_median(fig[v], reps) : -1;
        row->ratio = have ? vs_raw[v] : -1;
        row->goal = 0; /* the goal rows below compare like with like */
    }
    for (size_t i = 0; i < sizeof goals / sizeof goals[0]; i++)
        rows[nrows++] = goals[i];

    char title[300];
    snprintf(title, sizeof title,
             "bench_dns: %zu distinct names (A + AAAA each) from dnsmasq on %s, k names/s, "
             "best and median of %zu rounds after a warm-up%s",
             b.cfg.names, b.servers, reps, pinned ? ", bench and dnsmasq pinned to two CPUs" : "");
    bench_print_table(title, "k names/s", "vs raw", rows, nrows);
    printf("vs raw: median over the rounds of variant / raw c-ares (window %d) in the same round; "
           "goal and info rows: the same for the two variants named\n",
           b.cfg.raw_window);
    printf("UDP receive-buffer drops in the counted rounds, all sockets (at dnsmasq's):");
    for (int v = 0; v < VARIANTS; v++)
        printf("%s %s %llu (%llu)", v ? "," : "", variant_labels[v], drops[v], server_drops[v]);
    printf("\n");
    if (!b.gai_ok)
        printf("getaddrinfo() row skipped: %s\n", b.gai_why);

    int bad = 0;
    for (int v = 0; v < VARIANTS; v++) {
        if (failures[v]) {
            printf("FAILED: %s: %lu lookups without exactly 127.0.0.1 and ::1, first: %s\n",
                   variant_names[v], failures[v], first_failure[v]);
            bad = 1;
        }
    }
    free(b.names);
    free(b.hosts);
    ares_library_cleanup();
    return bad;
}
