#!/usr/bin/env bash
# build-loadgen-ossl.sh BUILD — compile test/bench/loadgen_ossl.c into
# BUILD/tools/loadgen-ossl with the system compiler against the system's
# OpenSSL (libssl-dev: a benchmark and test dependency, like Postfix, never
# part of the static mrs binary).  Rebuilds only when the source is newer.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:?usage: build-loadgen-ossl.sh BUILD}
src=$TOP/test/bench/loadgen_ossl.c out=$BUILD/tools/loadgen-ossl
[ -x "$out" ] && [ "$out" -nt "$src" ] && exit 0
mkdir -p "$BUILD/tools"
${HOSTCC:-gcc} -std=c11 -O2 -Wall -Wextra -Werror -pthread -o "$out.tmp" "$src" -lssl -lcrypto
mv "$out.tmp" "$out"
