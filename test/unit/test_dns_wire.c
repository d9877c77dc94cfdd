/* Unit tests of dns_wire (names, queries, replies, hand-built malformed
 * packets) and of dns_parse_resolv_conf. */
#include "dns.h"
#include "dns_wire.h"
#include "unit.h"

#include <arpa/inet.h>
#include <stdlib.h>

/* ---- a tiny packet builder ---------------------------------------------- */

struct pkt {
    uint8_t b[70000];
    size_t n;
};

static void p_u8(struct pkt *p, unsigned v) { p->b[p->n++] = (uint8_t)v; }

static void p_u16(struct pkt *p, unsigned v)
{
    p_u8(p, v >> 8);
    p_u8(p, v & 0xff);
}

static void p_u32(struct pkt *p, uint32_t v)
{
    p_u16(p, v >> 16);
    p_u16(p, v & 0xffff);
}

static void p_bytes(struct pkt *p, const void *d, size_t n)
{
    memcpy(p->b + p->n, d, n);
    p->n += n;
}

/* p_labels — "a.b" as labels without the root (so a pointer may follow). */
static void p_labels(struct pkt *p, const char *dotted)
{
    while (*dotted) {
        const char *dot = strchr(dotted, '.');
        size_t n = dot ? (size_t)(dot - dotted) : strlen(dotted);
        p_u8(p, (unsigned)n);
        p_bytes(p, dotted, n);
        dotted += n + (dot ? 1 : 0);
    }
}

static void p_name(struct pkt *p, const char *dotted)
{
    p_labels(p, dotted);
    p_u8(p, 0);
}

static void p_ptr(struct pkt *p, size_t off) { p_u16(p, 0xc000 | (unsigned)off); }

static void p_header(struct pkt *p, unsigned id, unsigned flags, unsigned qd, unsigned an,
                     unsigned ns, unsigned ar)
{
    p->n = 0;
    p_u16(p, id);
    p_u16(p, flags);
    p_u16(p, qd);
    p_u16(p, an);
    p_u16(p, ns);
    p_u16(p, ar);
}

#define QR_RD_RA 0x8180u
#define QID 0x1234u

/* a reply header + the question (name at offset 12) */
static void p_reply(struct pkt *p, unsigned flags, const char *qname, unsigned qtype, unsigned an,
                    unsigned ns)
{
    p_header(p, QID, flags, 1, an, ns, 0);
    p_name(p, qname);
    p_u16(p, qtype);
    p_u16(p, DNS_CLASS_IN);
}

/* p_rr — owner given as a pointer (off) when name is NULL; returns the
 * offset of RDLENGTH, fixed by p_end(). */
static size_t p_rr(struct pkt *p, const char *name, size_t off, unsigned type, uint32_t ttl)
{
    if (name)
        p_name(p, name);
    else
        p_ptr(p, off);
    p_u16(p, type);
    p_u16(p, DNS_CLASS_IN);
    p_u32(p, ttl);
    size_t at = p->n;
    p_u16(p, 0);
    return at;
}

static void p_end(struct pkt *p, size_t at)
{
    size_t len = p->n - at - 2;
    p->b[at] = (uint8_t)(len >> 8);
    p->b[at + 1] = (uint8_t)len;
}

static void p_txt(struct pkt *p, const char *s)
{
    p_u8(p, (unsigned)strlen(s));
    p_bytes(p, s, strlen(s));
}

static void p_soa(struct pkt *p, const char *zone, uint32_t ttl, uint32_t minimum)
{
    size_t at = p_rr(p, zone, 0, DNS_TYPE_SOA, ttl);
    p_name(p, "ns.test");
    p_name(p, "host.test");
    p_u32(p, 1);
    p_u32(p, 3600);
    p_u32(p, 600);
    p_u32(p, 86400);
    p_u32(p, minimum);
    p_end(p, at);
}

static struct dns_question question(const char *name, unsigned type)
{
    struct dns_question q;
    memset(&q, 0, sizeof q);
    q.id = QID;
    q.type = (uint16_t)type;
    if (dns_name_from_text(name, q.name, &q.name_len) < 0)
        abort();
    return q;
}

static enum dns_status parse(const struct pkt *p, const char *qname, unsigned qtype,
                             struct dns_result **r)
{
    struct dns_question q = question(qname, qtype);
    return dns_wire_parse_reply(p->b, p->n, &q, 0, r);
}

/* expect_status — parse and check the status; the result is freed. */
static int expect_status(const struct pkt *p, const char *qname, unsigned qtype,
                         enum dns_status want)
{
    struct dns_result *r;
    enum dns_status s = parse(p, qname, qtype, &r);
    int ok = s == want && r && r->status == want && (want == DNS_OK || r->count == 0);
    if (!ok)
        fprintf(stderr, "  got %s, wanted %s\n", dns_status_name(s), dns_status_name(want));
    dns_result_free(r);
    return ok;
}

static struct pkt P; /* large: not on the stack */

/* ---- names ------------------------------------------------------------------ */

static void test_names_to_wire_and_back(void)
{
    uint8_t w[DNS_NAME_WIRE_MAX_BYTES];
    size_t n;
    char t[DNS_NAME_TEXT_MAX_BYTES];
    CHECK(dns_name_from_text("Mail.Example.COM.", w, &n) == 0);
    CHECK(n == 18 && memcmp(w, "\4mail\7example\3com\0", 18) == 0);
    CHECK(dns_name_to_text(w, n, t, sizeof t) == 0);
    CHECK_STR(t, "mail.example.com");
    CHECK(dns_name_from_text("mail.example.com", w, &n) == 0 && n == 18);
    CHECK(dns_name_from_text(".", w, &n) == 0 && n == 1 && w[0] == 0);
    CHECK(dns_name_to_text(w, n, t, sizeof t) == 0);
    CHECK_STR(t, ".");
    CHECK(dns_name_from_text("a\\.b.c\\032d", w, &n) == 0);
    CHECK(n == 9 && memcmp(w, "\3a.b\3c d\0", 9) == 0);
    CHECK(dns_name_to_text(w, n, t, sizeof t) == 0);
    CHECK_STR(t, "a\\046b.c\\032d");
    CHECK(dns_name_to_text(w, n, t, 5) == -1); /* does not fit */
}

static void test_names_refused(void)
{
    uint8_t w[DNS_NAME_WIRE_MAX_BYTES];
    size_t n;
    char label64[80], name[400];
    memset(label64, 'a', 64);
    label64[64] = '\0';
    CHECK(dns_name_from_text("", w, &n) == -1);
    CHECK(dns_name_from_text("a..b", w, &n) == -1);
    CHECK(dns_name_from_text(".a", w, &n) == -1);
    CHECK(dns_name_from_text("a.b..", w, &n) == -1);
    CHECK(dns_name_from_text(label64, w, &n) == -1);
    label64[63] = '\0';
    CHECK(dns_name_from_text(label64, w, &n) == 0 && n == 65);
    CHECK(dns_name_from_text("a\\25", w, &n) == -1);  /* short \DDD */
    CHECK(dns_name_from_text("a\\256", w, &n) == -1); /* > 255 */
    /* 4 labels of 63 = 4*64 + 1 = 257 > 255 */
    snprintf(name, sizeof name, "%s.%s.%s.%s", label64, label64, label64, label64);
    CHECK(dns_name_from_text(name, w, &n) == -1);
    /* 3*64 + 62 (61-byte label) + 1 = 255: the longest allowed */
    snprintf(name, sizeof name, "%s.%s.%s.%.61s", label64, label64, label64, label64);
    CHECK(dns_name_from_text(name, w, &n) == 0 && n == 255);
    snprintf(name, sizeof name, "%s.%s.%s.%.62s", label64, label64, label64, label64);
    CHECK(dns_name_from_text(name, w, &n) == -1);
}

/* ---- queries ------------------------------------------------------------------ */

static void test_query_has_rd_and_edns0(void)
{
    struct dns_question q = question("example.com", DNS_TYPE_TXT);
    uint8_t b[DNS_QUERY_MAX_BYTES];
    size_t n;
    CHECK(dns_wire_build_query(&q, b, sizeof b, &n) == 0);
    CHECK(n == 12 + 13 + 4 + 11);
    CHECK(b[0] == 0x12 && b[1] == 0x34);
    CHECK(b[2] == 0x01 && b[3] == 0x00);               /* RD only */
    CHECK(b[5] == 1 && b[7] == 0 && b[9] == 0 && b[11] == 1); /* QD 1, AR 1 */
    CHECK(memcmp(b + 12, "\7example\3com\0\0\x10\0\1", 17) == 0);
    const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0}; /* 1232 */
    CHECK(memcmp(b + 29, opt, 11) == 0);
    CHECK(dns_wire_build_query(&q, b, 20, &n) == -1);
}

static void test_query_do_bit_with_dnssec(void)
{
    struct dns_question q = question("example.com", DNS_TYPE_TLSA);
    uint8_t b[DNS_QUERY_MAX_BYTES];
    size_t n;
    q.dnssec = true;
    CHECK(dns_wire_build_query(&q, b, sizeof b, &n) == 0 && n == 12 + 13 + 4 + 11);
    CHECK(b[2] == 0x01 && b[3] == 0x00); /* RD only: AD is the server's to set */
    const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0}; /* 1232, DO (RFC 3225) */
    CHECK(memcmp(b + 29, opt, 11) == 0);
}

/* AD is reported only to a question asked with DO, for answers and
 * validated denials alike, never for a failure. */
static void test_ad_bit_is_secure_only_when_asked(void)
{
    struct dns_result *r;
    struct dns_question q = question("a.test", DNS_TYPE_A);
    p_reply(&P, QR_RD_RA | 0x0020, "a.test", DNS_TYPE_A, 1, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
    p_bytes(&P, "\x7f\0\0\1", 4);
    p_end(&P, at);
    CHECK(dns_wire_parse_reply(P.b, P.n, &q, 0, &r) == DNS_OK && !r->secure);
    dns_result_free(r);
    q.dnssec = true;
    CHECK(dns_wire_parse_reply(P.b, P.n, &q, 0, &r) == DNS_OK && r->secure);
    dns_result_free(r);
    p_reply(&P, QR_RD_RA, "a.test", DNS_TYPE_A, 1, 0); /* AD clear: insecure */
    at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
    p_bytes(&P, "\x7f\0\0\1", 4);
    p_end(&P, at);
    CHECK(dns_wire_parse_reply(P.b, P.n, &q, 0, &r) == DNS_OK && !r->secure);
    dns_result_free(r);
    p_reply(&P, 0x8183 | 0x0020, "a.test", DNS_TYPE_A, 0, 0); /* NXDOMAIN, validated */
    CHECK(dns_wire_parse_reply(P.b, P.n, &q, 0, &r) == DNS_NXDOMAIN && r->secure);
    dns_result_free(r);
    p_reply(&P, 0x8182 | 0x0020, "a.test", DNS_TYPE_A, 0, 0); /* SERVFAIL */
    CHECK(dns_wire_parse_reply(P.b, P.n, &q, 0, &r) == DNS_SERVFAIL && !r->secure);
    dns_result_free(r);
}

static void test_tlsa_rdata_is_kept_raw(void)
{
    struct dns_result *r;
    p_reply(&P, QR_RD_RA, "_25._tcp.mx.test", DNS_TYPE_TLSA, 3, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_TLSA, 60);
    p_bytes(&P, "\3\1\1abcd", 7);
    p_end(&P, at);
    at = p_rr(&P, NULL, 12, 46 /* RRSIG: not collected */, 60);
    p_bytes(&P, "sig", 3);
    p_end(&P, at);
    at = p_rr(&P, NULL, 12, DNS_TYPE_TLSA, 30);
    p_bytes(&P, "\2\0\0", 3); /* no data: still three octets */
    p_end(&P, at);
    CHECK(parse(&P, "_25._tcp.mx.test", DNS_TYPE_TLSA, &r) == DNS_OK && r->count == 2 && r->ttl == 30);
    CHECK(r->rdata[0].len == 7 && memcmp(r->rdata[0].data, "\3\1\1abcd", 7) == 0);
    CHECK(r->rdata[1].len == 3 && r->rdata[1].data[0] == 2);
    CHECK(dns_result_bytes(r) > 10);
    dns_result_free(r);
    p_reply(&P, QR_RD_RA, "_25._tcp.mx.test", DNS_TYPE_TLSA, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_TLSA, 60);
    p_bytes(&P, "\3\1", 2); /* shorter than its fixed fields */
    p_end(&P, at);
    CHECK(expect_status(&P, "_25._tcp.mx.test", DNS_TYPE_TLSA, DNS_MALFORMED));
}

/* ---- matching replies to the question ------------------------------------------ */

static void test_reply_must_match_id_and_question(void)
{
    struct dns_question q = question("example.com", DNS_TYPE_TXT);
    p_reply(&P, QR_RD_RA, "EXAMPLE.com", DNS_TYPE_TXT, 0, 0);
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_MATCH); /* names: any case */
    q.id = 0x4321;
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_MISMATCH);
    q = question("example.org", DNS_TYPE_TXT);
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_MISMATCH);
    q = question("example.com", DNS_TYPE_MX);
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_MISMATCH);
    q = question("example.com", DNS_TYPE_TXT);
    p_reply(&P, 0x0100, "example.com", DNS_TYPE_TXT, 0, 0); /* QR clear: a query */
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_MISMATCH);
    p_reply(&P, QR_RD_RA | 0x0200, "example.com", DNS_TYPE_TXT, 0, 0);
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_TRUNCATED);
    p_header(&P, QID, QR_RD_RA, 0, 0, 0, 0); /* no question */
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_MISMATCH);
    CHECK(dns_wire_check_reply(P.b, 11, &q) == DNS_WIRE_MISMATCH);
}

/* ---- good replies ---------------------------------------------------------------- */

static void test_txt_strings_are_concatenated(void)
{
    struct dns_result *r;
    p_reply(&P, QR_RD_RA, "d.test", DNS_TYPE_TXT, 3, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_TXT, 300);
    p_txt(&P, "v=spf1 ");
    p_txt(&P, "include:elastx.email");
    p_txt(&P, " -all");
    p_end(&P, at);
    at = p_rr(&P, NULL, 12, DNS_TYPE_TXT, 200);
    p_u8(&P, 3);
    p_bytes(&P, "a\0b", 3); /* NUL bytes are kept, with the length */
    p_end(&P, at);
    at = p_rr(&P, "other.test", 0, DNS_TYPE_TXT, 100); /* not ours: ignored */
    p_txt(&P, "v=spf1 +all");
    p_end(&P, at);
    CHECK(parse(&P, "d.test", DNS_TYPE_TXT, &r) == DNS_OK);
    CHECK(r->count == 2);
    CHECK(r->txt[0].len == 32 && strcmp(r->txt[0].data, "v=spf1 include:elastx.email -all") == 0);
    CHECK(r->txt[1].len == 3 && memcmp(r->txt[1].data, "a\0b", 4) == 0);
    CHECK(r->ttl == 200);
    CHECK_STR(r->name, "d.test");
    CHECK_STR(r->canonical, "d.test");
    dns_result_free(r);
}

static void test_mx_a_aaaa_and_null_mx(void)
{
    struct dns_result *r;
    p_reply(&P, QR_RD_RA, "m.test", DNS_TYPE_MX, 2, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_MX, 60);
    p_u16(&P, 10);
    p_labels(&P, "mx1");
    p_ptr(&P, 12); /* mx1.m.test, compressed */
    p_end(&P, at);
    at = p_rr(&P, NULL, 12, DNS_TYPE_MX, 60);
    p_u16(&P, 20);
    p_name(&P, "MX2.Other.Test");
    p_end(&P, at);
    CHECK(parse(&P, "m.test", DNS_TYPE_MX, &r) == DNS_OK && r->count == 2);
    CHECK(r->mx[0].preference == 10 && strcmp(r->mx[0].exchange, "mx1.m.test") == 0);
    CHECK(r->mx[1].preference == 20 && strcmp(r->mx[1].exchange, "mx2.other.test") == 0);
    CHECK(!r->null_mx);
    dns_result_free(r);

    p_reply(&P, QR_RD_RA, "n.test", DNS_TYPE_MX, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_MX, 60);
    p_u16(&P, 0);
    p_u8(&P, 0);
    p_end(&P, at);
    CHECK(parse(&P, "n.test", DNS_TYPE_MX, &r) == DNS_OK && r->null_mx);
    CHECK_STR(r->mx[0].exchange, ".");
    dns_result_free(r);

    p_reply(&P, QR_RD_RA, "a.test", DNS_TYPE_A, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
    p_bytes(&P, "\xc0\x00\x02\x01", 4);
    p_end(&P, at);
    CHECK(parse(&P, "a.test", DNS_TYPE_A, &r) == DNS_OK && r->count == 1);
    CHECK(r->addr[0].family == AF_INET && r->addr[0].u.in.sin_addr.s_addr == htonl(0xc0000201));
    dns_addr_set_port(&r->addr[0], 25);
    CHECK(r->addr[0].u.in.sin_port == htons(25) && r->addr[0].len == sizeof(struct sockaddr_in));
    dns_result_free(r);

    p_reply(&P, QR_RD_RA, "a.test", DNS_TYPE_AAAA, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_AAAA, 60);
    p_bytes(&P, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\1", 16);
    p_end(&P, at);
    CHECK(parse(&P, "a.test", DNS_TYPE_AAAA, &r) == DNS_OK && r->addr[0].family == AF_INET6);
    CHECK(r->addr[0].u.in6.sin6_addr.s6_addr[15] == 1);
    dns_result_free(r);
}

static void test_cname_chain_is_followed(void)
{
    struct dns_result *r;
    p_reply(&P, QR_RD_RA, "alias.test", DNS_TYPE_TXT, 3, 0);
    /* answer order need not follow the chain */
    size_t at = p_rr(&P, "real.test", 0, DNS_TYPE_TXT, 500);
    size_t real = at - 8 - 11; /* offset of "real.test": name, type, class, TTL */
    p_txt(&P, "hello");
    p_end(&P, at);
    at = p_rr(&P, NULL, 12, DNS_TYPE_CNAME, 90);
    p_name(&P, "mid.test");
    size_t mid = at + 2;
    p_end(&P, at);
    at = p_rr(&P, NULL, mid, DNS_TYPE_CNAME, 300);
    p_ptr(&P, real);
    p_end(&P, at);
    CHECK(parse(&P, "alias.test", DNS_TYPE_TXT, &r) == DNS_OK && r->count == 1);
    CHECK_STR(r->txt[0].data, "hello");
    CHECK_STR(r->canonical, "real.test");
    CHECK(r->cname_hops == 2 && r->ttl == 90 && !r->chase);
    dns_result_free(r);

    /* the chain leaves the reply, no SOA: the caller must ask the end */
    p_reply(&P, QR_RD_RA, "alias.test", DNS_TYPE_TXT, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_CNAME, 90);
    p_name(&P, "elsewhere.example");
    p_end(&P, at);
    CHECK(parse(&P, "alias.test", DNS_TYPE_TXT, &r) == DNS_NODATA && r->chase);
    CHECK(r->chase_len == 19 && memcmp(r->chase_wire, "\11elsewhere\7example\0", 19) == 0);
    dns_result_free(r);

    /* a CNAME to the root is not followed anywhere (found by fuzz_dns) */
    p_reply(&P, QR_RD_RA, "alias.test", DNS_TYPE_TXT, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_CNAME, 90);
    p_u8(&P, 0);
    p_end(&P, at);
    CHECK(parse(&P, "alias.test", DNS_TYPE_TXT, &r) == DNS_NODATA && !r->chase);
    dns_result_free(r);

    /* with an SOA it is NODATA at the end of the chain */
    p_reply(&P, QR_RD_RA, "alias.test", DNS_TYPE_TXT, 1, 1);
    at = p_rr(&P, NULL, 12, DNS_TYPE_CNAME, 90);
    p_name(&P, "real.test");
    p_end(&P, at);
    p_soa(&P, "test", 30, 40);
    CHECK(parse(&P, "alias.test", DNS_TYPE_TXT, &r) == DNS_NODATA && !r->chase && r->ttl == 30);
    dns_result_free(r);
}

static void test_cname_loop_and_long_chain_are_malformed(void)
{
    p_reply(&P, QR_RD_RA, "a.test", DNS_TYPE_A, 2, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_CNAME, 90);
    size_t b = P.n;
    p_name(&P, "b.test");
    p_end(&P, at);
    at = p_rr(&P, NULL, b, DNS_TYPE_CNAME, 90);
    p_ptr(&P, 12);
    p_end(&P, at);
    CHECK(expect_status(&P, "a.test", DNS_TYPE_A, DNS_MALFORMED));

    char name[16], next[16];
    p_reply(&P, QR_RD_RA, "c0.test", DNS_TYPE_A, DNS_CNAME_MAX_HOPS + 1, 0);
    for (int i = 0; i <= DNS_CNAME_MAX_HOPS; i++) {
        snprintf(name, sizeof name, "c%d.test", i);
        snprintf(next, sizeof next, "c%d.test", i + 1);
        at = p_rr(&P, name, 0, DNS_TYPE_CNAME, 90);
        p_name(&P, next);
        p_end(&P, at);
    }
    CHECK(expect_status(&P, "c0.test", DNS_TYPE_A, DNS_MALFORMED));
}

static void test_negative_answers_and_ttls(void)
{
    struct dns_result *r;
    p_reply(&P, QR_RD_RA | 3, "nx.test", DNS_TYPE_TXT, 0, 1);
    p_soa(&P, "test", 7200, 900);
    CHECK(parse(&P, "nx.test", DNS_TYPE_TXT, &r) == DNS_NXDOMAIN && r->ttl == 900 && r->rcode == 3);
    dns_result_free(r);
    p_reply(&P, QR_RD_RA | 3, "nx.test", DNS_TYPE_TXT, 0, 1);
    p_soa(&P, "test", 99999, 99999);
    CHECK(parse(&P, "nx.test", DNS_TYPE_TXT, &r) == DNS_NXDOMAIN && r->ttl == DNS_NEG_TTL_MAX_S);
    dns_result_free(r);
    p_reply(&P, QR_RD_RA, "nodata.test", DNS_TYPE_TXT, 0, 0);
    CHECK(parse(&P, "nodata.test", DNS_TYPE_TXT, &r) == DNS_NODATA &&
          r->ttl == DNS_NEG_TTL_DEFAULT_S);
    dns_result_free(r);
    /* positive TTLs: capped; a TTL with the top bit set means 0 */
    p_reply(&P, QR_RD_RA, "t.test", DNS_TYPE_A, 1, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_A, 10000000);
    p_bytes(&P, "\1\2\3\4", 4);
    p_end(&P, at);
    CHECK(parse(&P, "t.test", DNS_TYPE_A, &r) == DNS_OK && r->ttl == DNS_TTL_MAX_S);
    dns_result_free(r);
    p_reply(&P, QR_RD_RA, "t.test", DNS_TYPE_A, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_A, 0x80000000u);
    p_bytes(&P, "\1\2\3\4", 4);
    p_end(&P, at);
    CHECK(parse(&P, "t.test", DNS_TYPE_A, &r) == DNS_OK && r->ttl == 0);
    dns_result_free(r);
}

static void test_error_rcodes(void)
{
    p_reply(&P, QR_RD_RA | 2, "s.test", DNS_TYPE_TXT, 0, 0);
    CHECK(expect_status(&P, "s.test", DNS_TYPE_TXT, DNS_SERVFAIL));
    p_reply(&P, QR_RD_RA | 5, "s.test", DNS_TYPE_TXT, 0, 0);
    CHECK(expect_status(&P, "s.test", DNS_TYPE_TXT, DNS_REFUSED));
    p_reply(&P, QR_RD_RA | 4, "s.test", DNS_TYPE_TXT, 0, 0);
    CHECK(expect_status(&P, "s.test", DNS_TYPE_TXT, DNS_SERVFAIL));
    CHECK(!dns_status_permanent(DNS_SERVFAIL) && !dns_status_permanent(DNS_TIMEOUT));
    CHECK(dns_status_permanent(DNS_NXDOMAIN) && dns_status_permanent(DNS_NODATA));
}

/* ---- malformed replies ------------------------------------------------------------ */

/* one A record for x.test whose owner is the given bytes */
static void reply_with_owner(const void *owner, size_t n)
{
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 1, 0);
    p_bytes(&P, owner, n);
    p_u16(&P, DNS_TYPE_A);
    p_u16(&P, DNS_CLASS_IN);
    p_u32(&P, 60);
    p_u16(&P, 4);
    p_bytes(&P, "\1\2\3\4", 4);
}

static void test_compression_pointers(void)
{
    /* the question name is at 12: a pointer to it is fine */
    reply_with_owner("\xc0\x0c", 2);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_OK));
    /* a pointer to itself: a loop */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 1, 0);
    size_t self = P.n;
    p_ptr(&P, self);
    p_u16(&P, DNS_TYPE_A);
    p_u16(&P, 1);
    p_u32(&P, 60);
    p_u16(&P, 4);
    p_bytes(&P, "\1\2\3\4", 4);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    /* a pointer forward (into the record itself) */
    reply_with_owner("\xc0\x1a", 2);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    /* a pointer past the end of the message */
    reply_with_owner("\xff\xff", 2);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    /* two names pointing at each other: 24 -> 26 is forward, refused */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 1, 0);
    size_t a = P.n;
    p_ptr(&P, a + 2);
    p_ptr(&P, a);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    /* a pointer cut in half at the end */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 1, 0);
    p_u8(&P, 0xc0);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    /* label types 01 and 10 */
    reply_with_owner("\x41x\0", 3);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    reply_with_owner("\x81x\0", 3);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
}

/* reply_long_owner — an opaque record holding `k` names of 63-byte labels,
 * each pointing back at the one before (the first at the question name),
 * then an A record whose owner points at the last: 64*k + 8 bytes long. */
static void reply_long_owner(int k)
{
    uint8_t label[64];
    label[0] = 63;
    memset(label + 1, 'a', 63);
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 2, 0);
    size_t at = p_rr(&P, NULL, 12, 99, 60), prev = 12;
    for (int i = 0; i < k; i++) {
        size_t here = P.n;
        p_bytes(&P, label, 64);
        p_ptr(&P, prev);
        prev = here;
    }
    p_end(&P, at);
    at = p_rr(&P, NULL, prev, DNS_TYPE_A, 60);
    p_bytes(&P, "\1\2\3\4", 4);
    p_end(&P, at);
}

static void test_names_too_long_through_pointers(void)
{
    struct dns_question q = question("x.test", DNS_TYPE_A);
    reply_long_owner(3); /* 200 bytes: fine, but not our name */
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_NODATA));
    CHECK(dns_wire_check_reply(P.b, P.n, &q) == DNS_WIRE_MATCH);
    reply_long_owner(4); /* 264 bytes */
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
}

static void test_truncated_and_inexact_rdata(void)
{
    /* RDLENGTH past the end of the message */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_TXT, 1, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_TXT, 60);
    p_txt(&P, "abc");
    p_end(&P, at);
    P.b[at + 1] = 200;
    CHECK(expect_status(&P, "x.test", DNS_TYPE_TXT, DNS_MALFORMED));
    /* a character-string longer than the RDATA */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_TXT, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_TXT, 60);
    p_u8(&P, 10);
    p_bytes(&P, "abc", 3);
    p_end(&P, at);
    p_bytes(&P, "padding-padding", 15);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_TXT, DNS_MALFORMED));
    /* an A record of 5 bytes */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
    p_bytes(&P, "\1\2\3\4\5", 5);
    p_end(&P, at);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    /* an MX with a byte after its name */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_MX, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_MX, 60);
    p_u16(&P, 10);
    p_name(&P, "mx.test");
    p_u8(&P, 0);
    p_end(&P, at);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_MX, DNS_MALFORMED));
    /* an MX whose name runs past its RDATA */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_MX, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_MX, 60);
    p_u16(&P, 10);
    p_name(&P, "mx.test");
    p_end(&P, at);
    P.b[at + 1] -= 3;
    CHECK(expect_status(&P, "x.test", DNS_TYPE_MX, DNS_MALFORMED));
    /* a malformed record of a type we do not ask for still spoils the reply */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_TXT, 2, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_TXT, 60);
    p_txt(&P, "fine");
    p_end(&P, at);
    at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
    p_bytes(&P, "\1\2", 2);
    p_end(&P, at);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_TXT, DNS_MALFORMED));
    /* the message cut anywhere inside the record is malformed */
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_TXT, 1, 0);
    at = p_rr(&P, NULL, 12, DNS_TYPE_TXT, 60);
    p_txt(&P, "v=spf1 -all");
    p_end(&P, at);
    size_t full = P.n;
    for (size_t cut = 24; cut < full; cut++) {
        P.n = cut;
        CHECK(expect_status(&P, "x.test", DNS_TYPE_TXT, DNS_MALFORMED));
    }
}

static void test_huge_counts(void)
{
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 0xffff, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
    p_bytes(&P, "\1\2\3\4", 4);
    p_end(&P, at);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, 1, 0xffff);
    at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
    p_bytes(&P, "\1\2\3\4", 4);
    p_end(&P, at);
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    /* more records of the type than a result may hold: refused, not cut */
    unsigned n = DNS_RESULT_MAX_RECORDS + 1;
    p_reply(&P, QR_RD_RA, "x.test", DNS_TYPE_A, n, 0);
    for (unsigned i = 0; i < n; i++) {
        at = p_rr(&P, NULL, 12, DNS_TYPE_A, 60);
        p_u32(&P, i);
        p_end(&P, at);
    }
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_MALFORMED));
    P.b[6] = 0; /* ANCOUNT 255: the first 255 records, within the cap */
    P.b[7] = 255;
    CHECK(expect_status(&P, "x.test", DNS_TYPE_A, DNS_OK));
}

static void test_result_alias_shares_records(void)
{
    struct dns_result *t;
    p_reply(&P, QR_RD_RA, "real.test", DNS_TYPE_TXT, 1, 0);
    size_t at = p_rr(&P, NULL, 12, DNS_TYPE_TXT, 300);
    p_txt(&P, "x");
    p_end(&P, at);
    CHECK(parse(&P, "real.test", DNS_TYPE_TXT, &t) == DNS_OK);
    struct dns_result *a = dns_result_alias("alias.test", t, 1, 60);
    CHECK(a && a->txt == t->txt && a->count == 1 && a->ttl == 60);
    CHECK_STR(a->name, "alias.test");
    CHECK_STR(a->canonical, "real.test");
    dns_result_free(t); /* the alias keeps the records alive */
    CHECK_STR(a->txt[0].data, "x");
    dns_result_free(a);
}

/* ---- resolv.conf ------------------------------------------------------------------- */

static void test_resolv_conf(void)
{
    static const char conf[] = "# generated\n"
                               "search default.svc.cluster.local svc.cluster.local\n"
                               "nameserver 10.96.0.10\n"
                               "options ndots:5\n"
                               "  nameserver\t2001:db8::53  # trailing comment\n"
                               "nameserver fe80::1%1\n"
                               "nameserver not-an-ip\n"
                               "nameservers 1.1.1.1\n"
                               ";nameserver 9.9.9.9\n"
                               "nameserver 192.0.2.7";
    struct sockaddr_storage a[8];
    socklen_t l[8];
    char ip[64];
    int n = dns_parse_resolv_conf(conf, sizeof conf - 1, a, l, 8);
    CHECK(n == 4);
    const struct sockaddr_in *v4 = (const void *)&a[0];
    CHECK(a[0].ss_family == AF_INET && ntohs(v4->sin_port) == 53);
    CHECK_STR(inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip), "10.96.0.10");
    const struct sockaddr_in6 *v6 = (const void *)&a[1];
    CHECK(a[1].ss_family == AF_INET6 && l[1] == sizeof *v6 && ntohs(v6->sin6_port) == 53);
    CHECK_STR(inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip), "2001:db8::53");
    v6 = (const void *)&a[2];
    CHECK(a[2].ss_family == AF_INET6 && v6->sin6_scope_id == 1);
    v4 = (const void *)&a[3];
    CHECK_STR(inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip), "192.0.2.7");
    CHECK(dns_parse_resolv_conf(conf, sizeof conf - 1, a, l, 2) == 2);
    CHECK(dns_parse_resolv_conf("", 0, a, l, 8) == 0);
}

UNIT_MAIN("dns_wire", UNIT_CASE(test_names_to_wire_and_back), UNIT_CASE(test_names_refused),
          UNIT_CASE(test_query_has_rd_and_edns0), UNIT_CASE(test_query_do_bit_with_dnssec),
          UNIT_CASE(test_ad_bit_is_secure_only_when_asked), UNIT_CASE(test_tlsa_rdata_is_kept_raw),
          UNIT_CASE(test_reply_must_match_id_and_question),
          UNIT_CASE(test_txt_strings_are_concatenated), UNIT_CASE(test_mx_a_aaaa_and_null_mx),
          UNIT_CASE(test_cname_chain_is_followed),
          UNIT_CASE(test_cname_loop_and_long_chain_are_malformed),
          UNIT_CASE(test_negative_answers_and_ttls), UNIT_CASE(test_error_rcodes),
          UNIT_CASE(test_compression_pointers), UNIT_CASE(test_names_too_long_through_pointers),
          UNIT_CASE(test_truncated_and_inexact_rdata), UNIT_CASE(test_huge_counts),
          UNIT_CASE(test_result_alias_shares_records), UNIT_CASE(test_resolv_conf))
