/* SPDX-License-Identifier: MIT */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define RT_HAVE_VALGRIND_H 1
#endif
#endif
#ifndef RT_HAVE_VALGRIND_H
#define RT_HAVE_VALGRIND_H 0
#endif

#include "support.h"

#include <dirent.h>
#include <string.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int rt_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* the descriptor of the open directory itself */
}

void rt_tcp_pair(rill_stream **client, rill_stream **server)
{
    rill_error err;
    rill_listener *l = NULL;
    rill_status st = rill_listen("127.0.0.1", 0, NULL, &l, &err);
    ck_assert_msg(st == RILL_OK, "listen: %s", err.msg);
    st = rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, client, &err);
    ck_assert_msg(st == RILL_OK, "connect: %s", err.msg);
    st = rill_accept(l, 5000, server, &err);
    ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
    rill_listener_free(l);
}

void rt_socketpair(int fds[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

void rt_fill_pattern(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

uint64_t rt_checksum(uint64_t h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (h == 0)
        h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- Transports, timing and processes ---- */

int64_t rt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int rt_fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

int rt_ipv6_loopback(char *why, size_t len)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, len, "no IPv6 sockets: %s", strerror(errno));
        return 0;
    }
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (!ok)
        snprintf(why, len, "cannot bind [::1]: %s", strerror(errno));
    close(fd);
    return ok;
}

void rt_tcp_pair_opts(const char *addr, const rill_connect_opts *copts,
                      const rill_listen_opts *lopts, rill_stream **client, rill_stream **server)
{
    rill_error err;
    rill_listener *l = NULL;
    const char *host = addr ? addr : "127.0.0.1";
    rill_status st = rill_listen(host, 0, lopts, &l, &err);
    ck_assert_msg(st == RILL_OK, "listen on %s: %s", host, err.msg);
    st = rill_tcp_connect_addr(host, rill_listener_port(l), copts, client, &err);
    ck_assert_msg(st == RILL_OK, "connect to %s: %s", host, err.msg);
    st = rill_accept(l, 5000, server, &err);
    ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
    rill_listener_free(l);
}

void rt_unix_pair(const char *path, rill_stream **client, rill_stream **server)
{
    rill_error err;
    rill_listener *l = NULL;
    rill_status st = rill_listen_unix(path, NULL, &l, &err);
    ck_assert_msg(st == RILL_OK, "listen on %s: %s", path, err.msg);
    st = rill_unix_connect(path, NULL, client, &err);
    ck_assert_msg(st == RILL_OK, "connect to %s: %s", path, err.msg);
    st = rill_accept(l, 5000, server, &err);
    ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
    rill_listener_free(l);
}

void rt_transfer(rill_stream *from, rill_stream *to, size_t len, uint64_t seed)
{
    unsigned char *out = malloc(len ? len : 1);
    unsigned char *in = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(in);
    rt_fill_pattern(out, len, seed);
    size_t n = 0;
    rill_status st = rill_write_all(from, out, len, &n);
    ck_assert_msg(st == RILL_OK, "write_all: %s: %s", rill_strerror(st), rill_errmsg(from));
    ck_assert_uint_eq(n, len);
    st = rill_flush(from);
    ck_assert_msg(st == RILL_OK, "flush: %s: %s", rill_strerror(st), rill_errmsg(from));
    n = 0;
    st = rill_read_full(to, in, len, &n);
    ck_assert_msg(st == RILL_OK, "read_full: %s after %zu of %zu bytes: %s", rill_strerror(st), n,
                  len, rill_errmsg(to));
    ck_assert_uint_eq(n, len);
    ck_assert_msg(memcmp(in, out, len) == 0, "bytes differ after transfer of %zu", len);
    free(in);
    free(out);
}

int rt_sockopt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    ck_assert_msg(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt(fd %d, %d, %d): %s", fd,
                  level, name, strerror(errno));
    return v;
}

static char watchdog_what[128];
static unsigned watchdog_seconds;

static void watchdog_fire(int sig)
{
    (void)sig;
    char line[192];
    int n = snprintf(line, sizeof line, "watchdog: %s still running after %u s\n", watchdog_what,
                     watchdog_seconds);
    if (n > 0)
        (void)!write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line);
    _exit(3);
}

void rt_watchdog(unsigned seconds, const char *what)
{
    if (seconds == 0) {
        alarm(0);
        return;
    }
    snprintf(watchdog_what, sizeof watchdog_what, "%s", what ? what : "test");
    watchdog_seconds = seconds;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = watchdog_fire;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
    alarm(seconds);
}

void rt_mkdtemp(char *buf, size_t len)
{
    ck_assert_uint_ge(len, 32);
    snprintf(buf, len, "/tmp/rill-test-XXXXXX");
    ck_assert_msg(mkdtemp(buf) != NULL, "mkdtemp: %s", strerror(errno));
}

void rt_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void rt_run_child(void (*fn)(rt_child_report *rep, void *arg), void *arg, unsigned timeout_s,
                  rt_child_result *res)
{
    memset(res, 0, sizeof *res);
    rt_child_report *shared =
        mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_msg(shared != MAP_FAILED, "mmap: %s", strerror(errno));
    memset(shared, 0, sizeof *shared);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
#if RT_HAVE_VALGRIND_H
        /* The child's status is the test's result: keep valgrind's error exit code (a child
         * ends with the parent's heap still allocated) out of it. */
        if (RUNNING_ON_VALGRIND)
            VALGRIND_DISABLE_ERROR_REPORTING;
#endif
        rt_watchdog(timeout_s, "child process");
        fn(shared, arg);
        _exit(0);
    }
    int wstatus = 0;
    pid_t r;
    do {
        r = waitpid(pid, &wstatus, 0);
    } while (r < 0 && errno == EINTR);
    ck_assert_msg(r == pid, "waitpid: %s", strerror(errno));
    res->exited = WIFEXITED(wstatus);
    res->exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    res->term_signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    res->report = *shared;
    munmap(shared, sizeof *shared);
}

rill_stream *rt_fd_end(int *peer)
{
    int fds[2];
    rt_socketpair(fds);
    rill_stream *s = NULL;
    rill_error err;
    rill_status st = rill_fd_new(fds[0], fds[0], RILL_FD_OWN, &s, &err);
    ck_assert_msg(st == RILL_OK, "rill_fd_new: %s", err.msg);
    *peer = fds[1];
    return s;
}

int rt_on_valgrind(void)
{
#if RT_HAVE_VALGRIND_H
    return RUNNING_ON_VALGRIND ? 1 : 0;
#else
    return 0;
#endif
}

void rt_track(void **table, int n, void *p, void (*stop_all)(void), const char *what)
{
    static void (*registered[8])(void);
    int k = 0;
    while (k < 8 && registered[k] && registered[k] != stop_all)
        k++;
    if (k < 8 && !registered[k]) {
        registered[k] = stop_all;
        atexit(stop_all);
    }
    for (int i = 0; i < n; i++) {
        if (table[i] == NULL) {
            table[i] = p;
            return;
        }
    }
    ck_abort_msg("%s: more than %d servers of one kind at once", what, n);
}

void rt_untrack(void **table, int n, const void *p)
{
    for (int i = 0; i < n; i++) {
        if (table[i] == p)
            table[i] = NULL;
    }
}
