/*
 * mta_sts — the pure parts of MTA-STS (RFC 8461): the `_mta-sts` TXT
 * record, the policy file, the MX pattern match, and the HTTP/1.1
 * response that carries the policy.  No I/O: unit tests and the fuzzer
 * call them directly.  Fetching and caching live in mta_sts_cache.c.
 *
 * Calls util only.  Thread-safe: no shared state.
 */
#ifndef MRS_MTA_STS_H
#define MRS_MTA_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTA_STS_ID_MAX_BYTES 32           /* RFC 8461 §3.1: 1*32(ALPHA / DIGIT) */
#define MTA_STS_MX_MAX 16                 /* mx patterns kept (more are ignored) */
#define MTA_STS_MX_PATTERN_MAX_BYTES 254  /* a host name, "*." included */
#define MTA_STS_MAX_AGE_MAX_S 31557600    /* RFC 8461 §3.2 */
#define MTA_STS_BODY_MAX_BYTES (64 * 1024) /* RFC 8461 §3.3: the policy body is at most 64 KB */
#define MTA_STS_HEAD_MAX_BYTES 8192       /* the HTTP response head */

enum mta_sts_mode { MTA_STS_NONE = 0, MTA_STS_TESTING, MTA_STS_ENFORCE };

struct mta_sts_policy {
    enum mta_sts_mode mode;
    int64_t max_age_s;                    /* 0..MTA_STS_MAX_AGE_MAX_S */
    size_t mx_count;
    char mx[MTA_STS_MX_MAX][MTA_STS_MX_PATTERN_MAX_BYTES + 1]; /* lowercase, no trailing dot */
};

/*
 * mta_sts_parse_txt — one TXT record's text: 1 when it is an STSv1 record
 * ("v=STSv1; id=…;", RFC 8461 §3.1), with its id copied into id (NUL
 * terminated); 0 when it is not an STSv1 record at all (another TXT at the
 * name); -1 when it starts like one but is malformed.
 */
int mta_sts_parse_txt(const char *txt, size_t len, char id[MTA_STS_ID_MAX_BYTES + 1]);

/*
 * mta_sts_parse_policy — the policy file (RFC 8461 §3.2): lines end in LF
 * or CRLF; "version: STSv1", "mode: enforce|testing|none" and "max_age: N"
 * (0..31557600) are required, at least one "mx:" unless the mode is none;
 * unknown keys are ignored; a repeated version, mode or max_age, a line
 * that is not "key: value", or a malformed value makes the policy invalid.
 * 0 with *p, or -1 with a short reason in err.
 */
int mta_sts_parse_policy(const char *text, size_t len, struct mta_sts_policy *p, char *err, size_t err_len);

/*
 * mta_sts_mx_match — whether host (an MX host name, any case, trailing dot
 * optional) matches pattern: equal, or pattern "*.rest" and host is one
 * label followed by ".rest" (the wildcard covers exactly the leftmost
 * label, RFC 8461 §4.1).
 */
bool mta_sts_mx_match(const char *pattern, const char *host);

/* mta_sts_policy_allows — host matches one of p's mx patterns. */
bool mta_sts_policy_allows(const struct mta_sts_policy *p, const char *host);

const char *mta_sts_mode_name(enum mta_sts_mode m); /* "none", "testing", "enforce" */

enum mta_sts_http { MTA_STS_HTTP_MORE = 0, MTA_STS_HTTP_DONE, MTA_STS_HTTP_ERROR };

/*
 * mta_sts_parse_http — the response to our GET, as read so far (buf[0..n),
 * eof when the server closed).  DONE with *body and *body_len (inside buf) when
 * it is a complete "200" response with a text/plain body of at most
 * MTA_STS_BODY_MAX_BYTES, delimited by Content-Length or by the close;
 * MORE while it is incomplete; ERROR with a reason in err for any other
 * status (redirects are not followed: RFC 8461 §3.3), another Content-Type,
 * a chunked or otherwise encoded body (refused), an oversized head or body,
 * or malformed syntax.
 */
enum mta_sts_http mta_sts_parse_http(const char *buf, size_t n, bool eof, const char **body, size_t *body_len,
                                     char *err, size_t err_len);

#endif
