// fuzz-srcs: src/smtp_proto.c src/idna.c src/util.c src/dsn.c
/*
 * fuzz_bdat — libFuzzer target for CHUNKING's pure parts (RFC 3030): the
 * BDAT argument parser and the chunk scanner that finds bare CR/LF and NUL
 * across chunk boundaries.  Input: byte 0 picks how the rest is cut into
 * chunks (1..256 bytes each, one seed for all cuts), then BDAT arguments and
 * data alike.
 * Invariants: a parsed size is 0..10^18-1 and "LAST" is the only word;
 * scanning in chunks gives the same flags as scanning the whole at once,
 * and the same as the DATA decoder's flags for the same lines (bare CR/LF,
 * NUL) when the data has no dot line; a CRLF is appended only when the
 * data does not end with one.
 */
#include "smtp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = data[0];
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    int64_t sz;
    bool last;
    if (smtp_parse_bdat(s, n, &sz, &last) == 0) {
        if (sz < 0 || sz > 999999999999999999LL)
            abort();
        if (last && n < 6)
            abort(); /* "0 LAST" is the shortest */
    }
    struct smtp_dot whole, parts;
    smtp_dot_init(&whole);
    smtp_dot_init(&parts);
    smtp_chunk_scan(&whole, s, n);
    for (size_t i = 0; i < n;) {
        size_t k = 1 + (seed * 131 + i * 7) % 256;
        if (k > n - i)
            k = n - i;
        smtp_chunk_scan(&parts, s + i, k);
        i += k;
    }
    if (whole.bare != parts.bare || whole.nul != parts.nul || whole.state != parts.state)
        abort();
    bool append = smtp_chunk_end(&parts);
    bool ends_crlf = n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n';
    if (append != (n > 0 && s[n - 1] != '\r' && s[n - 1] != '\n'))
        abort();
    /* the DATA decoder on the same bytes + the end marker sees the same
     * bare line ends and NULs, when no line starts with a dot */
    bool dotline = n > 0 && s[0] == '.';
    for (size_t i = 0; i + 1 < n && !dotline; i++)
        dotline = s[i] == '\n' && s[i + 1] == '.';
    if (!dotline && !parts.bare && n > 0 && ends_crlf) {
        char *in = malloc(n + 3), *out = malloc(n + 5);
        if (!in || !out)
            abort();
        memcpy(in, s, n);
        memcpy(in + n, ".\r\n", 3);
        struct smtp_dot dot;
        size_t out_len;
        smtp_dot_init(&dot);
        size_t used = smtp_dot_feed(&dot, in, n + 3, out, &out_len);
        if (!dot.done || used != n + 3 || dot.bare || dot.nul != parts.nul || out_len != n ||
            memcmp(out, s, n) != 0)
            abort();
        free(in);
        free(out);
    }
    return 0;
}
