/* SPDX-License-Identifier: MIT */
/*
 * bench_writev: gather writes of a 200-byte header and a 16 KiB body, message after message,
 * against raw baselines in the same run, over loopback TCP:
 *
 *   tcp   raw writev(2) of the two pieces (baseline) against rill_writev on `tcp`, and for
 *         information two rill_write_all calls (header, then body)
 *   TLS   raw SSL_write_ex of a copied buffer (header and body joined with memcpy, then written;
 *         raw OpenSSL on the socket, rill's SSL modes) against rill_writev on `tcp > tls`
 *
 * A raw peer thread (pinned to another CPU) reads everything and sums the bytes; the sum and
 * the count must equal what was sent. Figures: messages per second (the time runs until the
 * peer has read the last byte) and the sending thread's CPU time per message.
 *
 * usage: bench_writev [-n messages] [-r reps] [-o variant] [-P] [-v]
 *   defaults: 5,000 messages per run, 9 rounds; -o runs one variant (1..5) for a profiler
 */
#include "common.h"
#include "tls_peer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define SERVER_NAME "bench.rill.test"
#define HEADER_LEN  200u
#define BODY_LEN    16384u
#define MAX_REPS    99

enum variant {
    V_RAW_WRITEV,
    V_RILL_WRITEV,
    V_RILL_TWO_WRITES,
    V_RAW_SSL_COPY,
    V_RILL_TLS,
    VARIANTS
};

static bool is_tls(enum variant v)
{
    return v >= V_RAW_SSL_COPY;
}

struct bench {
    size_t messages;
    unsigned char header[HEADER_LEN];
    unsigned char body[BODY_LEN];
    uint64_t want_sum;
    struct bench_tls t; /* the raw peer and the client contexts */
};

struct peer {
    const struct bench *b;
    bool tls;
    uint64_t got;
    uint64_t sum;
};

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    bench_pin(0);
    int fd = bench_accept(p->b->t.listen_fd);
    SSL *ssl = NULL;
    if (p->tls) {
        ssl = SSL_new(p->b->t.server);
        if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
            bench_ssl_die("peer: SSL_accept");
    }
    static unsigned char buf[65536];
    for (;;) {
        size_t n = 0;
        if (ssl) {
            if (SSL_read_ex(ssl, buf, sizeof buf, &n) != 1)
                break; /* close_notify or the end */
        } else {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            n = (size_t)r;
        }
        p->got += n;
        for (size_t i = 0; i < n; i++)
            p->sum += buf[i];
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The loop of one variant: @p fd / @p ssl for raw, @p s for rill. */
__attribute__((noinline)) /* a function of its own for callgrind --toggle-collect */
static void
send_loop(struct bench *b, enum variant v, int fd, SSL *ssl, rill_stream *s)
{
    static unsigned char joined[HEADER_LEN + BODY_LEN];
    struct iovec iov[2] = { { b->header, HEADER_LEN }, { b->body, BODY_LEN } };
    for (size_t m = 0; m < b->messages; m++) {
        switch (v) {
        case V_RAW_WRITEV: {
            size_t done = 0, total = HEADER_LEN + BODY_LEN;
            while (done < total) {
                struct iovec rest[2];
                int k = 0;
                for (int i = 0, off = 0; i < 2; off += (int)iov[i].iov_len, i++) {
                    size_t skip = done > (size_t)off ? done - (size_t)off : 0;
                    if (skip < iov[i].iov_len) {
                        rest[k].iov_base = (char *)iov[i].iov_base + skip;
                        rest[k].iov_len = iov[i].iov_len - skip;
                        k++;
                    }
                }
                ssize_t r = writev(fd, rest, k);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    bench_die("writev: %s", strerror(errno));
                done += (size_t)r;
            }
            break;
        }
        case V_RAW_SSL_COPY: {
            memcpy(joined, b->header, HEADER_LEN);
            memcpy(joined + HEADER_LEN, b->body, BODY_LEN);
            for (size_t off = 0; off < sizeof joined;) {
                size_t w = 0;
                if (SSL_write_ex(ssl, joined + off, sizeof joined - off, &w) != 1)
                    bench_ssl_die("SSL_write_ex");
                off += w;
            }
            break;
        }
        case V_RILL_TWO_WRITES:
            bench_check(rill_write_all(s, b->header, HEADER_LEN, NULL), "rill_write_all", s);
            bench_check(rill_write_all(s, b->body, BODY_LEN, NULL), "rill_write_all", s);
            break;
        default: bench_check(rill_writev(s, iov, 2, NULL), "rill_writev", s); break;
        }
    }
}

/* Messages per second; *cpu_us: the sending thread's CPU microseconds per message. */
static double run(struct bench *b, enum variant v, double *cpu_us)
{
    struct peer p = { b, is_tls(v), 0, 0 };
    pthread_t t;
    if (pthread_create(&t, NULL, peer_main, &p) != 0)
        bench_die("pthread_create failed");
    int fd = -1;
    SSL *ssl = NULL;
    rill_stream *s = NULL;
    rill_error err;
    if (v == V_RAW_WRITEV || v == V_RAW_SSL_COPY) {
        fd = bench_connect(b->t.port);
        if (v == V_RAW_SSL_COPY) {
            ssl = SSL_new(b->t.raw);
            if (!ssl || SSL_set_fd(ssl, fd) != 1 ||
                SSL_set_tlsext_host_name(ssl, SERVER_NAME) != 1 ||
                SSL_set1_host(ssl, SERVER_NAME) != 1 || SSL_connect(ssl) != 1)
                bench_ssl_die("SSL_connect");
        }
    } else {
        if (rill_tcp_connect_addr("127.0.0.1", b->t.port, NULL, &s, &err) != RILL_OK)
            bench_die("rill_tcp_connect_addr: %s", err.msg);
        if (v == V_RILL_TLS) {
            rill_stream *tls = NULL;
            bench_check(rill_tls_client(s, b->t.tls, SERVER_NAME, 0, &tls), "rill_tls_client", s);
            bench_check(rill_tls_handshake(tls), "rill_tls_handshake", tls);
            s = tls;
        }
    }
    double c0 = thread_cpu(), t0 = bench_now();
    send_loop(b, v, fd, ssl, s);
    if (ssl) {
        if (SSL_shutdown(ssl) < 0)
            bench_ssl_die("SSL_shutdown");
        shutdown(fd, SHUT_WR);
    } else if (s) {
        bench_check(rill_shutdown(s), "rill_shutdown", s);
    } else {
        shutdown(fd, SHUT_WR);
    }
    double c1 = thread_cpu();
    pthread_join(t, NULL);
    double t1 = bench_now();
    if (ssl)
        SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    if (s)
        (void)rill_close(s);
    uint64_t want = (uint64_t)b->messages * (HEADER_LEN + BODY_LEN);
    if (p.got != want || p.sum != b->want_sum)
        bench_die("variant %d: the peer got %llu bytes (sum %llu), sent %llu (sum %llu)", (int)v,
                  (unsigned long long)p.got, (unsigned long long)p.sum, (unsigned long long)want,
                  (unsigned long long)b->want_sum);
    *cpu_us = (c1 - c0) / (double)b->messages * 1e6;
    return (double)b->messages / (t1 - t0);
}

static void setup(struct bench *b)
{
    for (size_t i = 0; i < HEADER_LEN; i++)
        b->header[i] = (unsigned char)(i * 31 + 1);
    for (size_t i = 0; i < BODY_LEN; i++)
        b->body[i] = (unsigned char)(i * 7 + 3);
    uint64_t one = 0;
    for (size_t i = 0; i < HEADER_LEN; i++)
        one += b->header[i];
    for (size_t i = 0; i < BODY_LEN; i++)
        one += b->body[i];
    b->want_sum = one * b->messages;

    bench_tls_setup(&b->t, SERVER_NAME, "TLS_AES_256_GCM_SHA384");
}

int main(int argc, char **argv)
{
    static struct bench b;
    b.messages = 5000;
    size_t reps = 9;
    int only = -1, opt;
    while ((opt = getopt(argc, argv, "n:r:o:Pv")) != -1) {
        switch (opt) {
        case 'n': b.messages = (size_t)bench_parse_count(optarg, "messages"); break;
        case 'r': reps = (size_t)bench_parse_count(optarg, "reps"); break;
        case 'o': only = (int)bench_parse_count(optarg, "variant") - 1; break;
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        default:
            fprintf(stderr, "usage: bench_writev [-n messages] [-r reps] [-o variant] [-P] [-v]\n");
            return 2;
        }
    }
    if (reps == 0 || reps > MAX_REPS || only >= VARIANTS)
        bench_die("reps must be 1..%d, variant 1..%d", MAX_REPS, VARIANTS);
    signal(SIGPIPE, SIG_IGN);
    int pinned = bench_pin(1);
    setup(&b);
    static double rate[VARIANTS][MAX_REPS], cpu[VARIANTS][MAX_REPS];
    for (size_t r = 0; r < reps; r++) {
        for (int k = 0; k < VARIANTS; k++) {
            enum variant v = (enum variant)(r % 2 ? VARIANTS - 1 - k : k);
            if (only >= 0 && (int)v != only) {
                rate[v][r] = cpu[v][r] = 1;
                continue;
            }
            rate[v][r] = run(&b, v, &cpu[v][r]);
            if (bench_verbose)
                fprintf(stderr, "run %zu variant %d: %.0f msg/s, %.2f us CPU\n", r, (int)v,
                        rate[v][r], cpu[v][r]);
        }
    }
    static const char *const names[VARIANTS] = {
        "tcp: raw writev(2) (baseline)", "tcp: rill_writev",
        "tcp: rill_write_all x2 (info)", "TLS: raw SSL_write_ex, copied (baseline)",
        "TLS: rill_writev, tcp > tls",
    };
    struct bench_row rows[VARIANTS], cpu_rows[VARIANTS];
    memset(rows, 0, sizeof rows);
    memset(cpu_rows, 0, sizeof cpu_rows);
    for (int v = 0; v < VARIANTS; v++) {
        int base = is_tls((enum variant)v) ? V_RAW_SSL_COPY : V_RAW_WRITEV;
        snprintf(rows[v].name, sizeof rows[v].name, "%s", names[v]);
        snprintf(cpu_rows[v].name, sizeof cpu_rows[v].name, "%s", names[v]);
        rows[v].ratio = cpu_rows[v].ratio = -1;
        if (v != base) {
            rows[v].ratio = bench_paired_ratio(rate[v], rate[base], reps);
            bench_paired_range(rate[v], rate[base], reps, &rows[v].lo, &rows[v].hi);
            cpu_rows[v].ratio = bench_paired_ratio(cpu[v], cpu[base], reps);
            bench_paired_range(cpu[v], cpu[base], reps, &cpu_rows[v].lo, &cpu_rows[v].hi);
            rows[v].goal = v == V_RILL_WRITEV || v == V_RILL_TLS ? 0.95 : 0;
        }
    }
    for (int v = 0; v < VARIANTS; v++) {
        rows[v].best = bench_max(rate[v], reps);
        rows[v].median = bench_median(rate[v], reps);
        cpu_rows[v].best = bench_median(cpu[v], reps);
        cpu_rows[v].median = cpu_rows[v].best;
    }
    char title[256];
    snprintf(title, sizeof title,
             "bench_writev: %u-byte header + %u-byte body per message, %zu messages per run over "
             "loopback TCP (TLS: TLSv1.3 TLS_AES_256_GCM_SHA384), best and median of %zu runs%s",
             HEADER_LEN, BODY_LEN, b.messages, reps, pinned ? ", peer pinned apart" : "");
    bench_print_table(title, "msg/s", "vs raw", rows, VARIANTS);
    bench_print_table("bench_writev: the sending thread's CPU time per message "
                      "(CLOCK_THREAD_CPUTIME_ID), median; ratio: lower is better",
                      "CPU us", "vs raw", cpu_rows, VARIANTS);
    bench_tls_free(&b.t);
    return 0;
}
