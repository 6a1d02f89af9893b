/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the TLS room (tls_config.c, tls.c). The only rill files that include
 * OpenSSL headers are this room's.
 */
#ifndef RILL_TRANSPORT_TLS_H
#define RILL_TRANSPORT_TLS_H

#include <openssl/ssl.h>
#include <pthread.h>

#include "internal.h"

#define RILLI_TLS_MAX_PINS 16
#define RILLI_SHA256_LEN   32

struct rill_tls_config {
    int refs;             /* atomic */
    uint64_t id;          /* unique for the process lifetime: keys the session cache */
    pthread_mutex_t lock; /* guards freezing */
    bool frozen;
    SSL_CTX *ctx;
    bool ca_set;
    bool has_cert;
    bool refuses_reneg; /* rilli_tls_client_hello_cb is installed on ctx */
    bool verify_cert;
    bool verify_name;
    int min_version;
    int max_version;
    rill_tls_client_auth client_auth;
    unsigned char *alpn; /* wire format: length-prefixed names */
    size_t alpn_len;
    unsigned char pins[RILLI_TLS_MAX_PINS][RILLI_SHA256_LEN];
    size_t npins;
    rill_tls_passphrase_fn pass_cb;
    void *pass_arg;
    int keylog_fd;
    /* What the config trusts and checks (CA and CRL sources, pins, the insecure switches),
     * hashed as the setters run and sealed at freeze: an exported session carries it, so an
     * import under other trust settings is refused. */
    unsigned char trust[RILLI_SHA256_LEN];
};

/* Mix a trust setting (@p tag and its value) into cfg->trust. */
void rilli_tls_config_trust_mix(rill_tls_config *cfg, const char *tag, const void *data,
                                size_t len);

/*
 * Freeze @p cfg on first use: load the system trust store if no CA was given and fix the
 * session settings. Thread-safe; later calls return at once. The message goes to @p err.
 */
rill_status rilli_tls_config_freeze(rill_tls_config *cfg, rill_error *err);

/* Drain OpenSSL's error queue of this thread into @p buf ("reason; reason"); "" if empty.
 * Returns true when one of the errors was an allocation failure. */
bool rilli_tls_errq(char *buf, size_t len);

/* Protocol version name for a wire value ("TLSv1.2"), "SSLv3" and older included. */
const char *rilli_tls_version_name(int version);

/* "sha256//BASE64" of the SubjectPublicKeyInfo of @p cert into @p out (>= 52 bytes); raw digest
 * into @p raw when not NULL. False if the key cannot be encoded. */
bool rilli_tls_spki(X509 *cert, char *out, size_t len, unsigned char raw[RILLI_SHA256_LEN]);

/* SSL_CTX new-session callback (tls.c): a client's session goes to rill_connect's cache. */
int rilli_tls_new_session_cb(SSL *ssl, SSL_SESSION *sess);

/* Servers: refuses a renegotiating ClientHello with a fatal no_renegotiation alert (tls.c). */
int rilli_tls_client_hello_cb(SSL *ssl, int *alert, void *arg);

#endif
