/*
 * test_p256 — src/p256.c against RFC 6979's vectors and against mbedTLS:
 * exact signatures, field and scalar arithmetic on edge values, k·G, and
 * the hook that makes mbedTLS's TLS signatures come from p256.c.
 */
#include "p256.h"
#include "unit.h"

#include <mbedtls/bignum.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>

#include <stdint.h>
#include <stdlib.h>

/* A reproducible generator for test keys and hashes (splitmix64). */
static uint64_t seed = 0x6d72732d70323536;

static int test_rng(void *ctx, unsigned char *out, size_t len)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
        z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
        out[i] = (uint8_t)(z ^ (z >> 31));
    }
    return 0;
}

static void unhex(const char *h, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static const char *RFC_KEY = "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";

/* RFC 6979 A.2.5: P-256 key, public key and signatures. */
static void test_rfc6979_vectors(void)
{
    static const struct {
        mbedtls_md_type_t md;
        const char *msg, *r, *s;
    } v[] = {
        {MBEDTLS_MD_SHA256, "sample", "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
         "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"},
        {MBEDTLS_MD_SHA256, "test", "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
         "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"},
        {MBEDTLS_MD_SHA1, "sample", "61340C88C3AAEBEB4F6D667F672CA9759A6CCAA9FA8811313039EE4A35471D32",
         "6D7F147DAC089441BB2E2FE8F7A3FA264B9C475098FDCF6E00D7C996E1B8B7EB"},
        {MBEDTLS_MD_SHA224, "sample", "53B2FFF5D1752B2C689DF257C04C40A587FABABB3F6FC2702F1343AF7CA9AA3F",
         "B9AFB64FDC03DC1A131C7D2386D11E349F070AA432A4ACC918BEA988BF75C74C"},
        {MBEDTLS_MD_SHA384, "sample", "0EAFEA039B20E9B42309FB1D89E213057CBF973DC0CFC8F129EDDDC800EF7719",
         "4861F0491E6998B9455193E34E7B0D284DDD7149A74B95B9261F13ABDE940954"},
        {MBEDTLS_MD_SHA512, "sample", "8496A60B5E9B47C825488827E0495B0E3FA109EC4568FD3F8D1097678EB97F00",
         "2362AB1ADBE2B8ADF9CB9EDAB740EA6049C028114F2460F96554F61FAE3302FE"},
        {MBEDTLS_MD_SHA1, "test", "0CBCC86FD6ABD1D99E703E1EC50069EE5C0B4BA4B9AC60E409E8EC5910D81A89",
         "01B9D7B73DFAA60D5651EC4591A0136F87653E0FD780C3B1BC872FFDEAE479B1"},
        {MBEDTLS_MD_SHA224, "test", "C37EDB6F0AE79D47C3C27E962FA269BB4F441770357E114EE511F662EC34A692",
         "C820053A05791E521FCAAD6042D40AEA1D6B1A540138558F47D0719800E18F2D"},
    };
    uint8_t key[32], pub[65], want_pub[65];
    unhex(RFC_KEY, key, 32);
    want_pub[0] = 4;
    unhex("60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6", want_pub + 1, 32);
    unhex("7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299", want_pub + 33, 32);
    CHECK(p256_public_key(key, pub) == 0);
    CHECK(memcmp(pub, want_pub, 65) == 0);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        const mbedtls_md_info_t *info = mbedtls_md_info_from_type(v[i].md);
        uint8_t hash[64], r[32], s[32], want_r[32], want_s[32];
        CHECK(mbedtls_md(info, (const uint8_t *)v[i].msg, strlen(v[i].msg), hash) == 0);
        unhex(v[i].r, want_r, 32);
        unhex(v[i].s, want_s, 32);
        CHECK(p256_ecdsa_sign(key, hash, mbedtls_md_get_size(info), v[i].md, r, s) == 0);
        CHECK(memcmp(r, want_r, 32) == 0);
        CHECK(memcmp(s, want_s, 32) == 0);
    }
}

static const char *P_HEX = "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF";
static const char *N_HEX = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

/* edge — the i-th edge value below m: 0, 1, 2, m-1, m-2, m-3, (m-1)/2,
 * (m+1)/2, 2^255, 2^224, 2^128-1, 2^64, and all-ones limbs below m. */
#define EDGES 14
static void edge(mbedtls_mpi *x, const mbedtls_mpi *m, int i)
{
    mbedtls_mpi_lset(x, 0);
    switch (i) {
    case 0: break;
    case 1: mbedtls_mpi_lset(x, 1); break;
    case 2: mbedtls_mpi_lset(x, 2); break;
    case 3: mbedtls_mpi_sub_int(x, m, 1); break;
    case 4: mbedtls_mpi_sub_int(x, m, 2); break;
    case 5: mbedtls_mpi_sub_int(x, m, 3); break;
    case 6: mbedtls_mpi_sub_int(x, m, 1); mbedtls_mpi_shift_r(x, 1); break;
    case 7: mbedtls_mpi_add_int(x, m, 1); mbedtls_mpi_shift_r(x, 1); break;
    case 8: mbedtls_mpi_set_bit(x, 255, 1); break;
    case 9: mbedtls_mpi_set_bit(x, 224, 1); break;
    case 10: mbedtls_mpi_set_bit(x, 128, 1); mbedtls_mpi_sub_int(x, x, 1); break;
    case 11: mbedtls_mpi_set_bit(x, 64, 1); break;
    case 12: mbedtls_mpi_set_bit(x, 192, 1); mbedtls_mpi_sub_int(x, x, 1); break;
    default: {
        uint8_t b[32];
        memset(b, 0xff, sizeof b);
        b[0] = 0xfe; /* below both p and n */
        mbedtls_mpi_read_binary(x, b, 32);
    }
    }
}

/* p256_mod on every pair of edge values (and random ones) against bignums. */
static void check_mod(int which, const char *m_hex)
{
    mbedtls_mpi m, a, b, want, t;
    mbedtls_mpi_init(&m); mbedtls_mpi_init(&a); mbedtls_mpi_init(&b);
    mbedtls_mpi_init(&want); mbedtls_mpi_init(&t);
    mbedtls_mpi_read_string(&m, 16, m_hex);
    uint8_t ab[32], bb[32], out[32], wb[32];
    for (int i = 0; i < EDGES + 40; i++) {
        for (int j = 0; j < EDGES + 40; j++) {
            if (i < EDGES) edge(&a, &m, i);
            else { test_rng(NULL, ab, 32); mbedtls_mpi_read_binary(&a, ab, 32); mbedtls_mpi_mod_mpi(&a, &a, &m); }
            if (j < EDGES) edge(&b, &m, j);
            else { test_rng(NULL, bb, 32); mbedtls_mpi_read_binary(&b, bb, 32); mbedtls_mpi_mod_mpi(&b, &b, &m); }
            mbedtls_mpi_write_binary(&a, ab, 32);
            mbedtls_mpi_write_binary(&b, bb, 32);
            static const int ops[] = {'+', '-', '*', 'i'};
            for (int o = 0; o < 4; o++) {
                if (ops[o] == 'i' && j > 0) continue;
                switch (ops[o]) {
                case '+': mbedtls_mpi_add_mpi(&t, &a, &b); break;
                case '-': mbedtls_mpi_sub_mpi(&t, &a, &b); break;
                case '*': mbedtls_mpi_mul_mpi(&t, &a, &b); break;
                default:
                    if (mbedtls_mpi_cmp_int(&a, 0) == 0) mbedtls_mpi_lset(&t, 0);
                    else mbedtls_mpi_inv_mod(&t, &a, &m);
                }
                mbedtls_mpi_mod_mpi(&want, &t, &m);
                mbedtls_mpi_write_binary(&want, wb, 32);
                CHECK(p256_mod(which, ops[o], ab, bb, out) == 0);
                if (memcmp(out, wb, 32) != 0) {
                    fprintf(stderr, "  mod %d op %c edge %d,%d differs\n", which, ops[o], i, j);
                    unit_failed_checks++;
                }
            }
        }
    }
    /* the modulus itself is not a valid input */
    mbedtls_mpi_write_binary(&m, ab, 32);
    memset(bb, 0, 32);
    CHECK(p256_mod(which, '+', ab, bb, out) == -1);
    CHECK(p256_mod(which, '*', bb, ab, out) == -1);
    CHECK(p256_mod(which, '/', bb, bb, out) == -1);
    mbedtls_mpi_free(&m); mbedtls_mpi_free(&a); mbedtls_mpi_free(&b);
    mbedtls_mpi_free(&want); mbedtls_mpi_free(&t);
}

static void test_field_edges(void) { check_mod(P256_MOD_P, P_HEX); }
static void test_scalar_edges(void) { check_mod(P256_MOD_N, N_HEX); }

/* mbedtls_sign — mbedTLS's own deterministic signature (hook off). */
static int mbedtls_sign(const mbedtls_ecp_group *grp, const uint8_t key[32], const uint8_t *hash,
                        size_t hlen, mbedtls_md_type_t md, uint8_t r[32], uint8_t s[32])
{
    mbedtls_mpi d, mr, ms;
    mbedtls_mpi_init(&d); mbedtls_mpi_init(&mr); mbedtls_mpi_init(&ms);
    int ret = mbedtls_mpi_read_binary(&d, key, 32);
    if (!ret)
        ret = mbedtls_ecdsa_sign_det_ext((mbedtls_ecp_group *)grp, &mr, &ms, &d, hash, hlen, md, test_rng, NULL);
    if (!ret) ret = mbedtls_mpi_write_binary(&mr, r, 32);
    if (!ret) ret = mbedtls_mpi_write_binary(&ms, s, 32);
    mbedtls_mpi_free(&d); mbedtls_mpi_free(&mr); mbedtls_mpi_free(&ms);
    return ret;
}

/* verify — mbedtls_ecdsa_verify on (r, s) with the public key pub. */
static int verify(const mbedtls_ecp_group *grp, const uint8_t pub[65], const uint8_t *hash, size_t hlen,
                  const uint8_t r[32], const uint8_t s[32])
{
    mbedtls_ecp_point q;
    mbedtls_mpi mr, ms;
    mbedtls_ecp_point_init(&q); mbedtls_mpi_init(&mr); mbedtls_mpi_init(&ms);
    int ret = mbedtls_ecp_point_read_binary(grp, &q, pub, 65);
    if (!ret) ret = mbedtls_ecp_check_pubkey(grp, &q);
    if (!ret) ret = mbedtls_mpi_read_binary(&mr, r, 32);
    if (!ret) ret = mbedtls_mpi_read_binary(&ms, s, 32);
    if (!ret) ret = mbedtls_ecdsa_verify((mbedtls_ecp_group *)grp, hash, hlen, &q, &mr, &ms);
    mbedtls_ecp_point_free(&q); mbedtls_mpi_free(&mr); mbedtls_mpi_free(&ms);
    return ret;
}

/* mbedtls_public — d·G by mbedtls_ecp_mul, uncompressed. */
static int mbedtls_public(const mbedtls_ecp_group *grp, const uint8_t key[32], uint8_t pub[65])
{
    mbedtls_mpi d;
    mbedtls_ecp_point q;
    size_t len = 0;
    mbedtls_mpi_init(&d); mbedtls_ecp_point_init(&q);
    int ret = mbedtls_mpi_read_binary(&d, key, 32);
    if (!ret) ret = mbedtls_ecp_mul((mbedtls_ecp_group *)grp, &q, &d, &grp->G, test_rng, NULL);
    if (!ret) ret = mbedtls_ecp_point_write_binary(grp, &q, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, pub, 65);
    mbedtls_mpi_free(&d); mbedtls_ecp_point_free(&q);
    return ret || len != 65 ? -1 : 0;
}

/* 2,000 random keys and hashes: the public key equals mbedtls_ecp_mul's,
 * the signature equals mbedTLS's deterministic one and verifies; a
 * changed hash does not verify. */
static void test_differential(void)
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_group_init(&grp);
    CHECK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0);
    static const size_t hlens[] = {32, 32, 32, 48, 64, 20, 1, 0, 31, 33};
    static const mbedtls_md_type_t mds[] = {MBEDTLS_MD_SHA256, MBEDTLS_MD_SHA384, MBEDTLS_MD_SHA512};
    int bad_pub = 0, bad_sig = 0, bad_verify = 0, verified_changed = 0;
    for (int i = 0; i < 2000; i++) {
        uint8_t key[32], hash[64], pub[65], want_pub[65], r[32], s[32], wr[32], ws[32];
        test_rng(NULL, key, 32);
        if (i < 8) { /* small keys and keys next to n */
            memset(key, 0, 32);
            key[31] = (uint8_t)(i + 1);
            if (i >= 4) {
                unhex(N_HEX, key, 32);
                key[31] = (uint8_t)(key[31] - (i - 3));
            }
        }
        test_rng(NULL, hash, sizeof hash);
        if (i % 50 == 7) memset(hash, 0xff, sizeof hash); /* hash >= n */
        size_t hlen = hlens[i % 10];
        mbedtls_md_type_t md = mds[i % 3];
        if (p256_public_key(key, pub) != 0) {
            /* only a key >= n or 0 may fail: random keys are below n */
            bad_pub++;
            continue;
        }
        if (mbedtls_public(&grp, key, want_pub) != 0 || memcmp(pub, want_pub, 65) != 0) bad_pub++;
        if (p256_ecdsa_sign(key, hash, hlen, md, r, s) != 0 ||
            mbedtls_sign(&grp, key, hash, hlen, md, wr, ws) != 0 || memcmp(r, wr, 32) || memcmp(s, ws, 32))
            bad_sig++;
        if (verify(&grp, pub, hash, hlen, r, s) != 0) bad_verify++;
        if (hlen) {
            hash[0] ^= 1; /* the leftmost bytes count: beyond 32 they are cut */
            if (verify(&grp, pub, hash, hlen, r, s) == 0) verified_changed++;
        }
    }
    if (bad_pub || bad_sig || bad_verify || verified_changed)
        fprintf(stderr, "  public %d, signature %d, verify %d, changed hash verified %d\n", bad_pub, bad_sig,
                bad_verify, verified_changed);
    CHECK(bad_pub == 0 && bad_sig == 0 && bad_verify == 0 && verified_changed == 0);
    mbedtls_ecp_group_free(&grp);
}

/* ECDH: priv·peer's X against mbedtls_ecp_mul on 500 random keys and
 * peers (and small and large keys); both sides agree; bad points refused. */
static void test_ecdh(void)
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_group_init(&grp);
    CHECK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0);
    int bad = 0;
    for (int i = 0; i < 500; i++) {
        uint8_t a[32], b[32], pa[65], pb[65], sab[32], sba[32], want[65];
        test_rng(NULL, a, 32);
        test_rng(NULL, b, 32);
        a[0] &= 0x7f; /* below n */
        b[0] &= 0x7f;
        if (i < 3) { /* 1, 2, 3 */
            memset(a, 0, 32);
            a[31] = (uint8_t)(i + 1);
        } else if (i < 6) { /* n-1, n-2, n-3 */
            unhex(N_HEX, a, 32);
            a[31] = (uint8_t)(a[31] - (i - 2));
        } else if (i < 9) { /* the peer is ±G or 2G */
            memset(b, 0, 32);
            b[31] = (uint8_t)(i - 5);
            if (i == 6) unhex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632550", b, 32);
        }
        if (p256_public_key(a, pa) || p256_public_key(b, pb) || p256_ecdh(a, pb, sab) || p256_ecdh(b, pa, sba)) {
            bad++;
            continue;
        }
        /* mbedTLS: a·(b·G) */
        mbedtls_mpi d;
        mbedtls_ecp_point q, r;
        size_t len = 0;
        mbedtls_mpi_init(&d); mbedtls_ecp_point_init(&q); mbedtls_ecp_point_init(&r);
        int ret = mbedtls_mpi_read_binary(&d, a, 32) || mbedtls_ecp_point_read_binary(&grp, &q, pb, 65) ||
                  mbedtls_ecp_mul(&grp, &r, &d, &q, test_rng, NULL) ||
                  mbedtls_ecp_point_write_binary(&grp, &r, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, want, 65);
        mbedtls_mpi_free(&d); mbedtls_ecp_point_free(&q); mbedtls_ecp_point_free(&r);
        if (ret || memcmp(sab, want + 1, 32) != 0 || memcmp(sab, sba, 32) != 0) bad++;
    }
    if (bad) fprintf(stderr, "  %d ECDH results differ\n", bad);
    CHECK(bad == 0);

    uint8_t key[32], pub[65], out[32];
    unhex(RFC_KEY, key, 32);
    CHECK(p256_public_key(key, pub) == 0);
    CHECK(p256_ecdh(key, pub, out) == 0);
    uint8_t bent[65];
    memcpy(bent, pub, 65);
    bent[64] ^= 1; /* off the curve */
    CHECK(p256_ecdh(key, bent, out) == -1);
    memcpy(bent, pub, 65);
    bent[0] = 0x02; /* compressed form: not taken */
    CHECK(p256_ecdh(key, bent, out) == -1);
    memset(bent, 0, 65); /* (0, 0) */
    bent[0] = 0x04;
    CHECK(p256_ecdh(key, bent, out) == -1);
    memcpy(bent, pub, 65);
    unhex(P_HEX, bent + 1, 32); /* x = p */
    CHECK(p256_ecdh(key, bent, out) == -1);
    memset(key, 0, 32);
    CHECK(p256_ecdh(key, pub, out) == -1);
    static const uint8_t zero[32];
    CHECK(memcmp(out, zero, 32) == 0);
    mbedtls_ecp_group_free(&grp);
}

/* (0, Y0) is a point of P-256 (b is a square mod p) */
static const char *Y0_HEX = "66485C780E2F83D72433BD5D84A06BB6541C2AF31DAE871728BF856A174F93F4";

/* The TLS 1.2 ECDHE entry points (src/psa_sodium.c's P-256 branch), as a
 * peer reaches them: the point comes from the wire through
 * mbedtls_ecp_point_read_binary, which checks neither the curve nor the
 * range, so the point at infinity (the 1-byte encoding 00), coordinates
 * >= p and points off the curve must be refused there. */
static void test_ecdh_entry_points(void)
{
    mbedtls_ecp_group grp;
    mbedtls_mpi d, z, dp;
    mbedtls_ecp_point q, qp;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d); mbedtls_mpi_init(&z); mbedtls_mpi_init(&dp);
    mbedtls_ecp_point_init(&q); mbedtls_ecp_point_init(&qp);
    CHECK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0);
    CHECK(mbedtls_ecdh_gen_public(&grp, &d, &q, test_rng, NULL) == 0);
    CHECK(mbedtls_ecp_check_pubkey(&grp, &q) == 0);
    CHECK(mbedtls_ecdh_gen_public(&grp, &dp, &qp, test_rng, NULL) == 0);

    /* both sides agree, and with p256_ecdh */
    uint8_t a[32], b[32], pb[65], want[32];
    size_t len = 0;
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &qp, &d, test_rng, NULL) == 0);
    CHECK(mbedtls_mpi_write_binary(&z, a, 32) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &q, &dp, test_rng, NULL) == 0);
    CHECK(mbedtls_mpi_write_binary(&z, b, 32) == 0);
    CHECK(memcmp(a, b, 32) == 0);
    uint8_t da[32];
    CHECK(mbedtls_mpi_write_binary(&d, da, 32) == 0);
    CHECK(mbedtls_ecp_point_write_binary(&grp, &qp, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, pb, sizeof pb) == 0);
    CHECK(p256_ecdh(da, pb, want) == 0 && memcmp(want, a, 32) == 0);

    /* the point at infinity, as a TLS peer encodes it */
    static const uint8_t inf[1] = {0};
    mbedtls_ecp_point bad;
    mbedtls_ecp_point_init(&bad);
    CHECK(mbedtls_ecp_point_read_binary(&grp, &bad, inf, 1) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &bad, &d, test_rng, NULL) != 0);
    /* off the curve: y + 1 */
    uint8_t off[65];
    memcpy(off, pb, 65);
    off[64] ^= 1;
    CHECK(mbedtls_ecp_point_read_binary(&grp, &bad, off, 65) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &bad, &d, test_rng, NULL) != 0);
    /* (0, Y0) is a point of the curve; (p, Y0) is the same point with x
     * not reduced: refused, as it is not the encoding of a field element */
    memset(off, 0, 65);
    off[0] = 0x04;
    unhex(Y0_HEX, off + 33, 32);
    CHECK(mbedtls_ecp_point_read_binary(&grp, &bad, off, 65) == 0);
    CHECK(mbedtls_ecp_check_pubkey(&grp, &bad) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &bad, &d, test_rng, NULL) == 0);
    CHECK(p256_ecdh(da, off, want) == 0);
    unhex(P_HEX, off + 1, 32);
    CHECK(p256_ecdh(da, off, want) == -1);
    CHECK(mbedtls_ecp_point_read_binary(&grp, &bad, off, 65) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &bad, &d, test_rng, NULL) != 0);
    /* and x = 2^256 - 1 */
    memcpy(off, pb, 65);
    memset(off + 1, 0xff, 32);
    CHECK(mbedtls_ecp_point_read_binary(&grp, &bad, off, 65) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &bad, &d, test_rng, NULL) != 0);
    /* a private key out of [1, n-1] is refused, not reduced */
    mbedtls_mpi big;
    mbedtls_mpi_init(&big);
    CHECK(mbedtls_mpi_copy(&big, &grp.N) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &qp, &big, test_rng, NULL) != 0);
    CHECK(mbedtls_mpi_lset(&big, 0) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&grp, &z, &qp, &big, test_rng, NULL) != 0);
    mbedtls_mpi_free(&big);

    mbedtls_ecp_point_free(&bad);
    mbedtls_ecp_point_free(&q); mbedtls_ecp_point_free(&qp);
    mbedtls_mpi_free(&d); mbedtls_mpi_free(&z); mbedtls_mpi_free(&dp);
    mbedtls_ecp_group_free(&grp);
}

/* Keys outside [1, n-1] and unknown hashes are refused. */
static void test_bad_input(void)
{
    uint8_t key[32], pub[65], r[32], s[32], hash[32] = {1};
    memset(key, 0, 32);
    CHECK(p256_public_key(key, pub) == -1);
    CHECK(p256_ecdsa_sign(key, hash, 32, MBEDTLS_MD_SHA256, r, s) == -1);
    unhex(N_HEX, key, 32);
    CHECK(p256_public_key(key, pub) == -1);
    CHECK(p256_ecdsa_sign(key, hash, 32, MBEDTLS_MD_SHA256, r, s) == -1);
    memset(key, 0xff, 32);
    CHECK(p256_ecdsa_sign(key, hash, 32, MBEDTLS_MD_SHA256, r, s) == -1);
    unhex(RFC_KEY, key, 32);
    CHECK(p256_ecdsa_sign(key, hash, 32, MBEDTLS_MD_NONE, r, s) == -1);
    CHECK(p256_ecdsa_sign(key, hash, 32, 1000, r, s) == -1);
    CHECK(p256_ecdsa_sign(key, hash, 32, MBEDTLS_MD_SHA256, r, s) == 0);
}

/* mbedtls_pk_sign (the TLS signer) comes through the hook once installed,
 * with the same signature mbedTLS makes itself, and only for P-256. */
static void test_hook(void)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    CHECK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0);
    CHECK(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk), test_rng, NULL) == 0);
    uint8_t hash[32] = {1, 2, 3}, sig1[MBEDTLS_PK_SIGNATURE_MAX_SIZE], sig2[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t len1 = 0, len2 = 0;

    p256_mbedtls_hook_remove();
    unsigned long before = p256_sign_count();
    CHECK(mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, 32, sig1, sizeof sig1, &len1, test_rng, NULL) == 0);
    CHECK(p256_sign_count() == before);

    p256_mbedtls_hook_install();
    CHECK(mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, 32, sig2, sizeof sig2, &len2, test_rng, NULL) == 0);
    CHECK(p256_sign_count() == before + 1);
    CHECK(len1 == len2 && memcmp(sig1, sig2, len1) == 0);
    CHECK(mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash, 32, sig2, len2) == 0);
    mbedtls_pk_free(&pk);

    /* P-384 stays on mbedTLS's code */
    mbedtls_pk_init(&pk);
    CHECK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0);
    CHECK(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP384R1, mbedtls_pk_ec(pk), test_rng, NULL) == 0);
    CHECK(mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA384, hash, 32, sig1, sizeof sig1, &len1, test_rng, NULL) == 0);
    CHECK(mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA384, hash, 32, sig1, len1) == 0);
    CHECK(p256_sign_count() == before + 1);
    mbedtls_pk_free(&pk);
    p256_mbedtls_hook_remove();
}

int main(void)
{
    static const struct unit_case cases[] = {
        UNIT_CASE(test_rfc6979_vectors), UNIT_CASE(test_field_edges), UNIT_CASE(test_scalar_edges),
        UNIT_CASE(test_differential),    UNIT_CASE(test_bad_input),   UNIT_CASE(test_hook),
        UNIT_CASE(test_ecdh),            UNIT_CASE(test_ecdh_entry_points),
    };
    return unit_run("test_p256", cases, sizeof cases / sizeof cases[0]);
}
