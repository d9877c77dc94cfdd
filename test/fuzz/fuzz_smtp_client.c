// fuzz-srcs: src/smtp_client.c src/bufpool.c src/smtp_proto.c src/config.c src/crypto.c src/idna.c src/dsn.c
/*
 * fuzz_smtp_client — libFuzzer target for the outbound SMTP client against
 * whatever a malicious or broken MX answers: the real smtp_client.c and
 * conn.c run a whole transaction (greeting, EHLO/HELO, STARTTLS when
 * offered or required, AUTH PLAIN/LOGIN, MAIL, RCPT per recipient, DATA,
 * the dot-stuffed message, QUIT) while the server's bytes come from the
 * fuzz input through fake_net.h (TLS is a pass-through whose handshake
 * succeeds or fails as the input says).
 *
 * Input: two flag bytes, the message length (2 bytes, big endian, cut to
 * what follows), the message, then the server's byte stream.
 *   byte 0: bits 0-1 TLS mode (opportunistic, off, STARTTLS required,
 *           implicit), bit 2 handshakes succeed, bit 3 AUTH as a smarthost
 *           user, bit 4 BODY=8BITMIME, bits 5-6 recipients - 1, bit 7 the
 *           null sender
 *   byte 1: bits 0-1 the server's end (EOF, silent, drain, reset), bits 2-3
 *           its writes (all at once, a line, 1 or 7 bytes), bit 4 the
 *           connection is refused, bits 5-7 it stops reading after
 *           301 * n bytes (0: never)
 * The job asks for its session to be parked (connection reuse): while one
 * is, the next message (up to three in all) adopts it and reads on in the
 * same server stream; PIPELINING, RSET and the fallback to a new
 * connection when the parked one is dead run with the rest.
 * Checks: the outcome is one of the four results with a printable reply
 * text starting with its code; after SENT every recipient has a reply, and
 * one counted as delivered (2xx) only when the whole message and its final
 * dot went out; REFUSED carries a 5xx; with TLS required nothing of AUTH or
 * MAIL is ever sent in plaintext; the session ends, and frees everything.
 */
#include "fake_net.h"

#include "config.h"
#include "crypto.h"
#include "smtp_client.h"

#include <arpa/inet.h>
#include <sys/mman.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_OFFSET 16 /* the message starts after an envelope block in the spool file */

static struct route_target target;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    setenv("MRS_HOSTNAME", "relay.fuzz.test", 1);
    if (crypto_init() < 0 || config_load(err, sizeof err) < 0 || util_drain_init() < 0) {
        fprintf(stderr, "fuzz_smtp_client: setup failed: %s\n", err);
        abort();
    }
    target.addr.family = AF_INET;
    target.addr.len = sizeof target.addr.u.in;
    target.addr.u.in.sin_family = AF_INET;
    target.addr.u.in.sin_port = htons(25);
    inet_pton(AF_INET, "192.0.2.25", &target.addr.u.in.sin_addr);
    snprintf(target.host, sizeof target.host, "mx.example.test");
    snprintf(target.label, sizeof target.label, "mx.example.test[192.0.2.25]:25");
    return 0;
}

/* check_reply — a reply as the client reports it: a code, and a printable
 * text that starts with that code. */
static void check_reply(const struct smtp_client_reply *r)
{
    char code[8];
    FAKE_ASSERT(r->code >= 200 && r->code <= 599);
    size_t n = strnlen(r->text, sizeof r->text);
    FAKE_ASSERT(n < sizeof r->text);
    for (size_t i = 0; i < n; i++)
        FAKE_ASSERT(r->text[i] >= 0x20 && r->text[i] < 0x7f);
    snprintf(code, sizeof code, "%d", r->code);
    FAKE_ASSERT(!strncmp(r->text, code, 3));
}

static int message_fd(const uint8_t *msg, size_t len)
{
    int fd = memfd_create("message", MFD_CLOEXEC);
    FAKE_ASSERT(fd >= 0);
    FAKE_ASSERT(write(fd, "MRS-SPOOL 1\n...\n", MSG_OFFSET) == MSG_OFFSET);
    FAKE_ASSERT(write(fd, msg, len) == (ssize_t)len);
    return fd;
}

/* check_outcome — what one message's session must have done (see the top). */
static void check_outcome(const struct smtp_client_job *job, enum smtp_client_result res,
                          const struct smtp_client_outcome *out)
{
    FAKE_ASSERT(res == out->result && res >= SMTP_CLIENT_SENT && res <= SMTP_CLIENT_REFUSED);
    FAKE_ASSERT(out->tls_session == NULL); /* not asked for */
    if (res == SMTP_CLIENT_SENT) {
        for (size_t i = 0; i < job->rcpt_count; i++) {
            check_reply(&job->rcpt_replies[i]);
            /* delivered only when the message went out whole, with its final dot */
            if (job->rcpt_replies[i].code / 100 == 2)
                FAKE_ASSERT(fake_net.dot_sent);
        }
    } else {
        check_reply(&out->reply);
        FAKE_ASSERT(out->reply.code / 100 == 4 || out->reply.code / 100 == 5 || res == SMTP_CLIENT_NEXT);
        FAKE_ASSERT(!out->parked || res == SMTP_CLIENT_REFUSED); /* only a refusal leaves it in step */
    }
    if (res == SMTP_CLIENT_REFUSED)
        FAKE_ASSERT(out->reply.code / 100 == 5);
    if (res == SMTP_CLIENT_TLS_FAILED)
        FAKE_ASSERT(!fake_net.tls_ok && job->tls != SMTP_CLIENT_TLS_OFF);
    if (out->tls)
        FAKE_ASSERT(fake_net.tls_ok);
    /* TLS required (smarthost): credentials and the envelope never in clear */
    if (job->tls == SMTP_CLIENT_TLS_STARTTLS || job->tls == SMTP_CLIENT_TLS_IMPLICIT)
        FAKE_ASSERT(!fake_net.plain_sensitive);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {0, 0, 1, 7};
    static const char *const rcpts[] = {"alice@example.test", "\"b c\"@example.test", "carol@example.test",
                                        "dave@example.test"};
    if (size < 4)
        return 0;
    uint8_t f0 = data[0], f1 = data[1];
    size_t msg_len = (size_t)data[2] << 8 | data[3];
    if (msg_len > size - 4)
        msg_len = size - 4;
    const uint8_t *msg = data + 4, *server = msg + msg_len;

    struct smtp_client_reply replies[4];
    struct smtp_client_outcome out;
    struct smtp_client_job job = {
        .target = &target, .tls = (enum smtp_client_tls)(f0 & 3), .queue_id = "0123456789abcdef0123",
        .from = f0 & 128 ? "" : "news@example.org", .eightbit = f0 & 16, .offset = MSG_OFFSET,
        .length = (int64_t)msg_len, .rcpt_count = 1 + ((f0 >> 5) & 3), .rcpts = rcpts, .rcpt_replies = replies};
    if (f0 & 8) {
        job.user = "relay-user@example.org";
        job.password = "smarthost-password";
    }
    int devfd = fake_net_start(server, (size_t)(data + size - server));
    close(devfd); /* the client connects itself: conn_connect() gives it a descriptor */
    fake_net.tls_ok = f0 & 4;
    fake_net.end = (enum fake_end)(f1 & 3);
    fake_net.chunk = chunks[(f1 >> 2) & 3];
    fake_net.by_line = ((f1 >> 2) & 3) == 1;
    fake_net.connect_errno = f1 & 16 ? ECONNREFUSED : 0;
    fake_net.out_limit = (size_t)(f1 >> 5) * 301;
    fake_clock_ms += 86400 * 1000;
    log_init(0, LOG_DEBUG);
    job.fd = message_fd(msg, msg_len);

    for (int message = 0; message < 3; message++) {
        fake_net.dot_sent = false;
        job.park = true;
        job.messages_max = 3;
        enum smtp_client_result res = smtp_client_deliver(&job, &out);
        check_outcome(&job, res, &out);
        job.reuse = out.parked;
        if (!job.reuse)
            break;
    }
    smtp_client_session_close(job.reuse, fake_clock_ms + 1000);
    close(job.fd);
    FAKE_ASSERT(fake_net.tls_contexts == 0);
    return 0;
}
