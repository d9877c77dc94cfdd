/*
 * main — subcommand dispatch, start-up order, exit codes (SPEC §2).
 *
 *   0 success; 1 failure at start (one stderr line naming the cause);
 *   2 a malformed variable (one line naming it); 3 DNS temporarily failing
 *   (check-domain).
 */
#include "config.h"
#include "crypto.h"
#include "log.h"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PASSWORD_MAX_BYTES 1024

static void usage(FILE *out)
{
    fputs("usage: mrs [command]\n"
          "\n"
          "  serve                      run the relay until SIGTERM/SIGINT (default)\n"
          "  passwd                     read a password on stdin, print its hash for the users file\n"
          "  token USERNAME             print the TXT record value that authorizes USERNAME\n"
          "  check-domain USERNAME ADDRESS-OR-DOMAIN\n"
          "                             check a sender domain's DNS records for USERNAME\n"
          "  healthcheck [HOST:PORT]    GET /healthz on the health listener; exit 0 when healthy\n"
          "  queue                      list the spool\n"
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
    char pw[PASSWORD_MAX_BYTES + 2];
    char hash[CRYPTO_PWHASH_MAX_BYTES];
    size_t len;
    if (read_password(pw, sizeof pw, &len) < 0 || len == 0) {
        crypto_wipe(pw, sizeof pw);
        fprintf(stderr, "mrs passwd: expected one non-empty line of at most %d bytes on stdin\n",
                PASSWORD_MAX_BYTES);
        return 1;
    }
    int rc = crypto_password_hash(pw, len, hash);
    crypto_wipe(pw, sizeof pw);
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

static int not_yet(const char *what)
{
    fprintf(stderr, "mrs %s: not available in this build yet\n", what);
    return 1;
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
        return not_yet("serve");
    }
    if (!strcmp(cmd, "check-domain")) {
        load_config_or_exit();
        return policy_cli_check_domain(argc, argv);
    }
    if (!strcmp(cmd, "healthcheck") || !strcmp(cmd, "queue"))
        return not_yet(cmd);
    fprintf(stderr, "mrs: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
