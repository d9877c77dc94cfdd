/*
 * dsn — the SMTP side of delivery status notifications (RFC 3461): the
 * xtext encoding (§4), the MAIL parameters RET= and ENVID= and the RCPT
 * parameters NOTIFY= and ORCPT=, parsed strictly, and the per-recipient
 * copies a session keeps until the message is spooled.
 *
 * Values are kept as the client sent them (validated xtext), so they are
 * passed on to a next hop unchanged; a decoded value is printable ASCII
 * (0x20..0x7e) or refused, so no CR, LF, NUL or other control byte ever
 * reaches a header, the spool or a log line through them.
 *
 * Pure apart from dsn_rcpts_set (heap).  Calls util.  Thread-safe.
 */
#ifndef MRS_DSN_H
#define MRS_DSN_H

#include <stdbool.h>
#include <stddef.h>

#define DSN_ENVID_MAX_BYTES 100 /* ENVID, decoded (RFC 3461 §4.4) */
#define DSN_ORCPT_MAX_BYTES 500 /* ORCPT's address, decoded (RFC 3461 §4.2) */
#define DSN_ENVID_XTEXT_MAX_BYTES (3 * DSN_ENVID_MAX_BYTES)
#define DSN_ORCPT_XTEXT_MAX_BYTES (16 + 3 * DSN_ORCPT_MAX_BYTES) /* "utf-8;" + the xtext */
#define DSN_NOTIFY_TEXT_BYTES 32                                 /* "SUCCESS,FAILURE,DELAY" */

enum dsn_ret { DSN_RET_NONE = 0, DSN_RET_FULL, DSN_RET_HDRS };

/* NOTIFY= bits; 0 means the parameter was absent */
#define DSN_NOTIFY_NEVER 1u
#define DSN_NOTIFY_SUCCESS 2u
#define DSN_NOTIFY_FAILURE 4u
#define DSN_NOTIFY_DELAY 8u

/* The DSN parameters of one MAIL or RCPT command. */
struct dsn_params {
    enum dsn_ret ret;                           /* MAIL RET= */
    char envid[DSN_ENVID_XTEXT_MAX_BYTES + 1];  /* MAIL ENVID=, xtext as sent; "" absent */
    unsigned notify;                            /* RCPT NOTIFY= bits; 0 absent */
    const char *orcpt;                          /* RCPT ORCPT=, "type;xtext" as sent, into the command */
    size_t orcpt_len;                           /* line (valid while it is); NULL absent */
    const char *why;                            /* a refusal's text (static) */
};

/*
 * dsn_xtext_decode — RFC 3461 §4: characters 33..126 except '+' and '=',
 * and "+HH" (two uppercase hex digits) for any byte.  Decodes in[0..n)
 * into out (cap bytes, NUL-terminated), *out_len the decoded length.
 * -1 when the text is malformed, a decoded byte is not printable ASCII
 * (0x20..0x7e: CR, LF, NUL, controls and 8-bit bytes are refused) or the
 * result does not fit.  out may equal in (decoding never grows).
 */
int dsn_xtext_decode(const char *in, size_t n, char *out, size_t cap, size_t *out_len);

/* dsn_xtext_encode — the reverse: in[0..n) as xtext into out (cap bytes,
 * NUL-terminated).  Returns the length, or -1 when it does not fit. */
int dsn_xtext_encode(const char *in, size_t n, char *out, size_t cap);

/* dsn_parse_notify — "NEVER" or a comma list of SUCCESS, FAILURE, DELAY
 * (any case, each once) into bits.  -1 when malformed. */
int dsn_parse_notify(const char *v, size_t n, unsigned *out);

/* dsn_notify_text — the bits as NOTIFY's value ("SUCCESS,FAILURE");
 * "" for 0. */
void dsn_notify_text(unsigned notify, char out[DSN_NOTIFY_TEXT_BYTES]);

/*
 * dsn_parse_orcpt — "addr-type;xtext", addr-type rfc822 or utf-8 (any
 * case), the address at most DSN_ORCPT_MAX_BYTES decoded and not empty.
 * The decoded "type;address" goes into out (cap bytes) when out is not
 * NULL.  -1 when malformed (*why says how, when why is not NULL).
 */
int dsn_parse_orcpt(const char *v, size_t n, char *out, size_t cap, const char **why);

/* dsn_valid_envid — ENVID's xtext decodes to 1..DSN_ENVID_MAX_BYTES
 * printable characters. */
bool dsn_valid_envid(const char *v, size_t n);

/*
 * dsn_parse_param — one ESMTP parameter key[=value] of MAIL (mail true:
 * RET, ENVID) or RCPT (NOTIFY, ORCPT) into d.  1 when the key is not one
 * of them (the caller goes on), 0 taken, -1 refused: malformed, over its
 * limit or given twice, with d->why a sentence for the 501 reply.
 */
int dsn_parse_param(const char *key, size_t klen, const char *v, size_t vlen, bool mail, struct dsn_params *d);

/* dsn_ret_name — "FULL", "HDRS", or NULL for DSN_RET_NONE. */
const char *dsn_ret_name(enum dsn_ret ret);

/*
 * The per-recipient parameters of a transaction in progress, as the spool
 * writes them: notify[i] / orcpt[i] for the i-th recipient, NULL when it
 * gave none (both arrays NULL while no recipient gave any).
 */
struct dsn_rcpts {
    char **notify;
    char **orcpt;
    size_t cap;
};

/* dsn_rcpts_set — record recipient index's parameters from p, called for
 * every recipient in order (nothing is allocated while no recipient has
 * any; after that the arrays cover every index).  -1 when out of memory. */
int dsn_rcpts_set(struct dsn_rcpts *r, size_t index, const struct dsn_params *p);
/* dsn_rcpts_free — free everything and zero r. */
void dsn_rcpts_free(struct dsn_rcpts *r);

#endif
