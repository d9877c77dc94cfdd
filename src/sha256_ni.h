/*
 * sha256_ni — SHA-256's compression function on the x86 SHA extensions,
 * for mbedTLS (vendor/mbedtls-sha256-blocks.patch adds the hook).
 *
 * mbedTLS 3.6 has SHA-256 instructions for Arm only; on x86 its C code
 * took about 4,000 instructions a block.  A TLS handshake signed with
 * ECDSA P-256 hashes about 30 blocks (the RFC 6979 nonce's HMAC_DRBG, the
 * signed content), DKIM signing hashes every body.  With the instructions
 * a block is a few hundred cycles.
 *
 * sha256_ni_install() sets the hook when CPUID reports SHA, SSSE3 and
 * SSE4.1; otherwise mbedTLS keeps its own code.  Tests:
 * test/unit/test_sha256_ni.c (FIPS 180-2 vectors, and every length up to
 * 300 bytes and split updates with the hook against mbedTLS without it).
 */
#ifndef MRS_SHA256_NI_H
#define MRS_SHA256_NI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* sha256_ni_available — whether this CPU has the instructions. */
bool sha256_ni_available(void);

/* sha256_ni_install — hand mbedTLS's SHA-256 blocks to sha256_ni_blocks
 * when available (true) ; sha256_ni_remove puts mbedTLS's code back.
 * Call before other threads hash. */
bool sha256_ni_install(void);
void sha256_ni_remove(void);

/* sha256_ni_blocks — compress `blocks` 64-byte blocks into state (only
 * where sha256_ni_available()). */
void sha256_ni_blocks(uint32_t state[8], const unsigned char *data, size_t blocks);

#endif
