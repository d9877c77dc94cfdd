// fuzz-srcs: src/dane.c src/dns.c src/dns_wire.c src/crypto.c src/config.c src/log.c src/stats.c src/util.c
/*
 * fuzz_tlsa — libFuzzer target for DANE's TLSA handling (RFC 6698, 7672):
 * the RDATA parser, the usability rules and the matcher, fed either with
 * records straight from the input or with a whole DNS reply (what a
 * resolver, or someone spoofing one, sends) parsed by dns_wire with the DO
 * bit asked and the AD bit honoured.
 *
 * Input: byte 0 picks the mode.
 *   even: byte 1 is the record count (at most 15); each record is a length
 *         byte and that many RDATA bytes; the rest is split in two halves,
 *         "certificate" and "key", the presented certificate to match.
 *   odd:  the rest is a DNS reply to "_25._tcp.mx.test TLSA" (its ID is
 *         taken from the reply); the certificate and key are fixed.
 * Checks: a set exists only for DANE_REQUIRED, holds only usable records
 * and at most the answer's; an insecure answer is never DANE; a usable
 * exact-match record whose data is the certificate (or key) matches it;
 * dane_match never reads past what it was given (ASan).
 */
#include "crypto.h"
#include "dane.h"
#include "dns_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

#define RECORDS_MAX 15

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_set(struct dns_result *r, const uint8_t *cert, size_t cert_len, const uint8_t *spki,
                      size_t spki_len)
{
    struct dane_set *s = NULL;
    enum dane_status st = dane_set_from_result("mx.test", r, &s);
    FUZZ_ASSERT(st == DANE_NONE || st == DANE_REQUIRED || st == DANE_UNUSABLE);
    FUZZ_ASSERT((st == DANE_REQUIRED) == (s != NULL));
    if (r && !r->secure)
        FUZZ_ASSERT(st == DANE_NONE);
    if (!s)
        return;
    FUZZ_ASSERT(s->count > 0 && s->count <= r->count);
    for (size_t i = 0; i < s->count; i++) {
        const struct dane_tlsa *t = &s->recs[i];
        FUZZ_ASSERT(dane_tlsa_usable(t));
        if (t->mtype == DANE_MTYPE_EXACT) {
            const uint8_t *want = t->selector == DANE_SELECTOR_CERT ? cert : spki;
            size_t want_len = t->selector == DANE_SELECTOR_CERT ? cert_len : spki_len;
            if (t->len == want_len && memcmp(t->data, want, want_len) == 0)
                FUZZ_ASSERT(dane_match(s, t->usage, cert, cert_len, spki, spki_len));
        }
    }
    for (uint8_t u = 0; u < 5; u++)
        if (dane_match(s, u, cert, cert_len, spki, spki_len))
            FUZZ_ASSERT(dane_has_usage(s, u));
    dane_set_free(s);
}

static void records_mode(const uint8_t *data, size_t size)
{
    size_t p = 0, n = size > 0 ? data[p++] % (RECORDS_MAX + 1) : 0;
    struct dns_result *r = dns_result_new(DNS_OK, DNS_TYPE_TLSA, "_25._tcp.mx.test");
    if (!r)
        return;
    r->secure = true;
    r->rdata = calloc(n ? n : 1, sizeof *r->rdata);
    FUZZ_ASSERT(r->rdata != NULL);
    for (size_t i = 0; i < n && p < size; i++) {
        size_t len = data[p++];
        if (len > size - p)
            len = size - p;
        struct dane_tlsa t;
        int rc = dane_tlsa_parse(data + p, len, &t);
        FUZZ_ASSERT(rc == (len < 3 ? -1 : 0));
        if (rc == 0) {
            FUZZ_ASSERT(t.data == data + p + 3 && t.len == len - 3);
            r->rdata[r->count].data = malloc(len);
            FUZZ_ASSERT(r->rdata[r->count].data != NULL);
            memcpy(r->rdata[r->count].data, data + p, len);
            r->rdata[r->count].len = len;
            r->count++;
        }
        p += len;
    }
    size_t rest = size - p, half = rest / 2;
    if (r->count == 0)
        r->status = DNS_NODATA;
    check_set(r, data + p, half, data + p + half, rest - half);
    r->secure = false;
    check_set(r, data + p, half, data + p + half, rest - half);
    dns_result_free(r);
}

static void reply_mode(const uint8_t *data, size_t size)
{
    static const uint8_t cert[] = "certificate", spki[] = "key";
    struct dns_question q;
    struct dns_result *r = NULL;
    memset(&q, 0, sizeof q);
    q.type = DNS_TYPE_TLSA;
    q.dnssec = true;
    if (dns_name_from_text("_25._tcp.mx.test", q.name, &q.name_len) < 0)
        abort();
    if (size >= 2)
        q.id = (uint16_t)(data[0] << 8 | data[1]);
    enum dns_status st = dns_wire_parse_reply(data, size, &q, 0, &r);
    if (!r)
        return;
    FUZZ_ASSERT(r->status == st);
    FUZZ_ASSERT(!r->secure || dns_status_permanent(st));
    FUZZ_ASSERT(st != DNS_OK || (r->rdata && r->count > 0));
    for (size_t i = 0; st == DNS_OK && i < r->count; i++)
        FUZZ_ASSERT(r->rdata[i].len >= 3);
    check_set(r, cert, sizeof cert - 1, spki, sizeof spki - 1);
    dns_result_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        reply_mode(data + 1, size - 1);
    else
        records_mode(data + 1, size - 1);
    return 0;
}
