// fuzz-srcs: src/smtp_proto.c src/util.c src/idna.c src/dsn.c
/* libFuzzer target: SMTP command lines and MAIL/RCPT arguments. */
#include "smtp_proto.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_command c;
    struct smtp_path p;
    const char *line = (const char *)data;
    smtp_parse_command(line, size, &c);
    if (c.arg < line || c.arg + c.arg_len > line + size)
        __builtin_trap();
    if (smtp_parse_mail(c.arg, c.arg_len, &p) == SMTP_PATH_OK) {
        /* an accepted address never carries CR, LF or NUL and fits its limit */
        if (p.addr_len > SMTP_PATH_MAX_BYTES || strlen(p.addr) != p.addr_len ||
            strpbrk(p.addr, "\r\n"))
            __builtin_trap();
    }
    if (smtp_parse_rcpt(c.arg, c.arg_len, &p) == SMTP_PATH_OK && (p.at >= p.addr_len || p.null))
        __builtin_trap();
    int code;
    bool last;
    const char *text;
    size_t tl;
    if (smtp_parse_reply_line(line, size, &code, &last, &text, &tl) == 0 &&
        (code < 200 || code > 599 || text + tl > line + size))
        __builtin_trap();
    return 0;
}
