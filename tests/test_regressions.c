/* SPDX-License-Identifier: MIT */
/*
 * Regression tests for defects found in review, each written as the behaviour the contract
 * promises (every one failed, or hung into its watchdog, on the code as reviewed).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "support.h"

/* ---- "script": a descriptor-less transport that returns fixed chunks, then an error ---- */

struct script {
    const char *chunks[4];
    size_t lens[4];
    int next;
    rill_status end; /* returned once the chunks are used up */
};

static rill_status script_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct script *sc = rill_stream_state(s);
    *n = 0;
    if (sc->next >= 4 || !sc->chunks[sc->next]) {
        if (sc->end < 0)
            return rill_stream_error(s, sc->end, "connection reset by peer (scripted)");
        return sc->end;
    }
    size_t k = sc->lens[sc->next] < len ? sc->lens[sc->next] : len;
    memcpy(buf, sc->chunks[sc->next], k);
    sc->next++;
    *n = k;
    return RILL_OK;
}

static const struct rill_stream_ops script_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = "script",
    .read = script_read,
};

static rill_stream *script_new(const char *c0, size_t l0, const char *c1, size_t l1,
                               rill_status end)
{
    rill_stream *s = NULL;
    ck_assert_int_eq(rill_stream_new(&script_ops, sizeof(struct script), NULL, 0, &s), RILL_OK);
    struct script *sc = rill_stream_state(s);
    sc->chunks[0] = c0;
    sc->lens[0] = l0;
    sc->chunks[1] = c1;
    sc->lens[1] = l1;
    sc->end = end;
    return s;
}

/*
 * F1: rill_read_u64be over a buffered top layer whose read buffer is smaller than the value
 * fails with RILL_E_INVALID (rill_peek's "want > read size"), although 8 bytes are there.
 */
START_TEST(test_endian_u64_over_small_read_buffer)
{
    rill_stream *src = script_new("\x01\x02\x03\x04\x05\x06\x07\x08", 8, NULL, 0, RILL_EOF);
    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(src, 4, 4, 0, &b), RILL_OK);
    uint64_t v = 0;
    rill_status st = rill_read_u64be(b, &v);
    ck_assert_msg(st == RILL_OK, "rill_read_u64be over buffered(4): %d (%s): %s", st,
                  rill_strerror(st), rill_errmsg(b));
    ck_assert_uint_eq(v, 0x0102030405060708ull);
    rill_close(b);
}
END_TEST

/*
 * F2: a real error (connection reset) after part of a value is turned into RILL_E_PROTOCOL with
 * the false text "would block after 3 of 4 bytes"; the reset is lost.
 */
START_TEST(test_endian_reset_inside_value_passes_through)
{
    rill_stream *s = script_new("\x01\x02\x03", 3, NULL, 0, RILL_E_RESET);
    uint32_t v = 0;
    rill_status st = rill_read_u32be(s, &v);
    ck_assert_msg(st == RILL_E_RESET, "status %d (%s), message \"%s\"", st, rill_strerror(st),
                  rill_errmsg(s));
    ck_assert_msg(strstr(rill_errmsg(s), "would block") == NULL, "false message: %s",
                  rill_errmsg(s));
    rill_close(s);
}
END_TEST

/*
 * F3: closing a RILL_BORROW line layer silently drops the bytes it read ahead from the
 * borrowed stream (DESIGN: "refuses to ... detach while a layer holds unread bytes").
 */
START_TEST(test_borrow_close_reports_read_ahead)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    ck_assert_int_eq(rill_write_str(client, "HEADER\nBODY", NULL), RILL_OK);
    rill_stream *l = NULL;
    ck_assert_int_eq(rill_lines_new(server, 64, RILL_EOL_LF, RILL_BORROW, &l), RILL_OK);
    const char *line;
    size_t len;
    ck_assert_int_eq(rill_read_line(l, &line, &len), RILL_OK);
    ck_assert_str_eq(line, "HEADER");
    ck_assert_uint_eq(rill_pending(l), 4); /* "BODY" is held by the line layer */
    rill_status st = rill_close(l);
    /* Either close reports that bytes were dropped, or the bytes are still readable. */
    ck_assert_int_eq(rill_set_timeouts(server, 300, 300), RILL_OK);
    char body[8];
    size_t n = 0;
    rill_status rs = rill_read(server, body, sizeof body, &n);
    ck_assert_msg(st == RILL_E_PENDING_DATA || (rs == RILL_OK && n == 4),
                  "rill_close returned %d (%s) and the 4 read-ahead bytes are gone (read: %s)", st,
                  rill_strerror(st), rill_errmsg(server));
    rill_close(client);
    rill_close(server);
}
END_TEST

/* Fill both socket buffers of fds[0] -> fds[1] so that sending on fds[0] would block. */
static void fill_send_path(int fd)
{
    static char junk[65536];
    for (;;) {
        ssize_t r = send(fd, junk, sizeof junk, MSG_DONTWAIT);
        if (r < 0) {
            ck_assert_int_eq(errno, EAGAIN);
            break;
        }
    }
    while (send(fd, junk, 1, MSG_DONTWAIT) == 1) {
    }
}

/*
 * F4: a buffered read with held write bytes waits for the write side before it reads: data
 * that is already readable is not returned, the read times out (and with no read timeout it
 * blocks in send(2) forever, ignoring the write timeout; see F4b).
 */
START_TEST(test_buffered_read_not_starved_by_held_write)
{
    int fds[2];
    rt_socketpair(fds);
    rill_stream *c = NULL;
    ck_assert_int_eq(rill_fd_new(fds[0], fds[0], RILL_FD_OWN, &c, NULL), RILL_OK);
    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(c, 64, 64, 0, &b), RILL_OK);
    fill_send_path(fds[0]);
    size_t n = 0;
    ck_assert_int_eq(rill_write(b, "req", 3, &n), RILL_OK); /* held in the write buffer */
    ck_assert_int_eq(write(fds[1], "X", 1), 1);             /* the answer is already here */
    ck_assert_int_eq(rill_set_timeouts(b, 500, RILL_TIMEOUT_NONE), RILL_OK);
    char got[4];
    rill_status st = rill_read(b, got, 1, &n);
    ck_assert_msg(st == RILL_OK && n == 1 && got[0] == 'X',
                  "readable byte not returned: %d (%s): %s", st, rill_strerror(st), rill_errmsg(b));
    close(fds[1]); /* first, so that close's flush of "req" fails instead of blocking */
    (void)rill_close(b);
}
END_TEST

static void starve_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        return;
    rill_stream *c = NULL, *b = NULL;
    if (rill_fd_new(fds[0], fds[0], 0, &c, NULL) != RILL_OK ||
        rill_buffered_new(c, 64, 64, 0, &b) != RILL_OK)
        return;
    static char junk[65536];
    while (send(fds[0], junk, sizeof junk, MSG_DONTWAIT) > 0) {
    }
    while (send(fds[0], junk, 1, MSG_DONTWAIT) == 1) {
    }
    size_t n = 0;
    rep->values[0] = rill_write(b, "req", 3, &n);
    (void)!write(fds[1], "X", 1);
    rep->values[1] = rill_set_timeouts(b, RILL_TIMEOUT_NONE, 300);
    char got[4];
    rep->status = rill_read(b, got, 1, &n); /* blocks in send(2) forever */
    rep->values[2] = (int)n;
    if (rill_set_timeouts(b, 0, 0) != RILL_OK) /* close without waiting for room */
        rep->values[3] = -1;
    (void)rill_close(b);
    close(fds[0]);
    close(fds[1]);
}

/* F4b: same, read without timeout but a 300 ms write timeout: blocks in the kernel forever. */
START_TEST(test_buffered_read_never_blocks_in_send_under_timeout)
{
    rt_child_result res;
    rt_run_child(starve_child, NULL, 3, &res);
    ck_assert_msg(res.exited && res.exit_code == 0,
                  "rill_read blocked in send(2) (watchdog: exit %d); write timeout was 300 ms",
                  res.exit_code);
    ck_assert_int_eq(res.report.status, RILL_OK);
}
END_TEST

static void pty_child(rt_child_report *rep, void *arg)
{
    (void)arg;
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
        rep->status = 999;
        return;
    }
    int sl = open(ptsname(m), O_RDWR | O_NOCTTY);
    if (sl < 0) {
        rep->status = 999;
        return;
    }
    struct termios t;
    tcgetattr(sl, &t);
    cfmakeraw(&t);
    tcsetattr(sl, TCSANOW, &t);
    /* The documented way to hard deadlines on a terminal: make the descriptor non-blocking. */
    fcntl(sl, F_SETFL, fcntl(sl, F_GETFL) | O_NONBLOCK);
    rill_stream *s = NULL;
    if (rill_fd_new(-1, sl, 0, &s, NULL) != RILL_OK)
        return;
    rep->values[0] = rill_set_timeouts(s, 300, 300);
    static char data[65536];
    memset(data, 'a', sizeof data);
    size_t n = 0;
    /* Nobody reads the terminal: the write must end with RILL_E_TIMEOUT after ~300 ms. */
    rep->status = rill_write_all(s, data, sizeof data, &n);
    rep->values[1] = (int)n;
    rill_close(s);
    close(sl);
    close(m);
}

/*
 * F5: a terminal can report writable with less than PIPE_BUF bytes of room, so "poll, then
 * write at most PIPE_BUF" may block on a blocking tty (documented in rill_fd_new). With
 * O_NONBLOCK set on it, as the documentation advises, the write timeout holds.
 */
START_TEST(test_fd_tty_write_timeout_with_nonblock)
{
    rt_child_result res;
    rt_run_child(pty_child, NULL, 3, &res);
    if (res.report.status == 999)
        return; /* no pty here */
    ck_assert_msg(res.exited && res.exit_code == 0,
                  "rill_write_all on a non-blocking pty ignored a 300 ms write timeout "
                  "(watchdog: exit %d)",
                  res.exit_code);
    ck_assert_int_eq(res.report.status, RILL_E_TIMEOUT);
}
END_TEST

/*
 * F6: after RILL_WANT_WRITE part of a string may already be on the wire: rill_write_str must
 * report how much, so a retry does not duplicate bytes.
 */
START_TEST(test_write_str_reports_partial_progress)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    size_t big = 8u << 20;
    char *str = malloc(big + 1);
    ck_assert_ptr_nonnull(str);
    memset(str, 'x', big);
    str[big] = '\0';
    ck_assert_int_eq(rill_set_timeouts(client, 0, 0), RILL_OK);
    size_t sent = 0;
    rill_status st = rill_write_str(client, str, &sent);
    ck_assert_int_eq(rill_set_timeouts(server, 200, 200), RILL_OK);
    size_t arrived = 0;
    char buf[65536];
    for (;;) {
        size_t n = 0;
        if (rill_read(server, buf, sizeof buf, &n) != RILL_OK)
            break;
        arrived += n;
    }
    ck_assert_int_eq(st, RILL_WANT_WRITE); /* 8 MiB does not fit a loopback socket at once */
    ck_assert_uint_gt(sent, 0);
    ck_assert_uint_eq(sent, arrived);
    free(str);
    rill_close(client);
    rill_close(server);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("regressions");
    TCase *tc = tcase_create("review");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_endian_u64_over_small_read_buffer);
    tcase_add_test(tc, test_endian_reset_inside_value_passes_through);
    tcase_add_test(tc, test_borrow_close_reports_read_ahead);
    tcase_add_test(tc, test_buffered_read_not_starved_by_held_write);
    tcase_add_test(tc, test_buffered_read_never_blocks_in_send_under_timeout);
    tcase_add_test(tc, test_fd_tty_write_timeout_with_nonblock);
    tcase_add_test(tc, test_write_str_reports_partial_progress);
    suite_add_tcase(s, tc);
    return s;
}
