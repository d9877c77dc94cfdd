/*
 * config — the environment turned into one read-only struct.
 *
 * config_load() reads every MRS_* variable once at start; afterwards the
 * struct is never written, so every thread may read it without locks.  Each
 * malformed value is reported as one line naming the variable, the value and
 * what is accepted (exit code 2, SPEC §3).  The value parsers are pure and
 * exported so unit tests and fuzzers can call them directly.
 *
 * Leaf module: calls only libc, log and util.
 */
#ifndef MRS_CONFIG_H
#define MRS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_HOSTNAME_MAX_BYTES 253
#define CONFIG_PATH_MAX_BYTES 1024
#define CONFIG_DNS_SERVERS_MAX 8
#define CONFIG_ERROR_MAX_BYTES 512
#define CONFIG_NETS_MAX 32
#define CONFIG_DKIM_KEYS_MAX 8
#define CONFIG_DKIM_SELECTOR_MAX_BYTES 63   /* one DNS label */
#define CONFIG_DKIM_KEYS_FILE_MAX_BYTES (64 * 1024)

/* One network of MRS_DELIVERY_DENY_NETS: IPv4 networks are kept in their
 * IPv4-mapped IPv6 form (::ffff:a.b.c.d, prefix + 96), so one comparison
 * covers native and mapped addresses. */
struct config_net {
    uint8_t addr[16];
    unsigned prefix;                /* 0..128 */
};

/* A listen address: `off`, `:PORT` (every address, IPv4 and IPv6),
 * `IPv4:PORT`, `[IPv6]:PORT` or `localhost:PORT`. */
struct config_listen {
    bool off;
    bool any;                       /* `:PORT`: bind the IPv6 wildcard, dual stack */
    struct sockaddr_storage addr;   /* when !any and !off */
    socklen_t addr_len;
    uint16_t port;
    char text[80];                  /* as given, for logs */
};

/* A host and port whose host may be a DNS name (smarthost). */
struct config_hostport {
    char host[CONFIG_HOSTNAME_MAX_BYTES + 1];
    uint16_t port;
};

/* One DKIM key of MRS_DKIM_KEYS: SELECTOR:PATH (SPEC §8.3). */
struct config_dkim_key {
    char selector[CONFIG_DKIM_SELECTOR_MAX_BYTES + 1];
    char path[CONFIG_PATH_MAX_BYTES];
};

enum config_log_format { CONFIG_LOG_TEXT, CONFIG_LOG_JSON };
enum config_tls_mode { CONFIG_TLS_STARTTLS, CONFIG_TLS_IMPLICIT, CONFIG_TLS_NONE };

struct config {
    char hostname[CONFIG_HOSTNAME_MAX_BYTES + 1];
    struct config_listen submission;        /* MRS_SUBMISSION_LISTEN, STARTTLS */
    struct config_listen submissions;       /* MRS_SUBMISSIONS_LISTEN, implicit TLS */
    struct config_listen health;            /* MRS_HEALTH_LISTEN */

    char tls_cert[CONFIG_PATH_MAX_BYTES];   /* empty: ephemeral self-signed */
    char tls_key[CONFIG_PATH_MAX_BYTES];

    char users_file[CONFIG_PATH_MAX_BYTES]; /* MRS_USERS_FILE (re-read on SIGHUP) */
    char *users_inline;                     /* MRS_USERS, heap, may be NULL */

    char spf_include[CONFIG_HOSTNAME_MAX_BYTES + 1];
    char token_prefix[64];
    bool check_header_from;

    struct config_dkim_key dkim_keys[CONFIG_DKIM_KEYS_MAX]; /* MRS_DKIM_KEYS (or its file) */
    int dkim_key_count;                     /* 0: no signing */
    char dkim_keys_file[CONFIG_PATH_MAX_BYTES]; /* MRS_DKIM_KEYS_FILE: re-read on reload */
    char dkim_domain[CONFIG_HOSTNAME_MAX_BYTES + 1]; /* MRS_DKIM_DOMAIN, default MRS_SPF_INCLUDE */

    struct sockaddr_storage dns_servers[CONFIG_DNS_SERVERS_MAX];
    socklen_t dns_server_lens[CONFIG_DNS_SERVERS_MAX];
    int dns_server_count;                   /* 0: take /etc/resolv.conf */
    int64_t dns_timeout_ms;                 /* MRS_DNS_TIMEOUT, per try */
    int64_t dns_deadline_ms;                /* MRS_DNS_DEADLINE, whole lookup */
    int64_t dns_recheck_ms;                 /* MRS_DNS_RECHECK: refusals on older cache re-asked */
    int64_t dns_cache_entries;              /* MRS_DNS_CACHE_ENTRIES */
    bool dane;                              /* MRS_DANE: DO bit, AD trusted, TLSA honoured */

    char spool_dir[CONFIG_PATH_MAX_BYTES];

    bool smarthost_set;
    struct config_hostport smarthost;
    char smarthost_user[256];
    char *smarthost_password;               /* heap, may be NULL; wiped at exit */
    enum config_tls_mode smarthost_tls;
    char smarthost_ca_file[CONFIG_PATH_MAX_BYTES]; /* empty: the system bundle */

    bool mta_sts;                           /* MRS_MTA_STS */
    char outbound_ca_file[CONFIG_PATH_MAX_BYTES]; /* MRS_OUTBOUND_CA_FILE; empty: the system bundle */
    uint16_t mta_sts_port;                  /* MRS_MTA_STS_PORT: 443 (tests only change it) */

    uint16_t delivery_port;
    int64_t delivery_threads;
    int64_t delivery_connect_timeout_ms;    /* MRS_DELIVERY_CONNECT_TIMEOUT */
    int64_t delivery_command_timeout_ms;    /* MRS_DELIVERY_COMMAND_TIMEOUT */
    int64_t delivery_data_timeout_ms;       /* MRS_DELIVERY_DATA_TIMEOUT */
    int64_t delivery_attempt_timeout_ms;    /* MRS_DELIVERY_ATTEMPT_TIMEOUT, one attempt */
    int64_t delivery_domain_concurrency;    /* MRS_DELIVERY_DOMAIN_CONCURRENCY */
    bool delivery_connection_reuse;         /* MRS_DELIVERY_CONNECTION_REUSE: idle sessions, TLS resumption */
    int64_t delivery_idle_timeout_ms;       /* MRS_DELIVERY_IDLE_TIMEOUT: an idle session is closed after it */
    struct config_net deny_nets[CONFIG_NETS_MAX]; /* MRS_DELIVERY_DENY_NETS */
    int deny_net_count;

    int64_t max_message_bytes;
    int64_t max_recipients;
    int64_t max_connections;
    int64_t max_connections_per_client;     /* MRS_MAX_CONNECTIONS_PER_CLIENT */
    int64_t queue_lifetime_ms;
    int64_t retry_min_ms;
    int64_t retry_max_ms;
    int64_t delay_warning_ms;               /* MRS_DELAY_WARNING: 0 = no delay notices */

    int64_t rate_limit_count;               /* MRS_RATE_LIMIT: 0 = unlimited */
    int64_t rate_limit_window_ms;

    int64_t shutdown_grace_ms;
    enum config_log_format log_format;
    int log_level;                          /* enum log_level */

    int64_t idle_timeout_ms;                /* MRS_IDLE_TIMEOUT, after AUTH */
    int64_t preauth_timeout_ms;             /* MRS_PREAUTH_TIMEOUT, before AUTH */
    int64_t session_timeout_ms;             /* MRS_SESSION_TIMEOUT, total */
    int64_t data_min_rate;                  /* MRS_DATA_MIN_RATE, bytes/s */
    int64_t auth_max_failures;              /* MRS_AUTH_MAX_FAILURES per session */
    int64_t auth_concurrency;               /* MRS_AUTH_CONCURRENCY, Argon2id at once */
    int64_t reload_interval_ms;             /* MRS_RELOAD_INTERVAL: 0 = only on SIGHUP */
};

/* The configuration in force; valid after config_load() returned 0. */
extern const struct config *config;

/*
 * config_load — read the environment into the global config.
 * Returns 0, or -1 with `err` holding one line that names the variable, the
 * value and what is accepted (the caller prints it and exits 2).
 */
int config_load(char *err, size_t err_len);

/* config_unknown_vars — the MRS_* variables in the environment that mrs
 * does not know (typos), comma-separated into out; Kubernetes service links
 * (MRS_SERVICE_*, MRS_PORT*) are left out.  Returns how many. */
int config_unknown_vars(char *out, size_t len);

/* config_free — wipe secrets and free what config_load() allocated. */
void config_free(void);

/* Pure value parsers: 0 on success, -1 on a malformed value. */
int config_parse_duration_ms(const char *s, int64_t *out);   /* 90s 5d 500ms 1h 30 */
int config_parse_size(const char *s, int64_t *out);          /* 25M 512k 1G 1024 */
int config_parse_uint(const char *s, int64_t min, int64_t max, int64_t *out);
int config_parse_bool(const char *s, bool *out);             /* on off yes no true false 1 0 */
int config_parse_listen(const char *s, struct config_listen *out);
int config_parse_hostport(const char *s, uint16_t default_port, struct config_hostport *out);
int config_parse_ip_port(const char *s, uint16_t default_port,
                         struct sockaddr_storage *out, socklen_t *out_len);
int config_parse_rate(const char *s, int64_t *count, int64_t *window_ms); /* 500/h, 0 */
bool config_valid_domain(const char *s);
/* config_parse_nets — comma-separated CIDRs (a bare address is a host
 * route) or `none`; at most max.  IPv4 networks come out IPv4-mapped. */
int config_parse_nets(const char *s, struct config_net *out, int max, int *count);
/* config_addr_in_nets — whether an IPv4 or IPv6 address (IPv4-mapped
 * included) lies inside one of the networks. */
bool config_addr_in_nets(const struct sockaddr *sa, const struct config_net *nets, int count);

/* config_parse_dkim_keys — SELECTOR:PATH items separated by commas or
 * white space (newlines too, for MRS_DKIM_KEYS_FILE; `#` starts a comment
 * to the end of the line).  A selector is one DNS label (letters, digits,
 * inner hyphens, at most 63), unique; a path is non-empty.  At most max
 * items, at least one.  0, or -1 on a malformed list. */
int config_parse_dkim_keys(const char *s, struct config_dkim_key *out, int max, int *count);

/* config_read_file — read a whole small file (at most max bytes) into a new
 * NUL-terminated heap string.  Returns NULL with errno set on failure. */
char *config_read_file(const char *path, size_t max, size_t *len_out);

/* config_format_addr — "1.2.3.4:25" / "[::1]:25" into buf. */
void config_format_addr(const struct sockaddr *sa, char *buf, size_t len);

#endif
