/* Unit tests of the RSA private operation on our own Montgomery code
 * (rsa_mont.c), reached the way TLS reaches it: through mbedTLS's
 * mbedtls_rsa_private, with rsa_mont_count() proving that the hook ran.
 * A known answer made with openssl; 500+ random inputs per 2048-bit key
 * (two keys, interleaved, so the per-key cache must keep them apart) against
 * mbedTLS's own code (the hook switched off), on the fastest path this CPU
 * has and then on each slower one (MULX rows, portable C), plus RSA-1024 /
 * 3072 / 4096; the public operation gives the input back; 0, 1,
 * N-1, N and above; an injected fault caught by the check; a key it does
 * not take left to mbedTLS; two threads on two keys at once.
 *
 * The known answer: `openssl genpkey -algorithm RSA -pkeyopt
 * rsa_keygen_bits:2048`; kat_output = `openssl pkeyutl -decrypt -pkeyopt
 * rsa_padding_mode:none` of kat_input (raw c^d mod N); kat_sig = `openssl
 * dgst -sha256 -sign` of "mrs rsa_mont known answer" (PKCS#1 v1.5). */
#include "crypto.h"
#include "rsa_mont.h"
#include "unit.h"

#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/psa_util.h>
#include <mbedtls/rsa.h>
#include <psa/crypto.h>

#include <pthread.h>
#include <stdint.h>

static const char kat_key_pem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAsa/I8P60AyMl6WC0Tja2XktmFgbtpPWpzCr+z1ymKAdrzl6d\n"
    "zsg8tbeyhveee11nd8MfUrTtwIq98b4H+fnz8OXjHGvRbsfVMw1799oEzJYIdk+r\n"
    "OROPF1UcH/LH2ujg552Srv7n3GrNyGLI0bIbGHEwNcfp+cj2TEo4ZF9gnE3bqE/U\n"
    "sXpkBoLFWPG880PiV81Sna4L4Bm6NQ4FyFX2YzkAtFdlUZaIXagcyUQkjr1dFG9i\n"
    "2o7V3a/vTHx7OOeDrAFGQ3g/UgRxF1J8mohvf6G12pc5fzlmLA8YVbJQNjDnjznU\n"
    "vxrmGArAD2egFl9HcjMULFDQsG3hfcZKHhCwlwIDAQABAoIBAAKWot2iRqE+RSJp\n"
    "5oaDKCBZU297tcEi7dCYsCVfxKRHPP9NhCZlTVkaVKjAEuUNXpRkjJOQXJKvxexi\n"
    "tJjXVs6weQcxEBgS8I/YIPFJEd8HF0pEU9eDg1PQ/HvMqU1B+jcov2CUO9cLdg72\n"
    "vW7GL1Xct3Nfg6pZwcv2HG2XfbLl+z4UGUFnT/8NwX5OFvcK13BIFFbW8F6wQJ2D\n"
    "i3BIhYmkqwxp8jDS46KRWpBq6Kc2/r2JgJUJzWUg12Je/cGUXAP96cuY7YXFfxYl\n"
    "lv+c3aFnKTRkjbuZqcJWwlN2kibIWbj+bCZPOe19khv3ZGEeB1SXNpNXjPQrtps2\n"
    "rsgHTEECgYEA2RY89ygtMH4Kc758sfn7f+GC9eOHFCE4ldYx+N1eSyURTA/Ka6oD\n"
    "pqZ7YXEnIdXPZ/wkdNZDWWxukvpJ5EhknxLLzkqbjfoeRyM+LMxijJwTO643UVWE\n"
    "c+82+Bp3rEp7TkAvy8RwsawoewcenIGU/M+t1bJ9r9qdFzYw47mrX0ECgYEA0YmJ\n"
    "G+791G4td15zTtVLsBx7shmeUUXHPPEeIngoVP1DDxEZG450KcBZLpn6PWL5ttlt\n"
    "dkBdLMSIM6PNJGv2RyfUG56SHZ8PaonYh5RDvwvH6YwWZqIo2azDkYR814ZSiz73\n"
    "EL8yQKvWXS6117W3bZG5CETAW+3ZsuPV+JwYcdcCgYEAgY1y7rEMXt8pT6/DbNdZ\n"
    "zxR++k1BxLKauVjt064QYtoJO5JE5AG/UgoSobFMgDXAJDdmbk+cO9apGo/B3zmQ\n"
    "yxoFhOQjdxRoU13l8gg7W9yc4cXzf1eAx0tgS6pH9wswER/fJkTiWDX8poc2LoJq\n"
    "roEmJdzygyr9CugtPwoECsECgYAlBVLHL6uDK9A2peZjiEXuIKouJl6VZ2mzN7qm\n"
    "RmqB0ZlWgSPZfYrCkaxwEl5nGCScjL/NQ8Pyk+qojQlCpRyHJ99O3e5c82xq2135\n"
    "XlW13GP+vHR8v6vOAbsv66OPBLlyxrYqLE25pWKjZgxUx1NYNYXmkxcVZumutJhq\n"
    "a1HaUwKBgGI1K7wCgjlrDLQpzTbwyjX0EI+iJqa3IGpmpO4mXePZSH0OUo3lrB76\n"
    "ivNyrq6Wyx/UHo6BfjcHEkfxUrVy4+aoJjFKB0Vb3Z2MNxp7SrP4F2ZosK6TqEJr\n"
    "tkegYKZ6+hlGOSn33v1MqEGcvgdXRLy1PWigHONuxzwRX6lCou4I\n"
    "-----END RSA PRIVATE KEY-----\n";
static const char kat_input_hex[] =
    "000a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dc"
    "e3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bc"
    "c3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b727980878e959c"
    "a3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c"
    "838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b323940474e555c"
    "636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b121920272e353c"
    "434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2f900070e151c"
    "232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc";
static const char kat_output_hex[] =
    "4a81de671c2dc2fd2d0f46d82276ebbd47a18f70bde226762371808174c536e3"
    "4bc72951d678c0f3ac4ed4c292288a974f142dce7cd9e779cd8e2bbf62fa7669"
    "093842ceb1efd41b675350cdaff68f4432440b0dbda765bb58df81f52478ddf7"
    "9651ac8eb2a8fb4239509623eaa1356ba67175d77d539322757dc08f27ef421d"
    "fc8f6adcba2aad79477fe6817ebc91492023a300cc89f943f3c4fb10c36293b2"
    "9eb310ed63f95e0420bf9be062a40b2bcbec4176e23268169f7ee3fbf461942c"
    "974c734d900e2c7b2ef12c4e88041bfd93f5d702365a54a2c90cfb8db875f2a2"
    "c509b29665464982b5ea7c6395f941a450b424b2af617f5cc2fc09a538eb8831";
static const char kat_sig_hex[] =
    "27df5425ab7e89d50fabab1c1a2447f5b37ad83d8143e837de65e98413611d10"
    "d714ad26664c743b91c88ed8f28da56384a77bcf4ecdad60050cae1084312184"
    "330d9f4d3775c31feff5be8f6b8fe380c6a55b1f14708f67d08f909050e6e068"
    "b51308ea45210d3d58c8ef96b8d20882fe4e15e6cdec0e3ca6314304b310865d"
    "534717a759e86ca072f85a92b224f255beb0b8a04b0b417b014533e1dbd0654b"
    "288656b6a8cec79782d2997547befc376f11200c1e94aa14dfcf9e906eb6f93b"
    "d7732974a4789934ccaede7af950a815d32f6e71b8b0d02bd565413b22ea7228"
    "5538b69a7f124791137327c508b5b48a6a262be9828bf44a411ff7ce19f22d94";

#define RNG mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE
#define MAX_BYTES 512

static void setup(void)
{
    static int done;
    if (done) return;
    done = crypto_init() == 0 && psa_crypto_init() == PSA_SUCCESS;
    CHECK(done);
}

static size_t unhex(const char *h, uint8_t *out, size_t max)
{
    size_t n = strlen(h) / 2;
    if (n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1) return 0;
        out[i] = (uint8_t)v;
    }
    return n;
}

/* private — mbedtls_rsa_private with the hook on (ours) or off (mbedTLS's). */
static int private(mbedtls_rsa_context *rsa, int ours, const uint8_t *in, uint8_t *out)
{
    rsa_mont_set_enabled(ours);
    int ret = mbedtls_rsa_private(rsa, RNG, in, out);
    rsa_mont_set_enabled(1);
    return ret;
}

static void test_known_answer(void)
{
    setup();
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    CHECK(mbedtls_pk_parse_key(&pk, (const unsigned char *)kat_key_pem, sizeof kat_key_pem, NULL, 0, RNG) == 0);
    mbedtls_rsa_context *rsa = mbedtls_pk_rsa(pk);
    uint8_t in[256], want[256], out[256], sig[256], got[MBEDTLS_PK_SIGNATURE_MAX_SIZE], hash[32];
    CHECK(unhex(kat_input_hex, in, sizeof in) == 256);
    CHECK(unhex(kat_output_hex, want, sizeof want) == 256);
    CHECK(unhex(kat_sig_hex, sig, sizeof sig) == 256);
    unsigned long before = rsa_mont_count();
    CHECK(mbedtls_rsa_private(rsa, RNG, in, out) == 0);
    CHECK(memcmp(out, want, 256) == 0);
    const char msg[] = "mrs rsa_mont known answer";
    CHECK(mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const unsigned char *)msg, strlen(msg), hash) == 0);
    size_t len = 0;
    CHECK(mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, sizeof hash, got, sizeof got, &len, RNG) == 0);
    CHECK(len == 256 && memcmp(got, sig, 256) == 0);
    CHECK(rsa_mont_count() >= before + 2); /* both went through rsa_mont */
    mbedtls_pk_free(&pk);
}

/* random_below — a uniformly random input < N, big-endian, len bytes. */
static void random_below(mbedtls_rsa_context *rsa, uint8_t *in, size_t len)
{
    mbedtls_mpi N, X;
    mbedtls_mpi_init(&N);
    mbedtls_mpi_init(&X);
    CHECK(mbedtls_rsa_export(rsa, &N, NULL, NULL, NULL, NULL) == 0);
    CHECK(mbedtls_mpi_random(&X, 0, &N, RNG) == 0);
    CHECK(mbedtls_mpi_write_binary(&X, in, len) == 0);
    mbedtls_mpi_free(&N);
    mbedtls_mpi_free(&X);
}

/* same — ours equals mbedTLS's for input, and the public operation gives
 * the input back; returns 1 when all of it holds. */
static int same(mbedtls_rsa_context *rsa, const uint8_t *in)
{
    size_t len = mbedtls_rsa_get_len(rsa);
    uint8_t a[MAX_BYTES], b[MAX_BYTES], back[MAX_BYTES];
    int ok = private(rsa, 1, in, a) == 0 && private(rsa, 0, in, b) == 0 && memcmp(a, b, len) == 0 &&
             mbedtls_rsa_public(rsa, a, back) == 0 && memcmp(back, in, len) == 0;
    CHECK(ok);
    return ok;
}

static void gen(mbedtls_rsa_context *rsa, unsigned bits)
{
    mbedtls_rsa_init(rsa);
    CHECK(mbedtls_rsa_gen_key(rsa, RNG, bits, 65537) == 0);
}

/* differential — n random inputs on each key, the keys interleaved. */
static void differential(mbedtls_rsa_context *keys, int nkeys, int n)
{
    unsigned long before = rsa_mont_count();
    int bad = 0;
    for (int i = 0; i < n && bad < 5; i++) {
        for (int k = 0; k < nkeys; k++) {
            uint8_t in[MAX_BYTES];
            random_below(&keys[k], in, mbedtls_rsa_get_len(&keys[k]));
            bad += !same(&keys[k], in);
        }
    }
    CHECK(bad == 0);
    CHECK(rsa_mont_count() == before + (unsigned long)(n * nkeys));
}

static void test_differential_2048(void)
{
    setup();
    mbedtls_rsa_context keys[2];
    gen(&keys[0], 2048);
    gen(&keys[1], 2048);
    differential(keys, 2, 500);
    mbedtls_rsa_free(&keys[0]);
    mbedtls_rsa_free(&keys[1]);
}

/* Every slower path this CPU has on RSA-2048 (the fastest ran above): the
 * MULX rows without IFMA, the portable C (a CPU without BMI2/ADX). */
static void test_differential_other_paths(void)
{
    setup();
    mbedtls_rsa_context keys[2];
    gen(&keys[0], 2048);
    gen(&keys[1], 2048);
    int best = rsa_mont_test_path(RSA_MONT_PATH_IFMA);
    printf("  fastest path on this CPU: %s\n", best == RSA_MONT_PATH_IFMA ? "IFMA" : best ? "MULX" : "C");
    for (int path = RSA_MONT_PATH_C; path < best; path++) {
        rsa_mont_test_path(path);
        differential(keys, 2, 150);
    }
    rsa_mont_test_path(RSA_MONT_PATH_IFMA);
    mbedtls_rsa_free(&keys[0]);
    mbedtls_rsa_free(&keys[1]);
}

static void test_differential_sizes(void)
{
    setup();
    mbedtls_rsa_context keys[3];
    gen(&keys[0], 1024);
    gen(&keys[1], 3072);
    gen(&keys[2], 4096);
    differential(keys, 3, 60);
    for (int i = 0; i < 3; i++) mbedtls_rsa_free(&keys[i]);
}

/* 0, 1, N-1 agree; N and N+1 get mbedTLS's own error. */
static void test_edges(void)
{
    setup();
    mbedtls_rsa_context key;
    gen(&key, 2048);
    uint8_t in[256] = {0}, a[256], b[256];
    same(&key, in); /* 0 */
    in[255] = 1;
    same(&key, in); /* 1 */
    mbedtls_mpi N;
    mbedtls_mpi_init(&N);
    CHECK(mbedtls_rsa_export(&key, &N, NULL, NULL, NULL, NULL) == 0);
    CHECK(mbedtls_mpi_sub_int(&N, &N, 1) == 0 && mbedtls_mpi_write_binary(&N, in, sizeof in) == 0);
    same(&key, in); /* N-1 */
    for (int add = 1; add <= 2; add++) { /* N, N+1 */
        CHECK(mbedtls_mpi_add_int(&N, &N, 1) == 0 && mbedtls_mpi_write_binary(&N, in, sizeof in) == 0);
        unsigned long before = rsa_mont_count();
        int ours = private(&key, 1, in, a), theirs = private(&key, 0, in, b);
        CHECK(ours != 0 && ours == theirs);
        CHECK(rsa_mont_count() == before);
    }
    memset(in, 0xff, sizeof in); /* the largest input */
    CHECK(private(&key, 1, in, a) == private(&key, 0, in, b));
    mbedtls_mpi_free(&N);
    mbedtls_rsa_free(&key);
}

/* A corrupted CRT half is caught by the check: an error, no output. */
static void test_fault_caught(void)
{
    setup();
    mbedtls_rsa_context key;
    gen(&key, 2048);
    uint8_t in[256], out[256], zero[256] = {0};
    random_below(&key, in, sizeof in);
    memset(out, 0, sizeof out);
    rsa_mont_test_fault(1);
    CHECK(mbedtls_rsa_private(&key, RNG, in, out) == MBEDTLS_ERR_RSA_VERIFY_FAILED);
    rsa_mont_test_fault(0);
    CHECK(memcmp(out, zero, sizeof out) == 0);
    CHECK(mbedtls_rsa_private(&key, RNG, in, out) == 0); /* the key still works */
    same(&key, in);
    mbedtls_rsa_free(&key);
}

/* RSA-2056 has 1028-bit primes: not taken, mbedTLS answers (correctly). */
static void test_declined(void)
{
    setup();
    mbedtls_rsa_context key;
    gen(&key, 2056);
    uint8_t in[257], out[257], back[257];
    random_below(&key, in, sizeof in);
    unsigned long before = rsa_mont_count();
    CHECK(mbedtls_rsa_private(&key, RNG, in, out) == 0);
    CHECK(mbedtls_rsa_public(&key, out, back) == 0 && memcmp(back, in, sizeof in) == 0);
    CHECK(rsa_mont_count() == before);
    mbedtls_rsa_free(&key);
}

/* A PKCS#1 file may hold DP, DQ and QP unreduced (congruent, larger than a
 * prime: mbedtls_rsa_parse_key takes them as they are, and mbedTLS's own
 * code computes with them).  Wider than a prime they do not fit our limbs:
 * declined, so mbedTLS answers, instead of an error for every signature. */
static void test_unreduced_crt_values(void)
{
    setup();
    mbedtls_rsa_context key;
    gen(&key, 2048);
    mbedtls_mpi *p = &key.MBEDTLS_PRIVATE(P), *dp = &key.MBEDTLS_PRIVATE(DP), *qp = &key.MBEDTLS_PRIVATE(QP);
    mbedtls_mpi t;
    mbedtls_mpi_init(&t);
    CHECK(mbedtls_mpi_sub_int(&t, p, 1) == 0 && mbedtls_mpi_mul_int(&t, &t, 4) == 0);
    CHECK(mbedtls_mpi_add_mpi(dp, dp, &t) == 0);          /* DP + 4(P-1): the same exponent mod P-1 */
    CHECK(mbedtls_mpi_mul_int(&t, p, 4) == 0 && mbedtls_mpi_add_mpi(qp, qp, &t) == 0); /* QP + 4P */
    CHECK(mbedtls_mpi_bitlen(dp) > 1024 && mbedtls_mpi_bitlen(qp) > 1024);
    mbedtls_mpi_free(&t);
    uint8_t in[256], out[256], back[256];
    random_below(&key, in, sizeof in);
    unsigned long before = rsa_mont_count();
    CHECK(mbedtls_rsa_private(&key, RNG, in, out) == 0);
    CHECK(mbedtls_rsa_public(&key, out, back) == 0 && memcmp(back, in, sizeof in) == 0);
    CHECK(rsa_mont_count() == before);
    mbedtls_rsa_free(&key);
}

/* The stack below the call is wiped: on a thread whose stack is ours and
 * filled with a pattern, one operation (the key already cached: only the
 * operation's own frames go deep), then the deepest bytes it touched must
 * be zeros, apart from the few of the wiping call's own frame.  RSA-4096 on
 * the fastest path goes deepest (MULX: mont_sqr -> mont_mul32). */
#define STACK_TEST_BYTES (256 * 1024)
static unsigned char stack_area[STACK_TEST_BYTES] __attribute__((aligned(4096)));
struct stack_arg {
    mbedtls_rsa_context *key;
    uint8_t in[MAX_BYTES], out[MAX_BYTES];
    int ret;
};

static void *stack_run(void *p)
{
    struct stack_arg *a = p;
    a->ret = mbedtls_rsa_private(a->key, RNG, a->in, a->out);
    return NULL;
}

/* AddressSanitizer moves locals to its own fake stack and adds redzones,
 * so what is left on the thread's stack says nothing about the wipe: the
 * plain build (./build.sh test) measures it. */
#if defined(__SANITIZE_ADDRESS__)
#define STACK_NOT_MEASURABLE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_NOT_MEASURABLE 1
#endif
#endif

static void test_stack_wiped(void)
{
#ifdef STACK_NOT_MEASURABLE
    fprintf(stderr, "test_stack_wiped: not measured under AddressSanitizer (see above)\n");
    return;
#endif
    setup();
    static mbedtls_rsa_context key;
    static struct stack_arg arg;
    gen(&key, 4096);
    rsa_mont_test_path(RSA_MONT_PATH_IFMA); /* the fastest the CPU has */
    random_below(&key, arg.in, 512);
    arg.key = &key;
    CHECK(mbedtls_rsa_private(&key, RNG, arg.in, arg.out) == 0); /* the key set up, cached */
    unsigned long before = rsa_mont_count();
    memset(stack_area, 0xa5, sizeof stack_area);
    pthread_attr_t at;
    pthread_t th;
    CHECK(pthread_attr_init(&at) == 0 && pthread_attr_setstack(&at, stack_area, sizeof stack_area) == 0);
    CHECK(pthread_create(&th, &at, stack_run, &arg) == 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&at);
    CHECK(arg.ret == 0 && rsa_mont_count() == before + 1);
    size_t low = 0;
    while (low < sizeof stack_area && stack_area[low] == 0xa5) low++;
    size_t nonzero = 0;
    for (size_t i = low; i < low + 1024 && i < sizeof stack_area; i++) nonzero += stack_area[i] != 0;
    if (nonzero > 64)
        fprintf(stderr, "test_stack_wiped: %zu of the 1024 deepest bytes touched are not zero\n", nonzero);
    CHECK(nonzero <= 64);
    mbedtls_rsa_free(&key);
}

/* Two threads, each with its own key, at once: the cache and the blinding
 * pairs under the lock keep them apart. */
struct thread_arg {
    mbedtls_rsa_context key;
    uint8_t in[256], want[256];
    int bad;
};

static void *thread_run(void *p)
{
    struct thread_arg *t = p;
    for (int i = 0; i < 200; i++) {
        uint8_t out[256];
        if (mbedtls_rsa_private(&t->key, RNG, t->in, out) != 0 || memcmp(out, t->want, 256) != 0) t->bad++;
    }
    return NULL;
}

static void test_threads(void)
{
    setup();
    struct thread_arg t[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        gen(&t[i].key, 2048);
        random_below(&t[i].key, t[i].in, 256);
        t[i].bad = 0;
        CHECK(private(&t[i].key, 0, t[i].in, t[i].want) == 0);
    }
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, thread_run, &t[i]) == 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(t[i].bad == 0);
        mbedtls_rsa_free(&t[i].key);
    }
}

UNIT_MAIN("test_rsa_mont", UNIT_CASE(test_known_answer), UNIT_CASE(test_differential_2048),
          UNIT_CASE(test_differential_other_paths), UNIT_CASE(test_differential_sizes), UNIT_CASE(test_edges),
          UNIT_CASE(test_fault_caught), UNIT_CASE(test_declined), UNIT_CASE(test_unreduced_crt_values),
          UNIT_CASE(test_stack_wiped), UNIT_CASE(test_threads))
