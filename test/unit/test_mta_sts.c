/* Unit tests of mta_sts: the _mta-sts TXT record, the policy parser (line
 * ends, required and unknown keys, limits), the MX pattern match with the
 * single-label wildcard, and the HTTP response parser (status, type,
 * length, close-delimited bodies, refused encodings, size limits). */
#include "mta_sts.h"
#include "tls_policy.h"
#include "unit.h"

#include <stdlib.h>

#define LIT(s) (s), (sizeof(s) - 1)

static void test_txt_record(void)
{
    char id[MTA_STS_ID_MAX_BYTES + 1];
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; id=20160831085700Z;"), id) == 1);
    CHECK_STR(id, "20160831085700Z");
    CHECK(mta_sts_parse_txt(LIT("v=STSv1;id=abc"), id) == 1);
    CHECK_STR(id, "abc");
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; ext=x.y; id=7 "), id) == 1);
    CHECK_STR(id, "7");
    CHECK(mta_sts_parse_txt(LIT("v=spf1 -all"), id) == 0);               /* another TXT */
    CHECK(mta_sts_parse_txt(LIT("v=STSv10; id=1"), id) == 0);            /* not this version */
    CHECK(mta_sts_parse_txt(LIT("v=STSv1"), id) == -1);                  /* no id */
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; id="), id) == -1);
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; id=a-b"), id) == -1);          /* not alnum */
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; id=1; id=2"), id) == -1);      /* twice */
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; id=123456789012345678901234567890123"), id) == -1); /* 33 */
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; id=12345678901234567890123456789012"), id) == 1);   /* 32 */
    CHECK(mta_sts_parse_txt(LIT("v=STSv1 id=1"), id) == -1);             /* no ';' */
    CHECK(mta_sts_parse_txt(LIT("v=STSv1; id=1\0x"), id) == -1);         /* NUL */
}

static void test_policy_lf_and_crlf(void)
{
    struct mta_sts_policy p;
    char err[160];
    static const char lf[] = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";
    static const char crlf[] =
        "version: STSv1\r\nmode: testing\r\nmx: MAIL.example.com.\r\nmax_age:604800\r\nfuture_key: whatever\r\n";
    CHECK(mta_sts_parse_policy(LIT(lf), &p, err, sizeof err) == 0);
    CHECK(p.mode == MTA_STS_ENFORCE && p.max_age_s == 86400 && p.mx_count == 2);
    CHECK_STR(p.mx[1], "*.example.net");
    CHECK(mta_sts_parse_policy(LIT(crlf), &p, err, sizeof err) == -1); /* a trailing dot is not a host name */
    static const char crlf2[] =
        "version: STSv1\r\nmode: testing\r\nmx: MAIL.example.com\r\nmax_age:604800\r\nfuture_key: whatever";
    CHECK(mta_sts_parse_policy(LIT(crlf2), &p, err, sizeof err) == 0);
    CHECK(p.mode == MTA_STS_TESTING && p.max_age_s == 604800);
    CHECK_STR(p.mx[0], "mail.example.com");
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: none\nmax_age: 0\n"), &p, err, sizeof err) == 0);
    CHECK(p.mode == MTA_STS_NONE && p.mx_count == 0);
}

static void test_policy_invalid(void)
{
    struct mta_sts_policy p;
    char err[160];
    CHECK(mta_sts_parse_policy(LIT("mode: enforce\nmx: a.b\nmax_age: 1\n"), &p, err, sizeof err) == -1);
    CHECK(strstr(err, "version") != NULL);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmx: a.b\nmax_age: 1\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmx: a.b\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmax_age: 1\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 1\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n"), &p, err,
                               sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557600\n"), &p, err,
                               sizeof err) == 0);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmode: none\nmx: a.b\nmax_age: 1\n"), &p, err,
                               sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmx: *.*.b\nmax_age: 1\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\nmx: a_b.c\nmax_age: 1\n"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("version: STSv1\nmode: enforce\njunk line\nmx: a.b\nmax_age: 1\n"), &p, err,
                               sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT("<html>version: STSv1</html>"), &p, err, sizeof err) == -1);
    CHECK(mta_sts_parse_policy(LIT(""), &p, err, sizeof err) == -1);
}

static void test_mx_match(void)
{
    CHECK(mta_sts_mx_match("mail.example.com", "mail.example.com"));
    CHECK(mta_sts_mx_match("mail.example.com", "MAIL.Example.COM."));
    CHECK(!mta_sts_mx_match("mail.example.com", "mail2.example.com"));
    CHECK(mta_sts_mx_match("*.example.com", "mx1.example.com"));
    CHECK(!mta_sts_mx_match("*.example.com", "a.b.example.com")); /* one label only */
    CHECK(!mta_sts_mx_match("*.example.com", "example.com"));
    CHECK(!mta_sts_mx_match("*.example.com", ".example.com"));
    CHECK(!mta_sts_mx_match("*.example.com", "mx1.example.com.evil"));
    CHECK(!mta_sts_mx_match("*.example.com", "mx1example.com"));
    CHECK(!mta_sts_mx_match("example.com", "xexample.com"));
    CHECK(!mta_sts_mx_match("", "example.com"));
}

static enum mta_sts_http http(const char *s, size_t n, bool eof, char *body, size_t cap)
{
    const char *b = NULL;
    size_t bl = 0;
    char err[200];
    enum mta_sts_http r = mta_sts_parse_http(s, n, eof, &b, &bl, err, sizeof err);
    body[0] = '\0';
    if (r == MTA_STS_HTTP_DONE && bl < cap) {
        memcpy(body, b, bl);
        body[bl] = '\0';
    }
    if (r == MTA_STS_HTTP_ERROR)
        snprintf(body, cap, "%s", err);
    return r;
}

static void test_http_response(void)
{
    char body[256];
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello";
    CHECK(http(LIT(ok), false, body, sizeof body) == MTA_STS_HTTP_DONE);
    CHECK_STR(body, "hello");
    for (size_t i = 0; i + 1 < sizeof ok - 1; i++) /* every prefix wants more */
        CHECK(http(ok, i, false, body, sizeof body) == MTA_STS_HTTP_MORE);
    static const char closed[] = "HTTP/1.0 200 OK\nContent-Type: TEXT/PLAIN\n\nbody\n";
    CHECK(http(LIT(closed), false, body, sizeof body) == MTA_STS_HTTP_MORE);
    CHECK(http(LIT(closed), true, body, sizeof body) == MTA_STS_HTTP_DONE);
    CHECK_STR(body, "body\n");
    CHECK(http(LIT("HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Type: text/plain\r\n\r\n"), true, body,
               sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(strstr(body, "301") != NULL && strstr(body, "redirect") != NULL);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n"), true, body,
               sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), true, body, sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
               true, body, sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(strstr(body, "chunked") != NULL);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 65537\r\n\r\n"), false, body,
               sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nshort"), true, body,
               sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
               true, body, sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\n Content-Type: text/plain\r\n\r\n"), true, body, sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(http(LIT("HTTP/2 200\r\nContent-Type: text/plain\r\n\r\n"), true, body, sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(http(LIT("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"), true, body, sizeof body) == MTA_STS_HTTP_ERROR);
}

static void test_http_size_limits(void)
{
    size_t n = MTA_STS_HEAD_MAX_BYTES + MTA_STS_BODY_MAX_BYTES + 1;
    char *big = malloc(n), body[256];
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    memcpy(big, head, sizeof head - 1);
    memset(big + sizeof head - 1, 'x', n - (sizeof head - 1));
    CHECK(http(big, sizeof head - 1 + MTA_STS_BODY_MAX_BYTES, true, body, sizeof body) == MTA_STS_HTTP_DONE);
    CHECK(http(big, sizeof head - 1 + MTA_STS_BODY_MAX_BYTES + 1, false, body, sizeof body) == MTA_STS_HTTP_ERROR);
    CHECK(strstr(body, "64 KB") != NULL);
    memset(big, 'h', n); /* a head that never ends */
    CHECK(http(big, MTA_STS_HEAD_MAX_BYTES, false, body, sizeof body) == MTA_STS_HTTP_ERROR);
    free(big);
}

static void test_tls_policy_for_mx(void)
{
    static struct tls_policy_domain d; /* large: not on the stack */
    struct route_target in = {.host = "mx1.example.com"}, out = {.host = "mx.elsewhere.net"};
    struct outbound_tls_req req;
    memset(&d, 0, sizeof d);
    d.policy = TLS_POLICY_MTA_STS_ENFORCE;
    d.sts.have = true;
    d.sts.policy.mode = MTA_STS_ENFORCE;
    d.sts.policy.mx_count = 1;
    strcpy(d.sts.policy.mx[0], "*.example.com");
    tls_policy_for_mx(&d, &in, NULL, &req);
    CHECK(!req.skip && req.tls_required && req.verify && !req.check && req.dane == NULL);
    CHECK_STR(req.verify_name, "mx1.example.com");
    CHECK_STR(req.label, "MTA-STS enforce");
    tls_policy_for_mx(&d, &out, NULL, &req);
    CHECK(req.skip && !req.tls_required && strstr(req.why, "mx.elsewhere.net") != NULL);
    d.policy = TLS_POLICY_MTA_STS_TESTING;
    tls_policy_for_mx(&d, &out, NULL, &req);
    CHECK(!req.skip && !req.tls_required && !req.verify && req.check && req.why[0]);
    d.policy = TLS_POLICY_OPPORTUNISTIC;
    tls_policy_for_mx(&d, &in, NULL, &req);
    CHECK(!req.skip && !req.tls_required && !req.verify && !req.check);
    d.policy = TLS_POLICY_NONE; /* smarthost */
    tls_policy_for_mx(&d, &out, NULL, &req);
    CHECK(!req.skip && !req.tls_required && !req.verify);
    CHECK_STR(tls_policy_name(TLS_POLICY_MTA_STS_ENFORCE), "mta-sts-enforce");
    CHECK_STR(tls_policy_name(TLS_POLICY_DANE), "dane");
    CHECK_STR(tls_policy_result_name(TLS_RESULT_SKIPPED), "skipped");
}

UNIT_MAIN("mta_sts", UNIT_CASE(test_tls_policy_for_mx), UNIT_CASE(test_txt_record), UNIT_CASE(test_policy_lf_and_crlf), UNIT_CASE(test_policy_invalid),
          UNIT_CASE(test_mx_match), UNIT_CASE(test_http_response), UNIT_CASE(test_http_size_limits))
