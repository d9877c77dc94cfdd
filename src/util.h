/*
 * util — small helpers every module may use: clocks, ASCII case, the
 * process-wide drain signal.  Leaf module, thread-safe.
 */
#ifndef MRS_UTIL_H
#define MRS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic milliseconds (for deadlines) and wall-clock milliseconds. */
int64_t util_now_ms(void);
int64_t util_wall_ms(void);

/* ASCII-only case helpers (never locale-dependent). */
char util_lower(char c);
void util_lower_str(char *s);
bool util_ieq(const char *a, size_t alen, const char *b); /* b is NUL-terminated */

/*
 * The drain signal: util_drain_fd() is an eventfd that becomes readable,
 * and stays readable, once util_drain_start() was called (SIGTERM).  Blocking
 * waits poll it too so idle sessions and sleeping threads wake at once.
 */
int util_drain_init(void);
int util_drain_fd(void);
void util_drain_start(void);   /* async-signal-safe */
bool util_draining(void);

/* util_sleep_ms — sleep, returning early (false) when the drain starts. */
bool util_sleep_ms(int64_t ms);

/*
 * util_copy — the one way to copy received bytes into a fixed array: copies
 * len bytes of src into dst[dst_size] and NUL-terminates.  Returns 0, or -1
 * with dst set to "" when len + 1 > dst_size (the caller refuses the input;
 * nothing is truncated silently).  The bound sits at the copy, not in a
 * validator three calls away.
 */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((access(write_only, 1, 2), access(read_only, 3, 4)))
#endif
int util_copy(char *dst, size_t dst_size, const char *src, size_t len);

/*
 * util_client_key — what identifies one client for per-client limits
 * (connection cap, AUTH throttling): a family byte, then the IPv4 address
 * or the IPv6 /64 prefix.  An IPv4-mapped IPv6 address (a dual-stack
 * listener's IPv4 peer) is keyed as the IPv4 address it is.
 */
#define UTIL_CLIENT_KEY_BYTES 9
struct sockaddr;
void util_client_key(const struct sockaddr *sa, uint8_t key[UTIL_CLIENT_KEY_BYTES]);

/* util_rfc5322_date — "Thu, 26 Nov 2026 15:47:47 +0000" for wall-clock seconds. */
void util_rfc5322_date(int64_t unix_s, char *buf, size_t len);

#endif
