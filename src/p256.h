/*
 * p256 — constant-time NIST P-256 (secp256r1) for the TLS handshake: the
 * server's ECDSA signature and the P-256 key exchange.
 *
 * Why: the server's CertificateVerify (TLS 1.3) and ServerKeyExchange
 * (TLS 1.2) signature with an ECDSA P-256 certificate went through
 * mbedTLS 3.6's generic bignum code, about 0.5 ms of CPU per handshake, the
 * largest single cost of a TLS connection (issue 11).  This module signs
 * in well under 0.1 ms; the ECDH of a client that picks P-256 also drops
 * from ~1.5 ms to ~0.4–0.7 ms.
 *
 * What: field arithmetic mod p and scalar arithmetic mod n on 4×64-bit
 * limbs in Montgomery form (unsigned __int128 products); k·G with a
 * fixed-base table of affine points (52 windows of signed 5-bit digits,
 * 1..16 times 2^(5i)·G, built once by p256_init under pthread_once) and
 * the complete addition formulas of Renes, Costello and Batina (2016), so
 * there is no special case for doubling or the point at infinity; k·Q
 * (ECDH) with the same digits over a per-call table of 1..16·Q; inversions
 * by Fermat's little theorem (exponent public).  Everything that touches
 * the private key or the nonce is constant-time: no branch and no memory
 * index depends on them (table entries are picked by scanning the whole
 * row with masks); the only branches on secret-derived values are the
 * flags marked P256_PUBLIC in p256.c.  The nonce is RFC 6979's
 * deterministic k (HMAC_DRBG over the private key and the hash, with the
 * hash function the caller names), so signatures are the same as
 * mbedTLS's MBEDTLS_ECDSA_DETERMINISTIC ones; a candidate k, r or s that
 * fails (probability ~2^-32 for k, ~2^-256 for r and s) is retried as the
 * RFC says.  Secrets are wiped.
 *
 * The hooks: build.sh applies vendor/mbedtls-ecdsa-p256.patch, which adds
 * the function pointer mbedtls_ecdsa_sign_det_p256_hook (mbedtls/ecdsa.h)
 * to mbedtls_ecdsa_sign_det_restartable: for group SECP256R1 (and no
 * restart context) mbedTLS hands the private key and the hash to it and
 * takes r and s back; any other curve, or a hook answer other than 0,
 * goes on through mbedTLS's own code.  p256_mbedtls_hook_install() sets
 * the pointer (tls_init does, before any thread starts); a program that
 * does not call it keeps mbedTLS's signer.  The key exchange comes in
 * through src/psa_sodium.c's mbedtls_ecdh_gen_public and
 * mbedtls_ecdh_compute_shared (TLS 1.2, and the shared secret of PSA's
 * TLS 1.3 key agreement); PSA's own P-256 key generation stays on mbedTLS.
 *
 * Tests: test/unit/test_p256.c (RFC 6979 A.2.5 vectors, field and scalar
 * edge values against mbedTLS's bignums, 2,000 random keys and hashes whose
 * signatures mbedtls_ecdsa_verify accepts and that equal mbedTLS's own
 * deterministic signatures, k·G and ECDH against mbedtls_ecp_mul, the hook
 * reached through mbedtls_pk_sign), test/fuzz/fuzz_p256.c (the same
 * differential on fuzzed keys, hashes and operands),
 * test/integration/test_tls_p256.py (OpenSSL clients verify the handshake
 * signature and agree P-256 key exchanges; test/tools/p256_ct.c under
 * valgrind memcheck finds no branch or memory index on the secrets).
 */
#ifndef MRS_P256_H
#define MRS_P256_H

#include <stddef.h>
#include <stdint.h>

#define P256_BYTES 32

/* p256_init — build the fixed-base table once (thread-safe; every entry
 * point calls it, call it early to keep the ~ms off a first handshake). */
void p256_init(void);

/* p256_public_key — pub = 0x04 || X || Y of priv·G; priv is big-endian and
 * must be in [1, n-1], else -1 and pub is zeroed. */
int p256_public_key(const uint8_t priv[P256_BYTES], uint8_t pub[1 + 2 * P256_BYTES]);

/* p256_ecdsa_sign — the ECDSA signature (r, s), big-endian, of a hash of
 * hlen bytes (its leftmost 256 bits, per SEC1) with the deterministic
 * nonce of RFC 6979 using HMAC with the hash md (an mbedtls_md_type_t).
 * -1, with r and s zeroed, when priv is not in [1, n-1] or md is not a
 * hash mbedTLS knows. */
int p256_ecdsa_sign(const uint8_t priv[P256_BYTES], const uint8_t *hash, size_t hlen, int md,
                    uint8_t r[P256_BYTES], uint8_t s[P256_BYTES]);

/* p256_ecdh — shared = the X coordinate of priv·peer (ECDH, SEC1 3.3.1);
 * peer is 0x04 || X || Y and must be a point of the curve, priv in [1,
 * n-1], else -1 and shared is zeroed.  Constant-time in priv. */
int p256_ecdh(const uint8_t priv[P256_BYTES], const uint8_t peer[1 + 2 * P256_BYTES], uint8_t shared[P256_BYTES]);

/* p256_mbedtls_hook_install — have mbedTLS sign on P-256 with
 * p256_ecdsa_sign (see the header comment); p256_mbedtls_hook_remove puts
 * mbedTLS's own signer back (tests and the benchmark compare the two). */
void p256_mbedtls_hook_install(void);
void p256_mbedtls_hook_remove(void);

/* p256_sign_count — signatures made through the mbedTLS hook since start:
 * the proof (test_p256) that mbedTLS reaches this code. */
unsigned long p256_sign_count(void);

/* p256_mod — test entry points for the modular arithmetic: out = a op b
 * mod p (P256_MOD_P) or n (P256_MOD_N), big-endian; op '+', '-', '*' or
 * 'i' (the inverse of a, 0 for 0).  -1 when a or b is not below the
 * modulus or op is unknown. */
enum { P256_MOD_P, P256_MOD_N };
int p256_mod(int mod, int op, const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES],
             uint8_t out[P256_BYTES]);

#endif
