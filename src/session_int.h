/*
 * session_int — what the inbound session's files share (session.c: the
 * state machine and the commands; session_data.c: the message reader that
 * DATA and BDAT feed; session_bdat.c: CHUNKING).  Not a module interface:
 * only these three files include it.
 */
#ifndef MRS_SESSION_INT_H
#define MRS_SESSION_INT_H

#include "auth.h"
#include "bufpool.h"
#include "conn.h"
#include "log.h"
#include "queue.h"
#include "session.h"
#include "smtp_proto.h"
#include "stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SESSION_HEADER_MAX_BYTES (256 * 1024)
#define SESSION_PREFIX_MAX_BYTES 2048     /* Received:, Message-ID:, Date: */
#define SESSION_MAX_RECEIVED_HEADERS 50   /* more looks like a mail loop */

enum session_state {
    SESSION_STATE_CONNECTED = 0,
    SESSION_STATE_GREETED,
    SESSION_STATE_MAIL,
    SESSION_STATE_RCPT,
    SESSION_STATE_BDAT,       /* BDAT chunks of this transaction received, not the LAST yet */
    SESSION_STATE_COUNT
};

struct data_rx;

struct session {
    struct conn conn;
    enum session_state state;
    enum stats_listener listener;
    bool tls, implicit_tls, authenticated, quit;
    int errors, auth_failures;
    int64_t deadline;                   /* the whole session */
    struct sockaddr_storage peer;
    char id[11];
    char client[48];                    /* IP address text */
    char helo[SMTP_DOMAIN_MAX_BYTES + 1];
    char user[AUTH_USER_MAX_BYTES + 1];
    char tls_info[96];
    struct smtp_path from;
    char **rcpts;
    size_t rcpt_count, rcpt_cap;
    struct dsn_rcpts rcpt_dsn;          /* NOTIFY=/ORCPT= per recipient (RFC 3461) */
    struct log_fields lf;               /* session, client, user: for every log line */
    struct data_rx *bdat;               /* the message of a BDAT transaction (state BDAT) */
};

/* The message being received (DATA, or BDAT across its chunks): the bytes
 * are decoded (DATA) or scanned (BDAT) into `dot`, then taken by the same
 * header processing and spool writer. */
struct data_rx {
    struct queue_msg *q;
    char qid[QUEUE_ID_BYTES];
    struct smtp_dot dot;
    char *out, *hdr, *prefix;
    size_t hdr_len, hdr_cap, hdr_block; /* hdr_block: header bytes up to the empty line */
    size_t prefix_len;
    bool in_body, hdr_too_big, oversize, write_failed;
    int64_t size;
    struct dkim_job *dkim;              /* NULL: no DKIM keys */
};

/* session.c, for the message readers */
void session_reply(struct session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool session_count_error(struct session *s);
void session_set_state(struct session *s, enum session_state next);
void session_reset_transaction(struct session *s);
int64_t session_write_deadline(void);
/* session_message_open — the spool file for the transaction's message,
 * its envelope written, into d (zeroed by the caller); false with the 451
 * given when it cannot be opened. */
bool session_message_open(struct session *s, struct data_rx *d);

/* session_data.c: the message reader */
/* session_data_receive — read DATA to its final dot; false when the
 * session must end (timeout, too slow, connection lost). */
bool session_data_receive(struct session *s, struct data_rx *d);
/* session_data_chunk — read exactly n bytes of a BDAT chunk into d (NULL:
 * read and discard them); false as session_data_receive. */
bool session_data_chunk(struct session *s, struct data_rx *d, int64_t n);
/* session_data_take — message bytes into the header buffer / the spool. */
void session_data_take(struct session *s, struct data_rx *d, const char *p, size_t n);
/* session_data_verdict — after the end of the data: checks, DKIM, the
 * commit, and the one reply for the message. */
void session_data_verdict(struct session *s, struct data_rx *d);
void session_data_free(struct data_rx *d);
/* session_out_pool — the blocks of data_rx.out (SESSION_OUT_BYTES each),
 * kept between messages (bufpool.h); session.c takes, session_data_free
 * gives back. */
#define SESSION_OUT_BYTES (SMTP_AUTH_LINE_MAX_BYTES + 2)
extern struct bufpool session_out_pool;
/* The same for data_rx.hdr at its first size (a grown one is freed) and
 * data_rx.prefix: a malloc and free of these per message was an mmap and
 * munmap each. */
#define SESSION_HDR_START_BYTES 4096
extern struct bufpool session_hdr_pool, session_prefix_pool;

/* session_bdat.c */
void session_cmd_bdat(struct session *s, const char *arg, size_t len);
/* session_bdat_abort — drop a BDAT transaction's message (nothing queued). */
void session_bdat_abort(struct session *s);

#endif
