/* SPDX-License-Identifier: MIT */
/*
 * rill_tls_config: one SSL_CTX per config, built by the setters and frozen on first use. The
 * trust store lives in the SSL_CTX, so it is parsed once per config, not per connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls.h"

/* TLS 1.2 suites: forward secrecy and AEAD only. */
#define DEFAULT_CIPHERS    "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
#define MIN_SECURITY_LEVEL 2

static uint64_t next_config_id; /* atomic: config identities for the session cache */

bool rilli_tls_errq(char *buf, size_t len)
{
    size_t used = 0;
    bool nomem = false;
    if (len)
        buf[0] = '\0';
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        nomem = nomem || ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE;
        const char *reason = ERR_GET_LIB(e) == ERR_LIB_SYS ? rilli_errno_text(ERR_GET_REASON(e))
                                                           : ERR_reason_error_string(e);
        char tmp[160];
        if (!reason) {
            ERR_error_string_n(e, tmp, sizeof tmp);
            reason = tmp;
        }
        if (used < len) {
            int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", reason);
            if (n > 0)
                used += (size_t)n;
        }
    }
    return nomem;
}

const char *rilli_tls_version_name(int version)
{
    switch (version) {
    case 0x0300: return "SSLv3";
    case 0x0301: return "TLSv1.0";
    case 0x0302: return "TLSv1.1";
    case 0x0303: return "TLSv1.2";
    case 0x0304: return "TLSv1.3";
    default: return "an unknown version";
    }
}

bool rilli_tls_spki(X509 *cert, char *out, size_t len, unsigned char raw[RILLI_SHA256_LEN])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    if (n <= 0)
        return false;
    unsigned char md[RILLI_SHA256_LEN];
    unsigned mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok || mdlen != sizeof md)
        return false;
    if (raw)
        memcpy(raw, md, sizeof md);
    unsigned char b64[48];
    EVP_EncodeBlock(b64, md, (int)sizeof md);
    snprintf(out, len, "sha256//%s", (const char *)b64);
    return true;
}

rill_status rilli_tls_ssl_fail(rill_error *err, rill_status code, const char *fmt, ...)
{
    char why[200];
    if (rilli_tls_errq(why, sizeof why))
        code = RILL_E_NOMEM; /* "malloc failure" in the reasons: say out of memory */
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rilli_error_set(err, code, 0, "tls: %s%s%s%s",
                           code == RILL_E_NOMEM ? "out of memory: " : "", what, why[0] ? ": " : "",
                           why);
}

void rilli_tls_config_trust_mix(rill_tls_config *cfg, const char *tag, const void *data, size_t len)
{
    /* trust = SHA-256(trust | tag | NUL | 8-byte length | data): a chain over the setters. */
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(md, cfg->trust, sizeof cfg->trust) == 1 &&
              EVP_DigestUpdate(md, tag, strlen(tag) + 1) == 1 &&
              EVP_DigestUpdate(md, lenbuf, sizeof lenbuf) == 1 &&
              (len == 0 || EVP_DigestUpdate(md, data, len) == 1) &&
              EVP_DigestFinal_ex(md, cfg->trust, NULL) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        /* Out of memory: a digest no export can match, so imports are refused, never trusted. */
        memset(cfg->trust, 0xff, sizeof cfg->trust);
        cfg->trust[0] ^= (unsigned char)(cfg->id & 0xff);
        ERR_clear_error();
    }
}

rill_status rilli_tls_check_cfg(rill_tls_config *cfg, const char *fn, rill_error *err)
{
    if (!cfg)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: %s: config is NULL", fn);
    if (cfg->frozen)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: %s: the config is in use by a stream and can no longer "
                               "change",
                               fn);
    ERR_clear_error();
    return RILL_OK;
}

static void keylog_cb(const SSL *ssl, const char *line)
{
    const rill_tls_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!cfg || cfg->keylog_fd < 0)
        return;
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (n > 0 && (size_t)n < sizeof buf) {
        ssize_t w = write(cfg->keylog_fd, buf, (size_t)n); /* O_APPEND: one line per write */
        (void)w;
    }
}

static int open_keylog(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
}

/*
 * The key-log callback is installed only while there is a file to write to: with one installed,
 * OpenSSL hex-formats every secret of every handshake for it (~289k instructions a connection).
 */
static void set_keylog_fd(rill_tls_config *cfg, int fd)
{
    if (cfg->keylog_fd >= 0)
        close(cfg->keylog_fd);
    cfg->keylog_fd = fd;
    SSL_CTX_set_keylog_callback(cfg->ctx, fd >= 0 ? keylog_cb : NULL);
}

static int passphrase_cb(char *buf, int size, int rwflag, void *arg)
{
    (void)rwflag;
    const rill_tls_config *cfg = arg;
    if (!cfg->pass_cb)
        return -1;
    int n = cfg->pass_cb(buf, size, cfg->pass_arg);
    return n >= 0 && n <= size ? n : -1;
}

RILL_API rill_status rill_tls_config_new(rill_tls_config **out, rill_error *err)
{
    if (!out)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: out is NULL");
    rill_tls_config *cfg = rilli_calloc(1, sizeof *cfg);
    if (!cfg)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory for a config");
    ERR_clear_error();
    cfg->ctx = SSL_CTX_new(TLS_method());
    if (!cfg->ctx) {
        rilli_free(cfg);
        return rilli_tls_ssl_fail(err, RILL_E_NOMEM, "cannot create an SSL_CTX");
    }
    cfg->refs = 1;
    cfg->id = __atomic_add_fetch(&next_config_id, 1, __ATOMIC_RELAXED);
    pthread_mutex_init(&cfg->lock, NULL);
    pthread_mutex_init(&cfg->certs_lock, NULL);
    pthread_mutex_init(&cfg->reload_lock, NULL);
    pthread_mutex_init(&cfg->ticket_lock, NULL);
    cfg->verify_cert = true;
    cfg->verify_name = true;
    cfg->min_version = TLS1_2_VERSION;
    cfg->max_version = TLS1_3_VERSION;
    cfg->keylog_fd = -1;
    SSL_CTX *c = cfg->ctx;
    SSL_CTX_set_app_data(c, cfg);
    /* The minimum is set explicitly: the security level alone lets TLS 1.1 through. */
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    if (SSL_CTX_get_security_level(c) < MIN_SECURITY_LEVEL)
        SSL_CTX_set_security_level(c, MIN_SECURITY_LEVEL);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* The chain is sent as the certificate file gives it. OpenSSL's automatic chain building
     * would otherwise build and check a chain against the trust store (the system store by
     * default) on every full handshake: about 150 us of server CPU each (bench_evloop). */
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_default_passwd_cb(c, passphrase_cb);
    SSL_CTX_set_default_passwd_cb_userdata(c, cfg);
    rilli_tls_ctx_callbacks(c, cfg);
    rilli_tls_server_ctx_init(cfg);
    SSL_CTX_sess_set_new_cb(c, rilli_tls_new_session_cb);
    SSL_CTX_set_client_hello_cb(c, rilli_tls_client_hello_cb, NULL);
    cfg->refuses_reneg = true; /* tls.c lets renegotiation reach the callback only then */
    /* Resumption with client certificates needs a session id context on the server side. */
    static const unsigned char sid_ctx[] = "rill";
    if (SSL_CTX_set_cipher_list(c, DEFAULT_CIPHERS) != 1 ||
        SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1) != 1) {
        rill_status st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot apply the default settings");
        rill_tls_config_free(cfg);
        return st;
    }
    const char *keylog = secure_getenv("SSLKEYLOGFILE");
    if (keylog && *keylog)
        set_keylog_fd(cfg, open_keylog(keylog)); /* a debugging aid: failure is silent */
    *out = cfg;
    return RILL_OK;
}

void rilli_tls_config_ref(rill_tls_config *cfg)
{
    __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
}

RILL_API void rill_tls_config_free(rill_tls_config *cfg)
{
    if (!cfg || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    SSL_CTX_free(cfg->ctx);
    if (cfg->keylog_fd >= 0)
        close(cfg->keylog_fd);
    rilli_free(cfg->alpn);
    rilli_tls_server_free(cfg);
    pthread_mutex_destroy(&cfg->lock);
    pthread_mutex_destroy(&cfg->certs_lock);
    pthread_mutex_destroy(&cfg->reload_lock);
    pthread_mutex_destroy(&cfg->ticket_lock);
    rilli_free(cfg);
}

rill_status rilli_tls_config_freeze(rill_tls_config *cfg, rill_error *err)
{
    rill_status st = RILL_OK;
    pthread_mutex_lock(&cfg->lock);
    if (!cfg->frozen) {
        ERR_clear_error();
        if (!cfg->ca_set && SSL_CTX_set_default_verify_paths(cfg->ctx) != 1)
            st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load the system trust store");
        if (!cfg->ca_set)
            rilli_tls_config_trust_mix(cfg, "system-store", NULL, 0);
        /* Clients keep sessions in the rill_ctx (rill_connect), not in OpenSSL's cache. */
        long mode = cfg->has_cert ? SSL_SESS_CACHE_BOTH
                                  : SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE;
        SSL_CTX_set_session_cache_mode(cfg->ctx, mode);
        SSL_CTX_sess_set_cache_size(cfg->ctx, RILLI_TLS_SESSION_CACHE_MAX);
        rilli_tls_server_freeze(cfg);
        if (st == RILL_OK)
            __atomic_store_n(&cfg->frozen, true, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&cfg->lock);
    return st;
}

/* ---- trust ---- */

RILL_API rill_status rill_tls_config_set_ca_file(rill_tls_config *cfg, const char *path,
                                                 rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_ca_file", err);
    if (st != RILL_OK)
        return st;
    if (!path)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: CA file path is NULL");
    if (SSL_CTX_load_verify_file(cfg->ctx, path) != 1)
        return rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load CA file %.150s", path);
    cfg->ca_set = true;
    rilli_tls_config_trust_mix(cfg, "ca-file", path, strlen(path));
    return rilli_tls_add_source(cfg, RILLI_SRC_CA_FILE, path, NULL, 0, err);
}

RILL_API rill_status rill_tls_config_set_ca_path(rill_tls_config *cfg, const char *dir,
                                                 rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_ca_path", err);
    if (st != RILL_OK)
        return st;
    if (!dir)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: CA directory is NULL");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return rilli_error_set(err, RILL_E_TLS, errno, "tls: cannot open CA directory %.150s", dir);
    close(fd);
    if (SSL_CTX_load_verify_dir(cfg->ctx, dir) != 1)
        return rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot use CA directory %.150s", dir);
    cfg->ca_set = true;
    rilli_tls_config_trust_mix(cfg, "ca-dir", dir, strlen(dir));
    return rilli_tls_add_source(cfg, RILLI_SRC_CA_DIR, dir, NULL, 0, err);
}

RILL_API rill_status rill_tls_config_set_ca_mem(rill_tls_config *cfg, const void *pem, size_t len,
                                                rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_ca_mem", err);
    if (st != RILL_OK)
        return st;
    if (!pem || len == 0 || len > INT_MAX)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: CA PEM is NULL or empty");
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    STACK_OF(X509_INFO) *infos = bio ? PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!infos)
        return rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot parse the CA PEM");
    X509_STORE *store = SSL_CTX_get_cert_store(cfg->ctx);
    int added = 0;
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);
        if (info->x509 && X509_STORE_add_cert(store, info->x509) == 1)
            added++;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    if (added == 0)
        return rilli_tls_ssl_fail(err, RILL_E_TLS, "no CA certificate in the PEM");
    cfg->ca_set = true;
    rilli_tls_config_trust_mix(cfg, "ca-mem", pem, len);
    return rilli_tls_add_source(cfg, RILLI_SRC_CA_MEM, NULL, pem, len, err);
}

RILL_API rill_status rill_tls_config_set_crl_file(rill_tls_config *cfg, const char *path,
                                                  rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_crl_file", err);
    if (st != RILL_OK)
        return st;
    if (!path)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: CRL file path is NULL");
    X509_STORE *store = SSL_CTX_get_cert_store(cfg->ctx);
    X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lookup || X509_load_crl_file(lookup, path, X509_FILETYPE_PEM) <= 0)
        return rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load CRLs from %.150s", path);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    rilli_tls_config_trust_mix(cfg, "crl-file", path, strlen(path));
    return rilli_tls_add_source(cfg, RILLI_SRC_CRL_FILE, path, NULL, 0, err);
}

/* ---- protocol ---- */

static bool version_ok(int v)
{
    return v == 0 || v == RILL_TLS_1_2 || v == RILL_TLS_1_3;
}

RILL_API rill_status rill_tls_config_set_versions(rill_tls_config *cfg, int min_version,
                                                  int max_version, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_versions", err);
    if (st != RILL_OK)
        return st;
    if (!version_ok(min_version) || !version_ok(max_version))
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: versions must be RILL_TLS_1_2 or RILL_TLS_1_3 (got 0x%04x, "
                               "0x%04x); older versions cannot be enabled",
                               (unsigned)min_version, (unsigned)max_version);
    int lo = min_version ? min_version : TLS1_2_VERSION;
    int hi = max_version ? max_version : TLS1_3_VERSION;
    if (lo > hi)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: minimum %s is above maximum %s",
                               rilli_tls_version_name(lo), rilli_tls_version_name(hi));
    SSL_CTX_set_min_proto_version(cfg->ctx, lo);
    SSL_CTX_set_max_proto_version(cfg->ctx, hi);
    cfg->min_version = lo;
    cfg->max_version = hi;
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_ciphers(rill_tls_config *cfg, const char *list,
                                                 rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_ciphers", err);
    if (st != RILL_OK)
        return st;
    if (!list || SSL_CTX_set_cipher_list(cfg->ctx, list) != 1)
        return rilli_tls_ssl_fail(err, RILL_E_INVALID, "no usable cipher in \"%.100s\"",
                                  list ? list : "");
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_ciphersuites(rill_tls_config *cfg, const char *list,
                                                      rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_ciphersuites", err);
    if (st != RILL_OK)
        return st;
    if (!list || !*list || SSL_CTX_set_ciphersuites(cfg->ctx, list) != 1)
        return rilli_tls_ssl_fail(err, RILL_E_INVALID,
                                  "no usable TLS 1.3 ciphersuite in \"%.100s\"", list ? list : "");
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_groups(rill_tls_config *cfg, const char *list,
                                                rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_groups", err);
    if (st != RILL_OK)
        return st;
    /* SSL_CTX_set1_groups_list is a macro that casts the const away; OpenSSL only reads it. */
    union {
        const char *in;
        char *arg;
    } text = { .in = list };
    if (!list || !*list || SSL_CTX_ctrl(cfg->ctx, SSL_CTRL_SET_GROUPS_LIST, 0, text.arg) != 1)
        return rilli_tls_ssl_fail(err, RILL_E_INVALID, "no usable group in \"%.100s\"",
                                  list ? list : "");
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_security_level(rill_tls_config *cfg, int level,
                                                        rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_security_level", err);
    if (st != RILL_OK)
        return st;
    if (level < MIN_SECURITY_LEVEL || level > 5)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: security level %d is outside 2 .. 5 (levels below 2 allow "
                               "weak keys and SHA-1)",
                               level);
    SSL_CTX_set_security_level(cfg->ctx, level);
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_alpn(rill_tls_config *cfg, const char *list,
                                              rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_alpn", err);
    if (st != RILL_OK)
        return st;
    if (!list || !*list)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: ALPN list is empty");
    size_t n = strlen(list);
    if (n > 1024)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: ALPN list is over 1024 bytes");
    unsigned char *wire = rilli_malloc(n + 1);
    if (!wire)
        return rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory");
    size_t used = 0;
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > 255) {
            rilli_free(wire);
            return rilli_error_set(err, RILL_E_INVALID, 0,
                                   "tls: ALPN list \"%.100s\" has an empty or overlong name", list);
        }
        wire[used++] = (unsigned char)len;
        memcpy(wire + used, p, len);
        used += len;
        if (!comma)
            break;
        p = comma + 1;
    }
    /* SSL_CTX_set_alpn_protos returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(cfg->ctx, wire, (unsigned)used) != 0) {
        rilli_free(wire);
        return rilli_tls_ssl_fail(err, RILL_E_NOMEM, "cannot set ALPN");
    }
    rilli_free(cfg->alpn);
    cfg->alpn = wire;
    cfg->alpn_len = used;
    return RILL_OK;
}

/* ---- own certificate ---- */

RILL_API rill_status rill_tls_config_set_passphrase_cb(rill_tls_config *cfg,
                                                       rill_tls_passphrase_fn cb, void *arg,
                                                       rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_passphrase_cb", err);
    if (st != RILL_OK)
        return st;
    cfg->pass_cb = cb;
    cfg->pass_arg = arg;
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_verify_client(rill_tls_config *cfg,
                                                       rill_tls_client_auth mode, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_verify_client", err);
    if (st != RILL_OK)
        return st;
    if (mode != RILL_TLS_CLIENT_AUTH_NONE && mode != RILL_TLS_CLIENT_AUTH_OPTIONAL &&
        mode != RILL_TLS_CLIENT_AUTH_REQUIRE)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: client auth mode %d is unknown",
                               (int)mode);
    cfg->client_auth = mode;
    return RILL_OK;
}

/* ---- pins, key log, insecure switches ---- */

RILL_API rill_status rill_tls_config_add_pin(rill_tls_config *cfg, const char *pin, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "add_pin", err);
    if (st != RILL_OK)
        return st;
    static const char prefix[] = "sha256//";
    size_t plen = sizeof prefix - 1;
    if (!pin || strncmp(pin, prefix, plen) != 0 || strlen(pin + plen) != 44)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: pin \"%.80s\" is not sha256// followed by 44 base64 "
                               "characters",
                               pin ? pin : "(null)");
    if (cfg->npins == RILLI_TLS_MAX_PINS)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: more than %d pins",
                               RILLI_TLS_MAX_PINS);
    unsigned char raw[36];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)pin + plen, 44);
    /* 44 characters decode to 33 bytes, the last being the '=' padding's zero. */
    if (n != 33 || pin[plen + 43] != '=' || pin[plen + 42] == '=')
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: pin \"%.80s\" is not valid base64 of a SHA-256 digest", pin);
    memcpy(cfg->pins[cfg->npins++], raw, RILLI_SHA256_LEN);
    rilli_tls_config_trust_mix(cfg, "pin", raw, RILLI_SHA256_LEN);
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_keylog_file(rill_tls_config *cfg, const char *path,
                                                     rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_keylog_file", err);
    if (st != RILL_OK)
        return st;
    int fd = -1;
    if (path && (fd = open_keylog(path)) < 0)
        return rilli_error_set(err, RILL_E_IO, errno, "tls: cannot open key log file %.150s", path);
    set_keylog_fd(cfg, fd);
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_insecure_noverifycert(rill_tls_config *cfg, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "insecure_noverifycert", err);
    if (st == RILL_OK) {
        cfg->verify_cert = false;
        rilli_tls_config_trust_mix(cfg, "insecure-noverifycert", NULL, 0);
    }
    return st;
}

RILL_API rill_status rill_tls_config_insecure_noverifyname(rill_tls_config *cfg, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "insecure_noverifyname", err);
    if (st == RILL_OK) {
        cfg->verify_name = false;
        rilli_tls_config_trust_mix(cfg, "insecure-noverifyname", NULL, 0);
    }
    return st;
}

RILL_API rill_status rill_tls_config_insecure_noverifytime(rill_tls_config *cfg, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "insecure_noverifytime", err);
    if (st == RILL_OK) {
        X509_STORE_set_flags(SSL_CTX_get_cert_store(cfg->ctx), X509_V_FLAG_NO_CHECK_TIME);
        rilli_tls_config_trust_mix(cfg, "insecure-noverifytime", NULL, 0);
    }
    return st;
}
