/* SPDX-License-Identifier: MIT */
/*
 * TLS peers for the TLS suites, on 127.0.0.1 and a free port:
 *
 *  - rt_sserver: a real `openssl s_server` child process with any arguments (certificates,
 *    -tls1_2 / -tls1_3 / -tls1, -alpn, -Verify, -rev, -www, ...). Its stdin is a socket the
 *    test writes to (in s_server's default echo mode those bytes go to the connected client;
 *    note that without -quiet a line starting with 'q' or 'Q' is a command to s_server), and
 *    its output goes to a file the test can read for diagnostics.
 *  - rt_rawserver: a rill listener in a thread that accepts connections and either says nothing
 *    (rt_silent_start) or writes fixed bytes that are not TLS (rt_garbage_start), holding each
 *    connection open until stopped.
 *
 * Failing to start fails the test with the reason (these tests never skip). Everything still
 * running is stopped by rt_sserver_stop_all() (call it from a teardown) and at process exit.
 */
#ifndef RILL_TEST_SSERVER_H
#define RILL_TEST_SSERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- openssl s_server ---- */

typedef struct rt_sserver rt_sserver;

/*
 * Start `openssl s_server -accept 127.0.0.1:PORT ARGS...` (@p args NULL-terminated) and wait
 * until it listens. A port someone else took meanwhile is retried with another.
 */
rt_sserver *rt_sserver_startv(const char *const *args);

/* The same with the arguments inline: rt_sserver_start("-cert", path, ..., (char *)NULL). */
rt_sserver *rt_sserver_start(const char *arg, ...) __attribute__((sentinel));

uint16_t rt_sserver_port(const rt_sserver *s);
pid_t rt_sserver_pid(const rt_sserver *s);

/*
 * Write @p text to s_server's stdin (echo mode sends it to the connected client) and wait until
 * s_server has read it. Without -quiet, a line "K" or "k" alone makes s_server send a TLS 1.3
 * KeyUpdate (with or without requesting ours), and a line starting with 'q'/'Q' ends the
 * connection / the server.
 */
void rt_sserver_send(rt_sserver *s, const char *text);

/* What s_server printed so far (stdout and stderr; the last 16 KiB). Valid until next call. */
const char *rt_sserver_output(rt_sserver *s);

/* Wait up to @p timeout_ms for @p needle to appear in the output; 1 if it did. */
int rt_sserver_wait_output(rt_sserver *s, const char *needle, int timeout_ms);

/* Kill s_server with SIGKILL now and reap it: its connections end without close_notify. */
void rt_sserver_kill(rt_sserver *s);

/* Stop s_server (if still running), reap it and free @p s. NULL is accepted. */
void rt_sserver_stop(rt_sserver *s);

/* ---- rill listeners that do not speak TLS ---- */

typedef struct rt_rawserver rt_rawserver;

/* Accept connections and never send a byte. */
rt_rawserver *rt_silent_start(void);

/* Accept connections and write @p len bytes of @p bytes to each (copied), then say nothing. */
rt_rawserver *rt_garbage_start(const void *bytes, size_t len);

uint16_t rt_rawserver_port(const rt_rawserver *r);

/* Connections accepted so far. Thread-safe. */
int rt_rawserver_accepted(rt_rawserver *r);

/* Stop the thread, close the connections and the listener, free @p r. NULL is accepted. */
void rt_rawserver_stop(rt_rawserver *r);

/* Stop every s_server and raw server still running (for a teardown fixture). */
void rt_sserver_stop_all(void);

#endif
