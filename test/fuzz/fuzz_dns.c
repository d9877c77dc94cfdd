// fuzz-srcs: src/dns_wire.c
/*
 * fuzz_dns — libFuzzer target for the DNS reply parser (every byte a DNS
 * server, or someone spoofing one, sends us) and the name conversions.
 *
 * Besides memory safety it checks the parser's contract: the status and
 * the result agree; records only on success and within the cap; TXT data is
 * NUL-terminated at its length; every name handed out converts back to wire
 * form; a chase target is a well-formed name; an alias shares the records.
 * The question is "x.test" with the message's own ID, asked for each type
 * (TLSA included), with the DO bit when the third byte is odd: AD counts
 * only then, and only for an answer.
 */
#include "dns_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name_text(const char *text)
{
    uint8_t wire[DNS_NAME_WIRE_MAX_BYTES];
    size_t n;
    FUZZ_ASSERT(text != NULL);
    FUZZ_ASSERT(dns_name_from_text(text, wire, &n) == 0);
}

static void check_result(const struct dns_result *r, enum dns_status st)
{
    FUZZ_ASSERT(r->status == st);
    FUZZ_ASSERT(r->count <= DNS_RESULT_MAX_RECORDS);
    FUZZ_ASSERT(st == DNS_OK ? r->count > 0 : r->count == 0);
    FUZZ_ASSERT(r->ttl <= DNS_TTL_MAX_S);
    FUZZ_ASSERT(r->cname_hops <= DNS_CNAME_MAX_HOPS);
    check_name_text(r->canonical);
    for (size_t i = 0; i < r->count; i++) {
        if (r->txt)
            FUZZ_ASSERT(r->txt[i].data[r->txt[i].len] == '\0');
        if (r->mx)
            check_name_text(r->mx[i].exchange);
        if (r->addr)
            FUZZ_ASSERT(r->addr[i].family == AF_INET || r->addr[i].family == AF_INET6);
        if (r->rdata)
            FUZZ_ASSERT(r->rdata[i].len >= 3 && r->rdata[i].data != NULL);
    }
    FUZZ_ASSERT(!r->secure || dns_status_permanent(st)); /* AD only on an answer */
    if (r->chase) {
        char text[DNS_NAME_TEXT_MAX_BYTES];
        FUZZ_ASSERT(st == DNS_NODATA && r->chase_len > 1 && r->chase_len <= DNS_NAME_WIRE_MAX_BYTES);
        FUZZ_ASSERT(dns_name_to_text(r->chase_wire, r->chase_len, text, sizeof text) == 0);
    }
}

/* names: text → wire → text → wire must be stable */
static void fuzz_names(const uint8_t *data, size_t size)
{
    char text[300], back[DNS_NAME_TEXT_MAX_BYTES];
    uint8_t w1[DNS_NAME_WIRE_MAX_BYTES], w2[DNS_NAME_WIRE_MAX_BYTES];
    size_t n1, n2;
    if (size >= sizeof text)
        size = sizeof text - 1;
    memcpy(text, data, size);
    text[size] = '\0';
    if (dns_name_from_text(text, w1, &n1) < 0)
        return;
    FUZZ_ASSERT(n1 >= 1 && n1 <= DNS_NAME_WIRE_MAX_BYTES && w1[n1 - 1] == 0);
    FUZZ_ASSERT(dns_name_to_text(w1, n1, back, sizeof back) == 0);
    FUZZ_ASSERT(dns_name_from_text(back, w2, &n2) == 0);
    FUZZ_ASSERT(n1 == n2 && memcmp(w1, w2, n1) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t types[] = {DNS_TYPE_TXT, DNS_TYPE_MX, DNS_TYPE_A, DNS_TYPE_AAAA,
                                     DNS_TYPE_CNAME, DNS_TYPE_TLSA};
    struct dns_question q;
    memset(&q, 0, sizeof q);
    if (dns_name_from_text("x.test", q.name, &q.name_len) < 0)
        abort();
    q.id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        struct dns_result *r = NULL;
        q.type = types[t];
        q.dnssec = size > 2 && (data[2] & 1); /* MRS_DANE=on: DO asked, AD believed */
        (void)dns_wire_check_reply(data, size, &q);
        int hops = size > 3 ? data[3] % (DNS_CNAME_MAX_HOPS + 1) : 0;
        enum dns_status st = dns_wire_parse_reply(data, size, &q, hops, &r);
        FUZZ_ASSERT(r != NULL); /* no allocation failure expected here */
        check_result(r, st);
        struct dns_result *a = dns_result_alias("alias.test", r, 1, 60);
        FUZZ_ASSERT(a && a->count == r->count && a->ttl <= 60 && a->secure == r->secure);
        if (!q.dnssec)
            FUZZ_ASSERT(!r->secure);
        dns_result_free(r);
        dns_result_free(a);
    }
    fuzz_names(data, size);
    return 0;
}
