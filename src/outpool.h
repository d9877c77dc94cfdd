/*
 * outpool — idle outbound SMTP sessions kept for the next message to the
 * same destination, and TLS sessions kept for resumption (SPEC §5).
 *
 * After a transaction a delivery thread parks its session here instead of
 * QUIT (smtp_client_outcome.parked); the next message whose key is
 * identical takes it.  The key is everything that made the session
 * acceptable for its message: smarthost or MX, the host and its
 * address:port, the TLS mode, the outbound TLS policy decision (policy,
 * required, verified or checked, the verification name, DANE's TLSA set
 * as a digest), the AUTH user and the EHLO name.  A session set up under
 * one policy therefore never carries a message that needs another, even
 * to the same MX.  The EHLO capabilities (SMTPUTF8, SIZE, DSN, PIPELINING)
 * travel with the session and each message is checked against them as on
 * a new connection.
 *
 * Bounds: MRS_DELIVERY_IDLE_TIMEOUT per idle session (then QUIT, by the
 * reaper thread), OUTPOOL_MESSAGES_MAX transactions per connection,
 * OUTPOOL_IDLE_MAX idle sessions in all and OUTPOOL_IDLE_PER_DEST per key
 * (a key's oldest idle session makes room for its next; with all taken,
 * the session being parked is closed instead).  From the drain on nothing
 * is parked, and outpool_stop closes what is idle with QUIT.
 *
 * TLS resumption: the session of the last new TLS connection per key is
 * kept (OUTPOOL_TLS_SESSIONS_MAX keys) and offered on the next new
 * connection with that key, only where no certificate decision depends on
 * the handshake: opportunistic MX sessions and the smarthost (whose
 * certificate was verified for the same name by the session resumed).
 * MTA-STS (enforce, testing) and DANE connections never resume: their
 * certificate is checked on every connection (tls.c refuses a resumed
 * DANE session).
 *
 * Calls smtp_client, tls, dane, crypto, config, log, util.  Thread-safe:
 * one mutex over both tables; no I/O is done under it.
 */
#ifndef MRS_OUTPOOL_H
#define MRS_OUTPOOL_H

#include "smtp_client.h"

#include <stdbool.h>
#include <stdint.h>

#define OUTPOOL_IDLE_MAX 64            /* idle sessions in all */
#define OUTPOOL_IDLE_PER_DEST 16       /* idle sessions per key */
#define OUTPOOL_MESSAGES_MAX 100       /* transactions per connection */
#define OUTPOOL_TLS_SESSIONS_MAX 64    /* keys whose TLS session is kept */
#define OUTPOOL_TLS_SESSION_MS (3600 * 1000) /* a kept TLS session is offered for this long */
#define OUTPOOL_KEY_MAX_BYTES 1280

struct outpool_key {
    char text[OUTPOOL_KEY_MAX_BYTES];
    bool resumable;                    /* TLS resumption allowed (see the top) */
};

/* outpool_key — the key of job cj (target, tls, tls_req, user set) on a
 * smarthost route or not.  Pure apart from config->hostname. */
void outpool_key(const struct smtp_client_job *cj, bool smarthost, struct outpool_key *k);

/* outpool_start — the reaper thread.  -1 with err when it cannot start. */
int outpool_start(char *err, size_t err_len);
/* outpool_stop — stop parking, close every idle session with QUIT (each
 * reply awaited until deadline at the latest), free the TLS sessions. */
void outpool_stop(int64_t deadline);

/* outpool_take — the most recently parked idle session with key k, or
 * NULL.  The caller owns it (job.reuse). */
struct smtp_client_session *outpool_take(const struct outpool_key *k);
/* outpool_put — park s (owned by the pool from now on) under k, or close
 * it when parking is over (drain) or not possible. */
void outpool_put(const struct outpool_key *k, struct smtp_client_session *s);

/* outpool_tls_take — the kept TLS session for k (the caller owns it and
 * frees it with tls_session_free), or NULL; never for a key that is not
 * resumable.  outpool_tls_put — keep s for k (ownership passes), replacing
 * the one kept. */
struct tls_session *outpool_tls_take(const struct outpool_key *k);
void outpool_tls_put(const struct outpool_key *k, struct tls_session *s);

#endif
