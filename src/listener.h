/*
 * listener — the SMTP listening sockets and their session threads: one
 * detached thread with a small explicit stack per session, bounded by
 * MRS_MAX_CONNECTIONS (the connection over the bound gets 421 4.7.0);
 * idle ones wait for and accept the next connection themselves.
 *
 * Calls session, config, log, stats, util.  listener_open() and
 * listener_start() run on the main thread at start.
 */
#ifndef MRS_LISTENER_H
#define MRS_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "stats.h"

/* Thread stack of a session.  Measured (lowest touched byte of a fresh
 * stack at session end, test_tls + test_smtp): at most 9,000 bytes used,
 * with TLS 1.2/1.3 handshakes on RSA-2048 and ECDSA P-256 certificates and
 * an Argon2id verification; sessions still passed at 8 KiB.  The session's
 * own struct (about 6 KB) lives on this stack too since issue 11.  64 KiB
 * leaves a 4x margin; untouched pages are never resident. */
#ifndef LISTENER_STACK_BYTES
#define LISTENER_STACK_BYTES (64 * 1024)
#endif

/* listener_open — bind and listen on l (no-op for `off`).  -1 with one line
 * naming the variable and address when it cannot. */
int listener_open(const struct config_listen *l, const char *var, bool implicit_tls,
                  enum stats_listener kind, char *err, size_t err_len);
/* listener_start — start accepting on every opened socket. */
int listener_start(char *err, size_t err_len);
/* listener_stop — after the drain started: wait until the idle threads
 * ended (they wake on the drain eventfd), then close the listening
 * sockets.  Threads running a session are not waited for. */
void listener_stop(void);
/* listener_sessions — sessions running now. */
int64_t listener_sessions(void);
/* listener_wait_idle — wait until no session runs or the deadline passes;
 * true when idle. */
bool listener_wait_idle(int64_t deadline_ms);

#endif
