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

#define RILLI_TLS_MAX_PINS    16
#define RILLI_SHA256_LEN      32
#define RILLI_TLS_MAX_KEYS    4 /* key types per certificate entry (ECDSA, RSA, ...) */
#define RILLI_TLS_TICKET_KEYS 4

/* One certificate chain and its key, parsed: immutable once made. */
struct rilli_tls_pair {
    X509 *leaf;
    STACK_OF(X509) * chain; /* intermediates, may be NULL */
    EVP_PKEY *key;
    int type; /* EVP_PKEY base id of the key */
};

/* The certificates for one name pattern (NULL: the default), one per key type. */
struct rilli_tls_entry {
    char *name; /* lower case: "a.example" or "*.example"; NULL for the default */
    struct rilli_tls_pair pairs[RILLI_TLS_MAX_KEYS];
    size_t npairs;
};

/*
 * A snapshot of a config's certificates and reloaded trust store: made whole, then published;
 * a handshake holds a reference to the one it started with, so a reload never changes the
 * certificates of a connection in progress.
 */
struct rilli_tls_certs {
    int refs; /* atomic */
    struct rilli_tls_entry *entries;
    size_t nentries;
    X509_STORE *store; /* trust re-read by a reload; NULL: the SSL_CTX's own */
};

/* What a file looked like when it was last read (reload on change). */
struct rilli_file_sig {
    unsigned long long dev, ino, size;
    long long mtime_ns, ctime_ns;
    bool present;
};

/* Where certificates and trust came from, so a reload can read them again. */
enum rilli_tls_source_kind {
    RILLI_SRC_CERT_FILE,
    RILLI_SRC_CERT_MEM,
    RILLI_SRC_CA_FILE,
    RILLI_SRC_CA_DIR,
    RILLI_SRC_CA_MEM,
    RILLI_SRC_CRL_FILE
};

struct rilli_tls_source {
    enum rilli_tls_source_kind kind;
    int type;           /* certificate sources: the key type loaded */
    char *name;         /* certificate entries: the pattern, NULL for the default */
    char *path;         /* certificate, CA or CRL file, or CA directory */
    char *key_path;     /* certificate files: the key */
    unsigned char *mem; /* memory sources: a copy of the PEM */
    size_t mem_len;
    unsigned char *key_mem;
    size_t key_mem_len;
    struct rilli_file_sig sig, key_sig;
};

/* A session ticket key: name, AES-256 key, HMAC-SHA256 key (RILL_TLS_TICKET_KEY_LEN bytes). */
struct rilli_ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    int64_t created_ms; /* automatic keys: when it began to encrypt */
};

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
    rill_tls_alpn_policy alpn_policy;
    rill_tls_sni_policy sni_policy;
    /* Certificates: the current snapshot (certs_lock guards the pointer) and where it came from
     * (sources: changed by setters before freezing, then read only under reload_lock). */
    pthread_mutex_t certs_lock;
    struct rilli_tls_certs *certs;
    pthread_mutex_t reload_lock;
    struct rilli_tls_source *sources;
    size_t nsources;
    int reload_interval_ms; /* check-on-handshake: 0 off */
    int64_t next_check_ms;  /* atomic */
    rill_tls_reload_fn reload_cb;
    void *reload_arg;
    /* Session tickets (server): lifetime 0 turns them off. */
    pthread_mutex_t ticket_lock;
    unsigned ticket_lifetime_s;
    bool ticket_keys_from_app;
    struct rilli_ticket_key ticket_keys[RILLI_TLS_TICKET_KEYS]; /* [0] encrypts */
    size_t nticket_keys;
    EVP_CIPHER *ticket_cipher; /* AES-256-CBC, fetched once (an implicit fetch per ticket costs) */
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

#define RILLI_TLS_SESSION_CACHE_MAX 1024 /* server session-ID cache entries (docs/guide.md) */

/* Record a setter failure with OpenSSL's reasons appended ("tls: what: reasons"). */
rill_status rilli_tls_ssl_fail(rill_error *err, rill_status code, const char *fmt, ...)
    RILL_PRINTF(3, 4);

/* Setter preamble: a non-NULL config that is not frozen yet; clears OpenSSL's error queue. */
rill_status rilli_tls_check_cfg(rill_tls_config *cfg, const char *fn, rill_error *err);

/* Register the per-handshake callbacks of tls.c (certificate choice, SNI, ALPN) on @p ctx. */
void rilli_tls_ctx_callbacks(SSL_CTX *ctx, rill_tls_config *cfg);

/* Drain OpenSSL's error queue of this thread into @p buf ("reason; reason"); "" if empty.
 * Returns true when one of the errors was an allocation failure. */
bool rilli_tls_errq(char *buf, size_t len);

/* Protocol version name for a wire value ("TLSv1.2"), "SSLv3" and older included. */
const char *rilli_tls_version_name(int version);

/* "sha256//BASE64" of the SubjectPublicKeyInfo of @p cert into @p out (>= 52 bytes); raw digest
 * into @p raw when not NULL. False if the key cannot be encoded. */
bool rilli_tls_spki(X509 *cert, char *out, size_t len, unsigned char raw[RILLI_SHA256_LEN]);

/* ---- tls_server.c: certificates by name, reload, tickets, server ALPN ---- */

/* Set up the SSL_CTX callbacks of the server side (certificate choice, tickets, ALPN). */
void rilli_tls_server_ctx_init(rill_tls_config *cfg);

/* Add a parsed pair from @p certs / @p key BIOs to the config's entry @p name (NULL: default);
 * @p cname / @p kname name them in messages. Before freezing only. */
rill_status rilli_tls_add_pair(rill_tls_config *cfg, const char *name, BIO *certs, BIO *key,
                               const char *cname, const char *kname, rill_error *err);

/* Record a trust source for reloads (before freezing). */
rill_status rilli_tls_add_source(rill_tls_config *cfg, enum rilli_tls_source_kind kind,
                                 const char *path, const void *mem, size_t len, rill_error *err);

/* Whether the config has any certificate. */
bool rilli_tls_has_cert(rill_tls_config *cfg);

/* Freeze-time settings of the server side (tickets, session cache). */
void rilli_tls_server_freeze(rill_tls_config *cfg);

/* Free what tls_server.c keeps in a config. */
void rilli_tls_server_free(rill_tls_config *cfg);

/* The current snapshot, referenced (check-on-handshake runs first); release with
 * rilli_tls_certs_free(). NULL when the config has no certificate. */
struct rilli_tls_certs *rilli_tls_certs_get(rill_tls_config *cfg);
void rilli_tls_certs_free(struct rilli_tls_certs *certs);

/* The entry of @p certs for SNI @p name (NULL: none sent) under @p policy; NULL if none. */
const struct rilli_tls_entry *rilli_tls_entry_for(const struct rilli_tls_certs *certs,
                                                  const char *name, rill_tls_sni_policy policy);

/* "ECDSA", "RSA", ... for the key of @p cert; "" for NULL. */
const char *rilli_tls_key_type_name(X509 *cert);

/* Put the certificates of @p entry on @p ssl (replacing any). False on failure. */
bool rilli_tls_use_entry(SSL *ssl, const struct rilli_tls_entry *entry);

/* SSL_CTX new-session callback (tls.c): a client's session goes to rill_connect's cache. */
int rilli_tls_new_session_cb(SSL *ssl, SSL_SESSION *sess);

/* Servers: refuses a renegotiating ClientHello with a fatal no_renegotiation alert (tls.c). */
int rilli_tls_client_hello_cb(SSL *ssl, int *alert, void *arg);

#endif
