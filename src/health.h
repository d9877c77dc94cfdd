/*
 * health — the HTTP listener for probes and metrics (SPEC §6), and the
 * `mrs healthcheck` client (SPEC §2).
 *
 *   GET /healthz  200 "ok\n" while the process serves (liveness)
 *   GET /readyz   200 "ready\n" when every condition is ok, no drain has
 *                 started and a file can be created in <spool>/tmp;
 *                 otherwise 503 with one line per reason
 *   GET /metrics  Prometheus text exposition 0.0.4 of the counters in stats.h
 * HEAD is allowed on the three paths; other methods 405, other paths 404,
 * malformed or oversized requests 400/413/414/431/505 (see http.h).
 * Every response closes the connection.
 *
 * Threads: one acceptor thread, and one detached thread per HTTP connection
 * (small explicit stack, at most HEALTH_CONNECTIONS_MAX at once; more are
 * closed at once), so a slow client never delays another probe.  Rendering
 * /metrics only loads atomics, so it never blocks an SMTP session.  Every
 * function here is thread-safe.
 *
 * Calls: config, log, stats, http.
 */
#ifndef MRS_HEALTH_H
#define MRS_HEALTH_H

#include "config.h"

#include <stddef.h>

#define HEALTH_CONNECTIONS_MAX 64           /* concurrent HTTP connections */
#define HEALTH_THREAD_STACK_BYTES (64 * 1024)
#define HEALTH_REQUEST_TIMEOUT_MS 5000      /* to send the whole request head */
#define HEALTH_SEND_TIMEOUT_MS 5000         /* to take the whole response */
#define HEALTH_LINGER_MS 1000               /* to read what follows, then close */
#define HEALTH_METRICS_MAX_BYTES (64 * 1024)
#define HEALTH_REASON_MAX_BYTES 200
#define HEALTH_CLI_TIMEOUT_MS 2000          /* `mrs healthcheck`, in total */

/* What /readyz requires.  Every condition starts not ok. */
enum health_cond {
    HEALTH_LISTENERS = 0, /* every SMTP listener is bound */
    HEALTH_TLS,           /* certificate and key are loaded */
    HEALTH_USERS,         /* the users table is loaded */
    HEALTH_SPOOL,         /* the spool is open and recovered */
    HEALTH_RESOLVER,      /* the resolver has at least one server */
    HEALTH_STARTED,       /* start-up is complete */
    HEALTH_COND_COUNT
};

/*
 * health_start — bind the listener and start its acceptor thread.  `:PORT`
 * binds the IPv6 wildcard with IPV6_V6ONLY off (IPv4 and IPv6), or 0.0.0.0
 * when the host has no IPv6.  An `off` listener is a no-op returning 0.
 * Returns 0, or -1 with one line in err naming the address and the cause
 * (nothing is left running then).  listen is only read during the call.
 */
int health_start(const struct config_listen *listen, char *err, size_t err_len);

/* health_stop — stop accepting, close the listener and wait up to a second
 * for connections in progress; a no-op when not started.  Call it once, from
 * the thread that called health_start(). */
void health_stop(void);

/* health_set — mark a condition ok or not; reason (may be NULL for a default
 * text; copied, control bytes replaced, cut at HEALTH_REASON_MAX_BYTES) is
 * the line /readyz shows while !ok.  A change is logged. */
void health_set(enum health_cond c, int ok, const char *reason);

/* health_set_spool_dir — from now on every /readyz also creates and removes
 * a probe file in <dir>/tmp (never creating tmp itself); failing is 503
 * "spool directory <dir> is not writable".  dir is copied; NULL or "" turns
 * the probe off. */
void health_set_spool_dir(const char *dir);

/* health_set_draining — from now on /readyz answers 503 "draining";
 * /healthz stays 200.  Idempotent. */
void health_set_draining(void);

/*
 * health_set_check_handler — serve GET /check (SPEC §8.6) with fn, which
 * gets the raw query string and writes a JSON body into out (cap bytes),
 * returning the HTTP status and the body length in *len.  Registered by
 * main, so the health listener calls nothing above it.  At most
 * HEALTH_CHECKS_MAX run at once (they wait on DNS; more get 503) and
 * HEALTH_CHECKS_PER_S a second on average (more get 429).
 */
#define HEALTH_CHECKS_MAX 4
#define HEALTH_CHECKS_PER_S 10
#define HEALTH_CHECKS_BURST 20
#define HEALTH_CHECK_BODY_MAX_BYTES (32 * 1024)
typedef int (*health_check_fn)(const char *query, size_t query_len, char *out, size_t cap, size_t *len);
void health_set_check_handler(health_check_fn fn);

/*
 * health_cli — `mrs healthcheck [HOST:PORT]`, argv as main() got it
 * (argv[1] is "healthcheck").  GET /healthz on HOST:PORT, or on
 * config->health (config already loaded; `:PORT` means 127.0.0.1:PORT).
 * Returns the exit code: 0 on a 200 within HEALTH_CLI_TIMEOUT_MS, 1
 * otherwise (also for usage errors: Docker reserves exit code 2).  Prints
 * nothing on success, one stderr line on failure.
 */
int health_cli(int argc, char **argv);

#endif
