/*
 * bounce — delivery status notifications (RFC 3464, RFC 6522), honouring
 * the client's RFC 3461 parameters: a multipart/report with a
 * human-readable part, a message/delivery-status part (Reporting-MTA,
 * Original-Envelope-Id, Arrival-Date; per recipient Original-Recipient,
 * Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
 * Last-Attempt-Date) and the original header section as
 * text/rfc822-headers, or the whole message as message/rfc822 for a
 * failure with RET=FULL (up to BOUNCE_FULL_MAX_BYTES).
 *
 * Two reports per message at most: the final one when it leaves the queue
 * (Action: failed for the failed recipients whose NOTIFY allows FAILURE or
 * is absent, Action: relayed for the delivered ones with NOTIFY=SUCCESS
 * whose next hop did not offer DSN, RFC 3461 §5.2.2), and one delay notice
 * (Action: delayed, MRS_DELAY_WARNING) for the recipients still deferred
 * whose NOTIFY allows DELAY or is absent.  A report is submitted through
 * the queue like any message, from the null sender to the original
 * envelope sender; a message from the null sender never gets one.
 *
 * Calls queue (submit), spool (salvaging a damaged message), config, stats,
 * util.  Thread-safe: no shared state.
 */
#ifndef MRS_BOUNCE_H
#define MRS_BOUNCE_H

#include "queue.h"
#include "spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BOUNCE_MAX_BYTES (16 * 1024 * 1024)        /* a DSN larger than this is not made */
#define BOUNCE_HEADERS_MAX_BYTES (256 * 1024)      /* original headers quoted, at most */
#define BOUNCE_FULL_MAX_BYTES (1024 * 1024)       /* RET=FULL returns a message up to this size whole */
#define BOUNCE_STATUS_BYTES 16

enum bounce_kind {
    BOUNCE_FINAL, /* the message leaves the queue: failed and relayed recipients */
    BOUNCE_DELAY, /* MRS_DELAY_WARNING: the recipients still deferred */
};

/* bounce_action — pure: the Action a report of kind gives recipient r
 * ("failed", "relayed", "delayed"), NULL when it does not list r. */
const char *bounce_action(const struct spool_rcpt *r, enum bounce_kind kind);

/* bounce_delay_due — when m's delay notice is due (wall clock ms): 0 when
 * none is owed (MRS_DELAY_WARNING 0, the null sender, already sent, or no
 * recipient still deferred whose NOTIFY allows DELAY). */
int64_t bounce_delay_due(const struct spool_message *m);

/*
 * bounce_status — pure: the RFC 3463 status of a reply, "5.1.1" from
 * "550 5.1.1 no such user"; from the code's class when the reply has none
 * ("4.0.0"), "4.4.7" (delivery time expired) for an empty reply.
 */
void bounce_status(const char *reply, char out[BOUNCE_STATUS_BYTES]);

/*
 * bounce_format — pure apart from the clock value given: the whole DSN
 * message (headers and body, CRLF line ends) for the failed recipients of
 * m, with the bounce's own id and the original header section (headers,
 * headers_len bytes, may be empty).  Returns a heap buffer (*len bytes) the
 * caller frees, or NULL when out of memory or over BOUNCE_MAX_BYTES.
 * *eightbit tells whether it holds 8-bit bytes (from the quoted headers).
 */
char *bounce_format(const struct spool_message *m, const char *headers, size_t headers_len, const char *id,
                    int64_t now_ms, size_t *len, bool *eightbit);
/* bounce_report_format — the same for a report of kind; quote is the
 * header section, or with full the whole message (message/rfc822). */
char *bounce_report_format(const struct spool_message *m, enum bounce_kind kind, const char *quote, size_t quote_len,
                           bool full, const char *id, int64_t now_ms, size_t *len, bool *eightbit);

/*
 * bounce_report — format the report of kind for m and commit it to the
 * spool (queue_open … queue_commit), addressed to m->from from the null
 * sender; RET=FULL reads the message from m->fd (when open).  0 with the
 * new id in id_out once it is durable (counted in mrs_bounces_total and
 * mrs_dsn_reports_total); 1 when there is nothing to report (the null
 * sender, or NOTIFY excludes every recipient); -1 when it could not be
 * stored (the caller keeps the message and tries again later).
 */
int bounce_report(const struct spool_message *m, enum bounce_kind kind, const char *headers, size_t headers_len,
                  char id_out[QUEUE_ID_BYTES]);

/*
 * bounce_quarantined — the DSN for a message being set aside because its
 * envelope is malformed (queue/<id>): every recipient its damaged envelope
 * still names that its state file does not show delivered fails with
 * 5.3.0, to the sender it still names.  0 with the new id in id_out once
 * the bounce is durable; 1 when there is no one to tell (no sender or no
 * recipient readable, or the null sender); -1 when it could not be stored
 * (the caller keeps the message and tries again later).
 */
int bounce_quarantined(const char *id, char id_out[QUEUE_ID_BYTES]);

#endif
