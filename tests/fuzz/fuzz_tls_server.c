/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tls_server: a TLS server (the embedded test certificate) fed arbitrary "client" bytes
 * through the memory transport (see fuzz_tls.h for the input layout and what is checked).
 * Configs: 0 defaults, TLS 1.2 .. 1.3; 1 TLS 1.2 only; 2 TLS 1.3 only with ALPN h2,http/1.1;
 * 3 asking for an optional client certificate, verified against the same certificate as CA.
 */
#include "fuzz_cert.h"
#include "fuzz_tls.h"

static rill_tls_config *configs[4];

static rill_tls_config *make_config(unsigned which)
{
    rill_tls_config *cfg = NULL;
    rill_error err;
    FZ_CHECK(rill_tls_config_new(&cfg, &err) == RILL_OK, "rill_tls_config_new: %s", err.msg);
    rill_status st = rill_tls_config_set_cert_mem(cfg, fz_cert_pem, sizeof fz_cert_pem - 1,
                                                  fz_key_pem, sizeof fz_key_pem - 1, &err);
    if (st == RILL_OK && which == 1)
        st = rill_tls_config_set_versions(cfg, RILL_TLS_1_2, RILL_TLS_1_2, &err);
    if (st == RILL_OK && which == 2)
        st = rill_tls_config_set_versions(cfg, RILL_TLS_1_3, RILL_TLS_1_3, &err);
    if (st == RILL_OK && which == 2)
        st = rill_tls_config_set_alpn(cfg, "h2,http/1.1", &err);
    if (st == RILL_OK && which == 3)
        st = rill_tls_config_set_ca_mem(cfg, fz_cert_pem, sizeof fz_cert_pem - 1, &err);
    if (st == RILL_OK && which == 3)
        st = rill_tls_config_set_verify_client(cfg, RILL_TLS_CLIENT_AUTH_OPTIONAL, &err);
    FZ_CHECK(st == RILL_OK, "server config %u: %s", which, err.msg);
    return cfg;
}

static rill_status make_server(rill_stream *inner, unsigned which, unsigned flags,
                               rill_stream **out)
{
    if (!configs[which])
        configs[which] = make_config(which);
    return rill_tls_server(inner, configs[which], flags, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_tls_run(data, size, make_server);
}
