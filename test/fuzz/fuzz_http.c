// fuzz-srcs: src/http.c
/*
 * fuzz_http — libFuzzer target for the health listener's HTTP parsers:
 * http_parse_request (every byte a client sends to the health port) and
 * http_parse_status (every byte `mrs healthcheck` reads back).
 *
 * Besides memory safety it checks the parser's contract: MORE only below
 * HTTP_HEAD_MAX_BYTES; a DONE head lies inside the input and ends in CRLF
 * CRLF; errors carry a known status; and parsing is monotonic — once a
 * prefix is refused or complete, every longer input gives the same answer.
 */
#include "http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(c)   \
    do {                 \
        if (!(c))        \
            abort();     \
    } while (0)

static enum http_parse_result check(const char *b, size_t n, struct http_request *r)
{
    enum http_parse_result pr = http_parse_request(b, n, r);
    if (pr == HTTP_PARSE_MORE)
        FUZZ_ASSERT(n < HTTP_HEAD_MAX_BYTES);
    if (pr == HTTP_PARSE_DONE) {
        FUZZ_ASSERT(r->head_len >= 4 && r->head_len <= n && r->head_len <= HTTP_HEAD_MAX_BYTES);
        FUZZ_ASSERT(memcmp(b + r->head_len - 4, "\r\n\r\n", 4) == 0);
        FUZZ_ASSERT(memchr(b, 0, r->head_len) == NULL);
        FUZZ_ASSERT(r->path >= b && r->path_len >= 1 && r->path[0] == '/');
        FUZZ_ASSERT(r->path + r->path_len <= b + r->head_len);
        FUZZ_ASSERT(r->version_minor == 0 || r->version_minor == 1);
    }
    if (pr == HTTP_PARSE_ERROR)
        FUZZ_ASSERT(r->error && (r->status == 400 || r->status == 413 || r->status == 414 ||
                                 r->status == 431 || r->status == 505));
    return pr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    struct http_request whole, part;
    enum http_parse_result pr = check(b, size, &whole);

    /* prefixes: every one for short inputs, a few split points otherwise */
    size_t step = size <= 256 ? 1 : size / 16;
    for (size_t n = 0; n < size; n += step) {
        enum http_parse_result pp = check(b, n, &part);
        if (pp == HTTP_PARSE_DONE)
            FUZZ_ASSERT(pr == HTTP_PARSE_DONE && whole.head_len == part.head_len);
        if (pp == HTTP_PARSE_ERROR)
            FUZZ_ASSERT(pr == HTTP_PARSE_ERROR && whole.status == part.status);
    }

    int status = 0;
    int sr = http_parse_status(b, size, &status);
    FUZZ_ASSERT(sr >= -1 && sr <= 1);
    if (sr == 1)
        FUZZ_ASSERT(status >= 100 && status <= 999);
    return 0;
}
