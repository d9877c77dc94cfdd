/*
 * spool — reading the spool's files (docs/spool.md): the envelope block of
 * a message file queue/<id>, the per-recipient delivery state queue/<id>.state,
 * and the read-only listing behind `mrs queue`.
 *
 * Everything here only reads: writing (submit, state, removal) is queue.c's,
 * so `mrs queue` can run next to a live relay without taking any lock — a
 * state file is replaced by rename, so a reader sees the old or the new one.
 * The parsers and the formatter are pure (unit tests call them directly).
 *
 * Calls config, log, util (and queue.h for the id size only).  Thread-safe:
 * no shared state.
 */
#ifndef MRS_SPOOL_H
#define MRS_SPOOL_H

#include "queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SPOOL_STATE_VERSION "MRS-STATE 1"
#define SPOOL_ENVELOPE_MAX_BYTES (4 * 1024 * 1024) /* 10,000 recipients of 256 bytes fit */
#define SPOOL_RCPTS_MAX 10000                      /* as MRS_MAX_RECIPIENTS' maximum */
#define SPOOL_REMOTE_MAX_BYTES 300                 /* "host[address]:port" */
#define SPOOL_REPLY_MAX_BYTES 512                  /* one reply, sanitized, joined lines */
#define SPOOL_LIST_MAX_MESSAGES 1000000            /* `mrs queue` stops listing after this */

enum spool_rcpt_status {
    SPOOL_PENDING = 0, /* not attempted yet (or the attempt was cut short) */
    SPOOL_DELIVERED,   /* a remote server took it: final */
    SPOOL_DEFERRED,    /* temporary failure: retried at when_ms */
    SPOOL_FAILED,      /* permanent failure or lifetime over: final, goes into the bounce */
};

struct spool_rcpt {
    const char *addr;                    /* into the message's envelope buffer */
    enum spool_rcpt_status status;
    int64_t when_ms;                     /* wall clock: delivered/failed at, or next attempt */
    char remote[SPOOL_REMOTE_MAX_BYTES]; /* who gave `reply`; "" when it is our own text */
    char reply[SPOOL_REPLY_MAX_BYTES];   /* "550 5.1.1 no such user"; "" when none yet */
    unsigned notify;                     /* RFC 3461 NOTIFY= bits (DSN_NOTIFY_*), 0 when absent */
    const char *notify_text;             /* its value as spooled ("SUCCESS,FAILURE"), NULL when absent */
    const char *orcpt;                   /* ORCPT= "rfc822;xtext" as sent, NULL when absent */
    bool relayed;                        /* delivered to a next hop without DSN: a success report is ours */
};

struct spool_message {
    char id[QUEUE_ID_BYTES];
    int64_t received_ms;   /* wall clock */
    const char *user;      /* these point into env; "" when absent */
    const char *client;
    const char *helo;
    const char *from;      /* "" is the null sender (a bounce) */
    bool eightbit;
    bool smtputf8;         /* the client gave SMTPUTF8 (envelope key `smtputf8 1`) */
    int ret;               /* RFC 3461 RET= (enum dsn_ret), 0 when absent */
    const char *envid;     /* ENVID= as xtext, NULL when absent */
    size_t rcpt_count;
    struct spool_rcpt *rcpts; /* heap, rcpt_count entries, in RCPT order */
    int attempts;          /* delivery runs that ended with recipients deferred */
    char bounce_id[QUEUE_ID_BYTES]; /* the bounce already committed for it ("" none): never sent twice */
    char delay_id[QUEUE_ID_BYTES];  /* the delay notice already committed for it ("" none): sent once */
    int64_t next_ms;       /* wall clock of the next attempt; 0: due now */
    bool has_state;        /* a state file was read */
    char *env;             /* heap: the envelope block, parsed in place */
    int fd;                /* the message file when loaded with keep_fd, else -1 */
    int64_t body_offset;   /* where the message bytes start in the file */
    int64_t file_size;
};

/*
 * spool_parse_envelope — parse the envelope block at the start of buf
 * (len bytes, modified in place: line ends become NULs) into m, which must
 * be zeroed.  m keeps pointers into buf, and allocates m->rcpts.
 * *body_offset gets the offset of the message after the empty line.
 * 0; -1 with errno EINVAL when the block is malformed, incomplete or over
 * the limits, ENOMEM when m->rcpts cannot be allocated (not the file's fault).
 */
int spool_parse_envelope(char *buf, size_t len, struct spool_message *m, size_t *body_offset);

/*
 * spool_salvage_envelope — pure: what can still be read from an envelope
 * that spool_parse_envelope refused (buf, len bytes, modified in place as
 * there), to bounce it: `from`, `received` and the `rcpt` lines whose
 * values look like addresses (printable ASCII with an '@', no '<' '>').
 * m must be zeroed; it gets pointers into buf and allocates m->rcpts.
 * *body_offset is the offset after the empty line, 0 when there is none.
 * 0 when a non-null sender and at least one recipient were read, else -1.
 */
int spool_salvage_envelope(char *buf, size_t len, struct spool_message *m, size_t *body_offset);

/*
 * spool_parse_state — apply a state file's text to m (after its envelope
 * was parsed).  Lines for recipients that do not exist are malformed.
 * 0, or -1 when malformed (m's recipients may then be partly updated).
 */
int spool_parse_state(const char *buf, size_t len, struct spool_message *m);

/* spool_state_max_bytes — room spool_format_state() needs for m. */
size_t spool_state_max_bytes(const struct spool_message *m);

/* spool_format_state — m's state as file text into out (cap bytes).
 * Returns the length, or 0 when cap is too small. */
size_t spool_format_state(const struct spool_message *m, char *out, size_t cap);

/* spool_set_reply — store a reply/remote pair in r, sanitized (printable
 * ASCII, no line ends) and cut to the field sizes.  remote may be NULL. */
void spool_set_reply(struct spool_rcpt *r, const char *remote, const char *reply, size_t reply_len);

/*
 * spool_load — read queue/<id> (envelope) and queue/<id>.state (when
 * present) into m.  With keep_fd the message file stays open in m->fd for
 * streaming the body.  0; -1 with errno and a line in err: ENOENT the
 * message is gone, EINVAL a file is malformed (only this one means the
 * message can never be read), anything else (EIO, ENOMEM…) a failure that
 * may pass: try again later.  Free with spool_free().
 */
int spool_load(const char *id, struct spool_message *m, bool keep_fd, char *err, size_t err_len);
void spool_free(struct spool_message *m);

/*
 * spool_salvage — for a message that is being set aside as malformed:
 * read queue/<id> with spool_salvage_envelope, apply its state file when
 * that still parses, and read its header section (at most headers_max
 * bytes, up to the empty line) into *headers (heap, caller frees; NULL
 * when none).  0 when there is someone to bounce to, else -1.  Free m
 * with spool_free().
 */
int spool_salvage(const char *id, struct spool_message *m, size_t headers_max, char **headers, size_t *headers_len);

/*
 * spool_needs_smtputf8 — whether a message loaded with keep_fd needs a next
 * hop with SMTPUTF8 (RFC 6531 §3.2): the client asked for it and its
 * sender, a recipient or its header section actually holds non-ASCII.  A
 * header section that cannot be read counts as needing it.
 */
bool spool_needs_smtputf8(const struct spool_message *m);

/* spool_valid_id — whether name is a message id (20 lowercase hex digits). */
bool spool_valid_id(const char *name);
/* spool_id_ms — the wall-clock milliseconds in an id's first 12 digits. */
int64_t spool_id_ms(const char *id);

/* spool_status_name — "pending", "delivered", "deferred", "failed". */
const char *spool_status_name(enum spool_rcpt_status s);

/*
 * spool_cli_list — `mrs queue`: every message of MRS_SPOOL_DIR, oldest
 * first: id, age, sender, recipients left, next attempt, and per recipient
 * not yet delivered its state and last reply; then every quarantined one
 * (queue/<id>.bad).  Reads files only.  Returns the exit code (0, or 1
 * when the spool cannot be read).
 */
int spool_cli_list(FILE *out);

/* spool_list_message — the `mrs queue` lines of one message (a summary,
 * then each recipient not delivered yet with its last reply), then the
 * note in parentheses when not NULL.  Returns the recipients left. */
size_t spool_list_message(FILE *out, const struct spool_message *m, int64_t now, const char *note);

/* spool_list_quarantined — one line per queue/<id>.bad (what its damaged
 * envelope still says); returns how many. */
size_t spool_list_quarantined(FILE *out, int64_t now);

#endif
