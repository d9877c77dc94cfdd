/*
 * sha256_ni — see sha256_ni.h.
 *
 * The instructions keep the eight working variables in two registers,
 * ABEF and CDGH (A in the top lane); SHA256RNDS2 does two rounds and
 * SHA256MSG1/MSG2 the message schedule, four words at a time.
 */
#include "sha256_ni.h"

#include "cpu.h"

#include <mbedtls/sha256.h>

#if defined(__x86_64__)
#include <immintrin.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

__attribute__((target("sha,ssse3,sse4.1"))) void sha256_ni_blocks(uint32_t state[8],
                                                                  const unsigned char *data,
                                                                  size_t blocks)
{
    /* the bytes of each 32-bit word reversed: the message is big-endian */
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    /* registers named by their 32-bit lanes from the top down */
    __m128i dcba = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xb1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1b);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xf0);

    for (; blocks > 0; blocks--, data += 64) {
        __m128i abef_in = abef, cdgh_in = cdgh, m[4];
        for (int i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), swap);
        for (int g = 0; g < 16; g++) {
            __m128i *w = &m[g % 4];
            if (g >= 4) {
                /* W[t..t+3] from W[t-16..t-13] (w), W[t-12..t-9],
                 * W[t-8..t-5] and W[t-4..t-1] */
                __m128i t7 = _mm_alignr_epi8(m[(g + 3) % 4], m[(g + 2) % 4], 4); /* W[t-7..t-4] */
                *w = _mm_sha256msg1_epu32(*w, m[(g + 1) % 4]);
                *w = _mm_add_epi32(*w, t7);
                *w = _mm_sha256msg2_epu32(*w, m[(g + 3) % 4]);
            }
            __m128i wk = _mm_add_epi32(*w, _mm_loadu_si128((const __m128i *)&K[4 * g]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0e));
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
    }

    /* lanes named from the top down, as above */
    __m128i feba = _mm_shuffle_epi32(abef, 0x1b);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xb1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xf0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

#else

void sha256_ni_blocks(uint32_t state[8], const unsigned char *data, size_t blocks)
{
    (void)state, (void)data, (void)blocks;
}

#endif

bool sha256_ni_available(void)
{
    return cpu_has(CPU_SHA | CPU_SSSE3 | CPU_SSE41);
}

bool sha256_ni_install(void)
{
    if (!sha256_ni_available())
        return false;
    mbedtls_sha256_blocks_hook = sha256_ni_blocks;
    return true;
}

void sha256_ni_remove(void)
{
    mbedtls_sha256_blocks_hook = NULL;
}
