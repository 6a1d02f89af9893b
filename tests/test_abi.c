/* SPDX-License-Identifier: MIT */
/*
 * The ABI room: version macros against the library and the build, and option structs that grow
 * (a program built against an older header passes a smaller struct; garbage sizes are refused).
 * Smaller structs live in heap blocks of exactly their size, so a library that reads past them
 * fails under AddressSanitizer.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#ifndef RILL_CMAKE_VERSION
#error "the build passes the CMake project version as RILL_CMAKE_VERSION"
#endif

START_TEST(test_version_macros)
{
    char text[32];
    snprintf(text, sizeof text, "%d.%d.%d", RILL_VERSION_MAJOR, RILL_VERSION_MINOR,
             RILL_VERSION_PATCH);
    ck_assert_str_eq(text, rill_version());
    ck_assert_str_eq(text, RILL_CMAKE_VERSION);
    ck_assert_uint_eq(rill_version_number(), RILL_VERSION_NUMBER);
    ck_assert_uint_eq(
        RILL_VERSION_NUMBER,
        (unsigned)((RILL_VERSION_MAJOR << 16) | (RILL_VERSION_MINOR << 8) | RILL_VERSION_PATCH));
}
END_TEST

START_TEST(test_version_check)
{
    ck_assert_int_eq(rill_version_check(RILL_VERSION_NUMBER), 1);
    /* A program built against an older header of the same major version is served. */
    ck_assert_int_eq(rill_version_check((unsigned)RILL_VERSION_MAJOR << 16), 1);
    /* A newer header (new functions or fields), or another major version, is not. */
    ck_assert_int_eq(rill_version_check(RILL_VERSION_NUMBER + 1), 0);
    ck_assert_int_eq(rill_version_check((unsigned)(RILL_VERSION_MAJOR + 1) << 16), 0);
}
END_TEST

/* A copy of @p src cut to @p size bytes, in a block of exactly that size, its size field set. */
static void *older(const void *src, size_t size)
{
    unsigned char *p = malloc(size);
    ck_assert_ptr_nonnull(p);
    memcpy(p, src, size);
    uint32_t tagged;
    memcpy(&tagged, src, sizeof tagged);
    tagged = (tagged & 0xffff0000u) | (uint32_t)size;
    memcpy(p, &tagged, sizeof tagged);
    return p;
}

/* An older program's rill_connect_opts that ends at write_timeout_ms: the rest are defaults. */
START_TEST(test_connect_opts_older)
{
    int fds = rt_count_fds();
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    rill_connect_opts full;
    rill_connect_opts_init(&full);
    full.read_timeout_ms = 1234;
    full.write_timeout_ms = 4321;
    size_t size = offsetof(rill_connect_opts, write_timeout_ms) + sizeof(int);
    rill_connect_opts *old = older(&full, size);
    rill_stream *c = NULL;
    rill_status st = rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), old, &c, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    int r = 0, w = 0;
    rill_get_timeouts(c, &r, &w);
    ck_assert_int_eq(r, 1234);
    ck_assert_int_eq(w, 4321);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    free(old);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* An older rill_ctx_opts that ends before dns_cache_max: the library must not read it. */
START_TEST(test_ctx_opts_older)
{
    rill_ctx_opts full;
    rill_ctx_opts_init(&full);
    full.dns_cache_max = -1; /* refused if read: "negative cache or query setting" */
    rill_ctx *ctx = NULL;
    rill_error err;
    rt_assert_err(&err, rill_ctx_new(&full, &ctx, &err), RILL_E_INVALID, "negative cache");
    size_t size = offsetof(rill_ctx_opts, dns_cache_max);
    rill_ctx_opts *old = older(&full, size);
    rill_status st = rill_ctx_new(old, &ctx, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    rill_ctx_free(ctx);
    free(old);
}
END_TEST

/*
 * An older program's rill_listen_opts: its stream member is an older, smaller rill_connect_opts,
 * so the struct is smaller as a whole; accepted streams get its timeouts.
 */
START_TEST(test_listen_opts_older_stream)
{
    int fds = rt_count_fds();
    rill_listen_opts full;
    rill_listen_opts_init(&full);
    full.stream.read_timeout_ms = 777;
    size_t head = offsetof(rill_listen_opts, stream);
    size_t stream_size = offsetof(rill_connect_opts, nodelay) + sizeof(int);
    unsigned char *old = malloc(head + stream_size);
    ck_assert_ptr_nonnull(old);
    memcpy(old, &full, head);
    uint32_t tagged = (full.size & 0xffff0000u) | (uint32_t)(head + stream_size);
    memcpy(old, &tagged, sizeof tagged);
    void *stream = older(&full.stream, stream_size);
    memcpy(old + head, stream, stream_size);
    free(stream);

    rill_listener *l = NULL;
    rill_error err;
    rill_status st = rill_listen("127.0.0.1", 0, (rill_listen_opts *)(void *)old, &l, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    free(old);
    rill_stream *c = NULL, *s = NULL;
    ck_assert_int_eq(rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, &c, &err),
                     RILL_OK);
    ck_assert_int_eq(rill_accept(l, 5000, &s, &err), RILL_OK);
    int r = 0, w = 0;
    rill_get_timeouts(s, &r, &w);
    ck_assert_int_eq(r, 777);
    ck_assert_int_eq(w, RILL_TIMEOUT_NONE);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* Size fields that no header ever produced. */
static const struct {
    uint32_t size;
    const char *why;
} garbage[] = {
    { 0, "not initialised (zeroed struct)" },
    { 0xdeadbeefu, "stack garbage" },
    { sizeof(rill_connect_opts), "a plain sizeof without the tag" },
    { 0x726c0000u | 6u, "tagged, but inside a member" },
    { 0x726c0000u | 2u, "tagged, smaller than the size member" },
};

START_TEST(test_connect_opts_garbage_size)
{
    int fds = rt_count_fds();
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.size = garbage[_i].size;
    rill_stream *c = NULL;
    rill_error err;
    rt_assert_err(&err, rill_tcp_connect_addr("127.0.0.1", 9, &o, &c, &err), RILL_E_INVALID,
                  "tcp: rill_connect_opts not initialised with rill_connect_opts_init()");
    ck_assert_ptr_null(c);
    rill_ctx *ctx = NULL;
    rt_assert_err(&err, rill_connect(NULL, "127.0.0.1", 9, &o, &c, &err), RILL_E_INVALID,
                  "connect: rill_connect_opts not initialised");
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    co.size = garbage[_i].size;
    rt_assert_err(&err, rill_ctx_new(&co, &ctx, &err), RILL_E_INVALID,
                  "ctx: rill_ctx_opts not initialised with rill_ctx_opts_init()");
    ck_assert_ptr_null(ctx);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.size = garbage[_i].size;
    rill_listener *l = NULL;
    rt_assert_err(&err, rill_listen("127.0.0.1", 0, &lo, &l, &err), RILL_E_INVALID,
                  "tcp: rill_listen_opts not initialised with rill_listen_opts_init()");
    rill_listen_opts_init(&lo);
    lo.stream.size = garbage[_i].size;
    rt_assert_err(&err, rill_listen("127.0.0.1", 0, &lo, &l, &err), RILL_E_INVALID,
                  "tcp: rill_connect_opts not initialised");
    ck_assert_ptr_null(l);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* A struct from a newer header: accepted when the fields this library lacks are zero. */
START_TEST(test_connect_opts_newer)
{
    int fds = rt_count_fds();
    size_t size = sizeof(rill_connect_opts) + 16;
    unsigned char *newer = calloc(1, size);
    ck_assert_ptr_nonnull(newer);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    memcpy(newer, &o, sizeof o);
    uint32_t tagged = (o.size & 0xffff0000u) | (uint32_t)size;
    memcpy(newer, &tagged, sizeof tagged);

    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen("127.0.0.1", 0, NULL, &l, &err), RILL_OK);
    rill_stream *c = NULL;
    rill_status st = rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l),
                                           (rill_connect_opts *)(void *)newer, &c, &err);
    ck_assert_msg(st == RILL_OK, "%s", err.msg);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    c = NULL;

    newer[size - 3] = 1; /* a field this library does not know, set */
    rt_assert_err(&err,
                  rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l),
                                        (rill_connect_opts *)(void *)newer, &c, &err),
                  RILL_E_INVALID, "tcp: rill_connect_opts sets a field this rill");
    ck_assert_msg(strstr(err.msg, "needs a newer rill") != NULL, "%s", err.msg);
    ck_assert_ptr_null(c);
    free(newer);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* The _init functions tag the size the program was built with. */
/*
 * The layout the inline rill_read_line() compiled into programs reads (docs/abi.md): the
 * window's members where they were, and the window at offset 0 of a line stream only.
 */
START_TEST(test_line_window_layout)
{
    ck_assert_uint_eq(offsetof(rill_line_window_, pos), 0);
    ck_assert_uint_eq(offsetof(rill_line_window_, end), sizeof(char *));
    ck_assert_uint_eq(offsetof(rill_line_window_, room), 2 * sizeof(char *));
    ck_assert_uint_eq(sizeof(rill_line_window_), 2 * sizeof(char *) + sizeof(size_t));
    int peer;
    rill_stream *fd = rt_fd_end(&peer), *ln = NULL;
    ck_assert_ptr_null(*(rill_line_window_ *const *)(const void *)fd);
    ck_assert_int_eq(rill_lines_new(fd, 64, RILL_EOL_LF, 0, &ln), RILL_OK);
    rill_line_window_ *w = *(rill_line_window_ *const *)(const void *)ln;
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_null(w->pos); /* closed until a line was handed out */
    ck_assert_int_eq(write(peer, "a\nbb\nc", 6), 6);
    const char *line = NULL;
    size_t len = 0;
    ck_assert_int_eq(rill_read_line(ln, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "a");
    ck_assert_ptr_eq(w->pos, line + 2); /* open over "bb\nc", the last byte left out */
    ck_assert_ptr_eq(w->end, line + 5);
    ck_assert_uint_eq(w->room, 65);
    ck_assert_int_eq(rill_read_line(ln, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "bb");
    ck_assert_ptr_eq(w->pos, line + 3);
    close(peer);
    ck_assert_int_eq(rill_close(ln), RILL_OK);
}
END_TEST

START_TEST(test_init_sets_size)
{
    rill_connect_opts c;
    rill_ctx_opts x;
    rill_listen_opts l;
    rill_connect_opts_init(&c);
    rill_ctx_opts_init(&x);
    rill_listen_opts_init(&l);
    ck_assert_uint_eq(c.size & 0xffffu, sizeof c);
    ck_assert_uint_eq(x.size & 0xffffu, sizeof x);
    ck_assert_uint_eq(l.size & 0xffffu, sizeof l);
    ck_assert_uint_eq(l.stream.size, c.size);
    ck_assert_uint_ne(c.size & 0xffff0000u, 0);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *suite = suite_create("abi");
    TCase *tc = tcase_create("abi");
    tcase_add_test(tc, test_version_macros);
    tcase_add_test(tc, test_version_check);
    tcase_add_test(tc, test_init_sets_size);
    tcase_add_test(tc, test_line_window_layout);
    tcase_add_test(tc, test_connect_opts_older);
    tcase_add_test(tc, test_ctx_opts_older);
    tcase_add_test(tc, test_listen_opts_older_stream);
    tcase_add_loop_test(tc, test_connect_opts_garbage_size, 0,
                        (int)(sizeof garbage / sizeof garbage[0]));
    tcase_add_test(tc, test_connect_opts_newer);
    suite_add_tcase(suite, tc);
    return suite;
}
