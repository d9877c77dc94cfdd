/* Unit tests of config: every variable with good and bad values, and the
 * pure value parsers. */
#include "config.h"
#include "unit.h"

#include <stdlib.h>
#include <unistd.h>

struct env_case {
    const char *name;
    const char *good[4];
    const char *bad[6];
};

static const struct env_case env_cases[] = {
    {"MRS_HOSTNAME", {"mx.example.com", "localhost"}, {"bad host", "a..b", "-"}},
    {"MRS_SUBMISSION_LISTEN", {":587", "127.0.0.1:2587", "[::1]:587", "off"}, {"587", ":0", ":70000", "x:1"}},
    {"MRS_SUBMISSIONS_LISTEN", {":465", "localhost:465", "off"}, {"on", ":", "1.2.3.4"}},
    {"MRS_HEALTH_LISTEN", {":8080", "0.0.0.0:8080"}, {":abc", "[::1:80"}},
    {"MRS_SPF_INCLUDE", {"elastx.email", "spf.example.org"}, {"bad domain", "a..b"}},
    {"MRS_TOKEN_PREFIX", {"elastx-mrs", "my_relay.v1"}, {"has space", "a=b"}},
    {"MRS_CHECK_HEADER_FROM", {"on", "off", "true", "0"}, {"maybe", "2"}},
    {"MRS_DNS_SERVERS", {"127.0.0.1", "127.0.0.1:5353,[::1]:53", "::1"}, {"dns.example", "1.2.3.4:0", ",", "1.1.1.1,,2.2.2.2"}},
    {"MRS_DNS_TIMEOUT", {"2s", "500ms"}, {"0", "1y", "-1s"}},
    {"MRS_DNS_DEADLINE", {"10s", "15000ms"}, {"abc", "10 s"}},
    {"MRS_DNS_CACHE_ENTRIES", {"0", "10000"}, {"-5", "lots"}},
    {"MRS_SMARTHOST", {"relay.example.com:587", "[::1]:25", "10.0.0.1:2525", "relay.example.com"}, {"bad host:25", "relay:0", "relay:x"}},
    {"MRS_SMARTHOST_TLS", {"starttls", "tls", "none"}, {"ssl", "STARTTLS"}},
    {"MRS_DELIVERY_PORT", {"25", "2525"}, {"0", "65536", "smtp"}},
    {"MRS_DELIVERY_THREADS", {"1", "8"}, {"0", "many"}},
    {"MRS_MAX_MESSAGE_BYTES", {"26214400", "25M", "512k", "1G"}, {"25X", "-1", "10", "3G"}},
    {"MRS_MAX_RECIPIENTS", {"1", "100"}, {"0", "1e3"}},
    {"MRS_MAX_CONNECTIONS", {"1000", "1"}, {"abc", "0", "-1"}},
    {"MRS_RELOAD_INTERVAL", {"10s", "0", "500ms"}, {"-1", "2d", "often"}},
    {"MRS_MAX_CONNECTIONS_PER_CLIENT", {"20", "1"}, {"0", "-3", "x"}},
    {"MRS_DELIVERY_ATTEMPT_TIMEOUT", {"15m", "30s"}, {"0", "2d", "soon"}},
    {"MRS_DELIVERY_DOMAIN_CONCURRENCY", {"4", "1"}, {"0", "all"}},
    {"MRS_DELIVERY_DENY_NETS", {"none", "10.0.0.0/8", "127.0.0.0/8, ::1/128", "fd00::/8,192.0.2.1"},
     {"", "10.0.0.1/8", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/8,,"}},
    {"MRS_QUEUE_LIFETIME", {"5d", "90m", "3600"}, {"5 days", "0"}},
    {"MRS_RETRY_MIN", {"1m", "1s"}, {"soon"}},
    {"MRS_RETRY_MAX", {"1h", "2h"}, {"1w"}},
    {"MRS_RATE_LIMIT", {"0", "500/h", "10/m", "100/2h"}, {"500", "500/y", "/h", "0/h"}},
    {"MRS_SHUTDOWN_GRACE", {"25s", "0"}, {"25x"}},
    {"MRS_LOG_FORMAT", {"text", "json"}, {"xml", "JSON"}},
    {"MRS_LOG_LEVEL", {"debug", "info", "warn", "error"}, {"trace", "INFO"}},
    {"MRS_IDLE_TIMEOUT", {"60s", "5m"}, {"never", "0"}},
    {"MRS_PREAUTH_TIMEOUT", {"30s"}, {"x"}},
    {"MRS_SESSION_TIMEOUT", {"30m"}, {"0"}},
    {"MRS_DATA_MIN_RATE", {"1024", "1K", "0"}, {"fast"}},
    {"MRS_AUTH_MAX_FAILURES", {"3"}, {"0", "1000"}},
    {"MRS_AUTH_CONCURRENCY", {"2"}, {"0", "100"}},
    {"MRS_DELIVERY_CONNECT_TIMEOUT", {"30s"}, {"0"}},
    {"MRS_DELIVERY_COMMAND_TIMEOUT", {"5m"}, {"x"}},
    {"MRS_DELIVERY_DATA_TIMEOUT", {"10m"}, {"2d"}},
    {"MRS_DNS_RECHECK", {"60s", "0"}, {"2d"}},
    {"MRS_DKIM_KEYS", {"s1:/k/s1.pem", "rsa2026:/k/a.pem,ed-2026:/k/b.pem", " a:/x , b:/y "},
     {"s1", "s1:", ":/k.pem", "-s:/k", "s_1:/k", "a:/x,A:/y"}},
    {"MRS_DKIM_DOMAIN", {"keys.example.com"}, {"bad domain", "a..b"}},
};

static void test_every_variable_good_and_bad(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++) {
        const struct env_case *c = &env_cases[i];
        for (int g = 0; g < 4 && c->good[g]; g++) {
            setenv(c->name, c->good[g], 1);
            if (config_load(err, sizeof err) != 0) {
                fprintf(stderr, "  %s=%s refused: %s\n", c->name, c->good[g], err);
                unit_failed_checks++;
            }
        }
        for (int b = 0; b < 6 && c->bad[b]; b++) {
            setenv(c->name, c->bad[b], 1);
            err[0] = '\0';
            if (config_load(err, sizeof err) == 0 || strncmp(err, c->name, strlen(c->name)) != 0 ||
                strchr(err, '\n')) {
                fprintf(stderr, "  %s=%s accepted or error not naming it: '%s'\n", c->name, c->bad[b], err);
                unit_failed_checks++;
            }
        }
        unsetenv(c->name);
    }
    CHECK(config_load(err, sizeof err) == 0);
}

static void test_defaults(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    CHECK(config_load(err, sizeof err) == 0);
    CHECK(config->submission.any && config->submission.port == 587);
    CHECK(config->submissions.port == 465);
    CHECK(config->health.port == 8080);
    CHECK_STR(config->spf_include, "elastx.email");
    CHECK_STR(config->token_prefix, "elastx-mrs");
    CHECK(config->check_header_from);
    CHECK_STR(config->spool_dir, "/var/spool/mrs");
    CHECK(config->delivery_port == 25);
    CHECK(config->max_message_bytes == 26214400);
    CHECK(config->max_recipients == 100);
    CHECK(config->max_connections == 1000);
    CHECK(config->queue_lifetime_ms == 5LL * 86400 * 1000);
    CHECK(config->retry_min_ms == 60000 && config->retry_max_ms == 3600000);
    CHECK(config->delivery_threads == 8);
    CHECK(config->rate_limit_count == 0);
    CHECK(config->shutdown_grace_ms == 25000);
    CHECK(config->idle_timeout_ms == 60000);
    CHECK(config->smarthost_tls == CONFIG_TLS_STARTTLS);
    CHECK(!config->smarthost_set);
    CHECK(config->hostname[0] != '\0');
}

static void test_dkim_keys(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    struct config_dkim_key k[CONFIG_DKIM_KEYS_MAX];
    int n = -1;
    CHECK(config_parse_dkim_keys("# keys\nrsa:/etc/mrs/rsa.pem\n  ed:/etc/mrs/a:b.pem # Ed25519\n", k, 8, &n) == 0);
    CHECK(n == 2);
    CHECK_STR(k[0].selector, "rsa");
    CHECK_STR(k[0].path, "/etc/mrs/rsa.pem");
    CHECK_STR(k[1].path, "/etc/mrs/a:b.pem"); /* the selector ends at the first colon */
    CHECK(config_parse_dkim_keys("", k, 8, &n) < 0);                   /* nothing */
    CHECK(config_parse_dkim_keys("a:/1,b:/2,c:/3", k, 2, &n) < 0);      /* over max */
    char label[80];
    memset(label, 'a', 64);
    memcpy(label + 64, ":/k", 4);
    CHECK(config_parse_dkim_keys(label, k, 8, &n) < 0);                 /* a label over 63 */
    label[63] = ':';
    CHECK(config_parse_dkim_keys(label, k, 8, &n) == 0 && strlen(k[0].selector) == 63);
    CHECK(config_load(err, sizeof err) == 0);
    CHECK(config->dkim_key_count == 0);
    CHECK_STR(config->dkim_domain, "elastx.email"); /* the default: MRS_SPF_INCLUDE */
    setenv("MRS_SPF_INCLUDE", "spf.example.net", 1);
    setenv("MRS_DKIM_KEYS", "a:/k/a.pem,b:/k/b.pem", 1);
    CHECK(config_load(err, sizeof err) == 0);
    CHECK_STR(config->dkim_domain, "spf.example.net");
    CHECK(config->dkim_key_count == 2 && !strcmp(config->dkim_keys[1].selector, "b"));
    char path[] = "/tmp/mrs-unit-dkim-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "x:/k/x.pem\n", 11) == 11);
    close(fd);
    setenv("MRS_DKIM_KEYS_FILE", path, 1);
    CHECK(config_load(err, sizeof err) < 0 && strncmp(err, "MRS_DKIM_KEYS_FILE", 18) == 0); /* both set */
    unsetenv("MRS_DKIM_KEYS");
    CHECK(config_load(err, sizeof err) == 0 && config->dkim_key_count == 1);
    unlink(path);
    CHECK(config_load(err, sizeof err) < 0 && strncmp(err, "MRS_DKIM_KEYS_FILE", 18) == 0); /* unreadable */
    unsetenv("MRS_DKIM_KEYS_FILE");
    unsetenv("MRS_SPF_INCLUDE");
}

static void test_cross_checks(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    setenv("MRS_TLS_CERT", "/x/cert.pem", 1);
    CHECK(config_load(err, sizeof err) < 0 && strncmp(err, "MRS_TLS_KEY", 11) == 0);
    setenv("MRS_TLS_KEY", "/x/key.pem", 1);
    CHECK(config_load(err, sizeof err) == 0);
    unsetenv("MRS_TLS_CERT");
    unsetenv("MRS_TLS_KEY");
    setenv("MRS_RETRY_MIN", "2h", 1);
    CHECK(config_load(err, sizeof err) < 0 && strncmp(err, "MRS_RETRY_MAX", 13) == 0);
    unsetenv("MRS_RETRY_MIN");
    setenv("MRS_SMARTHOST_PASSWORD", "pw", 1);
    setenv("MRS_SMARTHOST_PASSWORD_FILE", "/nonexistent", 1);
    CHECK(config_load(err, sizeof err) < 0 && strncmp(err, "MRS_SMARTHOST_PASSWORD_FILE", 27) == 0);
    unsetenv("MRS_SMARTHOST_PASSWORD");
    CHECK(config_load(err, sizeof err) < 0 && strncmp(err, "MRS_SMARTHOST_PASSWORD_FILE", 27) == 0);
    unsetenv("MRS_SMARTHOST_PASSWORD_FILE");
}

static void test_secret_file(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    char path[] = "/tmp/mrs-unit-secretXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "s3cret\n", 7) == 7);
    close(fd);
    setenv("MRS_SMARTHOST_USER", "relay", 1);
    setenv("MRS_SMARTHOST_PASSWORD_FILE", path, 1);
    CHECK(config_load(err, sizeof err) == 0);
    CHECK_STR(config->smarthost_password, "s3cret");
    unsetenv("MRS_SMARTHOST_PASSWORD_FILE");
    unsetenv("MRS_SMARTHOST_USER");
    unlink(path);
    CHECK(config_load(err, sizeof err) == 0);
    CHECK(config->smarthost_password == NULL);
}

static void test_durations_and_sizes(void)
{
    int64_t v;
    CHECK(config_parse_duration_ms("90s", &v) == 0 && v == 90000);
    CHECK(config_parse_duration_ms("5d", &v) == 0 && v == 5LL * 86400000);
    CHECK(config_parse_duration_ms("250ms", &v) == 0 && v == 250);
    CHECK(config_parse_duration_ms("30", &v) == 0 && v == 30000);
    CHECK(config_parse_duration_ms("", &v) < 0);
    CHECK(config_parse_duration_ms("99999999999999999999s", &v) < 0);
    CHECK(config_parse_duration_ms("9223372036854775807d", &v) < 0);
    CHECK(config_parse_size("25M", &v) == 0 && v == 25 * 1024 * 1024);
    CHECK(config_parse_size("25MB", &v) == 0 && v == 25 * 1024 * 1024);
    CHECK(config_parse_size("1k", &v) == 0 && v == 1024);
    CHECK(config_parse_size("1T", &v) < 0);
    CHECK(config_parse_size("+1", &v) < 0);
    int64_t c, w;
    CHECK(config_parse_rate("500/h", &c, &w) == 0 && c == 500 && w == 3600000);
    CHECK(config_parse_rate("5/30m", &c, &w) == 0 && c == 5 && w == 1800000);
    CHECK(config_parse_rate("5/ms", &c, &w) < 0);
}

static void test_listen_and_ports(void)
{
    struct config_listen l;
    CHECK(config_parse_listen(":587", &l) == 0 && l.any && l.port == 587);
    CHECK(config_parse_listen("[::1]:25", &l) == 0 && !l.any && l.addr.ss_family == AF_INET6);
    CHECK(config_parse_listen("127.0.0.2:25", &l) == 0 && l.addr.ss_family == AF_INET);
    CHECK(config_parse_listen("off", &l) == 0 && l.off);
    CHECK(config_parse_listen("example.com:25", &l) < 0);
    struct config_hostport hp;
    CHECK(config_parse_hostport("smtp.example.com:587", 25, &hp) == 0 && hp.port == 587);
    CHECK_STR(hp.host, "smtp.example.com");
    CHECK(config_parse_hostport("[::1]:2525", 25, &hp) == 0 && hp.port == 2525);
    CHECK_STR(hp.host, "::1");
}

static bool in_nets(const char *ip, const struct config_net *nets, int n)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (config_parse_ip_port(ip, 25, &ss, &len) < 0)
        return false;
    return config_addr_in_nets((const struct sockaddr *)&ss, nets, n);
}

/* MRS_DELIVERY_DENY_NETS: IPv4 networks also match IPv4-mapped IPv6. */
static void test_deny_nets(void)
{
    struct config_net nets[CONFIG_NETS_MAX];
    int n = 0;
    CHECK(config_parse_nets("127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,224.0.0.0/4", nets,
                            CONFIG_NETS_MAX, &n) == 0);
    CHECK(n == 5);
    CHECK(in_nets("127.0.0.1", nets, n));
    CHECK(in_nets("127.255.1.2", nets, n));
    CHECK(in_nets("[::ffff:127.0.0.1]:25", nets, n));
    CHECK(in_nets("[::1]:25", nets, n));
    CHECK(in_nets("169.254.169.254", nets, n));
    CHECK(in_nets("[fe80::1]:25", nets, n));
    CHECK(in_nets("[febf::1]:25", nets, n));
    CHECK(!in_nets("[fec0::1]:25", nets, n));
    CHECK(in_nets("239.1.1.1", nets, n));
    CHECK(!in_nets("128.0.0.1", nets, n));
    CHECK(!in_nets("192.0.2.1", nets, n));
    CHECK(!in_nets("[2001:db8::1]:25", nets, n));
    CHECK(!in_nets("[::2]:25", nets, n));
    CHECK(config_parse_nets("none", nets, CONFIG_NETS_MAX, &n) == 0 && n == 0);
    CHECK(!in_nets("127.0.0.1", nets, n));
    CHECK(config_parse_nets("0.0.0.0/0", nets, CONFIG_NETS_MAX, &n) == 0 && n == 1);
    CHECK(in_nets("8.8.8.8", nets, n));
    CHECK(!in_nets("[2001:db8::1]:25", nets, n));
    CHECK(config_parse_nets("1.2.3.4", nets, CONFIG_NETS_MAX, &n) == 0 && n == 1);
    CHECK(in_nets("1.2.3.4", nets, n) && !in_nets("1.2.3.5", nets, n));
    CHECK(config_parse_nets("10.0.0.0/8,", nets, CONFIG_NETS_MAX, &n) < 0);
    CHECK(config_parse_nets("1.2.3.4/24", nets, CONFIG_NETS_MAX, &n) < 0);
}

UNIT_MAIN("config", UNIT_CASE(test_deny_nets), UNIT_CASE(test_dkim_keys), UNIT_CASE(test_defaults), UNIT_CASE(test_every_variable_good_and_bad),
          UNIT_CASE(test_cross_checks), UNIT_CASE(test_secret_file),
          UNIT_CASE(test_durations_and_sizes), UNIT_CASE(test_listen_and_ports))
