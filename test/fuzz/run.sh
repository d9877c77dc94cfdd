#!/usr/bin/env bash
# run.sh [SECONDS] — build every test/fuzz/fuzz_*.c as a libFuzzer target
# (clang, ASan + UBSan, glibc) and run each for SECONDS (default 60) on a
# copy of its corpus test/fuzz/corpus/<name>/, so new coverage inputs do not
# pollute the repository; a crash, leak, timeout or sanitizer report is kept
# in the corpus as a regression input.  Prints "PASS fuzz/<name>" or
# "FAIL fuzz/<name>" per target and ends with "fuzz: N passed, M failed".
#
# A target names the sources it needs on a line of its own (a harness may
# also #include a module's .c to replace its I/O, see fake_net.h):
#   // fuzz-srcs: src/dns_wire.c src/log.c
# and is linked against the host build of the pinned libraries (.deps/host,
# made by `./build.sh fuzz` or `./build.sh asan`; built here when missing or
# older than vendor/mbedtls_config.h and the vendor/mbedtls-*.patch files).
# test/fuzz/<name>.dict, when present, is passed as the target's -dict=.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
SECS=${1:-60}
HOST="$TOP/.deps/host"
OUT="$TOP/${MRS_BUILD_DIR:-build}/fuzz"
CC=${FUZZ_CC:-clang}
mkdir -p "$OUT"

# The host flavour of the pinned libraries, with build.sh's own functions,
# every time: build_dep's stamp makes it a no-op when they are current, and
# rebuilds mbedTLS when our patches to it or its configuration changed (an
# mbedTLS without vendor/mbedtls-rsa-private.patch never calls rsa_mont).
(
    DEPS="$TOP/.deps" JOBS=$(nproc 2>/dev/null || echo 2) apt_updated=0
    say() { printf 'fuzz: %s\n' "$*" >&2; }
    die() { say "error: $*"; exit 1; }
    # shellcheck source=/dev/null
    source <(sed -n '/^need_pkgs()/,/^# --- our build/p' build.sh)
    deps host cc
) >&2 || echo "fuzz: could not build the host libraries in .deps/host" >&2

CFLAGS=(-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -Wall -Wextra -Wno-unused-parameter
        -D_GNU_SOURCE -Isrc -I"$HOST/include"
        "-DMBEDTLS_CONFIG_FILE=\"$TOP/vendor/mbedtls_config.h\"" -DMRS_VERSION='"fuzz"' -DMRS_GIT_REV='"fuzz"')
LIBS=()
for l in libmbedtls.a libmbedx509.a libmbedcrypto.a libsodium.a; do
    [ -f "$HOST/lib/$l" ] && LIBS+=("$HOST/lib/$l")
done
LIBS+=(-lpthread)

passed=0
failed=0
for src in test/fuzz/fuzz_*.c; do
    [ -f "$src" ] || continue
    name=$(basename "$src" .c)
    read -r -a srcs <<< "$(sed -n 's|^// fuzz-srcs:||p' "$src" | head -n1)"
    bin="$OUT/$name"
    log="$OUT/$name.log"
    if ! "$CC" "${CFLAGS[@]}" -o "$bin" "$src" "${srcs[@]}" "${LIBS[@]}" > "$log" 2>&1; then
        echo "FAIL fuzz/$name (build)"
        sed 's/^/  /' "$log" | head -n 20
        failed=$((failed + 1))
        continue
    fi
    corpus="test/fuzz/corpus/$name"
    work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$name.XXXXXX")
    [ -d "$corpus" ] && cp -r "$corpus/." "$work/"
    rm -f "$OUT/$name"-crash-* "$OUT/$name"-leak-* "$OUT/$name"-timeout-* "$OUT/$name"-oom-*
    dict=()
    [ -f "test/fuzz/$name.dict" ] && dict=(-dict="test/fuzz/$name.dict")
    "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$OUT/$name-" "$work" > "$log" 2>&1
    rc=$?
    rm -rf "$work"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    if [ $rc -eq 0 ]; then
        echo "PASS fuzz/$name (${runs:-?} runs in ${SECS}s)"
        passed=$((passed + 1))
    else
        echo "FAIL fuzz/$name (exit $rc)"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -n 10 | sed 's/^/  /'
        mkdir -p "$corpus"
        for a in "$OUT/$name"-crash-* "$OUT/$name"-leak-* "$OUT/$name"-timeout-* "$OUT/$name"-oom-*; do
            [ -f "$a" ] || continue
            cp "$a" "$corpus/regression-$(basename "$a" | sed "s/^$name-//")"
            echo "  kept $(basename "$a") in $corpus/ as a regression input"
        done
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
