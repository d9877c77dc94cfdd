/* Unit tests of the pure parts of the queue and delivery: the spool's
 * envelope and state formats (parse, format, round trip, malformed input),
 * MX ordering, enhanced status extraction, the DSN text, back-off, the
 * Received counter, EHLO extension parsing and base64. */
#include "bounce.h"
#include "config.h"
#include "delivery.h"
#include "route.h"
#include "smtp_client.h"
#include "spool.h"
#include "unit.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define LIT(s) (s), (sizeof(s) - 1)

static const char envelope[] = "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1764172067123\n"
                               "user steve@mycorp.se\nclient 192.0.2.10\nhelo client.example\n"
                               "body 8bitmime\nfrom news@new.mycorp.se\nfuture-key whatever\n"
                               "rcpt alice@example.org\nrcpt \"b c\"@example.net\n\n"
                               "Received: x\r\n\r\nbody\r\n";

static void load_config(void)
{
    static bool done;
    char err[256];
    if (done)
        return;
    setenv("MRS_HOSTNAME", "mrs.test", 1);
    setenv("MRS_QUEUE_LIFETIME", "5d", 1);
    CHECK(config_load(err, sizeof err) == 0);
    done = true;
}

/* parse — a copy of text as an envelope into m (caller frees). */
static int parse(const char *text, size_t len, struct spool_message *m, char **buf, size_t *body)
{
    memset(m, 0, sizeof *m);
    *buf = malloc(len + 1);
    memcpy(*buf, text, len);
    (*buf)[len] = '\0';
    return spool_parse_envelope(*buf, len, m, body);
}

static void test_envelope_parses(void)
{
    struct spool_message m;
    char *buf;
    size_t body;
    CHECK(parse(LIT(envelope), &m, &buf, &body) == 0);
    CHECK_STR(m.id, "019ac3f1e2a7c0ffee12");
    CHECK(m.received_ms == 1764172067123LL);
    CHECK_STR(m.user, "steve@mycorp.se");
    CHECK_STR(m.from, "news@new.mycorp.se");
    CHECK(m.eightbit);
    CHECK(m.rcpt_count == 2);
    CHECK_STR(m.rcpts[1].addr, "\"b c\"@example.net");
    CHECK(m.rcpts[0].status == SPOOL_PENDING);
    CHECK(memcmp(envelope + body, "Received: x", 11) == 0);
    free(m.rcpts);
    free(buf);
}

static void test_envelope_null_sender(void)
{
    static const char e[] = "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nuser \nclient \nhelo \n"
                            "body 7bit\nfrom \nrcpt a@b.example\n\nx";
    struct spool_message m;
    char *buf;
    size_t body;
    CHECK(parse(LIT(e), &m, &buf, &body) == 0);
    CHECK_STR(m.from, "");
    CHECK(!m.eightbit);
    free(m.rcpts);
    free(buf);
}

static void test_envelope_malformed(void)
{
    static const char *const bad[] = {
        "MRS-SPOOL 2\nid 019ac3f1e2a7c0ffee12\nreceived 1\nfrom a@b\nrcpt c@d\n\n",      /* version */
        "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nfrom a@b\n\n",                /* no rcpt */
        "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nrcpt c@d\n\n",                /* no from */
        "MRS-SPOOL 1\nid 019AC3F1E2A7C0FFEE12\nreceived 1\nfrom a@b\nrcpt c@d\n\n",      /* id case */
        "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived x1\nfrom a@b\nrcpt c@d\n\n",     /* number */
        "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nfrom a@b\nrcpt c@d\n",        /* unfinished */
        "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nfrom a@b\nrcpt \n\n",         /* empty rcpt */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct spool_message m;
        char *buf;
        size_t body;
        if (parse(bad[i], strlen(bad[i]), &m, &buf, &body) == 0) {
            fprintf(stderr, "  accepted bad envelope %zu\n", i);
            CHECK(0);
        }
        CHECK(errno == EINVAL); /* a damaged file, not a failure that may pass */
        free(m.rcpts);
        free(buf);
    }
}

static void test_state_round_trip(void)
{
    struct spool_message m, n;
    char *buf, *buf2;
    size_t body;
    CHECK(parse(LIT(envelope), &m, &buf, &body) == 0);
    CHECK(parse(LIT(envelope), &n, &buf2, &body) == 0);
    m.attempts = 3;
    m.next_ms = 1764172999000LL;
    m.rcpts[0].status = SPOOL_DELIVERED;
    m.rcpts[0].when_ms = 1764172000000LL;
    spool_set_reply(&m.rcpts[0], "mx1.example.org[192.0.2.1]:25", LIT("250 2.0.0 Ok: queued as X"));
    m.rcpts[1].status = SPOOL_DEFERRED;
    m.rcpts[1].when_ms = m.next_ms;
    spool_set_reply(&m.rcpts[1], "", LIT("451 4.4.1 connect to mx: refused\r\nsecond line\x01"));
    CHECK(strchr(m.rcpts[1].reply, '\r') == NULL && strchr(m.rcpts[1].reply, '\n') == NULL);
    size_t cap = spool_state_max_bytes(&m);
    char *text = malloc(cap);
    size_t len = spool_format_state(&m, text, cap);
    CHECK(len > 0);
    CHECK(spool_format_state(&m, text, 20) == 0); /* too small: refused, not cut */
    len = spool_format_state(&m, text, cap);
    CHECK(spool_parse_state(text, len, &n) == 0);
    CHECK(n.has_state && n.attempts == 3 && n.next_ms == 1764172999000LL);
    CHECK(n.rcpts[0].status == SPOOL_DELIVERED && n.rcpts[0].when_ms == 1764172000000LL);
    CHECK_STR(n.rcpts[0].remote, "mx1.example.org[192.0.2.1]:25");
    CHECK_STR(n.rcpts[0].reply, "250 2.0.0 Ok: queued as X");
    CHECK(n.rcpts[1].status == SPOOL_DEFERRED);
    CHECK_STR(n.rcpts[1].remote, "");
    CHECK_STR(n.rcpts[1].reply, m.rcpts[1].reply);
    free(text);
    free(m.rcpts);
    free(n.rcpts);
    free(buf);
    free(buf2);
}

static void test_state_malformed(void)
{
    static const char *const bad[] = {
        "MRS-STATE 2\nattempts 1\n",
        "MRS-STATE 1\nrcpt 2 delivered 0 - -\n",         /* no such recipient */
        "MRS-STATE 1\nrcpt 0 sent 0 - -\n",              /* unknown status */
        "MRS-STATE 1\nrcpt 0 delivered x - -\n",
        "MRS-STATE 1\nrcpt 0 delivered 0\n",             /* fields missing */
        "MRS-STATE 1\nattempts -1\n",
        "MRS-STATE 1\nattempts 1",                       /* no final LF: cut short */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct spool_message m;
        char *buf;
        size_t body;
        CHECK(parse(LIT(envelope), &m, &buf, &body) == 0);
        if (spool_parse_state(bad[i], strlen(bad[i]), &m) == 0) {
            fprintf(stderr, "  accepted bad state %zu\n", i);
            CHECK(0);
        }
        free(m.rcpts);
        free(buf);
    }
}

static void test_ids(void)
{
    CHECK(spool_valid_id("019ac3f1e2a7c0ffee12"));
    CHECK(!spool_valid_id("019ac3f1e2a7c0ffee1"));
    CHECK(!spool_valid_id("019ac3f1e2a7c0ffee12.state"));
    CHECK(!spool_valid_id("019ac3f1e2a7c0ffee1g"));
    CHECK(spool_id_ms("019ac3f1e2a7c0ffee12") == 0x019ac3f1e2a7LL);
}

static void test_mx_order(void)
{
    struct dns_mx mx[] = {{20, "b.example"}, {10, "a1.example"}, {10, "a2.example"}, {30, "."}, {5, "first.example"}};
    uint32_t keys[] = {1, 9, 3, 0, 7};
    size_t order[8];
    size_t n = route_order_mx(mx, 5, keys, order, 8);
    CHECK(n == 4); /* "." is never an exchanger */
    CHECK(order[0] == 4 && order[1] == 2 && order[2] == 1 && order[3] == 0);
    keys[1] = 1; /* the random keys decide among equal preferences */
    n = route_order_mx(mx, 5, keys, order, 8);
    CHECK(order[1] == 1 && order[2] == 2);
    CHECK(route_order_mx(mx, 5, keys, order, 2) == 2); /* the cap */
    CHECK(route_order_mx(mx + 3, 1, keys, order, 8) == 0);
}

static void test_bounce_status(void)
{
    char s[BOUNCE_STATUS_BYTES];
    bounce_status("550 5.1.1 no such user", s);
    CHECK_STR(s, "5.1.1");
    bounce_status("451 4.7.1 greylisted", s);
    CHECK_STR(s, "4.7.1");
    bounce_status("556 5.1.10 null MX", s);
    CHECK_STR(s, "5.1.10");
    bounce_status("550 mailbox unavailable", s);
    CHECK_STR(s, "5.0.0");
    bounce_status("452 4.5.3.1 too many", s); /* not a status: four parts */
    CHECK_STR(s, "4.0.0");
    bounce_status("550 4.1.1 class mismatch", s);
    CHECK_STR(s, "5.0.0");
    bounce_status("", s);
    CHECK_STR(s, "4.4.7");
}

static void test_bounce_format(void)
{
    struct spool_message m;
    char *buf;
    size_t body, len;
    bool eightbit;
    load_config();
    CHECK(parse(LIT(envelope), &m, &buf, &body) == 0);
    m.rcpts[0].status = SPOOL_FAILED;
    spool_set_reply(&m.rcpts[0], "mx1.example.org[192.0.2.1]:25", LIT("550 5.1.1 no such user"));
    m.rcpts[1].status = SPOOL_DELIVERED;
    static const char hdrs[] = "Subject: hello \xc3\xa9\r\nFrom: news@new.mycorp.se\r\n";
    char *dsn = bounce_format(&m, LIT(hdrs), "019ac3f1e2a7c0ff0000", 1764172067123LL, &len, &eightbit);
    CHECK(dsn != NULL && len == strlen(dsn));
    CHECK(eightbit);
    CHECK(strstr(dsn, "To: <news@new.mycorp.se>\r\n") != NULL);
    CHECK(strstr(dsn, "multipart/report; report-type=delivery-status;") != NULL);
    CHECK(strstr(dsn, "Content-Type: message/delivery-status\r\n") != NULL);
    CHECK(strstr(dsn, "Content-Type: text/rfc822-headers") != NULL);
    CHECK(strstr(dsn, "Reporting-MTA: dns; mrs.test\r\n") != NULL);
    CHECK(strstr(dsn, "Final-Recipient: rfc822; alice@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n") != NULL);
    CHECK(strstr(dsn, "Remote-MTA: dns; mx1.example.org\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n") != NULL);
    CHECK(strstr(dsn, "b c") == NULL); /* the delivered recipient is not listed */
    CHECK(strstr(dsn, hdrs) != NULL);
    CHECK(strstr(dsn, "\r\n--019ac3f1e2a7c0ff0000/mrs-dsn--\r\n") != NULL);
    for (size_t i = 0; i < len; i++) /* CRLF only */
        if (dsn[i] == '\n' && (i == 0 || dsn[i - 1] != '\r'))
            CHECK(0);
    free(dsn);
    free(m.rcpts);
    free(buf);
}

static void test_backoff(void)
{
    const int64_t min = 60000, max = 3600000;
    CHECK(delivery_backoff_ms(2, min, max, 0x80000000u) == 2 * min); /* the middle of ±10 % */
    CHECK(delivery_backoff_ms(3, min, max, 0x80000000u) == 4 * min);
    CHECK(delivery_backoff_ms(3, min, max, 0) == 4 * min - 4 * min / 10);
    CHECK(delivery_backoff_ms(1, min, max, 0) == min);                 /* never below MRS_RETRY_MIN */
    CHECK(delivery_backoff_ms(1, min, max, 0xffffffffu) < min + min / 10);
    CHECK(delivery_backoff_ms(1, min, max, 0xffffffffu) > min + min / 11);
    CHECK(delivery_backoff_ms(100, min, max, 0) == max - max / 10);
    CHECK(delivery_backoff_ms(1000000, min, max, 0xffffffffu) <= max); /* never above MRS_RETRY_MAX */
    CHECK(delivery_backoff_ms(1000000, min, max, 0xffffffffu) > max - max / 1000);
    CHECK(delivery_backoff_ms(1, 1, 1, 0) == 1);
    CHECK(delivery_backoff_ms(7, 2000, 2000, 0xffffffffu) == 2000);
}

/* xorshift32: a fixed sequence, so a failure can be reproduced */
static uint32_t next_random(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Every gap stays within [MRS_RETRY_MIN, MRS_RETRY_MAX] for any attempt
 * count and random value, and the gaps at the maximum are still spread. */
static void test_backoff_within_bounds(void)
{
    static const int64_t pairs[][2] = {{60000, 3600000}, {1000, 2000}, {100, 100}, {1000, 1050},
                                       {100, 30LL * 86400000}, {30LL * 86400000, 30LL * 86400000}};
    uint32_t x = 2463534242u;
    int outside = 0;
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        int64_t min = pairs[p][0], max = pairs[p][1], at_max_lo = INT64_MAX, at_max_hi = 0;
        for (int attempts = 0; attempts <= 70; attempts++)
            for (int k = 0; k < 3000; k++) {
                uint32_t r = k == 0 ? 0 : k == 1 ? UINT32_MAX : next_random(&x);
                int64_t d = delivery_backoff_ms(attempts, min, max, r);
                outside += d < min || d > max;
                if (attempts == 70) {
                    at_max_lo = d < at_max_lo ? d : at_max_lo;
                    at_max_hi = d > at_max_hi ? d : at_max_hi;
                }
            }
        CHECK(at_max_hi == max || max - at_max_hi <= max / 1000 + 1);
        CHECK(max - max / 10 < min || at_max_lo <= max - max / 10 + max / 1000); /* spread below max */
    }
    CHECK(outside == 0);
}

/* the lines of the DSN's text/plain part (between its header and the
 * next boundary) */
static void check_text_part_lines(const char *dsn)
{
    const char *p = strstr(dsn, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    CHECK(p != NULL);
    if (!p)
        return;
    p += strlen("Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    const char *end = strstr(p, "\r\n--");
    CHECK(end != NULL);
    for (const char *line = p; end && line < end;) {
        const char *eol = strstr(line, "\r\n");
        size_t n = (size_t)(eol - line), blanks = 0;
        while (blanks < n && (line[blanks] == ' ' || line[blanks] == '\t'))
            blanks++;
        if (n > 0 && (blanks == n || line[n - 1] == ' ' || line[n - 1] == '\t')) {
            fprintf(stderr, "  whitespace-only or trailing-whitespace line: '%.*s'\n", (int)n, line);
            CHECK(0);
        }
        line = eol + 2;
    }
}

/* no bare CR or LF anywhere in the DSN */
static void check_crlf_only(const char *dsn, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (dsn[i] == '\n' && (i == 0 || dsn[i - 1] != '\r'))
            CHECK(0);
        if (dsn[i] == '\r' && (i + 1 == len || dsn[i + 1] != '\n')) {
            fprintf(stderr, "  bare CR at %zu\n", i);
            CHECK(0);
        }
    }
}

static void test_bounce_text_has_no_blank_lines_of_spaces(void)
{
    struct spool_message m;
    char *buf;
    size_t body, len;
    bool eightbit;
    load_config();
    CHECK(parse(LIT(envelope), &m, &buf, &body) == 0);
    m.rcpts[0].status = SPOOL_FAILED; /* a 5xx */
    spool_set_reply(&m.rcpts[0], "mx1.example.org[192.0.2.1]:25", LIT("550 5.1.1 no such user"));
    m.rcpts[1].status = SPOOL_FAILED; /* expired after 4xx, then one with no reply at all */
    spool_set_reply(&m.rcpts[1], "", LIT("451 4.7.1 greylisted"));
    char *dsn = bounce_format(&m, LIT("Subject: x\r\n"), "019ac3f1e2a7c0ff0000", 1764172067123LL, &len, &eightbit);
    CHECK(dsn != NULL);
    if (dsn) {
        check_text_part_lines(dsn);
        CHECK(strstr(dsn, "<alice@example.org>:\r\n    550 5.1.1 no such user (from mx1.example.org)\r\n") != NULL);
        CHECK(strstr(dsn, "    still failing after 5 day(s)\r\n    451 4.7.1 greylisted\r\n") != NULL);
    }
    free(dsn);
    spool_set_reply(&m.rcpts[1], "", LIT(""));
    dsn = bounce_format(&m, LIT(""), "019ac3f1e2a7c0ff0000", 1764172067123LL, &len, &eightbit);
    CHECK(dsn != NULL);
    if (dsn)
        check_text_part_lines(dsn);
    free(dsn);
    free(m.rcpts);
    free(buf);
}

/* long_headers — a header section of at least len bytes: a first line
 * sized so that one of the 72-byte lines after it has its CR at cr_at. */
static char *long_headers(size_t len, size_t cr_at, size_t *out_len)
{
    char *h = malloc(len + 200);
    size_t n = 0, first = (cr_at + 2) % 72 < 12 ? (cr_at + 2) % 72 + 72 : (cr_at + 2) % 72;
    for (size_t line = first; n < len || n <= cr_at + 1; line = 72) {
        memcpy(h + n, "X-Filler: ", 10);
        memset(h + n + 10, 'a', line - 12);
        memcpy(h + n + line - 2, "\r\n", 2);
        n += line;
    }
    *out_len = n;
    return h;
}

static void test_bounce_headers_cut_at_line_boundary(void)
{
    struct spool_message m;
    char *buf;
    size_t body, len, hlen;
    bool eightbit;
    load_config();
    CHECK(parse(LIT(envelope), &m, &buf, &body) == 0);
    m.rcpts[0].status = SPOOL_FAILED;
    spool_set_reply(&m.rcpts[0], "", LIT("550 5.1.1 no such user"));
    /* the 256 KiB cap falls between a CR and its LF */
    char *h = long_headers(BOUNCE_HEADERS_MAX_BYTES + 5000, BOUNCE_HEADERS_MAX_BYTES - 1, &hlen);
    CHECK(h[BOUNCE_HEADERS_MAX_BYTES - 1] == '\r' && h[BOUNCE_HEADERS_MAX_BYTES] == '\n');
    char *dsn = bounce_format(&m, h, hlen, "019ac3f1e2a7c0ff0000", 1764172067123LL, &len, &eightbit);
    CHECK(dsn != NULL);
    if (dsn) {
        check_crlf_only(dsn, len);
        const char *q = strstr(dsn, "Content-Type: text/rfc822-headers\r\n\r\n");
        CHECK(q && strstr(q, "aaaa\r\n\r\n--019ac3f1e2a7c0ff0000/mrs-dsn--\r\n") != NULL); /* whole lines */
        CHECK(len < BOUNCE_HEADERS_MAX_BYTES + 4096);
    }
    free(dsn);
    /* a section read short, ending inside a line and after a CR */
    static const char part[] = "Subject: one\r\nX-Cut: abc\r";
    dsn = bounce_format(&m, LIT(part), "019ac3f1e2a7c0ff0000", 1764172067123LL, &len, &eightbit);
    CHECK(dsn != NULL);
    if (dsn) {
        check_crlf_only(dsn, len);
        CHECK(strstr(dsn, "Subject: one\r\n\r\n--019ac3f1e2a7c0ff0000/mrs-dsn--") != NULL);
        CHECK(strstr(dsn, "X-Cut") == NULL);
    }
    free(dsn);
    free(h);
    free(m.rcpts);
    free(buf);
}

static void test_state_bounced_round_trip(void)
{
    struct spool_message m, n;
    char *buf, *buf2;
    size_t body;
    CHECK(parse(LIT(envelope), &m, &buf, &body) == 0);
    CHECK(parse(LIT(envelope), &n, &buf2, &body) == 0);
    m.rcpts[0].status = SPOOL_FAILED;
    m.rcpts[1].status = SPOOL_DELIVERED;
    memcpy(m.bounce_id, "019ac3f1e2a7c0ff0001", QUEUE_ID_BYTES);
    char text[4096];
    size_t len = spool_format_state(&m, text, sizeof text);
    CHECK(len > 0 && strstr(text, "\nbounced 019ac3f1e2a7c0ff0001\n") != NULL);
    CHECK(spool_parse_state(text, len, &n) == 0);
    CHECK_STR(n.bounce_id, "019ac3f1e2a7c0ff0001");
    static const char bad[] = "MRS-STATE 1\nbounced nothex\n";
    CHECK(spool_parse_state(LIT(bad), &n) < 0);
    m.bounce_id[0] = '\0';
    len = spool_format_state(&m, text, sizeof text);
    CHECK(len > 0 && strstr(text, "bounced") == NULL);
    free(m.rcpts);
    free(n.rcpts);
    free(buf);
    free(buf2);
}

/* salvage — spool_salvage_envelope over a copy of text. */
static int salvage(const char *text, size_t len, struct spool_message *m, char **buf, size_t *body)
{
    memset(m, 0, sizeof *m);
    *buf = malloc(len + 1);
    memcpy(*buf, text, len);
    (*buf)[len] = '\0';
    return spool_salvage_envelope(*buf, len, m, body);
}

static void test_salvage_envelope(void)
{
    static const char bad_received[] = "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived x1\nfrom a@b.example\n"
                                       "rcpt c@d.example\nrcpt <evil>@x\nrcpt caf\xc3\xa9@x\nrcpt e@f.example\n\n"
                                       "Subject: s\r\n";
    struct spool_message m;
    char *buf;
    size_t body;
    CHECK(parse(LIT(bad_received), &m, &buf, &body) < 0); /* what the salvage is for */
    free(m.rcpts);
    free(buf);
    CHECK(salvage(LIT(bad_received), &m, &buf, &body) == 0);
    CHECK_STR(m.from, "a@b.example");
    CHECK(m.rcpt_count == 2); /* the lines that do not look like addresses are left out */
    CHECK_STR(m.rcpts[0].addr, "c@d.example");
    CHECK_STR(m.rcpts[1].addr, "e@f.example");
    CHECK(memcmp(bad_received + body, "Subject: s", 10) == 0);
    free(m.rcpts);
    free(buf);
    static const char cut[] = "MRS-SPOOL 1\nfrom a@b.example\nrcpt c@d.example\nrcpt e@f.exa"; /* no end */
    CHECK(salvage(LIT(cut), &m, &buf, &body) == 0);
    CHECK(m.rcpt_count == 1 && body == 0);
    free(m.rcpts);
    free(buf);
    static const char nul[] = "MRS-SPOOL 1\nfrom a@b.ex\0ample\nrcpt c@d.example\n\n"; /* a cut sender */
    CHECK(salvage(LIT(nul), &m, &buf, &body) < 0);
    free(m.rcpts);
    free(buf);
    static const char null_sender[] = "MRS-SPOOL 1\nfrom \nrcpt c@d.example\n\n";
    CHECK(salvage(LIT(null_sender), &m, &buf, &body) < 0); /* a bounce is never bounced */
    free(m.rcpts);
    free(buf);
    static const char no_rcpt[] = "MRS-SPOOL 1\nfrom a@b.example\n\n";
    CHECK(salvage(LIT(no_rcpt), &m, &buf, &body) < 0);
    free(m.rcpts);
    free(buf);
    CHECK(salvage(LIT("rcpt c@d.example\nfrom a@b.example\n"), &m, &buf, &body) == 0); /* first line too */
    free(m.rcpts);
    free(buf);
}

static void test_received_count(void)
{
    CHECK(delivery_received_count(LIT("Received: a\r\n\tmore\r\nreceived: b\r\nX-Received: c\r\nSubject: Received:\r\n")) == 2);
    CHECK(delivery_received_count(LIT("")) == 0);
    CHECK(delivery_received_count(LIT("Received:")) == 1);
}

static void test_ehlo_caps(void)
{
    struct smtp_client_caps c;
    memset(&c, 0, sizeof c);
    smtp_client_parse_ehlo_line(LIT("SIZE 35882577"), &c);
    smtp_client_parse_ehlo_line(LIT("8bitmime"), &c);
    smtp_client_parse_ehlo_line(LIT("STARTTLS"), &c);
    smtp_client_parse_ehlo_line(LIT("AUTH=LOGIN"), &c);
    CHECK(c.size && c.size_max == 35882577 && c.eightbitmime && c.starttls && c.auth_login && !c.auth_plain);
    smtp_client_parse_ehlo_line(LIT("AUTH CRAM-MD5 PLAIN"), &c);
    CHECK(c.auth_plain);
    memset(&c, 0, sizeof c);
    smtp_client_parse_ehlo_line(LIT("STARTTLSX"), &c);
    smtp_client_parse_ehlo_line(LIT("SIZE"), &c);
    smtp_client_parse_ehlo_line(LIT("AUTH PLAINX"), &c);
    CHECK(!c.starttls && c.size && c.size_max == 0 && !c.auth_plain && !c.smtputf8);
    smtp_client_parse_ehlo_line(LIT("SMTPUTF8"), &c);
    CHECK(c.smtputf8);
}

/* needs — spool_needs_smtputf8 of an envelope and message written to a file */
static bool needs(const char *env, const char *msg)
{
    char path[] = "/tmp/mrs-unit-utf8-XXXXXX", *buf;
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    size_t el = strlen(env), ml = strlen(msg), body;
    CHECK(write(fd, env, el) == (ssize_t)el && write(fd, msg, ml) == (ssize_t)ml);
    struct spool_message m;
    CHECK(parse(env, el, &m, &buf, &body) == 0);
    m.fd = fd;
    m.body_offset = (int64_t)body;
    m.file_size = (int64_t)(el + ml);
    bool r = spool_needs_smtputf8(&m);
    close(fd);
    free(m.rcpts);
    free(buf);
    return r;
}

static void test_smtputf8_needed(void)
{
    const char *u8 = "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nbody 8bitmime\nsmtputf8 1\nfrom a@b.test\n"
                     "rcpt c@d.test\n\n";
    const char *old = "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nbody 8bitmime\nfrom a@b.test\n"
                      "rcpt \xc3\xbc@d.test\n\n";
    CHECK(!needs(u8, "Subject: ascii\r\n\r\nbody \xc3\xa5\r\n")); /* only the body is 8-bit */
    CHECK(needs(u8, "Subject: \xc3\xa5\r\n\r\nbody\r\n"));
    CHECK(needs(u8, "Subject: x\r\nX-Long: \xc3\xa5\r\n"));          /* no body at all */
    CHECK(!needs(u8, "Subject: x\r\n\r\n"));
    CHECK(!needs(old, "Subject: \xc3\xa5\r\n\r\n"));                /* no flag, never */
    const char *rcpt = "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nbody 7bit\nsmtputf8 1\nfrom a@b.test\n"
                       "rcpt c@d.test\nrcpt \xe7\x94\xa8@d.test\n\n";
    CHECK(needs(rcpt, "Subject: x\r\n\r\n"));
}

static void test_base64(void)
{
    char out[64];
    CHECK(smtp_client_base64((const unsigned char *)"", 0, out) == 0 && out[0] == '\0');
    smtp_client_base64((const unsigned char *)"f", 1, out);
    CHECK_STR(out, "Zg==");
    smtp_client_base64((const unsigned char *)"fo", 2, out);
    CHECK_STR(out, "Zm8=");
    smtp_client_base64((const unsigned char *)"foobar", 6, out);
    CHECK_STR(out, "Zm9vYmFy");
    smtp_client_base64((const unsigned char *)"\0user\0pass", 10, out);
    CHECK_STR(out, "AHVzZXIAcGFzcw==");
}

/* The slot key of a recipient domain (MRS_DELIVERY_DOMAIN_CONCURRENCY):
 * one key whatever the ASCII case or a trailing dot, another per domain
 * and per secret; and the deny-list refusal's text bounces as 5.4.4. */
static void test_domain_key(void)
{
    uint8_t a[CRYPTO_KEY_BYTES] = {1}, b[CRYPTO_KEY_BYTES] = {2};
    char status[BOUNCE_STATUS_BYTES];
    CHECK(crypto_init() == 0);
    uint64_t k = delivery_domain_key(a, "tarpit.example");
    CHECK(delivery_domain_key(a, "TarPit.EXAMPLE") == k);
    CHECK(delivery_domain_key(a, "tarpit.example.") == k);
    CHECK(delivery_domain_key(a, "tarpit.example2") != k);
    CHECK(delivery_domain_key(a, "arpit.example") != k);
    CHECK(delivery_domain_key(b, "tarpit.example") != k);
    CHECK(delivery_domain_key(a, "") != k);
    bounce_status("550 5.4.4 x.example: every address of its mail exchangers is in MRS_DELIVERY_DENY_NETS, "
                  "never connected to: mx.x.example[127.0.0.1]", status);
    CHECK_STR(status, "5.4.4");
}

UNIT_MAIN("delivery", UNIT_CASE(test_envelope_parses), UNIT_CASE(test_envelope_null_sender),
          UNIT_CASE(test_envelope_malformed), UNIT_CASE(test_state_round_trip), UNIT_CASE(test_state_malformed),
          UNIT_CASE(test_ids), UNIT_CASE(test_mx_order), UNIT_CASE(test_bounce_status), UNIT_CASE(test_bounce_format),
          UNIT_CASE(test_backoff), UNIT_CASE(test_backoff_within_bounds),
          UNIT_CASE(test_bounce_text_has_no_blank_lines_of_spaces), UNIT_CASE(test_bounce_headers_cut_at_line_boundary),
          UNIT_CASE(test_state_bounced_round_trip), UNIT_CASE(test_salvage_envelope), UNIT_CASE(test_received_count),
          UNIT_CASE(test_ehlo_caps), UNIT_CASE(test_smtputf8_needed), UNIT_CASE(test_base64), UNIT_CASE(test_domain_key))
