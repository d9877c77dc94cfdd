// fuzz-srcs: src/rsa_mont.c src/rsa_ifma.c src/cpu.c src/psa_sodium.c src/p256.c src/crypto.c
/*
 * fuzz_rsa_mont — libFuzzer target for the RSA private operation on our own
 * Montgomery code (rsa_mont.c), differential against mbedTLS's own.
 *
 * Byte 0 picks the key (bit 0: RSA-1024 or RSA-2048, made once at start
 * from a fixed seed) and the path (bits 1-2: RSA_MONT_PATH_*, as far as the
 * CPU has it: portable C, MULX rows, IFMA); the rest is the input, right-aligned in the key's length.
 * mbedtls_rsa_private with the hook on and with it off must agree: the same
 * return value, and on success the same output, which the public operation
 * turns back into the input; an input >= N must be refused by both.
 */
#include "rsa_mont.h"

#include <mbedtls/rsa.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A deterministic generator (xorshift64*): the keys, and the blinding. */
static int det_rng(void *state, unsigned char *out, size_t len)
{
    uint64_t *s = state;
    for (size_t i = 0; i < len; i++) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        out[i] = (unsigned char)((*s * 0x2545F4914F6CDD1DULL) >> 56);
    }
    return 0;
}

static mbedtls_rsa_context keys[2];
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static void init_keys(void)
{
    static int done;
    if (done) return;
    const unsigned bits[2] = {1024, 2048};
    for (int i = 0; i < 2; i++) {
        mbedtls_rsa_init(&keys[i]);
        FUZZ_ASSERT(mbedtls_rsa_gen_key(&keys[i], det_rng, &rng_state, bits[i], 65537) == 0);
    }
    done = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    init_keys();
    mbedtls_rsa_context *key = &keys[data[0] & 1];
    size_t len = mbedtls_rsa_get_len(key);
    uint8_t in[256] = {0}, ours[256], theirs[256], back[256];
    size_t n = size - 1 > len ? len : size - 1;
    memcpy(in + len - n, data + 1, n);

    rsa_mont_test_path((data[0] >> 1) & 3);
    unsigned long before = rsa_mont_count();
    int r1 = mbedtls_rsa_private(key, det_rng, &rng_state, in, ours);
    FUZZ_ASSERT(r1 != 0 || rsa_mont_count() == before + 1); /* the hook ran */
    rsa_mont_set_enabled(0);
    int r2 = mbedtls_rsa_private(key, det_rng, &rng_state, in, theirs);
    rsa_mont_set_enabled(1);
    rsa_mont_test_path(RSA_MONT_PATH_IFMA);

    FUZZ_ASSERT(r1 == r2);
    if (r1 == 0) {
        FUZZ_ASSERT(memcmp(ours, theirs, len) == 0);
        FUZZ_ASSERT(mbedtls_rsa_public(key, ours, back) == 0 && memcmp(back, in, len) == 0);
    }
    return 0;
}
