/*
 * dkimbench — the CPU cost of DKIM signing per message, with the relay's
 * own code: the relaxed body hash of a message body (as the session feeds
 * it, in 16 KiB pieces), then per key the header hash and the signature
 * (dkim.c + tls.c for RSA + crypto.c for Ed25519), exactly what
 * dkim_sign_finish() adds per message once the delegation is in the DNS
 * cache.  Keys are made fresh (RSA by mbedTLS, Ed25519 by libsodium).
 *
 *   dkimbench [MESSAGES [BODY_BYTES]]     (defaults 2000 and 10240)
 *
 * Prints one line per measurement: CPU microseconds per message
 * (CLOCK_PROCESS_CPUTIME_ID, one thread).
 */
#include "crypto.h"
#include "dkim.h"
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static const char head[] = "Received: from client.example ([192.0.2.10])\r\n\tby relay (mrs) with ESMTPSA\r\n"
                           "Message-ID: <01a23b3f21ba4af668b4@relay.example>\r\n"
                           "Date: Thu, 03 Dec 2026 09:32:02 +0000\r\n"
                           "From: Newsletter <news@new.mycorp.se>\r\nTo: Bob <bob@example.net>\r\n"
                           "Subject: The December newsletter\r\nMIME-Version: 1.0\r\n"
                           "Content-Type: text/plain; charset=utf-8\r\n";

/* one_signature — header hash + signature + the field's text, as sign_one. */
static size_t one_signature(const struct dkim_headers *hs, const uint8_t bh[32], int rsa,
                            const struct tls_rsa_key *rk, const struct crypto_ed25519 *ek, char *out,
                            size_t cap)
{
    struct dkim_sig_params p = {.alg = rsa ? DKIM_RSA_SHA256 : DKIM_ED25519_SHA256, .domain = "new.mycorp.se",
                                .selector = "s1", .time = 1796290322, .h = "from:from:to:subject:date:message-id"};
    memcpy(p.bh, bh, 32);
    size_t n = dkim_sig_begin(&p, out, cap);
    struct crypto_sha256_state sha;
    uint8_t digest[32], sig[DKIM_SIGNATURE_MAX_BYTES];
    size_t sig_len = CRYPTO_ED25519_SIGNATURE_BYTES;
    const char *segs[1] = {head};
    crypto_sha256_begin(&sha);
    dkim_headers_hash(hs, segs, dkim_sha256_sink, &sha);
    dkim_canon_header(out, n, dkim_sha256_sink, &sha);
    crypto_sha256_end(&sha, digest);
    int rc = rsa ? tls_rsa_sign_sha256(rk, digest, sig, sizeof sig, &sig_len) : crypto_ed25519_sign(ek, digest, 32, sig);
    return rc == 0 ? dkim_sig_finish(out, n, cap, sig, sig_len) : 0;
}

int main(int argc, char **argv)
{
    long messages = argc > 1 ? atol(argv[1]) : 2000, body_bytes = argc > 2 ? atol(argv[2]) : 10240;
    char err[256], *pem = malloc(DKIM_PEM_MAX_BYTES), *body = malloc((size_t)body_bytes + 1), out[4096];
    struct tls_rsa_key *rsa[2] = {NULL, NULL};
    size_t bits[2];
    struct crypto_ed25519 ed;
    uint8_t seed[32], bh[32];
    if (messages <= 0 || body_bytes <= 0 || !pem || !body || crypto_init() < 0 || tls_init(err, sizeof err) < 0)
        return 1;
    for (int i = 0; i < 2; i++)
        if (tls_rsa_key_generate(i ? 4096 : 2048, pem, DKIM_PEM_MAX_BYTES, err, sizeof err) < 0 ||
            tls_rsa_key_parse(pem, strlen(pem), &rsa[i], &bits[i], err, sizeof err) < 0) {
            fprintf(stderr, "dkimbench: %s\n", err);
            return 1;
        }
    crypto_random(seed, sizeof seed);
    crypto_ed25519_from_seed(seed, &ed);
    for (long i = 0; i < body_bytes; i++) /* text lines of 72 characters, with some white space runs */
        body[i] = i % 74 == 72 ? '\r' : i % 74 == 73 ? '\n' : i % 9 == 0 ? ' ' : (char)('a' + i % 26);
    struct dkim_headers hs;
    memset(&hs, 0, sizeof hs);
    dkim_headers_scan(head, sizeof head - 1, 0, &hs);

    double t0 = cpu_us();
    for (long m = 0; m < messages; m++) {
        struct crypto_sha256_state sha;
        struct dkim_body b;
        crypto_sha256_begin(&sha);
        dkim_body_init(&b, dkim_sha256_sink, &sha);
        for (long off = 0; off < body_bytes; off += 16384)
            dkim_body_add(&b, body + off, (size_t)(body_bytes - off < 16384 ? body_bytes - off : 16384));
        dkim_body_end(&b);
        crypto_sha256_end(&sha, bh);
    }
    double body_us = (cpu_us() - t0) / (double)messages;
    printf("body hash (relaxed, %ld bytes): %.1f us/message\n", body_bytes, body_us);
    static const char *const names[] = {"rsa-sha256 2048", "rsa-sha256 4096", "ed25519-sha256"};
    for (int k = 0; k < 3; k++) {
        t0 = cpu_us();
        for (long m = 0; m < messages; m++)
            if (one_signature(&hs, bh, k < 2, k < 2 ? rsa[k] : NULL, &ed, out, sizeof out) == 0)
                return 1;
        printf("signature %s (header hash + sign): %.1f us/message\n", names[k], (cpu_us() - t0) / (double)messages);
    }
    tls_rsa_key_free(rsa[0]);
    tls_rsa_key_free(rsa[1]);
    crypto_ed25519_wipe(&ed);
    free(pem);
    free(body);
    return 0;
}
