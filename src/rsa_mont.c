/* rsa_mont — the RSA private operation (CRT, Montgomery, fixed window) that
 * mbedtls_rsa_private hands to us.  What, why and how it is tested: the
 * header.  Layout: limb arithmetic, exponentiation, the per-key cache, the
 * private operation. */
#include "rsa_mont.h"
#include "cpu.h"
#include "rsa_ifma.h"

#include <mbedtls/bignum.h>
#include <mbedtls/platform_util.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t limb;
typedef unsigned __int128 dlimb;

#define RM_MIN_K 8                  /* limbs of a prime: 512 bits */
#define RM_MAX_K 32                 /* 2048 bits: 4096-bit keys */
#define RM_MAX_NK (2 * RM_MAX_K)    /* limbs of N */
#define RM_WINDOW 5                 /* bits per window (measured: header) */
#define RM_TABLE (1 << RM_WINDOW)
#define RM_EXP_BLIND_BITS 32        /* exponent blinding: d + (p-1)*r, r < 2^32 */
#define RM_SLOTS 8                  /* keys cached at once */
#define RM_BURN_STACK_BYTES 4096    /* more than our deepest call chain uses */

/* One modulus with its Montgomery constants (R = 2^(64k)). */
struct rm_mod {
    int k;
    limb m0inv;         /* -m^-1 mod 2^64 */
    limb m[RM_MAX_NK];
    limb rr[RM_MAX_NK]; /* R^2 mod m */
    limb one[RM_MAX_NK]; /* R mod m: 1 in Montgomery form */
};

/* A key: N, e, and the CRT half of the private key.  Never moved while
 * refs > 0; its secrets are wiped when the slot is reused. */
struct rm_key {
    int used, refs;
    unsigned long last_use;
    size_t len;                     /* bytes of N */
    unsigned char n_be[RM_MAX_NK * 8]; /* N big-endian, len bytes: the cache key */
    limb e;
    struct rm_mod p, q, n;
    limb dp[RM_MAX_K], dq[RM_MAX_K];
    limb qinv_m[RM_MAX_K];  /* q^-1 mod p, in Montgomery form mod p */
    limb r3_p[RM_MAX_K], r3_q[RM_MAX_K]; /* R^3 mod p, mod q */
    limb vi[RM_MAX_NK], vf[RM_MAX_NK];   /* blinding pair, Montgomery form mod N */
    struct rsa_ifma_mod ip, iq;          /* k = 16: p and q for rsa_ifma.c */
};

static struct rm_key rm_keys[RM_SLOTS];
static unsigned long rm_clock;
static pthread_mutex_t rm_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int rm_off, rm_fault;
static atomic_ulong rm_done;

/* --- limb arithmetic ------------------------------------------------------
 * Every loop bound is a length (public); no branch or index depends on a
 * limb's value. */

/* ct_mask — all ones when bit is 1, else 0; opaque to the optimiser so it
 * cannot turn a select into a branch. */
static inline limb ct_mask(limb bit)
{
    limb m = (limb)0 - bit;
    __asm__("" : "+r"(m));
    return m;
}

/* dst = src, n limbs (n <= the room in dst: every caller's n is a key's
 * k or 2k, at most RM_MAX_NK, against arrays of RM_MAX_NK or more). */
static void copy_limbs(limb *dst, const limb *src, int n)
{
    for (int j = 0; j < n; j++) dst[j] = src[j];
}

/* r = t - m over k limbs; returns the borrow (0 or 1). */
static limb sub_n(limb *r, const limb *t, const limb *m, int k)
{
    limb borrow = 0;
    for (int j = 0; j < k; j++) {
        dlimb z = (dlimb)t[j] - m[j] - borrow;
        r[j] = (limb)z;
        borrow = (limb)(z >> 64) & 1;
    }
    return borrow;
}

/* r = t + m over k limbs; returns the carry. */
static limb add_n(limb *r, const limb *t, const limb *m, int k)
{
    limb carry = 0;
    for (int j = 0; j < k; j++) {
        dlimb z = (dlimb)t[j] + m[j] + carry;
        r[j] = (limb)z;
        carry = (limb)(z >> 64);
    }
    return carry;
}

/* r = mask ? a : b. */
static void select_n(limb *r, const limb *a, const limb *b, limb mask, int k)
{
    for (int j = 0; j < k; j++) r[j] = (a[j] & mask) | (b[j] & ~mask);
}

/* t (2k limbs) = a * b. */
static inline __attribute__((always_inline)) void mul_full(limb *restrict t, const limb *a, const limb *b, int k)
{
    limb carry = 0;
    for (int j = 0; j < k; j++) {
        dlimb z = (dlimb)a[0] * b[j] + carry;
        t[j] = (limb)z;
        carry = (limb)(z >> 64);
    }
    t[k] = carry;
    for (int i = 1; i < k; i++) {
        carry = 0;
        limb ai = a[i];
        for (int j = 0; j < k; j++) {
            dlimb z = (dlimb)ai * b[j] + t[i + j] + carry;
            t[i + j] = (limb)z;
            carry = (limb)(z >> 64);
        }
        t[i + k] = carry;
    }
}

/* t (2k limbs, the cross products) = 2t + the squares a[i]^2 at 2i. */
static inline void double_add_squares(limb *t, const limb *a, int k)
{
    limb top = 0, carry = 0;
    for (int j = 0; j < 2 * k; j++) { /* double */
        limb v = t[j];
        t[j] = (v << 1) | top;
        top = v >> 63;
    }
    for (int i = 0; i < k; i++) { /* add the squares a[i]^2 at 2i */
        dlimb s = (dlimb)a[i] * a[i];
        dlimb z = (dlimb)t[2 * i] + (limb)s + carry;
        t[2 * i] = (limb)z;
        z = (dlimb)t[2 * i + 1] + (limb)(s >> 64) + (limb)(z >> 64);
        t[2 * i + 1] = (limb)z;
        carry = (limb)(z >> 64);
    }
}

/* t (2k limbs) = a^2: the cross products once, doubled, plus the squares. */
static inline __attribute__((always_inline)) void sqr_full(limb *restrict t, const limb *a, int k)
{
    t[0] = 0;
    limb carry = 0;
    for (int j = 1; j < k; j++) {
        dlimb z = (dlimb)a[0] * a[j] + carry;
        t[j] = (limb)z;
        carry = (limb)(z >> 64);
    }
    t[k] = carry;
    for (int i = 1; i < k - 1; i++) {
        carry = 0;
        limb ai = a[i];
        for (int j = i + 1; j < k; j++) {
            dlimb z = (dlimb)ai * a[j] + t[i + j] + carry;
            t[i + j] = (limb)z;
            carry = (limb)(z >> 64);
        }
        t[i + k] = carry;
    }
    t[2 * k - 1] = 0;
    double_add_squares(t, a, k);
}

/* r = t * R^-1 mod m, for t (2k limbs, destroyed) < m*R; r < m. */
static inline __attribute__((always_inline)) void redc(limb *r, limb *restrict t, const struct rm_mod *md, int k)
{
    const limb *m = md->m;
    limb c2 = 0;
    for (int i = 0; i < k; i++) {
        limb u = t[i] * md->m0inv, carry = 0;
        for (int j = 0; j < k; j++) {
            dlimb z = (dlimb)u * m[j] + t[i + j] + carry;
            t[i + j] = (limb)z;
            carry = (limb)(z >> 64);
        }
        dlimb z = (dlimb)t[i + k] + carry + c2;
        t[i + k] = (limb)z;
        c2 = (limb)(z >> 64);
    }
    limb borrow = sub_n(t, t + k, m, k); /* the low half is free now */
    select_n(r, t, t + k, ct_mask(c2 | (borrow ^ 1)), k);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* 16- and 32-limb moduli on x86-64 CPUs with BMI2 and ADX (Broadwell and
 * later, Zen): RM_ROW is one row t[0..L-1] += a[0..L-1] * b with MULX and
 * two independent carry chains (ADCX: the high words, ADOX: the sums),
 * unrolled by the assembler, the carry word returned.  No branch, no
 * secret-dependent address.  Measured: header. */
#define RM_FAST 1
/* t[0..L-1] += a[0..L-1] * b; returns the carry word.  L: a constant. */
#define RM_ROW(t, a, b, L)                                                  \
    __extension__({                                                         \
        limb lo_, h0_ = 0, h1_;                                             \
        __asm__("xorl %k[lo], %k[lo]\n\t" /* CF = OF = 0 */              \
                ".set rm_j, 0\n\t"                                          \
                ".rept %c[n]\n\t"                                           \
                "mulxq rm_j*8(%[ap]), %[lo], %[h1]\n\t"                     \
                "adcxq %[h0], %[lo]\n\t"                                    \
                "adoxq rm_j*8(%[tp]), %[lo]\n\t"                            \
                "movq %[lo], rm_j*8(%[tp])\n\t"                             \
                "movq %[h1], %[h0]\n\t"                                     \
                ".set rm_j, rm_j+1\n\t"                                     \
                ".endr\n\t"                                                 \
                "movl $0, %k[lo]\n\t"                                       \
                "adcxq %[lo], %[h0]\n\t"                                    \
                "adoxq %[lo], %[h0]\n\t"                                    \
                : [lo] "=&r"(lo_), [h0] "+&r"(h0_), [h1] "=&r"(h1_)          \
                : [ap] "r"(a), [tp] "r"(t), "d"(b), [n] "i"(L)               \
                : "cc", "memory");                                          \
        h0_;                                                                \
    })

/* redcK: r = t/R mod m, t (2K limbs) < m*R; mont_mulK: r = a*b/R mod m;
 * for K = 16 (RSA-2048's primes) and 32 (its N, RSA-4096's primes). */
#define RM_DEF_MONT(K)                                                            \
    static void redc##K(limb *r, limb *t, const struct rm_mod *md)               \
    {                                                                             \
        limb c2 = 0;                                                              \
        for (int i = 0; i < (K); i++) {                                           \
            limb carry = RM_ROW(t + i, md->m, t[i] * md->m0inv, K);               \
            dlimb z = (dlimb)t[i + (K)] + carry + c2;                             \
            t[i + (K)] = (limb)z;                                                 \
            c2 = (limb)(z >> 64);                                                 \
        }                                                                         \
        limb borrow = sub_n(t, t + (K), md->m, K);                                \
        select_n(r, t, t + (K), ct_mask(c2 | (borrow ^ 1)), K);                   \
    }                                                                             \
    static void mont_mul##K(limb *r, const limb *a, const limb *b, const struct rm_mod *md) \
    {                                                                             \
        limb t[2 * (K)];                                                          \
        memset(t, 0, (K) * sizeof(limb));                                         \
        for (int i = 0; i < (K); i++) t[i + (K)] = RM_ROW(t + i, b, a[i], K);     \
        redc##K(r, t, md);                                                        \
    }
RM_DEF_MONT(16)
RM_DEF_MONT(32)

/* r = a^2/R mod m, k = 16: the 120 cross products once (rows of 15 down to
 * 1), doubled, plus the 16 squares. */
static void mont_sqr16(limb *r, const limb *a, const struct rm_mod *md)
{
    limb t[32];
    memset(t, 0, sizeof t);
#define RM_SQ_ROW(i) t[(i) + 16] = RM_ROW(t + 2 * (i) + 1, a + (i) + 1, a[i], 15 - (i))
    RM_SQ_ROW(0); RM_SQ_ROW(1); RM_SQ_ROW(2); RM_SQ_ROW(3); RM_SQ_ROW(4);
    RM_SQ_ROW(5); RM_SQ_ROW(6); RM_SQ_ROW(7); RM_SQ_ROW(8); RM_SQ_ROW(9);
    RM_SQ_ROW(10); RM_SQ_ROW(11); RM_SQ_ROW(12); RM_SQ_ROW(13); RM_SQ_ROW(14);
#undef RM_SQ_ROW
    double_add_squares(t, a, 16);
    redc16(r, t, md);
}
#else
#define RM_FAST 0
static void mont_mul16(limb *r, const limb *a, const limb *b, const struct rm_mod *md)
{
    (void)r, (void)a, (void)b, (void)md;
}
static void mont_mul32(limb *r, const limb *a, const limb *b, const struct rm_mod *md)
{
    (void)r, (void)a, (void)b, (void)md;
}
static void mont_sqr16(limb *r, const limb *a, const struct rm_mod *md)
{
    (void)r, (void)a, (void)md;
}
#endif

/* The fastest path the CPU runs (RSA_MONT_PATH_*), or the one a test
 * asked for; -1: not decided yet (rsa_mont_private decides once). */
static atomic_int rm_fast = -1;

static int rm_best_path(void)
{
    if (!RM_FAST || !cpu_has(CPU_BMI2 | CPU_ADX)) return RSA_MONT_PATH_C;
    return rsa_ifma_available() ? RSA_MONT_PATH_IFMA : RSA_MONT_PATH_MULX;
}

/* Montgomery product and square: r = a*b/R, a^2/R mod m (r may alias).
 * 16 and 32 limbs (RSA-2048's primes and N, RSA-4096's primes) use the
 * MULX rows where the CPU has them; the rest, the portable C. */
static void mont_mul(limb *r, const limb *a, const limb *b, const struct rm_mod *md)
{
    if (RM_FAST && atomic_load_explicit(&rm_fast, memory_order_relaxed) >= RSA_MONT_PATH_MULX) {
        if (md->k == 16) {
            mont_mul16(r, a, b, md);
            return;
        }
        if (md->k == 32) {
            mont_mul32(r, a, b, md);
            return;
        }
    }
    limb t[2 * RM_MAX_NK];
    mul_full(t, a, b, md->k);
    redc(r, t, md, md->k);
}

static void mont_sqr(limb *r, const limb *a, const struct rm_mod *md)
{
    if (RM_FAST && atomic_load_explicit(&rm_fast, memory_order_relaxed) >= RSA_MONT_PATH_MULX) {
        if (md->k == 16) {
            mont_sqr16(r, a, md);
            return;
        }
        if (md->k == 32) { /* as a product: the rows of a square vary in length */
            mont_mul32(r, a, a, md);
            return;
        }
    }
    limb t[2 * RM_MAX_NK];
    sqr_full(t, a, md->k);
    redc(r, t, md, md->k);
}

/* r = a mod m, normal form, for a of up to 2k limbs (a < m*R). */
static void mod_reduce(limb *r, const limb *a, int alen, const limb *r3, const struct rm_mod *md)
{
    limb t[2 * RM_MAX_NK] = {0};
    copy_limbs(t, a, alen);
    redc(r, t, md, md->k); /* a/R */
    mont_mul(r, r, r3, md); /* a/R * R^3 / R = a*R: Montgomery form */
}

/* --- exponentiation ---------------------------------------------------- */

/* r = table[idx]: reads every entry, keeps one by mask.  k = 16 gets a
 * copy with constant bounds, which the compiler vectorises. */
static inline __attribute__((always_inline)) void table_select_k(limb *r, const limb *table, limb idx, int k)
{
    memset(r, 0, (size_t)k * sizeof(limb));
    for (limb i = 0; i < RM_TABLE; i++) {
        limb mask = ct_mask(((i ^ idx) - 1) >> 63); /* i ^ idx < 2^63 */
        const limb *e = table + i * (limb)k;
        for (int j = 0; j < k; j++) r[j] |= e[j] & mask;
    }
}

static void table_select(limb *r, const limb *table, limb idx, int k)
{
    if (k == 16)
        table_select_k(r, table, idx, 16);
    else
        table_select_k(r, table, idx, k);
}

/* bits [pos, pos + RM_WINDOW) of exp (elimbs limbs); pos is public. */
static limb window_at(const limb *exp, int elimbs, int pos)
{
    int li = pos / 64, sh = pos % 64;
    limb v = exp[li] >> sh;
    if (sh + RM_WINDOW > 64 && li + 1 < elimbs) v |= exp[li + 1] << (64 - sh);
    return v & (RM_TABLE - 1);
}

/* r = x^exp mod m, all in Montgomery form; ebits bits of exp (elimbs limbs)
 * are used whatever their value.  work: RM_TABLE * k limbs. */
static void exp_mont(limb *r, const limb *x, const limb *exp, int elimbs, int ebits,
                     const struct rm_mod *md, limb *work)
{
    int k = md->k;
    copy_limbs(work, md->one, k);
    copy_limbs(work + k, x, k);
    for (int i = 2; i < RM_TABLE; i++) {
        if (i % 2 == 0)
            mont_sqr(work + i * k, work + (i / 2) * k, md);
        else
            mont_mul(work + i * k, work + (i - 1) * k, x, md);
    }
    int nwin = (ebits + RM_WINDOW - 1) / RM_WINDOW;
    limb y[RM_MAX_K];
    table_select(r, work, window_at(exp, elimbs, (nwin - 1) * RM_WINDOW), k);
    for (int w = nwin - 2; w >= 0; w--) {
        for (int s = 0; s < RM_WINDOW; s++) mont_sqr(r, r, md);
        table_select(y, work, window_at(exp, elimbs, w * RM_WINDOW), k);
        mont_mul(r, r, y, md);
    }
    mbedtls_platform_zeroize(y, sizeof y);
}

/* r = x^e mod N for the public exponent (not secret: plain square and
 * multiply), Montgomery form in and out. */
static void exp_public(limb *r, const limb *x, limb e, const struct rm_mod *md)
{
    int top = 63;
    while (top > 0 && !((e >> top) & 1)) top--;
    copy_limbs(r, x, md->k);
    for (int b = top - 1; b >= 0; b--) {
        mont_sqr(r, r, md);
        if ((e >> b) & 1) mont_mul(r, r, x, md);
    }
}

/* --- key set-up ------------------------------------------------------------ */

static int load_mpi(limb *out, int nlimbs, const mbedtls_mpi *x)
{
    unsigned char b[RM_MAX_NK * 8];
    int ret = mbedtls_mpi_write_binary_le(x, b, (size_t)nlimbs * 8);
    for (int i = 0; ret == 0 && i < nlimbs; i++) {
        limb v = 0;
        for (int j = 7; j >= 0; j--) v = (v << 8) | b[8 * i + j];
        out[i] = v;
    }
    mbedtls_platform_zeroize(b, sizeof b);
    return ret;
}

/* The Montgomery constants of the odd modulus md->m (k limbs, top limb not
 * zero): m0inv by Newton's iteration, R^2 by doubling 1 2*64k times with a
 * constant-time reduction (m is secret for p and q). */
/* x = 2^n mod md->m by doubling 1 n times. */
static void pow2_mod(limb *x, int n, const struct rm_mod *md)
{
    int k = md->k;
    limb s[RM_MAX_NK];
    memset(x, 0, (size_t)k * sizeof(limb));
    x[0] = 1;
    for (int i = 0; i < n; i++) {
        limb top = x[k - 1] >> 63;
        add_n(x, x, x, k);
        limb borrow = sub_n(s, x, md->m, k);
        select_n(x, s, x, ct_mask(top | (borrow ^ 1)), k);
    }
    mbedtls_platform_zeroize(s, sizeof s);
}

static void mod_setup(struct rm_mod *md)
{
    int k = md->k;
    limb inv = 1;
    for (int i = 0; i < 6; i++) inv *= 2 - md->m[0] * inv; /* m^-1 mod 2^64 */
    md->m0inv = (limb)0 - inv;
    pow2_mod(md->one, 64 * k, md);
    pow2_mod(md->rr, 128 * k, md);
}

/* The IFMA constants of a 1024-bit prime (R = 2^1040 there). */
static void ifma_setup(struct rsa_ifma_mod *im, const struct rm_mod *md)
{
    limb rr[RM_MAX_K];
    pow2_mod(rr, 2 * 1040, md);
    rsa_ifma_mod_setup(im, md->m, md->m0inv, rr);
    mbedtls_platform_zeroize(rr, sizeof rr);
}

/* Fills slot s from the key: returns 0, or RSA_MONT_DECLINED for a shape we do
 * not take, or an mbedTLS error. */
static int key_setup(struct rm_key *s, const mbedtls_rsa_context *ctx,
                     int (*f_rng)(void *, unsigned char *, size_t), void *p_rng)
{
    mbedtls_mpi N, P, Q, E, DP, DQ, QP, V, W;
    mbedtls_mpi *all[] = {&N, &P, &Q, &E, &DP, &DQ, &QP, &V, &W};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mbedtls_mpi_init(all[i]);
    int ret = mbedtls_rsa_export(ctx, &N, &P, &Q, NULL, &E);
    if (ret == 0) ret = mbedtls_rsa_export_crt(ctx, &DP, &DQ, &QP);
    size_t pbits = mbedtls_mpi_bitlen(&P);
    int k = (int)(pbits / 64);
    if (ret == 0 && (pbits % 64 != 0 || k < RM_MIN_K || k > RM_MAX_K || mbedtls_mpi_bitlen(&Q) != pbits ||
                     mbedtls_mpi_bitlen(&E) > 64 || mbedtls_mpi_get_bit(&E, 0) != 1 ||
                     mbedtls_rsa_get_len(ctx) != (size_t)k * 16 || mbedtls_mpi_bitlen(&N) <= pbits * 2 - 2 ||
                     /* a key file may hold them unreduced (mbedTLS takes them as they are): they
                      * must fit k limbs */
                     mbedtls_mpi_bitlen(&DP) > pbits || mbedtls_mpi_bitlen(&DQ) > pbits ||
                     mbedtls_mpi_bitlen(&QP) > pbits))
        ret = RSA_MONT_DECLINED;
    if (ret == 0) {
        s->len = (size_t)k * 16;
        s->p.k = s->q.k = k;
        s->n.k = 2 * k;
        limb e1[1] = {0};
        ret = mbedtls_mpi_write_binary(&N, s->n_be, s->len);
        if (ret == 0) ret = load_mpi(e1, 1, &E);
        s->e = e1[0];
        if (ret == 0) ret = load_mpi(s->p.m, k, &P);
        if (ret == 0) ret = load_mpi(s->q.m, k, &Q);
        if (ret == 0) ret = load_mpi(s->n.m, 2 * k, &N);
        if (ret == 0) ret = load_mpi(s->dp, k, &DP);
        if (ret == 0) ret = load_mpi(s->dq, k, &DQ);
    }
    if (ret == 0) {
        mod_setup(&s->p);
        mod_setup(&s->q);
        mod_setup(&s->n);
        if (k == 16) {
            ifma_setup(&s->ip, &s->p);
            ifma_setup(&s->iq, &s->q);
        }
        mont_mul(s->r3_p, s->p.rr, s->p.rr, &s->p);
        mont_mul(s->r3_q, s->q.rr, s->q.rr, &s->q);
        limb qinv[RM_MAX_K];
        ret = load_mpi(qinv, k, &QP);
        mont_mul(s->qinv_m, qinv, s->p.rr, &s->p);
        mbedtls_platform_zeroize(qinv, sizeof qinv);
    }
    /* The blinding pair, as mbedTLS makes it: Vf random and invertible mod
     * N, Vi = Vf^-e mod N; both in Montgomery form mod N. */
    for (int tries = 0; ret == 0; tries++) {
        if (tries == 10) {
            ret = MBEDTLS_ERR_RSA_RNG_FAILED;
            break;
        }
        ret = mbedtls_mpi_fill_random(&V, s->len - 1, f_rng, p_rng);
        if (ret == 0) ret = mbedtls_mpi_inv_mod(&W, &V, &N);
        if (ret == MBEDTLS_ERR_MPI_NOT_ACCEPTABLE) {
            ret = 0;
            continue;
        }
        if (ret == 0) ret = mbedtls_mpi_exp_mod(&W, &W, &E, &N, NULL);
        if (ret == 0) ret = load_mpi(s->vf, 2 * k, &V);
        if (ret == 0) ret = load_mpi(s->vi, 2 * k, &W);
        if (ret == 0) {
            mont_mul(s->vf, s->vf, s->n.rr, &s->n);
            mont_mul(s->vi, s->vi, s->n.rr, &s->n);
        }
        break;
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mbedtls_mpi_free(all[i]);
    return ret;
}

/* --- the cache ---------------------------------------------------------- */

/* key_get — the slot of ctx's key (set up on first use), with refs taken
 * and the blinding pair advanced (squared, as mbedTLS does) into vi / vf;
 * NULL with *ret set when declined or failed.  Two keys share a slot only
 * if N (all of it) and e are equal, and then the private keys are too. */
static struct rm_key *key_get(const mbedtls_rsa_context *ctx, int (*f_rng)(void *, unsigned char *, size_t),
                              void *p_rng, limb *vi, limb *vf, int *ret)
{
    unsigned char n_be[RM_MAX_NK * 8], e_be[8];
    size_t len = mbedtls_rsa_get_len(ctx);
    *ret = RSA_MONT_DECLINED;
    if (len < RM_MIN_K * 16 || len > RM_MAX_K * 16 || len % 16 != 0) return NULL;
    if (mbedtls_rsa_export_raw(ctx, n_be, len, NULL, 0, NULL, 0, NULL, 0, e_be, sizeof e_be) != 0) return NULL;
    limb e = 0;
    for (int i = 0; i < 8; i++) e = (e << 8) | e_be[i];

    pthread_mutex_lock(&rm_lock);
    struct rm_key *s = NULL, *free_slot = NULL;
    for (int i = 0; i < RM_SLOTS && !s; i++) {
        struct rm_key *c = &rm_keys[i];
        if (c->used && c->len == len && c->e == e && memcmp(c->n_be, n_be, len) == 0)
            s = c;
        else if (c->refs == 0 && (!free_slot || !c->used || (free_slot->used && c->last_use < free_slot->last_use)))
            free_slot = c;
    }
    if (!s && free_slot) { /* a new key: the least recently used idle slot */
        mbedtls_platform_zeroize(free_slot, sizeof *free_slot);
        *ret = key_setup(free_slot, ctx, f_rng, p_rng);
        if (*ret == 0) {
            free_slot->used = 1;
            s = free_slot;
        } else {
            mbedtls_platform_zeroize(free_slot, sizeof *free_slot);
        }
    }
    if (s) {
        s->refs++;
        s->last_use = ++rm_clock;
        mont_sqr(s->vi, s->vi, &s->n);
        mont_sqr(s->vf, s->vf, &s->n);
        memcpy(vi, s->vi, sizeof s->vi);
        memcpy(vf, s->vf, sizeof s->vf);
        *ret = 0;
    }
    pthread_mutex_unlock(&rm_lock);
    return s;
}

static void key_put(struct rm_key *s)
{
    pthread_mutex_lock(&rm_lock);
    s->refs--;
    pthread_mutex_unlock(&rm_lock);
}

/* --- the private operation ----------------------------------------------- */

/* Working memory of one operation, on the heap: session threads have small
 * stacks. */
struct rm_work {
    limb c[RM_MAX_NK], cb[RM_MAX_NK], vi[RM_MAX_NK], vf[RM_MAX_NK];
    limb xp[RM_MAX_K], xq[RM_MAX_K], mp[RM_MAX_K], mq[RM_MAX_K], h[RM_MAX_K];
    limb ep[RM_MAX_K + 1], eq[RM_MAX_K + 1];
    limb m[RM_MAX_NK], y[RM_MAX_NK], chk[RM_MAX_NK];
    limb table[RM_TABLE * RM_MAX_K];
    limb ifma[RSA_IFMA_WORK_BYTES / sizeof(limb)];
};

/* exp = d + (m - 1) * rnd, rnd a fresh RM_EXP_BLIND_BITS-bit number: the
 * same exponent mod the order of the group (k + 1 limbs). */
static int blind_exponent(limb *exp, const limb *d, const struct rm_mod *md,
                          int (*f_rng)(void *, unsigned char *, size_t), void *p_rng)
{
    unsigned char rb[RM_EXP_BLIND_BITS / 8];
    if (f_rng(p_rng, rb, sizeof rb) != 0) return MBEDTLS_ERR_RSA_RNG_FAILED;
    limb rnd = 0, carry = 0;
    for (size_t i = 0; i < sizeof rb; i++) rnd = (rnd << 8) | rb[i];
    for (int j = 0; j < md->k; j++) { /* m is odd: m - 1 is m with bit 0 cleared */
        limb mj = j ? md->m[j] : md->m[0] & ~(limb)1;
        dlimb z = (dlimb)mj * rnd + d[j] + carry;
        exp[j] = (limb)z;
        carry = (limb)(z >> 64);
    }
    exp[md->k] = carry;
    mbedtls_platform_zeroize(rb, sizeof rb);
    mbedtls_platform_zeroize(&rnd, sizeof rnd);
    return 0;
}

/* r = x from Montgomery form (k limbs). */
static void from_mont(limb *r, const limb *x, const struct rm_mod *md)
{
    limb t[2 * RM_MAX_K] = {0};
    copy_limbs(t, x, md->k);
    redc(r, t, md, md->k);
}

/* mp = cb^ep mod p, mq = cb^eq mod q, normal form: both halves at once on
 * IFMA for RSA-2048, else one after the other. */
static void crt_exps(struct rm_work *w, const struct rm_key *s)
{
    int k = s->p.k, ebits = 64 * k + RM_EXP_BLIND_BITS;
    mod_reduce(w->xp, w->cb, 2 * k, s->r3_p, &s->p);
    mod_reduce(w->xq, w->cb, 2 * k, s->r3_q, &s->q);
    if (k == 16 && atomic_load_explicit(&rm_fast, memory_order_relaxed) == RSA_MONT_PATH_IFMA) {
        from_mont(w->xp, w->xp, &s->p);
        from_mont(w->xq, w->xq, &s->q);
        rsa_ifma_exp2(w->mp, w->mq, w->xp, w->xq, w->ep, w->eq, ebits, &s->ip, &s->iq, w->ifma);
        return;
    }
    exp_mont(w->mp, w->xp, w->ep, k + 1, ebits, &s->p, w->table);
    from_mont(w->mp, w->mp, &s->p);
    exp_mont(w->mq, w->xq, w->eq, k + 1, ebits, &s->q, w->table);
    from_mont(w->mq, w->mq, &s->q);
}

/* m = mq + q * ((mp - mq) * q^-1 mod p): Garner, in constant time. */
static void garner(struct rm_work *w, const struct rm_key *s)
{
    int k = s->p.k;
    limb t[RM_MAX_K];
    /* mq < q < 2p (p and q have the same length): one subtraction makes it
     * mq mod p */
    limb borrow = sub_n(t, w->mq, s->p.m, k);
    select_n(t, w->mq, t, ct_mask(borrow), k);
    borrow = sub_n(w->h, w->mp, t, k);
    add_n(t, w->h, s->p.m, k);
    select_n(w->h, t, w->h, ct_mask(borrow), k);
    mont_mul(w->h, w->h, s->qinv_m, &s->p); /* (mp - mq) * q^-1 mod p */
    mul_full(w->m, s->q.m, w->h, k);
    limb zero[RM_MAX_K] = {0};
    limb carry = add_n(w->m, w->m, w->mq, k);
    zero[0] = carry;
    add_n(w->m + k, w->m + k, zero, k); /* m < N: no carry out */
    mbedtls_platform_zeroize(t, sizeof t);
}

static int private_op(struct rm_key *s, const limb *vi, const limb *vf, struct rm_work *w,
                      int (*f_rng)(void *, unsigned char *, size_t), void *p_rng,
                      const unsigned char *input, unsigned char *output)
{
    int nk = s->n.k;
    size_t len = s->len;
    for (int i = 0; i < nk; i++) {
        limb v = 0;
        for (int j = 0; j < 8; j++) v = (v << 8) | input[len - 8 * (size_t)i - 8 + (size_t)j];
        w->c[i] = v;
    }
    if (sub_n(w->y, w->c, s->n.m, nk) == 0) /* c >= N: mbedTLS's error */
        return MBEDTLS_ERR_RSA_PRIVATE_FAILED + MBEDTLS_ERR_MPI_BAD_INPUT_DATA;
    mont_mul(w->cb, w->c, vi, &s->n); /* c * Vi mod N */
    int ret = blind_exponent(w->ep, s->dp, &s->p, f_rng, p_rng);
    if (ret == 0) ret = blind_exponent(w->eq, s->dq, &s->q, f_rng, p_rng);
    if (ret != 0) return ret;
    crt_exps(w, s);
    if (atomic_load_explicit(&rm_fault, memory_order_relaxed)) w->mp[0] ^= 1;
    garner(w, s);
    /* The check: m^e mod N must give the blinded input back (a fault in
     * one CRT half would otherwise leak a factor of N). */
    mont_mul(w->y, w->m, s->n.rr, &s->n);
    exp_public(w->chk, w->y, s->e, &s->n);
    limb t[2 * RM_MAX_NK] = {0};
    copy_limbs(t, w->chk, nk);
    redc(w->chk, t, &s->n, nk);
    limb diff = 0;
    for (int i = 0; i < nk; i++) diff |= w->chk[i] ^ w->cb[i];
    if (diff != 0) return MBEDTLS_ERR_RSA_VERIFY_FAILED;
    mont_mul(w->y, w->m, vf, &s->n); /* unblind: m * Vf mod N */
    for (int i = 0; i < nk; i++)
        for (int j = 0; j < 8; j++) output[len - 8 * (size_t)i - 1 - (size_t)j] = (unsigned char)(w->y[i] >> (8 * j));
    return 0;
}

/* burn_stack — overwrite the stack our callees used (products and
 * reductions of secret values live in their frames). */
static __attribute__((noinline)) void burn_stack(void)
{
    unsigned char b[RM_BURN_STACK_BYTES];
    mbedtls_platform_zeroize(b, sizeof b);
}

int rsa_mont_private(mbedtls_rsa_context *ctx, int (*f_rng)(void *, unsigned char *, size_t), void *p_rng,
                     const unsigned char *input, unsigned char *output)
{
    if (atomic_load_explicit(&rm_off, memory_order_relaxed) || f_rng == NULL) return RSA_MONT_DECLINED;
    if (atomic_load_explicit(&rm_fast, memory_order_relaxed) < 0) atomic_store(&rm_fast, rm_best_path());
    struct rm_work *w = malloc(sizeof *w);
    if (!w) return RSA_MONT_DECLINED;
    int ret;
    struct rm_key *s = key_get(ctx, f_rng, p_rng, w->vi, w->vf, &ret);
    if (s) {
        ret = private_op(s, w->vi, w->vf, w, f_rng, p_rng, input, output);
        key_put(s);
        if (ret == 0) atomic_fetch_add_explicit(&rm_done, 1, memory_order_relaxed);
    }
    mbedtls_platform_zeroize(w, sizeof *w);
    free(w);
    burn_stack();
    return ret;
}

void rsa_mont_set_enabled(int on)
{
    atomic_store(&rm_off, !on);
}

int rsa_mont_test_path(int path)
{
    int best = rm_best_path();
    atomic_store(&rm_fast, path < best ? path : best);
    return best;
}

void rsa_mont_test_fault(int on)
{
    atomic_store(&rm_fault, on);
}

unsigned long rsa_mont_count(void)
{
    return atomic_load(&rm_done);
}
