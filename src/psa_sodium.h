/*
 * psa_sodium — a PSA Crypto transparent driver that does X25519 (key pair
 * generation, public key export, ECDH) with libsodium through crypto.c.
 *
 * mbedTLS's own X25519 is its generic bignum ladder: about 0.9 ms of CPU for
 * the key share of every TLS 1.3 handshake, ten times libsodium's.  mbedTLS
 * 3.6 calls transparent drivers from its driver dispatch layer; build.sh
 * applies vendor/mbedtls-psa-sodium.patch, which adds the three calls below
 * to that layer (the manual integration its docs/psa-driver-example-and-
 * guide.md describes), and copies this header next to it.  The library is
 * built with MRS_PSA_SODIUM_DRIVER_ENABLED (vendor/mbedtls_config.h), so any
 * program that links it must link psa_sodium.o and crypto.o (the Makefile
 * does) and call crypto_init() before psa_crypto_init() — tls_init does.
 *
 * TLS 1.2 does its ECDHE through mbedTLS's legacy ECDH API instead: the
 * same file defines mbedtls_ecdh_gen_public and mbedtls_ecdh_compute_shared
 * (declared in mbedtls/ecdh.h; the library leaves them out with
 * MBEDTLS_ECDH_GEN_PUBLIC_ALT / MBEDTLS_ECDH_COMPUTE_SHARED_ALT), X25519 on
 * libsodium, P-256 on src/p256.c (mbedTLS's PSA key agreement calls
 * mbedtls_ecdh_compute_shared too) and the other curves on mbedTLS's own
 * code.
 *
 * Keys are PSA's export format for Montgomery keys (RFC 7748: 32 bytes,
 * little-endian).  Each entry point answers PSA_ERROR_NOT_SUPPORTED for any
 * other key, and mbedTLS falls back to its own code.  Thread-safe.
 *
 * This header is also compiled into mbedTLS: PSA types only.
 */
#ifndef MRS_PSA_SODIUM_H
#define MRS_PSA_SODIUM_H

#include "psa/crypto.h"

#include <stdbool.h>

#ifndef PSA_CRYPTO_ACCELERATOR_DRIVER_PRESENT
#define PSA_CRYPTO_ACCELERATOR_DRIVER_PRESENT
#endif

/* generate_key — a fresh X25519 private key (clamped) into key_buffer. */
psa_status_t psa_sodium_transparent_generate_key(const psa_key_attributes_t *attributes,
                                                 uint8_t *key_buffer, size_t key_buffer_size,
                                                 size_t *key_buffer_length);

/* export_public_key — the public key of an X25519 private key. */
psa_status_t psa_sodium_transparent_export_public_key(const psa_key_attributes_t *attributes,
                                                      const uint8_t *key_buffer, size_t key_buffer_size,
                                                      uint8_t *data, size_t data_size, size_t *data_length);

/* key_agreement — X25519(private key, peer public key).  An all-zero
 * result (a small-order peer key) is PSA_ERROR_INVALID_ARGUMENT (RFC 7748
 * §6.1), and the output is wiped. */
psa_status_t psa_sodium_transparent_key_agreement(const psa_key_attributes_t *attributes,
                                                  const uint8_t *key_buffer, size_t key_buffer_size,
                                                  psa_algorithm_t alg, const uint8_t *peer_key,
                                                  size_t peer_key_length, uint8_t *shared_secret,
                                                  size_t shared_secret_size, size_t *shared_secret_length);

/* psa_sodium_count — how many key pairs, public keys and shared secrets the
 * driver (and the TLS 1.2 functions) have made since start: the proof
 * (test_psa_sodium) that mbedTLS reaches them rather than its own code. */
struct psa_sodium_count {
    unsigned long keys, publics, agreements, gcm;
};
void psa_sodium_count(struct psa_sodium_count *out);

/* psa_sodium_gcm_install — have mbedTLS's GCM do AES-256-GCM with a 12-byte
 * IV and a 16-byte tag on libsodium (AES-NI and PCLMUL, several blocks at
 * once): TLS records of TLS_AES_256_GCM_SHA384 and the TLS 1.2 AES-256-GCM
 * suites, session tickets.  mbedTLS's own GCM multiplies one block at a
 * time through its generic cipher layer, ~20 times slower.  The hook is
 * vendor/mbedtls-gcm-aes256.patch (mbedtls/gcm.h says what it takes); a
 * GCM context keyed before install stays on mbedTLS's code.  false (nothing
 * changed) when the CPU lacks AES-NI or PCLMUL.  Call before any thread uses
 * TLS; psa_sodium_count's gcm counts the operations it did. */
bool psa_sodium_gcm_install(void);
void psa_sodium_gcm_remove(void);

#endif
