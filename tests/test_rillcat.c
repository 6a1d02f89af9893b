/* SPDX-License-Identifier: MIT */
/*
 * rillcat end to end: the real binary (RILL_TEST_BINARY_DIR/tools/rillcat) as a child process,
 * against peers on 127.0.0.1 made with rill's own listener and rill_tls_server (scripted in
 * threads), raw sockets where rill would be too polite (a reset), dnsmasq for DNS, and
 * certificates made with the openssl command line (support/certs.c).
 *
 * Covered: every exit status of the contract (0 2 6 7 28 35 56 58 60) with its one-line
 * message, binary-safe copying of 64 MiB with a checksum (plain and TLS), half-close in both
 * modes, --starttls smtp/imap/pop3/plain-line against a plain-then-TLS peer (and refusals,
 * including plaintext injected after the go-ahead), -l -k --echo with 50 concurrent clients
 * (plain and TLS), -v facts, --insecure's warning, --crlf, --unix, malformed arguments named in
 * usage errors, a stdout whose reader goes away (exit 1, never SIGPIPE; -k keeps serving), and
 * -k --max-conns (over the limit: closed at once, counted by -v).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "certs.h"
#include "dns.h"
#include "dns_delay.h"
#include "sserver.h"
#include "support.h"

#define CK(call) ck_assert_msg((call) == RILL_OK, "%s failed", #call)

/* ---------------------------------------------------------------------------------------------
 * rillcat as a child process
 */

typedef struct rc_proc {
    pid_t pid;
    int in_fd; /* our end of its stdin; -1 once closed */
    int out_fd, err_fd;
    pthread_t collector;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool hash_out; /* keep only a checksum of stdout (bulk tests) */
    bool own_out;  /* the test reads (or closes) out_fd itself; the collector leaves it alone */
    char *out;
    size_t out_len, out_cap;
    size_t out_total;
    uint64_t out_hash;
    char err[262144]; /* -v of 50 TLS connections fits */
    size_t err_len;
    bool eof_out, eof_err;
} rc_proc;

static const char *rillcat_path(void)
{
    static char path[4096];
    const char *dir = getenv("RILL_TEST_BINARY_DIR");
    ck_assert_msg(dir != NULL, "RILL_TEST_BINARY_DIR is not set (run through ctest)");
    snprintf(path, sizeof path, "%s/tools/rillcat", dir);
    ck_assert_msg(access(path, X_OK) == 0, "%s is not built", path);
    return path;
}

static void *collect(void *arg)
{
    rc_proc *p = arg;
    static _Thread_local char buf[65536];
    for (;;) {
        struct pollfd fds[2];
        nfds_t n = 0;
        int out_slot = -1, err_slot = -1;
        pthread_mutex_lock(&p->lock);
        bool eof_out = p->eof_out, eof_err = p->eof_err;
        pthread_mutex_unlock(&p->lock);
        if (!eof_out) {
            out_slot = (int)n;
            fds[n++] = (struct pollfd){ .fd = p->out_fd, .events = POLLIN };
        }
        if (!eof_err) {
            err_slot = (int)n;
            fds[n++] = (struct pollfd){ .fd = p->err_fd, .events = POLLIN };
        }
        if (n == 0)
            break;
        if (poll(fds, n, -1) < 0)
            continue;
        for (int slot = 0; slot < (int)n; slot++) {
            if (!fds[slot].revents)
                continue;
            ssize_t got = read(fds[slot].fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR)
                continue;
            pthread_mutex_lock(&p->lock);
            if (got <= 0) {
                if (slot == out_slot)
                    p->eof_out = true;
                else
                    p->eof_err = true;
            } else if (slot == out_slot) {
                p->out_total += (size_t)got;
                if (p->hash_out) {
                    p->out_hash = rt_checksum(p->out_hash, buf, (size_t)got);
                } else {
                    if (p->out_len + (size_t)got + 1 > p->out_cap) {
                        p->out_cap = (p->out_len + (size_t)got + 1) * 2;
                        p->out = realloc(p->out, p->out_cap);
                    }
                    memcpy(p->out + p->out_len, buf, (size_t)got);
                    p->out_len += (size_t)got;
                    p->out[p->out_len] = '\0';
                }
            } else if (slot == err_slot) {
                size_t room = sizeof p->err - 1 - p->err_len;
                size_t take = (size_t)got < room ? (size_t)got : room;
                memcpy(p->err + p->err_len, buf, take);
                p->err_len += take;
                p->err[p->err_len] = '\0';
            }
            pthread_cond_broadcast(&p->changed);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

/*
 * Start rillcat with @p args (NULL-terminated, without argv[0]). With @p own_out the test
 * handles rillcat's stdout (p->out_fd) itself.
 */
static rc_proc *rc_start_ex(const char *const *args, bool hash_out, bool own_out)
{
    const char *path = rillcat_path();
    char *argv[64];
    size_t n = 0;
    argv[n++] = strdup("rillcat");
    for (size_t i = 0; args[i]; i++) {
        ck_assert(n < 63);
        argv[n++] = strdup(args[i]);
    }
    argv[n] = NULL;
    int in[2], out[2], err[2];
    ck_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
              pipe2(err, O_CLOEXEC) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        /* rillcat starts as a shell would start it: SIGPIPE neither ignored nor blocked. */
        sigset_t pipe_set;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigprocmask(SIG_UNBLOCK, &pipe_set, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            _exit(126);
        execv(path, argv);
        _exit(127);
    }
    for (size_t i = 0; i < n; i++)
        free(argv[i]);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    rc_proc *p = calloc(1, sizeof *p);
    ck_assert(p != NULL);
    p->pid = pid;
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->err_fd = err[0];
    p->hash_out = hash_out;
    p->own_out = own_out;
    p->eof_out = own_out;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->changed, NULL);
    ck_assert(pthread_create(&p->collector, NULL, collect, p) == 0);
    return p;
}

static rc_proc *rc_start(const char *const *args, bool hash_out)
{
    return rc_start_ex(args, hash_out, false);
}

static void rc_write(rc_proc *p, const void *data, size_t len)
{
    const char *b = data;
    while (len > 0) {
        ssize_t n = write(p->in_fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_msg(n > 0, "writing to rillcat's stdin: %s; stderr: %s", strerror(errno), p->err);
        b += n;
        len -= (size_t)n;
    }
}

static void rc_close_stdin(rc_proc *p)
{
    if (p->in_fd >= 0)
        close(p->in_fd);
    p->in_fd = -1;
}

/* Wait until stderr (@p in_err) or stdout contains @p needle; 1 if it did within the time. */
static int rc_wait_for(rc_proc *p, bool in_err, const char *needle, int timeout_ms)
{
    int64_t end = rt_now_us() + (int64_t)timeout_ms * 1000;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        const char *hay = in_err ? p->err : (p->out ? p->out : "");
        if (strstr(hay, needle)) {
            pthread_mutex_unlock(&p->lock);
            return 1;
        }
        if ((in_err ? p->eof_err : p->eof_out) || rt_now_us() >= end)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->changed, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* The port of a `rillcat -l -v ... 0` (from its "listening on ADDR:PORT" line). */
static uint16_t rc_listen_port(rc_proc *p)
{
    ck_assert_msg(rc_wait_for(p, true, "listening on ", 10000), "rillcat did not listen: %s",
                  p->err);
    rc_wait_for(p, true, "\n", 1000);
    pthread_mutex_lock(&p->lock);
    const char *at = strstr(p->err, "listening on ");
    const char *colon = strchr(at, '\n');
    while (colon > at && colon[-1] != ':')
        colon--;
    unsigned port = (unsigned)atoi(colon);
    pthread_mutex_unlock(&p->lock);
    ck_assert_msg(port > 0 && port < 65536, "no port in %s", p->err);
    return (uint16_t)port;
}

/*
 * Wait for rillcat to exit (killing it after @p timeout_ms) and for its output to end. Returns
 * the exit status, or 128+signal if a signal ended it.
 */
static int rc_finish(rc_proc *p, int timeout_ms)
{
    rc_close_stdin(p);
    int status = 0;
    int64_t end = rt_now_us() + (int64_t)timeout_ms * 1000;
    bool killed = false;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid)
            break;
        if (!killed && rt_now_us() >= end) {
            kill(p->pid, SIGKILL);
            killed = true;
        }
        usleep(2000);
    }
    pthread_join(p->collector, NULL);
    if (p->out_fd >= 0)
        close(p->out_fd);
    close(p->err_fd);
    p->out_fd = p->err_fd = -1;
    ck_assert_msg(!killed, "rillcat still running after %d ms; stderr: %s", timeout_ms, p->err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Stop a listener that runs until killed (-k). */
static void rc_kill(rc_proc *p)
{
    kill(p->pid, SIGTERM);
    rc_close_stdin(p);
    waitpid(p->pid, NULL, 0);
    pthread_join(p->collector, NULL);
    if (p->out_fd >= 0)
        close(p->out_fd);
    close(p->err_fd);
    p->out_fd = p->err_fd = -1;
}

static void rc_free(rc_proc *p)
{
    if (!p)
        return;
    free(p->out);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->changed);
    free(p);
}

/* Occurrences of @p needle in rillcat's stderr so far. */
static int rc_count(rc_proc *p, const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&p->lock);
    for (const char *at = p->err; (at = strstr(at, needle)); at++)
        n++;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Wait until stderr holds @p needle @p want times; the count reached within @p timeout_ms. */
static int rc_wait_count(rc_proc *p, const char *needle, int want, int timeout_ms)
{
    int64_t end = rt_now_us() + (int64_t)timeout_ms * 1000;
    int n;
    while ((n = rc_count(p, needle)) < want && rt_now_us() < end)
        usleep(10 * 1000);
    return n;
}

/* Whether rillcat is still running (neither exited nor killed by a signal). */
static bool rc_running(rc_proc *p)
{
    return waitpid(p->pid, NULL, WNOHANG) == 0;
}

/* Open descriptors of process @p pid. */
static int proc_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Number of lines of @p text. */
static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/*
 * Run rillcat to its end with @p input on stdin (then EOF), and check its exit status @p want
 * and, for failures, that stderr is one line "rillcat: ..." containing @p needle (may be NULL).
 * Returns the finished process for more checks (rc_free it).
 */
static rc_proc *rc_expect(const char *const *args, const char *input, int want, const char *needle)
{
    rc_proc *p = rc_start(args, false);
    if (input)
        rc_write(p, input, strlen(input));
    int code = rc_finish(p, 20000);
    ck_assert_msg(code == want, "rillcat exited with %d, wanted %d; stderr: %s", code, want,
                  p->err);
    if (want != 0 && want != 2) {
        /* The failure line, after any warnings (--insecure's). */
        const char *line = p->err;
        while (strncmp(line, "rillcat: warning: ", 18) == 0 && strchr(line, '\n'))
            line = strchr(line, '\n') + 1;
        ck_assert_msg(strncmp(line, "rillcat: ", 9) == 0 && count_lines(line) == 1,
                      "stderr is not one \"rillcat: ...\" line: %s", p->err);
    }
    if (needle)
        ck_assert_msg(strstr(p->err, needle) != NULL, "stderr lacks \"%s\": %s", needle, p->err);
    return p;
}

static void portstr(char *buf, uint16_t port)
{
    snprintf(buf, 8, "%u", port);
}

/* ---------------------------------------------------------------------------------------------
 * Peers: a rill listener whose thread runs a script for each connection, one at a time
 */

typedef void (*peer_fn)(rill_stream *s, void *arg);

typedef struct peer {
    rill_listener *l;
    pthread_t thread;
    peer_fn fn;
    void *arg;
    volatile int stop;
    int served;
} peer;

static void *peer_main(void *arg)
{
    peer *pr = arg;
    while (!pr->stop) {
        rill_stream *s = NULL;
        rill_error err;
        rill_status st = rill_accept(pr->l, 50, &s, &err);
        if (st == RILL_E_TIMEOUT || st == RILL_WANT_READ)
            continue;
        if (st != RILL_OK)
            break;
        if (rill_set_timeouts(s, 10000, 10000) == RILL_OK)
            pr->fn(s, pr->arg);
        else
            rill_close(s);
        pr->served++;
    }
    return NULL;
}

/* Start a peer; @p tls (may be NULL) makes accepted streams "tls > tcp". The script closes s. */
static peer *peer_start(rill_tls_config *tls, peer_fn fn, void *arg)
{
    peer *pr = calloc(1, sizeof *pr);
    ck_assert(pr != NULL);
    rill_listen_opts lopts;
    rill_listen_opts_init(&lopts);
    lopts.stream.tls = tls;
    rill_error err;
    rill_status st = rill_listen("127.0.0.1", 0, &lopts, &pr->l, &err);
    ck_assert_msg(st == RILL_OK, "listen: %s", err.msg);
    pr->fn = fn;
    pr->arg = arg;
    ck_assert(pthread_create(&pr->thread, NULL, peer_main, pr) == 0);
    return pr;
}

static uint16_t peer_port(const peer *pr)
{
    return rill_listener_port(pr->l);
}

static void peer_stop(peer *pr)
{
    if (!pr)
        return;
    pr->stop = 1;
    pthread_join(pr->thread, NULL);
    rill_listener_free(pr->l);
    free(pr);
}

/* A TLS server config with a leaf of the test set (and, if @p client_ca, client auth). */
static rill_tls_config *server_config(const rt_leaf *leaf, rill_tls_client_auth auth,
                                      int max_version, const char *alpn)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg;
    rill_error E;
    CK(rill_tls_config_new(&cfg, &E));
    CK(rill_tls_config_set_cert_file(cfg, leaf->chain, leaf->key, &E));
    if (auth != RILL_TLS_CLIENT_AUTH_NONE) {
        CK(rill_tls_config_set_ca_file(cfg, C->ca, &E));
        CK(rill_tls_config_set_verify_client(cfg, auth, &E));
    }
    if (max_version)
        CK(rill_tls_config_set_versions(cfg, 0, max_version, &E));
    if (alpn)
        CK(rill_tls_config_set_alpn(cfg, alpn, &E));
    return cfg;
}

/* Scripts. */

/* Echo until EOF, then half-close in turn and close. */
static void script_echo(rill_stream *s, void *arg)
{
    (void)arg;
    static _Thread_local char buf[65536];
    for (;;) {
        size_t n;
        rill_status st = rill_read(s, buf, sizeof buf, &n);
        if (st != RILL_OK)
            break;
        if (rill_write_all(s, buf, n, NULL) != RILL_OK)
            break;
    }
    (void)rill_close(s);
}

/* Record what arrives until EOF, then answer with a line and close (half-close test). */
struct recorder {
    char got[4096];
    size_t len;
    rill_status end; /* how the reading ended */
    const char *answer;
};

static void script_record_then_answer(rill_stream *s, void *arg)
{
    struct recorder *r = arg;
    for (;;) {
        size_t n;
        rill_status st = rill_read(s, r->got + r->len, sizeof r->got - 1 - r->len, &n);
        if (st != RILL_OK) {
            r->end = st;
            break;
        }
        r->len += n;
    }
    r->got[r->len] = '\0';
    if (r->end == RILL_EOF && r->answer && rill_write_str(s, r->answer, NULL) != RILL_OK)
        r->end = RILL_E_IO;
    (void)rill_close(s);
}

/* Send until the connection fails: whoever stops taking the bytes ends it. */
static void script_flood(rill_stream *s, void *arg)
{
    (void)arg;
    static _Thread_local char buf[16384];
    memset(buf, 'f', sizeof buf);
    for (;;) {
        if (rill_write_all(s, buf, sizeof buf, NULL) != RILL_OK)
            break;
    }
    (void)rill_close(s);
}

/* Handshake (to see the server side fail), then close. */
static void script_handshake_only(rill_stream *s, void *arg)
{
    (void)arg;
    if (rill_tls_handshake(s) != RILL_OK) { /* expected: the tests make it fail */
    }
    (void)rill_close(s);
}

/* TLS: send some bytes, then cut TCP without close_notify. */
static void script_truncate(rill_stream *s, void *arg)
{
    (void)arg;
    if (rill_write_str(s, "partial answer\n", NULL) == RILL_OK) {
        usleep(100 * 1000);
        shutdown(rill_fd(s), SHUT_RDWR);
    }
    (void)rill_close(s);
}

/* ---- STARTTLS peers: the plain dialogue of each protocol, then TLS, then echo ---- */

struct starttls_script {
    const char *const *sends; /* what to send before/after each expected line, see below */
    const char *proto;
    rill_tls_config *cfg;
    bool inject;       /* send plaintext right after the go-ahead, in the same write */
    bool refuse;       /* answer STARTTLS negatively (or, where it is listed, do not offer it) */
    bool upgraded;     /* set when TLS ran */
    char header[2048]; /* xmpp: the client's stream header */
    peer_fn after;     /* what the TLS stream does after the upgrade; NULL: echo */
};

static bool send_str(rill_stream *s, const char *text);
static bool expect_line(rill_stream *lines, const char *prefix);

/* Read raw bytes (through the line reader's buffer) until @p needle has arrived. */
static bool expect_raw(rill_stream *lines, const char *needle, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    while (!strstr(buf, needle)) {
        size_t n = 0;
        if (len + 1 >= cap || rill_read(lines, buf + len, cap - 1 - len, &n) != RILL_OK)
            return false;
        len += n;
        buf[len] = '\0';
    }
    return true;
}

/* The plain dialogue of the protocols added later: false when the client went wrong. */
static bool script_more_protocols(struct starttls_script *sc, rill_stream *lines, const char **go)
{
    const char *proto = sc->proto;
    if (strcmp(proto, "lmtp") == 0) {
        *go = "220 2.0.0 Ready to start TLS\r\n";
        return send_str(lines, "220 peer.rill.test LMTP ready\r\n") &&
               expect_line(lines, "LHLO ") &&
               send_str(lines, sc->refuse ? "250-peer.rill.test\r\n250 PIPELINING\r\n"
                                          : "250-peer.rill.test\r\n250-PIPELINING\r\n"
                                            "250 STARTTLS\r\n") &&
               !sc->refuse && expect_line(lines, "STARTTLS");
    }
    if (strcmp(proto, "ftp") == 0) {
        *go = sc->refuse ? "534 Request denied for policy reasons.\r\n" : "234 AUTH TLS OK.\r\n";
        return send_str(lines,
                        "220-peer.rill.test FTP\r\n  text without a code\r\n220 ready\r\n") &&
               expect_line(lines, "AUTH TLS");
    }
    if (strcmp(proto, "nntp") == 0) {
        *go = "382 Continue with TLS negotiation\r\n";
        return send_str(lines, "200 peer.rill.test NNTP ready\r\n") &&
               expect_line(lines, "CAPABILITIES") &&
               send_str(lines, sc->refuse ? "101 Capability list:\r\nVERSION 2\r\nREADER\r\n.\r\n"
                                          : "101 Capability list:\r\nVERSION 2\r\nREADER\r\n"
                                            "STARTTLS\r\n.\r\n") &&
               !sc->refuse && expect_line(lines, "STARTTLS");
    }
    if (strcmp(proto, "sieve") == 0) {
        *go = "OK \"Begin TLS negotiation now\"\r\n";
        return send_str(lines, sc->refuse ? "\"IMPLEMENTATION\" \"rill test\"\r\n"
                                            "\"SIEVE\" \"fileinto\"\r\nOK \"ready\"\r\n"
                                          : "\"IMPLEMENTATION\" \"rill test\"\r\n"
                                            "\"SIEVE\" \"fileinto\"\r\n\"STARTTLS\"\r\n"
                                            "\"VERSION\" \"1.0\"\r\nOK \"ready\"\r\n") &&
               !sc->refuse && expect_line(lines, "STARTTLS");
    }
    if (strcmp(proto, "irc") == 0) {
        *go = sc->refuse ? ":peer.rill.test 691 * :STARTTLS failed\r\n"
                         : ":peer.rill.test 670 * :STARTTLS successful, go ahead with TLS\r\n";
        return expect_line(lines, "STARTTLS") &&
               send_str(lines, ":peer.rill.test NOTICE * :*** Looking up your hostname\r\n");
    }
    if (strcmp(proto, "xmpp") == 0) {
        char buf[2048];
        *go = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
        if (!expect_raw(lines, "version='1.0'>", buf, sizeof buf))
            return false;
        snprintf(sc->header, sizeof sc->header, "%s", buf);
        return send_str(lines,
                        sc->refuse
                            ? "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams' id='r1' "
                              "from='peer.rill.test' version='1.0'><stream:features><mechanisms "
                              "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>"
                            : "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                              "xmlns:stream='http://etherx.jabber.org/streams' id='r1' "
                              "from='peer.rill.test' version='1.0'><stream:features><starttls "
                              "xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                              "</stream:features>") &&
               !sc->refuse && expect_raw(lines, "xmpp-tls'/>", buf, sizeof buf);
    }
    if (strcmp(proto, "ldap") == 0) {
        /* ExtendedRequest, messageID 1, requestName 1.3.6.1.4.1.1466.20037 (RFC 4511 4.14). */
        static const char want[] = "\x30\x1d\x02\x01\x01\x77\x18\x80\x16"
                                   "1.3.6.1.4.1.1466.20037";
        char req[sizeof want - 1];
        size_t n = 0;
        *go = sc->refuse ? "\x30\x22\x02\x01\x01\x78\x1d\x0a\x01\x02\x04\x00\x04\x16"
                           "StartTLS not supported"
                         : "\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00";
        return rill_read_full(lines, req, sizeof req, &n) == RILL_OK &&
               memcmp(req, want, sizeof req) == 0;
    }
    if (strcmp(proto, "postgres") == 0) {
        char req[8];
        size_t n = 0;
        *go = sc->refuse ? "N" : "S";
        return rill_read_full(lines, req, sizeof req, &n) == RILL_OK &&
               memcmp(req, "\0\0\0\x08\x04\xd2\x16\x2f", 8) == 0;
    }
    return false;
}

static bool send_str(rill_stream *s, const char *text)
{
    return rill_write_str(s, text, NULL) == RILL_OK && rill_flush(s) == RILL_OK;
}

/* Read lines until one starts with @p prefix; false on EOF or error. */
static bool expect_line(rill_stream *lines, const char *prefix)
{
    for (;;) {
        const char *line;
        size_t len;
        if (rill_read_line(lines, &line, &len) != RILL_OK)
            return false;
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            return true;
    }
}

static void script_starttls(rill_stream *tcp, void *arg)
{
    struct starttls_script *sc = arg;
    rill_stream *lines = NULL;
    if (rill_lines_new(tcp, 1024, RILL_EOL_CRLF, RILL_BORROW, &lines) != RILL_OK) {
        rill_close(tcp);
        return;
    }
    bool ok;
    const char *go;
    if (strcmp(sc->proto, "smtp") == 0) {
        ok =
            send_str(lines, "220-peer.rill.test ESMTP\r\n220 more greeting\r\n") &&
            expect_line(lines, "EHLO ") &&
            send_str(lines, sc->refuse ? "250-peer.rill.test\r\n250 SIZE 1000\r\n"
                                       : "250-peer.rill.test\r\n250-STARTTLS\r\n250 SIZE 1000\r\n");
        ok = ok && !sc->refuse && expect_line(lines, "STARTTLS");
        go = "220 go ahead\r\n";
    } else if (strcmp(sc->proto, "imap") == 0) {
        ok = send_str(lines, "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n") &&
             expect_line(lines, "a001 STARTTLS");
        ok = ok && send_str(lines, "* NOTE untagged first\r\n");
        go = sc->refuse ? "a001 NO not now\r\n" : "a001 OK begin TLS now\r\n";
    } else if (strcmp(sc->proto, "pop3") == 0) {
        ok = send_str(lines, "+OK POP3 ready\r\n") && expect_line(lines, "STLS");
        go = sc->refuse ? "-ERR no\r\n" : "+OK begin TLS\r\n";
    } else if (strcmp(sc->proto, "plain-line") == 0) {
        ok = expect_line(lines, "STARTTLS");
        go = sc->refuse ? "NO\r\n" : "OK\r\n";
    } else {
        go = "";
        ok = script_more_protocols(sc, lines, &go);
    }
    if (ok) {
        /* The answers of ldap hold NUL bytes: written by length, not as strings. */
        size_t golen =
            strcmp(sc->proto, "ldap") != 0 ? strlen(go) : (size_t)(2 + (unsigned char)go[1]);
        static const char injected[] = "250 injected\r\n";
        char buf[256];
        memcpy(buf, go, golen); /* one write: the injection arrives with the go-ahead */
        if (sc->inject)
            memcpy(buf + golen, injected, sizeof injected - 1);
        size_t total = golen + (sc->inject ? sizeof injected - 1 : 0);
        ok = rill_write_all(lines, buf, total, NULL) == RILL_OK && rill_flush(lines) == RILL_OK;
    }
    (void)rill_close(lines);
    rill_stream *tls = NULL;
    if (ok && !sc->refuse && !sc->inject && rill_tls_server(tcp, sc->cfg, 0, &tls) == RILL_OK) {
        if (rill_tls_handshake(tls) == RILL_OK)
            sc->upgraded = true;
        (sc->after ? sc->after : script_echo)(tls, NULL);
        return;
    }
    /* Hold the connection until the client gives up, so its verdict is its own. */
    char buf[64];
    size_t n;
    while (rill_read(tcp, buf, sizeof buf, &n) == RILL_OK)
        ;
    rill_close(tcp);
}

/* ---- a peer made of raw sockets: reads a line, then resets the connection ---- */

struct raw_reset {
    int lfd;
    uint16_t port;
    pthread_t thread;
};

static void *raw_reset_main(void *arg)
{
    struct raw_reset *r = arg;
    int c = accept(r->lfd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[256];
    (void)read(c, buf, sizeof buf); /* the client's first bytes */
    struct linger lg = { 1, 0 };
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c); /* RST */
    return NULL;
}

static struct raw_reset *raw_reset_start(void)
{
    struct raw_reset *r = calloc(1, sizeof *r);
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    ck_assert(bind(r->lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(r->lfd, 4) == 0 &&
              getsockname(r->lfd, (struct sockaddr *)&sa, &sl) == 0);
    r->port = ntohs(sa.sin_port);
    ck_assert(pthread_create(&r->thread, NULL, raw_reset_main, r) == 0);
    return r;
}

static void raw_reset_stop(struct raw_reset *r)
{
    shutdown(r->lfd, SHUT_RDWR);
    pthread_join(r->thread, NULL);
    close(r->lfd);
    free(r);
}

/* A port on 127.0.0.1 with nothing listening (bound, then closed). */
static uint16_t closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
              getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A plain TCP connection to 127.0.0.1:@p port on a raw socket. */
static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert(fd >= 0);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect to port %u: %s",
                  port, strerror(errno));
    return fd;
}

/* read(2) that waits at most @p timeout_ms: bytes read, 0 at EOF, -1 on error, -2 in time. */
static ssize_t raw_read(int fd, void *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int r;
    do {
        r = poll(&pfd, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return -2;
    return read(fd, buf, len);
}

/* Whether connection @p fd is served by a -k --echo rillcat: the byte sent comes back. */
static bool raw_echoes(int fd, char byte)
{
    char got = 0;
    return write(fd, &byte, 1) == 1 && raw_read(fd, &got, 1, 10000) == 1 && got == byte;
}

/* ---------------------------------------------------------------------------------------------
 * Usage and informational options
 */

static const char *const usage_cases[][8] = {
    { NULL },
    { "-x", "127.0.0.1", "1", NULL },
    { "--no-such-option", "127.0.0.1", "1", NULL },
    { "127.0.0.1", NULL },
    { "127.0.0.1", "1", "extra", NULL },
    { "127.0.0.1", "0", NULL },
    { "127.0.0.1", "70000", NULL },
    { "127.0.0.1", "http", NULL },
    { "--echo", "127.0.0.1", "1", NULL },
    { "-k", "127.0.0.1", "1", NULL },
    { "--tls", "--tls-min", "1.1", "127.0.0.1", "1", NULL },
    { "--starttls", "gopher", "127.0.0.1", "1", NULL },
    { "--cafile", "/x.pem", "127.0.0.1", "1", NULL },
    { "-l", "--tls", "0", NULL },
    { "--connect-timeout", "soon", "127.0.0.1", "1", NULL },
    { "-4", "-6", "127.0.0.1", "1", NULL },
    { "--timeout", NULL },
    { "--tls", "--pin", "md5//nope", "127.0.0.1", "1", NULL },
    { "--demo", "extra", NULL },
    { "--unix", "/tmp/x.sock", "127.0.0.1", "1", NULL },
    { "-l", "--starttls", "smtp", "0", NULL },
};

START_TEST(usage_errors)
{
    rc_proc *p = rc_expect(usage_cases[_i], NULL, 2, "rillcat: usage: ");
    ck_assert_msg(strstr(p->err, "\nusage: rillcat ") != NULL, "no usage line: %s", p->err);
    ck_assert_msg(p->out_len == 0, "printed on stdout: %s", p->out);
    rc_free(p);
}
END_TEST

/*
 * Arguments that are malformed rather than unresolvable or unreachable: usage errors (2) whose
 * message names the argument. "LONG" stands for a --unix path one byte over the kernel's limit.
 */
static const struct {
    const char *args[8];
    const char *message;
} named_usage_cases[] = {
    { { "127.0.0.1", " 80", NULL }, "bad port \" 80\"" },
    { { "127.0.0.1", "80 ", NULL }, "bad port \"80 \"" },
    { { "127.0.0.1", "+80", NULL }, "bad port \"+80\"" },
    { { "--", "127.0.0.1", "-80", NULL }, "bad port \"-80\"" },
    { { "127.0.0.1", "80x", NULL }, "bad port \"80x\"" },
    { { "127.0.0.1", "", NULL }, "bad port \"\"" },
    { { "127.0.0.1", "0", NULL }, "bad port \"0\" (a number, 1 to 65535)" },
    { { "-l", " 0", NULL }, "bad port \" 0\" (a number, 1 to 65535, or 0 for any)" },
    { { "-l", "--", "127.0.0.1", "-1", NULL }, "bad port \"-1\"" },
    { { "", "80", NULL }, "HOST is empty" },
    { { "-l", "", "0", NULL }, "HOST is empty" },
    { { "--unix", "", NULL }, "--unix PATH is empty" },
    { { "--unix", "@", NULL }, "--unix PATH is empty" },
    { { "-l", "--unix", "", NULL }, "--unix PATH is empty" },
    { { "--unix", "LONG", NULL }, "--unix PATH is too long (108 bytes, at most 107)" },
    { { "-l", "--echo", "--unix", "LONG", NULL }, "--unix PATH is too long (108 bytes" },
    { { "--timeout", " 5", "127.0.0.1", "1", NULL }, "--timeout takes a positive number" },
    { { "-l", "-k", "--max-conns", "0", "0", NULL }, "--max-conns takes a positive number" },
    { { "-l", "-k", "--max-conns", " 2", "0", NULL },
      "--max-conns takes a positive number of connections, not \" 2\"" },
    { { "-l", "-k", "--max-conns", NULL }, "--max-conns needs an argument" },
    { { "--max-conns", "2", "127.0.0.1", "1", NULL }, "--max-conns works only with -l -k" },
    { { "-l", "--max-conns", "2", "0", NULL }, "--max-conns works only with -l -k" },
    { { "--starttls", "gopher", "127.0.0.1", "1", NULL },
      "--starttls takes smtp, lmtp, imap, pop3, ftp, xmpp, ldap, nntp, sieve, postgres, irc or "
      "plain-line, not \"gopher\"" },
    { { "--xmpp-host", "x.test", "--starttls", "smtp", "127.0.0.1", "1", NULL },
      "--xmpp-host works only with --starttls xmpp" },
    { { "--groups", "X25519", "127.0.0.1", "1", NULL }, "--groups needs --tls" },
    { { "--ciphers", "HIGH", "127.0.0.1", "1", NULL }, "--ciphers needs --tls" },
    { { "--showcerts", "127.0.0.1", "1", NULL }, "--showcerts needs --tls" },
    { { "--allow-truncation", "127.0.0.1", "1", NULL }, "--allow-truncation needs --tls" },
    { { "--tls", "--groups", "NoSuchGroup", "127.0.0.1", "1", NULL },
      "--groups: tls: no usable group in \"NoSuchGroup\"" },
    { { "--tls", "--tls13-ciphers", "TLS_NOPE", "127.0.0.1", "1", NULL },
      "--tls13-ciphers: tls: no usable TLS 1.3 ciphersuite in \"TLS_NOPE\"" },
    { { "--tls", "--ciphers", "NOPE", "127.0.0.1", "1", NULL },
      "--ciphers: tls: no usable cipher in \"NOPE\"" },
};

START_TEST(usage_errors_named)
{
    char too_long[109];
    memset(too_long, 'p', sizeof too_long - 1);
    too_long[0] = '/';
    too_long[sizeof too_long - 1] = '\0';
    const char *args[8];
    for (size_t i = 0; i < 8; i++) {
        const char *a = named_usage_cases[_i].args[i];
        args[i] = a && strcmp(a, "LONG") == 0 ? too_long : a;
    }
    char want[160];
    snprintf(want, sizeof want, "rillcat: usage: %s", named_usage_cases[_i].message);
    rc_proc *p = rc_expect(args, NULL, 2, want);
    ck_assert_msg(strncmp(p->err, "rillcat: usage: ", 16) == 0 && count_lines(p->err) == 2 &&
                      strstr(p->err, "\nusage: rillcat "),
                  "not a usage message and a usage line: %s", p->err);
    ck_assert_msg(p->out_len == 0, "printed on stdout: %s", p->out);
    rc_free(p);
}
END_TEST

/* At the limit a --unix path is not a usage error: it is tried (and nobody listens there). */
START_TEST(unix_path_at_limit)
{
    char path[108];
    memset(path, 'p', sizeof path - 1);
    memcpy(path, "/nonexistent-rill/", 18);
    path[sizeof path - 1] = '\0';
    const char *args[] = { "--unix", path, NULL };
    rc_free(rc_expect(args, "", 7, "rillcat: connect: "));
}
END_TEST

START_TEST(help_and_version)
{
    const char *help[] = { "--help", NULL };
    rc_proc *p = rc_expect(help, NULL, 0, NULL);
    ck_assert(p->out && strstr(p->out, "usage: rillcat") && strstr(p->out, "--starttls") &&
              strstr(p->out, "plain-line") && strstr(p->out, "--max-conns N"));
    rc_free(p);
    const char *version[] = { "--version", NULL };
    p = rc_expect(version, NULL, 0, NULL);
    char want[64];
    snprintf(want, sizeof want, "rillcat %s", rill_version());
    ck_assert_msg(p->out && strstr(p->out, want), "version: %s", p->out ? p->out : "");
    rc_free(p);
}
END_TEST

START_TEST(demo_runs)
{
    const char *args[] = { "--demo", NULL };
    rc_proc *p = rc_expect(args, NULL, 0, NULL);
    ck_assert_msg(strstr(p->out, "demo ok") && strstr(p->out, "> tls(TLSv1.3") &&
                      strstr(p->out, "lines(max=8192 eol=crlf) > buffered(16384) > tls(") &&
                      strstr(p->out, "STARTTLS") && strstr(p->out, "peer verified"),
                  "demo output: %s", p->out);
    rc_free(p);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Exit statuses
 */

START_TEST(exit_7_refused)
{
    char port[8];
    portstr(port, closed_port());
    const char *args[] = { "127.0.0.1", port, NULL };
    rc_free(rc_expect(args, "", 7, "refused"));
    const char *tls[] = { "--tls", "127.0.0.1", port, NULL };
    rc_free(rc_expect(tls, "", 7, "rillcat: connect: "));
}
END_TEST

START_TEST(exit_6_not_resolved)
{
    rt_dns *dns = rt_dns_start();
    const char *args[] = { "--dns-server", rt_dns_servers(dns), RT_DNS_MISSING, "80", NULL };
    rc_free(rc_expect(args, "", 6, RT_DNS_MISSING));
    /* An override for another name does not help; nor does asking for a family it lacks. */
    const char *other[] = { "--dns-server",
                            rt_dns_servers(dns),
                            "--resolve",
                            "elsewhere.rill.test:80:127.0.0.1",
                            RT_DNS_MISSING,
                            "80",
                            NULL };
    rc_free(rc_expect(other, "", 6, RT_DNS_MISSING));
    const char *family[] = { "--dns-server", rt_dns_servers(dns), "-6", RT_DNS_V4, "80", NULL };
    rc_free(rc_expect(family, "", 6, RT_DNS_V4));
    rt_dns_stop(dns);
}
END_TEST

/* A server that answers SERVFAIL or REFUSED: the message says so (not "Could not contact"). */
START_TEST(exit_6_server_failure)
{
    rt_dnsd *d = rt_dnsd_start();
    const char *names[] = { "servfail.rill.test", "refused.rill.test" };
    int codes[] = { RT_DNSD_SERVFAIL, RT_DNSD_REFUSED };
    const char *said[] = { "the DNS server answered SERVFAIL (it failed to resolve the name)",
                           "the DNS server answered REFUSED (it does not resolve for us)" };
    for (int i = 0; i < 2; i++) {
        ck_assert(rt_dnsd_set(d, names[i], RT_DNSD_A, NULL, 0, codes[i], 60) == 0);
        ck_assert(rt_dnsd_set(d, names[i], RT_DNSD_AAAA, NULL, 0, codes[i], 60) == 0);
        const char *args[] = { "--dns-server", rt_dnsd_servers(d), names[i], "80", NULL };
        char want[200];
        snprintf(want, sizeof want, "rillcat: resolve: %s: %s", names[i], said[i]);
        rc_free(rc_expect(args, "", 6, want));
    }
    rt_dnsd_stop(d);
}
END_TEST

START_TEST(resolve_and_dns_server_connect)
{
    /* --resolve answers without DNS; --dns-server names are looked up at dnsmasq. */
    peer *pr = peer_start(NULL, script_echo, NULL);
    char port[8], map[64];
    portstr(port, peer_port(pr));
    snprintf(map, sizeof map, "fixed.rill.test:%s:127.0.0.1", port);
    const char *args[] = { "--dns-server", "127.0.0.1:1",     "--resolve", map,
                           "-v",           "fixed.rill.test", port,        NULL };
    rc_proc *p = rc_expect(args, "via override\n", 0, NULL);
    ck_assert_str_eq(p->out, "via override\n");
    ck_assert_msg(strstr(p->err, "* trying 127.0.0.1:"), "no trace: %s", p->err);
    rc_free(p);
    rt_dns *dns = rt_dns_start();
    const char *named[] = { "--dns-server", rt_dns_servers(dns), "-4", RT_DNS_BOTH, port, NULL };
    p = rc_expect(named, "via dnsmasq\n", 0, NULL);
    ck_assert_str_eq(p->out, "via dnsmasq\n");
    rc_free(p);
    rt_dns_stop(dns);
    peer_stop(pr);
}
END_TEST

START_TEST(exit_28_timeouts)
{
    /* TLS handshake with a server that never answers: the connect timeout covers it. */
    rt_rawserver *silent = rt_silent_start();
    char port[8];
    portstr(port, rt_rawserver_port(silent));
    const rt_certs *C = rt_certs_get();
    const char *tls[] = { "--tls", "--cafile",  C->ca, "--connect-timeout",
                          "300",   "127.0.0.1", port,  NULL };
    int64_t t0 = rt_now_us();
    rc_proc *p = rc_expect(tls, "", 28, NULL);
    rt_assert_elapsed(t0, 250, 5000);
    rc_free(p);
    /* Idle after connecting (stdin kept open, nothing comes back). */
    const char *idle[] = { "--timeout", "300", "127.0.0.1", port, NULL };
    p = rc_start(idle, false);
    t0 = rt_now_us();
    ck_assert(rc_wait_for(p, true, "rillcat: ", 5000));
    int code = rc_finish(p, 5000);
    ck_assert_msg(code == 28, "exit %d: %s", code, p->err);
    rt_assert_elapsed(t0, 250, 5000);
    ck_assert_msg(count_lines(p->err) == 1 && strstr(p->err, "300 ms"), "%s", p->err);
    rc_free(p);
    rt_rawserver_stop(silent);
    /* A DNS server that never answers. */
    rt_dns_silent *dns = rt_dns_silent_start();
    const char *resolve[] = { "--dns-server",
                              rt_dns_silent_servers(dns),
                              "--connect-timeout",
                              "300",
                              "quiet.rill.test",
                              "80",
                              NULL };
    rc_free(rc_expect(resolve, "", 28, NULL));
    rt_dns_silent_stop(dns);
}
END_TEST

/* 35: not TLS at all; no version in common; a missing client certificate (TLS 1.3 and 1.2). */
START_TEST(exit_35_handshake)
{
    const rt_certs *C = rt_certs_get();
    static const char garbage[] = "HTTP/1.0 400 Bad Request\r\n\r\nthis is not TLS\r\n";
    rt_rawserver *raw = rt_garbage_start(garbage, sizeof garbage - 1);
    char port[8];
    portstr(port, rt_rawserver_port(raw));
    const char *args[] = { "--tls", "--cafile", C->ca, "127.0.0.1", port, NULL };
    rc_free(rc_expect(args, "", 35, "rillcat: TLS handshake: "));
    rt_rawserver_stop(raw);

    rill_tls_config *only12 =
        server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, RILL_TLS_1_2, NULL);
    peer *pr = peer_start(only12, script_handshake_only, NULL);
    portstr(port, peer_port(pr));
    const char *v13[] = { "--tls", "--tls-min", "1.3", "--cafile", C->ca, "127.0.0.1", port, NULL };
    rc_free(rc_expect(v13, "", 35, "rillcat: TLS handshake: "));
    peer_stop(pr);
    rill_tls_config_free(only12);

    for (int v = 0; v < 2; v++) {
        rill_tls_config *mtls =
            server_config(&C->good, RILL_TLS_CLIENT_AUTH_REQUIRE, v ? RILL_TLS_1_2 : 0, NULL);
        pr = peer_start(mtls, script_handshake_only, NULL);
        portstr(port, peer_port(pr));
        const char *nocert[] = { "--tls", "--cafile", C->ca, "127.0.0.1", port, NULL };
        /* stdin stays open without data: the rejection comes on the first read (TLS 1.3). */
        rc_proc *p = rc_start(nocert, false);
        ck_assert(rc_wait_for(p, true, "rillcat: ", 10000));
        int code = rc_finish(p, 10000);
        ck_assert_msg(code == 35, "TLS 1.%d without client certificate: exit %d: %s", 3 - v, code,
                      p->err);
        ck_assert_msg(count_lines(p->err) == 1 && strstr(p->err, "rillcat: TLS handshake: "), "%s",
                      p->err);
        rc_free(p);
        /* With the certificate it works. */
        const char *withcert[] = { "--tls", "--cafile",    C->ca,       "--cert", C->client.chain,
                                   "--key", C->client.key, "127.0.0.1", port,     NULL };
        rc_free(rc_expect(withcert, "", 0, NULL));
        peer_stop(pr);
        rill_tls_config_free(mtls);
    }
}
END_TEST

/* 60: expired, untrusted, wrong name, pin mismatch. */
START_TEST(exit_60_verify)
{
    const rt_certs *C = rt_certs_get();
    /* The last: a certificate whose signature does not verify (curl: 60, not 35). */
    const rt_leaf *leaves[] = { &C->expired, &C->untrusted, &C->good, &C->good, &C->badsig };
    const char *needles[] = { "expired", "verify", "other.example", "pin",
                              "certificate signature failure" };
    for (int i = 0; i < 5; i++) {
        rill_tls_config *cfg = server_config(leaves[i], RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
        peer *pr = peer_start(cfg, script_handshake_only, NULL);
        char port[8];
        portstr(port, peer_port(pr));
        const char *args[12] = { "--tls", "--cafile", C->ca, "127.0.0.1", port, NULL };
        if (i == 2) {
            const char *a[] = { "--tls",     "--cafile", C->ca, "--servername", RT_CERTS_WRONG_HOST,
                                "127.0.0.1", port,       NULL };
            memcpy(args, a, sizeof a);
        } else if (i == 3) {
            const char *a[] = { "--tls",      "--cafile",  C->ca, "--pin",
                                C->wrong.pin, "127.0.0.1", port,  NULL };
            memcpy(args, a, sizeof a);
        }
        rc_free(rc_expect(args, "", 60, needles[i]));
        peer_stop(pr);
        rill_tls_config_free(cfg);
    }
}
END_TEST

/* 58: local certificate or key that cannot be loaded. */
START_TEST(exit_58_local_cert)
{
    const rt_certs *C = rt_certs_get();
    const char *missing[] = {
        "--tls", "--cert", "/nonexistent/c.pem", "--key", "/nonexistent/k.pem", "127.0.0.1",
        "1",     NULL
    };
    rc_free(rc_expect(missing, "", 58, "rillcat: --cert/--key: "));
    const char *mismatch[] = { "--tls", "--cert",    C->client.chain,
                               "--key", C->good.key, "127.0.0.1",
                               "1",     NULL };
    rc_free(rc_expect(mismatch, "", 58, "rillcat: --cert/--key: "));
    const char *encrypted[] = {
        "--tls", "--cert", C->client.chain, "--key", C->client_key_enc, "127.0.0.1", "1", NULL
    };
    rc_free(rc_expect(encrypted, "", 58, "rillcat: --cert/--key: "));
    const char *listen[] = { "-l", "--tls", "--cert", "/nonexistent/c.pem", "0", NULL };
    rc_free(rc_expect(listen, "", 58, NULL));
    const char *cafile[] = { "--tls", "--cafile", "/nonexistent/ca.pem", "127.0.0.1", "1", NULL };
    rc_free(rc_expect(cafile, "", 58, "/nonexistent/ca.pem"));
    /* A certificate file without its key, and no --key: say that, not "unsupported". */
    char want[200];
    snprintf(want, sizeof want,
             "rillcat: --cert/--key: tls: cannot load private key %s: the file holds no private "
             "key",
             C->good.chain);
    const char *nokey[] = { "--tls", "--cert", C->good.chain, "127.0.0.1", "1", NULL };
    rc_free(rc_expect(nokey, "", 58, want));
    const char *nokey_listen[] = { "-l", "--tls", "--cert", C->good.chain, "0", NULL };
    rc_free(rc_expect(nokey_listen, "", 58, want));
}
END_TEST

/* 56: a reset after connecting; a TLS stream cut without close_notify. */
START_TEST(exit_56_receive)
{
    const rt_certs *C = rt_certs_get();
    struct raw_reset *r = raw_reset_start();
    char port[8];
    portstr(port, r->port);
    const char *args[] = { "127.0.0.1", port, NULL };
    rc_proc *p = rc_start(args, false);
    rc_write(p, "hello\n", 6);
    ck_assert(rc_wait_for(p, true, "rillcat: ", 10000));
    int code = rc_finish(p, 10000);
    ck_assert_msg(code == 56, "exit %d: %s", code, p->err);
    ck_assert_msg(strstr(p->err, "reset") && count_lines(p->err) == 1, "%s", p->err);
    rc_free(p);
    raw_reset_stop(r);

    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    peer *pr = peer_start(cfg, script_truncate, NULL);
    portstr(port, peer_port(pr));
    const char *tls[] = { "--tls", "--cafile", C->ca, "127.0.0.1", port, NULL };
    p = rc_start(tls, false);
    ck_assert(rc_wait_for(p, true, "rillcat: ", 10000));
    code = rc_finish(p, 10000);
    ck_assert_msg(code == 56, "exit %d: %s", code, p->err);
    ck_assert_msg(strstr(p->err, "close_notify") && count_lines(p->err) == 1, "%s", p->err);
    ck_assert_str_eq(p->out, "partial answer\n");
    rc_free(p);
    peer_stop(pr);
    rill_tls_config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Copying
 */

#define BULK (64u << 20)

/* 64 MiB of pattern through rillcat to an echo peer and back: the same bytes, checksummed. */
static void bulk_echo(bool tls)
{
    const rt_certs *C = tls ? rt_certs_get() : NULL;
    rill_tls_config *cfg = tls ? server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL) : NULL;
    peer *pr = peer_start(cfg, script_echo, NULL);
    char port[8];
    portstr(port, peer_port(pr));
    const char *plain_args[] = { "127.0.0.1", port, NULL };
    const char *tls_args[] = { "--tls", "--cafile", C ? C->ca : "", "127.0.0.1", port, NULL };
    rc_proc *p = rc_start(tls ? tls_args : plain_args, true);
    unsigned char *chunk = malloc(1 << 20);
    uint64_t sent_hash = 0;
    for (unsigned i = 0; i < BULK >> 20; i++) {
        rt_fill_pattern(chunk, 1 << 20, 1000 + i);
        chunk[i] = 0; /* NUL, CR, LF and 0xff: nothing is special */
        chunk[i + 1] = '\r';
        chunk[i + 2] = '\n';
        chunk[i + 3] = 0xff;
        sent_hash = rt_checksum(sent_hash, chunk, 1 << 20);
        rc_write(p, chunk, 1 << 20);
    }
    free(chunk);
    int code = rc_finish(p, 120000);
    ck_assert_msg(code == 0, "exit %d: %s", code, p->err);
    ck_assert_msg(p->out_total == BULK, "got %zu bytes back of %u", p->out_total, BULK);
    ck_assert_msg(p->out_hash == sent_hash, "checksum differs");
    rc_free(p);
    peer_stop(pr);
    rill_tls_config_free(cfg);
}

START_TEST(binary_64mib_plain)
{
    bulk_echo(false);
}
END_TEST

START_TEST(binary_64mib_tls)
{
    bulk_echo(true);
}
END_TEST

/* Client: stdin EOF half-closes; the peer sees EOF, answers after it, and rillcat prints it. */
START_TEST(half_close_client)
{
    const rt_certs *C = rt_certs_get();
    /* plain, TLS 1.3, TLS 1.2 (close_notify, then reading on) */
    for (int tls = 0; tls < 3; tls++) {
        rill_tls_config *cfg = tls ? server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE,
                                                   tls == 2 ? RILL_TLS_1_2 : 0, NULL)
                                   : NULL;
        struct recorder rec = { .answer = "answer after your EOF\n" };
        peer *pr = peer_start(cfg, script_record_then_answer, &rec);
        char port[8];
        portstr(port, peer_port(pr));
        const char *plain_args[] = { "127.0.0.1", port, NULL };
        const char *tls_args[] = { "--tls", "--cafile", C->ca, "127.0.0.1", port, NULL };
        rc_proc *p = rc_start(tls ? tls_args : plain_args, false);
        rc_write(p, "request line 1\nrequest line 2\n", 30);
        int code = rc_finish(p, 10000); /* closes stdin */
        ck_assert_msg(code == 0, "exit %d: %s", code, p->err);
        peer_stop(pr);
        ck_assert_int_eq(rec.end, RILL_EOF);
        ck_assert_str_eq(rec.got, "request line 1\nrequest line 2\n");
        ck_assert_str_eq(p->out, "answer after your EOF\n");
        rc_free(p);
        rill_tls_config_free(cfg);
    }
}
END_TEST

struct listen_client {
    uint16_t port;
    char got[256];
    size_t len;
    rill_status end;
    char error[RILL_ERRMSG_MAX];
};

/* Send a line, read until rillcat half-closes, then send more and half-close in turn. */
static void *listen_client_main(void *arg)
{
    struct listen_client *lc = arg;
    rill_stream *s;
    rill_error err;
    if (rill_tcp_connect_addr("127.0.0.1", lc->port, NULL, &s, &err) != RILL_OK) {
        snprintf(lc->error, sizeof lc->error, "%s", err.msg);
        return NULL;
    }
    rill_status st = rill_set_timeouts(s, 10000, 10000);
    if (st == RILL_OK)
        st = rill_write_str(s, "from the client\n", NULL);
    while (st == RILL_OK) {
        size_t n;
        st = rill_read(s, lc->got + lc->len, sizeof lc->got - 1 - lc->len, &n);
        if (st == RILL_OK)
            lc->len += n;
    }
    lc->end = st;
    if (st == RILL_EOF)
        st = rill_write_str(s, "late bytes after your EOF\n", NULL);
    if (st == RILL_OK || st == RILL_EOF)
        st = rill_shutdown(s);
    if (st != RILL_OK)
        snprintf(lc->error, sizeof lc->error, "%s", rill_errmsg(s));
    (void)rill_close(s);
    return NULL;
}

/*
 * Listen mode: when stdin ends rillcat half-closes, and keeps copying what the client still
 * sends until the client closes in turn.
 */
START_TEST(half_close_listen)
{
    const char *args[] = { "-l", "-v", "0", NULL };
    rc_proc *p = rc_start(args, false);
    struct listen_client lc = { .port = rc_listen_port(p) };
    pthread_t th;
    ck_assert(pthread_create(&th, NULL, listen_client_main, &lc) == 0);
    ck_assert(rc_wait_for(p, false, "from the client\n", 10000));
    rc_write(p, "from the server\n", 16);
    rc_close_stdin(p);
    ck_assert_msg(rc_wait_for(p, false, "late bytes after your EOF\n", 10000), "stdout: %s",
                  p->out);
    int code = rc_finish(p, 10000);
    pthread_join(th, NULL);
    ck_assert_msg(code == 0, "exit %d: %s", code, p->err);
    ck_assert_msg(lc.error[0] == '\0', "client: %s", lc.error);
    ck_assert_int_eq(lc.end, RILL_EOF);
    lc.got[lc.len] = '\0';
    ck_assert_str_eq(lc.got, "from the server\n");
    ck_assert_str_eq(p->out, "from the client\nlate bytes after your EOF\n");
    rc_free(p);
}
END_TEST

START_TEST(crlf_translation)
{
    struct recorder rec = { .answer = "" };
    peer *pr = peer_start(NULL, script_record_then_answer, &rec);
    char port[8];
    portstr(port, peer_port(pr));
    const char *args[] = { "--crlf", "127.0.0.1", port, NULL };
    rc_free(rc_expect(args, "a\nb\r\nc", 0, NULL));
    peer_stop(pr);
    ck_assert_str_eq(rec.got, "a\r\nb\r\nc");
}
END_TEST

/*
 * rillcat's stdout is a pipe whose reader goes away while the peer keeps sending: rillcat must
 * not die of SIGPIPE (silently, status 141 in a shell) but exit 1 with one line.
 */
START_TEST(stdout_reader_gone)
{
    int fds = rt_count_fds();
    peer *pr = peer_start(NULL, script_flood, NULL);
    char port[8];
    portstr(port, peer_port(pr));
    const char *args[] = { "127.0.0.1", port, NULL };
    rc_proc *p = rc_start_ex(args, false, true);
    char buf[4096];
    ck_assert_msg(raw_read(p->out_fd, buf, sizeof buf, 10000) > 0, "nothing on stdout: %s", p->err);
    close(p->out_fd); /* the reader of stdout is gone; data keeps arriving */
    p->out_fd = -1;
    rc_wait_for(p, true, "\n", 10000);
    int code = rc_finish(p, 20000);
    ck_assert_msg(code == 1, "rillcat ended with %d%s; stderr: %s", code,
                  code > 128 ? " (killed by a signal)" : "", p->err);
    ck_assert_str_eq(p->err, "rillcat: write to stdout: Broken pipe\n");
    rc_free(p);
    peer_stop(pr);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

START_TEST(unix_socket)
{
    char dir[32], path[64];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/rc.sock", dir);
    const char *server[] = { "-l", "-v", "--echo", "--unix", path, NULL };
    rc_proc *srv = rc_start(server, false);
    ck_assert(rc_wait_for(srv, true, "listening on unix socket", 10000));
    const char *client[] = { "--unix", path, NULL };
    rc_proc *p = rc_expect(client, "over a unix socket\n", 0, NULL);
    ck_assert_str_eq(p->out, "over a unix socket\n");
    rc_free(p);
    int code = rc_finish(srv, 10000);
    ck_assert_msg(code == 0, "listener exit %d: %s", code, srv->err);
    rc_free(srv);
    rt_rmdir(dir);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * TLS facts, --insecure
 */

START_TEST(verbose_tls_facts)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, "h2,http/1.1");
    peer *pr = peer_start(cfg, script_echo, NULL);
    char port[8];
    portstr(port, peer_port(pr));
    const char *args[] = { "-v",           "--tls",       "--cafile",  C->ca, "--alpn", "h2",
                           "--servername", RT_CERTS_HOST, "127.0.0.1", port,  NULL };
    rc_proc *p = rc_expect(args, "facts\n", 0, NULL);
    ck_assert_str_eq(p->out, "facts\n");
    const char *want[] = { "* chain: tls(",
                           "alpn=h2",
                           "host=" RT_CERTS_HOST,
                           "> tcp(fd=",
                           "TLSv1.3",
                           "TLS_",
                           "verified",
                           "subject CN=" RT_CERTS_HOST,
                           "issuer CN=Rill Test Intermediate",
                           "DNS:" RT_CERTS_HOST,
                           "valid ",
                           C->good.pin };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(p->err, want[i]), "-v output lacks \"%s\": %s", want[i], p->err);
    rc_free(p);
    peer_stop(pr);
    rill_tls_config_free(cfg);
}
END_TEST

START_TEST(insecure_warns)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->selfsigned, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    peer *pr = peer_start(cfg, script_echo, NULL);
    char port[8];
    portstr(port, peer_port(pr));
    const char *strict[] = { "--tls", "127.0.0.1", port, NULL };
    rc_free(rc_expect(strict, "", 60, NULL));
    const char *args[] = { "--tls", "--insecure", "127.0.0.1", port, NULL };
    rc_proc *p = rc_expect(args, "anyway\n", 0, "warning: --insecure");
    ck_assert_str_eq(p->out, "anyway\n");
    rc_free(p);
    /* Pins still apply under --insecure. */
    const char *pinned[] = { "--tls", "--insecure", "--pin", C->good.pin, "127.0.0.1", port, NULL };
    rc_free(rc_expect(pinned, "", 60, "pin"));
    peer_stop(pr);
    rill_tls_config_free(cfg);
}
END_TEST

/* rillcat on both ends: -l --tls with a certificate, and a client verifying it. */
START_TEST(tls_listener)
{
    const rt_certs *C = rt_certs_get();
    const char *server[] = { "-l",    "-v",        "--tls",  "--cert", C->good.chain,
                             "--key", C->good.key, "--echo", "0",      NULL };
    rc_proc *srv = rc_start(server, false);
    char port[8];
    portstr(port, rc_listen_port(srv));
    const char *client[] = { "--tls",       "--cafile",  C->ca, "--servername",
                             RT_CERTS_HOST, "127.0.0.1", port,  NULL };
    rc_proc *p = rc_expect(client, "both ends rillcat\n", 0, NULL);
    ck_assert_str_eq(p->out, "both ends rillcat\n");
    rc_free(p);
    int code = rc_finish(srv, 10000);
    ck_assert_msg(code == 0, "listener exit %d: %s", code, srv->err);
    ck_assert_msg(strstr(srv->err, "tls(server TLSv1.3"), "%s", srv->err);
    rc_free(srv);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * STARTTLS
 */

static const char *const protos[] = { "smtp", "imap", "pop3", "plain-line", "lmtp",     "ftp",
                                      "xmpp", "ldap", "nntp", "sieve",      "postgres", "irc" };
#define NPROTOS ((int)(sizeof protos / sizeof protos[0]))

START_TEST(starttls_upgrades)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    struct starttls_script sc = { .proto = protos[_i], .cfg = cfg };
    peer *pr = peer_start(NULL, script_starttls, &sc);
    char port[8];
    portstr(port, peer_port(pr));
    const char *args[] = { "-v",           "--starttls",  protos[_i],  "--cafile", C->ca,
                           "--servername", RT_CERTS_HOST, "127.0.0.1", port,       NULL };
    rc_proc *p = rc_expect(args, "after the upgrade\n", 0, NULL);
    ck_assert_str_eq(p->out, "after the upgrade\n");
    ck_assert_msg(strstr(p->err, "* chain: tls(TLSv1.") && strstr(p->err, "> tcp("), "%s", p->err);
    rc_free(p);
    peer_stop(pr);
    ck_assert(sc.upgraded);
    rill_tls_config_free(cfg);
}
END_TEST

START_TEST(starttls_refusals)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    for (int inject = 0; inject < 2; inject++) {
        struct starttls_script sc = {
            .proto = protos[_i], .cfg = cfg, .inject = inject, .refuse = !inject
        };
        peer *pr = peer_start(NULL, script_starttls, &sc);
        char port[8];
        portstr(port, peer_port(pr));
        const char *args[] = {
            "--starttls", protos[_i], "--cafile", C->ca, "127.0.0.1", port, NULL
        };
        /* A refusal is curl's 64 (--ssl-reqd); injected plaintext a failed handshake (35). */
        /*
         * Line protocols read the injected bytes with the answer and refuse them; after the
         * exact-length answers of ldap and postgres they are left on the wire, where the
         * handshake takes them for a TLS record and fails: either way no byte is trusted.
         */
        bool binary = strcmp(protos[_i], "ldap") == 0 || strcmp(protos[_i], "postgres") == 0;
        rc_proc *p = rc_expect(args, "", inject ? 35 : 64, NULL);
        if (inject && binary)
            ck_assert_msg(strstr(p->err, "plaintext") ||
                              strstr(p->err, "rillcat: TLS handshake: tls: handshake failed: "),
                          "%s", p->err);
        else if (inject)
            ck_assert_msg(strstr(p->err, "rillcat: STARTTLS: ") && strstr(p->err, "plaintext"),
                          "%s", p->err);
        else
            ck_assert_msg(strstr(p->err, "rillcat: STARTTLS: ") &&
                              (strstr(p->err, "does not offer") ||
                               strstr(p->err, "did not agree") ||
                               strstr(p->err, "refused StartTLS")),
                          "%s", p->err);
        rc_free(p);
        peer_stop(pr);
        ck_assert(!sc.upgraded);
    }
    rill_tls_config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * -l -k --echo with 50 concurrent clients
 */

#define NCLIENTS   50
#define PER_CLIENT (256u << 10)

struct echo_client {
    uint16_t port;
    int index;
    rill_tls_config *tls; /* NULL: plain */
    pthread_barrier_t *start;
    char error[RILL_ERRMSG_MAX + 64];
};

/* Send a distinct pattern, half-close, read it all back, compare. */
static void *echo_client_main(void *arg)
{
    struct echo_client *ec = arg;
    unsigned char *sent = malloc(PER_CLIENT), *got = malloc(PER_CLIENT + 1);
    rt_fill_pattern(sent, PER_CLIENT, 7000 + (uint64_t)ec->index);
    pthread_barrier_wait(ec->start);
    rill_connect_opts opts;
    rill_connect_opts_init(&opts);
    opts.timeout_ms = opts.read_timeout_ms = opts.write_timeout_ms = 20000;
    opts.tls = ec->tls;
    rill_stream *s = NULL;
    rill_error err;
    size_t total = 0;
    rill_status st = rill_connect(NULL, "127.0.0.1", ec->port, &opts, &s, &err);
    if (st != RILL_OK) {
        snprintf(ec->error, sizeof ec->error, "connect: %s", err.msg);
        goto out;
    }
    /* Write in slices and read what is echoed in between, so neither side's buffers fill. */
    size_t off = 0;
    while (st == RILL_OK && off < PER_CLIENT) {
        size_t n = PER_CLIENT - off < 16384 ? PER_CLIENT - off : 16384;
        st = rill_write_all(s, sent + off, n, NULL);
        off += n;
        size_t r = 0;
        if (st == RILL_OK && total < off)
            st = rill_read_full(s, got + total, off - total, &r);
        total += r;
    }
    if (st == RILL_OK)
        st = rill_shutdown(s);
    if (st == RILL_OK) {
        size_t n = 0;
        st = rill_read(s, got + total, 1, &n); /* nothing more: EOF */
        total += n;
    }
    if (st != RILL_EOF)
        snprintf(ec->error, sizeof ec->error, "client %d: %s (%s)", ec->index, rill_strerror(st),
                 rill_errmsg(s));
    else if (total != PER_CLIENT || memcmp(sent, got, PER_CLIENT) != 0)
        snprintf(ec->error, sizeof ec->error, "client %d: echo differs (%zu bytes)", ec->index,
                 total);
out:
    (void)rill_close(s);
    free(sent);
    free(got);
    return NULL;
}

static void many_clients(bool tls)
{
    const rt_certs *C = rt_certs_get();
    const char *plain[] = { "-l", "-k", "--echo", "-v", "0", NULL };
    const char *secure[] = { "-l",          "-k",    "--echo",    "-v", "--tls", "--cert",
                             C->good.chain, "--key", C->good.key, "0",  NULL };
    rc_proc *srv = rc_start(tls ? secure : plain, false);
    uint16_t port = rc_listen_port(srv);
    rill_tls_config *cfg = NULL;
    if (tls) {
        rill_error E;
        CK(rill_tls_config_new(&cfg, &E));
        CK(rill_tls_config_set_ca_file(cfg, C->ca, &E));
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NCLIENTS);
    static struct echo_client clients[NCLIENTS];
    pthread_t threads[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        clients[i] = (struct echo_client){ .port = port, .index = i, .tls = cfg, .start = &start };
        ck_assert(pthread_create(&threads[i], NULL, echo_client_main, &clients[i]) == 0);
    }
    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    /* Concurrency: every client was served while the others were open (-v counts them). */
    int connections = 0;
    for (const char *at = srv->err; (at = strstr(at, "* connection from ")); at++)
        connections++;
    rc_kill(srv);
    for (int i = 0; i < NCLIENTS; i++)
        ck_assert_msg(clients[i].error[0] == '\0', "%s; server: %s", clients[i].error, srv->err);
    ck_assert_int_eq(connections, NCLIENTS);
    ck_assert_msg(strstr(srv->err, "rillcat: ") == NULL, "server reported: %s", srv->err);
    rc_free(srv);
    rill_tls_config_free(cfg);
}

START_TEST(listen_keep_echo_50_plain)
{
    many_clients(false);
}
END_TEST

START_TEST(listen_keep_echo_50_tls)
{
    many_clients(true);
}
END_TEST

/* Without -k the listener serves one connection and exits. */
START_TEST(listen_once)
{
    const char *args[] = { "-l", "-v", "--echo", "0", NULL };
    rc_proc *srv = rc_start(args, false);
    char port[8];
    portstr(port, rc_listen_port(srv));
    const char *client[] = { "127.0.0.1", port, NULL };
    rc_free(rc_expect(client, "once\n", 0, NULL));
    int code = rc_finish(srv, 10000);
    ck_assert_msg(code == 0, "exit %d: %s", code, srv->err);
    /* The listener is gone: a second client is refused. */
    rc_free(rc_expect(client, "", 7, "refused"));
    rc_free(srv);
}
END_TEST

/* -l -k without --echo whose stdout nobody reads: each connection fails, the server lives. */
START_TEST(listen_keep_stdout_reader_gone)
{
    int fds = rt_count_fds();
    const char *args[] = { "-l", "-k", "-v", "0", NULL };
    rc_proc *srv = rc_start_ex(args, false, true);
    close(srv->out_fd);
    srv->out_fd = -1;
    uint16_t port = rc_listen_port(srv);
    for (int i = 0; i < 3; i++) {
        int fd = raw_connect(port);
        ck_assert(write(fd, "for stdout\n", 11) == 11);
        char buf[64];
        ssize_t n = raw_read(fd, buf, sizeof buf, 10000);
        ck_assert_msg(n == 0, "connection %d: read gave %zd, not EOF; server: %s", i, n, srv->err);
        close(fd);
        int lines = rc_wait_count(srv, "rillcat: write to stdout: Broken pipe\n", i + 1, 10000);
        ck_assert_msg(lines == i + 1, "%d failure lines after %d connections: %s", lines, i + 1,
                      srv->err);
        ck_assert_msg(rc_running(srv), "the server ended: %s", srv->err);
    }
    rc_kill(srv);
    ck_assert_int_eq(rc_count(srv, "rillcat: "), 3);
    rc_free(srv);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/*
 * --max-conns 2: with two connections held open a third is accepted and closed at once (EOF, no
 * descriptor kept), -v says so and counts it; once one of the two ends, new ones are served.
 */
START_TEST(listen_max_conns)
{
    int fds = rt_count_fds();
    const char *args[] = { "-l", "-k", "--echo", "-v", "--max-conns", "2", "0", NULL };
    rc_proc *srv = rc_start(args, false);
    uint16_t port = rc_listen_port(srv);
    int held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = raw_connect(port);
        ck_assert_msg(raw_echoes(held[i], 'a'), "connection %d not served: %s", i, srv->err);
    }
    int server_fds = proc_fd_count(srv->pid);
    for (int i = 1; i <= 3; i++) {
        int fd = raw_connect(port);
        char c;
        int64_t start = rt_now_us();
        ssize_t n = raw_read(fd, &c, 1, 10000);
        ck_assert_msg(n == 0, "over the limit: read gave %zd, not EOF; server: %s", n, srv->err);
        rt_assert_elapsed(start, 0, 5000);
        close(fd);
        char want[64];
        snprintf(want, sizeof want, "(%d refused so far)\n", i);
        ck_assert_msg(rc_wait_for(srv, true, want, 10000), "-v lacks \"%s\": %s", want, srv->err);
    }
    ck_assert_msg(rc_count(srv, "* refused a connection from 127.0.0.1:") == 3 &&
                      rc_count(srv, "2 connections open, the --max-conns limit") == 3,
                  "-v output: %s", srv->err);
    ck_assert_int_eq(proc_fd_count(srv->pid), server_fds);
    /* The two held connections were not disturbed. */
    ck_assert(raw_echoes(held[0], 'b') && raw_echoes(held[1], 'b'));
    /* One of them ends: its slot is free again (the server may need a moment to notice). */
    close(held[0]);
    ck_assert(rc_wait_count(srv, "closed the connection", 1, 10000) == 1);
    bool served = false;
    int64_t end = rt_now_us() + (int64_t)10 * 1000 * 1000;
    while (!served && rt_now_us() < end) {
        int fd = raw_connect(port);
        served = raw_echoes(fd, 'c');
        close(fd);
        if (!served)
            usleep(20 * 1000);
    }
    ck_assert_msg(served, "no connection served after one ended: %s", srv->err);
    ck_assert(raw_echoes(held[1], 'd'));
    close(held[1]);
    ck_assert_msg(rc_running(srv), "the server ended: %s", srv->err);
    rc_kill(srv);
    ck_assert_msg(rc_count(srv, "rillcat: ") == 0, "server reported: %s", srv->err);
    rc_free(srv);
    ck_assert_int_eq(rt_count_fds(), fds);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * -l --tls with --sni entries and --reload
 */

/* A verified rill TLS client to 127.0.0.1:@p port for @p name; the served key's pin in @p pin. */
static rill_status sni_hello(uint16_t port, const char *name, int verify_name, char *pin,
                             size_t len, char *msg, size_t msglen)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = NULL;
    rill_error err;
    CK(rill_tls_config_new(&cfg, &err));
    CK(rill_tls_config_set_ca_file(cfg, C->ca, &err));
    if (!verify_name)
        CK(rill_tls_config_insecure_noverifyname(cfg, &err));
    rill_connect_opts o;
    rill_connect_opts_init(&o);
    o.read_timeout_ms = o.write_timeout_ms = 10000;
    rill_stream *tcp = NULL, *s = NULL;
    CK(rill_tcp_connect_addr("127.0.0.1", port, &o, &tcp, &err));
    CK(rill_tls_client(tcp, cfg, name, 0, &s));
    rill_status st = rill_tls_handshake(s);
    rill_tls_info info;
    if (st == RILL_OK)
        st = rill_tls_get_info(s, &info);
    if (st == RILL_OK)
        snprintf(pin, len, "%s", info.spki_sha256);
    snprintf(msg, msglen, "%s", rill_errmsg(s));
    rill_close(s);
    rill_tls_config_free(cfg);
    return st;
}

START_TEST(listen_sni_entries)
{
    const rt_certs *C = rt_certs_get();
    const char *server[] = { "-l",
                             "-k",
                             "-v",
                             "--echo",
                             "--tls",
                             "--cert",
                             C->good.chain,
                             "--key",
                             C->good.key,
                             "--sni",
                             "other.example",
                             "--cert",
                             C->wrong.chain,
                             "--key",
                             C->wrong.key,
                             "--sni",
                             "*.wild.rill.test",
                             "--cert",
                             C->wildcard.chain,
                             "--key",
                             C->wildcard.key,
                             "127.0.0.1",
                             "0",
                             NULL };
    rc_proc *srv = rc_start(server, false);
    uint16_t port = rc_listen_port(srv);
    static const struct {
        const char *name, *entry;
    } cases[] = {
        { "other.example", "other.example" },
        { "a.wild.rill.test", "*.wild.rill.test" },
        { RT_CERTS_HOST, "(default)" },
    };
    const char *pins[] = { C->wrong.pin, C->wildcard.pin, C->good.pin };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pin[64] = "", msg[RILL_ERRMSG_MAX];
        rill_status st = sni_hello(port, cases[i].name, 1, pin, sizeof pin, msg, sizeof msg);
        ck_assert_msg(st == RILL_OK, "%s: %s; server: %s", cases[i].name, msg, srv->err);
        ck_assert_str_eq(pin, pins[i]);
        char sni_line[128];
        snprintf(sni_line, sizeof sni_line, "* SNI from the client: %s\n", cases[i].name);
        ck_assert_msg(rc_wait_for(srv, true, sni_line, 10000), "-v lacks \"%s\": %s", sni_line,
                      srv->err);
        char served[200];
        snprintf(served, sizeof served, "* certificate served: entry %s, ECDSA key %s\n",
                 cases[i].entry, pins[i]);
        ck_assert_msg(rc_wait_for(srv, true, served, 10000), "-v lacks \"%s\": %s", served,
                      srv->err);
    }
    rc_kill(srv);
    rc_free(srv);
}
END_TEST

static void copy_to(const char *from, const char *to)
{
    size_t len = 0;
    char *data = rt_file_read(from, &len);
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    rt_file_write(tmp, data, len);
    ck_assert_int_eq(rename(tmp, to), 0);
    free(data);
}

/* --reload: a changed pair is served after the next check; a bad file keeps the last good one. */
START_TEST(listen_reload)
{
    const rt_certs *C = rt_certs_get();
    char dir[32], cert[64], key[64];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    copy_to(C->good.chain, cert);
    copy_to(C->good.key, key);
    const char *server[] = { "-l", "-k",    "--echo", "-v",       "--tls", "--cert",
                             cert, "--key", key,      "--reload", "0",     NULL };
    rc_proc *srv = rc_start(server, false);
    uint16_t port = rc_listen_port(srv);
    char pin[64], msg[RILL_ERRMSG_MAX];
    ck_assert_int_eq(sni_hello(port, RT_CERTS_HOST, 0, pin, sizeof pin, msg, sizeof msg), RILL_OK);
    ck_assert_str_eq(pin, C->good.pin);

    copy_to(C->wrong.chain, cert);
    copy_to(C->wrong.key, key);
    usleep(1100 * 1000); /* --reload looks at most once a second */
    ck_assert_int_eq(sni_hello(port, RT_CERTS_HOST, 0, pin, sizeof pin, msg, sizeof msg), RILL_OK);
    ck_assert_msg(strcmp(pin, C->wrong.pin) == 0, "not reloaded; server: %s", srv->err);
    ck_assert_msg(rc_wait_for(srv, true, "* --reload: tls: reloaded 1 certificate", 10000), "%s",
                  srv->err);

    /* Half a certificate (a copy still being written): the last good pair stays, and why. */
    size_t len = 0;
    char *chain = rt_file_read(C->good.chain, &len);
    rt_file_write(cert, chain, len / 4);
    free(chain);
    usleep(1100 * 1000);
    ck_assert_int_eq(sni_hello(port, RT_CERTS_HOST, 0, pin, sizeof pin, msg, sizeof msg), RILL_OK);
    ck_assert_str_eq(pin, C->wrong.pin);
    const char *warning = "rillcat: warning: --reload: tls: reload failed, keeping the "
                          "certificates in use: cannot load certificate";
    ck_assert_msg(rc_wait_for(srv, true, warning, 10000), "stderr lacks the warning: %s", srv->err);
    ck_assert_msg(strstr(srv->err, cert), "the warning does not name the file: %s", srv->err);
    ck_assert_msg(rc_running(srv), "the server ended: %s", srv->err);
    rc_kill(srv);
    rc_free(srv);
    rt_rmdir(dir);
}
END_TEST

static const struct {
    const char *args[14];
    int code;
    const char *message;
} sni_usage_cases[] = {
    { { "--sni", "a.test", "127.0.0.1", "1", NULL }, 2, "--sni works only with -l --tls" },
    { { "-l", "--reload", "0", NULL }, 2, "--reload works only with -l --tls" },
    { { "-l", "--tls", "--cert", "C", "--sni", "a.test", "0", NULL },
      2,
      "--sni a.test needs --cert (and --key) after it" },
    { { "-l", "--tls", "--cert", "C", "--key", "K", "--sni", "a b", "--cert", "C", "0", NULL },
      2,
      "certificate name \"a b\" is not a host name" },
    { { "-l", "--tls", "--cert", "C", "--key", "K", "--sni", "a.test", "--cert",
        "/nonexistent/x.pem", "0", NULL },
      58,
      "rillcat: --sni: tls: cannot open certificate /nonexistent/x.pem" },
};

START_TEST(listen_sni_usage)
{
    const rt_certs *C = rt_certs_get();
    const char *args[14];
    for (size_t i = 0; i < 14; i++) {
        const char *a = sni_usage_cases[_i].args[i];
        args[i] = a && strcmp(a, "C") == 0   ? C->good.chain
                  : a && strcmp(a, "K") == 0 ? C->good.key
                                             : a;
    }
    rc_proc *p = rc_expect(args, NULL, sni_usage_cases[_i].code, sni_usage_cases[_i].message);
    rc_free(p);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Third-party peers: openssl s_client, gnutls-cli, Python's ssl module, nginx
 */

/*
 * Run @p argv (argv[0] is looked up in PATH) with @p input on stdin, stdout and stderr into
 * @p out (NUL-terminated, truncated to @p cap). Returns the exit status, or 128+signal; fails
 * the test when it does not finish within @p timeout_ms.
 */
static int run_tool(const char *const *argv, const char *input, int timeout_ms, char *out,
                    size_t cap)
{
    int in[2], o[2];
    ck_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(o, O_CLOEXEC) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        if (dup2(in[0], 0) < 0 || dup2(o[1], 1) < 0 || dup2(o[1], 2) < 0)
            _exit(126);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    if (input && *input)
        ck_assert(write(in[1], input, strlen(input)) == (ssize_t)strlen(input));
    close(in[1]);
    size_t len = 0;
    out[0] = '\0';
    int64_t end = rt_now_us() + (int64_t)timeout_ms * 1000;
    bool killed = false;
    for (;;) {
        int64_t left = (end - rt_now_us()) / 1000;
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = true;
        }
        struct pollfd p = { .fd = o[0], .events = POLLIN };
        if (poll(&p, 1, left > 0 ? (int)left : 100) <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(o[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(out + len, buf, take);
        len += take;
        out[len] = '\0';
    }
    close(o[0]);
    int status = 0;
    ck_assert(waitpid(pid, &status, 0) == pid);
    ck_assert_msg(!killed, "%s still running after %d ms: %s", argv[0], timeout_ms, out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A TLS 1.3 client without a certificate, refused by the server: what it must see. */
static const char py_no_cert_client[] =
    "import socket, ssl, sys\n"
    "c = ssl.create_default_context(cafile=sys.argv[1])\n"
    "s = c.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[2]))),\n"
    "                  server_hostname=sys.argv[3])\n"
    "try:\n"
    "    s.sendall(b'hello\\n')\n"
    "    print('read', s.recv(100))\n"
    "except ssl.SSLError as e:\n"
    "    print('alert:', e.reason)\n"
    "    sys.exit(3)\n"
    "except OSError as e:\n"
    "    print('no alert:', e)\n"
    "    sys.exit(4)\n";

/*
 * `rillcat -l --tls --cafile` refuses TLS 1.3 clients without a certificate: each of OpenSSL,
 * GnuTLS and Python must receive the certificate_required alert (116), 20 times each, not a
 * reset or a bare EOF. A TLS 1.3 client sends its Finished (and data) after the server's last
 * flight; a server that closed with those bytes unread made the kernel reset the connection.
 */
START_TEST(alert_delivered_to_clients)
{
    const rt_certs *C = rt_certs_get();
    const char *server[] = { "-l",     "-k",          "-v",    "--echo",    "--tls",
                             "--cert", C->good.chain, "--key", C->good.key, "--cafile",
                             C->ca,    "0",           NULL };
    rc_proc *srv = rc_start(server, false);
    char port[8], hostport[32];
    portstr(port, rc_listen_port(srv));
    snprintf(hostport, sizeof hostport, "127.0.0.1:%s", port);
    static char out[65536];
    enum { ROUNDS = 20 };
    for (int i = 0; i < ROUNDS; i++) {
        const char *ossl[] = { "openssl", "s_client",    "-connect",    hostport, "-CAfile",
                               C->ca,     "-servername", RT_CERTS_HOST, "-quiet", NULL };
        int code = run_tool(ossl, "hello\n", 10000, out, sizeof out);
        ck_assert_msg(code == 1 && strstr(out, "SSL alert number 116"),
                      "openssl s_client round %d: exit %d: %s", i, code, out);
        const char *gcli[] = { "gnutls-cli",  "--x509cafile",      C->ca,         "--sni-hostname",
                               RT_CERTS_HOST, "--verify-hostname", RT_CERTS_HOST, "-p",
                               port,          "127.0.0.1",         NULL };
        code = run_tool(gcli, "hello\n", 10000, out, sizeof out);
        ck_assert_msg(code == 1 && strstr(out, "Received alert [116]: Certificate is required"),
                      "gnutls-cli round %d: exit %d: %s", i, code, out);
        const char *py[] = { "python3", "-c", py_no_cert_client, C->ca, port, RT_CERTS_HOST, NULL };
        code = run_tool(py, NULL, 10000, out, sizeof out);
        ck_assert_msg(code == 3 && strstr(out, "alert: TLSV13_ALERT_CERTIFICATE_REQUIRED"),
                      "python ssl round %d: exit %d: %s", i, code, out);
    }
    ck_assert_int_eq(rc_wait_count(srv, "peer did not return a certificate", 3 * ROUNDS, 5000),
                     3 * ROUNDS);
    rc_kill(srv);
    rc_free(srv);
}
END_TEST

/* ---- nginx on a loopback port, started for the test ---- */

typedef struct nginx_proc {
    pid_t pid;
    uint16_t port;
    char dir[32];
} nginx_proc;

/* Whether something accepts connections on 127.0.0.1:@p port. */
static bool port_listening(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert(fd >= 0);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/*
 * nginx in the foreground, one process (no master, so it needs no other user), serving TLS on
 * 127.0.0.1 with the test set's good leaf: "/" answers "hello from nginx\n". nginx answers a
 * close_notify by closing without its own once it has read ours.
 */
static nginx_proc *nginx_start(void)
{
    const rt_certs *C = rt_certs_get();
    nginx_proc *n = calloc(1, sizeof *n);
    ck_assert(n != NULL);
    rt_mkdtemp(n->dir, sizeof n->dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        n->port = closed_port(); /* free now: nginx takes it right after */
        char conf[4096], path[64];
        snprintf(conf, sizeof conf,
                 "daemon off; master_process off; worker_processes 1;\n"
                 "pid %s/nginx.pid; error_log %s/error.log info;\n"
                 "events { worker_connections 64; }\n"
                 "http { access_log off; client_body_temp_path %s; proxy_temp_path %s;\n"
                 "  fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
                 "  server { listen 127.0.0.1:%u ssl; ssl_certificate %s;\n"
                 "    ssl_certificate_key %s;\n"
                 "    location / { return 200 \"hello from nginx\\n\"; } } }\n",
                 n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, n->port, C->good.chain,
                 C->good.key);
        snprintf(path, sizeof path, "%s/nginx.conf", n->dir);
        FILE *f = fopen(path, "w");
        ck_assert(f && fputs(conf, f) >= 0 && fclose(f) == 0);
        n->pid = fork();
        ck_assert(n->pid >= 0);
        if (n->pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* a failed test leaves no nginx behind */
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0);
            dup2(null, 1);
            execlp("nginx", "nginx", "-q", "-p", n->dir, "-c", path, (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 200; i++) { /* up to 10 s */
            if (port_listening(n->port))
                return n;
            if (waitpid(n->pid, NULL, WNOHANG) == n->pid)
                break; /* it did not start: the port was taken meanwhile, try another */
            usleep(50 * 1000);
        }
        kill(n->pid, SIGKILL);
        waitpid(n->pid, NULL, 0);
    }
    ck_abort_msg("nginx did not start (see %s/error.log)", n->dir);
    return NULL;
}

static void nginx_stop(nginx_proc *n)
{
    if (!n)
        return;
    kill(n->pid, SIGTERM);
    waitpid(n->pid, NULL, 0);
    rt_rmdir(n->dir);
    free(n);
}

static const char http_keepalive[] = "GET / HTTP/1.1\r\nHost: " RT_CERTS_HOST "\r\n\r\n";
static const char http_close[] =
    "GET / HTTP/1.1\r\nHost: " RT_CERTS_HOST "\r\nConnection: close\r\n\r\n";

/*
 * The docs' first example against nginx. By default rillcat half-closes on stdin EOF, nginx
 * then closes without close_notify: 56 (or 0 when nginx's close_notify wins), and the message
 * names --allow-truncation. --allow-truncation makes that end clean; --no-shutdown (and
 * --ign-eof) keep the connection until nginx closes after "Connection: close", or until
 * --timeout with keep-alive. -v says which side closed how.
 */
START_TEST(nginx_half_close)
{
    const rt_certs *C = rt_certs_get();
    nginx_proc *ng = nginx_start();
    char port[8];
    portstr(port, ng->port);
    for (int i = 0; i < 3; i++) {
        const char *args[] = { "--tls",       "--cafile",  C->ca, "--servername",
                               RT_CERTS_HOST, "127.0.0.1", port,  NULL };
        rc_proc *p = rc_start(args, false);
        rc_write(p, http_keepalive, strlen(http_keepalive));
        int code = rc_finish(p, 10000);
        ck_assert_msg(code == 0 || (code == 56 && strstr(p->err, "without close_notify") &&
                                    strstr(p->err, "--allow-truncation accepts such an end")),
                      "default: exit %d: %s", code, p->err);
        ck_assert_msg(p->out && strstr(p->out, "hello from nginx"), "default: no reply: %s",
                      p->err);
        rc_free(p);
    }
    for (int i = 0; i < 5; i++) {
        const char *args[] = {
            "-v",           "--allow-truncation", "--tls",     "--cafile", C->ca,
            "--servername", RT_CERTS_HOST,        "127.0.0.1", port,       NULL
        };
        rc_proc *p = rc_expect(args, http_keepalive, 0, NULL);
        ck_assert_msg(p->out && strstr(p->out, "hello from nginx"), "%s", p->err);
        ck_assert_msg(strstr(p->err, "* stdin ended: half-closed the connection (TLS close_notify, "
                                     "then TCP FIN)"),
                      "%s", p->err);
        ck_assert_msg(strstr(p->err, "closed the connection without TLS close_notify (TCP FIN "
                                     "only): accepted, --allow-truncation") ||
                          strstr(p->err, "closed the connection (TLS close_notify)"),
                      "%s", p->err);
        rc_free(p);
    }
    for (int i = 0; i < 6; i++) {
        const char *args[] = { "-v",          i % 2 ? "--ign-eof" : "--no-shutdown",
                               "--tls",       "--cafile",
                               C->ca,         "--servername",
                               RT_CERTS_HOST, "127.0.0.1",
                               port,          NULL };
        rc_proc *p = rc_expect(args, http_close, 0, NULL);
        ck_assert_msg(p->out && strstr(p->out, "hello from nginx"), "%s", p->err);
        ck_assert_msg(strstr(p->err, "* stdin ended: --no-shutdown: the connection stays open"),
                      "%s", p->err);
        ck_assert_msg(strstr(p->err, "closed the connection (TLS close_notify)"), "%s", p->err);
        rc_free(p);
    }
    const char *idle[] = { "--no-shutdown", "--timeout",   "300",       "--tls", "--cafile", C->ca,
                           "--servername",  RT_CERTS_HOST, "127.0.0.1", port,    NULL };
    rc_proc *p = rc_expect(idle, http_keepalive, 28,
                           "rillcat: timeout: nothing sent or received for 300 ms (--timeout)");
    ck_assert_msg(p->out && strstr(p->out, "hello from nginx"), "%s", p->err);
    rc_free(p);
    nginx_stop(ng);
}
END_TEST

/*
 * An SMTP server after STARTTLS that, like a real one, gives up on a client that has closed
 * its side by the time a command is handled ("lost connection after QUIT"): the 221 is not
 * sent and the connection is cut without close_notify. A client that keeps its side open gets
 * the 221 and close_notify.
 */
static void script_smtp_quit(rill_stream *tls, void *arg)
{
    (void)arg;
    rill_stream *lines = NULL;
    if (rill_lines_new(tls, 1024, RILL_EOL_ANY, 0, &lines) != RILL_OK) {
        rill_close(tls);
        return;
    }
    for (;;) {
        const char *line;
        size_t len;
        if (rill_read_line(lines, &line, &len) != RILL_OK)
            break;
        if (strncasecmp(line, "EHLO", 4) == 0) {
            if (!send_str(lines, "250-peer.rill.test\r\n250 PIPELINING\r\n"))
                break;
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            usleep(200 * 1000);
            char b[16];
            size_t n = 0;
            bool gone = rill_set_timeouts(lines, 0, 0) == RILL_OK &&
                        rill_read(lines, b, sizeof b, &n) == RILL_EOF;
            if (gone) {
                shutdown(rill_fd(lines), SHUT_RDWR); /* cut: no 221, no close_notify */
                break;
            }
            if (rill_set_timeouts(lines, 5000, 5000) == RILL_OK)
                (void)send_str(lines, "221 2.0.0 Bye\r\n");
            break;
        } else if (!send_str(lines, "502 5.5.2 unknown\r\n")) {
            break;
        }
    }
    rill_status st = rill_set_timeouts(lines, 1000, 1000); /* a bounded close */
    (void)st;
    (void)rill_close(lines);
}

/*
 * `printf 'EHLO x\nQUIT\n' | rillcat --starttls smtp` lost the 221 when rillcat half-closed
 * at stdin's end; --no-shutdown keeps it.
 */
START_TEST(smtp_quit_reply_kept)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    struct starttls_script sc = { .proto = "smtp", .cfg = cfg, .after = script_smtp_quit };
    peer *pr = peer_start(NULL, script_starttls, &sc);
    char port[8];
    portstr(port, peer_port(pr));
    const char *dflt[] = { "--starttls",  "smtp",   "--cafile",  C->ca, "--servername",
                           RT_CERTS_HOST, "--crlf", "127.0.0.1", port,  NULL };
    rc_proc *p = rc_expect(dflt, "EHLO x\nQUIT\n", 56,
                           "rillcat: receive: tls: peer closed the connection without "
                           "close_notify (the data may be truncated); --allow-truncation "
                           "accepts such an end");
    ck_assert_msg(p->out && strstr(p->out, "250 PIPELINING") && !strstr(p->out, "221"), "%s",
                  p->out);
    rc_free(p);
    for (int i = 0; i < 5; i++) {
        const char *keep[] = { "-v",       "--no-shutdown", "--starttls",   "smtp",
                               "--cafile", C->ca,           "--servername", RT_CERTS_HOST,
                               "--crlf",   "127.0.0.1",     port,           NULL };
        p = rc_expect(keep, "EHLO x\nQUIT\n", 0, NULL);
        ck_assert_msg(p->out && strstr(p->out, "221 2.0.0 Bye\r\n"), "%s", p->err);
        ck_assert_msg(strstr(p->err, "closed the connection (TLS close_notify)"), "%s", p->err);
        rc_free(p);
    }
    peer_stop(pr);
    rill_tls_config_free(cfg);
}
END_TEST

/*
 * s_client's knobs: --groups (a server that only takes X25519 answers a P-256 key share with
 * a HelloRetryRequest, and -v says so), --curves, --tls13-ciphers and --ciphers (TLS 1.2).
 */
START_TEST(tls_groups_ciphers)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    rill_error E;
    CK(rill_tls_config_set_groups(cfg, "X25519", &E));
    peer *pr = peer_start(cfg, script_echo, NULL);
    char port[8];
    portstr(port, peer_port(pr));
    const char *hrr[] = { "-v",  "--tls",        "--groups",    "P-256:X25519", "--cafile",
                          C->ca, "--servername", RT_CERTS_HOST, "127.0.0.1",    port,
                          NULL };
    rc_proc *p = rc_expect(hrr, "x\n", 0, NULL);
    ck_assert_msg(strstr(p->err, "* key exchange: group x25519, after a HelloRetryRequest"), "%s",
                  p->err);
    rc_free(p);
    const char *direct[] = { "-v",
                             "--tls",
                             "--curves",
                             "X25519:P-256",
                             "--tls13-ciphers",
                             "TLS_CHACHA20_POLY1305_SHA256",
                             "--cafile",
                             C->ca,
                             "--servername",
                             RT_CERTS_HOST,
                             "127.0.0.1",
                             port,
                             NULL };
    p = rc_expect(direct, "x\n", 0, NULL);
    ck_assert_msg(strstr(p->err, "* key exchange: group x25519, no HelloRetryRequest"), "%s",
                  p->err);
    ck_assert_msg(strstr(p->err, "cipher TLS_CHACHA20_POLY1305_SHA256"), "%s", p->err);
    rc_free(p);
    const char *tls12[] = { "-v",          "--tls",     "--tls-max",
                            "1.2",         "--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305",
                            "--cafile",    C->ca,       "--servername",
                            RT_CERTS_HOST, "127.0.0.1", port,
                            NULL };
    p = rc_expect(tls12, "x\n", 0, NULL);
    ck_assert_msg(strstr(p->err, "TLS: TLSv1.2, cipher ECDHE-ECDSA-CHACHA20-POLY1305"), "%s",
                  p->err);
    rc_free(p);
    /* No group in common: the handshake fails (35) with OpenSSL's reason. */
    const char *none[] = { "--tls",        "--groups",    "P-384",     "--cafile", C->ca,
                           "--servername", RT_CERTS_HOST, "127.0.0.1", port,       NULL };
    rc_free(rc_expect(none, "", 35, "rillcat: TLS handshake: "));
    peer_stop(pr);
    rill_tls_config_free(cfg);
}
END_TEST

/* The PEM blocks of @p text, concatenated (what a chain file holds, without other lines). */
static void pem_blocks(const char *text, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (const char *at = text; (at = strstr(at, "-----BEGIN CERTIFICATE-----"));) {
        const char *end = strstr(at, "-----END CERTIFICATE-----\n");
        ck_assert(end != NULL);
        end += strlen("-----END CERTIFICATE-----\n");
        ck_assert((size_t)(end - at) < cap - used);
        memcpy(out + used, at, (size_t)(end - at));
        used += (size_t)(end - at);
        out[used] = '\0';
        at = end;
    }
}

/* --showcerts: every certificate the server sent, as PEM identical to its chain file. */
START_TEST(showcerts_chain)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    peer *pr = peer_start(cfg, script_echo, NULL);
    char port[8];
    portstr(port, peer_port(pr));
    const char *args[] = { "--tls",       "--showcerts", "--cafile", C->ca, "--servername",
                           RT_CERTS_HOST, "127.0.0.1",   port,       NULL };
    rc_proc *p = rc_expect(args, "data after\n", 0, NULL);
    const char *want[] = { " 0 s:CN=" RT_CERTS_HOST ",O=rill tests\n   i:CN=Rill Test Intermediate",
                           "   v:NotBefore: ", "; NotAfter: ", " 1 s:CN=Rill Test Intermediate",
                           "   i:CN=Rill Test Root" };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(p->out, want[i]), "stdout lacks \"%s\": %s", want[i], p->out);
    ck_assert_msg(!strstr(p->out, " 2 s:"), "more than the chain: %s", p->out);
    /* The data comes after the certificates. */
    const char *data = strstr(p->out, "data after\n");
    ck_assert(data && data > strstr(p->out, "-----END CERTIFICATE-----"));
    FILE *f = fopen(C->good.chain, "r");
    ck_assert(f != NULL);
    static char file[16384], file_pem[16384], shown[16384];
    size_t n = fread(file, 1, sizeof file - 1, f);
    fclose(f);
    file[n] = '\0';
    pem_blocks(file, file_pem, sizeof file_pem);
    pem_blocks(p->out, shown, sizeof shown);
    ck_assert_str_eq(shown, file_pem);
    rc_free(p);
    peer_stop(pr);
    rill_tls_config_free(cfg);
}
END_TEST

/* --starttls xmpp sends --xmpp-host in its stream header (default: the server name). */
START_TEST(starttls_xmpp_host)
{
    const rt_certs *C = rt_certs_get();
    rill_tls_config *cfg = server_config(&C->good, RILL_TLS_CLIENT_AUTH_NONE, 0, NULL);
    struct starttls_script sc = { .proto = "xmpp", .cfg = cfg };
    peer *pr = peer_start(NULL, script_starttls, &sc);
    char port[8];
    portstr(port, peer_port(pr));
    const char *args[] = {
        "--starttls", "xmpp",         "--xmpp-host", "chat.rill.test", "--cafile",
        C->ca,        "--servername", RT_CERTS_HOST, "127.0.0.1",      port,
        NULL
    };
    rc_proc *p = rc_expect(args, "over xmpp\n", 0, NULL);
    ck_assert_str_eq(p->out, "over xmpp\n");
    rc_free(p);
    peer_stop(pr);
    ck_assert_msg(strstr(sc.header, "<stream:stream to='chat.rill.test' xmlns='jabber:client'"),
                  "%s", sc.header);
    ck_assert(sc.upgraded);
    rill_tls_config_free(cfg);
}
END_TEST

/*
 * A TLS 1.2 client that asks to renegotiate (gnutls-cli --rehandshake) gets one fatal
 * no_renegotiation alert and the connection ends: no warning it can loop on.
 */
START_TEST(renegotiation_refused)
{
    const rt_certs *C = rt_certs_get();
    const char *server[] = { "-l",     "-v",          "--echo", "--tls",     "--tls-max", "1.2",
                             "--cert", C->good.chain, "--key",  C->good.key, "0",         NULL };
    rc_proc *srv = rc_start(server, false);
    char port[8];
    portstr(port, rc_listen_port(srv));
    static char out[65536];
    const char *gcli[] = { "gnutls-cli",
                           "--rehandshake",
                           "--x509cafile",
                           C->ca,
                           "--sni-hostname",
                           RT_CERTS_HOST,
                           "--verify-hostname",
                           RT_CERTS_HOST,
                           "-p",
                           port,
                           "127.0.0.1",
                           NULL };
    int code = run_tool(gcli, "after\n", 10000, out, sizeof out);
    ck_assert_msg(code == 1 && strstr(out, "*** ReHandshake has failed") &&
                      strstr(out, "Received alert [100]: No renegotiation is allowed"),
                  "gnutls-cli exit %d: %s", code, out);
    int alerts = 0;
    for (const char *at = out; (at = strstr(at, "Received alert")); at++)
        alerts++;
    ck_assert_msg(alerts == 1, "%d alerts: %s", alerts, out);
    code = rc_finish(srv, 10000);
    ck_assert_msg(code == 35 && strstr(srv->err, "the peer asked to renegotiate: refused with a "
                                                 "fatal no_renegotiation alert"),
                  "listener exit %d: %s", code, srv->err);
    rc_free(srv);
}
END_TEST

/* ---- Debian's own servers for STARTTLS: dovecot (imap, pop3, lmtp, sieve) and vsftpd ---- */

/*
 * Start @p argv (a server in the foreground, as root: the harness's user) and wait until it
 * listens on every one of @p ports; its output goes to @p log. Fails the test with the log.
 */
/*
 * Servers running now. A failed test ends its process at once: they are stopped at its exit
 * (the parent-death signal does not survive a server that changes its user, as postgres must).
 */
#define MAX_DAEMONS 8
static pid_t live_daemons[MAX_DAEMONS];

static void stop_live_daemons(void)
{
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (live_daemons[i] > 0)
            kill(live_daemons[i], SIGINT); /* postgres's fast shutdown; the others' stop */
        if (live_daemons[i] > 0)
            kill(live_daemons[i], SIGTERM);
        live_daemons[i] = 0;
    }
}

static void track_daemon(pid_t pid, bool live)
{
    static bool registered;
    if (!registered)
        registered = atexit(stop_live_daemons) == 0;
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (live ? live_daemons[i] == 0 : live_daemons[i] == pid) {
            live_daemons[i] = live ? pid : 0;
            return;
        }
    }
}

static pid_t daemon_start(const char *const *argv, const uint16_t *ports, int nports,
                          const char *log)
{
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid > 0)
        track_daemon(pid, true);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* a failed test leaves no server behind */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null = open("/dev/null", O_RDONLY);
        if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execvp(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) { /* up to 10 s */
        int up = 0;
        for (int k = 0; k < nports; k++)
            up += port_listening(ports[k]);
        if (up == nports)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    track_daemon(pid, false);
    static char out[8192];
    const char *cat[] = { "cat", log, NULL };
    run_tool(cat, NULL, 5000, out, sizeof out);
    ck_abort_msg("%s did not start: %s", argv[0], out);
    return -1;
}

/* Stop the server @p pid (if > 0) and remove its directory @p dir. */
static void daemon_stop(pid_t pid, const char *dir)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        track_daemon(pid, false);
    }
    if (!dir)
        return;
    static char out[1024];
    const char *rm[] = { "rm", "-rf", dir, NULL };
    ck_assert_int_eq(run_tool(rm, NULL, 10000, out, sizeof out), 0);
}

/* Write @p text to @p dir/@p name; the path goes to @p path. */
static void write_file(const char *dir, const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/*
 * Dovecot's IMAP, POP3, LMTP and ManageSieve listeners without implicit TLS: rillcat upgrades
 * each with --starttls, verifies the certificate, sends the protocol's goodbye and waits
 * (--no-shutdown) for the server's close_notify.
 */
START_TEST(starttls_dovecot)
{
    const rt_certs *C = rt_certs_get();
    char dir[32], conf[8192], path[96], log[96];
    rt_mkdtemp(dir, sizeof dir);
    uint16_t ports[4] = { closed_port(), closed_port(), closed_port(), closed_port() };
    snprintf(conf, sizeof conf,
             "base_dir = %s/run\nstate_dir = %s\nlog_path = %s/dovecot.log\n"
             "protocols = imap pop3 lmtp sieve\nlisten = 127.0.0.1\nssl = yes\n"
             "ssl_cert = <%s\nssl_key = <%s\n"
             "passdb {\n driver = static\n args = password=unused\n}\n"
             "userdb {\n driver = static\n args = uid=nobody gid=nogroup home=%s\n}\n"
             "service imap-login {\n inet_listener imap {\n  port = %u\n }\n"
             " inet_listener imaps {\n  port = 0\n }\n}\n"
             "service pop3-login {\n inet_listener pop3 {\n  port = %u\n }\n"
             " inet_listener pop3s {\n  port = 0\n }\n}\n"
             "service lmtp {\n inet_listener lmtp {\n  address = 127.0.0.1\n  port = %u\n }\n}\n"
             "service managesieve-login {\n inet_listener sieve {\n  port = %u\n }\n}\n",
             dir, dir, dir, C->good.chain, C->good.key, dir, ports[0], ports[1], ports[2],
             ports[3]);
    write_file(dir, "dovecot.conf", conf, path, sizeof path);
    snprintf(log, sizeof log, "%s/out.log", dir);
    const char *argv[] = { "dovecot", "-F", "-c", path, NULL };
    pid_t pid = daemon_start(argv, ports, 4, log);
    static const struct {
        const char *proto, *input, *reply;
    } cases[] = {
        { "imap", "a1 LOGOUT\r\n", "a1 OK Logout completed." },
        { "pop3", "QUIT\r\n", "+OK Logging out" },
        { "lmtp", "QUIT\r\n", "221 2.0.0 Bye" },
        { "sieve", "LOGOUT\r\n", "OK \"Logout completed.\"" },
    };
    for (int i = 0; i < 4; i++) {
        char port[8];
        portstr(port, ports[i]);
        const char *args[] = { "-v",  "--no-shutdown", "--starttls",  cases[i].proto, "--cafile",
                               C->ca, "--servername",  RT_CERTS_HOST, "127.0.0.1",    port,
                               NULL };
        rc_proc *p = rc_expect(args, cases[i].input, 0, NULL);
        ck_assert_msg(p->out && strstr(p->out, cases[i].reply), "%s: %s / %s", cases[i].proto,
                      p->out, p->err);
        ck_assert_msg(strstr(p->err, "peer verified") &&
                          strstr(p->err, "closed the connection (TLS close_notify)"),
                      "%s: %s", cases[i].proto, p->err);
        rc_free(p);
    }
    daemon_stop(pid, dir);
}
END_TEST

/*
 * vsftpd with explicit FTPS: AUTH TLS, then QUIT over TLS; vsftpd ends without close_notify,
 * which --allow-truncation accepts. Without TLS on its side, AUTH TLS is refused: 64.
 */
START_TEST(starttls_vsftpd)
{
    const rt_certs *C = rt_certs_get();
    char dir[32], conf[2048], path[96], log[96], empty[64];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    ck_assert(mkdir(empty, 0755) == 0);
    snprintf(log, sizeof log, "%s/out.log", dir);
    for (int tls = 1; tls >= 0; tls--) {
        uint16_t port = closed_port();
        snprintf(conf, sizeof conf,
                 "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port=%u\n"
                 "background=NO\nanonymous_enable=NO\nlocal_enable=YES\nssl_enable=%s\n"
                 "rsa_cert_file=%s\nrsa_private_key_file=%s\nsecure_chroot_dir=%s\n"
                 "pasv_enable=NO\nseccomp_sandbox=NO\nftpd_banner=rill test ftp\n",
                 port, tls ? "YES" : "NO", C->good.chain, C->good.key, empty);
        write_file(dir, "vsftpd.conf", conf, path, sizeof path);
        const char *argv[] = { "vsftpd", path, NULL };
        pid_t pid = daemon_start(argv, &port, 1, log);
        char ports[8];
        portstr(ports, port);
        const char *args[] = {
            "--no-shutdown", "--allow-truncation", "--starttls", "ftp", "--cafile", C->ca,
            "--servername",  RT_CERTS_HOST,        "127.0.0.1",  ports, NULL
        };
        if (tls) {
            rc_proc *p = rc_expect(args, "QUIT\r\n", 0, NULL);
            ck_assert_msg(p->out && strstr(p->out, "221 Goodbye."), "%s / %s", p->out, p->err);
            rc_free(p);
        } else {
            rc_free(rc_expect(args, "", 64,
                              "rillcat: STARTTLS: ftp: the server did not agree to start TLS: "
                              "AUTH TLS answered with code 5"));
        }
        daemon_stop(pid, NULL);
    }
    daemon_stop(0, dir);
}
END_TEST

/*
 * slapd (OpenLDAP) with a certificate: the StartTLS extended operation succeeds and TLS runs;
 * without one, slapd answers resultCode 2 with its reason, and rillcat exits 64 quoting it.
 */
START_TEST(starttls_slapd)
{
    const rt_certs *C = rt_certs_get();
    char dir[32], conf[1024], path[96], log[96], url[64];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    for (int tls = 1; tls >= 0; tls--) {
        uint16_t port = closed_port();
        snprintf(conf, sizeof conf, "include /etc/ldap/schema/core.schema\npidfile %s/slapd.pid\n",
                 dir);
        if (tls)
            snprintf(conf + strlen(conf), sizeof conf - strlen(conf),
                     "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", C->good.chain,
                     C->good.key);
        write_file(dir, "slapd.conf", conf, path, sizeof path);
        snprintf(url, sizeof url, "ldap://127.0.0.1:%u/", port);
        const char *argv[] = { "slapd", "-d", "0", "-f", path, "-h", url, NULL };
        pid_t pid = daemon_start(argv, &port, 1, log);
        char ports[8];
        portstr(ports, port);
        const char *args[] = { "-v",           "--starttls",  "ldap",      "--cafile", C->ca,
                               "--servername", RT_CERTS_HOST, "127.0.0.1", ports,      NULL };
        if (tls) {
            rc_proc *p = rc_expect(args, "", 0, NULL);
            ck_assert_msg(strstr(p->err, "* S: ExtendedResponse resultCode 0") &&
                              strstr(p->err, "peer verified"),
                          "%s", p->err);
            rc_free(p);
        } else {
            rc_free(rc_expect(args + 1, "", 64, /* without -v: one line */
                              "rillcat: STARTTLS: ldap: the server refused StartTLS: resultCode "
                              "2: unsupported extended operation"));
        }
        daemon_stop(pid, NULL);
    }
    daemon_stop(0, dir);
}
END_TEST

/* How often @p needle occurs in file @p path (0 when it cannot be read). */
static int log_count(const char *path, const char *needle)
{
    static char text[65536];
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    int count = 0;
    for (const char *at = text; (at = strstr(at, needle)); at++)
        count++;
    return count;
}

/* A PostgreSQL server binary of Debian's packages (/usr/lib/postgresql/VERSION/bin/NAME). */
static void pg_binary(const char *name, char *path, size_t cap)
{
    glob_t g;
    char pattern[96];
    snprintf(pattern, sizeof pattern, "/usr/lib/postgresql/*/bin/%s", name);
    ck_assert_msg(glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0,
                  "no %s: install postgresql (scripts/deps.sh test)", pattern);
    snprintf(path, cap, "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
}

/*
 * PostgreSQL (run as its own user, as it insists): SSLRequest, 'S', TLS, then the startup
 * message and Terminate over TLS, answered with AuthenticationOk and ReadyForQuery. With
 * ssl=off it answers 'N': 64.
 */
START_TEST(starttls_postgres_server)
{
    const rt_certs *C = rt_certs_get();
    char dir[32], initdb[96], postgres[96], data[64], crt[64], key[64], log[96];
    rt_mkdtemp(dir, sizeof dir);
    pg_binary("initdb", initdb, sizeof initdb);
    pg_binary("postgres", postgres, sizeof postgres);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(crt, sizeof crt, "%s/server.crt", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    static char out[16384];
    const char *cp[] = { "sh",
                         "-c",
                         "cp \"$1\" \"$3\" && cp \"$2\" \"$4\" && chmod 600 \"$4\" && "
                         "chown -R postgres:postgres \"$5\"",
                         "sh",
                         C->good.chain,
                         C->good.key,
                         crt,
                         key,
                         dir,
                         NULL };
    ck_assert_msg(run_tool(cp, NULL, 10000, out, sizeof out) == 0, "%s", out);
    const char *init[] = { "setpriv",
                           "--reuid=postgres",
                           "--regid=postgres",
                           "--clear-groups",
                           initdb,
                           "-D",
                           data,
                           "-A",
                           "trust",
                           "-U",
                           "postgres",
                           "--no-sync",
                           NULL };
    ck_assert_msg(run_tool(init, NULL, 60000, out, sizeof out) == 0, "initdb: %s", out);
    /* StartupMessage (protocol 3.0, user postgres), then Terminate. */
    static const char startup[] = "\0\0\0\x17\0\x03\0\0user\0postgres\0\0X\0\0\0\x04";
    for (int tls = 1; tls >= 0; tls--) {
        uint16_t port = closed_port();
        char ports[8], ssl[16];
        portstr(ports, port);
        snprintf(ssl, sizeof ssl, "ssl=%s", tls ? "on" : "off");
        char certopt[96], keyopt[96];
        snprintf(certopt, sizeof certopt, "ssl_cert_file=%s", crt);
        snprintf(keyopt, sizeof keyopt, "ssl_key_file=%s", key);
        const char *argv[] = { "setpriv",
                               "--reuid=postgres",
                               "--regid=postgres",
                               "--clear-groups",
                               postgres,
                               "-D",
                               data,
                               "-p",
                               ports,
                               "-k",
                               dir,
                               "-c",
                               "listen_addresses=127.0.0.1",
                               "-c",
                               ssl,
                               "-c",
                               certopt,
                               "-c",
                               keyopt,
                               NULL };
        pid_t pid = daemon_start(argv, &port, 1, log);
        /* It listens before it takes connections ("the database system is starting up"). */
        static const char ready[] = "database system is ready to accept connections";
        int want = tls ? 1 : 2; /* the log of the first start is still there */
        int seen = log_count(log, ready);
        for (int i = 0; i < 200 && seen < want; i++) {
            usleep(50 * 1000);
            seen = log_count(log, ready);
        }
        ck_assert_msg(seen >= want, "postgres is not ready (see %s)", log);
        const char *args[] = { "-v",  "--no-shutdown", "--starttls",  "postgres",  "--cafile",
                               C->ca, "--servername",  RT_CERTS_HOST, "127.0.0.1", ports,
                               NULL };
        if (tls) {
            rc_proc *p = rc_start(args, false);
            rc_write(p, startup, sizeof startup - 1);
            int code = rc_finish(p, 20000);
            ck_assert_msg(code == 0, "exit %d: %s", code, p->err);
            /* AuthenticationOk, then ReadyForQuery (idle). */
            ck_assert_msg(p->out_len > 0 && memmem(p->out, p->out_len, "R\0\0\0\x08\0\0\0\0", 9) &&
                              memmem(p->out, p->out_len, "Z\0\0\0\x05I", 6),
                          "no AuthenticationOk and ReadyForQuery (%zu bytes): %s", p->out_len,
                          p->err);
            ck_assert_msg(strstr(p->err, "* S: S") && strstr(p->err, "peer verified"), "%s",
                          p->err);
            rc_free(p);
        } else {
            rc_free(rc_expect(args + 1, "", 64, /* without -v: one line */
                              "rillcat: STARTTLS: postgres: the server does not offer SSL ('N')"));
        }
        kill(pid, SIGINT); /* fast shutdown: the next start reuses the data directory */
        waitpid(pid, NULL, 0);
        track_daemon(pid, false);
    }
    daemon_stop(0, dir);
}
END_TEST

/*
 * Prosody (XMPP): <starttls/> in the stream features, <proceed/>, TLS; then the client's new
 * stream header over TLS is answered with features offering SASL PLAIN (offered only under
 * TLS, as c2s_require_encryption asks).
 */
START_TEST(starttls_prosody)
{
    const rt_certs *C = rt_certs_get();
    char dir[32], conf[2048], path[96], log[96];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    uint16_t port = closed_port();
    snprintf(conf, sizeof conf,
             "run_as_root = true\ndaemonize = false\npidfile = \"%s/prosody.pid\"\n"
             "data_path = \"%s\"\n"
             "log = { { levels = { min = \"info\" }, to = \"file\", filename = \"%s/p.log\" } }\n"
             "modules_enabled = { \"tls\", \"saslauth\", \"disco\" }\n"
             "modules_disabled = { \"s2s\" }\n"
             "c2s_ports = { %u }\nc2s_interfaces = { \"127.0.0.1\" }\n"
             "c2s_direct_tls_ports = { }\nlegacy_ssl_ports = { }\n"
             "s2s_ports = { }\ncomponent_ports = { }\nhttp_ports = { }\nhttps_ports = { }\n"
             "c2s_require_encryption = true\nauthentication = \"internal_plain\"\n"
             "VirtualHost \"%s\"\n  ssl = { certificate = \"%s\", key = \"%s\" }\n",
             dir, dir, dir, port, RT_CERTS_HOST, C->good.chain, C->good.key);
    write_file(dir, "prosody.cfg.lua", conf, path, sizeof path);
    const char *argv[] = { "prosody", "--config", path, NULL };
    pid_t pid = daemon_start(argv, &port, 1, log);
    char ports[8];
    portstr(ports, port);
    const char *args[] = { "-v",           "--no-shutdown", "--starttls", "xmpp", "--cafile", C->ca,
                           "--servername", RT_CERTS_HOST,   "127.0.0.1",  ports,  NULL };
    static const char restart[] =
        "<?xml version='1.0'?><stream:stream to='" RT_CERTS_HOST "' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' "
        "version='1.0'></stream:stream>";
    rc_proc *p = rc_expect(args, restart, 0, NULL);
    ck_assert_msg(strstr(p->err, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'") &&
                      strstr(p->err, "* S: <proceed") && strstr(p->err, "peer verified"),
                  "%s", p->err);
    ck_assert_msg(p->out && strstr(p->out, "<mechanism>PLAIN</mechanism>"), "%s / %s", p->out,
                  p->err);
    rc_free(p);
    daemon_stop(pid, dir);
}
END_TEST

/* InspIRCd with its starttls module: STARTTLS (670), then the IRC session goes on over TLS. */
START_TEST(starttls_inspircd)
{
    const rt_certs *C = rt_certs_get();
    char dir[32], conf[2048], path[96], log[96];
    rt_mkdtemp(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/out.log", dir);
    uint16_t port = closed_port();
    snprintf(conf, sizeof conf,
             "<server name=\"irc.rill.test\" description=\"rill test\" network=\"rilltest\">\n"
             "<admin name=\"rill\" nick=\"rill\" email=\"rill@rill.test\">\n"
             "<bind address=\"127.0.0.1\" port=\"%u\" type=\"clients\">\n"
             "<connect allow=\"*\" resolvehostnames=\"no\" timeout=\"60\" localmax=\"100\" "
             "globalmax=\"100\">\n"
             "<class name=\"Users\" commands=\"*\">\n"
             "<pid file=\"%s/inspircd.pid\">\n"
             "<module name=\"ssl_gnutls\">\n<module name=\"starttls\">\n"
             "<sslprofile name=\"Clients\" provider=\"gnutls\" certfile=\"%s\" keyfile=\"%s\" "
             "dhfile=\"\" hash=\"sha256\" requestclientcert=\"no\">\n",
             port, dir, C->good.chain, C->good.key);
    write_file(dir, "inspircd.conf", conf, path, sizeof path);
    char config[128];
    snprintf(config, sizeof config, "--config=%s", path);
    const char *argv[] = { "inspircd", config, "--nofork", "--runasroot", NULL };
    pid_t pid = daemon_start(argv, &port, 1, log);
    char ports[8];
    portstr(ports, port);
    const char *args[] = { "-v",           "--no-shutdown", "--starttls", "irc", "--cafile", C->ca,
                           "--servername", RT_CERTS_HOST,   "127.0.0.1",  ports, NULL };
    rc_proc *p = rc_expect(args, "NICK rill\r\nUSER rill 0 * :rill\r\nQUIT :bye\r\n", 0, NULL);
    ck_assert_msg(strstr(p->err, "* S: :irc.rill.test 670 ") && strstr(p->err, "peer verified"),
                  "%s", p->err);
    ck_assert_msg(p->out && strstr(p->out, "ERROR :Closing link: (rill@127.0.0.1) [bye]"),
                  "%s / %s", p->out, p->err);
    rc_free(p);
    daemon_stop(pid, dir);
}
END_TEST

/*
 * Servers that answer the plain part wrongly: a failed exchange (35) naming what was wrong,
 * or, for an XMPP server that answers <failure/>, a refusal (64).
 */
static const struct {
    const char *proto;
    const char *bytes;
    int code;
    const char *message;
} garbled_cases[] = {
    { "lmtp", "554 5.3.2 not today\r\n", 35, "lmtp: greeting with code 554, not 220" },
    { "ftp", "421 Service not available\r\n", 35, "ftp: greeting with code 421, not 220" },
    { "nntp", "502 Permission denied\r\n", 35,
      "nntp: unexpected greeting \"502 Permission denied\"" },
    { "sieve", "BYE \"Too many connections\"\r\n", 35,
      "sieve: unexpected greeting \"BYE \"Too many connections\"\"" },
    { "ldap", "HTTP/1.0 400 Bad Request\r\n\r\n", 35, "ldap: the answer is not an LDAP message" },
    { "postgres", "E", 35, "postgres: unexpected answer 0x45 to SSLRequest" },
    { "xmpp", "<?xml version='1.0'?></stream:stream>", 35,
      "xmpp: no stream features from the server" },
    { "xmpp",
      "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
      "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:features><starttls "
      "xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features><failure "
      "xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
      64, "xmpp: the server did not agree to start TLS: \"<failure" },
    { "irc", "IRC100", 35, "irc: no answer to STARTTLS in 100 lines" },
};

START_TEST(starttls_garbled)
{
    const rt_certs *C = rt_certs_get();
    static char notices[8192];
    const char *bytes = garbled_cases[_i].bytes;
    if (strcmp(bytes, "IRC100") == 0) {
        notices[0] = '\0';
        for (int i = 0; i < 100; i++)
            strcat(notices, ":irc.rill.test NOTICE * :*** still looking\r\n");
        bytes = notices;
    }
    rt_rawserver *r = rt_garbage_start(bytes, strlen(bytes));
    char port[8];
    portstr(port, rt_rawserver_port(r));
    const char *args[] = { "--starttls",
                           garbled_cases[_i].proto,
                           "--cafile",
                           C->ca,
                           "--connect-timeout",
                           "5000",
                           "127.0.0.1",
                           port,
                           NULL };
    char want[256];
    snprintf(want, sizeof want, "rillcat: STARTTLS: %s", garbled_cases[_i].message);
    rc_free(rc_expect(args, "", garbled_cases[_i].code, want));
    rt_rawserver_stop(r);
}
END_TEST

static void teardown(void)
{
    rt_sserver_stop_all();
    rt_dns_stop_all();
}

Suite *rill_test_suite(void)
{
    signal(SIGPIPE, SIG_IGN); /* a rillcat that exits early must not kill the writer */
    (void)rt_certs_prepare(NULL, 0);
    Suite *s = suite_create("rillcat");
    TCase *tc = tcase_create("usage");
    tcase_add_loop_test(tc, usage_errors, 0, (int)(sizeof usage_cases / sizeof usage_cases[0]));
    tcase_add_loop_test(tc, usage_errors_named, 0,
                        (int)(sizeof named_usage_cases / sizeof named_usage_cases[0]));
    tcase_add_test(tc, unix_path_at_limit);
    tcase_add_test(tc, help_and_version);
    tcase_add_test(tc, demo_runs);
    suite_add_tcase(s, tc);

    tc = tcase_create("exit_codes");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, exit_7_refused);
    tcase_add_test(tc, exit_6_not_resolved);
    tcase_add_test(tc, exit_6_server_failure);
    tcase_add_test(tc, resolve_and_dns_server_connect);
    tcase_add_test(tc, exit_28_timeouts);
    tcase_add_test(tc, exit_35_handshake);
    tcase_add_test(tc, exit_60_verify);
    tcase_add_test(tc, exit_58_local_cert);
    tcase_add_test(tc, exit_56_receive);
    suite_add_tcase(s, tc);

    tc = tcase_create("copy");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, binary_64mib_plain);
    tcase_add_test(tc, binary_64mib_tls);
    tcase_add_test(tc, half_close_client);
    tcase_add_test(tc, half_close_listen);
    tcase_add_test(tc, crlf_translation);
    tcase_add_test(tc, unix_socket);
    tcase_add_test(tc, stdout_reader_gone);
    suite_add_tcase(s, tc);

    tc = tcase_create("tls");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, verbose_tls_facts);
    tcase_add_test(tc, insecure_warns);
    tcase_add_test(tc, tls_listener);
    tcase_add_loop_test(tc, starttls_upgrades, 0, NPROTOS);
    tcase_add_loop_test(tc, starttls_refusals, 0, NPROTOS);
    tcase_add_test(tc, tls_groups_ciphers);
    tcase_add_test(tc, showcerts_chain);
    tcase_add_test(tc, starttls_xmpp_host);
    tcase_add_loop_test(tc, starttls_garbled, 0,
                        (int)(sizeof garbled_cases / sizeof garbled_cases[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("listen");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, listen_keep_echo_50_plain);
    tcase_add_test(tc, listen_keep_echo_50_tls);
    tcase_add_test(tc, listen_once);
    tcase_add_test(tc, listen_keep_stdout_reader_gone);
    tcase_add_test(tc, listen_max_conns);
    suite_add_tcase(s, tc);

    tc = tcase_create("tls_server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, listen_sni_entries);
    tcase_add_test(tc, listen_reload);
    tcase_add_loop_test(tc, listen_sni_usage, 0,
                        (int)(sizeof sni_usage_cases / sizeof sni_usage_cases[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("peers");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, alert_delivered_to_clients);
    tcase_add_test(tc, nginx_half_close);
    tcase_add_test(tc, smtp_quit_reply_kept);
    tcase_add_test(tc, renegotiation_refused);
    tcase_add_test(tc, starttls_dovecot);
    tcase_add_test(tc, starttls_vsftpd);
    tcase_add_test(tc, starttls_slapd);
    tcase_add_test(tc, starttls_postgres_server);
    tcase_add_test(tc, starttls_prosody);
    tcase_add_test(tc, starttls_inspircd);
    suite_add_tcase(s, tc);
    return s;
}
