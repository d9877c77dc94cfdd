// fuzz-srcs: src/smtp_proto.c src/util.c src/idna.c src/dsn.c
/* libFuzzer target: the DATA decoder.  Invariants: it stops exactly after
 * the first <CRLF>.<CRLF> of a clean message, never writes more than n + 2
 * bytes, and decoding in two chunks gives the same result as in one. */
#include "smtp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = data[0] % (size);
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *a = malloc(n + 2), *b = malloc(n + 4);
    struct smtp_dot d1, d2;
    size_t alen, b1, b2;
    smtp_dot_init(&d1);
    size_t used1 = smtp_dot_feed(&d1, in, n, a, &alen);
    if (alen > n + 2)
        __builtin_trap();
    smtp_dot_init(&d2);
    size_t first = split < n ? split : n;
    size_t u2 = smtp_dot_feed(&d2, in, first, b, &b1);
    if (!d2.done && u2 == first)
        u2 += smtp_dot_feed(&d2, in + first, n - first, b + b1, &b2);
    else
        b2 = 0;
    if (used1 != u2 || d1.done != d2.done || d1.bare != d2.bare || alen != b1 + b2 ||
        memcmp(a, b, alen) != 0)
        __builtin_trap();
    /* a clean message ends only at CRLF.CRLF, which must then be where we stopped */
    if (d1.done && !d1.bare && (used1 < 3 || memcmp(in + used1 - 3, ".\r\n", 3) != 0))
        __builtin_trap();
    free(a);
    free(b);
    return 0;
}
