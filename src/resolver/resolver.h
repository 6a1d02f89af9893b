/* Internal interface of the resolver rooms (addr.c, ares.c, connect.c). */
#ifndef RILL_RESOLVER_H
#define RILL_RESOLVER_H

#include "internal.h"

struct sockaddr;

/* A bare IP address (no port). */
struct rilli_ip {
    int family; /* 4 or 6 */
    unsigned char bytes[16];
};

/* Parse a numeric IPv4 or IPv6 address ("::1" or "[::1]"); false if not numeric. */
bool rilli_ip_parse(const char *text, struct rilli_ip *ip);

/* Take the address of an AF_INET/AF_INET6 sockaddr; false for other families. */
bool rilli_ip_from_sockaddr(const struct sockaddr *sa, struct rilli_ip *ip);

/*
 * Validate host syntax and port before any query: RILL_E_INVALID with a message for NULL or
 * empty hosts, names over 253 bytes, labels over 63 bytes or empty, spaces, control or non-ASCII
 * bytes, and port 0.
 */
rill_status rilli_host_check(const char *host, uint16_t port, rill_error *err);

/*
 * Build the connect-ordered rill_addr array from @p ips: keep @p family (0: both), interleave
 * the families starting with the first address's, set @p port. RILL_E_DNS when nothing of the
 * wanted family is left (the message names @p host).
 */
rill_status rilli_addrs_build(const char *host, const struct rilli_ip *ips, size_t n, uint16_t port,
                              int family, rill_addr **addrs, size_t *count, rill_error *err);

/* rill_resolve with a family override (0: the context's). */
rill_status rilli_resolve(rill_ctx *ctx, const char *host, uint16_t port, int family,
                          int timeout_ms, rill_addr **addrs, size_t *count, rill_error *err);

#endif
