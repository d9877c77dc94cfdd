// fuzz-srcs: src/auth.c src/crypto.c src/config.c src/log.c src/util.c
/* libFuzzer target: the SASL PLAIN and LOGIN decoders. */
#include "auth.h"
#include "crypto.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready && crypto_init() == 0)
        ready = 1;
    char user[AUTH_USER_MAX_BYTES + 2], pw[AUTH_PASSWORD_MAX_BYTES + 2], line[512];
    size_t ul, pl, n;
    if (auth_decode_plain((const char *)data, size, user, &ul, pw, &pl) == 0 &&
        (ul == 0 || ul > AUTH_USER_MAX_BYTES || pl > AUTH_PASSWORD_MAX_BYTES || strlen(user) != ul ||
         strlen(pw) != pl))
        __builtin_trap();
    if (auth_decode_line((const char *)data, size, line, sizeof line, &n) == 0 &&
        (n >= sizeof line || strlen(line) != n))
        __builtin_trap();
    return 0;
}
