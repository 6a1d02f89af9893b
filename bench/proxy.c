/* SPDX-License-Identifier: MIT */
/*
 * bench_proxy: what a proxy adds, over loopback, in the same run, against real proxies the
 * program starts itself (Debian's tinyproxy, microsocks and stunnel4, as in test_proxy):
 *
 *   connect latency (microseconds per connect, median / p99, and the ratio to its baseline):
 *     - raw CONNECT by hand: connect(2) to tinyproxy, write "CONNECT host:port HTTP/1.1",
 *       read until the empty line (the ~25 lines a user writes without rill): the baseline;
 *     - rill_connect with opts.proxy = "http://..." (ratio against the raw CONNECT);
 *     - raw SOCKS5 by hand (greeting, CONNECT with an IPv4 address, reply): the SOCKS baseline;
 *     - rill_connect with "socks5h://..." (ratio against the raw SOCKS5);
 *     - rill_connect with "https://..." (stunnel4 in front of tinyproxy: TLS to the proxy, no
 *       session reuse between connects: a fresh context each time) (ratio against raw CONNECT);
 *     - raw connect(2) straight to the origin, for reference.
 *   throughput (MB/s) of a bulk write through the tunnel against the same write over a direct
 *   rill_connect, each to an origin that drains and counts.
 *
 * The origin is a raw listener in a thread: each connection is drained until EOF and closed.
 * Figures are printed, never asserted.
 *
 * usage: bench_proxy [-c connects-per-round] [-r reps] [-s MiB] [-v]
 *   defaults: 200 connects per round, 5 rounds, 256 MiB per throughput run
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum variant { V_RAW_CONNECT, V_RILL_HTTP, V_RAW_SOCKS, V_RILL_SOCKS, V_RILL_HTTPS, V_DIRECT, NV };

static const char *const names[NV] = {
    "raw CONNECT by hand (baseline)", "rill_connect http://",
    "raw SOCKS5 by hand (baseline)",  "rill_connect socks5h://",
    "rill_connect https:// (TLS)",    "raw connect(2) to the origin (info)",
};

static const enum variant baseline_of[NV] = { V_RAW_CONNECT, V_RAW_CONNECT, V_RAW_SOCKS,
                                              V_RAW_SOCKS,   V_RAW_CONNECT, V_DIRECT };

/* ---- daemons ---- */

static char dir[64];
static pid_t pids[8];
static int npids;

static void stop_daemons(void)
{
    for (int i = 0; i < npids; i++) {
        kill(pids[i], SIGTERM);
        waitpid(pids[i], NULL, 0);
    }
    npids = 0;
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_proxy: could not remove %s\n", dir);
    }
}

static uint16_t free_port(void)
{
    uint16_t port;
    int fd = bench_listen(&port);
    close(fd);
    return port;
}

static void spawn(char *const argv[], uint16_t port)
{
    if (access(argv[0], X_OK) != 0)
        bench_die("%s is not installed (scripts/deps.sh test)", argv[0]);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    pids[npids++] = pid;
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(0x7f000001) };
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            return;
        usleep(10000);
    }
    bench_die("%s did not listen on %u", argv[0], port);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        bench_die("cannot write %s", path);
}

static uint16_t tp_port, ms_port, st_port;

static void start_daemons(void)
{
    snprintf(dir, sizeof dir, "/tmp/rill-bench-XXXXXX");
    if (!mkdtemp(dir))
        bench_die("mkdtemp: %s", strerror(errno));
    atexit(stop_daemons);
    char path[128], conf[512], cert[128], key[128], cmd[512];
    tp_port = free_port();
    snprintf(conf, sizeof conf,
             "Port %u\nListen 127.0.0.1\nTimeout 30\nMaxClients 500\nLogLevel Error\n"
             "PidFile \"%s/tp.pid\"\nLogFile \"%s/tp.log\"\n",
             tp_port, dir, dir);
    snprintf(path, sizeof path, "%s/tinyproxy.conf", dir);
    write_file(path, conf);
    char *tp[] = { "/usr/bin/tinyproxy", "-d", "-c", path, NULL };
    spawn(tp, tp_port);
    ms_port = free_port();
    char msp[8];
    snprintf(msp, sizeof msp, "%u", ms_port);
    char *ms[] = { "/usr/bin/microsocks", "-i", "127.0.0.1", "-p", msp, NULL };
    spawn(ms, ms_port);
    snprintf(cert, sizeof cert, "%s/proxy.pem", dir);
    snprintf(key, sizeof key, "%s/proxy.key", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        bench_die("openssl req failed");
    st_port = free_port();
    snprintf(conf, sizeof conf,
             "foreground = yes\npid =\n[p]\naccept = 127.0.0.1:%u\nconnect = 127.0.0.1:%u\n"
             "cert = %s\nkey = %s\n",
             st_port, tp_port, cert, key);
    char stpath[128];
    snprintf(stpath, sizeof stpath, "%s/stunnel.conf", dir);
    write_file(stpath, conf);
    char *st[] = { "/usr/bin/stunnel4", stpath, NULL };
    spawn(st, st_port);
}

/* ---- the origin: drain and count ---- */

static uint16_t origin_port;
static int origin_fd;

static void *drain(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static _Thread_local char buf[262144];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    return NULL;
}

static void *origin_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = bench_accept(origin_fd);
        pthread_t t;
        if (pthread_create(&t, NULL, drain, (void *)(intptr_t)fd) != 0)
            bench_die("pthread_create");
        pthread_detach(t);
    }
    return NULL;
}

/* ---- the variants ---- */

static void read_until_blank(int fd)
{
    char buf[1024];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            bench_die("proxy closed during CONNECT");
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    if (strncmp(buf + 9, "200", 3) != 0)
        bench_die("CONNECT answered %.20s", buf);
}

static void read_exact(int fd, unsigned char *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            bench_die("proxy closed during SOCKS5");
        got += (size_t)n;
    }
}

static rill_tls_config *proxy_tls;
static rill_ctx *no_ctx;

static int connect_once(enum variant v)
{
    char req[128];
    int fd;
    switch (v) {
    case V_RAW_CONNECT: {
        fd = bench_connect(tp_port);
        int n =
            snprintf(req, sizeof req, "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
                     origin_port, origin_port);
        bench_write_all(fd, req, (size_t)n);
        read_until_blank(fd);
        return close(fd);
    }
    case V_RAW_SOCKS: {
        fd = bench_connect(ms_port);
        unsigned char hello[3] = { 5, 1, 0 }, rep[10];
        bench_write_all(fd, hello, 3);
        read_exact(fd, rep, 2);
        unsigned char c[10] = {
            5, 1, 0, 1, 127, 0, 0, 1, (unsigned char)(origin_port >> 8), (unsigned char)origin_port
        };
        bench_write_all(fd, c, 10);
        read_exact(fd, rep, 10);
        if (rep[1] != 0)
            bench_die("SOCKS5 reply %u", rep[1]);
        return close(fd);
    }
    case V_DIRECT: fd = bench_connect(origin_port); return close(fd);
    default: break;
    }
    char url[64];
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 10000;
    if (v == V_RILL_HTTP)
        snprintf(url, sizeof url, "http://127.0.0.1:%u", tp_port);
    else if (v == V_RILL_SOCKS)
        snprintf(url, sizeof url, "socks5h://127.0.0.1:%u", ms_port);
    else
        snprintf(url, sizeof url, "https://127.0.0.1:%u", st_port);
    o.proxy = url;
    o.proxy_tls = proxy_tls;
    rill_stream *s = NULL;
    rill_error err;
    if (rill_connect(no_ctx, "127.0.0.1", origin_port, &o, &s, &err) != RILL_OK)
        bench_die("%s: %s", names[v], err.msg);
    return rill_close(s) == RILL_OK ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- throughput ---- */

static double throughput(const char *proxy_url, size_t bytes)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.proxy = proxy_url;
    rill_stream *s = NULL;
    rill_error err;
    if (rill_connect(NULL, "127.0.0.1", origin_port, &o, &s, &err) != RILL_OK)
        bench_die("throughput connect: %s", err.msg);
    static char buf[262144];
    memset(buf, 'x', sizeof buf);
    double t0 = bench_now();
    for (size_t done = 0; done < bytes; done += sizeof buf)
        bench_check(rill_write_all(s, buf, sizeof buf, NULL), "write", s);
    bench_check(rill_shutdown(s), "shutdown", s);
    char c;
    size_t n;
    /* The origin closes (with a reset: SO_LINGER 0) once it has drained everything. */
    rill_status st = rill_read(s, &c, 1, &n);
    if (st != RILL_EOF && st != RILL_E_RESET)
        bench_die("throughput: after the write: %s", rill_errmsg(s));
    double dt = bench_now() - t0;
    (void)rill_close(s);
    return (double)bytes / dt / 1e6;
}

int main(int argc, char **argv)
{
    size_t per_round = 200, reps = 5, mib = 256;
    int c;
    while ((c = getopt(argc, argv, "c:r:s:v")) != -1) {
        switch (c) {
        case 'c': per_round = bench_parse_count(optarg, "-c"); break;
        case 'r': reps = bench_parse_count(optarg, "-r"); break;
        case 's': mib = bench_parse_count(optarg, "-s"); break;
        case 'v': bench_verbose = 1; break;
        default: bench_die("usage: bench_proxy [-c connects] [-r reps] [-s MiB] [-v]");
        }
    }
    signal(SIGPIPE, SIG_IGN);
    start_daemons();
    origin_fd = bench_listen(&origin_port);
    pthread_t ot;
    if (pthread_create(&ot, NULL, origin_main, NULL) != 0)
        bench_die("pthread_create");
    rill_error err;
    bench_check(rill_tls_config_new(&proxy_tls, &err), "tls config", NULL);
    bench_check(rill_tls_config_insecure_noverifycert(proxy_tls, &err), "tls config", NULL);

    size_t total = per_round * reps;
    double *lat[NV], med[NV][100];
    for (int v = 0; v < NV; v++)
        lat[v] = malloc(total * sizeof(double));
    for (size_t r = 0; r < reps && r < 100; r++) {
        for (int k = 0; k < NV; k++) {
            int v = (int)((r % 2) ? NV - 1 - k : k);
            double round[4096];
            size_t n = per_round < 4096 ? per_round : 4096;
            for (size_t i = 0; i < n; i++) {
                double t0 = bench_now();
                if (connect_once((enum variant)v) != 0)
                    bench_die("close failed");
                round[i] = (bench_now() - t0) * 1e6;
                lat[v][r * per_round + i] = round[i];
            }
            med[v][r] = bench_median(round, n);
            if (bench_verbose)
                fprintf(stderr, "round %zu %s: median %.1f us\n", r, names[v], med[v][r]);
        }
    }
    printf("Connect latency over loopback, %zu connects x %zu rounds (microseconds)\n", per_round,
           reps);
    printf("%-40s %10s %10s %10s  %s\n", "variant", "median", "p99", "max", "ratio to baseline");
    for (int v = 0; v < NV; v++) {
        qsort(lat[v], total, sizeof(double), cmp_double);
        double ratio = bench_paired_ratio(med[v], med[baseline_of[v]], reps);
        printf("%-40s %10.1f %10.1f %10.1f  %.2f (vs %s)\n", names[v], lat[v][total / 2],
               lat[v][total * 99 / 100], lat[v][total - 1], ratio, names[baseline_of[v]]);
    }
    printf("\nBulk write through the tunnel, %zu MiB (MB/s, best of 3)\n", mib);
    char http[64], socks[64];
    snprintf(http, sizeof http, "http://127.0.0.1:%u", tp_port);
    snprintf(socks, sizeof socks, "socks5h://127.0.0.1:%u", ms_port);
    const char *urls[3] = { NULL, http, socks };
    const char *labels[3] = { "direct rill_connect (baseline)", "through tinyproxy (http://)",
                              "through microsocks (socks5h://)" };
    double best[3] = { 0, 0, 0 };
    for (int rep = 0; rep < 3; rep++) {
        for (int k = 0; k < 3; k++) {
            double mbps = throughput(urls[k], mib << 20);
            if (mbps > best[k])
                best[k] = mbps;
        }
    }
    for (int k = 0; k < 3; k++)
        printf("%-40s %10.0f MB/s  %.2f of direct\n", labels[k], best[k], best[k] / best[0]);
    rill_tls_config_free(proxy_tls);
    for (int v = 0; v < NV; v++)
        free(lat[v]);
    return 0;
}
