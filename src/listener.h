/*
 * listener — the SMTP listening sockets and the accept loop: one detached
 * thread with a small explicit stack per connection, bounded by
 * MRS_MAX_CONNECTIONS (the connection over the bound gets 421 4.7.0).
 *
 * Calls session, config, log, stats, util.  listener_open() and
 * listener_start() run on the main thread at start; the accept loop has its
 * own thread.
 */
#ifndef MRS_LISTENER_H
#define MRS_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "stats.h"

/* Thread stack of a session: measured with mbedTLS handshakes (RSA and
 * ECDSA) and Argon2id, see README "Memory". */
#define LISTENER_STACK_BYTES (128 * 1024)

/* listener_open — bind and listen on l (no-op for `off`).  -1 with one line
 * naming the variable and address when it cannot. */
int listener_open(const struct config_listen *l, const char *var, bool implicit_tls,
                  enum stats_listener kind, char *err, size_t err_len);
/* listener_start — start accepting on every opened socket. */
int listener_start(char *err, size_t err_len);
/* listener_stop — stop accepting (close the listening sockets). */
void listener_stop(void);
/* listener_sessions — sessions running now. */
int64_t listener_sessions(void);
/* listener_wait_idle — wait until no session runs or the deadline passes;
 * true when idle. */
bool listener_wait_idle(int64_t deadline_ms);

#endif
