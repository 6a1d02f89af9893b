/* SPDX-License-Identifier: MIT */
/*
 * bench_lines_batch: the line goals of issue 11, rill against a hand-written memchr() splitter
 * in the same run, over a socketpair and over TLS (loopback TCP), for 40-byte and 1 KiB lines:
 *
 *   memchr splitter   read(2) (socketpair) or SSL_read_ex (TLS, raw OpenSSL on the socket) into
 *                     a 64 KiB buffer, lines found with memchr(): the baseline
 *   rill_read_line    `fd > buffered(64 KiB) > lines` (socketpair) or
 *                     `tcp > tls > buffered(64 KiB) > lines` (TLS), one call per line
 *   rill_read_lines   the same chain, every whole line buffered per call (batches of 256)
 *   rill_line_iter    the same chain, rill_line_iter_next() (inline, batches of 64)
 *
 * One sender thread (raw write(2), or a raw OpenSSL server with SSL_write) writes a ~1 MiB
 * block of lines over and over until the line count is reached, then closes (close_notify over
 * TLS). Every reader counts lines, line bytes and the sum of each line's first and last bytes;
 * a reader that does not see exactly what was sent stops the program.
 *
 * Readers run interleaved, one round of each per rep, the order reversed every other round;
 * ratios are medians (and min-max) of per-round ratios to the splitter.
 *
 * usage: bench_lines_batch [-n lines] [-r reps] [-o reader] [-t transport] [-l len] [-P] [-v]
 *   defaults: 4,000,000 lines of 40 bytes and 400,000 of 1 KiB per run (TLS: a quarter), 9 rounds
 *   -o 1..4, -t 1 (socketpair) or 2 (TLS), -l 40 or 1024: run only that (for profilers)
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
#include <unistd.h>

#include <openssl/ssl.h>

#define BUF_SIZE    65536u
#define NOINLINE    __attribute__((noinline)) /* own functions for callgrind --toggle-collect */
#define SERVER_NAME "bench.rill.test"
#define MAX_REPS    99

enum reader { R_MEMCHR, R_READ_LINE, R_READ_LINES, R_ITER, READERS };
enum transport { T_SOCKETPAIR, T_TLS, TRANSPORTS };

struct tally {
    uint64_t lines;
    uint64_t bytes; /* without the LF */
    uint64_t ends;  /* sum of the first and last byte of each non-empty line */
};

static void count_line(struct tally *t, const char *p, size_t len)
{
    t->lines++;
    t->bytes += len;
    if (len)
        t->ends += (unsigned char)p[0] + (unsigned char)p[len - 1];
}

struct bench {
    uint64_t lines;
    size_t line_len;
    char *block;
    size_t block_lines;
    struct tally want;
    /* TLS */
    struct bench_tls t; /* the raw peer and the client contexts */
};

/* ---- the sender ---- */

struct sender {
    const struct bench *b;
    enum transport tr;
    int fd; /* socketpair end; or -1: accept a TLS connection */
};

static void *send_lines(void *arg)
{
    struct sender *s = arg;
    const struct bench *b = s->b;
    bench_pin(0);
    SSL *ssl = NULL;
    int fd = s->fd;
    if (s->tr == T_TLS) {
        fd = bench_accept(b->t.listen_fd);
        ssl = SSL_new(b->t.server);
        if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
            bench_ssl_die("sender: SSL_accept");
    }
    for (uint64_t left = b->lines; left > 0;) {
        size_t n = left < b->block_lines ? (size_t)left : b->block_lines;
        size_t len = n * b->line_len;
        if (ssl) {
            for (size_t off = 0; off < len;) {
                size_t w = 0;
                if (SSL_write_ex(ssl, b->block + off, len - off, &w) != 1)
                    bench_ssl_die("sender: SSL_write_ex");
                off += w;
            }
        } else {
            bench_write_all(fd, b->block, len);
        }
        left -= n;
    }
    if (ssl) {
        (void)SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return NULL;
}

/* ---- readers ---- */

/* The baseline: a memchr() splitter over read(2) or SSL_read_ex into a 64 KiB buffer. */
NOINLINE static void read_memchr(int fd, SSL *ssl, struct tally *t)
{
    static char buf[BUF_SIZE];
    size_t have = 0;
    for (;;) {
        if (have == sizeof buf)
            bench_die("memchr: line longer than the buffer");
        size_t got = 0;
        if (ssl) {
            if (SSL_read_ex(ssl, buf + have, sizeof buf - have, &got) != 1) {
                if (SSL_get_error(ssl, 0) == SSL_ERROR_ZERO_RETURN)
                    break;
                bench_ssl_die("SSL_read_ex");
            }
        } else {
            ssize_t r = read(fd, buf + have, sizeof buf - have);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                bench_die("read: %s", strerror(errno));
            if (r == 0)
                break;
            got = (size_t)r;
        }
        const char *p = buf, *end = buf + have + got;
        const char *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            count_line(t, p, (size_t)(nl - p));
            p = nl + 1;
        }
        have = (size_t)(end - p);
        memmove(buf, p, have);
    }
    if (have > 0)
        count_line(t, buf, have);
}

NOINLINE static void read_line_loop(rill_stream *s, struct tally *t)
{
    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_read_line(s, &line, &len);
        if (st != RILL_OK) {
            if (st == RILL_EOF)
                break;
            bench_check(st, "rill_read_line", s);
        }
        count_line(t, line, len);
    }
}

NOINLINE static void read_lines_loop(rill_stream *s, struct tally *t)
{
    static rill_line lines[256];
    for (;;) {
        size_t n = 0;
        rill_status st = rill_read_lines(s, lines, 256, &n);
        if (st != RILL_OK) {
            if (st == RILL_EOF)
                break;
            bench_check(st, "rill_read_lines", s);
        }
        for (size_t i = 0; i < n; i++)
            count_line(t, lines[i].data, lines[i].len);
    }
}

NOINLINE static void iter_loop(rill_stream *s, struct tally *t)
{
    static rill_line_iter it;
    rill_line_iter_init(&it, s);
    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_line_iter_next(&it, &line, &len);
        if (st != RILL_OK) {
            if (st == RILL_EOF)
                break;
            bench_check(st, "rill_line_iter_next", s);
        }
        count_line(t, line, len);
    }
}

/* ---- one run ---- */

static rill_stream *rill_chain(struct bench *b, enum transport tr, int fd)
{
    rill_error err;
    rill_stream *in = NULL, *mid = NULL, *top = NULL;
    if (tr == T_SOCKETPAIR) {
        if (rill_fd_new(fd, fd, RILL_FD_OWN, &in, &err) != RILL_OK)
            bench_die("rill_fd_new: %s", err.msg);
    } else {
        rill_stream *tcp = NULL;
        if (rill_tcp_connect_addr("127.0.0.1", b->t.port, NULL, &tcp, &err) != RILL_OK)
            bench_die("rill_tcp_connect_addr: %s", err.msg);
        bench_check(rill_tls_client(tcp, b->t.tls, SERVER_NAME, 0, &in), "rill_tls_client", tcp);
        bench_check(rill_tls_handshake(in), "rill_tls_handshake", in);
    }
    bench_check(rill_buffered_new(in, BUF_SIZE, BUF_SIZE, 0, &mid), "rill_buffered_new", in);
    bench_check(rill_lines_new(mid, RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, 0, &top), "rill_lines_new",
                mid);
    return top;
}

/* One timed run of reader @p r over @p tr; returns M lines/s (time after the handshake). */
static double run(struct bench *b, enum transport tr, enum reader r)
{
    struct sender snd = { b, tr, -1 };
    int fd = -1;
    SSL *ssl = NULL;
    rill_stream *s = NULL;
    pthread_t th;
    if (tr == T_SOCKETPAIR) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            bench_die("socketpair: %s", strerror(errno));
        snd.fd = sv[1];
        fd = sv[0];
    }
    if (pthread_create(&th, NULL, send_lines, &snd) != 0)
        bench_die("pthread_create failed");
    if (r == R_MEMCHR && tr == T_TLS) {
        fd = bench_connect(b->t.port);
        ssl = SSL_new(b->t.raw);
        if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_set_tlsext_host_name(ssl, SERVER_NAME) != 1 ||
            SSL_set1_host(ssl, SERVER_NAME) != 1 || SSL_connect(ssl) != 1)
            bench_ssl_die("SSL_connect");
    } else if (r != R_MEMCHR) {
        s = rill_chain(b, tr, fd);
    }
    struct tally t = { 0, 0, 0 };
    double t0 = bench_now();
    switch (r) {
    case R_MEMCHR: read_memchr(fd, ssl, &t); break;
    case R_READ_LINE: read_line_loop(s, &t); break;
    case R_READ_LINES: read_lines_loop(s, &t); break;
    default: iter_loop(s, &t); break;
    }
    double t1 = bench_now();
    pthread_join(th, NULL);
    if (ssl) {
        SSL_free(ssl);
        close(fd);
    } else if (s) {
        bench_check(rill_close(s), "rill_close", NULL);
    } else {
        close(fd);
    }
    if (t.lines != b->want.lines || t.bytes != b->want.bytes || t.ends != b->want.ends)
        bench_die("reader %d over %d: %llu lines / %llu bytes / %llu ends; sent %llu / %llu / %llu",
                  (int)r, (int)tr, (unsigned long long)t.lines, (unsigned long long)t.bytes,
                  (unsigned long long)t.ends, (unsigned long long)b->want.lines,
                  (unsigned long long)b->want.bytes, (unsigned long long)b->want.ends);
    return (double)t.lines / (t1 - t0) / 1e6;
}

/* The block of lines and what a reader must count for @p lines of @p line_len bytes. */
static void make_block(struct bench *b, size_t line_len, uint64_t lines)
{
    free(b->block);
    b->line_len = line_len;
    b->lines = lines;
    b->block_lines = (1u << 20) / line_len;
    b->block = malloc(b->block_lines * line_len);
    if (!b->block)
        bench_die("out of memory");
    struct tally per_block = { 0, 0, 0 };
    for (size_t i = 0; i < b->block_lines; i++) {
        char *line = b->block + i * line_len;
        for (size_t j = 0; j + 1 < line_len; j++)
            line[j] = (char)('!' + (i * 7 + j * 13) % 94);
        line[line_len - 1] = '\n';
    }
    memset(&b->want, 0, sizeof b->want);
    for (uint64_t left = lines; left > 0;) {
        size_t n = left < b->block_lines ? (size_t)left : b->block_lines;
        for (size_t i = 0; i < n; i++)
            count_line(&per_block, b->block + i * line_len, line_len - 1);
        b->want.lines += per_block.lines;
        b->want.bytes += per_block.bytes;
        b->want.ends += per_block.ends;
        memset(&per_block, 0, sizeof per_block);
        left -= n;
    }
}

int main(int argc, char **argv)
{
    struct bench b;
    memset(&b, 0, sizeof b);
    size_t reps = 9;
    uint64_t lines = 0;
    int opt, only = -1, only_tr = -1;
    size_t only_len = 0;
    while ((opt = getopt(argc, argv, "n:r:o:t:l:Pv")) != -1) {
        switch (opt) {
        case 'o': only = (int)bench_parse_count(optarg, "reader") - 1; break;
        case 't': only_tr = (int)bench_parse_count(optarg, "transport") - 1; break;
        case 'l': only_len = (size_t)bench_parse_count(optarg, "line length"); break;
        case 'n': lines = bench_parse_count(optarg, "line count"); break;
        case 'r': reps = (size_t)bench_parse_count(optarg, "reps"); break;
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        default:
            fprintf(stderr, "usage: bench_lines_batch [-n lines] [-r reps] [-o reader] "
                            "[-t transport] [-l len] [-P] [-v]\n");
            return 2;
        }
    }
    if (reps == 0 || reps > MAX_REPS)
        bench_die("reps must be 1..%d", MAX_REPS);
    signal(SIGPIPE, SIG_IGN);
    int pinned = bench_pin(1);
    bench_tls_setup(&b.t, SERVER_NAME, "TLS_AES_256_GCM_SHA384");

    static const size_t lens[2] = { 40, 1024 };
    static const char *const tr_name[TRANSPORTS] = { "socketpair", "TLS" };
    static const char *const rd_name[READERS] = { "memchr splitter (baseline)", "rill_read_line",
                                                  "rill_read_lines (batch)",
                                                  "rill_line_iter (inline)" };
    static double fig[READERS][MAX_REPS];
    for (int tr = 0; tr < TRANSPORTS; tr++) {
        for (int li = 0; li < 2; li++) {
            if ((only_tr >= 0 && tr != only_tr) || (only_len && lens[li] != only_len))
                continue;
            uint64_t n = lines ? lines : lens[li] == 40 ? 4000000 : 400000;
            if (tr == T_TLS && !lines)
                n /= 4;
            make_block(&b, lens[li], n);
            for (size_t rep = 0; rep < reps; rep++) {
                for (int k = 0; k < READERS; k++) {
                    enum reader r = (enum reader)(rep % 2 ? READERS - 1 - k : k);
                    if (only >= 0 && (int)r != only) {
                        fig[r][rep] = 1; /* not run: ratios are void */
                        continue;
                    }
                    fig[r][rep] = run(&b, (enum transport)tr, r);
                    if (bench_verbose)
                        fprintf(stderr, "%s %zu B run %zu reader %d: %.2f M lines/s\n", tr_name[tr],
                                lens[li], rep, (int)r, fig[r][rep]);
                }
            }
            struct bench_row rows[READERS];
            memset(rows, 0, sizeof rows);
            for (int r = 0; r < READERS; r++) {
                struct bench_row *row = &rows[r];
                snprintf(row->name, sizeof row->name, "%s", rd_name[r]);
                row->ratio = r == R_MEMCHR ? -1 : bench_paired_ratio(fig[r], fig[R_MEMCHR], reps);
                if (r != R_MEMCHR)
                    bench_paired_range(fig[r], fig[R_MEMCHR], reps, &row->lo, &row->hi);
                row->goal = r == R_READ_LINE ? 0.90 : r == R_MEMCHR ? 0 : 0.95;
            }
            for (int r = 0; r < READERS; r++) { /* after the ratios: bench_median sorts */
                rows[r].best = bench_max(fig[r], reps);
                rows[r].median = bench_median(fig[r], reps);
            }
            char title[256];
            snprintf(title, sizeof title,
                     "bench_lines_batch: %zu-byte lines (LF included) over %s%s, %llu lines per "
                     "run, best and median of %zu runs%s",
                     lens[li], tr_name[tr],
                     tr == T_TLS ? " (loopback TCP, TLSv1.3 TLS_AES_256_GCM_SHA384)" : "",
                     (unsigned long long)n, reps, pinned ? ", sender and reader pinned" : "");
            bench_print_table(title, "M lines/s", "vs memchr", rows, READERS);
        }
    }
    printf("rill chains: fd > buffered(%u) > lines (socketpair), tcp > tls > buffered(%u) > "
           "lines (TLS); the splitter reads into %u bytes with read(2) or SSL_read_ex\n",
           BUF_SIZE, BUF_SIZE, BUF_SIZE);
    bench_tls_free(&b.t);
    free(b.block);
    return 0;
}
