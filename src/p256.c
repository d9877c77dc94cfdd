/*
 * p256.c — constant-time P-256 ECDSA signing (see p256.h).
 *
 * Numbers are 4 little-endian 64-bit limbs.  Field elements and scalars
 * live in Montgomery form (x·2^256 mod m) while being computed on; points
 * are projective (X:Y:Z), Y^2·Z = X^3 - 3·X·Z^2 + b·Z^3, with (0:1:0) the
 * point at infinity.
 */
#include "p256.h"

#include <mbedtls/ecdsa.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

typedef unsigned __int128 u128;
typedef uint64_t limbs[4];

/* A modulus: m, -m^-1 mod 2^64 and 2^512 mod m (to enter Montgomery form). */
struct modulus {
    limbs m;
    uint64_t m0inv;
    limbs rr;
};

static const struct modulus P = {
    {0xffffffffffffffff, 0x00000000ffffffff, 0x0000000000000000, 0xffffffff00000001},
    0x1,
    {0x0000000000000003, 0xfffffffbffffffff, 0xfffffffffffffffe, 0x00000004fffffffd},
};
static const struct modulus N = {
    {0xf3b9cac2fc632551, 0xbce6faada7179e84, 0xffffffffffffffff, 0xffffffff00000000},
    0xccd1c8aaee00bc4f,
    {0x83244c95be79eea2, 0x4699799c49bd6fa6, 0x2845b2392b6bec59, 0x66e12d94f3d95620},
};

/* The curve's b and base point G (SEC 2), as plain numbers. */
static const limbs CURVE_B = {0x3bce3c3e27d2604b, 0x651d06b0cc53b0f6, 0xb3ebbd55769886bc,
                              0x5ac635d8aa3a93e7};
static const limbs GX = {0xf4a13945d898c296, 0x77037d812deb33a0, 0xf8bce6e563a440f2, 0x6b17d1f2e12c4247};
static const limbs GY = {0xcbb6406837bf51f5, 0x2bce33576b315ece, 0x8ee7eb4a7c0f9e16, 0x4fe342e2fe1a7f9b};

/* P256_PUBLIC(x) — x (a flag) is public from here on: whether a key is
 * valid, whether an RFC 6979 candidate k is below n, whether r or s is 0.
 * These are the only branches on values computed from secrets; the
 * constant-time check (test/tools/p256_ct.c under valgrind) defines it to
 * tell memcheck, which reports any other branch or memory index that
 * depends on the key or the nonce. */
#ifndef P256_PUBLIC
#define P256_PUBLIC(x) (x)
#endif

/* value_barrier — keep the compiler from turning mask arithmetic back
 * into a branch. */
static inline uint64_t value_barrier(uint64_t x)
{
    __asm__("" : "+r"(x));
    return x;
}

/* mask_eq — all ones when a == b, else 0. */
static inline uint64_t mask_eq(uint64_t a, uint64_t b)
{
    uint64_t x = a ^ b;
    return value_barrier(0 - ((~x & (x - 1)) >> 63));
}

/* cmov — r = mask ? a : r, limb by limb. */
static inline void cmov(uint64_t *r, const uint64_t *a, size_t n, uint64_t mask)
{
    for (size_t i = 0; i < n; i++) r[i] ^= mask & (r[i] ^ a[i]);
}

static void from_bytes(limbs r, const uint8_t b[P256_BYTES])
{
    for (int i = 0; i < 4; i++) {
        uint64_t w = 0;
        for (int j = 0; j < 8; j++) w = w << 8 | b[(3 - i) * 8 + j];
        r[i] = w;
    }
}

static void to_bytes(uint8_t b[P256_BYTES], const limbs a)
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) b[(3 - i) * 8 + j] = (uint8_t)(a[i] >> (56 - 8 * j));
}

/* sub4 — r = a - b; the borrow out (0 or 1). */
static inline uint64_t sub4(limbs r, const limbs a, const limbs b)
{
    uint64_t borrow = 0;
    for (int i = 0; i < 4; i++) {
        u128 d = (u128)a[i] - b[i] - borrow;
        r[i] = (uint64_t)d;
        borrow = (uint64_t)(d >> 64) & 1;
    }
    return borrow;
}

/* mask_lt — all ones when a < b (constant-time). */
static uint64_t mask_lt(const limbs a, const limbs b)
{
    limbs t;
    return value_barrier(0 - sub4(t, a, b));
}

static uint64_t mask_zero(const limbs a)
{
    return mask_eq(a[0] | a[1] | a[2] | a[3], 0);
}

/* mod_add — r = a + b mod m (a, b < m). */
static inline void mod_add(limbs r, const limbs a, const limbs b, const struct modulus *M)
{
    limbs s, d;
    uint64_t carry = 0;
    for (int i = 0; i < 4; i++) {
        u128 t = (u128)a[i] + b[i] + carry;
        s[i] = (uint64_t)t;
        carry = (uint64_t)(t >> 64);
    }
    uint64_t borrow = sub4(d, s, M->m);
    /* keep s when the sum fits in 256 bits and is below m */
    uint64_t keep = value_barrier(0 - (borrow & (carry ^ 1)));
    cmov(d, s, 4, keep);
    memcpy(r, d, sizeof d);
}

/* mod_sub — r = a - b mod m (a, b < m). */
static inline void mod_sub(limbs r, const limbs a, const limbs b, const struct modulus *M)
{
    limbs d;
    uint64_t mask = value_barrier(0 - sub4(d, a, b)), carry = 0;
    for (int i = 0; i < 4; i++) {
        u128 t = (u128)d[i] + (M->m[i] & mask) + carry;
        d[i] = (uint64_t)t;
        carry = (uint64_t)(t >> 64);
    }
    memcpy(r, d, sizeof d);
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* mul_wide — t = a·b, 512 bits. */
ALWAYS_INLINE void mul_wide(uint64_t t[8], const limbs a, const limbs b)
{
    memset(t, 0, 8 * sizeof t[0]);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        uint64_t carry = 0;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            u128 x = (u128)a[j] * b[i] + t[i + j] + carry;
            t[i + j] = (uint64_t)x;
            carry = (uint64_t)(x >> 64);
        }
        t[i + 4] = carry;
    }
}

/* sqr_wide — t = a², 512 bits: the six cross products once, doubled,
 * plus the four squares. */
ALWAYS_INLINE void sqr_wide(uint64_t t[8], const limbs a)
{
    memset(t, 0, 8 * sizeof t[0]);
#pragma GCC unroll 3
    for (int i = 0; i < 3; i++) {
        uint64_t carry = 0;
#pragma GCC unroll 3
        for (int j = i + 1; j < 4; j++) {
            u128 x = (u128)a[i] * a[j] + t[i + j] + carry;
            t[i + j] = (uint64_t)x;
            carry = (uint64_t)(x >> 64);
        }
        t[i + 4] = carry;
    }
    t[7] = t[6] >> 63;
#pragma GCC unroll 6
    for (int i = 6; i > 0; i--) t[i] = t[i] << 1 | t[i - 1] >> 63;
    t[0] <<= 1;
    uint64_t carry = 0;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u128 sq = (u128)a[i] * a[i];
        u128 x = (u128)t[2 * i] + (uint64_t)sq + carry;
        t[2 * i] = (uint64_t)x;
        x = (u128)t[2 * i + 1] + (uint64_t)(sq >> 64) + (uint64_t)(x >> 64);
        t[2 * i + 1] = (uint64_t)x;
        carry = (uint64_t)(x >> 64);
    }
}

/* mont_reduce — r = t·2^-256 mod m for t < m·2^256 (Montgomery
 * reduction, one limb at a time); always inlined where the modulus is a
 * constant the compiler folds in (for p: m0inv = 1, a zero limb). */
ALWAYS_INLINE void mont_reduce(limbs r, uint64_t t[8], const struct modulus *M)
{
    uint64_t hi = 0;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        uint64_t q = t[i] * M->m0inv, carry = 0;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            u128 x = (u128)q * M->m[j] + t[i + j] + carry;
            t[i + j] = (uint64_t)x;
            carry = (uint64_t)(x >> 64);
        }
        u128 x = (u128)t[i + 4] + carry + hi;
        t[i + 4] = (uint64_t)x;
        hi = (uint64_t)(x >> 64);
    }
    /* t[4..7] + hi·2^256 < 2m: subtract m unless that borrows */
    limbs d;
    uint64_t borrow = sub4(d, t + 4, M->m);
    uint64_t keep = value_barrier(0 - (borrow & (hi ^ 1)));
    cmov(d, t + 4, 4, keep);
    memcpy(r, d, sizeof d);
}

static void mont_mul_p(limbs r, const limbs a, const limbs b)
{
    uint64_t t[8];
    mul_wide(t, a, b);
    mont_reduce(r, t, &P);
}

static void mont_sqr_p(limbs r, const limbs a)
{
    uint64_t t[8];
    sqr_wide(t, a);
    mont_reduce(r, t, &P);
}

static void mont_mul_n(limbs r, const limbs a, const limbs b)
{
    uint64_t t[8];
    mul_wide(t, a, b);
    mont_reduce(r, t, &N);
}

static void mont_sqr_n(limbs r, const limbs a)
{
    uint64_t t[8];
    sqr_wide(t, a);
    mont_reduce(r, t, &N);
}

/* mont_mul, mont_sqr — a·b·2^-256 and a²·2^-256 mod m (a, b < m). */
static inline void mont_mul(limbs r, const limbs a, const limbs b, const struct modulus *M)
{
    if (M == &P)
        mont_mul_p(r, a, b);
    else
        mont_mul_n(r, a, b);
}

static inline void mont_sqr(limbs r, const limbs a, const struct modulus *M)
{
    if (M == &P)
        mont_sqr_p(r, a);
    else
        mont_sqr_n(r, a);
}

static void to_mont(limbs r, const limbs a, const struct modulus *M)
{
    mont_mul(r, a, M->rr, M);
}

static void from_mont(limbs r, const limbs a, const struct modulus *M)
{
    static const limbs one = {1, 0, 0, 0};
    mont_mul(r, a, one, M);
}

/* mod_pow — r = a^e (Montgomery form) with a 4-bit fixed window; e is
 * public (p-2 or n-2), the base may be secret. */
static void mod_pow(limbs r, const limbs a, const limbs e, const struct modulus *M)
{
    static const limbs one = {1, 0, 0, 0};
    limbs w[16], acc;
    to_mont(w[0], one, M);
    memcpy(w[1], a, sizeof w[1]);
    for (int i = 2; i < 16; i++) mont_mul(w[i], w[i - 1], a, M);
    memcpy(acc, w[0], sizeof acc);
    for (int i = 63; i >= 0; i--) {
        for (int j = 0; j < 4; j++) mont_sqr(acc, acc, M);
        unsigned nib = (unsigned)(e[i / 16] >> (4 * (i % 16))) & 15;
        mont_mul(acc, acc, w[nib], M);
    }
    memcpy(r, acc, sizeof acc);
    mbedtls_platform_zeroize(w, sizeof w);
    mbedtls_platform_zeroize(acc, sizeof acc);
}

/* sqr_n_mul — r = a^(2^k) · b (Montgomery form mod p). */
static void sqr_n_mul(limbs r, const limbs a, int k, const limbs b)
{
    limbs t;
    memcpy(t, a, sizeof t);
    for (int i = 0; i < k; i++) mont_sqr_p(t, t);
    mont_mul_p(r, t, b);
}

/* mod_inv — r = a^-1 (Montgomery form; 0 for 0) by Fermat: a^(m-2).  For
 * p an addition chain (255 squarings, 12 products): p-2 is, from the top,
 * 32 ones, 31 zeros and a one, 128 zeros with 32 ones at the end, 32
 * ones, 30 ones, then 01.  x_k below is a^(2^k - 1). */
static void mod_inv(limbs r, const limbs a, const struct modulus *M)
{
    if (M == &N) {
        static const limbs two = {2, 0, 0, 0};
        limbs e;
        sub4(e, M->m, two);
        mod_pow(r, a, e, M);
        return;
    }
    limbs x2, x3, x6, x12, x15, x30, x32, t;
    sqr_n_mul(x2, a, 1, a);
    sqr_n_mul(x3, x2, 1, a);
    sqr_n_mul(x6, x3, 3, x3);
    sqr_n_mul(x12, x6, 6, x6);
    sqr_n_mul(x15, x12, 3, x3);
    sqr_n_mul(x30, x15, 15, x15);
    sqr_n_mul(x32, x30, 2, x2);
    sqr_n_mul(t, x32, 32, a);
    sqr_n_mul(t, t, 128, x32);
    sqr_n_mul(t, t, 32, x32);
    sqr_n_mul(t, t, 30, x30);
    sqr_n_mul(r, t, 2, a);
    mbedtls_platform_zeroize(x2, sizeof x2);
    mbedtls_platform_zeroize(x3, sizeof x3);
    mbedtls_platform_zeroize(x6, sizeof x6);
    mbedtls_platform_zeroize(x12, sizeof x12);
    mbedtls_platform_zeroize(x15, sizeof x15);
    mbedtls_platform_zeroize(x30, sizeof x30);
    mbedtls_platform_zeroize(x32, sizeof x32);
    mbedtls_platform_zeroize(t, sizeof t);
}

/* --- points ------------------------------------------------------------ */

struct point {
    limbs x, y, z;
};
struct affine {
    limbs x, y;
};

static limbs b_mont, one_mont;

/* point_add — r = p + q, complete for every pair of points (Renes,
 * Costello, Batina, "Complete addition formulas for prime order elliptic
 * curves", algorithm 4, a = -3).  With q_affine set, q.z is 1 and its
 * product is skipped (q must then not be the point at infinity). */
static void point_add(struct point *r, const struct point *p, const struct point *q, int q_affine)
{
    const struct modulus *M = &P;
    limbs t0, t1, t2, t3, t4, x3, y3, z3;
    mont_mul(t0, p->x, q->x, M);
    mont_mul(t1, p->y, q->y, M);
    if (q_affine)
        memcpy(t2, p->z, sizeof t2);
    else
        mont_mul(t2, p->z, q->z, M);
    mod_add(t3, p->x, p->y, M);
    mod_add(t4, q->x, q->y, M);
    mont_mul(t3, t3, t4, M);
    mod_add(t4, t0, t1, M);
    mod_sub(t3, t3, t4, M); /* X1·Y2 + X2·Y1 */
    mod_add(t4, p->y, p->z, M);
    mod_add(x3, q->y, q->z, M);
    mont_mul(t4, t4, x3, M);
    mod_add(x3, t1, t2, M);
    mod_sub(t4, t4, x3, M); /* Y1·Z2 + Y2·Z1 */
    mod_add(x3, p->x, p->z, M);
    mod_add(y3, q->x, q->z, M);
    mont_mul(x3, x3, y3, M);
    mod_add(y3, t0, t2, M);
    mod_sub(y3, x3, y3, M); /* X1·Z2 + X2·Z1 */
    mont_mul(z3, b_mont, t2, M);
    mod_sub(x3, y3, z3, M);
    mod_add(z3, x3, x3, M);
    mod_add(x3, x3, z3, M);
    mod_sub(z3, t1, x3, M);
    mod_add(x3, t1, x3, M);
    mont_mul(y3, b_mont, y3, M);
    mod_add(t1, t2, t2, M);
    mod_add(t2, t1, t2, M);
    mod_sub(y3, y3, t2, M);
    mod_sub(y3, y3, t0, M);
    mod_add(t1, y3, y3, M);
    mod_add(y3, t1, y3, M);
    mod_add(t1, t0, t0, M);
    mod_add(t0, t1, t0, M);
    mod_sub(t0, t0, t2, M);
    mont_mul(t1, t4, y3, M);
    mont_mul(t2, t0, y3, M);
    mont_mul(y3, x3, z3, M);
    mod_add(y3, y3, t2, M);
    mont_mul(x3, t3, x3, M);
    mod_sub(x3, x3, t1, M);
    mont_mul(z3, t4, z3, M);
    mont_mul(t1, t3, t0, M);
    mod_add(z3, z3, t1, M);
    memcpy(r->x, x3, sizeof x3);
    memcpy(r->y, y3, sizeof y3);
    memcpy(r->z, z3, sizeof z3);
}

/* to_affine — (x, y) of p in Montgomery form (p not at infinity). */
static void to_affine(struct affine *a, const struct point *p)
{
    limbs zi;
    mod_inv(zi, p->z, &P);
    mont_mul(a->x, p->x, zi, &P);
    mont_mul(a->y, p->y, zi, &P);
    mbedtls_platform_zeroize(zi, sizeof zi); /* 1/Z of k·G: derived from the nonce */
}

/* The fixed-base table: table[i][j] = (j+1)·2^(W·i)·G for the WINDOWS
 * windows of W bits that cover 257 bits (a 256-bit scalar and the carry
 * of its signed recoding), j < 2^(W-1).  W = 5: 52 × 16 affine points,
 * 53 KB; a wider window trades fewer additions for longer scans. */
#define W 5
#define ROW (1 << (W - 1))
#define WINDOWS ((257 + W - 1) / W)
static struct affine table[WINDOWS][ROW];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    static const limbs one = {1, 0, 0, 0};
    to_mont(one_mont, one, &P);
    to_mont(b_mont, CURVE_B, &P);
    struct point base, acc;
    to_mont(base.x, GX, &P);
    to_mont(base.y, GY, &P);
    memcpy(base.z, one_mont, sizeof base.z);
    for (int i = 0; i < WINDOWS; i++) {
        acc = base;
        for (int j = 0; j < ROW; j++) {
            if (j > 0) point_add(&acc, &acc, &base, 0);
            to_affine(&table[i][j], &acc);
        }
        /* the next window's base: 2^W·base = 2·(2^(W-1)·base) */
        struct affine a;
        point_add(&base, &acc, &acc, 0);
        to_affine(&a, &base);
        memcpy(base.x, a.x, sizeof base.x);
        memcpy(base.y, a.y, sizeof base.y);
        memcpy(base.z, one_mont, sizeof base.z);
    }
}

void p256_init(void)
{
    pthread_once(&table_once, build_table);
}

/* bits — W bits of k from bit position pos (public), 0 beyond bit 255. */
static uint64_t bits(const limbs k, int pos)
{
    int l = pos / 64, o = pos % 64;
    uint64_t v = l < 4 ? k[l] >> o : 0;
    if (o > 64 - W && l + 1 < 4) v |= k[l + 1] << (64 - o);
    return v & ((1u << W) - 1);
}

/* recode — k < 2^256 as WINDOWS signed digits d_i in [-2^(W-1), 2^(W-1)]
 * with k = sum d_i·2^(W·i), without a branch. */
static void recode(int8_t digit[WINDOWS], const limbs k)
{
    uint64_t carry = 0;
    for (int i = 0; i < WINDOWS; i++) {
        uint64_t d = bits(k, W * i) + carry;
        carry = (d + ROW - 1) >> W; /* d > 2^(W-1): take 2^W off, carry one */
        digit[i] = (int8_t)((int64_t)d - (int64_t)(carry << W));
    }
}

/* base_mul — r = k·G, k a plain scalar in [0, n): signed W-bit digits
 * d_i in [-2^(W-1), 2^(W-1)] with k = sum d_i·2^(W·i), one table row per
 * digit, the entry picked by scanning the whole row with masks and
 * negated with a mask. */
static void base_mul(struct point *r, const limbs k)
{
    int8_t digit[WINDOWS];
    recode(digit, k);

    struct point acc = {{0}, {0}, {0}};
    memcpy(acc.y, one_mont, sizeof acc.y);
    for (int i = 0; i < WINDOWS; i++) {
        uint64_t sign = value_barrier(0 - (uint64_t)((uint8_t)digit[i] >> 7));
        uint64_t abs = ((uint64_t)(int64_t)digit[i] ^ sign) - sign;
        struct affine sel;
        memset(&sel, 0, sizeof sel);
        for (uint64_t j = 0; j < ROW; j++)
            cmov((uint64_t *)&sel, (const uint64_t *)&table[i][j], 8, mask_eq(abs, j + 1));
        limbs neg;
        mod_sub(neg, (const uint64_t[4]){0, 0, 0, 0}, sel.y, &P);
        cmov(sel.y, neg, 4, sign);
        struct point q, sum;
        memcpy(q.x, sel.x, sizeof q.x);
        memcpy(q.y, sel.y, sizeof q.y);
        memcpy(q.z, one_mont, sizeof q.z);
        point_add(&sum, &acc, &q, 1);
        cmov((uint64_t *)&acc, (const uint64_t *)&sum, 12, ~mask_eq(abs, 0));
        /* neg is -y of the picked (public) table entry: it names the digit */
        mbedtls_platform_zeroize(neg, sizeof neg);
        mbedtls_platform_zeroize(&sel, sizeof sel);
        mbedtls_platform_zeroize(&q, sizeof q);
        mbedtls_platform_zeroize(&sum, sizeof sum);
    }
    *r = acc;
    mbedtls_platform_zeroize(&acc, sizeof acc);
    mbedtls_platform_zeroize(digit, sizeof digit);
}

/* scalar_ok — 1 when 1 <= k < n (a public answer), else 0. */
static int scalar_ok(const limbs k)
{
    return (int)P256_PUBLIC((mask_lt(k, N.m) & ~mask_zero(k)) & 1);
}

int p256_public_key(const uint8_t priv[P256_BYTES], uint8_t pub[1 + 2 * P256_BYTES])
{
    p256_init();
    limbs k, x, y;
    from_bytes(k, priv);
    if (!scalar_ok(k)) {
        mbedtls_platform_zeroize(k, sizeof k);
        memset(pub, 0, 1 + 2 * P256_BYTES);
        return -1;
    }
    struct point R;
    struct affine A;
    base_mul(&R, k);
    to_affine(&A, &R);
    from_mont(x, A.x, &P);
    from_mont(y, A.y, &P);
    pub[0] = 0x04;
    to_bytes(pub + 1, x);
    to_bytes(pub + 1 + P256_BYTES, y);
    mbedtls_platform_zeroize(k, sizeof k);
    mbedtls_platform_zeroize(&R, sizeof R);
    mbedtls_platform_zeroize(&A, sizeof A);
    return 0;
}

/* --- ECDH: k·P for a peer's point ---------------------------------------- */

/* var_mul — r = k·P (k plain in [1, n), P affine, Montgomery form): a
 * table of 1..16·P (projective), then from the top digit down 5 doublings
 * and one addition of the entry picked with masks, as in base_mul.  The
 * complete formulas double as well (no special case to hide). */
static void var_mul(struct point *r, const limbs k, const struct affine *pa)
{
    struct point tab[ROW], acc, q, sum;
    int8_t digit[WINDOWS];
    memcpy(tab[0].x, pa->x, sizeof tab[0].x);
    memcpy(tab[0].y, pa->y, sizeof tab[0].y);
    memcpy(tab[0].z, one_mont, sizeof tab[0].z);
    for (int j = 1; j < ROW; j++) point_add(&tab[j], &tab[j - 1], &tab[0], 1);
    recode(digit, k);
    memset(&acc, 0, sizeof acc);
    memcpy(acc.y, one_mont, sizeof acc.y);
    for (int i = WINDOWS - 1; i >= 0; i--) {
        for (int j = 0; j < W; j++) point_add(&acc, &acc, &acc, 0);
        uint64_t sign = value_barrier(0 - (uint64_t)((uint8_t)digit[i] >> 7));
        uint64_t abs = ((uint64_t)(int64_t)digit[i] ^ sign) - sign;
        memset(&q, 0, sizeof q);
        for (uint64_t j = 0; j < ROW; j++) cmov((uint64_t *)&q, (const uint64_t *)&tab[j], 12, mask_eq(abs, j + 1));
        limbs neg;
        mod_sub(neg, (const uint64_t[4]){0, 0, 0, 0}, q.y, &P);
        cmov(q.y, neg, 4, sign);
        point_add(&sum, &acc, &q, 0);
        cmov((uint64_t *)&acc, (const uint64_t *)&sum, 12, ~mask_eq(abs, 0));
        mbedtls_platform_zeroize(neg, sizeof neg);
    }
    *r = acc;
    mbedtls_platform_zeroize(tab, sizeof tab);
    mbedtls_platform_zeroize(&acc, sizeof acc);
    mbedtls_platform_zeroize(&q, sizeof q);
    mbedtls_platform_zeroize(&sum, sizeof sum);
    mbedtls_platform_zeroize(digit, sizeof digit);
}

/* read_point — an uncompressed point on the curve (public input: plain
 * branches), into Montgomery form; -1 otherwise. */
static int read_point(struct affine *a, const uint8_t in[1 + 2 * P256_BYTES])
{
    limbs x, y, lhs, rhs, t, three = {3, 0, 0, 0};
    if (in[0] != 0x04) return -1;
    from_bytes(x, in + 1);
    from_bytes(y, in + 1 + P256_BYTES);
    if (!mask_lt(x, P.m) || !mask_lt(y, P.m)) return -1;
    to_mont(a->x, x, &P);
    to_mont(a->y, y, &P);
    /* y² = x³ - 3x + b */
    mont_sqr_p(lhs, a->y);
    mont_sqr_p(rhs, a->x);
    mont_mul_p(rhs, rhs, a->x);
    to_mont(three, three, &P);
    mont_mul_p(t, three, a->x);
    mod_sub(rhs, rhs, t, &P);
    mod_add(rhs, rhs, b_mont, &P);
    return memcmp(lhs, rhs, sizeof lhs) == 0 ? 0 : -1;
}

int p256_ecdh(const uint8_t priv[P256_BYTES], const uint8_t peer[1 + 2 * P256_BYTES], uint8_t shared[P256_BYTES])
{
    p256_init();
    memset(shared, 0, P256_BYTES);
    struct affine pa, ra;
    limbs k, x;
    if (read_point(&pa, peer) != 0) return -1;
    from_bytes(k, priv);
    if (!scalar_ok(k)) {
        mbedtls_platform_zeroize(k, sizeof k);
        return -1;
    }
    struct point R;
    var_mul(&R, k, &pa);
    /* a point of the prime-order curve times k in [1, n) is never at
     * infinity: Z is not 0 */
    to_affine(&ra, &R);
    from_mont(x, ra.x, &P);
    to_bytes(shared, x);
    mbedtls_platform_zeroize(k, sizeof k);
    mbedtls_platform_zeroize(&R, sizeof R);
    mbedtls_platform_zeroize(&ra, sizeof ra);
    mbedtls_platform_zeroize(x, sizeof x);
    return 0;
}

/* --- ECDSA with RFC 6979 nonces ---------------------------------------- */

/* The HMAC_DRBG state of RFC 6979 §3.2 (K, V as long as the hash). */
struct drbg {
    mbedtls_md_context_t md;
    size_t len;
    uint8_t k[MBEDTLS_MD_MAX_SIZE], v[MBEDTLS_MD_MAX_SIZE];
};

/* drbg_hmac — out = HMAC_K(V || [sep] || x || h); sep < 0: none. */
static int drbg_hmac(struct drbg *g, uint8_t *out, int sep, const uint8_t *x, const uint8_t *h)
{
    uint8_t s = (uint8_t)sep;
    int ret = mbedtls_md_hmac_starts(&g->md, g->k, g->len);
    if (!ret) ret = mbedtls_md_hmac_update(&g->md, g->v, g->len);
    if (!ret && sep >= 0) ret = mbedtls_md_hmac_update(&g->md, &s, 1);
    if (!ret && x) ret = mbedtls_md_hmac_update(&g->md, x, P256_BYTES);
    if (!ret && h) ret = mbedtls_md_hmac_update(&g->md, h, P256_BYTES);
    if (!ret) ret = mbedtls_md_hmac_finish(&g->md, out);
    return ret;
}

/* drbg_update — K = HMAC_K(V || sep || x || h), V = HMAC_K(V). */
static int drbg_update(struct drbg *g, int sep, const uint8_t *x, const uint8_t *h)
{
    if (drbg_hmac(g, g->k, sep, x, h) != 0) return -1;
    return drbg_hmac(g, g->v, -1, NULL, NULL) ? -1 : 0;
}

/* drbg_next — the next candidate: V = HMAC_K(V) until 256 bits are out. */
static int drbg_next(struct drbg *g, uint8_t t[P256_BYTES])
{
    size_t have = 0;
    while (have < P256_BYTES) {
        if (drbg_hmac(g, g->v, -1, NULL, NULL) != 0) return -1;
        size_t n = g->len < P256_BYTES - have ? g->len : P256_BYTES - have;
        memcpy(t + have, g->v, n);
        have += n;
    }
    return 0;
}

/* sign_with — (r, s) for the nonce k (plain, in [1, n)); -1 when r or s
 * comes out 0.  d and h are Montgomery form mod n. */
static int sign_with(const limbs k, const limbs dm, const limbs hm, limbs r, limbs s)
{
    struct point R;
    struct affine A;
    limbs x, km, kinv, t;
    base_mul(&R, k);
    to_affine(&A, &R);
    from_mont(x, A.x, &P);
    /* r = x mod n: x < p < 2n */
    limbs xr;
    uint64_t borrow = sub4(xr, x, N.m);
    cmov(xr, x, 4, value_barrier(0 - borrow));
    memcpy(r, xr, sizeof xr);
    /* s = k^-1 · (h + r·d) mod n */
    to_mont(t, xr, &N);
    mont_mul(t, t, dm, &N);
    mod_add(t, t, hm, &N);
    to_mont(km, k, &N);
    mod_inv(kinv, km, &N);
    mont_mul(t, t, kinv, &N);
    from_mont(s, t, &N);
    int bad = (int)(mask_zero(r) | mask_zero(s)) & 1;
    mbedtls_platform_zeroize(&R, sizeof R);
    mbedtls_platform_zeroize(&A, sizeof A);
    mbedtls_platform_zeroize(km, sizeof km);
    mbedtls_platform_zeroize(kinv, sizeof kinv);
    mbedtls_platform_zeroize(t, sizeof t);
    return P256_PUBLIC(bad) ? -1 : 0;
}

int p256_ecdsa_sign(const uint8_t priv[P256_BYTES], const uint8_t *hash, size_t hlen, int md,
                    uint8_t r_out[P256_BYTES], uint8_t s_out[P256_BYTES])
{
    p256_init();
    memset(r_out, 0, P256_BYTES);
    memset(s_out, 0, P256_BYTES);
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type((mbedtls_md_type_t)md);
    if (!info || (hlen && !hash)) return -1;
    limbs d, h, dm, hm, k, r, s;
    from_bytes(d, priv);
    if (!scalar_ok(d)) {
        mbedtls_platform_zeroize(d, sizeof d);
        return -1;
    }
    /* h: the leftmost 256 bits of the hash (SEC1 4.1.3 step 5), mod n */
    uint8_t hb[P256_BYTES] = {0};
    size_t use = hlen < P256_BYTES ? hlen : P256_BYTES;
    if (use) memcpy(hb + P256_BYTES - use, hash, use);
    from_bytes(h, hb);
    limbs hr;
    uint64_t below = value_barrier(0 - sub4(hr, h, N.m));
    cmov(h, hr, 4, ~below);
    to_bytes(hb, h);

    struct drbg g;
    memset(&g, 0, sizeof g);
    mbedtls_md_init(&g.md);
    int ret = -1;
    uint8_t t[P256_BYTES];
    if (mbedtls_md_setup(&g.md, info, 1) != 0) goto out;
    g.len = mbedtls_md_get_size(info);
    memset(g.v, 0x01, g.len);
    memset(g.k, 0x00, g.len);
    if (drbg_update(&g, 0x00, priv, hb) || drbg_update(&g, 0x01, priv, hb)) goto out;
    to_mont(dm, d, &N);
    to_mont(hm, h, &N);
    /* RFC 6979 §3.2 h: each failed candidate steps the DRBG on */
    for (int tries = 0; tries < 64; tries++) {
        if (drbg_next(&g, t) != 0) goto out;
        from_bytes(k, t);
        if (scalar_ok(k) && sign_with(k, dm, hm, r, s) == 0) {
            to_bytes(r_out, r);
            to_bytes(s_out, s);
            ret = 0;
            break;
        }
        if (drbg_update(&g, 0x00, NULL, NULL) != 0) goto out;
    }
out:
    mbedtls_md_free(&g.md);
    mbedtls_platform_zeroize(&g, sizeof g);
    mbedtls_platform_zeroize(t, sizeof t);
    mbedtls_platform_zeroize(d, sizeof d);
    mbedtls_platform_zeroize(dm, sizeof dm);
    mbedtls_platform_zeroize(k, sizeof k);
    mbedtls_platform_zeroize(hb, sizeof hb);
    return ret;
}

/* --- the mbedTLS hook ---------------------------------------------------- */

static atomic_ulong sign_count;

static int hook_sign(const unsigned char d[32], const unsigned char *hash, size_t hlen, int md_alg,
                     unsigned char r[32], unsigned char s[32])
{
    int ret = p256_ecdsa_sign(d, hash, hlen, md_alg, r, s);
    if (ret == 0) atomic_fetch_add(&sign_count, 1);
    return ret;
}

void p256_mbedtls_hook_install(void)
{
    p256_init();
    mbedtls_ecdsa_sign_det_p256_hook = hook_sign;
}

void p256_mbedtls_hook_remove(void)
{
    mbedtls_ecdsa_sign_det_p256_hook = NULL;
}

unsigned long p256_sign_count(void)
{
    return atomic_load(&sign_count);
}

/* --- test entry points --------------------------------------------------- */

int p256_mod(int mod, int op, const uint8_t a_in[P256_BYTES], const uint8_t b_in[P256_BYTES],
             uint8_t out[P256_BYTES])
{
    const struct modulus *M = mod == P256_MOD_P ? &P : mod == P256_MOD_N ? &N : NULL;
    limbs a, b, am, bm, r;
    from_bytes(a, a_in);
    from_bytes(b, b_in);
    memset(out, 0, P256_BYTES);
    if (!M || !mask_lt(a, M->m) || !mask_lt(b, M->m)) return -1;
    to_mont(am, a, M);
    to_mont(bm, b, M);
    switch (op) {
    case '+': mod_add(r, am, bm, M); break;
    case '-': mod_sub(r, am, bm, M); break;
    case '*': mont_mul(r, am, bm, M); break;
    case 'i': mod_inv(r, am, M); break;
    default: return -1;
    }
    from_mont(r, r, M);
    to_bytes(out, r);
    return 0;
}
