/*
 * check_domain — a self-service diagnosis of a sender domain with the
 * relay's own resolver and policy code: `mrs check-domain` (SPEC §2) and
 * the health listener's `GET /check?user=&domain=` (SPEC §8.6) render the
 * same report, as text and as JSON.
 *
 * Calls policy (the same decision the relay makes), dkim_sign (whether the
 * domain delegated each DKIM key), dns, crypto, config.
 * Thread-safe: a report is owned by its caller.
 */
#ifndef MRS_CHECK_DOMAIN_H
#define MRS_CHECK_DOMAIN_H

#include "auth.h"
#include "config.h"
#include "dkim_sign.h"
#include "policy.h"

#include <stdbool.h>
#include <stddef.h>

#define CHECK_TEXT_MAX_BYTES 512
#define CHECK_RECORD_MAX_BYTES 1024

/* One requirement: whether it holds, a sentence, and what to publish. */
struct check_item {
    bool ok;
    char text[CHECK_TEXT_MAX_BYTES];          /* "SPF: x.example has no SPF record" */
    char publish[CHECK_RECORD_MAX_BYTES];     /* the TXT record to add (or the new value), "" none */
    char change_from[CHECK_RECORD_MAX_BYTES]; /* with publish: the record to replace, "" none */
    char hint[CHECK_TEXT_MAX_BYTES];          /* what to do when there is no exact record */
    char note[CHECK_TEXT_MAX_BYTES];          /* a common mistake seen, "" none */
};

struct dns_result;

struct check_report {
    char user[AUTH_USER_MAX_BYTES + 1];
    char domain[POLICY_DOMAIN_MAX_BYTES];
    struct dns_result *answer;      /* the TXT lookup (NULL: failed locally) */
    struct policy_verdict verdict;  /* what the relay answers MAIL FROM */
    bool examined;                  /* the records were looked at (no temporary failure) */
    struct check_item spf, token, dkim;
    int selectors;                  /* DKIM keys examined (SPEC §8.3) */
    struct dkim_selector_report selector[CONFIG_DKIM_KEYS_MAX];
};

enum check_status {
    CHECK_OK = 0,
    CHECK_BAD_USER,      /* empty, too long or holding spaces/control bytes */
    CHECK_BAD_DOMAIN,    /* not an address or domain that can send mail */
    CHECK_NO_RESOLVER,   /* dns_init() failed */
};

/*
 * check_domain_run — look the domain of `target` (an address or a domain)
 * up afresh (DNS_FRESH) and fill *out.  CHECK_OK, or why not (out->answer is
 * then NULL).  The caller frees with check_domain_free().
 */
enum check_status check_domain_run(const char *user, const char *target, struct check_report *out);
void check_domain_free(struct check_report *r);

/* check_domain_exit_code — SPEC §2: 0 authorized, 1 not, 3 DNS failing. */
int check_domain_exit_code(const struct check_report *r);

/* check_domain_json — the report as one JSON object into out (cap bytes);
 * its length, or -1 when it does not fit. */
int check_domain_json(const struct check_report *r, char *out, size_t cap);

/* check_domain_http — GET /check?user=U&domain=D for the health listener
 * (a health_check_fn): the JSON report with 200, or 400 with {"error":…}
 * for a missing or malformed parameter. */
int check_domain_http(const char *query, size_t query_len, char *out, size_t cap, size_t *len);

/* check_domain_cli — `mrs check-domain USERNAME ADDRESS-OR-DOMAIN`: prints
 * the text report; returns the exit code (2 on a usage error). */
int check_domain_cli(int argc, char **argv);

#endif
