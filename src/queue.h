/*
 * queue — the durable spool under MRS_SPOOL_DIR (SPEC §5).
 *
 * Layout and format (docs/spool.md has the full description):
 *   tmp/<id>      a message being written; removed at start
 *   queue/<id>    a committed message: an envelope block, an empty line,
 *                 then the message bytes (CRLF line ends, not dot-stuffed)
 * A message is committed by write → fsync → rename(tmp → queue) → fsync of
 * the queue directory; only then does the client get its 250.  Directory
 * fsyncs of concurrent sessions are batched (group commit).
 *
 * Calls config, crypto, log, stats, util.  Thread-safe.
 */
#ifndef MRS_QUEUE_H
#define MRS_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_ID_BYTES 21 /* 20 characters + NUL */
#define QUEUE_SPOOL_VERSION "MRS-SPOOL 1"

struct queue_envelope {
    const char *user;            /* authenticated user ("" for bounces) */
    const char *client;          /* client address ("" for bounces) */
    const char *helo;            /* EHLO/HELO name ("" for bounces) */
    const char *from;            /* sender, "" for the null sender */
    const char *const *rcpts;
    size_t rcpt_count;
    bool eightbit;               /* BODY=8BITMIME */
    int64_t received_ms;         /* wall clock */
};

struct queue_msg;

/* queue_init — create the spool folders if needed, remove leftovers in
 * tmp/, count the queue.  -1 with err naming MRS_SPOOL_DIR and the cause. */
int queue_init(char *err, size_t err_len);

/* queue_new_id — a fresh, time-ordered id (also used before a message is
 * opened, for the Received header). */
void queue_new_id(char id[QUEUE_ID_BYTES]);

/* queue_open — start a message in tmp/ under id, writing the envelope.
 * NULL with errno on failure. */
struct queue_msg *queue_open(const char *id, const struct queue_envelope *env);
/* queue_write — append message bytes (buffered).  -1 on a write error,
 * which sticks: queue_commit then fails too. */
int queue_write(struct queue_msg *m, const void *data, size_t len);
/* queue_commit — make the message durable and visible to delivery, and
 * free m.  0 only when it is on disk: then, and only then, reply 250. */
int queue_commit(struct queue_msg *m);
/* queue_abort — drop an unfinished message and free m. */
void queue_abort(struct queue_msg *m);

/* queue_writable — whether a file can be created in the spool right now. */
bool queue_writable(void);

/* queue_dir — "<spool>/<sub>" into buf. */
void queue_dir(const char *sub, char *buf, size_t len);

#endif
