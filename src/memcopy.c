/*
 * memcopy — the static musl build's memcpy (see memcopy.h).
 *
 * musl's x86_64 memcpy moves the bytes before an 8-byte boundary and after
 * the last whole word one `movsb` at a time and the rest with `rep movsq`,
 * whose start-up alone costs tens of cycles.  Most copies here are short
 * (a log field, a reply line, a line of a message, a TLS record header):
 * a profile at 32 sessions put about 4% of all of mrs's CPU in memcpy.
 * Short copies below are a few overlapping loads and stores; long ones
 * keep `rep movsq`.
 *
 * Every load of a step happens before its stores, and the blocks go from
 * the front, so a copy to a lower, overlapping address is correct: musl's
 * memmove calls __memcpy_fwd for exactly that case.
 */
#include "memcopy.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <emmintrin.h>

typedef uint64_t u64_unaligned __attribute__((aligned(1), may_alias));
typedef uint32_t u32_unaligned __attribute__((aligned(1), may_alias));
typedef uint16_t u16_unaligned __attribute__((aligned(1), may_alias));

static inline __m128i load16(const unsigned char *p) { return _mm_loadu_si128((const __m128i *)p); }
static inline void store16(unsigned char *p, __m128i v) { _mm_storeu_si128((__m128i *)p, v); }

/* Long copies use `rep movsq`: the last 8 bytes are read first and written
 * last, so the words need not cover an odd tail. */
#define MEMCOPY_LOOP_MAX 256

/* GCC must not turn the block loop back into a call to memcpy, which is
 * this function in the musl build (clang builds link glibc's memcpy).  No
 * stack protector either: musl copies the thread-local area with memcpy
 * before the canary it reads there exists. */
#if defined(__GNUC__) && !defined(__clang__)
#define NOT_INTO_MEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns"), no_stack_protector))
#else
#define NOT_INTO_MEMCPY __attribute__((no_stack_protector))
#endif

NOT_INTO_MEMCPY void *mem_copy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n <= 16) {
        if (n >= 8) {
            uint64_t a = *(const u64_unaligned *)s, b = *(const u64_unaligned *)(s + n - 8);
            *(u64_unaligned *)d = a;
            *(u64_unaligned *)(d + n - 8) = b;
        } else if (n >= 4) {
            uint32_t a = *(const u32_unaligned *)s, b = *(const u32_unaligned *)(s + n - 4);
            *(u32_unaligned *)d = a;
            *(u32_unaligned *)(d + n - 4) = b;
        } else if (n >= 2) {
            uint16_t a = *(const u16_unaligned *)s, b = *(const u16_unaligned *)(s + n - 2);
            *(u16_unaligned *)d = a;
            *(u16_unaligned *)(d + n - 2) = b;
        } else if (n == 1) {
            d[0] = s[0];
        }
        return dst;
    }
    if (n <= 32) {
        __m128i a = load16(s), b = load16(s + n - 16);
        store16(d, a);
        store16(d + n - 16, b);
        return dst;
    }
    if (n <= 64) {
        __m128i a = load16(s), b = load16(s + 16), c = load16(s + n - 32), e = load16(s + n - 16);
        store16(d, a);
        store16(d + 16, b);
        store16(d + n - 32, c);
        store16(d + n - 16, e);
        return dst;
    }
    if (n <= MEMCOPY_LOOP_MAX) {
        /* 32-byte blocks from the front; the last 32 bytes, read first,
         * are written last over whatever the blocks left short */
        __m128i t0 = load16(s + n - 32), t1 = load16(s + n - 16);
        for (size_t i = 0; i + 32 < n; i += 32) {
            __m128i a = load16(s + i), b = load16(s + i + 16);
            store16(d + i, a);
            store16(d + i + 16, b);
        }
        store16(d + n - 32, t0);
        store16(d + n - 16, t1);
        return dst;
    }
    uint64_t tail = *(const u64_unaligned *)(s + n - 8);
    size_t words = n / 8;
    unsigned char *dp = d;
    const unsigned char *sp = s;
    __asm__ volatile("rep movsq" : "+D"(dp), "+S"(sp), "+c"(words) : : "memory");
    *(u64_unaligned *)(d + n - 8) = tail;
    return dst;
}

#else

/* elsewhere: a plain forward copy (no libc function is replaced there) */
void *mem_copy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) d[i] = s[i];
    return dst;
}

#endif

#if MEMCOPY_REPLACES_LIBC
/* musl's memmove calls __memcpy_fwd for a copy to a lower address; this
 * file defining both keeps libc's memcpy object out of the link. */
void *__memcpy_fwd(void *dst, const void *src, size_t n);

void *memcpy(void *restrict dst, const void *restrict src, size_t n) { return mem_copy(dst, src, n); }

void *__memcpy_fwd(void *dst, const void *src, size_t n) { return mem_copy(dst, src, n); }
#endif
