/*
 * tlsbench — the public-key crypto of one TLS handshake, per operation, on
 * the relay's own build of mbedTLS (vendor/mbedtls_config.h, with the
 * X25519 driver of src/psa_sodium.c) and libsodium (src/crypto.c).
 *
 *   tlsbench [SECONDS_PER_ROW]        (default 1)
 *
 * Rows (CPU microseconds per operation, CLOCK_PROCESS_CPUTIME_ID, one
 * thread):
 *   x25519 psa        psa_generate_key + psa_export_public_key +
 *                     psa_raw_key_agreement: one side of a TLS 1.3 (and,
 *                     with MBEDTLS_USE_PSA_CRYPTO, TLS 1.2) key exchange
 *   x25519 sodium     the same with crypto.c directly (the floor)
 *   p256 psa          the same exchange on secp256r1
 *   x25519 ecdh       mbedtls_ecdh_make_params + read_public + calc_secret:
 *                     the server side of a TLS 1.2 ECDHE exchange (mbedTLS's
 *                     legacy ECDH, not PSA, without MBEDTLS_USE_PSA_CRYPTO)
 *   p256 ecdh         the same on secp256r1
 *   ecdsa-p256 mbedtls  mbedtls_pk_sign, SHA-256, as CertificateVerify /
 *                     ServerKeyExchange sign, on mbedTLS's own code
 *   ecdsa-p256 sign   the same through the hook to src/p256.c, as the
 *                     relay signs (tls_init installs the hook)
 *   p256 direct       p256_ecdsa_sign alone (no mbedTLS bignums, no DER)
 *   rsa2048 pss sign  mbedtls_pk_sign_ext RSASSA-PSS (TLS 1.3)
 *   rsa2048 v15 sign  mbedtls_pk_sign PKCS#1 v1.5 (TLS 1.2, DKIM)
 *   rsa2048 ... mbedtls  the two RSA rows with src/rsa_mont.c switched off:
 *                     mbedTLS's own private operation, for comparison
 */
#include "crypto.h"
#include "rsa_mont.h"
#include "p256.h"

#include <mbedtls/ecdh.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/psa_util.h>
#include <mbedtls/rsa.h>
#include <psa/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double budget_us = 1e6;

typedef int (*op_fn)(void *arg);

/* run — repeat op until the budget is spent; print µs per op. */
static int run(const char *name, op_fn op, void *arg)
{
    if (op(arg) != 0) { /* warm-up, and a check that the row works */
        printf("%-20s FAILED\n", name);
        return -1;
    }
    double t0 = cpu_us(), t = t0;
    long n = 0;
    while (t - t0 < budget_us && n < 10000000) {
        if (op(arg) != 0) {
            printf("%-20s FAILED\n", name);
            return -1;
        }
        n++;
        if ((n & 3) == 0) t = cpu_us();
    }
    t = cpu_us();
    printf("%-20s %9.1f us/op  (%ld ops)\n", name, (t - t0) / (double)n, n);
    fflush(stdout);
    return 0;
}

struct exchange {
    psa_key_type_t type;
    size_t bits;
    uint8_t peer[65];
    size_t peer_len;
};

/* one_side — what one TLS endpoint does for an ECDHE key share. */
static int one_side(void *arg)
{
    struct exchange *x = arg;
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&a, x->type);
    psa_set_key_bits(&a, x->bits);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
    psa_set_key_algorithm(&a, PSA_ALG_ECDH);
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    uint8_t pub[65], secret[48];
    size_t pub_len, secret_len;
    if (psa_generate_key(&a, &id) != PSA_SUCCESS) return -1;
    int ok = psa_export_public_key(id, pub, sizeof pub, &pub_len) == PSA_SUCCESS &&
             psa_raw_key_agreement(PSA_ALG_ECDH, id, x->peer, x->peer_len, secret, sizeof secret,
                                   &secret_len) == PSA_SUCCESS;
    psa_destroy_key(id);
    if (ok && x->peer_len == 0) return -1;
    return ok ? 0 : -1;
}

static int make_peer(struct exchange *x)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&a, x->type);
    psa_set_key_bits(&a, x->bits);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
    psa_set_key_algorithm(&a, PSA_ALG_ECDH);
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    if (psa_generate_key(&a, &id) != PSA_SUCCESS) return -1;
    psa_status_t st = psa_export_public_key(id, x->peer, sizeof x->peer, &x->peer_len);
    psa_destroy_key(id);
    return st == PSA_SUCCESS ? 0 : -1;
}

static int sodium_side(void *arg)
{
    const uint8_t *peer = arg;
    uint8_t secret[CRYPTO_X25519_BYTES], pub[CRYPTO_X25519_BYTES], shared[CRYPTO_X25519_BYTES];
    crypto_x25519_secret(secret);
    int rc = crypto_x25519_public(secret, pub) || crypto_x25519_shared(secret, peer, shared) ? -1 : 0;
    crypto_wipe(secret, sizeof secret);
    return rc;
}

struct legacy {
    mbedtls_ecp_group_id grp;
    uint8_t client_pub[100]; /* the client's ClientKeyExchange public value */
    size_t client_len;
};

/* tls12_server_side — ServerKeyExchange params, then the client's public
 * value and the premaster secret, as ssl_tls12_server.c does. */
static int tls12_server_side(void *arg)
{
    struct legacy *l = arg;
    mbedtls_ecdh_context srv;
    uint8_t params[200], secret[66];
    size_t len;
    mbedtls_ecdh_init(&srv);
    int ret = mbedtls_ecdh_setup(&srv, l->grp);
    if (!ret)
        ret = mbedtls_ecdh_make_params(&srv, &len, params, sizeof params, mbedtls_psa_get_random,
                                       MBEDTLS_PSA_RANDOM_STATE);
    if (!ret && l->client_len == 0) { /* first call: make the client's share once */
        mbedtls_ecdh_context cli;
        const uint8_t *p = params;
        mbedtls_ecdh_init(&cli);
        ret = mbedtls_ecdh_read_params(&cli, &p, params + len);
        if (!ret)
            ret = mbedtls_ecdh_make_public(&cli, &l->client_len, l->client_pub, sizeof l->client_pub,
                                           mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
        mbedtls_ecdh_free(&cli);
    }
    if (!ret) ret = mbedtls_ecdh_read_public(&srv, l->client_pub, l->client_len);
    if (!ret)
        ret = mbedtls_ecdh_calc_secret(&srv, &len, secret, sizeof secret, mbedtls_psa_get_random,
                                       MBEDTLS_PSA_RANDOM_STATE);
    mbedtls_ecdh_free(&srv);
    return ret;
}

struct signer {
    mbedtls_pk_context pk;
    int pss;
};

static int sign_one(void *arg)
{
    struct signer *s = arg;
    uint8_t hash[32] = {1, 2, 3}, sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t len;
    if (s->pss)
        return mbedtls_pk_sign_ext(MBEDTLS_PK_RSASSA_PSS, &s->pk, MBEDTLS_MD_SHA256, hash, sizeof hash, sig,
                                   sizeof sig, &len, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
    return mbedtls_pk_sign(&s->pk, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, sizeof sig, &len,
                           mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
}

static int p256_direct(void *arg)
{
    uint8_t hash[32] = {1, 2, 3}, r[P256_BYTES], s[P256_BYTES];
    return p256_ecdsa_sign(arg, hash, sizeof hash, MBEDTLS_MD_SHA256, r, s);
}

int main(int argc, char **argv)
{
    if (argc > 1) budget_us = atof(argv[1]) * 1e6;
    if (budget_us <= 0) budget_us = 1e6;
    if (crypto_init() != 0 || psa_crypto_init() != PSA_SUCCESS) {
        fprintf(stderr, "tlsbench: crypto init failed\n");
        return 1;
    }
    int rc = 0;
    struct exchange x = {PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY), 255, {0}, 0};
    rc |= make_peer(&x) || run("x25519 psa", one_side, &x);
    rc |= run("x25519 sodium", sodium_side, x.peer);
    struct exchange p = {PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1), 256, {0}, 0};
    rc |= make_peer(&p) || run("p256 psa", one_side, &p);

    struct legacy lx = {MBEDTLS_ECP_DP_CURVE25519, {0}, 0}, lp = {MBEDTLS_ECP_DP_SECP256R1, {0}, 0};
    rc |= run("x25519 ecdh", tls12_server_side, &lx);
    rc |= run("p256 ecdh", tls12_server_side, &lp);

    struct signer ec = {.pss = 0}, rsa = {.pss = 0};
    mbedtls_pk_init(&ec.pk);
    mbedtls_pk_init(&rsa.pk);
    if (mbedtls_pk_setup(&ec.pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
        mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(ec.pk), mbedtls_psa_get_random,
                            MBEDTLS_PSA_RANDOM_STATE) != 0 ||
        mbedtls_pk_setup(&rsa.pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0 ||
        mbedtls_rsa_gen_key(mbedtls_pk_rsa(rsa.pk), mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE, 2048,
                            65537) != 0) {
        fprintf(stderr, "tlsbench: key generation failed\n");
        return 1;
    }
    p256_mbedtls_hook_remove();
    rc |= run("ecdsa-p256 mbedtls", sign_one, &ec);
    p256_mbedtls_hook_install();
    unsigned long signed_before = p256_sign_count();
    rc |= run("ecdsa-p256 sign", sign_one, &ec);
    if (p256_sign_count() == signed_before) {
        printf("ecdsa-p256 sign    did not reach src/p256.c\n");
        rc = 1;
    }
    uint8_t d[P256_BYTES];
    size_t dlen = 0;
    rc |= mbedtls_ecp_write_key_ext(mbedtls_pk_ec(ec.pk), &dlen, d, sizeof d) != 0 || dlen != sizeof d ||
          run("p256 direct", p256_direct, d);
    mbedtls_platform_zeroize(d, sizeof d);
    rsa.pss = 1;
    rc |= run("rsa2048 pss sign", sign_one, &rsa);
    rsa.pss = 0;
    rc |= run("rsa2048 v15 sign", sign_one, &rsa);
    unsigned long ours = rsa_mont_count();
    rsa_mont_set_enabled(0); /* mbedTLS's own exponentiation, for comparison */
    rsa.pss = 1;
    rc |= run("rsa2048 pss mbedtls", sign_one, &rsa);
    rsa.pss = 0;
    rc |= run("rsa2048 v15 mbedtls", sign_one, &rsa);
    rsa_mont_set_enabled(1);
    if (ours == 0) {
        fprintf(stderr, "tlsbench: the RSA rows did not reach rsa_mont_private\n");
        rc = 1;
    }
    mbedtls_pk_free(&ec.pk);
    mbedtls_pk_free(&rsa.pk);
    mbedtls_psa_crypto_free();
    return rc ? 1 : 0;
}
