/*
 * session_data — the message reader of the inbound session (see
 * session_int.h): DATA's dot decoder and BDAT's chunks (RFC 3030) feed the
 * same header processing (Received:, Message-ID:, Date:, the From: check,
 * DKIM signing), the same spool writer and the same verdict, so a message
 * is accepted or refused the same way whichever command carried it.
 */
#include "session_int.h"

#include "config.h"
#include "dkim_sign.h"
#include "idna.h"
#include "policy.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

static void refuse(struct session *s, enum stats_refusal why)
{
    STATS_INC(messages_refused_total[why]);
}

/* The DATA reader: the bytes after 354 go through the smtp_dot decoder; the
 * header section is held in memory (bounded) until its end so the relay can
 * add Received:, Message-ID: and Date: and check From:, then everything is
 * streamed to the spool.  The data is always read to its real end, even when
 * the message is already refused, so the session stays in sync.
 *
 * With DKIM keys (SPEC §8.3) the head (our prefix and the client's header
 * section) stays in memory until the message is accepted: the body streams
 * to the spool behind room reserved for the head and the signatures, which
 * cover the whole body, and queue_fill() writes them there before the
 * commit (docs/spool.md).  The body is hashed as it streams. */
/* make_prefix — our trace and missing fields, before the client's headers
 * (RFC 5321 §4.4: Received at the top), into d->prefix. */
static void make_prefix(struct session *s, struct data_rx *d)
{
    char date[64], *buf = d->prefix;
    size_t cap = SESSION_PREFIX_MAX_BYTES;
    util_rfc5322_date(util_wall_ms() / 1000, date, sizeof date);
    /* RFC 5321 §4.4; "for" only with a single recipient, so a Bcc list is
     * never revealed to the others */
    bool one = s->rcpt_count == 1;
    int n = snprintf(buf, cap,
                     "Received: from %s ([%s])\r\n\tby %s (mrs) with %s id %s\r\n"
                     "\t(%s)\r\n\t(authenticated user %s)%s%s%s; %s\r\n",
                     s->helo[0] ? s->helo : "unknown", s->client, config->hostname,
                     s->from.smtputf8 ? "UTF8SMTPSA" : "ESMTPSA", d->qid, /* RFC 6531 §4.3 */
                     s->tls_info, s->user, one ? "\r\n\tfor <" : "", one ? s->rcpts[0] : "",
                     one ? ">" : "", date);
    if (n < 0 || (size_t)n >= cap)
        n = 0;
    size_t len = (size_t)n;
    if (!smtp_header_count(d->hdr, d->hdr_block, "Message-ID:")) {
        n = snprintf(buf + len, cap - len, "Message-ID: <%s@%s>\r\n", d->qid, config->hostname);
        len += n > 0 && (size_t)n < cap - len ? (size_t)n : 0;
    }
    if (!smtp_header_count(d->hdr, d->hdr_block, "Date:")) {
        n = snprintf(buf + len, cap - len, "Date: %s\r\n", date);
        len += n > 0 && (size_t)n < cap - len ? (size_t)n : 0;
    }
    d->prefix_len = len;
}

static void end_headers(struct session *s, struct data_rx *d, size_t block)
{
    d->in_body = true;
    d->hdr_block = block;
    make_prefix(s, d);
    if (d->dkim) {
        /* the head goes in at commit, behind the signatures: reserve its
         * room (what the header buffer holds, body bytes included) */
        size_t room = dkim_sign_head(d->dkim, d->prefix, d->prefix_len, d->hdr, block);
        if (d->q && queue_reserve(d->q, QUEUE_RESERVE_MIN + room + d->prefix_len + d->hdr_len) < 0)
            d->write_failed = true;
        size_t body = block + 2 <= d->hdr_len ? block + 2 : d->hdr_len; /* after the empty line */
        dkim_sign_body(d->dkim, d->hdr + body, d->hdr_len - body);
        return;
    }
    if (d->q && (queue_write(d->q, d->prefix, d->prefix_len) < 0 || queue_write(d->q, d->hdr, d->hdr_len) < 0))
        d->write_failed = true;
}

/* session_data_take — decoded message bytes: into the header buffer until the empty
 * line, then straight to the spool. */
void session_data_take(struct session *s, struct data_rx *d, const char *p, size_t n)
{
    d->size += (int64_t)n;
    if (d->size > config->max_message_bytes && !d->oversize) {
        d->oversize = true;
        queue_abort(d->q); /* keep reading to the end, but store nothing */
        d->q = NULL;
    }
    if (d->oversize || d->hdr_too_big)
        return;
    if (d->in_body) {
        if (d->q && queue_write(d->q, p, n) < 0)
            d->write_failed = true;
        if (d->dkim)
            dkim_sign_body(d->dkim, p, n);
        return;
    }
    if (d->hdr_len + n > SESSION_HEADER_MAX_BYTES) {
        d->hdr_too_big = true;
        return;
    }
    if (d->hdr_len + n > d->hdr_cap) {
        size_t cap = d->hdr_cap * 2;
        while (cap < d->hdr_len + n)
            cap *= 2;
        char *h = realloc(d->hdr, cap);
        if (!h) {
            d->write_failed = true;
            return;
        }
        d->hdr = h;
        d->hdr_cap = cap;
    }
    size_t from = d->hdr_len > 3 ? d->hdr_len - 3 : 0;
    memcpy(d->hdr + d->hdr_len, p, n);
    d->hdr_len += n;
    if (d->hdr_len >= 2 && d->hdr[0] == '\r' && d->hdr[1] == '\n') {
        end_headers(s, d, 0); /* no header section at all */
        return;
    }
    for (size_t i = from; i + 4 <= d->hdr_len; i++) {
        if (memcmp(d->hdr + i, "\r\n\r\n", 4) == 0) {
            end_headers(s, d, i + 2);
            return;
        }
    }
}

/* min_rate_ok — MRS_DATA_MIN_RATE over the bytes read since start. */
static bool min_rate_ok(struct session *s, int64_t start, int64_t bytes)
{
    int64_t grace = config->idle_timeout_ms < 30000 ? config->idle_timeout_ms : 30000;
    int64_t elapsed = util_now_ms() - start;
    if (config->data_min_rate <= 0 || elapsed <= grace || bytes * 1000 / elapsed >= config->data_min_rate)
        return true;
    session_reply(s, 421, "4.4.2", "%s Error: data arriving too slowly (under %lld bytes/s)", config->hostname,
                  (long long)config->data_min_rate);
    log_warn("data", &s->lf, "closed: %lld bytes in %lld ms", (long long)bytes, (long long)elapsed);
    return false;
}

bool session_data_receive(struct session *s, struct data_rx *d)
{
    int64_t start = util_now_ms();
    while (!d->dot.done) {
        const char *in;
        size_t got, used, out_len;
        int64_t deadline = util_now_ms() + config->idle_timeout_ms;
        enum conn_status st = conn_peek(&s->conn, deadline < s->deadline ? deadline : s->deadline,
                                        &in, &got);
        if (st == CONN_TIMEOUT) {
            session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded during DATA", config->hostname);
            return false;
        }
        if (st != CONN_OK)
            return false;
        /* the decoder stops right after the final dot: what follows stays
         * buffered for the next (pipelined) command */
        used = smtp_dot_feed(&d->dot, in, got, d->out, &out_len);
        conn_consume(&s->conn, used);
        session_data_take(s, d, d->out, out_len);
        if (!d->dot.done && !min_rate_ok(s, start, d->size))
            return false;
    }
    return true;
}

bool session_data_chunk(struct session *s, struct data_rx *d, int64_t n)
{
    int64_t start = util_now_ms(), read = 0;
    while (n > 0) {
        const char *in;
        size_t got;
        int64_t deadline = util_now_ms() + config->idle_timeout_ms;
        enum conn_status st = conn_peek(&s->conn, deadline < s->deadline ? deadline : s->deadline,
                                        &in, &got);
        if (st == CONN_TIMEOUT) {
            session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded during BDAT", config->hostname);
            return false;
        }
        if (st != CONN_OK)
            return false;
        /* exactly the chunk: what follows it is the next command */
        size_t k = (int64_t)got < n ? got : (size_t)n;
        if (d) {
            smtp_chunk_scan(&d->dot, in, k);
            session_data_take(s, d, in, k);
        }
        conn_consume(&s->conn, k);
        n -= (int64_t)k;
        read += (int64_t)k;
        if (n > 0 && !min_rate_ok(s, start, read))
            return false;
    }
    return true;
}

void session_data_free(struct data_rx *d)
{
    if (d->q)
        queue_abort(d->q);
    dkim_sign_free(d->dkim);
    bufpool_put(&session_out_pool, d->out);
    if (d->hdr_cap == SESSION_HDR_START_BYTES)
        bufpool_put(&session_hdr_pool, d->hdr);
    else
        free(d->hdr);
    bufpool_put(&session_prefix_pool, d->prefix);
}

/* sign_head — the DKIM signatures, our prefix and the client's header
 * buffer into the room reserved for them.  -1 only when the spool write
 * fails: DKIM itself never refuses a message. */
/* may_sign_as — whether this session may get a signature in domain's
 * name: never the operator's key domain (or below it), else the domain
 * must authorize the user as a sender domain does (the MAIL FROM domain
 * already did) — whether or not MRS_CHECK_HEADER_FROM checked From:. */
static const char *may_sign_as(struct session *s, const char *domain)
{
    char from_domain[POLICY_DOMAIN_MAX_BYTES];
    size_t dl = strlen(domain), kl = strlen(config->dkim_domain);
    if (kl && (util_ieq(domain, dl, config->dkim_domain) ||
               (dl > kl && domain[dl - kl - 1] == '.' && util_ieq(domain + dl - kl, kl, config->dkim_domain))))
        return "the operator's DKIM domain is never signed for a customer";
    if (policy_sender_domain(s->from.addr, from_domain, sizeof from_domain) == 0 &&
        util_ieq(domain, dl, from_domain))
        return NULL;
    struct policy_verdict v;
    policy_check_domain(s->user, domain, &v);
    return v.status == POLICY_PASS ? NULL : "the From: domain does not authorize this account";
}

static int sign_head(struct session *s, struct data_rx *d)
{
    char *sigs = NULL;
    struct log_fields lf = s->lf;
    lf.queue_id = d->qid;
    lf.from = s->from.addr;
    const char *domain = dkim_sign_domain(d->dkim), *why = domain ? may_sign_as(s, domain) : NULL;
    if (why)
        dkim_sign_refuse(d->dkim, why);
    size_t n = dkim_sign_finish(d->dkim, &lf, &sigs);
    struct iovec iov[3] = {{sigs, n}, {d->prefix, d->prefix_len}, {d->hdr, d->hdr_len}};
    int rc = queue_fill(d->q, iov, 3);
    free(sigs);
    return rc;
}

void session_data_verdict(struct session *s, struct data_rx *d)
{
    struct policy_verdict v;
    /* the envelope domain passed at MAIL FROM: the From: check need not ask again */
    char from_domain[POLICY_DOMAIN_MAX_BYTES];
    const char *passed = policy_sender_domain(s->from.addr, from_domain, sizeof from_domain) == 0 ? from_domain : NULL;
    if (!d->in_body && !d->hdr_too_big && !d->oversize)
        end_headers(s, d, d->hdr_len); /* a message without a body */
    if (d->dot.bare) {
        session_reply(s, 550, "5.6.0", "Message contains bare CR or LF characters; lines must end with CRLF");
        refuse(s, STATS_REFUSED_SMUGGLING);
        log_warn("data", &s->lf, "refused: bare CR or LF in message data");
    } else if (d->dot.nul) {
        session_reply(s, 550, "5.6.0", "Message contains NUL characters, which mail may not carry");
        refuse(s, STATS_REFUSED_SMUGGLING);
        log_warn("data", &s->lf, "refused: NUL byte in message data");
    } else if (d->oversize) {
        session_reply(s, 552, "5.3.4", "Message size exceeds the limit of %lld bytes", (long long)config->max_message_bytes);
        refuse(s, STATS_REFUSED_SIZE);
    } else if (d->hdr_too_big) {
        session_reply(s, 552, "5.3.4", "Header section too large (over %d bytes)", SESSION_HEADER_MAX_BYTES);
        refuse(s, STATS_REFUSED_SIZE);
    } else if (d->write_failed || !d->q) {
        session_reply(s, 451, "4.3.0", "Cannot store the message now; try again later");
        refuse(s, STATS_REFUSED_SPOOL);
    } else if (smtp_header_count(d->hdr, d->hdr_block, "Received:") > SESSION_MAX_RECEIVED_HEADERS) {
        session_reply(s, 554, "5.4.6", "Too many Received headers: mail loop detected");
        refuse(s, STATS_REFUSED_SYNTAX);
    } else if (s->from.smtputf8 && !idna_utf8_valid(d->hdr, d->hdr_block)) {
        /* RFC 6532 §3.2: with SMTPUTF8 the header section is UTF-8; a
         * malformed one would reach a next hop that trusts the flag */
        session_reply(s, 550, "5.6.7", "Message header is not valid UTF-8");
        refuse(s, STATS_REFUSED_SYNTAX);
    } else if (config->check_header_from &&
               (policy_check_header_from(s->user, d->hdr, d->hdr_block, passed, &v), v.status != POLICY_PASS)) {
        session_reply(s, v.code, v.enhanced, "%s", v.text);
        refuse(s, v.status == POLICY_TEMPFAIL ? STATS_REFUSED_DNS_TEMP : STATS_REFUSED_HEADER_FROM);
    } else {
        if (d->dkim && sign_head(s, d) < 0) {
            session_reply(s, 451, "4.3.0", "Cannot store the message now; try again later");
            refuse(s, STATS_REFUSED_SPOOL);
            return;
        }
        struct queue_msg *q = d->q;
        d->q = NULL;
        if (queue_commit(q) != 0) {
            session_reply(s, 451, "4.3.0", "Cannot store the message now; try again later");
            refuse(s, STATS_REFUSED_SPOOL);
            return;
        }
        STATS_INC(messages_accepted_total);
        STATS_ADD(message_bytes_accepted_total, d->size);
        auth_rate_count(s->user);
        struct log_fields lf = s->lf;
        lf.queue_id = d->qid;
        lf.from = s->from.addr;
        lf.rcpts = (const char *const *)s->rcpts;
        lf.rcpt_count = s->rcpt_count;
        lf.result = "queued";
        log_info("accepted", &lf, "%zu recipient(s), %lld bytes", s->rcpt_count, (long long)d->size);
        session_reply(s, 250, "2.0.0", "Ok: queued as %s", d->qid);
    }
}
