/* SPDX-License-Identifier: MIT */
/*
 * soak_poll — many concurrent non-blocking TLS connections, multiplexed with poll() on both ends.
 *
 *     soak_poll [CONNECTIONS [BYTES]]        (defaults: 1000 connections, 65536 bytes)
 *
 * A server thread runs one poll() loop over rill's listener (rill_accept with timeout 0) and
 * every accepted "tls > tcp" stream (rill_tls_server, timeouts 0). The main thread connects the
 * clients, then runs its own poll() loop over all of them ("tls > tcp", timeouts 0).
 *
 * rill_connect() and rill_tcp_connect_addr() block (rill has no non-blocking connect API yet),
 * so the clients are connected one after another with rill_tcp_connect_addr() while the server
 * thread accepts; only then are they made non-blocking (rill_set_timeouts 0, 0) and wrapped
 * with rill_tls_client(). Everything from the TLS handshake on is multiplexed.
 *
 * Each connection, both directions at once:
 *   client -> server: 8-byte seed, then BYTES pattern bytes of that seed, then close_notify + FIN
 *   server -> client: BYTES pattern bytes of seed ^ REPLY_KEY (sent as soon as the seed is in),
 *                     then the 8-byte FNV-1a checksum of what the server received, close_notify
 * Both ends compare every received byte with the pattern they expect and see a clean RILL_EOF.
 *
 * Output: the figures (connections, bytes, durations, poll() rounds, descriptors, RSS) and every
 * failure with its rill_errmsg(). Exit status 0 when every connection completed on both ends.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "soak.h"

#define DEFAULT_CONNS  1000
#define DEFAULT_BYTES  65536
#define REPLY_KEY      0x5eed5eed5eed5eedull
#define CHUNK          16384
#define READS_PER_STEP 8      /* reads per step before other streams get their turn */
#define DEADLINE_MS    300000 /* for the whole exchange; generous on a loaded 2-core machine */
#define MAX_REPORTED   20     /* failures printed one by one per side */

enum phase { HANDSHAKE, EXCHANGE, DONE, FAILED };
static const char *const phase_names[] = { "handshake", "exchange", "done", "failed" };

/* One end of one connection. */
struct conn {
    rill_stream *s;
    unsigned index;
    int is_server;
    enum phase phase;
    uint64_t seed; /* server: known once the first 8 bytes arrived */
    /* Outgoing: client header+payload, server payload+trailer. */
    uint64_t out_total, sent;
    uint64_t out_sum; /* client: checksum of the payload accepted so far */
    int send_done;    /* flushed and shut down */
    /* Incoming: server header+payload, client payload+trailer, then EOF. */
    uint64_t in_total, got;
    uint64_t in_sum; /* server: checksum of the payload received */
    unsigned char frame[8];
    int recv_done; /* RILL_EOF seen after everything */
    /* Scheduling: runnable, or waiting in poll() for fd/events. */
    int runnable;
    int fd;
    short events;
};

/* One side: its streams and what happened to them. */
struct side {
    const char *name;
    struct conn *conns;
    unsigned n; /* streams in conns[] */
    unsigned done, failed;
    unsigned reported;
    uint64_t bytes_in, bytes_out;
    unsigned long rounds, polls;
    int64_t deadline;
};

static unsigned conns_wanted;
static uint64_t payload_bytes;
static rill_tls_config *client_cfg, *server_cfg;
static rill_listener *listener;
static struct side server_side = { .name = "server" }, client_side = { .name = "client" };
static int64_t server_first_accept_ms, server_last_accept_ms;
static unsigned server_accepted; /* atomic: what main may read of the server's progress */

static void conn_fail(struct side *sd, struct conn *c, const char *what, rill_status st)
{
    sd->failed++;
    if (sd->reported++ < MAX_REPORTED)
        soak_fail("%s conn %u: %s: %s (%s); at %llu of %llu bytes out, %llu of %llu in", sd->name,
                  c->index, what, rill_strerror(st), c->s ? rill_errmsg(c->s) : "",
                  (unsigned long long)c->sent, (unsigned long long)c->out_total,
                  (unsigned long long)c->got, (unsigned long long)c->in_total);
    c->phase = FAILED;
    (void)rill_close(c->s);
    c->s = NULL;
}

/* Note that a call returned RILL_WANT_*: add the events it waits for. */
static int want(struct side *sd, struct conn *c)
{
    int fd;
    short ev;
    rill_status pst = rill_poll_info(c->s, &fd, &ev);
    if (pst != RILL_OK) {
        conn_fail(sd, c, "rill_poll_info", pst);
        return -1;
    }
    c->fd = fd;
    c->events = (short)(c->events | ev);
    return 0;
}

/* The outgoing bytes [off, off+len) of @p c into @p buf. */
static void out_bytes(struct conn *c, uint64_t off, unsigned char *buf, size_t len)
{
    if (!c->is_server) {
        /* 8-byte seed header, then payload. */
        while (len > 0 && off < 8) {
            unsigned char hdr[8];
            soak_put64(hdr, c->seed);
            *buf++ = hdr[off++];
            len--;
        }
        if (len > 0)
            soak_pattern(buf, len, c->seed, off - 8);
        return;
    }
    /* Payload, then the trailer (checksum of what came in). */
    uint64_t pay = len;
    if (off + pay > payload_bytes)
        pay = off < payload_bytes ? payload_bytes - off : 0;
    if (pay > 0)
        soak_pattern(buf, (size_t)pay, c->seed ^ REPLY_KEY, off);
    unsigned char trailer[8];
    soak_put64(trailer, c->in_sum);
    for (uint64_t i = pay; i < len; i++)
        buf[i] = trailer[off + i - payload_bytes];
}

/* How many outgoing bytes may be sent now. */
static uint64_t out_ready(const struct conn *c)
{
    if (!c->is_server)
        return c->out_total;
    if (c->got < 8)
        return 0; /* the seed is not in yet */
    if (c->got < c->in_total)
        return payload_bytes; /* the trailer needs all the bytes in */
    return c->out_total;
}

/* Take @p len received bytes at incoming offset c->got; returns 0, or -1 after conn_fail. */
static int take_in(struct side *sd, struct conn *c, const unsigned char *buf, size_t len)
{
    unsigned char want_buf[CHUNK];
    while (len > 0) {
        uint64_t off = c->got;
        if (c->is_server && off < 8) {
            c->frame[off] = *buf++;
            len--;
            if (++c->got == 8)
                c->seed = soak_get64(c->frame);
            continue;
        }
        uint64_t pay_off = c->is_server ? off - 8 : off;
        if (pay_off < payload_bytes) {
            size_t n = len;
            if (n > payload_bytes - pay_off)
                n = (size_t)(payload_bytes - pay_off);
            soak_pattern(want_buf, n, c->is_server ? c->seed : c->seed ^ REPLY_KEY, pay_off);
            if (memcmp(buf, want_buf, n) != 0) {
                size_t k = 0;
                while (buf[k] == want_buf[k])
                    k++;
                char what[96];
                snprintf(what, sizeof what, "wrong byte at payload offset %llu",
                         (unsigned long long)(pay_off + k));
                conn_fail(sd, c, what, RILL_E_PROTOCOL);
                return -1;
            }
            if (c->is_server)
                c->in_sum = soak_checksum(c->in_sum, buf, n);
            buf += n;
            len -= n;
            c->got += n;
            continue;
        }
        /* Client: the trailer. */
        c->frame[pay_off - payload_bytes] = *buf++;
        len--;
        if (++c->got == c->in_total && soak_get64(c->frame) != c->out_sum) {
            conn_fail(sd, c, "the server's checksum of our payload differs", RILL_E_PROTOCOL);
            return -1;
        }
    }
    return 0;
}

static void finish(struct side *sd, struct conn *c)
{
    rill_status st = rill_close(c->s);
    c->s = NULL;
    if (st != RILL_OK) {
        sd->failed++;
        if (sd->reported++ < MAX_REPORTED)
            soak_fail("%s conn %u: rill_close: %s", sd->name, c->index, rill_strerror(st));
        c->phase = FAILED;
        return;
    }
    c->phase = DONE;
    sd->done++;
}

/* One non-blocking step: handshake, then send what may be sent and read what has come. */
static void step(struct side *sd, struct conn *c)
{
    unsigned char buf[CHUNK];
    rill_status st;
    c->runnable = 0;
    c->events = 0;

    if (c->phase == HANDSHAKE) {
        st = rill_tls_handshake(c->s);
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            (void)want(sd, c);
            return;
        }
        if (st != RILL_OK) {
            conn_fail(sd, c, "handshake", st);
            return;
        }
        c->phase = EXCHANGE;
    }

    /* Sending. */
    int blocked_out = 0;
    while (!c->send_done && !blocked_out) {
        uint64_t ready = out_ready(c);
        if (c->sent < ready) {
            size_t len = ready - c->sent > CHUNK ? CHUNK : (size_t)(ready - c->sent);
            size_t n = 0;
            out_bytes(c, c->sent, buf, len);
            st = rill_write(c->s, buf, len, &n);
            if (st == RILL_OK) {
                if (!c->is_server) {
                    /* Checksum the payload part of what was accepted. */
                    uint64_t from = c->sent < 8 ? 8 : c->sent;
                    if (c->sent + n > from)
                        c->out_sum = soak_checksum(c->out_sum, buf + (from - c->sent),
                                                   (size_t)(c->sent + n - from));
                }
                c->sent += n;
                sd->bytes_out += n;
                continue;
            }
        } else if (c->sent == c->out_total) {
            st = rill_shutdown(c->s); /* flushes first */
            if (st == RILL_OK) {
                c->send_done = 1;
                break;
            }
        } else {
            break; /* server: waiting for incoming bytes before sending more */
        }
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            if (want(sd, c) != 0)
                return;
            blocked_out = 1;
            break;
        }
        conn_fail(sd, c, c->sent == c->out_total ? "shutdown" : "write", st);
        return;
    }

    /* Receiving. */
    for (int reads = 0; !c->recv_done; reads++) {
        if (reads == READS_PER_STEP) {
            c->runnable = 1; /* more may be there; let the others run first */
            break;
        }
        size_t room = c->got < c->in_total ? CHUNK : 1;
        if (c->got < c->in_total && c->in_total - c->got < room)
            room = (size_t)(c->in_total - c->got);
        size_t n = 0;
        st = rill_read(c->s, buf, room, &n);
        if (st == RILL_OK) {
            if (c->got == c->in_total) {
                conn_fail(sd, c, "bytes after the end of the exchange", RILL_E_PROTOCOL);
                return;
            }
            sd->bytes_in += n;
            if (take_in(sd, c, buf, n) != 0)
                return;
            /* The server may send more (payload once the seed is in, trailer at the end). */
            if (c->is_server && !c->send_done && c->sent < out_ready(c) && !blocked_out)
                c->runnable = 1;
            continue;
        }
        if (st == RILL_EOF) {
            if (c->got != c->in_total) {
                conn_fail(sd, c, "end of stream before the whole exchange", st);
                return;
            }
            c->recv_done = 1;
            break;
        }
        if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
            if (want(sd, c) != 0)
                return;
            break;
        }
        conn_fail(sd, c, "read", st);
        return;
    }

    if (c->send_done && c->recv_done) {
        finish(sd, c);
        return;
    }
    if (c->runnable)
        c->events = 0;
    else if (c->events == 0)
        c->runnable = 1; /* nothing to wait for: run again */
}

/*
 * Run the streams of @p sd until all are finished (and, for the server, all were accepted), or
 * the deadline passes. The server also polls the listener.
 */
static void run_loop(struct side *sd, int with_listener)
{
    struct pollfd *pfds = calloc((size_t)conns_wanted + 1, sizeof *pfds);
    struct conn **owner = calloc((size_t)conns_wanted + 1, sizeof *owner);
    if (!pfds || !owner)
        soak_die("out of memory");
    rill_error err;
    for (;;) {
        sd->rounds++;
        unsigned active = 0, runnable = 0;
        for (unsigned i = 0; i < sd->n; i++) {
            struct conn *c = &sd->conns[i];
            if (c->phase == DONE || c->phase == FAILED)
                continue;
            if (c->runnable)
                step(sd, c);
            if (c->phase == DONE || c->phase == FAILED)
                continue;
            active++;
            runnable += (unsigned)c->runnable;
        }
        int accepting = with_listener && sd->n < __atomic_load_n(&conns_wanted, __ATOMIC_ACQUIRE);
        if (active == 0 && !accepting)
            break;
        int64_t left = sd->deadline - soak_now_ms();
        if (left <= 0) {
            unsigned count[4] = { 0 };
            for (unsigned i = 0; i < sd->n; i++)
                count[sd->conns[i].phase]++;
            soak_fail("%s: deadline passed with %u of %u streams unfinished (accepted %u; "
                      "handshake %u, exchange %u)",
                      sd->name, active, conns_wanted, sd->n, count[HANDSHAKE], count[EXCHANGE]);
            for (unsigned i = 0, shown = 0; i < sd->n && shown < 5; i++) {
                struct conn *c = &sd->conns[i];
                if (c->phase == DONE || c->phase == FAILED)
                    continue;
                shown++;
                printf("  %s conn %u: %s, %llu/%llu out, %llu/%llu in, send_done %d, "
                       "waiting for events 0x%x on fd %d, pending %zu\n",
                       sd->name, c->index, phase_names[c->phase], (unsigned long long)c->sent,
                       (unsigned long long)c->out_total, (unsigned long long)c->got,
                       (unsigned long long)c->in_total, c->send_done, (unsigned)c->events, c->fd,
                       rill_pending(c->s));
            }
            for (unsigned i = 0; i < sd->n; i++) {
                if (sd->conns[i].s) {
                    (void)rill_close(sd->conns[i].s);
                    sd->conns[i].s = NULL;
                    sd->failed++;
                }
            }
            break;
        }

        nfds_t n = 0;
        if (accepting) {
            pfds[n] = (struct pollfd){ .fd = rill_listener_fd(listener), .events = POLLIN };
            owner[n++] = NULL;
        }
        for (unsigned i = 0; i < sd->n; i++) {
            struct conn *c = &sd->conns[i];
            if (c->phase == DONE || c->phase == FAILED || c->runnable)
                continue;
            pfds[n] = (struct pollfd){ .fd = c->fd, .events = c->events };
            owner[n++] = c;
        }
        sd->polls++;
        int ready = poll(pfds, n, runnable > 0 ? 0 : (int)(left < 1000 ? left : 1000));
        if (ready < 0)
            soak_die("%s: poll: %s", sd->name, strerror(errno));
        for (nfds_t k = 0; k < n; k++) {
            if (pfds[k].revents == 0)
                continue;
            if (owner[k]) {
                owner[k]->runnable = 1;
                continue;
            }
            /* The listener: take every queued connection. */
            while (sd->n < __atomic_load_n(&conns_wanted, __ATOMIC_ACQUIRE)) {
                rill_stream *tcp = NULL, *tls = NULL;
                rill_status st = rill_accept(listener, 0, &tcp, &err);
                if (st == RILL_WANT_READ || st == RILL_E_TIMEOUT)
                    break; /* none queued */
                if (st != RILL_OK)
                    soak_die("server: rill_accept: %s: %s", rill_strerror(st), err.msg);
                if (sd->n == 0)
                    server_first_accept_ms = soak_now_ms();
                server_last_accept_ms = soak_now_ms();
                st = rill_tls_server(tcp, server_cfg, 0, &tls);
                if (st != RILL_OK)
                    soak_die("server: rill_tls_server: %s", rill_errmsg(tcp));
                st = rill_set_timeouts(tls, 0, 0);
                if (st != RILL_OK)
                    soak_die("server: rill_set_timeouts: %s", rill_errmsg(tls));
                struct conn *c = &sd->conns[sd->n];
                *c = (struct conn){ .s = tls,
                                    .index = sd->n,
                                    .is_server = 1,
                                    .runnable = 1,
                                    .out_total = payload_bytes + 8,
                                    .in_total = 8 + payload_bytes,
                                    .fd = rill_fd(tls) };
                sd->n++;
                __atomic_store_n(&server_accepted, sd->n, __ATOMIC_RELEASE);
            }
        }
    }
    free(pfds);
    free(owner);
}

static void *server_main(void *arg)
{
    (void)arg;
    run_loop(&server_side, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    soak_prog = "soak_poll";
    soak_count_rill_heap();
    conns_wanted =
        argc > 1 ? (unsigned)soak_parse_count(argv[1], "connection count") : DEFAULT_CONNS;
    payload_bytes = argc > 2 ? soak_parse_count(argv[2], "byte count") : DEFAULT_BYTES;
    if (argc > 3 || conns_wanted > 100000)
        soak_die("usage: soak_poll [CONNECTIONS (<= 100000) [BYTES]]");

    unsigned long nofile = soak_raise_nofile(2ul * conns_wanted + 64);
    soak_tls_configs(&client_cfg, &server_cfg);
    printf("soak_poll: %u concurrent TLS connections, %llu bytes each way per connection, "
           "RLIMIT_NOFILE %lu\n",
           conns_wanted, (unsigned long long)payload_bytes, nofile);
    printf("soak_poll: server: one thread, poll() over rill_accept(timeout 0) and rill_tls_server "
           "streams with timeouts 0\n");
    printf("soak_poll: clients: connected one by one with the blocking rill_tcp_connect_addr "
           "(rill has no non-blocking connect API yet), then rill_set_timeouts(0, 0) and "
           "rill_tls_client; handshakes and data multiplexed with poll() in one thread\n");
    fflush(stdout);

    int fds_before = soak_fd_count();
    uint64_t rss_before = soak_rss_bytes();

    rill_error err;
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.backlog = 4096;
    lo.stream.read_timeout_ms = 0;
    lo.stream.write_timeout_ms = 0;
    if (rill_listen("127.0.0.1", 0, &lo, &listener, &err) != RILL_OK)
        soak_die("rill_listen: %s", err.msg);
    uint16_t port = rill_listener_port(listener);

    server_side.conns = calloc(conns_wanted, sizeof *server_side.conns);
    client_side.conns = calloc(conns_wanted, sizeof *client_side.conns);
    if (!server_side.conns || !client_side.conns)
        soak_die("out of memory");
    int64_t t0 = soak_now_ms();
    server_side.deadline = t0 + DEADLINE_MS;
    client_side.deadline = t0 + DEADLINE_MS;
    pthread_t server;
    if (pthread_create(&server, NULL, server_main, NULL) != 0)
        soak_die("pthread_create failed");

    rill_connect_opts co;
    rill_connect_opts_init(&co);
    co.timeout_ms = 10000;
    unsigned connect_failed = 0;
    for (unsigned i = 0; i < conns_wanted; i++) {
        rill_stream *tcp = NULL, *tls = NULL;
        rill_status st = rill_tcp_connect_addr("127.0.0.1", port, &co, &tcp, &err);
        if (st != RILL_OK) {
            if (connect_failed++ < MAX_REPORTED)
                soak_fail("client conn %u: rill_tcp_connect_addr: %s", i, err.msg);
            continue;
        }
        if (rill_set_timeouts(tcp, 0, 0) != RILL_OK ||
            rill_tls_client(tcp, client_cfg, SOAK_HOST, 0, &tls) != RILL_OK)
            soak_die("client conn %u: %s", i, rill_errmsg(tcp));
        struct conn *c = &client_side.conns[client_side.n++];
        *c = (struct conn){ .s = tls,
                            .index = i,
                            .runnable = 1,
                            .seed = 0x1000000ull * (i + 1) + 17,
                            .out_total = 8 + payload_bytes,
                            .in_total = payload_bytes + 8,
                            .fd = rill_fd(tls) };
    }
    int64_t t_connected = soak_now_ms();
    /* Both ends of every connection open: once the server has accepted them all. */
    while (__atomic_load_n(&server_accepted, __ATOMIC_ACQUIRE) < client_side.n &&
           soak_now_ms() < t_connected + 10000) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    int fds_peak = soak_fd_count();
    if (connect_failed > 0) {
        /* The server waits for every connection: give up on those that never came. */
        soak_fail("%u of %u connects failed", connect_failed, conns_wanted);
        __atomic_sub_fetch(&conns_wanted, connect_failed, __ATOMIC_ACQ_REL);
    }
    run_loop(&client_side, 0);
    int64_t t_clients = soak_now_ms();
    pthread_join(server, NULL);
    int64_t t_end = soak_now_ms();
    uint64_t rss_peak = soak_rss_bytes();
    rill_listener_free(listener);
    int fds_after = soak_fd_count();

    char a[32], b[32];
    printf("soak_poll: connect phase: %u connections in %lld ms (server accepted %u, first to "
           "last accept %lld ms)\n",
           client_side.n, (long long)(t_connected - t0), server_side.n,
           (long long)(server_last_accept_ms - server_first_accept_ms));
    printf("soak_poll: exchange phase (handshakes + data): clients done in %lld ms, server in "
           "%lld ms\n",
           (long long)(t_clients - t_connected), (long long)(t_end - t_connected));
    printf("soak_poll: clients: %u completed, %u failed; %llu bytes out, %llu bytes in; "
           "%lu rounds, %lu poll() calls\n",
           client_side.done, client_side.failed, (unsigned long long)client_side.bytes_out,
           (unsigned long long)client_side.bytes_in, client_side.rounds, client_side.polls);
    printf("soak_poll: server: %u completed, %u failed; %llu bytes out, %llu bytes in; "
           "%lu rounds, %lu poll() calls\n",
           server_side.done, server_side.failed, (unsigned long long)server_side.bytes_out,
           (unsigned long long)server_side.bytes_in, server_side.rounds, server_side.polls);
    printf("soak_poll: descriptors: %d before, %d with every connection open, %d after\n",
           fds_before, fds_peak, fds_after);
    printf("soak_poll: RSS: %s before, %s at the end (before freeing the configs)\n",
           soak_mib(a, sizeof a, rss_before), soak_mib(b, sizeof b, rss_peak));
    printf("soak_poll: total %lld ms\n", (long long)(t_end - t0));

    if (client_side.done != conns_wanted || server_side.done != conns_wanted)
        soak_fail("%u of %u connections completed on the client side, %u on the server side",
                  client_side.done, conns_wanted + connect_failed, server_side.done);
    uint64_t want_bytes = (uint64_t)conns_wanted * (payload_bytes + 8);
    if (client_side.bytes_out != want_bytes || client_side.bytes_in != want_bytes ||
        server_side.bytes_out != want_bytes || server_side.bytes_in != want_bytes)
        soak_fail("byte counts differ from %llu each way", (unsigned long long)want_bytes);
    if (fds_after != fds_before)
        soak_fail("%d descriptors open after the run, %d before", fds_after, fds_before);

    free(server_side.conns);
    free(client_side.conns);
    rill_tls_config_free(client_cfg);
    rill_tls_config_free(server_cfg);
    uint64_t heap_bytes, heap_blocks;
    soak_rill_heap(&heap_bytes, &heap_blocks);
    printf("soak_poll: rill's own heap after freeing everything: %llu bytes in %llu blocks\n",
           (unsigned long long)heap_bytes, (unsigned long long)heap_blocks);
    if (heap_blocks != 0)
        soak_fail("rill still holds %llu blocks after everything was freed",
                  (unsigned long long)heap_blocks);
    unsigned failures = soak_failures();
    printf("soak_poll: %s\n", failures == 0 ? "PASS" : "FAILED");
    return failures == 0 ? 0 : 1;
}
