/*
 * bounce — delivery status notifications (RFC 3464, RFC 6522): one
 * multipart/report per message listing every failed recipient, with a
 * human-readable part, a message/delivery-status part (Final-Recipient,
 * Action, Status, Remote-MTA, Diagnostic-Code per recipient) and the
 * original header section as text/rfc822-headers.  A bounce is submitted
 * through the queue like any message, from the null sender to the original
 * envelope sender; a message from the null sender is never bounced.
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
#define BOUNCE_STATUS_BYTES 16

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

/*
 * bounce_send — format the DSN for m and commit it to the spool (queue_open
 * … queue_commit), addressed to m->from from the null sender.  0 with the
 * new id in id_out once it is durable; -1 when it could not be stored (the
 * caller keeps the message and tries again later).
 */
int bounce_send(const struct spool_message *m, const char *headers, size_t headers_len,
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
