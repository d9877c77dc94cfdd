/* Unit tests of dkim (pure): relaxed canonicalization against vectors
 * computed with dkimpy, RFC 8463's Ed25519 example reproduced byte for
 * byte, the signed header list, the DKIM-Signature text, key records and
 * Ed25519 PKCS#8 keys. */
#include "crypto.h"
#include "dkim.h"
#include "unit.h"

#include <stdlib.h>

struct buf {
    char p[4096];
    size_t len;
};

static void buf_sink(void *ctx, const char *p, size_t n)
{
    struct buf *b = ctx;
    if (n <= sizeof b->p - b->len) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

/* body — the relaxed canonical form of `in`, fed in pieces of `step`. */
static size_t body(const char *in, size_t n, size_t step, struct buf *out)
{
    struct dkim_body b;
    out->len = 0;
    dkim_body_init(&b, buf_sink, out);
    for (size_t i = 0; i < n; i += step)
        dkim_body_add(&b, in + i, n - i < step ? n - i : step);
    dkim_body_end(&b);
    return out->len;
}

static void b64(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    CHECK(crypto_base64_decode(s, strlen(s), out, cap, n) == 0);
}

static void test_body_canonicalization(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"\r\n", ""},
        {"\r\n\r\n \t\r\n", ""},
        {"x", "x\r\n"},
        {" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
        {"a\t \tb  \r\n \t\r\n\r\n", "a b\r\n"},
        {"a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
        {"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n",
         "Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n"},
        {"end \t", "end\r\n"},
        {"bare\rCR\nLF\r\n", "bare\rCR\nLF\r\n"},
    };
    struct buf out;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 1; step <= 7; step += 3) {
            size_t n = body(cases[i].in, strlen(cases[i].in), step, &out);
            out.p[n] = '\0';
            if (strcmp(out.p, cases[i].out) != 0) {
                fprintf(stderr, "  case %zu step %zu: got '%s'\n", i, step, out.p);
                unit_failed_checks++;
            }
        }
    }
    /* RFC 8463 A.3's body hash (the example's bh=), in one piece and byte by byte */
    const char *rfc = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
    uint8_t want[32], got[32];
    size_t n;
    b64("2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=", want, sizeof want, &n);
    for (size_t step = 1; step <= 64; step *= 64) {
        struct crypto_sha256_state sha;
        struct dkim_body b;
        crypto_sha256_begin(&sha);
        dkim_body_init(&b, dkim_sha256_sink, &sha);
        for (size_t i = 0; i < strlen(rfc); i += step)
            dkim_body_add(&b, rfc + i, strlen(rfc) - i < step ? strlen(rfc) - i : step);
        dkim_body_end(&b);
        crypto_sha256_end(&sha, got);
        CHECK(memcmp(got, want, 32) == 0);
    }
}

static void test_header_canonicalization(void)
{
    struct buf out = {.len = 0};
    const char *f = "SUBJect \t: AbC  \t def\r\n\t ghi  \r\n";
    dkim_canon_header(f, strlen(f), buf_sink, &out);
    out.p[out.len] = '\0';
    CHECK_STR(out.p, "subject:AbC def ghi");
    out.len = 0;
    f = "X-Empty:   \r\n";
    dkim_canon_header(f, strlen(f), buf_sink, &out);
    out.p[out.len] = '\0';
    CHECK_STR(out.p, "x-empty:");
}

/* RFC 8463 appendix A: the example signature, reproduced from the key,
 * the header fields and the DKIM-Signature with its b= value removed. */
static void test_rfc8463_example(void)
{
    static const char *const fields[] = {
        "From: Joe SixPack <joe@football.example.com>\r\n",
        "To: Suzie Q <suzie@shopping.example.net>\r\n",
        "Subject: Is dinner ready?\r\n",
        "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n",
        "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n",
    };
    const char *sig = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
                      " d=football.example.com; i=@football.example.com;\r\n"
                      " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
                      " subject : date : message-id : from : subject : date;\r\n"
                      " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
                      " b=";
    uint8_t seed[32], pub[32], want[64], mine[64], digest[32];
    size_t n;
    b64("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=", seed, sizeof seed, &n);
    b64("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", pub, sizeof pub, &n);
    b64("/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==", want,
        sizeof want, &n);
    struct crypto_ed25519 k;
    CHECK(crypto_ed25519_from_seed(seed, &k) == 0 && memcmp(k.public_key, pub, 32) == 0);
    struct crypto_sha256_state sha;
    crypto_sha256_begin(&sha);
    for (int i = 0; i < 5; i++) { /* h=from:to:subject:date:message-id; the rest are absent */
        dkim_canon_header(fields[i], strlen(fields[i]), dkim_sha256_sink, &sha);
        crypto_sha256_add(&sha, "\r\n", 2);
    }
    dkim_canon_header(sig, strlen(sig), dkim_sha256_sink, &sha);
    crypto_sha256_end(&sha, digest);
    CHECK(crypto_ed25519_verify(pub, digest, 32, want));
    CHECK(crypto_ed25519_sign(&k, digest, 32, mine) == 0 && memcmp(mine, want, 64) == 0);
    crypto_ed25519_wipe(&k);
}

static const char head1[] = "Received: from x\r\n\tby y\r\n"
                            "From: A <a@Example.COM>\r\n"
                            "To: b@example.net\r\n"
                            "Subject: one\r\n"
                            "X-Other: z\r\n"
                            "to : c@example.net\r\n";

static void test_header_list(void)
{
    struct dkim_headers hs;
    char h[DKIM_H_MAX_BYTES], dom[DKIM_DOMAIN_MAX_BYTES];
    const char *prefix = "Message-ID: <1@relay>\r\nDate: now\r\n";
    memset(&hs, 0, sizeof hs);
    CHECK(dkim_headers_scan(prefix, strlen(prefix), 0, &hs) == 0);
    CHECK(dkim_headers_scan(head1, strlen(head1), 1, &hs) == 0);
    CHECK(dkim_headers_h(&hs, h, sizeof h) > 0);
    CHECK_STR(h, "from:from:to:to:subject:date:message-id");
    CHECK(dkim_headers_h(&hs, h, 10) == 0);
    /* to:to signs the bottom To first (RFC 6376 5.4.2) */
    struct buf out = {.len = 0};
    const char *segs[2] = {prefix, head1};
    dkim_headers_hash(&hs, segs, buf_sink, &out);
    out.p[out.len] = '\0';
    CHECK_STR(out.p, "from:A <a@Example.COM>\r\nto:c@example.net\r\nto:b@example.net\r\nsubject:one\r\n"
                     "date:now\r\nmessage-id:<1@relay>\r\n");
    CHECK(dkim_from_domain(head1, strlen(head1), dom) == 0);
    CHECK_STR(dom, "example.com");
    const char *two = "From: a@x.test\r\nFrom: b@x.test\r\n";
    CHECK(dkim_from_domain(two, strlen(two), dom) < 0);
    const char *mixed = "From: a@x.test, b@y.test\r\n";
    CHECK(dkim_from_domain(mixed, strlen(mixed), dom) < 0);
    const char *none = "Subject: x\r\n";
    CHECK(dkim_from_domain(none, strlen(none), dom) < 0);
    /* too many signed fields: no signature rather than a partial one */
    char *many = malloc(70 * 12 + 1);
    size_t len = 0;
    for (int i = 0; i < 70; i++)
        len += (size_t)snprintf(many + len, 13, "Cc: x@y.z\r\n");
    memset(&hs, 0, sizeof hs);
    CHECK(dkim_headers_scan(many, len, 0, &hs) < 0);
    free(many);
}

static void test_signature_text(void)
{
    struct dkim_sig_params p = {.alg = DKIM_RSA_SHA256, .domain = "example.com", .selector = "s1",
                                .time = 1764172067, .h = "from:from:to:subject"};
    char out[2048];
    uint8_t sig[256];
    memset(p.bh, 0, sizeof p.bh);
    memset(sig, 0xab, sizeof sig);
    size_t n = dkim_sig_begin(&p, out, sizeof out);
    CHECK(n > 0 && n < dkim_sig_max_bytes(strlen(p.h), sizeof sig));
    CHECK(strncmp(out, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s1;", 74) == 0);
    CHECK(n >= 3 && memcmp(out + n - 2, "b=", 2) == 0);
    size_t total = dkim_sig_finish(out, n, sizeof out, sig, sizeof sig);
    CHECK(total > n && total <= dkim_sig_max_bytes(strlen(p.h), sizeof sig));
    CHECK(memcmp(out + total - 2, "\r\n", 2) == 0);
    /* every line under 78 columns, every continuation folded with a tab */
    for (char *line = out, *nl; (nl = strstr(line, "\r\n")); line = nl + 2) {
        CHECK(nl - line <= 78);
        CHECK(line == out || line[0] == '\t');
    }
    CHECK(dkim_sig_finish(out, n, n + 10, sig, sizeof sig) == 0); /* does not fit */
    p.domain = "bad domain;";
    CHECK(dkim_sig_begin(&p, out, sizeof out) == 0);
    p.domain = "example.com";
    CHECK(dkim_sig_begin(&p, out, 40) == 0);
}

static void test_key_records(void)
{
    struct dkim_record r;
    const char *ok = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    CHECK(dkim_parse_record(ok, strlen(ok), &r) == 0 && r.alg == DKIM_ED25519_SHA256 && r.pub_len == 32 &&
          !r.revoked);
    const char *spaced = " v = DKIM1 ;k=ed25519;\r\n\tp=11qYAYKxCrfVS/7TyWQH Og7hcvPapiMlrwIaaPcHURo= ; n=note;";
    CHECK(dkim_parse_record(spaced, strlen(spaced), &r) == 0 && r.pub_len == 32);
    const char *rsa_default = "p=AAAA";
    CHECK(dkim_parse_record(rsa_default, strlen(rsa_default), &r) == 0 && r.alg == DKIM_RSA_SHA256);
    const char *revoked = "v=DKIM1; p=";
    CHECK(dkim_parse_record(revoked, strlen(revoked), &r) == 0 && r.revoked);
    static const char *const bad[] = {
        "k=ed25519; v=DKIM1; p=AAAA",      /* v= not first */
        "v=DKIM2; p=AAAA",                 /* another version */
        "v=DKIM1; k=dsa; p=AAAA",          /* unknown key type */
        "v=DKIM1; h=sha1; p=AAAA",         /* no sha256 */
        "v=DKIM1; s=tlsrpt; p=AAAA",       /* not for email */
        "v=DKIM1; p=AAAA; p=AAAA",         /* a tag twice */
        "v=DKIM1; k=rsa",                  /* no p= */
        "v=DKIM1; p=A*AA",                 /* not base64 */
        "v=DKIM1; 1x=y; p=AAAA",           /* bad tag name */
        "v=DKIM1; p",                      /* no = */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dkim_parse_record(bad[i], strlen(bad[i]), &r) == 0) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            unit_failed_checks++;
        }
    const char *svc = "v=DKIM1; h=sha1:sha256; s=email:*; t=y:s; p=AAAA";
    CHECK(dkim_parse_record(svc, strlen(svc), &r) == 0);
    char text[128];
    uint8_t pub[3] = {1, 2, 3};
    CHECK(dkim_format_record(DKIM_ED25519_SHA256, pub, 3, text, sizeof text) > 0);
    CHECK_STR(text, "v=DKIM1; k=ed25519; p=AQID");
    CHECK(dkim_format_record(DKIM_RSA_SHA256, pub, 3, text, 20) == 0);
}

static void test_ed25519_pem(void)
{
    /* what `openssl genpkey -algorithm ed25519` writes (RFC 8410 section 10.3's key) */
    const char *openssl = "-----BEGIN PRIVATE KEY-----\n"
                          "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
                          "-----END PRIVATE KEY-----\n";
    uint8_t seed[32], pub[32], again[32];
    bool has_pub;
    CHECK(dkim_pem_ed25519(openssl, strlen(openssl), seed, pub, &has_pub) == DKIM_PEM_ED25519 && !has_pub);
    CHECK(seed[0] == 0xd4 && seed[31] == 0x42);
    char out[256];
    size_t n = dkim_pem_ed25519_write(seed, out, sizeof out);
    CHECK(n == strlen(openssl) && memcmp(out, openssl, n) == 0);
    CHECK(dkim_pem_ed25519(out, n, again, pub, &has_pub) == DKIM_PEM_ED25519 && memcmp(seed, again, 32) == 0);
    CHECK(dkim_pem_ed25519_write(seed, out, 50) == 0);
    /* version 1 with the public key ([1]), RFC 8410 section 10.3 */
    const char *v1 = "-----BEGIN PRIVATE KEY-----\n"
                     "MHICAQEwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
                     "oB8wHQYKKoZIhvcNAQkJFDEPDA1DdXJkbGUgQ2hhaXJzgSEAGb9ECWmEzf6FQbrB\n"
                     "Z9w7lshQhqowtrbLDFw4rXAxZuE=\n"
                     "-----END PRIVATE KEY-----\n";
    CHECK(dkim_pem_ed25519(v1, strlen(v1), again, pub, &has_pub) == DKIM_PEM_ED25519 && has_pub);
    CHECK(memcmp(seed, again, 32) == 0 && pub[0] == 0x19);
    struct crypto_ed25519 k;
    CHECK(crypto_ed25519_from_seed(seed, &k) == 0 && memcmp(k.public_key, pub, 32) == 0);
    /* not Ed25519: left to the RSA reader */
    const char *rsa = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n";
    CHECK(dkim_pem_ed25519(rsa, strlen(rsa), seed, pub, &has_pub) == DKIM_PEM_OTHER);
    /* Ed25519 but broken: a seed of 31 bytes, trailing bytes */
    const char *short_seed = "-----BEGIN PRIVATE KEY-----\n"
                             "MC0CAQAwBQYDK2VwBCEEH9Tuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVg=\n"
                             "-----END PRIVATE KEY-----\n";
    CHECK(dkim_pem_ed25519(short_seed, strlen(short_seed), seed, pub, &has_pub) == DKIM_PEM_MALFORMED);
    const char *trailing = "-----BEGIN PRIVATE KEY-----\n"
                           "MDACAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhCAAA=\n"
                           "-----END PRIVATE KEY-----\n";
    CHECK(dkim_pem_ed25519(trailing, strlen(trailing), seed, pub, &has_pub) == DKIM_PEM_MALFORMED);
    crypto_ed25519_wipe(&k);
}

UNIT_MAIN("dkim", UNIT_CASE(test_body_canonicalization), UNIT_CASE(test_header_canonicalization),
          UNIT_CASE(test_rfc8463_example), UNIT_CASE(test_header_list), UNIT_CASE(test_signature_text),
          UNIT_CASE(test_key_records), UNIT_CASE(test_ed25519_pem))
