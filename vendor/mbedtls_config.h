/*
 * mbedTLS configuration for mrs: our own, not the upstream default.
 *
 * Keeps only what mrs uses: TLS 1.2 and 1.3, server (submission listeners)
 * and client (outbound delivery, smarthost), ECDHE with X25519 / P-256 /
 * P-384, ECDSA and RSA certificates, AES-GCM and ChaCha20-Poly1305, X.509 +
 * PEM parsing, certificate writing for the ephemeral self-signed default,
 * session tickets, and PSA crypto as TLS 1.3 requires.  No DTLS, no CBC, no
 * static RSA key exchange, no file-system helpers we do not call.
 *
 * build.sh passes it with -DMBEDTLS_CONFIG_FILE=<this file> to both the
 * library build and our own sources, so the two always agree.
 */
#ifndef MRS_MBEDTLS_CONFIG_H
#define MRS_MBEDTLS_CONFIG_H

/* --- platform --------------------------------------------------------- */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY  /* src/tls.c gives mbedTLS a per-thread block cache */
#define MBEDTLS_FS_IO            /* x509_crt_parse_file for the CA bundle */
#define MBEDTLS_THREADING_C
#define MBEDTLS_THREADING_PTHREAD
#define MBEDTLS_DEPRECATED_REMOVED
#define MBEDTLS_ERROR_C
/* PSA works on the caller's buffers instead of a heap copy of each input
 * and output: they protect against a caller sharing memory with an
 * untrusted party while PSA reads it, and mrs has no such memory (one
 * process, its own buffers).  The copies were ~300 calloc/free pairs and
 * memcpys per TLS handshake, all through musl's one malloc lock. */
#define MBEDTLS_PSA_ASSUME_EXCLUSIVE_BUFFERS

/* --- randomness (getrandom(2) via the platform entropy source) -------- */
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_CTR_DRBG_C
#define MBEDTLS_HMAC_DRBG_C

/* --- symmetric -------------------------------------------------------- */
#define MBEDTLS_AES_C
#define MBEDTLS_AESNI_C
#define MBEDTLS_AES_ROM_TABLES   /* tables in .rodata: shared, not per-process RAM */
#define MBEDTLS_GCM_C
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C
#define MBEDTLS_CIPHER_C
#define MBEDTLS_MD_C
#define MBEDTLS_SHA224_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C
#define MBEDTLS_SHA1_C           /* only to verify legacy certificate chains */
#define MBEDTLS_HKDF_C

/* --- asymmetric ------------------------------------------------------- */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECDH_C
/* X25519 for TLS 1.2's ECDHE (the legacy ECDH API) on libsodium: our own
 * mbedtls_ecdh_gen_public / mbedtls_ecdh_compute_shared in src/psa_sodium.c
 * (other curves there call mbedTLS's code).  libsodium: 88 us per key share
 * + secret, HACL* (MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED, used before) 190,
 * the generic ladder about 900 (test/tools/tlsbench, README). */
#define MBEDTLS_ECDH_GEN_PUBLIC_ALT
#define MBEDTLS_ECDH_COMPUTE_SHARED_ALT
/* P-256 and RSA speed, measured with test/tools/tlsbench (README, "TLS
 * handshake crypto"): mbedTLS's defaults, spelled out here, are the fastest
 * it offers on x86-64.  The fixed-point comb uses the precomputed tables of
 * P-256/P-384 (ECDSA P-256 sign 500 us, 1,220 without); a wider window (6,
 * 7) gains nothing; without MBEDTLS_ECP_NIST_OPTIM everything on P-256 is
 * 4-5x slower; the p256-m driver (MBEDTLS_PSA_P256M_DRIVER_ENABLED, 32-bit
 * code) made the P-256 key exchange 3.4x slower; MBEDTLS_USE_PSA_CRYPTO
 * made RSA signatures 1.8x slower (the key is re-imported into PSA for each
 * one).  RSA private operations always use CRT and blinding in 3.6; an MPI
 * window of 3 beat 2, 4, 5 and 6. */
#define MBEDTLS_ECP_WINDOW_SIZE 4
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 1
#define MBEDTLS_MPI_WINDOW_SIZE 3
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_PK_PARSE_EC_EXTENDED
#define MBEDTLS_PK_PARSE_EC_COMPRESSED
#define MBEDTLS_GENPRIME
#define MBEDTLS_PSA_CRYPTO_C
/* X25519 key shares and shared secrets on libsodium: a PSA transparent
 * driver (src/psa_sodium.h, wired in by vendor/mbedtls-psa-sodium.patch). */
#define MRS_PSA_SODIUM_DRIVER_ENABLED
/* The RSA private operation (mbedtls_rsa_private's exponentiation) on our
 * own Montgomery code: src/rsa_mont.h, vendor/mbedtls-rsa-private.patch. */
#define MRS_RSA_MONT_ENABLED
/* PSA keys live in a table that grows as needed.  Without this the table has
 * 32 slots for the whole process, and every TLS 1.3 handshake in progress
 * holds its ephemeral key in one: the 33rd concurrent handshake failed with
 * "Memory allocation failed" (found by loadgen at 128 clients). */
#define MBEDTLS_PSA_KEY_STORE_DYNAMIC

/* --- encodings and X.509 ---------------------------------------------- */
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_PEM_WRITE_C
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CRT_WRITE_C
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT

/* --- TLS -------------------------------------------------------------- */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_ENCRYPT_THEN_MAC
#define MBEDTLS_SSL_SESSION_TICKETS
#define MBEDTLS_SSL_TICKET_C
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH
#define MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH
/* Records we send: 8 KiB instead of 16 KiB, 8 KiB less per TLS session (a
 * TLS 1.3 context keeps both record buffers for its whole life).  A sender
 * may always use smaller records (RFC 8446 §5.1); what we send after the
 * handshake is a reply batch of at most 4 KiB (src/conn.h).  The limit that
 * matters is the certificate chain, sent in one handshake message:
 * tls_server_load() refuses a chain that does not fit.  Incoming records
 * stay 16 KiB: we negotiate no max_fragment_length/record_size_limit. */
#define MBEDTLS_SSL_OUT_CONTENT_LEN 8192
#define MBEDTLS_SSL_CIPHERSUITES \
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256, \
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384, \
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, \
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, \
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, \
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256

#endif /* MRS_MBEDTLS_CONFIG_H */
