/* SPDX-License-Identifier: MIT */
/*
 * rillcat — the library's face on the command line, built only from the public API (rill.h).
 *
 *   rillcat [options] HOST PORT        connect; copy stdin to the connection, the connection to
 *                                      stdout
 *   rillcat -l [options] [HOST] PORT   listen; serve one connection, or many with -k
 *   rillcat --demo                     a local TLS listener and client (demo.c)
 *
 * The contract (options, exit codes, messages) is fixed by the rillcat issue; --help lists it.
 * Exit codes are curl's. Every failure prints exactly one line "rillcat: <what>: <reason>".
 *
 * Copying is one poll() loop over stdin and the connection, which runs non-blocking (timeouts
 * 0): rill_poll_info() says which events the connection waits for (a TLS read may need
 * POLLOUT), and a read is retried until it reports RILL_WANT_*, so bytes held in rill's buffers
 * are never left waiting for the descriptor. Bytes are passed on as soon as they arrive.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/un.h>

#include <rill/rill.h>

#include "demo.h"

/* Exit statuses (curl's numbers where curl has one). */
enum {
    RC_OK = 0,
    RC_FAIL = 1,        /* anything else: out of memory, stdout unwritable, ... */
    RC_USAGE = 2,       /* bad command line */
    RC_PROXY_DNS = 5,   /* the proxy's name not resolved */
    RC_RESOLVE = 6,     /* name not resolved */
    RC_CONNECT = 7,     /* connect failed: refused, unreachable */
    RC_TIMEOUT = 28,    /* a deadline passed, in any phase */
    RC_TLS = 35,        /* TLS handshake failed */
    RC_RECV = 56,       /* receive failure: reset, truncated TLS, error after the handshake */
    RC_LOCAL_CERT = 58, /* local certificate, key, CA or CRL file problem */
    RC_VERIFY = 60,     /* peer certificate or host name verification failed */
    RC_STARTTLS = 64,   /* the server does not offer or refuses STARTTLS (curl --ssl-reqd) */
    RC_PROXY = 97       /* SOCKS5 proxy refused (reply code, authentication) */
};

#define MAX_PINS     16
#define MAX_RESOLVES 16
#define MAX_SNI      64   /* -l --tls: --sni entries */
#define RELOAD_MS    1000 /* --reload: look at the files at most this often (at handshakes) */
#define IO_CHUNK     65536
#define LINE_MAX_LEN 8192
#define MAX_CONNS    100 /* -l -k: connections served at once unless --max-conns says otherwise */
/* The longest --unix path the kernel takes (sun_path less its terminating NUL). */
#define UNIX_PATH_MAX_LEN (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* -l --tls --sni NAME: the certificate for clients asking for NAME. */
struct sni_entry {
    const char *name, *cert, *key;
};

struct options {
    bool listen, keep, echo, tls, insecure, verbose, crlf, reload;
    bool no_shutdown;      /* stdin EOF does not half-close (--no-shutdown, --ign-eof) */
    bool allow_truncation; /* a TLS peer's end without close_notify is a clean end */
    bool showcerts;        /* print the peer's certificates as PEM on stdout */
    const char *ciphers, *tls13_ciphers, *groups;
    const char *xmpp_host;
    int family; /* 0, 4 or 6 */
    const char *host;
    unsigned port;
    const char *unix_path;
    const char *cafile, *capath, *crlfile, *cert, *key, *servername, *alpn;
    const char *pins[MAX_PINS];
    size_t npins;
    int tls_min, tls_max; /* RILL_TLS_1_x or 0 */
    const char *starttls;
    int connect_timeout_ms;
    int timeout_ms; /* idle timeout after connecting; RILL_TIMEOUT_NONE: none */
    const char *dns_servers;
    const char *resolves[MAX_RESOLVES + 1];
    size_t nresolves;
    int max_conns; /* -l -k: connections served at once; more are closed at once */
    const char *proxy, *proxy_user, *proxy_cacert, *noproxy;
    struct sni_entry sni[MAX_SNI];
    size_t nsni;
};

static struct options opt;

/* Serialises stderr lines and, with -k, what connections write to stdout. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * stdout and stderr as rill fd streams, so that rillcat's own writes keep the library's rule:
 * writing to a pipe whose reader is gone fails with EPIPE and never raises SIGPIPE, which
 * would end rillcat without a word (and with -l -k every connection it serves). The
 * disposition of SIGPIPE is left alone. NULL when the descriptor is not open. Written under
 * out_lock.
 */
static rill_stream *std_out, *std_err;

/* -l -k: connections being served, and those closed at once for being over --max-conns. */
static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static int conns_open;
static unsigned long conns_refused;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- messages ---- */

static int open_stdio(void)
{
    rill_error err;
    /* A descriptor that is not open (RILL_E_INVALID) is left NULL: writes to it fail. */
    rill_status st = rill_fd_new(-1, STDERR_FILENO, 0, &std_err, &err);
    if (st == RILL_OK || st == RILL_E_INVALID)
        st = rill_fd_new(-1, STDOUT_FILENO, 0, &std_out, &err);
    if (st == RILL_OK || st == RILL_E_INVALID)
        return RC_OK;
    fprintf(stderr, "rillcat: startup: %s\n", err.msg);
    return RC_FAIL;
}

static void close_stdio(void)
{
    (void)rill_close(std_out);
    (void)rill_close(std_err);
    std_out = std_err = NULL;
}

/* One line of text to stderr (caller holds out_lock); a failure has nowhere to be reported. */
static void put_err(const char *text)
{
    if (!std_err)
        return;
    rill_status st = rill_write_all(std_err, text, strlen(text), NULL);
    (void)st;
}

/* Print "rillcat: <what>: <reason>" and return @p rc. */
RILL_PRINTF(3, 4) static int fail(int rc, const char *what, const char *fmt, ...)
{
    char reason[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    /* rill's messages often start with the step ("connect: ..."): say it once. */
    size_t wlen = strlen(what);
    const char *r = reason;
    if (strncmp(r, what, wlen) == 0 && r[wlen] == ':' && r[wlen + 1] == ' ')
        r += wlen + 2;
    char line[sizeof reason + 256];
    snprintf(line, sizeof line, "rillcat: %s: %s\n", what, r);
    pthread_mutex_lock(&out_lock);
    put_err(line);
    pthread_mutex_unlock(&out_lock);
    return rc;
}

/* A -v line on stderr, "* ..." (curl's marker), so it never reads as an error line. */
RILL_PRINTF(1, 2) static void note(const char *fmt, ...)
{
    if (!opt.verbose)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char line[1030];
    snprintf(line, sizeof line, "* %s\n", text);
    pthread_mutex_lock(&out_lock);
    put_err(line);
    pthread_mutex_unlock(&out_lock);
}

/*
 * Write all of @p buf to stdout; false with the reason in @p why when stdout cannot take it
 * (its reader is gone: "Broken pipe"). The caller holds out_lock and reports after releasing it.
 */
static bool write_out(const void *buf, size_t len, char *why, size_t why_len)
{
    if (!std_out) {
        snprintf(why, why_len, "%s", strerror(EBADF));
        return false;
    }
    if (rill_write_all(std_out, buf, len, NULL) == RILL_OK)
        return true;
    const rill_error *e = rill_last_error(std_out);
    snprintf(why, why_len, "%s", e && e->sys_errno ? strerror(e->sys_errno) : rill_errmsg(std_out));
    return false;
}

/* Write all of @p buf to stdout; RC_OK or a reported failure (1). */
static int put_out(const void *buf, size_t len)
{
    char why[RILL_ERRMSG_MAX];
    pthread_mutex_lock(&out_lock);
    bool ok = write_out(buf, len, why, sizeof why);
    pthread_mutex_unlock(&out_lock);
    return ok ? RC_OK : fail(RC_FAIL, "write to stdout", "%s", why);
}

static const char usage_text[] =
    "usage: rillcat [options] HOST PORT | rillcat -l [options] [HOST] PORT | "
    "rillcat --demo   (rillcat --help for more)\n";

RILL_PRINTF(1, 2) static int usage_error(const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    char line[sizeof reason + 32];
    snprintf(line, sizeof line, "rillcat: usage: %s\n", reason);
    pthread_mutex_lock(&out_lock);
    put_err(line);
    put_err(usage_text);
    pthread_mutex_unlock(&out_lock);
    return RC_USAGE;
}

/* --help on stdout; RC_OK, or RC_FAIL when stdout cannot take it. */
static int help(void)
{
    static const char text[] =
        "\n"
        "  rillcat [options] HOST PORT        connect; copy stdin to the connection and the\n"
        "                                     connection to stdout\n"
        "  rillcat -l [options] [HOST] PORT   listen (default 127.0.0.1; PORT 0 picks one, -v\n"
        "                                     shows it); serve one connection, or many with -k\n"
        "  rillcat --demo                     a local TLS listener and client, no network needed\n"
        "\n"
        "  --tls                    TLS (client: verify chain and hostname by default)\n"
        "  --cafile FILE  --capath DIR      trust anchors (default: system store); with -l --tls:\n"
        "                           require client certificates issued by these CAs\n"
        "  --crlfile FILE           check revocation against the CRLs in FILE (whole chain)\n"
        "  --cert FILE  --key FILE  client certificate, or the server's certificate with\n"
        "                           -l --tls (--key defaults to --cert)\n"
        "  --sni NAME --cert FILE --key FILE  with -l --tls: the certificate for clients asking\n"
        "                           for NAME (exact, or *.suffix); repeatable; the --cert/--key\n"
        "                           before any --sni is the default\n"
        "  --reload                 with -l --tls: re-read changed certificate and key files\n"
        "                           (checked at handshakes, at most once a second); a bad file\n"
        "                           keeps the last good pair and is reported on stderr\n"
        "  --servername NAME        SNI and the name verified (default HOST; IP literals are\n"
        "                           verified against IP SANs)\n"
        "  --alpn LIST              comma-separated protocols\n"
        "  --pin sha256//BASE64     pin the server's public key (repeatable)\n"
        "  --tls-min 1.2|1.3  --tls-max 1.2|1.3\n"
        "  --ciphers LIST           TLS 1.2 ciphers (OpenSSL syntax)\n"
        "  --tls13-ciphers LIST     TLS 1.3 ciphersuites, colon-separated\n"
        "  --groups LIST            key-exchange groups, colon-separated, preferred first\n"
        "                           (X25519:P-256); --curves is the same\n"
        "  --showcerts              print the peer's certificates (subject, issuer, dates, PEM)\n"
        "                           on stdout before any data\n"
        "  --allow-truncation       a TLS peer that closes without close_notify ends cleanly\n"
        "                           (exit 0) instead of 56\n"
        "  --insecure               no certificate verification (warns on stderr)\n"
        "  --starttls PROTO         smtp | lmtp | imap | pop3 | ftp | xmpp | ldap | nntp |\n"
        "                           sieve | postgres | irc | plain-line: do that protocol's\n"
        "                           plain exchange, then upgrade the same connection to TLS.\n"
        "                           plain-line: send the line \"STARTTLS\", expect one line back\n"
        "                           starting with \"OK\", \"+OK\" or a 2xx code, then start TLS\n"
        "  --xmpp-host NAME         with --starttls xmpp: the domain in the stream header\n"
        "                           (default --servername, else HOST)\n";
    static const char text1b[] =
        "  --connect-timeout MS     default 10000, covers DNS + TCP + TLS handshake (and the\n"
        "                           --starttls exchange)\n"
        "  --timeout MS             idle timeout after connecting: no byte either way for MS\n"
        "                           (default none)\n"
        "  --dns-server ADDR[:PORT][,...]  --resolve HOST:PORT:ADDR (repeatable)  -4  -6\n"
        "  --unix PATH              connect to (or with -l listen on) a Unix socket instead of\n"
        "                           HOST PORT\n"
        "  --echo                   with -l: echo each connection's bytes back instead of using\n"
        "                           stdin/stdout\n"
        "  -k                       with -l: keep listening, serve connections concurrently\n"
        "                           (without --echo, their bytes go to stdout; stdin is unused)\n"
        "  --max-conns N            with -l -k: serve at most N connections at once (default\n"
        "                           100); more are accepted and closed at once (-v counts them)\n"
        "  --crlf                   send LF from stdin as CRLF\n"
        "  --no-shutdown            when stdin ends, do not half-close: keep the connection\n"
        "                           full-duplex until the peer closes (or --timeout passes);\n"
        "                           --ign-eof is the same\n"
        "  -v                       to stderr: resolution, connect attempts, the chain, TLS "
        "facts\n";
    /* In parts: C99 compilers need to take only 4095 bytes of one string literal. */
    static const char text2[] =
        "  --version  --help\n"
        "\n"
        "When stdin ends, rillcat half-closes (TLS close_notify, TCP FIN) and keeps reading until\n"
        "the peer closes (--no-shutdown: it sends nothing); when the peer closes, it writes out\n"
        "what arrived and exits. -v says which side closed, and how.\n"
        "\n"
        "Exit status: 0 clean end; 1 other failure (also stdout unwritable: its reader is gone);\n"
        "2 bad usage (also an empty HOST, a PORT that is not just digits in range, an empty or\n"
        "too long --unix PATH, a --proxy URL that does not parse); 5 proxy name not resolved;\n"
        "6 name not resolved; 7 connect failed (also to the proxy); 28 timeout; 35 TLS\n"
        "handshake failed; 56 receive failure (reset, truncated TLS); 58 local certificate, key,\n"
        "CA or CRL file problem; 60 peer certificate or host name verification failed; 56 also:\n"
        "the HTTP proxy answered CONNECT with a status that is not 2xx; 64 the server does not\n"
        "offer STARTTLS or refuses it; 97 the SOCKS5 proxy refused (reply code, authentication).\n";
    static const char proxy_text[] =
        "\n"
        "Proxies:\n"
        "  --proxy URL              connect through a proxy: http://, https://, socks5:// (rill\n"
        "                           resolves HOST), socks5h:// (the proxy does); user:pass@ in\n"
        "                           the URL. Default: https_proxy/HTTPS_PROXY with --tls or\n"
        "                           --starttls, then all_proxy/ALL_PROXY\n"
        "  --proxy-user USER:PASS   credentials for the proxy (Basic, or SOCKS5 user/password)\n"
        "  --proxy-cacert FILE      trust for an https:// proxy (default: the system store)\n"
        "  --noproxy LIST           hosts reached directly (default: no_proxy/NO_PROXY): names\n"
        "                           and their subdomains, \"*\", NAME:PORT, addresses, CIDR "
        "ranges\n";
    int rc = put_out(usage_text, strlen(usage_text));
    if (rc == RC_OK)
        rc = put_out(text, strlen(text));
    if (rc == RC_OK)
        rc = put_out(text1b, strlen(text1b));
    if (rc == RC_OK)
        rc = put_out(proxy_text, strlen(proxy_text));
    return rc == RC_OK ? put_out(text2, strlen(text2)) : rc;
}

/* ---- exit codes from statuses ---- */

/* A failure of connecting; @p tcp_up says whether TCP was connected (so the TLS phase failed). */
static int connect_rc(rill_status st, bool tcp_up)
{
    switch (st) {
    case RILL_E_DNS: return RC_RESOLVE;
    case RILL_E_TIMEOUT: return RC_TIMEOUT;
    case RILL_E_TLS_VERIFY: return RC_VERIFY;
    case RILL_E_TLS: return RC_TLS;
    case RILL_E_INVALID: /* a host name that cannot be a name */
        return tcp_up ? RC_TLS : RC_RESOLVE;
    case RILL_E_NOMEM: return RC_FAIL;
    default: /* refused, unreachable, reset; during the handshake that is a handshake failure */
        return tcp_up ? RC_TLS : RC_CONNECT;
    }
}

/*
 * A failure after connecting. A TLS 1.3 server checks the client certificate after the
 * client's handshake has completed, so its rejection arrives as an alert on the first read:
 * that is still a failed handshake (35), not a receive failure.
 */
static int io_rc(rill_status st, const char *msg, bool got_data)
{
    switch (st) {
    case RILL_E_TIMEOUT: return RC_TIMEOUT;
    case RILL_E_TLS_VERIFY: return RC_VERIFY;
    case RILL_E_TLS: return !got_data && strstr(msg, "alert") ? RC_TLS : RC_RECV;
    case RILL_E_NOMEM: return RC_FAIL;
    default: return RC_RECV;
    }
}

/* ---- option parsing ---- */

/*
 * A number in [min, max] written as decimal digits only: strtol alone would also take leading
 * spaces and a sign (" 80", "+80"), which a script never means.
 */
static bool parse_int(const char *text, long min, long max, long *out)
{
    if (*text == '\0' || text[strspn(text, "0123456789")] != '\0')
        return false;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*end != '\0' || errno != 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_version(const char *text, int *out)
{
    if (strcmp(text, "1.2") == 0)
        *out = RILL_TLS_1_2;
    else if (strcmp(text, "1.3") == 0)
        *out = RILL_TLS_1_3;
    else
        return false;
    return true;
}

enum {
    OPT_TLS = 256,
    OPT_CAFILE,
    OPT_CAPATH,
    OPT_CRLFILE,
    OPT_CERT,
    OPT_KEY,
    OPT_SERVERNAME,
    OPT_ALPN,
    OPT_PIN,
    OPT_TLS_MIN,
    OPT_TLS_MAX,
    OPT_INSECURE,
    OPT_STARTTLS,
    OPT_CONNECT_TIMEOUT,
    OPT_TIMEOUT,
    OPT_DNS_SERVER,
    OPT_RESOLVE,
    OPT_UNIX,
    OPT_ECHO,
    OPT_CRLF,
    OPT_MAX_CONNS,
    OPT_PROXY,
    OPT_PROXY_USER,
    OPT_PROXY_CACERT,
    OPT_NOPROXY,
    OPT_SNI,
    OPT_RELOAD,
    OPT_NO_SHUTDOWN,
    OPT_ALLOW_TRUNCATION,
    OPT_CIPHERS,
    OPT_TLS13_CIPHERS,
    OPT_GROUPS,
    OPT_SHOWCERTS,
    OPT_XMPP_HOST,
    OPT_VERSION,
    OPT_HELP,
    OPT_DEMO
};

static const struct option long_options[] = {
    { "tls", no_argument, NULL, OPT_TLS },
    { "cafile", required_argument, NULL, OPT_CAFILE },
    { "capath", required_argument, NULL, OPT_CAPATH },
    { "crlfile", required_argument, NULL, OPT_CRLFILE },
    { "cert", required_argument, NULL, OPT_CERT },
    { "key", required_argument, NULL, OPT_KEY },
    { "servername", required_argument, NULL, OPT_SERVERNAME },
    { "alpn", required_argument, NULL, OPT_ALPN },
    { "pin", required_argument, NULL, OPT_PIN },
    { "tls-min", required_argument, NULL, OPT_TLS_MIN },
    { "tls-max", required_argument, NULL, OPT_TLS_MAX },
    { "insecure", no_argument, NULL, OPT_INSECURE },
    { "starttls", required_argument, NULL, OPT_STARTTLS },
    { "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "dns-server", required_argument, NULL, OPT_DNS_SERVER },
    { "resolve", required_argument, NULL, OPT_RESOLVE },
    { "unix", required_argument, NULL, OPT_UNIX },
    { "echo", no_argument, NULL, OPT_ECHO },
    { "crlf", no_argument, NULL, OPT_CRLF },
    { "max-conns", required_argument, NULL, OPT_MAX_CONNS },
    { "proxy", required_argument, NULL, OPT_PROXY },
    { "proxy-user", required_argument, NULL, OPT_PROXY_USER },
    { "proxy-cacert", required_argument, NULL, OPT_PROXY_CACERT },
    { "noproxy", required_argument, NULL, OPT_NOPROXY },
    { "sni", required_argument, NULL, OPT_SNI },
    { "reload", no_argument, NULL, OPT_RELOAD },
    { "no-shutdown", no_argument, NULL, OPT_NO_SHUTDOWN },
    { "ign-eof", no_argument, NULL, OPT_NO_SHUTDOWN },
    { "allow-truncation", no_argument, NULL, OPT_ALLOW_TRUNCATION },
    { "ciphers", required_argument, NULL, OPT_CIPHERS },
    { "tls13-ciphers", required_argument, NULL, OPT_TLS13_CIPHERS },
    { "groups", required_argument, NULL, OPT_GROUPS },
    { "curves", required_argument, NULL, OPT_GROUPS },
    { "showcerts", no_argument, NULL, OPT_SHOWCERTS },
    { "xmpp-host", required_argument, NULL, OPT_XMPP_HOST },
    { "version", no_argument, NULL, OPT_VERSION },
    { "help", no_argument, NULL, OPT_HELP },
    { "demo", no_argument, NULL, OPT_DEMO },
    { NULL, 0, NULL, 0 },
};

static const char *const starttls_protos[] = { "smtp",  "lmtp",     "imap", "pop3",
                                               "ftp",   "xmpp",     "ldap", "nntp",
                                               "sieve", "postgres", "irc",  "plain-line" };

static bool starttls_known(const char *proto)
{
    for (size_t i = 0; i < sizeof starttls_protos / sizeof starttls_protos[0]; i++) {
        if (strcmp(proto, starttls_protos[i]) == 0)
            return true;
    }
    return false;
}

enum parse_result { PARSE_RUN, PARSE_EXIT_OK, PARSE_DEMO, PARSE_USAGE, PARSE_FAIL };

static enum parse_result parse_args(int argc, char **argv)
{
    long v;
    bool demo = false;
    opt.connect_timeout_ms = 10000;
    opt.timeout_ms = RILL_TIMEOUT_NONE;
    opt.max_conns = MAX_CONNS;
    bool max_conns_given = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":lkv46", long_options, NULL)) != -1) {
        switch (c) {
        case 'l': opt.listen = true; break;
        case 'k': opt.keep = true; break;
        case 'v': opt.verbose = true; break;
        case '4':
        case '6':
            if (opt.family && opt.family != c - '0') {
                usage_error("-4 and -6 exclude each other");
                return PARSE_USAGE;
            }
            opt.family = c - '0';
            break;
        case OPT_TLS: opt.tls = true; break;
        case OPT_CAFILE: opt.cafile = optarg; break;
        case OPT_CAPATH: opt.capath = optarg; break;
        case OPT_CRLFILE: opt.crlfile = optarg; break;
        case OPT_CERT:
        case OPT_KEY: {
            /* After --sni NAME, --cert and --key belong to that name's entry. */
            struct sni_entry *e = opt.nsni ? &opt.sni[opt.nsni - 1] : NULL;
            const char **slot =
                c == OPT_CERT ? (e ? &e->cert : &opt.cert) : (e ? &e->key : &opt.key);
            *slot = optarg; /* the last one given wins, as for other options */
            break;
        }
        case OPT_SNI:
            if (opt.nsni == MAX_SNI) {
                usage_error("at most %d --sni options", MAX_SNI);
                return PARSE_USAGE;
            }
            opt.sni[opt.nsni++] = (struct sni_entry){ .name = optarg };
            break;
        case OPT_RELOAD: opt.reload = true; break;
        case OPT_SERVERNAME: opt.servername = optarg; break;
        case OPT_ALPN: opt.alpn = optarg; break;
        case OPT_PIN:
            if (opt.npins == MAX_PINS) {
                usage_error("at most %d --pin options", MAX_PINS);
                return PARSE_USAGE;
            }
            opt.pins[opt.npins++] = optarg;
            break;
        case OPT_TLS_MIN:
        case OPT_TLS_MAX:
            if (!parse_version(optarg, c == OPT_TLS_MIN ? &opt.tls_min : &opt.tls_max)) {
                usage_error("%s takes 1.2 or 1.3, not \"%s\"",
                            c == OPT_TLS_MIN ? "--tls-min" : "--tls-max", optarg);
                return PARSE_USAGE;
            }
            break;
        case OPT_INSECURE: opt.insecure = true; break;
        case OPT_STARTTLS:
            if (!starttls_known(optarg)) {
                usage_error("--starttls takes smtp, lmtp, imap, pop3, ftp, xmpp, ldap, nntp, "
                            "sieve, postgres, irc or plain-line, not \"%s\"",
                            optarg);
                return PARSE_USAGE;
            }
            opt.starttls = optarg;
            break;
        case OPT_NO_SHUTDOWN: opt.no_shutdown = true; break;
        case OPT_ALLOW_TRUNCATION: opt.allow_truncation = true; break;
        case OPT_CIPHERS: opt.ciphers = optarg; break;
        case OPT_TLS13_CIPHERS: opt.tls13_ciphers = optarg; break;
        case OPT_GROUPS: opt.groups = optarg; break;
        case OPT_SHOWCERTS: opt.showcerts = true; break;
        case OPT_XMPP_HOST: opt.xmpp_host = optarg; break;
        case OPT_CONNECT_TIMEOUT:
        case OPT_TIMEOUT:
            if (!parse_int(optarg, 1, INT_MAX, &v)) {
                usage_error("%s takes a positive number of milliseconds, not \"%s\"",
                            c == OPT_TIMEOUT ? "--timeout" : "--connect-timeout", optarg);
                return PARSE_USAGE;
            }
            *(c == OPT_TIMEOUT ? &opt.timeout_ms : &opt.connect_timeout_ms) = (int)v;
            break;
        case OPT_DNS_SERVER: opt.dns_servers = optarg; break;
        case OPT_PROXY: opt.proxy = optarg; break;
        case OPT_PROXY_USER: opt.proxy_user = optarg; break;
        case OPT_PROXY_CACERT: opt.proxy_cacert = optarg; break;
        case OPT_NOPROXY: opt.noproxy = optarg; break;
        case OPT_RESOLVE:
            if (opt.nresolves == MAX_RESOLVES) {
                usage_error("at most %d --resolve options", MAX_RESOLVES);
                return PARSE_USAGE;
            }
            opt.resolves[opt.nresolves++] = optarg;
            break;
        case OPT_UNIX: opt.unix_path = optarg; break;
        case OPT_ECHO: opt.echo = true; break;
        case OPT_CRLF: opt.crlf = true; break;
        case OPT_MAX_CONNS:
            if (!parse_int(optarg, 1, INT_MAX, &v)) {
                usage_error("--max-conns takes a positive number of connections, not \"%s\"",
                            optarg);
                return PARSE_USAGE;
            }
            opt.max_conns = (int)v;
            max_conns_given = true;
            break;
        case OPT_VERSION: {
            char line[64];
            snprintf(line, sizeof line, "rillcat %s\n", rill_version());
            return put_out(line, strlen(line)) == RC_OK ? PARSE_EXIT_OK : PARSE_FAIL;
        }
        case OPT_HELP: return help() == RC_OK ? PARSE_EXIT_OK : PARSE_FAIL;
        case OPT_DEMO: demo = true; break;
        case ':': usage_error("%s needs an argument", argv[optind - 1]); return PARSE_USAGE;
        default:
            if (optopt)
                usage_error("unknown option -%c", optopt);
            else
                usage_error("unknown option %s", argv[optind - 1]);
            return PARSE_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (demo) {
        if (argc != 2) {
            usage_error("--demo takes no other arguments");
            return PARSE_USAGE;
        }
        return PARSE_DEMO;
    }

    const char *port_text = NULL;
    if (opt.unix_path) {
        if (nargs != 0) {
            usage_error("--unix PATH replaces HOST PORT");
            return PARSE_USAGE;
        }
        /* "@" alone would be an abstract socket without a name. */
        if (opt.unix_path[0] == '\0' || strcmp(opt.unix_path, "@") == 0) {
            usage_error("--unix PATH is empty");
            return PARSE_USAGE;
        }
        size_t len = strlen(opt.unix_path);
        if (len > UNIX_PATH_MAX_LEN) {
            usage_error("--unix PATH is too long (%zu bytes, at most %zu)", len,
                        (size_t)UNIX_PATH_MAX_LEN);
            return PARSE_USAGE;
        }
    } else if (opt.listen) {
        if (nargs < 1 || nargs > 2) {
            usage_error("-l takes [HOST] PORT");
            return PARSE_USAGE;
        }
        opt.host = nargs == 2 ? args[0] : "127.0.0.1";
        port_text = args[nargs - 1];
    } else {
        if (nargs != 2) {
            usage_error(nargs < 2 ? "HOST and PORT are required" : "too many arguments");
            return PARSE_USAGE;
        }
        opt.host = args[0];
        port_text = args[1];
    }
    if (opt.host && opt.host[0] == '\0') {
        usage_error("HOST is empty");
        return PARSE_USAGE;
    }
    if (port_text) {
        if (!parse_int(port_text, opt.listen ? 0 : 1, 65535, &v)) {
            usage_error("bad port \"%s\" (a number, 1 to 65535%s)", port_text,
                        opt.listen ? ", or 0 for any" : "");
            return PARSE_USAGE;
        }
        opt.port = (unsigned)v;
    }

    if (opt.starttls)
        opt.tls = true;
    const char *needs_listen = opt.echo ? "--echo" : opt.keep ? "-k" : NULL;
    if (needs_listen && !opt.listen) {
        usage_error("%s works only with -l", needs_listen);
        return PARSE_USAGE;
    }
    if (max_conns_given && !(opt.listen && opt.keep)) {
        usage_error("--max-conns works only with -l -k");
        return PARSE_USAGE;
    }
    if (opt.xmpp_host && !(opt.starttls && strcmp(opt.starttls, "xmpp") == 0)) {
        usage_error("--xmpp-host works only with --starttls xmpp");
        return PARSE_USAGE;
    }
    if (opt.no_shutdown && opt.listen && opt.echo) {
        usage_error("--no-shutdown does not apply to --echo");
        return PARSE_USAGE;
    }
    if (opt.listen && opt.starttls) {
        usage_error("--starttls works only when connecting");
        return PARSE_USAGE;
    }
    const char *tls_only = opt.cafile             ? "--cafile"
                           : opt.capath           ? "--capath"
                           : opt.crlfile          ? "--crlfile"
                           : opt.cert             ? "--cert"
                           : opt.key              ? "--key"
                           : opt.servername       ? "--servername"
                           : opt.alpn             ? "--alpn"
                           : opt.npins            ? "--pin"
                           : opt.tls_min          ? "--tls-min"
                           : opt.tls_max          ? "--tls-max"
                           : opt.insecure         ? "--insecure"
                           : opt.ciphers          ? "--ciphers"
                           : opt.tls13_ciphers    ? "--tls13-ciphers"
                           : opt.groups           ? "--groups"
                           : opt.showcerts        ? "--showcerts"
                           : opt.allow_truncation ? "--allow-truncation"
                                                  : NULL;
    if (tls_only && !opt.tls) {
        usage_error("%s needs --tls (or --starttls)", tls_only);
        return PARSE_USAGE;
    }
    if (opt.key && !opt.cert) {
        usage_error("--key needs --cert");
        return PARSE_USAGE;
    }
    if (opt.tls_min && opt.tls_max && opt.tls_min > opt.tls_max) {
        usage_error("--tls-min is above --tls-max");
        return PARSE_USAGE;
    }
    if (opt.listen && opt.tls && !opt.cert) {
        usage_error("-l --tls needs --cert (and --key)");
        return PARSE_USAGE;
    }
    if ((opt.nsni || opt.reload) && !(opt.listen && opt.tls)) {
        usage_error("%s works only with -l --tls", opt.nsni ? "--sni" : "--reload");
        return PARSE_USAGE;
    }
    for (size_t i = 0; i < opt.nsni; i++) {
        if (!opt.sni[i].cert) {
            usage_error("--sni %s needs --cert (and --key) after it", opt.sni[i].name);
            return PARSE_USAGE;
        }
    }
    if (opt.listen && (opt.dns_servers || opt.nresolves || opt.servername || opt.npins)) {
        usage_error("--dns-server, --resolve, --servername and --pin are for connecting");
        return PARSE_USAGE;
    }
    if (opt.unix_path && (opt.dns_servers || opt.nresolves || opt.family)) {
        usage_error("--dns-server, --resolve, -4 and -6 do not apply to --unix");
        return PARSE_USAGE;
    }
    if ((opt.listen || opt.unix_path) &&
        (opt.proxy || opt.proxy_user || opt.proxy_cacert || opt.noproxy)) {
        usage_error("--proxy, --proxy-user, --proxy-cacert and --noproxy are for connecting to "
                    "HOST PORT");
        return PARSE_USAGE;
    }
    if (opt.proxy_user && !strchr(opt.proxy_user, ':')) {
        usage_error("--proxy-user takes USER:PASSWORD");
        return PARSE_USAGE;
    }
    if (opt.unix_path && opt.tls && !opt.listen && !opt.servername && !opt.insecure) {
        usage_error("--tls over --unix needs --servername (the name to verify) or --insecure");
        return PARSE_USAGE;
    }
    return PARSE_RUN;
}

/* ---- TLS configuration ---- */

/* Encrypted keys are refused instead of OpenSSL prompting on the terminal. */
static int no_passphrase(char *buf, int size, void *arg)
{
    (void)buf;
    (void)size;
    (void)arg;
    return -1;
}

/* Exit status for a setter that failed: unloadable files are 58, bad values usage errors. */
static int setter_rc(rill_status st)
{
    if (st == RILL_E_INVALID)
        return RC_USAGE;
    return st == RILL_E_NOMEM ? RC_FAIL : RC_LOCAL_CERT;
}

/* --reload: what a check found, on stderr (a failure always, a swap with -v). */
static void on_reload(void *arg, const rill_error *outcome)
{
    (void)arg;
    if (outcome->code == RILL_OK) {
        note("--reload: %s", outcome->msg);
        return;
    }
    pthread_mutex_lock(&out_lock);
    put_err("rillcat: warning: --reload: ");
    put_err(outcome->msg);
    put_err("\n");
    pthread_mutex_unlock(&out_lock);
}

static int make_tls_config(bool server, rill_tls_config **out)
{
    rill_error err;
    rill_tls_config *cfg = NULL;
    rill_status st = rill_tls_config_new(&cfg, &err);
    if (st != RILL_OK)
        return fail(RC_FAIL, "TLS setup", "%s", err.msg);
    int rc = RC_OK;
    const char *what = "TLS setup";
#define SET(label, call)                               \
    do {                                               \
        if (rc == RC_OK && (st = (call)) != RILL_OK) { \
            what = (label);                            \
            rc = setter_rc(st);                        \
        }                                              \
    } while (0)
    SET("TLS setup", rill_tls_config_set_passphrase_cb(cfg, no_passphrase, NULL, &err));
    if (opt.cafile)
        SET("--cafile", rill_tls_config_set_ca_file(cfg, opt.cafile, &err));
    if (opt.capath)
        SET("--capath", rill_tls_config_set_ca_path(cfg, opt.capath, &err));
    if (opt.crlfile)
        SET("--crlfile", rill_tls_config_set_crl_file(cfg, opt.crlfile, &err));
    if (opt.tls_min || opt.tls_max)
        SET("--tls-min/--tls-max",
            rill_tls_config_set_versions(cfg, opt.tls_min, opt.tls_max, &err));
    if (opt.alpn)
        SET("--alpn", rill_tls_config_set_alpn(cfg, opt.alpn, &err));
    if (opt.ciphers)
        SET("--ciphers", rill_tls_config_set_ciphers(cfg, opt.ciphers, &err));
    if (opt.tls13_ciphers)
        SET("--tls13-ciphers", rill_tls_config_set_ciphersuites(cfg, opt.tls13_ciphers, &err));
    if (opt.groups)
        SET("--groups", rill_tls_config_set_groups(cfg, opt.groups, &err));
    for (size_t i = 0; i < opt.npins; i++)
        SET("--pin", rill_tls_config_add_pin(cfg, opt.pins[i], &err));
    if (opt.cert) {
        SET("--cert/--key",
            rill_tls_config_set_cert_file(cfg, opt.cert, opt.key ? opt.key : opt.cert, &err));
        /* A missing or unreadable file is a local certificate problem too, not bad usage. */
        if (rc == RC_USAGE)
            rc = RC_LOCAL_CERT;
    }
    for (size_t i = 0; server && i < opt.nsni; i++) {
        const struct sni_entry *e = &opt.sni[i];
        SET("--sni",
            rill_tls_config_add_cert_file(cfg, e->name, e->cert, e->key ? e->key : e->cert, &err));
        /* A bad name is bad usage; a file that does not load is a certificate problem. */
        if (rc == RC_USAGE && strstr(err.msg, "is not a host name") == NULL)
            rc = RC_LOCAL_CERT;
    }
    if (server && opt.reload)
        SET("--reload", rill_tls_config_set_reload_check(cfg, RELOAD_MS, on_reload, NULL, &err));
    if (server && (opt.cafile || opt.capath))
        SET("--cafile", rill_tls_config_set_verify_client(cfg, RILL_TLS_CLIENT_AUTH_REQUIRE, &err));
    if (!server && opt.insecure)
        SET("--insecure", rill_tls_config_insecure_noverifycert(cfg, &err));
#undef SET
    if (rc != RC_OK) {
        if (rc == RC_USAGE) {
            usage_error("%s: %s", what, err.msg);
        } else {
            fail(rc, what, "%s", err.msg);
        }
        rill_tls_config_free(cfg);
        return rc;
    }
    if (!server && opt.insecure) {
        pthread_mutex_lock(&out_lock);
        put_err("rillcat: warning: --insecure: the peer's certificate is not verified; anyone on "
                "the path can read and change this connection\n");
        pthread_mutex_unlock(&out_lock);
    }
    *out = cfg;
    return RC_OK;
}

/* ---- -v facts ---- */

static void note_chain(rill_stream *s)
{
    if (!opt.verbose)
        return;
    char chain[1024];
    rill_describe(s, chain, sizeof chain);
    note("chain: %s", chain);
    rill_tls_info info;
    if (!rill_find(s, RILL_LAYER_TLS) || rill_tls_get_info(s, &info) != RILL_OK)
        return;
    note("TLS: %s, cipher %s, ALPN %s, %s, peer %s", info.version, info.cipher,
         info.alpn[0] ? info.alpn : "(none)", info.resumed ? "resumed" : "full handshake",
         info.verified ? "verified" : "NOT verified");
    note("key exchange: group %s, %s", info.group[0] ? info.group : "(none)",
         info.hello_retry ? "after a HelloRetryRequest" : "no HelloRetryRequest");
    if (info.subject[0]) {
        note("peer certificate: subject %s", info.subject);
        note("peer certificate: issuer %s", info.issuer);
        note("peer certificate: SANs %s", info.sans[0] ? info.sans : "(none)");
        note("peer certificate: valid %s to %s", info.not_before, info.not_after);
        note("peer certificate: key %s", info.spki_sha256);
    } else {
        note("peer certificate: none");
    }
    if (info.is_server) {
        note("SNI from the client: %s", info.servername[0] ? info.servername : "(none)");
        if (info.cert_type[0])
            note("certificate served: entry %s, %s key %s", info.cert_entry, info.cert_type,
                 info.cert_spki);
    }
}

/* --showcerts: the certificates the peer sent, as `openssl s_client -showcerts` lists them. */
static int show_certs(rill_stream *s)
{
    char *text = NULL;
    size_t used = 0, cap = 0;
    int rc = RC_OK;
    for (size_t i = 0;; i++) {
        rill_tls_cert info;
        char *pem = NULL;
        size_t pem_len = 0;
        rill_status st = rill_tls_get_peer_cert(s, i, &info, &pem, &pem_len);
        if (st == RILL_EOF)
            break;
        if (st != RILL_OK) {
            rc = fail(RC_FAIL, "--showcerts", "%s", rill_errmsg(s));
            break;
        }
        char head[1024];
        int n =
            snprintf(head, sizeof head, "%2zu s:%s\n   i:%s\n   v:NotBefore: %s; NotAfter: %s\n", i,
                     info.subject, info.issuer, info.not_before, info.not_after);
        size_t hl = n > 0 ? (size_t)n : 0;
        if (hl >= sizeof head)
            hl = sizeof head - 1;
        if (used + hl + pem_len > cap) {
            size_t want = (used + hl + pem_len) * 2;
            char *bigger = realloc(text, want);
            if (!bigger) {
                rill_free(pem);
                rc = fail(RC_FAIL, "--showcerts", "out of memory");
                break;
            }
            text = bigger;
            cap = want;
        }
        memcpy(text + used, head, hl);
        memcpy(text + used + hl, pem, pem_len);
        used += hl + pem_len;
        rill_free(pem);
    }
    if (rc == RC_OK && used == 0)
        note("--showcerts: the peer sent no certificate");
    if (rc == RC_OK && used > 0)
        rc = put_out(text, used);
    free(text);
    return rc;
}

struct trace {
    bool tcp_up; /* an attempt succeeded: what fails next is the TLS handshake */
};

static void on_connect_event(void *arg, const struct rill_connect_event *ev)
{
    struct trace *tr = arg;
    switch (ev->type) {
    case RILL_EV_RESOLVING: note("resolving %s", ev->host); break;
    case RILL_EV_RESOLVED:
        note("resolved %s: %zu address%s (%lld ms)", ev->host, ev->count,
             ev->count == 1 ? "" : "es", (long long)ev->elapsed_ms);
        break;
    case RILL_EV_ATTEMPT: note("trying %s", ev->addr); break;
    case RILL_EV_ATTEMPT_FAILED:
        note("%s: %s", ev->addr, ev->message ? ev->message : rill_strerror(ev->status));
        break;
    case RILL_EV_CONNECTED:
        tr->tcp_up = true;
        note("connected to %s (%lld ms)", ev->addr, (long long)ev->elapsed_ms);
        break;
    case RILL_EV_ANSWER:
        if (ev->status == RILL_OK)
            note("%s answer for %s: %zu address%s (%lld ms)", ev->family == 6 ? "AAAA" : "A",
                 ev->host, ev->count, ev->count == 1 ? "" : "es", (long long)ev->elapsed_ms);
        else
            note("%s answer for %s: %s (%lld ms)", ev->family == 6 ? "AAAA" : "A", ev->host,
                 ev->message ? ev->message : rill_strerror(ev->status), (long long)ev->elapsed_ms);
        break;
    case RILL_EV_TLS_HANDSHAKE: note("TLS handshake with %s", ev->addr); break;
    case RILL_EV_TLS_DONE:
        if (ev->status == RILL_OK)
            note("TLS handshake done (%lld ms)", (long long)ev->elapsed_ms);
        break;
    case RILL_EV_PROXY_TLS: note("TLS handshake with proxy %s (%s)", ev->host, ev->addr); break;
    case RILL_EV_PROXY_TLS_DONE:
        if (ev->status == RILL_OK)
            note("TLS handshake with proxy done (%lld ms)", (long long)ev->elapsed_ms);
        else
            note("TLS handshake with proxy failed: %s", ev->message ? ev->message : "");
        break;
    case RILL_EV_PROXY_HANDSHAKE:
        note("asking proxy %s for a tunnel to %s (%s)", ev->addr, ev->host,
             ev->message ? ev->message : "");
        break;
    case RILL_EV_PROXY_DONE:
        if (ev->status == RILL_OK)
            note("proxy tunnel to %s open (%lld ms)", ev->host, (long long)ev->elapsed_ms);
        else
            note("proxy refused: %s", ev->message ? ev->message : rill_strerror(ev->status));
        break;
    }
}

/*
 * rill_connect() done as an event loop would do it: the non-blocking connect machine, stepped
 * whenever its descriptor is ready or its timer is due (so rillcat exercises that API).
 */
static rill_status connect_by_steps(rill_ctx *ctx, const char *host, uint16_t port,
                                    const rill_connect_opts *opts, rill_stream **out,
                                    rill_error *err)
{
    rill_connect_op *op = NULL;
    rill_status st = rill_connect_start(ctx, host, port, opts, &op, err);
    while (st == RILL_OK) {
        st = rill_connect_step(op, out, err);
        if (st != RILL_WANT_READ && st != RILL_WANT_WRITE)
            break;
        struct pollfd p = { .fd = -1 };
        int timeout = -1;
        if (rill_connect_poll_info(op, &p.fd, &p.events, &timeout) != RILL_OK)
            timeout = 0; /* finished meanwhile: the next step says how */
        if (poll(&p, p.fd >= 0 ? 1 : 0, timeout) < 0 && errno != EINTR) {
            snprintf(err->msg, sizeof err->msg, "connect: poll: %s", strerror(errno));
            st = err->code = RILL_E_IO;
            break;
        }
        st = RILL_OK;
    }
    rill_connect_op_free(op);
    return st;
}

/* ---- the copy loop ---- */

struct pump {
    rill_stream *s;
    int in_fd; /* stdin, or -1: nothing to send, and no half-close either */
    const char *peer;
};

/* Expand LF to CRLF (an LF already preceded by CR is left alone, across reads too). */
static size_t crlf_expand(const unsigned char *in, size_t n, unsigned char *out, bool *last_cr)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n' && !*last_cr)
            out[o++] = '\r';
        out[o++] = in[i];
        *last_cr = in[i] == '\r';
    }
    return o;
}

/*
 * Copy stdin to the stream and the stream to stdout until the peer closes. Returns an exit
 * status; failures are reported. The stream is left to the caller to close.
 */
static int pump_loop(const struct pump *p, unsigned char *down, unsigned char *raw,
                     unsigned char *up);
static void note_peer_close(rill_stream *s, const char *peer);

static int pump_run(const struct pump *p)
{
    /* down: connection to stdout; raw: from stdin; up: to the connection (room for CRLF). */
    unsigned char *down = malloc(4 * IO_CHUNK);
    if (!down)
        return fail(RC_FAIL, "copy", "out of memory");
    int rc = pump_loop(p, down, down + IO_CHUNK, down + 2 * IO_CHUNK);
    free(down);
    return rc;
}

static int pump_loop(const struct pump *p, unsigned char *down, unsigned char *raw,
                     unsigned char *up)
{
    rill_stream *s = p->s;
    size_t up_len = 0, up_off = 0;
    bool in_eof = p->in_fd < 0, shut = p->in_fd < 0, got_data = false, last_cr = false;
    short want_rd = 0, want_wr = 0; /* events the stream waits for; 0: try now */
    int conn_fd = -1;
    if (rill_set_timeouts(s, 0, 0) != RILL_OK)
        return fail(RC_FAIL, "connection", "%s", rill_errmsg(s));
    int64_t last_activity = now_ms();
    for (;;) {
        bool progress = false;
        rill_status st;
        if (!want_rd) {
            size_t n = 0;
            st = rill_read(s, down, IO_CHUNK, &n);
            if (st == RILL_OK) {
                got_data = progress = true;
                char why[RILL_ERRMSG_MAX];
                pthread_mutex_lock(&out_lock); /* -k: one chunk at a time */
                bool written = write_out(down, n, why, sizeof why);
                pthread_mutex_unlock(&out_lock);
                if (!written)
                    return fail(RC_FAIL, "write to stdout", "%s", why);
            } else if (st == RILL_EOF) {
                note_peer_close(s, p->peer);
                return RC_OK;
            } else if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
                if (rill_poll_info(s, &conn_fd, &want_rd) != RILL_OK)
                    return fail(RC_FAIL, "connection", "%s", rill_errmsg(s));
            } else {
                int rc = io_rc(st, rill_errmsg(s), got_data);
                if (st == RILL_E_TRUNCATED)
                    return fail(rc, "receive", "%s; --allow-truncation accepts such an end",
                                rill_errmsg(s));
                return fail(rc, rc == RC_TLS ? "TLS handshake" : "receive", "%s", rill_errmsg(s));
            }
        }
        if (up_off < up_len && !want_wr) {
            size_t n = 0;
            st = rill_write(s, up + up_off, up_len - up_off, &n);
            if (st == RILL_OK) {
                progress = true;
                up_off += n;
                if (up_off == up_len)
                    up_off = up_len = 0;
            } else if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
                if (rill_poll_info(s, &conn_fd, &want_wr) != RILL_OK)
                    return fail(RC_FAIL, "connection", "%s", rill_errmsg(s));
            } else {
                return fail(io_rc(st, rill_errmsg(s), got_data), "send", "%s", rill_errmsg(s));
            }
        }
        if (in_eof && !shut && up_len == 0 && opt.no_shutdown) {
            shut = true; /* nothing is sent: the peer decides when the connection ends */
            note("stdin ended: --no-shutdown: the connection stays open until %s closes it%s",
                 p->peer, opt.timeout_ms != RILL_TIMEOUT_NONE ? " or --timeout passes" : "");
        }
        if (in_eof && !shut && up_len == 0 && !want_wr) {
            st = rill_shutdown(s);
            if (st == RILL_OK) {
                shut = progress = true;
                note("stdin ended: half-closed the connection (%s), reading until %s closes",
                     rill_find(s, RILL_LAYER_TLS) ? "TLS close_notify, then TCP FIN" : "TCP FIN",
                     p->peer);
            } else if (st == RILL_WANT_READ || st == RILL_WANT_WRITE) {
                if (rill_poll_info(s, &conn_fd, &want_wr) != RILL_OK)
                    return fail(RC_FAIL, "connection", "%s", rill_errmsg(s));
            } else {
                return fail(io_rc(st, rill_errmsg(s), got_data), "half-close", "%s",
                            rill_errmsg(s));
            }
        }

        struct pollfd fds[2];
        nfds_t nfds = 0;
        int in_slot = -1, conn_slot = -1;
        if (!in_eof && up_len == 0) {
            in_slot = (int)nfds;
            fds[nfds++] = (struct pollfd){ .fd = p->in_fd, .events = POLLIN };
        }
        if (want_rd || want_wr) {
            conn_slot = (int)nfds;
            fds[nfds++] = (struct pollfd){ .fd = conn_fd, .events = (short)(want_rd | want_wr) };
        }
        int64_t now = now_ms();
        if (progress)
            last_activity = now;
        int wait_ms = -1;
        if (progress || (!want_rd) || (up_len > 0 && !want_wr))
            wait_ms = 0; /* something can be tried again at once */
        else if (opt.timeout_ms != RILL_TIMEOUT_NONE) {
            int64_t left = last_activity + opt.timeout_ms - now;
            wait_ms = left > 0 ? (int)left : 0;
        }
        int r = poll(fds, nfds, wait_ms);
        if (r < 0 && errno != EINTR)
            return fail(RC_FAIL, "poll", "%s", strerror(errno));
        if (r == 0 && wait_ms != 0)
            return fail(RC_TIMEOUT, "timeout",
                        "nothing sent or received for %d ms (--timeout) with %s", opt.timeout_ms,
                        p->peer);
        if (r <= 0)
            continue;
        if (conn_slot >= 0 && fds[conn_slot].revents)
            want_rd = want_wr = 0;
        if (in_slot >= 0 && (fds[in_slot].revents & POLLNVAL)) {
            in_eof = true; /* started with stdin closed: nothing to send */
        } else if (in_slot >= 0 && fds[in_slot].revents) {
            ssize_t n = read(p->in_fd, raw, IO_CHUNK);
            if (n > 0) {
                if (opt.crlf) {
                    up_len = crlf_expand(raw, (size_t)n, up, &last_cr);
                } else {
                    memcpy(up, raw, (size_t)n);
                    up_len = (size_t)n;
                }
                up_off = 0;
                last_activity = now_ms();
            } else if (n == 0) {
                in_eof = true;
            } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
                return fail(RC_FAIL, "read from stdin", "%s", strerror(errno));
            }
        }
    }
}

/* -v: how the peer ended the connection. */
static void note_peer_close(rill_stream *s, const char *peer)
{
    rill_tls_info info;
    if (!rill_find(s, RILL_LAYER_TLS) || rill_tls_get_info(s, &info) != RILL_OK)
        note("%s closed the connection (TCP FIN)", peer);
    else if (info.truncated)
        note("%s closed the connection without TLS close_notify (TCP FIN only): accepted, "
             "--allow-truncation",
             peer);
    else
        note("%s closed the connection (TLS close_notify%s)", peer,
             info.close_notify ? "" : ", no close_notify");
}

/* Close a stream after the copy, with a bounded wait for what it still has to send. */
static void close_quietly(rill_stream *s, int wait_ms)
{
    if (!s)
        return;
    rill_status st = rill_set_timeouts(s, wait_ms, wait_ms);
    if (st != RILL_OK)
        note("closing: %s", rill_errmsg(s));
    st = rill_close(s);
    if (st != RILL_OK)
        note("closing: %s", rill_strerror(st));
}

/* The peer's address of a connection, for messages: the text of its transport. */
static void peer_name(rill_stream *s, char *buf, size_t len)
{
    rill_stream *t = rill_find(s, RILL_LAYER_TCP);
    if (!t)
        t = rill_find(s, RILL_LAYER_UNIX);
    char desc[256] = "";
    if (t)
        rill_describe(t, desc, sizeof desc);
    /* "tcp(fd=5 LOCAL > PEER)" when connected, "tcp(fd=5 LOCAL < PEER)" when accepted. */
    const char *gt = strstr(desc, " > ");
    if (!gt)
        gt = strstr(desc, " < ");
    const char *end = strrchr(desc, ')');
    if (gt && end && end > gt + 3)
        snprintf(buf, len, "%.*s", (int)(end - gt - 3), gt + 3);
    else
        snprintf(buf, len, "the peer");
}

/* ---- STARTTLS ---- */

struct plain {
    rill_stream *lines;
    const char *proto;
};

/* Read one line, without its CR LF; fails with a message. */
static int plain_read(struct plain *pl, char *line, size_t cap)
{
    size_t len;
    rill_status st = rill_read_line_copy(pl->lines, line, cap, &len);
    if (st == RILL_OK) {
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        note("S: %s", line);
        return RC_OK;
    }
    if (st == RILL_EOF)
        return fail(RC_RECV, "STARTTLS", "%s: the server closed the connection", pl->proto);
    if (st == RILL_E_INVALID || st == RILL_E_LINE_TOO_LONG)
        return fail(RC_TLS, "STARTTLS", "%s: reply line too long", pl->proto);
    return fail(st == RILL_E_TIMEOUT ? RC_TIMEOUT : RC_RECV, "STARTTLS", "%s: %s", pl->proto,
                rill_errmsg(pl->lines));
}

static int plain_send(struct plain *pl, const char *cmd)
{
    note("C: %s", cmd);
    rill_status st = rill_write_str(pl->lines, cmd, NULL);
    if (st == RILL_OK)
        st = rill_write_str(pl->lines, "\r\n", NULL);
    if (st == RILL_OK)
        st = rill_flush(pl->lines);
    if (st == RILL_OK)
        return RC_OK;
    return fail(st == RILL_E_TIMEOUT ? RC_TIMEOUT : RC_RECV, "STARTTLS", "%s: sending %s: %s",
                pl->proto, cmd, rill_errmsg(pl->lines));
}

/* A refused upgrade: the TLS handshake never happens (curl --ssl-reqd's 64). */
static int plain_refused(struct plain *pl, const char *line)
{
    return fail(RC_STARTTLS, "STARTTLS", "%s: the server did not agree to start TLS: \"%.200s\"",
                pl->proto, line);
}

static int not_offered(struct plain *pl)
{
    return fail(RC_STARTTLS, "STARTTLS", "%s: the server does not offer STARTTLS", pl->proto);
}

/*
 * A numeric reply (SMTP, LMTP, FTP: possibly multi-line, "250-..." then "250 ..."); *code gets
 * its code; *has_starttls if a line offers STARTTLS.
 */
static int smtp_reply(struct plain *pl, int *code, bool *has_starttls)
{
    char line[LINE_MAX_LEN + 1];
    *code = -1;
    for (;;) {
        int rc = plain_read(pl, line, sizeof line);
        if (rc != RC_OK)
            return rc;
        size_t len = strlen(line);
        bool well_formed = len >= 3 && strspn(line, "0123456789") >= 3 &&
                           (len == 3 || line[3] == ' ' || line[3] == '-');
        if (!well_formed && *code != -1 && strcmp(pl->proto, "ftp") == 0)
            continue; /* FTP's multi-line text may hold lines without the code */
        if (!well_formed || (*code != -1 && atoi(line) != *code))
            return fail(RC_TLS, "STARTTLS", "%s: malformed reply \"%.200s\"", pl->proto, line);
        *code = atoi(line);
        if (has_starttls && len >= 12 && strncasecmp(line + 4, "STARTTLS", 8) == 0 &&
            (line[12] == '\0' || line[12] == ' '))
            *has_starttls = true;
        if (len == 3 || line[3] == ' ')
            return RC_OK;
    }
}

/* SMTP (RFC 3207) and LMTP (RFC 2033: LHLO instead of EHLO). */
static int starttls_smtp(struct plain *pl)
{
    int code, rc;
    bool offered = false;
    bool lmtp = strcmp(pl->proto, "lmtp") == 0;
    if ((rc = smtp_reply(pl, &code, NULL)) != RC_OK)
        return rc;
    if (code != 220)
        return fail(RC_TLS, "STARTTLS", "%s: greeting with code %d, not 220", pl->proto, code);
    if ((rc = plain_send(pl, lmtp ? "LHLO rillcat" : "EHLO rillcat")) != RC_OK ||
        (rc = smtp_reply(pl, &code, &offered)) != RC_OK)
        return rc;
    if (code != 250)
        return fail(RC_TLS, "STARTTLS", "%s: %s answered with code %d", pl->proto,
                    lmtp ? "LHLO" : "EHLO", code);
    if (!offered)
        return not_offered(pl);
    if ((rc = plain_send(pl, "STARTTLS")) != RC_OK || (rc = smtp_reply(pl, &code, NULL)) != RC_OK)
        return rc;
    if (code != 220)
        return fail(RC_STARTTLS, "STARTTLS",
                    "%s: the server did not agree to start TLS: STARTTLS answered with code %d",
                    pl->proto, code);
    return RC_OK;
}

/* FTP (RFC 4217): AUTH TLS, answered 234. */
static int starttls_ftp(struct plain *pl)
{
    int code, rc;
    if ((rc = smtp_reply(pl, &code, NULL)) != RC_OK)
        return rc;
    if (code != 220)
        return fail(RC_TLS, "STARTTLS", "ftp: greeting with code %d, not 220", code);
    if ((rc = plain_send(pl, "AUTH TLS")) != RC_OK || (rc = smtp_reply(pl, &code, NULL)) != RC_OK)
        return rc;
    if (code != 234)
        return fail(RC_STARTTLS, "STARTTLS",
                    "ftp: the server did not agree to start TLS: AUTH TLS answered with code %d",
                    code);
    return RC_OK;
}

/* NNTP (RFC 4642): CAPABILITIES lists STARTTLS; STARTTLS is answered 382. */
static int starttls_nntp(struct plain *pl)
{
    char line[LINE_MAX_LEN + 1];
    int rc = plain_read(pl, line, sizeof line);
    if (rc != RC_OK)
        return rc;
    if (strncmp(line, "200", 3) != 0 && strncmp(line, "201", 3) != 0)
        return fail(RC_TLS, "STARTTLS", "nntp: unexpected greeting \"%.200s\"", line);
    if ((rc = plain_send(pl, "CAPABILITIES")) != RC_OK ||
        (rc = plain_read(pl, line, sizeof line)) != RC_OK)
        return rc;
    if (strncmp(line, "101", 3) == 0) {
        bool offered = false;
        for (;;) {
            if ((rc = plain_read(pl, line, sizeof line)) != RC_OK)
                return rc;
            if (strcmp(line, ".") == 0)
                break;
            if (strncasecmp(line, "STARTTLS", 8) == 0 && (line[8] == '\0' || line[8] == ' '))
                offered = true;
        }
        if (!offered)
            return not_offered(pl);
    } /* an old server without CAPABILITIES: just ask */
    if ((rc = plain_send(pl, "STARTTLS")) != RC_OK ||
        (rc = plain_read(pl, line, sizeof line)) != RC_OK)
        return rc;
    return strncmp(line, "382", 3) == 0 ? RC_OK : plain_refused(pl, line);
}

/* ManageSieve (RFC 5804): the greeting lists capabilities, "STARTTLS" among them, then OK. */
static int starttls_sieve(struct plain *pl)
{
    char line[LINE_MAX_LEN + 1];
    bool offered = false;
    int rc;
    for (;;) {
        if ((rc = plain_read(pl, line, sizeof line)) != RC_OK)
            return rc;
        if (strncasecmp(line, "\"STARTTLS\"", 10) == 0)
            offered = true;
        if (strncasecmp(line, "OK", 2) == 0 && (line[2] == '\0' || line[2] == ' '))
            break;
        if (line[0] != '"')
            return fail(RC_TLS, "STARTTLS", "sieve: unexpected greeting \"%.200s\"", line);
    }
    if (!offered)
        return not_offered(pl);
    if ((rc = plain_send(pl, "STARTTLS")) != RC_OK ||
        (rc = plain_read(pl, line, sizeof line)) != RC_OK)
        return rc;
    return strncasecmp(line, "OK", 2) == 0 && (line[2] == '\0' || line[2] == ' ')
               ? RC_OK
               : plain_refused(pl, line);
}

/*
 * IRC (the IRCv3 tls extension): STARTTLS is answered by numeric 670 (go ahead) or 691
 * (failed); a server that does not know the command says 421. Other lines (NOTICE) pass.
 */
static int starttls_irc(struct plain *pl)
{
    char line[LINE_MAX_LEN + 1];
    int rc = plain_send(pl, "STARTTLS");
    for (int i = 0; rc == RC_OK && i < 100; i++) {
        if ((rc = plain_read(pl, line, sizeof line)) != RC_OK)
            return rc;
        const char *cmd = line;
        if (*cmd == ':') { /* skip the prefix */
            cmd = strchr(cmd, ' ');
            if (!cmd)
                continue;
            cmd++;
        }
        if (strncmp(cmd, "670 ", 4) == 0 || strcmp(cmd, "670") == 0)
            return RC_OK;
        if (strncmp(cmd, "691", 3) == 0 || strncmp(cmd, "421", 3) == 0)
            return plain_refused(pl, line);
    }
    return rc != RC_OK ? rc : fail(RC_TLS, "STARTTLS", "irc: no answer to STARTTLS in 100 lines");
}

/* Read raw bytes into @p buf (NUL-terminated) until @p done says the reply is complete. */
static int plain_read_until(struct plain *pl, char *buf, size_t cap, size_t *len,
                            bool (*done)(const char *buf, size_t len))
{
    while (!done(buf, *len)) {
        if (*len + 1 >= cap)
            return fail(RC_TLS, "STARTTLS", "%s: reply too long", pl->proto);
        size_t n = 0;
        rill_status st = rill_read(pl->lines, buf + *len, cap - 1 - *len, &n);
        if (st == RILL_EOF)
            return fail(RC_RECV, "STARTTLS", "%s: the server closed the connection", pl->proto);
        if (st != RILL_OK)
            return fail(st == RILL_E_TIMEOUT ? RC_TIMEOUT : RC_RECV, "STARTTLS", "%s: %s",
                        pl->proto, rill_errmsg(pl->lines));
        *len += n;
        buf[*len] = '\0';
    }
    return RC_OK;
}

static int plain_send_raw(struct plain *pl, const void *data, size_t len, const char *what)
{
    note("C: %s", what);
    rill_status st = rill_write_all(pl->lines, data, len, NULL);
    if (st == RILL_OK)
        st = rill_flush(pl->lines);
    if (st == RILL_OK)
        return RC_OK;
    return fail(st == RILL_E_TIMEOUT ? RC_TIMEOUT : RC_RECV, "STARTTLS", "%s: sending %s: %s",
                pl->proto, what, rill_errmsg(pl->lines));
}

static bool xmpp_features_done(const char *buf, size_t len)
{
    (void)len;
    return strstr(buf, "</stream:features>") || strstr(buf, "<stream:features/>") ||
           strstr(buf, "</stream:stream>");
}

/* The end of a <proceed .../> or <failure .../> element (with or without a closing tag). */
static const char *xmpp_answer_end(const char *buf)
{
    const char *at = strstr(buf, "<proceed");
    if (!at)
        at = strstr(buf, "<failure");
    if (!at)
        return NULL;
    const char *gt = strchr(at, '>');
    if (!gt)
        return NULL;
    if (gt[-1] == '/')
        return gt + 1;
    const char *close = strstr(gt, at[1] == 'p' ? "</proceed>" : "</failure>");
    return close ? close + strlen("</proceed>") : NULL; /* as long as "</failure>" */
}

static bool xmpp_answer_done(const char *buf, size_t len)
{
    (void)len;
    return xmpp_answer_end(buf) || strstr(buf, "</stream:stream>");
}

/* XMPP (RFC 6120 5.4): the stream header, <starttls/> in the features, then <proceed/>. */
static int starttls_xmpp(struct plain *pl)
{
    const char *domain = opt.xmpp_host ? opt.xmpp_host : opt.servername ? opt.servername : opt.host;
    char open[600];
    int n = snprintf(open, sizeof open,
                     "<?xml version='1.0'?><stream:stream to='%.256s' xmlns='jabber:client' "
                     "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
                     domain);
    char buf[16384];
    size_t len = 0;
    buf[0] = '\0';
    int rc = plain_send_raw(pl, open, (size_t)n, open);
    if (rc == RC_OK)
        rc = plain_read_until(pl, buf, sizeof buf, &len, xmpp_features_done);
    if (rc != RC_OK)
        return rc;
    note("S: %s", buf);
    const char *tail = strstr(buf, "</stream:features>");
    if (tail)
        tail += strlen("</stream:features>");
    else if ((tail = strstr(buf, "<stream:features/>")) != NULL)
        tail += strlen("<stream:features/>");
    if (!tail)
        return fail(RC_TLS, "STARTTLS", "xmpp: no stream features from the server");
    if (!strstr(buf, "<starttls"))
        return not_offered(pl);
    static const char req[] = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    if ((rc = plain_send_raw(pl, req, sizeof req - 1, req)) != RC_OK)
        return rc;
    /* What came after the features (a server that answered early) belongs to the answer. */
    len -= (size_t)(tail - buf);
    memmove(buf, tail, len + 1);
    if ((rc = plain_read_until(pl, buf, sizeof buf, &len, xmpp_answer_done)) != RC_OK)
        return rc;
    note("S: %s", buf);
    const char *end = xmpp_answer_end(buf);
    if (!end || !strstr(buf, "<proceed"))
        return plain_refused(pl, buf);
    size_t after = len - (size_t)(end - buf);
    if (after > 0)
        return fail(RC_TLS, "STARTTLS",
                    "xmpp: refusing to upgrade: the server sent %zu bytes of plaintext after its "
                    "go-ahead (possible injection, CVE-2011-0411)",
                    after);
    return RC_OK;
}

/* Read exactly @p len bytes. */
static int plain_read_exact(struct plain *pl, void *buf, size_t len)
{
    size_t got = 0;
    rill_status st = rill_read_full(pl->lines, buf, len, &got);
    if (st == RILL_OK)
        return RC_OK;
    if (st == RILL_EOF)
        return fail(RC_RECV, "STARTTLS", "%s: the server closed the connection", pl->proto);
    return fail(st == RILL_E_TIMEOUT ? RC_TIMEOUT : RC_RECV, "STARTTLS", "%s: %s", pl->proto,
                rill_errmsg(pl->lines));
}

/* A BER length at @p p (short or long form, up to 4 bytes); -1 when malformed. */
static long ber_length(const unsigned char *p, size_t avail, size_t *used)
{
    if (avail < 1)
        return -1;
    if (p[0] < 0x80) {
        *used = 1;
        return p[0];
    }
    size_t k = p[0] & 0x7f;
    if (k == 0 || k > 4 || avail < 1 + k)
        return -1;
    long v = 0;
    for (size_t i = 1; i <= k; i++)
        v = v << 8 | p[i];
    *used = 1 + k;
    return v;
}

/*
 * LDAP (RFC 4511 4.14): an ExtendedRequest for StartTLS (OID 1.3.6.1.4.1.1466.20037), answered
 * by an ExtendedResponse whose resultCode is 0 (success).
 */
static int starttls_ldap(struct plain *pl)
{
    static const char oid[] = "1.3.6.1.4.1.1466.20037";
    unsigned char req[2 + 3 + 2 + 2 + sizeof oid - 1];
    size_t oid_len = sizeof oid - 1;
    unsigned char *q = req;
    *q++ = 0x30; /* LDAPMessage */
    *q++ = (unsigned char)(3 + 2 + 2 + oid_len);
    *q++ = 0x02; /* messageID 1 */
    *q++ = 0x01;
    *q++ = 0x01;
    *q++ = 0x77; /* [APPLICATION 23] ExtendedRequest */
    *q++ = (unsigned char)(2 + oid_len);
    *q++ = 0x80; /* [0] requestName */
    *q++ = (unsigned char)oid_len;
    memcpy(q, oid, oid_len);
    int rc = plain_send_raw(pl, req, sizeof req, "ExtendedRequest StartTLS");
    unsigned char head[6];
    if (rc != RC_OK || (rc = plain_read_exact(pl, head, 2)) != RC_OK)
        return rc;
    if (head[0] != 0x30)
        return fail(RC_TLS, "STARTTLS", "ldap: the answer is not an LDAP message");
    size_t used = 0;
    long body_len;
    if (head[1] < 0x80) {
        body_len = head[1];
    } else {
        size_t k = head[1] & 0x7f;
        if (k == 0 || k > 4 || (rc = plain_read_exact(pl, head + 2, k)) != RC_OK)
            return rc != RC_OK ? rc : fail(RC_TLS, "STARTTLS", "ldap: malformed answer");
        body_len = ber_length(head + 1, 1 + k, &used);
    }
    if (body_len < 8 || body_len > 4096)
        return fail(RC_TLS, "STARTTLS", "ldap: malformed answer (length %ld)", body_len);
    unsigned char body[4096];
    if ((rc = plain_read_exact(pl, body, (size_t)body_len)) != RC_OK)
        return rc;
    const unsigned char *p = body, *end = body + body_len;
    /* messageID INTEGER, then [APPLICATION 24] ExtendedResponse { resultCode ENUMERATED, ... } */
    if (p[0] != 0x02 || p[1] > 4 || p + 2 + p[1] > end)
        return fail(RC_TLS, "STARTTLS", "ldap: malformed answer (message id)");
    p += 2 + p[1];
    if (p >= end || *p != 0x78)
        return fail(RC_TLS, "STARTTLS", "ldap: the answer is not an ExtendedResponse");
    long rlen = ber_length(p + 1, (size_t)(end - p - 1), &used);
    p += 1 + used;
    if (rlen < 3 || p + rlen > end || p[0] != 0x0a || p[1] != 1)
        return fail(RC_TLS, "STARTTLS", "ldap: malformed ExtendedResponse");
    int code = p[2];
    note("S: ExtendedResponse resultCode %d", code);
    if (code == 0)
        return RC_OK;
    /* matchedDN, then diagnosticMessage: the server's own words, when it gave some. */
    char diag[200] = "";
    const unsigned char *d = p + 3, *rend = p + rlen;
    for (int field = 0; field < 2 && d + 2 <= rend && *d == 0x04; field++) {
        long flen = ber_length(d + 1, (size_t)(rend - d - 1), &used);
        if (flen < 0 || d + 1 + used + flen > rend)
            break;
        if (field == 1)
            snprintf(diag, sizeof diag, "%.*s", (int)(flen < 190 ? flen : 190),
                     (const char *)d + 1 + used);
        d += 1 + used + flen;
    }
    for (char *c = diag; *c; c++)
        *c = (char)(*c >= 0x20 && *c < 0x7f ? *c : '?');
    return fail(RC_STARTTLS, "STARTTLS", "ldap: the server refused StartTLS: resultCode %d%s%s",
                code, diag[0] ? ": " : "", diag);
}

/* PostgreSQL: the SSLRequest message, answered by one byte, 'S' (go ahead) or 'N'. */
static int starttls_postgres(struct plain *pl)
{
    static const unsigned char req[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
    unsigned char answer;
    int rc = plain_send_raw(pl, req, sizeof req, "SSLRequest");
    if (rc != RC_OK || (rc = plain_read_exact(pl, &answer, 1)) != RC_OK)
        return rc;
    note("S: %c", answer >= 0x20 && answer < 0x7f ? answer : '?');
    if (answer == 'S')
        return RC_OK;
    if (answer == 'N')
        return fail(RC_STARTTLS, "STARTTLS", "postgres: the server does not offer SSL ('N')");
    return fail(RC_TLS, "STARTTLS", "postgres: unexpected answer 0x%02x to SSLRequest", answer);
}

static int starttls_imap(struct plain *pl)
{
    char line[LINE_MAX_LEN + 1];
    int rc = plain_read(pl, line, sizeof line);
    if (rc != RC_OK)
        return rc;
    if (strncasecmp(line, "* OK", 4) != 0)
        return fail(RC_TLS, "STARTTLS", "imap: unexpected greeting \"%.200s\"", line);
    if ((rc = plain_send(pl, "a001 STARTTLS")) != RC_OK)
        return rc;
    for (;;) {
        if ((rc = plain_read(pl, line, sizeof line)) != RC_OK)
            return rc;
        if (strncmp(line, "* ", 2) == 0)
            continue; /* untagged data before the tagged answer */
        if (strncasecmp(line, "a001 OK", 7) == 0)
            return RC_OK;
        return plain_refused(pl, line);
    }
}

static int starttls_pop3(struct plain *pl)
{
    char line[LINE_MAX_LEN + 1];
    int rc = plain_read(pl, line, sizeof line);
    if (rc != RC_OK)
        return rc;
    if (strncmp(line, "+OK", 3) != 0)
        return fail(RC_TLS, "STARTTLS", "pop3: unexpected greeting \"%.200s\"", line);
    if ((rc = plain_send(pl, "STLS")) != RC_OK || (rc = plain_read(pl, line, sizeof line)) != RC_OK)
        return rc;
    return strncmp(line, "+OK", 3) == 0 ? RC_OK : plain_refused(pl, line);
}

static int starttls_plain_line(struct plain *pl)
{
    char line[LINE_MAX_LEN + 1];
    int rc = plain_send(pl, "STARTTLS");
    if (rc != RC_OK || (rc = plain_read(pl, line, sizeof line)) != RC_OK)
        return rc;
    bool ok = strncasecmp(line, "OK", 2) == 0 || strncasecmp(line, "+OK", 3) == 0 ||
              (line[0] == '2' && strspn(line, "0123456789") == 3);
    return ok ? RC_OK : plain_refused(pl, line);
}

/*
 * The plain part of --starttls over @p tcp (which stays the caller's), under the connect
 * deadline. A line reader borrows the stream for the exchange and is closed before TLS starts:
 * bytes it still holds arrived before the handshake, unauthenticated, so the upgrade is refused.
 */
static int starttls_exchange(rill_stream *tcp, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return fail(RC_TIMEOUT, "STARTTLS", "the connect timeout (%d ms) passed",
                    opt.connect_timeout_ms);
    struct plain pl = { .proto = opt.starttls };
    rill_status st = rill_lines_new(tcp, LINE_MAX_LEN, RILL_EOL_LF, RILL_BORROW, &pl.lines);
    if (st != RILL_OK)
        return fail(RC_FAIL, "STARTTLS", "%s", rill_errmsg(tcp));
    if (rill_set_timeouts(pl.lines, (int)left, (int)left) != RILL_OK) {
        (void)rill_close(pl.lines);
        return fail(RC_FAIL, "STARTTLS", "%s", rill_errmsg(tcp));
    }
    const char *proto = opt.starttls;
    int rc = strcmp(proto, "smtp") == 0 || strcmp(proto, "lmtp") == 0 ? starttls_smtp(&pl)
             : strcmp(proto, "imap") == 0                             ? starttls_imap(&pl)
             : strcmp(proto, "pop3") == 0                             ? starttls_pop3(&pl)
             : strcmp(proto, "ftp") == 0                              ? starttls_ftp(&pl)
             : strcmp(proto, "xmpp") == 0                             ? starttls_xmpp(&pl)
             : strcmp(proto, "ldap") == 0                             ? starttls_ldap(&pl)
             : strcmp(proto, "nntp") == 0                             ? starttls_nntp(&pl)
             : strcmp(proto, "sieve") == 0                            ? starttls_sieve(&pl)
             : strcmp(proto, "postgres") == 0                         ? starttls_postgres(&pl)
             : strcmp(proto, "irc") == 0                              ? starttls_irc(&pl)
                                                                      : starttls_plain_line(&pl);
    size_t early = rill_pending(pl.lines);
    st = rill_close(pl.lines);
    if (rc != RC_OK)
        return rc;
    if (early > 0 || st == RILL_E_PENDING_DATA)
        return fail(RC_TLS, "STARTTLS",
                    "%s: refusing to upgrade: the server sent %zu bytes of plaintext after its "
                    "go-ahead (possible injection, CVE-2011-0411)",
                    opt.starttls, early);
    if (st != RILL_OK)
        return fail(RC_RECV, "STARTTLS", "%s: %s", opt.starttls, rill_strerror(st));
    return RC_OK;
}

/* Start TLS in place over the plain @p *s (then the TLS stream on top) and handshake. */
static int starttls_upgrade(rill_stream **s, rill_tls_config *cfg, int64_t deadline)
{
    rill_status st = rill_starttls(s, cfg, opt.servername ? opt.servername : opt.host,
                                   opt.allow_truncation ? RILL_TLS_ALLOW_TRUNCATION : 0);
    if (st != RILL_OK)
        return fail(st == RILL_E_PENDING_DATA ? RC_TLS : RC_FAIL, "STARTTLS", "%s",
                    rill_errmsg(*s));
    rill_stream *tls = *s;
    int64_t left = deadline - now_ms();
    if (left <= 0)
        left = 1;
    st = rill_set_timeouts(tls, (int)left, (int)left);
    if (st == RILL_OK)
        st = rill_tls_handshake(tls);
    if (st != RILL_OK)
        return fail(connect_rc(st, true), "TLS handshake", "%s", rill_errmsg(tls));
    return rill_set_timeouts(tls, RILL_TIMEOUT_NONE, RILL_TIMEOUT_NONE) == RILL_OK
               ? RC_OK
               : fail(RC_FAIL, "TLS handshake", "%s", rill_errmsg(tls));
}

/* ---- client mode ---- */

static bool is_numeric_host(const char *host)
{
    unsigned char buf[16];
    char bare[64];
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof bare) {
        memcpy(bare, host + 1, len - 2);
        bare[len - 2] = '\0';
        host = bare;
    }
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int make_ctx(rill_ctx **ctx)
{
    rill_ctx_opts copts;
    rill_ctx_opts_init(&copts);
    copts.dns_servers = opt.dns_servers;
    copts.overrides = opt.nresolves ? opt.resolves : NULL;
    copts.family = opt.family;
    rill_error err;
    rill_status st = rill_ctx_new(&copts, ctx, &err);
    if (st == RILL_OK)
        return RC_OK;
    if (st == RILL_E_INVALID)
        return usage_error("%s", err.msg);
    return fail(st == RILL_E_DNS ? RC_RESOLVE : RC_FAIL, "resolver", "%s", err.msg);
}

static const char *env_either(const char *lower, const char *upper)
{
    const char *v = getenv(lower);
    if (!v || !*v)
        v = getenv(upper);
    return v && *v ? v : NULL;
}

/*
 * The proxy for this connect, as curl picks it: --proxy, else https_proxy/HTTPS_PROXY when TLS
 * is asked for (--tls, --starttls), then all_proxy/ALL_PROXY; --noproxy, else
 * no_proxy/NO_PROXY, names the hosts reached directly. Sets *scheme (0: no proxy).
 */
static int choose_proxy(rill_connect_opts *copts, rill_proxy_scheme *scheme, char *user,
                        size_t ulen)
{
    *scheme = 0;
    const char *url = opt.proxy;
    const char *from = "--proxy";
    if (!url && (opt.tls || opt.starttls)) {
        url = env_either("https_proxy", "HTTPS_PROXY");
        from = getenv("https_proxy") && *getenv("https_proxy") ? "https_proxy" : "HTTPS_PROXY";
    }
    if (!url) {
        url = env_either("all_proxy", "ALL_PROXY");
        from = getenv("all_proxy") && *getenv("all_proxy") ? "all_proxy" : "ALL_PROXY";
    }
    const char *no = opt.noproxy ? opt.noproxy : env_either("no_proxy", "NO_PROXY");
    if (!url)
        return RC_OK;
    if (rill_proxy_bypass(no, opt.host, (uint16_t)opt.port)) {
        note("no proxy for %s (%s)", opt.host, opt.noproxy ? "--noproxy" : "no_proxy");
        return RC_OK;
    }
    rill_proxy p;
    rill_error err;
    if (rill_proxy_parse(url, &p, &err) != RILL_OK)
        return usage_error("%s: %s", from, err.msg);
    *scheme = p.scheme;
    copts->proxy = url;
    if (opt.proxy_user) {
        const char *colon = strchr(opt.proxy_user, ':');
        snprintf(user, ulen, "%.*s", (int)(colon - opt.proxy_user), opt.proxy_user);
        copts->proxy_user = user;
        copts->proxy_password = colon + 1;
    }
    note("proxy %s:%u (%s, from %s)", p.host, p.port, url, from);
    return RC_OK;
}

/* Exit status of a connect through a proxy that failed; -1 when the general rules apply. */
static int proxy_rc(rill_status st, const char *msg, rill_proxy_scheme scheme)
{
    bool socks = scheme == RILL_PROXY_SOCKS5 || scheme == RILL_PROXY_SOCKS5H;
    bool reaching_proxy = strncmp(msg, "proxy ", 6) == 0;
    switch (st) {
    case RILL_E_PROXY:
    case RILL_E_PROTOCOL: return socks ? RC_PROXY : RC_RECV;
    case RILL_E_DNS: return reaching_proxy ? RC_PROXY_DNS : RC_RESOLVE;
    case RILL_E_REFUSED:
    case RILL_E_CONNECT: return reaching_proxy ? RC_CONNECT : -1;
    default: return -1;
    }
}

static int run_client(void)
{
    int rc;
    rill_tls_config *cfg = NULL;
    rill_ctx *ctx = NULL;
    rill_stream *s = NULL;
    if (opt.tls && (rc = make_tls_config(false, &cfg)) != RC_OK)
        return rc;
    int64_t start = now_ms(), deadline = start + opt.connect_timeout_ms;
    struct trace tr = { 0 };
    rill_connect_opts copts;
    rill_connect_opts_init(&copts);
    copts.timeout_ms = opt.connect_timeout_ms;
    copts.family = opt.family;
    copts.on_event = on_connect_event;
    copts.on_event_arg = &tr;
    if (!opt.starttls) {
        copts.tls = cfg;
        copts.tls_servername = opt.servername;
        copts.tls_flags = opt.allow_truncation ? RILL_TLS_ALLOW_TRUNCATION : 0;
    }
    rill_proxy_scheme scheme = 0;
    char proxy_user[256];
    rill_tls_config *proxy_cfg = NULL;
    if (!opt.unix_path && (rc = choose_proxy(&copts, &scheme, proxy_user, sizeof proxy_user)))
        return rc;
    if (scheme == RILL_PROXY_HTTPS && opt.proxy_cacert) {
        rill_error perr;
        if (rill_tls_config_new(&proxy_cfg, &perr) != RILL_OK ||
            rill_tls_config_set_ca_file(proxy_cfg, opt.proxy_cacert, &perr) != RILL_OK) {
            rill_tls_config_free(proxy_cfg);
            rill_tls_config_free(cfg);
            return fail(RC_LOCAL_CERT, "--proxy-cacert", "%s", perr.msg);
        }
        copts.proxy_tls = proxy_cfg;
    }
    rill_error err;
    rill_status st;
    char peer[160];
    if (opt.unix_path) {
        snprintf(peer, sizeof peer, "%s", opt.unix_path);
        note("connecting to unix socket %s", opt.unix_path);
        st = rill_unix_connect(opt.unix_path, &copts, &s, &err);
        if (st != RILL_OK) {
            rc = fail(connect_rc(st, false), "connect", "%s", err.msg);
            goto out;
        }
        if (cfg && !opt.starttls) {
            rc = starttls_upgrade(&s, cfg, deadline);
            if (rc != RC_OK)
                goto out;
        }
    } else {
        snprintf(peer, sizeof peer, "%s port %u", opt.host, opt.port);
        if (!is_numeric_host(opt.host) || opt.nresolves || opt.dns_servers) {
            if ((rc = make_ctx(&ctx)) != RC_OK)
                goto out;
        }
        st = connect_by_steps(ctx, opt.host, (uint16_t)opt.port, &copts, &s, &err);
        int prc = st != RILL_OK && scheme ? proxy_rc(st, err.msg, scheme) : -1;
        if (prc >= 0) {
            rc = fail(prc, "proxy", "%s", err.msg);
            goto out;
        }
        if (st != RILL_OK) {
            rc = connect_rc(st, tr.tcp_up);
            const char *what = rc == RC_RESOLVE ? "resolve"
                               : tr.tcp_up      ? "TLS handshake"
                                                : "connect";
            if (rc == RC_RESOLVE && !strstr(err.msg, opt.host))
                rc = fail(rc, what, "%s: %s", opt.host, err.msg);
            else
                rc = fail(rc, what, "%s", err.msg);
            goto out;
        }
    }
    if (opt.starttls) {
        if ((rc = starttls_exchange(s, deadline)) != RC_OK ||
            (rc = starttls_upgrade(&s, cfg, deadline)) != RC_OK)
            goto out;
    }
    note("connected in %lld ms", (long long)(now_ms() - start));
    note_chain(s);
    if (opt.showcerts && (rc = show_certs(s)) != RC_OK)
        goto out;
    struct pump p = { .s = s, .in_fd = STDIN_FILENO, .peer = peer };
    rc = pump_run(&p);
out:
    close_quietly(s, 1000);
    rill_ctx_free(ctx);
    rill_tls_config_free(cfg);
    rill_tls_config_free(proxy_cfg);
    return rc;
}

/* ---- listen mode ---- */

struct conn_job {
    rill_stream *s;
    bool shared_out;
};

static int echo_loop(rill_stream *s, const char *peer, unsigned char *buf, bool *got);

/* Echo every byte back until the peer closes; then half-close. */
static int echo_run(rill_stream *s, const char *peer)
{
    bool got = false;
    if (rill_set_timeouts(s, opt.timeout_ms, opt.timeout_ms) != RILL_OK)
        return fail(RC_FAIL, "connection", "%s", rill_errmsg(s));
    unsigned char *buf = malloc(IO_CHUNK);
    if (!buf)
        return fail(RC_FAIL, "echo", "out of memory");
    int rc = echo_loop(s, peer, buf, &got);
    free(buf);
    if (rc != RC_OK)
        return rc;
    rill_status st = rill_shutdown(s);
    if (st != RILL_OK && st != RILL_E_CLOSED) {
        char what[200];
        snprintf(what, sizeof what, "connection from %s", peer);
        return fail(io_rc(st, rill_errmsg(s), got), what, "%s", rill_errmsg(s));
    }
    note("%s closed the connection", peer);
    return RC_OK;
}

static int echo_loop(rill_stream *s, const char *peer, unsigned char *buf, bool *got)
{
    for (;;) {
        size_t n = 0;
        rill_status st = rill_read(s, buf, IO_CHUNK, &n);
        if (st == RILL_EOF)
            break;
        if (st == RILL_OK)
            st = rill_write_all(s, buf, n, NULL);
        if (st != RILL_OK) {
            char what[200];
            snprintf(what, sizeof what, "connection from %s", peer);
            return fail(io_rc(st, rill_errmsg(s), *got), what, "%s", rill_errmsg(s));
        }
        *got = true;
    }
    return RC_OK;
}

/* Serve one accepted connection (the TLS handshake, then echo or copy); returns exit status. */
static int serve(rill_stream *s, bool shared_out)
{
    char peer[160];
    peer_name(s, peer, sizeof peer);
    note("connection from %s", peer);
    int rc = RC_OK;
    if (rill_find(s, RILL_LAYER_TLS)) {
        rill_status st = rill_set_timeouts(s, opt.connect_timeout_ms, opt.connect_timeout_ms);
        if (st == RILL_OK)
            st = rill_tls_handshake(s);
        if (st != RILL_OK) {
            char what[200];
            snprintf(what, sizeof what, "TLS handshake with %s", peer);
            rc = fail(connect_rc(st, true), what, "%s", rill_errmsg(s));
            goto out;
        }
        if (rill_set_timeouts(s, RILL_TIMEOUT_NONE, RILL_TIMEOUT_NONE) != RILL_OK) {
            rc = fail(RC_FAIL, "connection", "%s", rill_errmsg(s));
            goto out;
        }
    }
    note_chain(s);
    if (opt.showcerts && rill_find(s, RILL_LAYER_TLS) && (rc = show_certs(s)) != RC_OK)
        goto out;
    if (opt.echo) {
        rc = echo_run(s, peer);
    } else {
        struct pump p = { .s = s, .in_fd = shared_out ? -1 : STDIN_FILENO, .peer = peer };
        rc = pump_run(&p);
    }
out:
    close_quietly(s, 1000);
    return rc;
}

/*
 * -l -k: take a slot for a new connection; false when --max-conns connections are being served
 * already (*refused then counts the refusals so far).
 */
static bool conn_slot_take(unsigned long *refused)
{
    pthread_mutex_lock(&conn_lock);
    bool free_slot = conns_open < opt.max_conns;
    if (free_slot)
        conns_open++;
    else
        conns_refused++;
    *refused = conns_refused;
    pthread_mutex_unlock(&conn_lock);
    return free_slot;
}

static void conn_slot_release(void)
{
    pthread_mutex_lock(&conn_lock);
    conns_open--;
    pthread_mutex_unlock(&conn_lock);
}

static void *serve_thread(void *arg)
{
    struct conn_job *job = arg;
    (void)serve(job->s, job->shared_out);
    free(job);
    conn_slot_release(); /* after serve() closed the connection: its descriptor is free */
    return NULL;
}

static int run_listen(void)
{
    int rc;
    rill_tls_config *cfg = NULL;
    rill_listener *l = NULL;
    if (opt.tls && (rc = make_tls_config(true, &cfg)) != RC_OK)
        return rc;
    rill_listen_opts lopts;
    rill_listen_opts_init(&lopts);
    lopts.stream.tls = cfg;
    lopts.stream.tls_flags = opt.allow_truncation ? RILL_TLS_ALLOW_TRUNCATION : 0;
    rill_error err;
    rill_status st;
    if (opt.unix_path) {
        st = rill_listen_unix(opt.unix_path, &lopts, &l, &err);
    } else {
        const char *addr = opt.host;
        char bare[64];
        size_t len = strlen(addr);
        if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']' && len - 2 < sizeof bare) {
            memcpy(bare, addr + 1, len - 2);
            bare[len - 2] = '\0';
            addr = bare;
        }
        if (strcmp(addr, "localhost") == 0)
            addr = opt.family == 6 ? "::1" : "127.0.0.1";
        st = rill_listen(addr, (uint16_t)opt.port, &lopts, &l, &err);
    }
    if (st != RILL_OK) {
        rc = st == RILL_E_INVALID ? usage_error("%s", err.msg)
                                  : fail(RC_FAIL, "listen", "%s", err.msg);
        goto out;
    }
    if (opt.unix_path)
        note("listening on unix socket %s", opt.unix_path);
    else if (strchr(opt.host, ':') && opt.host[0] != '[')
        note("listening on [%s]:%u", opt.host, rill_listener_port(l));
    else
        note("listening on %s:%u", opt.host, rill_listener_port(l));

    if (!opt.keep) {
        rill_stream *s = NULL;
        st = rill_accept(l, RILL_TIMEOUT_NONE, &s, &err);
        if (st != RILL_OK) {
            rc = fail(RC_FAIL, "accept", "%s", err.msg);
            goto out;
        }
        rill_listener_free(l); /* one connection only: refuse the next ones */
        l = NULL;
        rc = serve(s, false);
        goto out;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        rill_stream *s = NULL;
        st = rill_accept(l, RILL_TIMEOUT_NONE, &s, &err);
        if (st != RILL_OK) {
            /* EMFILE and friends pass; keep serving the connections we have. */
            fail(RC_FAIL, "accept", "%s", err.msg);
            struct timespec pause = { 0, 100 * 1000 * 1000 };
            nanosleep(&pause, NULL);
            continue;
        }
        /*
         * Over the limit, the connection is closed at once rather than left in the backlog: a
         * flood then costs one descriptor for a moment, not a thread and a descriptor each.
         */
        unsigned long refused;
        if (!conn_slot_take(&refused)) {
            char peer[160];
            peer_name(s, peer, sizeof peer);
            (void)rill_close(
                s); /* nothing was sent on it (no TLS handshake): nothing to wait for */
            note("refused a connection from %s: %d connection%s open, the --max-conns limit (%lu "
                 "refused so far)",
                 peer, opt.max_conns, opt.max_conns == 1 ? "" : "s", refused);
            continue;
        }
        struct conn_job *job = malloc(sizeof *job);
        pthread_t tid;
        if (job) {
            job->s = s;
            job->shared_out = !opt.echo;
        }
        if (!job || pthread_create(&tid, &attr, serve_thread, job) != 0) {
            fail(RC_FAIL, "accept", "cannot start a thread for the connection");
            free(job);
            rill_close(s);
            conn_slot_release();
        }
    }
out:
    rill_listener_free(l);
    rill_tls_config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = open_stdio();
    if (rc != RC_OK)
        return rc;
    switch (parse_args(argc, argv)) {
    case PARSE_EXIT_OK: rc = RC_OK; break;
    case PARSE_USAGE: rc = RC_USAGE; break;
    case PARSE_FAIL: rc = RC_FAIL; break;
    case PARSE_DEMO: rc = rillcat_demo(); break;
    case PARSE_RUN: rc = opt.listen ? run_listen() : run_client(); break;
    }
    close_stdio();
    return rc;
}
