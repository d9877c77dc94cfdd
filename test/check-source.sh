#!/usr/bin/env bash
# check-source.sh — static rules of STYLE.md that a grep can enforce.
set -u
cd "$(dirname "$0")/.."
passed=0; failed=0
check() { # NAME COMMAND... — the command prints offending lines
    local out; out=$("${@:2}")
    if [ -z "$out" ]; then echo "PASS source/$1"; passed=$((passed + 1));
    else echo "FAIL source/$1"; printf '%s\n' "$out" | head -20 | sed 's/^/  /'; failed=$((failed + 1)); fi
}
banned='\b(strcpy|strcat|strncpy|sprintf|vsprintf|gets|strtok|atoi|atol|strerror|gmtime|localtime|ctime)[[:space:]]*\('
check banned-functions grep -nE "$banned" src/*.c src/*.h test/bench/*.c 2>/dev/null
check no-vendor-code bash -c 'git ls-files vendor | grep -E "\.(c|h)$" | grep -v mbedtls_config.h'
check mbedtls-only-in-tls bash -c 'grep -lE "#include [<\"](mbedtls|psa)/" src/*.c src/*.h | grep -v "^src/tls\.[ch]$" || true'
check sodium-only-in-crypto bash -c 'grep -l "#include <sodium" src/*.c src/*.h | grep -v "^src/crypto\.c$" || true'
check file-length bash -c 'wc -l src/*.c | awk "\$2 != \"total\" && \$1 > 1200 { print }"'
echo "check-source: $passed passed, $failed failed"
