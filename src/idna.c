/*
 * idna — UTF-8 validation, Punycode and A-labels (see idna.h).
 *
 * Punycode is the bootstring of RFC 3492 §5 with its parameters: base 36,
 * tmin 1, tmax 26, skew 38, damp 700, initial bias 72, initial n 128.
 * Every arithmetic step is checked against overflow (§6.4) before it is
 * done.
 */
#include "idna.h"

#include <string.h>

enum { BASE = 36, TMIN = 1, TMAX = 26, SKEW = 38, DAMP = 700, INITIAL_BIAS = 72, INITIAL_N = 128 };

#define IDNA_CODE_POINTS_MAX IDNA_LABEL_MAX_BYTES /* a label never holds more */

bool idna_is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* utf8_next — the code point at s[*i], advancing *i; -1 when malformed. */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    size_t need;
    uint32_t cp, min;
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3, cp = c & 0x07, min = 0x10000;
    } else {
        return -1; /* a continuation byte, C0/C1 (overlong 2-byte) or F5..FF */
    }
    if (need > len - *i - 1)
        return -1;
    for (size_t k = 1; k <= need; k++) {
        unsigned char t = s[*i + k];
        if ((t & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (t & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1; /* overlong, out of range, or a surrogate */
    *i += need + 1;
    return (int32_t)cp;
}

bool idna_utf8_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len;)
        if (utf8_next((const unsigned char *)s, len, &i) < 0)
            return false;
    return true;
}

static char digit_char(uint32_t d)
{
    return (char)(d < 26 ? 'a' + d : '0' + (d - 26));
}

static int digit_value(char c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '0' && c <= '9')
        return c - '0' + 26;
    return -1;
}

/* adapt — the bias after a delta (RFC 3492 §6.1). */
static uint32_t adapt(uint32_t delta, uint32_t points, bool first)
{
    delta = first ? delta / DAMP : delta / 2;
    delta += delta / points;
    uint32_t k = 0;
    while (delta > ((BASE - TMIN) * TMAX) / 2) {
        delta /= BASE - TMIN;
        k += BASE;
    }
    return k + (BASE - TMIN + 1) * delta / (delta + SKEW);
}

static uint32_t threshold(uint32_t k, uint32_t bias)
{
    return k <= bias ? TMIN : k >= bias + TMAX ? TMAX : k - bias;
}

int idna_punycode_encode(const uint32_t *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t j = 0; j < n; j++) {
        if (in[j] < 0x80) {
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)in[j];
        }
    }
    size_t basic = o, handled = o;
    if (basic > 0) {
        if (o + 1 >= cap)
            return -1;
        out[o++] = '-';
    }
    uint32_t code = INITIAL_N, delta = 0, bias = INITIAL_BIAS;
    while (handled < n) {
        uint32_t m = UINT32_MAX;
        for (size_t j = 0; j < n; j++)
            if (in[j] >= code && in[j] < m)
                m = in[j];
        if ((m - code) > (UINT32_MAX - delta) / (handled + 1))
            return -1;
        delta += (m - code) * (uint32_t)(handled + 1);
        code = m;
        for (size_t j = 0; j < n; j++) {
            if (in[j] < code && ++delta == 0)
                return -1;
            if (in[j] != code)
                continue;
            uint32_t q = delta;
            for (uint32_t k = BASE;; k += BASE) {
                uint32_t t = threshold(k, bias);
                if (q < t)
                    break;
                if (o + 1 >= cap)
                    return -1;
                out[o++] = digit_char(t + (q - t) % (BASE - t));
                q = (q - t) / (BASE - t);
            }
            if (o + 1 >= cap)
                return -1;
            out[o++] = digit_char(q);
            bias = adapt(delta, (uint32_t)(handled + 1), handled == basic);
            delta = 0;
            handled++;
        }
        delta++;
        code++;
    }
    out[o] = '\0';
    return (int)o;
}

int idna_punycode_decode(const char *in, size_t len, uint32_t *out, size_t cap)
{
    size_t basic = 0, n_out = 0, start = 0;
    for (size_t j = 0; j < len; j++) /* the basic code points end at the last delimiter */
        if (in[j] == '-') {
            basic = j;
            start = j + 1;
        }
    for (size_t j = 0; j < basic; j++) {
        if ((unsigned char)in[j] >= 0x80 || n_out >= cap)
            return -1;
        out[n_out++] = (unsigned char)in[j];
    }
    uint32_t code = INITIAL_N, i = 0, bias = INITIAL_BIAS;
    for (size_t pos = start; pos < len;) {
        uint32_t old_i = i, w = 1;
        for (uint32_t k = BASE;; k += BASE) {
            if (pos >= len)
                return -1;
            int d = digit_value(in[pos++]);
            if (d < 0 || (uint32_t)d > (UINT32_MAX - i) / w)
                return -1;
            i += (uint32_t)d * w;
            uint32_t t = threshold(k, bias);
            if ((uint32_t)d < t)
                break;
            if (w > UINT32_MAX / (BASE - t))
                return -1;
            w *= BASE - t;
        }
        bias = adapt(i - old_i, (uint32_t)(n_out + 1), old_i == 0);
        if (i / (n_out + 1) > UINT32_MAX - code)
            return -1;
        code += i / (uint32_t)(n_out + 1);
        i %= (uint32_t)(n_out + 1);
        if (code < 0x80 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff) || n_out >= cap)
            return -1;
        memmove(out + i + 1, out + i, (n_out - i) * sizeof *out);
        out[i++] = code;
        n_out++;
    }
    return (int)n_out;
}

/* label_to_ascii — one label: copied lowercased when ASCII, else
 * "xn--" + Punycode.  Returns the bytes written, -1 on failure. */
static int label_to_ascii(const char *s, size_t len, char *out, size_t cap)
{
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return -1; /* controls and spaces are in no host name */
    if (idna_is_ascii(s, len)) {
        if (len > IDNA_LABEL_MAX_BYTES || len >= cap)
            return -1;
        for (size_t i = 0; i < len; i++)
            out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
        return (int)len;
    }
    uint32_t cps[IDNA_CODE_POINTS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int32_t cp = utf8_next((const unsigned char *)s, len, &i);
        if (cp < 0 || n == IDNA_CODE_POINTS_MAX)
            return -1;
        cps[n++] = (uint32_t)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    }
    if (cap < 5)
        return -1;
    memcpy(out, "xn--", 4);
    int p = idna_punycode_encode(cps, n, out + 4, cap - 4);
    if (p < 0 || 4 + p > IDNA_LABEL_MAX_BYTES)
        return -1;
    return 4 + p;
}

int idna_to_ascii(const char *domain, size_t len, char *out, size_t cap)
{
    if (!idna_utf8_valid(domain, len) || cap == 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i <= len;) {
        const char *dot = memchr(domain + i, '.', len - i);
        size_t end = dot ? (size_t)(dot - domain) : len;
        if (o > 0) {
            if (o + 1 >= cap)
                return -1;
            out[o++] = '.';
        }
        int n = label_to_ascii(domain + i, end - i, out + o, cap - o);
        if (n < 0)
            return -1;
        o += (size_t)n;
        if (!dot)
            break;
        i = end + 1;
    }
    if (o > IDNA_DOMAIN_MAX_BYTES || o >= cap)
        return -1;
    out[o] = '\0';
    return (int)o;
}

const char *idna_alabel(const char *domain, size_t len, char *buf, size_t cap)
{
    if (idna_is_ascii(domain, len))
        return domain;
    return idna_to_ascii(domain, len, buf, cap) > 0 ? buf : NULL;
}
