/*
 * conn — one TCP connection, plain or TLS, for the server sessions and the
 * delivery client alike.
 *
 * Owns the socket (non-blocking), the optional TLS context, a bounded input
 * buffer (grows from a small start to a hard maximum fixed at creation) and
 * an output buffer that collects a batch of replies so they leave in one
 * send and one TLS record.  Every read and write takes an absolute deadline
 * (util_now_ms() clock); a wait may also end when the drain starts, if the
 * connection is marked interruptible.  One thread uses a conn at a time.
 */
#ifndef MRS_CONN_H
#define MRS_CONN_H

#include "tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONN_OUT_MAX_BYTES 4096
#define CONN_IN_START_BYTES 1024

enum conn_status {
    CONN_OK = 0,
    CONN_EOF,       /* peer closed */
    CONN_TIMEOUT,   /* deadline passed */
    CONN_ERROR,     /* socket or TLS error */
    CONN_TOO_LONG,  /* line over the limit: it was skipped up to its LF */
    CONN_DRAIN,     /* the drain started while an interruptible wait blocked */
    CONN_NUL,       /* the line holds a NUL byte */
};

struct tls_conn;
struct tls_session;

struct conn {
    int fd;
    struct tls_conn *tls;
    bool interruptible;   /* waits end with CONN_DRAIN once draining */
    char *in;             /* heap, in_cap bytes, never more than in_max */
    size_t in_cap, in_max;
    size_t in_start, in_end; /* unread bytes are in[in_start..in_end) */
    size_t out_len;
    char out[CONN_OUT_MAX_BYTES];
    char tls_error[160];  /* why the last handshake failed */
    const struct tls_session *resume; /* conn_tls_client offers it (session resumption); NULL: none */
};

/* conn_init — take ownership of fd (made non-blocking), input buffer limit
 * in_max bytes.  -1 when out of memory (fd is then still the caller's). */
int conn_init(struct conn *c, int fd, size_t in_max);
/* conn_close — free the TLS context and buffers, close the socket. */
void conn_close(struct conn *c);

/*
 * conn_read_line — the next line without its line end (CRLF, or a lone LF
 * which command parsers treat like CRLF).  *line points into the input
 * buffer and stays valid until the next conn_ call.  Lines longer than max
 * bytes are consumed up to their LF and reported as CONN_TOO_LONG; a line
 * with a NUL byte is consumed and reported as CONN_NUL.
 */
enum conn_status conn_read_line(struct conn *c, int64_t deadline, size_t max, char **line,
                                size_t *len);
/* conn_line_buffered — whether a complete line is already buffered (the
 * pipelining rule: flush replies before blocking for more input). */
bool conn_line_buffered(const struct conn *c);
/* conn_peek — the buffered input bytes, reading more first when there are
 * none (at most in_max).  conn_consume — drop the first n of them.  Used by
 * the DATA reader so bytes after the end of data stay for the next command. */
enum conn_status conn_peek(struct conn *c, int64_t deadline, const char **data, size_t *len);
void conn_consume(struct conn *c, size_t n);
/* conn_discard_input — drop every buffered input byte; returns how many. */
size_t conn_discard_input(struct conn *c);

/* conn_write — append to the output batch, flushing when it is full. */
enum conn_status conn_write(struct conn *c, int64_t deadline, const char *data, size_t len);
enum conn_status conn_printf(struct conn *c, int64_t deadline, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* conn_flush — send the output batch (one send, one TLS record). */
enum conn_status conn_flush(struct conn *c, int64_t deadline);

/* conn_tls_server / conn_tls_client — run a TLS handshake on the connection;
 * on failure c->tls_error says why.  The caller discards buffered plaintext
 * first (STARTTLS, RFC 3207 §4.2). */
enum conn_status conn_tls_server(struct conn *c, int64_t deadline);
enum conn_status conn_tls_client(struct conn *c, int64_t deadline, const char *sni, enum tls_verify verify);
/* conn_tls_client_dane — the same, the certificate matched against the
 * TLSA records of dane (DANE, RFC 7672) instead of a CA bundle. */
struct dane_set;
enum conn_status conn_tls_client_dane(struct conn *c, int64_t deadline, const char *sni,
                                      const struct dane_set *dane);

/* conn_connect — a non-blocking TCP connect to addr within the deadline;
 * returns the socket or -1 with errno set. */
struct sockaddr;
int conn_connect(const struct sockaddr *addr, unsigned addr_len, int64_t deadline);

/* conn_listen — a non-blocking listening socket for l: `:PORT` binds
 * [::]:PORT dual stack (IPV6_V6ONLY off), or 0.0.0.0:PORT where the host
 * has no IPv6; otherwise the address given.  -1 with errno on failure. */
struct config_listen;
int conn_listen(const struct config_listen *l, int backlog);

const char *conn_status_name(enum conn_status s);

#endif
