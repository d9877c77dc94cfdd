/*
 * check_domain — the sender-domain diagnosis (see check_domain.h): one
 * report, rendered as text by `mrs check-domain` (which prints which server
 * answered and every TXT record seen) and as JSON by GET /check.
 */
#include "check_domain.h"

#include "config.h"
#include "crypto.h"
#include "dns.h"
#include "http.h"
#include "log.h"
#include "policy.h"
#include "smtp_proto.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK_MARK "\xe2\x9c\x94"  /* ✔ */
#define BAD_MARK "\xe2\x9c\x98" /* ✘ */

static void put(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    if (n < 0)
        dst[0] = '\0'; /* a cut sentence is still shown; nothing overflows */
}

/* ---- the findings ---------------------------------------------------------- */

/* spf_notes — why a present SPF record does not count, when it is a
 * common mistake. */
static void spf_notes(struct check_item *it, const char *spf, const char *inc)
{
    if (strstr(spf, "include:") || strstr(spf, "redirect="))
        put(it->note, sizeof it->note, "includes and redirect= are not followed: include:%s must be "
            "a term of this record itself", inc);
}

static void examine_spf(struct check_report *r, const struct policy_findings *f)
{
    const char *inc = policy_spf_include(), *d = r->domain;
    struct check_item *it = &r->spf;
    it->ok = f->spf_include;
    if (f->spf_include) {
        put(it->text, sizeof it->text, "SPF: %s has one SPF record and it contains include:%s", d, inc);
        return;
    }
    if (f->spf_count == 0) {
        put(it->text, sizeof it->text, "SPF: %s has no SPF record", d);
        put(it->publish, sizeof it->publish, "v=spf1 include:%s -all", inc);
        return;
    }
    if (f->spf_count > 1) {
        put(it->text, sizeof it->text, "SPF: %s has %zu SPF records; RFC 7208 section 4.5 allows only "
            "one, so SPF fails for the domain", d, f->spf_count);
        put(it->hint, sizeof it->hint, "Merge them into one TXT record that contains include:%s and "
            "delete the others", inc);
        return;
    }
    const struct dns_txt *t = &r->answer->txt[f->spf_index];
    if (f->spf_state == POLICY_SPF_INCLUDE_AFTER_ALL)
        put(it->text, sizeof it->text, "SPF: the SPF record of %s has include:%s after its all term; "
            "receivers stop at all (RFC 7208 section 5.1), so move it before all", d, inc);
    else if (f->spf_state == POLICY_SPF_BAD_SEPARATOR)
        put(it->text, sizeof it->text, "SPF: the SPF record of %s holds a tab or control character; "
            "terms must be separated by spaces only (RFC 7208 section 4.6.1), so receivers cannot "
            "parse it", d);
    else
        put(it->text, sizeof it->text, "SPF: the SPF record of %s does not contain include:%s", d, inc);
    if (policy_spf_fixed(t->data, t->len, inc, it->publish, sizeof it->publish) == 0)
        put(it->change_from, sizeof it->change_from, "%.*s", (int)t->len, t->data);
    else
        put(it->hint, sizeof it->hint, "Add the term include:%s to it, before its all term", inc);
    spf_notes(it, t->data, inc);
}

static void examine_token(struct check_report *r, const struct policy_findings *f)
{
    char hex[CRYPTO_SHA256_HEX_BYTES];
    const char *prefix = policy_token_prefix();
    struct check_item *it = &r->token;
    it->ok = f->token;
    if (f->token) {
        put(it->text, sizeof it->text, "Token: %s has the %s record for %s", r->domain, prefix, r->user);
        return;
    }
    crypto_sha256_hex(r->user, strlen(r->user), hex);
    put(it->text, sizeof it->text, "Token: %s has no %s record for %s", r->domain, prefix, r->user);
    put(it->publish, sizeof it->publish, "%s=%s", prefix, hex);
    if (f->other_tokens > 0)
        put(it->note, sizeof it->note, "%zu %s record%s there belong%s to other accounts",
            f->other_tokens, prefix, f->other_tokens == 1 ? "" : "s", f->other_tokens == 1 ? "s" : "");
}

/* append — one more line of `publish` (several CNAMEs). */
static void append(char *dst, size_t cap, const char *line)
{
    size_t n = strlen(dst);
    if (n < cap)
        snprintf(dst + n, cap - n, "%s%s", n ? "\n" : "", line);
}

/* examine_dkim — a recommendation only: it never decides authorization.
 * Per key: delegated, or the exact CNAME to add. */
static void examine_dkim(struct check_report *r)
{
    struct check_item *it = &r->dkim;
    char line[2 * sizeof r->selector[0].name + 16];
    int missing = 0;
    r->selectors = dkim_sign_examine(r->domain, r->selector, CONFIG_DKIM_KEYS_MAX);
    if (r->selectors == 0) {
        it->ok = false;
        put(it->text, sizeof it->text, "DKIM: this relay signs no mail (MRS_DKIM_KEYS is not set); "
            "nothing to publish");
        return;
    }
    for (int i = 0; i < r->selectors; i++) {
        const struct dkim_selector_report *s = &r->selector[i];
        if (s->status == DKIM_DELEGATED)
            continue;
        missing++;
        snprintf(line, sizeof line, "%s CNAME %s", s->name, s->target);
        if (s->status == DKIM_DNS_FAILED)
            put(it->hint, sizeof it->hint, "The lookup of %s failed (%s); check again later", s->name,
                s->dns_status);
        else
            append(it->publish, sizeof it->publish, line);
        if (s->status == DKIM_OTHER_KEY || s->status == DKIM_SEVERAL_RECORDS)
            put(it->note, sizeof it->note, "%s has %s; replace %s by the CNAME", s->name,
                s->status == DKIM_OTHER_KEY ? "a record that does not carry this relay's key"
                                            : "several TXT records",
                s->status == DKIM_OTHER_KEY ? "it" : "them");
    }
    it->ok = missing == 0;
    if (it->ok)
        put(it->text, sizeof it->text, "DKIM: %s has delegated all %d signing key(s): its mail is signed "
            "with d=%s", r->domain, r->selectors, r->domain);
    else
        put(it->text, sizeof it->text, "DKIM (recommended, not required): %s has delegated %d of %d signing "
            "key(s); add one CNAME per key so its mail is signed with d=%s", r->domain,
            r->selectors - missing, r->selectors, r->domain);
}

static int examine(struct check_report *r)
{
    struct policy_findings f;
    const struct dns_result *a = r->answer;
    size_t n = a->status == DNS_OK && a->txt ? a->count : 0;
    const char **txt = calloc(n + 1, sizeof *txt);
    size_t *len = calloc(n + 1, sizeof *len);
    if (!txt || !len) {
        free(txt);
        free(len);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        txt[i] = a->txt[i].data;
        len[i] = a->txt[i].len;
    }
    policy_examine(r->user, txt, len, n, &f);
    examine_spf(r, &f);
    examine_token(r, &f);
    free(txt);
    free(len);
    return 0;
}

static bool valid_user(const char *u)
{
    size_t n = strnlen(u, AUTH_USER_MAX_BYTES + 1);
    if (n == 0 || n > AUTH_USER_MAX_BYTES)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return false; /* as the users table refuses them */
    return true;
}

enum check_status check_domain_run(const char *user, const char *target, struct check_report *out)
{
    memset(out, 0, sizeof *out);
    if (!valid_user(user) || util_copy(out->user, sizeof out->user, user, strlen(user)) < 0)
        return CHECK_BAD_USER;
    int rc = strchr(target, '@') ? policy_sender_domain(target, out->domain, sizeof out->domain)
                                 : policy_domain_normalize(target, out->domain, sizeof out->domain);
    if (rc < 0)
        return CHECK_BAD_DOMAIN;
    if (dns_init() < 0)
        return CHECK_NO_RESOLVER;
    dns_lookup(out->domain, DNS_TYPE_TXT, DNS_FRESH, &out->answer);
    policy_decide(out->user, out->domain, out->answer, &out->verdict);
    out->examined = out->verdict.status != POLICY_TEMPFAIL && out->answer && examine(out) == 0;
    examine_dkim(out);
    return CHECK_OK;
}

void check_domain_free(struct check_report *r)
{
    dns_result_free(r->answer);
    r->answer = NULL;
}

int check_domain_exit_code(const struct check_report *r)
{
    return r->verdict.status == POLICY_PASS ? 0 : r->verdict.status == POLICY_FAIL ? 1 : 3;
}

/* ---- text ------------------------------------------------------------------ */

/* print_txt — one record as in a zone file: quoted, \" \\ and \DDD escapes. */
static void print_txt(const struct dns_txt *t)
{
    fputs("  TXT \"", stdout);
    for (size_t i = 0; i < t->len; i++) {
        unsigned char c = (unsigned char)t->data[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c > 0x7e)
            printf("\\%03u", c);
        else
            putchar(c);
    }
    fputs("\"\n", stdout);
}

static void print_answer(const char *domain, const struct dns_result *r)
{
    char servers[DNS_SERVERS_MAX][DNS_SERVER_TEXT_BYTES];
    int n = dns_servers(servers, DNS_SERVERS_MAX);
    printf("DNS servers:");
    for (int i = 0; i < n; i++)
        printf(" %s", servers[i]);
    printf("\n");
    if (!r) {
        printf("TXT lookup of %s failed: invalid name or out of memory\n", domain);
        return;
    }
    if (!dns_status_permanent(r->status)) {
        printf("TXT lookup of %s failed temporarily: %s (last server asked: %s)\n", domain,
               dns_status_name(r->status), r->server);
        return;
    }
    printf("Answer from %s%s:", r->server, r->tcp ? " (over TCP: too large for UDP)" : "");
    if (r->status == DNS_NXDOMAIN)
        printf(" %s does not exist (NXDOMAIN)\n", domain);
    else
        printf(" %zu TXT record%s for %s\n", r->status == DNS_OK ? r->count : 0,
               r->status == DNS_OK && r->count == 1 ? "" : "s", domain);
    if (r->cname_hops > 0)
        printf("  (%s is an alias: CNAME to %s, whose records count)\n", domain, r->canonical);
    for (size_t i = 0; r->status == DNS_OK && i < r->count; i++)
        print_txt(&r->txt[i]);
}

static void print_item(const struct check_item *it, const char *domain)
{
    printf("%s %s\n", it->ok ? OK_MARK : BAD_MARK, it->text);
    if (it->change_from[0])
        printf("    Change the TXT record\n      %s\n    to\n      %s\n", it->change_from, it->publish);
    else if (it->publish[0])
        printf("    Add this TXT record to %s:\n      %s\n", domain, it->publish);
    if (it->hint[0])
        printf("    %s\n", it->hint);
    if (it->note[0])
        printf("    (%s)\n", it->note);
}

/* print_dkim — the DKIM recommendation, one line per key. */
static void print_dkim(const struct check_report *r)
{
    const struct check_item *it = &r->dkim;
    if (r->selectors == 0) { /* nothing the customer can do: no mark */
        printf("  (%s)\n", it->text);
        return;
    }
    printf("%s %s\n", it->ok ? OK_MARK : BAD_MARK, it->text);
    for (int i = 0; i < r->selectors; i++) {
        const struct dkim_selector_report *s = &r->selector[i];
        if (s->status == DKIM_DELEGATED)
            printf("    %s %s (%s): delegated\n", OK_MARK, s->name, dkim_alg_name(s->alg));
        else if (s->status == DKIM_DNS_FAILED)
            printf("    %s %s (%s): DNS lookup failed (%s)\n", BAD_MARK, s->name, dkim_alg_name(s->alg),
                   s->dns_status);
        else
            printf("    %s %s (%s): %s; add this record to the zone of %s:\n      %s CNAME %s\n", BAD_MARK,
                   s->name, dkim_alg_name(s->alg),
                   s->status == DKIM_OTHER_KEY ? "has a record without this relay's key (replace it)"
                   : s->status == DKIM_SEVERAL_RECORDS ? "has several TXT records (replace them)"
                                                        : "not delegated",
                   r->domain, s->name, s->target);
    }
    if (it->note[0])
        printf("    (%s)\n", it->note);
}

int check_domain_cli(int argc, char **argv)
{
    if (argc != 4 || argv[2][0] == '\0') {
        fprintf(stderr, "usage: mrs check-domain USERNAME ADDRESS-OR-DOMAIN\n");
        return 2;
    }
    struct check_report *r = malloc(sizeof *r);
    if (!r) {
        fprintf(stderr, "mrs check-domain: out of memory\n");
        return 3;
    }
    enum check_status st = check_domain_run(argv[2], argv[3], r);
    if (st != CHECK_OK) {
        if (st == CHECK_NO_RESOLVER)
            fprintf(stderr, "mrs check-domain: no source of randomness\n");
        else if (st == CHECK_BAD_USER)
            fprintf(stderr, "mrs check-domain: '%s' is not a username (1 to %d bytes, no spaces)\n",
                    argv[2], AUTH_USER_MAX_BYTES);
        else
            fprintf(stderr, "mrs check-domain: '%s' is not an address or domain that can send mail\n",
                    argv[3]);
        free(r);
        return st == CHECK_NO_RESOLVER ? 3 : 2;
    }
    printf("Checking whether %s may send as %s\n", r->user, r->domain);
    print_answer(r->domain, r->answer);
    if (r->examined) {
        print_item(&r->spf, r->domain);
        print_item(&r->token, r->domain);
    }
    print_dkim(r);
    int code = check_domain_exit_code(r);
    if (code == 0)
        printf("Result: authorized (the relay accepts MAIL FROM this domain for %s)\n", r->user);
    else
        printf("Result: %s; the relay answers MAIL FROM with:\n  %d %s %s\n",
               code == 1 ? "NOT authorized" : "DNS temporarily failing, try again later",
               r->verdict.code, r->verdict.enhanced, r->verdict.text);
    check_domain_free(r);
    free(r);
    dns_shutdown();
    return code;
}

/* ---- JSON ------------------------------------------------------------------ */

/* A bounded appender whose overflow is sticky. */
struct json {
    char *p;
    size_t cap, len;
    bool full;
};

static void raw(struct json *j, const char *s, size_t n)
{
    if (j->full || n >= j->cap - j->len) {
        j->full = true;
        return;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
    j->p[j->len] = '\0';
}

#define lit(j, s) raw((j), (s), sizeof(s) - 1)

static void rawf(struct json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rawf(struct json *j, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        j->full = true;
    else
        raw(j, buf, (size_t)n);
}

/* str — a JSON string of n bytes: quotes, backslashes and every byte
 * outside printable ASCII escaped, so any record text stays valid JSON. */
static void str(struct json *j, const char *s, size_t n)
{
    lit(j, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            rawf(j, "\\%c", c);
        else if (c < 0x20 || c > 0x7e)
            rawf(j, "\\u%04x", c);
        else
            raw(j, (const char *)&c, 1);
    }
    lit(j, "\"");
}

static void key_str(struct json *j, const char *key, const char *v)
{
    rawf(j, "\"%s\":", key);
    if (v && v[0])
        str(j, v, strlen(v));
    else
        lit(j, "null");
}

/* item_json — "key":{ok,text,publish,change_from,hint,note}; with `open`
 * the object is left open for more keys. */
static void item_json(struct json *j, const char *key, const struct check_item *it, bool examined, bool open)
{
    rawf(j, "\"%s\":{\"ok\":%s,", key, !examined ? "null" : it->ok ? "true" : "false");
    key_str(j, "text", examined ? it->text : NULL);
    lit(j, ",");
    key_str(j, "publish", examined ? it->publish : NULL);
    lit(j, ",");
    key_str(j, "change_from", examined ? it->change_from : NULL);
    lit(j, ",");
    key_str(j, "hint", examined ? it->hint : NULL);
    lit(j, ",");
    key_str(j, "note", examined ? it->note : NULL);
    if (!open)
        lit(j, "}");
}

static void selector_json(struct json *j, const struct dkim_selector_report *s, bool comma)
{
    char cname[2 * sizeof s->name + 16];
    snprintf(cname, sizeof cname, "%s CNAME %s", s->name, s->target);
    rawf(j, "%s{\"ok\":%s,", comma ? "," : "", s->status == DKIM_DELEGATED ? "true" : "false");
    key_str(j, "selector", s->selector);
    lit(j, ",");
    key_str(j, "algorithm", dkim_alg_name(s->alg));
    lit(j, ",");
    key_str(j, "status", dkim_sign_delegation_name(s->status));
    lit(j, ",");
    key_str(j, "name", s->name);
    lit(j, ",");
    key_str(j, "publish", s->status == DKIM_DELEGATED ? NULL : cname);
    lit(j, ",");
    key_str(j, "dns", s->dns_status);
    lit(j, "}");
}

static void dns_json(struct json *j, const struct dns_result *a)
{
    lit(j, "\"dns\":{");
    key_str(j, "status", a ? dns_status_name(a->status) : "error");
    lit(j, ",");
    key_str(j, "server", a ? a->server : NULL);
    lit(j, ",");
    key_str(j, "cname", a && a->cname_hops > 0 ? a->canonical : NULL);
    lit(j, ",\"txt\":[");
    for (size_t i = 0; a && a->status == DNS_OK && i < a->count; i++) {
        if (i)
            lit(j, ",");
        str(j, a->txt[i].data, a->txt[i].len);
    }
    lit(j, "]}");
}

int check_domain_json(const struct check_report *r, char *out, size_t cap)
{
    static const char *const results[] = {"authorized", "not_authorized", "dns_temporary_failure"};
    struct json j = {.p = out, .cap = cap};
    if (cap == 0)
        return -1;
    out[0] = '\0';
    lit(&j, "{");
    key_str(&j, "user", r->user);
    lit(&j, ",");
    key_str(&j, "domain", r->domain);
    lit(&j, ",");
    key_str(&j, "result", results[check_domain_exit_code(r) == 0 ? 0 : check_domain_exit_code(r) == 1 ? 1 : 2]);
    rawf(&j, ",\"reply\":{\"code\":%d,", r->verdict.code);
    key_str(&j, "enhanced", r->verdict.enhanced);
    lit(&j, ",");
    key_str(&j, "text", r->verdict.text);
    lit(&j, "},");
    dns_json(&j, r->answer);
    lit(&j, ",");
    item_json(&j, "spf", &r->spf, r->examined, false);
    lit(&j, ",");
    item_json(&j, "token", &r->token, r->examined, false);
    lit(&j, ",");
    item_json(&j, "dkim", &r->dkim, true, true);
    lit(&j, ",\"selectors\":[");
    for (int i = 0; i < r->selectors; i++)
        selector_json(&j, &r->selector[i], i > 0);
    lit(&j, "]}}\n");
    return j.full ? -1 : (int)j.len;
}

/* ---- GET /check ------------------------------------------------------------- */

static int http_error(char *out, size_t cap, size_t *len, int status, const char *why)
{
    struct json j = {.p = out, .cap = cap};
    lit(&j, "{");
    key_str(&j, "error", why);
    lit(&j, "}\n");
    *len = j.full ? 0 : j.len;
    return status;
}

int check_domain_http(const char *query, size_t query_len, char *out, size_t cap, size_t *len)
{
    char user[AUTH_USER_MAX_BYTES + 1], target[SMTP_PATH_MAX_BYTES + 1];
    int u = http_query_param(query, query_len, "user", user, sizeof user);
    int d = http_query_param(query, query_len, "domain", target, sizeof target);
    if (u <= 0 || d <= 0 || !user[0] || !target[0])
        return http_error(out, cap, len, 400, u < 0 || d < 0
                              ? "malformed, repeated or too long user or domain parameter"
                              : "expected ?user=USERNAME&domain=DOMAIN-OR-ADDRESS (percent-encoded)");
    struct check_report *r = malloc(sizeof *r);
    if (!r)
        return http_error(out, cap, len, 500, "out of memory");
    enum check_status st = check_domain_run(user, target, r);
    int status = 200;
    if (st == CHECK_BAD_USER)
        status = http_error(out, cap, len, 400, "user is not a username (1 to 255 bytes, no spaces)");
    else if (st == CHECK_BAD_DOMAIN)
        status = http_error(out, cap, len, 400, "domain is not an address or domain that can send mail");
    else if (st != CHECK_OK)
        status = http_error(out, cap, len, 500, "no resolver");
    else {
        int n = check_domain_json(r, out, cap);
        if (n < 0)
            status = http_error(out, cap, len, 500, "report too large");
        else
            *len = (size_t)n;
        char clean[64];
        log_info("check", &(struct log_fields){.user = log_sanitize(clean, sizeof clean, r->user, strlen(r->user)),
                                               .result = check_domain_exit_code(r) == 0 ? "authorized" : "refused"},
                 "GET /check for %s", r->domain);
    }
    check_domain_free(r);
    free(r);
    return status;
}
