// fuzz-srcs: src/idna.c
/* libFuzzer target: UTF-8 validation, Punycode both ways and A-labels.
 * Invariants: decode(encode(x)) == x; encode(decode(s)) decodes to the same
 * code points; an A-label result is ASCII and at most 253 bytes. */
#include "idna.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char out[512];
    uint32_t cps[256], back[256];
    (void)idna_utf8_valid(s, size);
    int n = idna_punycode_decode(s, size, cps, 256);
    if (n >= 0) {
        int e = idna_punycode_encode(cps, (size_t)n, out, sizeof out);
        if (e >= 0) {
            int m = idna_punycode_decode(out, (size_t)e, back, 256);
            if (m != n || memcmp(back, cps, (size_t)n * sizeof *cps) != 0)
                __builtin_trap();
        }
    }
    int a = idna_to_ascii(s, size, out, sizeof out);
    if (a >= 0 && ((size_t)a != strlen(out) || a > IDNA_DOMAIN_MAX_BYTES || !idna_is_ascii(out, (size_t)a)))
        __builtin_trap();
    return 0;
}
