/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tls_client: a TLS client fed arbitrary "server" bytes through the memory transport
 * (see fuzz_tls.h for the input layout and what is checked). Configs: 0 insecure (no chain
 * check), TLS 1.2 .. 1.3; 1 insecure, TLS 1.2 only; 2 insecure, TLS 1.3 only, ALPN h2,http/1.1;
 * 3 verifying against the embedded test certificate as CA, with a pin (a certificate the fuzzer
 * sends goes through chain, name and pin checks, and fails them).
 */
#include "fuzz_cert.h"
#include "fuzz_tls.h"

static rill_tls_config *configs[4];

static rill_tls_config *make_config(unsigned which)
{
    rill_tls_config *cfg = NULL;
    rill_error err;
    FZ_CHECK(rill_tls_config_new(&cfg, &err) == RILL_OK, "rill_tls_config_new: %s", err.msg);
    rill_status st = RILL_OK;
    if (which != 3)
        st = rill_tls_config_insecure_noverifycert(cfg, &err);
    if (st == RILL_OK && which == 1)
        st = rill_tls_config_set_versions(cfg, RILL_TLS_1_2, RILL_TLS_1_2, &err);
    if (st == RILL_OK && which == 2)
        st = rill_tls_config_set_versions(cfg, RILL_TLS_1_3, RILL_TLS_1_3, &err);
    if (st == RILL_OK && which == 2)
        st = rill_tls_config_set_alpn(cfg, "h2,http/1.1", &err);
    if (st == RILL_OK && which == 3)
        st = rill_tls_config_set_ca_mem(cfg, fz_cert_pem, sizeof fz_cert_pem - 1, &err);
    if (st == RILL_OK && which == 3)
        st = rill_tls_config_add_pin(cfg, "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                                     &err);
    FZ_CHECK(st == RILL_OK, "client config %u: %s", which, err.msg);
    return cfg;
}

static rill_status make_client(rill_stream *inner, unsigned which, unsigned flags,
                               rill_stream **out)
{
    if (!configs[which])
        configs[which] = make_config(which);
    return rill_tls_client(inner, configs[which], "fuzz.rill.test", flags, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_tls_run(data, size, make_client);
}
