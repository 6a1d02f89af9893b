#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install rill from build dir $1 into a temporary prefix, then build and run a consumer with
# pkg-config (shared and static) and with CMake find_package(rill).
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(find "$work/prefix" -name rill.pc -printf '%h\n' | head -n1)
export PKG_CONFIG_PATH=$libdir
cc=${CC:-cc}
# The consumer must build without the sanitizer flags of the build under test.
$cc -std=c11 -Wall -Werror "$src/consumer.c" -o "$work/consumer_pc" $(pkg-config --cflags --libs rill) \
    -Wl,-rpath,"$libdir/.."
"$work/consumer_pc"
$cc -std=c11 -Wall -Werror -DRILL_NO_INLINE "$src/consumer.c" -o "$work/consumer_noinline" \
    $(pkg-config --cflags --libs rill) -Wl,-rpath,"$libdir/.."
"$work/consumer_noinline"
$cc -std=c11 -Wall -Werror "$src/consumer.c" -o "$work/consumer_pc_static" \
    $(pkg-config --cflags rill) "$libdir/../librill.a" $(pkg-config --static --libs-only-l rill | sed 's/-lrill//')
"$work/consumer_pc_static"
cmake -S "$src" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" \
    -DCMAKE_BUILD_RPATH="$libdir/.." >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer_cmake"
"$work/cmake/consumer_cmake_static"
echo "install consumer: pkg-config (shared, static, RILL_NO_INLINE) and find_package(rill) builds ran"
