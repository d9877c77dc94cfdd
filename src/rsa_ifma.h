/*
 * rsa_ifma — the two CRT halves of an RSA-2048 private operation (1024-bit
 * primes) exponentiated at once with AVX-512 IFMA (52-bit multiply-add on
 * eight lanes), for rsa_mont.c on the CPUs that have it (Ice Lake and later
 * Intel servers, Zen 4).  Why: the MULX rows of rsa_mont.c are bound by one
 * 64-bit multiplier; IFMA does eight 52-bit products per instruction, and
 * the two halves are independent, so each hides the other's latency.
 * rsa_mont.c keeps everything else (blinding, Garner, the fault check) and
 * the tests compare this path with the others and with mbedTLS
 * (test_rsa_mont, fuzz_rsa_mont).  Constant time: rsa_ifma.c's header.
 */
#ifndef MRS_RSA_IFMA_H
#define MRS_RSA_IFMA_H

#include <stdint.h>

/* One 1024-bit odd modulus: m (16 limbs of 64 bits), its 52-bit digits,
 * -m^-1 mod 2^52 and (2^1040)^2 mod m in 52-bit digits. */
struct rsa_ifma_mod {
    uint64_t m[16], m52[24], rr52[24], k52;
};

/* The window: 5 bits (6 measured slower: rsa_mont.h). */
#define RSA_IFMA_WINDOW 5
/* Bytes of working memory rsa_ifma_exp2 needs (two tables of 2^window
 * entries of 24 words, 7 numbers). */
#define RSA_IFMA_WORK_BYTES ((2 * (1 << RSA_IFMA_WINDOW) * 24 + 7 * 24) * 8)

/* rsa_ifma_available — 1 when the CPU and the OS run AVX-512 IFMA. */
int rsa_ifma_available(void);

/* rsa_ifma_mod_setup — md for modulus m with m0inv = -m^-1 mod 2^64 and
 * rr = 2^2080 mod m (16 limbs each). */
void rsa_ifma_mod_setup(struct rsa_ifma_mod *md, const uint64_t *m, uint64_t m0inv, const uint64_t *rr);

/* rsa_ifma_exp2 — rp = xp^ep mod p and rq = xq^eq mod q (16 limbs, normal
 * form, xp < p, xq < q); ep and eq have 17 limbs of which the low ebits
 * bits are used, every one of them.  work: RSA_IFMA_WORK_BYTES, which the
 * caller wipes. */
void rsa_ifma_exp2(uint64_t *rp, uint64_t *rq, const uint64_t *xp, const uint64_t *xq, const uint64_t *ep,
                   const uint64_t *eq, int ebits, const struct rsa_ifma_mod *p, const struct rsa_ifma_mod *q,
                   void *work);

#endif
