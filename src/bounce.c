/*
 * bounce — building and submitting DSNs (see bounce.h).
 *
 * The text is built in one heap buffer with a hard maximum (a tiny string
 * builder whose failure is sticky), then written to the spool in one go.
 * Every value that came from the network (replies, addresses) is already
 * sanitized to printable ASCII in the state; the quoted original headers are
 * the bytes the relay accepted (CRLF lines, no bare CR or LF), quoted in
 * whole lines only.  Reading a damaged message for its bounce is
 * spool_salvage's.
 */
#include "bounce.h"

#include "config.h"
#include "dsn.h"
#include "idna.h"
#include "spool.h"
#include "stats.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sb {
    char *p;
    size_t len, cap;
    bool failed;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n > BOUNCE_MAX_BYTES - b->len) {
        b->failed = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sb *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        b->failed = true;
    else
        sb_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void bounce_status(const char *reply, char out[BOUNCE_STATUS_BYTES])
{
    size_t i = 0;
    int dots = 0, digits = 0;
    const char *p = reply;
    if (!reply[0]) {
        snprintf(out, BOUNCE_STATUS_BYTES, "4.4.7");
        return;
    }
    while (*p >= '0' && *p <= '9')
        p++;
    while (*p == ' ')
        p++;
    /* class "." subject "." detail, each 1–3 digits (RFC 3463 §2) */
    for (i = 0; p[i] && p[i] != ' ' && i < BOUNCE_STATUS_BYTES - 1; i++) {
        if (p[i] == '.' && digits > 0 && dots < 2)
            dots++, digits = 0;
        else if (p[i] >= '0' && p[i] <= '9' && digits < 3)
            digits++;
        else
            break;
    }
    bool ok = dots == 2 && digits > 0 && (p[i] == ' ' || p[i] == '\0') && (p[0] == '2' || p[0] == '4' || p[0] == '5');
    if (ok && p[0] == reply[0])
        snprintf(out, BOUNCE_STATUS_BYTES, "%.*s", (int)i, p);
    else
        snprintf(out, BOUNCE_STATUS_BYTES, "%c.0.0", reply[0] == '2' || reply[0] == '4' ? reply[0] : '5');
}

/* ---- which recipients a report lists ------------------------------------- */

const char *bounce_action(const struct spool_rcpt *r, enum bounce_kind kind)
{
    bool absent = r->notify == 0;
    if (kind == BOUNCE_DELAY)
        return (r->status == SPOOL_DEFERRED || r->status == SPOOL_PENDING) && (absent || (r->notify & DSN_NOTIFY_DELAY))
                   ? "delayed" : NULL;
    if (r->status == SPOOL_FAILED && (absent || (r->notify & DSN_NOTIFY_FAILURE)))
        return "failed";
    if (r->status == SPOOL_DELIVERED && r->relayed && (r->notify & DSN_NOTIFY_SUCCESS))
        return "relayed"; /* RFC 3461 §5.2.2: the next hop does not offer DSN, so we report */
    return NULL;
}

/* count_action — how many recipients of m the report lists as action. */
static size_t count_action(const struct spool_message *m, enum bounce_kind kind, const char *action)
{
    size_t n = 0;
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const char *a = bounce_action(&m->rcpts[i], kind);
        n += a && !strcmp(a, action);
    }
    return n;
}

int64_t bounce_delay_due(const struct spool_message *m)
{
    if (config->delay_warning_ms <= 0 || !m->from[0] || m->delay_id[0] || !count_action(m, BOUNCE_DELAY, "delayed"))
        return 0;
    return m->received_ms + config->delay_warning_ms;
}

/* ---- the parts -------------------------------------------------------------- */

/* remote_host — "mx.example.org" out of "mx.example.org[192.0.2.1]:25". */
static int remote_host_len(const char *remote)
{
    const char *b = strchr(remote, '[');
    return (int)(b ? (size_t)(b - remote) : strlen(remote));
}

static void human_rcpt(struct sb *b, const struct spool_rcpt *r, const char *life)
{
    sb_printf(b, "<%s>:\r\n", r->addr);
    if (r->reply[0] == '4' && r->status == SPOOL_FAILED) /* only then: a line of spaces alone is noise */
        sb_printf(b, "    still failing after %s\r\n", life);
    sb_printf(b, "    %s%s%.*s%s\r\n\r\n", r->reply[0] ? r->reply : "no delivery attempt succeeded",
              r->remote[0] ? " (from " : "", remote_host_len(r->remote), r->remote, r->remote[0] ? ")" : "");
}

static void human_part(struct sb *b, const struct spool_message *m, enum bounce_kind kind, const char *arrived,
                       bool full)
{
    static const struct {
        const char *action, *text;
    } groups[] = {
        {"failed", "Your message could not be delivered to the recipient(s) below.\r\n"},
        {"delayed", "Your message could not be delivered yet to the recipient(s) below.\r\n"},
        {"relayed", "Your message was handed to the server of the recipient(s) below, which does not\r\n"
                    "send delivery notifications itself: this is the last report you get for them.\r\n"},
    };
    char life[32], until[64];
    int64_t h = config->queue_lifetime_ms / 3600000;
    if (h >= 24 && h % 24 == 0)
        snprintf(life, sizeof life, "%lld day(s)", (long long)(h / 24));
    else
        snprintf(life, sizeof life, "%lld minute(s)", (long long)(config->queue_lifetime_ms / 60000));
    util_rfc5322_date((m->received_ms + config->queue_lifetime_ms) / 1000, until, sizeof until);
    sb_printf(b, "This is the mail delivery system at %s.\r\n\r\n", config->hostname);
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        if (!count_action(m, kind, groups[g].action))
            continue;
        sb_put(b, groups[g].text, strlen(groups[g].text));
        if (!strcmp(groups[g].action, "delayed"))
            sb_printf(b, "It is still being tried until %s;\r\nyou do not need to send it again.\r\n", until);
        sb_printf(b, "It was received on %s with queue id %s.\r\n\r\n", arrived, m->id);
        for (size_t i = 0; i < m->rcpt_count; i++) {
            const char *a = bounce_action(&m->rcpts[i], kind);
            if (a && !strcmp(a, groups[g].action))
                human_rcpt(b, &m->rcpts[i], life);
        }
    }
    sb_printf(b, "%s\r\n", full ? "Your message is attached." : "The header section of your message is attached.");
}

/* status_rcpt — one recipient's fields of the message/delivery-status part. */
static void status_rcpt(struct sb *b, const struct spool_message *m, const struct spool_rcpt *r, const char *action,
                        int64_t now_ms)
{
    char status[BOUNCE_STATUS_BYTES], when[64], orcpt[DSN_ORCPT_XTEXT_MAX_BYTES + 1];
    bool delayed = !strcmp(action, "delayed");
    if (delayed && !r->reply[0])
        snprintf(status, sizeof status, "4.0.0");
    else
        bounce_status(r->reply, status);
    sb_put(b, "\r\n", 2);
    if (r->orcpt && dsn_parse_orcpt(r->orcpt, strlen(r->orcpt), orcpt, sizeof orcpt, NULL) == 0)
        sb_printf(b, "Original-Recipient: %s\r\n", orcpt); /* decoded: printable ASCII only */
    sb_printf(b, "Final-Recipient: rfc822; %s\r\nAction: %s\r\nStatus: %s\r\n", r->addr, action, status);
    if (r->remote[0])
        sb_printf(b, "Remote-MTA: dns; %.*s\r\nDiagnostic-Code: smtp; %s\r\n", remote_host_len(r->remote),
                  r->remote, r->reply);
    else if (r->reply[0])
        sb_printf(b, "Diagnostic-Code: X-mrs; %s\r\n", r->reply);
    int64_t last = delayed ? now_ms : r->when_ms; /* a deferred one's when_ms is its next attempt */
    if (last > 0) {
        util_rfc5322_date(last / 1000, when, sizeof when);
        sb_printf(b, "Last-Attempt-Date: %s\r\n", when);
    }
    if (delayed) {
        util_rfc5322_date((m->received_ms + config->queue_lifetime_ms) / 1000, when, sizeof when);
        sb_printf(b, "Will-Retry-Until: %s\r\n", when);
    }
}

static void status_part(struct sb *b, const struct spool_message *m, enum bounce_kind kind, const char *arrived,
                        int64_t now_ms)
{
    char envid[DSN_ENVID_MAX_BYTES + 1];
    size_t n;
    sb_printf(b, "Reporting-MTA: dns; %s\r\n", config->hostname);
    if (m->envid && dsn_xtext_decode(m->envid, strlen(m->envid), envid, sizeof envid, &n) == 0)
        sb_printf(b, "Original-Envelope-Id: %s\r\n", envid);
    sb_printf(b, "X-Mrs-Queue-ID: %s\r\nArrival-Date: %s\r\n", m->id, arrived);
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const char *a = bounce_action(&m->rcpts[i], kind);
        if (a)
            status_rcpt(b, m, &m->rcpts[i], a, now_ms);
    }
}

/* quote_len — how much of the original header section to quote: at most
 * BOUNCE_HEADERS_MAX_BYTES, cut after the last CRLF, so that neither the
 * cap nor a section read short ends it with a partial line or between CR
 * and LF (a bare CR, RFC 5322 §2.3). */
static size_t quote_len_of(const char *h, size_t len)
{
    if (len > BOUNCE_HEADERS_MAX_BYTES)
        len = BOUNCE_HEADERS_MAX_BYTES; /* the inbound side caps them lower anyway */
    while (len >= 2 && !(h[len - 2] == '\r' && h[len - 1] == '\n'))
        len--;
    return len >= 2 ? len : 0;
}

/* subject — by what the report says: a failure first, then a delay. */
static const char *subject(const struct spool_message *m, enum bounce_kind kind)
{
    if (kind == BOUNCE_DELAY)
        return "Delayed Mail (still being retried)";
    return count_action(m, kind, "failed") ? "Undelivered Mail Returned to Sender" : "Successful Mail Delivery Report";
}

char *bounce_report_format(const struct spool_message *m, enum bounce_kind kind, const char *quote, size_t quote_len,
                           bool full, const char *id, int64_t now_ms, size_t *len, bool *eightbit)
{
    struct sb b = {0};
    char date[64], arrived[64], boundary[64];
    util_rfc5322_date(now_ms / 1000, date, sizeof date);
    util_rfc5322_date(m->received_ms / 1000, arrived, sizeof arrived);
    snprintf(boundary, sizeof boundary, "%s/%s", id, "mrs-dsn");
    if (!full)
        quote_len = quote_len_of(quote, quote_len);
    *eightbit = false;
    for (size_t i = 0; i < quote_len; i++)
        *eightbit |= (unsigned char)quote[i] >= 0x80;
    sb_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n", config->hostname, m->from);
    sb_printf(&b, "Subject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n", subject(m, kind), date, id, config->hostname);
    sb_printf(&b, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n"
                  "This is a MIME-encapsulated message.\r\n\r\n", boundary);
    sb_printf(&b, "--%s\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
              boundary);
    human_part(&b, m, kind, arrived, full);
    sb_printf(&b, "\r\n--%s\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n",
              boundary);
    status_part(&b, m, kind, arrived, now_ms);
    sb_printf(&b, "\r\n--%s\r\nContent-Description: %s\r\nContent-Type: %s%s\r\n\r\n", boundary,
              full ? "Undelivered message" : "Message headers", full ? "message/rfc822" : "text/rfc822-headers",
              *eightbit ? "\r\nContent-Transfer-Encoding: 8bit" : "");
    sb_put(&b, quote, quote_len); /* whole lines: headers end with CRLF or are empty */
    if (full && quote_len >= 2 && memcmp(quote + quote_len - 2, "\r\n", 2) != 0)
        sb_put(&b, "\r\n", 2);
    sb_printf(&b, "\r\n--%s--\r\n", boundary);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

char *bounce_format(const struct spool_message *m, const char *headers, size_t headers_len, const char *id,
                    int64_t now_ms, size_t *len, bool *eightbit)
{
    return bounce_report_format(m, BOUNCE_FINAL, headers, headers_len, false, id, now_ms, len, eightbit);
}

/* read_full — RET=FULL on a failure report: the whole message from the
 * spool file (m->fd), when it is there and within BOUNCE_FULL_MAX_BYTES;
 * NULL otherwise (the headers are returned instead). */
static char *read_full(const struct spool_message *m, enum bounce_kind kind, size_t *len)
{
    int64_t size = m->file_size - m->body_offset;
    if (kind != BOUNCE_FINAL || m->ret != DSN_RET_FULL || m->fd < 0 || size <= 0 || size > BOUNCE_FULL_MAX_BYTES ||
        !count_action(m, kind, "failed"))
        return NULL;
    char *buf = malloc((size_t)size);
    size_t got = 0;
    while (buf && got < (size_t)size) {
        ssize_t n = pread(m->fd, buf + got, (size_t)size - got, (off_t)(m->body_offset + (int64_t)got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            return NULL;
        }
        got += (size_t)n;
    }
    *len = got;
    return buf;
}

static void count_report(const struct spool_message *m, enum bounce_kind kind)
{
    static const char *const actions[STATS_DSN_ACTIONS] = {"failed", "delayed", "relayed"};
    STATS_INC(bounces_total);
    for (int a = 0; a < STATS_DSN_ACTIONS; a++)
        if (count_action(m, kind, actions[a]))
            STATS_INC(dsn_reports_total[a]);
}

int bounce_report(const struct spool_message *m, enum bounce_kind kind, const char *headers, size_t headers_len,
                  char id_out[QUEUE_ID_BYTES])
{
    size_t len, full_len = 0;
    bool eightbit;
    if (!m->from[0] || !(count_action(m, kind, "failed") + count_action(m, kind, "delayed") +
                         count_action(m, kind, "relayed")))
        return 1; /* the null sender, or NOTIFY asked for none of it */
    queue_new_id(id_out);
    int64_t now = util_wall_ms();
    char *full = read_full(m, kind, &full_len);
    char *text = full ? bounce_report_format(m, kind, full, full_len, true, id_out, now, &len, &eightbit)
                      : bounce_report_format(m, kind, headers, headers_len, false, id_out, now, &len, &eightbit);
    free(full);
    if (!text)
        return -1;
    const char *rcpt = m->from;
    struct queue_envelope env = {.user = "", .client = "", .helo = "", .from = "", .rcpts = &rcpt,
                                 .rcpt_count = 1, .eightbit = eightbit, .received_ms = now};
    env.smtputf8 = !idna_is_ascii(rcpt, strlen(rcpt)); /* a UTF-8 sender: RFC 6531 to reach it */
    struct queue_msg *q = queue_open(id_out, &env);
    int rc = -1;
    if (q) {
        queue_write(q, text, len); /* a write error sticks: the commit then fails */
        rc = queue_commit(q);
    }
    free(text);
    if (rc == 0)
        count_report(m, kind);
    return rc;
}

int bounce_quarantined(const char *id, char id_out[QUEUE_ID_BYTES])
{
    struct spool_message m;
    char *headers, why[SPOOL_REPLY_MAX_BYTES];
    size_t headers_len;
    int rc = 1;
    if (spool_salvage(id, &m, BOUNCE_HEADERS_MAX_BYTES, &headers, &headers_len) == 0) {
        snprintf(why, sizeof why, "550 5.3.0 the relay's spool copy of this message is damaged; it was set aside "
                 "as queue/%s.bad and not delivered", id);
        int64_t now = util_wall_ms();
        size_t failed = 0;
        for (size_t i = 0; i < m.rcpt_count; i++) {
            struct spool_rcpt *r = &m.rcpts[i];
            failed += r->status != SPOOL_DELIVERED;
            if (r->status == SPOOL_DELIVERED || r->status == SPOOL_FAILED)
                continue; /* a failed one keeps its own reply */
            r->status = SPOOL_FAILED;
            r->when_ms = now;
            spool_set_reply(r, "", why, strlen(why));
        }
        rc = failed ? bounce_report(&m, BOUNCE_FINAL, headers, headers_len, id_out) : 1;
    }
    free(headers);
    spool_free(&m);
    return rc;
}
