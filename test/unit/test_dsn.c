/* Unit tests of RFC 3461 support: xtext, the MAIL/RCPT parameters (through
 * smtp_parse_mail / smtp_parse_rcpt, as the session sees them), the spool
 * keys that carry them, and the reports that honour them. */
#include "bounce.h"
#include "config.h"
#include "dsn.h"
#include "smtp_client.h"
#include "smtp_proto.h"
#include "spool.h"
#include "unit.h"

#include <stdlib.h>

#define LIT(s) (s), (sizeof(s) - 1)

static void test_xtext_decode(void)
{
    char out[64];
    size_t n;
    CHECK(dsn_xtext_decode(LIT("abc+2Bdef+3D"), out, sizeof out, &n) == 0);
    CHECK_STR(out, "abc+def=");
    CHECK(n == 8);
    CHECK(dsn_xtext_decode(LIT(""), out, sizeof out, &n) == 0 && n == 0);
    CHECK(dsn_xtext_decode(LIT("a+20b"), out, sizeof out, &n) == 0); /* a space is printable */
    CHECK_STR(out, "a b");
    CHECK(dsn_xtext_decode(LIT("a+2b"), out, sizeof out, &n) < 0);   /* lowercase hex */
    CHECK(dsn_xtext_decode(LIT("a+2"), out, sizeof out, &n) < 0);    /* cut short */
    CHECK(dsn_xtext_decode(LIT("a+"), out, sizeof out, &n) < 0);
    CHECK(dsn_xtext_decode(LIT("a+G0"), out, sizeof out, &n) < 0);
    CHECK(dsn_xtext_decode(LIT("a=b"), out, sizeof out, &n) < 0);    /* '=' must be encoded */
    CHECK(dsn_xtext_decode(LIT("a b"), out, sizeof out, &n) < 0);    /* so must a space */
    CHECK(dsn_xtext_decode(LIT("a+0Db"), out, sizeof out, &n) < 0);  /* CR */
    CHECK(dsn_xtext_decode(LIT("a+0Ab"), out, sizeof out, &n) < 0);  /* LF */
    CHECK(dsn_xtext_decode(LIT("a+00b"), out, sizeof out, &n) < 0);  /* NUL */
    CHECK(dsn_xtext_decode(LIT("a+7F"), out, sizeof out, &n) < 0);   /* DEL */
    CHECK(dsn_xtext_decode(LIT("a+C3+A9"), out, sizeof out, &n) < 0); /* 8-bit */
    CHECK(dsn_xtext_decode("a\x01", 2, out, sizeof out, &n) < 0);
    CHECK(dsn_xtext_decode(LIT("abcd"), out, 4, &n) < 0);             /* no room for the NUL */
    CHECK(dsn_xtext_decode(LIT("abc"), out, 4, &n) == 0);
}

static void test_xtext_round_trip(void)
{
    char enc[256], dec[128];
    size_t n;
    static const char s[] = "bob+tag=x y@example.org";
    CHECK(dsn_xtext_encode(LIT(s), enc, sizeof enc) > 0);
    CHECK_STR(enc, "bob+2Btag+3Dx+20y@example.org");
    CHECK(dsn_xtext_decode(enc, strlen(enc), dec, sizeof dec, &n) == 0);
    CHECK_STR(dec, s);
    CHECK(dsn_xtext_encode(LIT("+"), enc, 3) < 0);
    CHECK(dsn_xtext_encode(LIT("+"), enc, 4) == 3);
}

static void test_notify(void)
{
    unsigned b;
    char t[DSN_NOTIFY_TEXT_BYTES];
    CHECK(dsn_parse_notify(LIT("NEVER"), &b) == 0 && b == DSN_NOTIFY_NEVER);
    CHECK(dsn_parse_notify(LIT("success,Failure"), &b) == 0 && b == (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE));
    CHECK(dsn_parse_notify(LIT("DELAY,SUCCESS,FAILURE"), &b) == 0);
    dsn_notify_text(b, t);
    CHECK_STR(t, "SUCCESS,FAILURE,DELAY");
    dsn_notify_text(DSN_NOTIFY_DELAY, t);
    CHECK_STR(t, "DELAY");
    CHECK(dsn_parse_notify(LIT("NEVER,SUCCESS"), &b) < 0);
    CHECK(dsn_parse_notify(LIT("SUCCESS,NEVER"), &b) < 0);
    CHECK(dsn_parse_notify(LIT("SUCCESS,SUCCESS"), &b) < 0);
    CHECK(dsn_parse_notify(LIT("SUCCESS,"), &b) < 0);
    CHECK(dsn_parse_notify(LIT(",SUCCESS"), &b) < 0);
    CHECK(dsn_parse_notify(LIT(""), &b) < 0);
    CHECK(dsn_parse_notify(LIT("SOMETIMES"), &b) < 0);
}

static void test_mail_params(void)
{
    struct smtp_path p;
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> RET=HDRS ENVID=QQ+2B1"), &p) == SMTP_PATH_OK);
    CHECK(p.dsn.ret == DSN_RET_HDRS);
    CHECK_STR(p.dsn.envid, "QQ+2B1");
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> ret=full"), &p) == SMTP_PATH_OK && p.dsn.ret == DSN_RET_FULL);
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> RET=HDRS RET=FULL"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(p.dsn.why && strstr(p.dsn.why, "twice"));
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> RET=BODY"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> RET"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> ENVID=a ENVID=b"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> ENVID=a+0Db"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> ENVID="), &p) == SMTP_PATH_PARAM_SYNTAX);
    char line[400] = "FROM:<a@b.c> ENVID=";
    size_t n = strlen(line);
    memset(line + n, 'x', 100);
    CHECK(smtp_parse_mail(line, n + 100, &p) == SMTP_PATH_OK); /* 100: the limit */
    line[n + 100] = 'x';
    CHECK(smtp_parse_mail(line, n + 101, &p) == SMTP_PATH_PARAM_SYNTAX);
    for (int i = 0; i < 100; i++)
        memcpy(line + n + 3 * i, "+41", 3); /* 100 characters as 300 of xtext */
    CHECK(smtp_parse_mail(line, n + 300, &p) == SMTP_PATH_OK);
    CHECK(smtp_parse_mail(LIT("FROM:<a@b.c> NOTIFY=NEVER"), &p) == SMTP_PATH_PARAM_UNKNOWN); /* a RCPT one */
}

static void test_rcpt_params(void)
{
    struct smtp_path p;
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@y.z"), &p) == SMTP_PATH_OK);
    CHECK(p.dsn.notify == (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE));
    CHECK(p.dsn.orcpt_len == 18 && !memcmp(p.dsn.orcpt, "rfc822;bob+2Bx@y.z", 18));
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> ORCPT=UTF-8;bob@y.z"), &p) == SMTP_PATH_OK);
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> ORCPT=x400;bob"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(p.dsn.why && strstr(p.dsn.why, "rfc822"));
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> ORCPT=bob@y.z"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> ORCPT=rfc822;"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> ORCPT=rfc822;a+0Ab"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> ORCPT=rfc822;a ORCPT=rfc822;b"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> NOTIFY=NEVER,SUCCESS"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(p.dsn.why && strstr(p.dsn.why, "NEVER"));
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> NOTIFY=DELAY NOTIFY=DELAY"), &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(smtp_parse_rcpt(LIT("TO:<a@b.c> RET=FULL"), &p) == SMTP_PATH_PARAM_UNKNOWN); /* a MAIL one */
    char line[1700] = "TO:<a@b.c> ORCPT=rfc822;";
    size_t n = strlen(line);
    memset(line + n, 'x', 500);
    CHECK(smtp_parse_rcpt(line, n + 500, &p) == SMTP_PATH_OK);
    line[n + 500] = 'x';
    CHECK(smtp_parse_rcpt(line, n + 501, &p) == SMTP_PATH_PARAM_SYNTAX);
}

static void test_rcpts_store(void)
{
    struct dsn_rcpts r = {0};
    struct dsn_params none = {0}, some = {.notify = DSN_NOTIFY_NEVER};
    CHECK(dsn_rcpts_set(&r, 0, &none) == 0 && r.notify == NULL); /* nothing allocated */
    CHECK(dsn_rcpts_set(&r, 1, &some) == 0);
    for (size_t i = 2; i < 40; i++)
        CHECK(dsn_rcpts_set(&r, i, &none) == 0);
    CHECK(r.cap >= 40 && r.notify[0] == NULL && r.notify[39] == NULL && r.orcpt[1] == NULL);
    struct dsn_params o = {.orcpt = "rfc822;a@b.cXYZ", .orcpt_len = 12};
    CHECK(dsn_rcpts_set(&r, 40, &o) == 0);
    CHECK_STR(r.orcpt[40], "rfc822;a@b.c");
    CHECK_STR(r.notify[1], "NEVER");
    dsn_rcpts_free(&r);
    CHECK(r.cap == 0 && r.notify == NULL);
}

static void test_ehlo_dsn_cap(void)
{
    struct smtp_client_caps c = {0};
    smtp_client_parse_ehlo_line(LIT("DSNX"), &c);
    CHECK(!c.dsn);
    smtp_client_parse_ehlo_line(LIT("dsn"), &c);
    CHECK(c.dsn);
}

static void load_config(void)
{
    static bool done;
    char err[256];
    if (done)
        return;
    setenv("MRS_HOSTNAME", "mrs.test", 1);
    setenv("MRS_DELAY_WARNING", "1h", 1);
    CHECK(config_load(err, sizeof err) == 0);
    done = true;
}

static const char envelope[] = "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1764172067123\n"
                               "user u@x\nclient 192.0.2.10\nhelo c\nbody 7bit\nfrom news@x.se\n"
                               "ret HDRS\nenvid QQ+2B1\n"
                               "rcpt alice@example.org\nnotify SUCCESS,FAILURE\norcpt rfc822;al+2Bice@x.y\n"
                               "rcpt bob@example.net\nnotify NEVER\n"
                               "rcpt carol@example.net\n\nSubject: x\r\n\r\nbody\r\n";

static int parse(const char *text, size_t len, struct spool_message *m, char **buf)
{
    size_t body;
    memset(m, 0, sizeof *m);
    *buf = malloc(len + 1);
    memcpy(*buf, text, len);
    (*buf)[len] = '\0';
    return spool_parse_envelope(*buf, len, m, &body);
}

static void test_spool_keys(void)
{
    struct spool_message m;
    char *buf;
    CHECK(parse(LIT(envelope), &m, &buf) == 0);
    CHECK(m.ret == DSN_RET_HDRS);
    CHECK_STR(m.envid, "QQ+2B1");
    CHECK(m.rcpts[0].notify == (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE));
    CHECK_STR(m.rcpts[0].notify_text, "SUCCESS,FAILURE");
    CHECK_STR(m.rcpts[0].orcpt, "rfc822;al+2Bice@x.y");
    CHECK(m.rcpts[1].notify == DSN_NOTIFY_NEVER && m.rcpts[1].orcpt == NULL);
    CHECK(m.rcpts[2].notify == 0 && m.rcpts[2].notify_text == NULL);
    /* the state keeps which recipient needs our success report, and the delay notice */
    m.rcpts[0].status = SPOOL_DELIVERED;
    m.rcpts[0].relayed = true;
    memcpy(m.delay_id, "019ac3f1e2a7c0ff0001", QUEUE_ID_BYTES);
    size_t cap = spool_state_max_bytes(&m);
    char *st = malloc(cap);
    size_t len = spool_format_state(&m, st, cap);
    CHECK(len > 0 && strstr(st, "relayed 0\n") && strstr(st, "delayed 019ac3f1e2a7c0ff0001\n"));
    m.rcpts[0].relayed = false;
    m.delay_id[0] = '\0';
    CHECK(spool_parse_state(st, len, &m) == 0);
    CHECK(m.rcpts[0].relayed && !m.rcpts[1].relayed);
    CHECK_STR(m.delay_id, "019ac3f1e2a7c0ff0001");
    CHECK(spool_parse_state(LIT("MRS-STATE 1\nrelayed 3\n"), &m) < 0); /* no such recipient */
    free(st);
    free(m.rcpts);
    free(buf);
    /* damaged DSN keys make the envelope malformed, as any other value */
    static const char *const bad[] = {"ret ALL\n", "envid a+0Db\n", "notify NEVER\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "MRS-SPOOL 1\nid 019ac3f1e2a7c0ffee12\nreceived 1\nfrom a@b\n%srcpt c@d\n\n",
                 bad[i]);
        CHECK(parse(text, strlen(text), &m, &buf) < 0);
        free(m.rcpts);
        free(buf);
    }
}

static void test_report_fields(void)
{
    struct spool_message m;
    char *buf;
    size_t len;
    bool eightbit;
    load_config();
    CHECK(parse(LIT(envelope), &m, &buf) == 0);
    m.rcpts[0].status = SPOOL_DELIVERED; /* NOTIFY=SUCCESS, next hop without DSN */
    m.rcpts[0].relayed = true;
    spool_set_reply(&m.rcpts[0], "mx.example.org[192.0.2.1]:25", LIT("250 2.0.0 ok"));
    m.rcpts[1].status = SPOOL_FAILED; /* NOTIFY=NEVER */
    m.rcpts[2].status = SPOOL_FAILED; /* no NOTIFY: FAILURE */
    spool_set_reply(&m.rcpts[2], "", LIT("550 5.1.1 no"));
    CHECK(!strcmp(bounce_action(&m.rcpts[0], BOUNCE_FINAL), "relayed"));
    CHECK(bounce_action(&m.rcpts[1], BOUNCE_FINAL) == NULL);
    CHECK(!strcmp(bounce_action(&m.rcpts[2], BOUNCE_FINAL), "failed"));
    char *r = bounce_report_format(&m, BOUNCE_FINAL, LIT("Subject: x\r\n"), false, "019ac3f1e2a7c0ff0000",
                                   1764172067123LL, &len, &eightbit);
    CHECK(r != NULL);
    if (r) {
        CHECK(strstr(r, "Original-Envelope-Id: QQ+1\r\n") != NULL);
        CHECK(strstr(r, "Original-Recipient: rfc822;al+ice@x.y\r\nFinal-Recipient: rfc822; alice@example.org\r\n"
                        "Action: relayed\r\nStatus: 2.0.0\r\n") != NULL);
        CHECK(strstr(r, "Final-Recipient: rfc822; carol@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        CHECK(strstr(r, "bob@") == NULL);
    }
    free(r);
    /* the delay notice: carol (no NOTIFY) and alice (SUCCESS,FAILURE: no) */
    m.rcpts[0].status = m.rcpts[2].status = SPOOL_DEFERRED;
    m.rcpts[1].status = SPOOL_DEFERRED;
    CHECK(bounce_delay_due(&m) == m.received_ms + 3600000);
    r = bounce_report_format(&m, BOUNCE_DELAY, LIT("Subject: x\r\n"), false, "019ac3f1e2a7c0ff0000",
                             1764172067123LL, &len, &eightbit);
    CHECK(r && strstr(r, "Action: delayed\r\n") && strstr(r, "Will-Retry-Until: ") && !strstr(r, "alice@example"));
    CHECK(r && strstr(r, "Subject: Delayed Mail"));
    free(r);
    memcpy(m.delay_id, "019ac3f1e2a7c0ff0001", QUEUE_ID_BYTES);
    CHECK(bounce_delay_due(&m) == 0); /* once */
    free(m.rcpts);
    free(buf);
}

int main(void)
{
    static const struct unit_case cases[] = {
        UNIT_CASE(test_xtext_decode), UNIT_CASE(test_xtext_round_trip), UNIT_CASE(test_notify),
        UNIT_CASE(test_mail_params),  UNIT_CASE(test_rcpt_params),      UNIT_CASE(test_rcpts_store),
        UNIT_CASE(test_spool_keys),   UNIT_CASE(test_report_fields),    UNIT_CASE(test_ehlo_dsn_cap)};
    return unit_run("dsn", cases, sizeof cases / sizeof cases[0]);
}
