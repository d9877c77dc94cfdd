/*
 * smtp_proto — pure SMTP syntax (see smtp_proto.h).
 *
 * The address grammar follows RFC 5321 §4.1.2 closely; the few tolerances
 * (space after "FROM:", missing angle brackets, a trailing dot in the
 * domain) are those real clients need.  CR, LF and NUL are refused
 * everywhere: nothing with them reaches the spool, a header or a log.
 */
#include "smtp_proto.h"

#include "idna.h"
#include "util.h"

#include <stdint.h>
#include <string.h>

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    {"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA}, {"RSET", SMTP_VERB_RSET},
    {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT}, {"VRFY", SMTP_VERB_VRFY},
    {"EXPN", SMTP_VERB_EXPN}, {"HELP", SMTP_VERB_HELP}, {"STARTTLS", SMTP_VERB_STARTTLS},
    {"AUTH", SMTP_VERB_AUTH}, {"GET", SMTP_VERB_HTTP}, {"POST", SMTP_VERB_HTTP},
    {"CONNECT", SMTP_VERB_HTTP}, {"HEAD", SMTP_VERB_HTTP}, {"PUT", SMTP_VERB_HTTP},
    {"BDAT", SMTP_VERB_BDAT},
};

void smtp_parse_command(const char *line, size_t len, struct smtp_command *out)
{
    size_t v = 0;
    while (v < len && line[v] != ' ')
        v++;
    out->verb = SMTP_VERB_UNKNOWN;
    out->arg = line + len;
    out->arg_len = 0;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (util_ieq(line, v, verbs[i].name)) {
            out->verb = verbs[i].verb;
            break;
        }
    }
    if (v < len) {
        out->arg = line + v + 1;
        out->arg_len = len - v - 1;
    }
}

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* atext of RFC 5322 §3.2.3 */
static bool is_atext(unsigned char c)
{
    return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

bool smtp_valid_domain(const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > SMTP_DOMAIN_MAX_BYTES)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alnum(c) || (c == '-' && label > 0) || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return s[len - 1] != '-' && s[len - 1] != '.'; /* "a.." is an empty label, not the root */
}

/* address literal "[…]": IPv4, "IPv6:…" or a General-address-literal; we
 * check only the character set, delivery does not use literals. */
static bool valid_literal(const char *s, size_t len)
{
    if (len < 3 || s[0] != '[' || s[len - 1] != ']')
        return false;
    for (size_t i = 1; i + 1 < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alnum(c) && c != '.' && c != ':' && c != '-')
            return false;
    }
    return true;
}

bool smtp_valid_helo(const char *s, size_t len)
{
    if (len > SMTP_DOMAIN_MAX_BYTES)
        return false;
    return smtp_valid_domain(s, len) || valid_literal(s, len);
}

/* local part: Dot-string or Quoted-string (RFC 5321 §4.1.2). */
static bool valid_local(const char *s, size_t len)
{
    if (len == 0 || len > SMTP_LOCAL_MAX_BYTES)
        return false;
    if (s[0] == '"') {
        if (len < 2 || s[len - 1] != '"')
            return false;
        for (size_t i = 1; i + 1 < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\\') {
                if (++i + 1 >= len || s[i] < 32 || s[i] > 126)
                    return false;
            } else if (c < 32 || c == 127 || c == '"') { /* >= 0x80: UTF-8, RFC 6531 §3.3 */
                return false;
            }
        }
        return true;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (i == 0 || i + 1 == len || s[i - 1] == '.')
                return false;
        } else if (!is_atext(c) && c < 0x80) {
            return false;
        }
    }
    return true;
}

/* valid_domain_utf8 — an ASCII domain as smtp_valid_domain, or one with
 * U-labels whose A-label form is one (the caller checked the UTF-8). */
static bool valid_domain_utf8(const char *s, size_t len)
{
    if (idna_is_ascii(s, len))
        return smtp_valid_domain(s, len);
    char alabel[SMTP_DOMAIN_MAX_BYTES + 1];
    if (len > 0 && s[len - 1] == '.')
        len--;
    int n = idna_to_ascii(s, len, alabel, sizeof alabel);
    return n > 0 && smtp_valid_domain(alabel, (size_t)n);
}

/* find the '@' that separates local part and domain, outside quotes. */
static size_t find_at(const char *s, size_t len)
{
    bool quoted = false;
    size_t at = len;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' && quoted)
            i++;
        else if (s[i] == '"')
            quoted = !quoted;
        else if (s[i] == '@' && !quoted)
            at = i;
    }
    return at;
}

/* parse_path — "<…>" (or a bare address) at s; *used gets the bytes eaten. */
static enum smtp_path_error parse_path(const char *s, size_t len, struct smtp_path *out,
                                       size_t *used)
{
    size_t i = 0, start, end;
    bool bracket = len > 0 && s[0] == '<';
    if (bracket) {
        bool quoted = false;
        for (i = 1; i < len; i++) {
            if (s[i] == '\\' && quoted)
                i++;
            else if (s[i] == '"')
                quoted = !quoted;
            else if (s[i] == '>' && !quoted)
                break;
        }
        if (i >= len)
            return SMTP_PATH_SYNTAX;
        start = 1;
        end = i;
        *used = i + 1;
    } else {
        while (i < len && s[i] != ' ')
            i++;
        start = 0;
        end = i;
        *used = i;
    }
    /* source route "@a,@b:" (RFC 5321 §4.1.2 A-d-l): accepted and ignored */
    if (end > start && s[start] == '@') {
        const char *colon = memchr(s + start, ':', end - start);
        if (!colon)
            return SMTP_PATH_SYNTAX;
        start = (size_t)(colon - s) + 1;
    }
    size_t n = end - start;
    if (n == 0) {
        out->null = bracket;
        return bracket ? SMTP_PATH_OK : SMTP_PATH_SYNTAX;
    }
    if (n > SMTP_PATH_MAX_BYTES)
        return SMTP_PATH_TOO_LONG;
    const char *a = s + start;
    bool utf8 = !idna_is_ascii(a, n);
    if (utf8 && !idna_utf8_valid(a, n))
        return SMTP_PATH_UTF8;
    size_t at = find_at(a, n);
    if (at == n) {
        if (!valid_local(a, n))
            return SMTP_PATH_SYNTAX;
    } else if (!valid_local(a, at)) {
        return at > SMTP_LOCAL_MAX_BYTES ? SMTP_PATH_TOO_LONG : SMTP_PATH_SYNTAX;
    } else if (at + 1 < n && a[at + 1] == '[') {
        if (!valid_literal(a + at + 1, n - at - 1))
            return SMTP_PATH_SYNTAX;
    } else if (!valid_domain_utf8(a + at + 1, n - at - 1)) {
        return SMTP_PATH_SYNTAX;
    }
    if (util_copy(out->addr, sizeof out->addr, a, n) < 0)
        return SMTP_PATH_TOO_LONG;
    out->utf8 = utf8;
    out->addr_len = n;
    out->at = at;
    return SMTP_PATH_OK;
}

static bool parse_size(const char *v, size_t n, int64_t *out)
{
    int64_t x = 0;
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return true;
}

/* one "KEY[=VALUE]" parameter (RFC 5321 §4.1.2 esmtp-param) */
static enum smtp_path_error parse_param(const char *p, size_t n, bool mail, struct smtp_path *out)
{
    const char *eq = memchr(p, '=', n);
    size_t klen = eq ? (size_t)(eq - p) : n;
    const char *v = eq ? eq + 1 : NULL;
    size_t vlen = eq ? n - klen - 1 : 0;
    if (klen == 0)
        return SMTP_PATH_PARAM_SYNTAX;
    for (size_t i = 0; i < klen; i++)
        if (!is_alnum((unsigned char)p[i]) && p[i] != '-')
            return SMTP_PATH_PARAM_SYNTAX;
    for (size_t i = 0; i < vlen; i++)
        if ((unsigned char)v[i] < 33 || (unsigned char)v[i] > 126 || v[i] == '=')
            return SMTP_PATH_PARAM_SYNTAX;
    if (mail && util_ieq(p, klen, "SIZE")) {
        return v && parse_size(v, vlen, &out->size) ? SMTP_PATH_OK : SMTP_PATH_PARAM_SYNTAX;
    }
    if (mail && util_ieq(p, klen, "BODY")) {
        if (v && util_ieq(v, vlen, "7BIT"))
            out->body = SMTP_BODY_7BIT;
        else if (v && util_ieq(v, vlen, "8BITMIME"))
            out->body = SMTP_BODY_8BITMIME;
        else if (v && util_ieq(v, vlen, "BINARYMIME"))
            out->body = SMTP_BODY_BINARYMIME; /* RFC 3030 §3: BDAT only */
        else
            return SMTP_PATH_PARAM_UNKNOWN;
        return SMTP_PATH_OK;
    }
    if (mail && util_ieq(p, klen, "SMTPUTF8")) {
        out->smtputf8 = true;
        return v ? SMTP_PATH_PARAM_SYNTAX : SMTP_PATH_OK; /* RFC 6531 §3.4: no value */
    }
    if (mail && util_ieq(p, klen, "AUTH"))
        return v ? SMTP_PATH_OK : SMTP_PATH_PARAM_SYNTAX; /* RFC 4954 §5: accepted, unused */
    int dsn = dsn_parse_param(p, klen, v, vlen, mail, &out->dsn); /* RFC 3461 */
    if (dsn <= 0)
        return dsn == 0 ? SMTP_PATH_OK : SMTP_PATH_PARAM_SYNTAX;
    return SMTP_PATH_PARAM_UNKNOWN;
}

static enum smtp_path_error parse_args(const char *arg, size_t len, const char *prefix, bool mail,
                                       struct smtp_path *out)
{
    size_t plen = strlen(prefix), used;
    memset(out, 0, sizeof *out);
    out->size = -1;
    if (memchr(arg, '\r', len) || memchr(arg, '\n', len) || memchr(arg, '\0', len))
        return SMTP_PATH_SYNTAX;
    if (len < plen || !util_ieq(arg, plen, prefix))
        return SMTP_PATH_SYNTAX;
    size_t i = plen;
    while (i < len && arg[i] == ' ')
        i++;
    enum smtp_path_error e = parse_path(arg + i, len - i, out, &used);
    /* malformed UTF-8: the parameters still say whether it is 553 5.6.7 */
    if (e != SMTP_PATH_OK && e != SMTP_PATH_UTF8)
        return e;
    enum smtp_path_error path = e;
    i += used;
    while (i < len) {
        if (arg[i] != ' ')
            return SMTP_PATH_SYNTAX;
        while (i < len && arg[i] == ' ')
            i++;
        size_t s = i;
        while (i < len && arg[i] != ' ')
            i++;
        if (i > s && (e = parse_param(arg + s, i - s, mail, out)) != SMTP_PATH_OK)
            return e;
    }
    return path;
}

enum smtp_path_error smtp_parse_mail(const char *arg, size_t len, struct smtp_path *out)
{
    enum smtp_path_error e = parse_args(arg, len, "FROM:", true, out);
    /* RFC 6531 §3.4: UTF-8 only in a transaction that asked for it */
    if ((e == SMTP_PATH_UTF8 || (e == SMTP_PATH_OK && out->utf8)) && !out->smtputf8)
        return SMTP_PATH_SYNTAX;
    /* RFC 5321 §4.1.2: a Domain has no trailing dot.  The sender domain is
     * what the policy checks and what the From: header is compared with,
     * so it is refused rather than guessed at. */
    if (e == SMTP_PATH_OK && out->addr_len > 0 && out->addr[out->addr_len - 1] == '.')
        return SMTP_PATH_TRAILING_DOT;
    return e;
}

enum smtp_path_error smtp_parse_rcpt(const char *arg, size_t len, struct smtp_path *out)
{
    enum smtp_path_error e = parse_args(arg, len, "TO:", false, out);
    if (e != SMTP_PATH_OK)
        return e;
    if (out->null || out->at == out->addr_len)
        return SMTP_PATH_NO_DOMAIN;
    if (out->addr[out->at + 1] == '[')
        return SMTP_PATH_LITERAL;
    /* a recipient domain's trailing dot (tolerated) is not relayed */
    if (out->addr[out->addr_len - 1] == '.')
        out->addr[--out->addr_len] = '\0';
    return SMTP_PATH_OK;
}

int smtp_header_count(const char *h, size_t len, const char *name)
{
    size_t n = strlen(name);
    int count = 0;
    for (size_t i = 0; i < len;) {
        if (len - i >= n && util_ieq(h + i, n, name))
            count++;
        const char *nl = memchr(h + i, '\n', len - i);
        if (!nl)
            break;
        i = (size_t)(nl - h) + 1;
    }
    return count;
}

int smtp_parse_reply_line(const char *line, size_t len, int *code, bool *last, const char **text,
                          size_t *text_len)
{
    if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
        line[2] < '0' || line[2] > '9')
        return -1;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return -1;
    *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    *last = len == 3 || line[3] == ' ';
    *text = len > 4 ? line + 4 : line + len;
    *text_len = len > 4 ? len - 4 : 0;
    return 0;
}

/* ---- DATA decoder ------------------------------------------------------ */

enum { DOT_SOL = 0, DOT_LINE, DOT_CR, DOT_DOT, DOT_DOT_CR };

void smtp_dot_init(struct smtp_dot *d)
{
    d->state = DOT_SOL;
    d->bare = false;
    d->nul = false;
    d->done = false;
}

/* plain_run — how many bytes from p on are none of NUL, CR, LF: eight at
 * a time (a word has a zero byte where (x - 0x01..) & ~x & 0x80.. is set),
 * the rest one by one.  The DATA decoder copies such runs whole. */
static size_t plain_run(const char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v, cr, lf;
        memcpy(&v, p + i, 8);
        cr = v ^ (ones * '\r');
        lf = v ^ (ones * '\n');
        if (((v - ones) & ~v & highs) | ((cr - ones) & ~cr & highs) | ((lf - ones) & ~lf & highs))
            break;
    }
    while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
        i++;
    return i;
}

size_t smtp_dot_feed(struct smtp_dot *d, const char *in, size_t n, char *out, size_t *out_len)
{
    size_t o = 0, i;
    for (i = 0; i < n && !d->done; i++) {
        if (d->state == DOT_LINE) {
            /* inside a line only CR, LF and NUL mean anything */
            size_t run = plain_run(in + i, n - i);
            memcpy(out + o, in + i, run);
            o += run;
            i += run;
            if (i == n)
                break;
        }
        char c = in[i];
        /* a NUL could hide a header from the From check ("From\0:") and
         * means different things to different parsers downstream */
        if (c == '\0')
            d->nul = true;
        switch (d->state) {
        case DOT_SOL:
        case DOT_LINE:
            if (c == '\r') {
                d->state = DOT_CR;
            } else if (c == '.' && d->state == DOT_SOL) {
                d->state = DOT_DOT;
            } else {
                if (c == '\n')
                    d->bare = true; /* a bare LF never starts a line */
                out[o++] = c;
                d->state = DOT_LINE;
            }
            break;
        case DOT_CR:
            out[o++] = '\r';
            if (c == '\n') {
                out[o++] = '\n';
                d->state = DOT_SOL;
            } else if (c == '\r') {
                d->bare = true; /* the previous CR was bare */
            } else {
                d->bare = true;
                out[o++] = c;
                d->state = DOT_LINE;
            }
            break;
        case DOT_DOT:
            /* RFC 5321 §4.5.2: a leading dot followed by more is removed */
            if (c == '\r') {
                d->state = DOT_DOT_CR;
            } else {
                if (c == '\n')
                    d->bare = true;
                out[o++] = c;
                d->state = DOT_LINE;
            }
            break;
        case DOT_DOT_CR:
            if (c == '\n') {
                d->done = true;
            } else {
                d->bare = true;
                out[o++] = '\r';
                if (c == '\r') {
                    d->state = DOT_CR;
                } else {
                    out[o++] = c;
                    d->state = DOT_LINE;
                }
            }
            break;
        }
    }
    *out_len = o;
    return i;
}

size_t smtp_dot_stuff(const char *in, size_t n, char *out, bool *sol)
{
    size_t o = 0, i = 0;
    while (i < n) {
        if (*sol && in[i] == '.')
            out[o++] = '.';
        /* the rest of this line, its LF included, goes out as it is */
        const char *lf = memchr(in + i, '\n', n - i);
        size_t end = lf ? (size_t)(lf - in) + 1 : n;
        memcpy(out + o, in + i, end - i);
        o += end - i;
        i = end;
        *sol = lf != NULL;
    }
    return o;
}

/* ---- CHUNKING (RFC 3030) ------------------------------------------------ */

int smtp_parse_bdat(const char *arg, size_t len, int64_t *size, bool *last)
{
    size_t i = 0;
    int64_t n = 0;
    while (i < len && arg[i] >= '0' && arg[i] <= '9' && i < 18)
        n = n * 10 + (arg[i++] - '0');
    if (i == 0 || (i < len && arg[i] != ' '))
        return -1;
    *size = n;
    *last = false;
    if (i == len)
        return 0;
    while (i < len && arg[i] == ' ')
        i++;
    size_t w = i;
    while (i < len && arg[i] != ' ')
        i++;
    if (!util_ieq(arg + w, i - w, "LAST"))
        return -1;
    while (i < len && arg[i] == ' ')
        i++;
    *last = true;
    return i == len ? 0 : -1;
}

void smtp_chunk_scan(struct smtp_dot *d, const char *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '\0')
            d->nul = true;
        if (d->state == DOT_CR && c != '\n')
            d->bare = true; /* the CR before was bare */
        if (c == '\n' && d->state != DOT_CR)
            d->bare = true;
        d->state = c == '\r' ? DOT_CR : c == '\n' ? DOT_SOL : DOT_LINE;
    }
}

bool smtp_chunk_end(struct smtp_dot *d)
{
    if (d->state == DOT_CR)
        d->bare = true;
    d->done = true;
    return d->state == DOT_LINE;
}
