/* SPDX-License-Identifier: MIT */
/*
 * The tls layer: OpenSSL over any rill stream, client or server.
 *
 * OpenSSL talks to the stream below through a BIO of our own. When the inner stream is a bare
 * tcp or unix transport, the BIO does recv/send on its socket directly (the fast path: no
 * vtable hop); otherwise it calls the inner stream, so TLS runs over a plain chain after
 * STARTTLS, over another TLS stream or over a tunnel. OpenSSL's own socket BIO is not used: it
 * writes with write(2), which raises SIGPIPE, and cannot honour rill's per-call blocking choice.
 *
 * The layer is a non-blocking state machine like every rill layer: the BIO reports the inner
 * stream's WANT to OpenSSL as a retry, and the layer returns that WANT (with its real direction)
 * to the core, which waits and calls again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define WRITE_CHUNK 16384 /* one record: the most a write left pending can hold */
#define FULL_RECORD 16384 /* plaintext of a full record: one this full suggests more follow */

/*
 * After this side sent a fatal alert, rill_close drains what the peer still sends before the
 * descriptor is closed, at most this many bytes for at most this long: closing a socket with
 * unread bytes makes the kernel answer with a reset, which can destroy the alert at the peer.
 */
#define ALERT_DRAIN_BYTES (64 * 1024)
#define ALERT_DRAIN_MS    200

struct tls {
    SSL *ssl;
    rill_tls_config *cfg;
    rill_stream *self;
    bool fast; /* inner is a socket transport: the BIO calls it directly */
    bool server;
    bool handshake_done;
    bool sent_shutdown;
    bool allow_truncation;
    bool sent_fatal_alert; /* this side ended the connection with a fatal alert */
    bool hello_retry;      /* the handshake took a HelloRetryRequest */
    bool reneg_refused;    /* a server refused the client's renegotiation */
    bool alert_drained;    /* ... and the close drained the peer's bytes once */
    bool io_eof;           /* the BIO saw end of stream */
    bool eof;              /* an unterminated end was accepted (RILL_TLS_ALLOW_TRUNCATION) */
    rill_status io_status; /* the BIO's last WANT or error, for the real reason */
    rill_status last_want; /* for the poll op */
    rill_status fatal;     /* a failed connection stays failed */
    int peer_version;      /* version in the peer's hello, for the version message */
    /* The first certificate verification failure, recorded by the verify callback. */
    int vfy_err;
    int vfy_depth;
    struct vfy_text *vfy; /* its texts: allocated when there is something to say */
    bool pin_checked;     /* the verify callback looked at the leaf's key */
    bool pin_ok;          /* ... and it matched a pin */
    /* A record OpenSSL has encrypted but not yet sent (non-blocking writes). */
    unsigned char *wpend;
    size_t wpend_len;
    size_t wpend_off;
    bool push_stuck; /* a read found that record stuck: it waits for POLLOUT as well */
    size_t rec_read; /* plaintext read so far from the current record */
    bool last_short; /* the last record written was not a full one: a burst ended */
    /* rill_connect's session cache. */
    struct rilli_sess_cache *cache;
    char *cache_key;  /* allocated with the cache */
    char *servername; /* as verified: no IPv6 brackets, no trailing dot; "" (static) if none */
    bool servername_is_ip;
    uint16_t port; /* the peer's port for exported sessions; 0: not known */
    /* The certificates this stream started with (a reload never changes them), the entry
     * chosen for the client's SNI, and why a server refused a client (SNI, ALPN). */
    struct rilli_tls_certs *certs;
    const struct rilli_tls_entry *entry;
    char *refusal;
};

/*
 * What a failed verification names (subject, names, the pin seen): kept out of the layer's
 * state, which an idle connection holds, and allocated only when verification has something to
 * report. Fixed-size texts, so the verify callback fills them without further allocation.
 */
struct vfy_text {
    char subject[128];
    char names[160];
    char pin_seen[64]; /* the leaf key's pin, as the verify callback computed it */
};

static char no_name[1]; /* the servername of a layer without one; never written */

/* The verification texts of @p t, allocated on first use; NULL when memory is short. */
static struct vfy_text *vfy_text(struct tls *t)
{
    if (!t->vfy)
        t->vfy = rilli_calloc(1, sizeof *t->vfy);
    return t->vfy;
}

/* Longest server name (253) plus IPv6 brackets and a trailing dot, with its NUL. */
#define SERVERNAME_MAX 256

static const struct rill_stream_ops tls_ops;

/* ---- the BIO ---- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static rill_status bio_io(struct tls *t, bool writing, void *buf, size_t len, size_t *n)
{
    rill_stream *self = t->self;
    if (!t->fast) {
        return writing ? rill_stream_write_inner(self, buf, len, n)
                       : rill_stream_read_inner(self, buf, len, n);
    }
    rill_stream *in = rill_stream_inner(self);
    rilli_set_may_block(in, rill_stream_may_block(self));
    rill_status st = writing ? rilli_sock_write(in, buf, len, n) : rilli_sock_read(in, buf, len, n);
    return st < 0 ? rilli_adopt_error(self, in, st) : st;
}

/*
 * The classic BIO read/write contract: a byte count, 0 for end of stream, -1 with retry flags
 * for "try again". (OpenSSL's record layer tells a retry from a failure by -1; a write that
 * answered 0 on a retry would make it believe a pending alert had been sent.)
 */
static int bio_read(BIO *b, char *buf, int len)
{
    struct tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    size_t done = 0;
    rill_status st = bio_io(t, false, buf, (size_t)len, &done);
    if (st == RILL_OK)
        return (int)done;
    if (st == RILL_EOF) {
        t->io_eof = true;
        return 0;
    }
    t->io_status = st;
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
        BIO_set_retry_read(b);
    return -1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    struct tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    size_t done = 0;
    rill_status st = bio_io(t, true, (void *)(uintptr_t)buf, (size_t)len, &done);
    if (st == RILL_OK)
        return (int)done;
    t->io_status = st == RILL_EOF ? RILL_E_CLOSED : st;
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
        BIO_set_retry_write(b);
    return -1;
}

/*
 * OpenSSL flushes the BIO at the end of each handshake flight and after an alert. Nothing is
 * held in the BIO itself, but a layer below (buffered) may hold the flight: push it through, or
 * a peer that waits for our Finished never gets it while we wait for its first bytes.
 */
static long bio_flush(BIO *b, struct tls *t)
{
    BIO_clear_retry_flags(b);
    if (!t || t->fast)
        return 1; /* the socket holds nothing back */
    rill_status st = rill_stream_flush_inner(t->self);
    if (st == RILL_OK)
        return 1;
    t->io_status = st;
    if (st == RILL_WANT_READ || st == RILL_WANT_WRITE)
        BIO_set_retry_write(b);
    return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct tls *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: return bio_flush(b, t);
    case BIO_CTRL_EOF: return t && t->io_eof;
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rill stream");
    if (m && BIO_meth_set_read(m, bio_read) && BIO_meth_set_write(m, bio_write) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create)) {
        bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* ---- callbacks ---- */

/* The peer's hello version, so a refused old peer can be named ("peer speaks TLSv1.0"). */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    struct tls *t = arg;
    const unsigned char *p = buf;
    /* A HelloRetryRequest is a ServerHello with this random (RFC 8446 4.1.3), either way. */
    static const unsigned char hrr_random[32] = { 0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11,
                                                  0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
                                                  0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
                                                  0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c };
    if (content_type == SSL3_RT_HANDSHAKE && len >= 38 && p[0] == SSL3_MT_SERVER_HELLO &&
        memcmp(p + 6, hrr_random, sizeof hrr_random) == 0)
        t->hello_retry = true;
    if (write_p) {
        if (content_type == SSL3_RT_ALERT && len >= 2 && p[0] == SSL3_AL_FATAL)
            t->sent_fatal_alert = true;
        return;
    }
    if (content_type == SSL3_RT_HANDSHAKE && len >= 6 &&
        (p[0] == SSL3_MT_SERVER_HELLO || p[0] == SSL3_MT_CLIENT_HELLO))
        t->peer_version = p[4] << 8 | p[5];
    else if (content_type == SSL3_RT_HEADER && len >= 3 && t->peer_version == 0)
        t->peer_version = p[1] << 8 | p[2];
}

/* The DNS and IP subjectAltNames of @p cert, ", "-separated; with @p tagged as "DNS:a,IP:b". */
static void name_list(X509 *cert, bool tagged, char *buf, size_t len)
{
    buf[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char one[INET6_ADDRSTRLEN + 8] = "";
        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            snprintf(one, sizeof one, "%.*s", s->length, (const char *)s->data);
        } else if (g->type == GEN_IPADD) {
            const ASN1_OCTET_STRING *ip = g->d.iPAddress;
            if (ip->length == 4 || ip->length == 16)
                inet_ntop(ip->length == 4 ? AF_INET : AF_INET6, ip->data, one, sizeof one);
        }
        if (one[0] && used < len) {
            const char *sep = used ? (tagged ? "," : ", ") : "";
            const char *tag = tagged ? (g->type == GEN_DNS ? "DNS:" : "IP:") : "";
            int n = snprintf(buf + used, len - used, "%s%s%s", sep, tag, one);
            if (n > 0)
                used += (size_t)n;
        }
    }
    GENERAL_NAMES_free(names);
}

static void name_oneline(const X509_NAME *name, char *buf, size_t len)
{
    buf[0] = '\0';
    BIO *mem = BIO_new(BIO_s_mem());
    if (!mem)
        return;
    if (X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *data = NULL;
        long n = BIO_get_mem_data(mem, &data);
        snprintf(buf, len, "%.*s", (int)(n > 0 ? n : 0), data ? data : "");
    }
    BIO_free(mem);
}

static bool pin_matches(const rill_tls_config *cfg, X509 *cert, char *pin, size_t len);

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (ok && t && !t->server && t->cfg->npins && X509_STORE_CTX_get_error_depth(x) == 0 &&
        !t->pin_checked) {
        /* Refuse a key that matches no pin inside the handshake, so the peer gets an alert. */
        t->pin_checked = true;
        char pin[sizeof t->vfy->pin_seen];
        t->pin_ok = pin_matches(t->cfg, X509_STORE_CTX_get_current_cert(x), pin, sizeof pin);
        if (!t->pin_ok) {
            struct vfy_text *v = vfy_text(t); /* only a failure has something to say */
            if (v)
                memcpy(v->pin_seen, pin, sizeof pin);
            X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
            ok = 0;
        }
    }
    if (!ok && t && t->vfy_err == 0) {
        t->vfy_err = X509_STORE_CTX_get_error(x);
        t->vfy_depth = X509_STORE_CTX_get_error_depth(x);
        X509 *cert = X509_STORE_CTX_get_current_cert(x);
        struct vfy_text *v = cert ? vfy_text(t) : NULL;
        if (v) {
            name_oneline(X509_get_subject_name(cert), v->subject, sizeof v->subject);
            name_list(cert, false, v->names, sizeof v->names);
        }
    }
    return ok;
}

static void session_ref(void *obj)
{
    SSL_SESSION_up_ref(obj);
}

static void session_unref(void *obj)
{
    SSL_SESSION_free(obj);
}

static const struct rilli_sess_ops session_ops = { session_ref, session_unref };

/* A client's new session (or TLS 1.3 ticket) goes to rill_connect's cache. */
int rilli_tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct tls *t = SSL_get_app_data(ssl);
    if (!t || !t->cache || !SSL_SESSION_is_resumable(sess))
        return 0;
    bool single = SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION;
    int64_t life = (int64_t)SSL_SESSION_get_timeout(sess) * 1000;
    /* 1: the cache keeps the reference OpenSSL hands us; 0: OpenSSL keeps it. */
    return rilli_sess_cache_put(t->cache, t->cache_key, sess, &session_ops, single,
                                rilli_now_ms() + life)
               ? 1
               : 0;
}

/* ---- choosing the certificate, SNI and ALPN policies (server) ---- */

/* Keep why the server refused the client, for the stream's error (allocated: rare). */
static void refuse(struct tls *t, const char *fmt, ...) RILL_PRINTF(2, 3);

static void refuse(struct tls *t, const char *fmt, ...)
{
    char *msg = rilli_malloc(RILL_ERRMSG_MAX);
    if (!msg)
        return; /* the alert still goes out; the message falls back to OpenSSL's */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, RILL_ERRMSG_MAX, fmt, ap);
    va_end(ap);
    rilli_free(t->refusal);
    t->refusal = msg;
}

/* A peer-supplied name, made printable for a message. */
static void printable(const char *in, size_t inlen, char *out, size_t len)
{
    size_t k = 0, i = 0;
    for (; i < inlen && k + 4 < len; i++) {
        char c = in[i];
        if (c <= 0x20 || c >= 0x7f || c == '"')
            c = '?';
        out[k++] = c;
    }
    if (i < inlen) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* SNI arrived (or did not): pick the entry, or refuse the name with unrecognized_name. */
static int servername_cb(SSL *ssl, int *al, void *arg)
{
    (void)arg;
    struct tls *t = SSL_get_app_data(ssl);
    if (!t || !t->server || !t->certs)
        return SSL_TLSEXT_ERR_OK;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    t->entry = rilli_tls_entry_for(t->certs, sni, t->cfg->sni_policy);
    if (t->entry)
        return SSL_TLSEXT_ERR_OK;
    if (sni && *sni) {
        char shown[120];
        printable(sni, strlen(sni), shown, sizeof shown);
        refuse(t, "refused: no certificate for server name \"%s\" (%s); sent unrecognized_name",
               shown,
               t->cfg->sni_policy == RILL_TLS_SNI_REFUSE ? "unknown names are refused"
                                                         : "and no default certificate");
    } else {
        refuse(t, "refused: the client sent no server name and there is no default "
                  "certificate; sent unrecognized_name");
    }
    *al = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* OpenSSL is about to use our certificate: put the chosen entry's pairs on this SSL. */
static int cert_cb(SSL *ssl, void *arg)
{
    (void)arg;
    struct tls *t = SSL_get_app_data(ssl);
    if (!t || !t->certs)
        return 1;
    const struct rilli_tls_entry *e = t->entry;
    if (!e && t->server)
        e = rilli_tls_entry_for(t->certs, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name),
                                t->cfg->sni_policy);
    else if (!e) /* a client's certificate is its default */
        e = rilli_tls_entry_for(t->certs, NULL, RILL_TLS_SNI_DEFAULT);
    if (!e)
        return t->server ? 0 : 1;
    t->entry = e;
    return rilli_tls_use_entry(ssl, e) ? 1 : 0;
}

/* Server side of ALPN: the first protocol of our list that the client offers. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned inlen, void *arg)
{
    const rill_tls_config *cfg = arg;
    for (size_t i = 0; i < cfg->alpn_len; i += 1u + cfg->alpn[i]) {
        const unsigned char *ours = &cfg->alpn[i];
        for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
            if (j + 1u + in[j] > inlen)
                break; /* malformed client list */
            if (in[j] == ours[0] && memcmp(&in[j + 1], ours + 1, ours[0]) == 0) {
                *out = &in[j + 1];
                *outlen = in[j];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    if (cfg->alpn_policy != RILL_TLS_ALPN_REQUIRE)
        return SSL_TLSEXT_ERR_NOACK; /* no common protocol: continue without ALPN */
    struct tls *t = SSL_get_app_data(ssl);
    if (t) {
        /* Both lists as "a,b": wire form is length-prefixed names. */
        char theirs[160], mine[160];
        char list[200];
        size_t k = 0;
        for (unsigned j = 0; j < inlen && j + 1u + in[j] <= inlen && k < sizeof list - 2;
             j += 1u + in[j]) {
            if (k)
                list[k++] = ',';
            size_t n = in[j] < sizeof list - 1 - k ? in[j] : sizeof list - 1 - k;
            memcpy(list + k, &in[j + 1], n);
            k += n;
        }
        printable(list, k, theirs, sizeof theirs);
        k = 0;
        for (size_t i = 0; i < cfg->alpn_len && k < sizeof list - 2; i += 1u + cfg->alpn[i]) {
            if (k)
                list[k++] = ',';
            size_t n = cfg->alpn[i] < sizeof list - 1 - k ? cfg->alpn[i] : sizeof list - 1 - k;
            memcpy(list + k, &cfg->alpn[i + 1], n);
            k += n;
        }
        printable(list, k, mine, sizeof mine);
        refuse(t,
               "refused: no application protocol in common: the client offers \"%s\", this "
               "server speaks \"%s\"; sent no_application_protocol",
               theirs, mine);
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

void rilli_tls_ctx_callbacks(SSL_CTX *ctx, rill_tls_config *cfg)
{
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, cfg);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_cert_cb(ctx, cert_cb, NULL);
}

/*
 * Servers: a TLS 1.2 client that asks to renegotiate is refused with a fatal no_renegotiation
 * alert, which ends the connection. OpenSSL's own refusal is a warning alert that lets the
 * connection go on, and clients that insist then loop on it (gnutls-cli --rehandshake ends
 * with "internal error"); rill never renegotiates, so it says so once, for good.
 */
int rilli_tls_client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    struct tls *t = SSL_get_app_data(ssl);
    if (!t || !t->handshake_done)
        return SSL_CLIENT_HELLO_SUCCESS;
    *alert = SSL_AD_NO_RENEGOTIATION;
    t->reneg_refused = true;
    t->sent_fatal_alert = true; /* the close drains, so the alert is read, not reset away */
    return SSL_CLIENT_HELLO_ERROR;
}

/* ---- errors ---- */

static bool is_want(rill_status st)
{
    return st == RILL_WANT_READ || st == RILL_WANT_WRITE;
}

/* The failure after a handshake step, with the verify result as the reason. */
static rill_status pin_failure(rill_stream *s, struct tls *t, const char *pin);

static rill_status verify_failure(rill_stream *s, struct tls *t, long res)
{
    int e = t->vfy_err ? t->vfy_err : (int)res;
    const struct vfy_text *v = t->vfy;
    const char *names = v && v->names[0] ? v->names : "no DNS or IP name (CN is not used)";
    if (e == X509_V_ERR_APPLICATION_VERIFICATION && v && v->pin_seen[0])
        return pin_failure(s, t, v->pin_seen);
    const char *why = X509_verify_cert_error_string(e);
    if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        return rill_stream_error(s, RILL_E_TLS_VERIFY, "%s mismatch: certificate is for %s, not %s",
                                 e == X509_V_ERR_HOSTNAME_MISMATCH ? "hostname" : "IP address",
                                 names, t->servername);
    }
    return rill_stream_error(s, RILL_E_TLS_VERIFY,
                             "certificate verify failed: %s (depth %d, subject %s)", why,
                             t->vfy_depth, v && v->subject[0] ? v->subject : "unknown");
}

static bool version_refused(unsigned long e)
{
    int r = ERR_GET_REASON(e);
    return ERR_GET_LIB(e) == ERR_LIB_SSL &&
           (r == SSL_R_UNSUPPORTED_PROTOCOL || r == SSL_R_WRONG_SSL_VERSION ||
            r == SSL_R_VERSION_TOO_LOW || r == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
}

/* Whether this side's verification of the peer aborts the handshake when it fails. */
static bool verify_enforced(const struct tls *t)
{
    return t->server ? t->cfg->client_auth != RILL_TLS_CLIENT_AUTH_NONE : t->cfg->verify_cert;
}

/* Turn a failed SSL call's outcome into a status; records the message on @p s. */
static rill_status ssl_failure(rill_stream *s, struct tls *t, int ret)
{
    int e = SSL_get_error(t->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        rill_status st = is_want(t->io_status)      ? t->io_status
                         : e == SSL_ERROR_WANT_READ ? RILL_WANT_READ
                                                    : RILL_WANT_WRITE;
        t->last_want = st;
        return st;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        if (t->handshake_done)
            return RILL_EOF;
        /* A close_notify before the handshake finished ends nothing that was ever open. */
        return t->fatal =
                   rill_stream_error(s, RILL_E_TLS, "peer sent close_notify during the handshake");
    }
    rill_status st;
    unsigned long first = ERR_peek_error();
    long vres = SSL_get_verify_result(t->ssl);
    if (t->refusal && !t->handshake_done) {
        ERR_clear_error();
        st = rill_stream_error(s, RILL_E_TLS, "handshake failed: %s", t->refusal);
    } else if (t->io_status < 0) {
        st = t->io_status; /* the inner stream's error, already recorded on s */
        ERR_clear_error();
    } else if (t->reneg_refused) {
        ERR_clear_error();
        st = rill_stream_error(s, RILL_E_TLS,
                               "the peer asked to renegotiate: refused with a fatal "
                               "no_renegotiation alert (rill does not renegotiate)");
    } else if (!t->handshake_done && verify_enforced(t) && (t->vfy_err || vres != X509_V_OK)) {
        /*
         * Our verification refused the peer: that is the reason, whatever the error queue
         * says first (a bad signature leaves "invalid padding; RSA lib" ahead of it).
         */
        ERR_clear_error();
        st = verify_failure(s, t, vres);
    } else if (!t->handshake_done && version_refused(first)) {
        char why[120];
        rilli_tls_errq(why, sizeof why);
        int ours = t->cfg->min_version;
        if (t->peer_version && t->peer_version < ours)
            st = rill_stream_error(s, RILL_E_TLS, "peer speaks %s, minimum is %s",
                                   rilli_tls_version_name(t->peer_version),
                                   rilli_tls_version_name(ours));
        else /* e.g. an old server that answers our hello with a protocol_version alert */
            st = rill_stream_error(s, RILL_E_TLS,
                                   "no protocol version in common with the peer (we allow %s to "
                                   "%s): %s",
                                   rilli_tls_version_name(ours),
                                   rilli_tls_version_name(t->cfg->max_version), why);
    } else if (t->io_eof &&
               (first == 0 || ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        ERR_clear_error();
        if (!t->handshake_done) {
            st =
                rill_stream_error(s, RILL_E_TLS, "peer closed the connection during the handshake");
        } else if (t->allow_truncation) {
            t->eof = true; /* accepted as the end of the stream, for good */
            return RILL_EOF;
        } else {
            st = rill_stream_error(s, RILL_E_TRUNCATED,
                                   "peer closed the connection without close_notify (the data "
                                   "may be truncated)");
        }
    } else {
        /* Alerts from the peer have reasons from SSL_AD_REASON_OFFSET up. */
        bool alert =
            ERR_GET_LIB(first) == ERR_LIB_SSL && ERR_GET_REASON(first) >= SSL_AD_REASON_OFFSET;
        char why[200];
        bool nomem = rilli_tls_errq(why, sizeof why);
        if (!why[0])
            snprintf(why, sizeof why, "error %d from OpenSSL", e);
        if (nomem)
            st = rill_stream_error(s, RILL_E_NOMEM, "out of memory in OpenSSL: %s", why);
        else
            st = rill_stream_error(s, RILL_E_TLS, "%s%s%s",
                                   t->handshake_done ? "" : "handshake failed: ",
                                   alert ? "peer sent a fatal alert: " : "", why);
    }
    t->fatal = st;
    return st;
}

/*
 * Prepare for an SSL call: no stale errors from this thread, no stale BIO outcome. rill leaves
 * the queue empty after every failure it reports, so it is normally empty here: peeking is a
 * fraction of the cost of clearing it (which walks all of its slots, on every record).
 */
static void call_start(struct tls *t)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
    t->io_status = RILL_OK;
    t->io_eof = false;
}

/*
 * Start of every op: what this layer waits for is decided anew. A WANT from an earlier call
 * must not steer the poll op of a later one whose WANT came from a layer below (a shutdown
 * stuck in the buffered layer under TLS waits for POLLOUT, not for the POLLIN of a read).
 */
static struct tls *op_start(rill_stream *s)
{
    struct tls *t = rilli_state(s);
    t->last_want = RILL_OK;
    t->push_stuck = false;
    return t;
}

/*
 * OpenSSL's record buffers (some 34 KiB) are released when the connection goes idle, not per
 * record: SSL_MODE_RELEASE_BUFFERS frees the read buffer after every record read and the write
 * buffer after every write call, then allocates them again for the next. Here they stay while
 * full records flow (a bulk transfer) and go when a burst ends: after the handshake, after a
 * record read or written that was not a full one, once nothing is left in them.
 */
static void release_if_idle(struct tls *t)
{
    if (!t->wpend_len && SSL_pending(t->ssl) == 0)
        (void)SSL_free_buffers(t->ssl); /* refuses (and keeps them) while bytes are held */
}

/* ---- handshake ---- */

static bool pin_matches(const rill_tls_config *cfg, X509 *cert, char *pin, size_t len)
{
    unsigned char raw[RILLI_SHA256_LEN];
    snprintf(pin, len, "absent");
    if (!cert || !rilli_tls_spki(cert, pin, len, raw))
        return false;
    for (size_t i = 0; i < cfg->npins; i++) {
        if (memcmp(raw, cfg->pins[i], sizeof raw) == 0)
            return true;
    }
    return false;
}

static rill_status pin_failure(rill_stream *s, struct tls *t, const char *pin)
{
    return t->fatal = rill_stream_error(s, RILL_E_TLS_VERIFY,
                                        "pin mismatch: the peer's key is %s, which is none of "
                                        "the %zu pinned keys",
                                        pin, t->cfg->npins);
}

/* After the handshake, unless the verify callback already matched the key: covers
 * rill_tls_config_insecure_noverifycert, where OpenSSL goes on after the callback's refusal
 * (or never reaches the leaf with ok set). */
static rill_status check_pins(rill_stream *s, struct tls *t)
{
    char pin[64];
    if (t->cfg->npins == 0 || t->pin_ok ||
        pin_matches(t->cfg, SSL_get0_peer_certificate(t->ssl), pin, sizeof pin))
        return RILL_OK;
    return pin_failure(s, t, pin);
}

/*
 * A resumed session skips certificate verification: what it carries is what was verified when
 * it was made. Whatever offered it (the ctx cache, an imported blob), check again that it was
 * verified and that its certificate names this connection's host, so a session can never stand
 * in for a check this config would make.
 */
static rill_status check_resumed(rill_stream *s, struct tls *t)
{
    if (t->server || !SSL_session_reused(t->ssl) || !t->cfg->verify_cert)
        return RILL_OK;
    long vres = SSL_get_verify_result(t->ssl);
    X509 *leaf = SSL_get0_peer_certificate(t->ssl);
    if (vres != X509_V_OK || !leaf) {
        return t->fatal = rill_stream_error(
                   s, RILL_E_TLS_VERIFY, "resumed session was not verified: %s",
                   leaf ? X509_verify_cert_error_string(vres) : "it holds no peer certificate");
    }
    if (!t->cfg->verify_name || !t->servername[0])
        return RILL_OK;
    int ok = t->servername_is_ip ? X509_check_ip_asc(leaf, t->servername, 0)
                                 : X509_check_host(leaf, t->servername, 0,
                                                   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                       X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                                                   NULL);
    ERR_clear_error();
    if (ok == 1)
        return RILL_OK;
    char names[sizeof t->vfy->names];
    name_list(leaf, false, names, sizeof names);
    return t->fatal = rill_stream_error(
               s, RILL_E_TLS_VERIFY, "%s mismatch: resumed session's certificate is for %s, not %s",
               t->servername_is_ip ? "IP address" : "hostname",
               names[0] ? names : "no DNS or IP name (CN is not used)", t->servername);
}

static rill_status handshake_step(rill_stream *s, struct tls *t)
{
    call_start(t);
    int r = SSL_do_handshake(t->ssl);
    if (r != 1)
        return ssl_failure(s, t, r);
    SSL_set_msg_callback(t->ssl, NULL);
    rill_status st = check_resumed(s, t);
    if (st == RILL_OK)
        st = check_pins(s, t);
    if (st != RILL_OK)
        return st;
    t->handshake_done = true;
    release_if_idle(t);
    return RILL_OK;
}

/* Common start of every I/O op: a failed stream stays failed; the handshake comes first. */
static rill_status ready(rill_stream *s, struct tls *t)
{
    if (t->fatal)
        return t->fatal;
    if (!t->handshake_done)
        return handshake_step(s, t);
    return RILL_OK;
}

/* Send the record a non-blocking write left encrypted but unsent. */
static rill_status finish_pending_write(rill_stream *s, struct tls *t)
{
    while (t->wpend_off < t->wpend_len) {
        size_t w = 0;
        call_start(t);
        int r = SSL_write_ex(t->ssl, t->wpend + t->wpend_off, t->wpend_len - t->wpend_off, &w);
        if (r != 1)
            return ssl_failure(s, t, r);
        t->wpend_off += w;
    }
    t->wpend_len = t->wpend_off = 0;
    rilli_free(t->wpend); /* not held while idle */
    t->wpend = NULL;
    return RILL_OK;
}

/* ---- ops ---- */

static rill_status tls_read(rill_stream *s, void *buf, size_t len, size_t *n)
{
    struct tls *t = op_start(s);
    if (t->eof)
        return RILL_EOF;
    rill_status st = ready(s, t);
    if (st != RILL_OK)
        return st;
    /*
     * The peer may wait for a held record before it answers: push it first, but without
     * waiting, since a peer that stopped reading may have answered already. While the record
     * is stuck the read does not block either, and the poll op asks for POLLIN and POLLOUT, so
     * the caller wakes for whichever side can move.
     */
    bool may_block = rill_stream_may_block(s);
    if (t->wpend_len) {
        rilli_set_may_block(s, false);
        rill_status wst = finish_pending_write(s, t);
        rilli_set_may_block(s, may_block);
        if (wst < 0)
            return wst;
        t->push_stuck = is_want(wst);
        if (t->push_stuck)
            rilli_set_may_block(s, false);
    }
    call_start(t);
    int r = SSL_read_ex(t->ssl, buf, len, n);
    rilli_set_may_block(s, may_block);
    if (r != 1) {
        *n = 0;
        st = ssl_failure(s, t, r);
        /* Waiting for the peer with nothing half-read: an idle connection holds no buffers
         * (what SSL_MODE_RELEASE_BUFFERS did, without its cost per record). */
        if (st == RILL_WANT_READ && t->rec_read == 0)
            release_if_idle(t);
        return st;
    }
    t->rec_read += *n;
    if (SSL_pending(t->ssl) == 0) { /* the record is used up */
        bool full = t->rec_read >= FULL_RECORD;
        t->rec_read = 0;
        if (!full)
            release_if_idle(t);
    }
    return RILL_OK;
}

/*
 * Encrypt and send @p len bytes (ready, nothing pending): *n says how many were accepted; a
 * record left unsent by a WANT is kept in wpend and its bytes count as accepted.
 */
static rill_status write_records(rill_stream *s, struct tls *t, const void *buf, size_t len,
                                 size_t *n)
{
    rill_status st;
    /*
     * One call carries every record of the write (a 64 KiB write is four records, not four
     * walks down the chain). OpenSSL is handed the whole rest each time: with partial writes it
     * returns after each record, and with SSL_MODE_RELEASE_BUFFERS it frees its record buffer
     * only after the record that ends what it was handed, so once per call, not per record.
     */
    const unsigned char *p = buf;
    size_t done = 0;
    *n = 0;
    while (done < len) {
        size_t w = 0;
        call_start(t);
        int r = SSL_write_ex(t->ssl, p + done, len - done, &w);
        if (r == 1) {
            done += w;
            t->last_short = w < FULL_RECORD;
            continue;
        }
        st = ssl_failure(s, t, r);
        if (!is_want(st)) {
            /* What went out before stays written; the failure is kept for the next call. */
            *n = done;
            return done ? RILL_OK : st;
        }
        /*
         * OpenSSL has encrypted a record of the next bytes and must be called again with the
         * same bytes to send it. Keep a copy and report them accepted, so the caller is free to
         * go on with other data; the next write, flush or read sends the record first.
         */
        size_t chunk = len - done > WRITE_CHUNK ? WRITE_CHUNK : len - done;
        if (!t->wpend && !(t->wpend = rilli_malloc(WRITE_CHUNK))) {
            *n = done;
            return done ? RILL_OK
                        : rill_stream_error(s, RILL_E_NOMEM, "out of memory for a pending record");
        }
        memcpy(t->wpend, p + done, chunk);
        t->wpend_len = chunk;
        t->wpend_off = 0;
        done += chunk;
        break;
    }
    *n = done;
    return RILL_OK;
}

static rill_status tls_write(rill_stream *s, const void *buf, size_t len, size_t *n)
{
    struct tls *t = op_start(s);
    *n = 0;
    rill_status st = ready(s, t);
    if (st == RILL_OK && t->wpend_len)
        st = finish_pending_write(s, t);
    if (st != RILL_OK)
        return st;
    t->last_short = false;
    st = write_records(s, t, buf, len, n);
    if (st == RILL_OK && t->last_short)
        release_if_idle(t);
    return st;
}

/*
 * A gather: small pieces are packed into one record (in the pending-record buffer, which keeps
 * them if the record cannot go out at once), a piece of a record or more is encrypted in place.
 * A 200-byte header and a 16 KiB body thus make two records and no copy of the body.
 */
static rill_status tls_writev(rill_stream *s, const struct iovec *iov, int iovcnt, size_t *n)
{
    struct tls *t = op_start(s);
    *n = 0;
    rill_status st = ready(s, t);
    if (st == RILL_OK && t->wpend_len)
        st = finish_pending_write(s, t);
    if (st != RILL_OK)
        return st;
    size_t done = 0, off = 0;
    int i = 0;
    t->last_short = false;
    while (i < iovcnt) {
        const unsigned char *p = (const unsigned char *)iov[i].iov_base + off;
        size_t left = iov[i].iov_len - off;
        if (left >= WRITE_CHUNK) {
            size_t w = 0;
            st = write_records(s, t, p, left, &w);
            done += w;
            if (st != RILL_OK || w < left || t->wpend_len)
                break;
            i++;
            off = 0;
            continue;
        }
        if (!t->wpend && !(t->wpend = rilli_malloc(WRITE_CHUNK))) {
            st = rill_stream_error(s, RILL_E_NOMEM, "out of memory for a pending record");
            break;
        }
        size_t k = 0;
        while (i < iovcnt && k < WRITE_CHUNK) {
            size_t avail = iov[i].iov_len - off;
            if (avail >= WRITE_CHUNK && k > 0)
                break; /* a large piece starts its own records */
            size_t take = avail < WRITE_CHUNK - k ? avail : WRITE_CHUNK - k;
            memcpy(t->wpend + k, (const unsigned char *)iov[i].iov_base + off, take);
            k += take;
            off += take;
            if (off == iov[i].iov_len) {
                i++;
                off = 0;
            }
        }
        t->wpend_len = k;
        t->wpend_off = 0;
        st = finish_pending_write(s, t);
        if (st != RILL_OK && !is_want(st)) {
            t->wpend_len = t->wpend_off = 0; /* not accepted: the failure is reported */
            break;
        }
        done += k; /* sent, or kept pending */
        if (st != RILL_OK)
            break;
        t->last_short = k < FULL_RECORD;
    }
    *n = done;
    if (st == RILL_OK && t->last_short)
        release_if_idle(t);
    if (done > 0)
        return RILL_OK; /* a failure after progress is kept (t->fatal) for the next call */
    return st;
}

/*
 * rill_close's flush: close_notify goes out here, where the core may wait for the connection
 * to take it under the write timeout (the close op that would send it otherwise must not
 * wait). A peer that has gone cannot take it: that is no error of the close.
 */
static rill_status send_close_notify(rill_stream *s, struct tls *t)
{
    call_start(t);
    int r = SSL_shutdown(t->ssl);
    if (r >= 0) {
        t->sent_shutdown = true;
        return RILL_OK;
    }
    rill_status st = ssl_failure(s, t, r);
    if (is_want(st))
        return st;
    t->sent_shutdown = true; /* not to be tried again by the close op */
    t->fatal = RILL_OK;      /* the failure is the peer's going, not the stream's */
    return RILL_OK;
}

/*
 * rill_close after this side sent a fatal alert: shut the write side (the alert is out; a FIN
 * follows it), then read and discard what the peer still sends, until it closes, for at most
 * ALERT_DRAIN_MS and ALERT_DRAIN_BYTES. Closing with the peer's last flight unread (a TLS 1.3
 * client's Finished and first data arrive after the server refused its certificate) would make
 * the kernel send a reset, and a reset can destroy the alert before the peer reads it. Only
 * for callers that allow waiting (a write timeout other than 0) on a socket transport.
 */
static void drain_after_alert(rill_stream *s, struct tls *t)
{
    int wait_ms = 0;
    rill_get_timeouts(s, NULL, &wait_ms);
    t->alert_drained = true;
    if (!t->fast || wait_ms == 0)
        return;
    if (wait_ms < 0 || wait_ms > ALERT_DRAIN_MS)
        wait_ms = ALERT_DRAIN_MS;
    int fd = rill_fd(rill_stream_inner(s));
    if (fd < 0 || shutdown(fd, SHUT_WR) != 0)
        return;
    int64_t deadline = rilli_now_ms() + wait_ms;
    size_t total = 0;
    char sink[4096];
    while (total < ALERT_DRAIN_BYTES) {
        int64_t left = deadline - rilli_now_ms();
        if (left <= 0)
            return;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return; /* the peer closed (it has read the alert), or the connection failed */
        total += (size_t)n;
    }
}

static rill_status tls_flush(rill_stream *s)
{
    struct tls *t = op_start(s);
    if (t->fatal) {
        if (rilli_closing(s) && t->sent_fatal_alert && !t->alert_drained)
            drain_after_alert(s, t);
        return t->wpend_len ? t->fatal : RILL_OK; /* close reports no stale error */
    }
    rill_status st = t->wpend_len ? finish_pending_write(s, t) : RILL_OK;
    if (st == RILL_OK && rilli_closing(s) && t->handshake_done && !t->sent_shutdown)
        st = send_close_notify(s, t);
    return st;
}

static rill_status tls_shutdown(rill_stream *s)
{
    struct tls *t = op_start(s);
    if (t->fatal)
        return t->fatal;
    if (!t->handshake_done || t->sent_shutdown)
        return RILL_OK; /* nothing was ever said over TLS: the transport's FIN is enough */
    call_start(t);
    int r = SSL_shutdown(t->ssl);
    if (r < 0)
        return ssl_failure(s, t, r);
    t->sent_shutdown = true;
    return RILL_OK;
}

static void tls_close(rill_stream *s)
{
    struct tls *t = rilli_state(s);
    if (t->ssl) {
        if (t->handshake_done && !t->fatal && !t->sent_shutdown) {
            /* Best effort close_notify, never waiting: the core's close must not block. */
            rilli_set_may_block(s, false);
            call_start(t);
            int r = SSL_shutdown(t->ssl);
            if (r < 0 && (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_WRITE ||
                          t->io_status == RILL_WANT_WRITE))
                rill_stream_error(s, RILL_E_TIMEOUT,
                                  "close_notify discarded: the connection could not take it "
                                  "without waiting");
        }
        ERR_clear_error();
        SSL_free(t->ssl);
        t->ssl = NULL;
    }
    rilli_free(t->wpend);
    t->wpend = NULL;
    rilli_sess_cache_free(t->cache);
    t->cache = NULL;
    rilli_tls_certs_free(t->certs);
    t->certs = NULL;
    t->entry = NULL;
    rilli_free(t->refusal);
    t->refusal = NULL;
    rilli_free(t->cache_key);
    t->cache_key = NULL;
    rilli_free(t->vfy);
    t->vfy = NULL;
    if (t->servername != no_name)
        rilli_free(t->servername);
    t->servername = no_name;
    rill_tls_config_free(t->cfg);
    t->cfg = NULL;
}

static size_t tls_pending(const rill_stream *s)
{
    const struct tls *t = rilli_state(s);
    return t->ssl ? (size_t)SSL_pending(t->ssl) : 0;
}

static rill_status tls_poll(rill_stream *s, int *fd, short *events)
{
    (void)fd; /* the transport below names the descriptor */
    const struct tls *t = rilli_state(s);
    if (t->last_want == RILL_WANT_WRITE)
        *events = POLLOUT;
    else if (t->last_want == RILL_WANT_READ)
        *events = t->push_stuck && t->wpend_len ? POLLIN | POLLOUT : POLLIN;
    return RILL_OK;
}

static size_t tls_describe(const rill_stream *s, char *buf, size_t len)
{
    const struct tls *t = rilli_state(s);
    const char *role = t->server ? "server " : "";
    if (!t->handshake_done) {
        return rilli_snprintf(buf, len, "tls(%shandshake pending%s%s)", role,
                              t->servername[0] ? " host=" : "", t->servername);
    }
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
    return rilli_snprintf(buf, len, "tls(%s%s %s%s%.*s%s%s%s)", role, SSL_get_version(t->ssl),
                          SSL_get_cipher_name(t->ssl), alen ? " alpn=" : "", (int)alen,
                          alpn ? (const char *)alpn : "",
                          SSL_session_reused(t->ssl) ? " resumed" : "",
                          t->servername[0] ? " host=" : "", t->servername);
}

static const struct rill_stream_ops tls_ops = {
    .version = RILL_STREAM_OPS_VERSION,
    .name = RILL_LAYER_TLS,
    .read = tls_read,
    .write = tls_write,
    .writev = tls_writev,
    .flush = tls_flush,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .pending = tls_pending,
    .poll = tls_poll,
    .describe = tls_describe,
};

/* ---- construction ---- */

/*
 * Check a server name and put it in the form that is sent and verified into @p out: an IP
 * literal without IPv6 brackets (*is_ip), or a DNS name without its trailing dot ("localhost."
 * is "localhost": SNI carries no dot and certificates name hosts without one). NULL when the
 * name is usable; otherwise why not. Wildcards, spaces, control and non-ASCII bytes never name
 * a host: a certificate "matching" them would be verified for nothing real.
 */
static const char *servername_check(const char *name, char *out, size_t len, bool *is_ip)
{
    size_t n = strlen(name);
    *is_ip = false;
    if (n >= 2 && name[0] == '[' && name[n - 1] == ']')
        snprintf(out, len, "%.*s", (int)(n - 2), name + 1);
    else
        snprintf(out, len, "%s", name);
    unsigned char tmp[16];
    if (inet_pton(AF_INET, out, tmp) == 1 || inet_pton(AF_INET6, out, tmp) == 1) {
        *is_ip = true;
        return NULL;
    }
    snprintf(out, len, "%s", name);
    if (n > 0 && name[n - 1] == '.')
        out[--n] = '\0';
    if (n == 0)
        return "it is empty";
    if (n > 253)
        return "it is longer than 253 bytes";
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c == '*')
            return "a wildcard is not a host name";
        if (c <= 0x20 || c == 0x7f)
            return "it holds a space or control byte";
        if (c >= 0x80)
            return "it holds non-ASCII bytes (use the IDNA form, xn--...)";
        if (c == '.') {
            if (label == 0)
                return "it has an empty label";
            label = 0;
            continue;
        }
        if (!(c == '-' || c == '_' || (c >= '0' && c <= '9') ||
              ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
            return "it holds a byte that no host name has";
        if (++label > 63)
            return "a label is longer than 63 bytes";
    }
    return label == 0 ? "it has an empty label" : NULL;
}

/* Free a half-made layer (its own close op, then the block) without touching inner. */
static void discard(rill_stream *s)
{
    tls_close(s);
    rilli_stream_free(s);
}

static rill_status tls_new(rill_stream *inner, rill_tls_config *cfg, const char *servername,
                           unsigned flags, bool server, rill_stream **out)
{
    const char *fn = server ? "rill_tls_server" : "rill_tls_client";
    if (!inner || !cfg || !out) {
        return rilli_api_error(inner, RILL_E_INVALID, "tls: %s: %s is NULL", fn,
                               !inner ? "inner"
                               : !cfg ? "config"
                                      : "out");
    }
    rill_status refused = rilli_refuse_pending_plaintext(inner, "tls");
    if (refused != RILL_OK)
        return refused;
    if (server && !rilli_tls_has_cert(cfg))
        return rilli_api_error(inner, RILL_E_INVALID, "tls: server config has no certificate");
    if (!server && !servername && cfg->verify_cert && cfg->verify_name) {
        return rilli_api_error(inner, RILL_E_INVALID,
                               "tls: a server name is needed to verify the peer (or use "
                               "rill_tls_config_insecure_noverifyname)");
    }
    char name[SERVERNAME_MAX];
    bool name_is_ip = false;
    const char *bad = NULL;
    if (servername && strlen(servername) >= sizeof name)
        bad = "it is longer than 253 bytes";
    else if (servername)
        bad = servername_check(servername, name, sizeof name, &name_is_ip);
    if (bad) {
        char shown[84]; /* printable: a control byte must not reach a log through a message */
        size_t k = 0;
        for (const char *c = servername; *c && k < 80; c++)
            shown[k++] = *c > 0x20 && *c < 0x7f ? *c : '?';
        snprintf(shown + k, sizeof shown - k, "%s", strlen(servername) > 80 ? "..." : "");
        return rilli_api_error(inner, RILL_E_INVALID, "tls: invalid server name \"%s\": %s", shown,
                               bad);
    }
    rill_error ferr;
    if (rilli_tls_config_freeze(cfg, &ferr) != RILL_OK)
        return rilli_api_error(inner, ferr.code, "%s", ferr.msg);
    pthread_once(&bio_once, make_bio_method);
    if (!bio_method)
        return rilli_api_error(inner, RILL_E_NOMEM, "tls: cannot create the BIO method");

    rill_stream *s = NULL;
    rill_status st = rill_stream_new(&tls_ops, sizeof(struct tls), inner, flags & RILL_BORROW, &s);
    if (st != RILL_OK)
        return st;
    struct tls *t = rilli_state(s);
    t->self = s;
    t->servername = no_name;
    t->server = server;
    t->allow_truncation = (flags & RILL_TLS_ALLOW_TRUNCATION) != 0;
    const struct rill_stream_ops *iops = rilli_ops(inner);
    t->fast = iops == &rilli_tcp_ops || iops == &rilli_unix_ops;
    ERR_clear_error();
    if (servername) {
        size_t nlen = strlen(name) + 1;
        char *copy = rilli_malloc(nlen);
        if (copy) {
            memcpy(copy, name, nlen);
            t->servername = copy;
        }
    }
    t->ssl = servername && t->servername == no_name ? NULL : SSL_new(cfg->ctx);
    BIO *bio = t->ssl ? BIO_new(bio_method) : NULL;
    if (!bio) {
        ERR_clear_error();
        discard(s);
        return rilli_api_error(inner, RILL_E_NOMEM, "tls: out of memory creating a session");
    }
    rilli_tls_config_ref(cfg);
    t->cfg = cfg;
    t->certs = rilli_tls_certs_get(cfg);
    if (t->certs && t->certs->store && SSL_set1_verify_cert_store(t->ssl, t->certs->store) != 1) {
        BIO_free(bio);
        ERR_clear_error();
        discard(s);
        return rilli_api_error(inner, RILL_E_NOMEM, "tls: out of memory creating a session");
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_app_data(t->ssl, t);
    SSL_clear_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS); /* released when idle: release_if_idle */
    SSL_set_msg_callback(t->ssl, msg_cb);
    SSL_set_msg_callback_arg(t->ssl, t);
    bool ok = true;
    if (server) {
        SSL_set_accept_state(t->ssl);
#ifdef SSL_OP_ALLOW_CLIENT_RENEGOTIATION
        /* Let a renegotiating ClientHello reach rilli_tls_client_hello_cb, which refuses it. */
        if (cfg->refuses_reneg) {
            SSL_clear_options(t->ssl, SSL_OP_NO_RENEGOTIATION);
            SSL_set_options(t->ssl, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
        }
#endif
        int mode = cfg->client_auth == RILL_TLS_CLIENT_AUTH_NONE ? SSL_VERIFY_NONE
                   : cfg->client_auth == RILL_TLS_CLIENT_AUTH_OPTIONAL
                       ? SSL_VERIFY_PEER
                       : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_set_verify(t->ssl, mode, verify_cb);
    } else {
        SSL_set_connect_state(t->ssl);
        SSL_set_verify(t->ssl, cfg->verify_cert ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, verify_cb);
        if (servername) {
            bool ip = name_is_ip;
            t->servername_is_ip = ip;
            if (!ip)
                ok = SSL_set_tlsext_host_name(t->ssl, t->servername) == 1;
            if (ok && cfg->verify_cert && cfg->verify_name) {
                if (ip) {
                    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), t->servername) == 1;
                } else {
                    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                  X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
                    ok = SSL_set1_host(t->ssl, t->servername) == 1;
                }
            }
        }
    }
    if (!ok) {
        char why[160];
        /* The name was checked above: a failure here is OpenSSL running out of something. */
        rill_status code = rilli_tls_errq(why, sizeof why) ? RILL_E_NOMEM : RILL_E_TLS;
        rilli_api_error(inner, code, "tls: cannot use server name \"%.100s\": %s%s", servername,
                        code == RILL_E_NOMEM ? "out of memory: " : "", why);
        discard(s);
        return code;
    }
    *out = s;
    return RILL_OK;
}

RILL_API rill_status rill_tls_client(rill_stream *inner, rill_tls_config *cfg,
                                     const char *servername, unsigned flags, rill_stream **out)
{
    return tls_new(inner, cfg, servername, flags, false, out);
}

RILL_API rill_status rill_tls_server(rill_stream *inner, rill_tls_config *cfg, unsigned flags,
                                     rill_stream **out)
{
    return tls_new(inner, cfg, NULL, flags, true, out);
}

/* ---- public helpers on a chain ---- */

static rill_stream *find_tls(rill_stream *s)
{
    for (rill_stream *l = s; l; l = rill_stream_inner(l)) {
        if (rilli_ops(l) == &tls_ops)
            return l;
    }
    return NULL;
}

static rill_status handshake_attempt(rill_stream *l, void *arg)
{
    (void)arg;
    return ready(l, op_start(l));
}

RILL_API rill_status rill_tls_handshake(rill_stream *s)
{
    rill_stream *l = find_tls(s);
    if (!l)
        return rilli_api_error(s, RILL_E_INVALID, "rill_tls_handshake: no tls layer in the chain");
    rill_status st = rill_stream_call(l, 0, handshake_attempt, NULL);
    if (st == RILL_E_TIMEOUT) {
        int ms = 0;
        rill_get_timeouts(l, &ms, NULL);
        st = rill_stream_error(l, RILL_E_TIMEOUT, "handshake timed out after %d ms", ms);
    }
    return st < 0 ? rilli_adopt_error(s, l, st) : st;
}

static void format_time(const ASN1_TIME *at, char *buf, size_t len)
{
    struct tm tm;
    buf[0] = '\0';
    if (at && ASN1_TIME_to_tm(at, &tm) == 1)
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

#if UINTPTR_MAX == 0xffffffffffffffffu
/* A struct the caller allocates: it keeps its size; new facts take the reserved space. */
_Static_assert(sizeof(rill_tls_info) == 2080, "rill_tls_info has a fixed size: use reserved");
#endif

RILL_API rill_status rill_tls_get_info(rill_stream *s, rill_tls_info *info)
{
    if (!info)
        return rilli_api_error(s, RILL_E_INVALID, "rill_tls_get_info: info is NULL");
    memset(info, 0, sizeof *info);
    rill_stream *l = find_tls(s);
    if (!l)
        return rilli_api_error(s, RILL_E_INVALID, "rill_tls_get_info: no tls layer in the chain");
    struct tls *t = rilli_state(l);
    info->is_server = t->server;
    info->handshake_done = t->handshake_done;
    snprintf(info->servername, sizeof info->servername, "%s", t->servername);
    if (t->server) {
        const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
        snprintf(info->servername, sizeof info->servername, "%s", sni ? sni : "");
    }
    if (!t->handshake_done)
        return RILL_OK;
    info->resumed = SSL_session_reused(t->ssl);
    /* A resumed session sends no certificate: then there is none to name. */
    X509 *mine = t->entry ? SSL_get_certificate(t->ssl) : NULL;
    if (t->server && mine)
        snprintf(info->cert_entry, sizeof info->cert_entry, "%s",
                 t->entry->name ? t->entry->name : "(default)");
    if (mine) {
        snprintf(info->cert_type, sizeof info->cert_type, "%s", rilli_tls_key_type_name(mine));
        rilli_tls_spki(mine, info->cert_spki, sizeof info->cert_spki, NULL);
    }
    info->hello_retry = t->hello_retry;
    info->close_notify = (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
    info->truncated = t->eof;
    int group = SSL_get_negotiated_group(t->ssl);
    const char *gname = group ? SSL_group_to_name(t->ssl, group) : NULL;
    snprintf(info->group, sizeof info->group, "%s", gname ? gname : "");
    snprintf(info->version, sizeof info->version, "%s", SSL_get_version(t->ssl));
    snprintf(info->cipher, sizeof info->cipher, "%s", SSL_get_cipher_name(t->ssl));
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
    if (alpn)
        snprintf(info->alpn, sizeof info->alpn, "%.*s", (int)alen, (const char *)alpn);
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (!cert)
        return RILL_OK;
    bool checked = t->server ? t->cfg->client_auth != RILL_TLS_CLIENT_AUTH_NONE
                             : t->cfg->verify_cert && t->cfg->verify_name;
    info->verified = checked && SSL_get_verify_result(t->ssl) == X509_V_OK;
    name_oneline(X509_get_subject_name(cert), info->subject, sizeof info->subject);
    name_oneline(X509_get_issuer_name(cert), info->issuer, sizeof info->issuer);
    name_list(cert, true, info->sans, sizeof info->sans);
    format_time(X509_get0_notBefore(cert), info->not_before, sizeof info->not_before);
    format_time(X509_get0_notAfter(cert), info->not_after, sizeof info->not_after);
    rilli_tls_spki(cert, info->spki_sha256, sizeof info->spki_sha256, NULL);
    ERR_clear_error();
    return RILL_OK;
}

RILL_API rill_status rill_tls_get_peer_cert(rill_stream *s, size_t index, rill_tls_cert *info,
                                            char **pem, size_t *pem_len)
{
    if (pem)
        *pem = NULL;
    if (pem_len)
        *pem_len = 0;
    rill_stream *l = find_tls(s);
    struct tls *t = l ? rilli_state(l) : NULL;
    if (!t || !t->handshake_done)
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_tls_get_peer_cert: no TLS layer with a finished handshake");
    /* A client's list starts with the server's certificate; a server's lacks the client's. */
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(t->ssl);
    X509 *cert = NULL;
    if (t->server && index == 0)
        cert = SSL_get0_peer_certificate(t->ssl);
    else if (sent && index - (t->server ? 1 : 0) < (size_t)sk_X509_num(sent))
        cert = sk_X509_value(sent, (int)(index - (t->server ? 1 : 0)));
    if (!cert)
        return RILL_EOF;
    if (info) {
        memset(info, 0, sizeof *info);
        name_oneline(X509_get_subject_name(cert), info->subject, sizeof info->subject);
        name_oneline(X509_get_issuer_name(cert), info->issuer, sizeof info->issuer);
        format_time(X509_get0_notBefore(cert), info->not_before, sizeof info->not_before);
        format_time(X509_get0_notAfter(cert), info->not_after, sizeof info->not_after);
    }
    if (!pem) {
        ERR_clear_error();
        return RILL_OK;
    }
    BIO *mem = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = mem && PEM_write_bio_X509(mem, cert) == 1 ? BIO_get_mem_data(mem, &data) : 0;
    char *copy = n > 0 ? rilli_malloc((size_t)n + 1) : NULL;
    if (copy) {
        memcpy(copy, data, (size_t)n);
        copy[n] = '\0';
        *pem = copy;
        if (pem_len)
            *pem_len = (size_t)n;
    }
    BIO_free(mem);
    ERR_clear_error();
    if (!copy)
        return rilli_api_error(s, RILL_E_NOMEM, "rill_tls_get_peer_cert: out of memory");
    return RILL_OK;
}

RILL_API int rill_tls_session_resumed(rill_stream *s)
{
    rill_stream *l = find_tls(s);
    if (!l)
        return 0;
    struct tls *t = rilli_state(l);
    return t->handshake_done && SSL_session_reused(t->ssl);
}

/*
 * An exported session: what it was verified for, then OpenSSL's DER encoding.
 *   "RILS" | 1 (format) | flags (bit 0: verified, chain and name) | port (2 bytes, big-endian,
 *   0 when unknown) | name length (1 byte) | name | trust digest of the config (32 bytes) | DER
 */
#define BLOB_MAGIC   "RILS"
#define BLOB_VERSION 1
#define BLOB_FIXED   (4 + 1 + 1 + 2 + 1 + RILLI_SHA256_LEN)

/* The peer's port: set by rill_connect, or read from a tcp transport right below. */
static uint16_t peer_port(struct tls *t)
{
    if (t->port || !t->fast)
        return t->port;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = rill_fd(rill_stream_inner(t->self));
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            t->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            t->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return t->port;
}

static bool session_verified(const struct tls *t)
{
    return t->cfg->verify_cert && t->cfg->verify_name && t->servername[0] &&
           SSL_get_verify_result(t->ssl) == X509_V_OK;
}

RILL_API rill_status rill_tls_session_export(rill_stream *s, void **blob, size_t *len)
{
    if (!blob || !len)
        return rilli_api_error(s, RILL_E_INVALID, "rill_tls_session_export: NULL argument");
    *blob = NULL;
    *len = 0;
    rill_stream *l = find_tls(s);
    struct tls *t = l ? rilli_state(l) : NULL;
    if (!t || t->server || !t->handshake_done)
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_tls_session_export: no TLS client with a finished handshake");
    SSL_SESSION *sess = SSL_get1_session(t->ssl);
    if (!sess || !SSL_SESSION_is_resumable(sess)) {
        SSL_SESSION_free(sess);
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_tls_session_export: no resumable session yet (a TLS 1.3 "
                               "ticket arrives with the first read)");
    }
    size_t nlen = strlen(t->servername);
    uint16_t port = peer_port(t);
    int n = i2d_SSL_SESSION(sess, NULL);
    unsigned char *out = n > 0 ? rilli_malloc(BLOB_FIXED + nlen + (size_t)n) : NULL;
    rill_status st = RILL_OK;
    if (out) {
        unsigned char *p = out;
        memcpy(p, BLOB_MAGIC, 4);
        p[4] = BLOB_VERSION;
        p[5] = session_verified(t) ? 1 : 0;
        p[6] = (unsigned char)(port >> 8);
        p[7] = (unsigned char)port;
        p[8] = (unsigned char)nlen;
        memcpy(p + 9, t->servername, nlen);
        memcpy(p + 9 + nlen, t->cfg->trust, RILLI_SHA256_LEN);
        p += BLOB_FIXED + nlen;
        if (i2d_SSL_SESSION(sess, &p) != n) {
            rilli_free(out);
            out = NULL;
        }
    }
    if (!out) {
        st = rilli_api_error(s, RILL_E_NOMEM, "rill_tls_session_export: cannot encode");
    } else {
        *blob = out;
        *len = BLOB_FIXED + nlen + (size_t)n;
    }
    SSL_SESSION_free(sess);
    ERR_clear_error();
    return st;
}

/* Offer a serialized session to the layer's SSL; false if it does not parse. */
static bool offer_session(struct tls *t, const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, (long)len);
    bool ok = sess && p == der + len && SSL_set_session(t->ssl, sess) == 1;
    SSL_SESSION_free(sess);
    ERR_clear_error();
    return ok;
}

RILL_API rill_status rill_tls_session_import(rill_stream *s, const void *blob, size_t len)
{
    static const char fn[] = "rill_tls_session_import";
    rill_stream *l = find_tls(s);
    struct tls *t = l ? rilli_state(l) : NULL;
    if (!t || t->server || t->handshake_done || !blob || len == 0 || len > (1u << 20))
        return rilli_api_error(s, RILL_E_INVALID,
                               "%s: needs a TLS client before its handshake and a session blob",
                               fn);
    const unsigned char *b = blob;
    size_t nlen = len > 8 ? b[8] : 0;
    if (len <= BLOB_FIXED || memcmp(b, BLOB_MAGIC, 4) != 0 || b[4] != BLOB_VERSION ||
        len <= BLOB_FIXED + nlen)
        return rilli_api_error(s, RILL_E_INVALID,
                               "%s: the blob is not a session exported by this version of rill",
                               fn);
    uint16_t port = (uint16_t)(b[6] << 8 | b[7]);
    const char *name = (const char *)b + 9;
    uint16_t ours = peer_port(t);
    /* The checks a resumed handshake skips must have been made for this very connection. */
    if (nlen != strlen(t->servername) || strncasecmp(name, t->servername, nlen) != 0 ||
        (port && ours && port != ours)) {
        char was[120], now[300];
        size_t k = 0;
        for (size_t i = 0; i < nlen && k < 100; i++)
            was[k++] = name[i] > 0x20 && name[i] < 0x7f ? name[i] : '?';
        was[k] = '\0';
        if (port)
            snprintf(was + k, sizeof was - k, ":%u", port);
        snprintf(now, sizeof now, "%s", t->servername[0] ? t->servername : "(no name)");
        if (ours)
            snprintf(now + strlen(now), sizeof now - strlen(now), ":%u", ours);
        return rilli_api_error(s, RILL_E_INVALID,
                               "%s: the session was made for %s, not %s: refused (the handshake "
                               "will be a full one)",
                               fn, nlen ? was : "(no name)", now);
    }
    if (memcmp(b + 9 + nlen, t->cfg->trust, RILLI_SHA256_LEN) != 0 ||
        (!b[5] && t->cfg->verify_cert && t->cfg->verify_name))
        return rilli_api_error(s, RILL_E_INVALID,
                               "%s: the session was made under other trust settings (CAs, CRLs, "
                               "pins or verification switches): refused (the handshake will be a "
                               "full one)",
                               fn);
    if (!offer_session(t, b + BLOB_FIXED + nlen, len - BLOB_FIXED - nlen))
        return rilli_api_error(s, RILL_E_INVALID, "%s: the blob does not hold a TLS session", fn);
    return RILL_OK;
}

RILL_API void rill_free(void *p)
{
    rilli_free(p);
}

/* ---- the session cache of a rill_ctx ---- */

/* Use @p cache for this client: offer a session cached for its name, @p port and config. */
/* @p role keeps the sessions of an https:// proxy apart from those of the hosts reached
 * through it ("" for a host, "proxy|" for a proxy), whatever names and ports they share. */
static void use_cache(struct tls *t, struct rilli_sess_cache *cache, uint16_t port,
                      const char *role)
{
    t->port = port;
    if (!cache)
        return;
    /* role, name ":" port "#" config id */
    size_t klen = strlen(role) + strlen(t->servername) + 1 + 5 + 1 + 20 + 1;
    t->cache_key = rilli_malloc(klen);
    if (!t->cache_key)
        return; /* no room for the key: this connection goes without the cache */
    snprintf(t->cache_key, klen, "%s%s:%u#%llu", role, t->servername, port,
             (unsigned long long)t->cfg->id);
    t->cache = cache;
    rilli_sess_cache_ref(cache); /* the stream may outlive its context */
    SSL_SESSION *sess = rilli_sess_cache_get(cache, t->cache_key);
    if (sess) {
        (void)SSL_set_session(t->ssl, sess); /* takes its own reference */
        SSL_SESSION_free(sess);
        ERR_clear_error();
    }
}

RILL_API rill_status rill_tls_use_session_cache(rill_stream *s, rill_ctx *ctx, uint16_t port)
{
    rill_stream *l = find_tls(s);
    struct tls *t = l ? rilli_state(l) : NULL;
    if (!t || t->server || t->handshake_done || t->cache)
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_tls_use_session_cache: needs a TLS client before its "
                               "handshake, not yet given a cache");
    if (!ctx || port == 0 || !t->servername[0])
        return rilli_api_error(s, RILL_E_INVALID,
                               "rill_tls_use_session_cache: needs a context, a port and a TLS "
                               "client with a server name (sessions are kept per name and port)");
    use_cache(t, rilli_ctx_sessions(ctx), port, "");
    return RILL_OK;
}

rill_status rilli_tls_connect_wrap(rill_ctx *ctx, const char *host, uint16_t port,
                                   const rill_connect_opts *opts, rill_stream *tcp,
                                   rill_stream **out, rill_error *err)
{
    const char *name = opts->tls_servername ? opts->tls_servername : host;
    rill_stream *tls = NULL;
    rill_status st = rill_tls_client(tcp, opts->tls, name, opts->tls_flags, &tls);
    if (st != RILL_OK)
        return rilli_error_from_stream(err, tcp);
    use_cache(rilli_state(tls), rilli_ctx_sessions(ctx), port, "");
    *out = tls;
    return RILL_OK;
}

rill_status rilli_tls_proxy_wrap(rill_ctx *ctx, const char *proxy_host, uint16_t port,
                                 rill_tls_config *cfg, rill_stream *tcp, rill_stream **out,
                                 rill_error *err)
{
    rill_stream *tls = NULL;
    rill_status st = rill_tls_client(tcp, cfg, proxy_host, 0, &tls);
    if (st != RILL_OK)
        return rilli_error_from_stream(err, tcp);
    use_cache(rilli_state(tls), rilli_ctx_sessions(ctx), port, "proxy|");
    *out = tls;
    return RILL_OK;
}
