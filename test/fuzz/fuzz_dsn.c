// fuzz-srcs: src/dsn.c src/util.c
/* libFuzzer target: RFC 3461 xtext and the DSN parameters.  Whatever the
 * input, a decoded value is printable ASCII (never CR, LF, NUL), encoding
 * it again and decoding gives it back, and a NOTIFY list that parses
 * formats to a list that parses to the same bits. */
#include "dsn.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_decode(const char *in, size_t n)
{
    char out[2048], enc[6200], again[2048];
    size_t len, len2;
    if (dsn_xtext_decode(in, n, out, sizeof out, &len) < 0)
        return;
    if (len > n || strlen(out) != len)
        __builtin_trap();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            __builtin_trap();
    int e = dsn_xtext_encode(out, len, enc, sizeof enc);
    if (e < 0 || dsn_xtext_decode(enc, (size_t)e, again, sizeof again, &len2) < 0 || len2 != len ||
        memcmp(out, again, len) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    if (size > 2000)
        return 0;
    check_decode(in, size);
    unsigned bits, again;
    char text[DSN_NOTIFY_TEXT_BYTES];
    if (dsn_parse_notify(in, size, &bits) == 0) {
        dsn_notify_text(bits, text);
        if (!bits || dsn_parse_notify(text, strlen(text), &again) < 0 || again != bits)
            __builtin_trap();
    }
    char orcpt[DSN_ORCPT_XTEXT_MAX_BYTES + 1];
    if (dsn_parse_orcpt(in, size, orcpt, sizeof orcpt, NULL) == 0 && strpbrk(orcpt, "\r\n"))
        __builtin_trap();
    /* key=value, as the SMTP parser splits a parameter, for MAIL and RCPT */
    const char *eq = memchr(in, '=', size);
    size_t klen = eq ? (size_t)(eq - in) : size;
    struct dsn_params d;
    for (int mail = 0; mail < 2; mail++) {
        memset(&d, 0, sizeof d);
        int r = dsn_parse_param(in, klen, eq ? eq + 1 : NULL, eq ? size - klen - 1 : 0, mail, &d);
        if (r < 0 && !d.why)
            __builtin_trap();
        if (r == 0 && (strlen(d.envid) > DSN_ENVID_XTEXT_MAX_BYTES || d.orcpt_len > DSN_ORCPT_XTEXT_MAX_BYTES ||
                       (d.orcpt && (d.orcpt < in || d.orcpt + d.orcpt_len > in + size))))
            __builtin_trap();
    }
    return 0;
}
