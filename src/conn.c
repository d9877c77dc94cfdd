/*
 * conn — buffered, deadline-bound I/O on one socket, plain or TLS.
 *
 * Calls tls and util only.  Reads try the socket (or the TLS context, which
 * may hold decrypted bytes poll cannot see) first and poll only on
 * EAGAIN / TLS_WANT_*; every poll also watches the drain eventfd when the
 * connection is interruptible.
 */
#include "conn.h"

#include "config.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *conn_status_name(enum conn_status s)
{
    static const char *const names[] = {"ok", "closed by peer", "timeout", "I/O error",
                                        "line too long", "draining", "NUL byte"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

int conn_init(struct conn *c, int fd, size_t in_max)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->in_max = in_max;
    c->in_cap = in_max < CONN_IN_START_BYTES ? in_max : CONN_IN_START_BYTES;
    c->in = malloc(c->in_cap + 1); /* +1: room for a NUL after a full line */
    if (!c->in)
        return -1;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) /* accepted and connected sockets are already */
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int one = 1;
    /* replies leave in one batch; never wait for a delayed ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

void conn_close(struct conn *c)
{
    if (c->tls) {
        tls_conn_free(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
}

/* wait_io — until fd is ready for events, the deadline passes, or (when
 * interruptible) the drain starts. */
static enum conn_status wait_io(struct conn *c, short events, int64_t deadline, bool interruptible)
{
    for (;;) {
        int64_t left = deadline - util_now_ms();
        if (left <= 0)
            return CONN_TIMEOUT;
        struct pollfd p[2] = {{.fd = c->fd, .events = events}, {.fd = util_drain_fd(), .events = POLLIN}};
        nfds_t n = interruptible && util_drain_fd() >= 0 ? 2 : 1;
        int r = poll(p, n, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return CONN_ERROR;
        if (r == 0)
            return CONN_TIMEOUT;
        if (n == 2 && p[1].revents)
            return CONN_DRAIN;
        if (p[0].revents)
            return CONN_OK;
    }
}

/* raw_recv — one read from the socket or TLS: >0, 0 (EOF), or a status. */
static enum conn_status raw_recv(struct conn *c, char *buf, size_t len, int64_t deadline,
                                 size_t *got)
{
    for (;;) {
        ssize_t n;
        short want = POLLIN;
        if (c->tls) {
            n = tls_recv(c->tls, buf, len);
            if (n == TLS_WANT_WRITE)
                want = POLLOUT;
            else if (n == TLS_ERROR)
                return CONN_ERROR;
            if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
                n = -1, errno = EAGAIN;
        } else {
            n = recv(c->fd, buf, len, 0);
        }
        if (n > 0) {
            *got = (size_t)n;
            return CONN_OK;
        }
        if (n == 0)
            return CONN_EOF;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return CONN_ERROR;
        enum conn_status st = wait_io(c, want, deadline, c->interruptible);
        if (st != CONN_OK)
            return st;
    }
}

/* fill — read more input after the unread bytes, compacting and growing the
 * buffer up to in_max. */
static enum conn_status fill(struct conn *c, int64_t deadline)
{
    if (c->in_start > 0) {
        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
        c->in_start = 0;
    }
    if (c->in_end == c->in_cap) {
        if (c->in_cap >= c->in_max)
            return CONN_TOO_LONG;
        size_t cap = c->in_cap * 2 > c->in_max ? c->in_max : c->in_cap * 2;
        char *p = realloc(c->in, cap + 1);
        if (!p)
            return CONN_ERROR;
        c->in = p;
        c->in_cap = cap;
    }
    size_t got;
    enum conn_status st = raw_recv(c, c->in + c->in_end, c->in_cap - c->in_end, deadline, &got);
    if (st == CONN_OK)
        c->in_end += got;
    return st;
}

bool conn_line_buffered(const struct conn *c)
{
    return memchr(c->in + c->in_start, '\n', c->in_end - c->in_start) != NULL;
}

enum conn_status conn_read_line(struct conn *c, int64_t deadline, size_t max, char **line,
                                size_t *len)
{
    bool skipping = false;
    for (;;) {
        char *start = c->in + c->in_start;
        char *nl = memchr(start, '\n', c->in_end - c->in_start);
        if (nl) {
            size_t n = (size_t)(nl - start);
            c->in_start += n + 1;
            if (skipping)
                return CONN_TOO_LONG;
            if (n > 0 && start[n - 1] == '\r')
                n--;
            if (n > max)
                return CONN_TOO_LONG;
            if (memchr(start, '\0', n))
                return CONN_NUL;
            start[n] = '\0';
            *line = start;
            *len = n;
            return CONN_OK;
        }
        if (c->in_end - c->in_start > max + 1) {
            /* over the limit with no LF yet: drop it all and keep skipping
             * to the LF, so even a 1 MB line costs no memory */
            skipping = true;
            c->in_start = c->in_end;
        }
        enum conn_status st = fill(c, deadline);
        if (st == CONN_TOO_LONG) {
            skipping = true;
            c->in_start = c->in_end;
            continue;
        }
        if (st != CONN_OK)
            return st;
    }
}

enum conn_status conn_peek(struct conn *c, int64_t deadline, const char **data, size_t *len)
{
    if (c->in_end == c->in_start) {
        c->in_start = c->in_end = 0;
        enum conn_status st = fill(c, deadline);
        if (st != CONN_OK)
            return st;
    }
    *data = c->in + c->in_start;
    *len = c->in_end - c->in_start;
    return CONN_OK;
}

void conn_consume(struct conn *c, size_t n)
{
    size_t have = c->in_end - c->in_start;
    c->in_start += n < have ? n : have;
}

size_t conn_discard_input(struct conn *c)
{
    size_t n = c->in_end - c->in_start;
    c->in_start = c->in_end = 0;
    return n;
}

static enum conn_status send_all(struct conn *c, const char *data, size_t len, int64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n;
        short want = POLLOUT;
        if (c->tls) {
            n = tls_send(c->tls, data + off, len - off);
            if (n == TLS_ERROR)
                return CONN_ERROR;
            if (n == TLS_WANT_READ)
                want = POLLIN;
            if (n < 0)
                errno = EAGAIN;
        } else {
            n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        }
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return CONN_ERROR;
        enum conn_status st = wait_io(c, want, deadline, false);
        if (st != CONN_OK)
            return st;
    }
    return CONN_OK;
}

enum conn_status conn_flush(struct conn *c, int64_t deadline)
{
    if (c->out_len == 0)
        return CONN_OK;
    enum conn_status st = send_all(c, c->out, c->out_len, deadline);
    c->out_len = 0;
    return st;
}

enum conn_status conn_write(struct conn *c, int64_t deadline, const char *data, size_t len)
{
    if (len > sizeof c->out - c->out_len) {
        enum conn_status st = conn_flush(c, deadline);
        if (st != CONN_OK)
            return st;
        if (len > sizeof c->out)
            return send_all(c, data, len, deadline);
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return CONN_OK;
}

enum conn_status conn_printf(struct conn *c, int64_t deadline, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CONN_ERROR;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1; /* callers keep lines short; a cut line still ends the batch */
    return conn_write(c, deadline, buf, (size_t)n);
}

static enum conn_status handshake(struct conn *c, int64_t deadline)
{
    for (;;) {
        int r = tls_handshake(c->tls, c->tls_error, sizeof c->tls_error);
        if (r == 0)
            return CONN_OK;
        if (r == TLS_ERROR)
            return CONN_ERROR;
        enum conn_status st = wait_io(c, r == TLS_WANT_WRITE ? POLLOUT : POLLIN, deadline, false);
        if (st != CONN_OK) {
            snprintf(c->tls_error, sizeof c->tls_error, "handshake %s", conn_status_name(st));
            return st;
        }
    }
}

enum conn_status conn_tls_server(struct conn *c, int64_t deadline)
{
    c->tls = tls_server_new(c->fd);
    if (!c->tls) {
        snprintf(c->tls_error, sizeof c->tls_error, "no TLS context (out of memory)");
        return CONN_ERROR;
    }
    return handshake(c, deadline);
}

enum conn_status conn_tls_client(struct conn *c, int64_t deadline, const char *sni, enum tls_verify verify)
{
    c->tls = tls_client_new(c->fd, sni, verify);
    if (!c->tls) {
        snprintf(c->tls_error, sizeof c->tls_error, "no TLS client context");
        return CONN_ERROR;
    }
    if (c->resume)
        (void)tls_session_set(c->tls, c->resume); /* a refused offer is a full handshake */
    return handshake(c, deadline);
}

enum conn_status conn_tls_client_dane(struct conn *c, int64_t deadline, const char *sni,
                                      const struct dane_set *dane)
{
    c->tls = tls_client_new_dane(c->fd, sni, dane);
    if (!c->tls) {
        snprintf(c->tls_error, sizeof c->tls_error, "no TLS client context");
        return CONN_ERROR;
    }
    return handshake(c, deadline);
}

/* close_keeping_errno — close fd after a failure, keeping the failure's
 * errno for the caller; returns -1. */
static int close_keeping_errno(int fd)
{
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int conn_connect(const struct sockaddr *addr, unsigned addr_len, int64_t deadline)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, addr, addr_len) == 0)
        return fd;
    if (errno != EINPROGRESS)
        goto fail;
    for (;;) {
        int64_t left = deadline - util_now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            goto fail;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            continue;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            errno = err;
            goto fail;
        }
        return fd;
    }
fail:
    return close_keeping_errno(fd);
}

/* listen_on — a non-blocking listening socket bound to sa; dual turns
 * IPV6_V6ONLY off.  -1 with errno on failure. */
static int listen_on(const struct sockaddr *sa, socklen_t len, bool dual, int backlog)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1, v6only = !dual;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)
        goto fail;
    if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:
    return close_keeping_errno(fd);
}

int conn_listen(const struct config_listen *l, int backlog)
{
    if (!l->any)
        return listen_on((const struct sockaddr *)&l->addr, l->addr_len, false, backlog);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(l->port)};
    v6.sin6_addr = in6addr_any;
    int fd = listen_on((const struct sockaddr *)&v6, sizeof v6, true, backlog);
    if (fd >= 0 || (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL && errno != EPROTONOSUPPORT))
        return fd;
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(l->port)};
    v4.sin_addr.s_addr = htonl(INADDR_ANY);
    return listen_on((const struct sockaddr *)&v4, sizeof v4, false, backlog);
}
