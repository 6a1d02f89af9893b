/* SPDX-License-Identifier: MIT */
/*
 * The fd transport (src/transport/fd.c, fdio.c): pipes, socketpairs and files wrapped as
 * streams; ownership of the descriptors; SIGPIPE; deadlines on descriptors whose flags rill must
 * not change.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

static void teardown(void)
{
    rt_watchdog(0, NULL);
}

static void make_pipe(int p[2])
{
    ck_assert_msg(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
}

static rill_stream *fd_new_ok(int rfd, int wfd, unsigned flags)
{
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_fd_new(rfd, wfd, flags, &s, &err);
    ck_assert_msg(st == RILL_OK, "rill_fd_new(%d, %d): %s", rfd, wfd, err.msg);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void raw_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t r = write(fd, p, len);
        ck_assert_msg(r > 0, "write: %s", strerror(errno));
        p += r;
        len -= (size_t)r;
    }
}

static void raw_read_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        ck_assert_msg(r > 0, "read: %zd (%s)", r, strerror(errno));
        p += r;
        len -= (size_t)r;
    }
}

/* Everything readable from @p fd right now (it must be a pipe or socket). */
static size_t raw_drain(int fd)
{
    char buf[65536];
    size_t total = 0;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
            return total;
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0)
            return total;
        total += (size_t)r;
    }
}

/* Timeout modes of a stream: blocking, non-blocking, and a deadline. */
static const int modes[] = { RILL_TIMEOUT_NONE, 0, 200 };

/* ================================================================================================
 * Wrapping
 */

START_TEST(test_pipe_pair)
{
    int fds0 = rt_count_fds();
    int in[2], out[2];
    make_pipe(in);
    make_pipe(out);
    int in_flags = fcntl(in[0], F_GETFL), out_flags = fcntl(out[1], F_GETFL);
    rill_stream *s = fd_new_ok(in[0], out[1], 0);
    ck_assert_int_eq(rill_set_timeouts(s, modes[_i], modes[_i]), RILL_OK);
    ck_assert_str_eq(rill_kind(s), RILL_LAYER_FD);
    ck_assert_int_eq(rill_fd(s), in[0]);

    /* Bytes from the pipe's writer come out of the stream... */
    raw_write_all(in[1], "hello pipe", 10);
    char buf[64];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(s, buf, 10, &n), RILL_OK);
    ck_assert_mem_eq(buf, "hello pipe", 10);
    /* ...a short read returns what is there... */
    raw_write_all(in[1], "abc", 3);
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(buf, "abc", 3);
    /* ...and bytes written to the stream go to the other pipe. */
    ck_assert_int_eq(rill_write_str(s, "reply", NULL), RILL_OK);
    ck_assert_int_eq(rill_flush(s), RILL_OK);
    raw_read_exact(out[0], buf, 5);
    ck_assert_mem_eq(buf, "reply", 5);

    char desc[64];
    size_t dl = rill_describe(s, desc, sizeof desc);
    ck_assert_uint_eq(dl, strlen(desc));
    ck_assert_msg(strncmp(desc, "fd(", 3) == 0, "describe: %s", desc);
    char r_fd[16], w_fd[16];
    snprintf(r_fd, sizeof r_fd, "%d", in[0]);
    snprintf(w_fd, sizeof w_fd, "%d", out[1]);
    ck_assert_msg(strstr(desc, r_fd) && strstr(desc, w_fd), "describe lacks fds: %s", desc);

    /* Default: borrowed descriptors stay open and usable after rill_close, flags untouched. */
    ck_assert_int_eq(fcntl(in[0], F_GETFL), in_flags);
    ck_assert_int_eq(fcntl(out[1], F_GETFL), out_flags);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(rt_fd_is_open(in[i]) && rt_fd_is_open(out[i]), "a pipe end was closed");
    }
    raw_write_all(out[1], "z", 1);
    raw_read_exact(out[0], buf, 1);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_one_way)
{
    int p[2];
    make_pipe(p);
    size_t n = 7;
    char buf[8];

    rill_stream *ro = fd_new_ok(p[0], -1, 0);
    ck_assert_int_eq(rill_fd(ro), p[0]);
    rill_status st = rill_write(ro, "x", 1, &n);
    rt_assert_error(ro, st, RILL_E_UNSUPPORTED, "read-only");
    ck_assert_uint_eq(n, 0);
    st = rill_write_all(ro, "xy", 2, &n);
    rt_assert_error(ro, st, RILL_E_UNSUPPORTED, "read-only");
    raw_write_all(p[1], "in", 2);
    ck_assert_int_eq(rill_read_full(ro, buf, 2, &n), RILL_OK);
    ck_assert_mem_eq(buf, "in", 2);
    ck_assert_int_eq(rill_close(ro), RILL_OK);

    rill_stream *wo = fd_new_ok(-1, p[1], 0);
    ck_assert_int_eq(rill_fd(wo), p[1]);
    st = rill_read(wo, buf, sizeof buf, &n);
    rt_assert_error(wo, st, RILL_E_UNSUPPORTED, "write-only");
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_set_timeouts(wo, 100, 100), RILL_OK);
    st = rill_read(wo, buf, sizeof buf, &n);
    rt_assert_error(wo, st, RILL_E_UNSUPPORTED, "write-only");
    ck_assert_int_eq(rill_write_str(wo, "out", NULL), RILL_OK);
    raw_read_exact(p[0], buf, 3);
    ck_assert_mem_eq(buf, "out", 3);
    /* Poll info of a one-way stream names the one descriptor it has. */
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(wo, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, p[1]);
    ck_assert_int_eq(rill_close(wo), RILL_OK);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_own_closes)
{
    int fds0 = rt_count_fds();
    int p[2], sv[2];
    make_pipe(p);
    rill_stream *s = fd_new_ok(p[0], p[1], RILL_FD_OWN);
    rt_transfer(s, s, 1000, 3); /* a pipe looped back on itself */
    char desc[64];
    rill_describe(s, desc, sizeof desc);
    ck_assert_ptr_nonnull(strstr(desc, "fd"));
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert_msg(!rt_fd_is_open(p[0]) && !rt_fd_is_open(p[1]), "RILL_FD_OWN left a pipe open");
    ck_assert_int_eq(rt_count_fds(), fds0);

    /* One descriptor for both directions is closed once. */
    rt_socketpair(sv);
    s = fd_new_ok(sv[0], sv[0], RILL_FD_OWN);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert(!rt_fd_is_open(sv[0]));
    ck_assert(rt_fd_is_open(sv[1]));
    close(sv[1]);

    /* One-way owned streams close their one descriptor. */
    make_pipe(p);
    s = fd_new_ok(p[0], -1, RILL_FD_OWN);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert(!rt_fd_is_open(p[0]));
    ck_assert(rt_fd_is_open(p[1]));
    close(p[1]);
    ck_assert_int_eq(rt_count_fds(), fds0);

    /* Many wrap/close cycles leak nothing. */
    for (int i = 0; i < 300; i++) {
        make_pipe(p);
        s = fd_new_ok(p[0], p[1], RILL_FD_OWN);
        ck_assert_int_eq(rill_close(s), RILL_OK);
    }
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

/* Invalid descriptors and arguments. -2 stands for "a descriptor that is not open". */
static const struct {
    int rfd, wfd;
    int null_out;
    const char *needle; /* followed by the closed descriptor's number when it ends in ' ' */
} invalid_cases[] = {
    { -1, -1, 0, "both descriptors are -1" },
    { -2, -1, 0, "read descriptor " },
    { -1, -2, 0, "write descriptor " },
    { 0, -2, 0, "write descriptor " }, /* 0: a valid pipe end */
    { -2, 1, 0, "read descriptor " },  /* 1: a valid pipe end */
    { 0, 1, 1, "out is NULL" },
    { -5, 1, 0, "-5" },
    { 0, -7, 0, "-7" },
};

START_TEST(test_invalid)
{
    int fds0 = rt_count_fds();
    int p[2];
    make_pipe(p);
    int closed = dup(p[0]);
    ck_assert_int_ge(closed, 0);
    close(closed);
    ck_assert(!rt_fd_is_open(closed));

    int map[3] = { p[0], p[1], closed };
    int rfd = invalid_cases[_i].rfd, wfd = invalid_cases[_i].wfd;
    rfd = rfd == -2 ? closed : rfd == 0 ? map[0] : rfd == 1 ? map[1] : rfd;
    wfd = wfd == -2 ? closed : wfd == 0 ? map[0] : wfd == 1 ? map[1] : wfd;
    char needle[64];
    const char *base = invalid_cases[_i].needle;
    if (base[strlen(base) - 1] == ' ')
        snprintf(needle, sizeof needle, "%s%d", base, closed);
    else
        snprintf(needle, sizeof needle, "%s", base);

    rill_stream *sentinel = (rill_stream *)(uintptr_t)0x4242;
    rill_stream *out = sentinel;
    rill_error err;
    memset(&err, 0, sizeof err);
    rill_status st = rill_fd_new(rfd, wfd, 0, invalid_cases[_i].null_out ? NULL : &out, &err);
    if (st == RILL_OK) { /* wrong, but do not leak what was made */
        rill_close(out);
        out = sentinel;
    }
    rt_assert_err(&err, st, RILL_E_INVALID, needle);
    /* Same with RILL_FD_OWN. */
    st = rill_fd_new(rfd, wfd, RILL_FD_OWN, invalid_cases[_i].null_out ? NULL : &out, &err);
    ck_assert_int_eq(st, RILL_E_INVALID);
    ck_assert_msg(strncmp(err.msg, "fd: ", 4) == 0, "message \"%s\" lacks the layer", err.msg);
    ck_assert_ptr_eq(out, sentinel);
    /* Failure takes nothing: the valid descriptor stays open even with RILL_FD_OWN. */
    ck_assert(rt_fd_is_open(p[0]) && rt_fd_is_open(p[1]));
    /* A NULL rill_error is fine. */
    ck_assert_int_eq(rill_fd_new(rfd, wfd, 0, invalid_cases[_i].null_out ? NULL : &out, NULL),
                     RILL_E_INVALID);
    close(p[0]);
    close(p[1]);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_socketpair)
{
    int fds0 = rt_count_fds();
    int sv[2];
    rt_socketpair(sv);
    rill_stream *s = fd_new_ok(sv[0], sv[0], 0);
    ck_assert_int_eq(rill_set_timeouts(s, modes[_i], modes[_i]), RILL_OK);
    ck_assert_int_eq(rill_fd(s), sv[0]);
    char desc[64], want[32];
    rill_describe(s, desc, sizeof desc);
    snprintf(want, sizeof want, "fd(%d", sv[0]);
    ck_assert_msg(strncmp(desc, want, strlen(want)) == 0, "describe: %s", desc);

    rill_stream *peer = fd_new_ok(sv[1], sv[1], 0);
    ck_assert_int_eq(rill_set_timeouts(peer, 5000, 5000), RILL_OK);
    for (int i = 0; i < 4; i++) {
        rt_transfer(peer, s, 20000, 100 + (uint64_t)i);
        if (modes[_i] == 0) {
            /* Non-blocking writes may accept part; check with a blocking peer instead. */
            ck_assert_int_eq(rill_set_timeouts(s, RILL_TIMEOUT_NONE, 5000), RILL_OK);
            rt_transfer(s, peer, 20000, 200 + (uint64_t)i);
            ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
        } else {
            rt_transfer(s, peer, 20000, 200 + (uint64_t)i);
        }
    }

    /* Half-close: the peer sees EOF and can still answer. */
    ck_assert_int_eq(rill_set_timeouts(s, 5000, 5000), RILL_OK);
    ck_assert_int_eq(rill_shutdown(s), RILL_OK);
    char buf[16];
    size_t n = 0;
    ck_assert_int_eq(rill_read(peer, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_write_str(peer, "late", NULL), RILL_OK);
    ck_assert_int_eq(rill_read_full(s, buf, 4, &n), RILL_OK);
    ck_assert_mem_eq(buf, "late", 4);
    rill_status st = rill_write(s, "x", 1, &n);
    rt_assert_error(s, st, RILL_E_CLOSED, "shutdown");

    /* The peer closes: EOF, repeatedly. */
    ck_assert_int_eq(rill_close(peer), RILL_OK);
    close(sv[1]);
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(sv[0]);
    ck_assert_int_eq(rt_count_fds(), fds0);
}
END_TEST

START_TEST(test_regular_file)
{
    char path[] = "/tmp/rill-fd-file-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    raw_write_all(fd, "line one\nline two\n", 18);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    rill_stream *s = fd_new_ok(fd, fd, RILL_FD_OWN);
    ck_assert_int_eq(rill_set_timeouts(s, modes[_i], modes[_i]), RILL_OK);
    char buf[64];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(s, buf, 18, &n), RILL_OK);
    ck_assert_mem_eq(buf, "line one\nline two\n", 18);
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_int_eq(rill_write_str(s, "appended", NULL), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    ck_assert(!rt_fd_is_open(fd));
}
END_TEST

/* ================================================================================================
 * EOF, SIGPIPE
 */

START_TEST(test_eof)
{
    int p[2];
    make_pipe(p);
    rill_stream *s = fd_new_ok(p[0], -1, RILL_FD_OWN);
    ck_assert_int_eq(rill_set_timeouts(s, modes[_i], modes[_i]), RILL_OK);
    raw_write_all(p[1], "last", 4);
    close(p[1]);
    char buf[16];
    size_t n = 0;
    if (modes[_i] == 0) {
        struct pollfd pf = { .fd = p[0], .events = POLLIN };
        ck_assert_int_eq(poll(&pf, 1, 1000), 1);
    }
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(buf, "last", 4);
    for (int i = 0; i < 3; i++) {
        n = 99;
        ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_EOF);
        ck_assert_uint_eq(n, 0);
    }
    ck_assert_int_eq(rill_read_full(s, buf, 2, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/*
 * Writing to a pipe (or socket) whose reader is gone, with SIGPIPE at its default disposition:
 * the process survives, the write fails with RILL_E_CLOSED "broken pipe", and rill leaves the
 * signal mask, the disposition and the pending set as they were.
 */
enum { SIGPIPE_UNBLOCKED, SIGPIPE_BLOCKED, SIGPIPE_ALREADY_PENDING };

struct sigpipe_case {
    int timeout;
    int mask;
    int socket; /* a socketpair instead of a pipe */
};

static const struct sigpipe_case sigpipe_cases[] = {
    { RILL_TIMEOUT_NONE, SIGPIPE_UNBLOCKED, 0 },
    { 0, SIGPIPE_UNBLOCKED, 0 },
    { 200, SIGPIPE_UNBLOCKED, 0 },
    { RILL_TIMEOUT_NONE, SIGPIPE_BLOCKED, 0 },
    { 200, SIGPIPE_BLOCKED, 0 },
    { RILL_TIMEOUT_NONE, SIGPIPE_ALREADY_PENDING, 0 },
    { RILL_TIMEOUT_NONE, SIGPIPE_UNBLOCKED, 1 },
    { 200, SIGPIPE_UNBLOCKED, 1 },
    { RILL_TIMEOUT_NONE, SIGPIPE_BLOCKED, 1 },
};

static void sigpipe_child(rt_child_report *rep, void *arg)
{
    const struct sigpipe_case *c = arg;
    signal(SIGPIPE, SIG_DFL);
    sigset_t pipe_set, before, after, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (c->mask != SIGPIPE_UNBLOCKED)
        sigprocmask(SIG_BLOCK, &pipe_set, NULL);
    if (c->mask == SIGPIPE_ALREADY_PENDING)
        raise(SIGPIPE);
    sigprocmask(SIG_BLOCK, NULL, &before);

    int p[2];
    if (c->socket ? socketpair(AF_UNIX, SOCK_STREAM, 0, p) : pipe(p)) {
        rep->status = 999;
        return;
    }
    close(p[0]);
    rill_stream *s = NULL;
    rill_error err;
    if (rill_fd_new(-1, p[1], RILL_FD_OWN, &s, &err) != RILL_OK) {
        rep->status = 998;
        snprintf(rep->msg, sizeof rep->msg, "%s", err.msg);
        return;
    }
    rep->values[0] = rill_set_timeouts(s, c->timeout, c->timeout);
    size_t n = 77;
    rep->status = rill_write(s, "doomed", 6, &n);
    snprintf(rep->msg, sizeof rep->msg, "%s", rill_errmsg(s));
    rep->values[1] = (int)n;
    rep->values[2] = rill_write_all(s, "again", 5, NULL); /* a second try, same outcome */
    rep->values[3] = rill_write_str(s, "and again", NULL);

    sigprocmask(SIG_BLOCK, NULL, &after);
    sigpending(&pending);
    rep->values[4] = sigismember(&before, SIGPIPE) == sigismember(&after, SIGPIPE);
    rep->values[5] = sigismember(&pending, SIGPIPE);
    struct sigaction now;
    sigaction(SIGPIPE, NULL, &now);
    rep->values[6] = now.sa_handler == SIG_DFL;
    rep->values[7] = rill_close(s);
    if (c->mask != SIGPIPE_UNBLOCKED) {
        /* Consume what is pending so unblocking does not kill us before we report. */
        signal(SIGPIPE, SIG_IGN);
        sigprocmask(SIG_UNBLOCK, &pipe_set, NULL);
    }
}

START_TEST(test_sigpipe)
{
    const struct sigpipe_case *c = &sigpipe_cases[_i];
    rt_child_result res;
    rt_run_child(sigpipe_child, (void *)(uintptr_t)c, 10, &res);
    ck_assert_msg(res.term_signal != SIGPIPE,
                  "writing to a broken %s killed the process with "
                  "SIGPIPE",
                  c->socket ? "socket" : "pipe");
    rt_assert_child_ok(&res);
    const rt_child_report *r = &res.report;
    ck_assert_int_eq(r->values[0], RILL_OK);
    ck_assert_msg(r->status == RILL_E_CLOSED, "rill_write: %d (%s): %s", r->status,
                  rill_strerror(r->status), r->msg);
    ck_assert_msg(strstr(r->msg, "broken pipe") != NULL, "message \"%s\" lacks \"broken pipe\"",
                  r->msg);
    ck_assert_msg(strncmp(r->msg, "fd: ", 4) == 0, "message \"%s\" lacks the layer", r->msg);
    ck_assert_int_eq(r->values[1], 0);
    ck_assert_int_eq(r->values[2], RILL_E_CLOSED);
    ck_assert_int_eq(r->values[3], RILL_E_CLOSED);
    ck_assert_msg(r->values[4], "rill changed the SIGPIPE bit of the signal mask");
    if (c->mask == SIGPIPE_ALREADY_PENDING)
        ck_assert_msg(r->values[5], "rill consumed a SIGPIPE that was pending before the call");
    else
        ck_assert_msg(!r->values[5], "rill left a SIGPIPE pending");
    ck_assert_msg(r->values[6], "rill changed the SIGPIPE disposition");
    ck_assert_int_eq(r->values[7], RILL_OK);
}
END_TEST

/*
 * The reader of a pipe goes away while a blocking write waits for room: write(2) then returns
 * the bytes it got in (no EPIPE) and raises SIGPIPE all the same. rill must consume that one
 * too, so the process survives the write, and the next write reports the broken pipe.
 */
struct mid_write_reader {
    int fd;
    ssize_t got;
};

static void *mid_write_reader_main(void *arg)
{
    struct mid_write_reader *r = arg;
    char buf[4096];
    r->got = read(r->fd, buf, sizeof buf); /* some of the write, then hang up */
    close(r->fd);
    return NULL;
}

static void sigpipe_mid_write_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    signal(SIGPIPE, SIG_DFL);
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigprocmask(SIG_UNBLOCK, &pipe_set, NULL);
    int p[2];
    if (pipe(p) != 0) {
        rep->status = 999;
        return;
    }
    /* More than a pipe holds, so the write is still waiting for room when the reader leaves. */
    size_t len = 1u << 20;
    char *big = calloc(1, len);
    rill_stream *s = NULL;
    rill_error err;
    if (!big || rill_fd_new(-1, p[1], RILL_FD_OWN, &s, &err) != RILL_OK) {
        rep->status = 998;
        free(big);
        return;
    }
    struct mid_write_reader r = { .fd = p[0] };
    pthread_t reader;
    if (pthread_create(&reader, NULL, mid_write_reader_main, &r) != 0) {
        rep->status = 997;
        free(big);
        (void)rill_close(s);
        return;
    }
    size_t n = 0;
    rep->status = rill_write(s, big, len, &n); /* the process dies here without the fix */
    pthread_join(reader, NULL);
    rep->values[0] = n > 0 && n < len;
    rep->values[1] = (int)r.got;
    rep->values[2] = rill_write(s, big, 1, &n);
    snprintf(rep->msg, sizeof rep->msg, "%s", rill_errmsg(s));
    sigpending(&pending);
    rep->values[3] = sigismember(&pending, SIGPIPE);
    rep->values[4] = rill_close(s);
    free(big);
}

START_TEST(test_sigpipe_mid_write)
{
    rt_child_result res;
    rt_run_child(sigpipe_mid_write_child, NULL, 10, &res);
    ck_assert_msg(res.term_signal != SIGPIPE,
                  "a reader leaving during a blocking write killed the process with SIGPIPE");
    rt_assert_child_ok(&res);
    const rt_child_report *r = &res.report;
    ck_assert_msg(r->status == RILL_OK && r->values[0],
                  "rill_write: %d (%s), wanted RILL_OK with part of the bytes", r->status,
                  rill_strerror(r->status));
    ck_assert_int_gt(r->values[1], 0);
    ck_assert_msg(r->values[2] == RILL_E_CLOSED, "next write: %d (%s): %s", r->values[2],
                  rill_strerror(r->values[2]), r->msg);
    ck_assert_msg(strstr(r->msg, "broken pipe") != NULL, "message \"%s\" lacks \"broken pipe\"",
                  r->msg);
    ck_assert_msg(!r->values[3], "rill left a SIGPIPE pending");
    ck_assert_int_eq(r->values[4], RILL_OK);
}
END_TEST

/* ================================================================================================
 * Deadlines
 */

START_TEST(test_read_timeout)
{
    int p[2];
    make_pipe(p);
    rill_stream *s = fd_new_ok(p[0], -1, 0);
    char buf[16];
    size_t n = 5;

    /* Blocking with a deadline. */
    ck_assert_int_eq(rill_set_timeouts(s, 200, RILL_TIMEOUT_NONE), RILL_OK);
    int64_t t0 = rt_now_us();
    rill_status st = rill_read(s, buf, sizeof buf, &n);
    rt_assert_error(s, st, RILL_E_TIMEOUT, "fd: read timed out after 200 ms");
    rt_assert_elapsed(t0, 200, 2200);
    ck_assert_uint_eq(n, 0);
    /* Still usable: bytes that arrive later are read. */
    raw_write_all(p[1], "ok", 2);
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 2);

    /* rill_read_full: the deadline covers the whole call; the partial bytes are kept. */
    raw_write_all(p[1], "par", 3);
    t0 = rt_now_us();
    st = rill_read_full(s, buf, 10, &n);
    rt_assert_error(s, st, RILL_E_TIMEOUT, "timed out");
    rt_assert_elapsed(t0, 200, 2200);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(buf, "par", 3);

    /* Non-blocking. */
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    t0 = rt_now_us();
    st = rill_read(s, buf, sizeof buf, &n);
    ck_assert_msg(st == RILL_WANT_READ, "got %d (%s)", (int)st, rill_strerror(st));
    rt_assert_elapsed(t0, 0, 500);
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(s, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, p[0]);
    ck_assert_msg(ev & POLLIN, "events %#x lack POLLIN", (unsigned)ev);
    raw_write_all(p[1], "nb", 2);
    struct pollfd pf = { .fd = fd, .events = ev };
    ck_assert_int_eq(poll(&pf, 1, 1000), 1);
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_OK);
    ck_assert_mem_eq(buf, "nb", 2);

    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(p[0]);
    close(p[1]);
}
END_TEST

struct late_writer {
    int fd;
    int delay_ms;
};

static void *late_write(void *arg)
{
    struct late_writer *w = arg;
    poll(NULL, 0, w->delay_ms);
    ssize_t r = write(w->fd, "late", 4);
    (void)r;
    return NULL;
}

/* A descriptor the caller made O_NONBLOCK still blocks in blocking mode, and keeps its flags. */
START_TEST(test_nonblocking_descriptor)
{
    int p[2];
    make_pipe(p);
    int fl = fcntl(p[0], F_GETFL);
    ck_assert_int_eq(fcntl(p[0], F_SETFL, fl | O_NONBLOCK), 0);
    fl = fcntl(p[0], F_GETFL);
    rill_stream *s = fd_new_ok(p[0], -1, 0);
    ck_assert_int_eq(rill_set_timeouts(s, modes[_i] == 0 ? 3000 : modes[_i], 0), RILL_OK);
    struct late_writer w = { p[1], 100 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, late_write, &w), 0);
    char buf[8];
    size_t n = 0;
    rt_watchdog(20, "blocking read on an O_NONBLOCK pipe");
    int64_t t0 = rt_now_us();
    rill_status st = rill_read(s, buf, sizeof buf, &n);
    rt_watchdog(0, NULL);
    ck_assert_msg(st == RILL_OK, "got %d (%s): %s", (int)st, rill_strerror(st), rill_errmsg(s));
    rt_assert_elapsed(t0, 50, 3000);
    ck_assert_uint_eq(n, 4);
    pthread_join(t, NULL);
    ck_assert_int_eq(fcntl(p[0], F_GETFL), fl);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* Fill a pipe nobody reads. The write end is a blocking descriptor rill must not block on. */
START_TEST(test_write_timeout)
{
    int p[2];
    make_pipe(p);
    int fl = fcntl(p[1], F_GETFL);
    rill_stream *s = fd_new_ok(-1, p[1], 0);
    rt_watchdog(20, "writes to a full pipe under a deadline");
    ck_assert_int_eq(rill_set_timeouts(s, RILL_TIMEOUT_NONE, 0), RILL_OK);
    static char chunk[20000];
    memset(chunk, 'p', sizeof chunk);
    size_t total = 0, n = 0;
    rill_status st = RILL_OK;
    for (int i = 0; i < 100000 && st == RILL_OK; i++) {
        st = rill_write(s, chunk, sizeof chunk, &n);
        ck_assert_uint_le(n, sizeof chunk);
        total += n;
    }
    ck_assert_msg(st == RILL_WANT_WRITE, "filling: %d (%s) after %zu bytes: %s", (int)st,
                  rill_strerror(st), total, rill_errmsg(s));
    ck_assert_uint_gt(total, 0);
    int fd = -1;
    short ev = 0;
    ck_assert_int_eq(rill_poll_info(s, &fd, &ev), RILL_OK);
    ck_assert_int_eq(fd, p[1]);
    ck_assert_msg(ev & POLLOUT, "events %#x lack POLLOUT", (unsigned)ev);

    ck_assert_int_eq(rill_set_timeouts(s, RILL_TIMEOUT_NONE, 200), RILL_OK);
    int64_t t0 = rt_now_us();
    st = rill_write(s, chunk, sizeof chunk, &n);
    rt_assert_error(s, st, RILL_E_TIMEOUT, "fd: write timed out after 200 ms");
    rt_assert_elapsed(t0, 200, 2200);
    ck_assert_uint_eq(n, 0);
    rt_watchdog(0, NULL);

    ck_assert_uint_eq(raw_drain(p[0]), total);
    ck_assert_int_eq(rill_write_str(s, "more", NULL), RILL_OK);
    char buf[4];
    raw_read_exact(p[0], buf, 4);
    ck_assert_mem_eq(buf, "more", 4);
    ck_assert_int_eq(fcntl(p[1], F_GETFL), fl);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* rill_write_all of 1 MiB into a pipe nobody reads returns at the deadline, counting what went. */
START_TEST(test_write_all_timeout)
{
    int p[2];
    make_pipe(p);
    rill_stream *s = fd_new_ok(p[0], p[1], 0);
    ck_assert_int_eq(rill_set_timeouts(s, RILL_TIMEOUT_NONE, 300), RILL_OK);
    size_t len = 1 << 20;
    char *big = malloc(len);
    ck_assert_ptr_nonnull(big);
    rt_fill_pattern(big, len, 77);
    size_t n = 0;
    rt_watchdog(20, "rill_write_all into a full pipe with a 300 ms deadline");
    int64_t t0 = rt_now_us();
    rill_status st = rill_write_all(s, big, len, &n);
    rt_watchdog(0, NULL);
    rt_assert_error(s, st, RILL_E_TIMEOUT, "write timed out after 300 ms");
    rt_assert_elapsed(t0, 300, 2300);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_lt(n, len);
    /* Exactly the accepted bytes are in the pipe, in order. */
    char *back = malloc(n);
    ck_assert_ptr_nonnull(back);
    raw_read_exact(p[0], back, n);
    ck_assert_mem_eq(back, big, n);
    ck_assert_uint_eq(raw_drain(p[0]), 0);
    free(back);
    free(big);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* A large transfer through a pipe with a concurrent reader, in each mode. */
struct reader {
    int fd;
    size_t len;
    uint64_t sum;
};

static void *read_all_raw(void *arg)
{
    struct reader *r = arg;
    char buf[7000];
    size_t got = 0;
    while (got < r->len) {
        ssize_t k = read(r->fd, buf, sizeof buf);
        if (k <= 0)
            break;
        r->sum = rt_checksum(r->sum, buf, (size_t)k);
        got += (size_t)k;
    }
    r->len = got;
    return NULL;
}

START_TEST(test_bulk_through_pipe)
{
    int p[2];
    make_pipe(p);
    rill_stream *s = fd_new_ok(-1, p[1], 0);
    int timeout = _i == 0 ? RILL_TIMEOUT_NONE : 2000; /* the pipe is polled under a deadline */
    ck_assert_int_eq(rill_set_timeouts(s, RILL_TIMEOUT_NONE, timeout), RILL_OK);
    size_t len = 3u << 20;
    char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    rt_fill_pattern(data, len, 5);
    struct reader r = { p[0], len, 0 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, read_all_raw, &r), 0);
    size_t n = 0;
    rill_status st = rill_write_all(s, data, len, &n);
    ck_assert_msg(st == RILL_OK, "write_all: %s after %zu: %s", rill_strerror(st), n,
                  rill_errmsg(s));
    ck_assert_uint_eq(n, len);
    ck_assert_int_eq(rill_close(s), RILL_OK);
    close(p[1]);
    pthread_join(t, NULL);
    ck_assert_uint_eq(r.len, len);
    ck_assert_uint_eq(r.sum, rt_checksum(0, data, len));
    free(data);
    close(p[0]);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("fd");
    const int nmodes = (int)(sizeof modes / sizeof modes[0]);

    TCase *tc = tcase_create("wrap");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_pipe_pair, 0, nmodes);
    tcase_add_test(tc, test_one_way);
    tcase_add_test(tc, test_own_closes);
    tcase_add_loop_test(tc, test_invalid, 0, (int)(sizeof invalid_cases / sizeof invalid_cases[0]));
    tcase_add_loop_test(tc, test_socketpair, 0, nmodes);
    tcase_add_loop_test(tc, test_regular_file, 0, nmodes);
    suite_add_tcase(s, tc);

    tc = tcase_create("end");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, test_eof, 0, nmodes);
    tcase_add_loop_test(tc, test_sigpipe, 0, (int)(sizeof sigpipe_cases / sizeof sigpipe_cases[0]));
    tcase_add_test(tc, test_sigpipe_mid_write);
    suite_add_tcase(s, tc);

    tc = tcase_create("deadlines");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_read_timeout);
    tcase_add_loop_test(tc, test_nonblocking_descriptor, 0, nmodes);
    tcase_add_test(tc, test_write_timeout);
    tcase_add_test(tc, test_write_all_timeout);
    tcase_add_loop_test(tc, test_bulk_through_pipe, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
