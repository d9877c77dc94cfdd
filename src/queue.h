/*
 * queue — the durable spool under MRS_SPOOL_DIR (SPEC §5).
 *
 * Layout and format (docs/spool.md has the full description):
 *   tmp/<id>      a message being written; removed at start
 *   queue/<id>    a committed message: an envelope block, an empty line,
 *                 then the message bytes (CRLF line ends, not dot-stuffed)
 *   queue/<id>.state  per-recipient delivery state (written by delivery
 *                 through queue_save_state; read by spool.c)
 * A message is committed by write → fsync → rename(tmp → queue) → fsync of
 * the queue directory; only then does the client get its 250.  Directory
 * fsyncs of concurrent sessions are batched (group commit).
 *
 * It also owns the in-memory schedule of the spool: every committed message
 * is an item, due now (new, or in flight before a crash) or at its next
 * attempt (deferred).  Delivery threads wait in queue_claim(); a commit
 * wakes one at once.  A claimed item belongs to one thread until it hands it
 * back (queue_release) or removes it (queue_done): one worker per message.
 * The queue never calls delivery.
 *
 * Calls config, crypto, log, spool (reading state at recovery), stats, util.
 * Thread-safe.
 */
#ifndef MRS_QUEUE_H
#define MRS_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define QUEUE_ID_BYTES 21 /* 20 characters + NUL */
#define QUEUE_SPOOL_VERSION "MRS-SPOOL 1"
#define QUEUE_HOLD_SUFFIX ".hold" /* queue/<id>.hold: the operator put it on hold */

struct queue_envelope {
    const char *user;            /* authenticated user ("" for bounces) */
    const char *client;          /* client address ("" for bounces) */
    const char *helo;            /* EHLO/HELO name ("" for bounces) */
    const char *from;            /* sender, "" for the null sender */
    const char *const *rcpts;
    size_t rcpt_count;
    bool eightbit;               /* BODY=8BITMIME */
    int64_t received_ms;         /* wall clock */
    bool smtputf8;               /* MAIL ... SMTPUTF8 (RFC 6531) */
    const char *dsn_ret;         /* RFC 3461 RET= "FULL"/"HDRS", ENVID= as xtext: NULL when absent */
    const char *dsn_envid;
    const char *const *rcpt_notify; /* per recipient NOTIFY= / ORCPT= (entries NULL when absent), */
    const char *const *rcpt_orcpt;  /* or NULL when no recipient gave any */
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
/*
 * Writing the head of a message last (DKIM, SPEC §8.3: its signature covers
 * the whole body, which streams to the file before the signature exists).
 * queue_reserve — right after queue_open, before any message byte: leave
 * `len` bytes (at least QUEUE_RESERVE_MIN) for the start of the message;
 * what queue_write adds next goes behind them.  queue_fill — before the
 * commit, exactly once: the iov pieces become the start of the message,
 * and the room they leave is taken by a `pad` line ending the envelope
 * (docs/spool.md), so the file reads as any other.  -1 when the pieces do
 * not fit or a write fails; the error sticks (the commit fails too), as
 * does a reservation never filled.
 */
#define QUEUE_RESERVE_MIN 5 /* "pad" + "\n" + the "\n" ending the envelope */
struct iovec;
int queue_reserve(struct queue_msg *m, size_t len);
int queue_fill(struct queue_msg *m, const struct iovec *iov, int iovcnt);

/* queue_abort — drop an unfinished message and free m. */
void queue_abort(struct queue_msg *m);

/* ---- the delivery side ------------------------------------------------------ */

struct queue_item; /* one committed message in the schedule */

/*
 * queue_claim — wait until a message is due and hand it to the caller
 * alone; it stays out of every other thread's reach until the caller
 * passes it to queue_release() or queue_done().  NULL once queue_stop()
 * was called.
 */
struct queue_item *queue_claim(void);
/* queue_item_id — the message id of a claimed item (valid while claimed). */
const char *queue_item_id(const struct queue_item *it);
/* queue_release — hand a claimed item back, due again at due_wall_ms
 * (wall clock; in the past or 0: at once). */
void queue_release(struct queue_item *it, int64_t due_wall_ms);
/*
 * queue_item_hold_state — give a claimed item the text of a state that
 * could not be saved (data: a heap buffer of len bytes, owned by the item
 * from now on; NULL clears it), so that the next holder applies it over
 * the older state file and saves it again instead of repeating deliveries
 * the file does not know about.  Freed with the item.
 */
void queue_item_hold_state(struct queue_item *it, char *data, size_t len);
/* queue_item_held_state — the text an item holds (NULL: none), *len bytes. */
const char *queue_item_held_state(const struct queue_item *it, size_t *len);
/*
 * queue_done — every recipient is settled: remove the message, then its
 * state file, from the spool and the item from the schedule (freeing it):
 * 0.  -1 with errno when the message file cannot be removed: the state
 * file is left as it is and the caller still holds the item (it must save
 * the final state and hand the item back, so that neither a retry nor a
 * restart delivers the message again).  The message file is kept for a
 * new message (queue_recycle.h) and may be written over at once: a caller
 * that still has it open (spool_load's keep_fd) must not read it any more.
 */
int queue_done(struct queue_item *it);
/* queue_quarantine — a message that cannot be parsed: rename it to
 * queue/<id>.bad (out of the schedule, kept for the operator, counted in
 * mrs_queue_quarantined). */
void queue_quarantine(struct queue_item *it);
/* queue_item_hold_expired — whether the item was handed out because it is
 * on hold and its MRS_QUEUE_LIFETIME is over (decided when it was claimed):
 * it is then bounced without a delivery attempt. */
bool queue_item_hold_expired(const struct queue_item *it);

/*
 * queue_control — the operator's `mrs queue` actions (control.c; LIST and
 * SHOW are formatted there from queue_views), text for the operator written
 * to out:
 *   FLUSH [id]      due now (every message not on hold, or one)
 *   HOLD id         not delivered until RELEASE; kept across restarts
 *                   (queue/<id>.hold); still bounced when its lifetime ends
 *   RELEASE id      due now again
 *   DELETE id       removed without a report (logged); a message being
 *                   delivered is removed when the attempt ends
 * The relay stays the only writer of the spool.
 */
enum queue_ctl { QUEUE_CTL_LIST = 0, QUEUE_CTL_SHOW, QUEUE_CTL_FLUSH, QUEUE_CTL_HOLD, QUEUE_CTL_RELEASE,
                 QUEUE_CTL_DELETE };
enum queue_ctl_result { QUEUE_CTL_OK = 0, QUEUE_CTL_NOT_FOUND, QUEUE_CTL_ERROR };
enum queue_ctl_result queue_control(enum queue_ctl op, const char *id, FILE *out);

/* What the operator sees of a message besides its files. */
struct queue_view {
    char id[QUEUE_ID_BYTES];
    bool claimed;       /* being delivered now */
    bool on_hold;
    bool delete_asked;  /* deleted while being delivered */
};
/* queue_views — a snapshot of every message, oldest first (*out: heap,
 * the caller frees it); -1 when out of memory.  queue_view_one — one
 * message's; -1 when it is not queued. */
int queue_views(struct queue_view **out, size_t *count);
int queue_view_one(const char *id, struct queue_view *v);
const char *queue_ctl_name(enum queue_ctl op);

/* queue_stop — wake every waiting queue_claim(): from now on they return
 * NULL.  Claimed items stay valid for their holders. */
void queue_stop(void);

/*
 * Slots: at most `limit` deliveries to one destination at once
 * (MRS_DELIVERY_DOMAIN_CONCURRENCY); key names the destination (delivery
 * hashes the domain).  A thread holds at most one slot at a time.
 *
 * queue_slot_take — take a slot of key: false when `limit` are held.
 * queue_slot_give — give one back: the item parked longest under key
 *   becomes due at once (every one of them when no slot is held any more).
 * queue_park — hand a claimed item back to wait for a slot of key without
 *   holding a thread: due when one is given back, at once when one is free
 *   by now (no lost wake-up), or at latest_wall_ms at the latest.  Its
 *   holder may claim it again then and must check again.  An operator's
 *   hold or delete (queue_control) wins, as with queue_release; flush,
 *   hold and release take a parked item off its slot's waiting list.
 */
bool queue_slot_take(uint64_t key, int64_t limit);
void queue_slot_give(uint64_t key);
void queue_park(struct queue_item *it, uint64_t key, int64_t limit, int64_t latest_wall_ms);

/*
 * queue_save_state — replace queue/<id>.state with data (len bytes):
 * tmp/<id>.state written, fsynced, renamed over it, the directory fsynced
 * (group commit).  0 only when durable.
 */
int queue_save_state(const char *id, const char *data, size_t len);

/* queue_writable — whether a file can be created in the spool right now. */
bool queue_writable(void);

/* queue_dir — "<spool>/<sub>" into buf. */
void queue_dir(const char *sub, char *buf, size_t len);

#endif
