/*
 * check_domain — `mrs check-domain USERNAME ADDRESS-OR-DOMAIN` (SPEC §2):
 * a self-service diagnosis of a sender domain with the relay's own resolver
 * and policy code.  Prints which server answered, every TXT record seen, a
 * ✔/✘ line per requirement and, for each ✘, the exact record to add or the
 * exact change to make; exits 0 (authorized), 1 (not) or 3 (DNS failing
 * temporarily), 2 on a usage error.
 *
 * Calls: policy (the same decision the relay makes), dns, crypto, config.  Runs
 * single-threaded in the CLI process; output goes to stdout.
 */
#include "config.h"
#include "crypto.h"
#include "dns.h"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK_MARK "\xe2\x9c\x94"  /* ✔ */
#define BAD_MARK "\xe2\x9c\x98" /* ✘ */

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

/* spf_notes — why a present SPF record does not count, when it is a
 * common mistake. */
static void spf_notes(const char *spf, const char *inc)
{
    if (strstr(spf, "include:") || strstr(spf, "redirect="))
        printf("    (includes and redirect= are not followed: include:%s must be a term of "
               "this record itself)\n", inc);
}

static void report_spf(const char *domain, const struct dns_result *r,
                       const struct policy_findings *f)
{
    const char *inc = policy_spf_include();
    char fixed[1024];
    if (f->spf_include) {
        printf(OK_MARK " SPF: %s has one SPF record and it contains include:%s\n", domain, inc);
        return;
    }
    if (f->spf_count == 0) {
        printf(BAD_MARK " SPF: %s has no SPF record\n", domain);
        printf("    Add this TXT record to %s:\n      v=spf1 include:%s -all\n", domain, inc);
        return;
    }
    if (f->spf_count > 1) {
        printf(BAD_MARK " SPF: %s has %zu SPF records; RFC 7208 section 4.5 allows only one, "
               "so SPF fails for the domain\n", domain, f->spf_count);
        printf("    Merge them into one TXT record that contains include:%s and delete the "
               "others\n", inc);
        return;
    }
    const struct dns_txt *t = &r->txt[f->spf_index];
    if (f->spf_state == POLICY_SPF_INCLUDE_AFTER_ALL)
        printf(BAD_MARK " SPF: the SPF record of %s has include:%s after its all term; receivers "
               "stop at all (RFC 7208 section 5.1), so move it before all\n", domain, inc);
    else if (f->spf_state == POLICY_SPF_BAD_SEPARATOR)
        printf(BAD_MARK " SPF: the SPF record of %s holds a tab or control character; terms must be "
               "separated by spaces only (RFC 7208 section 4.6.1), so receivers cannot parse it\n",
               domain);
    else
        printf(BAD_MARK " SPF: the SPF record of %s does not contain include:%s\n", domain, inc);
    if (policy_spf_fixed(t->data, t->len, inc, fixed, sizeof fixed) == 0)
        printf("    Change the TXT record\n      %s\n    to\n      %s\n", t->data, fixed);
    else
        printf("    Add the term include:%s to it, before its all term\n", inc);
    spf_notes(t->data, inc);
}

static void report_token(const char *user, const char *domain, const struct policy_findings *f)
{
    char hex[CRYPTO_SHA256_HEX_BYTES];
    const char *prefix = policy_token_prefix();
    if (f->token) {
        printf(OK_MARK " Token: %s has the %s record for %s\n", domain, prefix, user);
        return;
    }
    crypto_sha256_hex(user, strlen(user), hex);
    printf(BAD_MARK " Token: %s has no %s record for %s\n", domain, prefix, user);
    printf("    Add this TXT record to %s:\n      %s=%s\n", domain, prefix, hex);
    if (f->other_tokens > 0)
        printf("    (%zu %s record%s there belong%s to other accounts)\n", f->other_tokens,
               prefix, f->other_tokens == 1 ? "" : "s", f->other_tokens == 1 ? "s" : "");
}

/* diagnose — the ✔/✘ lines for an answer (not a temporary failure). */
static void diagnose(const char *user, const char *domain, const struct dns_result *r)
{
    struct policy_findings f;
    size_t n = r->status == DNS_OK && r->txt ? r->count : 0;
    const char **txt = calloc(n + 1, sizeof *txt);
    size_t *len = calloc(n + 1, sizeof *len);
    if (!txt || !len) {
        printf("out of memory\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            txt[i] = r->txt[i].data;
            len[i] = r->txt[i].len;
        }
        policy_examine(user, txt, len, n, &f);
        report_spf(domain, r, &f);
        report_token(user, domain, &f);
    }
    free(txt);
    free(len);
}

int policy_cli_check_domain(int argc, char **argv)
{
    char domain[POLICY_DOMAIN_MAX_BYTES];
    struct policy_verdict v;
    struct dns_result *r = NULL;
    if (argc != 4 || argv[2][0] == '\0') {
        fprintf(stderr, "usage: mrs check-domain USERNAME ADDRESS-OR-DOMAIN\n");
        return 2;
    }
    const char *user = argv[2], *arg = argv[3];
    int rc = strchr(arg, '@') ? policy_sender_domain(arg, domain, sizeof domain)
                              : policy_domain_normalize(arg, domain, sizeof domain);
    if (rc < 0) {
        fprintf(stderr, "mrs check-domain: '%s' is not an address or domain that can send mail\n",
                arg);
        return 2;
    }
    if (dns_init() < 0) {
        fprintf(stderr, "mrs check-domain: no source of randomness\n");
        return 3;
    }
    printf("Checking whether %s may send as %s\n", user, domain);
    dns_lookup(domain, DNS_TYPE_TXT, DNS_FRESH, &r);
    print_answer(domain, r);
    policy_decide(user, domain, r, &v);
    if (v.status != POLICY_TEMPFAIL)
        diagnose(user, domain, r);
    dns_result_free(r);
    dns_shutdown();
    if (v.status == POLICY_PASS) {
        printf("Result: authorized (the relay accepts MAIL FROM this domain for %s)\n", user);
        return 0;
    }
    printf("Result: %s; the relay answers MAIL FROM with:\n  %d %s %s\n",
           v.status == POLICY_FAIL ? "NOT authorized" : "DNS temporarily failing, try again later",
           v.code, v.enhanced, v.text);
    return v.status == POLICY_FAIL ? 1 : 3;
}
