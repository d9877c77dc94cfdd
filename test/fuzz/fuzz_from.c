// fuzz-srcs: src/policy.c src/dns.c src/dns_wire.c src/crypto.c src/config.c src/log.c src/stats.c src/util.c src/idna.c
/*
 * fuzz_from — libFuzzer target for the From: header parser (every byte a
 * client puts in its message header) and the MAIL FROM sender domain.
 *
 * Checks: the count is -1 or 1..max; every domain is a valid, lowercase
 * domain name, and no two are the same; the sender domain of an address is
 * valid and lowercase.  Pure functions only: no DNS.
 */
#include "config.h"
#include "policy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

#define MAX_DOMAINS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_domain(const char *d)
{
    FUZZ_ASSERT(config_valid_domain(d));
    for (const char *c = d; *c; c++)
        FUZZ_ASSERT(!(*c >= 'A' && *c <= 'Z'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char domains[MAX_DOMAINS][POLICY_DOMAIN_MAX_BYTES];
    int n = policy_parse_from((const char *)data, size, domains, MAX_DOMAINS);
    FUZZ_ASSERT(n == -1 || (n >= 1 && n <= MAX_DOMAINS));
    for (int i = 0; i < n; i++) {
        check_domain(domains[i]);
        for (int k = 0; k < i; k++)
            FUZZ_ASSERT(strcmp(domains[i], domains[k]) != 0);
    }
    char *addr = malloc(size + 1), out[POLICY_DOMAIN_MAX_BYTES];
    if (!addr)
        return 0;
    memcpy(addr, data, size);
    addr[size] = '\0';
    if (policy_sender_domain(addr, out, sizeof out) == 0)
        check_domain(out);
    free(addr);
    return 0;
}
