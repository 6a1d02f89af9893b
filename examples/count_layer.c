/* SPDX-License-Identifier: MIT */
/*
 * count_layer — a decorator of your own, written only against <rill/stream.h>.
 *
 *     count_layer [--cafile FILE] [--trace] HOST PORT PATH
 *
 * The "count" layer counts the bytes and calls that pass through it and, with --trace, prints
 * each one on stderr with its first bytes in hex. This program puts one instance on each side
 * of TLS and makes an HTTPS GET:
 *
 *     lines (CRLF) > count "plain" > tls > count "wire" > tcp
 *
 * so "plain" sees the HTTP request and response, and "wire" sees what actually crossed the
 * network: the handshake, the certificates, and every record with its header and tag. TLS runs
 * over any rill stream; with a layer under it, OpenSSL's I/O goes through that layer instead of
 * straight to the socket.
 *
 * What a layer needs (see "Writing your own layer" in docs/guide.md):
 *  - one `static const struct rill_stream_ops` with the version, a name, and only the ops it
 *    changes; NULL ops pass through to the inner stream or do nothing;
 *  - its state in the block rill_stream_new() allocates (rill_stream_state());
 *  - the inner stream reached only through rill_stream_read_inner()/_write_inner(), which never
 *    wait longer than the public call allows; so the layer works unchanged in blocking,
 *    deadline and non-blocking mode (a RILL_WANT_* from below is simply passed up).
 * The core handles the rest: waiting, deadlines, error prefixes ("count: tcp: ..."), closing.
 *
 * Output: the response summary, the chain as rill_describe() shows it, and the byte counts on
 * both sides of TLS. Exit status: 0 on success, 1 on failure, 2 for bad usage.
 */
#include <rill/rill.h>
#include <rill/stream.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG       "count_layer"
#define TIMEOUT_MS 10000

/* ---- the layer --------------------------------------------------------------------------- */

/* The state block: zeroed by rill_stream_new(), freed by the core when the layer closes. */
struct count {
    char label[16];
    int trace;
    uint64_t in, out;            /* bytes read from / written to the inner stream */
    unsigned long reads, writes; /* calls that moved bytes */
};

static void trace(const struct count *c, const char *dir, const void *data, size_t n)
{
    const unsigned char *p = data;
    fprintf(stderr, "[%s] %s %5zu bytes:", c->label, dir, n);
    for (size_t i = 0; i < n && i < 16; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "%s\n", n > 16 ? " ..." : "");
}

static rill_status count_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct count *c = rill_stream_state(s);
    rill_status st = rill_stream_read_inner(s, buf, len, n);
    /* Only RILL_OK moves bytes; EOF, WANT and errors go up unchanged (the core keeps errors). */
    if (st == RILL_OK) {
        c->in += *n;
        c->reads++;
        if (c->trace)
            trace(c, "<", buf, *n);
    }
    return st;
}

static rill_status count_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct count *c = rill_stream_state(s);
    rill_status st = rill_stream_write_inner(s, buf, len, n);
    if (st == RILL_OK) {
        c->out += *n;
        c->writes++;
        if (c->trace)
            trace(c, ">", buf, *n);
    }
    return st;
}

/* This layer's part of rill_describe(); the core joins the layers with " > ". */
static size_t count_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct count *c = rill_stream_state(s);
    int n = snprintf(buf, len, "count(%s in=%llu out=%llu)", c->label, (unsigned long long)c->in,
                     (unsigned long long)c->out);
    return n < 0 ? 0 : (size_t)n;
}

/* flush, shutdown, close, pending, poll, shrink: nothing of our own, so NULL (pass-through). */
static const struct rill_stream_ops count_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "count",
    .read = count_read,
    .write = count_write,
    .describe = count_describe,
};

/*
 * Wrap @p inner with a counting layer named @p label. Ownership as for every decorator: on
 * RILL_OK *out owns @p inner; on error the caller keeps it and rill_errmsg(inner) says why.
 */
static rill_status count_new(rill_stream *inner, const char *label, int trace_on, rill_stream **out)
{
    rill_status st = rill_stream_new(&count_ops, sizeof(struct count), inner, 0, out);
    if (st != RILL_OK)
        return st;
    struct count *c = rill_stream_state(*out);
    snprintf(c->label, sizeof c->label, "%s", label);
    c->trace = trace_on;
    return RILL_OK;
}

/* The counters of a count layer; NULL when @p s is some other kind of layer. */
static const struct count *count_of(const rill_stream *s)
{
    return s && rill_stream_ops_of(s) == &count_ops ? rill_stream_state(s) : NULL;
}

/* ---- the program ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--cafile FILE] [--trace] HOST PORT PATH\n");
    exit(2);
}

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
    int trace_on = 0, arg = 1;
    for (; arg < argc && strncmp(argv[arg], "--", 2) == 0; arg++) {
        if (strcmp(argv[arg], "--cafile") == 0 && arg + 1 < argc)
            cafile = argv[++arg];
        else if (strcmp(argv[arg], "--trace") == 0)
            trace_on = 1;
        else
            usage();
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
    rill_stream *top = NULL;               /* owns everything below it */
    rill_stream *tcp, *wire, *tls, *plain; /* each owned by the one above, once built */
    if (rill_tls_config_new(&cfg, &err) != RILL_OK ||
        (cafile && rill_tls_config_set_ca_file(cfg, cafile, &err) != RILL_OK) ||
        rill_ctx_new(NULL, &ctx, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }

    /* Plain TCP, so that the counting layer can go between it and TLS. */
    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = TIMEOUT_MS;
    opts.read_timeout_ms = TIMEOUT_MS;
    opts.write_timeout_ms = TIMEOUT_MS;
    if (rill_connect(ctx, host, (uint16_t)port, &opts, &tcp, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    /* Build bottom-up; on each failure the stream below is still ours to close. */
    if (count_new(tcp, "wire", trace_on, &wire) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(tcp));
        rill_close(tcp);
        goto out;
    }
    if (rill_tls_client(wire, cfg, host, 0, &tls) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(wire));
        rill_close(wire);
        goto out;
    }
    if (count_new(tls, "plain", trace_on, &plain) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(tls));
        rill_close(tls);
        goto out;
    }
    if (rill_lines_new(plain, RILL_LINES_DEFAULT_MAX, RILL_EOL_CRLF, 0, &top) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(plain));
        rill_close(plain);
        goto out;
    }

    char request[1024];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rill-example\r\n\r\n", path,
                       host, port);
    if (len < 0 || (size_t)len >= sizeof request) {
        fprintf(stderr, PROG ": request too long\n");
        goto out;
    }
    /* The first write runs the TLS handshake, through the "wire" layer. */
    if (rill_write_str(top, request, NULL) != RILL_OK || rill_flush(top) != RILL_OK) {
        fprintf(stderr, PROG ": sending the request: %s\n", rill_errmsg(top));
        goto out;
    }

    const char *line;
    size_t n;
    rill_status st = rill_read_line(top, &line, &n);
    if (st != RILL_OK) {
        fprintf(stderr, PROG ": reading the status line: %s\n",
                st == RILL_EOF ? "the server closed the connection" : rill_errmsg(top));
        goto out;
    }
    printf("status: %.*s\n", (int)n, line);
    /* Skip the headers, then count the body (the plain layer counts it too). */
    while ((st = rill_read_line(top, &line, &n)) == RILL_OK && n > 0)
        ;
    unsigned long long body = 0;
    char chunk[16384];
    while (st == RILL_OK && (st = rill_read(top, chunk, sizeof chunk, &n)) == RILL_OK)
        body += n;
    if (st != RILL_EOF) {
        fprintf(stderr, PROG ": reading the response: %s\n", rill_errmsg(top));
        goto out;
    }
    printf("body: %llu bytes\n", body);

    char chain[512];
    rill_describe(top, chain, sizeof chain);
    printf("chain: %s\n", chain);

    /* rill_find() returns the topmost layer of a kind: here "plain"; "wire" is below its tls. */
    const struct count *p = count_of(rill_find(top, "count"));
    const struct count *w = count_of(rill_find(rill_find(top, RILL_LAYER_TLS), "count"));
    if (!p || !w) {
        fprintf(stderr, PROG ": count layers not found in the chain\n");
        goto out;
    }
    printf("plaintext  (above tls): sent %llu bytes, received %llu bytes in %lu reads\n",
           (unsigned long long)p->out, (unsigned long long)p->in, p->reads);
    printf("ciphertext (below tls): sent %llu bytes, received %llu bytes in %lu reads\n",
           (unsigned long long)w->out, (unsigned long long)w->in, w->reads);
    printf("tls overhead: %llu bytes (handshake, certificates, record headers and tags)\n",
           (unsigned long long)((w->out + w->in) - (p->out + p->in)));
    status = 0;

out:
    rill_close(top);
    rill_ctx_free(ctx);
    rill_tls_config_free(cfg);
    return status;
}
