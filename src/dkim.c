/*
 * dkim — canonicalization, the signed header list, the DKIM-Signature text,
 * key records and Ed25519 PKCS#8 keys (see dkim.h).  Every parser here
 * reads bytes a client or a DNS server chose: bounds are written as
 * lengths, the DER reader's error is sticky, and nothing is allocated.
 */
#include "dkim.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* SPEC §8.3: From (oversigned), then these where present. */
static const char *const signed_names[DKIM_NAMES] = {
    "from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", "reply-to", "in-reply-to", "references", "list-unsubscribe",
    "list-unsubscribe-post",
};

#define DKIM_FOLD_COLUMN 76

const char *dkim_alg_name(enum dkim_alg a)
{
    return a == DKIM_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

const char *dkim_key_type(enum dkim_alg a)
{
    return a == DKIM_ED25519_SHA256 ? "ed25519" : "rsa";
}

void dkim_sha256_sink(void *sha_state, const char *p, size_t n)
{
    crypto_sha256_add(sha_state, p, n);
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- body (RFC 6376 §3.4.4) ------------------------------------------------ */

void dkim_body_init(struct dkim_body *b, dkim_sink_fn sink, void *ctx)
{
    memset(b, 0, sizeof *b);
    b->sink = sink;
    b->ctx = ctx;
}

static void body_flush(struct dkim_body *b)
{
    if (b->len)
        b->sink(b->ctx, b->buf, b->len);
    b->len = 0;
}

static void body_out(struct dkim_body *b, const char *p, size_t n)
{
    if (n > sizeof b->buf - b->len) {
        body_flush(b);
        if (n > sizeof b->buf) {
            b->sink(b->ctx, p, n);
            return;
        }
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

/* content — the start of (more) line content: the line ends held back were
 * not the body's last, and white space before it is one space. */
static void content(struct dkim_body *b)
{
    for (; b->held_crlf > 0; b->held_crlf--)
        body_out(b, "\r\n", 2);
    if (b->wsp)
        body_out(b, " ", 1);
    b->wsp = false;
    b->any = true;
}

void dkim_body_add(struct dkim_body *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (b->cr) {
            b->cr = false;
            if (c == '\n') {
                b->wsp = false; /* white space at the end of a line goes */
                b->held_crlf++;
                continue;
            }
            content(b);
            body_out(b, "\r", 1);
        }
        if (c == '\r') {
            b->cr = true;
        } else if (is_wsp(c)) {
            b->wsp = true;
        } else {
            size_t j = i + 1; /* a run of ordinary bytes goes out in one piece */
            while (j < n && p[j] != '\r' && !is_wsp(p[j]))
                j++;
            content(b);
            body_out(b, p + i, j - i);
            i = j - 1;
        }
    }
}

void dkim_body_end(struct dkim_body *b)
{
    if (b->cr) {
        content(b);
        body_out(b, "\r", 1);
    }
    if (b->any)
        body_out(b, "\r\n", 2); /* the last line's end, or the one a body without it gets */
    body_flush(b);
    b->held_crlf = 0;
    b->any = b->wsp = b->cr = false;
}

/* ---- header fields (RFC 6376 §3.4.2) ------------------------------------------ */

void dkim_canon_header(const char *field, size_t len, dkim_sink_fn sink, void *ctx)
{
    char buf[256];
    size_t n = 0, i = 0, name_end;
    const char *colon = memchr(field, ':', len);
    name_end = colon ? (size_t)(colon - field) : len;
    while (name_end > 0 && is_wsp(field[name_end - 1]))
        name_end--;
    bool wsp = false, any = false;
    for (; i < len; i++) {
        char c = field[i];
        if (n + 2 > sizeof buf) {
            sink(ctx, buf, n);
            n = 0;
        }
        if (i < name_end) {
            buf[n++] = (char)tolower((unsigned char)c);
            continue;
        }
        if (colon && field + i < colon)
            continue; /* white space before the colon */
        if (colon && field + i == colon) {
            buf[n++] = ':';
            continue;
        }
        if (c == '\r' || c == '\n')
            continue; /* unfolding */
        if (is_wsp(c)) {
            wsp = true;
            continue;
        }
        if (wsp && any)
            buf[n++] = ' ';
        wsp = false;
        any = true;
        buf[n++] = c;
    }
    if (n)
        sink(ctx, buf, n);
}

bool dkim_next_field(const char *head, size_t len, size_t *pos, struct dkim_field *f)
{
    size_t p = *pos;
    if (p >= len)
        return false;
    size_t end = p;
    for (;;) {
        const char *nl = memchr(head + end, '\n', len - end);
        end = nl ? (size_t)(nl - head) + 1 : len;
        if (end >= len || !is_wsp(head[end]))
            break; /* the next line does not continue this field */
    }
    f->off = p;
    f->len = end - p;
    const char *colon = memchr(head + p, ':', f->len);
    const char *eol = memchr(head + p, '\n', f->len);
    size_t n = colon && (!eol || colon < eol) ? (size_t)(colon - head) - p : 0;
    while (n > 0 && is_wsp(head[p + n - 1]))
        n--;
    f->name_len = n;
    *pos = end;
    return true;
}

static int name_index(const char *name, size_t n)
{
    for (int i = 0; i < DKIM_NAMES; i++)
        if (strlen(signed_names[i]) == n && strncasecmp(signed_names[i], name, n) == 0)
            return i;
    return -1;
}

int dkim_headers_scan(const char *head, size_t len, unsigned seg, struct dkim_headers *out)
{
    struct dkim_field f;
    size_t pos = 0;
    while (dkim_next_field(head, len, &pos, &f)) {
        int k = name_index(head + f.off, f.name_len);
        if (k < 0)
            continue;
        if (out->n == DKIM_SIGNED_FIELDS_MAX)
            return -1;
        out->field[out->n].off = f.off;
        out->field[out->n].len = f.len;
        out->field[out->n].name = (unsigned)k;
        out->field[out->n].seg = seg;
        out->n++;
        out->count[k]++;
    }
    return 0;
}

/* listed — how often name k stands in h=: From once more than present. */
static unsigned listed(const struct dkim_headers *hs, int k)
{
    return hs->count[k] + (k == 0);
}

size_t dkim_headers_h(const struct dkim_headers *hs, char *out, size_t cap)
{
    size_t len = 0;
    for (int k = 0; k < DKIM_NAMES; k++) {
        for (unsigned i = 0; i < listed(hs, k); i++) {
            int w = snprintf(out + len, cap - len, "%s%s", len ? ":" : "", signed_names[k]);
            if (w < 0 || (size_t)w >= cap - len)
                return 0;
            len += (size_t)w;
        }
    }
    return len;
}

void dkim_headers_hash(const struct dkim_headers *hs, const char *const *segs, dkim_sink_fn sink, void *ctx)
{
    for (int k = 0; k < DKIM_NAMES; k++) {
        for (unsigned i = 0; i < listed(hs, k); i++) {
            /* the i-th listing is the i-th occurrence from the bottom */
            unsigned want = hs->count[k] - i, seen = 0; /* 1-based from the top; 0: none left */
            for (size_t f = 0; want > 0 && f < hs->n; f++) {
                if (hs->field[f].name != (unsigned)k || ++seen != want)
                    continue;
                dkim_canon_header(segs[hs->field[f].seg] + hs->field[f].off, hs->field[f].len, sink, ctx);
                sink(ctx, "\r\n", 2);
            }
        }
    }
}

int dkim_from_domain(const char *head, size_t len, char out[DKIM_DOMAIN_MAX_BYTES])
{
    struct dkim_field f, from = {0};
    size_t pos = 0, count = 0;
    while (dkim_next_field(head, len, &pos, &f))
        if (f.name_len == 4 && strncasecmp(head + f.off, "from", 4) == 0 && ++count == 1)
            from = f;
    if (count != 1)
        return -1;
    const char *colon = memchr(head + from.off, ':', from.len);
    size_t start = (size_t)(colon - head) + 1, end = from.off + from.len;
    while (end > start && (head[end - 1] == '\n' || head[end - 1] == '\r'))
        end--;
    char domains[POLICY_FROM_MAX_DOMAINS][POLICY_DOMAIN_MAX_BYTES];
    int n = policy_parse_from(head + start, end - start, domains, POLICY_FROM_MAX_DOMAINS);
    if (n != 1) /* none, or several domains: no one domain vouches for the message */
        return -1;
    memcpy(out, domains[0], DKIM_DOMAIN_MAX_BYTES);
    return 0;
}

/* ---- the DKIM-Signature field --------------------------------------------------- */

/* A bounded appender that folds before a token that would pass the column. */
struct text {
    char *p;
    size_t cap, len, col;
    bool full;
};

static void put(struct text *t, const char *s, size_t n)
{
    if (t->full || n >= t->cap - t->len) {
        t->full = true;
        return;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
    t->col += n;
}

/* token — a piece that may follow folding white space; one that starts
 * with a space gets the fold instead of the space. */
static void token(struct text *t, const char *s, size_t n)
{
    if (t->col + n > DKIM_FOLD_COLUMN && t->col > 1) {
        put(t, "\r\n\t", 3);
        t->col = 1;
        if (n && s[0] == ' ') {
            s++;
            n--;
        }
    }
    put(t, s, n);
}

static void tokenf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tokenf(struct text *t, const char *fmt, ...)
{
    char buf[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        t->full = true;
    else
        token(t, buf, (size_t)n);
}

/* tag_value_ok — a d=, s= or h= value: letters, digits and . - _ : only. */
static bool tag_value_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(".-_:", s[i]))
            return false;
    return true;
}

size_t dkim_sig_max_bytes(size_t h_len, size_t sig_bytes)
{
    /* the fixed tags, d= and s= at their longest, then h=, bh= and b= with
     * room for a fold every few bytes */
    return 200 + DKIM_DOMAIN_MAX_BYTES + DKIM_SELECTOR_MAX_BYTES + 2 * h_len +
           2 * CRYPTO_BASE64_LEN(CRYPTO_SHA256_BYTES) + 2 * CRYPTO_BASE64_LEN(sig_bytes);
}

size_t dkim_sig_begin(const struct dkim_sig_params *p, char *out, size_t cap)
{
    char bh[CRYPTO_BASE64_LEN(CRYPTO_SHA256_BYTES) + 1];
    struct text t = {.p = out, .cap = cap};
    if (cap == 0 || !tag_value_ok(p->domain, DKIM_DOMAIN_MAX_BYTES) ||
        !tag_value_ok(p->selector, DKIM_SELECTOR_MAX_BYTES) || !tag_value_ok(p->h, DKIM_H_MAX_BYTES) ||
        crypto_base64_encode(p->bh, sizeof p->bh, bh, sizeof bh) == 0)
        return 0;
    out[0] = '\0';
    tokenf(&t, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed;", dkim_alg_name(p->alg));
    tokenf(&t, " d=%s;", p->domain);
    tokenf(&t, " s=%s;", p->selector);
    tokenf(&t, " t=%lld;", (long long)p->time);
    const char *h = p->h;
    for (bool first = true; *h; first = false) { /* h= folds after a colon (FWS) */
        size_t n = strcspn(h, ":");
        tokenf(&t, "%s%.*s%s", first ? " h=" : "", (int)n, h, h[n] ? ":" : ";");
        h += n + (h[n] == ':');
    }
    tokenf(&t, " bh=%s;", bh);
    token(&t, " b=", 3);
    return t.full ? 0 : t.len;
}

size_t dkim_sig_finish(char *out, size_t len, size_t cap, const uint8_t *sig, size_t sig_len)
{
    char b64[CRYPTO_BASE64_LEN(DKIM_SIGNATURE_MAX_BYTES) + 1];
    if (sig_len > DKIM_SIGNATURE_MAX_BYTES || len >= cap)
        return 0;
    size_t n = crypto_base64_encode(sig, sig_len, b64, sizeof b64);
    const char *nl = NULL;
    for (size_t i = len; i > 0 && !nl; i--)
        if (out[i - 1] == '\n')
            nl = out + i - 1;
    struct text t = {.p = out, .cap = cap, .len = len, .col = nl ? (size_t)(out + len - nl - 1) : len};
    for (size_t i = 0; i < n;) {
        size_t room = t.col < DKIM_FOLD_COLUMN ? DKIM_FOLD_COLUMN - t.col : 0;
        if (room == 0) {
            put(&t, "\r\n\t", 3); /* FWS is allowed anywhere in b= (§3.5) */
            t.col = 1;
            continue;
        }
        size_t k = n - i < room ? n - i : room;
        put(&t, b64 + i, k);
        i += k;
    }
    put(&t, "\r\n", 2);
    return t.full ? 0 : t.len;
}

/* ---- key records (RFC 6376 §3.2, §3.6.1) ------------------------------------------ */

/* trim — the bytes of [*p, *p + *n) without the white space (FWS) around. */
static void trim(const char **p, size_t *n)
{
    while (*n && (is_wsp(**p) || **p == '\r' || **p == '\n')) {
        (*p)++;
        (*n)--;
    }
    while (*n && (is_wsp((*p)[*n - 1]) || (*p)[*n - 1] == '\r' || (*p)[*n - 1] == '\n'))
        (*n)--;
}

/* list_has — a colon-separated tag value holds `want` (case-insensitive). */
static bool list_has(const char *v, size_t n, const char *want)
{
    while (n > 0) {
        const char *c = memchr(v, ':', n);
        size_t k = c ? (size_t)(c - v) : n;
        const char *item = v;
        size_t in = k;
        trim(&item, &in);
        if (in == strlen(want) && strncasecmp(item, want, in) == 0)
            return true;
        if (!c)
            break;
        v += k + 1;
        n -= k + 1;
    }
    return false;
}

static bool tag_name_ok(const char *s, size_t n)
{
    if (n == 0 || !isalpha((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

/* decode_p — p=: base64 with any white space inside (§3.6.1), decoded. */
static int decode_p(const char *v, size_t n, struct dkim_record *out)
{
    char b64[CRYPTO_BASE64_LEN(DKIM_PUBLIC_MAX_BYTES) + 4];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n')
            continue;
        if (len == sizeof b64)
            return -1;
        b64[len++] = v[i];
    }
    out->revoked = len == 0;
    if (len == 0)
        return 0;
    return crypto_base64_decode(b64, len, out->pub, sizeof out->pub, &out->pub_len);
}

/* record_tag — one tag=value of a key record; seen is the set of the
 * single-letter tags met so far (each may stand once). */
static int record_tag(const char *name, size_t nl, const char *v, size_t vl, bool first,
                      unsigned *seen, struct dkim_record *out)
{
    if (nl == 1 && name[0] >= 'a' && name[0] <= 'z') {
        unsigned bit = 1u << (name[0] - 'a');
        if (*seen & bit)
            return -1; /* §3.2: a tag twice makes the list invalid */
        *seen |= bit;
    }
    if (nl == 1 && name[0] == 'v')
        return first && vl == 5 && memcmp(v, "DKIM1", 5) == 0 ? 0 : -1;
    if (nl == 1 && name[0] == 'h')
        return list_has(v, vl, "sha256") ? 0 : -1;
    if (nl == 1 && name[0] == 's')
        return list_has(v, vl, "email") || list_has(v, vl, "*") ? 0 : -1;
    if (nl == 1 && name[0] == 'k') {
        if (vl == 3 && strncasecmp(v, "rsa", 3) == 0)
            out->alg = DKIM_RSA_SHA256;
        else if (vl == 7 && strncasecmp(v, "ed25519", 7) == 0)
            out->alg = DKIM_ED25519_SHA256;
        else
            return -1;
        return 0;
    }
    if (nl == 1 && name[0] == 'p')
        return decode_p(v, vl, out);
    return 0; /* n=, t=, and tags of later versions are ignored */
}

int dkim_parse_record(const char *txt, size_t len, struct dkim_record *out)
{
    unsigned seen = 0;
    bool first = true;
    memset(out, 0, sizeof *out);
    out->alg = DKIM_RSA_SHA256;
    while (len > 0) {
        const char *semi = memchr(txt, ';', len);
        size_t n = semi ? (size_t)(semi - txt) : len;
        const char *spec = txt, *eq = memchr(txt, '=', n);
        size_t sn = n;
        trim(&spec, &sn);
        if (sn > 0) {
            if (!eq)
                return -1;
            const char *name = spec, *v = eq + 1;
            size_t nl = (size_t)(eq - spec), vl = n - (size_t)(eq + 1 - txt);
            trim(&name, &nl);
            trim(&v, &vl);
            if (!tag_name_ok(name, nl) || record_tag(name, nl, v, vl, first, &seen, out) < 0)
                return -1;
            first = false;
        }
        if (!semi)
            break;
        txt += n + 1;
        len -= n + 1;
    }
    return seen & (1u << ('p' - 'a')) ? 0 : -1; /* p= is required */
}

size_t dkim_format_record(enum dkim_alg alg, const uint8_t *pub, size_t pub_len, char *out, size_t cap)
{
    int n = snprintf(out, cap, "v=DKIM1; k=%s; p=", dkim_key_type(alg));
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t b = crypto_base64_encode(pub, pub_len, out + n, cap - (size_t)n);
    return b ? (size_t)n + b : 0;
}

/* ---- Ed25519 keys in PKCS#8 (RFC 8410 §7) ----------------------------------------- */

#define PEM_BEGIN "-----BEGIN PRIVATE KEY-----"
#define PEM_END "-----END PRIVATE KEY-----"
#define DER_MAX_BYTES 512 /* an Ed25519 OneAsymmetricKey is 48 to 83 bytes */

static const uint8_t ed25519_oid[] = {0x2b, 0x65, 0x70}; /* 1.3.101.112 */

/* A DER cursor with a sticky error. */
struct der {
    const uint8_t *p;
    size_t left;
    bool err;
};

/* der_get — the next element, which must have `tag`: *inner covers its
 * contents.  Lengths in minimal form only. */
static void der_get(struct der *d, uint8_t tag, struct der *inner)
{
    memset(inner, 0, sizeof *inner);
    inner->err = true;
    if (d->err || d->left < 2 || d->p[0] != tag) {
        d->err = true;
        return;
    }
    size_t len = d->p[1], head = 2;
    if (len == 0x81) {
        len = d->left >= 3 ? d->p[2] : 0;
        head = 3;
        if (len < 0x80) /* not minimal */
            d->err = true;
    } else if (len > 0x80) {
        d->err = true; /* nothing this small needs two length bytes */
    }
    if (d->err || len > d->left - head) {
        d->err = true;
        return;
    }
    inner->p = d->p + head;
    inner->left = len;
    inner->err = false;
    d->p += head + len;
    d->left -= head + len;
}

static bool der_peek(const struct der *d, uint8_t tag)
{
    return !d->err && d->left > 0 && d->p[0] == tag;
}

/* pem_der — the DER inside the first PRIVATE KEY block; 0 with *n, or -1
 * when there is no such block or it is not clean base64. */
static int pem_der(const char *pem, size_t len, uint8_t *der, size_t cap, size_t *n)
{
    char b64[DER_MAX_BYTES * 2];
    const char *b = memmem(pem, len, PEM_BEGIN, sizeof PEM_BEGIN - 1);
    if (!b || (b > pem && b[-1] != '\n'))
        return -1;
    b += sizeof PEM_BEGIN - 1;
    const char *e = memmem(b, len - (size_t)(b - pem), PEM_END, sizeof PEM_END - 1);
    if (!e)
        return -1;
    size_t k = 0;
    for (const char *p = b; p < e; p++) {
        if (*p == '\r' || *p == '\n' || is_wsp(*p))
            continue;
        if (k == sizeof b64 || !(isalnum((unsigned char)*p) || *p == '+' || *p == '/' || *p == '=')) {
            crypto_wipe(b64, sizeof b64);
            return -1;
        }
        b64[k++] = *p;
    }
    int rc = crypto_base64_decode(b64, k, der, cap, n);
    crypto_wipe(b64, sizeof b64);
    return rc;
}

/* parse_one_asymmetric_key — RFC 5958 §2 with RFC 8410's Ed25519. */
static enum dkim_pem parse_one_asymmetric_key(const uint8_t *der, size_t n, uint8_t *seed, uint8_t *pub,
                                              bool *has_pub)
{
    struct der top = {.p = der, .left = n}, seq, ver, alg, oid, key, inner, skip;
    der_get(&top, 0x30, &seq);
    der_get(&seq, 0x02, &ver);
    der_get(&seq, 0x30, &alg);
    der_get(&alg, 0x06, &oid);
    if (seq.err || oid.err || oid.left != sizeof ed25519_oid || memcmp(oid.p, ed25519_oid, sizeof ed25519_oid))
        return DKIM_PEM_OTHER; /* not Ed25519: an RSA PKCS#8 key, say */
    bool v1 = ver.left == 1 && ver.p[0] == 1;
    if (top.left != 0 || alg.left != 0 || !(ver.left == 1 && (ver.p[0] == 0 || v1)))
        return DKIM_PEM_MALFORMED; /* parameters after the OID, trailing bytes, another version */
    der_get(&seq, 0x04, &key);
    der_get(&key, 0x04, &inner); /* CurvePrivateKey ::= OCTET STRING */
    if (key.err || inner.err || key.left != 0 || inner.left != CRYPTO_ED25519_SEED_BYTES)
        return DKIM_PEM_MALFORMED;
    if (der_peek(&seq, 0xa0))
        der_get(&seq, 0xa0, &skip); /* [0] attributes: not used */
    *has_pub = false;
    if (v1 && der_peek(&seq, 0x81)) { /* [1] publicKey, a BIT STRING's contents */
        der_get(&seq, 0x81, &skip);
        if (skip.err || skip.left != CRYPTO_ED25519_PUBLIC_BYTES + 1 || skip.p[0] != 0)
            return DKIM_PEM_MALFORMED;
        memcpy(pub, skip.p + 1, CRYPTO_ED25519_PUBLIC_BYTES);
        *has_pub = true;
    }
    if (seq.err || seq.left != 0)
        return DKIM_PEM_MALFORMED;
    memcpy(seed, inner.p, CRYPTO_ED25519_SEED_BYTES);
    return DKIM_PEM_ED25519;
}

enum dkim_pem dkim_pem_ed25519(const char *pem, size_t len, uint8_t seed[CRYPTO_ED25519_SEED_BYTES],
                               uint8_t pub[CRYPTO_ED25519_PUBLIC_BYTES], bool *has_pub)
{
    uint8_t der[DER_MAX_BYTES];
    size_t n = 0;
    *has_pub = false;
    if (pem_der(pem, len, der, sizeof der, &n) < 0)
        return DKIM_PEM_OTHER;
    enum dkim_pem r = parse_one_asymmetric_key(der, n, seed, pub, has_pub);
    crypto_wipe(der, sizeof der);
    return r;
}

size_t dkim_pem_ed25519_write(const uint8_t seed[CRYPTO_ED25519_SEED_BYTES], char *out, size_t cap)
{
    /* OneAsymmetricKey v0: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 },
     * OCTET STRING { OCTET STRING (32) } } — 48 bytes, 64 base64 characters */
    static const uint8_t prefix[16] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                       0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
    uint8_t der[sizeof prefix + CRYPTO_ED25519_SEED_BYTES];
    char b64[CRYPTO_BASE64_LEN(sizeof der) + 1];
    memcpy(der, prefix, sizeof prefix);
    memcpy(der + sizeof prefix, seed, CRYPTO_ED25519_SEED_BYTES);
    size_t k = crypto_base64_encode(der, sizeof der, b64, sizeof b64);
    int n = k ? snprintf(out, cap, PEM_BEGIN "\n%s\n" PEM_END "\n", b64) : -1;
    crypto_wipe(der, sizeof der);
    crypto_wipe(b64, sizeof b64);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
