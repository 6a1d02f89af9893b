/* SPDX-License-Identifier: MIT */
/*
 * Heap bytes held by idle connections: rill's own allocations per chain, counted through
 * rill_set_allocator, for chains of growing depth, fresh, after traffic, and after rill_shrink.
 * (The TLS layer will add raw OpenSSL's figure for the same connection as its baseline; until
 * then the figure is rill's overhead alone, whose goal is to stay within ~2 KiB.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

enum { DEPTH_TCP, DEPTH_BUFFERED, DEPTH_LINES };
static const char *const names[] = { "tcp", "tcp > buffered(16384)",
                                     "tcp > buffered(16384) > lines(8192)" };

/* One connection per depth: returns bytes held fresh, after one exchange, after shrink. */
static void measure(rill_listener *l, int depth, size_t out[3])
{
    rill_error err;
    rill_stream *c = NULL, *peer = NULL;
    size_t before = bench_live_bytes();
    if (rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &c, &err) != RILL_OK)
        bench_die("connect: %s", err.msg);
    size_t client_end = bench_live_bytes();
    if (rill_accept(l, 5000, &peer, &err) != RILL_OK)
        bench_die("accept: %s", err.msg);
    size_t peer_bytes = bench_live_bytes() - client_end; /* the server side is not counted */
    rill_stream *top = c;
    if (depth >= DEPTH_BUFFERED)
        bench_check(
            rill_buffered_new(top, RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0, &top),
            "rill_buffered_new", c);
    if (depth >= DEPTH_LINES)
        bench_check(rill_lines_new(top, RILL_LINES_DEFAULT_MAX, RILL_EOL_LF, 0, &top),
                    "rill_lines_new", c);
    out[0] = bench_live_bytes() - before - peer_bytes;
    /* One request/response so every buffer of the chain has been used. */
    bench_check(rill_write_all(top, "ping\n", 5, NULL), "write", top);
    bench_check(rill_flush(top), "flush", top);
    char buf[8];
    bench_check(rill_read_full(peer, buf, 5, NULL), "peer read", peer);
    bench_check(rill_write_all(peer, "pong\n", 5, NULL), "peer write", peer);
    if (depth >= DEPTH_LINES) {
        const char *line;
        size_t len;
        bench_check(rill_read_line(top, &line, &len), "read_line", top);
    } else {
        bench_check(rill_read_full(top, buf, 5, NULL), "read", top);
    }
    out[1] = bench_live_bytes() - before - peer_bytes;
    rill_shrink(top);
    out[2] = bench_live_bytes() - before - peer_bytes;
    rill_close(top);
    rill_close(peer);
}

int main(void)
{
    bench_count_allocator_install();
    rill_error err;
    rill_listener *l = NULL;
    if (rill_listen("127.0.0.1", 0, NULL, &l, &err) != RILL_OK)
        bench_die("listen: %s", err.msg);
    printf("bench_memory: rill heap bytes per client connection (counting allocator)\n");
    printf("%-40s %10s %14s %14s\n", "chain", "fresh", "after traffic", "after shrink");
    size_t idle_lines = 0;
    for (int depth = DEPTH_TCP; depth <= DEPTH_LINES; depth++) {
        size_t b[3];
        measure(l, depth, b);
        printf("%-40s %10zu %14zu %14zu\n", names[depth], b[0], b[1], b[2]);
        idle_lines = b[2];
    }
    rill_listener_free(l);
    printf("goal: idle chain overhead (after shrink) <= 2048 bytes: %zu bytes, %s\n", idle_lines,
           idle_lines <= 2048 ? "PASS" : "MISS");
    return bench_live_bytes() == 0 ? 0
                                   : (fprintf(stderr, "leak: %zu bytes\n", bench_live_bytes()), 1);
}
