/*
 * stats — the one instance of the counters, and their label names.
 */
#include "stats.h"

struct stats stats;

const char *stats_refusal_name(enum stats_refusal r)
{
    static const char *const names[STATS_REFUSED_COUNT] = {
        "auth", "spf", "spf_multiple", "token", "nxdomain", "dns_temp", "header_from",
        "size", "smuggling", "recipients", "rate_limit", "syntax", "spool",
    };
    return (unsigned)r < STATS_REFUSED_COUNT ? names[r] : "other";
}

const char *stats_listener_name(enum stats_listener l)
{
    return l == STATS_SUBMISSIONS ? "submissions" : "submission";
}

const char *stats_delivery_name(enum stats_delivery d)
{
    static const char *const names[STATS_DELIVERY_COUNT] = {"delivered", "deferred", "bounced"};
    return (unsigned)d < STATS_DELIVERY_COUNT ? names[d] : "other";
}

const char *stats_reload_name(enum stats_reload w)
{
    return w == STATS_RELOAD_USERS ? "users" : w == STATS_RELOAD_DKIM ? "dkim" : "tls";
}

const char *stats_dkim_alg_name(enum stats_dkim_alg a)
{
    return a == STATS_DKIM_ED25519 ? "ed25519-sha256" : "rsa-sha256";
}

const char *stats_dkim_result_name(enum stats_dkim_result r)
{
    static const char *const names[STATS_DKIM_RESULTS] = {"signed", "not_delegated", "dns_error", "error"};
    return (unsigned)r < STATS_DKIM_RESULTS ? names[r] : "other";
}

const char *stats_tls_policy_name(int policy)
{
    static const char *const names[STATS_TLS_POLICIES] = {"none", "opportunistic", "mta-sts-testing",
                                                          "mta-sts-enforce", "dane"};
    return policy >= 0 && policy < STATS_TLS_POLICIES ? names[policy] : "other";
}

const char *stats_tls_result_name(int result)
{
    static const char *const names[STATS_TLS_RESULTS] = {"verified", "unverified", "plaintext", "failed", "skipped"};
    return result >= 0 && result < STATS_TLS_RESULTS ? names[result] : "other";
}

const char *stats_dsn_name(enum stats_dsn a)
{
    static const char *const names[STATS_DSN_ACTIONS] = {"failed", "delayed", "relayed"};
    return (unsigned)a < STATS_DSN_ACTIONS ? names[a] : "other";
}
