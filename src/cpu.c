/*
 * cpu — see cpu.h.
 */
#include "cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

/* XCR0 bits the kernel sets when it saves that state: SSE (1), AVX (2),
 * opmask (5), the upper halves of ZMM0-15 (6) and ZMM16-31 (7). */
#define XCR0_AVX512_STATE 0xe6u

static unsigned xcr0(void)
{
    unsigned lo, hi;
    /* volatile: it faults without OSXSAVE, so it stays behind the test */
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

unsigned cpu_features(void)
{
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (c & (1u << 9)) f |= CPU_SSSE3;
    if (c & (1u << 19)) f |= CPU_SSE41;
    bool os_zmm = (c & (1u << 27)) /* OSXSAVE: XGETBV may run */
                  && (xcr0() & XCR0_AVX512_STATE) == XCR0_AVX512_STATE;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return f;
    if (b & (1u << 29)) f |= CPU_SHA;
    if (b & (1u << 8)) f |= CPU_BMI2;
    if (b & (1u << 19)) f |= CPU_ADX;
    if (os_zmm && (b & (1u << 16))) f |= CPU_AVX512F;
    if (os_zmm && (b & (1u << 21))) f |= CPU_AVX512IFMA;
    return f;
}

#else

unsigned cpu_features(void)
{
    return 0;
}

#endif

bool cpu_has(unsigned want)
{
    return (cpu_features() & want) == want;
}
