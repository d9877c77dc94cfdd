/*
 * session_bdat — CHUNKING (RFC 3030) for the inbound session: BDAT n [LAST].
 *
 * The n bytes follow the command line at once and carry no reply of their
 * own until they are read, so every BDAT whose size parses has its chunk
 * read — also when the command is refused (no transaction, a failed chunk
 * before it in the pipeline): a chunk is data, never commands, whatever it
 * holds.  A BDAT whose size does not parse leaves no way to find the end
 * of its chunk, so the session ends; so does one before AUTH (the server
 * does not read blind data for a client it does not know).
 *
 * The chunks of one message feed the same reader as DATA (session_data.c):
 * headers, the From: check, DKIM, the size limit (across chunks: over it,
 * 552 once the chunk is read, and the transaction is over), the spool and
 * the 250 after the commit.  Bytes are taken as they are (no dot
 * unstuffing); a bare CR or LF or a NUL refuses the message with 550 5.6.0
 * as DATA does (README.md says why).  Until the LAST chunk the message is
 * an open spool file in tmp/: RSET, EHLO, QUIT or a lost connection drop
 * it (session_bdat_abort), and nothing is queued.
 */
#include "session_int.h"

#include "config.h"

#include <stdlib.h>
#include <string.h>

void session_bdat_abort(struct session *s)
{
    if (!s->bdat)
        return;
    session_data_free(s->bdat);
    free(s->bdat);
    s->bdat = NULL;
}

/* refuse_chunk — read and drop a refused BDAT's chunk, then count the
 * error; false when the session must end. */
static bool refuse_chunk(struct session *s, int64_t n)
{
    if (!session_data_chunk(s, NULL, n)) {
        s->quit = true;
        return false;
    }
    return !session_count_error(s);
}

/* begin — the first chunk of a transaction: open its message. */
static struct data_rx *begin(struct session *s)
{
    struct data_rx *d = calloc(1, sizeof *d);
    if (!d) {
        session_reply(s, 451, "4.3.0", "Cannot store the message now; try again later");
        return NULL;
    }
    if (!session_message_open(s, d)) {
        free(d);
        return NULL;
    }
    s->bdat = d;
    session_set_state(s, SESSION_STATE_BDAT);
    return d;
}

void session_cmd_bdat(struct session *s, const char *arg, size_t len)
{
    int64_t n;
    bool last;
    if (smtp_parse_bdat(arg, len, &n, &last) < 0) {
        session_reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]; the chunk cannot be told from commands, closing");
        s->quit = true;
        return;
    }
    if (!s->authenticated) {
        session_reply(s, 530, "5.7.0", "Authentication required; closing");
        s->quit = true;
        return;
    }
    if (s->state != SESSION_STATE_RCPT && s->state != SESSION_STATE_BDAT) {
        /* the reply once the chunk is read (RFC 3030 §2); the 421 of too
         * many errors after it */
        if (!session_data_chunk(s, NULL, n)) {
            s->quit = true;
            return;
        }
        session_reply(s, 503, "5.5.1", "Bad sequence of commands: %s",
                      s->state == SESSION_STATE_MAIL ? "Need RCPT command first" : "Need MAIL and RCPT commands first");
        session_count_error(s);
        return;
    }
    struct data_rx *d = s->bdat ? s->bdat : begin(s);
    if (!d) { /* 451 given: the chunk is read and dropped */
        if (refuse_chunk(s, n))
            session_reset_transaction(s);
        return;
    }
    if (!session_data_chunk(s, d, n)) {
        s->quit = true;
        return;
    }
    if (!last && !d->oversize) {
        session_reply(s, 250, "2.0.0", "%lld octets received", (long long)n);
        return;
    }
    /* the LAST chunk, or over the size limit (552 now: RFC 3030 §2, the
     * transaction failed and later chunks are refused) */
    if (last && smtp_chunk_end(&d->dot))
        session_data_take(s, d, "\r\n", 2);
    session_data_verdict(s, d);
    session_reset_transaction(s);
}
