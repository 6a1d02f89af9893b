/* SPDX-License-Identifier: MIT */
/*
 * bench_throughput: bulk loopback TCP through `tcp > buffered` against raw read(2)/write(2)
 * with the same buffer sizes, in the same run, both directions.
 *
 *  recv: a raw peer thread write(2)s the data in chunk-sized writes; this thread reads it with
 *        read(2) (baseline) or rill_read() on `tcp > buffered` (and bare `tcp`, for information),
 *        always into a chunk-sized buffer.
 *  send: this thread writes chunk-sized blocks with write(2) or rill_write_all() and closes; a
 *        raw peer thread read(2)s them into a chunk-sized buffer. The time runs until the peer
 *        has received the last byte.
 *
 * The rill receiver connects with rill_tcp_connect_addr(); the rill sender is a stream from
 * rill_listen()/rill_accept(). Raw sockets get TCP_NODELAY like rill's default. Each variant is
 * run --reps times, interleaved with the others (one round of every variant per rep); the table
 * shows the best and the median MB/s (10^6 bytes per second) and, as the ratio against the raw
 * baseline, the median over the rounds of rill's figure divided by the raw figure of the same
 * round. Pairing runs that ran next to each other keeps the noise of a shared machine (other
 * work, CPU frequency, loopback batching) mostly out of the ratio.
 *
 * usage: bench_throughput [-s bytes(K/M/G)] [-r reps] [-c chunk] [-b buffered-size] [-P] [-v]
 *   defaults: 512 MiB per run, 15 rounds (many shorter runs resolve a ratio better than a few
 *   long ones on a noisy machine), 64 KiB chunks, buffered(RILL_BUFFERED_DEFAULT_SIZE)
 *   -P  do not pin the measured thread and its peer to different CPUs   -v  print every run
 */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum variant { RAW, RILL_BUFFERED, RILL_BARE, VARIANTS };

struct config {
    uint64_t bytes;
    size_t reps;
    size_t chunk;
    size_t bufsize;
};

/* The raw end of a connection, driven by a thread. */
struct peer {
    int fd;
    uint64_t bytes; /* to send, or received */
    size_t chunk;
    unsigned char *buf;
};

static void *peer_send(void *arg)
{
    struct peer *p = arg;
    bench_pin(0);
    uint64_t left = p->bytes;
    while (left > 0) {
        size_t n = left < p->chunk ? (size_t)left : p->chunk;
        bench_write_all(p->fd, p->buf, n);
        left -= n;
    }
    close(p->fd);
    return NULL;
}

static void *peer_recv(void *arg)
{
    struct peer *p = arg;
    bench_pin(0);
    p->bytes = 0;
    for (;;) {
        ssize_t r = read(p->fd, p->buf, p->chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            bench_die("peer read: %s", strerror(errno));
        if (r == 0)
            break;
        p->bytes += (uint64_t)r;
    }
    close(p->fd);
    return NULL;
}

struct bench {
    struct config cfg;
    int raw_listen;
    uint16_t raw_port;
    rill_listener *rill_listen;
    unsigned char *mine;   /* this thread's chunk buffer */
    unsigned char *theirs; /* the peer's chunk buffer */
};

/* Wrap a tcp stream as the variant asks: buffered on top, or bare. */
static rill_stream *stack_variant(const struct bench *b, enum variant v, rill_stream *tcp)
{
    if (v == RILL_BARE)
        return tcp;
    rill_stream *s = NULL;
    bench_check(rill_buffered_new(tcp, b->cfg.bufsize, b->cfg.bufsize, 0, &s), "rill_buffered_new",
                tcp);
    return s;
}

static double run_recv(struct bench *b, enum variant v)
{
    int fd = -1;
    rill_stream *s = NULL;
    if (v == RAW) {
        fd = bench_connect(b->raw_port);
    } else {
        rill_error err;
        rill_stream *tcp = NULL;
        if (rill_tcp_connect_addr("127.0.0.1", b->raw_port, NULL, &tcp, &err) != RILL_OK)
            bench_die("rill_tcp_connect_addr: %s", err.msg);
        s = stack_variant(b, v, tcp);
    }
    struct peer p = { bench_accept(b->raw_listen), b->cfg.bytes, b->cfg.chunk, b->theirs };
    pthread_t t;

    double t0 = bench_now();
    if (pthread_create(&t, NULL, peer_send, &p) != 0)
        bench_die("pthread_create failed");
    uint64_t got = 0;
    if (v == RAW) {
        for (;;) {
            ssize_t r = read(fd, b->mine, b->cfg.chunk);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                bench_die("read: %s", strerror(errno));
            if (r == 0)
                break;
            got += (uint64_t)r;
        }
    } else {
        for (;;) {
            size_t n = 0;
            rill_status st = rill_read(s, b->mine, b->cfg.chunk, &n);
            if (st == RILL_EOF)
                break;
            bench_check(st, "rill_read", s);
            got += n;
        }
    }
    double t1 = bench_now();
    pthread_join(t, NULL);
    if (v == RAW)
        close(fd);
    else
        (void)rill_close(s);
    if (got != b->cfg.bytes)
        bench_die("recv: got %llu bytes, sent %llu", (unsigned long long)got,
                  (unsigned long long)b->cfg.bytes);
    return (double)got / (t1 - t0) / 1e6;
}

static double run_send(struct bench *b, enum variant v)
{
    int fd = -1;
    rill_stream *s = NULL;
    struct peer p = { -1, 0, b->cfg.chunk, b->theirs };
    if (v == RAW) {
        p.fd = bench_connect(b->raw_port);
        fd = bench_accept(b->raw_listen);
    } else {
        rill_error err;
        rill_stream *tcp = NULL;
        p.fd = bench_connect(rill_listener_port(b->rill_listen));
        if (rill_accept(b->rill_listen, 5000, &tcp, &err) != RILL_OK)
            bench_die("rill_accept: %s", err.msg);
        s = stack_variant(b, v, tcp);
    }
    pthread_t t;

    double t0 = bench_now();
    if (pthread_create(&t, NULL, peer_recv, &p) != 0)
        bench_die("pthread_create failed");
    uint64_t left = b->cfg.bytes;
    while (left > 0) {
        size_t n = left < b->cfg.chunk ? (size_t)left : b->cfg.chunk;
        if (v == RAW)
            bench_write_all(fd, b->mine, n);
        else
            bench_check(rill_write_all(s, b->mine, n, NULL), "rill_write_all", s);
        left -= n;
    }
    if (v == RAW)
        close(fd);
    else
        bench_check(rill_close(s), "rill_close", NULL);
    pthread_join(t, NULL);
    double t1 = bench_now();
    if (p.bytes != b->cfg.bytes)
        bench_die("send: peer got %llu bytes, sent %llu", (unsigned long long)p.bytes,
                  (unsigned long long)b->cfg.bytes);
    return (double)p.bytes / (t1 - t0) / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_throughput [-s bytes] [-r reps] [-c chunk] [-b buffered] "
                    "[-P] [-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct bench b = { .cfg = { 512u * 1024 * 1024, 15, 65536, RILL_BUFFERED_DEFAULT_SIZE } };
    int opt;
    while ((opt = getopt(argc, argv, "s:r:c:b:Pv")) != -1) {
        switch (opt) {
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        case 's': b.cfg.bytes = bench_parse_count(optarg, "size"); break;
        case 'r': b.cfg.reps = (size_t)bench_parse_count(optarg, "reps"); break;
        case 'c': b.cfg.chunk = (size_t)bench_parse_count(optarg, "chunk"); break;
        case 'b': b.cfg.bufsize = (size_t)bench_parse_count(optarg, "buffered size"); break;
        default: usage();
        }
    }
    if (optind != argc || b.cfg.reps > 99)
        usage();

    int pinned = bench_pin(1);
    b.raw_listen = bench_listen(&b.raw_port);
    rill_error err;
    if (rill_listen("127.0.0.1", 0, NULL, &b.rill_listen, &err) != RILL_OK)
        bench_die("rill_listen: %s", err.msg);
    b.mine = malloc(b.cfg.chunk);
    b.theirs = malloc(b.cfg.chunk);
    if (b.mine == NULL || b.theirs == NULL)
        bench_die("out of memory");
    for (size_t i = 0; i < b.cfg.chunk; i++) {
        b.mine[i] = (unsigned char)(i * 131 + 7);
        b.theirs[i] = (unsigned char)(i * 17 + 3);
    }

    /* [direction][variant][rep], runs interleaved so drift hits every variant alike */
    double fig[2][VARIANTS][100];
    for (size_t r = 0; r < b.cfg.reps; r++) {
        for (int k = 0; k < VARIANTS; k++) {
            enum variant v = (enum variant)(r % 2 ? VARIANTS - 1 - k : k);
            fig[0][v][r] = run_recv(&b, v);
            fig[1][v][r] = run_send(&b, v);
            if (bench_verbose)
                fprintf(stderr, "run %zu variant %d: recv %.1f send %.1f MB/s\n", r, (int)v,
                        fig[0][v][r], fig[1][v][r]);
        }
    }

    char sz[32];
    snprintf(sz, sizeof sz, "%zu", b.cfg.bufsize);
    static const char *dir_name[2] = { "recv", "send" };
    static const char *op_name[2] = { "read", "write" };
    struct bench_row rows[2 * VARIANTS];
    memset(rows, 0, sizeof rows);
    size_t nrows = 0;
    for (int d = 0; d < 2; d++) {
        double best[VARIANTS], med[VARIANTS], ratio[VARIANTS];
        for (int v = 0; v < VARIANTS; v++)
            ratio[v] = bench_paired_ratio(fig[d][v], fig[d][RAW], b.cfg.reps);
        for (int v = 0; v < VARIANTS; v++) {
            best[v] = bench_max(fig[d][v], b.cfg.reps);
            med[v] = bench_median(fig[d][v], b.cfg.reps);
        }
        for (int v = 0; v < VARIANTS; v++) {
            struct bench_row *row = &rows[nrows++];
            if (v == RAW)
                snprintf(row->name, sizeof row->name, "%s raw %s(2)", dir_name[d], op_name[d]);
            else if (v == RILL_BUFFERED)
                snprintf(row->name, sizeof row->name, "%s rill tcp > buffered(%s)", dir_name[d],
                         sz);
            else
                snprintf(row->name, sizeof row->name, "%s rill tcp (bare, for information)",
                         dir_name[d]);
            row->best = best[v];
            row->median = med[v];
            row->ratio = v == RAW ? -1 : ratio[v];
            row->goal = v == RILL_BUFFERED ? 0.97 : 0;
        }
    }
    char title[200];
    snprintf(title, sizeof title,
             "bench_throughput: loopback TCP, %.0f MiB per run, %zu-byte reads/writes on both "
             "sides, best and median of %zu runs%s",
             (double)b.cfg.bytes / (1024.0 * 1024.0), b.cfg.chunk, b.cfg.reps,
             pinned ? ", peer and measured thread pinned to two CPUs" : "");
    bench_print_table(title, "MB/s", "vs raw", rows, nrows);
    printf("vs raw: median over the runs of rill's figure / the raw figure of the same round\n");

    rill_listener_free(b.rill_listen);
    close(b.raw_listen);
    free(b.mine);
    free(b.theirs);
    return 0;
}
