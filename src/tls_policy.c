/*
 * tls_policy — outbound TLS decisions (see tls_policy.h).
 */
#include "tls_policy.h"

#include "config.h"
#include "dane.h"
#include "idna.h"
#include "smtp_proto.h"
#include "log.h"
#include "stats.h"

#include <stdio.h>
#include <string.h>

_Static_assert(TLS_POLICY_COUNT == STATS_TLS_POLICIES, "stats.h sizes mrs_outbound_tls_total by policy");
_Static_assert(TLS_RESULT_COUNT == STATS_TLS_RESULTS, "stats.h sizes mrs_outbound_tls_total by result");

const char *tls_policy_name(enum outbound_tls_policy p)
{
    return stats_tls_policy_name((int)p);
}

const char *tls_policy_result_name(enum outbound_tls_result r)
{
    return stats_tls_result_name((int)r);
}

const char *tls_policy_label(enum outbound_tls_policy p)
{
    switch (p) {
    case TLS_POLICY_MTA_STS_ENFORCE: return "MTA-STS enforce";
    case TLS_POLICY_MTA_STS_TESTING: return "MTA-STS testing";
    case TLS_POLICY_DANE: return "DANE";
    case TLS_POLICY_OPPORTUNISTIC: return "opportunistic TLS";
    case TLS_POLICY_NONE:
    case TLS_POLICY_COUNT: break;
    }
    return "no TLS policy";
}

void tls_policy_domain(const char *domain, const struct route *r, int64_t deadline_ms, struct tls_policy_domain *d)
{
    memset(d, 0, sizeof *d);
    d->sts.source = "none";
    if (r->smarthost) {
        d->policy = TLS_POLICY_NONE; /* the smarthost's own MRS_SMARTHOST_TLS rules */
        return;
    }
    d->policy = TLS_POLICY_OPPORTUNISTIC;
    if (!config->mta_sts)
        return;
    char alabel[SMTP_DOMAIN_MAX_BYTES + 1];
    domain = idna_alabel(domain, strlen(domain), alabel, sizeof alabel); /* the policy is under the A-label */
    if (!domain)
        return; /* route_lookup has already refused such a domain */
    mta_sts_cache_lookup(domain, deadline_ms, &d->sts);
    if (!d->sts.have) {
        log_debug("mta-sts", NULL, "%s: no MTA-STS policy (%s): opportunistic TLS", domain, d->sts.note);
        return;
    }
    if (d->sts.policy.mode == MTA_STS_ENFORCE)
        d->policy = TLS_POLICY_MTA_STS_ENFORCE;
    else if (d->sts.policy.mode == MTA_STS_TESTING)
        d->policy = TLS_POLICY_MTA_STS_TESTING;
    log_info("mta-sts", NULL, "%s: MTA-STS policy mode %s, id %s (%s: %s)", domain,
             mta_sts_mode_name(d->sts.policy.mode), d->sts.id, d->sts.source, d->sts.note);
}

void tls_policy_for_mx(const struct tls_policy_domain *d, const struct route_target *t, const char *queue_id,
                       struct outbound_tls_req *req)
{
    memset(req, 0, sizeof *req);
    req->policy = d->policy;
    req->verify_name = t->host;
    req->label = tls_policy_label(d->policy);
    if (d->policy != TLS_POLICY_NONE && config->dane) {
        /* RFC 7672 §2.2: usable TLSA records of a securely found MX decide,
         * before and instead of MTA-STS; a failed TLSA lookup means this
         * host cannot be used now */
        struct dane_set *set = NULL;
        enum dane_status ds = dane_lookup(queue_id, t->host, t->dnssec, &set, req->why, sizeof req->why);
        if (ds == DANE_REQUIRED || ds == DANE_TEMPFAIL) {
            req->policy = TLS_POLICY_DANE;
            req->label = tls_policy_label(TLS_POLICY_DANE);
            req->dane = set;
            req->tls_required = ds == DANE_REQUIRED;
            req->skip = ds == DANE_TEMPFAIL;
            return;
        }
    }
    switch (d->policy) {
    case TLS_POLICY_MTA_STS_ENFORCE:
        if (!mta_sts_policy_allows(&d->sts.policy, t->host)) {
            req->skip = true;
            snprintf(req->why, sizeof req->why, "MTA-STS enforce: %s does not match the policy's mx patterns",
                     t->host);
            return;
        }
        req->tls_required = req->verify = true;
        return;
    case TLS_POLICY_MTA_STS_TESTING:
        req->check = true;
        if (!mta_sts_policy_allows(&d->sts.policy, t->host))
            snprintf(req->why, sizeof req->why, "%s does not match the policy's mx patterns", t->host);
        return;
    case TLS_POLICY_OPPORTUNISTIC:
    case TLS_POLICY_NONE:
    case TLS_POLICY_DANE:
    case TLS_POLICY_COUNT: break;
    }
}

void tls_policy_req_release(struct outbound_tls_req *req)
{
    dane_set_free((struct dane_set *)req->dane);
    req->dane = NULL;
}

/* testing_report — MTA-STS testing: what enforce would have refused. */
static void testing_report(const struct outbound_tls_req *req, const char *queue_id, const char *remote, bool tls,
                           bool verified)
{
    if (tls && verified && !req->why[0])
        return;
    log_warn("mta-sts", &(struct log_fields){.queue_id = queue_id, .remote = remote, .result = "testing"},
             "MTA-STS testing: enforce would have refused this delivery: %s%s%s", req->why, req->why[0] ? "; " : "",
             !tls ? "no TLS" : verified ? "TLS verified" : "certificate does not verify for the MX name against MRS_OUTBOUND_CA_FILE");
}

void tls_policy_record(const struct outbound_tls_req *req, const char *queue_id, const char *remote, bool tls,
                       bool verified, bool policy_failed, bool transacted)
{
    enum outbound_tls_result res;
    if (req->skip)
        res = TLS_RESULT_SKIPPED;
    else if (policy_failed)
        res = TLS_RESULT_FAILED;
    else if (!transacted)
        return;
    else
        res = !tls ? TLS_RESULT_PLAINTEXT : verified ? TLS_RESULT_VERIFIED : TLS_RESULT_UNVERIFIED;
    STATS_INC(outbound_tls_total[req->policy][res]);
    log_event(res == TLS_RESULT_FAILED || res == TLS_RESULT_SKIPPED ? LOG_WARN : LOG_INFO, "outbound-tls",
              &(struct log_fields){.queue_id = queue_id, .remote = remote, .result = tls_policy_result_name(res),
                                   .reason = req->skip ? req->why : NULL},
              "policy %s: %s", tls_policy_name(req->policy),
              res == TLS_RESULT_SKIPPED ? "not connected to"
              : res == TLS_RESULT_FAILED ? "TLS requirement not met: deferred, nothing sent"
              : res == TLS_RESULT_VERIFIED ? "TLS, certificate verified"
              : res == TLS_RESULT_UNVERIFIED ? "TLS, certificate not verified"
                                              : "plaintext");
    if (req->check && transacted)
        testing_report(req, queue_id, remote, tls, verified);
}

void tls_policy_all_skipped(const struct tls_policy_domain *d, const char *domain, char *out, size_t cap)
{
    char pats[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < d->sts.policy.mx_count && used + 2 < sizeof pats; i++) {
        int n = snprintf(pats + used, sizeof pats - used, "%s%s", i ? " " : "", d->sts.policy.mx[i]);
        used = n > 0 && (size_t)n < sizeof pats - used ? used + (size_t)n : sizeof pats - 1;
    }
    snprintf(out, cap, "451 4.7.0 %s: no MX host of %s matches the policy (mx: %s)", tls_policy_label(d->policy),
             domain, pats);
}
