/*
 * smtp_client — the outbound SMTP state machine (see smtp_client.h).
 *
 * Shape: one loop, "enter state → send its command", "reply → switch on
 * state", and set_state() as the only way to change state (logged at
 * debug).  The session struct lives on the heap (it holds the connection
 * and its buffers); nothing large is on the thread's stack.
 *
 * Until MAIL FROM is accepted nothing is settled and any failure sends the
 * caller to the next address.  After that every recipient ends with a
 * reply: the server's, or our own 451 when the connection broke (after the
 * end of data too: we cannot know whether the server kept the message, so
 * it is retried — at-least-once, SPEC §5).
 *
 * Reuse: a session that ends in step (a transaction completed, or refused
 * in a way that leaves the connection usable) is parked in a struct
 * smtp_client_session instead of QUIT when the job asks for it; the next
 * job adopting it re-checks what it needs against the kept EHLO
 * capabilities (SMTPUTF8, SIZE) and starts at MAIL (RSET first when the
 * last transaction was left open).  An adopted session with input waiting
 * before our first command (a reply nobody asked for, or the end) is out of
 * step, and the first reply read on it decides whether it is alive: EOF, an
 * error, a 421 or a refused RSET; either way it is closed and a new
 * connection starts from the greeting, with nothing settled.
 */
#include "smtp_client.h"

#include "bufpool.h"
#include "config.h"
#include "conn.h"
#include "crypto.h"
#include "log.h"
#include "smtp_proto.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLIENT_LINE_BYTES 2048 /* a command line: AUTH PLAIN with the longest credentials fits */

enum client_state {
    CS_GREETING = 0,
    CS_EHLO,
    CS_HELO,
    CS_STARTTLS,
    CS_AUTH,
    CS_MAIL,
    CS_RCPT,
    CS_DATA,
    CS_DOT,
    CS_QUIT,
    CS_DONE,
    CS_RSET,
};

static const char *const state_names[] = {"greeting", "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL FROM",
                                          "RCPT TO", "DATA", "end of data", "QUIT", "done", "RSET"};

/* What a parked session keeps between two transactions. */
struct smtp_client_session {
    struct conn conn;
    struct smtp_client_caps caps;
    bool tls_up, authed, starttls_refused;
    bool rset;                      /* a transaction may be open: RSET before MAIL */
    int messages;                   /* transactions begun on it */
};

struct client {
    struct conn conn;
    bool connected;
    bool tls_up;                    /* a handshake completed */
    enum client_state state;
    const struct smtp_client_job *job;
    struct smtp_client_outcome *out;
    struct smtp_client_caps caps;
    struct smtp_client_reply r;     /* the reply just read */
    bool result_set;                /* out->result is decided */
    bool starttls_refused;          /* opportunistic: the server said no; go on in plaintext */
    bool authed;
    int auth_step;
    size_t rcpt_index, accepted;
    bool settled;                   /* every recipient reply is final */
    bool reused;                    /* adopted from job->reuse */
    bool reuse_first;               /* and no reply read on it yet: a bad one means it was dead */
    bool pipelined;                 /* RCPT and DATA went out with MAIL (RFC 2920) */
    bool batch;                     /* send_line collects without flushing */
    bool parkable;                  /* the session ends in step: it may be parked instead of QUIT */
    bool rset;                      /* a transaction may be open on it */
    int messages;                   /* transactions begun on this connection */
    char line[CLIENT_LINE_BYTES];
    unsigned char secret[2 * SMTP_CLIENT_PASSWORD_MAX_BYTES]; /* wiped after use */
    char in[SMTP_CLIENT_CHUNK_BYTES];
    char stuffed[2 * SMTP_CLIENT_CHUNK_BYTES + 8]; /* + the end of data, sent with the last chunk */
};

/* ---- small pure helpers --------------------------------------------------- */

size_t smtp_client_base64(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* word_is — the token at p (up to a space, '=' or the end) equals w. */
static bool word_is(const char *p, size_t len, const char *w)
{
    size_t n = 0;
    while (n < len && p[n] != ' ' && p[n] != '=')
        n++;
    return util_ieq(p, n, w);
}

void smtp_client_parse_ehlo_line(const char *text, size_t len, struct smtp_client_caps *caps)
{
    if (word_is(text, len, "STARTTLS")) {
        caps->starttls = true;
    } else if (word_is(text, len, "PIPELINING")) {
        caps->pipelining = true;
    } else if (word_is(text, len, "8BITMIME")) {
        caps->eightbitmime = true;
    } else if (word_is(text, len, "SMTPUTF8")) {
        caps->smtputf8 = true;
    } else if (word_is(text, len, "DSN")) {
        caps->dsn = true;
    } else if (word_is(text, len, "SIZE")) {
        caps->size = true;
        int64_t v = 0;
        for (size_t i = 5; i < len && text[i] >= '0' && text[i] <= '9' && v < INT64_MAX / 10 - 9; i++)
            v = v * 10 + (text[i] - '0');
        caps->size_max = v;
    } else if (word_is(text, len, "AUTH")) {
        /* "AUTH PLAIN LOGIN" or the old "AUTH=PLAIN LOGIN" */
        for (size_t i = 4; i < len;) {
            while (i < len && (text[i] == ' ' || text[i] == '='))
                i++;
            caps->auth_plain |= word_is(text + i, len - i, "PLAIN");
            caps->auth_login |= word_is(text + i, len - i, "LOGIN");
            while (i < len && text[i] != ' ')
                i++;
        }
    }
}

static const char *errno_text(int e)
{
    switch (e) {
    case ECONNREFUSED: return "connection refused";
    case ETIMEDOUT: return "timed out";
    case ENETUNREACH: return "network unreachable";
    case EHOSTUNREACH: return "host unreachable";
    case ECONNRESET: return "connection reset";
    case EADDRNOTAVAIL: return "address not available";
    case EAFNOSUPPORT: return "address family not supported";
    default: return "connect failed";
    }
}

/* ---- state, results, logging ----------------------------------------------- */

static void set_state(struct client *cl, enum client_state s)
{
    if (log_enabled(LOG_DEBUG))
        log_debug("smtp-out", &(struct log_fields){.queue_id = cl->job->queue_id, .remote = cl->job->target->label},
                  "state %s -> %s", state_names[cl->state], state_names[s]);
    cl->state = s;
}

static void set_reply(struct smtp_client_reply *r, int code, bool remote, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_reply(struct smtp_client_reply *r, int code, bool remote, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
    r->code = code;
    r->remote = remote;
}

/* finish — decide the outcome (first decision wins) and say goodbye when
 * the connection is still in step. */
static void finish(struct client *cl, enum smtp_client_result res, const struct smtp_client_reply *why, bool quit)
{
    if (!cl->result_set) {
        cl->out->result = res;
        if (why)
            cl->out->reply = *why;
        cl->result_set = true;
    }
    set_state(cl, quit ? CS_QUIT : CS_DONE);
}

/* ---- the attempt's deadline ------------------------------------------------- */

/* capped — deadline d, or the attempt's end when that comes first. */
static int64_t capped(const struct client *cl, int64_t d)
{
    return cl->job->deadline_ms > 0 && cl->job->deadline_ms < d ? cl->job->deadline_ms : d;
}

static bool attempt_over(const struct client *cl)
{
    return cl->job->deadline_ms > 0 && util_now_ms() >= cl->job->deadline_ms;
}

/* attempt_over_reply — our 451 for a session cut short by
 * MRS_DELIVERY_ATTEMPT_TIMEOUT (RFC 3463 4.4.2: the connection was
 * dropped), noted in the outcome. */
static void attempt_over_reply(struct client *cl, struct smtp_client_reply *why, const char *during)
{
    int64_t ms = config->delivery_attempt_timeout_ms;
    cl->out->attempt_timeout |= !cl->result_set;
    if (ms % 1000)
        set_reply(why, 451, false, "451 4.4.2 %s: delivery attempt over MRS_DELIVERY_ATTEMPT_TIMEOUT (%lldms) during %s",
                  cl->job->target->label, (long long)ms, during);
    else
        set_reply(why, 451, false, "451 4.4.2 %s: delivery attempt over MRS_DELIVERY_ATTEMPT_TIMEOUT (%llds) during %s",
                  cl->job->target->label, (long long)(ms / 1000), during);
}

/* lost — the connection failed (st) in the current state. */
static void lost(struct client *cl, enum conn_status st)
{
    const struct smtp_client_job *j = cl->job;
    struct smtp_client_reply why;
    if (st == CONN_TIMEOUT && attempt_over(cl))
        attempt_over_reply(cl, &why, state_names[cl->state]);
    else
        set_reply(&why, 451, false, "451 4.4.2 %s: %s during %s", j->target->label, conn_status_name(st),
                  state_names[cl->state]);
    if (cl->state >= CS_RCPT && cl->state <= CS_DOT && !cl->settled) {
        /* in a transaction: what the server refused stays refused, the rest
         * is retried; after the end of data it may have been delivered */
        for (size_t i = 0; i < j->rcpt_count; i++)
            if (j->rcpt_replies[i].code == 0 || j->rcpt_replies[i].code / 100 == 2)
                j->rcpt_replies[i] = why;
        cl->settled = true;
        finish(cl, SMTP_CLIENT_SENT, NULL, false);
    } else {
        finish(cl, SMTP_CLIENT_NEXT, &why, false);
    }
}

/* ---- I/O ---------------------------------------------------------------------------- */

static int64_t reply_deadline(const struct client *cl)
{
    if (cl->state == CS_DOT)
        return capped(cl, util_now_ms() + config->delivery_data_timeout_ms);
    if (cl->state == CS_QUIT)
        return capped(cl, util_now_ms() + SMTP_CLIENT_QUIT_TIMEOUT_MS);
    return capped(cl, util_now_ms() + config->delivery_command_timeout_ms);
}

/* send_line — cl->line plus CRLF; `shown` replaces it in the log (secrets). */
static enum conn_status send_line(struct client *cl, const char *shown)
{
    int64_t deadline = capped(cl, util_now_ms() + config->delivery_command_timeout_ms);
    if (log_enabled(LOG_DEBUG))
        log_debug("smtp-out", &(struct log_fields){.queue_id = cl->job->queue_id, .remote = cl->job->target->label},
                  "> %s", shown ? shown : cl->line);
    enum conn_status st = conn_write(&cl->conn, deadline, cl->line, strlen(cl->line));
    if (st == CONN_OK)
        st = conn_write(&cl->conn, deadline, "\r\n", 2);
    if (st == CONN_OK && !cl->batch)
        st = conn_flush(&cl->conn, deadline);
    return st;
}

static enum conn_status send_cmd(struct client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static enum conn_status send_cmd(struct client *cl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cl->line, sizeof cl->line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cl->line)
        return CONN_TOO_LONG;
    return send_line(cl, NULL);
}

/* append_text — add a reply line's text to r->text, bounded. */
static void append_text(struct smtp_client_reply *r, const char *p, size_t n)
{
    size_t used = strlen(r->text);
    if (used + 2 >= sizeof r->text)
        return;
    if (used)
        r->text[used++] = ' ';
    log_sanitize(r->text + used, sizeof r->text - used, p, n);
}

/* read_reply — one whole reply into cl->r (EHLO lines also into caps). */
static enum conn_status read_reply(struct client *cl)
{
    struct smtp_client_reply *r = &cl->r;
    int64_t deadline = reply_deadline(cl);
    bool ehlo = cl->state == CS_EHLO;
    memset(r, 0, sizeof *r);
    r->remote = true;
    for (size_t n = 0; n < SMTP_CLIENT_REPLY_LINES_MAX; n++) {
        char *line;
        size_t len, text_len;
        int code;
        bool last;
        const char *text;
        enum conn_status st = conn_read_line(&cl->conn, deadline, SMTP_CLIENT_LINE_MAX_BYTES, &line, &len);
        if (st != CONN_OK)
            return st;
        if (smtp_parse_reply_line(line, len, &code, &last, &text, &text_len) < 0 || (n > 0 && code != r->code))
            return CONN_ERROR; /* not SMTP: a protocol error ends the session */
        if (log_enabled(LOG_DEBUG))
            log_debug("smtp-out", &(struct log_fields){.queue_id = cl->job->queue_id, .remote = cl->job->target->label},
                      "< %.*s", (int)(len > 300 ? 300 : len), line);
        if (n == 0) {
            r->code = code;
            snprintf(r->text, sizeof r->text, "%d", code);
        }
        if (ehlo && n > 0)
            smtp_client_parse_ehlo_line(text, text_len, &cl->caps);
        else if (!ehlo || n == 0)
            append_text(r, text, text_len);
        if (last)
            return CONN_OK;
    }
    return CONN_ERROR;
}

/* send_body — the message bytes, dot-stuffed, then the end of data. */
static enum conn_status send_body(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    bool sol = true;
    char tail[2] = {'\r', '\n'}; /* the last two bytes sent: an empty message needs no CRLF */
    for (int64_t off = j->offset, end = j->offset + j->length; off < end;) {
        size_t want = end - off < (int64_t)sizeof cl->in ? (size_t)(end - off) : sizeof cl->in;
        ssize_t n = pread(j->fd, cl->in, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return CONN_ERROR; /* the spool file: never end the data early with a dot */
        size_t o = smtp_dot_stuff(cl->in, (size_t)n, cl->stuffed, &sol);
        tail[0] = n >= 2 ? cl->in[n - 2] : tail[1];
        tail[1] = cl->in[n - 1];
        off += n;
        if (off >= end) {
            /* the last chunk takes the end of data along: one send, not two */
            if (tail[0] != '\r' || tail[1] != '\n') {
                cl->stuffed[o++] = '\r';
                cl->stuffed[o++] = '\n';
            }
            memcpy(cl->stuffed + o, ".\r\n", 3);
            o += 3;
            if (log_enabled(LOG_DEBUG))
                log_debug("smtp-out", &(struct log_fields){.queue_id = j->queue_id, .remote = j->target->label},
                          "> .");
        }
        int64_t deadline = capped(cl, util_now_ms() + config->delivery_command_timeout_ms);
        enum conn_status st = conn_write(&cl->conn, deadline, cl->stuffed, o);
        if (st == CONN_OK && off >= end)
            st = conn_flush(&cl->conn, deadline);
        if (st != CONN_OK)
            return st;
    }
    if (j->length > 0)
        return CONN_OK;
    snprintf(cl->line, sizeof cl->line, ".");
    return send_line(cl, "."); /* an empty message */
}

/* ---- entering a state: its command ------------------------------------------- */

static enum conn_status send_auth(struct client *cl)
{
    const char *user = cl->job->user, *pw = cl->job->password ? cl->job->password : "";
    size_t ul = strlen(user), pl = strlen(pw);
    size_t n = 0;
    bool plain = cl->caps.auth_plain;
    if (pl > SMTP_CLIENT_PASSWORD_MAX_BYTES || ul > 255)
        return CONN_TOO_LONG;
    if (plain && cl->auth_step == 0) {
        /* RFC 4616: authzid (empty) NUL authcid NUL passwd, as an initial response (RFC 4954 §4) */
        cl->secret[n++] = '\0';
        memcpy(cl->secret + n, user, ul);
        n += ul;
        cl->secret[n++] = '\0';
        memcpy(cl->secret + n, pw, pl);
        n += pl;
        memcpy(cl->line, "AUTH PLAIN ", 11);
        smtp_client_base64(cl->secret, n, cl->line + 11);
    } else if (cl->auth_step == 0) {
        snprintf(cl->line, sizeof cl->line, "AUTH LOGIN");
    } else {
        const char *v = cl->auth_step == 1 ? user : pw;
        smtp_client_base64((const unsigned char *)v, cl->auth_step == 1 ? ul : pl, cl->line);
    }
    enum conn_status st = send_line(cl, cl->auth_step == 0 ? (plain ? "AUTH PLAIN (credentials not logged)" : "AUTH LOGIN")
                                                           : "(credentials not logged)");
    crypto_wipe(cl->secret, sizeof cl->secret);
    crypto_wipe(cl->line, sizeof cl->line);
    /* the line went through the connection's output buffer (sent: out_len
     * is 0), which stays in a parked session or the kept struct client */
    if (cl->conn.out_len == 0)
        crypto_wipe(cl->conn.out, sizeof cl->conn.out);
    return st;
}

static enum conn_status send_mail(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    char size[40] = "";
    bool dsn = cl->caps.dsn;
    if (cl->caps.size)
        snprintf(size, sizeof size, " SIZE=%lld", (long long)j->length);
    cl->out->dsn = dsn;
    cl->messages++;
    cl->rset = true;
    return send_cmd(cl, "MAIL FROM:<%s>%s%s%s%s%s%s%s", j->from, size,
                    j->eightbit && cl->caps.eightbitmime ? " BODY=8BITMIME" : "", j->smtputf8 ? " SMTPUTF8" : "",
                    dsn && j->dsn_ret ? " RET=" : "", dsn && j->dsn_ret ? j->dsn_ret : "",
                    dsn && j->dsn_envid ? " ENVID=" : "", dsn && j->dsn_envid ? j->dsn_envid : "");
}

/* send_rcpt — RCPT TO, with NOTIFY= and ORCPT= for a server offering DSN. */
static enum conn_status send_rcpt(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    size_t i = cl->rcpt_index;
    const char *notify = cl->caps.dsn && j->rcpt_notify ? j->rcpt_notify[i] : NULL;
    const char *orcpt = cl->caps.dsn && j->rcpt_orcpt ? j->rcpt_orcpt[i] : NULL;
    return send_cmd(cl, "RCPT TO:<%s>%s%s%s%s", j->rcpts[i], notify ? " NOTIFY=" : "", notify ? notify : "",
                    orcpt ? " ORCPT=" : "", orcpt ? orcpt : "");
}

/* send_pipelined — MAIL, every RCPT and DATA in one write (RFC 2920 §3.1:
 * DATA is the last command of the group); the replies are read one by one
 * in the states that follow, which send nothing more. */
static enum conn_status send_pipelined(struct client *cl)
{
    enum conn_status st;
    cl->batch = true;
    st = send_mail(cl);
    for (size_t i = 0; st == CONN_OK && i < cl->job->rcpt_count; i++) {
        cl->rcpt_index = i;
        st = send_rcpt(cl);
    }
    if (st == CONN_OK)
        st = send_cmd(cl, "DATA");
    cl->batch = false;
    cl->rcpt_index = 0;
    cl->pipelined = true;
    if (st == CONN_OK)
        st = conn_flush(&cl->conn, capped(cl, util_now_ms() + config->delivery_command_timeout_ms));
    return st;
}

static enum conn_status enter(struct client *cl)
{
    if (cl->pipelined && (cl->state == CS_RCPT || cl->state == CS_DATA))
        return CONN_OK; /* sent with MAIL */
    switch (cl->state) {
    case CS_GREETING: return CONN_OK;
    case CS_EHLO: return send_cmd(cl, "EHLO %s", config->hostname);
    case CS_HELO: return send_cmd(cl, "HELO %s", config->hostname);
    case CS_STARTTLS: return send_cmd(cl, "STARTTLS");
    case CS_AUTH: return send_auth(cl);
    case CS_MAIL: return cl->caps.pipelining ? send_pipelined(cl) : send_mail(cl);
    case CS_RCPT: return send_rcpt(cl);
    case CS_DATA: return send_cmd(cl, "DATA");
    case CS_DOT: return send_body(cl);
    case CS_QUIT: return send_cmd(cl, "QUIT");
    case CS_RSET: return send_cmd(cl, "RSET");
    case CS_DONE: break;
    }
    return CONN_ERROR;
}

/* ---- reacting to a reply ------------------------------------------------------ */

static bool tls_on(const struct client *cl)
{
    return cl->conn.tls != NULL;
}

/* tls_required — the outbound TLS policy (MTA-STS enforce, DANE) forbids
 * plaintext at this MX. */
static bool tls_required(const struct client *cl)
{
    return cl->job->tls_req && cl->job->tls_req->tls_required;
}

/* policy_failed — the policy's requirement is not met: this MX gets
 * nothing, the caller tries the next one (NEXT), and the deferral says
 * why ("451 4.7.5 MTA-STS enforce: certificate name mismatch for mx1.example"). */
static void policy_failed(struct client *cl, const char *status, const char *what, bool quit)
{
    struct smtp_client_reply why;
    const struct outbound_tls_req *req = cl->job->tls_req;
    set_reply(&why, 451, false, "451 %s %s: %s for %s (%s): nothing is sent in plaintext", status,
              req->label, what, req->verify_name, cl->job->target->label);
    cl->out->tls_policy_failed |= !cl->result_set;
    finish(cl, SMTP_CLIENT_NEXT, &why, quit);
}

/* after_ehlo — what follows a successful EHLO/HELO (or AUTH): STARTTLS,
 * AUTH or the transaction. */
static void after_ehlo(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    struct smtp_client_reply why;
    if (!tls_on(cl) && j->tls == SMTP_CLIENT_TLS_STARTTLS && !cl->caps.starttls) {
        set_reply(&why, 451, false, "451 4.7.4 %s does not offer STARTTLS, which MRS_SMARTHOST_TLS=starttls requires: "
                  "nothing is sent in plaintext", j->target->label);
        finish(cl, SMTP_CLIENT_NEXT, &why, true);
    } else if (!tls_on(cl) && tls_required(cl) && (!cl->caps.starttls || cl->starttls_refused)) {
        policy_failed(cl, "4.7.4", cl->starttls_refused ? "STARTTLS refused" : "no STARTTLS offered", true);
    } else if (!tls_on(cl) && cl->caps.starttls && !cl->starttls_refused &&
               (j->tls == SMTP_CLIENT_TLS_STARTTLS || j->tls == SMTP_CLIENT_TLS_OPPORTUNISTIC)) {
        set_state(cl, CS_STARTTLS);
    } else if (j->user && j->user[0] && !cl->authed) {
        if (cl->caps.auth_plain || cl->caps.auth_login) {
            cl->auth_step = 0;
            set_state(cl, CS_AUTH);
        } else {
            set_reply(&why, 451, false, "451 4.7.0 %s offers neither AUTH PLAIN nor AUTH LOGIN", j->target->label);
            finish(cl, SMTP_CLIENT_NEXT, &why, true);
        }
    } else if (j->smtputf8 && !cl->caps.smtputf8) {
        /* RFC 6531 §3.2: no downgrade; the sender learns it from the bounce */
        set_reply(&why, 553, false, "553 5.6.7 %s does not offer SMTPUTF8, which this message needs "
                  "(UTF-8 addresses or headers, RFC 6531)", j->target->label);
        cl->parkable = true; /* nothing was sent for this message */
        finish(cl, SMTP_CLIENT_REFUSED, &why, true);
    } else if (cl->caps.size && cl->caps.size_max > 0 && j->length > cl->caps.size_max) {
        set_reply(&why, 552, false, "552 5.3.4 the message (%lld bytes) is larger than %s accepts (SIZE %lld)",
                  (long long)j->length, j->target->label, (long long)cl->caps.size_max);
        cl->parkable = true;
        finish(cl, SMTP_CLIENT_REFUSED, &why, true);
    } else {
        set_state(cl, CS_MAIL);
    }
}

/* tls_failed — the handshake failed; when the attempt's time ran out,
 * that is the reason, and no plaintext retry follows. */
static void tls_failed(struct client *cl)
{
    struct smtp_client_reply why;
    if (attempt_over(cl)) {
        attempt_over_reply(cl, &why, "TLS handshake");
        finish(cl, SMTP_CLIENT_NEXT, &why, false);
        return;
    }
    if (tls_required(cl)) {
        policy_failed(cl, "4.7.5", cl->conn.tls_error, false);
        return;
    }
    set_reply(&why, 451, false, "451 4.7.5 TLS handshake with %s failed: %s", cl->job->target->label, cl->conn.tls_error);
    finish(cl, SMTP_CLIENT_TLS_FAILED, &why, false);
}

/* on_starttls — 220: drop whatever was sent along (RFC 3207 §4.2), shake
 * hands, and start over with EHLO. */
static void on_starttls(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    if (cl->r.code != 220) {
        if (j->tls == SMTP_CLIENT_TLS_STARTTLS) {
            finish(cl, SMTP_CLIENT_NEXT, &cl->r, true);
            return;
        }
        cl->starttls_refused = true; /* opportunistic: go on in plaintext */
        after_ehlo(cl);
        return;
    }
    conn_discard_input(&cl->conn);
    int64_t deadline = capped(cl, util_now_ms() + config->delivery_command_timeout_ms);
    const struct outbound_tls_req *req = j->tls_req;
    const char *sni = req && req->verify_name ? req->verify_name : j->target->host;
    enum tls_verify verify = j->tls == SMTP_CLIENT_TLS_STARTTLS ? TLS_VERIFY_SMARTHOST
                             : req && req->verify              ? TLS_VERIFY_OUTBOUND
                                                               : TLS_VERIFY_OPTIONAL;
    enum conn_status hs = req && req->dane ? conn_tls_client_dane(&cl->conn, deadline, sni, req->dane)
                                           : conn_tls_client(&cl->conn, deadline, sni, verify);
    if (hs != CONN_OK) {
        tls_failed(cl);
        return;
    }
    cl->tls_up = true;
    memset(&cl->caps, 0, sizeof cl->caps);
    set_state(cl, CS_EHLO);
}

static void on_rcpt(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    j->rcpt_replies[cl->rcpt_index] = cl->r;
    cl->accepted += cl->r.code / 100 == 2;
    if (cl->r.code == 421) { /* the server is closing: the rest waits for another time */
        for (size_t i = cl->rcpt_index + 1; i < j->rcpt_count; i++)
            j->rcpt_replies[i] = cl->r;
        lost(cl, CONN_EOF);
        return;
    }
    if (++cl->rcpt_index < j->rcpt_count) {
        set_state(cl, CS_RCPT);
    } else if (cl->accepted > 0 || cl->pipelined) {
        set_state(cl, CS_DATA); /* pipelined: DATA's reply is still to read */
    } else {
        cl->settled = true;
        cl->parkable = true; /* the transaction stays open: RSET before the next */
        finish(cl, SMTP_CLIENT_SENT, NULL, true);
    }
}

/* settle_accepted — the reply to DATA or to the end of data decides every
 * recipient the server had accepted. */
static void settle_accepted(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    for (size_t i = 0; i < j->rcpt_count; i++)
        if (j->rcpt_replies[i].code / 100 == 2)
            j->rcpt_replies[i] = cl->r;
    cl->settled = true;
    /* in step unless the server is closing or said something odd; after
     * the end of data the transaction is over */
    cl->parkable = cl->r.remote && cl->r.code != 421;
    if (cl->state == CS_DOT)
        cl->rset = false;
    cl->pipelined = false;
    finish(cl, SMTP_CLIENT_SENT, NULL, true);
}

/* mail_refused — the reply to MAIL was not 2xx; pipelined, the replies to
 * the RCPTs and DATA sent with it are read first, so that the session stays
 * in step.  Each of them must be a refusal (RFC 2920 §3.1: no transaction
 * is open): a server that accepts one of them (a 354 to DATA: it now reads
 * a message) is out of step, and the connection is dropped, without QUIT. */
static void mail_refused(struct client *cl)
{
    struct smtp_client_reply mail = cl->r;
    bool in_step = mail.code != 421, pipelined = cl->pipelined;
    for (size_t i = 0; in_step && pipelined && i < cl->job->rcpt_count + 1; i++)
        in_step = read_reply(cl) == CONN_OK && cl->r.code != 421 && cl->r.code / 100 >= 4;
    cl->pipelined = false;
    cl->parkable = in_step && mail.code / 100 == 5;
    finish(cl, mail.code / 100 == 5 ? SMTP_CLIENT_REFUSED : SMTP_CLIENT_NEXT, &mail, in_step || !pipelined);
}

static void on_reply(struct client *cl)
{
    int code = cl->r.code, cls = code / 100;
    switch (cl->state) {
    case CS_GREETING:
        if (code == 220)
            set_state(cl, CS_EHLO);
        else
            finish(cl, SMTP_CLIENT_NEXT, &cl->r, true);
        break;
    case CS_EHLO:
    case CS_HELO:
        if (code == 250)
            after_ehlo(cl);
        else if (cl->state == CS_EHLO && cls == 5) /* RFC 5321 §3.2: fall back to HELO */
            set_state(cl, CS_HELO);
        else
            finish(cl, SMTP_CLIENT_NEXT, &cl->r, true);
        break;
    case CS_STARTTLS:
        on_starttls(cl);
        break;
    case CS_AUTH:
        if (code == 235) {
            cl->authed = true;
            after_ehlo(cl);
        } else if (code == 334 && cl->auth_step < (cl->caps.auth_plain ? 0 : 2)) {
            cl->auth_step++;
            set_state(cl, CS_AUTH);
        } else {
            finish(cl, SMTP_CLIENT_NEXT, &cl->r, true); /* a credentials problem is ours: defer */
        }
        break;
    case CS_MAIL:
        cl->out->transacted = true;
        if (cls == 2)
            set_state(cl, CS_RCPT);
        else
            mail_refused(cl);
        break;
    case CS_RCPT:
        on_rcpt(cl);
        break;
    case CS_DATA:
        if (code == 354 && cl->accepted == 0) {
            /* pipelined DATA accepted with no recipient: send nothing and
             * leave (the RCPT replies stand) */
            cl->settled = true;
            finish(cl, SMTP_CLIENT_SENT, NULL, false);
        } else if (code == 354) {
            cl->pipelined = false;
            set_state(cl, CS_DOT);
        } else if (cls == 4 || cls == 5) {
            settle_accepted(cl);
        } else {
            /* RFC 5321 §4.3.2: DATA is answered 354 or refused.  A 2xx here
             * would count recipients as delivered although no byte of the
             * message was sent: retry them later instead. */
            set_reply(&cl->r, 451, false, "451 4.5.0 %s answered DATA with %d, not 354: message not sent",
                      cl->job->target->label, code);
            settle_accepted(cl);
        }
        break;
    case CS_DOT:
        settle_accepted(cl);
        break;
    case CS_QUIT:
    case CS_DONE:
        set_state(cl, CS_DONE);
        break;
    case CS_RSET:
        cl->rset = false;
        after_ehlo(cl); /* 250: the reuse_first check took any other reply */
        break;
    }
}

/* ---- the session ------------------------------------------------------------------ */

/* start — connect (and for implicit TLS, shake hands). */
static bool start(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    struct smtp_client_reply why;
    if (attempt_over(cl)) { /* nothing left of the attempt: not even a connection */
        attempt_over_reply(cl, &why, "connect");
        finish(cl, SMTP_CLIENT_NEXT, &why, false);
        return false;
    }
    int fd = conn_connect(&j->target->addr.u.sa, (unsigned)j->target->addr.len,
                          capped(cl, util_now_ms() + config->delivery_connect_timeout_ms));
    if (fd < 0) {
        if (errno == ETIMEDOUT && attempt_over(cl))
            attempt_over_reply(cl, &why, "connect");
        else
            set_reply(&why, 451, false, "451 4.4.1 connect to %s: %s", j->target->label, errno_text(errno));
        finish(cl, SMTP_CLIENT_NEXT, &why, false);
        return false;
    }
    if (conn_init(&cl->conn, fd, SMTP_CLIENT_IN_MAX_BYTES) < 0) {
        close(fd);
        set_reply(&why, 451, false, "451 4.3.0 out of memory");
        finish(cl, SMTP_CLIENT_NEXT, &why, false);
        return false;
    }
    cl->connected = true;
    cl->out->connects++;
    cl->conn.resume = j->resume;
    if (j->tls == SMTP_CLIENT_TLS_IMPLICIT &&
        conn_tls_client(&cl->conn, capped(cl, util_now_ms() + config->delivery_command_timeout_ms), j->target->host,
                        TLS_VERIFY_SMARTHOST) != CONN_OK) {
        tls_failed(cl);
        return false;
    }
    cl->tls_up = j->tls == SMTP_CLIENT_TLS_IMPLICIT;
    return true;
}

/* adopt — take the parked session s (consumed): its connection and what
 * its EHLO said, then RSET or on to MAIL as after EHLO.  False when the
 * connection is not in step: closed, or holding input nobody asked for (a
 * late or extra reply would be read as the answer to our next command and
 * shift every reply after it onto the wrong command, a recipient's refusal
 * onto another); the caller opens a new one. */
static bool adopt(struct client *cl, struct smtp_client_session *s)
{
    cl->conn = s->conn;
    cl->caps = s->caps;
    cl->tls_up = s->tls_up;
    cl->authed = s->authed;
    cl->starttls_refused = s->starttls_refused;
    cl->rset = s->rset;
    cl->messages = s->messages;
    free(s);
    cl->connected = cl->reused = cl->reuse_first = true;
    const char *unread;
    size_t n = 0;
    enum conn_status st = conn_peek(&cl->conn, util_now_ms(), &unread, &n); /* does not wait */
    if (st != CONN_TIMEOUT) {
        char why[80];
        if (st == CONN_OK)
            snprintf(why, sizeof why, "unread input: %zu byte(s) the server sent unasked", n);
        else
            snprintf(why, sizeof why, "%s while idle", conn_status_name(st));
        log_info("smtp-out", &(struct log_fields){.queue_id = cl->job->queue_id, .remote = cl->job->target->label},
                 "the idle connection is gone or out of step (%s): opening a new one", why);
        return false;
    }
    if (log_enabled(LOG_DEBUG))
        log_debug("smtp-out", &(struct log_fields){.queue_id = cl->job->queue_id, .remote = cl->job->target->label},
                  "reusing an idle connection (%d transaction(s) on it so far)", cl->messages);
    if (cl->rset)
        set_state(cl, CS_RSET);
    else
        after_ehlo(cl);
    return true;
}

/* reopen — close the adopted session and start over on a new connection;
 * nothing is settled. */
static bool reopen(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    conn_close(&cl->conn);
    for (size_t i = 0; i < j->rcpt_count; i++)
        memset(&j->rcpt_replies[i], 0, sizeof j->rcpt_replies[i]);
    cl->connected = cl->tls_up = cl->authed = cl->starttls_refused = false;
    cl->reused = cl->reuse_first = cl->pipelined = cl->parkable = cl->rset = cl->batch = false;
    cl->result_set = cl->settled = false;
    cl->rcpt_index = cl->accepted = 0;
    cl->messages = 0;
    memset(&cl->caps, 0, sizeof cl->caps);
    cl->out->transacted = cl->out->dsn = false;
    cl->state = CS_GREETING;
    return start(cl);
}

/* reuse_failed — the adopted session is dead (st, or its first reply). */
static bool reuse_failed(struct client *cl, enum conn_status st)
{
    const struct smtp_client_job *j = cl->job;
    log_info("smtp-out", &(struct log_fields){.queue_id = j->queue_id, .remote = j->target->label},
             "the idle connection is gone (%s to %s: %s): opening a new one",
             st == CONN_OK ? "reply" : conn_status_name(st), state_names[cl->state],
             st == CONN_OK ? cl->r.text : "no reply");
    return reopen(cl);
}

/* park — the session is in step and may carry another message: hand it
 * to the caller instead of QUIT. */
static bool park(struct client *cl)
{
    const struct smtp_client_job *j = cl->job;
    if (!j->park || !cl->parkable || cl->messages >= j->messages_max || attempt_over(cl))
        return false;
    struct smtp_client_session *s = calloc(1, sizeof *s);
    if (!s)
        return false;
    s->conn = cl->conn;
    s->caps = cl->caps;
    s->tls_up = cl->tls_up;
    s->authed = cl->authed;
    s->starttls_refused = cl->starttls_refused;
    s->rset = cl->rset;
    s->messages = cl->messages;
    s->conn.resume = NULL;
    cl->out->parked = s;
    cl->connected = false; /* the connection is s's now */
    set_state(cl, CS_DONE);
    return true;
}

void smtp_client_session_close(struct smtp_client_session *s, int64_t deadline)
{
    if (!s)
        return;
    int64_t d = util_now_ms() + SMTP_CLIENT_QUIT_TIMEOUT_MS;
    if (deadline < d)
        d = deadline;
    char *line;
    size_t len;
    if (conn_write(&s->conn, d, "QUIT\r\n", 6) == CONN_OK && conn_flush(&s->conn, d) == CONN_OK)
        (void)conn_read_line(&s->conn, d, SMTP_CLIENT_LINE_MAX_BYTES, &line, &len);
    conn_close(&s->conn);
    free(s);
}

/* A struct client is over 100 KB (its line, chunk and dot-stuffing
 * buffers): kept for reuse so a delivery does not map and unmap it. */
static struct bufpool client_pool = BUFPOOL_INIT(sizeof(struct client), 16);

enum smtp_client_result smtp_client_deliver(const struct smtp_client_job *job, struct smtp_client_outcome *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < job->rcpt_count; i++)
        memset(&job->rcpt_replies[i], 0, sizeof job->rcpt_replies[i]);
    struct client *cl = bufpool_get(&client_pool);
    if (cl) /* the chunk buffers (96 KB) are always written before they are read */
        memset(cl, 0, offsetof(struct client, in));
    if (!cl) {
        smtp_client_session_close(job->reuse, 0);
        out->result = SMTP_CLIENT_NEXT;
        set_reply(&out->reply, 451, false, "451 4.3.0 out of memory");
        return out->result;
    }
    cl->job = job;
    cl->out = out;
    size_t steps_max = 16 + job->rcpt_count;
    bool going = true;
    if (job->reuse)
        going = adopt(cl, job->reuse) || reopen(cl);
    else
        going = start(cl);
    if (going) {
        for (size_t steps = 0; cl->state != CS_DONE && steps < steps_max; steps++) {
            if (cl->state == CS_QUIT && park(cl))
                break;
            /* a write rarely has to wait: check the attempt's end here too;
             * QUIT is a courtesy the attempt has no time left for */
            if (attempt_over(cl) && cl->state == CS_QUIT) {
                set_state(cl, CS_DONE);
                break;
            }
            enum conn_status st = attempt_over(cl) ? CONN_TIMEOUT : enter(cl);
            if (st == CONN_OK)
                st = read_reply(cl);
            if (cl->reuse_first && cl->state != CS_QUIT && (st != CONN_OK || cl->r.code == 421 || (cl->state == CS_RSET && cl->r.code != 250))) {
                if (!reuse_failed(cl, st))
                    break;
                steps = 0;
                continue;
            }
            cl->reuse_first = false;
            if (st != CONN_OK)
                lost(cl, st);
            else
                on_reply(cl);
        }
    }
    if (!cl->result_set)
        lost(cl, CONN_ERROR); /* the step limit: cannot happen with a sane server */
    out->reused = cl->reused;
    if (cl->tls_up && (cl->connected || out->parked)) {
        const struct tls_conn *t = out->parked ? out->parked->conn.tls : cl->conn.tls;
        out->tls = true;
        out->tls_verified = tls_peer_verified(t);
        snprintf(out->tls_version, sizeof out->tls_version, "%s", tls_version(t));
        if (!cl->reused && job->want_tls_session)
            out->tls_session = tls_session_get(t);
    }
    if (cl->connected)
        conn_close(&cl->conn);
    enum smtp_client_result res = out->result;
    bufpool_put(&client_pool, cl);
    return res;
}
