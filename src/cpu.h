/*
 * cpu — which x86-64 instruction-set extensions this CPU (and, for
 * AVX-512, the kernel) lets mrs's fast paths use: the SHA-256 blocks
 * (sha256_ni.c), the MULX rows of the RSA Montgomery products
 * (rsa_mont.c) and the AVX-512 IFMA exponentiation (rsa_ifma.c).
 *
 * Read from CPUID leaves 1 and 7.0; the AVX-512 bits only count when
 * XGETBV says the kernel saves the opmask and ZMM registers on a context
 * switch (a kernel that does not would corrupt them between threads).
 * Other architectures: no bit.  Tests: test/unit/test_cpu.c (the bits
 * against the kernel's own list in /proc/cpuinfo).
 */
#ifndef MRS_CPU_H
#define MRS_CPU_H

#include <stdbool.h>

enum cpu_feature {
    CPU_SSSE3 = 1u << 0,
    CPU_SSE41 = 1u << 1,
    CPU_SHA = 1u << 2,
    CPU_BMI2 = 1u << 3,
    CPU_ADX = 1u << 4,
    CPU_AVX512F = 1u << 5,
    CPU_AVX512IFMA = 1u << 6,
};

/* cpu_features — the CPU_* bits this machine runs, probed on every call
 * (CPUID is a serialising instruction: callers ask when they pick a path,
 * never per operation). */
unsigned cpu_features(void);

/* cpu_has — whether every bit of `want` (CPU_* bits or-ed) is there. */
bool cpu_has(unsigned want);

#endif
