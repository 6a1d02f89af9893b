/* SPDX-License-Identifier: MIT */
/*
 * Throwaway certificates for the demo, made with OpenSSL's API (see democert.h for why this file
 * is the one exception to rillcat's public-API-only rule).
 */
#include "democert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Copy the contents of a memory BIO into a new NUL-terminated buffer. */
static char *bio_text(BIO *bio, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0)
        return NULL;
    char *copy = malloc((size_t)n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    *len = (size_t)n;
    return copy;
}

static char *cert_pem(X509 *cert, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *text = bio && PEM_write_bio_X509(bio, cert) == 1 ? bio_text(bio, len) : NULL;
    BIO_free(bio);
    return text;
}

static char *key_pem(EVP_PKEY *key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *text = bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1
                     ? bio_text(bio, len)
                     : NULL;
    BIO_free(bio);
    return text;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/*
 * A certificate for @p key named @p cn, signed by @p issuer_key; @p issuer NULL makes it
 * self-signed (a CA). @p san is the subjectAltName of a leaf.
 */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       long serial, const char *san)
{
    X509 *cert = X509_new();
    if (!cert)
        return NULL;
    X509_NAME *name = X509_get_subject_name(cert);
    int ok = X509_set_version(cert, 2) == 1 &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), serial) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600) != NULL &&
             X509_set_pubkey(cert, key) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                        0) == 1 &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"rill demo",
                                        -1, -1, 0) == 1 &&
             X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name) == 1;
    X509 *signer = issuer ? issuer : cert;
    if (ok && !issuer) {
        ok = add_ext(cert, signer, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(cert, signer, NID_subject_key_identifier, "hash");
    } else if (ok) {
        ok = add_ext(cert, signer, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(cert, signer, NID_key_usage, "critical,digitalSignature") &&
             add_ext(cert, signer, NID_ext_key_usage, "serverAuth") &&
             add_ext(cert, signer, NID_subject_alt_name, san) &&
             add_ext(cert, signer, NID_subject_key_identifier, "hash") &&
             add_ext(cert, signer, NID_authority_key_identifier, "keyid:always");
    }
    if (ok)
        ok = X509_sign(cert, issuer_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

int democert_make(const char *dns_name, const char *ip, struct democert *out, char *why,
                  size_t why_len)
{
    memset(out, 0, sizeof *out);
    char san[300];
    snprintf(san, sizeof san, "DNS:%s,IP:%s", dns_name, ip);
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *ca = ca_key ? make_cert(ca_key, "rill demo CA", NULL, ca_key, 1, NULL) : NULL;
    X509 *leaf = ca && key ? make_cert(key, dns_name, ca, ca_key, 2, san) : NULL;
    int rc = -1;
    if (leaf) {
        out->ca_pem = cert_pem(ca, &out->ca_len);
        out->cert_pem = cert_pem(leaf, &out->cert_len);
        out->key_pem = key_pem(key, &out->key_len);
        if (out->ca_pem && out->cert_pem && out->key_pem)
            rc = 0;
    }
    if (rc != 0) {
        unsigned long e = ERR_peek_last_error();
        char reason[200] = "out of memory";
        if (e)
            ERR_error_string_n(e, reason, sizeof reason);
        snprintf(why, why_len, "cannot make the demo certificates: %s", reason);
        democert_free(out);
    }
    ERR_clear_error();
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    return rc;
}

void democert_free(struct democert *dc)
{
    free(dc->ca_pem);
    free(dc->cert_pem);
    /* The key is a throwaway, but wipe it like any key. */
    if (dc->key_pem)
        OPENSSL_cleanse(dc->key_pem, dc->key_len);
    free(dc->key_pem);
    memset(dc, 0, sizeof *dc);
}
