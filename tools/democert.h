/* SPDX-License-Identifier: MIT */
/*
 * Throwaway certificates for `rillcat --demo`, made in memory with OpenSSL.
 *
 * This is the only part of rillcat that calls OpenSSL directly: rill's public API loads
 * certificates but does not make them, and the demo must run with no files and no setup.
 * Everything else in rillcat uses rill.h only.
 */
#ifndef RILLCAT_DEMOCERT_H
#define RILLCAT_DEMOCERT_H

#include <stddef.h>

/** PEM text of a CA, a server certificate it signed, and that certificate's private key. */
struct democert {
    char *ca_pem; /**< the CA certificate: the demo client's only trust anchor */
    size_t ca_len;
    char *cert_pem; /**< the server certificate (EC P-256, SHA-256, valid for one day) */
    size_t cert_len;
    char *key_pem; /**< its private key, unencrypted PKCS#8 */
    size_t key_len;
};

/**
 * Make a CA "CN=rill demo CA" and a server certificate for DNS name @p dns_name and IP address
 * @p ip (both in its subjectAltName). Returns 0, or -1 with the reason in @p why.
 * Ownership: release with democert_free().
 */
int democert_make(const char *dns_name, const char *ip, struct democert *out, char *why,
                  size_t why_len);

/** Free the PEM buffers of @p dc (which may be partly filled or zeroed). */
void democert_free(struct democert *dc);

#endif
