/*
 * dkim — the formats of DKIM signing (RFC 6376, Ed25519 by RFC 8463),
 * pure: relaxed body and header canonicalization (§3.4.2, §3.4.4), the
 * header fields a signature covers (SPEC §8.3), the DKIM-Signature header
 * text, key records (the TXT record at SELECTOR._domainkey.DOMAIN, §3.6.1),
 * and the PEM / PKCS#8 form of Ed25519 private keys (RFC 8410).
 *
 * No I/O, no clock, no configuration, no allocation: unit tests and fuzzers
 * call every function directly.  Signing itself (keys, DNS, the spool) is
 * dkim_sign.c's.  Calls crypto (SHA-256, base64) and policy (the From:
 * address parser).  Thread-safe: no shared state.
 */
#ifndef MRS_DKIM_H
#define MRS_DKIM_H

#include "crypto.h"
#include "policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DKIM_DOMAIN_MAX_BYTES POLICY_DOMAIN_MAX_BYTES
#define DKIM_SELECTOR_MAX_BYTES 63
#define DKIM_NAMES 14                   /* the header names SPEC §8.3 signs */
#define DKIM_SIGNED_FIELDS_MAX 64       /* header fields one signature may cover */
#define DKIM_H_MAX_BYTES (DKIM_SIGNED_FIELDS_MAX * 27 + 8) /* "content-transfer-encoding:" each */
#define DKIM_PUBLIC_MAX_BYTES 1100      /* a key record's p=, decoded: RSA up to 8192 bits */
#define DKIM_SIGNATURE_MAX_BYTES 1024   /* b=, decoded: RSA up to 8192 bits */
#define DKIM_PEM_MAX_BYTES 16384        /* a private key file */

enum dkim_alg { DKIM_RSA_SHA256 = 0, DKIM_ED25519_SHA256, DKIM_ALG_COUNT };

/* dkim_alg_name — "rsa-sha256" / "ed25519-sha256" (the a= tag);
 * dkim_key_type — "rsa" / "ed25519" (the k= tag). */
const char *dkim_alg_name(enum dkim_alg a);
const char *dkim_key_type(enum dkim_alg a);

/* ---- canonicalization ---------------------------------------------------- */

/* Where canonical bytes go: a SHA-256 state, or a buffer in tests. */
typedef void (*dkim_sink_fn)(void *ctx, const char *p, size_t n);
/* dkim_sha256_sink — the sink that adds to a struct crypto_sha256_state. */
void dkim_sha256_sink(void *sha_state, const char *p, size_t n);

/*
 * The relaxed body canonicalizer (RFC 6376 §3.4.4), fed incrementally as
 * the body streams: white-space runs inside a line become one space,
 * white space at line ends goes, empty lines at the end of the body go
 * (an empty body stays empty), and a body whose last line lacks its CRLF
 * gets one.  Line ends are CRLF; a CR not followed by LF, or an LF alone,
 * is an ordinary byte (the session refuses such messages anyway).
 */
struct dkim_body {
    dkim_sink_fn sink;
    void *ctx;
    uint64_t held_crlf; /* line ends not yet passed on: they may end the body */
    bool wsp;           /* white space seen in this line, not yet passed on */
    bool cr;            /* the last byte was a CR */
    bool any;           /* a non-empty line was passed on */
    size_t len;
    char buf[512];
};
void dkim_body_init(struct dkim_body *b, dkim_sink_fn sink, void *ctx);
void dkim_body_add(struct dkim_body *b, const char *p, size_t n);
/* dkim_body_end — the end of the body: the last CRLF is passed on. */
void dkim_body_end(struct dkim_body *b);

/* dkim_canon_header — one header field (name, colon, value with its
 * folding, its line end optional) in relaxed form (§3.4.2): the name
 * lowercased, unfolded, white-space runs as one space, none around the
 * colon or at the end; no CRLF.  Given to sink. */
void dkim_canon_header(const char *field, size_t len, dkim_sink_fn sink, void *ctx);

/* ---- the header section ------------------------------------------------------ */

/* One header field of a header section: `len` bytes from `off`, its
 * continuation lines and final CRLF included; name_len bytes of name
 * (before the colon, trailing white space left out), 0 when the line has
 * no colon. */
struct dkim_field {
    size_t off, len, name_len;
};

/* dkim_next_field — the field starting at *pos of the header section
 * (head, len), and *pos moved past it.  false at the end. */
bool dkim_next_field(const char *head, size_t len, size_t *pos, struct dkim_field *f);

/* The fields a signature covers: every field whose name is one of SPEC
 * §8.3's list, in the order they stand.  The header section may come in
 * segments (the relay's prefix, then the client's fields), each of whole
 * fields. */
struct dkim_headers {
    size_t n;
    struct {
        size_t off, len;
        unsigned seg;               /* which segment */
        unsigned name;              /* index into the list */
    } field[DKIM_SIGNED_FIELDS_MAX];
    unsigned count[DKIM_NAMES];     /* occurrences per name */
};

/* dkim_headers_scan — find them in segment `seg` of a header section,
 * after those already in out (zero it for the first).  0, or -1 when
 * there are more than DKIM_SIGNED_FIELDS_MAX. */
int dkim_headers_scan(const char *head, size_t len, unsigned seg, struct dkim_headers *out);
/* dkim_headers_h — the h= value: each name as often as it occurs, From
 * once more (an added From: then breaks the signature).  Its length, or 0
 * when cap is too small. */
size_t dkim_headers_h(const struct dkim_headers *hs, char *out, size_t cap);
/* dkim_headers_hash — the fields named by dkim_headers_h() in its order,
 * each canonicalized with its CRLF, the k-th listing of a name being its
 * k-th occurrence from the bottom (§5.4.2); the extra From adds nothing. */
void dkim_headers_hash(const struct dkim_headers *hs, const char *const *segs, dkim_sink_fn sink, void *ctx);

/* dkim_from_domain — the domain the message is signed for: the header
 * section has exactly one From: field and all its addresses share one
 * domain (lowercase, into out).  0, or -1. */
int dkim_from_domain(const char *head, size_t len, char out[DKIM_DOMAIN_MAX_BYTES]);

/* ---- the DKIM-Signature header ---------------------------------------------- */

struct dkim_sig_params {
    enum dkim_alg alg;
    const char *domain;     /* d= */
    const char *selector;   /* s= */
    int64_t time;           /* t=, Unix seconds */
    const char *h;          /* h=, from dkim_headers_h() */
    uint8_t bh[CRYPTO_SHA256_BYTES];
};

/* dkim_sig_max_bytes — room for a whole DKIM-Signature field (CRLF
 * included) with an h= of h_len bytes and a signature of sig_bytes. */
size_t dkim_sig_max_bytes(size_t h_len, size_t sig_bytes);
/* dkim_sig_begin — "DKIM-Signature: v=1; a=…; … bh=…;<FWS>b=" into out,
 * folded under 78 columns, no CRLF: what the signature covers (with the
 * canonicalized fields before it).  Its length, or 0 when out is too small
 * or a value does not fit the syntax. */
size_t dkim_sig_begin(const struct dkim_sig_params *p, char *out, size_t cap);
/* dkim_sig_finish — append the signature (base64, folded) and the CRLF to
 * the len bytes of out.  The new length, or 0 when it does not fit. */
size_t dkim_sig_finish(char *out, size_t len, size_t cap, const uint8_t *sig, size_t sig_len);

/* ---- key records ---------------------------------------------------------------- */

struct dkim_record {
    enum dkim_alg alg;      /* from k= (default rsa) */
    bool revoked;           /* p= is empty (§3.6.1) */
    size_t pub_len;
    uint8_t pub[DKIM_PUBLIC_MAX_BYTES]; /* p=, decoded */
};

/* dkim_parse_record — a TXT record's text as a DKIM key record for
 * email signed with SHA-256: tag syntax (§3.2: no tag twice), v=DKIM1
 * first when present, h= (when present) allowing sha256, s= (when present)
 * allowing email, k= rsa or ed25519, p= base64.  0, or -1 when it is not a
 * usable key record. */
int dkim_parse_record(const char *txt, size_t len, struct dkim_record *out);
/* dkim_format_record — "v=DKIM1; k=…; p=…" for a public key.  Its length,
 * or 0 when cap is too small. */
size_t dkim_format_record(enum dkim_alg alg, const uint8_t *pub, size_t pub_len, char *out, size_t cap);

/* ---- Ed25519 private keys as PKCS#8 PEM (RFC 8410 §7, RFC 5958) ------------ */

enum dkim_pem {
    DKIM_PEM_ED25519 = 0,   /* an Ed25519 key: seed filled */
    DKIM_PEM_OTHER,         /* not a PKCS#8 Ed25519 key: maybe RSA (tls.c reads those) */
    DKIM_PEM_MALFORMED,     /* a PKCS#8 Ed25519 key that breaks the syntax */
};
/*
 * dkim_pem_ed25519 — the seed of an Ed25519 private key in PEM text: a
 * "PRIVATE KEY" block whose DER is OneAsymmetricKey version 0 or 1 with
 * the algorithm 1.3.101.112 and no parameters, the key an OCTET STRING of
 * 32 bytes, optional attributes, and an optional public key (copied to
 * pub, *has_pub set, for the caller to compare).  Strict DER: minimal
 * lengths, nothing left over.
 */
enum dkim_pem dkim_pem_ed25519(const char *pem, size_t len, uint8_t seed[CRYPTO_ED25519_SEED_BYTES],
                               uint8_t pub[CRYPTO_ED25519_PUBLIC_BYTES], bool *has_pub);
/* dkim_pem_ed25519_write — the PKCS#8 v1 PEM of a seed (what `openssl
 * genpkey -algorithm ed25519` writes).  Its length, or 0 when cap is too
 * small. */
size_t dkim_pem_ed25519_write(const uint8_t seed[CRYPTO_ED25519_SEED_BYTES], char *out, size_t cap);

#endif
