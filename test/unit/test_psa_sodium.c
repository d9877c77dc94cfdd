/* Unit tests of the X25519 PSA driver on libsodium (psa_sodium.c): the
 * RFC 7748 test vectors (§5.2 and §6.1) through mbedTLS's own PSA API, the
 * way the TLS handshake calls it, with the driver's counters proving that
 * the dispatch layer reached the driver; the entry points called directly;
 * small-order peer keys refused; other curves left to mbedTLS; and the
 * legacy ECDH functions TLS 1.2 calls (mbedtls_ecdh_gen_public /
 * compute_shared), X25519 on libsodium and P-256 still on mbedTLS; and
 * the AES-256-GCM hook in mbedtls_gcm (vendor/mbedtls-gcm-aes256.patch):
 * bit-for-bit mbedTLS's own GCM for random keys, nonces, AAD and lengths,
 * in place and not, forged tags and ciphertexts refused with the output
 * wiped, other key sizes, IV and tag lengths left to mbedTLS. */
#include "crypto.h"
#include "psa_sodium.h"
#include "unit.h"

#include <mbedtls/ecdh.h>
#include <mbedtls/gcm.h>
#include <psa/crypto.h>
#include <stdlib.h>

static void hex(const char *h, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

#define CHECK_HEX(buf, h)                   \
    do {                                    \
        uint8_t want_[32];                  \
        hex((h), want_);                    \
        CHECK(memcmp((buf), want_, 32) == 0); \
    } while (0)

static psa_key_attributes_t x25519_attributes(void)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&a, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY));
    psa_set_key_bits(&a, 255);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE | PSA_KEY_USAGE_EXPORT);
    psa_set_key_algorithm(&a, PSA_ALG_ECDH);
    return a;
}

static mbedtls_svc_key_id_t import(const char *secret_hex)
{
    uint8_t k[32];
    hex(secret_hex, k);
    psa_key_attributes_t a = x25519_attributes();
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    CHECK(psa_import_key(&a, k, sizeof k, &id) == PSA_SUCCESS);
    return id;
}

/* agree — X25519(secret, u) through psa_raw_key_agreement. */
static psa_status_t agree(const char *secret_hex, const uint8_t u[32], uint8_t out[32])
{
    mbedtls_svc_key_id_t id = import(secret_hex);
    size_t len = 0;
    memset(out, 0xee, 32);
    psa_status_t st = psa_raw_key_agreement(PSA_ALG_ECDH, id, u, 32, out, 32, &len);
    CHECK(st != PSA_SUCCESS || len == 32);
    psa_destroy_key(id);
    return st;
}

static void test_rfc7748_5_2_vectors_through_psa(void)
{
    struct psa_sodium_count before, after;
    psa_sodium_count(&before);
    uint8_t u[32], out[32];
    hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c", u);
    CHECK(agree("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4", u, out) == PSA_SUCCESS);
    CHECK_HEX(out, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    /* the top bit of this u is set: X25519 masks it (RFC 7748 §5) */
    hex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493", u);
    CHECK(agree("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d", u, out) == PSA_SUCCESS);
    CHECK_HEX(out, "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
    psa_sodium_count(&after);
    CHECK(after.agreements == before.agreements + 2);
}

static void test_rfc7748_5_2_iterations(void)
{
    uint8_t k[32] = {9}, u[32] = {9}, r[32];
    psa_key_attributes_t a = x25519_attributes();
    size_t len;
    for (int i = 1; i <= 1000; i++) {
        CHECK(psa_sodium_transparent_key_agreement(&a, k, 32, PSA_ALG_ECDH, u, 32, r, 32, &len) ==
              PSA_SUCCESS);
        memcpy(u, k, 32);
        memcpy(k, r, 32);
        if (i == 1) CHECK_HEX(k, "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
    }
    CHECK_HEX(k, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
}

static const char alice[] = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
static const char alice_pub[] = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
static const char bob[] = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
static const char bob_pub[] = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
static const char shared[] = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

static void test_rfc7748_6_1_through_psa(void)
{
    struct psa_sodium_count before, after;
    psa_sodium_count(&before);
    uint8_t pub[32], out[32];
    size_t len = 0;
    mbedtls_svc_key_id_t id = import(alice);
    CHECK(psa_export_public_key(id, pub, sizeof pub, &len) == PSA_SUCCESS && len == 32);
    CHECK_HEX(pub, alice_pub);
    psa_destroy_key(id);
    id = import(bob);
    CHECK(psa_export_public_key(id, pub, sizeof pub, &len) == PSA_SUCCESS && len == 32);
    CHECK_HEX(pub, bob_pub);
    psa_destroy_key(id);
    hex(bob_pub, pub);
    CHECK(agree(alice, pub, out) == PSA_SUCCESS);
    CHECK_HEX(out, shared);
    hex(alice_pub, pub);
    CHECK(agree(bob, pub, out) == PSA_SUCCESS);
    CHECK_HEX(out, shared);
    psa_sodium_count(&after);
    CHECK(after.publics == before.publics + 2);
    CHECK(after.agreements == before.agreements + 2);
}

static void test_rfc7748_6_1_driver_entry_points(void)
{
    psa_key_attributes_t a = x25519_attributes();
    uint8_t k[32], pub[32], out[32];
    size_t len = 0;
    hex(alice, k);
    CHECK(psa_sodium_transparent_export_public_key(&a, k, 32, pub, 32, &len) == PSA_SUCCESS && len == 32);
    CHECK_HEX(pub, alice_pub);
    hex(bob_pub, pub);
    CHECK(psa_sodium_transparent_key_agreement(&a, k, 32, PSA_ALG_ECDH, pub, 32, out, 32, &len) == PSA_SUCCESS);
    CHECK_HEX(out, shared);
    /* sizes are checked; too small an output is refused */
    CHECK(psa_sodium_transparent_key_agreement(&a, k, 32, PSA_ALG_ECDH, pub, 31, out, 32, &len) ==
          PSA_ERROR_INVALID_ARGUMENT);
    CHECK(psa_sodium_transparent_export_public_key(&a, k, 32, pub, 31, &len) == PSA_ERROR_BUFFER_TOO_SMALL);
}

/* a fresh key pair (the TLS key share): generated by the driver, clamped,
 * and two of them agree on one secret */
static void test_generated_keys_agree(void)
{
    struct psa_sodium_count before, after;
    psa_sodium_count(&before);
    psa_key_attributes_t a = x25519_attributes();
    mbedtls_svc_key_id_t k1 = MBEDTLS_SVC_KEY_ID_INIT, k2 = MBEDTLS_SVC_KEY_ID_INIT;
    uint8_t p1[32], p2[32], s1[32], s2[32], raw[32];
    size_t len;
    CHECK(psa_generate_key(&a, &k1) == PSA_SUCCESS && psa_generate_key(&a, &k2) == PSA_SUCCESS);
    CHECK(psa_export_key(k1, raw, sizeof raw, &len) == PSA_SUCCESS && len == 32);
    CHECK((raw[0] & 7) == 0 && (raw[31] & 0xc0) == 0x40);
    CHECK(psa_export_public_key(k1, p1, 32, &len) == PSA_SUCCESS);
    CHECK(psa_export_public_key(k2, p2, 32, &len) == PSA_SUCCESS);
    CHECK(psa_raw_key_agreement(PSA_ALG_ECDH, k1, p2, 32, s1, 32, &len) == PSA_SUCCESS);
    CHECK(psa_raw_key_agreement(PSA_ALG_ECDH, k2, p1, 32, s2, 32, &len) == PSA_SUCCESS);
    CHECK(memcmp(s1, s2, 32) == 0 && memcmp(p1, p2, 32) != 0);
    psa_destroy_key(k1);
    psa_destroy_key(k2);
    psa_sodium_count(&after);
    CHECK(after.keys == before.keys + 2 && after.publics == before.publics + 2 &&
          after.agreements == before.agreements + 2);
}

/* RFC 7748 §6.1: an all-zero shared secret (a small-order peer key) must
 * be refused; the output holds nothing of it */
static void test_small_order_peer_refused(void)
{
    static const char *small[] = {
        "0000000000000000000000000000000000000000000000000000000000000000", /* 0 */
        "0100000000000000000000000000000000000000000000000000000000000000", /* 1 */
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", /* order 8 */
    };
    psa_key_attributes_t a = x25519_attributes();
    uint8_t k[32], u[32], out[32];
    size_t len;
    hex(alice, k);
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        hex(small[i], u);
        CHECK(agree(alice, u, out) != PSA_SUCCESS);
        memset(out, 0xee, sizeof out);
        CHECK(psa_sodium_transparent_key_agreement(&a, k, 32, PSA_ALG_ECDH, u, 32, out, 32, &len) ==
              PSA_ERROR_INVALID_ARGUMENT);
        uint8_t zero[32] = {0};
        CHECK(memcmp(out, zero, 32) == 0);
    }
}

/* P-256 stays with mbedTLS: the driver is not called */
static void test_other_curves_not_taken(void)
{
    struct psa_sodium_count before, after;
    psa_sodium_count(&before);
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&a, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1));
    psa_set_key_bits(&a, 256);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
    psa_set_key_algorithm(&a, PSA_ALG_ECDH);
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    uint8_t pub[65], out[32];
    size_t len;
    CHECK(psa_generate_key(&a, &id) == PSA_SUCCESS);
    CHECK(psa_export_public_key(id, pub, sizeof pub, &len) == PSA_SUCCESS && len == 65);
    CHECK(psa_raw_key_agreement(PSA_ALG_ECDH, id, pub, len, out, sizeof out, &len) == PSA_SUCCESS);
    psa_destroy_key(id);
    psa_sodium_count(&after);
    CHECK(after.keys == before.keys && after.publics == before.publics && after.agreements == before.agreements);
    CHECK(psa_sodium_transparent_generate_key(&a, out, sizeof out, &len) == PSA_ERROR_NOT_SUPPORTED);
}

static int rng(void *ctx, unsigned char *out, size_t n)
{
    (void)ctx;
    crypto_random(out, n);
    return 0;
}

/* tls12_exchange — ServerKeyExchange / ClientKeyExchange / premaster as
 * ssl_tls12_server.c and ssl_tls12_client.c do it; 0 when both sides got
 * the same secret. */
static int tls12_exchange(mbedtls_ecp_group_id grp)
{
    mbedtls_ecdh_context srv, cli;
    uint8_t params[200], pub[100], s1[66], s2[66];
    size_t plen = 0, publen = 0, l1 = 0, l2 = 0;
    const uint8_t *p = params;
    mbedtls_ecdh_init(&srv);
    mbedtls_ecdh_init(&cli);
    int ret = mbedtls_ecdh_setup(&srv, grp);
    if (!ret) ret = mbedtls_ecdh_make_params(&srv, &plen, params, sizeof params, rng, NULL);
    if (!ret) ret = mbedtls_ecdh_read_params(&cli, &p, params + plen);
    if (!ret) ret = mbedtls_ecdh_make_public(&cli, &publen, pub, sizeof pub, rng, NULL);
    if (!ret) ret = mbedtls_ecdh_read_public(&srv, pub, publen);
    if (!ret) ret = mbedtls_ecdh_calc_secret(&srv, &l1, s1, sizeof s1, rng, NULL);
    if (!ret) ret = mbedtls_ecdh_calc_secret(&cli, &l2, s2, sizeof s2, rng, NULL);
    if (!ret && (l1 != l2 || memcmp(s1, s2, l1) != 0)) ret = -1;
    mbedtls_ecdh_free(&srv);
    mbedtls_ecdh_free(&cli);
    return ret;
}

static void test_tls12_ecdh_x25519_on_libsodium(void)
{
    struct psa_sodium_count before, after;
    psa_sodium_count(&before);
    CHECK(tls12_exchange(MBEDTLS_ECP_DP_CURVE25519) == 0);
    psa_sodium_count(&after);
    CHECK(after.keys == before.keys + 2 && after.agreements == before.agreements + 2);
    /* RFC 7748 §6.1 through the same function */
    mbedtls_ecp_group g;
    mbedtls_ecp_point q;
    mbedtls_mpi d, z;
    uint8_t k[32], u[32], out[32];
    mbedtls_ecp_group_init(&g);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&z);
    hex(alice, k);
    hex(bob_pub, u);
    CHECK(mbedtls_ecp_group_load(&g, MBEDTLS_ECP_DP_CURVE25519) == 0);
    CHECK(mbedtls_mpi_read_binary_le(&d, k, 32) == 0 && mbedtls_ecp_point_read_binary(&g, &q, u, 32) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&g, &z, &q, &d, rng, NULL) == 0);
    CHECK(mbedtls_mpi_write_binary_le(&z, out, 32) == 0);
    CHECK_HEX(out, shared);
    /* a small-order peer key: refused */
    memset(u, 0, sizeof u);
    u[0] = 1;
    CHECK(mbedtls_ecp_point_read_binary(&g, &q, u, 32) == 0);
    CHECK(mbedtls_ecdh_compute_shared(&g, &z, &q, &d, rng, NULL) != 0);
    mbedtls_mpi_free(&d);
    mbedtls_mpi_free(&z);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&g);
}

static void test_tls12_ecdh_other_curves_on_mbedtls(void)
{
    struct psa_sodium_count before, after;
    psa_sodium_count(&before);
    CHECK(tls12_exchange(MBEDTLS_ECP_DP_SECP256R1) == 0);
    CHECK(tls12_exchange(MBEDTLS_ECP_DP_SECP384R1) == 0);
    psa_sodium_count(&after);
    CHECK(after.keys == before.keys && after.agreements == before.agreements);
}

/* ---- AES-256-GCM ---- */

/* gcm_encrypt — one-shot encryption with a context keyed now (so the hook,
 * when installed, takes it); in place when out == in */
static int gcm_encrypt(const uint8_t *key, unsigned bits, const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag, size_t tag_len)
{
    mbedtls_gcm_context g;
    mbedtls_gcm_init(&g);
    int ret = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, bits);
    if (!ret)
        ret = mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, len, iv, iv_len, ad, ad_len, in, out, tag_len, tag);
    mbedtls_gcm_free(&g);
    return ret;
}

static int gcm_decrypt(const uint8_t *key, unsigned bits, const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *in, size_t len, uint8_t *out, const uint8_t *tag, size_t tag_len)
{
    mbedtls_gcm_context g;
    mbedtls_gcm_init(&g);
    int ret = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, bits);
    if (!ret)
        ret = mbedtls_gcm_auth_decrypt(&g, len, iv, iv_len, ad, ad_len, tag, tag_len, in, out);
    mbedtls_gcm_free(&g);
    return ret;
}

static unsigned long gcm_count(void)
{
    struct psa_sodium_count c;
    psa_sodium_count(&c);
    return c.gcm;
}

/* lengths around the 16-byte block and the hook's 128-byte stride */
static size_t pick_len(uint32_t r)
{
    static const size_t edges[] = {0, 1, 15, 16, 17, 63, 64, 127, 128, 129, 255, 256, 1000, 16384};
    return r % 3 == 0 ? edges[(r / 3) % (sizeof edges / sizeof edges[0])] : (size_t)(r % 2100);
}

static void test_gcm_aes256_matches_mbedtls(void)
{
    if (!psa_sodium_gcm_install()) {
        printf("  (this CPU has no AES-NI/PCLMUL: the hook stays off)\n");
        CHECK(!crypto_aes256gcm_available());
        return;
    }
    enum { CAP = 16384 };
    uint8_t *pt = malloc(CAP), *want = malloc(CAP), *got = malloc(CAP), *back = malloc(CAP);
    uint8_t key[32], iv[12], ad[64], tag_want[16], tag_got[16];
    for (int i = 0; i < 400; i++) {
        size_t len = pick_len(crypto_random_uniform(1u << 30)), ad_len = crypto_random_uniform(sizeof ad + 1);
        crypto_random(key, sizeof key);
        crypto_random(iv, sizeof iv);
        crypto_random(ad, sizeof ad);
        crypto_random(pt, len);
        psa_sodium_gcm_remove();
        CHECK(gcm_encrypt(key, 256, iv, 12, ad, ad_len, pt, len, want, tag_want, 16) == 0);
        psa_sodium_gcm_install();
        unsigned long before = gcm_count();
        CHECK(gcm_encrypt(key, 256, iv, 12, ad, ad_len, pt, len, got, tag_got, 16) == 0);
        CHECK(memcmp(got, want, len) == 0 && memcmp(tag_got, tag_want, 16) == 0);
        /* in place, as the TLS record layer does */
        memcpy(got, pt, len);
        CHECK(gcm_encrypt(key, 256, iv, 12, ad, ad_len, got, len, got, tag_got, 16) == 0);
        CHECK(memcmp(got, want, len) == 0 && memcmp(tag_got, tag_want, 16) == 0);
        CHECK(gcm_decrypt(key, 256, iv, 12, ad, ad_len, want, len, back, tag_want, 16) == 0);
        CHECK(memcmp(back, pt, len) == 0);
        CHECK(gcm_decrypt(key, 256, iv, 12, ad, ad_len, got, len, got, tag_want, 16) == 0);
        CHECK(memcmp(got, pt, len) == 0);
        CHECK(gcm_count() == before + 4);
    }
    free(pt), free(want), free(got), free(back);
}

/* a changed tag, ciphertext bit, AAD byte or nonce: refused, output wiped */
static void test_gcm_aes256_forgery_refused(void)
{
    if (!psa_sodium_gcm_install())
        return;
    uint8_t key[32], iv[12], ad[13], pt[300], ct[300], out[300], tag[16], zero[300] = {0};
    crypto_random(key, sizeof key);
    crypto_random(iv, sizeof iv);
    crypto_random(ad, sizeof ad);
    crypto_random(pt, sizeof pt);
    CHECK(gcm_encrypt(key, 256, iv, 12, ad, sizeof ad, pt, sizeof pt, ct, tag, 16) == 0);
    for (int what = 0; what < 4; what++) {
        uint8_t t[16], c[300], a[13], n[12];
        memcpy(t, tag, 16), memcpy(c, ct, sizeof c), memcpy(a, ad, sizeof a), memcpy(n, iv, sizeof n);
        if (what == 0) t[crypto_random_uniform(16)] ^= 1;
        if (what == 1) c[crypto_random_uniform(sizeof c)] ^= 0x80;
        if (what == 2) a[crypto_random_uniform(sizeof a)] ^= 4;
        if (what == 3) n[11] ^= 1;
        unsigned long before = gcm_count();
        memset(out, 0xa5, sizeof out);
        CHECK(gcm_decrypt(key, 256, n, 12, a, sizeof a, c, sizeof c, out, t, 16) == MBEDTLS_ERR_GCM_AUTH_FAILED);
        CHECK(memcmp(out, zero, sizeof out) == 0);
        CHECK(gcm_count() == before + 1);
    }
    CHECK(gcm_decrypt(key, 256, iv, 12, ad, sizeof ad, ct, sizeof ct, out, tag, 16) == 0);
    CHECK(memcmp(out, pt, sizeof pt) == 0);
}

/* AES-128, a 16-byte IV or a short tag: mbedTLS's own code, same results */
static void test_gcm_other_parameters_stay_on_mbedtls(void)
{
    if (!psa_sodium_gcm_install())
        return;
    uint8_t key[32], iv[16], pt[100], a[100], b[100], ta[16], tb[16];
    crypto_random(key, sizeof key);
    crypto_random(iv, sizeof iv);
    crypto_random(pt, sizeof pt);
    struct { unsigned bits; size_t iv_len, tag_len; } cases[] = {{128, 12, 16}, {192, 12, 16}, {256, 16, 16},
                                                                 {256, 12, 12}, {256, 8, 16}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned long before = gcm_count();
        CHECK(gcm_encrypt(key, cases[i].bits, iv, cases[i].iv_len, NULL, 0, pt, sizeof pt, a, ta,
                          cases[i].tag_len) == 0);
        CHECK(gcm_decrypt(key, cases[i].bits, iv, cases[i].iv_len, NULL, 0, a, sizeof a, b, ta,
                          cases[i].tag_len) == 0);
        CHECK(memcmp(b, pt, sizeof pt) == 0);
        CHECK(gcm_count() == before);
        psa_sodium_gcm_remove();
        CHECK(gcm_encrypt(key, cases[i].bits, iv, cases[i].iv_len, NULL, 0, pt, sizeof pt, b, tb,
                          cases[i].tag_len) == 0);
        CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(ta, tb, cases[i].tag_len) == 0);
        psa_sodium_gcm_install();
    }
}

int main(void)
{
    if (crypto_init() != 0 || psa_crypto_init() != PSA_SUCCESS) {
        fprintf(stderr, "crypto init failed\n");
        return 1;
    }
    static const struct unit_case cases[] = {
        UNIT_CASE(test_rfc7748_5_2_vectors_through_psa), UNIT_CASE(test_rfc7748_5_2_iterations),
        UNIT_CASE(test_rfc7748_6_1_through_psa),         UNIT_CASE(test_rfc7748_6_1_driver_entry_points),
        UNIT_CASE(test_generated_keys_agree),            UNIT_CASE(test_small_order_peer_refused),
        UNIT_CASE(test_other_curves_not_taken),          UNIT_CASE(test_tls12_ecdh_x25519_on_libsodium),
        UNIT_CASE(test_tls12_ecdh_other_curves_on_mbedtls), UNIT_CASE(test_gcm_aes256_matches_mbedtls),
        UNIT_CASE(test_gcm_aes256_forgery_refused),         UNIT_CASE(test_gcm_other_parameters_stay_on_mbedtls),
    };
    int rc = unit_run("test_psa_sodium", cases, sizeof cases / sizeof cases[0]);
    mbedtls_psa_crypto_free();
    return rc;
}
