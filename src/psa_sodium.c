/*
 * psa_sodium — X25519 for mbedTLS's PSA core, on crypto.c (see psa_sodium.h).
 */
#include "psa_sodium.h"

#include "crypto.h"

#include <stdatomic.h>

static atomic_ulong n_keys, n_publics, n_agreements;

void psa_sodium_count(struct psa_sodium_count *out)
{
    out->keys = atomic_load_explicit(&n_keys, memory_order_relaxed);
    out->publics = atomic_load_explicit(&n_publics, memory_order_relaxed);
    out->agreements = atomic_load_explicit(&n_agreements, memory_order_relaxed);
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
