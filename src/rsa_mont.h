/*
 * rsa_mont — the RSA private operation (m = c^d mod N) of mbedTLS's
 * mbedtls_rsa_private, on our own Montgomery arithmetic.
 *
 * Why: with an RSA-2048 certificate every TLS handshake signs once, and
 * mbedTLS 3.6's generic bignum code takes about 1.7-2.3 ms of CPU for it
 * (OpenSSL 0.27 ms); its options (window size, CRT, blinding) were measured
 * and exhausted (vendor/mbedtls_config.h).
 *
 * Numbers (RSA-2048 private operation, CPU per operation on the 2-CPU
 * Xeon of README's Benchmark, 1-minute load 8-11 from other sessions;
 * README "TLS handshake crypto" has tlsbench and handshake_cpu): IFMA path
 * ~0.39 ms, MULX rows ~0.85 ms, portable C ~1.5 ms, mbedTLS 2.3 ms.
 * Window 5 against 6: IFMA 381-406 us against 401-413, MULX 857-900
 * against 913-936 (the squarings are the same 1,056; 6 trades 36 fewer
 * multiplications for 32 more table entries).  RSA-4096: 5.7 ms against
 * 15.5.
 *
 * How: build.sh applies vendor/mbedtls-rsa-private.patch, which makes
 * mbedtls_rsa_private (library/rsa.c) call rsa_mont_private first, once
 * mbedTLS has checked the context; RSA_MONT_DECLINED sends it on to
 * mbedTLS's own code, unchanged.  Padding (PKCS#1 v1.5, PSS) stays
 * mbedTLS's.  The library is built with MRS_RSA_MONT_ENABLED
 * (vendor/mbedtls_config.h); the reference is weak, so a program that does
 * not link rsa_mont.o keeps mbedTLS's code, and the Makefile makes every
 * program it links pull rsa_mont.o in (-Wl,--undefined=rsa_mont_private).
 *
 * Keys taken: p and q of the same length, a multiple of 64 bits from 512 to
 * 2048 (RSA-1024 to RSA-4096 as every generator makes them), e odd and at
 * most 64 bits, DP, DQ and QP no wider than p (a key file may hold them
 * unreduced).  Anything else is declined.  Per key, once (a cache of
 * RM_SLOTS (8) slots keyed by the whole of N and e, under a mutex; the
 * least recently used idle slot is wiped and reused): the limbs of p, q,
 * dp, dq, q^-1 mod p and N, their Montgomery constants, and the blinding
 * pair.
 *
 * Per operation, the countermeasures mbedTLS has:
 *  - base blinding: c * Vi mod N before, * Vf after, Vi = Vf^-e; the pair
 *    is kept per key and squared for each use under the cache mutex, as
 *    mbedTLS does in its context;
 *  - exponent blinding: dp + (p - 1) * r with a fresh 32-bit r per half
 *    (mbedTLS: 28 bits);
 *  - the fault check: the result raised to e mod N must give the blinded
 *    input back, else MBEDTLS_ERR_RSA_VERIFY_FAILED and no output (a wrong
 *    CRT half would reveal a factor of N: the Bellcore attack).
 *
 * Three paths for the exponentiations, picked once by CPUID
 * (RSA_MONT_PATH_*): RSA-2048 runs both CRT halves at once on AVX-512 IFMA
 * (rsa_ifma.h); else 16- and 32-limb moduli use rows of MULX with the ADCX
 * and ADOX carry chains (inline assembly, a dedicated squaring for 16
 * limbs); else portable C: 64-bit limbs with unsigned __int128 products,
 * Montgomery multiplication and a dedicated squaring.  Blinding, Garner and
 * the check use the MULX rows or the C.
 * Constant time: a final subtraction by mask; a fixed window of 5 bits over
 * every bit of the (blinded) exponent, the table entry chosen by reading
 * all entries under a mask; Garner's recombination with masked
 * corrections; no branch or address depends on a secret.  Secrets are
 * wiped: the working memory (heap: session threads have small stacks), a
 * band of stack below the call, a cache slot before reuse.
 *
 * Tested by test/unit/test_rsa_mont.c (a known answer made with openssl,
 * 500 random inputs on each of two interleaved keys against mbedTLS's own
 * code on the fastest path, 150 on each slower path, RSA-1024/3072/4096,
 * 0 / 1 / N-1 / N, an injected fault caught, a declined key, two threads),
 * test/fuzz/fuzz_rsa_mont.c (differential, every path) and
 * test/integration/test_tls.py (openssl s_client verifies the PSS and
 * PKCS#1 v1.5 signatures of mrs's handshakes, RSA-2048 and RSA-4096).
 *
 * This header is also compiled into mbedTLS: mbedTLS types only.
 */
#ifndef MRS_RSA_MONT_H
#define MRS_RSA_MONT_H

#include "mbedtls/rsa.h"

/* The answer of rsa_mont_private for a key (or a moment) it does not take:
 * mbedTLS's own code runs.  Not an mbedTLS error code (those are < 0). */
#define RSA_MONT_DECLINED 1

/* rsa_mont_private — output = input^d mod N (len bytes each, big-endian,
 * len = mbedtls_rsa_get_len(ctx)) for ctx's private key, or
 * RSA_MONT_DECLINED.  Otherwise returns mbedTLS's answer for the same call:
 * 0, or the error mbedtls_rsa_private returns (input >= N,
 * MBEDTLS_ERR_RSA_VERIFY_FAILED for a fault, RNG failure); output is
 * written only on success.  f_rng gives the blinding values.  Thread-safe. */
int rsa_mont_private(mbedtls_rsa_context *ctx, int (*f_rng)(void *, unsigned char *, size_t), void *p_rng,
                     const unsigned char *input, unsigned char *output);

/* For tests: rsa_mont_set_enabled(0) declines everything (mbedTLS's own
 * code runs); rsa_mont_test_fault(1) corrupts the p half of every
 * operation, which the fault check must catch; rsa_mont_test_path(path)
 * uses that path (RSA_MONT_PATH_*; at most the fastest the CPU has) and
 * returns the fastest the CPU has; rsa_mont_count() is the number of
 * operations done here since start. */
#define RSA_MONT_PATH_C 0    /* portable C */
#define RSA_MONT_PATH_MULX 1 /* RSA-2048: MULX/ADX rows (x86-64 with BMI2, ADX) */
#define RSA_MONT_PATH_IFMA 2 /* RSA-2048: the exponentiations on AVX-512 IFMA */
void rsa_mont_set_enabled(int on);
void rsa_mont_test_fault(int on);
int rsa_mont_test_path(int path);
unsigned long rsa_mont_count(void);

#endif
