/* SPDX-License-Identifier: MIT */
/*
 * bench_lines: lines per second over loopback TCP through `tcp > buffered > lines` with
 * rill_read_line(), against, in the same run:
 *   - a hand-written memchr() splitter over read(2) with a 64 KiB buffer (the raw baseline),
 *   - getline() on fdopen() with a 64 KiB stdio buffer (setvbuf), and for information with
 *     stdio's default buffer (st_blksize: 4 KiB on a socket),
 *   - GIO's g_data_input_stream_read_line() over g_unix_input_stream on the socket, with a
 *     64 KiB buffer (built only when gio-2.0 is found),
 *   - for information, rill with the default buffered size and `tcp > lines` without buffered.
 * Every reader gets the same buffer size as the splitter (64 KiB) unless its row says otherwise.
 *
 * One raw sender thread feeds every reader the same way: it builds a block of ~1 MiB of lines
 * once and write(2)s it whole until the line count is reached, then closes. Each reader counts
 * lines and line bytes; a reader that does not see exactly what was sent stops the program with
 * an error (a correctness check, not a speed assertion).
 *
 * Each reader runs --reps times, interleaved with the others (one round of every reader per
 * rep); the table shows the best and the median M lines/s and, as ratios, the median over the
 * rounds of one reader's figure divided by the other's in the same round, which keeps the noise
 * of a shared machine mostly out of the ratio.
 *
 * usage: bench_lines [-n lines(K/M/G)] [-l line-length incl. LF] [-r reps] [-P] [-v]
 *   defaults: 12,000,000 lines of 40 bytes per run, 11 rounds
 *   -P  do not pin the reader and the sender to different CPUs   -v  print every run
 *   -o N  run only reader N (1 memchr, 2 getline, 3 getline with stdio's buffer, 4 rill,
 *         5 rill default size, 6 tcp > lines, 7 GIO), for profiling
 */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef RILL_BENCH_HAVE_GIO
#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#endif

#define BUF_SIZE 65536u

enum reader {
    R_MEMCHR,
    R_GETLINE,
    R_GETLINE_DEFAULT, /* getline() with stdio's own buffer size, for information */
    R_RILL,            /* tcp > buffered(64 KiB) > lines: the goal rows */
    R_RILL_DEFAULT,    /* tcp > buffered(RILL_BUFFERED_DEFAULT_SIZE) > lines */
    R_RILL_NOBUF,      /* tcp > lines */
#ifdef RILL_BENCH_HAVE_GIO
    R_GIO,
#endif
    READERS
};

struct tally {
    uint64_t lines;
    uint64_t bytes; /* line bytes without the LF */
};

struct sender {
    int fd;
    const char *block;
    size_t block_lines;
    size_t line_len;
    uint64_t lines;
};

static void *send_lines(void *arg)
{
    struct sender *s = arg;
    bench_pin(0);
    uint64_t left = s->lines;
    while (left > 0) {
        size_t n = left < s->block_lines ? (size_t)left : s->block_lines;
        bench_write_all(s->fd, s->block, n * s->line_len);
        left -= n;
    }
    close(s->fd);
    return NULL;
}

static void read_memchr(int fd, struct tally *t)
{
    static char buf[BUF_SIZE];
    size_t have = 0;
    for (;;) {
        if (have == sizeof buf)
            bench_die("memchr: line longer than the buffer");
        ssize_t r = read(fd, buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            bench_die("read: %s", strerror(errno));
        if (r == 0)
            break;
        const char *p = buf, *end = buf + have + (size_t)r;
        const char *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            t->lines++;
            t->bytes += (size_t)(nl - p);
            p = nl + 1;
        }
        have = (size_t)(end - p);
        memmove(buf, p, have);
    }
    if (have > 0) {
        t->lines++;
        t->bytes += have;
    }
    close(fd);
}

static void read_getline(int fd, struct tally *t, int own_buffer)
{
    static char iobuf[BUF_SIZE];
    FILE *fp = fdopen(fd, "r");
    if (fp == NULL)
        bench_die("fdopen: %s", strerror(errno));
    if (own_buffer && setvbuf(fp, iobuf, _IOFBF, sizeof iobuf) != 0)
        bench_die("setvbuf failed");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0) {
        t->lines++;
        t->bytes += (size_t)n - (line[n - 1] == '\n');
    }
    if (ferror(fp))
        bench_die("getline: %s", strerror(errno));
    free(line);
    fclose(fp);
}

static void read_rill(rill_stream *s, struct tally *t)
{
    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_read_line(s, &line, &len);
        if (st != RILL_OK) {
            if (st == RILL_EOF)
                break;
            bench_check(st, "rill_read_line", s); /* off the per-line path, like the others */
        }
        t->lines++;
        t->bytes += len;
    }
    bench_check(rill_close(s), "rill_close", NULL);
}

#ifdef RILL_BENCH_HAVE_GIO
static void read_gio(int fd, struct tally *t)
{
    GInputStream *base = g_unix_input_stream_new(fd, TRUE);
    GDataInputStream *data = g_data_input_stream_new(base);
    g_buffered_input_stream_set_buffer_size(G_BUFFERED_INPUT_STREAM(data), BUF_SIZE);
    g_data_input_stream_set_newline_type(data, G_DATA_STREAM_NEWLINE_TYPE_LF);
    for (;;) {
        GError *error = NULL;
        gsize len = 0;
        char *line = g_data_input_stream_read_line(data, &len, NULL, &error);
        if (line == NULL) {
            if (error != NULL)
                bench_die("g_data_input_stream_read_line: %s", error->message);
            break;
        }
        t->lines++;
        t->bytes += len;
        g_free(line);
    }
    g_object_unref(data);
    g_object_unref(base);
}
#endif

static rill_stream *rill_chain(uint16_t port, enum reader r)
{
    rill_error err;
    rill_stream *tcp = NULL, *mid = NULL, *top = NULL;
    if (rill_tcp_connect_addr("127.0.0.1", port, NULL, &tcp, &err) != RILL_OK)
        bench_die("rill_tcp_connect_addr: %s", err.msg);
    mid = tcp;
    if (r != R_RILL_NOBUF) {
        size_t size = r == R_RILL ? BUF_SIZE : RILL_BUFFERED_DEFAULT_SIZE;
        bench_check(rill_buffered_new(tcp, size, size, 0, &mid), "rill_buffered_new", tcp);
    }
    bench_check(rill_lines_new(mid, RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, 0, &top), "rill_lines_new",
                mid);
    return top;
}

struct bench {
    int listen_fd;
    uint16_t port;
    uint64_t lines;
    size_t line_len;
    char *block;
    size_t block_lines;
};

/* One timed run of reader @p r; returns M lines/s. */
static double run(struct bench *b, enum reader r)
{
    int fd = -1;
    rill_stream *s = NULL;
    if (r == R_RILL || r == R_RILL_DEFAULT || r == R_RILL_NOBUF)
        s = rill_chain(b->port, r);
    else
        fd = bench_connect(b->port);
    struct sender snd = { bench_accept(b->listen_fd), b->block, b->block_lines, b->line_len,
                          b->lines };
    struct tally t = { 0, 0 };
    pthread_t th;

    double t0 = bench_now();
    if (pthread_create(&th, NULL, send_lines, &snd) != 0)
        bench_die("pthread_create failed");
    switch (r) {
    case R_MEMCHR: read_memchr(fd, &t); break;
    case R_GETLINE: read_getline(fd, &t, 1); break;
    case R_GETLINE_DEFAULT: read_getline(fd, &t, 0); break;
#ifdef RILL_BENCH_HAVE_GIO
    case R_GIO: read_gio(fd, &t); break;
#endif
    default: read_rill(s, &t); break;
    }
    double t1 = bench_now();
    pthread_join(th, NULL);

    uint64_t want_bytes = b->lines * (b->line_len - 1);
    if (t.lines != b->lines || t.bytes != want_bytes)
        bench_die("reader %d counted %llu lines / %llu bytes; sent %llu lines / %llu bytes", (int)r,
                  (unsigned long long)t.lines, (unsigned long long)t.bytes,
                  (unsigned long long)b->lines, (unsigned long long)want_bytes);
    return (double)t.lines / (t1 - t0) / 1e6;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_lines [-n lines] [-l line-length] [-r reps] [-o reader] [-P] [-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct bench b = { .lines = 12000000, .line_len = 40 };
    size_t reps = 11;
    int opt;
    int only = -1;
    while ((opt = getopt(argc, argv, "n:l:r:o:Pv")) != -1) {
        switch (opt) {
        case 'o': only = (int)bench_parse_count(optarg, "reader") - 1; break;
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        case 'n': b.lines = bench_parse_count(optarg, "line count"); break;
        case 'l': b.line_len = (size_t)bench_parse_count(optarg, "line length"); break;
        case 'r': reps = (size_t)bench_parse_count(optarg, "reps"); break;
        default: usage();
        }
    }
    if (optind != argc || reps > 99 || b.line_len < 2 || b.line_len > 4096 || only >= READERS)
        usage();

    /* ~1 MiB of whole lines, printable and varied, each ending in LF */
    b.block_lines = (1u << 20) / b.line_len;
    b.block = malloc(b.block_lines * b.line_len);
    if (b.block == NULL)
        bench_die("out of memory");
    for (size_t i = 0; i < b.block_lines; i++) {
        char *line = b.block + i * b.line_len;
        for (size_t j = 0; j + 1 < b.line_len; j++)
            line[j] = (char)('!' + (i * 7 + j * 13) % 94);
        line[b.line_len - 1] = '\n';
    }
    int pinned = bench_pin(1);
    b.listen_fd = bench_listen(&b.port);

    double fig[READERS][100];
    for (size_t rep = 0; rep < reps; rep++) {
        for (int k = 0; k < READERS; k++) {
            enum reader r = (enum reader)(rep % 2 ? READERS - 1 - k : k);
            if (only >= 0 && (int)r != only) {
                fig[r][rep] = -1; /* not run: printed as "-" */
                continue;
            }
            fig[r][rep] = run(&b, r);
            if (bench_verbose)
                fprintf(stderr, "run %zu reader %d: %.2f M lines/s\n", rep, (int)r, fig[r][rep]);
        }
    }
    double med[READERS], best[READERS], vs_memchr[READERS];
    for (int r = 0; r < READERS; r++)
        vs_memchr[r] = bench_paired_ratio(fig[r], fig[R_MEMCHR], reps);
    double vs_getline = bench_paired_ratio(fig[R_RILL], fig[R_GETLINE], reps);
#ifdef RILL_BENCH_HAVE_GIO
    double vs_gio = bench_paired_ratio(fig[R_RILL], fig[R_GIO], reps);
#endif
    for (int r = 0; r < READERS; r++) {
        best[r] = bench_max(fig[r], reps);
        med[r] = bench_median(fig[r], reps);
    }

    char name_rill[64], name_default[64];
    snprintf(name_rill, sizeof name_rill, "rill tcp > buffered(%u) > lines", BUF_SIZE);
    snprintf(name_default, sizeof name_default, "rill tcp > buffered(%u) > lines (info)",
             RILL_BUFFERED_DEFAULT_SIZE);
    struct {
        enum reader r;
        const char *name;
        double goal;
    } layout[] = {
        { R_MEMCHR, "memchr splitter, read(2) 64 KiB (baseline)", 0 },
        { R_GETLINE, "getline(), fdopen + setvbuf 64 KiB", 0 },
        { R_GETLINE_DEFAULT, "getline(), fdopen, stdio's buffer (info)", 0 },
#ifdef RILL_BENCH_HAVE_GIO
        { R_GIO, "GIO g_data_input_stream_read_line 64 KiB", 0 },
#endif
        { R_RILL, name_rill, 0.90 },
        { R_RILL_DEFAULT, name_default, 0 },
        { R_RILL_NOBUF, "rill tcp > lines (info)", 0 },
    };
    struct bench_row rows[READERS + 2];
    memset(rows, 0, sizeof rows);
    size_t n = 0;
    for (size_t i = 0; i < sizeof layout / sizeof layout[0]; i++) {
        struct bench_row *row = &rows[n++];
        snprintf(row->name, sizeof row->name, "%s", layout[i].name);
        row->best = best[layout[i].r];
        row->median = med[layout[i].r];
        row->ratio = vs_memchr[layout[i].r];
        row->goal = layout[i].goal;
    }
    struct bench_row goal_getline = {
        "goal: rill buffered > lines / getline", -1, -1, vs_getline, 1.6, 0, 0
    };
    rows[n++] = goal_getline;
#ifdef RILL_BENCH_HAVE_GIO
    struct bench_row goal_gio = { "goal: rill buffered > lines / GIO", -1, -1, vs_gio, 5.0, 0, 0 };
    rows[n++] = goal_gio;
#endif
#ifdef RILL_BENCH_HAVE_GIO
    const char *note = "";
#else
    const char *note = " (GIO not built)";
#endif
    char title[200];
    snprintf(title, sizeof title,
             "bench_lines: %zu-byte lines (LF included), %llu lines per run over loopback TCP, "
             "best and median of %zu runs%s%s",
             b.line_len, (unsigned long long)b.lines, reps, note,
             pinned ? ", sender and reader pinned to two CPUs" : "");
    bench_print_table(title, "M lines/s", "ratio", rows, n);
    printf("ratio: median over the runs of reader / memchr splitter in the same round; goal "
           "rows: the same for rill / other reader\n");

    close(b.listen_fd);
    free(b.block);
    return 0;
}
