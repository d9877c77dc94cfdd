/* Unit tests of policy: the pure decision over TXT records, the reply texts,
 * the SPF fix suggestion, the sender domain and the From: header parser. */
#include "config.h"
#include "crypto.h"
#include "dns.h"
#include "policy.h"
#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>

#define USER "steve.mailer@mycorp.se"
#define TOKEN "elastx-mrs=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d9"
#define SPF_OK "v=spf1 include:elastx.email -all"

/* evaluate — policy_evaluate over a NULL-terminated list of texts. */
static void evaluate(const char *domain, struct policy_verdict *v, ...)
{
    const char *txt[16];
    size_t len[16], n = 0;
    va_list ap;
    va_start(ap, v);
    for (const char *t; n < 16 && (t = va_arg(ap, const char *)) != NULL; n++) {
        txt[n] = t;
        len[n] = strlen(t);
    }
    va_end(ap);
    policy_evaluate(USER, domain, txt, len, n, v);
}

static int text_clean(const struct policy_verdict *v)
{
    return strlen(v->text) < POLICY_TEXT_MAX_BYTES && !strchr(v->text, '\r') &&
           !strchr(v->text, '\n');
}

static void test_spf_record_recognition(void)
{
    CHECK(policy_is_spf("v=spf1", 6));
    CHECK(policy_is_spf("V=SPF1 -all", 11));
    CHECK(policy_is_spf("v=spf1 include:x -all", 21));
    CHECK(!policy_is_spf("v=spf1x", 7));
    CHECK(!policy_is_spf("v=spf10 -all", 12));
    CHECK(!policy_is_spf(" v=spf1 -all", 12));
    CHECK(!policy_is_spf("v=spf", 5));
    CHECK(!policy_is_spf("spf1", 4));
}

static void test_include_term(void)
{
    const char *d = "elastx.email";
#define HAS(s) policy_spf_has_include(s, strlen(s), d)
    CHECK(HAS("v=spf1 include:elastx.email -all"));
    CHECK(HAS("v=spf1 +include:elastx.email -all"));
    CHECK(HAS("v=spf1 include:ELASTX.Email. ~all"));
    /* issue 10 item 13: as receivers read it */
    CHECK(!HAS("v=spf1 mx\tinclude:elastx.email"));
    CHECK(!HAS("v=spf1 -all include:elastx.email"));
    CHECK(!HAS("v=spf1 mx ~all include:elastx.email"));
    CHECK(HAS("v=spf1 include:elastx.email -all include:other.example"));
    CHECK(policy_spf_include_state("v=spf1 -all include:elastx.email", 32, d) == POLICY_SPF_INCLUDE_AFTER_ALL);
    CHECK(policy_spf_include_state("v=spf1 a\tinclude:elastx.email", 30, d) == POLICY_SPF_BAD_SEPARATOR);
    CHECK(policy_spf_include_state("v=spf1 a", 8, d) == POLICY_SPF_INCLUDE_MISSING);
    CHECK(HAS("v=spf1   a  include:elastx.email  "));
    CHECK(!HAS("v=spf1 include:elastx.email.evil.example -all"));
    CHECK(!HAS("v=spf1 include:xelastx.email -all"));
    CHECK(!HAS("v=spf1 include:elastx.emai -all"));
    CHECK(!HAS("v=spf1 include:elastx.email.. -all"));
    CHECK(!HAS("v=spf1 -include:elastx.email -all"));
    CHECK(!HAS("v=spf1 ~include:elastx.email -all"));
    CHECK(!HAS("v=spf1 ?include:elastx.email -all"));
    CHECK(!HAS("v=spf1 redirect=elastx.email"));
    CHECK(!HAS("v=spf1 include:spf.other.example -all"));
    CHECK(!HAS("v=spf1 include=elastx.email -all"));
    CHECK(!HAS("v=spf1 include: elastx.email -all"));
#undef HAS
}

static void test_token_record(void)
{
    const char *p = "elastx-mrs";
    char upper[] = TOKEN;
    for (char *c = upper + 11; *c; c++)
        *c = (char)(*c >= 'a' && *c <= 'f' ? *c - 32 : *c);
#define TOK(s) policy_is_token_for(s, strlen(s), p, USER)
    CHECK(TOK(TOKEN));
    CHECK(TOK(upper));
    CHECK(TOK("  " TOKEN " "));
    CHECK(TOK("ELASTX-MRS=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d9"));
    CHECK(!policy_is_token_for(TOKEN, strlen(TOKEN), p, "someone.else@mycorp.se"));
    CHECK(!policy_is_token_for(TOKEN, strlen(TOKEN), p, "steve.mailer@mycorp.se "));
    CHECK(!TOK("elastx-mrs=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d"));
    CHECK(!TOK("elastx-mrs=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d9a"));
    CHECK(!TOK("elastx-mrs=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1dg"));
    CHECK(!TOK("elastx-mrs 55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d9"));
    CHECK(!TOK("elastx-mrsx=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d9"));
    CHECK(!TOK("v=spf1 " TOKEN));
    CHECK(!TOK(""));
#undef TOK
}

static void test_both_records_pass(void)
{
    struct policy_verdict v;
    evaluate("new.mycorp.se", &v, "google-site-verification=abc", SPF_OK, TOKEN, NULL);
    CHECK(v.status == POLICY_PASS && v.code == 250 && strcmp(v.reason, "ok") == 0);
    evaluate("new.mycorp.se", &v, TOKEN, "v=spf1 mx +include:elastx.email ~all", NULL);
    CHECK(v.status == POLICY_PASS);
    /* several accounts may be authorized */
    evaluate("new.mycorp.se", &v, "elastx-mrs=" "0000000000000000000000000000000000000000000000000000000000000000",
             SPF_OK, TOKEN, NULL);
    CHECK(v.status == POLICY_PASS);
}

static void test_missing_spf_names_the_record_to_publish(void)
{
    struct policy_verdict v;
    evaluate("new.mycorp.se", &v, TOKEN, NULL);
    CHECK(v.status == POLICY_FAIL && v.code == 550 && strcmp(v.enhanced, "5.7.1") == 0);
    CHECK_STR(v.reason, "spf");
    CHECK_STR(v.text, "new.mycorp.se has no SPF record containing include:elastx.email; "
                      "publish TXT \"v=spf1 include:elastx.email -all\"");
    CHECK(text_clean(&v));
    /* the include in a TXT record that is not the SPF record does not count */
    evaluate("new.mycorp.se", &v, "include:elastx.email", "xv=spf1 include:elastx.email", TOKEN,
             NULL);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "spf") == 0);
}

static void test_spf_without_include_names_the_change(void)
{
    struct policy_verdict v;
    evaluate("new.mycorp.se", &v, "v=spf1 mx -all", TOKEN, NULL);
    CHECK_STR(v.reason, "spf");
    CHECK_STR(v.text, "new.mycorp.se has no SPF record containing include:elastx.email; "
                      "change it to \"v=spf1 mx include:elastx.email -all\"");
    const char *refused[] = {"v=spf1 include:elastx.email.evil.example -all",
                             "v=spf1 include:spf.other.example -all", "v=spf1 redirect=elastx.email",
                             "v=spf1 -include:elastx.email -all", "v=spf1 ~include:elastx.email -all",
                             "v=spf1 ?include:elastx.email -all"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        evaluate("new.mycorp.se", &v, refused[i], TOKEN, NULL);
        CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "spf") == 0);
        CHECK(text_clean(&v));
    }
}

static void test_two_spf_records_are_refused(void)
{
    struct policy_verdict v;
    evaluate("new.mycorp.se", &v, SPF_OK, "v=spf1 mx -all", TOKEN, NULL);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "spf_multiple") == 0);
    CHECK(strstr(v.text, "new.mycorp.se has 2 SPF records") == v.text);
    evaluate("new.mycorp.se", &v, SPF_OK, SPF_OK, TOKEN, NULL);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "spf_multiple") == 0);
}

static void test_missing_token_names_the_full_value(void)
{
    struct policy_verdict v;
    evaluate("new.mycorp.se", &v, SPF_OK, NULL);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "token") == 0);
    CHECK_STR(v.text, "new.mycorp.se has no TXT record \"" TOKEN "\" for this account; publish it");
    /* another account's token does not help */
    evaluate("new.mycorp.se", &v, SPF_OK,
             "elastx-mrs=0f9a3f4c2b1e8d7a6c5b4a39281706f5e4d3c2b1a0918273645546372819abcd", NULL);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "token") == 0);
    /* both missing: the SPF first, the token too */
    evaluate("new.mycorp.se", &v, NULL);
    CHECK(strstr(v.text, "include:elastx.email -all\"; also publish TXT \"" TOKEN "\""));
}

static void test_texts_fit_for_long_names(void)
{
    struct policy_verdict v;
    char dom[254], spf[600];
    memset(dom, 'a', 253);
    for (int i = 63; i < 253; i += 64)
        dom[i] = '.';
    dom[253] = '\0';
    snprintf(spf, sizeof spf, "v=spf1 %.*s -all", 500, "include:x.example include:y.example ip4:192.0.2.1 ip4:192.0.2.2 ip4:192.0.2.3 ip4:192.0.2.4 ip4:192.0.2.5 ip4:192.0.2.6 ip4:192.0.2.7 ip4:192.0.2.8 ip4:192.0.2.9 ip4:192.0.2.10 ip4:192.0.2.11 ip4:192.0.2.12 ip4:192.0.2.13 ip4:192.0.2.14 ip4:192.0.2.15 ip4:192.0.2.16");
    evaluate(dom, &v, spf, NULL);
    CHECK(v.status == POLICY_FAIL && text_clean(&v));
    CHECK(strstr(v.text, "has no SPF record containing include:elastx.email") != NULL);
    evaluate(dom, &v, "v=spf1 \r\n -all", NULL); /* control bytes: never quoted */
    CHECK(text_clean(&v) && strstr(v.text, "separated by spaces only") != NULL);
    evaluate("x.example", &v, "v=spf1 \r\n -all", NULL);
    CHECK(text_clean(&v) && strstr(v.text, "add include:elastx.email to it") != NULL);
    evaluate(dom, &v, SPF_OK, NULL);
    CHECK(text_clean(&v) && strstr(v.text, TOKEN) != NULL);
}

static void test_spf_fix_suggestion(void)
{
    char out[256];
    const char *d = "elastx.email";
#define FIX(s) (policy_spf_fixed(s, strlen(s), d, out, sizeof out) == 0 ? out : "(fail)")
    CHECK_STR(FIX("v=spf1 mx -all"), "v=spf1 mx include:elastx.email -all");
    CHECK_STR(FIX("v=spf1 mx ~all"), "v=spf1 mx include:elastx.email ~all");
    CHECK_STR(FIX("v=spf1 ip4:192.0.2.1"), "v=spf1 ip4:192.0.2.1 include:elastx.email");
    CHECK_STR(FIX("v=spf1 ip4:192.0.2.1 "), "v=spf1 ip4:192.0.2.1 include:elastx.email");
    CHECK_STR(FIX("v=spf1 a redirect=_spf.example"), "v=spf1 a include:elastx.email redirect=_spf.example");
    CHECK_STR(FIX("v=spf1 ~include:elastx.email -all"), "v=spf1 include:elastx.email -all");
    CHECK_STR(FIX("v=spf1 include:elastx.email.evil.example -all"),
              "v=spf1 include:elastx.email.evil.example include:elastx.email -all");
    CHECK_STR(FIX("v=spf1 all"), "v=spf1 include:elastx.email all");
    CHECK_STR(FIX("v=spf1 -all include:elastx.email"), "v=spf1 include:elastx.email -all");
    CHECK_STR(FIX("v=spf1 mx\tinclude:elastx.email -all"), "v=spf1 mx include:elastx.email -all");
    CHECK_STR(FIX("v=spf1  a   -all"), "v=spf1 a include:elastx.email -all");
    CHECK(policy_spf_fixed("v=spf1 \"x\" -all", 15, d, out, sizeof out) == -1);
    CHECK(policy_spf_fixed("v=spf1 mx -all", 14, d, out, 20) == -1);
#undef FIX
}

static void test_sender_domain(void)
{
    char d[POLICY_DOMAIN_MAX_BYTES];
    CHECK(policy_sender_domain("newsletter@New.MyCorp.SE.", d, sizeof d) == 0);
    CHECK_STR(d, "new.mycorp.se");
    CHECK(policy_sender_domain("\"odd@local\"@mycorp.se", d, sizeof d) == 0);
    CHECK_STR(d, "mycorp.se");
    CHECK(policy_sender_domain("", d, sizeof d) == -1);
    CHECK(policy_sender_domain("postmaster", d, sizeof d) == -1);
    CHECK(policy_sender_domain("@mycorp.se", d, sizeof d) == -1);
    CHECK(policy_sender_domain("a@[192.0.2.1]", d, sizeof d) == -1);
    CHECK(policy_sender_domain("a@[IPv6:2001:db8::1]", d, sizeof d) == -1);
    CHECK(policy_sender_domain("a@", d, sizeof d) == -1);
    CHECK(policy_sender_domain("a@bad..domain", d, sizeof d) == -1);
    CHECK(policy_sender_domain("a@bad domain", d, sizeof d) == -1);
    CHECK(policy_sender_domain("a@mycorp.se", d, 5) == -1);
    CHECK(policy_domain_normalize("MyCorp.SE.", d, sizeof d) == 0);
    CHECK_STR(d, "mycorp.se");
    /* SMTPUTF8: a U-label domain is checked as its A-label (RFC 3492) */
    CHECK(policy_sender_domain("j\xc3\xb6rg@M\xc3\xbcnchen.Test.", d, sizeof d) == 0);
    CHECK_STR(d, "xn--mnchen-3ya.test");
    CHECK(policy_sender_domain("a@b\xc3\xbc" "cher.test", d, sizeof d) == 0);
    CHECK_STR(d, "xn--bcher-kva.test");
    CHECK(policy_sender_domain("a@b\xc3.test", d, sizeof d) == -1);   /* not UTF-8 */
    CHECK(policy_sender_domain("a@\xc3\xbc..test", d, sizeof d) == -1); /* empty label */
}

/* from — policy_parse_from of s; the domains joined with spaces into out. */
static int from(const char *s, char *out, size_t out_len)
{
    char (*d)[POLICY_DOMAIN_MAX_BYTES] = calloc(4, sizeof *d);
    int n = policy_parse_from(s, strlen(s), d, 4);
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), out_len - strlen(out), "%s%s", i ? " " : "", d[i]);
    free(d);
    return n;
}

static void test_from_header_parser(void)
{
    char o[1200];
    CHECK(from(" steve@New.MyCorp.se", o, sizeof o) == 1);
    CHECK_STR(o, "new.mycorp.se");
    CHECK(from("Steve Mailer <steve@new.mycorp.se>", o, sizeof o) == 1);
    CHECK_STR(o, "new.mycorp.se");
    CHECK(from("\"Mailer, Steve\" <s@a.test>, b@B.test", o, sizeof o) == 2);
    CHECK_STR(o, "a.test b.test");
    CHECK(from("(comment (nested)) s@a.test (trailing)", o, sizeof o) == 1);
    CHECK_STR(o, "a.test");
    CHECK(from("Steve\r\n <s@a.test>", o, sizeof o) == 1); /* folded */
    CHECK(from("=?utf-8?q?St=C3=A9ve?= <s@a.test>", o, sizeof o) == 1);
    CHECK(from("\"a@evil.test\" <s@a.test>", o, sizeof o) == 1);
    CHECK_STR(o, "a.test");
    CHECK(from("team: s@a.test, t@b.test;", o, sizeof o) == 2);
    CHECK_STR(o, "a.test b.test");
    CHECK(from("team: s@a.test;, t@b.test", o, sizeof o) == 2);
    CHECK(from("<@route.test,@r2.test:s@a.test>", o, sizeof o) == 1);
    CHECK_STR(o, "a.test");
    CHECK(from("s@a.test, t@A.TEST", o, sizeof o) == 1); /* the same domain once */
    CHECK(from("s . t@a . test", o, sizeof o) == 1);    /* obs-local-part, obs-domain */
    CHECK_STR(o, "a.test");
    CHECK(from("s@a.test, , t@b.test", o, sizeof o) == 2); /* obs-mbox-list */
    /* RFC 6532: UTF-8 display names, local parts and domains; domains as A-labels */
    CHECK(from("J\xc3\xb6rg <j\xc3\xb6rg@M\xc3\xbcnchen.test>", o, sizeof o) == 1);
    CHECK_STR(o, "xn--mnchen-3ya.test");
    CHECK(from("\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.test, xn--mnchen-3ya.test@M\xc3\xbcnchen.test", o,
               sizeof o) == 2);
    CHECK_STR(o, "xn--fsqu00a.test xn--mnchen-3ya.test");
    CHECK(from("a@m\xc3\xbcnchen.test, b@xn--mnchen-3ya.test", o, sizeof o) == 1); /* one domain */
    CHECK(from("a@m\xc3.test", o, sizeof o) == -1);
}

static void test_from_header_refused(void)
{
    char o[1200];
    const char *bad[] = {"", "   ", "Steve", "<>", "Steve <>", "s@[192.0.2.1]", "<s@[192.0.2.1]>",
                         "s@a.test t@b.test", "s@a.test <t@b.test>", "undisclosed:;",
                         "team: s@a.test", "(unterminated s@a.test", "\"unterminated s@a.test",
                         "s@", "s@a..test", "<s@a.test", "s@a.test>", "Steve <s@a.test> x",
                         "@a.test", "s@a.test; t@b.test", "Steve, s@a.test", "a@b.test, c@d.test, e@f.test, g@h.test, i@j.test"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (from(bad[i], o, sizeof o) != -1) {
            fprintf(stderr, "  accepted: '%s' -> '%s'\n", bad[i], o);
            unit_failed_checks++;
        }
    }
}

static void test_header_from_needs_exactly_one(void)
{
    struct policy_verdict v;
    const char none[] = "Subject: hi\r\nTo: a@b.test\r\n";
    const char two[] = "From: a@a.test\r\nSubject: x\r\nfrom : b@b.test\r\n";
    const char bad[] = "Subject: x\r\nFrom: Steve <>\r\n";
    const char resent[] = "Resent-From: a@a.test\r\nX-From: b@b.test\r\n";
    policy_check_header_from(USER, none, sizeof none - 1, NULL, &v);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "no_from") == 0 && v.code == 550);
    policy_check_header_from(USER, two, sizeof two - 1, NULL, &v);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "no_from") == 0);
    policy_check_header_from(USER, bad, sizeof bad - 1, NULL, &v);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "syntax") == 0);
    policy_check_header_from(USER, resent, sizeof resent - 1, NULL, &v);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "no_from") == 0);
}

/* the MAIL FROM domain passed for this user in this transaction: a From:
 * domain equal to it (case aside) passes without a second lookup (no DNS
 * is asked here: a lookup would not pass).  That other From: domains are
 * still looked up is test_smtp's (real DNS on loopback). */
static void test_header_from_envelope_domain_not_checked_twice(void)
{
    struct policy_verdict v;
    const char same[] = "Subject: x\r\nFrom: News <news@Customer.TEST>\r\n";
    const char twice[] = "From: a@customer.test, \"B\" <b@CUSTOMER.test>\r\n";
    policy_check_header_from(USER, same, sizeof same - 1, "customer.test", &v);
    CHECK(v.status == POLICY_PASS && v.code == 250 && strcmp(v.reason, "ok") == 0);
    CHECK(strstr(v.text, "customer.test") != NULL);
    policy_check_header_from(USER, twice, sizeof twice - 1, "customer.test", &v);
    CHECK(v.status == POLICY_PASS);
}

/* result — a TXT result as dns_lookup() would give it. */
static struct dns_result *result(enum dns_status s, const char *a, const char *b)
{
    struct dns_result *r = dns_result_new(s, DNS_TYPE_TXT, "new.mycorp.se");
    const char *t[2] = {a, b};
    r->txt = calloc(2, sizeof *r->txt);
    for (int i = 0; i < 2 && t[i]; i++) {
        r->txt[i].data = strdup(t[i]);
        r->txt[i].len = strlen(t[i]);
        r->count++;
    }
    return r;
}

static void test_decide_from_lookup_outcomes(void)
{
    struct policy_verdict v;
    struct dns_result *r = result(DNS_OK, SPF_OK, TOKEN);
    policy_decide(USER, "new.mycorp.se", r, &v);
    CHECK(v.status == POLICY_PASS && v.code == 250);
    dns_result_free(r);
    r = result(DNS_NXDOMAIN, NULL, NULL);
    policy_decide(USER, "new.mycorp.se", r, &v);
    CHECK(v.status == POLICY_FAIL && v.code == 550 && strcmp(v.reason, "nxdomain") == 0);
    CHECK(strstr(v.text, "new.mycorp.se does not exist in DNS") == v.text && strstr(v.text, TOKEN));
    dns_result_free(r);
    r = result(DNS_NODATA, NULL, NULL);
    policy_decide(USER, "new.mycorp.se", r, &v);
    CHECK(v.status == POLICY_FAIL && strcmp(v.reason, "spf") == 0);
    dns_result_free(r);
    enum dns_status temp[] = {DNS_SERVFAIL, DNS_REFUSED, DNS_TIMEOUT, DNS_MALFORMED, DNS_ERROR};
    for (size_t i = 0; i < sizeof temp / sizeof temp[0]; i++) {
        r = result(temp[i], NULL, NULL);
        policy_decide(USER, "new.mycorp.se", r, &v);
        CHECK(v.status == POLICY_TEMPFAIL && v.code == 451 && strcmp(v.enhanced, "4.4.3") == 0);
        CHECK(strcmp(v.reason, "dns_temp") == 0 && strstr(v.text, dns_status_name(temp[i])));
        dns_result_free(r);
    }
    policy_decide(USER, "new.mycorp.se", NULL, &v);
    CHECK(v.status == POLICY_TEMPFAIL);
}

static void test_configured_include_and_prefix(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    struct policy_verdict v;
    setenv("MRS_SPF_INCLUDE", "relay.example.org", 1);
    setenv("MRS_TOKEN_PREFIX", "acme-relay", 1);
    CHECK(config_load(err, sizeof err) == 0);
    char tok[200], hex[CRYPTO_SHA256_HEX_BYTES];
    crypto_sha256_hex(USER, strlen(USER), hex);
    snprintf(tok, sizeof tok, "acme-relay=%s", hex);
    evaluate("d.test", &v, "v=spf1 include:relay.example.org -all", tok, NULL);
    CHECK(v.status == POLICY_PASS);
    evaluate("d.test", &v, SPF_OK, TOKEN, NULL);
    CHECK(v.status == POLICY_FAIL &&
          strstr(v.text, "no SPF record containing include:relay.example.org") != NULL);
    evaluate("d.test", &v, "v=spf1 include:relay.example.org -all", TOKEN, NULL);
    CHECK(v.status == POLICY_FAIL && strstr(v.text, tok) != NULL);
    unsetenv("MRS_SPF_INCLUDE");
    unsetenv("MRS_TOKEN_PREFIX");
    CHECK(config_load(err, sizeof err) == 0);
}

int main(void)
{
    static const struct unit_case cases[] = {
        UNIT_CASE(test_spf_record_recognition), UNIT_CASE(test_include_term),
        UNIT_CASE(test_token_record), UNIT_CASE(test_both_records_pass),
        UNIT_CASE(test_missing_spf_names_the_record_to_publish),
        UNIT_CASE(test_spf_without_include_names_the_change),
        UNIT_CASE(test_two_spf_records_are_refused), UNIT_CASE(test_missing_token_names_the_full_value),
        UNIT_CASE(test_texts_fit_for_long_names), UNIT_CASE(test_spf_fix_suggestion),
        UNIT_CASE(test_sender_domain), UNIT_CASE(test_from_header_parser),
        UNIT_CASE(test_from_header_refused), UNIT_CASE(test_header_from_needs_exactly_one), UNIT_CASE(test_header_from_envelope_domain_not_checked_twice),
        UNIT_CASE(test_decide_from_lookup_outcomes), UNIT_CASE(test_configured_include_and_prefix),
    };
    if (crypto_init() < 0)
        return 1;
    return unit_run("policy", cases, sizeof cases / sizeof cases[0]);
}
