/* test_memcopy — mem_copy against a byte loop: every length up to 1100
 * bytes at every alignment pair, nothing written outside the target, and
 * forward copies to a lower overlapping address (musl's memmove uses the
 * copy for those). */
#include "memcopy.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 64
#define MAX_LEN 1100

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static unsigned char rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned char)rng_state;
}

static void test_every_length_and_alignment(void)
{
    static unsigned char src[MAX_LEN + 2 * GUARD], dst[MAX_LEN + 2 * GUARD], want[MAX_LEN + 2 * GUARD];
    int bad = 0;
    for (size_t n = 0; n <= MAX_LEN && !bad; n += n < 300 ? 1 : 7)
        for (size_t sa = 0; sa < 16 && !bad; sa++)
            for (size_t da = 0; da < 16 && !bad; da++) {
                for (size_t i = 0; i < sizeof src; i++) src[i] = rnd(), dst[i] = want[i] = rnd();
                for (size_t i = 0; i < n; i++) want[GUARD + da + i] = src[GUARD + sa + i];
                void *r = mem_copy(dst + GUARD + da, src + GUARD + sa, n);
                if (r != dst + GUARD + da || memcmp(dst, want, sizeof dst) != 0) {
                    fprintf(stderr, "  n=%zu src+%zu dst+%zu\n", n, sa, da);
                    bad = 1;
                }
            }
    CHECK(!bad);
}

static void test_forward_overlap_like_memmove(void)
{
    static unsigned char buf[MAX_LEN + 64], want[MAX_LEN + 64];
    int bad = 0;
    for (size_t n = 1; n <= MAX_LEN - 40 && !bad; n += n < 300 ? 1 : 5)
        for (size_t gap = 1; gap <= 40 && !bad; gap++) {
            for (size_t i = 0; i < sizeof buf; i++) buf[i] = want[i] = rnd();
            for (size_t i = 0; i < n; i++) want[3 + i] = want[3 + gap + i]; /* byte by byte, forward */
            mem_copy(buf + 3, buf + 3 + gap, n);
            if (memcmp(buf, want, sizeof buf) != 0) {
                fprintf(stderr, "  n=%zu gap=%zu\n", n, gap);
                bad = 1;
            }
        }
    CHECK(!bad);
}

/* memmove in both directions still agrees with a byte loop where this
 * build's memcpy is mem_copy (musl's memmove goes through it). */
static void test_memmove_both_ways(void)
{
    static unsigned char buf[2048], want[2048];
    int bad = 0;
    for (int round = 0; round < 20000 && !bad; round++) {
        size_t n = rnd() | (size_t)(rnd() & 3) << 8, a = rnd() % 512, b = rnd() % 512;
        for (size_t i = 0; i < sizeof buf; i++) buf[i] = want[i] = rnd();
        unsigned char tmp[1024];
        for (size_t i = 0; i < n; i++) tmp[i] = want[a + i];
        for (size_t i = 0; i < n; i++) want[b + i] = tmp[i];
        memmove(buf + b, buf + a, n);
        if (memcmp(buf, want, sizeof buf) != 0) {
            fprintf(stderr, "  n=%zu from %zu to %zu\n", n, a, b);
            bad = 1;
        }
    }
    CHECK(!bad);
}

UNIT_MAIN("memcopy", UNIT_CASE(test_every_length_and_alignment), UNIT_CASE(test_forward_overlap_like_memmove),
          UNIT_CASE(test_memmove_both_ways))
