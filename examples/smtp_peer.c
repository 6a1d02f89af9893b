/* SPDX-License-Identifier: MIT */
/*
 * smtp_peer — a tiny scripted SMTP-ish server with STARTTLS: rill's server side.
 *
 *     smtp_peer --cert FILE --key FILE [--inject] [--count N]
 *
 * Listens on 127.0.0.1 on a free port and prints "smtp_peer: listening on 127.0.0.1:PORT" on
 * stdout, then serves connections one after the other (N of them, or until killed). It knows
 * EHLO/HELO, NOOP, STARTTLS and QUIT, which is enough to be the peer of smtp_starttls. It is not
 * a mail server.
 *
 * The upgrade is the server half of STARTTLS: the plain line reader borrows the accepted tcp
 * stream, and after "220 go ahead" it is closed and rill_tls_server() starts TLS on the same
 * socket. A client that sent bytes after STARTTLS without waiting for the 220 reply is refused
 * (those bytes would otherwise be taken as if they had come over TLS).
 *
 * --inject misbehaves on purpose: it sends an extra reply line in the same packet as the 220,
 * which a careful client must refuse (smtp_starttls does, with RILL_E_PENDING_DATA).
 *
 * Log lines go to stderr. Exit status: 0 after N connections, 1 if it cannot listen, 2 for bad
 * usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <rill/rill.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROG       "smtp_peer"
#define MAX_LINE   1000 /* RFC 5321: a command line is at most 512 bytes, a text line 1000 */
#define TIMEOUT_MS 10000

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " --cert FILE --key FILE [--inject] [--count N]\n");
    exit(2);
}

/* Whether @p line is the command @p verb, alone or followed by a space and arguments. */
static int is_command(const char *line, size_t len, const char *verb)
{
    size_t n = strlen(verb);
    return len >= n && strncasecmp(line, verb, n) == 0 && (len == n || line[n] == ' ');
}

/* Send a reply (one or more CRLF-terminated lines) in one write. */
static rill_status reply(rill_stream *s, const char *text)
{
    rill_status st = rill_write_str(s, text, NULL);
    return st == RILL_OK ? rill_flush(s) : st;
}

/*
 * Serve one accepted connection. @p tcp is the accepted transport; this function owns it and
 * closes it (directly, or through the TLS chain built on it after STARTTLS).
 */
static void serve(rill_stream *tcp, rill_tls_config *cfg, int inject)
{
    rill_stream *lines = NULL; /* the top of the chain we read commands from */
    int tls_on = 0;            /* 1 once the chain is lines > tls > tcp (then it owns tcp) */

    /* RILL_BORROW: closing this plain line reader must leave the socket open for TLS. */
    if (rill_set_timeouts(tcp, TIMEOUT_MS, TIMEOUT_MS) != RILL_OK ||
        rill_lines_new(tcp, MAX_LINE, RILL_EOL_CRLF, RILL_BORROW, &lines) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", rill_errmsg(tcp));
        goto out;
    }
    /* A multi-line greeting, so that clients must read replies properly. */
    if (reply(lines, "220-peer.example ESMTP rill smtp_peer\r\n220 ready\r\n") != RILL_OK)
        goto fail;

    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_read_line(lines, &line, &len);
        if (st == RILL_EOF) {
            fprintf(stderr, PROG ": client left without QUIT\n");
            goto out;
        }
        if (st == RILL_E_LINE_TOO_LONG || st == RILL_E_PROTOCOL) {
            /* Nothing was consumed: drop the bad line and answer, as a server should. */
            fprintf(stderr, PROG ": bad line: %s\n", rill_errmsg(lines));
            if (rill_skip_line(lines, NULL) != RILL_OK ||
                reply(lines, "500 5.5.2 line too long or bare CR/LF\r\n") != RILL_OK)
                goto fail;
            continue;
        }
        if (st != RILL_OK)
            goto fail;
        fprintf(stderr, PROG ": C: %.*s%s\n", (int)len, line, tls_on ? " (over TLS)" : "");

        if (is_command(line, len, "EHLO") || is_command(line, len, "HELO")) {
            /* STARTTLS is offered only while the connection is plain. */
            st = reply(lines, tls_on ? "250-peer.example\r\n250 8BITMIME\r\n"
                                     : "250-peer.example\r\n250-8BITMIME\r\n250 STARTTLS\r\n");
        } else if (is_command(line, len, "NOOP")) {
            st = reply(lines, "250 2.0.0 ok\r\n");
        } else if (is_command(line, len, "QUIT")) {
            if (reply(lines, "221 2.0.0 bye\r\n") != RILL_OK)
                goto fail;
            goto out;
        } else if (is_command(line, len, "STARTTLS") && !tls_on) {
            /*
             * Bytes already waiting behind the STARTTLS command were sent before our 220: a
             * client that pipelines across the upgrade, or an attacker injecting plaintext.
             */
            if (rill_pending(lines) > 0) {
                fprintf(stderr, PROG ": refusing STARTTLS: %zu bytes sent after it\n",
                        rill_pending(lines));
                (void)reply(lines, "503 5.5.1 no pipelining across STARTTLS\r\n");
                goto out;
            }
            st = reply(lines, inject ? "220 2.0.0 go ahead\r\n250 injected before TLS\r\n"
                                     : "220 2.0.0 go ahead\r\n");
            if (st != RILL_OK)
                goto fail;
            /* Detach the plain reader (tcp stays open: it was borrowed) ... */
            if (rill_close(lines) != RILL_OK) {
                lines = NULL;
                fprintf(stderr, PROG ": the plain line reader held unread bytes\n");
                goto out;
            }
            lines = NULL;
            /* ... and start TLS on the same socket. The new chain owns tcp from here on. */
            rill_stream *tls;
            if (rill_tls_server(tcp, cfg, 0, &tls) != RILL_OK) {
                fprintf(stderr, PROG ": %s\n", rill_errmsg(tcp));
                goto out;
            }
            tcp = NULL;
            tls_on = 1;
            if (rill_lines_new(tls, MAX_LINE, RILL_EOL_CRLF, 0, &lines) != RILL_OK) {
                fprintf(stderr, PROG ": %s\n", rill_errmsg(tls));
                rill_close(tls);
                goto out;
            }
            /* Run the handshake now, so that its failure is reported as such. */
            if (rill_tls_handshake(lines) != RILL_OK)
                goto fail;
            fprintf(stderr, PROG ": TLS is on\n");
            continue;
        } else {
            st = reply(lines, "502 5.5.2 command not recognized\r\n");
        }
        if (st != RILL_OK)
            goto fail;
    }

fail:
    fprintf(stderr, PROG ": %s\n", rill_errmsg(lines));
out:
    rill_close(lines); /* before the upgrade: the borrowing reader only; after it: the chain */
    rill_close(tcp);   /* NULL once the TLS chain owns it */
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL;
    int inject = 0;
    long count = -1; /* serve forever */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
            cert = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--inject") == 0)
            inject = 1;
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else
            usage();
    }
    if (!cert || !key || count == 0)
        usage();

    rill_error err;
    rill_tls_config *cfg = NULL;
    rill_listener *listener = NULL;
    int status = 1;
    if (rill_tls_config_new(&cfg, &err) != RILL_OK ||
        rill_tls_config_set_cert_file(cfg, cert, key, &err) != RILL_OK ||
        rill_listen("127.0.0.1", 0, NULL, &listener, &err) != RILL_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    /* The line the test script waits for; flushed, since stdout is a file there. */
    printf(PROG ": listening on 127.0.0.1:%u\n", (unsigned)rill_listener_port(listener));
    fflush(stdout);

    for (long served = 0; count < 0 || served < count; served++) {
        rill_stream *conn;
        if (rill_accept(listener, RILL_TIMEOUT_NONE, &conn, &err) != RILL_OK) {
            fprintf(stderr, PROG ": %s\n", err.msg);
            goto out;
        }
        serve(conn, cfg, inject);
    }
    status = 0;
out:
    rill_listener_free(listener);
    rill_tls_config_free(cfg);
    return status;
}
