/*
 * delivery — the delivery threads (SPEC §5).
 *
 * MRS_DELIVERY_THREADS threads wait in queue_claim(); each takes one message
 * at a time: loads it and its state (spool), groups the recipients still
 * open by domain (all of them for MRS_SMARTHOST), routes each group (route)
 * and carries it in one SMTP transaction per address tried (smtp_client),
 * records every recipient's outcome, and then removes the message (all
 * settled; one bounce for the failed ones first), or saves its state and
 * hands it back for its next attempt (exponential back-off from
 * MRS_RETRY_MIN doubling to MRS_RETRY_MAX, jittered, until
 * MRS_QUEUE_LIFETIME).  The state is saved between the transactions of one
 * message, so a crash redelivers only a recipient whose 250 came just
 * before it.  Each destination's attempt is capped by
 * MRS_DELIVERY_ATTEMPT_TIMEOUT; at most MRS_DELIVERY_DOMAIN_CONCURRENCY
 * deliveries go to one domain at once, the others wait in the queue, not
 * in a thread (SPEC §8.1).
 *
 * Calls queue, spool, route, smtp_client, bounce, config, crypto, log,
 * stats, util.  Nothing calls delivery but main (start and stop).
 */
#ifndef MRS_DELIVERY_H
#define MRS_DELIVERY_H

#include "crypto.h"

#include <stddef.h>
#include <stdint.h>

#define DELIVERY_STACK_BYTES (256 * 1024)     /* mbedTLS handshakes need tens of KiB */
#define DELIVERY_RCPTS_PER_TRANSACTION 100    /* RFC 5321 §4.5.3.1.8: every server takes 100 */
/* More Received: fields than this is a loop: 5.4.6.  The inbound side
 * refuses more than 50 from the client and adds its own, so 51 is the most
 * an accepted message carries; bounces carry none. */
#define DELIVERY_MAX_RECEIVED 51
#define DELIVERY_HEADERS_START_BYTES (16 * 1024) /* the first read of a header section */
#define DELIVERY_HEADERS_MAX_BYTES (512 * 1024) /* header section read for loops and bounces */

/*
 * delivery_start — start the delivery threads.  Messages already in the
 * spool (queue_init recovered them) are delivered at once or at their next
 * attempt.  -1 with err when a thread cannot be created.
 */
int delivery_start(char *err, size_t err_len);

/*
 * delivery_stop — the drain: threads finish the transaction they are in,
 * save the state of their message and exit; waiting ones exit at once.
 * Waits until all have exited or until `deadline` (util_now_ms clock).
 * Nothing is lost either way: state files are replaced atomically.
 */
void delivery_stop(int64_t deadline);

/*
 * delivery_backoff_ms — pure: the pause after the attempts-th deferral:
 * min_ms doubled (attempts - 1) times, at most max_ms, then spread by
 * ±10 % using `random` (uniform over 32 bits), the spread cut to stay
 * within [min_ms, max_ms].
 */
int64_t delivery_backoff_ms(int attempts, int64_t min_ms, int64_t max_ms, uint32_t random);

/* delivery_received_count — pure: the Received: fields of a header section. */
int delivery_received_count(const char *headers, size_t len);

/* delivery_domain_key — pure: the slot key of a recipient domain (ASCII
 * case and a trailing dot ignored), a keyed hash so that a tenant cannot
 * pick a domain that shares another's slots. */
uint64_t delivery_domain_key(const uint8_t secret[CRYPTO_KEY_BYTES], const char *domain);

#endif
