#!/usr/bin/env bash
# run.sh — side-by-side benchmark of mrs against Postfix (issue 7).
#
#   test/bench/run.sh [bench.py options]     (or: ./build.sh bench)
#
# Needs a release build: $MRS_BUILD_DIR/mrs and $MRS_BUILD_DIR/tools/loadgen
# (default build/).  Installs what it lacks (postfix, sasl2-bin,
# libsasl2-modules, unbound, openssl, libssl-dev, gcc, python3) with package
# scripts barred from starting daemons, builds the OpenSSL load generator
# into $MRS_BUILD_DIR/tools/loadgen-ossl (test/bench/build-loadgen-ossl.sh),
# raises the open-file limit, then runs
# test/bench/bench.py: a local DNS server, Postfix's smtp-sink as the
# smarthost, mrs and a private Postfix instance, the same loads against
# each, one table.  Loopback only; bounded in time (BENCH_DEADLINE seconds,
# default 840); every process it starts is ended by pid.  The system's
# Postfix configuration is only read, never changed.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MRS_BUILD_DIR:-build}
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac

say() { printf 'bench: %s\n' "$*" >&2; }

for f in "$BUILD/mrs" "$BUILD/tools/loadgen"; do
    [ -x "$f" ] || { say "missing $f: run ./build.sh bench (or MRS_BUILD_DIR=... ./build.sh first)"; exit 1; }
done

need=()
for p in postfix sasl2-bin libsasl2-modules unbound openssl libssl-dev gcc python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { say "missing packages (${need[*]}); run as root"; exit 1; }
    rcd=/usr/sbin/policy-rc.d made_rcd=0
    if [ ! -e $rcd ]; then printf '#!/bin/sh\nexit 101\n' > $rcd; chmod +x $rcd; made_rcd=1; fi
    say "installing: ${need[*]}"
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 || {
        [ $made_rcd = 1 ] && rm -f $rcd; exit 1; }
    [ $made_rcd = 1 ] && rm -f $rcd
fi
[ "$(id -u)" = 0 ] || { say "run as root: Postfix's master and smtp-sink need it"; exit 1; }
"$TOP/test/bench/build-loadgen-ossl.sh" "$BUILD"

# 10,000 idle sessions need 10,000+ descriptors in mrs and in the load
# generator: take the hard limit (at most 65536).
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=65536
[ "$hard" -gt 65536 ] && hard=65536
ulimit -n "$hard"
[ "$hard" -ge 10100 ] || say "warning: open-file limit $hard: the 10,000-session measurement will fall short"

say "build $BUILD, open-file limit $(ulimit -n), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec timeout -s TERM $(( ${BENCH_DEADLINE:-840} + 60 )) \
    python3 "$TOP/test/bench/bench.py" --build "$BUILD" --deadline "${BENCH_DEADLINE:-840}" "$@"
