/*
 * p256_ct — the constant-time check of src/p256.c, run under valgrind
 * memcheck by test_tls_p256 (the "ctgrind" method): private keys are
 * marked undefined, so memcheck reports every branch and every memory
 * index that depends on them, or on what is computed from them (the RFC
 * 6979 nonce, k·G, k^-1, the ECDH product k·Q).  src/p256.c is included here with P256_PUBLIC
 * telling memcheck which few flags it publishes on purpose (see p256.c);
 * the outputs (public key, r, s) are public too.  Any report is a
 * failure: `valgrind --error-exitcode=1 build/valgrind/tools/p256_ct` (the
 * glibc build `./build.sh test` makes for valgrind, with valgrind's
 * header; the musl build has no /usr/include: there it says so and exits
 * 77).
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif
#endif

#include <stdint.h>

#ifdef HAVE_MEMCHECK
static inline uint64_t ct_public(uint64_t v)
{
    VALGRIND_MAKE_MEM_DEFINED(&v, sizeof v);
    return v;
}
#define P256_PUBLIC(x) ct_public(x)
#endif

#include "../../src/p256.c"

#include <stdio.h>

int main(void)
{
#ifndef HAVE_MEMCHECK
    puts("p256_ct: built without valgrind/memcheck.h");
    return 77;
#else
    static const int mds[] = {MBEDTLS_MD_SHA256, MBEDTLS_MD_SHA384, MBEDTLS_MD_SHA512};
    p256_init();
    int failed = 0;
    for (int i = 0; i < 6; i++) {
        uint8_t d[P256_BYTES], hash[64], pub[65], r[P256_BYTES], s[P256_BYTES];
        for (int j = 0; j < P256_BYTES; j++) d[j] = (uint8_t)(j * 37 + i * 101 + 1);
        if (i == 0) { /* 1 */
            memset(d, 0, sizeof d);
            d[31] = 1;
        }
        if (i == 1) { /* n - 1 */
            static const limbs nm1 = {0xf3b9cac2fc632550, 0xbce6faada7179e84, 0xffffffffffffffff,
                                      0xffffffff00000000};
            to_bytes(d, nm1);
        }
        for (int j = 0; j < (int)sizeof hash; j++) hash[j] = (uint8_t)(j * 11 + i);
        VALGRIND_MAKE_MEM_UNDEFINED(d, sizeof d);
        int ret = p256_public_key(d, pub);
        ret |= p256_ecdsa_sign(d, hash, i == 5 ? 20 : 32 + 16 * (i % 3), mds[i % 3], r, s);
        VALGRIND_MAKE_MEM_DEFINED(&ret, sizeof ret);
        VALGRIND_MAKE_MEM_DEFINED(pub, sizeof pub);
        /* ECDH with the same secret key and its own public key as the peer */
        uint8_t shared[P256_BYTES];
        ret |= p256_ecdh(d, pub, shared);
        VALGRIND_MAKE_MEM_DEFINED(&ret, sizeof ret);
        VALGRIND_MAKE_MEM_DEFINED(r, sizeof r);
        VALGRIND_MAKE_MEM_DEFINED(s, sizeof s);
        if (ret != 0) failed++;
    }
    printf("p256_ct: %d keys signed and agreed, %d failed\n", 6 - failed, failed);
    return failed ? 1 : 0;
#endif
}
