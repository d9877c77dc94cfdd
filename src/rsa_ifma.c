/* rsa_ifma — the two CRT exponentiations of RSA-2048 at once on AVX-512
 * IFMA (rsa_ifma.h says what and why).
 *
 * Numbers are 20 digits of 52 bits in three 8-lane vectors (24 lanes, the
 * top 4 zero).  amm2 is an "almost Montgomery" product, R = 2^1040, for two
 * independent (modulus, operands) pairs in one loop so that their latency
 * chains overlap: per digit b[i] of the second operand,
 *   A += lo52(a * b[i]); u = A[0] * -m^-1 mod 2^52; A += lo52(m * u);
 *   A >>= one digit (lane 0 is 0 mod 2^52: its carry goes into the new
 *   lane 0); A += hi52(a * b[i]) + hi52(m * u).
 * Lanes collect at most 4 * 20 * 2^52 + carries < 2^64, and for operands
 * < 2m with 4m < R the result is < 2m; it is brought back to 52-bit digits
 * by one vector carry round and a carry-ripple by mask arithmetic.  The
 * loop bounds are constants; the table entry for a window is chosen by
 * masked moves over all entries; no branch or address depends on a secret.
 */
#include "rsa_ifma.h"

#include "cpu.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define IF_TARGET __attribute__((target("avx512f,avx512ifma")))
/* The three vectors of a number stay in registers only if these loops are
 * unrolled (at -O2 they were not, and went through the stack: 2x slower). */
#define RM_UNROLL3 _Pragma("GCC unroll 3")
#define DIGITS 20
#define LANES 24
#define MASK52 ((UINT64_C(1) << 52) - 1)
#define WINDOW RSA_IFMA_WINDOW
#define TABLE (1 << WINDOW)

/* 16 limbs of 64 bits -> 20 digits of 52 (24 lanes). */
static void to52(uint64_t *d, const uint64_t *x)
{
    memset(d, 0, LANES * sizeof(uint64_t));
    for (int j = 0; j < DIGITS; j++) {
        int bit = 52 * j, li = bit / 64, sh = bit % 64;
        uint64_t v = li < 16 ? x[li] >> sh : 0;
        if (sh > 12 && li + 1 < 16) v |= x[li + 1] << (64 - sh);
        d[j] = v & MASK52;
    }
}

/* 20 digits (< 2m) -> 16 limbs, reduced below m by one masked subtraction. */
static void to64(uint64_t *x, const uint64_t *d, const uint64_t *m)
{
    uint64_t t[17] = {0};
    for (int j = 0; j < DIGITS; j++) {
        int bit = 52 * j, li = bit / 64, sh = bit % 64;
        t[li] |= d[j] << sh;
        if (sh > 12) t[li + 1] |= d[j] >> (64 - sh);
    }
    uint64_t s[16], borrow = 0;
    for (int j = 0; j < 16; j++) {
        unsigned __int128 z = (unsigned __int128)t[j] - m[j] - borrow;
        s[j] = (uint64_t)z;
        borrow = (uint64_t)(z >> 64) & 1;
    }
    /* t >= m unless the subtraction borrowed past the 17th limb */
    uint64_t keep = (uint64_t)0 - (borrow & (t[16] ^ 1));
    __asm__("" : "+r"(keep));
    for (int j = 0; j < 16; j++) x[j] = (t[j] & keep) | (s[j] & ~keep);
}

IF_TARGET static void normalize(__m512i *A)
{
    const __m512i mask = _mm512_set1_epi64((long long)MASK52), zero = _mm512_setzero_si512();
    __m512i c0 = _mm512_srli_epi64(A[0], 52), c1 = _mm512_srli_epi64(A[1], 52), c2 = _mm512_srli_epi64(A[2], 52);
    A[0] = _mm512_add_epi64(_mm512_and_si512(A[0], mask), _mm512_alignr_epi64(c0, zero, 7));
    A[1] = _mm512_add_epi64(_mm512_and_si512(A[1], mask), _mm512_alignr_epi64(c1, c0, 7));
    A[2] = _mm512_add_epi64(_mm512_and_si512(A[2], mask), _mm512_alignr_epi64(c2, c1, 7));
    /* now every lane is < 2^53: carries of 0 or 1, which ripple through
     * lanes equal to 2^52 - 1: (generated << 1) + propagating, as bits */
    uint32_t g = 0, p = 0;
    RM_UNROLL3 for (int v = 0; v < 3; v++) {
        g |= (uint32_t)_mm512_test_epi64_mask(A[v], _mm512_set1_epi64((long long)(UINT64_C(1) << 52))) << (8 * v);
        A[v] = _mm512_and_si512(A[v], mask);
        p |= (uint32_t)_mm512_cmpeq_epi64_mask(A[v], mask) << (8 * v);
    }
    uint32_t inc = ((g << 1) + p) ^ p;
    const __m512i one = _mm512_set1_epi64(1);
    RM_UNROLL3 for (int v = 0; v < 3; v++)
        A[v] = _mm512_and_si512(_mm512_mask_add_epi64(A[v], (__mmask8)(inc >> (8 * v)), A[v], one), mask);
}

/* r1 = a1*b1/R mod m1 and r2 = a2*b2/R mod m2 (< 2m each), normalized. */
IF_TARGET static void amm2(uint64_t *r1, const uint64_t *a1, const uint64_t *b1, const struct rsa_ifma_mod *m1,
                           uint64_t *r2, const uint64_t *a2, const uint64_t *b2, const struct rsa_ifma_mod *m2)
{
    __m512i A1[3], A2[3], X1[3], X2[3], M1[3], M2[3];
    const __m512i zero = _mm512_setzero_si512();
    RM_UNROLL3 for (int v = 0; v < 3; v++) {
        A1[v] = A2[v] = zero;
        X1[v] = _mm512_loadu_si512(a1 + 8 * v);
        X2[v] = _mm512_loadu_si512(a2 + 8 * v);
        M1[v] = _mm512_loadu_si512(m1->m52 + 8 * v);
        M2[v] = _mm512_loadu_si512(m2->m52 + 8 * v);
    }
    const uint64_t k1 = m1->k52, k2 = m2->k52, n1 = m1->m52[0], n2 = m2->m52[0];
    for (int i = 0; i < DIGITS; i++) {
        /* the products are made fresh and added, so that the accumulator's
         * chain is additions and the shift, not multiply-adds */
        __m512i B1 = _mm512_set1_epi64((long long)b1[i]), B2 = _mm512_set1_epi64((long long)b2[i]);
        __m512i H1[3], H2[3];
        RM_UNROLL3 for (int v = 0; v < 3; v++) {
            A1[v] = _mm512_add_epi64(A1[v], _mm512_madd52lo_epu64(zero, X1[v], B1));
            A2[v] = _mm512_add_epi64(A2[v], _mm512_madd52lo_epu64(zero, X2[v], B2));
            H1[v] = _mm512_madd52hi_epu64(zero, X1[v], B1);
            H2[v] = _mm512_madd52hi_epu64(zero, X2[v], B2);
        }
        uint64_t s1 = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(A1[0]));
        uint64_t s2 = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(A2[0]));
        uint64_t u1 = (s1 * k1) & MASK52, u2 = (s2 * k2) & MASK52;
        uint64_t c1 = (s1 + ((n1 * u1) & MASK52)) >> 52, c2 = (s2 + ((n2 * u2) & MASK52)) >> 52;
        __m512i U1 = _mm512_set1_epi64((long long)u1), U2 = _mm512_set1_epi64((long long)u2);
        RM_UNROLL3 for (int v = 0; v < 3; v++) {
            A1[v] = _mm512_madd52lo_epu64(A1[v], M1[v], U1);
            A2[v] = _mm512_madd52lo_epu64(A2[v], M2[v], U2);
            H1[v] = _mm512_madd52hi_epu64(H1[v], M1[v], U1);
            H2[v] = _mm512_madd52hi_epu64(H2[v], M2[v], U2);
        }
        A1[0] = _mm512_add_epi64(_mm512_alignr_epi64(A1[1], A1[0], 1), H1[0]);
        A1[1] = _mm512_add_epi64(_mm512_alignr_epi64(A1[2], A1[1], 1), H1[1]);
        A1[2] = _mm512_add_epi64(_mm512_alignr_epi64(zero, A1[2], 1), H1[2]);
        A2[0] = _mm512_add_epi64(_mm512_alignr_epi64(A2[1], A2[0], 1), H2[0]);
        A2[1] = _mm512_add_epi64(_mm512_alignr_epi64(A2[2], A2[1], 1), H2[1]);
        A2[2] = _mm512_add_epi64(_mm512_alignr_epi64(zero, A2[2], 1), H2[2]);
        A1[0] = _mm512_mask_add_epi64(A1[0], 1, A1[0], _mm512_set1_epi64((long long)c1));
        A2[0] = _mm512_mask_add_epi64(A2[0], 1, A2[0], _mm512_set1_epi64((long long)c2));
    }
    normalize(A1);
    normalize(A2);
    RM_UNROLL3 for (int v = 0; v < 3; v++) {
        _mm512_storeu_si512(r1 + 8 * v, A1[v]);
        _mm512_storeu_si512(r2 + 8 * v, A2[v]);
    }
}

/* r = table[idx] (LANES words each), reading every entry. */
IF_TARGET static void select52(uint64_t *r, const uint64_t *table, uint64_t idx)
{
    __m512i R[3] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    const __m512i want = _mm512_set1_epi64((long long)idx);
    for (int i = 0; i < TABLE; i++) {
        __mmask8 k = _mm512_cmpeq_epi64_mask(_mm512_set1_epi64(i), want);
        RM_UNROLL3 for (int v = 0; v < 3; v++)
            R[v] = _mm512_mask_mov_epi64(R[v], k, _mm512_loadu_si512(table + i * LANES + 8 * v));
    }
    RM_UNROLL3 for (int v = 0; v < 3; v++) _mm512_storeu_si512(r + 8 * v, R[v]);
}

static uint64_t window_at(const uint64_t *exp, int pos)
{
    int li = pos / 64, sh = pos % 64;
    uint64_t v = exp[li] >> sh;
    if (sh + WINDOW > 64 && li + 1 < 17) v |= exp[li + 1] << (64 - sh);
    return v & (TABLE - 1);
}

struct ifma_work {
    uint64_t tp[TABLE * LANES], tq[TABLE * LANES];
    uint64_t xp[LANES], xq[LANES], ap[LANES], aq[LANES], yp[LANES], yq[LANES], one[LANES];
};
_Static_assert(sizeof(struct ifma_work) == RSA_IFMA_WORK_BYTES, "RSA_IFMA_WORK_BYTES");

IF_TARGET void rsa_ifma_exp2(uint64_t *rp, uint64_t *rq, const uint64_t *xp, const uint64_t *xq,
                             const uint64_t *ep, const uint64_t *eq, int ebits, const struct rsa_ifma_mod *p,
                             const struct rsa_ifma_mod *q, void *work)
{
    struct ifma_work *w = work;
    memset(w->one, 0, sizeof w->one);
    w->one[0] = 1;
    to52(w->ap, xp);
    to52(w->aq, xq);
    /* into Montgomery form: x * R^2 / R; table[0] = R mod m = R^2 * 1 / R */
    amm2(w->xp, w->ap, p->rr52, p, w->xq, w->aq, q->rr52, q);
    amm2(w->tp, p->rr52, w->one, p, w->tq, q->rr52, w->one, q);
    memcpy(w->tp + LANES, w->xp, sizeof w->xp);
    memcpy(w->tq + LANES, w->xq, sizeof w->xq);
    for (int i = 2; i < TABLE; i++)
        amm2(w->tp + i * LANES, w->tp + (i - 1) * LANES, w->xp, p, w->tq + i * LANES, w->tq + (i - 1) * LANES,
             w->xq, q);
    int nwin = (ebits + WINDOW - 1) / WINDOW;
    select52(w->ap, w->tp, window_at(ep, (nwin - 1) * WINDOW));
    select52(w->aq, w->tq, window_at(eq, (nwin - 1) * WINDOW));
    for (int win = nwin - 2; win >= 0; win--) {
        for (int s = 0; s < WINDOW; s++) amm2(w->ap, w->ap, w->ap, p, w->aq, w->aq, w->aq, q);
        select52(w->yp, w->tp, window_at(ep, win * WINDOW));
        select52(w->yq, w->tq, window_at(eq, win * WINDOW));
        amm2(w->ap, w->ap, w->yp, p, w->aq, w->aq, w->yq, q);
    }
    amm2(w->yp, w->ap, w->one, p, w->yq, w->aq, w->one, q); /* out of Montgomery form */
    to64(rp, w->yp, p->m);
    to64(rq, w->yq, q->m);
}

void rsa_ifma_mod_setup(struct rsa_ifma_mod *md, const uint64_t *m, uint64_t m0inv, const uint64_t *rr)
{
    memcpy(md->m, m, sizeof md->m);
    to52(md->m52, m);
    md->k52 = m0inv & MASK52;
    to52(md->rr52, rr);
}
#else
void rsa_ifma_exp2(uint64_t *rp, uint64_t *rq, const uint64_t *xp, const uint64_t *xq, const uint64_t *ep,
                   const uint64_t *eq, int ebits, const struct rsa_ifma_mod *p, const struct rsa_ifma_mod *q,
                   void *work)
{
    (void)rp, (void)rq, (void)xp, (void)xq, (void)ep, (void)eq, (void)ebits, (void)p, (void)q, (void)work;
}

void rsa_ifma_mod_setup(struct rsa_ifma_mod *md, const uint64_t *m, uint64_t m0inv, const uint64_t *rr)
{
    (void)md, (void)m, (void)m0inv, (void)rr;
}
#endif

int rsa_ifma_available(void)
{
    return cpu_has(CPU_AVX512F | CPU_AVX512IFMA);
}
