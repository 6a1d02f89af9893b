/* SPDX-License-Identifier: MIT */
/*
 * The server side of TLS (src/transport/tls_server.c and its callbacks in tls.c): certificates
 * chosen by SNI (exact, wildcard, default, refusal) and by key type (ECDSA or RSA, by the
 * client's signature algorithms), reloading certificate files (explicit and check-on-handshake,
 * all-or-nothing: a broken replacement keeps the certificates in use), rotation while clients
 * handshake from several threads (also run under ThreadSanitizer), session tickets (automatic
 * key rotation, keys shared between configs, a key rotated out), and the ALPN policies.
 *
 * The server is rill's listener with rill_tls_server() in threads; the clients are rill's own,
 * `openssl s_client` and `gnutls-cli` (a second TLS stack) as child processes, on 127.0.0.1.
 * Certificates: tests/support/certs.c, plus an RSA leaf and a second ECDSA leaf for
 * good.rill.test made here.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
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

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* I/O timeouts of both ends, in ms: valgrind slows a handshake down many times. */
#define IO_MS (rt_on_valgrind() ? 30000 : 5000)

static const rt_certs *C;
static rill_error E;

#define CK(call)                                                                             \
    do {                                                                                     \
        memset(&E, 0, sizeof E);                                                             \
        rill_status ck_st_ = (call);                                                         \
        ck_assert_msg(ck_st_ == RILL_OK, "%s: %s: %s", #call, rill_strerror(ck_st_), E.msg); \
    } while (0)

/* ---- extra certificates: an RSA leaf and a second ECDSA leaf for good.rill.test ---- */

static const char extra_script[] =
    "set -e\n"
    "O=openssl\n"
    "SAN=subjectAltName=DNS:good.rill.test,DNS:localhost,IP:127.0.0.1,IP:::1\n"
    "leaf() {\n" /* name keyopts */
    "  $O req -config ca.cnf -x509 -CA int.pem -CAkey int.key -newkey $2 -noenc \\\n"
    "    -keyout $1.key -out $1.pem -subj '/O=rill tests/CN=good.rill.test' -days 3650 \\\n"
    "    -addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature \\\n"
    "    -addext extendedKeyUsage=serverAuth -addext $SAN 2>/dev/null\n"
    "  cat $1.pem int.pem > $1.chain.pem\n"
    "  $O x509 -in $1.pem -pubkey -noout | $O pkey -pubin -outform der |\n"
    "    $O dgst -sha256 -binary | $O base64 -A > $1.pin\n"
    "}\n"
    "leaf rsa rsa:2048\n"
    "leaf good2 'ec -pkeyopt ec_paramgen_curve:P-256'\n"
    "leaf ed25519 ed25519\n"
    "leaf ed448 ed448\n"
    "leaf rsapss 'rsa-pss -pkeyopt rsa_keygen_bits:2048'\n";

static rt_leaf RSA, GOOD2, ED25519, ED448, RSAPSS;
static char extra_why[512];

static void set_extra_leaf(rt_leaf *leaf, const char *name)
{
    snprintf(leaf->cert, sizeof leaf->cert, "%s/%s.pem", C->dir, name);
    snprintf(leaf->key, sizeof leaf->key, "%s/%s.key", C->dir, name);
    snprintf(leaf->chain, sizeof leaf->chain, "%s/%s.chain.pem", C->dir, name);
    char path[RT_CERTS_PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s.pin", C->dir, name);
    FILE *f = fopen(path, "r");
    char b64[64] = "";
    size_t n = f ? fread(b64, 1, sizeof b64 - 1, f) : 0;
    if (f)
        fclose(f);
    b64[n] = '\0';
    snprintf(leaf->pin, sizeof leaf->pin, "sha256//%.44s", b64);
}

static void make_extra_certs(void)
{
    char cmd[sizeof extra_script + 128];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s", C->dir, extra_script);
    int rc = system(cmd);
    if (rc != 0)
        snprintf(extra_why, sizeof extra_why, "extra certificates: script status %d", rc);
    set_extra_leaf(&RSA, "rsa");
    set_extra_leaf(&GOOD2, "good2");
    set_extra_leaf(&ED25519, "ed25519");
    set_extra_leaf(&ED448, "ed448");
    set_extra_leaf(&RSAPSS, "rsapss");
}

/* ---- the server: a listener and threads that wrap each connection with the current config */

#define REC_MAX         1024
#define SRV_THREADS_MAX 4

struct rec {
    rill_status hs;
    char msg[RILL_ERRMSG_MAX];
    rill_tls_info info;
};

struct srv {
    rill_listener *listener;
    uint16_t port;
    rill_tls_config *cfg; /* atomic: the config the next accepted connection gets */
    pthread_t threads[SRV_THREADS_MAX];
    int nthreads;
    int stop; /* atomic */
    pthread_mutex_t lock;
    struct rec *recs;
    int nrec;
    int slow_ms; /* hold each connection this long after the handshake before echoing */
};

static void srv_record(struct srv *sv, rill_status hs, rill_stream *s)
{
    pthread_mutex_lock(&sv->lock);
    if (sv->nrec < REC_MAX) {
        struct rec *r = &sv->recs[sv->nrec];
        r->hs = hs;
        snprintf(r->msg, sizeof r->msg, "%s", hs == RILL_OK ? "" : rill_errmsg(s));
        if (rill_tls_get_info(s, &r->info) != RILL_OK)
            memset(&r->info, 0, sizeof r->info);
    }
    sv->nrec++;
    pthread_mutex_unlock(&sv->lock);
}

static void *srv_main(void *arg)
{
    struct srv *sv = arg;
    char buf[4096];
    while (!__atomic_load_n(&sv->stop, __ATOMIC_ACQUIRE)) {
        rill_stream *tcp = NULL, *s = NULL;
        rill_error err;
        rill_status st = rill_accept(sv->listener, 100, &tcp, &err);
        if (st == RILL_E_TIMEOUT)
            continue;
        if (st != RILL_OK)
            break;
        if (rill_set_timeouts(tcp, IO_MS, IO_MS) != RILL_OK ||
            rill_tls_server(tcp, __atomic_load_n(&sv->cfg, __ATOMIC_ACQUIRE), 0, &s) != RILL_OK) {
            rill_close(tcp);
            continue;
        }
        st = rill_tls_handshake(s);
        srv_record(sv, st, s);
        if (st == RILL_OK && sv->slow_ms)
            usleep((useconds_t)sv->slow_ms * 1000);
        size_t n = 0;
        while (st == RILL_OK && (st = rill_read(s, buf, sizeof buf, &n)) == RILL_OK)
            st = rill_write_all(s, buf, n, NULL);
        rill_close(s);
    }
    return NULL;
}

static struct srv *srv_start(rill_tls_config *cfg, int threads)
{
    struct srv *sv = calloc(1, sizeof *sv);
    ck_assert_ptr_nonnull(sv);
    sv->recs = calloc(REC_MAX, sizeof *sv->recs);
    ck_assert_ptr_nonnull(sv->recs);
    pthread_mutex_init(&sv->lock, NULL);
    sv->cfg = cfg;
    CK(rill_listen("127.0.0.1", 0, NULL, &sv->listener, &E));
    sv->port = rill_listener_port(sv->listener);
    sv->nthreads = threads;
    for (int i = 0; i < threads; i++)
        ck_assert_int_eq(pthread_create(&sv->threads[i], NULL, srv_main, sv), 0);
    return sv;
}

static void srv_stop(struct srv *sv)
{
    __atomic_store_n(&sv->stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < sv->nthreads; i++)
        pthread_join(sv->threads[i], NULL);
    rill_listener_free(sv->listener);
    pthread_mutex_destroy(&sv->lock);
    free(sv->recs);
    free(sv);
}

/* Wait until the server has recorded @p n handshakes; the last one's record. */
static struct rec srv_last(struct srv *sv, int n)
{
    int64_t end = rt_now_us() + (int64_t)IO_MS * 1000;
    struct rec r;
    for (;;) {
        pthread_mutex_lock(&sv->lock);
        int have = sv->nrec;
        if (have >= n)
            r = sv->recs[n - 1];
        pthread_mutex_unlock(&sv->lock);
        if (have >= n)
            return r;
        ck_assert_msg(rt_now_us() < end, "the server recorded %d handshakes, not %d", have, n);
        usleep(2000);
    }
}

/* ---- rill's client ---- */

struct hello {
    rill_status st;
    char msg[RILL_ERRMSG_MAX];
    rill_tls_info info;
    void *sess; /* exported session, when asked for */
    size_t sess_len;
};

/*
 * Connect to 127.0.0.1:@p port, handshake verifying @p name, offer @p sess (may be NULL),
 * exchange one line (so TLS 1.3 tickets arrive), record the facts. Thread-safe; no ck_assert
 * on the TLS outcome (it is in @p h).
 */
static void rill_hello(uint16_t port, rill_tls_config *cfg, const char *name, const void *sess,
                       size_t sess_len, int want_session, struct hello *h)
{
    memset(h, 0, sizeof *h);
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.read_timeout_ms = o.write_timeout_ms = IO_MS;
    rill_stream *tcp = NULL, *s = NULL;
    rill_error err;
    h->st = rill_tcp_connect_addr("127.0.0.1", port, &o, &tcp, &err);
    if (h->st != RILL_OK) {
        snprintf(h->msg, sizeof h->msg, "connect: %.200s", err.msg);
        return;
    }
    h->st = rill_tls_client(tcp, cfg, name, 0, &s);
    if (h->st != RILL_OK) {
        snprintf(h->msg, sizeof h->msg, "%s", rill_errmsg(tcp));
        rill_close(tcp);
        return;
    }
    if (sess && (h->st = rill_tls_session_import(s, sess, sess_len)) != RILL_OK)
        goto out;
    if ((h->st = rill_tls_handshake(s)) != RILL_OK)
        goto out;
    char line[8];
    size_t n = 0;
    if ((h->st = rill_write_all(s, "ping\n", 5, NULL)) != RILL_OK ||
        (h->st = rill_read_full(s, line, 5, &n)) != RILL_OK)
        goto out;
    if (memcmp(line, "ping\n", 5) != 0) {
        h->st = RILL_E_PROTOCOL;
        snprintf(h->msg, sizeof h->msg, "echo differs");
    }
    if ((h->st = rill_tls_get_info(s, &h->info)) != RILL_OK)
        goto out;
    if (want_session)
        h->st = rill_tls_session_export(s, &h->sess, &h->sess_len);
out:
    if (h->st != RILL_OK && !h->msg[0])
        snprintf(h->msg, sizeof h->msg, "%s", rill_errmsg(s));
    rill_close(s);
}

static rill_tls_config *client_cfg(void)
{
    rill_tls_config *cfg = NULL;
    CK(rill_tls_config_new(&cfg, &E));
    CK(rill_tls_config_set_ca_file(cfg, C->ca, &E));
    return cfg;
}

#define HELLO_OK(h) \
    ck_assert_msg((h)->st == RILL_OK, "client: %s: %s", rill_strerror((h)->st), (h)->msg)

/* A handshake must succeed and get the certificate with @p pin (asserted at the caller). */
#define expect_pin(port, ccfg, pin)                                                         \
    do {                                                                                    \
        struct hello ep_h_;                                                                 \
        rill_hello((port), (ccfg), RT_CERTS_HOST, NULL, 0, 0, &ep_h_);                      \
        HELLO_OK(&ep_h_);                                                                   \
        ck_assert_msg(strcmp(ep_h_.info.spki_sha256, (pin)) == 0, "served %s, expected %s", \
                      ep_h_.info.spki_sha256, (pin));                                       \
    } while (0)

/* ---- command-line clients ---- */

/*
 * Run @p argv with @p input on stdin; stdout and stderr together into @p out. Returns the exit
 * status (128 + signal when killed; the tool is killed after 10 s).
 */
static int run_tool(const char *const *argv, const char *input, char *out, size_t len)
{
    int in[2], outp[2];
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(outp, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        dup2(outp[1], 2);
        execvp(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    signal(SIGPIPE, SIG_IGN);
    if (input) {
        ssize_t w = write(in[1], input, strlen(input));
        (void)w;
    }
    close(in[1]);
    size_t used = 0;
    int64_t end = rt_now_us() + 10000000;
    for (;;) {
        struct pollfd p = { .fd = outp[0], .events = POLLIN };
        int left = (int)((end - rt_now_us()) / 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        char buf[4096];
        ssize_t r = read(outp[0], buf, sizeof buf);
        if (r <= 0)
            break;
        size_t take = (size_t)r < len - 1 - used ? (size_t)r : len - 1 - used;
        memcpy(out + used, buf, take);
        used += take;
    }
    out[used] = '\0';
    close(outp[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static int s_client(uint16_t port, const char *sni, const char *extra1, const char *extra2,
                    char *out, size_t len)
{
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    const char *argv[16] = {
        "openssl", "s_client", "-connect", addr, "-CAfile", C->ca, "-verify_return_error", "-brief"
    };
    int n = 8;
    if (sni) {
        argv[n++] = "-servername";
        argv[n++] = sni;
    } else {
        argv[n++] = "-noservername";
    }
    if (extra1)
        argv[n++] = extra1;
    if (extra2)
        argv[n++] = extra2;
    argv[n] = NULL;
    return run_tool(argv, "ping\n", out, len);
}

static int gnutls_cli(uint16_t port, const char *sni, const char *alpn, char *out, size_t len)
{
    char portarg[16], ca[RT_CERTS_PATH_MAX + 16], sniarg[300], vfy[300], alpnarg[64];
    snprintf(portarg, sizeof portarg, "%u", port);
    snprintf(ca, sizeof ca, "--x509cafile=%s", C->ca);
    snprintf(sniarg, sizeof sniarg, "--sni-hostname=%s", sni);
    snprintf(vfy, sizeof vfy, "--verify-hostname=%s", sni);
    const char *argv[12] = { "gnutls-cli", "-p", portarg, ca, sniarg, vfy };
    int n = 6;
    if (alpn) {
        snprintf(alpnarg, sizeof alpnarg, "--alpn=%s", alpn);
        argv[n++] = alpnarg;
    }
    argv[n++] = "127.0.0.1";
    argv[n] = NULL;
    return run_tool(argv, "ping\n", out, len);
}

/* ---- fixtures ---- */

static void setup(void)
{
    C = rt_certs_get();
    ck_assert_msg(!extra_why[0], "%s", extra_why);
    rt_watchdog(60, "tls_server test");
}

static void teardown(void)
{
    rt_watchdog(0, NULL);
}

/* A server config with the SNI entries of the SNI tests. */
static rill_tls_config *sni_cfg(rill_tls_sni_policy policy, int with_default)
{
    rill_tls_config *cfg = NULL;
    CK(rill_tls_config_new(&cfg, &E));
    if (with_default) {
        CK(rill_tls_config_set_cert_file(cfg, C->good.chain, C->good.key, &E));
        CK(rill_tls_config_add_cert_file(cfg, NULL, RSA.chain, RSA.key, &E));
    }
    CK(rill_tls_config_add_cert_file(cfg, "Other.Example", C->wrong.chain, C->wrong.key, &E));
    CK(rill_tls_config_add_cert_file(cfg, "*.wild.rill.test", C->wildcard.chain, C->wildcard.key,
                                     &E));
    CK(rill_tls_config_set_sni_policy(cfg, policy, &E));
    return cfg;
}

/* ============================================================================================
 * SNI
 */

static const struct sni_case {
    const char *sni;   /* NULL: no SNI (rill: an IP literal) */
    const char *entry; /* the entry the server reports */
} sni_cases[] = {
    { "other.example", "other.example" },
    { "OTHER.example", "other.example" },
    { "a.wild.rill.test", "*.wild.rill.test" },
    { "good.rill.test", "(default)" },
    { NULL, "(default)" },
};

static const rt_leaf *sni_leaf(int i)
{
    const char *e = sni_cases[i].entry;
    return strcmp(e, "other.example") == 0 ? &C->wrong : e[0] == '*' ? &C->wildcard : &C->good;
}

/* rill's client picks each certificate by the name it sends. */
START_TEST(test_sni_rill_client)
{
    int fds = rt_count_fds();
    rill_tls_config *scfg = sni_cfg(RILL_TLS_SNI_DEFAULT, 1);
    struct srv *sv = srv_start(scfg, 1);
    rill_tls_config *ccfg = client_cfg();
    for (int i = 0; i < N(sni_cases); i++) {
        const char *name = sni_cases[i].sni ? sni_cases[i].sni : "127.0.0.1";
        struct hello h;
        rill_hello(sv->port, ccfg, name, NULL, 0, 0, &h);
        HELLO_OK(&h);
        ck_assert_str_eq(h.info.spki_sha256, sni_leaf(i)->pin);
        struct rec r = srv_last(sv, i + 1);
        ck_assert_int_eq(r.hs, RILL_OK);
        ck_assert_str_eq(r.info.cert_entry, sni_cases[i].entry);
        ck_assert_str_eq(r.info.servername, sni_cases[i].sni ? sni_cases[i].sni : "");
        ck_assert_str_eq(r.info.cert_type, "ECDSA");
        ck_assert_str_eq(r.info.cert_spki, sni_leaf(i)->pin);
    }
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* openssl s_client -servername and gnutls-cli --sni-hostname select each certificate. */
START_TEST(test_sni_command_line_clients)
{
    rill_tls_config *scfg = sni_cfg(RILL_TLS_SNI_DEFAULT, 1);
    struct srv *sv = srv_start(scfg, 1);
    static char out[65536];
    int recs = 0;
    for (int i = 0; i < N(sni_cases); i++) {
        const char *cn = sni_leaf(i) == &C->wrong      ? "other.example"
                         : sni_leaf(i) == &C->wildcard ? "*.wild.rill.test"
                                                       : "good.rill.test";
        int rc = s_client(sv->port, sni_cases[i].sni, NULL, NULL, out, sizeof out);
        ck_assert_msg(rc == 0, "s_client -servername %s: status %d: %s", sni_cases[i].sni, rc, out);
        ck_assert_msg(strstr(out, "Verification: OK") && strstr(out, cn), "s_client: %s", out);
        struct rec r = srv_last(sv, ++recs);
        ck_assert_str_eq(r.info.cert_entry, sni_cases[i].entry);
        if (!sni_cases[i].sni)
            continue; /* gnutls-cli verifies a host name: it has one to send */
        rc = gnutls_cli(sv->port, sni_cases[i].sni, NULL, out, sizeof out);
        ck_assert_msg(rc == 0, "gnutls-cli --sni-hostname %s: status %d: %s", sni_cases[i].sni, rc,
                      out);
        ck_assert_msg(strstr(out, "Handshake was completed") && strstr(out, cn), "gnutls: %s", out);
        r = srv_last(sv, ++recs);
        ck_assert_int_eq(r.hs, RILL_OK);
        ck_assert_str_eq(r.info.cert_entry, sni_cases[i].entry);
        ck_assert_str_eq(r.info.servername, sni_cases[i].sni);
    }
    srv_stop(sv);
    rill_tls_config_free(scfg);
}
END_TEST

/* An unknown name: the default under RILL_TLS_SNI_DEFAULT, unrecognized_name under REFUSE. */
START_TEST(test_sni_unknown_name)
{
    int fds = rt_count_fds();
    rill_tls_config *ccfg = client_cfg();
    CK(rill_tls_config_insecure_noverifyname(ccfg, &E));
    static char out[65536];

    rill_tls_config *scfg = sni_cfg(RILL_TLS_SNI_DEFAULT, 1);
    struct srv *sv = srv_start(scfg, 1);
    struct hello h;
    rill_hello(sv->port, ccfg, "unknown.rill.test", NULL, 0, 0, &h);
    HELLO_OK(&h);
    ck_assert_str_eq(h.info.spki_sha256, C->good.pin);
    ck_assert_str_eq(srv_last(sv, 1).info.cert_entry, "(default)");
    srv_stop(sv);
    rill_tls_config_free(scfg);

    /* Refused: the client hears unrecognized_name, the server says which name. */
    scfg = sni_cfg(RILL_TLS_SNI_REFUSE, 1);
    sv = srv_start(scfg, 1);
    rill_hello(sv->port, ccfg, "unknown.rill.test", NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS);
    ck_assert_msg(strstr(h.msg, "unrecognized name"), "%s", h.msg);
    struct rec r = srv_last(sv, 1);
    ck_assert_int_eq(r.hs, RILL_E_TLS);
    ck_assert_msg(strstr(r.msg, "refused: no certificate for server name \"unknown.rill.test\" "
                                "(unknown names are refused)"),
                  "%s", r.msg);
    ck_assert_str_eq(r.info.servername, "unknown.rill.test");
    int rc = s_client(sv->port, "unknown.rill.test", NULL, NULL, out, sizeof out);
    ck_assert_msg(rc != 0 && strstr(out, "unrecognized name"), "s_client %d: %s", rc, out);
    ck_assert_int_eq(srv_last(sv, 2).hs, RILL_E_TLS);
    /* Known names and clients without SNI still get theirs. */
    rill_hello(sv->port, ccfg, "a.wild.rill.test", NULL, 0, 0, &h);
    HELLO_OK(&h);
    ck_assert_str_eq(h.info.spki_sha256, C->wildcard.pin);
    rill_hello(sv->port, ccfg, "127.0.0.1", NULL, 0, 0, &h);
    HELLO_OK(&h);
    ck_assert_str_eq(h.info.spki_sha256, C->good.pin);
    /* The wildcard covers one label only. */
    rill_hello(sv->port, ccfg, "a.b.wild.rill.test", NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS);
    ck_assert_msg(strstr(srv_last(sv, 5).msg, "\"a.b.wild.rill.test\""), "%s", srv_last(sv, 5).msg);
    srv_stop(sv);
    rill_tls_config_free(scfg);

    /* No default at all: a client without SNI is refused too. */
    scfg = sni_cfg(RILL_TLS_SNI_DEFAULT, 0);
    sv = srv_start(scfg, 1);
    rill_hello(sv->port, ccfg, "127.0.0.1", NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS);
    r = srv_last(sv, 1);
    ck_assert_msg(strstr(r.msg, "refused: the client sent no server name and there is no "
                                "default certificate"),
                  "%s", r.msg);
    rill_hello(sv->port, ccfg, "nothere.test", NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS);
    r = srv_last(sv, 2);
    ck_assert_msg(strstr(r.msg, "\"nothere.test\" (and no default certificate)"), "%s", r.msg);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* ECDSA and RSA for one name: each client gets the one its signature algorithms allow. */
static const struct {
    const char *arg1, *arg2;
    const char *type;
} sigalg_cases[] = {
    { NULL, NULL, "ECDSA" },
    { "-sigalgs", "ecdsa_secp256r1_sha256", "ECDSA" },
    { "-sigalgs", "rsa_pss_rsae_sha256", "RSA" },
    { "-sigalgs", "RSA+SHA256:RSA-PSS+SHA256", "RSA" },
    { "-tls1_2", NULL, "ECDSA" },
};

START_TEST(test_sni_key_types)
{
    rill_tls_config *scfg = sni_cfg(RILL_TLS_SNI_DEFAULT, 1);
    struct srv *sv = srv_start(scfg, 1);
    static char out[65536];
    int i = _i;
    int rc = s_client(sv->port, "good.rill.test", sigalg_cases[i].arg1, sigalg_cases[i].arg2, out,
                      sizeof out);
    ck_assert_msg(rc == 0, "s_client %s %s: %d: %s", sigalg_cases[i].arg1, sigalg_cases[i].arg2, rc,
                  out);
    struct rec r = srv_last(sv, 1);
    ck_assert_int_eq(r.hs, RILL_OK);
    ck_assert_str_eq(r.info.cert_type, sigalg_cases[i].type);
    ck_assert_str_eq(r.info.cert_entry, "(default)");
    srv_stop(sv);
    rill_tls_config_free(scfg);
}
END_TEST

START_TEST(test_sni_rsa_tls12)
{
    rill_tls_config *scfg = sni_cfg(RILL_TLS_SNI_DEFAULT, 1);
    struct srv *sv = srv_start(scfg, 1);
    static char out[65536];
    int rc = s_client(sv->port, "good.rill.test", "-tls1_2", "-cipher=ECDHE-RSA-AES128-GCM-SHA256",
                      out, sizeof out);
    ck_assert_msg(rc == 0, "%d: %s", rc, out);
    struct rec r = srv_last(sv, 1);
    ck_assert_str_eq(r.info.cert_type, "RSA");
    ck_assert_str_eq(r.info.version, "TLSv1.2");
    srv_stop(sv);
    rill_tls_config_free(scfg);
}
END_TEST

/* Up to four key types per name, each served to the client that asks for it; a fifth fails. */
START_TEST(test_sni_four_key_types)
{
    rill_tls_config *scfg = NULL;
    CK(rill_tls_config_new(&scfg, &E));
    CK(rill_tls_config_add_cert_file(scfg, "good.rill.test", C->good.chain, C->good.key, &E));
    CK(rill_tls_config_add_cert_file(scfg, "good.rill.test", RSA.chain, RSA.key, &E));
    CK(rill_tls_config_add_cert_file(scfg, "good.rill.test", ED25519.chain, ED25519.key, &E));
    CK(rill_tls_config_add_cert_file(scfg, "good.rill.test", ED448.chain, ED448.key, &E));
    rill_status st =
        rill_tls_config_add_cert_file(scfg, "good.rill.test", RSAPSS.chain, RSAPSS.key, &E);
    rt_assert_err(&E, st, RILL_E_INVALID,
                  "tls: more than 4 key types for the certificates of good.rill.test");
    /* The same type again replaces the certificate: still four types. */
    CK(rill_tls_config_add_cert_file(scfg, "good.rill.test", GOOD2.chain, GOOD2.key, &E));
    struct srv *sv = srv_start(scfg, 1);
    static char out[65536];
    static const struct {
        const char *sigalg, *type;
    } cases[] = {
        { "ed25519", "Ed25519" },
        { "ed448", "Ed448" },
        { "ecdsa_secp256r1_sha256", "ECDSA" },
        { "rsa_pss_rsae_sha256", "RSA" },
    };
    for (int i = 0; i < N(cases); i++) {
        int rc = s_client(sv->port, "good.rill.test", "-sigalgs", cases[i].sigalg, out, sizeof out);
        ck_assert_msg(rc == 0, "s_client -sigalgs %s: %d: %s", cases[i].sigalg, rc, out);
        struct rec r = srv_last(sv, i + 1);
        ck_assert_str_eq(r.info.cert_type, cases[i].type);
        ck_assert_str_eq(r.info.cert_entry, "good.rill.test");
    }
    /* The replaced ECDSA certificate is good2's. */
    rill_tls_config *ccfg = client_cfg();
    expect_pin(sv->port, ccfg, GOOD2.pin);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
}
END_TEST

/* Setter errors: code and message. */
START_TEST(test_sni_config_errors)
{
    rill_tls_config *cfg = NULL;
    CK(rill_tls_config_new(&cfg, &E));
    static const char *const bad[] = { "*",       "*.", "a..b",    "*.*.x",
                                       "foo bar", "",   "x*.test", "caf\xc3\xa9.test" };
    for (int i = 0; i < N(bad); i++) {
        rill_status st = rill_tls_config_add_cert_file(cfg, bad[i], C->good.chain, C->good.key, &E);
        rt_assert_err(&E, st, RILL_E_INVALID, "is not a host name or a \"*.\" wildcard");
    }
    rill_status st = rill_tls_config_add_cert_file(cfg, "a.test", NULL, C->good.key, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "certificate or key path is NULL");
    st = rill_tls_config_add_cert_file(cfg, "a.test", C->good.chain, C->wrong.key, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "does not match the certificate");
    st = rill_tls_config_add_cert_file(cfg, "a.test", "/nonexistent/c.pem", C->good.key, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "cannot open certificate /nonexistent/c.pem");
    st = rill_tls_config_add_cert_mem(cfg, "a.test", "", 0, "x", 1, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "PEM is empty");
    st = rill_tls_config_set_sni_policy(cfg, (rill_tls_sni_policy)7, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "SNI policy 7 is unknown");
    st = rill_tls_config_set_alpn_policy(cfg, (rill_tls_alpn_policy)9, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "ALPN policy 9 is unknown");
    st = rill_tls_config_set_reload_check(cfg, -1, NULL, NULL, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "interval -1 ms is negative");
    st = rill_tls_config_set_ticket_lifetime(cfg, 604801, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "over 7 days");
    unsigned char keys[RILL_TLS_TICKET_KEY_LEN * 5] = { 0 };
    st = rill_tls_config_set_ticket_keys(cfg, keys, 79, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "1 to 4 keys of 80 bytes, not 79 bytes");
    st = rill_tls_config_set_ticket_keys(cfg, keys, sizeof keys, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "not 400 bytes");
    st = rill_tls_config_set_ticket_keys(cfg, NULL, 80, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "keys is NULL");
    st = rill_tls_config_reload(NULL, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "config is NULL");
    /* Once in use, the entries are fixed (a reload re-reads them). */
    st = rill_tls_config_add_cert_mem(cfg, NULL, "not pem", 7, "nor this", 8, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "cannot load certificate (memory)");
    CK(rill_tls_config_set_cert_file(cfg, C->good.chain, C->good.key, &E));
    rill_stream *c, *sv, *tls = NULL;
    rt_tcp_pair(&c, &sv);
    ck_assert_int_eq(rill_tls_server(sv, cfg, 0, &tls), RILL_OK);
    st = rill_tls_config_add_cert_file(cfg, "b.test", C->good.chain, C->good.key, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "can no longer change");
    st = rill_tls_config_set_sni_policy(cfg, RILL_TLS_SNI_REFUSE, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "can no longer change");
    rill_close(tls);
    rill_close(c);
    /* Tickets off: application keys are refused. */
    rill_tls_config *off = NULL;
    CK(rill_tls_config_new(&off, &E));
    CK(rill_tls_config_set_ticket_lifetime(off, 0, &E));
    st = rill_tls_config_set_ticket_keys(off, keys, 80, &E);
    rt_assert_err(&E, st, RILL_E_INVALID, "tickets are turned off");
    rill_tls_config_free(off);
    rill_tls_config_free(cfg);
}
END_TEST

/* ============================================================================================
 * Reload
 */

struct files {
    char dir[32];
    char cert[64], key[64];
};

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *data = rt_file_read(from, &len);
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    rt_file_write(tmp, data, len);
    ck_assert_int_eq(rename(tmp, to), 0);
    free(data);
}

/* Put @p leaf's chain and key in place, each replaced at once (rename). */
static void install(struct files *f, const rt_leaf *leaf)
{
    copy_file(leaf->chain, f->cert);
    copy_file(leaf->key, f->key);
}

static void files_init(struct files *f, const rt_leaf *leaf)
{
    rt_mkdtemp(f->dir, sizeof f->dir);
    snprintf(f->cert, sizeof f->cert, "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof f->key, "%s/key.pem", f->dir);
    install(f, leaf);
}

static rill_tls_config *files_cfg(struct files *f)
{
    rill_tls_config *cfg = NULL;
    CK(rill_tls_config_new(&cfg, &E));
    CK(rill_tls_config_set_cert_file(cfg, f->cert, f->key, &E));
    return cfg;
}

/* A reload swaps the certificate for new handshakes; a connection made before keeps its own. */
START_TEST(test_reload_swaps)
{
    int fds = rt_count_fds();
    struct files f;
    files_init(&f, &C->good);
    rill_tls_config *scfg = files_cfg(&f);
    struct srv *sv = srv_start(scfg, 2);
    rill_tls_config *ccfg = client_cfg();
    expect_pin(sv->port, ccfg, C->good.pin);

    /* A connection in progress: handshake done, still talking across the reload. */
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.read_timeout_ms = o.write_timeout_ms = IO_MS;
    rill_stream *tcp = NULL, *old = NULL;
    CK(rill_tcp_connect_addr("127.0.0.1", sv->port, &o, &tcp, &E));
    ck_assert_int_eq(rill_tls_client(tcp, ccfg, RT_CERTS_HOST, 0, &old), RILL_OK);
    ck_assert_int_eq(rill_tls_handshake(old), RILL_OK);

    install(&f, &GOOD2);
    expect_pin(sv->port, ccfg, C->good.pin); /* no reload yet */
    CK(rill_tls_config_reload(scfg, &E));
    ck_assert_msg(strstr(E.msg, "reloaded 1 certificate"), "%s", E.msg);
    expect_pin(sv->port, ccfg, GOOD2.pin);

    char buf[8];
    size_t n;
    ck_assert_int_eq(rill_write_all(old, "late\n", 5, NULL), RILL_OK);
    ck_assert_int_eq(rill_read_full(old, buf, 5, &n), RILL_OK);
    rill_tls_info info;
    ck_assert_int_eq(rill_tls_get_info(old, &info), RILL_OK);
    ck_assert_str_eq(info.spki_sha256, C->good.pin);
    rill_close(old);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
    rt_rmdir(f.dir);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* A broken replacement: the reload fails with the reason and the old certificate stays. */
enum breakage { MISSING, MISMATCH, HALF_LEAF, HALF_CHAIN, EXPIRED, EMPTY_KEY };

static const struct {
    enum breakage how;
    const char *why;
} broken_cases[] = {
    { MISSING, "keeping the certificates in use: cannot open certificate" },
    { MISMATCH, "keeping the certificates in use: private key" },
    { HALF_LEAF, "keeping the certificates in use: cannot load certificate" },
    { HALF_CHAIN, "ends in a broken certificate (a file still being written?)" },
    { EXPIRED, "keeping the certificates in use: certificate" },
    { EMPTY_KEY, "keeping the certificates in use: cannot load private key" },
};

static void break_files(struct files *f, enum breakage how)
{
    size_t len = 0;
    char *chain = rt_file_read(C->good.chain, &len);
    switch (how) {
    case MISSING: ck_assert_int_eq(unlink(f->cert), 0); break;
    case MISMATCH: copy_file(GOOD2.chain, f->cert); break;
    case HALF_LEAF: rt_file_write(f->cert, chain, len / 4); break;
    case HALF_CHAIN: rt_file_write(f->cert, chain, len - 100); break;
    case EXPIRED:
        copy_file(C->expired.chain, f->cert);
        copy_file(C->expired.key, f->key);
        break;
    case EMPTY_KEY: rt_file_write(f->key, "", 0); break;
    }
    free(chain);
}

START_TEST(test_reload_broken_keeps_old)
{
    int fds = rt_count_fds();
    struct files f;
    files_init(&f, &C->good);
    rill_tls_config *scfg = files_cfg(&f);
    struct srv *sv = srv_start(scfg, 1);
    rill_tls_config *ccfg = client_cfg();
    expect_pin(sv->port, ccfg, C->good.pin);
    break_files(&f, broken_cases[_i].how);
    rill_status st = rill_tls_config_reload(scfg, &E);
    rt_assert_err(&E, st, RILL_E_TLS, broken_cases[_i].why);
    ck_assert_msg(strstr(E.msg, "tls: reload failed"), "%s", E.msg);
    if (broken_cases[_i].how == EXPIRED)
        ck_assert_msg(strstr(E.msg, "expired on 2001-01-01T00:00:00Z"), "%s", E.msg);
    if (broken_cases[_i].how == MISMATCH)
        ck_assert_msg(strstr(E.msg, "does not match the certificate"), "%s", E.msg);
    expect_pin(sv->port, ccfg, C->good.pin);
    /* Fixed files load on the next reload. */
    install(&f, &GOOD2);
    CK(rill_tls_config_reload(scfg, &E));
    expect_pin(sv->port, ccfg, GOOD2.pin);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
    rt_rmdir(f.dir);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

struct outcomes {
    pthread_mutex_t lock;
    int ok, failed;
    char last[RILL_ERRMSG_MAX];
};

static void on_reload(void *arg, const rill_error *outcome)
{
    struct outcomes *o = arg;
    pthread_mutex_lock(&o->lock);
    if (outcome->code == RILL_OK)
        o->ok++;
    else
        o->failed++;
    snprintf(o->last, sizeof o->last, "%s", outcome->msg);
    pthread_mutex_unlock(&o->lock);
}

/*
 * Check-on-handshake: a changed file is read at the first handshake after the interval (1 s
 * here: long enough that a handshake right after another is surely inside it, under valgrind
 * too).
 */
#define CHECK_MS 1000

START_TEST(test_reload_on_handshake)
{
    int fds = rt_count_fds();
    struct files f;
    files_init(&f, &C->good);
    rill_tls_config *scfg = files_cfg(&f);
    struct outcomes oc = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CK(rill_tls_config_set_reload_check(scfg, CHECK_MS, on_reload, &oc, &E));
    struct srv *sv = srv_start(scfg, 1);
    rill_tls_config *ccfg = client_cfg();
    expect_pin(sv->port, ccfg, C->good.pin);

    install(&f, &GOOD2);
    usleep((CHECK_MS + 50) * 1000);
    expect_pin(sv->port, ccfg, GOOD2.pin);
    ck_assert_int_eq(oc.ok, 1);
    ck_assert_msg(strstr(oc.last, "reloaded 1 certificate"), "%s", oc.last);

    /* Rate-limited: a change right after a check waits for the next one. */
    install(&f, &C->good);
    expect_pin(sv->port, ccfg, GOOD2.pin);
    usleep((CHECK_MS + 50) * 1000);
    expect_pin(sv->port, ccfg, C->good.pin);
    ck_assert_int_eq(oc.ok, 2);

    /* A broken file: reported once, the last good pair stays. */
    break_files(&f, HALF_LEAF);
    usleep((CHECK_MS + 50) * 1000);
    expect_pin(sv->port, ccfg, C->good.pin);
    usleep((CHECK_MS + 50) * 1000);
    expect_pin(sv->port, ccfg, C->good.pin);
    ck_assert_int_eq(oc.failed, 1);
    ck_assert_int_eq(oc.ok, 2);
    ck_assert_msg(strstr(oc.last, "reload failed, keeping the certificates in use: cannot load "
                                  "certificate"),
                  "%s", oc.last);
    /* Unchanged files are not read again: no more outcomes. */
    expect_pin(sv->port, ccfg, C->good.pin);
    ck_assert_int_eq(oc.ok + oc.failed, 3);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
    rt_rmdir(f.dir);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* CA and CRL files are re-read too: a client trusting a new CA file after a reload. */
START_TEST(test_reload_trust)
{
    struct files f;
    files_init(&f, &C->good);
    char ca[64];
    snprintf(ca, sizeof ca, "%s/ca.pem", f.dir);
    copy_file(C->untrusted_ca, ca);
    rill_tls_config *scfg = files_cfg(&f);
    struct srv *sv = srv_start(scfg, 1);
    rill_tls_config *ccfg = NULL;
    CK(rill_tls_config_new(&ccfg, &E));
    CK(rill_tls_config_set_ca_file(ccfg, ca, &E));
    struct hello h;
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS_VERIFY);
    copy_file(C->ca, ca);
    CK(rill_tls_config_reload(ccfg, &E));
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    HELLO_OK(&h);
    /* A CA file that went missing: the store in use stays. */
    ck_assert_int_eq(unlink(ca), 0);
    rill_status st = rill_tls_config_reload(ccfg, &E);
    rt_assert_err(&E, st, RILL_E_TLS, "keeping the certificates in use: cannot load CA file");
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    HELLO_OK(&h);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);

    /* A CRL file that no longer parses: the CRLs in use (revoking "revoked") stay. */
    char crl[64];
    snprintf(crl, sizeof crl, "%s/crl.pem", f.dir);
    copy_file(C->crl, crl);
    install(&f, &C->revoked);
    scfg = files_cfg(&f);
    sv = srv_start(scfg, 1);
    ccfg = client_cfg();
    CK(rill_tls_config_set_crl_file(ccfg, crl, &E));
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS_VERIFY);
    ck_assert_msg(strstr(h.msg, "certificate revoked"), "%s", h.msg);
    rt_file_write(crl, "-----BEGIN X509 CRL-----\nMII", 28);
    st = rill_tls_config_reload(ccfg, &E);
    rt_assert_err(&E, st, RILL_E_TLS,
                  "keeping the certificates in use: cannot load CRLs from /tmp/rill-test-");
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS_VERIFY);
    ck_assert_msg(strstr(h.msg, "certificate revoked"), "%s", h.msg);
    /* Restored, it loads again, and the CRL check stays on in the new store. */
    copy_file(C->crl, crl);
    CK(rill_tls_config_reload(ccfg, &E));
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS_VERIFY);
    ck_assert_msg(strstr(h.msg, "certificate revoked"), "%s", h.msg);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
    rt_rmdir(f.dir);
}
END_TEST

/*
 * Rotation under load: client threads handshake in a loop while the files flip between two
 * certificates (key and chain renamed into place one after the other, so a check can see a
 * mismatched pair) and reloads run on handshakes and from here. Every handshake sees the old or
 * the new certificate, never an error.
 */
#define ROT_CLIENTS 50

struct rot {
    uint16_t port;
    rill_tls_config *ccfg;
    int stop;    /* atomic */
    int seen[2]; /* atomic: handshakes that saw good / good2 */
    int errors;  /* atomic */
    char first_error[RILL_ERRMSG_MAX + 64];
    pthread_mutex_t lock;
};

static void *rot_client(void *arg)
{
    struct rot *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        struct hello h;
        rill_hello(r->port, r->ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
        int which = h.st != RILL_OK                                ? -1
                    : strcmp(h.info.spki_sha256, C->good.pin) == 0 ? 0
                    : strcmp(h.info.spki_sha256, GOOD2.pin) == 0   ? 1
                                                                   : -1;
        if (which < 0) {
            pthread_mutex_lock(&r->lock);
            if (!r->first_error[0])
                snprintf(r->first_error, sizeof r->first_error, "%s: %.200s / %s",
                         rill_strerror(h.st), h.msg, h.info.spki_sha256);
            pthread_mutex_unlock(&r->lock);
            __atomic_add_fetch(&r->errors, 1, __ATOMIC_RELAXED);
        } else {
            __atomic_add_fetch(&r->seen[which], 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

START_TEST(test_rotation_under_load)
{
    int fds = rt_count_fds();
    struct files f;
    files_init(&f, &C->good);
    rill_tls_config *scfg = files_cfg(&f);
    struct outcomes oc = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CK(rill_tls_config_set_reload_check(scfg, 5, on_reload, &oc, &E));
    struct srv *sv = srv_start(scfg, 4);
    struct rot r = { .port = sv->port, .ccfg = client_cfg(), .lock = PTHREAD_MUTEX_INITIALIZER };
    pthread_t th[ROT_CLIENTS];
    for (int i = 0; i < ROT_CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, rot_client, &r), 0);
    /* At least 30 flips, and on until handshakes have seen both (valgrind: slower flips). */
    int pause_ms = rt_on_valgrind() ? 300 : 20;
    int64_t end = rt_now_us() + 20000000;
    for (int i = 0; i < 30 || !(__atomic_load_n(&r.seen[0], __ATOMIC_RELAXED) &&
                                __atomic_load_n(&r.seen[1], __ATOMIC_RELAXED));
         i++) {
        if (rt_now_us() > end)
            break;
        const rt_leaf *next = i % 2 ? &C->good : &GOOD2;
        usleep((useconds_t)pause_ms * 1000);
        install(&f, next);
        if (i % 3 == 0) {
            rill_error err;
            /* Races the handshake checks; may meet a mismatched pair and keep the old one. */
            rill_status st = rill_tls_config_reload(scfg, &err);
            ck_assert_msg(st == RILL_OK || strstr(err.msg, "does not match"), "%s", err.msg);
        }
    }
    usleep(50000);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < ROT_CLIENTS; i++)
        pthread_join(th[i], NULL);
    ck_assert_msg(r.errors == 0, "%d handshakes failed or saw another certificate; first: %s",
                  r.errors, r.first_error);
    ck_assert_msg(r.seen[0] > 0 && r.seen[1] > 0, "saw good %d times, good2 %d times", r.seen[0],
                  r.seen[1]);
    ck_assert_int_gt(oc.ok, 0);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(r.ccfg);
    rt_rmdir(f.dir);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/*
 * Every allocation rill makes while building a server config (entries from files and memory,
 * a CA file) and reloading it fails once, in turn: each failure is RILL_E_NOMEM with an "out
 * of memory" message and nothing leaked, a failed reload keeps the set in use, and in the end
 * the whole sequence works.
 */
START_TEST(test_alloc_failures_config)
{
    struct files f;
    files_init(&f, &C->good);
    size_t cert_len = 0, key_len = 0;
    char *cert_pem = rt_file_read(C->wildcard.chain, &cert_len);
    char *key_pem = rt_file_read(C->wildcard.key, &key_len);
    int done = 0;
    long k;
    for (k = 0; k < 400 && !done; k++) {
        rt_counting_on();
        rt_allocs_left = k;
        rill_tls_config *cfg = NULL;
        rill_error err = { 0 };
        int reloading = 0;
        rill_status st = rill_tls_config_new(&cfg, &err);
        if (st == RILL_OK)
            st = rill_tls_config_set_cert_file(cfg, f.cert, f.key, &err);
        if (st == RILL_OK)
            st = rill_tls_config_add_cert_file(cfg, "other.example", C->wrong.chain, C->wrong.key,
                                               &err);
        if (st == RILL_OK)
            st = rill_tls_config_add_cert_mem(cfg, "*.wild.rill.test", cert_pem, cert_len, key_pem,
                                              key_len, &err);
        if (st == RILL_OK)
            st = rill_tls_config_set_ca_file(cfg, C->ca, &err);
        if (st == RILL_OK) {
            reloading = 1;
            st = rill_tls_config_reload(cfg, &err);
        }
        done = st == RILL_OK && rt_allocs_left > 0;
        rt_allocs_left = -1;
        if (reloading && st != RILL_OK) {
            /* The failed reload changed nothing; the next one works. */
            ck_assert_msg(strstr(err.msg, "reload failed, keeping the certificates in use"), "%s",
                          err.msg);
            rill_error again;
            ck_assert_int_eq(rill_tls_config_reload(cfg, &again), RILL_OK);
        }
        rill_tls_config_free(cfg);
        size_t live = rt_live_bytes;
        rt_counting_off();
        ck_assert_msg(st == RILL_OK || st == RILL_E_NOMEM, "allocation %ld failing gave %s: %s", k,
                      rill_strerror(st), err.msg);
        ck_assert_msg(st == RILL_OK || strstr(err.msg, "out of memory"),
                      "allocation %ld: message \"%s\" does not say so", k, err.msg);
        ck_assert_msg(live == 0, "allocation %ld failing leaked %zu bytes (%s)", k, live, err.msg);
    }
    ck_assert_msg(done, "no run succeeded within %ld allocations", k);
    free(cert_pem);
    free(key_pem);
    rt_rmdir(f.dir);
}
END_TEST

/* ============================================================================================
 * Tickets
 */

static void random_keys(unsigned char *keys, size_t len, unsigned seed)
{
    rt_fill_pattern(keys, len, seed);
}

static rill_tls_config *ticket_cfg(int version, const unsigned char *keys, size_t len)
{
    rill_tls_config *cfg = NULL;
    CK(rill_tls_config_new(&cfg, &E));
    CK(rill_tls_config_set_cert_file(cfg, C->good.chain, C->good.key, &E));
    CK(rill_tls_config_set_versions(cfg, version, version, &E));
    if (keys)
        CK(rill_tls_config_set_ticket_keys(cfg, keys, len, &E));
    return cfg;
}

static int resumes(uint16_t port, rill_tls_config *ccfg, const struct hello *first)
{
    struct hello h;
    rill_hello(port, ccfg, RT_CERTS_HOST, first->sess, first->sess_len, 0, &h);
    HELLO_OK(&h);
    return h.info.resumed;
}

/* Two server configs given the same keys resume each other's sessions; others do not. */
START_TEST(test_tickets_shared_keys)
{
    int version = _i ? RILL_TLS_1_3 : RILL_TLS_1_2;
    unsigned char k1[RILL_TLS_TICKET_KEY_LEN], k2[RILL_TLS_TICKET_KEY_LEN];
    unsigned char both[2 * RILL_TLS_TICKET_KEY_LEN];
    random_keys(k1, sizeof k1, 1);
    random_keys(k2, sizeof k2, 2);
    memcpy(both, k2, sizeof k2);
    memcpy(both + sizeof k2, k1, sizeof k1);
    rill_tls_config *a = ticket_cfg(version, k1, sizeof k1);
    rill_tls_config *b = ticket_cfg(version, k1, sizeof k1);
    rill_tls_config *b_rotated = ticket_cfg(version, both, sizeof both);
    rill_tls_config *b_new_only = ticket_cfg(version, k2, sizeof k2);
    rill_tls_config *own = ticket_cfg(version, NULL, 0);
    rill_tls_config *ccfg = client_cfg();
    /* One listener, so the client's session is for the same host and port each time. */
    struct srv *sv = srv_start(a, 1);
    struct hello first;
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 1, &first);
    HELLO_OK(&first);
    ck_assert_msg(first.sess != NULL, "no session exported");
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 1); /* same config */
    __atomic_store_n(&sv->cfg, b, __ATOMIC_RELEASE);
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 1); /* another config, same key */
    __atomic_store_n(&sv->cfg, b_rotated, __ATOMIC_RELEASE);
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 1); /* the old key still opens it */
    __atomic_store_n(&sv->cfg, b_new_only, __ATOMIC_RELEASE);
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 0); /* rotated out: a full handshake */
    __atomic_store_n(&sv->cfg, own, __ATOMIC_RELEASE);
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 0); /* rill's own random key */
    /* Keys can change while the config is in use. */
    CK(rill_tls_config_set_ticket_keys(own, k1, sizeof k1, &E));
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 1);
    srv_stop(sv);
    rill_free(first.sess);
    rill_tls_config_free(a);
    rill_tls_config_free(b);
    rill_tls_config_free(b_rotated);
    rill_tls_config_free(b_new_only);
    rill_tls_config_free(own);
    rill_tls_config_free(ccfg);
}
END_TEST

/*
 * A resumed connection gets a fresh ticket, so a client that keeps only its latest session
 * (as rill's cache does with single-use TLS 1.3 tickets, and browsers) resumes every time, not
 * every other time. Five connections in a chain, each offering the session of the one before.
 */
START_TEST(test_tickets_chain)
{
    int version = _i == 0 ? RILL_TLS_1_2 : RILL_TLS_1_3;
    unsigned char k[RILL_TLS_TICKET_KEY_LEN];
    random_keys(k, sizeof k, 7);
    rill_tls_config *scfg = ticket_cfg(version, _i == 2 ? k : NULL, _i == 2 ? sizeof k : 0);
    rill_tls_config *ccfg = client_cfg();
    struct srv *sv = srv_start(scfg, 1);
    struct hello prev;
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 1, &prev);
    HELLO_OK(&prev);
    ck_assert_int_eq(prev.info.resumed, 0);
    for (int i = 1; i < 5; i++) {
        struct hello h;
        rill_hello(sv->port, ccfg, RT_CERTS_HOST, prev.sess, prev.sess_len, 1, &h);
        HELLO_OK(&h);
        ck_assert_msg(h.info.resumed == 1, "connection %d of the chain was a full handshake", i);
        rill_free(prev.sess);
        prev = h;
    }
    rill_free(prev.sess);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
}
END_TEST

/* rill's own keys rotate: a ticket from the key before still resumes; tickets can be off. */
START_TEST(test_tickets_rotate)
{
    rill_tls_config *scfg = ticket_cfg(RILL_TLS_1_3, NULL, 0);
    CK(rill_tls_config_set_ticket_lifetime(scfg, 1, &E));
    rill_tls_config *ccfg = client_cfg();
    struct srv *sv = srv_start(scfg, 1);
    struct hello first;
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 1, &first);
    HELLO_OK(&first);
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 1);
    struct rec r = srv_last(sv, 2);
    ck_assert_int_eq(r.info.resumed, 1);
    ck_assert_str_eq(r.info.cert_entry, ""); /* no certificate was sent */
    ck_assert_str_eq(r.info.cert_spki, "");
    ck_assert_str_eq(r.info.cert_type, "");
    ck_assert_str_eq(srv_last(sv, 1).info.cert_entry, "(default)");
    usleep(1200000); /* the key that sealed it is now the previous one */
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 1);
    srv_stop(sv);
    rill_free(first.sess);
    rill_tls_config_free(scfg);

    /* Off: TLS 1.3 resumes from the session-ID cache of the same config only. */
    scfg = ticket_cfg(RILL_TLS_1_3, NULL, 0);
    CK(rill_tls_config_set_ticket_lifetime(scfg, 0, &E));
    sv = srv_start(scfg, 1);
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 1, &first);
    HELLO_OK(&first);
    ck_assert_int_eq(resumes(sv->port, ccfg, &first), 1);
    srv_stop(sv);
    rill_free(first.sess);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
}
END_TEST

/* ============================================================================================
 * ALPN
 */

static rill_tls_config *alpn_cfg(rill_tls_alpn_policy policy)
{
    rill_tls_config *cfg = NULL;
    CK(rill_tls_config_new(&cfg, &E));
    CK(rill_tls_config_set_cert_file(cfg, C->good.chain, C->good.key, &E));
    CK(rill_tls_config_set_alpn(cfg, "h2,http/1.1", &E));
    CK(rill_tls_config_set_alpn_policy(cfg, policy, &E));
    return cfg;
}

START_TEST(test_alpn_policies)
{
    int fds = rt_count_fds();
    static char out[65536];
    rill_tls_config *ccfg = client_cfg();
    CK(rill_tls_config_set_alpn(ccfg, "foo,bar", &E));
    rill_tls_config *pref = client_cfg();
    CK(rill_tls_config_set_alpn(pref, "http/1.1,h2", &E));
    rill_tls_config *none = client_cfg();

    rill_tls_config *scfg = alpn_cfg(RILL_TLS_ALPN_OPTIONAL);
    struct srv *sv = srv_start(scfg, 1);
    struct hello h;
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    HELLO_OK(&h);
    ck_assert_str_eq(h.info.alpn, "");
    rill_hello(sv->port, pref, RT_CERTS_HOST, NULL, 0, 0, &h);
    HELLO_OK(&h);
    ck_assert_str_eq(h.info.alpn, "h2"); /* the server's preference */
    srv_stop(sv);
    rill_tls_config_free(scfg);

    scfg = alpn_cfg(RILL_TLS_ALPN_REQUIRE);
    sv = srv_start(scfg, 1);
    rill_hello(sv->port, ccfg, RT_CERTS_HOST, NULL, 0, 0, &h);
    ck_assert_int_eq(h.st, RILL_E_TLS);
    ck_assert_msg(strstr(h.msg, "no application protocol"), "%s", h.msg);
    struct rec r = srv_last(sv, 1);
    ck_assert_int_eq(r.hs, RILL_E_TLS);
    ck_assert_msg(strstr(r.msg, "handshake failed: refused: no application protocol in common: "
                                "the client offers \"foo,bar\", this server speaks "
                                "\"h2,http/1.1\"; sent no_application_protocol"),
                  "%s", r.msg);
    rill_hello(sv->port, pref, RT_CERTS_HOST, NULL, 0, 0, &h);
    HELLO_OK(&h);
    ck_assert_str_eq(h.info.alpn, "h2");
    rill_hello(sv->port, none, RT_CERTS_HOST, NULL, 0, 0, &h); /* no ALPN offered: served */
    HELLO_OK(&h);
    ck_assert_str_eq(h.info.alpn, "");
    int rc = s_client(sv->port, RT_CERTS_HOST, "-alpn", "spdy/3", out, sizeof out);
    ck_assert_msg(rc != 0 && strstr(out, "no application protocol"), "s_client %d: %s", rc, out);
    rc = gnutls_cli(sv->port, RT_CERTS_HOST, "spdy/3", out, sizeof out);
    ck_assert_msg(rc != 0 && strstr(out, "No supported application protocol"), "gnutls %d: %s", rc,
                  out);
    rc = gnutls_cli(sv->port, RT_CERTS_HOST, "http/1.1", out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "http/1.1"), "gnutls %d: %s", rc, out);
    srv_stop(sv);
    rill_tls_config_free(scfg);
    rill_tls_config_free(ccfg);
    rill_tls_config_free(pref);
    rill_tls_config_free(none);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* ============================================================================================
 * Suite
 */

Suite *rill_test_suite(void)
{
    if (rt_certs_prepare(NULL, 0)) {
        C = rt_certs_prepare(NULL, 0);
        make_extra_certs();
    }
    Suite *s = suite_create("tls_server");
    TCase *tc = tcase_create("sni");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sni_rill_client);
    tcase_add_test(tc, test_sni_command_line_clients);
    tcase_add_test(tc, test_sni_unknown_name);
    tcase_add_loop_test(tc, test_sni_key_types, 0, N(sigalg_cases));
    tcase_add_test(tc, test_sni_rsa_tls12);
    tcase_add_test(tc, test_sni_four_key_types);
    tcase_add_test(tc, test_sni_config_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("reload");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_reload_swaps);
    tcase_add_loop_test(tc, test_reload_broken_keeps_old, 0, N(broken_cases));
    tcase_add_test(tc, test_reload_on_handshake);
    tcase_add_test(tc, test_reload_trust);
    tcase_add_test(tc, test_rotation_under_load);
    tcase_add_test(tc, test_alloc_failures_config);
    suite_add_tcase(s, tc);

    tc = tcase_create("tickets");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_tickets_shared_keys, 0, 2);
    tcase_add_test(tc, test_tickets_rotate);
    tcase_add_loop_test(tc, test_tickets_chain, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("alpn");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_alpn_policies);
    suite_add_tcase(s, tc);
    return s;
}
