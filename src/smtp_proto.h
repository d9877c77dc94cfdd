/*
 * smtp_proto — pure SMTP syntax shared by the server and the delivery
 * client: command lines, paths (RFC 5321 §4.1.2), ESMTP parameters, reply
 * lines, and the DATA decoder (end at <CRLF>.<CRLF> only, dot-unstuffing,
 * bare CR / bare LF detection).
 *
 * No I/O, no allocation, no globals: every function works on caller
 * buffers, so unit tests and fuzzers call them directly.  Thread-safe.
 */
#ifndef MRS_SMTP_PROTO_H
#define MRS_SMTP_PROTO_H

#include "dsn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_LOCAL_MAX_BYTES 64       /* RFC 5321 §4.5.3.1.1 */
#define SMTP_DOMAIN_MAX_BYTES 255     /* RFC 5321 §4.5.3.1.2 */
#define SMTP_PATH_MAX_BYTES 256       /* RFC 5321 §4.5.3.1.3, without <> */
#define SMTP_COMMAND_MAX_BYTES 512    /* RFC 5321 §4.5.3.1.4, with CRLF */
/* MAIL may grow by the allowances of what we advertise: SIZE (RFC 1870,
 * +26), AUTH= (RFC 4954 §5, +500) and RET=/ENVID= (RFC 3461 §4: +100, but
 * an ENVID of 100 characters may take 300 as xtext), rounded up. */
#define SMTP_MAIL_MAX_BYTES 1420
/* RCPT may grow by NOTIFY=/ORCPT= (RFC 3461 §4: +500; an ORCPT of 500
 * characters may take 1,500 as xtext), rounded up. */
#define SMTP_RCPT_MAX_BYTES 2000
#define SMTP_AUTH_LINE_MAX_BYTES 12288 /* RFC 4954 §4 */

enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
    SMTP_VERB_HTTP,   /* GET / POST / CONNECT / HEAD / PUT: a cross-protocol attack */
    SMTP_VERB_BDAT,   /* RFC 3030 CHUNKING */
    SMTP_VERB_COUNT
};

struct smtp_command {
    enum smtp_verb verb;
    const char *arg;      /* after the verb and one space; "" when none */
    size_t arg_len;
};

/* smtp_parse_command — split a command line (without CRLF).  Verbs are
 * case-insensitive and must be followed by a space or the end of line. */
void smtp_parse_command(const char *line, size_t len, struct smtp_command *out);

/* Why a MAIL/RCPT argument was refused; the session maps each to a reply. */
enum smtp_path_error {
    SMTP_PATH_OK = 0,
    SMTP_PATH_SYNTAX,          /* the address (or the FROM:/TO: part) is malformed */
    SMTP_PATH_TOO_LONG,        /* over the RFC 5321 limits */
    SMTP_PATH_NO_DOMAIN,       /* a recipient without @domain */
    SMTP_PATH_LITERAL,         /* user@[address literal] */
    SMTP_PATH_PARAM_SYNTAX,    /* a parameter is malformed (bad SIZE value…) */
    SMTP_PATH_PARAM_UNKNOWN,   /* a parameter we did not advertise */
    SMTP_PATH_TRAILING_DOT,    /* a sender domain ending in a dot */
    SMTP_PATH_UTF8,            /* the address is not well-formed UTF-8 (RFC 6531: 553 5.6.7) */
};

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_path {
    char addr[SMTP_PATH_MAX_BYTES + 1]; /* local@domain, no brackets; "" for <> */
    size_t addr_len;
    size_t at;                          /* index of the '@' (addr_len when none) */
    bool null;                          /* the null path <> */
    int64_t size;                       /* MAIL SIZE=, -1 when absent */
    enum smtp_body body;
    bool smtputf8;                      /* MAIL's SMTPUTF8 parameter (RFC 6531 §3.4) */
    bool utf8;                          /* the address has non-ASCII (valid UTF-8) bytes */
    struct dsn_params dsn;              /* RET= ENVID= / NOTIFY= ORCPT= (RFC 3461); dsn.why: a refusal's text */
};

/*
 * smtp_parse_mail / smtp_parse_rcpt — the argument of MAIL ("FROM:<…> params")
 * or RCPT ("TO:<…> params").  Source routes (@a,@b:) are accepted and
 * ignored; the space after the colon and missing brackets are tolerated.
 * Quoted local parts keep their quotes.  Returns SMTP_PATH_OK or the error.
 *
 * UTF-8 (RFC 6531 §3.3): local parts and domains may hold well-formed UTF-8
 * (a domain's U-labels must make a valid A-label domain); `utf8` says so.
 * MAIL refuses a non-ASCII address without its SMTPUTF8 parameter as a
 * syntax error, and gives SMTP_PATH_UTF8 for malformed UTF-8 only with it.
 * RCPT cannot know MAIL's parameter: the caller refuses `utf8` (and turns
 * SMTP_PATH_UTF8 into a syntax error) when the transaction has no SMTPUTF8.
 */
enum smtp_path_error smtp_parse_mail(const char *arg, size_t len, struct smtp_path *out);
enum smtp_path_error smtp_parse_rcpt(const char *arg, size_t len, struct smtp_path *out);

/* smtp_valid_domain — RFC 5321 Domain (letters, digits, hyphens, dots;
 * labels 1..63; a trailing dot tolerated). */
bool smtp_valid_domain(const char *s, size_t len);

/* smtp_header_count — how many header fields of a header block (CRLF or LF
 * line ends) start with `name` (give the colon: "Received:"),
 * case-insensitively.  Continuation lines never match. */
int smtp_header_count(const char *headers, size_t len, const char *name);

/* smtp_valid_helo — an EHLO/HELO argument: a domain or an address literal,
 * at most SMTP_DOMAIN_MAX_BYTES in all. */
bool smtp_valid_helo(const char *s, size_t len);

/*
 * Reply lines (delivery client): "250-text" / "250 text".  Returns 0 and
 * sets code (200..599), last (no '-' continuation) and the text after the
 * separator, or -1 when the line is not a reply line.
 */
int smtp_parse_reply_line(const char *line, size_t len, int *code, bool *last,
                          const char **text, size_t *text_len);

/*
 * The DATA decoder.  Feed it the raw bytes after the 354 reply; it writes
 * the message content (CRLF line ends kept, leading dots unstuffed) to out
 * and stops right after the terminating <CRLF>.<CRLF>, which is the only
 * thing that ends the data (RFC 5321 §4.1.1.4).  A bare CR or bare LF
 * anywhere sets `bare` but never ends the data early, so no second message
 * can be smuggled behind a lone "\n.\n" (CVE-2023-51764 class).
 */
struct smtp_dot {
    int state;
    bool bare;   /* a bare CR or LF was seen: refuse with 550 5.6.0 */
    bool nul;    /* a NUL byte was seen: refused the same way (SPEC §8.1) */
    bool done;   /* the terminating dot line was consumed */
};

void smtp_dot_init(struct smtp_dot *d);
/* smtp_dot_feed — consume up to n input bytes (stopping after the end of
 * data); out must have room for n + 2 bytes.  Returns the bytes consumed;
 * *out_len gets the bytes written. */
size_t smtp_dot_feed(struct smtp_dot *d, const char *in, size_t n, char *out, size_t *out_len);

/* smtp_dot_stuff — the reverse, for the client: copy in to out doubling
 * every dot that starts a line.  *sol tracks "at start of line" across
 * calls (start with true).  out needs room for 2 * n bytes.  Returns the
 * bytes written. */
size_t smtp_dot_stuff(const char *in, size_t n, char *out, bool *sol);

/*
 * CHUNKING (RFC 3030).  smtp_parse_bdat — the argument of BDAT: a chunk
 * size (decimal, at most 18 digits) and an optional "LAST".  0 or -1.
 *
 * BDAT data is taken as it is (no dot-unstuffing), but mrs relays it with
 * DATA, so it must hold the lines DATA can: smtp_chunk_scan tracks a
 * struct smtp_dot (smtp_dot_init first) across chunks and sets `bare` for a
 * CR not followed by LF or an LF not preceded by CR, and `nul` for a NUL,
 * exactly as the DATA decoder does.  smtp_chunk_end — after the LAST chunk:
 * a CR left hanging is bare; returns whether the data needs a CRLF appended
 * (it is not empty and does not end with one: a message ends with a line
 * end, and DKIM's canonical body adds that CRLF anyway).
 */
int smtp_parse_bdat(const char *arg, size_t len, int64_t *size, bool *last);
void smtp_chunk_scan(struct smtp_dot *d, const char *in, size_t n);
bool smtp_chunk_end(struct smtp_dot *d);

#endif
