// fuzz-srcs: src/session.c src/session_data.c src/session_bdat.c src/bufpool.c src/idna.c src/auth.c src/config.c src/stats.c src/smtp_proto.c src/policy.c src/dns_wire.c src/dsn.c
/*
 * fuzz_session — libFuzzer target for the inbound SMTP session: the real
 * session.c (command table, states, STARTTLS, AUTH, MAIL/RCPT with
 * SMTPUTF8, pipelining, limits) with session_data.c (the DATA reader) and
 * session_bdat.c (BDAT chunks), the real auth.c (users table from MRS_USERS,
 * SASL PLAIN/LOGIN, verify cache, throttling, rate limit), the real policy.c
 * and conn.c, driven by a client byte stream from the fuzz input.
 *
 * Stand-ins, defined here instead of linking their modules:
 *   - the network and TLS (fake_net.h): in-memory, the handshake succeeds
 *     or fails as the input says, then bytes flow in clear;
 *   - Argon2id (crypto_password_hash/verify): a hash "…$<password>" verifies
 *     that password, so AUTH costs nothing and the fuzzer can log in;
 *   - the spool (queue_*): memory, with checks of what the session stores;
 *   - DNS (dns_lookup): a fixed zone that authorizes both users for
 *     example.test and fails in the other ways for other names.
 *
 * Input: two flag bytes, then what the client sends.
 *   byte 0: bit 0 implicit TLS (port 465), bit 1 the TLS handshake succeeds,
 *           bits 2-3 the client's end (EOF, silent, drain, reset),
 *           bits 4-5 its address (IPv4, IPv4-mapped, IPv6, unknown family),
 *           bits 6-7 its reads (all it has: pipelining; one line: it waits
 *           for each reply; 1 or 7 bytes at a time)
 *   byte 1: bits 0-1 spool failure (none, open, write, commit), bit 2 debug
 *           logs (else warnings only: faster), bit 3 a slow client (3 s per
 *           read), bit 4 JSON logs, bits 5-6 the client stops reading
 *           replies after 197 * n bytes (0: never), bit 7 MRS_AUTH_MAX_FAILURES
 *           25 instead of 3 (so one session reaches the 20 failures that
 *           block its address)
 * Checks: every reply is an SMTP reply line without control bytes; every
 * log line is one printable line; a stored message comes from an
 * authenticated user after EHLO, has 1..MRS_MAX_RECIPIENTS recipients,
 * CRLF line ends only, no NUL, and fits the size limit; nothing leaks.
 */
#include "fake_net.h"

#define crypto_password_hash real_crypto_password_hash
#define crypto_password_verify real_crypto_password_verify
#include "../../src/crypto.c"
#undef crypto_password_hash
#undef crypto_password_verify

#include "auth.h"
#include "config.h"
#include "dkim_sign.h"
#include "dns.h"
#include "policy.h"
#include "queue.h"
#include "session.h"
#include "smtp_proto.h"
#include "stats.h"

#include <arpa/inet.h>
#include <netinet/in.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ALICE "alice@example.test"
#define FUZZ_ALICE_PW "alice-secret"
#define FUZZ_BOB "bob"
#define FUZZ_BOB_PW "b0b"
#define FUZZ_HASH "$argon2id$v=19$m=65536,t=2,p=1$ZnV6ei1zYWx0$"

/* ---- Argon2id stand-in ------------------------------------------------------ */

int crypto_password_hash(const char *pw, size_t len, char out[CRYPTO_PWHASH_MAX_BYTES]);
int crypto_password_verify(const char *hash, const char *pw, size_t len);

int crypto_password_hash(const char *pw, size_t len, char out[CRYPTO_PWHASH_MAX_BYTES])
{
    /* only auth.c's dummy hash for unknown users: it matches no password */
    snprintf(out, CRYPTO_PWHASH_MAX_BYTES, "%s\x7f", FUZZ_HASH);
    return 0;
}

int crypto_password_verify(const char *hash, const char *pw, size_t len)
{
    const char *tail = strrchr(hash, '$');
    FAKE_ASSERT(tail != NULL);
    tail++;
    return strlen(tail) == len && memcmp(tail, pw, len) == 0 ? 0 : -1;
}

/* ---- the spool stand-in -------------------------------------------------------- */

enum queue_fault { FAULT_NONE = 0, FAULT_OPEN, FAULT_WRITE, FAULT_COMMIT };

static enum queue_fault queue_fault;
static unsigned queue_ids;
static int queue_open_msgs;

struct queue_msg {
    char *data;
    size_t len, cap;
    bool failed;
};

void queue_new_id(char id[QUEUE_ID_BYTES])
{
    snprintf(id, QUEUE_ID_BYTES, "%020x", ++queue_ids);
}

struct queue_msg *queue_open(const char *id, const struct queue_envelope *env)
{
    FAKE_ASSERT(strlen(id) == QUEUE_ID_BYTES - 1);
    FAKE_ASSERT(!strcmp(env->user, FUZZ_ALICE) || !strcmp(env->user, FUZZ_BOB));
    FAKE_ASSERT(env->helo[0] != '\0' && strlen(env->helo) <= SMTP_DOMAIN_MAX_BYTES);
    FAKE_ASSERT(env->from[0] != '\0' && strlen(env->from) <= SMTP_PATH_MAX_BYTES);
    FAKE_ASSERT(env->rcpt_count >= 1 && (int64_t)env->rcpt_count <= config->max_recipients);
    for (size_t i = 0; i < env->rcpt_count; i++)
        FAKE_ASSERT(env->rcpts[i][0] != '\0' && strlen(env->rcpts[i]) <= SMTP_PATH_MAX_BYTES);
    if (queue_fault == FAULT_OPEN) {
        errno = ENOSPC;
        return NULL;
    }
    struct queue_msg *m = calloc(1, sizeof *m);
    if (m)
        queue_open_msgs++;
    return m;
}

int queue_write(struct queue_msg *m, const void *data, size_t len)
{
    FAKE_ASSERT(m != NULL);
    if (queue_fault == FAULT_WRITE || m->failed) {
        m->failed = true;
        return -1;
    }
    /* the message, plus at most the trace fields the session adds */
    FAKE_ASSERT(m->len + len <= (size_t)config->max_message_bytes + 4096);
    if (m->len + len > m->cap) {
        size_t cap = (m->len + len) * 2;
        char *p = realloc(m->data, cap);
        FAKE_ASSERT(p != NULL);
        m->data = p;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, len);
    m->len += len;
    return 0;
}

static void queue_free(struct queue_msg *m)
{
    FAKE_ASSERT(m != NULL && queue_open_msgs > 0);
    queue_open_msgs--;
    free(m->data);
    free(m);
}

int queue_commit(struct queue_msg *m)
{
    FAKE_ASSERT(!m->failed);
    /* what is stored has CRLF line ends only and no NUL (SPEC §4, §8.1) */
    for (size_t i = 0; i < m->len; i++) {
        char c = m->data[i];
        FAKE_ASSERT(c != '\0');
        if (c == '\r')
            FAKE_ASSERT(i + 1 < m->len && m->data[i + 1] == '\n');
        if (c == '\n')
            FAKE_ASSERT(i > 0 && m->data[i - 1] == '\r');
    }
    FAKE_ASSERT(m->len >= 2 && m->data[m->len - 2] == '\r' && m->data[m->len - 1] == '\n');
    int rc = queue_fault == FAULT_COMMIT ? -1 : 0;
    queue_free(m);
    return rc;
}

/* DKIM is off in this harness (no keys: dkim_sign_begin gives NULL), so
 * the session must never call the rest; the room it would reserve in the
 * spool is never asked for either. */
struct dkim_job *dkim_sign_begin(void)
{
    return NULL;
}
size_t dkim_sign_head(struct dkim_job *j, const char *prefix, size_t prefix_len, const char *headers, size_t len)
{
    __builtin_trap();
}
void dkim_sign_body(struct dkim_job *j, const char *p, size_t n)
{
    __builtin_trap();
}
size_t dkim_sign_finish(struct dkim_job *j, const struct log_fields *lf, char **out)
{
    __builtin_trap();
}
const char *dkim_sign_domain(const struct dkim_job *j)
{
    __builtin_trap();
}
void dkim_sign_refuse(struct dkim_job *j, const char *why)
{
    __builtin_trap();
}
void dkim_sign_free(struct dkim_job *j)
{
    FAKE_ASSERT(j == NULL);
}
int queue_reserve(struct queue_msg *m, size_t len)
{
    __builtin_trap();
}
int queue_fill(struct queue_msg *m, const struct iovec *iov, int iovcnt)
{
    __builtin_trap();
}

void queue_abort(struct queue_msg *m)
{
    if (m)
        queue_free(m);
}

/* ---- DNS stand-in: a fixed zone ------------------------------------------------ */

int64_t dns_now_ms(void)
{
    return fake_clock_ms;
}

static void add_txt(struct dns_result *r, const char *text)
{
    struct dns_txt *t = realloc(r->txt, (r->count + 1) * sizeof *t);
    FAKE_ASSERT(t != NULL);
    r->txt = t;
    t[r->count].len = strlen(text);
    t[r->count].data = strdup(text);
    FAKE_ASSERT(t[r->count].data != NULL);
    r->count++;
}

static void add_token(struct dns_result *r, const char *user)
{
    char hex[CRYPTO_SHA256_HEX_BYTES], text[160];
    crypto_sha256_hex(user, strlen(user), hex);
    snprintf(text, sizeof text, "%s=%s", policy_token_prefix(), hex);
    add_txt(r, text);
}

/* example.test authorizes both users; nospf.test has only tokens; stale.test
 * an SPF record without tokens, answered from an old cache entry (the
 * re-check path); tempfail.test SERVFAIL; anything else NXDOMAIN. */
enum dns_status dns_lookup(const char *name, uint16_t type, unsigned flags, struct dns_result **out)
{
    char spf[300];
    snprintf(spf, sizeof spf, "v=spf1 mx include:%s -all", policy_spf_include());
    enum dns_status st = DNS_NXDOMAIN;
    if (!strcmp(name, "example.test") || !strcmp(name, "nospf.test") || !strcmp(name, "stale.test"))
        st = DNS_OK;
    else if (!strcmp(name, "tempfail.test"))
        st = DNS_SERVFAIL;
    struct dns_result *r = dns_result_new(st, type, name);
    FAKE_ASSERT(r != NULL);
    r->received_ms = fake_clock_ms;
    snprintf(r->server, sizeof r->server, "192.0.2.53:53");
    if (!strcmp(name, "example.test") || !strcmp(name, "stale.test"))
        add_txt(r, spf);
    if (!strcmp(name, "example.test") || !strcmp(name, "nospf.test")) {
        add_token(r, FUZZ_ALICE);
        add_token(r, FUZZ_BOB);
    }
    if (!strcmp(name, "stale.test") && !(flags & DNS_FRESH))
        r->received_ms = fake_clock_ms - 3600 * 1000;
    *out = r;
    return st;
}

/* ---- the target ------------------------------------------------------------------ */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    bool malformed;
    setenv("MRS_HOSTNAME", "mrs.fuzz.test", 1);
    setenv("MRS_USERS", FUZZ_ALICE ":" FUZZ_HASH FUZZ_ALICE_PW "\n" FUZZ_BOB ":" FUZZ_HASH FUZZ_BOB_PW, 1);
    setenv("MRS_MAX_MESSAGE_BYTES", "8000", 1); /* small: the size limit within reach */
    setenv("MRS_MAX_RECIPIENTS", "4", 1);
    setenv("MRS_RATE_LIMIT", "3/h", 1);
    setenv("MRS_AUTH_MAX_FAILURES", "3", 1);
    setenv("MRS_LOG_LEVEL", "debug", 1);
    if (crypto_init() < 0 || config_load(err, sizeof err) < 0 || util_drain_init() < 0 ||
        auth_load(err, sizeof err, &malformed) < 0 || auth_user_count() != 2) {
        fprintf(stderr, "fuzz_session: setup failed: %s\n", err);
        abort();
    }
    return 0;
}

static void set_peer(struct session_start *st, unsigned which)
{
    memset(&st->peer, 0, sizeof st->peer);
    if (which == 0) {
        struct sockaddr_in *a = (struct sockaddr_in *)&st->peer;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, "192.0.2.7", &a->sin_addr);
        st->peer_len = sizeof *a;
    } else if (which == 1 || which == 2) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&st->peer;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, which == 1 ? "::ffff:192.0.2.7" : "2001:db8::7", &a->sin6_addr);
        st->peer_len = sizeof *a;
    } else {
        st->peer.ss_family = AF_UNIX;
        st->peer_len = sizeof(sa_family_t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {0, 0, 1, 7};
    if (size < 2)
        return 0;
    uint8_t f0 = data[0], f1 = data[1];
    struct session_start st = {.implicit_tls = f0 & 1};
    st.listener = st.implicit_tls ? STATS_SUBMISSIONS : STATS_SUBMISSION;
    set_peer(&st, (f0 >> 4) & 3);
    st.fd = fake_net_start(data + 2, size - 2);
    fake_net.tls_ok = f0 & 2;
    fake_net.end = (enum fake_end)((f0 >> 2) & 3);
    fake_net.chunk = chunks[f0 >> 6];
    fake_net.by_line = f0 >> 6 == 1;
    fake_net.step_ms = f1 & 8 ? 3000 : 0;
    fake_net.out_limit = (size_t)((f1 >> 5) & 3) * 197;
    ((struct config *)config)->auth_max_failures = f1 & 128 ? 25 : 3; /* the harness plays config_load */
    fake_net.check_replies = true;
    queue_fault = (enum queue_fault)(f1 & 3);
    queue_ids = 0;
    log_init(f1 & 16, f1 & 4 ? LOG_DEBUG : LOG_WARN);
    /* days pass between inputs: no throttle or rate state carries over */
    fake_clock_ms += 2LL * 86400 * 1000;

    /* a fresh users table each time: the verify cache starts empty */
    char err[CONFIG_ERROR_MAX_BYTES];
    bool malformed;
    FAKE_ASSERT(auth_load(err, sizeof err, &malformed) == 0);

    int64_t open_before = STATS_GET(sessions_open[st.listener]);
    session_run(&st);
    FAKE_ASSERT(STATS_GET(sessions_open[st.listener]) == open_before);
    FAKE_ASSERT(queue_open_msgs == 0);
    FAKE_ASSERT(fake_net.tls_contexts == 0);
    /* the session ends with whole reply lines (or a peer that stopped reading) */
    FAKE_ASSERT(fake_net.line_pos == 0 || fake_net.out_limit);
    return 0;
}
