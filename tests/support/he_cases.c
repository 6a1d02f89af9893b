/* SPDX-License-Identifier: MIT */
/*
 * The Happy Eyeballs cases of he_cases.h, run through a connect function of the suite's
 * choosing. Each case starts its own responder, listeners and context, runs the connect once,
 * frees everything, then asserts what it saw (so a failure leaves nothing behind).
 */
#include "he_cases.h"

#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certs.h"
#include "dns_delay.h"
#include "eyeballs.h"
#include "support.h"

#define DOMAIN RT_HE_DOMAIN
#define NEVER  RT_DNSD_NEVER
#define FAM46  (RT_FAM4 | RT_FAM6)

int rt_he_have_v6(const char *test)
{
    char why[160];
    if (rt_ipv6_loopback(why, sizeof why))
        return 1;
    fprintf(stderr, "SKIP %s: IPv6 loopback ::1 unavailable (%s)\n", test, why);
    return 0;
}

rill_ctx *rt_he_ctx_for(const char *servers)
{
    rill_ctx_opts o;
    rill_ctx_opts_init(&o);
    o.dns_servers = servers;
    rill_ctx *ctx = NULL;
    rill_error err;
    rill_status st = rill_ctx_new(&o, &ctx, &err);
    ck_assert_msg(st == RILL_OK, "rill_ctx_new: %s", err.msg);
    return ctx;
}

/* Whether @p msg contains @p word with no letter or digit on either side. */
static int has_word(const char *msg, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = msg; (p = strstr(p, word)) != NULL; p++) {
        int alnum_before = p > msg && isalnum((unsigned char)p[-1]);
        int alnum_after = isalnum((unsigned char)p[n]);
        if (!alnum_before && !alnum_after)
            return 1;
    }
    return 0;
}

/* Whether an error message says what the lookup of family @p family (4: A, 6: AAAA) did. */
int rt_he_mentions_family(const char *msg, int family)
{
    if (family == 4)
        return has_word(msg, "A") || strstr(msg, "IPv4") != NULL;
    return has_word(msg, "AAAA") || strstr(msg, "IPv6") != NULL;
}

/* Whether @p msg contains one of the '|'-separated alternatives of @p words (any case). */
static int contains_any(const char *msg, const char *words)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", words);
    char *save = NULL;
    for (char *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save)) {
        if (strcasestr(msg, w) != NULL)
            return 1;
    }
    return 0;
}

/* @p msg with every occurrence of @p host blanked out, so words are not found in the name. */
static void without_host(const char *msg, const char *host, char *buf, size_t len)
{
    snprintf(buf, len, "%s", msg);
    size_t n = strlen(host);
    for (char *p = buf; n > 0 && (p = strstr(p, host)) != NULL; p += n)
        memset(p, ' ', n);
}

/* ---- checks shared by the cases ---- */

/*
 * The order every trace keeps: no overflow, every event names @p host, time never goes back,
 * RESOLVING comes first, each family answers at most once, every attempt comes after an ANSWER
 * that knew an address of its family, nothing but the TLS steps follows CONNECTED.
 */
void rt_he_check_trace_order(const rt_trace *t, const char *host, rt_verdict *v)
{
    RT_EXPECT(v, !t->overflow, "more than %d events", RT_TRACE_MAX);
    RT_EXPECT(v, t->n > 0 && t->ev[0].type == RILL_EV_RESOLVING,
              "the first event is not RESOLVING");
    int64_t last = 0;
    int bad = 0; /* one complaint per trace is enough */
    for (int i = 0; i < t->n && !bad; i++) {
        const rt_event *e = &t->ev[i];
        bad += RT_EXPECT(v, strcmp(e->host, host) == 0, "event %d names host \"%s\", not %s", i,
                         e->host, host);
        bad += RT_EXPECT(v, e->elapsed_ms >= last, "event %d goes back in time", i);
        last = e->elapsed_ms;
        if (e->type == RILL_EV_ATTEMPT) {
            int fam = rt_addr_family(e->addr);
            int answer = rt_trace_find(t, RILL_EV_ANSWER, fam, 0);
            bad += RT_EXPECT(v, answer >= 0 && answer < i && t->ev[answer].status == RILL_OK,
                             "ATTEMPT %s (event %d) without an earlier ANSWER for IPv%d", e->addr,
                             i, fam);
        }
        if (e->type == RILL_EV_CONNECTED)
            bad += RT_EXPECT(v,
                             i == t->n - 1 || (t->ev[i + 1].type == RILL_EV_TLS_HANDSHAKE &&
                                               rt_trace_find(t, RILL_EV_ATTEMPT, 0, i) < 0),
                             "events after CONNECTED (event %d of %d)", i, t->n);
    }
    RT_EXPECT(v, rt_trace_count(t, RILL_EV_ANSWER, 4) <= 1, "%d ANSWER events for IPv4",
              rt_trace_count(t, RILL_EV_ANSWER, 4));
    RT_EXPECT(v, rt_trace_count(t, RILL_EV_ANSWER, 6) <= 1, "%d ANSWER events for IPv6",
              rt_trace_count(t, RILL_EV_ANSWER, 6));
    RT_EXPECT(v, rt_trace_count(t, RILL_EV_CONNECTED, 0) <= 1, "more than one CONNECTED");
}

/* The family field of every event that has one: 4 or 6, matching the address if any. */
void rt_he_check_trace_fields(const rt_trace *t, rt_verdict *v)
{
    int bad = 0; /* one complaint per trace is enough */
    for (int i = 0; i < t->n && !bad; i++) {
        const rt_event *e = &t->ev[i];
        if (e->type == RILL_EV_ANSWER)
            bad += RT_EXPECT(v, e->family == 4 || e->family == 6, "ANSWER %d has family %d", i,
                             e->family);
        if (e->type == RILL_EV_ATTEMPT || e->type == RILL_EV_ATTEMPT_FAILED ||
            e->type == RILL_EV_CONNECTED || e->type == RILL_EV_TLS_HANDSHAKE ||
            e->type == RILL_EV_TLS_DONE) {
            int fam = rt_addr_family(e->addr);
            bad += RT_EXPECT(v, fam != 0 && e->family == fam, "%s %s at event %d reports family %d",
                             rt_event_name(e->type), e->addr, i, e->family);
        }
    }
}

/* Both of the above, the order first (it says more when something is wrong). */
void rt_he_check_trace_basics(const rt_trace *t, const char *host, rt_verdict *v)
{
    rt_he_check_trace_order(t, host, v);
    rt_he_check_trace_fields(t, v);
}

/*
 * The ANSWER of @p family against what the responder did: an answer sent at @p delay_ms
 * (NEVER: none) with @p naddrs addresses (0 and @p rcode 0: NODATA). It must not be reported
 * before it was sent, must carry the addresses, and must be reported when it arrived well before
 * the connect ended (@p took_ms).
 */
static void check_answer(const rt_trace *t, int family, int delay_ms, int naddrs, int rcode,
                         int64_t took_ms, rt_verdict *v)
{
    int i = rt_trace_find(t, RILL_EV_ANSWER, family, 0);
    if (delay_ms == NEVER) {
        RT_EXPECT(v, i < 0 || t->ev[i].status != RILL_OK,
                  "ANSWER for IPv%d with status OK, but the server never answered", family);
        return;
    }
    if (i < 0) {
        RT_EXPECT(v, delay_ms + 150 > took_ms,
                  "no ANSWER event for IPv%d, answered at %d ms, connect ended at %lld ms", family,
                  delay_ms, (long long)took_ms);
        return;
    }
    const rt_event *e = &t->ev[i];
    RT_EXPECT(v, e->elapsed_ms >= delay_ms - 5,
              "ANSWER for IPv%d reported at %lld ms, before the server sent it (%d ms)", family,
              (long long)e->elapsed_ms, delay_ms);
    if (rcode == 0 && naddrs > 0) {
        RT_EXPECT(v, e->status == RILL_OK && e->count == (size_t)naddrs,
                  "ANSWER for IPv%d: status %d count %zu, wanted OK with %d", family,
                  (int)e->status, e->count, naddrs);
    } else {
        RT_EXPECT(v, e->status != RILL_OK || e->count == 0,
                  "ANSWER for IPv%d claims %zu addresses; the server sent none (rcode %d)", family,
                  e->count, rcode);
        RT_EXPECT(v, e->status == RILL_OK || (strcmp(e->message, "(null)") != 0 && e->message[0]),
                  "failed ANSWER for IPv%d has no message", family);
    }
}

/*
 * The resolver asked A and AAAA each at least once, both within @p within_ms of @p t0_us
 * (separate queries sent at once, not one after the other's answer).
 */
static void check_queries(rt_dnsd *d, const char *host, int64_t t0_us, int within_ms, rt_verdict *v)
{
    static const int types[2] = { RT_DNSD_A, RT_DNSD_AAAA };
    for (int k = 0; k < 2; k++) {
        int64_t at[4];
        /*
         * Both queries were sent when the connect started, but the responder reads them one
         * after the other in its own thread: a connect won through the first answer may end
         * before it has read the second query. Give it a moment (the arrival times recorded
         * are what the check is about).
         */
        int n = 0;
        for (int tries = 0; tries < 100 && (n = rt_dnsd_arrivals(d, host, types[k], at, 4)) < 1;
             tries++)
            usleep(10000);
        RT_EXPECT(v, n >= 1, "no %s query for %s reached the server", k ? "AAAA" : "A", host);
        if (n >= 1)
            RT_EXPECT(v, at[0] - t0_us < (int64_t)within_ms * 1000,
                      "the first %s query came %lld ms after the connect started", k ? "AAAA" : "A",
                      (long long)((at[0] - t0_us) / 1000));
    }
}

/* ---- the scenario table ---- */

/* Fields left out of a row are 0: no delay, NOERROR, no check. */
struct scenario {
    const char *label; /* the host is "<label>." DOMAIN */
    const char *a;     /* the A record (NULL: none) */
    int a_delay, a_rcode;
    const char *aaaa; /* the AAAA record (NULL: none) */
    int aaaa_delay, aaaa_rcode;
    int unknown;          /* 1: no rule at all for the name (NXDOMAIN) */
    int listen;           /* RT_FAM4 | RT_FAM6 */
    int rd_given, rd;     /* resolution_delay_ms, when given (else rill_connect_opts_init's) */
    int timeout_ms;       /* 0: 4000 */
    rill_status want;     /* the outcome */
    int want_family;      /* on success: the family that must win */
    int min_ms, max_ms;   /* bounds of the whole connect */
    int first_family;     /* the family of the first attempt; 0: not checked */
    int gap_min, gap_max; /* first attempt minus the IPv4 ANSWER, in ms; gap_max 0: unchecked */
    const char *words;    /* failure: the message contains one of these ('|' between) */
    int msg_families;     /* failure: the message says what these lookups did (RT_FAM*) */
    int needs_v6;
};

#define RD(ms) .rd_given = 1, .rd = (ms)

static const struct scenario scenarios[] = {
    /* AAAA 1.5 s late: IPv4 after the 50 ms resolution delay, not after the AAAA answer. */
    { .label = "aaaa-late",
      .a = "127.0.0.1",
      .aaaa = "::1",
      .aaaa_delay = 1500,
      .listen = FAM46,
      .want_family = 4,
      .min_ms = 40,
      .max_ms = 700,
      .first_family = 4,
      .gap_min = 40,
      .gap_max = 400,
      .needs_v6 = 1 },
    /* AAAA never answered: the same, and no error from the dead query. */
    { .label = "aaaa-never",
      .a = "127.0.0.1",
      .aaaa = "::1",
      .aaaa_delay = NEVER,
      .listen = FAM46,
      .want_family = 4,
      .min_ms = 40,
      .max_ms = 700,
      .first_family = 4,
      .gap_min = 40,
      .gap_max = 400,
      .needs_v6 = 1 },
    /* A 1.5 s late: IPv6 on the AAAA answer at once. */
    { .label = "a-late",
      .a = "127.0.0.1",
      .a_delay = 1500,
      .aaaa = "::1",
      .listen = FAM46,
      .want_family = 6,
      .max_ms = 500,
      .first_family = 6,
      .needs_v6 = 1 },
    /* A never answered. */
    { .label = "a-never",
      .a = "127.0.0.1",
      .a_delay = NEVER,
      .aaaa = "::1",
      .listen = FAM46,
      .want_family = 6,
      .max_ms = 500,
      .first_family = 6,
      .needs_v6 = 1 },
    /* Both 300 ms late: connect right after them, IPv6 first. */
    { .label = "both-late",
      .a = "127.0.0.1",
      .a_delay = 300,
      .aaaa = "::1",
      .aaaa_delay = 300,
      .listen = FAM46,
      .want_family = 6,
      .min_ms = 280,
      .max_ms = 1000,
      .first_family = 6,
      .needs_v6 = 1 },
    /* Neither answered: the deadline, with a message saying what each lookup did. */
    { .label = "both-never",
      .a = "127.0.0.1",
      .a_delay = NEVER,
      .aaaa = "::1",
      .aaaa_delay = NEVER,
      .listen = RT_FAM4,
      .timeout_ms = 1000,
      .want = RILL_E_TIMEOUT,
      .min_ms = 950,
      .max_ms = 1600,
      .words = "timed out",
      .msg_families = FAM46 },
    /* ::1 refuses (nobody listens there): IPv4 starts at once, not after the 250 ms delay. */
    { .label = "aaaa-refused",
      .a = "127.0.0.1",
      .aaaa = "::1",
      .listen = RT_FAM4,
      .want_family = 4,
      .max_ms = 249,
      .first_family = 6,
      .needs_v6 = 1 },
    /* 127.0.0.1 refuses while AAAA is 300 ms late: the refusal does not end the connect. */
    { .label = "a-refused-aaaa-late",
      .a = "127.0.0.1",
      .aaaa = "::1",
      .aaaa_delay = 300,
      .listen = RT_FAM6,
      .want_family = 6,
      .min_ms = 280,
      .max_ms = 1000,
      .first_family = 4,
      .gap_min = 40,
      .gap_max = 250,
      .needs_v6 = 1 },
    /* ::1 refuses at once while A is 300 ms late: the same the other way round. */
    { .label = "aaaa-refused-a-late",
      .a = "127.0.0.1",
      .a_delay = 300,
      .aaaa = "::1",
      .listen = RT_FAM4,
      .want_family = 4,
      .min_ms = 280,
      .max_ms = 1000,
      .first_family = 6,
      .needs_v6 = 1 },
    /* A SERVFAIL: IPv6 as if nothing happened. */
    { .label = "a-servfail",
      .a_rcode = RT_DNSD_SERVFAIL,
      .aaaa = "::1",
      .listen = FAM46,
      .want_family = 6,
      .max_ms = 500,
      .first_family = 6,
      .needs_v6 = 1 },
    /* AAAA SERVFAIL: IPv4, without waiting out anything. */
    { .label = "aaaa-servfail",
      .a = "127.0.0.1",
      .aaaa_rcode = RT_DNSD_SERVFAIL,
      .listen = FAM46,
      .want_family = 4,
      .max_ms = 500,
      .first_family = 4,
      .needs_v6 = 1 },
    /* AAAA NODATA: IPv4. */
    { .label = "aaaa-nodata",
      .a = "127.0.0.1",
      .listen = RT_FAM4,
      .want_family = 4,
      .max_ms = 500,
      .first_family = 4 },
    /* Both SERVFAIL: a DNS error that says what each lookup did. */
    { .label = "both-servfail",
      .a_rcode = RT_DNSD_SERVFAIL,
      .aaaa_rcode = RT_DNSD_SERVFAIL,
      .listen = RT_FAM4,
      .want = RILL_E_DNS,
      .max_ms = 1500,
      .msg_families = FAM46 },
    /* A SERVFAIL and ::1 refused: the message names the refused address and the A failure. */
    { .label = "a-servfail-aaaa-refused",
      .a_rcode = RT_DNSD_SERVFAIL,
      .aaaa = "::1",
      .listen = RT_FAM4,
      .want = RILL_E_REFUSED,
      .max_ms = 1000,
      .first_family = 6,
      .words = "::1",
      .msg_families = RT_FAM4,
      .needs_v6 = 1 },
    /* The name exists with neither record. */
    { .label = "both-nodata",
      .listen = RT_FAM4,
      .want = RILL_E_DNS,
      .max_ms = 1000,
      .msg_families = FAM46 },
    /* No such name. */
    { .label = "nxdomain",
      .unknown = 1,
      .listen = RT_FAM4,
      .want = RILL_E_DNS,
      .max_ms = 1000,
      .words = "no such name|NXDOMAIN" },
    /* resolution_delay_ms 0: IPv4 at once on the A answer. */
    { .label = "rd-0",
      .a = "127.0.0.1",
      .aaaa = "::1",
      .aaaa_delay = 1500,
      .listen = FAM46,
      RD(0),
      .want_family = 4,
      .max_ms = 300,
      .first_family = 4,
      .gap_max = 30,
      .needs_v6 = 1 },
    /* resolution_delay_ms 500: IPv4 only after it. */
    { .label = "rd-500",
      .a = "127.0.0.1",
      .aaaa = "::1",
      .aaaa_delay = 1500,
      .listen = FAM46,
      RD(500),
      .want_family = 4,
      .min_ms = 450,
      .max_ms = 1200,
      .first_family = 4,
      .gap_min = 450,
      .gap_max = 1000,
      .needs_v6 = 1 },
    /* resolution_delay_ms 500 and AAAA within it (100 ms): IPv6 on the AAAA answer. */
    { .label = "rd-500-aaaa-100",
      .a = "127.0.0.1",
      .aaaa = "::1",
      .aaaa_delay = 100,
      .listen = FAM46,
      RD(500),
      .want_family = 6,
      .min_ms = 80,
      .max_ms = 450,
      .first_family = 6,
      .needs_v6 = 1 },
};

#define NSCENARIOS ((int)(sizeof scenarios / sizeof scenarios[0]))

int rt_he_scenario_count(void)
{
    return NSCENARIOS;
}

/* Set the responder's rules for one family of a scenario. */
static void set_family(rt_dnsd *d, const char *host, int type, const char *addr, int delay,
                       int rcode)
{
    ck_assert_int_eq(rt_dnsd_set(d, host, type, rcode ? NULL : addr, delay, rcode, 60), 0);
}

struct outcome {
    rill_status st;
    rill_error err;
    int64_t t0_us;
    int64_t took_ms;
    int family; /* the family byte the server sent, 0 on failure */
    char why[200];
    char desc[256];
    rt_trace trace;
};

/* Connect, time it, and on success read which listener took the connection. */
static void run_connect(rt_connect_fn fn, rill_ctx *ctx, const char *host, uint16_t port,
                        const rill_connect_opts *o, struct outcome *out)
{
    rill_stream *s = NULL;
    memset(&out->err, 0, sizeof out->err);
    out->t0_us = rt_now_us();
    out->st = fn(ctx, host, port, o, &s, &out->err);
    out->took_ms = (rt_now_us() - out->t0_us) / 1000;
    out->family = 0;
    out->desc[0] = '\0';
    if (out->st == RILL_OK) {
        rill_describe(s, out->desc, sizeof out->desc);
        out->family = rt_famsrv_read_family(s, out->why, sizeof out->why);
        (void)rill_close(s);
    } else if (s != NULL) {
        snprintf(out->why, sizeof out->why, "rill_connect set *out on failure");
        out->family = -2;
    }
}

/* With RILL_TEST_VERBOSE set, print the outcome and the timeline of a case on stderr. */
static void show(const char *label, const struct outcome *o)
{
    if (!getenv("RILL_TEST_VERBOSE"))
        return;
    static char text[4096];
    fprintf(stderr, "%s: %s after %lld ms%s%s\n  trace: %s\n", label, rill_strerror(o->st),
            (long long)o->took_ms, o->st != RILL_OK ? ": " : "", o->st != RILL_OK ? o->err.msg : "",
            rt_trace_text(&o->trace, text, sizeof text));
}

static void check_scenario(const struct scenario *sc, const char *host, uint16_t port, rt_dnsd *d,
                           const struct outcome *o, rt_verdict *v)
{
    RT_EXPECT(v, o->st == sc->want, "status %d (%s), wanted %d (%s); message: %s", (int)o->st,
              rill_strerror(o->st), (int)sc->want, rill_strerror(sc->want), o->err.msg);
    RT_EXPECT(v, o->took_ms >= sc->min_ms && o->took_ms <= sc->max_ms,
              "the connect returned (%s) after %lld ms, expected %d .. %d ms", rill_strerror(o->st),
              (long long)o->took_ms, sc->min_ms, sc->max_ms);
    RT_EXPECT(v, o->family != -2, "%s", o->why);
    if (sc->want == RILL_OK && o->st == RILL_OK) {
        RT_EXPECT(v, o->family == sc->want_family, "connected over IPv%d, wanted IPv%d (%s)",
                  o->family, sc->want_family, o->family < 0 ? o->why : o->desc);
        char where[64];
        snprintf(where, sizeof where, "> %s:%u", sc->want_family == 4 ? "127.0.0.1" : "[::1]",
                 (unsigned)port);
        RT_EXPECT(v, strstr(o->desc, where) != NULL, "describe \"%s\" lacks \"%s\"", o->desc,
                  where);
    }
    if (sc->want != RILL_OK && o->st != RILL_OK) {
        RT_EXPECT(v, o->err.code == o->st, "err.code %d, status %d", (int)o->err.code, (int)o->st);
        RT_EXPECT(v, strstr(o->err.msg, host) != NULL, "message \"%s\" does not name %s",
                  o->err.msg, host);
        char rest[RILL_ERRMSG_MAX]; /* the message without the host name in it */
        without_host(o->err.msg, host, rest, sizeof rest);
        if (sc->words)
            RT_EXPECT(v, contains_any(rest, sc->words), "message \"%s\" lacks \"%s\"", o->err.msg,
                      sc->words);
        if (sc->msg_families & RT_FAM4)
            RT_EXPECT(v, rt_he_mentions_family(rest, 4),
                      "message \"%s\" does not say what the A lookup did", o->err.msg);
        if (sc->msg_families & RT_FAM6)
            RT_EXPECT(v, rt_he_mentions_family(rest, 6),
                      "message \"%s\" does not say what the AAAA lookup did", o->err.msg);
    }

    const rt_trace *t = &o->trace;
    if (o->st == RILL_OK) {
        int c = rt_trace_find(t, RILL_EV_CONNECTED, 0, 0);
        RT_EXPECT(v, c >= 0 && rt_addr_family(t->ev[c].addr) == sc->want_family,
                  "no CONNECTED event for IPv%d", sc->want_family);
    } else {
        RT_EXPECT(v, rt_trace_count(t, RILL_EV_CONNECTED, 0) == 0, "CONNECTED, yet it failed");
    }
    int first = rt_trace_find(t, RILL_EV_ATTEMPT, 0, 0);
    if (sc->first_family)
        RT_EXPECT(v, first >= 0 && rt_addr_family(t->ev[first].addr) == sc->first_family,
                  "the first attempt is %s, wanted one over IPv%d",
                  first >= 0 ? t->ev[first].addr : "missing", sc->first_family);
    if (sc->gap_max > 0 && first >= 0) {
        int a = rt_trace_find(t, RILL_EV_ANSWER, 4, 0);
        RT_EXPECT(v, a >= 0, "no ANSWER for IPv4");
        if (a >= 0) {
            int64_t gap = t->ev[first].elapsed_ms - t->ev[a].elapsed_ms;
            RT_EXPECT(v, gap >= sc->gap_min && gap <= sc->gap_max,
                      "the first attempt started %lld ms after the A answer, expected %d .. %d ms"
                      " (resolution delay)",
                      (long long)gap, sc->gap_min, sc->gap_max);
        }
    }
    check_queries(d, host, o->t0_us, 300, v);
    if (!sc->unknown) {
        check_answer(t, 4, sc->a_delay, sc->a && !sc->a_rcode ? 1 : 0, sc->a_rcode, o->took_ms, v);
        check_answer(t, 6, sc->aaaa_delay, sc->aaaa && !sc->aaaa_rcode ? 1 : 0, sc->aaaa_rcode,
                     o->took_ms, v);
    }
    rt_he_check_trace_order(t, host, v);
    rt_he_check_trace_fields(t, v);
}

void rt_he_scenario(int i, rt_connect_fn fn)
{
    ck_assert_int_lt(i, NSCENARIOS);
    const struct scenario *sc = &scenarios[i];
    char test[96];
    snprintf(test, sizeof test, "test_scenario[%s]", sc->label);
    if (sc->needs_v6 && !rt_he_have_v6(test))
        return;
    rt_watchdog(30, test);
    int fds = rt_count_fds();
    char host[128];
    snprintf(host, sizeof host, "%s." DOMAIN, sc->label);

    rt_dnsd *d = rt_dnsd_start();
    if (!sc->unknown) {
        set_family(d, host, RT_DNSD_A, sc->a, sc->a_delay, sc->a_rcode);
        set_family(d, host, RT_DNSD_AAAA, sc->aaaa, sc->aaaa_delay, sc->aaaa_rcode);
    }
    char why[200];
    rt_famsrv *srv = rt_famsrv_try_start(sc->listen, RT_FAMSRV_TELL, NULL, why, sizeof why);
    ck_assert_msg(srv != NULL, "%s", why);
    uint16_t port = rt_famsrv_port(srv);
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));

    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = sc->timeout_ms ? sc->timeout_ms : 4000;
    if (sc->rd_given)
        o.resolution_delay_ms = sc->rd;
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, ctx, host, port, &o, &out);
    show(host, &out);

    rt_verdict v = { 0 };
    check_scenario(sc, host, port, d, &out, &v);
    rill_ctx_free(ctx);
    rt_famsrv_stop(srv);
    rt_dnsd_stop(d);
    char text[4096];
    ck_assert_msg(!v.failed, "%s: %d problems: %s\n  message: %s\n  trace: %s", sc->label, v.failed,
                  v.why, out.err.msg, rt_trace_text(&out.trace, text, sizeof text));
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}

/* ---- a refusal starts the next attempt at once ---- */

/*
 * AAAA answers ::1 and A 127.0.0.1, both at once; nobody listens on ::1 and the attempt delay
 * is a long 1000 ms. The ::1 attempt is refused at once and the IPv4 attempt follows at once,
 * not after the delay; the refusal appears in the trace.
 */
void rt_he_refusals_start_next_at_once(rt_connect_fn fn)
{
    if (!rt_he_have_v6("test_refusals_start_next_at_once"))
        return;
    rt_watchdog(30, "test_refusals_start_next_at_once");
    int fds = rt_count_fds();
    const char *host = "refusals." DOMAIN;
    rt_dnsd *d = rt_dnsd_start();
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_AAAA, "::1", 0, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_A, "127.0.0.1", 0, 0, 60), 0);
    char why[200];
    rt_famsrv *srv = rt_famsrv_try_start(RT_FAM4, RT_FAMSRV_TELL, NULL, why, sizeof why);
    ck_assert_msg(srv != NULL, "%s", why);
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 4000;
    o.attempt_delay_ms = 1000; /* long: a connect that waits for it shows */
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, ctx, host, rt_famsrv_port(srv), &o, &out);
    show(host, &out);
    rill_ctx_free(ctx);
    rt_famsrv_stop(srv);
    rt_dnsd_stop(d);

    rt_verdict v = { 0 };
    const rt_trace *t = &out.trace;
    RT_EXPECT(&v, out.st == RILL_OK, "connect: %s", out.err.msg);
    RT_EXPECT(&v, out.took_ms < 500, "connected after %lld ms, expected < 500 ms",
              (long long)out.took_ms);
    RT_EXPECT(&v, out.family == 4, "connected over IPv%d: %s", out.family,
              out.family < 0 ? out.why : out.desc);
    int failed = rt_trace_find(t, RILL_EV_ATTEMPT_FAILED, 0, 0);
    RT_EXPECT(&v,
              failed >= 0 && rt_addr_family(t->ev[failed].addr) == 6 &&
                  t->ev[failed].status == RILL_E_REFUSED,
              "no refused IPv6 attempt");
    int next = failed >= 0 ? rt_trace_find(t, RILL_EV_ATTEMPT, 0, failed) : -1;
    RT_EXPECT(&v,
              next >= 0 && rt_addr_family(t->ev[next].addr) == 4 &&
                  t->ev[next].elapsed_ms - t->ev[failed].elapsed_ms < 100,
              "the IPv4 attempt did not start within 100 ms of the refusal");
    rt_he_check_trace_basics(t, host, &v);
    char text[4096];
    ck_assert_msg(!v.failed, "%d problems: %s\n  trace: %s", v.failed, v.why,
                  rt_trace_text(t, text, sizeof text));
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}

/* ---- TLS: the handshake in the trace, and the deadline over DNS and the handshake ---- */

static rill_tls_config *client_tls(void)
{
    const rt_certs *c = rt_certs_get();
    rill_tls_config *cfg = NULL;
    rill_error err;
    ck_assert_msg(rill_tls_config_new(&cfg, &err) == RILL_OK, "%s", err.msg);
    ck_assert_msg(rill_tls_config_set_ca_file(cfg, c->ca, &err) == RILL_OK, "%s", err.msg);
    return cfg;
}

static rill_tls_config *server_tls(void)
{
    const rt_certs *c = rt_certs_get();
    rill_tls_config *cfg = NULL;
    rill_error err;
    ck_assert_msg(rill_tls_config_new(&cfg, &err) == RILL_OK, "%s", err.msg);
    ck_assert_msg(rill_tls_config_set_cert_file(cfg, c->good.chain, c->good.key, &err) == RILL_OK,
                  "%s", err.msg);
    return cfg;
}

/*
 * A by name, AAAA late by 1.5 s, a TLS listener on 127.0.0.1: a verified "tls > tcp" stream
 * well before the AAAA answer, and the trace shows CONNECTED, TLS_HANDSHAKE and TLS_DONE (OK)
 * on the winner, in that order.
 */
void rt_he_tls_events(rt_connect_fn fn)
{
    if (!rt_he_have_v6("test_tls_events"))
        return;
    rt_watchdog(30, "test_tls_events");
    int fds = rt_count_fds();
    const char *host = "tls." DOMAIN;
    rt_dnsd *d = rt_dnsd_start();
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_A, "127.0.0.1", 0, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_AAAA, "::1", 1500, 0, 60), 0);
    rill_tls_config *stls = server_tls(), *ctls = client_tls();
    char why[200];
    rt_famsrv *srv = rt_famsrv_try_start(FAM46, RT_FAMSRV_TELL, stls, why, sizeof why);
    ck_assert_msg(srv != NULL, "%s", why);
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 4000;
    o.tls = ctls;
    o.tls_servername = RT_CERTS_HOST;
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, ctx, host, rt_famsrv_port(srv), &o, &out);
    show(host, &out);
    rill_ctx_free(ctx);
    rt_famsrv_stop(srv);
    rill_tls_config_free(stls);
    rill_tls_config_free(ctls);
    rt_dnsd_stop(d);

    rt_verdict v = { 0 };
    const rt_trace *t = &out.trace;
    RT_EXPECT(&v, out.st == RILL_OK, "connect: %s", out.err.msg);
    RT_EXPECT(&v, out.took_ms < 1000, "connected after %lld ms, expected < 1000 ms",
              (long long)out.took_ms);
    RT_EXPECT(&v, out.family == 4, "connected over IPv%d: %s", out.family,
              out.family < 0 ? out.why : out.desc);
    RT_EXPECT(&v, strncmp(out.desc, "tls(", 4) == 0, "describe: %s", out.desc);
    int c = rt_trace_find(t, RILL_EV_CONNECTED, 0, 0);
    int h = rt_trace_find(t, RILL_EV_TLS_HANDSHAKE, 0, 0);
    int e = rt_trace_find(t, RILL_EV_TLS_DONE, 0, 0);
    int order_bad = RT_EXPECT(&v, c >= 0 && h == c + 1 && e == h + 1 && e == t->n - 1,
                              "wanted CONNECTED, TLS_HANDSHAKE, TLS_DONE at the end");
    if (!order_bad) {
        RT_EXPECT(&v, strcmp(t->ev[h].addr, t->ev[c].addr) == 0, "TLS_HANDSHAKE names %s",
                  t->ev[h].addr);
        RT_EXPECT(&v, strcmp(t->ev[e].addr, t->ev[c].addr) == 0, "TLS_DONE names %s",
                  t->ev[e].addr);
        RT_EXPECT(&v, t->ev[e].status == RILL_OK, "TLS_DONE has status %d", t->ev[e].status);
    }
    rt_he_check_trace_basics(t, host, &v);
    char text[4096];
    ck_assert_msg(!v.failed, "%d problems: %s\n  trace: %s", v.failed, v.why,
                  rt_trace_text(t, text, sizeof text));
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}

/* A raw listening socket on 127.0.0.1 that never accepts: TCP connects, TLS never answers. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    ck_assert_msg(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind: %s", strerror(errno));
    ck_assert_msg(listen(fd, 16) == 0, "listen: %s", strerror(errno));
    ck_assert_msg(getsockname(fd, (struct sockaddr *)&sa, &len) == 0, "getsockname: %s",
                  strerror(errno));
    *port = ntohs(sa.sin_port);
    return fd;
}

/*
 * The A answer takes 400 ms, the peer never answers the ClientHello, the deadline is 1000 ms:
 * the connect fails at 1000 ms (DNS and handshake under one deadline), not 1400; the trace
 * shows the handshake starting and failing, the message names the host and the timeout.
 */
void rt_he_deadline_covers_dns_and_tls(rt_connect_fn fn)
{
    rt_watchdog(30, "test_deadline_covers_dns_and_tls");
    int fds = rt_count_fds();
    const char *host = "tls-silent." DOMAIN;
    rt_dnsd *d = rt_dnsd_start();
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_A, "127.0.0.1", 400, 0, 60), 0);
    ck_assert_int_eq(rt_dnsd_set(d, host, RT_DNSD_AAAA, NULL, 0, 0, 60), 0);
    uint16_t port;
    int lfd = silent_listener(&port);
    rill_tls_config *ctls = client_tls();
    rill_ctx *ctx = rt_he_ctx_for(rt_dnsd_servers(d));
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 1000;
    o.tls = ctls;
    o.tls_servername = RT_CERTS_HOST;
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, ctx, host, port, &o, &out);
    show(host, &out);
    rill_ctx_free(ctx);
    rill_tls_config_free(ctls);
    close(lfd);
    rt_dnsd_stop(d);

    rt_verdict v = { 0 };
    const rt_trace *t = &out.trace;
    RT_EXPECT(&v, out.st == RILL_E_TIMEOUT, "status %s: %s", rill_strerror(out.st), out.err.msg);
    RT_EXPECT(&v, out.took_ms >= 950 && out.took_ms < 1400,
              "failed after %lld ms, expected 950 .. 1400 ms", (long long)out.took_ms);
    RT_EXPECT(&v, strstr(out.err.msg, host) && strstr(out.err.msg, "timed out"),
              "message \"%s\" lacks the host or \"timed out\"", out.err.msg);
    int h = rt_trace_find(t, RILL_EV_TLS_HANDSHAKE, 0, 0);
    RT_EXPECT(&v, h >= 0 && strncmp(t->ev[h].addr, "127.0.0.1:", 10) == 0,
              "no TLS_HANDSHAKE event on 127.0.0.1");
    int done = rt_trace_find(t, RILL_EV_TLS_DONE, 0, 0);
    RT_EXPECT(&v, done < 0 || t->ev[done].status == RILL_E_TIMEOUT, "TLS_DONE with status %d",
              done < 0 ? 0 : t->ev[done].status);
    rt_he_check_trace_basics(t, host, &v);
    char text[4096];
    ck_assert_msg(!v.failed, "%d problems: %s\n  trace: %s", v.failed, v.why,
                  rt_trace_text(t, text, sizeof text));
    ck_assert_msg(rt_count_fds() == fds, "%d descriptors open, %d before", rt_count_fds(), fds);
}

/* ---- blackholed addresses, in namespaces of the tests' own ---- */

enum { NS_OK = 0, NS_FAILED = 1, NS_SKIPPED = 77 };

/* What a namespace child gets: the connect to test and a variant of the case. */
struct ns_arg {
    rt_connect_fn fn;
    int variant;
};

/* Report a verdict (and the trace, on stderr) from a child. */
static void ns_report(rt_child_report *rep, const rt_verdict *v, const rt_trace *t)
{
    if (!v->failed) {
        rep->status = NS_OK;
        return;
    }
    static char text[4096];
    rt_trace_text(t, text, sizeof text);
    fprintf(stderr, "happy_eyeballs (namespace): %d problems: %s\n  trace: %s\n", v->failed, v->why,
            text);
    snprintf(rep->msg, sizeof rep->msg, "%.300s", v->why);
    rep->status = NS_FAILED;
}

/* Common start of a namespace child: namespace, responder, listener, context. */
struct ns_env {
    rt_dnsd *d;
    rt_famsrv *srv;
    rill_ctx *ctx;
};

static int ns_setup(rt_child_report *rep, struct ns_env *env, int families)
{
    char why[200];
    if (rt_netns_blackhole(why, sizeof why) != 0) {
        snprintf(rep->msg, sizeof rep->msg, "%s", why);
        rep->status = NS_SKIPPED;
        return -1;
    }
    rep->status = NS_FAILED;
    env->d = rt_dnsd_try_start(why, sizeof why);
    if (env->d)
        env->srv = rt_famsrv_try_start(families, RT_FAMSRV_TELL, NULL, why, sizeof why);
    rill_ctx_opts co;
    rill_ctx_opts_init(&co);
    rill_error err;
    if (env->srv) {
        co.dns_servers = rt_dnsd_servers(env->d);
        if (rill_ctx_new(&co, &env->ctx, &err) != RILL_OK)
            snprintf(why, sizeof why, "ctx: %.190s", err.msg);
    }
    if (!env->ctx) {
        snprintf(rep->msg, sizeof rep->msg, "%s", why);
        return -1;
    }
    return 0;
}

static void ns_teardown(struct ns_env *env)
{
    rill_ctx_free(env->ctx);
    rt_famsrv_stop(env->srv);
    rt_dnsd_stop(env->d);
}

static void run_in_namespace(void (*fn)(rt_child_report *, void *), void *arg, const char *what)
{
    rt_child_result res;
    rt_run_child(fn, arg, 30, &res);
    rt_assert_child_ok(&res);
    if (res.report.status == NS_SKIPPED) {
        fprintf(stderr, "%s: SKIPPED: network namespaces unavailable: %s\n", what, res.report.msg);
        return;
    }
    ck_assert_msg(res.report.status == NS_OK, "%s: %s", what, res.report.msg);
}

/* The attempts of @p t in order, as families: "646" etc. */
static void attempt_families(const rt_trace *t, char *buf, size_t len)
{
    size_t n = 0;
    for (int i = 0; i < t->n && n + 1 < len; i++) {
        if (t->ev[i].type == RILL_EV_ATTEMPT)
            buf[n++] = (char)('0' + rt_addr_family(t->ev[i].addr));
    }
    buf[n] = '\0';
}

/*
 * Variants 0 (the default delay, 250 ms) and 1 (attempt_delay_ms 100): AAAA answers a
 * blackholed address at once, A answers 127.0.0.1 30 ms later; the first attempt hangs, the
 * second starts after the connection attempt delay and wins, the first still running (never
 * failed). Variant 2 (attempt_delay_ms 1: the 10 ms floor): AAAA answers two blackholed
 * addresses at once and A comes 200 ms later; the second IPv6 attempt starts no sooner than
 * the floor after the first, and 127.0.0.1 wins once its answer is in.
 */
static void attempt_delay_child(rt_child_report *rep, void *arg)
{
    const struct ns_arg *na = arg;
    rt_connect_fn fn = na->fn;
    int variant = na->variant;
    struct ns_env env = { 0 };
    if (ns_setup(rep, &env, RT_FAM4) != 0)
        return;
    const char *host = "delay." DOMAIN;
    rt_verdict v = { 0 };
    int a_delay = variant == 2 ? 200 : 30;
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_AAAA, RT_BLACKHOLE6_A, 0, 0, 60) == 0, "set");
    if (variant == 2)
        RT_EXPECT(&v, rt_dnsd_add(env.d, host, RT_DNSD_AAAA, RT_BLACKHOLE6_B) == 0, "add");
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_A, "127.0.0.1", a_delay, 0, 60) == 0, "set");
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 5000;
    int delay = variant == 0 ? 250 : variant == 1 ? 100 : 10;
    const char *want = variant == 2 ? "664" : "64";
    if (variant == 1)
        o.attempt_delay_ms = 100;
    if (variant == 2)
        o.attempt_delay_ms = 1;
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, env.ctx, host, rt_famsrv_port(env.srv), &o, &out);
    show(host, &out);
    const rt_trace *t = &out.trace;
    RT_EXPECT(&v, out.st == RILL_OK, "connect: %s", out.err.msg);
    RT_EXPECT(&v, out.family == 4, "connected over IPv%d: %s", out.family,
              out.family < 0 ? out.why : out.desc);
    char fams[16];
    attempt_families(t, fams, sizeof fams);
    RT_EXPECT(&v, strcmp(fams, want) == 0, "attempts by family \"%s\", wanted \"%s\"", fams, want);
    int a1 = rt_trace_find(t, RILL_EV_ATTEMPT, 0, 0);
    int a2 = a1 >= 0 ? rt_trace_find(t, RILL_EV_ATTEMPT, 0, a1 + 1) : -1;
    int gap_max = variant == 2 ? 100 : delay + 200;
    if (a1 >= 0 && a2 >= 0) {
        int64_t gap = t->ev[a2].elapsed_ms - t->ev[a1].elapsed_ms;
        RT_EXPECT(&v, gap >= delay - 2 && gap <= gap_max,
                  "the second attempt started %lld ms after the first, expected %d .. %d ms "
                  "(connection attempt delay)",
                  (long long)gap, delay - 2, gap_max);
    }
    RT_EXPECT(&v, rt_trace_count(t, RILL_EV_ATTEMPT_FAILED, 0) == 0,
              "an attempt failed: the blackholed one must still be running");
    int min_ms = variant == 2 ? a_delay - 5 : delay - 2;
    RT_EXPECT(&v, out.took_ms >= min_ms && out.took_ms < min_ms + 750,
              "connected after %lld ms, expected %d .. %d ms", (long long)out.took_ms, min_ms,
              min_ms + 750);
    rt_he_check_trace_order(t, host, &v);
    rt_he_check_trace_fields(t, &v);
    ns_report(rep, &v, t);
    ns_teardown(&env);
}

void rt_he_attempt_delay(int variant, rt_connect_fn fn)
{
    ck_assert_int_lt(variant, RT_HE_ATTEMPT_DELAY_VARIANTS);
    struct ns_arg na = { fn, variant };
    run_in_namespace(attempt_delay_child, &na, "attempt delay");
}

/*
 * Four blackholed addresses, two per family (AAAA at once, A 30 ms later), attempt delay
 * 100 ms, deadline 800 ms: attempts alternate families (6 4 6 4) 100 ms apart, all four stay in
 * flight (none fails), and the deadline ends it at 800 ms with a message naming the host.
 */
static void interleave_child(rt_child_report *rep, void *arg)
{
    rt_connect_fn fn = ((const struct ns_arg *)arg)->fn;
    struct ns_env env = { 0 };
    if (ns_setup(rep, &env, RT_FAM4) != 0)
        return;
    const char *host = "interleave." DOMAIN;
    rt_verdict v = { 0 };
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_AAAA, RT_BLACKHOLE6_A, 0, 0, 60) == 0, "set");
    RT_EXPECT(&v, rt_dnsd_add(env.d, host, RT_DNSD_AAAA, RT_BLACKHOLE6_B) == 0, "add");
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_A, RT_BLACKHOLE4_A, 30, 0, 60) == 0, "set");
    RT_EXPECT(&v, rt_dnsd_add(env.d, host, RT_DNSD_A, RT_BLACKHOLE4_B) == 0, "add");
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 800;
    o.attempt_delay_ms = 100;
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, env.ctx, host, rt_famsrv_port(env.srv), &o, &out);
    show(host, &out);
    const rt_trace *t = &out.trace;
    RT_EXPECT(&v, out.st == RILL_E_TIMEOUT, "status %s: %s", rill_strerror(out.st), out.err.msg);
    RT_EXPECT(&v, out.took_ms >= 780 && out.took_ms < 1400,
              "failed after %lld ms, expected 780 .. 1400 ms", (long long)out.took_ms);
    RT_EXPECT(&v, strstr(out.err.msg, host) && strstr(out.err.msg, "timed out"),
              "message \"%s\" lacks the host or \"timed out\"", out.err.msg);
    char fams[16];
    attempt_families(t, fams, sizeof fams);
    RT_EXPECT(&v, strcmp(fams, "6464") == 0, "attempts by family \"%s\", wanted \"6464\"", fams);
    int prev = -1;
    int gap_bad = 0;
    for (int i = rt_trace_find(t, RILL_EV_ATTEMPT, 0, 0); i >= 0 && !gap_bad;
         i = rt_trace_find(t, RILL_EV_ATTEMPT, 0, i + 1)) {
        if (prev >= 0) {
            int64_t gap = t->ev[i].elapsed_ms - t->ev[prev].elapsed_ms;
            gap_bad =
                RT_EXPECT(&v, gap >= 98 && gap <= 300,
                          "attempt %s started %lld ms after the one before, expected 98 .. 300 ms",
                          t->ev[i].addr, (long long)gap);
        }
        prev = i;
    }
    RT_EXPECT(&v, rt_trace_count(t, RILL_EV_ATTEMPT_FAILED, 0) == 0,
              "an attempt failed before the deadline: blackholed attempts must keep running");
    rt_he_check_trace_order(t, host, &v);
    rt_he_check_trace_fields(t, &v);
    ns_report(rep, &v, t);
    ns_teardown(&env);
}

void rt_he_interleave_keep_running(rt_connect_fn fn)
{
    struct ns_arg na = { fn, 0 };
    run_in_namespace(interleave_child, &na, "interleave");
}

/*
 * A answers a blackholed address at once, AAAA answers ::1 400 ms later: the IPv4 attempt
 * starts after the resolution delay and hangs; the late AAAA answer joins the race (the attempt
 * delay has long passed) and ::1 wins at about 400 ms, the IPv4 attempt still running.
 */
static void late_join_child(rt_child_report *rep, void *arg)
{
    rt_connect_fn fn = ((const struct ns_arg *)arg)->fn;
    struct ns_env env = { 0 };
    if (ns_setup(rep, &env, RT_FAM6) != 0)
        return;
    const char *host = "late-join." DOMAIN;
    rt_verdict v = { 0 };
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_A, RT_BLACKHOLE4_A, 0, 0, 60) == 0, "set");
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_AAAA, "::1", 400, 0, 60) == 0, "set");
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 5000;
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, env.ctx, host, rt_famsrv_port(env.srv), &o, &out);
    show(host, &out);
    const rt_trace *t = &out.trace;
    RT_EXPECT(&v, out.st == RILL_OK, "connect: %s", out.err.msg);
    RT_EXPECT(&v, out.took_ms >= 380 && out.took_ms < 1200,
              "connected after %lld ms, expected 380 .. 1200 ms", (long long)out.took_ms);
    RT_EXPECT(&v, out.family == 6, "connected over IPv%d: %s", out.family,
              out.family < 0 ? out.why : out.desc);
    check_answer(t, 6, 400, 1, 0, out.took_ms, &v);
    char fams[16];
    attempt_families(t, fams, sizeof fams);
    RT_EXPECT(&v, strcmp(fams, "46") == 0, "attempts by family \"%s\", wanted \"46\"", fams);
    int a1 = rt_trace_find(t, RILL_EV_ATTEMPT, 4, 0);
    RT_EXPECT(&v, a1 >= 0 && t->ev[a1].elapsed_ms >= 40 && t->ev[a1].elapsed_ms < 300,
              "the IPv4 attempt started at %lld ms, expected 40 .. 300 ms (resolution delay)",
              a1 >= 0 ? (long long)t->ev[a1].elapsed_ms : -1LL);
    int ans6 = rt_trace_find(t, RILL_EV_ANSWER, 6, 0);
    int a2 = rt_trace_find(t, RILL_EV_ATTEMPT, 6, 0);
    RT_EXPECT(&v, ans6 >= 0 && a2 > ans6 && t->ev[a2].elapsed_ms - t->ev[ans6].elapsed_ms < 150,
              "the IPv6 attempt did not start within 150 ms of the AAAA answer");
    RT_EXPECT(&v, rt_trace_count(t, RILL_EV_ATTEMPT_FAILED, 0) == 0,
              "an attempt failed: the blackholed one must still be running");
    rt_he_check_trace_order(t, host, &v);
    rt_he_check_trace_fields(t, &v);
    ns_report(rep, &v, t);
    ns_teardown(&env);
}

void rt_he_late_answer_joins_race(rt_connect_fn fn)
{
    struct ns_arg na = { fn, 0 };
    run_in_namespace(late_join_child, &na, "late answer");
}

/*
 * The A answer (a blackholed address) takes 500 ms, AAAA is NODATA, the deadline is 1000 ms:
 * the attempt is cut at 1000 ms from the start, not 1000 ms after the answer, and the message
 * names the host, the timeout and the address.
 */
static void deadline_child(rt_child_report *rep, void *arg)
{
    rt_connect_fn fn = ((const struct ns_arg *)arg)->fn;
    struct ns_env env = { 0 };
    if (ns_setup(rep, &env, RT_FAM4) != 0)
        return;
    const char *host = "deadline." DOMAIN;
    rt_verdict v = { 0 };
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_A, RT_BLACKHOLE4_A, 500, 0, 60) == 0, "set");
    RT_EXPECT(&v, rt_dnsd_set(env.d, host, RT_DNSD_AAAA, NULL, 0, 0, 60) == 0, "set");
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 1000;
    static struct outcome out;
    rt_trace_attach(&out.trace, &o);
    run_connect(fn, env.ctx, host, rt_famsrv_port(env.srv), &o, &out);
    show(host, &out);
    RT_EXPECT(&v, out.st == RILL_E_TIMEOUT, "status %s: %s", rill_strerror(out.st), out.err.msg);
    RT_EXPECT(&v, out.took_ms >= 950 && out.took_ms < 1450,
              "failed after %lld ms, expected 950 .. 1450 ms", (long long)out.took_ms);
    RT_EXPECT(&v, strstr(out.err.msg, host) && strstr(out.err.msg, "timed out"),
              "message \"%s\" lacks the host or \"timed out\"", out.err.msg);
    RT_EXPECT(&v, strstr(out.err.msg, RT_BLACKHOLE4_A) != NULL,
              "message \"%s\" does not say what " RT_BLACKHOLE4_A " did", out.err.msg);
    check_answer(&out.trace, 4, 500, 1, 0, out.took_ms, &v);
    rt_he_check_trace_order(&out.trace, host, &v);
    rt_he_check_trace_fields(&out.trace, &v);
    ns_report(rep, &v, &out.trace);
    ns_teardown(&env);
}

void rt_he_deadline_covers_dns_and_tcp(rt_connect_fn fn)
{
    struct ns_arg na = { fn, 0 };
    run_in_namespace(deadline_child, &na, "deadline over DNS and TCP");
}
