// fuzz-srcs: src/mta_sts.c src/util.c
/*
 * fuzz_mta_sts — libFuzzer target for the MTA-STS parsers: the policy file
 * and the HTTP response that carries it (bytes from any HTTPS server a
 * recipient domain names), the _mta-sts TXT record and the MX pattern
 * match.
 *
 * Besides memory safety it checks their contracts: a parsed policy has a
 * known mode, max_age within 0..31557600, lowercase patterns that match
 * themselves (or one label under a wildcard); a DONE response's body lies
 * inside the input and is at most 64 KB; MORE only while the input is not
 * at its end; a TXT id is 1..32 letters or digits.
 */
#include "mta_sts.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

static void check_policy(const char *b, size_t n)
{
    struct mta_sts_policy p;
    char err[160], host[MTA_STS_MX_PATTERN_MAX_BYTES + 8];
    if (mta_sts_parse_policy(b, n, &p, err, sizeof err) < 0) {
        FUZZ_ASSERT(memchr(err, '\0', sizeof err) != NULL);
        return;
    }
    FUZZ_ASSERT(p.mode <= MTA_STS_ENFORCE);
    FUZZ_ASSERT(p.max_age_s >= 0 && p.max_age_s <= MTA_STS_MAX_AGE_MAX_S);
    FUZZ_ASSERT(p.mode == MTA_STS_NONE || p.mx_count > 0);
    for (size_t i = 0; i < p.mx_count; i++) {
        const char *m = p.mx[i];
        for (const char *c = m; *c; c++)
            FUZZ_ASSERT(!(*c >= 'A' && *c <= 'Z'));
        if (m[0] == '*') {
            snprintf(host, sizeof host, "x%s", m + 1);
            FUZZ_ASSERT(mta_sts_mx_match(m, host));
            FUZZ_ASSERT(!mta_sts_mx_match(m, m + 2));
        } else {
            FUZZ_ASSERT(mta_sts_mx_match(m, m));
            FUZZ_ASSERT(mta_sts_policy_allows(&p, m));
        }
    }
}

static void check_http(const char *b, size_t n, bool eof)
{
    const char *body = NULL;
    size_t len = 0;
    char err[200];
    enum mta_sts_http r = mta_sts_parse_http(b, n, eof, &body, &len, err, sizeof err);
    if (r == MTA_STS_HTTP_DONE) {
        FUZZ_ASSERT(body >= b && len <= MTA_STS_BODY_MAX_BYTES && body + len <= b + n);
        check_policy(body, len);
    }
    if (r == MTA_STS_HTTP_MORE)
        FUZZ_ASSERT(!eof && n < MTA_STS_HEAD_MAX_BYTES + MTA_STS_BODY_MAX_BYTES + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *b = (const char *)data + 1;
    size_t n = size - 1;
    char id[MTA_STS_ID_MAX_BYTES + 1];
    switch (data[0] % 4) {
    case 0:
        check_policy(b, n);
        break;
    case 1:
        check_http(b, n, data[0] & 4);
        break;
    case 2:
        if (mta_sts_parse_txt(b, n, id) == 1) {
            size_t l = strlen(id);
            FUZZ_ASSERT(l >= 1 && l <= MTA_STS_ID_MAX_BYTES);
        }
        break;
    default: {
        /* pattern NUL host */
        char p[300], h[300];
        const char *z = memchr(b, '\0', n);
        size_t pl = z ? (size_t)(z - b) : n, hl = z ? n - pl - 1 : 0;
        if (pl >= sizeof p || hl >= sizeof h)
            break;
        memcpy(p, b, pl);
        p[pl] = '\0';
        memcpy(h, z ? z + 1 : b, hl);
        h[hl] = '\0';
        if (mta_sts_mx_match(p, h) && p[0] != '*')
            FUZZ_ASSERT(mta_sts_mx_match(h, p)); /* without a wildcard: symmetric */
        break;
    }
    }
    return 0;
}
