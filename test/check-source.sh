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
# strlcpy/strlcat truncate silently, stpcpy/wcscpy have no bound: copies into
# fixed arrays go through util_copy() (util.h)
banned='\b(strcpy|strcat|strncpy|stpcpy|stpncpy|strlcpy|strlcat|wcscpy|wcscat|sprintf|vsprintf|gets|strtok|atoi|atol|strerror|gmtime|localtime|ctime)[[:space:]]*\('
check banned-functions grep -nE "$banned" src/*.c src/*.h test/bench/*.c 2>/dev/null
check no-vendor-code bash -c 'git ls-files vendor | grep -E "\.(c|h)$" | grep -v mbedtls_config.h'
# psa_sodium.[ch], rsa_mont.[ch] and p256.c are the exceptions: the X25519
# driver, the RSA private operation and the P-256 ECDSA signer mbedTLS calls
# (psa_sodium's entry points have mbedTLS's own types and call libsodium via
# crypto.c; rsa_mont reads the key from mbedTLS's RSA context; p256.c sets its
# hook and takes the HMAC of RFC 6979 nonces from mbedTLS's md layer)
check mbedtls-only-in-tls bash -c 'grep -lE "#include [<\"](mbedtls|psa)/" src/*.c src/*.h | grep -vE "^src/(tls|psa_sodium|rsa_mont|p256|sha256_ni)\.[ch]$" || true'
check sodium-only-in-crypto bash -c 'grep -l "#include <sodium" src/*.c src/*.h | grep -v "^src/crypto\.c$" || true'
# memcpy/memmove of a run-time length without a bound at the copy (musl has
# no _FORTIFY_SOURCE to catch them at run time); audited exceptions are
# listed with their reasons in test/check-copies.py
check fixed-size-copies python3 test/check-copies.py src/*.c
# util_copy's access attribute (util.h): GCC must refuse a destination size
# larger than the array it is given, at compile time
copy_size_checked() {
    command -v gcc >/dev/null || { echo "gcc not found"; return; }
    local d; d=$(mktemp -d "${TMPDIR:-/tmp}/check-copy.XXXXXX")
    for size in 'sizeof dst' 8; do
        printf '#include "util.h"\nchar dst[4];\nint f(const char *s, size_t n);\nint f(const char *s, size_t n) { return util_copy(dst, %s, s, n); }\n' \
            "$size" > "$d/t.c"
        if gcc -O2 -Wall -Werror -Isrc -c "$d/t.c" -o "$d/t.o" > "$d/log" 2>&1; then
            [ "$size" = 8 ] && echo "gcc accepts util_copy(dst, 8, ...) into char dst[4]: util_copy lost its access attribute"
        else
            [ "$size" != 8 ] && sed 's/^/  /' "$d/log" | head -5
        fi
    done
    rm -rf "$d"
}
check util-copy-size-checked-by-gcc copy_size_checked
check file-length bash -c 'wc -l src/*.c | awk "\$2 != \"total\" && \$1 > 1200 { print }"'
echo "check-source: $passed passed, $failed failed"
