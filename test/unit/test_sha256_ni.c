/* test_sha256_ni — mbedTLS's SHA-256 with the SHA-instruction hook
 * (src/sha256_ni.c) against the FIPS 180-2 examples and against mbedTLS's
 * own code without the hook: every length up to 300 bytes, and one message
 * fed in random pieces.  On a CPU without the instructions the hook is not
 * installed and the tests say so. */
#include "sha256_ni.h"
#include "unit.h"

#include <mbedtls/sha256.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_fips_180_examples(void)
{
    if (!sha256_ni_install()) {
        printf("  (no SHA instructions on this CPU: mbedTLS's own code is used)\n");
        return;
    }
    unsigned char d[32];
    char h[65];
    CHECK(mbedtls_sha256((const unsigned char *)"abc", 3, d, 0) == 0);
    hex(d, 32, h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(mbedtls_sha256((const unsigned char *)two, strlen(two), d, 0) == 0);
    hex(d, 32, h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    static unsigned char million[1000000];
    memset(million, 'a', sizeof million);
    CHECK(mbedtls_sha256(million, sizeof million, d, 0) == 0);
    hex(d, 32, h);
    CHECK_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    CHECK(mbedtls_sha256((const unsigned char *)"abc", 3, d, 1) == 0); /* SHA-224 shares the blocks */
    hex(d, 28, h);
    CHECK_STR(h, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7");
    sha256_ni_remove();
}

static void test_same_digests_as_mbedtls(void)
{
    if (!sha256_ni_available()) {
        printf("  (no SHA instructions on this CPU: nothing to compare)\n");
        return;
    }
    static unsigned char msg[4096];
    srand(7);
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (unsigned char)rand();
    int bad = 0;
    for (size_t n = 0; n <= 300 && !bad; n++) {
        unsigned char want[32], got[32];
        sha256_ni_remove();
        mbedtls_sha256(msg, n, want, 0);
        sha256_ni_install();
        mbedtls_sha256(msg, n, got, 0);
        if (memcmp(want, got, 32) != 0) {
            fprintf(stderr, "  length %zu differs\n", n);
            bad = 1;
        }
    }
    /* the whole buffer in random pieces (several blocks per update too) */
    for (int round = 0; round < 200 && !bad; round++) {
        unsigned char want[32], got[32];
        sha256_ni_remove();
        mbedtls_sha256(msg, sizeof msg, want, 0);
        sha256_ni_install();
        mbedtls_sha256_context c;
        mbedtls_sha256_init(&c);
        mbedtls_sha256_starts(&c, 0);
        for (size_t off = 0; off < sizeof msg;) {
            size_t k = (size_t)rand() % 400;
            if (k > sizeof msg - off)
                k = sizeof msg - off;
            mbedtls_sha256_update(&c, msg + off, k);
            off += k;
        }
        mbedtls_sha256_finish(&c, got);
        mbedtls_sha256_free(&c);
        if (memcmp(want, got, 32) != 0) {
            fprintf(stderr, "  round %d differs\n", round);
            bad = 1;
        }
    }
    sha256_ni_remove();
    CHECK(!bad);
}

static void do_nothing(uint32_t state[8], const unsigned char *data, size_t blocks)
{
    (void)state, (void)data, (void)blocks;
}

/* mbedTLS's blocks do go through the hook: one that does nothing changes
 * the digest (so the tests above cannot pass on mbedTLS's own code). */
static void test_the_hook_is_in_the_path(void)
{
    unsigned char with[32], without[32];
    mbedtls_sha256((const unsigned char *)"abc", 3, without, 0);
    mbedtls_sha256_blocks_hook = do_nothing;
    mbedtls_sha256((const unsigned char *)"abc", 3, with, 0);
    mbedtls_sha256_blocks_hook = NULL;
    CHECK(memcmp(with, without, 32) != 0);
}

UNIT_MAIN("sha256_ni", UNIT_CASE(test_the_hook_is_in_the_path), UNIT_CASE(test_fips_180_examples), UNIT_CASE(test_same_digests_as_mbedtls))
