/* test_log — log lines as an operator's tools read them: escapes and
 * quoting in text and JSON, and a line cut at LOG_LINE_MAX_BYTES that still
 * parses (JSON) and never ends inside an escape. */
#include "log.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* capture — run one log_event with stderr sent to a file; the line. */
static char *capture(int json, const struct log_fields *f, const char *msg)
{
    static char buf[LOG_LINE_MAX_BYTES * 2];
    FILE *tmp = tmpfile();
    if (!tmp)
        return NULL;
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    log_init(json, LOG_INFO);
    log_event(LOG_INFO, "test", f, "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    fclose(tmp);
    buf[n] = '\0';
    return buf;
}

/* A JSON check for the lines mrs writes: one object of "key":value pairs,
 * each value a string or an array of strings, strings holding printable
 * ASCII with \\ and \" as the only escapes, and a newline at the end. */
static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return NULL;
        if (*p == '\\' && *++p != '\\' && *p != '"')
            return NULL;
    }
    return p + 1;
}

static int json_line_ok(const char *line)
{
    const char *p = line;
    if (*p++ != '{')
        return 0;
    for (int first = 1;; first = 0) {
        if (*p == '}')
            return !first && p[1] == '\n' && p[2] == '\0';
        if (!first && *p++ != ',')
            return 0;
        if (!(p = json_string(p)) || *p++ != ':')
            return 0;
        if (*p == '[') {
            p++;
            for (int item = 0; *p != ']'; item++)
                if ((item && *p++ != ',') || !(p = json_string(p)))
                    return 0;
            p++;
        } else if (!(p = json_string(p))) {
            return 0;
        }
    }
}

static void test_escapes_in_text_and_json(void)
{
    struct log_fields f = {.user = "a\"b\\c d", .client = "plain", .reason = "tab\there\x01"};
    const char *t = capture(0, &f, "msg with \x7f byte");
    CHECK(t && strstr(t, " user=\"a\\\"b\\\\c d\"") != NULL);
    CHECK(t && strstr(t, " client=plain") != NULL);
    CHECK(t && strstr(t, " reason=\"tab\\\\x09here\\\\x01\"") != NULL);
    CHECK(t && strstr(t, ": msg with \\x7f byte\n") != NULL);
    const char *j = capture(1, &f, "m\"q");
    CHECK(j && strstr(j, "\"user\":\"a\\\"b\\\\c d\"") != NULL);
    CHECK(j && strstr(j, "\"msg\":\"m\\\"q\"}") != NULL);
    CHECK(j && json_line_ok(j));
}

/* A line long enough to be cut (a user of bytes escaped as \\xNN, then
 * a message of escaped quotes and backslashes shifted by one byte at a
 * time, so the cut falls at every offset of an escape): the JSON line
 * still parses and ends with ..."}; the text line stays one line. */
static void test_cut_line_never_ends_inside_an_escape(void)
{
    char user[LOG_VALUE_MAX_BYTES + 1], reason[LOG_VALUE_MAX_BYTES + 1], msg[LOG_VALUE_MAX_BYTES + 1];
    memset(user, 1, sizeof user - 1);
    user[sizeof user - 1] = '\0';
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    int bad = 0, cut_in_msg = 0;
    for (size_t shift = 0; shift < 40 && !bad; shift++) {
        size_t i = 0;
        for (; i < shift; i++) msg[i] = 'x';
        for (; i < sizeof msg - 1; i++) msg[i] = i % 3 == 1 ? '\\' : '"';
        msg[i] = '\0';
        struct log_fields f = {.user = user, .reason = reason};
        const char *j = capture(1, &f, msg);
        size_t n = j ? strlen(j) : 0;
        if (!j || n > LOG_LINE_MAX_BYTES || !json_line_ok(j) || n < 6 ||
            strcmp(j + n - 6, "...\"}\n") != 0) {
            fprintf(stderr, "  shift %zu: ...%s", shift, j && n > 40 ? j + n - 40 : "");
            bad = 1;
        }
        cut_in_msg += j && strstr(j, "\"msg\":\"") != NULL;
        const char *t = capture(0, &f, msg);
        n = t ? strlen(t) : 0;
        if (!t || n > LOG_LINE_MAX_BYTES || n < 1 || t[n - 1] != '\n' || memchr(t, '\n', n - 1))
            bad = 1;
    }
    CHECK(!bad);
    CHECK(cut_in_msg > 0); /* the cut did fall inside the escaped message */
}

/* Cut anywhere else (in a key, between fields): the line goes back to its
 * last whole field and says it was cut.  The lengths put the cut on every
 * byte of the "from" field and the "reason" key after it. */
static void test_cut_outside_a_value_keeps_the_line_json(void)
{
    char user[LOG_VALUE_MAX_BYTES + 1], client[101], from[200], reason[LOG_VALUE_MAX_BYTES + 1];
    memset(user, 1, sizeof user - 1);
    user[sizeof user - 1] = '\0';
    memset(client, 1, sizeof client - 1);
    client[sizeof client - 1] = '\0';
    memset(reason, 1, sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    int bad = 0, outside = 0;
    for (size_t n = 100; n < sizeof from && !bad; n++) {
        memset(from, 'f', n);
        from[n] = '\0';
        struct log_fields f = {.user = user, .client = client, .from = from, .reason = reason};
        const char *j = capture(1, &f, "");
        if (!j || strlen(j) > LOG_LINE_MAX_BYTES || !json_line_ok(j)) {
            fprintf(stderr, "  from of %zu bytes: ...%s", n, j && strlen(j) > 60 ? j + strlen(j) - 60 : "");
            bad = 1;
        }
        outside += j && strstr(j, ",\"cut\":\"...\"}") != NULL;
    }
    CHECK(!bad);
    CHECK(outside > 0);
}

/* Random fields and messages of the bytes that need escaping: every JSON
 * line parses, every text line is one line of printable ASCII. */
static void test_random_lines_parse(void)
{
    static const char alphabet[] = "\\\"\x01\x80 =a\n\r";
    char v[6][LOG_VALUE_MAX_BYTES + 40];
    srand(3);
    int bad = 0;
    for (int round = 0; round < 3000 && !bad; round++) {
        for (int k = 0; k < 6; k++) {
            size_t n = (size_t)rand() % (sizeof v[k] - 1);
            for (size_t i = 0; i < n; i++) v[k][i] = alphabet[rand() % (sizeof alphabet - 1)];
            v[k][n] = '\0';
        }
        struct log_fields f = {.user = v[0], .client = v[1], .from = v[2], .rcpt = v[3], .reason = v[4]};
        const char *j = capture(1, &f, v[5]);
        if (!j || strlen(j) > LOG_LINE_MAX_BYTES || !json_line_ok(j)) {
            fprintf(stderr, "  round %d: ...%s", round, j && strlen(j) > 60 ? j + strlen(j) - 60 : "");
            bad = 1;
        }
        const char *t = capture(0, &f, v[5]);
        size_t n = t ? strlen(t) : 0;
        for (size_t i = 0; t && i + 1 < n; i++)
            if ((unsigned char)t[i] < 0x20 || (unsigned char)t[i] >= 0x7f)
                bad = 1;
        if (!t || n > LOG_LINE_MAX_BYTES || t[n - 1] != '\n')
            bad = 1;
    }
    CHECK(!bad);
}

UNIT_MAIN("log", UNIT_CASE(test_escapes_in_text_and_json), UNIT_CASE(test_cut_line_never_ends_inside_an_escape),
          UNIT_CASE(test_cut_outside_a_value_keeps_the_line_json), UNIT_CASE(test_random_lines_parse))
