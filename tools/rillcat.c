/*
 * rillcat — the library's face on the command line, built only from the public API.
 *
 * This version carries the demo (the README's main job) and the informational options; the
 * client and listener modes of the full contract arrive with the resolver and TLS layers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rill/rill.h>

#define EXIT_USAGE 2

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fail(const char *what, const char *reason)
{
    fprintf(stderr, "rillcat: %s: %s\n", what, reason);
    return 1;
}

/* Stack buffered > lines on a transport; on failure the transport is closed. */
static rill_status stack_lines(rill_stream *transport, rill_stream **top)
{
    rill_stream *buffered = NULL;
    rill_status st = rill_buffered_new(transport, RILL_BUFFERED_DEFAULT_SIZE,
                                       RILL_BUFFERED_DEFAULT_SIZE, 0, &buffered);
    if (st != RILL_OK) {
        fprintf(stderr, "rillcat: demo: %s\n", rill_errmsg(transport));
        rill_close(transport);
        return st;
    }
    st = rill_lines_new(buffered, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, 0, top);
    if (st != RILL_OK) {
        fprintf(stderr, "rillcat: demo: %s\n", rill_errmsg(buffered));
        rill_close(buffered);
    }
    return st;
}

struct demo_server {
    rill_listener *listener;
    char chain[512];
    rill_status status;
    char error[RILL_ERRMSG_MAX];
};

/* The server side: answer each line with "250 <line>" until the client half-closes. */
static void *demo_serve(void *arg)
{
    struct demo_server *srv = arg;
    rill_error err;
    rill_stream *conn = NULL, *top = NULL;
    srv->status = rill_accept(srv->listener, 5000, &conn, &err);
    if (srv->status != RILL_OK) {
        snprintf(srv->error, sizeof srv->error, "%s", err.msg);
        return NULL;
    }
    srv->status = stack_lines(conn, &top);
    if (srv->status != RILL_OK)
        return NULL;
    rill_describe(top, srv->chain, sizeof srv->chain);
    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_read_line(top, &line, &len);
        if (st == RILL_EOF)
            break;
        if (st == RILL_OK) {
            char reply[RILL_LINES_DEFAULT_MAX + 16];
            int n = snprintf(reply, sizeof reply, "250 %.*s\r\n", (int)len, line);
            st = rill_write_all(top, reply, (size_t)n, NULL);
        }
        if (st == RILL_OK)
            st = rill_flush(top);
        if (st != RILL_OK) {
            srv->status = st;
            snprintf(srv->error, sizeof srv->error, "%s", rill_errmsg(top));
            break;
        }
    }
    rill_status st = rill_close(top);
    if (srv->status == RILL_OK)
        srv->status = st;
    return NULL;
}

static int run_demo(void)
{
    static const char *const lines[] = { "HELO rill.example", "MAIL FROM:<demo@rill.example>",
                                         "QUIT" };
    rill_error err;
    struct demo_server srv = { 0 };
    printf("rill %s demo: a local listener and a client, both through tcp > buffered > lines\n",
           rill_version());
    if (rill_listen("127.0.0.1", 0, NULL, &srv.listener, &err) != RILL_OK)
        return fail("listen", err.msg);
    uint16_t port = rill_listener_port(srv.listener);
    printf("listening on 127.0.0.1:%u\n", port);
    pthread_t server;
    if (pthread_create(&server, NULL, demo_serve, &srv) != 0) {
        rill_listener_free(srv.listener);
        return fail("demo", "cannot start the server thread");
    }

    int rc = 1;
    rill_stream *conn = NULL, *top = NULL;
    double t0 = now_ms();
    if (rill_tcp_connect_addr("127.0.0.1", port, NULL, &conn, &err) != RILL_OK) {
        fail("connect", err.msg);
        goto out;
    }
    double t_connect = now_ms() - t0;
    if (stack_lines(conn, &top) != RILL_OK)
        goto out;
    char chain[512];
    rill_describe(top, chain, sizeof chain);
    printf("client chain: %s\n", chain);
    double t1 = now_ms();
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        const char *reply;
        size_t len;
        rill_status st = rill_write_str(top, lines[i], NULL);
        if (st == RILL_OK)
            st = rill_write_str(top, "\r\n", NULL);
        if (st == RILL_OK)
            st = rill_flush(top);
        if (st == RILL_OK)
            st = rill_read_line(top, &reply, &len);
        if (st != RILL_OK) {
            fail("demo exchange", st == RILL_EOF ? "server closed early" : rill_errmsg(top));
            goto out;
        }
        printf("  > %s\n  < %.*s\n", lines[i], (int)len, reply);
    }
    double t_exchange = now_ms() - t1;
    if (rill_shutdown(top) != RILL_OK) {
        fail("shutdown", rill_errmsg(top));
        goto out;
    }
    const char *line;
    size_t len;
    rill_status st = rill_read_line(top, &line, &len);
    if (st != RILL_EOF) {
        fail("demo", "expected the server to close after our half-close");
        goto out;
    }
    rc = 0;
out:
    rill_close(top ? top : conn);
    pthread_join(server, NULL);
    rill_listener_free(srv.listener);
    if (rc == 0 && srv.status != RILL_OK)
        rc = fail("demo server", srv.error[0] ? srv.error : rill_strerror(srv.status));
    if (rc == 0) {
        printf("server chain: %s\n", srv.chain);
        printf("timings: connect %.3f ms, %zu request/reply round trips %.3f ms\n", t_connect,
               sizeof lines / sizeof lines[0], t_exchange);
        printf("demo ok\n");
    }
    return rc;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: rillcat --demo | --version | --help\n"
                "  --demo      start a local rill listener and talk to it through\n"
                "              tcp > buffered > lines, printing both chains\n"
                "  --version   print the rill version\n"
                "  --help      this text\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--demo") == 0)
        return run_demo();
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("rillcat %s\n", rill_version());
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return EXIT_USAGE;
}
