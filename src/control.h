/*
 * control — queue control of a running relay (SPEC §8.6) through a UNIX
 * socket in the spool directory, `<MRS_SPOOL_DIR>/control.sock` (mode
 * 0600; the peer must run as the relay's user or root).  The relay stays
 * the only writer of the spool: `mrs queue …` only asks it.
 *
 * Protocol: the client sends one line, "LIST", "SHOW <id>", "FLUSH",
 * "FLUSH <id>", "HOLD <id>", "RELEASE <id>" or "DELETE <id>"; the relay
 * answers "OK", "NOTFOUND" or "ERR" on the first line, then text for the
 * operator, and closes.
 *
 * Server side: one thread, one request at a time (each takes
 * milliseconds).  Calls queue, log, config, util.
 */
#ifndef MRS_CONTROL_H
#define MRS_CONTROL_H

#include <stddef.h>

#define CONTROL_SOCKET_NAME "control.sock"
#define CONTROL_REQUEST_MAX_BYTES 128
#define CONTROL_TIMEOUT_MS 5000

/* control_start — bind the socket and start serving; -1 with err naming
 * the socket path and the cause. */
int control_start(char *err, size_t err_len);
/* control_stop — stop serving and remove the socket file. */
void control_stop(void);

/* control_cli — `mrs queue [list | show ID | flush [ID] | hold ID |
 * release ID | delete ID]`, argv as main() got it.  Returns the exit code:
 * 0 done, 1 no such message, 2 usage, 3 relay not reachable (plain `mrs
 * queue` then lists the spool files directly instead). */
int control_cli(int argc, char **argv);

#endif
