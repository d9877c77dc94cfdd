/*
 * stats — process-wide counters and gauges for /metrics (SPEC §6).
 *
 * Plain C11 atomics with relaxed ordering: incrementing costs one locked
 * add, scraping reads each value once and never blocks a session.  Every
 * module may increment; only health.c renders them.  Leaf module.
 */
#ifndef MRS_STATS_H
#define MRS_STATS_H

#include <stdatomic.h>
#include <stdint.h>

enum stats_listener { STATS_SUBMISSION = 0, STATS_SUBMISSIONS, STATS_LISTENERS };

/* Why a message (or a MAIL/RCPT/DATA step) was refused; label values of
 * mrs_messages_refused_total{reason="…"}. */
enum stats_refusal {
    STATS_REFUSED_AUTH = 0,     /* MAIL without AUTH */
    STATS_REFUSED_SPF,          /* no SPF record with the include term */
    STATS_REFUSED_SPF_MULTIPLE, /* more than one SPF record */
    STATS_REFUSED_TOKEN,        /* no account token */
    STATS_REFUSED_NXDOMAIN,     /* sender domain does not exist */
    STATS_REFUSED_DNS_TEMP,     /* DNS temporarily failing (451) */
    STATS_REFUSED_HEADER_FROM,  /* From: header missing, several, or unauthorized */
    STATS_REFUSED_SIZE,         /* over MRS_MAX_MESSAGE_BYTES */
    STATS_REFUSED_SMUGGLING,    /* bare CR or LF in DATA */
    STATS_REFUSED_RECIPIENTS,   /* over MRS_MAX_RECIPIENTS */
    STATS_REFUSED_RATE_LIMIT,   /* MRS_RATE_LIMIT exceeded */
    STATS_REFUSED_SYNTAX,       /* malformed address or parameter */
    STATS_REFUSED_SPOOL,        /* we failed to store it (451) */
    STATS_REFUSED_COUNT
};

enum stats_delivery { STATS_DELIVERED = 0, STATS_DEFERRED, STATS_BOUNCED, STATS_DELIVERY_COUNT };

/* mrs_config_reloads_total{what,result} */
enum stats_reload { STATS_RELOAD_TLS = 0, STATS_RELOAD_USERS, STATS_RELOAD_DKIM, STATS_RELOAD_COUNT };
enum stats_reload_result { STATS_RELOAD_OK = 0, STATS_RELOAD_ERROR, STATS_RELOAD_RESULTS };

/* mrs_dkim_signatures_total{algorithm,result}: one per key and accepted message */
enum stats_dkim_alg { STATS_DKIM_RSA = 0, STATS_DKIM_ED25519, STATS_DKIM_ALGS };
enum stats_dkim_result {
    STATS_DKIM_SIGNED = 0,      /* a signature was added */
    STATS_DKIM_NOT_DELEGATED,   /* the From: domain has not delegated this key */
    STATS_DKIM_DNS_ERROR,       /* the delegation could not be looked up */
    STATS_DKIM_ERROR,           /* signing failed (or the message cannot be signed) */
    STATS_DKIM_RESULTS
};

/* mrs_outbound_tls_total{policy,result}: enum outbound_tls_policy and
 * enum outbound_tls_result of tls_policy.h (names below) */
#define STATS_TLS_POLICIES 5
#define STATS_TLS_RESULTS 5
/* mrs_dsn_reports_total{action}: reports mrs sent, one per action they list */
enum stats_dsn { STATS_DSN_FAILED = 0, STATS_DSN_DELAYED, STATS_DSN_RELAYED, STATS_DSN_ACTIONS };

struct stats {
    atomic_int_fast64_t sessions_open[STATS_LISTENERS];
    atomic_int_fast64_t sessions_total[STATS_LISTENERS];
    atomic_int_fast64_t connections_rejected_total;   /* over either connection cap */
    atomic_int_fast64_t connections_per_client_rejected_total; /* over MRS_MAX_CONNECTIONS_PER_CLIENT */
    atomic_int_fast64_t accept_errors_total;          /* accept() failed: EMFILE and the like */
    atomic_int_fast64_t tls_handshakes_total[STATS_LISTENERS];
    atomic_int_fast64_t tls_failures_total[STATS_LISTENERS];
    atomic_int_fast64_t auth_successes_total;
    atomic_int_fast64_t auth_failures_total;
    atomic_int_fast64_t messages_accepted_total;
    atomic_int_fast64_t message_bytes_accepted_total;
    atomic_int_fast64_t messages_refused_total[STATS_REFUSED_COUNT];
    atomic_int_fast64_t queue_depth;                  /* messages in the spool */
    atomic_int_fast64_t queue_oldest_ms;              /* wall-clock ms of the oldest, 0 none */
    atomic_int_fast64_t queue_held;                   /* messages on hold (mrs queue hold) */
    atomic_int_fast64_t queue_quarantined;            /* queue/<id>.bad: counted at start, + each one set aside */
    atomic_int_fast64_t deliveries_total[STATS_DELIVERY_COUNT];
    atomic_int_fast64_t bounces_total;                /* DSNs generated */
    atomic_int_fast64_t dns_queries_total;
    atomic_int_fast64_t dns_cache_hits_total;
    atomic_int_fast64_t dns_failures_total;
    atomic_int_fast64_t delivery_domain_waits_total;     /* a domain at MRS_DELIVERY_DOMAIN_CONCURRENCY: skipped */
    atomic_int_fast64_t delivery_attempt_timeouts_total; /* sessions ended by MRS_DELIVERY_ATTEMPT_TIMEOUT */
    atomic_int_fast64_t outbound_connections_total[2];   /* [0] new, [1] an idle one reused (outpool) */
    atomic_int_fast64_t started_ms;                   /* wall clock at start */
    atomic_int_fast64_t config_reloads_total[STATS_RELOAD_COUNT][STATS_RELOAD_RESULTS];
    atomic_int_fast64_t tls_certificate_expiry_s;     /* notAfter of the served certificate */
    atomic_int_fast64_t dkim_signatures_total[STATS_DKIM_ALGS][STATS_DKIM_RESULTS];
    atomic_int_fast64_t outbound_tls_total[STATS_TLS_POLICIES][STATS_TLS_RESULTS];
    atomic_int_fast64_t dsn_reports_total[STATS_DSN_ACTIONS];
};

extern struct stats stats;

#define STATS_INC(field) atomic_fetch_add_explicit(&stats.field, 1, memory_order_relaxed)
#define STATS_DEC(field) atomic_fetch_sub_explicit(&stats.field, 1, memory_order_relaxed)
#define STATS_ADD(field, n) atomic_fetch_add_explicit(&stats.field, (n), memory_order_relaxed)
#define STATS_SET(field, v) atomic_store_explicit(&stats.field, (v), memory_order_relaxed)
#define STATS_GET(field) atomic_load_explicit(&stats.field, memory_order_relaxed)

/* Label value for a refusal reason ("spf", "token", …). */
const char *stats_refusal_name(enum stats_refusal r);
const char *stats_listener_name(enum stats_listener l);
const char *stats_delivery_name(enum stats_delivery d);
const char *stats_reload_name(enum stats_reload w);
const char *stats_dkim_alg_name(enum stats_dkim_alg a);
const char *stats_dkim_result_name(enum stats_dkim_result r);
const char *stats_tls_policy_name(int policy);  /* "none", "opportunistic", "mta-sts-testing", … */
const char *stats_tls_result_name(int result);  /* "verified", "unverified", "plaintext", … */
const char *stats_dsn_name(enum stats_dsn a);

#endif
