/* SPDX-License-Identifier: MIT */
/*
 * Certificates for the TLS suites, made by one shell script that runs the openssl command line
 * tool in a fresh directory. See certs.h.
 */
#include "certs.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

/*
 * The whole set in one script (sh -e, so the first failing command stops it and the log ends
 * with its messages). Leaves with ordinary dates come from `req -x509 -CA` (one process each);
 * those with set dates, and the revoked one, go through `openssl ca`, whose database also makes
 * the CRLs. Pins follow the pipeline documented for rill_tls_config_add_pin().
 */
static const char gen_script[] =
    "set -ex\n"
    "O=openssl\n"
    "cat > ca.cnf <<'CNF'\n"
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "[int_ca]\n"
    "database = int.index\n"
    "new_certs_dir = .\n"
    "serial = int.serial\n"
    "crlnumber = int.crlnumber\n"
    "default_md = sha256\n"
    "default_crl_days = 3650\n"
    "policy = pol\n"
    "copy_extensions = copy\n"
    "unique_subject = no\n"
    "[root_ca]\n"
    "database = root.index\n"
    "new_certs_dir = .\n"
    "serial = root.serial\n"
    "crlnumber = root.crlnumber\n"
    "default_md = sha256\n"
    "default_crl_days = 3650\n"
    "policy = pol\n"
    "unique_subject = no\n"
    "[pol]\n"
    "organizationName = optional\n"
    "commonName = supplied\n"
    "[leaf]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "CNF\n"
    ": > int.index\n"
    ": > root.index\n"
    "echo 1000 > int.serial\n"
    "echo 01 > int.crlnumber\n"
    "echo 01 > root.crlnumber\n"
    "EC='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc'\n"
    "GOODSAN=subjectAltName=DNS:good.rill.test,DNS:localhost,IP:127.0.0.1,IP:::1\n"
    "ca_cert() {\n" /* name subject [issuer] */
    "  $O req -config ca.cnf -x509 ${3:+-CA $3.pem -CAkey $3.key} $EC -keyout $1.key \\\n"
    "    -out $1.pem -subj \"$2\" -days 3650 -addext basicConstraints=critical,CA:TRUE \\\n"
    "    -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "}\n"
    "leaf() {\n" /* name issuer cn eku [san] */
    "  $O req -config ca.cnf -x509 -CA $2.pem -CAkey $2.key $EC -keyout $1.key -out $1.pem \\\n"
    "    -subj \"/O=rill tests/CN=$3\" -days 3650 -addext basicConstraints=critical,CA:FALSE \\\n"
    "    -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=$4 \\\n"
    "    ${5:+-addext \"$5\"}\n"
    "}\n"
    "dated() {\n" /* name startdate enddate */
    "  $O req -config ca.cnf -new $EC -keyout $1.key -out $1.csr \\\n"
    "    -subj '/O=rill tests/CN=good.rill.test' -addext $GOODSAN\n"
    "  $O ca -config ca.cnf -name int_ca -batch -notext -cert int.pem -keyfile int.key \\\n"
    "    -in $1.csr -out $1.pem -startdate $2 -enddate $3 -extensions leaf\n"
    "}\n"
    "ca_cert root '/O=rill tests/CN=Rill Test Root'\n"
    "ca_cert int '/O=rill tests/CN=Rill Test Intermediate' root\n"
    "ca_cert untrusted_ca '/O=rill tests/CN=Rill Untrusted Root'\n"
    "leaf good int good.rill.test serverAuth $GOODSAN\n"
    "leaf wrong int other.example serverAuth subjectAltName=DNS:other.example\n"
    "leaf cnonly int good.rill.test serverAuth\n"
    "leaf wildcard int '*.wild.rill.test' serverAuth 'subjectAltName=DNS:*.wild.rill.test'\n"
    "leaf ipnosan int good.rill.test serverAuth subjectAltName=DNS:good.rill.test\n"
    "leaf untrusted untrusted_ca good.rill.test serverAuth $GOODSAN\n"
    "leaf client int client.rill.test clientAuth subjectAltName=DNS:client.rill.test\n"
    /* Without keyUsage, so OpenSSL sees it as self-signed rather than missing an issuer. */
    "$O req -config ca.cnf -x509 $EC -keyout selfsigned.key -out selfsigned.pem \\\n"
    "  -subj '/O=rill tests/CN=good.rill.test' -days 3650 \\\n"
    "  -addext basicConstraints=critical,CA:FALSE -addext $GOODSAN\n"
    "dated expired 20000101000000Z 20010101000000Z\n"
    "dated notyet 20900101000000Z 20910101000000Z\n"
    "dated revoked 20200101000000Z 20900101000000Z\n"
    "$O ca -config ca.cnf -name int_ca -batch -cert int.pem -keyfile int.key -revoke revoked.pem\n"
    "$O ca -config ca.cnf -name int_ca -batch -gencrl -cert int.pem -keyfile int.key -out int.crl\n"
    "$O ca -config ca.cnf -name root_ca -batch -gencrl -cert root.pem -keyfile root.key \\\n"
    "  -out root.crl\n"
    "cat int.crl root.crl > crl.pem\n"
    "$O pkey -in client.key -out client_enc.key -aes256 -passout pass:" RT_CERTS_PASSPHRASE "\n"
    /* good's certificate with the last byte of its signature changed: a valid encoding whose
     * signature does not verify (same key, so a server still loads it). */
    "$O x509 -in good.pem -outform der -out badsig.der\n"
    "last=$(tail -c 1 badsig.der | od -An -tu1 | tr -d ' ')\n"
    "head -c -1 badsig.der > badsig.tmp\n"
    "printf \"\\\\$(printf %o $(( (last + 1) % 256 )))\" >> badsig.tmp\n"
    "$O x509 -inform der -in badsig.tmp -out badsig.pem\n"
    "cp good.key badsig.key\n"
    "for n in good wrong cnonly wildcard ipnosan client expired notyet revoked badsig; do\n"
    "  cat $n.pem int.pem > $n.chain.pem\n"
    "done\n"
    "cat untrusted.pem untrusted_ca.pem > untrusted.chain.pem\n"
    "cp selfsigned.pem selfsigned.chain.pem\n"
    "for n in good wrong cnonly wildcard ipnosan untrusted client expired notyet revoked badsig "
    "\\\n"
    "         selfsigned; do\n"
    "  $O x509 -in $n.pem -pubkey -noout | $O pkey -pubin -outform der |\n"
    "    $O dgst -sha256 -binary | $O base64 -A > $n.pin\n"
    "  test -s $n.pin\n"
    "done\n"
    "echo done\n";

static rt_certs certs;
static int certs_ready;
static pid_t certs_owner; /* the process that made the directory, and alone removes it */

static void remove_certs(void)
{
    if (certs_ready && getpid() == certs_owner)
        rt_rmdir(certs.dir);
}

/* Run the script in certs.dir; 0 on success, else -1 with the end of its log in @p why. */
static int run_script(char *why, size_t len)
{
    char log_path[RT_CERTS_PATH_MAX + 16];
    snprintf(log_path, sizeof log_path, "%s/gen.log", certs.dir);
    int log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        snprintf(why, len, "certs: cannot create %s: %s", log_path, strerror(errno));
        return -1;
    }
    char *argv[] = { "sh", "-c", (char *)(uintptr_t)gen_script, NULL };
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, len, "certs: fork: %s", strerror(errno));
        close(log_fd);
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0 ||
            chdir(certs.dir) != 0)
            _exit(127);
        execv("/bin/sh", argv);
        _exit(127);
    }
    int wstatus = 0;
    pid_t r;
    do {
        r = waitpid(pid, &wstatus, 0);
    } while (r < 0 && errno == EINTR);
    int ok = r == pid && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    if (!ok) {
        /* The end of the log: the failing command (sh -x) and openssl's complaint. */
        char text[1024];
        off_t size = lseek(log_fd, 0, SEEK_END);
        off_t from = size > (off_t)sizeof text - 1 ? size - (off_t)sizeof text + 1 : 0;
        ssize_t n = pread(log_fd, text, sizeof text - 1, from);
        text[n > 0 ? (size_t)n : 0] = '\0';
        snprintf(why, len, "certs: openssl script failed (status %d%s): ...%s",
                 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1,
                 WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127 ? ", no /bin/sh or openssl?"
                                                                   : "",
                 text);
    }
    close(log_fd);
    return ok ? 0 : -1;
}

static void set_path(char *dst, const char *name)
{
    snprintf(dst, RT_CERTS_PATH_MAX, "%s/%s", certs.dir, name);
}

/* Fill one leaf's paths and read its pin; 0 or -1 with a reason. */
static int set_leaf(rt_leaf *leaf, const char *name, char *why, size_t len)
{
    char file[40];
    snprintf(file, sizeof file, "%s.pem", name);
    set_path(leaf->cert, file);
    snprintf(file, sizeof file, "%s.key", name);
    set_path(leaf->key, file);
    snprintf(file, sizeof file, "%s.chain.pem", name);
    set_path(leaf->chain, file);

    char path[RT_CERTS_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s.pin", certs.dir, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, len, "certs: %s: %s", path, strerror(errno));
        return -1;
    }
    char b64[64];
    size_t n = fread(b64, 1, sizeof b64 - 1, f);
    fclose(f);
    b64[n] = '\0';
    b64[strcspn(b64, "\r\n")] = '\0';
    if (strlen(b64) != 44) { /* 32 bytes of SHA-256 in base64 */
        snprintf(why, len, "certs: %s holds \"%s\", not a base64 SHA-256", path, b64);
        return -1;
    }
    snprintf(leaf->pin, sizeof leaf->pin, "sha256//%.44s", b64);
    return 0;
}

#define OWNER_FILE "rill-certs.owner"

/*
 * Remove certificate directories left by processes that died without running their exit
 * handlers (a forked test that failed or was killed after making its own set). Each directory
 * names its maker in OWNER_FILE; only those whose maker is gone are removed.
 */
static void sweep_stale(void)
{
    DIR *d = opendir("/tmp");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "rill-test-", 10) != 0 || strlen(e->d_name) > 20)
            continue;
        char dir[32], owner[64];
        snprintf(dir, sizeof dir, "/tmp/%.20s", e->d_name);
        snprintf(owner, sizeof owner, "%s/" OWNER_FILE, dir);
        FILE *f = fopen(owner, "r");
        if (!f)
            continue;
        long pid = 0;
        int got = fscanf(f, "%ld", &pid);
        fclose(f);
        if (got == 1 && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            rt_rmdir(dir);
    }
    closedir(d);
}

static int write_owner(void)
{
    char path[RT_CERTS_PATH_MAX];
    snprintf(path, sizeof path, "%s/" OWNER_FILE, certs.dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%ld\n", (long)getpid());
    return fclose(f);
}

const rt_certs *rt_certs_prepare(char *why, size_t len)
{
    char spare[64];
    if (why == NULL || len == 0) {
        why = spare;
        len = sizeof spare;
    }
    if (certs_ready)
        return &certs;

    sweep_stale();
    memset(&certs, 0, sizeof certs);
    /* Not rt_mkdtemp(): its checks report to Check, which fails outside a running test. */
    snprintf(certs.dir, sizeof certs.dir, "/tmp/rill-test-XXXXXX");
    if (mkdtemp(certs.dir) == NULL) {
        snprintf(why, len, "certs: mkdtemp %s: %s", certs.dir, strerror(errno));
        return NULL;
    }
    if (write_owner() != 0) {
        snprintf(why, len, "certs: cannot write %s/" OWNER_FILE ": %s", certs.dir, strerror(errno));
        rt_rmdir(certs.dir);
        return NULL;
    }
    if (run_script(why, len) != 0) {
        rt_rmdir(certs.dir);
        return NULL;
    }
    set_path(certs.ca, "root.pem");
    set_path(certs.intermediate, "int.pem");
    set_path(certs.untrusted_ca, "untrusted_ca.pem");
    set_path(certs.crl, "crl.pem");
    set_path(certs.client_key_enc, "client_enc.key");
    struct {
        rt_leaf *leaf;
        const char *name;
    } leaves[] = {
        { &certs.good, "good" },
        { &certs.expired, "expired" },
        { &certs.notyet, "notyet" },
        { &certs.revoked, "revoked" },
        { &certs.wrong, "wrong" },
        { &certs.cnonly, "cnonly" },
        { &certs.wildcard, "wildcard" },
        { &certs.ipnosan, "ipnosan" },
        { &certs.selfsigned, "selfsigned" },
        { &certs.untrusted, "untrusted" },
        { &certs.client, "client" },
        { &certs.badsig, "badsig" },
    };
    for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
        if (set_leaf(leaves[i].leaf, leaves[i].name, why, len) != 0) {
            rt_rmdir(certs.dir);
            return NULL;
        }
    }
    certs_owner = getpid();
    static int atexit_done;
    if (!atexit_done) {
        atexit(remove_certs);
        atexit_done = 1;
    }
    certs_ready = 1;
    return &certs;
}

const rt_certs *rt_certs_get(void)
{
    char why[1400];
    const rt_certs *c = rt_certs_prepare(why, sizeof why);
    ck_assert_msg(c != NULL, "%s", why);
    return c;
}

char *rt_file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        if (got == 0)
            break;
        n += got;
    }
    ck_assert_msg(!ferror(f), "reading %s failed", path);
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

void rt_file_write(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_msg(fd >= 0, "cannot create %s: %s", path, strerror(errno));
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        ck_assert_msg(w > 0, "writing %s: %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    ck_assert_int_eq(close(fd), 0);
}
