/* SPDX-License-Identifier: MIT */
/*
 * The certificate and key of the TLS fuzz targets: a self-signed EC P-256 certificate for
 * fuzz.rill.test (and IP 127.0.0.1), valid until 2126, made with
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500
 *     -subj /CN=fuzz.rill.test -addext subjectAltName=DNS:fuzz.rill.test,IP:127.0.0.1
 * It is the server's identity in fuzz_tls_server and the trusted CA of the verifying client
 * config in fuzz_tls_client. The same pair made the captured seeds. A test key: never trust it.
 */
#ifndef RILL_FUZZ_CERT_H
#define RILL_FUZZ_CERT_H

static const char fz_cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBqjCCAVCgAwIBAgIUcbp1Z2nrUl6VTOEZsup1kBtqCxIwCgYIKoZIzj0EAwIw\n"
    "GTEXMBUGA1UEAwwOZnV6ei5yaWxsLnRlc3QwIBcNMjYxMTI0MTcyMjE3WhgPMjEy\n"
    "NjEwMzExNzIyMTdaMBkxFzAVBgNVBAMMDmZ1enoucmlsbC50ZXN0MFkwEwYHKoZI\n"
    "zj0CAQYIKoZIzj0DAQcDQgAEP4kdYge2rTcchOEy5JRtFsZJ2MHkZgMuakSQfiRl\n"
    "OfDqNcMJvoNaIjwyq80WyQoA9BYv5TQtj0+JjhYbsiDWDaN0MHIwHQYDVR0OBBYE\n"
    "FFLaUpAIIUxdKJO6Ph9jgjpB1iZ5MB8GA1UdIwQYMBaAFFLaUpAIIUxdKJO6Ph9j\n"
    "gjpB1iZ5MA8GA1UdEwEB/wQFMAMBAf8wHwYDVR0RBBgwFoIOZnV6ei5yaWxsLnRl\n"
    "c3SHBH8AAAEwCgYIKoZIzj0EAwIDSAAwRQIgW7RMrYEshknt+1FK3292X5IXQbDC\n"
    "xFcjmopT7qvBRakCIQDPg7PS/1CYdpb5OYZKOlPrIjgn0s1/IlsPq5Qm4J1gJQ==\n"
    "-----END CERTIFICATE-----\n";

static const char fz_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn7sLM6ksNI4Lwfxv\n"
    "2/JoExEazGp295D0JFPFfN625bmhRANCAAQ/iR1iB7atNxyE4TLklG0WxknYweRm\n"
    "Ay5qRJB+JGU58Oo1wwm+g1oiPDKrzRbJCgD0Fi/lNC2PT4mOFhuyINYN\n"
    "-----END PRIVATE KEY-----\n";

#endif
