/* SPDX-License-Identifier: MIT */
/*
 * Certificates for the TLS suites, made at test time with the openssl command line tool (EC
 * P-256 keys, SHA-256 signatures) in a private directory under /tmp:
 *
 *   root "CN=Rill Test Root"  ->  intermediate "CN=Rill Test Intermediate"  ->  the leaves below
 *   untrusted_ca "CN=Rill Untrusted Root" (trusted by nobody)  ->  leaf "untrusted"
 *
 * Every leaf subject is "CN=<name>,O=rill tests". Server leaves carry extendedKeyUsage serverAuth,
 * the client leaf clientAuth. The set is made once per process, on the first call, and removed
 * when the process that made it exits (forked test processes share the parent's set; call
 * rt_certs_prepare() from rill_test_suite() so the set is made once before Check forks).
 */
#ifndef RILL_TEST_CERTS_H
#define RILL_TEST_CERTS_H

#include <stddef.h>

/* The passphrase of rt_certs.client_key_enc. */
#define RT_CERTS_PASSPHRASE "rillpass"

/* The names the leaves are made for. */
#define RT_CERTS_HOST       "good.rill.test"
#define RT_CERTS_WRONG_HOST "other.example"
#define RT_CERTS_WILD       "*.wild.rill.test"
#define RT_CERTS_CLIENT     "client.rill.test"

#define RT_CERTS_PATH_MAX 96

/* One end-entity certificate. */
typedef struct rt_leaf {
    char cert[RT_CERTS_PATH_MAX];  /* the certificate alone (PEM) */
    char key[RT_CERTS_PATH_MAX];   /* its private key, unencrypted (PKCS#8 PEM) */
    char chain[RT_CERTS_PATH_MAX]; /* the certificate, then its issuer (what a server sends) */
    char pin[64];                  /* "sha256//BASE64" of its SubjectPublicKeyInfo */
} rt_leaf;

typedef struct rt_certs {
    char dir[32];                         /* "/tmp/rill-test-XXXXXX" */
    char ca[RT_CERTS_PATH_MAX];           /* the root: the trust anchor for every test */
    char intermediate[RT_CERTS_PATH_MAX]; /* signed by the root, signs the leaves */
    char untrusted_ca[RT_CERTS_PATH_MAX]; /* a second root that no config trusts */
    /* CRLs of the intermediate (revoking "revoked") and of the root (revoking nothing), both in
     * one PEM file, so that checking every certificate of a chain finds a CRL for each issuer. */
    char crl[RT_CERTS_PATH_MAX];
    char client_key_enc[RT_CERTS_PATH_MAX]; /* client.key encrypted (AES-256) with the passphrase */

    /* SAN DNS:good.rill.test, DNS:localhost, IP:127.0.0.1, IP:::1; valid for ten years. */
    rt_leaf good;
    rt_leaf expired;  /* as good, valid 2000-01-01T00:00:00Z .. 2001-01-01T00:00:00Z */
    rt_leaf notyet;   /* as good, valid 2090-01-01T00:00:00Z .. 2091-01-01T00:00:00Z */
    rt_leaf revoked;  /* as good, listed in the intermediate's CRL */
    rt_leaf wrong;    /* SAN DNS:other.example only (CN other.example) */
    rt_leaf cnonly;   /* CN good.rill.test and no subjectAltName at all */
    rt_leaf wildcard; /* SAN DNS:*.wild.rill.test only */
    rt_leaf ipnosan;  /* SAN DNS:good.rill.test only: no IP address */
    /* Self-signed, SAN as good; chain is the certificate alone. */
    rt_leaf selfsigned;
    /* Signed by untrusted_ca, SAN as good; chain is the leaf, then untrusted_ca. */
    rt_leaf untrusted;
    /* extendedKeyUsage clientAuth, SAN DNS:client.rill.test; key also in client_key_enc. */
    rt_leaf client;
    /* good's certificate with a signature that does not verify (one byte changed); same key. */
    rt_leaf badsig;
} rt_certs;

/*
 * The certificate set of this process, made on the first call (about half a second). Fails the
 * test (ck_abort) with openssl's messages when the set cannot be made. Call it from tests only.
 */
const rt_certs *rt_certs_get(void);

/*
 * Make the set now without failing anything: for rill_test_suite(), which runs before Check
 * forks (so every test process inherits the same set) and outside any test. Returns NULL and
 * writes the reason into @p why (may be NULL) on failure; rt_certs_get() then tries again and
 * reports.
 */
const rt_certs *rt_certs_prepare(char *why, size_t len);

/*
 * Read a whole file into a new NUL-terminated buffer (caller frees with free()); *len (may be
 * NULL) gets its length without the NUL. Fails the test if the file cannot be read.
 */
char *rt_file_read(const char *path, size_t *len);

/* Write @p len bytes to a new file @p path (mode 0600); fails the test on error. */
void rt_file_write(const char *path, const void *data, size_t len);

#endif
