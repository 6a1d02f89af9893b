/* SPDX-License-Identifier: MIT */
/*
 * The buffered decorator over real sockets: read-ahead and write-behind, peek and unread, the
 * bulk bypass in both directions, flush before read, shrink, EOF and half-close, timeouts in
 * blocking and non-blocking use, allocation failures and argument checks.
 *
 * Most cases put the layer over an fd transport on one end of a socketpair and drive the other
 * end with raw read(2)/write(2), so each test decides exactly which bytes are on the wire.
 */
#include "support.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static rill_stream *buffered_over(rill_stream *inner, size_t rsize, size_t wsize)
{
    rill_stream *b = NULL;
    rill_status st = rill_buffered_new(inner, rsize, wsize, 0, &b);
    ck_assert_msg(st == RILL_OK, "rill_buffered_new: %s", rill_errmsg(inner));
    ck_assert_ptr_nonnull(b);
    return b;
}

/* A buffered stream over a socketpair end. */
static rill_stream *buffered_end(size_t rsize, size_t wsize, int *peer)
{
    return buffered_over(rt_fd_end(peer), rsize, wsize);
}

static void peer_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_msg(r > 0, "peer write: %s", strerror(errno));
        p += r;
        len -= (size_t)r;
    }
}

static void peer_read_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_msg(r > 0, "peer read: %s", r == 0 ? "EOF" : strerror(errno));
        p += r;
        len -= (size_t)r;
    }
}

/* Bytes readable on @p fd right now (0 when nothing arrived). */
static size_t peer_available(int fd)
{
    char buf[4096];
    ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_PEEK);
    return r > 0 ? (size_t)r : 0;
}

static void expect_read(rill_stream *s, const char *want)
{
    size_t len = strlen(want);
    char buf[256];
    ck_assert_uint_lt(len, sizeof buf);
    size_t n = 0;
    rill_status st = rill_read_full(s, buf, len, &n);
    ck_assert_msg(st == RILL_OK, "rill_read_full: %s (%s)", rill_strerror(st), rill_errmsg(s));
    ck_assert_uint_eq(n, len);
    ck_assert_mem_eq(buf, want, len);
}

/* Fill the socket buffers in the direction s -> peer until a non-blocking write would wait. */
static void fill_socket(rill_stream *s)
{
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    static char chunk[1 << 16];
    for (int i = 0; i < 10000; i++) {
        size_t n = 0;
        rill_status st = rill_write(s, chunk, sizeof chunk, &n);
        if (st == RILL_WANT_WRITE)
            return;
        ck_assert_msg(st == RILL_OK, "rill_write: %s", rill_errmsg(s));
    }
    ck_abort_msg("the socket never filled up");
}

/* Reads a descriptor to EOF in a thread, summing what it got. */
struct drain {
    int fd;
    uint64_t sum;
    size_t total;
    int error;
    pthread_t th;
};

static void *drain_main(void *arg)
{
    struct drain *d = arg;
    char *buf = malloc(70000);
    if (!buf) {
        d->error = ENOMEM;
        return NULL;
    }
    for (;;) {
        ssize_t r = read(d->fd, buf, 1 + (d->total % 70000));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            d->error = errno;
            break;
        }
        if (r == 0)
            break;
        d->sum = rt_checksum(d->sum, buf, (size_t)r);
        d->total += (size_t)r;
    }
    free(buf);
    return NULL;
}

/* Writes a buffer in chunks of varying size in a thread, then half-closes. */
struct feed {
    int fd;
    const unsigned char *data;
    size_t len;
    unsigned delay_us;
    int error;
    pthread_t th;
};

static void *feed_main(void *arg)
{
    struct feed *f = arg;
    size_t off = 0, step = 1;
    while (off < f->len) {
        step = step * 7 % 30011 + 1;
        size_t n = f->len - off < step ? f->len - off : step;
        ssize_t r = write(f->fd, f->data + off, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            f->error = errno;
            break;
        }
        off += (size_t)r;
        if (f->delay_us)
            usleep(f->delay_us);
    }
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

/* Allocator that counts live bytes and can be told to fail (process-wide: restore after). */

/* ---- echo and partial reads ---- */

START_TEST(test_echo_both_ways)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *c = buffered_over(client, RILL_BUFFERED_DEFAULT_SIZE, 4096);
    rill_stream *s = buffered_over(server, RILL_BUFFERED_DEFAULT_SIZE, 4096);

    ck_assert_int_eq(rill_write_str(c, "hello over buffered\n", NULL), RILL_OK);
    /* Held in the write-behind buffer: nothing reached the server yet. */
    ck_assert_int_eq(rill_set_timeouts(s, 0, 0), RILL_OK);
    char buf[64];
    size_t n = 99;
    ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_WANT_READ);
    ck_assert_uint_eq(n, 0);

    ck_assert_int_eq(rill_flush(c), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(s, 5000, 5000), RILL_OK);
    expect_read(s, "hello over buffered\n");

    ck_assert_int_eq(rill_write_str(s, "and back", NULL), RILL_OK);
    ck_assert_int_eq(rill_flush(s), RILL_OK);
    expect_read(c, "and back");

    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

START_TEST(test_partial_reads_come_from_the_buffer)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    char data[100];
    rt_fill_pattern(data, sizeof data, 7);
    peer_write(peer, data, sizeof data);

    char got[100];
    size_t n = 0;
    ck_assert_int_eq(rill_read(b, got, 10, &n), RILL_OK);
    ck_assert_uint_eq(n, 10);
    /* One inner read brought everything the peer sent. */
    ck_assert_uint_eq(rill_pending(b), 90);
    for (size_t off = 10; off < 60; off += 10) {
        ck_assert_int_eq(rill_read(b, got + off, 10, &n), RILL_OK);
        ck_assert_uint_eq(n, 10);
    }
    /* A larger read returns what is buffered without waiting for more. */
    ck_assert_int_eq(rill_read(b, got + 60, 1000, &n), RILL_OK);
    ck_assert_uint_eq(n, 40);
    ck_assert_mem_eq(got, data, sizeof data);
    ck_assert_uint_eq(rill_pending(b), 0);
    close(peer);
    ck_assert_int_eq(rill_read(b, got, 10, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_byte_at_a_time_reads)
{
    int peer;
    rill_stream *b = buffered_end(64, 64, &peer);
    unsigned char data[5000];
    rt_fill_pattern(data, sizeof data, 11);
    struct feed f = { .fd = peer, .data = data, .len = sizeof data };
    ck_assert_int_eq(pthread_create(&f.th, NULL, feed_main, &f), 0);
    uint64_t sum = 0;
    size_t total = 0;
    for (;;) {
        unsigned char c;
        size_t n = 0;
        rill_status st = rill_read(b, &c, 1, &n);
        if (st == RILL_EOF)
            break;
        ck_assert_int_eq(st, RILL_OK);
        ck_assert_uint_eq(n, 1);
        sum = rt_checksum(sum, &c, 1);
        total++;
    }
    pthread_join(f.th, NULL);
    ck_assert_int_eq(f.error, 0);
    ck_assert_uint_eq(total, sizeof data);
    ck_assert(sum == rt_checksum(0, data, sizeof data));
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

/* ---- peek and unread ---- */

START_TEST(test_peek_does_not_consume)
{
    int peer;
    rill_stream *b = buffered_end(64, 64, &peer);
    peer_write(peer, "HELLO WORLD", 11);
    const void *data = NULL;
    size_t avail = 0;
    ck_assert_int_eq(rill_peek(b, 5, &data, &avail), RILL_OK);
    ck_assert_uint_ge(avail, 5);
    ck_assert_mem_eq(data, "HELLO", 5);
    ck_assert_uint_eq(rill_pending(b), avail);
    expect_read(b, "HELLO WORLD");
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_peek_waits_for_more)
{
    int peer;
    rill_stream *b = buffered_end(16, 16, &peer);
    peer_write(peer, "abc", 3);
    const void *data = NULL;
    size_t avail = 0;
    /* Non-blocking: three bytes are not enough for want=8. */
    ck_assert_int_eq(rill_set_timeouts(b, 0, 0), RILL_OK);
    ck_assert_int_eq(rill_peek(b, 8, &data, &avail), RILL_WANT_READ);
    int fd = -1;
    short events = 0;
    ck_assert_int_eq(rill_poll_info(b, &fd, &events), RILL_OK);
    ck_assert_int_eq(fd, rill_fd(b));
    ck_assert(events & POLLIN);

    /* Consume one byte so the buffer must be compacted to hold want=16 bytes at once. */
    char c;
    size_t n;
    ck_assert_int_eq(rill_read(b, &c, 1, &n), RILL_OK);
    ck_assert_int_eq(c, 'a');
    peer_write(peer, "defghijklmnopqrstuvwxyz", 23);
    ck_assert_int_eq(rill_set_timeouts(b, 2000, 2000), RILL_OK);
    ck_assert_int_eq(rill_peek(b, 16, &data, &avail), RILL_OK);
    ck_assert_uint_ge(avail, 16);
    ck_assert_mem_eq(data, "bcdefghijklmnopq", 16);
    expect_read(b, "bcdefghijklmnopqrstuvwxyz");
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_peek_at_eof)
{
    int peer;
    rill_stream *b = buffered_end(64, 64, &peer);
    peer_write(peer, "ab", 2);
    shutdown(peer, SHUT_WR);
    const void *data = NULL;
    size_t avail = 99;
    ck_assert_int_eq(rill_peek(b, 5, &data, &avail), RILL_EOF);
    ck_assert_uint_eq(avail, 2);
    ck_assert_mem_eq(data, "ab", 2);
    expect_read(b, "ab");
    ck_assert_int_eq(rill_peek(b, 1, &data, &avail), RILL_EOF);
    ck_assert_uint_eq(avail, 0);
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_unread)
{
    int peer;
    rill_stream *b = buffered_end(16, 16, &peer);
    /* Into a buffer that does not exist yet. */
    ck_assert_int_eq(rill_unread(b, "first:", 6), RILL_OK);
    ck_assert_uint_eq(rill_pending(b), 6);
    peer_write(peer, "0123456789", 10);
    expect_read(b, "first:");
    expect_read(b, "012");
    /* Into the room left in front by the read. */
    ck_assert_int_eq(rill_unread(b, "12", 2), RILL_OK);
    expect_read(b, "12345");
    /* More than the buffer holds: it grows, and the order stays right. */
    char big[100];
    memset(big, 'x', sizeof big);
    big[0] = '<';
    big[99] = '>';
    ck_assert_int_eq(rill_unread(b, big, sizeof big), RILL_OK);
    ck_assert_uint_eq(rill_pending(b), 104);
    char got[104];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(b, got, sizeof got, &n), RILL_OK);
    ck_assert_mem_eq(got, big, 100);
    ck_assert_mem_eq(got + 100, "6789", 4);
    /* A zero-length unread is a no-op. */
    ck_assert_int_eq(rill_unread(b, "", 0), RILL_OK);
    ck_assert_uint_eq(rill_pending(b), 0);
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_unread_of_peeked_bytes)
{
    int peer;
    rill_stream *b = buffered_end(16, 16, &peer);
    peer_write(peer, "abcdef", 6);
    const void *data = NULL;
    size_t avail = 0;
    ck_assert_int_eq(rill_peek(b, 6, &data, &avail), RILL_OK);
    /* The source lies inside the read buffer itself, where moving the held bytes would
     * overwrite it. */
    ck_assert_int_eq(rill_unread(b, (const char *)data + 3, 3), RILL_OK);
    expect_read(b, "defabcdef");
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

/* ---- bulk data bypasses the buffers ---- */

START_TEST(test_large_read_bypasses_buffer)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    static unsigned char data[20000], got[20000];
    rt_fill_pattern(data, sizeof data, 3);
    peer_write(peer, data, sizeof data);
    size_t n = 0;
    ck_assert_int_eq(rill_read(b, got, sizeof got, &n), RILL_OK);
    /* Through the 4096-byte buffer one read could return at most 4096 bytes. */
    ck_assert_uint_gt(n, 4096);
    size_t more = 0;
    if (n < sizeof got)
        ck_assert_int_eq(rill_read_full(b, got + n, sizeof got - n, &more), RILL_OK);
    ck_assert_mem_eq(got, data, sizeof data);
    /* No buffer was ever allocated. */
    ck_assert_uint_eq(rill_shrink(b), 0);
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_large_write_goes_through_in_order)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    struct drain d = { .fd = peer };
    ck_assert_int_eq(pthread_create(&d.th, NULL, drain_main, &d), 0);

    static unsigned char big[300000];
    rt_fill_pattern(big, sizeof big, 5);
    uint64_t sum = 0;
    ck_assert_int_eq(rill_write_str(b, "head", NULL), RILL_OK);
    sum = rt_checksum(sum, "head", 4);
    ck_assert_int_eq(rill_write_all(b, big, sizeof big, NULL), RILL_OK);
    sum = rt_checksum(sum, big, sizeof big);
    ck_assert_int_eq(rill_write_str(b, "tail", NULL), RILL_OK);
    sum = rt_checksum(sum, "tail", 4);
    ck_assert_int_eq(rill_shutdown(b), RILL_OK);
    pthread_join(d.th, NULL);
    ck_assert_int_eq(d.error, 0);
    ck_assert_uint_eq(d.total, sizeof big + 8);
    ck_assert(d.sum == sum);
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_write_through_never_allocates)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    struct drain d = { .fd = peer };
    ck_assert_int_eq(pthread_create(&d.th, NULL, drain_main, &d), 0);
    static unsigned char big[50000];
    rt_fill_pattern(big, sizeof big, 9);
    ck_assert_int_eq(rill_write_all(b, big, sizeof big, NULL), RILL_OK);
    ck_assert_int_eq(rill_flush(b), RILL_OK);
    /* Flushed and never allocated: a buffer that had been used would be released here. */
    ck_assert_uint_eq(rill_shrink(b), 0);
    ck_assert_int_eq(rill_shutdown(b), RILL_OK);
    pthread_join(d.th, NULL);
    ck_assert_uint_eq(d.total, sizeof big);
    ck_assert(d.sum == rt_checksum(0, big, sizeof big));
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

/* Random-sized writes and reads in both directions over TCP, checked by checksum. */
struct echo_side {
    rill_stream *s;
    size_t len;
    uint64_t seed;
    rill_status st;
};

static void *write_random_chunks(void *arg)
{
    struct echo_side *e = arg;
    unsigned char *data = malloc(e->len);
    if (!data) {
        e->st = RILL_E_NOMEM;
        return NULL;
    }
    rt_fill_pattern(data, e->len, e->seed);
    size_t off = 0, step = 1;
    e->st = RILL_OK;
    while (off < e->len && e->st == RILL_OK) {
        step = step * 31 % 20011 + 1;
        size_t n = e->len - off < step ? e->len - off : step;
        e->st = rill_write_all(e->s, data + off, n, NULL);
        off += n;
    }
    if (e->st == RILL_OK)
        e->st = rill_shutdown(e->s);
    free(data);
    return NULL;
}

START_TEST(test_bulk_random_chunks_tcp)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *c = buffered_over(client, 4096, 8192);
    rill_stream *s = buffered_over(server, 8192, 4096);
    const size_t len = 4u << 20;
    struct echo_side w = { .s = c, .len = len, .seed = 42 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, write_random_chunks, &w), 0);

    unsigned char *want = malloc(len), *buf = malloc(20011);
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(buf);
    rt_fill_pattern(want, len, 42);
    size_t total = 0, step = 1;
    uint64_t sum = 0;
    for (;;) {
        step = step * 17 % 12007 + 1;
        size_t n = 0;
        rill_status st = rill_read(s, buf, step, &n);
        if (st == RILL_EOF)
            break;
        ck_assert_msg(st == RILL_OK, "read: %s", rill_errmsg(s));
        ck_assert_uint_le(n, step);
        sum = rt_checksum(sum, buf, n);
        total += n;
    }
    pthread_join(th, NULL);
    ck_assert_msg(w.st == RILL_OK, "writer: %s", rill_errmsg(c));
    ck_assert_uint_eq(total, len);
    ck_assert(sum == rt_checksum(0, want, len));
    free(want);
    free(buf);
    ck_assert_int_eq(rill_close(c), RILL_OK);
    ck_assert_int_eq(rill_close(s), RILL_OK);
}
END_TEST

/* ---- flush before read ---- */

static void *answer_ping(void *arg)
{
    int fd = *(int *)arg;
    char req[5];
    size_t got = 0;
    while (got < sizeof req) {
        ssize_t r = read(fd, req + got, sizeof req - got);
        if (r <= 0)
            return NULL;
        got += (size_t)r;
    }
    if (memcmp(req, "PING\n", 5) == 0 && write(fd, "PONG\n", 5) != 5)
        return NULL;
    return NULL;
}

START_TEST(test_flush_before_read)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, answer_ping, &peer), 0);
    /* No rill_flush: the read must push the request out or both sides wait forever. */
    ck_assert_int_eq(rill_write_str(b, "PING\n", NULL), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(b, 3000, 3000), RILL_OK);
    char buf[5];
    size_t n = 0;
    rill_status st = rill_read_full(b, buf, sizeof buf, &n);
    ck_assert_msg(st == RILL_OK, "read: %s", rill_errmsg(b));
    ck_assert_mem_eq(buf, "PONG\n", 5);
    pthread_join(th, NULL);
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_read_not_held_up_by_stuck_write)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    fill_socket(b);
    size_t n = 0;
    ck_assert_int_eq(rill_write(b, "held", 4, &n), RILL_OK);
    ck_assert_uint_eq(n, 4);

    /* Non-blocking: nothing to read and the held bytes cannot move; the core must wake for
     * either direction, so poll asks for both. */
    char buf[16];
    ck_assert_int_eq(rill_read(b, buf, sizeof buf, &n), RILL_WANT_READ);
    int fd = -1;
    short events = 0;
    ck_assert_int_eq(rill_poll_info(b, &fd, &events), RILL_OK);
    ck_assert_int_eq(fd, rill_fd(b));
    ck_assert(events & POLLIN);
    ck_assert(events & POLLOUT);

    /* The held request does not hold up an answer that is already readable. */
    peer_write(peer, "X", 1);
    ck_assert_int_eq(rill_set_timeouts(b, 2000, 2000), RILL_OK);
    ck_assert_int_eq(rill_read(b, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(buf[0], 'X');
    ck_assert_uint_eq(rill_pending(b), 0);

    /* With a deadline it gives up under the read timeout. */
    ck_assert_int_eq(rill_set_timeouts(b, 150, 150), RILL_OK);
    int64_t t0 = (rt_now_us() / 1000);
    rt_assert_error(b, rill_read(b, buf, sizeof buf, &n), RILL_E_TIMEOUT, "read timed out");
    ck_assert_int_ge((rt_now_us() / 1000) - t0, 140);
    close(peer);
    rill_close(b);
}
END_TEST

/* ---- shrink ---- */

/*
 * The buffers are released when they empty at the end of a burst, without rill_shrink(): the
 * write buffer by a flush, the read buffer when its last byte is taken and the fill did not
 * fill it. A fill that filled the read buffer keeps it (more may be waiting); rill_shrink()
 * still releases that. Blocking, under a deadline and non-blocking (the bytes are there).
 */
START_TEST(test_buffers_released_when_idle)
{
    static const int timeouts[] = { RILL_TIMEOUT_NONE, 2000, 0 };
    rt_counting_on();
    int peer;
    rill_stream *b = buffered_end(8192, 4096, &peer);
    ck_assert_int_eq(rill_set_timeouts(b, timeouts[_i], timeouts[_i]), RILL_OK);
    size_t idle = rt_live_bytes;
    ck_assert_uint_lt(idle, 4096); /* an idle layer holds no buffer */
    ck_assert_uint_eq(rill_shrink(b), 0);

    ck_assert_int_eq(rill_write_str(b, "0123456789", NULL), RILL_OK);
    ck_assert_uint_eq(rt_live_bytes, idle + 4096);
    ck_assert_uint_eq(rill_shrink(b), 0); /* the held bytes keep the write buffer */
    ck_assert_int_eq(rill_flush(b), RILL_OK);
    ck_assert_uint_eq(rt_live_bytes, idle); /* released by the flush */
    char got[10];
    peer_read_exact(peer, got, sizeof got);
    ck_assert_mem_eq(got, "0123456789", 10);

    peer_write(peer, "abcdefghijklmnopqrst", 20);
    expect_read(b, "abcde");
    ck_assert_uint_eq(rt_live_bytes, idle + 8192);
    ck_assert_uint_eq(rill_shrink(b), 0); /* 15 bytes still buffered */
    expect_read(b, "fghijklmnopqrst");
    ck_assert_uint_eq(rt_live_bytes, idle); /* the last byte taken released it */

    /* A fill that fills the buffer keeps it once emptied; the next, short one does not. */
    char big[10000], back[10000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    peer_write(peer, big, sizeof big);
    size_t off = 0, n = 0;
    while (off < 8192) {
        ck_assert_int_eq(rill_read(b, back + off, 1000 < 8192 - off ? 1000 : 8192 - off, &n),
                         RILL_OK);
        off += n;
    }
    ck_assert_uint_eq(off, 8192);
    ck_assert_uint_eq(rt_live_bytes, idle + 8192); /* kept: more was waiting */
    ck_assert_int_eq(rill_read_full(b, back + off, sizeof big - off, &n), RILL_OK);
    ck_assert_mem_eq(back, big, sizeof big);
    ck_assert_uint_eq(rt_live_bytes, idle);

    /* Kept after a full fill, rill_shrink releases it. */
    peer_write(peer, big, 8192);
    for (off = 0; off < 8192; off += n)
        ck_assert_int_eq(rill_read(b, back + off, 1000 < 8192 - off ? 1000 : 8192 - off, &n),
                         RILL_OK);
    ck_assert_mem_eq(back, big, 8192);
    ck_assert_uint_eq(rill_shrink(b), 8192);
    ck_assert_uint_eq(rt_live_bytes, idle);
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
    ck_assert_uint_eq(rt_live_bytes, 0);
    rt_counting_off();
}
END_TEST

START_TEST(test_out_of_memory)
{
    rt_counting_on();
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *b = NULL;

    /* The constructor fails cleanly and the caller keeps a working inner stream. */
    rt_allocs_left = 0;
    rt_assert_error(inner, rill_buffered_new(inner, 64, 64, 0, &b), RILL_E_NOMEM, "out of memory");
    ck_assert_ptr_null(b);
    rt_allocs_left = -1;
    size_t n = 0;
    ck_assert_int_eq(rill_write(inner, "x", 1, &n), RILL_OK);

    b = buffered_over(inner, 64, 32);
    peer_write(peer, "data", 4);
    char buf[4];
    rt_allocs_left = 0;
    rt_assert_error(b, rill_read(b, buf, 1, &n), RILL_E_NOMEM,
                    "buffered: out of memory (64-byte read buffer)");
    rt_assert_error(b, rill_write(b, "y", 1, &n), RILL_E_NOMEM,
                    "buffered: out of memory (32-byte write buffer)");
    rt_allocs_left = -1;
    /* Nothing was lost: the stream works once memory is back. */
    expect_read(b, "data");
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
    ck_assert_uint_eq(rt_live_bytes, 0);
    rt_counting_off();
}
END_TEST

/* ---- end of stream and half-close ---- */

START_TEST(test_eof_and_half_close)
{
    int peer;
    rill_stream *b = buffered_end(64, 64, &peer);
    peer_write(peer, "data", 4);
    shutdown(peer, SHUT_WR);
    expect_read(b, "data");
    char buf[8];
    size_t n = 99;
    ck_assert_int_eq(rill_read(b, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rill_read(b, buf, sizeof buf, &n), RILL_EOF);

    /* Our half-close flushes the held bytes, then sends FIN; the peer can still talk. */
    ck_assert_int_eq(rill_write_str(b, "bye", NULL), RILL_OK);
    ck_assert_uint_eq(peer_available(peer), 0);
    ck_assert_int_eq(rill_shutdown(b), RILL_OK);
    char got[3];
    peer_read_exact(peer, got, 3);
    ck_assert_mem_eq(got, "bye", 3);
    ck_assert_int_eq(read(peer, got, 1), 0);
    ck_assert_int_eq(rill_write(b, "z", 1, &n), RILL_E_CLOSED);
    ck_assert_int_eq(rill_shutdown(b), RILL_OK);
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_eof_after_peer_closes_mid_read)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    peer_write(peer, "12345", 5);
    close(peer);
    char buf[10];
    size_t n = 0;
    ck_assert_int_eq(rill_read_full(b, buf, sizeof buf, &n), RILL_EOF);
    ck_assert_uint_eq(n, 5);
    ck_assert_mem_eq(buf, "12345", 5);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

/* ---- timeouts ---- */

START_TEST(test_read_timeout)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    ck_assert_int_eq(rill_set_timeouts(b, 200, 200), RILL_OK);
    char buf[8];
    size_t n = 0;
    int64_t t0 = (rt_now_us() / 1000);
    rt_assert_error(b, rill_read(b, buf, sizeof buf, &n), RILL_E_TIMEOUT,
                    "buffered: read timed out after 200 ms");
    int64_t waited = (rt_now_us() / 1000) - t0;
    ck_assert_int_ge(waited, 190);
    ck_assert_int_lt(waited, 2000);
    /* The stream stays usable. */
    peer_write(peer, "late", 4);
    expect_read(b, "late");
    close(peer);
    ck_assert_int_eq(rill_close(b), RILL_OK);
}
END_TEST

START_TEST(test_write_timeout)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    ck_assert_int_eq(rill_set_timeouts(b, -1, 200), RILL_OK);
    const size_t len = 16u << 20;
    unsigned char *big = calloc(1, len);
    ck_assert_ptr_nonnull(big);
    size_t n = 0;
    int64_t t0 = (rt_now_us() / 1000);
    rt_assert_error(b, rill_write_all(b, big, len, &n), RILL_E_TIMEOUT,
                    "write timed out after 200 ms");
    ck_assert_int_ge((rt_now_us() / 1000) - t0, 190);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_lt(n, len);
    free(big);

    /* Bytes held in the buffer time out at flush. */
    fill_socket(b);
    ck_assert_int_eq(rill_write(b, "abc", 3, &n), RILL_OK);
    ck_assert_int_eq(rill_set_timeouts(b, -1, 100), RILL_OK);
    rt_assert_error(b, rill_flush(b), RILL_E_TIMEOUT, "write timed out");
    close(peer);
    rill_close(b);
}
END_TEST

START_TEST(test_nonblocking_read_and_write)
{
    int peer;
    rill_stream *b = buffered_end(4096, 4096, &peer);
    ck_assert_int_eq(rill_set_timeouts(b, 0, 0), RILL_OK);
    char buf[16];
    size_t n = 0;
    ck_assert_int_eq(rill_read(b, buf, sizeof buf, &n), RILL_WANT_READ);
    ck_assert_uint_eq(n, 0);
    int fd = -1;
    short events = 0;
    ck_assert_int_eq(rill_poll_info(b, &fd, &events), RILL_OK);
    ck_assert_int_ne(fd, -1);
    ck_assert_int_eq(fd, rill_fd(b));
    ck_assert(events & POLLIN);

    peer_write(peer, "ready", 5);
    struct pollfd p = { .fd = fd, .events = events };
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert_int_eq(rill_read(b, buf, 2, &n), RILL_OK);
    ck_assert_mem_eq(buf, "re", 2);
    /* Buffered bytes need no wait: rill_pending tells the caller not to poll. */
    ck_assert_uint_eq(rill_pending(b), 3);
    ck_assert_int_eq(rill_read(b, buf, sizeof buf, &n), RILL_OK);
    ck_assert_uint_eq(n, 3);

    fill_socket(b);
    ck_assert_int_eq(rill_poll_info(b, &fd, &events), RILL_OK);
    ck_assert(events & POLLOUT);
    close(peer);
    rill_close(b);
}
END_TEST

/* ---- arguments, ownership, descriptors, describe ---- */

START_TEST(test_invalid_arguments)
{
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(NULL, 64, 64, 0, &b), RILL_E_INVALID);
    rt_assert_error(inner, rill_buffered_new(inner, 64, 64, 0, NULL), RILL_E_INVALID,
                    "out is NULL");
    rt_assert_error(inner, rill_buffered_new(inner, 0, 64, 0, &b), RILL_E_INVALID,
                    "read size 0 out of range");
    rt_assert_error(inner, rill_buffered_new(inner, 64, 0, 0, &b), RILL_E_INVALID,
                    "write size 0 out of range");
    rt_assert_error(inner, rill_buffered_new(inner, ((size_t)1 << 30) + 1, 64, 0, &b),
                    RILL_E_INVALID, "read size 1073741825 out of range");
    rt_assert_error(inner, rill_buffered_new(inner, 64, SIZE_MAX, 0, &b), RILL_E_INVALID,
                    "write size");
    ck_assert_ptr_null(b);

    /* peek/unread need a buffered stream on top. */
    const void *data;
    size_t avail;
    rt_assert_error(inner, rill_peek(inner, 1, &data, &avail), RILL_E_INVALID,
                    "rill_peek: not a buffered stream (top layer is fd)");
    rt_assert_error(inner, rill_unread(inner, "x", 1), RILL_E_INVALID,
                    "rill_unread: not a buffered stream");
    ck_assert_int_eq(rill_peek(NULL, 1, &data, &avail), RILL_E_INVALID);
    ck_assert_int_eq(rill_unread(NULL, "x", 1), RILL_E_INVALID);

    /* The failed constructors left inner with its caller, working. */
    b = buffered_over(inner, 64, 64);
    rt_assert_error(b, rill_peek(b, 0, &data, &avail), RILL_E_INVALID, "want 0 out of range");
    rt_assert_error(b, rill_peek(b, 65, &data, &avail), RILL_E_INVALID,
                    "want 65 out of range (1 .. read size 64)");
    rt_assert_error(b, rill_peek(b, 1, NULL, &avail), RILL_E_INVALID, "NULL");
    rt_assert_error(b, rill_peek(b, 1, &data, NULL), RILL_E_INVALID, "NULL");
    rt_assert_error(b, rill_unread(b, NULL, 1), RILL_E_INVALID, "rill_unread: data is NULL");

    rill_stream *l = NULL;
    ck_assert_int_eq(rill_lines_new(b, 100, RILL_EOL_LF, 0, &l), RILL_OK);
    rt_assert_error(l, rill_peek(l, 1, &data, &avail), RILL_E_INVALID,
                    "not a buffered stream (top layer is lines)");

    peer_write(peer, "ok", 2);
    expect_read(l, "ok");
    close(peer);
    ck_assert_int_eq(rill_close(l), RILL_OK);
}
END_TEST

START_TEST(test_borrow_leaves_inner_open)
{
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *b = NULL;
    ck_assert_int_eq(rill_buffered_new(inner, 64, 64, RILL_BORROW, &b), RILL_OK);
    ck_assert_int_eq(rill_write_str(b, "flushed on close", NULL), RILL_OK);
    ck_assert_int_eq(rill_close(b), RILL_OK);
    char got[16];
    peer_read_exact(peer, got, sizeof got);
    ck_assert_mem_eq(got, "flushed on close", 16);
    size_t n = 0;
    ck_assert_int_eq(rill_write(inner, "!", 1, &n), RILL_OK);
    peer_read_exact(peer, got, 1);
    ck_assert_int_eq(got[0], '!');
    close(peer);
    ck_assert_int_eq(rill_close(inner), RILL_OK);
}
END_TEST

START_TEST(test_no_descriptor_leak)
{
    int before = rt_count_fds();
    for (int i = 0; i < 3; i++) {
        rill_stream *client = NULL, *server = NULL;
        rt_tcp_pair(&client, &server);
        rill_stream *c = buffered_over(client, 128, 128);
        rill_stream *s = buffered_over(server, 128, 128);
        ck_assert_int_eq(rill_write_str(c, "ping", NULL), RILL_OK);
        ck_assert_int_eq(rill_flush(c), RILL_OK);
        expect_read(s, "ping");
        ck_assert_int_eq(rill_close(c), RILL_OK);
        ck_assert_int_eq(rill_close(s), RILL_OK);
    }
    int peer;
    rill_stream *b = buffered_end(64, 64, &peer);
    close(peer);
    rill_close(b);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

START_TEST(test_describe)
{
    int peer;
    rill_stream *inner = rt_fd_end(&peer);
    rill_stream *b = buffered_over(inner, 16384, 16384);
    char buf[256];
    size_t len = rill_describe(b, buf, sizeof buf);
    ck_assert_uint_eq(len, strlen(buf));
    ck_assert_msg(strncmp(buf, "buffered(16384) > fd", 20) == 0, "describe: %s", buf);
    ck_assert_str_eq(rill_kind(b), "buffered");
    ck_assert_ptr_eq(rill_find(b, RILL_LAYER_BUFFERED), b);
    ck_assert_ptr_eq(rill_find(b, RILL_LAYER_FD), inner);
    ck_assert_int_eq(rill_fd(b), rill_fd(inner));

    rill_stream *b2 = buffered_over(b, 16384, 4096);
    len = rill_describe(b2, buf, sizeof buf);
    ck_assert_msg(strncmp(buf, "buffered(r=16384 w=4096) > buffered(16384) > fd", 47) == 0,
                  "describe: %s", buf);
    /* Truncation reports the full length, like snprintf. */
    char tiny[10];
    ck_assert_uint_eq(rill_describe(b2, tiny, sizeof tiny), len);
    ck_assert_str_eq(tiny, "buffered(");
    close(peer);
    ck_assert_int_eq(rill_close(b2), RILL_OK);
}
END_TEST

START_TEST(test_error_names_the_chain)
{
    rill_stream *client = NULL, *server = NULL;
    rt_tcp_pair(&client, &server);
    rill_stream *c = buffered_over(client, 64, 64);
    /* An abortive close from the server makes the client's next read fail with a reset. */
    struct linger lg = { 1, 0 };
    int sfd = rill_fd(server);
    ck_assert_int_eq(setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ck_assert_int_eq(rill_write_str(c, "x", NULL), RILL_OK);
    ck_assert_int_eq(rill_flush(c), RILL_OK);
    usleep(50 * 1000);
    rill_close(server);
    char buf[4];
    size_t n = 0;
    rt_assert_error(c, rill_read(c, buf, sizeof buf, &n), RILL_E_RESET, "buffered: tcp: ");
    rill_close(c);
}
END_TEST

Suite *rill_test_suite(void)
{
    Suite *s = suite_create("buffered");
    TCase *tc = tcase_create("io");
    tcase_add_test(tc, test_echo_both_ways);
    tcase_add_test(tc, test_partial_reads_come_from_the_buffer);
    tcase_add_test(tc, test_byte_at_a_time_reads);
    tcase_add_test(tc, test_large_read_bypasses_buffer);
    tcase_add_test(tc, test_large_write_goes_through_in_order);
    tcase_add_test(tc, test_write_through_never_allocates);
    tcase_add_test(tc, test_bulk_random_chunks_tcp);
    tcase_add_test(tc, test_flush_before_read);
    tcase_add_test(tc, test_read_not_held_up_by_stuck_write);
    tcase_add_test(tc, test_eof_and_half_close);
    tcase_add_test(tc, test_eof_after_peer_closes_mid_read);
    tcase_add_test(tc, test_error_names_the_chain);
    suite_add_tcase(s, tc);

    tc = tcase_create("peek_unread");
    tcase_add_test(tc, test_peek_does_not_consume);
    tcase_add_test(tc, test_peek_waits_for_more);
    tcase_add_test(tc, test_peek_at_eof);
    tcase_add_test(tc, test_unread);
    tcase_add_test(tc, test_unread_of_peeked_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("memory");
    tcase_add_loop_test(tc, test_buffers_released_when_idle, 0, 3);
    tcase_add_test(tc, test_out_of_memory);
    suite_add_tcase(s, tc);

    tc = tcase_create("timeouts");
    tcase_add_test(tc, test_read_timeout);
    tcase_add_test(tc, test_write_timeout);
    tcase_add_test(tc, test_nonblocking_read_and_write);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_add_test(tc, test_invalid_arguments);
    tcase_add_test(tc, test_borrow_leaves_inner_open);
    tcase_add_test(tc, test_no_descriptor_leak);
    tcase_add_test(tc, test_describe);
    suite_add_tcase(s, tc);
    return s;
}
