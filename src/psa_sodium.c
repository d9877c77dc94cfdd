/*
 * psa_sodium — X25519 for mbedTLS, on crypto.c (see psa_sodium.h).
 */
#include "psa_sodium.h"

#include "crypto.h"
#include "p256.h"

#include <mbedtls/ecdh.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <stdatomic.h>

static atomic_ulong n_keys, n_publics, n_agreements, n_gcm;

void psa_sodium_count(struct psa_sodium_count *out)
{
    out->keys = atomic_load_explicit(&n_keys, memory_order_relaxed);
    out->publics = atomic_load_explicit(&n_publics, memory_order_relaxed);
    out->agreements = atomic_load_explicit(&n_agreements, memory_order_relaxed);
    out->gcm = atomic_load_explicit(&n_gcm, memory_order_relaxed);
}

static bool is_x25519_pair(const psa_key_attributes_t *attributes)
{
    return psa_get_key_type(attributes) == PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY) &&
           psa_get_key_bits(attributes) == 255;
}

psa_status_t psa_sodium_transparent_generate_key(const psa_key_attributes_t *attributes,
                                                 uint8_t *key_buffer, size_t key_buffer_size,
                                                 size_t *key_buffer_length)
{
    if (!is_x25519_pair(attributes)) return PSA_ERROR_NOT_SUPPORTED;
    if (key_buffer_size < CRYPTO_X25519_BYTES) return PSA_ERROR_BUFFER_TOO_SMALL;
    crypto_x25519_secret(key_buffer);
    *key_buffer_length = CRYPTO_X25519_BYTES;
    atomic_fetch_add_explicit(&n_keys, 1, memory_order_relaxed);
    return PSA_SUCCESS;
}

psa_status_t psa_sodium_transparent_export_public_key(const psa_key_attributes_t *attributes,
                                                      const uint8_t *key_buffer, size_t key_buffer_size,
                                                      uint8_t *data, size_t data_size, size_t *data_length)
{
    if (!is_x25519_pair(attributes)) return PSA_ERROR_NOT_SUPPORTED;
    if (key_buffer_size != CRYPTO_X25519_BYTES) return PSA_ERROR_INVALID_ARGUMENT;
    if (data_size < CRYPTO_X25519_BYTES) return PSA_ERROR_BUFFER_TOO_SMALL;
    if (crypto_x25519_public(key_buffer, data) != 0) return PSA_ERROR_CORRUPTION_DETECTED;
    *data_length = CRYPTO_X25519_BYTES;
    atomic_fetch_add_explicit(&n_publics, 1, memory_order_relaxed);
    return PSA_SUCCESS;
}

psa_status_t psa_sodium_transparent_key_agreement(const psa_key_attributes_t *attributes,
                                                  const uint8_t *key_buffer, size_t key_buffer_size,
                                                  psa_algorithm_t alg, const uint8_t *peer_key,
                                                  size_t peer_key_length, uint8_t *shared_secret,
                                                  size_t shared_secret_size, size_t *shared_secret_length)
{
    if (!is_x25519_pair(attributes) || alg != PSA_ALG_ECDH) return PSA_ERROR_NOT_SUPPORTED;
    if (key_buffer_size != CRYPTO_X25519_BYTES || peer_key_length != CRYPTO_X25519_BYTES)
        return PSA_ERROR_INVALID_ARGUMENT;
    if (shared_secret_size < CRYPTO_X25519_BYTES) return PSA_ERROR_BUFFER_TOO_SMALL;
    if (crypto_x25519_shared(key_buffer, peer_key, shared_secret) != 0) return PSA_ERROR_INVALID_ARGUMENT;
    *shared_secret_length = CRYPTO_X25519_BYTES;
    atomic_fetch_add_explicit(&n_agreements, 1, memory_order_relaxed);
    return PSA_SUCCESS;
}

/*
 * TLS 1.2's ECDHE goes through mbedTLS's legacy ECDH API, not PSA (we build
 * without MBEDTLS_USE_PSA_CRYPTO: it made RSA signing 1.8x slower).  Its two
 * replaceable functions (MBEDTLS_ECDH_GEN_PUBLIC_ALT and
 * MBEDTLS_ECDH_COMPUTE_SHARED_ALT in vendor/mbedtls_config.h) are these:
 * X25519 on libsodium, every other curve as mbedTLS's own code does it.
 */
/* TLS 1.2 ECDHE on secp256r1: src/p256.c (a random d in [1, n-1] from
 * mbedTLS's generator, d·G; the peer's point checked, the X of d·Q). */
static int p256_gen_public(mbedtls_ecp_group *grp, mbedtls_mpi *d, mbedtls_ecp_point *Q,
                           int (*f_rng)(void *, unsigned char *, size_t), void *p_rng)
{
    uint8_t secret[P256_BYTES], pub[1 + 2 * P256_BYTES];
    int ret = mbedtls_ecp_gen_privkey(grp, d, f_rng, p_rng);
    if (ret == 0) ret = mbedtls_mpi_write_binary(d, secret, sizeof secret);
    if (ret == 0 && p256_public_key(secret, pub) != 0) ret = MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
    if (ret == 0) ret = mbedtls_ecp_point_read_binary(grp, Q, pub, sizeof pub);
    crypto_wipe(secret, sizeof secret);
    return ret;
}

static int p256_compute_shared(mbedtls_ecp_group *grp, mbedtls_mpi *z, const mbedtls_ecp_point *Q,
                               const mbedtls_mpi *d)
{
    uint8_t secret[P256_BYTES], peer[1 + 2 * P256_BYTES], out[P256_BYTES];
    size_t len = 0;
    int ret = mbedtls_mpi_write_binary(d, secret, sizeof secret);
    if (ret == 0)
        ret = mbedtls_ecp_point_write_binary(grp, Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, peer, sizeof peer);
    if (ret == 0 && (len != sizeof peer || p256_ecdh(secret, peer, out) != 0)) ret = MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
    if (ret == 0) ret = mbedtls_mpi_read_binary(z, out, sizeof out);
    crypto_wipe(secret, sizeof secret);
    crypto_wipe(out, sizeof out);
    return ret;
}

int mbedtls_ecdh_gen_public(mbedtls_ecp_group *grp, mbedtls_mpi *d, mbedtls_ecp_point *Q,
                            int (*f_rng)(void *, unsigned char *, size_t), void *p_rng)
{
    if (grp->id == MBEDTLS_ECP_DP_SECP256R1) return p256_gen_public(grp, d, Q, f_rng, p_rng);
    if (grp->id != MBEDTLS_ECP_DP_CURVE25519) return mbedtls_ecp_gen_keypair(grp, d, Q, f_rng, p_rng);
    uint8_t secret[CRYPTO_X25519_BYTES], pub[CRYPTO_X25519_BYTES];
    crypto_x25519_secret(secret);
    int ret = crypto_x25519_public(secret, pub) != 0 ? MBEDTLS_ERR_ECP_BAD_INPUT_DATA : 0;
    if (ret == 0) ret = mbedtls_mpi_read_binary_le(d, secret, sizeof secret);
    if (ret == 0) ret = mbedtls_ecp_point_read_binary(grp, Q, pub, sizeof pub);
    crypto_wipe(secret, sizeof secret);
    if (ret == 0) atomic_fetch_add_explicit(&n_keys, 1, memory_order_relaxed);
    return ret;
}

int mbedtls_ecdh_compute_shared(mbedtls_ecp_group *grp, mbedtls_mpi *z, const mbedtls_ecp_point *Q,
                                const mbedtls_mpi *d, int (*f_rng)(void *, unsigned char *, size_t),
                                void *p_rng)
{
    int ret;
    if (grp->id == MBEDTLS_ECP_DP_SECP256R1) return p256_compute_shared(grp, z, Q, d);
    if (grp->id != MBEDTLS_ECP_DP_CURVE25519) {
        mbedtls_ecp_point P;
        mbedtls_ecp_point_init(&P);
        uint8_t xy[1 + 2 * MBEDTLS_ECP_MAX_BYTES]; /* 04 || X || Y */
        size_t len = 0;
        ret = mbedtls_ecp_mul(grp, &P, d, Q, f_rng, p_rng);
        if (ret == 0 && mbedtls_ecp_is_zero(&P)) ret = MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
        if (ret == 0) ret = mbedtls_ecp_point_write_binary(grp, &P, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, xy, sizeof xy);
        if (ret == 0) ret = mbedtls_mpi_read_binary(z, xy + 1, (len - 1) / 2);
        mbedtls_ecp_point_free(&P);
        crypto_wipe(xy, sizeof xy);
        return ret;
    }
    uint8_t secret[CRYPTO_X25519_BYTES], peer[CRYPTO_X25519_BYTES], out[CRYPTO_X25519_BYTES];
    size_t len = 0;
    ret = mbedtls_mpi_write_binary_le(d, secret, sizeof secret);
    if (ret == 0)
        ret = mbedtls_ecp_point_write_binary(grp, Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &len, peer, sizeof peer);
    if (ret == 0 && len != sizeof peer) ret = MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
    if (ret == 0 && crypto_x25519_shared(secret, peer, out) != 0) ret = MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
    if (ret == 0) ret = mbedtls_mpi_read_binary_le(z, out, sizeof out);
    crypto_wipe(secret, sizeof secret);
    crypto_wipe(out, sizeof out);
    if (ret == 0) atomic_fetch_add_explicit(&n_agreements, 1, memory_order_relaxed);
    return ret;
}

/* ---- AES-256-GCM for mbedtls_gcm (vendor/mbedtls-gcm-aes256.patch) ---- */

static int gcm_hook(int mode, const unsigned char key[32], size_t length, const unsigned char iv[12],
                    const unsigned char *add, size_t add_len, const unsigned char *input, unsigned char *output,
                    const unsigned char *tag_in, unsigned char *tag_out)
{
    atomic_fetch_add_explicit(&n_gcm, 1, memory_order_relaxed);
    if (mode == MBEDTLS_GCM_ENCRYPT) {
        crypto_aes256gcm_encrypt(key, iv, add, add_len, input, length, output, tag_out);
        return 0;
    }
    return crypto_aes256gcm_decrypt(key, iv, add, add_len, input, length, output, tag_in) == 0 ? 0 : 1;
}

bool psa_sodium_gcm_install(void)
{
    if (!crypto_aes256gcm_available())
        return false;
    mbedtls_gcm_aes256_hook = gcm_hook;
    return true;
}

void psa_sodium_gcm_remove(void)
{
    mbedtls_gcm_aes256_hook = NULL;
}
