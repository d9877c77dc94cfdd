/*
 * policy — sender-domain authorization (SPEC §1, §4; see policy.h).
 *
 * The decision is pure: policy_examine() reads a domain's TXT texts into
 * findings (the SPF record and its include term, the account's token) and
 * policy_evaluate() / policy_decide() turn them into a reply whose text names
 * the domain and the exact record to publish.  policy_check_domain() adds
 * the cached TXT lookup (one query serves both checks) and the re-check of
 * refusals that rest on an old cached answer, and logs every decision.
 * Also the sender-domain and From: header parsers.  `mrs check-domain` is in
 * check_domain.c.
 *
 * Calls: dns, crypto, config, log.  Thread-safe: no shared state.
 */
#include "policy.h"

#include "config.h"
#include "crypto.h"
#include "dns.h"
#include "idna.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SPF_VERSION "v=spf1"
#define TOKEN_HEX_BYTES 64
#define TOKEN_TEXT_MAX_BYTES (64 + 1 + TOKEN_HEX_BYTES + 1) /* prefix=hex + NUL */

/* ---- small text helpers ---------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/* A reply text under construction: each piece goes in whole or not at all. */
struct text {
    char *buf;
    size_t cap, len;
};

static void text_init(struct text *t, char *buf, size_t cap)
{
    t->buf = buf;
    t->cap = cap;
    t->len = 0;
    buf[0] = '\0';
}

__attribute__((format(printf, 2, 3))) static bool text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len) {
        if (t->len == 0 && n > 0) { /* the first piece is kept, cut */
            t->len = t->cap - 1;
            return false;
        }
        t->buf[t->len] = '\0';
        return false;
    }
    t->len += (size_t)n;
    return true;
}

/* ---- configuration -------------------------------------------------------- */

const char *policy_spf_include(void)
{
    return config && config->spf_include[0] ? config->spf_include : "elastx.email";
}

const char *policy_token_prefix(void)
{
    return config && config->token_prefix[0] ? config->token_prefix : "elastx-mrs";
}

/* token_text — "<prefix>=<sha256 hex of user>", the record to publish. */
static void token_text(const char *user, char out[TOKEN_TEXT_MAX_BYTES])
{
    char hex[CRYPTO_SHA256_HEX_BYTES];
    crypto_sha256_hex(user, strlen(user), hex);
    snprintf(out, TOKEN_TEXT_MAX_BYTES, "%s=%s", policy_token_prefix(), hex);
}

/* ---- SPF and token records ------------------------------------------------ */

bool policy_is_spf(const char *txt, size_t len)
{
    size_t v = sizeof SPF_VERSION - 1;
    return len >= v && strncasecmp(txt, SPF_VERSION, v) == 0 && (len == v || txt[v] == ' ');
}

/* next_term — the next term of txt from *pos: separated by spaces only, as
 * receivers read it (RFC 7208 §4.6.1), or, with loose, by tabs too (to
 * rebuild a record for a suggestion). */
static bool next_term_sep(const char *txt, size_t len, size_t *pos, size_t *start, size_t *n, bool loose)
{
    size_t p = *pos;
    while (p < len && (txt[p] == ' ' || (loose && txt[p] == '\t')))
        p++;
    if (p >= len)
        return false;
    *start = p;
    while (p < len && txt[p] != ' ' && !(loose && txt[p] == '\t'))
        p++;
    *n = p - *start;
    *pos = p;
    return true;
}

static bool next_term(const char *txt, size_t len, size_t *pos, size_t *start, size_t *n)
{
    return next_term_sep(txt, len, pos, start, n, false);
}

/* is_all — the "all" mechanism with any qualifier. */
static bool is_all(const char *t, size_t n)
{
    size_t o = n > 0 && strchr("+-~?", t[0]) ? 1 : 0;
    return n - o == 3 && strncasecmp(t + o, "all", 3) == 0;
}

/* include_qualifier — when the term is include:<domain> (any qualifier),
 * its qualifier ('+' when none); '\0' for any other term. */
static char include_qualifier(const char *term, size_t n, const char *domain)
{
    static const char mech[] = "include:";
    char q = '+';
    size_t d = strlen(domain);
    if (n > 0 && term[0] != '\0' && strchr("+-~?", term[0])) {
        q = term[0];
        term++;
        n--;
    }
    if (n < sizeof mech - 1 || strncasecmp(term, mech, sizeof mech - 1) != 0)
        return '\0';
    term += sizeof mech - 1;
    n -= sizeof mech - 1;
    if (n == d + 1 && term[d] == '.') /* a trailing dot: the same absolute name */
        n--;
    return n == d && strncasecmp(term, domain, d) == 0 ? q : '\0';
}

enum policy_spf_include policy_spf_include_state(const char *spf, size_t len, const char *domain)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)spf[i] < 0x20 || spf[i] == 0x7f)
            return POLICY_SPF_BAD_SEPARATOR; /* a tab: the record does not parse */
    size_t pos = 0, start, n;
    bool after_all = false;
    while (next_term(spf, len, &pos, &start, &n)) {
        if (include_qualifier(spf + start, n, domain) == '+')
            return after_all ? POLICY_SPF_INCLUDE_AFTER_ALL : POLICY_SPF_INCLUDE_OK;
        /* RFC 7208 §5.1: mechanisms after "all" are never evaluated */
        after_all |= is_all(spf + start, n);
    }
    return POLICY_SPF_INCLUDE_MISSING;
}

bool policy_spf_has_include(const char *spf, size_t len, const char *domain)
{
    return policy_spf_include_state(spf, len, domain) == POLICY_SPF_INCLUDE_OK;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* token_value — when the trimmed text is <prefix>=<64 hex>, its 32 bytes. */
static bool token_value(const char *txt, size_t len, const char *prefix,
                        uint8_t out[CRYPTO_SHA256_BYTES])
{
    size_t p = strlen(prefix);
    while (len > 0 && is_space(txt[0])) {
        txt++;
        len--;
    }
    while (len > 0 && is_space(txt[len - 1]))
        len--;
    if (len != p + 1 + TOKEN_HEX_BYTES || strncasecmp(txt, prefix, p) != 0 || txt[p] != '=')
        return false;
    txt += p + 1;
    for (size_t i = 0; i < CRYPTO_SHA256_BYTES; i++) {
        int hi = hex_value(txt[2 * i]), lo = hex_value(txt[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* is_token_record — whether the trimmed text starts with <prefix>= at all. */
static bool is_token_record(const char *txt, size_t len, const char *prefix)
{
    size_t p = strlen(prefix);
    while (len > 0 && is_space(txt[0])) {
        txt++;
        len--;
    }
    return len > p && strncasecmp(txt, prefix, p) == 0 && txt[p] == '=';
}

bool policy_is_token_for(const char *txt, size_t len, const char *prefix, const char *user)
{
    uint8_t got[CRYPTO_SHA256_BYTES], want[CRYPTO_SHA256_BYTES];
    if (!token_value(txt, len, prefix, got))
        return false;
    crypto_sha256(user, strlen(user), want);
    return crypto_equal(got, want, sizeof want);
}

void policy_examine(const char *user, const char *const *txt, const size_t *txt_len,
                    size_t txt_count, struct policy_findings *out)
{
    const char *prefix = policy_token_prefix();
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < txt_count; i++) {
        if (policy_is_spf(txt[i], txt_len[i])) {
            if (out->spf_count++ == 0)
                out->spf_index = i;
        } else if (policy_is_token_for(txt[i], txt_len[i], prefix, user)) {
            if (!out->token)
                out->token_index = i;
            out->token = true;
        } else if (is_token_record(txt[i], txt_len[i], prefix)) {
            out->other_tokens++;
        }
    }
    out->spf_state = out->spf_count == 1
                         ? policy_spf_include_state(txt[out->spf_index], txt_len[out->spf_index],
                                                    policy_spf_include())
                         : POLICY_SPF_INCLUDE_MISSING;
    out->spf_include = out->spf_state == POLICY_SPF_INCLUDE_OK;
}

/* printable — whether the record can be quoted in a reply (tabs become
 * spaces in the suggestion). */
static bool printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return false;
    }
    return true;
}

/* append — one term (and a space before it) into out; false when full. */
static bool append(char *out, size_t out_len, size_t *used, const char *t, size_t n)
{
    size_t sep = *used ? 1 : 0;
    if (n + sep >= out_len - *used)
        return false;
    if (sep)
        out[(*used)++] = ' ';
    memcpy(out + *used, t, n);
    *used += n;
    out[*used] = '\0';
    return true;
}

int policy_spf_fixed(const char *spf, size_t len, const char *domain, char *out, size_t out_len)
{
    if (!printable(spf, len) || out_len == 0)
        return -1;
    /* every term kept in order, single spaces, any include:<domain> (with
     * whatever qualifier, wherever it stood) dropped, and include:<domain>
     * placed before the first "all" or "redirect=" (else at the end) */
    char inc[POLICY_DOMAIN_MAX_BYTES + 16];
    int il = snprintf(inc, sizeof inc, "include:%s", domain);
    if (il < 0 || (size_t)il >= sizeof inc)
        return -1;
    size_t pos = 0, start, n, used = 0;
    bool placed = false;
    out[0] = '\0';
    while (next_term_sep(spf, len, &pos, &start, &n, true)) {
        const char *t = spf + start;
        if (include_qualifier(t, n, domain) != '\0')
            continue;
        if (!placed && (is_all(t, n) || (n >= 9 && strncasecmp(t, "redirect=", 9) == 0))) {
            if (!append(out, out_len, &used, inc, (size_t)il))
                return -1;
            placed = true;
        }
        if (!append(out, out_len, &used, t, n))
            return -1;
    }
    if (!placed && !append(out, out_len, &used, inc, (size_t)il))
        return -1;
    return 0;
}

/* ---- verdicts -------------------------------------------------------------- */

static void verdict_init(struct policy_verdict *v, enum policy_status s, const char *reason,
                         struct text *t)
{
    static const int codes[] = {250, 550, 451};
    static const char *const enhanced[] = {"2.1.0", "5.7.1", "4.4.3"};
    memset(v, 0, sizeof *v);
    v->status = s;
    v->code = codes[s];
    snprintf(v->enhanced, sizeof v->enhanced, "%s", enhanced[s]);
    v->reason = reason;
    text_init(t, v->text, sizeof v->text);
}

/* spf_advice — what to do about the SPF record, appended to t. */
static void spf_advice(struct text *t, const char *const *txt, const size_t *txt_len,
                       const struct policy_findings *f)
{
    const char *inc = policy_spf_include();
    char fixed[POLICY_TEXT_MAX_BYTES];
    if (f->spf_count == 0) {
        text_add(t, "; publish TXT \"v=spf1 include:%s -all\"", inc);
        return;
    }
    if (f->spf_state == POLICY_SPF_INCLUDE_AFTER_ALL)
        text_add(t, "; include:%s stands after the all term, where receivers never evaluate it: "
                    "move it before all", inc);
    else if (f->spf_state == POLICY_SPF_BAD_SEPARATOR)
        text_add(t, "; the record holds a tab or control character: SPF terms are separated by "
                    "spaces only (RFC 7208 section 4.6.1)");
    if (policy_spf_fixed(txt[f->spf_index], txt_len[f->spf_index], inc, fixed,
                                sizeof fixed) == 0 &&
               text_add(t, "; change it to \"%s\"", fixed)) {
        return;
    } else {
        text_add(t, "; add include:%s to it before its all term", inc);
    }
}

void policy_evaluate(const char *user, const char *domain, const char *const *txt,
                     const size_t *txt_len, size_t txt_count, struct policy_verdict *v)
{
    struct policy_findings f;
    struct text t;
    char token[TOKEN_TEXT_MAX_BYTES];
    const char *inc = policy_spf_include();
    policy_examine(user, txt, txt_len, txt_count, &f);
    token_text(user, token);
    if (f.spf_count > 1) {
        verdict_init(v, POLICY_FAIL, "spf_multiple", &t);
        text_add(&t, "%s has %zu SPF records but only one is allowed (RFC 7208 section 4.5)",
                 domain, f.spf_count);
        text_add(&t, "; merge them into one containing include:%s", inc);
    } else if (!f.spf_include) {
        verdict_init(v, POLICY_FAIL, "spf", &t);
        text_add(&t, "%s has no SPF record containing include:%s%s", domain, inc,
                 f.spf_state == POLICY_SPF_INCLUDE_MISSING ? "" : " that receivers evaluate");
        spf_advice(&t, txt, txt_len, &f);
    } else if (!f.token) {
        verdict_init(v, POLICY_FAIL, "token", &t);
        text_add(&t, "%s has no TXT record \"%s\" for this account; publish it", domain, token);
        return;
    } else {
        verdict_init(v, POLICY_PASS, "ok", &t);
        text_add(&t, "%s authorizes this account", domain);
        return;
    }
    if (!f.token)
        text_add(&t, "; also publish TXT \"%s\"", token);
}

void policy_decide(const char *user, const char *domain, const struct dns_result *r,
                   struct policy_verdict *v)
{
    struct text t;
    char token[TOKEN_TEXT_MAX_BYTES];
    if (!r || !dns_status_permanent(r->status)) {
        verdict_init(v, POLICY_TEMPFAIL, "dns_temp", &t);
        text_add(&t, "DNS lookup of %s failed temporarily (%s); try again later", domain,
                 dns_status_name(r ? r->status : DNS_ERROR));
        return;
    }
    if (r->status == DNS_NXDOMAIN) {
        token_text(user, token);
        verdict_init(v, POLICY_FAIL, "nxdomain", &t);
        text_add(&t, "%s does not exist in DNS (NXDOMAIN)", domain);
        text_add(&t, "; publish TXT \"v=spf1 include:%s -all\" and TXT \"%s\" on it",
                 policy_spf_include(), token);
        return;
    }
    size_t n = r->status == DNS_OK && r->txt ? r->count : 0;
    const char **txt = calloc(n + 1, sizeof *txt);
    size_t *len = calloc(n + 1, sizeof *len);
    if (!txt || !len) {
        verdict_init(v, POLICY_TEMPFAIL, "dns_temp", &t);
        text_add(&t, "out of memory checking %s; try again later", domain);
    } else {
        for (size_t i = 0; i < n; i++) {
            txt[i] = r->txt[i].data;
            len[i] = r->txt[i].len;
        }
        policy_evaluate(user, domain, txt, len, n, v);
    }
    free(txt);
    free(len);
}

static void refuse_syntax(struct policy_verdict *v, const char *what)
{
    struct text t;
    verdict_init(v, POLICY_FAIL, "syntax", &t);
    text_add(&t, "%s", what);
}

static const char *status_word(enum policy_status s)
{
    return s == POLICY_PASS ? "pass" : s == POLICY_FAIL ? "fail" : "tempfail";
}

/* normalize_domain — lowercase, one trailing dot dropped, LDH checked; a
 * domain with U-labels (SMTPUTF8, RFC 6531) becomes its A-labels (RFC 3492)
 * first, so DNS, the policy and every comparison see one form. */
static int normalize_domain(const char *s, size_t n, char *out, size_t out_len)
{
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (!idna_is_ascii(s, n))
        return idna_to_ascii(s, n, out, out_len) > 0 && config_valid_domain(out) ? 0 : -1;
    if (n == 0 || n >= out_len)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = lower(s[i]);
    out[n] = '\0';
    return config_valid_domain(out) ? 0 : -1;
}

int policy_domain_normalize(const char *s, char *out, size_t out_len)
{
    return normalize_domain(s, strlen(s), out, out_len);
}

void policy_check_domain(const char *user, const char *domain, struct policy_verdict *v)
{
    char dom[POLICY_DOMAIN_MAX_BYTES];
    struct dns_result *r = NULL;
    struct log_fields lf = {.user = user, .from = domain};
    if (normalize_domain(domain, strlen(domain), dom, sizeof dom) < 0) {
        refuse_syntax(v, "the sender domain is not a valid domain name");
    } else {
        int64_t asked = dns_now_ms();
        dns_lookup(dom, DNS_TYPE_TXT, 0, &r);
        policy_decide(user, dom, r, v);
        int64_t recheck = config && config->dns_deadline_ms > 0 ? config->dns_recheck_ms : 60000;
        /* SPEC §1: a record just published is honoured within about a
         * minute — a refusal resting on an older cached answer is re-asked. */
        if (v->status == POLICY_FAIL && r && r->received_ms < asked &&
            asked - r->received_ms >= recheck) {
            log_debug("policy", &lf, "refusal rests on a cached answer %lld ms old: asking again",
                      (long long)(asked - r->received_ms));
            dns_result_free(r);
            r = NULL;
            dns_lookup(dom, DNS_TYPE_TXT, DNS_FRESH, &r);
            policy_decide(user, dom, r, v);
        }
    }
    lf.result = status_word(v->status);
    lf.reason = v->reason;
    lf.remote = r ? r->server : NULL;
    log_info("policy", &lf, "%d %s %s", v->code, v->enhanced, v->text);
    dns_result_free(r);
}

int policy_sender_domain(const char *addr, char *out, size_t out_len)
{
    const char *at = strrchr(addr, '@');
    if (!at || at == addr || at[1] == '[')
        return -1; /* null sender, no domain, or an address literal */
    return normalize_domain(at + 1, strlen(at + 1), out, out_len);
}

/* ---- From: header (RFC 5322 §3.4, §3.6.2) -------------------------------------- */

enum tok_kind { TOK_END, TOK_ATOM, TOK_QUOTED, TOK_LITERAL, TOK_SPECIAL, TOK_BAD };

struct tok {
    enum tok_kind kind;
    const char *p;
    size_t n;
};

struct lexer {
    const char *s;
    size_t len, pos;
};

/* skip_cfws — white space, folding and (nested) comments; -1 when a
 * comment never ends. */
static int skip_cfws(struct lexer *lx)
{
    int depth = 0;
    while (lx->pos < lx->len) {
        char c = lx->s[lx->pos];
        if (depth == 0 && !(c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '('))
            return 0;
        if (c == '\\' && depth > 0)
            lx->pos++; /* quoted-pair inside a comment */
        else if (c == '(')
            depth++;
        else if (c == ')' && depth > 0)
            depth--;
        lx->pos++;
    }
    return depth == 0 ? 0 : -1;
}

static bool is_atext(unsigned char c)
{
    return c >= 0x80 || (c > ' ' && c < 0x7f && !strchr("()<>[]:;@\\,.\"", c));
}

/* delimited — a quoted string or domain literal from `open` to `close`. */
static struct tok delimited(struct lexer *lx, enum tok_kind kind, char close)
{
    struct tok t = {kind, lx->s + lx->pos, 0};
    for (size_t p = lx->pos + 1; p < lx->len; p++) {
        if (lx->s[p] == '\\')
            p++;
        else if (lx->s[p] == close) {
            t.n = p + 1 - lx->pos;
            lx->pos = p + 1;
            return t;
        }
    }
    t.kind = TOK_BAD;
    return t;
}

static struct tok next_tok(struct lexer *lx)
{
    struct tok t = {TOK_END, NULL, 0};
    if (skip_cfws(lx) < 0) {
        t.kind = TOK_BAD;
        return t;
    }
    if (lx->pos >= lx->len)
        return t;
    unsigned char c = (unsigned char)lx->s[lx->pos];
    if (c == '"')
        return delimited(lx, TOK_QUOTED, '"');
    if (c == '[')
        return delimited(lx, TOK_LITERAL, ']');
    t.p = lx->s + lx->pos;
    if (strchr("<>:;@,.", c)) {
        t.kind = TOK_SPECIAL;
        t.n = 1;
        lx->pos++;
        return t;
    }
    while (lx->pos < lx->len && is_atext((unsigned char)lx->s[lx->pos]))
        lx->pos++;
    t.n = (size_t)(lx->s + lx->pos - t.p);
    t.kind = t.n > 0 ? TOK_ATOM : TOK_BAD;
    return t;
}

static bool is_special(const struct tok *t, char c)
{
    return t->kind == TOK_SPECIAL && t->p[0] == c;
}

/* parse_domain — atom *("." atom) after the "@"; the lowercase text into
 * out.  The token after the domain is returned in *next. */
static int parse_domain(struct lexer *lx, char *out, size_t out_len, struct tok *next)
{
    size_t n = 0;
    for (;;) {
        struct tok t = next_tok(lx);
        if (t.kind != TOK_ATOM || t.n >= out_len - n)
            return -1; /* literals, empty labels, too long */
        for (size_t i = 0; i < t.n; i++)
            out[n++] = lower(t.p[i]);
        *next = next_tok(lx);
        if (!is_special(next, '.'))
            break;
        if (n + 1 >= out_len)
            return -1;
        out[n++] = '.';
    }
    out[n] = '\0';
    if (!idna_is_ascii(out, n)) { /* a UTF-8 address (RFC 6532): its A-labels */
        char alabel[POLICY_DOMAIN_MAX_BYTES];
        if (normalize_domain(out, n, alabel, sizeof alabel) < 0)
            return -1;
        snprintf(out, out_len, "%s", alabel);
    }
    return config_valid_domain(out) ? 0 : -1;
}

/* add_domain — append unless already there; -1 when max is reached. */
static int add_domain(char domains[][POLICY_DOMAIN_MAX_BYTES], size_t *count, size_t max,
                      const char *d)
{
    for (size_t i = 0; i < *count; i++) {
        if (strcmp(domains[i], d) == 0)
            return 0;
    }
    if (*count >= max)
        return -1;
    snprintf(domains[(*count)++], POLICY_DOMAIN_MAX_BYTES, "%s", d);
    return 0;
}

/* parse_angle — after "<": [obs-route ":"] local-part "@" domain ">". */
static int parse_angle(struct lexer *lx, char *dom, size_t dom_len)
{
    size_t words = 0;
    struct tok t;
    for (;;) {
        t = next_tok(lx);
        if (t.kind == TOK_ATOM || t.kind == TOK_QUOTED || is_special(&t, '.'))
            words++;
        else if (is_special(&t, ':') || is_special(&t, ','))
            words = 0; /* obs-route "@a,@b:" — what came before is the route */
        else if (is_special(&t, '@') && words == 0)
            continue; /* the "@" of a route domain */
        else
            break;
    }
    if (!is_special(&t, '@') || words == 0 || parse_domain(lx, dom, dom_len, &t) < 0)
        return -1;
    return is_special(&t, '>') ? 0 : -1;
}

int policy_parse_from(const char *value, size_t len, char domains[][POLICY_DOMAIN_MAX_BYTES],
                      size_t max)
{
    struct lexer lx = {value, len, 0};
    char dom[POLICY_DOMAIN_MAX_BYTES];
    size_t count = 0, words = 0;
    bool in_group = false, have_addr = false;
    struct tok t = next_tok(&lx);
    for (;;) {
        if (have_addr && !(t.kind == TOK_END || is_special(&t, ',') || is_special(&t, ';')))
            return -1; /* something after a complete mailbox */
        if (t.kind == TOK_ATOM || t.kind == TOK_QUOTED || is_special(&t, '.')) {
            words++;
        } else if (is_special(&t, '<')) { /* name-addr */
            if (parse_angle(&lx, dom, sizeof dom) < 0 || add_domain(domains, &count, max, dom) < 0)
                return -1;
            have_addr = true;
        } else if (is_special(&t, '@') && words > 0) { /* addr-spec */
            if (parse_domain(&lx, dom, sizeof dom, &t) < 0 ||
                add_domain(domains, &count, max, dom) < 0)
                return -1;
            have_addr = true;
            continue; /* parse_domain left the token after the domain in t */
        } else if (is_special(&t, ':') && !in_group && !have_addr) {
            in_group = true; /* group: display-name ":" mailboxes ";" */
            words = 0;
        } else if (is_special(&t, ',') || (is_special(&t, ';') && in_group) || t.kind == TOK_END) {
            if (words > 0 && !have_addr)
                return -1; /* a phrase without an address */
            if (is_special(&t, ';'))
                in_group = false;
            if (t.kind == TOK_END)
                break;
            words = 0;
            have_addr = false;
        } else {
            return -1;
        }
        t = next_tok(&lx);
    }
    return count > 0 && !in_group ? (int)count : -1;
}

/* find_from — the value of the From: field(s) in a header block: the
 * number of From: fields, the first one's value in val and val_len. */
static int find_from(const char *h, size_t len, const char **val, size_t *val_len)
{
    int count = 0;
    size_t i = 0;
    while (i < len && h[i] != '\r' && h[i] != '\n') {
        size_t end = i;
        /* a field runs to the line end not followed by a folding space */
        for (;;) {
            while (end < len && h[end] != '\n')
                end++;
            if (end + 1 < len && is_space(h[end + 1]))
                end++;
            else
                break;
        }
        size_t k = i;
        while (k < end && h[k] != ':' && !is_space(h[k]))
            k++;
        size_t name_len = k - i;
        while (k < end && is_space(h[k]))
            k++; /* obs-optional: WSP before the colon */
        if (name_len == 4 && strncasecmp(h + i, "from", 4) == 0 && k < end && h[k] == ':') {
            if (count++ == 0) {
                *val = h + k + 1;
                *val_len = end - k - 1;
            }
        }
        i = end + 1;
    }
    return count;
}

void policy_check_header_from(const char *user, const char *headers, size_t len, const char *passed,
                              struct policy_verdict *v)
{
    const char *val = NULL;
    size_t val_len = 0;
    struct text t;
    int n = find_from(headers, len, &val, &val_len);
    if (n != 1) {
        verdict_init(v, POLICY_FAIL, "no_from", &t);
        text_add(&t, "the message must have exactly one From: header (RFC 5322 section 3.6), "
                     "it has %d", n);
        return;
    }
    /* 4 KB on the stack (a session thread's is 64 KB, ~9 KB used): from
     * the heap it was an mmap and munmap per message */
    char domains[POLICY_FROM_MAX_DOMAINS][POLICY_DOMAIN_MAX_BYTES];
    int k = policy_parse_from(val, val_len, domains, POLICY_FROM_MAX_DOMAINS);
    if (k < 0)
        refuse_syntax(v, "the From: header has no address whose domain can be checked");
    char dom[POLICY_DOMAIN_MAX_BYTES];
    for (int i = 0; i < k; i++) {
        if (passed && normalize_domain(domains[i], strlen(domains[i]), dom, sizeof dom) == 0 &&
            strcmp(dom, passed) == 0) {
            /* the envelope's domain, checked for this user at MAIL FROM:
             * the same check again would give the same answer */
            verdict_init(v, POLICY_PASS, "ok", &t);
            text_add(&t, "%s authorizes this account", dom);
            continue;
        }
        policy_check_domain(user, domains[i], v);
        if (v->status != POLICY_PASS)
            break;
    }
}
