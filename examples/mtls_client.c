/* SPDX-License-Identifier: MIT */
/*
 * mtls_client — mutual TLS: present a client certificate, show what was agreed, read a reply.
 *
 *     mtls_client [--cafile FILE] [--cert FILE --key FILE] HOST PORT
 *
 * The client certificate and its key go into the TLS config (rill_tls_config_set_cert_file);
 * every connection made with that config offers them when the server asks. After the
 * handshake, rill_tls_get_info() tells the facts of the connection: version, cipher, and the
 * server's certificate (subject, issuer, subjectAltNames, validity, and its key in the
 * "sha256//..." form that rill_tls_config_add_pin() takes).
 *
 * Then it sends "GET / HTTP/1.0" and prints the reply, each line prefixed with "< ". Against
 * `openssl s_server -www -Verify 1` that page describes the session, including the client
 * certificate the server received.
 *
 * Without --cert, a server that requires a certificate refuses the connection. With TLS 1.3
 * the client's handshake has already completed when the server decides, so the refusal arrives
 * as an alert on the first read: rill reports it there, as RILL_E_TLS with the alert's name
 * ("certificate required"), never as a quiet end of stream.
 *
 * Exit status: 0 when the whole reply was read, 1 on any failure (one line on stderr), 2 for
 * bad usage.
 */
#include <rill/rill.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG       "mtls_client"
#define TIMEOUT_MS 10000

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--cafile FILE] [--cert FILE --key FILE] HOST PORT\n");
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

static void print_info(rill_stream *s)
{
    rill_tls_info info;
    if (rill_tls_get_info(s, &info) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(s));
        return;
    }
    printf("tls version:    %s\n", info.version);
    printf("tls cipher:     %s\n", info.cipher);
    printf("tls resumed:    %s\n", info.resumed ? "yes" : "no");
    printf("tls verified:   %s (as %s)\n", info.verified ? "yes" : "no", info.servername);
    printf("server subject: %s\n", info.subject);
    printf("server issuer:  %s\n", info.issuer);
    printf("server SANs:    %s\n", info.sans);
    printf("server valid:   %s .. %s\n", info.not_before, info.not_after);
    printf("server key:     %s\n", info.spki_sha256);
}

int main(int argc, char **argv)
{
    const char *cafile = NULL, *cert = NULL, *key = NULL;
    int arg = 1;
    for (; arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0; arg += 2) {
        if (strcmp(argv[arg], "--cafile") == 0)
            cafile = argv[arg + 1];
        else if (strcmp(argv[arg], "--cert") == 0)
            cert = argv[arg + 1];
        else if (strcmp(argv[arg], "--key") == 0)
            key = argv[arg + 1];
        else
            usage();
    }
    if (argc - arg != 2 || (cert == NULL) != (key == NULL))
        usage();
    const char *host = argv[arg];
    unsigned port = parse_port(argv[arg + 1]);
    if (port == 0)
        usage();

    int status = 1;
    rill_error err;
    rill_tls_config *cfg = NULL;
    rill_ctx *ctx = NULL;
    rill_stream *tls = NULL, *lines = NULL;

    /* The key must match the certificate; a mismatch or an unreadable file fails here. */
    if (rill_tls_config_new(&cfg, &err) != RILL_OK ||
        (cafile && rill_tls_config_set_ca_file(cfg, cafile, &err) != RILL_OK) ||
        (cert && rill_tls_config_set_cert_file(cfg, cert, key, &err) != RILL_OK) ||
        rill_ctx_new(NULL, &ctx, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }

    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = TIMEOUT_MS;
    opts.read_timeout_ms = TIMEOUT_MS;
    opts.write_timeout_ms = TIMEOUT_MS;
    opts.tls = cfg;
    if (rill_connect(ctx, host, (uint16_t)port, &opts, &tls, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    print_info(tls);
    printf("client cert:    %s\n", cert ? cert : "(none)");

    /* s_server's status page ends its lines with LF, its HTTP header with CRLF: accept both. */
    if (rill_lines_new(tls, RILL_LINES_DEFAULT_MAX, RILL_EOL_ANY, 0, &lines) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(tls));
        rill_close(tls);
        goto out;
    }
    rill_status st = rill_write_str(lines, "GET / HTTP/1.0\r\n\r\n", NULL);
    if (st != RILL_OK) {
        fprintf(stderr, PROG ": sending the request: %s\n", rill_errmsg(lines));
        goto out;
    }

    /* A server that rejects our certificate (or its absence) says so here, on the first read. */
    size_t count = 0;
    const char *line;
    size_t len;
    while ((st = rill_read_line(lines, &line, &len)) == RILL_OK) {
        printf("< %.*s\n", (int)len, line);
        count++;
    }
    if (st != RILL_EOF) {
        fprintf(stderr, PROG ": reading the reply after %zu lines: %s\n", count,
                rill_errmsg(lines));
        goto out;
    }
    printf("reply: %zu lines\n", count);
    status = 0;

out:
    rill_close(lines);
    rill_ctx_free(ctx);
    rill_tls_config_free(cfg);
    return status;
}
