/*
 * tls_policy — the one place that decides what outbound TLS a delivery
 * requires (SPEC §8.5): per destination domain once per attempt
 * (tls_policy_domain), then per mail exchanger (tls_policy_for_mx).  The
 * SMTP client only obeys the resulting struct outbound_tls_req; every
 * session's outcome under it is logged and counted here
 * (mrs_outbound_tls_total{policy,result}).
 *
 *   smarthost route              → none: MRS_SMARTHOST_TLS rules apply
 *   MX, no policy, MRS_MTA_STS=off,
 *   or MTA-STS mode none         → opportunistic (RFC 7435)
 *   MTA-STS testing              → opportunistic, the certificate checked
 *                                  for the MX name and failures logged
 *   MTA-STS enforce              → an MX outside the policy is skipped; TLS
 *                                  required, the certificate verified for
 *                                  the MX name against MRS_OUTBOUND_CA_FILE;
 *                                  otherwise the attempt at that MX fails
 *                                  (deferred), never plaintext
 *   DANE (RFC 7672)              → decided in tls_policy_for_mx before
 *                                  MTA-STS, which it overrides (the DANE
 *                                  module fills `dane`)
 *
 * Calls mta_sts_cache, config, log, stats.  Thread-safe: no shared state.
 */
#ifndef MRS_TLS_POLICY_H
#define MRS_TLS_POLICY_H

#include "mta_sts_cache.h"
#include "route.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dane_set;

/* label values of mrs_outbound_tls_total{policy=…} */
enum outbound_tls_policy {
    TLS_POLICY_NONE = 0,          /* "none": a smarthost route, outside outbound policies */
    TLS_POLICY_OPPORTUNISTIC,     /* "opportunistic" */
    TLS_POLICY_MTA_STS_TESTING,   /* "mta-sts-testing" */
    TLS_POLICY_MTA_STS_ENFORCE,   /* "mta-sts-enforce" */
    TLS_POLICY_DANE,              /* "dane" */
    TLS_POLICY_COUNT
};

/* label values of mrs_outbound_tls_total{result=…}: one per session that
 * got as far as the transaction, or that the policy ended */
enum outbound_tls_result {
    TLS_RESULT_VERIFIED = 0,      /* "verified": TLS, certificate verified */
    TLS_RESULT_UNVERIFIED,        /* "unverified": TLS, certificate not verified */
    TLS_RESULT_PLAINTEXT,         /* "plaintext": no TLS */
    TLS_RESULT_FAILED,            /* "failed": the policy's TLS requirement was not met: deferred */
    TLS_RESULT_SKIPPED,           /* "skipped": not connected to (outside the MTA-STS policy, TLSA lookup failed) */
    TLS_RESULT_COUNT
};

#define TLS_POLICY_WHY_MAX_BYTES 360

/* Per destination domain, for one attempt (about 4 KiB: on the heap). */
struct tls_policy_domain {
    enum outbound_tls_policy policy;  /* what applies to its MX hosts, before DANE */
    struct mta_sts_result sts;        /* sts.have: the MTA-STS policy in force */
};

/* Per mail exchanger: what smtp_client must do.  Zeroed = no requirement. */
struct outbound_tls_req {
    enum outbound_tls_policy policy;
    bool skip;                        /* do not connect: why says so */
    bool tls_required;                /* STARTTLS required: no plaintext, no fallback */
    bool verify;                      /* the certificate must verify for verify_name (TLS_VERIFY_OUTBOUND) */
    bool check;                       /* testing: verify for verify_name, report, do not require */
    const char *verify_name;          /* the MX host name (the route target's host) */
    const char *label;                /* "MTA-STS enforce"…: how diagnostics name the policy */
    const struct dane_set *dane;      /* DANE: the TLSA records to match (NULL: none); freed by
                                       * tls_policy_req_release */
    char why[TLS_POLICY_WHY_MAX_BYTES]; /* skip: the diagnostic */
};

/* tls_policy_domain — decide for mail to domain through route r (which
 * holds the smarthost or the MX hosts), fetching the MTA-STS policy when
 * needed, every wait by deadline_ms.  Logs the policy that applies. */
void tls_policy_domain(const char *domain, const struct route *r, int64_t deadline_ms, struct tls_policy_domain *d);

/* tls_policy_for_mx — the requirement for route target t of d, for
 * message queue_id (log lines): with MRS_DANE=on, the TLSA lookup of a
 * securely found MX first (DANE wins; a failed lookup skips the host with
 * a 451 in why).  Release it with tls_policy_req_release after the
 * session. */
void tls_policy_for_mx(const struct tls_policy_domain *d, const struct route_target *t, const char *queue_id,
                       struct outbound_tls_req *req);
void tls_policy_req_release(struct outbound_tls_req *req);

/* tls_policy_label — "MTA-STS enforce", "DANE", … for diagnostics. */
const char *tls_policy_label(enum outbound_tls_policy p);
const char *tls_policy_name(enum outbound_tls_policy p);   /* the metric label */
const char *tls_policy_result_name(enum outbound_tls_result r);

/*
 * tls_policy_record — log and count one session under req at `remote`:
 * tls / verified from its outcome, policy_failed when the policy ended it,
 * transacted when it reached MAIL FROM (others, e.g. a refused connection,
 * made no TLS decision and are not counted).  Under MTA-STS testing, what
 * enforce would have refused is logged.
 */
void tls_policy_record(const struct outbound_tls_req *req, const char *queue_id, const char *remote, bool tls,
                       bool verified, bool policy_failed, bool transacted);

/* tls_policy_all_skipped — the deferral text when no MX of the domain may
 * be used ("451 4.7.0 MTA-STS enforce: no MX host of D matches the
 * policy …") into out. */
void tls_policy_all_skipped(const struct tls_policy_domain *d, const char *domain, char *out, size_t cap);

#endif
