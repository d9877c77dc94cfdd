/*
 * session — the inbound SMTP state machine (see session.h).
 *
 * States: CONNECTED (before EHLO/HELO) → GREETED → MAIL (sender given) →
 * RCPT (recipients given) → DATA, then back to GREETED; or RCPT → BDAT
 * (chunks received, RFC 3030) until the LAST one.  The message reader that
 * DATA and BDAT share is session_data.c, BDAT session_bdat.c (the three
 * share session_int.h).  The command table
 * below is the one place that says which command each state allows; the
 * dispatcher refuses the others with 503 before any handler runs.  STARTTLS
 * returns to CONNECTED (RFC 3207 §4.2).  Every reply goes through reply(),
 * which appends to the connection's output batch; the batch is flushed only
 * when no further command is already buffered (RFC 2920 §3.1), so pipelined
 * commands get their replies in one send and one TLS record.
 *
 * Runs on the connection's thread; the session struct is heap-allocated
 * (the thread stack is small) and owned by this thread alone.
 */
#include "session_int.h"

#include "auth.h"
#include "config.h"
#include "conn.h"
#include "crypto.h"
#include "dkim_sign.h"
#include "log.h"
#include "policy.h"
#include "queue.h"
#include "smtp_proto.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SESSION_MAX_ERRORS_PREAUTH 5
#define SESSION_MAX_ERRORS 10
#define SESSION_DATA_CHUNK_BYTES (16 * 1024)
#define SESSION_WRITE_TIMEOUT_MS 30000
#define SESSION_TLS_HANDSHAKE_MS 20000

struct session;
static int64_t command_deadline(const struct session *s);

static const char *const state_names[SESSION_STATE_COUNT] = {"connected", "greeted", "mail", "rcpt",
                                                             "bdat"};

typedef void (*handler_fn)(struct session *s, const char *arg, size_t len);

#define S(x) (1u << SESSION_STATE_##x)
#define ANY (S(CONNECTED) | S(GREETED) | S(MAIL) | S(RCPT) | S(BDAT))

struct command {
    unsigned states;          /* where the command is allowed */
    const char *refusal;      /* the 503 text elsewhere */
    size_t max_line;          /* the command line limit without CRLF */
    handler_fn fn;
};

static void cmd_helo(struct session *s, const char *arg, size_t len);
static void cmd_ehlo(struct session *s, const char *arg, size_t len);
static void cmd_starttls(struct session *s, const char *arg, size_t len);
static void cmd_auth(struct session *s, const char *arg, size_t len);
static void cmd_mail(struct session *s, const char *arg, size_t len);
static void cmd_rcpt(struct session *s, const char *arg, size_t len);
static void cmd_data(struct session *s, const char *arg, size_t len);
static void cmd_rset(struct session *s, const char *arg, size_t len);
static void cmd_noop(struct session *s, const char *arg, size_t len);
static void cmd_quit(struct session *s, const char *arg, size_t len);
static void cmd_vrfy(struct session *s, const char *arg, size_t len);
static void cmd_expn(struct session *s, const char *arg, size_t len);
static void cmd_help(struct session *s, const char *arg, size_t len);

#define LINE (SMTP_COMMAND_MAX_BYTES - 2)

/* The state table: which command each state allows. */
static const struct command commands[SMTP_VERB_COUNT] = {
    [SMTP_VERB_HELO] = {ANY, NULL, LINE, cmd_helo},
    [SMTP_VERB_EHLO] = {ANY, NULL, LINE, cmd_ehlo},
    [SMTP_VERB_STARTTLS] = {S(CONNECTED) | S(GREETED), "Send EHLO first", LINE, cmd_starttls},
    [SMTP_VERB_AUTH] = {S(GREETED), "Send EHLO first, and AUTH only outside a mail transaction",
                        SMTP_AUTH_LINE_MAX_BYTES - 2, cmd_auth},
    [SMTP_VERB_MAIL] = {S(GREETED), "Send EHLO first; one MAIL per transaction",
                        SMTP_MAIL_MAX_BYTES - 2, cmd_mail},
    [SMTP_VERB_RCPT] = {S(MAIL) | S(RCPT), "Need MAIL command first", SMTP_RCPT_MAX_BYTES - 2, cmd_rcpt},
    [SMTP_VERB_DATA] = {S(RCPT) | S(BDAT), "Need RCPT command first", LINE, cmd_data},
    /* any state: a refused BDAT still reads its chunk (session_bdat.c) */
    [SMTP_VERB_BDAT] = {ANY, NULL, LINE, session_cmd_bdat},
    [SMTP_VERB_RSET] = {ANY, NULL, LINE, cmd_rset},
    [SMTP_VERB_NOOP] = {ANY, NULL, LINE, cmd_noop},
    [SMTP_VERB_QUIT] = {ANY, NULL, LINE, cmd_quit},
    [SMTP_VERB_VRFY] = {ANY, NULL, LINE, cmd_vrfy},
    [SMTP_VERB_EXPN] = {ANY, NULL, LINE, cmd_expn},
    [SMTP_VERB_HELP] = {ANY, NULL, LINE, cmd_help},
};

/* ---- replies and state -------------------------------------------------- */

static int64_t write_deadline(void)
{
    return util_now_ms() + SESSION_WRITE_TIMEOUT_MS;
}

/* reply — the one function that writes replies: "code enh text" (one line
 * or, with several texts separated by '\n', a multi-line reply). */
static void vreply(struct session *s, int code, const char *enh, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void vreply(struct session *s, int code, const char *enh, const char *fmt, va_list ap)
{
    char text[1024], line[1100];
    vsnprintf(text, sizeof text, fmt, ap);
    char *p = text;
    for (;;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        /* "250-2.1.0 text\r\n" by hand: snprintf's pieces were a tenth of
         * a message's formatting work (every EHLO line, every reply) */
        size_t n = 0, el = enh ? strlen(enh) : 0, pl = strlen(p);
        line[n++] = (char)('0' + code / 100 % 10);
        line[n++] = (char)('0' + code / 10 % 10);
        line[n++] = (char)('0' + code % 10);
        line[n++] = nl ? '-' : ' ';
        if (el && el < 32) {
            memcpy(line + n, enh, el);
            n += el;
            line[n++] = ' ';
        }
        if (pl > sizeof line - n - 2)
            pl = sizeof line - n - 2;
        memcpy(line + n, p, pl);
        n += pl;
        line[n++] = '\r';
        line[n++] = '\n';
        conn_write(&s->conn, write_deadline(), line, n);
        if (log_enabled(LOG_DEBUG))
            log_debug("smtp", &s->lf, "> %d%s%s %s", code, enh ? " " : "", enh ? enh : "", p);
        if (!nl)
            break;
        p = nl + 1;
    }
}

static void reply(struct session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply(struct session *s, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, code, enh, fmt, ap);
    va_end(ap);
}

void session_reply(struct session *s, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, code, enh, fmt, ap);
    va_end(ap);
}

int64_t session_write_deadline(void)
{
    return write_deadline();
}

static void set_state(struct session *s, enum session_state next)
{
    if (s->state != next && log_enabled(LOG_DEBUG))
        log_debug("state", &s->lf, "%s -> %s", state_names[s->state], state_names[next]);
    s->state = next;
}

static void reset_transaction(struct session *s)
{
    session_bdat_abort(s);
    for (size_t i = 0; i < s->rcpt_count; i++)
        free(s->rcpts[i]);
    free(s->rcpts);
    s->rcpts = NULL;
    s->rcpt_count = s->rcpt_cap = 0;
    dsn_rcpts_free(&s->rcpt_dsn);
    memset(&s->from, 0, sizeof s->from);
    if (s->state > SESSION_STATE_GREETED)
        set_state(s, SESSION_STATE_GREETED);
}

/* count_error — one more bad command; true when the session must end. */
static bool count_error(struct session *s)
{
    int max = s->authenticated ? SESSION_MAX_ERRORS : SESSION_MAX_ERRORS_PREAUTH;
    if (++s->errors < max)
        return false;
    reply(s, 421, "4.7.0", "%s Too many errors; closing the connection", config->hostname);
    log_warn("session", &s->lf, "closed after %d bad commands", s->errors);
    s->quit = true;
    return true;
}

void session_set_state(struct session *s, enum session_state next)
{
    set_state(s, next);
}

void session_reset_transaction(struct session *s)
{
    reset_transaction(s);
}

bool session_count_error(struct session *s)
{
    return count_error(s);
}

/* ---- simple commands ------------------------------------------------------- */

static bool take_helo(struct session *s, const char *arg, size_t len)
{
    if (len == 0 || !smtp_valid_helo(arg, len)) {
        reply(s, 501, "5.5.4", "Syntax: EHLO your.host.name (a domain or an address literal)");
        count_error(s);
        return false;
    }
    /* the bound sits at the copy: the validator proves syntax, not "fits" */
    if (util_copy(s->helo, sizeof s->helo, arg, len) < 0) {
        reply(s, 501, "5.5.4", "EHLO argument too long");
        count_error(s);
        return false;
    }
    reset_transaction(s);
    set_state(s, SESSION_STATE_GREETED);
    return true;
}

static void cmd_helo(struct session *s, const char *arg, size_t len)
{
    if (take_helo(s, arg, len))
        reply(s, 250, NULL, "%s", config->hostname);
}

static void cmd_ehlo(struct session *s, const char *arg, size_t len)
{
    if (!take_helo(s, arg, len))
        return;
    reply(s, 250, NULL,
          "%s Hello %s [%s]\nPIPELINING\nSIZE %lld\n8BITMIME\nENHANCEDSTATUSCODES\n%s%s",
          config->hostname, s->helo, s->client, (long long)config->max_message_bytes,
          s->tls ? "DSN\nAUTH PLAIN LOGIN" : "STARTTLS",
          s->tls ? "\nCHUNKING\nBINARYMIME\nSMTPUTF8" : ""); /* RFC 3030, 6531 */
}

static void cmd_rset(struct session *s, const char *arg, size_t len)
{
    reset_transaction(s);
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct session *s, const char *arg, size_t len)
{
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct session *s, const char *arg, size_t len)
{
    reply(s, 221, "2.0.0", "%s closing connection", config->hostname);
    s->quit = true;
}

static void cmd_vrfy(struct session *s, const char *arg, size_t len)
{
    reply(s, 252, "2.0.0", "Cannot VRFY user, but will accept the message and attempt delivery");
}

static void cmd_expn(struct session *s, const char *arg, size_t len)
{
    reply(s, 502, "5.5.1", "EXPN is not supported");
}

static void cmd_help(struct session *s, const char *arg, size_t len)
{
    reply(s, 214, "2.0.0", "mrs submission relay: EHLO, %sMAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT",
          s->tls ? "AUTH PLAIN|LOGIN, " : "STARTTLS, ");
}

/* ---- STARTTLS ------------------------------------------------------------- */

/* handshake_deadline — a handshake is also a wait for the client: the
 * idle timeout before AUTH (SPEC §8.1) caps it too. */
static int64_t handshake_deadline(const struct session *s)
{
    int64_t hs = util_now_ms() + SESSION_TLS_HANDSHAKE_MS, idle = command_deadline(s);
    return idle < hs ? idle : hs;
}

static void cmd_starttls(struct session *s, const char *arg, size_t len)
{
    if (s->tls) {
        reply(s, 503, "5.5.1", "TLS is already active");
        count_error(s);
        return;
    }
    if (len) {
        reply(s, 501, "5.5.4", "STARTTLS takes no arguments");
        count_error(s);
        return;
    }
    reply(s, 220, "2.0.0", "Ready to start TLS");
    if (conn_flush(&s->conn, write_deadline()) != CONN_OK) {
        s->quit = true;
        return;
    }
    /* RFC 3207 §4.2 and CVE-2011-0411: whatever the client pipelined after
     * STARTTLS was sent in plaintext and must not be executed under TLS */
    size_t junk = conn_discard_input(&s->conn);
    if (junk)
        log_warn("starttls", &s->lf, "discarded %zu plaintext bytes sent after STARTTLS", junk);
    enum conn_status st = conn_tls_server(&s->conn, handshake_deadline(s));
    STATS_INC(tls_handshakes_total[s->listener]);
    if (st != CONN_OK) {
        STATS_INC(tls_failures_total[s->listener]);
        log_warn("tls", &s->lf, "handshake failed: %s", s->conn.tls_error);
        s->quit = true;
        return;
    }
    s->tls = true;
    snprintf(s->tls_info, sizeof s->tls_info, "%s with cipher %s", tls_version(s->conn.tls),
             tls_cipher(s->conn.tls));
    log_info("tls", &s->lf, "%s", s->tls_info);
    reset_transaction(s);
    s->helo[0] = '\0';
    set_state(s, SESSION_STATE_CONNECTED); /* the client must EHLO again */
}

/* ---- AUTH ----------------------------------------------------------------- */

/* read_sasl_line — one client response to a 334 challenge; "*" cancels. */
static int read_sasl_line(struct session *s, const char *challenge, char **line, size_t *len)
{
    reply(s, 334, NULL, "%s", challenge);
    if (conn_flush(&s->conn, write_deadline()) != CONN_OK)
        return -1;
    enum conn_status st = conn_read_line(&s->conn, command_deadline(s), SMTP_AUTH_LINE_MAX_BYTES - 2,
                                         line, len);
    if (st == CONN_TOO_LONG || st == CONN_NUL) {
        reply(s, 500, "5.5.6", "Authentication exchange line is too long or malformed");
        return -2;
    }
    if (st != CONN_OK) {
        s->quit = true;
        return -1;
    }
    if (*len == 1 && (*line)[0] == '*') {
        reply(s, 501, "5.7.0", "Authentication cancelled");
        return -2;
    }
    return 0;
}

#define SASL_BAD_CREDENTIALS (-3)

/* sasl_credentials — run PLAIN or LOGIN; 0 with user/pw filled, -1 when a
 * reply was already given or the connection is gone, SASL_BAD_CREDENTIALS
 * for a well-formed response that can never authenticate (PLAIN with
 * another authorization identity: RFC 4954 §6 calls that 535). */
static int sasl_credentials(struct session *s, const char *mech, size_t mlen, const char *ir,
                            size_t irlen, bool has_ir, char *user, size_t *ulen, char *pw,
                            size_t *plen)
{
    char *line;
    size_t len;
    if (util_ieq(mech, mlen, "PLAIN")) {
        if (!has_ir) {
            if (read_sasl_line(s, "", &line, &len) != 0)
                return -1;
            ir = line;
            irlen = len;
        }
        int rc = auth_decode_plain(ir, irlen, user, ulen, pw, plen);
        if (rc == 0)
            return 0;
        if (rc == AUTH_PLAIN_OTHER_AUTHZID)
            return SASL_BAD_CREDENTIALS;
    } else if (util_ieq(mech, mlen, "LOGIN")) {
        if (!has_ir) {
            if (read_sasl_line(s, "VXNlcm5hbWU6", &line, &len) != 0) /* "Username:" */
                return -1;
            ir = line;
            irlen = len;
        }
        if (auth_decode_line(ir, irlen, user, AUTH_USER_MAX_BYTES + 1, ulen) == 0 && *ulen > 0) {
            if (read_sasl_line(s, "UGFzc3dvcmQ6", &line, &len) != 0) /* "Password:" */
                return -1;
            if (auth_decode_line(line, len, pw, AUTH_PASSWORD_MAX_BYTES + 1, plen) == 0)
                return 0;
        }
    } else {
        reply(s, 504, "5.5.4", "Unrecognized authentication mechanism; use PLAIN or LOGIN");
        return -1;
    }
    reply(s, 501, "5.5.2", "Cannot decode the authentication response (base64)");
    return -1;
}

static void auth_failed(struct session *s, const char *user)
{
    STATS_INC(auth_failures_total);
    int64_t delay = auth_failure((const struct sockaddr *)&s->peer);
    s->auth_failures++;
    struct log_fields lf = s->lf;
    lf.user = user;
    lf.result = "fail";
    log_warn("auth", &lf, "authentication failed (%d in this session), answering in %lld ms",
             s->auth_failures, (long long)delay);
    conn_flush(&s->conn, write_deadline());
    util_sleep_ms(delay); /* growing delay: password guessing gets slow */
    reply(s, 535, "5.7.8", "Authentication credentials invalid");
    if (s->auth_failures >= config->auth_max_failures) {
        reply(s, 421, "4.7.0", "%s Too many authentication failures; closing the connection",
              config->hostname);
        s->quit = true;
    }
}

/* drop_pipelined_sasl — after an AUTH that was refused before its
 * exchange ran, whatever the client already sent may be its SASL response
 * (credentials): it is neither executed as commands nor logged. */
static void drop_pipelined_sasl(struct session *s)
{
    size_t junk = conn_discard_input(&s->conn);
    /* and what already arrived but is not in our buffer yet (in the
     * kernel, or decrypted by TLS): read without waiting, bounded */
    const char *in;
    size_t got;
    while (junk < SMTP_AUTH_LINE_MAX_BYTES * 2 && conn_peek(&s->conn, util_now_ms(), &in, &got) == CONN_OK && got) {
        conn_consume(&s->conn, got);
        junk += got;
    }
    if (junk)
        log_warn("auth", &s->lf, "discarded %zu bytes sent after a refused AUTH", junk);
}

struct bufpool session_out_pool = BUFPOOL_INIT(SESSION_OUT_BYTES, 8);
struct bufpool session_hdr_pool = BUFPOOL_INIT(SESSION_HDR_START_BYTES, 16);
struct bufpool session_prefix_pool = BUFPOOL_INIT(SESSION_PREFIX_MAX_BYTES, 16);
/* AUTH's user and password buffers, one block (wiped before it goes back) */
#define SESSION_CRED_BYTES (AUTH_USER_MAX_BYTES + 2 + AUTH_PASSWORD_MAX_BYTES + 2)
static struct bufpool cred_pool = BUFPOOL_INIT(SESSION_CRED_BYTES, 8);

static void cmd_auth(struct session *s, const char *arg, size_t len)
{
    if (!s->tls) {
        reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
        drop_pipelined_sasl(s);
        count_error(s);
        return;
    }
    if (s->authenticated) {
        reply(s, 503, "5.5.1", "Already authenticated");
        drop_pipelined_sasl(s);
        count_error(s);
        return;
    }
    const char *sp = memchr(arg, ' ', len);
    size_t mlen = sp ? (size_t)(sp - arg) : len;
    const char *ir = sp ? sp + 1 : "";
    size_t irlen = sp ? len - mlen - 1 : 0;
    if (irlen == 1 && ir[0] == '=') /* RFC 4954 §4: "=" is an empty initial response */
        irlen = 0;
    char *user = bufpool_get(&cred_pool), *pw = user ? user + AUTH_USER_MAX_BYTES + 2 : NULL;
    size_t ulen = 0, plen = 0;
    if (!user || !pw) {
        reply(s, 454, "4.7.0", "Temporary authentication failure");
        goto done;
    }
    int sasl = sasl_credentials(s, arg, mlen, ir, irlen, sp != NULL, user, &ulen, pw, &plen);
    if (sasl == SASL_BAD_CREDENTIALS) {
        auth_failed(s, "(another authorization identity)");
        goto done;
    }
    if (sasl != 0) {
        drop_pipelined_sasl(s);
        count_error(s);
        goto done;
    }
    enum auth_result r = auth_verify(user, ulen, pw, plen, (const struct sockaddr *)&s->peer);
    if (r == AUTH_OK && util_copy(s->user, sizeof s->user, user, ulen) < 0)
        r = AUTH_FAIL; /* cannot happen: the decoders bound ulen; refuse rather than trust */
    if (r == AUTH_OK) {
        s->authenticated = true;
        s->lf.user = s->user;
        auth_success((const struct sockaddr *)&s->peer, s->user, ulen);
        STATS_INC(auth_successes_total);
        log_info("auth", &(struct log_fields){.session = s->id, .client = s->client, .user = s->user,
                                              .result = "ok"}, "authenticated");
        reply(s, 235, "2.7.0", "Authentication successful");
    } else if (r == AUTH_TEMPFAIL) {
        reply(s, 454, "4.7.0", "Temporary authentication failure");
    } else if (r == AUTH_BLOCKED) {
        /* counted and slowed like any failure, so a blocked client cannot
         * guess quickly either */
        STATS_INC(auth_failures_total);
        int64_t delay = auth_failure((const struct sockaddr *)&s->peer);
        log_warn("auth", &s->lf, "refused: too many failures from this client lately; answering in %lld ms",
                 (long long)delay);
        conn_flush(&s->conn, write_deadline());
        util_sleep_ms(delay);
        reply(s, 454, "4.7.0", "Too many authentication failures from your address; try again later");
        s->quit = true;
    } else {
        char clean[64];
        auth_failed(s, log_sanitize(clean, sizeof clean, user, ulen));
    }
done:
    if (user)
        crypto_wipe(user, SESSION_CRED_BYTES);
    bufpool_put(&cred_pool, user);
}

/* ---- MAIL / RCPT ------------------------------------------------------------ */

static void refuse(struct session *s, enum stats_refusal why)
{
    STATS_INC(messages_refused_total[why]);
}

static enum stats_refusal verdict_refusal(const struct policy_verdict *v)
{
    static const struct {
        const char *reason;
        enum stats_refusal r;
    } map[] = {{"spf", STATS_REFUSED_SPF}, {"spf_multiple", STATS_REFUSED_SPF_MULTIPLE},
               {"token", STATS_REFUSED_TOKEN}, {"nxdomain", STATS_REFUSED_NXDOMAIN},
               {"dns_temp", STATS_REFUSED_DNS_TEMP}, {"no_from", STATS_REFUSED_HEADER_FROM}};
    for (size_t i = 0; v->reason && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(v->reason, map[i].reason) == 0)
            return map[i].r;
    return v->status == POLICY_TEMPFAIL ? STATS_REFUSED_DNS_TEMP : STATS_REFUSED_SYNTAX;
}

static void path_error(struct session *s, enum smtp_path_error e, bool mail, const char *why)
{
    switch (e) {
    case SMTP_PATH_PARAM_UNKNOWN:
        reply(s, 555, "5.5.4", "Unsupported %s parameter", mail ? "MAIL" : "RCPT");
        break;
    case SMTP_PATH_PARAM_SYNTAX:
        reply(s, 501, "5.5.4", "Malformed %s parameter%s%s", mail ? "MAIL" : "RCPT", why ? ": " : "", why ? why : "");
        break;
    case SMTP_PATH_NO_DOMAIN:
        reply(s, 550, "5.1.3", "Recipient must be a full address, user@domain");
        break;
    case SMTP_PATH_LITERAL:
        reply(s, 550, "5.1.3", "Address literals are not accepted as recipients");
        break;
    case SMTP_PATH_TRAILING_DOT:
        reply(s, 501, "5.1.7", "Sender domain must not end with a dot (RFC 5321 section 4.1.2)");
        break;
    case SMTP_PATH_UTF8:
        reply(s, 553, "5.6.7", "%s address is not valid UTF-8", mail ? "Sender" : "Recipient");
        break;
    default:
        if (mail)
            reply(s, 501, "5.1.7", "Bad sender address syntax");
        else
            reply(s, 501, "5.1.3", "Bad recipient address syntax");
    }
    refuse(s, STATS_REFUSED_SYNTAX);
    count_error(s);
}

static void cmd_mail(struct session *s, const char *arg, size_t len)
{
    if (!s->authenticated) {
        reply(s, 530, "5.7.0", "Authentication required");
        refuse(s, STATS_REFUSED_AUTH);
        count_error(s);
        return;
    }
    struct smtp_path p;
    enum smtp_path_error e = smtp_parse_mail(arg, len, &p);
    if (e != SMTP_PATH_OK) {
        path_error(s, e, true, p.dsn.why);
        return;
    }
    if (p.size > config->max_message_bytes) {
        reply(s, 552, "5.3.4", "Message size exceeds the limit of %lld bytes",
              (long long)config->max_message_bytes);
        refuse(s, STATS_REFUSED_SIZE);
        return;
    }
    char domain[POLICY_DOMAIN_MAX_BYTES];
    if (p.null) {
        reply(s, 550, "5.7.1", "The null sender <> cannot be used for submission");
        refuse(s, STATS_REFUSED_SYNTAX);
        return;
    }
    if (policy_sender_domain(p.addr, domain, sizeof domain) < 0) {
        reply(s, 550, "5.7.1", "Sender address must be user@domain (no address literal)");
        refuse(s, STATS_REFUSED_SYNTAX);
        return;
    }
    if (!auth_rate_allow(s->user)) {
        reply(s, 450, "4.7.1", "Sending rate limit exceeded for %s (%lld messages per %lld s); try again later",
              s->user, (long long)config->rate_limit_count, (long long)(config->rate_limit_window_ms / 1000));
        refuse(s, STATS_REFUSED_RATE_LIMIT);
        return;
    }
    struct policy_verdict v;
    policy_check_domain(s->user, domain, &v);
    if (v.status != POLICY_PASS) {
        reply(s, v.code, v.enhanced, "%s", v.text);
        refuse(s, verdict_refusal(&v));
        return;
    }
    s->from = p;
    set_state(s, SESSION_STATE_MAIL);
    reply(s, 250, "2.1.0", "Sender <%s> ok", p.addr);
}

static void cmd_rcpt(struct session *s, const char *arg, size_t len)
{
    struct smtp_path p;
    enum smtp_path_error e = smtp_parse_rcpt(arg, len, &p);
    /* RFC 6531 §3.4: UTF-8 only when MAIL asked for SMTPUTF8 */
    if ((e == SMTP_PATH_UTF8 || (e == SMTP_PATH_OK && p.utf8)) && !s->from.smtputf8)
        e = SMTP_PATH_SYNTAX;
    if (e != SMTP_PATH_OK) {
        path_error(s, e, false, p.dsn.why);
        return;
    }
    if ((int64_t)s->rcpt_count >= config->max_recipients) {
        reply(s, 452, "4.5.3", "Too many recipients (at most %lld per message)",
              (long long)config->max_recipients);
        refuse(s, STATS_REFUSED_RECIPIENTS);
        return;
    }
    if (s->rcpt_count == s->rcpt_cap) {
        size_t cap = s->rcpt_cap ? s->rcpt_cap * 2 : 8;
        char **r = realloc(s->rcpts, cap * sizeof *r);
        if (!r) {
            reply(s, 452, "4.3.1", "Out of memory; try again later");
            return;
        }
        s->rcpts = r;
        s->rcpt_cap = cap;
    }
    if (!(s->rcpts[s->rcpt_count] = strdup(p.addr)) || dsn_rcpts_set(&s->rcpt_dsn, s->rcpt_count, &p.dsn) < 0) {
        free(s->rcpts[s->rcpt_count]);
        reply(s, 452, "4.3.1", "Out of memory; try again later");
        return;
    }
    s->rcpt_count++;
    set_state(s, SESSION_STATE_RCPT);
    reply(s, 250, "2.1.5", "Recipient <%s> ok", p.addr);
}

/* ---- DATA (the reader is in session_data.c, BDAT in session_bdat.c) ------- */

bool session_message_open(struct session *s, struct data_rx *d)
{
    queue_new_id(d->qid);
    struct queue_envelope env = {
        .user = s->user, .client = s->client, .helo = s->helo, .from = s->from.addr,
        .rcpts = (const char *const *)s->rcpts, .rcpt_count = s->rcpt_count,
        .eightbit = s->from.body >= SMTP_BODY_8BITMIME, .received_ms = util_wall_ms(),
        .smtputf8 = s->from.smtputf8,
        .dsn_ret = dsn_ret_name(s->from.dsn.ret), .dsn_envid = s->from.dsn.envid[0] ? s->from.dsn.envid : NULL,
        .rcpt_notify = (const char *const *)s->rcpt_dsn.notify, .rcpt_orcpt = (const char *const *)s->rcpt_dsn.orcpt};
    d->hdr_cap = SESSION_HDR_START_BYTES;
    d->out = bufpool_get(&session_out_pool);
    d->hdr = bufpool_get(&session_hdr_pool);
    d->prefix = bufpool_get(&session_prefix_pool);
    d->dkim = dkim_sign_begin();
    d->q = d->out && d->hdr && d->prefix ? queue_open(d->qid, &env) : NULL;
    smtp_dot_init(&d->dot);
    if (!d->q) {
        log_error("spool", &s->lf, "cannot open a spool file");
        reply(s, 451, "4.3.0", "Cannot store the message now; try again later");
        refuse(s, STATS_REFUSED_SPOOL);
        session_data_free(d);
        return false;
    }
    return true;
}

static void cmd_data(struct session *s, const char *arg, size_t len)
{
    struct data_rx d;
    memset(&d, 0, sizeof d);
    if (len) {
        reply(s, 501, "5.5.4", "DATA takes no arguments");
        count_error(s);
        return;
    }
    /* RFC 3030 §2, §3: not in a transaction BDAT began, nor for BINARYMIME */
    if (s->state == SESSION_STATE_BDAT || s->from.body == SMTP_BODY_BINARYMIME) {
        reply(s, 503, "5.5.1", "Bad sequence of commands: %s",
              s->state == SESSION_STATE_BDAT ? "DATA cannot follow BDAT; send RSET"
                                             : "BODY=BINARYMIME needs BDAT");
        count_error(s);
        return;
    }
    if (!session_message_open(s, &d))
        return;
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    if (conn_flush(&s->conn, write_deadline()) != CONN_OK) {
        s->quit = true;
    } else if (!session_data_receive(s, &d)) {
        s->quit = true;
    } else {
        session_data_verdict(s, &d);
    }
    session_data_free(&d);
    reset_transaction(s);
}

/* ---- the loop --------------------------------------------------------------- */

/* command_deadline — MRS_IDLE_TIMEOUT always applies; before AUTH
 * MRS_PREAUTH_TIMEOUT may only make it tighter (SPEC §8.1). */
static int64_t command_deadline(const struct session *s)
{
    int64_t idle = config->idle_timeout_ms;
    if (!s->authenticated && config->preauth_timeout_ms < idle)
        idle = config->preauth_timeout_ms;
    int64_t d = util_now_ms() + idle;
    return d < s->deadline ? d : s->deadline;
}

static void dispatch(struct session *s, char *line, size_t len)
{
    struct smtp_command c;
    smtp_parse_command(line, len, &c);
    /* an unrecognized line may be a SASL response (credentials) that a
     * client pipelined: only its length is logged */
    if (log_enabled(LOG_DEBUG) && c.verb == SMTP_VERB_UNKNOWN)
        log_debug("smtp", &s->lf, "< (unrecognized command, %zu bytes)", len);
    else if (log_enabled(LOG_DEBUG))
        log_debug("smtp", &s->lf, "< %.*s", c.verb == SMTP_VERB_AUTH ? 4 : (int)(len > 200 ? 200 : len), line);
    if (c.verb == SMTP_VERB_HTTP) {
        /* a browser or proxy talking to us: cross-protocol attack, hang up */
        reply(s, 502, "5.7.0", "This is an SMTP server, not HTTP");
        log_warn("session", &s->lf, "HTTP request on the SMTP port; closing");
        s->quit = true;
        return;
    }
    const struct command *cmd = &commands[c.verb];
    if (c.verb == SMTP_VERB_UNKNOWN || !cmd->fn) {
        reply(s, 500, "5.5.2", "Command not recognized");
        count_error(s);
        return;
    }
    if (len > cmd->max_line) {
        reply(s, 500, "5.5.2", "Command line too long%s",
              c.verb == SMTP_VERB_BDAT ? "; the chunk cannot be told from commands, closing" : "");
        if (c.verb == SMTP_VERB_AUTH)
            drop_pipelined_sasl(s);
        /* a BDAT chunk follows its line whether or not the line is taken:
         * read as commands it would run as the user's commands */
        if (c.verb == SMTP_VERB_BDAT)
            s->quit = true;
        else
            count_error(s);
        return;
    }
    if (!(cmd->states & (1u << s->state))) {
        reply(s, 503, "5.5.1", "Bad sequence of commands: %s", cmd->refusal);
        if (c.verb == SMTP_VERB_AUTH)
            drop_pipelined_sasl(s);
        count_error(s);
        return;
    }
    cmd->fn(s, c.arg, c.arg_len);
}

static void session_loop(struct session *s)
{
    while (!s->quit) {
        if (!conn_line_buffered(&s->conn) && conn_flush(&s->conn, write_deadline()) != CONN_OK)
            return;
        char *line;
        size_t len;
        s->conn.interruptible = true; /* a drain closes sessions waiting here */
        enum conn_status st = conn_read_line(&s->conn, command_deadline(s), SMTP_AUTH_LINE_MAX_BYTES - 2,
                                             &line, &len);
        s->conn.interruptible = false;
        switch (st) {
        case CONN_OK:
            dispatch(s, line, len);
            break;
        /* after AUTH the line may have been a BDAT whose chunk follows it
         * (session_bdat.c): its end cannot be found, so the session ends */
        case CONN_TOO_LONG:
            reply(s, 500, "5.5.2", "Line too long%s", s->authenticated ? "; closing" : "");
            if (s->authenticated)
                s->quit = true;
            else
                count_error(s);
            break;
        case CONN_NUL:
            reply(s, 500, "5.5.2", "NUL characters are not allowed in commands%s", s->authenticated ? "; closing" : "");
            if (s->authenticated)
                s->quit = true;
            else
                count_error(s);
            break;
        case CONN_TIMEOUT:
            reply(s, 421, "4.4.2", "%s Error: timeout exceeded", config->hostname);
            log_info("session", &s->lf, "timed out in state %s", state_names[s->state]);
            s->quit = true;
            break;
        case CONN_DRAIN:
            reply(s, 421, "4.3.2", "%s Service shutting down; try again later", config->hostname);
            s->quit = true;
            break;
        default:
            return; /* peer gone or I/O error: nothing more to say */
        }
    }
    conn_flush(&s->conn, write_deadline());
}

static void format_client(struct session *s)
{
    const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], s->client, sizeof s->client);
        else
            inet_ntop(AF_INET6, a, s->client, sizeof s->client);
    } else if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, s->client,
                  sizeof s->client);
    } else {
        snprintf(s->client, sizeof s->client, "unknown");
    }
}

/* session_init — a session in s (zeroed here) for the accepted
 * connection; -1 without memory for its input buffer. */
static int session_init(struct session *s, const struct session_start *start)
{
    memset(s, 0, sizeof *s);
    if (conn_init(&s->conn, start->fd, SMTP_AUTH_LINE_MAX_BYTES) < 0)
        return -1;
    s->peer = start->peer;
    s->listener = start->listener;
    s->implicit_tls = start->implicit_tls;
    s->deadline = util_now_ms() + config->session_timeout_ms;
    uint8_t r[5];
    crypto_random(r, sizeof r);
    snprintf(s->id, sizeof s->id, "%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4]);
    format_client(s);
    s->lf.session = s->id;
    s->lf.client = s->client;
    return 0;
}

void session_run(const struct session_start *start)
{
    /* on the session thread's stack (6 KB of LISTENER_STACK_BYTES): a
     * calloc of it per connection was an mmap and a munmap each */
    struct session storage, *s = &storage;
    if (session_init(s, start) < 0) {
        close(start->fd);
        return;
    }
    STATS_INC(sessions_total[s->listener]);
    STATS_INC(sessions_open[s->listener]);
    log_info("connect", &s->lf, "%s session", stats_listener_name(s->listener));
    if (s->implicit_tls) {
        STATS_INC(tls_handshakes_total[s->listener]);
        if (conn_tls_server(&s->conn, handshake_deadline(s)) != CONN_OK) {
            STATS_INC(tls_failures_total[s->listener]);
            log_warn("tls", &s->lf, "handshake failed: %s", s->conn.tls_error);
            goto out;
        }
        s->tls = true;
        snprintf(s->tls_info, sizeof s->tls_info, "%s with cipher %s", tls_version(s->conn.tls),
                 tls_cipher(s->conn.tls));
        log_info("tls", &s->lf, "%s", s->tls_info);
    }
    reply(s, 220, NULL, "%s ESMTP mrs", config->hostname);
    session_loop(s);
out:
    reset_transaction(s);
    log_info("disconnect", &s->lf, "session ended");
    STATS_DEC(sessions_open[s->listener]);
    if (s->conn.tls)
        tls_close_notify(s->conn.tls);
    conn_close(&s->conn);
}
