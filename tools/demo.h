/* SPDX-License-Identifier: MIT */
/*
 * `rillcat --demo`: a local rill TLS listener and a client talking to it through
 * tcp > tls > buffered > lines, then a STARTTLS upgrade, with both chains, the TLS facts and
 * timings. No network and no files: the certificates are made in memory (democert.c).
 */
#ifndef RILLCAT_DEMO_H
#define RILLCAT_DEMO_H

/** Run the demo; returns the exit status (0 when every step worked). */
int rillcat_demo(void);

#endif
