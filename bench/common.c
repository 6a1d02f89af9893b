/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void bench_check(rill_status st, const char *what, const rill_stream *s)
{
    if (st != RILL_OK)
        bench_die("%s: %s (%s)", what, rill_strerror(st), s ? rill_errmsg(s) : "");
}

int bench_pinning = 1;
int bench_verbose = 0;

int bench_pin(int cpu)
{
    if (!bench_pinning)
        return 0;
    /* the process's CPUs, read before the first pinning narrows them (main thread first) */
    static cpu_set_t avail;
    static int known;
    if (!known) {
        if (sched_getaffinity(0, sizeof avail, &avail) != 0)
            CPU_ZERO(&avail);
        known = 1;
    }
    if (CPU_COUNT(&avail) < 2)
        return 0;
    int want = cpu % CPU_COUNT(&avail), seen = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &avail))
            continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
        }
    }
    return 0;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        bench_die("setsockopt TCP_NODELAY: %s", strerror(errno));
}

int bench_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0)
        bench_die("bind/listen: %s", strerror(errno));
    socklen_t sl = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        bench_die("getsockname: %s", strerror(errno));
    *port = ntohs(sa.sin_port);
    return fd;
}

int bench_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_die("socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        bench_die("connect to 127.0.0.1:%u: %s", (unsigned)port, strerror(errno));
    set_nodelay(fd);
    return fd;
}

int bench_accept(int listen_fd)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        bench_die("accept: %s", strerror(errno));
    set_nodelay(fd);
    return fd;
}

void bench_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            bench_die("write: %s", strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_max(const double *v, size_t n)
{
    double m = v[0];
    for (size_t i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

double bench_paired_ratio(const double *a, const double *b, size_t n)
{
    double r[100];
    if (n == 0 || n > 100)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (a[i] <= 0 || b[i] <= 0)
            return -1;
        r[i] = a[i] / b[i];
    }
    return bench_median(r, n);
}

void bench_paired_range(const double *a, const double *b, size_t n, double *lo, double *hi)
{
    *lo = *hi = -1;
    for (size_t i = 0; i < n; i++) {
        if (a[i] <= 0 || b[i] <= 0) {
            *lo = *hi = -1;
            return;
        }
        double r = a[i] / b[i];
        *lo = *lo < 0 || r < *lo ? r : *lo;
        *hi = r > *hi ? r : *hi;
    }
}

uint64_t bench_parse_count(const char *arg, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024;
    else if (*end == 'M' || *end == 'm')
        mult = 1024 * 1024;
    else if (*end == 'G' || *end == 'g')
        mult = 1024 * 1024 * 1024;
    if (mult != 1)
        end++;
    if (errno != 0 || end == arg || *end != '\0' || v == 0 || v > UINT64_MAX / mult)
        bench_die("bad %s: \"%s\"", what, arg);
    return (uint64_t)v * mult;
}

void bench_print_table(const char *title, const char *unit, const char *ratio_label,
                       const struct bench_row *rows, size_t n)
{
    printf("\n%s\n", title);
    printf("%-44s %11s %11s %9s %7s %-6s %s\n", "name", unit, "median", ratio_label, "goal",
           "result", "ratio min-max");
    for (size_t i = 0; i < n; i++) {
        const struct bench_row *r = &rows[i];
        char best[24] = "-", med[24] = "-", ratio[16] = "-", goal[16] = "", verdict[8] = "";
        char range[40] = "";
        if (r->best >= 0)
            snprintf(best, sizeof best, "%.1f", r->best);
        if (r->median >= 0)
            snprintf(med, sizeof med, "%.1f", r->median);
        if (r->ratio >= 0)
            snprintf(ratio, sizeof ratio, "%.3f", r->ratio);
        if (r->goal > 0 && r->ratio >= 0) {
            snprintf(goal, sizeof goal, ">=%.2f", r->goal);
            snprintf(verdict, sizeof verdict, "%s", r->ratio >= r->goal ? "PASS" : "MISS");
        }
        if (r->lo > 0 && r->hi > 0)
            snprintf(range, sizeof range, "%.3f-%.3f", r->lo, r->hi);
        printf("%-44s %11s %11s %9s %7s %-6s %s\n", r->name, best, med, ratio, goal, verdict,
               range);
    }
    fflush(stdout);
}

/* ---- a counting allocator ---- */

/*
 * Every block carries a header with its size and whether it was counted, so a block is
 * subtracted only if it was added. Either every thread counts (bench_count_allocator_install)
 * or only the threads that turned counting on (bench_count_per_thread_install): then the
 * allocations of a peer thread in the same process stay out.
 */
struct block_header {
    size_t size;
    bool counted;
};
#define HEADER_SIZE sizeof(max_align_t)
_Static_assert(sizeof(struct block_header) <= HEADER_SIZE, "block header too large");

static size_t live_bytes;
static bool count_all;
static _Thread_local bool thread_counts;

static void *count_alloc(size_t n)
{
    unsigned char *p = malloc(n + HEADER_SIZE);
    if (!p)
        return NULL;
    struct block_header h = { n, count_all || thread_counts };
    memcpy(p, &h, sizeof h);
    if (h.counted)
        __atomic_add_fetch(&live_bytes, n, __ATOMIC_RELAXED);
    return p + HEADER_SIZE;
}

static void count_free(void *q)
{
    if (!q)
        return;
    unsigned char *p = (unsigned char *)q - HEADER_SIZE;
    struct block_header h;
    memcpy(&h, p, sizeof h);
    if (h.counted)
        __atomic_sub_fetch(&live_bytes, h.size, __ATOMIC_RELAXED);
    free(p);
}

static void *count_realloc(void *q, size_t n)
{
    if (!q)
        return count_alloc(n);
    if (n == 0) {
        count_free(q);
        return NULL;
    }
    unsigned char *p = (unsigned char *)q - HEADER_SIZE;
    struct block_header old;
    memcpy(&old, p, sizeof old);
    unsigned char *r = realloc(p, n + HEADER_SIZE);
    if (!r)
        return NULL;
    struct block_header h = { n, old.counted };
    memcpy(r, &h, sizeof h);
    if (h.counted) {
        __atomic_sub_fetch(&live_bytes, old.size, __ATOMIC_RELAXED);
        __atomic_add_fetch(&live_bytes, n, __ATOMIC_RELAXED);
    }
    return r + HEADER_SIZE;
}

void bench_count_allocator_install(void)
{
    count_all = true;
    rill_set_allocator(count_alloc, count_realloc, count_free);
}

void bench_count_per_thread_install(void)
{
    count_all = false;
    rill_set_allocator(count_alloc, count_realloc, count_free);
}

void bench_count_this_thread(bool on)
{
    thread_counts = on;
}

size_t bench_live_bytes(void)
{
    return __atomic_load_n(&live_bytes, __ATOMIC_RELAXED);
}

void *bench_ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return count_alloc(n);
}

void *bench_ossl_realloc(void *q, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return count_realloc(q, n);
}

void bench_ossl_free(void *q, const char *file, int line)
{
    (void)file;
    (void)line;
    count_free(q);
}

/* ---- /proc/net counters ---- */

unsigned long long bench_proc_net_counter(const char *path, const char *section, const char *name)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char head[8192], vals[8192];
    unsigned long long result = 0;
    size_t slen = strlen(section);
    while (fgets(head, sizeof head, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(head, section, slen) != 0)
            continue;
        /* the column named @p name in the header line gives the position */
        char *hs = NULL, *vs = NULL;
        char *h = strtok_r(head, " \n", &hs), *v = strtok_r(vals, " \n", &vs);
        while (h && v) {
            if (strcmp(h, name) == 0) {
                result = strtoull(v, NULL, 10);
                break;
            }
            h = strtok_r(NULL, " \n", &hs);
            v = strtok_r(NULL, " \n", &vs);
        }
        break;
    }
    fclose(f);
    return result;
}

/* ---- certificates for the TLS benchmarks ---- */

void bench_make_certs(char *dir, size_t dir_len, const char *name, int rsa)
{
    snprintf(dir, dir_len, "/tmp/bench_tls.XXXXXX");
    if (!mkdtemp(dir))
        bench_die("mkdtemp: %s", strerror(errno));
    char cmd[1600];
    const char *key = rsa ? "rsa:2048" : "ec -pkeyopt ec_paramgen_curve:P-256";
    snprintf(cmd, sizeof cmd,
             "cd '%s' && exec >/dev/null 2>&1 && "
             "openssl req -x509 -newkey %s -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj '/CN=rill bench CA' "
             "-addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign && "
             "openssl req -new -newkey %s -nodes "
             "-keyout leaf.key -out leaf.csr -subj '/CN=%s' && "
             "printf 'subjectAltName=DNS:%s,IP:127.0.0.1\\n"
             "basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
             "extendedKeyUsage=serverAuth\\n' > leaf.ext && "
             "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 "
             "-extfile leaf.ext -out leaf.pem",
             dir, key, key, name, name);
    if (system(cmd) != 0)
        bench_die("making certificates with the openssl command failed (in %s)", dir);
}

void bench_remove_certs(const char *dir)
{
    static const char *const files[] = { "ca.pem",   "ca.key",   "leaf.pem",
                                         "leaf.key", "leaf.csr", "leaf.ext" };
    char path[128];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}
