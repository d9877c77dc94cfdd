/*
 * main — subcommand dispatch, start-up order, exit codes (SPEC §2).
 *
 *   0 success; 1 failure at start (one stderr line naming the cause);
 *   2 a malformed variable (one line naming it); 3 DNS temporarily failing
 *   (check-domain).
 */
#include "auth.h"
#include "check_domain.h"
#include "control.h"
#include "config.h"
#include "crypto.h"
#include "delivery.h"
#include "dkim_sign.h"
#include "dns.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "policy.h"
#include "queue.h"
#include "reload.h"
#include "spool.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

#include <pthread.h>
#include <signal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PASSWORD_MAX_BYTES AUTH_PASSWORD_MAX_BYTES /* what AUTH accepts */

static void usage(FILE *out)
{
    fputs("usage: mrs [command]\n"
          "\n"
          "  serve                      run the relay until SIGTERM/SIGINT (default)\n"
          "  passwd                     read a password on stdin, print its hash for the users file\n"
          "  token USERNAME             print the TXT record value that authorizes USERNAME\n"
          "  check-domain USERNAME ADDRESS-OR-DOMAIN\n"
          "                             check a sender domain's DNS records for USERNAME\n"
          "  dkim-keygen rsa [BITS] | ed25519\n"
          "                             print a new DKIM private key (PEM)\n"
          "  dkim-records [DOMAIN]      print the TXT records of the DKIM keys (MRS_DKIM_KEYS) and\n"
          "                             the CNAME a customer domain adds\n"
          "  healthcheck [HOST:PORT]    GET /healthz on the health listener; exit 0 when healthy\n"
          "  queue                      list the spool\n"
          "  queue show|flush|hold|release|delete ID   act on one message of the running relay\n"
          "  queue flush                retry every message not on hold now\n"
          "  version                    print the version\n"
          "  help                       this text\n"
          "\n"
          "Configuration is read from MRS_* environment variables; see README.md.\n",
          out);
}

/* load_config_or_exit — every subcommand that reads MRS_* variables validates
 * all of them first: a malformed one is one stderr line and exit 2. */
static void load_config_or_exit(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    if (config_load(err, sizeof err) < 0) {
        fprintf(stderr, "mrs: %s\n", err);
        exit(2);
    }
    log_init(config->log_format == CONFIG_LOG_JSON, (enum log_level)config->log_level);
}

/* read_password — one line from stdin, without echo when stdin is a tty. */
static int read_password(char *buf, size_t cap, size_t *len)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fputs("Password: ", stderr);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *r = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputs("\n", stderr);
    }
    if (!r)
        return -1;
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] != '\n' && !feof(stdin))
        return -1; /* longer than the buffer */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    *len = n;
    return 0;
}

static int cmd_passwd(void)
{
    size_t cap = PASSWORD_MAX_BYTES + 2; /* the line, its newline, the NUL */
    char *pw = malloc(cap);
    char hash[CRYPTO_PWHASH_MAX_BYTES];
    size_t len;
    if (!pw) {
        fprintf(stderr, "mrs passwd: out of memory\n");
        return 1;
    }
    if (read_password(pw, cap, &len) < 0 || len == 0) {
        crypto_wipe(pw, cap);
        free(pw);
        fprintf(stderr, "mrs passwd: expected one non-empty line of at most %d bytes on stdin\n",
                PASSWORD_MAX_BYTES);
        return 1;
    }
    int rc = crypto_password_hash(pw, len, hash);
    crypto_wipe(pw, cap);
    free(pw);
    if (rc < 0) {
        fprintf(stderr, "mrs passwd: hashing failed (out of memory)\n");
        return 1;
    }
    printf("%s\n", hash);
    return 0;
}

static int cmd_token(int argc, char **argv)
{
    if (argc != 3 || argv[2][0] == '\0') {
        fprintf(stderr, "usage: mrs token USERNAME\n");
        return 2;
    }
    load_config_or_exit();
    char hex[CRYPTO_SHA256_HEX_BYTES];
    crypto_sha256_hex(argv[2], strlen(argv[2]), hex);
    printf("%s=%s\n", config->token_prefix, hex);
    return 0;
}

/* start_fail — a failure at start: one stderr line naming the cause. */
static void start_fail(int code, const char *err)
{
    fprintf(stderr, "mrs: %s\n", err);
    exit(code);
}

/* drain — SIGTERM/SIGINT: stop accepting, turn /readyz 503, let sessions
 * finish within MRS_SHUTDOWN_GRACE (idle ones get 421 4.3.2 at once). */
static int drain(int sig)
{
    log_info("shutdown", NULL, "signal %d: draining, %lld session(s) open, grace %lld ms", sig,
             (long long)listener_sessions(), (long long)config->shutdown_grace_ms);
    health_set_draining(); /* not ready first: nothing is refused while /readyz still says 200 */
    util_drain_start();
    listener_stop();
    /* one grace for both, so the whole drain fits in MRS_SHUTDOWN_GRACE
     * (Kubernetes kills at terminationGracePeriodSeconds) */
    int64_t deadline = util_now_ms() + config->shutdown_grace_ms;
    if (!listener_wait_idle(deadline))
        log_warn("shutdown", NULL, "%lld session(s) still open after the grace; closing them "
                 "(none of them got a 250 for an unsaved message)", (long long)listener_sessions());
    delivery_stop(deadline);
    control_stop();
    health_stop();
    log_info("shutdown", NULL, "stopped");
    return 0;
}

/* signal_loop — the main thread's job once serving: signals, and every
 * MRS_RELOAD_INTERVAL a look at the certificate and users files. */
static int signal_loop(const sigset_t *sigs)
{
    int64_t interval = config->reload_interval_ms;
    int64_t next = util_now_ms() + interval;
    for (;;) {
        int64_t left = next - util_now_ms();
        int sig;
        if (interval > 0 && left <= 0) {
            reload_check();
            next = util_now_ms() + interval;
            continue;
        }
        if (interval > 0) {
            struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = left % 1000 * 1000000};
            sig = sigtimedwait(sigs, NULL, &ts); /* -1 with EAGAIN when the interval is up */
        } else if (sigwait(sigs, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP)
            reload_all();
        else if (sig == SIGTERM || sig == SIGINT)
            return drain(sig);
    }
}

static int cmd_serve(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    bool malformed;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread inherits it: main takes them */
    signal(SIGPIPE, SIG_IGN);
    STATS_SET(started_ms, util_wall_ms());
    /* until start-up is complete only warnings print, so that a failure at
     * start is exactly one stderr line (SPEC §2) */
    int json = config->log_format == CONFIG_LOG_JSON;
    log_init(json, config->log_level > LOG_WARN ? (enum log_level)config->log_level : LOG_WARN);
    if (util_drain_init() < 0 || tls_init(err, sizeof err) < 0)
        start_fail(1, util_drain_fd() < 0 ? "cannot create an eventfd" : err);
    health_set_check_handler(check_domain_http);
    if (health_start(&config->health, err, sizeof err) < 0)
        start_fail(1, err);
    if (tls_server_load(config->tls_cert, config->tls_key, config->hostname, err, sizeof err) < 0)
        start_fail(1, err);
    health_set(HEALTH_TLS, 1, NULL);
    if (dkim_sign_load(err, sizeof err) < 0)
        start_fail(1, err);
    char ca_err[CONFIG_ERROR_MAX_BYTES] = "";
    bool have_ca = tls_client_init(config->smarthost_ca_file, ca_err, sizeof ca_err) == 0;
    char out_ca_err[CONFIG_ERROR_MAX_BYTES] = "";
    bool have_out_ca = tls_client_outbound_init(config->outbound_ca_file, out_ca_err, sizeof out_ca_err) == 0;
    if (!have_out_ca && config->outbound_ca_file[0]) {
        snprintf(err, sizeof err, "MRS_OUTBOUND_CA_FILE: %s", out_ca_err);
        start_fail(2, err);
    }
    if (auth_load(err, sizeof err, &malformed) < 0)
        start_fail(malformed ? 2 : 1, err);
    health_set(HEALTH_USERS, 1, NULL);
    if (queue_init(err, sizeof err) < 0)
        start_fail(1, err);
    if (control_start(err, sizeof err) < 0)
        start_fail(1, err);
    health_set_spool_dir(config->spool_dir);
    health_set(HEALTH_SPOOL, 1, NULL);
    if (listener_open(&config->submission, "MRS_SUBMISSION_LISTEN", false, STATS_SUBMISSION, err, sizeof err) < 0 ||
        listener_open(&config->submissions, "MRS_SUBMISSIONS_LISTEN", true, STATS_SUBMISSIONS, err, sizeof err) < 0)
        start_fail(1, err);
    health_set(HEALTH_LISTENERS, 1, NULL);
    dns_init();
    char servers[DNS_SERVERS_MAX][DNS_SERVER_TEXT_BYTES];
    int nservers = dns_servers(servers, DNS_SERVERS_MAX);
    health_set(HEALTH_RESOLVER, nservers > 0, "no DNS server: set MRS_DNS_SERVERS or /etc/resolv.conf");
    if (listener_start(err, sizeof err) < 0)
        start_fail(1, err);
    if (delivery_start(err, sizeof err) < 0)
        start_fail(1, err);
    /* start-up complete: only now the warnings, then readiness */
    log_init(json, (enum log_level)config->log_level);
    if (!config->tls_cert[0])
        log_warn("tls", NULL, "no MRS_TLS_CERT/MRS_TLS_KEY: using an ephemeral self-signed certificate for %s",
                 config->hostname);
    if (!have_ca)
        log_warn("tls", NULL, "smarthost certificates cannot be verified: %s", ca_err);
    if (!have_out_ca)
        log_warn("tls", NULL, "MTA-STS policy servers and MX certificates cannot be verified "
                 "(MTA-STS enforce then defers): %s", out_ca_err);
    char unknown[512];
    if (config_unknown_vars(unknown, sizeof unknown) > 0)
        log_warn("config", NULL, "ignoring unknown variable(s) %s: check the spelling (README lists every MRS_ variable)",
                 unknown);
    if (auth_user_count() == 0)
        log_warn("auth", NULL, "no users configured (MRS_USERS / MRS_USERS_FILE): every AUTH will fail");
    log_info("start", NULL, "mrs %s ready as %s: submission %s, submissions %s, health %s, %zu user(s), "
             "%zu DKIM key(s), %d DNS server(s), spool %s with %lld queued message(s), %lld delivery thread(s) %s%s",
             MRS_VERSION, config->hostname, config->submission.text, config->submissions.text,
             config->health.text, auth_user_count(), dkim_sign_key_count(), nservers, config->spool_dir,
             (long long)STATS_GET(queue_depth), (long long)config->delivery_threads,
             config->smarthost_set ? "via smarthost " : "to MX hosts",
             config->smarthost_set ? config->smarthost.host : "");
    reload_init();
    health_set(HEALTH_STARTED, 1, NULL);
    return signal_loop(&sigs);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "serve";
    if (crypto_init() < 0) {
        fprintf(stderr, "mrs: no source of randomness (getrandom or /dev/urandom)\n");
        return 1;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("mrs %s (%s)\n", MRS_VERSION, MRS_GIT_REV);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "passwd"))
        return cmd_passwd();
    if (!strcmp(cmd, "token"))
        return cmd_token(argc, argv);
    if (!strcmp(cmd, "serve")) {
        load_config_or_exit();
        int rc = cmd_serve();
        fflush(NULL);
        _exit(rc); /* session threads may still hold TLS state: no atexit teardown */
    }
    if (!strcmp(cmd, "check-domain")) {
        load_config_or_exit();
        char err[CONFIG_ERROR_MAX_BYTES];
        if (tls_init(err, sizeof err) < 0 || dkim_sign_load(err, sizeof err) < 0)
            fprintf(stderr, "mrs check-domain: DKIM keys not loaded, DKIM is not checked: %s\n", err);
        return check_domain_cli(argc, argv);
    }
    if (!strcmp(cmd, "dkim-keygen"))
        return dkim_sign_keygen_cli(argc, argv);
    if (!strcmp(cmd, "dkim-records")) {
        load_config_or_exit();
        return dkim_sign_records_cli(argc, argv);
    }
    if (!strcmp(cmd, "healthcheck")) {
        /* Docker reserves exit code 2 for HEALTHCHECK: a bad variable is 1 here */
        char err[CONFIG_ERROR_MAX_BYTES];
        if (config_load(err, sizeof err) < 0) {
            fprintf(stderr, "mrs healthcheck: %s\n", err);
            return 1;
        }
        return health_cli(argc, argv);
    }
    if (!strcmp(cmd, "queue")) {
        load_config_or_exit();
        return control_cli(argc, argv);
    }
    fprintf(stderr, "mrs: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
