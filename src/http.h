/*
 * http — a pure, strict, bounded HTTP/1.x parser and formatter for the
 * health listener (RFC 9110, RFC 9112).  No I/O, no allocation, no globals:
 * unit tests and fuzzers call it directly, any thread may call it.
 *
 * Strictness, chosen for a probe endpoint whose clients are kubelet, curl,
 * Prometheus and `mrs healthcheck`, all of which send clean requests:
 *  - lines end in CRLF only; a bare LF or bare CR is a 400 (RFC 9112 §2.2
 *    lets a server refuse them, and refusing keeps the end of the head
 *    unambiguous); a NUL or other control byte anywhere is a 400;
 *  - no leading empty lines, no obs-fold, no space before a field's colon;
 *  - request-target in origin-form only ("/path?query"), RFC 3986 bytes;
 *    absolute-form, which RFC 9112 §3.2.2 says a server must accept, is a
 *    400 here on purpose: only proxies send it, and no probe goes through
 *    one;
 *  - HTTP/1.0 and HTTP/1.1 only (other HTTP/x.y: 505); HTTP/1.1 needs
 *    exactly one Host (RFC 9112 §3.2);
 *  - no request body: Content-Length > 0 is 413, Transfer-Encoding is 400;
 *  - bounded: head 8 KiB and 64 fields (431), target 2 KiB (414).
 * Bytes after the head (pipelined requests, junk) are not looked at.
 *
 * Leaf module: calls only libc.
 */
#ifndef MRS_HTTP_H
#define MRS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX_BYTES 8192      /* request line + fields + empty line */
#define HTTP_TARGET_MAX_BYTES 2048    /* a longer request-target: 414 */
#define HTTP_METHOD_MAX_BYTES 16      /* a longer method token: 400 */
#define HTTP_FIELDS_MAX 64            /* more header fields: 431 */

enum http_method { HTTP_METHOD_OTHER = 0, HTTP_METHOD_GET, HTTP_METHOD_HEAD };

enum http_parse_result {
    HTTP_PARSE_MORE = 0, /* well-formed so far but the head is incomplete: read more */
    HTTP_PARSE_DONE,     /* a complete, valid request head; the request is filled */
    HTTP_PARSE_ERROR,    /* refused: status and error say why */
};

/* A parsed request.  Pointers point into the caller's buffer and live as
 * long as it does. */
struct http_request {
    enum http_method method;
    const char *method_text;  /* the method token as sent (for 405 logs) */
    size_t method_len;
    const char *path;         /* request-target up to '?', starts with '/' */
    size_t path_len;
    const char *query;        /* after '?', NULL when the target has none */
    size_t query_len;
    int version_minor;        /* HTTP/1.<minor>: 0 or 1 */
    int fields;               /* header fields seen */
    size_t head_len;          /* DONE: bytes up to and including the empty line */
    int status;               /* ERROR: 400, 413, 414, 431 or 505 */
    const char *error;        /* ERROR: static English text for the log */
};

/*
 * http_parse_request — parse the request head at the start of buf[0..len).
 * Call it again with the same buffer, grown, after every read: it starts
 * over each time (the head is at most 8 KiB) and reports an error as soon
 * as the bytes seen so far cannot begin a valid head, so a bad client is
 * answered without waiting for its timeout.  MORE is only returned while
 * len < HTTP_HEAD_MAX_BYTES, so a buffer of that size never overflows.
 * buf may hold any bytes, including NUL; it is never written.
 */
enum http_parse_result http_parse_request(const char *buf, size_t len, struct http_request *req);

/* http_reason — the reason phrase of a status code ("Not Found"); "Unknown"
 * for a code this module never produces. */
const char *http_reason(int status);

/*
 * http_response_head — format a response head into buf (cap bytes):
 * "HTTP/1.1 <status> <reason>", Content-Type, Content-Length: body_len,
 * Cache-Control: no-store, Connection: close, then `extra` (NULL or complete
 * "Name: value\r\n" lines, written as given) and the empty line.  Returns
 * the length written (NUL-terminated, NUL not counted), or -1 when it does
 * not fit.
 */
int http_response_head(char *buf, size_t cap, int status, const char *content_type,
                       size_t body_len, const char *extra);

/*
 * http_query_param — the value of parameter `name` in a query string
 * ("a=1&b=x%40y"), percent-decoded into out (NUL-terminated).  '+' is kept
 * as it is (RFC 3986 gives it no meaning; encode a space as %20).  Returns
 * 1 when found, 0 when absent, -1 when the query is malformed (a bad %
 * escape), the parameter appears twice, its decoded value holds a control
 * byte, or it does not fit cap.  Pure.
 */
int http_query_param(const char *query, size_t len, const char *name, char *out, size_t cap);

/*
 * http_parse_status — the status code of a response whose first bytes are
 * buf[0..len): "HTTP/1.<d> <3 digits>" then SP or CRLF.  Returns 1 with
 * *status set, 0 when more bytes are needed, -1 when it is not HTTP/1.x.
 * Used by `mrs healthcheck`.
 */
int http_parse_status(const char *buf, size_t len, int *status);

#endif
