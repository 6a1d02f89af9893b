/* SPDX-License-Identifier: MIT */
/*
 * TLS peers for the TLS suites: openssl s_server as a child process, and rill listeners in a
 * thread that accept and stay silent or answer with bytes that are not TLS. See sserver.h.
 */
#include "sserver.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define MAX_LIVE    16
#define MAX_ARGS    64
#define OUTPUT_KEEP 16384

static const char *const openssl_paths[] = { "/usr/bin/openssl", "/bin/openssl",
                                             "/usr/local/bin/openssl" };

struct rt_sserver {
    pid_t pid; /* 0 once reaped */
    uint16_t port;
    int stdin_fd;  /* our end of the socket pair that is s_server's stdin */
    int output_fd; /* s_server's stdout and stderr; the file is already unlinked */
    char output[OUTPUT_KEEP + 1];
};

#define RAW_CONNS 16

struct rt_rawserver {
    rill_listener *listener;
    uint16_t port;
    int stop_fds[2];
    pthread_t thread;
    pthread_mutex_t lock;
    int accepted;
    unsigned char *bytes; /* NULL: silent */
    size_t len;
    rill_stream *conns[RAW_CONNS];
};

static rt_sserver *live_sservers[MAX_LIVE];
static rt_rawserver *live_raw[MAX_LIVE];

static void track(void **table, void *p)
{
    rt_track(table, MAX_LIVE, p, rt_sserver_stop_all, "sserver harness");
}

static void untrack(void **table, const void *p)
{
    rt_untrack(table, MAX_LIVE, p);
}

/* ---- openssl s_server ---- */

static const char *find_openssl(void)
{
    for (size_t i = 0; i < sizeof openssl_paths / sizeof openssl_paths[0]; i++) {
        if (access(openssl_paths[i], X_OK) == 0)
            return openssl_paths[i];
    }
    return NULL;
}

/* A port that was free a moment ago on 127.0.0.1 (bound to 0, read back, closed). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof sa;
    ck_assert_msg(getsockname(fd, (struct sockaddr *)&sa, &len) == 0, "getsockname: %s",
                  strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

/* Whether process @p pid holds the socket with inode @p inode. */
static int pid_has_socket(pid_t pid, unsigned long inode)
{
    char dir[32], want[48], link[320], target[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            found = strcmp(target, want) == 0;
        }
    }
    closedir(d);
    return found;
}

/*
 * Whether @p pid listens on 127.0.0.1:@p port: a LISTEN entry in /proc/net/tcp whose socket
 * the process holds. This needs no connection, which s_server would count as a client.
 */
static int is_listening(pid_t pid, uint16_t port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned addr, lport, state;
        unsigned long inode;
        if (sscanf(line, " %*d: %8X:%4X %*X:%*X %X %*X:%*X %*X:%*X %*X %*u %*u %lu", &addr, &lport,
                   &state, &inode) != 4)
            continue;
        if (lport == port && state == 0x0A && inode != 0)
            found = pid_has_socket(pid, inode);
    }
    fclose(f);
    return found;
}

static void reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    int64_t end = rt_now_us() + 2000000;
    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        if (rt_now_us() > end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            return;
        }
        usleep(1000);
    }
}

const char *rt_sserver_output(rt_sserver *s)
{
    off_t size = lseek(s->output_fd, 0, SEEK_END);
    off_t from = size > OUTPUT_KEEP ? size - OUTPUT_KEEP : 0;
    ssize_t n = pread(s->output_fd, s->output, OUTPUT_KEEP, from);
    s->output[n > 0 ? (size_t)n : 0] = '\0';
    return s->output;
}

/*
 * Start s_server on @p port. 1: listening; 0: it exited because the port was taken (try
 * another); fails the test otherwise.
 */
static int launch(rt_sserver *s, const char *exe, uint16_t port, const char *const *args)
{
    char accept_arg[32];
    snprintf(accept_arg, sizeof accept_arg, "127.0.0.1:%u", (unsigned)port);
    char *argv[MAX_ARGS + 4];
    size_t n = 0;
    argv[n++] = "openssl";
    argv[n++] = "s_server";
    argv[n++] = "-accept";
    argv[n++] = accept_arg;
    for (size_t i = 0; args && args[i]; i++) {
        ck_assert_msg(n < MAX_ARGS + 3, "sserver harness: more than %d arguments", MAX_ARGS);
        argv[n++] = (char *)(uintptr_t)args[i];
    }
    argv[n] = NULL;

    char dir[64], out_path[96];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(out_path, sizeof out_path, "%s/s_server.out", dir);
    s->output_fd = open(out_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ck_assert_msg(s->output_fd >= 0, "sserver harness: %s: %s", out_path, strerror(errno));
    unlink(out_path);
    rmdir(dir);

    int sp[2];
    ck_assert_msg(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0, "socketpair: %s",
                  strerror(errno));
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (dup2(sp[1], 0) < 0 || dup2(s->output_fd, 1) < 0 || dup2(s->output_fd, 2) < 0)
            _exit(127);
        execv(exe, argv);
        _exit(127);
    }
    close(sp[1]);
    s->stdin_fd = sp[0];
    s->pid = pid;

    int64_t end = rt_now_us() + 10000000;
    while (rt_now_us() < end) {
        int wstatus = 0;
        if (waitpid(pid, &wstatus, WNOHANG) == pid) {
            s->pid = 0;
            break;
        }
        if (is_listening(pid, port))
            return 1;
        usleep(2000);
    }
    const char *text = rt_sserver_output(s);
    int exited = s->pid == 0;
    close(s->stdin_fd);
    s->stdin_fd = -1;
    if (exited && strstr(text, "in use") != NULL) {
        close(s->output_fd);
        s->output_fd = -1;
        return 0;
    }
    reap(s->pid);
    s->pid = 0;
    ck_abort_msg("sserver harness: openssl s_server on %s %s: %s", accept_arg,
                 exited ? "exited at start-up" : "did not listen within 10 s", text);
    return 0;
}

rt_sserver *rt_sserver_startv(const char *const *args)
{
    const char *exe = find_openssl();
    ck_assert_msg(exe != NULL, "sserver harness: openssl not found (/usr/bin/openssl)");
    rt_sserver *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    s->stdin_fd = -1;
    s->output_fd = -1;
    track((void **)live_sservers, s);
    for (int attempt = 0; attempt < 10; attempt++) {
        uint16_t port = free_port();
        if (launch(s, exe, port, args)) {
            s->port = port;
            return s;
        }
    }
    ck_abort_msg("sserver harness: s_server found every port taken (10 tries)");
    return NULL;
}

rt_sserver *rt_sserver_start(const char *arg, ...)
{
    const char *args[MAX_ARGS + 1];
    size_t n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL; a = va_arg(ap, const char *)) {
        ck_assert_msg(n < MAX_ARGS, "sserver harness: more than %d arguments", MAX_ARGS);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    return rt_sserver_startv(args);
}

uint16_t rt_sserver_port(const rt_sserver *s)
{
    return s->port;
}

pid_t rt_sserver_pid(const rt_sserver *s)
{
    return s->pid;
}

void rt_sserver_send(rt_sserver *s, const char *text)
{
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t w = send(s->stdin_fd, text, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        ck_assert_msg(w > 0, "sserver harness: writing to s_server's stdin: %s", strerror(errno));
        text += w;
        len -= (size_t)w;
    }
    /* Wait until s_server has read it all, so lines sent one by one arrive one by one (s_server
     * takes a read that starts with a command letter as that command, dropping the rest). */
    int64_t end = rt_now_us() + 10000000;
    int queued = 1;
    while (ioctl(s->stdin_fd, SIOCOUTQ, &queued) == 0 && queued > 0 && rt_now_us() < end)
        usleep(1000);
}

int rt_sserver_wait_output(rt_sserver *s, const char *needle, int timeout_ms)
{
    int64_t end = rt_now_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        if (strstr(rt_sserver_output(s), needle) != NULL)
            return 1;
        if (rt_now_us() >= end)
            return 0;
        usleep(2000);
    }
}

void rt_sserver_kill(rt_sserver *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        s->pid = 0;
    }
}

void rt_sserver_stop(rt_sserver *s)
{
    if (!s)
        return;
    untrack((void **)live_sservers, s);
    reap(s->pid);
    if (s->stdin_fd >= 0)
        close(s->stdin_fd);
    if (s->output_fd >= 0)
        close(s->output_fd);
    free(s);
}

/* ---- rill listeners that do not speak TLS ---- */

static void *raw_main(void *arg)
{
    rt_rawserver *r = arg;
    for (;;) {
        struct pollfd p[2] = { { .fd = rill_listener_fd(r->listener), .events = POLLIN },
                               { .fd = r->stop_fds[0], .events = POLLIN } };
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || p[1].revents)
            break;
        rill_stream *c = NULL;
        if (rill_accept(r->listener, 0, &c, NULL) != RILL_OK)
            continue;
        if (r->bytes) {
            size_t done = 0;
            if (rill_set_timeouts(c, 2000, 2000) == RILL_OK)
                (void)!rill_write_all(c, r->bytes, r->len, &done);
        }
        pthread_mutex_lock(&r->lock);
        int slot = r->accepted < RAW_CONNS ? r->accepted : -1;
        r->accepted++;
        pthread_mutex_unlock(&r->lock);
        if (slot >= 0)
            r->conns[slot] = c;
        else
            rill_close(c);
    }
    return NULL;
}

static rt_rawserver *raw_start(const void *bytes, size_t len)
{
    rt_rawserver *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    rill_error err;
    rill_status st = rill_listen("127.0.0.1", 0, NULL, &r->listener, &err);
    ck_assert_msg(st == RILL_OK, "raw server: listen: %s", err.msg);
    r->port = rill_listener_port(r->listener);
    if (bytes) {
        r->bytes = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(r->bytes);
        memcpy(r->bytes, bytes, len);
        r->len = len;
    }
    ck_assert_int_eq(pipe2(r->stop_fds, O_CLOEXEC), 0);
    pthread_mutex_init(&r->lock, NULL);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, raw_main, r), 0);
    track((void **)live_raw, r);
    return r;
}

rt_rawserver *rt_silent_start(void)
{
    return raw_start(NULL, 0);
}

rt_rawserver *rt_garbage_start(const void *bytes, size_t len)
{
    return raw_start(bytes, len);
}

uint16_t rt_rawserver_port(const rt_rawserver *r)
{
    return r->port;
}

int rt_rawserver_accepted(rt_rawserver *r)
{
    pthread_mutex_lock(&r->lock);
    int n = r->accepted;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void rt_rawserver_stop(rt_rawserver *r)
{
    if (!r)
        return;
    untrack((void **)live_raw, r);
    (void)!write(r->stop_fds[1], "x", 1);
    pthread_join(r->thread, NULL);
    for (int i = 0; i < RAW_CONNS; i++)
        rill_close(r->conns[i]);
    rill_listener_free(r->listener);
    close(r->stop_fds[0]);
    close(r->stop_fds[1]);
    pthread_mutex_destroy(&r->lock);
    free(r->bytes);
    free(r);
}

void rt_sserver_stop_all(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live_sservers[i])
            rt_sserver_stop(live_sservers[i]);
        if (live_raw[i])
            rt_rawserver_stop(live_raw[i]);
    }
}
