/*
 * dane — SMTP security via opportunistic DANE TLS (RFC 7672; TLSA records
 * RFC 6698, usage rules RFC 7671), with MRS_DANE=on.
 *
 * For one MX host whose name and addresses came from DNSSEC-secure answers
 * (route_target.dnssec: the AD bit of the configured, validating
 * MRS_DNS_SERVERS), the TLSA RRset at _25._tcp.<host> decides:
 *   secure, with a usable record  → TLS required, the certificate must match
 *                                    (never plaintext, never unverified);
 *   secure, only unusable records → opportunistic TLS, unverified (§2.2);
 *   insecure, absent (NXDOMAIN / NODATA) → no DANE: opportunistic as before;
 *   lookup failure (SERVFAIL, timeout: bogus or unreachable) → this host is
 *                                    not tried now (deferred, §2.2.1).
 * Usable: usage 3 DANE-EE (the end-entity certificate or its key; no name
 * or expiry check, RFC 7672 §3.1.1) and 2 DANE-TA (a certificate of the
 * presented chain is the trust anchor; the chain must verify up to it for
 * the MX host name, §3.1.2), selector 0 (certificate) or 1
 * (SubjectPublicKeyInfo), matching type 0 (exact), 1 (SHA-256) or 2
 * (SHA-512) with a digest of the right length.  Usages 0 and 1 (PKIX) and
 * unknown values are unusable (§3.1.3).
 *
 * The TLSA base name is the MX host as the MX record names it (a CNAME
 * behind it is followed for its addresses, not for the TLSA name: the
 * simplification of RFC 7672 §2.2.2 that Postfix also allows).
 *
 * Parsing and matching are pure (unit tests and the fuzzer call them);
 * dane_lookup asks dns.  Calls dns, crypto, config, log, util.  Thread-safe: a set is
 * immutable once looked up; the counters are atomic.
 */
#ifndef MRS_DANE_H
#define MRS_DANE_H

#include "dns.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DANE_REASON_MAX_BYTES 300
#define DANE_HOST_MAX_BYTES 256

enum dane_usage { DANE_USAGE_PKIX_TA = 0, DANE_USAGE_PKIX_EE = 1, DANE_USAGE_TA = 2, DANE_USAGE_EE = 3 };
enum dane_selector { DANE_SELECTOR_CERT = 0, DANE_SELECTOR_SPKI = 1 };
enum dane_mtype { DANE_MTYPE_EXACT = 0, DANE_MTYPE_SHA256 = 1, DANE_MTYPE_SHA512 = 2 };

/* One TLSA record (RFC 6698 §2.1); data points into the RDATA it came from. */
struct dane_tlsa {
    uint8_t usage, selector, mtype;
    const uint8_t *data;
    size_t len;
};

enum dane_status {
    DANE_NONE = 0,  /* no DANE for this host: opportunistic TLS as without MRS_DANE */
    DANE_REQUIRED,  /* usable TLSA records: STARTTLS required, the certificate must match */
    DANE_UNUSABLE,  /* a secure TLSA RRset without usable records: opportunistic TLS */
    DANE_TEMPFAIL,  /* the TLSA lookup failed: do not try this host now */
};

/* The usable TLSA records of one MX host (DANE_REQUIRED). */
struct dane_set {
    char host[DANE_HOST_MAX_BYTES];  /* the MX host: reference identifier for DANE-TA */
    size_t count;
    struct dane_tlsa *recs;          /* the usable ones, in answer order */
    struct dns_result *res;          /* holds the RDATA recs point into */
};

/* dane_tlsa_parse — one TLSA RDATA (rdata, len).  0, or -1 when shorter
 * than its three fixed octets.  out->data points into rdata.  Pure. */
int dane_tlsa_parse(const uint8_t *rdata, size_t len, struct dane_tlsa *out);

/* dane_tlsa_usable — usage 2 or 3, selector 0 or 1, matching type 0 (data
 * not empty), 1 (32 bytes) or 2 (64 bytes).  Pure. */
bool dane_tlsa_usable(const struct dane_tlsa *t);

/*
 * dane_match — does a usable record of `usage` in s match the certificate
 * whose DER is cert (cert_len) and whose SubjectPublicKeyInfo DER is spki
 * (spki_len)?  The digest (or the exact bytes) is compared to the record's
 * data.  Pure (hashing through crypto).
 */
bool dane_match(const struct dane_set *s, uint8_t usage, const uint8_t *cert, size_t cert_len,
                const uint8_t *spki, size_t spki_len);

/* dane_has_usage — s holds a usable record of `usage`. */
bool dane_has_usage(const struct dane_set *s, uint8_t usage);

/*
 * dane_set_from_result — what a TLSA answer r (for host) means: the status,
 * and for DANE_REQUIRED a new set in *out (free with dane_set_free).  r is
 * referenced by the set, not consumed.  DANE_TEMPFAIL only when out of
 * memory here.  Pure apart from allocation.
 */
enum dane_status dane_set_from_result(const char *host, struct dns_result *r, struct dane_set **out);

/*
 * dane_lookup — the DANE status of MX host `host` for message queue_id;
 * dnssec says whether its name and address records were secure
 * (route_target.dnssec).  Without
 * MRS_DANE or when not secure: DANE_NONE, no lookup.  DANE_REQUIRED: *out
 * holds the set (dane_set_free).  DANE_TEMPFAIL: why holds a 451 reply
 * ("451 4.7.5 DANE: TLSA lookup for _25._tcp.mx1.example failed: servfail").
 * Decisions are logged with queue_id (may be NULL): "no DANE" at debug, the others at info or warn.
 */
enum dane_status dane_lookup(const char *queue_id, const char *host, bool dnssec, struct dane_set **out, char *why,
                             size_t why_len);

void dane_set_free(struct dane_set *s);

#endif
