/* Unit tests of smtp_proto (command lines, paths, parameters, replies, the
 * DATA decoder and dot-stuffing) and of the SASL decoders in auth. */
#include "auth.h"
#include "crypto.h"
#include "smtp_proto.h"
#include "unit.h"

static void test_command_verbs(void)
{
    struct smtp_command c;
    smtp_parse_command("ehlo x.test", 11, &c);
    CHECK(c.verb == SMTP_VERB_EHLO && c.arg_len == 6 && memcmp(c.arg, "x.test", 6) == 0);
    smtp_parse_command("QUIT", 4, &c);
    CHECK(c.verb == SMTP_VERB_QUIT && c.arg_len == 0);
    smtp_parse_command("StartTLS", 8, &c);
    CHECK(c.verb == SMTP_VERB_STARTTLS);
    smtp_parse_command("QUITX", 5, &c);
    CHECK(c.verb == SMTP_VERB_UNKNOWN);
    smtp_parse_command("GET / HTTP/1.1", 14, &c);
    CHECK(c.verb == SMTP_VERB_HTTP);
    smtp_parse_command("CONNECT a:443 HTTP/1.1", 22, &c);
    CHECK(c.verb == SMTP_VERB_HTTP);
    smtp_parse_command("", 0, &c);
    CHECK(c.verb == SMTP_VERB_UNKNOWN);
    smtp_parse_command("MAIL\rFROM:<a@b>", 15, &c);
    CHECK(c.verb == SMTP_VERB_UNKNOWN);
}

static enum smtp_path_error mail(const char *arg, struct smtp_path *p)
{
    return smtp_parse_mail(arg, strlen(arg), p);
}

static enum smtp_path_error rcpt(const char *arg, struct smtp_path *p)
{
    return smtp_parse_rcpt(arg, strlen(arg), p);
}

static void test_paths(void)
{
    struct smtp_path p;
    CHECK(mail("FROM:<a@b.test>", &p) == SMTP_PATH_OK);
    CHECK_STR(p.addr, "a@b.test");
    CHECK(p.at == 1 && p.size == -1 && !p.null);
    CHECK(mail("from: <a@b.test>", &p) == SMTP_PATH_OK);
    CHECK(mail("FROM:a@b.test", &p) == SMTP_PATH_OK);
    CHECK(mail("FROM:<>", &p) == SMTP_PATH_OK && p.null && p.addr_len == 0);
    CHECK(mail("FROM:<@r1.test,@r2.test:a@b.test>", &p) == SMTP_PATH_OK);
    CHECK_STR(p.addr, "a@b.test");
    CHECK(mail("FROM:<\"john doe\"@b.test>", &p) == SMTP_PATH_OK);
    CHECK_STR(p.addr, "\"john doe\"@b.test");
    CHECK(mail("FROM:<\"a>b\"@b.test>", &p) == SMTP_PATH_OK);
    CHECK(mail("FROM:<\"a\\\"b\"@b.test>", &p) == SMTP_PATH_OK);
    /* issue 10 item 16: refused, as the same address in From: is */
    CHECK(mail("FROM:<a@b.test.>", &p) == SMTP_PATH_TRAILING_DOT);
    CHECK(mail("FROM:<a@EXAMPLE.TEST.> SIZE=10", &p) == SMTP_PATH_TRAILING_DOT);
    CHECK(mail("FROM:<a@[127.0.0.1]>", &p) == SMTP_PATH_OK);
    CHECK(mail("FROM:<a b@c.test>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<a..b@c.test>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<.a@c.test>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<a@-c.test>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<a@c..test>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<a@c.test", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM <a@c.test>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("TO:<a@c.test>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<a@c.test>\r", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<a@c\n.test>", &p) == SMTP_PATH_SYNTAX);
    char big[400];
    memset(big, 'a', sizeof big);
    memcpy(big, "FROM:<", 6);
    memcpy(big + 330, "@b.test>", 9);
    CHECK(mail(big, &p) != SMTP_PATH_OK);
    CHECK(rcpt("TO:<x@y.test>", &p) == SMTP_PATH_OK);
    CHECK(rcpt("TO:<x@y.test.>", &p) == SMTP_PATH_OK);
    CHECK_STR(p.addr, "x@y.test");
    CHECK(p.addr_len == 8);
    CHECK(rcpt("TO:<postmaster>", &p) == SMTP_PATH_NO_DOMAIN);
    CHECK(rcpt("TO:<>", &p) == SMTP_PATH_NO_DOMAIN);
    CHECK(rcpt("TO:<x@[1.2.3.4]>", &p) == SMTP_PATH_LITERAL);
}

static void test_parameters(void)
{
    struct smtp_path p;
    CHECK(mail("FROM:<a@b.test> SIZE=1000", &p) == SMTP_PATH_OK && p.size == 1000);
    CHECK(mail("FROM:<a@b.test> size=1000 body=8bitmime", &p) == SMTP_PATH_OK &&
          p.body == SMTP_BODY_8BITMIME);
    CHECK(mail("FROM:<a@b.test> BODY=7BIT", &p) == SMTP_PATH_OK && p.body == SMTP_BODY_7BIT);
    CHECK(mail("FROM:<a@b.test> BODY=BINARYMIME", &p) == SMTP_PATH_OK && p.body == SMTP_BODY_BINARYMIME);
    CHECK(mail("FROM:<a@b.test> BODY=9BIT", &p) == SMTP_PATH_PARAM_UNKNOWN);
    CHECK(mail("FROM:<a@b.test> SIZE=abc", &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(mail("FROM:<a@b.test> SIZE=", &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(mail("FROM:<a@b.test> SIZE=99999999999999999999", &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(mail("FROM:<a@b.test> AUTH=<>", &p) == SMTP_PATH_OK);
    CHECK(mail("FROM:<a@b.test> SMTPUTF8", &p) == SMTP_PATH_OK && p.smtputf8 && !p.utf8);
    CHECK(mail("FROM:<a@b.test> SMTPUTF8=yes", &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(rcpt("TO:<a@b.test> SMTPUTF8", &p) == SMTP_PATH_PARAM_UNKNOWN);
    CHECK(mail("FROM:<a@b.test> =x", &p) == SMTP_PATH_PARAM_SYNTAX);
    CHECK(mail("FROM:<a@b.test>SIZE=1", &p) == SMTP_PATH_SYNTAX);
    CHECK(rcpt("TO:<a@b.test> SIZE=1", &p) == SMTP_PATH_PARAM_UNKNOWN);
}

/* RFC 6531 §3.3: UTF-8 local parts and U-label domains with SMTPUTF8 only;
 * malformed UTF-8 is SMTP_PATH_UTF8 (553 5.6.7) only with it. */
static void test_utf8_paths(void)
{
    struct smtp_path p;
    CHECK(mail("FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example> SMTPUTF8", &p) == SMTP_PATH_OK && p.utf8 &&
          p.smtputf8);
    CHECK_STR(p.addr, "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
    CHECK(mail("FROM:<j\xc3\xb6rg@b.example>", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<\"\xe2\x9c\x89 x\"@b.example> SMTPUTF8", &p) == SMTP_PATH_OK && p.utf8);
    /* overlong, surrogate, above U+10FFFF, truncated */
    CHECK(mail("FROM:<\xc0\xafx@b.example> SMTPUTF8", &p) == SMTP_PATH_UTF8);
    CHECK(mail("FROM:<\xed\xa0\x80@b.example> SMTPUTF8", &p) == SMTP_PATH_UTF8);
    CHECK(mail("FROM:<\xf4\x90\x80\x80@b.example> SMTPUTF8", &p) == SMTP_PATH_UTF8);
    CHECK(mail("FROM:<a@b.ex\xc3> SMTPUTF8", &p) == SMTP_PATH_UTF8);
    CHECK(mail("FROM:<\xc0\xafx@b.example>", &p) == SMTP_PATH_SYNTAX);
    /* a U-label domain must make a valid A-label domain */
    CHECK(mail("FROM:<a@\xc3\xbc..example> SMTPUTF8", &p) == SMTP_PATH_SYNTAX);
    CHECK(mail("FROM:<a@\xc2\xa0.example> SMTPUTF8", &p) == SMTP_PATH_OK); /* punycode takes any code point */
    /* RCPT leaves the decision to the session, which knows MAIL's parameter */
    CHECK(rcpt("TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.example>", &p) == SMTP_PATH_OK && p.utf8);
    CHECK(rcpt("TO:<a@b\xff.example>", &p) == SMTP_PATH_UTF8);
    CHECK(rcpt("TO:<a@b.example>", &p) == SMTP_PATH_OK && !p.utf8);
}

static void test_bdat(void)
{
    int64_t n;
    bool last;
    CHECK(smtp_parse_bdat("0 LAST", 6, &n, &last) == 0 && n == 0 && last);
    CHECK(smtp_parse_bdat("1234", 4, &n, &last) == 0 && n == 1234 && !last);
    CHECK(smtp_parse_bdat("10 last", 7, &n, &last) == 0 && n == 10 && last);
    CHECK(smtp_parse_bdat("999999999999999999", 18, &n, &last) == 0 && n == 999999999999999999LL);
    CHECK(smtp_parse_bdat("1000000000000000000", 19, &n, &last) < 0);
    CHECK(smtp_parse_bdat("", 0, &n, &last) < 0);
    CHECK(smtp_parse_bdat("-1", 2, &n, &last) < 0);
    CHECK(smtp_parse_bdat("10 LASTX", 8, &n, &last) < 0);
    CHECK(smtp_parse_bdat("10 LAST x", 9, &n, &last) < 0);
    CHECK(smtp_parse_bdat("1x", 2, &n, &last) < 0);
    struct smtp_dot d;
    /* CRLF split across chunks is a line end; a lone CR or LF is bare */
    smtp_dot_init(&d);
    smtp_chunk_scan(&d, "a\r", 2);
    smtp_chunk_scan(&d, "\nb\r\n", 4);
    CHECK(!d.bare && !d.nul && !smtp_chunk_end(&d) && !d.bare);
    smtp_dot_init(&d);
    smtp_chunk_scan(&d, "a\nb", 3);
    CHECK(d.bare);
    smtp_dot_init(&d);
    smtp_chunk_scan(&d, "a\r", 2);
    smtp_chunk_scan(&d, "b", 1);
    CHECK(d.bare);
    smtp_dot_init(&d);
    smtp_chunk_scan(&d, "a\r", 2);
    CHECK(!d.bare && !smtp_chunk_end(&d) && d.bare); /* a CR at the very end */
    smtp_dot_init(&d);
    smtp_chunk_scan(&d, "a\0b", 3);
    CHECK(d.nul && !d.bare && smtp_chunk_end(&d)); /* no final CRLF: one is added */
    smtp_dot_init(&d);
    CHECK(!smtp_chunk_end(&d)); /* empty: nothing added */
    smtp_dot_init(&d);
    smtp_chunk_scan(&d, ".\r\n.\r\nMAIL FROM:<x@y>\r\n", 23);
    CHECK(!d.bare && !d.done); /* dots are data */
}

static void test_reply_lines(void)
{
    int code;
    bool last;
    const char *text;
    size_t tl;
    CHECK(smtp_parse_reply_line("250-PIPELINING", 14, &code, &last, &text, &tl) == 0 && code == 250 &&
          !last && tl == 10);
    CHECK(smtp_parse_reply_line("250 ok", 6, &code, &last, &text, &tl) == 0 && last);
    CHECK(smtp_parse_reply_line("354", 3, &code, &last, &text, &tl) == 0 && last && tl == 0);
    CHECK(smtp_parse_reply_line("25x ok", 6, &code, &last, &text, &tl) < 0);
    CHECK(smtp_parse_reply_line("250_ok", 6, &code, &last, &text, &tl) < 0);
    CHECK(smtp_parse_reply_line("650 x", 5, &code, &last, &text, &tl) < 0);
}

/* decode — run the DATA decoder over in, split into chunks of `step` bytes. */
static size_t decode(const char *in, size_t n, size_t step, char *out, struct smtp_dot *d)
{
    size_t o = 0, i = 0;
    smtp_dot_init(d);
    while (i < n && !d->done) {
        size_t len = n - i < step ? n - i : step, got;
        i += smtp_dot_feed(d, in + i, len, out + o, &got);
        o += got;
    }
    out[o] = '\0';
    return i;
}

static void test_data_decoder(void)
{
    char out[256];
    struct smtp_dot d;
    static const char msg[] = "Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
    for (size_t step = 1; step <= sizeof msg; step++) {
        size_t used = decode(msg, sizeof msg - 1, step, out, &d);
        CHECK(d.done && !d.bare);
        CHECK(used == sizeof msg - 1 - 6); /* "QUIT\r\n" stays for the next command */
        CHECK_STR(out, "Subject: x\r\n\r\n.dot\r\n");
    }
    decode(".\r\n", 3, 3, out, &d);
    CHECK(d.done && out[0] == '\0');
    /* no smuggling: each of these does not end the data and marks it bare */
    static const char *const tricks[] = {"a\n.\nb", "a\r\n.\nb", "a\n.\r\nb", "a\r.\rb", "a\r\n.\rb", "a\rb", "a\nb"};
    for (size_t t = 0; t < sizeof tricks / sizeof tricks[0]; t++) {
        char in[64];
        int n = snprintf(in, sizeof in, "%s\r\n.\r\n", tricks[t]);
        for (size_t step = 1; step < 6; step++) {
            size_t used = decode(in, (size_t)n, step, out, &d);
            CHECK(d.done && d.bare && used == (size_t)n);
        }
    }
    decode("x\r\n", 3, 3, out, &d);
    CHECK(!d.done);
}

/* issue 10 item 10: a NUL byte marks the message (refused like bare CR/LF)
 * but never ends the data early */
static void test_data_decoder_nul(void)
{
    char out[256];
    struct smtp_dot d;
    static const char msg[] = "From\0: a@b\r\nFrom: c@d\r\n\r\nx\r\n.\r\n";
    for (size_t step = 1; step < 8; step++) {
        size_t used = decode(msg, sizeof msg - 1, step, out, &d);
        CHECK(d.done && d.nul && !d.bare && used == sizeof msg - 1);
    }
    static const char clean[] = "a\r\n.\r\n";
    decode(clean, sizeof clean - 1, 2, out, &d);
    CHECK(d.done && !d.nul);
}

static void test_dot_stuffing_round_trip(void)
{
    static const char msg[] = ".a\r\n..b\r\nc.\r\n.\r\n";
    char stuffed[64], back[64];
    bool sol = true;
    size_t n = smtp_dot_stuff(msg, sizeof msg - 1, stuffed, &sol);
    stuffed[n] = '\0';
    CHECK_STR(stuffed, "..a\r\n...b\r\nc.\r\n..\r\n");
    memcpy(stuffed + n, ".\r\n", 3);
    struct smtp_dot d;
    decode(stuffed, n + 3, 4, back, &d);
    CHECK(d.done && !d.bare);
    CHECK_STR(back, msg);
}

/* model_feed — the DATA decoder one byte at a time, as RFC 5321 §4.1.1.4
 * and §4.5.2 read (the production decoder copies runs of plain bytes whole;
 * both must agree on every byte, flag and stop). */
struct model { int st; bool bare, nul, done; };
static size_t model_feed(struct model *m, const char *in, size_t n, char *out, size_t *out_len)
{
    enum { SOL, LINE, CR, DOT, DOTCR };
    size_t o = 0, i;
    for (i = 0; i < n && !m->done; i++) {
        char c = in[i];
        m->nul |= c == '\0';
        if (m->st == SOL || m->st == LINE) {
            if (c == '\r') m->st = CR;
            else if (c == '.' && m->st == SOL) m->st = DOT;
            else out[o++] = c, m->bare |= c == '\n', m->st = LINE;
        } else if (m->st == CR) {
            out[o++] = '\r';
            if (c == '\n') out[o++] = c, m->st = SOL;
            else if (c == '\r') m->bare = true;
            else m->bare = true, out[o++] = c, m->st = LINE;
        } else if (m->st == DOT) {
            if (c == '\r') m->st = DOTCR;
            else out[o++] = c, m->bare |= c == '\n', m->st = LINE;
        } else if (c == '\n') {
            m->done = true;
        } else {
            m->bare = true, out[o++] = '\r';
            if (c == '\r') m->st = CR;
            else out[o++] = c, m->st = LINE;
        }
    }
    *out_len = o;
    return i;
}

static unsigned lcg(unsigned *x)
{
    return *x = *x * 1103515245u + 12345u, *x >> 8;
}

static void test_data_decoder_matches_byte_model(void)
{
    static const char special[] = "\r\n.\0x";
    enum { N = 700 };
    char in[N], a[N + 8], b[N + 8];
    unsigned seed = 11;
    for (int round = 0; round < 4000; round++) {
        size_t n = lcg(&seed) % N;
        /* long plain runs (the fast path), broken by CR, LF, dots and NULs */
        for (size_t i = 0; i < n; i++)
            in[i] = lcg(&seed) % 6 == 0 ? special[lcg(&seed) % 5] : (char)('A' + lcg(&seed) % 26);
        if (round % 3 == 0 && n > 5)
            memcpy(in + n - 5, "\r\n.\r\n", 5);
        struct smtp_dot d;
        struct model m = {0};
        smtp_dot_init(&d);
        size_t i = 0, j = 0, ao = 0, bo = 0;
        while (i < n && !d.done) {
            size_t step = 1 + lcg(&seed) % 97, len = n - i < step ? n - i : step, got;
            i += smtp_dot_feed(&d, in + i, len, a + ao, &got);
            ao += got;
        }
        while (j < n && !m.done) {
            size_t got;
            j += model_feed(&m, in + j, n - j, b + bo, &got);
            bo += got;
        }
        CHECK(i == j && ao == bo && memcmp(a, b, ao) == 0);
        CHECK(d.done == m.done && d.bare == m.bare && d.nul == m.nul);
    }
}

static void test_dot_stuffing_matches_byte_model(void)
{
    enum { N = 500 };
    char in[N], a[2 * N], b[2 * N];
    unsigned seed = 5;
    for (int round = 0; round < 3000; round++) {
        size_t n = lcg(&seed) % N, ao = 0, bo = 0;
        for (size_t i = 0; i < n; i++)
            in[i] = "..\r\nab"[lcg(&seed) % 6];
        bool sa = round % 2, sb = sa;
        for (size_t i = 0; i < n;) {
            size_t step = 1 + lcg(&seed) % 40, len = n - i < step ? n - i : step;
            ao += smtp_dot_stuff(in + i, len, a + ao, &sa);
            i += len;
        }
        for (size_t i = 0; i < n; i++) {
            if (sb && in[i] == '.')
                b[bo++] = '.';
            b[bo++] = in[i];
            sb = in[i] == '\n';
        }
        CHECK(ao == bo && memcmp(a, b, ao) == 0 && sa == sb);
    }
}

static void test_sasl_plain(void)
{
    char user[AUTH_USER_MAX_BYTES + 2], pw[AUTH_PASSWORD_MAX_BYTES + 2];
    size_t ul, pl;
    /* "\0alice\0secret" */
    CHECK(auth_decode_plain("AGFsaWNlAHNlY3JldA==", 20, user, &ul, pw, &pl) == 0);
    CHECK_STR(user, "alice");
    CHECK_STR(pw, "secret");
    /* "alice\0alice\0secret": authzid equal to authcid */
    CHECK(auth_decode_plain("YWxpY2UAYWxpY2UAc2VjcmV0", 24, user, &ul, pw, &pl) == 0);
    /* "bob\0alice\0secret": another authorization identity */
    CHECK(auth_decode_plain("Ym9iAGFsaWNlAHNlY3JldA==", 24, user, &ul, pw, &pl) == AUTH_PLAIN_OTHER_AUTHZID);
    /* "\0alice" (no password part) */
    CHECK(auth_decode_plain("AGFsaWNl", 8, user, &ul, pw, &pl) < 0);
    CHECK(auth_decode_plain("not base64!", 11, user, &ul, pw, &pl) < 0);
    CHECK(auth_decode_plain("", 0, user, &ul, pw, &pl) < 0);
    char line[64];
    size_t n;
    CHECK(auth_decode_line("YWxpY2U=", 8, line, sizeof line, &n) == 0 && n == 5);
    CHECK(auth_decode_line("AGE=", 4, line, sizeof line, &n) < 0); /* NUL inside */
    CHECK(auth_decode_line("YWxpY2U=", 8, line, 3, &n) < 0);       /* too long */
}

static void test_helo_and_domains(void)
{
    CHECK(smtp_valid_helo("client.example", 14));
    CHECK(smtp_valid_helo("[192.0.2.1]", 11));
    CHECK(smtp_valid_helo("[IPv6:2001:db8::1]", 18));
    CHECK(!smtp_valid_helo("bad host", 8));
    CHECK(!smtp_valid_helo("a\rb", 3));
    /* issue 10 item 1: nothing longer than a domain, literals included */
    char big[600];
    memset(big, '1', sizeof big);
    big[0] = '[';
    for (size_t n = 250; n < sizeof big; n++) {
        big[n - 1] = ']';
        CHECK(smtp_valid_helo(big, n) == (n <= SMTP_DOMAIN_MAX_BYTES));
        big[n - 1] = '1';
    }
    char name[300];
    for (size_t i = 0; i < sizeof name; i++)
        name[i] = i % 60 == 59 ? '.' : 'a';
    CHECK(smtp_valid_helo(name, 255));
    name[255] = '.';
    CHECK(!smtp_valid_helo(name, 256));
    CHECK(smtp_valid_domain("a.b.", 4));
    CHECK(!smtp_valid_domain(".", 1));
    /* one trailing dot is the root; two are an empty label DNS cannot ask */
    CHECK(!smtp_valid_domain("a.b..", 5));
    CHECK(!smtp_valid_domain("a..", 3));
    CHECK(!smtp_valid_domain("a-.b", 4));
}

int main(void)
{
    if (crypto_init() < 0)
        return 1;
    static const struct unit_case cases[] = {
        UNIT_CASE(test_command_verbs), UNIT_CASE(test_paths), UNIT_CASE(test_parameters), UNIT_CASE(test_utf8_paths), UNIT_CASE(test_bdat),
        UNIT_CASE(test_reply_lines), UNIT_CASE(test_data_decoder), UNIT_CASE(test_data_decoder_nul), UNIT_CASE(test_dot_stuffing_round_trip),
        UNIT_CASE(test_data_decoder_matches_byte_model), UNIT_CASE(test_dot_stuffing_matches_byte_model),
        UNIT_CASE(test_sasl_plain), UNIT_CASE(test_helo_and_domains)};
    return unit_run("smtp_proto", cases, sizeof cases / sizeof cases[0]);
}
