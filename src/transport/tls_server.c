/* SPDX-License-Identifier: MIT */
/*
 * The server side of a rill_tls_config: certificates by SNI name and key type, reloading them
 * (and the trust files) without a restart, session ticket keys, and the policies of SNI and ALPN.
 *
 * Certificates never live in the SSL_CTX. They form a snapshot (struct rilli_tls_certs) that a
 * stream references when it starts; OpenSSL's certificate callback puts the chosen entry's
 * pairs on that stream's SSL. A reload builds a whole new snapshot and swaps the pointer, so a
 * handshake in progress keeps the certificates it began with and a failed reload changes
 * nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "tls.h"

#define DEFAULT_TICKET_LIFETIME_S 3600u
#define MAX_TICKET_LIFETIME_S     604800u

/* ---- snapshots ---- */

static void pair_clear(struct rilli_tls_pair *p)
{
    X509_free(p->leaf);
    sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    memset(p, 0, sizeof *p);
}

static struct rilli_tls_certs *certs_new(void)
{
    struct rilli_tls_certs *c = rilli_calloc(1, sizeof *c);
    if (c)
        c->refs = 1;
    return c;
}

void rilli_tls_certs_free(struct rilli_tls_certs *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < c->nentries; i++) {
        struct rilli_tls_entry *e = &c->entries[i];
        for (size_t k = 0; k < e->npairs; k++)
            pair_clear(&e->pairs[k]);
        rilli_free(e->name);
    }
    rilli_free(c->entries);
    X509_STORE_free(c->store);
    rilli_free(c);
}

static char *dup_lower(const char *s)
{
    size_t n = strlen(s);
    char *d = rilli_malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        d[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] | 0x20 : s[i]);
    return d;
}

static bool same_name(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcasecmp(a, b) == 0);
}

/* Put @p pair (taken on success) into the entry @p name of @p c, replacing one of its type. */
static rill_status certs_put(struct rilli_tls_certs *c, const char *name,
                             struct rilli_tls_pair *pair, rill_error *err)
{
    struct rilli_tls_entry *e = NULL;
    for (size_t i = 0; i < c->nentries && !e; i++) {
        if (same_name(c->entries[i].name, name))
            e = &c->entries[i];
    }
    if (!e) {
        struct rilli_tls_entry *grown =
            rilli_realloc(c->entries, (c->nentries + 1) * sizeof *c->entries);
        if (!grown)
            return rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory for a certificate");
        c->entries = grown;
        e = &c->entries[c->nentries];
        memset(e, 0, sizeof *e);
        if (name && !(e->name = dup_lower(name)))
            return rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory for a certificate");
        c->nentries++;
    }
    for (size_t k = 0; k < e->npairs; k++) {
        if (e->pairs[k].type == pair->type) {
            pair_clear(&e->pairs[k]);
            e->pairs[k] = *pair;
            memset(pair, 0, sizeof *pair);
            return RILL_OK;
        }
    }
    if (e->npairs == RILLI_TLS_MAX_KEYS)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: more than %d key types for the certificates of %s",
                               RILLI_TLS_MAX_KEYS, name ? name : "the default");
    e->pairs[e->npairs++] = *pair;
    memset(pair, 0, sizeof *pair);
    return RILL_OK;
}

static const char *key_type_name(int type)
{
    switch (type) {
    case EVP_PKEY_EC: return "ECDSA";
    case EVP_PKEY_RSA: return "RSA";
    case EVP_PKEY_RSA_PSS: return "RSA-PSS";
    case EVP_PKEY_ED25519: return "Ed25519";
    case EVP_PKEY_ED448: return "Ed448";
    default: return "other";
    }
}

const char *rilli_tls_key_type_name(X509 *cert)
{
    EVP_PKEY *k = cert ? X509_get0_pubkey(cert) : NULL;
    return k ? key_type_name(EVP_PKEY_get_base_id(k)) : "";
}

/* ---- choosing and using an entry ---- */

const struct rilli_tls_entry *rilli_tls_entry_for(const struct rilli_tls_certs *c, const char *name,
                                                  rill_tls_sni_policy policy)
{
    const struct rilli_tls_entry *fallback = NULL;
    const char *dot = name ? strchr(name, '.') : NULL;
    const struct rilli_tls_entry *wild = NULL;
    for (size_t i = 0; i < c->nentries; i++) {
        const struct rilli_tls_entry *e = &c->entries[i];
        if (!e->name) {
            fallback = e;
        } else if (name && *name) {
            if (strcasecmp(e->name, name) == 0)
                return e;
            if (!wild && e->name[0] == '*' && dot && dot != name &&
                strcasecmp(e->name + 1, dot) == 0)
                wild = e;
        }
    }
    if (wild)
        return wild;
    if (name && *name && policy == RILL_TLS_SNI_REFUSE)
        return NULL;
    return fallback;
}

bool rilli_tls_use_entry(SSL *ssl, const struct rilli_tls_entry *e)
{
    SSL_certs_clear(ssl);
    for (size_t k = 0; k < e->npairs; k++) {
        const struct rilli_tls_pair *p = &e->pairs[k];
        if (SSL_use_cert_and_key(ssl, p->leaf, p->key, p->chain, 1) != 1)
            return false;
    }
    return true;
}

/* ---- loading ---- */

static void format_asn1_time(const ASN1_TIME *at, char *buf, size_t len)
{
    struct tm tm;
    snprintf(buf, len, "an unreadable date");
    if (at && ASN1_TIME_to_tm(at, &tm) == 1)
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The end of a PEM stream shows as "no start line"; anything else is a broken certificate. */
static bool pem_ended_cleanly(void)
{
    unsigned long e = ERR_peek_last_error();
    bool clean =
        e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
    if (clean)
        ERR_clear_error();
    return clean;
}

/*
 * Whether PEM text @p b (read again from its start) has a private key block at all: without
 * one, OpenSSL 3 says only "unsupported", which reads like a key of an unknown kind.
 */
static bool holds_private_key(BIO *b)
{
    char line[256];
    if (BIO_reset(b) < 0)
        return true; /* cannot tell: keep OpenSSL's reason */
    for (int i = 0; i < 100000 && BIO_gets(b, line, sizeof line) > 0; i++) {
        if (strncmp(line, "-----BEGIN ", 11) == 0 && strstr(line, "PRIVATE KEY-----"))
            return true;
    }
    return false;
}

/*
 * Parse a chain (leaf first) and a key from two BIOs into @p out. @p cname / @p kname name
 * them in messages; @p fresh refuses an expired leaf (a reload must not swap one in).
 */
static rill_status load_pair(rill_tls_config *cfg, BIO *certs, BIO *key, const char *cname,
                             const char *kname, bool fresh, struct rilli_tls_pair *out,
                             rill_error *err)
{
    struct rilli_tls_pair p = { 0 };
    rill_status st = RILL_OK;
    SSL *probe = NULL;
    p.leaf = PEM_read_bio_X509_AUX(certs, NULL, NULL, NULL);
    if (!p.leaf)
        return rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load certificate %.150s", cname);
    X509 *ca;
    while ((ca = PEM_read_bio_X509(certs, NULL, NULL, NULL)) != NULL) {
        if (!p.chain && !(p.chain = sk_X509_new_null())) {
            X509_free(ca);
            st = rilli_tls_ssl_fail(err, RILL_E_NOMEM, "chain of %.150s", cname);
            goto out;
        }
        if (!sk_X509_push(p.chain, ca)) {
            X509_free(ca);
            st = rilli_tls_ssl_fail(err, RILL_E_NOMEM, "chain of %.150s", cname);
            goto out;
        }
    }
    if (!pem_ended_cleanly()) {
        st = rilli_tls_ssl_fail(err, RILL_E_TLS,
                                "chain of %.150s ends in a broken certificate (a file still "
                                "being written?)",
                                cname);
        goto out;
    }
    p.key = PEM_read_bio_PrivateKey(key, NULL, SSL_CTX_get_default_passwd_cb(cfg->ctx),
                                    SSL_CTX_get_default_passwd_cb_userdata(cfg->ctx));
    if (!p.key && !holds_private_key(key)) {
        ERR_clear_error();
        st = rilli_error_set(err, RILL_E_TLS, 0,
                             "tls: cannot load private key %.150s: the file holds no private key",
                             kname);
        goto out;
    }
    if (!p.key) {
        st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load private key %.150s", kname);
        goto out;
    }
    if (X509_check_private_key(p.leaf, p.key) != 1) {
        ERR_clear_error();
        st = rilli_error_set(err, RILL_E_TLS, 0,
                             "tls: private key %.150s does not match the certificate %.150s", kname,
                             cname);
        goto out;
    }
    if (fresh && X509_cmp_time(X509_get0_notAfter(p.leaf), NULL) < 0) {
        char when[32];
        format_asn1_time(X509_get0_notAfter(p.leaf), when, sizeof when);
        st = rilli_error_set(err, RILL_E_TLS, 0, "tls: certificate %.150s expired on %s", cname,
                             when);
        goto out;
    }
    /* What a handshake will do with the pair, now: key strength for the security level, ... */
    probe = SSL_new(cfg->ctx);
    if (!probe || SSL_use_cert_and_key(probe, p.leaf, p.key, p.chain, 1) != 1) {
        st = rilli_tls_ssl_fail(err, RILL_E_TLS, "certificate %.150s is not usable", cname);
        goto out;
    }
    p.type = EVP_PKEY_get_base_id(p.key);
    *out = p;
    memset(&p, 0, sizeof p);
out:
    SSL_free(probe);
    pair_clear(&p);
    return st;
}

/* What a source is made of, borrowed: the setters' arguments, or a stored source. */
struct spec {
    enum rilli_tls_source_kind kind;
    int type;
    const char *name, *path, *key_path;
    const void *mem, *key_mem;
    size_t mem_len, key_mem_len;
};

static struct spec spec_of(const struct rilli_tls_source *src)
{
    return (struct spec){ .kind = src->kind,
                          .type = src->type,
                          .name = src->name,
                          .path = src->path,
                          .key_path = src->key_path,
                          .mem = src->mem,
                          .key_mem = src->key_mem,
                          .mem_len = src->mem_len,
                          .key_mem_len = src->key_mem_len };
}

static bool is_cert_source(const struct rilli_tls_source *src)
{
    return src->kind == RILLI_SRC_CERT_FILE || src->kind == RILLI_SRC_CERT_MEM;
}

/* Read one certificate source into @p out. */
static rill_status read_source(rill_tls_config *cfg, const struct spec *src, bool fresh,
                               struct rilli_tls_pair *out, rill_error *err)
{
    BIO *c = NULL, *k = NULL;
    rill_status st;
    if (src->kind == RILLI_SRC_CERT_MEM) {
        c = BIO_new_mem_buf(src->mem, (int)src->mem_len);
        k = BIO_new_mem_buf(src->key_mem, (int)src->key_mem_len);
        if (!c || !k)
            st = rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory");
        else
            st = load_pair(cfg, c, k, "(memory)", "(memory)", fresh, out, err);
    } else if (!(c = BIO_new_file(src->path, "r"))) {
        st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot open certificate %.150s", src->path);
    } else if (!(k = BIO_new_file(src->key_path, "r"))) {
        st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot open private key %.150s", src->key_path);
    } else {
        st = load_pair(cfg, c, k, src->path, src->key_path, fresh, out, err);
    }
    BIO_free(c);
    BIO_free(k);
    return st;
}

static void file_sig(const char *path, struct rilli_file_sig *sig)
{
    struct stat sb;
    memset(sig, 0, sizeof *sig);
    if (!path || stat(path, &sb) != 0)
        return;
    sig->present = true;
    sig->dev = (unsigned long long)sb.st_dev;
    sig->ino = (unsigned long long)sb.st_ino;
    sig->size = (unsigned long long)sb.st_size;
    sig->mtime_ns = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    sig->ctime_ns = (long long)sb.st_ctim.tv_sec * 1000000000LL + sb.st_ctim.tv_nsec;
}

static void source_clear(struct rilli_tls_source *src)
{
    rilli_free(src->name);
    rilli_free(src->path);
    rilli_free(src->key_path);
    if (src->key_mem)
        OPENSSL_cleanse(src->key_mem, src->key_mem_len);
    rilli_free(src->mem);
    rilli_free(src->key_mem);
    memset(src, 0, sizeof *src);
}

static void *dup_mem(const void *p, size_t n)
{
    void *d = rilli_malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

static char *dup_str(const char *s)
{
    return s ? dup_mem(s, strlen(s) + 1) : NULL;
}

/* A stored source from @p tmpl: copies of everything, signatures of the files as they are. */
static bool make_source(const struct spec *tmpl, struct rilli_tls_source *out)
{
    struct rilli_tls_source src = { .kind = tmpl->kind, .type = tmpl->type };
    bool ok = (!tmpl->name || (src.name = dup_str(tmpl->name))) &&
              (!tmpl->path || (src.path = dup_str(tmpl->path))) &&
              (!tmpl->key_path || (src.key_path = dup_str(tmpl->key_path))) &&
              (!tmpl->mem || (src.mem = dup_mem(tmpl->mem, tmpl->mem_len))) &&
              (!tmpl->key_mem || (src.key_mem = dup_mem(tmpl->key_mem, tmpl->key_mem_len)));
    if (!ok) {
        source_clear(&src);
        return false;
    }
    src.mem_len = tmpl->mem_len;
    src.key_mem_len = tmpl->key_mem_len;
    if (src.kind != RILLI_SRC_CA_DIR && src.kind != RILLI_SRC_CA_MEM &&
        src.kind != RILLI_SRC_CERT_MEM) {
        file_sig(src.path, &src.sig);
        file_sig(src.key_path, &src.key_sig);
    }
    *out = src;
    return true;
}

/* Room for one more source. */
static bool reserve_source(rill_tls_config *cfg)
{
    struct rilli_tls_source *grown =
        rilli_realloc(cfg->sources, (cfg->nsources + 1) * sizeof *cfg->sources);
    if (grown)
        cfg->sources = grown;
    return grown != NULL;
}

static rill_status push_source(rill_tls_config *cfg, const struct spec *tmpl, rill_error *err)
{
    struct rilli_tls_source src;
    if (!reserve_source(cfg) || !make_source(tmpl, &src))
        return rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory");
    cfg->sources[cfg->nsources++] = src;
    return RILL_OK;
}

rill_status rilli_tls_add_source(rill_tls_config *cfg, enum rilli_tls_source_kind kind,
                                 const char *path, const void *mem, size_t len, rill_error *err)
{
    struct spec tmpl = { .kind = kind, .path = path, .mem = mem, .mem_len = len };
    return push_source(cfg, &tmpl, err);
}

bool rilli_tls_has_cert(rill_tls_config *cfg)
{
    return cfg->has_cert;
}

/* A name an entry may carry: a host name, or "*." and a host name. */
static bool entry_name_ok(const char *name)
{
    const char *p = name;
    if (p[0] == '*' && p[1] == '.')
        p += 2;
    size_t n = strlen(p), label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (c == '-' || c == '_' || (c >= '0' && c <= '9') ||
                   ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

static rill_status add_cert(rill_tls_config *cfg, const char *fn, const char *name,
                            const struct spec *tmpl, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, fn, err);
    if (st != RILL_OK)
        return st;
    if (name && !entry_name_ok(name))
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: certificate name \"%.100s\" is not a host name or a "
                               "\"*.\" wildcard",
                               name);
    struct rilli_tls_pair pair = { 0 };
    if ((st = read_source(cfg, tmpl, false, &pair, err)) != RILL_OK)
        return st;
    /* Everything that can fail first, so a failed call leaves the config as it was. */
    struct spec spec = *tmpl;
    spec.name = name;
    spec.type = pair.type;
    struct rilli_tls_source src;
    if (!make_source(&spec, &src)) {
        pair_clear(&pair);
        return rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory for a certificate");
    }
    if (!reserve_source(cfg) || (!cfg->certs && !(cfg->certs = certs_new())))
        st = rilli_error_set(err, RILL_E_NOMEM, 0, "tls: out of memory for a certificate");
    else
        st = certs_put(cfg->certs, name, &pair, err);
    pair_clear(&pair);
    if (st != RILL_OK) {
        source_clear(&src);
        return st;
    }
    /* The source this pair replaces is read no more: its files may be gone by the reload. */
    for (size_t i = 0; i < cfg->nsources; i++) {
        struct rilli_tls_source *old = &cfg->sources[i];
        if (is_cert_source(old) && old->type == spec.type && same_name(old->name, name)) {
            source_clear(old);
            memmove(old, old + 1, (cfg->nsources - i - 1) * sizeof *old);
            cfg->nsources--;
            break;
        }
    }
    cfg->sources[cfg->nsources++] = src;
    cfg->has_cert = true;
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_add_cert_file(rill_tls_config *cfg, const char *name,
                                                   const char *cert_path, const char *key_path,
                                                   rill_error *err)
{
    if (!cert_path || !key_path)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: certificate or key path is NULL");
    struct spec src = { .kind = RILLI_SRC_CERT_FILE, .path = cert_path, .key_path = key_path };
    return add_cert(cfg, "add_cert_file", name, &src, err);
}

RILL_API rill_status rill_tls_config_set_cert_file(rill_tls_config *cfg, const char *cert_path,
                                                   const char *key_path, rill_error *err)
{
    if (!cert_path || !key_path)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: certificate or key path is NULL");
    struct spec src = { .kind = RILLI_SRC_CERT_FILE, .path = cert_path, .key_path = key_path };
    return add_cert(cfg, "set_cert_file", NULL, &src, err);
}

static rill_status add_cert_mem(rill_tls_config *cfg, const char *fn, const char *name,
                                const void *cert_pem, size_t cert_len, const void *key_pem,
                                size_t key_len, rill_error *err)
{
    if (!cert_pem || !key_pem || cert_len == 0 || key_len == 0 || cert_len > INT32_MAX ||
        key_len > INT32_MAX)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: certificate or key PEM is empty");
    struct spec src = { .kind = RILLI_SRC_CERT_MEM,
                        .mem = cert_pem,
                        .mem_len = cert_len,
                        .key_mem = key_pem,
                        .key_mem_len = key_len };
    return add_cert(cfg, fn, name, &src, err);
}

RILL_API rill_status rill_tls_config_add_cert_mem(rill_tls_config *cfg, const char *name,
                                                  const void *cert_pem, size_t cert_len,
                                                  const void *key_pem, size_t key_len,
                                                  rill_error *err)
{
    return add_cert_mem(cfg, "add_cert_mem", name, cert_pem, cert_len, key_pem, key_len, err);
}

RILL_API rill_status rill_tls_config_set_cert_mem(rill_tls_config *cfg, const void *cert_pem,
                                                  size_t cert_len, const void *key_pem,
                                                  size_t key_len, rill_error *err)
{
    return add_cert_mem(cfg, "set_cert_mem", NULL, cert_pem, cert_len, key_pem, key_len, err);
}

/* ---- reloading ---- */

/* A new trust store from the config's CA and CRL sources, as the setters built the first. */
static rill_status build_store(rill_tls_config *cfg, X509_STORE **out, rill_error *err)
{
    X509_STORE *store = X509_STORE_new();
    rill_status st = RILL_OK;
    if (!store)
        return rilli_tls_ssl_fail(err, RILL_E_NOMEM, "cannot make a trust store");
    for (size_t i = 0; i < cfg->nsources && st == RILL_OK; i++) {
        const struct rilli_tls_source *src = &cfg->sources[i];
        switch (src->kind) {
        case RILLI_SRC_CA_FILE:
            if (X509_STORE_load_file(store, src->path) != 1)
                st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load CA file %.150s", src->path);
            break;
        case RILLI_SRC_CA_DIR:
            if (X509_STORE_load_path(store, src->path) != 1)
                st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot use CA directory %.150s",
                                        src->path);
            break;
        case RILLI_SRC_CA_MEM: {
            BIO *bio = BIO_new_mem_buf(src->mem, (int)src->mem_len);
            STACK_OF(X509_INFO) *infos = bio ? PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL) : NULL;
            BIO_free(bio);
            for (int k = 0; infos && k < sk_X509_INFO_num(infos); k++) {
                X509_INFO *info = sk_X509_INFO_value(infos, k);
                if (info->x509)
                    X509_STORE_add_cert(store, info->x509);
            }
            if (!infos)
                st = rilli_tls_ssl_fail(err, RILL_E_NOMEM, "cannot parse the CA PEM");
            sk_X509_INFO_pop_free(infos, X509_INFO_free);
            break;
        }
        case RILLI_SRC_CRL_FILE: {
            X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
            if (!lookup || X509_load_crl_file(lookup, src->path, X509_FILETYPE_PEM) <= 0)
                st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load CRLs from %.150s", src->path);
            break;
        }
        case RILLI_SRC_CERT_FILE:
        case RILLI_SRC_CERT_MEM: break;
        }
    }
    if (st == RILL_OK && !cfg->ca_set && X509_STORE_set_default_paths(store) != 1)
        st = rilli_tls_ssl_fail(err, RILL_E_TLS, "cannot load the system trust store");
    if (st == RILL_OK) {
        /* CRL checking and the time switch, as the setters left them on the first store. */
        X509_STORE *first = SSL_CTX_get_cert_store(cfg->ctx);
        X509_STORE_set_flags(store, X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(first)));
        *out = store;
        return RILL_OK;
    }
    X509_STORE_free(store);
    return st;
}

static bool has_trust_files(const rill_tls_config *cfg)
{
    for (size_t i = 0; i < cfg->nsources; i++) {
        if (cfg->sources[i].kind == RILLI_SRC_CA_FILE || cfg->sources[i].kind == RILLI_SRC_CRL_FILE)
            return true;
    }
    return false;
}

/* Take the signatures of every file now, before reading: a change while reading shows later. */
static void take_sigs(rill_tls_config *cfg)
{
    for (size_t i = 0; i < cfg->nsources; i++) {
        struct rilli_tls_source *src = &cfg->sources[i];
        if (src->kind == RILLI_SRC_CERT_FILE || src->kind == RILLI_SRC_CA_FILE ||
            src->kind == RILLI_SRC_CRL_FILE) {
            file_sig(src->path, &src->sig);
            file_sig(src->key_path, &src->key_sig);
        }
    }
}

static bool sig_differs(const struct rilli_file_sig *a, const char *path)
{
    struct rilli_file_sig now;
    file_sig(path, &now);
    return now.present != a->present || now.dev != a->dev || now.ino != a->ino ||
           now.size != a->size || now.mtime_ns != a->mtime_ns || now.ctime_ns != a->ctime_ns;
}

static bool files_changed(const rill_tls_config *cfg)
{
    for (size_t i = 0; i < cfg->nsources; i++) {
        const struct rilli_tls_source *src = &cfg->sources[i];
        if (src->kind != RILLI_SRC_CERT_FILE && src->kind != RILLI_SRC_CA_FILE &&
            src->kind != RILLI_SRC_CRL_FILE)
            continue;
        if (sig_differs(&src->sig, src->path) ||
            (src->key_path && sig_differs(&src->key_sig, src->key_path)))
            return true;
    }
    return false;
}

/* Reload under reload_lock: build a whole snapshot, then swap it in. */
static rill_status reload_locked(rill_tls_config *cfg, rill_error *err)
{
    rill_error why;
    rill_status st = RILL_OK;
    size_t ncerts = 0;
    take_sigs(cfg);
    ERR_clear_error();
    struct rilli_tls_certs *fresh = certs_new();
    if (!fresh)
        st = rilli_error_set(&why, RILL_E_NOMEM, 0, "tls: out of memory");
    for (size_t i = 0; i < cfg->nsources && st == RILL_OK; i++) {
        const struct rilli_tls_source *src = &cfg->sources[i];
        if (!is_cert_source(src))
            continue;
        struct rilli_tls_pair pair = { 0 };
        struct spec sp = spec_of(src);
        st = read_source(cfg, &sp, true, &pair, &why);
        if (st == RILL_OK)
            st = certs_put(fresh, src->name, &pair, &why);
        pair_clear(&pair);
        ncerts++;
    }
    if (st == RILL_OK && has_trust_files(cfg))
        st = build_store(cfg, &fresh->store, &why);
    if (st != RILL_OK) {
        rilli_tls_certs_free(fresh);
        ERR_clear_error();
        const char *reason = strncmp(why.msg, "tls: ", 5) == 0 ? why.msg + 5 : why.msg;
        return rilli_error_set(err, st, 0,
                               "tls: reload failed, keeping the certificates in use: %s", reason);
    }
    pthread_mutex_lock(&cfg->certs_lock);
    struct rilli_tls_certs *old = cfg->certs;
    cfg->certs = fresh;
    pthread_mutex_unlock(&cfg->certs_lock);
    rilli_tls_certs_free(old);
    return rilli_error_set(err, RILL_OK, 0, "tls: reloaded %zu certificate%s%s", ncerts,
                           ncerts == 1 ? "" : "s",
                           has_trust_files(cfg) ? " and the trust files" : "");
}

RILL_API rill_status rill_tls_config_reload(rill_tls_config *cfg, rill_error *err)
{
    if (!cfg)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: reload: config is NULL");
    pthread_mutex_lock(&cfg->reload_lock);
    rill_status st = reload_locked(cfg, err);
    pthread_mutex_unlock(&cfg->reload_lock);
    return st;
}

RILL_API rill_status rill_tls_config_set_reload_check(rill_tls_config *cfg, int interval_ms,
                                                      rill_tls_reload_fn cb, void *arg,
                                                      rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_reload_check", err);
    if (st != RILL_OK)
        return st;
    if (interval_ms < 0)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: reload check interval %d ms is negative", interval_ms);
    cfg->reload_interval_ms = interval_ms;
    cfg->reload_cb = cb;
    cfg->reload_arg = arg;
    return RILL_OK;
}

/* Check-on-handshake: at most once per interval, by one thread, never waited for. */
static void maybe_reload(rill_tls_config *cfg)
{
    int64_t now = rilli_now_ms();
    if (now < __atomic_load_n(&cfg->next_check_ms, __ATOMIC_ACQUIRE))
        return;
    if (pthread_mutex_trylock(&cfg->reload_lock) != 0)
        return;
    if (now >= __atomic_load_n(&cfg->next_check_ms, __ATOMIC_RELAXED)) {
        __atomic_store_n(&cfg->next_check_ms, now + cfg->reload_interval_ms, __ATOMIC_RELEASE);
        rill_error outcome;
        if (files_changed(cfg)) {
            reload_locked(cfg, &outcome);
            /* Under the lock: outcomes are told one at a time, in order. */
            if (cfg->reload_cb)
                cfg->reload_cb(cfg->reload_arg, &outcome);
        }
    }
    pthread_mutex_unlock(&cfg->reload_lock);
}

struct rilli_tls_certs *rilli_tls_certs_get(rill_tls_config *cfg)
{
    if (!cfg->has_cert && !has_trust_files(cfg))
        return NULL;
    if (cfg->reload_interval_ms > 0)
        maybe_reload(cfg);
    pthread_mutex_lock(&cfg->certs_lock);
    struct rilli_tls_certs *c = cfg->certs;
    if (c)
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&cfg->certs_lock);
    return c;
}

RILL_API rill_status rill_tls_config_set_sni_policy(rill_tls_config *cfg,
                                                    rill_tls_sni_policy policy, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_sni_policy", err);
    if (st != RILL_OK)
        return st;
    if (policy != RILL_TLS_SNI_DEFAULT && policy != RILL_TLS_SNI_REFUSE)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: SNI policy %d is unknown",
                               (int)policy);
    cfg->sni_policy = policy;
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_alpn_policy(rill_tls_config *cfg,
                                                     rill_tls_alpn_policy policy, rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_alpn_policy", err);
    if (st != RILL_OK)
        return st;
    if (policy != RILL_TLS_ALPN_OPTIONAL && policy != RILL_TLS_ALPN_REQUIRE)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: ALPN policy %d is unknown",
                               (int)policy);
    cfg->alpn_policy = policy;
    return RILL_OK;
}

/* ---- session tickets ---- */

static bool new_ticket_key(struct rilli_ticket_key *k, int64_t now)
{
    k->created_ms = now;
    return RAND_bytes(k->name, sizeof k->name) == 1 &&
           RAND_priv_bytes(k->aes, sizeof k->aes) == 1 &&
           RAND_priv_bytes(k->hmac, sizeof k->hmac) == 1;
}

/* Automatic keys (ticket_lock held): a new key each lifetime, the one before kept one more. */
static void rotate_keys(rill_tls_config *cfg, int64_t now)
{
    if (cfg->ticket_keys_from_app)
        return;
    int64_t life = (int64_t)cfg->ticket_lifetime_s * 1000;
    struct rilli_ticket_key *keys = cfg->ticket_keys;
    if (cfg->nticket_keys == 0 || now >= keys[0].created_ms + life) {
        struct rilli_ticket_key k;
        if (!new_ticket_key(&k, now)) {
            OPENSSL_cleanse(&k, sizeof k);
            return; /* keep sealing with the old key rather than with none */
        }
        bool keep = cfg->nticket_keys > 0 && now < keys[0].created_ms + 2 * life;
        if (keep)
            keys[1] = keys[0];
        else if (cfg->nticket_keys == 2)
            OPENSSL_cleanse(&keys[1], sizeof keys[1]); /* dropped: leave no copy behind */
        keys[0] = k;
        cfg->nticket_keys = keep ? 2 : 1;
        OPENSSL_cleanse(&k, sizeof k);
    }
    if (cfg->nticket_keys == 2 && now >= keys[1].created_ms + 2 * life) {
        OPENSSL_cleanse(&keys[1], sizeof keys[1]);
        cfg->nticket_keys = 1;
    }
}

static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    rill_tls_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct rilli_ticket_key key;
    int index = -1;
    pthread_mutex_lock(&cfg->ticket_lock);
    rotate_keys(cfg, rilli_now_ms());
    for (size_t i = 0; i < cfg->nticket_keys && index < 0; i++) {
        if (enc || memcmp(name, cfg->ticket_keys[i].name, 16) == 0) {
            key = cfg->ticket_keys[i];
            index = (int)i;
        }
    }
    pthread_mutex_unlock(&cfg->ticket_lock);
    if (index < 0)
        return 0; /* sealing: no ticket; opening: unknown key, a full handshake */
    static char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    int ret = -1;
    const EVP_CIPHER *cbc = cfg->ticket_cipher ? cfg->ticket_cipher : EVP_aes_256_cbc();
    if (enc) {
        memcpy(name, key.name, 16);
        if (RAND_bytes(iv, 16) == 1 && EVP_EncryptInit_ex(cctx, cbc, NULL, key.aes, iv) == 1 &&
            EVP_MAC_init(hctx, key.hmac, sizeof key.hmac, params) == 1)
            ret = 1;
    } else if (EVP_MAC_init(hctx, key.hmac, sizeof key.hmac, params) == 1 &&
               EVP_DecryptInit_ex(cctx, cbc, NULL, key.aes, iv) == 1) {
        /*
         * 2: send a fresh ticket. With an older key, so the client moves to the current one;
         * and always in TLS 1.3, where OpenSSL sends none after a resumption otherwise: a
         * client that keeps only its latest session (rill's cache, browsers) would then make
         * a full handshake every other time.
         */
        ret = index == 0 && SSL_version(ssl) < TLS1_3_VERSION ? 1 : 2;
    }
    OPENSSL_cleanse(&key, sizeof key);
    return ret;
}

RILL_API rill_status rill_tls_config_set_ticket_lifetime(rill_tls_config *cfg, unsigned seconds,
                                                         rill_error *err)
{
    rill_status st = rilli_tls_check_cfg(cfg, "set_ticket_lifetime", err);
    if (st != RILL_OK)
        return st;
    if (seconds > MAX_TICKET_LIFETIME_S)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: ticket lifetime %u s is over 7 days (604800 s, RFC 8446)",
                               seconds);
    cfg->ticket_lifetime_s = seconds;
    return RILL_OK;
}

RILL_API rill_status rill_tls_config_set_ticket_keys(rill_tls_config *cfg, const void *keys,
                                                     size_t len, rill_error *err)
{
    if (!cfg || !keys)
        return rilli_error_set(err, RILL_E_INVALID, 0, "tls: set_ticket_keys: %s is NULL",
                               !cfg ? "config" : "keys");
    if (len == 0 || len % RILL_TLS_TICKET_KEY_LEN != 0 ||
        len / RILL_TLS_TICKET_KEY_LEN > RILLI_TLS_TICKET_KEYS)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: ticket keys must be 1 to %d keys of %d bytes, not %zu bytes",
                               RILLI_TLS_TICKET_KEYS, RILL_TLS_TICKET_KEY_LEN, len);
    pthread_mutex_lock(&cfg->ticket_lock);
    bool off = cfg->ticket_lifetime_s == 0;
    if (!off) {
        const unsigned char *p = keys;
        size_t n = len / RILL_TLS_TICKET_KEY_LEN;
        for (size_t i = 0; i < n; i++, p += RILL_TLS_TICKET_KEY_LEN) {
            struct rilli_ticket_key *k = &cfg->ticket_keys[i];
            memcpy(k->name, p, 16);
            memcpy(k->aes, p + 16, 32);
            memcpy(k->hmac, p + 48, 32);
            k->created_ms = 0;
        }
        for (size_t i = n; i < cfg->nticket_keys; i++)
            OPENSSL_cleanse(&cfg->ticket_keys[i], sizeof cfg->ticket_keys[i]);
        cfg->nticket_keys = n;
        cfg->ticket_keys_from_app = true;
    }
    pthread_mutex_unlock(&cfg->ticket_lock);
    if (off)
        return rilli_error_set(err, RILL_E_INVALID, 0,
                               "tls: set_ticket_keys: tickets are turned off (lifetime 0)");
    return RILL_OK;
}

/* ---- config life ---- */

void rilli_tls_server_ctx_init(rill_tls_config *cfg)
{
    cfg->ticket_lifetime_s = DEFAULT_TICKET_LIFETIME_S;
    cfg->ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL); /* NULL: fetched per use */
    ERR_clear_error();
    SSL_CTX_set_tlsext_ticket_key_evp_cb(cfg->ctx, ticket_cb);
}

void rilli_tls_server_freeze(rill_tls_config *cfg)
{
    if (!cfg->has_cert)
        return;
    if (cfg->ticket_lifetime_s == 0)
        SSL_CTX_set_options(cfg->ctx, SSL_OP_NO_TICKET);
    else
        SSL_CTX_set_timeout(cfg->ctx, 2 * (long)cfg->ticket_lifetime_s);
}

void rilli_tls_server_free(rill_tls_config *cfg)
{
    rilli_tls_certs_free(cfg->certs);
    cfg->certs = NULL;
    for (size_t i = 0; i < cfg->nsources; i++)
        source_clear(&cfg->sources[i]);
    rilli_free(cfg->sources);
    cfg->sources = NULL;
    OPENSSL_cleanse(cfg->ticket_keys, sizeof cfg->ticket_keys);
    EVP_CIPHER_free(cfg->ticket_cipher);
    cfg->ticket_cipher = NULL;
}
