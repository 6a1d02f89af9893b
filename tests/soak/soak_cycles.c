/* SPDX-License-Identifier: MIT */
/*
 * soak_cycles — sequential connect / TLS handshake / small exchange / close cycles, with the
 * process's resident memory and descriptors sampled after a warm-up and at the end.
 *
 *     soak_cycles [CYCLES [WARMUP]]      (defaults: 100000 cycles, warm-up 1000 or CYCLES/5)
 *
 * A rill server thread accepts "tls > tcp" streams (rill_listen with a TLS config), reads 64
 * bytes, answers them complemented and closes (close_notify). The main thread runs the cycles:
 * rill_connect() with one shared rill_ctx (so TLS sessions resume), write 64 pattern bytes,
 * read the answer and check every byte, read the server's clean end of stream, rill_close().
 * The server closes first, so the TIME_WAIT sockets sit on its side of loopback.
 *
 * Samples (RSS from /proc/self/statm, descriptors from /proc/self/fd) are taken only when the
 * server thread has closed its side of every cycle so far. Fails when a cycle fails, when the
 * descriptor count at the end differs from the one after the warm-up, or when RSS grew by more
 * than RSS_BOUND between them, when rill's own heap (counted through rill_set_allocator) grew at
 * all between them, or when rill still holds memory once everything is freed. Output: the figures,
 * a progress line every tenth of the run.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "soak.h"

#define DEFAULT_CYCLES 100000ul
#define WARMUP_MAX     1000ul
#define MESSAGE        64
#define RSS_BOUND      (8ull * 1024 * 1024)

/* AddressSanitizer's quarantine holds freed memory back, so RSS grows without a leak there. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_CHECKED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_CHECKED 0
#endif
#endif
#ifndef RSS_CHECKED
#define RSS_CHECKED 1
#endif
#define IO_TIMEOUT_MS 10000
#define MAX_REPORTED  20
#define MAX_FAILURES  100 /* give up after this many failed cycles */

static rill_tls_config *client_cfg, *server_cfg;
static rill_listener *listener;

/* Written by the server thread, read by main. */
static unsigned long served;         /* cycles the server has closed its side of */
static unsigned long server_resumed; /* server streams that resumed a session */
static unsigned long server_failed;
static int stop;

static void *server_main(void *arg)
{
    (void)arg;
    rill_error err;
    unsigned char buf[MESSAGE];
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        rill_stream *s = NULL;
        rill_status st = rill_accept(listener, 200, &s, &err);
        if (st == RILL_E_TIMEOUT || st == RILL_WANT_READ)
            continue;
        if (st != RILL_OK) {
            soak_fail("server: rill_accept: %s", err.msg);
            break;
        }
        const char *what = "handshake";
        st = rill_tls_handshake(s);
        if (st == RILL_OK) {
            if (rill_tls_session_resumed(s))
                __atomic_add_fetch(&server_resumed, 1, __ATOMIC_RELAXED);
            what = "read";
            st = rill_read_full(s, buf, sizeof buf, NULL);
        }
        if (st == RILL_OK) {
            for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (unsigned char)~buf[i];
            what = "write";
            st = rill_write_all(s, buf, sizeof buf, NULL);
        }
        if (st != RILL_OK) {
            unsigned long n = __atomic_add_fetch(&server_failed, 1, __ATOMIC_RELAXED);
            if (n <= MAX_REPORTED)
                soak_fail("server: cycle %lu: %s: %s (%s)",
                          __atomic_load_n(&served, __ATOMIC_RELAXED) + 1, what, rill_strerror(st),
                          rill_errmsg(s));
        }
        st = rill_close(s);
        if (st != RILL_OK) {
            unsigned long n = __atomic_add_fetch(&server_failed, 1, __ATOMIC_RELAXED);
            if (n <= MAX_REPORTED)
                soak_fail("server: rill_close: %s", rill_strerror(st));
        }
        __atomic_add_fetch(&served, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* Wait until the server has closed its side of @p cycles cycles; 0, or -1 after 10 s. */
static int wait_served(unsigned long cycles)
{
    int64_t end = soak_now_ms() + 10000;
    while (__atomic_load_n(&served, __ATOMIC_ACQUIRE) < cycles) {
        if (soak_now_ms() > end)
            return -1;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    return 0;
}

struct sample {
    unsigned long cycle;
    int64_t ms;
    uint64_t rss;
    int fds;
    uint64_t heap_bytes, heap_blocks; /* rill's own allocations, live */
};

static void take_sample(struct sample *smp, unsigned long cycle, int64_t t0)
{
    if (wait_served(cycle) != 0)
        soak_fail("the server has closed %lu of %lu connections 10 s later",
                  __atomic_load_n(&served, __ATOMIC_ACQUIRE), cycle);
    smp->cycle = cycle;
    smp->ms = soak_now_ms() - t0;
    smp->rss = soak_rss_bytes();
    smp->fds = soak_fd_count();
    soak_rill_heap(&smp->heap_bytes, &smp->heap_blocks);
}

/* One cycle; returns 0, or -1 after reporting (the first MAX_REPORTED) what went wrong. */
static int cycle(rill_ctx *ctx, uint16_t port, unsigned long i, unsigned long *resumed,
                 unsigned long *failed)
{
    rill_connect_opts co;
    rill_connect_opts_init(&co);
    co.timeout_ms = IO_TIMEOUT_MS;
    co.read_timeout_ms = IO_TIMEOUT_MS;
    co.write_timeout_ms = IO_TIMEOUT_MS;
    co.tls = client_cfg;
    rill_error err;
    rill_stream *s = NULL;
    unsigned char out[MESSAGE], in[MESSAGE + 1];
    const char *what = "connect";
    char detail[RILL_ERRMSG_MAX + 64] = "";

    rill_status st = rill_connect(ctx, SOAK_HOST, port, &co, &s, &err);
    if (st != RILL_OK) {
        snprintf(detail, sizeof detail, "%s", err.msg);
        goto fail;
    }
    *resumed += (unsigned long)rill_tls_session_resumed(s);
    soak_pattern(out, sizeof out, i, 0);
    what = "write";
    st = rill_write_all(s, out, sizeof out, NULL);
    if (st == RILL_OK) {
        what = "read";
        st = rill_read_full(s, in, MESSAGE, NULL);
    }
    if (st == RILL_OK) {
        for (size_t k = 0; k < sizeof out; k++) {
            if (in[k] != (unsigned char)~out[k]) {
                what = "answer";
                st = RILL_E_PROTOCOL;
                snprintf(detail, sizeof detail, "byte %zu is 0x%02x, not 0x%02x", k, in[k],
                         (unsigned char)~out[k]);
                break;
            }
        }
    }
    if (st == RILL_OK) {
        size_t n = 0;
        what = "end of stream";
        st = rill_read(s, in, 1, &n);
        if (st == RILL_EOF)
            st = RILL_OK;
        else if (st == RILL_OK) {
            st = RILL_E_PROTOCOL;
            snprintf(detail, sizeof detail, "a byte after the answer");
        }
    }
    if (st != RILL_OK && detail[0] == '\0')
        snprintf(detail, sizeof detail, "%s", rill_errmsg(s));
    rill_status cst = rill_close(s);
    s = NULL;
    if (st == RILL_OK && cst != RILL_OK) {
        what = "close";
        st = cst;
        snprintf(detail, sizeof detail, "rill_close returned %d", (int)cst);
    }
    if (st == RILL_OK)
        return 0;
fail:
    if (++*failed <= MAX_REPORTED)
        soak_fail("cycle %lu: %s: %s (%s)", i, what, rill_strerror(st), detail);
    return -1;
}

int main(int argc, char **argv)
{
    soak_prog = "soak_cycles";
    soak_count_rill_heap();
    unsigned long cycles = argc > 1 ? soak_parse_count(argv[1], "cycle count") : DEFAULT_CYCLES;
    unsigned long warmup = cycles / 5 < WARMUP_MAX ? cycles / 5 : WARMUP_MAX;
    if (argc > 2)
        warmup = soak_parse_count(argv[2], "warm-up");
    if (argc > 3 || warmup >= cycles)
        soak_die("usage: soak_cycles [CYCLES [WARMUP (< CYCLES)]]");

    soak_tls_configs(&client_cfg, &server_cfg);
    rill_error err;
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.tls = server_cfg;
    lo.stream.read_timeout_ms = IO_TIMEOUT_MS;
    lo.stream.write_timeout_ms = IO_TIMEOUT_MS;
    if (rill_listen("127.0.0.1", 0, &lo, &listener, &err) != RILL_OK)
        soak_die("rill_listen: %s", err.msg);
    uint16_t port = rill_listener_port(listener);

    /* Names come from an override: the DNS server below is never asked. */
    static const char *const overrides[] = { SOAK_HOST ":*:127.0.0.1", NULL };
    rill_ctx_opts xo;
    rill_ctx_opts_init(&xo);
    xo.dns_servers = "127.0.0.1:9";
    xo.overrides = overrides;
    rill_ctx *ctx = NULL;
    if (rill_ctx_new(&xo, &ctx, &err) != RILL_OK)
        soak_die("rill_ctx_new: %s", err.msg);

    printf("soak_cycles: %lu cycles of rill_connect (shared rill_ctx, TLS) / 64-byte exchange / "
           "close against a rill server thread on 127.0.0.1:%u; samples after %lu warm-up "
           "cycles and at the end\n",
           cycles, (unsigned)port, warmup);
    fflush(stdout);

    pthread_t server;
    if (pthread_create(&server, NULL, server_main, NULL) != 0)
        soak_die("pthread_create failed");

    unsigned long resumed = 0, failed = 0, done = 0;
    int64_t t0 = soak_now_ms();
    struct sample first = { 0 }, last = { 0 }, start = { 0 };
    take_sample(&start, 0, t0);
    unsigned long progress_every = cycles / 10 ? cycles / 10 : 1;
    uint64_t rss_max = 0;
    for (unsigned long i = 1; i <= cycles; i++) {
        if (cycle(ctx, port, i, &resumed, &failed) == 0)
            done++;
        if (failed >= MAX_FAILURES) {
            soak_fail("giving up after %lu failed cycles", failed);
            break;
        }
        if (i == warmup) {
            take_sample(&first, i, t0);
            rss_max = first.rss;
        }
        if (i % progress_every == 0 || i == cycles) {
            struct sample p;
            take_sample(&p, i, t0);
            if (p.rss > rss_max)
                rss_max = p.rss;
            char a[32];
            printf("soak_cycles: %7lu cycles  %7.1f s  %6.0f cycles/s  RSS %s  fds %d  "
                   "resumed %lu  failed %lu\n",
                   i, (double)p.ms / 1000.0, p.ms > 0 ? (double)i * 1000.0 / (double)p.ms : 0.0,
                   soak_mib(a, sizeof a, p.rss), p.fds, resumed, failed);
            fflush(stdout);
            if (i == cycles)
                last = p;
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(server, NULL);

    char a[32], b[32], c[32], d[32], e[32];
    double secs = (double)(last.ms - first.ms) / 1000.0;
    printf("soak_cycles: %lu of %lu cycles completed, %lu failed (server side: %lu failures); "
           "%lu client sessions resumed (server saw %lu)\n",
           done, cycles, failed, __atomic_load_n(&server_failed, __ATOMIC_RELAXED), resumed,
           __atomic_load_n(&server_resumed, __ATOMIC_RELAXED));
    printf("soak_cycles: total %.1f s, %.0f cycles/s after the warm-up\n", (double)last.ms / 1000.0,
           secs > 0 ? (double)(last.cycle - first.cycle) / secs : 0.0);
    printf("soak_cycles: descriptors: %d at start, %d after %lu cycles, %d after %lu cycles\n",
           start.fds, first.fds, first.cycle, last.fds, last.cycle);
    printf("soak_cycles: RSS: %s at start, %s after %lu cycles, %s after %lu cycles "
           "(growth %+.1f KiB, bound %s; highest sample %s)\n",
           soak_mib(a, sizeof a, start.rss), soak_mib(b, sizeof b, first.rss), first.cycle,
           soak_mib(c, sizeof c, last.rss), last.cycle,
           ((double)last.rss - (double)first.rss) / 1024.0, soak_mib(d, sizeof d, RSS_BOUND),
           soak_mib(e, sizeof e, rss_max));
    if (!RSS_CHECKED)
        printf("soak_cycles: RSS bound not checked: AddressSanitizer's quarantine keeps freed "
               "memory\n");
    printf("soak_cycles: RSS growth per cycle after the warm-up: %.2f bytes\n",
           last.cycle > first.cycle
               ? ((double)last.rss - (double)first.rss) / (double)(last.cycle - first.cycle)
               : 0.0);
    printf("soak_cycles: rill's own heap: %llu bytes in %llu blocks after %lu cycles, %llu bytes "
           "in %llu blocks after %lu cycles\n",
           (unsigned long long)first.heap_bytes, (unsigned long long)first.heap_blocks, first.cycle,
           (unsigned long long)last.heap_bytes, (unsigned long long)last.heap_blocks, last.cycle);

    if (last.cycle != cycles)
        soak_fail("the run stopped before its end");
    else {
        if (last.fds != first.fds)
            soak_fail("descriptors: %d after the warm-up, %d at the end", first.fds, last.fds);
        if (last.heap_blocks > first.heap_blocks || last.heap_bytes > first.heap_bytes)
            soak_fail("rill's heap grew from %llu bytes in %llu blocks to %llu in %llu",
                      (unsigned long long)first.heap_bytes, (unsigned long long)first.heap_blocks,
                      (unsigned long long)last.heap_bytes, (unsigned long long)last.heap_blocks);
        if (RSS_CHECKED && last.rss > first.rss + RSS_BOUND)
            soak_fail("RSS grew by %.1f MiB, more than the bound",
                      (double)(last.rss - first.rss) / (1024.0 * 1024.0));
    }
    if (done != cycles)
        soak_fail("%lu of %lu cycles failed", cycles - done, cycles);
    if (resumed + 1 < done)
        soak_fail("only %lu of %lu connections resumed a session", resumed, done);

    rill_ctx_free(ctx);
    rill_listener_free(listener);
    rill_tls_config_free(client_cfg);
    rill_tls_config_free(server_cfg);
    uint64_t heap_bytes, heap_blocks;
    soak_rill_heap(&heap_bytes, &heap_blocks);
    printf("soak_cycles: rill's own heap after freeing everything: %llu bytes in %llu blocks\n",
           (unsigned long long)heap_bytes, (unsigned long long)heap_blocks);
    if (heap_blocks != 0)
        soak_fail("rill still holds %llu blocks after everything was freed",
                  (unsigned long long)heap_blocks);
    unsigned failures = soak_failures();
    printf("soak_cycles: %s\n", failures == 0 ? "PASS" : "FAILED");
    return failures == 0 ? 0 : 1;
}
