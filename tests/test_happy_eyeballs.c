/* SPDX-License-Identifier: MIT */
/*
 * RFC 8305 (Happy Eyeballs) through the blocking rill_connect, timed against a scripted DNS
 * responder (tests/support/dns_delay.c) that answers A and AAAA each after a delay of its own,
 * with an error, or never, and rill listeners on 127.0.0.1 and ::1 that tell the client which
 * family it reached. The cases themselves are in tests/support/he_cases.c, shared with the suite
 * of the non-blocking connect op:
 *
 *  - the resolution delay: connect on an early A answer after it (default 50 ms, 0, 500), at
 *    once on the AAAA answer, and at once when AAAA comes within the delay;
 *  - a family whose query is late, never answered, SERVFAIL or NODATA neither fails nor slows a
 *    connect the other family can make; answers for a family nobody listens on are refused at
 *    once and do not end a connect while the other answer is pending;
 *  - both answers late, both never (the one deadline, and a message saying what each family
 *    did), both failing;
 *  - the trace: one ANSWER per family with its time, every ATTEMPT after the answer that named
 *    its address, CONNECTED last; TLS_HANDSHAKE/TLS_DONE with a TLS connect; the deadline
 *    covering DNS and the handshake;
 *  - in private network namespaces with addresses that swallow SYNs: the connection attempt
 *    delay (default 250 ms, the 10 ms floor), families interleaved with earlier attempts kept
 *    running, a late AAAA answer joining a race in flight, the deadline covering DNS and TCP.
 *
 * This file also tests the responder itself: malformed queries, EDNS, case, NXDOMAIN/NODATA
 * with an SOA, delays that do not block other answers, TCP.
 *
 * Bounds are generous (the machines are shared) but far below the slow answer's delay.
 * Loopback only; the blackholed addresses exist only inside the namespaces the tests make.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certs.h"
#include "dns_delay.h"
#include "he_cases.h"
#include "support.h"

#define DOMAIN RT_HE_DOMAIN
#define NEVER  RT_DNSD_NEVER

static void teardown(void)
{
    rt_dnsd_stop_all();
    rt_watchdog(0, NULL);
}

START_TEST(test_scenario)
{
    rt_he_scenario(_i, rill_connect);
}
END_TEST

/* rill_connect_opts_init gives the RFC's delays. */
START_TEST(test_default_delays)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    ck_assert_int_eq(o.resolution_delay_ms, 50);
    ck_assert_int_eq(o.attempt_delay_ms, 250);
}
END_TEST

START_TEST(test_refusals_start_next_at_once)
{
    rt_he_refusals_start_next_at_once(rill_connect);
}
END_TEST

START_TEST(test_tls_events)
{
    rt_he_tls_events(rill_connect);
}
END_TEST

START_TEST(test_deadline_covers_dns_and_tls)
{
    rt_he_deadline_covers_dns_and_tls(rill_connect);
}
END_TEST

START_TEST(test_attempt_delay)
{
    rt_he_attempt_delay(_i, rill_connect);
}
END_TEST

START_TEST(test_interleave_keep_running)
{
    rt_he_interleave_keep_running(rill_connect);
}
END_TEST

START_TEST(test_late_answer_joins_race)
{
    rt_he_late_answer_joins_race(rill_connect);
}
END_TEST

START_TEST(test_deadline_covers_dns_and_tcp)
{
    rt_he_deadline_covers_dns_and_tcp(rill_connect);
}
END_TEST

/* ---- the responder itself ---- */

/* Encode a query for @p name and @p type; @p edns adds an OPT record. Returns the length. */
static size_t make_query(unsigned char *buf, size_t cap, unsigned id, const char *name, int type,
                         int edns)
{
    ck_assert_uint_lt(strlen(name) + 32, cap);
    size_t n = 0;
    buf[n++] = (unsigned char)(id >> 8);
    buf[n++] = (unsigned char)id;
    buf[n++] = 0x01; /* RD */
    buf[n++] = 0x00;
    buf[n++] = 0;
    buf[n++] = 1;
    memset(buf + n, 0, 6);
    if (edns)
        buf[n + 5] = 1; /* ARCOUNT */
    n += 6;
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t label = dot ? (size_t)(dot - p) : strlen(p);
        buf[n++] = (unsigned char)label;
        memcpy(buf + n, p, label);
        n += label;
        p += label + (dot ? 1 : 0);
    }
    buf[n++] = 0;
    buf[n++] = (unsigned char)(type >> 8);
    buf[n++] = (unsigned char)type;
    buf[n++] = 0;
    buf[n++] = 1;
    if (edns) {
        static const unsigned char opt[] = { 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0 };
        memcpy(buf + n, opt, sizeof opt);
        n += sizeof opt;
    }
    return n;
}

static int udp_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

/* Receive one datagram within @p ms; its length, or -1. */
static ssize_t recv_within(int fd, unsigned char *buf, size_t cap, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, ms) != 1)
        return -1;
    return recv(fd, buf, cap, 0);
}

static unsigned g16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

START_TEST(test_responder)
{
    rt_watchdog(30, "test_responder");
    int fds = rt_count_fds();
    rt_dnsd *d = rt_dnsd_start();
    ck_assert_int_eq(rt_dnsd_set(d, "fast." DOMAIN, RT_DNSD_A, "127.0.0.1", 0, 0, 77), 0);
    ck_assert_int_eq(rt_dnsd_add(d, "fast." DOMAIN, RT_DNSD_A, "127.0.0.2"), 0);
    ck_assert_int_eq(rt_dnsd_set(d, "slow." DOMAIN, RT_DNSD_AAAA, "::1", 300, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, "mute." DOMAIN, RT_DNSD_A, "127.0.0.1", NEVER, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, "fail." DOMAIN, RT_DNSD_A, NULL, 0, RT_DNSD_SERVFAIL, 60), 0);
    /* Bad arguments are refused, not half-applied. */
    ck_assert_int_eq(rt_dnsd_set(d, "x." DOMAIN, RT_DNSD_A, "::1", 0, 0, 60), -1);
    ck_assert_int_eq(rt_dnsd_set(d, "", RT_DNSD_A, NULL, 0, 0, 60), -1);
    ck_assert_int_eq(rt_dnsd_add(d, "nothing." DOMAIN, RT_DNSD_A, "127.0.0.1"), -1);

    int fd = udp_to(rt_dnsd_port(d));
    unsigned char q[512], a[1500];
    /* Malformed: too short, a response, two questions, a compression pointer, a label past the
     * end, a name with a space. None is answered; all are counted. */
    static const unsigned char junk_short[] = { 1, 2, 3 };
    ck_assert_int_eq(send(fd, junk_short, sizeof junk_short, 0), (ssize_t)sizeof junk_short);
    size_t n = make_query(q, sizeof q, 1, "fast." DOMAIN, RT_DNSD_A, 0);
    q[2] |= 0x80;
    ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);
    n = make_query(q, sizeof q, 2, "fast." DOMAIN, RT_DNSD_A, 0);
    q[5] = 2;
    ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);
    n = make_query(q, sizeof q, 3, "fast." DOMAIN, RT_DNSD_A, 0);
    q[12] = 0xc0;
    ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);
    ck_assert_uint_gt(make_query(q, sizeof q, 4, "fast." DOMAIN, RT_DNSD_A, 0), 20);
    q[12] = 60;
    ck_assert_int_eq(send(fd, q, 20, 0), 20);
    n = make_query(q, sizeof q, 5, "fa t." DOMAIN, RT_DNSD_A, 0);
    ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);

    /* A slow query first, then a fast one in mixed case with EDNS: the fast answer comes
     * first, two A records, TTL 77, the question echoed as sent. */
    int64_t t0 = rt_now_us();
    n = make_query(q, sizeof q, 0x1111, "slow." DOMAIN, RT_DNSD_AAAA, 0);
    ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);
    n = make_query(q, sizeof q, 0x2222, "FaSt.He.RiLl.TeSt", RT_DNSD_A, 1);
    ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);
    ssize_t got = recv_within(fd, a, sizeof a, 2000);
    ck_assert_int_gt(got, 12);
    ck_assert_uint_eq(g16(a), 0x2222);
    ck_assert_msg(rt_now_us() - t0 < 200000, "the fast answer waited for the slow one");
    ck_assert_uint_eq(a[3] & 0x0f, 0);
    ck_assert_uint_eq(g16(a + 6), 2); /* ANCOUNT */
    size_t qlen = n - 12 - 11;        /* the question without the OPT record */
    ck_assert_msg(memcmp(a + 12, q + 12, qlen) == 0, "question not echoed as sent");
    const unsigned char *rr = a + 12 + qlen;
    ck_assert_uint_eq(g16(rr), 0xc00c);
    ck_assert_uint_eq(g16(rr + 2), RT_DNSD_A);
    ck_assert_uint_eq(g16(rr + 8), 77);
    ck_assert_uint_eq(g16(rr + 10), 4);
    ck_assert_int_eq(memcmp(rr + 12, "\x7f\x00\x00\x01", 4), 0);
    ck_assert_int_eq(memcmp(rr + 16 + 12, "\x7f\x00\x00\x02", 4), 0);
    got = recv_within(fd, a, sizeof a, 2000);
    ck_assert_int_gt(got, 12);
    ck_assert_uint_eq(g16(a), 0x1111);
    ck_assert_msg(rt_now_us() - t0 >= 290000, "the slow answer came after %lld us",
                  (long long)(rt_now_us() - t0));
    ck_assert_uint_eq(g16(a + 6), 1);

    /* NODATA (known name, other type) and NXDOMAIN carry an SOA; SERVFAIL has no records. */
    struct {
        const char *name;
        int type;
        unsigned rcode, ancount, nscount;
    } expect[] = {
        { "fast." DOMAIN, RT_DNSD_AAAA, 0, 0, 1 },
        { "unknown." DOMAIN, RT_DNSD_A, 3, 0, 1 },
        { "fail." DOMAIN, RT_DNSD_A, 2, 0, 0 },
    };
    for (size_t k = 0; k < sizeof expect / sizeof expect[0]; k++) {
        n = make_query(q, sizeof q, (unsigned)(0x3000 + k), expect[k].name, expect[k].type, 0);
        ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);
        got = recv_within(fd, a, sizeof a, 2000);
        ck_assert_msg(got > 12, "no answer for %s", expect[k].name);
        ck_assert_uint_eq(g16(a), 0x3000 + k);
        ck_assert_uint_eq(a[3] & 0x0f, expect[k].rcode);
        ck_assert_uint_eq(g16(a + 6), expect[k].ancount);
        ck_assert_uint_eq(g16(a + 8), expect[k].nscount);
        if (expect[k].nscount)
            ck_assert_uint_eq(g16(a + n + 2), 6); /* SOA right after the question */
    }
    /* Never: counted, not answered. */
    n = make_query(q, sizeof q, 0x4444, "mute." DOMAIN, RT_DNSD_A, 0);
    ck_assert_int_eq(send(fd, q, n, 0), (ssize_t)n);
    ck_assert_int_eq(recv_within(fd, a, sizeof a, 300), -1);
    ck_assert_int_eq(rt_dnsd_count(d, "mute." DOMAIN, RT_DNSD_A), 1);
    ck_assert_int_eq(rt_dnsd_malformed(d), 6);
    ck_assert_int_eq(rt_dnsd_count(d, "fast." DOMAIN, RT_DNSD_A), 1);
    ck_assert_int_eq(rt_dnsd_count(d, "FAST." DOMAIN, 0), 2);
    int64_t at[2];
    ck_assert_int_eq(rt_dnsd_arrivals(d, "slow." DOMAIN, RT_DNSD_AAAA, at, 2), 1);
    ck_assert_msg(at[0] >= t0 && at[0] - t0 < 100000, "arrival %lld us after the send",
                  (long long)(at[0] - t0));
    close(fd);

    /* Truncated UDP answers make c-ares ask again over TCP, where the rules apply too. */
    rt_dnsd_truncate_udp(d, 1);
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
    rill_addr *addrs = NULL;
    size_t count = 0;
    rill_error err;
    rill_status st = rill_resolve(ctx, "fast." DOMAIN, 80, 5000, &addrs, &count, &err);
    ck_assert_msg(st == RILL_OK, "resolve over TCP: %s", err.msg);
    ck_assert_uint_eq(count, 2);
    rill_addrs_free(addrs);
    ck_assert_int_ge(rt_dnsd_count_tcp(d, "fast." DOMAIN, RT_DNSD_A), 1);
    rill_ctx_free(ctx);
    rt_dnsd_stop(d);
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}
END_TEST

Suite *rill_test_suite(void)
{
    char why[256];
    if (!rt_certs_prepare(why, sizeof why))
        fprintf(stderr, "happy_eyeballs: certificates not made yet: %s\n", why);
    Suite *s = suite_create("happy_eyeballs");

    TCase *tc = tcase_create("responder");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_responder);
    suite_add_tcase(s, tc);

    tc = tcase_create("dns timing");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_default_delays);
    tcase_add_loop_test(tc, test_scenario, 0, rt_he_scenario_count());
    tcase_add_test(tc, test_refusals_start_next_at_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("tls");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tls_events);
    tcase_add_test(tc, test_deadline_covers_dns_and_tls);
    suite_add_tcase(s, tc);

    tc = tcase_create("blackholes");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_attempt_delay, 0, RT_HE_ATTEMPT_DELAY_VARIANTS);
    tcase_add_test(tc, test_interleave_keep_running);
    tcase_add_test(tc, test_late_answer_joins_race);
    tcase_add_test(tc, test_deadline_covers_dns_and_tcp);
    suite_add_tcase(s, tc);
    return s;
}
