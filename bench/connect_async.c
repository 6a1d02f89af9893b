/* SPDX-License-Identifier: MIT */
/*
 * bench_connect_async: connects per second over loopback TCP with many connects in flight at
 * once, driven from one application epoll set, in the same run:
 *   - raw: socket(SOCK_NONBLOCK) + connect(2), EPOLLOUT in the epoll set, getsockopt(SO_ERROR),
 *     close (the baseline); for information the same with TCP_NODELAY set on the connected
 *     socket, as rill does by default (rill_connect_opts.nodelay = 1);
 *   - raw fallback: the same, but each connect first tries [::1], which refuses (nothing
 *     listens there on IPv6), then 127.0.0.1: the baseline for the "localhost" row below;
 *   - rill_connect_start() + rill_connect_step() until RILL_OK, then rill_close(), for:
 *     "127.0.0.1" with no context (numeric); "bench.test" answered by an override of the
 *     context ("bench.test:*:127.0.0.1"); "cached.bench.test", asked once of a dnsmasq this
 *     program starts (Debian's dnsmasq-base) and answered from the context's DNS cache after
 *     that (family 4, so only the A lookup runs); "localhost" with family 4, which resolves to
 *     127.0.0.1 without DNS; and "localhost" with the default family 0, which gives ::1 first
 *     (RFC 6761 / RFC 8305): that attempt is refused and 127.0.0.1 wins, so every connect does
 *     the raw fallback's work. Goal: the first four at >= 0.9x raw.
 *
 * The peer is a forked child process (pinned to another CPU) that accepts with a backlog of
 * 4096, waits for the client's FIN and closes with SO_LINGER 0, so neither side keeps
 * TIME_WAIT state over hundreds of thousands of connects. After every round the program waits
 * until the peer has accepted every connection the round made (a check of the counts) and so
 * starts each round with an empty accept queue. Listen-queue overflows (TcpExt ListenOverflows,
 * for the whole network namespace) over the timed rounds are printed.
 *
 * The driver is what an event loop does: a window of --window connects in flight, each finished
 * one replaced by a new one until --count have been made; epoll_wait(10 ms) on one epoll set
 * (level-triggered); for rill ops, rill_connect_poll_info() after start and after each step that
 * returns RILL_WANT_*, the descriptor registered under the op's slot, and op timers kept (a slot
 * whose timeout passed is stepped; none is expected here, and the count is printed). After a
 * step the descriptor may be a new one under the same number (the op closed a refused attempt
 * and the next attempt's socket got the lowest free number): its registration went with the old
 * socket, so after a step the driver re-arms with EPOLL_CTL_MOD and falls back to EPOLL_CTL_ADD
 * on ENOENT; a driver that re-registers only when the number changes would wait for the op's
 * deadline. A descriptor that changed number is deleted and the new one added. Finished ops
 * need no EPOLL_CTL_DEL: their descriptors are closed, which ends their registrations, just as
 * raw's close(2) does.
 *
 * Checks: every raw connect must report SO_ERROR 0 (the fallback's [::1] attempts
 * ECONNREFUSED); every rill connect must end in RILL_OK with a "tcp" stream; a warm-up round of
 * every variant runs with a trace callback per op that checks the path (an answer, then one
 * attempt to 127.0.0.1, or [::1] refused and then 127.0.0.1) and the peer address of every
 * stream. The timed rounds run without the callback (it costs a clock read per event). The DNS
 * context's counters must show a cache hit for every timed connect but one query per 300 s cache
 * lifetime at most. The DNS row's single query is sent by one connect alone before its warm-up:
 * ops that wait for a query each watch the shared c-ares socket through their own epoll
 * descriptor, and the kernel refuses to nest more than 500 such paths to one file in another
 * epoll set (EPOLL_CTL_ADD fails with EINVAL), so a window of 1,000 cannot wait for one query.
 *
 * Memory, each figure in a fresh child process: rill's heap bytes per op in flight (after
 * --window rill_connect_start() calls) and per idle connected "tcp" stream (after the ops
 * finished and were freed, streams kept), counted through rill_set_allocator; and the RSS
 * growth for the window (default allocator, /proc/self/statm). Raw holds an int per socket and
 * no heap. Kernel socket memory is the same for both and not counted.
 *
 * Syscalls (-s N): per variant, N connects with strace -c -f attached to this process around
 * the loop only (the peer and dnsmasq were started before and are not traced), printed as calls
 * per connect. Instructions per connect: valgrind --tool=callgrind bench_connect_async -o V -r 1
 * -n N for two values of N, this process's totals subtracted (the peer writes its own file).
 *
 * Each round runs every variant once, in alternating order; the table shows the median, min and
 * max k connects/s over the rounds and, as the ratio to the variant's baseline, the median
 * (and min-max) over the rounds of the variant's figure divided by its baseline's figure in the
 * same round. Beside them, this process's CPU time per connect (user + system, and user alone;
 * the peer's is not counted) and the baseline's CPU / the row's: on a machine shared with other
 * work the rate measures the CPU share the scheduler gave too, the CPU time much less so.
 *
 * usage: bench_connect_async [-n connects-per-round] [-w window] [-r reps] [-s N] [-o V] [-P]
 *                            [-v]
 *   defaults: 20,000 connects per round, 1,000 in flight, 11 rounds, no syscall counts
 *   -s N  count syscalls over N connects per variant with strace (must be installed)
 *   -o V  run only variant V (1 .. 8, the table's order; no memory figures), for profiling
 *   -P    do not pin this process and the peer to different CPUs   -v  print every round
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define DNSMASQ       "/usr/sbin/dnsmasq"
#define OVERRIDE_NAME "bench.test"
#define DNS_NAME      "cached.bench.test"
#define GOAL          0.9
#define MAX_REPS      99
#define MAX_EVENTS    1024
#define TIMER_SCAN_S  0.010

enum variant {
    V_RAW,
    V_RAW_NODELAY,
    V_RAW_FALLBACK,
    V_NUMERIC,
    V_OVERRIDE,
    V_DNS,
    V_LOCAL4,
    V_LOCAL0,
    VARIANTS
};

enum ctx_kind { CTX_NONE, CTX_OVERRIDE, CTX_DNS };

struct variant_def {
    const char *name;  /* row of the table */
    const char *label; /* column of the syscall table */
    const char *host;  /* rill: what rill_connect_start() is given */
    double goal;       /* 0: for information */
    enum variant base; /* baseline of the ratio */
    enum ctx_kind ctx; /* rill: which context */
    int family;        /* rill: rill_connect_opts.family */
    bool rill;
    bool fallback; /* [::1] is tried first and refused */
    bool nodelay;  /* raw: set TCP_NODELAY */
};

static const struct variant_def defs[VARIANTS] = {
    [V_RAW] = { .name = "raw: socket+connect, epoll, SO_ERROR, close",
                .label = "raw",
                .base = V_RAW },
    [V_RAW_NODELAY] = { .name = "raw + TCP_NODELAY (info)",
                        .label = "raw+nd",
                        .base = V_RAW,
                        .nodelay = true },
    [V_RAW_FALLBACK] = { .name = "raw: [::1] refused, then 127.0.0.1",
                         .label = "raw-fb",
                         .base = V_RAW_FALLBACK,
                         .fallback = true },
    [V_NUMERIC] = { .name = "rill \"127.0.0.1\", no ctx",
                    .label = "numeric",
                    .host = "127.0.0.1",
                    .goal = GOAL,
                    .base = V_RAW,
                    .rill = true },
    [V_OVERRIDE] = { .name = "rill \"" OVERRIDE_NAME "\", ctx override",
                     .label = "override",
                     .host = OVERRIDE_NAME,
                     .goal = GOAL,
                     .base = V_RAW,
                     .ctx = CTX_OVERRIDE,
                     .rill = true },
    [V_DNS] = { .name = "rill \"" DNS_NAME "\", DNS cache, fam 4",
                .label = "dns",
                .host = DNS_NAME,
                .goal = GOAL,
                .base = V_RAW,
                .ctx = CTX_DNS,
                .family = 4,
                .rill = true },
    [V_LOCAL4] = { .name = "rill \"localhost\", family 4",
                   .label = "lh4",
                   .host = "localhost",
                   .goal = GOAL,
                   .base = V_RAW,
                   .family = 4,
                   .rill = true },
    [V_LOCAL0] = { .name = "rill \"localhost\", family 0 (::1 refused)",
                   .label = "lh0",
                   .host = "localhost",
                   .base = V_RAW_FALLBACK,
                   .rill = true,
                   .fallback = true },
};

/* What the trace callback saw of one op (warm-up only). */
struct trace {
    unsigned attempts, v6_first, v6_refused, v4_won, answers_ok, other;
};

struct slot {
    int fd;       /* raw: the socket; rill: the descriptor registered for the op; -1: none */
    short events; /* rill: what fd is registered for */
    bool v6;      /* raw fallback: the [::1] attempt is the one in flight */
    bool busy;
    double wake; /* rill: when the op's timer is due; < 0: none */
    rill_connect_op *op;
    struct trace trace;
};

struct bench {
    uint16_t port; /* the peer's, on 127.0.0.1 (nothing on [::1]) */
    pid_t peer_pid;
    int peer_ctl;      /* socketpair to the peer: a byte asks for its accept count */
    uint64_t expected; /* connections made so far, which the peer must have accepted */
    pid_t dnsmasq_pid; /* 0: none */
    char dns_server[32];
    int ep; /* the application's epoll set */
    rill_ctx *ctx_override, *ctx_dns;
    size_t window;
};

/* One run of one variant: --count connects with --window in flight. */
struct run {
    struct bench *b;
    enum variant v;
    const struct variant_def *d;
    rill_ctx *ctx;
    rill_connect_opts opts;
    size_t total, started, done, in_flight;
    struct slot *slots;
    double now;
    bool traced; /* warm-up: on_event per op, and each path checked */
    bool keep;   /* memory: keep the connected sockets/streams instead of closing them */
    int *kept_fds;
    rill_stream **kept_streams;
    size_t nkept;
    void (*after_fill)(struct run *r); /* memory: called once the window is started */
    /* counts */
    unsigned long steps, timer_steps, mods, readds, moved, refused, idle_waits;
};

/* ---- processes to clean up at exit ---- */

static pid_t main_pid;
static pid_t peer_pid_atexit, dnsmasq_pid_atexit;

static void stop_child(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 1000; i++) { /* 2 s, then SIGKILL */
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        usleep(2000);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static void cleanup(void)
{
    if (getpid() != main_pid)
        return; /* a forked child that exits leaves the parent's processes alone */
    stop_child(dnsmasq_pid_atexit);
    stop_child(peer_pid_atexit);
}

/* ---- the peer: accepts, waits for the client's FIN, resets ---- */

/* Whether the client has finished with @p fd; if so, it is closed with a reset (no TIME_WAIT). */
static bool peer_finish(int fd)
{
    char buf[64];
    ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
        return false;
    struct linger lg = { 1, 0 };
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    return true;
}

static void peer_add(int ep, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        _exit(3);
}

static void peer_serve(int lfd, int ctl)
{
    bench_pin(0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        _exit(3);
    peer_add(ep, lfd, EPOLLIN);
    peer_add(ep, ctl, EPOLLIN);
    uint64_t accepted = 0;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            _exit(3);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                            continue;
                        if (errno == EAGAIN)
                            break;
                        _exit(4); /* EMFILE and the like: the parent sees the count stall */
                    }
                    accepted++;
                    if (!peer_finish(c))
                        peer_add(ep, c, EPOLLIN | EPOLLRDHUP);
                }
            } else if (fd == ctl) {
                char cmd;
                if (read(ctl, &cmd, 1) != 1)
                    _exit(0); /* the parent has gone */
                if (write(ctl, &accepted, sizeof accepted) != (ssize_t)sizeof accepted)
                    _exit(3);
            } else {
                (void)peer_finish(fd); /* closing it ends its registration */
            }
        }
    }
}

/* A listener on 127.0.0.1 at a port where [::1] refuses, served by a forked child. */
static void peer_start(struct bench *b)
{
    int lfd = -1;
    for (int attempt = 0; attempt < 20 && lfd < 0; attempt++) {
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (lfd < 0)
            bench_die("socket: %s", strerror(errno));
        struct sockaddr_in sa = { .sin_family = AF_INET };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof sa;
        if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0 ||
            getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
            bench_die("bind/listen: %s", strerror(errno));
        b->port = ntohs(sa.sin_port);
        /* nothing may listen on [::1] at this port: the fallback rows need a refusal there */
        int v6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = sa.sin_port };
        s6.sin6_addr = in6addr_loopback;
        int e = v6 < 0 ? errno : connect(v6, (struct sockaddr *)&s6, sizeof s6) == 0 ? 0 : errno;
        if (v6 >= 0)
            close(v6);
        if (e != ECONNREFUSED) {
            if (e != 0)
                bench_die("connect to [::1]:%u: %s (is IPv6 loopback available?)",
                          (unsigned)b->port, strerror(e));
            close(lfd);
            lfd = -1;
        }
    }
    if (lfd < 0)
        bench_die("no port found where [::1] refuses and 127.0.0.1 listens (20 tries)");
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
        bench_die("socketpair: %s", strerror(errno));
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        close(sp[0]);
        peer_serve(lfd, sp[1]);
    }
    close(lfd);
    close(sp[1]);
    b->peer_pid = peer_pid_atexit = pid;
    b->peer_ctl = sp[0];
}

static uint64_t peer_accepted(const struct bench *b)
{
    char cmd = 'c';
    uint64_t n;
    if (write(b->peer_ctl, &cmd, 1) != 1 || read(b->peer_ctl, &n, sizeof n) != (ssize_t)sizeof n)
        bench_die("the peer process has gone (accept failed?)");
    return n;
}

/* Wait until the peer has accepted every connection made so far (5 s at most). */
static void peer_sync(const struct bench *b)
{
    uint64_t n = 0;
    for (int i = 0; i < 2500; i++) {
        n = peer_accepted(b);
        if (n == b->expected)
            return;
        if (n > b->expected)
            break;
        usleep(2000);
    }
    bench_die("the peer accepted %llu connections, the client made %llu", (unsigned long long)n,
              (unsigned long long)b->expected);
}

/* TcpExt ListenOverflows of this network namespace. */
static unsigned long long listen_overflows(void)
{
    return bench_proc_net_counter("/proc/net/netstat", "TcpExt:", "ListenOverflows");
}

/* ---- dnsmasq, answering DNS_NAME with 127.0.0.1 (TTL 300) ---- */

static uint16_t free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        bench_die("cannot find a free UDP port: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

/*
 * Whether the server answers DNS_NAME: asked with rill_resolve() in a forked child, so this
 * process makes no rill call before the memory children set their allocator.
 */
static bool dns_answers(const char *server)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        rill_ctx_opts o;
        rill_ctx_opts_init(&o);
        o.dns_servers = server;
        o.query_timeout_ms = 100;
        o.query_tries = 1;
        rill_ctx *ctx = NULL;
        rill_addr *a = NULL;
        size_t n = 0;
        int ok = rill_ctx_new(&o, &ctx, NULL) == RILL_OK &&
                 rill_resolve(ctx, DNS_NAME, 80, 200, &a, &n, NULL) == RILL_OK && n == 1;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool dnsmasq_start(struct bench *b)
{
    if (access(DNSMASQ, X_OK) != 0)
        return false;
    for (int attempt = 0; attempt < 10; attempt++) {
        uint16_t port = free_udp_port();
        char port_arg[32], record[96];
        snprintf(port_arg, sizeof port_arg, "--port=%u", (unsigned)port);
        snprintf(record, sizeof record, "--host-record=%s,127.0.0.1,300", DNS_NAME);
        /* local answers only: no upstream, no hosts file, NXDOMAIN for the rest of the domain */
        char *argv[] = { DNSMASQ,
                         "--keep-in-foreground",
                         "--conf-file=/dev/null",
                         "--no-resolv",
                         "--no-hosts",
                         "--no-poll",
                         "--bind-interfaces",
                         "--listen-address=127.0.0.1",
                         "--user=root",
                         "--group=root",
                         "--pid-file=",
                         "--local=/bench.test/",
                         port_arg,
                         record,
                         NULL };
        fflush(NULL);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
            bench_die("fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
            int null = open("/dev/null", O_RDWR);
            if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
                _exit(127);
            execv(DNSMASQ, argv);
            _exit(127);
        }
        snprintf(b->dns_server, sizeof b->dns_server, "127.0.0.1:%u", (unsigned)port);
        for (int i = 0; i < 100; i++) { /* about 5 s */
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                pid = 0; /* exited at start-up: the port was taken, say; try another */
                break;
            }
            if (dns_answers(b->dns_server)) {
                b->dnsmasq_pid = dnsmasq_pid_atexit = pid;
                return true;
            }
            usleep(20000);
        }
        if (pid > 0)
            bench_die("%s on %s did not answer within 5 s", DNSMASQ, b->dns_server);
    }
    bench_die("%s exited at start-up on 10 ports in a row", DNSMASQ);
}

/* ---- the driver ---- */

static void trace_event(void *arg, const rill_connect_event *ev)
{
    struct trace *t = arg;
    bool v6 = ev->addr && strncmp(ev->addr, "[::1]:", 6) == 0;
    bool v4 = ev->addr && strncmp(ev->addr, "127.0.0.1:", 10) == 0;
    switch (ev->type) {
    case RILL_EV_ATTEMPT:
        if (t->attempts++ == 0 && v6)
            t->v6_first++;
        if (!v6 && !v4)
            t->other++;
        break;
    case RILL_EV_ATTEMPT_FAILED:
        if (v6 && ev->status == RILL_E_REFUSED)
            t->v6_refused++;
        else
            t->other++;
        break;
    case RILL_EV_CONNECTED:
        if (v4)
            t->v4_won++;
        else
            t->other++;
        break;
    case RILL_EV_ANSWER:
        if (ev->status == RILL_OK && ev->count > 0)
            t->answers_ok++;
        else if (ev->status != RILL_OK)
            t->other++;
        break;
    default: break;
    }
}

static uint32_t epoll_events(short events)
{
    return (events & POLLIN ? (uint32_t)EPOLLIN : 0u) |
           (events & POLLOUT ? (uint32_t)EPOLLOUT : 0u);
}

static void slot_done(struct run *r, size_t i)
{
    r->slots[i].busy = false;
    r->slots[i].fd = -1;
    r->in_flight--;
    r->done++;
}

/* ---- raw ---- */

static void raw_add(struct run *r, size_t i, int fd)
{
    struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = i };
    if (epoll_ctl(r->b->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        bench_die("epoll_ctl ADD: %s", strerror(errno));
    r->slots[i].fd = fd;
}

static void raw_connected(struct run *r, size_t i, int fd)
{
    if (r->d->nodelay) {
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            bench_die("setsockopt TCP_NODELAY: %s", strerror(errno));
    }
    if (r->keep) {
        (void)epoll_ctl(r->b->ep, EPOLL_CTL_DEL, fd, NULL);
        r->kept_fds[r->nkept++] = fd;
    } else {
        close(fd);
    }
    slot_done(r, i);
}

/* One attempt of slot @p i; true while it is in flight. */
static bool raw_attempt(struct run *r, size_t i, bool v6)
{
    struct slot *s = &r->slots[i];
    s->v6 = v6;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_die("socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(r->b->port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(r->b->port) };
    s6.sin6_addr = in6addr_loopback;
    int rc = v6 ? connect(fd, (struct sockaddr *)&s6, sizeof s6)
                : connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (rc == 0 && !v6) {
        raw_connected(r, i, fd);
        return false;
    }
    if (rc != 0 && errno == EINPROGRESS) {
        raw_add(r, i, fd);
        return true;
    }
    if (rc != 0 && errno == ECONNREFUSED && v6) {
        close(fd);
        r->refused++;
        return raw_attempt(r, i, false);
    }
    bench_die("connect to %s: %s", v6 ? "[::1]" : "127.0.0.1",
              rc == 0 ? "connected" : strerror(errno));
}

static bool raw_event(struct run *r, size_t i)
{
    struct slot *s = &r->slots[i];
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        bench_die("getsockopt SO_ERROR: %s", strerror(errno));
    if (soerr == 0 && !s->v6) {
        raw_connected(r, i, s->fd);
        return false;
    }
    if (soerr == ECONNREFUSED && s->v6) {
        close(s->fd); /* ends its registration */
        s->fd = -1;
        r->refused++;
        return raw_attempt(r, i, false);
    }
    bench_die("connect to %s: %s", s->v6 ? "[::1]" : "127.0.0.1",
              soerr ? strerror(soerr) : "connected");
}

/* ---- rill ---- */

static void rill_check_path(struct run *r, size_t i, rill_stream *s)
{
    const struct trace *t = &r->slots[i].trace;
    bool ok = t->other == 0 && t->v4_won == 1 && t->answers_ok >= 1 &&
              (r->d->fallback ? t->attempts == 2 && t->v6_first == 1 && t->v6_refused == 1
                              : t->attempts == 1 && t->v6_first == 0 && t->v6_refused == 0);
    char want[64], desc[256];
    snprintf(want, sizeof want, "> 127.0.0.1:%u)", (unsigned)r->b->port);
    rill_describe(s, desc, sizeof desc);
    size_t dl = strlen(desc), wl = strlen(want);
    if (!ok || dl < wl || strcmp(desc + dl - wl, want) != 0)
        bench_die("%s: unexpected path: %u attempts, %u [::1] first, %u [::1] refused, %u won by "
                  "127.0.0.1, %u answers, %u other events; stream %s",
                  r->d->name, t->attempts, t->v6_first, t->v6_refused, t->v4_won, t->answers_ok,
                  t->other, desc);
}

static void rill_connected(struct run *r, size_t i, rill_stream *s)
{
    struct slot *sl = &r->slots[i];
    if (!s || strcmp(rill_kind(s), RILL_LAYER_TCP) != 0 || rill_fd(s) < 0)
        bench_die("%s: RILL_OK without a tcp stream", r->d->name);
    if (r->traced)
        rill_check_path(r, i, s);
    rill_connect_op_free(sl->op); /* closes the op's own descriptors, and their registrations */
    sl->op = NULL;
    if (r->keep) {
        if (sl->fd >= 0) /* the stream's socket may be the one registered: it stays open */
            (void)epoll_ctl(r->b->ep, EPOLL_CTL_DEL, sl->fd, NULL);
        r->kept_streams[r->nkept++] = s;
    } else {
        bench_check(rill_close(s), "rill_close", NULL); /* ends the socket's registration */
    }
    slot_done(r, i);
}

/* Register what slot @p i's op waits for; @p stepped: a step ran since the last registration. */
static void rill_register(struct run *r, size_t i, int fd, short events, bool stepped)
{
    struct slot *s = &r->slots[i];
    struct epoll_event ev = { .events = epoll_events(events), .data.u64 = i };
    int ep = r->b->ep;
    if (fd >= 0 && fd == s->fd) {
        if (!stepped && events == s->events)
            return;
        /* The same number, but perhaps a new socket whose registration ended with the old. */
        if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0) {
            r->mods++;
            s->events = events;
            return;
        }
        if (errno != ENOENT)
            bench_die("epoll_ctl MOD: %s", strerror(errno));
        r->readds++;
    } else if (s->fd >= 0) {
        /* The old one may be closed already (ENOENT, EBADF) or still open inside the op. */
        if (epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL) != 0 && errno != ENOENT && errno != EBADF)
            bench_die("epoll_ctl DEL: %s", strerror(errno));
        r->moved++;
    }
    s->fd = fd;
    s->events = events;
    if (fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        bench_die("epoll_ctl ADD %d: %s", fd, strerror(errno));
}

/* Drive slot @p i's op until it waits or finishes (@p step: step first); true while it waits. */
static bool rill_drive(struct run *r, size_t i, bool step)
{
    struct slot *s = &r->slots[i];
    bool stepped = false;
    for (int spins = 0; spins < 1000; spins++) {
        if (step) {
            rill_stream *out = NULL;
            rill_error err;
            r->steps++;
            stepped = true;
            rill_status st = rill_connect_step(s->op, &out, &err);
            if (st == RILL_OK) {
                rill_connected(r, i, out);
                return false;
            }
            if (st != RILL_WANT_READ && st != RILL_WANT_WRITE)
                bench_die("%s: rill_connect_step: %s", r->d->name, err.msg);
        }
        int fd = -1, timeout = -1;
        short events = 0;
        if (rill_connect_poll_info(s->op, &fd, &events, &timeout) != RILL_OK || timeout == 0) {
            step = true; /* finished inside rill_connect_start, or due now */
            continue;
        }
        rill_register(r, i, fd, events, stepped);
        s->wake = timeout < 0 ? -1 : r->now + timeout / 1000.0;
        return true;
    }
    bench_die("%s: an op asked to be stepped at once 1000 times in a row", r->d->name);
}

static bool rill_begin(struct run *r, size_t i)
{
    struct slot *s = &r->slots[i];
    rill_error err;
    rill_connect_opts o = r->opts;
    if (r->traced) {
        memset(&s->trace, 0, sizeof s->trace);
        o.on_event = trace_event;
        o.on_event_arg = &s->trace;
    }
    s->fd = -1;
    s->wake = -1;
    if (rill_connect_start(r->ctx, r->d->host, r->b->port, &o, &s->op, &err) != RILL_OK)
        bench_die("%s: rill_connect_start: %s", r->d->name, err.msg);
    return rill_drive(r, i, false);
}

/* ---- rounds ---- */

/* Start connects in slot @p i until one waits or none is left to start. */
static void refill(struct run *r, size_t i)
{
    while (r->started < r->total) {
        r->started++;
        r->in_flight++;
        r->slots[i].busy = true;
        bool waits = r->d->rill ? rill_begin(r, i) : raw_attempt(r, i, r->d->fallback);
        if (waits)
            return;
    }
}

static void handle(struct run *r, size_t i)
{
    bool waits = r->d->rill ? rill_drive(r, i, true) : raw_event(r, i);
    if (!waits)
        refill(r, i);
}

static rill_ctx *variant_ctx(struct bench *b, enum variant v)
{
    return defs[v].ctx == CTX_OVERRIDE ? b->ctx_override
           : defs[v].ctx == CTX_DNS    ? b->ctx_dns
                                       : NULL;
}

static void run_init(struct run *r, struct bench *b, enum variant v, size_t total)
{
    memset(r, 0, sizeof *r);
    r->b = b;
    r->v = v;
    r->d = &defs[v];
    r->ctx = variant_ctx(b, v);
    r->total = total;
    rill_connect_opts_init(&r->opts);
    r->opts.family = r->d->family;
    r->slots = calloc(b->window, sizeof *r->slots);
    if (!r->slots)
        bench_die("out of memory");
    for (size_t i = 0; i < b->window; i++)
        r->slots[i].fd = -1;
}

/* Run the connects of @p r; returns the seconds they took. */
static struct epoll_event evs[MAX_EVENTS];

static double run_loop(struct run *r)
{
    double t0 = bench_now();
    r->now = t0;
    double last_scan = t0;
    size_t window = r->b->window < r->total ? r->b->window : r->total;
    for (size_t i = 0; i < window; i++)
        refill(r, i);
    if (r->after_fill)
        r->after_fill(r);
    while (r->done < r->total) {
        int n = epoll_wait(r->b->ep, evs, MAX_EVENTS, 10);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bench_die("epoll_wait: %s", strerror(errno));
        }
        r->now = bench_now();
        if (n == 0)
            r->idle_waits++; /* 10 ms without an event: a dropped SYN waits 1 s to be resent */
        for (int k = 0; k < n; k++) {
            size_t i = (size_t)evs[k].data.u64;
            if (i >= r->b->window || !r->slots[i].busy)
                bench_die("%s: event for idle slot %zu", r->d->name, i);
            handle(r, i);
        }
        if (r->d->rill && (n == 0 || r->now - last_scan >= TIMER_SCAN_S)) {
            last_scan = r->now;
            for (size_t i = 0; i < window; i++) {
                struct slot *s = &r->slots[i];
                if (s->busy && s->wake >= 0 && s->wake <= r->now) {
                    r->timer_steps++;
                    handle(r, i);
                }
            }
        }
    }
    double t1 = bench_now();
    if (r->started != r->total || r->in_flight != 0)
        bench_die("%s: %zu started, %zu in flight at the end", r->d->name, r->started,
                  r->in_flight);
    if (r->d->fallback && !r->d->rill && r->refused != r->total)
        bench_die("%s: %lu of %zu [::1] attempts refused", r->d->name, r->refused, r->total);
    if (!r->keep && epoll_wait(r->b->ep, evs, 1, 0) != 0)
        bench_die("%s: descriptors left in the epoll set after the round", r->d->name);
    r->b->expected += r->total;
    return t1 - t0;
}

static void run_free(struct run *r)
{
    free(r->slots);
    r->slots = NULL;
}

/* ---- contexts ---- */

static void make_contexts(struct bench *b)
{
    rill_error err;
    char override[64];
    snprintf(override, sizeof override, "%s:*:127.0.0.1", OVERRIDE_NAME);
    const char *overrides[] = { override, NULL };
    rill_ctx_opts o;
    rill_ctx_opts_init(&o);
    o.overrides = overrides;
    o.dns_servers = "127.0.0.1:9"; /* never asked (the override answers); loopback anyway */
    if (rill_ctx_new(&o, &b->ctx_override, &err) != RILL_OK)
        bench_die("rill_ctx_new: %s", err.msg);
    if (b->dnsmasq_pid > 0) {
        rill_ctx_opts_init(&o);
        o.dns_servers = b->dns_server;
        if (rill_ctx_new(&o, &b->ctx_dns, &err) != RILL_OK)
            bench_die("rill_ctx_new: %s", err.msg);
    }
}

static bool variant_available(const struct bench *b, enum variant v)
{
    return defs[v].ctx != CTX_DNS || b->dnsmasq_pid > 0;
}

/* ---- memory, in forked children ---- */

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    char line[128] = "";
    if (!f || !fgets(line, sizeof line, f))
        bench_die("cannot read /proc/self/statm");
    fclose(f);
    char *end = NULL;
    (void)strtol(line, &end, 10); /* size; the resident pages follow */
    long resident = strtol(end, &end, 10);
    if (resident <= 0)
        bench_die("cannot parse /proc/self/statm: %s", line);
    return resident * sysconf(_SC_PAGESIZE);
}

struct mem_result {
    long in_flight; /* heap bytes (or RSS growth) with the window in flight */
    long idle;      /* with the window connected and idle, ops freed */
    long leaked;    /* heap bytes left after closing (counting only) */
};

static long mem_now(bool counting)
{
    return counting ? (long)bench_live_bytes() : rss_bytes();
}

static bool mem_counting;
static long mem_mark;
static struct mem_result mem_res;

static void mem_after_fill(struct run *r)
{
    (void)r;
    mem_res.in_flight = mem_now(mem_counting) - mem_mark;
}

/* In a child: one window of variant @p v, connected and kept; figures written to @p out_fd. */
static void mem_child(struct bench *b, enum variant v, bool counting, int out_fd)
{
    if (counting)
        bench_count_allocator_install();
    mem_counting = counting;
    b->ep = epoll_create1(EPOLL_CLOEXEC);
    if (b->ep < 0)
        bench_die("epoll_create1: %s", strerror(errno));
    make_contexts(b);
    struct run r;
    /* one connect first, so the context's lazy state (the DNS cache entry) is in place */
    run_init(&r, b, v, 1);
    run_loop(&r);
    run_free(&r);
    run_init(&r, b, v, b->window);
    r.keep = true;
    r.after_fill = mem_after_fill;
    r.kept_fds = calloc(b->window, sizeof(int));
    r.kept_streams = calloc(b->window, sizeof(rill_stream *));
    if (!r.kept_fds || !r.kept_streams)
        bench_die("out of memory");
    /* touch what the loop will use, so that RSS grows by what the connects take */
    explicit_bzero(r.kept_fds, b->window * sizeof(int));
    explicit_bzero(r.kept_streams, b->window * sizeof(rill_stream *));
    explicit_bzero(evs, sizeof evs);
    mem_mark = mem_now(counting);
    run_loop(&r);
    if (!counting)
        malloc_trim(0); /* give back the pages only the freed ops used */
    mem_res.idle = mem_now(counting) - mem_mark;
    for (size_t k = 0; k < r.nkept; k++) {
        if (defs[v].rill)
            bench_check(rill_close(r.kept_streams[k]), "rill_close", NULL);
        else
            close(r.kept_fds[k]);
    }
    mem_res.leaked = counting ? (long)bench_live_bytes() - mem_mark : 0;
    if (write(out_fd, &mem_res, sizeof mem_res) != (ssize_t)sizeof mem_res)
        _exit(1);
    _exit(0);
}

/* Fork a child that measures variant @p v; returns how many connects it made. */
static size_t mem_measure(struct bench *b, enum variant v, bool counting, struct mem_result *res)
{
    int p[2];
    if (pipe(p) != 0)
        bench_die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        mem_child(b, v, counting, p[1]);
    }
    close(p[1]);
    ssize_t n = read(p[0], res, sizeof *res);
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof *res || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bench_die("the memory child for %s failed", defs[v].name);
    return b->window + 1;
}

static void print_memory(struct bench *b)
{
    printf("\nbench_connect_async: memory, %zu connects at once (fresh child process each)\n",
           b->window);
    printf("%-44s %12s %12s %11s %11s\n", "name", "heap B/op", "heap B/conn", "RSS KiB", "RSS KiB");
    printf("%-44s %12s %12s %11s %11s\n", "", "in flight", "idle", "in flight", "idle");
    for (int v = 0; v < VARIANTS; v++) {
        if (v == V_RAW_NODELAY || v == V_RAW_FALLBACK || !variant_available(b, (enum variant)v))
            continue;
        struct mem_result heap, rss;
        b->expected += mem_measure(b, (enum variant)v, true, &heap);
        b->expected += mem_measure(b, (enum variant)v, false, &rss);
        peer_sync(b);
        if (heap.leaked != 0)
            bench_die("%s: %ld heap bytes left after closing", defs[v].name, heap.leaked);
        double w = (double)b->window;
        printf("%-44s %12.0f %12.0f %11.0f %11.0f\n", defs[v].name, (double)heap.in_flight / w,
               (double)heap.idle / w, (double)rss.in_flight / 1024, (double)rss.idle / 1024);
    }
    printf("heap: rill's allocations through rill_set_allocator (raw makes none; it keeps an int "
           "per socket); RSS: growth of /proc/self/statm with the default allocator (idle: after "
           "malloc_trim(0) returned the freed ops' pages); kernel socket memory is not counted "
           "(the same for both)\n");
    fflush(stdout);
}

/* ---- syscalls, with strace attached around the loop ---- */

#define MAX_SYSCALLS 64

struct sys_table {
    char names[MAX_SYSCALLS][32];
    double calls[MAX_SYSCALLS][VARIANTS];
    double errors[MAX_SYSCALLS][VARIANTS];
    size_t n;
};

static bool traced_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long tracer = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "TracerPid:", 10) == 0) {
            tracer = strtol(line + 10, NULL, 10);
            break;
        }
    }
    if (f)
        fclose(f);
    return tracer != 0;
}

static void parse_strace(const char *path, enum variant v, size_t count, struct sys_table *t)
{
    FILE *f = fopen(path, "r");
    if (!f)
        bench_die("strace wrote no summary to %s", path);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *tok[8];
        int n = 0;
        char *save = NULL;
        for (char *p = strtok_r(line, " \n", &save); p && n < 8; p = strtok_r(NULL, " \n", &save))
            tok[n++] = p;
        if ((n != 5 && n != 6) || strcmp(tok[n - 1], "total") == 0 || tok[0][0] == '%' ||
            tok[0][0] == '-')
            continue;
        double calls = strtod(tok[3], NULL), errors = n == 6 ? strtod(tok[4], NULL) : 0;
        size_t k = 0;
        while (k < t->n && strcmp(t->names[k], tok[n - 1]) != 0)
            k++;
        if (k == t->n) {
            if (t->n == MAX_SYSCALLS)
                continue;
            snprintf(t->names[t->n++], sizeof t->names[0], "%s", tok[n - 1]);
        }
        t->calls[k][v] = calls / (double)count;
        t->errors[k][v] = errors / (double)count;
    }
    fclose(f);
}

static void count_syscalls(struct bench *b, enum variant v, size_t count, struct sys_table *t)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/rill-bench-strace-%ld-%d", (long)getpid(), (int)v);
    char pid_arg[32];
    snprintf(pid_arg, sizeof pid_arg, "%ld", (long)getpid());
    struct run r;
    run_init(&r, b, v, count);
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY); /* Yama may require it; EINVAL without */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR); /* its "attached" and "detached" notes */
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execlp("strace", "strace", "-c", "-f", "-o", path, "-p", pid_arg, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; !traced_now(); i++) {
        if (i == 500 || waitpid(pid, NULL, WNOHANG) == pid)
            bench_die("strace did not attach within 5 s (is ptrace allowed here? try: strace -c -f "
                      "-p PID)");
        usleep(10000);
    }
    run_loop(&r);
    kill(pid, SIGINT); /* strace detaches and writes its summary */
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    run_free(&r);
    parse_strace(path, v, count, t);
    unlink(path);
    peer_sync(b);
}

/* Where @p name goes in the printed table: the calls of a connect in order, then the rest. */
static int syscall_rank(const char *name)
{
    static const char *const order[] = { "socket",      "connect",     "epoll_ctl",  "epoll_wait",
                                         "poll",        "getsockopt",  "setsockopt", "fcntl",
                                         "getsockname", "getpeername", "close" };
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (strcmp(order[i], name) == 0)
            return (int)i;
    return (int)(sizeof order / sizeof order[0]);
}

static bool shown(const struct bench *b, int v, int only)
{
    return (only < 0 || only == v) && variant_available(b, (enum variant)v);
}

static void print_syscalls(const struct bench *b, const struct sys_table *t, size_t count, int only)
{
    printf("\nbench_connect_async: syscalls per connect (strace -c -f attached around %zu "
           "connects of each variant, %zu in flight; failed calls in brackets)\n",
           count, b->window);
    printf("%-14s", "syscall");
    for (int v = 0; v < VARIANTS; v++)
        if (shown(b, v, only))
            printf(" %14s", defs[v].label);
    printf("\n");
    double total[VARIANTS] = { 0 }, other[VARIANTS] = { 0 };
    for (int rank = 0; rank <= syscall_rank(""); rank++) {
        for (size_t k = 0; k < t->n; k++) {
            if (syscall_rank(t->names[k]) != rank)
                continue;
            bool small = true; /* the attach and detach of strace: folded into "other" */
            for (int v = 0; v < VARIANTS; v++) {
                total[v] += t->calls[k][v];
                small = small && t->calls[k][v] < 0.001;
            }
            if (small) {
                for (int v = 0; v < VARIANTS; v++)
                    other[v] += t->calls[k][v];
                continue;
            }
            printf("%-14s", t->names[k]);
            for (int v = 0; v < VARIANTS; v++) {
                if (!shown(b, v, only))
                    continue;
                char cell[32] = "-";
                if (t->calls[k][v] > 0 && t->errors[k][v] > 0)
                    snprintf(cell, sizeof cell, "%.3f [%.3f]", t->calls[k][v], t->errors[k][v]);
                else if (t->calls[k][v] > 0)
                    snprintf(cell, sizeof cell, "%.3f", t->calls[k][v]);
                printf(" %14s", cell);
            }
            printf("\n");
        }
    }
    printf("%-14s", "other");
    for (int v = 0; v < VARIANTS; v++)
        if (shown(b, v, only))
            printf(" %14.3f", other[v]);
    printf("\n%-14s", "total");
    for (int v = 0; v < VARIANTS; v++)
        if (shown(b, v, only))
            printf(" %14.2f", total[v]);
    printf("\n");
    fflush(stdout);
}

/* ---- main ---- */

/* User (@p user) or user and system CPU time of this process so far (not of its children, the
 * peer among them). */
static double cpu_seconds(bool user)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        bench_die("getrusage: %s", strerror(errno));
    double u = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    return user ? u : u + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_connect_async [-n connects-per-round] [-w window] [-r reps] "
                    "[-s N] [-o variant] [-P] [-v]\n");
    exit(2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of @p n values (copied, not reordered). */
static void stats(const double *v, size_t n, double *med, double *min, double *max)
{
    double s[MAX_REPS];
    memcpy(s, v, n * sizeof *v);
    qsort(s, n, sizeof *s, cmp_double);
    *med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    *min = s[0];
    *max = s[n - 1];
}

int main(int argc, char **argv)
{
    size_t count = 20000, window = 1000, reps = 11, sys_count = 0;
    int only = -1, opt;
    while ((opt = getopt(argc, argv, "n:w:r:s:o:Pv")) != -1) {
        switch (opt) {
        case 'n': count = (size_t)bench_parse_count(optarg, "connects per round"); break;
        case 'w': window = (size_t)bench_parse_count(optarg, "window"); break;
        case 'r': reps = (size_t)bench_parse_count(optarg, "reps"); break;
        case 's': sys_count = (size_t)bench_parse_count(optarg, "syscall-count connects"); break;
        case 'o': only = (int)bench_parse_count(optarg, "variant") - 1; break;
        case 'P': bench_pinning = 0; break;
        case 'v': bench_verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || reps > MAX_REPS || window > MAX_EVENTS || count > 10000000 ||
        only >= VARIANTS || sys_count > 10000000)
        usage();

    main_pid = getpid();
    atexit(cleanup);
    signal(SIGPIPE, SIG_IGN);
    struct bench b;
    memset(&b, 0, sizeof b);
    b.window = window;
    peer_start(&b);
    int pinned = bench_pin(1);
    bool have_dns = dnsmasq_start(&b);
    if (!have_dns)
        fprintf(stderr,
                "bench_connect_async: the DNS-cache row is skipped: %s not found (install "
                "dnsmasq-base)\n",
                DNSMASQ);
    if (only >= 0 && !variant_available(&b, (enum variant)only))
        bench_die("variant %d needs %s", only + 1, DNSMASQ);
    /* Memory first: its children set their allocator before their first rill call. */
    if (only < 0)
        print_memory(&b);

    b.ep = epoll_create1(EPOLL_CLOEXEC);
    if (b.ep < 0)
        bench_die("epoll_create1: %s", strerror(errno));
    make_contexts(&b);

    /* Warm-up, every path checked by a trace callback per op. */
    for (int v = 0; v < VARIANTS; v++) {
        if ((only >= 0 && only != v) || !variant_available(&b, (enum variant)v))
            continue;
        /*
         * One connect alone first: it sends the DNS row's only query. (A window of ops that all
         * wait for one query cannot be registered here: each op's epoll descriptor watches the
         * shared c-ares socket, and the kernel refuses EPOLL_CTL_ADD with EINVAL past 500 such
         * nested paths to one file.)
         */
        struct run r;
        for (int k = 0; k < 2; k++) {
            run_init(&r, &b, (enum variant)v, k == 0 ? 1 : window * 2);
            r.traced = true;
            run_loop(&r);
            run_free(&r);
            peer_sync(&b);
        }
    }
    rill_ctx_stats dns0 = { 0 };
    if (b.ctx_dns)
        rill_ctx_get_stats(b.ctx_dns, &dns0);

    static double fig[VARIANTS][MAX_REPS], cpu[VARIANTS][MAX_REPS], ucpu[VARIANTS][MAX_REPS];
    unsigned long steps[VARIANTS] = { 0 }, timer_steps[VARIANTS] = { 0 }, mods[VARIANTS] = { 0 },
                  readds[VARIANTS] = { 0 }, moved[VARIANTS] = { 0 }, idle_waits[VARIANTS] = { 0 };
    unsigned long long overflows0 = listen_overflows();
    double started_at = bench_now();
    for (size_t rep = 0; rep < reps; rep++) {
        for (int k = 0; k < VARIANTS; k++) {
            enum variant v = (enum variant)(rep % 2 ? VARIANTS - 1 - k : k);
            if ((only >= 0 && only != (int)v) || !variant_available(&b, v))
                continue;
            struct run r;
            run_init(&r, &b, v, count);
            double cpu0 = cpu_seconds(false), user0 = cpu_seconds(true);
            double secs = run_loop(&r);
            cpu[v][rep] = (cpu_seconds(false) - cpu0) / (double)count * 1e6;
            ucpu[v][rep] = (cpu_seconds(true) - user0) / (double)count * 1e6;
            fig[v][rep] = (double)count / secs / 1000;
            steps[v] += r.steps;
            timer_steps[v] += r.timer_steps;
            mods[v] += r.mods;
            readds[v] += r.readds;
            moved[v] += r.moved;
            idle_waits[v] += r.idle_waits;
            run_free(&r);
            peer_sync(&b);
            if (bench_verbose)
                fprintf(stderr, "round %zu %s: %.1f k connects/s\n", rep, defs[v].name,
                        fig[v][rep]);
        }
    }
    double elapsed = bench_now() - started_at;
    unsigned long long overflows = listen_overflows() - overflows0;

    char dns_note[256] = "";
    if (b.ctx_dns && (only < 0 || only == V_DNS)) {
        rill_ctx_stats dns1;
        rill_ctx_get_stats(b.ctx_dns, &dns1);
        uint64_t queries = dns1.queries - dns0.queries, hits = dns1.cache_hits - dns0.cache_hits;
        uint64_t lookups = (uint64_t)(count * reps);
        /* an answer lives 300 s in the cache: one more query per 300 s is expected */
        if (hits + queries + (dns1.merged - dns0.merged) != lookups ||
            queries > 1 + (uint64_t)(elapsed / 300))
            bench_die("DNS context: %llu lookups made, %llu cache hits, %llu queries",
                      (unsigned long long)lookups, (unsigned long long)hits,
                      (unsigned long long)queries);
        snprintf(dns_note, sizeof dns_note,
                 "; DNS row: %llu of %llu lookups answered from the cache, %llu sent to dnsmasq "
                 "(%llu in all, warm-up included)",
                 (unsigned long long)hits, (unsigned long long)lookups, (unsigned long long)queries,
                 (unsigned long long)dns1.queries);
    }

    printf("\nbench_connect_async: non-blocking loopback TCP connects, %zu per round with %zu in "
           "flight, one epoll set, %zu rounds (alternating order)%s\n",
           count, window, reps, pinned ? ", client and peer pinned to two CPUs" : "");
    printf("%-44s %23s %20s %13s %21s\n", "", "k connects/s", "ratio", "", "client CPU us/conn");
    printf("%-44s %7s %7s %7s %6s %13s %6s %6s %7s %6s %6s\n", "name", "median", "min", "max",
           "median", "min-max", "goal", "result", "total", "user", "ratio");
    for (int v = 0; v < VARIANTS; v++) {
        if ((only >= 0 && only != v) || !variant_available(&b, (enum variant)v))
            continue;
        double med, min, max, cmed, umed, cmin, cmax;
        stats(fig[v], reps, &med, &min, &max);
        stats(ucpu[v], reps, &umed, &cmin, &cmax);
        stats(cpu[v], reps, &cmed, &cmin, &cmax);
        char ratio[16] = "-", range[32] = "", goal[16] = "", verdict[8] = "", cratio[16] = "-";
        enum variant base = defs[v].base;
        if (only < 0 && base != (enum variant)v) {
            double rr[MAX_REPS] = { 0 }, cr[MAX_REPS] = { 0 }, rmed, rmin, rmax;
            for (size_t i = 0; i < reps; i++) {
                rr[i] = fig[v][i] / fig[base][i];
                cr[i] = cpu[base][i] / cpu[v][i];
            }
            stats(rr, reps, &rmed, &rmin, &rmax);
            snprintf(ratio, sizeof ratio, "%.3f", rmed);
            snprintf(range, sizeof range, "%.3f-%.3f", rmin, rmax);
            if (defs[v].goal > 0) {
                snprintf(goal, sizeof goal, ">=%.2f", defs[v].goal);
                snprintf(verdict, sizeof verdict, "%s", rmed >= defs[v].goal ? "PASS" : "MISS");
            }
            stats(cr, reps, &rmed, &rmin, &rmax);
            snprintf(cratio, sizeof cratio, "%.3f", rmed);
        }
        printf("%-44s %7.1f %7.1f %7.1f %6s %13s %6s %6s %7.1f %6.1f %6s\n", defs[v].name, med, min,
               max, ratio, range, goal, verdict, cmed, umed, cratio);
    }
    printf("ratio: median (min-max) over the rounds of the row's figure / its baseline's in the "
           "same round (raw; for the \"localhost\" family 0 row the raw fallback). client CPU: "
           "user + system time (and user time alone) of this process (the peer is another) per "
           "connect, median over the rounds; its ratio is the baseline's total / the row's, median "
           "of the rounds' ratios\n");
    for (int v = 0; v < VARIANTS; v++) {
        if (!defs[v].rill || (only >= 0 && only != v) || !variant_available(&b, (enum variant)v))
            continue;
        double n = (double)(count * reps);
        printf("%-8s per connect: %.2f steps, %.2f re-arms after a step (%.2f found a new socket "
               "under the old number), %.2f descriptor moves; %lu timer steps in all\n",
               defs[v].label, (double)steps[v] / n, (double)(mods[v] + readds[v]) / n,
               (double)readds[v] / n, (double)moved[v] / n, timer_steps[v]);
    }
    /* A stalled peer lets its accept queue overflow; the SYNs it drops are resent after 1 s. */
    printf("waits of 10 ms without an event:");
    for (int v = 0; v < VARIANTS; v++)
        if ((only < 0 || only == v) && variant_available(&b, (enum variant)v))
            printf(" %s %lu", defs[v].label, idle_waits[v]);
    printf("; listen-queue overflows during the timed rounds (whole network namespace): %llu%s\n",
           overflows, dns_note);
    fflush(stdout);

    if (sys_count > 0) {
        static struct sys_table t;
        for (int v = 0; v < VARIANTS; v++)
            if ((only < 0 || only == v) && variant_available(&b, (enum variant)v))
                count_syscalls(&b, (enum variant)v, sys_count, &t);
        print_syscalls(&b, &t, sys_count, only);
    }

    rill_ctx_free(b.ctx_override);
    rill_ctx_free(b.ctx_dns);
    close(b.ep);
    return 0;
}
