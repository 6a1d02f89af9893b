#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Soak of the event-loop server (examples/epoll_server.c): CONNS connections (default 100,000)
# from line_clients, 500 at a time, each a full TLS handshake, one checksummed line and an
# orderly close. The server's descriptors and heap (its SIGUSR1 snapshot) are sampled after a
# warm-up of 10,000 connections and at the end: descriptors must be equal, the heap may not
# grow by more than 1 MiB. Then SIGTERM: the server must stop cleanly.
#
#   soak_evloop.sh EPOLL_SERVER LINE_CLIENTS [CONNS]
set -euo pipefail

server=$1
clients=$2
conns=${3:-100000}
warm=10000
[ "$conns" -gt "$warm" ] || warm=$((conns / 10))
me=soak_evloop
work=$(mktemp -d)
server_pid=
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
die() {
    echo "$me: FAIL: $*" >&2
    [ ! -f "$work/server.err" ] || sed 's/^/server: /' "$work/server.err" >&2
    exit 1
}

printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n' >"$work/req.cnf"
openssl req -config "$work/req.cnf" -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
    -days 2 -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost >/dev/null 2>&1 || die "making a certificate"

"$server" --cert "$work/cert.pem" --key "$work/key.pem" --handshake-ms 30000 --idle-ms 30000 \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -nE 's/^epoll_server: listening on 127\.0\.0\.1:([0-9]+)$/\1/p' "$work/server.out")
    [ -z "$port" ] || break
    sleep 0.1
done
[ -n "$port" ] || die "epoll_server did not start"

# stats: ask for a snapshot until it shows no connection open; prints "FDS HEAP".
stats() {
    for _ in $(seq 200); do
        local before
        before=$(wc -l <"$work/server.out")
        kill -USR1 "$server_pid"
        sleep 0.05
        local line
        line=$(tail -n +"$((before + 1))" "$work/server.out" | grep 'stats: ' | tail -n1)
        if [[ $line == *"stats: 0 connections open, "* ]]; then
            sed -nE 's/.* ([0-9]+) descriptors open, heap (-?[0-9]+) bytes$/\1 \2/p' <<<"$line"
            return 0
        fi
    done
    die "the server never got back to 0 connections"
}

t0=$(date +%s)
"$clients" --cafile "$work/cert.pem" --count "$warm" --window 500 --lines 1 127.0.0.1 "$port" \
    >"$work/warm.out" 2>&1 || { cat "$work/warm.out" >&2; die "warm-up clients failed"; }
read -r fds0 heap0 < <(stats)
"$clients" --cafile "$work/cert.pem" --count "$((conns - warm))" --window 500 --lines 1 \
    --seed 2 127.0.0.1 "$port" >"$work/run.out" 2>&1 ||
    { cat "$work/run.out" >&2; die "clients failed"; }
read -r fds1 heap1 < <(stats)
t1=$(date +%s)
cat "$work/warm.out" "$work/run.out"
echo "$me: $conns connections in $((t1 - t0)) s; server descriptors $fds0 -> $fds1," \
    "heap $heap0 -> $heap1 bytes"
[ "$fds1" -eq "$fds0" ] || die "descriptors grew from $fds0 to $fds1"
[ $((heap1 - heap0)) -le 1048576 ] || die "heap grew by $((heap1 - heap0)) bytes"
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=
[ "$rc" -eq 0 ] || die "epoll_server exited with $rc after SIGTERM"
grep -q "^epoll_server: stopped: $conns connections ($conns closed by the client, " \
    "$work/server.out" || { cat "$work/server.out" >&2; die "the server's tally is off"; }
echo "$me: passed"
