// fuzz-srcs: src/config.c src/log.c src/util.c
/* libFuzzer target: the config value parsers (durations, sizes, numbers,
 * booleans, listen addresses, host:port, IP:port, rates, domains).  The
 * first byte picks the parser; the rest, NUL-terminated, is the value. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *v = malloc(size);
    memcpy(v, data + 1, size - 1);
    v[size - 1] = '\0';
    int64_t a, b;
    bool f;
    struct config_listen l;
    struct config_hostport hp;
    struct sockaddr_storage ss;
    socklen_t sl;
    switch (data[0] % 9) {
    case 0:
        if (config_parse_duration_ms(v, &a) == 0 && a < 0)
            __builtin_trap();
        break;
    case 1:
        if (config_parse_size(v, &a) == 0 && a < 0)
            __builtin_trap();
        break;
    case 2:
        if (config_parse_uint(v, 1, 1000, &a) == 0 && (a < 1 || a > 1000))
            __builtin_trap();
        break;
    case 3:
        config_parse_bool(v, &f);
        break;
    case 4:
        if (config_parse_listen(v, &l) == 0 && !l.off && l.port == 0)
            __builtin_trap();
        break;
    case 5:
        if (config_parse_hostport(v, 25, &hp) == 0 && (hp.port == 0 || hp.host[0] == '\0'))
            __builtin_trap();
        break;
    case 6:
        if (config_parse_ip_port(v, 53, &ss, &sl) == 0 && sl > sizeof ss)
            __builtin_trap();
        break;
    case 7:
        if (config_parse_rate(v, &a, &b) == 0 && (a < 0 || (a > 0 && b < 1000)))
            __builtin_trap();
        break;
    default:
        if (config_valid_domain(v) && (strlen(v) == 0 || strlen(v) > CONFIG_HOSTNAME_MAX_BYTES))
            __builtin_trap();
    }
    free(v);
    return 0;
}
