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
#include "idna.h"
#include "spool.h"
#include "stats.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* remote_host — "mx.example.org" out of "mx.example.org[192.0.2.1]:25". */
static int remote_host_len(const char *remote)
{
    const char *b = strchr(remote, '[');
    return (int)(b ? (size_t)(b - remote) : strlen(remote));
}

static void human_part(struct sb *b, const struct spool_message *m, const char *arrived)
{
    char life[32];
    int64_t h = config->queue_lifetime_ms / 3600000;
    if (h >= 24 && h % 24 == 0)
        snprintf(life, sizeof life, "%lld day(s)", (long long)(h / 24));
    else
        snprintf(life, sizeof life, "%lld minute(s)", (long long)(config->queue_lifetime_ms / 60000));
    sb_printf(b, "This is the mail delivery system at %s.\r\n\r\n", config->hostname);
    sb_printf(b, "Your message could not be delivered to the recipient(s) below.\r\n"
                 "It was received on %s with queue id %s.\r\n\r\n", arrived, m->id);
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const struct spool_rcpt *r = &m->rcpts[i];
        if (r->status != SPOOL_FAILED)
            continue;
        sb_printf(b, "<%s>:\r\n", r->addr);
        if (r->reply[0] == '4') /* only then: a line of spaces alone is noise (and trailing whitespace) */
            sb_printf(b, "    still failing after %s\r\n", life);
        sb_printf(b, "    %s%s%.*s%s\r\n\r\n", r->reply[0] ? r->reply : "no delivery attempt succeeded",
                  r->remote[0] ? " (from " : "", remote_host_len(r->remote), r->remote, r->remote[0] ? ")" : "");
    }
    sb_printf(b, "The header section of your message is attached.\r\n");
}

static void status_part(struct sb *b, const struct spool_message *m, const char *arrived)
{
    char status[BOUNCE_STATUS_BYTES], when[64];
    sb_printf(b, "Reporting-MTA: dns; %s\r\nX-Mrs-Queue-ID: %s\r\nArrival-Date: %s\r\n", config->hostname, m->id,
              arrived);
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const struct spool_rcpt *r = &m->rcpts[i];
        if (r->status != SPOOL_FAILED)
            continue;
        bounce_status(r->reply, status);
        sb_printf(b, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n", r->addr, status);
        if (r->remote[0])
            sb_printf(b, "Remote-MTA: dns; %.*s\r\nDiagnostic-Code: smtp; %s\r\n", remote_host_len(r->remote),
                      r->remote, r->reply);
        else if (r->reply[0])
            sb_printf(b, "Diagnostic-Code: X-mrs; %s\r\n", r->reply);
        if (r->when_ms > 0) {
            util_rfc5322_date(r->when_ms / 1000, when, sizeof when);
            sb_printf(b, "Last-Attempt-Date: %s\r\n", when);
        }
    }
}

/* quote_len — how much of the original header section to quote: at most
 * BOUNCE_HEADERS_MAX_BYTES, cut after the last CRLF, so that neither the
 * cap nor a section read short ends it with a partial line or between CR
 * and LF (a bare CR, RFC 5322 §2.3). */
static size_t quote_len(const char *h, size_t len)
{
    if (len > BOUNCE_HEADERS_MAX_BYTES)
        len = BOUNCE_HEADERS_MAX_BYTES; /* the inbound side caps them lower anyway */
    while (len >= 2 && !(h[len - 2] == '\r' && h[len - 1] == '\n'))
        len--;
    return len >= 2 ? len : 0;
}

char *bounce_format(const struct spool_message *m, const char *headers, size_t headers_len, const char *id,
                    int64_t now_ms, size_t *len, bool *eightbit)
{
    struct sb b = {0};
    char date[64], arrived[64], boundary[64];
    util_rfc5322_date(now_ms / 1000, date, sizeof date);
    util_rfc5322_date(m->received_ms / 1000, arrived, sizeof arrived);
    snprintf(boundary, sizeof boundary, "%s/%s", id, "mrs-dsn");
    headers_len = quote_len(headers, headers_len);
    *eightbit = false;
    for (size_t i = 0; i < headers_len; i++)
        *eightbit |= (unsigned char)headers[i] >= 0x80;
    sb_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n", config->hostname, m->from);
    sb_printf(&b, "Subject: Undelivered Mail Returned to Sender\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n", date, id,
              config->hostname);
    sb_printf(&b, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n"
                  "This is a MIME-encapsulated message.\r\n\r\n", boundary);
    sb_printf(&b, "--%s\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
              boundary);
    human_part(&b, m, arrived);
    sb_printf(&b, "\r\n--%s\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n",
              boundary);
    status_part(&b, m, arrived);
    sb_printf(&b, "\r\n--%s\r\nContent-Description: Undelivered message headers\r\n"
                  "Content-Type: text/rfc822-headers%s\r\n\r\n", boundary,
              *eightbit ? "\r\nContent-Transfer-Encoding: 8bit" : "");
    sb_put(&b, headers, headers_len); /* whole lines: it ends with CRLF or is empty */
    sb_printf(&b, "\r\n--%s--\r\n", boundary);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

int bounce_send(const struct spool_message *m, const char *headers, size_t headers_len, char id_out[QUEUE_ID_BYTES])
{
    size_t len;
    bool eightbit;
    queue_new_id(id_out);
    int64_t now = util_wall_ms();
    char *text = bounce_format(m, headers, headers_len, id_out, now, &len, &eightbit);
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
        STATS_INC(bounces_total);
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
        rc = failed ? bounce_send(&m, headers, headers_len, id_out) : 1;
    }
    free(headers);
    spool_free(&m);
    return rc;
}
