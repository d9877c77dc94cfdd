/*
 * policy — sender-domain authorization (SPEC §1, §4).
 *
 * A customer may send as a domain only when that domain's own TXT records
 * hold (1) exactly one SPF record with the term include:<MRS_SPF_INCLUDE>
 * (optionally "+"), includes not followed, and (2) a record
 * <MRS_TOKEN_PREFIX>=<sha256 hex of the username>.  One TXT lookup serves
 * both.  policy_evaluate() is the pure decision; policy_check_domain() adds
 * the (cached) lookup around it.  Also the RFC 5322 From: header parser used
 * for MRS_CHECK_HEADER_FROM, and `mrs check-domain`.
 *
 * Calls: dns, crypto, config, log.  Thread-safe.
 */
#ifndef MRS_POLICY_H
#define MRS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define POLICY_DOMAIN_MAX_BYTES 254
#define POLICY_TEXT_MAX_BYTES 480
#define POLICY_FROM_MAX_DOMAINS 16

enum policy_status {
    POLICY_PASS = 0,
    POLICY_FAIL,      /* permanent: 550 5.7.1 */
    POLICY_TEMPFAIL,  /* DNS timeout / SERVFAIL / malformed: 451 4.4.3 */
};

struct policy_verdict {
    enum policy_status status;
    int code;                          /* 250, 550 or 451 */
    char enhanced[8];                  /* "2.1.0", "5.7.1", "4.4.3" */
    char text[POLICY_TEXT_MAX_BYTES];  /* reply text, no CR/LF: names the domain and
                                          the exact record to publish or fix */
    const char *reason;                /* static label for logs and metrics:
                                          "ok", "spf", "spf_multiple", "token",
                                          "nxdomain", "dns_temp", "syntax", "no_from" */
};

/*
 * policy_check_domain — may `user` send as `domain` (lowercase, no trailing
 * dot)?  Looks the TXT records up through the shared DNS cache; a refusal
 * that rests on a cached answer older than MRS_DNS_RECHECK is confirmed by a
 * fresh lookup first.  Logs the decision.  Never fails: the verdict says all.
 */
void policy_check_domain(const char *user, const char *domain, struct policy_verdict *v);

/*
 * policy_evaluate — the pure decision over a set of TXT record texts
 * (each already the concatenation of its character-strings).
 */
void policy_evaluate(const char *user, const char *domain, const char *const *txt,
                     const size_t *txt_len, size_t txt_count, struct policy_verdict *v);

/*
 * policy_sender_domain — the domain of a MAIL FROM address (already without
 * angle brackets), lowercased, trailing dot removed, into out.  -1 for the
 * null sender, an address literal ([1.2.3.4]), or a malformed domain.
 */
int policy_sender_domain(const char *addr, char *out, size_t out_len);

/*
 * policy_parse_from — the domains of every address in a From: header value
 * (RFC 5322 §3.4: display names, comments, quoted strings, groups, several
 * mailboxes, folded lines; encoded words left alone).  Pure.  Returns the
 * number of domains written (lowercased), or -1 when the value has no
 * parseable address or more than `max`.
 */
int policy_parse_from(const char *value, size_t len, char domains[][POLICY_DOMAIN_MAX_BYTES],
                      size_t max);

/*
 * policy_check_header_from — with the message's header block (bytes up to
 * the empty line, CRLF line ends): exactly one From: header is required and
 * each of its domains must pass policy_check_domain() for user.  The first
 * failing domain's verdict is returned.  `passed` (normalized, or NULL) is a
 * domain that passed policy_check_domain() for user in this transaction
 * (the MAIL FROM domain): it passes again without a second lookup.
 */
void policy_check_header_from(const char *user, const char *headers, size_t len, const char *passed,
                              struct policy_verdict *v);

/* ---- the parts of the decision (pure; used by check-domain and tests) ---- */

/* How the include term stands in one SPF record, as receivers read it. */
enum policy_spf_include {
    POLICY_SPF_INCLUDE_OK = 0,        /* include:<domain> or +include:<domain>, evaluated */
    POLICY_SPF_INCLUDE_MISSING,       /* not there (or with a -, ~, ? qualifier) */
    POLICY_SPF_INCLUDE_AFTER_ALL,     /* there, after "all": never evaluated (RFC 7208 §5.1) */
    POLICY_SPF_BAD_SEPARATOR,         /* a tab or control byte: the record does not parse */
};

/* What a domain's TXT records hold, for one user (policy_examine). */
struct policy_findings {
    size_t spf_count;      /* TXT records that are SPF records */
    size_t spf_index;      /* the first of them (when spf_count > 0) */
    enum policy_spf_include spf_state; /* of that record; MISSING unless spf_count == 1 */
    bool spf_include;      /* spf_state == POLICY_SPF_INCLUDE_OK */
    bool token;            /* a token record for this user is published */
    size_t token_index;    /* which (when token) */
    size_t other_tokens;   /* <prefix>=… records that are not this user's */
};

/* policy_is_spf — whether a TXT text is an SPF record: "v=spf1" (any case)
 * followed by a space or the end (RFC 7208 §4.5). */
bool policy_is_spf(const char *txt, size_t len);

/* policy_spf_include_state — whether the SPF record holds the term
 * include:<domain> or +include:<domain> (domain case-insensitive, trailing
 * dot allowed) where receivers evaluate it: terms are separated by spaces
 * only, and nothing after an "all" term counts.  Other qualifiers,
 * look-alike domains and redirect= do not count; includes are not
 * followed.  policy_spf_has_include: the state is POLICY_SPF_INCLUDE_OK. */
enum policy_spf_include policy_spf_include_state(const char *spf, size_t len, const char *domain);
bool policy_spf_has_include(const char *spf, size_t len, const char *domain);

/* policy_is_token_for — whether a TXT text (spaces around it ignored) is
 * <prefix>=<64 hex digits> (prefix and hex case-insensitive) whose value is
 * SHA-256(user); compared in constant time. */
bool policy_is_token_for(const char *txt, size_t len, const char *prefix, const char *user);

/* policy_examine — the findings over a set of TXT texts, with the include
 * domain and token prefix of the configuration. */
void policy_examine(const char *user, const char *const *txt, const size_t *txt_len,
                    size_t txt_count, struct policy_findings *out);

/*
 * policy_spf_fixed — the SPF record `spf` changed to authorize <domain>:
 * its terms in order, separated by single spaces (tabs replaced), any
 * existing include:<domain> (whatever its qualifier or place) removed, and
 * include:<domain> put before the first "all" mechanism or "redirect="
 * modifier (else appended).  0, or -1 when it does not fit out or the
 * record holds bytes that cannot be shown as they are.
 */
int policy_spf_fixed(const char *spf, size_t len, const char *domain, char *out, size_t out_len);

struct dns_result;

/* policy_domain_normalize — a domain as given (any case, trailing dot
 * allowed) lowercased, without the dot, into out.  -1 when it is not a
 * valid domain name or does not fit. */
int policy_domain_normalize(const char *s, char *out, size_t out_len);

/* policy_decide — the verdict for user and domain from the result of the
 * TXT lookup (NULL: the lookup failed locally): temporary DNS failures give
 * 451 4.4.3, NXDOMAIN and missing records 550 5.7.1.  Pure, no logging. */
void policy_decide(const char *user, const char *domain, const struct dns_result *r,
                   struct policy_verdict *v);

/* policy_spf_include / policy_token_prefix — the configured values (the
 * defaults when config_load() was not called). */
const char *policy_spf_include(void);
const char *policy_token_prefix(void);


#endif
