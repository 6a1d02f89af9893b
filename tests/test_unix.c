/* SPDX-License-Identifier: MIT */
/*
 * The unix transport and Unix listeners (src/transport/unix.c, sock.c, listen.c): path sockets
 * in a private mkdtemp directory and Linux abstract sockets named after the test's pid.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.h"

/*
 * One private directory per run (made and removed in the runner's process, so it goes away even
 * when a forked test fails before its teardown), and a fresh subdirectory in it for each test.
 */
static char top_dir[64];
static char dir[96];
static int dir_seq;

static void suite_setup(void)
{
    rt_mkdtemp(top_dir, sizeof top_dir);
}

static void suite_teardown(void)
{
    DIR *d = opendir(top_dir);
    if (d) {
        struct dirent *e;
        char sub[sizeof dir];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(sub, sizeof sub, "%s/%.20s", top_dir, e->d_name);
            rt_rmdir(sub);
        }
        closedir(d);
    }
    rt_rmdir(top_dir);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "%s/%d-%ld", top_dir, dir_seq++, (long)getpid());
    ck_assert_msg(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir, strerror(errno));
}

static void teardown(void)
{
    rt_watchdog(0, NULL);
    rt_rmdir(dir);
}

static void path_in_dir(char *buf, size_t len, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    ck_assert(n > 0 && (size_t)n < len);
}

static void abstract_name(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "@rill-test-%s-%ld", what, (long)getpid());
}

static int file_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* A socket file at @p path that nobody listens on any more. */
static void stale_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(fd);
    ck_assert(file_exists(path));
}

/* ================================================================================================
 * Connecting and moving bytes
 */

START_TEST(test_echo)
{
    int abstract = _i == 1;
    char name[128];
    if (abstract)
        abstract_name(name, sizeof name, "echo");
    else
        path_in_dir(name, sizeof name, "echo.sock");
    int fds0 = rt_count_fds();
    rill_stream *client = NULL, *server = NULL;
    rt_unix_pair(name, &client, &server);
    ck_assert_str_eq(rill_kind(client), RILL_LAYER_UNIX);
    ck_assert_str_eq(rill_kind(server), RILL_LAYER_UNIX);
    ck_assert_int_eq(rt_sockopt_int(rill_fd(client), SOL_SOCKET, SO_DOMAIN), AF_UNIX);

    const size_t sizes[] = { 1, 333, 4096, 50000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        rt_transfer(client, server, sizes[i], 10 + i);
        rt_transfer(server, client, sizes[i], 20 + i);
    }

    /* Half-close and EOF as over TCP. */
    ck_assert_int_eq(rill_shutdown(client), RILL_OK);
    char buf[8];
    size_t n = 3;
    ck_assert_int_eq(rill_read(server, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_write_str(server, "bye", NULL), RILL_OK);
    ck_assert_int_eq(rill_read_full(client, buf, 3, &n), RILL_OK);
    ck_assert_mem_eq(buf, "bye", 3);
    rt_assert_error(client, rill_write(client, "x", 1, &n), RILL_E_CLOSED, "shutdown");
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_int_eq(rill_read(client, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rt_count_fds(), fds0);
    if (!abstract)
        ck_assert_msg(!file_exists(name), "listener free left %s behind", name);
}
END_TEST

START_TEST(test_describe)
{
    int abstract = _i == 1;
    char name[128];
    if (abstract)
        abstract_name(name, sizeof name, "describe");
    else
        path_in_dir(name, sizeof name, "describe.sock");
    rill_stream *client = NULL, *server = NULL;
    rt_unix_pair(name, &client, &server);
    char got[256], fdpart[32];
    size_t n = rill_describe(client, got, sizeof got);
    ck_assert_uint_eq(n, strlen(got));
    snprintf(fdpart, sizeof fdpart, "unix(fd=%d ", rill_fd(client));
    ck_assert_msg(strncmp(got, fdpart, strlen(fdpart)) == 0, "client describe: %s", got);
    ck_assert_msg(strstr(got, name) != NULL, "client describe \"%s\" lacks \"%s\"", got, name);

    n = rill_describe(server, got, sizeof got);
    ck_assert_uint_eq(n, strlen(got));
    snprintf(fdpart, sizeof fdpart, "unix(fd=%d ", rill_fd(server));
    ck_assert_msg(strncmp(got, fdpart, strlen(fdpart)) == 0, "server describe: %s", got);
    ck_assert_msg(strstr(got, name) != NULL, "server describe \"%s\" lacks \"%s\"", got, name);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
}
END_TEST

/* The longest path that fits sun_path (107 bytes and the NUL) works; one more byte does not. */
START_TEST(test_path_length_limit)
{
    char path[256];
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    int n = snprintf(path, sizeof path, "%s/", dir);
    ck_assert_int_gt(n, 0);
    while ((size_t)n < max)
        path[n++] = 'p';
    path[n] = '\0';
    ck_assert_uint_eq(strlen(path), max);

    rill_stream *client = NULL, *server = NULL;
    rt_unix_pair(path, &client, &server);
    rt_transfer(client, server, 100, 1);
    char got[256];
    rill_describe(client, got, sizeof got);
    ck_assert_msg(strstr(got, path) != NULL, "describe \"%s\" lacks the full path", got);
    ck_assert_int_eq(rill_close(client), RILL_OK);
    ck_assert_int_eq(rill_close(server), RILL_OK);
    ck_assert_msg(!file_exists(path), "listener free left the socket file");

    path[max] = 'q';
    path[max + 1] = '\0';
    rill_listener *l = NULL;
    rill_error err;
    rill_status st = rill_listen_unix(path, NULL, &l, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "longer than 107 bytes");
    ck_assert_ptr_null(l);
    ck_assert(!file_exists(path));
    st = rill_unix_connect(path, NULL, &client, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, "longer than 107 bytes");
}
END_TEST

/* ================================================================================================
 * Errors
 */

START_TEST(test_connect_missing)
{
    int fds0 = rt_count_fds();
    char path[128];
    path_in_dir(path, sizeof path, "nobody-here.sock");
    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x31;
    rill_stream *s = sentinel;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_unix_connect(path, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_CONNECT, path);
    ck_assert_msg(strstr(err.msg, "no such file") != NULL, "message: %s", err.msg);
    ck_assert_msg(strncmp(err.msg, "unix: ", 6) == 0, "message lacks the layer: %s", err.msg);
    ck_assert_int_eq(err.sys_errno, ENOENT);
    ck_assert_ptr_eq(s, sentinel);

    /* An abstract name nobody listens on: refused, name in the message. */
    char name[128];
    abstract_name(name, sizeof name, "nobody");
    st = rill_unix_connect(name, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_REFUSED, name);
    ck_assert_msg(strstr(err.msg, "refused") != NULL, "message: %s", err.msg);

    /* A socket file left behind by a dead server: refused, path in the message. */
    path_in_dir(path, sizeof path, "stale.sock");
    stale_socket(path);
    st = rill_unix_connect(path, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_REFUSED, path);
    ck_assert_int_eq(err.sys_errno, ECONNREFUSED);
    ck_assert_ptr_eq(s, sentinel);
    unlink(path);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* rill_listen_unix on a path that already exists: RILL_E_IO "in use", and the file survives. */
START_TEST(test_listen_existing)
{
    int fds0 = rt_count_fds();
    char path[128];
    path_in_dir(path, sizeof path, "exists");
    int kind = _i; /* 0: stale socket file, 1: regular file, 2: live rill listener */
    rill_listener *live = NULL;
    rill_error err;
    if (kind == 0) {
        stale_socket(path);
    } else if (kind == 1) {
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "keep me", 7), 7);
        close(fd);
    } else {
        ck_assert_int_eq(rill_listen_unix(path, NULL, &live, &err), RILL_OK);
    }
    int fds1 = rt_count_fds();
    rill_listener *l = NULL;
    memset(&err, 0, sizeof err);
    rill_status st = rill_listen_unix(path, NULL, &l, &err);
    rt_assert_err(&err, st, RILL_E_IO, "in use");
    ck_assert_msg(strstr(err.msg, path) != NULL, "message \"%s\" lacks the path", err.msg);
    ck_assert_int_eq(err.sys_errno, EADDRINUSE);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(rt_count_fds(), fds1);
    ck_assert_msg(file_exists(path), "a failed listen removed %s", path);
    if (kind == 1) {
        char buf[8] = "";
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(read(fd, buf, sizeof buf), 7);
        ck_assert_mem_eq(buf, "keep me", 7);
        close(fd);
    }
    if (kind == 2) {
        /* The first listener still works. */
        rill_stream *c = NULL, *s = NULL;
        ck_assert_int_eq(rill_unix_connect(path, NULL, &c, &err), RILL_OK);
        ck_assert_int_eq(rill_accept(live, 2000, &s, &err), RILL_OK);
        rt_transfer(c, s, 10, 1);
        rill_close(c);
        rill_close(s);
        rill_listener_free(live);
        ck_assert(!file_exists(path));
    } else {
        unlink(path);
    }
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_abstract_in_use)
{
    char name[128];
    abstract_name(name, sizeof name, "twice");
    rill_listener *a = NULL, *b = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen_unix(name, NULL, &a, &err), RILL_OK);
    rill_status st = rill_listen_unix(name, NULL, &b, &err);
    rt_assert_err(&err, st, RILL_E_IO, "in use");
    ck_assert_msg(strstr(err.msg, name) != NULL, "message \"%s\" lacks the name", err.msg);
    ck_assert_ptr_null(b);
    ck_assert_uint_eq(rill_listener_port(a), 0);
    ck_assert_int_ge(rill_listener_fd(a), 0);
    rill_listener_free(a);
    /* Free releases the name: listening again works. */
    ck_assert_int_eq(rill_listen_unix(name, NULL, &a, &err), RILL_OK);
    rill_listener_free(a);
}
END_TEST

START_TEST(test_listener_free_unlinks)
{
    char path[128];
    path_in_dir(path, sizeof path, "unlink.sock");
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen_unix(path, NULL, &l, &err), RILL_OK);
    struct stat sb;
    ck_assert_int_eq(lstat(path, &sb), 0);
    ck_assert_msg(S_ISSOCK(sb.st_mode), "%s is not a socket", path);
    /* Accepted streams outlive the listener. */
    rill_stream *c = NULL, *s = NULL;
    ck_assert_int_eq(rill_unix_connect(path, NULL, &c, &err), RILL_OK);
    ck_assert_int_eq(rill_accept(l, 2000, &s, &err), RILL_OK);
    rill_listener_free(l);
    ck_assert_msg(!file_exists(path), "rill_listener_free left %s", path);
    rt_transfer(c, s, 1000, 2);
    rt_transfer(s, c, 1000, 3);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    /* Connecting now fails with "no such file". */
    ck_assert_int_eq(rill_unix_connect(path, NULL, &c, &err), RILL_E_CONNECT);
    rill_listener_free(NULL);
}
END_TEST

/* Invalid paths and arguments. */
static const struct {
    const char *path;
    int null_out;
    const char *needle;
} bad_paths[] = {
    { NULL, 0, "path is NULL" },
    { "", 0, "empty" },
    { "@", 0, "\"@\"" },
    { "/tmp/x", 1, "out is NULL" },
};

START_TEST(test_invalid)
{
    int fds0 = rt_count_fds();
    rill_error err;
    rill_stream *s = NULL;
    rill_listener *l = NULL;
    char toolong[300];
    memset(toolong, 'x', sizeof toolong - 1);
    toolong[0] = '/';
    toolong[sizeof toolong - 1] = '\0';

    const char *path = _i < 4 ? bad_paths[_i].path : toolong;
    int null_out = _i < 4 ? bad_paths[_i].null_out : 0;
    const char *needle = _i < 4 ? bad_paths[_i].needle : "longer than";
    if (_i == 5) { /* an abstract name too long */
        toolong[0] = '@';
    }

    memset(&err, 0, sizeof err);
    rill_status st = rill_unix_connect(path, NULL, null_out ? NULL : &s, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, needle);
    ck_assert_msg(strncmp(err.msg, "unix: ", 6) == 0, "message lacks the layer: %s", err.msg);
    ck_assert_ptr_null(s);
    memset(&err, 0, sizeof err);
    st = rill_listen_unix(path, NULL, null_out ? NULL : &l, &err);
    rt_assert_err(&err, st, RILL_E_INVALID, needle);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_read_timeout)
{
    char name[128];
    abstract_name(name, sizeof name, "timeout");
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.read_timeout_ms = 150;
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen_unix(name, NULL, &l, &err), RILL_OK);
    rill_stream *c = NULL, *s = NULL;
    ck_assert_int_eq(rill_unix_connect(name, &o, &c, &err), RILL_OK);
    ck_assert_int_eq(rill_accept(l, 2000, &s, &err), RILL_OK);
    rill_listener_free(l);
    char buf[4];
    size_t n = 0;
    int64_t t0 = rt_now_us();
    rill_status st = rill_read(c, buf, sizeof buf, &n);
    rt_assert_error(c, st, RILL_E_TIMEOUT, "unix: read timed out after 150 ms");
    rt_assert_elapsed(t0, 150, 2150);
    ck_assert_int_eq(rill_set_timeouts(c, 0, 0), RILL_OK);
    ck_assert_int_eq(rill_read(c, buf, sizeof buf, &n), RILL_WANT_READ);
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(c, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, rill_fd(c));
    ck_assert(ev & POLLIN);
    ck_assert_int_eq(rill_write_str(s, "hi", NULL), RILL_OK);
    struct pollfd pf = { .fd = fd, .events = ev };
    ck_assert_int_eq(poll(&pf, 1, 2000), 1);
    ck_assert_int_eq(rill_read(c, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * A listener whose backlog is full and who does not accept: connect waits under its deadline
 * and fails with RILL_E_TIMEOUT (a connect deadline that loopback can exercise reliably); once
 * the server accepts, a connect with a longer deadline gets through.
 */
struct late_accept {
    rill_listener *l;
    int expect; /* connections to accept */
    int accepted;
};

static void *accept_later(void *arg)
{
    struct late_accept *la = arg;
    poll(NULL, 0, 200);
    for (int i = 0; i < la->expect; i++) {
        rill_stream *s = NULL;
        rill_error err;
        if (rill_accept(la->l, 5000, &s, &err) == RILL_OK) {
            la->accepted++;
            rill_close(s);
        }
    }
    return NULL;
}

START_TEST(test_connect_timeout_full_backlog)
{
    char name[128];
    if (_i == 0)
        path_in_dir(name, sizeof name, "backlog.sock");
    else
        abstract_name(name, sizeof name, "backlog");
    int fds0 = rt_count_fds();
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.backlog = 1;
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen_unix(name, &lo, &l, &err), RILL_OK);

    /* Fill the backlog with raw non-blocking clients until the kernel answers EAGAIN. */
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    socklen_t sl = (socklen_t)sizeof sun;
    ck_assert_uint_lt(strlen(name), sizeof sun.sun_path);
    memcpy(sun.sun_path, name, strlen(name));
    if (name[0] == '@') {
        sun.sun_path[0] = '\0';
        sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
    }
    int fill[64];
    int nfill = 0, full = 0;
    while (nfill < 64 && !full) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        if (connect(fd, (struct sockaddr *)&sun, sl) == 0) {
            fill[nfill++] = fd;
        } else {
            ck_assert_msg(errno == EAGAIN, "filling the backlog: %s", strerror(errno));
            close(fd);
            full = 1;
        }
    }
    ck_assert_msg(full, "backlog never filled");

    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 300;
    rill_stream *c = NULL;
    memset(&err, 0, sizeof err);
    rt_watchdog(20, "unix connect to a full backlog");
    int64_t t0 = rt_now_us();
    rill_status st = rill_unix_connect(name, &o, &c, &err);
    int64_t elapsed_us = rt_now_us() - t0;
    if (st != RILL_E_TIMEOUT) { /* clean up before failing, so no-fork runs leak nothing */
        rill_close(st == RILL_OK ? c : NULL);
        for (int i = 0; i < nfill; i++)
            close(fill[i]);
        rill_listener_free(l);
    }
    rt_assert_err(&err, st, RILL_E_TIMEOUT, "timed out");
    ck_assert_msg(elapsed_us >= 300000 && elapsed_us <= 2300000, "took %lld us, not 300 ms",
                  (long long)elapsed_us);
    ck_assert_msg(strstr(err.msg, name) != NULL, "message \"%s\" lacks \"%s\"", err.msg, name);
    ck_assert_ptr_null(c);

    /* The server starts accepting after 200 ms: a connect with a 5 s deadline gets in. */
    struct late_accept la = { l, nfill + 1, 0 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, accept_later, &la), 0);
    o.timeout_ms = 5000;
    st = rill_unix_connect(name, &o, &c, &err);
    ck_assert_msg(st == RILL_OK, "connect once the server accepts: %s", err.msg);
    pthread_join(t, NULL);
    rt_watchdog(0, NULL);
    ck_assert_int_eq(la.accepted, nfill + 1);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_cycles_no_leak)
{
    char path[128];
    path_in_dir(path, sizeof path, "cycles.sock");
    int fds0 = rt_count_fds();
    rill_listener *l = NULL;
    rill_error err;
    ck_assert_int_eq(rill_listen_unix(path, NULL, &l, &err), RILL_OK);
    for (int i = 0; i < 2000; i++) {
        rill_stream *c = NULL, *s = NULL;
        ck_assert_msg(rill_unix_connect(path, NULL, &c, &err) == RILL_OK, "%d: %s", i, err.msg);
        ck_assert_msg(rill_accept(l, 2000, &s, &err) == RILL_OK, "%d: %s", i, err.msg);
        ck_assert_int_eq(rill_close(c), RILL_OK);
        ck_assert_int_eq(rill_close(s), RILL_OK);
    }
    for (int i = 0; i < 500; i++) {
        rill_stream *c = NULL;
        char missing[128];
        path_in_dir(missing, sizeof missing, "missing.sock");
        ck_assert_int_eq(rill_unix_connect(missing, NULL, &c, &err), RILL_E_CONNECT);
    }
    rill_listener_free(l);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("unix");
    TCase *tc = tcase_create("unix");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_echo, 0, 2);
    tcase_add_loop_test(tc, test_describe, 0, 2);
    tcase_add_test(tc, test_path_length_limit);
    tcase_add_test(tc, test_connect_missing);
    tcase_add_loop_test(tc, test_listen_existing, 0, 3);
    tcase_add_test(tc, test_abstract_in_use);
    tcase_add_test(tc, test_listener_free_unlinks);
    tcase_add_loop_test(tc, test_invalid, 0, 6);
    tcase_add_test(tc, test_read_timeout);
    tcase_add_loop_test(tc, test_connect_timeout_full_backlog, 0, 2);
    tcase_add_test(tc, test_cycles_no_leak);
    suite_add_tcase(s, tc);
    return s;
}
