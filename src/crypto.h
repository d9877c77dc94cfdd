/*
 * crypto — the only user of libsodium.
 *
 * Randomness, SHA-256 (account tokens, SPEC §1), Argon2id password hashes
 * (`mrs passwd`, AUTH), keyed hashes for the AUTH verify cache, Ed25519
 * signatures (DKIM ed25519-sha256, RFC 8463), X25519 key exchange (the
 * TLS handshake's key shares, through src/psa_sodium.c), base64, constant-time
 * comparison and wiping of secrets.  Swapping libsodium touches this file
 * only.  Thread-safe after crypto_init().  Leaf module.
 */
#ifndef MRS_CRYPTO_H
#define MRS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_BYTES 32
#define CRYPTO_SHA512_BYTES 64
#define CRYPTO_SHA256_HEX_BYTES 65          /* 64 hex digits + NUL */
#define CRYPTO_PWHASH_MAX_BYTES 128         /* an encoded Argon2id hash + NUL */
#define CRYPTO_KEY_BYTES 32

/* crypto_init — initialise libsodium; -1 if the platform has no randomness. */
int crypto_init(void);

/* crypto_random — n unpredictable bytes into buf. */
void crypto_random(void *buf, size_t n);
/* crypto_random_uniform — a uniform number in [0, upper). */
uint32_t crypto_random_uniform(uint32_t upper);

void crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_BYTES]);
/* crypto_sha512 — SHA-512 of data (TLSA matching type 2, RFC 6698). */
void crypto_sha512(const void *data, size_t len, uint8_t out[CRYPTO_SHA512_BYTES]);

/* Incremental SHA-256: begin, add any number of pieces, end. */
struct crypto_sha256_state {
    _Alignas(16) uint8_t opaque[128]; /* libsodium's crypto_hash_sha256_state fits (checked in crypto.c) */
};
void crypto_sha256_begin(struct crypto_sha256_state *s);
void crypto_sha256_add(struct crypto_sha256_state *s, const void *data, size_t len);
void crypto_sha256_end(struct crypto_sha256_state *s, uint8_t out[CRYPTO_SHA256_BYTES]);
/* crypto_sha256_hex — lowercase hex of SHA-256(data), NUL-terminated. */
void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_BYTES]);

/* crypto_keyed_hash — HMAC-SHA-256(key, data). */
void crypto_keyed_hash(const uint8_t key[CRYPTO_KEY_BYTES], const void *data, size_t len,
                       uint8_t out[CRYPTO_SHA256_BYTES]);

/* crypto_password_hash — Argon2id (interactive limits) of the password into
 * `out` as an encoded string.  0, or -1 when out of memory. */
int crypto_password_hash(const char *pw, size_t len, char out[CRYPTO_PWHASH_MAX_BYTES]);
/* crypto_password_verify — 0 when pw matches the encoded hash, -1 otherwise
 * (mismatch, malformed hash or out of memory). */
int crypto_password_verify(const char *hash, const char *pw, size_t len);
/* crypto_password_hash_valid — whether `hash` looks like an encoded Argon2 hash. */
bool crypto_password_hash_valid(const char *hash);

/* crypto_base64_decode — standard base64 (with padding) into out; -1 when
 * malformed or longer than cap. */
int crypto_base64_decode(const char *b64, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* crypto_base64_encode — standard base64 with padding of n bytes into out
 * (NUL-terminated).  Returns the length, or 0 when cap is too small
 * (CRYPTO_BASE64_LEN(n) + 1 bytes are needed). */
#define CRYPTO_BASE64_LEN(n) (((n) + 2) / 3 * 4)
size_t crypto_base64_encode(const void *in, size_t n, char *out, size_t cap);

/* Ed25519 (RFC 8032), for DKIM ed25519-sha256 (RFC 8463).  A private key is
 * its 32-byte seed (what PKCS#8 files hold); the expanded secret key stays
 * inside struct crypto_ed25519 and is wiped by crypto_ed25519_wipe(). */
#define CRYPTO_ED25519_SEED_BYTES 32
#define CRYPTO_ED25519_PUBLIC_BYTES 32
#define CRYPTO_ED25519_SIGNATURE_BYTES 64
struct crypto_ed25519 {
    uint8_t secret[64];                              /* libsodium's seed || public key */
    uint8_t public_key[CRYPTO_ED25519_PUBLIC_BYTES];
};
/* crypto_ed25519_from_seed — the key pair of a seed.  0, or -1. */
int crypto_ed25519_from_seed(const uint8_t seed[CRYPTO_ED25519_SEED_BYTES], struct crypto_ed25519 *k);
/* crypto_ed25519_sign — the detached signature of msg (PureEdDSA).  0, or -1. */
int crypto_ed25519_sign(const struct crypto_ed25519 *k, const void *msg, size_t len,
                        uint8_t sig[CRYPTO_ED25519_SIGNATURE_BYTES]);
/* crypto_ed25519_verify — whether sig is pk's signature of msg. */
bool crypto_ed25519_verify(const uint8_t pk[CRYPTO_ED25519_PUBLIC_BYTES], const void *msg, size_t len,
                           const uint8_t sig[CRYPTO_ED25519_SIGNATURE_BYTES]);
/* AES-256-GCM (TLS records, through src/psa_sodium.c): 12-byte nonce, 16-byte
 * tag, in and out may be the same buffer.  Only where the CPU has AES-NI and
 * PCLMUL: crypto_aes256gcm_available() says so.  decrypt: -1 when the tag
 * does not match, and out is wiped. */
#define CRYPTO_AES256GCM_KEY_BYTES 32
#define CRYPTO_AES256GCM_NONCE_BYTES 12
#define CRYPTO_AES256GCM_TAG_BYTES 16
bool crypto_aes256gcm_available(void);
void crypto_aes256gcm_encrypt(const uint8_t key[CRYPTO_AES256GCM_KEY_BYTES],
                              const uint8_t nonce[CRYPTO_AES256GCM_NONCE_BYTES], const uint8_t *ad,
                              size_t ad_len, const uint8_t *in, size_t len, uint8_t *out,
                              uint8_t tag[CRYPTO_AES256GCM_TAG_BYTES]);
int crypto_aes256gcm_decrypt(const uint8_t key[CRYPTO_AES256GCM_KEY_BYTES],
                             const uint8_t nonce[CRYPTO_AES256GCM_NONCE_BYTES], const uint8_t *ad,
                             size_t ad_len, const uint8_t *in, size_t len, uint8_t *out,
                             const uint8_t tag[CRYPTO_AES256GCM_TAG_BYTES]);

void crypto_ed25519_wipe(struct crypto_ed25519 *k);

/* X25519 (RFC 7748 §5, §6.1), for the TLS handshake's ECDHE key shares.
 * A secret is 32 random bytes, clamped as §5 says (the functions below
 * clamp again, so any 32 bytes work); keys are little-endian byte strings. */
#define CRYPTO_X25519_BYTES 32
/* crypto_x25519_secret — a fresh, clamped secret. */
void crypto_x25519_secret(uint8_t secret[CRYPTO_X25519_BYTES]);
/* crypto_x25519_public — X25519(secret, 9), the public key.  0, or -1. */
int crypto_x25519_public(const uint8_t secret[CRYPTO_X25519_BYTES], uint8_t pub[CRYPTO_X25519_BYTES]);
/* crypto_x25519_shared — X25519(secret, peer).  -1 (out wiped) when the
 * result is all zeros (a small-order peer key: RFC 7748 §6.1 says abort). */
int crypto_x25519_shared(const uint8_t secret[CRYPTO_X25519_BYTES], const uint8_t peer[CRYPTO_X25519_BYTES],
                         uint8_t out[CRYPTO_X25519_BYTES]);

/* crypto_equal — constant-time comparison of two n-byte buffers. */
bool crypto_equal(const void *a, const void *b, size_t n);
/* crypto_wipe — zero a secret in a way the compiler keeps. */
void crypto_wipe(void *p, size_t n);

#endif
