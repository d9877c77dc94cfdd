/*
 * dane — TLSA records and their matching (see dane.h for the contract).
 *
 * A set keeps a reference to the dns_result whose RDATA its records point
 * into, so nothing is copied; only usable records enter the set, so a
 * DANE-required host always has at least one record to match.
 *
 * Calls dns, crypto, config, log, util.
 */
#include "dane.h"

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pure: records ------------------------------------------------------- */

int dane_tlsa_parse(const uint8_t *rdata, size_t len, struct dane_tlsa *out)
{
    if (len < 3)
        return -1;
    out->usage = rdata[0];
    out->selector = rdata[1];
    out->mtype = rdata[2];
    out->data = rdata + 3;
    out->len = len - 3;
    return 0;
}

bool dane_tlsa_usable(const struct dane_tlsa *t)
{
    if (t->usage != DANE_USAGE_TA && t->usage != DANE_USAGE_EE)
        return false; /* PKIX-TA / PKIX-EE: not for SMTP (RFC 7672 §3.1.3), or unknown */
    if (t->selector != DANE_SELECTOR_CERT && t->selector != DANE_SELECTOR_SPKI)
        return false;
    switch (t->mtype) {
    case DANE_MTYPE_EXACT: return t->len > 0;
    case DANE_MTYPE_SHA256: return t->len == CRYPTO_SHA256_BYTES;
    case DANE_MTYPE_SHA512: return t->len == CRYPTO_SHA512_BYTES;
    default: return false;
    }
}

/* record_matches — one usable record against the bytes its selector picks. */
static bool record_matches(const struct dane_tlsa *t, const uint8_t *der, size_t len)
{
    uint8_t h[CRYPTO_SHA512_BYTES];
    if (!der || len == 0)
        return false;
    switch (t->mtype) {
    case DANE_MTYPE_EXACT:
        return t->len == len && memcmp(t->data, der, len) == 0;
    case DANE_MTYPE_SHA256:
        crypto_sha256(der, len, h);
        return memcmp(t->data, h, CRYPTO_SHA256_BYTES) == 0;
    case DANE_MTYPE_SHA512:
        crypto_sha512(der, len, h);
        return memcmp(t->data, h, CRYPTO_SHA512_BYTES) == 0;
    default:
        return false;
    }
}

bool dane_match(const struct dane_set *s, uint8_t usage, const uint8_t *cert, size_t cert_len,
                const uint8_t *spki, size_t spki_len)
{
    for (size_t i = 0; s && i < s->count; i++) {
        const struct dane_tlsa *t = &s->recs[i];
        if (t->usage != usage)
            continue;
        if (t->selector == DANE_SELECTOR_CERT ? record_matches(t, cert, cert_len)
                                              : record_matches(t, spki, spki_len))
            return true;
    }
    return false;
}

bool dane_has_usage(const struct dane_set *s, uint8_t usage)
{
    for (size_t i = 0; s && i < s->count; i++)
        if (s->recs[i].usage == usage)
            return true;
    return false;
}

void dane_set_free(struct dane_set *s)
{
    if (!s)
        return;
    dns_result_free(s->res);
    free(s->recs);
    free(s);
}

enum dane_status dane_set_from_result(const char *host, struct dns_result *r, struct dane_set **out)
{
    *out = NULL;
    if (!r || r->status != DNS_OK || !r->secure || !r->rdata)
        return DANE_NONE; /* no TLSA, or not validated: RFC 7672 §2.2 "insecure" */
    struct dane_set *s = calloc(1, sizeof *s);
    if (!s || !(s->recs = calloc(r->count, sizeof *s->recs)) ||
        util_copy(s->host, sizeof s->host, host, strlen(host)) < 0) {
        dane_set_free(s);
        return DANE_TEMPFAIL;
    }
    for (size_t i = 0; i < r->count; i++) {
        struct dane_tlsa t;
        if (dane_tlsa_parse(r->rdata[i].data, r->rdata[i].len, &t) == 0 && dane_tlsa_usable(&t))
            s->recs[s->count++] = t;
    }
    if (s->count == 0) {
        dane_set_free(s);
        return DANE_UNUSABLE;
    }
    s->res = dns_result_ref(r);
    *out = s;
    return DANE_REQUIRED;
}

/* ---- the lookup ------------------------------------------------------------ */

enum dane_status dane_lookup(const char *queue_id, const char *host, bool dnssec, struct dane_set **out, char *why,
                             size_t why_len)
{
    char name[DANE_HOST_MAX_BYTES + 16];
    struct dns_result *r = NULL;
    *out = NULL;
    if (!config || !config->dane || !dnssec)
        return DANE_NONE; /* an insecure MX or address: never DANE (RFC 7672 §2.2.1) */
    snprintf(name, sizeof name, "_25._tcp.%s", host);
    enum dns_status st = dns_lookup(name, DNS_TYPE_TLSA, 0, &r);
    enum dane_status ds;
    if (!dns_status_permanent(st)) {
        /* bogus answers come back as SERVFAIL from a validating resolver */
        snprintf(why, why_len, "451 4.7.5 DANE: TLSA lookup for %s failed (%s): cannot tell whether TLS "
                 "is required, not tried", name, dns_status_name(st));
        ds = DANE_TEMPFAIL;
    } else {
        ds = dane_set_from_result(host, r, out);
        if (ds == DANE_TEMPFAIL)
            snprintf(why, why_len, "451 4.3.0 DANE: out of memory for the TLSA records of %s", host);
    }
    /* every DANE decision is logged; "no DANE" (the common case) at debug */
    log_event(ds == DANE_NONE ? LOG_DEBUG : ds == DANE_TEMPFAIL ? LOG_WARN : LOG_INFO, "dane",
              &(struct log_fields){.queue_id = queue_id, .remote = host}, "TLSA %s: %s%s: %s", name,
              dns_status_name(st), r && r->secure ? ", secure" : "",
              ds == DANE_REQUIRED ? "TLS required, the certificate must match"
              : ds == DANE_UNUSABLE ? "no usable record: opportunistic TLS"
              : ds == DANE_TEMPFAIL ? "host not tried now" : "no DANE: opportunistic TLS");
    dns_result_free(r);
    return ds;
}
