/*
 * tls — the only user of mbedTLS.
 *
 * One shared, read-only server configuration (certificate chain + key, or an
 * ephemeral ECDSA P-256 self-signed certificate; TLS 1.2 and 1.3, forward
 * secret suites only, session tickets), swapped atomically on reload; two
 * client configurations for delivery (opportunistic: encrypt without
 * verifying; strict: verify against a CA bundle).  Per-connection contexts
 * hold a reference to the configuration they started with, so a reload never
 * pulls it from under a live session.
 *
 * I/O is non-blocking: the functions return TLS_WANT_READ / TLS_WANT_WRITE
 * and the caller (conn.c) polls the socket with its own deadlines.  A
 * handshake flight leaves in one send; records are read ahead (a little),
 * so bytes may wait inside the context where poll does not see them: a
 * read that must not wait calls tls_recv rather than poll.  In the
 * handshake, right after a flight, a read reports TLS_WANT_READ without
 * trying the socket (the answer cannot be there yet), so a caller always
 * polls on TLS_WANT_READ.
 * Thread-safe: configurations are shared, contexts are per thread.
 */
#ifndef MRS_TLS_H
#define MRS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TLS_ERROR (-1)
#define TLS_WANT_READ (-2)
#define TLS_WANT_WRITE (-3)

struct tls_conn;

/*
 * tls_init — seed the shared random generator and PSA crypto.  Call once at
 * start, before any other tls_ function.  -1 with err on failure.
 */
int tls_init(char *err, size_t err_len);

/*
 * tls_server_load — build a server configuration from PEM files, or (both
 * NULL/empty) from an ephemeral ECDSA P-256 certificate for `hostname`, and
 * make it the one new connections use.  cert_path and key_path may each be
 * a comma-separated list of equal length (at most TLS_PAIRS_MAX pairs, e.g.
 * an ECDSA and an RSA pair: SPEC §8.2); a client that accepts ECDSA gets
 * the ECDSA certificate.  On failure the previous configuration stays in
 * force and err names the file and the problem.
 */
#define TLS_PAIRS_MAX 4
int tls_server_load(const char *cert_path, const char *key_path, const char *hostname,
                    char *err, size_t err_len);

/*
 * tls_client_init — client configurations for delivery.  ca_file (may be
 * NULL/empty: the system bundle) is needed only for verified connections;
 * when it cannot be loaded, err says so and verified connections will fail,
 * while opportunistic ones still work.  Returns 0, or -1 (a warning).
 */
int tls_client_init(const char *ca_file, char *err, size_t err_len);

/*
 * tls_client_outbound_init — the CA bundle of MRS_OUTBOUND_CA_FILE (NULL or
 * empty: the system bundle), which verifies MTA-STS policy servers, MX
 * hosts under a policy (TLS_VERIFY_OUTBOUND) and what opportunistic
 * sessions report as verified.  Call after tls_client_init.  0, or -1 with
 * err (outbound verification then always fails).
 */
int tls_client_outbound_init(const char *ca_file, char *err, size_t err_len);

/* tls_server_expiry — notAfter of the served certificate (the leaf; with
 * several pairs, the one that expires first), in Unix seconds; 0 before a
 * configuration is loaded. */
int64_t tls_server_expiry(void);

/* tls_server_new — a server context on socket fd; NULL when out of memory
 * or no configuration is loaded. */
struct tls_conn *tls_server_new(int fd);

/* How a client handshake treats the peer's certificate. */
enum tls_verify {
    TLS_VERIFY_OPTIONAL = 0, /* checked against the outbound bundle and reported, never refused (RFC 7435) */
    TLS_VERIFY_SMARTHOST,    /* required, against MRS_SMARTHOST_CA_FILE */
    TLS_VERIFY_OUTBOUND,     /* required, against MRS_OUTBOUND_CA_FILE (MTA-STS) */
};

/* tls_client_new — a client context on fd; sni may be NULL.  Unless verify
 * is TLS_VERIFY_OPTIONAL the handshake fails unless the peer's certificate
 * verifies for sni; the error then names the problem ("certificate name
 * mismatch", "certificate not trusted", "certificate expired"). */
struct tls_conn *tls_client_new(int fd, const char *sni, enum tls_verify verify);

/* tls_client_new_dane — a client context on fd whose handshake succeeds
 * only when the server's certificate matches a usable TLSA record of dane
 * (RFC 7672 §3; see dane.h).  dane must outlive the context.  On a
 * mismatch tls_handshake fails with "DANE: no TLSA record matches the
 * certificate of HOST". */
struct dane_set;
struct tls_conn *tls_client_new_dane(int fd, const char *sni, const struct dane_set *dane);

void tls_conn_free(struct tls_conn *t);

/* tls_handshake — 0 when complete, TLS_WANT_READ/WRITE, or TLS_ERROR with a
 * short reason in err. */
int tls_handshake(struct tls_conn *t, char *err, size_t err_len);

/* tls_recv — >0 bytes, 0 on a clean close, TLS_WANT_*, TLS_ERROR. */
ssize_t tls_recv(struct tls_conn *t, void *buf, size_t len);
/* tls_send — >0 bytes taken, TLS_WANT_*, TLS_ERROR.  Retry with the same
 * arguments after a WANT. */
ssize_t tls_send(struct tls_conn *t, const void *buf, size_t len);
/* tls_close_notify — best effort close_notify alert. */
void tls_close_notify(struct tls_conn *t);

/*
 * Client-side session resumption (RFC 8446 §2.2), for a client that comes
 * back to the same server.  tls_session_get — a copy of the session of a
 * completed client handshake (with TLS 1.3 it holds the server's ticket
 * once one was read, i.e. after the first tls_recv), or NULL; the caller
 * frees it with tls_session_free.  tls_session_set — offer that session in
 * the next handshake of a new client context (before tls_handshake); 0 or
 * -1.
 */
struct tls_session;
struct tls_session *tls_session_get(const struct tls_conn *t);
int tls_session_set(struct tls_conn *t, const struct tls_session *s);
void tls_session_free(struct tls_session *s);

const char *tls_version(const struct tls_conn *t);   /* "TLSv1.3" */
const char *tls_cipher(const struct tls_conn *t);
bool tls_peer_verified(const struct tls_conn *t);
/* tls_closed_cleanly — after tls_recv returned 0: whether the peer sent
 * close_notify (else the transport just closed: maybe a truncation). */
bool tls_closed_cleanly(const struct tls_conn *t);

/*
 * RSA keys for DKIM signing (rsa-sha256, RFC 6376 §3.3.1): parsed, used and
 * made here because mbedTLS is only used in this file.  A key is immutable
 * once parsed and may sign from several threads at once (mbedTLS locks the
 * blinding values inside).
 *
 * tls_rsa_key_parse — a PEM private key (PKCS#1 "RSA PRIVATE KEY" or
 * unencrypted PKCS#8 "PRIVATE KEY"; pem NUL-terminated, len without the
 * NUL).  0 with *out (free with tls_rsa_key_free) and *bits, or -1 with err:
 * not parseable, or not an RSA key.
 */
struct tls_rsa_key;
int tls_rsa_key_parse(const char *pem, size_t len, struct tls_rsa_key **out, size_t *bits,
                      char *err, size_t err_len);
/* tls_rsa_key_public_der — the public key as DER SubjectPublicKeyInfo (the
 * p= value of a DKIM key record, before base64).  0, or -1 when cap is too
 * small. */
int tls_rsa_key_public_der(const struct tls_rsa_key *k, uint8_t *out, size_t cap, size_t *len);
/* tls_rsa_sign_sha256 — the RSASSA-PKCS1-v1_5 signature of a SHA-256
 * digest; sig needs the modulus size in bytes.  0, or -1. */
int tls_rsa_sign_sha256(const struct tls_rsa_key *k, const uint8_t hash[32], uint8_t *sig, size_t cap,
                        size_t *sig_len);
void tls_rsa_key_free(struct tls_rsa_key *k);
/* tls_rsa_key_generate — a new RSA key of `bits` (2048..4096), e 65537, as
 * PEM (PKCS#1) into pem.  0, or -1 with err. */
int tls_rsa_key_generate(unsigned bits, char *pem, size_t cap, char *err, size_t err_len);

/* tls_shutdown — free the shared configurations at exit. */
void tls_shutdown(void);

#endif
