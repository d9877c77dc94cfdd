/*
 * crypto — libsodium behind the small interface of crypto.h.
 */
#include "crypto.h"

#include <sodium.h>
#include <string.h>

int crypto_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

void crypto_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

uint32_t crypto_random_uniform(uint32_t upper)
{
    return upper < 2 ? 0 : randombytes_uniform(upper);
}

void crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_BYTES])
{
    crypto_hash_sha256(out, data, len);
}

void crypto_sha512(const void *data, size_t len, uint8_t out[CRYPTO_SHA512_BYTES])
{
    crypto_hash_sha512(out, data, len);
}

_Static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(struct crypto_sha256_state),
               "crypto_sha256_state too small for libsodium's state");

static crypto_hash_sha256_state *sha_state(struct crypto_sha256_state *s)
{
    return (crypto_hash_sha256_state *)(void *)s->opaque;
}

void crypto_sha256_begin(struct crypto_sha256_state *s)
{
    crypto_hash_sha256_init(sha_state(s));
}

void crypto_sha256_add(struct crypto_sha256_state *s, const void *data, size_t len)
{
    crypto_hash_sha256_update(sha_state(s), data, len);
}

void crypto_sha256_end(struct crypto_sha256_state *s, uint8_t out[CRYPTO_SHA256_BYTES])
{
    crypto_hash_sha256_final(sha_state(s), out);
}

void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_BYTES])
{
    uint8_t h[CRYPTO_SHA256_BYTES];
    crypto_hash_sha256(h, data, len);
    sodium_bin2hex(out, CRYPTO_SHA256_HEX_BYTES, h, sizeof h);
}

void crypto_keyed_hash(const uint8_t key[CRYPTO_KEY_BYTES], const void *data, size_t len,
                       uint8_t out[CRYPTO_SHA256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, CRYPTO_KEY_BYTES);
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int crypto_password_hash(const char *pw, size_t len, char out[CRYPTO_PWHASH_MAX_BYTES])
{
    _Static_assert(crypto_pwhash_STRBYTES <= CRYPTO_PWHASH_MAX_BYTES, "hash buffer");
    return crypto_pwhash_str_alg(out, pw, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                 crypto_pwhash_MEMLIMIT_INTERACTIVE,
                                 crypto_pwhash_ALG_ARGON2ID13) == 0 ? 0 : -1;
}

int crypto_password_verify(const char *hash, const char *pw, size_t len)
{
    return crypto_pwhash_str_verify(hash, pw, len) == 0 ? 0 : -1;
}

bool crypto_password_hash_valid(const char *hash)
{
    size_t n = strnlen(hash, CRYPTO_PWHASH_MAX_BYTES);
    return n < CRYPTO_PWHASH_MAX_BYTES &&
           (strncmp(hash, "$argon2id$", 10) == 0 || strncmp(hash, "$argon2i$", 9) == 0);
}

int crypto_base64_decode(const char *b64, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    const char *end;
    if (sodium_base642bin(out, cap, b64, len, NULL, out_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + len)
        return -1;
    return 0;
}

size_t crypto_base64_encode(const void *in, size_t n, char *out, size_t cap)
{
    size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL); /* with the NUL */
    if (cap < need)
        return 0;
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_ORIGINAL);
    return need - 1;
}

_Static_assert(crypto_sign_SECRETKEYBYTES == 64 && crypto_sign_PUBLICKEYBYTES == CRYPTO_ED25519_PUBLIC_BYTES &&
                   crypto_sign_SEEDBYTES == CRYPTO_ED25519_SEED_BYTES &&
                   crypto_sign_BYTES == CRYPTO_ED25519_SIGNATURE_BYTES,
               "Ed25519 sizes");

int crypto_ed25519_from_seed(const uint8_t seed[CRYPTO_ED25519_SEED_BYTES], struct crypto_ed25519 *k)
{
    return crypto_sign_seed_keypair(k->public_key, k->secret, seed) == 0 ? 0 : -1;
}

int crypto_ed25519_sign(const struct crypto_ed25519 *k, const void *msg, size_t len,
                        uint8_t sig[CRYPTO_ED25519_SIGNATURE_BYTES])
{
    return crypto_sign_detached(sig, NULL, msg, len, k->secret) == 0 ? 0 : -1;
}

bool crypto_ed25519_verify(const uint8_t pk[CRYPTO_ED25519_PUBLIC_BYTES], const void *msg, size_t len,
                           const uint8_t sig[CRYPTO_ED25519_SIGNATURE_BYTES])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

_Static_assert(crypto_scalarmult_BYTES == CRYPTO_X25519_BYTES &&
                   crypto_scalarmult_SCALARBYTES == CRYPTO_X25519_BYTES,
               "libsodium's crypto_scalarmult is not X25519");

void crypto_x25519_secret(uint8_t secret[CRYPTO_X25519_BYTES])
{
    randombytes_buf(secret, CRYPTO_X25519_BYTES);
    secret[0] &= 248;  /* RFC 7748 §5 decodeScalar25519 */
    secret[31] &= 127;
    secret[31] |= 64;
}

int crypto_x25519_public(const uint8_t secret[CRYPTO_X25519_BYTES], uint8_t pub[CRYPTO_X25519_BYTES])
{
    return crypto_scalarmult_base(pub, secret) == 0 ? 0 : -1;
}

int crypto_x25519_shared(const uint8_t secret[CRYPTO_X25519_BYTES], const uint8_t peer[CRYPTO_X25519_BYTES],
                         uint8_t out[CRYPTO_X25519_BYTES])
{
    /* libsodium returns -1 for an all-zero result (and for the small-order
     * points that give one), in constant time. */
    if (crypto_scalarmult(out, secret, peer) != 0) {
        sodium_memzero(out, CRYPTO_X25519_BYTES);
        return -1;
    }
    return 0;
}

_Static_assert(crypto_aead_aes256gcm_KEYBYTES == CRYPTO_AES256GCM_KEY_BYTES &&
                   crypto_aead_aes256gcm_NPUBBYTES == CRYPTO_AES256GCM_NONCE_BYTES &&
                   crypto_aead_aes256gcm_ABYTES == CRYPTO_AES256GCM_TAG_BYTES,
               "libsodium's AES-256-GCM sizes");

bool crypto_aes256gcm_available(void)
{
    return crypto_aead_aes256gcm_is_available() == 1;
}

void crypto_aes256gcm_encrypt(const uint8_t key[CRYPTO_AES256GCM_KEY_BYTES],
                              const uint8_t nonce[CRYPTO_AES256GCM_NONCE_BYTES], const uint8_t *ad,
                              size_t ad_len, const uint8_t *in, size_t len, uint8_t *out,
                              uint8_t tag[CRYPTO_AES256GCM_TAG_BYTES])
{
    crypto_aead_aes256gcm_state st; /* expanded key and H: one per call, ~0.3 us */
    crypto_aead_aes256gcm_beforenm(&st, key);
    crypto_aead_aes256gcm_encrypt_detached_afternm(out, tag, NULL, in, len, ad, ad_len, NULL, nonce, &st);
    sodium_memzero(&st, sizeof st);
}

int crypto_aes256gcm_decrypt(const uint8_t key[CRYPTO_AES256GCM_KEY_BYTES],
                             const uint8_t nonce[CRYPTO_AES256GCM_NONCE_BYTES], const uint8_t *ad,
                             size_t ad_len, const uint8_t *in, size_t len, uint8_t *out,
                             const uint8_t tag[CRYPTO_AES256GCM_TAG_BYTES])
{
    crypto_aead_aes256gcm_state st;
    crypto_aead_aes256gcm_beforenm(&st, key);
    int rc = crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, in, len, tag, ad, ad_len, nonce, &st);
    sodium_memzero(&st, sizeof st);
    if (rc != 0) {
        sodium_memzero(out, len);
        return -1;
    }
    return 0;
}

void crypto_ed25519_wipe(struct crypto_ed25519 *k)
{
    sodium_memzero(k, sizeof *k);
}

bool crypto_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void crypto_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}
