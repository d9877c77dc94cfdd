/* Unit tests of http: the strict request-head parser on good, malformed
 * and oversized heads (NUL, bare CR/LF, obs-fold, bodies, limits), fed
 * whole and byte by byte; the response formatter; the status-line parser
 * used by `mrs healthcheck`; and a deterministic mutation run checking
 * the parser's invariants on junk. */
#include "http.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>

/* A literal with its exact length, NUL bytes included. */
#define LIT(s) (s), (sizeof(s) - 1)

static const char good_get[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                               "User-Agent: curl/8.0\r\nAccept: */*\r\n\r\n";

static enum http_parse_result parse(const char *s, size_t n, struct http_request *r)
{
    return http_parse_request(s, n, r);
}

static int status_of(const char *s, size_t n)
{
    struct http_request r;
    enum http_parse_result pr = parse(s, n, &r);
    if (pr == HTTP_PARSE_DONE)
        return 200;
    if (pr == HTTP_PARSE_MORE)
        return 0;
    CHECK(r.error != NULL);
    return r.status;
}

static bool span_is(const char *p, size_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

static void test_good_get_http11(void)
{
    struct http_request r;
    CHECK(parse(LIT(good_get), &r) == HTTP_PARSE_DONE);
    CHECK(r.method == HTTP_METHOD_GET);
    CHECK(span_is(r.method_text, r.method_len, "GET"));
    CHECK(span_is(r.path, r.path_len, "/healthz"));
    CHECK(r.query == NULL);
    CHECK(r.version_minor == 1);
    CHECK(r.fields == 3);
    CHECK(r.head_len == sizeof good_get - 1);
}

static void test_good_http10_without_host(void)
{
    struct http_request r;
    CHECK(parse(LIT("GET /readyz HTTP/1.0\r\n\r\n"), &r) == HTTP_PARSE_DONE);
    CHECK(r.version_minor == 0 && r.fields == 0);
    CHECK(span_is(r.path, r.path_len, "/readyz"));
}

static void test_head_query_and_ows(void)
{
    struct http_request r;
    CHECK(parse(LIT("HEAD /metrics?name[]=x HTTP/1.1\r\nHost:\t a \t\r\n\r\n"), &r) ==
          HTTP_PARSE_ERROR); /* '[' is not a target byte (RFC 3986) */
    CHECK(parse(LIT("HEAD /metrics?name=x&y=%2F HTTP/1.1\r\nhOsT:\t a \t\r\n\r\n"), &r) ==
          HTTP_PARSE_DONE);
    CHECK(r.method == HTTP_METHOD_HEAD);
    CHECK(span_is(r.path, r.path_len, "/metrics"));
    CHECK(span_is(r.query, r.query_len, "name=x&y=%2F"));
    CHECK(parse(LIT("GET /x? HTTP/1.0\r\n\r\n"), &r) == HTTP_PARSE_DONE);
    CHECK(r.query != NULL && r.query_len == 0);
}

static void test_other_methods_parse(void)
{
    struct http_request r;
    CHECK(parse(LIT("POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), &r) ==
          HTTP_PARSE_DONE);
    CHECK(r.method == HTTP_METHOD_OTHER);
    CHECK(span_is(r.method_text, r.method_len, "POST"));
    /* methods are case-sensitive: "get" is some other method */
    CHECK(parse(LIT("get /healthz HTTP/1.0\r\n\r\n"), &r) == HTTP_PARSE_DONE);
    CHECK(r.method == HTTP_METHOD_OTHER);
    CHECK(parse(LIT("M-SEARCH /x HTTP/1.0\r\n\r\n"), &r) == HTTP_PARSE_DONE);
}

static void test_every_prefix_wants_more(void)
{
    struct http_request r;
    for (size_t n = 0; n < sizeof good_get - 1; n++)
        if (parse(good_get, n, &r) != HTTP_PARSE_MORE) {
            fprintf(stderr, "  prefix of %zu bytes: not MORE\n", n);
            CHECK(0);
        }
    CHECK(parse(LIT(good_get), &r) == HTTP_PARSE_DONE);
}

static void test_pipelined_junk_is_not_read(void)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s%s", good_get,
                     "GET /metrics HTTP/1.1\r\n\x01\x02junk\n\n");
    CHECK(n > 0);
    struct http_request r;
    CHECK(parse(buf, (size_t)n, &r) == HTTP_PARSE_DONE);
    CHECK(r.head_len == sizeof good_get - 1);
    CHECK(span_is(r.path, r.path_len, "/healthz"));
}

static void test_malformed_request_lines(void)
{
    CHECK(status_of(LIT("GET /healthz\r\n\r\n")) == 400); /* HTTP/0.9 */
    CHECK(status_of(LIT("GET  /healthz HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz  HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.0 \r\n\r\n")) == 400);
    CHECK(status_of(LIT(" GET /healthz HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET\t/healthz HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET healthz HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET http://a/healthz HTTP/1.0\r\n\r\n")) == 400); /* absolute-form */
    CHECK(status_of(LIT("OPTIONS * HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /a%zz HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /a% HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /a\"b HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /a#frag HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /\xc3\xa5 HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz http/1.1\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTPS/1.1\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.10\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/2.0\r\n\r\n")) == 505);
    CHECK(status_of(LIT("GET /healthz HTTP/1.2\r\n\r\n")) == 505);
    CHECK(status_of(LIT("GET /healthz HTTP/0.9\r\n\r\n")) == 505);
    CHECK(status_of(LIT("\r\nGET /healthz HTTP/1.0\r\n\r\n")) == 400); /* no leading CRLF */
    CHECK(status_of(LIT("\r\n\r\n")) == 400);
}

static void test_line_endings_and_control_bytes(void)
{
    /* bare LF is refused (documented choice), and as soon as it is seen */
    CHECK(status_of(LIT("GET /healthz HTTP/1.0\n\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.0\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\n\n")) == 400);
    /* bare CR, NUL, other controls: in the line, in names, in values */
    CHECK(status_of(LIT("GET /healthz HTTP/1.0\rX")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /heal\0thz HTTP/1.0\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\0b\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHo\0st: a\r\n\r\n")) == 400);
    CHECK(status_of(LIT("\0")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\x01\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\x7f\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\x1b[2J\r\n\r\n")) == 400);
    /* a CR as the last byte so far: wait for its LF */
    CHECK(status_of(LIT("GET /healthz HTTP/1.0\r")) == 0);
    CHECK(status_of(LIT("GET /healthz HTTP/1.0\r\n\r")) == 0);
    /* obs-text in a value is allowed (RFC 9110 §5.5), not in a name */
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\nX-N: \xc3\xa5\xff\r\n\r\n")) == 200);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\nX-\xc3\xa5: 1\r\n\r\n")) == 400);
}

static void test_malformed_fields(void)
{
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\n\tHost: a\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\nA(b): c\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nX-Empty:\r\nHost: a\r\n\r\n")) == 200);
}

static void test_host_rules(void)
{
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nX: y\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")) == 400);
    CHECK(status_of(LIT("GET /healthz HTTP/1.1\r\nHost:\r\n\r\n")) == 200);
}

static void test_no_request_body(void)
{
#define GET11 "GET /healthz HTTP/1.1\r\nHost: a\r\n"
#define POST11 "POST /healthz HTTP/1.1\r\nHost: a\r\n"
    CHECK(status_of(LIT(GET11 "Content-Length: 0\r\n\r\n")) == 200);
    CHECK(status_of(LIT(GET11 "content-length:  000 \r\n\r\n")) == 200);
    CHECK(status_of(LIT(POST11 "Content-Length: 5\r\n\r\nhello")) == 413);
    CHECK(status_of(LIT(POST11 "Content-Length: 99999999999999999999999\r\n")) == 413); /* early */
    CHECK(status_of(LIT(GET11 "Content-Length: -1\r\n\r\n")) == 400);
    CHECK(status_of(LIT(GET11 "Content-Length: 1e3\r\n\r\n")) == 400);
    CHECK(status_of(LIT(GET11 "Content-Length:\r\n\r\n")) == 400);
    CHECK(status_of(LIT(GET11 "Content-Length: 0\r\nContent-Length: 0\r\n\r\n")) == 400);
    CHECK(status_of(LIT(POST11 "Transfer-Encoding: chunked\r\n\r\n")) == 400);
    CHECK(status_of(LIT(GET11 "transfer-encoding: identity\r\n\r\n")) == 400);
#undef GET11
#undef POST11
}

/* request_with_target — "GET /aaa…a HTTP/1.0\r\n\r\n" with a target of n bytes. */
static char *request_with_target(size_t n, size_t *len)
{
    char *b = malloc(n + 64);
    memcpy(b, "GET /", 5);
    memset(b + 5, 'a', n - 1);
    memcpy(b + 4 + n, " HTTP/1.0\r\n\r\n", 13);
    *len = 4 + n + 13;
    return b;
}

static void test_target_limit_is_414(void)
{
    size_t len;
    char *b = request_with_target(HTTP_TARGET_MAX_BYTES, &len);
    CHECK(status_of(b, len) == 200);
    free(b);
    b = request_with_target(HTTP_TARGET_MAX_BYTES + 1, &len);
    CHECK(status_of(b, len) == 414);
    /* known as soon as the target is too long, before the line ends */
    CHECK(status_of(b, 4 + HTTP_TARGET_MAX_BYTES + 1) == 414);
    CHECK(status_of(b, 4 + HTTP_TARGET_MAX_BYTES) == 0);
    free(b);
    CHECK(status_of(LIT("ABCDEFGHIJKLMNOPQ")) == 400); /* method over 16 bytes, early */
    CHECK(status_of(LIT("ABCDEFGHIJKLMNOP /x HTTP/1.0\r\n\r\n")) == 200);
    CHECK(status_of(LIT("GET /x HTTP/1.1x")) == 400); /* version too long, early */
}

/* request_with_fields — a HTTP/1.0 head with `count` fields of `value_len`
 * value bytes each; *len its length. */
static char *request_with_fields(int count, size_t value_len, size_t *len)
{
    size_t cap = 64 + (size_t)count * (value_len + 16);
    char *b = malloc(cap);
    size_t n = 0;
    memcpy(b, "GET /healthz HTTP/1.0\r\n", 23);
    n = 23;
    for (int i = 0; i < count; i++) {
        int k = snprintf(b + n, cap - n, "X-%04d: ", i);
        n += (size_t)k;
        memset(b + n, 'v', value_len);
        n += value_len;
        memcpy(b + n, "\r\n", 2);
        n += 2;
    }
    memcpy(b + n, "\r\n", 2);
    *len = n + 2;
    return b;
}

static void test_field_count_limit_is_431(void)
{
    size_t len;
    char *b = request_with_fields(HTTP_FIELDS_MAX, 1, &len);
    CHECK(status_of(b, len) == 200);
    free(b);
    b = request_with_fields(HTTP_FIELDS_MAX + 1, 1, &len);
    CHECK(status_of(b, len) == 431);
    free(b);
}

static void test_head_size_limit_is_431(void)
{
    /* one field sized so that the head is exactly the limit, then one more */
    size_t base = 23 + 8 + 2 + 2; /* request line, "X-0000: ", CRLF, CRLF */
    size_t len;
    char *b = request_with_fields(1, HTTP_HEAD_MAX_BYTES - base, &len);
    CHECK(len == HTTP_HEAD_MAX_BYTES);
    CHECK(status_of(b, len) == 200);
    free(b);
    b = request_with_fields(1, HTTP_HEAD_MAX_BYTES - base + 1, &len);
    CHECK(status_of(b, len) == 431);
    CHECK(status_of(b, HTTP_HEAD_MAX_BYTES) == 431); /* no end in sight at the limit */
    CHECK(status_of(b, HTTP_HEAD_MAX_BYTES - 1) == 0);
    free(b);
    b = request_with_fields(3, 4000, &len); /* a big head sent at once */
    CHECK(status_of(b, len) == 431);
    free(b);
}

static void test_reason_phrases(void)
{
    CHECK_STR(http_reason(200), "OK");
    CHECK_STR(http_reason(404), "Not Found");
    CHECK_STR(http_reason(405), "Method Not Allowed");
    CHECK_STR(http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(http_reason(503), "Service Unavailable");
    CHECK_STR(http_reason(799), "Unknown");
}

static void test_response_head(void)
{
    char buf[512];
    int n = http_response_head(buf, sizeof buf, 405, "text/plain; charset=utf-8", 19,
                               "Allow: GET, HEAD\r\n");
    CHECK(n > 0 && (size_t)n == strlen(buf));
    CHECK_STR(buf, "HTTP/1.1 405 Method Not Allowed\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: 19\r\n"
                   "Cache-Control: no-store\r\n"
                   "Connection: close\r\n"
                   "Allow: GET, HEAD\r\n"
                   "\r\n");
    n = http_response_head(buf, sizeof buf, 200, "text/plain", 3, NULL);
    CHECK(n > 21 && strcmp(buf + n - 21, "Connection: close\r\n\r\n") == 0);
    CHECK(strstr(buf, "Content-Length: 3\r\n") != NULL);
    CHECK(http_response_head(buf, 40, 200, "text/plain", 3, NULL) == -1);
}

static void test_status_line(void)
{
    int st = 0;
    CHECK(http_parse_status(LIT("HTTP/1.1 200 OK\r\n"), &st) == 1 && st == 200);
    CHECK(http_parse_status(LIT("HTTP/1.0 503 Service Unavailable\r\n"), &st) == 1 && st == 503);
    CHECK(http_parse_status(LIT("HTTP/1.1 204\r\n"), &st) == 1 && st == 204);
    CHECK(http_parse_status(LIT(""), &st) == 0);
    CHECK(http_parse_status(LIT("HTTP/1.1 20"), &st) == 0);
    CHECK(http_parse_status(LIT("HTTP/1.1 200"), &st) == 0);
    CHECK(http_parse_status(LIT("HTTP/2 200 OK\r\n"), &st) == -1);
    CHECK(http_parse_status(LIT("HTTP/1.1 20x OK\r\n"), &st) == -1);
    CHECK(http_parse_status(LIT("HTTP/1.1 2000\r\n"), &st) == -1);
    CHECK(http_parse_status(LIT("HTTP/1.1 099 x\r\n"), &st) == -1);
    CHECK(http_parse_status(LIT("SSH-2.0-OpenSSH\r\n"), &st) == -1);
    CHECK(http_parse_status(LIT("220 mrs.test ESMTP\r\n"), &st) == -1);
}

/* check_invariants — what must hold for any input: MORE only below the
 * limit, DONE with a head inside the input, errors with a known status. */
static void check_invariants(const char *b, size_t n)
{
    struct http_request r;
    enum http_parse_result pr = parse(b, n, &r);
    if (pr == HTTP_PARSE_MORE)
        CHECK(n < HTTP_HEAD_MAX_BYTES);
    if (pr == HTTP_PARSE_DONE) {
        CHECK(r.head_len >= 4 && r.head_len <= n && r.head_len <= HTTP_HEAD_MAX_BYTES);
        CHECK(memcmp(b + r.head_len - 4, "\r\n\r\n", 4) == 0);
        CHECK(r.path >= b && r.path + r.path_len <= b + r.head_len && r.path[0] == '/');
        CHECK(memchr(b, 0, r.head_len) == NULL);
    }
    if (pr == HTTP_PARSE_ERROR)
        CHECK(r.error && (r.status == 400 || r.status == 413 || r.status == 414 ||
                          r.status == 431 || r.status == 505));
}

static void test_mutations_keep_invariants(void)
{
    static const char special[] = {0, '\r', '\n', ' ', '\t', ':', '%', '/', '?', (char)0x80,
                                   (char)0xff, 'A', '\x7f'};
    char buf[sizeof good_get];
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof good_get - 1; i++)
        for (size_t k = 0; k < sizeof special; k++) {
            memcpy(buf, good_get, sizeof good_get);
            buf[i] = special[k];
            for (size_t n = 0; n < sizeof good_get; n += 7)
                check_invariants(buf, n);
            check_invariants(buf, sizeof good_get - 1);
        }
    char *junk = malloc(HTTP_HEAD_MAX_BYTES + 512);
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)round * 47 % (HTTP_HEAD_MAX_BYTES + 512);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            junk[i] = round % 2 ? "GET /\r\n: a"[(seed >> 16) % 10] : (char)(seed >> 16);
        }
        check_invariants(junk, n);
    }
    free(junk);
}

static void test_query_param(void)
{
    char v[16];
    const char *q = "user=a%40b.test&domain=x.test&flag&empty=";
    size_t n = strlen(q);
    CHECK(http_query_param(q, n, "user", v, sizeof v) == 1);
    CHECK_STR(v, "a@b.test");
    CHECK(http_query_param(q, n, "domain", v, sizeof v) == 1);
    CHECK_STR(v, "x.test");
    CHECK(http_query_param(q, n, "flag", v, sizeof v) == 1 && v[0] == '\0');
    CHECK(http_query_param(q, n, "empty", v, sizeof v) == 1 && v[0] == '\0');
    CHECK(http_query_param(q, n, "use", v, sizeof v) == 0);
    CHECK(http_query_param(q, n, "missing", v, sizeof v) == 0);
    CHECK(http_query_param(NULL, 0, "user", v, sizeof v) == 0);
    CHECK(http_query_param("user=a+b", 8, "user", v, sizeof v) == 1);
    CHECK_STR(v, "a+b");
    CHECK(http_query_param("user=%4", 7, "user", v, sizeof v) == -1);     /* cut escape */
    CHECK(http_query_param("user=%zz", 8, "user", v, sizeof v) == -1);    /* not hex */
    CHECK(http_query_param("user=%00", 8, "user", v, sizeof v) == -1);    /* NUL */
    CHECK(http_query_param("user=a%0d%0a", 12, "user", v, sizeof v) == -1); /* CR LF */
    CHECK(http_query_param("user=1&user=2", 13, "user", v, sizeof v) == -1); /* twice */
    CHECK(http_query_param("user=0123456789abcdef", 21, "user", v, sizeof v) == -1); /* too long */
    CHECK(http_query_param("user=0123456789abcde", 20, "user", v, sizeof v) == 1);
}

UNIT_MAIN("http", UNIT_CASE(test_query_param), UNIT_CASE(test_good_get_http11), UNIT_CASE(test_good_http10_without_host),
          UNIT_CASE(test_head_query_and_ows), UNIT_CASE(test_other_methods_parse),
          UNIT_CASE(test_every_prefix_wants_more), UNIT_CASE(test_pipelined_junk_is_not_read),
          UNIT_CASE(test_malformed_request_lines), UNIT_CASE(test_line_endings_and_control_bytes),
          UNIT_CASE(test_malformed_fields), UNIT_CASE(test_host_rules),
          UNIT_CASE(test_no_request_body), UNIT_CASE(test_target_limit_is_414),
          UNIT_CASE(test_field_count_limit_is_431), UNIT_CASE(test_head_size_limit_is_431),
          UNIT_CASE(test_reason_phrases), UNIT_CASE(test_response_head),
          UNIT_CASE(test_status_line), UNIT_CASE(test_mutations_keep_invariants))
