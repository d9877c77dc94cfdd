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
 * failing domain's verdict is returned.
 */
void policy_check_header_from(const char *user, const char *headers, size_t len,
                              struct policy_verdict *v);

/* policy_cli_check_domain — `mrs check-domain USERNAME ADDRESS-OR-DOMAIN`:
 * prints the diagnosis; returns the exit code of SPEC §2 (0, 1 or 3). */
int policy_cli_check_domain(int argc, char **argv);

#endif
