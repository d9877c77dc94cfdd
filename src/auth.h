/*
 * auth — the users table, SASL PLAIN/LOGIN decoding, password verification
 * with a verify cache and bounded Argon2id concurrency, per-address failure
 * throttling, and per-user sending limits (MRS_RATE_LIMIT).
 *
 * The table is immutable once built; auth_load() builds a new one and swaps
 * it in (SIGHUP), clearing the verify cache with it.  Calls config, crypto,
 * log, util.  Thread-safe.
 */
#ifndef MRS_AUTH_H
#define MRS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_USER_MAX_BYTES 255
#define AUTH_PASSWORD_MAX_BYTES 4096 /* SPEC §8.1 */

/*
 * auth_load — (re)build the users table from MRS_USERS and MRS_USERS_FILE
 * (one `username:hash` per line or space-separated, `#` comments).  On
 * failure the old table stays and err names the variable (and line);
 * *malformed tells a syntax error (exit 2 at start) from an unreadable file
 * (exit 1).
 */
int auth_load(char *err, size_t err_len, bool *malformed);
size_t auth_user_count(void);

enum auth_result { AUTH_OK = 0, AUTH_FAIL, AUTH_TEMPFAIL, AUTH_BLOCKED };

/*
 * auth_verify — check a username and password for a client.  A cached
 * success costs a keyed hash; otherwise Argon2id runs (at most
 * MRS_AUTH_CONCURRENCY at once).  An unknown user costs the same as a wrong
 * password.  AUTH_BLOCKED: the client's address failed too often lately —
 * checked again after waiting for an Argon2id slot, so a burst of parallel
 * guesses stops at the threshold instead of queueing behind it.
 */
enum auth_result auth_verify(const char *user, size_t user_len, const char *pw, size_t pw_len,
                             const struct sockaddr *client);

/*
 * SASL decoders (RFC 4616, and the LOGIN mechanism's base64 lines).  Pure.
 * auth_decode_plain: "[authzid] NUL authcid NUL passwd", authzid empty or
 * equal to authcid.  Outputs are NUL-terminated.  0, -1 when malformed or
 * over the limits, or AUTH_PLAIN_OTHER_AUTHZID for a well-formed response
 * asking to act as another identity (refused as bad credentials, 535).
 */
#define AUTH_PLAIN_OTHER_AUTHZID (-2)
int auth_decode_plain(const char *b64, size_t len, char *user, size_t *user_len, char *pw,
                      size_t *pw_len);
int auth_decode_line(const char *b64, size_t len, char *out, size_t cap, size_t *out_len);

/*
 * Failure throttling per client (an IPv4 address or an IPv6 /64, IPv4-mapped
 * addresses counted as IPv4: util_client_key): auth_failure() records a
 * failed attempt and returns how long to wait before answering (growing, at
 * most 5 s); auth_blocked() says whether the client has failed so often
 * lately that a password is no longer verified for it.  A block does not
 * refuse a user who authenticated from this client before with a password
 * the relay still has verified (a customer behind the same NAT as an
 * attacker keeps working), and a success does not reset the client's
 * failures (an attacker's own success would reset its count).
 */
int64_t auth_failure(const struct sockaddr *client);
bool auth_blocked(const struct sockaddr *client);
/* auth_success — record that user authenticated from this client: while
 * the client is blocked, only such users' verified passwords still pass. */
void auth_success(const struct sockaddr *client, const char *user, size_t len);

/* Per-user sending limit: auth_rate_allow() says whether one more message
 * fits the MRS_RATE_LIMIT window; auth_rate_count() records one accepted. */
bool auth_rate_allow(const char *user);
void auth_rate_count(const char *user);

#endif
