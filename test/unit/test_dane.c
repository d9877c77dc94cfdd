/* Unit tests of dane: TLSA RDATA parsing, usability (RFC 7672 §3.1.3),
 * matching (RFC 6698 §2.1: selectors and matching types) and what a TLSA
 * answer means (secure / insecure / only unusable records). */
#include "crypto.h"
#include "dane.h"
#include "unit.h"

#include <stdlib.h>

static const uint8_t CERT[] = "0\x82-a certificate, DER in real life";
static const uint8_t SPKI[] = "0Y0\x13-a key, DER in real life";

/* rdata — usage, selector, mtype and the data for `what` (CERT or SPKI)
 * under the matching type, into out; returns the length. */
static size_t rdata(uint8_t *out, uint8_t u, uint8_t s, uint8_t m, const uint8_t *what, size_t len)
{
    out[0] = u;
    out[1] = s;
    out[2] = m;
    if (m == DANE_MTYPE_SHA256) {
        crypto_sha256(what, len, out + 3);
        return 3 + CRYPTO_SHA256_BYTES;
    }
    if (m == DANE_MTYPE_SHA512) {
        crypto_sha512(what, len, out + 3);
        return 3 + CRYPTO_SHA512_BYTES;
    }
    memcpy(out + 3, what, len);
    return 3 + len;
}

/* answer — a TLSA answer holding the given RDATA, as dns_wire makes them. */
static struct dns_result *answer(bool secure, size_t n, uint8_t rd[][128], const size_t *lens)
{
    struct dns_result *r = dns_result_new(DNS_OK, DNS_TYPE_TLSA, "_25._tcp.mx.test");
    r->secure = secure;
    r->rdata = calloc(n, sizeof *r->rdata);
    for (size_t i = 0; i < n; i++) {
        r->rdata[i].data = malloc(lens[i]);
        memcpy(r->rdata[i].data, rd[i], lens[i]);
        r->rdata[i].len = lens[i];
        r->count++;
    }
    return r;
}

static void test_parse_and_usable(void)
{
    struct dane_tlsa t;
    uint8_t b[128];
    CHECK(dane_tlsa_parse((const uint8_t *)"\3\1", 2, &t) == -1);
    size_t n = rdata(b, 3, 1, 1, SPKI, sizeof SPKI);
    CHECK(dane_tlsa_parse(b, n, &t) == 0 && t.usage == 3 && t.selector == 1 && t.mtype == 1 && t.len == 32);
    CHECK(t.data == b + 3 && dane_tlsa_usable(&t));
    t.len = 31; /* a digest of the wrong length */
    CHECK(!dane_tlsa_usable(&t));
    t.len = 32;
    t.usage = 0; /* PKIX-TA */
    CHECK(!dane_tlsa_usable(&t));
    t.usage = 1; /* PKIX-EE */
    CHECK(!dane_tlsa_usable(&t));
    t.usage = 4;
    CHECK(!dane_tlsa_usable(&t));
    t.usage = 2;
    CHECK(dane_tlsa_usable(&t));
    t.selector = 2;
    CHECK(!dane_tlsa_usable(&t));
    t.selector = 0;
    t.mtype = 3;
    CHECK(!dane_tlsa_usable(&t));
    t.mtype = 2;
    CHECK(!dane_tlsa_usable(&t)); /* SHA-512 wants 64 bytes */
    t.len = 64;
    CHECK(dane_tlsa_usable(&t));
    t.mtype = 0;
    CHECK(dane_tlsa_usable(&t));
    t.len = 0; /* "exact" with nothing to compare */
    CHECK(!dane_tlsa_usable(&t));
}

static void test_match_selectors_and_types(void)
{
    static uint8_t rd[6][128];
    size_t lens[6];
    lens[0] = rdata(rd[0], 3, 1, 1, SPKI, sizeof SPKI);
    lens[1] = rdata(rd[1], 3, 0, 2, CERT, sizeof CERT);
    lens[2] = rdata(rd[2], 2, 0, 0, CERT, sizeof CERT);
    for (int i = 0; i < 3; i++) {
        struct dane_set *s;
        struct dns_result *r = answer(true, 1, &rd[i], &lens[i]);
        CHECK(dane_set_from_result("mx.test", r, &s) == DANE_REQUIRED && s && s->count == 1);
        CHECK_STR(s->host, "mx.test");
        uint8_t usage = rd[i][0];
        CHECK(dane_match(s, usage, CERT, sizeof CERT, SPKI, sizeof SPKI));
        CHECK(!dane_match(s, usage == 3 ? 2 : 3, CERT, sizeof CERT, SPKI, sizeof SPKI)); /* usage matters */
        /* one byte different in what the selector picks: no match */
        uint8_t other_cert[sizeof CERT], other_spki[sizeof SPKI];
        memcpy(other_cert, CERT, sizeof CERT);
        memcpy(other_spki, SPKI, sizeof SPKI);
        other_cert[5] ^= 1;
        other_spki[5] ^= 1;
        bool by_cert = rd[i][1] == 0;
        CHECK(!dane_match(s, usage, by_cert ? other_cert : CERT, sizeof CERT, by_cert ? SPKI : other_spki,
                          sizeof SPKI));
        CHECK(dane_match(s, usage, by_cert ? CERT : other_cert, sizeof CERT, by_cert ? other_spki : SPKI,
                         sizeof SPKI));
        CHECK(!dane_match(s, usage, NULL, 0, NULL, 0));
        CHECK(dane_has_usage(s, usage) && !dane_has_usage(s, usage == 3 ? 2 : 3));
        dane_set_free(s);
        dns_result_free(r); /* the set held its own reference */
    }
    CHECK(!dane_match(NULL, 3, CERT, sizeof CERT, SPKI, sizeof SPKI));
}

static void test_what_an_answer_means(void)
{
    static uint8_t rd[3][128];
    size_t lens[3];
    struct dane_set *s;
    lens[0] = rdata(rd[0], 0, 0, 1, CERT, sizeof CERT); /* PKIX-TA: unusable */
    lens[1] = rdata(rd[1], 1, 1, 1, SPKI, sizeof SPKI); /* PKIX-EE: unusable */
    lens[2] = rdata(rd[2], 3, 1, 1, SPKI, sizeof SPKI);
    struct dns_result *r = answer(true, 2, rd, lens);
    CHECK(dane_set_from_result("mx.test", r, &s) == DANE_UNUSABLE && !s);
    dns_result_free(r);
    r = answer(true, 3, rd, lens); /* the usable one alone enters the set */
    CHECK(dane_set_from_result("mx.test", r, &s) == DANE_REQUIRED && s && s->count == 1 && s->recs[0].usage == 3);
    dane_set_free(s);
    dns_result_free(r);
    r = answer(false, 3, rd, lens); /* no AD: insecure, never DANE */
    CHECK(dane_set_from_result("mx.test", r, &s) == DANE_NONE && !s);
    dns_result_free(r);
    r = dns_result_new(DNS_NODATA, DNS_TYPE_TLSA, "_25._tcp.mx.test");
    r->secure = true; /* validated absence: no DANE */
    CHECK(dane_set_from_result("mx.test", r, &s) == DANE_NONE && !s);
    dns_result_free(r);
    CHECK(dane_set_from_result("mx.test", NULL, &s) == DANE_NONE);
}

/* Without MRS_DANE (no configuration loaded) nothing is looked up. */
static void test_lookup_off_without_config(void)
{
    struct dane_set *s = (struct dane_set *)1;
    char why[DANE_REASON_MAX_BYTES] = "";
    CHECK(dane_lookup(NULL, "mx.test", true, &s, why, sizeof why) == DANE_NONE && !s && !why[0]);
}

int main(void)
{
    if (crypto_init() < 0)
        return 1;
    static const struct unit_case cases[] = {
        UNIT_CASE(test_parse_and_usable), UNIT_CASE(test_match_selectors_and_types),
        UNIT_CASE(test_what_an_answer_means), UNIT_CASE(test_lookup_off_without_config)};
    return unit_run("dane", cases, sizeof cases / sizeof cases[0]);
}
