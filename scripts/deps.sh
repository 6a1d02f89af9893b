#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install the Debian packages a build needs, only those that are missing (root only).
# Usage: scripts/deps.sh [test|demo|bench|package]   (sourced or run)
set -euo pipefail

rill_deps() {
    local purpose=${1:-test}
    local pkgs=(build-essential cmake pkg-config libssl-dev libc-ares-dev openssl)
    case $purpose in
        # gnutls-bin: gnutls-cli, a second TLS stack against examples/epoll_server (run.sh)
        test) pkgs+=(check libsubunit-dev dnsmasq-base iproute2 valgrind clang libclang-rt-dev
                     libuv1-dev abigail-tools mandoc debhelper lintian man-db tinyproxy
                     microsocks stunnel4 gnutls-bin nginx-light python3 vsftpd dovecot-core
                     dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-managesieved
                     slapd postgresql prosody inspircd) ;;
        bench) pkgs+=(libglib2.0-dev) ;;
        package) pkgs+=(debhelper lintian man-db) ;;
    esac
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "rill: missing packages: ${missing[*]} (run as root, or install them)" >&2
        return 1
    fi
    echo "rill: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    rill_deps "${1:-test}"
fi
