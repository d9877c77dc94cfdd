// fuzz-srcs: src/policy.c src/dns.c src/dns_wire.c src/crypto.c src/config.c src/log.c src/stats.c src/util.c src/idna.c
/*
 * fuzz_policy — libFuzzer target for the sender-domain decision over TXT
 * records (texts a customer, or anyone controlling a domain, publishes).
 *
 * Input: the username, then TXT records, separated by NUL bytes.  Checks:
 * the verdict's code, enhanced code and reason agree with its status; the
 * reply text is printable, without CR/LF, within POLICY_TEXT_MAX_BYTES; a
 * suggested SPF fix is one SPF record that holds the include, and together
 * with the token it passes.  No DNS: only the pure functions are called.
 */
#include "crypto.h"
#include "policy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

#define MAX_RECORDS 16

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return crypto_init();
}

static void check_verdict(const struct policy_verdict *v)
{
    size_t n = strlen(v->text);
    FUZZ_ASSERT(n > 0 && n < POLICY_TEXT_MAX_BYTES && v->reason != NULL);
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(v->text[i] >= 0x20 && v->text[i] < 0x7f);
    if (v->status == POLICY_PASS)
        FUZZ_ASSERT(v->code == 250 && strcmp(v->reason, "ok") == 0);
    else if (v->status == POLICY_FAIL)
        FUZZ_ASSERT(v->code == 550 && strcmp(v->enhanced, "5.7.1") == 0);
    else
        FUZZ_ASSERT(v->code == 451 && strcmp(v->enhanced, "4.4.3") == 0);
}

/* check_fix — a suggested SPF record is an SPF record with the include,
 * and with the user's token it is authorized. */
static void check_fix(const char *user, const char *spf, size_t len)
{
    char fixed[1024], token[200], hex[CRYPTO_SHA256_HEX_BYTES];
    const char *inc = policy_spf_include();
    if (policy_spf_fixed(spf, len, inc, fixed, sizeof fixed) < 0)
        return;
    FUZZ_ASSERT(policy_is_spf(fixed, strlen(fixed)) == policy_is_spf(spf, len));
    if (!policy_is_spf(fixed, strlen(fixed)))
        return;
    FUZZ_ASSERT(policy_spf_has_include(fixed, strlen(fixed), inc));
    crypto_sha256_hex(user, strlen(user), hex);
    snprintf(token, sizeof token, "%s=%s", policy_token_prefix(), hex);
    const char *txt[2] = {fixed, token};
    size_t lens[2] = {strlen(fixed), strlen(token)};
    struct policy_verdict v;
    policy_evaluate(user, "fuzz.test", txt, lens, 2, &v);
    FUZZ_ASSERT(v.status == POLICY_PASS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    const char *txt[MAX_RECORDS];
    size_t lens[MAX_RECORDS], n = 0;
    struct policy_verdict v;
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *user = copy;
    size_t p = strlen(copy) + 1;
    while (p <= size && n < MAX_RECORDS) {
        txt[n] = copy + p;
        lens[n] = strnlen(copy + p, size - p);
        p += lens[n] + 1;
        n++;
    }
    policy_evaluate(user, "fuzz.test", txt, lens, n, &v);
    check_verdict(&v);
    for (size_t i = 0; i < n; i++) {
        if (policy_is_spf(txt[i], lens[i]))
            check_fix(user, txt[i], lens[i]);
    }
    free(copy);
    return 0;
}
