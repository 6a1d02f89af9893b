/* SPDX-License-Identifier: MIT */
/*
 * smtp_starttls — an SMTP-style STARTTLS client: plain exchange, then TLS on the same socket.
 *
 *     smtp_starttls [--cafile FILE] HOST PORT
 *
 * The conversation (S: server, C: client):
 *
 *     S: 220 greeting (possibly several lines)     plain:  lines (CRLF) > tcp
 *     C: EHLO        S: 250 ... STARTTLS
 *     C: STARTTLS    S: 220 go ahead
 *        -- rill_starttls(): TLS goes under the line reader, on the same tcp stream --
 *     C: EHLO        S: 250 ...                     TLS:    lines (CRLF) > tls > tcp
 *     C: QUIT        S: 221 bye
 *
 * The one subtle step is the upgrade. Anything the server sent after "220 go ahead" arrived in
 * plaintext, before any TLS, yet would be read as if it had come over TLS: a man in the middle
 * can inject replies there (CVE-2011-0411). rill_starttls() refuses such an upgrade with
 * RILL_E_PENDING_DATA, naming the byte count, and this client exits with that error. The call
 * never closes or detaches a layer, so no pointer of ours can dangle, and every error of the
 * conversation is read the same way: rill_errmsg() of the top stream.
 *
 * Exit status: 0 after a clean QUIT over TLS, 1 on any failure (one line on stderr), 2 for bad
 * usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <rill/rill.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROG       "smtp_starttls"
#define MAX_LINE   1000 /* RFC 5321: a reply line is at most 512 bytes, a text line 1000 */
#define TIMEOUT_MS 10000

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " [--cafile FILE] HOST PORT\n");
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

/* Send one command line (CRLF added) and show it. */
static int command(rill_stream *s, const char *cmd)
{
    printf("C: %s\n", cmd);
    rill_status st = rill_write_str(s, cmd, NULL);
    if (st == RILL_OK)
        st = rill_write_str(s, "\r\n", NULL);
    if (st == RILL_OK)
        st = rill_flush(s);
    if (st != RILL_OK) {
        fprintf(stderr, PROG ": sending %s: %s\n", cmd, rill_errmsg(s));
        return -1;
    }
    return 0;
}

/*
 * Read one reply, which may span several lines ("250-first", "250-more", "250 last"), and check
 * that its code is @p expect. Each line is shown. When @p keyword is not NULL, *found is set to
 * whether one of the lines after the first (the EHLO extensions) is that keyword.
 * Returns 0, or -1 after printing why.
 */
static int reply(rill_stream *s, int expect, const char *keyword, int *found)
{
    int code = -1;
    if (found)
        *found = 0;
    for (int first = 1;; first = 0) {
        const char *line;
        size_t len;
        rill_status st = rill_read_line(s, &line, &len);
        if (st != RILL_OK) {
            fprintf(stderr, PROG ": reading a reply: %s\n",
                    st == RILL_EOF ? "the server closed the connection" : rill_errmsg(s));
            return -1;
        }
        printf("S: %.*s\n", (int)len, line);
        /* "ddd text", "ddd-text" (more lines follow) or just "ddd" */
        int well_formed = len >= 3 && strspn(line, "0123456789") >= 3 &&
                          (len == 3 || line[3] == ' ' || line[3] == '-');
        int this_code = well_formed ? atoi(line) : -1;
        if (!well_formed || (code != -1 && this_code != code)) {
            fprintf(stderr, PROG ": malformed reply line: %.*s\n", (int)len, line);
            return -1;
        }
        code = this_code;
        if (keyword && !first && len > 4 && strcasecmp(line + 4, keyword) == 0)
            *found = 1;
        if (len == 3 || line[3] == ' ')
            break;
    }
    if (code != expect) {
        fprintf(stderr, PROG ": expected a %d reply, got %d\n", expect, code);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *cafile = NULL;
    int arg = 1;
    if (arg + 1 < argc && strcmp(argv[arg], "--cafile") == 0) {
        cafile = argv[arg + 1];
        arg += 2;
    }
    if (argc - arg != 2)
        usage();
    const char *host = argv[arg];
    unsigned port = parse_port(argv[arg + 1]);
    if (port == 0)
        usage();

    int status = 1, starttls = 0;
    rill_error err;
    rill_tls_config *cfg = NULL;
    rill_ctx *ctx = NULL;
    rill_stream *tcp = NULL;   /* ours to close until the line reader takes it */
    rill_stream *lines = NULL; /* the top of the chain: lines > tcp, then lines > tls > tcp */

    if (rill_tls_config_new(&cfg, &err) != RILL_OK ||
        (cafile && rill_tls_config_set_ca_file(cfg, cafile, &err) != RILL_OK) ||
        rill_ctx_new(NULL, &ctx, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }

    /* A plain connection: no opts.tls, since TLS starts only after STARTTLS. */
    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = TIMEOUT_MS;
    opts.read_timeout_ms = TIMEOUT_MS;
    opts.write_timeout_ms = TIMEOUT_MS;
    if (rill_connect(ctx, host, (uint16_t)port, &opts, &tcp, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    if (rill_lines_new(tcp, MAX_LINE, RILL_EOL_CRLF, 0, &lines) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(tcp));
        goto out;
    }
    tcp = NULL; /* the line reader owns it now */
    if (reply(lines, 220, NULL, NULL) != 0 || command(lines, "EHLO client.example") != 0 ||
        reply(lines, 250, "STARTTLS", &starttls) != 0)
        goto out;
    if (!starttls) {
        fprintf(stderr, PROG ": the server does not offer STARTTLS\n");
        goto out;
    }
    if (command(lines, "STARTTLS") != 0 || reply(lines, 220, NULL, NULL) != 0)
        goto out;

    /*
     * The upgrade, in place: TLS goes under the line reader, on the same socket. It is refused
     * (RILL_E_PENDING_DATA) if the server sent anything after its 220 reply: such bytes came
     * before the handshake, unauthenticated. Every error is on the top stream; the handshake
     * would run on the first write anyway, running it here names its failure.
     */
    if (rill_starttls(&lines, cfg, host, 0) != RILL_OK || rill_tls_handshake(lines) != RILL_OK) {
        fprintf(stderr, PROG ": STARTTLS: %s\n", rill_errmsg(lines));
        goto out;
    }
    rill_tls_info info;
    if (rill_tls_get_info(lines, &info) == RILL_OK)
        printf("tls: %s %s, server %s (%s)\n", info.version, info.cipher, info.subject,
               info.verified ? "verified" : "NOT verified");

    /* A new EHLO: the server forgets everything learned before TLS (RFC 3207). */
    if (command(lines, "EHLO client.example") != 0 || reply(lines, 250, NULL, NULL) != 0 ||
        command(lines, "QUIT") != 0 || reply(lines, 221, NULL, NULL) != 0)
        goto out;
    status = 0;

out:
    rill_close(lines); /* the whole chain, before or after the upgrade */
    rill_close(tcp);   /* still ours if the line reader never took it (NULL is fine) */
    rill_ctx_free(ctx);
    rill_tls_config_free(cfg);
    return status;
}
