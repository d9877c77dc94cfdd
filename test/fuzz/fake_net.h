/*
 * fake_net.h — the real conn.c over an in-memory transport, for the fuzz
 * harnesses of the stateful code (fuzz_session, fuzz_smtp_client).
 *
 * conn.c is compiled into the harness with its three system calls on the
 * data path (recv, send, poll) renamed to the functions below, so its line
 * reader, buffers, deadlines and output batching run unchanged while the
 * peer's bytes come from the fuzz input.  The socket is a real descriptor
 * (a dup of /dev/null) so conn_init/conn_close work as they do in
 * production.  TLS is a pass-through stand-in for tls.c: the handshake
 * succeeds or fails as the harness says, then the bytes flow in clear.
 *
 * The peer:
 *   - delivers its bytes in reads of at most `chunk` bytes (0: as many as
 *     asked), so lines and DATA arrive split at arbitrary points, or one
 *     line per read (`by_line`: a peer that waits for each answer: the
 *     next line is there only once we sent something, or once we wait for
 *     it with poll — so what a client sends after STARTTLS arrives after
 *     the handshake, and a read that does not wait finds nothing);
 *   - at its end closes (EOF), goes silent (every wait times out), starts
 *     the drain (interruptible waits end with CONN_DRAIN) or resets;
 *   - may stop reading after `out_limit` bytes (send fails with EPIPE).
 * Every byte we send is checked as SMTP lines when `check_replies` is set:
 * "DDD" then ' ' or '-', then text without control bytes, then CRLF; as a
 * client's otherwise (see note_client).
 *
 * One connection at a time; not thread-safe (libFuzzer runs one input at a
 * time on one thread).
 */
#ifndef MRS_FUZZ_FAKE_NET_H
#define MRS_FUZZ_FAKE_NET_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "tls.h"

/* ---- the clock: util.c with a fake monotonic clock and sleep --------------- */

/* The monotonic clock the code sees: constant while an input runs unless the
 * peer is slow or a wait times out; a harness moves it on by days between
 * inputs so windows (AUTH throttling, rate limits) never carry state from
 * one input into the next. */
static int64_t fake_clock_ms = 1000000000;

#define util_now_ms real_util_now_ms
#define util_sleep_ms real_util_sleep_ms
#include "../../src/util.c"
#undef util_now_ms
#undef util_sleep_ms

int64_t util_now_ms(void)
{
    return fake_clock_ms;
}

/* AUTH's failure delay: time passes, nobody waits. */
bool util_sleep_ms(int64_t ms)
{
    fake_clock_ms += ms;
    return true;
}

enum fake_end { FAKE_END_EOF = 0, FAKE_END_SILENT, FAKE_END_DRAIN, FAKE_END_RESET };

struct fake_net {
    const uint8_t *in;
    size_t in_len, in_pos;
    size_t chunk;            /* at most this many bytes per read; 0: no limit */
    bool by_line;            /* a read ends after a LF: the peer waits for our reply */
    bool held;               /* by_line: the next line waits for our output or a poll */
    enum fake_end end;
    int64_t step_ms;         /* the peer is slow: each read moves the clock on */
    size_t out_len, out_limit; /* bytes we sent; 0: the peer reads everything */
    bool tls_ok;             /* the next handshake succeeds */
    int tls_contexts;        /* open fake TLS contexts (leak check) */
    bool check_replies;      /* our output must be SMTP reply lines */
    int line_pos;            /* where in a reply line the output is; -1: after CR */
    char first_digit;
    int replies[4];          /* final reply lines 2xx, 3xx, 4xx, 5xx */
    size_t cmd_lines;        /* client side: lines sent */
    bool line_start;         /* client side: the next byte starts a line */
    bool plain_sensitive;    /* client side: AUTH or MAIL sent without TLS */
    char tail[5];            /* client side: the last bytes sent */
    bool dot_sent;           /* client side: "<CRLF>.<CRLF>" was sent */
    int connect_errno;       /* client side: conn_connect fails with it */
    int devnull;
};

static struct fake_net fake_net;

#define FAKE_ASSERT(c)                                                                  \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "fake_net: %s:%d: assertion %s failed\n", __FILE__, __LINE__, #c); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* fake_net_start — a new connection over input; returns its descriptor
 * (the harness gives it to the code under test, which closes it). */
static int fake_net_start(const uint8_t *in, size_t len)
{
    static int devnull = -1;
    if (devnull < 0)
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    FAKE_ASSERT(devnull >= 0);
    memset(&fake_net, 0, sizeof fake_net);
    fake_net.devnull = devnull;
    fake_net.in = in;
    fake_net.in_len = len;
    fake_net.line_start = true;
    int fd = dup(devnull);
    FAKE_ASSERT(fd >= 0);
    return fd;
}

/* check_out — one byte of our output against the reply-line grammar:
 * "DDD" (first digit 2 to 5), ' ' or '-', text without control bytes, CRLF. */
static void check_out(unsigned char c)
{
    int p = fake_net.line_pos;
    if (p == -1) {
        FAKE_ASSERT(c == '\n');
        fake_net.line_pos = 0;
        return;
    }
    if (p == 0) {
        FAKE_ASSERT(c >= '2' && c <= '5');
        fake_net.first_digit = c;
    } else if (p < 3) {
        FAKE_ASSERT(c >= '0' && c <= '9');
    } else if (p == 3) {
        FAKE_ASSERT(c == ' ' || c == '-');
        if (c == ' ')
            fake_net.replies[fake_net.first_digit - '2']++;
    } else if (c == '\r') {
        fake_net.line_pos = -1;
        return;
    } else {
        FAKE_ASSERT(c >= 0x20 && c != 0x7f); /* no control byte inside a reply */
    }
    fake_net.line_pos = p + 1;
}

static ssize_t fake_take(void *buf, size_t len)
{
    size_t left = fake_net.in_len - fake_net.in_pos;
    size_t n = len < left ? len : left;
    if (fake_net.chunk && n > fake_net.chunk)
        n = fake_net.chunk;
    const uint8_t *lf = fake_net.by_line ? memchr(fake_net.in + fake_net.in_pos, '\n', n) : NULL;
    if (lf)
        n = (size_t)(lf - (fake_net.in + fake_net.in_pos)) + 1;
    fake_net.held = fake_net.by_line;
    memcpy(buf, fake_net.in + fake_net.in_pos, n);
    fake_net.in_pos += n;
    fake_clock_ms += fake_net.step_ms;
    return (ssize_t)n;
}

static ssize_t fake_recv(int fd, void *buf, size_t len, int flags)
{
    if (fake_net.in_pos < fake_net.in_len && !fake_net.held)
        return fake_take(buf, len);
    if (fake_net.in_pos < fake_net.in_len) {
        errno = EAGAIN; /* the peer sends on when answered, or when we wait */
        return -1;
    }
    switch (fake_net.end) {
    case FAKE_END_EOF:
        return 0;
    case FAKE_END_RESET:
        errno = ECONNRESET;
        return -1;
    default:
        errno = EAGAIN; /* wait_io() polls next */
        return -1;
    }
}

/* note_client — what a client sends (not checked as replies): whether a
 * command that carries credentials or starts a transaction (AUTH, MAIL)
 * left in plaintext, and whether the end of data "<CRLF>.<CRLF>" was sent. */
static void note_client(const char *p, size_t len, bool tls)
{
    for (size_t i = 0; i < len; i++) {
        if (fake_net.line_start && !tls && len - i >= 4 &&
            (!memcmp(p + i, "AUTH", 4) || !memcmp(p + i, "MAIL", 4)))
            fake_net.plain_sensitive = true;
        fake_net.line_start = p[i] == '\n';
        fake_net.cmd_lines += p[i] == '\n';
        memmove(fake_net.tail, fake_net.tail + 1, sizeof fake_net.tail - 1);
        fake_net.tail[sizeof fake_net.tail - 1] = p[i];
        if (!memcmp(fake_net.tail, "\r\n.\r\n", 5))
            fake_net.dot_sent = true;
    }
}

static ssize_t fake_send_as(const void *buf, size_t len, bool tls)
{
    if (fake_net.out_limit && fake_net.out_len + len > fake_net.out_limit) {
        errno = EPIPE;
        return -1;
    }
    if (fake_net.check_replies)
        for (size_t i = 0; i < len; i++)
            check_out(((const unsigned char *)buf)[i]);
    else
        note_client(buf, len, tls);
    fake_net.out_len += len;
    fake_net.held = false;
    return (ssize_t)len;
}

static ssize_t fake_send(int fd, const void *buf, size_t len, int flags)
{
    return fake_send_as(buf, len, false);
}

/* fake_poll — reached when a read found nothing: a held line is released
 * (the peer sends on while we wait); past the input the peer's end decides. */
static int fake_poll(struct pollfd *p, nfds_t n, int timeout)
{
    for (nfds_t i = 0; i < n; i++)
        p[i].revents = 0;
    if (p[0].events & POLLOUT) {
        p[0].revents = POLLOUT;
        return 1;
    }
    if (fake_net.in_pos < fake_net.in_len) {
        fake_net.held = false;
        p[0].revents = POLLIN;
        return 1;
    }
    if (fake_net.end == FAKE_END_DRAIN && n == 2) {
        p[1].revents = POLLIN;
        return 1;
    }
    fake_clock_ms += timeout; /* the whole wait passes */
    return 0;
}

/* ---- a pass-through TLS -------------------------------------------------- */

struct tls_conn {
    int fd;
    bool client;
};

struct tls_conn *tls_server_new(int fd)
{
    struct tls_conn *t = calloc(1, sizeof *t);
    if (t) {
        t->fd = fd;
        fake_net.tls_contexts++;
    }
    return t;
}

struct tls_conn *tls_client_new(int fd, const char *sni, enum tls_verify verify)
{
    struct tls_conn *t = tls_server_new(fd);
    if (t)
        t->client = true;
    return t;
}

/* DANE: the stand-in has no certificate to match; the handshake's outcome
 * is the harness's as for the others. */
struct tls_conn *tls_client_new_dane(int fd, const char *sni, const struct dane_set *dane)
{
    return tls_client_new(fd, sni, true);
}

void tls_conn_free(struct tls_conn *t)
{
    if (t)
        fake_net.tls_contexts--;
    free(t);
}

int tls_handshake(struct tls_conn *t, char *err, size_t err_len)
{
    if (fake_net.tls_ok)
        return 0;
    snprintf(err, err_len, "fake handshake refused");
    return TLS_ERROR;
}

ssize_t tls_recv(struct tls_conn *t, void *buf, size_t len)
{
    ssize_t n = fake_recv(t->fd, buf, len, 0);
    if (n < 0)
        return errno == EAGAIN ? TLS_WANT_READ : TLS_ERROR;
    return n;
}

ssize_t tls_send(struct tls_conn *t, const void *buf, size_t len)
{
    ssize_t n = fake_send_as(buf, len, true);
    return n < 0 ? TLS_ERROR : n;
}

void tls_close_notify(struct tls_conn *t)
{
}

const char *tls_version(const struct tls_conn *t)
{
    return "TLSv1.3";
}

const char *tls_cipher(const struct tls_conn *t)
{
    return "TLS_AES_128_GCM_SHA256";
}

bool tls_peer_verified(const struct tls_conn *t)
{
    return false;
}

/* no sessions to resume: every handshake is a full one */
int tls_session_set(struct tls_conn *t, const struct tls_session *s)
{
    return -1;
}

struct tls_session *tls_session_get(const struct tls_conn *t)
{
    return NULL;
}

void tls_session_free(struct tls_session *s)
{
}

/* ---- log.c writing into a check instead of stderr --------------------------- */

/* Every log line must be one write of printable ASCII ending in one LF: the
 * client's and the server's text is sanitized before it reaches a line. */
static size_t fake_log_lines;

static ssize_t fake_log_write(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    FAKE_ASSERT(len > 0 && p[len - 1] == '\n');
    for (size_t i = 0; i + 1 < len; i++)
        FAKE_ASSERT(p[i] >= 0x20 && p[i] < 0x7f);
    static int show = -1;
    if (show < 0)
        show = getenv("FAKE_NET_LOG") != NULL; /* FAKE_NET_LOG=1: read a run by hand */
    fake_log_lines++;
    if (show)
        fprintf(stderr, "%.*s", (int)len, (const char *)buf);
    return (ssize_t)len;
}

#define write fake_log_write
#include "../../src/log.c"
#undef write

/* ---- the real conn.c on top ------------------------------------------------ */

#define recv fake_recv
#define send fake_send
#define poll fake_poll
#define conn_connect real_conn_connect
#include "../../src/conn.c"
#undef recv
#undef send
#undef poll
#undef conn_connect

/* conn_connect — the outbound connection (smtp_client): the fake peer,
 * or a refused connection when connect_errno is set. */
int conn_connect(const struct sockaddr *addr, unsigned addr_len, int64_t deadline);
int conn_connect(const struct sockaddr *addr, unsigned addr_len, int64_t deadline)
{
    if (fake_net.connect_errno) {
        errno = fake_net.connect_errno;
        return -1;
    }
    int fd = dup(fake_net.devnull);
    FAKE_ASSERT(fd >= 0);
    return fd;
}

#endif
