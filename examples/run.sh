#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build every example against an INSTALLED rill and run each against local peers.
#
#   examples/run.sh PREFIX WORKDIR       rill installed in PREFIX; binaries, certificates, peer
#                                        logs and outputs go to WORKDIR (kept for inspection)
#   examples/run.sh --install BUILDDIR   first `cmake --install BUILDDIR` to a temporary prefix,
#                                        then run as above in a temporary WORKDIR (the ctest)
#
# Builds: https_get, smtp_starttls, smtp_peer, mtls_client, poll_clients, epoll_clients,
# epoll_server, line_clients with `cc ... $(pkg-config --cflags --libs rill)`, uv_client
# adding libuv (Debian's libuv1-dev); https_get once more with `pkg-config --static` and
# librill.a; count_layer and uv_client through CMake find_package(rill) (examples/CMakeLists.txt).
# Peers, all on 127.0.0.1 with ports chosen by the kernel: `openssl s_server -WWW` serving
# files from WORKDIR/www, `openssl s_server -www` requiring a client certificate,
# `openssl s_server -rev` (reverses each line) for epoll_clients and uv_client, smtp_peer
# (plain, and one that injects a reply before TLS); and dnsmasq (Debian's dnsmasq-base) on a
# free port it is given, answering examples.rill.test with ::1 and 127.0.0.1. epoll_server
# is checked with openssl s_client, gnutls-cli (Debian's gnutls-bin) and line_clients.
# Certificates: a throwaway CA, a server certificate for localhost, examples.rill.test and
# 127.0.0.1, and a client certificate.
# Exits non-zero, naming the check and showing the program's output, on the first failure.
set -euo pipefail

src=$(cd "$(dirname "$0")" && pwd)
me=examples

usage() {
    echo "usage: $0 PREFIX WORKDIR | $0 --install BUILDDIR" >&2
    exit 2
}

if [ "${1:-}" = --install ]; then
    [ $# -eq 2 ] || usage
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cmake --install "$2" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
        { cat "$tmp/install.log" >&2; echo "$me: FAIL: cmake --install $2" >&2; exit 1; }
    status=0
    "$0" "$tmp/prefix" "$tmp/work" || status=$?
    exit $status
fi
[ $# -eq 2 ] || usage

die() {
    echo "$me: FAIL: $*" >&2
    exit 1
}
say() {
    echo "$me: $*"
}

prefix=$(cd "$1" && pwd) || die "no such prefix: $1"
mkdir -p "$2"
work=$(cd "$2" && pwd)
bin=$work/bin
mkdir -p "$bin"

for tool in ${CC:-cc} pkg-config cmake openssl timeout gnutls-cli; do
    command -v "$tool" >/dev/null || die "$tool is needed and not found"
done

# ---- build against the installed library ----------------------------------------------------

pc=$(find "$prefix" -name rill.pc -path '*/pkgconfig/*' | head -n1)
[ -n "$pc" ] || die "no pkgconfig/rill.pc under $prefix: is rill installed there?"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
libdir=$(pkg-config --variable=libdir rill)
cc=${CC:-cc}
cflags="-std=c11 -Wall -Wextra -Werror"

for ex in https_get smtp_starttls smtp_peer mtls_client poll_clients epoll_clients epoll_server \
    line_clients; do
    # shellcheck disable=SC2046,SC2086  # word splitting of the flags is intended
    $cc $cflags "$src/$ex.c" -o "$bin/$ex" $(pkg-config --cflags --libs rill) \
        -Wl,-rpath,"$libdir" || die "building $ex with pkg-config"
done
pkg-config --exists libuv ||
    die "uv_client needs libuv's pkg-config file: install libuv1-dev (scripts/deps.sh test)"
# shellcheck disable=SC2046,SC2086
$cc $cflags "$src/uv_client.c" -o "$bin/uv_client" $(pkg-config --cflags --libs rill libuv) \
    -Wl,-rpath,"$libdir" || die "building uv_client with pkg-config rill libuv"
say "built 9 examples with pkg-config --cflags --libs rill (uv_client: and libuv)"

# Static: librill.a by name (-l:), its dependencies from Requires.private via --static.
static_libs=$(pkg-config --static --libs rill | sed -E 's/(^| )-lrill( |$)/\1-l:librill.a\2/')
# shellcheck disable=SC2046,SC2086
$cc $cflags "$src/https_get.c" -o "$bin/https_get_static" $(pkg-config --cflags rill) \
    $static_libs || die "building https_get with pkg-config --static and librill.a"
if LC_ALL=C readelf -d "$bin/https_get_static" | grep -q 'librill\.so'; then
    die "https_get_static needs librill.so: it was not linked with librill.a"
fi
say "built https_get_static with pkg-config --static (librill.a)"

# CMAKE_C_FLAGS given explicitly, so flags of the environment (sanitizers) do not leak in.
if ! { cmake -S "$src" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS=-Werror \
    -DCMAKE_BUILD_RPATH="$libdir" &&
    cmake --build "$work/cmake" --target count_layer uv_client; } >"$work/cmake.log" 2>&1; then
    cat "$work/cmake.log" >&2
    die "building count_layer and uv_client with CMake find_package(rill)"
fi
cp "$work/cmake/count_layer" "$bin/"
cp "$work/cmake/uv_client" "$bin/uv_client_cmake"
say "built count_layer and uv_client with CMake find_package(rill)"

# ---- throwaway certificates -------------------------------------------------------------------

certs=$work/certs
mkdir -p "$certs"
(
    cd "$certs"
    printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n' >req.cnf
    ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -days 2"
    # shellcheck disable=SC2086
    {
        openssl req -config req.cnf -x509 $ec -keyout ca.key -out ca.pem \
            -subj "/CN=rill examples CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
        openssl req -config req.cnf -x509 -CA ca.pem -CAkey ca.key $ec \
            -keyout server.key -out server.pem -subj /CN=localhost \
            -addext basicConstraints=critical,CA:FALSE \
            -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=serverAuth \
            -addext subjectAltName=DNS:localhost,DNS:examples.rill.test,IP:127.0.0.1
        openssl req -config req.cnf -x509 -CA ca.pem -CAkey ca.key $ec \
            -keyout client.key -out client.pem -subj "/CN=rill example client" \
            -addext basicConstraints=critical,CA:FALSE \
            -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=clientAuth
        openssl verify -CAfile ca.pem server.pem client.pem
    } >openssl.log 2>&1
) || { cat "$certs/openssl.log" >&2; die "making certificates with the openssl command"; }
ca=$certs/ca.pem
say "made a CA, a server certificate (localhost, examples.rill.test, 127.0.0.1) and a" \
    "client certificate"

# ---- peers ------------------------------------------------------------------------------------

pids=()
stop_peers() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap stop_peers EXIT

# wait_port LOG REGEX PID: the port the peer announces in LOG (a line matching REGEX ending in
# :PORT), waiting up to 10 s; fails if the peer exits first.
wait_port() {
    local log=$1 regex=$2 pid=$3 port
    for _ in $(seq 100); do
        port=$(sed -nE "s/^$regex:([0-9]+)\$/\\1/p" "$log" | head -n1)
        if [ -n "$port" ]; then
            echo "$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
        sleep 0.1
    done
    cat "$log" >&2
    return 1
}

www=$work/www
mkdir -p "$www"
echo "hello from the rill examples" >"$www/hello.txt"
head -c 300000 /dev/urandom >"$www/big.bin"
hello_size=$(wc -c <"$www/hello.txt")

# -WWW serves files relative to its working directory; it handles one connection at a time.
(cd "$www" && exec openssl s_server -accept 127.0.0.1:0 -cert "$certs/server.pem" \
    -key "$certs/server.key" -WWW) >"$work/peer_www.log" 2>&1 &
pids+=($!)
www_port=$(wait_port "$work/peer_www.log" "ACCEPT 127\\.0\\.0\\.1" $!) ||
    die "openssl s_server -WWW did not start"

# -Verify 1 -verify_return_error: a client certificate from our CA is required.
openssl s_server -accept 127.0.0.1:0 -cert "$certs/server.pem" -key "$certs/server.key" \
    -CAfile "$ca" -Verify 1 -verify_return_error -www >"$work/peer_mtls.log" 2>&1 &
pids+=($!)
mtls_port=$(wait_port "$work/peer_mtls.log" "ACCEPT 127\\.0\\.0\\.1" $!) ||
    die "openssl s_server -www -Verify 1 did not start"

"$bin/smtp_peer" --cert "$certs/server.pem" --key "$certs/server.key" \
    >"$work/peer_smtp.log" 2>&1 &
pids+=($!)
announce="smtp_peer: listening on 127\\.0\\.0\\.1"
smtp_port=$(wait_port "$work/peer_smtp.log" "$announce" $!) ||
    die "smtp_peer did not start"

"$bin/smtp_peer" --inject --cert "$certs/server.pem" --key "$certs/server.key" \
    >"$work/peer_smtp_inject.log" 2>&1 &
pids+=($!)
inject_port=$(wait_port "$work/peer_smtp_inject.log" "$announce" $!) ||
    die "smtp_peer --inject did not start"
# -rev sends each line back reversed; it too handles one connection at a time, and starts on
# the next when the client closes (the listen backlog, 4096 here, queues the others).
openssl s_server -accept 127.0.0.1:0 -cert "$certs/server.pem" -key "$certs/server.key" -rev \
    >"$work/peer_rev.log" 2>&1 &
pids+=($!)
rev_port=$(wait_port "$work/peer_rev.log" "ACCEPT 127\\.0\\.0\\.1" $!) ||
    die "openssl s_server -rev did not start"

# dnsmasq cannot be given port 0: try ports until it gets one (it exits at once, status 2, when
# the port is taken). Names under rill.test other than ours get "no such name".
dns_name=examples.rill.test
dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
[ -x "$dnsmasq" ] || die "dnsmasq is needed: install dnsmasq-base (scripts/deps.sh test)"
dns_port=
for _ in $(seq 20); do
    port=$((20000 + RANDOM % 40000))
    printf '%s\n' "port=$port" listen-address=127.0.0.1 bind-interfaces no-resolv no-hosts \
        no-poll user=root group=root pid-file= log-facility=- local=/rill.test/ \
        "host-record=$dns_name,127.0.0.1,::1" >"$work/dnsmasq.conf"
    "$dnsmasq" --keep-in-foreground --conf-file="$work/dnsmasq.conf" >"$work/peer_dns.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        grep -q 'started, version' "$work/peer_dns.log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && grep -q 'started, version' "$work/peer_dns.log"; then
        pids+=("$pid")
        dns_port=$port
        break
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
[ -n "$dns_port" ] || { cat "$work/peer_dns.log" >&2; die "dnsmasq did not start"; }
# Search domains of the machine's resolv.conf are not the examples' business.
export LOCALDOMAIN=

say "peers on 127.0.0.1: s_server -WWW :$www_port, s_server mTLS :$mtls_port," \
    "s_server -rev :$rev_port, smtp_peer :$smtp_port, smtp_peer --inject :$inject_port," \
    "dnsmasq :$dns_port"

# ---- run and check ----------------------------------------------------------------------------

checks=0
show() {
    echo "---- $1: stdout ($work/$1.out) ----" >&2
    cat "$work/$1.out" >&2
    echo "---- $1: stderr ($work/$1.err) ----" >&2
    cat "$work/$1.err" >&2
}

# run NAME STATUS CMD...: run CMD (at most 30 s), output in WORKDIR/NAME.{out,err}; its exit
# status must be STATUS.
run() {
    local name=$1 want=$2 rc=0
    shift 2
    timeout 30 "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    checks=$((checks + 1))
    if [ "$rc" != "$want" ]; then
        show "$name"
        die "$name: exit status $rc, expected $want ($*)"
    fi
}

# expect NAME out|err REGEX: a line of NAME's stdout or stderr matches the extended REGEX.
expect() {
    checks=$((checks + 1))
    if ! grep -qE -- "$3" "$work/$1.$2"; then
        show "$1"
        die "$1: no line of its std$2 matches: $3"
    fi
}

run https_get 0 "$bin/https_get" --cafile "$ca" localhost "$www_port" /hello.txt
expect https_get out '^status: HTTP/1\.0 200 ok$'
expect https_get out '^header: Content-type: text/plain$'
expect https_get out "^body: $hello_size bytes\$"
expect https_get out \
    '^chain: lines\(max=8192 eol=crlf\) > buffered\(16384\) > tls\(TLSv1\.[23] .* > tcp\('

run https_get_static 0 "$bin/https_get_static" --cafile "$ca" 127.0.0.1 "$www_port" /big.bin
expect https_get_static out '^body: 300000 bytes$'

# Without --cafile the system store is the trust anchor, and it does not know our CA.
run https_get_untrusted 1 "$bin/https_get" localhost "$www_port" /hello.txt
expect https_get_untrusted err '^https_get: tls: certificate verify failed: .*CN=localhost'
run https_get_usage 2 "$bin/https_get" localhost
expect https_get_usage err '^usage: https_get '
say "https_get: a GET through lines > buffered > tls > tcp (shared and static builds)," \
    "an untrusted server refused"

run smtp_starttls 0 "$bin/smtp_starttls" --cafile "$ca" localhost "$smtp_port"
expect smtp_starttls out '^S: 220-peer\.example'
expect smtp_starttls out '^S: 250 STARTTLS$'
expect smtp_starttls out '^S: 220 2\.0\.0 go ahead$'
expect smtp_starttls out '^tls: TLSv1\.[23] .*, server CN=localhost \(verified\)$'
expect smtp_starttls out '^S: 221 2\.0\.0 bye$'
# The peer logs each command before answering, so the QUIT line is in its log by now.
cp "$work/peer_smtp.log" "$work/smtp_peer.out" && : >"$work/smtp_peer.err"
expect smtp_peer out '^smtp_peer: C: QUIT \(over TLS\)$'

run smtp_starttls_inject 1 "$bin/smtp_starttls" --cafile "$ca" 127.0.0.1 "$inject_port"
expect smtp_starttls_inject err \
    '^smtp_starttls: STARTTLS: rill_starttls: refusing to start TLS: [0-9]+ bytes received'
say "smtp_starttls: EHLO, STARTTLS, EHLO and QUIT over TLS against smtp_peer;" \
    "an injected reply before TLS refused"

run mtls_client 0 "$bin/mtls_client" --cafile "$ca" --cert "$certs/client.pem" \
    --key "$certs/client.key" localhost "$mtls_port"
expect mtls_client out '^tls verified: +yes \(as localhost\)$'
expect mtls_client out '^server subject: CN=localhost$'
expect mtls_client out '^server key: +sha256//'
expect mtls_client out '^< Client certificate'
expect mtls_client out '^< +Subject: CN ?= ?rill example client'

# TLS 1.3: the server's refusal comes after the client's handshake, on the first read.
run mtls_client_nocert 1 "$bin/mtls_client" --cafile "$ca" localhost "$mtls_port"
expect mtls_client_nocert err '^mtls_client: .*certificate required'
say "mtls_client: the server got our certificate; without one, the refusal is reported"

run poll_clients 0 "$bin/poll_clients" --cafile "$ca" localhost "$www_port" \
    /hello.txt /big.bin /hello.txt /big.bin
expect poll_clients out \
    "^stream 0 /hello\\.txt: HTTP/1\\.0 200 ok, 1 header lines, body $hello_size bytes"
expect poll_clients out '^stream 1 /big\.bin: HTTP/1\.0 200 ok, 1 header lines, body 300000 bytes'
expect poll_clients out '^stream 3 /big\.bin: HTTP/1\.0 200 ok, 1 header lines, body 300000 bytes'
expect poll_clients out '^4 of 4 streams completed'
say "poll_clients: 4 non-blocking TLS streams multiplexed with poll()"

run count_layer 0 "$bin/count_layer" --cafile "$ca" localhost "$www_port" /big.bin
expect count_layer out '^body: 300000 bytes$'
expect count_layer out '^chain: lines.* > count\(plain .* > tls\(.* > count\(wire .* > tcp\('
plain_in=$(sed -nE 's/^plaintext .* received ([0-9]+) bytes.*/\1/p' "$work/count_layer.out")
wire_in=$(sed -nE 's/^ciphertext .* received ([0-9]+) bytes.*/\1/p' "$work/count_layer.out")
checks=$((checks + 1))
if [ -z "$plain_in" ] || [ -z "$wire_in" ] || [ "$wire_in" -le "$plain_in" ]; then
    show count_layer
    die "count_layer: expected more bytes below TLS than above it (wire $wire_in, plain $plain_in)"
fi
# --trace: the wire starts with a TLS handshake record (16 03 0x), the plaintext with "GET ".
run count_layer_trace 0 "$bin/count_layer" --trace --cafile "$ca" 127.0.0.1 "$www_port" /hello.txt
expect count_layer_trace err '^\[wire\] > +[0-9]+ bytes: 16 03 0[0-3] '
expect count_layer_trace err '^\[plain\] > +[0-9]+ bytes: 47 45 54 20 '
say "count_layer: $wire_in bytes received below TLS for $plain_in above it"

# 1000 connections (the default) at once from one thread; "localhost" is ::1 then 127.0.0.1
# without DNS, and s_server listens on 127.0.0.1 only: every ::1 attempt is refused and the race
# goes on with 127.0.0.1.
run epoll_clients 0 "$bin/epoll_clients" localhost "$rev_port" 1000 "$ca"
expect epoll_clients out '^epoll_clients: 1000/1000 ok in [0-9]+ ms$'
expect epoll_clients out '^connect: 2000 answers \(A, AAAA\), 2000 attempts \(1000 failed\), '
# Some wake-ups end with decrypted bytes held in the TLS layer (rill_pending): those ran again
# without waiting, or 1000/1000 could not have passed.
expect epoll_clients out '^epoll: [0-9]+ waits, [1-9][0-9]* runs for pending bytes; '
epoll_ms=$(sed -nE 's/^epoll_clients: .* ok in ([0-9]+) ms$/\1/p' "$work/epoll_clients.out")
# By name through DNS: the op waits on its own epoll descriptor while the lookups run (how
# many connections do depends on how soon dnsmasq answers; the rest hit the cache).
run epoll_clients_dns 0 "$bin/epoll_clients" --dns "127.0.0.1:$dns_port" "$dns_name" \
    "$rev_port" 200 "$ca"
expect epoll_clients_dns out '^epoll_clients: 200/200 ok in [0-9]+ ms$'
expect epoll_clients_dns out '^epoll: [0-9]+ waits, [0-9]+ runs for pending bytes; '
# A descriptor limit that does not fit them all: it says so and keeps fewer open at once.
run epoll_clients_fdlimit 0 bash -c 'ulimit -n 128 && exec "$@"' - "$bin/epoll_clients" \
    localhost "$rev_port" 100 "$ca"
limited='^epoll_clients: 100 connections need [0-9]+ descriptors, but the limit is 128'
expect epoll_clients_fdlimit err "$limited \\(hard limit 128\\): at most [0-9]+ at once\$"
expect epoll_clients_fdlimit out '^epoll_clients: 100/100 ok in [0-9]+ ms$'
run epoll_clients_untrusted 1 "$bin/epoll_clients" localhost "$rev_port" 3
expect epoll_clients_untrusted err \
    '^epoll_clients: connection [0-2]: tls: certificate verify failed: '
expect epoll_clients_untrusted out '^epoll_clients: 0/3 ok in [0-9]+ ms$'
run epoll_clients_nxdomain 1 "$bin/epoll_clients" --dns "127.0.0.1:$dns_port" \
    nowhere.rill.test "$rev_port" 3 "$ca"
expect epoll_clients_nxdomain err \
    '^epoll_clients: connection [0-2]: resolve: nowhere\.rill\.test: no such name'
run epoll_clients_usage 2 "$bin/epoll_clients" localhost
expect epoll_clients_usage err '^usage: epoll_clients '
moves=$(sed -nE 's/.* ([0-9]+ moved, [0-9]+ renewed)$/\1/p' "$work/epoll_clients_dns.out")
say "epoll_clients: 1000 TLS connections in ${epoll_ms} ms, 200 by name through dnsmasq" \
    "(registrations $moves), 100 under a descriptor limit of 128; an untrusted server and an" \
    "unknown name refused"

run uv_client 0 "$bin/uv_client" localhost "$rev_port" 10 "$ca"
expect uv_client out '^uv_client: 10/10 ok in [0-9]+ ms$'
expect uv_client out '^uv: [0-9]+ poll handles made, [0-9]+ restarted$'
run uv_client_dns 0 "$bin/uv_client" --dns "127.0.0.1:$dns_port" "$dns_name" "$rev_port" 10 "$ca"
expect uv_client_dns out '^uv_client: 10/10 ok in [0-9]+ ms$'
run uv_client_cmake 0 "$bin/uv_client_cmake" localhost "$rev_port" 3 "$ca"
expect uv_client_cmake out '^uv_client: 3/3 ok in [0-9]+ ms$'
run uv_client_untrusted 1 "$bin/uv_client" localhost "$rev_port" 2
expect uv_client_untrusted err '^uv_client: connection [01]: tls: certificate verify failed: '
expect uv_client_untrusted out '^uv_client: 0/2 ok in [0-9]+ ms$'
say "uv_client: 10 TLS connections by localhost and by name on libuv handles," \
    "an untrusted server refused"

# ---- epoll_server: the line server, against openssl s_client, gnutls-cli and line_clients ----

# Idle connections end after 1 s (with close_notify), which is also how s_client and gnutls-cli
# are told the conversation is over; slow handshakes are cut after 1.5 s.
"$bin/epoll_server" --cert "$certs/server.pem" --key "$certs/server.key" --idle-ms 1000 \
    --handshake-ms 1500 --grace-ms 2000 >"$work/epoll_server.out" 2>"$work/epoll_server.err" &
server_pid=$!
pids+=("$server_pid")
line_port=$(wait_port "$work/epoll_server.out" "epoll_server: listening on 127\\.0\\.0\\.1" \
    "$server_pid") || die "epoll_server did not start"

# FNV-1a 64 of "hello" and of "world". ($1, $2: the arguments after the script.)
# shellcheck disable=SC2016
run server_s_client 0 bash -c '(printf "hello\nworld\n"; sleep 3) |
    openssl s_client -connect "127.0.0.1:$1" -servername localhost -CAfile "$2" \
        -verify_return_error -quiet' - "$line_port" "$ca"
expect server_s_client out '^1 a430d84680aabd0b$'
expect server_s_client out '^2 4f59ff5e730c8af3$'
# shellcheck disable=SC2016
run server_gnutls 0 bash -c '(printf "hello\n"; sleep 3) |
    gnutls-cli --x509cafile "$2" --port "$1" localhost' - "$line_port" "$ca"
expect server_gnutls out '^1 a430d84680aabd0b$'
expect server_gnutls out 'Peer has closed the GnuTLS connection'
# 100 at a time, so that no real client waits 1.5 s for its handshake on a busy machine.
run line_clients 0 "$bin/line_clients" --cafile "$ca" --count 1000 --window 100 --loris 20 \
    127.0.0.1 "$line_port"
expect line_clients out '^line_clients: 1000/1000 ok in [0-9]+ ms, 5000 lines acknowledged, '
expect line_clients out '^line_clients: loris: 20/20 cut after [0-9]+\.\.[0-9]+ ms$'
run line_clients_untrusted 1 "$bin/line_clients" --count 2 127.0.0.1 "$line_port"
expect line_clients_untrusted err \
    '^line_clients: connection [01]: lines: tls: certificate verify failed'
kill -TERM "$server_pid"
rc=0
timeout 20 tail --pid="$server_pid" -f /dev/null || rc=$?
wait "$server_pid" || rc=$?
checks=$((checks + 1))
[ "$rc" = 0 ] || { show epoll_server; die "epoll_server: exit status $rc after SIGTERM"; }
expect epoll_server out '^epoll_server: stopping: 0 connections open, grace 2000 ms$'
ended='1000 closed by the client, 2 idle, 20 handshake timeouts, 0 cut at shutdown, 2 errors'
expect epoll_server out \
    "^epoll_server: stopped: 1024 connections \\($ended\\), 5003 lines acknowledged\$"
say "epoll_server: answered openssl s_client, gnutls-cli and 1000 line_clients (20 slow peers" \
    "cut at the handshake deadline), stopped on SIGTERM"
# ---- the installed rillcat against the same peers (docs/rillcat.md's examples) ----------------

rillcat=$prefix/bin/rillcat
[ -x "$rillcat" ] || die "no bin/rillcat under $prefix"
# HTTP/1.0: s_server -WWW answers and closes; --no-shutdown keeps our side open until then.
printf 'GET /hello.txt HTTP/1.0\r\n\r\n' >"$work/get_hello.txt"
run rillcat_get 0 "$rillcat" -v --no-shutdown --tls --cafile "$ca" localhost "$www_port" \
    <"$work/get_hello.txt"
expect rillcat_get out '^hello from the rill examples'
expect rillcat_get err '^\* stdin ended: --no-shutdown: the connection stays open'
expect rillcat_get err '^\* localhost port [0-9]+ closed the connection'
printf 'EHLO x\r\nQUIT\r\n' >"$work/smtp_quit.txt"
run rillcat_starttls 0 "$rillcat" --no-shutdown --starttls smtp --cafile "$ca" localhost \
    "$smtp_port" <"$work/smtp_quit.txt"
expect rillcat_starttls out '^221 '
run rillcat_showcerts 0 "$rillcat" --showcerts --tls --cafile "$ca" localhost "$www_port" \
    </dev/null
expect rillcat_showcerts out '^ 0 s:CN=localhost$'
expect rillcat_showcerts out '^-----BEGIN CERTIFICATE-----$'
run rillcat_mtls_nocert 35 "$rillcat" --tls --cafile "$ca" localhost "$mtls_port" \
    <"$work/get_hello.txt"
expect rillcat_mtls_nocert err '^rillcat: TLS handshake: .*certificate required'
say "rillcat: a GET with --no-shutdown, --starttls smtp up to 221, --showcerts, and a refused" \
    "client without a certificate (35)"

say "all $checks checks passed"
