/*
 * dkim_sign — DKIM signatures in the customer's name with the operator's
 * delegated keys (SPEC §8.3).
 *
 * The keys: MRS_DKIM_KEYS (SELECTOR:PATH, …) or MRS_DKIM_KEYS_FILE (the
 * same list in a file, read again on every reload), PEM private keys, RSA
 * of 2048 to 8192 bits or Ed25519.  They are loaded at start and on reload
 * as one set, replaced whole: a set that does not load leaves the old one
 * in force.  A message's signer holds a reference to the set it started
 * with, so a reload never pulls a key from under it.
 *
 * A message is signed for the domain D of its From: header, with each key
 * whose delegation D has published: the TXT record the resolver finds at
 * SELECTOR._domainkey.D (a CNAME to the operator's record, or a copy of it)
 * carries this key's public key.  Otherwise, or when DNS fails, that key
 * signs nothing for the message (never a broken signature, never a 451):
 * the outcome is logged and counted in
 * mrs_dkim_signatures_total{algorithm,result}.
 *
 * Calls dkim (formats), dns, tls (RSA), crypto (Ed25519), config, log,
 * stats.  Thread-safe: the set is reference-counted and swapped under a
 * mutex; a job belongs to one session thread.
 */
#ifndef MRS_DKIM_SIGN_H
#define MRS_DKIM_SIGN_H

#include "dkim.h"
#include "log.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * dkim_sign_load — load the configured keys (again) and make them the set
 * new messages use.  0; or -1 with err (one line naming the variable, the
 * file and the problem) and the old set kept.  No keys configured: an
 * empty set (nothing is signed).
 */
int dkim_sign_load(char *err, size_t err_len);

/* dkim_sign_key_count — keys in the current set. */
size_t dkim_sign_key_count(void);

/* dkim_sign_paths — the files the configuration names (the keys file
 * first, then each key of the current set) as heap strings in out (the
 * caller frees them).  Returns how many (at most max). */
int dkim_sign_paths(char **out, int max);

/* ---- signing one message ---------------------------------------------------------
 *
 * The session's DATA reader: dkim_sign_begin() when DATA starts (NULL: no
 * keys, nothing to do); dkim_sign_head() when the header section is
 * complete, with the relay's own prefix (Received:, an added Message-ID:
 * and Date:) and the client's header section — it returns the room the
 * signatures may need; dkim_sign_body() with every body byte;
 * dkim_sign_finish() once the message is accepted, before the spool
 * commit.  The head buffers must stay unchanged from dkim_sign_head() to
 * dkim_sign_finish(). */
struct dkim_job;
struct dkim_job *dkim_sign_begin(void);
size_t dkim_sign_head(struct dkim_job *j, const char *prefix, size_t prefix_len, const char *headers,
                      size_t headers_len);
void dkim_sign_body(struct dkim_job *j, const char *p, size_t n);
/*
 * dkim_sign_finish — look up the delegations (through the DNS cache) and
 * sign: *out gets the DKIM-Signature fields (CRLF-ended, heap, the
 * caller frees; "" when nothing was signed), their length is returned
 * (never more than dkim_sign_head() said).  Logs one "dkim" line with lf's
 * fields.  Nothing here refuses the message.
 */
size_t dkim_sign_finish(struct dkim_job *j, const struct log_fields *lf, char **out);

/* dkim_sign_domain — the From: domain the job would sign as (after
 * dkim_sign_head), or NULL when there is none.  dkim_sign_refuse — the
 * sender is not authorized for it: nothing is signed, why is logged (a
 * static string).  The caller decides authorization (session.c), whatever
 * MRS_CHECK_HEADER_FROM says. */
const char *dkim_sign_domain(const struct dkim_job *j);
void dkim_sign_refuse(struct dkim_job *j, const char *why);
void dkim_sign_free(struct dkim_job *j);

/* ---- the report of check-domain ----------------------------------------------------- */

enum dkim_delegation {
    DKIM_DELEGATED = 0,     /* the record there carries this key */
    DKIM_NOT_DELEGATED,     /* no record (NXDOMAIN, NODATA) */
    DKIM_OTHER_KEY,         /* a record, but not this key (or not a usable one) */
    DKIM_SEVERAL_RECORDS,   /* more than one TXT record: verifiers may pick any */
    DKIM_DNS_FAILED,        /* temporary failure */
};

struct dkim_selector_report {
    char selector[DKIM_SELECTOR_MAX_BYTES + 1];
    enum dkim_alg alg;
    enum dkim_delegation status;
    char name[DKIM_SELECTOR_MAX_BYTES + 12 + DKIM_DOMAIN_MAX_BYTES]; /* SELECTOR._domainkey.D */
    char target[DKIM_SELECTOR_MAX_BYTES + 12 + DKIM_DOMAIN_MAX_BYTES]; /* SELECTOR._domainkey.<MRS_DKIM_DOMAIN> */
    char dns_status[16];    /* dns_status_name() of the lookup */
};

/* dkim_sign_examine — for each key of the current set, whether `domain`
 * has delegated it (a fresh lookup).  Returns how many reports were
 * written (at most max). */
int dkim_sign_examine(const char *domain, struct dkim_selector_report *out, int max);

/* dkim_sign_delegation_name — "delegated", "not_delegated", "other_key",
 * "several_records", "dns_error". */
const char *dkim_sign_delegation_name(enum dkim_delegation d);

/* ---- subcommands -------------------------------------------------------------------- */

/* `mrs dkim-keygen rsa [BITS] | ed25519`: a new private key (PEM) on
 * stdout.  Returns the exit code. */
int dkim_sign_keygen_cli(int argc, char **argv);
/* `mrs dkim-records [CUSTOMER-DOMAIN]`: the operator's TXT records for the
 * configured keys and the CNAME a customer adds.  Returns the exit code. */
int dkim_sign_records_cli(int argc, char **argv);

#endif
