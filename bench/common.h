/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the benchmarks: raw loopback sockets for the baselines (and for the peer
 * that feeds or drains both sides of a comparison), a monotonic clock, statistics over repeated
 * runs and the printed table. Nothing here is timed itself.
 */
#ifndef RILL_BENCH_COMMON_H
#define RILL_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rill.h"

/* Print a message to stderr and exit with status 1 (benchmarks stop on the first failure). */
void bench_die(const char *fmt, ...) RILL_PRINTF(1, 2) __attribute__((noreturn));

/* Exit with a message naming @p what when a rill call failed. */
void bench_check(rill_status st, const char *what, const rill_stream *s);

/* Monotonic clock in seconds. */
double bench_now(void);

/* A raw listening TCP socket on 127.0.0.1 with a free port (stored in *port). */
int bench_listen(uint16_t *port);

/*
 * A raw, blocking TCP connection to 127.0.0.1:@p port. TCP_NODELAY is set on it and on
 * accepted sockets, as rill does by default, so both sides of a comparison use the same socket
 * options.
 */
int bench_connect(uint16_t port);
int bench_accept(int listen_fd);

/*
 * Pin the calling thread to CPU @p cpu (modulo the CPUs available) when pinning is on; the
 * benchmarks pin the measured thread and its peer to different CPUs so that every variant runs
 * with the same placement. Returns 0 when pinning is off or failed.
 */
extern int bench_pinning;
int bench_pin(int cpu);

/* When set (-v), every single run's figure is printed to stderr as it completes. */
extern int bench_verbose;

/* write(2) all of @p buf, exiting on error. */
void bench_write_all(int fd, const void *buf, size_t len);

/* Median and maximum of @p n values (the array is sorted in place by bench_median). */
double bench_median(double *v, size_t n);
double bench_max(const double *v, size_t n);

/*
 * Median of the per-run ratios a[i] / b[i] (at most 100 runs). Run i of a and run i of b ran
 * next to each other, so drifting interference from other work on the machine cancels out of
 * each ratio; the median then drops the runs it hit anyway. -1 if any figure is not positive.
 */
double bench_paired_ratio(const double *a, const double *b, size_t n);

/* The lowest and highest of those per-run ratios (both -1 under the same conditions). */
void bench_paired_range(const double *a, const double *b, size_t n, double *lo, double *hi);

/* Parse a positive integer argument (with optional K, M, G binary suffix) or exit. */
uint64_t bench_parse_count(const char *arg, const char *what);

/*
 * One row of the printed table: the best and the median of the runs, a ratio computed by the
 * caller and an optional goal for it. Negative figures print "-"; goal <= 0 prints no goal.
 * lo and hi, when both are positive, are the range of the per-run ratios (printed after the
 * result): zero the rows of a table that does not fill them.
 */
struct bench_row {
    char name[64];
    double best;
    double median;
    double ratio;
    double goal;
    double lo;
    double hi;
};

/*
 * Print the rows under a title; @p unit heads the column of best figures ("MB/s",
 * "M lines/s"), followed by the medians, the ratios, the goals and PASS/MISS.
 */
void bench_print_table(const char *title, const char *unit, const char *ratio_label,
                       const struct bench_row *rows, size_t n);

/*
 * A counting allocator for rill_set_allocator(): each block carries its size in a header, so
 * frees are subtracted exactly. bench_count_allocator_install counts the blocks of every
 * thread; bench_count_per_thread_install only those allocated while the allocating thread has
 * bench_count_this_thread(true) (a peer thread in the same process stays out).
 */
void bench_count_allocator_install(void);
void bench_count_per_thread_install(void);
void bench_count_this_thread(bool on);
/* Bytes held now through the counting allocator (counted blocks only). */
size_t bench_live_bytes(void);
/* The same allocator for OpenSSL's CRYPTO_set_mem_functions (its signatures). */
void *bench_ossl_malloc(size_t n, const char *file, int line);
void *bench_ossl_realloc(void *q, size_t n, const char *file, int line);
void bench_ossl_free(void *q, const char *file, int line);

/*
 * The counter @p name of the @p section line pair ("TcpExt:", "Udp: ") of a /proc/net table
 * (@p path: "/proc/net/netstat", "/proc/net/snmp") of this network namespace; 0 if absent.
 */
unsigned long long bench_proc_net_counter(const char *path, const char *section, const char *name);

/*
 * Certificates for a TLS benchmark, made with the openssl command in a fresh temporary directory
 * (@p dir, at least 64 bytes): ca.pem (a CA) and leaf.pem / leaf.key for DNS:@p name and
 * IP:127.0.0.1, EC P-256 or, with @p rsa, RSA-2048. Exits on failure. bench_remove_certs()
 * deletes them and the directory.
 */
void bench_make_certs(char *dir, size_t dir_len, const char *name, int rsa);
void bench_remove_certs(const char *dir);

#endif
