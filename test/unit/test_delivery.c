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

#include <stdlib.h>

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
    CHECK(delivery_backoff_ms(1, min, max, 0x80000000u) == min);
    CHECK(delivery_backoff_ms(2, min, max, 0x80000000u) == 2 * min);
    CHECK(delivery_backoff_ms(3, min, max, 0x80000000u) == 4 * min);
    CHECK(delivery_backoff_ms(100, min, max, 0x80000000u) == max);
    CHECK(delivery_backoff_ms(1000000, min, max, 0) == max - max / 10);
    CHECK(delivery_backoff_ms(1000000, min, max, 0xffffffffu) <= max + max / 10);
    CHECK(delivery_backoff_ms(1, min, max, 0) == min - min / 10);
    CHECK(delivery_backoff_ms(1, 1, 1, 0) >= 1);
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
    CHECK(!c.starttls && c.size && c.size_max == 0 && !c.auth_plain);
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
          UNIT_CASE(test_backoff), UNIT_CASE(test_received_count), UNIT_CASE(test_ehlo_caps), UNIT_CASE(test_base64),
          UNIT_CASE(test_domain_key))
