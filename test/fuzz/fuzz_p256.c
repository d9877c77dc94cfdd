// fuzz-srcs: src/p256.c src/psa_sodium.c src/crypto.c
/*
 * fuzz_p256 — libFuzzer target: src/p256.c against mbedTLS on fuzzed
 * private keys, hashes and field/scalar operands.
 *
 * Input: 32 bytes of private key, one byte picking the hash of the RFC
 * 6979 nonce (SHA-256, -384, -512, -224, -1) and the hash length
 * (0..64), then the hash; the same bytes also feed two operands of the
 * modular arithmetic.  Checks: a key is refused exactly when mbedTLS
 * refuses it (0 or >= n); the public key equals mbedtls_ecp_mul's; the
 * signature equals mbedTLS's own deterministic one and
 * mbedtls_ecdsa_verify accepts it; ECDH of the key with the point
 * h·G (h from the hash bytes) equals the X of mbedtls_ecp_mul, and a peer
 * point off the curve is refused; a + b, a - b, a·b and a^-1 mod p and
 * mod n equal mbedTLS's bignum results.
 */
#include "p256.h"

#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/md.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* mbedTLS wants a generator for blinding; any bytes do. */
static int blind_rng(void *ctx, unsigned char *out, size_t len)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) out[i] = (unsigned char)(i * 131 + 7);
    return 0;
}

static mbedtls_ecp_group grp;

/* check_mod — p256_mod(which, op) on a, b (reduced mod m) against bignums. */
static void check_mod(int which, const mbedtls_mpi *m, const uint8_t a_in[32], const uint8_t b_in[32])
{
    mbedtls_mpi a, b, t;
    uint8_t ab[32], bb[32], out[32], want[32];
    mbedtls_mpi_init(&a); mbedtls_mpi_init(&b); mbedtls_mpi_init(&t);
    FUZZ_ASSERT(mbedtls_mpi_read_binary(&a, a_in, 32) == 0 && mbedtls_mpi_read_binary(&b, b_in, 32) == 0);
    /* unreduced operands are refused */
    if (mbedtls_mpi_cmp_mpi(&a, m) >= 0) FUZZ_ASSERT(p256_mod(which, '+', a_in, b_in, out) == -1);
    FUZZ_ASSERT(mbedtls_mpi_mod_mpi(&a, &a, m) == 0 && mbedtls_mpi_mod_mpi(&b, &b, m) == 0);
    FUZZ_ASSERT(mbedtls_mpi_write_binary(&a, ab, 32) == 0 && mbedtls_mpi_write_binary(&b, bb, 32) == 0);
    static const int ops[] = {'+', '-', '*', 'i'};
    for (int o = 0; o < 4; o++) {
        int ret = 0;
        switch (ops[o]) {
        case '+': ret = mbedtls_mpi_add_mpi(&t, &a, &b); break;
        case '-': ret = mbedtls_mpi_sub_mpi(&t, &a, &b); break;
        case '*': ret = mbedtls_mpi_mul_mpi(&t, &a, &b); break;
        default:
            if (mbedtls_mpi_cmp_int(&a, 0) == 0) ret = mbedtls_mpi_lset(&t, 0);
            else ret = mbedtls_mpi_inv_mod(&t, &a, m);
        }
        FUZZ_ASSERT(ret == 0 && mbedtls_mpi_mod_mpi(&t, &t, m) == 0 && mbedtls_mpi_write_binary(&t, want, 32) == 0);
        FUZZ_ASSERT(p256_mod(which, ops[o], ab, bb, out) == 0);
        FUZZ_ASSERT(memcmp(out, want, 32) == 0);
    }
    mbedtls_mpi_free(&a); mbedtls_mpi_free(&b); mbedtls_mpi_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        FUZZ_ASSERT(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0);
        p256_init();
        ready = 1;
    }
    if (size < 33) return 0;
    static const mbedtls_md_type_t mds[] = {MBEDTLS_MD_SHA256, MBEDTLS_MD_SHA384, MBEDTLS_MD_SHA512,
                                            MBEDTLS_MD_SHA224, MBEDTLS_MD_SHA1};
    const uint8_t *key = data;
    mbedtls_md_type_t md = mds[data[32] % 5];
    const uint8_t *hash = data + 33;
    size_t hlen = size - 33;
    if (hlen > 64) hlen = 64;

    /* the modular arithmetic on the key and the (padded) hash */
    uint8_t other[32] = {0};
    memcpy(other, hash, hlen < 32 ? hlen : 32);
    mbedtls_mpi m;
    mbedtls_mpi_init(&m);
    FUZZ_ASSERT(mbedtls_mpi_copy(&m, &grp.P) == 0);
    check_mod(P256_MOD_P, &m, key, other);
    FUZZ_ASSERT(mbedtls_mpi_copy(&m, &grp.N) == 0);
    check_mod(P256_MOD_N, &m, key, other);
    mbedtls_mpi_free(&m);

    mbedtls_mpi d, r, s;
    mbedtls_ecp_point q;
    mbedtls_mpi_init(&d); mbedtls_mpi_init(&r); mbedtls_mpi_init(&s);
    mbedtls_ecp_point_init(&q);
    FUZZ_ASSERT(mbedtls_mpi_read_binary(&d, key, 32) == 0);
    uint8_t pub[65], want_pub[65], rb[32], sb[32], wr[32], ws[32];
    int valid = mbedtls_ecp_check_privkey(&grp, &d) == 0;
    int ret = p256_public_key(key, pub);
    FUZZ_ASSERT((ret == 0) == valid);
    FUZZ_ASSERT((p256_ecdsa_sign(key, hash, hlen, md, rb, sb) == 0) == valid);
    if (valid) {
        size_t len = 0;
        FUZZ_ASSERT(mbedtls_ecp_mul(&grp, &q, &d, &grp.G, blind_rng, NULL) == 0);
        FUZZ_ASSERT(mbedtls_ecp_point_write_binary(&grp, &q, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, want_pub,
                                                   sizeof want_pub) == 0 && len == 65);
        FUZZ_ASSERT(memcmp(pub, want_pub, 65) == 0);
        FUZZ_ASSERT(mbedtls_ecdsa_sign_det_ext(&grp, &r, &s, &d, hash, hlen, md, blind_rng, NULL) == 0);
        FUZZ_ASSERT(mbedtls_mpi_write_binary(&r, wr, 32) == 0 && mbedtls_mpi_write_binary(&s, ws, 32) == 0);
        FUZZ_ASSERT(memcmp(rb, wr, 32) == 0 && memcmp(sb, ws, 32) == 0);
        FUZZ_ASSERT(mbedtls_mpi_read_binary(&r, rb, 32) == 0 && mbedtls_mpi_read_binary(&s, sb, 32) == 0);
        FUZZ_ASSERT(mbedtls_ecdsa_verify(&grp, hash, hlen, &q, &r, &s) == 0);

        /* ECDH: the key times the peer point other·G (other from the hash) */
        uint8_t peer[65], shared[32], want[65];
        mbedtls_mpi e;
        mbedtls_ecp_point qe, z;
        mbedtls_mpi_init(&e); mbedtls_ecp_point_init(&qe); mbedtls_ecp_point_init(&z);
        FUZZ_ASSERT(mbedtls_mpi_read_binary(&e, other, 32) == 0);
        if (mbedtls_ecp_check_privkey(&grp, &e) == 0) {
            FUZZ_ASSERT(p256_public_key(other, peer) == 0);
            FUZZ_ASSERT(p256_ecdh(key, peer, shared) == 0);
            FUZZ_ASSERT(mbedtls_ecp_point_read_binary(&grp, &qe, peer, 65) == 0);
            FUZZ_ASSERT(mbedtls_ecp_mul(&grp, &z, &d, &qe, blind_rng, NULL) == 0);
            FUZZ_ASSERT(mbedtls_ecp_point_write_binary(&grp, &z, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, want,
                                                       sizeof want) == 0 && len == 65);
            FUZZ_ASSERT(memcmp(shared, want + 1, 32) == 0);
            peer[64] ^= 1; /* off the curve */
            FUZZ_ASSERT(p256_ecdh(key, peer, shared) == -1);
        }
        mbedtls_mpi_free(&e); mbedtls_ecp_point_free(&qe); mbedtls_ecp_point_free(&z);
    }
    mbedtls_mpi_free(&d); mbedtls_mpi_free(&r); mbedtls_mpi_free(&s);
    mbedtls_ecp_point_free(&q);
    return 0;
}
