/* SPDX-License-Identifier: MIT */
/*
 * The event-loop server (examples/epoll_server.c, built here as tests/epoll_server with this
 * build's sanitizers) driven by its load client (examples/line_clients.c, tests/line_clients)
 * and by clients in this process: thousands of concurrent TLS clients with checksummed lines,
 * slow-loris peers cut at the handshake deadline without delaying anyone else, idle deadlines,
 * graceful shutdown that loses no acknowledged line, and the errors a user meets. The server
 * reports its descriptors between runs (SIGUSR1) and exits 0 only without leaks under ASan.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "certs.h"
#include "support.h"

typedef struct proc {
    pid_t pid;
    char out[160], err[160]; /* paths of its stdout and stderr */
} proc;

static char workdir[32];

static void setup(void)
{
    rt_mkdtemp(workdir, sizeof workdir);
}

static void teardown(void)
{
    rt_watchdog(0, NULL);
    rt_rmdir(workdir);
}

static const char *binary(const char *name)
{
    static char path[2][4096];
    static int which;
    const char *dir = getenv("RILL_TEST_BINARY_DIR");
    ck_assert_msg(dir != NULL, "RILL_TEST_BINARY_DIR is not set (run through ctest)");
    char *p = path[which++ % 2];
    snprintf(p, sizeof path[0], "%s/tests/%s", dir, name);
    ck_assert_msg(access(p, X_OK) == 0, "%s is not built", p);
    return p;
}

/* Start @p argv (NULL-terminated; argv[0] a name in tests/) with output to files. */
static proc spawn(const char *tag, const char *const *argv)
{
    proc p;
    snprintf(p.out, sizeof p.out, "%s/%s.out", workdir, tag);
    snprintf(p.err, sizeof p.err, "%s/%s.err", workdir, tag);
    const char *path = binary(argv[0]);
    p.pid = fork();
    ck_assert(p.pid >= 0);
    if (p.pid == 0) {
        int o = open(p.out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(p.err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(126);
        char *const *args; /* execv's type; it does not change them */
        memcpy(&args, &argv, sizeof args);
        execv(path, args);
        _exit(127);
    }
    return p;
}

/* The contents of file @p path, in one of four static buffers used in turn (so that failing
 * assertions, which leave without cleaning up, leave nothing allocated). */
static char *slurp(const char *path)
{
    static char bufs[4][1 << 20];
    static int next;
    char *buf = bufs[next++ % 4];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, sizeof bufs[0] - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Wait until the output file @p path has a line starting with @p prefix; returns that line's
 * rest (static) or fails after @p timeout_ms. */
static const char *wait_line(const proc *p, const char *prefix, int timeout_ms)
{
    static char rest[512];
    int64_t end = rill_now_ms() + timeout_ms;
    for (;;) {
        char *all = slurp(p->out);
        char *hit = NULL;
        for (char *l = all; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
            if (strncmp(l, prefix, strlen(prefix)) == 0)
                hit = l; /* the last one */
        }
        if (hit) {
            hit += strlen(prefix);
            size_t n = strcspn(hit, "\n");
            snprintf(rest, sizeof rest, "%.*s", (int)n, hit);
            return rest;
        }
        if (rill_now_ms() > end) {
            char *err = slurp(p->err);
            ck_abort_msg("no line \"%s\" from pid %d within %d ms; stderr: %.2000s", prefix,
                         (int)p->pid, timeout_ms, err);
        }
        struct timespec ts = { 0, 10L * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

/* Wait for @p p to exit (at most @p timeout_ms; then kill it and fail); returns its status. */
static int wait_exit(proc *p, int timeout_ms)
{
    int64_t end = rill_now_ms() + timeout_ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        ck_assert(r >= 0);
        if (r == p->pid) {
            p->pid = 0;
            ck_assert_msg(WIFEXITED(st), "pid killed by signal %d", WTERMSIG(st));
            return WEXITSTATUS(st);
        }
        if (rill_now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            char *err = slurp(p->err);
            ck_abort_msg("pid %d did not exit within %d ms; stderr: %.2000s", (int)p->pid,
                         timeout_ms, err);
        }
        struct timespec ts = { 0, 5L * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

static void assert_exit(proc *p, int timeout_ms, int want)
{
    int got = wait_exit(p, timeout_ms);
    if (got != want) {
        char *out = slurp(p->out), *err = slurp(p->err);
        ck_abort_msg("exit status %d, expected %d; stdout: %.1500s; stderr: %.3000s", got, want,
                     out, err);
    }
}

static void assert_output(const proc *p, const char *which, const char *needle)
{
    char *all = slurp(which[0] == 'o' ? p->out : p->err);
    ck_assert_msg(strstr(all, needle) != NULL, "std%s lacks \"%s\": %.3000s", which, needle, all);
}

static uint16_t server_port;

static proc server_start(const char *handshake_ms, const char *idle_ms, const char *grace_ms)
{
    const rt_certs *c = rt_certs_get();
    const char *argv[] = { "epoll_server", "--cert",         c->good.chain, "--key",
                           c->good.key,    "--handshake-ms", handshake_ms,  "--idle-ms",
                           idle_ms,        "--grace-ms",     grace_ms,      NULL };
    proc p = spawn("server", argv);
    const char *where = wait_line(&p, "epoll_server: listening on 127.0.0.1:", 10000);
    server_port = (uint16_t)strtol(where, NULL, 10);
    ck_assert_int_gt(server_port, 0);
    return p;
}

/* The descriptors the server has open once it has @p open connections, none of them in its
 * handshake (its SIGUSR1 snapshot, asked again until then, for at most 10 s). */
static int server_fds(proc *p, int open)
{
    char want[64];
    snprintf(want, sizeof want, "stats: %d connections open, 0 in handshake, ", open);
    int64_t end = rill_now_ms() + 10000;
    char last[256] = "";
    for (;;) {
        char *before = slurp(p->out);
        size_t n0 = strlen(before);
        ck_assert_int_eq(kill(p->pid, SIGUSR1), 0);
        for (;;) {
            char *all = slurp(p->out);
            const char *line = strstr(all + n0, "epoll_server: stats: ");
            if (line && strchr(line, '\n')) {
                snprintf(last, sizeof last, "%.*s", (int)strcspn(line, "\n"), line);
                break;
            }
            ck_assert_msg(rill_now_ms() < end, "no stats after SIGUSR1");
            struct timespec ts = { 0, 5L * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        if (strstr(last, want)) {
            const char *d = strstr(last, " lines acknowledged, ");
            ck_assert_ptr_nonnull(d);
            return (int)strtol(d + strlen(" lines acknowledged, "), NULL, 10);
        }
        ck_assert_msg(rill_now_ms() < end, "stats \"%s\" never said \"%s\"", last, want);
        struct timespec ts = { 0, 50L * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

static proc clients(const char *tag, const char *const *extra)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)server_port);
    const char *argv[32] = { "line_clients", "--cafile", rt_certs_get()->ca };
    size_t n = 3;
    for (size_t i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n++] = "127.0.0.1";
    argv[n++] = port;
    argv[n] = NULL;
    return spawn(tag, argv);
}

/* 2,000 clients at once, five checksummed lines each; then the server's descriptors are back
 * where they were, and it stops cleanly (ASan: no leak) with every connection accounted for. */
START_TEST(test_many_clients)
{
    rt_watchdog(120, "test_many_clients");
    int fds0 = rt_count_fds();
    proc sv = server_start("30000", "30000", "2000");
    int sfds0 = server_fds(&sv, 0);
    const char *extra[] = { "--count", "2000", "--lines", "5", NULL };
    proc cl = clients("clients", extra);
    assert_exit(&cl, 90000, 0);
    assert_output(&cl, "out", "line_clients: 2000/2000 ok in ");
    assert_output(&cl, "out", ", 10000 lines acknowledged, ");
    ck_assert_int_eq(server_fds(&sv, 0), sfds0);
    ck_assert_int_eq(kill(sv.pid, SIGTERM), 0);
    assert_exit(&sv, 10000, 0);
    assert_output(&sv, "out",
                  "epoll_server: stopped: 2000 connections (2000 closed by the client, 0 idle, 0 "
                  "handshake timeouts, 0 cut at shutdown, 0 errors), 10000 lines acknowledged");
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* Fifty peers that send three bytes of a handshake and stall: each is cut at the handshake
 * deadline, while 300 ordinary clients that came after them are served meanwhile, each in far
 * less than that deadline. */
START_TEST(test_slowloris)
{
    rt_watchdog(60, "test_slowloris");
    int fds0 = rt_count_fds();
    proc sv = server_start("2500", "30000", "2000");
    const char *extra[] = { "--count", "300", "--window", "50", "--loris", "50", NULL };
    proc cl = clients("clients", extra);
    assert_exit(&cl, 30000, 0);
    const char *res = wait_line(&cl, "line_clients: 300/300 ok in ", 1);
    const char *slow = strstr(res, "slowest ");
    ck_assert_ptr_nonnull(slow);
    int slowest = (int)strtol(slow + 8, NULL, 10);
    ck_assert_msg(slowest < 2500, "a client took %d ms: it waited for the slow peers", slowest);
    const char *cut = wait_line(&cl, "line_clients: loris: 50/50 cut after ", 1);
    int lo = (int)strtol(cut, NULL, 10), hi = (int)strtol(strstr(cut, "..") + 2, NULL, 10);
    ck_assert_msg(lo >= 2400 && hi < 10000, "slow peers cut after %d..%d ms, deadline 2500", lo,
                  hi);
    ck_assert_int_eq(kill(sv.pid, SIGTERM), 0);
    assert_exit(&sv, 10000, 0);
    assert_output(&sv, "out", "(300 closed by the client, 0 idle, 50 handshake timeouts, ");
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

static long after(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "\"%s\" lacks \"%s\"", text, key);
    return strtol(p + strlen(key), NULL, 10);
}

/* SIGTERM while 300 clients send lines as fast as they are answered: the listener closes at
 * once (a new connect is refused), the clients go on until the grace period ends, then each
 * gets close_notify; every answer the server wrote reached its client. */
START_TEST(test_graceful_shutdown)
{
    rt_watchdog(60, "test_graceful_shutdown");
    int fds0 = rt_count_fds();
    proc sv = server_start("30000", "30000", "1000");
    const char *extra[] = { "--count", "300", "--until-closed", NULL };
    proc cl = clients("clients", extra);
    /* All connected and past their handshakes: one cut in its handshake is no orderly end. */
    (void)server_fds(&sv, 300);
    int64_t t0 = rill_now_ms();
    ck_assert_int_eq(kill(sv.pid, SIGTERM), 0);
    wait_line(&sv, "epoll_server: stopping: ", 5000);
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_tcp_connect_addr("127.0.0.1", server_port, NULL, &s, &err);
    rt_assert_err(&err, st, RILL_E_REFUSED, "connection refused");
    assert_exit(&cl, 20000, 0);
    assert_exit(&sv, 20000, 0);
    int64_t took = rill_now_ms() - t0;
    ck_assert_msg(took >= 900 && took < 15000, "shutdown took %lld ms with grace 1000",
                  (long long)took);
    const char *cres = wait_line(&cl, "line_clients: 300/300 ok in ", 1);
    long client_acks = after(cres, " ms, ");
    const char *sres = wait_line(&sv, "epoll_server: stopped: ", 1);
    ck_assert_msg(strstr(sres, "(0 closed by the client, 0 idle, 0 handshake timeouts, 300 cut "
                               "at shutdown, 0 errors)") != NULL,
                  "server: %s", sres);
    long server_acks = after(sres, "0 errors), ");
    ck_assert_msg(client_acks == server_acks && client_acks > 300,
                  "clients received %ld answers, the server wrote %ld", client_acks, server_acks);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* A client of our own that goes quiet is ended at the idle deadline with close_notify (a
 * clean RILL_EOF, not a reset); one that sends an overlong line is told so and closed. */
START_TEST(test_idle_and_long_line)
{
    rt_watchdog(60, "test_idle_and_long_line");
    int fds0 = rt_count_fds();
    proc sv = server_start("5000", "300", "1000");
    rill_tls_config *cfg = NULL;
    rill_error err;
    ck_assert_int_eq(rill_tls_config_new(&cfg, &err), RILL_OK);
    ck_assert_int_eq(rill_tls_config_set_ca_file(cfg, rt_certs_get()->ca, &err), RILL_OK);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.tls = cfg;
    o.read_timeout_ms = 10000;
    o.write_timeout_ms = 10000;
    for (int round = 0; round < 2; round++) {
        rill_stream *tls = NULL, *s = NULL;
        rill_status st = rill_connect(NULL, "localhost", server_port, &o, &tls, &err);
        ck_assert_msg(st == RILL_OK, "connect: %s", err.msg);
        ck_assert_int_eq(rill_lines_new(tls, 4096, RILL_EOL_LF, 0, &s), RILL_OK);
        const char *line = NULL;
        size_t len = 0;
        if (round == 0) {
            ck_assert_int_eq(rill_write_str(s, "hello\n", NULL), RILL_OK);
            ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
            ck_assert_str_eq(line, "1 a430d84680aabd0b"); /* FNV-1a 64 of "hello" */
            int64_t t0 = rt_now_us();
            ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_EOF);
            rt_assert_elapsed(t0, 250, 5000);
        } else {
            char big[1500];
            memset(big, 'x', sizeof big);
            big[sizeof big - 1] = '\n';
            ck_assert_int_eq(rill_write_all(s, big, sizeof big, NULL), RILL_OK);
            ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_OK);
            ck_assert_str_eq(line, "error: line too long");
            ck_assert_int_eq(rill_read_line(s, &line, &len), RILL_EOF);
        }
        ck_assert_int_eq(rill_close(s), RILL_OK);
    }
    rill_tls_config_free(cfg);
    ck_assert_int_eq(kill(sv.pid, SIGTERM), 0);
    assert_exit(&sv, 10000, 0);
    assert_output(&sv, "out",
                  "(0 closed by the client, 1 idle, 0 handshake timeouts, 0 cut at "
                  "shutdown, 1 errors), 1 lines acknowledged");
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* What a user meets: a key file that does not exist, a client that does not trust the
 * server's CA (it gets the verify reason, the server counts a handshake error). */
START_TEST(test_errors)
{
    rt_watchdog(60, "test_errors");
    int fds0 = rt_count_fds();
    char missing[96];
    snprintf(missing, sizeof missing, "%s/missing.key", workdir);
    const char *argv[] = { "epoll_server", "--cert", rt_certs_get()->good.chain,
                           "--key",        missing,  NULL };
    proc bad = spawn("bad", argv);
    assert_exit(&bad, 10000, 1);
    assert_output(&bad, "err", "epoll_server: tls: cannot open private key");
    assert_output(&bad, "err", "missing.key");

    proc sv = server_start("5000", "5000", "1000");
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)server_port);
    const char *cargv[] = { "line_clients", "--count", "3", "127.0.0.1", port, NULL };
    proc cl = spawn("untrusting", cargv);
    assert_exit(&cl, 20000, 1);
    assert_output(&cl, "err", "line_clients: connection 0: lines: tls: certificate verify failed");
    assert_output(&cl, "out", "line_clients: 0/3 ok in ");
    ck_assert_int_eq(kill(sv.pid, SIGTERM), 0);
    assert_exit(&sv, 10000, 0);
    assert_output(&sv, "out", "0 handshake timeouts, 0 cut at shutdown, 3 errors)");

    const char *uargv[] = { "epoll_server", "--cert", "x", NULL };
    proc u = spawn("usage", uargv);
    assert_exit(&u, 10000, 2);
    assert_output(&u, "err", "usage: epoll_server --cert");
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

Suite *rill_test_suite(void)
{
    char why[256];
    rt_certs_prepare(why, sizeof why);
    Suite *s = suite_create("evloop");
    TCase *tc = tcase_create("evloop");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_many_clients);
    tcase_add_test(tc, test_slowloris);
    tcase_add_test(tc, test_graceful_shutdown);
    tcase_add_test(tc, test_idle_and_long_line);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}
