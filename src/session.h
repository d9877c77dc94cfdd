/*
 * session — one inbound SMTP submission session (SPEC §4), run on the
 * connection's own thread from the greeting to the close.
 *
 * The state machine and its command table live in session.c, the DATA
 * and BDAT message reader in session_data.c and session_bdat.c; replies leave through one function in batches (PIPELINING,
 * RFC 2920).  Calls conn, tls (through conn), auth, policy, queue, stats,
 * log, smtp_proto, config, util.
 */
#ifndef MRS_SESSION_H
#define MRS_SESSION_H

#include <stdbool.h>
#include <sys/socket.h>

#include "stats.h"

struct session_start {
    int fd;                           /* accepted socket, owned by the session */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    bool implicit_tls;                /* MRS_SUBMISSIONS_LISTEN: TLS from the first byte */
    enum stats_listener listener;
};

/* session_run — serve one connection to its end and close it. */
void session_run(const struct session_start *start);

#endif
