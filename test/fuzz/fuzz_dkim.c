// fuzz-srcs: src/dkim.c src/policy.c src/dns.c src/dns_wire.c src/crypto.c src/config.c src/log.c src/stats.c src/util.c src/idna.c
/*
 * fuzz_dkim — libFuzzer target for what DKIM signing reads from others:
 * message bytes (body and header canonicalization, the header walker, the
 * From: domain), DNS TXT records (key records) and key files (PEM/PKCS#8).
 *
 * The first byte picks a chunk size: the body canonicalizer must give the
 * same bytes however the body is cut.  Checks on the canonical body: empty
 * or ending in one CRLF, no white space before a CRLF, no two spaces in a
 * row, no empty line at the end, never longer than the input plus 2.  On
 * headers: the canonical value has no CR, LF, tab or double space and the
 * whole is no longer than the field; scanned fields lie inside the input.  Key records
 * decode within bounds; a PEM seed written back parses to the same seed.
 */
#include "dkim.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
    char *p;
    size_t len, cap;
};

static void sink(void *ctx, const char *p, size_t n)
{
    struct out *o = ctx;
    FUZZ_ASSERT(n <= o->cap - o->len);
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

static void canon_body(const char *in, size_t n, size_t step, struct out *o)
{
    struct dkim_body b;
    o->len = 0;
    dkim_body_init(&b, sink, o);
    for (size_t i = 0; i < n; i += step)
        dkim_body_add(&b, in + i, n - i < step ? n - i : step);
    dkim_body_end(&b);
}

static void check_body(const char *in, size_t n, size_t step)
{
    struct out a = {malloc(n + 3), 0, n + 2}, b = {malloc(n + 3), 0, n + 2};
    if (!a.p || !b.p)
        goto out;
    canon_body(in, n, 1, &a);
    canon_body(in, n, step, &b);
    FUZZ_ASSERT(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    if (a.len == 0)
        goto out;
    FUZZ_ASSERT(a.len >= 2 && memcmp(a.p + a.len - 2, "\r\n", 2) == 0);
    FUZZ_ASSERT(!(a.len >= 4 && memcmp(a.p + a.len - 4, "\r\n\r\n", 4) == 0));
    for (size_t i = 0; i + 1 < a.len; i++) {
        FUZZ_ASSERT(!(a.p[i] == ' ' && a.p[i + 1] == ' ') && a.p[i] != '\t');
        FUZZ_ASSERT(!(a.p[i] == ' ' && a.p[i + 1] == '\r' && i + 2 < a.len && a.p[i + 2] == '\n'));
    }
out:
    free(a.p);
    free(b.p);
}

static void check_headers(const char *in, size_t n)
{
    struct dkim_field f;
    struct dkim_headers hs;
    size_t pos = 0, fields = 0;
    char *buf = malloc(n + 1);
    if (!buf)
        return;
    while (dkim_next_field(in, n, &pos, &f)) {
        FUZZ_ASSERT(f.len > 0 && f.off + f.len <= n && f.name_len <= f.len && ++fields <= n);
        struct out o = {buf, 0, n};
        dkim_canon_header(in + f.off, f.len, sink, &o);
        FUZZ_ASSERT(o.len <= f.len);
        const char *colon = memchr(buf, ':', o.len); /* the value: after the name's colon */
        for (size_t i = colon && f.name_len ? (size_t)(colon - buf) : o.len; i < o.len; i++) {
            FUZZ_ASSERT(buf[i] != '\r' && buf[i] != '\n' && buf[i] != '\t');
            FUZZ_ASSERT(!(i + 1 < o.len && buf[i] == ' ' && buf[i + 1] == ' '));
        }
    }
    memset(&hs, 0, sizeof hs);
    if (dkim_headers_scan(in, n, 0, &hs) == 0) {
        char h[DKIM_H_MAX_BYTES];
        FUZZ_ASSERT(dkim_headers_h(&hs, h, sizeof h) > 0); /* the list always fits */
        const char *segs[1] = {in};
        struct crypto_sha256_state sha;
        crypto_sha256_begin(&sha);
        dkim_headers_hash(&hs, segs, dkim_sha256_sink, &sha);
    }
    char dom[DKIM_DOMAIN_MAX_BYTES];
    if (dkim_from_domain(in, n, dom) == 0)
        FUZZ_ASSERT(dom[0] && strlen(dom) < sizeof dom);
    free(buf);
}

static void check_record_and_pem(const char *in, size_t n)
{
    struct dkim_record r;
    if (dkim_parse_record(in, n, &r) == 0)
        FUZZ_ASSERT(r.pub_len <= sizeof r.pub && (r.revoked == (r.pub_len == 0)));
    uint8_t seed[32], pub[32], again[32];
    bool has_pub;
    if (dkim_pem_ed25519(in, n, seed, pub, &has_pub) == DKIM_PEM_ED25519) {
        char pem[256];
        size_t k = dkim_pem_ed25519_write(seed, pem, sizeof pem);
        FUZZ_ASSERT(k > 0 && dkim_pem_ed25519(pem, k, again, pub, &has_pub) == DKIM_PEM_ED25519);
        FUZZ_ASSERT(memcmp(seed, again, sizeof seed) == 0 && !has_pub);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t)(data[0] % 17) + 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    check_body(in, n, step);
    check_headers(in, n);
    check_record_and_pem(in, n);
    return 0;
}
