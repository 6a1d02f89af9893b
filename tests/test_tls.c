/* SPDX-License-Identifier: MIT */
/*
 * The TLS layer (src/transport/tls.c, tls_config.c) against two real peers on 127.0.0.1: an
 * `openssl s_server` child process and rill's own TLS server in a thread. Certificates are made
 * at test time by tests/support/certs.c (root -> intermediate -> leaves). Covered: versions 1.2
 * and 1.3, chain/date/name verification with the reason in the message, pins, CRLs, ALPN,
 * client certificates, sessions (rill_connect's cache, export/import), STARTTLS on one
 * descriptor and its refusal with plaintext pending (or an LF owed after a CR), TLS over TLS and
 * over a socketpair, truncation and clean close, half-close, handshake deadlines, non-TLS peers,
 * non-blocking handshakes, introspection, config errors, descriptors and rill's memory.
 *
 * Peers are named by loop index in the table-driven cases: even = openssl s_server, odd = rill.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certs.h"
#include "rill/stream.h"
#include "sserver.h"
#include "support.h"
#include "transport/tls.h" /* white box: whether the config's SSL_CTX has a key-log callback */

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const rt_certs *C;
static rill_error E; /* the err argument of config and connect calls */

/* A config or connect call that must succeed; E says why it did not. */
#define CK(call)                                                                             \
    do {                                                                                     \
        memset(&E, 0, sizeof E);                                                             \
        rill_status ck_st_ = (call);                                                         \
        ck_assert_msg(ck_st_ == RILL_OK, "%s: %s: %s", #call, rill_strerror(ck_st_), E.msg); \
    } while (0)

/* A stream call that must succeed. */
#define SOK(s, call)                                                                   \
    do {                                                                               \
        rill_status sok_st_ = (call);                                                  \
        ck_assert_msg(sok_st_ == RILL_OK, "%s: %s: %s", #call, rill_strerror(sok_st_), \
                      rill_errmsg(s));                                                 \
    } while (0)

enum { PEER_OPENSSL = 0, PEER_RILL = 1 };

static const char *peer_name(int kind)
{
    return kind == PEER_OPENSSL ? "openssl s_server" : "rill server";
}

static const char *version_name(int v)
{
    return v == RILL_TLS_1_2 ? "TLSv1.2" : v == RILL_TLS_1_3 ? "TLSv1.3" : "any";
}

/* ---- configs ---- */

/* Configs made by the helpers below, so a test that fails half-way still frees them. */
#define MAX_CFGS 16
static rill_tls_config *live_cfgs[MAX_CFGS];
static int counting;     /* rt_counting_on() is in force: leave leftovers alone */
static int bulk_late_ms; /* bulk_loop waits this long before reading a BULK body */

static rill_tls_config *cfg_new(void)
{
    rill_tls_config *cfg = NULL;
    CK(rill_tls_config_new(&cfg, &E));
    for (int i = 0; i < MAX_CFGS; i++) {
        if (!live_cfgs[i]) {
            live_cfgs[i] = cfg;
            return cfg;
        }
    }
    ck_abort_msg("more than %d configs at once", MAX_CFGS);
    return NULL;
}

static void cfg_free(rill_tls_config *cfg)
{
    for (int i = 0; cfg && i < MAX_CFGS; i++) {
        if (live_cfgs[i] == cfg)
            live_cfgs[i] = NULL;
    }
    rill_tls_config_free(cfg);
}

static rill_tls_config *cfg_client(int version)
{
    rill_tls_config *cfg = cfg_new();
    CK(rill_tls_config_set_ca_file(cfg, C->ca, &E));
    if (version)
        CK(rill_tls_config_set_versions(cfg, version, version, &E));
    return cfg;
}

static rill_tls_config *cfg_server(const rt_leaf *leaf, int leaf_only, int version)
{
    rill_tls_config *cfg = cfg_new();
    CK(rill_tls_config_set_cert_file(cfg, leaf_only ? leaf->cert : leaf->chain, leaf->key, &E));
    if (version)
        CK(rill_tls_config_set_versions(cfg, version, version, &E));
    return cfg;
}

/* ---- rill's own server: a thread serving @p conns connections of a listener or one stream */

struct rsrv;
typedef void (*serve_fn)(struct rsrv *r, rill_stream *s);

#define RSRV_MAX_CONNS 4

struct rsrv {
    rill_listener *listener; /* NULL when serving one given stream */
    rill_stream *given;
    uint16_t port;
    pthread_t thread;
    int stop; /* atomic */
    int conns;
    serve_fn serve;
    const void *arg;
    /* Results: read them after rsrv_stop(). */
    int served;
    rill_status hs[RSRV_MAX_CONNS];
    char hs_msg[RSRV_MAX_CONNS][RILL_ERRMSG_MAX];
    rill_tls_info info[RSRV_MAX_CONNS];
    rill_status end[RSRV_MAX_CONNS]; /* how the reading loop ended */
    char end_msg[RSRV_MAX_CONNS][RILL_ERRMSG_MAX];
    size_t got; /* bytes the half-close server read */
};

#define MAX_RSRV 4
static struct rsrv *live_rsrv[MAX_RSRV];

/* Record the handshake of connection r->served; RILL_OK if it completed. */
static rill_status rsrv_handshake(struct rsrv *r, rill_stream *s)
{
    int i = r->served < RSRV_MAX_CONNS ? r->served : RSRV_MAX_CONNS - 1;
    rill_status st = rill_tls_handshake(s);
    r->hs[i] = st;
    snprintf(r->hs_msg[i], sizeof r->hs_msg[i], "%s", st == RILL_OK ? "" : rill_errmsg(s));
    if (st == RILL_OK && rill_tls_get_info(s, &r->info[i]) != RILL_OK)
        r->hs[i] = RILL_E_INVALID;
    return st;
}

static void rsrv_end(struct rsrv *r, rill_stream *s, rill_status st)
{
    int i = r->served < RSRV_MAX_CONNS ? r->served : RSRV_MAX_CONNS - 1;
    r->end[i] = st;
    snprintf(r->end_msg[i], sizeof r->end_msg[i], "%s", st < 0 ? rill_errmsg(s) : "");
}

/* Lines in, reversed lines out (like s_server -rev); "CLOSE" ends with close_notify. */
static void rev_loop(struct rsrv *r, rill_stream *s)
{
    rill_stream *ln = NULL;
    if (rill_lines_new(s, 1024, RILL_EOL_LF, 0, &ln) != RILL_OK) {
        rill_close(s);
        return;
    }
    for (;;) {
        const char *line;
        size_t len;
        rill_status st = rill_read_line(ln, &line, &len);
        if (st != RILL_OK) {
            rsrv_end(r, ln, st);
            break;
        }
        if (len == 5 && memcmp(line, "CLOSE", 5) == 0) {
            rsrv_end(r, ln, RILL_OK);
            break;
        }
        char out[1100];
        for (size_t i = 0; i < len; i++)
            out[i] = line[len - 1 - i];
        out[len] = '\n';
        size_t w;
        if (rill_write_all(ln, out, len + 1, &w) != RILL_OK || rill_flush(ln) != RILL_OK) {
            rsrv_end(r, ln, RILL_E_IO);
            break;
        }
    }
    rill_close(ln);
}

static void serve_rev(struct rsrv *r, rill_stream *s)
{
    if (rsrv_handshake(r, s) != RILL_OK) {
        rill_close(s);
        return;
    }
    rev_loop(r, s);
}

static void *rsrv_main(void *arg)
{
    struct rsrv *r = arg;
    if (r->given) {
        r->serve(r, r->given);
        r->given = NULL;
        r->served = 1;
        return NULL;
    }
    int64_t end = rt_now_us() + 30000000;
    while (r->served < r->conns && !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) &&
           rt_now_us() < end) {
        rill_stream *s = NULL;
        rill_status st = rill_accept(r->listener, 50, &s, NULL);
        if (st == RILL_E_TIMEOUT || st == RILL_WANT_READ)
            continue;
        if (st != RILL_OK)
            break;
        r->serve(r, s);
        r->served++;
    }
    return NULL;
}

static void rsrv_track(struct rsrv *r)
{
    for (int i = 0; i < MAX_RSRV; i++) {
        if (!live_rsrv[i]) {
            live_rsrv[i] = r;
            return;
        }
    }
    ck_abort_msg("more than %d rill servers at once", MAX_RSRV);
}

/*
 * Listen on 127.0.0.1 with @p cfg for accepted streams (NULL: plain TCP) and serve @p conns
 * connections with @p serve in a thread. Accepted streams time out after 10 s.
 */
static struct rsrv *rsrv_start(rill_tls_config *cfg, serve_fn serve, int conns, const void *arg)
{
    struct rsrv *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.read_timeout_ms = 10000;
    lo.stream.write_timeout_ms = 10000;
    lo.stream.tls = cfg;
    CK(rill_listen("127.0.0.1", 0, &lo, &r->listener, &E));
    r->port = rill_listener_port(r->listener);
    r->serve = serve ? serve : serve_rev;
    r->conns = conns > 0 ? conns : 1;
    r->arg = arg;
    ck_assert_int_eq(pthread_create(&r->thread, NULL, rsrv_main, r), 0);
    rsrv_track(r);
    return r;
}

/* Serve stream @p s (owned from now on) with @p serve in a thread. */
static struct rsrv *rsrv_start_stream(rill_stream *s, serve_fn serve, const void *arg)
{
    struct rsrv *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->given = s;
    r->serve = serve;
    r->conns = 1;
    r->arg = arg;
    ck_assert_int_eq(pthread_create(&r->thread, NULL, rsrv_main, r), 0);
    rsrv_track(r);
    return r;
}

/* Wait for the thread (it ends when its connections are served or its streams time out). */
static void rsrv_join(struct rsrv *r)
{
    if (!r || !r->thread)
        return;
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    pthread_join(r->thread, NULL);
    r->thread = 0;
    rill_listener_free(r->listener);
    r->listener = NULL;
}

static void rsrv_free(struct rsrv *r)
{
    if (!r)
        return;
    rsrv_join(r);
    for (int i = 0; i < MAX_RSRV; i++) {
        if (live_rsrv[i] == r)
            live_rsrv[i] = NULL;
    }
    free(r);
}

/* ---- a peer of either kind ---- */

struct peer_spec {
    const rt_leaf *leaf; /* NULL: good */
    int leaf_only;       /* send no intermediate */
    int version;         /* 0: 1.2 .. 1.3 */
    const char *alpn;    /* the server's ALPN list */
    rill_tls_client_auth client_auth;
    serve_fn serve; /* rill peer: NULL = reversed lines */
    int conns;      /* rill peer: connections to serve (default 1) */
    const char *ciphers;
};

struct peer {
    int kind;
    rt_sserver *ss;
    struct rsrv *rs;
    rill_tls_config *cfg;
    uint16_t port;
};

/* The issuer file s_server sends after @p leaf, or NULL. */
static const char *issuer_of(const rt_leaf *leaf)
{
    if (leaf == &C->selfsigned)
        return NULL;
    return leaf == &C->untrusted ? C->untrusted_ca : C->intermediate;
}

static void peer_start(struct peer *p, int kind, const struct peer_spec *spec)
{
    struct peer_spec none;
    memset(&none, 0, sizeof none);
    if (!spec)
        spec = &none;
    const rt_leaf *leaf = spec->leaf ? spec->leaf : &C->good;
    memset(p, 0, sizeof *p);
    p->kind = kind;
    if (kind == PEER_OPENSSL) {
        const char *args[32];
        int n = 0;
        args[n++] = "-rev";
        args[n++] = "-cert";
        args[n++] = leaf->cert;
        args[n++] = "-key";
        args[n++] = leaf->key;
        if (!spec->leaf_only && issuer_of(leaf)) {
            args[n++] = "-cert_chain";
            args[n++] = issuer_of(leaf);
        }
        if (spec->version)
            args[n++] = spec->version == RILL_TLS_1_2 ? "-tls1_2" : "-tls1_3";
        if (spec->alpn) {
            args[n++] = "-alpn";
            args[n++] = spec->alpn;
        }
        if (spec->ciphers) {
            args[n++] = "-cipher";
            args[n++] = spec->ciphers;
        }
        if (spec->client_auth != RILL_TLS_CLIENT_AUTH_NONE) {
            args[n++] = spec->client_auth == RILL_TLS_CLIENT_AUTH_REQUIRE ? "-Verify" : "-verify";
            args[n++] = "2";
            args[n++] = "-verify_return_error";
            args[n++] = "-CAfile";
            args[n++] = C->ca;
        }
        args[n] = NULL;
        p->ss = rt_sserver_startv(args);
        p->port = rt_sserver_port(p->ss);
        return;
    }
    p->cfg = cfg_server(leaf, spec->leaf_only, spec->version);
    if (spec->alpn)
        CK(rill_tls_config_set_alpn(p->cfg, spec->alpn, &E));
    if (spec->ciphers)
        CK(rill_tls_config_set_ciphers(p->cfg, spec->ciphers, &E));
    if (spec->client_auth != RILL_TLS_CLIENT_AUTH_NONE) {
        CK(rill_tls_config_set_ca_file(p->cfg, C->ca, &E));
        CK(rill_tls_config_set_verify_client(p->cfg, spec->client_auth, &E));
    }
    p->rs = rsrv_start(p->cfg, spec->serve, spec->conns, NULL);
    p->port = p->rs->port;
}

/* Stop the peer; a rill peer's results stay readable in p->rs until peer_free(). */
static void peer_stop(struct peer *p)
{
    rt_sserver_stop(p->ss);
    p->ss = NULL;
    rsrv_join(p->rs);
}

static void peer_free(struct peer *p)
{
    peer_stop(p);
    rsrv_free(p->rs);
    p->rs = NULL;
    cfg_free(p->cfg);
    p->cfg = NULL;
}

/* What the peer said, for failure messages. */
static const char *peer_log(struct peer *p)
{
    if (p->ss)
        return rt_sserver_output(p->ss);
    return p->rs ? p->rs->hs_msg[0] : "";
}

/* ---- client side ---- */

/* rill_connect to 127.0.0.1:@p port with TLS, verifying @p name; E gets the message. */
static rill_status tls_connect(uint16_t port, rill_tls_config *cfg, const char *name,
                               unsigned flags, rill_stream **s)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 10000;
    o.read_timeout_ms = 10000;
    o.write_timeout_ms = 10000;
    o.tls = cfg;
    o.tls_servername = name;
    o.tls_flags = flags;
    memset(&E, 0, sizeof E);
    *s = NULL;
    return rill_connect(NULL, "127.0.0.1", port, &o, s, &E);
}

/* A plain TCP connection to 127.0.0.1:@p port with 10 s timeouts. */
static rill_stream *tcp_connect(uint16_t port)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.read_timeout_ms = 10000;
    o.write_timeout_ms = 10000;
    rill_stream *s = NULL;
    CK(rill_tcp_connect_addr("127.0.0.1", port, &o, &s, &E));
    return s;
}

/* Send @p word as a line and check the reversed line comes back. */
static void rev_exchange(rill_stream *s, const char *word)
{
    char line[256], want[256], got[256];
    size_t len = strlen(word);
    ck_assert_uint_lt(len + 1, sizeof line);
    memcpy(line, word, len);
    line[len] = '\n';
    for (size_t i = 0; i < len; i++)
        want[i] = word[len - 1 - i];
    want[len] = '\n';
    size_t n = 0;
    SOK(s, rill_write_all(s, line, len + 1, &n));
    SOK(s, rill_flush(s));
    rill_status st = rill_read_full(s, got, len + 1, &n);
    ck_assert_msg(st == RILL_OK, "reading the answer to \"%s\": %s after %zu bytes: %s", word,
                  rill_strerror(st), n, rill_errmsg(s));
    ck_assert_msg(memcmp(got, want, len + 1) == 0, "answer to \"%s\" is \"%.*s\"", word,
                  (int)(len + 1), got);
}

/* Ask the peer to close ("CLOSE"): close_notify arrives, reads give RILL_EOF. */
static void rev_close(rill_stream *s)
{
    size_t n;
    SOK(s, rill_write_str(s, "CLOSE\n", &n));
    SOK(s, rill_flush(s));
    char buf[16];
    rill_status st = rill_read(s, buf, sizeof buf, &n);
    ck_assert_msg(st == RILL_EOF, "after CLOSE: %s (%zu bytes): %s", rill_strerror(st), n,
                  rill_errmsg(s));
    st = rill_read(s, buf, sizeof buf, &n);
    ck_assert_msg(st == RILL_EOF, "second read after close_notify: %s: %s", rill_strerror(st),
                  rill_errmsg(s));
    st = rill_close(s);
    ck_assert_msg(st == RILL_OK, "close after close_notify: %s", rill_strerror(st));
}

static void get_info(rill_stream *s, rill_tls_info *info)
{
    SOK(s, rill_tls_get_info(s, info));
}

/* ---- fixtures ---- */

static void setup(void)
{
    C = rt_certs_get();
    rt_watchdog(60, "tls test");
}

static void teardown(void)
{
    for (int i = 0; i < MAX_RSRV; i++)
        rsrv_free(live_rsrv[i]);
    rt_sserver_stop_all();
    for (int i = 0; i < MAX_CFGS && !counting; i++)
        cfg_free(live_cfgs[i]);
    rt_counting_off();
    counting = 0;
    bulk_late_ms = 0;
    rt_watchdog(0, NULL);
}

/* ============================================================================================
 * Handshakes that succeed
 */

/* Loop index: bit 0 peer kind, bit 1 version (0: 1.2, 1: 1.3). */
static int loop_kind(int i)
{
    return i & 1;
}

static int loop_version(int i)
{
    return (i & 2) ? RILL_TLS_1_3 : RILL_TLS_1_2;
}

/* Good chain, both versions, both peers: data both ways, every info field, clean close. */
START_TEST(test_good_chain)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p;
    struct peer_spec spec = { .version = version };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    ck_assert_msg(st == RILL_OK, "%s %s: %s; peer: %s", peer_name(kind), version_name(version),
                  E.msg, peer_log(&p));
    ck_assert_str_eq(rill_kind(s), RILL_LAYER_TLS);
    rev_exchange(s, "hello over tls");
    rev_exchange(s, "second line");

    rill_tls_info info;
    get_info(s, &info);
    ck_assert_int_eq(info.handshake_done, 1);
    ck_assert_int_eq(info.is_server, 0);
    ck_assert_int_eq(info.resumed, 0);
    ck_assert_int_eq(info.verified, 1);
    ck_assert_str_eq(info.version, version_name(version));
    ck_assert_msg(info.cipher[0] != '\0', "no cipher in info");
    ck_assert_str_eq(info.alpn, "");
    ck_assert_str_eq(info.servername, RT_CERTS_HOST);
    ck_assert_msg(strstr(info.subject, "CN=good.rill.test") != NULL, "subject %s", info.subject);
    ck_assert_msg(strstr(info.issuer, "CN=Rill Test Intermediate") != NULL, "issuer %s",
                  info.issuer);
    ck_assert_msg(strstr(info.sans, "DNS:good.rill.test") && strstr(info.sans, "DNS:localhost") &&
                      strstr(info.sans, "IP:127.0.0.1") && strstr(info.sans, "IP:::1"),
                  "sans %s", info.sans);
    ck_assert_msg(strlen(info.not_before) == 20 && info.not_before[4] == '-' &&
                      info.not_before[10] == 'T' && info.not_before[19] == 'Z',
                  "not_before \"%s\" is not YYYY-MM-DDTHH:MM:SSZ", info.not_before);
    ck_assert_msg(strlen(info.not_after) == 20 && strcmp(info.not_after, info.not_before) > 0,
                  "not_after \"%s\" (not_before %s)", info.not_after, info.not_before);
    ck_assert_str_eq(info.spki_sha256, C->good.pin);

    char desc[512];
    rill_describe(s, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "tls(") && strstr(desc, version_name(version)) &&
                      strstr(desc, "> tcp("),
                  "describe: %s", desc);

    rev_close(s);
    peer_stop(&p);
    if (kind == PEER_RILL) {
        ck_assert_msg(p.rs->hs[0] == RILL_OK, "server handshake: %s", p.rs->hs_msg[0]);
        const rill_tls_info *si = &p.rs->info[0];
        ck_assert_int_eq(si->is_server, 1);
        ck_assert_int_eq(si->handshake_done, 1);
        ck_assert_str_eq(si->version, version_name(version));
        ck_assert_str_eq(si->servername, RT_CERTS_HOST); /* the SNI the client sent */
        ck_assert_str_eq(si->subject, "");               /* no client certificate */
        ck_assert_int_eq(p.rs->end[0], RILL_OK);         /* it read our CLOSE */
    }
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* Handshakes that verify: which leaf the server sends, which name the client checks. */
struct ok_case {
    const char *what;
    size_t leaf; /* offsetof(rt_certs, ...) */
    const char *name;
    int crl;
    int pin;      /* 1: the server leaf's pin; 2: a wrong pin and the right one */
    int insecure; /* 1 noverifytime, 2 noverifyname, 3 noverifycert */
    int verified; /* expected info.verified */
};

static const struct ok_case ok_cases[] = {
    { "DNS name", offsetof(rt_certs, good), "good.rill.test", 0, 0, 0, 1 },
    { "second DNS name", offsetof(rt_certs, good), "localhost", 0, 0, 0, 1 },
    { "name in upper case", offsetof(rt_certs, good), "GOOD.Rill.Test", 0, 0, 0, 1 },
    { "IPv4 literal with IP SAN", offsetof(rt_certs, good), "127.0.0.1", 0, 0, 0, 1 },
    { "IPv6 literal with IP SAN", offsetof(rt_certs, good), "::1", 0, 0, 0, 1 },
    { "bracketed IPv6 literal", offsetof(rt_certs, good), "[::1]", 0, 0, 0, 1 },
    { "wildcard one label", offsetof(rt_certs, wildcard), "a.wild.rill.test", 0, 0, 0, 1 },
    { "CRL, not revoked", offsetof(rt_certs, good), "good.rill.test", 1, 0, 0, 1 },
    { "pin matches", offsetof(rt_certs, good), "good.rill.test", 0, 1, 0, 1 },
    { "one of two pins matches", offsetof(rt_certs, good), "good.rill.test", 0, 2, 0, 1 },
    { "expired, noverifytime", offsetof(rt_certs, expired), "good.rill.test", 0, 0, 1, 1 },
    { "wrong name, noverifyname", offsetof(rt_certs, wrong), "good.rill.test", 0, 0, 2, 0 },
    { "self-signed, noverifycert", offsetof(rt_certs, selfsigned), "good.rill.test", 0, 0, 3, 0 },
    { "self-signed, noverifycert, pinned", offsetof(rt_certs, selfsigned), "good.rill.test", 0, 1,
      3, 0 },
};

static const rt_leaf *leaf_at(size_t off)
{
    return (const rt_leaf *)(const void *)((const char *)C + off);
}

static void apply_client_options(rill_tls_config *cfg, const rt_leaf *leaf, int crl, int pin,
                                 int insecure)
{
    if (crl)
        CK(rill_tls_config_set_crl_file(cfg, C->crl, &E));
    if (pin == 2)
        CK(rill_tls_config_add_pin(cfg, C->wrong.pin, &E));
    if (pin == 1 || pin == 2)
        CK(rill_tls_config_add_pin(cfg, leaf->pin, &E));
    if (pin == 3)
        CK(rill_tls_config_add_pin(cfg, C->wrong.pin, &E));
    if (insecure == 1)
        CK(rill_tls_config_insecure_noverifytime(cfg, &E));
    if (insecure == 2)
        CK(rill_tls_config_insecure_noverifyname(cfg, &E));
    if (insecure == 3)
        CK(rill_tls_config_insecure_noverifycert(cfg, &E));
}

START_TEST(test_verify_ok)
{
    const struct ok_case *c = &ok_cases[_i / 2];
    int kind = _i % 2;
    const rt_leaf *leaf = leaf_at(c->leaf);
    struct peer p;
    struct peer_spec spec = { .leaf = leaf };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    apply_client_options(cfg, leaf, c->crl, c->pin, c->insecure);
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, c->name, 0, &s);
    ck_assert_msg(st == RILL_OK, "%s, %s: %s; peer: %s", c->what, peer_name(kind), E.msg,
                  peer_log(&p));
    rev_exchange(s, c->what);
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_msg(info.verified == c->verified, "%s: verified %d", c->what, info.verified);
    ck_assert_str_eq(info.spki_sha256, leaf->pin);
    if (c->leaf == offsetof(rt_certs, expired)) {
        ck_assert_str_eq(info.not_before, "2000-01-01T00:00:00Z");
        ck_assert_str_eq(info.not_after, "2001-01-01T00:00:00Z");
    }
    rev_close(s);
    peer_stop(&p);
    if (kind == PEER_RILL) {
        /* SNI carries DNS names only; an IP literal is not sent. */
        int ip = strchr(c->name, ':') != NULL || strcmp(c->name, "127.0.0.1") == 0;
        ck_assert_msg(p.rs->hs[0] == RILL_OK, "server: %s", p.rs->hs_msg[0]);
        ck_assert_msg(ip ? p.rs->info[0].servername[0] == '\0'
                         : strcasecmp(p.rs->info[0].servername, c->name) == 0,
                      "%s: server saw SNI \"%s\"", c->what, p.rs->info[0].servername);
    }
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* ============================================================================================
 * Handshakes that must fail, with the reason named
 */

struct fail_case {
    const char *what;
    size_t leaf;
    int leaf_only;
    const char *name;
    int crl;
    int pin; /* 3: a wrong pin only */
    int insecure;
    rill_status want;
    const char *needle1;
    const char *needle2;
};

static const struct fail_case fail_cases[] = {
    { "expired", offsetof(rt_certs, expired), 0, "good.rill.test", 0, 0, 0, RILL_E_TLS_VERIFY,
      "certificate has expired", "depth 0" },
    { "not yet valid", offsetof(rt_certs, notyet), 0, "good.rill.test", 0, 0, 0, RILL_E_TLS_VERIFY,
      "certificate is not yet valid", "CN=good.rill.test" },
    { "wrong host", offsetof(rt_certs, wrong), 0, "good.rill.test", 0, 0, 0, RILL_E_TLS_VERIFY,
      "hostname mismatch", "certificate is for other.example, not good.rill.test" },
    { "self-signed", offsetof(rt_certs, selfsigned), 0, "good.rill.test", 0, 0, 0,
      RILL_E_TLS_VERIFY, "certificate verify failed", "self-signed certificate" },
    { "untrusted root", offsetof(rt_certs, untrusted), 0, "good.rill.test", 0, 0, 0,
      RILL_E_TLS_VERIFY, "certificate verify failed",
      "self-signed certificate in certificate chain" },
    { "incomplete chain", offsetof(rt_certs, good), 1, "good.rill.test", 0, 0, 0, RILL_E_TLS_VERIFY,
      "certificate verify failed", "unable to get local issuer certificate" },
    { "CN only, no SAN", offsetof(rt_certs, cnonly), 0, "good.rill.test", 0, 0, 0,
      RILL_E_TLS_VERIFY, "hostname mismatch", "not good.rill.test" },
    { "wildcard, two labels", offsetof(rt_certs, wildcard), 0, "a.b.wild.rill.test", 0, 0, 0,
      RILL_E_TLS_VERIFY, "hostname mismatch", "*.wild.rill.test, not a.b.wild.rill.test" },
    { "wildcard, bare domain", offsetof(rt_certs, wildcard), 0, "wild.rill.test", 0, 0, 0,
      RILL_E_TLS_VERIFY, "hostname mismatch", "not wild.rill.test" },
    { "IP literal without IP SAN", offsetof(rt_certs, ipnosan), 0, "127.0.0.1", 0, 0, 0,
      RILL_E_TLS_VERIFY, "IP address mismatch", "not 127.0.0.1" },
    { "IPv6 literal, only IPv4 SAN matches", offsetof(rt_certs, ipnosan), 0, "::1", 0, 0, 0,
      RILL_E_TLS_VERIFY, "mismatch", "not ::1" },
    { "revoked, with CRL", offsetof(rt_certs, revoked), 0, "good.rill.test", 1, 0, 0,
      RILL_E_TLS_VERIFY, "certificate verify failed", "certificate revoked" },
    { "bad signature", offsetof(rt_certs, badsig), 0, "good.rill.test", 0, 0, 0, RILL_E_TLS_VERIFY,
      "certificate verify failed: certificate signature failure",
      "depth 0, subject CN=good.rill.test" },
    { "pin mismatch", offsetof(rt_certs, good), 0, "good.rill.test", 0, 3, 0, RILL_E_TLS_VERIFY,
      "pin mismatch", "sha256//" },
    { "pin mismatch under noverifycert", offsetof(rt_certs, selfsigned), 0, "good.rill.test", 0, 3,
      3, RILL_E_TLS_VERIFY, "pin mismatch", "none of the 1 pinned" },
    { "expired under noverifyname", offsetof(rt_certs, expired), 0, "other.example", 0, 0, 2,
      RILL_E_TLS_VERIFY, "certificate has expired", "depth 0" },
};

START_TEST(test_verify_fail)
{
    const struct fail_case *c = &fail_cases[_i / 2];
    int kind = _i % 2;
    const rt_leaf *leaf = leaf_at(c->leaf);
    rill_tls_config *cfg = cfg_client(0);
    apply_client_options(cfg, leaf, c->crl, c->pin, c->insecure);
    int fds = rt_count_fds(); /* before the peer: a rill peer's thread holds descriptors */
    struct peer p;
    struct peer_spec spec = { .leaf = leaf, .leaf_only = c->leaf_only };
    peer_start(&p, kind, &spec);
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, c->name, 0, &s);
    ck_assert_msg(s == NULL, "%s: a stream came back with status %s", c->what, rill_strerror(st));
    rt_assert_err(&E, st, c->want, c->needle1);
    ck_assert_msg(strstr(E.msg, c->needle2) != NULL, "%s: message \"%s\" lacks \"%s\"", c->what,
                  E.msg, c->needle2);
    ck_assert_msg(strncmp(E.msg, "tls: ", 5) == 0, "message \"%s\" does not name the layer", E.msg);
    peer_stop(&p);
    ck_assert_int_eq(rt_count_fds(), fds);
    if (kind == PEER_RILL && c->pin) {
        /* A pin is checked after the client's Finished, so the server's handshake completed;
         * it must then see the connection end without close_notify. */
        ck_assert_msg(p.rs->hs[0] != RILL_OK || p.rs->end[0] < 0,
                      "%s: the server's session ended cleanly (%s)", c->what,
                      rill_strerror(p.rs->end[0]));
    } else if (kind == PEER_RILL) {
        /* The server learns of it through the client's alert. */
        ck_assert_msg(p.rs->hs[0] < 0, "%s: server handshake %s", c->what,
                      rill_strerror(p.rs->hs[0]));
    }
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/*
 * A server sends its certificate file's chain as given: it does not complete a leaf-only file
 * from its own trust store, even when the store holds the intermediate (OpenSSL's automatic
 * chain building is off: it would build and check a chain on every full handshake, about
 * 150 us of server CPU each with the system store, see bench_evloop). The client then lacks the
 * intermediate and says so.
 */
START_TEST(test_server_chain_as_given)
{
    rill_tls_config *cfg = cfg_client(0);
    int fds = rt_count_fds();
    rill_tls_config *scfg = cfg_server(&C->good, 1, 0);
    CK(rill_tls_config_set_ca_file(scfg, C->intermediate, &E));
    CK(rill_tls_config_set_ca_file(scfg, C->ca, &E));
    struct rsrv *r = rsrv_start(scfg, NULL, 1, NULL);
    rill_stream *s = NULL;
    rill_status st = tls_connect(r->port, cfg, RT_CERTS_HOST, 0, &s);
    ck_assert_ptr_null(s);
    rt_assert_err(&E, st, RILL_E_TLS_VERIFY, "unable to get local issuer certificate");
    rsrv_join(r);
    ck_assert_msg(r->hs[0] < 0, "server handshake %s", rill_strerror(r->hs[0]));
    rsrv_free(r);
    cfg_free(scfg);
    ck_assert_int_eq(rt_count_fds(), fds);
    cfg_free(cfg);
}
END_TEST

/*
 * A server that speaks only TLS 1.0 (s_server -tls1 at security level 0) is refused, saying why.
 * Loop index 0: the default client (1.2 .. 1.3, default ciphers), whose supported_versions
 * extension makes OpenSSL's 1.0-only server refuse first with a protocol_version alert, before
 * it names any version of its own (the alert's record carries 0x0303): the message says there is
 * no version in common and quotes the alert.
 * Loop index 1: a client limited to 1.2 that also offers a CBC cipher TLS 1.0 can use; it sends
 * no supported_versions, so the server answers with a TLS 1.0 ServerHello, as a legacy server
 * would, and the client refuses it by name.
 */
START_TEST(test_tls10_peer_refused)
{
    rt_sserver *ss =
        rt_sserver_start("-tls1", "-cipher", "DEFAULT@SECLEVEL=0", "-cert", C->good.cert, "-key",
                         C->good.key, "-cert_chain", C->intermediate, (char *)NULL);
    rill_tls_config *cfg = cfg_client(_i ? RILL_TLS_1_2 : 0);
    if (_i)
        CK(rill_tls_config_set_ciphers(cfg, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA",
                                       &E));
    rill_stream *s;
    rill_status st = tls_connect(rt_sserver_port(ss), cfg, RT_CERTS_HOST, 0, &s);
    if (_i) {
        rt_assert_err(&E, st, RILL_E_TLS, "peer speaks TLSv1.0, minimum is TLSv1.2");
    } else {
        rt_assert_err(&E, st, RILL_E_TLS,
                      "no protocol version in common with the peer (we allow TLSv1.2 to TLSv1.3)");
        ck_assert_msg(strstr(E.msg, "alert protocol version") != NULL, "message: %s", E.msg);
    }
    ck_assert_ptr_null(s);
    rt_sserver_stop(ss);
    cfg_free(cfg);
}
END_TEST

/* Client 1.2 only, server 1.3 only: no version in common, said so. */
START_TEST(test_no_common_version)
{
    int kind = _i;
    struct peer p;
    struct peer_spec spec = { .version = RILL_TLS_1_3 };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(RILL_TLS_1_2);
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    rt_assert_err(&E, st, RILL_E_TLS, "no protocol version in common");
    ck_assert_msg(strstr(E.msg, "TLSv1.2") != NULL, "message \"%s\" lacks our range", E.msg);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* ============================================================================================
 * ALPN
 */

START_TEST(test_alpn)
{
    int kind = _i % 2, agree = _i / 2 == 0;
    struct peer p;
    struct peer_spec spec = { .alpn = agree ? "http/1.1" : "spdy/3" };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    CK(rill_tls_config_set_alpn(cfg, "h2,http/1.1", &E));
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    if (!agree && kind == PEER_OPENSSL) {
        /* s_server (3.0) answers a list it shares nothing with by a fatal alert. */
        rt_assert_err(&E, st, RILL_E_TLS, "no application protocol");
        peer_free(&p);
        cfg_free(cfg);
        return;
    }
    ck_assert_msg(st == RILL_OK, "%s: %s; peer: %s", peer_name(kind), E.msg, peer_log(&p));
    rill_tls_info info;
    get_info(s, &info);
    char desc[512];
    rill_describe(s, desc, sizeof desc);
    if (agree) {
        ck_assert_str_eq(info.alpn, "http/1.1");
        ck_assert_msg(strstr(desc, "alpn=http/1.1") != NULL, "describe: %s", desc);
    } else {
        ck_assert_str_eq(info.alpn, "");
        ck_assert_msg(strstr(desc, "alpn=") == NULL, "describe: %s", desc);
    }
    rev_exchange(s, "alpn");
    rev_close(s);
    peer_stop(&p);
    if (kind == PEER_RILL)
        ck_assert_str_eq(p.rs->info[0].alpn, agree ? "http/1.1" : "");
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* A rill server picks the first of ITS list that the client offers. */
START_TEST(test_alpn_server_preference)
{
    struct peer p;
    struct peer_spec spec = { .alpn = "x-second,x-first" };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    CK(rill_tls_config_set_alpn(cfg, "x-first,x-second", &E));
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_str_eq(info.alpn, "x-second");
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* ============================================================================================
 * Client certificates
 */

static rill_tls_config *cfg_client_cert(int version)
{
    rill_tls_config *cfg = cfg_client(version);
    CK(rill_tls_config_set_cert_file(cfg, C->client.chain, C->client.key, &E));
    return cfg;
}

START_TEST(test_mtls_ok)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p;
    struct peer_spec spec = { .version = version, .client_auth = RILL_TLS_CLIENT_AUTH_REQUIRE };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client_cert(0);
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    ck_assert_msg(st == RILL_OK, "%s: %s; peer: %s", peer_name(kind), E.msg, peer_log(&p));
    rev_exchange(s, "with a client certificate");
    rev_close(s);
    peer_stop(&p);
    if (kind == PEER_RILL) {
        const rill_tls_info *si = &p.rs->info[0];
        ck_assert_msg(p.rs->hs[0] == RILL_OK, "server: %s", p.rs->hs_msg[0]);
        ck_assert_msg(strstr(si->subject, "CN=client.rill.test") != NULL, "subject %s",
                      si->subject);
        ck_assert_int_eq(si->verified, 1);
        ck_assert_str_eq(si->spki_sha256, C->client.pin);
    }
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/*
 * The server requires a certificate and the client has none. In TLS 1.3 the client's
 * handshake completes before the server has looked at its (empty) Certificate; the server's
 * alert then arrives on the first read and must be a TLS error, not an end of stream. In TLS 1.2
 * the handshake itself fails.
 */
START_TEST(test_mtls_missing)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p;
    struct peer_spec spec = { .version = version, .client_auth = RILL_TLS_CLIENT_AUTH_REQUIRE };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    if (version == RILL_TLS_1_3) {
        ck_assert_msg(st == RILL_OK, "%s: %s", peer_name(kind), E.msg);
        char buf[64];
        size_t n = 0;
        st = rill_read(s, buf, sizeof buf, &n);
        rt_assert_error(s, st, RILL_E_TLS, "certificate required");
        /* The stream stays failed. */
        st = rill_read(s, buf, sizeof buf, &n);
        ck_assert_int_eq(st, RILL_E_TLS);
        rill_close(s);
    } else {
        rt_assert_err(&E, st, RILL_E_TLS, "handshake failed");
        ck_assert_msg(strstr(E.msg, "alert handshake failure") != NULL, "message \"%s\"", E.msg);
    }
    peer_stop(&p);
    if (kind == PEER_RILL) {
        ck_assert_msg(p.rs->hs[0] < 0, "the server accepted a client without a certificate");
        ck_assert_msg(strstr(p.rs->hs_msg[0], "certificate") != NULL, "server message \"%s\"",
                      p.rs->hs_msg[0]);
    }
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* Optional client auth: no certificate is fine, and the server's info shows none. */
START_TEST(test_mtls_optional)
{
    struct peer p;
    struct peer_spec spec = { .client_auth = RILL_TLS_CLIENT_AUTH_OPTIONAL };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    rev_exchange(s, "no certificate, optional");
    rev_close(s);
    peer_stop(&p);
    ck_assert_msg(p.rs->hs[0] == RILL_OK, "server: %s", p.rs->hs_msg[0]);
    ck_assert_str_eq(p.rs->info[0].subject, "");
    ck_assert_int_eq(p.rs->info[0].verified, 0);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* A client certificate from a CA the server does not trust is refused by the server. */
START_TEST(test_mtls_untrusted_client)
{
    struct peer p;
    struct peer_spec spec = { .version = RILL_TLS_1_2,
                              .client_auth = RILL_TLS_CLIENT_AUTH_REQUIRE };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    CK(rill_tls_config_set_cert_file(cfg, C->untrusted.chain, C->untrusted.key, &E));
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    rt_assert_err(&E, st, RILL_E_TLS, "alert");
    peer_stop(&p);
    ck_assert_int_eq(p.rs->hs[0], RILL_E_TLS_VERIFY);
    ck_assert_msg(strstr(p.rs->hs_msg[0], "certificate verify failed") != NULL,
                  "server message \"%s\"", p.rs->hs_msg[0]);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

struct pass_arg {
    const char *pass;
    int calls;
};

static int passphrase(char *buf, int size, void *arg)
{
    struct pass_arg *a = arg;
    a->calls++;
    int n = (int)strlen(a->pass);
    if (n > size)
        return -1;
    memcpy(buf, a->pass, (size_t)n);
    return n;
}

/* The encrypted client key loads through the passphrase callback and works for mutual TLS. */
START_TEST(test_encrypted_key)
{
    int kind = _i;
    struct peer p;
    struct peer_spec spec = { .client_auth = RILL_TLS_CLIENT_AUTH_REQUIRE };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    struct pass_arg pa = { RT_CERTS_PASSPHRASE, 0 };
    CK(rill_tls_config_set_passphrase_cb(cfg, passphrase, &pa, &E));
    CK(rill_tls_config_set_cert_file(cfg, C->client.chain, C->client_key_enc, &E));
    ck_assert_int_ge(pa.calls, 1);
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    ck_assert_msg(st == RILL_OK, "%s: %s; peer: %s", peer_name(kind), E.msg, peer_log(&p));
    rev_exchange(s, "encrypted key");
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_encrypted_key_wrong_passphrase)
{
    rill_tls_config *cfg = cfg_client(0);
    struct pass_arg pa = { "not-the-passphrase", 0 };
    CK(rill_tls_config_set_passphrase_cb(cfg, passphrase, &pa, &E));
    rill_status st = rill_tls_config_set_cert_file(cfg, C->client.chain, C->client_key_enc, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "bad decrypt");
    ck_assert_msg(strstr(E.msg, C->client_key_enc) != NULL, "message \"%s\" lacks the path", E.msg);
    ck_assert_int_ge(pa.calls, 1);
    cfg_free(cfg);
}
END_TEST

/* ============================================================================================
 * Sessions
 */

static rill_ctx *make_ctx(void)
{
    rill_ctx_opts o;
    rill_ctx_opts_init(&o);
    o.dns_servers = "127.0.0.1:9"; /* never asked: the names below are overrides */
    static const char *const overrides[] = { "good.rill.test:*:127.0.0.1", NULL };
    o.overrides = overrides;
    rill_ctx *ctx = NULL;
    CK(rill_ctx_new(&o, &ctx, &E));
    return ctx;
}

static rill_status ctx_connect(rill_ctx *ctx, uint16_t port, rill_tls_config *cfg, rill_stream **s)
{
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 10000;
    o.read_timeout_ms = 10000;
    o.write_timeout_ms = 10000;
    o.tls = cfg;
    memset(&E, 0, sizeof E);
    return rill_connect(ctx, RT_CERTS_HOST, port, &o, s, &E);
}

/* rill_connect resumes with the same ctx and config, and not with another config. */
START_TEST(test_resumption)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p;
    struct peer_spec spec = { .version = version, .conns = 3 };
    peer_start(&p, kind, &spec);
    rill_ctx *ctx = make_ctx();
    rill_tls_config *cfg = cfg_client(0), *other = cfg_client(0);
    rill_stream *s;

    rill_status st = ctx_connect(ctx, p.port, cfg, &s);
    ck_assert_msg(st == RILL_OK, "first: %s; peer: %s", E.msg, peer_log(&p));
    ck_assert_int_eq(rill_tls_session_resumed(s), 0);
    rev_exchange(s, "first"); /* a TLS 1.3 ticket comes with the first read */
    rev_close(s);

    st = ctx_connect(ctx, p.port, cfg, &s);
    ck_assert_msg(st == RILL_OK, "second: %s", E.msg);
    ck_assert_msg(rill_tls_session_resumed(s) == 1, "%s %s: second connect did not resume",
                  peer_name(kind), version_name(version));
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_int_eq(info.resumed, 1);
    ck_assert_int_eq(info.verified, 1);
    ck_assert_str_eq(info.spki_sha256, C->good.pin);
    char desc[512];
    rill_describe(s, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "resumed") != NULL, "describe: %s", desc);
    rev_exchange(s, "second");
    rev_close(s);

    st = ctx_connect(ctx, p.port, other, &s);
    ck_assert_msg(st == RILL_OK, "third: %s", E.msg);
    ck_assert_msg(rill_tls_session_resumed(s) == 0, "a session crossed configs");
    rev_exchange(s, "third");
    rev_close(s);

    peer_free(&p);
    rill_ctx_free(ctx);
    cfg_free(cfg);
    cfg_free(other);
}
END_TEST

static rill_stream *tls_client_on(uint16_t port, rill_tls_config *cfg, const char *name,
                                  unsigned flags);

/*
 * A TLS client built by hand uses the ctx's cache like rill_connect:
 * the same keys (name, port, config), so a session made by rill_connect resumes here and the
 * other way round, and never across names or ports.
 */
START_TEST(test_hand_built_client_uses_cache)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p;
    struct peer_spec spec = { .version = version, .conns = 4 };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_ctx *ctx = make_ctx();
    rill_stream *s = NULL;
    CK(ctx_connect(ctx, p.port, cfg, &s)); /* full handshake; its session goes to the cache */
    rev_exchange(s, "first");
    rev_close(s);

    s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    SOK(s, rill_tls_use_session_cache(s, ctx, p.port));
    rt_assert_error(s, rill_tls_use_session_cache(s, ctx, p.port), RILL_E_INVALID,
                    "not yet given a cache");
    SOK(s, rill_tls_handshake(s));
    ck_assert_msg(rill_tls_session_resumed(s) == 1, "%s %s: hand-built client did not resume",
                  peer_name(kind), version_name(version));
    rt_assert_error(s, rill_tls_use_session_cache(s, ctx, p.port), RILL_E_INVALID,
                    "before its handshake");
    rev_exchange(s, "second"); /* a TLS 1.3 ticket for the next one */
    rev_close(s);

    /* The same name on another port number: no session of that key. */
    s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    SOK(s, rill_tls_use_session_cache(s, ctx, (uint16_t)(p.port == 1 ? 2 : p.port - 1)));
    SOK(s, rill_tls_handshake(s));
    ck_assert_int_eq(rill_tls_session_resumed(s), 0);
    rev_close(s);

    /* Misuse: no context, port 0, no server name, no TLS layer. */
    s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    rt_assert_error(s, rill_tls_use_session_cache(s, NULL, p.port), RILL_E_INVALID,
                    "needs a context, a port");
    rt_assert_error(s, rill_tls_use_session_cache(s, ctx, 0), RILL_E_INVALID,
                    "needs a context, a port");
    rill_close(s);
    rill_stream *tcp = tcp_connect(p.port);
    rt_assert_error(tcp, rill_tls_use_session_cache(tcp, ctx, p.port), RILL_E_INVALID,
                    "needs a TLS client");
    rill_close(tcp);
    peer_free(&p);
    rill_ctx_free(ctx);
    cfg_free(cfg);
}
END_TEST

/* No context: nothing is cached, so nothing resumes. */
START_TEST(test_no_resumption_without_ctx)
{
    struct peer p;
    struct peer_spec spec = { .conns = 2 };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    for (int i = 0; i < 2; i++) {
        rill_stream *s;
        CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
        rev_exchange(s, "no ctx");
        ck_assert_int_eq(rill_tls_session_resumed(s), 0);
        rev_close(s);
    }
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* A TLS client over a fresh TCP connection, handshake not yet run. */
static rill_stream *tls_client_on(uint16_t port, rill_tls_config *cfg, const char *name,
                                  unsigned flags)
{
    rill_stream *tcp = tcp_connect(port), *s = NULL;
    rill_status st = rill_tls_client(tcp, cfg, name, flags, &s);
    ck_assert_msg(st == RILL_OK, "rill_tls_client: %s", rill_errmsg(tcp));
    return s;
}

START_TEST(test_session_export_import)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p;
    struct peer_spec spec = { .version = version, .conns = 2 };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);

    rill_stream *s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    void *blob = NULL;
    size_t len = 0;
    rt_assert_error(s, rill_tls_session_export(s, &blob, &len), RILL_E_INVALID,
                    "finished handshake");
    SOK(s, rill_tls_handshake(s));
    rev_exchange(s, "export me");
    SOK(s, rill_tls_session_export(s, &blob, &len));
    ck_assert_ptr_nonnull(blob);
    ck_assert_uint_gt(len, 32);
    rt_assert_error(s, rill_tls_session_import(s, blob, len), RILL_E_INVALID,
                    "before its handshake");
    rev_close(s);

    s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    unsigned char junk[64];
    memset(junk, 0x5a, sizeof junk);
    rt_assert_error(s, rill_tls_session_import(s, junk, sizeof junk), RILL_E_INVALID,
                    "not a session exported by this version of rill");
    /* The right header over a session that does not parse. */
    unsigned char *bad = malloc(len);
    ck_assert_ptr_nonnull(bad);
    memcpy(bad, blob, len);
    size_t der = len - (41 + strlen(RT_CERTS_HOST));
    memset(bad + len - der, 0x5a, der);
    rt_assert_error(s, rill_tls_session_import(s, bad, len), RILL_E_INVALID,
                    "does not hold a TLS session");
    free(bad);
    SOK(s, rill_tls_session_import(s, blob, len));
    SOK(s, rill_tls_handshake(s));
    ck_assert_msg(rill_tls_session_resumed(s) == 1, "%s %s: imported session not resumed",
                  peer_name(kind), version_name(version));
    rev_exchange(s, "imported");
    rev_close(s);
    rill_free(blob);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* Export a session from a first connection to @p port verifying @p name with @p cfg. */
static void *export_session(uint16_t port, rill_tls_config *cfg, const char *name, size_t *len)
{
    rill_stream *s = tls_client_on(port, cfg, name, 0);
    SOK(s, rill_tls_handshake(s));
    rev_exchange(s, "ticket please"); /* a TLS 1.3 ticket comes with the first read */
    void *blob = NULL;
    SOK(s, rill_tls_session_export(s, &blob, len));
    rev_close(s);
    return blob;
}

/* The name and trust digest an exported blob carries: "RILS", 1, flags, port, len, name, 32. */
static size_t blob_digest_at(const void *blob)
{
    return 9 + ((const unsigned char *)blob)[8];
}

/*
 * A session verified for one host is refused for another (the certificate names both, so only
 * the import check stands between them), and a session made under another config's trust is
 * refused; in both cases the stream stays usable and the handshake is a full, verified one.
 * Loop index as loop_kind/loop_version.
 */
START_TEST(test_session_import_scope)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    int fds = rt_count_fds();
    struct peer p;
    struct peer_spec spec = { .version = version, .conns = 4 };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    size_t len = 0;
    void *blob = export_session(p.port, cfg, RT_CERTS_HOST, &len);

    /* Another host name that the same certificate covers. */
    rill_stream *s = tls_client_on(p.port, cfg, "localhost", 0);
    rt_assert_error(s, rill_tls_session_import(s, blob, len), RILL_E_INVALID,
                    "the session was made for good.rill.test:");
    ck_assert_msg(strstr(rill_errmsg(s), "not localhost:") != NULL, "%s", rill_errmsg(s));
    SOK(s, rill_tls_handshake(s));
    ck_assert_int_eq(rill_tls_session_resumed(s), 0);
    rev_exchange(s, "full handshake");
    rev_close(s);

    /* A config with the same CA file but a pin: other trust settings. */
    rill_tls_config *pinned = cfg_client(0);
    CK(rill_tls_config_add_pin(pinned, C->good.pin, &E));
    s = tls_client_on(p.port, pinned, RT_CERTS_HOST, 0);
    rt_assert_error(s, rill_tls_session_import(s, blob, len), RILL_E_INVALID,
                    "made under other trust settings");
    SOK(s, rill_tls_handshake(s));
    ck_assert_int_eq(rill_tls_session_resumed(s), 0);
    rev_close(s);

    /* The same config and name: resumed. */
    s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    SOK(s, rill_tls_session_import(s, blob, len));
    SOK(s, rill_tls_handshake(s));
    ck_assert_msg(rill_tls_session_resumed(s) == 1, "%s %s: not resumed", peer_name(kind),
                  version_name(version));
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_int_eq(info.verified, 1);
    rev_close(s);
    rill_free(blob);
    peer_free(&p);
    cfg_free(pinned);
    cfg_free(cfg);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/*
 * A session made under insecure_noverifycert with a server nobody trusts is refused by a
 * verifying config. And should a blob's header lie (edited to pass the import checks), the
 * resumed handshake itself is re-checked: the session was never verified, so the connection
 * fails with RILL_E_TLS_VERIFY instead of reporting a verified peer.
 * Loop index as loop_kind/loop_version.
 */
START_TEST(test_session_import_unverified)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p, trusted;
    struct peer_spec spec = { .leaf = &C->selfsigned, .version = version, .conns = 3 };
    peer_start(&p, kind, &spec);
    struct peer_spec tspec = { .version = version, .conns = 1 };
    peer_start(&trusted, PEER_RILL, &tspec);
    rill_tls_config *insecure = cfg_client(0);
    CK(rill_tls_config_insecure_noverifycert(insecure, &E));
    rill_tls_config *cfg = cfg_client(0);
    size_t len = 0, good_len = 0;
    void *blob = export_session(p.port, insecure, RT_CERTS_HOST, &len);
    void *good = export_session(trusted.port, cfg, RT_CERTS_HOST, &good_len);

    rill_stream *s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    rt_assert_error(s, rill_tls_session_import(s, blob, len), RILL_E_INVALID,
                    "made under other trust settings");
    rt_assert_error(s, rill_tls_handshake(s), RILL_E_TLS_VERIFY, "self-signed certificate");
    rill_close(s);

    /* The header edited: the verifying config's digest, the verified flag, this port. */
    unsigned char *forged = (unsigned char *)blob;
    memcpy(forged + blob_digest_at(blob), (unsigned char *)good + blob_digest_at(good), 32);
    forged[5] = 1;
    forged[6] = (unsigned char)(p.port >> 8);
    forged[7] = (unsigned char)p.port;
    s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    SOK(s, rill_tls_session_import(s, forged, len));
    rt_assert_error(s, rill_tls_handshake(s), RILL_E_TLS_VERIFY,
                    "resumed session was not verified: self-signed certificate");
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_int_eq(info.handshake_done, 0);
    ck_assert_int_eq(info.verified, 0);
    size_t n = 0;
    rt_assert_error(s, rill_write_str(s, "no\n", &n), RILL_E_TLS_VERIFY, "not verified");
    rill_close(s);
    rill_free(blob);
    rill_free(good);
    peer_free(&p);
    peer_free(&trusted);
    cfg_free(cfg);
    cfg_free(insecure);
}
END_TEST

/*
 * A resumed session whose certificate does not name this connection's host fails, whatever
 * offered it: a blob edited to carry another name passes import, and the check after the
 * resumed handshake refuses it.
 */
START_TEST(test_resumed_name_rechecked)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    struct peer p;
    struct peer_spec spec = { .leaf = &C->wrong, .version = version, .conns = 2 };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    size_t len = 0;
    void *blob = export_session(p.port, cfg, RT_CERTS_WRONG_HOST, &len); /* "other.example" */
    /* "other.example" -> "ooooo.example": a name of the same length the cert does not cover. */
    unsigned char *b = blob;
    ck_assert_int_eq(b[8], (int)strlen(RT_CERTS_WRONG_HOST));
    memcpy(b + 9, "ooooo", 5);
    rill_stream *s = tls_client_on(p.port, cfg, "ooooo.example", 0);
    SOK(s, rill_tls_session_import(s, blob, len));
    rill_status st = rill_tls_handshake(s);
    if (st == RILL_OK) {
        /* The server declined to resume under another SNI: the full handshake verified. */
        ck_abort_msg("%s %s: handshake for a name the certificate lacks succeeded (resumed %d)",
                     peer_name(kind), version_name(version), rill_tls_session_resumed(s));
    }
    ck_assert_int_eq(st, RILL_E_TLS_VERIFY);
    ck_assert_msg(strstr(rill_errmsg(s), "hostname mismatch") != NULL, "%s", rill_errmsg(s));
    ck_assert_msg(strstr(rill_errmsg(s), "not ooooo.example") != NULL, "%s", rill_errmsg(s));
    rill_close(s);
    rill_free(blob);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* Server names that name no host are refused before any byte is sent. */
static const struct {
    const char *name;
    const char *why;
} bad_names[] = {
    { "*.example.test", "a wildcard is not a host name" },
    { "*", "a wildcard is not a host name" },
    { "good.rill.test\x01", "space or control byte" },
    { "good rill.test", "space or control byte" },
    { "good.rill.test\n", "space or control byte" },
    { "", "it is empty" },
    { ".", "it is empty" },
    { "a..b", "empty label" },
    { ".good.rill.test", "empty label" },
    { "good.rill.test..", "empty label" },
    { "g\xc3\xb6\xc3\xb6"
      "d.test",
      "non-ASCII" },
    { "good.rill.test/x", "a byte that no host name has" },
    { "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.test", "longer than 63" },
};

START_TEST(test_servername_refused)
{
    int fds = rt_count_fds();
    int sv[2];
    rt_socketpair(sv);
    rill_stream *fd = NULL, *s = NULL;
    CK(rill_fd_new(sv[0], sv[0], RILL_FD_OWN, &fd, &E));
    rill_tls_config *cfg = cfg_client(0);
    rt_assert_error(fd, rill_tls_client(fd, cfg, bad_names[_i].name, 0, &s), RILL_E_INVALID,
                    bad_names[_i].why);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(rill_errmsg(fd), "tls: invalid server name") != NULL, "%s",
                  rill_errmsg(fd));
    for (const char *m = rill_errmsg(fd); *m; m++)
        ck_assert_msg((unsigned char)*m >= 0x20 && *m != 0x7f, "raw control byte in the message");
    /* Through rill_connect: the same refusal, and nothing is left open. */
    struct peer p;
    peer_start(&p, PEER_RILL, NULL);
    rill_stream *c = NULL;
    rill_status st = tls_connect(p.port, cfg, bad_names[_i].name, 0, &c);
    rt_assert_err(&E, st, RILL_E_INVALID, bad_names[_i].why);
    ck_assert_ptr_null(c);
    peer_free(&p);
    ck_assert_int_eq(rill_close(fd), RILL_OK);
    close(sv[1]);
    cfg_free(cfg);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* "localhost." is verified and sent as SNI without its dot, and rill_connect's cache shares the
 * session with "localhost". */
START_TEST(test_servername_trailing_dot)
{
    struct peer p;
    struct peer_spec spec = { .conns = 2 };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s = NULL;
    CK(tls_connect(p.port, cfg, "localhost.", 0, &s));
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_int_eq(info.verified, 1);
    ck_assert_str_eq(info.servername, "localhost");
    rev_close(s);
    s = tls_client_on(p.port, cfg, "LocalHost.", 0);
    SOK(s, rill_tls_handshake(s));
    get_info(s, &info);
    ck_assert_int_eq(info.verified, 1);
    rev_close(s);
    peer_stop(&p);
    ck_assert_str_eq(p.rs->info[0].servername, "localhost");
    ck_assert_str_eq(p.rs->info[1].servername, "LocalHost");
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* ---- a read while a record is stuck ---- */

static struct {
    int filled; /* atomic: the client's writes are stuck */
    int done;   /* atomic: the client has its answer */
    int delay_ms;
} stuck;

/* Handshake, then read nothing: answer once the client is stuck, hold on until it is done. */
static void serve_no_reader(struct rsrv *r, rill_stream *s)
{
    if (rsrv_handshake(r, s) != RILL_OK) {
        rill_close(s);
        return;
    }
    int64_t end = rt_now_us() + 10000000;
    while (!__atomic_load_n(&stuck.filled, __ATOMIC_ACQUIRE) && rt_now_us() < end)
        usleep(1000);
    usleep((useconds_t)stuck.delay_ms * 1000);
    size_t n;
    rsrv_end(r, s, rill_write_str(s, "answer\n", &n));
    if (r->end[0] == RILL_OK)
        rsrv_end(r, s, rill_flush(s));
    while (!__atomic_load_n(&stuck.done, __ATOMIC_ACQUIRE) && rt_now_us() < end)
        usleep(1000);
    if (rill_set_timeouts(s, 0, 0) == RILL_OK)
        rill_close(s);
    else
        rill_close(s);
}

/*
 * The peer stops reading; a non-blocking write leaves a record held; then the peer answers.
 * A read must return the answer when it arrives, although the record still cannot go out: with
 * a deadline (index 0) long before it passes, and in non-blocking use (index 1) the poll
 * events name POLLIN, so a poll loop wakes. Before the fix the read waited for POLLOUT alone.
 */
START_TEST(test_read_wakes_with_record_stuck)
{
    int fds = rt_count_fds();
    memset(&stuck, 0, sizeof stuck);
    stuck.delay_ms = 300;
    rill_tls_config *scfg = cfg_server(&C->good, 0, 0);
    struct rsrv *r = rsrv_start(scfg, serve_no_reader, 1, NULL);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s = tls_client_on(r->port, cfg, RT_CERTS_HOST, 0);
    SOK(s, rill_tls_handshake(s));
    SOK(s, rill_set_timeouts(s, 0, 0));
    static char chunk[16384];
    rt_fill_pattern(chunk, sizeof chunk, 7);
    size_t total = 0;
    rill_status st = RILL_OK;
    while (st == RILL_OK && total < ((size_t)256 << 20)) {
        size_t n = 0;
        st = rill_write(s, chunk, sizeof chunk, &n);
        total += n;
    }
    ck_assert_msg(st == RILL_WANT_WRITE, "writing to a peer that does not read: %s after %zu: %s",
                  rill_strerror(st), total, rill_errmsg(s));
    __atomic_store_n(&stuck.filled, 1, __ATOMIC_RELEASE);

    char buf[32];
    size_t n = 0;
    int64_t t0 = rt_now_us();
    if (_i == 0) {
        SOK(s, rill_set_timeouts(s, 5000, 0));
        st = rill_read(s, buf, sizeof buf, &n);
    } else {
        st = rill_read(s, buf, sizeof buf, &n);
        ck_assert_int_eq(st, RILL_WANT_READ);
        struct pollfd pf;
        SOK(s, rill_poll_info(s, &pf.fd, &pf.events));
        ck_assert_msg(pf.events & POLLIN, "a read with a stuck record polls for %#x",
                      (unsigned)pf.events);
        for (int i = 0; i < 50 && st == RILL_WANT_READ; i++) {
            pf.revents = 0;
            ck_assert_int_ge(poll(&pf, 1, 100), 0);
            st = rill_read(s, buf, sizeof buf, &n);
            if (st == RILL_WANT_READ)
                SOK(s, rill_poll_info(s, &pf.fd, &pf.events));
        }
    }
    ck_assert_msg(st == RILL_OK, "read: %s: %s", rill_strerror(st), rill_errmsg(s));
    ck_assert_msg(n == 7 && memcmp(buf, "answer\n", 7) == 0, "read %zu bytes", n);
    rt_assert_elapsed(t0, 200, 3000);
    __atomic_store_n(&stuck.done, 1, __ATOMIC_RELEASE);
    rsrv_free(r);
    SOK(s, rill_set_timeouts(s, 0, 0));
    (void)rill_close(s); /* the held record cannot go out: RILL_E_TIMEOUT or a reset */
    cfg_free(cfg);
    cfg_free(scfg);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* ============================================================================================
 * STARTTLS on one descriptor
 */

/* What a server thread needs beyond its listener: configs, a mode. */
struct srv_arg {
    rill_tls_config *cfg;   /* STARTTLS / outer TLS */
    rill_tls_config *inner; /* TLS over TLS: the inner server config */
    int inject;             /* STARTTLS: plaintext after the go-ahead */
    int *release_lf;        /* STARTTLS: the go-ahead's LF waits until the test sets this */
};

static rill_status read_line_eq(rill_stream *ln, const char *want)
{
    const char *line;
    size_t len;
    rill_status st = rill_read_line(ln, &line, &len);
    if (st != RILL_OK)
        return st;
    if (len > 0 && line[len - 1] == '\r') /* RILL_EOL_LF keeps the CR of a CRLF */
        len--;
    return strlen(want) == len && memcmp(line, want, len) == 0 ? RILL_OK : RILL_E_PROTOCOL;
}

/*
 * Plain greeting and STARTTLS over a borrowing line reader, then TLS over the same TCP stream,
 * then lines over TLS. With inject, the go-ahead is followed in the same write by a line that
 * an attacker slipped in before the upgrade. With release_lf, the go-ahead's CR goes out alone
 * and its LF only when the test says so (a CRLF split across segments).
 */
static void serve_starttls(struct rsrv *r, rill_stream *tcp)
{
    const struct srv_arg *a = r->arg;
    rill_stream *ln = NULL, *tls = NULL, *tln = NULL;
    size_t w;
    rill_status st = rill_lines_new(tcp, 512, RILL_EOL_CRLF, RILL_BORROW, &ln);
    if (st != RILL_OK)
        goto out;
    st = rill_write_str(ln, "220 plain greeting\r\n", &w);
    if (st == RILL_OK)
        st = read_line_eq(ln, "STARTTLS");
    if (st == RILL_OK) {
        st = rill_write_str(ln,
                            a->inject       ? "220 go ahead\r\n250 injected\r\n"
                            : a->release_lf ? "220 go ahead\r"
                                            : "220 go ahead\r\n",
                            &w);
    }
    if (st == RILL_OK && a->release_lf) {
        int64_t end = rt_now_us() + 10000000;
        while (!__atomic_load_n(a->release_lf, __ATOMIC_ACQUIRE) && rt_now_us() < end)
            usleep(1000);
        st = rill_write_str(ln, "\n", &w);
    }
    rsrv_end(r, ln, st);
    if (st != RILL_OK)
        goto out;
    st = rill_close(ln);
    ln = NULL;
    if (st != RILL_OK) {
        rsrv_end(r, tcp, st);
        goto out;
    }
    if (a->inject) {
        /* The client must refuse to start TLS; wait until it hangs up. */
        char buf[64];
        size_t n;
        while (rill_read(tcp, buf, sizeof buf, &n) == RILL_OK)
            ;
        goto out;
    }
    st = rill_tls_server(tcp, a->cfg, 0, &tls);
    if (st != RILL_OK) {
        rsrv_end(r, tcp, st);
        goto out;
    }
    tcp = NULL;
    if (rsrv_handshake(r, tls) != RILL_OK)
        goto out;
    st = rill_lines_new(tls, 512, RILL_EOL_CRLF, 0, &tln);
    if (st != RILL_OK)
        goto out;
    tls = NULL;
    st = read_line_eq(tln, "HELLO");
    if (st == RILL_OK)
        st = rill_write_str(tln, "250 hello over tls\r\n", &w);
    rsrv_end(r, tln, st);
out:
    rill_close(ln);
    rill_close(tln);
    rill_close(tls);
    rill_close(tcp);
}

START_TEST(test_starttls)
{
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0) };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *tcp = tcp_connect(r->port), *ln = NULL, *tls = NULL, *tln = NULL;
    size_t w;
    SOK(tcp, rill_lines_new(tcp, 512, RILL_EOL_CRLF, RILL_BORROW, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w));
    SOK(ln, read_line_eq(ln, "220 go ahead"));
    ck_assert_uint_eq(rill_pending(ln), 0);
    ck_assert_int_eq(rill_close(ln), RILL_OK); /* tcp stays open: borrowed */
    ck_assert_int_eq(rill_fd(tcp) >= 0, 1);
    SOK(tcp, rill_tls_client(tcp, cfg, RT_CERTS_HOST, 0, &tls));
    SOK(tls, rill_lines_new(tls, 512, RILL_EOL_CRLF, 0, &tln));
    SOK(tln, rill_write_str(tln, "HELLO\r\n", &w));
    SOK(tln, read_line_eq(tln, "250 hello over tls"));
    rill_tls_info info;
    get_info(tln, &info); /* finds the TLS layer below the line reader */
    ck_assert_int_eq(info.verified, 1);
    char desc[512];
    rill_describe(tln, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "lines(") && strstr(desc, "> tls(") && strstr(desc, "> tcp("),
                  "describe: %s", desc);
    ck_assert_int_eq(rill_close(tln), RILL_OK);
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK, "server handshake: %s", r->hs_msg[0]);
    ck_assert_msg(r->end[0] == RILL_OK, "server: %s", r->end_msg[0]);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
}
END_TEST

/* Plaintext that arrived with the go-ahead is still buffered: the upgrade is refused. */
START_TEST(test_starttls_pending_refused)
{
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0), .inject = 1 };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *tcp = tcp_connect(r->port), *ln = NULL, *tls = NULL;
    size_t w;
    SOK(tcp, rill_lines_new(tcp, 512, RILL_EOL_CRLF, RILL_BORROW, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w));
    SOK(ln, read_line_eq(ln, "220 go ahead"));
    /* The go-ahead and the injected line left the server in one send(): one segment. */
    ck_assert_msg(rill_pending(ln) > 0, "the injected line is not buffered (%zu)",
                  rill_pending(ln));
    /* Over the line reader that holds the bytes: refused, ownership stays with us. */
    rill_status st = rill_tls_client(ln, cfg, RT_CERTS_HOST, 0, &tls);
    rt_assert_error(ln, st, RILL_E_PENDING_DATA, "still unread");
    ck_assert_ptr_null(tls);
    ck_assert_msg(strstr(rill_errmsg(ln), "14 bytes") != NULL, "message: %s", rill_errmsg(ln));
    /* Detaching the line reader loses those bytes, and close says so. */
    st = rill_close(ln);
    ck_assert_int_eq(st, RILL_E_PENDING_DATA);
    rill_close(tcp);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
}
END_TEST

/*
 * rill_starttls: the plain exchange through lines [> buffered] > tcp, then one call puts TLS
 * under the caller's layers and the same top pointer talks TLS. The line reader does not borrow
 * (the flag whose omission made the low-level route a use-after-free is not needed at all).
 */
START_TEST(test_starttls_in_place)
{
    int before = rt_count_fds();
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0) };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *top = tcp_connect(r->port), *ln = NULL;
    size_t w;
    if (_i == 1) {
        rill_stream *b = NULL;
        SOK(top, rill_buffered_new(top, 4096, 4096, 0, &b));
        top = b;
    }
    SOK(top, rill_lines_new(top, 512, RILL_EOL_CRLF, 0, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w)); /* left buffered (_i == 1): flushed */
    if (_i == 0)
        SOK(ln, rill_flush(ln));
    SOK(ln, read_line_eq(ln, "220 go ahead"));
    rill_stream *kept = ln;
    SOK(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, 0));
    ck_assert_ptr_eq(ln, kept);
    /* Once is all: a second upgrade would nest TLS in TLS. */
    rt_assert_error(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, 0), RILL_E_INVALID,
                    "rill_starttls: the chain already runs TLS under its line and buffered "
                    "layers");
    ck_assert_ptr_eq(ln, kept);
    char desc[512];
    rill_describe(ln, desc, sizeof desc);
    const char *want = _i == 1 ? "> buffered(4096) > tls(" : "lines(max=512 eol=crlf) > tls(";
    ck_assert_msg(strstr(desc, want) && strstr(desc, "> tcp("), "describe: %s", desc);
    SOK(ln, rill_tls_handshake(ln));
    SOK(ln, rill_write_str(ln, "HELLO\r\n", &w));
    SOK(ln, rill_flush(ln));
    SOK(ln, read_line_eq(ln, "250 hello over tls"));
    rill_tls_info info;
    get_info(ln, &info);
    ck_assert_int_eq(info.verified, 1);
    ck_assert_int_eq(rill_close(ln), RILL_OK); /* the whole chain, tls and tcp included */
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK, "server handshake: %s", r->hs_msg[0]);
    ck_assert_msg(r->end[0] == RILL_OK, "server: %s", r->end_msg[0]);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/* A bare tcp stream: TLS goes on top and the caller's pointer becomes the TLS layer. */
START_TEST(test_starttls_bare_transport)
{
    int before = rt_count_fds();
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0) };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *tcp = tcp_connect(r->port), *ln = NULL;
    size_t w;
    char greeting[20] = "";
    SOK(tcp, rill_read_full(tcp, greeting, 20, &w)); /* "220 plain greeting\r\n" */
    ck_assert_int_eq(memcmp(greeting, "220 plain greeting\r\n", 20), 0);
    SOK(tcp, rill_write_str(tcp, "STARTTLS\r\n", &w));
    char goahead[14];
    SOK(tcp, rill_read_full(tcp, goahead, sizeof goahead, &w));
    rill_stream *top = tcp;
    SOK(top, rill_starttls(&top, cfg, RT_CERTS_HOST, 0));
    ck_assert_ptr_ne(top, tcp);
    ck_assert_str_eq(rill_kind(top), "tls");
    ck_assert_ptr_eq(rill_find(top, "tcp"), tcp);
    SOK(top, rill_lines_new(top, 512, RILL_EOL_CRLF, 0, &ln));
    SOK(ln, rill_write_str(ln, "HELLO\r\n", &w));
    SOK(ln, read_line_eq(ln, "250 hello over tls"));
    ck_assert_int_eq(rill_close(ln), RILL_OK);
    rsrv_join(r);
    ck_assert_msg(r->end[0] == RILL_OK, "server: %s", r->end_msg[0]);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/* A borrowing line reader: after the upgrade, closing the top leaves tcp open for the caller. */
START_TEST(test_starttls_borrowed)
{
    int before = rt_count_fds();
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0) };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *tcp = tcp_connect(r->port), *ln = NULL;
    size_t w;
    SOK(tcp, rill_lines_new(tcp, 512, RILL_EOL_CRLF, RILL_BORROW, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w));
    SOK(ln, read_line_eq(ln, "220 go ahead"));
    SOK(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, 0));
    SOK(ln, rill_write_str(ln, "HELLO\r\n", &w));
    SOK(ln, read_line_eq(ln, "250 hello over tls"));
    ck_assert_int_eq(rill_close(ln), RILL_OK);
    ck_assert_int_eq(rt_fd_is_open(rill_fd(tcp)), 1);
    ck_assert_int_eq(rill_close(tcp), RILL_OK);
    rsrv_join(r);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/*
 * Plaintext injected after the go-ahead: refused, the chain untouched and still the caller's.
 * In RILL_EOL_LF mode too, where the injected bytes sit in the window the inline
 * rill_read_line() reads (rill.h), not where the library's own reads look.
 */
START_TEST(test_starttls_in_place_pending_refused)
{
    static const rill_eol eols[] = { RILL_EOL_CRLF, RILL_EOL_LF };
    static const char *const held[] = {
        "14 bytes received before the upgrade are still unread in lines(max=512 eol=crlf",
        "14 bytes received before the upgrade are still unread in lines(max=512 eol=lf",
    };
    int before = rt_count_fds();
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0), .inject = 1 };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *ln = tcp_connect(r->port), *tcp = ln;
    size_t w;
    SOK(ln, rill_lines_new(tcp, 512, eols[_i], 0, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w));
    SOK(ln, read_line_eq(ln, "220 go ahead"));
    ck_assert_uint_eq(rill_pending(ln), 14);
    char before_desc[512], after_desc[512];
    rill_describe(ln, before_desc, sizeof before_desc);
    rill_stream *kept = ln;
    char want[256];
    snprintf(want, sizeof want, "rill_starttls: refusing to start TLS: %s", held[_i]);
    rt_assert_error(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, 0), RILL_E_PENDING_DATA, want);
    ck_assert_ptr_eq(ln, kept);
    rill_describe(ln, after_desc, sizeof after_desc);
    ck_assert_str_eq(before_desc, after_desc);
    ck_assert_ptr_null(rill_find(ln, "tls"));
    /* The injected line is still there to read (and to log), as plaintext. */
    SOK(ln, read_line_eq(ln, "250 injected"));
    ck_assert_int_eq(rill_close(ln), RILL_OK);
    rsrv_join(r);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/*
 * Lines taken in a batch are consumed from the stream, but the caller may still hold them (a
 * rill_line_iter does): an injected line that came with the go-ahead in one batch is refused
 * too, not only one still in the layer (CVE-2011-0411).
 */
START_TEST(test_starttls_batch_refused)
{
    int before = rt_count_fds();
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0), .inject = 1 };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *ln = tcp_connect(r->port), *tcp = ln;
    size_t w;
    SOK(ln, rill_lines_new(tcp, 512, RILL_EOL_CRLF, 0, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w));
    rill_line_iter it;
    rill_line_iter_init(&it, ln);
    const char *line = NULL;
    size_t len = 0;
    /* The peer writes the go-ahead and the injected line at once: one batch of two. */
    SOK(ln, rill_line_iter_next(&it, &line, &len));
    ck_assert_int_eq((int)len, 12);
    ck_assert_int_eq(memcmp(line, "220 go ahead", 12), 0);
    ck_assert_uint_eq(rill_line_iter_held(&it), 1);
    ck_assert_uint_eq(rill_pending(ln), 0);
    rill_stream *kept = ln;
    rt_assert_error(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, 0), RILL_E_PENDING_DATA,
                    "rill_starttls: refusing to start TLS: the last rill_read_lines batch handed "
                    "out 14 bytes of lines after its first");
    ck_assert_ptr_eq(ln, kept);
    ck_assert_ptr_null(rill_find(ln, "tls"));
    SOK(ln, rill_line_iter_next(&it, &line, &len));
    ck_assert_int_eq(memcmp(line, "250 injected", 12), 0);
    ck_assert_int_eq(rill_close(ln), RILL_OK);
    rsrv_join(r);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/*
 * A batch, then lines read one by one until nothing is pending: the batch is read, so the
 * upgrade goes ahead, even when the buffer was refilled from its front and the go-ahead (a long
 * line, which keeps the buffer) ends where the batch ended (the old check took the stale offset
 * for "nothing read since the batch" and refused).
 */
START_TEST(test_starttls_after_batch_offset_reused)
{
    int before = rt_count_fds();
    rill_stream *c = NULL, *srv = NULL, *ln = NULL;
    rt_tcp_pair(&c, &srv);
    SOK(c, rill_lines_new(c, 8192, RILL_EOL_LF, 0, &ln));
    char *text = malloc(5001);
    ck_assert_ptr_nonnull(text);
    memset(text, 'a', 5001);
    memcpy(text, "250-", 4);
    text[3999] = '\n';
    memcpy(text + 4000, "250 ", 4);
    text[5000] = '\n';
    size_t w = 0;
    SOK(srv, rill_write_all(srv, text, 5001, &w));
    rill_line lines[4];
    size_t count = 0;
    SOK(ln, rill_read_lines(ln, lines, 4, &count));
    ck_assert_uint_eq(count, 2);
    ck_assert_uint_eq(lines[1].len, 1000);
    memset(text, 'g', 5001);
    memcpy(text, "220 ", 4);
    text[5000] = '\n';
    SOK(srv, rill_write_all(srv, text, 5001, &w));
    const char *line = NULL;
    size_t len = 0;
    SOK(ln, rill_read_line(ln, &line, &len));
    ck_assert_uint_eq(len, 5000);
    ck_assert_int_eq(memcmp(line, "220 ggg", 7), 0);
    ck_assert_uint_eq(rill_pending(ln), 0);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *kept = ln;
    SOK(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, 0));
    ck_assert_ptr_eq(ln, kept);
    ck_assert_ptr_nonnull(rill_find(ln, "tls"));
    free(text);
    ck_assert_int_eq(rill_close(srv), RILL_OK);
    ck_assert_int_eq(rill_close(ln), RILL_OK); /* no handshake yet: nothing to say */
    cfg_free(cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/* Arguments the call refuses, each leaving the chain as it was with the reason on it. */
START_TEST(test_starttls_invalid)
{
    int before = rt_count_fds();
    rill_stream *c = NULL, *srv = NULL, *ln = NULL;
    rt_tcp_pair(&c, &srv);
    SOK(c, rill_lines_new(c, 512, RILL_EOL_CRLF, 0, &ln));
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *none = NULL;
    ck_assert_int_eq(rill_starttls(NULL, cfg, RT_CERTS_HOST, 0), RILL_E_INVALID);
    ck_assert_int_eq(rill_starttls(&none, cfg, RT_CERTS_HOST, 0), RILL_E_INVALID);
    rt_assert_error(ln, rill_starttls(&ln, NULL, RT_CERTS_HOST, 0), RILL_E_INVALID,
                    "rill_starttls: config is NULL");
    rt_assert_error(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, RILL_BORROW), RILL_E_INVALID,
                    "rill_starttls: flags 0x1: only RILL_TLS_ALLOW_TRUNCATION is allowed");
    /* rill_tls_client's own refusal reaches the top: the one place to look is the top. */
    rt_assert_error(ln, rill_starttls(&ln, cfg, "*.wild.test", 0), RILL_E_INVALID, "lines: tls: ");
    ck_assert_str_eq(rill_kind(ln), "lines");
    ck_assert_ptr_eq(rill_stream_inner(ln), c);
    SOK(ln, rill_shutdown(ln));
    rt_assert_error(ln, rill_starttls(&ln, cfg, RT_CERTS_HOST, 0), RILL_E_CLOSED,
                    "rill_starttls: the lines layer is shut down for writing");
    ck_assert_int_eq(rill_close(ln), RILL_OK);
    ck_assert_int_eq(rill_close(srv), RILL_OK);
    cfg_free(cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/*
 * Issue 10: a line reader in RILL_EOL_ANY mode returns "220 go ahead" at its CR and owes the
 * LF, which is still on its way. Upgrading then would feed that LF to the handshake: both
 * rill_tls_client over the reader and detaching the reader refuse, naming the owed LF.
 */
START_TEST(test_starttls_owed_lf_refused)
{
    int before = rt_count_fds();
    int release = 0;
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0), .release_lf = &release };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *tcp = tcp_connect(r->port), *ln = NULL, *tls = NULL;
    size_t w;
    SOK(tcp, rill_lines_new(tcp, 512, RILL_EOL_ANY, RILL_BORROW, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w));
    SOK(ln, read_line_eq(ln, "220 go ahead"));
    ck_assert_uint_eq(rill_pending(ln) - rill_pending(tcp), 1);
    rill_status st = rill_tls_client(ln, cfg, RT_CERTS_HOST, 0, &tls);
    rt_assert_error(ln, st, RILL_E_PENDING_DATA,
                    "tls: refusing to start TLS: 1 byte received before the upgrade is still "
                    "unread in lines(max=512 eol=any LF owed)");
    ck_assert_ptr_null(tls);
    __atomic_store_n(&release, 1, __ATOMIC_RELEASE);
    rt_assert_error(tcp, rill_close(ln), RILL_E_PENDING_DATA,
                    "rill_close: 1 pending byte in lines(max=512 eol=any LF owed) did not carry "
                    "over to the borrowed tcp stream");
    /* The byte the refusals kept from the handshake: the next one on the borrowed stream. */
    char c = 0;
    SOK(tcp, rill_read(tcp, &c, 1, &w));
    ck_assert_int_eq(c, '\n');
    ck_assert_int_eq(rill_close(tcp), RILL_OK);
    rsrv_join(r);
    ck_assert_int_eq(r->end[0], RILL_OK);
    ck_assert_int_ne(r->hs[0], RILL_OK); /* we hung up instead of the ClientHello */
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/*
 * The same split go-ahead, settled the documented way: non-blocking reads on the line reader
 * consume the owed LF when it arrives (each says RILL_WANT_READ), rill_pending falls to 0, and
 * the upgrade then runs on a clean stream.
 */
START_TEST(test_starttls_owed_lf_settled)
{
    int before = rt_count_fds();
    int release = 0;
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, 0), .release_lf = &release };
    struct rsrv *r = rsrv_start(NULL, serve_starttls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *tcp = tcp_connect(r->port), *ln = NULL, *tls = NULL, *tln = NULL;
    size_t w;
    SOK(tcp, rill_lines_new(tcp, 512, RILL_EOL_ANY, RILL_BORROW, &ln));
    SOK(ln, read_line_eq(ln, "220 plain greeting"));
    SOK(ln, rill_write_str(ln, "STARTTLS\r\n", &w));
    SOK(ln, read_line_eq(ln, "220 go ahead"));
    ck_assert_uint_eq(rill_pending(ln), 1);
    __atomic_store_n(&release, 1, __ATOMIC_RELEASE);
    SOK(ln, rill_set_timeouts(ln, 0, 0));
    int64_t end = rt_now_us() + 10000000;
    while (rill_pending(ln) > 0 && rt_now_us() < end) {
        char buf[16];
        ck_assert_int_eq(rill_read(ln, buf, sizeof buf, &w), RILL_WANT_READ);
        struct pollfd p = { .fd = -1 };
        SOK(ln, rill_poll_info(ln, &p.fd, &p.events));
        ck_assert_int_ge(poll(&p, 1, 100), 0);
    }
    ck_assert_uint_eq(rill_pending(ln), 0);
    ck_assert_int_eq(rill_close(ln), RILL_OK);
    SOK(tcp, rill_set_timeouts(tcp, 10000, 10000));
    SOK(tcp, rill_tls_client(tcp, cfg, RT_CERTS_HOST, 0, &tls));
    SOK(tls, rill_lines_new(tls, 512, RILL_EOL_ANY, 0, &tln));
    SOK(tln, rill_write_str(tln, "HELLO\r\n", &w));
    SOK(tln, read_line_eq(tln, "250 hello over tls"));
    ck_assert_int_eq(rill_close(tln), RILL_OK);
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK, "server handshake: %s", r->hs_msg[0]);
    ck_assert_msg(r->end[0] == RILL_OK, "server: %s", r->end_msg[0]);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/* ============================================================================================
 * TLS over other streams (the custom BIO path)
 */

/* Reversed lines, plus "BULK <n>": n raw bytes follow; the answer is their checksum. */
static void bulk_loop(struct rsrv *r, rill_stream *s)
{
    rill_stream *ln = NULL;
    if (rill_lines_new(s, 1024, RILL_EOL_LF, 0, &ln) != RILL_OK) {
        rill_close(s);
        return;
    }
    static unsigned char buf[1 << 20];
    for (;;) {
        const char *line;
        size_t len, n, w;
        rill_status st = rill_read_line(ln, &line, &len);
        if (st != RILL_OK) {
            rsrv_end(r, ln, st);
            break;
        }
        if (len > 5 && memcmp(line, "BULK ", 5) == 0) {
            size_t want = strtoul(line + 5, NULL, 10);
            if (want > sizeof buf) {
                rsrv_end(r, ln, RILL_E_PROTOCOL);
                break;
            }
            if (bulk_late_ms) /* a reader that comes late: the sender's buffers fill first */
                usleep((useconds_t)bulk_late_ms * 1000);
            st = rill_read_full(ln, buf, want, &n);
            if (st != RILL_OK) {
                rsrv_end(r, ln, st);
                break;
            }
            char out[32];
            int m = snprintf(out, sizeof out, "%016llx\n",
                             (unsigned long long)rt_checksum(0, buf, want));
            if (rill_write_all(ln, out, (size_t)m, &w) != RILL_OK)
                break;
            continue;
        }
        if (len == 5 && memcmp(line, "CLOSE", 5) == 0) {
            rsrv_end(r, ln, RILL_OK);
            break;
        }
        char out[1100];
        for (size_t i = 0; i < len; i++)
            out[i] = line[len - 1 - i];
        out[len] = '\n';
        if (rill_write_all(ln, out, len + 1, &w) != RILL_OK)
            break;
    }
    rill_close(ln);
}

static void serve_bulk(struct rsrv *r, rill_stream *s)
{
    if (rsrv_handshake(r, s) != RILL_OK) {
        rill_close(s);
        return;
    }
    bulk_loop(r, s);
}

/* Send @p len pattern bytes with "BULK" and check the checksum the server computed. */
static void bulk_exchange(rill_stream *s, size_t len, uint64_t seed)
{
    unsigned char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    rt_fill_pattern(data, len, seed);
    char head[32], want[32], got[32];
    size_t n;
    snprintf(head, sizeof head, "BULK %zu\n", len);
    snprintf(want, sizeof want, "%016llx\n", (unsigned long long)rt_checksum(0, data, len));
    SOK(s, rill_write_str(s, head, &n));
    SOK(s, rill_write_all(s, data, len, &n));
    SOK(s, rill_flush(s));
    rill_status st = rill_read_full(s, got, 17, &n);
    ck_assert_msg(st == RILL_OK, "bulk answer: %s: %s", rill_strerror(st), rill_errmsg(s));
    ck_assert_msg(memcmp(got, want, 17) == 0, "checksum of %zu bytes differs", len);
    free(data);
}

/* TLS over an fd stream on a socketpair: the handshake and data go through the inner stream. */
START_TEST(test_tls_over_socketpair)
{
    int version = _i ? RILL_TLS_1_3 : RILL_TLS_1_2;
    int fds[2];
    rt_socketpair(fds);
    rill_stream *cs = NULL, *ss = NULL, *stls = NULL, *c = NULL;
    CK(rill_fd_new(fds[0], fds[0], RILL_FD_OWN, &cs, &E));
    CK(rill_fd_new(fds[1], fds[1], RILL_FD_OWN, &ss, &E));
    SOK(cs, rill_set_timeouts(cs, 10000, 10000));
    SOK(ss, rill_set_timeouts(ss, 10000, 10000));
    rill_tls_config *scfg = cfg_server(&C->good, 0, version), *cfg = cfg_client(0);
    SOK(ss, rill_tls_server(ss, scfg, 0, &stls));
    struct rsrv *r = rsrv_start_stream(stls, serve_bulk, NULL);
    SOK(cs, rill_tls_client(cs, cfg, RT_CERTS_HOST, 0, &c));
    SOK(c, rill_tls_handshake(c));
    rill_tls_info info;
    get_info(c, &info);
    ck_assert_str_eq(info.version, version_name(version));
    ck_assert_int_eq(info.verified, 1);
    char desc[512];
    rill_describe(c, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "tls(") && strstr(desc, "> fd("), "describe: %s", desc);
    rev_exchange(c, "over a socketpair");
    bulk_exchange(c, 300000, 7);
    rev_close(c);
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK, "server: %s", r->hs_msg[0]);
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(scfg);
}
END_TEST

static void serve_tls_in_tls(struct rsrv *r, rill_stream *tcp)
{
    const struct srv_arg *a = r->arg;
    rill_stream *outer = NULL, *inner = NULL;
    if (rill_tls_server(tcp, a->cfg, 0, &outer) != RILL_OK) {
        rill_close(tcp);
        return;
    }
    if (rsrv_handshake(r, outer) != RILL_OK) { /* hs[0], info[0]: the outer session */
        rill_close(outer);
        return;
    }
    if (rill_tls_server(outer, a->inner, 0, &inner) != RILL_OK) {
        rill_close(outer);
        return;
    }
    r->served = 1;
    if (rsrv_handshake(r, inner) != RILL_OK) { /* hs[1], info[1]: the inner one */
        r->served = 0;
        rill_close(inner);
        return;
    }
    r->served = 0;
    bulk_loop(r, inner);
}

/* An inner TLS 1.2 session inside an outer TLS 1.3 session, both ends rill. */
START_TEST(test_tls_over_tls)
{
    struct srv_arg a = { .cfg = cfg_server(&C->good, 0, RILL_TLS_1_3),
                         .inner = cfg_server(&C->wildcard, 0, RILL_TLS_1_2) };
    struct rsrv *r = rsrv_start(NULL, serve_tls_in_tls, 1, &a);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *tcp = tcp_connect(r->port), *outer = NULL, *inner = NULL;
    SOK(tcp, rill_tls_client(tcp, cfg, RT_CERTS_HOST, 0, &outer));
    SOK(outer, rill_tls_client(outer, cfg, "inner.wild.rill.test", 0, &inner));
    SOK(inner, rill_tls_handshake(inner));
    rill_tls_info info;
    get_info(inner, &info); /* the topmost TLS layer */
    ck_assert_str_eq(info.version, "TLSv1.2");
    ck_assert_str_eq(info.servername, "inner.wild.rill.test");
    ck_assert_str_eq(info.spki_sha256, C->wildcard.pin);
    get_info(rill_stream_inner(inner), &info);
    ck_assert_str_eq(info.version, "TLSv1.3");
    ck_assert_str_eq(info.spki_sha256, C->good.pin);
    char desc[768];
    rill_describe(inner, desc, sizeof desc);
    const char *first = strstr(desc, "tls(TLSv1.2");
    ck_assert_msg(first && strstr(first, "> tls(TLSv1.3") && strstr(desc, "> tcp("), "describe: %s",
                  desc);
    rev_exchange(inner, "tls in tls");
    bulk_exchange(inner, 200000, 11);
    rev_close(inner);
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK && r->hs[1] == RILL_OK, "server: %s / %s", r->hs_msg[0],
                  r->hs_msg[1]);
    ck_assert_str_eq(r->info[1].servername, "inner.wild.rill.test");
    rsrv_free(r);
    cfg_free(cfg);
    cfg_free(a.cfg);
    cfg_free(a.inner);
}
END_TEST

/* Large transfers both ways over the fast path (OpenSSL on the socket itself). */
START_TEST(test_bulk_tcp)
{
    struct peer p;
    struct peer_spec spec = { .serve = serve_bulk, .version = loop_version(_i * 2) };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    bulk_exchange(s, 1, 1);
    bulk_exchange(s, 16384, 2);
    bulk_exchange(s, 1000000, 3);
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/*
 * One rill_write carries many records: blocking and under a deadline, a 200 kB write goes out in
 * one call (it was cut at one 16 KiB record, so a large write walked the chain per record), over
 * the socket fast path and over the stream BIO; the peer checks every byte.
 */
START_TEST(test_write_many_records)
{
    int deadline = _i % 2, over_fd = _i / 2;
    rill_tls_config *scfg = cfg_server(&C->good, 0, 0), *cfg = cfg_client(0);
    struct rsrv *r = NULL;
    rill_stream *c = NULL;
    if (over_fd) {
        int fds[2];
        rt_socketpair(fds);
        rill_stream *cs = NULL, *ss = NULL, *stls = NULL;
        CK(rill_fd_new(fds[0], fds[0], RILL_FD_OWN, &cs, &E));
        CK(rill_fd_new(fds[1], fds[1], RILL_FD_OWN, &ss, &E));
        SOK(ss, rill_set_timeouts(ss, 10000, 10000));
        SOK(ss, rill_tls_server(ss, scfg, 0, &stls));
        r = rsrv_start_stream(stls, serve_bulk, NULL);
        SOK(cs, rill_tls_client(cs, cfg, RT_CERTS_HOST, 0, &c));
    } else {
        r = rsrv_start(scfg, serve_bulk, 1, NULL);
        c = tls_client_on(r->port, cfg, RT_CERTS_HOST, 0);
    }
    if (deadline)
        SOK(c, rill_set_timeouts(c, 10000, 10000));
    size_t len = 200000, n = 0;
    unsigned char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    rt_fill_pattern(data, len, 5);
    char head[32], want[32], got[32];
    snprintf(head, sizeof head, "BULK %zu\n", len);
    snprintf(want, sizeof want, "%016llx\n", (unsigned long long)rt_checksum(0, data, len));
    SOK(c, rill_write_str(c, head, &n));
    SOK(c, rill_write(c, data, len, &n));
    ck_assert_uint_eq(n, len);
    SOK(c, rill_flush(c));
    SOK(c, rill_read_full(c, got, 17, &n));
    ck_assert_msg(memcmp(got, want, 17) == 0, "checksum of %zu bytes differs", len);
    rev_close(c);
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK, "server: %s", r->hs_msg[0]);
    rsrv_free(r);
    free(data);
    cfg_free(cfg);
    cfg_free(scfg);
}
END_TEST

/* ============================================================================================
 * Ends of the stream
 */

/* Write a line, then FIN without close_notify; wait for the client to go. */
static void serve_truncate(struct rsrv *r, rill_stream *s)
{
    size_t w;
    if (rsrv_handshake(r, s) == RILL_OK && rill_write_str(s, "bye\n", &w) == RILL_OK &&
        rill_flush(s) == RILL_OK) {
        shutdown(rill_fd(s), SHUT_WR);
        char buf[64];
        size_t n;
        rill_status st;
        while ((st = rill_read(s, buf, sizeof buf, &n)) == RILL_OK)
            ;
        rsrv_end(r, s, st);
    }
    rill_close(s);
}

START_TEST(test_truncation)
{
    int kind = _i % 2, allow = _i / 2;
    unsigned flags = allow ? RILL_TLS_ALLOW_TRUNCATION : 0;
    struct peer p;
    struct peer_spec spec = { .serve = serve_truncate };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, flags, &s));
    char buf[64];
    size_t n;
    if (kind == PEER_OPENSSL) {
        rev_exchange(s, "before the kill");
        rt_sserver_kill(p.ss); /* the kernel closes its socket: FIN, no close_notify */
    } else {
        SOK(s, rill_read_full(s, buf, 4, &n));
        ck_assert_int_eq(memcmp(buf, "bye\n", 4), 0);
    }
    rill_status st = rill_read(s, buf, sizeof buf, &n);
    if (allow) {
        ck_assert_msg(st == RILL_EOF, "%s with ALLOW_TRUNCATION: %s: %s", peer_name(kind),
                      rill_strerror(st), rill_errmsg(s));
    } else {
        rt_assert_error(s, st, RILL_E_TRUNCATED, "without close_notify");
        ck_assert_int_eq(rill_read(s, buf, sizeof buf, &n), RILL_E_TRUNCATED);
    }
    rill_close(s);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* Read everything up to the client's close_notify, then answer with the count and close. */
static void serve_halfclose(struct rsrv *r, rill_stream *s)
{
    if (rsrv_handshake(r, s) != RILL_OK) {
        rill_close(s);
        return;
    }
    char buf[4096];
    size_t n;
    rill_status st;
    r->got = 0;
    while ((st = rill_read(s, buf, sizeof buf, &n)) == RILL_OK)
        r->got += n;
    rsrv_end(r, s, st);
    if (st == RILL_EOF) {
        char out[64];
        snprintf(out, sizeof out, "got %zu\n", r->got);
        size_t w;
        if (rill_write_str(s, out, &w) != RILL_OK)
            rsrv_end(r, s, RILL_E_IO);
    }
    rill_close(s);
}

/* rill_shutdown sends close_notify (and FIN); the peer can still answer. */
START_TEST(test_half_close)
{
    int version = _i ? RILL_TLS_1_3 : RILL_TLS_1_2;
    struct peer p;
    struct peer_spec spec = { .serve = serve_halfclose, .version = version };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    size_t n;
    SOK(s, rill_write_str(s, "twelve bytes", &n));
    SOK(s, rill_shutdown(s));
    SOK(s, rill_shutdown(s)); /* twice is harmless */
    rt_assert_error(s, rill_write_str(s, "more", &n), RILL_E_CLOSED, "");
    char buf[64];
    rill_status st = rill_read_full(s, buf, 7, &n);
    ck_assert_msg(st == RILL_OK, "%s: answer after our close_notify: %s: %s", version_name(version),
                  rill_strerror(st), rill_errmsg(s));
    ck_assert_int_eq(memcmp(buf, "got 12\n", 7), 0);
    st = rill_read(s, buf, sizeof buf, &n);
    ck_assert_msg(st == RILL_EOF, "after the answer: %s: %s", rill_strerror(st), rill_errmsg(s));
    rill_close(s);
    peer_stop(&p);
    ck_assert_msg(p.rs->end[0] == RILL_EOF, "server read ended with %s: %s",
                  rill_strerror(p.rs->end[0]), p.rs->end_msg[0]);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* ============================================================================================
 * Peers that do not complete a handshake
 */

START_TEST(test_handshake_timeout_connect)
{
    rill_tls_config *cfg = cfg_client(0);
    int fds = rt_count_fds();
    rt_rawserver *silent = rt_silent_start();
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 300;
    o.tls = cfg;
    o.tls_servername = RT_CERTS_HOST;
    rill_stream *s = NULL;
    memset(&E, 0, sizeof E);
    rill_status st = rill_connect(NULL, "127.0.0.1", rt_rawserver_port(silent), &o, &s, &E);
    rt_assert_err(&E, st, RILL_E_TIMEOUT, "handshake");
    ck_assert_msg(strstr(E.msg, "timed out") != NULL, "message \"%s\"", E.msg);
    ck_assert_ptr_null(s);
    ck_assert_int_ge(rt_rawserver_accepted(silent), 1);
    rt_rawserver_stop(silent);
    ck_assert_int_eq(rt_count_fds(), fds);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_handshake_timeout_stream)
{
    rt_rawserver *silent = rt_silent_start();
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s = tls_client_on(rt_rawserver_port(silent), cfg, RT_CERTS_HOST, 0);
    SOK(s, rill_set_timeouts(s, 300, 300));
    rill_status st = rill_tls_handshake(s);
    rt_assert_error(s, st, RILL_E_TIMEOUT, "handshake timed out after 300 ms");
    /* Still usable: the next attempt waits again. */
    char buf[16];
    size_t n;
    st = rill_read(s, buf, sizeof buf, &n);
    rt_assert_error(s, st, RILL_E_TIMEOUT, "timed out");
    rill_close(s);
    rt_rawserver_stop(silent);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_garbage_server)
{
    static const char http[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    rt_rawserver *g = rt_garbage_start(http, sizeof http - 1);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    rill_status st = tls_connect(rt_rawserver_port(g), cfg, RT_CERTS_HOST, 0, &s);
    rt_assert_err(&E, st, RILL_E_TLS, "handshake failed");
    ck_assert_msg(strstr(E.msg, "wrong version number") != NULL, "message \"%s\"", E.msg);
    rt_rawserver_stop(g);
    cfg_free(cfg);
}
END_TEST

/* Read the ClientHello (so closing sends FIN, not RST), then hang up. */
static void serve_hang_up(struct rsrv *r, rill_stream *s)
{
    char buf[8192];
    size_t n;
    rsrv_end(r, s, rill_read(s, buf, sizeof buf, &n));
    rill_close(s);
}

START_TEST(test_peer_hangs_up_in_handshake)
{
    struct rsrv *r = rsrv_start(NULL, serve_hang_up, 1, NULL);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    rill_status st = tls_connect(r->port, cfg, RT_CERTS_HOST, 0, &s);
    rt_assert_err(&E, st, RILL_E_TLS, "peer closed the connection during the handshake");
    rsrv_join(r);
    ck_assert_msg(r->end[0] == RILL_OK, "server did not read the ClientHello: %s", r->end_msg[0]);
    rsrv_free(r);
    cfg_free(cfg);
}
END_TEST

/* rill_listen with TLS hands out streams at once; a client that never speaks stalls nothing. */
START_TEST(test_listen_tls_accept_not_stalled)
{
    rill_tls_config *scfg = cfg_server(&C->good, 0, 0);
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.tls = scfg;
    rill_listener *l = NULL;
    CK(rill_listen("127.0.0.1", 0, &lo, &l, &E));
    rill_stream *mute = tcp_connect(rill_listener_port(l)), *acc = NULL;
    CK(rill_accept(l, 5000, &acc, &E));
    ck_assert_str_eq(rill_kind(acc), RILL_LAYER_TLS);
    rill_tls_info info;
    get_info(acc, &info);
    ck_assert_int_eq(info.handshake_done, 0);
    ck_assert_int_eq(info.is_server, 1);
    char desc[256];
    rill_describe(acc, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "tls(") && strstr(desc, "handshake pending"), "describe: %s", desc);
    SOK(acc, rill_set_timeouts(acc, 200, 200));
    rt_assert_error(acc, rill_tls_handshake(acc), RILL_E_TIMEOUT, "timed out");
    rill_close(acc);
    rill_close(mute);
    rill_listener_free(l);
    cfg_free(scfg);
}
END_TEST

/* ============================================================================================
 * Non-blocking use
 */

static void nb_wait(rill_stream *s, rill_status st, int64_t end, int *wants)
{
    ck_assert_msg(st == RILL_WANT_READ || st == RILL_WANT_WRITE, "status %s: %s", rill_strerror(st),
                  rill_errmsg(s));
    ck_assert_msg(rt_now_us() < end, "non-blocking loop did not finish within 10 s");
    (*wants)++;
    struct pollfd p;
    SOK(s, rill_poll_info(s, &p.fd, &p.events));
    ck_assert_int_eq(p.fd, rill_fd(s));
    ck_assert_msg(p.events & (POLLIN | POLLOUT), "events %#x", (unsigned)p.events);
    p.revents = 0;
    ck_assert_int_ge(poll(&p, 1, 1000), 0);
}

/* The pieces of @p iov after the first @p done bytes, into @p out (at most 8); their count. */
static int iov_rest(const struct iovec *iov, int cnt, size_t done, struct iovec *out)
{
    int k = 0;
    for (int i = 0; i < cnt; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        out[k].iov_base = (char *)iov[i].iov_base + done;
        out[k].iov_len = iov[i].iov_len - done;
        done = 0;
        k++;
    }
    return k;
}

/*
 * rill_writev through `tls > buffered`: a request line, a 200-byte header and a 16 KiB body
 * as one gather, the peer checks every byte; blocking, under a deadline and non-blocking, over
 * the socket fast path and over the stream BIO. Then small gathers that buffered holds.
 */
START_TEST(test_writev_header_body)
{
    int mode = _i % 3, over_fd = _i / 3;
    static const int timeouts[] = { RILL_TIMEOUT_NONE, 10000, 0 };
    rill_tls_config *scfg = cfg_server(&C->good, 0, 0), *cfg = cfg_client(0);
    struct rsrv *r = NULL;
    rill_stream *c = NULL, *b = NULL;
    if (over_fd) {
        int fds[2];
        rt_socketpair(fds);
        rill_stream *cs = NULL, *ss = NULL, *stls = NULL;
        CK(rill_fd_new(fds[0], fds[0], RILL_FD_OWN, &cs, &E));
        CK(rill_fd_new(fds[1], fds[1], RILL_FD_OWN, &ss, &E));
        SOK(ss, rill_set_timeouts(ss, 10000, 10000));
        SOK(ss, rill_tls_server(ss, scfg, 0, &stls));
        r = rsrv_start_stream(stls, serve_bulk, NULL);
        SOK(cs, rill_tls_client(cs, cfg, RT_CERTS_HOST, 0, &c));
    } else {
        r = rsrv_start(scfg, serve_bulk, 1, NULL);
        c = tls_client_on(r->port, cfg, RT_CERTS_HOST, 0);
    }
    SOK(c, rill_buffered_new(c, RILL_BUFFERED_DEFAULT_SIZE, RILL_BUFFERED_DEFAULT_SIZE, 0, &b));
    SOK(b, rill_set_timeouts(b, timeouts[mode], timeouts[mode]));
    size_t hlen = 200, blen = 16384, len = hlen + blen;
    unsigned char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    rt_fill_pattern(data, len, 9);
    char head[32], want[32], got[32];
    int hl = snprintf(head, sizeof head, "BULK %zu\n", len);
    snprintf(want, sizeof want, "%016llx\n", (unsigned long long)rt_checksum(0, data, len));
    struct iovec iov[3] = { { head, (size_t)hl }, { data, hlen }, { data + hlen, blen } };
    size_t total = (size_t)hl + len, done = 0, n = 0;
    int64_t end = rt_now_us() + 10000000;
    int wants = 0;
    while (done < total) {
        struct iovec rest[8];
        int k = iov_rest(iov, 3, done, rest);
        rill_status st = rill_writev(b, rest, (size_t)k, &n);
        done += n;
        if (st != RILL_OK)
            nb_wait(b, st, end, &wants);
    }
    ck_assert_uint_eq(done, total);
    rill_status st;
    while ((st = rill_flush(b)) != RILL_OK)
        nb_wait(b, st, end, &wants);
    size_t off = 0;
    while (off < 17) {
        st = rill_read(b, got + off, 17 - off, &n);
        if (st == RILL_OK)
            off += n;
        else
            nb_wait(b, st, end, &wants);
    }
    ck_assert_msg(memcmp(got, want, 17) == 0, "checksum of the gathered %zu bytes differs", len);
    if (mode != 2)
        ck_assert_int_eq(wants, 0);
    SOK(b, rill_set_timeouts(b, 10000, 10000));
    rev_close(b);
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK, "server: %s", r->hs_msg[0]);
    rsrv_free(r);
    free(data);
    cfg_free(cfg);
    cfg_free(scfg);
}
END_TEST

/* Loop index: bits 0-1 as loop_kind/loop_version; bit 2: driven by write/read, not handshake. */
START_TEST(test_nonblocking)
{
    int kind = loop_kind(_i), version = loop_version(_i), by_io = (_i & 4) != 0;
    struct peer p;
    struct peer_spec spec = { .version = version };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s = tls_client_on(p.port, cfg, RT_CERTS_HOST, 0);
    SOK(s, rill_set_timeouts(s, 0, 0));
    int64_t end = rt_now_us() + 10000000;
    int wants = 0;
    rill_status st;
    char got[32];
    if (!by_io) {
        /* A fast peer may let one call finish the handshake: WANT is not guaranteed here. */
        while ((st = rill_tls_handshake(s)) != RILL_OK)
            nb_wait(s, st, end, &wants);
        /* The peer sends nothing before our line: a read must not block, nor invent data. */
        size_t n0 = 0;
        st = rill_read(s, got, sizeof got, &n0);
        ck_assert_msg(st == RILL_WANT_READ, "read with nothing sent: %s (%zu bytes): %s",
                      rill_strerror(st), n0, rill_errmsg(s));
        struct pollfd pi;
        SOK(s, rill_poll_info(s, &pi.fd, &pi.events));
        ck_assert_int_eq(pi.fd, rill_fd(s));
        ck_assert_int_eq(pi.events, POLLIN);
    }
    static const char msg[] = "non-blocking\n", want[] = "gnikcolb-non\n";
    size_t off = 0, n;
    while (off < sizeof msg - 1) {
        st = rill_write(s, msg + off, sizeof msg - 1 - off, &n);
        if (st == RILL_OK) {
            off += n;
            continue;
        }
        nb_wait(s, st, end, &wants);
    }
    while ((st = rill_flush(s)) != RILL_OK)
        nb_wait(s, st, end, &wants);
    off = 0;
    while (off < sizeof want - 1) {
        st = rill_read(s, got + off, sizeof want - 1 - off, &n);
        if (st == RILL_OK) {
            off += n;
            continue;
        }
        nb_wait(s, st, end, &wants);
    }
    ck_assert_int_eq(memcmp(got, want, sizeof want - 1), 0);
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_str_eq(info.version, version_name(version));
    SOK(s, rill_set_timeouts(s, 10000, 10000));
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* Non-blocking bulk writes: partial writes and retries must not lose or repeat a byte. */
START_TEST(test_nonblocking_bulk)
{
    int over_fd = _i;   /* 0: TCP (OpenSSL on the socket), 1: socketpair fd stream (custom BIO) */
    bulk_late_ms = 200; /* so 1 MB cannot go out without waiting (the check below) */
    rill_tls_config *scfg = cfg_server(&C->good, 0, 0), *cfg = cfg_client(0);
    struct rsrv *r = NULL;
    rill_stream *c = NULL;
    if (over_fd) {
        int fds[2];
        rt_socketpair(fds);
        rill_stream *cs = NULL, *ss = NULL, *stls = NULL;
        CK(rill_fd_new(fds[0], fds[0], RILL_FD_OWN, &cs, &E));
        CK(rill_fd_new(fds[1], fds[1], RILL_FD_OWN, &ss, &E));
        SOK(ss, rill_set_timeouts(ss, 10000, 10000));
        SOK(ss, rill_tls_server(ss, scfg, 0, &stls));
        r = rsrv_start_stream(stls, serve_bulk, NULL);
        SOK(cs, rill_tls_client(cs, cfg, RT_CERTS_HOST, 0, &c));
    } else {
        r = rsrv_start(scfg, serve_bulk, 1, NULL);
        c = tls_client_on(r->port, cfg, RT_CERTS_HOST, 0);
    }
    SOK(c, rill_set_timeouts(c, 0, 0));
    size_t len = 1000000; /* bulk_loop takes up to 1 MiB */
    unsigned char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    rt_fill_pattern(data, len, 77);
    char head[32];
    int hl = snprintf(head, sizeof head, "BULK %zu\n", len);
    int64_t end = rt_now_us() + 20000000;
    int wants = 0;
    size_t off = 0, n, most = 0;
    rill_status st;
    while (off < (size_t)hl) {
        st = rill_write(c, head + off, (size_t)hl - off, &n);
        if (st == RILL_OK)
            off += n;
        else
            nb_wait(c, st, end, &wants);
    }
    off = 0;
    while (off < len) {
        /* Odd sizes, so records and partial writes fall anywhere. */
        size_t chunk = len - off < 70001 ? len - off : 70001;
        st = rill_write(c, data + off, chunk, &n);
        if (st == RILL_OK) {
            ck_assert_uint_ge(n, 1);
            ck_assert_uint_le(n, chunk);
            most = n > most ? n : most;
            off += n;
        } else {
            nb_wait(c, st, end, &wants);
        }
    }
    while ((st = rill_flush(c)) != RILL_OK)
        nb_wait(c, st, end, &wants);
    char got[17], want[32];
    snprintf(want, sizeof want, "%016llx\n", (unsigned long long)rt_checksum(0, data, len));
    off = 0;
    while (off < 17) {
        st = rill_read(c, got + off, 17 - off, &n);
        if (st == RILL_OK)
            off += n;
        else
            nb_wait(c, st, end, &wants);
    }
    ck_assert_msg(memcmp(got, want, 17) == 0, "checksum of %zu bytes written non-blocking differs",
                  len);
    ck_assert_int_ge(wants, 1);     /* 1 MB cannot go out without waiting once */
    ck_assert_uint_gt(most, 16384); /* a write is not cut at one record */
    SOK(c, rill_set_timeouts(c, 10000, 10000));
    rev_close(c);
    rsrv_join(r);
    ck_assert_msg(r->hs[0] == RILL_OK, "server: %s", r->hs_msg[0]);
    rsrv_free(r);
    free(data);
    cfg_free(cfg);
    cfg_free(scfg);
}
END_TEST

/* Bytes decrypted but not yet read count as pending (the caller must not sleep in poll). */
START_TEST(test_pending)
{
    struct peer p;
    peer_start(&p, _i, NULL);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    ck_assert_uint_eq(rill_pending(s), 0);
    char line[201];
    memset(line, 'x', 200);
    line[200] = '\n';
    size_t n;
    SOK(s, rill_write_all(s, line, sizeof line, &n));
    char buf[201];
    SOK(s, rill_read_full(s, buf, 10, &n));
    /* The whole answer came in one record (s_server -rev and rill both write it at once). */
    ck_assert_uint_eq(rill_pending(s), 191);
    SOK(s, rill_set_timeouts(s, 0, 0));
    SOK(s, rill_read_full(s, buf + 10, 191, &n)); /* no waiting needed */
    ck_assert_uint_eq(rill_pending(s), 0);
    ck_assert_int_eq(memcmp(buf, line, 200), 0); /* "x" * 200 reversed is itself */
    SOK(s, rill_set_timeouts(s, 10000, 10000));
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/*
 * s_server in echo mode sends a TLS 1.3 KeyUpdate that requests ours ("K"): the client must
 * answer it inside a read (a read that writes) and keep the data flowing both ways.
 */
START_TEST(test_key_update)
{
    rt_sserver *ss = rt_sserver_start("-tls1_3", "-cert", C->good.cert, "-key", C->good.key,
                                      "-cert_chain", C->intermediate, (char *)NULL);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(rt_sserver_port(ss), cfg, RT_CERTS_HOST, 0, &s));
    size_t n;
    SOK(s, rill_write_str(s, "from client 1\n", &n));
    ck_assert_msg(rt_sserver_wait_output(ss, "from client 1", 10000), "s_server output: %s",
                  rt_sserver_output(ss));
    char buf[64];
    rt_sserver_send(ss, "one\n");
    SOK(s, rill_read_full(s, buf, 4, &n));
    ck_assert_int_eq(memcmp(buf, "one\n", 4), 0);
    rt_sserver_send(ss, "K\n"); /* returns once s_server has read the line */
    rt_sserver_send(ss, "two\n");
    SOK(s, rill_read_full(s, buf, 4, &n));
    ck_assert_int_eq(memcmp(buf, "two\n", 4), 0);
    SOK(s, rill_write_str(s, "from client 2\n", &n));
    ck_assert_msg(rt_sserver_wait_output(ss, "from client 2", 10000), "s_server output: %s",
                  rt_sserver_output(ss));
    /* Its report of the KeyUpdate (buffered by s_server, out by now): "SSL_do_handshake -> 1". */
    ck_assert_msg(rt_sserver_wait_output(ss, "SSL_do_handshake -> 1", 10000),
                  "s_server did not send the KeyUpdate: %s", rt_sserver_output(ss));
    rill_close(s);
    rt_sserver_stop(ss);
    cfg_free(cfg);
}
END_TEST

/* A TLS 1.0-only client (s_client -tls1) is refused by a rill server, which names its version. */
START_TEST(test_tls10_client_refused)
{
    struct peer p;
    peer_start(&p, PEER_RILL, NULL);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "openssl s_client -connect 127.0.0.1:%u -tls1 -cipher DEFAULT@SECLEVEL=0 "
             "</dev/null >/dev/null 2>&1",
             (unsigned)p.port);
    int rc = system(cmd);
    ck_assert_msg(rc != -1 && rc != 0, "s_client -tls1 succeeded against rill (status %d)", rc);
    peer_stop(&p);
    ck_assert_int_eq(p.rs->hs[0], RILL_E_TLS);
    ck_assert_msg(strstr(p.rs->hs_msg[0], "peer speaks TLSv1.0, minimum is TLSv1.2") != NULL,
                  "server message \"%s\"", p.rs->hs_msg[0]);
    peer_free(&p);
}
END_TEST

/* Errors travel up through decorators with each layer's name. */
START_TEST(test_truncation_through_buffered)
{
    struct peer p;
    struct peer_spec spec = { .serve = serve_truncate };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s, *b;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    SOK(s, rill_buffered_new(s, 4096, 4096, 0, &b));
    char buf[64];
    size_t n;
    SOK(b, rill_read_full(b, buf, 4, &n));
    rill_status st = rill_read(b, buf, sizeof buf, &n);
    rt_assert_error(b, st, RILL_E_TRUNCATED,
                    "buffered: tls: peer closed the connection without "
                    "close_notify");
    rill_close(b);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* ============================================================================================
 * Introspection and configuration variants
 */

START_TEST(test_cipher_choice)
{
    int kind = loop_kind(_i), version = loop_version(_i);
    const char *want =
        version == RILL_TLS_1_2 ? "ECDHE-ECDSA-AES128-GCM-SHA256" : "TLS_CHACHA20_POLY1305_SHA256";
    struct peer p;
    struct peer_spec spec = { .version = version };
    peer_start(&p, kind, &spec);
    rill_tls_config *cfg = cfg_client(0);
    if (version == RILL_TLS_1_2)
        CK(rill_tls_config_set_ciphers(cfg, want, &E));
    else
        CK(rill_tls_config_set_ciphersuites(cfg, want, &E));
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    ck_assert_msg(st == RILL_OK, "%s: %s; peer: %s", peer_name(kind), E.msg, peer_log(&p));
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_str_eq(info.cipher, want);
    char desc[512];
    rill_describe(s, desc, sizeof desc);
    ck_assert_msg(strstr(desc, want) != NULL, "describe: %s", desc);
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* Trust and certificate from memory, and a hashed CA directory. */
START_TEST(test_mem_and_dir_config)
{
    size_t clen, klen, calen;
    char *chain = rt_file_read(C->good.chain, &clen);
    char *key = rt_file_read(C->good.key, &klen);
    char *ca = rt_file_read(C->ca, &calen);
    rill_tls_config *scfg = cfg_new(), *cfg = cfg_new(), *dcfg = NULL;
    CK(rill_tls_config_set_cert_mem(scfg, chain, clen, key, klen, &E));
    CK(rill_tls_config_set_ca_mem(cfg, ca, calen, &E));

    char dir[64], path[128], cmd[256];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/root.pem", dir);
    rt_file_write(path, ca, calen);
    snprintf(cmd, sizeof cmd, "openssl rehash %s >/dev/null 2>&1", dir);
    ck_assert_int_eq(system(cmd), 0);
    dcfg = cfg_new();
    CK(rill_tls_config_set_ca_path(dcfg, dir, &E));

    struct rsrv *r = rsrv_start(scfg, NULL, 2, NULL);
    rill_stream *s;
    CK(tls_connect(r->port, cfg, RT_CERTS_HOST, 0, &s));
    rev_exchange(s, "from memory");
    rev_close(s);
    CK(tls_connect(r->port, dcfg, RT_CERTS_HOST, 0, &s));
    rev_exchange(s, "from a hashed directory");
    rev_close(s);
    rsrv_free(r);
    rt_rmdir(dir);
    free(chain);
    free(key);
    free(ca);
    cfg_free(scfg);
    cfg_free(cfg);
    cfg_free(dcfg);
}
END_TEST

/* Without any CA set, the system store is used: our private root is not in it. */
START_TEST(test_system_store_rejects_private_root)
{
    struct peer p;
    peer_start(&p, PEER_RILL, NULL);
    rill_tls_config *cfg = cfg_new();
    rill_stream *s;
    rill_status st = tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s);
    rt_assert_err(&E, st, RILL_E_TLS_VERIFY, "certificate verify failed");
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_keylog)
{
    int version = _i ? RILL_TLS_1_3 : RILL_TLS_1_2;
    char dir[64], path[128];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/keys.log", dir);
    struct peer p;
    struct peer_spec spec = { .version = version };
    peer_start(&p, PEER_RILL, &spec);
    rill_tls_config *cfg = cfg_client(0);
    CK(rill_tls_config_set_keylog_file(cfg, path, &E));
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    rev_exchange(s, "keys");
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    char *text = rt_file_read(path, NULL);
    const char *want =
        version == RILL_TLS_1_3 ? "CLIENT_HANDSHAKE_TRAFFIC_SECRET " : "CLIENT_RANDOM ";
    ck_assert_msg(strstr(text, want) != NULL, "key log lacks %s: %.200s", want, text);
    free(text);
    rt_rmdir(dir);
}
END_TEST

/*
 * No key-log callback unless there is a key-log file: with one installed, OpenSSL formats every
 * handshake secret for it (a measured 6-14% of a handshake). set_keylog_file(NULL) removes it,
 * also when SSLKEYLOGFILE installed it; a removed file gets no more lines.
 */
START_TEST(test_keylog_callback_only_when_logging)
{
    char dir[64], path[128];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/keys.log", dir);
    rill_tls_config *plain = cfg_client(0);
    ck_assert(SSL_CTX_get_keylog_callback(plain->ctx) == NULL);
    CK(rill_tls_config_set_keylog_file(plain, path, &E));
    ck_assert(SSL_CTX_get_keylog_callback(plain->ctx) != NULL);
    CK(rill_tls_config_set_keylog_file(plain, NULL, &E));
    ck_assert(SSL_CTX_get_keylog_callback(plain->ctx) == NULL);
    ck_assert_int_eq(setenv("SSLKEYLOGFILE", path, 1), 0);
    rill_tls_config *env = cfg_client(0);
    ck_assert_int_eq(unsetenv("SSLKEYLOGFILE"), 0);
    ck_assert(SSL_CTX_get_keylog_callback(env->ctx) != NULL);
    CK(rill_tls_config_set_keylog_file(env, NULL, &E));
    ck_assert(SSL_CTX_get_keylog_callback(env->ctx) == NULL);
    struct peer p;
    struct peer_spec spec = { .version = RILL_TLS_1_3 };
    peer_start(&p, PEER_RILL, &spec);
    rill_stream *s;
    CK(tls_connect(p.port, env, RT_CERTS_HOST, 0, &s));
    rev_exchange(s, "no keys");
    rev_close(s);
    peer_free(&p);
    size_t len = 99;
    char *text = rt_file_read(path, &len);
    ck_assert_msg(len == 0, "key log written after it was turned off: %.200s", text);
    free(text);
    cfg_free(env);
    cfg_free(plain);
    rt_rmdir(dir);
}
END_TEST

/* ============================================================================================
 * Config and constructor errors
 */

START_TEST(test_cfg_trust_errors)
{
    char dir[64], bad[128];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(bad, sizeof bad, "%s/bad.pem", dir);
    static const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
                               "-----END CERTIFICATE-----\n";
    rt_file_write(bad, junk, sizeof junk - 1);
    rill_tls_config *cfg = cfg_new();

    rill_status st = rill_tls_config_set_ca_file(cfg, "/nonexistent/rill/ca.pem", &E);
    rt_assert_err(&E, st, RILL_E_TLS, "cannot load CA file /nonexistent/rill/ca.pem");
    ck_assert_msg(strcasestr(E.msg, "no such file") != NULL, "message \"%s\"", E.msg);
    st = rill_tls_config_set_ca_file(cfg, bad, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "cannot load CA file");
    ck_assert_msg(strstr(E.msg, bad) != NULL, "message \"%s\" lacks the path", E.msg);
    st = rill_tls_config_set_ca_mem(cfg, junk, sizeof junk - 1, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "CA");
    st = rill_tls_config_set_ca_mem(cfg, "", 0, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "empty");
    st = rill_tls_config_set_ca_file(cfg, NULL, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "NULL");
    st = rill_tls_config_set_ca_path(cfg, "/nonexistent/rill/certs", &E);
    rt_assert_err(&E, st, RILL_E_TLS, "cannot open CA directory /nonexistent/rill/certs");
    st = rill_tls_config_set_crl_file(cfg, "/nonexistent/rill/crl.pem", &E);
    rt_assert_err(&E, st, RILL_E_TLS, "/nonexistent/rill/crl.pem");
    st = rill_tls_config_set_crl_file(cfg, bad, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "CRL");
    st = rill_tls_config_set_ca_file(NULL, C->ca, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "config is NULL");
    /* The failures left the config usable. */
    CK(rill_tls_config_set_ca_file(cfg, C->ca, &E));
    cfg_free(cfg);
    rill_tls_config_free(NULL);
    rt_rmdir(dir);
}
END_TEST

START_TEST(test_cfg_cert_errors)
{
    rill_tls_config *cfg = cfg_new();
    rill_status st = rill_tls_config_set_cert_file(cfg, C->good.chain, C->wrong.key, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "does not match");
    ck_assert_msg(strstr(E.msg, C->wrong.key) != NULL, "message \"%s\" lacks the key path", E.msg);
    st = rill_tls_config_set_cert_file(cfg, "/nonexistent/rill/cert.pem", C->good.key, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "/nonexistent/rill/cert.pem");
    st = rill_tls_config_set_cert_file(cfg, C->good.chain, C->good.cert, &E); /* no key in it */
    rt_assert_err(&E, st, RILL_E_TLS, "private key");
    st = rill_tls_config_set_cert_file(cfg, C->good.key, C->good.key, &E); /* no cert in it */
    rt_assert_err(&E, st, RILL_E_TLS, "certificate");
    st = rill_tls_config_set_cert_mem(cfg, "", 0, "", 0, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "empty");
    st = rill_tls_config_set_cert_file(cfg, NULL, C->good.key, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "NULL");
    /* A config whose certificate never loaded cannot serve. */
    rill_stream *c, *sv, *out = NULL;
    rt_tcp_pair(&c, &sv);
    st = rill_tls_server(sv, cfg, 0, &out);
    rt_assert_error(sv, st, RILL_E_INVALID, "no certificate");
    ck_assert_ptr_null(out);
    rt_transfer(c, sv, 1000, 5); /* sv is still ours and works */
    rill_close(c);
    rill_close(sv);
    cfg_free(cfg);
}
END_TEST

static const struct {
    const char *pin;
    const char *needle;
} bad_pins[] = {
    { "", "pin" },
    { "sha256//", "pin" },
    { "md5//yEkidPJfqS4CW8oQrF5VpzcR6G6UZV1ReNRZxDPplIE=", "is not sha256//" },
    { "SHA256//yEkidPJfqS4CW8oQrF5VpzcR6G6UZV1ReNRZxDPplIE=", "is not sha256//" },
    { "sha256//yEkidPJfqS4CW8oQrF5VpzcR6G6UZV1ReNRZxDPplI=", "pin" },     /* 43 chars */
    { "sha256//yEkidPJfqS4CW8oQrF5VpzcR6G6UZV1ReNRZxDPplIE==", "pin" },   /* 45 chars */
    { "sha256//yEkidPJfqS4CW8oQrF5Vpz!R6G6UZV1ReNRZxDPplIE=", "base64" }, /* bad character */
    { "sha256// EkidPJfqS4CW8oQrF5VpzcR6G6UZV1ReNRZxDPplIE=", "pin" },
};

START_TEST(test_cfg_bad_pin)
{
    rill_tls_config *cfg = cfg_new();
    rill_status st = rill_tls_config_add_pin(cfg, bad_pins[_i].pin, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, bad_pins[_i].needle);
    st = rill_tls_config_add_pin(cfg, NULL, &E);
    ck_assert_int_eq(st, RILL_E_INVALID);
    CK(rill_tls_config_add_pin(cfg, C->good.pin, &E));
    cfg_free(cfg);
}
END_TEST

START_TEST(test_cfg_protocol_errors)
{
    rill_tls_config *cfg = cfg_new();
    rill_status st = rill_tls_config_set_versions(cfg, 0x0301, 0, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "RILL_TLS_1_2 or RILL_TLS_1_3");
    st = rill_tls_config_set_versions(cfg, 0x0302, RILL_TLS_1_3, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "0x0302");
    st = rill_tls_config_set_versions(cfg, 0, 0x0300, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "0x0300");
    st = rill_tls_config_set_versions(cfg, RILL_TLS_1_3, RILL_TLS_1_2, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "minimum TLSv1.3 is above maximum TLSv1.2");
    for (int level = -1; level < 2; level++) {
        st = rill_tls_config_set_security_level(cfg, level, &E);
        rt_assert_err(&E, st, RILL_E_INVALID, "outside 2 .. 5");
    }
    st = rill_tls_config_set_security_level(cfg, 6, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "security level 6");
    for (int level = 2; level <= 5; level++)
        CK(rill_tls_config_set_security_level(cfg, level, &E));
    CK(rill_tls_config_set_security_level(cfg, 2, &E));
    st = rill_tls_config_set_ciphers(cfg, "NO-SUCH-CIPHER", &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "no usable cipher in \"NO-SUCH-CIPHER\"");
    st = rill_tls_config_set_ciphersuites(cfg, "TLS_NO_SUCH_SUITE", &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "TLS_NO_SUCH_SUITE");
    st = rill_tls_config_set_alpn(cfg, "", &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "ALPN list is empty");
    st = rill_tls_config_set_alpn(cfg, "h2,,http/1.1", &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "empty or overlong name");
    st = rill_tls_config_set_verify_client(cfg, (rill_tls_client_auth)7, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "7");
    cfg_free(cfg);
}
END_TEST

/* The first stream freezes its config: setters are refused from then on. */
START_TEST(test_cfg_frozen)
{
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *c, *sv, *tls = NULL;
    rt_tcp_pair(&c, &sv);
    SOK(c, rill_tls_client(c, cfg, RT_CERTS_HOST, 0, &tls));
    rill_status st = rill_tls_config_set_alpn(cfg, "h2", &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "in use by a stream");
    st = rill_tls_config_set_ca_file(cfg, C->ca, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "in use by a stream");
    st = rill_tls_config_add_pin(cfg, C->good.pin, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "in use by a stream");
    st = rill_tls_config_insecure_noverifycert(cfg, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "in use by a stream");
    rill_close(tls);
    /* Still frozen after the stream is gone; the config can still be used. */
    st = rill_tls_config_set_versions(cfg, RILL_TLS_1_3, 0, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "in use by a stream");
    rill_close(sv);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_constructor_errors)
{
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *c, *sv, *out = NULL;
    rt_tcp_pair(&c, &sv);
    rill_status st = rill_tls_client(c, cfg, NULL, 0, &out);
    rt_assert_error(c, st, RILL_E_INVALID, "server name is needed");
    ck_assert_ptr_null(out);
    st = rill_tls_client(c, NULL, RT_CERTS_HOST, 0, &out);
    rt_assert_error(c, st, RILL_E_INVALID, "config is NULL");
    st = rill_tls_client(c, cfg, RT_CERTS_HOST, 0, NULL);
    rt_assert_error(c, st, RILL_E_INVALID, "NULL");
    ck_assert_int_eq(rill_tls_client(NULL, cfg, RT_CERTS_HOST, 0, &out), RILL_E_INVALID);
    /* No TLS layer in a chain. */
    rt_assert_error(c, rill_tls_handshake(c), RILL_E_INVALID, "no tls layer");
    rill_tls_info info;
    rt_assert_error(c, rill_tls_get_info(c, &info), RILL_E_INVALID, "no tls layer");
    void *blob;
    size_t len;
    rt_assert_error(c, rill_tls_session_export(c, &blob, &len), RILL_E_INVALID, "");
    rt_assert_error(c, rill_tls_session_import(c, "x", 1), RILL_E_INVALID, "");
    ck_assert_int_eq(rill_tls_session_resumed(c), 0);
    ck_assert_int_eq(rill_tls_session_resumed(NULL), 0);
    /* After all that the transports still work and are ours. */
    rt_transfer(c, sv, 4096, 9);
    rill_close(c);
    rill_close(sv);
    cfg_free(cfg);
}
END_TEST

/* With noverifyname (or noverifycert) a client needs no name. */
START_TEST(test_no_name_insecure)
{
    struct peer p;
    peer_start(&p, PEER_RILL, NULL);
    rill_tls_config *cfg = cfg_client(0);
    CK(rill_tls_config_insecure_noverifyname(cfg, &E));
    rill_stream *s = tls_client_on(p.port, cfg, NULL, 0);
    SOK(s, rill_tls_handshake(s));
    rill_tls_info info;
    get_info(s, &info);
    ck_assert_int_eq(info.verified, 0);
    rev_exchange(s, "no name");
    rev_close(s);
    peer_stop(&p);
    ck_assert_str_eq(p.rs->info[0].servername, ""); /* no SNI sent */
    peer_free(&p);
    cfg_free(cfg);
}
END_TEST

/* ============================================================================================
 * Resources
 */

/* Successes and every kind of failure leave no descriptor behind. */
START_TEST(test_no_fd_leak)
{
    int before = rt_count_fds();
    rill_tls_config *cfg = cfg_client(0);
    struct peer p;
    struct peer_spec spec = { .conns = 4 };
    peer_start(&p, PEER_RILL, &spec);
    for (int i = 0; i < 2; i++) {
        rill_stream *s;
        CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
        rev_exchange(s, "fd");
        rev_close(s);
        ck_assert_int_eq(tls_connect(p.port, cfg, "wrong.rill.test", 0, &s), RILL_E_TLS_VERIFY);
    }
    peer_free(&p);
    static const char junk[] = "garbage garbage garbage\r\n";
    rt_rawserver *g = rt_garbage_start(junk, sizeof junk - 1);
    for (int i = 0; i < 3; i++) {
        rill_stream *s;
        ck_assert_int_eq(tls_connect(rt_rawserver_port(g), cfg, RT_CERTS_HOST, 0, &s), RILL_E_TLS);
    }
    rt_rawserver_stop(g);
    peer_start(&p, PEER_OPENSSL, NULL);
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);
    ck_assert_int_eq(rt_count_fds(), before);
}
END_TEST

/* Everything rill allocates for a config, a listener, both ends and a full exchange comes back. */
START_TEST(test_memory_returns)
{
    /* Warm up once-per-process state outside the count. */
    struct peer p;
    peer_start(&p, PEER_RILL, NULL);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(p.port, cfg, RT_CERTS_HOST, 0, &s));
    rev_close(s);
    peer_free(&p);
    cfg_free(cfg);

    rt_counting_on();
    counting = 1;
    struct peer_spec spec = { .conns = 2 };
    peer_start(&p, PEER_RILL, &spec);
    rill_ctx *ctx = make_ctx();
    cfg = cfg_client(0);
    for (int i = 0; i < 2; i++) {
        CK(ctx_connect(ctx, p.port, cfg, &s));
        rev_exchange(s, "counted");
        ck_assert_int_eq(rill_tls_session_resumed(s), i);
        rev_close(s);
    }
    peer_free(&p);
    rill_ctx_free(ctx);
    cfg_free(cfg);
    size_t live = rt_live_bytes;
    rt_counting_off();
    counting = 0;
    ck_assert_msg(live == 0, "%zu bytes of rill's allocations still live", live);
}
END_TEST

/*
 * Every allocation rill makes for a client connection fails once, in turn: each failure is a
 * clean RILL_E_NOMEM with nothing leaked (bytes or descriptors), until the whole exchange works.
 */
START_TEST(test_alloc_failures)
{
    rt_sserver *ss = rt_sserver_start("-rev", "-cert", C->good.cert, "-key", C->good.key,
                                      "-cert_chain", C->intermediate, (char *)NULL);
    int fds = rt_count_fds();
    int done = 0;
    long k;
    for (k = 0; k < 400 && !done; k++) {
        rt_counting_on();
        rt_allocs_left = k;
        rill_tls_config *cfg = NULL;
        rill_stream *s = NULL;
        rill_status st = rill_tls_config_new(&cfg, &E);
        if (st == RILL_OK)
            st = rill_tls_config_set_ca_file(cfg, C->ca, &E);
        if (st == RILL_OK)
            st = tls_connect(rt_sserver_port(ss), cfg, RT_CERTS_HOST, 0, &s);
        char msg[RILL_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", E.msg);
        if (st == RILL_OK) {
            size_t n;
            char buf[8];
            st = rill_write_str(s, "abc\n", &n);
            if (st == RILL_OK)
                st = rill_read_full(s, buf, 4, &n);
            snprintf(msg, sizeof msg, "%s", rill_errmsg(s));
            rill_close(s);
            done = st == RILL_OK && rt_allocs_left > 0;
        }
        cfg_free(cfg);
        rt_allocs_left = -1;
        size_t live = rt_live_bytes;
        rt_counting_off();
        ck_assert_msg(st == RILL_OK || st == RILL_E_NOMEM, "allocation %ld failing gave %s: %s", k,
                      rill_strerror(st), msg);
        ck_assert_msg(live == 0, "allocation %ld failing leaked %zu bytes (%s)", k, live, msg);
        ck_assert_msg(rt_count_fds() == fds, "allocation %ld failing leaked a descriptor (%s)", k,
                      msg);
    }
    ck_assert_msg(done, "no run succeeded within %ld allocations", k);
    rt_sserver_stop(ss);
}
END_TEST

/* ============================================================================================
 * Suite
 */

/* ---- rill_tls_get_peer_cert, groups, and the close after a fatal alert ---- */

START_TEST(test_peer_cert_list)
{
    rill_tls_config *scfg = cfg_server(&C->good, 0, 0);
    struct rsrv *r = rsrv_start(scfg, NULL, 1, NULL);
    rill_tls_config *cfg = cfg_client(0);
    rill_stream *s;
    CK(tls_connect(r->port, cfg, RT_CERTS_HOST, 0, &s));
    rill_tls_cert info;
    char *pem = NULL;
    size_t len = 0;
    SOK(s, rill_tls_get_peer_cert(s, 0, &info, &pem, &len));
    ck_assert_str_eq(info.subject, "CN=" RT_CERTS_HOST ",O=rill tests");
    ck_assert_msg(strncmp(info.issuer, "CN=Rill Test Intermediate", 25) == 0, "%s", info.issuer);
    ck_assert(info.not_before[0] && info.not_after[0]);
    ck_assert(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0 && strlen(pem) == len);
    ck_assert(strstr(pem, "-----END CERTIFICATE-----\n") == pem + len - 26);
    rill_free(pem);
    SOK(s, rill_tls_get_peer_cert(s, 1, &info, NULL, NULL));
    ck_assert_msg(strncmp(info.subject, "CN=Rill Test Intermediate", 25) == 0, "%s", info.subject);
    ck_assert_int_eq(rill_tls_get_peer_cert(s, 2, &info, &pem, &len), RILL_EOF);
    ck_assert_ptr_null(pem);
    ck_assert_int_eq(len, 0);
    rill_tls_info ti;
    SOK(s, rill_tls_get_info(s, &ti));
    ck_assert_msg(ti.group[0] != '\0' && !ti.hello_retry && !ti.close_notify && !ti.truncated,
                  "group %s hrr %d", ti.group, ti.hello_retry);
    size_t n;
    SOK(s, rill_write_str(s, "CLOSE\n", &n));
    rill_close(s);
    rsrv_free(r);

    /* Before the handshake, and without a TLS layer. */
    int fds[2];
    ck_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    rill_stream *plain = NULL, *tls = NULL;
    CK(rill_fd_new(fds[0], fds[0], 0, &plain, &E));
    rt_assert_error(plain, rill_tls_get_peer_cert(plain, 0, &info, &pem, &len), RILL_E_INVALID,
                    "rill_tls_get_peer_cert: no TLS layer with a finished handshake");
    CK(rill_tls_client(plain, cfg, RT_CERTS_HOST, 0, &tls));
    rt_assert_error(tls, rill_tls_get_peer_cert(tls, 0, NULL, &pem, NULL), RILL_E_INVALID,
                    "rill_tls_get_peer_cert: no TLS layer with a finished handshake");
    ck_assert_ptr_null(pem);
    CK(rill_set_timeouts(tls, 0, 0));
    rill_close(tls);
    close(fds[1]);
    cfg_free(cfg);
    cfg_free(scfg);
}
END_TEST

START_TEST(test_cfg_groups)
{
    rill_tls_config *cfg = cfg_new();
    rill_status st = rill_tls_config_set_groups(cfg, "NoSuchGroup", &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "tls: no usable group in \"NoSuchGroup\"");
    st = rill_tls_config_set_groups(cfg, "", &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "no usable group in \"\"");
    st = rill_tls_config_set_groups(cfg, NULL, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "no usable group");
    CK(rill_tls_config_set_groups(cfg, "X25519:P-256", &E));
    cfg_free(cfg);
}
END_TEST

struct silent_client {
    uint16_t port;
    rill_tls_config *cfg;
    rill_status st;
    int release; /* atomic: the test is done with the server side */
};

/* A TLS 1.3 client without a certificate that completes its side and then says nothing. */
static void *silent_client_main(void *arg)
{
    struct silent_client *sc = arg;
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.timeout_ms = 10000;
    o.tls = sc->cfg;
    o.tls_servername = RT_CERTS_HOST;
    rill_stream *s = NULL;
    rill_error err;
    sc->st = rill_connect(NULL, "127.0.0.1", sc->port, &o, &s, &err);
    while (!__atomic_load_n(&sc->release, __ATOMIC_ACQUIRE))
        usleep(5000);
    if (s && rill_set_timeouts(s, 0, 0) == RILL_OK)
        rill_close(s);
    return NULL;
}

/*
 * After refusing a client certificate (a fatal alert), a blocking close drains the silent
 * peer for a bounded time (about 200 ms) before closing, so the alert is not reset away; a
 * non-blocking close (timeouts 0) does not wait at all.
 */
START_TEST(test_alert_close_drain)
{
    rill_tls_config *scfg = cfg_server(&C->good, 0, RILL_TLS_1_3);
    CK(rill_tls_config_set_ca_file(scfg, C->ca, &E));
    CK(rill_tls_config_set_verify_client(scfg, RILL_TLS_CLIENT_AUTH_REQUIRE, &E));
    rill_listen_opts lo;
    rill_listen_opts_init(&lo);
    lo.stream.tls = scfg;
    rill_listener *l = NULL;
    CK(rill_listen("127.0.0.1", 0, &lo, &l, &E));
    struct silent_client sc = { .port = rill_listener_port(l), .cfg = cfg_client(RILL_TLS_1_3) };
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, silent_client_main, &sc), 0);
    rill_stream *acc = NULL;
    CK(rill_accept(l, 10000, &acc, &E));
    CK(rill_set_timeouts(acc, 10000, 10000));
    rt_assert_error(acc, rill_tls_handshake(acc), RILL_E_TLS, "peer did not return a certificate");
    int blocking = _i == 0;
    if (!blocking)
        CK(rill_set_timeouts(acc, 0, 0));
    int64_t start = rt_now_us();
    rill_close(acc);
    int64_t ms = (rt_now_us() - start) / 1000;
    if (blocking)
        ck_assert_msg(ms >= 150 && ms <= 3000, "blocking close took %lld ms", (long long)ms);
    else
        ck_assert_msg(ms < 150, "non-blocking close took %lld ms", (long long)ms);
    __atomic_store_n(&sc.release, 1, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
    ck_assert_int_eq(sc.st, RILL_OK);
    rill_listener_free(l);
    cfg_free(sc.cfg);
    cfg_free(scfg);
}
END_TEST

Suite *rill_test_suite(void)
{
    /* Make the certificates once, before Check forks a process per test. */
    (void)rt_certs_prepare(NULL, 0);

    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("handshake");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_good_chain, 0, 4);
    tcase_add_loop_test(tc, test_verify_ok, 0, 2 * N(ok_cases));
    tcase_add_loop_test(tc, test_verify_fail, 0, 2 * N(fail_cases));
    tcase_add_test(tc, test_server_chain_as_given);
    tcase_add_loop_test(tc, test_tls10_peer_refused, 0, 2);
    tcase_add_test(tc, test_tls10_client_refused);
    tcase_add_loop_test(tc, test_no_common_version, 0, 2);
    tcase_add_loop_test(tc, test_alpn, 0, 4);
    tcase_add_test(tc, test_alpn_server_preference);
    tcase_add_loop_test(tc, test_cipher_choice, 0, 4);
    tcase_add_test(tc, test_system_store_rejects_private_root);
    tcase_add_test(tc, test_no_name_insecure);
    suite_add_tcase(s, tc);

    tc = tcase_create("client_certs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_mtls_ok, 0, 4);
    tcase_add_loop_test(tc, test_mtls_missing, 0, 4);
    tcase_add_test(tc, test_mtls_optional);
    tcase_add_test(tc, test_mtls_untrusted_client);
    tcase_add_loop_test(tc, test_encrypted_key, 0, 2);
    tcase_add_test(tc, test_encrypted_key_wrong_passphrase);
    tcase_add_test(tc, test_peer_cert_list);
    tcase_add_test(tc, test_cfg_groups);
    tcase_add_loop_test(tc, test_alert_close_drain, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("sessions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_resumption, 0, 4);
    tcase_add_test(tc, test_no_resumption_without_ctx);
    tcase_add_loop_test(tc, test_session_export_import, 0, 4);
    tcase_add_loop_test(tc, test_hand_built_client_uses_cache, 0, 4);
    tcase_add_loop_test(tc, test_session_import_scope, 0, 4);
    tcase_add_loop_test(tc, test_session_import_unverified, 0, 4);
    tcase_add_loop_test(tc, test_resumed_name_rechecked, 0, 4);
    tcase_add_loop_test(tc, test_servername_refused, 0, N(bad_names));
    tcase_add_test(tc, test_servername_trailing_dot);
    tcase_add_loop_test(tc, test_read_wakes_with_record_stuck, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("layering");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_starttls);
    tcase_add_test(tc, test_starttls_pending_refused);
    tcase_add_loop_test(tc, test_starttls_in_place, 0, 2);
    tcase_add_test(tc, test_starttls_bare_transport);
    tcase_add_test(tc, test_starttls_borrowed);
    tcase_add_loop_test(tc, test_starttls_in_place_pending_refused, 0, 2);
    tcase_add_test(tc, test_starttls_batch_refused);
    tcase_add_test(tc, test_starttls_after_batch_offset_reused);
    tcase_add_test(tc, test_starttls_invalid);
    tcase_add_test(tc, test_starttls_owed_lf_refused);
    tcase_add_test(tc, test_starttls_owed_lf_settled);
    tcase_add_loop_test(tc, test_tls_over_socketpair, 0, 2);
    tcase_add_test(tc, test_tls_over_tls);
    tcase_add_loop_test(tc, test_bulk_tcp, 0, 2);
    tcase_add_loop_test(tc, test_write_many_records, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("ends");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_truncation, 0, 4);
    tcase_add_loop_test(tc, test_half_close, 0, 2);
    tcase_add_test(tc, test_handshake_timeout_connect);
    tcase_add_test(tc, test_handshake_timeout_stream);
    tcase_add_test(tc, test_garbage_server);
    tcase_add_test(tc, test_peer_hangs_up_in_handshake);
    tcase_add_test(tc, test_listen_tls_accept_not_stalled);
    tcase_add_loop_test(tc, test_nonblocking, 0, 8);
    tcase_add_loop_test(tc, test_nonblocking_bulk, 0, 2);
    tcase_add_loop_test(tc, test_writev_header_body, 0, 6);
    tcase_add_loop_test(tc, test_pending, 0, 2);
    tcase_add_test(tc, test_key_update);
    tcase_add_test(tc, test_truncation_through_buffered);
    suite_add_tcase(s, tc);

    tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mem_and_dir_config);
    tcase_add_loop_test(tc, test_keylog, 0, 2);
    tcase_add_test(tc, test_keylog_callback_only_when_logging);
    tcase_add_test(tc, test_cfg_trust_errors);
    tcase_add_test(tc, test_cfg_cert_errors);
    tcase_add_loop_test(tc, test_cfg_bad_pin, 0, N(bad_pins));
    tcase_add_test(tc, test_cfg_protocol_errors);
    tcase_add_test(tc, test_cfg_frozen);
    tcase_add_test(tc, test_constructor_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("resources");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_no_fd_leak);
    tcase_add_test(tc, test_memory_returns);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}
