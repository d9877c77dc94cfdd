/*
 * rsa_mont_ct — a constant-time check of the RSA private operation
 * (src/rsa_mont.c) under valgrind's memcheck: the private key's limbs (all
 * but the top one of each, whose length is public) and every byte of the
 * RNG (blinding pair, exponent blinding) are marked undefined, so memcheck
 * reports each branch or memory address that depends on a secret.
 *
 *   rsa_mont_ct KEY.pem [PATH]     PATH: 0 portable C (default), 1 MULX
 *
 * Built with memcheck's client requests only when its header is on the
 * include path (otherwise the program says so and exits 77):
 *   make BUILD=build/ct EXTRA_CPPFLAGS=-I/usr/include/valgrind build/ct/tools/rsa_mont_ct
 *   openssl genrsa -traditional -out /tmp/k.pem 2048
 *   valgrind -q build/ct/tools/rsa_mont_ct /tmp/k.pem 0
 * The first operation sets the key up: the reports there are in mbedTLS's
 * own code (rsa_check_context, and the inversion and public power of the
 * random blinding value, as mbedTLS's rsa_prepare_blinding does), none in
 * rsa_mont.c but the fault check; after the line
 * "---- operation ----" the expected reports are exactly two: mbedTLS's
 * rsa_check_context testing that P and Q are odd, and private_op's fault
 * check (`if (diff != 0)`, which reveals only that a fault happened).
 * Valgrind hides ADX and AVX-512 from the program: the MULX and IFMA paths
 * fall back to C under it (the program prints the path it got).  Result
 * (valgrind 3.x, RSA-1024, -2048, -4096, portable C): those two reports
 * and no other.
 */
#include "rsa_mont.h"

#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include("memcheck.h")
#include "memcheck.h"
#define CT_MEMCHECK 1
#endif
#endif

static int secret;
static unsigned long long lcg = 0x9e3779b97f4a7c15ULL;

static int rng(void *p, unsigned char *out, size_t len)
{
    (void)p;
    for (size_t i = 0; i < len; i++) {
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        out[i] = (unsigned char)(lcg >> 56);
    }
#ifdef CT_MEMCHECK
    if (secret)
        VALGRIND_MAKE_MEM_UNDEFINED(out, len);
#endif
    return 0;
}

int main(int argc, char **argv)
{
#ifndef CT_MEMCHECK
    (void)argc, (void)argv, (void)rng, (void)secret;
    fprintf(stderr, "rsa_mont_ct: built without memcheck.h (EXTRA_CPPFLAGS=-I/usr/include/valgrind)\n");
    return 77;
#else
    if (argc < 2) {
        fprintf(stderr, "usage: rsa_mont_ct KEY.pem [PATH]\n");
        return 2;
    }
    int path = argc > 2 ? atoi(argv[2]) : RSA_MONT_PATH_C;
    int best = rsa_mont_test_path(path);
    fprintf(stderr, "path %d (the CPU's best: %d)\n", path < best ? path : best, best);
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    static unsigned char pem[16384];
    FILE *f = fopen(argv[1], "rb");
    size_t n = f ? fread(pem, 1, sizeof pem - 1, f) : 0;
    if (f)
        fclose(f);
    pem[n] = '\0';
    if (mbedtls_pk_parse_key(&pk, pem, n + 1, NULL, 0, rng, NULL) != 0 || mbedtls_pk_get_type(&pk) != MBEDTLS_PK_RSA) {
        fprintf(stderr, "rsa_mont_ct: %s: not an RSA private key\n", argv[1]);
        return 2;
    }
    mbedtls_rsa_context *k = mbedtls_pk_rsa(pk);
    mbedtls_mpi *sec[] = {&k->MBEDTLS_PRIVATE(P), &k->MBEDTLS_PRIVATE(Q), &k->MBEDTLS_PRIVATE(D),
                          &k->MBEDTLS_PRIVATE(DP), &k->MBEDTLS_PRIVATE(DQ), &k->MBEDTLS_PRIVATE(QP)};
    for (size_t i = 0; i < sizeof sec / sizeof sec[0]; i++)
        if (sec[i]->MBEDTLS_PRIVATE(n) > 1)
            VALGRIND_MAKE_MEM_UNDEFINED(sec[i]->MBEDTLS_PRIVATE(p),
                                        (sec[i]->MBEDTLS_PRIVATE(n) - 1) * sizeof(mbedtls_mpi_uint));
    secret = 1;
    size_t len = mbedtls_rsa_get_len(k);
    unsigned char in[512], out[512];
    memset(in, 0x5a, sizeof in);
    in[0] = 0;
    unsigned long before = rsa_mont_count();
    fprintf(stderr, "---- key set-up ----\n");
    int r1 = mbedtls_rsa_private(k, rng, NULL, in, out);
    fprintf(stderr, "---- operation ----\n");
    int r2 = mbedtls_rsa_private(k, rng, NULL, in, out);
    VALGRIND_MAKE_MEM_DEFINED(&r1, sizeof r1);
    VALGRIND_MAKE_MEM_DEFINED(&r2, sizeof r2);
    fprintf(stderr, "---- done: %d %d, %lu of 2 on rsa_mont (key of %zu bytes) ----\n", r1, r2,
            rsa_mont_count() - before, len);
    mbedtls_pk_free(&pk);
    return r1 == 0 && r2 == 0 && len <= sizeof in ? 0 : 1;
#endif
}
