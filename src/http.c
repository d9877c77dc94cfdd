/*
 * http — the strict request-head parser and the response formatter of the
 * health listener (see http.h for the grammar it accepts and refuses).
 *
 * The parser works on one contiguous buffer of at most HTTP_HEAD_MAX_BYTES
 * and restarts from the first byte on every call: no state survives between
 * calls, so there is nothing to get out of sync.  Every index is compared
 * against a length before it is used; nothing is written to the input.
 *
 * Leaf module: calls only libc; pure and thread-safe.
 */
#include "http.h"

#include <stdio.h>
#include <string.h>

enum line_status { LINE_OK, LINE_MORE, LINE_BAD };

/* What the field lines have told us so far. */
struct field_state {
    int hosts;
    bool content_length;
};

static enum http_parse_result fail(struct http_request *req, int status, const char *error)
{
    req->status = status;
    req->error = error;
    return HTTP_PARSE_ERROR;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* tchar, RFC 9110 §5.6.2: the bytes of methods and field names. */
static bool is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return is_alpha(c) || is_digit(c) || (c != 0 && memchr(extra, c, sizeof extra - 1) != NULL);
}

/* Bytes of an origin-form target, RFC 3986: pchar, "/", "?" and "%". */
static bool is_target_char(unsigned char c)
{
    static const char extra[] = "-._~!$&'()*+,;=:@/?%";
    return is_alpha(c) || is_digit(c) || (c != 0 && memchr(extra, c, sizeof extra - 1) != NULL);
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* name_is — case-insensitive comparison of a field name with a lowercase
 * constant (RFC 9110 §5.1). */
static bool name_is(const char *s, size_t n, const char *lower)
{
    size_t k = strlen(lower);
    if (n != k)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)lower[i])
            return false;
    }
    return true;
}

/*
 * scan_line — find the CRLF that ends the line starting at buf[start], not
 * looking at or past buf[lim].  LINE_OK: *end is the index of its CR.
 * LINE_BAD (with *why): a NUL, a bare CR, a bare LF (RFC 9112 §2.2 lets us
 * refuse it) or another control byte; HTAB is allowed (it is OWS).
 */
static enum line_status scan_line(const char *buf, size_t start, size_t lim, size_t *end,
                                  const char **why)
{
    for (size_t i = start; i < lim; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\r') {
            if (i + 1 == lim)
                return LINE_MORE;
            if (buf[i + 1] != '\n') {
                *why = "bare CR";
                return LINE_BAD;
            }
            *end = i;
            return LINE_OK;
        }
        if (c == '\n' || c == 0 || (c < 0x20 && c != '\t') || c == 0x7f) {
            *why = c == '\n' ? "bare LF" : c == 0 ? "NUL byte" : "control byte";
            return LINE_BAD;
        }
    }
    return LINE_MORE;
}

/* check_target — a complete request-target: origin-form ("/" first),
 * every "%" followed by two hex digits; split at the first "?". */
static enum http_parse_result check_target(const char *t, size_t n, struct http_request *req)
{
    if (n == 0 || t[0] != '/')
        return fail(req, 400, "request target is not in origin-form");
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '%')
            continue;
        if (n - i < 3 || !is_hex((unsigned char)t[i + 1]) || !is_hex((unsigned char)t[i + 2]))
            return fail(req, 400, "malformed percent-encoding in request target");
    }
    const char *q = memchr(t, '?', n);
    req->path = t;
    req->path_len = q ? (size_t)(q - t) : n;
    if (q) {
        req->query = q + 1;
        req->query_len = n - req->path_len - 1;
    }
    return HTTP_PARSE_DONE;
}

/* parse_version — "HTTP/1.0" or "HTTP/1.1"; a well-formed other version is
 * 505 (RFC 9110 §15.6.6).  On an incomplete line, checks the prefix seen. */
static enum http_parse_result parse_version(const char *v, size_t n, bool complete,
                                            struct http_request *req)
{
    static const char proto[] = "HTTP/";
    size_t k = n < sizeof proto - 1 ? n : sizeof proto - 1;
    if (memcmp(v, proto, k) != 0 || n > 8)
        return fail(req, 400, "malformed HTTP version");
    if (!complete)
        return HTTP_PARSE_MORE;
    if (n != 8 || !is_digit((unsigned char)v[5]) || v[6] != '.' || !is_digit((unsigned char)v[7]))
        return fail(req, 400, "malformed HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(req, 505, "unsupported HTTP version");
    req->version_minor = v[7] - '0';
    return HTTP_PARSE_DONE;
}

static void set_method(const char *s, size_t n, struct http_request *req)
{
    req->method_text = s;
    req->method_len = n;
    if (n == 3 && memcmp(s, "GET", 3) == 0)
        req->method = HTTP_METHOD_GET; /* methods are case-sensitive, RFC 9110 §9.1 */
    else if (n == 4 && memcmp(s, "HEAD", 4) == 0)
        req->method = HTTP_METHOD_HEAD;
    else
        req->method = HTTP_METHOD_OTHER;
}

/*
 * parse_request_line — method SP request-target SP HTTP-version (RFC 9112
 * §3), s[0..n) without the CRLF.  When !complete, s is the part received so
 * far: refuse as early as the bytes allow, else MORE.
 */
static enum http_parse_result parse_request_line(const char *s, size_t n, bool complete,
                                                 struct http_request *req)
{
    size_t i = 0;
    while (i < n && i <= HTTP_METHOD_MAX_BYTES && is_tchar((unsigned char)s[i]))
        i++;
    if (i > HTTP_METHOD_MAX_BYTES)
        return fail(req, 400, "method too long");
    if (i == n)
        return complete ? fail(req, 400, "malformed request line") : HTTP_PARSE_MORE;
    if (i == 0 || s[i] != ' ')
        return fail(req, 400, "malformed request line");
    set_method(s, i, req);
    size_t t = ++i;
    while (i < n && s[i] != ' ') {
        if (!is_target_char((unsigned char)s[i]))
            return fail(req, 400, "invalid byte in request target");
        if (i - t >= HTTP_TARGET_MAX_BYTES)
            return fail(req, 414, "request target too long");
        i++;
    }
    if (i == n)
        return complete ? fail(req, 400, "malformed request line") : HTTP_PARSE_MORE;
    if (check_target(s + t, i - t, req) != HTTP_PARSE_DONE)
        return HTTP_PARSE_ERROR;
    return parse_version(s + i + 1, n - i - 1, complete, req);
}

/* parse_content_length — digits only (RFC 9110 §8.6); any value but zero
 * announces a body, which this server never accepts. */
static enum http_parse_result parse_content_length(const char *v, size_t n,
                                                   struct http_request *req)
{
    bool nonzero = false;
    if (n == 0)
        return fail(req, 400, "malformed Content-Length");
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)v[i]))
            return fail(req, 400, "malformed Content-Length");
        nonzero |= v[i] != '0';
    }
    return nonzero ? fail(req, 413, "request body not accepted") : HTTP_PARSE_DONE;
}

/*
 * parse_field — one field line, s[0..n) without the CRLF: token ":" OWS
 * value OWS (RFC 9112 §5).  The line scanner already refused control bytes;
 * values may hold obs-text.  Host must not repeat; a body is refused.
 */
static enum http_parse_result parse_field(const char *s, size_t n, struct field_state *st,
                                          struct http_request *req)
{
    if (s[0] == ' ' || s[0] == '\t')
        return fail(req, 400, "obsolete line folding");
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ':')
        return fail(req, 400, "malformed header field"); /* also "Name :", §5.1 */
    const char *v = s + i + 1, *end = s + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (name_is(s, i, "host") && ++st->hosts > 1)
        return fail(req, 400, "more than one Host field");
    if (name_is(s, i, "transfer-encoding"))
        return fail(req, 400, "Transfer-Encoding not accepted");
    if (name_is(s, i, "content-length")) {
        if (st->content_length)
            return fail(req, 400, "more than one Content-Length field");
        st->content_length = true;
        return parse_content_length(v, (size_t)(end - v), req);
    }
    return HTTP_PARSE_DONE;
}

/* more_or_full — the head is incomplete: read more, unless the buffer
 * already holds HTTP_HEAD_MAX_BYTES (431, RFC 6585 §5). */
static enum http_parse_result more_or_full(size_t len, struct http_request *req)
{
    if (len >= HTTP_HEAD_MAX_BYTES)
        return fail(req, 431, "request head too large");
    return HTTP_PARSE_MORE;
}

enum http_parse_result http_parse_request(const char *buf, size_t len, struct http_request *req)
{
    memset(req, 0, sizeof *req);
    size_t lim = len < HTTP_HEAD_MAX_BYTES ? len : HTTP_HEAD_MAX_BYTES;
    size_t end = 0;
    const char *why = "";
    enum line_status ls = scan_line(buf, 0, lim, &end, &why);
    if (ls == LINE_BAD)
        return fail(req, 400, why);
    if (ls == LINE_MORE) {
        size_t part = lim > 0 && buf[lim - 1] == '\r' ? lim - 1 : lim;
        if (parse_request_line(buf, part, false, req) == HTTP_PARSE_ERROR)
            return HTTP_PARSE_ERROR;
        return more_or_full(len, req);
    }
    if (parse_request_line(buf, end, true, req) == HTTP_PARSE_ERROR)
        return HTTP_PARSE_ERROR;

    struct field_state st = {0, false};
    size_t p = end + 2;
    for (;;) {
        ls = scan_line(buf, p, lim, &end, &why);
        if (ls == LINE_BAD)
            return fail(req, 400, why);
        if (ls == LINE_MORE)
            return more_or_full(len, req);
        if (end == p)
            break; /* the empty line ends the head */
        if (++req->fields > HTTP_FIELDS_MAX)
            return fail(req, 431, "too many header fields");
        if (parse_field(buf + p, end - p, &st, req) == HTTP_PARSE_ERROR)
            return HTTP_PARSE_ERROR;
        p = end + 2;
    }
    if (req->version_minor == 1 && st.hosts == 0)
        return fail(req, 400, "HTTP/1.1 request without Host"); /* RFC 9112 §3.2 */
    req->head_len = end + 2;
    return HTTP_PARSE_DONE;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int http_response_head(char *buf, size_t cap, int status, const char *content_type,
                       size_t body_len, const char *extra)
{
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "%s\r\n",
                     status, http_reason(status), content_type, body_len, extra ? extra : "");
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

int http_parse_status(const char *buf, size_t len, int *status)
{
    static const char pattern[] = "HTTP/1.# ###"; /* '#': a digit */
    size_t n = sizeof pattern - 1;
    for (size_t i = 0; i < n; i++) {
        if (i == len)
            return 0;
        unsigned char c = (unsigned char)buf[i];
        if (pattern[i] == '#' ? !is_digit(c) : c != (unsigned char)pattern[i])
            return -1;
    }
    if (len == n)
        return 0;
    if (buf[n] != ' ' && buf[n] != '\r')
        return -1;
    int code = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (code < 100)
        return -1;
    *status = code;
    return 1;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* decode — percent-decode v[0..n) into out; -1 on a bad escape, a control
 * byte or no room. */
static int decode(const char *v, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hex_digit(v[i + 1]), lo = hex_digit(v[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int http_query_param(const char *query, size_t len, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    int found = 0;
    if (cap == 0)
        return -1;
    out[0] = '\0';
    for (size_t i = 0; query && i <= len;) {
        const char *amp = memchr(query + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - query) : len;
        const char *eq = memchr(query + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (query + i)) : end - i;
        if (klen == nlen && memcmp(query + i, name, nlen) == 0) {
            if (found)
                return -1; /* twice: which one is meant? */
            found = 1;
            const char *v = eq ? eq + 1 : query + end;
            if (decode(v, (size_t)(query + end - v), out, cap) < 0)
                return -1;
        }
        if (!amp)
            break;
        i = end + 1;
    }
    return found;
}
