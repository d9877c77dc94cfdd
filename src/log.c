/*
 * log — one line per event on stderr (see log.h for the contract).
 *
 * A line is assembled in a bounded stack buffer by a tiny appender whose
 * overflow is sticky: a line that would not fit is cut and marked with "…"
 * rather than split into two writes.  A line that lists recipients (the
 * accepted message's) gets a heap buffer sized for all of them, so every
 * recipient is named on that one line.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_json;
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_min = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* A line being built.  put() stops LOG_CUT_ROOM bytes short of the end, so
 * the mark of a cut line always fits after it. */
#define LOG_CUT_ROOM 16
struct line {
    char *buf;
    size_t cap, len;
    int full;
    size_t safe;        /* JSON: the line is a valid object up to here when closed with } */
    size_t value_start; /* JSON: where the field value being written starts (after its quote) */
    int in_value;       /* JSON: inside a field's quoted value (not a list's) */
    int cut_in_value;   /* JSON: in_value when the line filled up */
};

void log_init(int json, enum log_level min_level)
{
    atomic_store(&log_json, json);
    atomic_store(&log_min, (int)min_level);
}

int log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&log_min);
}

static void put(struct line *l, const char *s, size_t n)
{
    /* keep room for the cut mark, the newline and a NUL; what does not
     * fit is cut */
    size_t room = l->full ? 0 : l->cap - LOG_CUT_ROOM - 2 - l->len;
    if (n > room) {
        n = room;
        if (!l->full)
            l->cut_in_value = l->in_value;
        l->full = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s) { put(l, s, strlen(s)); }

char *log_sanitize(char *dst, size_t dst_len, const char *src, size_t src_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (dst_len == 0)
        return dst;
    for (size_t i = 0; i < src_len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c < 0x7f) {
            if (o + 1 >= dst_len)
                break;
            dst[o++] = (char)c;
        } else {
            if (o + 4 >= dst_len)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = '\0';
    return dst;
}

/* put_escaped — v[0..n) sanitized on the way in (a byte outside
 * printable ASCII becomes \xNN), with " and \ escaped when quoted. */
static void put_escaped(struct line *l, const char *v, size_t n, int quote)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n;) {
        size_t run = i; /* bytes that go out as they are, copied at once */
        while (run < n && (unsigned char)v[run] >= 0x20 && (unsigned char)v[run] < 0x7f &&
               !(quote && (v[run] == '"' || v[run] == '\\')))
            run++;
        put(l, v + i, run - i);
        if (run == n)
            break;
        unsigned char c = (unsigned char)v[run];
        if (c < 0x20 || c >= 0x7f) {
            char esc[6] = {'\\', '\\', 'x', hex[c >> 4], hex[c & 15]};
            put(l, quote ? esc : esc + 1, quote ? 5 : 4);
        } else {
            char esc[2] = {'\\', (char)c};
            put(l, esc, 2);
        }
        i = run + 1;
    }
}

/* A field value: sanitized, then quoted for JSON or for text when it has
 * spaces, quotes, backslashes, '=' or bytes that need escaping. */
static void put_value(struct line *l, const char *v, int json)
{
    size_t n = strnlen(v, LOG_VALUE_MAX_BYTES);
    int quote = json || n == 0;
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char c = (unsigned char)v[i];
        quote = c < 0x20 || c >= 0x7f || c == ' ' || c == '"' || c == '\\' || c == '=';
    }
    if (quote)
        put(l, "\"", 1);
    put_escaped(l, v, n, quote);
    if (quote)
        put(l, "\"", 1);
}

static void put_field(struct line *l, const char *key, const char *v, int json)
{
    if (v == NULL)
        return;
    if (!json) {
        put(l, " ", 1);
        puts_(l, key);
        put(l, "=", 1);
        put_value(l, v, 0);
        return;
    }
    put(l, ",\"", 2);
    puts_(l, key);
    put(l, "\":\"", 3);
    if (!l->full)
        l->value_start = l->len; /* a full line keeps the value it was cut in */
    l->in_value = 1;
    put_escaped(l, v, strnlen(v, LOG_VALUE_MAX_BYTES), 1);
    l->in_value = 0;
    put(l, "\"", 1);
    if (!l->full)
        l->safe = l->len;
}

/* put_list — "key":["a","b"] (JSON) or key=a,b (text). */
static void put_list(struct line *l, const char *key, const char *const *v, size_t n, int json)
{
    if (n == 0)
        return;
    put(l, json ? ",\"" : " ", json ? 2 : 1);
    puts_(l, key);
    put(l, json ? "\":[" : "=", json ? 3 : 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(l, ",", 1);
        put_value(l, v[i] ? v[i] : "", json);
    }
    if (json)
        put(l, "]", 1);
    if (json && !l->full)
        l->safe = l->len;
}

static void put_timestamp(struct line *l)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* "2026-12-03T17:39:59.601Z" by hand (snprintf's seven conversions
     * were most of a line's formatting) */
    const int v[] = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(ts.tv_nsec / 1000000)};
    static const char sep[] = "--T::.Z";
    static const int digits[] = {4, 2, 2, 2, 2, 2, 3};
    size_t n = 0;
    for (int i = 0; i < 7; i++) {
        int x = v[i] < 0 ? 0 : v[i];
        for (int d = digits[i] - 1; d >= 0; d--, x /= 10)
            buf[n + (size_t)d] = (char)('0' + x % 10);
        n += (size_t)digits[i];
        buf[n++] = sep[i];
    }
    put(l, buf, n);
}

void log_eventv(enum log_level level, const char *event, const struct log_fields *f,
                const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno;
    int json = atomic_load(&log_json);
    char stack_buf[LOG_LINE_MAX_BYTES];
    struct line l = {.buf = stack_buf, .cap = sizeof stack_buf};
    char *heap = NULL;
    if (f && f->rcpt_count) {
        /* each value: at most 5 bytes per byte escaped, its quotes, a comma */
        size_t need = LOG_LINE_MAX_BYTES;
        for (size_t i = 0; i < f->rcpt_count && need < LOG_LIST_MAX_BYTES; i++)
            need += 5 * (f->rcpts[i] ? strnlen(f->rcpts[i], LOG_VALUE_MAX_BYTES) : 0) + 3;
        if (need > LOG_LIST_MAX_BYTES)
            need = LOG_LIST_MAX_BYTES; /* cut with "…" beyond that */
        if ((heap = malloc(need))) {
            l.buf = heap;
            l.cap = need;
        }
    }
    char msg[LOG_LINE_MAX_BYTES / 2];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        msg[0] = '\0';

    if (json) {
        put(&l, "{\"ts\":\"", 7);
        put_timestamp(&l);
        put(&l, "\",\"level\":\"", 11);
        puts_(&l, level_names[level]);
        put(&l, "\"", 1);
        l.safe = l.len;
        put_field(&l, "event", event, 1);
    } else {
        put_timestamp(&l);
        put(&l, " ", 1);
        puts_(&l, level_names[level]);
        put(&l, " ", 1);
        puts_(&l, event);
    }
    if (f) {
        put_field(&l, "session", f->session, json);
        put_field(&l, "queue_id", f->queue_id, json);
        put_field(&l, "user", f->user, json);
        put_field(&l, "client", f->client, json);
        put_field(&l, "from", f->from, json);
        put_field(&l, "rcpt", f->rcpt, json);
        put_list(&l, "rcpts", f->rcpts, f->rcpt_count, json);
        put_field(&l, "remote", f->remote, json);
        put_field(&l, "result", f->result, json);
        put_field(&l, "reason", f->reason, json);
    }
    if (msg[0]) {
        if (json) {
            put_field(&l, "msg", msg, 1);
        } else {
            put(&l, ": ", 2);
            put_escaped(&l, msg, strlen(msg), 0);
        }
    }
    if (json)
        put(&l, "}", 1);
    if (l.full) {
        /* "..." marks a cut line.  JSON must still parse: cut inside a
         * field's value, the value ends there (not inside a two-byte
         * escape, \\ or \": an odd run of backslashes at the cut loses its
         * last one); cut anywhere else, the line goes back to its last
         * whole field.  LOG_CUT_ROOM bytes are left for either mark. */
        size_t floor = json && l.cut_in_value ? l.value_start : 0, bs = 0;
        while (l.len - bs > floor && l.buf[l.len - 1 - bs] == '\\')
            bs++;
        l.len -= bs % 2;
        const char *mark = !json ? "..." : l.cut_in_value ? "...\"}" : ",\"cut\":\"...\"}";
        if (json && !l.cut_in_value)
            l.len = l.safe;
        memcpy(l.buf + l.len, mark, strlen(mark));
        l.len += strlen(mark);
    }
    l.buf[l.len++] = '\n';
    /* one write per line; the lock keeps lines longer than PIPE_BUF (an
     * accepted message's recipients) from interleaving with other threads' */
    pthread_mutex_lock(&write_mu);
    for (size_t off = 0; off < l.len;) {
        ssize_t w = write(STDERR_FILENO, l.buf + off, l.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&write_mu);
    free(heap);
    errno = saved_errno;
}

void log_event(enum log_level level, const char *event, const struct log_fields *f,
               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_eventv(level, event, f, fmt, ap);
    va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_eventv(LOG_ERROR, "fatal", NULL, fmt, ap);
    va_end(ap);
    exit(1);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_eventv(LOG_ERROR, "panic", NULL, fmt, ap);
    va_end(ap);
    abort();
}
