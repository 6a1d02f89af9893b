/* SPDX-License-Identifier: MIT */
/*
 * https_get — fetch one resource over HTTPS and report what came back.
 *
 *     https_get [--cafile FILE] HOST PORT PATH
 *
 * The chain is the one most clients want:
 *
 *     lines (CRLF) > buffered > tls > tcp
 *
 * rill_connect() resolves HOST (c-ares, through a rill_ctx), races its addresses and runs a
 * verified TLS handshake, all under one deadline. The status line and the header lines are read
 * with rill_read_line() in strict CRLF mode; the body is then read raw with rill_read() from the
 * same line stream, which hands out what it has buffered first, so no byte is lost between the
 * two ways of reading.
 *
 * Output: "status: ...", one "header: ..." per header line, "body: N bytes", and the chain.
 * Exit status: 0 when a whole response was read, 1 on any failure (one line on stderr), 2 for
 * bad usage.
 */
#include <rill/rill.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG       "https_get"
#define TIMEOUT_MS 10000

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--cafile FILE] HOST PORT PATH\n");
    exit(2);
}

/* A port number in 1..65535, or 0 when @p text is not one. */
static unsigned parse_port(const char *text)
{
    char *end;
    unsigned long port = strtoul(text, &end, 10);
    if (*text == '\0' || *end != '\0' || port == 0 || port > 65535)
        return 0;
    return (unsigned)port;
}

int main(int argc, char **argv)
{
    const char *cafile = NULL;
    int arg = 1;
    if (arg + 1 < argc && strcmp(argv[arg], "--cafile") == 0) {
        cafile = argv[arg + 1];
        arg += 2;
    }
    if (argc - arg != 3)
        usage();
    const char *host = argv[arg], *path = argv[arg + 2];
    unsigned port = parse_port(argv[arg + 1]);
    if (port == 0 || path[0] != '/')
        usage();

    int status = 1;
    rill_error err;
    rill_tls_config *cfg = NULL;
    rill_ctx *ctx = NULL;
    rill_stream *tls = NULL, *buf = NULL, *lines = NULL;

    /* Secure defaults: system trust store (or --cafile), chain + host name + dates checked. */
    if (rill_tls_config_new(&cfg, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    if (cafile && rill_tls_config_set_ca_file(cfg, cafile, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    /* One context per application: the resolver, its cache and the TLS session cache. */
    if (rill_ctx_new(NULL, &ctx, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }

    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = TIMEOUT_MS;       /* DNS + TCP + TLS handshake, together */
    opts.read_timeout_ms = TIMEOUT_MS;  /* then each read ... */
    opts.write_timeout_ms = TIMEOUT_MS; /* ... and each write */
    opts.tls = cfg;                     /* the stream comes back as a verified "tls > tcp" */
    if (rill_connect(ctx, host, (uint16_t)port, &opts, &tls, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }

    /*
     * Each decorator takes ownership of the stream it wraps once it succeeds; on failure the
     * caller still owns the inner stream and its message says why.
     */
    if (rill_buffered_new(tls, RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0, &buf) !=
        RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(tls));
        rill_close(tls);
        goto out;
    }
    if (rill_lines_new(buf, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, 0, &lines) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(buf));
        rill_close(buf);
        goto out;
    }

    /* HTTP/1.0 keeps the example short: no chunked encoding, the server closes at the end. */
    char request[2048];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rill-example\r\n\r\n", path,
                     host, port);
    if (n < 0 || (size_t)n >= sizeof request) {
        fprintf(stderr, PROG ": request too long\n");
        goto out;
    }
    /* The buffered layer holds the request until the flush sends it in one TLS record. */
    rill_status st = rill_write_str(lines, request, NULL);
    if (st == RILL_OK)
        st = rill_flush(lines);
    if (st != RILL_OK) {
        fprintf(stderr, PROG ": sending the request: %s\n", rill_errmsg(lines));
        goto out;
    }

    /* The status line, e.g. "HTTP/1.0 200 ok". The pointer is valid until the next call. */
    const char *line;
    size_t len;
    st = rill_read_line(lines, &line, &len);
    if (st != RILL_OK) {
        fprintf(stderr, PROG ": reading the status line: %s\n",
                st == RILL_EOF ? "the server closed the connection" : rill_errmsg(lines));
        goto out;
    }
    printf("status: %.*s\n", (int)len, line);

    /* Header lines up to the empty line that ends them. */
    for (;;) {
        st = rill_read_line(lines, &line, &len);
        if (st != RILL_OK) {
            fprintf(stderr, PROG ": reading the headers: %s\n",
                    st == RILL_EOF ? "the server closed the connection" : rill_errmsg(lines));
            goto out;
        }
        if (len == 0)
            break;
        printf("header: %.*s\n", (int)len, line);
    }

    /*
     * The body, raw, until the server closes. RILL_EOF means a clean TLS close (close_notify);
     * a server that just drops the connection gives RILL_E_TRUNCATED, because then nothing
     * proves the body is whole.
     */
    unsigned long long body = 0;
    char chunk[16384];
    size_t got;
    while ((st = rill_read(lines, chunk, sizeof chunk, &got)) == RILL_OK)
        body += got;
    if (st != RILL_EOF) {
        fprintf(stderr, PROG ": reading the body after %llu bytes: %s\n", body, rill_errmsg(lines));
        goto out;
    }
    printf("body: %llu bytes\n", body);

    char chain[512];
    rill_describe(lines, chain, sizeof chain);
    printf("chain: %s\n", chain);
    status = 0;

out:
    /* Closing the top closes the whole chain (lines > buffered > tls > tcp). */
    if (lines)
        rill_close(lines);
    rill_ctx_free(ctx);
    rill_tls_config_free(cfg);
    return status;
}
