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

/* json_strings_ok — every backslash in the line starts \\ or \" (the only
 * escapes mrs writes), the line is one {...} object ending in a newline,
 * and quotes pair up. */
static int json_strings_ok(const char *line)
{
    size_t n = strlen(line);
    if (n < 3 || line[0] != '{' || line[n - 1] != '\n' || line[n - 2] != '}')
        return 0;
    int in_string = 0;
    for (size_t i = 0; i < n - 1; i++) {
        if (in_string && line[i] == '\\') {
            if (line[i + 1] != '\\' && line[i + 1] != '"')
                return 0;
            i++;
            continue;
        }
        if (line[i] == '"')
            in_string = !in_string;
        if ((unsigned char)line[i] < 0x20)
            return 0;
    }
    return !in_string;
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
    CHECK(j && json_strings_ok(j));
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
        if (!j || n > LOG_LINE_MAX_BYTES || !json_strings_ok(j) || n < 6 ||
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

UNIT_MAIN("log", UNIT_CASE(test_escapes_in_text_and_json), UNIT_CASE(test_cut_line_never_ends_inside_an_escape))
