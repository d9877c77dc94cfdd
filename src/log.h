/*
 * log — one line per event on stderr, text or JSON.
 *
 * Every line is built in a stack buffer and written with one write(2), so
 * lines from concurrent threads never interleave.  Every field value is
 * sanitized (control and non-ASCII bytes escaped, length capped) because most
 * of them come from clients.  Stable JSON keys: ts, level, event, session,
 * queue_id, user, client, from, rcpt, remote, result, reason, msg.
 *
 * Severities (STYLE): warn — this connection or message fails, the process
 * goes on; fatal — the environment is broken, exit 1; panic — one of our
 * invariants is broken, abort.  Nothing a client sends may reach the last two.
 *
 * Leaf module: thread-safe, no allocation.
 */
#ifndef MRS_LOG_H
#define MRS_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Optional structured fields; NULL members are left out of the line. */
struct log_fields {
    const char *session;
    const char *queue_id;
    const char *user;
    const char *client;
    const char *from;
    const char *rcpt;
    const char *const *rcpts;   /* a list (the accepted message's recipients) */
    size_t rcpt_count;
    const char *remote;
    const char *result;
    const char *reason;
};

#define LOG_LINE_MAX_BYTES 2048
#define LOG_VALUE_MAX_BYTES 256
#define LOG_LIST_MAX_BYTES (4 * 1024 * 1024) /* a line with a list (recipients) */

/* log_init — choose JSON (json != 0) or text lines, and the lowest level
 * printed.  Before it is called: text at info. */
void log_init(int json, enum log_level min_level);

/* log_enabled — whether a line at this level would be printed. */
int log_enabled(enum log_level level);

/* log_event — one line: level, event name, fields (may be NULL), message. */
void log_event(enum log_level level, const char *event, const struct log_fields *f,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void log_eventv(enum log_level level, const char *event, const struct log_fields *f,
                const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

#define log_debug(ev, f, ...) log_event(LOG_DEBUG, ev, f, __VA_ARGS__)
#define log_info(ev, f, ...) log_event(LOG_INFO, ev, f, __VA_ARGS__)
#define log_warn(ev, f, ...) log_event(LOG_WARN, ev, f, __VA_ARGS__)
#define log_error(ev, f, ...) log_event(LOG_ERROR, ev, f, __VA_ARGS__)

/* log_fatal — environment broken: log at error level and exit(1). */
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* log_panic — our own invariant broken: log and abort(). */
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* log_sanitize — copy untrusted bytes into dst as printable ASCII (others as
 * \xHH), at most dst_len-1 bytes, always NUL-terminated.  Returns dst. */
char *log_sanitize(char *dst, size_t dst_len, const char *src, size_t src_len);

#endif
