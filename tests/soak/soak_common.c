/* SPDX-License-Identifier: MIT */
/* Shared helpers of the soak programs; see soak.h. */
#include "soak.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "certs.h"
#include "support.h"

const char *soak_prog = "soak";

static unsigned failures;

void soak_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
    printf("%s: FAIL: %s\n", soak_prog, msg);
    fflush(stdout);
}

unsigned soak_failures(void)
{
    return __atomic_load_n(&failures, __ATOMIC_RELAXED);
}

void soak_die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("%s: FAIL: %s\n", soak_prog, msg);
    fflush(stdout);
    exit(1);
}

int64_t soak_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int soak_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

uint64_t soak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long long size = 0, resident = 0;
    int got = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (got != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

unsigned long soak_parse_count(const char *text, const char *what)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || v == 0)
        soak_die("bad %s \"%s\": want a positive number", what, text);
    return v;
}

unsigned long soak_raise_nofile(unsigned long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        soak_die("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            soak_die("setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)rl.rlim_max,
                     strerror(errno));
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        soak_die("RLIMIT_NOFILE hard limit is %llu, %lu descriptors are needed "
                 "(raise it with ulimit -Hn as root)",
                 (unsigned long long)rl.rlim_cur, need);
    return rl.rlim_cur == RLIM_INFINITY ? (unsigned long)-1 : (unsigned long)rl.rlim_cur;
}

/* splitmix64: a good 64-bit mix, so that every word of the stream depends on seed and index. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void soak_pattern(void *buf, size_t len, uint64_t seed, uint64_t offset)
{
    unsigned char *p = buf;
    uint64_t key = mix64(seed);
    while (len > 0) {
        uint64_t word = mix64(key ^ (offset / 8));
        unsigned shift = (unsigned)(offset % 8);
        size_t take = 8 - shift;
        if (take > len)
            take = len;
        for (size_t i = 0; i < take; i++)
            p[i] = (unsigned char)(word >> (8 * (shift + i)));
        p += take;
        offset += take;
        len -= take;
    }
}

uint64_t soak_checksum(uint64_t h, const void *buf, size_t len)
{
    return rt_checksum(h, buf, len);
}

void soak_put64(unsigned char out[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

uint64_t soak_get64(const unsigned char in[8])
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | in[i];
    return v;
}

void soak_tls_configs(rill_tls_config **client, rill_tls_config **server)
{
    char why[1400];
    const rt_certs *c = rt_certs_prepare(why, sizeof why);
    if (!c)
        soak_die("cannot make the test certificates: %s", why);
    rill_error err;
    rill_tls_config *cc = NULL, *sc = NULL;
    if (rill_tls_config_new(&cc, &err) != RILL_OK ||
        rill_tls_config_set_ca_file(cc, c->ca, &err) != RILL_OK ||
        rill_tls_config_new(&sc, &err) != RILL_OK ||
        rill_tls_config_set_cert_file(sc, c->good.chain, c->good.key, &err) != RILL_OK)
        soak_die("TLS config: %s", err.msg);
    *client = cc;
    *server = sc;
}

/* The counting allocator: a header before each block keeps its size. */
struct heap_hdr {
    size_t size;
    max_align_t align;
};

static uint64_t heap_bytes, heap_blocks;

static void *heap_alloc(size_t n)
{
    struct heap_hdr *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->size = n;
    __atomic_add_fetch(&heap_bytes, n, __ATOMIC_RELAXED);
    __atomic_add_fetch(&heap_blocks, 1, __ATOMIC_RELAXED);
    return h + 1;
}

static void heap_free(void *p)
{
    if (!p)
        return;
    struct heap_hdr *h = (struct heap_hdr *)p - 1;
    __atomic_sub_fetch(&heap_bytes, h->size, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&heap_blocks, 1, __ATOMIC_RELAXED);
    free(h);
}

static void *heap_realloc(void *p, size_t n)
{
    if (!p)
        return heap_alloc(n);
    struct heap_hdr *h = (struct heap_hdr *)p - 1;
    size_t old = h->size;
    struct heap_hdr *q = realloc(h, sizeof *q + n);
    if (!q)
        return NULL;
    q->size = n;
    __atomic_add_fetch(&heap_bytes, n, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&heap_bytes, old, __ATOMIC_RELAXED);
    return q + 1;
}

void soak_count_rill_heap(void)
{
    rill_set_allocator(heap_alloc, heap_realloc, heap_free);
}

void soak_rill_heap(uint64_t *bytes, uint64_t *blocks)
{
    *bytes = __atomic_load_n(&heap_bytes, __ATOMIC_RELAXED);
    *blocks = __atomic_load_n(&heap_blocks, __ATOMIC_RELAXED);
}

const char *soak_mib(char *buf, size_t len, uint64_t bytes)
{
    snprintf(buf, len, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}
