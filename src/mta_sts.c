/*
 * mta_sts — RFC 8461 parsers (see mta_sts.h).  Every parser walks its
 * input with explicit lengths: nothing here relies on a NUL terminator,
 * and the input may hold NUL bytes (they make it invalid).
 */
#include "mta_sts.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool starts(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(p, lit, l) == 0;
}

/* ---- the TXT record ------------------------------------------------------------ */

/* txt_field — one "name=value" of an STSv1 record: the id into id (once),
 * an extension checked and ignored.  0, or -1. */
static int txt_field(const char *f, size_t n, char id[MTA_STS_ID_MAX_BYTES + 1], bool *have_id)
{
    const char *eq = memchr(f, '=', n);
    if (!eq || eq == f || eq + 1 == f + n)
        return -1;
    size_t nl = (size_t)(eq - f), vl = n - nl - 1;
    const char *v = eq + 1;
    if (nl == 2 && memcmp(f, "id", 2) == 0) {
        if (*have_id || vl > MTA_STS_ID_MAX_BYTES)
            return -1;
        for (size_t i = 0; i < vl; i++)
            if (!is_alnum(v[i]))
                return -1;
        memcpy(id, v, vl);
        id[vl] = '\0';
        *have_id = true;
        return 0;
    }
    if (!is_alnum(f[0]) || nl > 32)
        return -1;
    for (size_t i = 1; i < nl; i++)
        if (!is_alnum(f[i]) && f[i] != '_' && f[i] != '-' && f[i] != '.')
            return -1;
    for (size_t i = 0; i < vl; i++)
        if (v[i] < 0x21 || v[i] > 0x7e || v[i] == ';' || v[i] == '=')
            return -1;
    return 0;
}

int mta_sts_parse_txt(const char *txt, size_t len, char id[MTA_STS_ID_MAX_BYTES + 1])
{
    static const char version[] = "v=STSv1";
    size_t i = sizeof version - 1;
    bool have_id = false;
    if (!starts(txt, len, version) || (len > i && !is_wsp(txt[i]) && txt[i] != ';'))
        return 0;
    for (;;) {
        while (i < len && is_wsp(txt[i]))
            i++;
        if (i == len)
            break;
        if (txt[i++] != ';')
            return -1;
        while (i < len && is_wsp(txt[i]))
            i++;
        if (i == len)
            break; /* a trailing ';' */
        size_t start = i;
        while (i < len && txt[i] != ';' && !is_wsp(txt[i]))
            i++;
        if (txt_field(txt + start, i - start, id, &have_id) < 0)
            return -1;
    }
    return have_id ? 1 : -1;
}

/* ---- the policy file -------------------------------------------------------------- */

/* valid_host — LDH labels of 1..63 bytes, 1..253 bytes in all. */
static bool valid_host(const char *p, size_t n)
{
    size_t label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (is_alnum(p[i]) || p[i] == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

static int fail(char *err, size_t err_len, const char *what, size_t line)
{
    snprintf(err, err_len, "line %zu: %s", line, what);
    return -1;
}

/* policy_line — one "key: value" line (without its end). */
static int policy_line(const char *k, size_t kl, const char *v, size_t vl, struct mta_sts_policy *p, unsigned *seen,
                       char *err, size_t err_len, size_t line)
{
    if (kl == 7 && memcmp(k, "version", 7) == 0) {
        if (*seen & 1 || vl != 5 || memcmp(v, "STSv1", 5) != 0)
            return fail(err, err_len, "version is not STSv1 (or repeated)", line);
        *seen |= 1;
    } else if (kl == 4 && memcmp(k, "mode", 4) == 0) {
        if (*seen & 2)
            return fail(err, err_len, "mode repeated", line);
        if (vl == 7 && memcmp(v, "enforce", 7) == 0)
            p->mode = MTA_STS_ENFORCE;
        else if (vl == 7 && memcmp(v, "testing", 7) == 0)
            p->mode = MTA_STS_TESTING;
        else if (vl == 4 && memcmp(v, "none", 4) == 0)
            p->mode = MTA_STS_NONE;
        else
            return fail(err, err_len, "mode is not enforce, testing or none", line);
        *seen |= 2;
    } else if (kl == 7 && memcmp(k, "max_age", 7) == 0) {
        int64_t a = 0;
        if (*seen & 4 || vl == 0 || vl > 10)
            return fail(err, err_len, "max_age malformed (or repeated)", line);
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9')
                return fail(err, err_len, "max_age is not a number", line);
            a = a * 10 + (v[i] - '0');
        }
        if (a > MTA_STS_MAX_AGE_MAX_S)
            return fail(err, err_len, "max_age over 31557600", line);
        p->max_age_s = a;
        *seen |= 4;
    } else if (kl == 2 && memcmp(k, "mx", 2) == 0) {
        bool wild = vl > 2 && v[0] == '*' && v[1] == '.';
        if (vl > MTA_STS_MX_PATTERN_MAX_BYTES || !valid_host(v + (wild ? 2 : 0), vl - (wild ? 2 : 0)))
            return fail(err, err_len, "mx is not a host name or *.domain pattern", line);
        if (p->mx_count < MTA_STS_MX_MAX) {
            for (size_t i = 0; i < vl; i++)
                p->mx[p->mx_count][i] = util_lower(v[i]);
            p->mx[p->mx_count++][vl] = '\0';
        }
    } else {
        for (size_t i = 0; i < kl; i++)
            if (!is_alnum(k[i]) && k[i] != '_' && k[i] != '-' && k[i] != '.')
                return fail(err, err_len, "malformed key", line);
    }
    return 0;
}

int mta_sts_parse_policy(const char *text, size_t len, struct mta_sts_policy *p, char *err, size_t err_len)
{
    unsigned seen = 0;
    size_t line = 0;
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < len;) {
        const char *s = text + i, *nl = memchr(s, '\n', len - i);
        size_t n = nl ? (size_t)(nl - s) : len - i;
        i += n + (nl != NULL);
        line++;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        while (n > 0 && is_wsp(s[n - 1]))
            n--;
        if (n == 0)
            continue;
        const char *colon = memchr(s, ':', n);
        if (!colon || colon == s)
            return fail(err, err_len, "not a key: value line", line);
        size_t kl = (size_t)(colon - s), vs = kl + 1;
        while (vs < n && is_wsp(s[vs]))
            vs++;
        for (size_t c = vs; c < n; c++)
            if ((unsigned char)s[c] < 0x20 || s[c] == 0x7f)
                return fail(err, err_len, "control character in a value", line);
        if (policy_line(s, kl, s + vs, n - vs, p, &seen, err, err_len, line) < 0)
            return -1;
    }
    if ((seen & 7) != 7) {
        snprintf(err, err_len, "missing %s", !(seen & 1) ? "version" : !(seen & 2) ? "mode" : "max_age");
        return -1;
    }
    if (p->mode != MTA_STS_NONE && p->mx_count == 0) {
        snprintf(err, err_len, "no mx line");
        return -1;
    }
    return 0;
}

/* ---- MX patterns ------------------------------------------------------------------- */

static bool host_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (util_lower(a[i]) != util_lower(b[i]))
            return false;
    return true;
}

bool mta_sts_mx_match(const char *pattern, const char *host)
{
    size_t pn = strlen(pattern), hn = strlen(host);
    if (pn > 0 && pattern[pn - 1] == '.')
        pn--;
    if (hn > 0 && host[hn - 1] == '.')
        hn--;
    if (pn == 0 || hn == 0)
        return false;
    if (pn > 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = memchr(host, '.', hn);
        if (!dot || dot == host)
            return false;
        size_t rest = hn - (size_t)(dot + 1 - host);
        return host_eq(dot + 1, rest, pattern + 2, pn - 2);
    }
    return host_eq(pattern, pn, host, hn);
}

bool mta_sts_policy_allows(const struct mta_sts_policy *p, const char *host)
{
    for (size_t i = 0; i < p->mx_count; i++)
        if (mta_sts_mx_match(p->mx[i], host))
            return true;
    return false;
}

const char *mta_sts_mode_name(enum mta_sts_mode m)
{
    return m == MTA_STS_ENFORCE ? "enforce" : m == MTA_STS_TESTING ? "testing" : "none";
}

/* ---- the HTTP response ------------------------------------------------------------ */

struct head {
    int status;
    bool have_type, text_plain, encoded;
    bool have_length;
    uint64_t length;
};

static enum mta_sts_http http_fail(char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "%s", what);
    return MTA_STS_HTTP_ERROR;
}

/* trimmed — v[0..*n) without surrounding blanks. */
static const char *trimmed(const char *v, size_t *n)
{
    while (*n > 0 && is_wsp(*v)) {
        v++;
        (*n)--;
    }
    while (*n > 0 && is_wsp(v[*n - 1]))
        (*n)--;
    return v;
}

/* header — one "Name: value" line of the head.  0, or -1 with err. */
static int header(const char *s, size_t n, struct head *h, char *err, size_t err_len)
{
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return http_fail(err, err_len, "malformed response header"), -1;
    size_t kl = (size_t)(colon - s), vl = n - kl - 1;
    const char *v = trimmed(colon + 1, &vl);
    for (size_t i = 0; i < kl; i++)
        if (!is_alnum(s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i]))
            return http_fail(err, err_len, "malformed response header name"), -1;
    if (util_ieq(s, kl, "Content-Type")) {
        size_t tl = vl;
        const char *semi = memchr(v, ';', vl);
        if (semi)
            tl = (size_t)(semi - v);
        const char *t = trimmed(v, &tl);
        h->have_type = true;
        h->text_plain = util_ieq(t, tl, "text/plain");
    } else if (util_ieq(s, kl, "Content-Length")) {
        uint64_t len = 0;
        if (vl == 0 || vl > 12)
            return http_fail(err, err_len, "malformed Content-Length"), -1;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9')
                return http_fail(err, err_len, "malformed Content-Length"), -1;
            len = len * 10 + (uint64_t)(v[i] - '0');
        }
        if (h->have_length && h->length != len)
            return http_fail(err, err_len, "conflicting Content-Length headers"), -1;
        h->have_length = true;
        h->length = len;
    } else if (util_ieq(s, kl, "Transfer-Encoding") || util_ieq(s, kl, "Content-Encoding")) {
        h->encoded |= !util_ieq(v, vl, "identity");
    }
    return 0;
}

/* status_line — "HTTP/1.x NNN reason". */
static int status_line(const char *s, size_t n, struct head *h)
{
    if (n < 12 || !starts(s, n, "HTTP/1.") || s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    if (n > 12 && s[12] != ' ')
        return -1;
    h->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    return 0;
}

/* head_end — the offset just past the empty line ending the head, or 0. */
static size_t head_end(const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < n && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* parse_head — the status line and headers in buf[0..end). */
static int parse_head(const char *buf, size_t end, struct head *h, char *err, size_t err_len)
{
    size_t line = 0;
    for (size_t i = 0; i < end;) {
        const char *s = buf + i, *nl = memchr(s, '\n', end - i);
        size_t n = (size_t)(nl - s); /* the head ends in LF: nl is found */
        i += n + 1;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (memchr(s, '\0', n) || memchr(s, '\r', n))
            return http_fail(err, err_len, "NUL or bare CR in the response head"), -1;
        if (n == 0)
            break;
        if (line++ == 0) {
            if (status_line(s, n, h) < 0)
                return http_fail(err, err_len, "malformed status line"), -1;
        } else if (is_wsp(s[0])) {
            return http_fail(err, err_len, "folded response header"), -1;
        } else if (header(s, n, h, err, err_len) < 0) {
            return -1;
        }
    }
    return 0;
}

enum mta_sts_http mta_sts_parse_http(const char *buf, size_t n, bool eof, const char **body, size_t *body_len,
                                     char *err, size_t err_len)
{
    struct head h = {0};
    size_t end = head_end(buf, n < MTA_STS_HEAD_MAX_BYTES ? n : MTA_STS_HEAD_MAX_BYTES);
    if (end == 0) {
        if (n >= MTA_STS_HEAD_MAX_BYTES)
            return http_fail(err, err_len, "response head over 8192 bytes");
        return eof ? http_fail(err, err_len, "connection closed before the end of the response head")
                   : MTA_STS_HTTP_MORE;
    }
    if (parse_head(buf, end, &h, err, err_len) < 0)
        return MTA_STS_HTTP_ERROR;
    if (h.status != 200) {
        snprintf(err, err_len, "HTTP status %d%s", h.status,
                 h.status / 100 == 3 ? " (redirects are not followed, RFC 8461 §3.3)" : "");
        return MTA_STS_HTTP_ERROR;
    }
    if (!h.have_type || !h.text_plain)
        return http_fail(err, err_len, "Content-Type is not text/plain");
    if (h.encoded)
        return http_fail(err, err_len, "transfer or content encoding (chunked, gzip…) is not supported");
    size_t got = n - end;
    if (h.have_length) {
        if (h.length > MTA_STS_BODY_MAX_BYTES)
            return http_fail(err, err_len, "policy body over 64 KB");
        if (got < h.length)
            return eof ? http_fail(err, err_len, "connection closed before the end of the body") : MTA_STS_HTTP_MORE;
        *body = buf + end;
        *body_len = (size_t)h.length;
        return MTA_STS_HTTP_DONE;
    }
    if (got > MTA_STS_BODY_MAX_BYTES)
        return http_fail(err, err_len, "policy body over 64 KB");
    if (!eof)
        return MTA_STS_HTTP_MORE;
    *body = buf + end;
    *body_len = got;
    return MTA_STS_HTTP_DONE;
}
