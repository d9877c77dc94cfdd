/*
 * config — environment → one read-only struct (see config.h).
 *
 * A table lists every variable with its default and the parser that reads
 * it; config_load() walks the table, so a variable cannot be read without
 * being validated, and every error message has the same shape:
 *   MRS_X: invalid value 'abc': expected <what is accepted>
 * Leaf module: libc only.
 */
#include "config.h"

#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct config cfg;
const struct config *config = &cfg;

/* ---- pure value parsers ---------------------------------------------- */

/* parse_i64 — the one checked number parser: decimal digits only, no sign,
 * no spaces, no overflow.  *end gets the first byte after the digits. */
static int parse_i64(const char *s, int64_t *out, const char **end)
{
    int64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

static int mul_checked(int64_t v, int64_t m, int64_t *out)
{
    if (v != 0 && m > INT64_MAX / v)
        return -1;
    *out = v * m;
    return 0;
}

int config_parse_uint(const char *s, int64_t min, int64_t max, int64_t *out)
{
    int64_t v;
    const char *end;
    if (parse_i64(s, &v, &end) < 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int config_parse_duration_ms(const char *s, int64_t *out)
{
    int64_t v, mult;
    const char *end;
    if (parse_i64(s, &v, &end) < 0)
        return -1;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        mult = 86400 * 1000;
    else
        return -1;
    return mul_checked(v, mult, out);
}

int config_parse_size(const char *s, int64_t *out)
{
    int64_t v, mult = 1;
    const char *end;
    if (parse_i64(s, &v, &end) < 0)
        return -1;
    char unit = (char)toupper((unsigned char)*end);
    if (*end != '\0') {
        if (unit == 'K')
            mult = 1024;
        else if (unit == 'M')
            mult = 1024 * 1024;
        else if (unit == 'G')
            mult = 1024 * 1024 * 1024;
        else
            return -1;
        end++;
        if (*end == 'B' || *end == 'b')
            end++;
        if (*end != '\0')
            return -1;
    }
    return mul_checked(v, mult, out);
}

int config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

bool config_valid_domain(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > CONFIG_HOSTNAME_MAX_BYTES)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum(c) || c == '_' || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return s[n - 1] != '-';
}

/* split "host:port" / "[v6]:port" / "host" into host text and port. */
static int split_hostport(const char *s, char *host, size_t host_len, uint16_t default_port,
                          uint16_t *port, bool *bracketed)
{
    const char *colon;
    size_t hlen;
    *bracketed = false;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return -1;
        hlen = (size_t)(close - s - 1);
        if (hlen >= host_len)
            return -1;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        *bracketed = true;
        if (close[1] == '\0') {
            *port = default_port;
            return default_port ? 0 : -1;
        }
        if (close[1] != ':')
            return -1;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) {
            /* bare IPv6 literal without port */
            size_t n = strlen(s);
            if (n >= host_len || default_port == 0)
                return -1;
            memcpy(host, s, n + 1);
            *port = default_port;
            return 0;
        }
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (hlen >= host_len)
            return -1;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (!colon) {
            *port = default_port;
            return default_port ? 0 : -1;
        }
    }
    int64_t p;
    if (config_parse_uint(colon + 1, 1, 65535, &p) < 0)
        return -1;
    *port = (uint16_t)p;
    return 0;
}

static int ip_literal(const char *host, uint16_t port, struct sockaddr_storage *out,
                      socklen_t *out_len)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *out_len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *out_len = sizeof *v6;
        return 0;
    }
    return -1;
}

int config_parse_ip_port(const char *s, uint16_t default_port, struct sockaddr_storage *out,
                         socklen_t *out_len)
{
    char host[64];
    uint16_t port;
    bool br;
    if (split_hostport(s, host, sizeof host, default_port, &port, &br) < 0)
        return -1;
    if (br && !strchr(host, ':'))
        return -1;
    return ip_literal(host, port, out, out_len);
}

int config_parse_listen(const char *s, struct config_listen *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->text, sizeof out->text, "%s", s);
    if (strcmp(s, "off") == 0) {
        out->off = true;
        return 0;
    }
    char host[64];
    bool br;
    if (strlen(s) >= sizeof out->text ||
        split_hostport(s, host, sizeof host, 0, &out->port, &br) < 0)
        return -1;
    if (host[0] == '\0' && !br) {
        out->any = true;
        return 0;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    return ip_literal(host, out->port, &out->addr, &out->addr_len);
}

int config_parse_hostport(const char *s, uint16_t default_port, struct config_hostport *out)
{
    bool br;
    memset(out, 0, sizeof *out);
    if (split_hostport(s, out->host, sizeof out->host, default_port, &out->port, &br) < 0)
        return -1;
    if (out->host[0] == '\0')
        return -1;
    struct sockaddr_storage ss;
    socklen_t l;
    if (ip_literal(out->host, out->port, &ss, &l) == 0)
        return 0;
    return br || !config_valid_domain(out->host) ? -1 : 0;
}

int config_parse_rate(const char *s, int64_t *count, int64_t *window_ms)
{
    int64_t n;
    const char *end;
    if (strcmp(s, "0") == 0) {
        *count = 0;
        *window_ms = 0;
        return 0;
    }
    if (parse_i64(s, &n, &end) < 0 || n <= 0 || *end != '/')
        return -1;
    end++;
    int64_t w;
    /* "500/h" or "500/2h" */
    if (isdigit((unsigned char)*end)) {
        if (config_parse_duration_ms(end, &w) < 0)
            return -1;
    } else {
        char unit[8];
        if (strlen(end) + 2 > sizeof unit)
            return -1;
        snprintf(unit, sizeof unit, "1%s", end);
        if (strcmp(end, "ms") == 0 || config_parse_duration_ms(unit, &w) < 0)
            return -1;
    }
    if (w < 1000)
        return -1;
    *count = n;
    *window_ms = w;
    return 0;
}

char *config_read_file(const char *path, size_t max, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(max + 1);
    size_t len = 0;
    if (!buf)
        goto fail;
    for (;;) {
        if (len == max) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                errno = EFBIG;
                goto fail;
            }
            break;
        }
        ssize_t n = read(fd, buf + len, max - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
fail:;
    int e = errno;
    free(buf);
    close(fd);
    errno = e;
    return NULL;
}

/* parse_net — one "ADDR[/PREFIX]" into a (mapped) network. */
static int parse_net(const char *s, size_t n, struct config_net *out)
{
    char text[INET6_ADDRSTRLEN + 8];
    if (n == 0 || n >= sizeof text)
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    char *slash = strchr(text, '/');
    int64_t prefix = -1;
    if (slash) {
        *slash = '\0';
        if (config_parse_uint(slash + 1, 0, 128, &prefix) < 0)
            return -1;
    }
    memset(out, 0, sizeof *out);
    struct in_addr v4;
    if (inet_pton(AF_INET, text, &v4) == 1) {
        if (prefix > 32)
            return -1;
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, &v4, 4);
        out->prefix = (unsigned)(prefix < 0 ? 32 : prefix) + 96;
    } else if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->prefix = (unsigned)(prefix < 0 ? 128 : prefix);
    } else {
        return -1;
    }
    /* the host bits must be zero: 10.0.0.1/8 is most likely a typo */
    for (unsigned bit = out->prefix; bit < 128; bit++)
        if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
            return -1;
    return 0;
}

int config_parse_nets(const char *s, struct config_net *out, int max, int *count)
{
    *count = 0;
    if (strcmp(s, "none") == 0)
        return 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (*count == max || parse_net(p, n, &out[*count]) < 0)
            return -1;
        (*count)++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

bool config_addr_in_nets(const struct sockaddr *sa, const struct config_net *nets, int count)
{
    uint8_t a[16] = {0};
    if (sa->sa_family == AF_INET) {
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    } else {
        return false;
    }
    for (int i = 0; i < count; i++) {
        unsigned full = nets[i].prefix / 8, rest = nets[i].prefix % 8;
        if (memcmp(a, nets[i].addr, full) != 0)
            continue;
        if (rest && ((a[full] ^ nets[i].addr[full]) & (uint8_t)(0xff00 >> rest)))
            continue;
        return true;
    }
    return false;
}

void config_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
        port = ntohs(v4->sin_port);
        snprintf(buf, len, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const void *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
        port = ntohs(v6->sin6_port);
        snprintf(buf, len, "[%s]:%u", ip, port);
    } else {
        snprintf(buf, len, "unix");
    }
}

/* dkim_selector_ok — one DNS label: letters, digits, inner hyphens. */
static bool dkim_selector_ok(const char *s, size_t n)
{
    if (n == 0 || n > CONFIG_DKIM_SELECTOR_MAX_BYTES || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* dkim_key_item — one "SELECTOR:PATH" of n bytes into out. */
static int dkim_key_item(const char *p, size_t n, struct config_dkim_key *out)
{
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return -1;
    size_t sl = (size_t)(colon - p), pl = n - sl - 1;
    /* the validator proves syntax; the copies prove "fits" */
    if (!dkim_selector_ok(p, sl) || pl == 0 || util_copy(out->selector, sizeof out->selector, p, sl) < 0 ||
        util_copy(out->path, sizeof out->path, colon + 1, pl) < 0)
        return -1;
    return memchr(out->path, '\0', pl) ? -1 : 0;
}

int config_parse_dkim_keys(const char *s, struct config_dkim_key *out, int max, int *count)
{
    *count = 0;
    for (const char *p = s; *p;) {
        if (*p == '#') { /* a comment: to the end of the line */
            while (*p && *p != '\n')
                p++;
            continue;
        }
        if (*p == ',' || isspace((unsigned char)*p)) {
            p++;
            continue;
        }
        size_t n = strcspn(p, ", \t\r\n#");
        if (*count == max || dkim_key_item(p, n, &out[*count]) < 0)
            return -1;
        for (int i = 0; i < *count; i++)
            if (strcasecmp(out[i].selector, out[*count].selector) == 0)
                return -1;
        (*count)++;
        p += n;
    }
    return *count > 0 ? 0 : -1;
}

/* ---- the variable table ---------------------------------------------- */

enum kind {
    K_DURATION, K_SIZE, K_UINT, K_BOOL, K_LISTEN, K_PATH, K_DOMAIN, K_PREFIX,
    K_PORT, K_LOGFMT, K_LOGLEVEL, K_TLSMODE, K_DNS, K_SMARTHOST, K_RATE, K_TEXT,
    K_USERS, K_SECRET, K_HOSTNAME, K_NETS, K_DKIMKEYS, K_DKIMFILE
};

struct var {
    const char *name;
    enum kind kind;
    const char *def;        /* NULL: unset by default */
    size_t off;             /* offset of the field in struct config */
    int64_t min, max;       /* K_UINT / K_DURATION bounds (ms for durations) */
    const char *accepted;   /* for error messages */
};

#define F(field) offsetof(struct config, field)
#define DAY_MS (86400LL * 1000)

static const struct var vars[] = {
    {"MRS_HOSTNAME", K_HOSTNAME, NULL, F(hostname), 0, 0, "a DNS host name"},
    {"MRS_SUBMISSION_LISTEN", K_LISTEN, ":587", F(submission), 0, 0, "HOST:PORT, :PORT, [IPv6]:PORT or off"},
    {"MRS_SUBMISSIONS_LISTEN", K_LISTEN, ":465", F(submissions), 0, 0, "HOST:PORT, :PORT, [IPv6]:PORT or off"},
    {"MRS_HEALTH_LISTEN", K_LISTEN, ":8080", F(health), 0, 0, "HOST:PORT, :PORT, [IPv6]:PORT or off"},
    {"MRS_TLS_CERT", K_PATH, NULL, F(tls_cert), 0, 0, "a path to a PEM certificate chain"},
    {"MRS_TLS_KEY", K_PATH, NULL, F(tls_key), 0, 0, "a path to a PEM private key"},
    {"MRS_USERS", K_USERS, NULL, F(users_inline), 0, 0, "username:hash entries"},
    {"MRS_SPF_INCLUDE", K_DOMAIN, "elastx.email", F(spf_include), 0, 0, "a domain name"},
    {"MRS_TOKEN_PREFIX", K_PREFIX, "elastx-mrs", F(token_prefix), 0, 0, "letters, digits, '.', '_' or '-' (at most 63)"},
    {"MRS_CHECK_HEADER_FROM", K_BOOL, "on", F(check_header_from), 0, 0, "on or off"},
    {"MRS_DKIM_KEYS", K_DKIMKEYS, NULL, 0, 0, 0, "comma-separated SELECTOR:PATH (a selector is one DNS label, unique; at most 8 keys)"},
    {"MRS_DKIM_KEYS_FILE", K_DKIMFILE, NULL, F(dkim_keys_file), 0, 0, "a readable file of SELECTOR:PATH lines (at most 8 keys)"},
    {"MRS_DKIM_DOMAIN", K_DOMAIN, NULL, F(dkim_domain), 0, 0, "a domain name"},
    {"MRS_DNS_SERVERS", K_DNS, NULL, 0, 0, 0, "comma-separated IP, IP:PORT or [IPv6]:PORT (at most 8)"},
    {"MRS_DNS_TIMEOUT", K_DURATION, "2s", F(dns_timeout_ms), 100, 60000, "a duration from 100ms to 60s, e.g. 2s"},
    {"MRS_DNS_DEADLINE", K_DURATION, "10s", F(dns_deadline_ms), 100, 120000, "a duration from 100ms to 120s, e.g. 10s"},
    {"MRS_DNS_RECHECK", K_DURATION, "60s", F(dns_recheck_ms), 0, DAY_MS, "a duration up to 1d, e.g. 60s"},
    {"MRS_DANE", K_BOOL, "off", F(dane), 0, 0, "on or off"},
    {"MRS_DNS_CACHE_ENTRIES", K_UINT, "10000", F(dns_cache_entries), 0, 10000000, "a number from 0 to 10000000"},
    {"MRS_SPOOL_DIR", K_PATH, "/var/spool/mrs", F(spool_dir), 0, 0, "a directory path"},
    {"MRS_SMARTHOST", K_SMARTHOST, NULL, F(smarthost), 0, 0, "HOST:PORT or [IPv6]:PORT"},
    {"MRS_SMARTHOST_USER", K_TEXT, NULL, F(smarthost_user), 0, 0, "a user name (at most 255 bytes)"},
    {"MRS_SMARTHOST_PASSWORD", K_SECRET, NULL, F(smarthost_password), 0, 0, "a password"},
    {"MRS_SMARTHOST_TLS", K_TLSMODE, "starttls", F(smarthost_tls), 0, 0, "starttls, tls or none"},
    {"MRS_SMARTHOST_CA_FILE", K_PATH, NULL, F(smarthost_ca_file), 0, 0, "a path to a PEM CA bundle"},
    {"MRS_MTA_STS", K_BOOL, "on", F(mta_sts), 0, 0, "on or off"},
    {"MRS_OUTBOUND_CA_FILE", K_PATH, NULL, F(outbound_ca_file), 0, 0, "a path to a PEM CA bundle"},
    {"MRS_MTA_STS_PORT", K_PORT, "443", F(mta_sts_port), 1, 65535, "a port number from 1 to 65535"},
    {"MRS_DELIVERY_PORT", K_PORT, "25", F(delivery_port), 1, 65535, "a port number from 1 to 65535"},
    {"MRS_DELIVERY_THREADS", K_UINT, "8", F(delivery_threads), 1, 1024, "a number from 1 to 1024"},
    {"MRS_DELIVERY_CONNECT_TIMEOUT", K_DURATION, "30s", F(delivery_connect_timeout_ms), 100, 600000, "a duration from 100ms to 10m"},
    {"MRS_DELIVERY_COMMAND_TIMEOUT", K_DURATION, "5m", F(delivery_command_timeout_ms), 100, 3600000, "a duration from 100ms to 1h"},
    {"MRS_DELIVERY_DATA_TIMEOUT", K_DURATION, "10m", F(delivery_data_timeout_ms), 100, 3600000, "a duration from 100ms to 1h"},
    {"MRS_DELIVERY_ATTEMPT_TIMEOUT", K_DURATION, "15m", F(delivery_attempt_timeout_ms), 1000, DAY_MS, "a duration from 1s to 1d, e.g. 15m"},
    {"MRS_DELIVERY_DOMAIN_CONCURRENCY", K_UINT, "4", F(delivery_domain_concurrency), 1, 1024, "a number from 1 to 1024"},
    {"MRS_DELIVERY_CONNECTION_REUSE", K_BOOL, "on", F(delivery_connection_reuse), 0, 0, "on or off"},
    {"MRS_DELIVERY_IDLE_TIMEOUT", K_DURATION, "5s", F(delivery_idle_timeout_ms), 100, 300000, "a duration from 100ms to 5m, e.g. 5s"},
    {"MRS_DELIVERY_DENY_NETS", K_NETS, "127.0.0.0/8,::1/128,0.0.0.0/8,::/128,169.254.0.0/16,fe80::/10,224.0.0.0/4,ff00::/8",
     0, 0, 0, "comma-separated CIDR networks (at most 32) or none"},
    {"MRS_MAX_MESSAGE_BYTES", K_SIZE, "26214400", F(max_message_bytes), 1024, 1LL << 31, "a size from 1K to 2G, e.g. 26214400 or 25M"},
    {"MRS_MAX_RECIPIENTS", K_UINT, "100", F(max_recipients), 1, 10000, "a number from 1 to 10000"},
    {"MRS_MAX_CONNECTIONS", K_UINT, "1000", F(max_connections), 1, 1000000, "a number from 1 to 1000000"},
    {"MRS_MAX_CONNECTIONS_PER_CLIENT", K_UINT, "20", F(max_connections_per_client), 1, 1000000, "a number from 1 to 1000000"},
    {"MRS_QUEUE_LIFETIME", K_DURATION, "5d", F(queue_lifetime_ms), 1000, 365 * DAY_MS, "a duration from 1s to 365d, e.g. 5d or 90m"},
    {"MRS_RETRY_MIN", K_DURATION, "1m", F(retry_min_ms), 100, 30 * DAY_MS, "a duration, e.g. 1m"},
    {"MRS_RETRY_MAX", K_DURATION, "1h", F(retry_max_ms), 100, 30 * DAY_MS, "a duration, e.g. 1h"},
    {"MRS_DELAY_WARNING", K_DURATION, "4h", F(delay_warning_ms), 0, 365 * DAY_MS, "a duration up to 365d, e.g. 4h (0 = no delay notices)"},
    {"MRS_RATE_LIMIT", K_RATE, "0", 0, 0, 0, "COUNT/UNIT (UNIT s, m, h or d, e.g. 500/h) or 0"},
    {"MRS_SHUTDOWN_GRACE", K_DURATION, "25s", F(shutdown_grace_ms), 0, 3600000, "a duration up to 1h, e.g. 25s"},
    {"MRS_LOG_FORMAT", K_LOGFMT, "text", F(log_format), 0, 0, "text or json"},
    {"MRS_LOG_LEVEL", K_LOGLEVEL, "info", F(log_level), 0, 0, "debug, info, warn or error"},
    {"MRS_IDLE_TIMEOUT", K_DURATION, "60s", F(idle_timeout_ms), 100, 3600000, "a duration from 100ms to 1h, e.g. 60s"},
    {"MRS_PREAUTH_TIMEOUT", K_DURATION, "30s", F(preauth_timeout_ms), 100, 3600000, "a duration from 100ms to 1h, e.g. 30s"},
    {"MRS_SESSION_TIMEOUT", K_DURATION, "30m", F(session_timeout_ms), 1000, DAY_MS, "a duration from 1s to 1d, e.g. 30m"},
    {"MRS_DATA_MIN_RATE", K_SIZE, "1024", F(data_min_rate), 0, 1LL << 30, "bytes per second, e.g. 1024 or 1K (0 = no minimum)"},
    {"MRS_AUTH_MAX_FAILURES", K_UINT, "3", F(auth_max_failures), 1, 100, "a number from 1 to 100"},
    {"MRS_RELOAD_INTERVAL", K_DURATION, "10s", F(reload_interval_ms), 0, DAY_MS, "a duration up to 1d, e.g. 10s (0 = reload only on SIGHUP)"},
    {"MRS_AUTH_CONCURRENCY", K_UINT, "2", F(auth_concurrency), 1, 64, "a number from 1 to 64"},
};

/* Variables that may be given as NAME_FILE=/path instead (SPEC §3).
 * MRS_USERS_FILE is also the documented users-file variable: same meaning. */
static bool has_file_variant(const char *name)
{
    return strcmp(name, "MRS_SMARTHOST_PASSWORD") == 0;
}

static int bad(char *err, size_t len, const char *name, const char *value, const char *accepted)
{
    char clean[128];
    log_sanitize(clean, sizeof clean, value, strlen(value));
    snprintf(err, len, "%s: invalid value '%s': expected %s", name, clean, accepted);
    return -1;
}

static int set_string(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

static int parse_dns_servers(const char *v)
{
    char item[80];
    const char *p = v;
    cfg.dns_server_count = 0;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n == 0 || n >= sizeof item || cfg.dns_server_count == CONFIG_DNS_SERVERS_MAX)
            return -1;
        memcpy(item, p, n);
        item[n] = '\0';
        int i = cfg.dns_server_count;
        if (config_parse_ip_port(item, 53, &cfg.dns_servers[i], &cfg.dns_server_lens[i]) < 0)
            return -1;
        cfg.dns_server_count++;
        p = comma ? comma + 1 : p + n;
    }
    return cfg.dns_server_count > 0 ? 0 : -1;
}

static int parse_var(const struct var *v, const char *value)
{
    void *field = (char *)&cfg + v->off;
    int64_t n;
    switch (v->kind) {
    case K_DURATION:
        if (config_parse_duration_ms(value, &n) < 0 || n < v->min || n > v->max)
            return -1;
        *(int64_t *)field = n;
        return 0;
    case K_SIZE:
        if (config_parse_size(value, &n) < 0 || n < v->min || (v->max && n > v->max))
            return -1;
        *(int64_t *)field = n;
        return 0;
    case K_UINT:
        return config_parse_uint(value, v->min, v->max, (int64_t *)field);
    case K_PORT:
        if (config_parse_uint(value, v->min, v->max, &n) < 0)
            return -1;
        *(uint16_t *)field = (uint16_t)n;
        return 0;
    case K_BOOL:
        return config_parse_bool(value, (bool *)field);
    case K_LISTEN:
        return config_parse_listen(value, (struct config_listen *)field);
    case K_PATH:
        return set_string(field, CONFIG_PATH_MAX_BYTES, value);
    case K_TEXT:
        return set_string(field, sizeof cfg.smarthost_user, value);
    case K_HOSTNAME:
    case K_DOMAIN:
        if (!config_valid_domain(value))
            return -1;
        return set_string(field, CONFIG_HOSTNAME_MAX_BYTES + 1, value);
    case K_PREFIX:
        for (const char *p = value; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
                return -1;
        return set_string(field, sizeof cfg.token_prefix, value);
    case K_LOGFMT:
        if (strcmp(value, "text") == 0)
            cfg.log_format = CONFIG_LOG_TEXT;
        else if (strcmp(value, "json") == 0)
            cfg.log_format = CONFIG_LOG_JSON;
        else
            return -1;
        return 0;
    case K_LOGLEVEL:
        for (int i = 0; i < 4; i++) {
            static const char *const names[] = {"debug", "info", "warn", "error"};
            if (strcmp(value, names[i]) == 0) {
                cfg.log_level = i;
                return 0;
            }
        }
        return -1;
    case K_TLSMODE:
        if (strcmp(value, "starttls") == 0)
            cfg.smarthost_tls = CONFIG_TLS_STARTTLS;
        else if (strcmp(value, "tls") == 0)
            cfg.smarthost_tls = CONFIG_TLS_IMPLICIT;
        else if (strcmp(value, "none") == 0)
            cfg.smarthost_tls = CONFIG_TLS_NONE;
        else
            return -1;
        return 0;
    case K_DNS:
        return parse_dns_servers(value);
    case K_SMARTHOST:
        if (config_parse_hostport(value, 25, &cfg.smarthost) < 0)
            return -1;
        cfg.smarthost_set = true;
        return 0;
    case K_RATE:
        return config_parse_rate(value, &cfg.rate_limit_count, &cfg.rate_limit_window_ms);
    case K_NETS:
        return config_parse_nets(value, cfg.deny_nets, CONFIG_NETS_MAX, &cfg.deny_net_count);
    case K_DKIMKEYS:
        return config_parse_dkim_keys(value, cfg.dkim_keys, CONFIG_DKIM_KEYS_MAX, &cfg.dkim_key_count);
    case K_DKIMFILE: {
        if (set_string(field, CONFIG_PATH_MAX_BYTES, value) < 0)
            return -1;
        char *text = config_read_file(value, CONFIG_DKIM_KEYS_FILE_MAX_BYTES, NULL);
        int rc = text ? config_parse_dkim_keys(text, cfg.dkim_keys, CONFIG_DKIM_KEYS_MAX, &cfg.dkim_key_count) : -1;
        free(text);
        return rc;
    }
    case K_USERS:
    case K_SECRET:
        if (value[0] == '\0' || !(*(char **)field = strdup(value)))
            return -1;
        return 0;
    }
    return -1;
}

/* read NAME_FILE for a secret variable; trailing newlines are dropped. */
static int read_secret_file(const struct var *v, const char *path, char *err, size_t err_len)
{
    size_t len;
    char *s = config_read_file(path, 64 * 1024, &len);
    char name[64];
    snprintf(name, sizeof name, "%s_FILE", v->name);
    if (!s) {
        snprintf(err, err_len, "%s: cannot read '%s': %s", name, path,
                 errno == EFBIG ? "file too large" : "no such file or not readable");
        return -1;
    }
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        s[--len] = '\0';
    if (len == 0 || memchr(s, '\0', len)) {
        free(s);
        return bad(err, err_len, name, path, "a file holding a non-empty password");
    }
    *(char **)((char *)&cfg + v->off) = s;
    return 0;
}

/* count_items — comma-separated items of a list ("" has none). */
static size_t count_items(const char *s)
{
    size_t n = s[0] ? 1 : 0;
    for (; *s; s++)
        n += *s == ',';
    return n;
}

static void default_hostname(void)
{
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) != 0 || !config_valid_domain(h))
        snprintf(h, sizeof h, "localhost");
    snprintf(cfg.hostname, sizeof cfg.hostname, "%s", h);
}

int config_load(char *err, size_t err_len)
{
    config_free();
    memset(&cfg, 0, sizeof cfg);
    default_hostname();
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const struct var *v = &vars[i];
        const char *value = getenv(v->name);
        if (has_file_variant(v->name)) {
            char fname[64];
            snprintf(fname, sizeof fname, "%s_FILE", v->name);
            const char *path = getenv(fname);
            if (path && value) {
                snprintf(err, err_len, "%s: set together with %s: set only one of them", fname, v->name);
                return -1;
            }
            if (path) {
                if (read_secret_file(v, path, err, err_len) < 0)
                    return -1;
                continue;
            }
        }
        if (!value)
            value = v->def;
        if (!value)
            continue;
        if (parse_var(v, value) < 0)
            return bad(err, err_len, v->name, value, v->accepted);
    }
    const char *uf = getenv("MRS_USERS_FILE");
    if (uf && set_string(cfg.users_file, sizeof cfg.users_file, uf) < 0)
        return bad(err, err_len, "MRS_USERS_FILE", uf, "a path to the users file");
    if (count_items(cfg.tls_cert) != count_items(cfg.tls_key) && cfg.tls_cert[0] && cfg.tls_key[0]) {
        snprintf(err, err_len, "MRS_TLS_KEY: lists %zu file(s) but MRS_TLS_CERT lists %zu: give one key per "
                 "certificate, comma-separated, in the same order", count_items(cfg.tls_key),
                 count_items(cfg.tls_cert));
        return -1;
    }
    if (count_items(cfg.tls_cert) > 4 || strstr(cfg.tls_cert, ",,") || strstr(cfg.tls_key, ",,")) {
        snprintf(err, err_len, "MRS_TLS_CERT: at most 4 comma-separated certificate files, none empty");
        return -1;
    }
    if (!cfg.tls_cert[0] != !cfg.tls_key[0]) {
        snprintf(err, err_len, "%s: must be set together with %s",
                 cfg.tls_cert[0] ? "MRS_TLS_KEY" : "MRS_TLS_CERT",
                 cfg.tls_cert[0] ? "MRS_TLS_CERT" : "MRS_TLS_KEY");
        return -1;
    }
    if (getenv("MRS_DKIM_KEYS") && cfg.dkim_keys_file[0]) {
        snprintf(err, err_len, "MRS_DKIM_KEYS_FILE: set together with MRS_DKIM_KEYS: set only one of them");
        return -1;
    }
    if (!cfg.dkim_domain[0])
        memcpy(cfg.dkim_domain, cfg.spf_include, sizeof cfg.dkim_domain);
    if (cfg.retry_max_ms < cfg.retry_min_ms) {
        snprintf(err, err_len, "MRS_RETRY_MAX: must not be smaller than MRS_RETRY_MIN");
        return -1;
    }
    if (cfg.dns_deadline_ms < cfg.dns_timeout_ms) {
        snprintf(err, err_len, "MRS_DNS_DEADLINE: must not be smaller than MRS_DNS_TIMEOUT");
        return -1;
    }
    if (cfg.smarthost_password && !cfg.smarthost_user[0]) {
        snprintf(err, err_len, "MRS_SMARTHOST_USER: required when MRS_SMARTHOST_PASSWORD is set");
        return -1;
    }
    if (cfg.dane && cfg.dns_server_count == 0) {
        /* the AD bit is trusted only from servers the operator named */
        snprintf(err, err_len, "MRS_DANE: on requires MRS_DNS_SERVERS (DNSSEC-validating resolvers on a trusted "
                 "path, e.g. 127.0.0.1)");
        return -1;
    }
    return 0;
}

extern char **environ;

static bool known_var(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        size_t k = strlen(vars[i].name);
        if ((n == k || (n == k + 5 && has_file_variant(vars[i].name) && memcmp(name + k, "_FILE", 5) == 0)) &&
            memcmp(name, vars[i].name, k) == 0)
            return true;
    }
    return n == 14 && memcmp(name, "MRS_USERS_FILE", 14) == 0;
}

int config_unknown_vars(char *out, size_t len)
{
    int count = 0;
    size_t used = 0;
    out[0] = '\0';
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        if (n < 4 || strncmp(*e, "MRS_", 4) != 0 || known_var(*e, n) ||
            strncmp(*e, "MRS_SERVICE_", 12) == 0 || strncmp(*e, "MRS_PORT", 8) == 0)
            continue;
        int w = snprintf(out + used, len - used, "%s%.*s", count ? ", " : "", (int)n, *e);
        if (w > 0 && (size_t)w < len - used)
            used += (size_t)w;
        count++;
    }
    return count;
}

void config_free(void)
{
    if (cfg.smarthost_password) {
        volatile char *p = cfg.smarthost_password;
        while (*p)
            *p++ = 0;
        free(cfg.smarthost_password);
        cfg.smarthost_password = NULL;
    }
    free(cfg.users_inline);
    cfg.users_inline = NULL;
}
