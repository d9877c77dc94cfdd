/*
 * smtp_client — one outbound SMTP session to one address, carrying one
 * message to a set of recipients of one domain (RFC 5321, 3207, 4954, 1870,
 * 6152).
 *
 * The session: connect → (implicit TLS) → greeting → EHLO (HELO when EHLO
 * is refused) → STARTTLS when offered or required, the input buffer
 * discarded before the handshake (RFC 3207 §4.2), EHLO again → AUTH PLAIN
 * or LOGIN when a user is given → MAIL FROM (SIZE=, BODY=8BITMIME when both
 * sides have them, SMTPUTF8 when the message needs it: without it at the
 * next hop, every recipient fails 5.6.7) → one RCPT per recipient, each
 * with its own reply → DATA with dot-stuffing, streamed from the spool file → QUIT.
 * With PIPELINING (RFC 2920) MAIL, every RCPT and DATA leave in one write
 * and their replies are read in order.  Instead of QUIT a session still in
 * step may be handed back (parked, struct smtp_client_session) for the
 * next message to the same destination (outpool.c keeps them): that one
 * starts at MAIL (RSET first when a transaction was left open), and when
 * the parked connection turns out dead on its first command, a new one is
 * opened as if nothing had happened.  Every read and
 * write has a deadline from MRS_DELIVERY_*_TIMEOUT (RFC 5321 §4.5.3.2),
 * and none goes past the job's deadline (MRS_DELIVERY_ATTEMPT_TIMEOUT: a
 * server that answers each command just in time cannot hold a thread for
 * hours).
 * Passwords never reach a log line.
 *
 * Calls conn (and through it tls), smtp_proto, crypto (wiping), config,
 * log, util.  One thread per session; no shared state.
 */
#ifndef MRS_SMTP_CLIENT_H
#define MRS_SMTP_CLIENT_H

#include "route.h"
#include "spool.h"
#include "tls_policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_session;

#define SMTP_CLIENT_LINE_MAX_BYTES 2048   /* a reply line (RFC 5321 says 512: be lenient) */
#define SMTP_CLIENT_REPLY_LINES_MAX 64    /* lines of one reply (EHLO lists) */
#define SMTP_CLIENT_IN_MAX_BYTES 8192     /* input buffer of the connection */
#define SMTP_CLIENT_CHUNK_BYTES (32 * 1024) /* message bytes read from the spool at a time */
#define SMTP_CLIENT_PASSWORD_MAX_BYTES 1024
#define SMTP_CLIENT_QUIT_TIMEOUT_MS 5000

enum smtp_client_tls {
    SMTP_CLIENT_TLS_OPPORTUNISTIC, /* STARTTLS when offered, certificate not required (MX, RFC 7435) */
    SMTP_CLIENT_TLS_OFF,           /* plaintext: retry after a failed handshake; MRS_SMARTHOST_TLS=none */
    SMTP_CLIENT_TLS_STARTTLS,      /* STARTTLS required, certificate verified (smarthost) */
    SMTP_CLIENT_TLS_IMPLICIT,      /* TLS from the first byte, certificate verified (smarthost) */
};

/* A reply, or our own description of what went wrong in the same shape
 * ("451 4.4.1 connect to …: connection refused"). */
struct smtp_client_reply {
    int code;                          /* 200..599 */
    bool remote;                       /* the server said it (else it is our text) */
    char text[SPOOL_REPLY_MAX_BYTES];  /* "550 5.1.1 no such user": code first, lines joined */
};


struct smtp_client_job {
    const struct route_target *target;
    enum smtp_client_tls tls;
    const char *user;                  /* AUTH when non-empty */
    const char *password;              /* never logged */
    const char *queue_id;              /* for log lines */
    const char *from;                  /* "" for the null sender */
    bool eightbit;
    bool smtputf8;                     /* the message needs SMTPUTF8 (spool_needs_smtputf8) */
    int fd;                            /* the spool file, message bytes at offset */
    int64_t offset, length;
    size_t rcpt_count;
    const char *const *rcpts;
    struct smtp_client_reply *rcpt_replies; /* out: rcpt_count entries */
    int64_t deadline_ms;               /* util_now_ms clock: the attempt's end, no wait goes past it;
                                        * 0 = none.  Over it, what is not settled is deferred */
    const struct outbound_tls_req *tls_req; /* the outbound TLS policy to obey (tls_policy.h); NULL: none */
    const char *dsn_ret;               /* RFC 3461, passed on only to a server that offers DSN: */
    const char *dsn_envid;             /* RET= and ENVID= (xtext) of MAIL, NULL when absent; */
    const char *const *rcpt_notify;    /* NOTIFY= and ORCPT= per recipient (entries NULL when */
    const char *const *rcpt_orcpt;     /* absent), or NULL */
    struct smtp_client_session *reuse; /* a parked session to this destination, tried first; consumed */
    bool park;                         /* a session left in step goes to out->parked instead of QUIT */
    int messages_max;                  /* with park: no parking after this many transactions */
    const struct tls_session *resume;  /* a TLS session to offer on a new connection (not DANE), or NULL */
    bool want_tls_session;             /* fill out->tls_session */
};

enum smtp_client_result {
    SMTP_CLIENT_SENT,       /* the transaction ran: rcpt_replies[i] holds each recipient's outcome,
                             * 2xx delivered, 4xx deferred, 5xx failed */
    SMTP_CLIENT_NEXT,       /* nothing was settled at this address (connect, greeting, EHLO,
                             * AUTH, a 4xx to MAIL…): try the next one; reply says why */
    SMTP_CLIENT_TLS_FAILED, /* the STARTTLS handshake failed (opportunistic: retry in plaintext) */
    SMTP_CLIENT_REFUSED,    /* the message as a whole is refused for good (5xx to MAIL, over the
                             * announced SIZE): every recipient fails with reply */
};

struct smtp_client_outcome {
    enum smtp_client_result result;
    struct smtp_client_reply reply;    /* for NEXT, TLS_FAILED and REFUSED */
    bool tls;                          /* the session was encrypted */
    bool tls_verified;                 /* and the certificate verified (DANE: matched) */
    char tls_version[24];              /* "TLSv1.3" */
    bool attempt_timeout;              /* the session ended because job->deadline_ms passed */
    bool tls_policy_failed;            /* tls_req's requirement was not met: NEXT, nothing sent */
    bool transacted;                   /* the session got as far as MAIL FROM */
    bool dsn;                          /* the server offered DSN (RFC 3461): success reports are its own */
    bool reused;                       /* the message went over job->reuse */
    int connects;                      /* new connections opened (a dead parked one replaced: 1) */
    struct smtp_client_session *parked;/* job->park: the session, in step, for the next message; or NULL */
    struct tls_session *tls_session;   /* a new TLS connection's session (to resume later), or NULL;
                                        * the caller frees both */
};

/* The extensions of an EHLO reply that the client uses. */
struct smtp_client_caps {
    bool starttls, pipelining, eightbitmime, auth_plain, auth_login, size;
    bool smtputf8;
    bool dsn;                          /* RFC 3461 */
    int64_t size_max;                  /* SIZE's value, 0 when none given */
};

/*
 * smtp_client_deliver — run one session for job (see the top) and report
 * the outcome in out.  Never blocks past the configured timeouts.
 */
enum smtp_client_result smtp_client_deliver(const struct smtp_client_job *job, struct smtp_client_outcome *out);

/*
 * smtp_client_session_close — end a parked session: QUIT (its reply
 * awaited until deadline, util_now_ms clock, at most
 * SMTP_CLIENT_QUIT_TIMEOUT_MS), close, free.  NULL is ignored.
 */
struct smtp_client_session;
void smtp_client_session_close(struct smtp_client_session *s, int64_t deadline);

/* smtp_client_parse_ehlo_line — pure: note the extension on one EHLO
 * reply line (the text after "250-" / "250 ") in caps. */
void smtp_client_parse_ehlo_line(const char *text, size_t len, struct smtp_client_caps *caps);

/* smtp_client_base64 — pure: standard base64 with padding of n bytes into
 * out, which needs 4 * ((n + 2) / 3) + 1 bytes; NUL-terminated.  Returns
 * the length. */
size_t smtp_client_base64(const unsigned char *in, size_t n, char *out);

#endif
