/* SPDX-License-Identifier: MIT */
/*
 * bench_connect: microseconds per connect over loopback TCP, in the same run:
 *   - raw connect(2) to 127.0.0.1 (the baseline; blocking socket, TCP_NODELAY like rill),
 *   - raw connect(2) to [::1] (refused) and then to 127.0.0.1: the floor for falling back,
 *   - rill_tcp_connect_addr("127.0.0.1") and rill_connect(NULL, "127.0.0.1"): numeric
 *     addresses, for information,
 *   - rill_connect(ctx, "localhost") with the default attempt delay (250 ms), where the context
 *     overrides localhost to [::1] first, then 127.0.0.1: nothing listens on [::1] at the port,
 *     so the first attempt is refused at once and 127.0.0.1 accepts. The goal is that no racing
 *     delay is added when the first attempt fails fast: the worst connect must stay far below
 *     the 250 ms delay (goal: max < 50 ms). A trace callback counts, on every timed connect, that
 *     [::1] was tried first and refused and that 127.0.0.1 won; any other path stops the program.
 *
 * The listener is a raw socket on 127.0.0.1. After each connect (untimed) it accepts, the client
 * closes first and the accepted socket is closed with SO_LINGER 0, so no TIME_WAIT state piles
 * up over tens of thousands of connections. Only the connect call itself is timed.
 *
 * Each variant runs --count connects per round, --reps rounds, interleaved with the others in
 * alternating order. The table shows the median, the 99th percentile and the maximum over all
 * connects, and, as the ratio against the raw baseline, the median over the rounds of the
 * variant's median divided by raw connect's median of the same round.
 *
 * usage: bench_connect [-c connects-per-round] [-r reps] [-P] [-v]
 *   defaults: 500 connects per round, 11 rounds
 *   -P  do not pin the process to one CPU   -v  print every round
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GOAL_MAX_MS 50.0

enum variant { C_RAW, C_RAW_FALLBACK, C_RILL_ADDR, C_RILL_NUMERIC, C_RILL_LOCALHOST, VARIANTS };

static const char *const variant_names[VARIANTS] = {
    "raw connect(2) 127.0.0.1 (baseline)",
    "raw connect(2) [::1] refused, then 127.0.0.1",
    "rill_tcp_connect_addr 127.0.0.1 (info)",
    "rill_connect NULL ctx, \"127.0.0.1\" (info)",
    "rill_connect \"localhost\": ::1 refuses, v4 ok",
};

/* What the trace callback saw on the "localhost" connects. */
struct trace {
    unsigned attempts_this;       /* attempts in the current connect */
    unsigned long v6_first;       /* connects whose first attempt was [::1] */
    unsigned long v6_refused;     /* [::1] attempts refused */
    unsigned long v4_won;         /* connects won by 127.0.0.1 */
    unsigned long other;          /* anything else: wrong order, other failures */
    long long slowest_failure_ms; /* elapsed_ms of the slowest [::1] refusal */
};

static void count_event(void *arg, const rill_connect_event *ev)
{
    struct trace *t = arg;
    int v6 = ev->addr && strncmp(ev->addr, "[::1]:", 6) == 0;
    int v4 = ev->addr && strncmp(ev->addr, "127.0.0.1:", 10) == 0;
    switch (ev->type) {
    case RILL_EV_ATTEMPT:
        if (t->attempts_this++ == 0 && v6)
            t->v6_first++;
        break;
    case RILL_EV_ATTEMPT_FAILED:
        if (v6 && ev->status == RILL_E_REFUSED) {
            t->v6_refused++;
            if (ev->elapsed_ms > t->slowest_failure_ms)
                t->slowest_failure_ms = ev->elapsed_ms;
        } else {
            t->other++;
        }
        break;
    case RILL_EV_CONNECTED:
        if (v4)
            t->v4_won++;
        else
            t->other++;
        break;
    default: break;
    }
}

static void print_event(void *arg, const rill_connect_event *ev)
{
    (void)arg;
    static const char *const names[] = { "?",         "resolving", "resolved", "attempt", "failed",
                                         "connected", "answer",    "tls",      "tls done" };
    int type = ev->type >= RILL_EV_RESOLVING && ev->type <= RILL_EV_TLS_DONE ? (int)ev->type : 0;
    printf("  %3lld ms  %-9s %s%s%s\n", (long long)ev->elapsed_ms, names[type],
           ev->addr ? ev->addr : "", ev->message ? ": " : "", ev->message ? ev->message : "");
}

struct bench {
    int listen_fd;
    uint16_t port;
    rill_ctx *ctx;
    rill_connect_opts opts;       /* defaults */
    rill_connect_opts trace_opts; /* defaults plus the counting trace */
    struct trace trace;
};

/* Accept the connection just made and close it with a reset (after the client closed). */
static int accept_one(int listen_fd)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        bench_die("accept: %s", strerror(errno));
    return fd;
}

static void close_reset(int fd)
{
    struct linger lg = { 1, 0 };
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
        bench_die("setsockopt SO_LINGER: %s", strerror(errno));
    close(fd);
}

/* A blocking connect to [::1]:@p port; returns the errno it failed with (0: it connected). */
static int connect_v6_loopback(uint16_t port)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_die("socket(AF_INET6): %s", strerror(errno));
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    sa.sin6_addr = in6addr_loopback;
    int e = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : errno;
    close(fd);
    return e;
}

/* One timed connect of variant @p v; returns microseconds. Tears the connection down after. */
static double connect_once(struct bench *b, enum variant v)
{
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = RILL_OK;
    int fd = -1;
    double t0 = 0, t1 = 0;
    switch (v) {
    case C_RAW:
        t0 = bench_now();
        fd = bench_connect(b->port);
        t1 = bench_now();
        break;
    case C_RAW_FALLBACK: {
        t0 = bench_now();
        int e = connect_v6_loopback(b->port);
        fd = bench_connect(b->port);
        t1 = bench_now();
        if (e != ECONNREFUSED)
            bench_die("connect to [::1]:%u: expected \"connection refused\", got %s",
                      (unsigned)b->port, e ? strerror(e) : "a connection");
        break;
    }
    case C_RILL_ADDR:
        t0 = bench_now();
        st = rill_tcp_connect_addr("127.0.0.1", b->port, &b->opts, &s, &err);
        t1 = bench_now();
        break;
    case C_RILL_NUMERIC:
        t0 = bench_now();
        st = rill_connect(NULL, "127.0.0.1", b->port, &b->opts, &s, &err);
        t1 = bench_now();
        break;
    case C_RILL_LOCALHOST:
        b->trace.attempts_this = 0;
        t0 = bench_now();
        st = rill_connect(b->ctx, "localhost", b->port, &b->trace_opts, &s, &err);
        t1 = bench_now();
        break;
    default: bench_die("unknown variant %d", (int)v);
    }
    if (st != RILL_OK)
        bench_die("%s: %s", variant_names[v], err.msg);
    int server = accept_one(b->listen_fd);
    if (s)
        bench_check(rill_close(s), "rill_close", NULL);
    else
        close(fd);
    close_reset(server);
    return (t1 - t0) * 1e6;
}

/* The value at quantile @p q of @p n sorted values. */
static double quantile(const double *sorted, size_t n, double q)
{
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_connect [-c connects-per-round] [-r reps] [-P] [-v]\n");
    exit(2);
}

/* Listen on 127.0.0.1 at a port where [::1] refuses (nothing listens there on IPv6). */
static void listen_v4_only(struct bench *b)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        b->listen_fd = bench_listen(&b->port);
        int e = connect_v6_loopback(b->port);
        if (e == ECONNREFUSED)
            return;
        if (e != 0)
            bench_die("connect to [::1]:%u: %s (is IPv6 loopback available?)", (unsigned)b->port,
                      strerror(e));
        close(b->listen_fd); /* something listens on [::1] at this port: try another */
    }
    bench_die("no port found where [::1] refuses and 127.0.0.1 listens (20 tries)");
}

int main(int argc, char **argv)
{
    size_t count = 500, reps = 11;
    int opt;
    while ((opt = getopt(argc, argv, "c:r:Pv")) != -1) {
        switch (opt) {
        case 'c': count = (size_t)bench_parse_count(optarg, "connects per round"); break;
        case 'r': reps = (size_t)bench_parse_count(optarg, "reps"); break;
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || reps > 99 || count > 100000)
        usage();

    struct bench b;
    memset(&b, 0, sizeof b);
    int pinned = bench_pin(1);
    listen_v4_only(&b);

    char override[64];
    snprintf(override, sizeof override, "localhost:%u:[::1],127.0.0.1", (unsigned)b.port);
    const char *overrides[] = { override, NULL };
    rill_ctx_opts copts;
    rill_ctx_opts_init(&copts);
    copts.overrides = overrides;
    copts.dns_servers = "127.0.0.1:9"; /* never asked (the override answers); loopback anyway */
    rill_error err;
    if (rill_ctx_new(&copts, &b.ctx, &err) != RILL_OK)
        bench_die("rill_ctx_new: %s", err.msg);
    rill_connect_opts_init(&b.opts);
    b.trace_opts = b.opts;
    b.trace_opts.on_event = count_event;
    b.trace_opts.on_event_arg = &b.trace;

    /* One traced connect, printed, before anything is timed. */
    rill_connect_opts show = b.opts;
    show.on_event = print_event;
    printf("\nbench_connect: trace of one rill_connect to \"localhost\" (%s), port %u:\n", override,
           (unsigned)b.port);
    rill_stream *s = NULL;
    if (rill_connect(b.ctx, "localhost", b.port, &show, &s, &err) != RILL_OK)
        bench_die("rill_connect localhost: %s", err.msg);
    int server = accept_one(b.listen_fd);
    bench_check(rill_close(s), "rill_close", NULL);
    close_reset(server);

    double *all[VARIANTS], *round_med[VARIANTS], *round_buf = malloc(count * sizeof(double));
    for (int v = 0; v < VARIANTS; v++) {
        all[v] = malloc(reps * count * sizeof(double));
        round_med[v] = malloc(reps * sizeof(double));
        if (!all[v] || !round_med[v] || !round_buf)
            bench_die("out of memory");
    }
    /* warm-up: a few connects of each kind, not counted */
    for (int v = 0; v < VARIANTS; v++)
        for (int i = 0; i < 20; i++)
            connect_once(&b, (enum variant)v);
    memset(&b.trace, 0, sizeof b.trace);

    for (size_t rep = 0; rep < reps; rep++) {
        for (int k = 0; k < VARIANTS; k++) {
            enum variant v = (enum variant)(rep % 2 ? VARIANTS - 1 - k : k);
            for (size_t i = 0; i < count; i++) {
                double us = connect_once(&b, v);
                all[v][rep * count + i] = us;
                round_buf[i] = us;
            }
            round_med[v][rep] = bench_median(round_buf, count);
            if (bench_verbose)
                fprintf(stderr, "round %zu %s: median %.1f us\n", rep, variant_names[v],
                        round_med[v][rep]);
        }
    }
    unsigned long total = (unsigned long)(reps * count);
    const struct trace *t = &b.trace;
    if (t->v6_first != total || t->v6_refused != total || t->v4_won != total || t->other != 0)
        bench_die("localhost connects did not all go [::1] refused -> 127.0.0.1: %lu connects, "
                  "%lu tried [::1] first, %lu refused on [::1], %lu won by 127.0.0.1, %lu other "
                  "events",
                  total, t->v6_first, t->v6_refused, t->v4_won, t->other);

    printf("\nbench_connect: loopback TCP connect, %zu connects per variant and round, %zu rounds "
           "(alternating order), attempt_delay_ms %d%s\n",
           count, reps, b.opts.attempt_delay_ms, pinned ? ", pinned to one CPU" : "");
    printf("%-46s %9s %9s %9s %8s %9s %s\n", "name", "median us", "p99 us", "max us", "vs raw",
           "goal", "result");
    double med_raw[100];
    memcpy(med_raw, round_med[C_RAW], reps * sizeof(double));
    for (int v = 0; v < VARIANTS; v++) {
        /* paired ratio first: bench_median sorts in place */
        double ratio = bench_paired_ratio(round_med[v], med_raw, reps);
        double med = bench_median(all[v], reps * count); /* sorts all[v] */
        double p99 = quantile(all[v], reps * count, 0.99);
        double max = all[v][reps * count - 1];
        char goal[16] = "", verdict[8] = "";
        if (v == C_RILL_LOCALHOST) {
            snprintf(goal, sizeof goal, "max<%.0fms", GOAL_MAX_MS);
            snprintf(verdict, sizeof verdict, "%s", max < GOAL_MAX_MS * 1000 ? "PASS" : "MISS");
        }
        printf("%-46s %9.1f %9.1f %9.1f %8.3f %9s %s\n", variant_names[v], med, p99, max, ratio,
               goal, verdict);
    }
    printf("vs raw: median over the rounds of the variant's median / raw connect's median in the "
           "same round. localhost: every one of %lu connects tried [::1] first (refused, slowest "
           "refusal seen at %lld ms) and was won by 127.0.0.1\n",
           total, t->slowest_failure_ms);
    fflush(stdout);

    for (int v = 0; v < VARIANTS; v++) {
        free(all[v]);
        free(round_med[v]);
    }
    free(round_buf);
    rill_ctx_free(b.ctx);
    close(b.listen_fd);
    return 0;
}
