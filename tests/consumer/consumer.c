/* SPDX-License-Identifier: MIT */
/* A program built against the installed library, as users build theirs. */
#include <rill/rill.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    rill_error err;
    rill_listener *l = NULL;
    rill_stream *c = NULL, *s = NULL, *b = NULL;
    if (rill_listen("127.0.0.1", 0, NULL, &l, &err) != RILL_OK ||
        rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &c, &err) != RILL_OK ||
        rill_accept(l, 5000, &s, &err) != RILL_OK) {
        fprintf(stderr, "consumer: %s\n", err.msg);
        return 1;
    }
    rill_listener_free(l);
    if (rill_buffered_new(c, 64, 64, 0, &b) != RILL_OK ||
        rill_write_str(b, "ping", NULL) != RILL_OK || rill_flush(b) != RILL_OK) {
        fprintf(stderr, "consumer: %s\n", rill_errmsg(c));
        return 1;
    }
    char buf[8];
    size_t n = 0;
    if (rill_read_full(s, buf, 4, &n) != RILL_OK || memcmp(buf, "ping", 4) != 0) {
        fprintf(stderr, "consumer: read: %s\n", rill_errmsg(s));
        return 1;
    }
    /* Lines through the installed header's rill_read_line (inline unless RILL_NO_INLINE). */
    rill_stream *ln = NULL;
    if (rill_write_str(b, "one\ntwo\nthree\n", NULL) != RILL_OK || rill_flush(b) != RILL_OK ||
        rill_lines_new(s, 64, RILL_EOL_LF, 0, &ln) != RILL_OK) {
        fprintf(stderr, "consumer: lines: %s\n", rill_errmsg(s));
        return 1;
    }
    static const char *const want[] = { "one", "two", "three" };
    for (int i = 0; i < 3; i++) {
        const char *line = NULL;
        size_t len = 0;
        if (rill_read_line(ln, &line, &len) != RILL_OK || len != strlen(want[i]) ||
            memcmp(line, want[i], len) != 0) {
            fprintf(stderr, "consumer: line %d: %s\n", i, rill_errmsg(ln));
            return 1;
        }
    }
    rill_close(b);
    rill_close(ln);
    printf("consumer ok, rill %s\n", rill_version());
    return 0;
}
